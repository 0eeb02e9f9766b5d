//! OpenAI chat request -> Ollama `/api/chat` request.

use serde_json::{json, Map, Value};

use crate::dialect::client_request::{
    invalid, tool_name_for, unsupported, ClientRequest, ImageSource, Message, Part, ReasoningEffort, ResponseFormat,
    ToolChoice,
};
use crate::error::RelayError;

/// Builds the `/api/chat` body.
pub(super) fn translate(
    body: &ClientRequest,
    model: &str,
    stream: bool,
    drop_unsupported: bool,
) -> Result<Value, RelayError> {
    let mut request = Map::new();
    request.insert("model".into(), Value::String(model.to_owned()));
    request.insert("messages".into(), Value::Array(messages(&body.messages, drop_unsupported)?));
    // Ollama streams unless told otherwise.
    request.insert("stream".into(), Value::Bool(stream));

    if let Some(tools) = tools(body, drop_unsupported)? {
        request.insert("tools".into(), tools);
    }
    match &body.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) | Some(ResponseFormat::JsonSchema { schema: None, .. }) => {
            request.insert("format".into(), Value::String("json".into()));
        }
        Some(ResponseFormat::JsonSchema { schema: Some(schema), .. }) => {
            request.insert("format".into(), schema.clone());
        }
    }
    if let Some(effort) = body.reasoning_effort {
        request.insert("think".into(), think(effort));
    }
    let options = options(body);
    if !options.is_empty() {
        request.insert("options".into(), Value::Object(options));
    }
    Ok(Value::Object(request))
}

fn messages(messages: &[Message], drop_unsupported: bool) -> Result<Vec<Value>, RelayError> {
    let mut out = Vec::with_capacity(messages.len());
    for (index, message) in messages.iter().enumerate() {
        let param = format!("messages[{index}]");
        let (role, parts) = match message {
            Message::System(parts) => ("system", parts),
            Message::User(parts) => ("user", parts),
            Message::Assistant { content, .. } => ("assistant", content),
            Message::Tool { content, .. } => ("tool", content),
        };
        let (content, images) = content(parts, role, &param, drop_unsupported)?;
        let mut converted = Map::new();
        converted.insert("role".into(), Value::String(role.into()));
        converted.insert("content".into(), Value::String(content));
        if !images.is_empty() {
            converted.insert("images".into(), Value::from(images));
        }
        match message {
            Message::Assistant { tool_calls, reasoning, .. } => {
                if let Some(thinking) = reasoning.as_deref().filter(|t| !t.is_empty()) {
                    converted.insert("thinking".into(), Value::String(thinking.into()));
                }
                if !tool_calls.is_empty() {
                    let mut converted_calls = Vec::with_capacity(tool_calls.len());
                    for (call_index, call) in tool_calls.iter().enumerate() {
                        let arguments =
                            call.arguments_object(&format!("{param}.tool_calls[{call_index}].function.arguments"))?;
                        let mut function_call = json!({
                            "function": { "name": call.name, "arguments": arguments }
                        });
                        if !call.id.is_empty() {
                            function_call["id"] = Value::String(call.id.clone());
                        }
                        converted_calls.push(function_call);
                    }
                    converted.insert("tool_calls".into(), Value::Array(converted_calls));
                }
            }
            Message::Tool { tool_call_id, name, .. } => {
                // Ollama pairs a result with its call by the tool's name; the OpenAI message only
                // has the call id, so the name comes from the assistant message that made the
                // call (a legacy `function` result names itself).
                let name = tool_name_for(messages, index, tool_call_id).or(name.as_deref());
                if let Some(name) = name {
                    converted.insert("tool_name".into(), Value::String(name.into()));
                }
                if !tool_call_id.is_empty() {
                    converted.insert("tool_call_id".into(), Value::String(tool_call_id.clone()));
                }
            }
            Message::System(_) | Message::User(_) => {}
        }
        out.push(Value::Object(converted));
    }
    Ok(out)
}

