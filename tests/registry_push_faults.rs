//! Push requests (and redirects) under hostile or broken registries, through
//! a scripted proxy in front of a real registry: a `Location` on another host
//! never gets the credentials, a redirect never downgrades to plain HTTP, a
//! registry that stops answering ends in a bounded error instead of a hang,
//! and `Retry-After` is honoured on pushes.

mod support;

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use kiln::digest::Digest;
use kiln::reference::ImageReference;
use kiln::registry::{
    BasicCredentials, CredentialSource, RegistryClient, RegistryConfig, RegistryError, RetryPolicy,
};
use support::push_proxy::{Action, Catcher, PushProxy, Rule};
use support::registry_process::RegistryProcess;
use support::{services, unique};

/// Fails the test instead of hanging it: a stall must end well before this.
const GUARD: Duration = Duration::from_secs(90);

fn client(host: &str, creds: Option<(&str, &str)>) -> RegistryClient {
    let mut config = RegistryConfig {
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(10),
        },
        request_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(2),
        docker_config: Some("/nonexistent/config.json".into()),
        ..RegistryConfig::default()
    };
    if let Some((u, p)) = creds {
        config.credentials.insert(
            host.to_string(),
            CredentialSource::Basic(BasicCredentials {
                username: u.into(),
                password: p.into(),
            }),
        );
    }
    RegistryClient::new(config).unwrap()
}

/// A temp file of `len` random bytes, its digest, and the file handle.
fn blob(len: usize) -> (Arc<std::fs::File>, Digest) {
    let bytes: Vec<u8> = (0..len).map(|_| fastrand::u8(..)).collect();
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&bytes).unwrap();
    (Arc::new(f), Digest::of(&bytes))
}

async fn upload(
    c: &RegistryClient,
    repo: &ImageReference,
    len: usize,
) -> Result<kiln::registry::UploadOutcome, RegistryError> {
    let (file, digest) = blob(len);
    let sent = Arc::new(AtomicU64::new(0));
    tokio::time::timeout(
        GUARD,
        c.upload_blob_file(repo, &digest, len as u64, &file, sent),
    )
    .await
    .expect("the upload ends instead of hanging")
}

fn repo_on(host: &str) -> ImageReference {
    ImageReference::parse(&format!("{host}/kiln/{}", unique("push"))).unwrap()
}

#[tokio::test]
async fn a_foreign_upload_location_never_gets_the_credentials() {
    services();
    let reg = RegistryProcess::start_with_htpasswd("kiln", "Sup3rSecret");
    let catcher = Catcher::start(400).await;
    let rule = Rule {
        method: "POST",
        contains: "/blobs/uploads/",
        action: Action::ForeignLocation(catcher.host()),
        times: usize::MAX,
    };
    let proxy = PushProxy::start(&reg.host, vec![rule]).await;
    let c = client(&proxy.host(), Some(("kiln", "Sup3rSecret")));
    let err = upload(&c, &repo_on(&proxy.host()), 1000).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Status { status: 400, .. }),
        "{err:?}"
    );
    let heads = catcher.heads.lock().unwrap().clone();
    assert!(!heads.is_empty(), "the foreign host was not asked at all");
    for h in &heads {
        assert!(
            !h.to_ascii_lowercase().contains("authorization"),
            "credentials reached the foreign host:\n{h}"
        );
    }
    // The registry itself did get them (the POST was authorised).
    assert!(
        proxy
            .heads()
            .iter()
            .any(|h| h.to_ascii_lowercase().contains("authorization: basic"))
    );
}

#[tokio::test]
async fn a_registry_that_never_answers_the_upload_post_ends_in_an_error() {
    let s = services();
    let proxy = PushProxy::start(&s.registry, vec![Rule::stall("POST", "/blobs/uploads/")]).await;
    let c = client(&proxy.host(), None);
    let err = upload(&c, &repo_on(&proxy.host()), 1000).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::Transport { source, attempts: 2, .. } if source.is_timeout()),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_registry_that_takes_the_body_and_never_answers_ends_in_an_error() {
    let s = services();
    let proxy = PushProxy::start(&s.registry, vec![Rule::stall("PATCH", "/blobs/uploads/")]).await;
    let c = client(&proxy.host(), None);
    let len = kiln::registry::MONOLITHIC_MAX as usize + 1024 * 1024; // streamed PATCH
    let err = upload(&c, &repo_on(&proxy.host()), len).await.unwrap_err();
    assert!(matches!(err, RegistryError::Stalled { .. }), "{err:?}");
}

