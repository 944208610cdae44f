//! What a mesh simulation measured.

use std::collections::HashMap;

use rand::{RngExt, SeedableRng};
use serde::Serialize;
use twinmesh_common::job::Origin;
use twinmesh_common::rng::SimRng;

use super::jobs;

/// What a run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Agents.
    pub agents: usize,
    /// Node records in the twin.
    pub nodes: usize,
    /// Simulated seconds.
    pub seconds: f64,
    /// Updates published and followed.
    pub updates: usize,
    /// Mean time (ms) for an update to reach 99 % of reachable agents.
    pub reach_99_ms: f64,
    /// Mean time (ms) to reach 99.99 %.
    pub reach_9999_ms: f64,
    /// Mean time (ms) to reach all of them.
    pub reach_100_ms: f64,
    /// Worst time (ms) to reach all of them.
    pub reach_100_max_ms: f64,
    /// Updates that never reached every reachable agent by the end.
    pub incomplete: usize,
    /// Messages sent per agent per simulated second.
    pub msgs_per_agent_s: f64,
    /// Bits sent per agent per simulated second (frames as encoded).
    pub kbit_per_agent_s: f64,
    /// Of them, anti-entropy (kbit/s per agent).
    pub sync_kbit_per_agent_s: f64,
    /// Alive peers marked suspect (outside a partition's cut).
    pub false_suspicions: u64,
    /// Alive peers declared dead (outside a partition's cut).
    pub false_deaths: u64,
    /// Peers across a cut marked suspect during it (of those watched).
    pub cut_suspected: u64,
    /// Mean ms from the cut to suspicion of a peer across it.
    pub cut_detect_ms: f64,
    /// Routing decisions checked at the end: to an agent actually reachable.
    pub routes_ok: usize,
    /// Routing decisions checked at the end: to an agent not reachable.
    pub routes_bad: usize,
    /// Replicas holding the most common twin at the end.
    pub converged: usize,
    /// Updates made during the cut: the worst time (ms) after the heal
    /// until the last replica across the cut held one (NaN without a cut).
    pub heal_converge_max_ms: f64,
    /// Same, mean over those updates.
    pub heal_converge_mean_ms: f64,
    /// Updates made during the cut that had not crossed it by the end.
    pub heal_unconverged: usize,
    /// Jobs submitted.
    pub jobs_submitted: usize,
    /// Jobs that succeeded.
    pub jobs_succeeded: usize,
    /// Jobs that failed.
    pub jobs_failed: usize,
    /// Jobs still running when the simulation ended.
    pub jobs_unfinished: usize,
    /// Jobs that reached a final state more than once (must be 0).
    pub jobs_final_twice: usize,
    /// Jobs forwarded to another agent nearer their origin.
    pub jobs_forwarded: usize,
    /// Forwarded jobs planned where they were submitted because the
    /// forward was lost.
    pub jobs_fell_back: usize,
    /// Forwards that arrived but whose answer did not come back in time
    /// (planned on both ends until reconciled).
    pub late_forwards: u64,
    /// Second copies of a job planned (a late forward planned by its
    /// target after its submitter planned it, or the reverse).
    pub duplicates_planned: u64,
    /// Copies stopped by reconciliation (the other copy stays).
    pub copies_superseded: u64,
    /// Forwards sent on to the next agent after one was silent.
    pub forward_retries: u64,
    /// Reconciliation exchanges answered (after late forwards and returns).
    pub reconciliations: u64,
    /// Runs failed over because their owner was unreachable past the
    /// failover grace.
    pub runs_failed_over: u64,
    /// Booking requests sent again after an owner was silent.
    pub booking_retries: u64,
    /// Mean latency of succeeded jobs (ms, submission to last finish).
    pub job_latency_ms: f64,
    /// Events processed.
    pub events: u64,
    /// Wall seconds the simulation took.
    pub wall_s: f64,
}