/// The message text (text parts joined by newlines) and its images as base64 strings. Ollama
/// takes only inline images: links are refused unless dropped, as are files.
fn content(
    parts: &[Part],
    role: &str,
    param: &str,
    drop_unsupported: bool,
) -> Result<(String, Vec<String>), RelayError> {
    let mut texts: Vec<&str> = Vec::new();
    let mut images = Vec::new();
    for part in parts {
        match part {
            Part::Text { text, .. } => texts.push(text),
            Part::Image(source) if role == "user" || role == "system" => match source {
                ImageSource::Base64 { data, .. } => images.push(data.clone()),
                ImageSource::Url(url) if url.starts_with("http://") || url.starts_with("https://") => unsupported(
                    drop_unsupported,
                    param,
                    "an image link (Ollama takes only inline images: send a base64 data URL)",
                )?,
                ImageSource::Url(_) => return Err(invalid(param, "image_url must be a base64 data URL")),
            },
            Part::Image(_) => unsupported(drop_unsupported, param, "an image outside user and system messages")?,
            // Refused while parsing: `EXPRESSIBLE.audio_input` is false.
            Part::Audio { .. } => {}
            Part::File { .. } => unsupported(drop_unsupported, param, "file input")?,
        }
    }
    Ok((texts.join("\n"), images))
}

/// `tools` pass through in OpenAI's shape (minus `strict`). Ollama has no `tool_choice`:
/// `none` is honoured by not offering the tools and `auto` is its behaviour; forcing a call
/// (`required`, a named function, `allowed_tools` in required mode) cannot be expressed.
fn tools(body: &ClientRequest, drop_unsupported: bool) -> Result<Option<Value>, RelayError> {
    let allowed = match &body.tool_choice {
        Some(ToolChoice::None) => return Ok(None),
        Some(ToolChoice::Required)
        | Some(ToolChoice::Function(_))
        | Some(ToolChoice::Allowed { required: true, .. }) => {
            unsupported(drop_unsupported, "tool_choice", "forcing a tool call (Ollama has no `tool_choice`)")?;
            None
        }
        Some(ToolChoice::Allowed { required: false, names }) => Some(names),
        Some(ToolChoice::Auto) | None => None,
    };
    let tools: Vec<Value> = body
        .tools
        .iter()
        .filter(|function| allowed.is_none_or(|names| names.contains(&function.name)))
        .map(|function| {
            let mut definition = Map::new();
            definition.insert("name".into(), Value::String(function.name.clone()));
            if let Some(description) = &function.description {
                definition.insert("description".into(), Value::String(description.clone()));
            }
            definition.insert("parameters".into(), function.parameters_or_empty());
            json!({ "type": "function", "function": definition })
        })
        .collect();
    Ok((!tools.is_empty()).then(|| Value::Array(tools)))
}

/// `reasoning_effort` -> `think`: `none` turns thinking off; the levels pass as Ollama's level
/// strings (models without levels treat any level as "think"), `minimal` as `low`, `xhigh` as
/// `max`.
fn think(effort: ReasoningEffort) -> Value {
    match effort {
        ReasoningEffort::None => Value::Bool(false),
        ReasoningEffort::Minimal | ReasoningEffort::Low => "low".into(),
        ReasoningEffort::Medium => "medium".into(),
        ReasoningEffort::High => "high".into(),
        ReasoningEffort::XHigh => "max".into(),
    }
}

/// Sampling and length options (Modelfile parameter names).
fn options(body: &ClientRequest) -> Map<String, Value> {
    let mut options = Map::new();
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            options.insert(key.into(), value);
        }
    };
    set("num_predict", body.max_tokens.map(Value::from));
    set("temperature", body.temperature.map(Value::from));
    set("top_p", body.top_p.map(Value::from));
    set("stop", (!body.stop.is_empty()).then(|| Value::from(body.stop.clone())));
    set("seed", body.seed.map(Value::from));
    set("presence_penalty", body.presence_penalty.map(Value::from));
    set("frequency_penalty", body.frequency_penalty.map(Value::from));
    options
}

#[cfg(test)]
mod tests {
    use super::super::EXPRESSIBLE;
    use super::*;
    use crate::error::ErrorCode;

