//! `openai-completions`: the canonical pass-through dialect.
//!
//! The request reaches the upstream as the client sent it, with only `model` changed (plus the
//! `compat` rewrites an upstream opts into, and `stream_options.include_usage` so streamed usage
//! can be counted). Responses are forwarded without re-serialisation: stream events are sliced
//! from the upstream's reads and only the usage chunk is ever parsed.

use bytes::Bytes;
use std::sync::LazyLock;

use memchr::memmem::{self, Finder};
use serde::Deserialize;
use serde_json::Value;

use super::framed::{FrameTranslator, SseStream};
use super::json::{element_members, top_level_member, top_level_members, trailing_member, Layout, RawObject};
use super::{ChatRequest, Dialect, ResponseContext, ResponseUsage, StreamTranslator, Translated, UpstreamCall, Usage};
use crate::error::{ErrorCode, RelayError};
use crate::sse;

/// Which name an upstream wants for the completion-length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTokensField {
    /// Legacy `max_tokens` (most OpenAI-compatible servers).
    MaxTokens,
    /// `max_completion_tokens` (OpenAI's current name).
    MaxCompletionTokens,
}

/// Body rewrites for OpenAI-compatible upstreams that reject parts of the modern API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compat {
    /// Role that `developer` messages are rewritten to (usually `system`).
    pub developer_role: Option<String>,
    /// Rename the completion-length limit to the field this upstream accepts.
    pub max_tokens_field: Option<MaxTokensField>,
    /// Top-level parameters removed before sending (e.g. `store`, `stream_options`).
    pub drop_params: Vec<String>,
    /// Remove `strict` from tool function definitions.
    pub strip_tool_strict: bool,
    /// Ask for `stream_options.include_usage` on streams so usage can be counted; the usage chunk
    /// is removed from what the client sees when the client did not ask for it.
    pub request_stream_usage: bool,
}

/// The pass-through dialect.
#[derive(Debug, Clone)]
pub struct OpenAiChat {
    compat: Compat,
}

impl OpenAiChat {
    /// A pass-through dialect applying `compat` rewrites.
    pub fn new(compat: Compat) -> Self {
        OpenAiChat { compat }
    }

    fn injects_usage(&self, request: &ChatRequest) -> bool {
        request.stream
            && !request.client_wants_usage
            && self.compat.request_stream_usage
            && !self.compat.drop_params.iter().any(|p| p == "stream_options")
    }

    /// Whether the upstream's `compat` asks for edits of the body beyond `model` and usage.
    fn compat_edits(&self) -> bool {
        let compat = &self.compat;
        compat.developer_role.is_some()
            || compat.max_tokens_field.is_some()
            || !compat.drop_params.is_empty()
            || compat.strip_tool_strict
    }

    /// Applies the rewrites to the client's body; returns it untouched when nothing changes.
    pub fn rewrite_body(&self, request: &ChatRequest) -> Result<Bytes, RelayError> {
        if let Some(layout) = request.layout.as_deref().filter(|_| !self.compat_edits()) {
            // The usage request is appended, unless the client sent `stream_options` of its own,
            // which it then has to be merged into.
            let appended: &[u8] = if self.injects_usage(request) { INCLUDE_USAGE_MEMBER } else { b"" };
            if appended.is_empty() || layout.span(&request.body, "stream_options").is_none() {
                if let Some(body) = splice_body(&request.body, layout, &request.upstream_model, appended) {
                    return Ok(body);
                }
            }
        }
        let mut object = match &request.layout {
            Some(layout) => RawObject::from_layout(&request.body, layout),
            None => RawObject::parse(&request.body)
                .map_err(|e| RelayError::new(ErrorCode::InvalidJson, format!("request body: {e}")))?,
        };
        object.set_value("model", &request.upstream_model);
        if self.injects_usage(request) {
            let mut options = object
                .get("stream_options")
                .and_then(|raw| serde_json::from_slice::<serde_json::Map<String, Value>>(raw).ok())
                .unwrap_or_default();
            options.insert("include_usage".into(), Value::Bool(true));
            object.set_value("stream_options", &options);
        }
        let compat = &self.compat;
        if let Some(role) = &compat.developer_role {
            rewrite_developer_role(&mut object, role);
        }
        match compat.max_tokens_field {
            Some(MaxTokensField::MaxTokens) => object.rename("max_completion_tokens", "max_tokens"),
            Some(MaxTokensField::MaxCompletionTokens) => object.rename("max_tokens", "max_completion_tokens"),
            None => {}
        }
        for param in &compat.drop_params {
            object.remove(param);
        }
        if compat.strip_tool_strict {
            strip_tool_strict(&mut object);
        }
        Ok(object.to_bytes())
    }
}

