//! Anthropic message -> OpenAI `chat.completion`.

use serde::Deserialize;

use super::{arguments_string, finish_reason, invalid_response, WireBlock, WireUsage};
use crate::dialect::completion::{Completion, ToolCallOut};
use crate::dialect::{ResponseContext, Translated};
use crate::error::RelayError;

#[derive(Debug, Deserialize)]
struct WireMessage {
    id: Option<String>,
    model: Option<String>,
    /// Required: a 2xx body without it (`{"hello":"world"}`, an error object) is no message, and
    /// read as one it would be a silent empty answer.
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

/// Translates a complete Messages API response.
pub(super) fn translate(body: &[u8], ctx: &ResponseContext) -> Result<Translated, RelayError> {
    let message: WireMessage = serde_json::from_slice(body).map_err(|e| invalid_response("message", e, body))?;
    let mut completion = Completion {
        id: message.id.unwrap_or_else(|| ctx.completion_id()),
        model: message.model.unwrap_or_else(|| ctx.upstream_model.to_owned()),
        created: ctx.created,
        finish_reason: Some(finish_reason(message.stop_reason.as_deref())),
        usage: message.usage.map(WireUsage::to_usage),
        ..Completion::default()
    };
    let mut reasoning: Option<String> = None;
    for block in message.content {
        match block {
            WireBlock::Text { text } => completion.content.push_str(&text),
            WireBlock::Thinking { thinking } => reasoning.get_or_insert_with(String::new).push_str(&thinking),
            WireBlock::ToolUse { id, name, input } => completion.tool_calls.push(ToolCallOut {
                id,
                name,
                arguments: arguments_string(&input),
                extra_content: None,
            }),
            WireBlock::Other => {}
        }
    }
    completion.reasoning = reasoning;
    Ok(Translated::read(completion.to_bytes(), completion.usage))
}
