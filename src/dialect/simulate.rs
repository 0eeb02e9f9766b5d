//! Reshaping between streamed and non-streamed answers, for upstreams whose transport does not
//! match the client's: `stream = "simulate"` (a relay with broken streaming is asked for a
//! complete answer, which is then sent to the client as SSE), and upstreams that only stream
//! serving a client that asked for one `chat.completion`.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::completion::ChunkWriter;
use super::openai::UsageJson;
use super::Usage;
use crate::error::{ErrorCode, RelayError};

fn invalid(what: &str) -> RelayError {
    RelayError::new(ErrorCode::UpstreamInvalidResponse, format!("cannot reshape the upstream's answer: {what}"))
}

/// Turns a `chat.completion` body into the chunk events a streaming client expects.
pub fn completion_to_chunks(body: &[u8], include_usage: bool) -> Result<Vec<Bytes>, RelayError> {
    let completion: Value = serde_json::from_slice(body).map_err(|e| invalid(&e.to_string()))?;
    let choice = completion.pointer("/choices/0").ok_or_else(|| invalid("no choices"))?;
    let message = choice.get("message").ok_or_else(|| invalid("no message"))?;
    let text = |key: &str| completion.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let created = completion.get("created").and_then(Value::as_u64).unwrap_or_default();
    let mut writer = ChunkWriter::new(text("id"), text("model"), created);
    let mut out = Vec::new();
    writer.start(&mut out);
    if let Some(reasoning) = message.get("reasoning_content").and_then(Value::as_str) {
        writer.reasoning(reasoning, &mut out);
    }
    if let Some(content) = message.get("content").and_then(Value::as_str) {
        writer.content(content, &mut out);
    }
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let field = |pointer: &str| call.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
        let index = writer.tool_start(field("/id"), field("/function/name"), &mut out);
        writer.tool_arguments(index, field("/function/arguments"), &mut out);
    }
    let usage =
        completion.get("usage").and_then(|u| serde_json::from_value::<UsageJson>(u.clone()).ok()).map(Usage::from);
    let finish_reason = choice.get("finish_reason").and_then(Value::as_str).unwrap_or("stop");
    writer.finish(finish_reason, usage, include_usage, &mut out);
    Ok(out)
}

/// Accumulates `chat.completion.chunk` events into one `chat.completion`, as the OpenAI SDKs do.
#[derive(Debug, Default)]
pub struct ChunkAccumulator {
    id: Option<Value>,
    model: Option<Value>,
    created: Option<Value>,
    content: Option<String>,
    reasoning: Option<String>,
    tool_calls: Vec<Map<String, Value>>,
    finish_reason: Option<Value>,
    usage: Option<Value>,
}

impl ChunkAccumulator {
    /// Adds one event's `data` payload; `[DONE]` and non-JSON payloads are ignored.
    pub fn push(&mut self, data: &[u8]) {
        let Ok(chunk) = serde_json::from_slice::<Value>(data) else { return };
        for (slot, key) in [(&mut self.id, "id"), (&mut self.model, "model"), (&mut self.created, "created")] {
            if slot.is_none() {
                *slot = chunk.get(key).cloned();
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else { return };
        if let Some(reason) = choice.get("finish_reason").filter(|r| !r.is_null()) {
            self.finish_reason = Some(reason.clone());
        }
        let Some(delta) = choice.get("delta") else { return };
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            self.content.get_or_insert_with(String::new).push_str(text);
        }
        if let Some(text) = delta.get("reasoning_content").and_then(Value::as_str) {
            self.reasoning.get_or_insert_with(String::new).push_str(text);
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            while self.tool_calls.len() <= index {
                let mut entry = Map::new();
                entry.insert("type".into(), "function".into());
                entry.insert("function".into(), json!({ "name": "", "arguments": "" }));
                self.tool_calls.push(entry);
            }
            let entry = &mut self.tool_calls[index];
            if let Some(id) = call.get("id") {
                entry.insert("id".into(), id.clone());
            }
            let function = entry.get_mut("function").and_then(Value::as_object_mut);
            if let (Some(function), Some(delta)) = (function, call.get("function")) {
                for key in ["name", "arguments"] {
                    if let Some(piece) = delta.get(key).and_then(Value::as_str) {
                        let current = function.get(key).and_then(Value::as_str).unwrap_or_default();
                        function.insert(key.into(), format!("{current}{piece}").into());
                    }
                }
            }
        }
    }

    /// Whether no chunk has been seen.
    pub fn is_empty(&self) -> bool {
        self.id.is_none() && self.finish_reason.is_none()
    }

    /// The accumulated `chat.completion` body.
    pub fn finish(self) -> Bytes {
        let mut message = json!({ "role": "assistant", "content": self.content });
        if let Some(reasoning) = self.reasoning {
            message["reasoning_content"] = reasoning.into();
        }
        if !self.tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(self.tool_calls.into_iter().map(Value::Object).collect());
        }
        let mut completion = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "message": message, "finish_reason": self.finish_reason }],
        });
        if let Some(usage) = self.usage {
            completion["usage"] = usage;
        }
        Bytes::from(completion.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::{SseDecoder, DONE};

    #[test]
    fn a_completion_round_trips_through_chunks() {
        let completion = br#"{"id":"c1","object":"chat.completion","created":5,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
        let events = completion_to_chunks(completion, true).unwrap();
        let mut decoder = SseDecoder::default();
        let mut decoded = Vec::new();
        for event in events {
            decoder.push(event, &mut decoded).unwrap();
        }
        let mut accumulator = ChunkAccumulator::default();
        let mut saw_done = false;
        for event in &decoded {
            let data = event.data().unwrap();
            saw_done |= data.as_ref() == DONE.as_bytes();
            accumulator.push(&data);
        }
        assert!(saw_done);
        let rebuilt: Value = serde_json::from_slice(&accumulator.finish()).unwrap();
        let original: Value = serde_json::from_slice(completion).unwrap();
        assert_eq!(rebuilt["choices"][0]["message"]["content"], "hi");
        assert_eq!(rebuilt["choices"][0]["message"]["tool_calls"], original["choices"][0]["message"]["tool_calls"]);
        assert_eq!(rebuilt["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(rebuilt["usage"]["prompt_tokens"], 3);
    }
}
