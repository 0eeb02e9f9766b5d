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
        let id: u128 = rand::random();
        HeaderValue::try_from(format!("req_{:024x}", id >> 32)).ok().map(RequestId::new)
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
        assert!(a.header_value().to_str().unwrap().starts_with("req_"));
    }
}
