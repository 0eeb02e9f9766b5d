//! OpenAI chat request -> Bedrock Converse request body.

use serde_json::{json, Map, Value};

use super::BedrockConverse;
use crate::dialect::client_request::{
    plan_thinking, schema_or_any_object, unsupported, web_image_format, ClientRequest, Expressible, FunctionTool,
    ImageSource, Message, Part, ReasoningEffort, ResponseFormat, ToolChoice,
};
use crate::dialect::ChatRequest;
use crate::error::RelayError;

/// The model families whose reasoning switch differs, recognised from the model id (which may
/// be an inference profile such as `us.anthropic.claude-...` or an ARN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Claude,
    GptOss,
    Other,
}

fn family(model_id: &str) -> Family {
    let id = model_id.to_ascii_lowercase();
    if id.contains("anthropic.") || id.contains("claude") {
        Family::Claude
    } else if id.contains("openai.") || id.contains("gpt-oss") {
        Family::GptOss
    } else {
        Family::Other
    }
}

/// Builds the Converse / ConverseStream body (the model id travels in the path).
pub(super) fn build_body(dialect: &BedrockConverse, request: &ChatRequest) -> Result<Value, RelayError> {
    let drop = dialect.drop_unsupported;
    // Converse takes no penalties, no audio and no results without a tool call id.
    let client = ClientRequest::parse(&request.body, drop, Expressible::default())?;
    let mut body = Map::new();

    let (system, messages) = convert_messages(&client.messages, drop)?;
    let has_tool_blocks = messages.iter().any(|turn| {
        turn["content"]
            .as_array()
            .is_some_and(|blocks| blocks.iter().any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some()))
    });
    let tool_loop = in_tool_loop(&messages);
    body.insert("messages".into(), messages.into());
    if !system.is_empty() {
        body.insert("system".into(), system.into());
    }

    let mut inference = Map::new();
    let mut max_tokens = client.max_tokens.or(dialect.default_max_tokens);
    let mut additional = Map::new();
    if let Some(effort) = client.reasoning_effort.filter(|e| *e != ReasoningEffort::None) {
        match family(&request.upstream_model) {
            Family::Claude => {
                let budget = effort.thinking_budget().unwrap_or_default();
                let default_max = dialect.default_max_tokens.unwrap_or(super::DEFAULT_CLAUDE_MAX_TOKENS);
                match plan_thinking(budget, client.max_tokens, default_max) {
                    // Bedrock's Claude wants the signed thinking block back in a tool loop,
                    // which OpenAI history cannot carry: such a request goes without thinking.
                    Some(_) if tool_loop => {}
                    Some(plan) => {
                        max_tokens = Some(plan.max_tokens);
                        additional
                            .insert("thinking".into(), json!({"type": "enabled", "budget_tokens": plan.budget_tokens}));
                    }
                    None => unsupported(
                        drop,
                        "reasoning_effort",
                        "reasoning with a token limit under Claude's 1024-token minimum thinking budget",
                    )?,
                }
            }
            Family::GptOss => {
                let effort = match effort {
                    ReasoningEffort::Minimal | ReasoningEffort::Low => "low",
                    ReasoningEffort::Medium => "medium",
                    _ => "high",
                };
                additional.insert("reasoning_effort".into(), effort.into());
            }
            Family::Other => unsupported(drop, "reasoning_effort", "`reasoning_effort` for this Bedrock model")?,
        }
    }
    if let Some(max_tokens) = max_tokens {
        inference.insert("maxTokens".into(), max_tokens.into());
    }
    if let Some(temperature) = client.temperature {
        inference.insert("temperature".into(), temperature.into());
    }
    if let Some(top_p) = client.top_p {
        inference.insert("topP".into(), top_p.into());
    }
    if !client.stop.is_empty() {
        inference.insert("stopSequences".into(), client.stop.clone().into());
    }
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), inference.into());
    }

    if let Some(tool_config) = tool_config(&client, has_tool_blocks, drop)? {
        body.insert("toolConfig".into(), tool_config);
    }
    if !additional.is_empty() {
        body.insert("additionalModelRequestFields".into(), additional.into());
    }
    match &client.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonSchema { name, description, schema }) => {
            let mut json_schema = Map::new();
            // Converse takes the schema as a JSON string.
            json_schema.insert("schema".into(), schema_or_any_object(schema.as_ref()).to_string().into());
            if let Some(name) = name {
                json_schema.insert("name".into(), name.clone().into());
            }
            if let Some(description) = description {
                json_schema.insert("description".into(), description.clone().into());
            }
            body.insert(
                "outputConfig".into(),
                json!({"textFormat": {"type": "json_schema", "structure": {"jsonSchema": json_schema}}}),
            );
        }
        Some(ResponseFormat::JsonObject) => unsupported(
            drop,
            "response_format",
            "response_format json_object (Converse needs a schema: use json_schema)",
        )?,
    }
    Ok(Value::Object(body))
}

