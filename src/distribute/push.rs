//! The push itself: plan from the cache, the parent and what each target
//! has; run export → compress → upload as a pipeline; then tag, `PUT` and
//! read back on every target concurrently.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Semaphore, mpsc};

use super::cache::{BlobCache, CachedBlob};
use super::compress::{Codec, GZIP_LAYER};
use super::error::DistributeError;
use super::manifest::{LayerBlob, build_manifest};
use super::parent::parent_layers;
use super::sink::Sink;
use super::tagging::{fail_all, tag_everywhere};
use super::{PushEvent, PushRequest, PushedImage, PushedTarget, render_tags};
use crate::digest::Digest;
use crate::reference::ImageReference;
use crate::registry::RegistryClient;

use super::pipeline::{
    BlobFuture, Ctx, Done, ExportPlan, Produced, Source, Tally, config_file, start_export,
};

/// A layer whose compressed form is known before export.
struct Known {
    digest: Digest,
    size: u64,
    media_type: &'static str,
    /// A repository that has the blob (the parent's), when we did not make it.
    from: Option<ImageReference>,
}

/// Pushes `req.image` to every target of `req`. See the module docs of
/// [`crate::distribute`] for the flow.
pub async fn distribute(
    docker: &bollard::Docker,
    client: &RegistryClient,
    req: &PushRequest,
    on_event: &(dyn Fn(&PushEvent) + Send + Sync),
) -> Result<PushedImage, DistributeError> {
    let tags = render_tags(req)?;
    let image = req.image.clone();
    let bad = |reason: String| bad_image(&image, reason);
    let io_err = |what, source| DistributeError::Io {
        what,
        image: image.clone(),
        source,
    };

    let sinks = futures_util::future::try_join_all(
        req.distribute.targets.iter().map(|t| Sink::open(t, client)),
    )
    .await?;
    let (image_id, diff_ids) = inspect(docker, &req.image).await?;

    // Plan: what is known without exporting, and what each target has.
    let codec = Codec::of(
        req.distribute.compression,
        req.options.compression_level,
        req.options.adaptive,
    );
    let key = codec.key();
    let mut cache = req
        .state_dir
        .as_deref()
        .map(BlobCache::load)
        .unwrap_or_default();
    let known = known_layers(client, req, &diff_ids, &cache, codec).await;
    let mut probe: Vec<Digest> = known.values().map(|k| k.digest.clone()).collect();
    probe.push(image_id.clone());
    let present =
        futures_util::future::try_join_all(sinks.iter().map(|s| s.present(&probe))).await?;
    let unique: Vec<Digest> = diff_ids.iter().fold(Vec::new(), |mut v, d| {
        if !v.contains(d) {
            v.push(d.clone());
        }
        v
    });
    let need_local = to_export(&unique, &known, &present);
    let mut config = cache.config(&image_id);
    let exported = !need_local.is_empty() || config.is_none();

    let spool: PathBuf = req
        .options
        .spool_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let (tx, mut rx) = mpsc::unbounded_channel::<Produced>();
    if exported {
        on_event(&PushEvent::Exporting {
            layers_to_compress: need_local.len(),
        });
        let plan = ExportPlan {
            wanted: need_local.clone(),
            spool: spool.clone(),
            codec,
            stream_over: stream_over(&sinks, &unique, &need_local),
        };
        start_export(docker, req, &image_id, plan, tx);
    } else {
        drop(tx);
    }

    // Per-target state and the blob jobs in flight.
    let mut tallies: Vec<Tally> = sinks.iter().map(|_| Tally::default()).collect();
    let sems: Vec<Semaphore> = sinks
        .iter()
        .map(|_| Semaphore::new(req.options.concurrency.max(1)))
        .collect();
    let mut jobs: FuturesUnordered<BlobFuture<'_>> = FuturesUnordered::new();
    let mut layers: HashMap<Digest, LayerBlob> = HashMap::new();
    let ctx = Ctx {
        sinks: &sinks,
        sems: &sems,
        present: &present,
        client,
        spool: &spool,
        on_event,
    };
    for d in &unique {
        if let Some(k) = known.get(d).filter(|_| !need_local.contains(d)) {
            layers.insert(d.clone(), blob(d, &k.digest, k.size, k.media_type));
            let src = k.from.clone().map(Source::Remote);
            ctx.schedule_everywhere(&mut jobs, &mut tallies, &k.digest, k.size, src);
        }
    }
    let mut fatal = None;
    let mut compressed = 0;
    if let Some(bytes) = &config {
        let file = config_file(bytes, &spool).map_err(|e| io_err("spooling the config", e))?;
        let (size, src) = (bytes.len() as u64, Some(Source::File(file)));
        ctx.schedule_everywhere(&mut jobs, &mut tallies, &image_id, size, src);
    }
    let mut open = exported;
    while open || !jobs.is_empty() {
        tokio::select! {
            item = rx.recv(), if open => match item {
                None => open = false,
                Some(Produced::Failed(e)) => {
                    fatal = Some(e);
                    break;
                }
                Some(Produced::Config(bytes)) => {
                    if config.is_none() {
                        let file = config_file(&bytes, &spool).map_err(|e| io_err("spooling the config", e))?;
                        let (size, src) = (bytes.len() as u64, Some(Source::File(file)));
                        ctx.schedule_everywhere(&mut jobs, &mut tallies, &image_id, size, src);
                        config = Some(bytes);
                    }
                }
                Some(Produced::Growing(blob)) => ctx.stream_everywhere(&mut jobs, &tallies, &blob),
                Some(Produced::Layer { diff_id, digest, size, file, streamed }) => {
                    compressed += 1;
                    on_event(&PushEvent::LayerCompressed { diff_id: diff_id.clone(), digest: digest.clone(), size });
                    if let Some(k) = known.get(&diff_id).filter(|k| k.digest != digest) {
                        tracing::warn!(%diff_id, cached = %k.digest, fresh = %digest, "cached compressed digest differs; using the fresh one");
                    }
                    cache.insert_layer(&key, diff_id.clone(), CachedBlob { digest: digest.clone(), size });
                    layers.insert(diff_id.clone(), blob(&diff_id, &digest, size, codec.media_type()));
                    let src = Some(Source::File(file));
                    for i in (0..sinks.len()).filter(|&i| !(streamed && sinks[i].streams())) {
                        ctx.schedule(&mut jobs, &mut tallies, i, &digest, size, src.clone());
                    }
                }
            },
            Some((i, result)) = jobs.next(), if !jobs.is_empty() => {
                count_blob(&sinks[i], &mut tallies[i], result, on_event);
            }
        }
    }
    drop(jobs);
    if let Some(e) = fatal {
        return Err(e);
    }
    let config =
        config.ok_or_else(|| bad("the export has no config matching the image id".into()))?;
    let manifest = build_manifest(&config, &layer_blobs(&image, &diff_ids, &layers)?);
    if let Some(dir) = &req.state_dir {
        cache.insert_config(image_id.clone(), &config);
        cache.save(dir).map_err(|source| DistributeError::Cache {
            path: BlobCache::path(dir),
            source,
        })?;
    }

    // No tag anywhere unless every target has every blob and no tag
    // conflicts anywhere: blob failures and tag conflicts stop the push
    // before the first manifest PUT, on every target.
    let blob_failures: Vec<DistributeError> =
        tallies.iter_mut().filter_map(|t| t.failed.take()).collect();
    if !blob_failures.is_empty() {
        return Err(fail_all(sinks.len(), blob_failures));
    }
    let finals = tag_everywhere(&sinks, &tags, &manifest, on_event).await?;
    Ok(PushedImage {
        config_digest: image_id,
        targets: pushed_targets(&sinks, &tallies, finals, &tags, &manifest.digest),
        manifest_digest: manifest.digest,
        exported,
        layers_compressed: compressed,
    })
}

