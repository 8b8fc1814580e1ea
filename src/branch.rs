//! Branch pipelines: a branch name checked once into [`BranchName`], and
//! the tag suffix its builds get. The scheme: every tag a branch build
//! pushes is the recipe's tag followed by `-branch.<part>`, where `<part>`
//! is the branch name itself when it is made only of `a-z`, `0-9` and `-`
//! (at most 40 characters, not starting with `-`), and otherwise the name
//! lowercased with every other character turned into `-` (cut to 40),
//! then `.` and the first 10 hex digits of the sha256 of the exact name.
//! Plain parts never hold a `.` and encoded ones always do, so two branch
//! names never share a part (short of a 40-bit hash collision), and
//! `feature/x` and `feature-x` get different tags.

use std::fmt;

use crate::digest::Digest;

/// Longest branch name accepted.
pub const MAX_BRANCH_LEN: usize = 200;
/// Longest kept part of the name in a tag.
const MAX_PART: usize = 40;

/// A validated branch name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BranchName(String);

/// Why a branch name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BranchError {
    /// Empty, too long, or with characters git refuses in ref names.
    #[error("invalid branch name `{name}`: {why}")]
    Invalid {
        /// As given (escaped).
        name: String,
        /// Why.
        why: &'static str,
    },
}

impl BranchName {
    /// Checks `name` as git checks a branch name's characters: not empty,
    /// at most 200 characters, no whitespace, control characters, `~^:?*[\`,
    /// no `..`, `@{`, no leading `-` or `/`, no trailing `/` or `.lock`.
    pub fn parse(name: &str) -> Result<BranchName, BranchError> {
        let bad = |why| BranchError::Invalid {
            name: name.escape_debug().to_string(),
            why,
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() > MAX_BRANCH_LEN {
            return Err(bad("it is longer than 200 characters"));
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
        {
            return Err(bad(
                "it holds whitespace, a control character or one of ~^:?*[\\",
            ));
        }
        if name.contains("..") || name.contains("@{") || name.contains("//") {
            return Err(bad("it holds `..`, `@{` or `//`"));
        }
        if name.starts_with(['-', '/', '.'])
            || name.ends_with(['/', '.'])
            || name.ends_with(".lock")
        {
            return Err(bad(
                "it starts with `-`, `/` or `.`, or ends with `/`, `.` or `.lock`",
            ));
        }
        Ok(BranchName(name.to_string()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part of a tag that names this branch (see the module docs).
    pub fn tag_part(&self) -> String {
        let plain = self.0.len() <= MAX_PART
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if plain {
            return self.0.clone();
        }
        let slug: String = self
            .0
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9') => c,
                _ => '-',
            })
            .take(MAX_PART)
            .collect();
        let hex = Digest::of(self.0.as_bytes()).hex().to_string();
        format!("{slug}.{}", &hex[..10])
    }

    /// `-branch.<part>`, appended to every tag of a branch build.
    pub fn tag_suffix(&self) -> String {
        format!("-branch.{}", self.tag_part())
    }
}

impl fmt::Display for BranchName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_kept_and_others_are_encoded_without_collisions() {
        let part = |n: &str| BranchName::parse(n).unwrap().tag_part();
        assert_eq!(part("feature-x"), "feature-x");
        let slash = part("feature/x");
        assert!(slash.starts_with("feature-x."), "{slash}");
        assert_ne!(slash, part("feature-x"));
        assert_ne!(part("Feature-X"), part("feature-x"));
        assert_ne!(part("a_b"), part("a.b"));
        let long = part(&"a".repeat(120));
        assert!(long.len() <= 51, "{long}");
        for p in [slash, long, part("ÜBER/straße")] {
            assert!(
                p.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'.'),
                "{p}"
            );
        }
    }

    #[test]
    fn names_git_refuses_are_refused() {
        for bad in [
            "", "a b", "a..b", "-x", "x/", "x.lock", "a:b", "a\nb", "/x", "a@{1}",
        ] {
            assert!(BranchName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(BranchName::parse(&"a".repeat(201)).is_err());
    }
}
