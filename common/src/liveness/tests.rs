use proptest::prelude::*;

use super::*;

/// One miss makes a suspect, 1 s timeouts: hand-checkable numbers.
fn cfg() -> LivenessConfig {
    // Ticks come as the test pleases: no local lag.
    LivenessConfig { probe_timeout_ms: 1000.0, suspect_after: 1, tick_interval_ms: 1e12, ..LivenessConfig::default() }
}

#[test]
fn with_the_defaults_a_silent_peer_is_suspect_within_three_seconds_and_one_lost_probe_is_forgiven() {
    // Rule (the partition target): silent from t = 0, suspect before 3 s;
    // a single unanswered probe followed by an answer changes nothing.
    let mut l = Liveness::new(LivenessConfig::default());
    l.discover("b", 0.0);
    let mut t = 0.0;
    let at = loop {
        t += 250.0;
        let (_, ch) = l.tick(t);
        if let Some(c) = ch.into_iter().find(|c| c.to == PeerState::Suspect) {
            break c.at;
        }
        assert!(t < 10_000.0);
    };
    assert!(at <= 3_000.0, "suspect at {at} ms");
    let mut l = Liveness::new(LivenessConfig::default());
    l.discover("c", 0.0);
    let (p, _) = l.tick(1000.0);
    assert!(l.probe_failed("c", p[0].nonce, 1100.0).is_none(), "one miss is forgiven");
    let (p, _) = l.tick(1250.0);
    assert_eq!(p.len(), 1, "probed again at once");
    l.probe_answered("c", p[0].nonce, 1260.0);
    let (p, _) = l.tick(2000.0);
    assert!(p.is_empty());
    let (p, _) = l.tick(2300.0);
    l.probe_failed("c", p[0].nonce, 2400.0);
    assert!(l.is_alive("c"), "the answer reset the count of misses");
}

#[test]
fn a_silent_peer_is_probed_then_suspect_then_dead() {
    // Rule: silence for the probe interval ⇒ a probe; unanswered for the
    // probe timeout ⇒ suspect (within 2 s of the last word with the
    // defaults); suspect for the suspect timeout ⇒ dead, and the partition
    // epoch moves.
    let mut l = Liveness::new(cfg());
    l.discover("b", 0.0);
    assert_eq!(l.tick(500.0), (vec![], vec![]));
    let (probes, changes) = l.tick(1000.0);
    assert_eq!(probes, vec![Probe { peer: "b".into(), nonce: 1, timeout_ms: 1000.0 }]);
    assert!(changes.is_empty());
    assert_eq!(l.state("b"), Some(PeerState::Alive));
    let (_, changes) = l.tick(2000.0);
    assert_eq!(
        changes,
        vec![Transition {
            peer: "b".into(),
            from: PeerState::Alive,
            to: PeerState::Suspect,
            reason: Reason::ProbeUnanswered(1000),
            at: 2000.0
        }]
    );
    assert!(!l.is_alive("b"));
    assert_eq!(l.epoch(), 0, "suspicion alone is not a partition");
    let mut dead = None;
    let mut t = 2000.0;
    while t < 20_000.0 {
        t += 250.0;
        let (_, ch) = l.tick(t);
        if let Some(c) = ch.into_iter().find(|c| c.to == PeerState::Dead) {
            dead = Some(c);
            break;
        }
    }
    let dead = dead.expect("declared dead");
    assert_eq!(dead.at, 17_000.0);
    assert_eq!(dead.reason, Reason::SuspectTimedOut(15_000));
    assert_eq!(l.epoch(), 1);
}

#[test]
fn any_word_clears_suspicion_and_a_dead_peer_comes_back_on_a_probe() {
    let mut l = Liveness::new(cfg());
    l.discover("b", 0.0);
    l.tick(1000.0);
    l.tick(2000.0);
    assert_eq!(l.state("b"), Some(PeerState::Suspect));
    let t = l.heard("b", 2100.0).expect("a change");
    assert_eq!((t.from, t.to, t.reason), (PeerState::Suspect, PeerState::Alive, Reason::Heard));
    // Silent again until dead.
    let mut now = 2100.0;
    while l.state("b") != Some(PeerState::Dead) {
        now += 100.0;
        l.tick(now);
    }
    // Dead peers are probed every 5 s, not every second.
    let mut probes = Vec::new();
    let start = now;
    while now < start + 5_100.0 {
        now += 100.0;
        probes.extend(l.tick(now).0);
    }
    assert_eq!(probes.len(), 1, "{probes:?}");
    let t = l.probe_answered("b", probes[0].nonce, now).expect("back");
    assert_eq!((t.to, t.reason), (PeerState::Alive, Reason::ProbeAnswered));
    assert_eq!(l.epoch(), 2, "gone and back: two changes of the reachable set");
}

