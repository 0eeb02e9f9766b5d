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
    secrets: Vec<String>,
}

/// What a secret is replaced with.
const REDACTED: &[u8] = b"[redacted]";

/// How much of a secret's beginning is redacted where the text goes on differently: an excerpt
/// cut short inside a quoted key, or an upstream that quotes only part of one, must not show
/// most of it. A shorter quote shows little beyond a vendor's public prefix (`sk-proj-` alone is
/// eight bytes).
const LEAD: usize = 8;

impl Redactor {
    /// A redactor for `values`; values shorter than six bytes are ignored: they would blank out
    /// ordinary words, and real secrets are longer.
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        // An error body is mostly JSON, which may quote a secret escaped: `\/` for the `/` an AWS
        // secret key holds, or `\"` and `\\`.
        let escaped = |value: &String| {
            let json = serde_json::to_string(value).unwrap_or_default();
            let json = json[1..json.len() - 1].to_owned();
            [json.replace('/', "\\/"), json]
        };
        let mut secrets: Vec<String> = values
            .into_iter()
            .filter(|value| value.len() >= 6)
            .flat_map(|value| {
                let [slashes, json] = escaped(&value);
                [value, slashes, json]
            })
            .collect();
        secrets.sort_unstable();
        secrets.dedup();
        Redactor { secrets }
    }

    /// `text` with every secret replaced, or `None` when it holds none. A quote of a secret's
    /// first [`LEAD`] bytes or more is replaced as far as it goes: where two secrets begin alike
    /// (two keys of one vendor), the longer quote wins, so that neither shows what follows the
    /// other's part.
    pub fn bytes(&self, text: &[u8]) -> Option<Vec<u8>> {
        let mut quotes: Vec<(usize, usize)> = Vec::new();
        for secret in &self.secrets {
            let secret = secret.as_bytes();
            let lead = memchr::memmem::Finder::new(&secret[..secret.len().min(LEAD)]);
            let mut from = 0;
            while let Some(found) = lead.find(&text[from..]) {
                let start = from + found;
                let quoted = text[start..].iter().zip(secret).take_while(|(a, b)| a == b).count();
                quotes.push((start, start + quoted));
                from = start + 1;
            }
        }
        if quotes.is_empty() {
            return None;
        }
        quotes.sort_unstable();
        let mut out = Vec::with_capacity(text.len());
        let mut shown = 0;
        for (start, end) in quotes {
            if start < shown {
                // Overlaps the quote just replaced: the replacement covers it, as far as it goes.
                shown = shown.max(end);
                continue;
            }
            out.extend_from_slice(&text[shown..start]);
            out.extend_from_slice(REDACTED);
            shown = end;
        }
        out.extend_from_slice(&text[shown..]);
        Some(out)
    }

    /// [`Redactor::bytes`] for text.
    pub fn text(&self, text: &str) -> Option<String> {
        // Whole UTF-8 sequences are replaced by ASCII, so the result is still UTF-8.
        self.bytes(text.as_bytes()).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Why a `${VAR}` reference could not be expanded. No variant holds the text after a default's
/// operator or after an unclosed `${`, nor braces that hold no variable's name: that text may be
/// a secret written inline. A name that looks like a credential is held but not shown
/// ([`shown_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarError {
    /// `${NAME}` where `NAME` is not in the environment.
    Unset(String),
    /// `${...}` whose braces hold something other than a variable's name, such as a key pasted
    /// in place of one.
    NotAName,
    /// `${NAME}` where `NAME` is set to nothing but whitespace.
    Empty(String),
    /// `${` without a closing `}`; the name, when what follows is one.
    Unclosed(Option<String>),
    /// A shell form such as `${NAME:-default}`: the operator, e.g. `:-`.
    ShellForm { name: String, operator: String },
}

impl fmt::Display for VarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VarError::Unset(name) => match shown_name(name) {
                Some(name) => write!(f, "${{{name}}} is not set"),
                None => f.write_str(LOOKS_LIKE_A_CREDENTIAL),
            },
            VarError::NotAName => f.write_str(
                "a `${...}` holds something other than an environment variable's name (not shown: it may be a secret)",
            ),
            VarError::Empty(name) => write!(f, "${{{name}}} is empty"),
            VarError::Unclosed(Some(name)) => write!(f, "`${{{name}` has no closing `}}`"),
            VarError::Unclosed(None) => f.write_str("a `${` has no closing `}`"),
            VarError::ShellForm { name, operator } => {
                write!(f, "`${{{name}{operator}...}}` is a shell form; only ${{{name}}} is supported")
            }
        }
    }
}

