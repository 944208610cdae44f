use super::*;

fn cfg() -> ScaleConfig {
    ScaleConfig { min: 10, max: 50, target: 0.6, tolerance: 0.1, period_ms: 15_000.0 }
}

// Rule (hand-computed): desired = ⌈current × observed / target⌉ outside
// the ±10 % band, clamped to [min, max].
//   10 replicas at 0.90 (ratio 1.5)  → ⌈15.0⌉ = 15
//   10 at 0.65 (ratio 1.083, inside) → 10
//   10 at 0.54 (ratio 0.9, on the band's edge) → 10
//   20 at 0.30 (ratio 0.5)          → 10
//   10 at 0.10 (ratio 0.167)        → ⌈1.67⌉ = 2 → clamped to 10
//   40 at 0.99 (ratio 1.65)         → 66 → clamped to 50
//   12 at 0.70 (ratio 1.1667)       → ⌈14.0⌉ = 14
#[test]
fn the_hpa_rule_by_hand() {
    let c = cfg();
    assert_eq!(desired(10, 0.90, &c), 15);
    assert_eq!(desired(10, 0.65, &c), 10);
    assert_eq!(desired(10, 0.54, &c), 10);
    assert_eq!(desired(20, 0.30, &c), 10);
    assert_eq!(desired(10, 0.10, &c), 10);
    assert_eq!(desired(40, 0.99, &c), 50);
    assert_eq!(desired(12, 0.70, &c), 14);
    assert_eq!(desired(12, f64::NAN, &c), 12);
}

fn steady(rps: f64, replicas: u32, count: u64) -> ServiceCase {
    ServiceCase {
        service_ms: 60.0,
        phases: vec![Phase { from_ms: 0.0, rps, count }],
        cold_start_ms: 5_000.0,
        objective_ms: 250.0,
        initial: replicas,
        scale: ScaleConfig { min: replicas, max: replicas, ..cfg() },
        seed: 3,
    }
}

// Rule: the service DES is an M/M/c queue: 100 rps of 60 ms requests on 10
// replicas keep them 60 % busy (replica-seconds = 10 × the span); every
// request is answered; the same seed gives the same run.
#[test]
fn the_service_des_is_an_mmc_queue() {
    let case = steady(100.0, 10, 30_000);
    let r = simulate(&case, Scaling::Fixed);
    assert_eq!(r.requests, 30_000);
    // 30,000 requests at 100 rps: ~300 s.
    assert!((r.end_ms / 1000.0 - 300.0).abs() < 10.0, "{}", r.end_ms);
    assert!((r.replica_s - 10.0 * r.end_ms / 1000.0).abs() < 1e-6);
    // M/M/10 at ρ = 0.6: a request waits rarely; the median is about the
    // service time's median (60 · ln 2 ≈ 42 ms).
    assert!((r.p50_ms - 42.0).abs() < 6.0, "{}", r.p50_ms);
    assert!(r.p99_ms < 400.0, "{}", r.p99_ms);
    assert_eq!(simulate(&case, Scaling::Fixed), r);
    // Too few replicas for the load: the queue grows, most are late.
    let over = simulate(&steady(100.0, 5, 5_000), Scaling::Fixed);
    assert!(over.late > over.requests / 2, "{over:?}");
    assert!(!meets(&case, 100.0, 6, 1) && meets(&case, 100.0, 10, 1));
}

// Rule: on KubeTwin's scenario the reactive HPA scales up after the load
// rises and back down after it falls, within [10, 50]; predictive scaling
// (the twin's forecast, checked in the DES) misses the objective less
// often than reactive, which misses it less than a fixed minimum; the
// fixed service pays the fewest replica-seconds.
#[test]
fn kubetwin_scenario_reactive_and_predictive() {
    let case = ServiceCase::kubetwin(1);
    let fixed = simulate(&case, Scaling::Fixed);
    let reactive = simulate(&case, Scaling::Reactive);
    let predictive = simulate(&case, Scaling::Predictive);
    for r in [&fixed, &reactive, &predictive] {
        assert_eq!(r.requests, 130_000);
    }
    assert_eq!(fixed.actions, 0);
    let peak = reactive.replicas.iter().map(|r| r.1).max().unwrap();
    assert!((20..=50).contains(&peak), "{:?}", reactive.replicas);
    assert!(reactive.replicas.iter().all(|r| (10..=50).contains(&r.1)));
    assert!(reactive.replicas.last().unwrap().1 < peak, "scales back down: {:?}", reactive.replicas);
    assert!(reactive.late < fixed.late, "{} vs {}", reactive.late, fixed.late);
    assert!(predictive.late <= reactive.late, "{} vs {}", predictive.late, reactive.late);
    assert!(fixed.replica_s < reactive.replica_s);
}

// Rule: the offered rate over a window is what the phases send in it:
// 20 rps for 30 s (600 requests), then 60 rps from 30 s until its 600
// requests are sent (40 s).
#[test]
fn the_offered_rate_follows_the_phases() {
    let case = ServiceCase {
        service_ms: 60.0,
        phases: vec![Phase { from_ms: 0.0, rps: 20.0, count: 600 }, Phase { from_ms: 30_000.0, rps: 60.0, count: 600 }],
        cold_start_ms: 0.0,
        objective_ms: 250.0,
        initial: 1,
        scale: ScaleConfig::default(),
        seed: 1,
    };
    assert_eq!(case.offered_rps(0.0, 15_000.0), 20.0);
    // 15 s of 20 rps (300) and 10 s of 60 rps (600, all it sends) in 30 s.
    assert_eq!(case.offered_rps(15_000.0, 45_000.0), 30.0);
    // The second phase has sent its 600 by 40 s.
    assert_eq!(case.offered_rps(40_000.0, 50_000.0), 0.0);
    assert_eq!(case.offered_rps(5.0, 5.0), 0.0);
}

// Rule: the controller keeps the initial replicas for the first period,
// then applies the rule to the last period's offered load (hand-computed:
// 20 rps × 60 ms over 2 replicas = 0.6, on target ⇒ 2; 60 rps over 2 =
// 1.8, capped at 1 ⇒ ⌈2 × 1 / 0.6⌉ = 4).
#[test]
fn the_controller_scales_on_the_last_period() {
    let case = ServiceCase {
        service_ms: 60.0,
        phases: vec![Phase { from_ms: 0.0, rps: 20.0, count: 300 }, Phase { from_ms: 15_000.0, rps: 60.0, count: 900 }],
        cold_start_ms: 0.0,
        objective_ms: 250.0,
        initial: 2,
        scale: ScaleConfig { min: 1, max: 10, target: 0.6, tolerance: 0.1, period_ms: 15_000.0 },
        seed: 1,
    };
    let mut c = Controller::new(&case);
    assert_eq!(c.period(&case, Scaling::Reactive, 0.0), Step { replicas: 2, rps: 0.0, utilisation: 0.0 });
    let s = c.period(&case, Scaling::Reactive, 15_000.0);
    assert_eq!(s.replicas, 2);
    assert!((s.rps - 20.0).abs() < 1e-9 && (s.utilisation - 0.6).abs() < 1e-9, "{s:?}");
    assert_eq!(c.period(&case, Scaling::Reactive, 30_000.0), Step { replicas: 4, rps: 60.0, utilisation: 1.0 });
    // Resumed after a restart: the rule at once, from what runs.
    let mut r = Controller::resume(4, 3);
    assert_eq!(r.period(&case, Scaling::Fixed, 45_000.0).replicas, 1);
}
