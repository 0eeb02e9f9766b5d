//! `anthropic-messages`: OpenAI chat completions over Anthropic's Messages API
//! (`POST {base_url}/v1/messages`, base URL `https://api.anthropic.com`).
//!
//! API references used: Anthropic's Messages API, streaming, extended thinking, tool use,
//! structured outputs, vision/PDF and error pages (docs.anthropic.com / platform.claude.com),
//! and the recorded exchanges in `shared/fixtures/upstream/anthropic/`.
//!
//! # Request
//! - Headers: `anthropic-version` (config, default `2023-06-01`) and `content-type`. The key goes
//!   in `x-api-key` ([`Dialect::default_auth`]); the config may switch to Bearer.
//! - `max_tokens` is mandatory upstream: `max_completion_tokens`, else `max_tokens`, else the
//!   configured default (4096).
//! - `system` and `developer` messages, wherever they appear, become the top-level `system` (a
//!   string for one plain text, else text blocks). Message content is always sent as blocks.
//!   Consecutive messages of one role are merged into one turn (several `tool` results become
//!   one user turn of `tool_result` blocks); empty messages are dropped, as are empty text parts.
//! - Images: data URLs -> `base64` sources, http(s) URLs -> `url` sources. Anthropic takes only
//!   png, jpeg, gif and webp data (`image/jpg` is sent as `image/jpeg`; other types are a 400
//!   `messages`, even with `drop_unsupported`, as for Bedrock). Inline files -> `document`
//!   blocks: PDFs as `base64` sources; text files (`text/*`, JSON, XML) decoded into `text`
//!   sources, the only other kind Anthropic reads (not UTF-8 -> 400); any other type is
//!   `unsupported_parameter`. A `cache_control` on a text part is kept (prompt caching).
//! - Assistant `tool_calls` -> `tool_use` blocks (arguments parsed; not a JSON object -> 400).
//!   Tools -> `{name, description, input_schema}`; `strict` is not forwarded (older models
//!   reject it). `tool_choice`: auto -> `auto`, required -> `any`, named -> `tool`, none ->
//!   `none`; `parallel_tool_calls: false` -> `disable_parallel_tool_use: true`. Without tools no
//!   `tool_choice` is sent.
//! - `reasoning_effort` -> `thinking: {type: enabled, budget_tokens}` with budgets minimal 1024,
//!   low 2048, medium 8192, high 16384, xhigh 24576 (`none` sends nothing). With a client token
//!   limit the budget is shrunk to fit under it (limit <= 1024 -> 400 `reasoning_effort`); without
//!   one `max_tokens` = default + budget. A request continuing a tool loop (last assistant turn
//!   calls tools) is sent without `thinking`, because Anthropic then requires the signed thinking
//!   block that OpenAI history cannot carry. Temperature/top_p/tool_choice constraints that
//!   Anthropic places on thinking are left to the upstream to report.
//! - `response_format` json_schema -> `output_config.format` (Anthropic structured outputs, GA on
//!   Claude 4.5+ models; older models answer 400, passed on). json_object has no Anthropic
//!   equivalent without a schema -> 400 unless `drop_unsupported`. text -> nothing.
//! - `stop` -> `stop_sequences`, `temperature`/`top_p` as given (Anthropic's 0..1 temperature
//!   range is enforced upstream), `user` -> `metadata.user_id`. Ignored: `seed`, `store`,
//!   `metadata`, `service_tier`, `stream_options` (usage is always counted). Unsupported features
//!   are listed in [`crate::dialect::client_request`].
//!
//! # Response
//! - `text` blocks are concatenated into `content`; `thinking` blocks into `reasoning_content`.
//!   `redacted_thinking` is omitted: it is encrypted and only meaningful when sent back, which
//!   OpenAI history cannot do. `tool_use` -> `tool_calls` (arguments re-serialised, `{}` for
//!   none). Server-side tools (`server_tool_use`, their results) run upstream and are not shown.
//! - `stop_reason`: end_turn, stop_sequence, pause_turn -> `stop`; max_tokens,
//!   model_context_window_exceeded -> `length`; tool_use -> `tool_calls`; refusal ->
//!   `content_filter`.
//! - Usage: OpenAI's `prompt_tokens` includes cached input, Anthropic's `input_tokens` does
//!   not, so `prompt_tokens = input_tokens + cache_read_input_tokens +
//!   cache_creation_input_tokens` and `cached_tokens = cache_read_input_tokens`. Anthropic does
//!   not count thinking tokens apart, so `reasoning_tokens` is 0.
//! - The id is Anthropic's message id; `model` is the model Anthropic reports.
//! - A 2xx body without a `content` array is no message: 502 `upstream_invalid_response`.
//!
//! # Stream
//! `message_start` gives the id and model of every chunk, `content_block_*` events map as above
//! (`text_delta`, `thinking_delta`, `input_json_delta`; `signature_delta` and `citations_delta`
//! are dropped), `message_delta` carries the stop reason and final usage, `message_stop` ends it
//! (finish chunk, usage chunk if asked, `[DONE]`). `ping` is ignored. An `error` event fails the
//! stream: `overloaded_error` -> `upstream_overloaded`, `rate_limit_error` ->
//! `upstream_rate_limited`, others `upstream_stream_error`. No `message_stop` -> truncated.
//!
//! # Errors
//! `{"type":"error","error":{"type":..., "message":...}}`: 529 / 503 / `overloaded_error` -> 503
//! `upstream_overloaded`; 429 / `rate_limit_error` -> 429 `upstream_rate_limited`; everything else
//! keeps its status as `upstream_http_error`, with Anthropic's message (see
//! [`crate::dialect::errors`]).

