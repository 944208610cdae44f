use rand::SeedableRng;

use super::*;
use crate::execution::Refusal;
use crate::fabric::reference;
use crate::job::Origin;

/// One unanswered probe makes a suspect: hand-checkable sequences.
fn rcfg(name: &str, cluster: &str) -> ReplicaConfig {
    let mut c = ReplicaConfig::new(name, cluster);
    c.liveness.suspect_after = 1;
    c.liveness.tick_interval_ms = 1e12;
    c
}

fn rng() -> SimRng {
    SimRng::seed_from_u64(9)
}

/// A twin where each of `agents` (name, cluster) owns its own node record.
fn twin_with(agents: &[(&str, &str, f64)]) -> Twin {
    let f = reference();
    let mut t = Twin::new();
    for (name, cluster, r) in agents {
        let mut n = f.nodes.iter().find(|n| n.name == *name).cloned().unwrap_or_else(|| {
            let mut n = f.nodes.iter().find(|n| n.cluster == *cluster).unwrap().clone();
            n.name = name.to_string();
            n
        });
        n.labels.insert(AGENT_LABEL.into(), name.to_string());
        n.resiliency = *r;
        t.update_own(n);
    }
    t
}

fn requests(out: &[Output]) -> Vec<(String, u64, Message)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Request { to, token, msg, .. } => Some((to.clone(), *token, msg.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_dead_origin_agent_routes_to_the_healthiest_alive_agent_of_its_cluster() {
    // Rule: routing follows liveness: when the origin node's agent stops
    // answering, its jobs go to the healthiest agent of the same cluster
    // that is alive, without waiting on the silent one.
    let f = reference();
    let agents = [
        ("pan1-phone-01", "phone-pan-1", 0.7),
        ("pan1-phone-02", "phone-pan-1", 0.9),
        ("pan1-phone-03", "phone-pan-1", 0.95),
        ("dc-x86-01", "dc-core", 0.99),
    ];
    let mut r = Replica::new(rcfg("dc-x86-01", "dc-core"), twin_with(&agents));
    let mut g = rng();
    r.handle(Input::Tick, 0.0, &mut g);
    let origin = Origin { cluster: "phone-pan-1".into(), node: Some("pan1-phone-01".into()) };
    assert_eq!(r.route(&origin, &f.latency, &[]).unwrap().agent, "pan1-phone-01");
    // phone-01 and phone-03 keep answering; phone-02 is answered too —
    // then phone-01 and phone-03 go silent.
    let mut now = 0.0;
    while now < 4_000.0 {
        now += 250.0;
        let out = r.handle(Input::Tick, now, &mut g);
        for (to, token, msg) in requests(&out) {
            let answer = match msg {
                Message::Ping(n) if to == "pan1-phone-02" || to == "dc-x86-01" => Some(Message::Pong(n)),
                _ => None,
            };
            match answer {
                Some(m) => r.handle(Input::Response { token, msg: m }, now + 5.0, &mut g),
                None => r.handle(Input::RequestFailed { token }, now + 5.0, &mut g),
            };
        }
    }
    assert_eq!(r.liveness().state("pan1-phone-01"), Some(PeerState::Suspect));
    assert_eq!(r.liveness().state("pan1-phone-03"), Some(PeerState::Suspect));
    let route = r.route(&origin, &f.latency, &[]).unwrap();
    assert_eq!(route.agent, "pan1-phone-02", "the alive one, although phone-03 is healthier");
    assert_eq!(route.reason, crate::routing::RouteReason::OriginCluster);
    assert!(!r.reachable("pan1-phone-01"));
    assert!(r.reachable("dc-x86-01"), "itself");
}

#[test]
fn a_suspect_peer_that_answers_a_probe_is_alive_again() {
    let mut r = Replica::new(rcfg("a", "dc-core"), twin_with(&[("a", "dc-core", 0.9), ("b", "dc-core", 0.9)]));
    let mut g = rng();
    r.handle(Input::Tick, 0.0, &mut g);
    let out = r.handle(Input::Tick, 1_000.0, &mut g);
    let (_, token, msg) =
        requests(&out).into_iter().find(|(to, _, m)| to == "b" && matches!(m, Message::Ping(_))).unwrap();
    let out = r.handle(Input::RequestFailed { token }, 1_500.0, &mut g);
    assert!(matches!(&out[..], [Output::Peer(t)] if t.to == PeerState::Suspect));
    // The next probe is answered.
    let out = r.handle(Input::Tick, 2_600.0, &mut g);
    let (_, token, msg2) = requests(&out).into_iter().find(|(_, _, m)| matches!(m, Message::Ping(_))).unwrap();
    assert_ne!(msg, msg2, "a fresh nonce");
    let Message::Ping(n) = msg2 else { unreachable!() };
    let out = r.handle(Input::Response { token, msg: Message::Pong(n) }, 2_610.0, &mut g);
    assert!(matches!(&out[..], [Output::Peer(t)] if t.to == PeerState::Alive));
    // A ping from a peer is answered with its nonce.
    let out = r.handle(Input::Request { from: Some("b".into()), id: 4, msg: Message::Ping(77) }, 2_700.0, &mut g);
    assert_eq!(out.last(), Some(&Output::Reply { id: 4, msg: Message::Pong(77) }));
}

/// Delivers every request between replicas at once (no loss), until quiet.
fn settle(rs: &mut [Replica], names: &[&str], mut queue: Vec<(usize, Output)>, now: f64, g: &mut SimRng) -> usize {
    let mut delivered = 0;
    while let Some((from, o)) = queue.pop() {
        match o {
            Output::Request { to, token, msg, .. } => {
                let Some(t) = names.iter().position(|n| *n == to) else { continue };
                delivered += 1;
                let out = rs[t].handle(Input::Request { from: Some(names[from].into()), id: token, msg }, now, g);
                for o in out {
                    if let Output::Reply { id, msg } = o {
                        let back = rs[from].handle(Input::Response { token: id, msg }, now, g);
                        queue.extend(back.into_iter().map(|o| (from, o)));
                    } else {
                        queue.push((t, o));
                    }
                }
            }
            Output::Publish(msg) => {
                for (i, r) in rs.iter_mut().enumerate() {
                    if i != from {
                        delivered += 1;
                        let out = r.handle(Input::Gossip(msg.clone()), now, g);
                        queue.extend(out.into_iter().map(|o| (i, o)));
                    }
                }
            }
            _ => {}
        }
    }
    delivered
}

#[test]
fn anti_entropy_alone_converges_replicas_and_the_same_seed_gives_the_same_outputs() {
    // Rule: with gossip lost, periodic anti-entropy with a random alive
    // peer (seeded) still brings every replica to the same twin.
    let names = ["a", "b", "c", "d"];
    let f = reference();
    let build = || {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut t = twin_with(&[(n, "dc-core", 0.9)]);
                // Each knows the others exist (as after bootstrap) but not
                // their records' contents beyond its own.
                for m in names.iter().filter(|m| *m != n) {
                    t.merge_record(twin_with(&[(m, "dc-core", 0.9)]).record(m).unwrap().clone());
                }
                for node in f.nodes.iter().skip(i * 10).take(10) {
                    let mut node = node.clone();
                    node.labels.insert(AGENT_LABEL.into(), n.to_string());
                    t.update_own(node);
                }
                Replica::new(rcfg(n, "dc-core"), t)
            })
            .collect::<Vec<_>>()
    };
    let run = |seed: u64| {
        let mut rs = build();
        let mut g = SimRng::seed_from_u64(seed);
        let mut log = Vec::new();
        for step in 0..8 {
            let now = step as f64 * 1_000.0;
            for i in 0..rs.len() {
                let out = rs[i].handle(Input::Tick, now, &mut g);
                log.push(format!(
                    "{i}@{now}: {:?}",
                    requests(&out).iter().map(|(to, _, m)| (to.clone(), m.kind())).collect::<Vec<_>>()
                ));
                // Gossip is lost here; only requests (sync, probes) flow.
                let reqs: Vec<(usize, Output)> =
                    out.into_iter().filter(|o| matches!(o, Output::Request { .. })).map(|o| (i, o)).collect();
                settle(&mut rs, &names, reqs, now, &mut g);
            }
        }
        (rs, log)
    };
    let (rs, log) = run(5);
    for r in &rs[1..] {
        assert_eq!(r.twin(), rs[0].twin(), "{} differs from {}", r.config().name, rs[0].config().name);
    }
    // Each agent's own record plus the ten fabric nodes each one owns.
    assert_eq!(rs[0].twin().len(), 4 + 4 * 10);
    let (_, again) = run(5);
    assert_eq!(log, again, "same seed, same outputs");
    let (_, other) = run(6);
    assert_ne!(log, other, "another seed picks other sync peers");
}

