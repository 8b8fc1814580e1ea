//! `kiln import --from-aws`: the real aws-sdk-imagebuilder client (through
//! the `kiln` binary and `AWS_ENDPOINT_URL_IMAGEBUILDER`) against a small
//! local HTTP server that answers with response bodies in the shapes of the
//! Image Builder API reference. No emulator implements Image Builder (moto
//! does not), so this server is the stand-in; it records every request so
//! the test sees the paginated `ListComponents`.

mod support;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";

fn arn(kind: &str, rest: &str) -> String {
    format!("arn:aws:imagebuilder:us-west-2:{ACCOUNT}:{kind}/{rest}")
}

type Log = Arc<Mutex<Vec<String>>>;

fn not_found(what: &str) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        "x-amzn-ErrorType",
        "ResourceNotFoundException".parse().unwrap(),
    );
    (
        StatusCode::NOT_FOUND,
        h,
        axum::Json(json!({"message": format!("{what} not found")})),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    axum::Json(body).into_response()
}

async fn pipeline(State(log): State<Log>, Query(q): Query<Vec<(String, String)>>) -> Response {
    log.lock().unwrap().push(format!("GetImagePipeline {q:?}"));
    if q.first().map(|(_, v)| v.as_str()) != Some(arn("image-pipeline", "nightly").as_str()) {
        return not_found("pipeline");
    }
    ok(json!({"requestId": "r1", "imagePipeline": {
        "arn": arn("image-pipeline", "nightly"),
        "name": "nightly",
        "description": "Nightly web image",
        "platform": "Linux",
        "enhancedImageMetadataEnabled": true,
        "containerRecipeArn": arn("container-recipe", "web/1.0.0"),
        "infrastructureConfigurationArn": arn("infrastructure-configuration", "small"),
        "distributionConfigurationArn": arn("distribution-configuration", "web-dist"),
        "schedule": {"scheduleExpression": "cron(0 3 ? * MON-FRI *)", "timezone": "Europe/Berlin",
                     "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY"},
        "status": "ENABLED",
        "dateCreated": "2026-11-01T10:00:00.000Z"
    }}))
}

async fn recipe(State(log): State<Log>, Query(q): Query<Vec<(String, String)>>) -> Response {
    log.lock()
        .unwrap()
        .push(format!("GetContainerRecipe {q:?}"));
    if q.first().map(|(_, v)| v.as_str()) != Some(arn("container-recipe", "web/1.0.0").as_str()) {
        return not_found("container recipe");
    }
    ok(json!({"requestId": "r2", "containerRecipe": {
        "arn": arn("container-recipe", "web/1.0.0"),
        "containerType": "DOCKER",
        "name": "web",
        "platform": "Linux",
        "owner": ACCOUNT,
        "version": "1.0.0",
        "components": [{"componentArn": arn("component", "banner/1.x.x"),
                        "parameters": [{"name": "Text", "value": ["from the service"]}]}],
        "dockerfileTemplateData": "FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:components }}}\n",
        "parentImage": "127.0.0.1:5000/kiln/base:1",
        "encrypted": true,
        "tags": {"team": "web"},
        "workingDirectory": "/tmp",
        "targetRepository": {"service": "ECR", "repositoryName": "web"}
    }}))
}

async fn distribution(State(log): State<Log>) -> Response {
    log.lock()
        .unwrap()
        .push("GetDistributionConfiguration".into());
    ok(json!({"requestId": "r3", "distributionConfiguration": {
        "arn": arn("distribution-configuration", "web-dist"),
        "name": "web-dist",
        "distributions": [{"region": "us-west-2", "containerDistributionConfiguration": {
            "targetRepository": {"service": "ECR", "repositoryName": "web"}}}],
        "timeoutMinutes": 720
    }}))
}

async fn list_components(State(log): State<Log>, body: String) -> Response {
    let req: Value = serde_json::from_str(&body).unwrap_or_default();
    log.lock().unwrap().push(format!("ListComponents {req}"));
    let version = |v: &str| {
        json!({"arn": arn("component", &format!("banner/{v}")), "name": "banner", "version": v,
                                   "platform": "Linux", "type": "BUILD", "owner": ACCOUNT})
    };
    match req["nextToken"].as_str() {
        None => ok(
            json!({"requestId": "r4", "componentVersionList": [version("1.0.0"), version("1.2.0")], "nextToken": "page-2"}),
        ),
        Some("page-2") => ok(
            json!({"requestId": "r5", "componentVersionList": [version("1.4.1"), version("2.0.0")]}),
        ),
        Some(_) => not_found("page"),
    }
}

