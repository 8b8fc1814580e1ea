//! The sign stage, between distribute and record: when the operator config
//! names a signing key, every verified target's manifest digest (OCI
//! registries and ECR alike) gets a cosign signature (`crate::sign::attach`)
//! and two attestations (`crate::sign::attest`): the record's SLSA v1
//! provenance and the image's CycloneDX SBOM (`crate::sbom`), each an
//! in-toto statement about that digest in a signed DSSE envelope.

use serde_json::json;

use crate::distribute::PushedImage;
use crate::registry::RegistryClient;
use crate::sign::SigningKey;
use crate::sign::attach::{self, SignError, SignedTarget};
use crate::sign::attest::{self, Statement};
use crate::sign::dsse;
use crate::sign::place::Place;

/// One signed target: `(registry host, repository, signature)`.
pub(super) type Signed = (String, String, SignedTarget);

/// What the stage attaches besides the signature: predicate type and
/// predicate of each attestation.
pub(super) struct Predicates {
    /// `(predicateType, predicate)` pairs.
    pub(super) list: Vec<(String, serde_json::Value)>,
}

/// What the stage attached.
#[derive(Default)]
pub(super) struct SignOutput {
    /// Signatures per target.
    pub(super) signatures: Vec<Signed>,
    /// Attestation manifests per target.
    pub(super) attestations: Vec<Signed>,
    /// The stage note.
    pub(super) note: String,
}

/// Signs and attests every verified target of `pushed`; the payload's
/// `optional` names the pipeline, version and build.
pub(super) async fn sign_pushed(
    registry: &RegistryClient,
    key: &SigningKey,
    pushed: &PushedImage,
    (pipeline, version, build): (&str, &str, u64),
    predicates: &Predicates,
) -> Result<SignOutput, SignError> {
    let optional = json!({ "dev.kiln.pipeline": pipeline, "dev.kiln.version": version, "dev.kiln.build": build.to_string() });
    let mut out = SignOutput::default();
    let mut notes = Vec::new();
    for t in pushed.targets.iter().filter(|t| t.verified) {
        // One connection to the repository (for ECR: one lookup) for both.
        let place = Place::open(registry, &t.target).await?;
        let s = attach::sign_in(&place, key, &t.manifest_digest, optional.clone()).await?;
        let name = format!("{}/{}", t.registry_host, t.repository);
        let statements: Vec<Statement> = predicates
            .list
            .iter()
            .map(|(kind, predicate)| Statement {
                predicate_type: kind.clone(),
                bytes: dsse::statement(&name, &t.manifest_digest, kind, predicate.clone()),
            })
            .collect();
        let a = attest::attest_in(&place, key, &t.manifest_digest, &statements).await?;
        let done = |pushed: bool, yes: &str, no: &str| if pushed { yes } else { no }.to_string();
        notes.push(format!(
            "{} {}, {} {}",
            s.signature_ref,
            done(s.pushed, "signed", "already signed"),
            a.signature_ref,
            done(a.pushed, "attested", "already attested")
        ));
        out.signatures
            .push((t.registry_host.clone(), t.repository.clone(), s));
        out.attestations
            .push((t.registry_host.clone(), t.repository.clone(), a));
    }
    out.note = notes.join(", ");
    Ok(out)
}
