//! A job's protocol across agents, sans IO: every rule and constant of
//! what happens to a job between the agents, from its submission to its
//! final record, decided here and carried out by whoever drives it — the
//! agent (over libp2p, in wall time) and the many-agent simulator (over
//! its simulated network, in virtual time) alike.
//!
//! * [`Forwarding`] — at the agent a job is submitted to: route it to the
//!   agent nearest its origin, forward it there and wait at most
//!   clamp(2 × RTT timeout, 2 s, 5 s), try the next agent when that one
//!   is silent, plan it here when none answers, and settle with every
//!   agent that was silent once a late forward would have been planned
//!   ([`Config::late_forward_ms`]).
//! * [`Booking`] — at the planner, one request to a node's owner to book
//!   (or reserve) a run: asked up to [`Config::booking_tries`] times, each
//!   waiting twice as long, until the owner answers or the failure
//!   detector gives it up; the run is then refused as unreachable and the
//!   execution (`crate::execution`) fails it over.
//! * **Holds** ([`plan_hold_until`], [`Booking`]'s `Hold`/`Unhold`) — what
//!   a planner placed counts in its own planning view until the owner's
//!   published load shows it (`crate::inflight`): from planning until the
//!   stage's predicted start (at most a minute) and 2 s more, 10 s while a
//!   request is on its way, 2 s after the owner booked it (a gossip hop).
//! * **Failover grace** ([`owner_lost`]) — a run on a node whose owner
//!   has been suspect or dead this long fails over.
//! * [`Reconciling`] — with a peer that was silent to a forward (after
//!   [`Config::late_forward_ms`]) or that is back after a cut: exchange the
//!   jobs both planned (`crate::reconcile`), asked up to
//!   [`Config::reconcile_tries`] times, each wait twice the last.
//!
//! Each machine is `handle(input, now, &mut outputs)`; times are ms of the
//! driver's clock. The agent's timeouts are real (`tokio`), the
//! simulator's are events of its queue: both report them back as inputs.

use serde::{Deserialize, Serialize};

mod booking;
pub mod decision;
mod forward;
mod reconciling;
#[cfg(test)]
mod tests;

pub use booking::{Ask, Booking, BookingInput, BookingOutput};
pub use decision::Decision;
pub use forward::{ForwardInput, ForwardOutput, Forwarding, Hop};
pub use reconciling::{Hint, ReconcileInput, ReconcileOutput, Reconciling};

/// Every constant of the job protocol. The defaults are the agent's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// A forward waits this many times the peer's RTT-derived timeout
    /// (planning and a commit over there, on top of the round trip)…
    pub forward_rtt_factor: f64,
    /// …but at least this long (ms)…
    pub forward_min_ms: f64,
    /// …and at most this long (ms).
    pub forward_max_ms: f64,
    /// Times an unanswered booking request is sent before the owner is
    /// taken as unreachable.
    pub booking_tries: u32,
    /// The first booking request waits between this (ms) and 5 × this for
    /// an answer (the owner's RTT timeout, clamped); each next one twice
    /// as long.
    pub booking_first_wait_ms: f64,
    /// Times a reservation request is sent (a lost one leaves the stage
    /// to be booked when its inputs are ready).
    pub reserve_tries: u32,
    /// A planned stage counts in the planner's view until its predicted
    /// start (at most this, ms)…
    pub hold_start_cap_ms: f64,
    /// …and this long after (ms).
    pub hold_after_start_ms: f64,
    /// A booking request on its way to a remote owner counts this long
    /// (ms).
    pub hold_sent_ms: f64,
    /// A booking the owner answered counts this long more (ms): its
    /// published load shows it within a gossip hop.
    pub hold_answered_ms: f64,
    /// A run whose node's owner has been suspect or dead this long (ms)
    /// fails over (`--failover-grace`).
    pub failover_grace_ms: f64,
    /// After a forward went unanswered, the agents settle this much later
    /// (ms): the forward's own timeout and planning over there, with room.
    pub late_forward_ms: f64,
    /// Times a reconciliation exchange is tried before waiting for the
    /// peer's next return.
    pub reconcile_tries: u32,
    /// Wait (ms) before the second exchange; doubled each time.
    pub reconcile_first_wait_ms: f64,
    /// How long one exchange waits for its answer (ms).
    pub reconcile_timeout_ms: f64,
    /// Jobs accepted this long ago or less (ms) are offered for
    /// reconciliation.
    pub reconcile_window_ms: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            forward_rtt_factor: 2.0,
            forward_min_ms: 2_000.0,
            forward_max_ms: 5_000.0,
            booking_tries: 3,
            booking_first_wait_ms: 1_000.0,
            reserve_tries: 1,
            hold_start_cap_ms: 60_000.0,
            hold_after_start_ms: 2_000.0,
            hold_sent_ms: 10_000.0,
            hold_answered_ms: 2_000.0,
            failover_grace_ms: 10_000.0,
            late_forward_ms: 15_000.0,
            reconcile_tries: 6,
            reconcile_first_wait_ms: 250.0,
            reconcile_timeout_ms: 10_000.0,
            reconcile_window_ms: 3_600_000.0,
        }
    }
}

