//! `kiln verify REF@sha256:…`: what a downstream team checks before it
//! pulls. Each check is named and reported, never stopped at the first
//! failure: the image exists by that digest; a cosign signature under
//! `sha256-<hex>.sig` names the digest and the repository and verifies with
//! the key; the `.att` manifest holds a provenance and an SBOM attestation
//! whose DSSE signature verifies and whose statement's subject is the
//! digest; and, with a daemon, the digest is among the pipeline's approved
//! references (the pipeline is read from the verified signature's payload).

use serde::Serialize;

use crate::daemon::client::Client;
use crate::digest::Digest;
use crate::reference::ImageReference;
use crate::registry::RegistryClient;
use crate::sign::PublicKey;
use crate::sign::attach::read_small_blob;
use crate::sign::attest::read_attestations;
use crate::sign::cosign::{self, payload_identity, payload_names, signature_layers};
use crate::sign::dsse::attestation_tag;
use crate::sign::place::existing_manifest;

/// The attestations kiln attaches, each required: (predicate type, name).
pub const REQUIRED: [(&str, &str); 2] = [
    (crate::record::provenance::PREDICATE_TYPE, "provenance"),
    (crate::sbom::cyclonedx::PREDICATE_TYPE, "sbom"),
];

/// One named check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `image`, `signature`, `attestation provenance`, `attestation sbom`,
    /// `approved`.
    pub name: String,
    /// Whether it holds.
    pub passed: bool,
    /// What was found.
    pub detail: String,
}

/// Every check of one reference.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// `host/repository`.
    pub repository: String,
    /// The digest checked.
    pub digest: Digest,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Verification {
    /// True only when every check holds.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    fn add(&mut self, name: &str, passed: bool, detail: String) {
        self.checks.push(Check {
            name: name.to_string(),
            passed,
            detail,
        });
    }
}

/// Why verification could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The reference names no digest: a tag can move, so kiln verifies
    /// digests only.
    #[error(
        "`{reference}` names no digest: verify `REPOSITORY@sha256:…` (what `kiln approved` prints)"
    )]
    NoDigest {
        /// The reference given.
        reference: String,
    },
}

/// Runs every check on `reference` (which must carry a digest) with `key`;
/// `server`: also ask that daemon whether the digest is approved.
pub async fn verify(
    client: &RegistryClient,
    key: &PublicKey,
    reference: &ImageReference,
    server: Option<&Client>,
) -> Result<Verification, VerifyError> {
    let Some(digest) = reference.digest.clone() else {
        return Err(VerifyError::NoDigest {
            reference: reference.to_string(),
        });
    };
    let repo = ImageReference {
        tag: None,
        digest: None,
        ..reference.clone()
    };
    let mut v = Verification {
        repository: repo.name(),
        digest: digest.clone(),
        checks: Vec::new(),
    };
    let by_digest = ImageReference {
        tag: None,
        ..reference.clone()
    };
    match client.get_manifest(&by_digest).await {
        Ok(m) => v.add("image", true, format!("{} is in the registry", m.digest)),
        Err(e) => v.add("image", false, crate::pipeline::chain(&e)),
    }
    let pipeline = check_signature(client, key, &repo, &digest, &mut v).await;
    check_attestations(client, key, &repo, &digest, &mut v).await;
    if let Some(server) = server {
        check_approved(server, pipeline, &repo, &digest, &mut v).await;
    }
    Ok(v)
}

