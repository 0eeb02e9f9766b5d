//! Gemini `GenerateContentResponse` -> OpenAI: the wire types, the part, finish-reason and
//! usage mappings shared with the stream translator, the non-streamed translation and errors.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::dialect::completion::{generated_tool_call_id, Completion, ToolCallOut};
use crate::dialect::errors::{status_error, upstream_message};
use crate::dialect::openai::excerpt;
use crate::dialect::{ResponseContext, Translated, Usage};
use crate::error::{ErrorCode, RelayError};

/// One `GenerateContentResponse` (a whole response, or one event of a stream).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateResponse {
    #[serde(default)]
    pub(super) candidates: Vec<Candidate>,
    #[serde(default)]
    pub(super) prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub(super) usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    pub(super) model_version: Option<String>,
    #[serde(default)]
    pub(super) response_id: Option<String>,
    /// An error sent in place of a response (in-band, in a stream).
    #[serde(default)]
    pub(super) error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Candidate {
    #[serde(default)]
    pub(super) content: Option<CandidateContent>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
    #[serde(default)]
    pub(super) index: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CandidateContent {
    #[serde(default)]
    pub(super) parts: Vec<Part>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Part {
    #[serde(default)]
    pub(super) text: Option<String>,
    #[serde(default)]
    pub(super) thought: Option<bool>,
    #[serde(default)]
    pub(super) function_call: Option<FunctionCall>,
    #[serde(default)]
    pub(super) thought_signature: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct FunctionCall {
    #[serde(default)]
    pub(super) id: Option<String>,
    pub(super) name: String,
    #[serde(default)]
    pub(super) args: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PromptFeedback {
    #[serde(default)]
    pub(super) block_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
}

impl From<&UsageMetadata> for Usage {
    /// Thinking is billed as output, so completion tokens are candidates plus thoughts (and
    /// `total_tokens` then equals Gemini's `totalTokenCount`).
    fn from(usage: &UsageMetadata) -> Self {
        Usage {
            prompt_tokens: usage.prompt_token_count + usage.tool_use_prompt_token_count,
            completion_tokens: usage.candidates_token_count + usage.thoughts_token_count,
            cached_tokens: usage.cached_content_token_count,
            reasoning_tokens: usage.thoughts_token_count,
        }
    }
}

impl GenerateResponse {
    /// Takes the first candidate (the relay never asks for more than one).
    pub(super) fn take_candidate(&mut self) -> Option<Candidate> {
        let position = self.candidates.iter().position(|c| c.index.unwrap_or(0) == 0).unwrap_or(0);
        (position < self.candidates.len()).then(|| self.candidates.swap_remove(position))
    }

    /// The `chat.completion` id: the upstream's response id when it sent one.
    pub(super) fn completion_id(&self) -> Option<String> {
        self.response_id.as_ref().filter(|id| !id.is_empty()).map(|id| format!("chatcmpl-{id}"))
    }

    /// The model that answered, without the `models/` prefix.
    pub(super) fn model(&self) -> Option<String> {
        self.model_version.as_deref().map(|m| m.strip_prefix("models/").unwrap_or(m).to_owned())
    }

    /// Why a prompt was refused before any candidate was generated.
    pub(super) fn block_reason(&self) -> Option<&str> {
        self.prompt_feedback.as_ref()?.block_reason.as_deref()
    }
}

/// What one Gemini part means to an OpenAI client.
#[derive(Debug)]
pub(super) enum Piece {
    Text(String),
    Thought(String),
    Call(ToolCallOut),
}

/// Reads one part. Function calls get the upstream's id when it has one, else one generated
/// from `id_seed` and their position; a thought signature rides along in `extra_content` the
/// way Google's OpenAI-compatible endpoint returns it, so clients can send it back. Signatures
/// on text parts are not kept (Gemini requires only those on function calls). Parts the chat
/// API cannot carry (inline media output, executable code) are skipped.
pub(super) fn piece(part: Part, id_seed: &str, call_index: usize) -> Option<Piece> {
    if let Some(call) = part.function_call {
        let id = call.id.filter(|id| !id.is_empty()).unwrap_or_else(|| generated_tool_call_id(id_seed, call_index));
        let arguments = match call.args {
            None | Some(Value::Null) => "{}".to_owned(),
            Some(args) => args.to_string(),
        };
        let extra_content =
            part.thought_signature.map(|signature| json!({ "google": { "thought_signature": signature } }));
        return Some(Piece::Call(ToolCallOut { id, name: call.name, arguments, extra_content }));
    }
    let text = part.text.filter(|text| !text.is_empty())?;
    Some(if part.thought == Some(true) { Piece::Thought(text) } else { Piece::Text(text) })
}

/// Gemini's finish reason in OpenAI's terms. A natural stop after function calls is
/// `tool_calls`; the safety and policy stops are `content_filter`; a cut at the token limit is
/// `length`; everything else (`OTHER`, `LANGUAGE`, `MALFORMED_FUNCTION_CALL`, ...) is `stop`.
pub(super) fn finish_reason(reason: &str, saw_tool_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => "content_filter",
        _ if saw_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// Translates a complete `generateContent` response.
pub(super) fn translate(body: &Bytes, ctx: &ResponseContext) -> Result<Translated, RelayError> {
    let mut response: GenerateResponse = serde_json::from_slice(body).map_err(|e| {
        RelayError::new(
            ErrorCode::UpstreamInvalidResponse,
            format!("upstream answered 2xx with a body that is not a Gemini response ({e}): {}", excerpt(body)),
        )
    })?;
    if let Some(error) = &response.error {
        return Err(in_band_error(error));
    }
    if response.candidates.is_empty() && response.prompt_feedback.is_none() {
        // Neither an answer nor a refusal (`{"hello":"world"}`): read as one, it would be a
        // silent empty answer.
        return Err(RelayError::new(
            ErrorCode::UpstreamInvalidResponse,
            format!("upstream answered 2xx with neither candidates nor promptFeedback: {}", excerpt(body)),
        ));
    }
    let id = response.completion_id().unwrap_or_else(|| ctx.completion_id());
    let model = response.model().unwrap_or_else(|| ctx.upstream_model.to_owned());
    let usage = response.usage_metadata.as_ref().map(Usage::from);
    let id_seed = response.response_id.clone().unwrap_or_else(|| ctx.completion_id());
    let block_reason = response.block_reason().map(str::to_owned);

    let mut completion = Completion { id, model, created: ctx.created, usage, ..Completion::default() };
    let mut finish = None;
    if let Some(candidate) = response.take_candidate() {
        finish = candidate.finish_reason;
        for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
            match piece(part, &id_seed, completion.tool_calls.len()) {
                Some(Piece::Text(text)) => completion.content.push_str(&text),
                Some(Piece::Thought(text)) => completion.reasoning.get_or_insert_with(String::new).push_str(&text),
                Some(Piece::Call(call)) => completion.tool_calls.push(call),
                None => {}
            }
        }
    }
    let saw_tool_calls = !completion.tool_calls.is_empty();
    completion.finish_reason = Some(match (finish.as_deref(), block_reason) {
        (Some(reason), _) => finish_reason(reason, saw_tool_calls),
        // A prompt blocked before generation: no candidate, only `promptFeedback`.
        (None, Some(_)) => "content_filter",
        (None, None) => finish_reason("STOP", saw_tool_calls),
    });
    Ok(Translated::read(completion.to_bytes(), usage))
}

/// Maps a Gemini error body (`{"error":{"code","message","status","details"}}`, sometimes
/// wrapped in an array) to the client's error.
///
/// * 429 / `RESOURCE_EXHAUSTED` -> 429 `upstream_rate_limited`, with `retry_after` from the
///   `RetryInfo` detail's `retryDelay`.
/// * 503 / `UNAVAILABLE` ("The model is overloaded") -> 503 `upstream_overloaded`.
/// * 400 `INVALID_ARGUMENT` with reason `API_KEY_INVALID` -> 401 `upstream_http_error`: Gemini
///   answers a bad key with 400, but it is the relay's configured key that is wrong, not the
///   client's request; 401 says so and matches what the other upstreams answer.
/// * anything else keeps its status as `upstream_http_error`, with Gemini's message.
pub(super) fn translate_error(status: u16, body: &Bytes) -> RelayError {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let error = value.as_ref().map(|v| v.get(0).unwrap_or(v)).and_then(|v| v.get("error"));
    let message = upstream_message(body);
    let grpc_status = error.and_then(|e| e.get("status")).and_then(Value::as_str).unwrap_or_default();
    let reason = error.and_then(|e| detail(e, "ErrorInfo")).and_then(|d| d.get("reason")).and_then(Value::as_str);

    if status == 429 || grpc_status == "RESOURCE_EXHAUSTED" {
        let mut relay = status_error(429, message);
        relay.retry_after = error.and_then(retry_delay);
        return relay;
    }
    if status == 503 || grpc_status == "UNAVAILABLE" {
        return status_error(503, message);
    }
    if reason == Some("API_KEY_INVALID") {
        return RelayError::new(ErrorCode::UpstreamHttpError, message).with_status(401);
    }
    status_error(status, message)
}

/// An error object sent with status 200 (in a stream, or in place of a response).
pub(super) fn in_band_error(error: &Value) -> RelayError {
    let message = error.get("message").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| error.to_string());
    let code = error.get("code").and_then(Value::as_u64);
    let status = error.get("status").and_then(Value::as_str).unwrap_or_default();
    let relay_code = if code == Some(429) || status == "RESOURCE_EXHAUSTED" {
        ErrorCode::UpstreamRateLimited
    } else if code == Some(503) || status == "UNAVAILABLE" {
        ErrorCode::UpstreamOverloaded
    } else {
        ErrorCode::UpstreamStreamError
    };
    let mut relay = RelayError::new(relay_code, format!("upstream stream error: {message}"));
    relay.retry_after = retry_delay(error);
    relay
}

/// The first `details` entry of a `google.rpc` type (`ErrorInfo`, `RetryInfo`, ...).
fn detail<'a>(error: &'a Value, kind: &str) -> Option<&'a Value> {
    error
        .get("details")?
        .as_array()?
        .iter()
        .find(|d| d.get("@type").and_then(Value::as_str).is_some_and(|t| t.rsplit('.').next() == Some(kind)))
}

/// `RetryInfo.retryDelay`, a protobuf Duration in JSON form (`"34.4s"`).
fn retry_delay(error: &Value) -> Option<Duration> {
    let delay = detail(error, "RetryInfo")?.get("retryDelay")?.as_str()?;
    let seconds: f64 = delay.strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ResponseContext<'static> {
        ResponseContext {
            request_id: "req_ctx",
            created: 11,
            upstream_model: "gemini-x",
            client_wants_usage: false,
            several_choices: false,
        }
    }

    fn translate_value(body: Value) -> (Value, Option<Usage>) {
        let translated = translate(&Bytes::from(body.to_string()), &ctx()).unwrap();
        (serde_json::from_slice(&translated.body).unwrap(), translated.usage())
    }

    #[test]
    fn text_thoughts_and_usage_are_translated() {
        let (body, usage) = translate_value(json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "plan", "thought": true}, {"text": "Hello", "thoughtSignature": "c2ln"}, {"text": " there"}
            ]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 3, "thoughtsTokenCount": 7,
                              "cachedContentTokenCount": 4, "totalTokenCount": 20},
            "modelVersion": "models/gemini-2.5-pro", "responseId": "r1"
        }));
        assert_eq!(body["id"], "chatcmpl-r1");
        assert_eq!(body["model"], "gemini-2.5-pro");
        assert_eq!(body["created"], 11);
        let message = &body["choices"][0]["message"];
        assert_eq!(
            (message["content"].as_str(), message["reasoning_content"].as_str()),
            (Some("Hello there"), Some("plan"))
        );
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            usage,
            Some(Usage { prompt_tokens: 10, completion_tokens: 10, cached_tokens: 4, reasoning_tokens: 7 })
        );
        assert_eq!(body["usage"]["total_tokens"], 20);
        assert_eq!(body["usage"]["completion_tokens_details"]["reasoning_tokens"], 7);
    }

    #[test]
    fn function_calls_become_tool_calls_with_generated_ids_and_signatures() {
        let (body, _) = translate_value(json!({
            "candidates": [{"content": {"parts": [
                {"functionCall": {"name": "a", "args": {"x": 1}}, "thoughtSignature": "U0lH"},
                {"functionCall": {"name": "b"}}
            ]}, "finishReason": "STOP"}],
            "responseId": "resp9"
        }));
        let message = &body["choices"][0]["message"];
        assert!(message["content"].is_null());
        assert_eq!(
            message["tool_calls"],
            json!([
                {"id": "call_resp9_0", "type": "function", "function": {"name": "a", "arguments": "{\"x\":1}"},
                 "extra_content": {"google": {"thought_signature": "U0lH"}}},
                {"id": "call_resp9_1", "type": "function", "function": {"name": "b", "arguments": "{}"}}
            ])
        );
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        assert!(body.get("usage").is_none());
    }

    #[test]
    fn finish_reasons_map_to_openai_values() {
        assert_eq!(finish_reason("MAX_TOKENS", true), "length");
        for reason in ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"] {
            assert_eq!(finish_reason(reason, false), "content_filter");
        }
        assert_eq!(finish_reason("STOP", false), "stop");
        assert_eq!(finish_reason("OTHER", false), "stop");
        assert_eq!(finish_reason("MALFORMED_FUNCTION_CALL", false), "stop");
    }

    #[test]
    fn a_blocked_prompt_is_an_empty_content_filtered_answer() {
        let (body, usage) = translate_value(json!({
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}
        }));
        assert_eq!(body["id"], "chatcmpl-ctx");
        assert_eq!(body["model"], "gemini-x");
        assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(body["choices"][0]["message"]["content"], "");
        assert_eq!(usage.map(|u| u.prompt_tokens), Some(5));
    }

    #[test]
    fn a_2xx_body_that_is_not_a_response_is_an_invalid_response() {
        for body in [&b"<html>"[..], br#"{"hello":"world"}"#, br#"{"candidates":[],"usageMetadata":{}}"#] {
            let err = translate(&Bytes::from_static(body), &ctx()).unwrap_err();
            assert_eq!(err.code, ErrorCode::UpstreamInvalidResponse, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn rate_limits_carry_the_retry_delay() {
        let body = Bytes::from(
            json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34.4s"}]}})
            .to_string(),
        );
        let err = translate_error(429, &body);
        assert_eq!((err.code, err.status, err.message.as_str()), (ErrorCode::UpstreamRateLimited, 429, "quota"));
        assert_eq!(err.retry_after, Some(Duration::from_millis(34_400)));
        assert!(err.passthrough_body.is_none());
    }

    #[test]
    fn invalid_keys_overload_and_other_errors_are_classified() {
        let key = Bytes::from(
            json!([{"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT", "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}])
            .to_string(),
        );
        let err = translate_error(400, &key);
        assert_eq!(
            (err.code, err.status, err.message.as_str()),
            (ErrorCode::UpstreamHttpError, 401, "API key not valid.")
        );
        let overloaded = Bytes::from_static(
            br#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
        );
        assert_eq!(translate_error(503, &overloaded).code, ErrorCode::UpstreamOverloaded);
        let missing = Bytes::from_static(br#"{"error":{"code":404,"message":"not found","status":"NOT_FOUND"}}"#);
        let err = translate_error(404, &missing);
        assert_eq!((err.code, err.status), (ErrorCode::UpstreamHttpError, 404));
        let bad = Bytes::from_static(br#"{"error":{"code":400,"message":"bad schema","status":"INVALID_ARGUMENT"}}"#);
        assert_eq!(translate_error(400, &bad).status, 400);
    }
}
