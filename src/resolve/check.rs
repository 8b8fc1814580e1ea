//! Drift check: one `HEAD` per distinct locked reference; only references
//! whose digest moved are resolved again (to report the new pin).

use std::collections::BTreeMap;

use super::error::{Failures, ResolveError, Unresolved};
use super::lock::{LockEntry, LockFile};
use super::pin::{PinnedImage, pin};
use super::{ResolveOptions, for_each_distinct};
use crate::digest::Digest;
use crate::reference::ImageReference;
use crate::registry::RegistryClient;

/// A reference whose digest changed since it was locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The recipe.
    pub recipe: String,
    /// The reference as written.
    pub reference: String,
    /// The locked digest.
    pub old: Digest,
    /// The digest the reference points at now.
    pub new: Digest,
    /// The full new pin.
    pub pinned: PinnedImage,
}

/// What `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// References whose digest moved: old → new.
    pub moved: Vec<Moved>,
    /// (recipe, reference) pairs with no lock entry, or locked for another platform.
    pub unlocked: Vec<(String, String)>,
    /// (recipe, reference) pairs locked for a given recipe but no longer used by it.
    pub stale: Vec<(String, String)>,
}

impl CheckReport {
    /// Whether the lock matches the registry and the recipes exactly.
    pub fn is_clean(&self) -> bool {
        self.moved.is_empty() && self.unlocked.is_empty() && self.stale.is_empty()
    }
}

/// Compares `lock` with the registry for the given recipes. Costs one `HEAD`
/// per distinct locked reference when nothing moved.
pub async fn check(
    client: &RegistryClient,
    lock: &LockFile,
    recipes: &[(String, Vec<ImageReference>)],
    options: &ResolveOptions,
) -> Result<CheckReport, ResolveError> {
    let platform = options.platform.to_string();
    let mut report = CheckReport::default();
    // Only references with a usable entry get a HEAD.
    let mut to_head: Vec<(String, Vec<ImageReference>)> = Vec::new();
    for (recipe, refs) in recipes {
        let mut locked = Vec::new();
        for r in refs {
            match lock.get(recipe, r) {
                Some(e) if e.platform == platform => locked.push(r.clone()),
                _ => report.unlocked.push((recipe.clone(), r.to_string())),
            }
        }
        if let Some(section) = lock.recipes.get(recipe) {
            for key in section.keys() {
                if !refs.iter().any(|r| &r.to_string() == key) {
                    report.stale.push((recipe.clone(), key.clone()));
                }
            }
        }
        to_head.push((recipe.clone(), locked));
    }
    let mut heads = for_each_distinct(&to_head, options.concurrency, |r| async move {
        client.head_manifest(&r).await.map(|h| h.digest)
    })
    .await;
    let mut failures = Vec::new();
    // New pins of moved references, shared between recipes that use them.
    let mut repinned: BTreeMap<String, PinnedImage> = BTreeMap::new();
    for (recipe, refs) in &to_head {
        for r in refs {
            let key = r.to_string();
            let entry: &LockEntry = lock
                .get(recipe, r)
                .expect("only locked references were checked");
            let now = match heads.get(&key) {
                Some((_, Ok(now))) => now.clone(),
                Some((_, Err(_))) => {
                    if let Some((first, Err(source))) = heads.remove(&key) {
                        failures.push(Unresolved {
                            recipe: first,
                            reference: key,
                            source,
                        });
                    }
                    continue;
                }
                None => continue, // failed; reported under the first recipe
            };
            if now == entry.digest {
                continue;
            }
            let pinned = match repinned.get(&key) {
                Some(p) => p.clone(),
                None => match pin(client, r, &options.platform).await {
                    Ok(p) => repinned.entry(key.clone()).or_insert(p).clone(),
                    Err(source) => {
                        failures.push(Unresolved {
                            recipe: recipe.clone(),
                            reference: key,
                            source,
                        });
                        continue;
                    }
                },
            };
            report.moved.push(Moved {
                recipe: recipe.clone(),
                reference: key,
                old: entry.digest.clone(),
                new: pinned.digest().clone(),
                pinned,
            });
        }
    }
    if !failures.is_empty() {
        return Err(ResolveError::Unresolved {
            failures: Failures(failures),
        });
    }
    Ok(report)
}
