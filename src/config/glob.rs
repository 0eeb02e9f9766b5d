//! `*` wildcards for model allow-lists and header names.

/// A pattern where `*` matches any run of characters (case-sensitive unless built with
/// [`Glob::case_insensitive`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    case_insensitive: bool,
}

impl Glob {
    /// A case-sensitive pattern.
    pub fn new(pattern: &str) -> Self {
        Glob { pattern: pattern.to_owned(), case_insensitive: false }
    }

    /// A pattern compared without regard to ASCII case (header names).
    pub fn case_insensitive(pattern: &str) -> Self {
        Glob { pattern: pattern.to_ascii_lowercase(), case_insensitive: true }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        if self.case_insensitive {
            wildcard(self.pattern.as_bytes(), text.to_ascii_lowercase().as_bytes())
        } else {
            wildcard(self.pattern.as_bytes(), text.as_bytes())
        }
    }
}

/// Iterative wildcard match with single backtracking point (linear for `*`-only patterns).
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|b| *b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_match_any_run() {
        assert!(Glob::new("*").matches("anything"));
        assert!(Glob::new("openai/*").matches("openai/gpt-4o"));
        assert!(!Glob::new("openai/*").matches("anthropic/claude"));
        assert!(Glob::new("gpt-*-mini").matches("gpt-4o-mini"));
        assert!(Glob::case_insensitive("X-Stainless-*").matches("x-stainless-os"));
        assert!(!Glob::new("a*b").matches("acbd"));
    }
}
