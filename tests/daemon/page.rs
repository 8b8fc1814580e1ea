//! The status page against the in-process daemon: signing in, cookies and
//! CSRF over plain HTTP, then the real thing in headless Chromium — the
//! pipeline with its approved digest, and a run page whose log shows a line
//! that arrived after the page loaded. Screenshots go to target/status-page/.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use kiln::daemon::clock::SystemClock;
use kiln::daemon::run::RunState;
use kiln::digest::Digest;
use kiln::load::Target;
use kiln::record::{FileHash, Inputs, PushedTarget, Record, Records, Status, TestSummary};
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::harness::{ADMIN, Daemon, READER, TRIGGER, is, project, start};

const NIGHTLY: &str = "schedule:\n  cron: \"0 3 * * *\"\n  timezone: UTC\n";

/// A daemon over `web` (scheduled) and `api`, with one approved build of
/// `web`; returns it and the approved reference.
async fn daemon() -> (Daemon, String) {
    let dir = project(&[("web", Some(NIGHTLY)), ("api", None)]);
    let d = start(dir, Arc::new(SystemClock), 0).await;
    let reference = approve(&d.state.records(), "web").await;
    (d, reference)
}

/// Appends a passing, verified record of `pipeline`; returns its reference.
async fn approve(store: &Records, pipeline: &str) -> String {
    let version = semver::Version::new(1, 0, 0);
    let a = store.allocate(pipeline, &version).await.unwrap();
    let target = PushedTarget {
        target: Target::Oci {
            registry: "127.0.0.1:5000".into(),
            repository: format!("page/{pipeline}"),
        },
        registry: "127.0.0.1:5000".into(),
        repository: format!("page/{pipeline}"),
        tags: vec!["1.0.0-1".into()],
        manifest_digest: Digest::of(pipeline.as_bytes()),
        verified: true,
        signature: None,
        attestations: None,
    };
    let reference = target.pinned_reference();
    let record = Record {
        id: a.id.clone(),
        pipeline: pipeline.into(),
        version,
        build: a.build.build,
        status: Status::Passed,
        build_key: Some(Digest::of(b"key")),
        inputs: Inputs {
            recipe: FileHash {
                file: format!("recipes/{pipeline}.yaml"),
                digest: Digest::of(b"recipe"),
            },
            template: None,
            components: Vec::new(),
            structure_tests: Vec::new(),
        },
        parents: Vec::new(),
        image_config: None,
        targets: vec![target],
        promote: Vec::new(),
        findings: None,
        branch: None,
        tests: Some(TestSummary {
            passed: true,
            checks: 1,
            failed: 0,
            duration_ms: 1,
        }),
        timings_ms: BTreeMap::new(),
        kiln_version: "tests/daemon/page.rs".into(),
        failure: None,
        started_at: Utc::now(),
        finished_at: Utc::now(),
    };
    store.append(&record).await.unwrap();
    reference
}

fn screenshot(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/status-page/{name}.png"))
}

