use super::*;
use crate::model::Format;
use crate::testkit::{job, one_stage, tiny};

fn plan(p: Policy, f: &crate::fabric::Fabric, j: &Job) -> Plan {
    p.plan(&f.view(), j, &PolicyConfig::default()).unwrap()
}

#[test]
fn greedy_picks_the_earliest_finish() {
    // Rule: from cluster a, a 1,000 ms stage finishes at 1 + 1,000 on
    // a-one, 1 + 2,000 on a-slow, 20 + 500 on b-fast: greedy takes b-fast.
    let f = tiny();
    let p = plan(Policy::Greedy, &f, &one_stage("a", 1.0, 1000.0));
    assert_eq!(p.placements[0].node, "b-fast-01");
    assert_eq!(p.predicted.latency_ms, 520.0);
    // A short stage is not worth the 20 ms trip: 1 + 10 beats 20 + 5.
    let p = plan(Policy::Greedy, &f, &one_stage("a", 1.0, 10.0));
    assert_eq!(p.placements[0].node, "a-one-01");
    // On the origin node itself there is no latency at all.
    let p = plan(Policy::Greedy, &f, &one_stage("a/a-one-01", 1.0, 10.0));
    assert_eq!(p.predicted.latency_ms, 10.0);
}

#[test]
fn greedy_skips_nodes_that_do_not_fit() {
    let mut f = tiny();
    f.nodes.iter_mut().find(|n| n.name == "b-fast-01").unwrap().allocated.cpu = 7.5;
    let p = plan(Policy::Greedy, &f, &one_stage("a", 1.0, 1000.0));
    assert_eq!(p.placements[0].node, "a-one-01", "b-fast has only 0.5 cores free");
    f.nodes.iter_mut().find(|n| n.name == "a-one-01").unwrap().status = crate::model::NodeStatus::Cordoned;
    let p = plan(Policy::Greedy, &f, &one_stage("a", 1.0, 1000.0));
    assert_eq!(p.placements[0].node, "a-slow-01");
}

