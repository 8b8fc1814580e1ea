//! Image references (`registry/repository[:tag][@sha256:…]`), parsed with the
//! same normalisation rules as the docker CLI and validated so that nothing
//! but a reference can ever reach a `FROM` line.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;

/// The registry that a reference without a domain points at.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalised image reference.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageReference {
    /// Registry host (and port), e.g. `127.0.0.1:5000` or `docker.io`.
    pub registry: String,
    /// Repository path, e.g. `kiln/base` or `library/alpine`.
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest, if any.
    pub digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference `{input}`: {reason}")]
pub struct ReferenceParseError {
    /// The text that failed to parse (control characters escaped).
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Whether `s` is a valid tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_valid_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn is_valid_path_component(s: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = s.as_bytes();
    if b.is_empty() || !b[0].is_ascii_lowercase() && !b[0].is_ascii_digit() {
        return false;
    }
    if !b[b.len() - 1].is_ascii_lowercase() && !b[b.len() - 1].is_ascii_digit() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        // `i == start`: a character that is neither allowed nor a separator
        // (an uppercase letter, `+`, a non-ASCII byte) — the loop would not
        // advance, so it must end here.
        let sep = &s[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if i == start || !ok {
            return false;
        }
    }
    true
}

fn is_valid_domain(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, Some(p)),
        _ => (s, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host[1..host.len() - 1]
            .bytes()
            .all(|c| c.is_ascii_hexdigit() || c == b':');
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl ImageReference {
    /// Parses and normalises a reference, docker-style.
    pub fn parse(input: &str) -> Result<Self, ReferenceParseError> {
        let err = |reason: &str| ReferenceParseError {
            input: input.escape_debug().to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(err("empty reference"));
        }
        if input.len() > 512 {
            return Err(err("longer than 512 characters"));
        }
        if let Some(c) = input.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(err(&format!(
                "contains the character {:?}; references cannot contain whitespace or control characters",
                c
            )));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((name, d)) => (
                name,
                Some(
                    d.parse::<Digest>()
                        .map_err(|e| err(&format!("bad digest: {}", e.reason)))?,
                ),
            ),
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if let Some(t) = &tag
            && !is_valid_tag(t)
        {
            return Err(err(&format!("invalid tag `{t}`")));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !is_valid_domain(first) {
                    return Err(err(&format!("invalid registry host `{first}`")));
                }
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.is_empty() || !repository.split('/').all(is_valid_path_component) {
            return Err(err(&format!(
                "invalid repository `{repository}` (lowercase letters, digits and separators . _ __ - only)"
            )));
        }
        if repository.len() > 255 {
            return Err(err("repository name longer than 255 characters"));
        }
        Ok(ImageReference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag, or `latest` when neither tag nor digest is given.
    pub fn tag_or_latest(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match &self.digest {
            Some(d) => d.to_string(),
            None => self.tag_or_latest().unwrap_or("latest").to_string(),
        }
    }

    /// The same repository pinned to `digest` (tag dropped): `repo@sha256:…`.
    pub fn pinned(&self, digest: Digest) -> ImageReference {
        ImageReference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// Whether the reference is on a registry that kiln talks to over plain
    /// HTTP by default (loopback, like Docker).
    pub fn is_loopback(&self) -> bool {
        let host = self
            .registry
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&self.registry);
        host == "localhost" || host.starts_with("127.") || host == "[::1]"
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageReference({self})")
    }
}

impl FromStr for ImageReference {
    type Err = ReferenceParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ImageReference {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageReference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        let r = ImageReference::parse("alpine").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/alpine");
        assert_eq!(r.tag_or_latest(), Some("latest"));
        let r = ImageReference::parse("127.0.0.1:5000/kiln/base:1").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "kiln/base");
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert!(r.is_loopback());
        let d = Digest::of(b"x");
        let r = ImageReference::parse(&format!("localhost/a/b:t@{d}")).unwrap();
        assert_eq!(r.digest, Some(d.clone()));
        assert_eq!(
            r.pinned(d.clone()).to_string(),
            format!("localhost/a/b@{d}")
        );
    }

    #[test]
    fn rejects_injection_and_junk() {
        for bad in [
            "alpine\nRUN rm -rf /",
            "alpine RUN x",
            "Alpine",
            "alpine:",
            "alpine:-bad",
            "a//b",
            "alpine@sha256:zz",
            "",
            "a\u{7}",
        ] {
            assert!(ImageReference::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn illegal_characters_inside_a_component_end_parsing() {
        // These spun forever: the separator loop did not advance on them.
        for bad in [
            "myApp",
            "xxINT-f0",
            "a+b",
            "café",
            "127.0.0.1:5000/kiln/myApp:1",
        ] {
            // On a thread, so the old endless loop fails the test instead of hanging it.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || tx.send(ImageReference::parse(bad)));
            let parsed = rx.recv_timeout(std::time::Duration::from_secs(10));
            let e = parsed.expect("parse ends").unwrap_err();
            assert!(e.reason.contains("invalid repository"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn tags() {
        assert!(is_valid_tag("1.0.0-1"));
        assert!(is_valid_tag("_x"));
        assert!(!is_valid_tag(".x"));
        assert!(!is_valid_tag("a b"));
        assert!(!is_valid_tag(&"a".repeat(129)));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// A valid path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,3}"
    }

    fn reference() -> impl Strategy<Value = String> {
        (
            prop::option::of(prop_oneof![
                Just("127.0.0.1:5000".to_string()),
                Just("localhost".to_string()),
                "[a-z]{1,8}\\.[a-z]{2,4}(:[0-9]{1,5})?",
            ]),
            prop::collection::vec(component(), 1..4),
            prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            prop::option::of(prop::array::uniform32(any::<u8>())),
        )
            .prop_map(|(host, mut path, tag, digest)| {
                if host.is_none() {
                    // Without a host a first component with a dot is a
                    // host (docker's rule), so keep dots out of it.
                    path[0] = path[0].replace('.', "_");
                }
                let mut s = host.map(|h| format!("{h}/")).unwrap_or_default();
                s.push_str(&path.join("/"));
                if let Some(t) = tag {
                    s.push(':');
                    s.push_str(&t);
                }
                if let Some(d) = digest {
                    s.push('@');
                    s.push_str(&Digest::of(&d).to_string());
                }
                s
            })
    }

    proptest! {
        /// Any input ends (the test harness would hang otherwise) without a
        /// panic, and whatever parses prints back to itself.
        #[test]
        fn arbitrary_text_never_panics_or_hangs(input in "\\PC{0,80}") {
            if let Ok(r) = ImageReference::parse(&input) {
                prop_assert_eq!(ImageReference::parse(&r.to_string()), Ok(r));
            }
        }

        /// Near-valid text: valid pieces with one character of any class
        /// dropped in, the inputs that found the endless loop.
        #[test]
        fn one_bad_character_anywhere_is_refused_or_kept(
            base in reference(),
            at in any::<prop::sample::Index>(),
            c in prop_oneof![Just('A'), Just('+'), Just('é'), Just('/'), Just(':'), Just('@'), Just('.'), any::<char>()],
        ) {
            let mut chars: Vec<char> = base.chars().collect();
            chars.insert(at.index(chars.len() + 1), c);
            let input: String = chars.into_iter().collect();
            if let Ok(r) = ImageReference::parse(&input) {
                prop_assert_eq!(ImageReference::parse(&r.to_string()), Ok(r));
            }
        }

        /// Valid references parse, and display → parse is the identity.
        #[test]
        fn valid_references_round_trip(input in reference()) {
            let r = ImageReference::parse(&input);
            prop_assert!(r.is_ok(), "{input:?}: {r:?}");
            let r = r.unwrap();
            prop_assert_eq!(ImageReference::parse(&r.to_string()), Ok(r.clone()));
            prop_assert!(r.repository.split('/').all(is_valid_path_component));
        }

        /// A component is valid exactly when it matches the distribution
        /// grammar (checked against a regex).
        #[test]
        fn path_component_matches_the_grammar(s in "[a-zA-Z0-9._+é-]{0,12}") {
            let grammar = regex::Regex::new("^[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*$").unwrap();
            prop_assert_eq!(is_valid_path_component(&s), grammar.is_match(&s));
        }
    }
}
