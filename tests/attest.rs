//! SBOMs, attestations and `kiln verify` (issue 14): the SBOM of a real
//! image built on the test Docker engine, checked against dpkg-query and
//! CycloneDX's schema (cyclonedx-python-lib, installed by `scripts/services
//! up`); the provenance and SBOM attestations `kiln run` attaches, found by
//! skopeo and verified by openssl (DSSE PAE) with `kiln.pub`; `kiln verify`
//! on a signed, a tampered and an unsigned image.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use kiln::digest::Digest;
use kiln::reference::ImageReference;
use kiln::registry::RegistryClient;
use support::example::{example_project, registry_tags};
use support::keys::{openssl_verifies, operator_key, signed_run};
use support::{kiln_on, nonce, services};

/// The venv python of `scripts/services up` (fails, never skips, without it
/// or without cyclonedx-python-lib in it).
fn services_python() -> PathBuf {
    let path = PathBuf::from(support::services_env("KILN_TEST_PYTHON").unwrap_or_else(|| {
        panic!("KILN_TEST_PYTHON is not set: run `scripts/services up` (it installs cyclonedx-python-lib)")
    }));
    assert!(
        path.is_file(),
        "{} is missing: run `scripts/services up`",
        path.display()
    );
    path
}

/// Schema errors of a CycloneDX 1.5 JSON document, by cyclonedx-python-lib's
/// strict JSON validator (empty: valid).
fn cyclonedx_schema_errors(doc: &serde_json::Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bom.json");
    std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
    let script = "import sys\n\
        from cyclonedx.validation.json import JsonStrictValidator\n\
        from cyclonedx.schema import SchemaVersion\n\
        e = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
        print(e if e else '', end='')\n";
    let out = Command::new(services_python())
        .args(["-c", script])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "validator did not run: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds `dockerfile` with `files` in its context as `kiln-it/NAME:1` on the
/// test engine; returns the tag.
fn docker_build(name: &str, dockerfile: &str, files: &[(&str, &[u8])]) -> String {
    services();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    for (f, bytes) in files {
        std::fs::write(dir.path().join(f), bytes).unwrap();
    }
    let tag = format!("kiln-it/{name}-{}:1", nonce());
    let out = Command::new("docker")
        .args(["build", "-q", "-t", &tag])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "docker build: {out:?}");
    tag
}

/// Removes the test image when dropped.
struct ImageGuard(String);
impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

