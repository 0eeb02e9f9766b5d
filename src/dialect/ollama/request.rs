//! OpenAI chat request -> Ollama `/api/chat` request.

use serde_json::{json, Map, Value};

use crate::dialect::openai_io::{
    parse_data_url, tool_name_for, unsupported, ChatBody, Message, PartRef, ResponseFormat,
    ToolChoice,
};
use crate::error::{ErrorCode, RelayError};

/// Builds the `/api/chat` body.
pub(super) fn translate(
    body: &ChatBody,
    model: &str,
    stream: bool,
    drop_unsupported: bool,
) -> Result<Value, RelayError> {
    body.check_untranslatable(drop_unsupported)?;
    let mut request = Map::new();
    request.insert("model".into(), Value::String(model.to_owned()));
    request.insert(
        "messages".into(),
        Value::Array(messages(body.messages(), drop_unsupported)?),
    );
    // Ollama streams unless told otherwise.
    request.insert("stream".into(), Value::Bool(stream));

    if let Some(tools) = tools(body, drop_unsupported)? {
        request.insert("tools".into(), tools);
    }
    match body.response_format()? {
        None => {}
        Some(ResponseFormat::JsonObject) | Some(ResponseFormat::JsonSchema { schema: None }) => {
            request.insert("format".into(), Value::String("json".into()));
        }
        Some(ResponseFormat::JsonSchema {
            schema: Some(schema),
        }) => {
            request.insert("format".into(), schema);
        }
    }
    if let Some(effort) = &body.reasoning_effort {
        if let Some(think) = think(effort, drop_unsupported)? {
            request.insert("think".into(), think);
        }
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
        let role = match message.role.as_str() {
            "developer" => "system",
            role @ ("system" | "user" | "assistant" | "tool") => role,
            // The legacy function-result role is a tool result named by `name`.
            "function" => "tool",
            other => {
                return Err(RelayError::new(
                    ErrorCode::InvalidRequest,
                    format!("unknown message role {other:?}"),
                )
                .with_param(format!("{param}.role")))
            }
        };
        let (content, images) = content(message, role, &param, drop_unsupported)?;
        let mut converted = Map::new();
        converted.insert("role".into(), Value::String(role.into()));
        converted.insert("content".into(), Value::String(content));
        if !images.is_empty() {
            converted.insert("images".into(), Value::from(images));
        }
        if role == "assistant" {
            if let Some(thinking) = message
                .reasoning_content
                .as_deref()
                .filter(|t| !t.is_empty())
            {
                converted.insert("thinking".into(), Value::String(thinking.into()));
            }
            let calls = message.tool_calls();
            if !calls.is_empty() {
                let mut converted_calls = Vec::with_capacity(calls.len());
                for (call_index, call) in calls.iter().enumerate() {
                    let arguments = call.arguments_object(&format!(
                        "{param}.tool_calls[{call_index}].function.arguments"
                    ))?;
                    let mut function_call = json!({
                        "function": { "name": call.function.name, "arguments": arguments }
                    });
                    if !call.id.is_empty() {
                        function_call["id"] = Value::String(call.id.clone());
                    }
                    converted_calls.push(function_call);
                }
                converted.insert("tool_calls".into(), Value::Array(converted_calls));
            }
        }
        if role == "tool" {
            // Ollama pairs a result with its call by the tool's name; the OpenAI message only
            // has the call id, so the name comes from the assistant message that made the call.
            let call_id = message.tool_call_id.as_deref().unwrap_or_default();
            let name = tool_name_for(messages, index, call_id).or(message.name.as_deref());
            if let Some(name) = name {
                converted.insert("tool_name".into(), Value::String(name.into()));
            }
            if !call_id.is_empty() {
                converted.insert("tool_call_id".into(), Value::String(call_id.into()));
            }
        }
        out.push(Value::Object(converted));
    }
    Ok(out)
}

/// The message text (text parts joined by newlines) and its images as base64 strings. Ollama
/// takes only inline images: links are refused unless dropped, as are audio and files.
fn content(
    message: &Message,
    role: &str,
    param: &str,
    drop_unsupported: bool,
) -> Result<(String, Vec<String>), RelayError> {
    let mut texts: Vec<&str> = Vec::new();
    let mut images = Vec::new();
    for part in message.parts() {
        match part {
            PartRef::Text(text) => texts.push(text),
            PartRef::Image(url) if role == "user" || role == "system" => {
                match parse_data_url(url) {
                    Some((_, data)) => images.push(data.to_owned()),
                    None if url.starts_with("http://") || url.starts_with("https://") => {
                        unsupported(
                            drop_unsupported,
                            param,
                            "Ollama takes only inline images; send the image as a base64 data URL",
                        )?
                    }
                    None => {
                        return Err(RelayError::new(
                            ErrorCode::InvalidRequest,
                            "image_url must be a base64 data URL",
                        )
                        .with_param(param))
                    }
                }
            }
            PartRef::Image(_) => unsupported(
                drop_unsupported,
                param,
                "only user messages can hold images",
            )?,
            PartRef::Audio(_) => {
                unsupported(drop_unsupported, param, "Ollama does not take audio input")?
            }
            PartRef::File(_) => {
                unsupported(drop_unsupported, param, "Ollama does not take file input")?
            }
            PartRef::Other => {
                unsupported(drop_unsupported, param, "unsupported content part type")?
            }
        }
    }
    Ok((texts.join("\n"), images))
}

