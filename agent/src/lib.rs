//! The twinmesh agent as a library: the `twinmesh` binary is a thin
//! `main` over [`cli`], and the end-to-end tests drive the Kubernetes
//! actuator ([`kube`]) directly against an API double.

pub mod actuator;
pub mod api;
pub mod cli;
pub mod clock;
pub mod jobs;
pub mod kube;
pub mod memory;
pub mod mesh;
pub mod node;
pub mod store;
pub mod telemetry;