/// The member a stream's body gains when the relay asks for the usage chunk, written after the
/// client's last member.
const INCLUDE_USAGE_MEMBER: &[u8] = br#","stream_options":{"include_usage":true}"#;

/// The body with its `model` value replaced and `appended` (members, each after a comma) added
/// before its closing brace, every other byte as the client sent it: the body itself (no copy)
/// when the model is already the upstream's name and nothing is appended, else one splice.
/// `None` when the body has no `model` to replace.
fn splice_body(body: &Bytes, layout: &Layout, model: &str, appended: &[u8]) -> Option<Bytes> {
    let span = layout.span(body, "model")?;
    let current = &body[span.clone()];
    // A name JSON writes without escapes is equal exactly when its quoted text is.
    let plain = model.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    let same_model = plain && current.len() == model.len() + 2 && current[1..current.len() - 1] == *model.as_bytes();
    if same_model && appended.is_empty() {
        return Some(body.clone());
    }
    // The layout came from a parse of the body as an object, so its last non-space byte is `}`.
    let close = body.trim_ascii_end().len() - 1;
    let quoted = if same_model { None } else { Some(serde_json::to_string(model).unwrap_or_default()) };
    let replacement = quoted.as_deref().map_or(current, str::as_bytes);
    let mut out = Vec::with_capacity(body.len() - current.len() + replacement.len() + appended.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(replacement);
    out.extend_from_slice(&body[span.end..close]);
    out.extend_from_slice(appended);
    out.extend_from_slice(&body[close..]);
    Some(Bytes::from(out))
}

fn rewrite_developer_role(object: &mut RawObject<'_>, role: &str) {
    let Some(raw) = object.get("messages") else { return };
    if memmem::find(raw, b"\"developer\"").is_none() {
        return;
    }
    let Ok(mut messages) = serde_json::from_slice::<Vec<Value>>(raw) else { return };
    for message in &mut messages {
        if message.get("role").and_then(Value::as_str) == Some("developer") {
            message["role"] = Value::String(role.to_owned());
        }
    }
    object.set_value("messages", &messages);
}

fn strip_tool_strict(object: &mut RawObject<'_>) {
    let Some(raw) = object.get("tools") else { return };
    if memmem::find(raw, b"\"strict\"").is_none() {
        return;
    }
    let Ok(mut tools) = serde_json::from_slice::<Vec<Value>>(raw) else { return };
    for tool in &mut tools {
        if let Some(function) = tool.get_mut("function").and_then(Value::as_object_mut) {
            function.remove("strict");
        }
    }
    object.set_value("tools", &tools);
}

impl Dialect for OpenAiChat {
    fn translate_request(&self, request: &ChatRequest) -> Result<UpstreamCall, RelayError> {
        let body = self.rewrite_body(request)?;
        Ok(UpstreamCall::post("/chat/completions", body, request.stream))
    }

    fn translate_response(&self, body: Bytes, _ctx: &ResponseContext) -> Result<Translated, RelayError> {
        // Checks on the ends of the body and one search, not a parse, which would cost more than
        // the rest of forwarding it: a body that is no object, an HTML page or an object that is no
        // completion fails them. A dropped connection cannot hand over a cut body here:
        // content-length, chunking and HTTP/2 frames tell a cut from the end, and a body ended by
        // the connection's close was parsed whole before this (`upstream::classify::whole_json`).
        let object = body.trim_ascii();
        let what = if !(object.starts_with(b"{") && object.ends_with(b"}")) {
            "is not a whole JSON object"
        } else if CHOICES_NAME.find(object).is_none() {
            "is not a chat completion (no `choices`)"
        } else {
            return Ok(Translated { body, usage: ResponseUsage::InBody(usage_of_completion) });
        };
        Err(RelayError::new(
            ErrorCode::UpstreamInvalidResponse,
            format!("upstream answered 2xx with a body that {what}: {}", excerpt(&body)),
        ))
    }

    fn stream_translator(&self, ctx: &ResponseContext) -> Box<dyn StreamTranslator> {
        Box::new(SseStream::new(PassthroughStream {
            strip_usage: !ctx.client_wants_usage,
            several_choices: ctx.several_choices,
            done: false,
            choices_seen: 0,
            choices_finished: 0,
            usage: None,
        }))
    }

    fn translate_error(&self, status: u16, body: &Bytes) -> RelayError {
        passthrough_error(status, body)
    }
}

/// An upstream's JSON error, passed through with its own status and body.
pub fn passthrough_error(status: u16, body: &Bytes) -> RelayError {
    let message = super::errors::upstream_message(body);
    // The status stays the upstream's (its body goes to the client as it is), unlike the
    // translated dialects' `errors::status_error`.
    let code = match status {
        429 => ErrorCode::UpstreamRateLimited,
        529 => ErrorCode::UpstreamOverloaded,
        _ => ErrorCode::UpstreamHttpError,
    };
    let mut error = RelayError::new(code, message).with_status(status);
    error.passthrough_body = Some(body.clone());
    error
}

/// The first few hundred characters of a body, for error messages.
pub fn excerpt(body: &[u8]) -> String {
    const LIMIT: usize = 300;
    let text = String::from_utf8_lossy(&body[..body.len().min(LIMIT * 4)]);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The counts of a `chat.completion`'s `usage` member, if it has one.
fn usage_of_completion(completion: &[u8]) -> Option<Usage> {
    trailing_member(completion, "usage").and_then(scan_usage)
}

/// The counts of a response's `usage` object, read with the nesting scan: on a pass-through
/// response a serde parse of it cost more than the rest of the response's handling. `None` when
/// `usage` is not an object (`null`); a count that is missing or not an integer reads as 0.
fn scan_usage(usage: &[u8]) -> Option<Usage> {
    fn count(raw: &[u8]) -> u64 {
        std::str::from_utf8(raw).ok().and_then(|text| text.parse().ok()).unwrap_or(0)
    }
    fn detail(details: &[u8], key: &str) -> u64 {
        top_level_member(details, key).map_or(0, count)
    }
    if !usage.starts_with(b"{") {
        return None;
    }
    let mut counts = Usage::default();
    for (key, value) in top_level_members(usage) {
        match key {
            b"prompt_tokens" => counts.prompt_tokens = count(value),
            b"completion_tokens" => counts.completion_tokens = count(value),
            b"prompt_tokens_details" => counts.cached_tokens = detail(value, "cached_tokens"),
            b"completion_tokens_details" => counts.reasoning_tokens = detail(value, "reasoning_tokens"),
            _ => {}
        }
    }
    Some(counts)
}

/// The OpenAI usage object as it appears on the wire.
#[derive(Debug, Deserialize)]
pub struct UsageJson {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionDetails>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Deserialize)]
pub struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Deserialize)]
pub struct CompletionDetails {
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

impl From<UsageJson> for Usage {
    fn from(u: UsageJson) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
            reasoning_tokens: u.completion_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0),
        }
    }
}

