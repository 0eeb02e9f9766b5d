//! `openai-responses` and `openai-codex-responses`: chat completions translated to OpenAI's
//! Responses API (`POST /responses`), and back.
//!
//! Sources: the OpenAI OpenAPI spec (`shared/specs/openai/openapi.yaml`: `CreateResponse`,
//! `Response`, `ResponseStreamEvent`, `ResponseErrorEvent`), the Responses API reference and
//! streaming guide, and recorded traffic in `shared/fixtures/upstream/openai_responses/`. The
//! Codex details come from public captures of `chatgpt.com/backend-api/codex/responses`
//! (stream and non-empty `instructions` required, `store: false`, `max_output_tokens` refused).
//!
//! # Request
//! - Leading `system`/`developer` messages become `instructions` (joined by a blank line); a
//!   system or developer message later in the conversation stays in place as an input item with
//!   its own role, so its position in the dialogue is kept.
//! - `user` messages: string content stays a string (as Responses' "easy input message"); parts
//!   map `text` -> `input_text`, `image_url` -> `input_image` (data or http URL, `detail` kept,
//!   default `auto`), `file` -> `input_file`. Audio input is unsupported (400).
//! - `assistant` messages: text -> a `message` item with `output_text` parts (refusals as
//!   `refusal` parts), each tool call -> a `function_call` item whose `call_id` is the chat
//!   tool-call id and whose `arguments` are JSON text (an object the client sent is encoded,
//!   none is `{}`). `reasoning_content` in history is not sent back (reasoning items need the
//!   upstream's ids and encrypted content). `tool` messages -> `function_call_output` items.
//! - `tools` are flattened to `{type: function, name, description, parameters, strict}`;
//!   `strict` defaults to `false` as in chat completions. Non-function tools are unsupported.
//! - `tool_choice`: `none`/`auto`/`required` as is, a named function -> `{type: function, name}`,
//!   `allowed_tools` -> Responses' `allowed_tools`.
//! - `max_completion_tokens` (or `max_tokens`) -> `max_output_tokens`, raised to the API's
//!   minimum of 16; `response_format` -> `text.format` (json_schema flattened); `verbosity` ->
//!   `text.verbosity`; `reasoning_effort` -> `reasoning.effort`. `temperature`, `top_p`,
//!   `parallel_tool_calls`, `user`, `metadata`, `service_tier`, `prompt_cache_key` and
//!   `safety_identifier` are copied.
//! - `store` is `false` unless the client set it: the relay is stateless, and a stored response
//!   would keep client data at the upstream that the client never asked to keep.
//! - Rejected with 400 `unsupported_parameter` unless `drop_unsupported`: `stop`, `n` > 1,
//!   non-zero `frequency_penalty`/`presence_penalty`, `logit_bias`, `logprobs`, non-text
//!   `modalities`, `audio`, `prediction`, `web_search_options`, legacy `functions`/`function_call`.
//!   Dropped silently: `seed`, `stream_options` (Responses streams always report usage), and any
//!   parameter the translation does not know.
//!
//! # Response
//! `message` items' `output_text` -> `content` (refusals -> `refusal`); `reasoning` items'
//! summaries (or raw reasoning text) -> `reasoning_content`, parts joined by a blank line;
//! `function_call` items -> `tool_calls` with `id` = `call_id`. `finish_reason`: `incomplete`
//! with `content_filter` -> `content_filter`, any other `incomplete` -> `length`, otherwise
//! `tool_calls` when the model called a function, else `stop`. A `failed` response is an error.
//! The id is `chatcmpl-` + the response id without its `resp_` prefix. Reasoning summaries are
//! only requested from Codex: on the OpenAI platform they need a verified organisation, so the
//! platform dialect does not ask for them and `reasoning_content` is usually absent there.
//!
//! # Stream
//! Typed events map to chunks: `response.output_text.delta` -> `content`,
//! `response.refusal.delta` -> `refusal`, `response.reasoning_summary_text.delta` and
//! `response.reasoning_text.delta` -> `reasoning_content`, a `function_call` output item ->
//! a tool-call delta (index = order of function calls), `response.function_call_arguments.delta`
//! -> argument fragments. `response.completed`/`response.incomplete` end the stream (finish
//! chunk, usage chunk if asked, `[DONE]`); `response.failed` and `error` events are in-band
//! errors (rate-limit and overload codes classified). A stream without a terminal event is
//! `upstream_stream_truncated`.
//!
//! # Errors
//! OpenAI-shaped (`{"error": {...}}`) and ChatGPT-backend (`{"detail": ...}`) bodies become an
//! OpenAI-shaped relay error carrying the upstream's message, `param` and status (429 ->
//! `upstream_rate_limited`, 503/529 -> `upstream_overloaded` 503, else `upstream_http_error`).
//!
//! # Codex (`openai-codex-responses`)
//! The same wire format at `{base_url}/codex/responses` (base `https://chatgpt.com/backend-api`):
//! the upstream call always streams (`stream: true`, [`UpstreamCall::stream`] set), so a client
//! that did not ask for a stream is served by the relay aggregating the translated stream;
//! `store` is always `false`; `instructions` falls back to a neutral one-liner when the client
//! sent no system prompt; the client's token limit is dropped (the backend refuses
//! `max_output_tokens`); string user content is sent as an `input_text` part list, as Codex CLI
//! does; `reasoning.summary` is `auto`. The ChatGPT account id header (`chatgpt-account-id`) is
//! account configuration, not translation: set it with the upstream's `headers.set`.

