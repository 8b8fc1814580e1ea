//! `POST /v1/builds/{id}/approval`: only the approver role decides (reader,
//! trigger and admin get 403), the decision is appended once, and
//! `/v1/pipelines/{name}/approved` serves the build only once approved.

use std::sync::Arc;

use kiln::daemon::clock::SystemClock;
use kiln::record::{Record, Status, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADMIN, APPROVER, READER, TRIGGER, project, start};

/// Appends a tested, verified build of `web` that awaits approval.
fn awaiting(store: &mut Store) -> String {
    let a = store
        .allocate("web", &semver::Version::new(1, 0, 0))
        .unwrap();
    let digest = kiln::digest::Digest::of(a.id.0.as_bytes());
    let record: Record = serde_json::from_value(json!({
        "id": a.id, "pipeline": "web", "version": "1.0.0", "build": a.build.build,
        "status": "awaiting_approval", "buildKey": digest,
        "inputs": { "recipe": { "file": "recipes/web.yaml", "digest": digest }, "template": null, "components": [] },
        "parents": [], "imageConfig": digest,
        "targets": [{ "target": { "kind": "oci", "registry": "127.0.0.1:5000", "repository": "staging/web" },
            "registry": "127.0.0.1:5000", "repository": "staging/web", "tags": ["1.0.0-1"],
            "manifestDigest": digest, "verified": true }],
        "tests": { "passed": true, "checks": 1, "failed": 0, "durationMs": 1 },
        "timingsMs": {}, "kilnVersion": "test", "failure": null,
        "startedAt": "2025-01-01T00:00:00Z", "finishedAt": "2025-01-01T00:01:00Z"
    }))
    .unwrap();
    assert_eq!(record.status, Status::AwaitingApproval);
    store.append(&record).unwrap();
    a.build.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_approvers_decide_once_and_approved_follows_the_decision() {
    let d = start(project(&[("web", None)]), Arc::new(SystemClock), 0).await;
    let mut store = Store::open(kiln::record::db_path(d.dir.path())).unwrap();
    let first = awaiting(&mut store);
    let second = awaiting(&mut store);
    let approve = json!({ "decision": "approve", "note": "checked" });
    let path = |b: &str| format!("/v1/builds/{b}/approval");

    for token in [READER, TRIGGER, ADMIN] {
        let r = d.post_json(&path(&first), token, &approve).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{token}");
    }
    let unauthenticated = d.post(&path(&first), None).await;
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(store.verify().unwrap().events, 0, "nothing appended");
    let approved = d.get("/v1/pipelines/web/approved", Some(READER)).await;
    assert_eq!(
        approved.status(),
        StatusCode::NOT_FOUND,
        "awaiting is not approved"
    );

    let bad = d
        .post_json(&path(&first), APPROVER, &json!({ "decision": "maybe" }))
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let no_note = d
        .post_json(&path(&second), APPROVER, &json!({ "decision": "reject" }))
        .await;
    assert_eq!(no_note.status(), StatusCode::CONFLICT);

    let ok = d.post_json(&path(&first), APPROVER, &approve).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["decision"]["event"]["by"], "token:qa", "{body}");
    assert_eq!(body["decision"]["event"]["decision"], "approve", "{body}");
    let twice = d.post_json(&path(&first), APPROVER, &approve).await;
    assert_eq!(twice.status(), StatusCode::CONFLICT);
    let text = twice.text().await.unwrap();
    assert!(text.contains("already approved by `token:qa`"), "{text}");

    let reject = json!({ "decision": "reject", "note": "broken" });
    assert_eq!(
        d.post_json(&path(&second), APPROVER, &reject)
            .await
            .status(),
        StatusCode::OK
    );
    let unknown = d.post_json(&path("web:1.0.0-9"), APPROVER, &approve).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let served: Value = d
        .get("/v1/pipelines/web/approved", Some(READER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        served["record"]["record"]["build"], 1,
        "the approved one, not the rejected newer one: {served}"
    );
    assert_eq!(served["approval"]["event"]["note"], "checked", "{served}");
    let report = store.verify().unwrap();
    assert_eq!((report.events, report.first_bad), (2, None));
}
