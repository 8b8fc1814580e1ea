//! The resolve stage: parent image references (as written in recipes) →
//! digests pinned for one platform, recorded in `kiln.lock`.
//!
//! Inputs are plain lists, `&[(recipe name, Vec<ImageReference>)]`, so the
//! loader's types stay out of this module. Each distinct reference is
//! resolved once, with bounded concurrency. The lock is written only when
//! every reference resolved. Drift checks are HEAD first ([`refresh`]):
//! a locked reference whose `HEAD` digest equals the lock costs no `GET`.

mod check;
mod error;
mod lock;
mod many;
mod pin;
mod refresh;

use std::collections::BTreeMap;
use std::path::Path;

use futures_util::StreamExt;

pub use check::{CheckReport, Moved, check};
pub use error::{Failures, ResolveError, Unresolved};
pub use lock::{LOCK_FILE_NAME, LOCK_VERSION, LockEntry, LockFile};
pub use many::{CheckedMany, RecipeRefs, ResolvedMany, check_many, resolve_many};
pub use pin::{PinnedImage, pin};
pub use refresh::{Drift, Refreshed, refresh};

use crate::reference::ImageReference;
use crate::registry::{Platform, RegistryClient, RegistryError};

/// How to resolve.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// The target platform. Default `linux/amd64`.
    pub platform: Platform,
    /// At most this many references in flight. Default 8.
    pub concurrency: usize,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        ResolveOptions {
            platform: Platform::default(),
            concurrency: 8,
        }
    }
}

/// The pins of one recipe, in input order.
pub type ResolvedRecipe = (String, Vec<PinnedImage>);

/// Runs `op` once per distinct reference (keyed by its text), at most
/// `concurrency` at a time; results come back keyed by reference text.
pub(crate) async fn for_each_distinct<T, F, Fut>(
    recipes: &[(String, Vec<ImageReference>)],
    concurrency: usize,
    op: F,
) -> BTreeMap<String, (String, Result<T, RegistryError>)>
where
    F: Fn(ImageReference) -> Fut,
    Fut: std::future::Future<Output = Result<T, RegistryError>>,
{
    let mut distinct: BTreeMap<String, (String, ImageReference)> = BTreeMap::new();
    for (recipe, refs) in recipes {
        for r in refs {
            distinct
                .entry(r.to_string())
                .or_insert_with(|| (recipe.clone(), r.clone()));
        }
    }
    futures_util::stream::iter(distinct)
        .map(|(key, (recipe, r))| {
            let fut = op(r);
            async move { (key, (recipe, fut.await)) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// Pins every reference of every recipe. Fails with every failure listed if
/// any reference cannot be pinned.
pub async fn resolve_all(
    client: &RegistryClient,
    recipes: &[(String, Vec<ImageReference>)],
    options: &ResolveOptions,
) -> Result<Vec<ResolvedRecipe>, ResolveError> {
    let platform = &options.platform;
    let mut results = for_each_distinct(recipes, options.concurrency, |r| async move {
        pin(client, &r, platform).await
    })
    .await;
    let mut failures = Vec::new();
    let mut pinned = BTreeMap::new();
    for (key, (recipe, result)) in std::mem::take(&mut results) {
        match result {
            Ok(p) => {
                pinned.insert(key, p);
            }
            Err(source) => failures.push(Unresolved {
                recipe,
                reference: key,
                source,
            }),
        }
    }
    if !failures.is_empty() {
        return Err(ResolveError::Unresolved {
            failures: Failures(failures),
        });
    }
    Ok(recipes
        .iter()
        .map(|(recipe, refs)| {
            let images = refs
                .iter()
                .map(|r| pinned[&r.to_string()].clone())
                .collect();
            (recipe.clone(), images)
        })
        .collect())
}

/// Resolves every reference and rewrites the lock at `lock_path` (only the
/// given recipes' sections). Nothing is written unless every reference
/// resolved; an unchanged result leaves the file untouched.
pub async fn update(
    client: &RegistryClient,
    lock_path: &Path,
    recipes: &[(String, Vec<ImageReference>)],
    options: &ResolveOptions,
) -> Result<LockFile, ResolveError> {
    let mut lock = LockFile::load(lock_path)?;
    let before = lock.clone();
    let resolved = resolve_all(client, recipes, options).await?;
    lock.apply(&resolved, chrono::Utc::now());
    if lock != before || !lock_path.exists() {
        lock.save(lock_path)?;
    }
    Ok(lock)
}
