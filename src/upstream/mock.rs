//! The transport behind the `mock` dialect: answers in-process, as an OpenAI-compatible server
//! would over the network, so every layer above it runs exactly as for a real upstream.

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};

use super::UpstreamBody;
use crate::dialect::mock;

/// The mock's HTTP response to a chat-completions body.
pub(super) fn respond(body: &Bytes, created: u64) -> Response<UpstreamBody> {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
        let mut response = Response::new(
            Full::new(Bytes::from_static(br#"{"error":{"message":"mock: body is not JSON","type":"invalid_request_error","param":null,"code":null}}"#))
                .map_err(|never: Infallible| match never {})
                .boxed_unsync(),
        );
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let model = request.get("model").and_then(|m| m.as_str()).unwrap_or("mock").to_owned();
    let reply = mock::reply(&request);
    let id = format!("chatcmpl-mock-{created}");
    let stream = request.get("stream").and_then(serde_json::Value::as_bool) == Some(true);
    let (content_type, body) = if stream {
        let frames = reply.chunks(&id, created, &model).into_iter().map(|event| Ok(Frame::data(event)));
        ("text/event-stream", StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync())
    } else {
        (
            "application/json",
            Full::new(reply.completion(&id, created, &model))
                .map_err(|never: Infallible| match never {})
                .boxed_unsync(),
        )
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
