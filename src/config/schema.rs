//! The TOML file as written: serde structs that reject unknown keys. Nothing here is trusted;
//! `validate` turns a [`RawConfig`] into a [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// Each upstream is checked on its own, so one invalid upstream cannot fail the file. `None`
    /// when the file has no `[upstreams]` table, the one case where `providers` stands in for it.
    pub upstreams: Option<BTreeMap<String, toml::Value>>,
    /// Other gateways' name for `upstreams`, accepted so that such a file serves (with a warning)
    /// until `doctor --fix` renames it.
    pub providers: Option<BTreeMap<String, toml::Value>>,
    #[serde(default)]
    pub models: Vec<RawModel>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub shutdown_grace: Option<String>,
    pub allow_unauthenticated: Option<bool>,
    pub keepalive_interval: Option<String>,
}

/// `[[keys]]`: a client key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub name: String,
    pub key: Option<String>,
    pub sha256: Option<String>,
    pub models: Option<Vec<String>>,
}

/// `[upstreams.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub dialect: String,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub auth: Option<String>,
    pub user_agent: Option<String>,
    #[serde(default)]
    pub headers: RawHeaders,
    pub keep_sdk_headers: Option<bool>,
    #[serde(default)]
    pub compat: RawCompat,
    #[serde(default)]
    pub tls: RawTls,
    pub proxy: Option<String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub retry: RawRetry,
    pub stream: Option<String>,
    #[serde(default)]
    pub health: Option<RawHealthCheck>,
    pub anthropic_version: Option<String>,
    pub default_max_tokens: Option<u64>,
    pub api_version: Option<String>,
    pub deployment: Option<String>,
    pub region: Option<String>,
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    pub aws_session_token: Option<String>,
    pub drop_unsupported: Option<bool>,
}

/// `[upstreams.NAME.headers]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `[upstreams.NAME.compat]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompat {
    pub developer_role: Option<String>,
    pub max_tokens_field: Option<String>,
    #[serde(default)]
    pub drop_params: Vec<String>,
    pub strip_tool_strict: Option<bool>,
    pub stream_usage: Option<bool>,
}

/// `[upstreams.NAME.tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<String>,
    pub native_roots: Option<bool>,
}

/// Timeouts, on an upstream or a model target.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<String>,
    pub first_byte: Option<String>,
    pub idle: Option<String>,
    pub total: Option<String>,
}

/// `[upstreams.NAME.retry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub attempts: Option<u32>,
    pub backoff_base: Option<String>,
    pub backoff_max: Option<String>,
    pub retry_after_max: Option<String>,
    pub budget_ratio: Option<f32>,
}

/// `[upstreams.NAME.health]`: optional active checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub interval: Option<String>,
    pub path: Option<String>,
    pub expect_status: Option<u16>,
}

/// `[[models]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: String,
    pub targets: Vec<RawTarget>,
    pub strategy: Option<String>,
    pub failover_on: Option<Vec<String>>,
}

/// One target of a model.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub upstream: Option<String>,
    /// Other gateways' name for `upstream`, accepted with a warning until `doctor --fix`
    /// renames it.
    pub provider: Option<String>,
    pub model: Option<String>,
    pub weight: Option<u32>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
}
