//! Builds the immutable [`Record`] of a run from the stages' outputs. File
//! digests are the ones the loader computed from the bytes it parsed (and the
//! test phase tested); nothing is read again here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::digest::Digest;
use crate::distribute::PushedImage;
use crate::load::LoadedRecipe;
use crate::record::{
    Allocation, ComponentHash, Failure, FileHash, Inputs, PinnedImage, PushedTarget, Record,
    Status, TestSummary,
};
use crate::resolve;
use crate::test_phase::TestReport;

/// What a run has produced so far.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Pinned parents.
    pub parents: Vec<resolve::PinnedImage>,
    /// Build key.
    pub build_key: Option<Digest>,
    /// Test report.
    pub tests: Option<TestReport>,
    /// Pushes.
    pub pushed: Option<PushedImage>,
    /// Stage timings.
    pub timings_ms: BTreeMap<String, u64>,
}

/// The recipe's input hashes.
pub fn inputs(recipe: &LoadedRecipe) -> Inputs {
    Inputs {
        recipe: FileHash {
            file: recipe.file.display().to_string(),
            digest: recipe.digest.clone(),
        },
        template: recipe.template.file.as_ref().map(|f| FileHash {
            file: f.display().to_string(),
            digest: Digest::of(recipe.template.text.as_bytes()),
        }),
        components: recipe
            .components
            .iter()
            .map(|c| ComponentHash {
                name: c.component.name.clone(),
                file: c.component.file.display().to_string(),
                digest: c.component.digest.clone(),
            })
            .collect(),
        structure_tests: recipe
            .test
            .structure_tests
            .iter()
            .map(|f| FileHash {
                file: f.shown.display().to_string(),
                digest: f.digest.clone(),
            })
            .collect(),
    }
}

/// Whether a passing record was made from exactly these inputs: the build
/// key covers the image; this covers what else decides a run's outcome (the
/// recipe's test and distribute settings, structure-test files).
pub fn same_run_inputs(record: &Record, recipe: &LoadedRecipe) -> bool {
    let now = inputs(recipe);
    record.inputs.recipe.digest == now.recipe.digest
        && record
            .inputs
            .structure_tests
            .iter()
            .map(|f| &f.digest)
            .eq(now.structure_tests.iter().map(|f| &f.digest))
}

/// The record of a finished run.
pub fn record(
    recipe: &LoadedRecipe,
    allocation: &Allocation,
    status: Status,
    outputs: &Outputs,
    failure: Option<Failure>,
    started_at: DateTime<Utc>,
) -> Record {
    Record {
        id: allocation.id.clone(),
        pipeline: recipe.name.clone(),
        version: recipe.version.clone(),
        build: allocation.build.build,
        status,
        build_key: outputs.build_key.clone(),
        inputs: inputs(recipe),
        parents: outputs
            .parents
            .iter()
            .map(|p| PinnedImage {
                reference: p.pinned.clone(),
                index_digest: p.index_digest.clone(),
                manifest_digest: p.manifest_digest.clone(),
                platform: Some(p.platform.to_string()),
            })
            .collect(),
        image_config: outputs.pushed.as_ref().map(|p| p.config_digest.clone()),
        targets: outputs
            .pushed
            .iter()
            .flat_map(|p| &p.targets)
            .map(|t| PushedTarget {
                target: t.target.clone(),
                registry: t.registry_host.clone(),
                repository: t.repository.clone(),
                tags: t.tags.clone(),
                manifest_digest: t.manifest_digest.clone(),
                verified: t.verified,
            })
            .collect(),
        tests: outputs.tests.as_ref().map(|t| TestSummary {
            passed: t.passed,
            checks: t.checks.len() as u32,
            failed: t.checks.iter().filter(|c| !c.passed && !c.skipped).count() as u32,
            duration_ms: t.duration.as_millis() as u64,
        }),
        timings_ms: outputs.timings_ms.clone(),
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        failure,
        started_at,
        finished_at: Utc::now(),
    }
}
