//! The job protocol's rules, with times computed by hand.

use super::*;

fn hop(agent: &str, rtt: f64) -> ForwardInput {
    ForwardInput::Routed(Some(Hop { agent: agent.into(), rtt_timeout_ms: rtt }))
}

#[test]
fn a_forward_waits_twice_the_rtt_timeout_within_two_and_five_seconds() {
    let c = Config::default();
    assert_eq!(c.forward_timeout(300.0), 2_000.0, "clamped up");
    assert_eq!(c.forward_timeout(1_500.0), 3_000.0);
    assert_eq!(c.forward_timeout(4_000.0), 5_000.0, "clamped down");
}

#[test]
fn a_lost_forward_falls_back_to_the_next_agent_then_plans_here() {
    let c = Config::default();
    let mut out = Vec::new();
    let mut f = Forwarding::new(&c, "me", None, &mut out);
    assert_eq!(out, vec![ForwardOutput::Route { skip: vec![] }]);
    out.clear();
    f.handle(hop("far", 1_200.0), 0.0, &mut out);
    assert_eq!(out, vec![ForwardOutput::Forward { to: "far".into(), timeout_ms: 2_400.0 }]);
    assert_eq!(f.waiting_on(), Some("far"));
    out.clear();
    // Silent past its timeout: the next agent is asked.
    f.handle(ForwardInput::Failed { why: "timed out".into() }, 2_400.0, &mut out);
    assert_eq!(out, vec![ForwardOutput::Route { skip: vec!["far".into()] }]);
    out.clear();
    f.handle(hop("nearer", 100.0), 2_400.0, &mut out);
    assert_eq!(out, vec![ForwardOutput::Forward { to: "nearer".into(), timeout_ms: 2_000.0 }]);
    out.clear();
    f.handle(ForwardInput::Failed { why: "connection refused".into() }, 2_500.0, &mut out);
    out.clear();
    // Nobody else: planned here, and both silent agents are settled with
    // later (`Reconciling`).
    f.handle(hop("me", 0.0), 2_500.0, &mut out);
    assert!(f.is_done());
    assert_eq!(out[0], ForwardOutput::LateForward { peer: "far".into(), planned_by: None });
    assert_eq!(out[1], ForwardOutput::LateForward { peer: "nearer".into(), planned_by: None });
    let ForwardOutput::PlanHere { notes } = &out[2] else { panic!("{out:?}") };
    assert_eq!(notes.len(), 2);
    assert!(notes[0].contains("far") && notes[0].contains("timed out"), "{notes:?}");
    // A late answer changes nothing.
    out.clear();
    f.handle(ForwardInput::Answered, 3_000.0, &mut out);
    assert!(out.is_empty());
}

#[test]
fn an_answered_forward_is_the_answer_and_a_forwarded_job_is_planned_here() {
    let c = Config::default();
    let mut out = Vec::new();
    let mut f = Forwarding::new(&c, "me", None, &mut out);
    f.handle(hop("near", 10.0), 0.0, &mut out);
    out.clear();
    f.handle(ForwardInput::Answered, 40.0, &mut out);
    assert_eq!(out, vec![ForwardOutput::Forwarded { to: "near".into() }]);
    assert!(f.is_done());
    out.clear();
    let g = Forwarding::new(&c, "near", Some("me"), &mut out);
    assert!(g.is_done());
    assert_eq!(out, vec![ForwardOutput::PlanHere { notes: vec!["forwarded by me".into()] }]);
    // No route at all: planned here, nothing to settle.
    out.clear();
    let mut h = Forwarding::new(&c, "me", None, &mut out);
    out.clear();
    h.handle(ForwardInput::Routed(None), 5.0, &mut out);
    assert_eq!(out, vec![ForwardOutput::PlanHere { notes: vec![] }]);
}

#[test]
fn a_silent_owner_is_asked_three_times_each_waiting_twice_as_long() {
    let c = Config::default();
    let mut out = Vec::new();
    // RTT timeout 600 ms: clamped to [1 s, 5 s], then [2 s, 10 s], [4 s, 20 s].
    let mut b = Booking::new(&c, Ask::Book, false, false, 600.0, 0.0, &mut out);
    assert_eq!(
        out,
        vec![BookingOutput::Hold { until: 10_000.0 }, BookingOutput::Send { timeout_ms: 1_000.0, attempt: 1 }]
    );
    out.clear();
    b.handle(BookingInput::Silent { given_up: false, rtt_timeout_ms: 600.0 }, 1_000.0, &mut out);
    assert_eq!(out, vec![BookingOutput::Send { timeout_ms: 2_000.0, attempt: 2 }]);
    out.clear();
    b.handle(BookingInput::Silent { given_up: false, rtt_timeout_ms: 30_000.0 }, 3_000.0, &mut out);
    assert_eq!(out, vec![BookingOutput::Send { timeout_ms: 20_000.0, attempt: 3 }]);
    out.clear();
    b.handle(BookingInput::Silent { given_up: false, rtt_timeout_ms: 600.0 }, 23_000.0, &mut out);
    assert_eq!(out, vec![BookingOutput::Unreachable]);
    assert!(b.is_done());
}

