//! The service that shares the fabric with the job stream: a web service
//! of 2-core replicas near its users (edge-microdc), whose load steps up
//! 2.5× for the middle third of the run. Every period the replicas are
//! decided by `common::autoscale::decide` — the reactive HPA rule in the
//! reactive and preemptive arms, the twin's forecast in "preemptive +
//! scaling", through `autoscale::Controller` as the agents do — and leased as one-period bookings on the nodes a greedy plan
//! from the origin picks, as the agents lease them: the jobs compete with
//! them for capacity. Its requests' lateness comes from the service DES
//! under the same mode.

use twinmesh_common::autoscale::{Controller, Phase, ScaleConfig, Scaling, ServiceCase, simulate};
use twinmesh_common::des::Simulator;
use twinmesh_common::execution::placed;
use twinmesh_common::job::Job;
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::spec::replica_job;
use twinmesh_common::view::FabricView;

/// Cores of one replica.
const REPLICA_CPU: f64 = 2.0;
/// Where its users are.
const ORIGIN: &str = "edge-microdc";

/// The service and its scaling state.
pub struct Hosted {
    case: ServiceCase,
    mode: Scaling,
    next: f64,
    end: f64,
    scaler: Controller,
    /// Core-seconds leased so far.
    pub core_s: f64,
    /// Where a new replica goes: the service's replica job.
    probe: Job,
}

impl Hosted {
    /// Over `[0, span_ms)`: 100 rps, 250 rps in the middle third; 60 ms
    /// per request, 250 ms objective; 4–40 replicas; 15 s periods.
    pub fn new(span_ms: f64, seed: u64, mode: Scaling) -> anyhow::Result<Hosted> {
        let third = (span_ms / 3.0).max(1.0);
        let phase = |from: f64, rps: f64| Phase { from_ms: from, rps, count: ((rps * third / 1000.0) as u64).max(1) };
        let case = ServiceCase {
            service_ms: 60.0,
            phases: vec![phase(0.0, 100.0), phase(third, 250.0), phase(2.0 * third, 100.0)],
            cold_start_ms: 5_000.0,
            objective_ms: 250.0,
            initial: 10,
            scale: ScaleConfig { min: 4, max: 40, target: 0.6, tolerance: 0.1, period_ms: 15_000.0 },
            seed,
        };
        let probe = replica_job("web", ORIGIN, REPLICA_CPU, 1.0, case.service_ms)?;
        let scaler = Controller::new(&case);
        Ok(Hosted { case, mode, next: 0.0, end: span_ms, scaler, core_s: 0.0, probe })
    }

    /// One replica's lease: a period of the replica's cores from the
    /// service's origin (it must outlive the simulator it is booked in);
    /// placed where its replica job (`spec::replica_job`) would go.
    pub fn lease_job() -> anyhow::Result<Job> {
        Ok(replica_job("web", ORIGIN, REPLICA_CPU, 1.0, 15_000.0)?)
    }

    /// When the next period starts (∞ once the service's load is over).
    pub fn next_at(&self) -> f64 {
        if self.next < self.end { self.next } else { f64::INFINITY }
    }

    /// At a period's start: the replicas for it, each leased where a
    /// greedy plan from the origin puts it.
    pub fn period<'a>(
        &mut self,
        sim: &mut Simulator<'a>,
        lease: &'a Job,
        planning: &FabricView,
        truth: &FabricView,
        cfg: &PolicyConfig,
    ) -> anyhow::Result<()> {
        let now = self.next;
        let period = self.case.scale.period_ms;
        let replicas = self.scaler.period(&self.case, self.mode, now).replicas;
        for _ in 0..replicas {
            let Ok(plan) = Policy::Greedy.plan(planning, &self.probe, cfg) else { break };
            let p = placed(truth, &lease.name, &plan).map_err(anyhow::Error::msg)?;
            sim.submit(lease, truth.origin(lease).expect("origin"), &p.assign, &[None], now);
        }
        self.core_s += f64::from(replicas) * REPLICA_CPU * period / 1000.0;
        self.next += period;
        Ok(())
    }

    /// Requests later than the objective (%), from the service DES under
    /// this mode.
    pub fn late_pct(&self) -> f64 {
        let r = simulate(&self.case, self.mode);
        100.0 * r.late as f64 / r.requests.max(1) as f64
    }
}
