//! The relay's error vocabulary: one [`ErrorCode`] per failure class a client can see, and the
//! OpenAI-shaped JSON body every failure is turned into.
//!
//! Clients (and SDKs) only ever see an HTTP response: a dropped connection is exactly what SDKs
//! report as a bare "Connection error", so every error path ends in [`RelayError::to_response_body`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// Boxed error passed between layers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The class of a failure, as named in the `code` field of the client-visible error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidJson,
    InvalidRequest,
    UnsupportedParameter,
    NotFound,
    ModelNotFound,
    InvalidApiKey,
    ModelNotAllowed,
    BodyTooLarge,
    RequestHeadTooLarge,
    UpstreamDisabled,
    UpstreamDns,
    UpstreamConnectRefused,
    UpstreamConnectTimeout,
    UpstreamTls,
    UpstreamProxy,
    UpstreamReset,
    UpstreamTimeoutFirstByte,
    UpstreamTimeoutIdle,
    UpstreamTimeoutTotal,
    UpstreamNonJsonError,
    UpstreamBlocked403Html,
    UpstreamHttpError,
    UpstreamRateLimited,
    UpstreamOverloaded,
    UpstreamInvalidResponse,
    UpstreamStreamError,
    UpstreamStreamTruncated,
    ShuttingDown,
    Internal,
}

impl ErrorCode {
    /// The `code` string clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::UnsupportedParameter => "unsupported_parameter",
            ErrorCode::NotFound => "not_found",
            ErrorCode::ModelNotFound => "model_not_found",
            ErrorCode::InvalidApiKey => "invalid_api_key",
            ErrorCode::ModelNotAllowed => "model_not_allowed",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::RequestHeadTooLarge => "request_head_too_large",
            ErrorCode::UpstreamDisabled => "upstream_disabled",
            ErrorCode::UpstreamDns => "upstream_dns",
            ErrorCode::UpstreamConnectRefused => "upstream_connect_refused",
            ErrorCode::UpstreamConnectTimeout => "upstream_timeout_connect",
            ErrorCode::UpstreamTls => "upstream_tls",
            ErrorCode::UpstreamProxy => "upstream_proxy",
            ErrorCode::UpstreamReset => "upstream_reset",
            ErrorCode::UpstreamTimeoutFirstByte => "upstream_timeout_first_byte",
            ErrorCode::UpstreamTimeoutIdle => "upstream_timeout_idle",
            ErrorCode::UpstreamTimeoutTotal => "upstream_timeout_total",
            ErrorCode::UpstreamNonJsonError => "upstream_non_json_error",
            ErrorCode::UpstreamBlocked403Html => "upstream_blocked_403_html",
            ErrorCode::UpstreamHttpError => "upstream_http_error",
            ErrorCode::UpstreamRateLimited => "upstream_rate_limited",
            ErrorCode::UpstreamOverloaded => "upstream_overloaded",
            ErrorCode::UpstreamInvalidResponse => "upstream_invalid_response",
            ErrorCode::UpstreamStreamError => "upstream_stream_error",
            ErrorCode::UpstreamStreamTruncated => "upstream_stream_truncated",
            ErrorCode::ShuttingDown => "relay_shutting_down",
            ErrorCode::Internal => "internal_error",
        }
    }

    /// The HTTP status the relay answers with when it originates this error.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson | ErrorCode::InvalidRequest | ErrorCode::UnsupportedParameter => 400,
            ErrorCode::InvalidApiKey => 401,
            ErrorCode::ModelNotAllowed => 403,
            ErrorCode::NotFound | ErrorCode::ModelNotFound => 404,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::RequestHeadTooLarge => 431,
            ErrorCode::UpstreamRateLimited => 429,
            ErrorCode::UpstreamDisabled | ErrorCode::UpstreamOverloaded | ErrorCode::ShuttingDown => 503,
            ErrorCode::UpstreamConnectTimeout
            | ErrorCode::UpstreamTimeoutFirstByte
            | ErrorCode::UpstreamTimeoutIdle
            | ErrorCode::UpstreamTimeoutTotal => 504,
            ErrorCode::Internal => 500,
            _ => 502,
        }
    }

    /// The OpenAI `type` field for this class.
    pub fn error_type(self) -> &'static str {
        match self.status() {
            400 | 404 | 413 | 431 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            500 => "server_error",
            _ => "upstream_error",
        }
    }

    /// The timeout kind named in metrics, for the four timeout classes.
    pub fn timeout_kind(self) -> Option<&'static str> {
        match self {
            ErrorCode::UpstreamConnectTimeout => Some("connect"),
            ErrorCode::UpstreamTimeoutFirstByte => Some("first_byte"),
            ErrorCode::UpstreamTimeoutIdle => Some("idle"),
            ErrorCode::UpstreamTimeoutTotal => Some("total"),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt against one upstream, listed in the final error after several attempts.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// Shared with the upstream: recording an attempt copies no text.
    pub upstream: Arc<str>,
    /// `success` or the error code.
    pub code: &'static str,
    pub status: Option<u16>,
    pub duration_ms: u64,
}

