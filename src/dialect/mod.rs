//! Upstream dialects: pure translation between the OpenAI chat-completions API the clients speak
//! and each upstream's own API.
//!
//! Every dialect is one module behind the [`Dialect`] trait. Translation is bytes in, bytes out,
//! independent of the network (no hyper, tokio or tower here), so each can be tested and
//! benchmarked alone. Stream translation is a [`StreamTranslator`] state machine fed with reads
//! as they arrive; it must produce the same output however the upstream's bytes are split.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod client_request;
pub mod completion;
pub mod errors;
pub mod framed;
pub mod gemini;
pub mod json;
pub mod mock;
pub mod ollama;
pub mod openai;
pub mod responses;
pub mod simulate;

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};

use crate::error::RelayError;

/// The upstream API families the relay speaks, by the names users know from client configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DialectKind {
    OpenAiCompletions,
    OpenAiResponses,
    OpenAiCodexResponses,
    AzureOpenAiCompletions,
    AzureOpenAiResponses,
    AnthropicMessages,
    GoogleGenerativeAi,
    Ollama,
    BedrockConverseStream,
    GithubCopilot,
    Mock,
}

impl DialectKind {
    /// Every dialect, in the order they are documented.
    pub const ALL: [DialectKind; 11] = [
        DialectKind::OpenAiCompletions,
        DialectKind::OpenAiResponses,
        DialectKind::OpenAiCodexResponses,
        DialectKind::AzureOpenAiCompletions,
        DialectKind::AzureOpenAiResponses,
        DialectKind::AnthropicMessages,
        DialectKind::GoogleGenerativeAi,
        DialectKind::Ollama,
        DialectKind::BedrockConverseStream,
        DialectKind::GithubCopilot,
        DialectKind::Mock,
    ];

    /// The config name of this dialect.
    pub fn as_str(self) -> &'static str {
        match self {
            DialectKind::OpenAiCompletions => "openai-completions",
            DialectKind::OpenAiResponses => "openai-responses",
            DialectKind::OpenAiCodexResponses => "openai-codex-responses",
            DialectKind::AzureOpenAiCompletions => "azure-openai-completions",
            DialectKind::AzureOpenAiResponses => "azure-openai-responses",
            DialectKind::AnthropicMessages => "anthropic-messages",
            DialectKind::GoogleGenerativeAi => "google-generative-ai",
            DialectKind::Ollama => "ollama",
            DialectKind::BedrockConverseStream => "bedrock-converse-stream",
            DialectKind::GithubCopilot => "github-copilot",
            DialectKind::Mock => "mock",
        }
    }
}

/// A dialect name that is not (or no longer) valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dialect {0:?}")]
pub struct UnknownDialect(pub String);

impl FromStr for DialectKind {
    type Err = UnknownDialect;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        DialectKind::ALL.into_iter().find(|kind| kind.as_str() == name).ok_or_else(|| UnknownDialect(name.to_owned()))
    }
}

/// How the upstream expects its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// The key as the value of a named header (`x-api-key`, `api-key`, `x-goog-api-key`).
    Header(&'static str),
    /// AWS Signature Version 4 over the whole request.
    SigV4,
    /// No credentials.
    None,
}

/// Options a dialect is built with, cut from the upstream's config.
#[derive(Debug, Clone, Default)]
pub struct DialectOptions {
    /// `max_tokens` to send where the upstream requires one and the client gave none.
    pub default_max_tokens: Option<u64>,
    /// Anthropic's `anthropic-version` header.
    pub anthropic_version: Option<String>,
    /// Azure's `api-version` query parameter; `None` selects Azure's v1 paths.
    pub api_version: Option<String>,
    /// Azure deployment name; `None` uses the target model as the deployment.
    pub deployment: Option<String>,
    /// AWS region for Bedrock.
    pub region: Option<String>,
    /// Silently drop request parameters the dialect cannot express instead of answering 400.
    pub drop_unsupported: bool,
    /// Body rewrites for OpenAI-compatible upstreams that reject parts of the modern API.
    pub compat: openai::Compat,
}

/// Fields of the client's chat-completions request, read once by the router.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The client's JSON body, unchanged.
    pub body: Bytes,
    /// The model to ask the upstream for.
    pub upstream_model: String,
    /// The client asked for a streamed response.
    pub stream: bool,
    /// The client asked for a usage chunk at the end of the stream.
    pub client_wants_usage: bool,
    /// Where the body's top-level members are, from the router's parse; lets a pass-through
    /// rewrite skip parsing the body again. `None` where nobody parsed it yet.
    pub layout: Option<Arc<json::Layout>>,
}

