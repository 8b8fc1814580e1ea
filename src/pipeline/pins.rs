//! The bridge between the loader and the resolve stage: a recipe's base
//! images → pins from `kiln.lock`, resolving (and locking) only what the lock
//! does not already hold, or everything on `--update`; HEAD-first refreshes
//! for scheduled checks and daemon runs; many recipes at once for
//! `kiln resolve`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::load::LoadedRecipe;
use crate::project::Project;
use crate::reference::ImageReference;
use crate::registry::{LookupScope, Platform, RegistryClient};
use crate::render::Pins;
use crate::resolve::{
    self, Drift, Failures, LOCK_FILE_NAME, LockEntry, LockFile, PinnedImage, Refreshed,
    ResolveError, ResolveOptions, Unresolved,
};

/// One read-modify-write of kiln.lock at a time in this process (the daemon
/// runs several recipes at once).
pub(super) static LOCK_UPDATES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The lock file of a project.
pub fn lock_path(project: &Project) -> PathBuf {
    project.root().join(LOCK_FILE_NAME)
}

/// `(recipe, base images)` as the resolve stage takes them.
pub fn references(recipe: &LoadedRecipe) -> (String, Vec<ImageReference>) {
    (recipe.name.clone(), recipe.base_images.clone())
}

/// Resolve options for a recipe (its platform).
pub fn options(recipe: &LoadedRecipe) -> ResolveOptions {
    ResolveOptions {
        platform: recipe.platform.parse::<Platform>().unwrap_or_default(),
        ..ResolveOptions::default()
    }
}

/// Why the lock cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LockProblem {
    /// The file could not be read or parsed.
    #[error(transparent)]
    Unreadable(#[from] ResolveError),
    /// An entry pins a different repository than its reference names.
    #[error(
        "kiln.lock pins `{written}` to `{pinned}`, which is not that repository at its manifest digest; the lock was edited by hand — run `kiln resolve --update`"
    )]
    Mismatch {
        /// The reference.
        written: String,
        /// What the lock says.
        pinned: String,
    },
}

/// The locked entry of `r`, checked: right platform, and `pinned` is `r`'s
/// own repository at the entry's manifest digest (a lock edited to point a
/// reference elsewhere is refused).
pub(super) fn entry<'a>(
    lock: &'a LockFile,
    recipe: &LoadedRecipe,
    r: &ImageReference,
) -> Result<Option<&'a LockEntry>, LockProblem> {
    let Some(e) = lock.get(&recipe.name, r) else {
        return Ok(None);
    };
    if e.platform != recipe.platform {
        return Ok(None);
    }
    if e.pinned != r.pinned(e.manifest_digest.clone()) {
        return Err(LockProblem::Mismatch {
            written: r.to_string(),
            pinned: e.pinned.to_string(),
        });
    }
    Ok(Some(e))
}

/// Pins from the lock alone; `None` when any base image is not locked (for
/// the recipe's platform).
pub fn from_lock(lock: &LockFile, recipe: &LoadedRecipe) -> Result<Option<Pins>, LockProblem> {
    let mut pins = Pins::default();
    for r in &recipe.base_images {
        match entry(lock, recipe, r)? {
            Some(e) => {
                pins.0.insert(r.clone(), e.pinned.clone());
            }
            None => return Ok(None),
        }
    }
    Ok(Some(pins))
}

/// Pins from the project's lock; `Ok(None)` when it lacks an entry.
pub fn locked(project: &Project, recipe: &LoadedRecipe) -> Result<Option<Pins>, LockProblem> {
    let lock = LockFile::load(&lock_path(project))?;
    from_lock(&lock, recipe)
}