mod input;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use super::framed::SseStream;
use super::{
    AuthStyle, ChatRequest, Dialect, DialectOptions, ResponseContext, StreamTranslator, Translated, UpstreamCall,
};
use crate::error::RelayError;
use request::BodyShape;

/// A Responses API endpoint: OpenAI's, Codex's or Azure's.
#[derive(Debug, Clone)]
pub struct Responses {
    path_and_query: String,
    codex: bool,
    /// Model named in the body instead of the target model (an Azure deployment).
    model_override: Option<String>,
    drop_unsupported: bool,
    auth: AuthStyle,
    models_path: Option<&'static str>,
}

impl Responses {
    /// `openai-responses`: `POST /responses` on `https://api.openai.com/v1`.
    pub fn openai(options: &DialectOptions) -> Self {
        Responses {
            path_and_query: "/responses".into(),
            codex: false,
            model_override: None,
            drop_unsupported: options.drop_unsupported,
            auth: AuthStyle::Bearer,
            models_path: Some("/models"),
        }
    }

    /// `openai-codex-responses`: `POST /codex/responses` on `https://chatgpt.com/backend-api`,
    /// always streamed.
    pub fn codex(options: &DialectOptions) -> Self {
        Responses {
            path_and_query: "/codex/responses".into(),
            codex: true,
            models_path: None,
            ..Responses::openai(options)
        }
    }

    /// The Responses dialect served at another path (Azure), naming `model` in the body when
    /// given, with the upstream's own auth style and model-listing path.
    pub fn at(
        path_and_query: String,
        model: Option<String>,
        auth: AuthStyle,
        models_path: Option<&'static str>,
        options: &DialectOptions,
    ) -> Self {
        Responses { path_and_query, model_override: model, auth, models_path, ..Responses::openai(options) }
    }
}

impl Dialect for Responses {
    fn translate_request(&self, request: &ChatRequest) -> Result<UpstreamCall, RelayError> {
        let model = self.model_override.as_deref().unwrap_or(&request.upstream_model);
        let shape = BodyShape { codex: self.codex, drop_unsupported: self.drop_unsupported };
        let body = request::build_body(&request.body, model, request.stream, shape)?;
        let mut call = UpstreamCall::post(self.path_and_query.clone(), body, request.stream || self.codex);
        if self.codex {
            // Sent by Codex CLI and the captures the Codex support was modelled on.
            call.headers
                .push((HeaderName::from_static("openai-beta"), HeaderValue::from_static("responses=experimental")));
        }
        Ok(call)
    }

    fn translate_response(&self, body: Bytes, ctx: &ResponseContext) -> Result<Translated, RelayError> {
        response::translate(&body, ctx)
    }

    fn stream_translator(&self, ctx: &ResponseContext) -> Box<dyn StreamTranslator> {
        Box::new(SseStream::new(stream::ResponsesStream::new(ctx)))
    }

    fn translate_error(&self, status: u16, body: &Bytes) -> RelayError {
        response::translate_error(status, body)
    }

    fn default_auth(&self) -> AuthStyle {
        self.auth
    }

    fn models_path(&self) -> Option<&'static str> {
        self.models_path
    }
}
