//! Responses `response` objects -> `chat.completion`, and upstream errors -> relay errors.

use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};

use super::super::errors::{status_error, upstream_message};
use super::super::openai::excerpt;
use super::super::{ResponseContext, Translated, Usage};
use crate::error::{ErrorCode, RelayError};

/// Reads JSON `null` as the type's default: upstreams send `null` for empty fields.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// The parts of a Responses `response` object the translation reads.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ResponseObject {
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) model: Option<String>,
    #[serde(default)]
    pub(super) status: Option<String>,
    #[serde(default)]
    pub(super) incomplete_details: Option<IncompleteDetails>,
    #[serde(default)]
    pub(super) error: Option<Value>,
    #[serde(default)]
    pub(super) output: Option<Vec<OutputItem>>,
    #[serde(default)]
    pub(super) usage: Option<ResponsesUsage>,
}

/// Why a response stopped early.
#[derive(Debug, Default, Deserialize)]
pub(super) struct IncompleteDetails {
    #[serde(default)]
    pub(super) reason: Option<String>,
}

/// One item of `output` (also the `item` of `response.output_item.*` stream events).
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub(super) enum OutputItem {
    #[serde(rename = "message")]
    Message {
        #[serde(default, deserialize_with = "null_as_default")]
        content: Vec<MessagePart>,
    },
    #[serde(rename = "function_call")]
    FunctionCall {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        call_id: Option<String>,
        #[serde(default, deserialize_with = "null_as_default")]
        name: String,
        #[serde(default, deserialize_with = "null_as_default")]
        arguments: String,
    },
    #[serde(rename = "reasoning")]
    Reasoning {
        #[serde(default, deserialize_with = "null_as_default")]
        summary: Vec<TextPart>,
        /// Raw reasoning text (open-weight models); summaries are preferred when present.
        #[serde(default)]
        content: Option<Vec<TextPart>>,
    },
    /// Built-in tool calls and anything newer: not part of a chat completion.
    #[serde(other)]
    Other,
}

impl OutputItem {
    /// The id the client sees for a function call: its `call_id`, which tool results refer to.
    pub(super) fn call_id(&self) -> Option<&str> {
        match self {
            OutputItem::FunctionCall { id, call_id, .. } => call_id.as_deref().or(id.as_deref()),
            _ => None,
        }
    }
}

/// A content part of an output message.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub(super) enum MessagePart {
    #[serde(rename = "output_text")]
    OutputText {
        #[serde(default, deserialize_with = "null_as_default")]
        text: String,
    },
    #[serde(rename = "refusal")]
    Refusal {
        #[serde(default, deserialize_with = "null_as_default")]
        refusal: String,
    },
    #[serde(other)]
    Other,
}

/// A reasoning summary or reasoning text part.
#[derive(Debug, Deserialize)]
pub(super) struct TextPart {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) text: String,
}

/// The Responses usage object.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ResponsesUsage {
    #[serde(default, deserialize_with = "null_as_default")]
    input_tokens: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Debug, Default, Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<&ResponsesUsage> for Usage {
    fn from(usage: &ResponsesUsage) -> Self {
        Usage {
            prompt_tokens: usage.input_tokens,
            completion_tokens: usage.output_tokens,
            cached_tokens: usage.input_tokens_details.as_ref().and_then(|d| d.cached_tokens).unwrap_or(0),
            reasoning_tokens: usage.output_tokens_details.as_ref().and_then(|d| d.reasoning_tokens).unwrap_or(0),
        }
    }
}

/// The chat-completion id for a response: `resp_x` becomes `chatcmpl-x`.
pub(super) fn chat_id(response_id: Option<&str>, fallback: impl FnOnce() -> String) -> String {
    match response_id.filter(|id| !id.is_empty()) {
        Some(id) => format!("chatcmpl-{}", id.strip_prefix("resp_").unwrap_or(id)),
        None => fallback(),
    }
}

/// The OpenAI `finish_reason` for a finished response.
pub(super) fn finish_reason(
    status: Option<&str>,
    incomplete: Option<&IncompleteDetails>,
    has_tool_calls: bool,
) -> &'static str {
    if status == Some("incomplete") {
        return match incomplete.and_then(|d| d.reason.as_deref()) {
            Some("content_filter") => "content_filter",
            // `max_output_tokens` and anything else that cut the answer short.
            _ => "length",
        };
    }
    if has_tool_calls {
        "tool_calls"
    } else {
        "stop"
    }
}

