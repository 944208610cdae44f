//! Seeded randomness that is the same on every platform and every run.
//!
//! The DES, the failure generator and the CVaR policy all draw from
//! [`SimRng`] seeded by the caller, so a seed reproduces a run bit for bit
//! (on amd64, arm64 and riscv64 alike: Xoshiro256++ is defined by its
//! algorithm, unlike `rand`'s `SmallRng`, which may change between releases).

use rand::{Rng, RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The generator used throughout the core.
pub type SimRng = Xoshiro256PlusPlus;

/// A generator from a 64-bit seed.
pub fn seeded(seed: u64) -> SimRng {
    SimRng::seed_from_u64(seed)
}

/// Inverse of the standard normal CDF (Acklam's rational approximation,
/// relative error < 1.2e-9), for stratified sampling.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let low = 0.02425;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// `n` stratified uniforms in (0, 1): one from each of the `n` equal
/// strata, in random order. Every probability ≥ 1/n shows up at least once.
pub fn stratified_uniforms<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n).map(|k| (k as f64 + rng.random::<f64>().clamp(1e-9, 1.0 - 1e-9)) / n as f64).collect();
    shuffle(rng, &mut v);
    v
}

/// `n` stratified standard normals (inverse CDF of stratified uniforms).
pub fn stratified_normals<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Vec<f64> {
    stratified_uniforms(rng, n).into_iter().map(normal_quantile).collect()
}

/// Fisher–Yates shuffle.
pub fn shuffle<R: Rng + ?Sized, T>(rng: &mut R, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_matches_known_points() {
        assert!(normal_quantile(0.5).abs() < 1e-9);
        assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-6);
        assert!((normal_quantile(0.001) + 3.090_232_306).abs() < 1e-6);
    }

    #[test]
    fn strata_cover_the_unit_interval() {
        let mut r = seeded(7);
        let mut u = stratified_uniforms(&mut r, 16);
        u.sort_by(f64::total_cmp);
        for (k, x) in u.iter().enumerate() {
            assert!(*x > k as f64 / 16.0 && *x < (k + 1) as f64 / 16.0, "{k}: {x}");
        }
        let mut a = seeded(9);
        let mut b = seeded(9);
        assert_eq!(stratified_normals(&mut a, 8), stratified_normals(&mut b, 8));
    }
}

/// FNV-1a as a [`std::hash::Hasher`]: fast on short keys (agent and node
/// names), and keyless, so maps iterate the same way in every process and
/// the same inputs give the same outputs. For keys from inside the mesh
/// (behind its key), not from an untrusted client.
#[derive(Default)]
pub struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Builds [`Fnv`] hashers.
pub type FnvBuild = std::hash::BuildHasherDefault<Fnv>;
