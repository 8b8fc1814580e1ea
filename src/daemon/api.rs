//! The HTTP API (axum). **Architecture Invariant:** this is the only module
//! that knows HTTP, routes, status codes and the JSON shapes on the wire;
//! everything it calls is plain Rust. Documented by [`super::openapi`]
//! (utoipa, from the `#[utoipa::path]` attributes here).
//!
//! Bearer tokens are checked by role per route group; `/healthz` and
//! `/openapi.json` need none. Headers and bodies are size-limited, and no
//! header is ever logged.

use std::convert::Infallible;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::json;

use super::auth::{self, AuthError, Role};
#[allow(unused_imports)] // used only by the `#[utoipa::path]` attributes
use super::openapi::{ApprovedBody, BadGateway, BadRequest, Conflict, NotFound, Unprocessable};
use super::openapi::{PipelineSummary, RunDetail, StatusBody, Triggered};
use super::page::{
    self,
    session::{self, CookiePolicy, Via},
};
use super::queue::{Enqueued, NodeView};
use super::run::{RunRow, TriggerKind, stages};
use super::sse::{LogItem, follow_after};
use super::state::{DaemonError, DaemonState};
use crate::branch::BranchName;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest total size of request header names and values.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most request headers.
pub const MAX_HEADERS: usize = 64;
/// Most items a list call returns.
pub const MAX_LIMIT: usize = 500;

/// The API's routes over `state`, with the status page, for a daemon
/// serving plain HTTP on loopback (cookies without `Secure`).
pub fn router(state: DaemonState) -> Router {
    router_with(state, CookiePolicy { secure: false })
}

/// The API's routes and the status page over `state`; `cookies` says
/// whether the page's cookies get `Secure` (TLS).
pub fn router_with(state: DaemonState, cookies: CookiePolicy) -> Router {
    let reader = Router::new()
        .route("/v1/pipelines", get(pipelines))
        .route("/v1/pipelines/{name}/approved", get(approved))
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/log", get(run_log))
        .route("/v1/records", get(records))
        .route("/v1/nodes", get(nodes))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), Role::Reader),
            require,
        ));
    let trigger = Router::new()
        .route("/v1/pipelines/{name}/runs", post(trigger))
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), Role::Trigger),
            require,
        ));
    let approver = Router::new()
        .route("/v1/builds/{id}/approval", post(approval))
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), Role::Approver),
            require,
        ));
    let admin = Router::new()
        .route("/v1/runs/{id}/cancel", post(cancel))
        .route("/v1/config/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), Role::Admin),
            require,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .merge(reader)
        .merge(trigger)
        .merge(approver)
        .merge(admin)
        .merge(page::routes(cookies))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        })
        .layer(middleware::from_fn(json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(limit_headers))
        .with_state(state)
}

/// A JSON error body: `{"error": "…"}`.
fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

/// A failed call.
struct ApiError(DaemonError);

impl From<DaemonError> for ApiError {
    fn from(e: DaemonError) -> Self {
        ApiError(e)
    }
}

impl From<super::queue::QueueError> for ApiError {
    fn from(e: super::queue::QueueError) -> Self {
        ApiError(e.into())
    }
}

/// The HTTP status a daemon error answers with, for the API and the pages
/// alike (a server-side failure is logged here).
pub(super) fn status_of(e: &DaemonError) -> StatusCode {
    match e {
        DaemonError::UnknownPipeline { .. } | DaemonError::UnknownRun { .. } => {
            StatusCode::NOT_FOUND
        }
        DaemonError::RunFinished { .. } => StatusCode::CONFLICT,
        DaemonError::Records(crate::record::RecordError::NotFound { .. }) => StatusCode::NOT_FOUND,
        DaemonError::Records(crate::record::RecordError::Decision(_)) => StatusCode::CONFLICT,
        DaemonError::BadBuild(_) | DaemonError::BadBranch(_) => StatusCode::BAD_REQUEST,
        DaemonError::Promotion(_) => StatusCode::BAD_GATEWAY,
        DaemonError::Config(_) => StatusCode::UNPROCESSABLE_ENTITY,
        e => {
            tracing::error!(error = %e, "api call failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        if let DaemonError::Promotion(_) = &self.0 {
            // Say which target failed and why, not only that one did.
            return error(status, crate::pipeline::chain(&self.0));
        }
        error(status, &self.0)
    }
}

type ApiResult = Result<Response, ApiError>;

/// Refuses oversized header sets (431) and logs each call (never headers).
async fn limit_headers(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let size: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || size > MAX_HEADER_BYTES {
        return error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request headers exceed {MAX_HEADERS} fields or {MAX_HEADER_BYTES} bytes"),
        );
    }
    let (method, path, t0) = (
        req.method().clone(),
        req.uri().path().to_string(),
        Instant::now(),
    );
    let resp = next.run(req).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(),
        ms = t0.elapsed().as_millis() as u64, "api call");
    resp
}