/// Translates a complete (non-streamed) Responses body.
pub(super) fn translate(body: &[u8], ctx: &ResponseContext) -> Result<Translated, RelayError> {
    let response: ResponseObject = serde_json::from_slice(body).map_err(|e| {
        RelayError::new(
            ErrorCode::UpstreamInvalidResponse,
            format!("upstream answered 2xx with a body that is not a Responses object ({e}): {}", excerpt(body)),
        )
    })?;
    if response.status.as_deref() == Some("failed") {
        return Err(failure(response.error.as_ref(), ErrorCode::UpstreamHttpError));
    }

    let mut content = String::new();
    let mut refusal: Option<String> = None;
    let mut reasoning: Vec<&str> = Vec::new();
    let mut tool_calls = Vec::new();
    for item in response.output.iter().flatten() {
        match item {
            OutputItem::Message { content: parts } => {
                for part in parts {
                    match part {
                        MessagePart::OutputText { text } => content.push_str(text),
                        MessagePart::Refusal { refusal: text } => {
                            refusal.get_or_insert_with(String::new).push_str(text)
                        }
                        MessagePart::Other => {}
                    }
                }
            }
            OutputItem::FunctionCall { name, arguments, .. } => tool_calls.push(json!({
                "id": item.call_id().unwrap_or_default(),
                "type": "function",
                "function": { "name": name, "arguments": arguments },
            })),
            OutputItem::Reasoning { summary, content: text } => {
                let parts = if summary.is_empty() { text.as_deref().unwrap_or_default() } else { summary.as_slice() };
                reasoning.extend(parts.iter().map(|part| part.text.as_str()).filter(|t| !t.is_empty()));
            }
            OutputItem::Other => {}
        }
    }

    let finish =
        finish_reason(response.status.as_deref(), response.incomplete_details.as_ref(), !tool_calls.is_empty());
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if content.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(content) };
    message.insert("content".into(), content);
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), Value::String(reasoning.join("\n\n")));
    }
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    message.insert("refusal".into(), refusal.map_or(Value::Null, Value::String));

    let usage = response.usage.as_ref().map(Usage::from);
    let mut completion = json!({
        "id": chat_id(response.id.as_deref(), || ctx.completion_id()),
        "object": "chat.completion",
        "created": ctx.created,
        "model": response.model.as_deref().unwrap_or(ctx.upstream_model),
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish }],
    });
    if let Some(usage) = &usage {
        completion["usage"] = usage.to_json();
    }
    let body = serde_json::to_vec(&completion)
        .map_err(|e| RelayError::new(ErrorCode::Internal, format!("serialising the completion: {e}")))?;
    Ok(Translated::read(Bytes::from(body), usage))
}

/// The relay error for an upstream `error` object (`response.failed`, `error` events, or a
/// `failed` status), classified by its code.
pub(super) fn failure(error: Option<&Value>, default: ErrorCode) -> RelayError {
    let text = |key: &str| error.and_then(|e| e.get(key)).and_then(Value::as_str);
    // A top-level `error` stream event has `type: "error"`; an error object's `type` is a class.
    let code = text("code").or_else(|| text("type").filter(|kind| *kind != "error"));
    let message = text("message").unwrap_or("the upstream reported a failure without a message");
    let class = match code {
        Some(code) if code.contains("rate_limit") || code.contains("usage_limit") => ErrorCode::UpstreamRateLimited,
        Some(code) if code.contains("overloaded") || code == "slow_down" => ErrorCode::UpstreamOverloaded,
        _ => default,
    };
    let message = match code {
        Some(code) => format!("upstream error ({code}): {message}"),
        None => format!("upstream error: {message}"),
    };
    RelayError::new(class, message)
}

/// Maps a non-2xx JSON error body: OpenAI's `{"error": {...}}` or the ChatGPT backend's
/// `{"detail": ...}`. The client gets an OpenAI-shaped relay error with the upstream's status
/// and message.
pub(super) fn translate_error(status: u16, body: &Bytes) -> RelayError {
    let relay_error = status_error(status, upstream_message(body));
    let param =
        serde_json::from_slice::<Value>(body).ok().and_then(|v| v.pointer("/error/param")?.as_str().map(str::to_owned));
    match param {
        Some(param) => relay_error.with_param(param),
        None => relay_error,
    }
}
