//! The HTTP API (axum). **Architecture Invariant:** this is the only module
//! that knows HTTP, routes, status codes and the JSON shapes on the wire;
//! everything it calls is plain Rust. Documented by `openapi.json`.
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
use super::queue::Enqueued;
use super::run::{TriggerKind, stages};
use super::sse::{LogItem, follow};
use super::state::{DaemonError, DaemonState};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest total size of request header names and values.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most request headers.
pub const MAX_HEADERS: usize = 64;
/// Most items a list call returns.
pub const MAX_LIMIT: usize = 500;

/// The API's routes over `state`.
pub fn router(state: DaemonState) -> Router {
    let reader = Router::new()
        .route("/v1/pipelines", get(pipelines))
        .route("/v1/pipelines/{name}/approved", get(approved))
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/log", get(run_log))
        .route("/v1/records", get(records))
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
    let admin = Router::new()
        .route("/v1/runs/{id}/cancel", post(cancel))
        .route("/v1/config/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), Role::Admin),
            require,
        ));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/openapi.json", get(openapi))
        .merge(reader)
        .merge(trigger)
        .merge(admin)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            DaemonError::UnknownPipeline { .. } | DaemonError::UnknownRun { .. } => {
                StatusCode::NOT_FOUND
            }
            DaemonError::RunFinished { .. } => StatusCode::CONFLICT,
            DaemonError::Config(_) => StatusCode::UNPROCESSABLE_ENTITY,
            e => {
                tracing::error!(error = %e, "api call failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
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

/// Checks the bearer token against the role a route group needs.
async fn require(
    State((state, needs)): State<(DaemonState, Role)>,
    req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth::authorize(&state.config().tokens, presented, needs) {
        Ok(who) => {
            tracing::debug!(token = %who.name, "authorized");
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

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

async fn pipelines(State(state): State<DaemonState>) -> ApiResult {
    let now = state.clock().now();
    let mut out = Vec::new();
    for p in &state.catalog().pipelines {
        let last = state.queue().list(Some(p.name.clone()), 1).await?;
        let name = p.name.clone();
        let approved = state
            .with_records(move |s| s.approved(&name))
            .await?
            .map(|a| a.references);
        out.push(json!({
            "name": p.name,
            "version": p.version,
            "error": p.error,
            "schedule": p.schedule,
            "nextRunAt": p.schedule.as_ref().and_then(|s| s.next_after(now)),
            "lastRun": last.first(),
            "approved": approved,
        }));
    }
    Ok(Json(out).into_response())
}

async fn approved(State(state): State<DaemonState>, Path(name): Path<String>) -> ApiResult {
    let n = name.clone();
    match state.with_records(move |s| s.approved(&n)).await? {
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

async fn list_runs(State(state): State<DaemonState>, Query(q): Query<ListQuery>) -> ApiResult {
    let limit = q.limit();
    Ok(Json(state.queue().list(q.pipeline, limit).await?).into_response())
}

async fn get_run(State(state): State<DaemonState>, Path(id): Path<String>) -> ApiResult {
    let run = state.queue().get(&id).await?;
    let run = run.ok_or(DaemonError::UnknownRun { id: id.clone() })?;
    let stages = stages(&state.queue().stage_events(&id).await?);
    let mut body = serde_json::to_value(&run).unwrap_or_default();
    body["stages"] = serde_json::to_value(stages).unwrap_or_default();
    Ok(Json(body).into_response())
}

/// `?follow=false` of the log call: replay only.
#[derive(Debug, Deserialize)]
struct LogQuery {
    follow: Option<bool>,
}

async fn run_log(
    State(state): State<DaemonState>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult {
    let items = follow(&state, &id, q.follow.unwrap_or(true)).await?;
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

async fn records(State(state): State<DaemonState>, Query(q): Query<ListQuery>) -> ApiResult {
    let limit = q.limit();
    let list = state
        .with_records(move |s| s.list(q.pipeline.as_deref(), Some(limit)))
        .await?;
    Ok(Json(list).into_response())
}

async fn metrics(State(state): State<DaemonState>) -> ApiResult {
    let (queued, running) = state.queue().depth().await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state
            .metrics()
            .render(queued, running, &state.registry_stats()),
    )
        .into_response())
}

async fn trigger(State(state): State<DaemonState>, Path(name): Path<String>) -> ApiResult {
    Ok(
        match state.trigger(&name, TriggerKind::Manual, false).await? {
            Enqueued::Created(run) => (
                StatusCode::ACCEPTED,
                Json(json!({ "joined": false, "run": run })),
            )
                .into_response(),
            Enqueued::Joined(run) => {
                (StatusCode::OK, Json(json!({ "joined": true, "run": run }))).into_response()
            }
        },
    )
}

async fn cancel(State(state): State<DaemonState>, Path(id): Path<String>) -> ApiResult {
    let run = state.cancel(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(run)).into_response())
}

async fn reload(State(state): State<DaemonState>) -> ApiResult {
    state.reload().await?;
    Ok(Json(json!({ "status": "reloaded" })).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn openapi_documents_every_route() {
        let spec: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        assert!(spec["openapi"].as_str().unwrap().starts_with("3.0"));
        let routes = [
            "/healthz",
            "/openapi.json",
            "/metrics",
            "/v1/pipelines",
            "/v1/pipelines/{name}/runs",
            "/v1/pipelines/{name}/approved",
            "/v1/runs",
            "/v1/runs/{id}",
            "/v1/runs/{id}/log",
            "/v1/runs/{id}/cancel",
            "/v1/records",
            "/v1/config/reload",
        ];
        let documented = spec["paths"].as_object().unwrap();
        assert_eq!(documented.len(), routes.len());
        for r in routes {
            assert!(documented.contains_key(r), "{r} is not in openapi.json");
        }
    }
}
