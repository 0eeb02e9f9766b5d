//! `bedrock-converse-stream`: OpenAI chat completions over the Amazon Bedrock Runtime Converse
//! API: `POST {base_url}/model/{model id}/converse`, and `/converse-stream` for streams (binary
//! `application/vnd.amazon.eventstream`). Base URL `https://bedrock-runtime.{region}.amazonaws.com`;
//! requests are signed with SigV4 (service `bedrock`) by the upstream layer.
//!
//! API references used: the Bedrock Runtime service model (`shared/specs/bedrock-runtime/
//! service-2.json`: Converse, ConverseStream, their shapes and exceptions), the Converse and
//! prompt-caching pages of the Bedrock user guide, and the recorded exchanges in
//! `shared/fixtures/upstream/bedrock/`.
//!
//! # Request
//! - The model id is percent-encoded into the path (`us.amazon.nova-micro-v1%3A0`; ARNs work).
//! - `system`/`developer` messages -> `system` text blocks. Content -> `text`, `image`
//!   (`format` png/jpeg/gif/webp and base64 `source.bytes` from a data URL; other image types are
//!   a 400), `document` (inline files: pdf, csv, doc(x), xls(x), html, txt, md; the name comes
//!   from the file name). Image **URLs are not supported by Bedrock** -> 400 `messages` unless
//!   `drop_unsupported`. Blank text parts are dropped (Bedrock rejects them); consecutive
//!   same-role messages are merged into one turn. A `cache_control` on a text part adds a
//!   `cachePoint` block after it.
//! - Assistant `tool_calls` -> `toolUse` blocks; `tool` messages -> `toolResult` blocks (content
//!   as `text`/`image` blocks) in a user turn.
//! - `inferenceConfig`: `maxTokens` (client limit, else the configured `default_max_tokens`, else
//!   none: Bedrock applies the model's default), `temperature`, `topP`, `stopSequences`.
//! - `toolConfig`: tools -> `toolSpec {name, description, inputSchema.json}` (an empty
//!   description is left out, Converse rejects it); `tool_choice` auto -> no `toolChoice` (auto
//!   is the default), required -> `any`, named -> `tool`, none -> tools left out (400 if the
//!   history holds tool calls, which Bedrock only accepts with a tool configuration).
//!   `parallel_tool_calls: false` has no Converse equivalent -> 400 unless `drop_unsupported`.
//! - `reasoning_effort` through `additionalModelRequestFields`, by model family (from the model
//!   id): Claude -> `thinking {type: enabled, budget_tokens}` with the same budgets and token
//!   rules as the `anthropic-messages` dialect (default answer allowance 4096 when none is
//!   configured, no thinking when continuing a tool loop); gpt-oss -> `reasoning_effort`
//!   low/medium/high (minimal -> low, xhigh -> high); other models -> 400 unless
//!   `drop_unsupported`. `none` sends nothing.
//! - `response_format` json_schema -> `outputConfig.textFormat` (Converse structured output; the
//!   schema travels as a JSON string). json_object -> 400 unless `drop_unsupported`.
//! - `user`, `seed`, `store`, `metadata`, `service_tier` are ignored (`requestMetadata` has a
//!   restricted character set that arbitrary user ids would break).
//!
//! # Response
//! - `text` blocks -> `content` (concatenated), `reasoningContent.reasoningText` ->
//!   `reasoning_content` (redacted reasoning is omitted), `toolUse` -> `tool_calls`.
//! - `stopReason`: end_turn, stop_sequence -> `stop`; max_tokens, model_context_window_exceeded
//!   -> `length`; tool_use -> `tool_calls`; guardrail_intervened, content_filtered ->
//!   `content_filter`; malformed_model_output, malformed_tool_use -> `stop`.
//! - Usage: `inputTokens` excludes cache reads and writes (as Anthropic's), so
//!   `prompt_tokens = inputTokens + cacheReadInputTokens + cacheWriteInputTokens`,
//!   `cached_tokens = cacheReadInputTokens` (older `...Count` names accepted).
//! - Bedrock sends no response id: the relay's id is used; `model` is the requested model id.
//!
//! # Stream
//! Event-stream frames are decoded with `aws-smithy-eventstream` (prelude and message CRCs are
//! checked). `messageStart`, `contentBlockStart` (toolUse: id and name), `contentBlockDelta`
//! (`text`, `toolUse.input` fragments, `reasoningContent.text`; signatures, redacted content and
//! citations dropped), `contentBlockStop`, `messageStop` (stop reason) and `metadata` (usage,
//! sent after `messageStop`) map as above; the finish chunk goes out with the usage once
//! `metadata` arrives, or at the end of the stream. No `messageStop` -> truncated. Exception
//! frames fail the stream: throttlingException -> `upstream_rate_limited` (429),
//! serviceUnavailableException -> `upstream_overloaded` (503), validationException ->
//! `upstream_stream_error` with status 400, others `upstream_stream_error`.
//!
//! # Errors
//! Bodies are `{"message": "..."}`, the exception name being in the `x-amzn-ErrorType` header,
//! which [`Dialect::translate_error`] does not see: the status decides. 429
//! (ThrottlingException, ModelNotReadyException) -> `upstream_rate_limited`; 503
//! (ServiceUnavailableException) -> `upstream_overloaded`; everything else (400 validation, 403
//! access denied, 404, 408 model timeout, 424 model error, 500) keeps its status as
//! `upstream_http_error` with Bedrock's message.

