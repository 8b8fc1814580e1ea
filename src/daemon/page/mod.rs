//! The status page: server-rendered HTML (minijinja templates compiled into
//! the binary, one stylesheet, one small plain script for the live log and
//! the copy buttons). **Architecture Invariant:** pages show what the API
//! shows, under the API's roles, and never a token; every state-changing
//! form is CSRF-checked ([`session`]). Routes: `/` (pipelines, approvals),
//! `/ui/runs/{id}`, `/ui/records`, `/ui/login`, and POST forms under `/ui/`.

pub mod session;
pub mod view;

use std::sync::LazyLock;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use minijinja::value::Serde;
use minijinja::{Environment, Value, context};
use serde::Deserialize;

use self::session::{CookiePolicy, CsrfError, Denied, Via};
use crate::daemon::auth::{self, Principal, Role};
use crate::daemon::run::TriggerKind;
use crate::daemon::{DaemonError, DaemonState};

/// The templates, parsed once.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, text) in [
        ("base.html", include_str!("templates/base.html")),
        ("index.html", include_str!("templates/index.html")),
        ("run.html", include_str!("templates/run.html")),
        ("records.html", include_str!("templates/records.html")),
        ("login.html", include_str!("templates/login.html")),
        ("message.html", include_str!("templates/message.html")),
    ] {
        env.add_template(name, text)
            .expect("the page templates are valid");
    }
    env.add_filter("when", when);
    env
});

/// An RFC 3339 time as `YYYY-MM-DD HH:MM:SS UTC`.
fn when(value: String) -> String {
    match chrono::DateTime::parse_from_rfc3339(&value) {
        Ok(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => value,
    }
}

/// The page routes; `cookies` says whether cookies get `Secure`.
pub fn routes(cookies: CookiePolicy) -> Router<DaemonState> {
    Router::new()
        .route("/", get(index))
        .route("/ui/runs/{id}", get(run_page))
        .route("/ui/records", get(records_page))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/pipelines/{name}/trigger", post(trigger))
        .route("/ui/runs/{id}/cancel", post(cancel))
        .route("/ui/builds/{id}/approval", post(approval))
        .route("/ui/static/style.css", get(style))
        .route("/ui/static/live.js", get(script))
        .layer(Extension(cookies))
}

/// A rendered page with `status`; a template error is a 500 page.
fn render(status: StatusCode, name: &str, ctx: Value) -> Response {
    let page = TEMPLATES.get_template(name).and_then(|t| t.render(ctx));
    match page {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "page rendering failed");
            let text = "<!doctype html><title>kiln</title><p>This page could not be rendered; see the daemon log.";
            (StatusCode::INTERNAL_SERVER_ERROR, Html(text)).into_response()
        }
    }
}

/// A page that only says `message`.
fn message(status: StatusCode, title: &str, message: impl std::fmt::Display) -> Response {
    let ctx = context! { title, message => message.to_string(), signed_in => false };
    render(status, "message.html", ctx)
}

/// The response for a refused page request.
fn denied(d: Denied, path: &str, cookies: CookiePolicy) -> Response {
    let to_login = || Redirect::to(&login_url(path)).into_response();
    match d {
        Denied::Anonymous => to_login(),
        Denied::Invalid(Via::Cookie) => {
            let mut r = to_login();
            r.headers_mut()
                .append(header::SET_COOKIE, cookies.clear_token());
            r
        }
        Denied::Invalid(Via::Header) => {
            let mut r = message(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                "invalid bearer token",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kiln\""),
            );
            r
        }
        Denied::Forbidden(e) => message(StatusCode::FORBIDDEN, "Not allowed", e),
    }
}

fn login_url(next: &str) -> String {
    let mut url = url::Url::parse("http://page/ui/login").expect("a valid URL");
    url.query_pairs_mut().append_pair("next", next);
    format!("/ui/login?{}", url.query().unwrap_or(""))
}

/// The CSRF value of this browser, and the `Set-Cookie` to send when it is new.
fn csrf_of(headers: &HeaderMap, cookies: CookiePolicy) -> (String, Option<HeaderValue>) {
    match session::cookie(headers, session::CSRF_COOKIE).filter(|v| !v.is_empty()) {
        Some(v) => (v.to_string(), None),
        None => {
            let v = session::new_csrf();
            let set = cookies.csrf(&v);
            (v, Some(set))
        }
    }
}

/// The context every signed-in page shares: who, what they may do, CSRF.
fn common(who: &Principal, csrf: &str) -> Value {
    context! {
        signed_in => true,
        who => who.name.clone(),
        role => who.role.to_string(),
        can_trigger => who.role >= Role::Trigger,
        can_cancel => who.role >= Role::Admin,
        can_approve => who.role.allows(Role::Approver),
        csrf,
    }
}