/// `(name, version)` of the packages dpkg-query lists for a status file,
/// without those whose files are gone (`config-files`, `not-installed`).
fn dpkg_query(status: &[u8]) -> Vec<(String, String)> {
    let admin = tempfile::tempdir().unwrap();
    std::fs::write(admin.path().join("status"), status).unwrap();
    let out = Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.path().display()))
        .args([
            "-W",
            "-f",
            "${db:Status-Status}\\t${Package}\\t${Version}\\n",
        ])
        .output()
        .expect("dpkg-query is on the host");
    assert!(out.status.success(), "{out:?}");
    let mut got: Vec<(String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (status, name, version) = (f.next()?, f.next()?, f.next()?);
            (!matches!(status, "config-files" | "not-installed"))
                .then(|| (name.to_string(), version.to_string()))
        })
        .collect();
    got.sort();
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn sbom_lists_what_dpkg_query_lists_hashes_every_file_and_validates() {
    let s = services();
    let status = std::fs::read("tests/fixtures/sbom/status").unwrap();
    let dockerfile = format!(
        "FROM {}\nCOPY status /var/lib/dpkg/status\nCOPY app.txt /opt/app.txt\n\
         RUN rm /etc/group && ln /opt/app.txt /opt/app-link && mkdir -p /var/lib/rpm && echo x > /var/lib/rpm/Packages\n",
        s.base_image
    );
    let tag = docker_build(
        "sbom",
        &dockerfile,
        &[("status", &status), ("app.txt", b"kiln sbom fixture\n")],
    );
    let _guard = ImageGuard(tag.clone());
    let docker = kiln::docker::connect().await.unwrap();
    let sbom = kiln::sbom::generate(&docker, &tag).await.unwrap();

    // Packages: exactly dpkg-query's, name and version.
    let mut ours: Vec<(String, String)> = sbom
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    ours.sort();
    let theirs = dpkg_query(&status);
    assert_eq!(ours.len(), 6, "{ours:?}");
    assert_eq!(ours, theirs);

    // Files: every regular file with its sha256, deletions applied, the
    // base layer's busybox hashing like the host's file it was copied from.
    let file = |p: &str| {
        sbom.files
            .iter()
            .find(|f| f.path == p)
            .map(|f| f.sha256.clone())
    };
    assert_eq!(file("/var/lib/dpkg/status"), Some(Digest::of(&status)));
    let app = Digest::of(b"kiln sbom fixture\n");
    assert_eq!(file("/opt/app.txt"), Some(app.clone()));
    assert_eq!(file("/opt/app-link"), Some(app), "hard link");
    assert_eq!(file("/etc/group"), None, "removed in a later layer");
    assert!(file("/etc/passwd").is_some());
    let busybox = Digest::of(&std::fs::read("/usr/bin/busybox").unwrap());
    assert_eq!(file("/bin/busybox"), Some(busybox));
    assert!(
        sbom.unsupported
            .iter()
            .any(|u| u.contains("/var/lib/rpm/Packages") && u.contains("BerkeleyDB")),
        "{:?}",
        sbom.unsupported
    );

    // CycloneDX 1.5, valid by the schema.
    let doc = sbom.cyclonedx(&tag);
    let errors = cyclonedx_schema_errors(&doc);
    assert!(errors.is_empty(), "schema errors: {errors}");
    let comps = doc["components"].as_array().unwrap();
    assert!(
        comps
            .iter()
            .any(|c| c["purl"] == "pkg:deb/debian/perl-base@1%3A5.36.0-7%2Bdeb12u1?arch=amd64")
    );
    assert_eq!(
        comps.iter().filter(|c| c["type"] == "file").count(),
        sbom.files.len()
    );

    // The validator is not a yes-man: a broken document fails.
    let mut broken = doc.clone();
    broken["components"][0]["hashes"] = serde_json::json!([{ "alg": "SHA-256", "content": "zz" }]);
    assert!(!cyclonedx_schema_errors(&broken).is_empty());
}

/// The attestation layers skopeo copies from `tag_ref` (a `.att` tag) into a
/// `dir:` — (predicateType annotation, envelope bytes) per layer.
fn skopeo_attestations(tag_ref: &str) -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("skopeo")
        .args(["copy", "--insecure-policy", "--src-tls-verify=false"])
        .arg(format!("docker://{tag_ref}"))
        .arg(format!("dir:{}", dir.path().display()))
        .output()
        .expect("skopeo is installed by scripts/services");
    assert!(out.status.success(), "skopeo copy {tag_ref}: {out:?}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["mediaType"], "application/vnd.dsse.envelope.v1+json");
            let hex = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
            let bytes = std::fs::read(dir.path().join(hex)).unwrap();
            (
                l["annotations"]["predicateType"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                bytes,
            )
        })
        .collect()
}

