//! Who publishes a node's record when two agents claim it — say two agents
//! both started with `--own-cluster` for one cluster. Without a rule they
//! would take the record back and forth forever, each overwriting the
//! other's owner label. The rule, the same on every replica:
//!
//! 1. a node's own agent (the agent named like the node) keeps it;
//! 2. otherwise the agent whose name sorts first keeps it.
//!
//! The winner republishes its record above the claimant's version; the
//! loser stops publishing the node and stops taking bookings for it. Both
//! report the conflict ([`Output::Conflict`]), so an operator sees it.
//! Whichever record one side accepts first, at least one side sees the
//! other's claim (one of two versions is the higher), so a conflict is
//! always found.

use serde::{Deserialize, Serialize};

use super::{AGENT_LABEL, Output, Replica};
use crate::model::Node;
use crate::twin::NodeRecord;
use crate::wire::Message;

/// Two agents claimed one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnershipConflict {
    /// The node both claim.
    pub node: String,
    /// The other agent.
    pub claimant: String,
    /// Whether this agent kept the node (else it yielded to `claimant`).
    pub kept: bool,
}

/// Whether agent `a`'s claim on `node` beats agent `b`'s.
pub fn claim_beats(node: &str, a: &str, b: &str) -> bool {
    match (a == node, b == node) {
        (true, _) => true,
        (false, true) => false,
        (false, false) => a < b,
    }
}

impl Replica {
    /// Publishes a new version of a record this agent owns. A node this
    /// agent yielded to another agent's claim is not published (empty).
    pub fn update_own(&mut self, node: Node) -> Vec<Output> {
        if self.yielded.contains_key(&node.name) {
            return Vec::new();
        }
        self.routing.take();
        self.claims.insert(node.name.clone(), node.clone());
        let rec = self.twin.update_own(node);
        vec![Output::Persist { records: vec![rec.clone()], failures: vec![] }, Output::Publish(Message::Record(rec))]
    }

    /// Whether this agent publishes `node` (claimed and not yielded).
    pub fn owns(&self, node: &str) -> bool {
        self.claims.contains_key(node)
    }

    /// Nodes this agent gave up to another agent's claim, with the winner.
    pub fn yielded(&self) -> impl Iterator<Item = (&str, &str)> {
        self.yielded.iter().map(|(n, a)| (n.as_str(), a.as_str()))
    }

    /// Checks records that just merged for another agent's claim on a node
    /// this agent publishes, and settles it by [`claim_beats`].
    pub(super) fn settle_claims(&mut self, merged: &[NodeRecord], out: &mut Vec<Output>) {
        for r in merged {
            let Some(mine) = self.claims.get(&r.node.name) else { continue };
            let Some(other) = r.node.labels.get(AGENT_LABEL) else { continue };
            if *other == self.cfg.name {
                continue;
            }
            let node = r.node.name.clone();
            let other = other.clone();
            if claim_beats(&node, &self.cfg.name, &other) {
                let rec = self.twin.update_own(mine.clone());
                out.push(Output::Persist { records: vec![rec.clone()], failures: vec![] });
                out.push(Output::Publish(Message::Record(rec)));
                out.push(Output::Conflict(OwnershipConflict { node, claimant: other, kept: true }));
            } else {
                self.claims.remove(&node);
                self.yielded.insert(node.clone(), other.clone());
                out.push(Output::Conflict(OwnershipConflict { node, claimant: other, kept: false }));
            }
        }
    }
}