#[test]
fn timeouts_follow_the_measured_round_trip() {
    // Rule: a slow peer is not suspect for being slow: the timeout is four
    // smoothed round trips when that exceeds the floor.
    let mut l = Liveness::new(cfg());
    l.discover("slow", 0.0);
    let (p, _) = l.tick(1000.0);
    assert!(l.probe_answered("slow", p[0].nonce, 1900.0).is_none(), "was alive already");
    assert_eq!(l.peers().next().unwrap().1.rtt_ms, Some(900.0));
    assert_eq!(l.timeout_for("slow"), 3600.0);
    let (p, _) = l.tick(2900.0);
    assert_eq!(p[0].timeout_ms, 3600.0);
    // 3 s later it still has time.
    assert!(l.tick(5900.0).1.is_empty());
    assert!(l.is_alive("slow"));
    // A stale answer (wrong nonce) changes nothing.
    assert!(l.probe_answered("slow", 999, 6000.0).is_none());
    assert_eq!(l.peers().next().unwrap().1.rtt_ms, Some(900.0));
}

#[test]
fn probes_per_tick_are_bounded_longest_silent_first() {
    let mut l = Liveness::new(LivenessConfig { max_probes_per_tick: 3, ..cfg() });
    for (i, p) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        l.discover(p, i as f64 * 10.0);
    }
    let (probes, _) = l.tick(5000.0);
    let names: Vec<&str> = probes.iter().map(|p| p.peer.as_str()).collect();
    assert_eq!(names, vec!["a", "b", "c"]);
    let (probes, _) = l.tick(5001.0);
    let names: Vec<&str> = probes.iter().map(|p| p.peer.as_str()).collect();
    assert_eq!(names, vec!["d", "e"]);
}

#[test]
fn a_closed_connection_is_a_hint_not_a_verdict() {
    let mut l = Liveness::new(cfg());
    l.discover("b", 0.0);
    l.heard("b", 900.0);
    l.connection_closed("b");
    assert!(l.is_alive("b"), "a closed socket alone does not make it suspect");
    let (probes, _) = l.tick(950.0);
    assert_eq!(probes.len(), 1, "probed at once despite being heard 50 ms ago");
    let t = l.probe_failed("b", probes[0].nonce, 960.0).expect("suspect");
    assert_eq!(t.to, PeerState::Suspect);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    // Rule: a peer that answers some probes and then goes silent is dead
    // no later than (probe interval + timeout + suspect timeout + one
    // tick) after its last word, and never declared dead while it keeps
    // answering every probe.
    #[test]
    fn silence_is_detected_in_bounded_time(answers in 0usize..20, tick in 50.0f64..500.0) {
        let c = cfg();
        let mut l = Liveness::new(c.clone());
        l.discover("b", 0.0);
        let mut now = 0.0;
        let mut answered = 0;
        let mut last_word = 0.0;
        while answered < answers {
            now += tick;
            let (probes, changes) = l.tick(now);
            prop_assert!(changes.iter().all(|t| t.to != PeerState::Dead));
            for p in probes {
                l.probe_answered(&p.peer, p.nonce, now + 1.0);
                last_word = now + 1.0;
                answered += 1;
            }
        }
        prop_assert!(l.is_alive("b"));
        while l.state("b") != Some(PeerState::Dead) {
            now += tick;
            l.tick(now);
            prop_assert!(now - last_word < 60_000.0);
        }
        let bound = c.probe_interval_ms + c.probe_timeout_ms + c.suspect_timeout_ms + 3.0 * tick;
        prop_assert!(now - last_word <= bound, "dead {} ms after the last word (bound {bound})", now - last_word);
    }
}

#[test]
fn a_slow_agent_stretches_its_timeouts_instead_of_blaming_its_peers() {
    // Rule: ticks that come late (this agent is slow) raise the local lag
    // and stretch every timeout; on-time ticks bring it back; an answer
    // that comes after its probe timed out still teaches the round trip.
    let c = LivenessConfig::default();
    let mut l = Liveness::new(c.clone());
    l.discover("b", 0.0);
    l.tick(0.0);
    let (p, _) = l.tick(1000.0);
    assert_eq!(l.local_lag(), 1, "750 ms between 250 ms ticks");
    assert_eq!(p[0].timeout_ms, c.probe_timeout_ms * 2.0);
    // Two more late ticks: lag 3; the probe sent at 1,000 is not yet late
    // at 1,000 + 4 × 600.
    l.tick(1800.0);
    l.tick(2600.0);
    assert_eq!(l.local_lag(), 3);
    assert!(l.is_alive("b"));
    // The answer arrives at 3,000: 2 s round trip, learned.
    l.probe_answered("b", p[0].nonce, 3000.0);
    assert_eq!(l.peers().next().unwrap().1.rtt_ms, Some(2000.0));
    // On time again: the lag drains one step per second.
    let mut t = 3000.0;
    while t < 7100.0 {
        t += 250.0;
        l.tick(t);
    }
    assert_eq!(l.local_lag(), 0);
}