/// The statement of a DSSE envelope when openssl verifies its signature over
/// `DSSEv1 LEN(type) type LEN(body) body` with `public`.
fn dsse_verified_statement(public: &Path, envelope: &[u8]) -> Option<serde_json::Value> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let e: serde_json::Value = serde_json::from_slice(envelope).unwrap();
    let kind = e["payloadType"].as_str().unwrap();
    let body = b64.decode(e["payload"].as_str().unwrap()).unwrap();
    let mut pae = format!("DSSEv1 {} {kind} {} ", kind.len(), body.len()).into_bytes();
    pae.extend_from_slice(&body);
    let sig = b64
        .decode(e["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    openssl_verifies(public, &pae, &sig).then(|| serde_json::from_slice(&body).unwrap())
}

/// `kiln verify REF [EXTRA…]` from `dir`: exit code and stdout.
fn kiln_verify(dir: &Path, reference: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["verify", reference];
    args.extend_from_slice(extra);
    let (code, out, err) = kiln_on(dir, &args);
    (code, format!("{out}{err}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn kiln_run_attests_provenance_and_sbom_and_kiln_verify_catches_tampering() {
    let s = services();
    let (_ops, config, public) = operator_key();
    let (dir, repo) = example_project(|t| t);
    let signed = signed_run(dir.path(), &config);
    let digest: Digest = signed.rsplit_once('@').unwrap().1.parse().unwrap();
    let att_tag = format!("sha256-{}.att", digest.hex());
    assert!(registry_tags(&repo).await.contains(&att_tag));
    let (_, records, _) = kiln_on(dir.path(), &["records", "hello-web", "--json"]);
    assert!(
        records.contains(&format!("{}/{repo}:{att_tag}@sha256:", s.registry)),
        "{records}"
    );

    // Found by skopeo, verified by openssl: both statements are about the
    // pushed digest; the SBOM passes the CycloneDX schema.
    let atts = skopeo_attestations(&format!("{}/{repo}:{att_tag}", s.registry));
    let kinds: Vec<&str> = atts.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "https://slsa.dev/provenance/v1",
            "https://cyclonedx.org/bom"
        ]
    );
    for (kind, envelope) in &atts {
        let st = dsse_verified_statement(&public, envelope)
            .unwrap_or_else(|| panic!("{kind}: the DSSE signature does not verify"));
        assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
        assert_eq!(st["predicateType"], kind.as_str());
        assert_eq!(st["subject"][0]["digest"]["sha256"], digest.hex());
        assert_eq!(st["subject"][0]["name"], format!("{}/{repo}", s.registry));
        if kind.contains("cyclonedx") {
            let errors = cyclonedx_schema_errors(&st["predicate"]);
            assert!(errors.is_empty(), "{errors}");
            let files = st["predicate"]["components"].as_array().unwrap();
            assert!(files.iter().any(|c| c["name"] == "/bin/busybox"));
        }
    }

    // kiln verify: every check holds.
    let key = public.to_str().unwrap();
    let (code, text) = kiln_verify(dir.path(), &signed, &["--key", key]);
    assert_eq!(code, 0, "{text}");
    for check in [
        "ok   image",
        "ok   signature",
        "ok   attestation provenance",
        "ok   attestation sbom",
    ] {
        assert!(text.contains(check), "{check} in {text}");
    }
    // The ECR target (moto) is signed and attested too: kiln verify reads
    // the manifests through ECR's API and the blobs from their descriptors.
    let ecr = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{repo}@{digest}");
    let (code, text) = kiln_verify(dir.path(), &ecr, &["--key", key]);
    assert_eq!(code, 0, "{text}");
    for check in [
        "ok   signature",
        "ok   attestation provenance",
        "ok   attestation sbom",
    ] {
        assert!(text.contains(check), "{check} in {text}");
    }
    let (code, json) = kiln_verify(dir.path(), &signed, &["--key", key, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["checks"].as_array().unwrap().len(), 4);

    // Another key: the signature and both attestations fail, by name.
    let (_o, _c, other_pub) = operator_key();
    let (code, text) = kiln_verify(dir.path(), &signed, &["--key", other_pub.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    for check in [
        "FAIL signature",
        "FAIL attestation provenance",
        "FAIL attestation sbom",
    ] {
        assert!(text.contains(check), "{check} in {text}");
    }

    let (code, text) = kiln_verify(dir.path(), &ecr, &["--key", other_pub.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("FAIL signature"), "{text}");

    // A tag is not a digest: refused.
    let (code, text) = kiln_verify(
        dir.path(),
        &format!("{}/{repo}:1.0.0-1", s.registry),
        &["--key", key],
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("names no digest"), "{text}");

    // One flipped byte in the signature, re-pushed under the same tag: fails.
    let client = RegistryClient::with_defaults().unwrap();
    let sig_ref = ImageReference::parse(&format!(
        "{}/{repo}:sha256-{}.sig",
        s.registry,
        digest.hex()
    ))
    .unwrap();
    let manifest = client.get_manifest(&sig_ref).await.unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let annotation = &mut doc["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"];
    let mut sig = b64.decode(annotation.as_str().unwrap()).unwrap();
    let mid = sig.len() / 2;
    sig[mid] ^= 0x01;
    *annotation = serde_json::Value::String(b64.encode(&sig));
    client
        .put_manifest(
            &sig_ref,
            "application/vnd.oci.image.manifest.v1+json",
            bytes::Bytes::from(serde_json::to_vec(&doc).unwrap()),
        )
        .await
        .unwrap();
    let (code, text) = kiln_verify(dir.path(), &signed, &["--key", key]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("FAIL signature") && text.contains("does not verify"),
        "{text}"
    );
    assert!(text.contains("ok   attestation sbom"), "{text}");

    // An unsigned image: every trust check fails.
    let other_repo = format!("kiln-it/unsigned-{}", nonce());
    support::skopeo_copy(
        &s.base_image,
        &format!("{}/{other_repo}:1", s.registry),
        None,
    );
    let base_ref = ImageReference::parse(&format!("{}/{other_repo}:1", s.registry)).unwrap();
    let base_digest = client.get_manifest(&base_ref).await.unwrap().digest;
    let unsigned = format!("{}/{other_repo}@{base_digest}", s.registry);
    let (code, text) = kiln_verify(dir.path(), &unsigned, &["--key", key]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("ok   image"), "{text}");
    assert!(text.contains("FAIL signature: no signature"), "{text}");
    assert!(
        text.contains("FAIL attestation sbom: no attestations"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kiln_verify_with_a_server_checks_that_the_daemon_approves_the_digest() {
    let s = services();
    let (ops, config, public) = operator_key();
    let (dir, repo) = example_project(|t| t[..t.find("schedule:").unwrap()].to_string());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::copy(
        root.join("deploy/kiln.yaml"),
        dir.path().join("config/kiln.yaml"),
    )
    .unwrap();
    let signed = signed_run(dir.path(), &config);
    let (_daemon, url) = support::serve_process::serve_project(dir.path());
    let key = public.to_str().unwrap();
    let server = ["--key", key, "--server", &url, "--token", "kiln-dev-reader"];
    let (code, text) = kiln_verify(dir.path(), &signed, &server);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("ok   approved: pipeline `hello-web` approves"),
        "{text}"
    );

    // Signed by kiln's key for the same pipeline, but never built by it:
    // the daemon's approved build is another digest.
    let other_repo = format!("kiln-it/unapproved-{}", nonce());
    support::skopeo_copy(
        &s.base_image,
        &format!("{}/{other_repo}:1", s.registry),
        None,
    );
    let client = RegistryClient::with_defaults().unwrap();
    let base_ref = ImageReference::parse(&format!("{}/{other_repo}:1", s.registry)).unwrap();
    let base_digest = client.get_manifest(&base_ref).await.unwrap().digest;
    let kiln_key = kiln::sign::SigningKey::load(&ops.path().join("kiln.key")).unwrap();
    let target = kiln::sign::attach::SignTarget {
        target: kiln::load::Target::Oci {
            registry: s.registry.clone(),
            repository: other_repo.clone(),
        },
        digest: base_digest.clone(),
    };
    let optional = serde_json::json!({ "dev.kiln.pipeline": "hello-web" });
    kiln::sign::attach::sign_target(&client, &kiln_key, &target, optional)
        .await
        .unwrap();
    let unapproved = format!("{}/{other_repo}@{base_digest}", s.registry);
    let (code, text) = kiln_verify(dir.path(), &unapproved, &server);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("ok   signature"), "{text}");
    assert!(
        text.contains("FAIL approved: pipeline `hello-web`'s approved build is")
            && text.contains(&signed),
        "{text}"
    );
    let _ = repo;
}
