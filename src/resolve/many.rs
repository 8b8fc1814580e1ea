//! Many recipes at once (`kiln resolve`, `kiln resolve --check` over a whole
//! project): recipes are grouped by platform, each distinct (reference,
//! platform) costs one lookup however many recipes share it, lookups run
//! concurrently, and every failing reference is reported, not only the first.

use std::collections::BTreeMap;
use std::future::Future;

use futures_util::StreamExt;

use super::ResolvedRecipe;
use super::check::{CheckReport, Moved};
use super::error::Unresolved;
use super::lock::{LockEntry, LockFile};
use super::pin::{PinnedImage, pin};
use super::refresh::{Drift, Refreshed, refresh};
use crate::reference::ImageReference;
use crate::registry::{LookupScope, Platform, RegistryClient, RegistryError};

/// The parent references of one recipe, for its platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeRefs {
    /// The recipe name.
    pub recipe: String,
    /// The platform it builds for.
    pub platform: Platform,
    /// Its base images, parent first.
    pub references: Vec<ImageReference>,
}

/// What [`check_many`] found: the drift report, and every reference that
/// could not be checked (once per distinct reference and platform).
#[derive(Debug, Default)]
pub struct CheckedMany {
    /// Moved, unlocked and stale references.
    pub report: CheckReport,
    /// References the registries refused or could not answer.
    pub failures: Vec<Unresolved>,
}

/// What [`resolve_many`] pinned.
#[derive(Debug, Default)]
pub struct ResolvedMany {
    /// Recipes whose every reference was pinned, in input order.
    pub resolved: Vec<ResolvedRecipe>,
    /// References that could not be pinned (once per distinct reference
    /// and platform); their recipes are not in `resolved`.
    pub failures: Vec<Unresolved>,
}

/// Runs `op` once per distinct key, at most `concurrency` at a time.
async fn per_key<K, A, T, F, Fut>(jobs: BTreeMap<K, A>, concurrency: usize, op: F) -> BTreeMap<K, T>
where
    K: Ord + Clone,
    F: Fn(A) -> Fut,
    Fut: Future<Output = T>,
{
    futures_util::stream::iter(jobs)
        .map(|(key, arg)| {
            let fut = op(arg);
            async move { (key, fut.await) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

type Key = (String, String, Option<String>);

/// Compares `lock` with the registries for every recipe: one shared `HEAD`
/// per distinct locked (reference, platform) when nothing moved, `GET`s only
/// for references that moved (see [`refresh`]). Unlocked references are
/// reported without a request.
pub async fn check_many(
    client: &RegistryClient,
    lock: &LockFile,
    recipes: &[RecipeRefs],
    scope: &LookupScope,
    concurrency: usize,
) -> CheckedMany {
    let mut out = CheckedMany::default();
    let mut jobs: BTreeMap<Key, (String, ImageReference, Platform, LockEntry)> = BTreeMap::new();
    let mut wanted: Vec<(&RecipeRefs, &ImageReference, Key)> = Vec::new();
    for rr in recipes {
        let platform = rr.platform.to_string();
        for r in &rr.references {
            match lock.get(&rr.recipe, r).filter(|e| e.platform == platform) {
                Some(e) => {
                    let key = (r.to_string(), platform.clone(), Some(e.digest.to_string()));
                    jobs.entry(key.clone()).or_insert_with(|| {
                        (rr.recipe.clone(), r.clone(), rr.platform.clone(), e.clone())
                    });
                    wanted.push((rr, r, key));
                }
                None => out.report.unlocked.push((rr.recipe.clone(), r.to_string())),
            }
        }
        out.report.stale.extend(stale_entries(lock, rr));
    }
    let firsts: BTreeMap<Key, String> =
        jobs.iter().map(|(k, j)| (k.clone(), j.0.clone())).collect();
    let mut results = per_key(jobs, concurrency, |(_, r, platform, entry)| async move {
        refresh(client, &r, Some(&entry), &platform, scope).await
    })
    .await;
    for (rr, r, key) in wanted {
        match results.get(&key) {
            Some(Ok(Refreshed {
                image,
                drift: Drift::Moved { old },
            })) => out.report.moved.push(Moved {
                recipe: rr.recipe.clone(),
                reference: r.to_string(),
                old: old.clone(),
                new: image.digest().clone(),
                pinned: image.clone(),
            }),
            Some(Ok(_)) => {}
            Some(Err(_)) => {
                if let Some(Err(source)) = results.remove(&key) {
                    out.failures.push(Unresolved {
                        recipe: firsts[&key].clone(),
                        reference: key.0.clone(),
                        source,
                    });
                }
            }
            None => {} // failed; reported once already
        }
    }
    out.failures = once_each(out.failures);
    out
}

/// Drops a failure that repeats an earlier one (the same reference failing
/// the same way for another platform).
fn once_each(failures: Vec<Unresolved>) -> Vec<Unresolved> {
    let mut seen = std::collections::BTreeSet::new();
    failures
        .into_iter()
        .filter(|f| seen.insert((f.reference.clone(), f.source.to_string())))
        .collect()
}

/// Lock entries of a recipe for references it no longer uses.
fn stale_entries(lock: &LockFile, rr: &RecipeRefs) -> Vec<(String, String)> {
    let Some(section) = lock.recipes.get(&rr.recipe) else {
        return Vec::new();
    };
    section
        .keys()
        .filter(|key| !rr.references.iter().any(|r| &r.to_string() == *key))
        .map(|key| (rr.recipe.clone(), key.clone()))
        .collect()
}

/// Pins every reference of every recipe with `GET`-verified digests, once
/// per distinct (reference, platform), concurrently.
pub async fn resolve_many(
    client: &RegistryClient,
    recipes: &[RecipeRefs],
    concurrency: usize,
) -> ResolvedMany {
    let mut jobs: BTreeMap<(String, String), (String, ImageReference, Platform)> = BTreeMap::new();
    for rr in recipes {
        for r in &rr.references {
            jobs.entry((r.to_string(), rr.platform.to_string()))
                .or_insert_with(|| (rr.recipe.clone(), r.clone(), rr.platform.clone()));
        }
    }
    let firsts: BTreeMap<_, String> = jobs.iter().map(|(k, j)| (k.clone(), j.0.clone())).collect();
    let results: BTreeMap<(String, String), Result<PinnedImage, RegistryError>> =
        per_key(jobs, concurrency, |(_, r, platform)| async move {
            pin(client, &r, &platform).await
        })
        .await;
    let mut out = ResolvedMany::default();
    let mut pinned = BTreeMap::new();
    for (key, result) in results {
        match result {
            Ok(p) => {
                pinned.insert(key, p);
            }
            Err(source) => out.failures.push(Unresolved {
                recipe: firsts[&key].clone(),
                reference: key.0.clone(),
                source,
            }),
        }
    }
    for rr in recipes {
        let platform = rr.platform.to_string();
        let images: Option<Vec<PinnedImage>> = rr
            .references
            .iter()
            .map(|r| pinned.get(&(r.to_string(), platform.clone())).cloned())
            .collect();
        if let Some(images) = images {
            out.resolved.push((rr.recipe.clone(), images));
        }
    }
    out.failures = once_each(out.failures);
    out
}
