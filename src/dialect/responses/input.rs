//! Chat messages -> Responses `instructions` and input items.

use serde_json::{json, Map, Value};

use super::request::{invalid, Builder};
use crate::dialect::client_request::tool_arguments_json;
use crate::error::RelayError;

impl Builder<'_> {
    /// Leading system/developer messages become `instructions`; the rest become input items.
    pub(super) fn translate_messages(&self, messages: &[Value]) -> Result<(Option<String>, Vec<Value>), RelayError> {
        let mut instructions: Option<Vec<String>> = None;
        let mut input = Vec::with_capacity(messages.len());
        let mut leading = true;
        for (index, message) in messages.iter().enumerate() {
            let role = message
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("messages[{index}].role is missing"), "messages"))?;
            let content = message.get("content").filter(|c| !c.is_null());
            match role {
                "system" | "developer" if leading => {
                    instructions.get_or_insert_with(Vec::new).push(plain_text(content));
                }
                "system" | "developer" => {
                    input.push(json!({ "role": role, "content": plain_text(content) }));
                }
                "user" => {
                    leading = false;
                    let content = self.user_content(content, index)?;
                    input.push(json!({ "role": "user", "content": content }));
                }
                "assistant" => {
                    leading = false;
                    self.assistant_items(message, index, &mut input)?;
                }
                "tool" => {
                    leading = false;
                    let call_id = message
                        .get("tool_call_id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid(format!("messages[{index}].tool_call_id is missing"), "messages"))?;
                    input.push(json!({
                        "type": "function_call_output",
                        "call_id": call_id,
                        "output": plain_text(content),
                    }));
                }
                "function" => {
                    leading = false;
                    self.unsupported("messages", "legacy function messages are not translated; use tool messages")?;
                }
                other => {
                    return Err(invalid(format!("messages[{index}].role {other:?} is not a chat role"), "messages"))
                }
            }
        }
        Ok((instructions.map(|texts| texts.join("\n\n")), input))
    }

    /// A user message's content: a string stays a string (Codex gets the explicit part list),
    /// parts become `input_text` / `input_image` / `input_file`.
    fn user_content(&self, content: Option<&Value>, index: usize) -> Result<Value, RelayError> {
        let parts = match content {
            None => return Ok(self.user_text(String::new())),
            Some(Value::String(text)) => return Ok(self.user_text(text.clone())),
            Some(Value::Array(parts)) => parts,
            Some(_) => {
                return Err(invalid(format!("messages[{index}].content must be a string or an array"), "messages"))
            }
        };
        let mut translated = Vec::with_capacity(parts.len());
        for part in parts {
            let kind = part.get("type").and_then(Value::as_str).unwrap_or("text");
            match kind {
                "text" => translated.push(json!({ "type": "input_text", "text": part_text(part) })),
                "image_url" => translated.push(input_image(part, index)?),
                "file" => translated.push(input_file(part)),
                "input_audio" => self.unsupported("messages", "audio input is not translated")?,
                other => self.unsupported("messages", &format!("content part type {other:?} is not translated"))?,
            }
        }
        Ok(Value::Array(translated))
    }

    fn user_text(&self, text: String) -> Value {
        if self.shape.codex {
            json!([{ "type": "input_text", "text": text }])
        } else {
            Value::String(text)
        }
    }

    /// An assistant turn: its text as an `output_text` message item, then one `function_call`
    /// item per tool call. `reasoning_content` from history is not sent back: reasoning items
    /// cannot be rebuilt without the upstream's ids and encrypted content.
    fn assistant_items(&self, message: &Value, index: usize, input: &mut Vec<Value>) -> Result<(), RelayError> {
        let mut parts = Vec::new();
        match message.get("content") {
            Some(Value::String(text)) if !text.is_empty() => parts.push(output_text(text)),
            Some(Value::Array(content)) => {
                for part in content {
                    match part.get("type").and_then(Value::as_str) {
                        Some("refusal") => parts.push(json!({
                            "type": "refusal",
                            "refusal": part.get("refusal").and_then(Value::as_str).unwrap_or_default(),
                        })),
                        _ => {
                            let text = part_text(part);
                            if !text.is_empty() {
                                parts.push(output_text(&text));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
            parts.push(json!({ "type": "refusal", "refusal": refusal }));
        }
        if !parts.is_empty() {
            input.push(json!({ "type": "message", "role": "assistant", "content": parts }));
        }
        let calls = match message.get("tool_calls") {
            Some(Value::Array(calls)) => calls.as_slice(),
            _ => &[],
        };
        for call in calls {
            if call.get("type").and_then(Value::as_str).is_some_and(|kind| kind != "function") {
                self.unsupported("messages", "only function tool calls are translated")?;
                continue;
            }
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("messages[{index}].tool_calls[].id is missing"), "messages"))?;
            let function = call.get("function");
            let name = function.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or_default();
            // Responses takes the arguments as JSON text, and absent ones as an empty object.
            let arguments = function
                .and_then(|f| f.get("arguments"))
                .filter(|arguments| !arguments.is_null())
                .map_or_else(|| "{}".to_owned(), |arguments| tool_arguments_json(arguments.clone()));
            input.push(json!({ "type": "function_call", "call_id": id, "name": name, "arguments": arguments }));
        }
        Ok(())
    }
}

/// The text of a content value: a string, or its text parts joined by newlines.
fn plain_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().map(part_text).filter(|t| !t.is_empty()).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

fn part_text(part: &Value) -> String {
    part.get("text").and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn output_text(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [] })
}

/// `{type: image_url, image_url: {url, detail}}` -> `{type: input_image, image_url, detail}`;
/// data URLs and http(s) URLs are both accepted by the Responses API.
fn input_image(part: &Value, index: usize) -> Result<Value, RelayError> {
    let image = part.get("image_url");
    let url = image
        .and_then(|image| image.get("url").or(Some(image)))
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("messages[{index}] image_url.url is missing"), "messages"))?;
    let detail = image.and_then(|image| image.get("detail")).and_then(Value::as_str).unwrap_or("auto");
    Ok(json!({ "type": "input_image", "image_url": url, "detail": detail }))
}

/// `{type: file, file: {file_data | file_id, filename}}` -> `{type: input_file, ...}`.
fn input_file(part: &Value) -> Value {
    let mut file = Map::new();
    file.insert("type".into(), Value::String("input_file".into()));
    if let Some(source) = part.get("file").and_then(Value::as_object) {
        for key in ["file_data", "file_id", "filename"] {
            if let Some(value) = source.get(key).filter(|v| !v.is_null()) {
                file.insert(key.into(), value.clone());
            }
        }
    }
    Value::Object(file)
}
