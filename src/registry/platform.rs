//! Target platforms (`os/arch[/variant]`) and choosing a platform manifest
//! out of an OCI image index or Docker manifest list.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// A target platform, e.g. `linux/amd64` or `linux/arm/v7`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// CPU variant, e.g. `v8`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Platform::new("linux", "amd64", None)
    }
}

/// Why a string is not a platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform `{input}`: expected os/arch or os/arch/variant")]
pub struct PlatformParseError {
    /// The text that failed to parse.
    pub input: String,
}

impl Platform {
    /// Builds a platform.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// The variant with the well-known defaults filled in (`arm64` → `v8`).
    fn effective_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            (_, Some(v)) => Some(v),
            ("arm64", None) => Some("v8"),
            _ => None,
        }
    }
}

impl FromStr for Platform {
    type Err = PlatformParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &&str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform::new(os, arch, None)),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform::new(os, arch, Some(v))),
            _ => Err(PlatformParseError {
                input: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Platform({self})")
    }
}

/// The parts of an index / manifest list that platform selection needs.
#[derive(Debug, Clone, Deserialize)]
pub struct IndexDocument {
    /// The referenced manifests.
    #[serde(default)]
    pub manifests: Vec<IndexEntry>,
}

/// One manifest referenced by an index.
#[derive(Debug, Clone, Deserialize)]
pub struct IndexEntry {
    /// Media type of the referenced manifest.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// Digest of the referenced manifest.
    pub digest: Digest,
    /// Its platform, if the index states one.
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// Whether an image of platform `p` serves `target`: same OS and
/// architecture, and the same (effective) variant.
pub fn platform_matches(p: &Platform, target: &Platform) -> bool {
    p.os == target.os
        && p.architecture == target.architecture
        && (p.effective_variant() == target.effective_variant()
            || target.variant.is_none() && p.variant.is_none())
}

/// Picks the entry for `target`: os and architecture must match; the variant
/// must match when either side states one (`arm64` implies `v8`). Among
/// several candidates an exact variant match wins, then the first listed.
pub fn select_platform<'a>(entries: &'a [IndexEntry], target: &Platform) -> Option<&'a IndexEntry> {
    let candidates = entries.iter().filter(|e| {
        e.platform
            .as_ref()
            .is_some_and(|p| platform_matches(p, target))
    });
    let mut first = None;
    for e in candidates {
        if e.platform.as_ref().map(|p| &p.variant) == Some(&target.variant) {
            return Some(e);
        }
        first.get_or_insert(e);
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, p: &str) -> IndexEntry {
        IndexEntry {
            media_type: String::new(),
            digest: Digest::of(&[n]),
            platform: Some(p.parse().unwrap()),
        }
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!(
            "linux/arm/v7".parse::<Platform>().unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(Platform::default().to_string(), "linux/amd64");
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    #[test]
    fn selects_by_os_arch_and_variant() {
        let idx = [
            entry(1, "linux/amd64"),
            entry(2, "linux/arm/v6"),
            entry(3, "linux/arm/v7"),
            entry(4, "linux/arm64/v8"),
            entry(5, "windows/amd64"),
        ];
        let pick = |p: &str| select_platform(&idx, &p.parse().unwrap()).map(|e| e.digest.clone());
        assert_eq!(pick("linux/amd64"), Some(Digest::of(&[1])));
        assert_eq!(pick("linux/arm/v7"), Some(Digest::of(&[3])));
        assert_eq!(
            pick("linux/arm64"),
            Some(Digest::of(&[4])),
            "arm64 implies v8"
        );
        assert_eq!(pick("windows/amd64"), Some(Digest::of(&[5])));
        assert_eq!(pick("linux/s390x"), None);
        assert_eq!(pick("linux/arm64/v9"), None);
    }

    #[test]
    fn skips_entries_without_platform_and_prefers_exact_variant() {
        let mut attestation = entry(9, "linux/amd64");
        attestation.platform = None;
        let idx = [
            attestation,
            entry(1, "linux/arm64"),
            entry(2, "linux/arm64/v8"),
        ];
        let got = select_platform(&idx, &"linux/arm64/v8".parse().unwrap()).unwrap();
        assert_eq!(got.digest, Digest::of(&[2]));
        let got = select_platform(&idx, &"linux/arm64".parse().unwrap()).unwrap();
        assert_eq!(got.digest, Digest::of(&[1]));
        assert!(select_platform(&idx, &"linux/amd64".parse().unwrap()).is_none());
    }
}
