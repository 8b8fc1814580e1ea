//! The checkout digest a cluster node registers: sha256 over the project's
//! recipe inputs in a stable order — `recipes/`, `components/`,
//! `dockerfiles/`, `contexts/`, `.kiln-ignore.yaml` and the structure-test
//! files recipes name (`test.structureTests`). A run carries the digest of
//! the node that queued it and only a node with the same digest claims it,
//! so nodes with different checkouts never build each other's runs.
//!
//! `kiln.lock` is left out: it is state the daemon's own runs rewrite (pins
//! follow moved parents), so it drifts between nodes by design; each build
//! pins its parents when it runs and its record names the digests it used.
//! The digest is taken once, at start: a node that pulls a new commit is
//! restarted to advertise it.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::project::{PathError, Project};

/// The folders whose files are recipe inputs.
pub const FOLDERS: [&str; 4] = ["recipes", "components", "dockerfiles", "contexts"];

/// Single files that are recipe inputs when present.
pub const FILES: [&str; 1] = [".kiln-ignore.yaml"];

/// `sha256:<hex>` of `files` (project-relative `/` path → the sha256 hex of
/// its bytes): each as its path, a NUL, its digest and a newline, in path
/// order. Pure.
pub fn digest(files: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new_with_prefix(b"kiln-checkout-v2\n");
    for (path, file_digest) in files {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(file_digest.as_bytes());
        h.update(b"\n");
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The checkout digest of `project` (every path confined to it through
/// [`Project::confined`]; files hashed as they are read).
pub fn of_project(project: &Project) -> Result<String, PathError> {
    let mut files = BTreeMap::new();
    for folder in FOLDERS {
        let mut rels = Vec::new();
        walk(&project.dir(folder), "", &mut rels);
        for rel in rels {
            let path = project.confined(folder, &rel)?;
            files.insert(format!("{folder}/{rel}"), hash_file(project, &path)?);
        }
    }
    let named = FILES
        .iter()
        .map(|f| f.to_string())
        .filter(|f| project.dir(f).is_file())
        .chain(structure_test_files(project));
    for rel in named {
        let path = project.confined("", &rel)?;
        files.insert(rel, hash_file(project, &path)?);
    }
    Ok(digest(&files))
}

/// The sha256 hex of the file at `path`, streamed.
fn hash_file(project: &Project, path: &Path) -> Result<String, PathError> {
    let io = |source| PathError::Io {
        path: project.display(path),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).map_err(io)?;
    Ok(hex::encode(h.finalize()))
}

/// What the checkout needs of a recipe: its structure-test files.
#[derive(Debug, Default, serde::Deserialize)]
struct RecipeNames {
    #[serde(default)]
    test: Option<TestNames>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct TestNames {
    #[serde(default, rename = "structureTests")]
    structure_tests: Vec<String>,
}

/// The structure-test files the project's recipes name (a recipe that does
/// not parse names none here; loading it reports why).
fn structure_test_files(project: &Project) -> Vec<String> {
    let mut rels = Vec::new();
    walk(&project.dir("recipes"), "", &mut rels);
    rels.iter()
        .filter_map(|rel| project.confined("recipes", rel).ok())
        .filter_map(|path| project.read(&path).ok())
        .filter_map(|text| serde_saphyr::from_str::<RecipeNames>(&text).ok())
        .filter_map(|r| r.test)
        .flat_map(|t| t.structure_tests)
        .filter(|rel| project.dir(rel).is_file())
        .collect()
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
        let a = files(&[("recipes/web.yaml", "aa"), ("contexts/x", "bb")]);
        let b = files(&[("contexts/x", "bb"), ("recipes/web.yaml", "aa")]);
        assert_eq!(digest(&a), digest(&b));
        assert!(digest(&a).starts_with("sha256:") && digest(&a).len() == 71);
        let edited = files(&[("recipes/web.yaml", "ab"), ("contexts/x", "bb")]);
        assert_ne!(digest(&a), digest(&edited));
        let moved = files(&[("recipes/app.yaml", "aa"), ("contexts/x", "bb")]);
        assert_ne!(digest(&a), digest(&moved));
    }

    #[test]
    fn a_project_digest_covers_the_recipe_inputs_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in [
            "recipes",
            "components/extra",
            "contexts/site",
            "tests",
            "docs",
        ] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let recipe = "name: web\ntest:\n  structureTests: [tests/web-cst.yaml]\n";
        std::fs::write(root.join("recipes/web.yaml"), recipe).unwrap();
        std::fs::write(root.join("components/extra/c.yaml"), "c\n").unwrap();
        std::fs::write(root.join("tests/web-cst.yaml"), "schemaVersion: 2.0.0\n").unwrap();
        let project = Project::open(root).unwrap();
        let first = of_project(&project).unwrap();
        let unchanged = |what: &str| assert_eq!(of_project(&project).unwrap(), first, "{what}");
        std::fs::write(root.join("docs/notes.txt"), "x").unwrap();
        unchanged("not a recipe input");
        std::fs::write(root.join("kiln.lock"), "{}\n").unwrap();
        unchanged("runs rewrite the lock");
        let mut seen = vec![first.clone()];
        let mut changes = |rel: &str, bytes: &[u8]| {
            std::fs::write(root.join(rel), bytes).unwrap();
            let now = of_project(&project).unwrap();
            assert!(!seen.contains(&now), "{rel} changes the digest");
            seen.push(now);
        };
        changes("contexts/site/logo.bin", &[0xff, 0x00, 0xfe]);
        changes(
            "tests/web-cst.yaml",
            b"schemaVersion: 2.0.0\ncommandTests: []\n",
        );
        changes(".kiln-ignore.yaml", b"findings: []\n");
        changes("components/extra/c.yaml", b"d\n");
    }
}