mod request;
mod response;
mod stream;

use bytes::Bytes;
use http::HeaderValue;
use serde::Deserialize;

use super::errors::{status_error, upstream_message};
use super::openai::excerpt;
use super::{
    AuthStyle, ChatRequest, Dialect, DialectOptions, ResponseContext, StreamTranslator, Translated, UpstreamCall, Usage,
};
use crate::error::{ErrorCode, RelayError};

/// The answer allowance added to a Claude thinking budget when neither the client nor the config
/// gives a token limit.
pub const DEFAULT_CLAUDE_MAX_TOKENS: u64 = 4096;

/// The Bedrock Converse dialect.
#[derive(Debug, Clone)]
pub struct BedrockConverse {
    default_max_tokens: Option<u64>,
    drop_unsupported: bool,
}

impl BedrockConverse {
    /// The dialect with its options (the region only matters to the base URL and signing).
    pub fn new(options: &DialectOptions) -> Self {
        BedrockConverse { default_max_tokens: options.default_max_tokens, drop_unsupported: options.drop_unsupported }
    }
}

/// Percent-encodes a path segment: everything but RFC 3986 unreserved characters.
fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() + 8);
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Dialect for BedrockConverse {
    fn translate_request(&self, request: &ChatRequest) -> Result<UpstreamCall, RelayError> {
        let body = request::build_body(self, request)?;
        let model = encode_path_segment(&request.upstream_model);
        let (path, accept) = if request.stream {
            (format!("/model/{model}/converse-stream"), "application/vnd.amazon.eventstream")
        } else {
            (format!("/model/{model}/converse"), "application/json")
        };
        let mut call = UpstreamCall::post(path, Bytes::from(body.to_string()), request.stream);
        call.headers.push((http::header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
        call.headers.push((http::header::ACCEPT, HeaderValue::from_static(accept)));
        Ok(call)
    }

    fn translate_response(&self, body: Bytes, ctx: &ResponseContext) -> Result<Translated, RelayError> {
        response::translate(&body, ctx)
    }

    fn stream_translator(&self, ctx: &ResponseContext) -> Box<dyn StreamTranslator> {
        Box::new(stream::ConverseStream::new(ctx))
    }

    fn translate_error(&self, status: u16, body: &Bytes) -> RelayError {
        status_error(status, upstream_message(body))
    }

    fn default_auth(&self) -> AuthStyle {
        AuthStyle::SigV4
    }

    /// Models are listed by the `bedrock` control-plane endpoint, not `bedrock-runtime`.
    fn models_path(&self) -> Option<&'static str> {
        None
    }
}

/// Converse token usage. Some responses carry the cache counts under both their current and
/// their older `...Count` names.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_write_input_tokens: Option<u64>,
    cache_read_input_token_count: Option<u64>,
    cache_write_input_token_count: Option<u64>,
}

impl WireUsage {
    fn to_usage(self) -> Usage {
        let cache_read = self.cache_read_input_tokens.or(self.cache_read_input_token_count).unwrap_or(0);
        let cache_write = self.cache_write_input_tokens.or(self.cache_write_input_token_count).unwrap_or(0);
        Usage {
            prompt_tokens: self.input_tokens.unwrap_or(0) + cache_read + cache_write,
            completion_tokens: self.output_tokens.unwrap_or(0),
            cached_tokens: cache_read,
            reasoning_tokens: 0,
        }
    }
}

/// OpenAI's `finish_reason` for a Converse `stopReason`.
fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("guardrail_intervened") | Some("content_filtered") => "content_filter",
        _ => "stop",
    }
}

/// A payload from Bedrock that is not what the API documents.
fn invalid_response(what: &str, error: impl std::fmt::Display, raw: &[u8]) -> RelayError {
    RelayError::new(
        ErrorCode::UpstreamInvalidResponse,
        format!("Bedrock sent an unreadable {what}: {error}: {}", excerpt(raw)),
    )
}

#[cfg(test)]
mod tests;