impl ChatRequest {
    /// Whether the client asked for more than one choice (`n` > 1).
    pub fn asks_several_choices(&self) -> bool {
        let several = |text: &[u8]| serde_json::from_slice::<u64>(text).is_ok_and(|n| n > 1);
        match &self.layout {
            Some(layout) => layout.value(&self.body, "n").is_some_and(several),
            // Only a request that did not come through the router (the probe's) has no layout.
            None => {
                json::RawObject::parse(&self.body).ok().and_then(|object| object.get("n").map(several)).unwrap_or(false)
            }
        }
    }
}

/// The request to send upstream, relative to the upstream's `base_url`.
#[derive(Debug, Clone)]
pub struct UpstreamCall {
    pub method: Method,
    /// Appended to the base URL's path, e.g. `/chat/completions` or `/v1/messages`.
    pub path_and_query: Cow<'static, str>,
    /// Headers the dialect needs besides auth (e.g. `anthropic-version`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Whether the upstream will answer with a stream.
    pub stream: bool,
}

impl UpstreamCall {
    /// A JSON `POST`.
    pub fn post(path_and_query: impl Into<Cow<'static, str>>, body: Bytes, stream: bool) -> Self {
        UpstreamCall { method: Method::POST, path_and_query: path_and_query.into(), headers: Vec::new(), body, stream }
    }
}

/// What a response translation needs to know about the request, borrowed from it: a
/// pass-through response reads none of it but `client_wants_usage`, so nothing is copied or
/// formatted until a translator asks.
#[derive(Debug, Clone, Copy)]
pub struct ResponseContext<'a> {
    /// The relay's id for the request, from which [`ResponseContext::completion_id`] is made.
    pub request_id: &'a str,
    /// Unix seconds for `created` where the upstream gives none.
    pub created: u64,
    /// The model asked of the upstream, reported where the upstream names none.
    pub upstream_model: &'a str,
    /// Whether the client asked for the usage chunk at the end of a stream.
    pub client_wants_usage: bool,
    /// The client asked for more than one choice (`n` > 1): a stream is complete only when each
    /// has finished, which a pass-through then has to track chunk by chunk.
    pub several_choices: bool,
}

impl ResponseContext<'_> {
    /// The `chat.completion` id to use where the upstream gives none: the request id under
    /// OpenAI's `chatcmpl-` prefix.
    pub fn completion_id(&self) -> String {
        format!("chatcmpl-{}", self.request_id.strip_prefix("req_").unwrap_or(self.request_id))
    }

    /// The context with copies of its own, for a stream translator that keeps it past the
    /// request's borrow.
    pub fn owned(&self) -> OwnedResponseContext {
        OwnedResponseContext {
            id: self.completion_id(),
            created: self.created,
            upstream_model: self.upstream_model.to_owned(),
            client_wants_usage: self.client_wants_usage,
        }
    }
}

/// A [`ResponseContext`] with its id made and its strings copied.
#[derive(Debug, Clone)]
pub struct OwnedResponseContext {
    /// `chat.completion` id to use where the upstream gives none.
    pub id: String,
    /// Unix seconds for `created` where the upstream gives none.
    pub created: u64,
    /// The model asked of the upstream, reported where the upstream names none.
    pub upstream_model: String,
    /// Whether the client asked for the usage chunk at the end of a stream.
    pub client_wants_usage: bool,
}

/// Token counts, in OpenAI's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens served from a cache (part of `prompt_tokens`).
    pub cached_tokens: u64,
    /// Completion tokens spent on reasoning (part of `completion_tokens`).
    pub reasoning_tokens: u64,
}

impl Usage {
    /// The OpenAI `usage` object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": { "cached_tokens": self.cached_tokens },
            "completion_tokens_details": { "reasoning_tokens": self.reasoning_tokens },
        })
    }
}

/// A translated non-streamed response.
#[derive(Debug, Clone)]
pub struct Translated {
    /// An OpenAI `chat.completion` JSON body.
    pub body: Bytes,
    pub usage: ResponseUsage,
}

/// Reads the token counts from a response body.
pub type ReadUsage = fn(&[u8]) -> Option<Usage>;

/// The token counts of a translated response.
#[derive(Debug, Clone, Copy)]
pub enum ResponseUsage {
    /// Read while translating, if the response had any.
    Read(Option<Usage>),
    /// Still to be read from the body, with this function. A pass-through body reaches the client
    /// as it came, and its counts are only wanted for the request's record, which is written once
    /// the answer has been sent: reading them then keeps the scan out of the answer's latency.
    InBody(ReadUsage),
}

