//! `.dockerignore` rules, with the docker CLI's meaning: one pattern a line,
//! `#` comments, `!` re-includes, `*`/`?` never cross `/`, `**` crosses any
//! number of folders, a leading `/` is dropped, and a pattern that matches a
//! folder excludes everything below it. The last matching rule wins.

use globset::{GlobBuilder, GlobMatcher};

/// A `.dockerignore` line that is not a valid pattern.
#[derive(Debug, thiserror::Error)]
#[error("invalid .dockerignore pattern `{pattern}` on line {line}")]
pub struct DockerIgnoreError {
    /// 1-based line.
    pub line: usize,
    /// The pattern as written.
    pub pattern: String,
    /// The cause.
    #[source]
    pub source: globset::Error,
}

#[derive(Debug, Clone)]
struct Rule {
    glob: GlobMatcher,
    negate: bool,
}

/// Parsed `.dockerignore` rules.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    rules: Vec<Rule>,
}

/// Lexically cleans a pattern like Go's `filepath.Clean`, without a leading `/`.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Self, DockerIgnoreError> {
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, pat) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(pat);
            if cleaned.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(&cleaned)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|source| DockerIgnoreError {
                    line: i + 1,
                    pattern: line.to_string(),
                    source,
                })?;
            rules.push(Rule {
                glob: glob.compile_matcher(),
                negate,
            });
        }
        Ok(DockerIgnore { rules })
    }

    /// Whether any rule re-includes paths (`!pattern`); then excluded folders
    /// must still be walked.
    pub fn has_negations(&self) -> bool {
        self.rules.iter().any(|r| r.negate)
    }

    /// Whether the `/`-separated path (relative to the context root) is
    /// excluded.
    pub fn is_excluded(&self, rel: &str) -> bool {
        let mut excluded = false;
        for rule in &self.rules {
            if matches_or_parent(&rule.glob, rel) {
                excluded = !rule.negate;
            }
        }
        excluded
    }
}

fn matches_or_parent(glob: &GlobMatcher, rel: &str) -> bool {
    if glob.is_match(rel) {
        return true;
    }
    rel.match_indices('/')
        .any(|(i, _)| glob.is_match(&rel[..i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_docker_semantics() {
        let ig = DockerIgnore::parse(
            "# comment\n\n/node_modules\n*.log\n!keep.log\ndocs/**/*.md\nbuild/\n./tmp/../cache\n",
        )
        .unwrap();
        assert!(ig.is_excluded("node_modules"));
        assert!(ig.is_excluded("node_modules/a/b.js"));
        assert!(ig.is_excluded("error.log"));
        assert!(!ig.is_excluded("keep.log"));
        assert!(!ig.is_excluded("sub/error.log"), "* does not cross /");
        assert!(ig.is_excluded("docs/a/b/c.md"));
        assert!(ig.is_excluded("docs/c.md"));
        assert!(!ig.is_excluded("docs/c.txt"));
        assert!(ig.is_excluded("build/out.bin"));
        assert!(ig.is_excluded("cache/x"));
        assert!(!ig.is_excluded("src/main.rs"));
        assert!(ig.has_negations());
    }

    #[test]
    fn last_rule_wins() {
        let ig = DockerIgnore::parse("*\n!src\nsrc/secret.txt\n").unwrap();
        assert!(ig.is_excluded("README"));
        assert!(!ig.is_excluded("src/a.rs"));
        assert!(ig.is_excluded("src/secret.txt"));
    }

    #[test]
    fn bad_pattern_names_the_line() {
        let e = DockerIgnore::parse("ok\n[unclosed\n").unwrap_err();
        assert_eq!(e.line, 2);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec("[a-z0-9_.-]{1,6}", 1..5)
            .prop_map(|p| p.join("/"))
            .prop_filter("no . or .. segments", |p| {
                p.split('/').all(|s| s != "." && s != "..")
            })
    }

    proptest! {
        /// Any file text and any path end without a panic (a bad pattern is
        /// an error naming its line, within the file).
        #[test]
        fn arbitrary_files_never_panic(text in "\\PC{0,200}", rel in "\\PC{0,40}") {
            match DockerIgnore::parse(&text) {
                Ok(ig) => {
                    let _ = ig.is_excluded(&rel);
                }
                Err(e) => prop_assert!(e.line >= 1 && e.line <= text.lines().count()),
            }
        }

        /// A literal path excludes itself and everything below it; the same
        /// pattern negated afterwards re-includes both (last rule wins).
        #[test]
        fn literal_paths_exclude_their_subtree(p in path(), below in path()) {
            let ig = DockerIgnore::parse(&p).unwrap();
            let child = format!("{p}/{below}");
            prop_assert!(ig.is_excluded(&p));
            prop_assert!(ig.is_excluded(&child));
            let ig = DockerIgnore::parse(&format!("{p}\n!{p}")).unwrap();
            prop_assert!(!ig.is_excluded(&p));
            prop_assert!(!ig.is_excluded(&child));
        }
    }
}
