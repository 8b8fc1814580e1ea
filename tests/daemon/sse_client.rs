//! The daemon client's log reader (`kiln logs -f`, `kiln trigger --wait`):
//! SSE parsed by eventsource-stream, so a character split across chunks
//! arrives whole, and a dropped stream resumed with `Last-Event-ID` — against
//! a small server that splits and drops on purpose, and against the real
//! daemon's replay.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use kiln::daemon::client::Client;
use kiln::daemon::clock::SystemClock;
use serde_json::Value;

use crate::harness::{READER, TRIGGER, project, start};

/// One event's bytes, cut after `cut` bytes of its text (inside a
/// multi-byte character) into two chunks.
fn split_event(id: u32, text: &str, cut: usize) -> [Bytes; 2] {
    let block =
        format!("event: line\nid: {id}\ndata: {{\"stage\":\"build\",\"text\":\"{text}\"}}\n\n");
    let at = block.find(text).unwrap() + cut;
    assert!(
        !block.is_char_boundary(at),
        "the cut must split a character"
    );
    let bytes = block.into_bytes();
    [
        Bytes::copy_from_slice(&bytes[..at]),
        Bytes::copy_from_slice(&bytes[at..]),
    ]
}

/// Serves `/v1/runs/r1/log`: the first connection sends events 1 and 2 and
/// breaks; a resumed one (`Last-Event-ID: 2`) sends event 3 and the end.
async fn splitting_server(seen: Arc<Mutex<Vec<Option<String>>>>) -> String {
    let app = axum::Router::new().route(
        "/v1/runs/r1/log",
        axum::routing::get(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let last = headers
                    .get("last-event-id")
                    .map(|v| v.to_str().unwrap().to_string());
                seen.lock().unwrap().push(last.clone());
                let mut chunks: Vec<Result<Bytes, std::io::Error>> = Vec::new();
                if last.is_none() {
                    chunks.extend(split_event(1, "grüße 1", 3).map(Ok));
                    chunks.extend(split_event(2, "日本 2", 1).map(Ok));
                    chunks.push(Err(std::io::Error::other("connection dropped")));
                } else {
                    chunks.extend(split_event(3, "ß 3", 1).map(Ok));
                    chunks.push(Ok(Bytes::from_static(
                        b"event: end\ndata: {\"status\":\"passed\"}\n\n",
                    )));
                }
                let stream = futures_util::stream::iter(chunks).then(|c| async move {
                    // Separate writes, so the client gets separate chunks.
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    c
                });
                (
                    [("content-type", "text/event-stream")],
                    Body::from_stream(stream),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

use futures_util::StreamExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_characters_arrive_whole_and_a_dropped_stream_resumes_without_loss() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let url = splitting_server(seen.clone()).await;
    let client = Client::new(&url, None).unwrap();
    let mut texts = Vec::new();
    let end = client
        .log("r1", true, |name, data| {
            assert_eq!(name, "line");
            texts.push(data["text"].as_str().unwrap().to_string());
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(
        texts,
        ["grüße 1", "日本 2", "ß 3"],
        "no loss, no repeat, no U+FFFD"
    );
    assert_eq!(end.unwrap()["status"], "passed");
    assert_eq!(*seen.lock().unwrap(), [None, Some("2".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_resumes_a_log_after_last_event_id() {
    let d = start(project(&[("web", None)]), Arc::new(SystemClock), 0).await;
    let body: Value = d
        .post("/v1/pipelines/web/runs", Some(TRIGGER))
        .await
        .json()
        .await
        .unwrap();
    let id = body["run"]["id"].as_str().unwrap().to_string();
    d.wait_finished(&id).await;
    let client = Client::new(&d.url, Some(READER.into())).unwrap();
    let mut all = Vec::new();
    client
        .log(&id, true, |name, data| {
            all.push((name.to_string(), data["seq"].as_i64().unwrap()));
            ControlFlow::Continue(())
        })
        .await
        .unwrap()
        .expect("a finished run's log ends");
    assert_eq!(all.len(), 4, "{all:?}");
    // What a reconnecting reader that saw event 2 gets: the rest, once.
    let resumed = d
        .http
        .get(format!("{}/v1/runs/{id}/log", d.url))
        .bearer_auth(READER)
        .header("Last-Event-ID", all[1].1.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ids: Vec<i64> = resumed
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|v| v.parse().unwrap())
        .collect();
    let expected: Vec<i64> = all[2..].iter().map(|(_, seq)| *seq).collect();
    assert_eq!(ids, expected, "{resumed}");
    assert!(resumed.contains("event: end"), "{resumed}");
    d.finish().await;
}