/// Each target's outcome: the tags added, and whether the digest read back
/// is the one pushed.
fn pushed_targets(
    sinks: &[Sink],
    tallies: &[Tally],
    finals: Vec<(Vec<String>, Digest)>,
    tags: &[String],
    pushed: &Digest,
) -> Vec<PushedTarget> {
    sinks
        .iter()
        .zip(tallies)
        .zip(finals)
        .map(|((sink, tally), (tags_added, read_back))| PushedTarget {
            target: sink.target().clone(),
            registry_host: sink.host().to_string(),
            repository: sink.repository().to_string(),
            tags: tags.to_vec(),
            tags_added,
            verified: &read_back == pushed,
            manifest_digest: read_back,
            bytes_uploaded: tally.sent.load(Ordering::Relaxed),
            blobs_skipped: tally.skipped,
            blobs_uploaded: tally.uploaded,
            blobs_mounted: tally.mounted,
        })
        .collect()
}

/// Counts one finished blob job of a target (a failure is kept, and fails
/// the target before any tag).
fn count_blob(
    sink: &Sink,
    tally: &mut Tally,
    result: Result<Done, DistributeError>,
    on_event: &(dyn Fn(&PushEvent) + Send + Sync),
) {
    let repository = sink.name();
    match result {
        Ok(Done::Uploaded { digest, bytes }) => {
            tally.uploaded += 1;
            on_event(&PushEvent::BlobUploaded {
                repository,
                digest,
                bytes,
            });
        }
        Ok(Done::Mounted { digest, from }) => {
            tally.mounted += 1;
            on_event(&PushEvent::BlobMounted {
                repository,
                digest,
                from,
            });
        }
        Ok(Done::Abandoned) => {}
        Err(e) => {
            tracing::warn!(target = %repository, error = %e, "blob push failed");
            tally.failed.get_or_insert(e);
        }
    }
}

