//! Makes every pipeline of a project "up to date" without building: locks
//! its parents, then appends one passing, verified record per pipeline with
//! the build key `Pipeline::freshness_in` computes now. Scale tests and
//! benchmarks use it so that a slot of N pipelines decides `up_to_date`
//! before any build.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::Utc;
use kiln::digest::Digest;
use kiln::load::{self, LoadedRecipe, Target};
use kiln::pipeline::{Freshness, Pipeline, pins_many};
use kiln::project::Project;
use kiln::record::{FileHash, Inputs, PushedTarget, Record, Status, Store, TestSummary};
use kiln::registry::{LookupScope, RegistryClient};

/// Locks and seeds every recipe of the project at `dir`; returns how many.
pub async fn up_to_date(dir: &Path) -> usize {
    let s = super::services();
    let project = Project::open(dir).unwrap();
    let registry = RegistryClient::with_defaults().unwrap();
    let names = load::list_recipes(&project);
    let recipes: Vec<_> = names
        .iter()
        .map(|n| load::load_recipe(&project, n).unwrap())
        .collect();
    let ensured = pins_many::ensure_all(&registry, &project, &recipes, false)
        .await
        .unwrap();
    assert!(ensured.failed.is_empty(), "{:?}", ensured.failures);
    let p = Pipeline {
        project: project.clone(),
        docker: s.docker().await,
        registry,
        signing: None,
        governance: Default::default(),
        records: kiln::record::Records::sqlite(
            kiln::record::db_path(dir),
            kiln::record::ChainKeys::default(),
        ),
    };
    let mut store = Store::open(kiln::record::db_path(dir)).unwrap();
    let scope = LookupScope::now();
    for r in &recipes {
        let Freshness::Stale { build_key, .. } = p.freshness_in(&r.name, &scope).await.unwrap()
        else {
            panic!("{} has a passing record already", r.name);
        };
        let a = store.allocate(&r.name, &r.version).unwrap();
        store
            .append(&passing(r, a, build_key, &s.registry))
            .unwrap();
    }
    recipes.len()
}

fn passing(r: &LoadedRecipe, a: kiln::record::Allocation, key: Digest, registry: &str) -> Record {
    let repository = format!("seeded/{}", r.name);
    Record {
        id: a.id.clone(),
        pipeline: r.name.clone(),
        version: r.version.clone(),
        build: a.build.build,
        status: Status::Passed,
        build_key: Some(key),
        inputs: Inputs {
            recipe: FileHash {
                file: r.file.display().to_string(),
                digest: r.digest.clone(),
            },
            template: None,
            components: Vec::new(),
            structure_tests: Vec::new(),
        },
        parents: Vec::new(),
        image_config: None,
        targets: vec![PushedTarget {
            target: Target::Oci {
                registry: registry.to_string(),
                repository: repository.clone(),
            },
            registry: registry.to_string(),
            repository,
            tags: vec!["1.0.0-1".into()],
            manifest_digest: Digest::of(r.name.as_bytes()),
            verified: true,
            signature: None,
            attestations: None,
        }],
        promote: Vec::new(),
        tests: Some(TestSummary {
            passed: true,
            checks: 1,
            failed: 0,
            duration_ms: 1,
        }),
        timings_ms: BTreeMap::new(),
        findings: None,
        kiln_version: "seeded by tests/support/seed.rs".into(),
        failure: None,
        started_at: Utc::now(),
        finished_at: Utc::now(),
        branch: None,
    }
}
