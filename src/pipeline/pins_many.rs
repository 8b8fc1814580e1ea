//! `kiln resolve` and `kiln resolve --check` over many recipes: recipes are
//! grouped by platform, each distinct reference costs one request (made
//! concurrently), and every failing reference is reported with the recipes
//! that use it. The CLI only prints what these return.

use std::collections::BTreeMap;

use super::pins::{LockProblem, entry, lock_path, options};
use crate::load::LoadedRecipe;
use crate::project::Project;
use crate::registry::{LookupScope, RegistryClient};
use crate::resolve::{self, CheckedMany, LockFile, PinnedImage, RecipeRefs, Unresolved};

/// Checks in flight at once for `--check` (each registry host is further
/// limited by the client's `lookup_concurrency`).
const CONCURRENCY: usize = 32;

/// The resolve stage's view of `recipes`.
pub fn targets(recipes: &[LoadedRecipe]) -> Vec<RecipeRefs> {
    recipes
        .iter()
        .map(|r| RecipeRefs {
            recipe: r.name.clone(),
            platform: options(r).platform,
            references: r.base_images.clone(),
        })
        .collect()
}

/// `kiln resolve --check`: the project's lock against the registries for
/// every recipe, HEAD first.
pub async fn check_all(
    client: &RegistryClient,
    project: &Project,
    recipes: &[LoadedRecipe],
) -> Result<CheckedMany, LockProblem> {
    let lock = LockFile::load(&lock_path(project))?;
    let scope = LookupScope::now();
    Ok(resolve::check_many(client, &lock, &targets(recipes), &scope, CONCURRENCY).await)
}

/// What [`ensure_all`] did.
#[derive(Debug, Default)]
pub struct EnsuredAll {
    /// The pins of every recipe that could be pinned, in input order.
    pub pinned: Vec<(String, Vec<PinnedImage>)>,
    /// Each recipe that could not be pinned, with its failing references.
    pub failed: Vec<(String, Vec<String>)>,
    /// Every failing reference, once per distinct reference and platform.
    pub failures: Vec<Unresolved>,
}

/// `kiln resolve [--update]`: pins what the lock lacks (everything with
/// `update`) with `GET`-verified digests. A recipe's lock section is
/// written only when all its references resolved; the others are reported.
pub async fn ensure_all(
    client: &RegistryClient,
    project: &Project,
    recipes: &[LoadedRecipe],
    update: bool,
) -> Result<EnsuredAll, LockProblem> {
    let _serialised = super::pins::LOCK_UPDATES.lock().await;
    let path = lock_path(project);
    let mut lock = LockFile::load(&path)?;
    let mut missing = Vec::new();
    for r in recipes {
        let mut refs = Vec::new();
        for b in &r.base_images {
            if update || entry(&lock, r, b)?.is_none() {
                refs.push(b.clone());
            }
        }
        missing.push(RecipeRefs {
            references: refs,
            ..targets(std::slice::from_ref(r)).remove(0)
        });
    }
    // Pins are not shared lookups, so the per-host bound applies to all of them.
    let bound = client.config().lookup_concurrency;
    let got = resolve::resolve_many(client, &missing, bound).await;
    let fresh: BTreeMap<&str, &Vec<PinnedImage>> =
        got.resolved.iter().map(|(n, i)| (n.as_str(), i)).collect();
    let failing: Vec<&str> = got.failures.iter().map(|f| f.reference.as_str()).collect();
    let before = lock.clone();
    let mut out = EnsuredAll::default();
    for r in recipes {
        let Some(new) = fresh.get(r.name.as_str()) else {
            let refs = r.base_images.iter().map(|b| b.to_string());
            let bad = refs.filter(|b| failing.contains(&b.as_str())).collect();
            out.failed.push((r.name.clone(), bad));
            continue;
        };
        let mut all: Vec<PinnedImage> = r
            .base_images
            .iter()
            .filter_map(|b| match new.iter().find(|p| p.written == *b) {
                Some(p) => Some(p.clone()),
                None => lock.get(&r.name, b).map(|e| e.image(b)),
            })
            .collect();
        all.sort_by_key(|p| r.base_images.iter().position(|b| *b == p.written));
        if !new.is_empty() {
            lock.apply(&[(r.name.clone(), all.clone())], chrono::Utc::now());
        }
        out.pinned.push((r.name.clone(), all));
    }
    if lock != before || (!path.exists() && !out.pinned.is_empty()) {
        lock.save(&path)?;
    }
    out.failures = got.failures;
    Ok(out)
}
