//! What a mesh simulation measured.

use serde::Serialize;

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
    /// (the agents would plan those on both sides until reconciled).
    pub late_forwards: u64,
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
