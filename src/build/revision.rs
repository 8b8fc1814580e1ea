//! The commit a project folder is at, for the
//! `org.opencontainers.image.revision` label: read from `.git` (a folder, or
//! a `gitdir:` file in a worktree) without running git.

use std::path::Path;

/// The commit `HEAD` names in the checkout at `root`; `None` when there is
/// no readable checkout or `HEAD` names a ref that does not exist yet.
pub fn git_revision(root: &Path) -> Option<String> {
    let dot_git = root.join(".git");
    let git_dir = if dot_git.is_file() {
        let text = std::fs::read_to_string(&dot_git).ok()?;
        root.join(text.trim().strip_prefix("gitdir:")?.trim())
    } else {
        dot_git
    };
    // A linked worktree keeps its HEAD and the shared refs apart.
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|_| git_dir.clone());
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let Some(r) = head.trim().strip_prefix("ref:") else {
        return Some(head.trim().to_string());
    };
    let r = r.trim();
    if let Ok(id) = std::fs::read_to_string(common.join(r)) {
        return Some(id.trim().to_string());
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed
        .lines()
        .find_map(|l| l.strip_suffix(r).map(|id| id.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef01234567";
    const B: &str = "89abcdef0123456789abcdef0123456789abcdef";

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn a_branch_head_reads_its_loose_ref_then_packed_refs() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".git/HEAD", "ref: refs/heads/main\n");
        assert_eq!(git_revision(dir.path()), None, "unborn branch");
        write(
            dir.path(),
            ".git/packed-refs",
            &format!("# pack-refs with: peeled\n{A} refs/heads/main\n"),
        );
        assert_eq!(git_revision(dir.path()).as_deref(), Some(A));
        write(dir.path(), ".git/refs/heads/main", &format!("{B}\n"));
        assert_eq!(git_revision(dir.path()).as_deref(), Some(B), "loose wins");
    }

    #[test]
    fn a_detached_head_is_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".git/HEAD", &format!("{A}\n"));
        assert_eq!(git_revision(dir.path()).as_deref(), Some(A));
    }

    #[test]
    fn a_linked_worktree_reads_the_shared_refs() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main");
        write(&main, ".git/refs/heads/topic", &format!("{B}\n"));
        write(&main, ".git/worktrees/wt/HEAD", "ref: refs/heads/topic\n");
        write(&main, ".git/worktrees/wt/commondir", "../..\n");
        let wt = dir.path().join("wt");
        write(&wt, ".git", "gitdir: ../main/.git/worktrees/wt\n");
        assert_eq!(git_revision(&wt).as_deref(), Some(B));
    }

    #[test]
    fn no_checkout_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(git_revision(dir.path()), None);
    }
}
