//! HTTP/1.1 connections served by the relay's own loop, with hyper's server taking over any
//! connection that asks for more than a plain request.
//!
//! hyper's server runs each request through its dispatcher, a body channel, a header-read timer
//! it arms and drops per request, and a response encoder general enough for every case; on a
//! relayed request that was the largest share of the relay's own work left (bench/HISTORY.md).
//! This loop serves the requests an OpenAI SDK sends: HTTP/1.1, a head that httparse accepts,
//! no `Transfer-Encoding`, `Expect` or `Upgrade`, at most one `Content-Length`, and a body of at
//! most [`EAGER_BODY_BYTES`], read whole before the request is served. Anything else (an HTTP/2
//! preface, which is how h2c starts, HTTP/1.0, a chunked or large upload, `HEAD`) hands the
//! connection, with every byte read so far, to hyper's server for the rest of its life, so the
//! unusual cases keep hyper's handling. A head the relay does not serve (one that httparse
//! refuses, a target that is no URI, a content-length that is no number or two that differ, a
//! transfer-encoding that does not end with chunked, a head over [`MAX_HEAD_BYTES`] or
//! [`MAX_FIELDS`] fields) is answered here, with a JSON error like every other, where hyper
//! would send an empty 400 or 431.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use super::drain::Drain;
use super::RequestBody;
use crate::body::Body;
use crate::error::{ErrorCode, RelayError};
use crate::layer::recover::error_response;
use crate::layer::request_id;
use crate::wire::{push_chunk_size, push_content_length, tokens, write_head_and_body, Deadline, FieldSpan, ReadSize};

/// HTTP/2's connection preface, which is how h2c with prior knowledge starts.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Its first line, where httparse stops.
const H2_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0\r\n";
/// How long a refused connection is read, and its bytes dropped, after the answer: closing it
/// with unread bytes would send a reset, which can destroy the answer before the client reads it.
const REFUSED_LINGER: Duration = Duration::from_secs(2);
/// The most header fields a request may have: hyper's own limit, so that no request hyper would
/// serve is refused here.
const MAX_FIELDS: usize = 100;
/// The largest request head. Node's server takes 16 KiB and nginx 8 KiB a line; a head over
/// this is answered 431 by the loop rather than handed to hyper, which would read up to 408 KiB
/// and then answer an empty 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A buffer up to this size is parsed after every read; past it, only once a blank line (the
/// end of a head) has arrived, so that a long head sent a few bytes at a time is not parsed
/// again from its start for each of them.
const PARSE_EVERY_READ_BYTES: usize = 4 * 1024;
/// The largest body read whole before the request is served. A chat request is a few KiB; a
/// larger one (long contexts, images) goes to hyper, whose body is read only as the request is
/// served, after its key was checked.
const EAGER_BODY_BYTES: usize = 256 * 1024;
/// The largest read a connection makes (see [`ReadSize`]): a request is read whole before it is
/// served, and is at most a head and [`EAGER_BODY_BYTES`].
const LARGEST_READ: usize = 64 * 1024;
/// Room made for what a client sends while its request is served, when the buffer has none.
const PIPELINED_READ: usize = 4 * 1024;
/// How long a connection may take to send a complete request head (and body), counted from
/// the end of the previous response: hyper's default, which also ends idle keep-alive
/// connections.
pub(super) const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What hyper's server needs to take a connection over.
pub(super) type Hyper = Arc<auto::Builder<TokioExecutor>>;

/// Serves one connection until it closes, the drain ends it, or hyper takes it over.
pub(super) async fn serve<S>(stream: TcpStream, mut service: S, hyper: Hyper, drain: Drain)
where
    S: Service<Request<RequestBody>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut connection = Connection {
        stream,
        buffer: BytesMut::new(),
        read_size: ReadSize::up_to(LARGEST_READ),
        deadline: Deadline::new(Instant::now() + HEAD_READ_TIMEOUT),
        scanned: 0,
        spans: Vec::new(),
        spare_headers: None,
        out: Vec::new(),
    };
    loop {
        let next = match connection.next_request(&drain).await {
            Ok(next) => next,
            Err(error) => return tracing::debug!(%error, "connection ended"),
        };
        let (request, close) = match next {
            Next::Request { request, close } => (request, close),
            Next::Closed => return,
            Next::HandOver => return hand_over(connection, service, hyper, drain).await,
            // Boxed: a rare path, whose future would otherwise widen every connection's.
            Next::Malformed(code, why) => return Box::pin(connection.refuse(code, &why)).await,
        };
        let served = match service.ready().await {
            Ok(ready) => ready.call(request),
            Err(never) => match never {},
        };
        let response = match connection.watching_for_close(pin!(served)).await {
            Some(Ok(response)) => response,
            Some(Err(never)) => match never {},
            None => return,
        };
        match connection.write_response(response, close || drain.started()).await {
            Ok(Ending::KeepAlive) => connection.deadline.set(Instant::now() + HEAD_READ_TIMEOUT),
            Ok(Ending::Close) => {
                // A FIN after the response, not a reset that could overtake it.
                let _ = connection.stream.shutdown().await;
                return;
            }
            Err(error) => return tracing::debug!(%error, "connection ended while answering"),
        }
    }
}

struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
    read_size: ReadSize,
    /// When the head being awaited must be complete: moved forward after each response.
    deadline: Deadline,
    /// How much of the buffer was searched for the end of a head (see [`PARSE_EVERY_READ_BYTES`]).
    scanned: usize,
    spans: Vec<FieldSpan>,
    /// The last response's header map, emptied, for the next request's fields: as hyper does,
    /// which saves the map's two allocations per request.
    spare_headers: Option<HeaderMap>,
    /// The response head and the body data gathered for one write.
    out: Vec<u8>,
}

// One `Next` per request, returned once and taken apart at once: boxing the request would cost
// an allocation each time to save a move.
#[allow(clippy::large_enum_variant)]
enum Next {
    Request {
        request: Request<RequestBody>,
        close: bool,
    },
    /// The client closed the connection between requests, or the drain ended an idle one.
    Closed,
    HandOver,
    Malformed(ErrorCode, String),
}

/// A request head as the loop serves it: where its parts lie, and its framing.
struct Parsed {
    head_len: usize,
    method: Method,
    path: (usize, usize),
    body_len: usize,
    close: bool,
}

enum Parse {
    Complete(Parsed),
    Partial,
    HandOver,
    /// Not a request this relay serves: the error class, and why, for the client.
    Malformed(ErrorCode, String),
}

impl Connection {
    async fn next_request(&mut self, drain: &Drain) -> io::Result<Next> {
        let parsed = loop {
            if self.worth_parsing() {
                match self.parse() {
                    Parse::Complete(parsed) => break parsed,
                    Parse::HandOver => return Ok(Next::HandOver),
                    Parse::Malformed(code, why) => return Ok(Next::Malformed(code, why)),
                    Parse::Partial => {}
                }
            }
            match self.fill(Some(drain)).await? {
                Filled::Read => {}
                Filled::Closed | Filled::TimedOut | Filled::Drained => return Ok(Next::Closed),
            }
        };
        let Parsed { head_len, method, path, body_len, close } = parsed;
        while self.buffer.len() < head_len + body_len {
            match self.fill(None).await? {
                Filled::Read | Filled::Drained => {}
                Filled::Closed | Filled::TimedOut => return Ok(Next::Closed),
            }
        }
        self.scanned = 0;
        let head = self.buffer.split_to(head_len).freeze();
        let body = if body_len == 0 { None } else { Some(self.buffer.split_to(body_len).freeze()) };
        match self.build(&head, method, path) {
            Some(parts) => {
                Ok(Next::Request { request: Request::from_parts(parts, RequestBody::Buffered(body)), close })
            }
            // A target httparse let through that `http` refuses (a `"`, say), which hyper would
            // refuse too, with an empty 400.
            None => Ok(Next::Malformed(ErrorCode::InvalidRequest, "the request's target is not a valid URI".into())),
        }
    }

    /// Answers a head the relay does not serve with an error that says why, as every other error
    /// is answered, instead of hyper's empty 400 or 431, then closes the connection: where the
    /// next request would start is unknown.
    async fn refuse(mut self, code: ErrorCode, why: &str) {
        let id = request_id::random_id();
        let mut response = error_response(&RelayError::new(code, why), id.to_str().unwrap_or_default());
        response.headers_mut().insert(request_id::REQUEST_ID, id);
        tracing::debug!(why, "refused a malformed request");
        if self.write_response(response, true).await.is_err() {
            return;
        }
        let _ = self.stream.shutdown().await;
        let _ = tokio::time::timeout(REFUSED_LINGER, async {
            loop {
                self.buffer.clear();
                self.buffer.reserve(PIPELINED_READ);
                if !matches!(self.stream.read_buf(&mut self.buffer).await, Ok(read) if read > 0) {
                    break;
                }
            }
        })
        .await;
    }

    /// Whether the buffer may hold a whole head by now (see [`PARSE_EVERY_READ_BYTES`]).
    fn worth_parsing(&mut self) -> bool {
        let length = self.buffer.len();
        if length <= PARSE_EVERY_READ_BYTES || length >= MAX_HEAD_BYTES {
            return true;
        }
        // httparse takes a bare LF for CRLF: a head ends at "\n\n" or "\n\r\n", which may
        // straddle the previous search's end.
        let from = self.scanned.saturating_sub(2);
        self.scanned = length;
        let unsearched = &self.buffer[from..];
        memchr::memmem::find(unsearched, b"\n\n").is_some() || memchr::memmem::find(unsearched, b"\n\r\n").is_some()
    }