#[test]
fn bookings_are_keyed_by_job_plan_stage_and_attempt() {
    // Rule: a repeated request for the same run gets the same booking; a
    // second plan of the same job books its own slot; a released run gives
    // its room back.
    let mut r = Replica::new(rcfg("a", "dc-core"), Twin::new());
    let k1 = RunKey { plan: 1, stage: 0, attempt: 1 };
    let b1 = r.book("job", k1, "n", (4.0, 8.0), (4.0, 1.0), 100.0, 1_000.0, 0.0).unwrap();
    assert_eq!((b1.start, b1.end), (100.0, 1_100.0));
    assert_eq!(r.book("job", k1, "n", (4.0, 8.0), (4.0, 1.0), 100.0, 1_000.0, 50.0).unwrap(), b1);
    // Another plan of the same job (same stage, same attempt) is another
    // run: it waits for room, it does not inherit the first slot.
    let k2 = RunKey { plan: 2, ..k1 };
    let b2 = r.book("job", k2, "n", (4.0, 8.0), (4.0, 1.0), 100.0, 1_000.0, 60.0).unwrap();
    assert_eq!(b2.start, 1_100.0);
    assert_eq!(r.load("n", 200.0).0, 8.0);
    // Plan 1 fails at 300: from then on its cores are free, and a new run
    // fits at 300.
    assert!(r.release("job", k1, 300.0));
    let k3 = RunKey { plan: 3, ..k1 };
    let b3 = r.book("job", k3, "n", (4.0, 8.0), (4.0, 1.0), 300.0, 500.0, 300.0).unwrap();
    assert_eq!(b3.start, 300.0);
    assert_eq!(
        r.book("job", RunKey { attempt: 2, ..k1 }, "n", (4.0, 8.0), (5.0, 1.0), 0.0, 1.0, 300.0),
        Err(Refusal::DoesNotFit)
    );
}

