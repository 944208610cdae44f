//! Reconciling jobs planned on both sides of a partition.
//!
//! A job's id is its name plus a hash of its document, so the same document
//! submitted on both sides of a cut is one job planned twice. When the two
//! planners meet again they exchange the ids they planned
//! ([`crate::wire::Message::Planned`]) and each applies [`keeps`] to every
//! id both hold: the same inputs on both sides give the same verdict, so no
//! further round is needed. The loser stops what it has not yet run and
//! marks its copy superseded (`JobState::Superseded`), naming the winner.
//!
//! The rule (docs/partition.md): the plan made **nearer the job's origin**
//! wins (the planner's cluster's latency to the origin's cluster, from the
//! fabric every agent shares — the agent routing would have chosen with
//! the mesh whole); between equals, the copy **accepted first**; then the
//! planner whose **name sorts first**.

use serde::{Deserialize, Serialize};

/// One planner's copy of a job, as it tells its peers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedCopy {
    /// Job id.
    pub id: String,
    /// The agent that planned this copy.
    pub planner: String,
    /// Latency (ms) from the planner's cluster to the job's origin cluster.
    pub origin_ms: f64,
    /// When this copy was accepted (Unix ms).
    pub accepted_at_ms: u64,
}

impl PlannedCopy {
    fn rank(&self) -> (f64, u64, &str) {
        (if self.origin_ms.is_finite() { self.origin_ms } else { f64::MAX }, self.accepted_at_ms, &self.planner)
    }
}

/// Whether `mine` is the copy of its job that stays, against `theirs`
/// (same id, another planner).
pub fn keeps(mine: &PlannedCopy, theirs: &PlannedCopy) -> bool {
    let (a, b) = (mine.rank(), theirs.rank());
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(b.2)).is_le()
}

/// For every id in both lists (planned by different agents): this side's
/// copy, the other's, and whether this side's stays.
pub fn verdicts<'a>(
    mine: &'a [PlannedCopy],
    theirs: &'a [PlannedCopy],
) -> Vec<(&'a PlannedCopy, &'a PlannedCopy, bool)> {
    let by_id: std::collections::HashMap<&str, &PlannedCopy> = theirs.iter().map(|c| (c.id.as_str(), c)).collect();
    mine.iter()
        .filter_map(|m| {
            let t = by_id.get(m.id.as_str())?;
            (t.planner != m.planner).then(|| (m, *t, keeps(m, t)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(id: &str, planner: &str, origin_ms: f64, at: u64) -> PlannedCopy {
        PlannedCopy { id: id.into(), planner: planner.into(), origin_ms, accepted_at_ms: at }
    }

    #[test]
    fn nearer_the_origin_then_earlier_then_first_name() {
        let near = copy("j", "edge-srv-01", 2.0, 500);
        let far = copy("j", "dc-x86-01", 40.0, 100);
        assert!(keeps(&near, &far) && !keeps(&far, &near), "distance first, though accepted later");
        let early = copy("j", "b", 5.0, 100);
        let late = copy("j", "a", 5.0, 200);
        assert!(keeps(&early, &late) && !keeps(&late, &early), "then acceptance time");
        let a = copy("j", "a", 5.0, 100);
        let b = copy("j", "b", 5.0, 100);
        assert!(keeps(&a, &b) && !keeps(&b, &a), "then the name");
        let unknown = copy("j", "a", f64::NAN, 0);
        assert!(keeps(&b, &unknown), "an unknown distance loses");
    }

    #[test]
    fn both_sides_reach_opposite_verdicts_on_shared_ids_only() {
        let left = vec![copy("x", "a", 1.0, 10), copy("y", "a", 9.0, 10), copy("only-left", "a", 1.0, 1)];
        let right = vec![copy("x", "b", 3.0, 5), copy("y", "b", 2.0, 50), copy("only-right", "b", 1.0, 1)];
        let l = verdicts(&left, &right);
        let r = verdicts(&right, &left);
        let keep = |v: &[(&PlannedCopy, &PlannedCopy, bool)], id: &str| v.iter().find(|x| x.0.id == id).map(|x| x.2);
        assert_eq!(l.len(), 2);
        assert_eq!(r.len(), 2);
        for id in ["x", "y"] {
            assert_ne!(keep(&l, id), keep(&r, id), "exactly one side keeps {id}");
        }
        assert_eq!(keep(&l, "x"), Some(true));
        assert_eq!(keep(&r, "y"), Some(true));
        // The same planner on both lists (a copy it told us about) is no
        // conflict.
        assert!(verdicts(&left, &left).is_empty());
    }
}
