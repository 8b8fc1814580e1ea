//! Store tests on real SQLite files: allocation, append rules, reads that
//! re-check rows, key lookups and chain verification.

use rusqlite::Connection;

use super::fixture::passing;
use super::*;
use crate::digest::Digest;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(db_path(dir.path())).unwrap();
    (dir, store)
}

/// The store's file behind the backend-independent handle.
fn records(store: &Store) -> Records {
    Records::sqlite(store.path(), ChainKeys::default())
}

fn v(s: &str) -> semver::Version {
    s.parse().unwrap()
}

/// Direct access to the file, as a tamperer would have, triggers dropped.
fn tamper(store: &Store, sql: &str) {
    let conn = Connection::open(store.path()).unwrap();
    conn.execute_batch(&format!(
        "DROP TRIGGER records_no_update; DROP TRIGGER records_no_delete; {sql}"
    ))
    .unwrap();
}

#[test]
fn build_numbers_count_per_pipeline_and_version() {
    let (_d, mut s) = open();
    let n = |s: &mut Store, p, ver| s.allocate(p, &v(ver)).unwrap().build.build.0;
    assert_eq!(n(&mut s, "web", "1.0.0"), 1);
    assert_eq!(n(&mut s, "web", "1.0.0"), 2);
    assert_eq!(n(&mut s, "web", "1.1.0"), 1);
    assert_eq!(n(&mut s, "api", "1.0.0"), 1);
    assert_eq!(n(&mut s, "web", "1.0.0"), 3);
}

#[test]
fn append_requires_an_allocation_and_records_each_build_once() {
    let (_d, mut s) = open();
    let a = s.allocate("web", &v("1.0.0")).unwrap();
    let mut forged = passing(&a);
    forged.build = BuildNumber(7);
    assert!(matches!(
        s.append(&forged),
        Err(RecordError::NotAllocated { .. })
    ));
    let first = s.append(&passing(&a)).unwrap();
    assert_eq!(first.prev_hash, None);
    assert!(matches!(
        s.append(&passing(&a)),
        Err(RecordError::AlreadyRecorded { .. })
    ));
    let b = s.allocate("web", &v("1.0.0")).unwrap();
    let second = s.append(&passing(&b)).unwrap();
    assert_eq!(second.prev_hash, Some(first.hash));
}

#[test]
fn get_finds_records_by_id_and_by_build() {
    let (_d, mut s) = open();
    let a = s.allocate("web", &v("1.0.0")).unwrap();
    let stored = s.append(&passing(&a)).unwrap();
    let by_id = s.get(&Selector::Id(a.id.clone())).unwrap();
    let by_build = s.get(&"web:1.0.0-1".parse().unwrap()).unwrap();
    assert_eq!(by_id, stored);
    assert_eq!(by_build, stored);
    let missing = s.get(&"web:1.0.0-2".parse().unwrap()).unwrap_err();
    assert_eq!(missing.to_string(), "no record `web:1.0.0-2`");
}

#[tokio::test]
async fn a_status_column_edited_behind_the_json_is_refused_on_read() {
    let (_d, mut s) = open();
    let a = s.allocate("web", &v("1.0.0")).unwrap();
    let mut failed = passing(&a);
    failed.status = Status::Failed;
    s.append(&failed).unwrap();
    assert!(records(&s).approved("web").await.unwrap().is_none());
    tamper(&s, "UPDATE records SET status = 'passed'");
    let err = records(&s).approved("web").await.unwrap_err();
    assert!(
        matches!(
            err,
            RecordError::Tampered {
                problem: Problem::ColumnMismatch("status"),
                ..
            }
        ),
        "{err:?}"
    );
    let report = s.verify().unwrap();
    assert_eq!(
        report.first_bad.unwrap().problem,
        Problem::ColumnMismatch("status")
    );
}

#[test]
fn removing_a_record_from_the_middle_breaks_the_next_link() {
    let (_d, mut s) = open();
    for _ in 0..3 {
        let a = s.allocate("web", &v("1.0.0")).unwrap();
        s.append(&passing(&a)).unwrap();
    }
    let intact = s.verify().unwrap();
    assert_eq!((intact.checked, intact.first_bad.is_none()), (3, true));
    assert_eq!(
        intact.head,
        Some(s.list(None, Some(1)).unwrap()[0].hash.clone())
    );
    tamper(&s, "DELETE FROM records WHERE seq = 2");
    let report = s.verify().unwrap();
    let bad = report.first_bad.unwrap();
    assert_eq!((bad.seq, bad.build.as_str()), (3, "web:1.0.0-3"));
    assert!(matches!(bad.problem, Problem::BrokenLink { .. }));
    assert_eq!(report.checked, 1);
}

#[tokio::test]
async fn latest_passing_with_key_matches_only_approvable_records_with_that_key() {
    let (_d, mut s) = open();
    let key = Digest::of(b"key");
    let r = records(&s);
    assert!(
        r.latest_passing_with_key("web", &key)
            .await
            .unwrap()
            .is_none()
    );
    let a = s.allocate("web", &v("1.0.0")).unwrap();
    s.append(&passing(&a)).unwrap();
    let b = s.allocate("web", &v("1.0.0")).unwrap();
    let mut unverified = passing(&b);
    unverified.targets[0].verified = false;
    s.append(&unverified).unwrap();
    let found = r
        .latest_passing_with_key("web", &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.record.id, a.id);
    let other = Digest::of(b"other key");
    assert!(
        r.latest_passing_with_key("web", &other)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        r.latest_passing_with_key("api", &key)
            .await
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_database_from_a_newer_kiln_is_refused() {
    let (_d, s) = open();
    let path = s.path().to_path_buf();
    drop(s);
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(matches!(
        Store::open(&path),
        Err(RecordError::SchemaTooNew { found: 99, .. })
    ));
}
