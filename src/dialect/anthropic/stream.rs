//! Anthropic SSE stream -> OpenAI `chat.completion.chunk` events.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;

use super::{arguments_string, finish_reason, invalid_response, ErrorBody, WireBlock, WireUsage};
use crate::dialect::completion::ChunkWriter;
use crate::dialect::framed::FrameTranslator;
use crate::dialect::{OwnedResponseContext, ResponseContext, Usage};
use crate::error::{ErrorCode, RelayError};
use crate::sse;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u64,
        content_block: WireBlock,
    },
    ContentBlockDelta {
        index: u64,
        delta: Delta,
    },
    ContentBlockStop {
        index: u64,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: ErrorBody,
    },
    /// `ping` and event types added later.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct StartMessage {
    id: Option<String>,
    model: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Delta {
    #[serde(rename = "text_delta")]
    Text { text: String },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: String },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: String },
    /// `signature_delta`, `citations_delta`.
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
struct MessageDeltaBody {
    stop_reason: Option<String>,
}

/// What an open content block turns into.
#[derive(Debug, Clone, Copy)]
enum Block {
    Text,
    Thinking,
    /// A client tool call: its OpenAI index and whether any arguments were sent.
    Tool {
        index: usize,
        has_arguments: bool,
    },
    /// Not shown to the client.
    Hidden,
}

/// The stream state machine.
pub(super) struct AnthropicStream {
    ctx: OwnedResponseContext,
    writer: Option<ChunkWriter>,
    blocks: HashMap<u64, Block>,
    usage: WireUsage,
    saw_usage: bool,
    stop_reason: Option<String>,
    done: bool,
}

impl AnthropicStream {
    pub(super) fn new(ctx: &ResponseContext) -> Self {
        AnthropicStream {
            ctx: ctx.owned(),
            writer: None,
            blocks: HashMap::new(),
            usage: WireUsage::default(),
            saw_usage: false,
            stop_reason: None,
            done: false,
        }
    }

    /// The chunk writer, with the context's id and model if `message_start` was missed.
    fn writer(&mut self) -> &mut ChunkWriter {
        let ctx = &self.ctx;
        self.writer.get_or_insert_with(|| ChunkWriter::new(ctx.id.clone(), ctx.upstream_model.clone(), ctx.created))
    }

    fn update_usage(&mut self, usage: Option<WireUsage>) {
        if let Some(usage) = usage {
            self.usage.update(usage);
            self.saw_usage = true;
        }
    }

    fn on_event(&mut self, event: &sse::Event, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        if self.done {
            return Ok(());
        }
        let Some(data) = event.data() else {
            return Ok(());
        };
        let event: WireEvent = serde_json::from_slice(&data).map_err(|e| invalid_response("stream event", e, &data))?;
        match event {
            WireEvent::MessageStart { message } => {
                self.update_usage(message.usage);
                let id = message.id.unwrap_or_else(|| self.ctx.id.clone());
                let model = message.model.unwrap_or_else(|| self.ctx.upstream_model.clone());
                self.writer.get_or_insert_with(|| ChunkWriter::new(id, model, self.ctx.created));
            }
            WireEvent::ContentBlockStart { index, content_block } => {
                let block = match content_block {
                    WireBlock::Text { text } => {
                        self.writer().content(&text, out);
                        Block::Text
                    }
                    WireBlock::Thinking { thinking } => {
                        self.writer().reasoning(&thinking, out);
                        Block::Thinking
                    }
                    WireBlock::ToolUse { id, name, input } => {
                        let writer = self.writer();
                        let tool = writer.tool_start(&id, &name, out);
                        // Anthropic streams the input as deltas after an empty `{}`; a start that
                        // already carries the input is sent as is.
                        let has_arguments = input.as_object().is_some_and(|o| !o.is_empty());
                        if has_arguments {
                            writer.tool_arguments(tool, &arguments_string(&input), out);
                        }
                        Block::Tool { index: tool, has_arguments }
                    }
                    WireBlock::Other => Block::Hidden,
                };
                self.blocks.insert(index, block);
            }
            WireEvent::ContentBlockDelta { index, delta } => {
                let block = self.blocks.get(&index).copied();
                match (block, delta) {
                    (Some(Block::Hidden), _) | (_, Delta::Other) => {}
                    (_, Delta::Text { text }) => self.writer().content(&text, out),
                    (_, Delta::Thinking { thinking }) => self.writer().reasoning(&thinking, out),
                    (Some(Block::Tool { index: tool, has_arguments }), Delta::InputJson { partial_json }) => {
                        self.writer().tool_arguments(tool, &partial_json, out);
                        let has_arguments = has_arguments || !partial_json.is_empty();
                        self.blocks.insert(index, Block::Tool { index: tool, has_arguments });
                    }
                    (_, Delta::InputJson { .. }) => {}
                }
            }
            WireEvent::ContentBlockStop { index } => {
                if let Some(Block::Tool { index: tool, has_arguments: false }) = self.blocks.get(&index).copied() {
                    // A tool without parameters: OpenAI clients expect `{}`, not an empty string.
                    self.writer().tool_arguments(tool, "{}", out);
                }
            }
            WireEvent::MessageDelta { delta, usage } => {
                self.update_usage(usage);
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
            }
            WireEvent::MessageStop => {
                self.done = true;
                let reason = finish_reason(self.stop_reason.as_deref());
                let usage = self.usage();
                let include_usage = self.ctx.client_wants_usage;
                self.writer().finish(reason, usage, include_usage, out);
            }
            WireEvent::Error { error } => return Err(error.into_stream_error()),
            WireEvent::Other => {}
        }
        Ok(())
    }
}

impl FrameTranslator<sse::Event> for AnthropicStream {
    fn frame(&mut self, event: sse::Event, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        self.on_event(&event, out)
    }

    fn end(&mut self, _out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        if self.done {
            return Ok(());
        }
        Err(RelayError::new(ErrorCode::UpstreamStreamTruncated, "Anthropic stream ended before message_stop"))
    }

    fn usage(&self) -> Option<Usage> {
        self.saw_usage.then(|| self.usage.to_usage())
    }
}
