//! The record store on real SQLite files, and `kiln records` / `kiln approved`
//! run as a process against them.

use std::path::Path;

use assert_cmd::Command;
use rusqlite::Connection;

use kiln::digest::Digest;
use kiln::record::*;

#[path = "support/record_fixture.rs"]
mod record_fixture;

use record_fixture::{record, v1};

/// Allocates a build of `pipeline` and appends `record` after `edit`.
fn add(store: &mut Store, pipeline: &str, edit: impl FnOnce(&mut Record)) -> ChainedRecord {
    let alloc = store.allocate(pipeline, &v1()).unwrap();
    let mut r = record(&alloc);
    edit(&mut r);
    store.append(&r).unwrap()
}

/// The backend-independent queries (`Records`) on a `Store`'s file, with
/// its keys, run to completion: these tests read like the synchronous store
/// they drive.
trait Queries {
    fn records(&self) -> Records;

    fn approved(&self, pipeline: &str) -> Result<Option<Approved>, RecordError> {
        block_on(self.records().approved(pipeline))
    }

    fn decide(
        &mut self,
        build: &Selector,
        decision: Decision,
        by: &str,
        note: Option<String>,
    ) -> Result<(ChainedRecord, ChainedEvent), RecordError> {
        block_on(self.records().decide(build, decision, by, note))
    }
}

