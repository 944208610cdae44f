//! The HTTP/JSON API. Errors map to status codes in one place
//! ([`ApiError`]); every error body is `{"error": …, "field": …}`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use twinmesh_common::spec::SpecError;

use crate::node::{Agent, SubmitError};

mod failure;
mod metrics;
pub mod openapi;
mod ui;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// An API error with its status.
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), field: None }
    }

    fn field(status: StatusCode, message: impl Into<String>, field: &str) -> Self {
        ApiError { status, message: message.into(), field: Some(field.into()) }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match &e {
            // What a JSON Schema can say is a 400; rules between fields,
            // which the OpenAPI document cannot state, a 422.
            SubmitError::Spec(s @ SpecError::Inconsistent { .. }) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: e.to_string(),
                field: Some(s.field().to_string()),
            },
            SubmitError::Spec(s) => {
                ApiError { status: StatusCode::BAD_REQUEST, message: e.to_string(), field: Some(s.field().to_string()) }
            }
            SubmitError::Exists { field, .. } => {
                ApiError { status: StatusCode::CONFLICT, message: e.to_string(), field: Some((*field).to_string()) }
            }
            SubmitError::Param { field, .. } => {
                ApiError { status: StatusCode::BAD_REQUEST, message: e.to_string(), field: Some((*field).to_string()) }
            }
            SubmitError::Unplaceable(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
            SubmitError::Store(_) | SubmitError::Overloaded(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message, "field": self.field }))).into_response()
    }
}

#[derive(Clone)]
struct Ctx {
    agent: Arc<Agent>,
    token: Option<Arc<str>>,
}

/// The router, with the bearer token required on `/v1/*` when set.
pub fn router(agent: Arc<Agent>, token: Option<String>) -> Router {
    let ctx = Ctx { agent, token: token.map(Into::into) };
    let v1 = Router::new()
        .route("/v1/jobs", post(submit).get(ui::list))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/actions", get(get_actions))
        .route("/v1/plans/{id}", get(get_plan))
        .route("/v1/plans/{id}/verify", get(get_verification))
        .route("/v1/twin", get(get_twin))
        .route("/v1/observe", post(failure::observe))
        .route("/v1/inject", post(failure::inject))
        .route("/v1/events", get(ui::events))
        .route("/v1/services", post(submit_service).get(list_services))
        .route("/v1/services/{name}", get(get_service).delete(delete_service))
        .route_layer(middleware::from_fn_with_state(ctx.clone(), auth));
    Router::new()
        .merge(v1)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/openapi.json", get(serve_openapi))
        .route("/ui", get(ui::page))
        .route("/ui/", get(ui::page))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/app.css", get(ui::style))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(ctx.clone(), timed))
        .with_state(ctx)
}

/// This API's OpenAPI 3.0 document ([`openapi`], checked against the
/// handlers by schemathesis in CI), with this twin's clusters and nodes.
/// Open, like `/healthz`: it describes, it tells no secret (the names are
/// in every job's plan).
async fn serve_openapi(State(ctx): State<Ctx>) -> Response {
    let view = ctx.agent.view();
    let mut nodes = view.nodes.name.clone();
    nodes.sort();
    Json(openapi::document(view.latency.names(), &nodes)).into_response()
}

/// Times every request (`twinmesh_api_request_seconds`).
async fn timed(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let t0 = std::time::Instant::now();
    let r = next.run(req).await;
    ctx.agent.metrics.api_seconds.observe_duration(t0.elapsed());
    r
}

async fn auth(State(ctx): State<Ctx>, req: Request, next: Next) -> Result<Response, ApiError> {
    if let Some(token) = &ctx.token {
        // The header, or the web view's cookie (set by `/ui?token=`).
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .or_else(|| ui::cookie_token(req.headers()));
        // Compared in constant time: the token is the only gate.
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"));
        }
    }
    Ok(next.run(req).await)
}

/// The credentials of an `Authorization: Bearer <token>` header; the
/// scheme is case-insensitive (RFC 7235), spaces after it are skipped.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim_start_matches(' ')).filter(|t| !t.is_empty())
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitQuery {
    policy: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

async fn submit(
    State(ctx): State<Ctx>,
    query: Result<Query<SubmitQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        message: e.body_text(),
        field: Some("query".into()),
    })?;
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let resp = ctx.agent.submit(&body, q.policy.as_deref(), q.dry_run, None).await?;
    let status = if resp.created { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, Json(resp)).into_response())
}

