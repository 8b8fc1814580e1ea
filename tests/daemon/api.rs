//! The HTTP API with a gated test-double runner, in real (short) time.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt as _;
use kiln::daemon::clock::SystemClock;
use kiln::daemon::run::RunState;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{ADMIN, Daemon, READER, TRIGGER, is, project, start};

async fn daemon() -> Daemon {
    start(
        project(&[("web", None), ("api", None)]),
        Arc::new(SystemClock),
        0,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_gets_401_or_403_where_it_should() {
    let d = daemon().await;
    let reads = [
        "/v1/pipelines",
        "/v1/runs",
        "/v1/records",
        "/metrics",
        "/v1/runs/nope",
    ];
    for path in reads {
        let r = d.get(path, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"kiln\"");
        assert_eq!(
            d.get(path, Some("wrong")).await.status(),
            StatusCode::UNAUTHORIZED
        );
        for token in [READER, TRIGGER, ADMIN] {
            let s = d.get(path, Some(token)).await.status();
            assert!(
                s == StatusCode::OK || s == StatusCode::NOT_FOUND,
                "{path} {s}"
            );
        }
    }
    d.runner.gated.store(true, Ordering::SeqCst);
    let trigger = "/v1/pipelines/web/runs";
    assert_eq!(
        d.post(trigger, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        d.post(trigger, Some(READER)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        d.post(trigger, Some(TRIGGER)).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(d.post(trigger, Some(ADMIN)).await.status(), StatusCode::OK);
    for path in ["/v1/config/reload", "/v1/runs/nope/cancel"] {
        assert_eq!(d.post(path, None).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            d.post(path, Some(READER)).await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            d.post(path, Some(TRIGGER)).await.status(),
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        d.post("/v1/config/reload", Some(ADMIN)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        d.post("/v1/runs/nope/cancel", Some(ADMIN)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(d.get("/healthz", None).await.status(), StatusCode::OK);
    let spec: Value = d.get("/openapi.json", None).await.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused() {
    let d = daemon().await;
    let big = "x".repeat(20 * 1024);
    let r = d
        .http
        .get(format!("{}/healthz", d.url))
        .header("x-big", big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_triggers_join_the_active_run() {
    let d = daemon().await;
    d.runner.gated.store(true, Ordering::SeqCst);
    let first = d.post("/v1/pipelines/web/runs", Some(TRIGGER)).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let id = first["run"]["id"].as_str().unwrap().to_string();
    assert_eq!(first["joined"], false);
    d.wait_run(&id, is(RunState::Running)).await;
    for _ in 0..3 {
        let again = d.post("/v1/pipelines/web/runs", Some(TRIGGER)).await;
        assert_eq!(again.status(), StatusCode::OK);
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["joined"], true);
        assert_eq!(again["run"]["id"], id.as_str());
    }
    // Another pipeline is not blocked by it.
    let other: Value = d
        .post("/v1/pipelines/api/runs", Some(TRIGGER))
        .await
        .json()
        .await
        .unwrap();
    let other = other["run"]["id"].as_str().unwrap().to_string();
    assert_ne!(other, id);
    d.runner.release();
    d.runner.release();
    assert_eq!(d.wait_finished(&id).await.status, RunState::Passed);
    assert_eq!(d.wait_finished(&other).await.status, RunState::Passed);
    assert_eq!(d.runner.run_count(), 2);
    let run: Value = d
        .get(&format!("/v1/runs/{id}"), Some(READER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(run["status"], "passed");
    assert_eq!(run["stages"][0]["name"], "build");
    assert_eq!(run["stages"][0]["status"], "passed");
    assert!(run["stages"][0]["durationMs"].is_i64());
    let missing = d.post("/v1/pipelines/nope/runs", Some(TRIGGER)).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let metrics = d.get("/metrics", Some(READER)).await.text().await.unwrap();
    assert!(
        metrics.contains("kiln_runs_total{outcome=\"passed\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("kiln_stage_duration_seconds_count{stage=\"build\"}"));
    assert!(metrics.contains("kiln_queue_depth "));
    // This host is the queue's one node (a cluster's node on PostgreSQL).
    assert!(
        metrics.contains("kiln_node_runs{node=\"test-node\",state=\"passed\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("kiln_node_heartbeat_age_seconds{node=\"test-node\"} "));
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_streams_stored_then_live_lines_and_ends() {
    let d = daemon().await;
    d.runner.gated.store(true, Ordering::SeqCst);
    let body: Value = d
        .post("/v1/pipelines/web/runs", Some(TRIGGER))
        .await
        .json()
        .await
        .unwrap();
    let id = body["run"]["id"].as_str().unwrap().to_string();
    d.wait_run(&id, is(RunState::Running)).await;
    let resp = d.get(&format!("/v1/runs/{id}/log"), Some(READER)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("step 1 of build") {
        text.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    assert!(!text.contains("step 2"), "the run is still gated: {text}");
    d.runner.release();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let kinds: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        kinds,
        ["stage_started", "line", "line", "stage_passed", "end"],
        "{text}"
    );
    assert!(text.contains("step 2 of build"));
    assert!(text.contains("\"status\":\"passed\""));
    // A finished run replays the same log and ends at once.
    let replay = d
        .get(&format!("/v1/runs/{id}/log"), Some(READER))
        .await
        .text()
        .await
        .unwrap();
    let again: Vec<&str> = replay
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(again, kinds);
    let missing = d.get("/v1/runs/nope/log", Some(READER)).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cancels_and_shutdown_cancels_after_grace() {
    let d = daemon().await;
    d.runner.gated.store(true, Ordering::SeqCst);
    let body: Value = d
        .post("/v1/pipelines/web/runs", Some(TRIGGER))
        .await
        .json()
        .await
        .unwrap();
    let id = body["run"]["id"].as_str().unwrap().to_string();
    d.wait_run(&id, is(RunState::Running)).await;
    assert_eq!(
        d.post(&format!("/v1/runs/{id}/cancel"), Some(ADMIN))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(d.wait_finished(&id).await.status, RunState::Cancelled);
    assert_eq!(
        d.post(&format!("/v1/runs/{id}/cancel"), Some(ADMIN))
            .await
            .status(),
        StatusCode::CONFLICT
    );

    // graceSeconds is 0 here: shutdown cancels the running pipeline.
    let body: Value = d
        .post("/v1/pipelines/api/runs", Some(TRIGGER))
        .await
        .json()
        .await
        .unwrap();
    let id = body["run"]["id"].as_str().unwrap().to_string();
    d.wait_run(&id, is(RunState::Running)).await;
    let state = d.state.clone();
    let (_dir, schema) = d.stop().await;
    assert_eq!(
        state.queue().get(&id).await.unwrap().unwrap().status,
        RunState::Cancelled
    );
    if let Some(schema) = schema {
        schema.remove().await;
    }
}

/// Names with spaces, `&`, `=`, `/` or `?` reach the daemon as one value
/// (#13: `kiln runs "a b&limit=1"` was an HTTP 400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_encodes_names_in_paths_and_queries() {
    use kiln::daemon::client::{Client, ClientError};
    let d = daemon().await;
    let c = Client::new(&d.url, Some(TRIGGER.into())).unwrap();
    let runs = c.runs(Some("a b&limit=1"), 5).await.unwrap();
    assert_eq!(runs.as_array().map(Vec::len), Some(0), "{runs}");
    for name in ["a b", "web/runs", "web?x=1", "../v1/runs"] {
        let err = c.trigger(name, None).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Status { status: 404, .. }),
            "{name}: {err:?}"
        );
    }
    let err = c.approved("no such/pipeline").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Status { status: 404, .. }),
        "{err:?}"
    );

    // The command line, as a user types it.
    let url = d.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["runs", "a b&limit=1", "--json", "--server", &url])
            .env("KILN_TOKEN", READER)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// `POST /v1/pipelines/{name}/runs?branch=NAME` queues a branch run beside
/// the main pipeline's (each joins only its own active run), hands the
/// branch to the runner, and refuses an invalid name or an unknown query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_trigger_queues_beside_the_main_pipeline() {
    let d = start(project(&[("web", None)]), Arc::new(SystemClock), 0).await;
    d.runner.gated.store(true, Ordering::SeqCst);
    let branch = "/v1/pipelines/web/runs?branch=feature%2Flogin";
    let first = d.post(branch, Some(TRIGGER)).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["run"]["branch"], "feature/login", "{first}");
    let again: Value = d.post(branch, Some(TRIGGER)).await.json().await.unwrap();
    assert_eq!(again["joined"], true, "{again}");
    assert_eq!(again["run"]["id"], first["run"]["id"]);
    let main = d.post("/v1/pipelines/web/runs", Some(TRIGGER)).await;
    assert_eq!(
        main.status(),
        StatusCode::ACCEPTED,
        "not joined to the branch run"
    );
    let main: Value = main.json().await.unwrap();
    assert!(main["run"].get("branch").is_none(), "{main}");

    for bad in ["?branch=a..b", "?branch=", "?brnch=x"] {
        let r = d
            .post(&format!("/v1/pipelines/web/runs{bad}"), Some(TRIGGER))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    d.runner.release();
    d.runner.release();
    let id = first["run"]["id"].as_str().unwrap().to_string();
    d.wait_finished(&id).await;
    d.wait_finished(main["run"]["id"].as_str().unwrap()).await;
    let seen = d.runner.branches.lock().unwrap().clone();
    assert!(
        seen.contains(&(id, Some("feature/login".into()))),
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|(_, b)| b.is_none()).count(),
        1,
        "{seen:?}"
    );
}
