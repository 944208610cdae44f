//! `POST /v1/observe` and `POST /v1/inject`: a failure (or recovery) seen
//! from outside, and one to cause. Their bodies are typed here and the
//! OpenAPI document's schemas are derived from these types
//! ([`super::openapi`]), so the kinds the document lists are the kinds the
//! parser takes: an injection cannot be a recovery, and says so in both.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use twinmesh_common::failures::FailureKind;

use super::{ApiError, Ctx};
use crate::node::Agent;

/// Longest failure one may report or inject: a week.
pub const MAX_FAILURE_MS: u64 = 7 * 24 * 3600 * 1000;

/// What an observer saw happen to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObservedKind {
    /// The node is down.
    NodeDown,
    /// The node is back (the same as `recovered`).
    NodeUp,
    /// The node is back: ends every failure of it that began earlier.
    Recovered,
    /// The node runs slower (heat).
    ThermalThrottle,
    /// The node's network is lossy or slow.
    NetworkDegradation,
    /// The OS crashed; the node reboots.
    SystemCrash,
}

/// A failure to cause: injected failures revert by themselves, so there
/// is no recovery to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InjectedKind {
    /// Cordon the node (Kubernetes) or mark it down.
    NodeDown,
    /// Taint the node as throttled.
    ThermalThrottle,
    /// Mark its network degraded.
    NetworkDegradation,
    /// Cordon the node as crashed.
    SystemCrash,
}

/// `POST /v1/observe`'s body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// What happened.
    pub kind: ObservedKind,
    /// A node of the twin (the served document lists them).
    #[schemars(length(min = 1))]
    pub node: String,
    /// How long it lasts (ms).
    #[serde(default = "default_failure_ms")]
    #[schemars(range(max = MAX_FAILURE_MS))]
    pub duration_ms: u64,
}

/// `POST /v1/inject`'s body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    /// What to cause.
    pub kind: InjectedKind,
    /// A node of the twin (the served document lists them).
    #[schemars(length(min = 1))]
    pub node: String,
    /// When it reverts (ms from now).
    #[serde(default = "default_failure_ms")]
    #[schemars(range(max = MAX_FAILURE_MS))]
    pub duration_ms: u64,
}

fn default_failure_ms() -> u64 {
    60_000
}

impl From<ObservedKind> for FailureKind {
    fn from(k: ObservedKind) -> Self {
        match k {
            ObservedKind::NodeDown => FailureKind::NodeDown,
            ObservedKind::NodeUp | ObservedKind::Recovered => FailureKind::Recovered,
            ObservedKind::ThermalThrottle => FailureKind::ThermalThrottle,
            ObservedKind::NetworkDegradation => FailureKind::NetworkDegradation,
            ObservedKind::SystemCrash => FailureKind::SystemCrash,
        }
    }
}

impl From<InjectedKind> for FailureKind {
    fn from(k: InjectedKind) -> Self {
        match k {
            InjectedKind::NodeDown => FailureKind::NodeDown,
            InjectedKind::ThermalThrottle => FailureKind::ThermalThrottle,
            InjectedKind::NetworkDegradation => FailureKind::NetworkDegradation,
            InjectedKind::SystemCrash => FailureKind::SystemCrash,
        }
    }
}

/// Reads a body (JSON, whatever the content type: curl sends form-encoded
/// headers by default) and checks what its type cannot: the duration's
/// bound and that the node is in the twin. Errors name the field.
pub(super) fn parse<T: serde::de::DeserializeOwned>(
    agent: &Agent,
    body: &str,
    node: impl Fn(&T) -> (&str, u64),
) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_str(body);
    let b: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path.is_empty() || path == "." { "." } else { path.as_str() };
        ApiError::field(StatusCode::BAD_REQUEST, format!("invalid event: {field}: {}", e.inner()), field)
    })?;
    de.end().map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, format!("invalid event: {e}"), "."))?;
    let (name, duration_ms) = node(&b);
    if duration_ms > MAX_FAILURE_MS {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            format!("duration_ms: {duration_ms} is more than {MAX_FAILURE_MS} (a week)"),
            "duration_ms",
        ));
    }
    if agent.view().node_index(name).is_none() {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, format!("node: '{name}' is not in the twin"), "node"));
    }
    Ok(b)
}

pub(super) async fn observe(
    State(ctx): State<Ctx>,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let b: Observation = parse(&ctx.agent, &body, |b: &Observation| (&b.node, b.duration_ms))?;
    let ev = ctx.agent.observe_failure(&b.node, b.kind.into(), b.duration_ms).await;
    Ok((StatusCode::ACCEPTED, Json(ev)).into_response())
}

/// Injects a failure: on Kubernetes, cordons the node (node_down,
/// system_crash) or taints it (thermal_throttle) and reverts after
/// `duration_ms`; on the virtual fabric, records it. Either way the event
/// enters the twin and spreads.
pub(super) async fn inject(
    State(ctx): State<Ctx>,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let b: Injection = parse(&ctx.agent, &body, |b: &Injection| (&b.node, b.duration_ms))?;
    let kind = FailureKind::from(b.kind);
    let revert_at = crate::node::now_ms() + b.duration_ms;
    let view = ctx.agent.view();
    let cluster = view
        .node_index(&b.node)
        .map(|n| view.latency.names()[view.nodes.cluster[n] as usize].clone())
        .unwrap_or_default();
    let action = ctx
        .agent
        .actuator()
        .inject(&cluster, &b.node, kind, b.duration_ms)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e))?;
    let ev = ctx.agent.observe_failure(&b.node, kind, b.duration_ms).await;
    Ok((StatusCode::ACCEPTED, Json(json!({ "event": ev, "action": action, "reverts_at_ms": revert_at })))
        .into_response())
}
