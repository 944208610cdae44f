//! When an agent settles with a peer the jobs both may have planned
//! (`crate::reconcile` decides which copy stays): a late forward's due
//! time, the peer's return, and the exchange asked again while the peer
//! does not answer.

use std::collections::BTreeMap;

use super::Config;

/// What the driver tells a [`Reconciling`].
#[derive(Clone, Debug, PartialEq)]
pub enum ReconcileInput {
    /// A forward to `peer` went unanswered: settle once a late forward
    /// would have been planned there.
    LateForward {
        /// The silent peer.
        peer: String,
        /// When another agent planned the job: told to the silent one
        /// (which settles with that agent if it planned the job too).
        hint: Option<Hint>,
    },
    /// A third agent told that `peer` planned a job this agent planned too
    /// (a [`Hint`]): settle with `peer` at once.
    Told {
        /// The peer.
        peer: String,
    },
    /// `peer` is alive again after being suspect or dead.
    PeerBack {
        /// The peer.
        peer: String,
    },
    /// A timer set by [`ReconcileOutput::Timer`] for `peer` fired.
    Due {
        /// The peer.
        peer: String,
    },
    /// The exchange with `peer` was answered (or there was nothing to
    /// tell).
    Answered {
        /// The peer.
        peer: String,
    },
    /// The exchange with `peer` failed or timed out.
    Failed {
        /// The peer.
        peer: String,
    },
}

/// What a [`Reconciling`] asks of its driver.
#[derive(Clone, Debug, PartialEq)]
pub enum ReconcileOutput {
    /// Answer [`ReconcileInput::Due`] for `peer` at `at` (ms).
    Timer {
        /// The peer.
        peer: String,
        /// When.
        at: f64,
    },
    /// Tell `peer` the jobs this agent planned lately and settle those
    /// both planned; report [`ReconcileInput::Answered`] or
    /// [`ReconcileInput::Failed`] (no answer within `timeout_ms`).
    Exchange {
        /// The peer.
        peer: String,
        /// How long to wait (ms).
        timeout_ms: f64,
        /// Which try this is (1-based).
        attempt: u32,
        /// Copies other agents planned of jobs forwarded to `peer` that it
        /// left unanswered: told along with this agent's own.
        hints: Vec<Hint>,
    },
    /// Every try went unanswered: settled when the peer next returns.
    GaveUp {
        /// The peer.
        peer: String,
    },
}

/// A job another agent planned after a forward to the peer went
/// unanswered: the peer, if it planned the job too, settles with that
/// agent (the hint is not trusted beyond that: the two compare their own
/// copies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    /// Job id.
    pub job: String,
    /// The agent that planned it.
    pub planner: String,
}

#[derive(Clone, Debug, Default)]
struct Peer {
    /// A late forward's settlement is due at this time.
    late: Option<f64>,
    /// Told at the next exchange.
    hints: Vec<Hint>,
    /// An exchange under way: tries made, next wait (ms), and whether a
    /// retry timer is set (else a request is out).
    exchange: Option<(u32, f64, bool)>,
}

/// An agent's reconciliations, per peer.
#[derive(Clone, Debug, Default)]
pub struct Reconciling {
    cfg: Config,
    peers: BTreeMap<String, Peer>,
}

impl Reconciling {
    /// With these settings.
    pub fn new(cfg: &Config) -> Self {
        Reconciling { cfg: cfg.clone(), peers: BTreeMap::new() }
    }

    /// Whether an exchange with `peer` is under way or due.
    pub fn pending(&self, peer: &str) -> bool {
        self.peers.get(peer).is_some_and(|p| p.late.is_some() || p.exchange.is_some())
    }

    fn start(&mut self, peer: &str, out: &mut Vec<ReconcileOutput>) {
        let p = self.peers.entry(peer.to_string()).or_default();
        if p.exchange.is_some() {
            return; // one exchange at a time settles every job
        }
        p.exchange = Some((1, self.cfg.reconcile_first_wait_ms, false));
        out.push(ReconcileOutput::Exchange {
            peer: peer.to_string(),
            timeout_ms: self.cfg.reconcile_timeout_ms,
            attempt: 1,
            hints: p.hints.clone(),
        });
    }

    /// Advances on `input` at `now` (ms).
    pub fn handle(&mut self, input: ReconcileInput, now: f64, out: &mut Vec<ReconcileOutput>) {
        match input {
            ReconcileInput::LateForward { peer, hint } => {
                let p = self.peers.entry(peer.clone()).or_default();
                if let Some(h) = hint
                    && !p.hints.contains(&h)
                {
                    p.hints.push(h);
                }
                // However many forwards went unanswered: settled once.
                if p.late.is_none() {
                    let at = now + self.cfg.late_forward_ms;
                    p.late = Some(at);
                    out.push(ReconcileOutput::Timer { peer, at });
                }
            }
            ReconcileInput::PeerBack { peer } | ReconcileInput::Told { peer } => self.start(&peer, out),
            ReconcileInput::Due { peer } => {
                let Some(p) = self.peers.get_mut(&peer) else { return };
                match p.exchange {
                    Some((tries, wait, true)) => {
                        p.exchange = Some((tries + 1, wait * 2.0, false));
                        out.push(ReconcileOutput::Exchange {
                            peer,
                            timeout_ms: self.cfg.reconcile_timeout_ms,
                            attempt: tries + 1,
                            hints: p.hints.clone(),
                        });
                    }
                    _ => {
                        if p.late.is_some_and(|t| t <= now) {
                            p.late = None;
                            self.start(&peer, out);
                        }
                    }
                }
            }
            ReconcileInput::Answered { peer } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.exchange = None;
                    if p.late.is_none() {
                        self.peers.remove(&peer);
                    }
                }
            }
            ReconcileInput::Failed { peer } => {
                let Some(p) = self.peers.get_mut(&peer) else { return };
                let Some((tries, wait, false)) = p.exchange else { return };
                if tries >= self.cfg.reconcile_tries {
                    p.exchange = None;
                    // Hints wait for the peer's return.
                    if p.late.is_none() && p.hints.is_empty() {
                        self.peers.remove(&peer);
                    }
                    out.push(ReconcileOutput::GaveUp { peer });
                    return;
                }
                // A peer is heard from again (through others) before its
                // own connection is back: asked again, waiting longer.
                p.exchange = Some((tries, wait, true));
                out.push(ReconcileOutput::Timer { peer, at: now + wait });
            }
        }
    }
}
