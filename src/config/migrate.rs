//! `switchyard doctor`: finds legacy and stale values in a config file and rewrites them.
//!
//! Every rewrite is a pure function over a [`toml_edit::DocumentMut`], so comments, key order,
//! quoting and whitespace outside the changed keys and values survive byte for byte. A rewrite
//! is only applied automatically when it has exactly one meaning; where an old value could have
//! meant two things, the likelier one is applied and the other is reported, and where a change is
//! only a guess (an unknown key close to a known one) it is proposed but never applied.
//!
//! What is rewritten, and why each mapping is unambiguous:
//!
//! - every dialect in [`LEGACY_DIALECTS`] (earlier names and other gateways' names), and a
//!   dialect written in another case (`"OpenAI-Completions"`);
//! - `[providers.NAME]` -> `[upstreams.NAME]`, when the file has no `[upstreams]` yet:
//!   a table of named backends is what other gateways call providers, and it is the only table
//!   of named tables in our schema;
//! - inside an upstream, the keys in [`UPSTREAM_KEY_RENAMES`] (e.g. `api_base` -> `base_url`),
//!   each with the reason it can only mean one of ours;
//! - inside a model target, `provider` -> `upstream` when its value names a configured upstream.
//!
//! Deliberately not rewritten, because they do not map 1:1: LiteLLM's `timeout` (a number of
//! seconds for the whole request, ours are four phase durations), `max_retries` (retries, ours
//! counts attempts, and the retry budget has no equivalent), `extra_headers` (we split headers
//! into `set` and `remove`), and `host` + `port` (two keys for our one `listen`). Those, like any
//! unknown key, are left to validation, which names the known keys.
//!
//! [`write_in_place`] is the file side of `--fix`: a backup first, then an atomic replace that
//! keeps the file's permissions.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, Visitor};
use toml_edit::{DocumentMut, InlineTable, Item, Key, Table, TableLike, Value};

use super::diagnostic::{did_you_mean, Locator};
use super::schema::{
    RawCompat, RawConfig, RawHeaders, RawHealthCheck, RawKey, RawModel, RawRetry, RawServer, RawTarget, RawTimeouts,
    RawTls, RawUpstream,
};
use super::validate::LEGACY_DIALECTS;
use crate::dialect::DialectKind;

/// Keys other gateways, clients and SDKs use inside an upstream, each with the one key of ours it
/// means and why it cannot mean anything else. The three that become `dialect` are applied only
/// when their value is a dialect name (current or legacy); otherwise they are only proposed.
#[rustfmt::skip]
pub const UPSTREAM_KEY_RENAMES: &[(&str, &str, &str)] = &[
    ("api_base", "base_url", "LiteLLM's name for the base URL"),
    ("apiBase", "base_url", "Continue's name for the base URL"),
    ("baseURL", "base_url", "the OpenAI Node SDK's name for the base URL"),
    ("baseUrl", "base_url", "pi-ai's name for the base URL"),
    ("base", "base_url", "an upstream has no other base"),
    ("apiKey", "api_key", "the OpenAI Node SDK's, Continue's and pi-ai's name for the API key"),
    ("apikey", "api_key", "a common spelling of the API key"),
    ("key", "api_key", "an upstream has no other key; client keys live in [[keys]]"),
    ("api", "dialect", "pi-ai names the wire protocol `api`"),
    ("provider", "dialect", "Continue and others name the wire protocol by provider"),
    ("type", "dialect", "a common name for the wire protocol"),
];

/// What a finding changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A key is renamed; its value stays.
    Key,
    /// A value is replaced; its key stays.
    Value,
}

/// Whether `--fix` applies a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Applied; it has only one meaning.
    Apply,
    /// Applied as the likelier meaning; the text says what else it might have meant.
    ApplyUnsure(String),
    /// Not applied: the text says why and what to do by hand.
    Propose(String),
}

/// One legacy or stale value, or a likely typo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based line and column in the file as it was read, found with the same [`Locator`] as
    /// validation uses, so both point at the same place.
    pub location: Option<(usize, usize)>,
    /// Dotted key path as written in the file (before any rename).
    pub path: String,
    pub change: Change,
    /// The old key name or value (values as TOML, e.g. `"openai"`).
    pub old: String,
    /// The new key name or value.
    pub new: String,
    /// Why the new one is meant.
    pub why: String,
    pub decision: Decision,
}

impl Finding {
    /// Whether `--fix` applies this finding.
    pub fn applies(&self) -> bool {
        !matches!(self.decision, Decision::Propose(_))
    }