mod request;
mod response;
mod stream;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::errors::{status_error, upstream_message};
use super::framed::SseStream;
use super::openai::excerpt;
use super::{
    AuthStyle, ChatRequest, Dialect, DialectOptions, ResponseContext, StreamTranslator, Translated, UpstreamCall, Usage,
};
use crate::error::{ErrorCode, RelayError};

/// The `anthropic-version` sent when the config names none.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// The `max_tokens` sent when neither the client nor the config gives one.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The Anthropic Messages dialect.
#[derive(Debug, Clone)]
pub struct AnthropicMessages {
    anthropic_version: HeaderValue,
    default_max_tokens: u64,
    drop_unsupported: bool,
}

impl AnthropicMessages {
    /// The dialect with its options; an `anthropic_version` that is not a valid header value
    /// falls back to the default (config validation reports it).
    pub fn new(options: &DialectOptions) -> Self {
        let anthropic_version = options
            .anthropic_version
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
            .unwrap_or(HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION));
        AnthropicMessages {
            anthropic_version,
            default_max_tokens: options.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            drop_unsupported: options.drop_unsupported,
        }
    }
}

impl Dialect for AnthropicMessages {
    fn translate_request(&self, request: &ChatRequest) -> Result<UpstreamCall, RelayError> {
        let body = request::build_body(self, request)?;
        let mut call = UpstreamCall::post("/v1/messages", Bytes::from(body.to_string()), request.stream);
        call.headers.push((HeaderName::from_static("anthropic-version"), self.anthropic_version.clone()));
        call.headers.push((http::header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
        Ok(call)
    }

    fn translate_response(&self, body: Bytes, ctx: &ResponseContext) -> Result<Translated, RelayError> {
        response::translate(&body, ctx)
    }

    fn stream_translator(&self, ctx: &ResponseContext) -> Box<dyn StreamTranslator> {
        Box::new(SseStream::new(stream::AnthropicStream::new(ctx)))
    }

    fn translate_error(&self, status: u16, body: &Bytes) -> RelayError {
        let error_type = serde_json::from_slice::<ErrorEnvelope>(body).ok().and_then(|envelope| envelope.error.kind);
        let message = upstream_message(body);
        // The error type classifies even when the status does not say it; a 529 is overloaded
        // whatever its type.
        match error_type.as_deref() {
            Some("overloaded_error") => status_error(503, message),
            Some("rate_limit_error") if status != 529 => status_error(429, message),
            _ => status_error(status, message),
        }
    }

    fn default_auth(&self) -> AuthStyle {
        AuthStyle::Header("x-api-key")
    }

    fn models_path(&self) -> Option<&'static str> {
        Some("/v1/models")
    }
}

/// `{"type":"error","error":{...}}`, as an HTTP body or a stream event.
#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

impl ErrorBody {
    /// The relay error for an error event inside a 200 stream.
    fn into_stream_error(self) -> RelayError {
        let kind = self.kind.unwrap_or_default();
        let code = match kind.as_str() {
            "overloaded_error" => ErrorCode::UpstreamOverloaded,
            "rate_limit_error" => ErrorCode::UpstreamRateLimited,
            _ => ErrorCode::UpstreamStreamError,
        };
        let message = self.message.unwrap_or_default();
        RelayError::new(code, format!("upstream stream error: {kind}: {message}"))
    }
}

/// A content block, as in a response body and in `content_block_start` events.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// `redacted_thinking`, server tools and their results, and block types added later.
    #[serde(other)]
    Other,
}

/// Anthropic's usage object; every field may be absent or null, and a stream's
/// `message_delta` repeats only some of them.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Takes the counts `newer` has (stream totals are cumulative).
    fn update(&mut self, newer: WireUsage) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = newer.cache_creation_input_tokens.or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = newer.cache_read_input_tokens.or(self.cache_read_input_tokens);
    }

    fn to_usage(self) -> Usage {
        let cache_read = self.cache_read_input_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: self.input_tokens.unwrap_or(0) + cache_read + self.cache_creation_input_tokens.unwrap_or(0),
            completion_tokens: self.output_tokens.unwrap_or(0),
            cached_tokens: cache_read,
            reasoning_tokens: 0,
        }
    }
}

/// OpenAI's `finish_reason` for an Anthropic `stop_reason`.
fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// A JSON value from the upstream that is not what the API documents.
fn invalid_response(what: &str, error: impl std::fmt::Display, raw: &[u8]) -> RelayError {
    RelayError::new(
        ErrorCode::UpstreamInvalidResponse,
        format!("Anthropic sent an unreadable {what}: {error}: {}", excerpt(raw)),
    )
}

/// Serialises a tool's input as OpenAI `arguments`; an absent input is `{}`.
fn arguments_string(input: &Value) -> String {
    match input {
        Value::Null => "{}".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
