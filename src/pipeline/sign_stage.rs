//! The sign stage, between distribute and record: when the operator config
//! names a signing key, every verified OCI target's manifest digest gets a
//! cosign signature (`crate::sign::attach`). ECR targets are not signed yet
//! (the stage note says so).

use serde_json::json;

use crate::distribute::PushedImage;
use crate::load::Target;
use crate::registry::RegistryClient;
use crate::sign::SigningKey;
use crate::sign::attach::{self, SignError, SignTarget, SignedTarget};

/// One signed target: `(registry host, repository, signature)`.
pub(super) type Signed = (String, String, SignedTarget);

/// Signs every verified OCI target of `pushed`; the payload's `optional`
/// names the pipeline, version and build. Returns the signatures and the
/// stage note.
pub(super) async fn sign_pushed(
    registry: &RegistryClient,
    key: &SigningKey,
    pushed: &PushedImage,
    pipeline: &str,
    version: &str,
    build: u64,
) -> Result<(Vec<Signed>, String), SignError> {
    let optional = json!({ "dev.kiln.pipeline": pipeline, "dev.kiln.version": version, "dev.kiln.build": build.to_string() });
    let mut signed = Vec::new();
    let mut notes = Vec::new();
    for t in pushed.targets.iter().filter(|t| t.verified) {
        if !matches!(t.target, Target::Oci { .. }) {
            notes.push(format!(
                "{}/{} not signed (ECR signatures are not supported yet)",
                t.registry_host, t.repository
            ));
            continue;
        }
        let target = SignTarget {
            registry: t.registry_host.clone(),
            repository: t.repository.clone(),
            digest: t.manifest_digest.clone(),
        };
        let s = attach::sign_target(registry, key, &target, optional.clone()).await?;
        notes.push(format!(
            "{} {}",
            s.signature_ref,
            if s.pushed { "signed" } else { "already signed" }
        ));
        signed.push((t.registry_host.clone(), t.repository.clone(), s));
    }
    Ok((signed, notes.join(", ")))
}
