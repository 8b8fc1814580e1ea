//! `kiln.lock`: pretty JSON, keys sorted (BTreeMap), one entry per recipe and
//! reference as written. Written atomically (temp file + rename).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::error::ResolveError;
use super::pin::PinnedImage;
use crate::atomic_file;
use crate::digest::Digest;
use crate::reference::ImageReference;

/// The file name of the lock at the project root.
pub const LOCK_FILE_NAME: &str = "kiln.lock";

/// The lock format version this kiln reads and writes.
pub const LOCK_VERSION: u32 = 1;

/// The lock: recipe name → reference as written → pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    /// Format version ([`LOCK_VERSION`]).
    pub version: u32,
    /// Pins per recipe.
    #[serde(default)]
    pub recipes: BTreeMap<String, BTreeMap<String, LockEntry>>,
}

impl Default for LockFile {
    fn default() -> Self {
        LockFile {
            version: LOCK_VERSION,
            recipes: BTreeMap::new(),
        }
    }
}

/// One pinned reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockEntry {
    /// What the reference pointed at: the index digest, else the manifest digest.
    pub digest: Digest,
    /// The index digest, for multi-platform images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<Digest>,
    /// The platform manifest digest: what builds use.
    pub manifest_digest: Digest,
    /// `registry/repository@manifestDigest`.
    pub pinned: ImageReference,
    /// The platform resolved for, e.g. `linux/amd64`.
    pub platform: String,
    /// When the digests were last seen to change (UTC, whole seconds).
    pub resolved_at: DateTime<Utc>,
}

impl LockEntry {
    /// An entry for `image`, stamped `at`.
    pub fn new(image: &PinnedImage, at: DateTime<Utc>) -> Self {
        LockEntry {
            digest: image.digest().clone(),
            index_digest: image.index_digest.clone(),
            manifest_digest: image.manifest_digest.clone(),
            pinned: image.pinned.clone(),
            platform: image.platform.to_string(),
            resolved_at: at.trunc_subsecs(0),
        }
    }

    /// The pin this entry holds for `written`.
    pub fn image(&self, written: &ImageReference) -> PinnedImage {
        PinnedImage {
            written: written.clone(),
            pinned: self.pinned.clone(),
            index_digest: self.index_digest.clone(),
            manifest_digest: self.manifest_digest.clone(),
            platform: self.platform.parse().unwrap_or_default(),
        }
    }

    /// Whether both entries pin the same content (timestamps ignored).
    pub fn same_pin(&self, other: &LockEntry) -> bool {
        self.digest == other.digest
            && self.index_digest == other.index_digest
            && self.manifest_digest == other.manifest_digest
            && self.platform == other.platform
    }
}

impl LockFile {
    /// Reads a lock; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<Self, ResolveError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(ResolveError::ReadLock {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let lock: LockFile =
            serde_json::from_slice(&bytes).map_err(|source| ResolveError::ParseLock {
                path: path.to_path_buf(),
                source,
            })?;
        if lock.version != LOCK_VERSION {
            return Err(ResolveError::LockVersion {
                path: path.to_path_buf(),
                found: lock.version,
                supported: LOCK_VERSION,
            });
        }
        Ok(lock)
    }

    /// The deterministic text of the lock (sorted keys, trailing newline).
    pub fn to_text(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("lock types always serialise");
        s.push('\n');
        s
    }

    /// Writes the lock atomically ([`atomic_file`]), mode 0644: it is meant
    /// to be committed.
    pub fn save(&self, path: &Path) -> Result<(), ResolveError> {
        atomic_file::write(path, self.to_text().as_bytes(), atomic_file::USER_FILE).map_err(
            |source| ResolveError::WriteLock {
                path: path.to_path_buf(),
                source,
            },
        )
    }

    /// The entry for `reference` in `recipe`.
    pub fn get(&self, recipe: &str, reference: &ImageReference) -> Option<&LockEntry> {
        self.recipes.get(recipe)?.get(&reference.to_string())
    }

    /// Replaces the section of each recipe in `resolved` with its pins.
    /// Entries whose pin did not change keep their `resolvedAt`, so an
    /// unchanged resolve leaves the file byte-for-byte the same.
    pub fn apply(&mut self, resolved: &[(String, Vec<PinnedImage>)], now: DateTime<Utc>) {
        for (recipe, images) in resolved {
            let old = self.recipes.remove(recipe).unwrap_or_default();
            let mut section = BTreeMap::new();
            for image in images {
                let key = image.written.to_string();
                let fresh = LockEntry::new(image, now);
                let entry = match old.get(&key) {
                    Some(prev) if prev.same_pin(&fresh) && prev.pinned == fresh.pinned => {
                        prev.clone()
                    }
                    _ => fresh,
                };
                section.insert(key, entry);
            }
            self.recipes.insert(recipe.clone(), section);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Platform;

    fn image(written: &str, byte: u8) -> PinnedImage {
        let written = ImageReference::parse(written).unwrap();
        let d = Digest::of(&[byte]);
        PinnedImage {
            pinned: written.pinned(d.clone()),
            written,
            index_digest: None,
            manifest_digest: d,
            platform: Platform::default(),
        }
    }

    #[test]
    fn text_is_sorted_and_round_trips() {
        let t0 = "2026-01-02T03:04:05.678Z".parse().unwrap();
        let mut lock = LockFile::default();
        lock.apply(
            &[
                ("zeta".into(), vec![image("r.io/b:1", 1)]),
                ("alpha".into(), vec![image("r.io/a:1", 2)]),
            ],
            t0,
        );
        let text = lock.to_text();
        assert!(text.find("\"alpha\"").unwrap() < text.find("\"zeta\"").unwrap());
        assert!(
            text.contains("\"resolvedAt\": \"2026-01-02T03:04:05Z\""),
            "{text}"
        );
        assert!(!text.contains("indexDigest"));
        let back: LockFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back, lock);
    }

    #[test]
    fn unchanged_pins_keep_their_timestamp_and_changed_ones_move() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
        let mut lock = LockFile::default();
        lock.apply(
            &[("r".into(), vec![image("r.io/a:1", 1), image("r.io/b:1", 2)])],
            t0,
        );
        let before = lock.to_text();
        lock.apply(
            &[("r".into(), vec![image("r.io/a:1", 1), image("r.io/b:1", 2)])],
            t1,
        );
        assert_eq!(lock.to_text(), before);
        lock.apply(
            &[("r".into(), vec![image("r.io/a:1", 1), image("r.io/b:1", 3)])],
            t1,
        );
        let a = lock.get("r", &"r.io/a:1".parse().unwrap()).unwrap();
        let b = lock.get("r", &"r.io/b:1".parse().unwrap()).unwrap();
        assert_eq!((a.resolved_at, b.resolved_at), (t0, t1));
        assert_eq!(b.digest, Digest::of(&[3]));
    }

    #[test]
    fn save_is_atomic_and_load_checks_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE_NAME);
        assert_eq!(LockFile::load(&path).unwrap(), LockFile::default());
        let mut lock = LockFile::default();
        lock.apply(&[("r".into(), vec![image("r.io/a:1", 1)])], Utc::now());
        lock.save(&path).unwrap();
        assert_eq!(LockFile::load(&path).unwrap(), lock);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
        std::fs::write(&path, r#"{"version": 99, "recipes": {}}"#).unwrap();
        assert!(matches!(
            LockFile::load(&path),
            Err(ResolveError::LockVersion { found: 99, .. })
        ));
    }
}
