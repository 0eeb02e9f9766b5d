//! OpenAI chat request -> Gemini `GenerateContentRequest`.

use serde_json::{json, Map, Value};

use super::THOUGHT_SIGNATURE_SENTINEL;
use crate::dialect::client_request::{
    invalid, tool_name_for, unsupported, ClientRequest, ImageSource, Message, Part, ReasoningEffort, ResponseFormat,
    ToolCall, ToolChoice,
};
use crate::error::RelayError;

/// Builds the `generateContent` body for `model` (the model id without `models/`).
pub(super) fn translate(body: &ClientRequest, model: &str, drop_unsupported: bool) -> Result<Value, RelayError> {
    let generation = GenerationFamily::of(model);
    let mut request = Map::new();

    let (system, contents) = conversation(&body.messages, generation, drop_unsupported)?;
    request.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        request.insert("systemInstruction".into(), json!({ "parts": system }));
    }

    if let Some((tools, tool_config)) = tools(body) {
        request.insert("tools".into(), tools);
        if let Some(config) = tool_config {
            request.insert("toolConfig".into(), config);
        }
    }

    let config = generation_config(body, generation);
    if !config.is_empty() {
        request.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(request))
}

/// Which thinking controls a model takes: Gemini 3 and later are steered by `thinkingLevel`
/// and require thought signatures on replayed function calls; earlier models (and names this
/// relay cannot date, such as `gemini-flash-latest`) take `thinkingBudget`, which Gemini 3 also
/// still accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GenerationFamily {
    Budget,
    Levels,
}

impl GenerationFamily {
    pub(super) fn of(model: &str) -> Self {
        let major: String =
            model.strip_prefix("gemini-").unwrap_or_default().chars().take_while(char::is_ascii_digit).collect();
        match major.parse::<u32>() {
            Ok(major) if major >= 3 => GenerationFamily::Levels,
            _ => GenerationFamily::Budget,
        }
    }
}

/// The system instruction parts and the `contents` turns.
fn conversation(
    messages: &[Message],
    generation: GenerationFamily,
    drop_unsupported: bool,
) -> Result<(Vec<Value>, Vec<Value>), RelayError> {
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // Whether the last turn holds only function responses, so that the answers to one
    // assistant turn's parallel calls travel together in one user turn, as Gemini requires.
    let mut last_is_responses = false;

    for (index, message) in messages.iter().enumerate() {
        let param = format!("messages[{index}]");
        match message {
            Message::System(parts) => {
                for part in parts {
                    match part {
                        Part::Text { text, .. } if !text.is_empty() => system.push(json!({ "text": text })),
                        Part::Text { .. } => {}
                        _ => unsupported(drop_unsupported, &param, "anything but text in system messages")?,
                    }
                }
            }
            Message::User(parts) => {
                let parts = user_parts(parts);
                if !parts.is_empty() {
                    contents.push(json!({ "role": "user", "parts": parts }));
                    last_is_responses = false;
                }
            }
            Message::Assistant { content, tool_calls, .. } => {
                let parts = model_parts(content, tool_calls, &param, generation)?;
                if !parts.is_empty() {
                    contents.push(json!({ "role": "model", "parts": parts }));
                    last_is_responses = false;
                }
            }
            Message::Tool { tool_call_id, name, content } => {
                let part = function_response(
                    tool_call_id,
                    name.as_deref(),
                    content,
                    &messages[..index],
                    &param,
                    drop_unsupported,
                )?;
                match contents.last_mut().and_then(|turn| turn["parts"].as_array_mut()) {
                    Some(parts) if last_is_responses => parts.push(part),
                    _ => contents.push(json!({ "role": "user", "parts": [part] })),
                }
                last_is_responses = true;
            }
        }
    }
    Ok((system, contents))
}

fn user_parts(parts: &[Part]) -> Vec<Value> {
    parts
        .iter()
        .filter_map(|part| match part {
            // Gemini rejects empty text parts.
            Part::Text { text, .. } if text.is_empty() => None,
            Part::Text { text, .. } => Some(json!({ "text": text })),
            Part::Image(source) => Some(media_part(source)),
            Part::Audio { data, format } => Some(json!({
                "inlineData": { "mimeType": format!("audio/{format}"), "data": data }
            })),
            Part::File { media_type, base64, .. } => {
                Some(json!({ "inlineData": { "mimeType": media_type, "data": base64 } }))
            }
        })
        .collect()
}

