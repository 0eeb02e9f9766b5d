//! Builders for the OpenAI responses a translating dialect produces: the `chat.completion` body
//! and the `chat.completion.chunk` stream events, so every dialect emits the same shapes.
//!
//! Stream rules kept here once: every chunk carries the same `id`, `model` and `created`; the
//! first delta carries `role: "assistant"` (sent with the first real fragment, so a
//! tool-call-only answer has no content, as OpenAI streams it); each tool call gets the next
//! `index` and its first delta carries `id`, `type` and `function.name`; the last choice chunk
//! carries `finish_reason`; a usage chunk with `"choices": []` follows only when the client asked
//! for it; `data: [DONE]` ends the stream. Choices carry `logprobs: null`, as OpenAI's do.
//!
//! Provider data a client must send back with a tool call (Gemini's thought signature) rides in
//! the call's `extra_content`, the shape of Google's own OpenAI-compatible endpoint.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{ResponseContext, Usage};
use crate::sse;

/// A tool call in a response.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallOut {
    pub id: String,
    pub name: String,
    /// JSON-encoded arguments.
    pub arguments: String,
    /// Provider data the client must send back with the call (`extra_content`).
    pub extra_content: Option<Value>,
}

impl ToolCallOut {
    fn to_json(&self) -> Value {
        let mut call = json!({
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        });
        if let Some(extra) = &self.extra_content {
            call["extra_content"] = extra.clone();
        }
        call
    }
}

/// A tool call id for an upstream that gives none: unique per response (`seed` is the
/// upstream's response id or the relay's completion id) so ids never repeat across turns.
pub fn generated_tool_call_id(seed: &str, index: usize) -> String {
    let seed: String = seed
        .strip_prefix("chatcmpl-")
        .unwrap_or(seed)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    format!("call_{seed}_{index}")
}

/// A complete non-streamed answer, in OpenAI's terms.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub id: String,
    pub model: String,
    pub created: u64,
    pub content: String,
    /// Reasoning text, surfaced as `reasoning_content` when present.
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ToolCallOut>,
    pub finish_reason: Option<&'static str>,
    pub usage: Option<Usage>,
}

impl Completion {
    /// The `chat.completion` JSON body. `content` is `null` for a tool-call-only answer, as
    /// OpenAI sends it.
    pub fn to_bytes(&self) -> Bytes {
        let mut message = Map::new();
        message.insert("role".into(), "assistant".into());
        let content = if self.content.is_empty() && !self.tool_calls.is_empty() {
            Value::Null
        } else {
            Value::String(self.content.clone())
        };
        message.insert("content".into(), content);
        if let Some(reasoning) = &self.reasoning {
            message.insert("reasoning_content".into(), reasoning.clone().into());
        }
        if !self.tool_calls.is_empty() {
            let calls = self.tool_calls.iter().map(ToolCallOut::to_json).collect();
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        let mut body = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": self.finish_reason,
            }],
        });
        if let Some(usage) = &self.usage {
            body["usage"] = usage.to_json();
        }
        Bytes::from(body.to_string())
    }
}

/// Writes `chat.completion.chunk` events for one stream.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    id: String,
    model: String,
    created: u64,
    role_sent: bool,
    tool_calls: usize,
}

impl ChunkWriter {
    /// A writer whose chunks carry this id, model and creation time.
    pub fn new(id: impl Into<String>, model: impl Into<String>, created: u64) -> Self {
        ChunkWriter { id: id.into(), model: model.into(), created, role_sent: false, tool_calls: 0 }
    }

    /// A writer using the context's id and model until [`ChunkWriter::identify`] says otherwise.
    pub fn for_context(ctx: &ResponseContext) -> Self {
        ChunkWriter::new(ctx.completion_id(), ctx.upstream_model.to_owned(), ctx.created)
    }

    /// Adopts the upstream's id and model; ignored once the first chunk is out, so every chunk
    /// keeps the same identity.
    pub fn identify(&mut self, id: Option<String>, model: Option<String>) {
        if self.role_sent {
            return;
        }
        if let Some(id) = id {
            self.id = id;
        }
        if let Some(model) = model {
            self.model = model;
        }
    }

    /// How many tool calls have been opened.
    pub fn tool_calls(&self) -> usize {
        self.tool_calls
    }

