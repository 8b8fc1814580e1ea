//! `kiln resolve` as a user runs it: writes kiln.lock, `--check` reports a
//! moved parent with both digests, `--update` moves the pin, and an
//! unpinnable parent fails without touching the lock.

mod support;

use std::path::Path;

use support::push::Pusher;
use support::{services, unique};

fn project(parent: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("recipes")).unwrap();
    std::fs::write(
        dir.path().join("recipes/app.yaml"),
        format!("name: app\nversion: 1.0.0\nparentImage: {parent}\n"),
    )
    .unwrap();
    dir
}

fn kiln(dir: &Path, args: &[&str]) -> (i32, String, String) {
    support::kiln_on(dir, args)
}

/// `kiln.lock` is meant to be committed: mode 0644 (not a temp file's 0600),
/// and no temp file is left beside it.
fn assert_lock_is_shareable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("kiln.lock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "kiln.lock mode {:o}", mode & 0o777);
    let stray: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".kiln.lock"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn resolve_check_and_update() {
    let s = services();
    let repo = unique("kiln-it/parent");
    let pusher = Pusher::new(&s.registry);
    let first = pusher.image(&repo, "1", "amd64", b"first parent").await;
    let dir = project(&format!("{}/{repo}:1", s.registry));

    let (code, out, err) = kiln(dir.path(), &["resolve"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("@{}", first.digest)), "{out}");
    let lock = std::fs::read_to_string(dir.path().join("kiln.lock")).unwrap();
    assert!(lock.contains(&first.digest.to_string()), "{lock}");
    assert_lock_is_shareable(dir.path());

    let (code, out, err) = kiln(dir.path(), &["resolve", "--check"]);
    assert_eq!(code, 0, "nothing moved: {out}{err}");

    // The tag moves: --check names both digests and exits 4 (drift); the lock stays.
    let second = pusher.image(&repo, "1", "amd64", b"second parent").await;
    let (code, out, err) = kiln(dir.path(), &["resolve", "--check"]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(
        out.contains(&format!("{} -> {}", first.digest, second.digest)),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kiln.lock")).unwrap(),
        lock
    );

    // Plain resolve keeps the lock; --update moves the pin.
    let (code, out, _) = kiln(dir.path(), &["resolve"]);
    assert_eq!(code, 0);
    assert!(out.contains(&first.digest.to_string()), "{out}");
    let (code, out, err) = kiln(dir.path(), &["resolve", "--update"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&second.digest.to_string()), "{out}");
    assert_lock_is_shareable(dir.path());
    let (code, _, _) = kiln(dir.path(), &["resolve", "--check"]);
    assert_eq!(code, 0);

    // `kiln render` uses the pin.
    let (code, out, _) = kiln(dir.path(), &["render", "app"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("FROM {}/{repo}@{}", s.registry, second.digest)),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unpinnable_parent_fails_and_leaves_no_lock() {
    let s = services();
    let dir = project(&format!(
        "{}/{}:nope",
        s.registry,
        unique("kiln-it/missing")
    ));
    let (code, out, err) = kiln(dir.path(), &["resolve"]);
    assert_eq!(code, 6, "{out}{err}");
    assert!(err.contains("cannot pin the parents of `app`"), "{err}");
    assert!(
        err.contains("MANIFEST_UNKNOWN") || err.contains("NAME_UNKNOWN") || err.contains("404"),
        "{err}"
    );
    assert!(!dir.path().join("kiln.lock").exists());
    let (code, _, err) = kiln(dir.path(), &["build", "app"]);
    assert_eq!(code, 1, "a build never uses a moving tag: {err}");
    assert!(err.contains("not pinned"), "{err}");
}