/// `name=value` of the `Set-Cookie` headers of `resp`.
fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// URL-encoded form bodies (reqwest's `form` feature is not enabled).
trait FormBody {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
            .finish();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_cookies_and_csrf_over_http() {
    let (d, reference) = daemon().await;
    let http = no_redirects();
    // Anonymous: sent to the login form, which sets the CSRF cookie.
    let r = http.get(format!("{}/", d.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/login?next=%2F");
    let r = http
        .get(format!("{}/ui/login", d.url))
        .send()
        .await
        .unwrap();
    let csrf_cookie = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("kiln_csrf="))
        .unwrap();
    assert!(csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict"));
    let csrf = csrf_cookie["kiln_csrf=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    // A login without the CSRF cookie is refused; with it, the token cookie is set.
    let form = [("token", READER), ("csrf", &csrf), ("next", "/ui/records")];
    let r = http
        .post(format!("{}/ui/login", d.url))
        .form_body(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let jar = format!("kiln_csrf={csrf}");
    let bad = [("token", "wrong"), ("csrf", &csrf), ("next", "/")];
    let r = http
        .post(format!("{}/ui/login", d.url))
        .header("cookie", &jar)
        .form_body(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        !r.text().await.unwrap().contains("wrong"),
        "the page echoed the token"
    );
    let r = http
        .post(format!("{}/ui/login", d.url))
        .header("cookie", &jar)
        .form_body(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/records");
    let token_cookie = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("kiln_token="))
        .unwrap();
    assert!(token_cookie.contains("HttpOnly") && token_cookie.contains("SameSite=Strict"));
    assert!(
        !token_cookie.contains("Secure"),
        "plain HTTP on loopback: no Secure"
    );
    let session = format!("{jar}; {}", token_cookie.split(';').next().unwrap());
    // The cookie reads pages and the API's GETs, never shows the token.
    let page = http
        .get(format!("{}/", d.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    // minijinja's HTML escaping writes `/` as `&#x2f;`.
    let escaped = reference.replace('/', "&#x2f;");
    assert!(
        html.contains(&escaped) && html.contains("0 3 * * *"),
        "{html}"
    );
    assert!(!html.contains(READER));
    let api = http
        .get(format!("{}/v1/runs", d.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::OK);
    // A reader cannot trigger; the API's POSTs ignore the cookie.
    let trigger = format!("{}/ui/pipelines/web/trigger", d.url);
    let r = http
        .post(&trigger)
        .header("cookie", &session)
        .form_body(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(format!("{}/v1/pipelines/web/runs", d.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A trigger token by cookie needs the CSRF field; by header it does not.
    let cookie = format!("{jar}; kiln_token={}", base64_url(TRIGGER));
    let r = http
        .post(&trigger)
        .header("cookie", &cookie)
        .form_body(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(&trigger)
        .header("cookie", &cookie)
        .header("sec-fetch-site", "cross-site")
        .form_body(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    d.runner.gated.store(true, Ordering::SeqCst);
    let r = http
        .post(&trigger)
        .header("cookie", &cookie)
        .form_body(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()[LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/ui/runs/r")
    );
    let r = http.post(&trigger).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "joined the active run");
    // Scripts read pages with the API's header; a wrong one is a 401.
    let r = http
        .get(format!("{}/ui/records", d.url))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Chain intact: 1 records"));
    let r = http
        .get(format!("{}/ui/records", d.url))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A branch run says so on its page.
    let r = http
        .post(format!("{}/v1/pipelines/web/runs?branch=feature-x", d.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    let id = body["run"]["id"].as_str().unwrap().to_string();
    let page = http
        .get(format!("{}/ui/runs/{id}", d.url))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"<dd id="run-branch">feature-x "#), "{page}");
    d.runner.release();
    d.finish().await;
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_approved_digest_and_a_live_log_line() {
    let (d, reference) = daemon().await;
    let b = Browser::start(1280, 900).await;
    // Signing in through the form.
    b.open(&format!("{}/", d.url)).await;
    assert!(b.url().await.contains("/ui/login"), "{}", b.url().await);
    b.screenshot(&screenshot("login")).await;
    b.script(
        "document.getElementById('token').value = arguments[0]; document.querySelector('form.login').submit();",
        json!([TRIGGER]),
    )
    .await;
    let dom = b
        .wait_dom("the pipelines", |h| h.contains("id=\"pipeline-web\""))
        .await;
    assert!(dom.contains(&reference), "approved digest missing:\n{dom}");
    assert!(dom.contains("0 3 * * *") && dom.contains("id=\"pipeline-api\""));
    assert!(!dom.contains(TRIGGER), "the page shows the token");
    let cookies = b.cookies().await;
    let token = cookies.iter().find(|c| c["name"] == "kiln_token").unwrap();
    assert_eq!(token["httpOnly"], true);
    assert_eq!(token["sameSite"], "Strict");
    b.screenshot(&screenshot("pipelines")).await;

    // A run held in its build stage: the page loads with line 1 only.
    d.runner.gated.store(true, Ordering::SeqCst);
    let r: Value = d
        .post("/v1/pipelines/web/runs", Some(TRIGGER))
        .await
        .json()
        .await
        .unwrap();
    let id = r["run"]["id"].as_str().unwrap().to_string();
    d.wait_run(&id, is(RunState::Running)).await;
    b.open(&format!("{}/ui/runs/{id}", d.url)).await;
    let dom = b
        .wait_dom("line 1", |h| h.contains("step 1 of build"))
        .await;
    assert!(!dom.contains("step 2 of build"));
    d.runner.release();
    let dom = b
        .wait_dom("the live line and the end", |h| {
            h.contains("step 2 of build") && h.contains("data-ended=\"true\"")
        })
        .await;
    assert!(
        dom.contains("id=\"run-status\" class=\"status passed\""),
        "{dom}"
    );
    assert_eq!(
        dom.matches("step 1 of build").count(),
        1,
        "replayed line repeated"
    );
    b.screenshot(&screenshot("run")).await;

    b.open(&format!("{}/ui/records", d.url)).await;
    let dom = b.dom().await;
    assert!(dom.contains("Chain intact: 1 records") && dom.contains(&reference));
    b.screenshot(&screenshot("records")).await;
    drop(b);

    // The overview on a phone-sized screen.
    let phone = Browser::start(390, 844).await;
    phone.open(&format!("{}/ui/login", d.url)).await;
    phone
        .script(
            "document.getElementById('token').value = arguments[0]; document.querySelector('form.login').submit();",
            json!([READER]),
        )
        .await;
    let dom = phone
        .wait_dom("the pipelines", |h| h.contains("id=\"pipeline-web\""))
        .await;
    assert!(!dom.contains("Run now"), "a reader sees no trigger button");
    let overflow = phone
        .script(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            json!([]),
        )
        .await;
    assert_eq!(overflow, true, "the page scrolls sideways on a phone");
    phone.screenshot(&screenshot("pipelines-phone")).await;
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_json_for_400_404_405() {
    let (d, _) = daemon().await;
    let cases = [
        (
            reqwest::Method::GET,
            "/v1/runs?limit=lots",
            StatusCode::BAD_REQUEST,
        ),
        (reqwest::Method::GET, "/v1/nope", StatusCode::NOT_FOUND),
        (
            reqwest::Method::DELETE,
            "/v1/runs",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            reqwest::Method::GET,
            "/v1/runs/nope/log?follow=maybe",
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, path, status) in cases {
        let r = d
            .http
            .request(method.clone(), format!("{}{path}", d.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{method} {path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/json",
            "{method} {path}"
        );
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    d.finish().await;
}
