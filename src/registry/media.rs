//! Manifest media types and the `Accept` header kiln sends for manifests.

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (v2 schema 2).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (v2 schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Every manifest type kiln accepts, indexes first.
pub const ACCEPTED_MANIFEST_TYPES: &[&str] =
    &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// What a manifest media type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An index or manifest list: points at per-platform manifests.
    Index,
    /// A single-platform image manifest.
    Image,
}

/// Classifies a media type (parameters such as `; charset=` ignored).
pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    match media_type.split(';').next().unwrap_or("").trim() {
        OCI_INDEX | DOCKER_LIST => Some(ManifestKind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        _ => None,
    }
}

/// The `mediaType` field of a manifest body, for registries that send a
/// generic `Content-Type`.
pub fn media_type_in_body(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    let p: Probe = serde_json::from_slice(body).ok()?;
    p.media_type
        .or_else(|| p.manifests.map(|_| OCI_INDEX.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_media_types() {
        assert_eq!(manifest_kind(OCI_INDEX), Some(ManifestKind::Index));
        assert_eq!(manifest_kind(DOCKER_LIST), Some(ManifestKind::Index));
        assert_eq!(
            manifest_kind("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
            Some(ManifestKind::Image)
        );
        assert_eq!(
            manifest_kind("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            None
        );
    }

    #[test]
    fn reads_media_type_from_body() {
        assert_eq!(
            media_type_in_body(br#"{"mediaType":"x","schemaVersion":2}"#).as_deref(),
            Some("x")
        );
        assert_eq!(
            media_type_in_body(br#"{"schemaVersion":2,"manifests":[]}"#).as_deref(),
            Some(OCI_INDEX)
        );
        assert_eq!(media_type_in_body(b"{}"), None);
    }
}
