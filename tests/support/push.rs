//! Builds tiny test images straight through the OCI distribution API:
//! blobs by POST+PUT, manifests and indexes by PUT.

use kiln::digest::Digest;
use serde_json::json;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Pushes into one registry (`host:port`, plain HTTP), optionally with basic auth.
pub struct Pusher {
    base: String,
    auth: Option<(String, String)>,
    http: reqwest::Client,
}

/// A pushed manifest.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub digest: Digest,
    pub size: usize,
    pub media_type: &'static str,
}

impl Pusher {
    pub fn new(registry: &str) -> Self {
        Pusher {
            base: format!("http://{registry}"),
            auth: None,
            http: reqwest::Client::new(),
        }
    }

    pub fn with_basic(mut self, user: &str, pass: &str) -> Self {
        self.auth = Some((user.into(), pass.into()));
        self
    }

    fn req(&self, m: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(m, url);
        match &self.auth {
            Some((u, p)) => rb.basic_auth(u, Some(p)),
            None => rb,
        }
    }

    pub async fn blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        let r = self
            .req(
                reqwest::Method::POST,
                &format!("{}/v2/{repo}/blobs/uploads/", self.base),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "starting upload to {repo}");
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let loc = if loc.starts_with('/') {
            format!("{}{loc}", self.base)
        } else {
            loc
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .req(reqwest::Method::PUT, &format!("{loc}{sep}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "finishing upload to {repo}: {}",
            r.text().await.unwrap_or_default()
        );
        digest
    }

    /// PUTs a manifest; returns the digest the registry reported.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &'static str,
        bytes: &[u8],
    ) -> Pushed {
        let r = self
            .req(
                reqwest::Method::PUT,
                &format!("{}/v2/{repo}/manifests/{reference}", self.base),
            )
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "putting manifest {repo}:{reference}: {}",
            r.text().await.unwrap_or_default()
        );
        let reported: Digest = r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(reported, Digest::of(bytes));
        Pushed {
            digest: reported,
            size: bytes.len(),
            media_type,
        }
    }

    /// A one-layer OCI image for `arch` whose layer is `payload`, tagged `tag`.
    pub async fn image(&self, repo: &str, tag: &str, arch: &str, payload: &[u8]) -> Pushed {
        let layer = self.blob(repo, payload).await;
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer.to_string()]},
            "config": {}
        }))
        .unwrap();
        let config_digest = self.blob(repo, &config).await;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": payload.len()}]
        }))
        .unwrap();
        self.manifest(repo, tag, OCI_MANIFEST, &manifest).await
    }

    /// An OCI index over `(manifest, arch)` pairs, tagged `tag`.
    pub async fn index(&self, repo: &str, tag: &str, entries: &[(&Pushed, &str)]) -> Pushed {
        let manifests: Vec<_> = entries
            .iter()
            .map(|(p, arch)| {
                json!({
                    "mediaType": p.media_type, "digest": p.digest.to_string(), "size": p.size,
                    "platform": {"architecture": arch, "os": "linux"}
                })
            })
            .collect();
        let index = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
        )
        .unwrap();
        self.manifest(repo, tag, OCI_INDEX, &index).await
    }

    /// Copies the single-platform image `repo:tag` from the plain-HTTP,
    /// anonymous registry `from` into this registry, same name.
    pub async fn copy_from(&self, from: &str, repo: &str, tag: &str) -> Pushed {
        const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
        let r = reqwest::Client::new()
            .get(format!("http://{from}/v2/{repo}/manifests/{tag}"))
            .header("accept", format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "reading {from}/{repo}:{tag}");
        let media_type = match r.headers()["content-type"].to_str().unwrap() {
            OCI_MANIFEST => OCI_MANIFEST,
            DOCKER_MANIFEST => DOCKER_MANIFEST,
            other => panic!("{from}/{repo}:{tag} is a {other}, not one image"),
        };
        let bytes = r.bytes().await.unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let blobs = std::iter::once(&manifest["config"])
            .chain(manifest["layers"].as_array().unwrap())
            .map(|d| d["digest"].as_str().unwrap().to_string());
        for digest in blobs {
            let blob = reqwest::get(format!("http://{from}/v2/{repo}/blobs/{digest}"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(self.blob(repo, &blob).await.to_string(), digest);
        }
        self.manifest(repo, tag, media_type, &bytes).await
    }
}
