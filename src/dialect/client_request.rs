//! The client's OpenAI chat-completions request as typed values, for dialects that rebuild the
//! body in another API's shape (Anthropic Messages, Bedrock Converse).
//!
//! Parsing is strict about what changes the answer and lenient about what does not:
//! - Features no rebuilt dialect can express (`n` > 1, `logprobs`, non-zero penalties,
//!   `logit_bias`, audio output, `prediction`, `web_search_options`) are a 400
//!   `unsupported_parameter` naming the parameter, or silently dropped when the upstream is
//!   configured with `drop_unsupported`.
//! - Parameters that only matter to OpenAI's own bookkeeping (`store`, `metadata`, `seed`,
//!   `service_tier`, `stream_options`, `n` = 1, `user` where the dialect has no slot) are ignored.
//! - `developer` messages are system messages (OpenAI's own definition for reasoning models).
//! - Content parts: `text`, `image_url` (data URL or http(s) URL), `file` with inline
//!   `file_data`, `refusal` (treated as text in assistant history). `input_audio` and uploaded
//!   `file_id`s are unsupported.
//! - A non-standard `cache_control` on a text part (as accepted by OpenRouter and LiteLLM) is kept
//!   so dialects with prompt caching can place a cache breakpoint there.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{ErrorCode, RelayError};

/// A parsed chat request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientRequest {
    pub messages: Vec<Message>,
    /// `max_completion_tokens`, else the legacy `max_tokens`.
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub tools: Vec<FunctionTool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<ResponseFormat>,
    pub reasoning_effort: Option<ReasoningEffort>,
    pub user: Option<String>,
}

/// One conversation message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A `system` or `developer` message.
    System(Vec<Part>),
    User(Vec<Part>),
    Assistant {
        content: Vec<Part>,
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: Vec<Part>,
    },
}

/// One content part.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text {
        text: String,
        cache_control: Option<Value>,
    },
    Image(ImageSource),
    /// An inline file (`file.file_data` data URL).
    File {
        media_type: String,
        base64: String,
        filename: Option<String>,
    },
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A `data:<media type>;base64,<data>` URL, split.
    Base64 { media_type: String, data: String },
    /// An `http(s)://` URL.
    Url(String),
}

/// A tool call in assistant history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The JSON-encoded arguments, as the client sent them.
    pub arguments: String,
}

impl ToolCall {
    /// The arguments as a JSON object; an empty string is `{}`.
    pub fn arguments_object(&self) -> Result<Map<String, Value>, RelayError> {
        if self.arguments.trim().is_empty() {
            return Ok(Map::new());
        }
        match serde_json::from_str::<Value>(&self.arguments) {
            Ok(Value::Object(object)) => Ok(object),
            _ => Err(RelayError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "the arguments of tool call {:?} are not a JSON object",
                    self.id
                ),
            )
            .with_param("messages")),
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionTool {
    pub name: String,
    pub description: Option<String>,
    /// The JSON schema of the arguments; `None` when the client gave none.
    pub parameters: Option<Value>,
}

impl FunctionTool {
    /// The parameters schema, or the schema of an object without properties.
    pub fn parameters_or_empty(&self) -> Value {
        self.parameters
            .clone()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}))
    }
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Function(String),
}

/// `response_format`.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: Option<String>,
        description: Option<String>,
        schema: Value,
    },
}

/// `reasoning_effort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningEffort {
    None,
    Minimal,
    Low,
    Medium,
    High,
    XHigh,
}

/// The smallest thinking budget Anthropic accepts.
pub const MIN_THINKING_BUDGET: u64 = 1024;

impl ReasoningEffort {
    /// The OpenAI name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasoningEffort::None => "none",
            ReasoningEffort::Minimal => "minimal",
            ReasoningEffort::Low => "low",
            ReasoningEffort::Medium => "medium",
            ReasoningEffort::High => "high",
            ReasoningEffort::XHigh => "xhigh",
        }
    }

    /// The thinking budget in tokens for APIs that take one (Anthropic `thinking.budget_tokens`),
    /// `None` for `none`. `xhigh` stays below the 32k output limit of the smallest thinking
    /// models once the default answer allowance is added.
    pub fn thinking_budget(self) -> Option<u64> {
        match self {
            ReasoningEffort::None => None,
            ReasoningEffort::Minimal => Some(MIN_THINKING_BUDGET),
            ReasoningEffort::Low => Some(2048),
            ReasoningEffort::Medium => Some(8192),
            ReasoningEffort::High => Some(16384),
            ReasoningEffort::XHigh => Some(24576),
        }
    }
}