impl Translated {
    /// A response whose usage, if any, has been read.
    pub fn read(body: Bytes, usage: Option<Usage>) -> Self {
        Translated { body, usage: ResponseUsage::Read(usage) }
    }

    /// The usage, read from the body now if it has not been.
    pub fn usage(&self) -> Option<Usage> {
        match self.usage {
            ResponseUsage::Read(usage) => usage,
            ResponseUsage::InBody(read) => read(&self.body),
        }
    }
}

/// Translates one upstream stream into OpenAI `chat.completion.chunk` SSE events.
pub trait StreamTranslator: Send {
    /// Feeds one read from the upstream; appends complete client events (`data: ...\n\n`) to
    /// `out`. An in-band upstream error is returned as `Err`.
    fn feed(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) -> Result<(), RelayError>;

    /// The upstream ended. Appends the final events, ending with `data: [DONE]`; a stream that
    /// ended before its terminal event is an `Err` (code `upstream_stream_truncated`).
    fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), RelayError>;

    /// Usage seen so far.
    fn usage(&self) -> Option<Usage>;
}

/// One upstream API.
pub trait Dialect: Send + Sync {
    /// Builds the upstream request. A request feature the dialect cannot express is a 400
    /// naming the parameter, unless [`DialectOptions::drop_unsupported`] is set.
    fn translate_request(&self, request: &ChatRequest) -> Result<UpstreamCall, RelayError>;

    /// Translates a complete 2xx response body.
    fn translate_response(&self, body: Bytes, ctx: &ResponseContext) -> Result<Translated, RelayError>;

    /// A fresh translator for one streamed response.
    fn stream_translator(&self, ctx: &ResponseContext) -> Box<dyn StreamTranslator>;

    /// Maps a non-2xx response whose body is JSON to the client's error.
    fn translate_error(&self, status: u16, body: &Bytes) -> RelayError;

    /// How the upstream expects its key, unless the config says otherwise.
    fn default_auth(&self) -> AuthStyle {
        AuthStyle::Bearer
    }

    /// The upstream's path for listing models, used by `probe`.
    fn models_path(&self) -> Option<&'static str> {
        Some("/models")
    }
}

/// Builds the translator for a dialect.
pub fn build(kind: DialectKind, options: &DialectOptions) -> Arc<dyn Dialect> {
    match kind {
        // GitHub Copilot's chat endpoint speaks OpenAI chat completions; its editor headers and
        // token come from the upstream's `headers.set` and `api_key`.
        DialectKind::OpenAiCompletions | DialectKind::GithubCopilot | DialectKind::Mock => {
            Arc::new(openai::OpenAiChat::new(options.compat.clone()))
        }
        DialectKind::OpenAiResponses => Arc::new(responses::Responses::openai(options)),
        DialectKind::OpenAiCodexResponses => Arc::new(responses::Responses::codex(options)),
        DialectKind::AzureOpenAiCompletions => Arc::new(azure::AzureChat::new(options)),
        DialectKind::AzureOpenAiResponses => Arc::new(azure::responses(options)),
        DialectKind::AnthropicMessages => Arc::new(anthropic::AnthropicMessages::new(options)),
        DialectKind::BedrockConverseStream => Arc::new(bedrock::BedrockConverse::new(options)),
        DialectKind::GoogleGenerativeAi => Arc::new(gemini::Gemini::new(options)),
        DialectKind::Ollama => Arc::new(ollama::Ollama::new(options)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_completion_id_is_the_request_id_under_openais_prefix() {
        let ctx = ResponseContext {
            request_id: "req_7f3a",
            created: 9,
            upstream_model: "m",
            client_wants_usage: true,
            several_choices: false,
        };
        assert_eq!(ctx.completion_id(), "chatcmpl-7f3a");
        let client_chosen = ResponseContext { request_id: "trace-42", ..ctx };
        assert_eq!(client_chosen.completion_id(), "chatcmpl-trace-42");
        let owned = ctx.owned();
        assert_eq!((owned.id.as_str(), owned.created, owned.upstream_model.as_str()), ("chatcmpl-7f3a", 9, "m"));
        assert!(owned.client_wants_usage);
    }

    #[test]
    fn dialect_names_round_trip() {
        for kind in DialectKind::ALL {
            assert_eq!(kind.as_str().parse::<DialectKind>(), Ok(kind));
        }
        assert!("openai".parse::<DialectKind>().is_err());
    }
}