    /// The finding as `file:line:col: path: change (why)` plus what `--fix` does or did with it.
    pub fn render(&self, file: &Path, fixed: bool) -> String {
        let place = match self.location {
            Some((line, col)) => format!("{}:{line}:{col}", file.display()),
            None => file.display().to_string(),
        };
        let change = match self.change {
            Change::Key => format!("rename key `{}` to `{}`", self.old, self.new),
            Change::Value => format!("{} -> {}", self.old, self.new),
        };
        let outcome = match (&self.decision, fixed) {
            (Decision::Apply, false) => "--fix applies this".to_owned(),
            (Decision::Apply, true) => "fixed".to_owned(),
            (Decision::ApplyUnsure(note), false) => {
                format!("--fix applies this; could not decide: {note}")
            }
            (Decision::ApplyUnsure(note), true) => format!("fixed; could not decide: {note}"),
            (Decision::Propose(reason), false) => {
                format!("--fix leaves this; could not decide: {reason}")
            }
            (Decision::Propose(reason), true) => format!("not changed; could not decide: {reason}"),
        };
        format!("{place}: {}: {change} ({})\n  {outcome}", self.path, self.why)
    }
}

/// The findings for a source text and the text with every applicable finding applied.
#[derive(Debug, Clone)]
pub struct Report {
    /// In file order.
    pub findings: Vec<Finding>,
    /// The rewritten text; identical to the source when nothing applies.
    pub migrated: String,
}

impl Report {
    /// Whether `--fix` would change the file.
    pub fn changes_anything(&self) -> bool {
        self.findings.iter().any(Finding::applies)
    }
}

/// Parses `source`, applies every rewrite and locates the findings in `source`.
pub fn check(source: &str) -> Result<Report, toml_edit::TomlError> {
    let mut document: DocumentMut = source.parse()?;
    let mut findings = migrate(&mut document);
    let locator = Locator::new(source);
    for finding in &mut findings {
        finding.location = locator.locate(&finding.path);
    }
    findings.sort_by_key(|f| f.location);
    if !findings.iter().any(Finding::applies) {
        // Nothing to change: the file is returned exactly as read.
        return Ok(Report { findings, migrated: source.to_owned() });
    }
    let Some(migrated) = as_written(source, &document.to_string()) else {
        // No rewrite adds or removes a line; if rendering did, toml_edit reformatted something,
        // and the promise to change only the listed keys and values would not hold.
        for finding in findings.iter_mut().filter(|f| f.applies()) {
            finding.decision = Decision::Propose(
                "this file cannot be rewritten without reformatting other lines; change it by hand".into(),
            );
        }
        return Ok(Report { findings, migrated: source.to_owned() });
    };
    Ok(Report { findings, migrated })
}

/// `rendered` with what toml_edit does not keep put back as `source` has it: each line's own
/// ending (`\r\n`, `\n`, or none after the last line), and a byte-order mark. `None` when the
/// two do not have the same lines.
fn as_written(source: &str, rendered: &str) -> Option<String> {
    const BOM: char = '\u{feff}';
    let rendered = rendered.replace("\r\n", "\n");
    let rendered = rendered.strip_prefix(BOM).unwrap_or(&rendered);
    let body = source.strip_prefix(BOM).unwrap_or(source);
    if rendered.lines().count() != body.lines().count() {
        return None;
    }
    let mut text = String::with_capacity(source.len() + 64);
    if body.len() != source.len() {
        text.push(BOM);
    }
    for (line, written) in rendered.lines().zip(body.split_inclusive('\n')) {
        text.push_str(line);
        text.push_str(&written[written.trim_end_matches(['\r', '\n']).len()..]);
    }
    Some(text)
}

/// Applies every rewrite that has one meaning to `document` and returns all findings, applied or
/// not, without locations (see [`check`]).
pub fn migrate(document: &mut DocumentMut) -> Vec<Finding> {
    let mut findings = Vec::new();
    let root = document.as_table_mut();
    let upstreams_written = rename_providers(root, &mut findings);

    let mut upstream_names = Vec::new();
    if let Some(upstreams) = root.get_mut("upstreams").and_then(Item::as_table_like_mut) {
        for (name, item) in upstreams.iter_mut() {
            let written = format!("{upstreams_written}.{}", name.get());
            upstream_names.push(name.get().to_owned());
            if let Some(table) = TableMut::new(item) {
                migrate_upstream(table, &written, &mut findings);
            }
        }
    }
    if let Some(models) = root.get_mut("models") {
        for (index, mut model) in tables_mut(models) {
            if let Some(targets) = model.get_mut("targets") {
                for (t, target) in tables_mut(targets) {
                    migrate_target(target, &format!("models.{index}.targets.{t}"), &upstream_names, &mut findings);
                }
            }
        }
    }
    propose_for_unknown_keys(&*root, upstreams_written, &mut findings);
    findings
}

/// `[providers.NAME]` -> `[upstreams.NAME]`; returns the name the upstreams were written under.
fn rename_providers(root: &mut Table, findings: &mut Vec<Finding>) -> &'static str {
    let Some(providers) = root.get("providers") else {
        return "upstreams";
    };
    let of_tables = providers.as_table_like().is_some_and(|t| t.iter().all(|(_, item)| item.is_table_like()));
    if !of_tables {
        // Not the shape of named upstreams: validation reports it as an unknown key.
        return "upstreams";
    }
    let decision = if root.contains_key("upstreams") {
        Decision::Propose(
            "the file has both [providers] and [upstreams]; move each provider into [upstreams] by hand".into(),
        )
    } else {
        Decision::Apply
    };
    let applies = decision == Decision::Apply;
    findings.push(Finding {
        location: None,
        path: "providers".into(),
        change: Change::Key,
        old: "providers".into(),
        new: "upstreams".into(),
        why: "other gateways call named backends providers; here they are upstreams".into(),
        decision,
    });
    if applies {
        TableMut::Table(root).rename("providers", "upstreams");
        "providers"
    } else {
        "upstreams"
    }
}