/// `tools` pass through in OpenAI's shape (minus `strict`). Ollama has no `tool_choice`:
/// `none` is honoured by not offering the tools and `auto` is its behaviour; forcing a call
/// (`required`, a named function, `allowed_tools` in required mode) cannot be expressed.
fn tools(body: &ChatBody, drop_unsupported: bool) -> Result<Option<Value>, RelayError> {
    let choice = body.tool_choice()?;
    let allowed = match &choice {
        Some(ToolChoice::None) => return Ok(None),
        Some(ToolChoice::Required)
        | Some(ToolChoice::Named(_))
        | Some(ToolChoice::Allowed { required: true, .. }) => {
            unsupported(
                drop_unsupported,
                "tool_choice",
                "Ollama cannot be made to call a tool",
            )?;
            None
        }
        Some(ToolChoice::Allowed {
            required: false,
            names,
        }) => Some(names),
        Some(ToolChoice::Auto) | None => None,
    };
    let mut tools = Vec::new();
    for (index, tool) in body.tools().iter().enumerate() {
        let Some(function) = tool.function() else {
            unsupported(
                drop_unsupported,
                &format!("tools[{index}]"),
                "only function tools are supported",
            )?;
            continue;
        };
        if allowed.is_some_and(|names| !names.contains(&function.name)) {
            continue;
        }
        let mut definition = Map::new();
        definition.insert("name".into(), Value::String(function.name.clone()));
        if let Some(description) = &function.description {
            definition.insert("description".into(), Value::String(description.clone()));
        }
        let parameters = function
            .parameters
            .clone()
            .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
        definition.insert("parameters".into(), parameters);
        tools.push(json!({ "type": "function", "function": definition }));
    }
    Ok((!tools.is_empty()).then(|| Value::Array(tools)))
}

/// `reasoning_effort` -> `think`: `none` turns thinking off; the levels pass as Ollama's level
/// strings (models without levels treat any level as "think"), `minimal` as `low`, `xhigh` as
/// `max`.
fn think(effort: &str, drop_unsupported: bool) -> Result<Option<Value>, RelayError> {
    let think = match effort {
        "none" => Value::Bool(false),
        "minimal" | "low" => "low".into(),
        "medium" => "medium".into(),
        "high" => "high".into(),
        "xhigh" => "max".into(),
        other => {
            unsupported(
                drop_unsupported,
                "reasoning_effort",
                &format!("unknown reasoning effort {other:?}"),
            )?;
            return Ok(None);
        }
    };
    Ok(Some(think))
}

/// Sampling and length options (Modelfile parameter names).
fn options(body: &ChatBody) -> Map<String, Value> {
    let mut options = Map::new();
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            options.insert(key.into(), value);
        }
    };
    set("num_predict", body.max_output_tokens().map(Value::from));
    set("temperature", body.temperature.map(Value::from));
    set("top_p", body.top_p.map(Value::from));
    let stops = body.stop_sequences();
    set("stop", (!stops.is_empty()).then(|| Value::from(stops)));
    set("seed", body.seed.map(Value::from));
    set("presence_penalty", body.presence_penalty.map(Value::from));
    set("frequency_penalty", body.frequency_penalty.map(Value::from));
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate_json(body: Value, stream: bool) -> Result<Value, RelayError> {
        let parsed = ChatBody::parse(body.to_string().as_bytes())?;
        translate(&parsed, "llama3.2", stream, false)
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
        assert_eq!(
            translate_json(json!({"messages": []}), true).unwrap()["stream"],
            true
        );
    }

    #[test]
    fn linked_images_are_refused_unless_dropped() {
        let body = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]});
        let err = translate_json(body.clone(), false).unwrap_err();
        assert_eq!(
            (err.code, err.param.as_deref()),
            (ErrorCode::UnsupportedParameter, Some("messages[0]"))
        );
        let parsed = ChatBody::parse(body.to_string().as_bytes()).unwrap();
        let dropped = translate(&parsed, "m", false, true).unwrap();
        assert_eq!(
            dropped["messages"][0],
            json!({"role": "user", "content": "look"})
        );
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
        assert_eq!(
            (sent["format"].as_str(), sent["think"].as_str()),
            (Some("json"), Some("high"))
        );
        let schema = translate_json(
            json!({"messages": [], "reasoning_effort": "none",
                   "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}}),
            true,
        )
        .unwrap();
        assert_eq!(
            (schema["format"].clone(), schema["think"].clone()),
            (json!({"type": "object"}), json!(false))
        );
    }
}
