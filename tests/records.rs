//! The record store on real SQLite files, and `kiln records` / `kiln approved`
//! run as a process against them.

use std::collections::BTreeMap;
use std::path::Path;

use assert_cmd::Command;
use chrono::{Duration, TimeZone, Utc};
use rusqlite::Connection;

use kiln::digest::Digest;
use kiln::load::Target;
use kiln::record::*;

fn v1() -> semver::Version {
    semver::Version::new(1, 0, 0)
}

/// A passing, verified record for `alloc`, pushed to a local registry and ECR.
fn record(alloc: &Allocation) -> Record {
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
            },
        ],
        tests: Some(TestSummary {
            passed: true,
            checks: 2,
            failed: 0,
            duration_ms: 900,
        }),
        timings_ms: BTreeMap::from([("build".into(), 4000)]),
        kiln_version: env!("CARGO_PKG_VERSION").into(),
        failure: None,
        started_at: start,
        finished_at: start + Duration::seconds(30),
    }
}

/// Allocates a build of `pipeline` and appends `record` after `edit`.
fn add(store: &mut Store, pipeline: &str, edit: impl FnOnce(&mut Record)) -> ChainedRecord {
    let alloc = store.allocate(pipeline, &v1()).unwrap();
    let mut r = record(&alloc);
    edit(&mut r);
    store.append(&r).unwrap()
}

fn project() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(db_path(dir.path())).unwrap();
    (dir, store)
}

/// Runs `kiln --project ROOT ARGS…`; returns exit code, stdout, and a
/// description of the whole run for assertion messages.
fn kiln(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .arg("--project")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let shown = format!(
        "kiln {}\nexit {:?}\n--- stdout\n{stdout}--- stderr\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout, shown)
}

#[test]
fn appended_records_list_newest_first_per_pipeline_and_in_the_cli() {
    let (dir, mut store) = project();
    let a = add(&mut store, "web", |_| {});
    let b = add(&mut store, "api", |_| {});
    let c = add(&mut store, "web", |r| r.status = Status::Failed);
    let all: Vec<_> = store
        .list(None, None)
        .unwrap()
        .into_iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(all, [c.seq, b.seq, a.seq]);
    let web: Vec<_> = store.list(Some("web"), None).unwrap();
    assert_eq!(web, [c.clone(), a.clone()]);
    assert_eq!(store.list(Some("web"), Some(1)).unwrap(), [c]);

    let (code, stdout, shown) = kiln(dir.path(), &["records", "web"]);
    assert_eq!(code, 0, "{shown}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{shown}");
    assert!(lines[0].starts_with("BUILD"), "{shown}");
    assert!(lines[1].starts_with("web:1.0.0-2  failed"), "{shown}");
    assert!(
        lines[2].contains(a.record.targets[0].manifest_digest.short()),
        "{shown}"
    );

    let (code, stdout, shown) = kiln(dir.path(), &["records", "--json"]);
    assert_eq!(code, 0, "{shown}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let builds: Vec<_> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"]["build"].clone())
        .collect();
    assert_eq!(builds, [2, 1, 1], "{shown}");
    assert_eq!(json[0]["prevHash"], b.hash.to_string(), "{shown}");
}

#[test]
fn verify_with_a_pipeline_checks_the_whole_chain_and_lists_that_pipeline() {
    let (dir, mut store) = project();
    add(&mut store, "web", |_| {});
    add(&mut store, "api", |_| {});
    add(&mut store, "web", |r| r.status = Status::Failed);

    let (code, stdout, shown) = kiln(dir.path(), &["records", "--verify", "web"]);
    assert_eq!(code, 0, "{shown}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("ok: 3 records, chain intact"),
        "{shown}"
    );
    assert!(lines[1].starts_with("BUILD"), "{shown}");
    assert_eq!(lines.len(), 4, "two `web` records: {shown}");
    assert!(lines[2..].iter().all(|l| l.starts_with("web:")), "{shown}");

    // JSON stays parseable; the verdict goes to stderr.
    let (code, stdout, shown) = kiln(dir.path(), &["records", "web", "--verify", "--json"]);
    assert_eq!(code, 0, "{shown}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2, "{shown}");
    assert!(shown.contains("ok: 3 records"), "{shown}");

    // A break anywhere in the chain fails the pipeline's view too, and
    // nothing is listed.
    let conn = Connection::open(store.path()).unwrap();
    conn.execute_batch(
        "DROP TRIGGER records_no_update; \
         UPDATE records SET json = replace(json, '\"api\"', '\"apx\"') WHERE seq = 2;",
    )
    .unwrap();
    let (code, stdout, shown) = kiln(dir.path(), &["records", "--verify", "web"]);
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("failed verification"), "{shown}");
    assert!(!stdout.contains("BUILD"), "{shown}");
}

