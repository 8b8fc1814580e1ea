//! The git CLI, run in the project folder: which files differ between a
//! revision and the work tree (staged, unstaged and untracked changes
//! count), and a file's text at that revision. The git CLI rather than a
//! git crate: it is on every CI machine, and `gix`/`git2` would add a large
//! dependency tree for three read-only commands.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::AffectedError;

/// Runs `git ARGS` in `dir`; stdout, or the error git printed.
fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, AffectedError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .map_err(|source| AffectedError::Spawn { source })?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(AffectedError::Git {
            command: format!("git {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The commit `reference` names, or a clear error (not a repository,
/// unknown revision, or a reference that looks like an option).
pub fn commit_of(dir: &Path, reference: &str) -> Result<String, AffectedError> {
    if reference.is_empty() || reference.starts_with('-') || reference.contains('\0') {
        return Err(AffectedError::BadRef {
            reference: reference.to_string(),
            why: "not a revision name".into(),
        });
    }
    git(dir, &["rev-parse", "--is-inside-work-tree"]).map_err(|e| match e {
        AffectedError::Git { stderr, .. } => AffectedError::NotARepository {
            dir: dir.to_path_buf(),
            stderr,
        },
        other => other,
    })?;
    let spec = format!("{reference}^{{commit}}");
    let out = git(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ],
    )
    .map_err(|_| AffectedError::BadRef {
        reference: reference.to_string(),
        why: "no such commit in this repository".into(),
    })?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

fn paths(out: &[u8]) -> Vec<PathBuf> {
    out.split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
        .collect()
}

/// Files under `dir` (paths relative to it) that differ between `commit`
/// and the work tree, tracked or untracked (ignored files excluded),
/// renames as a deletion plus an addition.
pub fn changed_files(dir: &Path, commit: &str) -> Result<Vec<PathBuf>, AffectedError> {
    let diff = git(
        dir,
        &[
            "diff",
            "--name-only",
            "--no-renames",
            "-z",
            "--relative",
            commit,
            "--",
        ],
    )?;
    let untracked = git(
        dir,
        &[
            "ls-files",
            "--others",
            "--exclude-standard",
            "-z",
            "--",
            ".",
        ],
    )?;
    let mut all = paths(&diff);
    all.extend(paths(&untracked));
    all.sort();
    all.dedup();
    Ok(all)
}

/// The text of `rel` (relative to `dir`) at `commit`; `None` when it did
/// not exist there.
pub fn show(dir: &Path, commit: &str, rel: &Path) -> Result<Option<String>, AffectedError> {
    let spec = format!("{commit}:./{}", rel.display());
    match git(dir, &["cat-file", "-e", &spec]) {
        Ok(_) => {}
        Err(AffectedError::Git { .. }) => return Ok(None),
        Err(e) => return Err(e),
    }
    let bytes = git(dir, &["cat-file", "blob", &spec])?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}
