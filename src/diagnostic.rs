//! User-facing diagnostics: `path:line:column: message`, the offending line,
//! and an optional hint. Every error a user can cause in their project files
//! becomes one of these.

use std::fmt;
use std::path::{Path, PathBuf};

/// A named rule (`unknownComponent`, a policy key such as
/// `allowedParents`): declared once as a `static`, referred to by address so
/// a [`Diagnostic`] stays small.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule(pub &'static str);

impl Rule {
    /// Its id, as `expectFailures` names it.
    pub fn id(&self) -> &'static str {
        self.0
    }
}

/// One problem in one file, at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, relative to the project root where possible.
    pub path: PathBuf,
    /// 1-based line (0 when the problem concerns the whole file).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
    /// What is wrong, lowercase, without trailing period.
    pub message: String,
    /// How to fix it, when kiln can tell.
    pub hint: Option<String>,
    /// The offending source line, shown under the message.
    pub snippet: Option<String>,
    /// The rule this problem breaks (`unknownComponent`, a policy key such
    /// as `allowedParents`), when it has a name: what a recipe test's
    /// `expectFailures` matches.
    pub rule: Option<&'static Rule>,
}

impl Diagnostic {
    /// A diagnostic about the whole file.
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.into(),
            line: 0,
            column: 0,
            message: message.into(),
            hint: None,
            snippet: None,
            rule: None,
        }
    }

    /// A diagnostic at a position; the snippet is taken from `source`.
    pub fn at(
        path: impl Into<PathBuf>,
        source: &str,
        line: u64,
        column: u64,
        message: impl Into<String>,
    ) -> Self {
        let snippet = if line > 0 {
            source.lines().nth(line as usize - 1).map(|l| l.to_string())
        } else {
            None
        };
        Diagnostic {
            path: path.into(),
            line,
            column,
            message: message.into(),
            hint: None,
            snippet,
            rule: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Names the rule this problem breaks.
    pub fn with_rule(mut self, rule: &'static Rule) -> Self {
        self.rule = Some(rule);
        self
    }

    /// Makes `path` relative to `root` when it lies below it.
    pub fn relative_to(mut self, root: &Path) -> Self {
        if let Ok(rel) = self.path.strip_prefix(root) {
            self.path = rel.to_path_buf();
        }
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column.max(1))?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(snippet) = &self.snippet {
            let gutter = self.line.to_string();
            let pad = " ".repeat(gutter.len());
            write!(f, "\n{pad} |\n{gutter} | {snippet}")?;
            let caret_at = (self.column.max(1) - 1) as usize;
            let caret_pad: String = snippet
                .chars()
                .take(caret_at)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n{pad} | {caret_pad}^")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        if let Some(rule) = self.rule {
            write!(f, "\n  = rule: {}", rule.id())?;
        }
        Ok(())
    }
}

/// Several diagnostics, reported together (validation shows all, not the first).
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Adds one.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when empty, else `Err(self)`.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

/// The closest candidate to `input` by edit distance, for "did you mean" hints.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(&input.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(input.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_position_snippet_and_hint() {
        let d = Diagnostic::at(
            "recipes/x.yaml",
            "a: 1\nnmae: x\n",
            2,
            1,
            "unknown field `nmae`",
        )
        .with_hint("did you mean `name`?");
        let s = d.to_string();
        assert!(
            s.starts_with("recipes/x.yaml:2:1: unknown field `nmae`"),
            "{s}"
        );
        assert!(s.contains("2 | nmae: x"), "{s}");
        assert!(s.contains("hint: did you mean `name`?"), "{s}");
    }

    #[test]
    fn closest_finds_typos_only() {
        assert_eq!(closest("nmae", ["name", "version"]), Some("name"));
        assert_eq!(
            closest("parentimage", ["parentImage", "name"]),
            Some("parentImage")
        );
        assert_eq!(closest("zzzzzz", ["name", "version"]), None);
    }
}
