//! Drift check: one `HEAD` per distinct locked reference; only references
//! whose digest moved are resolved again (to report the new pin).

use super::ResolveOptions;
use super::error::{Failures, ResolveError};
use super::lock::LockFile;
use super::many::{RecipeRefs, check_many};
use super::pin::PinnedImage;
use crate::digest::Digest;
use crate::reference::ImageReference;
use crate::registry::{LookupScope, RegistryClient};

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

/// Compares `lock` with the registry for the given recipes (all for
/// `options.platform`). Costs one `HEAD` per distinct locked reference when
/// nothing moved; fails with every reference that could not be checked.
pub async fn check(
    client: &RegistryClient,
    lock: &LockFile,
    recipes: &[(String, Vec<ImageReference>)],
    options: &ResolveOptions,
) -> Result<CheckReport, ResolveError> {
    let refs: Vec<RecipeRefs> = recipes
        .iter()
        .map(|(recipe, references)| RecipeRefs {
            recipe: recipe.clone(),
            platform: options.platform.clone(),
            references: references.clone(),
        })
        .collect();
    let scope = LookupScope::now();
    let checked = check_many(client, lock, &refs, &scope, options.concurrency).await;
    if !checked.failures.is_empty() {
        return Err(ResolveError::Unresolved {
            failures: Failures(checked.failures),
        });
    }
    Ok(checked.report)
}