/// `toolConfig`, or `None` when no tools are to be offered.
fn tool_config(client: &ClientRequest, has_tool_blocks: bool, drop: bool) -> Result<Option<Value>, RelayError> {
    if client.tools.is_empty() {
        return Ok(None);
    }
    let choice = match &client.tool_choice {
        None | Some(ToolChoice::Auto) => None,
        Some(ToolChoice::Required) => Some(json!({"any": {}})),
        Some(ToolChoice::Function(name)) => Some(json!({"tool": {"name": name}})),
        Some(ToolChoice::Allowed { .. }) => {
            unsupported(drop, "tool_choice", "an `allowed_tools` tool_choice")?;
            None
        }
        // Converse has no "none": leaving the tools out says the same, unless the history
        // holds tool blocks, which Bedrock only accepts next to a tool configuration.
        Some(ToolChoice::None) if !has_tool_blocks => return Ok(None),
        Some(ToolChoice::None) => {
            unsupported(drop, "tool_choice", "tool_choice \"none\" with tool calls in the history")?;
            None
        }
    };
    if client.parallel_tool_calls == Some(false) {
        unsupported(drop, "parallel_tool_calls", "`parallel_tool_calls: false`")?;
    }
    let mut config = Map::new();
    config.insert("tools".into(), client.tools.iter().map(convert_tool).collect::<Vec<_>>().into());
    if let Some(choice) = choice {
        config.insert("toolChoice".into(), choice);
    }
    Ok(Some(config.into()))
}

fn convert_tool(tool: &FunctionTool) -> Value {
    let mut spec = Map::new();
    spec.insert("name".into(), tool.name.clone().into());
    // Converse rejects an empty description.
    if let Some(description) = tool.description.as_ref().filter(|d| !d.is_empty()) {
        spec.insert("description".into(), description.clone().into());
    }
    spec.insert("inputSchema".into(), json!({"json": tool.parameters_or_empty()}));
    json!({"toolSpec": spec})
}

/// Whether the last assistant turn calls tools, so the request continues a tool loop.
fn in_tool_loop(messages: &[Value]) -> bool {
    messages
        .iter()
        .rev()
        .find(|turn| turn["role"] == "assistant")
        .and_then(|turn| turn["content"].as_array())
        .is_some_and(|blocks| blocks.iter().any(|block| block.get("toolUse").is_some()))
}