/// An image: inline bytes for a data URL; a link (`http(s)://` or `gs://`) becomes `fileData`,
/// which Gemini fetches itself (Files API URIs, YouTube and public URLs, depending on the
/// model).
fn media_part(source: &ImageSource) -> Value {
    match source {
        ImageSource::Base64 { media_type, data } => {
            json!({ "inlineData": { "mimeType": media_type, "data": data } })
        }
        ImageSource::Url(url) => {
            let mut file = json!({ "fileUri": url });
            if let Some(mime) = mime_from_extension(url) {
                file["mimeType"] = Value::String(mime.into());
            }
            json!({ "fileData": file })
        }
    }
}

fn mime_from_extension(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let extension = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

/// An assistant turn: its text, then one `functionCall` part per tool call. Earlier reasoning
/// is not replayed: Gemini reads thoughts only through signatures.
fn model_parts(
    content: &[Part],
    calls: &[ToolCall],
    param: &str,
    generation: GenerationFamily,
) -> Result<Vec<Value>, RelayError> {
    let mut parts = Vec::new();
    for part in content {
        if let Part::Text { text, .. } = part {
            if !text.is_empty() {
                parts.push(json!({ "text": text }));
            }
        }
    }
    let any_signed = calls.iter().any(|call| thought_signature(call).is_some());
    for (index, call) in calls.iter().enumerate() {
        let args = call.arguments_object(&format!("{param}.tool_calls[{index}].function.arguments"))?;
        let mut function_call = Map::new();
        if !call.id.is_empty() {
            function_call.insert("id".into(), Value::String(call.id.clone()));
        }
        function_call.insert("name".into(), Value::String(call.name.clone()));
        function_call.insert("args".into(), Value::Object(args));
        let mut part = json!({ "functionCall": function_call });
        if let Some(signature) = thought_signature(call) {
            part["thoughtSignature"] = Value::String(signature.to_owned());
        } else if index == 0 && !any_signed && generation == GenerationFamily::Levels {
            // Gemini 3 answers 400 to a replayed call without its signature (clients that drop
            // `extra_content`); Google documents this sentinel for such histories.
            part["thoughtSignature"] = Value::String(THOUGHT_SIGNATURE_SENTINEL.into());
        }
        parts.push(part);
    }
    Ok(parts)
}

fn thought_signature(call: &ToolCall) -> Option<&str> {
    call.extra_content.as_ref()?.pointer("/google/thought_signature")?.as_str()
}

/// A tool result as a `functionResponse`, named after the call it answers (OpenAI tool
/// messages carry only the call id). A JSON object result is passed as the response itself;
/// anything else is wrapped as `{"output": ...}`, the key Gemini documents for function output.
fn function_response(
    tool_call_id: &str,
    name: Option<&str>,
    content: &[Part],
    earlier: &[Message],
    param: &str,
    drop_unsupported: bool,
) -> Result<Value, RelayError> {
    let call_id = Some(tool_call_id).filter(|id| !id.is_empty());
    let name = call_id.and_then(|id| tool_name_for(earlier, earlier.len(), id)).or(name).ok_or_else(|| {
        invalid(
            &format!("{param}.tool_call_id"),
            format!(
                "tool message answers tool_call_id {:?}, which no earlier assistant message called",
                call_id.unwrap_or_default()
            ),
        )
    })?;
    let mut text = String::new();
    for part in content {
        match part {
            Part::Text { text: fragment, .. } => text.push_str(fragment),
            _ => unsupported(drop_unsupported, param, "anything but text in tool results")?,
        }
    }
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => Value::Object(object),
        _ => json!({ "output": text }),
    };
    let mut function_response = Map::new();
    if let Some(id) = call_id {
        function_response.insert("id".into(), Value::String(id.to_owned()));
    }
    function_response.insert("name".into(), Value::String(name.to_owned()));
    function_response.insert("response".into(), response);
    Ok(json!({ "functionResponse": function_response }))
}