impl Report {
    /// Prints the report as text.
    pub fn print(&self) {
        println!(
            "{} agents, {}-node twin, {:.0} simulated s in {:.1} s wall ({} events)",
            self.agents, self.nodes, self.seconds, self.wall_s, self.events
        );
        println!(
            "update reaches 99 % in {:.0} ms, 99.99 % in {:.0} ms, 100 % in {:.0} ms (worst {:.0} ms) — {} updates, {} incomplete",
            self.reach_99_ms,
            self.reach_9999_ms,
            self.reach_100_ms,
            self.reach_100_max_ms,
            self.updates,
            self.incomplete
        );
        println!(
            "per agent: {:.1} messages/s, {:.1} kbit/s ({:.1} kbit/s anti-entropy)",
            self.msgs_per_agent_s, self.kbit_per_agent_s, self.sync_kbit_per_agent_s
        );
        println!(
            "liveness: {} false suspicions, {} false deaths; {} suspicions across the cut, mean {:.0} ms after it",
            self.false_suspicions, self.false_deaths, self.cut_suspected, self.cut_detect_ms
        );
        println!(
            "jobs: {} submitted, {} succeeded, {} failed, {} unfinished, {} ended twice; {} forwarded ({} planned locally after a lost forward); mean latency {:.0} ms",
            self.jobs_submitted,
            self.jobs_succeeded,
            self.jobs_failed,
            self.jobs_unfinished,
            self.jobs_final_twice,
            self.jobs_forwarded,
            self.jobs_fell_back,
            self.job_latency_ms
        );
        println!(
            "job protocol: {} forwards sent on to the next agent, {} late, {} booking requests asked again, {} runs failed over after the grace, {} reconciliation exchanges",
            self.forward_retries, self.late_forwards, self.booking_retries, self.runs_failed_over, self.reconciliations
        );
        println!(
            "duplicates: {} jobs planned twice (a late forward), {} copies stopped by reconciliation",
            self.duplicates_planned, self.copies_superseded
        );
        println!(
            "routing: {} to a reachable agent, {} to an unreachable one; {} of {} replicas hold the same twin at the end",
            self.routes_ok, self.routes_bad, self.converged, self.agents
        );
        if !self.heal_converge_max_ms.is_nan() || self.heal_unconverged > 0 {
            println!(
                "after the heal: updates made during the cut reached every replica across it in {:.0} ms mean, {:.0} ms worst; {} never did",
                self.heal_converge_mean_ms, self.heal_converge_max_ms, self.heal_unconverged
            );
        }
    }
}

