//! `azure-openai-completions` and `azure-openai-responses`: the OpenAI APIs as Azure OpenAI
//! serves them, under `https://{resource}.openai.azure.com/openai` with an `api-key` header.
//!
//! Sources: Azure OpenAI REST reference (data plane inference, `2024-10-21` and later; the v1
//! API), and recorded traffic in `shared/fixtures/upstream/azure_openai/`.
//!
//! - Paths: with `api_version` configured, the classic deployment routes
//!   `/deployments/{deployment}/chat/completions?api-version={v}` and
//!   `/responses?api-version={v}`; without it, Azure's v1 API `/v1/chat/completions` and
//!   `/v1/responses`. The deployment is `DialectOptions::deployment`, else the target model, and
//!   is also the `model` named in the body (Azure v1 routes by it).
//! - Chat bodies, responses and streams are the `openai-completions` pass-through
//!   ([`OpenAiChat`]); errors pass through as OpenAI-shaped bodies. Azure's first stream chunk
//!   carries only `prompt_filter_results` (empty `choices`, empty id and model, no usage): it is
//!   dropped, so every chunk the client sees belongs to the completion. `content_filter_results`
//!   inside choices and `prompt_filter_results` in non-streamed bodies are left as sent; SDKs
//!   ignore unknown fields.
//! - Responses on Azure is the [`Responses`] dialect at the Azure path.

use bytes::Bytes;
use memchr::memmem;
use serde::Deserialize;

use super::openai::{passthrough_error, OpenAiChat};
use super::responses::Responses;
use super::{
    AuthStyle, ChatRequest, Dialect, DialectOptions, ResponseContext, StreamTranslator, Translated, UpstreamCall, Usage,
};
use crate::error::RelayError;

/// The header Azure OpenAI reads the key from.
const API_KEY_HEADER: AuthStyle = AuthStyle::Header("api-key");

/// A GA `api-version` that lists models, used by `probe` whatever version is configured.
const MODELS_PATH_VERSIONED: &str = "/models?api-version=2024-10-21";
const MODELS_PATH_V1: &str = "/v1/models";

/// `azure-openai-completions`.
#[derive(Debug, Clone)]
pub struct AzureChat {
    passthrough: OpenAiChat,
    api_version: Option<String>,
    deployment: Option<String>,
}

impl AzureChat {
    /// Chat completions on Azure, with the `compat` rewrites of the options.
    pub fn new(options: &DialectOptions) -> Self {
        AzureChat {
            passthrough: OpenAiChat::new(options.compat.clone()),
            api_version: options.api_version.clone(),
            deployment: options.deployment.clone(),
        }
    }
}

impl Dialect for AzureChat {
    fn translate_request(&self, request: &ChatRequest) -> Result<UpstreamCall, RelayError> {
        let deployment = self.deployment.as_deref().unwrap_or(&request.upstream_model);
        let routed = ChatRequest { upstream_model: deployment.to_owned(), ..request.clone() };
        let body = self.passthrough.rewrite_body(&routed)?;
        let path = match &self.api_version {
            Some(version) => format!(
                "/deployments/{}/chat/completions?api-version={}",
                percent_encode(deployment),
                percent_encode(version)
            ),
            None => "/v1/chat/completions".to_owned(),
        };
        Ok(UpstreamCall::post(path, body, request.stream))
    }

    fn translate_response(&self, body: Bytes, ctx: &ResponseContext) -> Result<Translated, RelayError> {
        self.passthrough.translate_response(body, ctx)
    }

    fn stream_translator(&self, ctx: &ResponseContext) -> Box<dyn StreamTranslator> {
        Box::new(AzureChatStream { passthrough: self.passthrough.stream_translator(ctx) })
    }

    fn translate_error(&self, status: u16, body: &Bytes) -> RelayError {
        passthrough_error(status, body)
    }

    fn default_auth(&self) -> AuthStyle {
        API_KEY_HEADER
    }

    fn models_path(&self) -> Option<&'static str> {
        Some(if self.api_version.is_some() { MODELS_PATH_VERSIONED } else { MODELS_PATH_V1 })
    }
}

/// `azure-openai-responses`: the Responses dialect at Azure's path.
pub fn responses(options: &DialectOptions) -> Responses {
    let (path, models_path) = match &options.api_version {
        Some(version) => (format!("/responses?api-version={}", percent_encode(version)), MODELS_PATH_VERSIONED),
        None => ("/v1/responses".to_owned(), MODELS_PATH_V1),
    };
    Responses::at(path, options.deployment.clone(), API_KEY_HEADER, Some(models_path), options)
}

/// The pass-through stream minus Azure's content-filter-only chunks.
struct AzureChatStream {
    passthrough: Box<dyn StreamTranslator>,
}

impl AzureChatStream {
    fn drop_filter_only_chunks(out: &mut Vec<Bytes>, from: usize) {
        if out[from..].iter().any(|event| is_filter_only(event)) {
            let translated = out.split_off(from);
            out.extend(translated.into_iter().filter(|event| !is_filter_only(event)));
        }
    }
}

impl StreamTranslator for AzureChatStream {
    fn feed(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        let from = out.len();
        let result = self.passthrough.feed(chunk, out);
        Self::drop_filter_only_chunks(out, from);
        result
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        let from = out.len();
        let result = self.passthrough.finish(out);
        Self::drop_filter_only_chunks(out, from);
        result
    }

