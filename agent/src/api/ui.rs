//! The web view (`/ui`) and what it reads: a list of recent jobs and a
//! stream of server-sent events carrying the twin and the jobs whenever
//! they change. The page, its script and its style sheet are embedded in
//! the binary (`agent/ui/`): nothing is fetched from elsewhere, and the
//! Content-Security-Policy says so to the browser (no inline script or
//! style, no other origin).

use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use twinmesh_common::failures::down_nodes;
use twinmesh_common::record::JobRecord;
use twinmesh_common::replica::AGENT_LABEL;

use super::{Ctx, constant_time_eq};
use crate::node::{Agent, now_ms};

/// The page.
const PAGE: &str = include_str!("../../ui/index.html");
/// Its script (`/ui/app.js`).
const SCRIPT: &str = include_str!("../../ui/app.js");
/// Its style sheet (`/ui/app.css`).
const STYLE: &str = include_str!("../../ui/app.css");

/// What the page may load and where it may connect: its own script, style
/// sheet and API, nothing inline, nothing from elsewhere, in no frame.
pub(super) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
    img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The headers of every response of the web view.
fn headers(content_type: &'static str) -> [(header::HeaderName, &'static str); 5] {
    [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ]
}

/// `/ui/app.js`: the page's script. Open, like the page's token form: it
/// holds no data and no secret.
pub(super) async fn script() -> Response {
    (headers("text/javascript; charset=utf-8"), SCRIPT).into_response()
}

/// `/ui/app.css`: the page's style sheet.
pub(super) async fn style() -> Response {
    (headers("text/css; charset=utf-8"), STYLE).into_response()
}

/// Cookie that carries the API token for the page's own requests.
pub(super) const TOKEN_COOKIE: &str = "twinmesh_token";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UiQuery {
    token: Option<String>,
}

/// `/ui`: the page. With a token configured, `?token=…` sets a cookie
/// (HttpOnly, SameSite=Strict) and redirects to `/ui`, so the page and its
/// requests carry it and the address bar does not.
pub(super) async fn page(
    State(ctx): State<Ctx>,
    request: axum::http::HeaderMap,
    q: Result<Query<UiQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let html = headers("text/html; charset=utf-8");
    let Some(token) = &ctx.token else { return (html, PAGE).into_response() };
    if let Ok(Query(UiQuery { token: Some(given) })) = q {
        if constant_time_eq(given.as_bytes(), token.as_bytes()) {
            let cookie = format!("{TOKEN_COOKIE}={given}; Path=/; HttpOnly; SameSite=Strict");
            return (StatusCode::SEE_OTHER, [(header::SET_COOKIE, cookie), (header::LOCATION, "/ui".into())])
                .into_response();
        }
    } else if cookie_token(&request).is_some_and(|c| constant_time_eq(c.as_bytes(), token.as_bytes())) {
        return (html, PAGE).into_response();
    }
    (StatusCode::UNAUTHORIZED, html, TOKEN_FORM).into_response()
}

/// The page asked for the API token.
const TOKEN_FORM: &str = "<!doctype html><html lang=en><meta charset=utf-8>\
    <meta name=viewport content=\"width=device-width, initial-scale=1\"><title>twinmesh: API token</title>\
    <link rel=stylesheet href=/ui/app.css><main class=gate><h1>twinmesh</h1>\
    <p>This agent needs its API token.</p><form method=get action=/ui>\
    <label>Token <input name=token type=password autocomplete=current-password autofocus></label> \
    <button>Open</button></form></main></html>";

/// The token cookie of a request, if any.
pub(super) fn cookie_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
}

/// Most items a list answers (`?limit=`): a larger limit is refused, not
/// cut, so a client learns the bound (the OpenAPI document says it too).
pub const MAX_LIMIT: usize = 1000;

/// The query of a list (`/v1/jobs`, `/v1/actions`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    limit: Option<usize>,
}