// Stream events are scanned for these; the searchers are built once, not per event.
static FINISH_REASON: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"finish_reason\":"));
static ERROR_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\":"));
static CHOICES: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"choices\":"));
/// Without the colon, which a server may put after a space.
static CHOICES_NAME: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"choices\""));

/// Whether `data` holds the member `key` (its quoted name and colon) with a value that starts
/// with `value_start`: one search, whatever the spacing after the colon.
fn member_starting_with(data: &[u8], key: &Finder<'_>, value_start: u8) -> bool {
    after_each(data, key).any(|value| value.first() == Some(&value_start))
}

/// What follows each occurrence of `key` in `data`, from its first non-space byte on.
fn after_each<'a>(data: &'a [u8], key: &'a Finder<'_>) -> impl Iterator<Item = &'a [u8]> {
    // A loop of `find` rather than `find_iter`, whose set-up was about a third of a search's
    // cost on a chunk-sized event.
    let mut rest = data;
    std::iter::from_fn(move || {
        let at = key.find(rest)?;
        rest = &rest[at + key.needle().len()..];
        Some(rest.trim_ascii_start())
    })
}

/// Forwards OpenAI stream events as sliced from the upstream's reads.
struct PassthroughStream {
    strip_usage: bool,
    several_choices: bool,
    done: bool,
    /// The choices seen, and those of them that carried a `finish_reason`, one bit per choice
    /// (see [`choice_bit`]): with `n` > 1 each choice finishes in a chunk of its own.
    choices_seen: u128,
    choices_finished: u128,
    usage: Option<Usage>,
}

/// The bit standing for a choice with this `index`. Bit 127 stands for every index from 127 on
/// and is never marked finished, so a stream with that many choices ends cleanly only with the
/// upstream's `[DONE]`.
fn choice_bit(index: usize) -> u128 {
    1 << index.min(127)
}

