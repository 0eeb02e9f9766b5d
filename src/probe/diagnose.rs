//! From a failure to its class and the change that most likely fixes it.
//!
//! Probe failures arrive either as the relay's own [`RelayError`] (the HTTP steps run through
//! the same client and classification as real traffic) or from the lower-level connection steps;
//! both end as a [`Diagnosis`] naming a [`Class`] and, where one is known, a concrete fix written
//! as the config line to add.

use serde::Serialize;
use serde_json::Value;

use crate::error::{ErrorCode, RelayError};

/// A failure class, as printed and as found in `--json` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// The host name does not resolve.
    Dns,
    /// Nothing accepts connections at the address.
    ConnectRefused,
    /// The connection (or TLS handshake) did not complete in time.
    ConnectTimeout,
    /// The server's certificate does not chain to a trusted root.
    TlsUntrustedCertificate,
    /// The server's certificate expired (or is not valid yet).
    TlsCertificateExpired,
    /// The certificate is for another name.
    TlsNameMismatch,
    /// Any other TLS failure (no TLS on that port, protocol mismatch, ...).
    TlsHandshake,
    /// The egress proxy is unreachable or refused the tunnel.
    Proxy,
    /// 401, or 403 with an API error: the key is wrong or lacks access.
    Auth,
    /// 403/503 with an HTML page: a WAF or bot challenge in front of the API.
    WafBlock,
    /// `base_url` lacks its `/v1`.
    BaseUrlMissingV1,
    /// 404 that is not about the model: a wrong path.
    NotFound,
    /// The upstream does not serve the model.
    ModelNotFound,
    /// 400/422 naming a request parameter the upstream rejects.
    RejectedParameter,
    /// A stream whose response started but sent no event in time.
    StreamNoFirstEvent,
    /// No response in time.
    Timeout,
    /// 429.
    RateLimited,
    /// 5xx.
    UpstreamError,
    /// The connection was cut before a response.
    Reset,
    /// Any other non-2xx.
    HttpError,
    /// A 2xx whose body is not what the dialect expects, or a broken stream.
    InvalidResponse,
}

impl Class {
    /// The name as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Dns => "dns",
            Class::ConnectRefused => "connect_refused",
            Class::ConnectTimeout => "connect_timeout",
            Class::TlsUntrustedCertificate => "tls_untrusted_certificate",
            Class::TlsCertificateExpired => "tls_certificate_expired",
            Class::TlsNameMismatch => "tls_name_mismatch",
            Class::TlsHandshake => "tls_handshake",
            Class::Proxy => "proxy",
            Class::Auth => "auth",
            Class::WafBlock => "waf_block",
            Class::BaseUrlMissingV1 => "base_url_missing_v1",
            Class::NotFound => "not_found",
            Class::ModelNotFound => "model_not_found",
            Class::RejectedParameter => "rejected_parameter",
            Class::StreamNoFirstEvent => "stream_no_first_event",
            Class::Timeout => "timeout",
            Class::RateLimited => "rate_limited",
            Class::UpstreamError => "upstream_error",
            Class::Reset => "reset",
            Class::HttpError => "http_error",
            Class::InvalidResponse => "invalid_response",
        }
    }

    /// Whether later steps cannot succeed while this stands (they would only repeat it).
    pub fn stops_later_steps(self) -> bool {
        !matches!(
            self,
            Class::ModelNotFound
                | Class::RejectedParameter
                | Class::StreamNoFirstEvent
                | Class::RateLimited
                | Class::UpstreamError
                | Class::HttpError
                | Class::InvalidResponse
                | Class::NotFound
        )
    }
}

/// A classified failure.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    pub class: Class,
    /// The relay's error code for the same failure, as clients see it.
    pub code: ErrorCode,
    pub http_status: Option<u16>,
    pub message: String,
    pub fix: Option<String>,
}

impl Diagnosis {
    /// A diagnosis of a failure the probe met on its own; `code` is what the relay answers for it.
    pub fn new(class: Class, code: ErrorCode, message: impl Into<String>, fix: Option<String>) -> Self {
        Diagnosis { class, code, http_status: None, message: message.into(), fix }
    }
}

/// What the classification may use about the upstream and the step.
pub struct Context<'a> {
    pub upstream: &'a str,
    /// The base URL as configured, without credentials.
    pub base_url: &'a str,
    pub has_key: bool,
    /// The model asked for, if any.
    pub model: Option<&'a str>,
    /// The models the upstream listed, if it did.
    pub listed: Option<&'a [String]>,
    /// The failing step is the stream request, after the non-stream one succeeded.
    pub stream_after_chat_ok: bool,
    /// The relay asks for `stream_options.include_usage` on streams (`compat.stream_usage`).
    pub injects_stream_usage: bool,
}