    /// The next request head in the buffer: complete, not yet, or one for hyper.
    fn parse(&mut self) -> Parse {
        if self.buffer.is_empty() {
            return Parse::Partial;
        }
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut request = httparse::Request::new(&mut []);
        let base = self.buffer.as_ptr();
        let head_len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut request,
            &self.buffer,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(length)) if length <= MAX_HEAD_BYTES => length,
            Ok(httparse::Status::Partial) if self.buffer.len() < MAX_HEAD_BYTES => return Parse::Partial,
            Ok(_) => {
                let why = format!("the request's head is over {} KiB", MAX_HEAD_BYTES / 1024);
                return Parse::Malformed(ErrorCode::RequestHeadTooLarge, why);
            }
            Err(httparse::Error::TooManyHeaders) => {
                let why = format!("the request's head has more than {MAX_FIELDS} fields");
                return Parse::Malformed(ErrorCode::RequestHeadTooLarge, why);
            }
            // h2c, which hyper's server speaks: once the whole preface is here, under this
            // loop's deadline, as hyper reads the rest of it with no deadline at all (a client
            // that stopped partway held its connection for good).
            Err(_) if self.buffer.starts_with(H2_PREFACE_LINE) => {
                return if self.buffer.len() < H2_PREFACE.len() { Parse::Partial } else { Parse::HandOver };
            }
            Err(error) => {
                return Parse::Malformed(ErrorCode::InvalidRequest, format!("the request is not HTTP/1.1: {error}"))
            }
        };
        if request.version != Some(1) {
            return Parse::HandOver;
        }
        let (Some(method), Some(path)) = (request.method, request.path) else { return Parse::HandOver };
        let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Parse::HandOver };
        if method == Method::HEAD || method == Method::CONNECT {
            return Parse::HandOver;
        }
        let mut body_len = None;
        let mut close = false;
        for field in request.headers.iter() {
            let name = field.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                match (body_len, content_length(field.value)) {
                    (None, Some(length)) if length <= EAGER_BODY_BYTES => body_len = Some(length),
                    (_, None) if field.value.is_empty() || !field.value.iter().all(u8::is_ascii_digit) => {
                        return Parse::Malformed(
                            ErrorCode::InvalidRequest,
                            "the request's content-length is not a number".into(),
                        )
                    }
                    (_, None)
                        if std::str::from_utf8(field.value).is_ok_and(|digits| digits.parse::<u64>().is_err()) =>
                    {
                        // hyper would refuse it with an empty 400; below this, it reads the body
                        // and the route answers 413.
                        return Parse::Malformed(
                            ErrorCode::InvalidRequest,
                            "the request's content-length is past any length a body can have".into(),
                        );
                    }
                    (Some(seen), Some(length)) if seen != length => {
                        return Parse::Malformed(
                            ErrorCode::InvalidRequest,
                            "the request has two different content-lengths".into(),
                        )
                    }
                    _ => return Parse::HandOver,
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // A request body's length is known only if chunked is its last coding, in the last
                // field that names any (RFC 9112 §6.3); hyper would refuse any other with an empty
                // 400.
                let last =
                    request.headers.iter().rev().find(|field| field.name.eq_ignore_ascii_case("transfer-encoding"));
                let codings = last.map_or(field.value, |last| last.value);
                if !tokens(codings).last().is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked")) {
                    return Parse::Malformed(
                        ErrorCode::InvalidRequest,
                        "the request's transfer-encoding does not end with chunked".into(),
                    );
                }
                return Parse::HandOver;
            } else if name.eq_ignore_ascii_case(b"expect") || name.eq_ignore_ascii_case(b"upgrade") {
                return Parse::HandOver;
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in tokens(field.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        return Parse::HandOver;
                    }
                }
            }
        }
        FieldSpan::record(&mut self.spans, request.headers, base);
        let path_start = path.as_ptr() as usize - base as usize;
        Parse::Complete(Parsed {
            head_len,
            method,
            path: (path_start, path_start + path.len()),
            body_len: body_len.unwrap_or(0),
            close,
        })
    }

    /// The request's parts from its frozen head, or `None` if `http` refuses the target or a
    /// field.
    fn build(&mut self, head: &Bytes, method: Method, path: (usize, usize)) -> Option<http::request::Parts> {
        let uri = Uri::from_maybe_shared(head.slice(path.0..path.1)).ok()?;
        // Room for the request id the stack may add.
        let mut headers = self.spare_headers.take().unwrap_or_else(|| HeaderMap::with_capacity(self.spans.len() + 1));
        for span in &self.spans {
            let name = HeaderName::from_bytes(&head[span.name.0..span.name.1]).ok()?;
            let value = HeaderValue::from_maybe_shared(head.slice(span.value.0..span.value.1)).ok()?;
            headers.append(name, value);
        }
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = method;
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        parts.headers = headers;
        Some(parts)
    }

    /// Reads more of the request into the buffer, until the deadline; with `drain`, an idle
    /// connection also stops waiting when the drain starts, but only once a read finds nothing:
    /// a request already sent is served (and answered with `connection: close`), not cut.
    async fn fill(&mut self, drain: Option<&Drain>) -> io::Result<Filled> {
        poll_fn(|cx| {
            if let Poll::Ready(read) = self.poll_fill(cx) {
                return Poll::Ready(read.map(|read| if read == 0 { Filled::Closed } else { Filled::Read }));
            }
            if drain.is_some_and(|drain| drain.started() && self.buffer.is_empty()) {
                return Poll::Ready(Ok(Filled::Drained));
            }
            self.deadline.poll_reached(cx).map(|()| Ok(Filled::TimedOut))
        })
        .await
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.read_size.poll_fill(&mut self.stream, &mut self.buffer, cx)
    }

    /// Drives `served` to its response, reading what the client sends meanwhile so that a
    /// client that goes away is seen: then `None`, and `served` is dropped, which cancels the
    /// upstream request.
    async fn watching_for_close<F: Future<Output = T>, T>(&mut self, mut served: Pin<&mut F>) -> Option<T> {
        poll_fn(|cx| {
            if let Poll::Ready(output) = served.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            match self.poll_closed(cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Ready when the client has closed its side or the connection broke. What it sends
    /// meanwhile (a pipelined request) is kept for later, up to a request's worth.
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.buffer.len() >= MAX_HEAD_BYTES + EAGER_BODY_BYTES {
            return Poll::Pending;
        }
        if self.buffer.capacity() == self.buffer.len() {
            self.buffer.reserve(PIPELINED_READ);
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buffer) {
            Poll::Ready(Ok(0) | Err(_)) => Poll::Ready(()),
            Poll::Ready(Ok(_)) => self.poll_closed(cx),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes the response; whether the connection may carry another request after it.
    async fn write_response(&mut self, response: Response<Body>, close: bool) -> io::Result<Ending> {
        let (parts, body) = response.into_parts();
        let bodiless = parts.status.is_informational()
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED;
        let length = body.size_hint().exact();
        self.out.clear();
        let says_close = encode_head(&mut self.out, &parts, if bodiless { None } else { Some(length) }, close);
        let ending = if close || says_close { Ending::Close } else { Ending::KeepAlive };
        let mut spare = parts.headers;
        spare.clear();
        self.spare_headers = Some(spare);
        if bodiless {
            write_head_and_body(&mut self.stream, &self.out, &[]).await?;
            return Ok(ending);
        }
        let chunked = length.is_none();
        // What a body of known length has still to send: one that says otherwise would leave
        // the client waiting, or take the next response for its own.
        let mut unsent = length;
        let mut body = pin!(body);
        // The latest data frame, kept out of `out` so that a whole body in one frame (the common
        // case) is written after the head without a copy.
        let mut last: Option<Bytes> = None;
        loop {
            let step = poll_fn(|cx| loop {
                match body.as_mut().poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        let Ok(data) = frame.into_data() else { continue };
                        if let Some(unsent) = &mut unsent {
                            match unsent.checked_sub(data.len() as u64) {
                                Some(left) => *unsent = left,
                                None => return Poll::Ready(Step::Misframed),
                            }
                        }
                        if let Some(previous) = last.replace(data) {
                            push_data(&mut self.out, &previous, chunked);
                        }
                    }
                    Poll::Ready(Some(Err(never))) => match never {},
                    Poll::Ready(None) if unsent.is_some_and(|unsent| unsent > 0) => {
                        return Poll::Ready(Step::Misframed)
                    }
                    Poll::Ready(None) => return Poll::Ready(Step::End),
                    // Everything the body had ready goes out in one write.
                    Poll::Pending if !self.out.is_empty() || last.is_some() => return Poll::Ready(Step::Write),
                    Poll::Pending => {
                        return match self.poll_closed(cx) {
                            Poll::Ready(()) => Poll::Ready(Step::ClientGone),
                            Poll::Pending => Poll::Pending,
                        }
                    }
                }
            })
            .await;
            match step {
                Step::End if chunked => {
                    push_data(&mut self.out, last.as_deref().unwrap_or_default(), true);
                    self.out.extend_from_slice(b"0\r\n\r\n");
                    write_head_and_body(&mut self.stream, &self.out, &[]).await?;
                    return Ok(ending);
                }
                Step::End => {
                    write_head_and_body(&mut self.stream, &self.out, last.as_deref().unwrap_or_default()).await?;
                    return Ok(ending);
                }
                Step::Write => {
                    if let Some(data) = last.take() {
                        push_data(&mut self.out, &data, chunked);
                    }
                    write_head_and_body(&mut self.stream, &self.out, &[]).await?;
                    self.out.clear();
                }
                Step::ClientGone => return Err(io::ErrorKind::ConnectionAborted.into()),
                Step::Misframed => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "the response body differs from its length"))
                }
            }
        }
    }
}

