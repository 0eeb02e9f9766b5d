//! Chat-completions request body -> Responses request body.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::error::{ErrorCode, RelayError};

/// Instructions sent to Codex when the client gave no system prompt: the ChatGPT backend answers
/// 400 "Instructions are required" without any.
const CODEX_FALLBACK_INSTRUCTIONS: &str = "You are a helpful assistant.";

/// The smallest `max_output_tokens` the Responses API accepts.
const MIN_OUTPUT_TOKENS: u64 = 16;

/// What differs between the Responses endpoints when building a body.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyShape {
    /// ChatGPT-backed Codex: always streamed and unstored, instructions required, no output cap.
    pub(super) codex: bool,
    /// Drop what cannot be expressed instead of answering 400.
    pub(super) drop_unsupported: bool,
}

/// Builds the Responses body for a client's chat-completions body.
pub(super) fn build_body(client_body: &[u8], model: &str, stream: bool, shape: BodyShape) -> Result<Bytes, RelayError> {
    let request: Map<String, Value> = serde_json::from_slice(client_body)
        .map_err(|e| RelayError::new(ErrorCode::InvalidJson, format!("request body: {e}")))?;
    let builder = Builder { request: &request, shape };
    let body = builder.build(model, stream)?;
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| RelayError::new(ErrorCode::Internal, format!("serialising the Responses body: {e}")))
}

/// Reads the client's body and writes the Responses one.
pub(super) struct Builder<'a> {
    request: &'a Map<String, Value>,
    pub(super) shape: BodyShape,
}

