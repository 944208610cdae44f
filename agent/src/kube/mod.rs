//! The Kubernetes actuator: stage pods on the planned nodes of every
//! cluster, watches that turn pods and nodes into observations and twin
//! updates, and failure injection by cordon and taint.
//!
//! - [`manifest`]: the pod a stage becomes (pure).
//! - [`observe`]: Node and Pod objects → twin facts and stage progress (pure).
//! - [`client`]: one client per cluster and the API calls, with retries.
//! - [`run`]: a job's stages as pods, in order, verified and calibrated.
//! - [`node`]: this agent's own Node → its twin record; metrics; reverts.

pub mod client;
pub mod manifest;
pub mod node;
pub mod observe;
pub mod run;

pub use client::{Kube, KubeError, KubeSettings};
