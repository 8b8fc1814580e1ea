//! Build script: puts the commit the binary is built from into
//! `KILN_BUILD_REVISION_TEXT` for `kiln --version`. Without git (a source
//! tarball, a crates.io build) it says `revision unknown`;
//! `KILN_BUILD_REVISION` overrides it (packagers). It reruns only when HEAD
//! or the checked-out branch moves, never on an ordinary test run.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KILN_BUILD_REVISION");
    let revision = std::env::var("KILN_BUILD_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(git_revision);
    let text = match revision {
        Some(r) => format!("revision {}", r.trim()),
        None => "revision unknown".to_string(),
    };
    println!("cargo:rustc-env=KILN_BUILD_REVISION_TEXT={text}");
}

/// `git` with `args`, its trimmed stdout when it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// The short commit of HEAD, and a rerun trigger on every file that moves
/// with it (HEAD, the branch's ref, packed-refs) — only files that exist,
/// since cargo reruns a script on every build when a watched file is missing.
fn git_revision() -> Option<String> {
    let revision = git(&["rev-parse", "--short=12", "HEAD"])?;
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten().map(PathBuf::from) {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(revision)
}