    fn parse(body: &Value, drop_unsupported: bool) -> Result<ClientRequest, RelayError> {
        ClientRequest::parse(body.to_string().as_bytes(), drop_unsupported, EXPRESSIBLE)
    }

    fn translate_json(body: Value, stream: bool) -> Result<Value, RelayError> {
        translate(&parse(&body, false)?, "llama3.2", stream, false)
    }

    #[test]
    fn messages_roles_images_and_stream_flag() {
        let sent = translate_json(
            json!({"messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "what is"}, {"type": "text", "text": "this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]},
            ]}),
            false,
        )
        .unwrap();
        assert_eq!(
            sent,
            json!({"model": "llama3.2", "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "what is\nthis?", "images": ["iVBO"]}
            ], "stream": false})
        );
        assert_eq!(translate_json(json!({"messages": []}), true).unwrap()["stream"], true);
    }

    #[test]
    fn linked_images_are_refused_unless_dropped() {
        let body = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]});
        let err = translate_json(body.clone(), false).unwrap_err();
        assert_eq!((err.code, err.param.as_deref()), (ErrorCode::UnsupportedParameter, Some("messages[0]")));
        let parsed = parse(&body, true).unwrap();
        let dropped = translate(&parsed, "m", false, true).unwrap();
        assert_eq!(dropped["messages"][0], json!({"role": "user", "content": "look"}));
    }

    #[test]
    fn tool_calls_and_results_carry_objects_and_names() {
        let sent = translate_json(
            json!({"messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "reasoning_content": "use the tool",
                 "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "getWeather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "11 degrees"}
            ]}),
            false,
        )
        .unwrap();
        assert_eq!(
            sent["messages"][1],
            json!({"role": "assistant", "content": "", "thinking": "use the tool", "tool_calls": [
                {"function": {"name": "getWeather", "arguments": {"city": "Oslo"}}, "id": "c1"}]})
        );
        assert_eq!(
            sent["messages"][2],
            json!({"role": "tool", "content": "11 degrees", "tool_name": "getWeather", "tool_call_id": "c1"})
        );
    }

    #[test]
    fn tools_pass_through_and_tool_choice_is_honoured_where_possible() {
        let base = json!({"messages": [], "tools": [
            {"type": "function", "function": {"name": "f", "description": "F", "strict": true,
                "parameters": {"type": "object", "properties": {}}}},
            {"type": "function", "function": {"name": "g"}}]});
        let sent = translate_json(base.clone(), false).unwrap();
        assert_eq!(
            sent["tools"],
            json!([
                {"type": "function", "function": {"name": "f", "description": "F", "parameters": {"type": "object", "properties": {}}}},
                {"type": "function", "function": {"name": "g", "parameters": {"type": "object", "properties": {}}}}
            ])
        );
        let mut none = base.clone();
        none["tool_choice"] = json!("none");
        assert!(translate_json(none, false).unwrap().get("tools").is_none());
        let mut required = base;
        required["tool_choice"] = json!("required");
        let err = translate_json(required, false).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("tool_choice"));
    }

    #[test]
    fn options_format_and_think() {
        let sent = translate_json(
            json!({"messages": [], "max_completion_tokens": 50, "temperature": 0, "top_p": 0.5, "stop": "END",
                   "seed": 7, "frequency_penalty": 0.1, "response_format": {"type": "json_object"}, "reasoning_effort": "high"}),
            true,
        )
        .unwrap();
        assert_eq!(
            sent["options"],
            json!({"num_predict": 50, "temperature": 0.0, "top_p": 0.5, "stop": ["END"], "seed": 7, "frequency_penalty": 0.1})
        );
        assert_eq!((sent["format"].as_str(), sent["think"].as_str()), (Some("json"), Some("high")));
        let schema = translate_json(
            json!({"messages": [], "reasoning_effort": "none",
                   "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}}),
            true,
        )
        .unwrap();
        assert_eq!((schema["format"].clone(), schema["think"].clone()), (json!({"type": "object"}), json!(false)));
    }
}