/// The `signature` check; returns the pipeline the valid signature names.
async fn check_signature(
    client: &RegistryClient,
    key: &PublicKey,
    repo: &ImageReference,
    digest: &Digest,
    v: &mut Verification,
) -> Option<String> {
    let tag = cosign::signature_tag(digest);
    let tag_ref = ImageReference {
        tag: Some(tag.clone()),
        ..repo.clone()
    };
    let name = format!("{}:{tag}", repo.name());
    let manifest = match existing_manifest(client, &tag_ref).await {
        Ok(Some((bytes, _))) => bytes,
        Ok(None) => {
            v.add(
                "signature",
                false,
                format!("no signature: `{name}` does not exist"),
            );
            return None;
        }
        Err(e) => {
            v.add("signature", false, crate::pipeline::chain(&e));
            return None;
        }
    };
    let layers = signature_layers(&manifest);
    let mut reasons = Vec::new();
    for layer in &layers {
        let payload = match &layer.inline {
            Some(p) => Some(p.clone()),
            None => read_small_blob(client, repo, &layer.payload, 64 * 1024).await,
        };
        let Some(payload) = payload else {
            reasons.push(format!("payload {} unreadable", layer.payload.short()));
            continue;
        };
        if !key.verifies(&payload, &layer.signature) {
            reasons.push(format!("a signature does not verify with {}", key.source()));
        } else if !payload_names(&payload, digest) {
            reasons.push("a signature names another digest".to_string());
        } else if payload_identity(&payload).as_deref() != Some(repo.name().as_str()) {
            let other = payload_identity(&payload).unwrap_or_default();
            reasons.push(format!("a signature names repository `{other}`"));
        } else {
            v.add(
                "signature",
                true,
                format!("`{name}` verifies with {}", key.source()),
            );
            let p: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
            return p["optional"]["dev.kiln.pipeline"]
                .as_str()
                .map(str::to_string);
        }
    }
    let detail = format!(
        "`{name}` holds {} signature(s), none valid: {}",
        layers.len(),
        reasons.join("; ")
    );
    v.add("signature", false, detail);
    None
}

/// One `attestation NAME` check per required predicate type.
async fn check_attestations(
    client: &RegistryClient,
    key: &PublicKey,
    repo: &ImageReference,
    digest: &Digest,
    v: &mut Verification,
) {
    let tag = attestation_tag(digest);
    let tag_ref = ImageReference {
        tag: Some(tag.clone()),
        ..repo.clone()
    };
    let name = format!("{}:{tag}", repo.name());
    let found = match existing_manifest(client, &tag_ref).await {
        Ok(Some((bytes, _))) => {
            read_attestations(client, repo, &bytes, digest, |m, s| key.verifies(m, s)).await
        }
        Ok(None) => {
            for (_, short) in REQUIRED {
                let detail = format!("no attestations: `{name}` does not exist");
                v.add(&format!("attestation {short}"), false, detail);
            }
            return;
        }
        Err(e) => {
            for (_, short) in REQUIRED {
                v.add(
                    &format!("attestation {short}"),
                    false,
                    crate::pipeline::chain(&e),
                );
            }
            return;
        }
    };
    for (kind, short) in REQUIRED {
        let of_kind: Vec<_> = found.iter().filter(|f| f.predicate_type == kind).collect();
        let check = format!("attestation {short}");
        if of_kind.iter().any(|f| f.signed && f.names_digest) {
            let detail = format!("{kind} in `{name}`: DSSE signature valid, subject {digest}");
            v.add(&check, true, detail);
        } else if of_kind.is_empty() {
            v.add(
                &check,
                false,
                format!("`{name}` holds no {kind} attestation"),
            );
        } else if !of_kind.iter().any(|f| f.signed) {
            let detail = format!(
                "{kind} in `{name}`: no DSSE signature verifies with {}",
                key.source()
            );
            v.add(&check, false, detail);
        } else {
            let detail =
                format!("{kind} in `{name}`: the statement's subjects do not name {digest}");
            v.add(&check, false, detail);
        }
    }
}

/// The `approved` check: the daemon's approved references of the pipeline
/// the signature names include `repo@digest`.
async fn check_approved(
    server: &Client,
    pipeline: Option<String>,
    repo: &ImageReference,
    digest: &Digest,
    v: &mut Verification,
) {
    let Some(pipeline) = pipeline else {
        let detail = "no valid kiln signature names the pipeline to ask about".to_string();
        v.add("approved", false, detail);
        return;
    };
    let want = format!("{}@{digest}", repo.name());
    match server.approved(&pipeline).await {
        Ok(answer) => {
            let refs: Vec<&str> = answer["references"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str())
                .collect();
            if refs.contains(&want.as_str()) {
                v.add(
                    "approved",
                    true,
                    format!("pipeline `{pipeline}` approves {want}"),
                );
            } else {
                let detail = format!(
                    "pipeline `{pipeline}`'s approved build is {}, not {want}",
                    if refs.is_empty() {
                        "none".to_string()
                    } else {
                        refs.join(", ")
                    }
                );
                v.add("approved", false, detail);
            }
        }
        Err(e) => v.add("approved", false, crate::pipeline::chain(&e)),
    }
}
