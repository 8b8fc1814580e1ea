//! Signing keys for tests: a key pair outside any project and an operator
//! config naming it.

use std::path::PathBuf;

/// A key pair in a fresh folder outside any project, and an operator config
/// naming it: (folder, config, public key).
pub fn operator_key() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let ops = tempfile::tempdir().unwrap();
    let (key, public) = kiln::sign::SigningKey::generate(ops.path()).unwrap();
    let config = ops.path().join("kiln.yaml");
    std::fs::write(&config, format!("signing:\n  key: {}\n", key.display())).unwrap();
    (ops, config, public)
}

/// Whether openssl verifies `signature` (DER) of `message` with `public`.
pub fn openssl_verifies(public: &std::path::Path, message: &[u8], signature: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("payload"), message).unwrap();
    std::fs::write(dir.path().join("sig"), signature).unwrap();
    std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(public)
        .arg("-signature")
        .arg(dir.path().join("sig"))
        .arg(dir.path().join("payload"))
        .output()
        .unwrap()
        .status
        .success()
}

/// `kiln --config CONFIG run hello-web --quiet EXTRA…` in project `dir`.
pub fn run_with(
    dir: &std::path::Path,
    config: &std::path::Path,
    extra: &[&str],
) -> (i32, String, String) {
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "run",
        "hello-web",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    super::kiln_on(dir, &args)
}

/// A passing run with `config`: the approved `REGISTRY/REPOSITORY@sha256:…`.
pub fn signed_run(dir: &std::path::Path, config: &std::path::Path) -> String {
    let (code, out, err) = run_with(dir, config, &["--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    summary["approved"][0].as_str().unwrap().to_string()
}
