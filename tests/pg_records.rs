//! The record store on the real PostgreSQL (`record::pg`): concurrent
//! writers keep one chain, and the database itself refuses edits and
//! unlinked inserts. Each test works in a fresh schema.

mod support;

#[path = "support/record_fixture.rs"]
mod record_fixture;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln::digest::Digest;
use kiln::record::pg::PgStore;
use kiln::record::*;
use record_fixture::{record, v1};
use support::postgres::TestSchema;

/// How long the concurrent writers append (`KILN_PG_WRITERS_SECONDS`).
fn writers_duration() -> Duration {
    let secs = std::env::var("KILN_PG_WRITERS_SECONDS")
        .ok()
        .map(|s| s.parse().expect("KILN_PG_WRITERS_SECONDS is a number"))
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// A signing key in a fresh folder, as `ChainKeys`.
fn signing_keys() -> (tempfile::TempDir, ChainKeys) {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = kiln::sign::SigningKey::generate(dir.path()).unwrap();
    let key = kiln::sign::SigningKey::load(&key).unwrap();
    (dir, ChainKeys::signing(Arc::new(key)))
}

/// Allocates a build of `pipeline` at `version` and appends its record.
async fn add(store: &PgStore, pipeline: &str, version: &semver::Version) -> ChainedRecord {
    let alloc = store.allocate(pipeline, version).await.unwrap();
    store.append(&record(&alloc)).await.unwrap()
}

/// What one writer did: its allocations and how many entries it appended.
struct Written {
    builds: Vec<BuildId>,
    events: u64,
}

/// One node's writer: its own pool, appending records (and an approval
/// event after every fifth) until `until`.
async fn writer(url: String, keys: ChainKeys, node: usize, until: Instant) -> Written {
    let store = PgStore::connect(&url).await.unwrap().with_keys(keys);
    let versions = [v1(), semver::Version::new(1, 1, 0)];
    let mut out = Written {
        builds: Vec::new(),
        events: 0,
    };
    while Instant::now() < until {
        let pipeline = ["web", "api", "db"][fastrand::usize(..3)];
        let version = &versions[fastrand::usize(..2)];
        let chained = add(&store, pipeline, version).await;
        out.builds.push(chained.record.build_id());
        if out.builds.len().is_multiple_of(5) {
            let by = format!("node-{node}");
            let kind = EventKind::Approval {
                decision: Decision::Approve,
                note: None,
            };
            let label = chained.record.build_id().to_string();
            let event = Event::new(chained.record.id.clone(), label, by, kind);
            store.append_event(&event).await.unwrap();
            out.events += 1;
        }
    }
    out
}

/// Four writers on separate pools (as four nodes would) append for a
/// minute: the chain verifies, every entry has its own link (no fork, one
/// head), and build numbers are unique and gapless per pipeline and version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_concurrent_writers_keep_one_chain() {
    let schema = TestSchema::new().await;
    let (_dir, keys) = signing_keys();
    let duration = writers_duration();
    let started = Instant::now();
    let until = started + duration;
    let tasks: Vec<_> = (0..4)
        .map(|n| tokio::spawn(writer(schema.url.clone(), keys.clone(), n, until)))
        .collect();
    let mut written = Vec::new();
    for t in tasks {
        written.push(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let records: usize = written.iter().map(|w| w.builds.len()).sum();
    let events: u64 = written.iter().map(|w| w.events).sum();
    for (n, w) in written.iter().enumerate() {
        let rate = w.builds.len() as f64 / elapsed;
        println!(
            "writer {n}: {} records, {} events, {rate:.1} records/s",
            w.builds.len(),
            w.events
        );
    }
    println!(
        "total: {records} records + {events} events in {elapsed:.1} s = {:.1} appends/s",
        (records as f64 + events as f64) / elapsed
    );
    assert!(
        written.iter().all(|w| !w.builds.is_empty()),
        "a writer never appended"
    );

    let builds: Vec<String> = written
        .iter()
        .flat_map(|w| &w.builds)
        .map(|b| b.to_string())
        .collect();
    let unique: HashSet<&String> = builds.iter().collect();
    assert_eq!(
        unique.len(),
        builds.len(),
        "a build number was handed out twice"
    );
    assert_gapless(&builds);

    let store = PgStore::connect(&schema.url).await.unwrap().with_keys(keys);
    let report = store.verify().await.unwrap();
    assert_eq!(report.first_bad, None);
    assert_eq!(report.checked, records as u64);
    assert_eq!(report.events, events);
    assert_eq!(report.signed, records as u64 + events);
    assert_no_fork(&schema, report.head.unwrap()).await;
    schema.remove().await;
}

/// Per pipeline and version, the builds are exactly 1..=n.
fn assert_gapless(builds: &[String]) {
    let mut per: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for b in builds {
        let id: BuildId = b.parse().unwrap();
        let key = format!("{}:{}", id.pipeline, id.version);
        per.entry(key).or_default().push(id.build.0);
    }
    for (key, mut numbers) in per {
        numbers.sort_unstable();
        let expected: Vec<u32> = (1..=numbers.len() as u32).collect();
        assert_eq!(numbers, expected, "builds of {key}");
    }
}

/// Every entry's link is distinct, exactly one entry starts the chain and
/// exactly one (the stored head, the verified head) is nobody's link.
async fn assert_no_fork(schema: &TestSchema, head: Digest) {
    let db = schema.admin().await;
    let row = db
        .query_one(
            "WITH entries AS (SELECT prev_hash, hash FROM records
                              UNION ALL SELECT prev_hash, hash FROM events)
             SELECT count(*), count(DISTINCT prev_hash), count(DISTINCT hash),
                    count(*) FILTER (WHERE prev_hash IS NULL),
                    (SELECT array_agg(hash) FROM entries
                     WHERE hash NOT IN (SELECT prev_hash FROM entries WHERE prev_hash IS NOT NULL)),
                    (SELECT hash FROM chain_head)
             FROM entries",
            &[],
        )
        .await
        .unwrap();
    let (total, links, hashes, starts): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(links, total - 1, "two entries share a link: a fork");
    assert_eq!(hashes, total);
    assert_eq!(starts, 1);
    let tips: Vec<String> = row.get(4);
    assert_eq!(tips, vec![head.to_string()], "more than one head");
    assert_eq!(row.get::<_, String>(5), head.to_string());
}

/// The database message of a refused statement.
fn refusal(e: tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// UPDATE, DELETE and TRUNCATE are refused by the database on every chain
/// table, and the head cannot be moved by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_update_delete_and_truncate() {
    let schema = TestSchema::new().await;
    let store = PgStore::connect(&schema.url).await.unwrap();
    add(&store, "web", &v1()).await;
    let db = schema.admin().await;
    for table in ["records", "builds", "events", "signatures"] {
        for (op, sql) in [
            ("UPDATE", format!("UPDATE {table} SET hash = hash")),
            ("DELETE", format!("DELETE FROM {table}")),
            ("TRUNCATE", format!("TRUNCATE {table} CASCADE")),
        ] {
            let sql = sql.replace("builds SET hash = hash", "builds SET build = build");
            let e = db.batch_execute(&sql).await.unwrap_err();
            let expected = format!("kiln {table} are append-only: {op} is not allowed");
            assert_eq!(refusal(e), expected, "{sql}");
        }
    }
    for sql in [
        "UPDATE chain_head SET hash = NULL",
        "DELETE FROM chain_head",
        "TRUNCATE chain_head",
    ] {
        let e = db.batch_execute(sql).await.unwrap_err();
        assert!(
            refusal(e).contains("chain_head moves only when an entry is appended"),
            "{sql}"
        );
    }
    assert_eq!(store.verify().await.unwrap().checked, 1);
    schema.remove().await;
}

/// Rewrites the last record as a tamperer without the key would: triggers
/// dropped, a forged digest in the JSON, hash recomputed over the same
/// link. Returns the forged record's hash.
async fn forge_last_record(db: &tokio_postgres::Client) -> String {
    db.batch_execute("DROP TRIGGER records_append_only ON records")
        .await
        .unwrap();
    let row = db
        .query_one(
            "SELECT seq, json, prev_hash FROM records ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let (seq, json, prev): (i64, String, Option<String>) = (row.get(0), row.get(1), row.get(2));
    let mut record: Record = serde_json::from_str(&json).unwrap();
    for t in &mut record.targets {
        t.manifest_digest = Digest::of(b"attacker's image");
    }
    let json = canonical_json(&record).unwrap();
    let hash = link_hash(prev.map(|p| p.parse().unwrap()).as_ref(), &json).to_string();
    db.execute(
        "UPDATE records SET json = $1, hash = $2 WHERE seq = $3",
        &[&json, &hash, &seq],
    )
    .await
    .unwrap();
    hash
}

/// With the triggers dropped by the superuser and the last record rewritten
/// with a recomputed hash, the chain alone still verifies, but `verify` and
/// reads with the signing key report the record (no signature, then a
/// copied signature that does not verify).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_last_record_fails_signed_verify() {
    let schema = TestSchema::new().await;
    let (_dir, keys) = signing_keys();
    let store = PgStore::connect(&schema.url)
        .await
        .unwrap()
        .with_keys(keys.clone());
    add(&store, "web", &v1()).await;
    let last = add(&store, "web", &v1()).await;
    assert_eq!(store.verify().await.unwrap().first_bad, None);

    let db = schema.admin().await;
    let forged = forge_last_record(&db).await;
    let unkeyed = PgStore::connect(&schema.url).await.unwrap();
    let alloc = unkeyed.allocate("web", &v1()).await.unwrap();
    let refused = unkeyed.append(&record(&alloc)).await.unwrap_err();
    assert!(
        matches!(refused, RecordError::SigningKeyRequired { .. }),
        "{refused}"
    );
    assert_eq!(
        unkeyed.verify().await.unwrap().first_bad,
        None,
        "the chain alone cannot tell"
    );

    let bad = store.verify().await.unwrap().first_bad.expect("reported");
    assert_eq!((bad.seq, bad.build.as_str()), (2, "web:1.0.0-2"));
    assert!(
        matches!(bad.problem, Problem::Unsigned { .. }),
        "{:?}",
        bad.problem
    );
    let read = store
        .get(&Selector::Id(last.record.id.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(read, RecordError::Tampered { seq: 2, .. }),
        "{read}"
    );

    // A signature copied onto the forged hash does not verify for it.
    db.execute(
        "INSERT INTO signatures (hash, key_id, signature) \
         SELECT $1, key_id, signature FROM signatures WHERE hash = (SELECT hash FROM records WHERE seq = 1)",
        &[&forged],
    )
    .await
    .unwrap();
    let bad = store.verify().await.unwrap().first_bad.expect("reported");
    assert!(
        matches!(bad.problem, Problem::BadSignature { .. }),
        "{:?}",
        bad.problem
    );
    schema.remove().await;
}

/// Inserts that do not link to the head are refused by the insert
/// triggers: a made-up link, a fork off an older entry, a second genesis,
/// and an event that does not follow the head. So is an unallocated record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_that_does_not_link_to_the_head_is_refused() {
    let schema = TestSchema::new().await;
    let store = PgStore::connect(&schema.url).await.unwrap();
    let first = add(&store, "web", &v1()).await;
    add(&store, "web", &v1()).await;
    let alloc = store.allocate("web", &v1()).await.unwrap();
    let json = canonical_json(&record(&alloc)).unwrap();
    let db = schema.admin().await;
    let insert = "INSERT INTO records (seq, id, pipeline, version, build, status, finished_at, \
                  json, prev_hash, hash) VALUES (0, $1, 'web', '1.0.0', 3, 'passed', 'x', $2, $3, $4)";
    let made_up = Digest::of(b"no such entry");
    for prev in [Some(&made_up), Some(&first.hash), None] {
        let hash = link_hash(prev, &json).to_string();
        let prev = prev.map(Digest::to_string);
        let e = db
            .execute(insert, &[&alloc.id.0, &json, &prev, &hash])
            .await
            .unwrap_err();
        assert_eq!(
            refusal(e),
            "kiln record does not link to the last chain entry",
            "{prev:?}"
        );
    }
    let head = store.verify().await.unwrap().head.unwrap();
    let hash = link_hash(Some(&head), &json).to_string();
    let e = db
        .execute(
            insert,
            &[&"not-allocated", &json, &Some(head.to_string()), &hash],
        )
        .await
        .unwrap_err();
    assert_eq!(refusal(e), "kiln record was not allocated");

    let event = "INSERT INTO events (seq, id, kind, record_id, after_record, at, json, prev_hash, hash) \
                 VALUES (0, 'e1', 'promotion', $1, 0, 'x', '{}', $2, $3)";
    let hash = link_hash(Some(&first.hash), "{}").to_string();
    let e = db
        .execute(event, &[&first.record.id.0, &first.hash.to_string(), &hash])
        .await
        .unwrap_err();
    assert_eq!(
        refusal(e),
        "kiln event does not link to the last chain entry"
    );
    let report = store.verify().await.unwrap();
    assert_eq!((report.checked, report.first_bad), (2, None));
    schema.remove().await;
}

/// Nodes opening a fresh schema together migrate it once; a schema newer
/// than this build is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_a_newer_schema_is_refused() {
    use kiln::record::pg::schema::latest;
    let schema = TestSchema::new().await;
    let opens = (0..3).map(|_| PgStore::connect(&schema.url));
    for opened in futures_util::future::join_all(opens).await {
        opened.unwrap();
    }
    let db = schema.admin().await;
    let rows = db
        .query("SELECT version FROM schema_version ORDER BY version", &[])
        .await
        .unwrap();
    let versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=latest()).collect::<Vec<_>>());
    let newer = latest() + 1;
    db.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&newer],
    )
    .await
    .unwrap();
    let err = PgStore::connect(&schema.url).await.unwrap_err();
    assert!(
        matches!(err, RecordError::SchemaTooNew { found, .. } if found == newer),
        "{err}"
    );
    schema.remove().await;
}