#[test]
fn a_run_booked_for_later_yields_to_a_late_run_ranked_before_it_until_it_starts() {
    // Rule (as in the DES): a run booked to start later keeps moving with
    // the queue until its start; a late run whose reservation came first
    // keeps its place instead of going behind everything booked since.
    let mut r = Replica::new(rcfg("a", "dc-core"), Twin::new());
    let (ka, kb) = (RunKey { plan: 1, stage: 0, attempt: 1 }, RunKey { plan: 2, stage: 0, attempt: 1 });
    let cap = (4.0, 8.0);
    let w = r.reserve("A", ka, "n", cap, (4.0, 1.0), 0.0, 1_000.0, 0.0).unwrap();
    assert_eq!((w.start, w.end), (0.0, 1_000.0));
    // B comes at 10 and is booked behind A's window (A's run is not
    // there yet; less than a step late, the window has not slid).
    let b = r.book("B", kb, "n", cap, (4.0, 1.0), 0.0, 500.0, 10.0).unwrap();
    assert_eq!((b.start, b.end), (1_000.0, 1_500.0));
    // A's run is 200 ms late: it keeps its rank, B moves behind it.
    let a = r.book("A", ka, "n", cap, (4.0, 1.0), 200.0, 1_000.0, 200.0).unwrap();
    assert_eq!((a.start, a.end), (200.0, 1_200.0), "A keeps its place (it went behind B before)");
    // B's owner says so when asked again at B's booked start.
    let again = r.book("B", kb, "n", cap, (4.0, 1.0), 0.0, 500.0, 1_000.0).unwrap();
    assert_eq!((again.start, again.end), (1_200.0, 1_700.0));
    assert_eq!(r.booking("B", kb), Some(again));
}

