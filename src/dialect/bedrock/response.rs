//! Converse response -> OpenAI `chat.completion`.

use serde::Deserialize;
use serde_json::Value;

use super::{finish_reason, invalid_response, WireUsage};
use crate::dialect::completion::{Completion, ToolCallOut};
use crate::dialect::{ResponseContext, Translated};
use crate::error::RelayError;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    output: Option<WireOutput>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WireOutput {
    message: Option<WireMessage>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Vec<WireBlock>,
}

/// A content block: a union, so exactly one member is set; members this dialect does not show
/// (images, citations, guard content) are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireBlock {
    text: Option<String>,
    tool_use: Option<WireToolUse>,
    reasoning_content: Option<WireReasoning>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireToolUse {
    tool_use_id: String,
    name: String,
    #[serde(default)]
    input: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReasoning {
    /// Absent for `redactedContent`, which is omitted.
    reasoning_text: Option<WireReasoningText>,
}

#[derive(Debug, Deserialize)]
struct WireReasoningText {
    #[serde(default)]
    text: String,
}

/// Translates a complete Converse response.
pub(super) fn translate(body: &[u8], ctx: &ResponseContext) -> Result<Translated, RelayError> {
    let response: WireResponse = serde_json::from_slice(body).map_err(|e| invalid_response("response", e, body))?;
    let mut completion = Completion {
        id: ctx.completion_id(),
        model: ctx.upstream_model.to_owned(),
        created: ctx.created,
        finish_reason: Some(finish_reason(response.stop_reason.as_deref())),
        usage: response.usage.map(WireUsage::to_usage),
        ..Completion::default()
    };
    let blocks = response.output.and_then(|o| o.message).map(|m| m.content).unwrap_or_default();
    let mut reasoning: Option<String> = None;
    for block in blocks {
        if let Some(text) = block.text {
            completion.content.push_str(&text);
        }
        if let Some(text) = block.reasoning_content.and_then(|r| r.reasoning_text).map(|r| r.text) {
            reasoning.get_or_insert_with(String::new).push_str(&text);
        }
        if let Some(tool) = block.tool_use {
            let arguments = match tool.input {
                Value::Null => "{}".to_owned(),
                input => input.to_string(),
            };
            completion.tool_calls.push(ToolCallOut {
                id: tool.tool_use_id,
                name: tool.name,
                arguments,
                extra_content: None,
            });
        }
    }
    completion.reasoning = reasoning;
    Ok(Translated::read(completion.to_bytes(), completion.usage))
}