/// A thinking budget and the `max_tokens` to send with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThinkingPlan {
    pub budget_tokens: u64,
    pub max_tokens: u64,
}

/// Fits a thinking budget to the client's limit. OpenAI's `max_completion_tokens` bounds
/// reasoning and answer together, as Anthropic's `max_tokens` does, so a client limit is kept
/// and the budget shrunk to fit under it; without one the budget is added on top of the default
/// answer allowance. `None` when the client's limit leaves no room for the minimum budget.
pub fn plan_thinking(
    budget: u64,
    client_max_tokens: Option<u64>,
    default_max_tokens: u64,
) -> Option<ThinkingPlan> {
    match client_max_tokens {
        Some(max_tokens) => {
            let budget_tokens = budget.min(max_tokens.saturating_sub(1));
            (budget_tokens >= MIN_THINKING_BUDGET).then_some(ThinkingPlan {
                budget_tokens,
                max_tokens,
            })
        }
        None => Some(ThinkingPlan {
            budget_tokens: budget,
            max_tokens: default_max_tokens + budget,
        }),
    }
}

/// A request feature the dialect cannot express: an error, or `Ok` when it is to be dropped.
pub fn unsupported(drop_unsupported: bool, param: &str, what: &str) -> Result<(), RelayError> {
    if drop_unsupported {
        return Ok(());
    }
    Err(RelayError::new(
        ErrorCode::UnsupportedParameter,
        format!("{what} is not supported by this upstream"),
    )
    .with_param(param))
}

fn invalid(param: &str, message: impl Into<String>) -> RelayError {
    RelayError::new(ErrorCode::InvalidRequest, message).with_param(param)
}

#[derive(Deserialize)]
struct RawRequest {
    #[serde(default)]
    messages: Vec<RawMessage>,
    max_completion_tokens: Option<u64>,
    max_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop: Option<Value>,
    tools: Option<Vec<RawTool>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    response_format: Option<RawResponseFormat>,
    reasoning_effort: Option<String>,
    user: Option<String>,
    n: Option<u64>,
    logprobs: Option<bool>,
    top_logprobs: Option<u64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    logit_bias: Option<Map<String, Value>>,
    modalities: Option<Vec<String>>,
    audio: Option<Value>,
    prediction: Option<Value>,
    web_search_options: Option<Value>,
}

#[derive(Deserialize)]
struct RawMessage {
    role: String,
    #[serde(default)]
    content: Value,
    #[serde(default)]
    tool_calls: Option<Vec<RawToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Deserialize)]
struct RawToolCall {
    id: String,
    function: RawFunctionCall,
}

#[derive(Deserialize)]
struct RawFunctionCall {
    name: String,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct RawTool {
    #[serde(rename = "type")]
    kind: String,
    function: Option<RawFunction>,
}

#[derive(Deserialize)]
struct RawFunction {
    name: String,
    description: Option<String>,
    parameters: Option<Value>,
}

#[derive(Deserialize)]
struct RawResponseFormat {
    #[serde(rename = "type")]
    kind: String,
    json_schema: Option<RawJsonSchema>,
}

#[derive(Deserialize)]
struct RawJsonSchema {
    name: Option<String>,
    description: Option<String>,
    schema: Option<Value>,
}

impl ClientRequest {
    /// Parses a chat-completions body; features the caller's dialect cannot express are an
    /// error unless `drop_unsupported`.
    pub fn parse(body: &[u8], drop_unsupported: bool) -> Result<Self, RelayError> {
        let raw: RawRequest = serde_json::from_slice(body).map_err(|e| {
            RelayError::new(
                ErrorCode::InvalidRequest,
                format!("invalid chat completions request: {e}"),
            )
        })?;
        check_unsupported(&raw, drop_unsupported)?;

        let messages = raw
            .messages
            .into_iter()
            .enumerate()
            .map(|(index, message)| parse_message(index, message, drop_unsupported))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        let tools = match raw.tools {
            None => Vec::new(),
            Some(tools) => parse_tools(tools, drop_unsupported)?,
        };
        let tool_choice = raw.tool_choice.map(parse_tool_choice).transpose()?;
        let response_format = raw.response_format.map(parse_response_format).transpose()?;
        let reasoning_effort = raw
            .reasoning_effort
            .as_deref()
            .map(parse_effort)
            .transpose()?;
        Ok(ClientRequest {
            messages,
            max_tokens: raw.max_completion_tokens.or(raw.max_tokens),
            temperature: raw.temperature,
            top_p: raw.top_p,
            stop: parse_stop(raw.stop)?,
            tools,
            tool_choice,
            parallel_tool_calls: raw.parallel_tool_calls,
            response_format,
            reasoning_effort,
            user: raw.user,
        })
    }
}

fn check_unsupported(raw: &RawRequest, drop: bool) -> Result<(), RelayError> {
    if raw.n.is_some_and(|n| n > 1) {
        unsupported(drop, "n", "more than one choice (`n` > 1)")?;
    }
    if raw.logprobs == Some(true) || raw.top_logprobs.is_some_and(|n| n > 0) {
        unsupported(drop, "logprobs", "`logprobs`")?;
    }
    if raw.presence_penalty.is_some_and(|p| p != 0.0) {
        unsupported(drop, "presence_penalty", "`presence_penalty`")?;
    }
    if raw.frequency_penalty.is_some_and(|p| p != 0.0) {
        unsupported(drop, "frequency_penalty", "`frequency_penalty`")?;
    }
    if raw.logit_bias.as_ref().is_some_and(|bias| !bias.is_empty()) {
        unsupported(drop, "logit_bias", "`logit_bias`")?;
    }
    if raw.audio.as_ref().is_some_and(|a| !a.is_null())
        || raw
            .modalities
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m == "audio"))
    {
        unsupported(drop, "modalities", "audio output")?;
    }
    if raw.prediction.as_ref().is_some_and(|p| !p.is_null()) {
        unsupported(drop, "prediction", "predicted outputs (`prediction`)")?;
    }
    if raw
        .web_search_options
        .as_ref()
        .is_some_and(|w| !w.is_null())
    {
        unsupported(drop, "web_search_options", "`web_search_options`")?;
    }
    Ok(())
}

