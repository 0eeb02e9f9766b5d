//! Config problems as the user sees them: `file:line:col`, the key path, what was wrong and a
//! suggestion.

use std::fmt;
use std::path::PathBuf;

use toml_edit::{ImDocument, Item, Table, Value};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file cannot be served (or, inside one upstream, that upstream is disabled).
    Error,
    /// Served, but something was skipped or looks wrong.
    Warning,
}

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: Option<PathBuf>,
    /// 1-based line and column.
    pub location: Option<(usize, usize)>,
    /// Dotted key path, e.g. `upstreams.openai.dialect`.
    pub path: String,
    pub message: String,
    pub suggestion: Option<String>,
}

impl Diagnostic {
    /// An error at a key path.
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: None,
            location: None,
            path: path.into(),
            message: message.into(),
            suggestion: None,
        }
    }

    /// A warning at a key path.
    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(path, message) }
    }

    /// Adds a suggestion.
    pub fn suggest(mut self, suggestion: impl Into<String>) -> Self {
        self.suggestion = Some(suggestion.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.as_ref().map_or_else(|| "<config>".to_owned(), |p| p.display().to_string());
        match self.location {
            Some((line, col)) => write!(f, "{file}:{line}:{col}: ")?,
            None => write!(f, "{file}: ")?,
        }
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(suggestion) = &self.suggestion {
            write!(f, "\n  help: {suggestion}")?;
        }
        Ok(())
    }
}

/// The closest of `candidates` to `input`, if it is close enough to be a likely typo: a few
/// edits away (transpositions count as one), or sharing a long common prefix.
pub fn did_you_mean<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let max_edits = (input.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(input, c), strsim::jaro_winkler(input, c), c))
        .filter(|(edits, similarity, _)| *edits <= max_edits || *similarity > 0.9)
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, c)| c)
}

/// Finds where keys are written in the source text.
pub struct Locator<'s> {
    source: &'s str,
    document: Option<ImDocument<&'s str>>,
}

impl<'s> Locator<'s> {
    /// Indexes a source text; a text that does not parse locates nothing.
    pub fn new(source: &'s str) -> Self {
        Locator { source, document: ImDocument::parse(source).ok() }
    }

    /// 1-based line and column of a byte offset. The column counts characters, as editors do:
    /// bytes would put it too far right after any non-ASCII text on the line.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.source[..offset.min(self.source.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
        // A byte-order mark is no character an editor shows, so it takes no column.
        let on_line = &before[line_start..];
        let on_line = if line_start == 0 { on_line.strip_prefix('\u{feff}').unwrap_or(on_line) } else { on_line };
        (line, on_line.chars().count() + 1)
    }

    /// Where the deepest existing part of a dotted path is written: the key itself when found,
    /// else its closest written parent. Numeric segments index arrays, written either way
    /// (`models.2.name`, or `targets[0].upstream` as serde_path_to_error writes them).
    pub fn locate(&self, path: &str) -> Option<(usize, usize)> {
        let document = self.document.as_ref()?;
        let segments: Vec<&str> = path.split(['.', '[', ']']).filter(|s| !s.is_empty()).collect();
        locate_in_table(document.as_table(), &segments, None).map(|offset| self.line_col(offset))
    }
}

fn locate_in_table(table: &Table, segments: &[&str], best: Option<usize>) -> Option<usize> {
    let Some((segment, rest)) = segments.split_first() else { return best };
    let Some((key, item)) = table.get_key_value(segment) else { return best };
    let here = key.span().or_else(|| item.span()).map(|s| s.start).or(best);
    match item {
        Item::Table(inner) => locate_in_table(inner, rest, here),
        Item::ArrayOfTables(array) => {
            let Some((index, rest)) = rest.split_first() else { return here };
            match index.parse::<usize>().ok().and_then(|i| array.get(i)) {
                Some(inner) => locate_in_table(inner, rest, inner.span().map(|s| s.start).or(here)),
                None => here,
            }
        }
        Item::Value(value) => locate_in_value(value, rest, here),
        Item::None => here,
    }
}

fn locate_in_value(value: &Value, segments: &[&str], best: Option<usize>) -> Option<usize> {
    let Some((segment, rest)) = segments.split_first() else { return best };
    match value {
        Value::InlineTable(table) => match table.get_key_value(segment) {
            Some((key, inner)) => {
                let here = key.span().or_else(|| inner.span()).map(|s| s.start).or(best);
                match inner.as_value() {
                    Some(value) => locate_in_value(value, rest, here),
                    None => here,
                }
            }
            None => best,
        },
        Value::Array(array) => match segment.parse::<usize>().ok().and_then(|i| array.get(i)) {
            Some(inner) => locate_in_value(inner, rest, inner.span().map(|s| s.start).or(best)),
            None => best,
        },
        _ => best,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "# comment\n[server]\nlisten = \"127.0.0.1:1\"\n\n[upstreams.openai]\ndialect = \"openai\"\n";

    #[test]
    fn locates_keys_by_dotted_path() {
        let locator = Locator::new(SOURCE);
        assert_eq!(locator.locate("server.listen"), Some((3, 1)));
        assert_eq!(locator.locate("upstreams.openai.dialect"), Some((6, 1)));
        assert_eq!(locator.locate("upstreams.openai.missing"), Some((5, 12)));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let locator = Locator::new("[upstreams]\na = { dialect = \"héllo→\", base_ulr = \"x\" }\n");
        assert_eq!(locator.locate("upstreams.a.base_ulr"), Some((2, 27)));
    }

    #[test]
    fn array_indexes_locate_in_either_notation() {
        let source = "[[models]]\nname = \"m\"\ntargets = [\n  { upstream = \"a\" },\n  { upstrem = \"b\" },\n]\n";
        let locator = Locator::new(source);
        assert_eq!(locator.locate("models.0.targets[1].upstrem"), Some((5, 5)));
        assert_eq!(locator.locate("models.0.targets.1.upstrem"), Some((5, 5)));
    }

    #[test]
    fn a_byte_order_mark_takes_no_column() {
        let locator = Locator::new("\u{feff}listen = 5\n");
        assert_eq!(locator.line_col("\u{feff}".len()), (1, 1));
        assert_eq!(locator.locate("listen"), Some((1, 1)));
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("listn", ["listen", "admin_listen"]), Some("listen"));
        assert_eq!(did_you_mean("zzz", ["listen"]), None);
    }
}