/// The `system` blocks and the alternating `messages`.
fn convert_messages(messages: &[Message], drop: bool) -> Result<(Vec<Value>, Vec<Value>), RelayError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut documents = 0;
    for message in messages {
        let (role, blocks) = match message {
            Message::System(parts) => {
                for part in parts {
                    match part {
                        Part::Text { .. } => system.extend(convert_part(part, &mut documents, drop)?),
                        _ => unsupported(drop, "messages", "images or files in system messages")?,
                    }
                }
                continue;
            }
            Message::User(parts) => ("user", convert_parts(parts, &mut documents, drop)?),
            Message::Assistant { content, tool_calls, .. } => {
                let mut blocks = convert_parts(content, &mut documents, drop)?;
                for call in tool_calls {
                    blocks.push(json!({"toolUse": {
                        "toolUseId": call.id,
                        "name": call.name,
                        "input": call.arguments_object("messages")?,
                    }}));
                }
                ("assistant", blocks)
            }
            Message::Tool { tool_call_id, content, .. } => {
                let mut result = Vec::new();
                for part in content {
                    match part {
                        Part::Text { text, .. } => result.push(json!({"text": text})),
                        Part::Image(_) | Part::File { .. } | Part::Audio { .. } => {
                            result.extend(convert_part(part, &mut documents, drop)?)
                        }
                    }
                }
                if result.is_empty() {
                    result.push(json!({"text": ""}));
                }
                ("user", vec![json!({"toolResult": {"toolUseId": tool_call_id, "content": result}})])
            }
        };
        // Bedrock rejects empty turns; an empty message carries nothing anyway.
        if blocks.is_empty() {
            continue;
        }
        // Consecutive same-role messages become one turn (Converse wants strict alternation).
        match turns.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages = turns.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    Ok((system, messages))
}

fn convert_parts(parts: &[Part], documents: &mut usize, drop: bool) -> Result<Vec<Value>, RelayError> {
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        blocks.extend(convert_part(part, documents, drop)?);
    }
    Ok(blocks)
}

/// The blocks for one part: none for blank text (Bedrock rejects it) or a dropped part, one
/// block, or a block followed by a cache point.
fn convert_part(part: &Part, documents: &mut usize, drop: bool) -> Result<Vec<Value>, RelayError> {
    match part {
        Part::Text { text, cache_control } => {
            if text.trim().is_empty() {
                return Ok(Vec::new());
            }
            let mut blocks = vec![json!({"text": text})];
            if cache_control.is_some() {
                blocks.push(json!({"cachePoint": {"type": "default"}}));
            }
            Ok(blocks)
        }
        Part::Image(ImageSource::Base64 { media_type, data }) => {
            let format = web_image_format(media_type, "Bedrock")?;
            Ok(vec![json!({"image": {"format": format, "source": {"bytes": data}}})])
        }
        Part::Image(ImageSource::Url(_)) => {
            unsupported(drop, "messages", "image URLs (Bedrock needs the image bytes: send a data: URL)")?;
            Ok(Vec::new())
        }
        Part::File { media_type, base64, filename } => match document_format(media_type) {
            Some(format) => {
                *documents += 1;
                Ok(vec![json!({"document": {
                    "format": format,
                    "name": document_name(filename.as_deref(), *documents),
                    "source": {"bytes": base64},
                }})])
            }
            None => {
                unsupported(drop, "messages", &format!("files of type {media_type}"))?;
                Ok(Vec::new())
            }
        },
        // Refused while parsing: audio input is not expressible here.
        Part::Audio { .. } => Ok(Vec::new()),
    }
}

fn document_format(media_type: &str) -> Option<&'static str> {
    match media_type {
        "application/pdf" => Some("pdf"),
        "text/csv" => Some("csv"),
        "application/msword" => Some("doc"),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => Some("docx"),
        "application/vnd.ms-excel" => Some("xls"),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => Some("xlsx"),
        "text/html" => Some("html"),
        "text/plain" => Some("txt"),
        "text/markdown" => Some("md"),
        _ => None,
    }
}

/// A document name Bedrock accepts (letters, digits, single spaces, hyphens, parentheses and
/// square brackets), from the file name without its extension.
fn document_name(filename: Option<&str>, ordinal: usize) -> String {
    let stem = filename.map(|f| f.rsplit_once('.').map_or(f, |(stem, _)| stem)).unwrap_or("");
    let mut name = String::with_capacity(stem.len());
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '(' | ')' | '[' | ']') {
            c
        } else if c.is_whitespace() {
            ' '
        } else {
            '-'
        };
        if !(c == ' ' && name.ends_with(' ')) {
            name.push(c);
        }
    }
    let name = name.trim();
    if name.is_empty() {
        format!("document-{ordinal}")
    } else {
        name.to_owned()
    }
}
