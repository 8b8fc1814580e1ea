//! In-toto attestations as cosign attaches them (plain data, no IO): an
//! in-toto Statement v1 about one image digest, wrapped in a DSSE envelope
//! whose signature covers the pre-authentication encoding
//! `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body` (so the payload type
//! is signed too), carried as a layer of media type [`DSSE_ENVELOPE`] with a
//! `predicateType` annotation in the manifest under `sha256-<hex>.att`.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::digest::Digest;

/// `payloadType` of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// Media type of an attestation layer.
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Layer annotation naming the statement's predicate type.
pub const PREDICATE_ANNOTATION: &str = "predicateType";
/// `_type` of an in-toto Statement v1.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// The tag the attestations of `digest` live under: `sha256-<hex>.att`.
pub fn attestation_tag(digest: &Digest) -> String {
    format!("{}-{}.att", digest.algorithm(), digest.hex())
}

/// The bytes a DSSE signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An in-toto Statement v1 whose subject is `name` at `digest`.
pub fn statement(
    name: &str,
    digest: &Digest,
    predicate_type: &str,
    predicate: serde_json::Value,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "_type": STATEMENT_V1,
        "subject": [{ "name": name, "digest": { digest.algorithm(): digest.hex() } }],
        "predicateType": predicate_type,
        "predicate": predicate,
    }))
    .expect("a JSON value serialises")
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Key hint (kiln leaves it empty, as cosign does for key pairs).
    #[serde(default)]
    pub keyid: String,
    /// Base64 of the ASN.1 DER signature.
    pub sig: String,
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// How to read the payload ([`IN_TOTO`]).
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 of the statement.
    pub payload: String,
    /// Signatures over [`pae`] of the type and the decoded payload.
    pub signatures: Vec<EnvelopeSignature>,
}

impl Envelope {
    /// Wraps `statement` with its DER signature (over [`pae`]).
    pub fn new(statement: &[u8], der_signature: &[u8]) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        Envelope {
            payload_type: IN_TOTO.into(),
            payload: b64.encode(statement),
            signatures: vec![EnvelopeSignature {
                keyid: String::new(),
                sig: b64.encode(der_signature),
            }],
        }
    }

    /// Parses an envelope layer's bytes.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// The JSON bytes of the layer.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope serialises")
    }

    /// The decoded payload (`None`: not base64).
    pub fn statement(&self) -> Option<Vec<u8>> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.payload)
            .ok()
    }

    /// The decoded signatures (undecodable ones left out).
    pub fn der_signatures(&self) -> Vec<Vec<u8>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        self.signatures
            .iter()
            .filter_map(|s| b64.decode(&s.sig).ok())
            .collect()
    }
}

/// What a statement says: its predicate type and whether a subject names
/// `digest`.
pub fn statement_names(statement: &[u8], digest: &Digest) -> Option<(String, bool)> {
    let v: serde_json::Value = serde_json::from_slice(statement).ok()?;
    if v["_type"] != STATEMENT_V1 {
        return None;
    }
    let predicate_type = v["predicateType"].as_str()?.to_string();
    let names = v["subject"].as_array().is_some_and(|subjects| {
        subjects
            .iter()
            .any(|s| s["digest"][digest.algorithm()] == digest.hex())
    });
    Some((predicate_type, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_counts_bytes_and_envelopes_round_trip() {
        assert_eq!(pae("t", b"hello"), b"DSSEv1 1 t 5 hello");
        assert_eq!(pae("é", b""), "DSSEv1 2 é 0 ".as_bytes());
        let d = Digest::of(b"image");
        let s = statement("r/x", &d, "https://example.invalid/p", json!({"a": 1}));
        let e = Envelope::new(&s, b"\x30sig");
        let back = Envelope::parse(&e.to_bytes()).unwrap();
        assert_eq!(back.statement().unwrap(), s);
        assert_eq!(back.der_signatures(), vec![b"\x30sig".to_vec()]);
        assert_eq!(
            statement_names(&s, &d),
            Some(("https://example.invalid/p".into(), true))
        );
        assert_eq!(
            statement_names(&s, &Digest::of(b"other")).map(|x| x.1),
            Some(false)
        );
        assert_eq!(attestation_tag(&d), format!("sha256-{}.att", d.hex()));
    }
}