/// The fix for a transport class, shared by the connection steps and the HTTP steps.
pub fn transport_fix(class: Class, ctx: &Context<'_>) -> Option<String> {
    let name = ctx.upstream;
    Some(match class {
        Class::Dns => format!(
            "check the host name in upstreams.{name}.base_url ({}); a private name needs this machine's resolver \
             (in a container: its DNS settings), and a host only reachable through a proxy needs HTTPS_PROXY or \
             proxy = \"http://host:port\"",
            ctx.base_url
        ),
        Class::ConnectRefused => format!(
            "nothing listens at {}: check the port in upstreams.{name}.base_url and that the server runs",
            ctx.base_url
        ),
        Class::ConnectTimeout => {
            "packets are dropped on the way: a firewall, or egress that must go through a proxy (set HTTPS_PROXY \
             or proxy = \"http://host:port\"); raise timeouts.connect only for a slow link"
                .to_owned()
        }
        Class::TlsUntrustedCertificate => format!(
            "the server's certificate is not signed by a trusted CA: add the CA that signed it (for a self-signed \
             certificate, the certificate itself) as upstreams.{name}.tls.ca_file = \"/path/ca.pem\", or set \
             tls.native_roots = true if the operating system trusts it"
        ),
        Class::TlsCertificateExpired => "the server's certificate is expired or not valid yet: renew it on the \
                                         server, or check this machine's clock"
            .to_owned(),
        Class::TlsNameMismatch => format!(
            "the certificate is for another name: use the host name it was issued for in upstreams.{name}.base_url"
        ),
        Class::TlsHandshake => "the TLS handshake failed: check that the port speaks TLS (if the server is plain \
                                HTTP, use http:// in base_url) and the server's TLS settings"
            .to_owned(),
        Class::Proxy => "check the proxy address (proxy = \"http://host:port\" or HTTPS_PROXY / HTTP_PROXY), its \
                         credentials (http://user:password@host:port), and that its policy allows this host; \
                         NO_PROXY lists hosts to reach directly"
            .to_owned(),
        Class::Reset => "the connection was cut before any response: a proxy or load balancer in between, or a \
                         server that crashed; retry, and check the server's logs"
            .to_owned(),
        _ => return None,
    })
}

/// Classifies a relay error from an HTTP step.
pub fn relay_error(error: &RelayError, ctx: &Context<'_>) -> Diagnosis {
    let body =
        error.passthrough_body.as_ref().and_then(|b| serde_json::from_slice::<Value>(b).ok()).unwrap_or(Value::Null);
    let class = match error.code {
        ErrorCode::UpstreamDns => Class::Dns,
        ErrorCode::UpstreamConnectRefused => Class::ConnectRefused,
        ErrorCode::UpstreamConnectTimeout => Class::ConnectTimeout,
        ErrorCode::UpstreamTls => tls_class_from_text(&error.message),
        ErrorCode::UpstreamProxy => Class::Proxy,
        ErrorCode::UpstreamReset => Class::Reset,
        ErrorCode::UpstreamBlocked403Html => Class::WafBlock,
        ErrorCode::UpstreamNonJsonError if error.status == 503 && error.message.contains("HTML") => Class::WafBlock,
        ErrorCode::UpstreamTimeoutFirstByte if ctx.stream_after_chat_ok => Class::StreamNoFirstEvent,
        ErrorCode::UpstreamTimeoutFirstByte | ErrorCode::UpstreamTimeoutIdle | ErrorCode::UpstreamTimeoutTotal => {
            Class::Timeout
        }
        ErrorCode::UpstreamRateLimited => Class::RateLimited,
        ErrorCode::UpstreamInvalidResponse | ErrorCode::UpstreamStreamError | ErrorCode::UpstreamStreamTruncated => {
            Class::InvalidResponse
        }
        _ => match error.status {
            401 => Class::Auth,
            403 if !body.is_null() => Class::Auth,
            404 if mentions_model(&body, &error.message) => Class::ModelNotFound,
            404 => Class::NotFound,
            400 | 422 if rejected_param(&body, &error.message).is_some() => Class::RejectedParameter,
            500..=599 => Class::UpstreamError,
            _ => Class::HttpError,
        },
    };
    let fix = match class {
        Class::Auth => Some(auth_fix(ctx)),
        Class::WafBlock => Some(
            "a WAF or bot challenge answers instead of the API; see the neutral_agent step for whether the \
             request's fingerprint (User-Agent, x-stainless-* headers) is the cause"
                .to_owned(),
        ),
        Class::NotFound => Some(not_found_fix(ctx)),
        Class::ModelNotFound => Some(model_fix(ctx)),
        Class::RejectedParameter => rejected_param(&body, &error.message).map(|p| param_fix(&p, &error.message, ctx)),
        Class::StreamNoFirstEvent => Some(format!(
            "the upstream answers without streaming but its streams send nothing: set upstreams.{}.stream = \
             \"simulate\" (the relay then asks without streaming and streams the answer itself)",
            ctx.upstream
        )),
        Class::Timeout => Some(format!(
            "the upstream did not answer in time: check that it is not overloaded, or raise \
             upstreams.{}.timeouts.first_byte",
            ctx.upstream
        )),
        Class::RateLimited => Some("the key is rate limited or out of quota: check the account's limits".to_owned()),
        Class::UpstreamError => Some("the upstream failed on its side: check its status or logs".to_owned()),
        other => transport_fix(other, ctx),
    };
    Diagnosis { class, code: error.code, http_status: Some(error.status), message: error.message.clone(), fix }
}