#[test]
fn greedy_chooses_formats_by_speed() {
    // A riscv64-only stage: native on b-rv (speed 0.25: 4,000 ms) or
    // qemu-riscv64 on b-fast (1,000 / 2 × 1.8 = 900 ms).
    let f = tiny();
    let j = job(r#"
apiVersion: twinmesh.io/v1
metadata: { name: rv, origin: { cluster: b } }
spec: { stages: [ { id: s, compute: { cpu: 1, duration_ms: 1000 }, constraints: { arch: [riscv64] } } ] }
"#);
    let p = plan(Policy::Greedy, &f, &j);
    assert_eq!((p.placements[0].node.as_str(), p.placements[0].format), ("b-fast-01", Format::QemuRiscv64));
    // Native only: must go to the board.
    let j2 = job(&serde_json::to_string(&serde_json::json!({
        "apiVersion": "twinmesh.io/v1",
        "metadata": {"name": "rv", "origin": {"cluster": "b"}},
        "spec": {"stages": [{"id": "s", "compute": {"cpu": 1, "duration_ms": 1000},
                  "constraints": {"arch": ["riscv64"], "formats": ["native"]}}]}
    }))
    .unwrap());
    let p = plan(Policy::Greedy, &f, &j2);
    assert_eq!((p.placements[0].node.as_str(), p.placements[0].format), ("b-rv-01", Format::Native));
    assert_eq!(p.predicted.latency_ms, 2.0 + 4000.0);
}

#[test]
fn resilient_avoids_a_flaky_fast_node_and_names_a_shadow() {
    let mut f = tiny();
    for n in &mut f.nodes {
        n.resiliency = match n.name.as_str() {
            "b-fast-01" => 0.3,
            _ => 0.95,
        };
    }
    let j = one_stage("a", 1.0, 200.0);
    // Greedy: b-fast finishes at 120 vs a-one at 201.
    assert_eq!(plan(Policy::Greedy, &f, &j).placements[0].node, "b-fast-01");
    // Resilient: 0.95 − 0.201 beats 0.3 − 0.120.
    let p = plan(Policy::Resilient, &f, &j);
    assert_eq!(p.placements[0].node, "a-one-01");
    let shadow = p.shadow[0].as_ref().expect("a shadow on another cluster");
    assert_ne!(shadow.cluster, p.placements[0].cluster);
}

#[test]
fn cvar_avoids_a_heavy_tail() {
    // b-fast is fastest on average but its run times are wildly spread;
    // a-one is a little slower and steady.
    let mut f = tiny();
    for n in &mut f.nodes {
        n.resiliency = 1.0;
        if n.name == "b-fast-01" {
            n.jitter_sigma = Some(1.2);
        }
    }
    let j = one_stage("a", 1.0, 1000.0);
    // b-fast: 20 + 500 = 520 nominal; a-one: 1,001.
    assert_eq!(plan(Policy::Greedy, &f, &j).placements[0].node, "b-fast-01");
    let p = plan(Policy::Cvar, &f, &j);
    assert_eq!(p.placements[0].node, "a-one-01", "notes: {:?}", p.notes);
    let tail = p.predicted.tail_latency_ms.unwrap();
    assert!(tail > p.predicted.latency_ms, "tail {tail} vs nominal {}", p.predicted.latency_ms);
    // With a steady b-fast, CVaR agrees with greedy.
    f.nodes.iter_mut().find(|n| n.name == "b-fast-01").unwrap().jitter_sigma = None;
    assert_eq!(plan(Policy::Cvar, &f, &j).placements[0].node, "b-fast-01");
}

#[test]
fn cvar_counts_failure_risk() {
    // b-fast fails often enough (p ≈ 0.16 per run) that the recovery delay
    // lands in the tail; a-one never fails.
    let mut f = tiny();
    for n in &mut f.nodes {
        n.resiliency = if n.name == "b-fast-01" { 1e-4 } else { 1.0 };
    }
    let j = one_stage("a", 1.0, 2000.0);
    assert_eq!(plan(Policy::Greedy, &f, &j).placements[0].node, "b-fast-01");
    assert_eq!(plan(Policy::Cvar, &f, &j).placements[0].node, "a-one-01");
}

#[test]
fn baseline_ignores_origin_and_greedy_does_not() {
    let f = tiny();
    let from_a = one_stage("a", 1.0, 10.0);
    let from_b = one_stage("b", 1.0, 10.0);
    let ba = plan(Policy::Baseline, &f, &from_a);
    let bb = plan(Policy::Baseline, &f, &from_b);
    assert_eq!(ba.placements, bb.placements, "baseline must not depend on origin");
    // Least allocated: b-fast has the most room (7/8 cpu, 31/32 mem).
    assert_eq!(ba.placements[0].node, "b-fast-01");
    let ga = plan(Policy::Greedy, &f, &from_a);
    let gb = plan(Policy::Greedy, &f, &from_b);
    assert_eq!(ga.placements[0].cluster, "a");
    assert_eq!(gb.placements[0].cluster, "b");
}

#[test]
fn deadline_fallback_and_warning() {
    let mut f = tiny();
    for n in &mut f.nodes {
        n.resiliency = if n.name == "b-fast-01" { 0.3 } else { 0.95 };
    }
    let mut j = one_stage("a", 1.0, 200.0);
    j.deadline_ms = Some(150.0);
    // Resilient alone takes a-one (201 ms), past the deadline; greedy meets it.
    let p = plan(Policy::Resilient, &f, &j);
    assert_eq!(p.placements[0].node, "b-fast-01");
    assert!(p.predicted.meets_deadline);
    assert!(p.notes.iter().any(|n| n.contains("deadline")), "{:?}", p.notes);
    // No plan can meet 50 ms: a warning, negative slack.
    j.deadline_ms = Some(50.0);
    let p = plan(Policy::Greedy, &f, &j);
    assert!(!p.predicted.meets_deadline);
    assert_eq!(p.predicted.deadline_slack_ms, Some(50.0 - 120.0));
    assert!(p.notes.iter().any(|n| n.contains("exceeds")));
}

#[test]
fn errors_name_the_stage_and_the_shortfall() {
    let f = tiny();
    let j = one_stage("a", 64.0, 10.0);
    for p in Policy::ALL {
        let e = p.plan(&f.view(), &j, &PolicyConfig::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("stage 's'") && msg.contains("needs cpu 64"), "{p}: {msg}");
    }
    let e = Policy::Greedy.plan(&f.view(), &one_stage("zz", 1.0, 1.0), &PolicyConfig::default()).unwrap_err();
    assert_eq!(e, PlanError::UnknownOrigin("zz".into()));
}

#[test]
fn multi_stage_plans_follow_the_data() {
    // s1 (10 ms) runs on the origin node; it produces 50 MB, and moving
    // that off-cluster costs 20 + 4,000 ms, so s2 stays on the same node
    // even though b-fast is twice as fast.
    let f = tiny();
    let j = job(r#"
apiVersion: twinmesh.io/v1
metadata: { name: chain, origin: { cluster: a, node: a-one-01 } }
spec:
  stages:
    - { id: s1, compute: { cpu: 1, duration_ms: 10 }, output_mb: 50 }
    - { id: s2, compute: { cpu: 1, duration_ms: 1000 }, predecessor: s1 }
"#);
    let p = plan(Policy::Greedy, &f, &j);
    assert_eq!(p.placements[0].node, "a-one-01");
    assert_eq!(p.placements[1].node, "a-one-01");
    assert_eq!(p.predicted.latency_ms, 1010.0);
    for pol in Policy::ALL {
        let p = plan(pol, &f, &j);
        assert_eq!(p.placements.len(), 2, "{pol}");
        assert!(p.predicted.latency_ms > 0.0);
    }
}

#[test]
fn plans_round_trip_through_postcard_and_json() {
    // Plans are stored with postcard (not self-describing) and served as
    // JSON; both must give back the same plan.
    let f = crate::fabric::reference();
    for pol in Policy::ALL {
        let p = plan(pol, &f, &one_stage("dc-core", 1.0, 100.0));
        let bytes = postcard::to_allocvec(&p).unwrap();
        assert_eq!(postcard::from_bytes::<Plan>(&bytes).unwrap(), p, "{pol}");
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), p, "{pol}");
    }
}

