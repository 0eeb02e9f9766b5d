//! OpenAI chat request -> Anthropic Messages request body.

use base64::Engine;
use serde_json::{json, Map, Value};

use super::AnthropicMessages;
use crate::dialect::client_request::{
    invalid, plan_thinking, schema_or_any_object, unsupported, web_image_format, ClientRequest, Expressible,
    FunctionTool, ImageSource, Message, Part, ResponseFormat, ToolChoice,
};
use crate::dialect::ChatRequest;
use crate::error::RelayError;

/// Builds the `/v1/messages` body.
pub(super) fn build_body(dialect: &AnthropicMessages, request: &ChatRequest) -> Result<Value, RelayError> {
    let drop = dialect.drop_unsupported;
    // Messages takes no penalties, no audio and no results without a tool call id.
    let client = ClientRequest::parse(&request.body, drop, Expressible::default())?;
    let mut body = Map::new();
    body.insert("model".into(), request.upstream_model.clone().into());

    let mut max_tokens = client.max_tokens.unwrap_or(dialect.default_max_tokens);
    let mut thinking = None;
    if let Some(effort) = client.reasoning_effort {
        if let Some(budget) = effort.thinking_budget() {
            match plan_thinking(budget, client.max_tokens, dialect.default_max_tokens) {
                Some(plan) => {
                    max_tokens = plan.max_tokens;
                    thinking = Some(json!({"type": "enabled", "budget_tokens": plan.budget_tokens}));
                }
                None => unsupported(
                    drop,
                    "reasoning_effort",
                    "reasoning with a token limit under Anthropic's 1024-token minimum thinking budget",
                )?,
            }
        }
    }
    body.insert("max_tokens".into(), max_tokens.into());

    let (system, messages) = convert_messages(&client.messages, drop)?;
    if let Some(system) = system {
        body.insert("system".into(), system);
    }
    let tool_loop = in_tool_loop(&messages);
    body.insert("messages".into(), messages.into());

    if let Some(ToolChoice::Allowed { .. }) = client.tool_choice {
        unsupported(drop, "tool_choice", "an `allowed_tools` tool_choice")?;
    }
    if !client.tools.is_empty() {
        body.insert("tools".into(), client.tools.iter().map(convert_tool).collect::<Vec<_>>().into());
        if let Some(choice) = convert_tool_choice(client.tool_choice.as_ref(), client.parallel_tool_calls) {
            body.insert("tool_choice".into(), choice);
        }
    }
    if let Some(temperature) = client.temperature {
        body.insert("temperature".into(), temperature.into());
    }
    if let Some(top_p) = client.top_p {
        body.insert("top_p".into(), top_p.into());
    }
    if !client.stop.is_empty() {
        body.insert("stop_sequences".into(), client.stop.clone().into());
    }
    // Anthropic wants the last assistant turn of a tool loop to open with the signed thinking
    // block it produced, which OpenAI history cannot carry: such a request goes without thinking.
    if let Some(thinking) = thinking.filter(|_| !tool_loop) {
        body.insert("thinking".into(), thinking);
    }
    match &client.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            body.insert(
                "output_config".into(),
                json!({"format": {"type": "json_schema", "schema": schema_or_any_object(schema.as_ref())}}),
            );
        }
        Some(ResponseFormat::JsonObject) => unsupported(
            drop,
            "response_format",
            "response_format json_object (Anthropic needs a schema: use json_schema)",
        )?,
    }
    if let Some(user) = &client.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    body.insert("stream".into(), request.stream.into());
    Ok(Value::Object(body))
}

/// The top-level `system` (a string when it is one plain text, else text blocks) and the
/// alternating `messages`.
fn convert_messages(messages: &[Message], drop: bool) -> Result<(Option<Value>, Vec<Value>), RelayError> {
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in messages {
        let (role, blocks) = match message {
            Message::System(parts) => {
                for part in parts {
                    match part {
                        Part::Text { .. } => system.extend(convert_part(part, drop)?),
                        _ => unsupported(drop, "messages", "images or files in system messages")?,
                    }
                }
                continue;
            }
            Message::User(parts) => ("user", convert_parts(parts, drop)?),
            Message::Assistant { content, tool_calls, .. } => {
                let mut blocks = convert_parts(content, drop)?;
                for call in tool_calls {
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": call.arguments_object("messages")?,
                    }));
                }
                ("assistant", blocks)
            }
            Message::Tool { tool_call_id, content, .. } => {
                let mut block = Map::new();
                block.insert("type".into(), "tool_result".into());
                block.insert("tool_use_id".into(), tool_call_id.clone().into());
                match content.as_slice() {
                    [] => {}
                    [Part::Text { text, cache_control: None }] => {
                        block.insert("content".into(), text.clone().into());
                    }
                    parts => {
                        block.insert("content".into(), convert_parts(parts, drop)?.into());
                    }
                }
                ("user", vec![Value::Object(block)])
            }
        };
        // Anthropic rejects empty turns; an empty message carries nothing anyway.
        if blocks.is_empty() {
            continue;
        }
        // Consecutive same-role messages (several tool results, a tool result then a user
        // remark) become one turn, tool results first as Anthropic requires.
        match turns.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let system = match system.as_slice() {
        [] => None,
        [only] if only.get("cache_control").is_none() => only.get("text").cloned(),
        _ => Some(Value::Array(system)),
    };
    let messages = turns.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    Ok((system, messages))
}