/// A signed-in page: authenticates, renders `name` with `ctx` (merged with
/// [`common`]), and sets the CSRF cookie when the browser has none.
fn page(
    headers: &HeaderMap,
    cookies: CookiePolicy,
    who: &Principal,
    name: &str,
    ctx: Value,
) -> Response {
    let (csrf, set) = csrf_of(headers, cookies);
    let ctx = context! { ..ctx, ..common(who, &csrf) };
    let mut resp = render(StatusCode::OK, name, ctx);
    if let Some(set) = set {
        resp.headers_mut().append(header::SET_COOKIE, set);
    }
    resp
}

/// A failed action's page, with the status the API would answer.
fn failed(e: &DaemonError) -> Response {
    let status = super::api::status_of(e);
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Refused",
        StatusCode::BAD_REQUEST => "Bad request",
        _ => "Error",
    };
    message(status, title, crate::pipeline::chain(e))
}

macro_rules! signed_in {
    ($state:expr, $headers:expr, $cookies:expr, $path:expr, $role:expr) => {
        match session::viewer(&$state, &$headers, $role) {
            Ok((who, _)) => who,
            Err(d) => return denied(d, $path, $cookies),
        }
    };
}

/// Pipelines and builds awaiting approval.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "page_index", security((), ("bearer" = [])), responses(
    (status = 200, description = "The page", content_type = "text/html", body = String), (status = 303, description = "Not signed in: to `/ui/login?next=…` (or after the form: where it leads)"), (status = 401, description = "Invalid bearer token", content_type = "text/html", body = String), (status = 403, description = "Role too low, or a form without a valid CSRF field", content_type = "text/html", body = String), (status = 500, description = "The daemon failed", content_type = "text/html", body = String)))]
async fn index(
    State(state): State<DaemonState>,
    Extension(cookies): Extension<CookiePolicy>,
    headers: HeaderMap,
) -> Response {
    let who = signed_in!(state, headers, cookies, "/", Role::Reader);
    let views = async {
        Ok((
            view::pipelines(&state).await?,
            view::approvals(&state).await?,
        ))
    };
    match views.await {
        Ok((pipelines, approvals)) => {
            let ctx = context! {
                title => "Pipelines",
                pipelines => Serde(pipelines),
                approvals => Serde(approvals),
            };
            page(&headers, cookies, &who, "index.html", ctx)
        }
        Err(e) => failed(&e),
    }
}

/// A run: stage timeline and live log.
#[utoipa::path(
    get,
    path = "/ui/runs/{id}",
    operation_id = "page_run_page", security((), ("bearer" = [])), params(("id" = String, Path, description = "The run id.")), responses(
    (status = 200, description = "The page", content_type = "text/html", body = String), (status = 303, description = "Not signed in: to `/ui/login?next=…` (or after the form: where it leads)"), (status = 401, description = "Invalid bearer token", content_type = "text/html", body = String), (status = 403, description = "Role too low, or a form without a valid CSRF field", content_type = "text/html", body = String), (status = 404, description = "No such run or pipeline", content_type = "text/html", body = String), (status = 500, description = "The daemon failed", content_type = "text/html", body = String)))]
async fn run_page(
    State(state): State<DaemonState>,
    Extension(cookies): Extension<CookiePolicy>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let here = format!("/ui/runs/{id}");
    let who = signed_in!(state, headers, cookies, &here, Role::Reader);
    match view::run(&state, &id).await {
        Ok(v) => {
            let ctx = context! { title => format!("Run {id}"), ..Value::from(Serde(v)) };
            page(&headers, cookies, &who, "run.html", ctx)
        }
        Err(e) => failed(&e),
    }
}

/// Records and the chain's verification.
#[utoipa::path(
    get,
    path = "/ui/records",
    operation_id = "page_records_page", security((), ("bearer" = [])), responses(
    (status = 200, description = "The page", content_type = "text/html", body = String), (status = 303, description = "Not signed in: to `/ui/login?next=…` (or after the form: where it leads)"), (status = 401, description = "Invalid bearer token", content_type = "text/html", body = String), (status = 403, description = "Role too low, or a form without a valid CSRF field", content_type = "text/html", body = String), (status = 500, description = "The daemon failed", content_type = "text/html", body = String)))]
async fn records_page(
    State(state): State<DaemonState>,
    Extension(cookies): Extension<CookiePolicy>,
    headers: HeaderMap,
) -> Response {
    let who = signed_in!(state, headers, cookies, "/ui/records", Role::Reader);
    match view::records(&state).await {
        Ok(v) => {
            let ctx = context! { title => "Records", ..Value::from(Serde(v)) };
            page(&headers, cookies, &who, "records.html", ctx)
        }
        Err(e) => failed(&e),
    }
}