#[test]
fn policies_plan_the_reference_fabric() {
    let f = crate::fabric::reference();
    let j = job(r#"
apiVersion: twinmesh.io/v1
metadata: { name: video, deadline_ms: 20000, origin: { cluster: phone-pan-1, node: pan1-phone-03 } }
spec:
  stages:
    - { id: decode, compute: { cpu: 2, mem_gb: 1, duration_ms: 1500 }, output_mb: 20 }
    - { id: detect, compute: { cpu: 4, mem_gb: 8, duration_ms: 6000, gpu_vram_gb: 8 }, predecessor: decode, output_mb: 1 }
    - { id: notify, compute: { cpu: 0.5, duration_ms: 200 }, predecessor: detect }
"#);
    let v = f.view();
    for pol in Policy::ALL {
        let p = pol.plan(&v, &j, &PolicyConfig::default()).unwrap();
        let gpu = v.node_index(&p.placements[1].node).unwrap();
        assert!(v.nodes.free_vram[gpu] >= 8.0, "{pol}: detect needs a GPU");
    }
    let g = plan(Policy::Greedy, &f, &j);
    let b = plan(Policy::Baseline, &f, &j);
    assert!(
        g.predicted.latency_ms < b.predicted.latency_ms,
        "greedy {} baseline {}",
        g.predicted.latency_ms,
        b.predicted.latency_ms
    );
}

#[test]
fn busy_nodes_are_used_only_when_waiting_pays() {
    // b-fast is full. With a known 100 ms backlog it still finishes first
    // (max(20, 100) + 500 = 600 < 1,001); with 2 s it does not; with an
    // unknown backlog it is not a candidate at all.
    let mut f = tiny();
    let fast = f.nodes.iter_mut().find(|n| n.name == "b-fast-01").unwrap();
    fast.allocated.cpu = 8.0;
    fast.backlog_ms = Some(100.0);
    let j = one_stage("a", 1.0, 1000.0);
    let p = plan(Policy::Greedy, &f, &j);
    assert_eq!(p.placements[0].node, "b-fast-01");
    assert_eq!(p.predicted.latency_ms, 600.0);
    assert_eq!(p.predicted.stages[0].start_ms, 100.0);
    f.nodes.iter_mut().find(|n| n.name == "b-fast-01").unwrap().backlog_ms = Some(2000.0);
    assert_eq!(plan(Policy::Greedy, &f, &j).placements[0].node, "a-one-01");
    assert_eq!(plan(Policy::Cvar, &f, &j).placements[0].node, "a-one-01");
    f.nodes.iter_mut().find(|n| n.name == "b-fast-01").unwrap().backlog_ms = None;
    assert_eq!(plan(Policy::Resilient, &f, &j).placements[0].node, "a-one-01");
}
