//! Incremental SSE decoding.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

/// One complete event, holding the exact bytes it arrived as (including the blank line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    raw: Bytes,
    /// What the decoder saw of the event's lines while it looked for the event's end.
    shape: Shape,
}

/// The line structure of an event, as far as reading its data needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Shape {
    /// No line ended yet.
    #[default]
    Empty,
    /// One line, from the event's first byte to this offset, then only line breaks: nearly
    /// every event an LLM streams.
    OneLine(usize),
    /// Anything else, or not known (an event cut short by the end of the stream).
    Other,
}

impl Shape {
    /// The shape once a non-blank line from `start` to `eol` has ended.
    fn with_line(self, start: usize, eol: usize) -> Shape {
        match self {
            Shape::Empty if start == 0 => Shape::OneLine(eol),
            _ => Shape::Other,
        }
    }
}

impl Event {
    /// The event exactly as received, ready to forward unchanged.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Consumes the event, returning its bytes.
    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        // Split with memchr: a byte-at-a-time split was most of the relay's work per streamed
        // chunk.
        let mut rest = &self.raw[..];
        let lines = std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let end = memchr::memchr2(b'\n', b'\r', rest).unwrap_or(rest.len());
            let line = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or_default();
            Some(line)
        });
        lines.filter(|line| !line.is_empty() && line[0] != b':').map(|line| match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                let value = value.strip_prefix(b" ").unwrap_or(value);
                (&line[..colon], value)
            }
            None => (line, &b""[..]),
        })
    }

    /// The `event:` field, if any.
    pub fn event_type(&self) -> Option<&str> {
        self.fields()
            .filter(|(name, _)| *name == b"event")
            .last()
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// The `data:` lines joined by `\n`, or `None` for an event without data (a comment or a
    /// bare `event:` line).
    pub fn data(&self) -> Option<Cow<'_, [u8]>> {
        match self.single_data_line() {
            Some(value) => Some(Cow::Borrowed(value)),
            None => self.data_from_fields(),
        }
    }

    /// The value of an event that is one `data:` line and the line breaks that end it: nearly
    /// every event an LLM streams. The decoder found where that line ends while it looked for the
    /// event's end, so reading it takes no search; walking the fields takes one per line and an
    /// iterator chain per field, on every chunk of every stream.
    fn single_data_line(&self) -> Option<&[u8]> {
        let Shape::OneLine(eol) = self.shape else {
            return None;
        };
        let value = self.raw[..eol].strip_prefix(b"data:")?;
        Some(value.strip_prefix(b" ").unwrap_or(value))
    }

    fn data_from_fields(&self) -> Option<Cow<'_, [u8]>> {
        let mut lines = self.fields().filter(|(name, _)| *name == b"data").map(|(_, v)| v);
        let first = lines.next()?;
        match lines.next() {
            None => Some(Cow::Borrowed(first)),
            Some(second) => {
                let mut joined = first.to_vec();
                joined.push(b'\n');
                joined.extend_from_slice(second);
                for line in lines {
                    joined.push(b'\n');
                    joined.extend_from_slice(line);
                }
                Some(Cow::Owned(joined))
            }
        }
    }
}

/// A stream that violates the framing limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an SSE event exceeded {0} bytes without ending")]
    EventTooLarge(usize),
}

/// Splits a byte stream into complete events, however the bytes are split into reads.
#[derive(Debug)]
pub struct SseDecoder {
    pending: BytesMut,
    /// Offset in `pending` of the start of the line not yet scanned.
    line_start: usize,
    /// Whether the current event has a non-blank line yet.
    in_event: bool,
    /// The current event's lines so far.
    shape: Shape,
    max_event_bytes: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        SseDecoder::new(16 * 1024 * 1024)
    }
}

