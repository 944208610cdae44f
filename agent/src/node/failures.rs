//! Failures observed here, and the precursors of failure that the
//! preemptive rule acts on (`common::forecast`, `common::preempt`).

use std::sync::Arc;

use tracing::warn;
use twinmesh_common::failures::{FailureConfig, FailureEvent, FailureGenerator, FailureKind, NodeSample};
use twinmesh_common::forecast::{ForecastConfig, learned_precision, precursor_record};
use twinmesh_common::replica::Output;
use twinmesh_common::twin::{FailureId, NodeRecord};
use twinmesh_common::view::FabricView;

use super::{Agent, now_ms};

/// What the forecast reads: when each node of a view last showed a
/// precursor (fabric ms), and the forecast's settings with the precision
/// learned from this twin's failure history.
#[derive(Debug)]
pub struct Signs {
    /// Per node of the view, its latest precursor (fabric ms).
    pub at: Vec<Option<f64>>,
    /// The forecast's settings (precision learned).
    pub forecast: ForecastConfig,
    /// Precursors judged so far, and how many came true.
    pub record: (usize, usize),
}

/// The latest precursor's arrival here: changes with every precursor.
#[derive(Clone, Copy, Debug, Default)]
pub struct Warned {
    /// Precursors arrived so far.
    pub epoch: u64,
    /// When the latest arrived.
    pub at: Option<std::time::Instant>,
}

/// [`Signs`] of one view, shared.
pub type Precursors = Arc<Signs>;

impl Agent {
    /// Records a failure (or recovery) observed or injected here and
    /// spreads it.
    pub async fn observe_failure(self: &Arc<Self>, node: &str, kind: FailureKind, duration_ms: u64) -> FailureEvent {
        let (ev, outputs) = {
            let mut st = self.lock();
            st.failure_seq += 1;
            let ev = FailureEvent {
                id: FailureId { reporter: self.cfg.name.clone(), seq: st.failure_seq },
                node: node.to_string(),
                kind,
                at_ms: now_ms(),
                duration_ms,
            };
            let out = st.replica.report_failure(ev.clone());
            st.view = None;
            (ev, out)
        };
        // Our own failure reports are stored before they are spread.
        if let Err(e) = self.store.put_twin(&[], std::slice::from_ref(&ev)).await {
            warn!(error = %e, "storing failure");
        }
        self.note_precursors(&[], std::slice::from_ref(&ev));
        let gossip: Vec<Output> = outputs.into_iter().filter(|o| matches!(o, Output::Publish(_))).collect();
        self.carry_out(gossip).await;
        ev
    }

    /// When each node of `view` last showed a precursor of failure (fabric
    /// ms): a thermal-throttle or network-degradation event in the twin, or
    /// telemetry past the seed's thresholds (`common::forecast`). Read once
    /// per view: a new view comes with every change of the twin.
    pub fn precursors(&self, view: &Arc<FabricView>) -> Precursors {
        let now = self.fabric_now();
        let zero = self.wall_of(0.0);
        let scale = self.cfg.time_scale.max(1e-9);
        let mut out = vec![None; view.nodes.len()];
        let mut st = self.lock();
        if let Some((v, p)) = &st.precursors {
            if Arc::ptr_eq(v, view) {
                return p.clone();
            }
        }
        let mut forecast = ForecastConfig::default();
        let lead_wall = (forecast.lead_ms * scale) as u64;
        let record = precursor_record(st.replica.twin().failures(), lead_wall, now_ms());
        forecast.precursor_precision = learned_precision(record.0, record.1, forecast.precursor_precision);
        for f in st.replica.twin().failures() {
            if !matches!(f.kind, FailureKind::ThermalThrottle | FailureKind::NetworkDegradation) {
                continue;
            }
            if let Some(n) = view.node_index(&f.node) {
                let at = (f.at_ms as f64 - zero) / scale;
                if at <= now && out[n].is_none_or(|t: f64| at > t) {
                    out[n] = Some(at);
                }
            }
        }
        for r in st.replica.twin().records() {
            if twinmesh_common::forecast::precursor_in(&r.node.telemetry).is_some() {
                if let Some(n) = view.node_index(&r.node.name) {
                    out[n] = Some(now);
                }
            }
        }
        let out = Arc::new(Signs { at: out, forecast, record });
        st.precursors = Some((view.clone(), out.clone()));
        out
    }

