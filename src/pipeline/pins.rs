//! The bridge between the loader and the resolve stage: a recipe's base
//! images → pins from `kiln.lock`, resolving (and locking) only what the lock
//! does not already hold.

use std::path::PathBuf;

use crate::load::LoadedRecipe;
use crate::project::Project;
use crate::registry::{Platform, RegistryClient};
use crate::render::Pins;
use crate::resolve::{self, LOCK_FILE_NAME, LockFile, PinnedImage, ResolveError, ResolveOptions};

/// The lock file of a project.
pub fn lock_path(project: &Project) -> PathBuf {
    project.root().join(LOCK_FILE_NAME)
}

/// `(recipe, base images)` as the resolve stage takes them.
pub fn references(recipe: &LoadedRecipe) -> (String, Vec<crate::reference::ImageReference>) {
    (recipe.name.clone(), recipe.base_images.clone())
}

/// Resolve options for a recipe (its platform).
pub fn options(recipe: &LoadedRecipe) -> ResolveOptions {
    ResolveOptions {
        platform: recipe.platform.parse::<Platform>().unwrap_or_default(),
        ..ResolveOptions::default()
    }
}

/// Pins from the lock alone; `None` when any base image is not locked (for
/// the recipe's platform).
pub fn from_lock(lock: &LockFile, recipe: &LoadedRecipe) -> Option<Pins> {
    let mut pins = Pins::default();
    for r in &recipe.base_images {
        let entry = lock.get(&recipe.name, r)?;
        if entry.platform != recipe.platform {
            return None;
        }
        pins.0.insert(r.clone(), entry.pinned.clone());
    }
    Some(pins)
}

/// Pins from the lock, or `None` when the lock is missing or incomplete.
pub fn locked(project: &Project, recipe: &LoadedRecipe) -> Option<Pins> {
    LockFile::load(&lock_path(project))
        .ok()
        .and_then(|l| from_lock(&l, recipe))
}

/// Pins for `recipe`: taken from the lock when it covers every base image,
/// else resolved from the registries and written to the lock (which changes
/// only when every reference resolved).
pub async fn ensure(
    client: &RegistryClient,
    project: &Project,
    recipe: &LoadedRecipe,
    update: bool,
) -> Result<(Pins, Vec<PinnedImage>), ResolveError> {
    let path = lock_path(project);
    if !update && let Some(pins) = locked(project, recipe) {
        let lock = LockFile::load(&path)?;
        let images = pinned_images(&lock, recipe);
        return Ok((pins, images));
    }
    let lock = resolve::update(client, &path, &[references(recipe)], &options(recipe)).await?;
    let pins = from_lock(&lock, recipe).unwrap_or_default();
    Ok((pins, pinned_images(&lock, recipe)))
}

fn pinned_images(lock: &LockFile, recipe: &LoadedRecipe) -> Vec<PinnedImage> {
    recipe
        .base_images
        .iter()
        .filter_map(|r| {
            let e = lock.get(&recipe.name, r)?;
            Some(PinnedImage {
                written: r.clone(),
                pinned: e.pinned.clone(),
                index_digest: e.index_digest.clone(),
                manifest_digest: e.manifest_digest.clone(),
                platform: e.platform.parse().unwrap_or_default(),
            })
        })
        .collect()
}
