//! The read loop of the stream translators whose upstream frames its stream as text: SSE events
//! ([`SseDecoder`]) or NDJSON lines ([`LineDecoder`]). The decoder keeps a partial frame
//! between reads, so a [`FrameTranslator`] only ever sees whole frames and its output cannot
//! depend on how the upstream's bytes were split into reads.

use bytes::Bytes;

use super::{StreamTranslator, Usage};
use crate::error::{ErrorCode, RelayError};
use crate::sse::{Event, LineDecoder, LineError, SseDecoder, SseError};

/// Cuts an upstream byte stream into frames.
pub trait Decoder: Default + Send {
    type Frame: Send;
    type Error: std::fmt::Display;

    /// Appends the frames `chunk` completes to `out`.
    fn push(&mut self, chunk: Bytes, out: &mut Vec<Self::Frame>) -> Result<(), Self::Error>;

    /// The frame left unterminated when the upstream ended, if any.
    fn finish(&mut self) -> Option<Self::Frame>;
}

impl Decoder for SseDecoder {
    type Frame = Event;
    type Error = SseError;

    fn push(&mut self, chunk: Bytes, out: &mut Vec<Event>) -> Result<(), SseError> {
        SseDecoder::push(self, chunk, out)
    }

    fn finish(&mut self) -> Option<Event> {
        SseDecoder::finish(self)
    }
}

impl Decoder for LineDecoder {
    type Frame = Bytes;
    type Error = LineError;

    fn push(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) -> Result<(), LineError> {
        LineDecoder::push(self, chunk, out)
    }

    fn finish(&mut self) -> Option<Bytes> {
        LineDecoder::finish(self)
    }
}

/// Room for this many frames (and client events) from one read is made when a stream starts: a
/// stream's reads often come in bursts of tens of events, and growing to them one doubling at a
/// time cost four reallocations per vector and stream.
pub const READ_EVENTS: usize = 16;

/// Translates one stream frame by frame.
pub trait FrameTranslator<Frame>: Send {
    /// One whole frame; appends complete client events to `out`. An in-band upstream error is
    /// returned as `Err`.
    fn frame(&mut self, frame: Frame, out: &mut Vec<Bytes>) -> Result<(), RelayError>;

    /// The frame the upstream left unterminated when it ended, if any, before [`Self::end`]. Read
    /// like any other by default: servers that close right after their last line are common.
    fn unterminated(&mut self, frame: Frame, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        self.frame(frame, out)
    }

    /// The upstream ended after its last frame: appends the final events, or says the stream
    /// was truncated.
    fn end(&mut self, out: &mut Vec<Bytes>) -> Result<(), RelayError>;

    /// Usage seen so far.
    fn usage(&self) -> Option<Usage>;
}

/// A [`StreamTranslator`] made of a decoder and a frame translator.
pub struct Framed<D: Decoder, T> {
    decoder: D,
    /// Reused between reads.
    frames: Vec<D::Frame>,
    translator: T,
}

/// A translator of SSE events.
pub type SseStream<T> = Framed<SseDecoder, T>;

/// A translator of NDJSON lines.
pub type LineStream<T> = Framed<LineDecoder, T>;

impl<D: Decoder, T: FrameTranslator<D::Frame>> Framed<D, T> {
    /// A fresh stream for `translator`.
    pub fn new(translator: T) -> Self {
        Framed { decoder: D::default(), frames: Vec::with_capacity(READ_EVENTS), translator }
    }
}

impl<D: Decoder, T: FrameTranslator<D::Frame>> StreamTranslator for Framed<D, T> {
    fn feed(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        let Framed { decoder, frames, translator } = self;
        let result = decoder
            .push(chunk, frames)
            .map_err(|e| RelayError::new(ErrorCode::UpstreamInvalidResponse, e.to_string()))
            .and_then(|()| frames.drain(..).try_for_each(|frame| translator.frame(frame, out)));
        frames.clear();
        result
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        if let Some(frame) = self.decoder.finish() {
            self.translator.unterminated(frame, out)?;
        }
        self.translator.end(out)
    }

    fn usage(&self) -> Option<Usage> {
        self.translator.usage()
    }
}
