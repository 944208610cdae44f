//! The service document (`kind: Service`): a long-running service with
//! replicas, bounds and a latency objective, scaled by the HPA rule
//! (`common::autoscale`) — reactively or on the twin's forecast.
//!
//! ```yaml
//! apiVersion: twinmesh.io/v1
//! kind: Service
//! metadata: { name: web, origin: { cluster: edge-microdc } }
//! spec:
//!   replica: { cpu: 1, mem_gb: 0.5 }
//!   replicas: { min: 2, max: 12, initial: 2 }
//!   service_ms: 60          # mean time per request
//!   objective_ms: 250       # a request later than this is late
//!   target: 0.6             # utilisation per replica the rule aims at
//!   scaling: predictive     # fixed | reactive | predictive
//!   load:                   # offered load: from when, how fast, how many
//!     - { from_s: 0, rps: 20, requests: 1800 }
//!     - { from_s: 60, rps: 60, requests: 3600 }
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{API_VERSION, NAME_PATTERN, OriginDoc, SpecError, check_number, deserialize, valid_name};
use crate::autoscale::{Phase, ScaleConfig, Scaling, ServiceCase};

/// The service document as written by a user; its JSON Schema is the
/// API's, as [`super::JobDocument`]'s is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceDocument {
    /// Must be [`API_VERSION`].
    #[serde(rename = "apiVersion")]
    #[schemars(extend("const" = "twinmesh.io/v1"))]
    pub api_version: String,
    /// `Service`.
    #[schemars(extend("const" = "Service"))]
    pub kind: String,
    /// Name and origin.
    pub metadata: ServiceMeta,
    /// Replicas, objective, load.
    pub spec: ServiceSpec,
}

/// `metadata` of a service document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceMeta {
    /// Lowercase letters, digits and `-`.
    #[schemars(length(min = 1, max = 40), pattern(NAME_PATTERN))]
    pub name: String,
    /// Where its clients are.
    pub origin: OriginDoc,
}

/// What one replica holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicaDoc {
    /// Cores.
    #[schemars(range(max = 1024.0), extend("exclusiveMinimum" = 0))]
    pub cpu: f64,
    /// Memory (GB).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 4096.0))]
    pub mem_gb: f64,
}

/// Bounds on the replicas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicasDoc {
    /// Fewest.
    #[schemars(range(max = MAX_REPLICAS))]
    pub min: u32,
    /// Most.
    #[schemars(range(min = 1, max = MAX_REPLICAS))]
    pub max: u32,
    /// At the start (default: `min`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = MAX_REPLICAS))]
    pub initial: Option<u32>,
}

/// One phase of offered load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadPhase {
    /// From this many seconds after the start.
    #[schemars(range(min = 0.0, max = 86_400.0))]
    pub from_s: f64,
    /// Requests per second (Poisson).
    #[schemars(range(max = 1_000_000.0), extend("exclusiveMinimum" = 0))]
    pub rps: f64,
    /// How many requests the phase sends.
    #[schemars(range(min = 1, max = MAX_REQUESTS))]
    pub requests: u64,
}

fn default_target() -> f64 {
    0.6
}
fn default_tolerance() -> f64 {
    0.1
}
fn default_period() -> f64 {
    15.0
}
fn default_cold_start() -> f64 {
    5.0
}
fn default_scaling() -> String {
    "predictive".into()
}

/// `spec` of a service document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// What each replica holds.
    pub replica: ReplicaDoc,
    /// Bounds.
    pub replicas: ReplicasDoc,
    /// Mean time a replica takes per request (ms; exponential).
    #[schemars(range(max = 3_600_000.0), extend("exclusiveMinimum" = 0))]
    pub service_ms: f64,
    /// A request answered later than this (ms) is late.
    #[schemars(range(max = 3_600_000.0), extend("exclusiveMinimum" = 0))]
    pub objective_ms: f64,
    /// Utilisation per replica the rule aims at (0–1].
    #[serde(default = "default_target")]
    #[schemars(range(max = 1.0), extend("exclusiveMinimum" = 0))]
    pub target: f64,
    /// No change while |observed / target − 1| is within this.
    #[serde(default = "default_tolerance")]
    #[schemars(range(min = 0.0, max = 0.99))]
    pub tolerance: f64,
    /// How often the rule is applied (s).
    #[serde(default = "default_period")]
    #[schemars(range(max = 86_400.0), extend("exclusiveMinimum" = 0))]
    pub period_s: f64,
    /// How long a new replica takes to be ready (s).
    #[serde(default = "default_cold_start")]
    #[schemars(range(min = 0.0, max = 86_400.0))]
    pub cold_start_s: f64,
    /// `fixed` (stay at `min`), `reactive` (the HPA rule on the last
    /// period) or `predictive` (on the twin's forecast, checked in the
    /// DES).
    #[serde(default = "default_scaling")]
    #[schemars(extend("enum" = ["fixed", "reactive", "predictive"]))]
    pub scaling: String,
    /// The offered load.
    #[schemars(length(min = 1))]
    pub load: Vec<LoadPhase>,
}

