//! Request ids: the client's `x-request-id` when it sends a sane one, else a fresh random id.
//! Setting and propagating is tower-http's; this file only decides what an id looks like.

use http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

/// The header carrying the request id both ways.
pub const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Makes ids like `req_3f9a0c4e5b6d7e8f9a0b1c2d`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeRandomId;

impl MakeRequestId for MakeRandomId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        // 96 random bits as 24 hex digits, written directly: this runs on every request.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let id: u128 = rand::random::<u128>() >> 32;
        let mut text = *b"req_000000000000000000000000";
        for (i, digit) in text[4..].iter_mut().enumerate() {
            *digit = HEX[((id >> (4 * (23 - i))) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&text).ok().map(RequestId::new)
    }
}

/// The request id of a request, after `SetRequestIdLayer` has run.
pub fn of<B>(request: &Request<B>) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(|id| id.chars().take(128).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_prefixed() {
        let request = Request::new(());
        let a = MakeRandomId.make_request_id(&request).unwrap();
        let b = MakeRandomId.make_request_id(&request).unwrap();
        assert_ne!(a.header_value(), b.header_value());
        let text = a.header_value().to_str().unwrap();
        assert!(text.starts_with("req_"));
        assert_eq!(text.len(), 28);
        assert!(text[4..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
}
