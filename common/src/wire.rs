//! Messages agents exchange, and their encoding.
//!
//! A frame is one version byte followed by the postcard encoding of a
//! [`Message`]. A frame with an unknown version, or one that does not
//! decode, is an error the caller counts and drops — a peer running a newer
//! release, or a corrupt packet, must never crash an agent.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::failures::FailureEvent;
use crate::twin::{Delta, Digest, NodeRecord};

/// The wire version this build speaks.
pub const WIRE_VERSION: u8 = 3;

/// Largest frame accepted (bytes). A full 10,000-node twin delta is well
/// below this.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// A job handed from one agent to another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobHandoff {
    /// Job id (idempotency key).
    pub id: String,
    /// The job document as submitted (JSON).
    pub document: String,
    /// Policy name.
    pub policy: String,
    /// Plan only, do not act.
    pub dry_run: bool,
    /// Agent the job was submitted to.
    pub submitted_to: String,
}

/// A planner's answer to a forwarded job: it planned (or already had) it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Forwarded {
    /// The agent that planned it.
    pub planner: String,
    /// Whether this forward created it (false: the planner had it).
    pub created: bool,
    /// The planner's record of the job.
    pub job: crate::record::JobRecord,
}

/// Why a planner refused a forwarded job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum ForwardRefusal {
    /// The document is invalid (the planner's validation error).
    #[error("{0}")]
    Invalid(String),
    /// No node can run it.
    #[error("{0}")]
    Unplaceable(String),
    /// The planner could not make it durable; try again.
    #[error("not accepted: {0}")]
    NotAccepted(String),
}

/// A planner asks a node's owner to run one stage (the virtual
/// counterpart of creating a pod on the target cluster).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRun {
    /// Job id.
    pub job: String,
    /// Stage id.
    pub stage: String,
    /// Plan, stage index and attempt: names the run, so a retried request
    /// is the same run, not a second one, and another plan's run of the
    /// same stage is another run.
    pub key: crate::execution::RunKey,
    /// Target node.
    pub node: String,
    /// Execution format.
    pub format: crate::model::Format,
    /// The stage's demand.
    pub compute: crate::job::Compute,
    /// When its inputs are on the node (absolute fabric ms).
    pub ready_at: f64,
}

/// The owner's answer: when the stage runs on its node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageSlot {
    /// Start (absolute fabric ms): ready, or later if the node was full.
    pub start: f64,
    /// End (absolute fabric ms).
    pub end: f64,
    /// What the owner's uncalibrated model predicts for the run (ms).
    pub model_ms: f64,
}

/// Everything agents say to each other.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Gossip: a node record changed.
    Record(NodeRecord),
    /// Gossip: a failure happened.
    Failure(FailureEvent),
    /// Anti-entropy: "this is what I have".
    SyncRequest(Digest),
    /// Anti-entropy: "here is what you lack, and what I have".
    SyncResponse {
        /// Entries the requester lacks.
        delta: Delta,
        /// The responder's digest, so the requester can push back.
        digest: Digest,
    },
    /// Anti-entropy: a push of what the other side lacked.
    SyncPush(Delta),
    /// Anti-entropy, first step: "my twin's summary is this"
    /// ([`crate::twin::Twin::summary`]). Answered with [`Message::InSync`]
    /// or [`Message::OutOfSync`]; only then are digests exchanged.
    SyncCheck(u64),
    /// Answer to [`Message::SyncCheck`]: same summary.
    InSync,
    /// Answer to [`Message::SyncCheck`]: the replicas differ; here are the
    /// answerer's per-bucket summaries, so the exchange that follows covers
    /// only the buckets that differ.
    OutOfSync(Vec<u64>),
    /// Plan (and act on) this job: you are nearest its origin.
    Forward(JobHandoff),
    /// Answer to [`Message::Forward`]: the planner's record of the job,
    /// or why it refused it.
    ForwardResult {
        /// Job id.
        id: String,
        /// What the planner did.
        result: Result<Box<Forwarded>, ForwardRefusal>,
    },
    /// Run a stage on a node you own.
    RunStage(StageRun),
    /// Answer to [`Message::RunStage`]: the slot, or why not.
    StageScheduled(Result<StageSlot, crate::execution::Refusal>),
    /// Give back a run's booking from `at` (absolute fabric ms) on.
    ReleaseStage {
        /// Job id.
        job: String,
        /// The run.
        key: crate::execution::RunKey,
        /// Its node.
        node: String,
        /// From when.
        at: f64,
    },
    /// Liveness probe: "are you there?"
    Ping(u64),
    /// Answer to [`Message::Ping`], echoing its nonce.
    Pong(u64),
    /// Acknowledges a message that needs no other answer.
    Ack,
    /// Gossip: this agent is leaving the mesh (a graceful shutdown); its
    /// peers mark it dead at once instead of waiting for probes to fail.
    Leave(String),
    /// After a partition: "these are the jobs I planned lately"
    /// ([`crate::reconcile`]). Answered with [`Message::PlannedToo`].
    Planned(Vec<crate::reconcile::PlannedCopy>),
    /// Answer to [`Message::Planned`]: the answerer's own copies of the
    /// same ids.
    PlannedToo(Vec<crate::reconcile::PlannedCopy>),
    /// Reserve a stage on a node you own for its predicted window (a plan
    /// was committed); answered with [`Message::StageScheduled`] — the
    /// window.
    ReserveStage {
        /// The run, with the time its inputs are predicted to be there.
        run: StageRun,
        /// Its predicted run time (ms).
        duration_ms: f64,
    },
}