/// Pins for `recipe`. Without `update`, locked references keep their pins
/// and only the missing ones are resolved; with it, every reference is
/// resolved again. The lock is written only when every reference resolved.
pub async fn ensure(
    client: &RegistryClient,
    project: &Project,
    recipe: &LoadedRecipe,
    update: bool,
) -> Result<(Pins, Vec<PinnedImage>), LockProblem> {
    let _serialised = LOCK_UPDATES.lock().await;
    let path = lock_path(project);
    let mut lock = LockFile::load(&path)?;
    let mut known = Vec::new();
    let mut missing = Vec::new();
    for r in &recipe.base_images {
        match entry(&lock, recipe, r)? {
            Some(e) if !update => known.push(e.image(r)),
            _ => missing.push(r.clone()),
        }
    }
    if !missing.is_empty() {
        let resolved =
            resolve::resolve_all(client, &[(recipe.name.clone(), missing)], &options(recipe))
                .await?;
        let before = lock.clone();
        let fresh = resolved.into_iter().flat_map(|(_, images)| images);
        let mut all: Vec<PinnedImage> = known.into_iter().chain(fresh).collect();
        // Keep the recipe's order (parent first).
        all.sort_by_key(|p| recipe.base_images.iter().position(|r| *r == p.written));
        lock.apply(&[(recipe.name.clone(), all)], chrono::Utc::now());
        if lock != before || !path.exists() {
            lock.save(&path)?;
        }
    }
    let pins = from_lock(&lock, recipe)?.unwrap_or_default();
    let images = recipe
        .base_images
        .iter()
        .filter_map(|r| lock.get(&recipe.name, r).map(|e| e.image(r)))
        .collect();
    Ok((pins, images))
}

/// The lock at `path`, parsed once per version of the file: every check of
/// a slot reads it, and it holds an entry per recipe. A save renames a new
/// file into place, so (length, mtime, birth time) changes with every write.
fn shared_lock(path: &Path) -> Result<Arc<LockFile>, ResolveError> {
    type Stamp = (u64, Option<SystemTime>, Option<SystemTime>);
    static LAST: Mutex<Option<(PathBuf, Stamp, Arc<LockFile>)>> = Mutex::new(None);
    let stamp = std::fs::metadata(path)
        .ok()
        .map(|m| (m.len(), m.modified().ok(), m.created().ok()));
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if let (Some(stamp), Some((p, s, lock))) = (stamp, last.as_ref())
        && p == path
        && *s == stamp
    {
        return Ok(lock.clone());
    }
    let lock = Arc::new(LockFile::load(path)?);
    if let Some(stamp) = stamp {
        *last = Some((path.to_path_buf(), stamp, lock.clone()));
    }
    Ok(lock)
}

/// Each base image of `recipe` checked against the lock, HEAD first
/// ([`resolve::refresh`]), concurrently. Nothing is written.
pub async fn refreshed(
    client: &RegistryClient,
    project: &Project,
    recipe: &LoadedRecipe,
    scope: &LookupScope,
) -> Result<Vec<Refreshed>, LockProblem> {
    let lock = shared_lock(&lock_path(project))?;
    let platform = options(recipe).platform;
    let mut entries = Vec::new();
    for r in &recipe.base_images {
        entries.push((r, entry(&lock, recipe, r)?));
    }
    let checks = entries
        .iter()
        .map(|(r, e)| resolve::refresh(client, r, *e, &platform, scope));
    let results = futures_util::future::join_all(checks).await;
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for (r, result) in recipe.base_images.iter().zip(results) {
        match result {
            Ok(x) => out.push(x),
            Err(source) => failures.push(Unresolved {
                recipe: recipe.name.clone(),
                reference: r.to_string(),
                source,
            }),
        }
    }
    if !failures.is_empty() {
        return Err(ResolveError::Unresolved {
            failures: Failures(failures),
        }
        .into());
    }
    Ok(out)
}

