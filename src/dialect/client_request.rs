//! The client's OpenAI chat-completions request as typed values, for the dialects that rebuild
//! the body in another API's shape (Anthropic Messages, Bedrock Converse, Gemini, Ollama).
//!
//! Parsing is strict about what changes the answer and lenient about what does not:
//! - Features no rebuilt dialect can express (`n` > 1, `logprobs`, `logit_bias`, the legacy
//!   `functions` API, audio output, `prediction`, `web_search_options`, tools other than
//!   functions, uploaded `file_id`s, content part types this relay does not know) are a 400
//!   `unsupported_parameter` naming the parameter, or silently dropped when the upstream is
//!   configured with `drop_unsupported`. So are the features a dialect declares it cannot
//!   express in its [`Expressible`]: non-zero penalties, `input_audio` parts, results of the
//!   legacy `function` role.
//! - Parameters that only matter to OpenAI's own bookkeeping (`store`, `metadata`,
//!   `service_tier`, `stream_options`, `n` = 1, and `user` or `seed` where the dialect has no
//!   slot) are ignored.
//! - Malformed values (an unknown role, `reasoning_effort` or `tool_choice`, a `tool` message
//!   without `tool_call_id`, an image that is neither a data URL nor a link) are a 400
//!   `invalid_request` naming where they are.
//! - `developer` messages are system messages (OpenAI's own definition for reasoning models).
//! - Content parts: `text`, `image_url` (data URL, or an `http(s)://` or `gs://` link, as a string
//!   or `{url}`), `input_audio`, `file` with inline `file_data`, `refusal` (treated as text in
//!   assistant history).
//! - Tool-call `arguments` may be the JSON string the API specifies or, as some clients send
//!   them, the object itself; a call's `extra_content` (Gemini's thought signature, as this
//!   relay returns it) and an assistant turn's `reasoning_content` are kept.
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
    pub seed: Option<i64>,
    /// For dialects that can express it ([`Expressible::penalties`]); the others refuse it.
    pub presence_penalty: Option<f64>,
    /// For dialects that can express it ([`Expressible::penalties`]); the others refuse it.
    pub frequency_penalty: Option<f64>,
    pub tools: Vec<FunctionTool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<ResponseFormat>,
    pub reasoning_effort: Option<ReasoningEffort>,
    pub user: Option<String>,
}

/// What a dialect can express beyond what every rebuilt dialect shares; a request using
/// anything else is refused (or stripped, with `drop_unsupported`) while it is parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expressible {
    /// Non-zero `presence_penalty` and `frequency_penalty`.
    pub penalties: bool,
    /// `input_audio` content parts.
    pub audio_input: bool,
    /// Messages of the legacy `function` role: a result named by `name`, without a call id.
    pub function_results: bool,
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
        /// `reasoning_content` of an earlier turn, as this relay returned it.
        reasoning: Option<String>,
    },
    /// A `tool` result, or a legacy `function` result (empty `tool_call_id`).
    Tool {
        tool_call_id: String,
        /// The function's name, which only the legacy `function` role gives.
        name: Option<String>,
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
    /// `input_audio`: base64 audio and its format (`wav`, `mp3`).
    Audio {
        data: String,
        format: String,
    },
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
    /// An `http(s)://` or `gs://` link.
    Url(String),
}

/// A tool call in assistant history.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// Empty when the client sent none.
    pub id: String,
    pub name: String,
    /// The JSON-encoded arguments (an object the client sent is encoded here).
    pub arguments: String,
    /// Provider data returned with the call, which the client sends back (`extra_content`).
    pub extra_content: Option<Value>,
}

impl ToolCall {
    /// The arguments as a JSON object; an empty string is `{}`. `param` names the call in the
    /// error.
    pub fn arguments_object(&self, param: &str) -> Result<Map<String, Value>, RelayError> {
        if self.arguments.trim().is_empty() {
            return Ok(Map::new());
        }
        match serde_json::from_str::<Value>(&self.arguments) {
            Ok(Value::Object(object)) => Ok(object),
            Ok(other) => Err(invalid(param, format!("tool call arguments must be a JSON object, got {other}"))),
            Err(e) => Err(invalid(param, format!("tool call arguments are not valid JSON: {e}"))),
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
        self.parameters.clone().unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}))
    }
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    /// Call exactly this function.
    Function(String),
    /// `{"type":"allowed_tools"}`: restrict the model to these functions, optionally forcing a
    /// call.
    Allowed {
        required: bool,
        names: Vec<String>,
    },
}

