//! The built-in `mock` upstream: deterministic OpenAI-shaped answers computed from the request,
//! so the relay serves something useful offline (the quick start, demos, tests).
//!
//! - No tool call: `Hello from the Switchyard mock upstream. You said: <last user text>`.
//! - `tools` given, `tool_choice` not `"none"`, last message not a tool result: a call to the
//!   first tool (or the one `tool_choice` names), with every required parameter set to `"mock"`.
//! - Last message a tool result: `Tool result received: <its content>`.
//! - Usage counts whitespace-separated words.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::Usage;
use crate::sse;

/// What the mock answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MockAnswer {
    Text(String),
    ToolCall { name: String, arguments: String },
}

/// The mock's answer to one request body, with its usage.
#[derive(Debug, Clone)]
pub struct MockReply {
    pub answer: MockAnswer,
    pub usage: Usage,
    pub include_usage: bool,
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|part| part.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" ")
        }
        _ => String::new(),
    }
}

/// Computes the mock's reply to a chat-completions request body.
pub fn reply(request: &Value) -> MockReply {
    let messages = request.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    let prompt_tokens = messages.iter().map(|m| words(&content_text(m.get("content").unwrap_or(&Value::Null)))).sum();
    let last = messages.last();
    let last_role = last.and_then(|m| m.get("role")).and_then(Value::as_str).unwrap_or("");
    let tool_choice = request.get("tool_choice");
    let tools = request.get("tools").and_then(Value::as_array).filter(|t| !t.is_empty());

    let answer = match (tools, last_role) {
        (_, "tool") => MockAnswer::Text(format!(
            "Tool result received: {}",
            content_text(last.and_then(|m| m.get("content")).unwrap_or(&Value::Null))
        )),
        (Some(tools), _) if tool_choice.and_then(Value::as_str) != Some("none") => {
            let wanted = tool_choice.and_then(|c| c.pointer("/function/name")).and_then(Value::as_str);
            let tool = tools
                .iter()
                .find(|t| wanted.is_none() || t.pointer("/function/name").and_then(Value::as_str) == wanted)
                .unwrap_or(&tools[0]);
            let name = tool.pointer("/function/name").and_then(Value::as_str).unwrap_or("tool").to_owned();
            let required = tool.pointer("/function/parameters/required").and_then(Value::as_array);
            let arguments: Map<String, Value> = required
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|param| (param.to_owned(), Value::String("mock".into())))
                .collect();
            MockAnswer::ToolCall { name, arguments: Value::Object(arguments).to_string() }
        }
        _ => {
            let said = messages
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
                .unwrap_or_default();
            MockAnswer::Text(format!("Hello from the Switchyard mock upstream. You said: {said}"))
        }
    };
    let completion_tokens = match &answer {
        MockAnswer::Text(text) => words(text),
        MockAnswer::ToolCall { arguments, .. } => words(arguments).max(1),
    };
    MockReply {
        answer,
        usage: Usage { prompt_tokens, completion_tokens, cached_tokens: 0, reasoning_tokens: 0 },
        include_usage: request.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true),
    }
}

const TOOL_CALL_ID: &str = "call_mock_0";

impl MockReply {
    fn finish_reason(&self) -> &'static str {
        match self.answer {
            MockAnswer::Text(_) => "stop",
            MockAnswer::ToolCall { .. } => "tool_calls",
        }
    }

    /// The non-streamed `chat.completion`.
    pub fn completion(&self, id: &str, created: u64, model: &str) -> Bytes {
        let message = match &self.answer {
            MockAnswer::Text(text) => json!({ "role": "assistant", "content": text }),
            MockAnswer::ToolCall { name, arguments } => json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{ "id": TOOL_CALL_ID, "type": "function", "function": { "name": name, "arguments": arguments } }],
            }),
        };
        Bytes::from(
            json!({
                "id": id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{ "index": 0, "message": message, "finish_reason": self.finish_reason() }],
                "usage": self.usage.to_json(),
            })
            .to_string(),
        )
    }

    /// The streamed answer as SSE events, ending with `data: [DONE]`.
    pub fn chunks(&self, id: &str, created: u64, model: &str) -> Vec<Bytes> {
        let chunk = |delta: Value, finish: Option<&str>| {
            sse::data_event(
                json!({
                    "id": id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
                })
                .to_string()
                .as_bytes(),
            )
        };
        let mut events = Vec::new();
        match &self.answer {
            MockAnswer::Text(text) => {
                events.push(chunk(json!({ "role": "assistant", "content": "" }), None));
                let words: Vec<&str> = text.split(' ').collect();
                for (i, word) in words.iter().enumerate() {
                    let piece = if i + 1 < words.len() { format!("{word} ") } else { (*word).to_owned() };
                    events.push(chunk(json!({ "content": piece }), None));
                }
            }
            MockAnswer::ToolCall { name, arguments } => {
                events.push(chunk(
                    json!({ "role": "assistant", "content": null, "tool_calls": [{
                        "index": 0, "id": TOOL_CALL_ID, "type": "function",
                        "function": { "name": name, "arguments": "" } }] }),
                    None,
                ));
                let mid = arguments.char_indices().nth(arguments.chars().count() / 2).map_or(0, |(i, _)| i);
                for piece in [&arguments[..mid], &arguments[mid..]] {
                    events.push(chunk(
                        json!({ "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] }),
                        None,
                    ));
                }
            }
        }
        events.push(chunk(json!({}), Some(self.finish_reason())));
        if self.include_usage {
            events.push(sse::data_event(
                json!({
                    "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [], "usage": self.usage.to_json(),
                })
                .to_string()
                .as_bytes(),
            ));
        }
        events.push(sse::done_event());
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_the_last_user_message_with_word_usage() {
        let reply =
            reply(&json!({"messages":[{"role":"system","content":"be nice"},{"role":"user","content":"hi there"}]}));
        assert_eq!(
            reply.answer,
            MockAnswer::Text("Hello from the Switchyard mock upstream. You said: hi there".into())
        );
        assert_eq!(reply.usage.prompt_tokens, 4);
        assert_eq!(reply.usage.completion_tokens, 10);
    }

    #[test]
    fn calls_the_first_tool_with_required_params_then_reads_the_result() {
        let tools = json!([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string"}}}}}]);
        let first = reply(&json!({"messages":[{"role":"user","content":"weather?"}],"tools":tools}));
        assert_eq!(
            first.answer,
            MockAnswer::ToolCall { name: "get_weather".into(), arguments: r#"{"city":"mock"}"#.into() }
        );
        let second = reply(
            &json!({"messages":[{"role":"user","content":"weather?"},{"role":"tool","tool_call_id":"call_mock_0","content":"sunny"}],"tools":tools}),
        );
        assert_eq!(second.answer, MockAnswer::Text("Tool result received: sunny".into()));
    }

    #[test]
    fn streams_several_chunks_and_ends_with_done() {
        let reply =
            reply(&json!({"messages":[{"role":"user","content":"a b c"}],"stream_options":{"include_usage":true}}));
        let events = reply.chunks("id", 1, "mock-1");
        assert!(events.len() > 5);
        assert_eq!(events.last().unwrap(), &sse::done_event());
        let usage_event = std::str::from_utf8(&events[events.len() - 2]).unwrap();
        assert!(usage_event.contains("\"choices\":[]") && usage_event.contains("\"prompt_tokens\":3"));
    }
}
