//! Secrets and `${VAR}` references.

use std::fmt;

use http::HeaderName;

/// A value that must never be printed: `Debug` and `Display` show `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Whether a header's name says its value is a credential: the auth and cookie headers, and any
/// name containing `key`, `secret`, `token`, `password` or `signature`.
pub fn is_credential_header(name: &HeaderName) -> bool {
    const NAMES: &[&str] = &["authorization", "proxy-authorization", "cookie"];
    const PARTS: &[&str] = &["key", "secret", "token", "password", "signature"];
    let name = name.as_str();
    NAMES.contains(&name) || PARTS.iter().any(|part| name.contains(part))
}

/// Replaces configured secrets with `[redacted]` in text that came from outside: an upstream's
/// error body may quote the request it got, credentials included.
#[derive(Debug, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is replaced whole.
    secrets: Vec<String>,
}

/// What a secret is replaced with.
const REDACTED: &[u8] = b"[redacted]";

impl Redactor {
    /// A redactor for `values`; values shorter than six bytes are ignored: they would blank out
    /// ordinary words, and real secrets are longer.
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = values.into_iter().filter(|value| value.len() >= 6).collect();
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// `text` with every secret replaced, or `None` when it holds none.
    pub fn bytes(&self, text: &[u8]) -> Option<Vec<u8>> {
        let mut changed: Option<Vec<u8>> = None;
        for secret in &self.secrets {
            let current = changed.as_deref().unwrap_or(text);
            if memchr::memmem::find(current, secret.as_bytes()).is_none() {
                continue;
            }
            let mut out = Vec::with_capacity(current.len());
            let mut rest = current;
            while let Some(at) = memchr::memmem::find(rest, secret.as_bytes()) {
                out.extend_from_slice(&rest[..at]);
                out.extend_from_slice(REDACTED);
                rest = &rest[at + secret.len()..];
            }
            out.extend_from_slice(rest);
            changed = Some(out);
        }
        changed
    }

    /// [`Redactor::bytes`] for text.
    pub fn text(&self, text: &str) -> Option<String> {
        // Whole UTF-8 sequences are replaced by ASCII, so the result is still UTF-8.
        self.bytes(text.as_bytes()).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// A `${VAR}` reference that is not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingVar(pub String);

/// Replaces every `${VAR}` in `text` using `env`.
pub fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, MissingVar> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else { break };
        out.push_str(&rest[..start]);
        let name = &rest[start + 2..start + 2 + len];
        match env(name) {
            Some(value) if !value.is_empty() => out.push_str(&value),
            _ => return Err(MissingVar(name.to_owned())),
        }
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_references_and_reports_missing_ones() {
        let env = |name: &str| (name == "KEY").then(|| "s3cret".to_owned());
        assert_eq!(expand("Bearer ${KEY}", &env).unwrap(), "Bearer s3cret");
        assert_eq!(expand("plain", &env).unwrap(), "plain");
        assert_eq!(expand("${NOPE}", &env), Err(MissingVar("NOPE".into())));
    }

    #[test]
    fn every_secret_is_redacted_longest_first() {
        let redactor =
            Redactor::new(["sk-live-123456".to_owned(), "sk-live-123456-extra".to_owned(), "short".to_owned()]);
        let shown =
            redactor.text("key sk-live-123456-extra, then sk-live-123456 twice: sk-live-123456; short").unwrap();
        assert_eq!(shown, "key [redacted], then [redacted] twice: [redacted]; short");
        assert_eq!(redactor.text("nothing here"), None);
    }

    #[test]
    fn credential_header_names_are_told_by_name() {
        for name in [
            "authorization",
            "proxy-authorization",
            "cookie",
            "x-api-key",
            "cf-access-client-secret",
            "x-auth-token",
            "x-db-password",
            "x-signature",
        ] {
            assert!(is_credential_header(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["x-team", "user-agent", "anthropic-version", "x-request-id"] {
            assert!(!is_credential_header(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("sk-123".into())), "<redacted>");
    }
}
