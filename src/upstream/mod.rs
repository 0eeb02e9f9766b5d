//! Upstreams: the client toward each one, header rewriting, error classification, and one
//! attempt of a request from translation to the first byte the client may see.

pub mod classify;
pub mod client;
mod h1;
pub mod headers;
mod mock;
pub mod proxy;
pub mod sigv4;
pub mod stream;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::{Either, FutureExt, TryFutureExt};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt};
use parking_lot::Mutex;
use prometheus::IntCounter;
use tokio::time::Instant;

use crate::body::{
    collect_limited, collect_limited_idle, collect_partial, full, Body, CollectError, APPLICATION_JSON,
    TEXT_EVENT_STREAM,
};
use crate::boxed::boxed_in_place;
use crate::config::{Redactor, StreamMode, Timeouts, UpstreamParams};
use crate::dialect::{self, ChatRequest, Dialect, DialectKind, ResponseContext, ResponseUsage, UpstreamCall};
use crate::error::{Attempt, BoxError, ErrorCode, RelayError};
use crate::record::RequestRecord;
use stream::{RelayStream, StreamTiming};

/// A response body as read from an upstream.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// Upstream error bodies are read up to this size; the rest is irrelevant to the diagnosis.
const ERROR_BODY_LIMIT: usize = 256 * 1024;
/// Non-streamed responses larger than this are refused rather than held in memory.
const RESPONSE_BODY_LIMIT: usize = 64 * 1024 * 1024;
/// Room in a response's header map. The server (the relay's HTTP/1 loop, as hyper's does) keeps
/// a written response's map to parse the next request on the same connection into, and the
/// request-id layer then adds one header to it.
/// A map sized by hyper for exactly the request's headers can be full at that point (6 headers,
/// as many load generators send, fill a map of 8 slots), and growing it rehashes every header;
/// 24 fits what the OpenAI SDKs send (about 17) plus the id.
const RESPONSE_HEADER_ROOM: usize = 24;
/// A stream's `cache-control`, native or simulated; a const for the reason [`APPLICATION_JSON`]
/// is one.
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

// One per upstream, built once and never moved: the https client's size costs nothing.
#[allow(clippy::large_enum_variant)]
enum Transport {
    /// hyper-util's pooled clients: `https` upstreams, where ALPN may choose HTTP/2.
    Http(client::HttpsClient),
    /// Plain-`http` upstreams: HTTP/1.1 connections driven by the request's task.
    Http1(Arc<h1::H1Pool>),
    Mock,
}

impl Transport {
    fn connect_to(params: &UpstreamParams) -> Result<Self, BoxError> {
        let proxy = proxy::ProxyRules::resolve(params.proxy.as_ref(), &proxy::process_env);
        let base = params.base_url.as_ref().filter(|uri| uri.scheme() == Some(&http::uri::Scheme::HTTP));
        match base.and_then(|uri| uri.authority()) {
            Some(authority) => {
                let destination =
                    Uri::builder().scheme("http").authority(authority.clone()).path_and_query("/").build()?;
                let connector = client::connector(&params.tls, params.timeouts.connect, proxy)?;
                Ok(Transport::Http1(h1::H1Pool::new(connector, destination)))
            }
            None => Ok(Transport::Http(client::HttpsClient::new(&params.tls, params.timeouts.connect, proxy)?)),
        }
    }

