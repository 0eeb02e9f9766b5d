//! Configuration: the TOML schema, its validation into [`Config`] (the only type the rest of the
//! crate accepts), legacy-value migration and hot reload.
//!
//! One bad upstream never takes the service down: an upstream whose table is invalid, whose
//! dialect is unknown or legacy, or whose secret reference is unset, empty or malformed is
//! disabled with a warning, and everything else serves.

mod diagnostic;
mod glob;
pub mod migrate;
pub mod reload;
pub mod schema;
mod secret;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

pub use diagnostic::{did_you_mean, Diagnostic, Locator, Severity};
pub use glob::Glob;
pub use secret::{expand, is_credential_header, Redactor, Secret, VarError};
pub use validate::{parse_duration, LEGACY_DIALECTS, RETRYABLE_BY_DEFAULT};

use crate::dialect::{AuthStyle, DialectKind, DialectOptions};

/// The config served when no file is given: the offline `mock` model, plus `openai/*` when
/// `OPENAI_API_KEY` is set.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// Appended to the embedded default when `OPENAI_API_KEY` is set.
const EMBEDDED_OPENAI: &str = r#"
[upstreams.openai]
dialect = "openai-completions"
api_key = "${OPENAI_API_KEY}"

[[models]]
name = "openai/*"
targets = [{ upstream = "openai" }]
"#;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerParams,
    pub keys: Vec<KeyParams>,
    /// Whether the file configures client keys at all. Stays true when every key was skipped, so
    /// that a broken key list fails closed rather than turning auth off.
    pub auth_required: bool,
    /// Names of the client keys that were configured but skipped; the reasons are in `warnings`.
    pub skipped_keys: Vec<String>,
    /// Upstreams that passed validation, by name.
    pub upstreams: BTreeMap<String, UpstreamParams>,
    /// Upstreams that were configured but disabled, with the reason.
    pub disabled: BTreeMap<String, Diagnostic>,
    pub models: Vec<ModelParams>,
    /// Warnings found while validating (disabled upstreams, skipped keys, ...).
    pub warnings: Vec<Diagnostic>,
    /// The file this came from; `None` for the embedded default.
    pub source: Option<PathBuf>,
}

/// `[server]`, resolved.
#[derive(Debug, Clone)]
pub struct ServerParams {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    pub allow_unauthenticated: bool,
    pub keepalive_interval: Duration,
}

/// A client key: only its SHA-256 is kept in memory.
#[derive(Debug, Clone)]
pub struct KeyParams {
    pub name: String,
    pub sha256: [u8; 32],
    /// Model name patterns this key may use.
    pub models: Vec<Glob>,
}

/// How an upstream's streams are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    /// Stream requests are sent as streams.
    Native,
    /// For relays with broken streaming: send a non-stream request and stream its result.
    Simulate,
}

/// The four phase timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// Until response headers (non-stream) or the first data event (stream).
    pub first_byte: Duration,
    /// Longest gap between stream chunks.
    pub idle: Duration,
    /// Whole request, including the stream.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(300),
            idle: Duration::from_secs(120),
            total: Duration::from_secs(1800),
        }
    }
}

/// Retry settings per upstream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryParams {
    /// Tries per target, the first included.
    pub attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Longest `retry-after` honoured before giving up on this target.
    pub retry_after_max: Duration,
    /// Extra load retries may add, as a fraction of requests (a retry budget).
    pub budget_ratio: f32,
}

impl Default for RetryParams {
    fn default() -> Self {
        RetryParams {
            attempts: 2,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            retry_after_max: Duration::from_secs(30),
            budget_ratio: 0.2,
        }
    }
}

/// Optional active health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckParams {
    pub interval: Duration,
    pub path: String,
    pub expect_status: u16,
}

/// TLS options toward an upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsParams {
    /// Extra PEM CA bundle trusted besides the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Also trust the operating system's roots.
    pub native_roots: bool,
}

/// AWS credentials for SigV4 upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsParams {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// One upstream, validated.
#[derive(Debug, Clone)]
pub struct UpstreamParams {
    pub name: String,
    pub dialect: DialectKind,
    /// `None` only for the `mock` dialect.
    pub base_url: Option<Uri>,
    pub api_key: Option<Secret>,
    pub auth: AuthStyle,
    /// The credential header `api_key` and `auth` make, marked sensitive; `None` without a key
    /// or for `sigv4` and `none`.
    pub auth_header: Option<(HeaderName, HeaderValue)>,
    pub user_agent: String,
    pub headers_set: Vec<(HeaderName, HeaderValue)>,
    pub headers_remove: Vec<Glob>,
    /// Forward the client SDK's `x-stainless-*` fingerprint headers (off by default: WAFs block them).
    pub keep_sdk_headers: bool,
    pub dialect_options: DialectOptions,
    pub tls: TlsParams,
    pub proxy: Option<Uri>,
    pub timeouts: Timeouts,
    pub retry: RetryParams,
    pub stream_mode: StreamMode,
    pub health_check: Option<HealthCheckParams>,
    pub aws: Option<AwsParams>,
}

