//! `RawConfig` -> [`Config`]: every check, every default, and the only constructor of `Config`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};
use sha2::{Digest, Sha256};

use super::diagnostic::{did_you_mean, Diagnostic, Locator};
use super::schema::{RawConfig, RawKey, RawModel, RawTimeouts, RawUpstream};
use super::secret::{bare_reference, expand, is_credential_header, shown_name, VarError};
use super::{
    AwsParams, Config, ConfigError, Glob, HealthCheckParams, KeyParams, ModelParams, ModelPattern, RetryParams, Secret,
    ServerParams, Strategy, StreamMode, TargetParams, Timeouts, TlsParams, UpstreamParams,
};
use crate::dialect::openai::{Compat, MaxTokensField};
use crate::dialect::{AuthStyle, DialectKind, DialectOptions};

/// Dialect values from earlier releases and other gateways, with what they mean now and, where
/// the old value was ambiguous, what else it might have meant.
pub const LEGACY_DIALECTS: &[(&str, &str, Option<&str>)] = &[
    ("openai", "openai-completions", Some("openai-responses")),
    ("openai-chat", "openai-completions", None),
    ("openai-compatible", "openai-completions", None),
    ("anthropic", "anthropic-messages", None),
    ("claude", "anthropic-messages", None),
    ("gemini", "google-generative-ai", None),
    ("google", "google-generative-ai", None),
    ("azure", "azure-openai-completions", Some("azure-openai-responses")),
    ("azure-openai", "azure-openai-completions", Some("azure-openai-responses")),
    ("bedrock", "bedrock-converse-stream", None),
    ("responses", "openai-responses", None),
    ("copilot", "github-copilot", None),
];

/// Error classes that move a request on to the next target unless `failover_on` says otherwise.
pub const RETRYABLE_BY_DEFAULT: &[&str] =
    &["connect", "timeout", "reset", "429", "5xx", "disabled", "invalid_response"];

/// Every class name `failover_on` accepts.
const FAILOVER_CLASSES: &[&str] = &[
    "connect",
    "timeout",
    "reset",
    "429",
    "5xx",
    "disabled",
    "invalid_response",
    "400",
    "401",
    "403",
    "404",
    "422",
    "4xx",
    "stream",
];

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_BODY: u64 = 32 * 1024 * 1024;

struct Checker<'a> {
    file: Option<&'a Path>,
    locator: Locator<'a>,
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Diagnostic>,
    fatal: bool,
}

impl Checker<'_> {
    fn place(&self, mut diagnostic: Diagnostic) -> Diagnostic {
        diagnostic.file = self.file.map(Path::to_owned);
        if diagnostic.location.is_none() {
            diagnostic.location = self.locator.locate(&diagnostic.path);
        }
        diagnostic
    }

    /// A problem that stops the whole file from being served.
    fn fatal(&mut self, diagnostic: Diagnostic) {
        self.fatal = true;
        let diagnostic = self.place(diagnostic);
        self.problems.push(diagnostic);
    }

    /// A problem confined to one part (an upstream, a key, a model), which is skipped.
    fn contained(&mut self, diagnostic: Diagnostic) {
        let diagnostic = self.place(diagnostic);
        self.problems.push(diagnostic);
    }

    fn duration(&mut self, path: &str, text: Option<&String>, default: Duration) -> Duration {
        match text {
            None => default,
            Some(text) => parse_duration(text).unwrap_or_else(|| {
                self.fatal(Diagnostic::error(path, format!("{text:?} is not a duration")).suggest(DURATION_HELP));
                default
            }),
        }
    }

    fn expand(&self, text: &str) -> Result<String, VarError> {
        expand(text, self.env)
    }

    /// Warns about a value that is exactly `$NAME`, which is used as written.
    fn warn_if_bare_reference(&mut self, path: &str, owner: &str, text: &str) {
        let Some(name) = bare_reference(text) else { return };
        // A key that happens to start with `$` looks like a reference too, and is not shown.
        let diagnostic = match shown_name(name) {
            Some(name) => {
                Diagnostic::warning(path, format!("{owner} uses \"${name}\" as written, not the variable {name}"))
                    .suggest(format!("did you mean ${{{name}}}?"))
            }
            None => Diagnostic::warning(path, format!("{owner} uses a value starting with `$` as written"))
                .suggest("if it names a variable, write it as ${NAME}; if it is the key itself, ignore this"),
        };
        self.contained(diagnostic);
    }
}

const DURATION_HELP: &str = "write a number with a unit: \"250ms\", \"30s\", \"5m\", \"1h\"";

/// The first control character in a secret, if any: a key is one line of printable text, and a
/// header cannot carry a line break, so such a key would never authenticate anything.
fn control_character(secret: &str) -> Option<char> {
    secret.chars().find(|c| c.is_control())
}

/// The message for a secret holding `c`; the secret itself is never shown.
fn holds_control_character(what: &str, c: char) -> String {
    format!("{what} contains a control character (U+{:04X})", u32::from(c))
}

const CONTROL_CHARACTER_HELP: &str =
    "a key is one line of printable characters: check the variable or file it comes from";

/// A URL as a diagnostic may show it: without its user-info or its query, either of which can
/// hold a credential. Works on text, since it must also cover URLs that do not parse.
fn shown_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(scheme, rest)| (scheme, rest));
    // The last `@`, wherever it is: a password may hold a `/`, and a path rarely holds an `@`.
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host_and_path)| host_and_path);
    if scheme.is_empty() {
        rest.to_owned()
    } else {
        format!("{scheme}://{rest}")
    }
}

/// Parses `250ms`, `30s`, `5m`, `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Names listed in a serde "expected one of `a`, `b`" message.
fn expected_names(message: &str) -> Vec<&str> {
    match message.find("expected one of") {
        Some(start) => message[start..].split('`').skip(1).step_by(2).collect(),
        None => Vec::new(),
    }
}

/// The field named in a serde "unknown field `x`" message.
fn unknown_field(message: &str) -> Option<&str> {
    let start = message.find("unknown field `")? + "unknown field `".len();
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// The first error in each part of a file that is TOML but not a config: serde stops at the
/// file's first, so each top-level table, and each `[[keys]]` and `[[models]]` entry, is read
/// again on its own, and a file with a typo in three places reports all three at once.
fn part_errors(table: &toml::Table) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    for (name, value) in table {
        match (name.as_str(), value.as_array()) {
            ("keys", Some(entries)) => errors.extend(
                entries.iter().enumerate().filter_map(|(i, entry)| first_error::<RawKey>(entry, &format!("keys.{i}"))),
            ),
            ("models", Some(entries)) => errors.extend(
                entries
                    .iter()
                    .enumerate()
                    .filter_map(|(i, entry)| first_error::<RawModel>(entry, &format!("models.{i}"))),
            ),
            // The rest (an unknown table among them) as a file holding only that part.
            _ => {
                let alone = toml::Value::Table(toml::Table::from_iter([(name.clone(), value.clone())]));
                errors.extend(first_error::<RawConfig>(&alone, ""));
            }
        }
    }
    errors
}

/// Reads one part of the file as a `T`. A `toml::Value` has no spans, so a failure is the dotted
/// path of the key that failed, nested ones and unknown ones included (`retry.attemps`; empty
/// for the value itself), which the locator places, and serde's message.
fn read_part<T: serde::de::DeserializeOwned>(value: &toml::Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value.clone()).map_err(|error| {
        let key = match error.path().to_string() {
            root if root == "." => String::new(),
            path => path,
        };
        (key, without_values(error.into_inner().message().trim()))
    })
}