#[test]
fn record_versions_from_an_agent_count_as_its_word() {
    let mut r = Replica::new(rcfg("a", "dc-core"), twin_with(&[("a", "dc-core", 0.9), ("b", "dc-core", 0.9)]));
    let mut g = rng();
    r.handle(Input::Tick, 0.0, &mut g);
    let out = r.handle(Input::Tick, 1_000.0, &mut g);
    let (_, token, _) =
        requests(&out).into_iter().find(|(to, _, m)| to == "b" && matches!(m, Message::Ping(_))).unwrap();
    r.handle(Input::RequestFailed { token }, 1_100.0, &mut g);
    assert_eq!(r.liveness().state("b"), Some(PeerState::Suspect));
    // b's own record, one version newer, arrives by gossip (relayed).
    let mut rec = r.twin().record("b").unwrap().clone();
    rec.version += 1;
    rec.node.telemetry.cpu_pct = 42.0;
    let out = r.handle(Input::Gossip(Message::Record(rec.clone())), 1_200.0, &mut g);
    assert!(out.iter().any(|o| matches!(o, Output::Peer(t) if t.peer == "b" && t.to == PeerState::Alive)));
    assert!(out.iter().any(|o| matches!(o, Output::Persist { records, .. } if records == &vec![rec.clone()])));
    // The same record again changes nothing and persists nothing.
    assert!(r.handle(Input::Gossip(Message::Record(rec)), 1_300.0, &mut g).is_empty());
}

#[test]
fn a_leaving_agent_is_dead_at_once_routing_skips_it_and_it_returns_when_heard() {
    let f = reference();
    let agents = [("pan1-phone-01", "phone-pan-1", 0.9), ("pan1-phone-02", "phone-pan-1", 0.8), ("a", "dc-core", 0.9)];
    let mut r = Replica::new(rcfg("a", "dc-core"), twin_with(&agents));
    let mut g = rng();
    r.handle(Input::Tick, 0.0, &mut g);
    let leaver = Replica::new(rcfg("pan1-phone-01", "phone-pan-1"), twin_with(&agents));
    let said = leaver.leave();
    let [Output::Publish(msg)] = &said[..] else { panic!("one publish, got {said:?}") };
    assert_eq!(*msg, Message::Leave("pan1-phone-01".into()));
    let out = r.handle(Input::Gossip(msg.clone()), 100.0, &mut g);
    assert!(
        matches!(&out[..], [Output::Peer(t)] if t.peer == "pan1-phone-01" && t.to == PeerState::Dead && t.reason == crate::liveness::Reason::Left),
        "{out:?}"
    );
    assert_eq!(r.liveness().epoch(), 1);
    let origin = Origin { cluster: "phone-pan-1".into(), node: Some("pan1-phone-01".into()) };
    assert_eq!(r.route(&origin, &f.latency, &[]).unwrap().agent, "pan1-phone-02");
    // Its own leave, relayed back, changes nothing.
    assert!(r.handle(Input::Gossip(Message::Leave("a".into())), 150.0, &mut g).is_empty());
    // Restarted, it speaks again: alive.
    let out =
        r.handle(Input::Request { from: Some("pan1-phone-01".into()), id: 1, msg: Message::Ping(3) }, 200.0, &mut g);
    assert!(out.iter().any(|o| matches!(o, Output::Peer(t) if t.to == PeerState::Alive)));
    assert_eq!(r.route(&origin, &f.latency, &[]).unwrap().agent, "pan1-phone-01");
}

/// Delivers every record `from` published in `out` to `to` by gossip;
/// returns what `to` did.
fn deliver(out: &[Output], to: &mut Replica, now: f64, g: &mut SimRng) -> Vec<Output> {
    let mut back = Vec::new();
    for o in out {
        if let Output::Publish(m @ Message::Record(_)) = o {
            back.extend(to.handle(Input::Gossip(m.clone()), now, g));
        }
    }
    back
}