impl PassthroughStream {
    fn on_event(&mut self, event: sse::Event, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        let Some(data) = event.data() else {
            // Upstream comments (keep-alives, "OPENROUTER PROCESSING") are not forwarded: the
            // relay sends its own keep-alives.
            return Ok(());
        };
        let data = data.as_ref();
        let payload = data.trim_ascii();
        if payload == sse::DONE.as_bytes() {
            if self.choices_seen == 0 {
                // An empty answer passed off as a whole one. Before any event reached the
                // client, this fails over like any other 2xx that is not a stream.
                return Err(RelayError::new(
                    ErrorCode::UpstreamInvalidResponse,
                    "the upstream ended its stream with [DONE] before any choice",
                ));
            }
            self.done = true;
            out.push(event.into_raw());
            return Ok(());
        }
        if !(payload.starts_with(b"{") && payload.ends_with(b"}")) {
            // Forwarded, it would make the SDKs throw a JSON parse error instead of an APIError.
            // The ends of the payload are the check a pass-through can afford on every chunk: it
            // catches an event cut short or a stray line of text, not a mangled middle.
            return Err(RelayError::new(
                ErrorCode::UpstreamInvalidResponse,
                format!("upstream sent a stream event that is not a JSON object: {}", excerpt(data)),
            ));
        }
        if ERROR_KEY.find(data).is_some() {
            if let Some(error) = in_band_error(data) {
                return Err(error);
            }
        }
        if member_starting_with(data, &USAGE, b'{') {
            if let Some(usage) = trailing_member(data, "usage").and_then(scan_usage) {
                self.usage = Some(usage);
                // The usage-only chunk: no choice's, and the client sees it only if it asked.
                if has_no_choices(data) {
                    if !self.strip_usage {
                        out.push(event.into_raw());
                    }
                    return Ok(());
                }
            }
        }
        self.note_choices(data);
        out.push(event.into_raw());
        Ok(())
    }

    /// Notes the chunk's choices, and which of them it finishes (a string `finish_reason`).
    fn note_choices(&mut self, data: &[u8]) {
        // With one choice asked for (nearly every request), a string `finish_reason` anywhere is
        // that choice's: no more is read per chunk. With several,
        // most chunks are still about one choice, and then every `index` in it (a tool call's
        // too) is that choice's, as a choice carries its index. Looking at the indexes costs a
        // fraction of the nesting scan below, which cost as much as the rest of the chunk's
        // handling.
        let mut indexes = index_values(data);
        let zero = |value: &[u8]| value.starts_with(b"0");
        if !self.several_choices || (indexes.next().is_some_and(zero) && indexes.all(zero)) {
            self.choices_seen |= 1;
            if member_starting_with(data, &FINISH_REASON, b'"') {
                self.choices_finished |= 1;
            }
            return;
        }
        // The depth tells a choice's own `index` and `finish_reason` from a tool call's `index`
        // and from look-alikes deeper down; a choice without an index counts by its position.
        let Some(choices) = after_each(data, &CHOICES).next() else { return };
        for (position, [index, finish]) in element_members(choices, ["index", "finish_reason"]).enumerate() {
            let bit = choice_bit(index.and_then(leading_integer).unwrap_or(position));
            self.choices_seen |= bit;
            if finish.is_some_and(|value| value.starts_with(b"\"")) && bit != choice_bit(127) {
                self.choices_finished |= bit;
            }
        }
    }

    /// Whether every choice seen has finished.
    fn finished(&self) -> bool {
        self.choices_seen != 0 && self.choices_finished == self.choices_seen
    }
}

/// The value of each `"index":` member in `data`, from its first non-space byte on. Found from
/// its `x`, which is rare in a chunk: on a chunk-sized event that took about a third fewer
/// instructions than a substring search. Quotes escaped in a string have a backslash before
/// them, so a string's text cannot pass for the member.
fn index_values(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || loop {
        let (before, after) = rest.split_at(memchr::memchr(b'x', rest)?);
        rest = &after[1..];
        if before.ends_with(b"\"inde") {
            if let Some(value) = rest.strip_prefix(b"\":") {
                return Some(value.trim_ascii_start());
            }
        }
    })
}

/// The integer a JSON value starts with.
fn leading_integer(value: &[u8]) -> Option<usize> {
    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&value[..digits]).ok()?.parse().ok()
}

/// Whether a stream chunk carries no choices: every `choices` member in it, if any, is an empty
/// array. That is the usage-only chunk `stream_options.include_usage` asks for, which a client
/// that did not ask must not see. A search rather than a walk of the chunk's nesting: a `choices`
/// nested deeper can only make this answer no, and the chunk is then forwarded.
fn has_no_choices(data: &[u8]) -> bool {
    after_each(data, &CHOICES)
        .all(|value| value.strip_prefix(b"[").is_some_and(|inner| inner.trim_ascii_start().starts_with(b"]")))
}

