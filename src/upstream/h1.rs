//! HTTP/1.1 to plain-`http` upstreams, written and read by the request's own task.
//!
//! hyper's client connection is a state machine of its own: the request goes to it over a
//! channel, the response head comes back over a oneshot, and every body chunk crosses another
//! channel, with a wake-up each way, even when the caller drives the connection itself. For the
//! upstreams a relay most often sits next to (vLLM, Ollama, another relay in the same cluster)
//! that machinery cost more than a third of a relayed stream's instructions. Here the request is
//! one vectored write, and the response is parsed where it is read: the head and every unusual
//! chunk-size line by httparse, the parser hyper itself uses (a bare hex size line is read here,
//! held to httparse's answers by a test); what is left here is the message framing of RFC 9112 §6
//! and connection reuse. Body data is handed on as slices of the read buffer, never
//! copied out of it; the chunks of one read are joined in place, to go on as one frame.
//!
//! A connection returns to the pool when its response was read to the end, cleanly framed, with
//! nothing after it, and the upstream did not ask to close; a body dropped early (a client that
//! went away) drops its connection, which closes it.
//!
//! `https` upstreams keep hyper-util's client: ALPN may choose HTTP/2, whose connections are
//! multiplexed and need a task of their own.

use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_rustls::MaybeHttpsStream;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::Service;

use super::client::Connector;
use super::SendError;
use crate::error::BoxError;
use crate::wire::{poll_write_head_and_body, push_content_length, tokens, Deadline, FieldSpan, ReadSize};

/// Idle connections kept per upstream.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused: servers drop idle
/// connections after a while, and a request sent on one they just closed would fail.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Header fields a response head may have (hyper's default too).
const MAX_HEADERS: usize = 100;
/// Longest response head, and longest run of trailer fields, accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest chunk-size line (with its extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// The largest read a connection makes (see [`ReadSize`]).
const LARGEST_READ: usize = 256 * 1024;

/// The idle connections to one upstream and the means to open more.
pub(super) struct H1Pool {
    connector: Connector,
    /// `scheme://authority` of the upstream: what the connector dials.
    destination: Uri,
    /// Most recently used last: reuse takes the warmest connection.
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    connection: Connection,
    since: Instant,
}

/// An upstream connection and what was read from it but not yet handed on.
struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
    read_size: ReadSize,
    /// Where the last head's fields lay: kept, so that parsing a head does not clear room for
    /// the most fields a head may have.
    spans: Vec<FieldSpan>,
    /// When the request being sent must have its response head: kept with the connection, whose
    /// timer is then armed once rather than for every request.
    first_byte: Deadline,
}

impl H1Pool {
    /// A pool for the upstream at `destination`, connecting with `connector`.
    pub(super) fn new(connector: Connector, destination: Uri) -> Arc<Self> {
        Arc::new(H1Pool { connector, destination, idle: Mutex::new(Vec::new()) })
    }

    /// Sends `request` (whose URI may be absolute: only its path and query are sent) on an idle
    /// connection, or on a new one, and reads the response head, unless `first_byte` passes
    /// first. A reused connection that fails while the request is written (the upstream closed it
    /// meanwhile) is replaced by a new one.
    pub(super) fn send(
        self: &Arc<Self>,
        request: Request<Bytes>,
        first_byte: Instant,
    ) -> impl Future<Output = Result<Response<H1Body>, SendError>> + Send + '_ {
        // The request is taken apart before the future is made, so the future keeps only the
        // parts it sends, not the request (an `async fn` would hold it, twice, for its whole
        // life).
        let head = encode_head(&request, &self.destination);
        let bodiless = request.method() == Method::HEAD;
        let body = request.into_body();
        async move {
            let reused = match self.checkout() {
                Some(mut connection) => {
                    connection.first_byte.set(first_byte);
                    match connection.write_request(&head, &body).await {
                        Ok(sent) => Some((connection, sent)),
                        Err(SendError::TimedOut) => return Err(SendError::TimedOut),
                        Err(SendError::Failed(_)) => None,
                    }
                }
                None => None,
            };
            let (connection, sent) = match reused {
                Some(reused) => reused,
                None => {
                    let mut connection = tokio::time::timeout_at(first_byte, self.connect(first_byte))
                        .await
                        .map_err(|_| SendError::TimedOut)??;
                    let sent = connection.write_request(&head, &body).await?;
                    (connection, sent)
                }
            };
            connection.read_response(sent, bodiless, Arc::downgrade(self)).await
        }
    }

    async fn connect(&self, first_byte: Instant) -> Result<Connection, BoxError> {
        match self.connector.clone().call(self.destination.clone()).await? {
            MaybeHttpsStream::Http(stream) => Ok(Connection::new(stream.into_inner(), first_byte)),
            MaybeHttpsStream::Https(_) => Err("a plain-http upstream connection came back as TLS".into()),
        }
    }

    /// The most recently returned idle connection that is still open.
    fn checkout(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(candidate) = idle.pop() {
            if candidate.since.elapsed() < IDLE_TIMEOUT && candidate.connection.is_quiet() {
                return Some(candidate.connection);
            }
        }
        None
    }

    fn put_back(&self, connection: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        // Connections come back at the end and are taken from the end, so the list is oldest
        // first and the expired ones are a prefix: found without visiting every idle connection.
        // Compared with one cutoff, not by the age of each (a subtraction per comparison).
        let expired = match now.checked_sub(IDLE_TIMEOUT) {
            Some(cutoff) => idle.partition_point(|connection| connection.since <= cutoff),
            None => 0,
        };
        idle.drain(..expired);
        if idle.len() < MAX_IDLE {
            idle.push(Idle { connection, since: now });
        }
    }
}

