//! What the relay's two HTTP/1 ends share: `server/h1.rs` serves clients, `upstream/h1.rs`
//! calls upstreams. Reads that grow while they fill the buffer, the write of a head and a body in
//! one `writev`, where a parsed header field lies in its head, the tokens of a `Connection`
//! field, the numbers a head and chunk framing carry, and a connection's deadline.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Where a header field's name and value lie in a head, as offsets into its buffer: taken while
/// the parse still borrows the buffer, used once the head is split off and frozen, so that the
/// field values are slices of it rather than copies.
pub(crate) struct FieldSpan {
    pub(crate) name: (usize, usize),
    pub(crate) value: (usize, usize),
}

impl FieldSpan {
    /// Replaces `spans` with those of `fields`, parsed from the buffer that starts at `base`.
    /// The list is kept per connection, so it allocates only for the connection's first head.
    pub(crate) fn record(spans: &mut Vec<FieldSpan>, fields: &[httparse::Header<'_>], base: *const u8) {
        let base = base as usize;
        spans.clear();
        spans.extend(fields.iter().map(|field| {
            let name = field.name.as_ptr() as usize - base;
            let value = field.value.as_ptr() as usize - base;
            FieldSpan { name: (name, name + field.name.len()), value: (value, value + field.value.len()) }
        }));
    }
}

/// How much room a connection makes in its buffer before a read: doubled while reads fill it, so
/// that a large body is not read in many small pieces, and back to the first size after one that
/// does not.
pub(crate) struct ReadSize {
    next: usize,
    largest: usize,
}

impl ReadSize {
    const FIRST: usize = 8 * 1024;

    pub(crate) const fn up_to(largest: usize) -> Self {
        ReadSize { next: Self::FIRST, largest }
    }

    /// Reads once from `stream` into `buffer`: the number of bytes read, 0 at the end of the
    /// stream. Into the buffer's spare room as it is, without zeroing it first.
    pub(crate) fn poll_fill(
        &mut self,
        stream: &mut TcpStream,
        buffer: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        buffer.reserve(self.next);
        let room = buffer.capacity() - buffer.len();
        let read = ready!(tokio_util::io::poll_read_buf(Pin::new(stream), cx, buffer))?;
        self.next = if read == room { (self.next * 2).min(self.largest) } else { Self::FIRST };
        Poll::Ready(Ok(read))
    }
}

/// A kept-alive connection's deadline for what it waits on next (a client's request head, an
/// upstream's response head), moved with every message. Its timer is armed once and re-armed
/// only when it fires before the deadline it has by then, so a connection pays for a timer
/// registration per expiry rather than one per message (a fresh `Sleep` per request cost a
/// registration in the runtime's timer wheel and its removal, every time).
pub(crate) struct Deadline {
    at: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    pub(crate) fn new(at: Instant) -> Self {
        Deadline { at, timer: None }
    }

    /// Moves the deadline. A later one leaves the armed timer alone; an earlier one re-arms it
    /// at once, or it would fire too late.
    pub(crate) fn set(&mut self, at: Instant) {
        self.at = at;
        if let Some(timer) = &mut self.timer {
            if at < timer.deadline() {
                timer.as_mut().reset(at);
            }
        }
    }

    /// Ready once the deadline has passed.
    pub(crate) fn poll_reached(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let at = self.at;
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        loop {
            ready!(timer.as_mut().poll(cx));
            if timer.deadline() >= at {
                return Poll::Ready(());
            }
            timer.as_mut().reset(at);
        }
    }
}

/// Writes `head`, then `body`, each `writev` taking what remains of both.
pub(crate) async fn write_head_and_body(stream: &mut TcpStream, head: &[u8], body: &[u8]) -> io::Result<()> {
    let (mut head, mut body) = (head, body);
    poll_fn(|cx| poll_write_head_and_body(stream, cx, &mut head, &mut body)).await
}

/// As [`write_head_and_body`], for a caller that does more while the stream is not ready for
/// the rest: `head` and `body` are moved past what was written.
pub(crate) fn poll_write_head_and_body(
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
    head: &mut &[u8],
    body: &mut &[u8],
) -> Poll<io::Result<()>> {
    while !head.is_empty() || !body.is_empty() {
        let parts = [IoSlice::new(head), IoSlice::new(body)];
        let written = ready!(Pin::new(&mut *stream).poll_write_vectored(cx, &parts))?;
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        let from_head = written.min(head.len());
        *head = &head[from_head..];
        *body = &body[written - from_head..];
    }
    Poll::Ready(Ok(()))
}

/// The comma-separated tokens of a field value, trimmed (`Connection: keep-alive, Upgrade`).
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&byte| byte == b',').map(<[u8]>::trim_ascii)
}

/// `content-length: N` and its line end. `write!` took about 300 instructions a call through
/// `fmt`'s machinery, on every request's head and every response's.
pub(crate) fn push_content_length(out: &mut Vec<u8>, length: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A chunk's size line, `N` in hex and its line end: once for each piece of a streamed body.
pub(crate) fn push_chunk_size(out: &mut Vec<u8>, size: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - size.leading_zeros()).div_ceil(4).max(1);
    out.extend((0..digits).rev().map(|digit| DIGITS[(size >> (4 * digit)) & 0xf]));
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use std::task::Waker;
    use std::time::Duration;

    use super::*;

    fn reached(deadline: &mut Deadline) -> bool {
        deadline.poll_reached(&mut Context::from_waker(Waker::noop())).is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_later_is_reached_at_the_later_time() {
        let start = Instant::now();
        let mut deadline = Deadline::new(start + Duration::from_secs(1));
        assert!(!reached(&mut deadline), "armed, not reached");
        deadline.set(start + Duration::from_secs(3));
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(!reached(&mut deadline), "its timer fired at the old time and was re-armed");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(reached(&mut deadline));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_earlier_is_reached_at_the_earlier_time() {
        let start = Instant::now();
        let mut deadline = Deadline::new(start + Duration::from_secs(300));
        assert!(!reached(&mut deadline));
        deadline.set(start + Duration::from_secs(1));
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(reached(&mut deadline), "not left waiting for the timer armed at 300 s");
    }

    #[test]
    fn lengths_and_chunk_sizes_are_written_as_fmt_writes_them() {
        for n in [0usize, 1, 9, 10, 15, 16, 255, 256, 4095, 65_536, 1 << 40, usize::MAX] {
            let mut out = Vec::new();
            push_content_length(&mut out, n as u64);
            push_chunk_size(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), format!("content-length: {n}\r\n{n:x}\r\n"));
        }
    }

    #[test]
    fn connection_tokens_are_split_at_commas_and_trimmed() {
        let found: Vec<&[u8]> = tokens(b"Keep-Alive ,  Upgrade,close").collect();
        assert_eq!(found, [&b"Keep-Alive"[..], b"Upgrade", b"close"]);
    }
}