/// Pins for a daemon run, current as of `scope.since`: [`refreshed`], and
/// the recipe's lock section rewritten when a reference moved or was not
/// locked. Costs one shared `HEAD` per parent when nothing moved.
pub async fn refresh_lock(
    client: &RegistryClient,
    project: &Project,
    recipe: &LoadedRecipe,
    scope: &LookupScope,
) -> Result<(Pins, Vec<PinnedImage>), LockProblem> {
    let fresh = refreshed(client, project, recipe, scope).await?;
    let images: Vec<PinnedImage> = fresh.iter().map(|f| f.image.clone()).collect();
    if fresh.iter().any(|f| f.drift != Drift::Unchanged) {
        let _serialised = LOCK_UPDATES.lock().await;
        let path = lock_path(project);
        let mut lock = LockFile::load(&path)?;
        let before = lock.clone();
        lock.apply(&[(recipe.name.clone(), images.clone())], chrono::Utc::now());
        if lock != before {
            lock.save(&path)?;
        }
    }
    let mut pins = Pins::default();
    for i in &images {
        pins.0.insert(i.written.clone(), i.pinned.clone());
    }
    Ok((pins, images))
}

/// What [`render_locked`] does when `kiln.lock` lacks a recipe's parents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnpinned {
    /// Fail: a build never uses a moving tag (`kiln build`).
    Refuse,
    /// Render with the tags as written (`kiln render`, `kiln test`); the
    /// caller says so.
    KeepTags,
}

/// Why [`render_locked`] rendered nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockedRenderError {
    /// The recipe, its components or its template are invalid.
    #[error("{0}")]
    Invalid(crate::diagnostic::Diagnostics),
    /// The lock cannot be used.
    #[error(transparent)]
    Lock(#[from] LockProblem),
    /// The lock lacks the recipe's parents and [`WhenUnpinned::Refuse`].
    #[error(
        "`{recipe}` is not pinned in kiln.lock; run `kiln resolve {recipe}` first (a build never uses a moving tag)"
    )]
    Unpinned {
        /// The pipeline.
        recipe: String,
    },
}

/// A recipe rendered with the pins of `kiln.lock`, without resolving.
#[derive(Debug)]
pub struct LockedRender {
    /// The loaded recipe.
    pub recipe: LoadedRecipe,
    /// The render.
    pub rendered: crate::render::RenderedBuild,
    /// False when the lock lacked the parents and the `FROM` lines keep
    /// their tags ([`WhenUnpinned::KeepTags`]).
    pub pinned: bool,
}

/// Loads `recipe` (a name or path) and renders it with the lock's pins:
/// the commands that build or test without resolving.
pub fn render_locked(
    project: &Project,
    recipe: &str,
    when: WhenUnpinned,
) -> Result<LockedRender, LockedRenderError> {
    let recipe = crate::load::load_recipe(project, recipe).map_err(LockedRenderError::Invalid)?;
    let (pins, pinned) = match (locked(project, &recipe)?, when) {
        (Some(p), _) => (p, true),
        (None, WhenUnpinned::Refuse) => {
            let recipe = recipe.name;
            return Err(LockedRenderError::Unpinned { recipe });
        }
        (None, WhenUnpinned::KeepTags) => (Pins::default(), false),
    };
    let rendered = crate::render::render(&recipe, &pins);
    Ok(LockedRender {
        recipe,
        rendered,
        pinned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository's own example project (no kiln.lock is committed).
    fn example() -> Project {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(!root.join(LOCK_FILE_NAME).exists());
        Project::open(root).unwrap()
    }

    #[test]
    fn an_unpinned_recipe_is_refused_for_a_build() {
        let e = render_locked(&example(), "hello-web", WhenUnpinned::Refuse).unwrap_err();
        assert!(matches!(&e, LockedRenderError::Unpinned { recipe } if recipe == "hello-web"));
    }

    #[test]
    fn an_unpinned_recipe_keeps_its_tags_when_asked() {
        let r = render_locked(&example(), "hello-web", WhenUnpinned::KeepTags).unwrap();
        assert!(!r.pinned);
        assert_eq!(r.recipe.name, "hello-web");
    }

    #[test]
    fn an_invalid_recipe_is_its_diagnostics() {
        let e = render_locked(&example(), "no-such-recipe", WhenUnpinned::KeepTags).unwrap_err();
        assert!(matches!(e, LockedRenderError::Invalid(_)));
    }
}