/// The request line and header fields, with `host` and `content-length` added where missing.
/// Header values cannot hold CR or LF, so nothing a field carries can end the head early.
fn encode_head(request: &Request<Bytes>, destination: &Uri) -> Vec<u8> {
    let path = request.uri().path_and_query().map_or("/", |path| path.as_str());
    let headers = request.headers();
    let mut head = Vec::with_capacity(256 + headers.len() * 48);
    head.extend_from_slice(request.method().as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(HOST) {
        if let Some(authority) = destination.authority() {
            push_field(&mut head, b"host", authority.as_str().as_bytes());
        }
    }
    for (name, value) in headers {
        push_field(&mut head, name.as_str().as_bytes(), value.as_bytes());
    }
    let body = request.body();
    let expects_body = !matches!(*request.method(), Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS);
    if !headers.contains_key(CONTENT_LENGTH) && (expects_body || !body.is_empty()) {
        push_content_length(&mut head, body.len() as u64);
    }
    head.extend_from_slice(b"\r\n");
    head
}

fn push_field(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    head.extend_from_slice(name);
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// The upstream broke HTTP/1.1, or closed the connection before its message ended.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ProtocolError(String);

fn protocol_error(message: impl Into<String>) -> BoxError {
    Box::new(ProtocolError(message.into()))
}

/// How a request's write ended.
struct Sent {
    /// The final response head, if it came while the request was written: boxed, as it rarely
    /// does, so that the futures that carry a `Sent` on every request stay small.
    answer: Option<Box<Head>>,
    /// Whether all of the request was written: not if the upstream refused it first.
    whole: bool,
}

/// A response head, parsed.
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    framing: FramingFields,
}

impl Connection {
    fn new(stream: TcpStream, first_byte: Instant) -> Self {
        Connection {
            stream,
            buffer: BytesMut::new(),
            read_size: ReadSize::up_to(LARGEST_READ),
            spans: Vec::new(),
            first_byte: Deadline::new(first_byte),
        }
    }

    /// Whether the idle connection is as it was left: nothing to read, no close seen. A read
    /// that does not fill the buffer clears the socket's read readiness, and the last read of a
    /// response nearly always is one, so anything that has arrived since (the upstream closing
    /// the connection, most likely) shows as readiness, without a system call. A connection
    /// whose last read filled the buffer looks busy and is closed rather than reused.
    fn is_quiet(&self) -> bool {
        self.buffer.is_empty() && self.stream.poll_read_ready(&mut Context::from_waker(Waker::noop())).is_pending()
    }

    /// Writes the request, unless the first-byte deadline passes first, reading what the upstream
    /// answers meanwhile: an upstream may refuse a request by its head (a body too large) and
    /// then read no more of it, or reset the connection once it has answered, and the write stops
    /// at such a refusal (RFC 9112 §9.5 has a client watch for one). Informational heads (the 100
    /// that a forwarded `Expect` asks for) are passed over, and a success goes on with the write.
    async fn write_request(&mut self, head: &[u8], body: &[u8]) -> Result<Sent, SendError> {
        let (mut head, mut body) = (head, body);
        let mut answer = None;
        poll_fn(|cx| {
            let written = match poll_write_head_and_body(&mut self.stream, cx, &mut head, &mut body) {
                Poll::Ready(Ok(())) => return Poll::Ready(Ok(Sent { answer: answer.take(), whole: true })),
                Poll::Ready(Err(error)) => Err(error),
                Poll::Pending => Ok(()),
            };
            // Read only once the write has to wait or failed: a request written at once, as
            // nearly all are, costs no read here.
            if answer.is_none() {
                answer = self.poll_answer(cx)?.map(Box::new);
            }
            if let Some(refusal) = answer.take_if(|answer| !answer.status.is_success()) {
                return Poll::Ready(Ok(Sent { answer: Some(refusal), whole: false }));
            }
            written?;
            self.first_byte.poll_reached(cx).map(|()| Err(SendError::TimedOut))
        })
        .await
    }

    /// Reads what the upstream has sent: its final response head, once all of it has arrived.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Result<Option<Head>, BoxError> {
        loop {
            if let Some(head) = self.parse_final_head()? {
                return Ok(Some(head));
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(0)) | Poll::Pending => return Ok(None),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => return Err(error.into()),
            }
        }
    }

    /// Reads more into the buffer: the number of bytes read, 0 when the upstream closed.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.read_size.poll_fill(&mut self.stream, &mut self.buffer, cx)
    }

    /// As `poll_fill`, for the response head: unless the first-byte deadline passes first.
    async fn fill_head(&mut self) -> Result<usize, SendError> {
        poll_fn(|cx| {
            if let Poll::Ready(read) = self.poll_fill(cx) {
                return Poll::Ready(read.map_err(SendError::from));
            }
            self.first_byte.poll_reached(cx).map(|()| Err(SendError::TimedOut))
        })
        .await
    }

    /// Reads the response, whose head may have come while the request was written.
    async fn read_response(
        mut self,
        sent: Sent,
        bodiless: bool,
        pool: Weak<H1Pool>,
    ) -> Result<Response<H1Body>, SendError> {
        let Sent { answer, whole } = sent;
        let head = match answer {
            Some(head) => *head,
            None => loop {
                if let Some(head) = self.parse_final_head()? {
                    break head;
                }
                if self.fill_head().await? == 0 {
                    return Err(SendError::Failed(protocol_error(if self.buffer.is_empty() {
                        "the upstream closed the connection before sending a response"
                    } else {
                        "the upstream closed the connection in the middle of the response head"
                    })));
                }
            },
        };
        let framing = if bodiless || head.status == StatusCode::NO_CONTENT || head.status == StatusCode::NOT_MODIFIED {
            Framing::Length(0)
        } else {
            head.framing.framing()?
        };
        // The rest of a request cut short would be read by the upstream as the next one's start.
        let reusable = whole && head.framing.keeps_alive(head.version) && !matches!(framing, Framing::UntilClose);
        let mut body = H1Body { connection: Some(self), framing, reusable, pool };
        if matches!(body.framing, Framing::Length(0)) {
            body.finish();
        }
        let mut response = Response::new(body);
        *response.status_mut() = head.status;
        *response.version_mut() = head.version;
        *response.headers_mut() = head.headers;
        Ok(response)
    }

    /// The next final response head, taken from the buffer past any informational ones, or
    /// `None` until all of it was read.
    fn parse_final_head(&mut self) -> Result<Option<Head>, BoxError> {
        while let Some(head) = self.parse_head()? {
            if head.status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(protocol_error("the upstream switched protocols on a request that asked for none"));
            }
            if !head.status.is_informational() {
                return Ok(Some(head));
            }
        }
        Ok(None)
    }

    /// The next response head, taken from the buffer, or `None` until all of it was read.
    fn parse_head(&mut self) -> Result<Option<Head>, BoxError> {
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let base = self.buffer.as_ptr();
        let length = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            &self.buffer,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(length)) if length <= MAX_HEAD_BYTES => length,
            Ok(httparse::Status::Partial) if self.buffer.len() < MAX_HEAD_BYTES => return Ok(None),
            Ok(_) => {
                return Err(protocol_error(format!("the upstream's response head exceeds {MAX_HEAD_BYTES} bytes")))
            }
            Err(error) => return Err(protocol_error(format!("the upstream's response head is invalid: {error}"))),
        };
        FieldSpan::record(&mut self.spans, parsed.headers, base);
        let status = StatusCode::from_u16(parsed.code.unwrap_or_default())
            .map_err(|_| protocol_error("the upstream's response has an invalid status code"))?;
        let version = if parsed.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
        let bytes = self.buffer.split_to(length).freeze();
        let mut headers = HeaderMap::with_capacity(self.spans.len());
        let mut framing = FramingFields::default();
        for span in &self.spans {
            let name = HeaderName::from_bytes(&bytes[span.name.0..span.name.1])
                .map_err(|_| protocol_error("the upstream's response has an invalid header name"))?;
            let value = HeaderValue::from_maybe_shared(bytes.slice(span.value.0..span.value.1))
                .map_err(|_| protocol_error(format!("the upstream's response header {name} has an invalid value")))?;
            framing.note(&name, &value);
            headers.append(name, value);
        }
        Ok(Some(Head { status, version, headers, framing }))
    }
}

