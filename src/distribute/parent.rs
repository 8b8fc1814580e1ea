//! Reusing the parent image's compressed layers: the parent's manifest lists
//! compressed digests, its config lists diff_ids; where those match the first
//! layers of our image, the parent's blobs are mounted, skipped or copied
//! instead of compressing again. Also the cross-registry copy (a verified
//! `GET` spooled to a temp file, then uploaded like any layer).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use futures_util::StreamExt;
use serde::Deserialize;

use crate::digest::Digest;
use crate::reference::ImageReference;
use crate::registry::{RegistryClient, RegistryError};

/// A layer of the parent, known by its compressed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentLayer {
    /// Uncompressed digest.
    pub diff_id: Digest,
    /// Compressed digest.
    pub digest: Digest,
    /// Compressed size.
    pub size: u64,
}

#[derive(Deserialize)]
struct Desc {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: Digest,
    size: u64,
}

#[derive(Deserialize)]
struct ManifestDoc {
    config: Desc,
    #[serde(default)]
    layers: Vec<Desc>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

#[derive(Deserialize)]
struct ConfigDoc {
    rootfs: RootFs,
}

fn is_gzip_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
    )
}

/// The parent's gzip layers in order, with their diff_ids. `parent` must
/// name a single-platform manifest (the resolve stage pins it so).
pub async fn parent_layers(
    client: &RegistryClient,
    parent: &ImageReference,
) -> Result<Vec<ParentLayer>, RegistryError> {
    let m = client.get_manifest(parent).await?;
    let doc: ManifestDoc =
        serde_json::from_slice(&m.bytes).map_err(|source| RegistryError::ManifestParse {
            reference: parent.to_string(),
            source,
        })?;
    let mut stream = client.get_blob(parent, &doc.config.digest).await?;
    let mut config = Vec::new();
    while let Some(chunk) = stream.next().await {
        config.extend_from_slice(&chunk?);
    }
    let config: ConfigDoc =
        serde_json::from_slice(&config).map_err(|source| RegistryError::ManifestParse {
            reference: parent.to_string(),
            source,
        })?;
    Ok(doc
        .layers
        .iter()
        .zip(config.rootfs.diff_ids)
        .take_while(|(l, _)| is_gzip_layer(&l.media_type))
        .map(|(l, diff_id)| ParentLayer {
            diff_id,
            digest: l.digest.clone(),
            size: l.size,
        })
        .collect())
}

/// Why a cross-registry copy failed.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// Reading from the source registry.
    Registry(RegistryError),
    /// Writing the spool file.
    Io(std::io::Error),
}

/// Downloads blob `digest` of `from` (digest verified while streaming) into
/// an anonymous temp file in `dir`.
pub(crate) async fn download_blob(
    client: &RegistryClient,
    from: &ImageReference,
    digest: &Digest,
    dir: &Path,
) -> Result<File, CopyError> {
    let mut stream = client
        .get_blob(from, digest)
        .await
        .map_err(CopyError::Registry)?;
    let file = tempfile::tempfile_in(dir).map_err(CopyError::Io)?;
    let mut out = std::io::BufWriter::new(file.try_clone().map_err(CopyError::Io)?);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(CopyError::Registry)?;
        out.write_all(&chunk).map_err(CopyError::Io)?;
    }
    out.flush().map_err(CopyError::Io)?;
    drop(out);
    Ok(file)
}
