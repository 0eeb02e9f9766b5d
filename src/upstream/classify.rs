//! Classify once, share the class: every upstream failure becomes a [`RelayError`] with an
//! [`ErrorCode`], and retry, failover, health and metrics all read that code.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Version};
use http_body::SizeHint;
use serde::de::IgnoredAny;

use crate::dialect::openai::excerpt;
use crate::dialect::Dialect;
use crate::error::{ErrorCode, RelayError};

/// The class of a transport failure (no HTTP response was received).
pub fn transport_error(error: &(dyn StdError + 'static)) -> RelayError {
    let chain = describe_chain(error);
    let code = transport_code(error);
    let message = match code {
        ErrorCode::UpstreamDns => format!("could not resolve the upstream's host name: {chain}"),
        ErrorCode::UpstreamConnectRefused => format!("the upstream refused the connection: {chain}"),
        ErrorCode::UpstreamConnectTimeout => format!("connecting to the upstream timed out: {chain}"),
        ErrorCode::UpstreamTls => format!("TLS with the upstream failed: {chain}"),
        ErrorCode::UpstreamProxy => format!("the egress proxy failed: {chain}"),
        _ => format!("the upstream connection failed before a response: {chain}"),
    };
    RelayError::new(code, message)
}

/// rustls's errors reach here through hyper-rustls boxed as text; these are their messages.
const TLS_MARKERS: &[&str] = &[
    "received corrupt message",
    "invalid peer certificate",
    "peer is incompatible",
    "HandshakeFailure",
    "received fatal alert",
];

/// The code of a transport failure, from the error and its causes.
pub fn transport_code(error: &(dyn StdError + 'static)) -> ErrorCode {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    let mut code = None;
    while let Some(e) = current {
        if e.is::<super::client::ConnectTimeout>() {
            return ErrorCode::UpstreamConnectTimeout;
        }
        if e.is::<super::proxy::ProxyError>() {
            return ErrorCode::UpstreamProxy;
        }
        if e.is::<rustls::Error>() {
            return ErrorCode::UpstreamTls;
        }
        if let Some(io_error) = e.downcast_ref::<io::Error>() {
            if io_error.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
                return ErrorCode::UpstreamTls;
            }
            match io_error.kind() {
                io::ErrorKind::ConnectionRefused => return ErrorCode::UpstreamConnectRefused,
                io::ErrorKind::TimedOut => return ErrorCode::UpstreamConnectTimeout,
                _ => {}
            }
        }
        let text = e.to_string();
        if TLS_MARKERS.iter().any(|marker| text.contains(marker)) {
            return ErrorCode::UpstreamTls;
        }
        if text.contains("dns error") || text.contains("failed to lookup address") {
            code = Some(ErrorCode::UpstreamDns);
        } else if text.contains("proxy") && code.is_none() {
            code = Some(ErrorCode::UpstreamProxy);
        }
        current = e.source();
    }
    code.unwrap_or(ErrorCode::UpstreamReset)
}

fn describe_chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// `retry-after-ms` or `retry-after` (seconds or an HTTP date) from a response.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) =
        headers.get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok())
    {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let when = httpdate_to_unix(value)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(when.saturating_sub(now)))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to Unix seconds.
fn httpdate_to_unix(text: &str) -> Option<u64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else { return None };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + s).ok()
}

/// The error for a non-2xx upstream response.
pub fn status_error(dialect: &dyn Dialect, status: StatusCode, headers: &HeaderMap, body: &Bytes) -> RelayError {
    if !status.is_client_error() && !status.is_server_error() {
        return not_an_answer(status);
    }
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let is_json = matches!(first, Some(b'{') | Some(b'['));
    let mut error = if is_json {
        dialect.translate_error(status.as_u16(), body)
    } else {
        let is_html = content_type.contains("html") || first == Some(b'<');
        let (code, hint) = match (status.as_u16(), is_html) {
            (403, true) => (
                ErrorCode::UpstreamBlocked403Html,
                "an HTML page instead of an API error: likely a WAF or bot challenge in front of the upstream",
            ),
            (_, true) => (ErrorCode::UpstreamNonJsonError, "an HTML page instead of an API error"),
            _ => (ErrorCode::UpstreamNonJsonError, "a body that is not JSON"),
        };
        let shown = if body.is_empty() { "(empty body)".to_owned() } else { excerpt(body) };
        RelayError::new(code, format!("upstream answered {status} with {hint}: {shown}")).with_status(status.as_u16())
    };
    error.retry_after = error.retry_after.or_else(|| retry_after(headers));
    error
}