    fn usage(&self) -> Option<Usage> {
        self.passthrough.usage()
    }
}

#[derive(Deserialize)]
struct FilterProbe {
    #[serde(default)]
    choices: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    usage: Option<serde::de::IgnoredAny>,
}

/// An event whose only content is Azure's `prompt_filter_results`: no choices, no usage.
fn is_filter_only(event: &[u8]) -> bool {
    if memmem::find(event, b"\"prompt_filter_results\"").is_none() {
        return false;
    }
    let (Some(start), Some(end)) = (memchr::memchr(b'{', event), memchr::memrchr(b'}', event)) else {
        return false;
    };
    serde_json::from_slice::<FilterProbe>(&event[start..=end])
        .is_ok_and(|probe| probe.choices.is_empty() && probe.usage.is_none())
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for path segments and query
/// values taken from the config.
fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn request(body: &str, stream: bool) -> ChatRequest {
        ChatRequest {
            body: Bytes::copy_from_slice(body.as_bytes()),
            upstream_model: "gpt-4o".into(),
            stream,
            client_wants_usage: false,
            layout: None,
        }
    }

    fn ctx() -> ResponseContext<'static> {
        ResponseContext {
            request_id: "req_x",
            created: 1,
            upstream_model: "gpt-4o",
            client_wants_usage: false,
            several_choices: false,
        }
    }

    fn options(api_version: Option<&str>, deployment: Option<&str>) -> DialectOptions {
        DialectOptions {
            api_version: api_version.map(str::to_owned),
            deployment: deployment.map(str::to_owned),
            ..DialectOptions::default()
        }
    }

    #[test]
    fn versioned_chat_routes_by_deployment_and_keeps_the_body() {
        let dialect = AzureChat::new(&options(Some("2024-12-01-preview"), None));
        let call = dialect.translate_request(&request(r#"{"model":"pub","messages":[],"n":1}"#, false)).unwrap();
        assert_eq!(call.path_and_query, "/deployments/gpt-4o/chat/completions?api-version=2024-12-01-preview");
        assert_eq!(call.body, Bytes::from_static(br#"{"model":"gpt-4o","messages":[],"n":1}"#));
        assert_eq!(dialect.default_auth(), AuthStyle::Header("api-key"));
        assert_eq!(dialect.models_path(), Some(MODELS_PATH_VERSIONED));
    }

    #[test]
    fn v1_chat_names_the_configured_deployment_in_the_body() {
        let dialect = AzureChat::new(&options(None, Some("my deploy")));
        let call = dialect.translate_request(&request(r#"{"model":"pub","messages":[]}"#, true)).unwrap();
        assert_eq!(call.path_and_query, "/v1/chat/completions");
        assert!(call.stream);
        let sent: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(sent["model"], "my deploy");
        let versioned = AzureChat::new(&options(Some("2025-01-01"), Some("my deploy")));
        let call = versioned.translate_request(&request(r#"{"model":"pub","messages":[]}"#, false)).unwrap();
        assert_eq!(call.path_and_query, "/deployments/my%20deploy/chat/completions?api-version=2025-01-01");
    }

    #[test]
    fn responses_paths_follow_the_api_version() {
        let call = responses(&options(Some("2025-04-01-preview"), Some("dep")))
            .translate_request(&request(r#"{"messages":[{"role":"user","content":"hi"}]}"#, false))
            .unwrap();
        assert_eq!(call.path_and_query, "/responses?api-version=2025-04-01-preview");
        let sent: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(sent["model"], "dep");
        let v1 = responses(&options(None, None));
        let call = v1.translate_request(&request(r#"{"messages":[{"role":"user","content":"hi"}]}"#, true)).unwrap();
        assert_eq!(call.path_and_query, "/v1/responses");
        assert_eq!(v1.default_auth(), AuthStyle::Header("api-key"));
        assert_eq!(v1.models_path(), Some(MODELS_PATH_V1));
    }

    #[test]
    fn prompt_filter_chunks_are_dropped_and_the_rest_passes() {
        let upstream = "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n\
                        data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":\"stop\",\"index\":0}],\"id\":\"chatcmpl-1\"}\n\n\
                        data: [DONE]\n\n";
        let dialect = AzureChat::new(&options(None, None));
        let mut translator = dialect.stream_translator(&ctx());
        let mut out = vec![Bytes::from_static(b"earlier event\n\n")];
        translator.feed(Bytes::from(upstream), &mut out).unwrap();
        translator.finish(&mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], Bytes::from_static(b"earlier event\n\n"));
        assert!(std::str::from_utf8(&out[1]).unwrap().contains("\"Hi\""));
        assert_eq!(out[2], crate::sse::done_event());
    }

    #[test]
    fn a_filter_chunk_with_usage_or_choices_is_kept() {
        assert!(!is_filter_only(b"data: {\"choices\":[{\"index\":0}],\"prompt_filter_results\":[]}\n\n"));
        assert!(!is_filter_only(
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1},\"prompt_filter_results\":[]}\n\n"
        ));
        assert!(is_filter_only(b"data: {\"choices\":[],\"usage\":null,\"prompt_filter_results\":[]}\n\n"));
    }

    #[test]
    fn percent_encoding_keeps_unreserved_characters() {
        assert_eq!(percent_encode("2024-10-21"), "2024-10-21");
        assert_eq!(percent_encode("a/b c&d"), "a%2Fb%20c%26d");
    }
}
