//! One placed job's run, as a state machine: the single set of execution
//! rules that the DES, the embedded fabric and the Kubernetes runner all
//! drive, so the twin predicts exactly what the agents do.
//!
//! The machine never waits, sleeps or books anything itself. Its caller
//! feeds it [`ExecEvent`]s with the time they happened and carries out the
//! [`ExecAction`]s it returns:
//!
//! * **reservation** — every stage is reserved with its node's owner when
//!   the job starts, for its predicted window: a first stage is booked at
//!   once; each later stage is reserved as soon as its predecessors' windows
//!   are known (their start plus their predicted run time, plus the
//!   transfer), so work that arrives later goes around the whole plan
//!   ([`crate::capacity`]'s rules; [`ExecConfig::reserve`] off books on
//!   readiness only). The windows are the plan's committed prediction
//!   ([`Execution::reserved_finish`]);
//! * **readiness** — a stage is booked as soon as its predecessors have
//!   finished, for the moment its inputs are on its node (origin latency for
//!   a first stage; each predecessor's finish plus its transfer after),
//!   against its reservation: early where its node has room, late keeping
//!   its rank;
//! * **booking** — on the node's schedule, by the node's owner
//!   ([`crate::capacity::NodeSchedule`]: earliest start from the ready time
//!   at which the stage fits for its whole run — backfilling). Every booking
//!   is keyed by a [`RunKey`] = (plan, stage, attempt), so a second plan of
//!   the same job never inherits the first one's slots;
//! * **failover** — one rule: a stage whose run failed (or whose booking was
//!   refused) goes next to its shadow, then to the best untried node by
//!   earliest predicted finish; when no untried node can host it, it waits
//!   [`ExecConfig::retry_backoff_ms`] and tries the least recently tried
//!   node again; after [`ExecConfig::max_attempts`] the job fails;
//! * **accounting** — observed latency runs from submission to the last
//!   finish, so it includes every attempt, wait and backoff; energy counts
//!   every attempt, the failed ones too.

use serde::{Deserialize, Serialize};

use crate::job::Job;
use crate::model::Format;
use crate::predict::Assignment;
use crate::view::{FabricView, OriginIdx};

/// The execution rules' settings (one set, shared by every driver).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecConfig {
    /// Attempts per stage (bookings refused count) before the job fails.
    pub max_attempts: u16,
    /// Delay before a failed stage is booked again on another node (ms):
    /// the time to notice the failure and restart elsewhere.
    pub failover_delay_ms: f64,
    /// Delay before a stage retries a node it already tried, when no
    /// untried node can host it (ms).
    pub retry_backoff_ms: f64,
    /// Reserve every stage for its predicted window when the job starts
    /// (on by default); off, a stage holds nothing on its node until its
    /// inputs are there.
    #[serde(default = "reserve_by_default")]
    pub reserve: bool,
}

fn reserve_by_default() -> bool {
    true
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig { max_attempts: 3, failover_delay_ms: 1_000.0, retry_backoff_ms: 2_000.0, reserve: true }
    }
}

/// Names one run of one stage: what a node's owner books, and what a
/// repeated request must find again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RunKey {
    /// Digest of the plan being executed.
    pub plan: u64,
    /// Stage index in document order.
    pub stage: u16,
    /// Attempt, from 1.
    pub attempt: u16,
}

/// Why a booking was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The node is down or cordoned.
    NodeDown,
    /// The stage needs more than the node has.
    DoesNotFit,
    /// The node's owner could not be reached.
    Unreachable,
    /// Anything else, said in words.
    Other(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NodeDown => f.write_str("node is down"),
            Refusal::DoesNotFit => f.write_str("stage needs more than the node has"),
            Refusal::Unreachable => f.write_str("node's owner is unreachable"),
            Refusal::Other(s) => f.write_str(s),
        }
    }
}

/// Something that happened to the job, fed to [`Execution::handle`].
#[derive(Clone, Debug, PartialEq)]
pub enum ExecEvent {
    /// The owner booked the run: it starts at `start`.
    Booked {
        /// Which run.
        key: RunKey,
        /// Start (ms, the caller's clock).
        start: f64,
    },
    /// The owner refused the run.
    Refused {
        /// Which run.
        key: RunKey,
        /// Why.
        reason: Refusal,
    },
    /// The run finished (at `now`).
    Finished {
        /// Which run.
        key: RunKey,
    },
    /// The run's node failed under it (at `now`).
    Failed {
        /// Which run.
        key: RunKey,
    },
    /// Stop the job: release what is booked, run nothing more.
    Cancel,
    /// The owner answered a reservation: the window's start, or why not.
    Reserved {
        /// Which run.
        key: RunKey,
        /// Its reserved start (ms), or why it was refused.
        start: Result<f64, Refusal>,
    },
}