/// Reads return what was appended: `list` newest first (per pipeline, with a
/// limit), `get` by id and by build, `events_of` a record's events; an
/// unknown build is `NotFound`; a signed chain refuses an unkeyed appender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_return_what_was_appended() {
    let schema = TestSchema::new().await;
    let (_dir, keys) = signing_keys();
    let store = PgStore::connect(&schema.url).await.unwrap().with_keys(keys);
    let web1 = add(&store, "web", &v1()).await;
    let api1 = add(&store, "api", &v1()).await;
    let web2 = add(&store, "web", &v1()).await;
    let seqs = |rs: Vec<ChainedRecord>| rs.iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.records(&Filter::newest(None, None)).await.unwrap()),
        [3, 2, 1]
    );
    assert_eq!(
        seqs(
            store
                .records(&Filter::newest(Some("web"), None))
                .await
                .unwrap()
        ),
        [3, 1]
    );
    assert_eq!(
        seqs(
            store
                .records(&Filter::newest(Some("web"), Some(1)))
                .await
                .unwrap()
        ),
        [3]
    );
    let by_id = store
        .get(&Selector::Id(api1.record.id.clone()))
        .await
        .unwrap();
    assert_eq!(by_id, api1);
    let by_build = store.get(&"web:1.0.0-2".parse().unwrap()).await.unwrap();
    assert_eq!(by_build, web2);
    let missing = store
        .get(&"web:1.0.0-9".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(missing, RecordError::NotFound { .. }), "{missing}");

    let kind = EventKind::Approval {
        decision: Decision::Approve,
        note: None,
    };
    let label = web1.record.build_id().to_string();
    let event = Event::new(web1.record.id.clone(), label, "alice".into(), kind);
    let appended = store.append_event(&event).await.unwrap();
    assert_eq!(appended.prev_hash, web2.hash);
    assert_eq!(
        store.events_of(&web1.record.id.0).await.unwrap(),
        [appended]
    );
    assert!(store.events_of(&api1.record.id.0).await.unwrap().is_empty());

    let unkeyed = PgStore::connect(&schema.url).await.unwrap();
    let refused = unkeyed.check_appendable().await.unwrap_err();
    assert!(
        matches!(refused, RecordError::SigningKeyRequired { .. }),
        "{refused}"
    );
    schema.remove().await;
}
