//! The relay against an upstream that speaks only HTTP/2 over TLS (ALPN `h2`, hyper's http2
//! server, a CA made at test time and trusted through `tls.ca_file`): the request it receives is
//! rewritten as over HTTP/1 and carries no connection-specific header; a stream is forwarded
//! event by event, not buffered; a stream reset, a connection dropped or a clean end before
//! `[DONE]` ends the client's stream with an in-band error event and no `[DONE]`; a reset or a
//! drop before anything reached the client, and the upstream's own HTTP errors, reach it as
//! OpenAI-shaped errors naming their class; concurrent requests share one connection, which a cold
//! burst opens once, up to the streams the relay puts on one; a client that leaves resets the
//! upstream's stream, not its connection; and an https upstream whose server chooses HTTP/1.1 is
//! served over HTTP/1.1 after one connection.
mod support;

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, Uri, Version};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use serde_json::{json, Value};
use support::{error_of, sse_data, test_pki, Relay};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

const API_KEY: &str = "sk-h2-upstream-key-0123456789";
const USER_AGENT: &str = "switchyard-h2-test/1.0";
const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"real-model","choices":[{"index":0,"message":{"role":"assistant","content":"OK"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;
/// The guard against a hang: every wait in these tests ends well within it, or the test fails.
const GUARD: Duration = Duration::from_secs(10);

/// A response body as the fake upstream sends it.
type H2Body = UnsyncBoxBody<Bytes, io::Error>;
/// What the test feeds a channel-backed body with: each item is one DATA frame, or the error
/// that makes hyper reset the stream.
type Feed = mpsc::Sender<Result<Frame<Bytes>, io::Error>>;

/// A request as the fake upstream received it.
#[derive(Clone)]
struct Seen {
    version: Version,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    /// Which accepted connection it came on, counted from 0.
    connection: usize,
    /// Drops that connection, without a GOAWAY.
    drop_connection: Arc<Notify>,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the upstream received JSON")
    }
}

/// What the fake upstream does with a request.
enum Answer {
    Respond(Response<H2Body>),
    /// The service fails, so hyper resets the stream (RST_STREAM) instead of a response head.
    Reset,
    /// Never answers (with [`Seen::drop_connection`], a connection dropped before the head).
    Silence,
}

/// An HTTPS upstream on 127.0.0.1 that negotiates only `h2`, answering with a handler.
struct H2Upstream {
    addr: SocketAddr,
    ca_file: PathBuf,
    /// TLS handshakes completed.
    connections: Arc<AtomicUsize>,
    /// Connections that have ended since.
    closed: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl H2Upstream {
    async fn start(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> H2Upstream {
        H2Upstream::offering(&[b"h2"], handler).await
    }

    /// An upstream whose server chooses by ALPN from `protocols` (none: it takes no part in
    /// ALPN) and serves whichever version the connection then speaks.
    async fn offering(protocols: &[&[u8]], handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> H2Upstream {
        H2Upstream::serve(protocols, None, handler).await
    }

    /// An HTTP/2 upstream that allows at most `streams` concurrent streams per connection.
    async fn limited(streams: u32, handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> H2Upstream {
        H2Upstream::serve(&[b"h2"], Some(streams), handler).await
    }

    async fn serve(
        protocols: &[&[u8]],
        max_streams: Option<u32>,
        handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
    ) -> H2Upstream {
        let pki = test_pki();
        let acceptor = pki.acceptor(protocols);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ca_file = std::env::temp_dir().join(format!("switchyard-h2-ca-{}-{}.pem", std::process::id(), addr.port()));
        std::fs::write(&ca_file, &pki.ca_pem).unwrap();

        let connections = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let (accepted, ended, log) = (connections.clone(), closed.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (acceptor, handler, accepted, ended, log) =
                    (acceptor.clone(), handler.clone(), accepted.clone(), ended.clone(), log.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let connection = accepted.fetch_add(1, Ordering::SeqCst);
                    let drop_connection = Arc::new(Notify::new());
                    let dropped = drop_connection.clone();
                    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
                        let (handler, log, drop_connection) = (handler.clone(), log.clone(), drop_connection.clone());
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let seen = Seen {
                                version: parts.version,
                                method: parts.method,
                                uri: parts.uri,
                                headers: parts.headers,
                                body,
                                connection,
                                drop_connection,
                            };
                            log.lock().push(seen.clone());
                            match handler(&seen) {
                                Answer::Respond(response) => Ok(response),
                                Answer::Reset => Err(io::Error::other("the upstream fails this request")),
                                Answer::Silence => std::future::pending().await,
                            }
                        }
                    });
                    let mut server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    server.http2().max_concurrent_streams(max_streams);
                    let served = server.serve_connection(TokioIo::new(tls), service);
                    tokio::select! {
                        _ = served => {}
                        _ = dropped.notified() => {}
                    }
                    ended.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        H2Upstream { addr, ca_file, connections, closed, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    /// A relay whose model `public` is this upstream's `real-model`, tried once.
    async fn relay(&self) -> Relay {
        Relay::start(&format!(
            r#"
[upstreams.up]
dialect = "openai-completions"
base_url = "https://{addr}/v1"
api_key = "{API_KEY}"
user_agent = "{USER_AGENT}"
tls = {{ ca_file = {ca_file:?} }}
timeouts = {{ connect = "5s", first_byte = "10s" }}
retry = {{ attempts = 1 }}

[[models]]
name = "public"
targets = [{{ upstream = "up", model = "real-model" }}]
"#,
            addr = self.addr,
            ca_file = self.ca_file.display().to_string(),
        ))
        .await
    }
}

impl Drop for H2Upstream {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

fn full_body(body: impl Into<Bytes>) -> H2Body {
    Full::new(body.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A body that sends what the test feeds it, as it is fed; it ends when the feed is dropped.
fn channel_body() -> (Feed, H2Body) {
    let (feed, receiver) = mpsc::channel(4);
    let frames = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|frame| (frame, receiver))
    });
    (feed, StreamBody::new(frames).boxed_unsync())
}

fn response(status: u16, headers: &[(&str, &str)], body: H2Body) -> Answer {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    for (name, value) in headers {
        response.headers_mut().insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    Answer::Respond(response)
}

fn json_answer(status: u16, body: &'static str) -> Answer {
    response(status, &[("content-type", "application/json")], full_body(body))
}

/// An SSE answer whose body is the test's to feed, handed over once through `body`.
fn sse_answer(body: &Mutex<Option<H2Body>>) -> Answer {
    let body = body.lock().take().expect("one stream request");
    response(200, &[("content-type", "text/event-stream")], body)
}

/// A handler that holds every answer until `all` requests are in, so that they are all in
/// flight at once (each on a stream of a connection, or on a connection of its own), then
/// answers each with [`COMPLETION`].
fn answer_when_all_in(all: usize) -> impl Fn(&Seen) -> Answer + Send + Sync + 'static {
    let waiting: Mutex<Vec<Feed>> = Mutex::default();
    move |_| {
        let (feed, body) = channel_body();
        let mut waiting = waiting.lock();
        waiting.push(feed);
        if waiting.len() == all {
            for feed in waiting.drain(..) {
                feed.try_send(Ok(Frame::data(Bytes::from_static(COMPLETION.as_bytes())))).unwrap();
            }
        }
        response(200, &[("content-type", "application/json")], body)
    }
}

/// `n` non-streamed requests sent at once, answered.
async fn burst(relay: &Arc<Relay>, n: usize) -> Vec<(StatusCode, HeaderMap, Bytes)> {
    let requests = (0..n).map(|_| {
        let relay = relay.clone();
        tokio::spawn(async move { relay.chat(&[], &request(false)).await })
    });
    futures_util::future::join_all(requests).await.into_iter().map(|answer| answer.unwrap()).collect()
}

fn chunk(text: &str) -> String {
    format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"real-model\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n")
}

const FINISH: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"real-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
const DONE: &str = "data: [DONE]\n\n";

async fn feed(feed: &Feed, event: &str) {
    feed.send(Ok(Frame::data(Bytes::from(event.to_owned())))).await.expect("the upstream body is still read");
}

fn request(stream: bool) -> Value {
    json!({"model": "public", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// A client request to the relay whose response is read frame by frame.
async fn open(relay: &Relay, headers: &[(&str, &str)], body: &Value) -> Response<Incoming> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = http::Request::post(relay.url("/v1/chat/completions"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    tokio::time::timeout(GUARD, client.request(request))
        .await
        .expect("the relay answered within the guard")
        .expect("the relay answered (a dropped connection is a bug)")
}

/// The next data frame of a relay's response; `None` at its end.
async fn next_data(body: &mut Incoming) -> Option<Bytes> {
    loop {
        let frame = tokio::time::timeout(GUARD, body.frame()).await.expect("the relay sent more within the guard")?;
        let frame = frame.expect("the relay's response completes (a dropped connection is a bug)");
        if let Ok(data) = frame.into_data() {
            return Some(data);
        }
    }
}

/// Reads the relay's response until one of its events holds `content`.
async fn read_until(body: &mut Incoming, received: &mut Vec<u8>, content: &str) {
    while !sse_data(received).iter().any(|event| event.contains(content)) {
        let data = next_data(body)
            .await
            .unwrap_or_else(|| panic!("the stream ended before {content:?}: {}", String::from_utf8_lossy(received)));
        received.extend_from_slice(&data);
    }
}

/// Reads the relay's response to its end.
async fn read_to_end(body: &mut Incoming, received: &mut Vec<u8>) {
    while let Some(data) = next_data(body).await {
        received.extend_from_slice(&data);
    }
}

#[tokio::test]
async fn the_upstream_speaks_h2_and_receives_the_rewritten_request_without_connection_headers() {
    let upstream = H2Upstream::start(|_| json_answer(200, COMPLETION)).await;
    let relay = upstream.relay().await;
    let client_headers = [
        ("authorization", "Bearer client-secret"),
        ("user-agent", "OpenAI/Python 1.50.0"),
        ("x-stainless-lang", "python"),
        ("x-stainless-os", "Linux"),
        ("connection", "keep-alive, x-hop-by-hop"),
        ("x-hop-by-hop", "for-the-relay-only"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("proxy-connection", "keep-alive"),
        ("x-request-id", "client-req-1"),
    ];
    let response = open(&relay, &client_headers, &request(false)).await;
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, COMPLETION.as_bytes());

    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.uri.path(), "/v1/chat/completions");
    assert_eq!(seen.uri.authority().map(|a| a.as_str()), Some(upstream.addr.to_string().as_str()));
    let sent = seen.json();
    assert_eq!(sent["model"], "real-model");
    assert_eq!(sent["messages"], json!([{"role": "user", "content": "hi"}]));
    let headers = &seen.headers;
    assert_eq!(headers.get_all("authorization").iter().collect::<Vec<_>>(), [&format!("Bearer {API_KEY}")]);
    assert_eq!(headers["user-agent"], USER_AGENT);
    assert_eq!(headers["x-request-id"], "client-req-1");
    assert!(headers.keys().all(|name| !name.as_str().starts_with("x-stainless-")), "{headers:?}");
    assert!(!format!("{headers:?}").contains("client-secret"), "{headers:?}");
    for name in ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "x-hop-by-hop"] {
        assert!(headers.get(name).is_none(), "{name} is specific to the client's connection: {headers:?}");
    }
    assert!(headers.get_all("te").iter().all(|te| te == "trailers"), "{headers:?}");
}

#[tokio::test]
async fn a_chunked_client_request_reaches_the_h2_upstream_without_its_framing_headers() {
    let upstream = H2Upstream::start(|_| json_answer(200, COMPLETION)).await;
    let relay = upstream.relay().await;
    let client_headers = [("transfer-encoding", "chunked"), ("upgrade", "websocket"), ("te", "gzip")];
    let response = open(&relay, &client_headers, &request(false)).await;
    assert_eq!(response.status(), 200);
    let seen = &upstream.seen()[0];
    assert_eq!(seen.json()["model"], "real-model");
    for name in ["transfer-encoding", "upgrade", "te"] {
        assert!(seen.headers.get(name).is_none(), "{name}: {:?}", seen.headers);
    }
}

#[tokio::test]
async fn a_stream_over_h2_is_forwarded_event_by_event_as_it_arrives() {
    let (upstream_feed, body) = channel_body();
    let body = Mutex::new(Some(body));
    let upstream = H2Upstream::start(move |_| sse_answer(&body)).await;
    let relay = upstream.relay().await;
    let words = ["one ", "two ", "three ", "four"];

    // The relay answers once the first event is in; each next event is sent only once the
    // client has read the one before: a relay that buffered would never get past the first.
    feed(&upstream_feed, &chunk(words[0])).await;
    let response = open(&relay, &[], &request(true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut received = Vec::new();
    read_until(&mut body, &mut received, words[0]).await;
    for word in &words[1..] {
        feed(&upstream_feed, &chunk(word)).await;
        read_until(&mut body, &mut received, word).await;
    }
    feed(&upstream_feed, FINISH).await;
    feed(&upstream_feed, DONE).await;
    drop(upstream_feed);
    read_to_end(&mut body, &mut received).await;

    let events = sse_data(&received);
    let contents: Vec<String> = events
        .iter()
        .filter_map(|event| serde_json::from_str::<Value>(event).ok())
        .filter_map(|event| event["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(contents, words, "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
    assert_eq!(upstream.seen()[0].version, Version::HTTP_2);
}

/// How the upstream's side of a stream ends after two events.
enum Cut {
    /// Its body fails, so hyper resets the stream (RST_STREAM).
    Reset,
    /// Its whole connection is dropped, without a GOAWAY.
    DropConnection,
    /// Its body ends (END_STREAM) with no `[DONE]`.
    CleanEnd,
}

/// Streams two events, cuts the upstream's side, and returns what the client got: status, the
/// request id header and the body's `data:` payloads.
async fn stream_cut_by(cut: Cut) -> (StatusCode, String, Vec<String>) {
    let (upstream_feed, body) = channel_body();
    let body = Mutex::new(Some(body));
    let upstream = H2Upstream::start(move |_| sse_answer(&body)).await;
    let relay = upstream.relay().await;
    feed(&upstream_feed, &chunk("half ")).await;
    let response = open(&relay, &[], &request(true)).await;
    let status = response.status();
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let mut body = response.into_body();
    let mut received = Vec::new();
    read_until(&mut body, &mut received, "half ").await;
    feed(&upstream_feed, &chunk("an answer")).await;
    read_until(&mut body, &mut received, "an answer").await;
    match cut {
        Cut::Reset => upstream_feed.try_send(Err(io::Error::other("the upstream resets the stream"))).unwrap(),
        Cut::DropConnection => upstream.seen()[0].drop_connection.notify_one(),
        Cut::CleanEnd => drop(upstream_feed),
    }
    read_to_end(&mut body, &mut received).await;
    (status, request_id, sse_data(&received))
}

fn assert_ends_with_in_band_error((status, request_id, events): &(StatusCode, String, Vec<String>), code: &str) {
    assert_eq!(*status, 200);
    assert!(!events.iter().any(|event| event == "[DONE]"), "a cut stream must not end as complete: {events:?}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    let error = &last["error"];
    assert_eq!(error["code"], code, "{events:?}");
    assert_eq!(error["upstream"], "up", "{error}");
    assert_eq!(error["request_id"], request_id.as_str(), "{error}");
    assert_eq!(error["type"], "upstream_error", "{error}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
}

#[tokio::test]
async fn an_h2_stream_reset_mid_way_ends_with_an_in_band_reset_error_not_done() {
    let got = stream_cut_by(Cut::Reset).await;
    assert_ends_with_in_band_error(&got, "upstream_reset");
}

#[tokio::test]
async fn an_h2_connection_dropped_mid_stream_ends_with_an_in_band_reset_error_not_done() {
    let got = stream_cut_by(Cut::DropConnection).await;
    assert_ends_with_in_band_error(&got, "upstream_reset");
}

#[tokio::test]
async fn an_h2_stream_ended_cleanly_before_done_ends_with_an_in_band_truncation_error() {
    let got = stream_cut_by(Cut::CleanEnd).await;
    assert_ends_with_in_band_error(&got, "upstream_stream_truncated");
}

#[tokio::test]
async fn an_h2_reset_or_dropped_connection_before_the_response_head_is_a_502_reset_error() {
    for drop_connection in [false, true] {
        let upstream = H2Upstream::start(move |seen| {
            if drop_connection {
                seen.drop_connection.notify_one();
                Answer::Silence
            } else {
                Answer::Reset
            }
        })
        .await;
        let relay = upstream.relay().await;
        for stream in [false, true] {
            let (status, headers, body) = relay.chat(&[], &request(stream)).await;
            let error = error_of(&body);
            let case = format!("drop_connection {drop_connection}, stream {stream}: {error}");
            assert_eq!(status, 502, "{case}");
            assert_eq!(headers["content-type"], "application/json", "{case}");
            assert_eq!(error["code"], "upstream_reset", "{case}");
            assert_eq!(error["type"], "upstream_error", "{case}");
            assert_eq!(error["upstream"], "up", "{case}");
            assert_eq!(error["request_id"], headers["x-request-id"].to_str().unwrap(), "{case}");
            assert!(error["message"].as_str().unwrap().contains("before a response"), "{case}");
        }
        assert_eq!(upstream.seen().len(), 2, "each request reached the upstream once: no retry");
    }
}

#[tokio::test]
async fn an_h2_reset_after_the_head_but_before_any_answer_is_a_502_reset_error() {
    // The head, part of a completion (none of a stream), then RST_STREAM: nothing has reached the
    // client, so it gets an ordinary error response, not a 200 cut short.
    let upstream = H2Upstream::start(|seen| {
        let (feed, body) = channel_body();
        let content_type = if seen.json()["stream"] == true {
            "text/event-stream"
        } else {
            feed.try_send(Ok(Frame::data(Bytes::from_static(br#"{"id":"chatcmpl-1","choices":[{"#)))).unwrap();
            "application/json"
        };
        feed.try_send(Err(io::Error::other("the upstream resets the stream"))).unwrap();
        response(200, &[("content-type", content_type)], body)
    })
    .await;
    let relay = upstream.relay().await;
    for stream in [false, true] {
        let (status, headers, body) = relay.chat(&[], &request(stream)).await;
        let error = error_of(&body);
        assert_eq!(
            (status.as_u16(), error["code"].as_str()),
            (502, Some("upstream_reset")),
            "stream {stream}: {error}"
        );
        assert_eq!(error["upstream"], "up", "{error}");
        assert_eq!(error["request_id"], headers["x-request-id"].to_str().unwrap(), "{error}");
    }
}

#[tokio::test]
async fn an_h2_upstream_429_passes_through_with_its_body_and_retry_after() {
    const LIMITED: &str = r#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    let upstream = H2Upstream::start(|_| {
        response(429, &[("content-type", "application/json"), ("retry-after", "7")], full_body(LIMITED))
    })
    .await;
    let relay = upstream.relay().await;
    for stream in [false, true] {
        let (status, headers, body) = relay.chat(&[], &request(stream)).await;
        assert_eq!(status, 429, "stream {stream}");
        assert_eq!(headers["retry-after"], "7", "stream {stream}");
        let error = error_of(&body);
        assert_eq!(error["message"], "Rate limit reached for requests", "{error}");
        assert_eq!(error["type"], "requests", "{error}");
        assert_eq!(error["code"], "rate_limit_exceeded", "{error}");
        assert_eq!(error["upstream"], "up", "{error}");
        assert_eq!(error["request_id"], headers["x-request-id"].to_str().unwrap(), "{error}");
    }
    assert_eq!(upstream.seen().len(), 2, "retries are off");
}

#[tokio::test]
async fn an_h2_upstream_503_html_page_is_a_non_json_error_with_its_status() {
    const PAGE: &str =
        "<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head><body>Try later</body></html>";
    let upstream =
        H2Upstream::start(|_| response(503, &[("content-type", "text/html; charset=utf-8")], full_body(PAGE))).await;
    let relay = upstream.relay().await;
    for stream in [false, true] {
        let (status, headers, body) = relay.chat(&[], &request(stream)).await;
        assert_eq!(status, 503, "stream {stream}");
        let error = error_of(&body);
        assert_eq!(error["code"], "upstream_non_json_error", "{error}");
        assert_eq!(error["upstream"], "up", "{error}");
        assert_eq!(error["request_id"], headers["x-request-id"].to_str().unwrap(), "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("HTML") && message.contains("503 Service Unavailable"), "{message}");
    }
}

#[tokio::test]
async fn concurrent_requests_share_one_h2_connection() {
    const CONCURRENT: usize = 8;
    let upstream = H2Upstream::start(answer_when_all_in(CONCURRENT)).await;
    let relay = Arc::new(upstream.relay().await);

    for (status, _, body) in burst(&relay, CONCURRENT).await {
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(body, COMPLETION.as_bytes());
    }
    let used: BTreeSet<usize> = upstream.seen().iter().map(|seen| seen.connection).collect();
    assert_eq!(used, BTreeSet::from([0]), "the requests were multiplexed on one connection");
    // Even on a cold pool: one request connects, the others wait for its connection rather than
    // each opening one of their own.
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1, "TLS connections opened by a cold burst");

    // A burst on the warm pool opens nothing new.
    for (status, _, _) in burst(&relay, CONCURRENT).await {
        assert_eq!(status, 200);
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2 * CONCURRENT);
    assert!(seen.iter().all(|s| s.connection == 0 && s.version == Version::HTTP_2));
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
    assert_eq!(upstream.closed.load(Ordering::SeqCst), 0, "the connection in use stays open");
}

#[tokio::test]
async fn requests_past_a_connection_s_stream_limit_get_another_connection_not_a_wait() {
    // One more than the relay puts on a connection, and the server's limit the same: on one
    // connection the last request would wait for another's stream to end, and here none ends
    // until all are in.
    const CONCURRENT: usize = switchyard::upstream::client::STREAMS_PER_CONNECTION + 1;
    let upstream = H2Upstream::limited(CONCURRENT as u32 - 1, answer_when_all_in(CONCURRENT)).await;
    let relay = Arc::new(upstream.relay().await);
    let burst = || tokio::time::timeout(GUARD, burst(&relay, CONCURRENT));

    let answers = burst().await.expect("every request reached the upstream, none waiting behind the stream limit");
    for (status, _, body) in answers {
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    let seen = upstream.seen();
    let on_first = seen.iter().filter(|s| s.connection == 0).count();
    assert_eq!((seen.len(), on_first), (CONCURRENT, CONCURRENT - 1), "a full connection, and one more");
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 2);

    // The streams that ended no longer count: the same burst again fits the same connections.
    for (status, _, _) in burst().await.expect("the second burst was answered") {
        assert_eq!(status, 200);
    }
    assert_eq!(upstream.seen().len(), 2 * CONCURRENT);
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_cold_burst_that_waited_for_a_connect_that_timed_out_is_told_so() {
    const CONCURRENT: usize = 4;
    // Takes TCP connections and never answers the TLS handshake.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(connection);
        }
    });
    let relay = Arc::new(
        Relay::start(&format!(
            r#"
[upstreams.silent]
dialect = "openai-completions"
base_url = "https://{addr}/v1"
api_key = "{API_KEY}"
timeouts = {{ connect = "300ms", first_byte = "10s" }}
retry = {{ attempts = 1 }}

[[models]]
name = "public"
targets = [{{ upstream = "silent", model = "real-model" }}]
"#
        ))
        .await,
    );

    for (status, headers, body) in burst(&relay, CONCURRENT).await {
        let error = error_of(&body);
        // Not a bare "canceled" for the requests that waited on another's connect.
        assert_eq!((status.as_u16(), error["code"].as_str().unwrap()), (504, "upstream_timeout_connect"), "{error}");
        assert_eq!(error["upstream"], "silent");
        assert_eq!(headers["x-switchyard-upstream"], "silent");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "the burst waited for one connect");
}

#[tokio::test]
async fn an_https_upstream_that_chooses_http1_is_served_over_http1_after_one_connection_for_http2() {
    const CONCURRENT: usize = 4;
    // The server picks HTTP/1.1 by ALPN, or takes no part in ALPN at all.
    for (case, protocols) in [("http/1.1", &[b"http/1.1".as_slice()][..]), ("no ALPN", &[])] {
        let upstream = H2Upstream::offering(protocols, answer_when_all_in(CONCURRENT)).await;
        let relay = Arc::new(upstream.relay().await);

        for (status, _, body) in burst(&relay, CONCURRENT).await {
            assert_eq!(status, 200, "{case}: {}", String::from_utf8_lossy(&body));
            assert_eq!(body, COMPLETION.as_bytes());
        }
        let seen = upstream.seen();
        assert!(seen.iter().all(|s| s.version == Version::HTTP_11), "{case}");
        // One connection was made for HTTP/2 and found HTTP/1.1; each request in flight then
        // had an HTTP/1.1 connection of its own.
        let used: BTreeSet<usize> = seen.iter().map(|seen| seen.connection).collect();
        assert_eq!(used.len(), CONCURRENT, "{case}: {used:?}");
        assert_eq!(upstream.connections.load(Ordering::SeqCst), CONCURRENT + 1, "{case}");

        // Once the server has chosen HTTP/1.1, no request tries HTTP/2 again: a second burst
        // reuses the idle connections.
        for (status, _, _) in burst(&relay, CONCURRENT).await {
            assert_eq!(status, 200, "{case}");
        }
        assert_eq!(upstream.seen().len(), 2 * CONCURRENT);
        assert_eq!(upstream.connections.load(Ordering::SeqCst), CONCURRENT + 1, "{case}");
    }
}

#[tokio::test]
async fn a_client_that_disconnects_resets_the_h2_upstream_stream() {
    let (upstream_feed, body) = channel_body();
    let body = Mutex::new(Some(body));
    let upstream =
        H2Upstream::start(
            move |seen| {
                if seen.json()["stream"] == true {
                    sse_answer(&body)
                } else {
                    json_answer(200, COMPLETION)
                }
            },
        )
        .await;
    let relay = upstream.relay().await;
    feed(&upstream_feed, &chunk("first")).await;
    let response = open(&relay, &[], &request(true)).await;
    let mut body = response.into_body();
    let mut received = Vec::new();
    read_until(&mut body, &mut received, "first").await;
    drop(body);

    // The relay resets the h2 stream, and hyper's server drops the body it was sending.
    tokio::time::timeout(GUARD, upstream_feed.closed())
        .await
        .expect("the upstream's stream was reset after the client left");
    assert!(upstream_feed.send(Ok(Frame::data(Bytes::from(chunk("unread"))))).await.is_err());

    // Only the stream was reset: the connection goes on serving.
    let (status, _, _) = relay.chat(&[], &request(false)).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.seen().len(), 2);
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}
