//! What a driver of the job protocol did, one line per decision: the
//! agent logs them (target `twinmesh::decision`), the simulator lists
//! them, so one scenario run by both can be compared decision by
//! decision (tests/tests/scenario.rs).

use serde::{Deserialize, Serialize};

/// One decision of the job protocol, as carried out. `job` is the job's
/// id (a scripted scenario's jobs have their names as ids in the
/// simulator; a comparison maps the agent's ids to names).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decision {
    /// The job was forwarded to `to`, the agent nearest its origin.
    Forward {
        /// Job id.
        job: String,
        /// The agent.
        to: String,
    },
    /// The forward to `to` had no answer in time.
    Unanswered {
        /// Job id.
        job: String,
        /// The silent agent.
        to: String,
    },
    /// The job is planned by this agent.
    PlanHere {
        /// Job id.
        job: String,
        /// The agent that forwarded it here, if one did.
        from: Option<String>,
    },
    /// A booking (or its repetition) was asked of a node's owner.
    Book {
        /// Job id.
        job: String,
        /// Stage id.
        stage: String,
        /// The owner agent.
        owner: String,
        /// Which try (1-based).
        attempt: u32,
    },
    /// The owner never answered: the run is refused as unreachable.
    Unreachable {
        /// Job id.
        job: String,
        /// Stage id.
        stage: String,
        /// The owner agent.
        owner: String,
    },
    /// A run whose node's owner was out of reach past the grace fails
    /// over.
    FailOver {
        /// Job id.
        job: String,
        /// Stage id.
        stage: String,
        /// The owner agent.
        owner: String,
    },
    /// An exchange of planned jobs with `peer` (a reconciliation).
    Reconcile {
        /// The peer.
        peer: String,
    },
    /// This agent's copy of the job gave way to `by`'s.
    Superseded {
        /// Job id.
        job: String,
        /// The planner whose copy stays.
        by: String,
    },
}

impl Decision {
    /// The job it is about, if it is about one.
    pub fn job(&self) -> Option<&str> {
        match self {
            Decision::Forward { job, .. }
            | Decision::Unanswered { job, .. }
            | Decision::PlanHere { job, .. }
            | Decision::Book { job, .. }
            | Decision::Unreachable { job, .. }
            | Decision::FailOver { job, .. }
            | Decision::Superseded { job, .. } => Some(job),
            Decision::Reconcile { .. } => None,
        }
    }
}

/// The log line an agent writes for a decision it made: the marker, then
/// one JSON object.
pub fn log_line(agent: &str, d: &Decision) -> String {
    let mut v = serde_json::to_value(d).expect("decisions serialise");
    v["agent"] = serde_json::Value::String(agent.to_string());
    format!("{MARKER}{v}")
}

/// What precedes a decision's JSON in the agent's log.
pub const MARKER: &str = "decision: ";

/// Reads the decisions out of an agent's log: (agent, decision), in the
/// order written.
pub fn from_log(log: &str) -> Vec<(String, Decision)> {
    // The logger's target (`twinmesh::decision: `) comes first: the marker
    // is the one the JSON object follows.
    let start = format!("{MARKER}{{");
    log.lines()
        .filter_map(|l| {
            let json = &l[l.find(&start)? + MARKER.len()..];
            let mut v: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
            let agent = v.as_object_mut()?.remove("agent")?.as_str()?.to_string();
            Some((agent, serde_json::from_value(v).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_decision_reads_back_with_its_agent() {
        let d = Decision::Book { job: "j".into(), stage: "s".into(), owner: "lab-pc-01".into(), attempt: 2 };
        let log = format!(
            "2026-12-04T08:00:00Z DEBUG twinmesh::decision: {}\nnoise decision: {{not json\n",
            log_line("dc-x86-01", &d)
        );
        assert_eq!(from_log(&log), vec![("dc-x86-01".to_string(), d.clone())]);
        assert_eq!(d.job(), Some("j"));
        assert_eq!(Decision::Reconcile { peer: "p".into() }.job(), None);
    }
}