impl ListQuery {
    /// `?limit=`: 100 when not given; outside 1–[`MAX_LIMIT`] a 400 that
    /// names the parameter.
    pub(super) fn limit(&self) -> Result<usize, super::ApiError> {
        match self.limit {
            None => Ok(100),
            Some(n @ 1..=MAX_LIMIT) => Ok(n),
            Some(n) => Err(super::ApiError::field(
                StatusCode::BAD_REQUEST,
                format!("limit: {n} is outside 1–{MAX_LIMIT}"),
                "limit",
            )),
        }
    }
}

/// `GET /v1/jobs`: the most recent jobs, newest first (unfinished ones
/// first), as summaries; `?limit=` (default 100, at most [`MAX_LIMIT`]).
pub(super) async fn list(
    State(ctx): State<Ctx>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, super::ApiError> {
    let Query(q) = q.map_err(|e| super::ApiError::field(StatusCode::BAD_REQUEST, e.body_text(), "query"))?;
    let limit = q.limit()?;
    Ok(axum::Json(jobs_json(&ctx.agent, limit)).into_response())
}

fn jobs_json(agent: &Agent, limit: usize) -> Value {
    Value::Array(agent.recent_jobs(limit).iter().map(summary).collect())
}

/// One job in a list.
pub(super) fn summary(j: &JobRecord) -> Value {
    let p = j.plan.as_ref();
    json!({
        "id": j.id,
        "state": j.state,
        "policy": j.policy,
        "dry_run": j.dry_run,
        "submitted_to": j.submitted_to,
        "planner": j.planner,
        "accepted_at_ms": j.accepted_at_ms,
        "route": j.route.as_ref().map(|r| r.agent.clone()),
        "stages": p.map_or(0, |p| p.placements.len()),
        "clusters": p.map(|p| {
            let mut c: Vec<&str> = p.placements.iter().map(|x| x.cluster.as_str()).collect();
            c.dedup();
            c
        }),
        "predicted_ms": p.map(|p| p.predicted.latency_ms),
        "deadline_ms": p.and_then(|p| p.predicted.deadline_ms),
        "observed_ms": j.verification.map(|v| v.latency.observed),
        "error_pct": j.verification.map(|v| v.latency.rel_error * 100.0),
        "verified": j.verification.map(|v| v.accepted),
        "actions": j.notes.iter().filter(|n| n.starts_with("preemptive")).count(),
        "error": j.error,
    })
}

/// The twin as the page draws it: one compact row per node (a 1,000-node
/// twin stays a few hundred kilobytes), failures, peers and convergence.
pub(super) fn twin_json(agent: &Agent) -> Value {
    let t = agent.twin();
    let now = now_ms();
    let down = down_nodes(t.failures(), now);
    // The twin's records, and the fabric file's nodes nobody publishes
    // (the planner places on those too).
    let published: std::collections::HashSet<&str> = t.records().map(|r| r.node.name.as_str()).collect();
    let unpublished = agent.cfg.fabric.nodes.iter().filter(|n| !published.contains(n.name.as_str()));
    // Nodes whose agent the failure detector no longer holds alive.
    let liveness = agent.liveness();
    let unreachable: std::collections::HashMap<&str, &'static str> = liveness
        .iter()
        .filter(|(_, v)| v.state.as_str() != "alive")
        .map(|(p, v)| (p.as_str(), v.state.as_str()))
        .collect();
    let mut nodes: Vec<Value> = t
        .records()
        .map(|r| (&r.node, Some(r.version)))
        .chain(unpublished.map(|n| (n, None)))
        .map(|(n, version)| {
            json!({
                "name": n.name,
                "cluster": n.cluster,
                "arch": n.hardware.arch.as_str(),
                "formats": n.runtimes,
                "status": if down.contains(&n.name) { "Down" } else { match n.status {
                    twinmesh_common::model::NodeStatus::Ready => "Ready",
                    twinmesh_common::model::NodeStatus::NotReady => "NotReady",
                    twinmesh_common::model::NodeStatus::Cordoned => "Cordoned",
                } },
                "owner_state": n.labels.get(AGENT_LABEL).and_then(|a| unreachable.get(a.as_str())).copied().unwrap_or("alive"),
                "cpu_pct": n.telemetry.cpu_pct,
                "temperature_c": n.telemetry.temperature_c,
                "load": if n.allocatable.cpu > 0.0 { n.allocated.cpu / n.allocatable.cpu } else { 0.0 },
                "backlog_ms": n.backlog_ms,
                "resiliency": n.resiliency,
                "agent": n.labels.get(AGENT_LABEL),
                "version": version,
            })
        })
        .collect();
    nodes.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let failures: Vec<Value> = t
        .failures()
        .map(|f| {
            json!({ "node": f.node, "kind": f.kind, "at_ms": f.at_ms, "duration_ms": f.duration_ms,
                    "active": f.active_at(now), "reporter": f.id.reporter })
        })
        .collect();
    let checks: std::collections::HashMap<String, (bool, f64)> =
        agent.sync_checks().into_iter().map(|(p, same, at)| (p, (same, at))).collect();
    let peers: Vec<Value> = liveness
        .into_iter()
        .map(|(peer, v)| {
            let c = checks.get(&peer);
            json!({ "peer": peer, "state": v.state.as_str(), "reason": v.reason.to_string(), "rtt_ms": v.rtt_ms,
                    "in_sync": c.map(|c| c.0), "checked_ms": c.map(|c| c.1) })
        })
        .collect();
    json!({
        "agent": agent.cfg.name,
        "summary": format!("{:016x}", t.summary()),
        "partition_epoch": agent.partition_epoch(),
        "now_ms": now,
        "nodes": nodes,
        "failures": failures,
        "peers": peers,
        "gossip_in": agent.metrics.gossip_in.load(std::sync::atomic::Ordering::Relaxed),
        "gossip_out": agent.metrics.gossip_out.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// `GET /v1/events`: server-sent events. `twin` (as [`twin_json`]) and
/// `jobs` (as `GET /v1/jobs`) at once, then whenever they change, each
/// at most once a second; a comment every 15 s keeps proxies open.
pub(super) async fn events(State(ctx): State<Ctx>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(4);
    let agent = ctx.agent.clone();
    tokio::spawn(async move {
        let (mut last_twin, mut last_jobs) = (None, None);
        let mut tick = tokio::time::interval(Duration::from_millis(1_000));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let twin = twin_json(&agent);
            let key = fingerprint(&twin, &["now_ms", "gossip_in", "gossip_out"]);
            if last_twin != Some(key) {
                last_twin = Some(key);
                if tx.send(Event::default().event("twin").data(twin.to_string())).await.is_err() {
                    return;
                }
            }
            let jobs = jobs_json(&agent, 100);
            let key = fingerprint(&jobs, &[]);
            if last_jobs != Some(key) {
                last_jobs = Some(key);
                if tx.send(Event::default().event("jobs").data(jobs.to_string())).await.is_err() {
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// A hash of `v` without the top-level keys in `skip` (those that change
/// every time without the content changing).
fn fingerprint(v: &Value, skip: &[&str]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
                k.hash(&mut h);
                x.to_string().hash(&mut h);
            }
        }
        other => other.to_string().hash(&mut h),
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_cookie_is_found_among_others() {
        let mut h = axum::http::HeaderMap::new();
        h.append(header::COOKIE, "a=1; twinmesh_token=s3cret; b=2".parse().unwrap());
        assert_eq!(cookie_token(&h), Some("s3cret"));
        let mut h = axum::http::HeaderMap::new();
        h.append(header::COOKIE, "twinmesh_tokenx=1".parse().unwrap());
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn fingerprints_ignore_the_skipped_keys_only() {
        let a = json!({"now_ms": 1, "nodes": [1, 2]});
        let b = json!({"now_ms": 2, "nodes": [1, 2]});
        let c = json!({"now_ms": 2, "nodes": [1, 3]});
        assert_eq!(fingerprint(&a, &["now_ms"]), fingerprint(&b, &["now_ms"]));
        assert_ne!(fingerprint(&b, &["now_ms"]), fingerprint(&c, &["now_ms"]));
        assert_ne!(fingerprint(&a, &[]), fingerprint(&b, &[]));
    }
}