/// `?next=` of the login form: where to go after signing in.
#[derive(Debug, Deserialize)]
struct Next {
    next: Option<String>,
}

/// Only local paths: `/x`, never `//host` or `/\host`.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") => n,
        _ => "/",
    }
}

fn login_page(
    headers: &HeaderMap,
    cookies: CookiePolicy,
    status: StatusCode,
    next: &str,
    error: Option<String>,
) -> Response {
    let (csrf, set) = csrf_of(headers, cookies);
    let ctx = context! { title => "Sign in", signed_in => false, csrf, next, error };
    let mut resp = render(status, "login.html", ctx);
    if let Some(set) = set {
        resp.headers_mut().append(header::SET_COOKIE, set);
    }
    resp
}

/// The sign-in form (sets the CSRF cookie).
#[utoipa::path(
    get,
    path = "/ui/login",
    operation_id = "page_login_form", params(("next" = Option<String>, Query, description = "Local path to go to after signing in.")), responses(
    (status = 200, description = "The sign-in form", content_type = "text/html", body = String)))]
async fn login_form(
    Extension(cookies): Extension<CookiePolicy>,
    Query(q): Query<Next>,
    headers: HeaderMap,
) -> Response {
    let next = local_path(q.next.as_deref());
    login_page(&headers, cookies, StatusCode::OK, next, None)
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
    csrf: String,
    next: Option<String>,
}

/// Signs in: sets the token cookie and redirects (form: `token`, `csrf`, `next`).
#[utoipa::path(
    post,
    path = "/ui/login",
    operation_id = "page_login", request_body(content_type = "application/x-www-form-urlencoded", content = String), responses(
    (status = 303, description = "Signed in: the token cookie is set"), (status = 401, description = "Unknown token", content_type = "text/html", body = String), (status = 403, description = "Missing or wrong CSRF field", content_type = "text/html", body = String), (status = 400, response = crate::daemon::openapi::BadRequest), (status = 415, description = "Not a form", body = crate::daemon::openapi::ErrorBody)))]
async fn login(
    State(state): State<DaemonState>,
    Extension(cookies): Extension<CookiePolicy>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = local_path(f.next.as_deref());
    if let Err(e) = session::check_csrf(&headers, &f.csrf) {
        return login_page(
            &headers,
            cookies,
            StatusCode::FORBIDDEN,
            next,
            Some(e.to_string()),
        );
    }
    let presented = format!("Bearer {}", f.token.trim());
    match auth::authorize(&state.config().tokens, Some(&presented), Role::Reader) {
        Ok(who) => {
            tracing::info!(token = %who.name, "signed in to the status page");
            let mut r = Redirect::to(next).into_response();
            r.headers_mut()
                .append(header::SET_COOKIE, cookies.token(f.token.trim()));
            r
        }
        Err(e) => login_page(
            &headers,
            cookies,
            StatusCode::UNAUTHORIZED,
            next,
            Some(e.to_string()),
        ),
    }
}

/// The hidden field of the small POST forms.
#[derive(Debug, Default, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The form's CSRF field; a request without a form body (a script using the
/// `Authorization` header) has none, which only cookie sessions need.
fn csrf_field(form: Result<Form<CsrfForm>, FormRejection>) -> CsrfForm {
    form.map(|Form(f)| f).unwrap_or_default()
}

/// Signs out (form: `csrf`).
#[utoipa::path(
    post,
    path = "/ui/logout",
    operation_id = "page_logout", responses(
    (status = 303, description = "Signed out: the token cookie is cleared"), (status = 403, description = "Role too low, or a form without a valid CSRF field", content_type = "text/html", body = String)))]
async fn logout(
    Extension(cookies): Extension<CookiePolicy>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let f = csrf_field(form);
    if let Err(e) = session::check_csrf(&headers, &f.csrf) {
        return message(StatusCode::FORBIDDEN, "Refused", e);
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, cookies.clear_token());
    r
}

/// Why a form for `needs` is refused, if it is: authentication, and the
/// CSRF check for cookie sessions.
fn refuse_form(
    state: &DaemonState,
    headers: &HeaderMap,
    csrf: &str,
    needs: Role,
    cookies: CookiePolicy,
    here: &str,
) -> Option<Response> {
    match session::viewer(state, headers, needs) {
        Err(d) => Some(denied(d, here, cookies)),
        Ok((_, Via::Header)) => None,
        Ok((_, Via::Cookie)) => session::check_csrf(headers, csrf)
            .err()
            .map(|e: CsrfError| message(StatusCode::FORBIDDEN, "Refused", e)),
    }
}