/// An `{"error": {...}}` payload sent in-band by the upstream, with or without choices beside it:
/// OpenRouter sends a mid-generation failure as a chunk with a top-level `error` and a choice
/// whose `finish_reason` is `"error"`, which would otherwise pass for a finished answer.
fn in_band_error(data: &[u8]) -> Option<RelayError> {
    let value: Value = serde_json::from_slice(data).ok()?;
    let error = value.get("error").filter(|error| !error.is_null())?;
    let message = error.get("message").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| error.to_string());
    Some(RelayError::new(ErrorCode::UpstreamStreamError, format!("upstream stream error: {message}")))
}

impl FrameTranslator<sse::Event> for PassthroughStream {
    fn frame(&mut self, event: sse::Event, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        self.on_event(event, out)
    }

    fn unterminated(&mut self, _event: sse::Event, _out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        // Forwarded as it is, an event without its blank line would run into what the relay sends
        // next ([DONE], or the error event) and be read as one event with it: a JSON parse error
        // in the SDKs instead of the error's code. An SSE client discards such an event at the
        // end of a stream, so the upstream's own client would not have read it either.
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        if self.done {
            return Ok(());
        }
        if self.finished() {
            // Some OpenAI-compatible servers end after the finish chunk without `[DONE]`.
            out.push(sse::done_event());
            self.done = true;
            return Ok(());
        }
        Err(RelayError::new(ErrorCode::UpstreamStreamTruncated, "upstream stream ended before its final event"))
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_are_read_from_the_object_and_its_details() {
        let usage = scan_usage(
            br#"{"prompt_tokens": 12, "completion_tokens":7,"total_tokens":19,
                "prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},
                "completion_tokens_details": {"reasoning_tokens": 5}}"#,
        )
        .unwrap();
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens),
            (12, 7, 4, 5)
        );
        let sparse = scan_usage(br#"{"completion_tokens":3,"prompt_tokens_details":null}"#).unwrap();
        assert_eq!((sparse.prompt_tokens, sparse.completion_tokens, sparse.cached_tokens), (0, 3, 0));
        assert!(scan_usage(b"null").is_none());
    }

    fn request(body: &str, stream: bool, wants_usage: bool) -> ChatRequest {
        ChatRequest {
            body: Bytes::copy_from_slice(body.as_bytes()),
            upstream_model: "up-model".into(),
            stream,
            client_wants_usage: wants_usage,
            layout: None,
        }
    }

    fn ctx(wants_usage: bool) -> ResponseContext<'static> {
        ResponseContext {
            request_id: "req_x",
            created: 1,
            upstream_model: "m",
            client_wants_usage: wants_usage,
            several_choices: false,
        }
    }

    fn routed(body: &str, upstream_model: &str) -> ChatRequest {
        let body = Bytes::copy_from_slice(body.as_bytes());
        let layout = Layout::of(&body).unwrap();
        ChatRequest {
            body,
            upstream_model: upstream_model.into(),
            stream: false,
            client_wants_usage: false,
            layout: Some(std::sync::Arc::new(layout)),
        }
    }

    #[test]
    fn a_routed_body_is_spliced_keeping_every_other_byte() {
        let dialect = OpenAiChat::new(Compat::default());
        let body = r#"{ "messages": [ {"role":"user", "content":"hi"} ],  "model" : "pub", "x": 1.50 }"#;
        let sent = dialect.translate_request(&routed(body, "up/model")).unwrap().body;
        assert_eq!(sent, body.replace(r#""pub""#, r#""up/model""#).as_bytes());

        let escaped = dialect.translate_request(&routed(body, "a\"b\\c")).unwrap().body;
        let value: Value = serde_json::from_slice(&escaped).unwrap();
        assert_eq!(value["model"], "a\"b\\c");
    }

    #[test]
    fn a_body_already_naming_the_upstream_model_is_sent_as_is() {
        let dialect = OpenAiChat::new(Compat::default());
        let request = routed(r#"{"model":"same","messages":[]}"#, "same");
        let sent = dialect.translate_request(&request).unwrap().body;
        assert_eq!(sent.as_ptr(), request.body.as_ptr(), "no copy of the body");

        // Same text but an escape in the body: decoded, these differ, so it is rewritten.
        let request = routed(r#"{"model":"a\u0041","messages":[]}"#, "a\\u0041");
        let sent = dialect.translate_request(&request).unwrap().body;
        let value: Value = serde_json::from_slice(&sent).unwrap();
        assert_eq!(value["model"], "a\\u0041");
    }

    #[test]
    fn a_routed_stream_asks_for_usage_in_the_same_splice() {
        let dialect = OpenAiChat::new(Compat { request_stream_usage: true, ..Compat::default() });
        let streamed = |body: &str, model: &str| ChatRequest { stream: true, ..routed(body, model) };
        let body = r#"{ "model" : "pub", "stream": true, "messages": [ ] }  "#;
        let sent = dialect.translate_request(&streamed(body, "up")).unwrap().body;
        let expected =
            r#"{ "model" : "up", "stream": true, "messages": [ ] ,"stream_options":{"include_usage":true}}  "#;
        assert_eq!(std::str::from_utf8(&sent).unwrap(), expected);

        let sent = dialect.translate_request(&streamed(r#"{"model":"same","stream":true}"#, "same")).unwrap().body;
        assert_eq!(&sent[..], br#"{"model":"same","stream":true,"stream_options":{"include_usage":true}}"#);

        // The client's own options are kept and merged into, never sent twice.
        let own = r#"{"model":"pub","stream":true,"stream_options":{"include_usage":false,"x":1}}"#;
        let sent = dialect.translate_request(&streamed(own, "up")).unwrap().body;
        let value: Value = serde_json::from_slice(&sent).unwrap();
        assert_eq!(value["stream_options"], serde_json::json!({"include_usage": true, "x": 1}));
        assert_eq!(memmem::find_iter(&sent, b"stream_options").count(), 1);

        // A client that asked for usage gets its body as it sent it.
        let asked = r#"{"model":"same","stream":true,"stream_options":{"include_usage":true}}"#;
        let wants = ChatRequest { client_wants_usage: true, ..streamed(asked, "same") };
        let sent = dialect.translate_request(&wants).unwrap().body;
        assert_eq!(sent.as_ptr(), wants.body.as_ptr(), "no copy of the body");
    }

    #[test]
    fn only_the_model_changes_by_default() {
        let dialect = OpenAiChat::new(Compat::default());
        let body =
            r#"{"model":"pub","messages":[{"role":"user","content":"hi"}],"store":true,"x_custom":{"a":[1, 2]}}"#;
        let call = dialect.translate_request(&request(body, false, false)).unwrap();
        assert_eq!(
            call.body,
            Bytes::from_static(br#"{"model":"up-model","messages":[{"role":"user","content":"hi"}],"store":true,"x_custom":{"a":[1, 2]}}"#)
        );
        assert_eq!(call.path_and_query, "/chat/completions");
    }

    #[test]
    fn compat_rewrites_roles_limits_params_and_strict() {
        let dialect = OpenAiChat::new(Compat {
            developer_role: Some("system".into()),
            max_tokens_field: Some(MaxTokensField::MaxTokens),
            drop_params: vec!["store".into(), "parallel_tool_calls".into()],
            strip_tool_strict: true,
            request_stream_usage: false,
        });
        let body = r#"{"model":"m","messages":[{"role":"developer","content":"be brief"}],"max_completion_tokens":9,"store":false,"parallel_tool_calls":true,"tools":[{"type":"function","function":{"name":"f","strict":true,"parameters":{}}}]}"#;
        let call = dialect.translate_request(&request(body, false, false)).unwrap();
        let sent: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(sent["messages"][0]["role"], "system");
        assert_eq!(sent["max_tokens"], 9);
        assert!(sent.get("max_completion_tokens").is_none());
        assert!(sent.get("store").is_none() && sent.get("parallel_tool_calls").is_none());
        assert!(sent["tools"][0]["function"].get("strict").is_none());
        assert_eq!(sent["tools"][0]["function"]["name"], "f");
    }

    #[test]
    fn streams_ask_for_usage_and_the_client_does_not_see_it_unless_asked() {
        let dialect = OpenAiChat::new(Compat { request_stream_usage: true, ..Compat::default() });
        let call = dialect.translate_request(&request(r#"{"model":"m","stream":true}"#, true, false)).unwrap();
        let sent: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(sent["stream_options"]["include_usage"], true);

        let upstream = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
                        data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n\
                        data: [DONE]\n\n";
        for (wants, expected_events) in [(false, 2), (true, 3)] {
            let mut translator = dialect.stream_translator(&ctx(wants));
            let mut out = Vec::new();
            translator.feed(Bytes::from(upstream), &mut out).unwrap();
            translator.finish(&mut out).unwrap();
            assert_eq!(out.len(), expected_events);
            assert_eq!(out.last().unwrap(), &sse::done_event());
            let usage = translator.usage().unwrap();
            assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens), (3, 1, 2));
        }
    }

    #[test]
    fn a_usage_chunk_is_hidden_only_when_it_carries_no_choices() {
        // vLLM's continuous usage stats put `usage` on chunks that also carry choices.
        let upstream = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n\
                        data: {\"id\":\"x\",\"choices\": [ ],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n\
                        data: {\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n\
                        data: {\"choices\":[{\"delta\":{\"usage\":{\"prompt_tokens\":9}}}]}\n\n\
                        data: [DONE]\n\n";
        let mut translator = OpenAiChat::new(Compat::default()).stream_translator(&ctx(false));
        let mut out = Vec::new();
        translator.feed(Bytes::from(upstream), &mut out).unwrap();
        let kept: Vec<_> = out.iter().map(|event| String::from_utf8_lossy(event).into_owned()).collect();
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert!(kept[0].contains("\"hi\"") && kept[1].contains("\"delta\":{\"usage\"") && kept[2].contains("[DONE]"));
        // A `usage` nested in a choice is content, not the response's counts.
        let usage = translator.usage().unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (3, 4));
    }

    #[test]
    fn spaced_json_is_read_alike_finish_without_done_and_usage() {
        // Python servers (json.dumps defaults) put a space after every colon; some end after the
        // finish chunk without `[DONE]`.
        let dialect = OpenAiChat::new(Compat::default());
        let upstream = "data: {\"choices\": [{\"delta\": {}, \"finish_reason\":\t \"stop\"}], \"usage\": null}\n\n\
                        data: {\"choices\": [], \"usage\":  {\"prompt_tokens\": 4, \"completion_tokens\": 2}}\n\n";
        let mut translator = dialect.stream_translator(&ctx(true));
        let mut out = Vec::new();
        translator.feed(Bytes::from(upstream), &mut out).unwrap();
        translator.finish(&mut out).unwrap();
        assert_eq!(out.last().unwrap(), &sse::done_event());
        let usage = translator.usage().unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (4, 2));
    }

    #[test]
    fn a_stream_cut_before_its_end_is_an_error_not_a_clean_finish() {
        let dialect = OpenAiChat::new(Compat::default());
        let mut translator = dialect.stream_translator(&ctx(false));
        let mut out = Vec::new();
        translator
            .feed(
                Bytes::from_static(
                    b"data: {\"choices\":[{\"delta\":{\"content\":\"par\"},\"finish_reason\":null}]}\n\n",
                ),
                &mut out,
            )
            .unwrap();
        let err = translator.finish(&mut out).unwrap_err();
        assert_eq!(err.code, ErrorCode::UpstreamStreamTruncated);
    }

    #[test]
    fn an_event_cut_before_its_blank_line_is_not_forwarded() {
        let chunk = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"par\"},\"finish_reason\":null}]}\n\n";
        let finish = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
        let run = |upstream: String| {
            let mut translator = OpenAiChat::new(Compat::default()).stream_translator(&ctx(false));
            let mut out = Vec::new();
            translator.feed(Bytes::from(upstream), &mut out).unwrap();
            let end = translator.finish(&mut out);
            (out, end)
        };
        // Cut mid-line, and after a whole line but before the blank line that ends the event.
        for tail in
            ["data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.comple", "data: {\"id\":\"chatcmpl-1\",\"choices\":[]}\n"]
        {
            let (out, end) = run(format!("{chunk}{tail}"));
            assert_eq!(out, [Bytes::from(chunk)], "{tail:?}");
            assert_eq!(end.unwrap_err().code, ErrorCode::UpstreamStreamTruncated);
        }
        // A finished stream still gets a [DONE] of its own, not one joined to the cut event.
        let (out, end) = run(format!("{finish}data: [DONE]"));
        end.unwrap();
        assert_eq!(out, [Bytes::from(finish), sse::done_event()]);
    }

    #[test]
    fn a_stream_of_several_choices_is_finished_only_once_each_choice_is() {
        // Tool calls have an `index` of their own, and some servers write a choice's last.
        let chunk = |index: usize, finish: &str| {
            format!("data: {{\"choices\":[{{\"delta\":{{\"tool_calls\":[{{\"index\":0}}]}},\"finish_reason\":{finish},\"index\": {index}}}]}}\n\n")
        };
        let run = |upstream: String| {
            let several = ResponseContext { several_choices: true, ..ctx(false) };
            let mut translator = OpenAiChat::new(Compat::default()).stream_translator(&several);
            let mut out = Vec::new();
            translator.feed(Bytes::from(upstream), &mut out).unwrap();
            translator.finish(&mut out).map(|()| out.last() == Some(&sse::done_event())).map_err(|e| e.code)
        };
        let begun = chunk(0, "null") + &chunk(1, "null") + &chunk(0, "\"stop\"");
        assert_eq!(run(begun.clone()), Err(ErrorCode::UpstreamStreamTruncated));
        assert_eq!(run(begun.clone() + &chunk(1, "\"length\"")), Ok(true));
        assert_eq!(run(begun + "data: [DONE]\n\n"), Ok(true), "the upstream's [DONE] is its word");
        // Both choices in one chunk, without an index: told apart by their position.
        let both = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"},{\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\n\n";
        assert_eq!(run(both.into()), Err(ErrorCode::UpstreamStreamTruncated));
    }

    #[test]
    fn a_stream_that_is_only_done_is_not_an_empty_answer() {
        let usage_only = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":0}}\n\n";
        for upstream in ["data: [DONE]\n\n".to_owned(), format!(": ping\n\n{usage_only}data: [DONE]\n\n")] {
            let mut translator = OpenAiChat::new(Compat::default()).stream_translator(&ctx(false));
            let mut out = Vec::new();
            let err = translator.feed(Bytes::from(upstream), &mut out).unwrap_err();
            assert_eq!(err.code, ErrorCode::UpstreamInvalidResponse);
            assert!(out.is_empty(), "{out:?}");
        }
    }

    #[test]
    fn an_event_that_is_not_a_json_object_fails_the_stream() {
        let chunk = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":null}]}\n\n";
        for bad in ["data: {not json\n\n", "data: {\"id\":\"c\",\"choices\":[{\"ind\n\n", "data: oops\n\n", "data:\n\n"]
        {
            let mut translator = OpenAiChat::new(Compat::default()).stream_translator(&ctx(false));
            let mut out = Vec::new();
            let err = translator.feed(Bytes::from(format!("{chunk}{bad}")), &mut out).unwrap_err();
            assert_eq!(err.code, ErrorCode::UpstreamInvalidResponse, "{bad:?}");
            assert_eq!(out, [Bytes::from(chunk)], "{bad:?}");
        }
    }

    #[test]
    fn an_in_band_error_event_fails_the_stream() {
        let dialect = OpenAiChat::new(Compat::default());
        let mut translator = dialect.stream_translator(&ctx(false));
        let err = translator
            .feed(Bytes::from_static(b"data: {\"error\":{\"message\":\"overloaded\"}}\n\n"), &mut Vec::new())
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UpstreamStreamError);
        assert!(err.message.contains("overloaded"));
    }

    #[test]
    fn an_error_beside_choices_fails_the_stream_and_a_null_one_does_not() {
        let dialect = OpenAiChat::new(Compat::default());
        let mut translator = dialect.stream_translator(&ctx(false));
        let mut out = Vec::new();
        let answer =
            "data: {\"id\":\"c\",\"error\":null,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n";
        translator.feed(Bytes::from(answer), &mut out).unwrap();
        assert_eq!(out, [Bytes::from(answer)]);
        let openrouter = "data: {\"id\":\"c\",\"provider\":\"openai\",\"error\":{\"code\":\"server_error\",\"message\":\"Provider disconnected unexpectedly\"},\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}]}\n\n";
        let err = translator.feed(Bytes::from(openrouter), &mut out).unwrap_err();
        assert_eq!(err.code, ErrorCode::UpstreamStreamError);
        assert!(err.message.contains("Provider disconnected unexpectedly"), "{}", err.message);
        assert_eq!(out.len(), 1, "the error chunk itself is not forwarded");
    }

    #[test]
    fn a_2xx_html_page_is_not_passed_off_as_a_completion() {
        let dialect = OpenAiChat::new(Compat::default());
        let err = dialect.translate_response(Bytes::from_static(b"<html>challenge</html>"), &ctx(false)).unwrap_err();
        assert_eq!(err.code, ErrorCode::UpstreamInvalidResponse);
    }

    #[test]
    fn a_2xx_body_cut_short_or_without_choices_is_not_passed_off_as_a_completion() {
        let dialect = OpenAiChat::new(Compat::default());
        for body in [r#"{"id": "x", "choices": [{"ind"#, r#"{"hello":"world"}"#, ""] {
            let err = dialect.translate_response(Bytes::from(body), &ctx(false)).unwrap_err();
            assert_eq!(err.code, ErrorCode::UpstreamInvalidResponse, "{body}");
        }
        let spaced = " {\"id\": \"x\", \"choices\" : [], \"usage\": {\"prompt_tokens\": 2}}\n";
        let translated = dialect.translate_response(Bytes::from(spaced), &ctx(false)).unwrap();
        assert_eq!((translated.usage().map(|u| u.prompt_tokens), translated.body), (Some(2), Bytes::from(spaced)));
    }
}
