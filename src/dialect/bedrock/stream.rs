//! ConverseStream (`application/vnd.amazon.eventstream`) -> OpenAI `chat.completion.chunk`
//! events.

use std::collections::HashMap;

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use super::{finish_reason, invalid_response, WireUsage};
use crate::dialect::completion::ChunkWriter;
use crate::dialect::{ResponseContext, StreamTranslator, Usage};
use crate::error::{ErrorCode, RelayError};

/// The event-stream limit on one message (prelude included); more buffered bytes than this
/// without a complete frame is a broken stream, not a slow one.
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024 + 16;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStartEvent {
    content_block_index: u64,
    start: BlockStart,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    tool_use: Option<ToolUseStart>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseStart {
    tool_use_id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDeltaEvent {
    content_block_index: u64,
    delta: BlockDelta,
}

/// A delta union: one member is set; citations and images are not shown.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    text: Option<String>,
    tool_use: Option<ToolUseDelta>,
    reasoning_content: Option<ReasoningDelta>,
}

#[derive(Debug, Deserialize)]
struct ToolUseDelta {
    #[serde(default)]
    input: String,
}

/// `text`, or `signature` / `redactedContent`, which are not shown.
#[derive(Debug, Deserialize)]
struct ReasoningDelta {
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStopEvent {
    content_block_index: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStopEvent {
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MetadataEvent {
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct ExceptionPayload {
    #[serde(alias = "Message")]
    message: Option<String>,
}

/// A client tool call: its OpenAI index and whether any arguments were sent.
#[derive(Debug, Clone, Copy)]
struct ToolBlock {
    index: usize,
    has_arguments: bool,
}

/// The stream state machine.
pub(super) struct ConverseStream {
    buffer: BytesMut,
    decoder: MessageFrameDecoder,
    writer: ChunkWriter,
    client_wants_usage: bool,
    tools: HashMap<u64, ToolBlock>,
    usage: Option<WireUsage>,
    stop_reason: Option<String>,
    stopped: bool,
    done: bool,
}

fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|v| v.as_str())
}

impl ConverseStream {
    pub(super) fn new(ctx: &ResponseContext) -> Self {
        ConverseStream {
            buffer: BytesMut::new(),
            decoder: MessageFrameDecoder::new(),
            writer: ChunkWriter::for_context(ctx),
            client_wants_usage: ctx.client_wants_usage,
            tools: HashMap::new(),
            usage: None,
            stop_reason: None,
            stopped: false,
            done: false,
        }
    }

    fn parse<'a, T: Deserialize<'a>>(event: &str, payload: &'a [u8]) -> Result<T, RelayError> {
        serde_json::from_slice(payload).map_err(|e| invalid_response(&format!("{event} event"), e, payload))
    }

    fn on_message(&mut self, message: &Message, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        if self.done {
            return Ok(());
        }
        match header(message, ":message-type") {
            Some("event") => {}
            Some("exception") => return Err(exception(message)),
            Some("error") => {
                let code = header(message, ":error-code").unwrap_or("error");
                let text = header(message, ":error-message").unwrap_or("");
                return Err(RelayError::new(
                    ErrorCode::UpstreamStreamError,
                    format!("upstream stream error: {code}: {text}"),
                ));
            }
            other => {
                return Err(RelayError::new(
                    ErrorCode::UpstreamInvalidResponse,
                    format!("Bedrock sent an event-stream message of type {other:?}"),
                ))
            }
        }
        let payload = message.payload();
        let event = header(message, ":event-type").unwrap_or("");
        match event {
            "contentBlockStart" => {
                let start: BlockStartEvent = Self::parse(event, payload)?;
                if let Some(tool) = start.start.tool_use {
                    let index = self.writer.tool_start(&tool.tool_use_id, &tool.name, out);
                    self.tools.insert(start.content_block_index, ToolBlock { index, has_arguments: false });
                }
            }
            "contentBlockDelta" => {
                let delta: BlockDeltaEvent = Self::parse(event, payload)?;
                if let Some(text) = &delta.delta.text {
                    self.writer.content(text, out);
                }
                if let Some(text) = delta.delta.reasoning_content.and_then(|r| r.text) {
                    self.writer.reasoning(&text, out);
                }
                if let Some(input) = delta.delta.tool_use.map(|t| t.input) {
                    if let Some(tool) = self.tools.get_mut(&delta.content_block_index) {
                        self.writer.tool_arguments(tool.index, &input, out);
                        tool.has_arguments |= !input.is_empty();
                    }
                }
            }
            "contentBlockStop" => {
                let stop: BlockStopEvent = Self::parse(event, payload)?;
                if let Some(tool) = self.tools.get(&stop.content_block_index).filter(|t| !t.has_arguments) {
                    // A tool without parameters: OpenAI clients expect `{}`, not an empty string.
                    self.writer.tool_arguments(tool.index, "{}", out);
                }
            }
            "messageStop" => {
                let stop: MessageStopEvent = Self::parse(event, payload)?;
                self.stop_reason = stop.stop_reason;
                self.stopped = true;
                if self.usage.is_some() {
                    self.end(out);
                }
            }
            "metadata" => {
                let metadata: MetadataEvent = Self::parse(event, payload)?;
                self.usage = metadata.usage.or(self.usage);
                if self.stopped {
                    self.end(out);
                }
            }
            // `messageStart` carries only the role; later additions are not shown.
            _ => {}
        }
        Ok(())
    }

    /// The finish chunk, the usage chunk if asked for, and `[DONE]`.
    fn end(&mut self, out: &mut Vec<Bytes>) {
        self.done = true;
        let usage = self.usage();
        self.writer.finish(finish_reason(self.stop_reason.as_deref()), usage, self.client_wants_usage, out);
    }
}

/// The relay error for an exception frame.
fn exception(message: &Message) -> RelayError {
    let kind = header(message, ":exception-type").unwrap_or("exception");
    let text = serde_json::from_slice::<ExceptionPayload>(message.payload())
        .ok()
        .and_then(|p| p.message)
        .unwrap_or_else(|| String::from_utf8_lossy(message.payload()).into_owned());
    let error = |code: ErrorCode| RelayError::new(code, format!("upstream stream error: {kind}: {text}"));
    match kind {
        "throttlingException" => error(ErrorCode::UpstreamRateLimited),
        "serviceUnavailableException" => error(ErrorCode::UpstreamOverloaded),
        "validationException" => error(ErrorCode::UpstreamStreamError).with_status(400),
        _ => error(ErrorCode::UpstreamStreamError),
    }
}

impl StreamTranslator for ConverseStream {
    fn feed(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        self.buffer.extend_from_slice(&chunk);
        loop {
            match self.decoder.decode_frame(&mut self.buffer) {
                Ok(DecodedFrame::Complete(message)) => self.on_message(&message, out)?,
                Ok(DecodedFrame::Incomplete) => break,
                Err(e) => {
                    return Err(RelayError::new(
                        ErrorCode::UpstreamInvalidResponse,
                        format!("Bedrock sent a broken event-stream frame: {e}"),
                    ))
                }
            }
        }
        if self.buffer.len() > MAX_FRAME_BYTES {
            return Err(RelayError::new(
                ErrorCode::UpstreamInvalidResponse,
                "Bedrock sent an event-stream frame over 16 MiB",
            ));
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        if self.done {
            return Ok(());
        }
        if self.stopped {
            // `metadata` (usage) is optional after `messageStop`.
            self.end(out);
            return Ok(());
        }
        Err(RelayError::new(ErrorCode::UpstreamStreamTruncated, "Bedrock stream ended before messageStop"))
    }

    fn usage(&self) -> Option<Usage> {
        self.usage.map(WireUsage::to_usage)
    }
}