impl Queries for Store {
    fn records(&self) -> Records {
        Records::sqlite(self.path(), self.keys().clone())
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
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

/// A key pair outside the project and an operator config naming the key.
fn operator_key() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    ChainKeys,
) {
    let ops = tempfile::tempdir().unwrap();
    let (key, public) = kiln::sign::SigningKey::generate(ops.path()).unwrap();
    let config = ops.path().join("kiln.yaml");
    std::fs::write(&config, format!("signing:\n  key: {}\n", key.display())).unwrap();
    let signer = kiln::sign::SigningKey::load(&key).unwrap();
    (
        ops,
        config,
        public,
        ChainKeys::signing(std::sync::Arc::new(signer)),
    )
}

/// Rewrites the last record as a tamperer without the key would: triggers
/// dropped, a forged digest in the JSON, hash and chain link recomputed so
/// the chain alone is intact. Returns the forged digest.
fn forge_last_record(path: &Path) -> String {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("DROP TRIGGER records_no_update")
        .unwrap();
    let (seq, json, prev): (i64, String, Option<String>) = conn
        .query_row(
            "SELECT seq, json, prev_hash FROM records ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let mut record: Record = serde_json::from_str(&json).unwrap();
    let forged = Digest::of(b"attacker's image");
    for t in &mut record.targets {
        t.manifest_digest = forged.clone();
    }
    let json = canonical_json(&record).unwrap();
    let hash = link_hash(prev.map(|p| p.parse().unwrap()).as_ref(), &json);
    conn.execute(
        "UPDATE records SET json = ?1, hash = ?2 WHERE seq = ?3",
        rusqlite::params![json, hash.to_string(), seq],
    )
    .unwrap();
    forged.to_string()
}

#[test]
fn a_rewritten_last_record_fails_signed_verify_and_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let (_ops, config, public, keys) = operator_key();
    let mut store = Store::open(db_path(dir.path())).unwrap().with_keys(keys);
    add(&mut store, "web", |_| {});
    add(&mut store, "web", |_| {});
    let cfg = config.to_str().unwrap();
    let (code, stdout, shown) = kiln(dir.path(), &["--config", cfg, "records", "--verify"]);
    assert_eq!(code, 0, "{shown}");
    assert!(
        stdout.starts_with("ok: 2 records") && stdout.contains("every entry signed by key sha256:"),
        "{shown}"
    );
    let (code, before, shown) = kiln(dir.path(), &["--config", cfg, "approved", "web"]);
    assert_eq!(code, 0, "{shown}");

    let forged = forge_last_record(store.path());
    // Without a key the chain alone cannot tell, and the output says why.
    let (code, stdout, shown) = kiln(dir.path(), &["records", "--verify"]);
    assert_eq!(code, 0, "{shown}");
    assert!(
        stdout.contains("signatures not checked: no signing key configured"),
        "{shown}"
    );

    for key_args in [vec!["--config", cfg], vec![]] {
        let mut args = key_args.clone();
        args.extend(["records", "--verify"]);
        if key_args.is_empty() {
            args.extend(["--key", public.to_str().unwrap()]);
        }
        let (code, _, shown) = kiln(dir.path(), &args);
        assert_eq!(code, 1, "{shown}");
        assert!(
            shown.contains("record #2 `web:1.0.0-2`") && shown.contains("carries no signature"),
            "{shown}"
        );
        let mut args = key_args.clone();
        args.extend(["approved", "web"]);
        if key_args.is_empty() {
            args.extend(["--key", public.to_str().unwrap()]);
        }
        let (code, stdout, shown) = kiln(dir.path(), &args);
        assert_eq!(code, 1, "{shown}");
        assert!(!stdout.contains(&forged) && stdout.is_empty(), "{shown}");
        assert!(
            shown.contains("record #2") && shown.contains("altered"),
            "{shown}"
        );
    }
    assert!(!before.contains(&forged));

    // Copying a signature onto the forged hash does not help: it does not verify.
    let conn = Connection::open(store.path()).unwrap();
    conn.execute_batch(
        "INSERT INTO signatures (hash, key_id, signature) \
         SELECT r.hash, s.key_id, s.signature FROM records r, signatures s \
         WHERE r.seq = 2 AND s.hash = (SELECT hash FROM records WHERE seq = 1)",
    )
    .unwrap();
    let (code, _, shown) = kiln(dir.path(), &["--config", cfg, "records", "--verify"]);
    assert_eq!(code, 1, "{shown}");
    assert!(
        shown.contains("record #2") && shown.contains("does not verify"),
        "{shown}"
    );
}

#[test]
fn a_store_with_a_key_refuses_unsigned_records_and_other_keys() {
    let (dir, mut unsigned) = project();
    add(&mut unsigned, "web", |_| {});
    let (_ops, _config, _public, keys) = operator_key();
    let mut signed = Store::open(db_path(dir.path())).unwrap().with_keys(keys);
    let err = signed.approved("web").unwrap_err();
    assert!(
        matches!(
            &err,
            RecordError::Tampered {
                problem: Problem::Unsigned { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let (_ops2, _c2, _p2, other) = operator_key();
    add(&mut signed, "web", |_| {});
    let mut by_other = Store::open(db_path(dir.path())).unwrap().with_keys(other);
    let report = by_other.verify().unwrap();
    assert_eq!(
        report.first_bad.unwrap().seq,
        1,
        "the unsigned first record"
    );
    let err = by_other.list(None, Some(1)).unwrap_err();
    assert!(
        matches!(
            &err,
            RecordError::Tampered {
                problem: Problem::OtherKey { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let _ = &mut by_other;

    // Once the chain holds signed entries, a store without the key (kiln
    // run without --config) refuses to append instead of breaking it.
    assert!(matches!(
        unsigned.check_appendable(),
        Err(RecordError::SigningKeyRequired { .. })
    ));
    let alloc = unsigned.allocate("web", &v1()).unwrap();
    let err = unsigned.append(&record(&alloc)).unwrap_err();
    assert!(
        err.to_string().contains("no signing key is configured"),
        "{err}"
    );
    let report = unsigned.verify().unwrap();
    assert_eq!(report.checked, 2, "nothing appended");
}

#[test]
fn approval_events_join_the_chain_once_per_build_and_gate_approved() {
    let dir = tempfile::tempdir().unwrap();
    let (_ops, _config, _public, keys) = operator_key();
    let mut store = Store::open(db_path(dir.path())).unwrap().with_keys(keys);
    let passed = add(&mut store, "web", |_| {});
    let waiting = add(&mut store, "web", |r| r.status = Status::AwaitingApproval);
    let failed = add(&mut store, "web", |r| r.status = Status::Failed);
    // Awaiting approval is never approved by itself: the older passed build is served.
    let a = store.approved("web").unwrap().unwrap();
    assert_eq!(a.record.seq, passed.seq);

    let sel = |c: &ChainedRecord| Selector::Id(c.record.id.clone());
    for (c, expect) in [(&passed, "not awaiting approval"), (&failed, "`failed`")] {
        let e = store
            .decide(&sel(c), Decision::Approve, "local:ops", None)
            .unwrap_err();
        assert!(e.to_string().contains(expect), "{e}");
    }
    let e = store
        .decide(&sel(&waiting), Decision::Reject, "local:ops", None)
        .unwrap_err();
    assert!(e.to_string().contains("needs a note"), "{e}");
    assert_eq!(store.verify().unwrap().events, 0, "nothing appended");

    let (_, ev) = store
        .decide(
            &sel(&waiting),
            Decision::Approve,
            "local:ops",
            Some("LGTM".into()),
        )
        .unwrap();
    assert_eq!(ev.prev_hash, failed.hash, "linked to the chain head");
    let a = store.approved("web").unwrap().unwrap();
    assert_eq!(a.record.seq, waiting.seq);
    assert_eq!(a.approval.unwrap().event.by, "local:ops");
    let e = store
        .decide(
            &sel(&waiting),
            Decision::Reject,
            "token:x",
            Some("no".into()),
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("already approved by `local:ops`"),
        "{e}"
    );

    // A record after the event links to the event.
    let next = add(&mut store, "web", |r| r.status = Status::AwaitingApproval);
    assert_eq!(next.prev_hash, Some(ev.hash.clone()));
    store
        .decide(
            &sel(&next),
            Decision::Reject,
            "token:x",
            Some("broken".into()),
        )
        .unwrap();
    assert_eq!(
        store.approved("web").unwrap().unwrap().record.seq,
        waiting.seq
    );
    let report = store.verify().unwrap();
    assert!(report.first_bad.is_none(), "{report:?}");
    assert_eq!((report.checked, report.events, report.signed), (4, 2, 6));

    // A forged approval (triggers dropped, hash recomputed, no key) is caught.
    let conn = Connection::open(store.path()).unwrap();
    conn.execute_batch("DROP TRIGGER events_no_update").unwrap();
    let (json, prev): (String, String) = conn
        .query_row(
            "SELECT json, prev_hash FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let json = json.replace("\"reject\"", "\"approve\"");
    let hash = link_hash(Some(&prev.parse().unwrap()), &json);
    conn.execute(
        "UPDATE events SET json = ?1, hash = ?2 WHERE seq = 2",
        rusqlite::params![json, hash.to_string()],
    )
    .unwrap();
    let bad = store.verify().unwrap().first_bad.unwrap();
    assert_eq!((bad.kind.as_str(), bad.seq), ("approval", 2));
    assert!(matches!(bad.problem, Problem::Unsigned { .. }), "{bad:?}");
    assert!(
        store.approved("web").is_err(),
        "the forged approval is never served"
    );
}

/// A branch build is never decided on, even when its record says it
/// awaits approval (records written before branch runs stopped waiting).
#[test]
fn a_branch_build_cannot_be_approved() {
    let (_dir, mut store) = project();
    let on_branch = add(&mut store, "web", |r| {
        r.status = Status::AwaitingApproval;
        r.branch = Some("feature/x".into());
    });
    let e = store
        .decide(
            &Selector::Id(on_branch.record.id.clone()),
            Decision::Approve,
            "local:ops",
            None,
        )
        .unwrap_err();
    assert!(e.to_string().contains("branch `feature/x`"), "{e}");
    assert_eq!(store.verify().unwrap().events, 0, "nothing appended");
}
