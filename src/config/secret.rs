//! Secrets and `${VAR}` references.

use std::fmt;

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
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("sk-123".into())), "<redacted>");
    }
}
