//! Liveness: whether a peer agent is alive, decided with evidence and a
//! clock passed in — never "a socket is open".
//!
//! Each peer is **alive**, **suspect** or **dead**, and every change says
//! why ([`Reason`]):
//!
//! * any word from a peer (a message it sent us, an answer to a request, a
//!   fresh version of a record it owns) is evidence it is alive;
//! * a peer not heard from for [`LivenessConfig::probe_interval_ms`] is
//!   probed directly (a ping over the request-response protocol); at most
//!   [`LivenessConfig::max_probes_per_tick`] probes start per tick, taken
//!   in turn from a ring of all peers (a tick looks at a bounded number of
//!   them), so the cost per agent and tick stays bounded in a large mesh —
//!   and so does the pace at which one agent gets round to a silent peer
//!   there (see docs/benchmarks.md for the figures);
//! * a probe unanswered within its timeout — the larger of
//!   [`LivenessConfig::probe_timeout_ms`] and four smoothed round trips, so
//!   a slow board is not declared gone for being slow — makes the peer
//!   **suspect**; any word makes it alive again;
//! * a peer suspect for [`LivenessConfig::suspect_timeout_ms`] without a
//!   word is **dead**; dead peers are still probed, less often, so a healed
//!   partition or a restarted agent comes back on its own;
//! * a closed connection is only a hint: the peer is probed at once;
//! * a slow agent does not blame its peers (in the manner of Lifeguard's
//!   local health): when its own ticks come late, its *local lag* rises and
//!   every timeout is multiplied by `1 + lag` (up to ×9); on-time ticks
//!   bring it back down. Answers that come after their probe timed out
//!   still teach the round trip.
//!
//! The **partition epoch** counts changes in the set of reachable peers
//! (a peer declared dead, or a dead one back): a planner records it so a
//! decision made on one side of a cut can be told from one made after.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

/// Timings of the failure detector (ms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LivenessConfig {
    /// Probe a peer not heard from for this long.
    pub probe_interval_ms: f64,
    /// Least time a probe may take before it counts as unanswered.
    pub probe_timeout_ms: f64,
    /// Suspect this long without a word ⇒ dead.
    pub suspect_timeout_ms: f64,
    /// How often dead peers are probed.
    pub dead_probe_interval_ms: f64,
    /// Most probes started per tick.
    pub max_probes_per_tick: usize,
    /// Consecutive unanswered probes that make a peer suspect (a lossy
    /// link loses one now and then).
    pub suspect_after: u32,
    /// How often the caller ticks (ms): a tick that comes much later means
    /// this agent itself is slow (a loaded board, a debug build), and its
    /// timeouts stretch rather than its peers being blamed.
    pub tick_interval_ms: f64,
}

impl Default for LivenessConfig {
    /// Detects a silent peer (suspect) within ~2.5 s of its last word on a
    /// LAN: probed after 1 s of silence, a second probe at once when the
    /// first goes unanswered for 0.6 s, suspect when that one does too.
    fn default() -> Self {
        LivenessConfig {
            probe_interval_ms: 1_000.0,
            probe_timeout_ms: 600.0,
            suspect_timeout_ms: 15_000.0,
            dead_probe_interval_ms: 5_000.0,
            max_probes_per_tick: 3,
            suspect_after: 2,
            tick_interval_ms: 250.0,
        }
    }
}

/// What we believe of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// Heard from recently, or answered its last probe.
    Alive,
    /// Its last probe went unanswered.
    Suspect,
    /// Suspect for too long.
    Dead,
}

impl PeerState {
    /// Lower-case name, for metrics labels and the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            PeerState::Alive => "alive",
            PeerState::Suspect => "suspect",
            PeerState::Dead => "dead",
        }
    }
}

/// Why a peer's state changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// First heard of.
    Discovered,
    /// It said something.
    Heard,
    /// It answered a probe.
    ProbeAnswered,
    /// A probe went unanswered for this long (ms).
    ProbeUnanswered(u64),
    /// Suspect for this long (ms) without a word.
    SuspectTimedOut(u64),
    /// It said it was leaving (a graceful shutdown).
    Left,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Discovered => f.write_str("discovered"),
            Reason::Heard => f.write_str("heard from it"),
            Reason::ProbeAnswered => f.write_str("answered a probe"),
            Reason::ProbeUnanswered(ms) => write!(f, "probe unanswered for {ms} ms"),
            Reason::SuspectTimedOut(ms) => write!(f, "suspect for {ms} ms without a word"),
            Reason::Left => f.write_str("left the mesh"),
        }
    }
}

