//! `ollama`: Ollama's native chat API (`POST /api/chat`), local or on ollama.com.
//!
//! Sources: Ollama's `docs/api.md` and `docs/openapi.yaml` (copied in `shared/specs/ollama`),
//! and its error documentation (`docs/api/errors.mdx`: `{"error": "..."}` bodies, and the same
//! object as an NDJSON line when a stream fails after status 200).
//!
//! # Calls
//! `POST {base_url}/api/chat` (`base_url` is `http://localhost:11434`, or `https://ollama.com`).
//! `stream` is always set explicitly because Ollama streams by default. Local servers need no
//! key; ollama.com takes `Authorization: Bearer`. `probe` lists models with `GET /api/tags`.
//!
//! # Request
//! * Messages keep their roles (`developer` -> `system`). Content arrays are joined into one
//!   string (text parts separated by newlines); images given as base64 data URLs go in the
//!   message's `images`. Ollama cannot fetch links, so an `http(s)` image is a 400 unless
//!   `drop_unsupported` (then it is left out); audio and file parts likewise.
//! * `tool_calls` -> `tool_calls` with `arguments` as an object; tool results -> `tool` messages
//!   with `tool_name` (looked up from the call's id in the earlier assistant message) and
//!   `tool_call_id`. `reasoning_content` of earlier turns -> `thinking`.
//! * `tools` pass through in OpenAI's shape (without `strict`). `tool_choice: "none"` sends no
//!   tools; `auto` is Ollama's behaviour; forcing a call (`required`, a named function) cannot be
//!   expressed -> 400 `unsupported_parameter` unless dropped. `parallel_tool_calls` is ignored.
//! * `options`: `num_predict` from `max_completion_tokens`/`max_tokens`, `temperature`, `top_p`,
//!   `stop`, `seed`, `presence_penalty`, `frequency_penalty`.
//! * `response_format` json_object -> `format: "json"`, json_schema -> `format: <schema>`.
//! * `reasoning_effort` -> `think`: none -> `false`, minimal/low -> "low", medium, high,
//!   xhigh -> "max" (models without levels treat a level as `true`).
//! * Refused with 400 unless `drop_unsupported`: what no rebuilt dialect can express (listed in
//!   [`crate::dialect::client_request`]: `n` > 1, `logprobs`, `logit_bias`, legacy `functions`,
//!   audio output, `prediction`, `web_search_options`, non-function tools, ...), audio input.
//!   Results of the legacy `function` role are `tool` messages named by their `name`.
//!
//! # Response
//! NDJSON (one object a line; also accepted when a proxy buffers a stream into one body).
//! `message.content` -> `content`, `message.thinking` -> `reasoning_content`,
//! `message.tool_calls` -> `tool_calls` (arguments object encoded as a JSON string; Ollama's id
//! when it gives one, else `call_<completion id>_<n>`). The last line (`done: true`) gives
//! `done_reason` (`length` -> `length`; otherwise `stop`, or `tool_calls` after tool calls) and
//! usage (`prompt_eval_count`, `eval_count`). Ollama has no completion id: the relay's is used.
//! A stream that ends before its `done` line is truncated; an `{"error": ...}` line fails it.
//!
//! # Errors
//! `{"error": "..."}` with its status as `upstream_http_error` (404 unknown model, 400 "does not
//! support tools"), 429 -> `upstream_rate_limited`, 503 (server busy) -> `upstream_overloaded`.

mod request;
mod response;

use bytes::Bytes;

use super::client_request::{ClientRequest, Expressible};
use super::framed::LineStream;
use super::{
    AuthStyle, ChatRequest, Dialect, DialectOptions, ResponseContext, StreamTranslator, Translated, UpstreamCall,
};
use crate::error::RelayError;

/// Ollama takes sampling penalties and named function results, but no audio.
const EXPRESSIBLE: Expressible = Expressible { penalties: true, audio_input: false, function_results: true };

/// The Ollama dialect.
#[derive(Debug, Clone)]
pub struct Ollama {
    drop_unsupported: bool,
}

impl Ollama {
    /// An Ollama dialect with the upstream's options.
    pub fn new(options: &DialectOptions) -> Self {
        Ollama { drop_unsupported: options.drop_unsupported }
    }
}

impl Dialect for Ollama {
    fn translate_request(&self, request: &ChatRequest) -> Result<UpstreamCall, RelayError> {
        let body = ClientRequest::parse(&request.body, self.drop_unsupported, EXPRESSIBLE)?;
        let translated = request::translate(&body, &request.upstream_model, request.stream, self.drop_unsupported)?;
        Ok(UpstreamCall::post("/api/chat", Bytes::from(translated.to_string()), request.stream))
    }

    fn translate_response(&self, body: Bytes, ctx: &ResponseContext) -> Result<Translated, RelayError> {
        response::translate(&body, ctx)
    }

    fn stream_translator(&self, ctx: &ResponseContext) -> Box<dyn StreamTranslator> {
        Box::new(LineStream::new(response::OllamaStream::new(ctx)))
    }

    fn translate_error(&self, status: u16, body: &Bytes) -> RelayError {
        response::translate_error(status, body)
    }

    /// ollama.com takes a Bearer key; a local server without a configured key gets none.
    fn default_auth(&self) -> AuthStyle {
        AuthStyle::Bearer
    }

    fn models_path(&self) -> Option<&'static str> {
        Some("/api/tags")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_to_api_chat_with_an_explicit_stream_flag() {
        let request = ChatRequest {
            body: Bytes::from_static(br#"{"model":"pub","messages":[{"role":"user","content":"hi"}]}"#),
            upstream_model: "gemma3:1b".into(),
            stream: false,
            client_wants_usage: false,
            layout: None,
        };
        let dialect = Ollama::new(&DialectOptions::default());
        let call = dialect.translate_request(&request).unwrap();
        assert_eq!(call.path_and_query, "/api/chat");
        let sent: serde_json::Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!((sent["model"].as_str(), sent["stream"].as_bool()), (Some("gemma3:1b"), Some(false)));
        assert_eq!(dialect.models_path(), Some("/api/tags"));
    }
}
