//! The seed's statistics of a figure over replications: mean, median,
//! standard deviation, min, max, Q25, Q75.

use serde::Serialize;

/// Summary statistics of one sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    /// Sample standard deviation (n − 1); 0 for a single value.
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub q25: f64,
    pub q75: f64,
}

/// The `q` quantile of sorted values, linear between closest ranks (the
/// rule of numpy's default and R's type 7); NaN when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

impl Stats {
    /// Statistics of the finite values of `sample` (NaN marks a figure a
    /// replication could not give, e.g. a latency with no job done).
    pub fn of(sample: &[f64]) -> Stats {
        let mut v: Vec<f64> = sample.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            let nan = f64::NAN;
            return Stats { n, mean: nan, median: nan, std: nan, min: nan, max: nan, q25: nan, q75: nan };
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = if n > 1 { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
        Stats {
            n,
            mean,
            median: quantile(&v, 0.5),
            std,
            min: v[0],
            max: v[n - 1],
            q25: quantile(&v, 0.25),
            q75: quantile(&v, 0.75),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hand-computed: 2, 4, 4, 4, 5, 5, 7, 9 — mean 5, sample variance
    // 32 / 7, median (4 + 5) / 2, Q25 at rank 1.75 = 4, Q75 at rank 5.25 =
    // 5 + 0.25 × 2 = 5.5. NaN is left out.
    #[test]
    fn statistics_of_a_hand_made_sample() {
        let s = Stats::of(&[9.0, 2.0, 4.0, f64::NAN, 4.0, 4.0, 5.0, 5.0, 7.0]);
        assert_eq!(s.n, 8);
        assert_eq!(s.mean, 5.0);
        assert!((s.std - (32.0f64 / 7.0).sqrt()).abs() < 1e-12, "{}", s.std);
        assert_eq!((s.min, s.max, s.median, s.q25, s.q75), (2.0, 9.0, 4.5, 4.0, 5.5));
        let one = Stats::of(&[3.0]);
        assert_eq!((one.mean, one.std, one.q25, one.q75), (3.0, 0.0, 3.0, 3.0));
        assert!(Stats::of(&[]).mean.is_nan());
    }
}
