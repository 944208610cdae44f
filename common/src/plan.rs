//! A plan: where each stage of a job runs, in which format, what the twin
//! predicts for it, and a shadow placement to fail over to. Their JSON
//! Schemas (the API's `Plan`) say these fields and no others.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::Format;
use crate::policy::Policy;

/// One stage's placement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Placement {
    /// Stage id.
    pub stage: String,
    /// Node name.
    pub node: String,
    /// Cluster of the node.
    pub cluster: String,
    /// Execution format.
    pub format: Format,
}

/// Predicted timing of one stage, from the job's submission.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct StageTiming {
    /// Stage id.
    pub stage: String,
    /// When its inputs are on its node (ms).
    pub ready_ms: f64,
    /// When it starts: ready, or later if its node is busy (ms).
    pub start_ms: f64,
    /// When it finishes (ms).
    pub finish_ms: f64,
    /// Its run time (ms).
    pub compute_ms: f64,
    /// Its energy (J).
    pub energy_j: f64,
}

/// What the twin predicts for a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Prediction {
    /// End-to-end latency from submission (ms).
    pub latency_ms: f64,
    /// Energy of all stages (J).
    pub energy_j: f64,
    /// Probability that at least one stage's node fails during its run.
    pub risk: f64,
    /// The job's deadline, if any (ms).
    pub deadline_ms: Option<f64>,
    /// Deadline minus latency (negative: late).
    pub deadline_slack_ms: Option<f64>,
    /// Whether the nominal latency meets the deadline (true without one).
    pub meets_deadline: bool,
    /// CVaR of latency at the policy's α, for plans made by CVaR.
    // No `skip_serializing_if`: plans are stored with postcard, which is
    // not self-describing and cannot skip fields.
    #[serde(default)]
    pub tail_latency_ms: Option<f64>,
    /// Per-stage timing, in document order.
    pub stages: Vec<StageTiming>,
}

/// A placement decision for a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Plan {
    /// Job name.
    pub job: String,
    /// Policy that made it.
    pub policy: Policy,
    /// Primary placements, in document order.
    pub placements: Vec<Placement>,
    /// Fail-over placements on other failure domains (resilient policy).
    pub shadow: Vec<Option<Placement>>,
    /// The prediction for the primary placements.
    pub predicted: Prediction,
    /// Why the plan looks as it does (fallbacks, deadline warnings).
    pub notes: Vec<String>,
}
