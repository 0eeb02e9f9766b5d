//! Ollama `/api/chat` responses -> OpenAI: the NDJSON objects, the non-streamed translation,
//! the stream translator and errors.
//!
//! Streamed or not, the response is a sequence of JSON objects, one a line, the last with
//! `done: true`, `done_reason` and the token counts. Each object carries the next fragment of
//! `message.content` / `message.thinking`, and whole tool calls (never fragments).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::dialect::completion::{generated_tool_call_id, ChunkWriter, Completion, ToolCallOut};
use crate::dialect::errors::{status_error, upstream_message};
use crate::dialect::framed::FrameTranslator;
use crate::dialect::openai::excerpt;
use crate::dialect::{ResponseContext, Translated, Usage};
use crate::error::{ErrorCode, RelayError};
use crate::sse::LineDecoder;

/// One NDJSON object of a chat response.
#[derive(Debug, Default, Deserialize)]
struct ChatLine {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    message: Option<LineMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    /// `{"error": "..."}`, sent in place of a response line.
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct LineMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<LineToolCall>>,
}

#[derive(Debug, Default, Deserialize)]
struct LineToolCall {
    #[serde(default)]
    id: Option<String>,
    function: LineFunction,
}

#[derive(Debug, Default, Deserialize)]
struct LineFunction {
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

impl ChatLine {
    fn parse(line: &[u8]) -> Result<Self, RelayError> {
        let parsed: ChatLine = serde_json::from_slice(line).map_err(|e| {
            RelayError::new(
                ErrorCode::UpstreamInvalidResponse,
                format!("upstream line is not an Ollama chat response ({e}): {}", excerpt(line)),
            )
        })?;
        if let Some(error) = &parsed.error {
            let message = error.as_str().map(str::to_owned).unwrap_or_else(|| error.to_string());
            return Err(RelayError::new(ErrorCode::UpstreamStreamError, format!("upstream stream error: {message}")));
        }
        Ok(parsed)
    }

    /// Token counts, from the final line. Ollama reports neither cached nor reasoning tokens
    /// separately (thinking is part of `eval_count`).
    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_eval_count.unwrap_or(0),
            completion_tokens: self.eval_count.unwrap_or(0),
            ..Usage::default()
        }
    }
}

/// Converts one tool call: arguments (an object) re-encoded as a JSON string, the upstream's id
/// when it sent one (recent Ollama does), else one unique to this response.
fn tool_call(call: LineToolCall, id_seed: &str, index: usize) -> ToolCallOut {
    let arguments = match call.function.arguments {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::String(encoded)) => encoded,
        Some(arguments) => arguments.to_string(),
    };
    ToolCallOut {
        id: call.id.filter(|id| !id.is_empty()).unwrap_or_else(|| generated_tool_call_id(id_seed, index)),
        name: call.function.name,
        arguments,
        extra_content: None,
    }
}

