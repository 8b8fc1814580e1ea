//! The cheap check behind scheduled refreshes: check the parents HEAD first
//! (one shared `HEAD` each when nothing moved, `GET`s only for a parent that
//! moved), compute the build key with the fresh pins, and look for a passing
//! record with that key. No build, no lock change.

use super::error::{PipelineError, StageError};
use super::events::Stage;
use super::pins;
use super::run::Pipeline;
use crate::build::{self, BuildRequest};
use crate::digest::Digest;
use crate::load;
use crate::record;
use crate::registry::LookupScope;
use crate::render::{self, Pins};
use crate::resolve::Drift;

/// Whether a pipeline needs a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// A passing, verified record has this build key.
    UpToDate {
        /// The key.
        build_key: Digest,
    },
    /// Something that goes into the image changed.
    Stale {
        /// The key a build would have.
        build_key: Digest,
        /// What changed, for logs: moved parents, or "inputs changed".
        reason: String,
    },
}

impl Pipeline {
    /// Checks `recipe` against the registries and the records, with
    /// lookups current as of now.
    pub async fn freshness(&self, recipe: &str) -> Result<Freshness, PipelineError> {
        self.freshness_in(recipe, &LookupScope::now()).await
    }

    /// Checks `recipe` with lookups shared within `scope` (the daemon passes
    /// the run's queue time): one `HEAD` per parent when nothing moved.
    pub async fn freshness_in(
        &self,
        recipe: &str,
        scope: &LookupScope,
    ) -> Result<Freshness, PipelineError> {
        let loaded = load::load_recipe(&self.project, recipe)?;
        let stage_err = |stage, e: StageError| PipelineError::Stage {
            stage,
            source: e,
            record: None,
        };
        let fresh = pins::refreshed(&self.registry, &self.project, &loaded, scope)
            .await
            .map_err(|e| stage_err(Stage::Resolve, e.into()))?;
        let mut fresh_pins = Pins::default();
        let mut moved = Vec::new();
        for f in &fresh {
            let (written, now) = (&f.image.written, f.image.digest());
            fresh_pins.0.insert(written.clone(), f.image.pinned.clone());
            match &f.drift {
                Drift::Unchanged => {}
                Drift::Moved { old } => moved.push(format!("{written} moved: {old} -> {now}")),
                Drift::Unlocked => moved.push(format!("{written} is not locked yet")),
            }
        }
        let mut rendered = render::render(&loaded, &fresh_pins);
        crate::s3::fetch_objects(&mut rendered)
            .await
            .map_err(|e| stage_err(Stage::Render, StageError::S3(Box::new(e))))?;
        let mut request = BuildRequest::for_recipe(&loaded);
        request.state_dir = Some(record::state_dir(self.project.root()));
        let key = tokio::task::spawn_blocking(move || build::prepare(&rendered, &request))
            .await
            .map_err(|source| {
                let what = "preparing the build context";
                stage_err(Stage::Render, StageError::Task { what, source })
            })?
            .map_err(|e| stage_err(Stage::Render, e.into()))?
            .build_key
            .digest;
        // A SQLite store that does not exist yet is not created: no record.
        let passing = self
            .records(None)
            .latest_with_key(&loaded.name, &key)
            .await
            .map_err(|e| stage_err(Stage::Record, e.into()))?
            .map(|(record, _)| record);
        let passing = passing.filter(|r| super::record_of::same_run_inputs(&r.record, &loaded));
        Ok(match passing {
            Some(_) => Freshness::UpToDate { build_key: key },
            None if !moved.is_empty() => Freshness::Stale {
                build_key: key,
                reason: moved.join("; "),
            },
            None => Freshness::Stale {
                build_key: key,
                reason: "inputs changed since the last passing build".into(),
            },
        })
    }
}