/// `POST /v1/services`: a service document, accepted (201) once stored
/// and then scaled by this agent every period.
async fn submit_service(
    State(ctx): State<Ctx>,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let r = ctx.agent.submit_service(&body).await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

async fn list_services(State(ctx): State<Ctx>) -> Response {
    Json(json!({ "services": ctx.agent.service_list() })).into_response()
}

async fn get_service(State(ctx): State<Ctx>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let s = ctx
        .agent
        .service(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no service '{name}' on this agent")))?;
    Ok(Json(s).into_response())
}

async fn delete_service(State(ctx): State<Ctx>, Path(name): Path<String>) -> Result<Response, ApiError> {
    if ctx.agent.stop_service(&name).await? {
        Ok(Json(json!({ "stopped": name })).into_response())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, format!("no service '{name}' on this agent")))
    }
}

async fn get_job(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let j = ctx
        .agent
        .job(&id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job '{id}' on this agent")))?;
    let actions =
        ctx.agent.store.actions_of(&id).map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let mut v =
        serde_json::to_value(&j).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    v["actions"] = serde_json::to_value(actions).unwrap_or_default();
    Ok(Json(v).into_response())
}

/// `GET /v1/actions`: the preemptive actions this agent took (what, why,
/// the numbers, how the job ended), newest first; `?limit=` (default 100,
/// at most [`ui::MAX_LIMIT`]). They are kept as long as their job.
async fn get_actions(
    State(ctx): State<Ctx>,
    q: Result<axum::extract::Query<ui::ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(q) = q.map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, e.body_text(), "query"))?;
    let limit = q.limit()?;
    let (mut all, _) =
        ctx.agent.store.actions().map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    all.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(b.seq.cmp(&a.seq)));
    all.truncate(limit);
    Ok(Json(json!({ "actions": all })).into_response())
}

async fn get_plan(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let j = ctx
        .agent
        .job(&id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job '{id}' on this agent")))?;
    let plan = j.plan.ok_or_else(|| ApiError::new(StatusCode::CONFLICT, format!("job '{id}' has no plan yet")))?;
    Ok(Json(plan).into_response())
}

async fn get_verification(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let j = ctx
        .agent
        .job(&id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job '{id}' on this agent")))?;
    let v = j.verification.ok_or_else(|| {
        ApiError::new(StatusCode::CONFLICT, format!("job '{id}' is {:?}; it is verified once it finishes", j.state))
    })?;
    Ok(Json(json!({ "id": id, "verification": v, "observations": j.observations })).into_response())
}

async fn get_twin(State(ctx): State<Ctx>) -> Response {
    let t = ctx.agent.twin();
    let mut records: Vec<_> = t.records().cloned().collect();
    records.sort_by(|a, b| a.node.name.cmp(&b.node.name));
    let failures: Vec<_> = t.failures().cloned().collect();
    let liveness: Vec<Value> = ctx
        .agent
        .liveness()
        .into_iter()
        .map(|(peer, v)| {
            json!({
                "peer": peer,
                "state": v.state.as_str(),
                "reason": v.reason.to_string(),
                "since_ms": v.since,
                "last_heard_ms": v.last_heard,
                "rtt_ms": v.rtt_ms,
            })
        })
        .collect();
    Json(json!({
        "agent": ctx.agent.cfg.name,
        "peers": ctx.agent.peers(),
        "liveness": liveness,
        "partition_epoch": ctx.agent.partition_epoch(),
        "yielded": ctx.agent.yielded(),
        "in_flight": ctx.agent.inflight().into_iter().map(|(node, n, cpu)| json!({ "node": node, "placements": n, "cpu": cpu })).collect::<Vec<_>>(),
        "sync": ctx.agent.sync_checks().into_iter().map(|(peer, same, at)| json!({ "peer": peer, "in_sync": same, "checked_ms": at })).collect::<Vec<_>>(),
        "nodes": records,
        "failures": failures,
        "digest": t.digest(),
    }))
    .into_response()
}

/// Ready once the agent knows itself: on Kubernetes, when its own Node has
/// come from the API server (until then its record holds the fabric file's
/// guesses and it should not plan for others).
async fn readyz(State(ctx): State<Ctx>) -> Response {
    if !ctx.agent.store.healthy() {
        // The last commit failed (a full disk): not ready until one
        // succeeds again (telemetry and running jobs write every few
        // seconds, so this clears by itself once space is back).
        return (StatusCode::SERVICE_UNAVAILABLE, "the store cannot commit (see the agent's log)").into_response();
    }
    match ctx.agent.not_ready_reason() {
        None => "ready".into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER  abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearerabc"), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