/// `done_reason` in OpenAI's terms: `length` stays, a stop after tool calls is `tool_calls`,
/// anything else (`stop`, `load`, `unload`) is `stop`.
fn finish_reason(done_reason: Option<&str>, saw_tool_calls: bool) -> &'static str {
    match done_reason {
        Some("length") => "length",
        _ if saw_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// Translates a complete response: normally one object, but every line of a stream that
/// arrives whole (a buffering proxy) is accepted and joined.
pub(super) fn translate(body: &Bytes, ctx: &ResponseContext) -> Result<Translated, RelayError> {
    let mut decoder = LineDecoder::default();
    let mut lines = Vec::new();
    decoder
        .push(body.clone(), &mut lines)
        .map_err(|e| RelayError::new(ErrorCode::UpstreamInvalidResponse, e.to_string()))?;
    lines.extend(decoder.finish());

    let id = ctx.completion_id();
    let mut completion = Completion::default();
    let mut model = None;
    let mut last = None;
    for line in &lines {
        let mut line = ChatLine::parse(line)?;
        model = model.or(line.model.take());
        if let Some(message) = line.message.take() {
            completion.content.push_str(message.content.as_deref().unwrap_or_default());
            if let Some(thinking) = message.thinking.filter(|t| !t.is_empty()) {
                completion.reasoning.get_or_insert_with(String::new).push_str(&thinking);
            }
            for call in message.tool_calls.unwrap_or_default() {
                let index = completion.tool_calls.len();
                completion.tool_calls.push(tool_call(call, &id, index));
            }
        }
        if line.done {
            last = Some((line.usage(), line.done_reason));
        }
    }
    let Some((usage, done_reason)) = last else {
        return Err(RelayError::new(
            ErrorCode::UpstreamInvalidResponse,
            format!("upstream answered 2xx without a final (done) response: {}", excerpt(body)),
        ));
    };
    completion.id = id;
    completion.model = model.unwrap_or_else(|| ctx.upstream_model.to_owned());
    completion.created = ctx.created;
    completion.finish_reason = Some(finish_reason(done_reason.as_deref(), !completion.tool_calls.is_empty()));
    completion.usage = Some(usage);
    Ok(Translated::read(completion.to_bytes(), Some(usage)))
}

/// Maps an Ollama error (`{"error": "..."}`) to the client's error: 429 (ollama.com limits) ->
/// `upstream_rate_limited`, 503 (server busy, queue full) -> `upstream_overloaded`, the rest
/// (404 unknown model, 400 "does not support tools", ...) keep their status as
/// `upstream_http_error` with Ollama's message.
pub(super) fn translate_error(status: u16, body: &Bytes) -> RelayError {
    status_error(status, upstream_message(body))
}

/// The state of one Ollama stream.
pub(super) struct OllamaStream {
    writer: ChunkWriter,
    wants_usage: bool,
    id_seed: String,
    done: bool,
    usage: Option<Usage>,
}

impl OllamaStream {
    pub(super) fn new(ctx: &ResponseContext) -> Self {
        OllamaStream {
            writer: ChunkWriter::for_context(ctx),
            wants_usage: ctx.client_wants_usage,
            id_seed: ctx.completion_id(),
            done: false,
            usage: None,
        }
    }

    fn on_line(&mut self, line: &[u8], out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        let mut line = ChatLine::parse(line)?;
        self.writer.identify(None, line.model.take());
        if let Some(message) = line.message.take() {
            self.writer.reasoning(message.thinking.as_deref().unwrap_or_default(), out);
            self.writer.content(message.content.as_deref().unwrap_or_default(), out);
            for call in message.tool_calls.unwrap_or_default() {
                let call = tool_call(call, &self.id_seed, self.writer.tool_calls());
                self.writer.tool_call(&call, out);
            }
        }
        if line.done && !self.done {
            self.done = true;
            self.usage = Some(line.usage());
            let reason = finish_reason(line.done_reason.as_deref(), self.writer.tool_calls() > 0);
            self.writer.finish_reason(reason, out);
        }
        Ok(())
    }
}

impl FrameTranslator<Bytes> for OllamaStream {
    fn frame(&mut self, line: Bytes, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        self.on_line(&line, out)
    }

    fn end(&mut self, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        if !self.done {
            return Err(RelayError::new(
                ErrorCode::UpstreamStreamTruncated,
                "upstream stream ended before its final (done) line",
            ));
        }
        self.writer.close(self.usage.as_ref(), self.wants_usage, out);
        Ok(())
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::framed::LineStream;
    use crate::dialect::StreamTranslator;
    use serde_json::json;

    fn ctx(wants_usage: bool) -> ResponseContext<'static> {
        ResponseContext {
            request_id: "req_abc",
            created: 5,
            upstream_model: "llama",
            client_wants_usage: wants_usage,
            several_choices: false,
        }
    }

    fn payloads(events: &[Bytes]) -> Vec<Value> {
        events
            .iter()
            .map(|e| {
                let text = std::str::from_utf8(e).unwrap().strip_prefix("data: ").unwrap().trim_end().to_owned();
                if text == "[DONE]" {
                    Value::String(text)
                } else {
                    serde_json::from_str(&text).unwrap()
                }
            })
            .collect()
    }

    #[test]
    fn a_whole_response_translates_with_thinking_tool_calls_and_usage() {
        let body = Bytes::from(
            json!({"model": "qwen3", "message": {"role": "assistant", "content": "", "thinking": "call it",
                   "tool_calls": [{"function": {"name": "w", "arguments": {"city": "Oslo"}}},
                                  {"id": "up1", "function": {"name": "v", "arguments": {}}}]},
                   "done": true, "done_reason": "stop", "prompt_eval_count": 12, "eval_count": 4})
            .to_string()
                + "\n",
        );
        let translated = translate(&body, &ctx(false)).unwrap();
        let value: Value = serde_json::from_slice(&translated.body).unwrap();
        assert_eq!(
            (value["id"].as_str(), value["model"].as_str(), value["created"].as_u64()),
            (Some("chatcmpl-abc"), Some("qwen3"), Some(5))
        );
        let message = &value["choices"][0]["message"];
        assert!(message["content"].is_null());
        assert_eq!(message["reasoning_content"], "call it");
        assert_eq!(message["tool_calls"][0]["id"], "call_abc_0");
        assert_eq!(message["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Oslo\"}");
        assert_eq!(message["tool_calls"][1]["id"], "up1");
        assert_eq!(value["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(translated.usage(), Some(Usage { prompt_tokens: 12, completion_tokens: 4, ..Usage::default() }));
    }

    #[test]
    fn a_buffered_stream_is_accepted_as_a_whole_response() {
        let body = Bytes::from_static(
            b"{\"model\":\"m\",\"message\":{\"content\":\"a\"},\"done\":false}\n{\"model\":\"m\",\"message\":{\"content\":\"b\"},\"done\":true,\"done_reason\":\"length\",\"eval_count\":2}\n",
        );
        let value: Value = serde_json::from_slice(&translate(&body, &ctx(false)).unwrap().body).unwrap();
        assert_eq!(value["choices"][0]["message"]["content"], "ab");
        assert_eq!(value["choices"][0]["finish_reason"], "length");
        let unfinished = Bytes::from_static(b"{\"message\":{\"content\":\"a\"},\"done\":false}\n");
        assert_eq!(translate(&unfinished, &ctx(false)).unwrap_err().code, ErrorCode::UpstreamInvalidResponse);
    }

    #[test]
    fn streams_translate_line_by_line() {
        let input = "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"hm\"},\"done\":false}\r\n\
                     {\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n\
                     {\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":3,\"eval_count\":2}\n";
        let mut stream = LineStream::new(OllamaStream::new(&ctx(true)));
        let mut out = Vec::new();
        stream.feed(Bytes::from(input), &mut out).unwrap();
        stream.finish(&mut out).unwrap();
        let events = payloads(&out);
        assert_eq!(events.len(), 5);
        assert_eq!(events[0]["choices"][0]["delta"], json!({"role": "assistant", "reasoning_content": "hm"}));
        assert_eq!(events[1]["choices"][0]["delta"], json!({"content": "Hi"}));
        assert_eq!(events[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(events[3]["usage"]["prompt_tokens"], 3);
        assert_eq!(events[4], "[DONE]");
    }

    #[test]
    fn a_stream_without_its_done_line_is_truncated_and_an_error_line_fails_it() {
        let mut stream = LineStream::new(OllamaStream::new(&ctx(false)));
        let mut out = Vec::new();
        stream.feed(Bytes::from_static(b"{\"message\":{\"content\":\"a\"},\"done\":false}\n"), &mut out).unwrap();
        assert_eq!(stream.finish(&mut out).unwrap_err().code, ErrorCode::UpstreamStreamTruncated);

        let mut stream = LineStream::new(OllamaStream::new(&ctx(false)));
        let err = stream
            .feed(
                Bytes::from_static(b"{\"error\":\"an error was encountered while running the model\"}\n"),
                &mut Vec::new(),
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UpstreamStreamError);
        assert!(err.message.contains("while running the model"));
    }

    #[test]
    fn errors_keep_their_status_and_message() {
        let err =
            translate_error(404, &Bytes::from_static(br#"{"error":"model \"x\" not found, try pulling it first"}"#));
        assert_eq!((err.code, err.status), (ErrorCode::UpstreamHttpError, 404));
        assert!(err.message.starts_with("model \"x\" not found"));
        assert!(err.passthrough_body.is_none());
        assert_eq!(
            translate_error(429, &Bytes::from_static(br#"{"error":"too many"}"#)).code,
            ErrorCode::UpstreamRateLimited
        );
        assert_eq!(
            translate_error(503, &Bytes::from_static(br#"{"error":"server busy"}"#)).code,
            ErrorCode::UpstreamOverloaded
        );
    }
}
