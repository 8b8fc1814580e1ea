//! The moving parts of a push: the export → compress side (a blocking tar
//! walker cutting layers into blocks for a thread pool as the export streams)
//! and the per-target blob jobs (skip, mount, copy or upload under a
//! concurrency limit), which start as soon as a layer is compressed — or,
//! on a cold push to an OCI target, as soon as it starts compressing
//! ([`Ctx::stream_everywhere`]).

use std::collections::HashSet;
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Semaphore, mpsc};

use super::compress::{Codec, CompressPool};
use super::error::DistributeError;
use super::export::{ChannelReader, Exported, Walk, walk_export};
use super::parent::{CopyError, download_blob};
use super::sink::Sink;
use super::{PushEvent, PushRequest};
use crate::digest::Digest;
use crate::reference::ImageReference;
use crate::registry::{GrowingBlob, Growth, RegistryClient};

/// Where a blob's bytes come from.
#[derive(Clone)]
pub(super) enum Source {
    File(Arc<File>),
    Remote(ImageReference),
}

/// What the export side produces.
pub(super) enum Produced {
    Config(Vec<u8>),
    /// A layer starting to compress, for targets that upload as it grows.
    Growing(GrowingBlob),
    Layer {
        diff_id: Digest,
        digest: Digest,
        size: u64,
        file: Arc<File>,
        /// Announced as `Growing` first (its streaming jobs are queued).
        streamed: bool,
    },
    Failed(DistributeError),
}

#[derive(Default)]
pub(super) struct Tally {
    pub(super) sent: Arc<AtomicU64>,
    pub(super) skipped: usize,
    pub(super) uploaded: usize,
    pub(super) mounted: usize,
    pub(super) failed: Option<DistributeError>,
}

pub(super) enum Done {
    Uploaded {
        digest: Digest,
        bytes: u64,
    },
    Mounted {
        digest: Digest,
        from: String,
    },
    /// A streamed entry that turned out not to be a wanted layer.
    Abandoned,
}

pub(super) type BlobFuture<'a> =
    Pin<Box<dyn Future<Output = (usize, Result<Done, DistributeError>)> + Send + 'a>>;

/// What scheduling a blob job needs.
pub(super) struct Ctx<'a> {
    pub(super) sinks: &'a [Sink],
    pub(super) sems: &'a [Semaphore],
    pub(super) present: &'a [HashSet<Digest>],
    pub(super) client: &'a RegistryClient,
    pub(super) spool: &'a Path,
    pub(super) on_event: &'a (dyn Fn(&PushEvent) + Send + Sync),
}

impl<'a> Ctx<'a> {
    /// Queues `digest` for every target ([`Ctx::schedule`]).
    pub(super) fn schedule_everywhere(
        &self,
        jobs: &mut FuturesUnordered<BlobFuture<'a>>,
        tallies: &mut [Tally],
        digest: &Digest,
        size: u64,
        src: Option<Source>,
    ) {
        for i in 0..self.sinks.len() {
            self.schedule(jobs, tallies, i, digest, size, src.clone());
        }
    }

    /// Queues `digest` for target `i`, or counts it skipped when present.
    pub(super) fn schedule(
        &self,
        jobs: &mut FuturesUnordered<BlobFuture<'a>>,
        tallies: &mut [Tally],
        i: usize,
        digest: &Digest,
        size: u64,
        src: Option<Source>,
    ) {
        if tallies[i].failed.is_some() {
            return;
        }
        if self.present[i].contains(digest) {
            tallies[i].skipped += 1;
            (self.on_event)(&PushEvent::BlobSkipped {
                repository: self.sinks[i].name(),
                digest: digest.clone(),
            });
            return;
        }
        // No source only for cached layers every target has (see `need_local`).
        let Some(src) = src else { return };
        let job = push_blob(
            &self.sinks[i],
            &self.sems[i],
            self.client,
            self.spool,
            digest.clone(),
            size,
            src,
            tallies[i].sent.clone(),
        );
        jobs.push(Box::pin(async move { (i, job.await) }));
    }

    /// Queues `blob`, still being compressed, for every target that uploads
    /// as it grows ([`Sink::streams`]).
    pub(super) fn stream_everywhere(
        &self,
        jobs: &mut FuturesUnordered<BlobFuture<'a>>,
        tallies: &[Tally],
        blob: &GrowingBlob,
    ) {
        for (i, sink) in self.sinks.iter().enumerate() {
            if sink.streams() && tallies[i].failed.is_none() {
                let job = stream_blob(
                    sink,
                    &self.sems[i],
                    self.client,
                    self.spool,
                    blob.clone(),
                    tallies[i].sent.clone(),
                );
                jobs.push(Box::pin(async move { (i, job.await) }));
            }
        }
    }
}