    /// The client's or the pool's own future, not an async level around it that would hold the
    /// request a second time: the response head, unless `first_byte` passes first.
    fn send(
        &self,
        request: Request<Bytes>,
        first_byte: Instant,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, SendError>> + Send + '_ {
        fn boxed<B>(response: Response<B>) -> Response<UpstreamBody>
        where
            B: http_body::Body<Data = Bytes> + Send + 'static,
            B::Error: Into<BoxError>,
        {
            response.map(|body| body.map_err(Into::into).boxed_unsync())
        }
        match self {
            Transport::Http(client) => {
                Either::Left(Either::Left(tokio::time::timeout_at(first_byte, client.request(request)).map(|sent| {
                    match sent {
                        Ok(Ok(response)) => Ok(boxed(response)),
                        Ok(Err(error)) => Err(SendError::Failed(error)),
                        Err(_) => Err(SendError::TimedOut),
                    }
                })))
            }
            // The pool keeps a timer per connection instead (see `h1`).
            Transport::Http1(pool) => Either::Left(Either::Right(pool.send(request, first_byte).map_ok(boxed))),
            Transport::Mock => Either::Right(std::future::ready(Err(SendError::Failed(
                "the mock upstream answers without a connection".into(),
            )))),
        }
    }
}

/// Why a request got no response head.
enum SendError {
    /// Its first-byte deadline passed.
    TimedOut,
    Failed(BoxError),
}

impl From<BoxError> for SendError {
    fn from(error: BoxError) -> Self {
        SendError::Failed(error)
    }
}

impl From<std::io::Error> for SendError {
    fn from(error: std::io::Error) -> Self {
        SendError::Failed(error.into())
    }
}

impl SendError {
    /// The error the client sees; `timed_out` makes the one for a deadline.
    fn into_relay_error(self, timed_out: impl FnOnce() -> RelayError) -> RelayError {
        match self {
            SendError::TimedOut => timed_out(),
            SendError::Failed(error) => classify::transport_error(error.as_ref()),
        }
    }
}

/// One configured upstream, ready to take requests.
pub struct Upstream {
    params: Arc<UpstreamParams>,
    dialect: Arc<dyn Dialect>,
    transport: Transport,
    base: Option<BaseUrl>,
    outgoing: headers::OutgoingHeaders,
    /// The upstream's name as the header that tells the client who answered, made once.
    name_header: Option<HeaderValue>,
    /// The name again, for what each request keeps a handle on (retry policy, stream body).
    shared_name: Arc<str>,
    /// Its secrets, scrubbed from every error it causes: an upstream's error body may quote the
    /// credentials it was sent.
    redactor: Arc<Redactor>,
    /// `upstream_attempts_total` for a success, the outcome of nearly every attempt: resolved on
    /// the first, as a lookup by label values hashes them and takes the family's lock.
    succeeded_attempts: OnceLock<IntCounter>,
}

/// The base URL, split once: a request only appends its own path.
struct BaseUrl {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    path: String,
    /// `Host` for plain-HTTP upstreams (always HTTP/1.1), built once instead of by the client
    /// on every request. TLS upstreams may speak HTTP/2, which carries it as `:authority`.
    host: Option<HeaderValue>,
    /// URIs already built, by the path a dialect appended: an upstream sees few distinct paths,
    /// and building the URI again cost more than the rest of the request head.
    uris: Mutex<Vec<(Box<str>, Uri)>>,
}

/// Distinct paths whose URIs are kept per upstream; paths naming a model (Gemini, Bedrock,
/// Azure deployments) can be many, and beyond this they are built per request.
const CACHED_URIS: usize = 32;

impl BaseUrl {
    fn of(uri: &Uri) -> Option<Self> {
        let path = uri.path_and_query().map_or("", |p| p.as_str()).trim_end_matches('/').to_owned();
        let authority = uri.authority()?.clone();
        let host = (uri.scheme() == Some(&http::uri::Scheme::HTTP))
            .then(|| HeaderValue::from_str(authority.as_str()).ok())
            .flatten();
        Some(BaseUrl { scheme: uri.scheme()?.clone(), authority, path, host, uris: Mutex::new(Vec::new()) })
    }

    /// The base URL with `path_and_query` appended.
    fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let cached = self.uris.lock().iter().find(|(path, _)| &**path == path_and_query).map(|(_, uri)| uri.clone());
        if let Some(uri) = cached {
            return Ok(uri);
        }
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(http::uri::PathAndQuery::try_from([self.path.as_str(), path_and_query].concat())?);
        let uri = Uri::from_parts(parts)?;
        let mut cache = self.uris.lock();
        if cache.len() < CACHED_URIS {
            cache.push((path_and_query.into(), uri.clone()));
        }
        Ok(uri)
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("name", &self.params.name).field("dialect", &self.params.dialect).finish()
    }
}