/// `tools` (one `functionDeclarations` entry) and `toolConfig`, or `None` without functions.
/// Parameters go as `parametersJsonSchema`, which takes the client's JSON Schema as written
/// (the older `parameters` field takes only an OpenAPI subset). `strict` has no equivalent and
/// is dropped.
fn tools(body: &ClientRequest) -> Option<(Value, Option<Value>)> {
    let choice = body.tool_choice.as_ref();
    let allowed_auto = match choice {
        Some(ToolChoice::Allowed { required: false, names }) => Some(names),
        _ => None,
    };
    let mut declarations = Vec::new();
    for function in &body.tools {
        // `allowed_tools` in auto mode: Gemini restricts names only when forcing a call, so the
        // other functions are simply not declared.
        if allowed_auto.is_some_and(|names| !names.contains(&function.name)) {
            continue;
        }
        let mut declaration = Map::new();
        declaration.insert("name".into(), Value::String(function.name.clone()));
        if let Some(description) = &function.description {
            declaration.insert("description".into(), Value::String(description.clone()));
        }
        if let Some(parameters) = &function.parameters {
            declaration.insert("parametersJsonSchema".into(), parameters.clone());
        }
        declarations.push(Value::Object(declaration));
    }
    if declarations.is_empty() {
        return None;
    }
    let calling = match choice {
        None => None,
        Some(ToolChoice::Auto) | Some(ToolChoice::Allowed { required: false, .. }) => Some(json!({ "mode": "AUTO" })),
        Some(ToolChoice::None) => Some(json!({ "mode": "NONE" })),
        Some(ToolChoice::Required) => Some(json!({ "mode": "ANY" })),
        Some(ToolChoice::Function(name)) => Some(json!({ "mode": "ANY", "allowedFunctionNames": [name] })),
        Some(ToolChoice::Allowed { required: true, names }) => {
            Some(json!({ "mode": "ANY", "allowedFunctionNames": names }))
        }
    };
    let config = calling.map(|calling| json!({ "functionCallingConfig": calling }));
    Some((json!([{ "functionDeclarations": declarations }]), config))
}

fn generation_config(body: &ClientRequest, generation: GenerationFamily) -> Map<String, Value> {
    let mut config = Map::new();
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            config.insert(key.into(), value);
        }
    };
    set("maxOutputTokens", body.max_tokens.map(Value::from));
    set("temperature", body.temperature.map(Value::from));
    set("topP", body.top_p.map(Value::from));
    set("stopSequences", (!body.stop.is_empty()).then(|| Value::from(body.stop.clone())));
    set("seed", body.seed.map(Value::from));
    set("presencePenalty", body.presence_penalty.map(Value::from));
    set("frequencyPenalty", body.frequency_penalty.map(Value::from));
    match &body.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => set("responseMimeType", Some("application/json".into())),
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            set("responseMimeType", Some("application/json".into()));
            set("responseJsonSchema", schema.clone());
        }
    }
    set("thinkingConfig", body.reasoning_effort.map(|effort| thinking_config(effort, generation)));
    config
}

