//! Resolution against the real local registry (`scripts/services up`).

mod support;

use futures_util::StreamExt;
use kiln::digest::Digest;
use kiln::reference::ImageReference;
use kiln::registry::{Platform, RegistryClient, RegistryError};
use kiln::resolve::{self, LockFile, ResolveError, ResolveOptions};
use support::push::Pusher;
use support::{services, unique};

fn client() -> RegistryClient {
    RegistryClient::with_defaults().unwrap()
}

fn parse(s: &str) -> ImageReference {
    ImageReference::parse(s).unwrap()
}

/// The registry's own digest claim, fetched with a plain HTTP client.
async fn registry_digest(r: &ImageReference) -> Digest {
    let resp = reqwest::Client::new()
        .head(format!(
            "http://{}/v2/{}/manifests/{}",
            r.registry,
            r.repository,
            r.manifest_reference()
        ))
        .header("accept", kiln::registry::ACCEPTED_MANIFEST_TYPES.join(", "))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn base_image_tag_resolves_to_the_registrys_digest() {
    let s = services();
    let base = parse(&s.base_image);
    let c = client();
    let pinned = resolve::pin(&c, &base, &Platform::default()).await.unwrap();
    assert_eq!(pinned.manifest_digest, registry_digest(&base).await);
    assert_eq!(pinned.index_digest, None);
    assert_eq!(
        pinned.pinned.to_string(),
        format!("{}@{}", base.name(), pinned.manifest_digest)
    );
    let head = c.head_manifest(&base).await.unwrap();
    assert_eq!(head.digest, pinned.manifest_digest);
}

#[tokio::test]
async fn pinned_reference_is_verified_by_head_not_reresolved() {
    let s = services();
    let base = parse(&s.base_image);
    let digest = registry_digest(&base).await;
    let by_digest = base.pinned(digest.clone());
    let c = client();
    let pinned = resolve::pin(&c, &by_digest, &Platform::default())
        .await
        .unwrap();
    assert_eq!(pinned.manifest_digest, digest);
    assert_eq!(c.requests_made(), 1, "one HEAD by digest");
}

#[tokio::test]
async fn missing_digest_fails_clearly_and_writes_no_lock() {
    let s = services();
    let missing = parse(&s.base_image).pinned(Digest::of(b"no such manifest"));
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("kiln.lock");
    let err = resolve::update(
        &client(),
        &lock,
        &[("web".into(), vec![missing.clone()])],
        &ResolveOptions::default(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&missing.to_string()) && msg.contains("404"),
        "{msg}"
    );
    let f = &err.failures()[0];
    assert!(f.source.is_not_found(), "{:?}", f.source);
    assert!(!lock.exists());
}

#[tokio::test]
async fn unknown_tag_carries_the_typed_error_code() {
    let s = services();
    let r = parse(&format!("{}/kiln/base:{}", s.registry, unique("nope")));
    let err = client().get_manifest(&r).await.unwrap_err();
    assert!(
        matches!(
            &err,
            RegistryError::Status {
                status: 404,
                code: Some(kiln::registry::ErrorCode::ManifestUnknown),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("(MANIFEST_UNKNOWN: manifest unknown)"),
        "{err}"
    );
}

#[tokio::test]
async fn repushed_tag_is_reported_as_drift_with_both_digests() {
    let s = services();
    let p = Pusher::new(&s.registry);
    let repo = unique("kiln/drift");
    let first = p.image(&repo, "1", "amd64", b"first").await;
    let r = parse(&format!("{}/{repo}:1", s.registry));
    let recipes = vec![("app".to_string(), vec![r.clone(), parse(&s.base_image)])];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kiln.lock");
    let c = client();
    let opts = ResolveOptions::default();
    let lock = resolve::update(&c, &path, &recipes, &opts).await.unwrap();
    assert_eq!(lock.get("app", &r).unwrap().digest, first.digest);
    assert_eq!(LockFile::load(&path).unwrap(), lock);

    let before = c.requests_made();
    let report = resolve::check(&c, &lock, &recipes, &opts).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(c.requests_made() - before, 2, "one HEAD per reference");

    let second = p.image(&repo, "1", "amd64", b"second").await;
    assert_ne!(first.digest, second.digest);
    let report = resolve::check(&c, &lock, &recipes, &opts).await.unwrap();
    assert_eq!(report.moved.len(), 1, "{report:?}");
    let m = &report.moved[0];
    assert_eq!(
        (m.reference.as_str(), &m.old, &m.new),
        (r.to_string().as_str(), &first.digest, &second.digest)
    );

    let updated = resolve::update(&c, &path, &recipes, &opts).await.unwrap();
    assert_eq!(
        updated.get("app", &r).unwrap().manifest_digest,
        second.digest
    );
    assert!(
        resolve::check(&c, &updated, &recipes, &opts)
            .await
            .unwrap()
            .is_clean()
    );
}

#[tokio::test]
async fn multi_arch_index_resolves_to_the_platform_manifest() {
    let s = services();
    let p = Pusher::new(&s.registry);
    let repo = unique("kiln/multi");
    let amd = p.image(&repo, "amd64", "amd64", b"amd64 layer").await;
    let arm = p.image(&repo, "arm64", "arm64", b"arm64 layer").await;
    let index = p
        .index(&repo, "1", &[(&amd, "amd64"), (&arm, "arm64")])
        .await;
    let r = parse(&format!("{}/{repo}:1", s.registry));
    let c = client();
    for (platform, want) in [
        ("linux/amd64", &amd),
        ("linux/arm64", &arm),
        ("linux/arm64/v8", &arm),
    ] {
        let pinned = resolve::pin(&c, &r, &platform.parse().unwrap())
            .await
            .unwrap();
        assert_eq!(
            pinned.index_digest.as_ref(),
            Some(&index.digest),
            "{platform}"
        );
        assert_eq!(&pinned.manifest_digest, &want.digest, "{platform}");
        assert_eq!(pinned.pinned.digest.as_ref(), Some(&want.digest));
    }
    let err = resolve::pin(&c, &r, &"linux/s390x".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::NoMatchingPlatform { ref available, .. } if available.len() == 2),
        "{err}"
    );
    // A reference pinned to the index is resolved through it.
    let pinned = resolve::pin(
        &c,
        &r.pinned(index.digest.clone()),
        &"linux/arm64".parse().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(pinned.manifest_digest, arm.digest);
}

#[tokio::test]
async fn unpinnable_parent_leaves_the_lock_untouched() {
    let s = services();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kiln.lock");
    let c = client();
    let opts = ResolveOptions::default();
    let good = vec![("app".to_string(), vec![parse(&s.base_image)])];
    resolve::update(&c, &path, &good, &opts).await.unwrap();
    let before = std::fs::read(&path).unwrap();
    let bad_ref = parse(&format!("{}/kiln/base:{}", s.registry, unique("gone")));
    let bad = vec![("app".to_string(), vec![parse(&s.base_image), bad_ref])];
    let err = resolve::update(&c, &path, &bad, &opts).await.unwrap_err();
    assert!(matches!(err, ResolveError::Unresolved { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn blobs_exist_and_stream_verified() {
    let s = services();
    let p = Pusher::new(&s.registry);
    let repo = unique("kiln/blobs");
    let payload = vec![7u8; 300_000];
    let digest = p.blob(&repo, &payload).await;
    let r = parse(&format!("{}/{repo}", s.registry));
    let c = client();
    assert!(c.blob_exists(&r, &digest).await.unwrap());
    assert!(!c.blob_exists(&r, &Digest::of(b"absent")).await.unwrap());
    let mut stream = c.get_blob(&r, &digest).await.unwrap();
    assert_eq!(stream.size, Some(payload.len() as u64));
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got, payload);
}

/// A single-platform parent whose config says amd64 is refused for an
/// arm64 recipe instead of being pinned (and built on) silently.
#[tokio::test]
async fn a_single_platform_parent_of_another_platform_is_refused() {
    let s = services();
    let c = client();
    let base = parse(&s.base_image);
    let arm64: Platform = "linux/arm64".parse().unwrap();
    let err = resolve::pin(&c, &base, &arm64).await.unwrap_err();
    let text = format!("{err}: {:?}", std::error::Error::source(&err));
    assert!(
        text.contains("linux/arm64") && text.contains("linux/amd64"),
        "{text}"
    );
    let amd64 = resolve::pin(&c, &base, &Platform::default()).await.unwrap();
    assert_eq!(amd64.manifest_digest, registry_digest(&base).await);
}