#[test]
fn an_owner_given_up_is_not_asked_again_and_an_answer_holds_two_seconds() {
    let c = Config::default();
    let mut out = Vec::new();
    let mut b = Booking::new(&c, Ask::Book, false, false, 200.0, 0.0, &mut out);
    out.clear();
    b.handle(BookingInput::Silent { given_up: true, rtt_timeout_ms: 200.0 }, 1_000.0, &mut out);
    assert_eq!(out, vec![BookingOutput::Unreachable]);
    out.clear();
    let _ = Booking::new(&c, Ask::Book, false, true, 200.0, 0.0, &mut out);
    assert_eq!(out, vec![BookingOutput::Hold { until: 10_000.0 }, BookingOutput::Unreachable]);
    out.clear();
    let mut b = Booking::new(&c, Ask::Book, false, false, 200.0, 0.0, &mut out);
    out.clear();
    b.handle(BookingInput::Answered { booked: true }, 80.0, &mut out);
    assert_eq!(out, vec![BookingOutput::Hold { until: 2_080.0 }, BookingOutput::Answer { booked: true }]);
    out.clear();
    let mut b = Booking::new(&c, Ask::Book, false, false, 200.0, 0.0, &mut out);
    out.clear();
    b.handle(BookingInput::Answered { booked: false }, 80.0, &mut out);
    assert_eq!(out, vec![BookingOutput::Unhold, BookingOutput::Answer { booked: false }]);
    // An own node: booked here, nothing held once booked.
    out.clear();
    let mut b = Booking::new(&c, Ask::Book, true, false, 0.0, 0.0, &mut out);
    assert_eq!(out, vec![BookingOutput::BookHere]);
    out.clear();
    b.handle(BookingInput::Answered { booked: true }, 0.0, &mut out);
    assert_eq!(out, vec![BookingOutput::Unhold, BookingOutput::Answer { booked: true }]);
}

#[test]
fn a_reservation_is_asked_once_and_holds_nothing() {
    let c = Config::default();
    let mut out = Vec::new();
    let mut b = Booking::new(&c, Ask::Reserve, false, false, 3_000.0, 0.0, &mut out);
    assert_eq!(out, vec![BookingOutput::Send { timeout_ms: 3_000.0, attempt: 1 }]);
    out.clear();
    b.handle(BookingInput::Silent { given_up: false, rtt_timeout_ms: 3_000.0 }, 3_000.0, &mut out);
    assert_eq!(out, vec![BookingOutput::Unreachable]);
}

#[test]
fn a_confirmation_is_asked_once_and_holds_nothing() {
    let c = Config::default();
    let mut out = Vec::new();
    let mut b = Booking::new(&c, Ask::Confirm, false, false, 200.0, 0.0, &mut out);
    assert_eq!(out, vec![BookingOutput::Send { timeout_ms: 1_000.0, attempt: 1 }]);
    out.clear();
    b.handle(BookingInput::Answered { booked: true }, 50.0, &mut out);
    assert_eq!(out, vec![BookingOutput::Answer { booked: true }]);
}

#[test]
fn a_planned_stage_is_held_until_its_start_and_two_seconds_more() {
    let c = Config::default();
    // Starts 4 fabric s in, at time scale 0.5: 2 wall s, then 2 s more.
    assert_eq!(plan_hold_until(&c, 1_000.0, 4_000.0, 0.5), 5_000.0);
    // Far ahead: at most a minute.
    assert_eq!(plan_hold_until(&c, 0.0, 600_000.0, 1.0), 62_000.0);
}

#[test]
fn a_run_fails_over_once_its_owner_has_been_gone_for_the_grace() {
    let c = Config { failover_grace_ms: 3_000.0, ..Config::default() };
    assert_eq!(owner_lost(&c, false, 1_000.0, 3_999.0), None, "999 ms short");
    assert_eq!(owner_lost(&c, false, 1_000.0, 4_000.0), Some(3_000.0));
    assert_eq!(owner_lost(&c, true, 1_000.0, 60_000.0), None, "alive again");
    assert_eq!(owner_lost(&Config::default(), false, 0.0, 9_999.0), None, "10 s by default");
}