/// A serde message without the value it quotes: the value may be a key pasted into the wrong
/// place (`keys = ["sk-…"]`), and the message reaches `check`, the log and `/readyz`. The
/// location already points at the value.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let string = rest.find("string \"").map(|at| (at, "string \"".len()));
        let variant = rest.find("variant `").map(|at| (at, "variant `".len()));
        let Some((at, len)) = [string, variant].into_iter().flatten().min() else { break };
        let opening = rest.as_bytes()[at + len - 1];
        out.push_str(&rest[..at + len - 2]);
        let quoted = &rest[at + len..];
        // A string is shown escaped (`{:?}`), so its end is the first quote that is not escaped;
        // a variant is shown as written, so its end is the last backtick before the expectation.
        let end = if opening == b'"' {
            let mut escaped = false;
            quoted.char_indices().find_map(|(i, c)| match c {
                '\\' if !escaped => {
                    escaped = true;
                    None
                }
                '"' if !escaped => Some(i),
                _ => {
                    escaped = false;
                    None
                }
            })
        } else {
            quoted.rfind("`, expected").or_else(|| quoted.rfind('`'))
        };
        let Some(end) = end else {
            rest = "";
            break;
        };
        rest = &quoted[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The first error reading `value` as a `T`, at its key's path under `prefix`.
fn first_error<T: serde::de::DeserializeOwned>(value: &toml::Value, prefix: &str) -> Option<Diagnostic> {
    let (key, message) = read_part::<T>(value).err()?;
    let path = match (prefix, key.as_str()) {
        (prefix, "") => prefix.to_owned(),
        ("", _) => key,
        (prefix, key) => format!("{prefix}.{key}"),
    };
    let suggestion = suggestion_for_unknown(&message);
    Some(Diagnostic { suggestion, ..Diagnostic::error(path, message) })
}

fn suggestion_for_unknown(message: &str) -> Option<String> {
    let field = unknown_field(message)?;
    let names = expected_names(message);
    Some(match did_you_mean(field, names.iter().copied()) {
        Some(close) => format!("did you mean `{close}`?"),
        None => format!("remove `{field}`; known keys here: {}", names.join(", ")),
    })
}

pub(super) fn validate(
    source: &str,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut checker = Checker { file, locator: Locator::new(source), env, problems: Vec::new(), fatal: false };
    let raw: RawConfig = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(error) => {
            let mut each_part = source.parse::<toml::Table>().map(|table| part_errors(&table)).unwrap_or_default();
            each_part.sort_by_cached_key(|diagnostic| checker.locator.locate(&diagnostic.path));
            if each_part.is_empty() {
                let message = without_values(error.message().trim());
                let mut diagnostic = Diagnostic::error("", message.clone());
                diagnostic.location = error.span().map(|span| checker.locator.line_col(span.start));
                diagnostic.suggestion = suggestion_for_unknown(&message);
                checker.fatal(diagnostic);
            }
            for diagnostic in each_part {
                checker.fatal(diagnostic);
            }
            // What the upstreams' own tables hold is reported too, so that one run of `check`
            // lists every problem rather than the next one after each fix.
            if let Ok(table) = source.parse::<toml::Table>() {
                for (name, value) in table.get("upstreams").and_then(toml::Value::as_table).into_iter().flatten() {
                    if let Err(diagnostic) = check_upstream(&mut checker, "upstreams", name, value) {
                        checker.contained(diagnostic);
                    }
                }
            }
            return Err(ConfigError { diagnostics: checker.problems });
        }
    };

    let server = check_server(&mut checker, &raw);
    let (keys, skipped_keys) = check_keys(&mut checker, &raw);
    let (table, written_upstreams) = upstream_table(&mut checker, &raw);
    let mut upstreams = BTreeMap::new();
    let mut disabled = BTreeMap::new();
    for (name, value) in written_upstreams {
        match check_upstream(&mut checker, table, name, value) {
            Ok(params) => {
                upstreams.insert(name.clone(), params);
            }
            Err(diagnostic) => {
                let diagnostic = checker.place(diagnostic);
                checker.problems.push(diagnostic.clone());
                disabled.insert(name.clone(), diagnostic);
            }
        }
    }
    let models = check_models(&mut checker, &raw, &upstreams, &disabled);

    if checker.fatal {
        return Err(ConfigError { diagnostics: checker.problems });
    }
    Ok(Config {
        server,
        keys,
        auth_required: !raw.keys.is_empty(),
        skipped_keys,
        upstreams,
        disabled,
        models,
        warnings: checker.problems,
        source: file.map(Path::to_owned),
    })
}

fn check_server(checker: &mut Checker<'_>, raw: &RawConfig) -> ServerParams {
    let server = &raw.server;
    let mut address = |path: &str, text: &str| -> Option<SocketAddr> {
        match text.parse() {
            Ok(address) => Some(address),
            Err(_) => {
                checker.fatal(
                    Diagnostic::error(path, format!("{text:?} is not an address"))
                        .suggest("write IP:port, e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\""),
                );
                None
            }
        }
    };
    let listen = address("server.listen", server.listen.as_deref().unwrap_or(DEFAULT_LISTEN))
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let admin_listen = server.admin_listen.as_deref().and_then(|text| address("server.admin_listen", text));
    let max_body = server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if max_body < 1024 {
        checker.fatal(
            Diagnostic::error("server.max_body_bytes", "must be at least 1024")
                .suggest("the default is 33554432 (32 MiB)"),
        );
    }
    ServerParams {
        listen,
        admin_listen,
        max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
        shutdown_grace: checker.duration(
            "server.shutdown_grace",
            server.shutdown_grace.as_ref(),
            Duration::from_secs(30),
        ),
        allow_unauthenticated: server.allow_unauthenticated.unwrap_or(false),
        keepalive_interval: checker.duration(
            "server.keepalive_interval",
            server.keepalive_interval.as_ref(),
            Duration::from_secs(15),
        ),
    }
}

/// The usable client keys, and the names of those skipped with a warning.
fn check_keys(checker: &mut Checker<'_>, raw: &RawConfig) -> (Vec<KeyParams>, Vec<String>) {
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (index, key) in raw.keys.iter().enumerate() {
        let path = format!("keys.{index}");
        if keys.iter().any(|k: &KeyParams| k.name == key.name) || skipped.contains(&key.name) {
            checker.fatal(Diagnostic::error(format!("{path}.name"), format!("duplicate key name {:?}", key.name)));
            continue;
        }
        let sha256 = match (&key.key, &key.sha256) {
            (Some(value), None) => match checker.expand(value) {
                Ok(expanded) => {
                    checker.warn_if_bare_reference(&format!("{path}.key"), &format!("key {:?}", key.name), value);
                    // A client's key is read without its surrounding spaces, so this one could
                    // only ever match an empty key, which is never taken.
                    if expanded.trim().is_empty() {
                        let help = "key = \"${MY_KEY_VAR}\", with the variable holding the key";
                        skip_key(checker, &mut skipped, format!("{path}.key"), &key.name, "it is empty", help);
                        continue;
                    }
                    if let Some(c) = control_character(&expanded) {
                        let why = holds_control_character("the key", c);
                        skip_key(checker, &mut skipped, format!("{path}.key"), &key.name, why, CONTROL_CHARACTER_HELP);
                        continue;
                    }
                    Sha256::digest(expanded.as_bytes()).into()
                }
                Err(error) => {
                    let suggestion = match &error {
                        VarError::Unset(var) if shown_name(var).is_some() => {
                            format!("export {var}=... before starting, or use `sha256 = \"...\"`")
                        }
                        VarError::Empty(var) => {
                            format!("give {var} the key (it is set, but empty), or use `sha256 = \"...\"`")
                        }
                        _ => error.suggestion(),
                    };
                    skip_key(checker, &mut skipped, format!("{path}.key"), &key.name, error, suggestion);
                    continue;
                }
            },
            (None, Some(hex_digest)) => match hex::decode(hex_digest).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                Some(digest) if digest == <[u8; 32]>::from(Sha256::digest(b"")) => {
                    let why = "this is the digest of an empty key";
                    let help = "compute it from the key itself: printf %s \"$KEY\" | sha256sum";
                    skip_key(checker, &mut skipped, format!("{path}.sha256"), &key.name, why, help);
                    continue;
                }
                Some(digest) => digest,
                None => {
                    checker.fatal(
                        Diagnostic::error(format!("{path}.sha256"), "not a SHA-256 hex digest (64 hex characters)")
                            .suggest("compute one with: printf %s \"$KEY\" | sha256sum"),
                    );
                    continue;
                }
            },
            _ => {
                checker.fatal(
                    Diagnostic::error(
                        path.clone(),
                        format!("key {:?} needs exactly one of `key` or `sha256`", key.name),
                    )
                    .suggest("key = \"${MY_KEY_VAR}\""),
                );
                continue;
            }
        };
        let models = key.models.clone().unwrap_or_else(|| vec!["*".into()]);
        keys.push(KeyParams { name: key.name.clone(), sha256, models: models.iter().map(|m| Glob::new(m)).collect() });
    }
    (keys, skipped)
}