/// A chunk-size line, as `httparse::parse_chunk_size` reads it. Nearly every line is bare hex
/// digits and CRLF, read here in a few instructions a byte; any other line (an extension, spaces,
/// a bad byte, a partial line) is httparse's to read.
fn chunk_size_line(line: &[u8]) -> Result<httparse::Status<(usize, u64)>, httparse::InvalidChunkSize> {
    let mut size: u64 = 0;
    // At most 16 digits, as httparse takes (they cannot overflow); a 17th is httparse's to refuse.
    for (at, &byte) in line.iter().enumerate().take(17) {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            b'A'..=b'F' => byte - b'A' + 10,
            b'\r' if at > 0 && line.get(at + 1) == Some(&b'\n') => {
                return Ok(httparse::Status::Complete((at + 2, size)))
            }
            _ => break,
        };
        size = size << 4 | u64::from(digit);
    }
    httparse::parse_chunk_size(line)
}

/// What a response head's fields say about its body's end and its connection (RFC 9112 §6.3,
/// §9.3), noted as the fields are copied into the header map: looking the names up in the map
/// afterwards cost a hash and a probe each on every response.
struct FramingFields {
    /// Whether the last transfer coding named is `chunked`; `None` without a `Transfer-Encoding`.
    chunked: Option<bool>,
    /// The content-length the fields agree on, or why they do not.
    content_length: Result<Option<u64>, String>,
    close: bool,
    keep_alive: bool,
}

impl Default for FramingFields {
    fn default() -> Self {
        FramingFields { chunked: None, content_length: Ok(None), close: false, keep_alive: false }
    }
}

