//! Which local image `kiln test RECIPE` tests when no `--image` is given: the
//! one whose build-key label equals the key of this project's rendered
//! inputs — the image `kiln build`/`kiln run` made from exactly this
//! checkout. Another checkout (branch, parameters) of the same recipe has
//! another key, so its image is never picked.

use bollard::Docker;

use crate::build::{self, BuildError, BuildRequest};
use crate::digest::Digest;
use crate::load::LoadedRecipe;
use crate::render::RenderedBuild;
use crate::test_phase::{self, TestPhaseError};

/// Why the image to test could not be found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestedImageError {
    /// The build key could not be computed (context scan).
    #[error("cannot compute the build key of recipe `{recipe}`")]
    Key {
        /// Recipe.
        recipe: String,
        /// Cause.
        #[source]
        source: BuildError,
    },
    /// No image carries the key, or the engine failed.
    #[error(transparent)]
    Find(#[from] TestPhaseError),
}

/// The build key of `recipe` as `kiln build` (without `--label`) and
/// `kiln run` compute it.
pub async fn build_key(
    recipe: &LoadedRecipe,
    rendered: &RenderedBuild,
) -> Result<Digest, TestedImageError> {
    let request = BuildRequest::for_recipe(recipe);
    let rendered = rendered.clone();
    tokio::task::spawn_blocking(move || build::prepare(&rendered, &request))
        .await
        .expect("context scan does not panic")
        .map(|p| p.build_key.digest)
        .map_err(|source| TestedImageError::Key {
            recipe: recipe.name.clone(),
            source,
        })
}

/// The id of the local image built from this project's inputs for `recipe`.
pub async fn built_image(
    docker: &Docker,
    recipe: &LoadedRecipe,
    rendered: &RenderedBuild,
) -> Result<String, TestedImageError> {
    let key = build_key(recipe, rendered).await?;
    Ok(test_phase::find_built_image(docker, &recipe.name, &key).await?)
}
