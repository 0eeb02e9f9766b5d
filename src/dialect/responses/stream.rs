//! Responses stream events -> `chat.completion.chunk` events.
//!
//! Responses streams are typed events (`event: response.output_text.delta` plus a JSON payload
//! carrying the same `type`) and end with `response.completed`, `response.incomplete` or
//! `response.failed` instead of `[DONE]`.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::super::framed::FrameTranslator;
use super::super::{OwnedResponseContext, ResponseContext, Usage};
use super::response::{chat_id, failure, finish_reason, OutputItem, ResponseObject};
use crate::error::{ErrorCode, RelayError};
use crate::sse;

/// The fields of any stream event the translation reads.
#[derive(Debug, Deserialize)]
struct StreamEvent {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    delta: Option<Value>,
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(default)]
    item_id: Option<String>,
    #[serde(default)]
    summary_index: Option<u64>,
    #[serde(default)]
    content_index: Option<u64>,
    #[serde(default)]
    item: Option<OutputItem>,
    #[serde(default)]
    response: Option<ResponseObject>,
    /// `error` events carry `code`/`message` at the top level, or (newer) an `error` object.
    #[serde(default)]
    error: Option<Value>,
}

impl StreamEvent {
    fn delta_text(&self) -> Option<&str> {
        self.delta.as_ref().and_then(Value::as_str).filter(|d| !d.is_empty())
    }
}

/// A function call announced by the upstream, in client index order.
#[derive(Debug)]
struct ToolCall {
    output_index: Option<u64>,
    item_id: Option<String>,
    /// Whether any argument text reached the client.
    arguments_sent: bool,
}

/// Translates one Responses stream.
pub(super) struct ResponsesStream {
    ctx: OwnedResponseContext,
    /// Chunk id and model, fixed by the first chunk sent so every chunk carries the same.
    id: String,
    model: String,
    identity_fixed: bool,
    role_sent: bool,
    tool_calls: Vec<ToolCall>,
    /// The reasoning part (item id, part index) last streamed, to separate parts with a blank line.
    reasoning_part: Option<(String, u64)>,
    usage: Option<Usage>,
    done: bool,
}

impl ResponsesStream {
    pub(super) fn new(ctx: &ResponseContext) -> Self {
        let ctx = ctx.owned();
        ResponsesStream {
            id: ctx.id.clone(),
            model: ctx.upstream_model.clone(),
            ctx,
            identity_fixed: false,
            role_sent: false,
            tool_calls: Vec::new(),
            reasoning_part: None,
            usage: None,
            done: false,
        }
    }

    fn adopt_identity(&mut self, response: &ResponseObject) {
        if self.identity_fixed {
            return;
        }
        self.id = chat_id(response.id.as_deref(), || self.ctx.id.clone());
        if let Some(model) = response.model.as_deref().filter(|m| !m.is_empty()) {
            self.model = model.to_owned();
        }
    }

    fn chunk(&mut self, choices: Value, usage: Option<Value>) -> Bytes {
        self.identity_fixed = true;
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.ctx.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        sse::data_event(chunk.to_string().as_bytes())
    }