/// `reasoning_effort` -> `thinkingConfig`, on the scale Google's own OpenAI-compatible endpoint
/// uses: budgets of 1,024 / 8,192 / 24,576 tokens for low / medium / high on Gemini 2.5, levels
/// on Gemini 3. `includeThoughts` is set so the thinking comes back as `reasoning_content`;
/// `none` turns thinking off where the model allows it (Gemini 3 only goes down to `minimal`).
fn thinking_config(effort: ReasoningEffort, generation: GenerationFamily) -> Value {
    let (budget, level) = match effort {
        ReasoningEffort::None => (0, "minimal"),
        ReasoningEffort::Minimal => (1024, "minimal"),
        ReasoningEffort::Low => (1024, "low"),
        ReasoningEffort::Medium => (8192, "medium"),
        ReasoningEffort::High | ReasoningEffort::XHigh => (24576, "high"),
    };
    let include_thoughts = effort != ReasoningEffort::None;
    match generation {
        GenerationFamily::Budget => {
            json!({ "includeThoughts": include_thoughts, "thinkingBudget": budget })
        }
        GenerationFamily::Levels => {
            json!({ "includeThoughts": include_thoughts, "thinkingLevel": level })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::EXPRESSIBLE;
    use super::*;
    use crate::error::ErrorCode;

    fn translate_json(body: Value, model: &str) -> Result<Value, RelayError> {
        let parsed = ClientRequest::parse(body.to_string().as_bytes(), false, EXPRESSIBLE)?;
        translate(&parsed, model, false)
    }

    #[test]
    fn system_and_developer_messages_become_the_system_instruction() {
        let sent = translate_json(
            json!({"messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "no jokes"}]},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": [{"type": "text", "text": "again"}, {"type": "text", "text": ""}]}
            ]}),
            "gemini-2.5-flash",
        )
        .unwrap();
        assert_eq!(sent["systemInstruction"], json!({"parts": [{"text": "be brief"}, {"text": "no jokes"}]}));
        assert_eq!(
            sent["contents"],
            json!([
                {"role": "user", "parts": [{"text": "hi"}]},
                {"role": "model", "parts": [{"text": "hello"}]},
                {"role": "user", "parts": [{"text": "again"}]}
            ])
        );
        assert!(sent.get("generationConfig").is_none() && sent.get("tools").is_none());
    }

    #[test]
    fn parallel_tool_calls_and_results_are_paired_by_name_in_one_user_turn() {
        let sent = translate_json(
            json!({"messages": [
                {"role": "user", "content": "weather in Paris and Rome?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "b", "type": "function", "function": {"name": "clock", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "a", "content": "{\"temp\": 21}"},
                {"role": "tool", "tool_call_id": "b", "content": "noon"},
                {"role": "user", "content": "thanks"}
            ]}),
            "gemini-2.0-flash",
        )
        .unwrap();
        assert_eq!(
            sent["contents"][1],
            json!({"role": "model", "parts": [
                {"functionCall": {"id": "a", "name": "weather", "args": {"city": "Paris"}}},
                {"functionCall": {"id": "b", "name": "clock", "args": {}}}
            ]})
        );
        assert_eq!(
            sent["contents"][2],
            json!({"role": "user", "parts": [
                {"functionResponse": {"id": "a", "name": "weather", "response": {"temp": 21}}},
                {"functionResponse": {"id": "b", "name": "clock", "response": {"output": "noon"}}}
            ]})
        );
        assert_eq!(sent["contents"][3], json!({"role": "user", "parts": [{"text": "thanks"}]}));
    }

    #[test]
    fn a_tool_result_for_an_unknown_call_is_a_400() {
        let err = translate_json(
            json!({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}),
            "gemini-2.5-flash",
        )
        .unwrap_err();
        assert_eq!((err.code, err.param.as_deref()), (ErrorCode::InvalidRequest, Some("messages[0].tool_call_id")));
    }

    #[test]
    fn thought_signatures_are_replayed_and_gemini_3_gets_the_sentinel_when_they_were_lost() {
        let history = |extra: Value| {
            json!({"messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}, "extra_content": extra},
                    {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "a", "content": "1"},
                {"role": "tool", "tool_call_id": "b", "content": "2"}
            ]})
        };
        let signed =
            translate_json(history(json!({"google": {"thought_signature": "SIG"}})), "gemini-3-pro-preview").unwrap();
        assert_eq!(signed["contents"][1]["parts"][0]["thoughtSignature"], "SIG");
        assert!(signed["contents"][1]["parts"][1].get("thoughtSignature").is_none());

        let lost = translate_json(history(Value::Null), "gemini-3-pro-preview").unwrap();
        assert_eq!(lost["contents"][1]["parts"][0]["thoughtSignature"], THOUGHT_SIGNATURE_SENTINEL);
        assert!(lost["contents"][1]["parts"][1].get("thoughtSignature").is_none());

        let older = translate_json(history(Value::Null), "gemini-2.5-flash").unwrap();
        assert!(older["contents"][1]["parts"][0].get("thoughtSignature").is_none());
    }

    #[test]
    fn images_go_inline_or_by_reference() {
        let sent = translate_json(
            json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.JPG?size=2"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/render"}},
                {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}
            ]}]}),
            "gemini-2.5-flash",
        )
        .unwrap();
        assert_eq!(
            sent["contents"][0]["parts"],
            json!([
                {"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
                {"fileData": {"fileUri": "https://example.com/cat.JPG?size=2", "mimeType": "image/jpeg"}},
                {"fileData": {"fileUri": "https://example.com/render"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}}
            ])
        );
        let err = translate_json(
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]}),
            "gemini-2.5-flash",
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn tools_and_every_tool_choice_map_to_function_calling_config() {
        let base = json!({
            "messages": [{"role": "user", "content": "x"}],
            "tools": [
                {"type": "function", "function": {"name": "f", "description": "F", "strict": true,
                    "parameters": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}}},
                {"type": "function", "function": {"name": "g"}}
            ]
        });
        let with_choice = |choice: Value| {
            let mut body = base.clone();
            if !choice.is_null() {
                body["tool_choice"] = choice;
            }
            translate_json(body, "gemini-2.5-flash").unwrap()
        };
        let plain = with_choice(Value::Null);
        assert_eq!(
            plain["tools"],
            json!([{"functionDeclarations": [
                {"name": "f", "description": "F", "parametersJsonSchema":
                    {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}},
                {"name": "g"}
            ]}])
        );
        assert!(plain.get("toolConfig").is_none());
        let mode = |choice: Value| with_choice(choice)["toolConfig"]["functionCallingConfig"].clone();
        assert_eq!(mode(json!("auto")), json!({"mode": "AUTO"}));
        assert_eq!(mode(json!("none")), json!({"mode": "NONE"}));
        assert_eq!(mode(json!("required")), json!({"mode": "ANY"}));
        assert_eq!(
            mode(json!({"type": "function", "function": {"name": "g"}})),
            json!({"mode": "ANY", "allowedFunctionNames": ["g"]})
        );
        let auto_subset = with_choice(
            json!({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "g"}}]}}),
        );
        assert_eq!(auto_subset["tools"][0]["functionDeclarations"], json!([{"name": "g"}]));
        assert_eq!(auto_subset["toolConfig"]["functionCallingConfig"], json!({"mode": "AUTO"}));
    }

    #[test]
    fn non_function_tools_are_refused_unless_dropped() {
        let body: &[u8] =
            br#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"custom","custom":{"name":"c"}}]}"#;
        let err = ClientRequest::parse(body, false, EXPRESSIBLE).unwrap_err();
        assert_eq!((err.code, err.param.as_deref()), (ErrorCode::UnsupportedParameter, Some("tools[0]")));
        let lenient = ClientRequest::parse(body, true, EXPRESSIBLE).unwrap();
        let dropped = translate(&lenient, "gemini-2.5-flash", true).unwrap();
        assert!(dropped.get("tools").is_none());
    }

    #[test]
    fn sampling_limits_and_formats_fill_the_generation_config() {
        let sent = translate_json(
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5, "max_completion_tokens": 9,
                   "temperature": 0.2, "top_p": 0.9, "stop": ["END"], "seed": 4, "presence_penalty": 0.5,
                   "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}},
                   "user": "u-1", "store": true, "stream_options": {"include_usage": true}}),
            "gemini-2.5-flash",
        )
        .unwrap();
        assert_eq!(
            sent["generationConfig"],
            json!({"maxOutputTokens": 9, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"], "seed": 4,
                   "presencePenalty": 0.5, "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}})
        );
        let json_mode =
            translate_json(json!({"messages": [], "response_format": {"type": "json_object"}}), "gemini-2.5-flash")
                .unwrap();
        assert_eq!(json_mode["generationConfig"], json!({"responseMimeType": "application/json"}));
    }

    #[test]
    fn reasoning_effort_is_a_budget_before_gemini_3_and_a_level_from_it() {
        let config = |effort: &str, model: &str| {
            translate_json(json!({"messages": [], "reasoning_effort": effort}), model).unwrap()["generationConfig"]
                ["thinkingConfig"]
                .clone()
        };
        assert_eq!(config("low", "gemini-2.5-flash"), json!({"includeThoughts": true, "thinkingBudget": 1024}));
        assert_eq!(config("none", "gemini-2.5-flash"), json!({"includeThoughts": false, "thinkingBudget": 0}));
        assert_eq!(config("high", "gemini-flash-latest"), json!({"includeThoughts": true, "thinkingBudget": 24576}));
        assert_eq!(
            config("medium", "gemini-3-flash-preview"),
            json!({"includeThoughts": true, "thinkingLevel": "medium"})
        );
        assert_eq!(config("high", "gemini-3.1-pro"), json!({"includeThoughts": true, "thinkingLevel": "high"}));
        let err =
            translate_json(json!({"messages": [], "reasoning_effort": "extreme"}), "gemini-2.5-flash").unwrap_err();
        assert_eq!(err.param.as_deref(), Some("reasoning_effort"));
    }

    #[test]
    fn model_generations_are_read_from_the_name() {
        assert_eq!(GenerationFamily::of("gemini-2.5-pro"), GenerationFamily::Budget);
        assert_eq!(GenerationFamily::of("gemini-3-pro-preview"), GenerationFamily::Levels);
        assert_eq!(GenerationFamily::of("gemini-10-ultra"), GenerationFamily::Levels);
        assert_eq!(GenerationFamily::of("gemma-3-27b-it"), GenerationFamily::Budget);
    }
}
