//! A network cut in the simulated mesh.

use anyhow::bail;

/// A cut: agents `0..cut` on one side, from `from` to `to` (ms).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Partition {
    /// Agents below this index are on the cut-off side.
    pub cut: usize,
    /// Start (ms).
    pub from: f64,
    /// End (ms).
    pub to: f64,
}

impl Partition {
    pub(super) fn parse(spec: &str, agents: usize) -> anyhow::Result<Self> {
        let bad = || anyhow::anyhow!("--partition '{spec}': expected SHARE@FROM-TO, e.g. 0.3@10-20");
        let (share, window) = spec.split_once('@').ok_or_else(bad)?;
        let (from, to) = window.split_once('-').ok_or_else(bad)?;
        let share: f64 = share.parse().map_err(|_| bad())?;
        let (from, to): (f64, f64) = (from.parse().map_err(|_| bad())?, to.parse().map_err(|_| bad())?);
        if !(0.0..1.0).contains(&share) || to <= from || from < 0.0 {
            bail!("--partition '{spec}': share must be in [0, 1) and FROM < TO");
        }
        Ok(Partition { cut: ((agents as f64) * share).round() as usize, from: from * 1000.0, to: to * 1000.0 })
    }

    pub(super) fn splits(&self, a: usize, b: usize, now: f64) -> bool {
        now >= self.from && now < self.to && ((a < self.cut) != (b < self.cut))
    }
}