#[test]
fn the_schema_rejects_update_delete_and_unlinked_inserts() {
    let (_dir, mut store) = project();
    add(&mut store, "web", |_| {});
    let conn = Connection::open(store.path()).unwrap();
    for sql in [
        "UPDATE records SET status = 'failed'",
        "DELETE FROM records",
        "UPDATE builds SET build = 9",
        "DELETE FROM builds",
    ] {
        let err = conn.execute(sql, []).unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    conn.execute(
        "INSERT INTO builds (pipeline, version, build, id, allocated_at) VALUES ('web', '1.0.0', 5, 'x', 'now')",
        [],
    )
    .unwrap();
    let err = conn
        .execute(
            "INSERT INTO records (id, pipeline, version, build, status, finished_at, json, prev_hash, hash) \
             VALUES ('x', 'web', '1.0.0', 5, 'passed', 'now', '{}', NULL, 'h')",
            [],
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not link"), "{err}");
    assert_eq!(
        store.list(None, None).unwrap()[0].record.status,
        Status::Passed
    );
    assert!(store.verify().unwrap().first_bad.is_none());
}

#[test]
fn editing_a_record_behind_the_triggers_is_caught_by_verify_and_the_cli() {
    let (dir, mut store) = project();
    for _ in 0..3 {
        add(&mut store, "web", |_| {});
    }
    let (code, stdout, shown) = kiln(dir.path(), &["records", "--verify"]);
    assert_eq!(code, 0, "{shown}");
    assert!(stdout.starts_with("ok: 3 records"), "{shown}");

    // The tamperer swaps record 2's pushed digest in its JSON.
    let target = store.list(None, None).unwrap()[1].clone();
    let forged = Digest::of(b"attacker's image").to_string();
    let conn = Connection::open(store.path()).unwrap();
    conn.execute_batch("DROP TRIGGER records_no_update")
        .unwrap();
    let n = conn
        .execute(
            "UPDATE records SET json = replace(json, ?1, ?2) WHERE seq = ?3",
            rusqlite::params![
                target.record.targets[0].manifest_digest.to_string(),
                forged,
                target.seq
            ],
        )
        .unwrap();
    assert_eq!(n, 1);

    let report = store.verify().unwrap();
    let bad = report.first_bad.unwrap();
    assert_eq!((bad.seq, bad.build.as_str()), (target.seq, "web:1.0.0-2"));
    assert!(
        matches!(bad.problem, Problem::HashMismatch { .. }),
        "{:?}",
        bad.problem
    );
    assert_eq!(report.checked, 1);
    // Reads re-check every row they return, so the edit cannot be served.
    let err = store.approved("web").unwrap_err();
    assert!(
        matches!(err, RecordError::Tampered { seq, .. } if seq == target.seq),
        "{err:?}"
    );

    let (code, _, shown) = kiln(dir.path(), &["records", "--verify"]);
    assert_eq!(code, 1, "{shown}");
    assert!(
        shown.contains("`web:1.0.0-2`") && shown.contains("failed verification"),
        "{shown}"
    );

    // Recomputing the forged row's hash moves the break to the next link.
    let prev: String = conn
        .query_row(
            "SELECT prev_hash FROM records WHERE seq = ?1",
            [target.seq],
            |r| r.get(0),
        )
        .unwrap();
    let json: String = conn
        .query_row(
            "SELECT json FROM records WHERE seq = ?1",
            [target.seq],
            |r| r.get(0),
        )
        .unwrap();
    let rehashed = link_hash(Some(&prev.parse().unwrap()), &json).to_string();
    conn.execute(
        "UPDATE records SET hash = ?1 WHERE seq = ?2",
        rusqlite::params![rehashed, target.seq],
    )
    .unwrap();
    let bad = store.verify().unwrap().first_bad.unwrap();
    assert_eq!(bad.build, "web:1.0.0-3");
    assert!(
        matches!(bad.problem, Problem::BrokenLink { .. }),
        "{:?}",
        bad.problem
    );
    let (code, _, shown) = kiln(dir.path(), &["records", "--verify"]);
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("`web:1.0.0-3`"), "{shown}");
}

#[test]
fn concurrent_allocations_never_share_a_build_number() {
    let (_dir, store) = project();
    let path = store.path().to_path_buf();
    drop(store);
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut store = Store::open(&path).unwrap();
                (0..15)
                    .map(|_| store.allocate("web", &v1()).unwrap().build.build.0)
                    .collect::<Vec<u32>>()
            })
        })
        .collect();
    let mut numbers: Vec<u32> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=90).collect::<Vec<u32>>());
}

