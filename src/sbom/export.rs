//! The SBOM's Docker IO: inspect the image (id and layer diff ids), stream
//! its export (`GET /images/{name}/get`) into a blocking walker that reads
//! each layer tar inside the export tar as it passes, recognised by its
//! sha256 (the diff id) as in `distribute`, then merge the layers in order.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use bollard::Docker;
use futures_util::StreamExt as _;

use super::Sbom;
use super::layers::{LayerScan, Tree, scan_layer};
use crate::digest::{Digest, DigestWriter};
use crate::distribute::ChannelReader;

/// Why an image's SBOM could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SbomError {
    /// A Docker call failed.
    #[error("sbom of `{image}`: docker {operation} failed")]
    Docker {
        /// The call.
        operation: &'static str,
        /// The image.
        image: String,
        /// Docker's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The daemon describes the image in a way kiln cannot use.
    #[error("sbom of `{image}`: {reason}")]
    BadImage {
        /// The image.
        image: String,
        /// What was wrong.
        reason: String,
    },
    /// Reading the export stream failed.
    #[error("sbom of `{image}`: reading the image export failed")]
    Export {
        /// The image.
        image: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A layer the image lists was not in its export.
    #[error("sbom of `{image}`: layer `{diff_id}` is missing from the image export")]
    MissingLayer {
        /// The image.
        image: String,
        /// The layer's diff id.
        diff_id: Digest,
    },
}

/// The SBOM of the local image `image` (name or id).
pub async fn generate(docker: &Docker, image: &str) -> Result<Sbom, SbomError> {
    let (image_id, diff_ids) = inspect(docker, image).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
    let (d, name) = (docker.clone(), image.to_string());
    let feeder = tokio::spawn(async move {
        let mut stream = d.export_image(&name);
        while let Some(chunk) = stream.next().await {
            let stop = chunk.is_err();
            if tx.send(chunk.map_err(std::io::Error::other)).await.is_err() || stop {
                break;
            }
        }
    });
    let wanted: HashSet<Digest> = diff_ids.iter().cloned().collect();
    let walked =
        tokio::task::spawn_blocking(move || read_export(ChannelReader::new(rx), &wanted)).await;
    feeder.abort();
    let export = |source| SbomError::Export {
        image: image.to_string(),
        source,
    };
    let layers = walked
        .map_err(|e| export(std::io::Error::other(e)))?
        .map_err(export)?;
    let mut tree = Tree::default();
    for diff_id in diff_ids {
        let Some(scan) = layers.get(&diff_id) else {
            return Err(SbomError::MissingLayer {
                image: image.to_string(),
                diff_id,
            });
        };
        tree.apply(scan.clone());
    }
    Ok(Sbom::from_tree(image_id, &tree))
}

/// Hashes everything read through it.
struct Hashing<R> {
    inner: R,
    hash: DigestWriter,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Walks a `docker save` tar (classic or OCI layout): every regular file is
/// read as a layer tar while hashed; the scans whose hash is a wanted diff
/// id are kept.
pub fn read_export(
    reader: impl Read,
    wanted: &HashSet<Digest>,
) -> std::io::Result<HashMap<Digest, LayerScan>> {
    let mut outer = tar::Archive::new(reader);
    let mut out = HashMap::new();
    for entry in outer.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let mut hashing = Hashing {
            inner: &mut entry,
            hash: DigestWriter::new(),
        };
        let scan = scan_layer(&mut hashing);
        std::io::copy(&mut hashing, &mut std::io::sink())?;
        let (digest, _) = hashing.hash.finish();
        if let (true, Ok(scan)) = (wanted.contains(&digest), scan) {
            out.insert(digest, scan);
        }
    }
    Ok(out)
}

/// The image id and its layers' diff ids, bottom first.
async fn inspect(docker: &Docker, image: &str) -> Result<(Digest, Vec<Digest>), SbomError> {
    let info = docker
        .inspect_image(image)
        .await
        .map_err(|source| SbomError::Docker {
            operation: "inspect",
            image: image.to_string(),
            source,
        })?;
    let bad = |reason: String| SbomError::BadImage {
        image: image.to_string(),
        reason,
    };
    let id: Digest = info
        .id
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| bad(format!("unusable image id: {e}")))?;
    let diff_ids = info
        .root_fs
        .and_then(|r| r.layers)
        .unwrap_or_default()
        .iter()
        .map(|l| l.parse())
        .collect::<Result<Vec<Digest>, _>>()
        .map_err(|e| bad(format!("unusable layer digest: {e}")))?;
    Ok((id, diff_ids))
}
