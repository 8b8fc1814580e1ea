//! `POST /v1/builds/{id}/approval`: only the approver role decides (reader,
//! trigger and admin get 403), the decision is appended once, and
//! `/v1/pipelines/{name}/approved` serves the build only once approved.

use std::sync::Arc;

use kiln::daemon::clock::SystemClock;
use kiln::record::{Record, Records, Status};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADMIN, APPROVER, READER, TRIGGER, project, start};

/// Appends a tested, verified build of `web` that awaits approval.
async fn awaiting(store: &Records) -> String {
    let a = store
        .allocate("web", &semver::Version::new(1, 0, 0))
        .await
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
    store.append(&record).await.unwrap();
    a.build.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_approvers_decide_once_and_approved_follows_the_decision() {
    let d = start(project(&[("web", None)]), Arc::new(SystemClock), 0).await;
    let store = d.state.records();
    let first = awaiting(&store).await;
    let second = awaiting(&store).await;
    let approve = json!({ "decision": "approve", "note": "checked" });
    let path = |b: &str| format!("/v1/builds/{b}/approval");

    for token in [READER, TRIGGER, ADMIN] {
        let r = d.post_json(&path(&first), token, &approve).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{token}");
    }
    let unauthenticated = d.post(&path(&first), None).await;
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(store.verify().await.unwrap().events, 0, "nothing appended");
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
    let report = store.verify().await.unwrap();
    assert_eq!((report.events, report.first_bad), (2, None));
}

/// The status page lists the waiting build; only an approver sees the form,
/// and the form records the same decision as the API (a cookie session
/// needs the CSRF field, a bearer header does not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_approves_a_waiting_build_for_approvers_only() {
    let d = start(project(&[("web", None)]), Arc::new(SystemClock), 0).await;
    let store = d.state.records();
    let build = awaiting(&store).await;
    let form_marker = "/approval\">";
    let reader_page = d.get("/", Some(READER)).await.text().await.unwrap();
    assert!(reader_page.contains(&build), "{reader_page}");
    assert!(!reader_page.contains(form_marker), "{reader_page}");
    let approver_page = d.get("/", Some(APPROVER)).await.text().await.unwrap();
    assert!(approver_page.contains(form_marker), "{approver_page}");
    let action = approver_page
        .split("action=\"")
        .map(|s| s.split('"').next().unwrap_or_default())
        .find(|a| a.ends_with("/approval"))
        .expect("an approval form")
        .to_string();

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = "decision=approve&note=looks+right";
    let urlencoded = "application/x-www-form-urlencoded";
    let post = |token: &str| {
        http.post(format!("{}{action}", d.url))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, urlencoded)
            .body(form)
    };
    for token in [READER, TRIGGER, ADMIN] {
        let r = post(token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{token}");
    }
    let cookie = format!(
        "kiln_token={}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, APPROVER)
    );
    let no_csrf = http
        .post(format!("{}{action}", d.url))
        .header(reqwest::header::COOKIE, cookie)
        .header(reqwest::header::CONTENT_TYPE, urlencoded)
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        store.verify().await.unwrap().events,
        0,
        "nothing decided yet"
    );

    let ok = post(APPROVER).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let twice = post(APPROVER).send().await.unwrap();
    assert_eq!(twice.status(), StatusCode::CONFLICT);
    let unknown = http
        .post(format!("{}/ui/builds/web:1.0.0-9/approval", d.url))
        .bearer_auth(APPROVER)
        .header(reqwest::header::CONTENT_TYPE, urlencoded)
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let after = d.get("/", Some(APPROVER)).await.text().await.unwrap();
    assert!(after.contains("Nothing is waiting"), "{after}");
    let served: Value = d
        .get("/v1/pipelines/web/approved", Some(READER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(served["approval"]["event"]["by"], "token:qa", "{served}");
    assert_eq!(
        served["approval"]["event"]["note"], "looks right",
        "{served}"
    );
}
