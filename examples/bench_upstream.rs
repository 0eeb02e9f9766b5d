//! Fast mock LLM upstream for the Switchyard benchmark harness (`bench/run.sh`).
//!
//! Not part of the relay. It answers as quickly as it can so that the benchmark
//! measures the proxy in front of it, not the upstream.
//!
//! Usage: `bench_upstream [ADDR] [--threads N] [--gap-ms N]` (default ADDR
//! `127.0.0.1:9101`, default threads = CPUs this process may run on, no gap).
//!
//! Routes (matched on the path suffix, so a base URL with or without `/v1` works):
//! - `POST …/chat/completions` — OpenAI chat completions. A fixed small
//!   `chat.completion` JSON, or, when the body contains `"stream":true`, an SSE
//!   stream of 20 `chat.completion.chunk` events, one usage chunk and
//!   `data: [DONE]`.
//! - `POST …/messages` — Anthropic Messages. A fixed `message` JSON, or, when
//!   streaming, `message_start`, `content_block_start`, 20 `content_block_delta`
//!   (`text_delta`), `content_block_stop`, `message_delta`, `message_stop`.
//! - `GET /healthz` — `{"status":"ok"}`.
//!
//! Every SSE event is its own body frame, and the body returns `Pending` (after
//! waking itself) between frames, so hyper flushes each event in its own write,
//! as a real token stream would arrive. There is no artificial delay, unless
//! `--gap-ms N` asks for one between a stream's events: a model emitting tokens
//! one at a time, so that a proxy reads each event on its own (`bench/callgrind.sh
//! drip`).
//!
//! The request body is only sniffed for `"stream": true`; nothing is parsed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Number of content chunks in every stream.
const CHUNKS: usize = 20;
const MODEL: &str = "bench-model";
const CREATED: u64 = 1_700_000_000;

/// The pause between a stream's events (`--gap-ms`), if any.
static EVENT_GAP: OnceLock<Option<std::time::Duration>> = OnceLock::new();

fn event_gap() -> Option<std::time::Duration> {
    EVENT_GAP.get().copied().flatten()
}

struct Canned {
    openai_json: Bytes,
    openai_sse: Vec<Bytes>,
    anthropic_json: Bytes,
    anthropic_sse: Vec<Bytes>,
    not_found: Bytes,
    health: Bytes,
}

fn token(i: usize) -> String {
    format!("tok{i} ")
}

fn full_text() -> String {
    (0..CHUNKS).map(token).collect()
}

fn canned() -> &'static Canned {
    static CANNED: OnceLock<Canned> = OnceLock::new();
    CANNED.get_or_init(|| {
        let text = full_text();

        let openai_json = serde_json::json!({
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 10, "completion_tokens": CHUNKS, "total_tokens": 10 + CHUNKS}
        });

        let mut openai_sse = Vec::with_capacity(CHUNKS + 2);
        for i in 0..CHUNKS {
            let delta = if i == 0 {
                serde_json::json!({"role": "assistant", "content": token(i)})
            } else {
                serde_json::json!({"content": token(i)})
            };
            let finish = if i + 1 == CHUNKS { serde_json::json!("stop") } else { serde_json::Value::Null };
            let chunk = serde_json::json!({
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": MODEL,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
            });
            openai_sse.push(sse(None, &chunk.to_string()));
        }
        let usage = serde_json::json!({
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "choices": [],
            "usage": {"prompt_tokens": 10, "completion_tokens": CHUNKS, "total_tokens": 10 + CHUNKS}
        });
        openai_sse.push(sse(None, &usage.to_string()));
        openai_sse.push(sse(None, "[DONE]"));

        let anthropic_json = serde_json::json!({
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": CHUNKS}
        });

        let mut anthropic_sse = Vec::with_capacity(CHUNKS + 5);
        let start = serde_json::json!({
            "type": "message_start",
            "message": {
                "id": "msg_bench",
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 1}
            }
        });
        anthropic_sse.push(sse(Some("message_start"), &start.to_string()));
        let block_start = serde_json::json!({
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""}
        });
        anthropic_sse.push(sse(Some("content_block_start"), &block_start.to_string()));
        for i in 0..CHUNKS {
            let delta = serde_json::json!({
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": token(i)}
            });
            anthropic_sse.push(sse(Some("content_block_delta"), &delta.to_string()));
        }
        let block_stop = serde_json::json!({"type": "content_block_stop", "index": 0});
        anthropic_sse.push(sse(Some("content_block_stop"), &block_stop.to_string()));
        let msg_delta = serde_json::json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": CHUNKS}
        });
        anthropic_sse.push(sse(Some("message_delta"), &msg_delta.to_string()));
        let msg_stop = serde_json::json!({"type": "message_stop"});
        anthropic_sse.push(sse(Some("message_stop"), &msg_stop.to_string()));

        let not_found = serde_json::json!({
            "error": {"message": "bench_upstream: no such route", "type": "not_found", "code": "not_found"}
        });

        Canned {
            openai_json: Bytes::from(openai_json.to_string()),
            openai_sse,
            anthropic_json: Bytes::from(anthropic_json.to_string()),
            anthropic_sse,
            not_found: Bytes::from(not_found.to_string()),
            health: Bytes::from_static(br#"{"status":"ok"}"#),
        }
    })
}

fn sse(event: Option<&str>, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 32);
    if let Some(ev) = event {
        s.push_str("event: ");
        s.push_str(ev);
        s.push('\n');
    }
    s.push_str("data: ");
    s.push_str(data);
    s.push_str("\n\n");
    Bytes::from(s)
}

