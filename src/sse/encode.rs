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

/// An SSE comment line, ignored by clients; used as a keep-alive.
pub fn comment(text: &str) -> Bytes {
    Bytes::from(format!(": {text}\n\n"))
}
