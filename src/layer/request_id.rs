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

/// Longest request id the relay repeats back (a client's id is otherwise taken as sent).
const MAX_LEN: usize = 128;

/// The request id of a request, after `SetRequestIdLayer` has run.
pub fn of<B>(request: &Request<B>) -> String {
    request.headers().get(REQUEST_ID).map(text).unwrap_or_default()
}

/// A request id header as text, at most [`MAX_LEN`] bytes.
pub fn text(value: &HeaderValue) -> String {
    // `to_str` only accepts visible ASCII, so any byte offset is a character boundary.
    value.to_str().map(|id| id[..id.len().min(MAX_LEN)].to_owned()).unwrap_or_default()
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

    #[test]
    fn long_client_ids_are_cut_and_unprintable_ones_dropped() {
        let long = "a".repeat(300);
        assert_eq!(text(&HeaderValue::from_str(&long).unwrap()), "a".repeat(MAX_LEN));
        assert_eq!(text(&HeaderValue::from_static("trace-42")), "trace-42");
        assert_eq!(text(&HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()), "");
    }
}