fn bad_image(image: &str, reason: String) -> DistributeError {
    DistributeError::BadImage {
        image: image.to_string(),
        reason,
    }
}

/// The image id (its config digest) and layer diff ids, as the engine
/// reports them.
async fn inspect(
    docker: &bollard::Docker,
    image: &str,
) -> Result<(Digest, Vec<Digest>), DistributeError> {
    let inspect = docker
        .inspect_image(image)
        .await
        .map_err(|source| DistributeError::Docker {
            operation: "inspect",
            image: image.to_string(),
            source,
        })?;
    let image_id: Digest = inspect
        .id
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| {
            bad_image(
                image,
                format!("the daemon reports an unusable image id: {e}"),
            )
        })?;
    let diff_ids: Vec<Digest> = inspect
        .root_fs
        .and_then(|r| r.layers)
        .unwrap_or_default()
        .iter()
        .map(|l| l.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            let reason = format!("the daemon reports an unusable layer digest: {e}");
            bad_image(image, reason)
        })?;
    Ok((image_id, diff_ids))
}

/// Layers whose compressed form is known without exporting: the parent's
/// (same diff id at the same position; mountable from the parent's
/// repository), else the blob cache's for this compression `key`.
async fn known_layers(
    client: &RegistryClient,
    req: &PushRequest,
    diff_ids: &[Digest],
    cache: &BlobCache,
    codec: Codec,
) -> HashMap<Digest, Known> {
    let key = codec.key();
    let parents = match &req.parent {
        Some(p) => parent_layers(client, p).await.unwrap_or_else(|e| {
            tracing::warn!(parent = %p, error = %e, "cannot read the parent's layers; compressing all layers");
            Vec::new()
        }),
        None => Vec::new(),
    };
    let mut known: HashMap<Digest, Known> = HashMap::new();
    for (i, d) in diff_ids.iter().enumerate() {
        if let Some(p) = parents.get(i).filter(|p| &p.diff_id == d) {
            known.insert(
                d.clone(),
                Known {
                    digest: p.digest.clone(),
                    size: p.size,
                    media_type: GZIP_LAYER,
                    from: req.parent.clone(),
                },
            );
        } else if let Some(c) = cache.layer(&key, d) {
            known.entry(d.clone()).or_insert(Known {
                digest: c.digest.clone(),
                size: c.size,
                media_type: codec.media_type(),
                from: None,
            });
        }
    }
    known
}

/// Entries above this size are uploaded while they are compressed, when
/// [`stream_over`] allows it.
const STREAM_OVER: u64 = crate::registry::MONOLITHIC_MAX;

/// Whether large export entries are uploaded as they are compressed, and
/// above which size: only when every layer is to be compressed (a cold push:
/// every large entry is a wanted layer, so nothing is uploaded in vain) and
/// some target [`Sink::streams`].
fn stream_over(sinks: &[Sink], unique: &[Digest], need_local: &HashSet<Digest>) -> Option<u64> {
    let all = unique.iter().all(|d| need_local.contains(d));
    (all && sinks.iter().any(Sink::streams)).then_some(STREAM_OVER)
}

/// The layers that must be exported and compressed: unknown ones, and
/// cached ones (not the parent's) that some target lacks.
fn to_export(
    unique: &[Digest],
    known: &HashMap<Digest, Known>,
    present: &[HashSet<Digest>],
) -> HashSet<Digest> {
    unique
        .iter()
        .filter(|d| match known.get(*d) {
            None => true,
            Some(k) => k.from.is_none() && present.iter().any(|p| !p.contains(&k.digest)),
        })
        .cloned()
        .collect()
}

fn blob(diff_id: &Digest, digest: &Digest, size: u64, media_type: &'static str) -> LayerBlob {
    LayerBlob {
        diff_id: diff_id.clone(),
        digest: digest.clone(),
        size,
        media_type,
    }
}

/// The manifest's layers in image order, each as compressed and pushed.
fn layer_blobs(
    image: &str,
    diff_ids: &[Digest],
    layers: &HashMap<Digest, LayerBlob>,
) -> Result<Vec<LayerBlob>, DistributeError> {
    diff_ids
        .iter()
        .map(|d| {
            layers
                .get(d)
                .cloned()
                .ok_or_else(|| bad_image(image, format!("the export has no layer {d}")))
        })
        .collect()
}