async fn build_versions(State(log): State<Log>, body: String) -> Response {
    let req: Value = serde_json::from_str(&body).unwrap_or_default();
    log.lock()
        .unwrap()
        .push(format!("ListComponentBuildVersions {req}"));
    let v = req["componentVersionArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ok(json!({"requestId": "r6", "componentSummaryList": [
        {"arn": format!("{v}/1"), "name": "banner", "version": "1.4.1", "platform": "Linux", "type": "BUILD", "owner": ACCOUNT},
        {"arn": format!("{v}/2"), "name": "banner", "version": "1.4.1", "platform": "Linux", "type": "BUILD", "owner": ACCOUNT}
    ]}))
}

async fn component(State(log): State<Log>, Query(q): Query<Vec<(String, String)>>) -> Response {
    log.lock().unwrap().push(format!("GetComponent {q:?}"));
    ok(json!({"requestId": "r7", "component": {
        "arn": arn("component", "banner/1.4.1/2"),
        "name": "banner",
        "version": "1.4.1",
        "type": "BUILD",
        "platform": "Linux",
        "owner": ACCOUNT,
        "data": "name: banner\nschemaVersion: 1.0\nparameters:\n  - Text:\n      type: string\nphases:\n  - name: build\n    steps:\n      - name: Write\n        action: ExecuteBash\n        inputs:\n          commands:\n            - echo '{{ Text }}' > /banner.txt\n",
        "encrypted": true,
        "dateCreated": "2026-10-01T10:00:00.000Z"
    }}))
}

async fn serve() -> (String, Log) {
    let log: Log = Arc::default();
    let app = Router::new()
        .route("/GetImagePipeline", get(pipeline))
        .route("/GetContainerRecipe", get(recipe))
        .route("/GetDistributionConfiguration", get(distribution))
        .route("/GetComponent", get(component))
        .route("/ListComponents", post(list_components))
        .route("/ListComponentBuildVersions", post(build_versions))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, log)
}

async fn kiln_import(url: &str, dir: &std::path::Path, arn: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "--project",
            dir.to_str().unwrap(),
            "import",
            "--from-aws",
            arn,
        ])
        .env("AWS_ENDPOINT_URL_IMAGEBUILDER", url)
        .env("AWS_REGION", "us-west-2")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_is_imported_through_the_sdk() {
    let (url, log) = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = kiln_import(&url, dir.path(), &arn("image-pipeline", "nightly")).await;
    assert_eq!(code, 0, "{out}{err}\nrequests: {:?}", log.lock().unwrap());
    let calls = log.lock().unwrap().clone();
    let lists: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("ListComponents"))
        .collect();
    assert_eq!(lists.len(), 2, "{calls:?}");
    assert!(lists[1].contains("\"nextToken\":\"page-2\""), "{calls:?}");
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("GetComponent") && c.contains("banner/1.4.1/2")),
        "{calls:?}"
    );

    let recipe = std::fs::read_to_string(dir.path().join("recipes/web.yaml")).unwrap();
    for want in [
        "- name: \"banner\"\n    parameters:\n      \"Text\": \"from the service\"",
        "cron: \"cron(0 3 ? * MON-FRI *)\"\n  timezone: \"Europe/Berlin\"\n  startCondition: EXPRESSION_MATCH_ONLY",
        "region: \"us-west-2\"\n        repository: \"web\"",
    ] {
        assert!(recipe.contains(want), "missing {want:?} in\n{recipe}");
    }
    assert!(out.contains("tags: AWS resource tags"), "{out}");
    assert!(
        out.contains("timeoutMinutes: Image Builder's distribution timeout"),
        "{out}"
    );
    assert!(
        out.contains("infrastructureConfigurationArn: kiln builds on the Docker engine"),
        "{out}"
    );
    let (code, o, e) = support::kiln_on(dir.path(), &["validate", "web"]);
    assert_eq!(code, 0, "{o}{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_arn_is_a_clear_error() {
    let (url, _log) = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = arn("container-recipe", "gone/9.9.9");
    let (code, out, err) = kiln_import(&url, dir.path(), &missing).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "GetContainerRecipe `{missing}`: not found in Image Builder"
        )),
        "{err}"
    );
    assert!(!dir.path().join("recipes").exists());
    let (code, _, err) = kiln_import(
        &url,
        dir.path(),
        "arn:aws:imagebuilder:us-west-2:1:image/x/1.0.0",
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("is not an Image Builder container-recipe or image-pipeline ARN"),
        "{err}"
    );
}