#[test]
fn concurrent_first_opens_of_a_fresh_file_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(dir.path());
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || Store::open(&path).map(|_| ()).map_err(|e| e.to_string()))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
}

#[test]
fn approved_is_the_newest_passing_verified_record() {
    let (dir, mut store) = project();
    let (code, _, shown) = kiln(dir.path(), &["approved", "web"]);
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("no approved build"), "{shown}");

    add(&mut store, "web", |_| {});
    let good = add(&mut store, "web", |_| {});
    add(&mut store, "web", |r| {
        r.status = Status::Failed;
        r.failure = Some(Failure {
            stage: "test".into(),
            message: "probe failed".into(),
        });
    });
    add(&mut store, "web", |r| r.targets[1].verified = false);
    add(&mut store, "web", |r| {
        r.tests.as_mut().unwrap().passed = false
    });
    add(&mut store, "api", |_| {});

    let approved = store.approved("web").unwrap().unwrap();
    assert_eq!(approved.record.seq, good.seq);
    let digest = good.record.targets[0].manifest_digest.to_string();
    assert_eq!(
        approved.references,
        [
            format!("127.0.0.1:5000/kiln/web@{digest}"),
            format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/web@{digest}"),
        ]
    );
    assert!(store.approved("nope").unwrap().is_none());

    let (code, stdout, shown) = kiln(dir.path(), &["approved", "web"]);
    assert_eq!(code, 0, "{shown}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        approved.references,
        "{shown}"
    );
    let (code, stdout, shown) = kiln(dir.path(), &["approved", "web", "--json"]);
    assert_eq!(code, 0, "{shown}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["record"]["record"]["build"], 2, "{shown}");
}

#[test]
fn provenance_is_an_in_toto_slsa_statement() {
    let (dir, mut store) = project();
    let rec = add(&mut store, "web", |_| {});
    let (code, stdout, shown) = kiln(dir.path(), &["records", "--provenance", "web:1.0.0-1"]);
    assert_eq!(code, 0, "{shown}");
    let s: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(s["predicateType"], "https://slsa.dev/provenance/v1");
    let hex = rec.record.targets[0].manifest_digest.hex();
    let subjects = s["subject"].as_array().unwrap();
    assert_eq!(subjects.len(), 2);
    assert_eq!(subjects[0]["name"], "127.0.0.1:5000/kiln/web");
    assert_eq!(
        subjects[1]["name"],
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web"
    );
    assert!(subjects.iter().all(|x| x["digest"]["sha256"] == hex));
    let def = &s["predicate"]["buildDefinition"];
    assert!(
        def["buildType"]
            .as_str()
            .unwrap()
            .starts_with("https://kiln.dev/")
    );
    assert_eq!(def["externalParameters"]["recipe"]["name"], "web");
    assert_eq!(def["externalParameters"]["recipe"]["version"], "1.0.0");
    assert_eq!(
        def["externalParameters"]["recipe"]["digest"]["sha256"],
        Digest::of(b"recipe").hex()
    );
    let deps = def["resolvedDependencies"].as_array().unwrap();
    assert_eq!(deps[0]["digest"]["sha256"], Digest::of(b"parent").hex());
    assert_eq!(deps[1]["name"], "component:hello");
    assert_eq!(deps[1]["digest"]["sha256"], Digest::of(b"component").hex());
    let run = &s["predicate"]["runDetails"];
    assert!(
        run["builder"]["id"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    assert_eq!(run["metadata"]["invocationId"], rec.record.id.to_string());
    assert_eq!(run["metadata"]["startedOn"], "2025-03-01T12:01:00Z");
    assert_eq!(run["metadata"]["finishedOn"], "2025-03-01T12:01:30Z");

    let (code, by_id, shown) = kiln(dir.path(), &["records", "--provenance", &rec.record.id.0]);
    assert_eq!((code, by_id), (0, stdout), "{shown}");
    let (code, _, shown) = kiln(dir.path(), &["records", "--provenance", "web:1.0.0-9"]);
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("no record `web:1.0.0-9`"), "{shown}");
    let (code, _, shown) = kiln(dir.path(), &["records", "--provenance", "web:1.0-1"]);
    assert_eq!(code, 2, "{shown}");
}