/// A failure that becomes the client's response.
#[derive(Debug, Clone)]
pub struct RelayError {
    pub code: ErrorCode,
    /// The HTTP status sent to the client (usually `code.status()`, or the upstream's own status).
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
    pub upstream: Option<String>,
    /// An upstream JSON error body passed through unchanged.
    pub passthrough_body: Option<bytes::Bytes>,
    /// `retry-after` from the upstream, used by the retry policy and shown to the client.
    pub retry_after: Option<Duration>,
    pub attempts: Vec<Attempt>,
}

impl RelayError {
    /// An error originated by the relay, with the class's default status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RelayError {
            code,
            status: code.status(),
            message: message.into(),
            param: None,
            upstream: None,
            passthrough_body: None,
            retry_after: None,
            attempts: Vec::new(),
        }
    }

    /// Names the upstream involved.
    pub fn with_upstream(mut self, upstream: impl Into<String>) -> Self {
        self.upstream = Some(upstream.into());
        self
    }

    /// Scrubs `redactor`'s secrets from the message and from an upstream body passed through.
    pub fn redacted(mut self, redactor: &crate::config::Redactor) -> Self {
        if let Some(message) = redactor.text(&self.message) {
            self.message = message;
        }
        if let Some(body) = self.passthrough_body.as_ref().and_then(|body| redactor.bytes(body)) {
            self.passthrough_body = Some(body.into());
        }
        self
    }

    /// Names the request parameter at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Overrides the HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The OpenAI-shaped JSON body for this error. An upstream's own OpenAI-shaped error body is
    /// kept, with the upstream and request id added, so clients see the upstream's own wording.
    pub fn to_response_body(&self, request_id: &str) -> bytes::Bytes {
        if let Some(body) = &self.passthrough_body {
            if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) {
                if let Some(error) = value.get_mut("error").and_then(serde_json::Value::as_object_mut) {
                    error.entry("upstream").or_insert_with(|| self.upstream.clone().into());
                    error.entry("request_id").or_insert_with(|| request_id.into());
                    if !self.attempts.is_empty() {
                        error.insert("attempts".into(), serde_json::to_value(&self.attempts).unwrap_or_default());
                    }
                    return bytes::Bytes::from(value.to_string());
                }
            }
        }
        bytes::Bytes::from(self.to_json(request_id).to_string())
    }

    /// The `{"error": {...}}` object, also used for in-band stream errors.
    pub fn to_json(&self, request_id: &str) -> serde_json::Value {
        let mut error = serde_json::json!({
            "message": self.message,
            "type": self.code.error_type(),
            "param": self.param,
            "code": self.code.as_str(),
            "upstream": self.upstream,
            "request_id": request_id,
        });
        if !self.attempts.is_empty() {
            error["attempts"] = serde_json::to_value(&self.attempts).unwrap_or_default();
        }
        serde_json::json!({ "error": error })
    }
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for RelayError {}

/// Walks an error's source chain looking for a cause of type `T`.
pub fn cause_ref<'a, T: std::error::Error + 'static>(
    mut error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    loop {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        error = error.source()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_openai_shaped_and_names_upstream_and_request() {
        let error = RelayError::new(ErrorCode::UpstreamConnectRefused, "connection refused").with_upstream("primary");
        let body: serde_json::Value = serde_json::from_slice(&error.to_response_body("req-1")).unwrap();
        assert_eq!(body["error"]["code"], "upstream_connect_refused");
        assert_eq!(body["error"]["upstream"], "primary");
        assert_eq!(body["error"]["request_id"], "req-1");
        assert_eq!(body["error"]["type"], "upstream_error");
        assert_eq!(error.status, 502);
    }

    #[test]
    fn upstream_error_bodies_keep_their_wording_and_gain_the_ids() {
        let mut error = RelayError::new(ErrorCode::UpstreamHttpError, "bad").with_status(400).with_upstream("up");
        error.passthrough_body = Some(bytes::Bytes::from_static(
            br#"{"error":{"message":"Unsupported value: 'developer'","type":"invalid_request_error","param":"messages","code":null}}"#,
        ));
        let body: serde_json::Value = serde_json::from_slice(&error.to_response_body("req-2")).unwrap();
        assert_eq!(body["error"]["message"], "Unsupported value: 'developer'");
        assert_eq!(body["error"]["param"], "messages");
        assert_eq!(body["error"]["upstream"], "up");
        assert_eq!(body["error"]["request_id"], "req-2");
    }

    #[test]
    fn timeouts_are_gateway_timeouts_with_their_kind() {
        for (code, kind) in [
            (ErrorCode::UpstreamConnectTimeout, "connect"),
            (ErrorCode::UpstreamTimeoutFirstByte, "first_byte"),
            (ErrorCode::UpstreamTimeoutIdle, "idle"),
            (ErrorCode::UpstreamTimeoutTotal, "total"),
        ] {
            assert_eq!(code.status(), 504);
            assert_eq!(code.timeout_kind(), Some(kind));
        }
    }
}