/// `response_format`.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: Option<String>,
        description: Option<String>,
        /// `None` when the client gave no schema.
        schema: Option<Value>,
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
pub fn plan_thinking(budget: u64, client_max_tokens: Option<u64>, default_max_tokens: u64) -> Option<ThinkingPlan> {
    match client_max_tokens {
        Some(max_tokens) => {
            let budget_tokens = budget.min(max_tokens.saturating_sub(1));
            (budget_tokens >= MIN_THINKING_BUDGET).then_some(ThinkingPlan { budget_tokens, max_tokens })
        }
        None => Some(ThinkingPlan { budget_tokens: budget, max_tokens: default_max_tokens + budget }),
    }
}

/// A request feature the dialect cannot express: an error, or `Ok` when it is to be dropped.
pub fn unsupported(drop_unsupported: bool, param: &str, what: &str) -> Result<(), RelayError> {
    if drop_unsupported {
        return Ok(());
    }
    Err(RelayError::new(ErrorCode::UnsupportedParameter, format!("{what} is not supported by this upstream"))
        .with_param(param))
}

/// A malformed request value: 400 `invalid_request` naming where it is.
pub fn invalid(param: &str, message: impl Into<String>) -> RelayError {
    RelayError::new(ErrorCode::InvalidRequest, message).with_param(param)
}

#[derive(Deserialize)]
struct RawRequest {
    #[serde(default)]
    messages: Option<Vec<RawMessage>>,
    max_completion_tokens: Option<u64>,
    max_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop: Option<Value>,
    seed: Option<i64>,
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
    functions: Option<Value>,
    function_call: Option<Value>,
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
    name: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<RawToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
}

#[derive(Deserialize)]
struct RawToolCall {
    #[serde(default)]
    id: String,
    function: RawFunctionCall,
    #[serde(default)]
    extra_content: Option<Value>,
}

#[derive(Deserialize)]
struct RawFunctionCall {
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize)]
struct RawTool {
    #[serde(rename = "type", default)]
    kind: Option<String>,
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
    kind: Option<String>,
    json_schema: Option<RawJsonSchema>,
}

#[derive(Deserialize)]
struct RawJsonSchema {
    name: Option<String>,
    description: Option<String>,
    schema: Option<Value>,
}

impl ClientRequest {
    /// Parses a chat-completions body for a dialect that can express `expressible`; features
    /// it cannot express are an error unless `drop_unsupported` (then they are left out).
    /// Malformed JSON is `invalid_json`, a well-formed body of the wrong shape
    /// `invalid_request`.
    pub fn parse(body: &[u8], drop_unsupported: bool, expressible: Expressible) -> Result<Self, RelayError> {
        let raw: RawRequest = serde_json::from_slice(body).map_err(|e| {
            let code = if e.is_syntax() || e.is_eof() { ErrorCode::InvalidJson } else { ErrorCode::InvalidRequest };
            RelayError::new(code, format!("invalid chat completions request: {e}"))
        })?;
        let parser = Parser { drop: drop_unsupported, expressible };
        parser.check_unsupported(&raw)?;

        let mut messages = Vec::new();
        for (index, message) in raw.messages.into_iter().flatten().enumerate() {
            messages.extend(parser.message(index, message)?);
        }
        let tools = match raw.tools {
            None => Vec::new(),
            Some(tools) => parser.tools(tools)?,
        };
        let tool_choice = raw.tool_choice.as_ref().map(parse_tool_choice).transpose()?;
        let response_format = raw.response_format.map(parse_response_format).transpose()?;
        let reasoning_effort = raw.reasoning_effort.as_deref().map(parse_effort).transpose()?;
        Ok(ClientRequest {
            messages,
            max_tokens: raw.max_completion_tokens.or(raw.max_tokens),
            temperature: raw.temperature,
            top_p: raw.top_p,
            stop: parse_stop(raw.stop)?,
            seed: raw.seed,
            presence_penalty: raw.presence_penalty,
            frequency_penalty: raw.frequency_penalty,
            tools,
            tool_choice,
            parallel_tool_calls: raw.parallel_tool_calls,
            response_format,
            reasoning_effort,
            user: raw.user,
        })
    }
}

