use super::*;

fn cell(seed: u64) -> Cell {
    Cell {
        jobs: 400,
        load: 0.7,
        reliability: 0.7,
        lead_ms: 10_000.0,
        repair_ms: 20_000.0,
        false_alarms_per_hour: 2.0,
        seed,
    }
}

// Rule: on identical arrivals and identical node failures, acting on the
// forecast loses fewer runs to failures and violates fewer SLOs than
// failing over afterwards; replicas are started only in their arm, and
// the same inputs give the same rows.
#[test]
fn preemptive_arms_beat_reactive_on_the_same_failures() {
    let f = fabric::reference();
    let c = cell(4);
    let re = simulate(&f, &c, Arm::Reactive).unwrap();
    let mi = simulate(&f, &c, Arm::Migrate).unwrap();
    let rp = simulate(&f, &c, Arm::Replicate).unwrap();
    eprintln!("{re:?}\n{mi:?}\n{rp:?}");
    assert_eq!((re.outages, re.jobs), (mi.outages, mi.jobs), "same failures, same jobs");
    assert_eq!(re.migrations + re.replicas, 0);
    assert!(mi.migrations > 0 && mi.replicas == 0);
    assert!(rp.migrations + rp.replicas > 0);
    for arm in [&mi, &rp] {
        assert!(arm.stage_failures < re.stage_failures, "{} vs {}", arm.stage_failures, re.stage_failures);
        assert!(arm.slo_violations < re.slo_violations, "{} vs {}", arm.slo_violations, re.slo_violations);
    }
    assert!(re.utilisation > 0.3 && re.utilisation < 1.0, "{}", re.utilisation);
    assert_eq!(simulate(&f, &c, Arm::Replicate).unwrap(), rp, "deterministic for a seed");
}

// Rule: in "preemptive + scaling" the hosted service is scaled on the
// twin's forecast instead of the reactive HPA rule: fewer of its requests
// are late, its replicas lease capacity the jobs compete for, and the jobs
// still beat reactive failover.
#[test]
fn scaling_the_hosted_service_on_the_forecast() {
    let f = fabric::reference();
    let c = Cell { jobs: 1200, ..cell(5) };
    let re = simulate(&f, &c, Arm::Reactive).unwrap();
    let sc = simulate(&f, &c, Arm::Scaling).unwrap();
    eprintln!("{re:?}\n{sc:?}");
    assert!(sc.service_late_pct < re.service_late_pct, "{} vs {}", sc.service_late_pct, re.service_late_pct);
    assert!(re.service_core_s > 0.0 && sc.service_core_s > 0.0);
    assert!(sc.slo_violations < re.slo_violations, "{} vs {}", sc.slo_violations, re.slo_violations);
}

// Rule: the summary compares each arm with reactive on the same cells —
// checked on hand-made rows.
#[test]
fn summary_compares_with_reactive_on_the_same_cells() {
    let row = |arm, slo_violations, core_s| Row {
        arm,
        jobs: 100,
        failed: 0,
        slo_violations,
        mean_latency_ms: 1.0,
        p99_latency_ms: 10.0,
        core_s,
        wasted_core_s: 0.0,
        stage_failures: 0,
        migrations: 2,
        replicas: 1,
        false_alarm_actions: 1,
        outages: 0,
        utilisation: 0.5,
        service_late_pct: 1.0,
        service_core_s: 100.0,
    };
    let rows = vec![
        (cell(1), row(Arm::Reactive, 10, 100.0)),
        (cell(1), row(Arm::Replicate, 4, 105.0)),
        (cell(2), row(Arm::Reactive, 6, 100.0)),
        (cell(2), row(Arm::Replicate, 4, 103.0)),
    ];
    let s = summarise(&rows);
    let rp = s.iter().find(|x| x.arm == Arm::Replicate).unwrap();
    assert_eq!(rp.runs, 2);
    assert!((rp.slo_violation_pct - 4.0).abs() < 1e-9, "8 of 200 jobs");
    assert!((rp.fewer_violations_pct - 50.0).abs() < 1e-9, "8 against 16");
    assert!((rp.extra_cpu_pct - 4.0).abs() < 1e-9, "208 against 200 core-s");
    assert!((rp.actions - 3.0).abs() < 1e-9);
    let re = s.iter().find(|x| x.arm == Arm::Reactive).unwrap();
    assert_eq!((re.fewer_violations_pct, re.extra_cpu_pct), (0.0, 0.0));
}