/// Turns axum's plain-text rejections (bad path, query or body: 400, 415,
/// 422, …) into the API's JSON error body; HTML pages and JSON pass as they are.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let typed = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || typed {
        return resp;
    }
    let bytes = axum::body::to_bytes(resp.into_body(), MAX_BODY_BYTES)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let text = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_lowercase(),
        t => t.to_string(),
    };
    error(status, text)
}

/// Checks the bearer token (or, for reads, the status page's login cookie,
/// so a page can follow a log) against the role a route group needs.
async fn require(
    State((state, needs)): State<(DaemonState, Role)>,
    req: Request,
    next: Next,
) -> Response {
    let presented = session::credential(req.headers())
        .filter(|(_, via)| *via == Via::Header || session::is_read(req.method()))
        .map(|(c, _)| c);
    match auth::authorize(&state.config().tokens, presented.as_deref(), needs) {
        Ok(who) => {
            tracing::debug!(token = %who.name, "authorized");
            let mut req = req;
            req.extensions_mut().insert(who);
            next.run(req).await
        }
        Err(e @ (AuthError::Missing | AuthError::Invalid)) => {
            let mut resp = error(StatusCode::UNAUTHORIZED, e);
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kiln\""),
            );
            resp
        }
        Err(e @ AuthError::Forbidden { .. }) => error(StatusCode::FORBIDDEN, e),
    }
}

/// Liveness: answers while the daemon serves.
#[utoipa::path(get, path = "/healthz", responses(
        (status = 200, body = StatusBody)))]
async fn healthz() -> Json<StatusBody> {
    Json(StatusBody {
        status: "ok".into(),
    })
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses(
        (status = 200, description = "The OpenAPI document", body = Object)))]
async fn openapi() -> Response {
    static DOC: std::sync::LazyLock<String> = std::sync::LazyLock::new(super::openapi::document);
    ([(header::CONTENT_TYPE, "application/json")], DOC.as_str()).into_response()
}

/// Every pipeline with its schedule, next run, newest run and approved digests.
#[utoipa::path(get, path = "/v1/pipelines", security(("bearer" = [])), responses(
        (status = 200, body = Vec<PipelineSummary>)))]
async fn pipelines(State(state): State<DaemonState>) -> ApiResult {
    let now = state.clock().now();
    let mut out = Vec::new();
    for p in &state.catalog().pipelines {
        let last = state.queue().list(Some(p.name.clone()), 1).await?;
        let approved = state
            .records()
            .approved(&p.name)
            .await
            .map_err(DaemonError::from)?
            .map(|a| a.references);
        out.push(PipelineSummary {
            name: p.name.clone(),
            version: p.version.clone(),
            error: p.error.clone(),
            schedule: p.schedule.clone(),
            next_run_at: p.schedule.as_ref().and_then(|s| s.next_after(now)),
            last_run: last.into_iter().next(),
            approved,
        });
    }
    Ok(Json(out).into_response())
}

/// The newest approved build of a pipeline and the digests to pull.
#[utoipa::path(get, path = "/v1/pipelines/{name}/approved", security(("bearer" = [])), params(("name" = String, Path, description = "The pipeline (recipe name).")), responses(
        (status = 200, body = ApprovedBody),
        (status = 404, response = NotFound)))]
