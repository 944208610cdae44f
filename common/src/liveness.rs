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
//!   [`LivenessConfig::max_probes_per_tick`] probes are in flight per tick,
//!   the longest-silent peers first, so the cost per agent stays bounded in
//!   a large mesh;
//! * a probe unanswered within its timeout — the larger of
//!   [`LivenessConfig::probe_timeout_ms`] and four smoothed round trips, so
//!   a slow board is not declared gone for being slow — makes the peer
//!   **suspect**; any word makes it alive again;
//! * a peer suspect for [`LivenessConfig::suspect_timeout_ms`] without a
//!   word is **dead**; dead peers are still probed, less often, so a healed
//!   partition or a restarted agent comes back on its own;
//! * a closed connection is only a hint: the peer is probed at once.
//!
//! The **partition epoch** counts changes in the set of reachable peers
//! (a peer declared dead, or a dead one back): a planner records it so a
//! decision made on one side of a cut can be told from one made after.

use std::collections::BTreeMap;

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
}

impl Default for LivenessConfig {
    /// Detects a silent peer (suspect) within ~2 s of its last word on a
    /// LAN: probed after 1 s of silence, unanswered after 1 s more.
    fn default() -> Self {
        LivenessConfig {
            probe_interval_ms: 1_000.0,
            probe_timeout_ms: 1_000.0,
            suspect_timeout_ms: 15_000.0,
            dead_probe_interval_ms: 5_000.0,
            max_probes_per_tick: 8,
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
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Discovered => f.write_str("discovered"),
            Reason::Heard => f.write_str("heard from it"),
            Reason::ProbeAnswered => f.write_str("answered a probe"),
            Reason::ProbeUnanswered(ms) => write!(f, "probe unanswered for {ms} ms"),
            Reason::SuspectTimedOut(ms) => write!(f, "suspect for {ms} ms without a word"),
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
    last_probe: f64,
    /// Probe at the next tick (a hint arrived).
    urgent: bool,
}

/// The failure detector of one agent.
#[derive(Clone, Debug)]
pub struct Liveness {
    cfg: LivenessConfig,
    peers: BTreeMap<String, Peer>,
    epoch: u64,
    next_nonce: u64,
}

impl Liveness {
    /// A detector that knows no peer yet.
    pub fn new(cfg: LivenessConfig) -> Self {
        Liveness { cfg, peers: BTreeMap::new(), epoch: 0, next_nonce: 1 }
    }

    /// Its settings.
    pub fn config(&self) -> &LivenessConfig {
        &self.cfg
    }

    /// Learns of a peer (from the twin, a bootstrap list, a connection):
    /// alive until shown otherwise, and probed when it stays silent.
    pub fn discover(&mut self, peer: &str, now: f64) {
        if !self.peers.contains_key(peer) {
            self.peers.insert(
                peer.to_string(),
                Peer {
                    view: PeerView { state: PeerState::Alive, reason: Reason::Discovered, since: now, last_heard: now, rtt_ms: None },
                    probe: None,
                    last_probe: f64::NEG_INFINITY,
                    urgent: false,
                },
            );
        }
    }

    /// Evidence that `peer` was alive at `now`.
    pub fn heard(&mut self, peer: &str, now: f64) -> Option<Transition> {
        self.discover(peer, now);
        self.alive(peer, now, Reason::Heard)
    }

    /// `peer` answered probe `nonce`; its round trip refines the timeout.
    pub fn probe_answered(&mut self, peer: &str, nonce: u64, now: f64) -> Option<Transition> {
        let p = self.peers.get_mut(peer)?;
        if let Some((n, sent, _)) = p.probe {
            if n == nonce {
                let rtt = (now - sent).max(0.0);
                p.view.rtt_ms = Some(p.view.rtt_ms.map_or(rtt, |s| 0.875 * s + 0.125 * rtt));
                p.probe = None;
            }
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
                self.suspect(peer, now, Reason::ProbeUnanswered((now - sent).max(0.0) as u64))
            }
            _ => None,
        }
    }

    /// A hint that the connection to `peer` closed: probe it at the next
    /// tick, whatever its silence.
    pub fn connection_closed(&mut self, peer: &str) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.urgent = true;
        }
    }

    /// Advances time: probes that timed out make peers suspect, long
    /// suspicion makes them dead, silent peers get probed. Returns the
    /// probes to send and the state changes.
    pub fn tick(&mut self, now: f64) -> (Vec<Probe>, Vec<Transition>) {
        let mut changes = Vec::new();
        let names: Vec<String> = self.peers.keys().cloned().collect();
        for name in &names {
            let p = &self.peers[name];
            if let Some((_, sent, timeout)) = p.probe {
                if now - sent >= timeout {
                    self.peers.get_mut(name).expect("listed").probe = None;
                    changes.extend(self.suspect(name, now, Reason::ProbeUnanswered((now - sent) as u64)));
                }
            }
            let p = &self.peers[name];
            if p.view.state == PeerState::Suspect && now - p.view.since >= self.cfg.suspect_timeout_ms {
                let t = self.set(name, PeerState::Dead, Reason::SuspectTimedOut((now - p.view.since) as u64), now);
                changes.extend(t);
            }
        }
        // Who needs a probe: silent for the interval (dead ones less
        // often), none in flight; longest silent first.
        let mut due: Vec<(f64, &String)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.probe.is_none())
            .filter(|(_, p)| {
                let every = if p.view.state == PeerState::Dead { self.cfg.dead_probe_interval_ms } else { self.cfg.probe_interval_ms };
                p.urgent || (now - p.view.last_heard >= every && now - p.last_probe >= every)
            })
            .map(|(n, p)| (if p.urgent { f64::NEG_INFINITY } else { p.view.last_heard.max(p.last_probe) }, n))
            .collect();
        due.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
        let due: Vec<String> = due.into_iter().take(self.cfg.max_probes_per_tick).map(|(_, n)| n.clone()).collect();
        let mut probes = Vec::with_capacity(due.len());
        for name in due {
            let timeout = self.timeout_for(&name);
            let nonce = self.next_nonce;
            self.next_nonce += 1;
            let p = self.peers.get_mut(&name).expect("listed");
            p.probe = Some((nonce, now, timeout));
            p.last_probe = now;
            p.urgent = false;
            probes.push(Probe { peer: name, nonce, timeout_ms: timeout });
        }
        (probes, changes)
    }

    /// How long to wait for `peer`'s answer (ms): the larger of the
    /// configured floor and four smoothed round trips.
    pub fn timeout_for(&self, peer: &str) -> f64 {
        let rtt = self.peers.get(peer).and_then(|p| p.view.rtt_ms).unwrap_or(0.0);
        self.cfg.probe_timeout_ms.max(4.0 * rtt)
    }

    /// What we believe of `peer` (unknown peers are not alive).
    pub fn state(&self, peer: &str) -> Option<PeerState> {
        self.peers.get(peer).map(|p| p.view.state)
    }

    /// Whether `peer` is alive (neither suspect nor dead nor unknown).
    pub fn is_alive(&self, peer: &str) -> bool {
        self.state(peer) == Some(PeerState::Alive)
    }

    /// Every peer with what we believe of it.
    pub fn peers(&self) -> impl Iterator<Item = (&str, &PeerView)> {
        self.peers.iter().map(|(n, p)| (n.as_str(), &p.view))
    }

    /// Peers in `state`.
    pub fn in_state(&self, state: PeerState) -> impl Iterator<Item = &str> {
        self.peers.iter().filter(move |(_, p)| p.view.state == state).map(|(n, _)| n.as_str())
    }

    /// Changes of the set of reachable peers so far.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn alive(&mut self, peer: &str, now: f64, reason: Reason) -> Option<Transition> {
        let p = self.peers.get_mut(peer)?;
        p.view.last_heard = p.view.last_heard.max(now);
        if p.view.state == PeerState::Alive {
            return None;
        }
        // Whatever probe was in flight is moot.
        p.probe = None;
        self.set(peer, PeerState::Alive, reason, now)
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
        p.view.state = to;
        p.view.reason = reason.clone();
        p.view.since = now;
        Some(Transition { peer: peer.to_string(), from, to, reason, at: now })
    }
}

#[cfg(test)]
mod tests;