fn parse_message(index: usize, raw: RawMessage, drop: bool) -> Result<Option<Message>, RelayError> {
    let content = parse_content(index, &raw.content, drop)?;
    let message = match raw.role.as_str() {
        "system" | "developer" => Message::System(content),
        "user" => Message::User(content),
        "assistant" => Message::Assistant {
            content,
            tool_calls: raw
                .tool_calls
                .unwrap_or_default()
                .into_iter()
                .map(|call| ToolCall {
                    id: call.id,
                    name: call.function.name,
                    arguments: call.function.arguments.unwrap_or_default(),
                })
                .collect(),
        },
        "tool" => Message::Tool {
            tool_call_id: raw.tool_call_id.ok_or_else(|| {
                invalid(
                    "messages",
                    format!("messages[{index}]: a tool message needs `tool_call_id`"),
                )
            })?,
            content,
        },
        "function" => {
            unsupported(drop, "messages", "the legacy `function` role")?;
            return Ok(None);
        }
        other => {
            return Err(invalid(
                "messages",
                format!("messages[{index}]: unknown role {other:?}"),
            ))
        }
    };
    Ok(Some(message))
}

fn parse_content(index: usize, content: &Value, drop: bool) -> Result<Vec<Part>, RelayError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => Ok(vec![Part::Text {
            text: text.clone(),
            cache_control: None,
        }]),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for part in parts {
                if let Some(part) = parse_part(index, part, drop)? {
                    out.push(part);
                }
            }
            Ok(out)
        }
        _ => Err(invalid(
            "messages",
            format!("messages[{index}].content must be a string or an array of parts"),
        )),
    }
}

fn parse_part(index: usize, part: &Value, drop: bool) -> Result<Option<Part>, RelayError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    let text_field = |field: &str| {
        part.get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                invalid(
                    "messages",
                    format!("messages[{index}]: a {kind:?} part needs a string `{field}`"),
                )
            })
    };
    match kind {
        "text" => Ok(Some(Part::Text {
            text: text_field("text")?,
            cache_control: part.get("cache_control").filter(|c| !c.is_null()).cloned(),
        })),
        "refusal" => Ok(Some(Part::Text {
            text: text_field("refusal")?,
            cache_control: None,
        })),
        "image_url" => {
            let url = match part.get("image_url") {
                Some(Value::String(url)) => url.as_str(),
                Some(object) => object.get("url").and_then(Value::as_str).unwrap_or(""),
                None => "",
            };
            parse_image_url(url)
                .map(|source| Some(Part::Image(source)))
                .ok_or_else(|| {
                    invalid(
                        "messages",
                        format!("messages[{index}]: image_url must be a data: or http(s) URL"),
                    )
                })
        }
        "file" => {
            let file = part.get("file");
            let data = file
                .and_then(|f| f.get("file_data"))
                .and_then(Value::as_str);
            match data.and_then(parse_data_url) {
                Some((media_type, base64)) => Ok(Some(Part::File {
                    media_type,
                    base64,
                    filename: file
                        .and_then(|f| f.get("filename"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })),
                None => unsupported(
                    drop,
                    "messages",
                    "a file part without inline base64 `file_data`",
                )
                .map(|()| None),
            }
        }
        "input_audio" => unsupported(drop, "messages", "audio input").map(|()| None),
        other => Err(invalid(
            "messages",
            format!("messages[{index}]: unknown content part type {other:?}"),
        )),
    }
}

/// Splits `data:<media type>;base64,<data>`.
pub fn parse_data_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    // Parameters such as `;charset=utf-8` may precede `;base64`; the media type is what is left.
    let media_type = media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    (!media_type.is_empty()).then(|| (media_type, data.to_owned()))
}