/// Skips a client key with a warning saying why; the other keys serve.
fn skip_key(
    checker: &mut Checker<'_>,
    skipped: &mut Vec<String>,
    path: String,
    name: &str,
    why: impl std::fmt::Display,
    help: impl Into<String>,
) {
    checker.contained(Diagnostic::warning(path, format!("key {name:?} is disabled: {why}")).suggest(help));
    skipped.push(name.to_owned());
}

/// Which table holds the upstreams, `upstreams` or a legacy `providers`, and its entries.
fn upstream_table<'r>(
    checker: &mut Checker<'_>,
    raw: &'r RawConfig,
) -> (&'static str, Vec<(&'r String, &'r toml::Value)>) {
    let upstreams = raw.upstreams.iter().flatten().collect();
    let Some(providers) = &raw.providers else {
        return ("upstreams", upstreams);
    };
    let config = checker.file.map_or_else(|| "FILE".to_owned(), |p| p.display().to_string());
    // The same condition as doctor's rename, so that the warning's advice is what doctor does.
    if raw.upstreams.is_none() && providers.values().all(toml::Value::is_table) {
        checker.contained(
            Diagnostic::warning(
                "providers",
                "[providers] is another gateway's name for [upstreams]; its tables are served as upstreams",
            )
            .suggest(format!("run `switchyard doctor --fix --config {config}` to rename it to [upstreams]")),
        );
        return ("providers", providers.iter().collect());
    }
    let suggestion = if raw.upstreams.is_some() {
        "the file has both [providers] and [upstreams]: move each [providers.NAME] table into [upstreams] by hand"
    } else {
        "write each upstream as an [upstreams.NAME] table"
    };
    checker.fatal(
        Diagnostic::error("providers", "`providers` is another gateway's name for `upstreams`").suggest(suggestion),
    );
    ("upstreams", upstreams)
}

fn default_base_url(kind: DialectKind, region: Option<&str>) -> Option<String> {
    Some(match kind {
        DialectKind::OpenAiCompletions | DialectKind::OpenAiResponses => "https://api.openai.com/v1".into(),
        DialectKind::OpenAiCodexResponses => "https://chatgpt.com/backend-api".into(),
        DialectKind::AnthropicMessages => "https://api.anthropic.com".into(),
        DialectKind::GoogleGenerativeAi => "https://generativelanguage.googleapis.com/v1beta".into(),
        DialectKind::Ollama => "http://127.0.0.1:11434".into(),
        DialectKind::GithubCopilot => "https://api.githubcopilot.com".into(),
        DialectKind::BedrockConverseStream => format!("https://bedrock-runtime.{}.amazonaws.com", region?),
        DialectKind::AzureOpenAiCompletions | DialectKind::AzureOpenAiResponses | DialectKind::Mock => return None,
    })
}