    fn chunk(&self, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    fn push_delta(&mut self, mut delta: Map<String, Value>, finish_reason: Option<&str>, out: &mut Vec<Bytes>) {
        if !self.role_sent {
            self.role_sent = true;
            let mut with_role = Map::with_capacity(delta.len() + 1);
            with_role.insert("role".into(), "assistant".into());
            with_role.append(&mut delta);
            delta = with_role;
        }
        let chunk = self.chunk(json!([{
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish_reason,
        }]));
        out.push(sse::data_event(chunk.to_string().as_bytes()));
    }

    fn push_field(&mut self, key: &str, value: Value, out: &mut Vec<Bytes>) {
        let mut delta = Map::new();
        delta.insert(key.into(), value);
        self.push_delta(delta, None, out);
    }

    /// Sends the role chunk now, with empty content as OpenAI opens a text stream, instead of
    /// with the first fragment.
    pub fn start(&mut self, out: &mut Vec<Bytes>) {
        if !self.role_sent {
            self.push_field("content", "".into(), out);
        }
    }

    /// A content fragment; empty fragments are not sent.
    pub fn content(&mut self, text: &str, out: &mut Vec<Bytes>) {
        if !text.is_empty() {
            self.push_field("content", text.into(), out);
        }
    }

    /// A reasoning fragment (`reasoning_content`); empty fragments are not sent.
    pub fn reasoning(&mut self, text: &str, out: &mut Vec<Bytes>) {
        if !text.is_empty() {
            self.push_field("reasoning_content", text.into(), out);
        }
    }

    /// Opens the next tool call (with empty arguments, as OpenAI opens a call); returns its
    /// index for [`ChunkWriter::tool_arguments`].
    pub fn tool_start(&mut self, id: &str, name: &str, out: &mut Vec<Bytes>) -> usize {
        self.open_tool_call(id, name, None, out)
    }

    /// A whole tool call: the delta that opens it, then its arguments in one fragment.
    pub fn tool_call(&mut self, call: &ToolCallOut, out: &mut Vec<Bytes>) -> usize {
        let index = self.open_tool_call(&call.id, &call.name, call.extra_content.as_ref(), out);
        self.tool_arguments(index, &call.arguments, out);
        index
    }

    fn open_tool_call(&mut self, id: &str, name: &str, extra_content: Option<&Value>, out: &mut Vec<Bytes>) -> usize {
        let index = self.tool_calls;
        self.tool_calls += 1;
        let mut opening = json!({
            "index": index,
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        });
        if let Some(extra) = extra_content {
            opening["extra_content"] = extra.clone();
        }
        self.push_field("tool_calls", json!([opening]), out);
        index
    }

    /// A fragment of a tool call's JSON arguments; empty fragments are not sent.
    pub fn tool_arguments(&mut self, index: usize, fragment: &str, out: &mut Vec<Bytes>) {
        if !fragment.is_empty() {
            let delta = json!([{ "index": index, "function": {"arguments": fragment} }]);
            self.push_field("tool_calls", delta, out);
        }
    }

    /// The chunk carrying `finish_reason`.
    pub fn finish_reason(&mut self, finish_reason: &str, out: &mut Vec<Bytes>) {
        self.push_delta(Map::new(), Some(finish_reason), out);
    }

    /// The usage chunk (`choices: []`), sent after the finish chunk when the client asked.
    pub fn usage(&self, usage: &Usage, out: &mut Vec<Bytes>) {
        let mut chunk = self.chunk(json!([]));
        chunk["usage"] = usage.to_json();
        out.push(sse::data_event(chunk.to_string().as_bytes()));
    }

    /// Closes the stream after its finish chunk: the usage chunk when the client asked for it
    /// and there are counts, then `data: [DONE]`.
    pub fn close(&self, usage: Option<&Usage>, include_usage: bool, out: &mut Vec<Bytes>) {
        if let Some(usage) = usage.filter(|_| include_usage) {
            self.usage(usage, out);
        }
        out.push(sse::done_event());
    }

    /// Ends the stream: the `finish_reason` chunk, the usage chunk when the client asked for it
    /// (zero counts when the upstream reported none), and `data: [DONE]`.
    pub fn finish(&mut self, finish_reason: &str, usage: Option<Usage>, include_usage: bool, out: &mut Vec<Bytes>) {
        self.finish_reason(finish_reason, out);
        self.close(Some(&usage.unwrap_or_default()), include_usage, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_of(out: &[Bytes]) -> Vec<Value> {
        out.iter()
            .map(|e| {
                let text = std::str::from_utf8(e).unwrap();
                let payload = text.strip_prefix("data: ").unwrap().trim_end();
                if payload == "[DONE]" {
                    Value::String("[DONE]".into())
                } else {
                    serde_json::from_str(payload).unwrap()
                }
            })
            .collect()
    }

    fn ctx() -> ResponseContext<'static> {
        ResponseContext {
            request_id: "req_ctx",
            created: 7,
            upstream_model: "m",
            client_wants_usage: true,
            several_choices: false,
        }
    }

    #[test]
    fn a_stream_opens_with_the_role_numbers_tool_calls_and_ends_with_done() {
        let mut writer = ChunkWriter::new("id-1", "m", 7);
        let mut out = Vec::new();
        writer.content("", &mut out);
        writer.content("hi", &mut out);
        let first = writer.tool_start("t1", "f", &mut out);
        writer.tool_arguments(first, "{}", &mut out);
        let second = writer.tool_start("t2", "g", &mut out);
        writer.finish(
            "tool_calls",
            Some(Usage { prompt_tokens: 3, completion_tokens: 2, ..Usage::default() }),
            true,
            &mut out,
        );
        let events = events_of(&out);
        assert_eq!((first, second), (0, 1));
        assert_eq!(writer.tool_calls(), 2);
        assert_eq!(events.len(), 7);
        assert_eq!(events[0]["choices"][0]["delta"], json!({"role": "assistant", "content": "hi"}));
        assert!(events[1]["choices"][0]["delta"].get("role").is_none());
        assert_eq!(events[3]["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
        assert_eq!(events[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            events[5],
            json!({"id": "id-1", "object": "chat.completion.chunk", "created": 7, "model": "m", "choices": [],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
                    "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}})
        );
        assert_eq!(out.last().unwrap(), &sse::done_event());
        assert!(events.iter().take(6).all(|e| e["id"] == "id-1" && e["model"] == "m" && e["created"] == 7));
        let mut empty = ChunkWriter::new("id-2", "m", 7);
        let mut out = Vec::new();
        empty.finish("stop", None, false, &mut out);
        assert_eq!(events_of(&out)[0]["choices"][0]["delta"], json!({"role": "assistant"}));
    }

    #[test]
    fn chunks_share_identity_and_the_first_carries_the_role() {
        let mut writer = ChunkWriter::for_context(&ctx());
        writer.identify(Some("chatcmpl-up".into()), Some("up-model".into()));
        let mut out = Vec::new();
        writer.reasoning("hm", &mut out);
        writer.identify(Some("other".into()), None);
        let index = writer.tool_call(
            &ToolCallOut {
                id: "call_1".into(),
                name: "f".into(),
                arguments: "{}".into(),
                extra_content: Some(json!({"k": 1})),
            },
            &mut out,
        );
        writer.finish_reason("tool_calls", &mut out);
        writer.usage(&Usage { prompt_tokens: 2, completion_tokens: 3, ..Usage::default() }, &mut out);
        let events = events_of(&out);
        let [first, open, args, last, usage] = &events[..] else { panic!("{events:?}") };
        assert_eq!(index, 0);
        assert_eq!(first["choices"][0]["delta"], json!({"role": "assistant", "reasoning_content": "hm"}));
        for chunk in [first, open, args, last] {
            assert_eq!(
                (chunk["id"].as_str(), chunk["model"].as_str(), chunk["created"].as_u64()),
                (Some("chatcmpl-up"), Some("up-model"), Some(7))
            );
            assert!(chunk["choices"][0]["logprobs"].is_null());
        }
        let opening = &open["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(opening["function"]["arguments"], "");
        assert_eq!(opening["extra_content"], json!({"k": 1}));
        assert_eq!(args["choices"][0]["delta"]["tool_calls"][0], json!({"index": 0, "function": {"arguments": "{}"}}));
        assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 5);
        let mut closing = Vec::new();
        writer.close(None, true, &mut closing);
        assert_eq!(closing, vec![sse::done_event()]);
    }

    #[test]
    fn a_tool_call_only_completion_has_null_content() {
        let completion = Completion {
            id: "x".into(),
            model: "m".into(),
            tool_calls: vec![ToolCallOut {
                id: "t".into(),
                name: "f".into(),
                arguments: "{}".into(),
                extra_content: Some(json!({"k": 1})),
            }],
            finish_reason: Some("tool_calls"),
            ..Completion::default()
        };
        let body: Value = serde_json::from_slice(&completion.to_bytes()).unwrap();
        let message = &body["choices"][0]["message"];
        assert_eq!(message["content"], Value::Null);
        assert_eq!(message["tool_calls"][0]["function"]["name"], "f");
        assert_eq!(message["tool_calls"][0]["extra_content"], json!({"k": 1}));
        assert!(message.get("reasoning_content").is_none());
        assert!(body.get("usage").is_none());
        let text = Completion {
            content: "hi".into(),
            reasoning: Some("r".into()),
            finish_reason: Some("stop"),
            ..Completion::default()
        };
        let body: Value = serde_json::from_slice(&text.to_bytes()).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "hi");
        assert_eq!(body["choices"][0]["message"]["reasoning_content"], "r");
    }

    #[test]
    fn generated_ids_are_seeded_and_sanitised() {
        assert_eq!(generated_tool_call_id("chatcmpl-ab/c", 2), "call_abc_2");
        assert_eq!(generated_tool_call_id("resp_X-1", 0), "call_resp_X-1_0");
    }
}