/// What one attempt needs to know about the client's request.
#[derive(Clone)]
pub struct Call {
    pub chat: Arc<ChatRequest>,
    pub client_headers: Arc<HeaderMap>,
    pub record: Arc<RequestRecord>,
    pub timeouts: Timeouts,
    pub keepalive: Duration,
    /// End of the whole request (`total` timeout).
    pub deadline: Instant,
}

impl Upstream {
    /// Builds the client and dialect for an upstream.
    pub fn new(params: Arc<UpstreamParams>) -> Result<Self, BoxError> {
        let transport = match params.dialect {
            DialectKind::Mock => Transport::Mock,
            _ => Transport::connect_to(&params)?,
        };
        Ok(Upstream::assemble(params, transport))
    }

    /// The upstream's configured name.
    pub fn name(&self) -> &str {
        &self.params.name
    }

    /// The name as a shared handle, without an allocation per request.
    pub fn shared_name(&self) -> Arc<str> {
        self.shared_name.clone()
    }

    /// Its validated settings.
    pub fn params(&self) -> &Arc<UpstreamParams> {
        &self.params
    }

    /// Whether the settings that shape connections are unchanged (so a reload keeps the pool).
    /// The destination is one of them: plain-http pools dial one fixed host.
    pub fn same_transport(&self, other: &UpstreamParams) -> bool {
        let destination = |params: &UpstreamParams| {
            let base = params.base_url.as_ref();
            (
                params.dialect == DialectKind::Mock,
                base.and_then(Uri::scheme).cloned(),
                base.and_then(Uri::authority).cloned(),
            )
        };
        destination(&self.params) == destination(other)
            && self.params.tls == other.tls
            && self.params.timeouts.connect == other.timeouts.connect
            && self.params.proxy == other.proxy
    }

    /// One active health check: `GET {base_url}{path}` must answer `expect_status`.
    pub async fn check_health(&self, path: &str, expect_status: u16, timeout: Duration) -> Result<(), RelayError> {
        if matches!(self.transport, Transport::Mock) {
            return Ok(());
        }
        let call =
            UpstreamCall { method: http::Method::GET, ..UpstreamCall::post(path.to_owned(), Bytes::new(), false) };
        let request = self.build_request(&call, &HeaderMap::new())?;
        let response = self.transport.send(request, Instant::now() + timeout).await.map_err(|error| {
            error.into_relay_error(|| {
                RelayError::new(
                    ErrorCode::UpstreamTimeoutFirstByte,
                    format!("health check timed out after {timeout:?}"),
                )
            })
        })?;
        let status = response.status();
        let _ = tokio::time::timeout(timeout, collect_limited(response.into_body(), ERROR_BODY_LIMIT)).await;
        if status.as_u16() == expect_status {
            Ok(())
        } else {
            Err(RelayError::new(
                ErrorCode::UpstreamInvalidResponse,
                format!("health check {path} answered {status}, expected {expect_status}"),
            ))
        }
    }

    /// Takes over `previous`'s connection pool when the transport settings are unchanged.
    pub fn reuse(params: Arc<UpstreamParams>, previous: &Upstream) -> Self {
        let transport = match &previous.transport {
            Transport::Http(client) => Transport::Http(client.clone()),
            Transport::Http1(pool) => Transport::Http1(pool.clone()),
            Transport::Mock => Transport::Mock,
        };
        Upstream::assemble(params, transport)
    }