/// One layer to one target while it is compressed; when that fails, the
/// finished file is uploaded the usual way (with resume).
async fn stream_blob(
    sink: &Sink,
    sem: &Semaphore,
    client: &RegistryClient,
    spool: &Path,
    mut blob: GrowingBlob,
    sent: Arc<AtomicU64>,
) -> Result<Done, DistributeError> {
    let mine = Arc::new(AtomicU64::new(0));
    let streamed = sink.upload_growing(blob.clone(), mine.clone()).await;
    let bytes = mine.load(Ordering::Relaxed);
    sent.fetch_add(bytes, Ordering::Relaxed);
    match streamed {
        Ok(Some(digest)) => return Ok(Done::Uploaded { digest, bytes }),
        Ok(None) => return Ok(Done::Abandoned),
        Err(e) => {
            tracing::debug!(error = %e, "streamed upload failed; uploading the finished layer")
        }
    }
    let end = {
        let ended = blob.growth.wait_for(|g| !matches!(g, Growth::Writing(_)));
        ended.await.map(|g| g.clone())
    };
    let Ok(Growth::Done { digest, size }) = end else {
        return Ok(Done::Abandoned);
    };
    let src = Source::File(blob.file);
    push_blob(sink, sem, client, spool, digest, size, src, sent).await
}

/// One blob to one target, under the target's concurrency limit.
#[allow(clippy::too_many_arguments)]
async fn push_blob(
    sink: &Sink,
    sem: &Semaphore,
    client: &RegistryClient,
    spool: &Path,
    digest: Digest,
    size: u64,
    src: Source,
    sent: Arc<AtomicU64>,
) -> Result<Done, DistributeError> {
    let _permit = sem.acquire().await.expect("the semaphore is never closed");
    let file = match src {
        Source::File(f) => f,
        Source::Remote(from) => {
            if sink.mount(&digest, &from).await? {
                let from = from.name();
                return Ok(Done::Mounted { digest, from });
            }
            let f = download_blob(client, &from, &digest, spool)
                .await
                .map_err(|e| match e {
                    CopyError::Registry(source) => DistributeError::Registry {
                        target: Box::new(sink.target().clone()),
                        repository: from.name(),
                        what: format!("copy of blob {digest}"),
                        source: Box::new(source),
                    },
                    CopyError::Io(source) => DistributeError::Io {
                        what: "spooling a parent blob",
                        image: from.to_string(),
                        source,
                    },
                })?;
            Arc::new(f)
        }
    };
    // Count this blob on its own (uploads run concurrently), then add it to
    // the target's total.
    let mine = Arc::new(AtomicU64::new(0));
    let result = sink.upload(&digest, size, &file, mine.clone()).await;
    let bytes = mine.load(Ordering::Relaxed);
    sent.fetch_add(bytes, Ordering::Relaxed);
    result?;
    Ok(Done::Uploaded { digest, bytes })
}

pub(super) fn config_file(bytes: &[u8], dir: &Path) -> std::io::Result<Arc<File>> {
    let mut f = tempfile::tempfile_in(dir)?;
    f.write_all(bytes)?;
    Ok(Arc::new(f))
}

/// What the export side compresses, and how.
pub(super) struct ExportPlan {
    /// The layers to compress.
    pub(super) wanted: HashSet<Digest>,
    pub(super) spool: std::path::PathBuf,
    pub(super) codec: Codec,
    /// Entries larger than this are announced as `Produced::Growing`.
    pub(super) stream_over: Option<u64>,
}

/// Streams the export into a blocking tar walker that compresses the layers
/// of `plan` on a pool of `compress_threads` as they arrive.
pub(super) fn start_export(
    docker: &bollard::Docker,
    req: &PushRequest,
    image_id: &Digest,
    plan: ExportPlan,
    tx: mpsc::UnboundedSender<Produced>,
) {
    let (chunk_tx, chunk_rx) = mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
    let docker = docker.clone();
    let image = req.image.clone();
    let (closed, read) = (tx.clone(), req.options.export_read.clone());
    // Reads the export until it ends, or until the push is dropped or
    // cancelled (`tx`'s receiver gone): dropping the stream closes the
    // connection, the daemon stops exporting, and the walker below sees EOF.
    tokio::spawn(async move {
        let mut stream = docker.export_image(&image);
        loop {
            let chunk = tokio::select! {
                () = closed.closed() => break,
                c = stream.next() => match c {
                    Some(c) => c.map_err(std::io::Error::other),
                    None => break,
                },
            };
            if let Ok(b) = &chunk
                && read.fetch_add(b.len() as u64, Ordering::Relaxed) == 0
            {
                tracing::debug!(image = %image, "first byte of the export");
            }
            let stop = chunk.is_err();
            tokio::select! {
                () = closed.closed() => break,
                sent = chunk_tx.send(chunk) => if sent.is_err() || stop { break },
            }
        }
    });
    let threads = match req.options.compress_threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let (image, id) = (req.image.clone(), image_id.clone());
    tokio::task::spawn_blocking(move || {
        let pool = CompressPool::new(threads);
        let walk = Walk {
            image_id: &id,
            wanted: &plan.wanted,
            spool: &plan.spool,
            codec: plan.codec,
            pool: &pool,
            stream_over: plan.stream_over,
        };
        let walked = walk_export(ChannelReader::new(chunk_rx), &walk, |item| {
            let _ = tx.send(match item {
                Exported::Config(bytes) => Produced::Config(bytes),
                Exported::Growing(blob) => Produced::Growing(blob),
                Exported::Layer {
                    diff_id,
                    compressed,
                    streamed,
                    ..
                } => Produced::Layer {
                    diff_id,
                    digest: compressed.digest,
                    size: compressed.size,
                    file: compressed.file,
                    streamed,
                },
            });
        });
        drop(pool);
        if let Err(source) = walked {
            let _ = tx.send(Produced::Failed(DistributeError::Io {
                what: "reading and compressing the export",
                image,
                source,
            }));
        }
    });
}