/// TLS errors reach the relay's classification as text; the probe's own TLS step sees the typed
/// rustls error, so this is only the fallback for HTTP steps.
fn tls_class_from_text(message: &str) -> Class {
    if message.contains("UnknownIssuer") || message.contains("unknown issuer") {
        Class::TlsUntrustedCertificate
    } else if message.contains("Expired") || message.contains("NotValidYet") {
        Class::TlsCertificateExpired
    } else if message.contains("NotValidForName") {
        Class::TlsNameMismatch
    } else {
        Class::TlsHandshake
    }
}

fn auth_fix(ctx: &Context<'_>) -> String {
    if ctx.has_key {
        format!(
            "the upstream rejects the key: check upstreams.{}.api_key (the variable it names holds this provider's \
             key, with access to the model), and `auth` if the provider expects another header",
            ctx.upstream
        )
    } else {
        format!("no key is configured: set upstreams.{}.api_key = \"${{YOUR_KEY_VAR}}\"", ctx.upstream)
    }
}

fn not_found_fix(ctx: &Context<'_>) -> String {
    let base = ctx.base_url.trim_end_matches('/');
    if base.ends_with("/v1") {
        format!("the path does not exist on the upstream: check upstreams.{}.base_url ({base})", ctx.upstream)
    } else {
        format!(
            "the path does not exist on the upstream: OpenAI-compatible APIs usually live under /v1, try \
             upstreams.{}.base_url = \"{base}/v1\"",
            ctx.upstream
        )
    }
}

fn model_fix(ctx: &Context<'_>) -> String {
    let model = ctx.model.unwrap_or("the model");
    match ctx.listed {
        Some(listed) if !listed.is_empty() => {
            let shown: Vec<&str> = listed.iter().take(20).map(String::as_str).collect();
            let more = if listed.len() > shown.len() {
                format!(" and {} more", listed.len() - shown.len())
            } else {
                String::new()
            };
            format!(
                "the upstream does not serve {model:?}; it lists: {}{more}. Set the target's model = \"{}\" (in [[models]])",
                shown.join(", "),
                shown[0]
            )
        }
        _ => {
            format!("the upstream does not serve {model:?}: check the model name with the provider")
        }
    }
}

/// The first 404 body or message words that point at the model rather than the path.
fn mentions_model(body: &Value, message: &str) -> bool {
    let code = body.pointer("/error/code").and_then(Value::as_str).unwrap_or_default();
    code.contains("model") || message.to_ascii_lowercase().contains("model")
}

/// The request parameter an upstream's 400/422 names, top-level name first as sent.
pub fn rejected_param(body: &Value, message: &str) -> Option<String> {
    if let Some(param) = body.pointer("/error/param").and_then(Value::as_str).filter(|p| !p.is_empty()) {
        return Some(param.to_owned());
    }
    // FastAPI/pydantic: {"detail": [{"loc": ["body", "store"], "msg": "Extra inputs are not permitted"}]}
    if let Some(loc) = body.pointer("/detail/0/loc").and_then(Value::as_array) {
        let names: Vec<&str> = loc.iter().filter_map(Value::as_str).filter(|p| *p != "body").collect();
        if !names.is_empty() {
            return Some(names.join("."));
        }
    }
    const AFTER: &[&str] = &[
        "argument supplied: ",
        "Unsupported parameter: ",
        "Unknown parameter: ",
        "unknown field ",
        "Unrecognized parameter: ",
        "unexpected keyword argument ",
    ];
    for marker in AFTER {
        if let Some(at) = message.find(marker) {
            let rest = message[at + marker.len()..].trim_start_matches(['\'', '"', '`']);
            let name: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']')).collect();
            if !name.is_empty() {
                return Some(name);
            }
        }
    }
    if message.contains("'developer'") || message.contains("developer role") {
        return Some("messages".to_owned());
    }
    None
}

