//! Signing (issue 14): `kiln key generate`, the operator config (`--config`)
//! and its bad inputs, and cosign-compatible signatures checked by
//! independent tools against the real registry.
//!
//! Debian 12's skopeo (1.9.3) refuses every `sigstoreSigned` policy ("Debian-
//! local change: sigstore disabled"). Two independent checks therefore run:
//! Debian 13's skopeo 1.18 (unpacked with its own glibc by `scripts/services
//! up`, `KILN_TEST_SKOPEO_SIGSTORE`) enforces a real `sigstoreSigned` policy
//! (`keyPath: kiln.pub`, `matchRepository`, `use-sigstore-attachments`) on
//! copies; and Debian 12's skopeo finds and reads the signatures by the
//! `sha256-<hex>.sig` scheme while openssl verifies each ECDSA signature with
//! `kiln.pub`, the test checking the payload's critical fields as
//! `matchRepoDigestOrExact` does for a digest reference.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use kiln::digest::Digest;
use kiln::registry::RegistryClient;
use kiln::sign::SigningKey;
use kiln::sign::attach::{SignError, SignTarget, sign_target};
use kiln::sign::cosign::SIGNATURE_ANNOTATION;
use support::example::{example_project, registry_tags};
use support::keys::{openssl_verifies, operator_key, run_with, signed_run};
use support::{kiln_on, nonce, services};

