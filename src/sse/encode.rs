//! Encoding of the events the relay itself writes.

use bytes::{BufMut, Bytes, BytesMut};

/// The OpenAI end-of-stream sentinel payload.
pub const DONE: &str = "[DONE]";

/// `data: <payload>\n\n`.
pub fn data_event(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 8);
    out.put_slice(b"data: ");
    out.put_slice(payload);
    out.put_slice(b"\n\n");
    out.freeze()
}

/// `data: [DONE]\n\n`.
pub fn done_event() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// Whether an event, as the relay or an upstream writes it, is the `[DONE]` that ends an OpenAI
/// stream (`data:[DONE]` and CRLF line ends included).
pub fn is_done_event(event: &[u8]) -> bool {
    event.trim_ascii_end().strip_suffix(b"[DONE]").is_some_and(|before| before.trim_ascii_end().ends_with(b"data:"))
}

/// An SSE comment line, ignored by clients; used as a keep-alive.
pub fn comment(text: &str) -> Bytes {
    Bytes::from(format!(": {text}\n\n"))
}