impl Builder<'_> {
    /// A member of the client's body; JSON `null` counts as absent, as OpenAI treats it.
    fn param(&self, name: &str) -> Option<&Value> {
        self.request.get(name).filter(|value| !value.is_null())
    }

    /// A parameter the Responses API cannot express: 400, or nothing when dropping is allowed.
    pub(super) fn unsupported(&self, param: &str, why: &str) -> Result<(), RelayError> {
        if self.shape.drop_unsupported {
            return Ok(());
        }
        Err(RelayError::new(ErrorCode::UnsupportedParameter, format!("{param}: {why}")).with_param(param))
    }

    fn build(&self, model: &str, stream: bool) -> Result<Map<String, Value>, RelayError> {
        let mut body = Map::new();
        body.insert("model".into(), Value::String(model.to_owned()));

        let messages = match self.param("messages") {
            Some(Value::Array(messages)) => messages.as_slice(),
            Some(_) => return Err(invalid("messages must be an array", "messages")),
            None => return Err(invalid("messages is required", "messages")),
        };
        let (instructions, input) = self.translate_messages(messages)?;
        let instructions = if self.shape.codex {
            instructions.filter(|text| !text.trim().is_empty()).or_else(|| Some(CODEX_FALLBACK_INSTRUCTIONS.to_owned()))
        } else {
            instructions
        };
        if let Some(instructions) = instructions {
            body.insert("instructions".into(), Value::String(instructions));
        }
        body.insert("input".into(), Value::Array(input));

        if let Some(tools) = self.param("tools") {
            let tools = self.translate_tools(tools)?;
            if !tools.is_empty() {
                body.insert("tools".into(), Value::Array(tools));
            }
        }
        if let Some(choice) = self.param("tool_choice") {
            if let Some(choice) = self.translate_tool_choice(choice)? {
                body.insert("tool_choice".into(), choice);
            }
        }
        if let Some(parallel) = self.param("parallel_tool_calls") {
            body.insert("parallel_tool_calls".into(), parallel.clone());
        }

        let mut text = Map::new();
        if let Some(format) = self.param("response_format") {
            if let Some(format) = self.translate_response_format(format)? {
                text.insert("format".into(), format);
            }
        }
        if let Some(verbosity) = self.param("verbosity") {
            text.insert("verbosity".into(), verbosity.clone());
        }
        if !text.is_empty() {
            body.insert("text".into(), Value::Object(text));
        }

        let mut reasoning = Map::new();
        if let Some(effort) = self.param("reasoning_effort") {
            reasoning.insert("effort".into(), effort.clone());
        }
        if self.shape.codex {
            // Codex models always reason; ask for the summary so it reaches the client as
            // `reasoning_content` (the ChatGPT backend allows it, as Codex CLI does).
            reasoning.insert("summary".into(), Value::String("auto".into()));
        }
        if !reasoning.is_empty() {
            body.insert("reasoning".into(), Value::Object(reasoning));
        }

        // Codex answers 400 "Unsupported parameter: max_output_tokens": the ChatGPT backend sets
        // its own output budget, so the client's limit is dropped there.
        let limit = self.param("max_completion_tokens").or_else(|| self.param("max_tokens"));
        if let Some(limit) = limit.filter(|_| !self.shape.codex) {
            let limit =
                limit.as_u64().ok_or_else(|| invalid("max_tokens must be a non-negative integer", "max_tokens"))?;
            // Below the API's minimum the upstream would answer 400; a slightly larger cap is
            // the closest expressible request.
            body.insert("max_output_tokens".into(), Value::from(limit.max(MIN_OUTPUT_TOKENS)));
        }
        for name in
            ["temperature", "top_p", "user", "metadata", "service_tier", "prompt_cache_key", "safety_identifier"]
        {
            if let Some(value) = self.param(name) {
                body.insert(name.into(), value.clone());
            }
        }
        self.check_unexpressible()?;

        let store = match self.param("store") {
            Some(Value::Bool(store)) if !self.shape.codex => *store,
            _ => false,
        };
        body.insert("store".into(), Value::Bool(store));
        body.insert("stream".into(), Value::Bool(stream || self.shape.codex));
        Ok(body)
    }

    /// Chat parameters with no Responses equivalent. Harmless values (`n: 1`, zero penalties,
    /// `logprobs: false`) pass silently; `seed` and `stream_options` are always dropped.
    fn check_unexpressible(&self) -> Result<(), RelayError> {
        if self.param("n").is_some_and(|n| n.as_u64() != Some(1)) {
            self.unsupported("n", "the Responses API returns a single choice")?;
        }
        let has_stop = match self.param("stop") {
            Some(Value::String(stop)) => !stop.is_empty(),
            Some(Value::Array(stops)) => !stops.is_empty(),
            Some(_) => true,
            None => false,
        };
        if has_stop {
            self.unsupported("stop", "the Responses API has no stop sequences")?;
        }
        for penalty in ["frequency_penalty", "presence_penalty"] {
            if self.param(penalty).is_some_and(|p| p.as_f64() != Some(0.0)) {
                self.unsupported(penalty, "the Responses API has no sampling penalties")?;
            }
        }
        if self.param("logit_bias").is_some_and(|bias| bias.as_object().is_none_or(|b| !b.is_empty())) {
            self.unsupported("logit_bias", "the Responses API has no logit bias")?;
        }
        if self.param("logprobs").is_some_and(|logprobs| logprobs != &Value::Bool(false)) {
            self.unsupported("logprobs", "log probabilities are not translated from the Responses API")?;
        }
        let text_only =
            |modalities: &Value| modalities.as_array().is_some_and(|m| m.iter().all(|m| m.as_str() == Some("text")));
        if self.param("modalities").is_some_and(|m| !text_only(m)) {
            self.unsupported("modalities", "only text output is translated")?;
        }
        for (name, why) in [
            ("audio", "audio output is not translated"),
            ("prediction", "predicted outputs are not supported by the Responses API"),
            ("web_search_options", "built-in web search is not translated"),
            ("functions", "legacy functions are not translated; use tools"),
            ("function_call", "legacy function_call is not translated; use tool_choice"),
        ] {
            if self.param(name).is_some() {
                self.unsupported(name, why)?;
            }
        }
        Ok(())
    }

    /// Chat tools `{type, function: {...}}` flattened to Responses function tools. `strict`
    /// defaults to `false` as in chat completions (Responses would otherwise enforce it).
    fn translate_tools(&self, tools: &Value) -> Result<Vec<Value>, RelayError> {
        let Value::Array(tools) = tools else {
            return Err(invalid("tools must be an array", "tools"));
        };
        let mut translated = Vec::with_capacity(tools.len());
        for tool in tools {
            if tool.get("type").and_then(Value::as_str).is_some_and(|kind| kind != "function") {
                self.unsupported("tools", "only function tools are translated")?;
                continue;
            }
            let function = tool
                .get("function")
                .and_then(Value::as_object)
                .ok_or_else(|| invalid("tools[].function is missing", "tools"))?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("tools[].function.name is missing", "tools"))?;
            let mut flat = Map::new();
            flat.insert("type".into(), Value::String("function".into()));
            flat.insert("name".into(), Value::String(name.to_owned()));
            if let Some(description) = function.get("description").filter(|d| !d.is_null()) {
                flat.insert("description".into(), description.clone());
            }
            let parameters = function
                .get("parameters")
                .filter(|p| !p.is_null())
                .cloned()
                .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
            flat.insert("parameters".into(), parameters);
            let strict = function.get("strict").and_then(Value::as_bool).unwrap_or(false);
            flat.insert("strict".into(), Value::Bool(strict));
            translated.push(Value::Object(flat));
        }
        Ok(translated)
    }

    fn translate_tool_choice(&self, choice: &Value) -> Result<Option<Value>, RelayError> {
        if let Some(mode) = choice.as_str() {
            return match mode {
                "none" | "auto" | "required" => Ok(Some(Value::String(mode.to_owned()))),
                other => {
                    Err(invalid(format!("tool_choice {other:?} is not one of none, auto, required"), "tool_choice"))
                }
            };
        }
        let named = |value: &Value| value.pointer("/function/name").and_then(Value::as_str).map(str::to_owned);
        match choice.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name =
                    named(choice).ok_or_else(|| invalid("tool_choice.function.name is missing", "tool_choice"))?;
                Ok(Some(json!({ "type": "function", "name": name })))
            }
            Some("allowed_tools") => {
                let allowed = choice.get("allowed_tools").unwrap_or(&Value::Null);
                let mode = allowed.get("mode").and_then(Value::as_str).unwrap_or("auto");
                let tools: Vec<Value> = allowed
                    .get("tools")
                    .and_then(Value::as_array)
                    .map(|tools| {
                        tools.iter().filter_map(named).map(|name| json!({ "type": "function", "name": name })).collect()
                    })
                    .unwrap_or_default();
                Ok(Some(json!({ "type": "allowed_tools", "mode": mode, "tools": tools })))
            }
            _ => {
                self.unsupported(
                    "tool_choice",
                    "only none, auto, required, a named function or allowed_tools are translated",
                )?;
                Ok(None)
            }
        }
    }

    /// `response_format` -> `text.format`; the json_schema wrapper is flattened.
    fn translate_response_format(&self, format: &Value) -> Result<Option<Value>, RelayError> {
        match format.get("type").and_then(Value::as_str) {
            Some("text") => Ok(Some(json!({ "type": "text" }))),
            Some("json_object") => Ok(Some(json!({ "type": "json_object" }))),
            Some("json_schema") => {
                let schema = format
                    .get("json_schema")
                    .and_then(Value::as_object)
                    .ok_or_else(|| invalid("response_format.json_schema is missing", "response_format"))?;
                let mut flat = Map::new();
                flat.insert("type".into(), Value::String("json_schema".into()));
                flat.insert(
                    "name".into(),
                    schema.get("name").cloned().unwrap_or_else(|| Value::String("response".into())),
                );
                for key in ["schema", "strict", "description"] {
                    if let Some(value) = schema.get(key).filter(|v| !v.is_null()) {
                        flat.insert(key.into(), value.clone());
                    }
                }
                Ok(Some(Value::Object(flat)))
            }
            _ => {
                self.unsupported("response_format", "only text, json_object and json_schema are translated")?;
                Ok(None)
            }
        }
    }
}

/// A malformed request: 400 naming the parameter.
pub(super) fn invalid(message: impl Into<String>, param: &str) -> RelayError {
    RelayError::new(ErrorCode::InvalidRequest, message).with_param(param)
}
