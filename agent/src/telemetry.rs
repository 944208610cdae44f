//! Telemetry from the machine the agent runs on (sysinfo): CPU %, memory
//! %, network receive/transmit rates and the hottest temperature sensor.

use std::time::Instant;

use twinmesh_common::model::Telemetry;

/// Samples the host; keeps what it needs to turn counters into rates.
pub struct Sampler {
    sys: Option<sysinfo::System>,
    nets: Option<sysinfo::Networks>,
    comps: Option<sysinfo::Components>,
    last: Instant,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler {
            sys: sysinfo::System::new().ok(),
            nets: sysinfo::Networks::new_with_refreshed_list().ok(),
            comps: sysinfo::Components::new_with_refreshed_list().ok(),
            last: Instant::now(),
        }
    }
}

impl Sampler {
    /// One sample. Figures are rounded (whole percents, whole kB/s, whole
    /// degrees): finer ones would only churn record versions and gossip.
    pub fn sample(&mut self) -> Telemetry {
        let dt = self.last.elapsed().as_secs_f64().max(1e-3);
        self.last = Instant::now();
        let (cpu_pct, mem_pct) = self.sys.as_mut().map_or((0.0, 0.0), |s| {
            s.refresh_cpu_usage();
            s.refresh_memory();
            let total = s.total_memory().max(1) as f64;
            (f64::from(s.global_cpu_usage()).round(), (s.used_memory() as f64 / total * 100.0).round())
        });
        let (rx, tx) = self.nets.as_mut().map_or((0.0, 0.0), |n| {
            n.refresh(true);
            // Counters since the previous refresh.
            let rx: u64 = n.values().map(sysinfo::NetworkData::received).sum();
            let tx: u64 = n.values().map(sysinfo::NetworkData::transmitted).sum();
            (rx as f64 / dt, tx as f64 / dt)
        });
        let temperature_c = self.comps.as_mut().and_then(|c| {
            c.refresh(false);
            c.iter().filter_map(sysinfo::Component::temperature).map(f64::from).reduce(f64::max).map(f64::round)
        });
        Telemetry {
            cpu_pct,
            mem_pct,
            net_rx_bps: (rx / 1000.0).round() * 1000.0,
            net_tx_bps: (tx / 1000.0).round() * 1000.0,
            temperature_c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_in_range() {
        let mut s = Sampler::default();
        let _ = s.sample();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let t = s.sample();
        assert!((0.0..=100.0).contains(&t.cpu_pct), "{t:?}");
        assert!((0.0..=100.0).contains(&t.mem_pct) && t.mem_pct > 0.0, "{t:?}");
        assert!(t.net_rx_bps >= 0.0 && t.net_tx_bps >= 0.0);
    }
}
