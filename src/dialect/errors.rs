//! Upstream error answers -> the client's error, for the translating dialects: where each
//! upstream puts its message, and the status classes they share.
//!
//! A translated dialect answers in OpenAI's shape (never passing the upstream's body through):
//! 429 is `upstream_rate_limited`; 503 and Anthropic's 529 are `upstream_overloaded` with
//! status 503; anything else keeps its status as `upstream_http_error` with the upstream's
//! message. Dialects that classify by more than the status (Anthropic's error types, Gemini's
//! gRPC statuses) do so first and fall back to [`status_error`].

use serde_json::Value;

use super::openai::excerpt;
use crate::error::{ErrorCode, RelayError};

/// The upstream's own message in a JSON error body, wherever its API puts it: `error.message`
/// (OpenAI, Anthropic, Gemini, also wrapped in an array by Gemini), `error` as a string
/// (Ollama), `message` or `Message` (AWS), `detail` (the ChatGPT backend). Else an excerpt of
/// the body.
pub fn upstream_message(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return excerpt(body);
    };
    let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
    ["/error/message", "/0/error/message", "/error", "/message", "/Message", "/detail"]
        .into_iter()
        .find_map(text)
        .map(str::to_owned)
        .or_else(|| value.get("detail").filter(|detail| !detail.is_null()).map(Value::to_string))
        .unwrap_or_else(|| excerpt(body))
}

/// The client's error for an upstream error answer classified by its status alone.
pub fn status_error(status: u16, message: impl Into<String>) -> RelayError {
    let (code, status) = match status {
        429 => (ErrorCode::UpstreamRateLimited, 429),
        503 | 529 => (ErrorCode::UpstreamOverloaded, 503),
        _ => (ErrorCode::UpstreamHttpError, status),
    };
    RelayError::new(code, message).with_status(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_found_where_each_upstream_puts_them() {
        for (body, message) in [
            (r#"{"type":"error","error":{"type":"x","message":"anthropic"}}"#, "anthropic"),
            (r#"[{"error":{"code":400,"message":"gemini"}}]"#, "gemini"),
            (r#"{"error":"ollama"}"#, "ollama"),
            (r#"{"message":"bedrock"}"#, "bedrock"),
            (r#"{"Message":"aws"}"#, "aws"),
            (r#"{"detail":"backend"}"#, "backend"),
            (r#"{"detail":{"code":"x"}}"#, r#"{"code":"x"}"#),
            (r#"{"unexpected":true}"#, r#"{"unexpected":true}"#),
            ("not json", "not json"),
        ] {
            assert_eq!(upstream_message(body.as_bytes()), message, "{body}");
        }
    }

    #[test]
    fn statuses_map_to_relay_classes() {
        let class = |status| {
            let error = status_error(status, "m");
            (error.code, error.status)
        };
        assert_eq!(class(429), (ErrorCode::UpstreamRateLimited, 429));
        assert_eq!(class(503), (ErrorCode::UpstreamOverloaded, 503));
        assert_eq!(class(529), (ErrorCode::UpstreamOverloaded, 503));
        assert_eq!(class(404), (ErrorCode::UpstreamHttpError, 404));
        assert_eq!(class(500), (ErrorCode::UpstreamHttpError, 500));
        assert!(status_error(400, "m").passthrough_body.is_none());
    }
}
