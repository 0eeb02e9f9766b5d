//! `google-generative-ai`: the Gemini API (`generativelanguage.googleapis.com/v1beta`).
//!
//! Sources: the v1beta protos (`google/ai/generativelanguage/v1beta/generative_service.proto`,
//! `content.proto`, copied in `shared/specs/gemini`), Google's guides on function calling,
//! thinking and thought signatures (ai.google.dev/gemini-api/docs), and Google's own
//! OpenAI-compatible endpoint (ai.google.dev/gemini-api/docs/openai) where a mapping is a choice.
//!
//! # Calls
//! `POST {base_url}/models/{model}:generateContent`, or `:streamGenerateContent?alt=sse` for
//! streams (`base_url` is `https://generativelanguage.googleapis.com/v1beta`). A `models/`
//! prefix on the configured model is accepted. The key goes in `x-goog-api-key`.
//!
//! # Request
//! * `system` and `developer` messages -> `systemInstruction` (text parts, in order).
//! * `user` -> `user` turns; `assistant` -> `model` turns. Empty text parts are left out
//!   (Gemini rejects them). `reasoning_content` of earlier turns is not replayed.
//! * Images: data URLs -> `inlineData`; `http(s)://` and `gs://` links -> `fileData.fileUri`
//!   (with a MIME type guessed from the extension), which Gemini fetches itself; what it accepts
//!   (Files API URIs, YouTube, public URLs) depends on the model, and a refusal comes back as
//!   Gemini's 400. `input_audio` and `file` (inline `file_data`) -> `inlineData`.
//! * `tool_calls` -> `functionCall` parts (with the client's id as `id`); tool results ->
//!   `functionResponse` parts in a user turn, named after the call they answer (looked up by
//!   `tool_call_id` in the earlier assistant message), results of parallel calls together. A
//!   result that is a JSON object is the response itself; other text becomes `{"output": ...}`.
//! * Thought signatures: Gemini 3 rejects a replayed function call without the signature it was
//!   returned with. Signatures are returned to the client as
//!   `tool_calls[].extra_content.google.thought_signature` (the shape of Google's
//!   OpenAI-compatible endpoint) and read back from there. When a client dropped them, the first
//!   call of a Gemini 3 turn gets Google's documented `skip_thought_signature_validator`.
//! * `tools` -> one `functionDeclarations` entry; parameters as `parametersJsonSchema` (full
//!   JSON Schema, unlike the OpenAPI-subset `parameters`); `strict` is dropped. `tool_choice`
//!   auto/none/required/named -> `functionCallingConfig` AUTO/NONE/ANY/ANY +
//!   `allowedFunctionNames`; `allowed_tools` likewise (in auto mode by declaring only those).
//!   `parallel_tool_calls` has no equivalent and is ignored (it is only a hint).
//! * `generationConfig`: `max_completion_tokens`/`max_tokens` -> `maxOutputTokens`,
//!   `temperature`, `top_p` -> `topP`, `stop` -> `stopSequences`, `seed`, presence/frequency
//!   penalties, `response_format` json_object -> `responseMimeType: application/json`,
//!   json_schema -> that plus `responseJsonSchema`.
//! * `reasoning_effort` -> `thinkingConfig` with `includeThoughts: true` (so thoughts come back
//!   as `reasoning_content`): for Gemini 3 and later a `thinkingLevel` (none/minimal ->
//!   `minimal`, low, medium, high/xhigh -> `high`); otherwise a `thinkingBudget` on the scale of
//!   Google's OpenAI endpoint (none 0, minimal/low 1024, medium 8192, high/xhigh 24576). Without
//!   `reasoning_effort` nothing is sent and models think by their defaults without returning
//!   thoughts (usage still counts them).
//! * Refused with 400 `unsupported_parameter` unless `drop_unsupported`: what no rebuilt
//!   dialect can express (listed in [`crate::dialect::client_request`]: `n` > 1, `logprobs`,
//!   `logit_bias`, legacy `functions`, audio output, `prediction`, `web_search_options`,
//!   non-function tools, uploaded `file_id`s, unknown content parts), and non-text system
//!   messages or tool results. Results of the legacy `function` role are function responses
//!   named by their `name`. Ignored: `user`, `store`, `metadata`, `service_tier`,
//!   `stream_options` (the relay reads it).
//!
//! # Response
//! `candidates[0].content.parts`: text -> `content`, parts with `thought: true` ->
//! `reasoning_content`, `functionCall` -> `tool_calls` (arguments re-encoded as a JSON string;
//! ids `call_<responseId>_<n>` because Gemini gives none, unique across turns). `finishReason`
//! STOP -> `stop`, or `tool_calls` when the answer has function calls; MAX_TOKENS -> `length`;
//! SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII, IMAGE_* -> `content_filter`; others
//! -> `stop`. A prompt blocked before generation (`promptFeedback.blockReason`, no candidate) is
//! an empty answer finishing `content_filter`. `usageMetadata`: prompt = `promptTokenCount` +
//! `toolUsePromptTokenCount`, completion = `candidatesTokenCount` + `thoughtsTokenCount`,
//! reasoning = `thoughtsTokenCount`, cached = `cachedContentTokenCount`. The id is
//! `chatcmpl-<responseId>`, the model is `modelVersion`. A 2xx body with neither a candidate
//! nor `promptFeedback` is 502 `upstream_invalid_response`.
//!
//! # Errors
//! See `response::translate_error`: 429 -> `upstream_rate_limited` with `retry_after` from
//! `RetryInfo`, 503 -> `upstream_overloaded`, an invalid key (400 `API_KEY_INVALID`) -> 401, the
//! rest keep their status as `upstream_http_error` with Gemini's message.

