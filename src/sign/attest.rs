//! Attestations: in-toto statements about a pushed digest (SLSA provenance,
//! the CycloneDX SBOM), each in a DSSE envelope signed with kiln's key, all
//! in one manifest under `sha256-<hex>.att` in the image's repository
//! (cosign's tag scheme; the registries kiln targets have no referrers API).
//!
//! Once per digest, as for signatures: when the tag already holds, for every
//! predicate type being attached, an envelope kiln's key verifies whose
//! statement names the digest, nothing is pushed; when it holds anything
//! else, the stage fails rather than move the tag.

use crate::digest::Digest;
use crate::reference::ImageReference;
use crate::registry::RegistryClient;
use crate::sign::SigningKey;
use crate::sign::attach::{SignError, SignTarget, SignedTarget, existing, kept, read_layer, taken};
use crate::sign::cosign::{Artifact, ArtifactLayer, SIGNATURE_ANNOTATION, layers};
use crate::sign::dsse::{
    DSSE_ENVELOPE, Envelope, IN_TOTO, PREDICATE_ANNOTATION, attestation_tag, pae, statement_names,
};
use crate::sign::place::Place;

/// Largest envelope read back (an SBOM of a large image is megabytes).
pub const MAX_ENVELOPE: usize = 256 * 1024 * 1024;

/// One statement to attest: its predicate type and its JSON bytes (whose
/// subject is the target's digest).
#[derive(Debug, Clone)]
pub struct Statement {
    /// `predicateType`.
    pub predicate_type: String,
    /// The in-toto Statement v1 bytes.
    pub bytes: Vec<u8>,
}

/// A DSSE envelope read from an attestation manifest, with what it claims.
#[derive(Debug, Clone)]
pub struct FoundAttestation {
    /// The layer's `predicateType` annotation.
    pub predicate_type: String,
    /// Whether `key` verifies one of its signatures over the PAE.
    pub signed: bool,
    /// Whether its statement names the digest (and has that predicate type).
    pub names_digest: bool,
}

/// Reads every DSSE layer of the attestation manifest `manifest` in `repo`
/// and checks it against `key` and `digest`; `verify` is the signature
/// check (message, DER signature).
pub async fn read_attestations(
    client: &RegistryClient,
    repo: &ImageReference,
    manifest: &[u8],
    digest: &Digest,
    verify: impl Fn(&[u8], &[u8]) -> bool,
) -> Vec<FoundAttestation> {
    let mut out = Vec::new();
    for layer in layers(manifest) {
        if layer.media_type != DSSE_ENVELOPE {
            continue;
        }
        let predicate_type = layer
            .annotations
            .get(PREDICATE_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        let envelope = read_layer(client, repo, &layer, MAX_ENVELOPE)
            .await
            .and_then(|b| Envelope::parse(&b));
        let Some((envelope, statement)) = envelope.and_then(|e| e.statement().map(|s| (e, s)))
        else {
            out.push(FoundAttestation {
                predicate_type,
                signed: false,
                names_digest: false,
            });
            continue;
        };
        let signed_bytes = pae(&envelope.payload_type, &statement);
        let signed = envelope.payload_type == IN_TOTO
            && envelope
                .der_signatures()
                .iter()
                .any(|sig| verify(&signed_bytes, sig));
        let names_digest = statement_names(&statement, digest)
            .is_some_and(|(t, names)| names && t == predicate_type);
        out.push(FoundAttestation {
            predicate_type,
            signed,
            names_digest,
        });
    }
    out
}

/// Attaches `statements` to `target.digest` unless kiln's attestations of
/// every one of their predicate types are already there.
pub async fn attest_target(
    client: &RegistryClient,
    key: &SigningKey,
    target: &SignTarget,
    statements: &[Statement],
) -> Result<SignedTarget, SignError> {
    let place = Place::open(client, &target.target).await?;
    attest_in(&place, key, &target.digest, statements).await
}

/// [`attest_target`] in an open [`Place`].
pub async fn attest_in(
    place: &Place<'_>,
    key: &SigningKey,
    digest: &Digest,
    statements: &[Statement],
) -> Result<SignedTarget, SignError> {
    let tag = attestation_tag(digest);
    let (att_ref, reference) = place.tagged(tag.clone());
    if let Some((bytes, manifest)) = existing(place, &att_ref, &reference).await? {
        let found = read_attestations(place.client(), place.repo(), &bytes, digest, |m, s| {
            key.verifies(m, s)
        })
        .await;
        let covered = statements.iter().all(|s| {
            found
                .iter()
                .any(|f| f.predicate_type == s.predicate_type && f.signed && f.names_digest)
        });
        if covered {
            return Ok(kept(reference, manifest));
        }
        return Err(taken(reference, digest));
    }
    let mut layers = Vec::new();
    for s in statements {
        let signature =
            key.sign(&pae(IN_TOTO, &s.bytes))
                .await
                .map_err(|source| SignError::Sign {
                    reference: reference.clone(),
                    source,
                })?;
        layers.push(ArtifactLayer {
            media_type: DSSE_ENVELOPE,
            bytes: Envelope::new(&s.bytes, &signature).to_bytes(),
            annotations: [
                (PREDICATE_ANNOTATION.to_string(), s.predicate_type.clone()),
                (SIGNATURE_ANNOTATION.to_string(), String::new()),
            ]
            .into(),
        });
    }
    let artifact = Artifact::new(layers);
    let sent = place.push(&tag, &artifact).await?;
    Ok(SignedTarget {
        signature_ref: reference,
        signature_manifest: sent,
        pushed: true,
    })
}