/// Key renames, then the dialect value, inside one upstream written at `written`.
fn migrate_upstream(mut table: TableMut<'_>, written: &str, findings: &mut Vec<Finding>) {
    let mut dialect_written = format!("{written}.dialect");
    for (alias, target, why) in UPSTREAM_KEY_RENAMES {
        let Some(item) = table.get(alias) else {
            continue;
        };
        let path = format!("{written}.{alias}");
        let blocker = if table.get(target).is_some() {
            Some(format!("`{target}` is also set; keep one of them and delete the other"))
        } else if *target == "dialect" {
            // Only a value that names a protocol makes this key a dialect.
            match item.as_str() {
                Some(value) if DialectKind::ALL.iter().any(|k| k.as_str() == value) || dialect_fix(value).is_some() => {
                    None
                }
                _ => Some(format!(
                    "its value is not a dialect name, so `{alias}` may mean something else; \
                     set `dialect` by hand (known dialects: {})",
                    known_dialects().join(", ")
                )),
            }
        } else {
            None
        };
        let applies = blocker.is_none();
        findings.push(Finding {
            location: None,
            path: path.clone(),
            change: Change::Key,
            old: (*alias).to_owned(),
            new: (*target).to_owned(),
            why: (*why).to_owned(),
            decision: blocker.map_or(Decision::Apply, Decision::Propose),
        });
        if applies {
            table.rename(alias, target);
            if *target == "dialect" {
                dialect_written = path;
            }
        }
    }

    let Some(item) = table.get_mut("dialect") else {
        return;
    };
    let Some(value) = item.as_str().map(str::to_owned) else {
        return;
    };
    if DialectKind::ALL.iter().any(|k| k.as_str() == value) {
        return;
    }
    if let Some((new, alternative)) = dialect_fix(&value) {
        set_string(item, new);
        let (why, decision) = match alternative {
            Some(alternative) => {
                let usage = if alternative.ends_with("-responses") {
                    "if you use the Responses API"
                } else {
                    "if that is what you meant"
                };
                let note =
                    format!("{value:?} might have meant {alternative:?}; kept {new:?}, change it by hand {usage}");
                (format!("dialect {value:?} was renamed"), Decision::ApplyUnsure(note))
            }
            None if LEGACY_DIALECTS.iter().any(|(old, _, _)| old.eq_ignore_ascii_case(value.trim())) => {
                (format!("dialect {value:?} was renamed"), Decision::Apply)
            }
            None => ("dialect names are lower case, without spaces".to_owned(), Decision::Apply),
        };
        findings.push(Finding {
            location: None,
            path: dialect_written,
            change: Change::Value,
            old: format!("{value:?}"),
            new: format!("{new:?}"),
            why,
            decision,
        });
    } else if let Some(close) = did_you_mean(&value, DialectKind::ALL.iter().map(|k| k.as_str())) {
        findings.push(Finding {
            location: None,
            path: dialect_written,
            change: Change::Value,
            old: format!("{value:?}"),
            new: format!("{close:?}"),
            why: "not a dialect, but close to one".into(),
            decision: Decision::Propose("it looks like a typo; check which dialect the upstream speaks".into()),
        });
    }
}

/// `provider` -> `upstream` in one model target, when the value names a configured upstream.
fn migrate_target(mut target: TableMut<'_>, written: &str, upstreams: &[String], findings: &mut Vec<Finding>) {
    let Some(provider) = target.get("provider") else {
        return;
    };
    let names_upstream = provider.as_str().is_some_and(|name| upstreams.iter().any(|u| u == name));
    let blocker = if target.get("upstream").is_some() {
        Some("`upstream` is also set; keep one of them and delete the other".to_owned())
    } else if !names_upstream {
        Some("its value is not the name of a configured upstream; set `upstream` by hand".to_owned())
    } else {
        None
    };
    let applies = blocker.is_none();
    findings.push(Finding {
        location: None,
        path: format!("{written}.provider"),
        change: Change::Key,
        old: "provider".into(),
        new: "upstream".into(),
        why: "a target names the upstream it goes to".into(),
        decision: blocker.map_or(Decision::Apply, Decision::Propose),
    });
    if applies {
        target.rename("provider", "upstream");
    }
}