fn parse_image_url(url: &str) -> Option<ImageSource> {
    if let Some((media_type, data)) = parse_data_url(url) {
        return Some(ImageSource::Base64 { media_type, data });
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        .then(|| ImageSource::Url(url.to_owned()))
}

fn parse_tools(tools: Vec<RawTool>, drop: bool) -> Result<Vec<FunctionTool>, RelayError> {
    let mut out = Vec::with_capacity(tools.len());
    for tool in tools {
        match (tool.kind.as_str(), tool.function) {
            ("function", Some(function)) => out.push(FunctionTool {
                name: function.name,
                description: function.description,
                parameters: function.parameters.filter(|p| !p.is_null()),
            }),
            ("function", None) => return Err(invalid("tools", "a function tool needs `function`")),
            (other, _) => unsupported(drop, "tools", &format!("tools of type {other:?}"))?,
        }
    }
    Ok(out)
}

fn parse_tool_choice(choice: Value) -> Result<ToolChoice, RelayError> {
    match &choice {
        Value::String(mode) => match mode.as_str() {
            "none" => Ok(ToolChoice::None),
            "auto" => Ok(ToolChoice::Auto),
            "required" => Ok(ToolChoice::Required),
            other => Err(invalid(
                "tool_choice",
                format!("unknown tool_choice {other:?}"),
            )),
        },
        Value::Object(object) => object
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|name| ToolChoice::Function(name.to_owned()))
            .ok_or_else(|| invalid("tool_choice", "tool_choice must name a function")),
        _ => Err(invalid(
            "tool_choice",
            "tool_choice must be a string or an object",
        )),
    }
}

fn parse_response_format(format: RawResponseFormat) -> Result<ResponseFormat, RelayError> {
    match format.kind.as_str() {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let spec = format.json_schema.ok_or_else(|| {
                invalid(
                    "response_format",
                    "response_format json_schema needs `json_schema`",
                )
            })?;
            Ok(ResponseFormat::JsonSchema {
                name: spec.name,
                description: spec.description,
                schema: spec
                    .schema
                    .unwrap_or_else(|| serde_json::json!({"type": "object"})),
            })
        }
        other => Err(invalid(
            "response_format",
            format!("unknown response_format type {other:?}"),
        )),
    }
}

fn parse_effort(effort: &str) -> Result<ReasoningEffort, RelayError> {
    match effort {
        "none" => Ok(ReasoningEffort::None),
        "minimal" => Ok(ReasoningEffort::Minimal),
        "low" => Ok(ReasoningEffort::Low),
        "medium" => Ok(ReasoningEffort::Medium),
        "high" => Ok(ReasoningEffort::High),
        "xhigh" => Ok(ReasoningEffort::XHigh),
        other => Err(invalid(
            "reasoning_effort",
            format!("unknown reasoning_effort {other:?}"),
        )),
    }
}

fn parse_stop(stop: Option<Value>) -> Result<Vec<String>, RelayError> {
    match stop {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(one)) => Ok(vec![one]),
        Some(Value::Array(many)) => many
            .into_iter()
            .map(|s| match s {
                Value::String(s) => Ok(s),
                _ => Err(invalid("stop", "stop sequences must be strings")),
            })
            .collect(),
        Some(_) => Err(invalid(
            "stop",
            "stop must be a string or an array of strings",
        )),
    }
}

