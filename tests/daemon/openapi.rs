//! The served OpenAPI document: valid by openapi-spec-validator (installed by
//! `scripts/services up`), naming every route the router serves, and each
//! route's real answers — with and without a token, and with every other
//! method — among its documented statuses and content types.

use std::path::PathBuf;
use std::sync::Arc;

use kiln::daemon::clock::SystemClock;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::{ADMIN, Daemon, TRIGGER, project, start};

/// Every (method, path) the router serves.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/openapi.json"),
    ("get", "/metrics"),
    ("get", "/v1/pipelines"),
    ("post", "/v1/pipelines/{name}/runs"),
    ("get", "/v1/pipelines/{name}/approved"),
    ("get", "/v1/runs"),
    ("get", "/v1/runs/{id}"),
    ("get", "/v1/runs/{id}/log"),
    ("post", "/v1/runs/{id}/cancel"),
    ("get", "/v1/records"),
    ("get", "/v1/nodes"),
    ("post", "/v1/config/reload"),
    ("post", "/v1/builds/{id}/approval"),
    ("get", "/"),
    ("get", "/ui/runs/{id}"),
    ("get", "/ui/records"),
    ("get", "/ui/login"),
    ("post", "/ui/login"),
    ("post", "/ui/logout"),
    ("post", "/ui/pipelines/{name}/trigger"),
    ("post", "/ui/runs/{id}/cancel"),
    ("post", "/ui/builds/{id}/approval"),
    ("get", "/ui/static/style.css"),
    ("get", "/ui/static/live.js"),
];

fn validator() -> PathBuf {
    let path = std::env::var_os("KILN_TEST_OPENAPI_VALIDATOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/services/venv/bin/openapi-spec-validator")
        });
    assert!(
        path.exists(),
        "{} is missing: run scripts/services up",
        path.display()
    );
    path
}

/// Calls `method path` (params filled in) with `token`, no redirects followed.
async fn call(
    d: &Daemon,
    method: &str,
    path: &str,
    run: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let url = format!(
        "{}{}",
        d.url,
        path.replace("{name}", "web").replace("{id}", run)
    );
    let url = if path.ends_with("/log") {
        format!("{url}?follow=false")
    } else {
        url
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = http.request(method.to_uppercase().parse::<Method>().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// Asserts `resp` is one of `op`'s documented answers.
fn documented(spec: &Value, op: &Value, what: &str, resp: &reqwest::Response) {
    let status = resp.status().as_u16().to_string();
    let mut answer = op["responses"][&status].clone();
    assert!(
        !answer.is_null(),
        "{what}: {status} is not documented: {}",
        op["responses"]
    );
    if let Some(r) = answer["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        answer = spec["components"]["responses"][name].clone();
    }
    let Some(content) = answer["content"].as_object() else {
        return;
    };
    let got = resp.headers()["content-type"].to_str().unwrap();
    assert!(
        content.keys().any(|k| got.starts_with(k.as_str())),
        "{what}: {status} answered {got}, documented {:?}",
        content.keys().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_valid_and_matches_every_route() {
    let d = start(project(&[("web", None)]), Arc::new(SystemClock), 0).await;
    let r: Value = d
        .post("/v1/pipelines/web/runs", Some(TRIGGER))
        .await
        .json()
        .await
        .unwrap();
    let run = r["run"]["id"].as_str().unwrap().to_string();
    d.wait_finished(&run).await;

    let served = d.get("/openapi.json", None).await;
    assert_eq!(served.status(), StatusCode::OK);
    let text = served.text().await.unwrap();
    let file = tempfile::NamedTempFile::with_suffix(".json").unwrap();
    std::fs::write(file.path(), &text).unwrap();
    let out = std::process::Command::new(validator())
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let spec: Value = serde_json::from_str(&text).unwrap();
    let paths = spec["paths"].as_object().unwrap();
    let mut listed: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    listed.sort();
    let mut routes: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routes.sort();
    assert_eq!(listed, routes, "the document and the router disagree");

    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let what = format!("{method} {path}");
            assert!(
                op["responses"].as_object().unwrap().contains_key("405"),
                "{what}: 405"
            );
            let resp = call(&d, method, path, &run, Some(ADMIN)).await;
            documented(&spec, op, &what, &resp);
            let anonymous = call(&d, method, path, &run, None).await;
            documented(&spec, op, &format!("{what} (no token)"), &anonymous);
        }
        for method in ["get", "post", "put", "delete", "patch"] {
            if ops.get(method).is_some() {
                continue;
            }
            let resp = call(&d, method, path, &run, Some(ADMIN)).await;
            assert_eq!(
                resp.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(
                resp.headers()["content-type"],
                "application/json",
                "{method} {path}"
            );
        }
    }
    d.finish().await;
}