/// What the caller must do.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecAction {
    /// Book this run on `node` for when its inputs are there.
    Book {
        /// Which run.
        key: RunKey,
        /// Target node (index in the view).
        node: usize,
        /// Format.
        format: Format,
        /// When its inputs are on the node (ms).
        ready_at: f64,
    },
    /// Give back a run's booking from `at` on (it failed or was cancelled).
    Release {
        /// Which run.
        key: RunKey,
        /// Its node.
        node: usize,
        /// From when.
        at: f64,
    },
    /// Reserve this run on `node` for its predicted window: from the
    /// earliest fit at or after `ready_at`, for `duration_ms`.
    Reserve {
        /// Which run (its booking, later, carries the same key).
        key: RunKey,
        /// Target node (index in the view).
        node: usize,
        /// Format.
        format: Format,
        /// When its inputs are predicted to be on the node (ms).
        ready_at: f64,
        /// Its predicted run time (ms).
        duration_ms: f64,
    },
    /// The job reached its final state; [`Execution::outcome`] tells it.
    Done,
}

/// What happened to one stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageOutcome {
    /// Node it finally ran on.
    pub node: usize,
    /// Format.
    pub format: Format,
    /// When its inputs were on that node (ms).
    pub ready_ms: f64,
    /// When its last attempt started (ms).
    pub start_ms: f64,
    /// When it finished (ms; NaN if it never did).
    pub finish_ms: f64,
    /// Run time of the last attempt (ms).
    pub compute_ms: f64,
    /// Attempts made.
    pub attempts: u16,
    /// The window it was reserved (or predicted) for when the job
    /// started: start and end (ms; NaN when none was known).
    #[serde(default = "nan2")]
    pub window_ms: (f64, f64),
}

fn nan2() -> (f64, f64) {
    (f64::NAN, f64::NAN)
}

/// What happened to one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// Submission time (ms).
    pub submit_ms: f64,
    /// Completion (or failure) time (ms).
    pub finish_ms: f64,
    /// finish − submit (ms): every attempt, wait and backoff included.
    pub latency_ms: f64,
    /// Energy of all attempts (J).
    pub energy_j: f64,
    /// Whether the job failed.
    pub failed: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// Runs that failed or were refused.
    pub failures: u32,
    /// Stages moved ahead of a forecast failure ([`Execution::migrate`]).
    pub migrations: u32,
    /// Hot replicas started ([`Execution::replicate`]).
    #[serde(default)]
    pub replicas: u32,
    /// Core-ms spent on runs that did not count: failed runs, restarts,
    /// replicas that lost the race (and the runs they beat).
    #[serde(default)]
    pub wasted_core_ms: f64,
    /// Per stage, in document order.
    pub stages: Vec<StageOutcome>,
}

/// Where a stage is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageState {
    /// Waiting for predecessors.
    Waiting,
    /// A booking was asked for.
    Booking,
    /// Booked: runs from its start.
    Booked,
    /// Finished.
    Done,
    /// Abandoned (its job failed or was cancelled).
    Abandoned,
}

#[derive(Clone, Debug)]
struct StageRun {
    state: StageState,
    pending: u16,
    at: Assignment,
    shadow: Option<Assignment>,
    attempt: u16,
    /// Attempts that were migrations, not failures (they do not count
    /// against `max_attempts`).
    migrations: u16,
    /// Times the stage was moved ahead of a forecast failure.
    moves: u16,
    /// The key number of the current run (`RunKey::attempt`).
    run: u16,
    /// The highest key number given out (runs and replicas).
    issued: u16,
    /// A hot replica running beside the current run.
    replica: Option<replica::Replica>,
    /// Replicas started.
    replicas: u16,
    /// Nodes tried, in order.
    tried: Vec<usize>,
    /// Predicted run time (ms) its reservation is made for.
    dur: f64,
    /// Its predicted window (start, end): reserved, or as predicted when
    /// the owner could not reserve it.
    window: Option<(f64, f64)>,
    /// A reservation asked for and not yet booked: (key number, node).
    reservation: Option<(u16, usize)>,
    /// When its reservation was asked to start from.
    reserve_from: f64,
    ready: f64,
    start: f64,
    finish: f64,
}