/// The text of parts that are all text, joined without separator; `None` if any part is not text.
pub fn plain_text(parts: &[Part]) -> Option<String> {
    parts
        .iter()
        .map(|part| match part {
            Part::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .map(|texts| texts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ClientRequest, RelayError> {
        ClientRequest::parse(body.as_bytes(), false)
    }

    #[test]
    fn parses_roles_parts_tools_and_options() {
        let request = parse(
            r#"{"model":"m","max_tokens":5,"max_completion_tokens":7,"stop":"END","messages":[
                {"role":"developer","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}},
                    {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},
                    {"type":"image_url","image_url":"https://x.test/a.jpg"}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
                {"role":"tool","tool_call_id":"c1","content":"ok"}],
              "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
              "tool_choice":{"type":"function","function":{"name":"f"}},"parallel_tool_calls":false,
              "reasoning_effort":"low","n":1,"store":true,"seed":3}"#,
        )
        .unwrap();
        assert_eq!(request.max_tokens, Some(7));
        assert_eq!(request.stop, vec!["END"]);
        assert!(
            matches!(&request.messages[0], Message::System(parts) if plain_text(parts).as_deref() == Some("be brief"))
        );
        let Message::User(parts) = &request.messages[1] else {
            panic!()
        };
        assert_eq!(parts.len(), 3);
        assert!(matches!(
            &parts[0],
            Part::Text {
                cache_control: Some(_),
                ..
            }
        ));
        assert_eq!(
            parts[1],
            Part::Image(ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "AAAA".into()
            })
        );
        assert_eq!(
            parts[2],
            Part::Image(ImageSource::Url("https://x.test/a.jpg".into()))
        );
        let Message::Assistant { tool_calls, .. } = &request.messages[2] else {
            panic!()
        };
        assert_eq!(tool_calls[0].arguments_object().unwrap()["a"], 1);
        assert_eq!(request.tool_choice, Some(ToolChoice::Function("f".into())));
        assert_eq!(request.reasoning_effort, Some(ReasoningEffort::Low));
    }

    #[test]
    fn unsupported_features_name_their_parameter_unless_dropped() {
        for (body, param) in [
            (r#"{"messages":[],"n":2}"#, "n"),
            (r#"{"messages":[],"logprobs":true}"#, "logprobs"),
            (
                r#"{"messages":[],"presence_penalty":0.5}"#,
                "presence_penalty",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#,
                "messages",
            ),
            (
                r#"{"messages":[],"tools":[{"type":"custom","custom":{"name":"x"}}]}"#,
                "tools",
            ),
        ] {
            let error = parse(body).unwrap_err();
            assert_eq!(error.code, ErrorCode::UnsupportedParameter, "{body}");
            assert_eq!(error.param.as_deref(), Some(param));
            assert!(ClientRequest::parse(body.as_bytes(), true).is_ok());
        }
        assert!(parse(r#"{"messages":[],"presence_penalty":0,"n":1}"#).is_ok());
    }

    #[test]
    fn malformed_requests_are_invalid_requests() {
        for body in [
            r#"{"messages":[{"role":"robot","content":"x"}]}"#,
            r#"{"messages":[{"role":"tool","content":"x"}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x"}}]}]}"#,
            r#"{"messages":[],"reasoning_effort":"extreme"}"#,
            r#"{"messages":"nope"}"#,
        ] {
            assert_eq!(
                parse(body).unwrap_err().code,
                ErrorCode::InvalidRequest,
                "{body}"
            );
        }
    }

    #[test]
    fn data_urls_split_into_media_type_and_data() {
        assert_eq!(
            parse_data_url("data:image/JPEG;base64,/9j/"),
            Some(("image/jpeg".into(), "/9j/".into()))
        );
        assert_eq!(
            parse_data_url("data:text/plain;charset=utf-8;base64,aGk="),
            Some(("text/plain".into(), "aGk=".into()))
        );
        assert_eq!(parse_data_url("data:image/png,raw"), None);
        assert_eq!(parse_data_url("https://x"), None);
    }

    #[test]
    fn thinking_budget_fits_the_client_limit_or_extends_the_default() {
        assert_eq!(
            plan_thinking(8192, None, 4096),
            Some(ThinkingPlan {
                budget_tokens: 8192,
                max_tokens: 12288
            })
        );
        assert_eq!(
            plan_thinking(8192, Some(3000), 4096),
            Some(ThinkingPlan {
                budget_tokens: 2999,
                max_tokens: 3000
            })
        );
        assert_eq!(
            plan_thinking(2048, Some(20000), 4096),
            Some(ThinkingPlan {
                budget_tokens: 2048,
                max_tokens: 20000
            })
        );
        assert_eq!(plan_thinking(2048, Some(1024), 4096), None);
    }

    #[test]
    fn empty_tool_arguments_are_an_empty_object_and_garbage_is_rejected() {
        let call = |arguments: &str| ToolCall {
            id: "c".into(),
            name: "f".into(),
            arguments: arguments.into(),
        };
        assert!(call("").arguments_object().unwrap().is_empty());
        assert_eq!(
            call("[1]").arguments_object().unwrap_err().code,
            ErrorCode::InvalidRequest
        );
    }
}
