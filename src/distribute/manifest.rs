//! The pushed manifest: an OCI image manifest (oci-spec) over the daemon's
//! exact config bytes and gzip layers. Plain data, no IO.
//!
//! kiln pushes OCI media types (`application/vnd.oci.image.manifest.v1+json`,
//! config `…config.v1+json`, layers `…layer.v1.tar+gzip`, or `…tar+zstd`
//! for a zstd target); every registry and ECR accept them, and Docker 20.10
//! pulls them (but not zstd layers).

use bytes::Bytes;
use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};

use crate::digest::Digest;

/// The manifest media type kiln pushes.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A compressed layer as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// The uncompressed digest (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// The digest of the compressed bytes.
    pub digest: Digest,
    /// The size of the compressed bytes.
    pub size: u64,
    /// Its OCI media type (`…tar+gzip`, `…tar+zstd`).
    pub media_type: &'static str,
}

/// A serialized manifest and its locally computed digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltManifest {
    /// The exact bytes pushed.
    pub bytes: Bytes,
    /// sha256 of `bytes`.
    pub digest: Digest,
    /// The config digest (= the daemon's image id).
    pub config_digest: Digest,
}

fn oci_digest(d: &Digest) -> oci_spec::image::Digest {
    d.to_string()
        .parse()
        .expect("a kiln Digest is a valid OCI digest")
}

/// Builds the OCI manifest for `config` bytes and `layers` (in stack order).
pub fn build_manifest(config: &[u8], layers: &[LayerBlob]) -> BuiltManifest {
    let config_digest = Digest::of(config);
    let config_desc = Descriptor::new(
        MediaType::ImageConfig,
        config.len() as u64,
        oci_digest(&config_digest),
    );
    let layer_descs: Vec<Descriptor> = layers
        .iter()
        .map(|l| Descriptor::new(MediaType::from(l.media_type), l.size, oci_digest(&l.digest)))
        .collect();
    let manifest: ImageManifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layer_descs)
        .build()
        .expect("all required manifest fields are set");
    let bytes = Bytes::from(
        manifest
            .to_string()
            .expect("a manifest always serializes")
            .into_bytes(),
    );
    BuiltManifest {
        digest: Digest::of(&bytes),
        bytes,
        config_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_is_deterministic_and_lists_blobs_in_order() {
        let layers = vec![
            LayerBlob {
                diff_id: Digest::of(b"a"),
                digest: Digest::of(b"ga"),
                size: 10,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
            },
            LayerBlob {
                diff_id: Digest::of(b"b"),
                digest: Digest::of(b"gb"),
                size: 20,
                media_type: "application/vnd.oci.image.layer.v1.tar+zstd",
            },
        ];
        let m1 = build_manifest(b"{}", &layers);
        let m2 = build_manifest(b"{}", &layers);
        assert_eq!(m1, m2);
        assert_eq!(m1.digest, Digest::of(&m1.bytes));
        let v: serde_json::Value = serde_json::from_slice(&m1.bytes).unwrap();
        assert_eq!(v["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(v["config"]["digest"], Digest::of(b"{}").to_string());
        assert_eq!(
            v["config"]["mediaType"],
            "application/vnd.oci.image.config.v1+json"
        );
        assert_eq!(v["layers"][1]["digest"], Digest::of(b"gb").to_string());
        assert_eq!(
            v["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(v["layers"][0]["size"], 10);
        assert_eq!(
            v["layers"][1]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
}