    /// One choice delta; the first one sent also carries the assistant role.
    fn delta(&mut self, fields: Map<String, Value>, finish_reason: Option<&str>) -> Bytes {
        let mut delta = Map::new();
        if !self.role_sent {
            self.role_sent = true;
            delta.insert("role".into(), Value::String("assistant".into()));
        }
        delta.extend(fields);
        let choice = json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }]);
        self.chunk(choice, None)
    }

    fn field(&mut self, key: &str, value: impl Into<Value>) -> Bytes {
        let mut fields = Map::new();
        fields.insert(key.into(), value.into());
        self.delta(fields, None)
    }

    fn tool_call_delta(&mut self, index: usize, call: Value) -> Bytes {
        let mut call = call;
        call["index"] = Value::from(index);
        self.field("tool_calls", json!([call]))
    }

    fn find_call(&self, output_index: Option<u64>, item_id: Option<&str>) -> Option<usize> {
        self.tool_calls.iter().position(|call| {
            (output_index.is_some() && call.output_index == output_index)
                || (item_id.is_some() && call.item_id.as_deref() == item_id)
        })
    }

    fn on_event(&mut self, event: sse::Event, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        if self.done {
            return Ok(());
        }
        let Some(data) = event.data() else {
            return Ok(());
        };
        if data.trim_ascii() == sse::DONE.as_bytes() {
            // Not part of the Responses protocol; the terminal `response.*` event decides.
            return Ok(());
        }
        let parsed: StreamEvent = serde_json::from_slice(&data).map_err(|e| {
            RelayError::new(ErrorCode::UpstreamInvalidResponse, format!("unreadable Responses stream event: {e}"))
        })?;
        let kind = parsed.kind.clone().or_else(|| event.event_type().map(str::to_owned)).unwrap_or_default();
        match kind.as_str() {
            "response.created" | "response.in_progress" | "response.queued" => {
                if let Some(response) = &parsed.response {
                    self.adopt_identity(response);
                }
            }
            "response.output_text.delta" => {
                if let Some(text) = parsed.delta_text() {
                    let chunk = self.field("content", text);
                    out.push(chunk);
                }
            }
            "response.refusal.delta" => {
                if let Some(text) = parsed.delta_text() {
                    let chunk = self.field("refusal", text);
                    out.push(chunk);
                }
            }
            "response.reasoning_summary_text.delta" => self.reasoning(&parsed, parsed.summary_index, out),
            "response.reasoning_text.delta" => self.reasoning(&parsed, parsed.content_index, out),
            "response.output_item.added" => self.call_added(parsed, out),
            "response.function_call_arguments.delta" => {
                let Some(text) = parsed.delta_text() else {
                    return Ok(());
                };
                if let Some(index) = self.find_call(parsed.output_index, parsed.item_id.as_deref()) {
                    self.tool_calls[index].arguments_sent = true;
                    let chunk = self.tool_call_delta(index, json!({ "function": { "arguments": text } }));
                    out.push(chunk);
                }
            }
            "response.output_item.done" => self.call_done(parsed, out),
            "response.completed" | "response.incomplete" => self.complete(parsed, &kind, out),
            "response.failed" => {
                self.done = true;
                let error = parsed.response.as_ref().and_then(|r| r.error.as_ref());
                return Err(failure(error, ErrorCode::UpstreamStreamError));
            }
            "error" => {
                self.done = true;
                let error: Value =
                    parsed.error.clone().unwrap_or_else(|| serde_json::from_slice(&data).unwrap_or_default());
                return Err(failure(Some(&error), ErrorCode::UpstreamStreamError));
            }
            _ => {}
        }
        Ok(())
    }

    fn reasoning(&mut self, event: &StreamEvent, part_index: Option<u64>, out: &mut Vec<Bytes>) {
        let Some(text) = event.delta_text() else {
            return;
        };
        let part = (event.item_id.clone().unwrap_or_default(), part_index.unwrap_or(0));
        let text = match &self.reasoning_part {
            Some(previous) if *previous != part => format!("\n\n{text}"),
            _ => text.to_owned(),
        };
        self.reasoning_part = Some(part);
        let chunk = self.field("reasoning_content", text);
        out.push(chunk);
    }

    /// A new function call: its index, id, type and name, as OpenAI sends them.
    fn call_added(&mut self, event: StreamEvent, out: &mut Vec<Bytes>) {
        let Some(item) = &event.item else { return };
        let OutputItem::FunctionCall { id, name, arguments, .. } = item else {
            return;
        };
        let index = self.tool_calls.len();
        self.tool_calls.push(ToolCall {
            output_index: event.output_index,
            item_id: id.clone(),
            arguments_sent: !arguments.is_empty(),
        });
        let call = json!({
            "id": item.call_id().unwrap_or_default(),
            "type": "function",
            "function": { "name": name, "arguments": arguments },
        });
        let chunk = self.tool_call_delta(index, call);
        out.push(chunk);
    }

    /// A finished function call: sends its arguments if none were streamed (or the whole call
    /// if it was never announced).
    fn call_done(&mut self, event: StreamEvent, out: &mut Vec<Bytes>) {
        let Some(item) = &event.item else { return };
        let OutputItem::FunctionCall { id, name, arguments, .. } = item else {
            return;
        };
        match self.find_call(event.output_index, id.as_deref()) {
            Some(index) if !self.tool_calls[index].arguments_sent && !arguments.is_empty() => {
                self.tool_calls[index].arguments_sent = true;
                let chunk = self.tool_call_delta(index, json!({ "function": { "arguments": arguments } }));
                out.push(chunk);
            }
            Some(_) => {}
            None => {
                let index = self.tool_calls.len();
                self.tool_calls.push(ToolCall {
                    output_index: event.output_index,
                    item_id: id.clone(),
                    arguments_sent: true,
                });
                let call = json!({
                    "id": item.call_id().unwrap_or_default(),
                    "type": "function",
                    "function": { "name": name, "arguments": arguments },
                });
                let chunk = self.tool_call_delta(index, call);
                out.push(chunk);
            }
        }
    }

    /// `response.completed` / `response.incomplete`: the finish chunk, the usage chunk if the
    /// client asked for it, then `[DONE]`.
    fn complete(&mut self, event: StreamEvent, kind: &str, out: &mut Vec<Bytes>) {
        self.done = true;
        let response = event.response.unwrap_or_default();
        self.adopt_identity(&response);
        self.usage = response.usage.as_ref().map(Usage::from);
        let status =
            response.status.as_deref().or(Some(if kind == "response.incomplete" { "incomplete" } else { "completed" }));
        let finish = finish_reason(status, response.incomplete_details.as_ref(), !self.tool_calls.is_empty());
        let chunk = self.delta(Map::new(), Some(finish));
        out.push(chunk);
        if let (true, Some(usage)) = (self.ctx.client_wants_usage, self.usage) {
            let chunk = self.chunk(json!([]), Some(usage.to_json()));
            out.push(chunk);
        }
        out.push(sse::done_event());
    }
}

impl FrameTranslator<sse::Event> for ResponsesStream {
    fn frame(&mut self, event: sse::Event, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        self.on_event(event, out)
    }

    fn end(&mut self, _out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        if self.done {
            return Ok(());
        }
        Err(RelayError::new(
            ErrorCode::UpstreamStreamTruncated,
            "upstream Responses stream ended before response.completed",
        ))
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}
