//! `.kiln-ignore.yaml` at the project root: the reviewed list of findings a
//! project accepts. Each entry selects findings by `id` or by `rule` (exactly
//! one), optionally narrowed by `paths` (globs over the finding's path) and
//! `severity` (findings at or below it), and must say why (`reason`) and
//! until when (`expires: YYYY-MM-DD`, the last day it applies). Strict: an
//! unknown key, a bad date or glob, or a missing reason is a positioned
//! error, and the file is read (through [`Project::read`]) before anything
//! is built. Expired entries stop applying; the gate reports them.

use std::path::Path;

use chrono::NaiveDate;
use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Finding, IgnoreUse, Severity};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::project::Project;

/// The file's name at the project root.
pub const FILE: &str = ".kiln-ignore.yaml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    ignores: Vec<Spanned<RawEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    paths: Vec<Spanned<String>>,
    #[serde(default)]
    severity: Option<Spanned<String>>,
    #[serde(default)]
    reason: Option<String>,
    expires: Spanned<String>,
}

/// One entry, validated.
#[derive(Debug, Clone)]
pub struct IgnoreEntry {
    /// Its line in the file.
    pub line: u64,
    /// `id: …`.
    pub id: Option<String>,
    /// `rule: …`.
    pub rule: Option<String>,
    /// `paths` as written, and compiled.
    pub paths: Vec<(String, GlobMatcher)>,
    /// Findings at or below this severity (absent: any).
    pub severity: Option<Severity>,
    /// Why.
    pub reason: String,
    /// The last day it applies.
    pub expires: NaiveDate,
}

impl IgnoreEntry {
    /// Whether the entry selects `f` (expiry aside).
    pub fn matches(&self, f: &Finding) -> bool {
        let by = match (&self.id, &self.rule) {
            (Some(id), _) => *id == f.id,
            (None, Some(rule)) => *rule == f.rule,
            (None, None) => false,
        };
        let path = self.paths.is_empty()
            || f.path
                .as_deref()
                .is_some_and(|p| self.paths.iter().any(|(_, g)| g.is_match(p)));
        by && path && self.severity.is_none_or(|s| f.severity <= s)
    }

    /// How the record shows it.
    pub fn recorded(&self, expired: bool) -> IgnoreUse {
        let selects = match (&self.id, &self.rule) {
            (Some(id), _) => format!("id: {id}"),
            (None, Some(r)) => format!("rule: {r}"),
            (None, None) => String::new(),
        };
        IgnoreUse {
            line: self.line,
            selects,
            reason: self.reason.clone(),
            expires: self.expires.to_string(),
            expired,
            findings: Vec::new(),
        }
    }
}

/// The project's ignore file (empty when there is none).
#[derive(Debug, Clone, Default)]
pub struct IgnoreFile {
    /// The entries, in file order.
    pub entries: Vec<IgnoreEntry>,
}

impl IgnoreFile {
    /// Reads `.kiln-ignore.yaml` at the project root, if present.
    pub fn load(project: &Project) -> Result<IgnoreFile, Diagnostics> {
        let path = project.root().join(FILE);
        if !path.exists() {
            return Ok(IgnoreFile::default());
        }
        let one = |d: Diagnostic| Diagnostics::from(d);
        let confined = project
            .confined("", FILE)
            .map_err(|e| one(Diagnostic::file(FILE, e.to_string())))?;
        let text = project
            .read(&confined)
            .map_err(|e| one(Diagnostic::file(FILE, e.to_string())))?;
        Self::parse(Path::new(FILE), &text)
    }

    /// Parses and validates the text (`path` is for messages); every
    /// problem is reported.
    pub fn parse(path: &Path, text: &str) -> Result<IgnoreFile, Diagnostics> {
        let raw: RawFile = crate::yaml::decode(path, text).map_err(Diagnostics::from)?;
        let mut problems = Vec::new();
        let mut entries = Vec::new();
        for e in raw.ignores {
            let (line, column) = (e.referenced.line(), e.referenced.column());
            let at = |l: u64, c: u64, m: String| Diagnostic::at(path, text, l, c, m);
            let e = e.value;
            if e.id.is_some() == e.rule.is_some() {
                problems.push(at(
                    line,
                    column,
                    "an ignore entry needs exactly one of `id` and `rule`".into(),
                ));
            }
            let reason = e.reason.unwrap_or_default();
            if reason.trim().is_empty() {
                problems.push(at(line, column, "an ignore entry needs a `reason`".into()));
            }
            let (el, ec) = (e.expires.referenced.line(), e.expires.referenced.column());
            let expires = NaiveDate::parse_from_str(e.expires.value.trim(), "%Y-%m-%d");
            if expires.is_err() {
                let m = format!("`expires: {}` is not a date (YYYY-MM-DD)", e.expires.value);
                problems.push(at(el, ec, m));
            }
            let severity = match &e.severity {
                None => None,
                Some(s) => match Severity::parse(&s.value) {
                    Some(v) => Some(v),
                    None => {
                        let m = format!(
                            "`severity: {}` is not one of info, low, medium, high, critical",
                            s.value
                        );
                        problems.push(at(s.referenced.line(), s.referenced.column(), m));
                        None
                    }
                },
            };
            let mut paths = Vec::new();
            for p in &e.paths {
                match GlobBuilder::new(&p.value).literal_separator(true).build() {
                    Ok(g) => paths.push((p.value.clone(), g.compile_matcher())),
                    Err(err) => {
                        let m = format!("`{}` is not a glob: {err}", p.value);
                        problems.push(at(p.referenced.line(), p.referenced.column(), m));
                    }
                }
            }
            if let Ok(expires) = expires {
                entries.push(IgnoreEntry {
                    line,
                    id: e.id,
                    rule: e.rule,
                    paths,
                    severity,
                    reason,
                    expires,
                });
            }
        }
        if problems.is_empty() {
            Ok(IgnoreFile { entries })
        } else {
            Err(Diagnostics(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> String {
        IgnoreFile::parse(Path::new(FILE), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_problem_is_positioned() {
        let e = parse("ignores:\n  - rule: x\n    id: y\n    expires: tomorrow\n");
        assert!(
            e.contains(".kiln-ignore.yaml:2:5: an ignore entry needs exactly one"),
            "{e}"
        );
        assert!(e.contains("needs a `reason`"), "{e}");
        assert!(
            e.contains(".kiln-ignore.yaml:4:14: `expires: tomorrow`"),
            "{e}"
        );
        let e =
            parse("ignores:\n  - rule: x\n    reason: r\n    expires: 2026-01-01\n    paht: /x\n");
        assert!(e.contains(":5:") && e.contains("paht"), "{e}");
        let e = parse(
            "ignores:\n  - rule: x\n    reason: r\n    severity: severe\n    expires: 2026-01-01\n",
        );
        assert!(e.contains(":4:15: `severity: severe`"), "{e}");
    }
}