/// One job's run.
#[derive(Clone, Debug)]
pub struct Execution {
    plan: u64,
    origin: OriginIdx,
    submit: f64,
    cfg: ExecConfig,
    stages: Vec<StageRun>,
    left: usize,
    energy: f64,
    wasted: f64,
    failures: u32,
    finish: f64,
    error: Option<String>,
    done: bool,
}

impl Execution {
    /// A run of `job` placed by `assign` (and `shadow`), submitted at
    /// `submit_ms`; `plan` names the plan in every [`RunKey`].
    pub fn new(
        job: &Job,
        origin: OriginIdx,
        assign: &[Assignment],
        shadow: &[Option<Assignment>],
        plan: u64,
        submit_ms: f64,
        cfg: ExecConfig,
    ) -> Self {
        assert_eq!(assign.len(), job.stages.len(), "one assignment per stage");
        let stages = job
            .stages
            .iter()
            .enumerate()
            .map(|(s, st)| StageRun {
                state: StageState::Waiting,
                pending: st.predecessors.len() as u16,
                at: assign[s],
                shadow: shadow.get(s).copied().flatten(),
                attempt: 0,
                migrations: 0,
                moves: 0,
                run: 0,
                issued: 0,
                replica: None,
                replicas: 0,
                tried: Vec::new(),
                dur: f64::NAN,
                window: None,
                reservation: None,
                reserve_from: f64::NAN,
                ready: submit_ms,
                start: f64::NAN,
                finish: f64::NAN,
            })
            .collect();
        Execution {
            plan,
            origin,
            submit: submit_ms,
            cfg,
            stages,
            left: job.stages.len(),
            energy: 0.0,
            wasted: 0.0,
            failures: 0,
            finish: f64::NAN,
            error: None,
            done: false,
        }
    }

    /// The run time (ms) to reserve each stage for — the plan's
    /// prediction, from the planner's calibrated twin. Without it, the
    /// view given to [`Execution::start`] predicts them.
    pub fn with_durations(mut self, durations: &[f64]) -> Self {
        for (st, d) in self.stages.iter_mut().zip(durations) {
            st.dur = *d;
        }
        self
    }

    /// Starts the job: books every stage without predecessors (the rest
    /// are reserved as their predecessors' windows become known).
    pub fn start(&mut self, job: &Job, view: &FabricView, out: &mut Vec<ExecAction>) {
        for (s, st) in self.stages.iter_mut().enumerate() {
            if !st.dur.is_finite() {
                st.dur = view.compute_ms(st.at.node, &job.stages[s].compute, st.at.format);
            }
        }
        for s in 0..self.stages.len() {
            if self.stages[s].pending == 0 {
                let at = self.stages[s].at;
                self.book(job, view, s, at, self.submit, out);
            }
        }
        if self.stages.is_empty() {
            self.finish = self.submit;
            self.done = true;
            out.push(ExecAction::Done);
        }
    }