/// The compat setting that keeps `param` from reaching the upstream.
fn param_fix(param: &str, message: &str, ctx: &Context<'_>) -> String {
    let name = ctx.upstream;
    let top = param.split(['.', '[']).next().unwrap_or(param);
    let setting = if message.contains("developer") {
        "compat.developer_role = \"system\"".to_owned()
    } else if param.contains("strict") {
        "compat.strip_tool_strict = true".to_owned()
    } else {
        match top {
            "max_completion_tokens" => "compat.max_tokens_field = \"max_tokens\"".to_owned(),
            "max_tokens" => "compat.max_tokens_field = \"max_completion_tokens\"".to_owned(),
            "stream_options" if ctx.injects_stream_usage => "compat.stream_usage = false".to_owned(),
            "messages" | "model" => {
                return format!("the upstream rejects {param}: {}", message.chars().take(200).collect::<String>())
            }
            other => format!("compat.drop_params = [\"{other}\"]"),
        }
    };
    format!("the upstream rejects the parameter {param:?}: set {setting} in [upstreams.{name}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        Context {
            upstream: "up",
            base_url: "http://127.0.0.1:1",
            has_key: true,
            model: Some("m"),
            listed: None,
            stream_after_chat_ok: false,
            injects_stream_usage: true,
        }
    }

    fn http(status: u16, body: &str) -> RelayError {
        let mut error = RelayError::new(ErrorCode::UpstreamHttpError, "x").with_status(status);
        error.passthrough_body = Some(bytes::Bytes::from(body.to_owned()));
        error.message = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        error
    }

    #[test]
    fn rejected_parameters_map_to_their_compat_setting() {
        let cases = [
            (
                r#"{"error":{"message":"Unrecognized request argument supplied: max_completion_tokens","param":null}}"#,
                "max_tokens_field = \"max_tokens\"",
            ),
            (r#"{"error":{"message":"Unsupported parameter: 'store'","param":"store"}}"#, "drop_params = [\"store\"]"),
            (
                r#"{"error":{"message":"Invalid value: 'developer'","param":"messages[0].role"}}"#,
                "developer_role = \"system\"",
            ),
            (
                r#"{"error":{"message":"unknown field `strict`","param":"tools[0].function.strict"}}"#,
                "strip_tool_strict = true",
            ),
            (r#"{"error":{"message":"stream_options not allowed","param":"stream_options"}}"#, "stream_usage = false"),
            (
                r#"{"detail":[{"loc":["body","store"],"msg":"Extra inputs are not permitted"}]}"#,
                "drop_params = [\"store\"]",
            ),
        ];
        for (body, setting) in cases {
            let diagnosis = relay_error(&http(400, body), &ctx());
            assert_eq!(diagnosis.class, Class::RejectedParameter, "{body}");
            assert!(diagnosis.fix.as_deref().unwrap().contains(setting), "{body}: {:?}", diagnosis.fix);
        }
    }

    #[test]
    fn auth_model_and_path_404s_are_told_apart() {
        assert_eq!(relay_error(&http(401, r#"{"error":{"message":"bad key"}}"#), &ctx()).class, Class::Auth);
        assert_eq!(relay_error(&http(403, r#"{"error":{"message":"no access"}}"#), &ctx()).class, Class::Auth);
        let listed = vec!["real-1".to_owned()];
        let with_list = Context { listed: Some(&listed), ..ctx() };
        let model = relay_error(
            &http(404, r#"{"error":{"message":"The model `m` does not exist","code":"model_not_found"}}"#),
            &with_list,
        );
        assert_eq!(model.class, Class::ModelNotFound);
        assert!(model.fix.unwrap().contains("real-1"));
        let path = RelayError::new(ErrorCode::UpstreamNonJsonError, "404 page not found").with_status(404);
        let diagnosis = relay_error(&path, &ctx());
        assert_eq!(diagnosis.class, Class::NotFound);
        assert!(diagnosis.fix.unwrap().contains("http://127.0.0.1:1/v1"));
    }
}
