//! `/metrics`: the Prometheus text exposition (checked by `promtool check
//! metrics` in CI; docs/observability.md lists every series).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::Ctx;
use crate::node::PREEMPTIVE_ACTIONS;

const STATES: [&str; 3] = ["alive", "suspect", "dead"];

fn counter(s: &mut String, name: &str, help: &str, v: &AtomicU64) {
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
}

fn gauge(s: &mut String, name: &str, help: &str, v: impl std::fmt::Display) {
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

pub(super) async fn metrics(State(ctx): State<Ctx>) -> Response {
    let a = &ctx.agent;
    let m = &a.metrics;
    let mut s = String::with_capacity(8 * 1024);
    counter(&mut s, "twinmesh_jobs_accepted_total", "Jobs committed by this agent.", &m.jobs_accepted);
    counter(&mut s, "twinmesh_jobs_planned_total", "Jobs planned by this agent.", &m.jobs_planned);
    counter(
        &mut s,
        "twinmesh_jobs_forwarded_total",
        "Jobs forwarded to the agent nearest their origin.",
        &m.jobs_forwarded,
    );
    counter(&mut s, "twinmesh_jobs_succeeded_total", "Jobs that finished.", &m.jobs_succeeded);
    counter(&mut s, "twinmesh_jobs_failed_total", "Jobs that failed.", &m.jobs_failed);
    counter(
        &mut s,
        "twinmesh_jobs_evicted_total",
        "Finished jobs forgotten by the retention policy (--keep-finished, --keep-finished-for).",
        &m.jobs_evicted,
    );
    gauge(&mut s, "twinmesh_jobs_held", "Job records held (memory and disk).", a.jobs_held());
    let signs = a.precursors(&a.view());
    gauge(
        &mut s,
        "twinmesh_precursor_precision",
        "Share of precursors of failure a failure followed within the lead time, learned from the failure history (0.6 before any); what the forecast uses.",
        signs.forecast.precursor_precision,
    );
    gauge(
        &mut s,
        "twinmesh_precursors_judged",
        "Precursors whose lead time has passed, judged for the precision.",
        signs.record.0,
    );
    let _ = writeln!(
        s,
        "# HELP twinmesh_preemptive_actions_total Actions taken ahead of a forecast failure or a forecast missed deadline, by action (migrate: a stage not yet started moved; restart: a running stage moved; replicate: a hot replica started).\n# TYPE twinmesh_preemptive_actions_total counter"
    );
    for (i, action) in PREEMPTIVE_ACTIONS.iter().enumerate() {
        let _ = writeln!(
            s,
            "twinmesh_preemptive_actions_total{{action=\"{action}\"}} {}",
            m.preemptive[i].load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        s,
        "# HELP twinmesh_preemptive_outcomes_total Preemptive actions by how their job ended (on_time: by its deadline or with none; late; failed).\n# TYPE twinmesh_preemptive_outcomes_total counter"
    );
    for (i, action) in PREEMPTIVE_ACTIONS.iter().enumerate() {
        for (k, outcome) in crate::node::ACTION_OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                s,
                "twinmesh_preemptive_outcomes_total{{action=\"{action}\",outcome=\"{outcome}\"}} {}",
                m.preemptive_outcomes[i][k].load(Ordering::Relaxed)
            );
        }
    }
    m.reaction_seconds.write(
        &mut s,
        "twinmesh_preempt_reaction_seconds",
        "From a precursor of failure arriving at this agent to a preemptive action decided on it (wall s).",
    );
    counter(
        &mut s,
        "twinmesh_scaling_actions_total",
        "Periods in which a service scaled here changed its replicas.",
        &m.scaling_actions,
    );
    let _ = writeln!(
        s,
        "# HELP twinmesh_service_replicas Replicas of each service this agent scales.\n# TYPE twinmesh_service_replicas gauge"
    );
    for svc in a.service_list() {
        let _ = writeln!(s, "twinmesh_service_replicas{{service=\"{}\"}} {}", svc.name, svc.replicas);
    }
    let _ = writeln!(
        s,
        "# HELP twinmesh_jobs_reconciled_total Jobs planned on both sides of a partition, settled after the heal, by outcome here (kept, superseded).\n# TYPE twinmesh_jobs_reconciled_total counter"
    );
    for (i, outcome) in ["kept", "superseded"].iter().enumerate() {
        let _ = writeln!(
            s,
            "twinmesh_jobs_reconciled_total{{outcome=\"{outcome}\"}} {}",
            m.reconciled[i].load(Ordering::Relaxed)
        );
    }
    counter(
        &mut s,
        "twinmesh_ownership_conflicts_total",
        "Another agent claimed a node this agent publishes (see /v1/twin \"yielded\").",
        &m.ownership_conflicts,
    );
    counter(&mut s, "twinmesh_gossip_in_total", "Gossip frames received.", &m.gossip_in);
    counter(&mut s, "twinmesh_gossip_out_total", "Gossip frames sent.", &m.gossip_out);
    counter(&mut s, "twinmesh_gossip_dropped_total", "Frames dropped as undecodable.", &m.gossip_dropped);
    m.plan_seconds.write(&mut s, "twinmesh_plan_seconds", "Time to plan a job.");
    m.api_seconds.write(&mut s, "twinmesh_api_request_seconds", "HTTP requests, received to answered.");
    m.peer_seconds.write(
        &mut s,
        "twinmesh_peer_request_seconds",
        "Requests to peer agents (forwards, bookings), sent to answered.",
    );
    m.job_error.write(
        &mut s,
        "twinmesh_prediction_error_ratio",
        "Per finished job: |observed - predicted| / predicted latency.",
    );
    m.stage_error.write(
        &mut s,
        "twinmesh_stage_error_ratio",
        "Per observed stage: |observed - predicted| / predicted run time.",
    );
    let t = a.twin();
    gauge(&mut s, "twinmesh_twin_nodes", "Node records in the twin.", t.len());
    gauge(&mut s, "twinmesh_twin_failures", "Failure events in the twin.", t.failures().count());
    gauge(&mut s, "twinmesh_store_bytes", "Size of the agent's database file.", a.store.size_bytes());
    gauge(&mut s, "twinmesh_peers", "Connected peer agents.", a.peers().len());
    gauge(
        &mut s,
        "twinmesh_inflight_placements",
        "Placements made here that their owners have not booked or published yet (counted in this agent's planning view).",
        a.inflight().iter().map(|(_, n, _)| n).sum::<usize>(),
    );
    let _ = writeln!(
        s,
        "# HELP twinmesh_peer_transitions_total Peer state changes, by the state entered.\n# TYPE twinmesh_peer_transitions_total counter"
    );
    for (i, state) in STATES.iter().enumerate() {
        let _ = writeln!(
            s,
            "twinmesh_peer_transitions_total{{state=\"{state}\"}} {}",
            m.peer_transitions[i].load(Ordering::Relaxed)
        );
    }
    let mut by_state = [0u64; 3];
    for (_, v) in a.liveness() {
        by_state[v.state as usize] += 1;
    }
    let _ = writeln!(
        s,
        "# HELP twinmesh_peer_state Peers the failure detector holds in each state.\n# TYPE twinmesh_peer_state gauge"
    );
    for (i, state) in STATES.iter().enumerate() {
        let _ = writeln!(s, "twinmesh_peer_state{{state=\"{state}\"}} {}", by_state[i]);
    }
    counter(&mut s, "twinmesh_probes_total", "Liveness probes sent.", &m.probes);
    gauge(
        &mut s,
        "twinmesh_partition_epoch",
        "Changes of the set of reachable peers since start (a partition or a heal each add one).",
        a.partition_epoch(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s).into_response()
}