    fn assemble(params: Arc<UpstreamParams>, transport: Transport) -> Self {
        Upstream {
            dialect: dialect::build(params.dialect, &params.dialect_options),
            base: params.base_url.as_ref().and_then(BaseUrl::of),
            outgoing: headers::OutgoingHeaders::new(&params),
            name_header: HeaderValue::try_from(params.name.as_str()).ok(),
            shared_name: Arc::from(params.name.as_str()),
            redactor: Arc::new(Redactor::new(params.secret_values())),
            succeeded_attempts: OnceLock::new(),
            params,
            transport,
        }
    }

    /// One attempt: translate, send, and wait for the response (for streams, its first event).
    /// Records the attempt and its outcome.
    pub async fn attempt(&self, call: Call) -> Result<Response<Body>, RelayError> {
        let started = Instant::now();
        let result = self.attempt_inner(&call, started).await;
        let elapsed = started.elapsed();
        let name = self.name();
        let metrics = call.record.metrics();
        const SUCCESS: &str = "success";
        let (code, status) = match &result {
            Ok(response) => (SUCCESS, Some(response.status().as_u16())),
            Err(error) => (error.code.as_str(), Some(error.status)),
        };
        match &result {
            Ok(_) => {
                self.succeeded_attempts
                    .get_or_init(|| metrics.upstream_attempts.with_label_values(&[name, SUCCESS]))
                    .inc();
            }
            Err(error) => {
                metrics.upstream_attempts.with_label_values(&[name, code]).inc();
                if let Some(kind) = error.code.timeout_kind() {
                    metrics.upstream_timeouts.with_label_values(&[name, kind]).inc();
                }
            }
        }
        call.record.add_upstream_wait(elapsed);
        call.record.add_attempt(Attempt {
            upstream: self.shared_name(),
            code,
            status,
            duration_ms: elapsed.as_millis() as u64,
        });
        result.map_err(|error| error.redacted(&self.redactor).with_upstream(name))
    }

    fn build_request(&self, call: &UpstreamCall, client_headers: &HeaderMap) -> Result<Request<Bytes>, RelayError> {
        let uri = self.target_uri(&call.path_and_query)?;
        let mut headers = self.outgoing.to_upstream(client_headers, &call.headers, call.stream);
        if let Some(host) = self.base.as_ref().and_then(|base| base.host.clone()) {
            headers.insert(header::HOST, host);
        }
        // Assembled from typed parts, which cannot fail: the builder would move the request
        // through a `Result` at every step.
        let mut request = Request::new(call.body.clone());
        *request.method_mut() = call.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        if self.params.auth == dialect::AuthStyle::SigV4 {
            // Signing covers every header, so it is the very last change to the request.
            self.sign(&mut request)?;
        }
        Ok(request)
    }

    fn target_uri(&self, path_and_query: &str) -> Result<Uri, RelayError> {
        let uri = match &self.base {
            Some(base) => base.uri(path_and_query),
            None => Uri::try_from(path_and_query).map_err(http::Error::from),
        };
        uri.map_err(|e| {
            RelayError::new(ErrorCode::Internal, format!("upstream path {path_and_query:?} is invalid: {e}"))
        })
    }

    fn sign(&self, request: &mut Request<Bytes>) -> Result<(), RelayError> {
        let unsigned =
            |why: String| RelayError::new(ErrorCode::UpstreamDisabled, format!("cannot sign the request: {why}"));
        let aws = self.params.aws.as_ref().ok_or_else(|| unsigned("no AWS credentials configured".into()))?;
        let region =
            self.params.dialect_options.region.as_deref().ok_or_else(|| unsigned("no region configured".into()))?;
        let credentials = sigv4::AwsCredentials {
            access_key_id: aws.access_key_id.expose().to_owned(),
            secret_access_key: aws.secret_access_key.expose().to_owned(),
            session_token: aws.session_token.as_ref().map(|t| t.expose().to_owned()),
        };
        sigv4::sign(request, &credentials, region, "bedrock", SystemTime::now()).map_err(|e| unsigned(e.to_string()))
    }