impl SseDecoder {
    /// A decoder that refuses events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        SseDecoder { pending: BytesMut::new(), line_start: 0, in_event: false, shape: Shape::Empty, max_event_bytes }
    }

    /// Feeds one read; appends every event it completes to `out`.
    pub fn push(&mut self, chunk: Bytes, out: &mut Vec<Event>) -> Result<(), SseError> {
        if self.pending.is_empty() {
            // Fast path: slice complete events straight out of the read, copying only a tail.
            let mut chunk = chunk;
            let mut scan_from = 0;
            loop {
                match self.scan(&chunk, scan_from) {
                    Scan::EventEnd(end, shape) => {
                        out.push(Event { raw: chunk.split_to(end), shape });
                        scan_from = 0;
                    }
                    Scan::NeedMore(line_start) => {
                        self.line_start = line_start;
                        if !chunk.is_empty() {
                            self.pending.extend_from_slice(&chunk);
                        }
                        break;
                    }
                }
            }
        } else {
            self.pending.extend_from_slice(&chunk);
            loop {
                let pending = std::mem::take(&mut self.pending);
                let pending = pending.freeze();
                match self.scan(&pending, self.line_start) {
                    Scan::EventEnd(end, shape) => {
                        let mut rest = pending;
                        out.push(Event { raw: rest.split_to(end), shape });
                        self.pending = BytesMut::from(&rest[..]);
                        self.line_start = 0;
                    }
                    Scan::NeedMore(line_start) => {
                        self.line_start = line_start;
                        self.pending = BytesMut::from(&pending[..]);
                        break;
                    }
                }
            }
        }
        if self.pending.len() > self.max_event_bytes {
            return Err(SseError::EventTooLarge(self.max_event_bytes));
        }
        Ok(())
    }

    /// Ends the stream: returns an event left without its closing blank line, if it carried any
    /// field (servers that close right after the last `data:` line are common).
    pub fn finish(&mut self) -> Option<Event> {
        let rest = std::mem::take(&mut self.pending);
        self.line_start = 0;
        self.in_event = false;
        self.shape = Shape::Empty;
        let rest = rest.freeze();
        let trimmed = rest.iter().all(|b| b.is_ascii_whitespace());
        (!trimmed).then_some(Event { raw: rest, shape: Shape::Other })
    }

    /// Scans lines from `from`; returns the end offset and shape of the first complete event, or
    /// where the next scan should resume. Offsets count from the start of `buf`, which is always
    /// the start of the event being scanned.
    fn scan(&mut self, buf: &[u8], from: usize) -> Scan {
        let mut line_start = from;
        loop {
            // Each read usually holds one event, so its blank line and the empty rest after it
            // are told apart by one byte, not by a search each.
            let rel = match buf.get(line_start) {
                None => return Scan::NeedMore(line_start),
                Some(b'\n' | b'\r') => 0,
                Some(_) => match memchr::memchr2(b'\n', b'\r', &buf[line_start..]) {
                    Some(rel) => rel,
                    None => {
                        self.in_event = true;
                        return Scan::NeedMore(line_start);
                    }
                },
            };
            let eol = line_start + rel;
            let next = if buf[eol] == b'\r' {
                match buf.get(eol + 1) {
                    Some(b'\n') => eol + 2,
                    Some(_) => eol + 1,
                    // A CR at the end of a read may be the first half of CRLF: wait for more.
                    None => return Scan::NeedMore(line_start),
                }
            } else {
                eol + 1
            };
            let blank = eol == line_start;
            line_start = next;
            if blank {
                if self.in_event {
                    self.in_event = false;
                    return Scan::EventEnd(next, std::mem::take(&mut self.shape));
                }
                // Blank lines between events carry nothing; keep them with the next event.
                continue;
            }
            self.in_event = true;
            self.shape = self.shape.with_line(eol - rel, eol);
        }
    }
}

