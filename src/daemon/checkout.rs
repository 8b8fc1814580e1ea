//! The checkout digest a cluster node registers: sha256 over the project's
//! recipe inputs (`recipes/`, `components/`, `dockerfiles/`) in a stable
//! order. A run carries the digest of the node that queued it and only a
//! node with the same digest claims it, so nodes with different checkouts
//! never build each other's runs.
//!
//! `kiln.lock` is left out: it is state the daemon's own runs rewrite (pins
//! follow moved parents), so it drifts between nodes by design; each build
//! pins its parents when it runs and its record names the digests it used.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::project::{PathError, Project};

/// The folders whose files are recipe inputs.
pub const FOLDERS: [&str; 3] = ["recipes", "components", "dockerfiles"];

/// `sha256:<hex>` of `files` (project-relative `/` path → content): each as
/// its path, a NUL, its length, a NUL and its bytes, in path order. Pure.
pub fn digest(files: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new_with_prefix(b"kiln-checkout-v1\n");
    for (path, text) in files {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(text.len().to_string().as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The checkout digest of `project` (files read through
/// [`Project::confined`] and [`Project::read`]).
pub fn of_project(project: &Project) -> Result<String, PathError> {
    let mut files = BTreeMap::new();
    for folder in FOLDERS {
        let mut rels = Vec::new();
        walk(&project.dir(folder), "", &mut rels);
        for rel in rels {
            let path = project.confined(folder, &rel)?;
            files.insert(format!("{folder}/{rel}"), project.read(&path)?);
        }
    }
    Ok(digest(&files))
}

/// The files under `dir`, as `/`-joined paths relative to it (none when it
/// does not exist).
fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&entry.path(), &rel, out),
            Ok(_) => out.push(rel),
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn the_digest_follows_paths_and_contents_not_order() {
        let a = files(&[("recipes/web.yaml", "name: web"), ("kiln.lock", "{}")]);
        let b = files(&[("kiln.lock", "{}"), ("recipes/web.yaml", "name: web")]);
        assert_eq!(digest(&a), digest(&b));
        assert!(digest(&a).starts_with("sha256:") && digest(&a).len() == 71);
        let edited = files(&[("recipes/web.yaml", "name: web2"), ("kiln.lock", "{}")]);
        assert_ne!(digest(&a), digest(&edited));
        let moved = files(&[("recipes/app.yaml", "name: web"), ("kiln.lock", "{}")]);
        assert_ne!(digest(&a), digest(&moved));
        // Path and content boundaries cannot be shifted into each other.
        let x = files(&[("a", "bc")]);
        let y = files(&[("ab", "c")]);
        assert_ne!(digest(&x), digest(&y));
    }

    #[test]
    fn a_project_digest_covers_the_recipe_inputs_only() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["recipes", "components/extra", "contexts"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("recipes/web.yaml"), "name: web\n").unwrap();
        std::fs::write(dir.path().join("components/extra/c.yaml"), "c\n").unwrap();
        let project = Project::open(dir.path()).unwrap();
        let first = of_project(&project).unwrap();
        std::fs::write(dir.path().join("contexts/notes.txt"), "x").unwrap();
        assert_eq!(of_project(&project).unwrap(), first, "not a recipe input");
        std::fs::write(dir.path().join("kiln.lock"), "{}\n").unwrap();
        assert_eq!(
            of_project(&project).unwrap(),
            first,
            "runs rewrite the lock"
        );
        std::fs::create_dir_all(dir.path().join("dockerfiles")).unwrap();
        std::fs::write(dir.path().join("dockerfiles/web.Dockerfile"), "FROM x\n").unwrap();
        assert_ne!(of_project(&project).unwrap(), first);
    }
}
