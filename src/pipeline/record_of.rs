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
    /// The findings gate's verdict.
    pub findings: Option<crate::findings::FindingsReport>,
    /// Signatures attached by the sign stage.
    pub signatures: Vec<super::sign_stage::Signed>,
    /// Attestation manifests attached, per target.
    pub attestations: Vec<super::sign_stage::Signed>,
    /// Stage timings.
    pub timings_ms: BTreeMap<String, u64>,
    /// The branch of a branch pipeline run.
    pub branch: Option<String>,
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
                signature: outputs
                    .signatures
                    .iter()
                    .find(|(h, r, _)| *h == t.registry_host && *r == t.repository)
                    .map(|(_, _, s)| format!("{}@{}", s.signature_ref, s.signature_manifest)),
                attestations: outputs
                    .attestations
                    .iter()
                    .find(|(h, r, _)| *h == t.registry_host && *r == t.repository)
                    .map(|(_, _, s)| format!("{}@{}", s.signature_ref, s.signature_manifest)),
            })
            .collect(),
        promote: recipe.distribute.promote.clone(),
        tests: outputs.tests.as_ref().map(|t| TestSummary {
            passed: t.passed,
            checks: t.checks.len() as u32,
            failed: t.checks.iter().filter(|c| !c.passed && !c.skipped).count() as u32,
            duration_ms: t.duration.as_millis() as u64,
        }),
        timings_ms: outputs.timings_ms.clone(),
        findings: outputs.findings.clone(),
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        failure,
        started_at,
        finished_at: Utc::now(),
        branch: outputs.branch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::Project;

    fn loaded(dir: &std::path::Path, tests: &str) -> LoadedRecipe {
        std::fs::create_dir_all(dir.join("recipes")).unwrap();
        std::fs::create_dir_all(dir.join("tests")).unwrap();
        std::fs::write(dir.join("tests/st.yaml"), tests).unwrap();
        std::fs::write(
            dir.join("recipes/r.yaml"),
            "name: r\nversion: 1.0.0\nparentImage: example.com/base:1\ntest:\n  structureTests:\n    - tests/st.yaml\n",
        )
        .unwrap();
        let project = Project::open(dir).unwrap();
        crate::load::load_recipe(&project, "r").unwrap_or_else(|d| panic!("{d}"))
    }

    /// The record holds the digest of the bytes that were loaded (and
    /// tested), even when the file changes or vanishes afterwards — never a
    /// re-read, never the hash of empty bytes.
    #[test]
    fn structure_test_digest_is_of_the_tested_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let text = "schemaVersion: 2.0.0\ncommandTests:\n  - name: t\n    command: \"true\"\n";
        let recipe = loaded(dir.path(), text);
        let st = dir.path().join("tests/st.yaml");
        std::fs::write(&st, "schemaVersion: 2.0.0\n# edited after the test\n").unwrap();
        let edited = inputs(&recipe);
        assert_eq!(
            edited.structure_tests[0].digest,
            Digest::of(text.as_bytes())
        );
        assert_eq!(edited.structure_tests[0].file, "tests/st.yaml");
        std::fs::remove_file(&st).unwrap();
        let gone = inputs(&recipe);
        assert_eq!(gone.structure_tests[0].digest, Digest::of(text.as_bytes()));
        assert_ne!(gone.structure_tests[0].digest, Digest::of(b""));
    }
}
