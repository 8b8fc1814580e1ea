//! Authentication against a real htpasswd-protected registry started for the
//! test on a free loopback port, and ECR token use against moto.

mod support;

use base64::Engine as _;
use kiln::reference::ImageReference;
use kiln::registry::{
    BasicCredentials, CredentialSource, ErrorCode, Platform, RegistryClient, RegistryConfig,
    RegistryError,
};
use kiln::resolve;
use support::push::Pusher;
use support::registry_process::RegistryProcess;
use support::services;

fn client_with(
    host: &str,
    source: Option<CredentialSource>,
    docker_config: Option<std::path::PathBuf>,
) -> RegistryClient {
    let mut config = RegistryConfig {
        docker_config,
        ..RegistryConfig::default()
    };
    if let Some(s) = source {
        config.credentials.insert(host.to_string(), s);
    }
    RegistryClient::new(config).unwrap()
}

fn basic(u: &str, p: &str) -> CredentialSource {
    CredentialSource::Basic(BasicCredentials {
        username: u.into(),
        password: p.into(),
    })
}

#[tokio::test]
async fn basic_auth_from_config_and_docker_config_json() {
    services();
    let reg = RegistryProcess::start_with_htpasswd("kiln", "s3cret");
    let pushed = Pusher::new(&reg.host)
        .with_basic("kiln", "s3cret")
        .image("kiln/private", "1", "amd64", b"private")
        .await;
    let r = ImageReference::parse(&format!("{}/kiln/private:1", reg.host)).unwrap();
    let no_docker_config = Some(std::path::PathBuf::from("/nonexistent/config.json"));

    // Anonymous: a typed UNAUTHORIZED, after one request (no credentials to try).
    let anon = client_with(&reg.host, None, no_docker_config.clone());
    let err = anon.get_manifest(&r).await.unwrap_err();
    assert!(
        matches!(
            &err,
            RegistryError::Status {
                status: 401,
                code: Some(ErrorCode::Unauthorized),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(anon.requests_made(), 1);

    // Explicit basic credentials: one 401 round trip, then cached.
    let c = client_with(&reg.host, Some(basic("kiln", "s3cret")), None);
    let pinned = resolve::pin(&c, &r, &Platform::default()).await.unwrap();
    assert_eq!(pinned.manifest_digest, pushed.digest);
    // The challenge, the manifest, then its config (the platform check).
    assert_eq!(c.requests_made(), 3);
    c.head_manifest(&r).await.unwrap();
    assert_eq!(
        c.requests_made(),
        4,
        "credentials are reused without a new challenge"
    );

    // ~/.docker/config.json `auths` entry.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("kiln:s3cret");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#,
            reg.host
        ),
    )
    .unwrap();
    let c = client_with(&reg.host, None, Some(cfg));
    assert_eq!(c.get_manifest(&r).await.unwrap().digest, pushed.digest);

    // Wrong password: refused after exactly one authenticated retry.
    let c = client_with(&reg.host, Some(basic("kiln", "wrong")), None);
    let err = c.get_manifest(&r).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::Status { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(c.requests_made(), 2, "no auth loop");
}

#[tokio::test]
async fn ecr_token_with_a_past_expiry_is_used_once_and_never_looped() {
    services();
    let reg = RegistryProcess::start_with_htpasswd("kiln", "s3cret");
    // moto's token (AWS:<password>, expiry in 2015) cannot satisfy this
    // registry: the client must fetch it, try once, and stop.
    let source = CredentialSource::Ecr {
        region: "us-east-1".into(),
        account: "123456789012".into(),
    };
    let c = client_with(&reg.host, Some(source), None);
    let r = ImageReference::parse(&format!("{}/kiln/private:1", reg.host)).unwrap();
    for round in 1..=2u64 {
        let err = c.get_manifest(&r).await.unwrap_err();
        assert!(
            matches!(&err, RegistryError::Status { status: 401, .. }),
            "{err:?}"
        );
        // anonymous GET + GetAuthorizationToken + authenticated GET
        assert_eq!(
            c.requests_made(),
            3 * round,
            "round {round}: expired token must not be cached or looped"
        );
    }
}