/// Waits between the first two requests matching `line_part`.
fn gap(proxy: &PushProxy, line_part: &str) -> Duration {
    let seen = proxy.seen.lock().unwrap();
    let at: Vec<_> = seen
        .iter()
        .filter(|s| s.line.contains(line_part))
        .map(|s| s.at)
        .collect();
    assert!(at.len() >= 2, "fewer than two `{line_part}` requests");
    at[1] - at[0]
}

#[tokio::test]
async fn retry_after_is_honoured_on_upload_and_manifest_requests() {
    let s = services();
    let busy = |method, contains| Rule {
        method,
        contains,
        action: Action::Answer(503, vec![("Retry-After".into(), "2".into())]),
        times: 1,
    };
    let rules = vec![busy("POST", "/blobs/uploads/"), busy("PUT", "/manifests/")];
    let proxy = PushProxy::start(&s.registry, rules).await;
    let c = client(&proxy.host(), None);
    let repo = repo_on(&proxy.host());
    upload(&c, &repo, 1000).await.unwrap();
    let mut config = tempfile::tempfile().unwrap();
    config.write_all(b"{}").unwrap();
    let config_digest = Digest::of(b"{}");
    let sent = Arc::new(AtomicU64::new(0));
    c.upload_blob_file(&repo, &config_digest, 2, &Arc::new(config), sent)
        .await
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": 2},
        "layers": []
    });
    let tagged = ImageReference::parse(&format!("{repo}:t1")).unwrap();
    tokio::time::timeout(
        GUARD,
        c.put_manifest(
            &tagged,
            "application/vnd.oci.image.manifest.v1+json",
            Bytes::from(serde_json::to_vec(&manifest).unwrap()),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    for what in ["POST ", "/manifests/t1"] {
        let waited = gap(&proxy, what);
        assert!(
            waited >= Duration::from_millis(1900),
            "`{what}` retried after {waited:?}, not after Retry-After: 2"
        );
    }
}

#[tokio::test]
async fn redirects_drop_credentials_off_origin_and_never_downgrade_to_http() {
    services();
    let reg = RegistryProcess::start_with_htpasswd("kiln", "Sup3rSecret");
    let catcher = Catcher::start(404).await;
    // Only authorised requests are redirected, so the credentials are there
    // to leak.
    let to = |location: String| Rule {
        method: "GET",
        contains: "authorization: Basic",
        action: Action::Answer(307, vec![("Location".into(), location)]),
        times: 1,
    };
    let rules = vec![
        to(format!("http://{}/elsewhere", catcher.host())),
        to("http://registry.example.com/v2/x/manifests/1".into()),
    ];
    let proxy = PushProxy::start(&reg.host, rules).await;
    let c = client(&proxy.host(), Some(("kiln", "Sup3rSecret")));
    let r = ImageReference::parse(&format!("{}/kiln/any:1", proxy.host())).unwrap();
    // A 401 answered, then the authorised request is redirected to another
    // (loopback) origin: followed, without the credentials.
    let _ = c.get_manifest(&r).await;
    assert!(
        proxy
            .heads()
            .iter()
            .any(|h| h.contains("authorization: Basic"))
    );
    let heads = catcher.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "the redirect was not followed: {heads:?}");
    assert!(
        !heads[0].to_ascii_lowercase().contains("authorization"),
        "credentials followed the redirect:\n{}",
        heads[0]
    );
    // To plain http on a host that is neither loopback nor insecure: refused.
    let err = c.get_manifest(&r).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::Transport { source, .. } if source.is_redirect()),
        "{err:?}"
    );
}