/// A 1xx or 3xx final answer. Passed on, it would reach the client as a status with no error
/// body (a 304 may have none), or as a switch of protocols that leaves its connection hanging:
/// what an SDK reports as a bare "Connection error". The redirect's target is not shown, since a
/// URL may carry a token.
fn not_an_answer(status: StatusCode) -> RelayError {
    let why = if status == StatusCode::NOT_MODIFIED {
        "which answers only a conditional request, and the relay sends none"
    } else if status.is_redirection() {
        "a redirect, which the relay does not follow: check the upstream's `base_url` (its scheme, host and path, such as a missing /v1)"
    } else {
        "which no API request asks for"
    };
    RelayError::new(ErrorCode::UpstreamInvalidResponse, format!("upstream answered {status}, {why}"))
}

/// Whether an HTTP/1 response body ends where the connection closes: no `content-length`, not
/// chunked. Such a body has no framing to tell a dropped connection from its end, so hyper hands
/// over a cut body as a whole one.
pub fn delimited_by_close(version: Version, headers: &HeaderMap, size_hint: &SizeHint) -> bool {
    version < Version::HTTP_2
        && size_hint.exact().is_none()
        && !headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .any(|coding| coding.as_bytes().windows(7).any(|word| word.eq_ignore_ascii_case(b"chunked")))
}

/// A close-delimited 2xx body must parse whole: where it does not, the connection most likely
/// dropped mid-body, and the pass-through's end checks cannot see a cut right after a nested `}`.
pub fn whole_json(body: &Bytes) -> Result<(), RelayError> {
    if serde_json::from_slice::<IgnoredAny>(body).is_ok() {
        return Ok(());
    }
    Err(RelayError::new(
        ErrorCode::UpstreamInvalidResponse,
        format!(
            "upstream answered 2xx with no content-length, ending when its connection closed, and the body is not whole JSON (cut short?): {}",
            excerpt(body)
        ),
    ))
}

/// Whether a retry against the same target may succeed: connect failures, resets before any
/// response, timeouts before the first byte, 408, 429, 5xx and 529. Never 400/401/403/404/422.
pub fn is_retryable(error: &RelayError) -> bool {
    match error.code {
        ErrorCode::UpstreamDns
        | ErrorCode::UpstreamConnectRefused
        | ErrorCode::UpstreamConnectTimeout
        | ErrorCode::UpstreamReset
        | ErrorCode::UpstreamTimeoutFirstByte
        | ErrorCode::UpstreamRateLimited
        | ErrorCode::UpstreamOverloaded => true,
        ErrorCode::UpstreamHttpError | ErrorCode::UpstreamNonJsonError => {
            matches!(error.status, 408 | 429 | 500 | 502 | 503 | 504 | 529)
        }
        _ => false,
    }
}

