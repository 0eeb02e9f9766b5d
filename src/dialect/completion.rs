//! Builders for the OpenAI responses a translating dialect produces: the `chat.completion` body
//! and the `chat.completion.chunk` stream events, so every dialect emits the same shapes.
//!
//! Stream rules kept here once: every chunk carries the same `id`, `model` and `created`; the
//! first delta carries `role: "assistant"` (sent with the first real fragment, so a
//! tool-call-only answer has no content, as OpenAI streams it); each tool call gets the next `index` and its first
//! delta carries `id`, `type` and `function.name`; the last choice chunk carries
//! `finish_reason`; a usage chunk with `"choices": []` follows only when the client asked for it;
//! `data: [DONE]` ends the stream.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::Usage;
use crate::sse;

/// A tool call in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallOut {
    pub id: String,
    pub name: String,
    /// JSON-encoded arguments.
    pub arguments: String,
}

/// A complete non-streamed answer, in OpenAI's terms.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub id: String,
    pub model: String,
    pub created: u64,
    pub content: String,
    /// Reasoning text, surfaced as `reasoning_content`.
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
            let calls: Vec<Value> = self
                .tool_calls
                .iter()
                .map(|call| {
                    json!({
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    })
                })
                .collect();
            message.insert("tool_calls".into(), calls.into());
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
        ChunkWriter {
            id: id.into(),
            model: model.into(),
            created,
            role_sent: false,
            tool_calls: 0,
        }
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

    fn push_delta(
        &mut self,
        mut delta: Map<String, Value>,
        finish_reason: Option<&str>,
        out: &mut Vec<Bytes>,
    ) {
        if !self.role_sent {
            self.role_sent = true;
            delta.insert("role".into(), "assistant".into());
        }
        let chunk =
            self.chunk(json!([{ "index": 0, "delta": delta, "finish_reason": finish_reason }]));
        out.push(sse::data_event(chunk.to_string().as_bytes()));
    }

    /// Sends the role chunk now, with empty content as OpenAI opens a text stream, instead of
    /// with the first fragment.
    pub fn start(&mut self, out: &mut Vec<Bytes>) {
        if !self.role_sent {
            let mut delta = Map::new();
            delta.insert("content".into(), "".into());
            self.push_delta(delta, None, out);
        }
    }

    /// A content fragment; empty fragments are not sent.
    pub fn content(&mut self, text: &str, out: &mut Vec<Bytes>) {
        if !text.is_empty() {
            let mut delta = Map::new();
            delta.insert("content".into(), text.into());
            self.push_delta(delta, None, out);
        }
    }

    /// A reasoning fragment (`reasoning_content`); empty fragments are not sent.
    pub fn reasoning(&mut self, text: &str, out: &mut Vec<Bytes>) {
        if !text.is_empty() {
            let mut delta = Map::new();
            delta.insert("reasoning_content".into(), text.into());
            self.push_delta(delta, None, out);
        }
    }

    /// Opens the next tool call; returns its index for [`ChunkWriter::tool_arguments`].
    pub fn tool_start(&mut self, id: &str, name: &str, out: &mut Vec<Bytes>) -> usize {
        let index = self.tool_calls;
        self.tool_calls += 1;
        let mut delta = Map::new();
        delta.insert(
            "tool_calls".into(),
            json!([{ "index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""} }]),
        );
        self.push_delta(delta, None, out);
        index
    }

    /// A fragment of a tool call's JSON arguments; empty fragments are not sent.
    pub fn tool_arguments(&mut self, index: usize, fragment: &str, out: &mut Vec<Bytes>) {
        if !fragment.is_empty() {
            let mut delta = Map::new();
            delta.insert(
                "tool_calls".into(),
                json!([{ "index": index, "function": {"arguments": fragment} }]),
            );
            self.push_delta(delta, None, out);
        }
    }

    /// Ends the stream: the `finish_reason` chunk, the usage chunk when the client asked for it,
    /// and `data: [DONE]`.
    pub fn finish(
        &mut self,
        finish_reason: &str,
        usage: Option<Usage>,
        include_usage: bool,
        out: &mut Vec<Bytes>,
    ) {
        self.push_delta(Map::new(), Some(finish_reason), out);
        if include_usage {
            let mut chunk = self.chunk(json!([]));
            chunk["usage"] = usage.unwrap_or_default().to_json();
            out.push(sse::data_event(chunk.to_string().as_bytes()));
        }
        out.push(sse::done_event());
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
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
                ..Usage::default()
            }),
            true,
            &mut out,
        );
        let events = events_of(&out);
        assert_eq!((first, second), (0, 1));
        assert_eq!(events.len(), 7);
        assert_eq!(
            events[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": "hi"})
        );
        assert!(events[1]["choices"][0]["delta"].get("role").is_none());
        assert_eq!(
            events[3]["choices"][0]["delta"]["tool_calls"][0]["index"],
            1
        );
        assert_eq!(events[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            events[5],
            json!({"id": "id-1", "object": "chat.completion.chunk", "created": 7, "model": "m", "choices": [],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
                    "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}})
        );
        assert_eq!(out.last().unwrap(), &sse::done_event());
        assert!(events
            .iter()
            .take(6)
            .all(|e| e["id"] == "id-1" && e["model"] == "m" && e["created"] == 7));
        let mut empty = ChunkWriter::new("id-2", "m", 7);
        let mut out = Vec::new();
        empty.finish("stop", None, false, &mut out);
        assert_eq!(
            events_of(&out)[0]["choices"][0]["delta"],
            json!({"role": "assistant"})
        );
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
            }],
            finish_reason: Some("tool_calls"),
            ..Completion::default()
        };
        let body: Value = serde_json::from_slice(&completion.to_bytes()).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            body["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "f"
        );
        assert!(body.get("usage").is_none());
    }
}