    async fn attempt_inner(&self, call: &Call, started: Instant) -> Result<Response<Body>, RelayError> {
        let chat = &call.chat;
        let simulate = chat.stream && self.params.stream_mode == StreamMode::Simulate;
        let upstream_call = if simulate {
            let mut translated =
                self.dialect.translate_request(&ChatRequest { stream: false, ..ChatRequest::clone(chat) })?;
            translated.body = set_stream_false(&translated.body);
            translated
        } else {
            self.dialect.translate_request(chat)?
        };
        let request = self.build_request(&upstream_call, &call.client_headers)?;
        let first_byte_deadline = (started + call.timeouts.first_byte).min(call.deadline);
        let first_byte_error = || {
            if first_byte_deadline >= call.deadline && call.deadline <= Instant::now() {
                RelayError::new(
                    ErrorCode::UpstreamTimeoutTotal,
                    "the request's total time limit reached before the first byte",
                )
            } else {
                RelayError::new(
                    ErrorCode::UpstreamTimeoutFirstByte,
                    format!("no response from the upstream within {:?}", call.timeouts.first_byte),
                )
            }
        };
        let response = match &self.transport {
            Transport::Mock => {
                // Consumed on every path, so that no later state of this future keeps room for it.
                drop(request);
                mock::respond(&upstream_call.body, unix_now())
            }
            transport => transport
                .send(request, first_byte_deadline)
                .await
                .map_err(|error| error.into_relay_error(first_byte_error))?,
        };
        let (parts, body) = response.into_parts();
        if !parts.status.is_success() {
            let (body, cut) = tokio::time::timeout_at(first_byte_deadline, collect_partial(body, ERROR_BODY_LIMIT))
                .await
                .map_err(|_| first_byte_error())?;
            let mut error = classify::status_error(self.dialect.as_ref(), parts.status, &parts.headers, &body);
            if let Some(cut) = cut {
                error.message.push_str(&format!(" (the error body was cut short: {cut})"));
            }
            return Err(error);
        }
        let ctx = ResponseContext {
            request_id: call.record.request_id(),
            created: unix_now(),
            upstream_model: &chat.upstream_model,
            client_wants_usage: chat.client_wants_usage,
            several_choices: upstream_call.stream && chat.asks_several_choices(),
        };
        // The body is set by the branch below; an empty one allocates nothing meanwhile.
        let mut response = Response::new(Body::default());
        *response.headers_mut() = HeaderMap::with_capacity(RESPONSE_HEADER_ROOM);
        headers::to_client(&parts.headers, response.headers_mut());
        if let Some(name) = &self.name_header {
            response.headers_mut().insert(headers::UPSTREAM_HEADER, name.clone());
        }

        if upstream_call.stream && !chat.stream {
            // An upstream that only streams, serving a client that asked for one completion.
            let translator = self.dialect.stream_translator(&ResponseContext { client_wants_usage: true, ..ctx });
            // Boxed: a rare path, whose future would otherwise widen every attempt's.
            let aggregated =
                Box::pin(stream::aggregate(body, translator, first_byte_deadline, call.timeouts.idle, call.deadline))
                    .await?;
            if let Some(usage) = aggregated.usage {
                call.record.set_usage(usage);
            }
            call.record.mark_first_token();
            response.headers_mut().insert(header::CONTENT_TYPE, APPLICATION_JSON);
            *response.body_mut() = full(aggregated.body);
            return Ok(response);
        }

        if upstream_call.stream {
            let timing = StreamTiming {
                first_event_deadline: first_byte_deadline,
                idle: call.timeouts.idle,
                deadline: call.deadline,
                keepalive: call.keepalive,
            };
            let translator = self.dialect.stream_translator(&ctx);
            let handed_over = matches!(self.transport, Transport::Http(_));
            let mut stream =
                RelayStream::new(body, handed_over, translator, timing, call.record.clone(), self.shared_name())
                    .redacting(self.redactor.clone());
            stream.wait_first_event().await?;
            call.record.set_stream(true);
            response.headers_mut().insert(header::CONTENT_TYPE, TEXT_EVENT_STREAM);
            response.headers_mut().insert(header::CACHE_CONTROL, NO_CACHE);
            *response.body_mut() = stream.boxed_unsync();
            return Ok(response);
        }

        let idle = call.timeouts.idle;
        let delimited_by_close =
            classify::delimited_by_close(parts.version, &parts.headers, &http_body::Body::size_hint(&body));
        let body = tokio::time::timeout_at(call.deadline, collect_limited_idle(body, RESPONSE_BODY_LIMIT, idle))
            .await
            .map_err(|_| {
                RelayError::new(
                    ErrorCode::UpstreamTimeoutTotal,
                    "the request's total time limit reached while reading the response",
                )
            })?
            .map_err(|error| match error {
                CollectError::Idle(idle) => RelayError::new(
                    ErrorCode::UpstreamTimeoutIdle,
                    format!("no data from the upstream for {idle:?} while reading the response"),
                ),
                error => {
                    RelayError::new(ErrorCode::UpstreamReset, format!("reading the upstream response failed: {error}"))
                }
            })?;
        if delimited_by_close {
            classify::whole_json(&body)?;
        }
        let translated = self.dialect.translate_response(body, &ctx)?;
        match translated.usage {
            ResponseUsage::Read(Some(usage)) => call.record.set_usage(usage),
            ResponseUsage::Read(None) => {}
            ResponseUsage::InBody(read) => call.record.set_usage_in_body(translated.body.clone(), read),
        }
        call.record.mark_first_token();
        if simulate {
            let events = dialect::simulate::completion_to_chunks(&translated.body, chat.client_wants_usage)?;
            call.record.set_stream(true);
            response.headers_mut().insert(header::CONTENT_TYPE, TEXT_EVENT_STREAM);
            response.headers_mut().insert(header::CACHE_CONTROL, NO_CACHE);
            let frames = events.into_iter().map(|e| Ok(http_body::Frame::data(e)));
            *response.body_mut() = http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
            return Ok(response);
        }
        response.headers_mut().insert(header::CONTENT_TYPE, APPLICATION_JSON);
        *response.body_mut() = full(translated.body);
        *response.status_mut() = StatusCode::OK;
        Ok(response)
    }
}