/// The dialect's terms for one parse.
struct Parser {
    drop: bool,
    expressible: Expressible,
}

impl Parser {
    fn unsupported(&self, param: &str, what: &str) -> Result<(), RelayError> {
        unsupported(self.drop, param, what)
    }

    fn check_unsupported(&self, raw: &RawRequest) -> Result<(), RelayError> {
        if raw.n.is_some_and(|n| n > 1) {
            self.unsupported("n", "more than one choice (`n` > 1)")?;
        }
        if raw.logprobs == Some(true) || raw.top_logprobs.is_some_and(|n| n > 0) {
            self.unsupported("logprobs", "`logprobs`")?;
        }
        if !self.expressible.penalties {
            if raw.presence_penalty.is_some_and(|p| p != 0.0) {
                self.unsupported("presence_penalty", "`presence_penalty`")?;
            }
            if raw.frequency_penalty.is_some_and(|p| p != 0.0) {
                self.unsupported("frequency_penalty", "`frequency_penalty`")?;
            }
        }
        if raw.logit_bias.as_ref().is_some_and(|bias| !bias.is_empty()) {
            self.unsupported("logit_bias", "`logit_bias`")?;
        }
        if raw.functions.is_some() || raw.function_call.is_some() {
            self.unsupported("functions", "the legacy functions API (use `tools`)")?;
        }
        if raw.audio.is_some() || raw.modalities.as_ref().is_some_and(|m| m.iter().any(|m| m != "text")) {
            self.unsupported("modalities", "output other than text")?;
        }
        if raw.prediction.is_some() {
            self.unsupported("prediction", "predicted outputs (`prediction`)")?;
        }
        if raw.web_search_options.is_some() {
            self.unsupported("web_search_options", "`web_search_options`")?;
        }
        Ok(())
    }

    /// One message; `None` when it is dropped.
    fn message(&self, index: usize, raw: RawMessage) -> Result<Option<Message>, RelayError> {
        let param = format!("messages[{index}]");
        let content = self.content(&param, &raw.content)?;
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
                        arguments: tool_arguments_json(call.function.arguments),
                        extra_content: call.extra_content,
                    })
                    .collect(),
                reasoning: raw.reasoning_content,
            },
            "tool" => Message::Tool {
                tool_call_id: raw.tool_call_id.ok_or_else(|| {
                    invalid(&format!("{param}.tool_call_id"), format!("{param}: a tool message needs `tool_call_id`"))
                })?,
                name: raw.name,
                content,
            },
            "function" if self.expressible.function_results => {
                Message::Tool { tool_call_id: String::new(), name: raw.name, content }
            }
            "function" => {
                self.unsupported(&param, "the legacy `function` role")?;
                return Ok(None);
            }
            other => return Err(invalid(&format!("{param}.role"), format!("{param}: unknown role {other:?}"))),
        };
        Ok(Some(message))
    }

    fn content(&self, param: &str, content: &Value) -> Result<Vec<Part>, RelayError> {
        match content {
            Value::Null => Ok(Vec::new()),
            Value::String(text) => Ok(vec![Part::Text { text: text.clone(), cache_control: None }]),
            Value::Array(parts) => {
                let mut out = Vec::with_capacity(parts.len());
                for part in parts {
                    out.extend(self.part(param, part)?);
                }
                Ok(out)
            }
            _ => Err(invalid(param, format!("{param}.content must be a string or an array of parts"))),
        }
    }

    /// One content part; `None` when it is dropped.
    fn part(&self, param: &str, part: &Value) -> Result<Option<Part>, RelayError> {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        let string = |value: Option<&Value>, field: &str| {
            value
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| invalid(param, format!("{param}: a {kind:?} part needs a string `{field}`")))
        };
        match kind {
            "text" => Ok(Some(Part::Text {
                text: string(part.get("text"), "text")?,
                cache_control: part.get("cache_control").filter(|c| !c.is_null()).cloned(),
            })),
            "refusal" => Ok(Some(Part::Text { text: string(part.get("refusal"), "refusal")?, cache_control: None })),
            "image_url" => {
                let url = match part.get("image_url") {
                    Some(Value::String(url)) => url.as_str(),
                    Some(object) => object.get("url").and_then(Value::as_str).unwrap_or(""),
                    None => "",
                };
                let source = parse_image_url(url).ok_or_else(|| {
                    invalid(param, format!("{param}: image_url must be a data: URL or an http(s) link"))
                })?;
                Ok(Some(Part::Image(source)))
            }
            "input_audio" if self.expressible.audio_input => {
                let audio = part.get("input_audio");
                Ok(Some(Part::Audio {
                    data: string(audio.and_then(|a| a.get("data")), "input_audio.data")?,
                    format: string(audio.and_then(|a| a.get("format")), "input_audio.format")?,
                }))
            }
            "input_audio" => self.unsupported(param, "audio input").map(|()| None),
            "file" => {
                let file = part.get("file");
                let data = file.and_then(|f| f.get("file_data")).and_then(Value::as_str);
                match data.and_then(parse_data_url) {
                    Some((media_type, base64)) => Ok(Some(Part::File {
                        media_type,
                        base64,
                        filename: file.and_then(|f| f.get("filename")).and_then(Value::as_str).map(str::to_owned),
                    })),
                    None => self.unsupported(param, "a file part without inline base64 `file_data`").map(|()| None),
                }
            }
            "" => Err(invalid(param, format!("{param}: a content part needs a `type`"))),
            other => self.unsupported(param, &format!("a content part of type {other:?}")).map(|()| None),
        }
    }

    fn tools(&self, tools: Vec<RawTool>) -> Result<Vec<FunctionTool>, RelayError> {
        let mut out = Vec::with_capacity(tools.len());
        for (index, tool) in tools.into_iter().enumerate() {
            let param = format!("tools[{index}]");
            match (tool.kind.as_deref().unwrap_or("function"), tool.function) {
                ("function", Some(function)) => out.push(FunctionTool {
                    name: function.name,
                    description: function.description,
                    parameters: function.parameters,
                }),
                ("function", None) => return Err(invalid(&param, "a function tool needs `function`")),
                (other, _) => self.unsupported(&param, &format!("tools of type {other:?}"))?,
            }
        }
        Ok(out)
    }
}