/// A one-stage job of a replica's size and one request's work from the
/// service's origin: where a greedy plan puts it is where a new replica
/// goes (the clients' latency weighs as it does per request). The one rule
/// the agent, `twinmesh plan` and the simulator place replicas with.
pub fn replica_job(
    service: &str,
    cluster: &str,
    cpu: f64,
    mem_gb: f64,
    service_ms: f64,
) -> Result<crate::job::Job, SpecError> {
    super::parse_job(&format!(
        r#"{{"apiVersion":"{API_VERSION}","metadata":{{"name":"{service}-replica","origin":{{"cluster":"{cluster}"}}}},"spec":{{"stages":[{{"id":"replica","compute":{{"cpu":{cpu},"mem_gb":{mem_gb},"duration_ms":{service_ms}}}}}]}}}}"#
    ))
}

impl ServiceDocument {
    /// This service's [`replica_job`].
    pub fn replica_job(&self) -> Result<crate::job::Job, SpecError> {
        let s = &self.spec;
        replica_job(&self.metadata.name, &self.metadata.origin.cluster, s.replica.cpu, s.replica.mem_gb, s.service_ms)
    }
}

/// Most replicas a service may ask for.
pub const MAX_REPLICAS: u32 = 1_000;
/// Most requests a service's load may send, all phases together.
pub const MAX_REQUESTS: u64 = 10_000_000;

/// The document's `kind` (`None` when it has none or cannot be read), to
/// tell a service from a job before parsing either.
pub fn document_kind(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(default)]
        kind: Option<String>,
    }
    deserialize::<Kind>(text).ok()?.kind
}

/// Parses and validates a service document into the case the service
/// DES runs and the scaling mode it asks for; `seed` seeds the arrivals.
pub fn parse_service(text: &str, seed: u64) -> Result<(ServiceDocument, ServiceCase, Scaling), SpecError> {
    let doc: ServiceDocument = deserialize(text)?;
    let (case, mode) = doc.validate(seed)?;
    Ok((doc, case, mode))
}

