//! Retries and integrity under injected faults: a TCP proxy in front of the
//! real registry answers 503/429, resets mid-response or corrupts a byte.

mod support;

use std::time::{Duration, Instant};

use kiln::reference::ImageReference;
use kiln::registry::{Platform, RegistryClient, RegistryConfig, RegistryError, RetryPolicy};
use kiln::resolve::{self, ResolveError, ResolveOptions};
use support::fault_proxy::{Fault, FaultProxy};
use support::services;

fn fast_client() -> RegistryClient {
    RegistryClient::new(RegistryConfig {
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(5),
        },
        ..RegistryConfig::default()
    })
    .unwrap()
}

/// The base image as seen through the proxy, and its true digest.
async fn through(proxy: &FaultProxy) -> (ImageReference, kiln::digest::Digest) {
    let s = services();
    let base = ImageReference::parse(&s.base_image).unwrap();
    let truth = RegistryClient::with_defaults()
        .unwrap()
        .get_manifest(&base)
        .await
        .unwrap()
        .digest;
    let via = ImageReference::parse(&format!(
        "{}/{}:{}",
        proxy.host(),
        base.repository,
        base.tag.unwrap()
    ))
    .unwrap();
    (via, truth)
}

#[tokio::test]
async fn a_503_is_retried_then_succeeds() {
    let proxy = FaultProxy::start(&services().registry, vec![Fault::Status(503, vec![])]).await;
    let (r, truth) = through(&proxy).await;
    let c = fast_client();
    let pinned = resolve::pin(&c, &r, &Platform::default()).await.unwrap();
    assert_eq!(pinned.manifest_digest, truth);
    // The manifest twice (the fault, the retry), then its config (platform).
    assert_eq!(c.requests_made(), 3);
    assert_eq!(proxy.connections(), 2);
}

#[tokio::test]
async fn a_429_waits_at_least_retry_after() {
    let proxy = FaultProxy::start(
        &services().registry,
        vec![Fault::Status(429, vec![("Retry-After", "1".into())])],
    )
    .await;
    let (r, truth) = through(&proxy).await;
    let c = fast_client();
    let start = Instant::now();
    let pinned = resolve::pin(&c, &r, &Platform::default()).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "waited only {:?}",
        start.elapsed()
    );
    assert_eq!(pinned.manifest_digest, truth);
    // The manifest twice (the fault, the retry), then its config (platform).
    assert_eq!(c.requests_made(), 3);
}

#[tokio::test]
async fn a_connection_reset_mid_response_is_retried() {
    let proxy = FaultProxy::start(&services().registry, vec![Fault::ResetMidResponse]).await;
    let (r, truth) = through(&proxy).await;
    let c = fast_client();
    let pinned = resolve::pin(&c, &r, &Platform::default()).await.unwrap();
    assert_eq!(pinned.manifest_digest, truth);
    // The manifest twice (the fault, the retry), then its config (platform).
    assert_eq!(c.requests_made(), 3);
}

#[tokio::test]
async fn attempts_are_bounded_and_the_status_is_reported() {
    let script = vec![Fault::Status(503, vec![]); 6];
    let proxy = FaultProxy::start(&services().registry, script).await;
    let (r, _) = through(&proxy).await;
    let c = fast_client();
    let err = c.get_manifest(&r).await.unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Status {
                status: 503,
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(c.requests_made(), 4);
}

#[tokio::test]
async fn a_corrupted_manifest_is_a_digest_mismatch_and_the_lock_is_not_written() {
    let s = services();
    let proxy = FaultProxy::start(&s.registry, vec![Fault::CorruptBody]).await;
    let (r, truth) = through(&proxy).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kiln.lock");
    let c = fast_client();
    let opts = ResolveOptions::default();
    let base = ImageReference::parse(&s.base_image).unwrap();
    resolve::update(&c, &path, &[("app".into(), vec![base])], &opts)
        .await
        .unwrap();
    let before = std::fs::read(&path).unwrap();

    let err = resolve::update(&c, &path, &[("app".into(), vec![r])], &opts)
        .await
        .unwrap_err();
    let ResolveError::Unresolved { .. } = &err else {
        panic!("{err:?}")
    };
    match &err.failures()[0].source {
        RegistryError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &truth);
            assert_ne!(actual, &truth);
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "lock must not change"
    );
}