/// Splits `data:<media type>;base64,<data>` into the media type (lower case;
/// `application/octet-stream` when the URL names none) and the base64 data.
pub fn parse_data_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    // Parameters such as `;charset=utf-8` may precede `;base64`; the media type is what is left.
    let media_type = media_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let media_type = if media_type.is_empty() { "application/octet-stream".to_owned() } else { media_type };
    Some((media_type, data.to_owned()))
}

/// The format (`png`, `jpeg`, `gif` or `webp`) of a base64 image for an upstream that accepts
/// only those four (Anthropic, Bedrock), with `image/jpg`, which some clients write, as `jpeg`.
/// Any other type is refused here, where the error can say which types `upstream` accepts.
pub fn web_image_format(media_type: &str, upstream: &str) -> Result<&'static str, RelayError> {
    match media_type {
        "image/png" => Ok("png"),
        "image/jpeg" | "image/jpg" => Ok("jpeg"),
        "image/gif" => Ok("gif"),
        "image/webp" => Ok("webp"),
        _ => Err(invalid("messages", format!("{upstream} accepts png, jpeg, gif and webp images, not {media_type}"))),
    }
}

/// A tool call's `arguments` as the JSON text the API specifies: a string as sent, an object
/// (as some clients send it) or any other value encoded, none as empty.
pub fn tool_arguments_json(arguments: Value) -> String {
    match arguments {
        Value::Null => String::new(),
        Value::String(encoded) => encoded,
        object => object.to_string(),
    }
}

fn parse_image_url(url: &str) -> Option<ImageSource> {
    if let Some((media_type, data)) = parse_data_url(url) {
        return Some(ImageSource::Base64 { media_type, data });
    }
    let scheme = url.split_once("://")?.0.to_ascii_lowercase();
    matches!(scheme.as_str(), "https" | "http" | "gs").then(|| ImageSource::Url(url.to_owned()))
}