    /// Wakes running executions when a precursor arrives (a thermal or
    /// network event, or a node record whose telemetry shows one).
    pub(super) fn note_precursors(&self, records: &[NodeRecord], failures: &[FailureEvent]) {
        let warned =
            failures.iter().any(|f| matches!(f.kind, FailureKind::ThermalThrottle | FailureKind::NetworkDegradation))
                || records.iter().any(|r| twinmesh_common::forecast::precursor_in(&r.node.telemetry).is_some());
        if warned {
            self.precursor_epoch.send_modify(|w| {
                w.epoch += 1;
                w.at = Some(std::time::Instant::now());
            });
        }
    }

    /// Changes whenever a precursor of failure arrives.
    pub fn precursor_changes(&self) -> tokio::sync::watch::Receiver<Warned> {
        self.precursor_epoch.subscribe()
    }
}

impl Agent {
    /// The ground truth of the virtual fabric for the nodes this agent
    /// owns: each fabric second, a failure generator
    /// (`common::failures`) draws failures from the nodes' resiliency and
    /// telemetry, announced by precursors as configured; every event enters
    /// the twin as if observed here. Runs until the agent stops.
    pub async fn run_chaos(self: Arc<Self>, cfg: FailureConfig) {
        let mut generator = FailureGenerator::new(self.cfg.name.clone(), cfg);
        let mut rng = twinmesh_common::rng::seeded(now_ms() ^ 0x00c4_a05e);
        let scale = self.cfg.time_scale.max(1e-6);
        let tick = std::time::Duration::from_secs_f64(scale.clamp(0.01, 1.0));
        loop {
            tokio::time::sleep(tick).await;
            let view = self.view();
            // The owned nodes' telemetry, read under the lock (the twin is
            // not copied each tick).
            let samples: Vec<(String, f64, f64, Option<f64>)> = {
                let st = self.lock();
                let twin = st.replica.twin();
                self.cfg
                    .owned
                    .iter()
                    .map(|n| {
                        let r = view.node_index(&n.name).map_or(1.0, |i| view.nodes.resiliency[i]);
                        let t = twin.record(&n.name).map_or(n.telemetry, |rec| rec.node.telemetry);
                        (n.name.clone(), r, t.cpu_pct, t.temperature_c)
                    })
                    .collect()
            };
            let nodes: Vec<NodeSample<'_>> = samples
                .iter()
                .map(|(name, r, cpu, temp)| NodeSample { name, resiliency: *r, cpu_pct: *cpu, temperature_c: *temp })
                .collect();
            let fabric_now = self.fabric_now().max(0.0) as u64;
            for ev in generator.step(fabric_now, &nodes, &mut rng) {
                let wall = (ev.duration_ms as f64 * scale).round() as u64;
                tracing::info!(node = %ev.node, kind = ?ev.kind, "ground truth: failure drawn (--chaos)");
                self.observe_failure(&ev.node, ev.kind, wall.max(1)).await;
            }
        }
    }
}

impl Agent {
    /// The planning view without the nodes whose latest precursor is
    /// within the forecast's lead time (they take no new work), and their
    /// names; `None` when no node is warned. Built once per view and
    /// warned set (admission asks this for every job).
    pub(super) fn avoiding_warned(&self, view: &Arc<FabricView>) -> Option<(Arc<FabricView>, Vec<String>)> {
        let signs = self.precursors(view);
        let now = self.fabric_now();
        let warned: Vec<usize> = twinmesh_common::preempt::warned_nodes(&signs.at, now, signs.forecast.lead_ms)
            .filter(|&n| view.nodes.ready[n])
            .collect();
        if warned.is_empty() {
            return None;
        }
        let names = warned.iter().map(|&n| view.nodes.name[n].clone()).collect();
        let mut st = self.lock();
        if let Some((v, w, calm)) = &st.calm {
            if Arc::ptr_eq(v, view) && *w == warned {
                return Some((calm.clone(), names));
            }
        }
        let mut calm = (**view).clone();
        for &n in &warned {
            calm.nodes.ready[n] = false;
        }
        let calm = Arc::new(calm);
        st.calm = Some((view.clone(), warned, calm.clone()));
        Some((calm, names))
    }
}
