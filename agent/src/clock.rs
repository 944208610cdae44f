//! The wall clock, read by the shell only (the protocol takes time as an
//! input).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in ms.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Start of fabric time: fabric ms count from here (wall ms / time
/// scale), the same on every agent of a mesh, and small enough that f64
/// keeps sub-microsecond precision.
pub const FABRIC_EPOCH_MS: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