/// One upstream, written at `table.name`.
fn check_upstream(
    checker: &mut Checker<'_>,
    table: &str,
    name: &str,
    value: &toml::Value,
) -> Result<UpstreamParams, Diagnostic> {
    let path = format!("{table}.{name}");
    let disabled = |key: &str, message: String| {
        let key_path = if key.is_empty() { path.clone() } else { format!("{path}.{key}") };
        Diagnostic::warning(key_path, format!("upstream {name:?} is disabled: {message}"))
    };
    let raw: RawUpstream = read_part(value).map_err(|(key, message)| {
        let field = unknown_field(&message).unwrap_or("");
        let mut diagnostic = disabled(&key, message.clone());
        let renamed = super::migrate::UPSTREAM_KEY_RENAMES.iter().find(|(old, _, _)| *old == field && key == field);
        diagnostic.suggestion = match renamed {
            // Doctor leaves this to the user: which of the two values is meant is a guess.
            Some((old, new, _)) if value.as_table().is_some_and(|table| table.contains_key(*new)) => {
                Some(format!("`{old}` is `{new}` here, and `{new}` is also set: keep one of them and delete the other"))
            }
            Some((old, new, _)) => {
                let config = checker.file.map_or_else(|| "FILE".to_owned(), |p| p.display().to_string());
                Some(format!("`{old}` is `{new}` here; run `switchyard doctor --fix --config {config}`"))
            }
            None => suggestion_for_unknown(&message),
        };
        diagnostic
    })?;

    let dialect = match raw.dialect.parse::<DialectKind>() {
        Ok(kind) => kind,
        Err(_) => {
            let config = checker.file.map_or_else(|| "FILE".to_owned(), |p| p.display().to_string());
            let suggestion = match LEGACY_DIALECTS.iter().find(|(old, _, _)| *old == raw.dialect) {
                Some((old, new, alternative)) => {
                    let also =
                        alternative.map(|a| format!(" (or {a:?} if that is what you meant)")).unwrap_or_default();
                    format!("{old:?} was renamed to {new:?}{also}; run `switchyard doctor --fix --config {config}`")
                }
                None => match did_you_mean(&raw.dialect, DialectKind::ALL.iter().map(|k| k.as_str())) {
                    Some(close) => format!("did you mean {close:?}?"),
                    None => format!(
                        "known dialects: {}",
                        DialectKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                },
            };
            return Err(disabled("dialect", format!("unknown dialect {:?}", raw.dialect)).suggest(suggestion));
        }
    };

    // Checked before any of them is read, so that a bad one disables this upstream alone.
    let durations = [
        ("timeouts.connect", raw.timeouts.connect.as_ref()),
        ("timeouts.first_byte", raw.timeouts.first_byte.as_ref()),
        ("timeouts.idle", raw.timeouts.idle.as_ref()),
        ("timeouts.total", raw.timeouts.total.as_ref()),
        ("retry.backoff_base", raw.retry.backoff_base.as_ref()),
        ("retry.backoff_max", raw.retry.backoff_max.as_ref()),
        ("retry.retry_after_max", raw.retry.retry_after_max.as_ref()),
        ("health.interval", raw.health.as_ref().and_then(|health| health.interval.as_ref())),
    ];
    for (key, text) in durations {
        if let Some(text) = text.filter(|text| parse_duration(text).is_none()) {
            return Err(disabled(key, format!("{text:?} is not a duration")).suggest(DURATION_HELP));
        }
    }
    // Sent as header values: one that is not valid would be dropped, or replaced by a default,
    // on every request.
    let header_values =
        [("user_agent", raw.user_agent.as_ref()), ("anthropic_version", raw.anthropic_version.as_ref())];
    for (key, text) in header_values {
        if text.is_some_and(|text| HeaderValue::try_from(text.as_str()).is_err()) {
            return Err(disabled(key, format!("`{key}` is not a valid header value"))
                .suggest("one line of printable characters"));
        }
    }
    if let Some(health) = &raw.health {
        if health.path.as_ref().is_some_and(|path| !path.starts_with('/')) {
            return Err(disabled("health.path", "the health check's path must start with `/`".into())
                .suggest("a path under `base_url`, such as \"/models\""));
        }
        if health.expect_status.is_some_and(|status| !(100..=599).contains(&status)) {
            return Err(disabled("health.expect_status", "not an HTTP status code (100-599)".into()));
        }
    }

    let written = [
        ("base_url", raw.base_url.as_ref()),
        ("api_key", raw.api_key.as_ref()),
        ("proxy", raw.proxy.as_ref()),
        ("aws_access_key_id", raw.aws_access_key_id.as_ref()),
        ("aws_secret_access_key", raw.aws_secret_access_key.as_ref()),
        ("aws_session_token", raw.aws_session_token.as_ref()),
    ];
    let header_values = raw.headers.set.values().map(|value| ("headers.set", Some(value)));
    for (key, text) in written.into_iter().chain(header_values) {
        if let Some(text) = text {
            checker.warn_if_bare_reference(&format!("{path}.{key}"), &format!("upstream {name:?}"), text);
        }
    }
    let expand_field = |key: &str, text: &str| {
        expand(text, checker.env).map_err(|error| disabled(key, error.to_string()).suggest(error.suggestion()))
    };

    let base_url = match raw.base_url.as_deref().map(|u| expand_field("base_url", u)).transpose()? {
        Some(url) => Some(url),
        None => default_base_url(dialect, raw.region.as_deref()),
    };
    let base_url = match (base_url, dialect) {
        (None, DialectKind::Mock) => None,
        (None, _) => return Err(disabled("base_url", "`base_url` is required for this dialect".into())),
        (Some(url), _) => {
            let shown = shown_url(&url);
            let uri: Uri = url.trim_end_matches('/').parse().map_err(|_| {
                disabled("base_url", format!("{shown:?} is not a URL"))
                    .suggest("the API's root, such as \"https://api.example.com/v1\"")
            })?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(disabled("base_url", format!("{shown:?} must be an http:// or https:// URL")));
            }
            // Sent as written, user-info would end up in the Host header and a query in the middle
            // of every request path; both would also be printed wherever the URL is.
            if uri.authority().is_some_and(|authority| authority.as_str().contains('@')) {
                return Err(disabled("base_url", format!("{shown:?} has credentials (user:password@) in it")).suggest(
                    "remove them from the URL: put the key in `api_key` (with `auth` to choose its header), \
                         or another credential in `headers.set`",
                ));
            }
            if uri.query().is_some() {
                return Err(disabled(
                    "base_url",
                    format!("{shown:?} has a query string (?...), which is not supported"),
                )
                .suggest(
                    "remove it from the URL: put a key in `api_key` (with `auth` to choose its header) or \
                         `headers.set`; Azure's api-version goes in `api_version`",
                ));
            }
            // `Uri` takes any text after the host's colon, and gives no port for one that is
            // not a number; every request would then fail as a refused connection.
            let authority = uri.authority().map_or("", |authority| authority.as_str());
            let written_port = authority.rsplit_once(':').filter(|_| !authority.ends_with(']')).map(|(_, port)| port);
            if written_port.is_some_and(|port| port.parse::<u16>().map_or(true, |port| port == 0)) {
                return Err(disabled("base_url", format!("{shown:?} has an invalid port (1-65535)")));
            }
            Some(uri)
        }
    };

    let checked_secret = |key: &str, value: String| match control_character(&value) {
        Some(c) => Err(disabled(key, holds_control_character(&format!("`{key}`"), c)).suggest(CONTROL_CHARACTER_HELP)),
        None => Ok(Secret::new(value)),
    };
    let secret_field = |key: &str, text: &str| checked_secret(key, expand_field(key, text)?);
    let api_key = raw.api_key.as_deref().map(|k| secret_field("api_key", k)).transpose()?;
    let dialect_options_probe = crate::dialect::build(dialect, &DialectOptions::default());
    let auth = match raw.auth.as_deref() {
        None => dialect_options_probe.default_auth(),
        Some("bearer") => AuthStyle::Bearer,
        Some("x-api-key") => AuthStyle::Header("x-api-key"),
        Some("api-key") => AuthStyle::Header("api-key"),
        Some("x-goog-api-key") => AuthStyle::Header("x-goog-api-key"),
        Some("sigv4") => AuthStyle::SigV4,
        Some("none") => AuthStyle::None,
        // Not shown: a misplaced key (`auth = "Bearer sk-…"`) is what usually ends up here.
        Some(_) => {
            return Err(disabled("auth", "unknown auth style".into())
                .suggest("one of: bearer, x-api-key, api-key, x-goog-api-key, sigv4, none"))
        }
    };
    // Built here, once, so that a key that cannot be sent disables the upstream with a diagnostic
    // instead of every request going out without credentials.
    let auth_header = match (&api_key, auth) {
        (Some(key), AuthStyle::Bearer) => Some((http::header::AUTHORIZATION, format!("Bearer {}", key.expose()))),
        (Some(key), AuthStyle::Header(name)) => Some((HeaderName::from_static(name), key.expose().to_owned())),
        _ => None,
    };
    let auth_header = auth_header
        .map(|(name, value)| {
            let mut value = HeaderValue::try_from(value)
                .map_err(|_| disabled("api_key", "`api_key` is not a valid header value".into()))?;
            value.set_sensitive(true);
            Ok((name, value))
        })
        .transpose()?;

    let mut headers_set = Vec::new();
    for (header, written) in &raw.headers.set {
        let value = expand_field("headers.set", written)?;
        let from_variable = value != *written;
        let header_name = HeaderName::try_from(header.as_str())
            .map_err(|_| disabled("headers.set", format!("{header:?} is not a header name")))?;
        let mut header_value = HeaderValue::try_from(value)
            .map_err(|_| disabled("headers.set", format!("the value of {header:?} is not a valid header value")))?;
        // The mark is what keeps the value out of `probe`'s output and Debug: secrets come from
        // the environment or sit under a credential's name.
        header_value.set_sensitive(from_variable || is_credential_header(&header_name));
        headers_set.push((header_name, header_value));
    }

    let compat = &raw.compat;
    let max_tokens_field = match compat.max_tokens_field.as_deref() {
        None => None,
        Some("max_tokens") => Some(MaxTokensField::MaxTokens),
        Some("max_completion_tokens") => Some(MaxTokensField::MaxCompletionTokens),
        Some(other) => {
            return Err(disabled("compat.max_tokens_field", format!("{other:?} is not a field name"))
                .suggest("\"max_tokens\" or \"max_completion_tokens\""))
        }
    };

    let tls = TlsParams {
        ca_file: raw.tls.ca_file.as_ref().map(PathBuf::from),
        native_roots: raw.tls.native_roots.unwrap_or(false),
    };
    if let Some(ca_file) = &tls.ca_file {
        if !ca_file.is_file() {
            return Err(disabled("tls.ca_file", format!("{} does not exist", ca_file.display())));
        }
    }
    let proxy = match raw.proxy.as_deref().map(|p| expand_field("proxy", p)).transpose()? {
        None => None,
        Some(proxy) => Some(proxy.parse::<Uri>().map_err(|_| {
            disabled("proxy", format!("{:?} is not a URL", shown_url(&proxy)))
                .suggest("the proxy's address, such as \"http://proxy.internal:3128\"")
        })?),
    };

    let timeouts = timeouts(checker, &format!("{path}.timeouts"), &raw.timeouts, Timeouts::default());
    let defaults = RetryParams::default();
    let retry = RetryParams {
        attempts: raw.retry.attempts.unwrap_or(defaults.attempts).max(1),
        backoff_base: checker.duration(
            &format!("{path}.retry.backoff_base"),
            raw.retry.backoff_base.as_ref(),
            defaults.backoff_base,
        ),
        backoff_max: checker.duration(
            &format!("{path}.retry.backoff_max"),
            raw.retry.backoff_max.as_ref(),
            defaults.backoff_max,
        ),
        retry_after_max: checker.duration(
            &format!("{path}.retry.retry_after_max"),
            raw.retry.retry_after_max.as_ref(),
            defaults.retry_after_max,
        ),
        budget_ratio: raw.retry.budget_ratio.unwrap_or(defaults.budget_ratio).clamp(0.0, 10.0),
    };
    let stream_mode = match raw.stream.as_deref() {
        None | Some("native") => StreamMode::Native,
        Some("simulate") => StreamMode::Simulate,
        Some(other) => {
            return Err(
                disabled("stream", format!("unknown stream mode {other:?}")).suggest("\"native\" or \"simulate\"")
            )
        }
    };
    let health_check = raw.health.as_ref().map(|health| HealthCheckParams {
        interval: checker.duration(
            &format!("{path}.health.interval"),
            health.interval.as_ref(),
            Duration::from_secs(10),
        ),
        path: health.path.clone().unwrap_or_else(|| "/models".into()),
        expect_status: health.expect_status.unwrap_or(200),
    });

    let aws = if dialect == DialectKind::BedrockConverseStream || auth == AuthStyle::SigV4 {
        let from = |key: &str, configured: &Option<String>, env_name: &str| -> Result<Option<Secret>, Diagnostic> {
            match configured {
                Some(text) => secret_field(key, text).map(Some),
                // Trimmed like a `${VAR}`, for the same Kubernetes Secrets.
                None => (checker.env)(env_name)
                    .map(|value| value.trim_ascii().to_owned())
                    .filter(|value| !value.is_empty())
                    .map(|value| checked_secret(key, value))
                    .transpose(),
            }
        };
        let access_key_id = from("aws_access_key_id", &raw.aws_access_key_id, "AWS_ACCESS_KEY_ID")?;
        let secret_access_key = from("aws_secret_access_key", &raw.aws_secret_access_key, "AWS_SECRET_ACCESS_KEY")?;
        let session_token = from("aws_session_token", &raw.aws_session_token, "AWS_SESSION_TOKEN")?;
        match (access_key_id, secret_access_key) {
            (Some(access_key_id), Some(secret_access_key)) => {
                Some(AwsParams { access_key_id, secret_access_key, session_token })
            }
            _ => return Err(disabled("", "no AWS credentials".into()).suggest(
                "set aws_access_key_id/aws_secret_access_key, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            )),
        }
    } else {
        None
    };
    if dialect == DialectKind::BedrockConverseStream && raw.region.is_none() {
        return Err(disabled("region", "`region` is required for bedrock-converse-stream".into())
            .suggest("region = \"us-east-1\""));
    }

    Ok(UpstreamParams {
        name: name.to_owned(),
        dialect,
        base_url,
        api_key,
        auth,
        auth_header,
        user_agent: raw
            .user_agent
            .clone()
            .unwrap_or_else(|| concat!("switchyard/", env!("CARGO_PKG_VERSION")).to_owned()),
        headers_set,
        headers_remove: raw.headers.remove.iter().map(|p| Glob::case_insensitive(p)).collect(),
        keep_sdk_headers: raw.keep_sdk_headers.unwrap_or(false),
        dialect_options: DialectOptions {
            default_max_tokens: raw.default_max_tokens,
            anthropic_version: raw.anthropic_version.clone(),
            api_version: raw.api_version.clone(),
            deployment: raw.deployment.clone(),
            region: raw.region.clone(),
            drop_unsupported: raw.drop_unsupported.unwrap_or(false),
            compat: Compat {
                developer_role: compat.developer_role.clone(),
                max_tokens_field,
                drop_params: compat.drop_params.clone(),
                strip_tool_strict: compat.strip_tool_strict.unwrap_or(false),
                request_stream_usage: compat.stream_usage.unwrap_or(true),
            },
        },
        tls,
        proxy,
        timeouts,
        retry,
        stream_mode,
        health_check,
        aws,
    })
}

fn timeouts(checker: &mut Checker<'_>, path: &str, raw: &RawTimeouts, base: Timeouts) -> Timeouts {
    Timeouts {
        connect: checker.duration(&format!("{path}.connect"), raw.connect.as_ref(), base.connect),
        first_byte: checker.duration(&format!("{path}.first_byte"), raw.first_byte.as_ref(), base.first_byte),
        idle: checker.duration(&format!("{path}.idle"), raw.idle.as_ref(), base.idle),
        total: checker.duration(&format!("{path}.total"), raw.total.as_ref(), base.total),
    }
}

fn check_models(
    checker: &mut Checker<'_>,
    raw: &RawConfig,
    upstreams: &BTreeMap<String, UpstreamParams>,
    disabled: &BTreeMap<String, Diagnostic>,
) -> Vec<ModelParams> {
    let mut models: Vec<ModelParams> = Vec::new();
    for (index, model) in raw.models.iter().enumerate() {
        let path = format!("models.{index}");
        let pattern = match model.name.strip_suffix('*') {
            Some(prefix) if prefix.ends_with('/') && !prefix[..prefix.len() - 1].contains('*') => {
                ModelPattern::Prefix(prefix.to_owned())
            }
            _ if model.name.contains('*') || model.name.is_empty() => {
                checker.fatal(
                    Diagnostic::error(
                        format!("{path}.name"),
                        format!("{:?} is not a model name or pattern", model.name),
                    )
                    .suggest("use an exact name, or `prefix/*` to route prefix/x to an upstream as model x"),
                );
                continue;
            }
            _ => ModelPattern::Exact(model.name.clone()),
        };
        if models.iter().any(|m| m.pattern == pattern) {
            checker.fatal(
                Diagnostic::error(format!("{path}.name"), format!("model {:?} is defined twice", model.name)).suggest(
                    "keep one of the two entries; a model with several upstreams lists them all in one `targets`",
                ),
            );
            continue;
        }
        let strategy = match model.strategy.as_deref() {
            None | Some("failover") => Strategy::Failover,
            Some("weighted") => Strategy::Weighted,
            Some("least-latency") => Strategy::LeastLatency,
            Some(other) => {
                checker.fatal(
                    Diagnostic::error(format!("{path}.strategy"), format!("unknown strategy {other:?}"))
                        .suggest("one of: failover, weighted, least-latency"),
                );
                continue;
            }
        };
        let failover_on =
            model.failover_on.clone().unwrap_or_else(|| RETRYABLE_BY_DEFAULT.iter().map(|s| (*s).to_owned()).collect());
        for class in &failover_on {
            if !FAILOVER_CLASSES.contains(&class.as_str()) {
                let mut diagnostic =
                    Diagnostic::error(format!("{path}.failover_on"), format!("unknown error class {class:?}"));
                diagnostic.suggestion = Some(match did_you_mean(class, FAILOVER_CLASSES.iter().copied()) {
                    Some(close) => format!("did you mean {close:?}?"),
                    None => format!("one of: {}", FAILOVER_CLASSES.join(", ")),
                });
                checker.fatal(diagnostic);
            }
        }
        if model.targets.is_empty() {
            checker.fatal(Diagnostic::error(format!("{path}.targets"), "a model needs at least one target"));
            continue;
        }
        let mut targets = Vec::new();
        for (t, target) in model.targets.iter().enumerate() {
            let target_path = format!("{path}.targets.{t}");
            let (key, upstream) = match (&target.upstream, &target.provider) {
                (Some(upstream), None) => ("upstream", upstream),
                (None, Some(provider)) => {
                    let config = checker.file.map_or_else(|| "FILE".to_owned(), |p| p.display().to_string());
                    checker.contained(
                        Diagnostic::warning(
                            format!("{target_path}.provider"),
                            "`provider` is another gateway's name for `upstream`; it is served as the target's upstream",
                        )
                        .suggest(format!("run `switchyard doctor --fix --config {config}` to rename it to `upstream`")),
                    );
                    ("provider", provider)
                }
                (Some(_), Some(_)) => {
                    checker.fatal(
                        Diagnostic::error(format!("{target_path}.provider"), "`provider` and `upstream` are both set")
                            .suggest("keep one of them and delete the other"),
                    );
                    continue;
                }
                (None, None) => {
                    checker.fatal(
                        Diagnostic::error(
                            target_path.clone(),
                            format!("a target of model {:?} names no upstream", model.name),
                        )
                        .suggest("targets = [{ upstream = \"NAME\" }]"),
                    );
                    continue;
                }
            };
            if !upstreams.contains_key(upstream) && !disabled.contains_key(upstream) {
                let known = upstreams.keys().chain(disabled.keys()).map(String::as_str);
                let mut diagnostic = Diagnostic::error(
                    format!("{target_path}.{key}"),
                    format!("model {:?} targets an upstream {upstream:?} that is not configured", model.name),
                );
                diagnostic.suggestion = did_you_mean(upstream, known).map(|close| format!("did you mean {close:?}?"));
                checker.fatal(diagnostic);
                continue;
            }
            let base = upstreams.get(upstream).map(|u| u.timeouts).unwrap_or_default();
            let overridden =
                [&target.timeouts.connect, &target.timeouts.first_byte, &target.timeouts.idle, &target.timeouts.total]
                    .iter()
                    .any(|t| t.is_some());
            targets.push(TargetParams {
                upstream: upstream.clone(),
                model: target.model.clone(),
                weight: target.weight.unwrap_or(1),
                timeouts: overridden
                    .then(|| timeouts(checker, &format!("{target_path}.timeouts"), &target.timeouts, base)),
            });
        }
        models.push(ModelParams { pattern, targets, strategy, failover_on });
    }
    models
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "OPENAI_KEY" => Some("sk-test".into()),
            "CLIENT_KEY" => Some("client".into()),
            _ => None,
        }
    }

    fn load(source: &str) -> Result<Config, ConfigError> {
        validate(source, Some(Path::new("switchyard.toml")), &env)
    }

    #[test]
    fn headers_set_values_from_variables_or_under_credential_names_are_sensitive() {
        let config = load(
            r#"
[upstreams.a]
dialect = "openai-completions"
base_url = "http://127.0.0.1:1/v1"
auth = "none"
headers.set = { "x-team" = "blue", "x-org" = "org-${CLIENT_KEY}", "authorization" = "Bearer literal", "cf-access-client-secret" = "s", "x-session-token" = "t", "x-api-key" = "k", "cookie" = "c", "x-signature" = "g", "x-db-password" = "p" }
"#,
        )
        .unwrap();
        let sensitive: Vec<&str> = config.upstreams["a"]
            .headers_set
            .iter()
            .filter(|(_, value)| value.is_sensitive())
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(
            sensitive,
            [
                "authorization",
                "cf-access-client-secret",
                "cookie",
                "x-api-key",
                "x-db-password",
                "x-org",
                "x-session-token",
                "x-signature"
            ]
        );
    }

    #[test]
    fn the_embedded_default_serves_the_mock_model() {
        let config = validate(super::super::EMBEDDED_DEFAULT, None, &env).unwrap();
        assert_eq!(config.upstreams["mock"].dialect, DialectKind::Mock);
        assert_eq!(config.models[0].pattern, ModelPattern::Exact("mock".into()));
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn a_full_config_validates_with_defaults() {
        let config = load(
            r#"
[server]
listen = "0.0.0.0:9000"
shutdown_grace = "5s"

[[keys]]
name = "team"
key = "${CLIENT_KEY}"
models = ["openai/*"]

[upstreams.openai]
dialect = "openai-completions"
api_key = "${OPENAI_KEY}"
compat = { developer_role = "system", max_tokens_field = "max_tokens", drop_params = ["store"] }
headers.remove = ["x-foo-*"]

[[models]]
name = "openai/*"
targets = [{ upstream = "openai" }]
"#,
        )
        .unwrap();
        assert_eq!(config.server.listen.port(), 9000);
        assert_eq!(config.server.shutdown_grace, Duration::from_secs(5));
        let openai = &config.upstreams["openai"];
        assert_eq!(openai.base_url.as_ref().unwrap().to_string(), "https://api.openai.com/v1");
        assert_eq!(openai.api_key.as_ref().unwrap().expose(), "sk-test");
        assert_eq!(openai.dialect_options.compat.max_tokens_field, Some(MaxTokensField::MaxTokens));
        assert_eq!(config.keys[0].sha256, <[u8; 32]>::from(Sha256::digest(b"client")));
        assert_eq!(config.models[0].pattern.matches("openai/gpt-4o"), Some("gpt-4o"));
    }

    #[test]
    fn a_legacy_dialect_disables_only_that_upstream_and_names_the_fix() {
        let config = load(
            "[upstreams.old]\ndialect = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\n[upstreams.mock]\ndialect = \"mock\"\n\n[[models]]\nname = \"m\"\ntargets = [{ upstream = \"mock\" }]\n",
        )
        .unwrap();
        assert!(config.upstreams.contains_key("mock"));
        let problem = &config.disabled["old"];
        assert_eq!(problem.location, Some((2, 1)));
        let text = problem.to_string();
        assert!(text.contains("switchyard.toml:2:1"), "{text}");
        assert!(text.contains("openai-completions") && text.contains("doctor --fix"), "{text}");
    }

    #[test]
    fn unknown_keys_are_errors_with_a_suggestion() {
        let error = load("[server]\nlistn = \"127.0.0.1:1\"\n").unwrap_err();
        let text = error.render();
        assert!(text.contains("switchyard.toml:2:1"), "{text}");
        assert!(text.contains("did you mean `listen`?"), "{text}");
    }

    #[test]
    fn every_part_reports_its_first_error_at_once() {
        let source = "[server]\nlistn = \"127.0.0.1:1\"\n\n[[keys]]\nname = \"ok\"\nkey = \"${K}\"\n\n[[keys]]\nname = 5\n\n[[models]]\nname = \"m\"\ntargets = \"a\"\n\n[upstream.a]\ndialect = \"mock\"\n";
        let text = load(source).unwrap_err().render();
        for expected in [
            "switchyard.toml:2:1: error: server.listn: unknown field `listn`",
            "switchyard.toml:9:1: error: keys.1.name: invalid type: integer `5`, expected a string",
            "switchyard.toml:13:1: error: models.0.targets: invalid type: string, expected a sequence",
            "switchyard.toml:15:2: error: upstream: unknown field `upstream`",
            "did you mean `listen`?",
            "did you mean `upstreams`?",
        ] {
            assert!(text.contains(expected), "{expected:?} in:\n{text}");
        }
        assert!(!text.contains("keys.0"), "{text}");
        let lines: Vec<&str> = text.lines().filter(|line| line.contains(": error: ")).collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].contains(":2:1:") && lines[3].contains(":15:2:"), "in file order: {text}");
    }

    #[test]
    fn an_unknown_key_inside_an_upstream_disables_it() {
        let config = load("[upstreams.a]\ndialect = \"mock\"\nbase_ulr = \"x\"\n").unwrap();
        let text = config.disabled["a"].to_string();
        assert!(text.contains(":3:1") && text.contains("did you mean `base_url`?"), "{text}");
    }

    #[test]
    fn nested_unknown_keys_are_located_and_renamed_keys_point_at_doctor() {
        let config = load("[upstreams.a]\ndialect = \"mock\"\nretry.attemps = 3\n").unwrap();
        let text = config.disabled["a"].to_string();
        assert!(text.contains(":3:7") && text.contains("upstreams.a.retry.attemps"), "{text}");
        let config = load("[upstreams.b]\ndialect = \"mock\"\napi_base = \"http://x\"\n").unwrap();
        let text = config.disabled["b"].to_string();
        assert!(text.contains("`api_base` is `base_url` here") && text.contains("doctor --fix"), "{text}");
    }

    #[test]
    fn a_wrong_type_inside_an_upstream_points_at_its_key() {
        let config = load(
            "[upstreams.a]\ndialect = \"mock\"\nretry = { attempts = \"three\" }\n\n[upstreams.b]\ndialect = \"mock\"\nuser_agent = 5\n",
        )
        .unwrap();
        let a = config.disabled["a"].to_string();
        assert!(a.contains(":3:11: ") && a.contains("upstreams.a.retry.attempts"), "{a}");
        let b = config.disabled["b"].to_string();
        assert!(b.contains(":7:1: ") && b.contains("upstreams.b.user_agent"), "{b}");
    }

    #[test]
    fn a_renamed_key_next_to_its_new_name_asks_to_delete_one() {
        let config =
            load("[upstreams.b]\ndialect = \"mock\"\napi_base = \"http://x\"\nbase_url = \"http://y\"\n").unwrap();
        let text = config.disabled["b"].to_string();
        assert!(text.contains("`base_url` is also set: keep one of them and delete the other"), "{text}");
        assert!(!text.contains("doctor --fix"), "{text}");
    }

    #[test]
    fn an_empty_client_key_is_skipped_and_auth_stays_on() {
        let empty_digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for key in ["key = \"\"", "key = \"  \"", &format!("sha256 = \"{empty_digest}\"")] {
            let config = load(&format!("[[keys]]\nname = \"team\"\n{key}\n")).unwrap();
            assert!(config.keys.is_empty() && config.auth_required, "{key}");
            assert_eq!(config.skipped_keys, ["team"], "{key}");
            let text = format!("{:?}", config.warnings);
            assert!(text.contains("key \\\"team\\\" is disabled"), "{text}");
        }
    }

    #[test]
    fn a_key_name_is_unique_even_when_its_first_use_was_skipped() {
        let source =
            "[[keys]]\nname = \"team\"\nkey = \"${MISSING}\"\n\n[[keys]]\nname = \"team\"\nkey = \"${CLIENT_KEY}\"\n";
        let text = load(source).unwrap_err().render();
        assert!(text.contains("switchyard.toml:6:1: error: keys.1.name: duplicate key name \"team\""), "{text}");
    }

    #[test]
    fn a_bad_value_inside_an_upstream_disables_only_that_upstream() {
        let bad = [
            ("timeouts = { connect = \"fast\" }", "timeouts.connect", "is not a duration"),
            ("retry = { attempts = 1, backoff_base = \"1 sec\" }", "retry.backoff_base", "is not a duration"),
            ("health = { interval = \"often\" }", "health.interval", "is not a duration"),
            ("health = { path = \"models\" }", "health.path", "must start with `/`"),
            ("health = { expect_status = 999 }", "health.expect_status", "not an HTTP status code"),
            ("user_agent = \"bad\\nvalue\"", "user_agent", "not a valid header value"),
            ("anthropic_version = \"2023\\r\\nX-Evil: 1\"", "anthropic_version", "not a valid header value"),
            ("base_url = \"http://127.0.0.1:abc/v1\"", "base_url", "invalid port"),
            ("base_url = \"http://127.0.0.1:99999/v1\"", "base_url", "invalid port"),
            ("base_url = \"http://127.0.0.1:0/v1\"", "base_url", "invalid port"),
        ];
        for (line, key, message) in bad {
            // The bad line is the upstream's third, its base_url the second unless that is the line.
            let base_url = if key == "base_url" { "" } else { "base_url = \"http://127.0.0.1:1/v1\"\n" };
            let source = format!(
                "[upstreams.a]\ndialect = \"mock\"\n\n[upstreams.b]\ndialect = \"openai-completions\"\n{base_url}{line}\n\n[[models]]\nname = \"m\"\ntargets = [{{ upstream = \"a\" }}]\n"
            );
            let config = load(&source).unwrap_or_else(|error| panic!("{line}: {}", error.render()));
            assert!(config.upstreams.contains_key("a"), "{line}");
            let text = config.disabled.get("b").map(ToString::to_string).unwrap_or_default();
            assert!(text.contains(&format!("upstreams.b.{key}")) && text.contains(message), "{line}: {text}");
            let at = if key == "base_url" { "switchyard.toml:6:" } else { "switchyard.toml:7:" };
            assert!(text.contains(at), "{line}: {text}");
        }
        for url in ["http://[::1]:8080/v1", "http://[::1]/v1", "https://example.com:443/v1"] {
            let source = format!("[upstreams.b]\ndialect = \"openai-completions\"\nbase_url = \"{url}\"\n");
            assert!(load(&source).unwrap().upstreams.contains_key("b"), "{url}");
        }
    }

    #[test]
    fn a_file_that_cannot_be_served_still_lists_what_is_wrong_in_its_upstreams() {
        let upstream = "[upstreams.a]\ndialect = \"mok\"\n";
        for (fatal, at) in [
            ("[server]\nshutdown_grace = \"soon\"\n", "switchyard.toml:2:1: error: server.shutdown_grace"),
            ("[server]\nlistn = \"127.0.0.1:1\"\n", "switchyard.toml:2:1: error: server.listn"),
        ] {
            let error = load(&format!("{fatal}{upstream}")).unwrap_err();
            let text = error.render();
            assert!(text.contains(at), "{text}");
            assert!(text.contains("switchyard.toml:4:1: warning: upstreams.a.dialect"), "{text}");
            assert!(text.contains("did you mean \"mock\"?"), "{text}");
            assert_eq!(error.summary(), "1 error(s) and 1 warning(s); nothing would be served");
        }
    }

    #[test]
    fn a_model_defined_twice_is_an_error_that_says_what_to_keep() {
        let model = "[[models]]\nname = \"m\"\ntargets = [{ upstream = \"a\" }]\n";
        let text = load(&format!("[upstreams.a]\ndialect = \"mock\"\n{model}{model}")).unwrap_err().render();
        assert!(text.contains("switchyard.toml:7:1: error: models.1.name: model \"m\" is defined twice"), "{text}");
        assert!(text.contains("help: keep one of the two entries"), "{text}");
    }

    #[test]
    fn an_unset_secret_disables_the_upstream() {
        let config = load("[upstreams.a]\ndialect = \"openai-completions\"\napi_key = \"${MISSING}\"\n").unwrap();
        assert!(config.disabled["a"].to_string().contains("${MISSING} is not set"));
    }

    #[test]
    fn a_key_written_where_something_else_belongs_is_never_shown() {
        let fatal = [
            "keys = [\"sk-live-Xy12abCD34\"]\n",
            "[upstreams.a]\ndialect = \"mock\"\n[[models]]\nname = \"m\"\ntargets = \"sk-live-\\\"Xy12abCD34\"\n",
        ];
        for source in fatal {
            let text = load(source).unwrap_err().render();
            assert!(text.contains("invalid type: string"), "{text}");
            assert!(!text.contains("Xy12abCD34"), "{text}");
        }
        let served = [
            "[upstreams]\na = \"sk-live-Xy12abCD34\"\n",
            "[upstreams.a]\ndialect = \"openai-completions\"\nauth = \"Bearer sk-live-Xy12abCD34\"\n",
            "[upstreams.a]\ndialect = \"openai-completions\"\napi_key = \"$sk_live_4eC39HqLyjWDXy12abCD34\"\n",
            "[[keys]]\nname = \"c\"\nkey = \"$x9Kq2LmP7vR4tS8wZ3nB6Xy12abCD34\"\n",
        ];
        for source in served {
            let config = load(source).unwrap();
            let text = format!("{:?} {:?}", config.warnings, config.disabled);
            assert!(text.contains("upstreams.a") || text.contains("keys.0.key"), "{text}");
            assert!(!text.contains("Xy12abCD34"), "{text}");
        }
        assert_eq!(
            without_values("unknown variant `sk-`x`, expected one of `a`, `b`"),
            "unknown variant, expected one of `a`, `b`"
        );
        assert_eq!(
            without_values("invalid type: integer `5`, expected a string"),
            "invalid type: integer `5`, expected a string"
        );
    }

    #[test]
    fn a_key_pasted_inside_the_braces_is_not_printed_by_check() {
        let source = "[upstreams.a]\ndialect = \"openai-completions\"\napi_key = \"${ghp_16C7e42F292c6912E7710c838347Ae178B4a}\"\n\n[[keys]]\nname = \"team\"\nkey = \"${sk-team-Xy12abCD34efGH56}\"\n";
        let config = load(source).unwrap();
        let printed = format!("{:?}", config.warnings);
        assert!(printed.contains("upstreams.a") && printed.contains("keys.0.key"), "{printed}");
        assert!(!printed.contains("16C7e42F") && !printed.contains("Xy12abCD"), "{printed}");
    }

    #[test]
    fn variable_reference_mistakes_are_named() {
        let env = |name: &str| match name {
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let source = r#"
[[keys]]
name = "team"
key = "${EMPTY}"

[[keys]]
name = "bare"
key = "$TEAM_KEY"

[upstreams.unclosed]
dialect = "openai-completions"
api_key = "${C_KEY"

[upstreams.fallback]
dialect = "openai-completions"
api_key = "${A_KEY:-sk-inline-fallback}"

[upstreams.bare]
dialect = "openai-completions"
api_key = "$B_KEY"
"#;
        let config = validate(source, Some(Path::new("switchyard.toml")), &env).unwrap();
        let shown: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
        let find = |path: &str| shown.iter().find(|d| d.contains(path)).unwrap_or_else(|| panic!("{shown:#?}"));
        assert!(find("keys.0.key").contains("${EMPTY} is empty"), "{shown:#?}");
        assert!(find("keys.1.key").contains("did you mean ${TEAM_KEY}?"), "{shown:#?}");
        assert!(find("upstreams.unclosed.api_key").contains("`${C_KEY` has no closing `}`"), "{shown:#?}");
        let fallback = find("upstreams.fallback.api_key");
        assert!(fallback.contains("shell form") && !fallback.contains("sk-inline"), "{fallback}");
        assert!(find("upstreams.bare.api_key").contains("did you mean ${B_KEY}?"), "{shown:#?}");
        assert_eq!(config.keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["bare"]);
        assert_eq!(config.upstreams.keys().collect::<Vec<_>>(), ["bare"]);
    }

    #[test]
    fn a_key_holding_a_control_character_is_refused_without_being_shown() {
        let env = |name: &str| match name {
            "TRAILING" => Some(" sk-trailing\r\n".to_owned()),
            "INSIDE" => Some("sk-in\nside".to_owned()),
            "CLIENT" => Some("client-in\u{7}side".to_owned()),
            _ => None,
        };
        let source = r#"
[[keys]]
name = "team"
key = "${CLIENT}"

[upstreams.trailing]
dialect = "anthropic-messages"
api_key = "${TRAILING}"

[upstreams.inside]
dialect = "openai-completions"
api_key = "${INSIDE}"

[upstreams.literal]
dialect = "openai-completions"
api_key = "sk-lit\teral"
"#;
        let config = validate(source, Some(Path::new("switchyard.toml")), &env).unwrap();
        let (name, value) = config.upstreams["trailing"].auth_header.clone().unwrap();
        assert_eq!((name.as_str(), value.to_str().unwrap()), ("x-api-key", "sk-trailing"));
        assert!(value.is_sensitive());
        for (upstream, code) in [("inside", "U+000A"), ("literal", "U+0009")] {
            let text = config.disabled[upstream].to_string();
            assert!(text.contains(&format!("`api_key` contains a control character ({code})")), "{text}");
            assert!(!text.contains("sk-"), "{text}");
        }
        assert_eq!(config.skipped_keys, ["team"]);
        let shown: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
        let key = shown.iter().find(|d| d.contains("keys.0.key")).unwrap();
        assert!(key.contains("the key contains a control character (U+0007)") && !key.contains("client-"), "{key}");
    }

    #[test]
    fn credentials_or_a_query_in_base_url_disable_the_upstream_without_being_shown() {
        let env = |name: &str| (name == "BASE").then(|| "http://svc:Env-Pass@127.0.0.1:21102/v1".to_owned());
        let source = r#"
[upstreams.userinfo]
dialect = "openai-completions"
base_url = "http://user:PASS-123@127.0.0.1:21102/v1"

[upstreams.query]
dialect = "openai-completions"
base_url = "http://127.0.0.1:21102/v1?key=SECRET-123"

[upstreams.from_env]
dialect = "openai-completions"
base_url = "${BASE}"

[upstreams.unparsable]
dialect = "openai-completions"
base_url = "http://user:PASS-123@127.0.0.1:21102/v 1?key=SECRET-123"

[upstreams.proxied]
dialect = "openai-completions"
base_url = "http://127.0.0.1:21102/v1"
proxy = "http://proxy-user:proxy-pass@127.0.0.1:3128"
"#;
        let config = validate(source, Some(Path::new("switchyard.toml")), &env).unwrap();
        for (name, says) in [
            ("userinfo", "has credentials (user:password@) in it"),
            ("query", "has a query string (?...), which is not supported"),
            ("from_env", "has credentials"),
            ("unparsable", "is not a URL\n  help: the API's root"),
        ] {
            let text = config.disabled[name].to_string();
            assert!(text.contains(says) && text.contains("127.0.0.1:21102"), "{text}");
            for secret in ["PASS-123", "SECRET-123", "Env-Pass", "svc:"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
        assert!(config.disabled["userinfo"].to_string().contains("`api_key`"));
        assert!(config.upstreams["proxied"].proxy.is_some());
    }

    #[test]
    fn legacy_providers_are_served_as_upstreams_with_a_warning_naming_doctor() {
        let config = load(
            "[providers.main]\ndialect = \"mock\"\n\n[providers.old]\ndialect = \"openai\"\n\n[[models]]\nname = \"m\"\ntargets = [{ upstream = \"main\" }]\n",
        )
        .unwrap();
        assert!(config.upstreams.contains_key("main"));
        assert_eq!(config.models[0].targets[0].upstream, "main");
        let warning = config.warnings.iter().find(|d| d.path == "providers").unwrap().to_string();
        assert!(warning.contains("switchyard.toml:1:2") && warning.contains("warning"), "{warning}");
        assert!(warning.contains("run `switchyard doctor --fix --config switchyard.toml`"), "{warning}");
        assert!(!warning.contains("remove"), "{warning}");
        let old = config.disabled["old"].to_string();
        assert!(old.contains("switchyard.toml:5:1") && old.contains("providers.old.dialect"), "{old}");

        let error =
            load("[upstreams.a]\ndialect = \"mock\"\n[providers.b]\ndialect = \"mock\"\n").unwrap_err().render();
        assert!(error.contains("move each [providers.NAME] table into [upstreams] by hand"), "{error}");
    }

    #[test]
    fn a_target_written_with_provider_is_served_with_a_warning_naming_doctor() {
        let upstream = "[upstreams.main]\ndialect = \"mock\"\n[[models]]\nname = \"m\"\n";
        let config = load(&format!("{upstream}targets = [{{ provider = \"main\" }}]\n")).unwrap();
        assert_eq!(config.models[0].targets[0].upstream, "main");
        let warning = config.warnings[0].to_string();
        assert!(warning.contains(":5:14: warning: models.0.targets.0.provider"), "{warning}");
        assert!(warning.contains("run `switchyard doctor --fix --config switchyard.toml`"), "{warning}");

        let both = load(&format!("{upstream}targets = [{{ provider = \"main\", upstream = \"main\" }}]\n"));
        assert!(both.unwrap_err().render().contains("keep one of them and delete the other"));
        let neither = load(&format!("{upstream}targets = [{{ model = \"x\" }}]\n"));
        assert!(neither.unwrap_err().render().contains("names no upstream"));
        let unknown = load(&format!("{upstream}targets = [{{ provider = \"mian\" }}]\n")).unwrap_err().render();
        assert!(
            unknown.contains("models.0.targets.0.provider") && unknown.contains("did you mean \"main\"?"),
            "{unknown}"
        );
    }

    #[test]
    fn syntax_errors_are_fatal_with_a_location() {
        let error = load("[server]\nlisten = \n").unwrap_err();
        assert_eq!(error.diagnostics[0].location.map(|l| l.0), Some(2));
    }

    #[test]
    fn a_model_naming_an_unknown_upstream_is_an_error() {
        let error = load("[upstreams.primary]\ndialect = \"mock\"\n[[models]]\nname = \"m\"\ntargets = [{ upstream = \"primry\" }]\n").unwrap_err();
        assert!(error.render().contains("did you mean \"primary\"?"), "{}", error.render());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("soon"), None);
    }
}