impl VarError {
    /// What to do about it.
    pub fn suggestion(&self) -> String {
        match self {
            VarError::Unset(name) if shown_name(name).is_some() => format!("export {name}=... or remove the reference"),
            VarError::Unset(_) | VarError::NotAName => {
                "put the value in an environment variable and write its name, e.g. ${OPENAI_API_KEY}".to_owned()
            }
            VarError::Empty(name) => format!("give {name} a value (it is set, but empty) or remove the reference"),
            VarError::Unclosed(Some(name)) => format!("write ${{{name}}}"),
            VarError::Unclosed(None) => "write ${NAME}".to_owned(),
            // A default for a secret would serve with the fallback when the secret is missing,
            // hiding exactly the mistake this diagnostic is for.
            VarError::ShellForm { name, .. } => {
                format!("write ${{{name}}} and export {name}=...; there are no defaults")
            }
        }
    }
}

const LOOKS_LIKE_A_CREDENTIAL: &str =
    "a `${...}` names a variable that is not set, and the name looks like a credential pasted in its place (not shown)";

/// A reference's name as diagnostics may show it: not at all when it looks like a credential
/// pasted where a name belongs (long, with lower-case letters and digits, as API tokens are;
/// variables are named in upper case), or long, upper case and digits with no `_` between words
/// (an AWS access key id), since diagnostics reach logs.
pub(super) fn shown_name(name: &str) -> Option<&str> {
    let digits = name.bytes().any(|b| b.is_ascii_digit());
    let mixed_case_token = name.len() >= 20 && digits && name.bytes().any(|b| b.is_ascii_lowercase());
    let upper_case_token = name.len() >= 16 && digits && !name.contains('_');
    (!(mixed_case_token || upper_case_token)).then_some(name)
}