/// Whether a connection carries another request after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    KeepAlive,
    Close,
}

/// What writing a response body does next.
enum Step {
    /// The body has ended: write the rest.
    End,
    /// The body has nothing more yet: write what it gave.
    Write,
    /// The client closed the connection while the body had nothing to send.
    ClientGone,
    /// The body gave more or less than its length.
    Misframed,
}

enum Filled {
    Read,
    Closed,
    TimedOut,
    Drained,
}

/// A `Content-Length` value: digits only, as RFC 9110 §8.6 has it.
fn content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 12 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0usize, |total, digit| total.checked_mul(10)?.checked_add(usize::from(digit - b'0')))
}

/// The response head; `length` is the body's when known, `None` for a response without a body
/// (1xx, 204, 304), `Some(None)` for a body of unknown length, sent chunked. `close` adds a
/// `connection: close` unless the response has one. Whether the response's own `Connection`
/// says close, read while its fields are written rather than looked up in its map first.
fn encode_head(out: &mut Vec<u8>, parts: &http::response::Parts, length: Option<Option<u64>>, close: bool) -> bool {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut dated = false;
    let mut says_close = false;
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        dated |= name == DATE;
        if name == CONNECTION {
            says_close |= tokens(value.as_bytes()).any(|token| token.eq_ignore_ascii_case(b"close"));
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close && !says_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    match length {
        None => {}
        Some(Some(length)) => push_content_length(out, length),
        Some(None) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        super::date::with(|date| out.extend_from_slice(date));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    says_close
}

fn push_data(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if data.is_empty() {
        return;
    }
    if chunked {
        push_chunk_size(out, data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// Hands the connection, with what was read of it, to hyper's server, and serves it there to
/// its end: an h2c connection, or a request this loop leaves to hyper.
async fn hand_over<S>(connection: Connection, service: S, hyper: Hyper, drain: Drain)
where
    S: Service<Request<RequestBody>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let io = TokioIo::new(Rewound { read: connection.buffer.freeze(), stream: connection.stream });
    let service = service.map_request(|request: Request<Incoming>| request.map(RequestBody::Hyper));
    let served = hyper.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
    let mut served = pin!(served);
    let mut draining = false;
    let result = poll_fn(|cx| {
        if !draining && drain.started() {
            draining = true;
            served.as_mut().graceful_shutdown();
        }
        served.as_mut().poll(cx)
    })
    .await;
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// The connection's stream, with the bytes already read from it put back in front.
struct Rewound {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Rewound {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let take = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read.split_to(take));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::StreamExt;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{mpsc, oneshot};

    use super::super::drain::Draining;
    use super::*;

    /// What the test service was asked, and how it answers: by the path.
    #[derive(Clone, Default)]
    struct Script {
        /// `/stream`: the body's parts, sent by the test.
        parts: Arc<std::sync::Mutex<Option<mpsc::Receiver<&'static str>>>>,
        /// `/hold`: answered when the test sends; the sender tells it if the request was dropped.
        hold: Arc<std::sync::Mutex<Option<oneshot::Receiver<()>>>>,
    }

    /// Notes its own drop: the request's future, cancelled.
    struct DropFlag(Option<oneshot::Sender<()>>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            if let Some(dropped) = self.0.take() {
                let _ = dropped.send(());
            }
        }
    }

    /// Answers `/echo` with what it received and which server read the body (`x-body`).
    async fn answer(
        script: Script,
        request: Request<RequestBody>,
        dropped: Option<oneshot::Sender<()>>,
    ) -> Response<Body> {
        let _flag = DropFlag(dropped);
        let (parts, body) = request.into_parts();
        let read_by = match &body {
            RequestBody::Buffered(_) => "loop",
            RequestBody::Hyper(_) => "hyper",
        };
        let body = body.collect().await.map(|collected| collected.to_bytes()).unwrap_or_default();
        let response = match parts.uri.path() {
            "/stream" => {
                let parts = script.parts.lock().unwrap().take().expect("one stream per script");
                let frames = parts_of(parts).map(|part| Ok::<_, Infallible>(Frame::data(Bytes::from(part))));
                Response::new(StreamBody::new(frames).boxed_unsync())
            }
            "/close" => {
                let mut response = Response::new(crate::body::full("bye"));
                response.headers_mut().insert(CONNECTION, HeaderValue::from_static("x-trace, Close"));
                response
            }
            "/hold" => {
                let release = script.hold.lock().unwrap().take().expect("one hold per script");
                let _ = release.await;
                Response::new(crate::body::full("released"))
            }
            _ => Response::new(crate::body::full(format!(
                "{} {} {}",
                parts.method,
                parts.uri,
                String::from_utf8_lossy(&body)
            ))),
        };
        let (mut head, body) = response.into_parts();
        head.headers.insert("x-body", HeaderValue::from_static(read_by));
        Response::from_parts(head, body)
    }

    /// A connection to a server whose `/stream` answer sends the parts given to the sender, with
    /// that request sent.
    async fn streaming() -> (mpsc::Sender<&'static str>, TcpStream) {
        let (parts, receiver) = mpsc::channel(4);
        let script = Script { parts: Arc::new(std::sync::Mutex::new(Some(receiver))), ..Script::default() };
        let Server { address, .. } = server(script, None).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(post("/stream", "", "").as_bytes()).await.unwrap();
        (parts, stream)
    }

    fn parts_of(mut parts: mpsc::Receiver<&'static str>) -> impl futures_util::Stream<Item = &'static str> {
        futures_util::stream::poll_fn(move |cx| parts.poll_recv(cx))
    }

    /// A listener serving `script` with the loop, and what the test sees of it.
    struct Server {
        address: SocketAddr,
        accepted: Arc<AtomicUsize>,
        draining: Draining,
        /// The accept loop, which holds a view of the drain while it runs.
        listening: tokio::task::AbortHandle,
    }

    fn service(
        script: Script,
        dropped: Option<oneshot::Sender<()>>,
    ) -> impl Service<Request<RequestBody>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone + Send
    {
        let dropped = Arc::new(std::sync::Mutex::new(dropped));
        tower::service_fn(move |request: Request<RequestBody>| {
            let (script, dropped) = (script.clone(), dropped.lock().unwrap().take());
            async move { Ok::<_, Infallible>(answer(script, request, dropped).await) }
        })
    }

    fn hyper() -> Hyper {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(hyper_util::rt::TokioTimer::new());
        Arc::new(builder)
    }

    async fn server(script: Script, dropped: Option<oneshot::Sender<()>>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let draining = Draining::new();
        let (service, hyper) = (service(script, dropped), hyper());
        let connections = draining.connection();
        let counter = accepted.clone();
        let listening = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let drain = connections.clone();
                let waits = drain.wait();
                let served = serve(stream, service.clone(), hyper.clone(), drain);
                tokio::spawn(async move {
                    let mut waits = pin!(waits);
                    poll_fn(|cx| {
                        let _ = waits.as_mut().poll(cx);
                        Poll::Ready(())
                    })
                    .await;
                    served.await;
                });
            }
        });
        Server { address, accepted, draining, listening: listening.abort_handle() }
    }

    /// One response read off `stream`: its head (lowercased) and its body, by its framing.
    async fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> (String, Vec<u8>) {
        let head_len = loop {
            if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                break end + 4;
            }
            read_more(stream, buffer).await;
        };
        let head = String::from_utf8(buffer.drain(..head_len).collect()).unwrap();
        let body = if let Some(length) = head.lines().find_map(|line| line.strip_prefix("content-length: ")) {
            let length: usize = length.parse().unwrap();
            while buffer.len() < length {
                read_more(stream, buffer).await;
            }
            buffer.drain(..length).collect()
        } else if head.contains("transfer-encoding: chunked") {
            let mut body = Vec::new();
            loop {
                let line = loop {
                    if let Some(end) = buffer.windows(2).position(|window| window == b"\r\n") {
                        break end;
                    }
                    read_more(stream, buffer).await;
                };
                let size = usize::from_str_radix(std::str::from_utf8(&buffer[..line]).unwrap(), 16).unwrap();
                while buffer.len() < line + 2 + size + 2 {
                    read_more(stream, buffer).await;
                }
                body.extend_from_slice(&buffer[line + 2..line + 2 + size]);
                buffer.drain(..line + 2 + size + 2);
                if size == 0 {
                    break body;
                }
            }
        } else {
            Vec::new()
        };
        (head, body)
    }

    async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) {
        let mut chunk = [0; 4096];
        let read =
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await.expect("an answer").unwrap();
        assert!(read > 0, "the connection closed; read so far: {:?}", String::from_utf8_lossy(buffer));
        buffer.extend_from_slice(&chunk[..read]);
    }

    /// Whether the server closes the connection (reads to the end within a second).
    async fn closes(stream: &mut TcpStream) -> bool {
        let mut rest = Vec::new();
        matches!(tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut rest)).await, Ok(Ok(_)))
    }

    fn post(path: &str, body: &str, extra: &str) -> String {
        format!("POST {path} HTTP/1.1\r\nhost: relay\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}", body.len())
    }

    #[tokio::test]
    async fn requests_on_one_connection_are_answered_in_turn_with_length_and_date() {
        let Server { address, accepted, .. } = server(Script::default(), None).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut buffer = Vec::new();
        for body in ["{\"n\":1}", "{\"n\":2}"] {
            stream.write_all(post("/v1/echo", body, "").as_bytes()).await.unwrap();
            let (head, answer) = read_response(&mut stream, &mut buffer).await;
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            assert!(head.contains(&format!("content-length: {}\r\n", answer.len())), "{head}");
            assert!(head.contains("x-body: loop\r\n"), "the loop read the body: {head}");
            let date = head.lines().find_map(|line| line.strip_prefix("date: ")).expect("a date");
            assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
            assert_eq!(String::from_utf8(answer).unwrap(), format!("POST /v1/echo {body}"));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection carried both");
    }

    #[tokio::test]
    async fn pipelined_requests_and_heads_split_into_single_bytes_are_served_in_order() {
        let Server { address, .. } = server(Script::default(), None).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let both = post("/a", "1", "") + &post("/b", "22", "");
        for byte in both.as_bytes() {
            stream.write_all(std::slice::from_ref(byte)).await.unwrap();
            tokio::task::yield_now().await;
        }
        let mut buffer = Vec::new();
        assert_eq!(read_response(&mut stream, &mut buffer).await.1, b"POST /a 1");
        assert_eq!(read_response(&mut stream, &mut buffer).await.1, b"POST /b 22");
        stream.write_all(&both.as_bytes()[..both.len()]).await.unwrap();
        assert_eq!(read_response(&mut stream, &mut buffer).await.1, b"POST /a 1", "two requests in one write");
        assert_eq!(read_response(&mut stream, &mut buffer).await.1, b"POST /b 22");
    }

    #[tokio::test]
    async fn a_long_head_in_small_pieces_is_served_whichever_read_its_end_arrives_in() {
        let Server { address, .. } = server(Script::default(), None).await;
        let filler = format!("x-filler: {}\r\n", "f".repeat(PARSE_EVERY_READ_BYTES));
        for line_ending in ["\r\n", "\n"] {
            let request =
                format!("POST /long HTTP/1.1{line_ending}{filler}content-length: 2{line_ending}{line_ending}hi");
            for piece in [1, 2, 3, 7] {
                let mut stream = TcpStream::connect(address).await.unwrap();
                stream.set_nodelay(true).unwrap();
                for part in request.as_bytes().chunks(piece) {
                    stream.write_all(part).await.unwrap();
                    if part.contains(&b'\n') {
                        tokio::task::yield_now().await;
                    }
                }
                let (head, body) = read_response(&mut stream, &mut Vec::new()).await;
                assert!(head.contains("x-body: loop\r\n"), "{head}");
                assert_eq!(body, b"POST /long hi", "pieces of {piece}, line ending {line_ending:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_streamed_body_is_chunked_and_each_part_leaves_before_the_next_exists() {
        let (parts, mut stream) = streaming().await;
        let mut seen = Vec::new();
        while !seen.windows(4).any(|window| window == b"\r\n\r\n") {
            read_more(&mut stream, &mut seen).await;
        }
        let head = String::from_utf8_lossy(&seen);
        assert!(head.contains("transfer-encoding: chunked\r\n") && !head.contains("content-length"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "the head left before any part of the body existed: {head}");
        parts.send("data: one\n\n").await.unwrap();
        let mut buffer = Vec::new();
        while !buffer.ends_with(b"data: one\n\n\r\n") {
            read_more(&mut stream, &mut buffer).await;
        }
        assert_eq!(buffer, b"b\r\ndata: one\n\n\r\n", "the first part, alone, as one chunk");
        parts.send("data: two\n\n").await.unwrap();
        drop(parts);
        let mut rest = Vec::new();
        while !rest.ends_with(b"0\r\n\r\n") {
            read_more(&mut stream, &mut rest).await;
        }
        assert_eq!(rest, b"b\r\ndata: two\n\n\r\n0\r\n\r\n");
    }

    #[tokio::test]
    async fn requests_the_loop_does_not_serve_are_served_by_hyper_with_every_byte_read() {
        let large = "x".repeat(EAGER_BODY_BYTES + 1);
        let cases: Vec<(&str, String, &str, Option<String>)> = vec![
            ("HTTP/1.0", "POST /a HTTP/1.0\r\ncontent-length: 2\r\n\r\nhi".into(), "200", Some("POST /a hi".into())),
            (
                "a chunked upload",
                "POST /a HTTP/1.1\r\nhost: relay\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n3\r\n yo\r\n0\r\n\r\n"
                    .into(),
                "200",
                Some("POST /a hi yo".into()),
            ),
            (
                "a chunked upload whose codings are split across fields",
                "POST /a HTTP/1.1\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
                    .into(),
                "200",
                Some("POST /a hi".into()),
            ),
            (
                "Expect: 100-continue",
                "POST /a HTTP/1.1\r\nhost: relay\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\nhi".into(),
                "100",
                None,
            ),
            ("a large body", post("/a", &large, ""), "200", Some(format!("POST /a {large}"))),
        ];
        let Server { address, .. } = server(Script::default(), None).await;
        for (case, request, status, body) in cases {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let (head, answer) = read_response(&mut stream, &mut Vec::new()).await;
            let status_line = head.split_once("\r\n").map_or("", |(line, _)| line);
            assert!(
                ["HTTP/1.1", "HTTP/1.0"].iter().any(|version| status_line.starts_with(&format!("{version} {status} "))),
                "{case}: {head}"
            );
            if let Some(body) = body {
                assert!(head.contains("x-body: hyper\r\n"), "{case}: {head}");
                assert_eq!(String::from_utf8(answer).unwrap(), body, "{case}");
            }
        }
    }

    #[tokio::test]
    async fn a_malformed_request_is_refused_with_an_error_that_says_why_then_closed() {
        let cases = [
            ("two lengths", post("/a", "hi", "content-length: 3\r\n"), "two different content-lengths"),
            ("a length that is not digits", "POST /a HTTP/1.1\r\ncontent-length: +2\r\n\r\nhi".into(), "not a number"),
            (
                "a length past u64",
                "POST /a HTTP/1.1\r\ncontent-length: 18446744073709551616\r\n\r\nhi".into(),
                "past any length",
            ),
            ("not HTTP", "HELLO\r\n\r\n".into(), "not HTTP/1.1"),
            ("a field name with a space", "GET / HTTP/1.1\r\nbad name: x\r\n\r\n".into(), "invalid header name"),
            ("HTTP/2.0 without the preface", "POST /a HTTP/2.0\r\n\r\n".into(), "invalid HTTP version"),
            (
                "a transfer coding after chunked",
                "POST /a HTTP/1.1\r\ntransfer-encoding: chunked, gzip\r\n\r\n2\r\nhi\r\n0\r\n\r\n".into(),
                "transfer-encoding does not end with chunked",
            ),
            (
                "a transfer coding but chunked, in a later field",
                "POST /a HTTP/1.1\r\ntransfer-encoding: chunked\r\ntransfer-encoding: identity\r\n\r\nhi".into(),
                "transfer-encoding does not end with chunked",
            ),
            ("a target that is no URI", "GET /a?q=\"x\" HTTP/1.1\r\n\r\n".into(), "target is not a valid URI"),
        ];
        let too_large = [
            (
                "more fields than hyper takes",
                format!(
                    "GET / HTTP/1.1\r\n{}\r\n",
                    (0..=MAX_FIELDS).map(|i| format!("x-f{i}: v\r\n")).collect::<String>()
                ),
                "more than 100 fields",
            ),
            (
                "a head over the limit",
                format!("GET / HTTP/1.1\r\nx-big: {}\r\n\r\n", "y".repeat(MAX_HEAD_BYTES)),
                "over 64 KiB",
            ),
        ];
        let cases = cases.into_iter().map(|(case, request, why)| (case, request, "400", "invalid_request", why));
        let cases =
            cases.chain(too_large.map(|(case, request, why)| (case, request, "431", "request_head_too_large", why)));
        let Server { address, .. } = server(Script::default(), None).await;
        for (case, request, status, code, why) in cases {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let (head, body) = read_response(&mut stream, &mut Vec::new()).await;
            assert!(
                head.starts_with(&format!("HTTP/1.1 {status} ")) && head.contains("connection: close\r\n"),
                "{case}: {head}"
            );
            let id = head.lines().find_map(|line| line.strip_prefix("x-request-id: ")).unwrap_or_default();
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(error["error"]["code"], code, "{case}: {error}");
            assert!(error["error"]["message"].as_str().unwrap().contains(why), "{case}: {error}");
            assert!(id.starts_with("req_") && error["error"]["request_id"] == id, "{case}: {head} {error}");
            assert!(closes(&mut stream).await, "{case}: the connection was closed");
        }
    }

    #[tokio::test]
    async fn an_h2c_connection_is_served_by_hyper() {
        let Server { address, .. } = server(Script::default(), None).await;
        let stream = TcpStream::connect(address).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let request = Request::post("http://relay/h2").body(http_body_util::Full::new(Bytes::from("hi"))).unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.version(), Version::HTTP_2);
        assert_eq!(response.headers()["x-body"], "hyper");
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "POST http://relay/h2 hi");
    }

    #[tokio::test]
    async fn connection_close_is_answered_in_the_head_and_then_done() {
        let Server { address, .. } = server(Script::default(), None).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(post("/a", "hi", "connection: close\r\n").as_bytes()).await.unwrap();
        let (head, body) = read_response(&mut stream, &mut Vec::new()).await;
        assert!(head.contains("connection: close\r\n"), "{head}");
        assert_eq!(body, b"POST /a hi");
        assert!(closes(&mut stream).await, "the server closed the connection after the response");
    }

    #[tokio::test]
    async fn a_response_that_says_close_ends_the_connection_and_carries_its_own_field_alone() {
        let Server { address, .. } = server(Script::default(), None).await;
        for asked in ["", "connection: close\r\n"] {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(post("/close", "", asked).as_bytes()).await.unwrap();
            let (head, body) = read_response(&mut stream, &mut Vec::new()).await;
            assert_eq!(body, b"bye");
            assert_eq!(head.matches("connection:").count(), 1, "{asked:?}: {head}");
            assert!(head.contains("connection: x-trace, Close\r\n"), "{asked:?}: {head}");
            assert!(closes(&mut stream).await, "{asked:?}: the server closed the connection after the response");
        }
    }

    #[tokio::test]
    async fn a_client_that_goes_away_cancels_its_request() {
        let (_release, hold) = oneshot::channel();
        let (dropped, was_dropped) = oneshot::channel();
        let script = Script { hold: Arc::new(std::sync::Mutex::new(Some(hold))), ..Script::default() };
        let Server { address, .. } = server(script, Some(dropped)).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(post("/hold", "", "").as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(stream);
        tokio::time::timeout(Duration::from_secs(2), was_dropped).await.expect("the request was dropped").unwrap();
    }

    #[tokio::test]
    async fn a_client_that_goes_away_mid_stream_ends_the_body() {
        let (parts, mut stream) = streaming().await;
        parts.send("data: one\n\n").await.unwrap();
        let mut seen = Vec::new();
        while !seen.ends_with(b"data: one\n\n\r\n") {
            read_more(&mut stream, &mut seen).await;
        }
        drop(stream);
        tokio::time::timeout(Duration::from_secs(2), parts.closed()).await.expect("the body was dropped");
    }

    #[tokio::test]
    async fn the_drain_closes_idle_connections_and_lets_a_busy_one_finish_with_close() {
        let (release, hold) = oneshot::channel();
        let script = Script { hold: Arc::new(std::sync::Mutex::new(Some(hold))), ..Script::default() };
        let Server { address, draining, listening, .. } = server(script, None).await;
        let mut idle = TcpStream::connect(address).await.unwrap();
        idle.write_all(post("/a", "", "").as_bytes()).await.unwrap();
        read_response(&mut idle, &mut Vec::new()).await;
        let mut busy = TcpStream::connect(address).await.unwrap();
        busy.write_all(post("/hold", "", "").as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        listening.abort();
        let finished = tokio::spawn(draining.finished());
        assert!(closes(&mut idle).await, "the idle connection is closed at once");
        assert!(!finished.is_finished(), "the busy connection is still serving");
        release.send(()).unwrap();
        let (head, body) = read_response(&mut busy, &mut Vec::new()).await;
        assert!(head.contains("connection: close\r\n"), "{head}");
        assert_eq!(body, b"released");
        assert!(closes(&mut busy).await);
        tokio::time::timeout(Duration::from_secs(2), finished).await.expect("drained").unwrap();
    }

    #[tokio::test]
    async fn a_request_already_sent_when_the_drain_starts_is_answered_with_close_not_cut() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        client.write_all(post("/a", "hi", "").as_bytes()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let draining = Draining::new();
        let drain = draining.connection();
        let finished = draining.finished();
        tokio::spawn(serve(accepted, service(Script::default(), None), hyper(), drain));
        let (head, body) = read_response(&mut client, &mut Vec::new()).await;
        assert!(head.contains("connection: close\r\n"), "{head}");
        assert_eq!(body, b"POST /a hi");
        assert!(closes(&mut client).await);
        tokio::time::timeout(Duration::from_secs(2), finished).await.expect("drained");
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_not_complete_in_time_ends_the_connection_however_long_it_was_kept() {
        let Server { address, .. } = server(Script::default(), None).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        for _ in 0..3 {
            stream.write_all(post("/a", "", "").as_bytes()).await.unwrap();
            read_response(&mut stream, &mut Vec::new()).await;
            tokio::time::sleep(HEAD_READ_TIMEOUT / 2).await;
        }
        let started = Instant::now();
        stream.write_all(b"POST /a HTTP/1.1\r\n").await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).await.unwrap(), 0, "closed without an answer");
        let waited = started.elapsed();
        assert!(
            waited >= HEAD_READ_TIMEOUT / 2 && waited <= HEAD_READ_TIMEOUT,
            "counted from the end of the last response, not from the connection's start: {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_h2c_preface_cut_short_ends_the_connection_at_the_head_deadline() {
        let Server { address, .. } = server(Script::default(), None).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        // The preface's first line is enough to tell h2c; hyper reads the rest with no deadline.
        stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM").await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(HEAD_READ_TIMEOUT * 2, stream.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0))), "closed at the head deadline, without an answer: {read:?} {rest:?}");
    }

    #[test]
    fn a_content_length_is_digits_only() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b"1234"), Some(1234));
        for wrong in [&b""[..], b"+1", b"-1", b"1 2", b"0x10", b"1,1", b"99999999999999999999"] {
            assert_eq!(content_length(wrong), None, "{:?}", String::from_utf8_lossy(wrong));
        }
    }
}