/// Whether the last assistant turn calls tools, so the request continues a tool loop.
fn in_tool_loop(messages: &[Value]) -> bool {
    messages
        .iter()
        .rev()
        .find(|turn| turn["role"] == "assistant")
        .and_then(|turn| turn["content"].as_array())
        .is_some_and(|blocks| blocks.iter().any(|block| block["type"] == "tool_use"))
}

fn convert_parts(parts: &[Part], drop: bool) -> Result<Vec<Value>, RelayError> {
    parts.iter().filter_map(|part| convert_part(part, drop).transpose()).collect()
}

/// One content block; `None` for empty text, which Anthropic rejects, and for a file dropped as
/// unsupported.
fn convert_part(part: &Part, drop: bool) -> Result<Option<Value>, RelayError> {
    Ok(match part {
        Part::Text { text, cache_control } => {
            if text.is_empty() {
                return Ok(None);
            }
            let mut block = json!({"type": "text", "text": text});
            if let Some(cache_control) = cache_control {
                block["cache_control"] = cache_control.clone();
            }
            Some(block)
        }
        Part::Image(ImageSource::Base64 { media_type, data }) => Some(json!({
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": format!("image/{}", web_image_format(media_type, "Anthropic")?),
                "data": data,
            },
        })),
        Part::Image(ImageSource::Url(url)) => Some(json!({
            "type": "image",
            "source": {"type": "url", "url": url},
        })),
        Part::File { media_type, base64, filename } => {
            let Some(source) = document_source(media_type, base64, drop)? else {
                return Ok(None);
            };
            let mut block = json!({"type": "document", "source": source});
            if let Some(filename) = filename {
                block["title"] = filename.clone().into();
            }
            Some(block)
        }
        // Refused while parsing: audio input is not expressible here.
        Part::Audio { .. } => None,
    })
}

/// A document's `source`: Anthropic reads PDFs as base64 and any other document as plain text, so
/// a text file (`text/*`, JSON, XML) is decoded and sent as text. Any other file is refused here,
/// where the error can name its type, rather than by Anthropic.
fn document_source(media_type: &str, base64: &str, drop: bool) -> Result<Option<Value>, RelayError> {
    if media_type == "application/pdf" {
        return Ok(Some(json!({"type": "base64", "media_type": media_type, "data": base64})));
    }
    if !(media_type.starts_with("text/") || matches!(media_type, "application/json" | "application/xml")) {
        unsupported(drop, "messages", &format!("a file of type {media_type} (Anthropic reads PDF and text files)"))?;
        return Ok(None);
    }
    let text = base64::engine::general_purpose::STANDARD
        .decode(base64.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| invalid("messages", format!("a {media_type} file's `file_data` is not base64 of UTF-8 text")))?;
    Ok(Some(json!({"type": "text", "media_type": "text/plain", "data": text})))
}

fn convert_tool(tool: &FunctionTool) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), tool.name.clone().into());
    if let Some(description) = &tool.description {
        out.insert("description".into(), description.clone().into());
    }
    out.insert("input_schema".into(), tool.parameters_or_empty());
    Value::Object(out)
}

/// `tool_choice`, with `parallel_tool_calls: false` as `disable_parallel_tool_use` (which needs a
/// choice to sit on: `auto` when the client named none).
fn convert_tool_choice(choice: Option<&ToolChoice>, parallel_tool_calls: Option<bool>) -> Option<Value> {
    let sequential = parallel_tool_calls == Some(false);
    let mut out = match choice {
        // An `allowed_tools` choice was refused, or is dropped.
        None | Some(ToolChoice::Allowed { .. }) if sequential => json!({"type": "auto"}),
        None | Some(ToolChoice::Allowed { .. }) => return None,
        Some(ToolChoice::Auto) => json!({"type": "auto"}),
        Some(ToolChoice::Required) => json!({"type": "any"}),
        Some(ToolChoice::Function(name)) => json!({"type": "tool", "name": name}),
        Some(ToolChoice::None) => return Some(json!({"type": "none"})),
    };
    if sequential {
        out["disable_parallel_tool_use"] = true.into();
    }
    Some(out)
}
