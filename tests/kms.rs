//! Signing with an AWS KMS key (issue 14), against moto's KMS: a run whose
//! operator config names `awskms:///alias/NAME` signs and attests with the
//! KMS key (`kiln verify` accepts it with the key's public half from
//! `GetPublicKey`), the key-id and ARN forms connect too, and a key of the
//! wrong spec or usage or an unknown alias fails before anything is pushed,
//! naming the key.

mod support;

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use p256::pkcs8::{DecodePublicKey as _, EncodePublicKey as _, LineEnding};
use support::example::{example_project, registry_tags};
use support::keys::{run_with, signed_run};
use support::{kiln_on, nonce, services};

/// moto's KMS endpoint, from the environment or `target/services.env`
/// (written by `scripts/services up`), set for this process and the `kiln`
/// processes it starts; fails, never skips, without it.
fn kms_endpoint() {
    services();
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let url = support::services_env("AWS_ENDPOINT_URL_KMS").expect(
            "AWS_ENDPOINT_URL_KMS is not in target/services.env: run `scripts/services up`",
        );
        // SAFETY: set once, under the OnceLock, before any KMS client or
        // child process of this test binary reads the environment.
        unsafe { std::env::set_var("AWS_ENDPOINT_URL_KMS", url) };
    });
}

async fn kms() -> aws_sdk_kms::Client {
    kms_endpoint();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    aws_sdk_kms::Client::new(&config)
}

/// Creates a key of `spec`/`usage` in moto with alias `alias/NAME`: (key id,
/// ARN, alias).
async fn key(spec: KeySpec, usage: KeyUsageType) -> (String, String, String) {
    let c = kms().await;
    let made = c
        .create_key()
        .key_spec(spec)
        .key_usage(usage)
        .send()
        .await
        .unwrap();
    let meta = made.key_metadata().unwrap();
    let alias = format!("alias/kiln-it-{}", nonce());
    c.create_alias()
        .alias_name(&alias)
        .target_key_id(meta.key_id())
        .send()
        .await
        .unwrap();
    (
        meta.key_id().to_string(),
        meta.arn().unwrap().to_string(),
        alias,
    )
}

/// An operator config `signing: {key: URI}` in a fresh folder.
fn config(uri: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let ops = tempfile::tempdir().unwrap();
    let path = ops.path().join("kiln.yaml");
    std::fs::write(&path, format!("signing:\n  key: {uri}\n")).unwrap();
    (ops, path)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kms_key_signs_and_attests_and_kiln_verify_accepts_its_public_key() {
    let s = services();
    let (id, arn, alias) = key(KeySpec::EccNistP256, KeyUsageType::SignVerify).await;
    let (_ops, cfg) = config(&format!("awskms:///{alias}"));
    let (dir, repo) = example_project(|t| t);
    let signed = signed_run(dir.path(), &cfg);
    let tags = registry_tags(&repo).await;
    assert!(tags.iter().any(|t| t.ends_with(".sig")) && tags.iter().any(|t| t.ends_with(".att")));

    // The public key as KMS gives it, as a PEM file: kiln verify accepts.
    let der = kms()
        .await
        .get_public_key()
        .key_id(&id)
        .send()
        .await
        .unwrap();
    let public =
        p256::ecdsa::VerifyingKey::from_public_key_der(der.public_key().unwrap().as_ref()).unwrap();
    let pem = public.to_public_key_pem(LineEnding::LF).unwrap();
    let pub_file = _ops.path().join("kms.pub");
    std::fs::write(&pub_file, pem).unwrap();
    let (code, out, err) = kiln_on(
        dir.path(),
        &["verify", &signed, "--key", pub_file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok   attestation sbom"), "{out}");
    // …and so does the operator config's KMS key itself (its public half).
    let (code, out, err) = kiln_on(
        dir.path(),
        &["--config", cfg.to_str().unwrap(), "verify", &signed],
    );
    assert_eq!(code, 0, "{out}{err}");
    let _ = s;

    // The key-id and ARN forms name the same key.
    for uri in [format!("awskms:///{id}"), format!("awskms:///{arn}")] {
        let k = kiln::sign::SigningKey::kms(&uri).await.unwrap();
        assert_eq!(
            k.public_pem(),
            std::fs::read_to_string(&pub_file).unwrap(),
            "{uri}"
        );
        let sig = k.sign(b"message").await.unwrap();
        assert!(k.verifies(b"message", &sig));
        let long = vec![b'x'; 10_000];
        let sig = k.sign(&long).await.unwrap();
        assert!(k.verifies(&long, &sig), "a message over 4096 bytes");
    }
}

/// `kiln --config CFG run` fails (exit 1) with `expect` in the message and
/// pushes nothing.
async fn refused(uri: &str, expect: &[&str]) {
    let (_ops, cfg) = config(uri);
    let (dir, repo) = example_project(|t| t);
    let (code, out, err) = run_with(dir.path(), &cfg, &[]);
    assert_eq!(code, 1, "{out}{err}");
    for e in expect {
        assert!(err.contains(e), "expected `{e}` in: {err}");
    }
    assert!(err.contains("kiln.yaml` line 2"), "{err}");
    assert!(registry_tags(&repo).await.is_empty(), "nothing pushed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kms_key_of_the_wrong_type_or_usage_or_an_unknown_alias_pushes_nothing() {
    services();
    let (_, _, p384) = key(KeySpec::EccNistP384, KeyUsageType::SignVerify).await;
    refused(
        &format!("awskms:///{p384}"),
        &[&p384, "ECC_NIST_P384", "ECC_NIST_P256"],
    )
    .await;
    let (_, _, rsa) = key(KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await;
    refused(
        &format!("awskms:///{rsa}"),
        &[&rsa, "RSA_2048", "ENCRYPT_DECRYPT"],
    )
    .await;
    let unknown = format!("alias/kiln-it-missing-{}", nonce());
    refused(
        &format!("awskms:///{unknown}"),
        &[&unknown, "does not exist"],
    )
    .await;
    refused(
        "awskms://kms.example/alias/x",
        &["not a KMS key URI", "AWS_ENDPOINT_URL_KMS"],
    )
    .await;
}
