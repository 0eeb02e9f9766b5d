//! Incremental line decoding for newline-delimited streams (NDJSON, as Ollama streams).
//!
//! Lines end with LF; a CR before the LF is dropped, so CRLF streams decode the same. Blank
//! lines carry nothing and are skipped. Complete lines are zero-copy slices of the reads when a
//! read holds them whole; only a line split across reads is copied.

use bytes::{Bytes, BytesMut};

/// A stream that violates the framing limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("a line exceeded {0} bytes without ending")]
    LineTooLong(usize),
}

/// Splits a byte stream into complete lines, however the bytes are split into reads.
#[derive(Debug)]
pub struct LineDecoder {
    /// The start of a line whose end has not arrived yet.
    pending: BytesMut,
    max_line_bytes: usize,
}

impl Default for LineDecoder {
    fn default() -> Self {
        LineDecoder::new(16 * 1024 * 1024)
    }
}

impl LineDecoder {
    /// A decoder that refuses lines longer than `max_line_bytes`.
    pub fn new(max_line_bytes: usize) -> Self {
        LineDecoder { pending: BytesMut::new(), max_line_bytes }
    }

    /// Feeds one read; appends every non-blank line it completes (without its line ending).
    pub fn push(&mut self, mut chunk: Bytes, out: &mut Vec<Bytes>) -> Result<(), LineError> {
        if !self.pending.is_empty() {
            let Some(newline) = memchr::memchr(b'\n', &chunk) else {
                self.pending.extend_from_slice(&chunk);
                return self.check_length();
            };
            self.pending.extend_from_slice(&chunk[..newline]);
            let line = std::mem::take(&mut self.pending).freeze();
            emit(line, out);
            let _ = chunk.split_to(newline + 1);
        }
        while let Some(newline) = memchr::memchr(b'\n', &chunk) {
            let line = chunk.split_to(newline);
            let _ = chunk.split_to(1);
            emit(line, out);
        }
        if !chunk.is_empty() {
            self.pending.extend_from_slice(&chunk);
        }
        self.check_length()
    }

    /// Ends the stream: returns a last line left without its line ending, if it is not blank.
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = std::mem::take(&mut self.pending).freeze();
        let line = trim_cr(rest);
        (!is_blank(&line)).then_some(line)
    }

    fn check_length(&self) -> Result<(), LineError> {
        if self.pending.len() > self.max_line_bytes {
            return Err(LineError::LineTooLong(self.max_line_bytes));
        }
        Ok(())
    }
}

fn emit(line: Bytes, out: &mut Vec<Bytes>) {
    let line = trim_cr(line);
    if !is_blank(&line) {
        out.push(line);
    }
}

fn trim_cr(mut line: Bytes) -> Bytes {
    if line.last() == Some(&b'\r') {
        line.truncate(line.len() - 1);
    }
    line
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(parts: &[&[u8]]) -> Vec<Bytes> {
        let mut decoder = LineDecoder::default();
        let mut out = Vec::new();
        for part in parts {
            decoder.push(Bytes::copy_from_slice(part), &mut out).unwrap();
        }
        out.extend(decoder.finish());
        out
    }

    #[test]
    fn splits_lf_and_crlf_lines_and_skips_blank_ones() {
        let lines = decode_all(&[b"{\"a\":1}\n\r\n{\"b\":2}\r\n\n  \n{\"c\":3}"]);
        assert_eq!(lines, vec![Bytes::from("{\"a\":1}"), Bytes::from("{\"b\":2}"), Bytes::from("{\"c\":3}")]);
    }

    #[test]
    fn joins_a_line_split_across_reads_including_a_split_crlf() {
        let lines = decode_all(&[b"{\"a\"", b":1}\r", b"\n{\"b\":", b"2}\n"]);
        assert_eq!(lines, vec![Bytes::from("{\"a\":1}"), Bytes::from("{\"b\":2}")]);
    }

    #[test]
    fn refuses_an_endless_line() {
        let mut decoder = LineDecoder::new(4);
        assert_eq!(decoder.push(Bytes::from_static(b"0123456789"), &mut Vec::new()), Err(LineError::LineTooLong(4)));
    }

    proptest! {
        #[test]
        fn any_split_yields_the_same_lines(cuts in proptest::collection::vec(0usize..80, 0..12)) {
            let input: &[u8] = b"{\"x\":1}\n{\"y\":\"a\\nb\"}\r\n\n{\"z\":[1,2]}\r\n{\"done\":true}";
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
            prop_assert_eq!(whole.len(), 4);
            prop_assert_eq!(whole, decode_all(&parts));
        }
    }
}