    /// Feeds one event that happened at `now`; appends what to do to `out`.
    /// Events for runs that are no longer current (a stale attempt, a job
    /// already done) are ignored.
    pub fn handle(&mut self, job: &Job, view: &FabricView, now: f64, ev: ExecEvent, out: &mut Vec<ExecAction>) {
        if self.done || self.replica_event(job, view, now, &ev, out) {
            return;
        }
        match ev {
            ExecEvent::Booked { key, start } => {
                // A second word on a booked run refines its start (a pod
                // reported running, then its container's exact start).
                let Some(s) = self.current(key, StageState::Booking).or_else(|| self.current(key, StageState::Booked))
                else {
                    return;
                };
                let st = &mut self.stages[s];
                st.state = StageState::Booked;
                st.start = start;
                if st.window.is_none() {
                    st.window = Some((start, start + st.dur));
                    self.reserve_after(job, view, s, out);
                }
            }
            ExecEvent::Reserved { key, start } => {
                let s = key.stage as usize;
                let Some(st) = self.stages.get_mut(s) else { return };
                if key.plan != self.plan || st.reservation.is_none_or(|(a, _)| a != key.attempt) {
                    return;
                }
                let from = match start {
                    Ok(t) => t,
                    Err(_) => {
                        // Not reserved (its node is down, its owner out of
                        // reach): predicted all the same; booking it, when
                        // it is ready, will find out more.
                        st.reservation = None;
                        st.reserve_from
                    }
                };
                if st.window.is_none() {
                    st.window = Some((from, from + st.dur));
                    self.reserve_after(job, view, s, out);
                }
            }
            ExecEvent::Refused { key, reason } => {
                let Some(s) = self.current(key, StageState::Booking) else { return };
                self.failures += 1;
                // Whatever the owner still holds for the run (a
                // reservation) is given back.
                out.push(ExecAction::Release { key, node: self.stages[s].at.node, at: now });
                if self.promote_replica(s) {
                    return;
                }
                let why = format!(
                    "stage '{}' on node '{}': {reason}",
                    job.stages[s].id, view.nodes.name[self.stages[s].at.node]
                );
                self.fail_over(job, view, s, now, why, out);
            }
            ExecEvent::Finished { key } => {
                let Some(s) = self.current(key, StageState::Booked) else { return };
                self.drop_replica(job, view, s, now, out);
                let st = &mut self.stages[s];
                st.state = StageState::Done;
                st.finish = now;
                let node = st.at.node;
                self.energy += view.energy_j(node, &job.stages[s].compute, (now - st.start).max(0.0));
                self.left -= 1;
                if self.left == 0 {
                    self.finish = now;
                    self.done = true;
                    out.push(ExecAction::Done);
                    return;
                }
                self.release_successors(job, view, s, now, out);
            }
            ExecEvent::Failed { key } => {
                let Some(s) = self.current(key, StageState::Booked) else { return };
                let st = &self.stages[s];
                let node = st.at.node;
                self.spent(job, view, s, node, st.start, now);
                self.failures += 1;
                out.push(ExecAction::Release { key, node, at: now });
                // Released: nothing of this run is booked any more.
                self.stages[s].state = StageState::Waiting;
                if self.promote_replica(s) {
                    return;
                }
                let why = format!("stage '{}': node '{}' failed", job.stages[s].id, view.nodes.name[node]);
                self.fail_over(job, view, s, now, why, out);
            }
            ExecEvent::Cancel => self.abandon(now, "cancelled".into(), out),
        }
    }

    /// Whether the job reached a final state.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The plan digest this run executes.
    pub fn plan(&self) -> u64 {
        self.plan
    }

    /// The current run of stage `s`, if it has been asked for.
    pub fn run_key(&self, s: usize) -> Option<RunKey> {
        let st = self.stages.get(s)?;
        (st.attempt > 0).then_some(RunKey { plan: self.plan, stage: s as u16, attempt: st.run })
    }

    /// Stage `s`'s state, node and format now.
    pub fn stage(&self, s: usize) -> (StageState, Assignment) {
        (self.stages[s].state, self.stages[s].at)
    }

    /// Where each stage stands: its current node and format, for stages
    /// not yet booked (what they still hold on the fabric).
    pub fn unbooked(&self) -> impl Iterator<Item = (usize, Assignment)> + '_ {
        self.stages.iter().enumerate().filter(|(_, st)| st.state == StageState::Waiting).map(|(s, st)| (s, st.at))
    }

    /// The outcome so far (final once [`Execution::is_done`]).
    pub fn outcome(&self) -> JobOutcome {
        JobOutcome {
            submit_ms: self.submit,
            finish_ms: self.finish,
            latency_ms: self.finish - self.submit,
            energy_j: self.energy,
            failed: self.error.is_some() || (self.done && self.finish.is_nan()),
            error: self.error.clone(),
            failures: self.failures,
            migrations: self.stages.iter().map(|s| u32::from(s.moves)).sum(),
            replicas: self.stages.iter().map(|s| u32::from(s.replicas)).sum(),
            wasted_core_ms: self.wasted,
            stages: self
                .stages
                .iter()
                .map(|st| StageOutcome {
                    node: st.at.node,
                    format: st.at.format,
                    ready_ms: st.ready,
                    start_ms: st.start,
                    finish_ms: st.finish,
                    compute_ms: st.finish - st.start,
                    attempts: st.attempt,
                    window_ms: st.window.unwrap_or((f64::NAN, f64::NAN)),
                })
                .collect(),
        }
    }

    fn current(&self, key: RunKey, want: StageState) -> Option<usize> {
        let s = key.stage as usize;
        let st = self.stages.get(s)?;
        (key.plan == self.plan && st.run == key.attempt && st.state == want).then_some(s)
    }
}

mod migrate;
pub use migrate::StageProgress;

mod reserve;

mod failover;

mod booking;

mod placed;
pub use placed::{Placed, placed, plan_digest};
mod replica;

#[cfg(test)]
mod tests;