fn conflicts(out: &[Output]) -> Vec<OwnershipConflict> {
    out.iter()
        .filter_map(|o| match o {
            Output::Conflict(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// Two agents publish node `node` as theirs, each hears the other until
/// quiet; returns the conflicts each reported.
fn fight(a: &mut Replica, b: &mut Replica, node: &str) -> (Vec<OwnershipConflict>, Vec<OwnershipConflict>) {
    let f = reference();
    let base = f.nodes.iter().find(|n| n.cluster == "dc-core").unwrap().clone();
    let mut g = rng();
    let claim = |r: &mut Replica| {
        let mut n = base.clone();
        n.name = node.to_string();
        n.labels.insert(AGENT_LABEL.into(), r.config().name.clone());
        r.update_own(n)
    };
    let (mut to_b, mut to_a) = (claim(a), claim(b));
    let (mut ca, mut cb) = (Vec::new(), Vec::new());
    for round in 0..10 {
        let out_b = deliver(&to_b, b, f64::from(round), &mut g);
        let out_a = deliver(&to_a, a, f64::from(round), &mut g);
        cb.extend(conflicts(&out_b));
        ca.extend(conflicts(&out_a));
        (to_a, to_b) = (out_b, out_a);
        // Each keeps publishing what it owns, as the agent does.
        to_b.extend(claim(a));
        to_a.extend(claim(b));
    }
    // The last round in flight arrives.
    cb.extend(conflicts(&deliver(&to_b, b, 10.0, &mut g)));
    ca.extend(conflicts(&deliver(&to_a, a, 10.0, &mut g)));
    (ca, cb)
}

#[test]
fn two_agents_claiming_one_node_settle_on_the_first_name_and_stop_fighting() {
    // Rule: two agents started with --own-cluster for one cluster do not
    // take a node's record back and forth: the first name keeps it, the
    // other yields (stops publishing it, refuses bookings) and both report.
    let mut a = Replica::new(rcfg("owner-a", "dc-core"), Twin::new());
    let mut b = Replica::new(rcfg("owner-b", "dc-core"), Twin::new());
    let (ca, cb) = fight(&mut a, &mut b, "dc-x86-09");
    assert!(cb.iter().any(|c| c.node == "dc-x86-09" && c.claimant == "owner-a" && !c.kept), "b yields: {cb:?}");
    assert!(ca.iter().all(|c| c.kept), "a never yields: {ca:?}");
    assert_eq!(a.owner_of("dc-x86-09"), "owner-a");
    assert_eq!(b.owner_of("dc-x86-09"), "owner-a");
    assert_eq!(a.twin().record("dc-x86-09"), b.twin().record("dc-x86-09"), "replicas agree");
    assert!(a.owns("dc-x86-09") && !b.owns("dc-x86-09"));
    assert_eq!(b.yielded().collect::<Vec<_>>(), vec![("dc-x86-09", "owner-a")]);
    // The loser publishes nothing more for the node and books nothing on it.
    let n = b.twin().record("dc-x86-09").unwrap().node.clone();
    assert!(b.update_own(n).is_empty());
    let key = crate::execution::RunKey { plan: 1, stage: 0, attempt: 1 };
    let refused = b.book("j", key, "dc-x86-09", (8.0, 16.0), (1.0, 1.0), 0.0, 10.0, 0.0);
    assert!(matches!(refused, Err(Refusal::Other(ref s)) if s.contains("owned by agent 'owner-a'")), "{refused:?}");
    // Reported once, not on every round.
    assert_eq!(cb.iter().filter(|c| !c.kept).count(), 1, "{cb:?}");
}

#[test]
fn a_nodes_own_agent_keeps_it_against_a_cluster_owner_whose_name_sorts_first() {
    let mut own = Replica::new(rcfg("dc-x86-09", "dc-core"), Twin::new());
    let mut cluster = Replica::new(rcfg("a-cluster-owner", "dc-core"), Twin::new());
    let (c_own, c_cluster) = fight(&mut own, &mut cluster, "dc-x86-09");
    assert!(c_own.iter().all(|c| c.kept) && !c_own.is_empty() || c_cluster.iter().any(|c| !c.kept));
    assert!(c_cluster.iter().any(|c| !c.kept && c.claimant == "dc-x86-09"), "{c_cluster:?}");
    assert_eq!(cluster.owner_of("dc-x86-09"), "dc-x86-09");
    assert_eq!(own.owner_of("dc-x86-09"), "dc-x86-09");
    assert!(claim_beats("n", "n", "a") && !claim_beats("n", "a", "n") && claim_beats("x", "a", "b"));
}

// Rule: a peer the failure detector gave up is dialled afresh on the next
// dial round even if its old connection still looks open — after a cut,
// rejoining must not wait for a half-dead TCP connection.
#[test]
fn a_dead_peer_is_redialled_though_its_connection_looks_open() {
    let agents = [("dc-x86-01", "dc-core", 0.99), ("edge-srv-01", "edge-microdc", 0.99)];
    let mut r = Replica::new(rcfg("dc-x86-01", "dc-core"), twin_with(&agents));
    let mut g = rng();
    r.handle(Input::Tick, 0.0, &mut g);
    r.handle(Input::Connected("edge-srv-01".into()), 10.0, &mut g);
    let dials = |out: &[Output]| out.iter().filter(|o| matches!(o, Output::Dial(a) if a == "edge-srv-01")).count();
    let out = r.handle(Input::Tick, 2_500.0, &mut g);
    assert_eq!(dials(&out), 0, "connected and alive: not dialled");
    r.handle(Input::Gossip(Message::Leave("edge-srv-01".into())), 2_600.0, &mut g);
    assert_eq!(r.liveness().state("edge-srv-01"), Some(PeerState::Dead));
    let out = r.handle(Input::Tick, 5_000.0, &mut g);
    assert_eq!(dials(&out), 1, "given up: dialled afresh");
}

// Rule: planners do not place across a cut: the nodes of an owner the
// failure detector holds suspect take no work (they are NotReady in the
// planning view) until it answers again.
#[test]
fn a_suspect_owners_nodes_take_no_work_until_it_answers() {
    let f = reference();
    let agents = [("dc-x86-01", "dc-core", 0.99), ("edge-srv-01", "edge-microdc", 0.99)];
    let mut r = Replica::new(rcfg("dc-x86-01", "dc-core"), twin_with(&agents));
    let mut g = rng();
    r.handle(Input::Tick, 0.0, &mut g);
    let ready = |r: &Replica| {
        let v = r.planning_view(&f, 0).unwrap();
        v.nodes.ready[v.node_index("edge-srv-01").unwrap()]
    };
    assert!(ready(&r));
    let out = r.handle(Input::Tick, 1_000.0, &mut g);
    let (_, token, _) =
        requests(&out).into_iter().find(|(to, _, m)| to == "edge-srv-01" && matches!(m, Message::Ping(_))).unwrap();
    r.handle(Input::RequestFailed { token }, 1_500.0, &mut g);
    assert_eq!(r.liveness().state("edge-srv-01"), Some(PeerState::Suspect));
    assert!(!ready(&r), "suspect owner: no placements");
    let v = r.planning_view(&f, 0).unwrap();
    assert!(v.nodes.ready[v.node_index("dc-x86-01").unwrap()], "its own nodes stay");
    r.handle(Input::Request { from: Some("edge-srv-01".into()), id: 1, msg: Message::Ping(3) }, 2_000.0, &mut g);
    assert!(ready(&r), "heard from again");
}

// Rule: a peer heard from again after it was suspect (a healed cut) gets
// an anti-entropy exchange at once, not at the next random pick.
#[test]
fn a_peer_back_from_suspect_is_synced_at_once() {
    let agents = [("dc-x86-01", "dc-core", 0.99), ("edge-srv-01", "edge-microdc", 0.99)];
    let mut r = Replica::new(rcfg("dc-x86-01", "dc-core"), twin_with(&agents));
    let mut g = rng();
    r.handle(Input::Tick, 0.0, &mut g);
    let syncs = |out: &[Output]| {
        requests(out)
            .into_iter()
            .filter(|(to, _, m)| to == "edge-srv-01" && matches!(m, Message::SyncRequest(_)))
            .count()
    };
    let out =
        r.handle(Input::Request { from: Some("edge-srv-01".into()), id: 1, msg: Message::Ping(1) }, 100.0, &mut g);
    assert_eq!(syncs(&out), 0, "alive all along: no extra exchange");
    let out = r.handle(Input::Tick, 2_000.0, &mut g);
    let (_, token, _) =
        requests(&out).into_iter().find(|(to, _, m)| to == "edge-srv-01" && matches!(m, Message::Ping(_))).unwrap();
    r.handle(Input::RequestFailed { token }, 2_500.0, &mut g);
    assert_eq!(r.liveness().state("edge-srv-01"), Some(PeerState::Suspect));
    let out =
        r.handle(Input::Request { from: Some("edge-srv-01".into()), id: 2, msg: Message::Ping(2) }, 3_000.0, &mut g);
    assert_eq!(syncs(&out), 1, "back: synced at once");
}

#[test]
fn summary_checks_record_whether_each_peer_held_the_same_twin() {
    // Rule: the answer to a summary check (same twin or not) is kept per
    // peer, so an operator sees the mesh converge.
    let names = ["a", "b"];
    let f = reference();
    let mut rs: Vec<Replica> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut t = twin_with(&[(n, "dc-core", 0.9)]);
            for m in names.iter().filter(|m| *m != n) {
                t.merge_record(twin_with(&[(m, "dc-core", 0.9)]).record(m).unwrap().clone());
            }
            for node in f.nodes.iter().skip(i * 5).take(5) {
                let mut node = node.clone();
                node.labels.insert(AGENT_LABEL.into(), n.to_string());
                t.update_own(node);
            }
            Replica::new(rcfg(n, "dc-core"), t)
        })
        .collect();
    let mut g = rng();
    assert_eq!(rs[0].checks().count(), 0);
    let mut seen = Vec::new();
    for step in 0..4 {
        let now = step as f64 * 1_000.0;
        let out = rs[0].handle(Input::Tick, now, &mut g);
        let reqs = out.into_iter().filter(|o| matches!(o, Output::Request { .. })).map(|o| (0, o)).collect();
        settle(&mut rs, &names, reqs, now, &mut g);
        if let Some((peer, same, at)) = rs[0].checks().next() {
            seen.push((peer.to_string(), same, at));
        }
    }
    assert_eq!(seen.first().map(|s| (s.0.as_str(), s.1)), Some(("b", false)), "{seen:?}");
    assert_eq!(seen.last().map(|s| (s.0.as_str(), s.1)), Some(("b", true)), "{seen:?}");
    assert_eq!(rs[0].twin(), rs[1].twin());
}

#[test]
fn a_peer_heard_before_its_record_arrived_is_redialled_when_it_goes() {
    // Rule: every agent the twin names is dialled when not connected, also
    // one that connected (as to a bootstrap agent) before its record came.
    let mut a = Replica::new(rcfg("a", "dc-core"), twin_with(&[("a", "dc-core", 0.9)]));
    let mut g = rng();
    a.handle(Input::Tick, 0.0, &mut g);
    a.handle(Input::Connected("b".into()), 10.0, &mut g);
    let rec = twin_with(&[("b", "dc-core", 0.9)]).record("b").unwrap().clone();
    a.handle(Input::Gossip(Message::Record(rec)), 20.0, &mut g);
    a.handle(Input::Disconnected("b".into()), 30.0, &mut g);
    let dials: Vec<String> = (1..4)
        .flat_map(|i| a.handle(Input::Tick, 30.0 + i as f64 * 1_000.0, &mut g))
        .filter_map(|o| match o {
            Output::Dial(p) => Some(p),
            _ => None,
        })
        .collect();
    assert!(dials.contains(&"b".to_string()), "{dials:?}");
}