fn parse_tool_choice(choice: &Value) -> Result<ToolChoice, RelayError> {
    let invalid_choice = || invalid("tool_choice", format!("unrecognised tool_choice {choice}"));
    match choice {
        Value::String(mode) => match mode.as_str() {
            "none" => Ok(ToolChoice::None),
            "auto" => Ok(ToolChoice::Auto),
            "required" => Ok(ToolChoice::Required),
            _ => Err(invalid_choice()),
        },
        Value::Object(object) => match object.get("type").and_then(Value::as_str) {
            Some("allowed_tools") => {
                let allowed = object.get("allowed_tools").ok_or_else(invalid_choice)?;
                let required = match allowed.get("mode").and_then(Value::as_str) {
                    Some("required") => true,
                    Some("auto") | None => false,
                    Some(_) => return Err(invalid_choice()),
                };
                let names = allowed
                    .get("tools")
                    .and_then(Value::as_array)
                    .ok_or_else(invalid_choice)?
                    .iter()
                    .filter_map(|tool| tool.pointer("/function/name").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect();
                Ok(ToolChoice::Allowed { required, names })
            }
            Some("function") | None => choice
                .pointer("/function/name")
                .and_then(Value::as_str)
                .map(|name| ToolChoice::Function(name.to_owned()))
                .ok_or_else(invalid_choice),
            Some(_) => Err(invalid_choice()),
        },
        _ => Err(invalid_choice()),
    }
}

fn parse_response_format(format: RawResponseFormat) -> Result<ResponseFormat, RelayError> {
    match format.kind.as_deref() {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let spec = format.json_schema;
            let (name, description, schema) = match spec {
                Some(spec) => (spec.name, spec.description, spec.schema),
                None => (None, None, None),
            };
            Ok(ResponseFormat::JsonSchema { name, description, schema })
        }
        other => Err(invalid("response_format", format!("unknown response_format type {other:?}"))),
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
        other => Err(invalid("reasoning_effort", format!("unknown reasoning_effort {other:?}"))),
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
        Some(_) => Err(invalid("stop", "stop must be a string or an array of strings")),
    }
}