impl UpstreamParams {
    /// Every secret this upstream is configured with: its key, AWS secrets, credentials in
    /// `headers.set`, and the user-info of its proxy URL (validation refuses it in `base_url`).
    pub fn secret_values(&self) -> Vec<String> {
        let mut found: Vec<String> = self.api_key.iter().map(|key| key.expose().to_owned()).collect();
        if let Some(aws) = &self.aws {
            found.push(aws.secret_access_key.expose().to_owned());
            found.extend(aws.session_token.iter().map(|token| token.expose().to_owned()));
        }
        // Validation marks `headers.set` values that are credentials (by name, or from `${VAR}`).
        for (_, value) in self.headers_set.iter().filter(|(_, value)| value.is_sensitive()) {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            // An upstream quoting a credential it refused often leaves out the `Bearer ` scheme.
            found.extend(value.split_once(' ').map(|(_, credential)| credential.trim().to_owned()));
            found.push(value);
        }
        if let Some(url) = &self.proxy {
            if let Some((userinfo, _)) = url.authority().and_then(|a| a.as_str().rsplit_once('@')) {
                found.push(userinfo.to_owned());
                found.extend(userinfo.split_once(':').map(|(_, password)| password.to_owned()));
            }
        }
        found
    }
}

/// How a model chooses among its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// In the order written; the next is tried when one fails.
    Failover,
    /// Randomly by weight, the others as fallbacks.
    Weighted,
    /// Power of two choices over peak-EWMA latency, the others as fallbacks.
    LeastLatency,
}

/// A model name pattern: exact, or `prefix/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPattern {
    Exact(String),
    /// `prefix/*`: holds `prefix/`.
    Prefix(String),
}

impl ModelPattern {
    /// The upstream model for a requested name, if this pattern matches it.
    pub fn matches<'a>(&self, requested: &'a str) -> Option<&'a str> {
        match self {
            ModelPattern::Exact(name) => (name == requested).then_some(requested),
            ModelPattern::Prefix(prefix) => requested.strip_prefix(prefix.as_str()).filter(|rest| !rest.is_empty()),
        }
    }

    /// The pattern as written.
    pub fn as_written(&self) -> String {
        match self {
            ModelPattern::Exact(name) => name.clone(),
            ModelPattern::Prefix(prefix) => format!("{prefix}*"),
        }
    }
}

/// One target of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetParams {
    pub upstream: String,
    /// The upstream's model name; `None` passes on the requested name (or the `prefix/*` rest).
    pub model: Option<String>,
    pub weight: u32,
    /// Per-target timeout overrides, already merged over the upstream's.
    pub timeouts: Option<Timeouts>,
}

/// A public model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelParams {
    pub pattern: ModelPattern,
    pub targets: Vec<TargetParams>,
    pub strategy: Strategy,
    /// Error classes that move on to the next target.
    pub failover_on: Vec<String>,
}

/// A config that cannot be served at all.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    /// Every diagnostic, one per paragraph.
    pub fn render(&self) -> String {
        self.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    }

    /// The closing line of a report: how many errors (and warnings, listed beside them) there are.
    pub fn summary(&self) -> String {
        let errors = self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
        match self.diagnostics.len() - errors {
            0 => format!("{errors} error(s); nothing would be served"),
            warnings => format!("{errors} error(s) and {warnings} warning(s); nothing would be served"),
        }
    }
}

impl Config {
    /// Reads and validates a file, resolving `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|e| ConfigError {
            diagnostics: vec![Diagnostic {
                file: Some(path.to_owned()),
                ..Diagnostic::error("", format!("cannot read config: {e}"))
            }],
        })?;
        Config::from_source(&source, Some(path), &|name| std::env::var(name).ok())
    }

    /// The embedded default; routes `openai/*` to OpenAI only when `OPENAI_API_KEY` is set, so
    /// the keyless quick start has no disabled upstream to warn about.
    pub fn embedded() -> Result<Config, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        let source = match env("OPENAI_API_KEY") {
            Some(key) if !key.is_empty() => format!("{EMBEDDED_DEFAULT}\n{EMBEDDED_OPENAI}"),
            _ => EMBEDDED_DEFAULT.to_owned(),
        };
        Config::from_source(&source, None, &env)
    }

    /// Validates a source text; `env` resolves `${VAR}` references.
    pub fn from_source(
        source: &str,
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        validate::validate(source, file, env)
    }

    /// Upstreams usable right now.
    pub fn usable_upstreams(&self) -> usize {
        self.upstreams.len()
    }

    /// What validation skipped or warned about, as one line; `None` for a clean config.
    pub fn problems_summary(&self) -> Option<String> {
        if self.warnings.is_empty() {
            return None;
        }
        // Disabled upstreams and skipped keys each have their diagnostic in `warnings` too.
        let other = self.warnings.len().saturating_sub(self.disabled.len() + self.skipped_keys.len());
        let parts: Vec<String> = [
            (self.disabled.len(), "upstream(s) disabled"),
            (self.skipped_keys.len(), "client key(s) skipped"),
            (other, "other warning(s)"),
        ]
        .into_iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, what)| format!("{count} {what}"))
        .collect();
        Some(format!("{}; the rest would be served", parts.join(", ")))
    }
}
