//! ECR resolution through the ECR API (`BatchGetImage`) against moto.
//! The reference host `<account>.dkr.ecr.<region>.amazonaws.com` selects the
//! API path; `AWS_ENDPOINT_URL_ECR` points the SDK at moto.

mod support;

use kiln::digest::Digest;
use kiln::reference::ImageReference;
use kiln::registry::{Platform, RegistryClient, RegistryError};
use kiln::resolve::{self, ResolveOptions};
use serde_json::json;
use support::{services, unique};

const ACCOUNT: &str = "123456789012"; // moto's default account

async fn ecr() -> aws_sdk_ecr::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    aws_sdk_ecr::Client::new(&conf)
}

fn manifest(payload: &str) -> Vec<u8> {
    let d = Digest::of(payload.as_bytes());
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d.to_string(), "size": 2},
        "layers": []
    }))
    .unwrap()
}

async fn put(client: &aws_sdk_ecr::Client, repo: &str, tag: &str, bytes: &[u8]) -> Digest {
    let digest = Digest::of(bytes);
    client
        .put_image()
        .repository_name(repo)
        .image_manifest(String::from_utf8(bytes.to_vec()).unwrap())
        .image_manifest_media_type("application/vnd.oci.image.manifest.v1+json")
        .image_tag(tag)
        .image_digest(digest.to_string())
        .send()
        .await
        .unwrap();
    digest
}

#[tokio::test]
async fn ecr_tag_resolves_through_batch_get_image_and_drift_is_seen() {
    services();
    let region = std::env::var("AWS_REGION").unwrap();
    let sdk = ecr().await;
    let repo = unique("kiln/ecr");
    sdk.create_repository()
        .repository_name(&repo)
        .send()
        .await
        .unwrap();
    let first = put(&sdk, &repo, "1", &manifest("first")).await;

    let r = ImageReference::parse(&format!(
        "{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{repo}:1"
    ))
    .unwrap();
    let c = RegistryClient::with_defaults().unwrap();
    let pinned = resolve::pin(&c, &r, &Platform::default()).await.unwrap();
    assert_eq!(pinned.manifest_digest, first);
    assert_eq!(
        pinned.pinned.to_string(),
        format!("{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{repo}@{first}")
    );

    // By digest, and drift after re-tagging.
    let by_digest = resolve::pin(&c, &r.pinned(first.clone()), &Platform::default())
        .await
        .unwrap();
    assert_eq!(by_digest.manifest_digest, first);
    let recipes = vec![("app".to_string(), vec![r.clone()])];
    let dir = tempfile::tempdir().unwrap();
    let lock = resolve::update(
        &c,
        &dir.path().join("kiln.lock"),
        &recipes,
        &ResolveOptions::default(),
    )
    .await
    .unwrap();
    sdk.batch_delete_image()
        .repository_name(&repo)
        .image_ids(
            aws_sdk_ecr::types::ImageIdentifier::builder()
                .image_tag("1")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let second = put(&sdk, &repo, "1", &manifest("second")).await;
    let report = resolve::check(&c, &lock, &recipes, &ResolveOptions::default())
        .await
        .unwrap();
    assert_eq!(report.moved.len(), 1, "{report:?}");
    assert_eq!(
        (&report.moved[0].old, &report.moved[0].new),
        (&first, &second)
    );
}

#[tokio::test]
async fn missing_ecr_tag_is_a_typed_not_found() {
    services();
    let region = std::env::var("AWS_REGION").unwrap();
    let sdk = ecr().await;
    let repo = unique("kiln/ecr-missing");
    sdk.create_repository()
        .repository_name(&repo)
        .send()
        .await
        .unwrap();
    let r = ImageReference::parse(&format!(
        "{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{repo}:nope"
    ))
    .unwrap();
    let err = RegistryClient::with_defaults()
        .unwrap()
        .get_manifest(&r)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::EcrImage { .. }) && err.is_not_found(),
        "{err:?}"
    );
}
