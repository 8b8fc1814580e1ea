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
//!
//! Blobs up to [`INLINE_MAX`] bytes are also embedded in their descriptor's
//! `data` field (OCI image-spec 1.1), so a repository whose blobs can only
//! be written, not read, through the API kiln uses (ECR's, as moto serves
//! it) still lets kiln check its attachments from the manifest alone. An
//! embedded blob counts only when it hashes to the descriptor's digest.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
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
/// Largest blob embedded in its descriptor's `data` (ECR's manifest limit is
/// 4 MiB; a signature payload is under 1 KiB, a small image's SBOM under
/// this).
pub const INLINE_MAX: usize = 512 * 1024;

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

/// One layer of a manifest kiln attaches to an image (a signature payload
/// or an attestation envelope).
#[derive(Debug, Clone)]
pub struct ArtifactLayer {
    /// The layer's media type.
    pub media_type: &'static str,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its annotations.
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// A manifest kiln attaches (under `sha256-<hex>.sig` or `.att`) and the
/// blobs it references: the layers, then the config.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Every blob the manifest references.
    pub blobs: Vec<Vec<u8>>,
    /// The manifest bytes.
    pub manifest: Vec<u8>,
}

impl Artifact {
    /// An OCI image manifest of `layers` with a config listing them as
    /// `rootfs.diff_ids`, as cosign writes it.
    pub fn new(layers: Vec<ArtifactLayer>) -> Self {
        let digests: Vec<String> = layers
            .iter()
            .map(|l| Digest::of(&l.bytes).to_string())
            .collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": digests },
        }))
        .expect("a JSON value serialises");
        let descriptors: Vec<serde_json::Value> = layers
            .iter()
            .zip(&digests)
            .map(|(l, d)| {
                let mut descriptor = json!({
                    "mediaType": l.media_type,
                    "digest": d,
                    "size": l.bytes.len(),
                    "annotations": l.annotations,
                });
                if l.bytes.len() <= INLINE_MAX {
                    descriptor["data"] = BASE64.encode(&l.bytes).into();
                }
                descriptor
            })
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": Digest::of(&config).to_string(),
                "size": config.len(),
            },
            "layers": descriptors,
        }))
        .expect("a JSON value serialises");
        let mut blobs: Vec<Vec<u8>> = layers.into_iter().map(|l| l.bytes).collect();
        blobs.push(config);
        Self { blobs, manifest }
    }

    /// The signature manifest for `payload` signed with `der_signature`.
    pub fn signature(payload: Vec<u8>, der_signature: &[u8]) -> Self {
        let signature = BASE64.encode(der_signature);
        Self::new(vec![ArtifactLayer {
            media_type: SIMPLE_SIGNING,
            bytes: payload,
            annotations: [(SIGNATURE_ANNOTATION.to_string(), signature)].into(),
        }])
    }
}

/// One simple-signing layer of an existing signature manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    /// The payload blob's digest.
    pub payload: Digest,
    /// The DER signature (decoded from base64).
    pub signature: Vec<u8>,
    /// The payload embedded in the descriptor, when it hashes to `payload`.
    pub inline: Option<Vec<u8>>,
}

#[derive(Deserialize, Serialize)]
struct ManifestDoc {
    #[serde(default)]
    layers: Vec<LayerDoc>,
}

/// One layer descriptor of an attached manifest, as read back.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LayerDoc {
    /// Its media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Its digest (unparsed).
    pub digest: String,
    /// Its annotations.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// The blob embedded as base64 (`data`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl LayerDoc {
    /// The embedded blob, only when it decodes and hashes to `digest`.
    pub fn inline(&self) -> Option<Vec<u8>> {
        let bytes = BASE64.decode(self.data.as_deref()?).ok()?;
        let digest: Digest = self.digest.parse().ok()?;
        digest.verify(&bytes).then_some(bytes)
    }
}

/// The layer descriptors of an attached manifest (none when it does not
/// parse).
pub fn layers(manifest: &[u8]) -> Vec<LayerDoc> {
    serde_json::from_slice::<ManifestDoc>(manifest)
        .map(|d| d.layers)
        .unwrap_or_default()
}

/// The simple-signing layers of a signature manifest; layers of other types
/// and layers whose digest or signature does not parse are left out.
pub fn signature_layers(manifest: &[u8]) -> Vec<SignatureLayer> {
    layers(manifest)
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING)
        .filter_map(|l| {
            let payload = l.digest.parse().ok()?;
            let sig = l.annotations.get(SIGNATURE_ANNOTATION)?;
            let signature = BASE64.decode(sig).ok()?;
            let inline = l.inline();
            Some(SignatureLayer {
                payload,
                signature,
                inline,
            })
        })
        .collect()
}

/// The repository (`critical.identity.docker-reference`) a simple-signing
/// payload names.
pub fn payload_identity(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.pointer("/critical/identity/docker-reference")
        .and_then(|d| d.as_str())
        .map(str::to_string)
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
        let a = Artifact::signature(p.clone(), b"\x30\x01sig");
        assert_eq!(a.blobs[0], p);
        let layers = signature_layers(&a.manifest);
        assert_eq!(
            layers,
            vec![SignatureLayer {
                payload: Digest::of(&p),
                signature: b"\x30\x01sig".to_vec(),
                inline: Some(p.clone()),
            }]
        );
        assert_eq!(signature_tag(&d), format!("sha256-{}.sig", d.hex()));
    }

    #[test]
    fn an_embedded_blob_counts_only_when_it_hashes_to_its_digest() {
        let p = payload("localhost:5000/app", &Digest::of(b"image"), json!({}));
        let a = Artifact::signature(p.clone(), b"sig");
        let mut doc: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(layers(&a.manifest)[0].inline(), Some(p));
        doc["layers"][0]["data"] = BASE64.encode(b"forged").into();
        let forged = serde_json::to_vec(&doc).unwrap();
        assert_eq!(layers(&forged)[0].inline(), None);
        assert_eq!(signature_layers(&forged)[0].inline, None);
        let big = Artifact::new(vec![ArtifactLayer {
            media_type: SIMPLE_SIGNING,
            bytes: vec![b'x'; INLINE_MAX + 1],
            annotations: Default::default(),
        }]);
        assert_eq!(layers(&big.manifest)[0].data, None, "too large to embed");
    }
}