impl FramingFields {
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) {
        if name == TRANSFER_ENCODING {
            // An unreadable value names no coding: the last readable one counts.
            let previous = self.chunked.unwrap_or(false);
            let last = value.to_str().ok().and_then(|codings| codings.split(',').next_back());
            self.chunked = Some(last.map_or(previous, |coding| coding.trim().eq_ignore_ascii_case("chunked")));
        } else if name == CONTENT_LENGTH {
            if let Ok(agreed) = &mut self.content_length {
                if let Err(error) = agree_on_length(agreed, value) {
                    self.content_length = Err(error);
                }
            }
        } else if name == CONNECTION {
            for token in tokens(value.as_bytes()) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }

    /// How the body's end is found. Chunked must be the last coding; any other framing by
    /// transfer coding ends at the close, and a content-length beside one is ignored, as the RFC
    /// says.
    fn framing(&self) -> Result<Framing, BoxError> {
        match (self.chunked, &self.content_length) {
            (Some(true), _) => Ok(Framing::Chunked(Chunk::Size)),
            (Some(false), _) | (None, Ok(None)) => Ok(Framing::UntilClose),
            (None, Ok(Some(length))) => Ok(Framing::Length(*length)),
            (None, Err(error)) => Err(protocol_error(error.clone())),
        }
    }

    /// Whether the upstream lets the connection carry another request.
    fn keeps_alive(&self, version: Version) -> bool {
        if version == Version::HTTP_10 {
            // HTTP/1.0 has no transfer codings: whoever sent one may have framed the body
            // otherwise, so the connection is closed after it (RFC 9112 §6.1).
            self.keep_alive && !self.close && self.chunked.is_none()
        } else {
            !self.close
        }
    }
}

/// Folds one `Content-Length` field into the length agreed so far: every comma-separated part
/// must be digits, and all must be the same number.
fn agree_on_length(agreed: &mut Option<u64>, value: &HeaderValue) -> Result<(), String> {
    for part in value.to_str().unwrap_or("x").split(',') {
        let part = part.trim();
        let parsed = (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| format!("the upstream's content-length {part:?} is invalid"))?;
        if agreed.is_some_and(|seen| seen != parsed) {
            return Err("the upstream's response has conflicting content-lengths".to_owned());
        }
        *agreed = Some(parsed);
    }
    Ok(())
}

enum Framing {
    /// Bytes of the body still to come.
    Length(u64),
    Chunked(Chunk),
    /// No framing: the body ends when the upstream closes the connection.
    UntilClose,
}

/// Where a chunked body's reading stands.
#[derive(Clone, Copy)]
enum Chunk {
    Size,
    /// Bytes of the current chunk still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields (dropped) until an empty line.
    Trailers,
}

/// What the buffer holds toward the body.
enum Step {
    Data(Bytes),
    End,
    NeedMore,
}

/// A response body read from its connection as it is polled; the connection goes back to the
/// pool when the body ends cleanly.
pub(super) struct H1Body {
    /// `None` once the body ended, or failed.
    connection: Option<Connection>,
    framing: Framing,
    reusable: bool,
    pool: Weak<H1Pool>,
}

impl H1Body {
    fn finish(&mut self) {
        let Some(connection) = self.connection.take() else { return };
        // Bytes after the message would be read as the next response's: such a connection is
        // not reused.
        if self.reusable && connection.buffer.is_empty() {
            if let Some(pool) = self.pool.upgrade() {
                pool.put_back(connection);
            }
        }
    }

    /// Takes what the buffer holds toward the body.
    fn step(framing: &mut Framing, buffer: &mut BytesMut) -> Result<Step, BoxError> {
        match framing {
            Framing::Length(0) => Ok(Step::End),
            Framing::Length(_) | Framing::UntilClose if buffer.is_empty() => Ok(Step::NeedMore),
            Framing::Length(remaining) => {
                let take = buffer.len().min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                *remaining -= take as u64;
                Ok(Step::Data(buffer.split_to(take).freeze()))
            }
            Framing::UntilClose => Ok(Step::Data(buffer.split().freeze())),
            Framing::Chunked(chunk) => loop {
                match *chunk {
                    Chunk::Size => match chunk_size_line(buffer) {
                        Ok(httparse::Status::Complete((line, size))) => {
                            buffer.advance(line);
                            *chunk = if size == 0 { Chunk::Trailers } else { Chunk::Data(size) };
                        }
                        Ok(httparse::Status::Partial) if buffer.len() > MAX_CHUNK_LINE => {
                            return Err(protocol_error("the upstream's chunk-size line is too long"))
                        }
                        Ok(httparse::Status::Partial) => return Ok(Step::NeedMore),
                        Err(_) => return Err(protocol_error("the upstream's chunk-size line is invalid")),
                    },
                    Chunk::Data(_) if buffer.is_empty() => return Ok(Step::NeedMore),
                    Chunk::Data(remaining) => {
                        let take = buffer.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
                        let left = remaining - take as u64;
                        *chunk = if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) };
                        if left == 0 && buffer.len() > take + 2 {
                            return Ok(Step::Data(Self::join_following_chunks(chunk, buffer, take)));
                        }
                        return Ok(Step::Data(buffer.split_to(take).freeze()));
                    }
                    Chunk::DataEnd => match buffer.get(..2) {
                        None if buffer.first().is_none_or(|&b| b == b'\r') => return Ok(Step::NeedMore),
                        Some(b"\r\n") => {
                            buffer.advance(2);
                            *chunk = Chunk::Size;
                        }
                        _ => return Err(protocol_error("the upstream's chunk data does not end with CRLF")),
                    },
                    Chunk::Trailers => match memchr::memmem::find(buffer, b"\r\n") {
                        Some(0) => {
                            buffer.advance(2);
                            return Ok(Step::End);
                        }
                        Some(line) => buffer.advance(line + 2),
                        None if buffer.len() > MAX_HEAD_BYTES => {
                            return Err(protocol_error("the upstream's trailer fields are too long"))
                        }
                        None => return Ok(Step::NeedMore),
                    },
                }
            },
        }
    }

    /// With a chunk's data, `decoded` bytes at the buffer's front, and more after it: moves the
    /// data of the chunks that follow, whole or begun, up behind it, over the framing between,
    /// and takes it all as one piece. The chunks one read brought in so go on as one frame, not
    /// one each: a stream's events are often a chunk each, and every frame costs a pass through
    /// the relay's body and translator. Whatever else it meets (the last chunk, a line not all
    /// read, broken framing) ends the piece and is left for the next step to read.
    fn join_following_chunks(chunk: &mut Chunk, buffer: &mut BytesMut, mut decoded: usize) -> Bytes {
        let bytes: &mut [u8] = buffer;
        // Where the framing not yet read starts: at the CRLF after a chunk's data, while `chunk`
        // is `DataEnd`.
        let mut read = decoded;
        while let Chunk::DataEnd = *chunk {
            let Some(after_data) = bytes[read..].strip_prefix(b"\r\n") else { break };
            let Ok(httparse::Status::Complete((line, size @ 1..))) = chunk_size_line(after_data) else {
                break;
            };
            let start = read + 2 + line;
            let take = (bytes.len() - start).min(usize::try_from(size).unwrap_or(usize::MAX));
            bytes.copy_within(start..start + take, decoded);
            decoded += take;
            read = start + take;
            let left = size - take as u64;
            *chunk = if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) };
        }
        let data = buffer.split_to(decoded).freeze();
        buffer.advance(read - decoded);
        data
    }
}