/// A change of a peer's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The peer.
    pub peer: String,
    /// Before.
    pub from: PeerState,
    /// After.
    pub to: PeerState,
    /// Why.
    pub reason: Reason,
    /// When (ms).
    pub at: f64,
}

/// A probe to send.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// The peer.
    pub peer: String,
    /// Echoed in the answer.
    pub nonce: u64,
    /// Give up after this long (ms).
    pub timeout_ms: f64,
}

/// What the detector knows of one peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    /// Its state.
    pub state: PeerState,
    /// Why it is in that state.
    pub reason: Reason,
    /// Since when (ms).
    pub since: f64,
    /// Last word from it (ms).
    pub last_heard: f64,
    /// Smoothed probe round trip (ms), once measured.
    pub rtt_ms: Option<f64>,
}

#[derive(Clone, Debug)]
struct Peer {
    view: PeerView,
    probe: Option<(u64, f64, f64)>, // nonce, sent at, timeout
    /// The last probe sent (nonce, when): a late answer still times it.
    last_sent: (u64, f64),
    last_probe: f64,
    /// Probes unanswered in a row.
    misses: u32,
}

type PeerMap = std::collections::HashMap<String, Peer, crate::rng::FnvBuild>;

/// The failure detector of one agent.
#[derive(Clone, Debug)]
pub struct Liveness {
    cfg: LivenessConfig,
    /// By name; a fixed hasher (no per-process random keys), so the same
    /// inputs give the same outputs.
    peers: PeerMap,
    /// Every peer, in the order they are looked at for probes.
    ring: VecDeque<String>,
    /// Peers with a probe in flight.
    in_flight: BTreeSet<String>,
    /// Peers now suspect.
    suspects: BTreeSet<String>,
    /// Peers to probe at the next tick (a hint arrived).
    urgent: BTreeSet<String>,
    epoch: u64,
    next_nonce: u64,
    /// Local lag, 0–8: how far behind this agent's own ticks run.
    lag: u32,
    last_tick: Option<f64>,
    on_time_since: f64,
}

/// Highest local lag.
const MAX_LAG: u32 = 8;

/// Peers a tick looks at for probes, per probe it may start.
const LOOK_PER_PROBE: usize = 8;

