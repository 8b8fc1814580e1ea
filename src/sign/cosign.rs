//! The cosign signature format, as plain data (no IO): the simple-signing
//! payload, the signature manifest that carries it under the tag
//! `sha256-<hex>.sig`, and the check that an existing signature manifest
//! holds a signature of ours.
//!
//! What verifiers read (cosign; containers/image with
//! `use-sigstore-attachments`): an OCI image manifest whose layers have media
//! type [`SIMPLE_SIGNING`], each a payload blob whose
//! `critical.image.docker-manifest-digest` is the signed digest, with the
//! base64 ASN.1 DER ECDSA signature of the payload bytes in the layer
//! annotation [`SIGNATURE_ANNOTATION`].

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::digest::Digest;

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 DER signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a container image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// Media type of the signature manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// The tag the signatures of `digest` live under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm(), digest.hex())
}

/// The simple-signing payload for `repository` (`host/path`, no tag) at
/// `digest`. `optional` carries kiln's own claims (recipe, build).
pub fn payload(repository: &str, digest: &Digest, optional: serde_json::Value) -> Vec<u8> {
    let doc = json!({
        "critical": {
            "identity": { "docker-reference": repository },
            "image": { "docker-manifest-digest": digest.to_string() },
            "type": SIGNATURE_TYPE,
        },
        "optional": optional,
    });
    serde_json::to_vec(&doc).expect("a JSON value serialises")
}

/// A signature manifest and the two blobs it references.
#[derive(Debug, Clone)]
pub struct SignatureArtifact {
    /// The payload blob (the signed bytes).
    pub payload: Vec<u8>,
    /// The config blob.
    pub config: Vec<u8>,
    /// The manifest bytes, PUT under [`signature_tag`].
    pub manifest: Vec<u8>,
}

impl SignatureArtifact {
    /// Builds the artifact for `payload` signed with `der_signature`.
    pub fn new(payload: Vec<u8>, der_signature: &[u8]) -> Self {
        let payload_digest = Digest::of(&payload);
        let config = serde_json::to_vec(&json!({
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": [payload_digest.to_string()] },
        }))
        .expect("a JSON value serialises");
        let signature = base64::engine::general_purpose::STANDARD.encode(der_signature);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": Digest::of(&config).to_string(),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": SIMPLE_SIGNING,
                "digest": payload_digest.to_string(),
                "size": payload.len(),
                "annotations": { SIGNATURE_ANNOTATION: signature },
            }],
        }))
        .expect("a JSON value serialises");
        Self {
            payload,
            config,
            manifest,
        }
    }
}

/// One simple-signing layer of an existing signature manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    /// The payload blob's digest.
    pub payload: Digest,
    /// The DER signature (decoded from base64).
    pub signature: Vec<u8>,
}

#[derive(Deserialize, Serialize)]
struct ManifestDoc {
    #[serde(default)]
    layers: Vec<LayerDoc>,
}

#[derive(Deserialize, Serialize)]
struct LayerDoc {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// The simple-signing layers of a signature manifest; layers of other types
/// and layers whose digest or signature does not parse are left out.
pub fn signature_layers(manifest: &[u8]) -> Vec<SignatureLayer> {
    let Ok(doc) = serde_json::from_slice::<ManifestDoc>(manifest) else {
        return Vec::new();
    };
    doc.layers
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING)
        .filter_map(|l| {
            let payload = l.digest.parse().ok()?;
            let sig = l.annotations.get(SIGNATURE_ANNOTATION)?;
            let signature = base64::engine::general_purpose::STANDARD.decode(sig).ok()?;
            Some(SignatureLayer { payload, signature })
        })
        .collect()
}

/// Whether `payload` is a simple-signing payload for `digest`.
pub fn payload_names(payload: &[u8], digest: &Digest) -> bool {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| {
            v.pointer("/critical/image/docker-manifest-digest")
                .and_then(|d| d.as_str())
                .map(|d| d == digest.to_string())
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_round_trips_through_signature_layers() {
        let d = Digest::of(b"image");
        let p = payload("localhost:5000/app", &d, serde_json::Value::Null);
        assert!(payload_names(&p, &d));
        assert!(!payload_names(&p, &Digest::of(b"other")));
        let a = SignatureArtifact::new(p.clone(), b"\x30\x01sig");
        let layers = signature_layers(&a.manifest);
        assert_eq!(
            layers,
            vec![SignatureLayer {
                payload: Digest::of(&p),
                signature: b"\x30\x01sig".to_vec()
            }]
        );
        assert_eq!(signature_tag(&d), format!("sha256-{}.sig", d.hex()));
    }
}