impl ServiceDocument {
    /// Checks what the parser cannot and builds the DES case.
    pub fn validate(&self, seed: u64) -> Result<(ServiceCase, Scaling), SpecError> {
        if self.api_version != API_VERSION {
            return Err(SpecError::invalid(
                "apiVersion",
                format!("unsupported apiVersion '{}' (expected {API_VERSION})", self.api_version),
            ));
        }
        if self.kind != "Service" {
            return Err(SpecError::invalid("kind", format!("expected 'Service', got '{}'", self.kind)));
        }
        let m = &self.metadata;
        if !valid_name(&m.name) || m.name.len() > 40 {
            return Err(SpecError::invalid("metadata.name", format!("'{}': 1–40 of a-z 0-9 -", m.name)));
        }
        if m.origin.cluster.is_empty() || m.origin.cluster.len() > super::MAX_REF_NAME {
            return Err(SpecError::invalid("metadata.origin.cluster", "must name a cluster".to_string()));
        }
        let s = &self.spec;
        check_number("spec.replica.cpu".into(), s.replica.cpu, Some(0.0), 0.0, 1024.0)?;
        check_number("spec.replica.mem_gb".into(), s.replica.mem_gb, None, 0.0, 4096.0)?;
        let r = &s.replicas;
        if r.max == 0 || r.max > MAX_REPLICAS || r.min > MAX_REPLICAS {
            let (f, v) = if r.min > MAX_REPLICAS { ("min", r.min) } else { ("max", r.max) };
            return Err(SpecError::invalid(format!("spec.replicas.{f}"), format!("must be 1–{MAX_REPLICAS}, got {v}")));
        }
        if r.min > r.max {
            return Err(SpecError::inconsistent("spec.replicas.min", format!("{} is more than max {}", r.min, r.max)));
        }
        let initial = r.initial.unwrap_or(r.min);
        if initial < r.min || initial > r.max {
            return Err(SpecError::inconsistent(
                "spec.replicas.initial",
                format!("{initial} is outside [{}, {}]", r.min, r.max),
            ));
        }
        check_number("spec.service_ms".into(), s.service_ms, Some(0.0), 0.0, 3_600_000.0)?;
        check_number("spec.objective_ms".into(), s.objective_ms, Some(0.0), 0.0, 3_600_000.0)?;
        check_number("spec.target".into(), s.target, Some(0.0), 0.0, 1.0)?;
        check_number("spec.tolerance".into(), s.tolerance, None, 0.0, 0.99)?;
        check_number("spec.period_s".into(), s.period_s, Some(0.0), 0.0, 86_400.0)?;
        check_number("spec.cold_start_s".into(), s.cold_start_s, None, 0.0, 86_400.0)?;
        let mode = match s.scaling.as_str() {
            "fixed" => Scaling::Fixed,
            "reactive" => Scaling::Reactive,
            "predictive" => Scaling::Predictive,
            other => {
                return Err(SpecError::invalid(
                    "spec.scaling",
                    format!("'{other}': one of fixed, reactive, predictive"),
                ));
            }
        };
        if s.load.is_empty() {
            return Err(SpecError::invalid("spec.load", "needs at least one phase".to_string()));
        }
        let mut total = 0u64;
        for (i, p) in s.load.iter().enumerate() {
            check_number(format!("spec.load[{i}].from_s"), p.from_s, None, 0.0, 86_400.0)?;
            check_number(format!("spec.load[{i}].rps"), p.rps, Some(0.0), 0.0, 1_000_000.0)?;
            if p.requests == 0 || p.requests > MAX_REQUESTS {
                return Err(SpecError::invalid(
                    format!("spec.load[{i}].requests"),
                    format!("must be 1–{MAX_REQUESTS}, got {}", p.requests),
                ));
            }
            total = total.saturating_add(p.requests);
        }
        if total > MAX_REQUESTS {
            return Err(SpecError::inconsistent(
                "spec.load",
                format!("{total} requests in all, at most {MAX_REQUESTS}"),
            ));
        }
        let case = ServiceCase {
            service_ms: s.service_ms,
            phases: s
                .load
                .iter()
                .map(|p| Phase { from_ms: p.from_s * 1000.0, rps: p.rps, count: p.requests })
                .collect(),
            cold_start_ms: s.cold_start_s * 1000.0,
            objective_ms: s.objective_ms,
            initial,
            scale: ScaleConfig {
                min: r.min,
                max: r.max,
                target: s.target,
                tolerance: s.tolerance,
                period_ms: s.period_s * 1000.0,
            },
            seed,
        };
        Ok((case, mode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "apiVersion: twinmesh.io/v1
kind: Service
metadata: { name: web, origin: { cluster: edge-microdc } }
spec:
  replica: { cpu: 1, mem_gb: 0.5 }
  replicas: { min: 2, max: 12 }
  service_ms: 60
  objective_ms: 250
  scaling: reactive
  load:
    - { from_s: 0, rps: 20, requests: 600 }
    - { from_s: 30, rps: 60, requests: 1800 }
";

    // Rule: a service document becomes the DES's case, defaults filled
    // in (target 0.6, tolerance 0.1, 15 s period, 5 s cold start, initial
    // = min), the mode it names.
    #[test]
    fn a_service_document_becomes_the_des_case() {
        assert_eq!(document_kind(WEB).as_deref(), Some("Service"));
        let (doc, case, mode) = parse_service(WEB, 7).unwrap();
        assert_eq!((doc.metadata.name.as_str(), mode), ("web", Scaling::Reactive));
        assert_eq!((case.initial, case.scale.min, case.scale.max), (2, 2, 12));
        assert_eq!((case.scale.target, case.scale.tolerance, case.scale.period_ms), (0.6, 0.1, 15_000.0));
        assert_eq!((case.cold_start_ms, case.objective_ms, case.service_ms, case.seed), (5_000.0, 250.0, 60.0, 7));
        assert_eq!(case.phases.len(), 2);
        assert_eq!((case.phases[1].from_ms, case.phases[1].rps, case.phases[1].count), (30_000.0, 60.0, 1800));
    }

    // Rule: what is wrong is named by its field.
    #[test]
    fn errors_name_the_field() {
        let bad = |from: &str, to: &str| parse_service(&WEB.replace(from, to), 1).unwrap_err().to_string();
        assert!(bad("max: 12", "max: 1").contains("spec.replicas.min"), "{}", bad("max: 12", "max: 1"));
        assert!(bad("scaling: reactive", "scaling: magic").contains("spec.scaling"));
        assert!(bad("rps: 60", "rps: -1").contains("spec.load[1].rps"));
        assert!(bad("kind: Service", "kind: Job").contains("expected 'Service'"));
        assert!(bad("objective_ms: 250", "objective_ms: 250\n  objectve: 1").contains("unknown field `objectve`"));
        assert!(bad("requests: 600", "requests: 0").contains("spec.load[0].requests"));
        // A job is not a service, and says so.
        assert!(crate::spec::parse_job(WEB).unwrap_err().to_string().contains("expected 'Job', got 'Service'"));
    }
}
