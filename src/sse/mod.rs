//! Server-sent events over `Bytes`: an incremental decoder that yields complete events as
//! zero-copy slices of what was read, and the few encoders the relay needs.
//!
//! Framing follows the WHATWG HTML "server-sent events" section: lines end with CRLF, LF or CR,
//! and a blank line ends an event. Pure code: no I/O, so it can be fuzzed and property-tested.

mod decode;
mod encode;
mod lines;

pub use decode::{Event, SseDecoder, SseError};
pub use encode::{comment, data_event, done_event, is_done_event, DONE};
pub use lines::{LineDecoder, LineError};