/// Response body: either one buffer (with an exact size, so hyper sends
/// `content-length`) or a sequence of SSE events, one frame each, with a
/// `Pending` between frames so each one is flushed on its own (and, with
/// `--gap-ms`, a timer's wait).
enum MockBody {
    Full(Option<Bytes>),
    Events { frames: &'static [Bytes], next: usize, yield_before_next: bool, gap: Option<Pin<Box<tokio::time::Sleep>>> },
}

impl MockBody {
    fn full(b: &Bytes) -> Self {
        MockBody::Full(Some(b.clone()))
    }
    fn events(frames: &'static [Bytes]) -> Self {
        let gap = event_gap().map(|gap| Box::pin(tokio::time::sleep(gap)));
        MockBody::Events { frames, next: 0, yield_before_next: false, gap }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            MockBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Events { frames, next, yield_before_next, gap } => {
                if *next >= frames.len() {
                    return Poll::Ready(None);
                }
                if *yield_before_next {
                    match gap.as_mut() {
                        // Let hyper flush what it has, then come back when the gap has passed.
                        Some(sleep) => {
                            if sleep.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                            *yield_before_next = false;
                        }
                        // Let hyper flush what it has, then come straight back.
                        None => {
                            *yield_before_next = false;
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                    }
                }
                let frame = frames[*next].clone();
                *next += 1;
                *yield_before_next = true;
                if let (Some(sleep), Some(pause)) = (gap.as_mut(), event_gap()) {
                    sleep.as_mut().reset(tokio::time::Instant::now() + pause);
                }
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MockBody::Full(b) => b.is_none(),
            MockBody::Events { frames, next, .. } => *next >= frames.len(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Events { .. } => SizeHint::default(),
        }
    }
}

/// True if the body has `"stream"` followed by optional whitespace, `:`,
/// optional whitespace and `true`.
fn wants_stream(body: &[u8]) -> bool {
    let needle = b"\"stream\"";
    let mut rest = body;
    while let Some(pos) = memchr::memmem::find(rest, needle) {
        let mut after = &rest[pos + needle.len()..];
        after = trim_ws(after);
        if let Some(b':') = after.first() {
            after = trim_ws(&after[1..]);
            if after.starts_with(b"true") {
                return true;
            }
        }
        rest = &rest[pos + needle.len()..];
    }
    false
}

fn trim_ws(mut s: &[u8]) -> &[u8] {
    while let Some(c) = s.first() {
        if c.is_ascii_whitespace() {
            s = &s[1..];
        } else {
            break;
        }
    }
    s
}

fn respond(status: StatusCode, content_type: &'static str, body: MockBody) -> Response<MockBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type.starts_with("text/event-stream") {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    resp
}

async fn handle(req: Request<Incoming>) -> Result<Response<MockBody>, Infallible> {
    let c = canned();
    let path = req.uri().path();
    let is_openai = path.ends_with("/chat/completions");
    let is_anthropic = path.ends_with("/messages");

    if req.method() == Method::GET && (path == "/healthz" || path == "/health") {
        return Ok(respond(StatusCode::OK, "application/json", MockBody::full(&c.health)));
    }
    if req.method() != Method::POST || !(is_openai || is_anthropic) {
        return Ok(respond(StatusCode::NOT_FOUND, "application/json", MockBody::full(&c.not_found)));
    }

    // Read the whole request body (small), then sniff it.
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let stream = wants_stream(&body);

    let resp = match (is_openai, stream) {
        (true, false) => respond(StatusCode::OK, "application/json", MockBody::full(&c.openai_json)),
        (true, true) => respond(StatusCode::OK, "text/event-stream", MockBody::events(&c.openai_sse)),
        (false, false) => respond(StatusCode::OK, "application/json", MockBody::full(&c.anthropic_json)),
        (false, true) => {
            respond(StatusCode::OK, "text/event-stream; charset=utf-8", MockBody::events(&c.anthropic_sse))
        }
    };
    Ok(resp)
}

fn main() {
    let mut addr: SocketAddr = "127.0.0.1:9101".parse().unwrap();
    let mut threads: Option<usize> = None;
    let mut gap = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => {
                threads = args.next().and_then(|v| v.parse().ok());
                if threads.is_none() {
                    eprintln!("bench_upstream: --threads needs a number");
                    std::process::exit(2);
                }
            }
            "--gap-ms" => match args.next().and_then(|v| v.parse::<u64>().ok()) {
                Some(ms) => gap = Some(std::time::Duration::from_millis(ms)),
                None => {
                    eprintln!("bench_upstream: --gap-ms needs a number");
                    std::process::exit(2);
                }
            },
            "-h" | "--help" => {
                println!("usage: bench_upstream [ADDR] [--threads N] [--gap-ms N]");
                return;
            }
            other => match other.parse() {
                Ok(a) => addr = a,
                Err(e) => {
                    eprintln!("bench_upstream: bad listen address {other:?}: {e}");
                    std::process::exit(2);
                }
            },
        }
    }

    let _ = canned(); // build the canned responses before serving
    EVENT_GAP.set(gap).expect("set once, before serving");

    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.build().expect("tokio runtime");
    rt.block_on(async move {
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("bench_upstream: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        };
        eprintln!("bench_upstream: listening on {addr}");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // e.g. EMFILE: back off briefly rather than spin.
                    eprintln!("bench_upstream: accept error: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::wants_stream;

    #[test]
    fn sniffs_stream_flag() {
        assert!(wants_stream(br#"{"model":"m","stream":true}"#));
        assert!(wants_stream(br#"{"model":"m", "stream" : true }"#));
        assert!(!wants_stream(br#"{"model":"m","stream":false}"#));
        assert!(!wants_stream(br#"{"model":"m"}"#));
        assert!(wants_stream(br#"{"stream_options":{},"stream":true}"#));
    }
}
