//! A job as the agent keeps it: the document, the plan, what happened and
//! the verdict. One record per job id, rewritten as the job moves on.

use crate::model::Format;
use crate::plan::Plan;
use crate::routing::Route;
use crate::verify::Verification;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Version byte in front of every stored value (job records, twin records,
/// failure events in the agent's database). Version 1 was the same layout
/// before job records carried their committed prediction
/// ([`JobRecord::committed`]); it is still read.
pub const STORED_VERSION: u8 = 2;

/// Encodes a value as the agent stores it: the version byte, then postcard.
pub fn encode_stored<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![STORED_VERSION];
    out.extend(postcard::to_allocvec(v).expect("stored types encode"));
    out
}

/// Decodes a stored value; the error says what is wrong with it. Trailing
/// bytes are an error: a value is written whole or not at all.
pub fn decode_stored<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        None => Err("empty value".into()),
        Some((&STORED_VERSION, body)) => whole(body),
        // Version 1: as written, or — a job record — without the field
        // added since (an absent `committed` is postcard's `None`, 0).
        Some((1, body)) => whole(body).or_else(|e| {
            let mut more = body.to_vec();
            more.push(0);
            whole(&more).map_err(|_| e)
        }),
        Some((v, _)) => Err(format!("unknown value version {v}")),
    }
}

fn whole<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    match postcard::take_from_bytes(body) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(format!("{} trailing bytes", rest.len())),
        Err(e) => Err(e.to_string()),
    }
}

/// What the plan's stages' owners reserved when the job started, and the
/// prediction that follows from it: the job's committed prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Committed {
    /// Median latency from submission (ms): the end of the last reserved
    /// window.
    pub p50_ms: f64,
    /// 90th-percentile latency (ms), over the learned run-time spread.
    pub p90_ms: f64,
    /// Median energy (J).
    pub p50_j: f64,
    /// 90th-percentile energy (J).
    pub p90_j: f64,
    /// Each stage's reserved window (ms from submission), document order.
    pub windows: Vec<Window>,
    /// How many times the prediction was committed again after the agent
    /// acted on the job (a preemptive move, restart or replica changes
    /// where and when its stages run): 0 for the prediction made at the
    /// start.
    #[serde(default)]
    pub revision: u32,
    /// The median committed at the start (ms), kept through revisions.
    #[serde(default)]
    pub first_p50_ms: f64,
}

/// One stage's reserved window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Stage id.
    pub stage: String,
    /// Node it was reserved on.
    pub node: String,
    /// Start (ms from submission).
    pub start_ms: f64,
    /// End (ms from submission).
    pub end_ms: f64,
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Committed, not yet planned.
    Accepted,
    /// Planned, stages not yet running.
    Planned,
    /// Stages running.
    Running,
    /// Every stage finished.
    Succeeded,
    /// A stage could not finish, or no plan could be made.
    Failed,
    /// Dry run: planned, never acted on.
    DryRun,
    /// Planned on both sides of a partition; after the heal the other
    /// side's plan was kept (`common::reconcile`) and this copy stopped.
    Superseded,
}

impl JobState {
    /// Whether the job will change no more.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::DryRun | JobState::Superseded)
    }
}

/// One stage's run as observed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageObservation {
    /// Stage id.
    pub stage: String,
    /// Node it ran on.
    pub node: String,
    /// Format.
    pub format: Format,
    /// Start, ms after the job was accepted (fabric time).
    pub start_ms: f64,
    /// Finish, ms after the job was accepted (fabric time).
    pub finish_ms: f64,
    /// Run time observed (fabric ms).
    pub compute_ms: f64,
    /// Run time the uncalibrated model predicted (fabric ms).
    pub model_ms: f64,
    /// Energy (J).
    pub energy_j: f64,
    /// Attempts it took.
    pub attempts: u32,
}

/// A job and everything known about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Id (idempotency key).
    pub id: String,
    /// The document as submitted (JSON).
    pub document: String,
    /// Policy asked for.
    pub policy: String,
    /// Plan only.
    pub dry_run: bool,
    /// Agent it was submitted to.
    pub submitted_to: String,
    /// Agent that planned it.
    pub planner: String,
    /// Wall-clock ms (Unix) when accepted.
    pub accepted_at_ms: u64,
    /// State.
    pub state: JobState,
    /// The plan, once made.
    pub plan: Option<Plan>,
    /// How it was routed.
    pub route: Option<Route>,
    /// Why routing or planning went as it did.
    pub notes: Vec<String>,
    /// Observed stages.
    pub observations: Vec<StageObservation>,
    /// Predicted vs observed, once finished.
    pub verification: Option<Verification>,
    /// Why it failed.
    pub error: Option<String>,
    /// The committed prediction: reserved windows, median and 90th
    /// percentile (once its stages were reserved).
    #[serde(default)]
    pub committed: Option<Committed>,
}

impl JobRecord {
    /// A newly accepted job.
    pub fn accepted(
        id: String,
        document: String,
        policy: String,
        dry_run: bool,
        submitted_to: String,
        now_ms: u64,
    ) -> Self {
        JobRecord {
            id,
            document,
            policy,
            dry_run,
            planner: submitted_to.clone(),
            submitted_to,
            accepted_at_ms: now_ms,
            state: JobState::Accepted,
            plan: None,
            route: None,
            notes: Vec::new(),
            observations: Vec::new(),
            verification: None,
            error: None,
            committed: None,
        }
    }
}

/// A job's id: its name and a fingerprint of its document, so the same
/// document submitted twice (a retry, a forward, a duplicate) is one job.
pub fn job_id(name: &str, canonical_document: &str) -> String {
    let h = canonical_document
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{name}-{:08x}", h as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> JobRecord {
        let mut r = JobRecord::accepted("j-1".into(), "{}".into(), "greedy".into(), false, "a".into(), 7);
        r.error = Some("late".into());
        r
    }

    #[test]
    fn a_job_record_stored_by_version_1_is_still_read() {
        // Version 1 wrote the same fields without `committed` (the last).
        let mut v2 = encode_stored(&record());
        assert_eq!(v2[0], STORED_VERSION);
        assert_eq!(v2.pop(), Some(0), "an absent committed prediction is postcard's None");
        v2[0] = 1;
        let back: JobRecord = decode_stored(&v2).expect("version 1 decodes");
        assert_eq!(back, record());
        assert!(back.committed.is_none());
        // A truncated version-1 record is still refused.
        assert!(decode_stored::<JobRecord>(&v2[..v2.len() - 3]).is_err());
    }

    #[test]
    fn a_committed_prediction_survives_storage() {
        let mut r = record();
        r.committed = Some(Committed {
            p50_ms: 1200.0,
            p90_ms: 1400.0,
            p50_j: 30.0,
            p90_j: 36.0,
            windows: vec![Window { stage: "s".into(), node: "n".into(), start_ms: 10.0, end_ms: 1200.0 }],
            revision: 1,
            first_p50_ms: 1100.0,
        });
        let back: JobRecord = decode_stored(&encode_stored(&r)).unwrap();
        assert_eq!(back, r);
        assert_eq!(decode_stored::<JobRecord>(&[9, 0]).unwrap_err(), "unknown value version 9");
    }
}