impl Message {
    /// A short name, for metrics labels.
    pub const fn kind(&self) -> &'static str {
        match self {
            Message::Record(_) => "record",
            Message::Failure(_) => "failure",
            Message::SyncRequest(_) => "sync_request",
            Message::SyncResponse { .. } => "sync_response",
            Message::SyncPush(_) => "sync_push",
            Message::SyncCheck(_) => "sync_check",
            Message::InSync => "in_sync",
            Message::OutOfSync(_) => "out_of_sync",
            Message::Forward(_) => "forward",
            Message::ForwardResult { .. } => "forward_result",
            Message::RunStage(_) => "run_stage",
            Message::StageScheduled(_) => "stage_scheduled",
            Message::ReleaseStage { .. } => "release_stage",
            Message::Ping(_) => "ping",
            Message::Pong(_) => "pong",
            Message::Ack => "ack",
            Message::Leave(_) => "leave",
            Message::Planned(_) => "planned",
            Message::PlannedToo(_) => "planned_too",
            Message::ReserveStage { .. } => "reserve_stage",
        }
    }
}

/// Why a frame was dropped.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Zero bytes.
    #[error("empty frame")]
    Empty,
    /// Over [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// A version this build does not speak.
    #[error("unknown wire version {0} (this agent speaks {WIRE_VERSION})")]
    UnknownVersion(u8),
    /// Not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl WireError {
    /// A label for metrics (`dropped{reason=…}`).
    pub const fn metric_label(&self) -> &'static str {
        match self {
            WireError::Empty => "empty",
            WireError::TooLarge(_) => "too_large",
            WireError::UnknownVersion(_) => "unknown_version",
            WireError::Malformed(_) => "malformed",
        }
    }
}

/// Encodes a message as a frame.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    // Encoding our own types into a Vec cannot fail.
    out.extend(postcard::to_allocvec(msg).expect("messages encode"));
    out
}

/// Length of a gossip message id.
pub const MESSAGE_ID_LEN: usize = 20;

/// The gossipsub message id of a frame: the first 20 bytes of SHA-256 of
/// the frame (the gossipsub message's `data`), whoever published it. Any
/// implementation reproduces it from the bytes alone, so duplicates are
/// recognised across implementations (docs/interop.md); rust-libp2p's
/// default (the publisher's peer id and sequence number as text) is
/// reproduced by no other implementation.
pub fn message_id(frame: &[u8]) -> [u8; MESSAGE_ID_LEN] {
    use sha2::Digest;
    let h = sha2::Sha256::digest(frame);
    let mut id = [0u8; MESSAGE_ID_LEN];
    id.copy_from_slice(&h[..MESSAGE_ID_LEN]);
    id
}

/// Decodes a frame.
pub fn decode(frame: &[u8]) -> Result<Message, WireError> {
    let (&version, body) = frame.split_first().ok_or(WireError::Empty)?;
    if frame.len() > MAX_FRAME {
        return Err(WireError::TooLarge(frame.len()));
    }
    if version != WIRE_VERSION {
        return Err(WireError::UnknownVersion(version));
    }
    let (msg, rest) = postcard::take_from_bytes::<Message>(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn message_ids_are_sha256_of_the_frame() {
        // Reference values from another SHA-256 implementation
        // (`printf abc | sha256sum`, and of the empty input).
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(&message_id(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a3");
        assert_eq!(hex(&message_id(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4");
        let a = encode(&Message::Ping(7));
        assert_eq!(message_id(&a), message_id(&encode(&Message::Ping(7))));
        assert_ne!(message_id(&a), message_id(&encode(&Message::Ping(8))));
    }

    fn sample() -> Message {
        let mut t = crate::twin::Twin::new();
        let rec = t.update_own(crate::fabric::reference().nodes[0].clone());
        Message::SyncResponse { delta: Delta { records: vec![rec], failures: vec![] }, digest: t.digest() }
    }

    #[test]
    fn round_trips() {
        for m in [sample(), Message::Ack, Message::SyncRequest(Digest::default()), Message::Ping(7), Message::Pong(7)] {
            assert_eq!(decode(&encode(&m)).unwrap(), m);
        }
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(decode(&[]), Err(WireError::Empty));
        let mut f = encode(&sample());
        f[0] = 9;
        assert_eq!(decode(&f), Err(WireError::UnknownVersion(9)));
        let f = encode(&sample());
        assert!(matches!(decode(&f[..f.len() / 2]), Err(WireError::Malformed(_))));
        let mut f = encode(&Message::Ack);
        f.push(0);
        assert!(matches!(decode(&f), Err(WireError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn corrupted_frames_never_panic(flip in 1usize..200, val in any::<u8>()) {
            let mut f = encode(&sample());
            let i = flip % f.len();
            f[i] = val;
            let _ = decode(&f);
        }
    }
}