#[test]
fn key_generate_writes_a_private_pkcs8_key_and_a_pkix_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let (code, out, err) = kiln_on(dir.path(), &["key", "generate", keys.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let key = std::fs::read_to_string(keys.join("kiln.key")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    let mode = std::fs::metadata(keys.join("kiln.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // openssl reads both as EC P-256 (prime256v1).
    let text = Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-text", "-in"])
        .arg(keys.join("kiln.pub"))
        .output()
        .unwrap();
    assert!(text.status.success(), "{text:?}");
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("prime256v1"),
        "{text:?}"
    );
    let (code, _, err) = kiln_on(dir.path(), &["key", "generate", keys.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("kiln.key") && err.contains("never overwrites"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(keys.join("kiln.key")).unwrap(), key);
}

/// `kiln --config CONFIG run` with a bad operator config: exit 1, `expect` in
/// the message, nothing pushed.
async fn refused(config: &Path, expect: &[&str]) {
    services();
    let (dir, repo) = example_project(|t| t);
    let (code, out, err) = run_with(dir.path(), config, &[]);
    assert_eq!(code, 1, "{out}{err}");
    for e in expect {
        assert!(err.contains(e), "expected `{e}` in: {err}");
    }
    assert!(registry_tags(&repo).await.is_empty(), "nothing pushed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_operator_config_fails_before_anything_is_pushed() {
    let ops = tempfile::tempdir().unwrap();
    let config = ops.path().join("kiln.yaml");

    std::fs::write(&config, "signing:\n  key: missing.key\n").unwrap();
    refused(&config, &["missing.key", "line 2", "cannot read key file"]).await;

    let p384 = ops.path().join("p384.key");
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
        ])
        .arg(&p384)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    std::fs::write(&config, "signing:\n  key: p384.key\n").unwrap();
    refused(&config, &["p384.key", "not an ECDSA P-256 key"]).await;

    let unreadable = ops.path().join("locked.key");
    std::fs::write(&unreadable, "x").unwrap();
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&unreadable).is_err() {
        // (root reads anything; the case is meaningful only for other users)
        std::fs::write(&config, "signing:\n  key: locked.key\n").unwrap();
        refused(&config, &["locked.key", "cannot read key file"]).await;
    }

    std::fs::write(&config, "signing:\n  keyPath: x.key\n").unwrap();
    refused(&config, &["kiln.yaml:2:3", "unknown field `keyPath`"]).await;

    refused(
        &ops.path().join("absent.yaml"),
        &["cannot read operator config", "absent.yaml"],
    )
    .await;
}

#[test]
fn a_signing_key_in_a_project_file_is_refused() {
    let (dir, _) = example_project(|t| format!("{t}signing:\n  key: /tmp/x.key\n"));
    let (code, _, err) = kiln_on(dir.path(), &["validate", "hello-web"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("hello-web.yaml:") && err.contains("operator config"),
        "{err}"
    );

    // The key file may not live in the project either.
    let (dir, _) = example_project(|t| t);
    let (key, _) = SigningKey::generate(&dir.path().join("keys")).unwrap();
    let ops = tempfile::tempdir().unwrap();
    let config = ops.path().join("kiln.yaml");
    std::fs::write(&config, format!("signing:\n  key: {}\n", key.display())).unwrap();
    let (code, _, err) = kiln_on(
        dir.path(),
        &["--config", config.to_str().unwrap(), "run", "hello-web"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("inside the project folder"), "{err}");
}

/// One sigstore signature as skopeo stored it (`dir:` `signature-N`).
struct Stored {
    mime: String,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

/// A temp folder holding `registries.d/` that turns on
/// `use-sigstore-attachments` for the test registry.
fn sigstore_attachments() -> (tempfile::TempDir, PathBuf) {
    let s = services();
    let dir = tempfile::tempdir().unwrap();
    let registries_d = dir.path().join("registries.d");
    std::fs::create_dir(&registries_d).unwrap();
    let text = format!(
        "docker:\n  {}:\n    use-sigstore-attachments: true\n",
        s.registry
    );
    std::fs::write(registries_d.join("kiln-test.yaml"), text).unwrap();
    (dir, registries_d)
}

/// The sigstore signatures skopeo finds for `reference` through
/// `use-sigstore-attachments` (the `sha256-<hex>.sig` scheme), copying the
/// image to a `dir:` with signatures kept.
fn skopeo_signatures(reference: &str) -> Vec<Stored> {
    let (dir, registries_d) = sigstore_attachments();
    let image = dir.path().join("image");
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--insecure-policy",
            "--src-tls-verify=false",
            "--registries.d",
        ])
        .arg(&registries_d)
        .arg(format!("docker://{reference}"))
        .arg(format!("dir:{}", image.display()))
        .output()
        .expect("skopeo is installed by scripts/services");
    assert!(out.status.success(), "skopeo copy {reference}: {out:?}");
    let b64 = base64::engine::general_purpose::STANDARD;
    (1..)
        .map_while(|n| std::fs::read(image.join(format!("signature-{n}"))).ok())
        .map(|bytes| {
            let json = bytes
                .strip_prefix(b"\0sigstore-json\n")
                .expect("a sigstore signature");
            let v: serde_json::Value = serde_json::from_slice(json).unwrap();
            Stored {
                mime: v["mimeType"].as_str().unwrap().to_string(),
                payload: b64.decode(v["payload"].as_str().unwrap()).unwrap(),
                signature: b64
                    .decode(
                        v["annotations"][SIGNATURE_ANNOTATION]
                            .as_str()
                            .unwrap_or(""),
                    )
                    .unwrap(),
            }
        })
        .collect()
}

/// The check `sigstoreSigned` + `matchRepoDigestOrExact` makes, with skopeo
/// finding and reading the signatures and openssl verifying them: some
/// simple-signing signature of `repo@digest` whose identity is `repo`, valid
/// under `public`.
fn independently_verified(public: &Path, repo: &str, digest: &Digest) -> Result<(), String> {
    let sigs = skopeo_signatures(&format!("{repo}@{digest}"));
    if sigs.is_empty() {
        return Err("no signature".into());
    }
    for s in &sigs {
        let p: serde_json::Value = serde_json::from_slice(&s.payload).unwrap();
        let c = &p["critical"];
        if s.mime == "application/vnd.dev.cosign.simplesigning.v1+json"
            && c["type"] == "cosign container image signature"
            && c["image"]["docker-manifest-digest"] == digest.to_string()
            && c["identity"]["docker-reference"] == repo
            && openssl_verifies(public, &s.payload, &s.signature)
        {
            return Ok(());
        }
    }
    Err(format!("{} signatures, none valid for {repo}", sigs.len()))
}

/// Copies `from` to `to` (both in the test registry) without any policy.
fn plain_copy(from: &str, to: &str) {
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--insecure-policy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{from}"))
        .arg(format!("docker://{to}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy {from} {to}: {out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kiln_signatures_verify_independently_and_unsigned_foreign_or_moved_ones_do_not() {
    let s = services();
    let (_ops, config, public) = operator_key();
    let (dir, repo) = example_project(|t| t);
    let signed = signed_run(dir.path(), &config);
    let (code, records, err) = kiln_on(dir.path(), &["records", "hello-web", "--json"]);
    assert_eq!(code, 0, "{err}");
    let digest: Digest = signed.rsplit_once('@').unwrap().1.parse().unwrap();
    let sig_tag = format!("sha256-{}.sig", digest.hex());
    assert!(
        registry_tags(&repo).await.contains(&sig_tag),
        "signature tag pushed"
    );
    assert!(
        records.contains(&format!("{}/{repo}:{sig_tag}@sha256:", s.registry)),
        "the record names the signature: {records}"
    );

    // Signed by kiln's key, pulled by digest: accepted.
    let full = |r: &str| format!("{}/{r}", s.registry);
    let signed = format!("{}@{digest}", full(&repo));
    independently_verified(&public, &full(&repo), &digest)
        .unwrap_or_else(|e| panic!("{signed}: {e}"));

    // The same image and signature moved to another repository: the
    // signature names the original repository, so it is refused.
    let moved_repo = format!("kiln-it/moved-{}", nonce());
    plain_copy(&signed, &format!("{}/{moved_repo}:1", s.registry));
    plain_copy(
        &format!("{}/{repo}:{sig_tag}", s.registry),
        &format!("{}/{moved_repo}:{sig_tag}", s.registry),
    );
    let e = independently_verified(&public, &full(&moved_repo), &digest).unwrap_err();
    assert!(e.contains("none valid"), "{e}");

    // An unsigned image: refused.
    let other_repo = format!("kiln-it/unsigned-{}", nonce());
    plain_copy(&s.base_image, &format!("{}/{other_repo}:1", s.registry));
    let client = RegistryClient::with_defaults().unwrap();
    let base_ref =
        kiln::reference::ImageReference::parse(&format!("{}/{other_repo}:1", s.registry)).unwrap();
    let base_digest = client.get_manifest(&base_ref).await.unwrap().digest;
    let e = independently_verified(&public, &full(&other_repo), &base_digest).unwrap_err();
    assert_eq!(e, "no signature");

    // Signed with another key: refused with kiln's public key, accepted
    // with the other one; and kiln's key never re-signs that tag.
    let other = tempfile::tempdir().unwrap();
    let (other_key, other_pub) = SigningKey::generate(other.path()).unwrap();
    let other_key = SigningKey::load(&other_key).unwrap();
    let target = SignTarget {
        target: kiln::load::Target::Oci {
            registry: s.registry.clone(),
            repository: other_repo.clone(),
        },
        digest: base_digest.clone(),
    };
    let signed_other = sign_target(&client, &other_key, &target, serde_json::Value::Null)
        .await
        .unwrap();
    assert!(signed_other.pushed);
    independently_verified(&other_pub, &full(&other_repo), &base_digest)
        .unwrap_or_else(|e| panic!("other key: {e}"));
    let e = independently_verified(&public, &full(&other_repo), &base_digest).unwrap_err();
    assert!(e.contains("none valid"), "{e}");
    let kiln_key = SigningKey::load(&public.with_file_name("kiln.key")).unwrap();
    let e = sign_target(&client, &kiln_key, &target, serde_json::Value::Null)
        .await
        .unwrap_err();
    assert!(matches!(e, SignError::TagTaken { .. }), "{e}");

    // Once per digest: signing kiln's digest again pushes nothing.
    let again = SignTarget {
        target: kiln::load::Target::Oci {
            registry: s.registry.clone(),
            repository: repo.clone(),
        },
        digest: digest.clone(),
    };
    let before = registry_tags(&repo).await;
    let r = sign_target(&client, &kiln_key, &again, serde_json::Value::Null)
        .await
        .unwrap();
    assert!(!r.pushed, "already signed: nothing pushed");
    assert_eq!(registry_tags(&repo).await, before);
}

/// Debian 13's skopeo, which verifies sigstore signatures (fails, never
/// skips, without it).
fn sigstore_skopeo() -> PathBuf {
    let path = PathBuf::from(support::services_env("KILN_TEST_SKOPEO_SIGSTORE").unwrap_or_else(|| {
        panic!("KILN_TEST_SKOPEO_SIGSTORE is not set: run `scripts/services up` (it unpacks Debian 13's skopeo)")
    }));
    assert!(
        path.is_file(),
        "{} is missing: run `scripts/services up`",
        path.display()
    );
    path
}

/// `skopeo copy` of `reference` to a `dir:` under a containers-policy.json
/// that requires a sigstore signature by `public` for the repository
/// (`sigstoreSigned`, `matchRepository`: cosign-style signatures name the
/// repository only), signatures found through `use-sigstore-attachments`.
/// `Err` holds skopeo's message.
fn policy_copy(public: &Path, reference: &str) -> Result<(), String> {
    let (dir, registries_d) = sigstore_attachments();
    let policy = dir.path().join("policy.json");
    let requirement = serde_json::json!({
        "type": "sigstoreSigned",
        "keyPath": public,
        "signedIdentity": { "type": "matchRepository" },
    });
    std::fs::write(
        &policy,
        serde_json::json!({ "default": [requirement] }).to_string(),
    )
    .unwrap();
    let out = Command::new(sigstore_skopeo())
        .args(["copy", "--src-tls-verify=false", "--policy"])
        .arg(&policy)
        .arg("--registries.d")
        .arg(&registries_d)
        .arg(format!("docker://{reference}"))
        .arg(format!("dir:{}", dir.path().join("image").display()))
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigstore_signed_policy_copies_kiln_signed_images_and_refuses_the_rest() {
    let s = services();
    let (_ops, config, public) = operator_key();
    let (dir, repo) = example_project(|t| t);
    let signed = signed_run(dir.path(), &config);
    let digest = signed.rsplit_once('@').unwrap().1.to_string();
    let sig_tag = format!("{}.sig", digest.replace(':', "-"));

    // Signed by kiln's key: copied, by digest and by tag.
    policy_copy(&public, &signed).unwrap_or_else(|e| panic!("{signed}: {e}"));
    policy_copy(&public, &format!("{}/{repo}:1.0.0-1", s.registry)).unwrap();

    // Re-tagged into another repository with its signature: refused.
    let moved = format!("{}/kiln-it/moved-{}", s.registry, nonce());
    plain_copy(&signed, &format!("{moved}:1"));
    plain_copy(
        &format!("{}/{repo}:{sig_tag}", s.registry),
        &format!("{moved}:{sig_tag}"),
    );
    let e = policy_copy(&public, &format!("{moved}@{digest}")).unwrap_err();
    assert!(e.contains("is not accepted"), "{e}");

    // Unsigned: refused.
    let unsigned = format!("{}/kiln-it/unsigned-{}", s.registry, nonce());
    plain_copy(&s.base_image, &format!("{unsigned}:1"));
    let e = policy_copy(&public, &format!("{unsigned}:1")).unwrap_err();
    assert!(
        e.contains("A signature was required, but no signature exists"),
        "{e}"
    );

    // Another key's policy: refused.
    let (_o, _c, other_pub) = operator_key();
    let e = policy_copy(&other_pub, &signed).unwrap_err();
    assert!(e.contains("signature verification failed"), "{e}");
}

/// `kiln push` with the operator's signing key signs what it pushed, once:
/// the signature verifies independently, and a repeat push keeps it.
#[tokio::test(flavor = "multi_thread")]
async fn kiln_push_signs_each_verified_target_once() {
    let s = services();
    let (_ops, config, public) = operator_key();
    let (dir, _) = example_project(|t| t);
    let repo = format!("kiln-it/pushed-{}", nonce());
    let to = format!("{}/{repo}", s.registry);
    let args = [
        "--config",
        config.to_str().unwrap(),
        "push",
        "--image",
        &s.base_image,
        "--build",
        "1",
        "--to",
        &to,
        "--json",
    ];
    let (code, out, err) = kiln_on(dir.path(), &args);
    assert_eq!(code, 0, "{out}{err}");
    let pushed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let digest: Digest = pushed["manifestDigest"].as_str().unwrap().parse().unwrap();
    assert!(err.contains(&format!("signed {to}:sha256-")), "{err}");
    independently_verified(&public, &to, &digest).unwrap_or_else(|e| panic!("{e}"));
    let (code, _, err) = kiln_on(dir.path(), &args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("already signed"), "{err}");
}