/// Starts (or joins) a run (role `trigger`; form: `csrf`).
#[utoipa::path(
    post,
    path = "/ui/pipelines/{name}/trigger",
    operation_id = "page_trigger", security((), ("bearer" = [])), params(("name" = String, Path, description = "The pipeline.")), responses(
    (status = 303, description = "To the run's page"), (status = 401, description = "Invalid bearer token", content_type = "text/html", body = String), (status = 403, description = "Role too low, or a form without a valid CSRF field", content_type = "text/html", body = String), (status = 404, description = "No such run or pipeline", content_type = "text/html", body = String), (status = 500, description = "The daemon failed", content_type = "text/html", body = String)))]
async fn trigger(
    State(state): State<DaemonState>,
    Extension(cookies): Extension<CookiePolicy>,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let f = csrf_field(form);
    if let Some(r) = refuse_form(&state, &headers, &f.csrf, Role::Trigger, cookies, "/") {
        return r;
    }
    match state.trigger(&name, TriggerKind::Manual, false).await {
        Ok(enq) => Redirect::to(&format!("/ui/runs/{}", enq.run().id)).into_response(),
        Err(e) => failed(&e),
    }
}

/// Cancels a run (role `admin`; form: `csrf`).
#[utoipa::path(
    post,
    path = "/ui/runs/{id}/cancel",
    operation_id = "page_cancel", security((), ("bearer" = [])), params(("id" = String, Path, description = "The run id.")), responses(
    (status = 303, description = "Back to the run's page"), (status = 401, description = "Invalid bearer token", content_type = "text/html", body = String), (status = 403, description = "Role too low, or a form without a valid CSRF field", content_type = "text/html", body = String), (status = 404, description = "No such run or pipeline", content_type = "text/html", body = String), (status = 409, description = "The run has already ended", content_type = "text/html", body = String), (status = 500, description = "The daemon failed", content_type = "text/html", body = String)))]
async fn cancel(
    State(state): State<DaemonState>,
    Extension(cookies): Extension<CookiePolicy>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let f = csrf_field(form);
    let here = format!("/ui/runs/{id}");
    if let Some(r) = refuse_form(&state, &headers, &f.csrf, Role::Admin, cookies, &here) {
        return r;
    }
    match state.cancel(&id).await {
        Ok(_) => Redirect::to(&here).into_response(),
        Err(e) => failed(&e),
    }
}

/// The approval form: the CSRF field, the decision and an optional note.
#[derive(Debug, Deserialize)]
struct ApprovalForm {
    #[serde(default)]
    csrf: String,
    decision: crate::record::Decision,
    #[serde(default)]
    note: String,
}

/// Approves or rejects a build awaiting approval (role `approver`; form:
/// `csrf`, `decision`, `note`), as `POST /v1/builds/{id}/approval` does.
#[utoipa::path(
    post,
    path = "/ui/builds/{id}/approval",
    operation_id = "page_approval", security((), ("bearer" = [])), params(("id" = String, Path, description = "The record id.")), responses(
    (status = 303, description = "Back to the pipelines page"), (status = 400, description = "No decision in the form, or a rejection without a note", content_type = "text/html", body = String), (status = 401, description = "Invalid bearer token", content_type = "text/html", body = String), (status = 403, description = "Role too low, or a form without a valid CSRF field", content_type = "text/html", body = String), (status = 404, description = "No such build", content_type = "text/html", body = String), (status = 409, description = "The build was already decided", content_type = "text/html", body = String), (status = 502, description = "The decision is recorded, but promotion failed", content_type = "text/html", body = String), (status = 500, description = "The daemon failed", content_type = "text/html", body = String)))]
async fn approval(
    State(state): State<DaemonState>,
    Extension(cookies): Extension<CookiePolicy>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ApprovalForm>, FormRejection>,
) -> Response {
    let (who, via) = match session::viewer(&state, &headers, Role::Approver) {
        Ok(v) => v,
        Err(d) => return denied(d, "/", cookies),
    };
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) => return message(StatusCode::BAD_REQUEST, "Refused", e.body_text()),
    };
    if via == Via::Cookie
        && let Err(e) = session::check_csrf(&headers, &f.csrf)
    {
        return message(StatusCode::FORBIDDEN, "Refused", e);
    }
    let note = Some(f.note.trim().to_string()).filter(|n| !n.is_empty());
    let by = format!("token:{}", who.name);
    match state.decide(&id, f.decision, by, note).await {
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => failed(&e),
    }
}

/// The stylesheet.
#[utoipa::path(
    get,
    path = "/ui/static/style.css",
    operation_id = "page_style", responses((status = 200, description = "CSS", content_type = "text/css", body = String)))]
async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("templates/style.css"),
    )
        .into_response()
}

/// The live-log and copy-button script.
#[utoipa::path(
    get,
    path = "/ui/static/live.js",
    operation_id = "page_script", responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String)))]
async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("templates/live.js"),
    )
        .into_response()
}
