//! # twinmesh-common — the sans-IO core
//!
//! Everything twinmesh *decides* lives here; everything it *does* (sockets,
//! files, clocks, Kubernetes) lives in the agent. The core never reads a
//! clock, a socket or a file: callers pass the time and the inputs in and get
//! decisions, events and messages out. That makes every function here exact
//! to test and lets `sims/` run thousands of agents in one process on a
//! virtual clock with the very same code.
//!
//! The loop the core serves is **Sense → Simulate → Act → Verify →
//! Recalibrate**:
//!
//! * [`model`] — nodes, clusters and their telemetry; [`latency`] — the
//!   inter-cluster latency/bandwidth matrix; [`fabric`] — the reference
//!   seven-pool fabric and synthetic fabrics of any size.
//! * [`job`] and [`spec`] — the job DAG and the versioned job document
//!   (`apiVersion: twinmesh.io/v1`) with field-precise validation.
//! * [`twin`] — the replicated state: owner-versioned node records, a
//!   grow-only failure set, digests and deltas for anti-entropy.
//! * [`view`] — a dense, index-based snapshot of the twin that planning and
//!   simulation run on.
//! * [`des`] — the discrete-event simulator on virtual time.
//! * [`predict`] — nominal latency/energy/risk/slack of a plan.
//! * [`policy`] — baseline (kube-scheduler-like), greedy-latency, resilient
//!   and CVaR placement.
//! * [`resiliency`], [`failures`], [`verify`], [`calibrate`], [`scaling`].
//!
//! ```
//! use twinmesh_common::{fabric, policy::{Policy, PolicyConfig}, spec};
//!
//! let fabric = fabric::reference();
//! let view = fabric.view();
//! let job = spec::parse_job(r#"
//! apiVersion: twinmesh.io/v1
//! metadata: { name: hello, deadline_ms: 10000, origin: { cluster: edge-microdc } }
//! spec:
//!   stages:
//!     - { id: detect, compute: { cpu: 1, mem_gb: 1, duration_ms: 2000 } }
//! "#).unwrap();
//! let plan = Policy::Greedy.plan(&view, &job, &PolicyConfig::default()).unwrap();
//! assert_eq!(plan.placements.len(), 1);
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod autoscale;
pub mod calibrate;
pub mod capacity;
pub mod des;
pub mod execution;
pub mod fabric;
pub mod failures;
pub mod forecast;
pub mod gossip;
pub mod inflight;
pub mod job;
pub mod latency;
pub mod lifecycle;
pub mod liveness;
pub mod model;
pub mod plan;
pub mod policy;
pub mod predict;
pub mod preempt;
pub mod reconcile;
pub mod record;
pub mod replica;
pub mod resiliency;
pub mod rng;
pub mod routing;
pub mod scaling;
pub mod spec;
pub mod truth;
pub mod twin;
pub mod verify;
pub mod view;
pub mod wire;

#[cfg(test)]
pub(crate) mod testkit;
