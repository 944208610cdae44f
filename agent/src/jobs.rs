//! Job records live in `twinmesh_common::record` (the wire carries them
//! between planners); re-exported here for the agent.

pub use twinmesh_common::record::*;