impl Config {
    /// How long a forward to a peer with this RTT-derived timeout waits.
    pub fn forward_timeout(&self, rtt_timeout_ms: f64) -> f64 {
        (rtt_timeout_ms * self.forward_rtt_factor)
            .clamp(self.forward_min_ms, self.forward_max_ms.max(self.forward_min_ms))
    }

    /// Checks the values make sense; names the first that does not.
    pub fn validate(&self) -> Result<(), String> {
        let ms = [
            ("forward_rtt_factor", self.forward_rtt_factor),
            ("forward_min_ms", self.forward_min_ms),
            ("forward_max_ms", self.forward_max_ms),
            ("booking_first_wait_ms", self.booking_first_wait_ms),
            ("hold_start_cap_ms", self.hold_start_cap_ms),
            ("hold_after_start_ms", self.hold_after_start_ms),
            ("hold_sent_ms", self.hold_sent_ms),
            ("hold_answered_ms", self.hold_answered_ms),
            ("failover_grace_ms", self.failover_grace_ms),
            ("late_forward_ms", self.late_forward_ms),
            ("reconcile_first_wait_ms", self.reconcile_first_wait_ms),
            ("reconcile_timeout_ms", self.reconcile_timeout_ms),
            ("reconcile_window_ms", self.reconcile_window_ms),
        ];
        if let Some((name, v)) = ms.iter().find(|(_, v)| !v.is_finite() || *v < 0.0) {
            return Err(format!("{name}: {v} is not a finite, non-negative number"));
        }
        if self.forward_max_ms < self.forward_min_ms {
            return Err(format!(
                "forward_max_ms: {} is below forward_min_ms {}",
                self.forward_max_ms, self.forward_min_ms
            ));
        }
        if self.booking_tries == 0 {
            return Err("booking_tries: at least one request must be sent".into());
        }
        if self.reserve_tries == 0 {
            return Err("reserve_tries: at least one request must be sent".into());
        }
        if self.reconcile_tries == 0 {
            return Err("reconcile_tries: at least one exchange must be tried".into());
        }
        Ok(())
    }
}

/// Until when (ms of the driver's clock) a stage planned at `now` counts
/// in the planner's view: its predicted start `start_ms` after the job's
/// start (fabric ms, times `time_scale` for the driver's clock; at most
/// [`Config::hold_start_cap_ms`]) and [`Config::hold_after_start_ms`] more.
pub fn plan_hold_until(cfg: &Config, now: f64, start_ms: f64, time_scale: f64) -> f64 {
    now + (start_ms.max(0.0) * time_scale).min(cfg.hold_start_cap_ms) + cfg.hold_after_start_ms
}

/// Whether a run on a node whose owner is in this state should fail over
/// at `now`: the owner not alive since `since` (ms), for at least the
/// grace. Returns how long it has been gone.
pub fn owner_lost(cfg: &Config, alive: bool, since: f64, now: f64) -> Option<f64> {
    let gone = now - since;
    (!alive && gone >= cfg.failover_grace_ms).then_some(gone)
}