/// The `failover_on` class of an error.
pub fn failover_class(error: &RelayError) -> &'static str {
    match error.code {
        ErrorCode::UpstreamDns
        | ErrorCode::UpstreamConnectRefused
        | ErrorCode::UpstreamTls
        | ErrorCode::UpstreamProxy => "connect",
        ErrorCode::UpstreamConnectTimeout
        | ErrorCode::UpstreamTimeoutFirstByte
        | ErrorCode::UpstreamTimeoutIdle
        | ErrorCode::UpstreamTimeoutTotal => "timeout",
        ErrorCode::UpstreamReset => "reset",
        ErrorCode::UpstreamDisabled => "disabled",
        ErrorCode::UpstreamInvalidResponse => "invalid_response",
        ErrorCode::UpstreamStreamError | ErrorCode::UpstreamStreamTruncated => "stream",
        ErrorCode::UpstreamRateLimited => "429",
        ErrorCode::UpstreamOverloaded => "5xx",
        ErrorCode::UpstreamBlocked403Html => "403",
        _ => match error.status {
            408 => "timeout",
            429 => "429",
            500..=599 => "5xx",
            400 => "400",
            401 => "401",
            403 => "403",
            404 => "404",
            422 => "422",
            // The request itself was refused (409, 413, 415, ...): another target would most
            // likely refuse it too, and may already have acted on it.
            status if (400..500).contains(&status) => "4xx",
            _ => "invalid_response",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::openai::{Compat, OpenAiChat};

    #[test]
    fn html_403_is_named_as_a_likely_waf() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "text/html".parse().unwrap());
        let error = status_error(
            &OpenAiChat::new(Compat::default()),
            StatusCode::FORBIDDEN,
            &headers,
            &Bytes::from_static(b"<html><title>Attention Required! | Cloudflare</title></html>"),
        );
        assert_eq!(error.code, ErrorCode::UpstreamBlocked403Html);
        assert_eq!(error.status, 403);
        assert!(error.message.contains("Cloudflare") && error.message.contains("WAF"));
    }

    #[test]
    fn an_informational_or_redirect_answer_is_an_invalid_response() {
        let mut headers = HeaderMap::new();
        headers.insert("location", "https://login.example.com/?token=sk-secret-123".parse().unwrap());
        for status in [101, 302, 304, 307] {
            let status = StatusCode::from_u16(status).unwrap();
            let error = status_error(&OpenAiChat::new(Compat::default()), status, &headers, &Bytes::new());
            assert_eq!((error.code, error.status), (ErrorCode::UpstreamInvalidResponse, 502), "{status}");
            assert!(error.message.contains(&status.to_string()), "{}", error.message);
            assert!(!error.message.contains("sk-secret"), "{}", error.message);
        }
    }

    #[test]
    fn a_non_json_524_keeps_its_status() {
        let error = status_error(
            &OpenAiChat::new(Compat::default()),
            StatusCode::from_u16(524).unwrap(),
            &HeaderMap::new(),
            &Bytes::from_static(b"error code: 524"),
        );
        assert_eq!((error.code, error.status), (ErrorCode::UpstreamNonJsonError, 524));
        assert!(error.message.contains("error code: 524"));
    }

    #[test]
    fn retry_after_reads_seconds_milliseconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
        assert_eq!(httpdate_to_unix("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
    }

    #[test]
    fn retryable_and_final_statuses() {
        let http = |status| RelayError::new(ErrorCode::UpstreamHttpError, "x").with_status(status);
        for status in [408, 429, 500, 502, 503, 504, 529] {
            assert!(is_retryable(&http(status)), "{status}");
        }
        for status in [400, 401, 403, 404, 422] {
            assert!(!is_retryable(&http(status)), "{status}");
        }
        assert_eq!(failover_class(&http(503)), "5xx");
        assert_eq!(failover_class(&http(401)), "401");
        assert_eq!(failover_class(&http(408)), "timeout");
        for status in [409, 410, 413, 415] {
            assert_eq!(failover_class(&http(status)), "4xx", "{status}");
        }
    }

    #[test]
    fn only_an_http1_body_with_neither_length_nor_chunking_ends_at_the_close() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            pairs.iter().map(|(name, value)| (http::HeaderName::from_static(name), value.parse().unwrap())).collect()
        };
        let unknown = SizeHint::new();
        assert!(delimited_by_close(Version::HTTP_11, &headers(&[]), &unknown));
        assert!(delimited_by_close(Version::HTTP_10, &headers(&[("connection", "close")]), &unknown));
        assert!(!delimited_by_close(Version::HTTP_11, &headers(&[]), &SizeHint::with_exact(120)));
        assert!(!delimited_by_close(Version::HTTP_11, &headers(&[("transfer-encoding", "gzip, Chunked")]), &unknown));
        assert!(!delimited_by_close(Version::HTTP_2, &headers(&[]), &unknown));
    }

    #[test]
    fn a_close_delimited_body_must_parse_whole() {
        assert!(whole_json(&Bytes::from_static(br#"{"choices":[{"message":{"content":"hi"}}]}"#)).is_ok());
        let cut = Bytes::from_static(br#"{"choices":[{"message":{"content":"hi"}}"#);
        let error = whole_json(&cut).unwrap_err();
        assert_eq!(error.code, ErrorCode::UpstreamInvalidResponse);
        assert!(
            error.message.contains("connection closed") && error.message.contains(r#"{"choices""#),
            "{}",
            error.message
        );
    }

    #[test]
    fn connection_refused_is_classified() {
        let error = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(transport_error(&error).code, ErrorCode::UpstreamConnectRefused);
    }
}