impl HttpBody for H1Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(connection) = this.connection.as_mut() else { return Poll::Ready(None) };
            let step = match Self::step(&mut this.framing, &mut connection.buffer) {
                Ok(step) => step,
                Err(error) => {
                    this.connection = None;
                    return Poll::Ready(Some(Err(error)));
                }
            };
            match step {
                Step::Data(data) => {
                    if matches!(this.framing, Framing::Length(0)) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Step::End => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Step::NeedMore => match ready!(connection.poll_fill(cx)) {
                    Ok(0) if matches!(this.framing, Framing::UntilClose) => {
                        this.connection = None;
                        return Poll::Ready(None);
                    }
                    Ok(0) => {
                        this.connection = None;
                        return Poll::Ready(Some(Err(protocol_error(
                            "the upstream closed the connection before the body was complete",
                        ))));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        this.connection = None;
                        return Poll::Ready(Some(Err(error.into())));
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.connection.is_none() || matches!(self.framing, Framing::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(remaining) => SizeHint::with_exact(remaining),
            _ if self.connection.is_none() => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::config::TlsParams;
    use crate::upstream::proxy::ProxyRules;

    /// What a head with `fields` says about its framing, noted field by field as a parse does.
    fn noted(fields: &[(&str, &str)]) -> FramingFields {
        let mut noted = FramingFields::default();
        for (name, value) in fields {
            noted.note(&name.parse().unwrap(), &value.parse().unwrap());
        }
        noted
    }

    /// Decodes a chunked body fed in the given pieces: the data, and the bytes after the body's
    /// end, read or not (`None` if it did not end).
    fn decode(pieces: &[&[u8]]) -> Result<(Vec<u8>, Option<Vec<u8>>), BoxError> {
        let mut framing = Framing::Chunked(Chunk::Size);
        let (mut buffer, mut data) = (BytesMut::new(), Vec::new());
        for (fed, piece) in pieces.iter().enumerate() {
            buffer.extend_from_slice(piece);
            loop {
                match H1Body::step(&mut framing, &mut buffer)? {
                    Step::Data(bytes) => data.extend_from_slice(&bytes),
                    Step::End => return Ok((data, Some([&buffer[..], &pieces[fed + 1..].concat()].concat()))),
                    Step::NeedMore => break,
                }
            }
        }
        Ok((data, None))
    }

    const CHUNKED: &[u8] =
        b"7;ext=\"x\"\r\ndata: {\r\n1B\r\n\"choices\":[],\"id\":\"abc123\"}\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
    const CHUNKED_DATA: &[u8] = b"data: {\"choices\":[],\"id\":\"abc123\"}";

    #[test]
    fn a_chunked_body_decodes_whole_and_stops_at_its_end() {
        let (data, rest) = decode(&[CHUNKED]).unwrap();
        assert_eq!(data, CHUNKED_DATA);
        assert_eq!(rest.as_deref(), Some(&b"NEXT"[..]), "bytes after the message stay in the buffer");
    }

    proptest! {
        #[test]
        fn a_chunked_body_decodes_the_same_however_its_reads_split_it(cuts in proptest::collection::btree_set(1..CHUNKED.len(), 0..12)) {
            let mut pieces = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([CHUNKED.len()]) {
                pieces.push(&CHUNKED[from..cut]);
                from = cut;
            }
            let (data, rest) = decode(&pieces).unwrap();
            prop_assert_eq!(data, CHUNKED_DATA);
            prop_assert_eq!(rest.as_deref(), Some(&b"NEXT"[..]));
        }
    }

    proptest! {
        #[test]
        fn chunk_size_lines_read_as_httparse_reads_them(
            digits in proptest::collection::vec(proptest::sample::select(b"0123456789abcdefABCDEF".to_vec()), 0..20),
            end in proptest::sample::select(vec!["", "\r", "\r\n", "\rx", "\n", ";ext=1\r\n", " \r\n", "g\r\n"]),
            tail in proptest::collection::vec(any::<u8>(), 0..4),
        ) {
            let line = [&digits[..], end.as_bytes(), &tail].concat();
            prop_assert_eq!(format!("{:?}", chunk_size_line(&line)), format!("{:?}", httparse::parse_chunk_size(&line)));
        }
    }

    #[test]
    fn broken_chunk_framing_is_an_error() {
        for (input, why) in [
            (&b"zz\r\n"[..], "chunk-size line is invalid"),
            (b"3\r\nabcX\r\n", "does not end with CRLF"),
            (b"3\r\nabc\rX", "does not end with CRLF"),
            (b"ffffffffffffffffff\r\n", "chunk-size line is invalid"),
        ] {
            let error = decode(&[input]).unwrap_err().to_string();
            assert!(error.contains(why), "{input:?}: {error}");
        }
        let endless = [b"1;".as_slice(), &[b'a'; MAX_CHUNK_LINE]].concat();
        assert!(decode(&[&endless]).unwrap_err().to_string().contains("too long"));
    }

    /// What successive steps over `buffer` give: each frame's data, then how it stopped.
    fn steps(framing: &mut Framing, buffer: &mut BytesMut) -> (Vec<Vec<u8>>, Result<&'static str, String>) {
        let mut frames = Vec::new();
        loop {
            match H1Body::step(framing, buffer) {
                Ok(Step::Data(data)) => frames.push(data.to_vec()),
                Ok(Step::End) => return (frames, Ok("end")),
                Ok(Step::NeedMore) => return (frames, Ok("need more")),
                Err(error) => return (frames, Err(error.to_string())),
            }
        }
    }

    #[test]
    fn the_chunks_one_read_holds_are_one_frame_and_the_end_comes_after_them() {
        let mut framing = Framing::Chunked(Chunk::Size);
        let mut buffer = BytesMut::from(&b"5\r\nhello\r\n1;x=y\r\n \r\nD\r\nworld, "[..]);
        assert_eq!(steps(&mut framing, &mut buffer), (vec![b"hello world, ".to_vec()], Ok("need more")));
        buffer.extend_from_slice(b"again!\r\n0\r\n\r\nNEXT");
        assert_eq!(steps(&mut framing, &mut buffer), (vec![b"again!".to_vec()], Ok("end")));
        assert_eq!(&buffer[..], b"NEXT", "bytes after the message stay in the buffer");
    }

    #[test]
    fn data_before_broken_framing_is_handed_on_before_the_error() {
        let mut framing = Framing::Chunked(Chunk::Size);
        let mut buffer = BytesMut::from(&b"3\r\nabc\r\n2\r\nde\r\nzz\r\n"[..]);
        let (frames, stopped) = steps(&mut framing, &mut buffer);
        assert_eq!(frames, [b"abcde".to_vec()]);
        assert!(stopped.unwrap_err().contains("chunk-size line is invalid"));
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let framing_of = |fields: &[(&str, &str)]| noted(fields).framing();
        assert!(matches!(framing_of(&[("content-length", "12")]).unwrap(), Framing::Length(12)));
        assert!(matches!(framing_of(&[("content-length", "5, 5")]).unwrap(), Framing::Length(5)));
        assert!(matches!(framing_of(&[]).unwrap(), Framing::UntilClose));
        // Transfer coding wins over a content-length; only a final `chunked` frames the body.
        let chunked = framing_of(&[("transfer-encoding", "gzip, Chunked"), ("content-length", "3")]);
        assert!(matches!(chunked.unwrap(), Framing::Chunked(Chunk::Size)));
        let beside_a_bad_length = framing_of(&[("content-length", "+5"), ("transfer-encoding", "chunked")]);
        assert!(matches!(beside_a_bad_length.unwrap(), Framing::Chunked(Chunk::Size)));
        let last_field_counts = framing_of(&[("transfer-encoding", "chunked"), ("transfer-encoding", "gzip")]);
        assert!(matches!(last_field_counts.unwrap(), Framing::UntilClose));
        assert!(matches!(framing_of(&[("transfer-encoding", "chunked, gzip")]).unwrap(), Framing::UntilClose));
        for bad in [
            &[("content-length", "5, 6")][..],
            &[("content-length", "5"), ("content-length", "6")],
            &[("content-length", "+5")],
            &[("content-length", "")],
        ] {
            assert!(framing_of(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        assert!(noted(&[]).keeps_alive(Version::HTTP_11));
        assert!(!noted(&[("connection", "Upgrade, Close")]).keeps_alive(Version::HTTP_11));
        assert!(!noted(&[]).keeps_alive(Version::HTTP_10));
        assert!(noted(&[("connection", "keep-alive")]).keeps_alive(Version::HTTP_10));
        assert!(!noted(&[("connection", "keep-alive"), ("Connection", "close")]).keeps_alive(Version::HTTP_10));
    }

    #[test]
    fn the_head_gets_host_and_content_length_where_missing() {
        let destination: Uri = "http://upstream.internal:8000/".parse().unwrap();
        let mut post = Request::new(Bytes::from_static(b"{}"));
        *post.method_mut() = Method::POST;
        *post.uri_mut() = "http://upstream.internal:8000/v1/chat/completions?x=1".parse().unwrap();
        post.headers_mut().insert("authorization", HeaderValue::from_static("Bearer k"));
        assert_eq!(
            String::from_utf8(encode_head(&post, &destination)).unwrap(),
            "POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: upstream.internal:8000\r\nauthorization: Bearer k\r\ncontent-length: 2\r\n\r\n"
        );
        let mut get = Request::new(Bytes::new());
        *get.uri_mut() = "/healthz".parse().unwrap();
        get.headers_mut().insert(HOST, HeaderValue::from_static("example"));
        assert_eq!(
            String::from_utf8(encode_head(&get, &destination)).unwrap(),
            "GET /healthz HTTP/1.1\r\nhost: example\r\n\r\n"
        );
    }

    /// An answer after which the upstream reads the next request and says nothing.
    const SILENCE: &[u8] = b"(silence)";

    /// A pool toward a bare socket that answers each request on a connection with the next of
    /// `answers`, written as given (or with [`SILENCE`]); the number of connections it accepted.
    async fn upstream(answers: Vec<&'static [u8]>) -> (Arc<H1Pool>, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answers = answers.clone();
                tokio::spawn(async move {
                    for answer in answers {
                        let mut request = Vec::new();
                        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                            let mut byte = [0u8; 1024];
                            match socket.read(&mut byte).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => request.extend_from_slice(&byte[..n]),
                            }
                        }
                        if answer == SILENCE {
                            std::future::pending::<()>().await;
                        }
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let connector = super::super::client::connector(
            &TlsParams::default(),
            Duration::from_secs(2),
            ProxyRules::resolve(None, &|_| None),
        )
        .unwrap();
        (H1Pool::new(connector, format!("http://{address}/").parse().unwrap()), accepted)
    }

    /// Sends `request` with a first-byte deadline far off.
    async fn send(pool: &Arc<H1Pool>, request: Request<Bytes>) -> Result<Response<H1Body>, BoxError> {
        send_until(pool, request, Instant::now() + Duration::from_secs(300)).await
    }

    async fn send_until(
        pool: &Arc<H1Pool>,
        request: Request<Bytes>,
        first_byte: Instant,
    ) -> Result<Response<H1Body>, BoxError> {
        pool.send(request, first_byte).await.map_err(|error| match error {
            SendError::Failed(error) => error,
            SendError::TimedOut => "timed out".into(),
        })
    }

    fn request(method: Method) -> Request<Bytes> {
        let mut request = Request::new(Bytes::new());
        *request.method_mut() = method;
        *request.uri_mut() = "/x".parse().unwrap();
        request
    }

    async fn get(pool: &Arc<H1Pool>, method: Method) -> Result<(StatusCode, Bytes), BoxError> {
        let response = send(pool, request(method)).await?;
        let status = response.status();
        Ok((status, response.into_body().collect().await?.to_bytes()))
    }

    #[tokio::test]
    async fn a_reused_connection_waits_for_a_head_until_this_request_s_deadline() {
        let (pool, accepted) = upstream(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", SILENCE]).await;
        // The first request armed the connection's timer for five minutes from now: its read of
        // the head had to wait, as the upstream answers only once it has run.
        assert_eq!(get(&pool, Method::GET).await.unwrap().1, Bytes::from_static(b"ok"));
        let first_byte = Instant::now() + Duration::from_millis(200);
        let sent = tokio::time::timeout(Duration::from_secs(10), send_until(&pool, request(Method::GET), first_byte))
            .await
            .expect("the request's own deadline ended the wait, not the one armed before it");
        assert!(matches!(sent, Err(error) if error.to_string() == "timed out"));
        assert!(Instant::now() >= first_byte, "not before its deadline");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "the connection was reused");
    }

    #[tokio::test]
    async fn informational_heads_are_skipped_and_bodiless_answers_keep_the_connection() {
        let (pool, accepted) = upstream(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        ])
        .await;
        assert_eq!(get(&pool, Method::POST).await.unwrap(), (StatusCode::OK, Bytes::from_static(b"ok")));
        assert_eq!(get(&pool, Method::GET).await.unwrap(), (StatusCode::NO_CONTENT, Bytes::new()));
        // A HEAD's answer announces a length it does not send.
        assert_eq!(get(&pool, Method::HEAD).await.unwrap(), (StatusCode::OK, Bytes::new()));
        assert_eq!(get(&pool, Method::GET).await.unwrap(), (StatusCode::OK, Bytes::from_static(b"hi")));
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "one connection carried all four");
    }

    #[tokio::test]
    async fn a_connection_the_answer_leaves_unusable_is_not_reused() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"[..],
            b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
            // HTTP/1.0 has no transfer codings: its framing is suspect even with keep-alive.
            b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            // Bytes after the message: they would be read as the next answer's.
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
        ] {
            let (pool, accepted) = upstream(vec![answer, answer]).await;
            for _ in 0..2 {
                assert_eq!(get(&pool, Method::GET).await.unwrap(), (StatusCode::OK, Bytes::from_static(b"ok")));
            }
            assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2, "{}", String::from_utf8_lossy(answer));
        }
    }

    /// What an upstream that answers a request as soon as it has its head does next.
    #[derive(Clone, Copy, Debug)]
    enum AfterAnswering {
        /// Reads nothing more, and keeps the connection open.
        Stalls,
        /// Closes the connection with the body unread, which resets it.
        Closes,
        /// Reads the body, then answers again, and keeps the connection open.
        ReadsTheBodyAndAnswers(&'static [u8]),
    }

    /// The length of [`large_post`]'s body.
    const LARGE_BODY: usize = 32 << 20;

    /// A pool toward an upstream that answers `answer` to a request's head on every connection
    /// before it reads the body, then does `after`.
    async fn answering_before_the_body(answer: &'static [u8], after: AfterAnswering) -> Arc<H1Pool> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut byte = [0u8; 1];
                        if !matches!(socket.read(&mut byte).await, Ok(1)) {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    socket.write_all(answer).await.unwrap();
                    match after {
                        AfterAnswering::Stalls => std::future::pending::<()>().await,
                        AfterAnswering::Closes => {}
                        AfterAnswering::ReadsTheBodyAndAnswers(answer) => {
                            let mut body = vec![0; LARGE_BODY];
                            socket.read_exact(&mut body).await.unwrap();
                            socket.write_all(answer).await.unwrap();
                            std::future::pending::<()>().await;
                        }
                    }
                });
            }
        });
        let connector = super::super::client::connector(
            &TlsParams::default(),
            Duration::from_secs(2),
            ProxyRules::resolve(None, &|_| None),
        )
        .unwrap();
        H1Pool::new(connector, format!("http://{address}/").parse().unwrap())
    }

    /// A POST whose body is well past what the two sockets' buffers hold, so that its write
    /// cannot end while the upstream reads none of it.
    fn large_post() -> Request<Bytes> {
        let mut request = Request::new(Bytes::from(vec![b'x'; LARGE_BODY]));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = "/x".parse().unwrap();
        request
    }

    #[tokio::test]
    async fn an_answer_that_comes_before_the_whole_request_was_written_is_the_response() {
        const TOO_LARGE: &[u8] = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo big!";
        for after in [AfterAnswering::Stalls, AfterAnswering::Closes] {
            let pool = answering_before_the_body(TOO_LARGE, after).await;
            let first_byte = Instant::now() + Duration::from_secs(60);
            let response = send_until(&pool, large_post(), first_byte).await.unwrap_or_else(|error| {
                panic!("{after:?}: the answer was not read while the request was written: {error}")
            });
            assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{after:?}");
            assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "too big!", "{after:?}");
            assert!(pool.checkout().is_none(), "{after:?}: a connection with the request cut short is not reused");
        }
    }

    #[tokio::test]
    async fn an_informational_or_successful_answer_while_the_request_is_written_lets_it_go_on() {
        for (first, then) in [
            (&b"HTTP/1.1 100 Continue\r\n\r\n"[..], &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"[..]),
            // A head, and a body that needs all of the request.
            (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", b"ok"),
        ] {
            let case = String::from_utf8_lossy(first);
            let pool = answering_before_the_body(first, AfterAnswering::ReadsTheBodyAndAnswers(then)).await;
            let exchange = async {
                let response = send(&pool, large_post()).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK, "{case}");
                response.into_body().collect().await.unwrap().to_bytes()
            };
            let body = tokio::time::timeout(Duration::from_secs(60), exchange).await;
            assert_eq!(body.expect("the upstream had all of the request, and answered"), "ok", "{case}");
            assert!(pool.checkout().is_some(), "{case}: all of the request was written: its connection is reused");
        }
    }

    #[tokio::test]
    async fn a_body_without_framing_ends_at_the_close() {
        // The upstream closes the connection once its answer is written.
        let (pool, accepted) = upstream(vec![b"HTTP/1.1 200 OK\r\n\r\nuntil the end"]).await;
        let response = send(&pool, request(Method::GET)).await.unwrap();
        assert_eq!(response.body().size_hint().exact(), None, "no length to check the body against");
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), Bytes::from_static(b"until the end"));
        assert_eq!(get(&pool, Method::GET).await.unwrap().1, Bytes::from_static(b"until the end"));
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2, "a closed connection is not reused");
    }

    #[tokio::test]
    async fn broken_answers_are_errors_that_say_what_broke() {
        for (answer, why) in [
            (&b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\ncut"[..], "before the body was complete"),
            (b"HTTP/1.1 200 OK\r\ncontent-le", "in the middle of the response head"),
            (b"", "before sending a response"),
            (b"HTTP/1.1 OK\r\n\r\n", "response head is invalid"),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols"),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 1x\r\n\r\n", "content-length \"1x\" is invalid"),
        ] {
            let (pool, _) = upstream(vec![answer]).await;
            // The upstream closes the connection once its answer is written.
            let error = get(&pool, Method::GET).await.unwrap_err().to_string();
            assert!(error.contains(why), "{}: {error}", String::from_utf8_lossy(answer));
        }
        let filler = vec![b'a'; MAX_HEAD_BYTES];
        let huge: &'static [u8] =
            Box::leak([b"HTTP/1.1 200 OK\r\nx-filler: ".as_slice(), &filler, b"\r\n\r\n"].concat().into_boxed_slice());
        let (pool, _) = upstream(vec![huge]).await;
        assert!(get(&pool, Method::GET).await.unwrap_err().to_string().contains("exceeds"));
    }
}