enum Scan {
    EventEnd(usize, Shape),
    NeedMore(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(parts: &[&[u8]]) -> Vec<Event> {
        let mut decoder = SseDecoder::default();
        let mut out = Vec::new();
        for part in parts {
            decoder.push(Bytes::copy_from_slice(part), &mut out).unwrap();
        }
        out.extend(decoder.finish());
        out
    }

    #[test]
    fn splits_lf_and_crlf_events() {
        let events = decode_all(&[b"data: a\n\ndata: b\r\n\r\nevent: x\ndata: c\n\n"]);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].data().unwrap().as_ref(), b"a");
        assert_eq!(events[1].data().unwrap().as_ref(), b"b");
        assert_eq!(events[2].event_type(), Some("x"));
        assert_eq!(events[2].data().unwrap().as_ref(), b"c");
    }

    #[test]
    fn joins_multi_line_data_and_ignores_comments() {
        let events = decode_all(&[b": ping\n\ndata: one\ndata: two\n\n"]);
        assert_eq!(events.len(), 2);
        assert!(events[0].data().is_none());
        assert_eq!(events[1].data().unwrap().as_ref(), b"one\ntwo");
    }

    #[test]
    fn fields_end_at_cr_lf_or_crlf_and_a_bare_name_has_an_empty_value() {
        let events = decode_all(&[b"data: a\rdata:b\r\n: note\ndata\nevent:x\n\n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data().unwrap().as_ref(), b"a\nb\n");
        assert_eq!(events[0].event_type(), Some("x"));
    }

    #[test]
    fn keeps_raw_bytes_for_pass_through() {
        let input = b"data: {\"a\":1}\n\ndata: [DONE]\n\n";
        let events = decode_all(&[input]);
        let joined: Vec<u8> = events.iter().flat_map(|e| e.raw().to_vec()).collect();
        assert_eq!(joined, input);
    }

    #[test]
    fn returns_an_unterminated_last_event_on_finish() {
        let events = decode_all(&[b"data: a\n\ndata: tail"]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].data().unwrap().as_ref(), b"tail");
    }

    #[test]
    fn refuses_an_endless_event() {
        let mut decoder = SseDecoder::new(8);
        let err = decoder.push(Bytes::from_static(b"data: 0123456789"), &mut Vec::new());
        assert_eq!(err, Err(SseError::EventTooLarge(8)));
    }

    proptest! {
        #[test]
        fn the_single_line_shortcut_reads_what_the_field_walk_reads(
            lines in proptest::collection::vec(
                proptest::sample::select(vec!["data: x", "data:y", "data", "data: ", ": c", "event: e", "id: 1", ""]),
                1..5,
            ),
            breaks in proptest::collection::vec(proptest::sample::select(vec!["\n", "\r", "\r\n"]), 5),
        ) {
            let mut raw = String::new();
            for (line, end) in lines.iter().zip(breaks.iter().cycle()) {
                raw.push_str(line);
                raw.push_str(end);
            }
            for event in decode_all(&[raw.as_bytes()]) {
                prop_assert_eq!(event.data(), event.data_from_fields());
            }
        }

        #[test]
        fn any_split_yields_the_same_events(cuts in proptest::collection::vec(0usize..120, 0..12)) {
            let input: &[u8] = b"event: a\r\ndata: 1\r\n\r\ndata: 2\n\n: c\n\ndata: x\ndata: y\r\r\ndata: [DONE]\n\n";
            let whole = decode_all(&[input]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % input.len()).collect();
            cuts.sort_unstable();
            let mut parts: Vec<&[u8]> = Vec::new();
            let mut last = 0;
            for cut in cuts {
                parts.push(&input[last..cut]);
                last = cut;
            }
            parts.push(&input[last..]);
            let split = decode_all(&parts);
            for event in &split {
                prop_assert_eq!(event.data(), event.data_from_fields());
            }
            let data = |events: &[Event]| events.iter().map(|e| e.data().map(|d| d.to_vec())).collect::<Vec<_>>();
            prop_assert_eq!(data(&whole), data(&split));
            let raw = |events: &[Event]| events.iter().flat_map(|e| e.raw().to_vec()).collect::<Vec<u8>>();
            prop_assert_eq!(raw(&whole), raw(&split));
        }
    }
}
