//! A sample record for the record-store tests (SQLite and PostgreSQL).

use std::collections::BTreeMap;

use chrono::{Duration, TimeZone, Utc};

use kiln::digest::Digest;
use kiln::load::Target;
use kiln::record::*;

/// Version 1.0.0.
pub fn v1() -> semver::Version {
    semver::Version::new(1, 0, 0)
}

/// A passing, verified record for `alloc`, pushed to a local registry and ECR.
pub fn record(alloc: &Allocation) -> Record {
    let b = &alloc.build;
    let start =
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap() + Duration::minutes(b.build.0.into());
    let manifest = Digest::of(format!("manifest {b}").as_bytes());
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
            template: None,
            components: vec![ComponentHash {
                name: "hello".into(),
                file: "components/hello.yaml".into(),
                digest: Digest::of(b"component"),
            }],
            structure_tests: Vec::new(),
        },
        parents: vec![PinnedImage {
            reference: "127.0.0.1:5000/kiln/base:1".parse().unwrap(),
            index_digest: None,
            manifest_digest: Digest::of(b"parent"),
            platform: None,
        }],
        image_config: Some(Digest::of(b"config")),
        targets: vec![
            PushedTarget {
                target: Target::Oci {
                    registry: "127.0.0.1:5000".into(),
                    repository: format!("kiln/{}", b.pipeline),
                },
                registry: "127.0.0.1:5000".into(),
                repository: format!("kiln/{}", b.pipeline),
                tags: vec![format!("{}-{}", b.version, b.build)],
                manifest_digest: manifest.clone(),
                verified: true,
                signature: None,
                attestations: None,
            },
            PushedTarget {
                target: Target::Ecr {
                    region: "eu-west-1".into(),
                    repository: b.pipeline.clone(),
                    registry_id: Some("123456789012".into()),
                },
                registry: "123456789012.dkr.ecr.eu-west-1.amazonaws.com".into(),
                repository: b.pipeline.clone(),
                tags: vec![format!("{}-{}", b.version, b.build)],
                manifest_digest: manifest,
                verified: true,
                signature: None,
                attestations: None,
            },
        ],
        promote: Vec::new(),
        tests: Some(TestSummary {
            passed: true,
            checks: 2,
            failed: 0,
            duration_ms: 900,
        }),
        timings_ms: BTreeMap::from([("build".into(), 4000)]),
        findings: None,
        kiln_version: env!("CARGO_PKG_VERSION").into(),
        failure: None,
        started_at: start,
        finished_at: start + Duration::seconds(30),
        branch: None,
    }
}
