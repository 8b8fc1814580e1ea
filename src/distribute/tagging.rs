//! The tagging step, all-or-nothing as far as registries allow: check every
//! tag on every target, then `PUT` the missing ones and read each target back;
//! if any target fails, remove the tags this push already created everywhere
//! (OCI: `DELETE` by tag, or by digest when the manifest is new to the
//! repository; ECR: `BatchDeleteImage` of the tag) and report exactly which
//! could not be removed.

use futures_util::future::join_all;

use super::PushEvent;
use super::error::DistributeError;
use super::manifest::BuiltManifest;
use super::sink::Sink;
use crate::digest::Digest;

type OnEvent<'a> = &'a (dyn Fn(&PushEvent) + Send + Sync);

/// One error for the whole push.
pub(super) fn fail_all(total: usize, mut failures: Vec<DistributeError>) -> DistributeError {
    if failures.len() == 1 && total == 1 {
        failures.remove(0)
    } else {
        DistributeError::Targets { total, failures }
    }
}

/// Tags `m` as every tag on every sink; per sink, the tags it added and the
/// digest read back by the first tag.
pub(super) async fn tag_everywhere(
    sinks: &[Sink],
    tags: &[String],
    m: &BuiltManifest,
    on_event: OnEvent<'_>,
) -> Result<Vec<(Vec<String>, Digest)>, DistributeError> {
    let missing = collect(
        sinks.len(),
        join_all(sinks.iter().map(|s| check_tags(s, tags, m, on_event))).await,
    )?;
    // Whether each repository lacked the manifest before any PUT: only then
    // may a rollback delete it by digest.
    let fresh = collect(
        sinks.len(),
        join_all(sinks.iter().zip(&missing).map(|(s, miss)| async move {
            if miss.is_empty() {
                Ok(false)
            } else {
                s.has_manifest(&m.digest).await.map(|has| !has)
            }
        }))
        .await,
    )?;
    let mut added: Vec<Vec<String>> = vec![Vec::new(); sinks.len()];
    let finals = join_all(
        sinks
            .iter()
            .zip(&missing)
            .zip(added.iter_mut())
            .map(|((s, miss), add)| finish(s, tags, miss, m, on_event, add)),
    )
    .await;
    if finals.iter().all(Result::is_ok) {
        return Ok(finals
            .into_iter()
            .zip(added)
            .map(|(r, add)| (add, r.expect("checked")))
            .collect());
    }
    let failures: Vec<DistributeError> = finals.into_iter().filter_map(Result::err).collect();
    let cause = fail_all(sinks.len(), failures);
    let (removed, left) = roll_back(sinks, &added, &fresh, m).await;
    if removed.is_empty() && left.is_empty() {
        return Err(cause);
    }
    Err(DistributeError::Tagging {
        cause: Box::new(cause),
        removed,
        left,
    })
}

/// All results, or one error naming every failure.
fn collect<T>(
    total: usize,
    results: Vec<Result<T, DistributeError>>,
) -> Result<Vec<T>, DistributeError> {
    let mut ok = Vec::new();
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => failures.push(e),
        }
    }
    if failures.is_empty() {
        Ok(ok)
    } else {
        Err(fail_all(total, failures))
    }
}

/// Removes the tags in `added`; returns (removed, left) as
/// `host/repository:tag`.
async fn roll_back(
    sinks: &[Sink],
    added: &[Vec<String>],
    fresh: &[bool],
    m: &BuiltManifest,
) -> (Vec<String>, Vec<String>) {
    let (mut removed, mut left) = (Vec::new(), Vec::new());
    for ((sink, tags), fresh) in sinks.iter().zip(added).zip(fresh) {
        for tag in tags {
            let name = format!("{}:{tag}", sink.name());
            match sink.untag(tag, &m.digest, *fresh).await {
                Ok(true) => removed.push(name),
                Ok(false) => left.push(name),
                Err(e) => {
                    tracing::warn!(tag = %name, error = %e, "cannot remove a tag this push created");
                    left.push(name);
                }
            }
        }
    }
    (removed, left)
}

/// Checks every tag on one target: the tags still missing, or a conflict.
async fn check_tags(
    sink: &Sink,
    tags: &[String],
    m: &BuiltManifest,
    on_event: OnEvent<'_>,
) -> Result<Vec<String>, DistributeError> {
    let mut missing = Vec::new();
    for tag in tags {
        match sink.tag(tag).await? {
            Some(d) if d == m.digest => on_event(&PushEvent::TagUnchanged {
                repository: sink.name(),
                tag: tag.clone(),
            }),
            Some(existing) => {
                return Err(DistributeError::TagConflict {
                    target: Box::new(sink.target().clone()),
                    repository: sink.name(),
                    tag: tag.clone(),
                    existing,
                    pushed: m.digest.clone(),
                });
            }
            None => missing.push(tag.clone()),
        }
    }
    Ok(missing)
}

/// `PUT`s the missing tags (already checked by [`check_tags`]), noting each
/// in `added` as soon as it exists, then reads the manifest back by the
/// first tag.
async fn finish(
    sink: &Sink,
    tags: &[String],
    missing: &[String],
    m: &BuiltManifest,
    on_event: OnEvent<'_>,
    added: &mut Vec<String>,
) -> Result<Digest, DistributeError> {
    for tag in missing {
        sink.put_manifest(tag, m).await?;
        added.push(tag.clone());
        on_event(&PushEvent::TagPushed {
            repository: sink.name(),
            tag: tag.clone(),
            digest: m.digest.clone(),
        });
    }
    let back = sink.read_back(&tags[0]).await?;
    if back != m.digest {
        return Err(DistributeError::DigestMismatch {
            repository: sink.name(),
            what: format!("the manifest read back by tag {}", tags[0]),
            expected: m.digest.clone(),
            reported: back,
        });
    }
    Ok(back)
}