mod request;
mod response;
mod stream;

use bytes::Bytes;

use super::client_request::{ClientRequest, Expressible};
use super::framed::SseStream;
use super::{
    AuthStyle, ChatRequest, Dialect, DialectOptions, ResponseContext, StreamTranslator, Translated, UpstreamCall,
};
use crate::error::RelayError;

/// Gemini takes sampling penalties, audio input and named function results.
const EXPRESSIBLE: Expressible = Expressible { penalties: true, audio_input: true, function_results: true };

/// Google's documented placeholder for a function call whose thought signature was lost.
const THOUGHT_SIGNATURE_SENTINEL: &str = "skip_thought_signature_validator";

/// The Gemini dialect.
#[derive(Debug, Clone)]
pub struct Gemini {
    drop_unsupported: bool,
}

impl Gemini {
    /// A Gemini dialect with the upstream's options.
    pub fn new(options: &DialectOptions) -> Self {
        Gemini { drop_unsupported: options.drop_unsupported }
    }
}

/// The model id as it appears in the path: without a `models/` prefix, and with anything but
/// the characters of model names percent-encoded so the path cannot be redirected.
fn model_path_segment(model: &str) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    let mut segment = String::with_capacity(model.len());
    for byte in model.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'@') {
            segment.push(byte as char);
        } else {
            segment.push_str(&format!("%{byte:02X}"));
        }
    }
    segment
}

impl Dialect for Gemini {
    fn translate_request(&self, request: &ChatRequest) -> Result<UpstreamCall, RelayError> {
        let body = ClientRequest::parse(&request.body, self.drop_unsupported, EXPRESSIBLE)?;
        let model = model_path_segment(&request.upstream_model);
        let translated = request::translate(&body, &model, self.drop_unsupported)?;
        let path = if request.stream {
            format!("/models/{model}:streamGenerateContent?alt=sse")
        } else {
            format!("/models/{model}:generateContent")
        };
        Ok(UpstreamCall::post(path, Bytes::from(translated.to_string()), request.stream))
    }

    fn translate_response(&self, body: Bytes, ctx: &ResponseContext) -> Result<Translated, RelayError> {
        response::translate(&body, ctx)
    }

    fn stream_translator(&self, ctx: &ResponseContext) -> Box<dyn StreamTranslator> {
        Box::new(SseStream::new(stream::GeminiStream::new(ctx)))
    }

    fn translate_error(&self, status: u16, body: &Bytes) -> RelayError {
        response::translate_error(status, body)
    }

    fn default_auth(&self) -> AuthStyle {
        AuthStyle::Header("x-goog-api-key")
    }

    fn models_path(&self) -> Option<&'static str> {
        Some("/models")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(model: &str, stream: bool) -> UpstreamCall {
        let request = ChatRequest {
            body: Bytes::from_static(br#"{"model":"pub","messages":[{"role":"user","content":"hi"}],"stream":true}"#),
            upstream_model: model.into(),
            stream,
            client_wants_usage: false,
            layout: None,
        };
        Gemini::new(&DialectOptions::default()).translate_request(&request).unwrap()
    }

    #[test]
    fn paths_name_the_model_and_the_streaming_method() {
        assert_eq!(call("gemini-2.5-flash", false).path_and_query, "/models/gemini-2.5-flash:generateContent");
        let streamed = call("models/gemini-2.5-flash", true);
        assert_eq!(streamed.path_and_query, "/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
        assert!(streamed.stream);
        assert_eq!(call("../x?y", false).path_and_query, "/models/..%2Fx%3Fy:generateContent");
    }

    #[test]
    fn the_key_goes_in_the_goog_header() {
        assert_eq!(Gemini::new(&DialectOptions::default()).default_auth(), AuthStyle::Header("x-goog-api-key"));
    }
}
