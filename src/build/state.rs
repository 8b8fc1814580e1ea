//! The last build of each recipe, kept so the next build can say which input
//! changed: `<state dir>/builds/<recipe>.json` (by default the project's
//! `.kiln/state`). Only digests are stored, never values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// What the last successful build of a recipe was made from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastBuild {
    /// Recipe.
    pub recipe: String,
    /// Build key.
    pub build_key: Digest,
    /// Image id.
    pub image_id: String,
    /// Named input digests.
    pub inputs: BTreeMap<String, Digest>,
}

/// The state file of `recipe` below `state_dir`.
pub fn path(state_dir: &Path, recipe: &str) -> PathBuf {
    state_dir.join("builds").join(format!("{recipe}.json"))
}

/// Reads the last build of `recipe`; `None` when there is none or it is
/// unreadable (a warning is logged).
pub fn read(state_dir: &Path, recipe: &str) -> Option<LastBuild> {
    let p = path(state_dir, recipe);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("cannot read `{}`: {e}", p.display());
            return None;
        }
    };
    serde_json::from_slice(&bytes)
        .inspect_err(|e| tracing::warn!("ignoring `{}`: {e}", p.display()))
        .ok()
}

/// Writes the last build atomically ([`crate::atomic_file`]).
pub fn write(state_dir: &Path, last: &LastBuild) -> std::io::Result<()> {
    let p = path(state_dir, &last.recipe);
    let dir = p.parent().expect("has a parent");
    std::fs::create_dir_all(dir)?;
    let text = serde_json::to_vec_pretty(last)?;
    crate::atomic_file::write(&p, &text, crate::atomic_file::USER_FILE)
}
