//! Placements in flight: work this agent has placed on a node that the
//! node's owner has not booked yet (a planned stage waiting for its
//! inputs, a failover on its way to the owner), or whose booking has not
//! yet come back in the owner's published record. Until the owner's record
//! shows it, the planning view would see the node as free and every plan
//! and failover made meanwhile would pile onto the same node from the same
//! stale estimate; so the view counts these as allocated
//! ([`InFlight::apply`]) until they expire.

use std::collections::BTreeMap;

use crate::view::FabricView;

/// One placement in flight.
#[derive(Clone, Debug, PartialEq)]
pub struct Reservation {
    /// What holds it (the agent uses `job/stage`).
    pub job: String,
    /// Cores held.
    pub cpu: f64,
    /// Memory held (GB).
    pub mem_gb: f64,
    /// Until when it counts (ms, the caller's clock).
    pub until: f64,
}

/// Placements in flight, by node name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InFlight {
    by_node: BTreeMap<String, Vec<Reservation>>,
}

impl InFlight {
    /// Counts `cpu`/`mem_gb` on `node` for `job` (any key: the agent uses
    /// `job/stage`) until `until`.
    pub fn reserve(&mut self, node: &str, job: &str, cpu: f64, mem_gb: f64, until: f64) {
        self.by_node.entry(node.to_string()).or_default().push(Reservation {
            job: job.to_string(),
            cpu,
            mem_gb,
            until,
        });
    }

    /// Drops `job`'s reservations on `node` (its booking is known now);
    /// whether there were any.
    pub fn release(&mut self, node: &str, job: &str) -> bool {
        let Some(v) = self.by_node.get_mut(node) else { return false };
        let before = v.len();
        v.retain(|r| r.job != job);
        let gone = v.len() != before;
        if v.is_empty() {
            self.by_node.remove(node);
        }
        gone
    }

    /// Drops every reservation that expired by `now`; whether any did.
    pub fn expire(&mut self, now: f64) -> bool {
        let before = self.len();
        self.by_node.retain(|_, v| {
            v.retain(|r| r.until > now);
            !v.is_empty()
        });
        self.len() != before
    }

    /// Reservations held.
    pub fn len(&self) -> usize {
        self.by_node.values().map(Vec::len).sum()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_node.is_empty()
    }

    /// Per node: reservations and the cores they hold.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, usize, f64)> {
        self.by_node.iter().map(|(n, v)| (n.as_str(), v.len(), v.iter().map(|r| r.cpu).sum()))
    }

    /// Counts the reservations still in force at `now` as allocated in
    /// `view`: free resources shrink, never below zero; the nodes'
    /// allocatable resources (their size, which owners book against)
    /// stay as they are.
    pub fn apply(&self, view: &mut FabricView, now: f64) {
        for (node, rs) in &self.by_node {
            let Some(n) = view.node_index(node) else { continue };
            let (cpu, mem) =
                rs.iter().filter(|r| r.until > now).fold((0.0, 0.0), |(c, m), r| (c + r.cpu, m + r.mem_gb));
            let t = &mut view.nodes;
            t.free_cpu[n] = (t.free_cpu[n] - cpu).max(0.0);
            t.free_mem[n] = (t.free_mem[n] - mem).max(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::reference;

    #[test]
    fn reservations_shrink_free_capacity_until_they_expire_or_are_released() {
        let f = reference();
        let base = f.view();
        let n = base.node_index("dc-x86-02").unwrap();
        let (free, alloc) = (base.nodes.free_cpu[n], base.nodes.alloc_cpu[n]);
        let mut inflight = InFlight::default();
        inflight.reserve("dc-x86-02", "a", 4.0, 8.0, 1_000.0);
        inflight.reserve("dc-x86-02", "b", 2.0, 1.0, 3_000.0);
        inflight.reserve("no-such-node", "c", 1.0, 1.0, 3_000.0);
        let mut v = base.clone();
        inflight.apply(&mut v, 500.0);
        assert_eq!(v.nodes.free_cpu[n], (free - 6.0).max(0.0));
        assert_eq!(v.nodes.alloc_cpu[n], alloc, "the node's size does not change");
        // Past a's expiry only b counts (even before `expire` runs).
        let mut v = base.clone();
        inflight.apply(&mut v, 2_000.0);
        assert_eq!(v.nodes.free_cpu[n], (free - 2.0).max(0.0));
        assert!(inflight.expire(2_000.0));
        assert_eq!(inflight.len(), 2);
        assert!(inflight.release("dc-x86-02", "b"));
        assert!(!inflight.release("dc-x86-02", "b"), "nothing left to release");
        assert_eq!(inflight.nodes().count(), 1, "only the unknown node's is left");
        let mut v = base.clone();
        inflight.apply(&mut v, 2_000.0);
        assert_eq!(v.nodes.free_cpu[n], free);
        assert!(!inflight.expire(2_500.0));
        assert!(inflight.expire(3_000.0));
        assert!(inflight.is_empty());
    }

    #[test]
    fn a_planner_that_counts_its_placements_spreads_the_next_plan() {
        // Two identical jobs planned back to back on one view: without the
        // first's placements counted, the second goes to the same node.
        use crate::policy::{Policy, PolicyConfig};
        let f = reference();
        let job = crate::spec::parse_job(
            r#"{"apiVersion":"twinmesh.io/v1","metadata":{"name":"big","origin":{"cluster":"dc-core"}},
               "spec":{"stages":[{"id":"s","compute":{"cpu":48,"mem_gb":64,"duration_ms":60000}}]}}"#,
        )
        .unwrap();
        let view = f.view();
        let first = Policy::Greedy.plan(&view, &job, &PolicyConfig::default()).unwrap();
        let again = Policy::Greedy.plan(&view, &job, &PolicyConfig::default()).unwrap();
        let node = first.placements[0].node.clone();
        assert_eq!(again.placements[0].node, node, "the stale view piles onto one node");
        let mut inflight = InFlight::default();
        inflight.reserve(&node, "first", 48.0, 64.0, 60_000.0);
        let mut counted = view.clone();
        inflight.apply(&mut counted, 0.0);
        let second = Policy::Greedy.plan(&counted, &job, &PolicyConfig::default()).unwrap();
        assert_ne!(second.placements[0].node, node, "counted, the next plan goes elsewhere");
    }
}