/// The new dialect for a legacy or differently cased one, with what else it might have meant.
fn dialect_fix(value: &str) -> Option<(&'static str, Option<&'static str>)> {
    let folded = value.trim().to_ascii_lowercase();
    if let Some((_, new, alternative)) = LEGACY_DIALECTS.iter().find(|(old, _, _)| *old == folded) {
        return Some((new, *alternative));
    }
    DialectKind::ALL.iter().map(|k| k.as_str()).find(|name| *name == folded && *name != value).map(|name| (name, None))
}

fn known_dialects() -> Vec<&'static str> {
    DialectKind::ALL.iter().map(|k| k.as_str()).collect()
}

/// Replaces a string value, keeping the whitespace and comment around it.
fn set_string(item: &mut Item, new: &str) {
    if let Some(value) = item.as_value_mut() {
        let decor = value.decor().clone();
        *value = Value::from(new);
        *value.decor_mut() = decor;
    }
}

/// A standard or an inline table, for the edits `TableLike` cannot make with formatting kept.
enum TableMut<'a> {
    Table(&'a mut Table),
    Inline(&'a mut InlineTable),
}

impl<'a> TableMut<'a> {
    fn new(item: &'a mut Item) -> Option<Self> {
        match item {
            Item::Table(table) => Some(TableMut::Table(table)),
            Item::Value(Value::InlineTable(table)) => Some(TableMut::Inline(table)),
            _ => None,
        }
    }

    fn get(&self, key: &str) -> Option<&Item> {
        match self {
            TableMut::Table(table) => table.get(key),
            TableMut::Inline(table) => TableLike::get(*table, key),
        }
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Item> {
        match self {
            TableMut::Table(table) => table.get_mut(key),
            TableMut::Inline(table) => TableLike::get_mut(*table, key),
        }
    }

    /// Renames `old` to `new` in place: same position, same whitespace around the key.
    fn rename(&mut self, old: &str, new: &str) {
        let renamed = |key: Key| {
            if key.get() == old {
                Key::new(new).with_leaf_decor(key.leaf_decor().clone()).with_dotted_decor(key.dotted_decor().clone())
            } else {
                key
            }
        };
        // The entry map is private and only appends, so every entry is taken out and put back
        // in order, which leaves the renamed one where it was.
        match self {
            TableMut::Table(table) => {
                let names: Vec<String> = table.iter().map(|(k, _)| k.to_owned()).collect();
                for name in names {
                    if let Some((key, item)) = table.remove_entry(&name) {
                        table.insert_formatted(&renamed(key), item);
                    }
                }
            }
            TableMut::Inline(table) => {
                let names: Vec<String> = table.iter().map(|(k, _)| k.to_owned()).collect();
                for name in names {
                    if let Some((key, value)) = table.remove_entry(&name) {
                        table.insert_formatted(&renamed(key), value);
                    }
                }
            }
        }
    }
}

/// The tables of an array of tables or of an array of inline tables, with their indexes.
fn tables_mut(item: &mut Item) -> Vec<(usize, TableMut<'_>)> {
    match item {
        Item::ArrayOfTables(array) => array.iter_mut().map(TableMut::Table).enumerate().collect(),
        Item::Value(Value::Array(array)) => array
            .iter_mut()
            .enumerate()
            .filter_map(|(i, value)| match value {
                Value::InlineTable(table) => Some((i, TableMut::Inline(table))),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Read-only counterpart of [`tables_mut`].
fn tables(item: &Item) -> Vec<(usize, &dyn TableLike)> {
    match item {
        Item::ArrayOfTables(array) => array.iter().map(|t| t as &dyn TableLike).enumerate().collect(),
        Item::Value(Value::Array(array)) => array
            .iter()
            .enumerate()
            .filter_map(|(i, value)| value.as_inline_table().map(|t| (i, t as &dyn TableLike)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Unknown keys that are close to a known key: proposed, never applied, since a typo's intent
/// is a guess.
fn propose_for_unknown_keys(root: &Table, upstreams_written: &str, findings: &mut Vec<Finding>) {
    let mut scan = UnknownKeys { reported: findings.iter().map(|f| f.path.clone()).collect(), found: Vec::new() };
    scan.table(root, "", fields_of::<RawConfig>(), &["server", "keys", "upstreams", "models"]);
    if let Some(server) = root.get("server").and_then(Item::as_table_like) {
        scan.table(server, "server", fields_of::<RawServer>(), &[]);
    }
    if let Some(keys) = root.get("keys") {
        for (index, key) in tables(keys) {
            scan.table(key, &format!("keys.{index}"), fields_of::<RawKey>(), &[]);
        }
    }
    if let Some(upstreams) = root.get("upstreams").and_then(Item::as_table_like) {
        let subtables: &[(&str, &[&str])] = &[
            ("headers", fields_of::<RawHeaders>()),
            ("compat", fields_of::<RawCompat>()),
            ("tls", fields_of::<RawTls>()),
            ("timeouts", fields_of::<RawTimeouts>()),
            ("retry", fields_of::<RawRetry>()),
            ("health", fields_of::<RawHealthCheck>()),
        ];
        let names: Vec<&str> = subtables.iter().map(|(name, _)| *name).collect();
        for (name, item) in upstreams.iter() {
            let Some(upstream) = item.as_table_like() else {
                continue;
            };
            let written = format!("{upstreams_written}.{name}");
            scan.table(upstream, &written, fields_of::<RawUpstream>(), &names);
            for (sub, fields) in subtables {
                if let Some(table) = upstream.get(sub).and_then(Item::as_table_like) {
                    scan.table(table, &format!("{written}.{sub}"), fields, &[]);
                }
            }
        }
    }
    if let Some(models) = root.get("models") {
        for (index, model) in tables(models) {
            let written = format!("models.{index}");
            scan.table(model, &written, fields_of::<RawModel>(), &["targets"]);
            let Some(targets) = model.get("targets") else {
                continue;
            };
            for (t, target) in tables(targets) {
                let target_written = format!("{written}.targets.{t}");
                scan.table(target, &target_written, fields_of::<RawTarget>(), &["timeouts"]);
                if let Some(timeouts) = target.get("timeouts").and_then(Item::as_table_like) {
                    scan.table(timeouts, &format!("{target_written}.timeouts"), fields_of::<RawTimeouts>(), &[]);
                }
            }
        }
    }
    findings.append(&mut scan.found);
}

struct UnknownKeys {
    /// Paths an earlier finding already covers.
    reported: HashSet<String>,
    found: Vec<Finding>,
}

impl UnknownKeys {
    /// `known`: the keys this table accepts; `subtables`: those of them that hold tables.
    fn table(&mut self, table: &dyn TableLike, written: &str, known: &[&str], subtables: &[&str]) {
        for (key, item) in table.iter() {
            if known.contains(&key) {
                continue;
            }
            let path = if written.is_empty() { key.to_owned() } else { format!("{written}.{key}") };
            if self.reported.contains(&path) {
                continue;
            }
            let Some(close) = did_you_mean(key, known.iter().copied()) else {
                continue;
            };
            let scalar = matches!(item, Item::Value(v) if !v.is_inline_table() && !v.is_array());
            let reason = if subtables.contains(&close) && scalar {
                format!("`{close}` is a table here, so the value cannot just move; rewrite it by hand")
            } else {
                format!("if `{close}` is what you meant, rename it by hand")
            };
            self.reported.insert(path.clone());
            self.found.push(Finding {
                location: None,
                path,
                change: Change::Key,
                old: key.to_owned(),
                new: close.to_owned(),
                why: "an unknown key, close to a known one".into(),
                decision: Decision::Propose(reason),
            });
        }
    }
}

/// The keys a schema struct accepts, read from its `Deserialize` impl so that this list cannot
/// drift from schema.rs.
fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(FieldNames) {
        Err(FieldList(Some(fields))) => fields,
        _ => &[],
    }
}

/// A deserializer that answers every struct with its field list (as an error) and nothing else.
struct FieldNames;

#[derive(Debug)]
struct FieldList(Option<&'static [&'static str]>);

impl fmt::Display for FieldList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field list")
    }
}

impl std::error::Error for FieldList {}

impl de::Error for FieldList {
    fn custom<T: fmt::Display>(_: T) -> Self {
        FieldList(None)
    }
}

impl<'de> Deserializer<'de> for FieldNames {
    type Error = FieldList;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, FieldList> {
        Err(FieldList(None))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, FieldList> {
        Err(FieldList(Some(fields)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// Replaces the file at `path` with `text`, as `doctor --fix` does: checks that the file still
/// holds `original`, writes `FILE.bak` (or `FILE.bak.N` when that exists) with the original
/// content and permissions, then writes a temporary file beside it with the same permissions
/// (and owner, where the process may set it) and renames it over the file, so readers such as a
/// hot-reloading relay see the old file or the new one, never half of one. A symlinked config is
/// followed, so the link stays a link. Returns the backup's path.
pub fn write_in_place(path: &Path, original: &str, text: &str) -> io::Result<PathBuf> {
    let context = |what: &str, at: &Path, error: io::Error| {
        io::Error::new(error.kind(), format!("{what} {}: {error}", at.display()))
    };
    let target = fs::canonicalize(path).map_err(|e| context("cannot resolve", path, e))?;
    let metadata = fs::metadata(&target).map_err(|e| context("cannot stat", &target, e))?;
    let unchanged = |target: &Path| -> io::Result<()> {
        let current = fs::read(target).map_err(|e| context("cannot read", target, e))?;
        if current == original.as_bytes() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{} changed while doctor ran; nothing was written, run it again",
                target.display()
            )))
        }
    };
    unchanged(&target)?;

    let backup =
        create_backup(&target, original, &metadata).map_err(|e| context("cannot write a backup of", &target, e))?;

    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.doctor-{}.tmp", std::process::id()));
    let written = write_new(&temporary, text.as_bytes(), &metadata)
        .and_then(|()| keep_owner(&temporary, &metadata))
        .and_then(|()| unchanged(&target))
        .and_then(|()| fs::rename(&temporary, &target));
    if let Err(error) = written {
        // Best effort: the temporary file is ours and useless now; the error that matters is the one above.
        let _ = fs::remove_file(&temporary);
        return Err(context("cannot rewrite", &target, error));
    }
    // Makes the rename itself durable; not every filesystem lets a directory be synced.
    if let Ok(directory) = fs::File::open(dir) {
        let _ = directory.sync_all();
    }
    Ok(backup)
}

/// `FILE.bak`, or the first free `FILE.bak.N`; never overwrites an earlier backup.
fn create_backup(target: &Path, original: &str, metadata: &fs::Metadata) -> io::Result<PathBuf> {
    let base = target.as_os_str().to_owned();
    for n in 0u32.. {
        let mut name = base.clone();
        name.push(if n == 0 { ".bak".to_owned() } else { format!(".bak.{n}") });
        let backup = PathBuf::from(name);
        match write_new(&backup, original.as_bytes(), metadata) {
            Ok(()) => return Ok(backup),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::other("no free backup name"))
}

/// Creates `path` (which must not exist), writes and syncs `bytes`, and gives it the permissions
/// in `metadata`. On Unix it starts owner-only, so a config holding secrets is never briefly
/// readable by others.
fn write_new(path: &Path, bytes: &[u8], metadata: &fs::Metadata) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::set_permissions(path, metadata.permissions())
}

/// Gives `path` the owner and group in `metadata` when they differ, which only a privileged
/// process can do; failing is an error, since the rewrite would otherwise change who can read
/// the config.
#[cfg(unix)]
fn keep_owner(path: &Path, metadata: &fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let created = fs::metadata(path)?;
    if created.uid() == metadata.uid() && created.gid() == metadata.gid() {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(metadata.uid()), Some(metadata.gid()))
}

#[cfg(not(unix))]
fn keep_owner(_: &Path, _: &fs::Metadata) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(source: &str) -> Report {
        check(source).unwrap()
    }

    /// The lines that differ between two texts, which must have the same lines otherwise, byte
    /// for byte, line ends included.
    fn changed_lines<'a>(before: &'a str, after: &'a str) -> Vec<(&'a str, &'a str)> {
        assert_eq!(before.split('\n').count(), after.split('\n').count(), "{after}");
        before.split('\n').zip(after.split('\n')).filter(|(a, b)| a != b).collect()
    }

    #[test]
    fn every_legacy_dialect_is_rewritten() {
        for (old, new, alternative) in LEGACY_DIALECTS {
            let source = format!("[upstreams.u]\ndialect = \"{old}\"\n");
            let report = run(&source);
            assert_eq!(report.migrated, format!("[upstreams.u]\ndialect = \"{new}\"\n"));
            assert_eq!(report.findings.len(), 1, "{old}: {:?}", report.findings);
            let finding = &report.findings[0];
            assert_eq!((finding.path.as_str(), finding.location), ("upstreams.u.dialect", Some((2, 1))));
            assert_eq!((finding.old.as_str(), finding.new.as_str()), (&*format!("{old:?}"), &*format!("{new:?}")));
            match (alternative, &finding.decision) {
                (None, Decision::Apply) => {}
                (Some(alternative), Decision::ApplyUnsure(note)) => {
                    assert!(note.contains(alternative) && note.contains("by hand"), "{note}")
                }
                other => panic!("{old}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_openai_ambiguity_is_reported() {
        let report = run("[upstreams.u]\ndialect = \"openai\"\n");
        let text = report.findings[0].render(Path::new("f.toml"), true);
        assert!(text.starts_with("f.toml:2:1: upstreams.u.dialect: \"openai\" -> \"openai-completions\""), "{text}");
        assert!(
            text.contains(
                "\"openai\" might have meant \"openai-responses\"; kept \"openai-completions\", \
                 change it by hand if you use the Responses API"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_dialect_in_another_case_is_lowered_and_a_current_one_is_left_alone() {
        assert_eq!(
            run("[upstreams.u]\ndialect = \"Anthropic-Messages\"\n").migrated,
            "[upstreams.u]\ndialect = \"anthropic-messages\"\n"
        );
        let report = run("[upstreams.u]\ndialect = \"ollama\"\n");
        assert!(report.findings.is_empty() && !report.changes_anything());
    }

    #[test]
    fn a_dialect_typo_is_proposed_not_applied() {
        let source = "[upstreams.u]\ndialect = \"openai-completion\"\n";
        let report = run(source);
        assert_eq!(report.migrated, source);
        assert_eq!(report.findings[0].new, "\"openai-completions\"");
        assert!(matches!(report.findings[0].decision, Decision::Propose(_)));
    }

    #[test]
    fn upstream_key_renames_keep_position_value_and_comments() {
        let source = "\
# top comment
[upstreams.u]   # header comment
dialect = \"mock\"
# about the URL
api_base   =  'http://x/v1'  # trailing
apiKey = \"${K}\"
user_agent = \"ua\"
";
        let report = run(source);
        assert_eq!(
            changed_lines(source, &report.migrated),
            [
                ("api_base   =  'http://x/v1'  # trailing", "base_url   =  'http://x/v1'  # trailing"),
                ("apiKey = \"${K}\"", "api_key = \"${K}\"")
            ]
        );
        let found: Vec<_> = report.findings.iter().map(|f| (f.path.as_str(), f.location, f.applies())).collect();
        assert_eq!(found, [("upstreams.u.api_base", Some((5, 1)), true), ("upstreams.u.apiKey", Some((6, 1)), true)]);
    }

    #[test]
    fn every_key_rename_applies_alone() {
        for (alias, target, _) in UPSTREAM_KEY_RENAMES {
            let value = if *target == "dialect" { "openai-completions" } else { "v" };
            let dialect = if *target == "dialect" { "" } else { "dialect = \"mock\"\n" };
            let report = run(&format!("[upstreams.u]\n{dialect}{alias} = \"{value}\"\n"));
            assert_eq!(report.migrated, format!("[upstreams.u]\n{dialect}{target} = \"{value}\"\n"), "{alias}");
        }
    }

    #[test]
    fn a_provider_key_becomes_the_dialect_and_its_value_is_migrated_too() {
        let report = run("[upstreams.u]\nprovider = \"anthropic\"\n");
        assert_eq!(report.migrated, "[upstreams.u]\ndialect = \"anthropic-messages\"\n");
        let paths: Vec<_> = report.findings.iter().map(|f| (f.path.as_str(), f.change)).collect();
        assert_eq!(paths, [("upstreams.u.provider", Change::Key), ("upstreams.u.provider", Change::Value)]);
    }

    #[test]
    fn renames_that_would_collide_or_guess_are_only_proposed() {
        let source =
            "[upstreams.u]\ndialect = \"mock\"\nkey = \"a\"\napi_key = \"b\"\n[upstreams.v]\ntype = \"chat\"\n";
        let report = run(source);
        assert_eq!(report.migrated, source);
        assert!(!report.changes_anything());
        assert_eq!(report.findings.len(), 2, "{:?}", report.findings);
        assert!(report.findings.iter().all(|f| matches!(f.decision, Decision::Propose(_))));
    }

    #[test]
    fn providers_become_upstreams_and_targets_follow() {
        let source = "\
[server]
listen = \"127.0.0.1:1\"

# Upstreams, as another gateway called them.
[providers.main] # main
api = \"openai-completions\"
base_url = \"http://x/v1\"

[[models]]
name = \"m\"
targets = [ { provider = \"main\", model = \"x\" }, { provider = \"elsewhere\" } ]
";
        let report = run(source);
        assert_eq!(
            changed_lines(source, &report.migrated),
            [
                ("[providers.main] # main", "[upstreams.main] # main"),
                ("api = \"openai-completions\"", "dialect = \"openai-completions\""),
                (
                    "targets = [ { provider = \"main\", model = \"x\" }, { provider = \"elsewhere\" } ]",
                    "targets = [ { upstream = \"main\", model = \"x\" }, { provider = \"elsewhere\" } ]"
                ),
            ]
        );
        let found: Vec<_> = report.findings.iter().map(|f| (f.path.as_str(), f.location, f.applies())).collect();
        assert_eq!(
            found,
            [
                ("providers", Some((5, 2)), true),
                ("providers.main.api", Some((6, 1)), true),
                ("models.0.targets.0.provider", Some((11, 15)), true),
                ("models.0.targets.1.provider", Some((11, 51)), false),
            ]
        );
    }

    #[test]
    fn providers_next_to_upstreams_are_left_alone() {
        let source = "[upstreams.a]\ndialect = \"mock\"\n[providers.b]\ndialect = \"mock\"\n";
        let report = run(source);
        assert_eq!(report.migrated, source);
        assert!(matches!(report.findings[0].decision, Decision::Propose(_)));
    }

    #[test]
    fn unknown_keys_close_to_known_ones_are_proposed() {
        let source = "[server]\nlistn = \"x\"\n[upstreams.u]\ndialect = \"mock\"\nbase_ulr = \"x\"\ntimeout = 600\nretry.attemps = 2\nunrelated = 1\n";
        let report = run(source);
        assert_eq!(report.migrated, source);
        let found: Vec<_> = report.findings.iter().map(|f| (f.path.as_str(), f.new.as_str(), f.location)).collect();
        assert_eq!(
            found,
            [
                ("server.listn", "listen", Some((2, 1))),
                ("upstreams.u.base_ulr", "base_url", Some((5, 1))),
                ("upstreams.u.timeout", "timeouts", Some((6, 1))),
                ("upstreams.u.retry.attemps", "attempts", Some((7, 7))),
            ]
        );
        let Decision::Propose(reason) = &report.findings[2].decision else { panic!() };
        assert!(reason.contains("is a table here"), "{reason}");
    }

    #[test]
    fn mixed_line_endings_and_a_byte_order_mark_stay_as_written() {
        let source = "\u{feff}# team config\r\n[upstreams.a]\ndialect = \"claude\"\r\nbase_url = \"http://x\"\n\r\n[upstreams.b]  # second\r\ndialect = \"gemini\"";
        let report = run(source);
        assert_eq!(
            report.migrated,
            "\u{feff}# team config\r\n[upstreams.a]\ndialect = \"anthropic-messages\"\r\nbase_url = \"http://x\"\n\r\n[upstreams.b]  # second\r\ndialect = \"google-generative-ai\""
        );
        assert_eq!(report.findings[0].location, Some((3, 1)), "the mark takes no column");
        assert_eq!(run(&report.migrated).migrated, report.migrated, "a second run changes nothing");
    }

    #[test]
    fn inline_and_dotted_upstreams_and_crlf_files_are_rewritten_in_place() {
        let source = "[upstreams]\r\na = { dialect = \"claude\", apiKey = \"${A}\" , user_agent = \"x\" }\r\n\r\nb.type = \"bedrock\"  # dotted\r\nb.region = \"us-east-1\"";
        let report = run(source);
        assert_eq!(
            report.migrated,
            "[upstreams]\r\na = { dialect = \"anthropic-messages\", api_key = \"${A}\" , user_agent = \"x\" }\r\n\r\nb.dialect = \"bedrock-converse-stream\"  # dotted\r\nb.region = \"us-east-1\""
        );
        let paths: Vec<_> = report.findings.iter().map(|f| (f.path.as_str(), f.location)).collect();
        assert_eq!(
            paths,
            [
                ("upstreams.a.dialect", Some((2, 7))),
                ("upstreams.a.apiKey", Some((2, 27))),
                ("upstreams.b.type", Some((4, 3))),
                ("upstreams.b.type", Some((4, 3))),
            ]
        );
        assert!(run(&report.migrated).findings.is_empty());
    }

    #[test]
    fn fixing_is_idempotent_and_only_touches_changed_values() {
        let source = "\
# Production relay.
[server]
listen = \"127.0.0.1:8080\"   # loopback only

[upstreams.demo]
dialect = \"mock\"

[upstreams.legacy] # from 0.x
dialect = 'gemini'        # the old name
apikey = \"${GEMINI}\"
  compat = { strip_tool_strict = true }

[[models]]
name = \"m\"
targets = [{ upstream = \"legacy\" }]
";
        let first = run(source);
        assert_eq!(
            changed_lines(source, &first.migrated),
            [
                (
                    "dialect = 'gemini'        # the old name",
                    "dialect = \"google-generative-ai\"        # the old name"
                ),
                ("apikey = \"${GEMINI}\"", "api_key = \"${GEMINI}\""),
            ]
        );
        let second = run(&first.migrated);
        assert!(second.findings.is_empty(), "{:?}", second.findings);
        assert_eq!(second.migrated, first.migrated);
    }

    #[test]
    fn schema_field_lists_come_from_the_schema() {
        assert!(fields_of::<RawUpstream>().contains(&"dialect"));
        assert!(fields_of::<RawUpstream>().contains(&"base_url"));
        assert_eq!(fields_of::<RawTls>(), ["ca_file", "native_roots"]);
        for (_, target, _) in UPSTREAM_KEY_RENAMES {
            assert!(fields_of::<RawUpstream>().contains(target), "{target}");
        }
        for (alias, _, _) in UPSTREAM_KEY_RENAMES {
            assert!(!fields_of::<RawUpstream>().contains(alias), "{alias} is one of ours");
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("switchyard-migrate-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn write_in_place_backs_up_keeps_permissions_and_never_overwrites_a_backup() {
        let dir = scratch("write");
        let file = dir.join("switchyard.toml");
        fs::write(&file, "old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        }
        fs::write(dir.join("switchyard.toml.bak"), "earlier backup").unwrap();
        let backup = write_in_place(&file, "old", "new").unwrap();
        assert_eq!(backup, dir.join("switchyard.toml.bak.1"));
        assert_eq!(fs::read_to_string(&file).unwrap(), "new");
        assert_eq!(fs::read_to_string(&backup).unwrap(), "old");
        assert_eq!(fs::read_to_string(dir.join("switchyard.toml.bak")).unwrap(), "earlier backup");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o640);
            assert_eq!(fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o640);
        }
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_in_place_refuses_a_file_that_changed_since_it_was_read() {
        let dir = scratch("changed");
        let file = dir.join("c.toml");
        fs::write(&file, "edited meanwhile").unwrap();
        let error = write_in_place(&file, "as read", "new").unwrap_err();
        assert!(error.to_string().contains("changed while doctor ran"), "{error}");
        assert_eq!(fs::read_to_string(&file).unwrap(), "edited meanwhile");
        assert!(!dir.join("c.toml.bak").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn write_in_place_keeps_a_symlink_a_symlink() {
        let dir = scratch("link");
        let real = dir.join("real.toml");
        let link = dir.join("link.toml");
        fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let backup = write_in_place(&link, "old", "new").unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
        assert_eq!(backup, fs::canonicalize(&dir).unwrap().join("real.toml.bak"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