fn set_stream_false(body: &Bytes) -> Bytes {
    match dialect::json::RawObject::parse(body) {
        Ok(mut object) => {
            object.set_value("stream", &false);
            object.remove("stream_options");
            object.to_bytes()
        }
        Err(_) => body.clone(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// An upstream as a tower service of attempts, for tower's retry and load tracking.
#[derive(Clone, Debug)]
pub struct Endpoint(pub Arc<Upstream>);

impl tower::Service<Call> for Endpoint {
    type Response = Response<Body>;
    type Error = RelayError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, RelayError>> + Send>>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), RelayError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let upstream = self.0.clone();
        boxed_in_place(move || async move { upstream.attempt(call).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_uris_are_built_once_per_path_and_stay_right_past_the_cache() {
        let base = BaseUrl::of(&Uri::from_static("http://relay.internal:8000/v1/")).unwrap();
        assert_eq!(base.host, Some(HeaderValue::from_static("relay.internal:8000")));
        let chat = "/chat/completions";
        let first = base.uri(chat).unwrap();
        assert_eq!(first, "http://relay.internal:8000/v1/chat/completions");
        assert_eq!(base.uri(chat).unwrap(), first);
        assert_eq!(base.uris.lock().len(), 1, "the same path is built once");
        for n in 0..CACHED_URIS + 8 {
            let path = format!("/models/m{n}:generateContent?alt=sse");
            let uri = base.uri(&path).unwrap();
            assert_eq!(uri.to_string(), format!("http://relay.internal:8000/v1/models/m{n}:generateContent?alt=sse"));
        }
        assert_eq!(base.uris.lock().len(), CACHED_URIS, "the cache is bounded");
        assert_eq!(base.uri(chat).unwrap(), first);
        assert!(base.uri("/bad path").is_err());
    }
}