impl super::Mesh {
    pub(super) fn report(&self, end: f64, wall_s: f64) -> Report {
        let n = self.args.agents;
        let mut r99 = Vec::new();
        let mut r9999 = Vec::new();
        let mut r100 = Vec::new();
        let mut incomplete = 0;
        for (name, _, at, times) in &self.followed {
            // Only agents that could be reached from the publisher when it
            // published.
            let publisher = self.index.get(name).copied().unwrap_or(0) as usize;
            let mut d: Vec<f64> = times.iter().filter(|t| !t.is_nan()).map(|t| t - at).collect();
            d.sort_by(f64::total_cmp);
            let reachable = match self.partition {
                Some(p) if *at >= p.from && *at < p.to => {
                    if publisher < p.cut {
                        p.cut
                    } else {
                        n - p.cut.min(n)
                    }
                }
                _ => n,
            };
            let q = |share: f64| {
                let k = ((reachable as f64 * share).ceil() as usize).max(1);
                d.get(k - 1).copied()
            };
            match (q(0.99), q(0.9999), q(1.0)) {
                (Some(a), Some(b), Some(c)) => {
                    r99.push(a);
                    r9999.push(b);
                    r100.push(c);
                }
                _ => incomplete += 1,
            }
        }
        let mean = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
        // Updates made during the cut: how long after the heal the last
        // replica across it got each.
        let (mut healed, mut unhealed) = (Vec::new(), 0);
        if let Some(p) = self.partition {
            for (name, _, _, times) in self.followed.iter().filter(|u| u.2 >= p.from && u.2 < p.to) {
                let publisher = self.index.get(name).copied().unwrap_or(0) as usize;
                let far = times.iter().enumerate().filter(|(j, _)| (*j < p.cut) != (publisher < p.cut));
                match far.map(|(_, t)| *t).try_fold(0.0f64, |m, t| (!t.is_nan()).then(|| m.max(t - p.to))) {
                    Some(worst) => healed.push(worst.max(0.0)),
                    None => unhealed += 1,
                }
            }
        }
        let secs = end / 1000.0;
        // Replicas holding the most common twin (by summary).
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for r in &self.replicas {
            *counts.entry(r.twin().summary()).or_default() += 1;
        }
        let converged = counts.values().copied().max().unwrap_or(0);
        let mut routes_ok = 0;
        let mut routes_bad = 0;
        let mut rng = SimRng::seed_from_u64(self.args.seed ^ 0x7007e);
        for _ in 0..200 {
            let i = rng.random_range(0..n);
            let c = self.latency.names()[rng.random_range(0..self.latency.len())].clone();
            let origin = Origin { cluster: c, node: None };
            if let Some(route) = self.replicas[i].route(&origin, &self.latency, &[]) {
                let j = self.index.get(&route.agent).copied().unwrap_or(0) as usize;
                if self.partition.is_some_and(|p| p.splits(i, j, end)) {
                    routes_bad += 1;
                } else {
                    routes_ok += 1;
                }
            }
        }
        // Each job's outcome is its copy that stays.
        let outcomes: Vec<&jobs::SimJob> = (0..self.jobs.len()).filter_map(|k| self.outcome(k)).collect();
        let done: Vec<&jobs::SimJob> = outcomes.iter().copied().filter(|j| j.finals > 0).collect();
        let ok: Vec<f64> = done.iter().filter(|j| !j.failed).map(|j| j.latency_ms).collect();
        let originals = self.jobs.iter().filter(|j| j.copy_of.is_none());
        Report {
            jobs_submitted: outcomes.len(),
            jobs_succeeded: ok.len(),
            jobs_failed: done.iter().filter(|j| j.failed).count(),
            jobs_unfinished: outcomes.len() - done.len(),
            jobs_final_twice: self.jobs.iter().filter(|j| j.finals > 1).count(),
            jobs_forwarded: originals.clone().filter(|j| j.forwarded).count(),
            jobs_fell_back: originals.filter(|j| j.fell_back).count(),
            duplicates_planned: self.duplicates,
            copies_superseded: self.superseded,
            late_forwards: self.late_forwards,
            forward_retries: self.forward_retries,
            reconciliations: self.reconciliations,
            runs_failed_over: self.failed_over,
            booking_retries: self.booking_retries,
            job_latency_ms: mean(&ok),
            agents: n,
            nodes: self.owners,
            seconds: secs,
            updates: r100.len(),
            reach_99_ms: mean(&r99),
            reach_9999_ms: mean(&r9999),
            reach_100_ms: mean(&r100),
            reach_100_max_ms: r100.iter().copied().fold(f64::NAN, f64::max),
            incomplete,
            msgs_per_agent_s: self.msgs as f64 / n as f64 / secs,
            kbit_per_agent_s: self.bytes as f64 * 8.0 / 1000.0 / n as f64 / secs,
            sync_kbit_per_agent_s: self.sync_bytes as f64 * 8.0 / 1000.0 / n as f64 / secs,
            false_suspicions: self.false_suspicions,
            false_deaths: self.false_deaths,
            cut_suspected: self.cut_detect.len() as u64,
            cut_detect_ms: mean(&self.cut_detect),
            routes_ok,
            routes_bad,
            converged,
            heal_converge_max_ms: healed.iter().copied().fold(f64::NAN, f64::max),
            heal_converge_mean_ms: mean(&healed),
            heal_unconverged: unhealed,
            events: self.events,
            wall_s,
        }
    }
}
