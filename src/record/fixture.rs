//! Test-only sample records.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};

use super::model::*;
use super::store::Allocation;
use crate::digest::Digest;
use crate::load::Target;

/// A passing, verified record for `alloc`, pushed to one OCI registry.
pub fn passing(alloc: &Allocation) -> Record {
    let b = &alloc.build;
    Record {
        id: alloc.id.clone(),
        pipeline: b.pipeline.clone(),
        version: b.version.clone(),
        build: b.build,
        status: Status::Passed,
        build_key: Some(Digest::of(b"key")),
        inputs: Inputs {
            recipe: FileHash {
                file: format!("recipes/{}.yaml", b.pipeline),
                digest: Digest::of(b"recipe"),
            },
            template: Some(FileHash {
                file: "dockerfiles/web.Dockerfile".into(),
                digest: Digest::of(b"template"),
            }),
            components: vec![ComponentHash {
                name: "install-nginx".into(),
                file: "components/install-nginx.yaml".into(),
                digest: Digest::of(b"component"),
            }],
            structure_tests: Vec::new(),
        },
        parents: vec![PinnedImage {
            reference: "127.0.0.1:5000/kiln/base:1".parse().unwrap(),
            index_digest: Some(Digest::of(b"index")),
            manifest_digest: Digest::of(b"parent"),
            platform: Some("linux/amd64".into()),
        }],
        image_config: Some(Digest::of(b"config")),
        targets: vec![PushedTarget {
            target: Target::Oci {
                registry: "127.0.0.1:5000".into(),
                repository: format!("kiln/{}", b.pipeline),
            },
            registry: "127.0.0.1:5000".into(),
            repository: format!("kiln/{}", b.pipeline),
            tags: vec![format!("{}-{}", b.version, b.build)],
            manifest_digest: Digest::of(format!("manifest {b}").as_bytes()),
            verified: true,
            signature: None,
            attestations: None,
        }],
        promote: Vec::new(),
        tests: Some(TestSummary {
            passed: true,
            checks: 3,
            failed: 0,
            duration_ms: 1200,
        }),
        timings_ms: BTreeMap::from([("build".into(), 5000), ("test".into(), 1200)]),
        findings: None,
        kiln_version: "0.1.0".into(),
        failure: None,
        started_at: Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap(),
        finished_at: Utc.with_ymd_and_hms(2025, 1, 2, 3, 5, 6).unwrap(),
        branch: None,
    }
}