#[test]
fn silent_peers_are_settled_once_after_the_late_forward_delay_and_asked_again() {
    let c = Config::default();
    let mut r = Reconciling::new(&c);
    let mut out = Vec::new();
    r.handle(ReconcileInput::LateForward { peer: "b".into(), hint: None }, 1_000.0, &mut out);
    r.handle(ReconcileInput::LateForward { peer: "b".into(), hint: None }, 2_000.0, &mut out);
    assert_eq!(out, vec![ReconcileOutput::Timer { peer: "b".into(), at: 16_000.0 }], "once per peer");
    out.clear();
    r.handle(ReconcileInput::Due { peer: "b".into() }, 15_999.0, &mut out);
    assert!(out.is_empty(), "not yet due");
    r.handle(ReconcileInput::Due { peer: "b".into() }, 16_000.0, &mut out);
    assert_eq!(
        out,
        vec![ReconcileOutput::Exchange { peer: "b".into(), timeout_ms: 10_000.0, attempt: 1, hints: vec![] }]
    );
    // Unanswered: asked again after 250 ms, 500 ms, … six tries in all.
    let mut now = 26_000.0;
    let mut waits = Vec::new();
    loop {
        out.clear();
        r.handle(ReconcileInput::Failed { peer: "b".into() }, now, &mut out);
        match out.as_slice() {
            [ReconcileOutput::Timer { at, .. }] => {
                waits.push(at - now);
                now = *at;
                out.clear();
                r.handle(ReconcileInput::Due { peer: "b".into() }, now, &mut out);
                assert!(matches!(out[0], ReconcileOutput::Exchange { .. }), "{out:?}");
                now += 10_000.0;
            }
            [ReconcileOutput::GaveUp { .. }] => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(waits, vec![250.0, 500.0, 1_000.0, 2_000.0, 4_000.0]);
    assert!(!r.pending("b"));
    // A return starts one exchange; a second return meanwhile none.
    out.clear();
    r.handle(ReconcileInput::PeerBack { peer: "b".into() }, now, &mut out);
    r.handle(ReconcileInput::PeerBack { peer: "b".into() }, now, &mut out);
    assert_eq!(out.len(), 1);
    r.handle(ReconcileInput::Answered { peer: "b".into() }, now, &mut out);
    assert!(!r.pending("b"));
}

// Rule: a forward left unanswered and then answered by another agent is
// settled too: the silent agent is told (at the late-forward delay) which
// agent planned the job, and, if it planned the job as well, settles with
// that agent at once.
#[test]
fn a_silent_agent_is_told_who_planned_the_job_instead() {
    let c = Config::default();
    let mut out = Vec::new();
    let mut f = Forwarding::new(&c, "me", None, &mut out);
    f.handle(hop("far", 10.0), 0.0, &mut out);
    f.handle(ForwardInput::Failed { why: "timed out".into() }, 2_000.0, &mut out);
    f.handle(hop("next", 10.0), 2_000.0, &mut out);
    out.clear();
    f.handle(ForwardInput::Answered, 2_050.0, &mut out);
    assert_eq!(
        out,
        vec![
            ForwardOutput::LateForward { peer: "far".into(), planned_by: Some("next".into()) },
            ForwardOutput::Forwarded { to: "next".into() },
        ]
    );
    // The submitter's reconciliation carries the hint to the silent one…
    let hint = Hint { job: "j".into(), planner: "next".into() };
    let mut r = Reconciling::new(&c);
    let mut out = Vec::new();
    r.handle(ReconcileInput::LateForward { peer: "far".into(), hint: Some(hint.clone()) }, 2_050.0, &mut out);
    assert_eq!(out, vec![ReconcileOutput::Timer { peer: "far".into(), at: 17_050.0 }]);
    out.clear();
    r.handle(ReconcileInput::Due { peer: "far".into() }, 17_050.0, &mut out);
    assert_eq!(
        out,
        vec![ReconcileOutput::Exchange { peer: "far".into(), timeout_ms: 10_000.0, attempt: 1, hints: vec![hint] }]
    );
    // …which settles with the planner at once.
    let mut far = Reconciling::new(&c);
    out.clear();
    far.handle(ReconcileInput::Told { peer: "next".into() }, 17_060.0, &mut out);
    assert!(matches!(&out[..], [ReconcileOutput::Exchange { peer, attempt: 1, .. }] if peer == "next"), "{out:?}");
}

#[test]
fn settings_are_checked_and_named() {
    assert!(Config::default().validate().is_ok());
    let e = Config { forward_max_ms: 1_000.0, ..Config::default() }.validate().unwrap_err();
    assert!(e.starts_with("forward_max_ms"), "{e}");
    let e = Config { failover_grace_ms: f64::NAN, ..Config::default() }.validate().unwrap_err();
    assert!(e.starts_with("failover_grace_ms"), "{e}");
    let e = Config { booking_tries: 0, ..Config::default() }.validate().unwrap_err();
    assert!(e.starts_with("booking_tries"), "{e}");
}