/// Whether `text` can be an environment variable's name, as `${...}` expects.
fn is_var_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces every `${VAR}` in `text` using `env`, without the value's leading and trailing ASCII
/// whitespace: a Kubernetes Secret or a file written by `echo` ends in a newline, which no key,
/// URL or header value means to hold.
pub fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, VarError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(len) = after.find('}') else {
            return Err(VarError::Unclosed(
                (is_var_name(after) && shown_name(after).is_some()).then(|| after.to_owned()),
            ));
        };
        out.push_str(&rest[..start]);
        let inside = &after[..len];
        let name_len = inside.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(inside.len());
        let (name, tail) = inside.split_at(name_len);
        if is_var_name(name) {
            // Without its colon a shell operator is also how a pasted key reads (`${sk-proj-…}`):
            // taken as one only after an upper-case name, as variables are named.
            let bare_operators_too = !name.bytes().any(|b| b.is_ascii_lowercase());
            if let Some(operator) = [":-", ":=", ":?", ":+", "-", "=", "?", "+"]
                .iter()
                .filter(|op| op.starts_with(':') || bare_operators_too)
                .find(|op| tail.starts_with(**op))
            {
                return Err(VarError::ShellForm { name: name.to_owned(), operator: (*operator).to_owned() });
            }
        }
        if !is_var_name(inside) {
            return Err(VarError::NotAName);
        }
        let Some(value) = env(inside) else {
            return Err(VarError::Unset(inside.to_owned()));
        };
        match value.trim_ascii() {
            "" => return Err(VarError::Empty(inside.to_owned())),
            value => out.push_str(value),
        }
        rest = &after[len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The name in a value that is exactly `$NAME`: most likely a `${NAME}` missing its braces, which
/// would otherwise be used literally.
pub(super) fn bare_reference(text: &str) -> Option<&str> {
    text.strip_prefix('$').filter(|name| is_var_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_references_and_reports_missing_ones() {
        let env = |name: &str| (name == "KEY").then(|| "s3cret".to_owned());
        assert_eq!(expand("Bearer ${KEY}", &env).unwrap(), "Bearer s3cret");
        assert_eq!(expand("plain", &env).unwrap(), "plain");
        assert_eq!(expand("${NOPE}", &env), Err(VarError::Unset("NOPE".into())));
    }

    #[test]
    fn values_lose_surrounding_whitespace_only() {
        let env = |name: &str| match name {
            "KEY" => Some(" \tsk-a b\r\n".to_owned()),
            "BLANK" => Some("\n".to_owned()),
            _ => None,
        };
        assert_eq!(expand("Bearer ${KEY}!", &env).unwrap(), "Bearer sk-a b!");
        assert_eq!(expand("${BLANK}", &env), Err(VarError::Empty("BLANK".into())));
    }

    #[test]
    fn reference_mistakes_are_named_without_showing_what_follows() {
        let env = |name: &str| match name {
            "EMPTY" => Some(String::new()),
            "KEY" => Some("s3cret".to_owned()),
            _ => None,
        };
        assert_eq!(expand("${EMPTY}", &env), Err(VarError::Empty("EMPTY".into())));
        assert_eq!(expand("${C_KEY", &env), Err(VarError::Unclosed(Some("C_KEY".into()))));
        let unclosed = expand("${KEY}-${sk live", &env).unwrap_err();
        assert_eq!(unclosed, VarError::Unclosed(None));
        for (written, operator) in [("${A_KEY:-sk-fallback}", ":-"), ("${A_KEY-sk-fallback}", "-")] {
            let error = expand(written, &env).unwrap_err();
            assert_eq!(error, VarError::ShellForm { name: "A_KEY".into(), operator: operator.into() });
            let shown = format!("{error} {}", error.suggestion());
            assert!(!shown.contains("fallback") && shown.contains("export A_KEY="), "{shown}");
        }
        assert_eq!(VarError::Empty("EMPTY".into()).to_string(), "${EMPTY} is empty");
    }

    #[test]
    fn a_key_pasted_inside_the_braces_is_never_shown() {
        let env = |_: &str| None;
        let pasted =
            ["sk-proj-Xy12abCD34efGH56", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "wJalrXUtnFEMI/K7MDENG/bPxRfiCY"];
        for key in pasted {
            for written in [format!("${{{key}}}"), format!("Bearer ${{{key}}}"), format!("${{{key}")] {
                let error = expand(&written, &env).unwrap_err();
                let shown = format!("{error} {}", error.suggestion());
                assert!(!shown.contains(&key[4..]), "{shown}");
            }
        }
        assert_eq!(expand("${wJalrXUtnFEMI/K7MDENG/bPxRfiCY}", &env), Err(VarError::NotAName));
        // Not the shell form `${sk-default}`, whose advice would be to export a variable `sk`.
        assert_eq!(expand("${sk-proj-Xy12abCD34efGH56}", &env), Err(VarError::NotAName));
        assert!(matches!(expand("${openai_key:-x}", &env), Err(VarError::ShellForm { .. })));
        // A variable's name, however long, is shown: it is what the user has to export.
        let long = expand("${AZURE_OPENAI_API_KEY_EASTUS2_PRODUCTION}", &env).unwrap_err();
        assert_eq!(long.to_string(), "${AZURE_OPENAI_API_KEY_EASTUS2_PRODUCTION} is not set");
        assert_eq!(expand("${openai_key}", &env).unwrap_err().to_string(), "${openai_key} is not set");
        let access_key_id = expand("${AKIAIOSFODNN7EXAMPLE}", &env).unwrap_err();
        assert!(!format!("{access_key_id} {}", access_key_id.suggestion()).contains("IOSFODNN7"), "{access_key_id}");
    }

    #[test]
    fn a_bare_dollar_name_is_told_apart() {
        assert_eq!(bare_reference("$B_KEY"), Some("B_KEY"));
        for text in ["${B_KEY}", "$", "$5", "sk-$B_KEY", "$B KEY"] {
            assert_eq!(bare_reference(text), None, "{text}");
        }
    }

    #[test]
    fn every_secret_is_redacted_whole_where_one_begins_another() {
        let redactor =
            Redactor::new(["sk-live-123456".to_owned(), "sk-live-123456-extra".to_owned(), "short".to_owned()]);
        let shown =
            redactor.text("key sk-live-123456-extra, then sk-live-123456 twice: sk-live-123456; short").unwrap();
        assert_eq!(shown, "key [redacted], then [redacted] twice: [redacted]; short");
        assert_eq!(redactor.text("nothing here"), None);
    }

    #[test]
    fn a_quote_of_a_secret_s_beginning_is_redacted_as_far_as_it_goes() {
        let redactor = Redactor::new(["sk-proj-AAAA1111BBBB2222".to_owned()]);
        assert_eq!(redactor.text("Bearer sk-proj-AAAA11…").unwrap(), "Bearer [redacted]…");
        assert_eq!(redactor.text("key sk-proj-AAAA****2222 is wrong").unwrap(), "key [redacted]****2222 is wrong");
        assert_eq!(redactor.text("keys begin with sk-proj"), None);
    }

    #[test]
    fn of_two_secrets_that_begin_alike_the_longer_quote_wins() {
        let redactor = Redactor::new(["sk-proj-AAAAAAAAAAAA".to_owned(), "sk-proj-BBBBBBBBBBBB".to_owned()]);
        assert_eq!(redactor.text("a sk-proj-BBBBBB…").unwrap(), "a [redacted]…");
        assert_eq!(redactor.text("sk-proj-AAAAAAAAAAAAsk-proj-BBBBBBBBBBBB").unwrap(), "[redacted][redacted]");
    }

    #[test]
    fn a_secret_quoted_with_json_escapes_is_redacted_too() {
        let redactor = Redactor::new(["wJalr/K7MDENG+bPx\"RfiCY\\".to_owned()]);
        let body = r#"{"error":"bad signature for wJalr\/K7MDENG+bPx\"RfiCY\\ or wJalr/K7MDENG+bPx\"RfiCY\\"}"#;
        assert_eq!(redactor.text(body).unwrap(), r#"{"error":"bad signature for [redacted] or [redacted]"}"#);
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
