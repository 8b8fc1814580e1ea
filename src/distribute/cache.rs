//! The blob cache in the project state folder (`.kiln/state/blobs.json`):
//! diff_id → compressed digest and size (per compression setting), and the
//! config bytes per image id. With it a warm push needs no export and no
//! compression: only `HEAD`s and the manifest.
//!
//! The cache is a hint, never trusted blindly: blobs are checked on the
//! target, config bytes are re-hashed against the image id, and a layer
//! compressed again must give the cached digest or the entry is replaced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// A compressed form of one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedBlob {
    /// Digest of the compressed bytes.
    pub digest: Digest,
    /// Size of the compressed bytes.
    pub size: u64,
}

/// The cache file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobCache {
    /// Compression key (e.g. `gzip-1`) → diff_id → compressed blob.
    #[serde(default)]
    pub layers: BTreeMap<String, BTreeMap<Digest, CachedBlob>>,
    /// Image id (config digest) → config JSON text.
    #[serde(default)]
    pub configs: BTreeMap<Digest, String>,
}

/// Most configs kept; older ones are dropped (they are cheap to re-export).
const MAX_CONFIGS: usize = 64;

impl BlobCache {
    /// The cache file inside a state folder.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("blobs.json")
    }

    /// Loads the cache; a missing or unreadable file is an empty cache.
    pub fn load(state_dir: &Path) -> Self {
        std::fs::read(Self::path(state_dir))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the cache atomically ([`crate::atomic_file`]).
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        let text = serde_json::to_vec(self)?;
        crate::atomic_file::write(&Self::path(state_dir), &text, crate::atomic_file::USER_FILE)
    }

    /// The compressed blob for `diff_id` under compression `key`.
    pub fn layer(&self, key: &str, diff_id: &Digest) -> Option<&CachedBlob> {
        self.layers.get(key)?.get(diff_id)
    }

    /// Records a compressed blob.
    pub fn insert_layer(&mut self, key: &str, diff_id: Digest, blob: CachedBlob) {
        self.layers
            .entry(key.to_string())
            .or_default()
            .insert(diff_id, blob);
    }

    /// The config bytes of `image_id`, only if they still hash to it.
    pub fn config(&self, image_id: &Digest) -> Option<Vec<u8>> {
        let text = self.configs.get(image_id)?;
        image_id
            .verify(text.as_bytes())
            .then(|| text.as_bytes().to_vec())
    }

    /// Records config bytes (ignored when not UTF-8, which a config always is).
    pub fn insert_config(&mut self, image_id: Digest, bytes: &[u8]) {
        if let Ok(text) = std::str::from_utf8(bytes) {
            if self.configs.len() >= MAX_CONFIGS && !self.configs.contains_key(&image_id) {
                let first = self.configs.keys().next().cloned();
                if let Some(k) = first {
                    self.configs.remove(&k);
                }
            }
            self.configs.insert(image_id, text.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks_configs() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = BlobCache::default();
        let blob = CachedBlob {
            digest: Digest::of(b"gz"),
            size: 2,
        };
        c.insert_layer("gzip-1", Digest::of(b"tar"), blob.clone());
        c.insert_config(Digest::of(b"{}"), b"{}");
        c.configs.insert(Digest::of(b"x"), "tampered".into());
        c.save(dir.path()).unwrap();
        let back = BlobCache::load(dir.path());
        assert_eq!(back.layer("gzip-1", &Digest::of(b"tar")), Some(&blob));
        assert_eq!(back.layer("gzip-6", &Digest::of(b"tar")), None);
        assert_eq!(back.config(&Digest::of(b"{}")), Some(b"{}".to_vec()));
        assert_eq!(back.config(&Digest::of(b"x")), None);
        assert_eq!(
            BlobCache::load(&dir.path().join("none")),
            BlobCache::default()
        );
    }
}