/// The schema of a `json_schema` response format, or that of any object when the client gave
/// none.
pub fn schema_or_any_object(schema: Option<&Value>) -> Value {
    schema.cloned().unwrap_or_else(|| serde_json::json!({"type": "object"}))
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

/// The name of the function an earlier assistant message called with this id (searching
/// backwards from `before`, so a reused id resolves to its latest call).
pub fn tool_name_for<'a>(messages: &'a [Message], before: usize, tool_call_id: &str) -> Option<&'a str> {
    messages[..before.min(messages.len())]
        .iter()
        .rev()
        .filter_map(|message| match message {
            Message::Assistant { tool_calls, .. } => Some(tool_calls),
            _ => None,
        })
        .flatten()
        .find(|call| call.id == tool_call_id)
        .map(|call| call.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ClientRequest, RelayError> {
        ClientRequest::parse(body.as_bytes(), false, Expressible::default())
    }

    const EVERYTHING: Expressible = Expressible { penalties: true, audio_input: true, function_results: true };

    #[test]
    fn parses_roles_parts_tools_and_options() {
        let request = parse(
            r#"{"model":"m","max_tokens":5,"max_completion_tokens":7,"stop":"END","messages":[
                {"role":"developer","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}},
                    {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},
                    {"type":"image_url","image_url":"https://x.test/a.jpg"}]},
                {"role":"assistant","content":null,"reasoning_content":"r","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"},"extra_content":{"k":1}}]},
                {"role":"tool","tool_call_id":"c1","content":"ok"}],
              "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
              "tool_choice":{"type":"function","function":{"name":"f"}},"parallel_tool_calls":false,
              "reasoning_effort":"low","n":1,"store":true,"seed":3}"#,
        )
        .unwrap();
        assert_eq!(request.max_tokens, Some(7));
        assert_eq!(request.stop, vec!["END"]);
        assert_eq!(request.seed, Some(3));
        assert!(
            matches!(&request.messages[0], Message::System(parts) if plain_text(parts).as_deref() == Some("be brief"))
        );
        let Message::User(parts) = &request.messages[1] else { panic!() };
        assert_eq!(parts.len(), 3);
        assert!(matches!(&parts[0], Part::Text { cache_control: Some(_), .. }));
        assert_eq!(parts[1], Part::Image(ImageSource::Base64 { media_type: "image/png".into(), data: "AAAA".into() }));
        assert_eq!(parts[2], Part::Image(ImageSource::Url("https://x.test/a.jpg".into())));
        let Message::Assistant { tool_calls, reasoning, .. } = &request.messages[2] else { panic!() };
        assert_eq!(tool_calls[0].arguments_object("p").unwrap()["a"], 1);
        assert_eq!(tool_calls[0].extra_content, Some(serde_json::json!({"k": 1})));
        assert_eq!(reasoning.as_deref(), Some("r"));
        assert!(matches!(&request.messages[3], Message::Tool { tool_call_id, .. } if tool_call_id == "c1"));
        assert_eq!(request.tool_choice, Some(ToolChoice::Function("f".into())));
        assert_eq!(request.reasoning_effort, Some(ReasoningEffort::Low));
    }

    #[test]
    fn content_is_a_string_or_parts_and_stop_a_string_or_a_list() {
        let body = r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAA"}},{"type":"video"}]},{"role":"assistant","content":null}],"stop":"x"}"#;
        let error = parse(body).unwrap_err();
        assert_eq!((error.code, error.param.as_deref()), (ErrorCode::UnsupportedParameter, Some("messages[0]")));
        let request = ClientRequest::parse(body.as_bytes(), true, Expressible::default()).unwrap();
        let Message::User(parts) = &request.messages[0] else { panic!() };
        assert!(
            matches!(&parts[..], [Part::Text { text, .. }, Part::Image(ImageSource::Base64 { .. })] if text == "a")
        );
        assert!(matches!(&request.messages[1], Message::Assistant { content, .. } if content.is_empty()));
        assert_eq!(request.stop, vec!["x".to_owned()]);
    }

    #[test]
    fn what_a_dialect_can_express_is_kept() {
        let body = r#"{"messages":[
            {"role":"user","content":[{"type":"input_audio","input_audio":{"data":"UklG","format":"wav"}}]},
            {"role":"function","name":"f","content":"42"}],
            "presence_penalty":0.5,"frequency_penalty":0.1}"#;
        let request = ClientRequest::parse(body.as_bytes(), false, EVERYTHING).unwrap();
        assert_eq!(
            request.messages,
            vec![
                Message::User(vec![Part::Audio { data: "UklG".into(), format: "wav".into() }]),
                Message::Tool {
                    tool_call_id: String::new(),
                    name: Some("f".into()),
                    content: vec![Part::Text { text: "42".into(), cache_control: None }],
                },
            ]
        );
        assert_eq!((request.presence_penalty, request.frequency_penalty), (Some(0.5), Some(0.1)));
        let error = parse(body).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("presence_penalty"));
        let dropped = ClientRequest::parse(body.as_bytes(), true, Expressible::default()).unwrap();
        assert_eq!(dropped.messages, vec![Message::User(Vec::new())]);
    }

    #[test]
    fn unsupported_features_name_their_parameter_unless_dropped() {
        for (body, param) in [
            (r#"{"messages":[],"n":2}"#, "n"),
            (r#"{"messages":[],"logprobs":true}"#, "logprobs"),
            (r#"{"messages":[],"presence_penalty":0.5}"#, "presence_penalty"),
            (r#"{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#, "messages[0]"),
            (r#"{"messages":[{"role":"function","name":"f","content":"x"}]}"#, "messages[0]"),
            (r#"{"messages":[],"tools":[{"type":"custom","custom":{"name":"x"}}]}"#, "tools[0]"),
            (r#"{"messages":[],"functions":[]}"#, "functions"),
            (r#"{"messages":[],"modalities":["text","audio"]}"#, "modalities"),
        ] {
            let error = parse(body).unwrap_err();
            assert_eq!(error.code, ErrorCode::UnsupportedParameter, "{body}");
            assert_eq!(error.param.as_deref(), Some(param));
            assert!(ClientRequest::parse(body.as_bytes(), true, Expressible::default()).is_ok());
        }
        assert!(parse(r#"{"messages":[],"presence_penalty":0,"n":1}"#).is_ok());
        assert!(parse(r#"{"n":1,"logprobs":false,"modalities":["text"]}"#).is_ok());
    }

    #[test]
    fn malformed_requests_are_invalid_requests() {
        for (body, param) in [
            (r#"{"messages":[{"role":"robot","content":"x"}]}"#, Some("messages[0].role")),
            (r#"{"messages":[{"role":"tool","content":"x"}]}"#, Some("messages[0].tool_call_id")),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x"}}]}]}"#,
                Some("messages[0]"),
            ),
            (r#"{"messages":[],"reasoning_effort":"extreme"}"#, Some("reasoning_effort")),
            (r#"{"messages":[],"tool_choice":"sometimes"}"#, Some("tool_choice")),
            (r#"{"messages":"nope"}"#, None),
        ] {
            let error = parse(body).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidRequest, "{body}");
            assert_eq!(error.param.as_deref(), param, "{body}");
        }
        assert_eq!(parse("{").unwrap_err().code, ErrorCode::InvalidJson);
    }

    #[test]
    fn tool_choice_forms_are_normalised() {
        let choice = |raw: &str| parse(&format!(r#"{{"tool_choice":{raw}}}"#)).map(|request| request.tool_choice);
        assert_eq!(choice(r#""required""#).unwrap(), Some(ToolChoice::Required));
        assert_eq!(choice("null").unwrap(), None);
        assert_eq!(
            choice(r#"{"type":"function","function":{"name":"f"}}"#).unwrap(),
            Some(ToolChoice::Function("f".into()))
        );
        assert_eq!(
            choice(r#"{"type":"allowed_tools","allowed_tools":{"mode":"required","tools":[{"type":"function","function":{"name":"g"}}]}}"#)
                .unwrap(),
            Some(ToolChoice::Allowed { required: true, names: vec!["g".into()] })
        );
        assert_eq!(
            choice(r#"{"type":"custom","custom":{"name":"c"}}"#).unwrap_err().param.as_deref(),
            Some("tool_choice")
        );
    }

    #[test]
    fn data_urls_split_into_media_type_and_data() {
        assert_eq!(parse_data_url("data:image/JPEG;base64,/9j/"), Some(("image/jpeg".into(), "/9j/".into())));
        assert_eq!(
            parse_data_url("data:text/plain;charset=utf-8;base64,aGk="),
            Some(("text/plain".into(), "aGk=".into()))
        );
        assert_eq!(parse_data_url("data:;base64,AA"), Some(("application/octet-stream".into(), "AA".into())));
        assert_eq!(parse_data_url("data:image/png,raw"), None);
        assert_eq!(parse_data_url("https://x"), None);
        assert_eq!(parse_image_url("gs://bucket/a.png"), Some(ImageSource::Url("gs://bucket/a.png".into())));
        assert_eq!(parse_image_url("file:///etc/passwd"), None);
    }

    #[test]
    fn thinking_budget_fits_the_client_limit_or_extends_the_default() {
        assert_eq!(plan_thinking(8192, None, 4096), Some(ThinkingPlan { budget_tokens: 8192, max_tokens: 12288 }));
        assert_eq!(plan_thinking(8192, Some(3000), 4096), Some(ThinkingPlan { budget_tokens: 2999, max_tokens: 3000 }));
        assert_eq!(
            plan_thinking(2048, Some(20000), 4096),
            Some(ThinkingPlan { budget_tokens: 2048, max_tokens: 20000 })
        );
        assert_eq!(plan_thinking(2048, Some(1024), 4096), None);
    }

    #[test]
    fn tool_arguments_must_be_a_json_object() {
        let call = |arguments: &str| ToolCall {
            id: "c".into(),
            name: "f".into(),
            arguments: arguments.into(),
            extra_content: None,
        };
        assert!(call("").arguments_object("p").unwrap().is_empty());
        assert_eq!(call(r#"{"a":1}"#).arguments_object("p").unwrap()["a"], 1);
        let error = call("[1]").arguments_object("p").unwrap_err();
        assert_eq!((error.code, error.param.as_deref()), (ErrorCode::InvalidRequest, Some("p")));
        assert!(call("{").arguments_object("p").is_err());
        let object = parse(
            r#"{"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{"a":2}}}]}]}"#,
        )
        .unwrap();
        let Message::Assistant { tool_calls, .. } = &object.messages[0] else { panic!() };
        assert_eq!(tool_calls[0].id, "");
        assert_eq!(tool_calls[0].arguments_object("p").unwrap()["a"], 2);
    }

    #[test]
    fn tool_names_are_found_in_the_latest_calling_message() {
        let request = parse(
            r#"{"messages":[
                {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"old","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"c1","content":"x"},
                {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"new","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"c1","content":"y"}]}"#,
        )
        .unwrap();
        assert_eq!(tool_name_for(&request.messages, 1, "c1"), Some("old"));
        assert_eq!(tool_name_for(&request.messages, 3, "c1"), Some("new"));
        assert_eq!(tool_name_for(&request.messages, 3, "zz"), None);
    }
}