async fn approved(State(state): State<DaemonState>, Path(name): Path<String>) -> ApiResult {
    let approved = state.records().approved(&name).await;
    match approved.map_err(DaemonError::from)? {
        Some(a) => Ok(Json(a).into_response()),
        None => Ok(error(
            StatusCode::NOT_FOUND,
            format!("pipeline `{name}` has no approved build"),
        )),
    }
}

/// `?pipeline=…&limit=…` of list calls.
#[derive(Debug, Deserialize)]
struct ListQuery {
    pipeline: Option<String>,
    limit: Option<usize>,
}

impl ListQuery {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(50).min(MAX_LIMIT)
    }
}

/// Runs, newest first.
#[utoipa::path(get, path = "/v1/runs", security(("bearer" = [])), params(("pipeline" = Option<String>, Query, description = "Only this pipeline's."), ("limit" = Option<usize>, Query, description = "At most this many (default 50, at most 500).")), responses(
        (status = 200, body = Vec<RunRow>),
        (status = 400, response = BadRequest)))]
async fn list_runs(State(state): State<DaemonState>, Query(q): Query<ListQuery>) -> ApiResult {
    let limit = q.limit();
    Ok(Json(state.queue().list(q.pipeline, limit).await?).into_response())
}

/// One run and its stages.
#[utoipa::path(get, path = "/v1/runs/{id}", security(("bearer" = [])), params(("id" = String, Path, description = "The run id.")), responses(
        (status = 200, body = RunDetail),
        (status = 404, response = NotFound)))]
async fn get_run(State(state): State<DaemonState>, Path(id): Path<String>) -> ApiResult {
    let run = state.queue().get(&id).await?;
    let run = run.ok_or(DaemonError::UnknownRun { id: id.clone() })?;
    let stages = stages(&state.queue().stage_events(&id).await?);
    Ok(Json(RunDetail { run, stages }).into_response())
}

/// `?follow=false` of the log call: replay only.
#[derive(Debug, Deserialize)]
struct LogQuery {
    follow: Option<bool>,
}

/// A run's log as Server-Sent Events: the stored events (`line`,
/// `stage_started`, `stage_passed`, `stage_failed`; `id` = sequence number),
/// then live ones, then `end` with the final run.
#[utoipa::path(get, path = "/v1/runs/{id}/log", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run id."), ("follow" = Option<bool>, Query, description = "Keep following live events (default true).")),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound)))]
async fn run_log(
    State(state): State<DaemonState>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
    headers: axum::http::HeaderMap,
) -> ApiResult {
    // A reconnecting EventSource sends the last id it saw; resume after it.
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let items = follow_after(&state, &id, q.follow.unwrap_or(true), after).await?;
    let events = items.map(|item| {
        let event = match item {
            LogItem::Event(e) => Event::default()
                .event(e.kind.as_str())
                .id(e.seq.to_string())
                .json_data(&e),
            LogItem::End(run) => Event::default().event("end").json_data(&run),
        };
        Ok::<_, Infallible>(event.unwrap_or_else(|_| Event::default().comment("unencodable")))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Build records, newest first (as `kiln records --json`).
#[utoipa::path(get, path = "/v1/records", security(("bearer" = [])), params(("pipeline" = Option<String>, Query, description = "Only this pipeline's."), ("limit" = Option<usize>, Query, description = "At most this many (default 50, at most 500).")), responses(
        (status = 200, description = "Chained records", body = Vec<Object>),
        (status = 400, response = BadRequest)))]
async fn records(State(state): State<DaemonState>, Query(q): Query<ListQuery>) -> ApiResult {
    let limit = q.limit();
    let list = state
        .records()
        .list(q.pipeline.as_deref(), Some(limit))
        .await
        .map_err(DaemonError::from)?;
    Ok(Json(list).into_response())
}

/// The nodes sharing this daemon's run queue — a cluster's nodes, or this
/// one host — with their engine, platforms, labels, checkout digest, seconds
/// since their last heartbeat and their runs by state.
#[utoipa::path(get, path = "/v1/nodes", security(("bearer" = [])), responses(
        (status = 200, body = Vec<NodeView>)))]