impl Liveness {
    /// A detector that knows no peer yet.
    pub fn new(cfg: LivenessConfig) -> Self {
        Liveness {
            cfg,
            peers: PeerMap::default(),
            ring: VecDeque::new(),
            in_flight: BTreeSet::new(),
            suspects: BTreeSet::new(),
            urgent: BTreeSet::new(),
            epoch: 0,
            next_nonce: 1,
            lag: 0,
            last_tick: None,
            on_time_since: 0.0,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &LivenessConfig {
        &self.cfg
    }

    /// Learns of a peer (from the twin, a bootstrap list, a connection):
    /// alive until shown otherwise, and probed when it stays silent.
    pub fn discover(&mut self, peer: &str, now: f64) {
        if !self.peers.contains_key(peer) {
            self.ring.push_back(peer.to_string());
            self.peers.insert(
                peer.to_string(),
                Peer {
                    view: PeerView {
                        state: PeerState::Alive,
                        reason: Reason::Discovered,
                        since: now,
                        last_heard: now,
                        rtt_ms: None,
                    },
                    probe: None,
                    last_sent: (0, 0.0),
                    last_probe: f64::NEG_INFINITY,
                    misses: 0,
                },
            );
        }
    }

    /// Evidence that `peer` was alive at `now`.
    pub fn heard(&mut self, peer: &str, now: f64) -> Option<Transition> {
        if let Some(p) = self.peers.get_mut(peer)
            && p.view.state == PeerState::Alive
        {
            // The common case, one lookup.
            p.view.last_heard = p.view.last_heard.max(now);
            p.misses = 0;
            return None;
        }
        self.discover(peer, now);
        self.alive(peer, now, Reason::Heard)
    }

    /// `peer` answered probe `nonce`; its round trip refines the timeout.
    pub fn probe_answered(&mut self, peer: &str, nonce: u64, now: f64) -> Option<Transition> {
        let p = self.peers.get_mut(peer)?;
        if p.last_sent.0 == nonce {
            let rtt = (now - p.last_sent.1).max(0.0);
            p.view.rtt_ms = Some(p.view.rtt_ms.map_or(rtt, |s| 0.875 * s + 0.125 * rtt));
        }
        if p.probe.is_some_and(|(n, _, _)| n == nonce) {
            p.probe = None;
            self.in_flight.remove(peer);
        }
        self.alive(peer, now, Reason::ProbeAnswered)
    }

    /// Probe `nonce` to `peer` could not be sent or failed before its
    /// timeout (no connection, refused): it counts as unanswered now.
    pub fn probe_failed(&mut self, peer: &str, nonce: u64, now: f64) -> Option<Transition> {
        let p = self.peers.get_mut(peer)?;
        match p.probe {
            Some((n, sent, _)) if n == nonce => {
                p.probe = None;
                self.in_flight.remove(peer);
                self.missed(peer, now, sent)
            }
            _ => None,
        }
    }

    /// `peer` said it is leaving: dead at once, without suspicion (it is
    /// alive again as soon as it is heard from, e.g. after a restart).
    pub fn left(&mut self, peer: &str, now: f64) -> Option<Transition> {
        let p = self.peers.get_mut(peer)?;
        p.probe = None;
        p.misses = 0;
        self.in_flight.remove(peer);
        self.urgent.remove(peer);
        self.suspects.remove(peer);
        self.set(peer, PeerState::Dead, Reason::Left, now)
    }

    /// A hint that the connection to `peer` closed: probe it at the next
    /// tick, whatever its silence.
    pub fn connection_closed(&mut self, peer: &str) {
        if self.peers.contains_key(peer) {
            self.urgent.insert(peer.to_string());
        }
    }

    /// Advances time: probes that timed out make peers suspect, long
    /// suspicion makes them dead, silent peers get probed. Returns the
    /// probes to send and the state changes.
    pub fn tick(&mut self, now: f64) -> (Vec<Probe>, Vec<Transition>) {
        let mut changes = Vec::new();
        self.track_lag(now);
        let stretch = f64::from(1 + self.lag);
        let timed_out: Vec<(String, f64)> = self
            .in_flight
            .iter()
            .filter_map(|n| {
                let (_, sent, timeout) = self.peers.get(n)?.probe?;
                (now - sent >= timeout * stretch).then(|| (n.clone(), sent))
            })
            .collect();
        for (name, sent) in timed_out {
            self.in_flight.remove(&name);
            if let Some(p) = self.peers.get_mut(&name) {
                p.probe = None;
            }
            changes.extend(self.missed(&name, now, sent));
        }
        let expired: Vec<(String, f64)> = self
            .suspects
            .iter()
            .filter_map(|n| {
                let since = self.peers.get(n)?.view.since;
                (now - since >= self.cfg.suspect_timeout_ms).then(|| (n.clone(), since))
            })
            .collect();
        for (name, since) in expired {
            changes.extend(self.set(&name, PeerState::Dead, Reason::SuspectTimedOut((now - since) as u64), now));
        }
        // Who gets a probe: hinted peers first, then peers from the ring
        // that have been silent for the interval (dead ones less often).
        let budget = self.cfg.max_probes_per_tick;
        let mut due: Vec<String> = Vec::new();
        for name in std::mem::take(&mut self.urgent) {
            if due.len() < budget && self.peers.get(&name).is_some_and(|p| p.probe.is_none()) {
                due.push(name);
            }
        }
        let look = (budget * LOOK_PER_PROBE).min(self.ring.len());
        for _ in 0..look {
            if due.len() >= budget {
                break;
            }
            let Some(name) = self.ring.pop_front() else { break };
            let p = &self.peers[&name];
            let every = if p.view.state == PeerState::Dead {
                self.cfg.dead_probe_interval_ms
            } else {
                self.cfg.probe_interval_ms
            };
            let is_due = p.probe.is_none() && now - p.view.last_heard >= every && now - p.last_probe >= every;
            if is_due && !due.contains(&name) {
                due.push(name.clone());
            }
            self.ring.push_back(name);
        }
        let mut probes = Vec::with_capacity(due.len());
        for name in due {
            let timeout = self.timeout_for(&name);
            let nonce = self.next_nonce;
            self.next_nonce += 1;
            let p = self.peers.get_mut(&name).expect("listed");
            p.probe = Some((nonce, now, timeout));
            p.last_sent = (nonce, now);
            p.last_probe = now;
            self.in_flight.insert(name.clone());
            probes.push(Probe { peer: name, nonce, timeout_ms: timeout });
        }
        (probes, changes)
    }

    /// How long to wait for `peer`'s answer (ms): the larger of the
    /// configured floor and four smoothed round trips, stretched by this
    /// agent's local lag.
    pub fn timeout_for(&self, peer: &str) -> f64 {
        let rtt = self.peers.get(peer).and_then(|p| p.view.rtt_ms).unwrap_or(0.0);
        self.cfg.probe_timeout_ms.max(4.0 * rtt) * f64::from(1 + self.lag)
    }

    /// How far behind this agent's own ticks run (0 = on time, up to 8).
    pub fn local_lag(&self) -> u32 {
        self.lag
    }

    /// A tick late by more than an interval raises the local lag; a second
    /// of on-time ticks lowers it by one.
    fn track_lag(&mut self, now: f64) {
        let every = self.cfg.tick_interval_ms.max(1.0);
        if let Some(last) = self.last_tick {
            if now - last > 2.0 * every {
                self.lag = (self.lag + 1).min(MAX_LAG);
                self.on_time_since = now;
            } else if self.lag > 0 && now - self.on_time_since >= 1_000.0 {
                self.lag -= 1;
                self.on_time_since = now;
            }
        } else {
            self.on_time_since = now;
        }
        self.last_tick = Some(now);
    }

    /// What we believe of `peer` (unknown peers are not alive).
    pub fn state(&self, peer: &str) -> Option<PeerState> {
        self.peers.get(peer).map(|p| p.view.state)
    }

    /// What we believe of `peer`, with its reason and since when.
    pub fn view(&self, peer: &str) -> Option<&PeerView> {
        self.peers.get(peer).map(|p| &p.view)
    }

    /// Whether `peer` is alive (neither suspect nor dead nor unknown).
    pub fn is_alive(&self, peer: &str) -> bool {
        self.state(peer) == Some(PeerState::Alive)
    }

    /// Every peer with what we believe of it.
    pub fn peers(&self) -> impl Iterator<Item = (&str, &PeerView)> {
        let mut v: Vec<(&str, &PeerView)> = self.peers.iter().map(|(n, p)| (n.as_str(), &p.view)).collect();
        v.sort_unstable_by_key(|(n, _)| *n);
        v.into_iter()
    }

    /// Peers in `state`.
    pub fn in_state(&self, state: PeerState) -> impl Iterator<Item = &str> {
        let mut v: Vec<&str> =
            self.peers.iter().filter(move |(_, p)| p.view.state == state).map(|(n, _)| n.as_str()).collect();
        v.sort_unstable();
        v.into_iter()
    }

    /// Changes of the set of reachable peers so far.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn alive(&mut self, peer: &str, now: f64, reason: Reason) -> Option<Transition> {
        let p = self.peers.get_mut(peer)?;
        p.view.last_heard = p.view.last_heard.max(now);
        p.misses = 0;
        if p.view.state == PeerState::Alive {
            return None;
        }
        // Whatever probe was in flight is moot.
        p.probe = None;
        self.in_flight.remove(peer);
        self.set(peer, PeerState::Alive, reason, now)
    }

    /// A probe sent at `sent` went unanswered: the peer is probed again at
    /// the next tick, and is suspect after enough misses in a row.
    fn missed(&mut self, peer: &str, now: f64, sent: f64) -> Option<Transition> {
        let p = self.peers.get_mut(peer)?;
        p.misses += 1;
        if p.misses < self.cfg.suspect_after {
            self.urgent.insert(peer.to_string());
            return None;
        }
        self.suspect(peer, now, Reason::ProbeUnanswered((now - sent).max(0.0) as u64))
    }

    fn suspect(&mut self, peer: &str, now: f64, reason: Reason) -> Option<Transition> {
        match self.peers.get(peer)?.view.state {
            PeerState::Alive => self.set(peer, PeerState::Suspect, reason, now),
            PeerState::Suspect | PeerState::Dead => None,
        }
    }

    fn set(&mut self, peer: &str, to: PeerState, reason: Reason, now: f64) -> Option<Transition> {
        let p = self.peers.get_mut(peer)?;
        let from = p.view.state;
        if from == to {
            return None;
        }
        if from == PeerState::Dead || to == PeerState::Dead {
            self.epoch += 1;
        }
        if to == PeerState::Suspect {
            self.suspects.insert(peer.to_string());
        } else {
            self.suspects.remove(peer);
        }
        p.view.state = to;
        p.view.reason = reason.clone();
        p.view.since = now;
        Some(Transition { peer: peer.to_string(), from, to, reason, at: now })
    }
}

#[cfg(test)]
mod tests;