async fn nodes(State(state): State<DaemonState>) -> ApiResult {
    Ok(Json(state.queue().nodes().await?).into_response())
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", security(("bearer" = [])), responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<DaemonState>) -> ApiResult {
    let (queued, running) = state.queue().depth().await?;
    let mut text = state
        .metrics()
        .render(queued, running, &state.registry_stats());
    text.push_str(&super::metrics::render_nodes(&state.queue().nodes().await?));
    let plain = [(header::CONTENT_TYPE, "text/plain; version=0.0.4")];
    Ok((plain, text).into_response())
}

/// The query of `POST /v1/pipelines/{name}/runs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct TriggerQuery {
    /// Run the branch pipeline of this git branch (tags get a branch
    /// suffix; never approvable); absent: the main pipeline.
    branch: Option<String>,
}

/// Starts a run (role `trigger`), or joins the pipeline's (or the branch's)
/// active run.
#[utoipa::path(post, path = "/v1/pipelines/{name}/runs", security(("bearer" = [])), params(("name" = String, Path, description = "The pipeline (recipe name)."), TriggerQuery), responses(
        (status = 202, description = "A run was queued", body = Triggered),
        (status = 200, description = "The active run was joined", body = Triggered),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound)))]
async fn trigger(
    State(state): State<DaemonState>,
    Path(name): Path<String>,
    query: Result<Query<TriggerQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return Ok(error(StatusCode::BAD_REQUEST, e.body_text())),
    };
    let enqueued = match query.branch.as_deref().map(BranchName::parse) {
        None => state.trigger(&name, TriggerKind::Manual, false).await?,
        Some(branch) => {
            let branch = branch.map_err(DaemonError::from)?;
            state.trigger_branch(&name, &branch).await?
        }
    };
    Ok(match enqueued {
        Enqueued::Created(run) => {
            (StatusCode::ACCEPTED, Json(Triggered { joined: false, run })).into_response()
        }
        Enqueued::Joined(run) => {
            (StatusCode::OK, Json(Triggered { joined: true, run })).into_response()
        }
    })
}

/// Cancels a queued or running run (role `admin`).
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", security(("bearer" = [])), params(("id" = String, Path, description = "The run id.")), responses(
        (status = 202, body = RunRow),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict)))]
async fn cancel(State(state): State<DaemonState>, Path(id): Path<String>) -> ApiResult {
    let run = state.cancel(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(run)).into_response())
}

/// The body of `POST /v1/builds/{id}/approval`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ApprovalBody {
    /// `approve` or `reject`.
    #[schema(value_type = String, pattern = "^(approve|reject)$")]
    decision: crate::record::Decision,
    /// Why; required to reject.
    #[serde(default)]
    note: Option<String>,
}

/// Approves or rejects a build awaiting approval (role `approver`; admin
/// does not imply it). An approval promotes the build to its promote
/// targets; the decision joins the signed record chain with the token's name.
#[utoipa::path(post, path = "/v1/builds/{id}/approval", security(("bearer" = [])),
    params(("id" = String, Path, description = "`pipeline:version-build` or a record id.")),
    request_body = ApprovalBody,
    responses(
        (status = 200, description = "Recorded: the build, the decision and the promotion events.", body = Object),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 502, response = BadGateway)))]
async fn approval(
    State(state): State<DaemonState>,
    Path(id): Path<String>,
    axum::Extension(who): axum::Extension<auth::Principal>,
    body: Result<Json<ApprovalBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "body must be {{\"decision\": \"approve\"|\"reject\", \"note\": \"…\"}}: {}",
                    e.body_text()
                ),
            ));
        }
    };
    let by = format!("token:{}", who.name);
    let d = state.decide(&id, body.decision, by, body.note).await?;
    let promotions: Vec<_> = d.promotions.iter().map(|p| &p.event).collect();
    Ok(Json(json!({
        "build": d.record.record.build_id().to_string(),
        "decision": d.decision,
        "promotions": promotions,
    }))
    .into_response())
}

/// Re-reads tokens, grace and recipes (role `admin`).
#[utoipa::path(post, path = "/v1/config/reload", security(("bearer" = [])), responses(
        (status = 200, body = StatusBody),
        (status = 422, response = Unprocessable)))]
async fn reload(State(state): State<DaemonState>) -> ApiResult {
    state.reload().await?;
    Ok(Json(StatusBody {
        status: "reloaded".into(),
    })
    .into_response())
}
