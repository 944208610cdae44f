//! The booking rules, checked against a straightforward scan and by hand.

use super::*;
use proptest::prelude::*;

#[test]
fn waits_for_room_and_backfills_gaps() {
    let mut s = NodeSchedule::new(4.0, 16.0);
    assert_eq!(s.book(0.0, 100.0, 3.0, 1.0).unwrap().start, 0.0);
    // 2 more cores do not fit until the first run ends.
    assert_eq!(s.book(10.0, 50.0, 2.0, 1.0).unwrap().start, 100.0);
    // 1 core fits alongside right away.
    assert_eq!(s.book(20.0, 30.0, 1.0, 1.0).unwrap().start, 20.0);
    assert!(s.book(0.0, 1.0, 5.0, 1.0).is_none(), "bigger than the node");
    assert_eq!(s.allocated(30.0), (6.0, 3.0));
    // Remaining work at t = 50: 3×50 + 2×50 + 1×0 = 250 core-ms over 4 cores.
    assert!((s.backlog(50.0) - 62.5).abs() < 1e-9);
    s.prune(1000.0);
    assert_eq!(s.allocated(1000.0), (0.0, 0.0));
}

// Rule: a reservation holds its window against later work; a run
// ready early starts early where there is room; a late run keeps its
// rank and pushes what was reserved after it, which pushes in turn.
#[test]
fn reservations_hold_room_and_late_runs_push_what_came_after() {
    let mut s = NodeSchedule::new(4.0, 16.0);
    // Job A reserves the whole node for [100, 200).
    let a = s.reserve(1, 100.0, 100.0, 4.0, 1.0).unwrap();
    assert_eq!((a.start, a.end), (100.0, 200.0));
    // Job B arrives later, ready at 50 for 100: it goes around A.
    let b = s.reserve(2, 50.0, 100.0, 4.0, 1.0).unwrap();
    assert_eq!((b.start, b.end), (200.0, 300.0));
    // Job C right behind B.
    let c = s.reserve(3, 250.0, 100.0, 4.0, 1.0).unwrap();
    assert_eq!((c.start, c.end), (300.0, 400.0));
    // A repeated reservation is the same one.
    assert_eq!(s.reserve(1, 0.0, 1.0, 1.0, 1.0), Some(a));
    assert_eq!(s.len(), 3);
    // A's predecessor is 30 late: A starts at 130 and runs 100; B is
    // pushed 30 (to 230), and C behind it 30 (to 330).
    let r = s.book_run(1, 130.0, 100.0, 4.0, 1.0).unwrap();
    assert_eq!((r.booking.start, r.booking.end), (130.0, 230.0));
    assert_eq!(r.reserved, Some(a));
    let moved: Vec<(u64, f64, f64)> = r.shifted.iter().map(|x| (x.tag, x.from.start, x.to.start)).collect();
    assert_eq!(moved, vec![(2, 200.0, 230.0), (3, 300.0, 330.0)]);
    assert_eq!(s.held(2), Some((Booking { start: 230.0, end: 330.0, cpu: 4.0, mem_gb: 1.0 }, true)));
    // Booking A again returns the run as booked.
    assert_eq!(s.book_run(1, 0.0, 5.0, 4.0, 1.0).unwrap().booking, r.booking);
    // B is ready early (at 150, while A runs): it starts when A ends,
    // at 230, its shifted window — no earlier room on a full node.
    let rb = s.book_run(2, 150.0, 100.0, 4.0, 1.0).unwrap();
    assert_eq!(rb.booking.start, 230.0);
    assert!(rb.shifted.is_empty());
    assert!(s.peak_cpu(0.0, 1000.0) <= 4.0 + 1e-9);
}

#[test]
fn an_early_run_starts_early_and_a_long_one_pushes() {
    let mut s = NodeSchedule::new(4.0, 16.0);
    s.reserve(1, 100.0, 100.0, 2.0, 1.0).unwrap();
    s.reserve(2, 200.0, 100.0, 4.0, 1.0).unwrap();
    // Ready at 60 instead of 100: room from 60 on, so it starts at 60.
    let r = s.book_run(1, 60.0, 100.0, 2.0, 1.0).unwrap();
    assert_eq!(r.booking.start, 60.0);
    assert!(r.shifted.is_empty());
    let mut s = NodeSchedule::new(4.0, 16.0);
    s.reserve(1, 100.0, 100.0, 2.0, 1.0).unwrap();
    s.reserve(2, 200.0, 100.0, 4.0, 1.0).unwrap();
    // On time but 150 long instead of 100: it keeps [100, 250) and the
    // next reservation moves to 250.
    let r = s.book_run(1, 100.0, 150.0, 2.0, 1.0).unwrap();
    assert_eq!((r.booking.start, r.booking.end), (100.0, 250.0));
    assert_eq!(r.shifted.len(), 1);
    assert_eq!(r.shifted[0].to.start, 250.0);
    // A run with no reservation backfills where it fits (at 0) and
    // otherwise waits for every reservation: 4 cores ready at 120
    // find room only after the moved one, at 350.
    assert_eq!(s.book_run(8, 0.0, 10.0, 4.0, 1.0).unwrap().booking.start, 0.0);
    assert_eq!(s.book_run(9, 120.0, 10.0, 4.0, 1.0).unwrap().booking.start, 350.0);
    // Releasing a reservation gives its whole window back.
    assert!(s.release_tag(2, 500.0));
    assert_eq!(s.held(2), None);
    // Pruning keeps reservations whose window passed (their stage is
    // late, not gone); prune_reservations forgets them.
    s.reserve(4, 0.0, 10.0, 1.0, 1.0).unwrap();
    s.prune(1_000.0);
    assert!(s.held(4).is_some());
    s.prune_reservations(1_000.0);
    assert!(s.held(4).is_none());
}

/// The rule as first written: try `ready` and every booking's end, in
/// order; the first window where every instant fits wins.
fn reference_start(s: &NodeSchedule, ready: f64, d: f64, cpu: f64, mem: f64) -> f64 {
    let ok = |t: f64| {
        let (c, m) = s.usage_at(t);
        c + cpu <= s.cap_cpu + 1e-9 && m + mem <= s.cap_mem_gb + 1e-9
    };
    let fits = |t: f64| ok(t) && s.entries.iter().map(|e| e.b.start).filter(|&x| x > t && x < t + d).all(ok);
    let mut candidates: Vec<f64> = vec![ready];
    candidates.extend(s.entries.iter().map(|e| e.b.end).filter(|&e| e > ready));
    candidates.sort_by(f64::total_cmp);
    candidates.into_iter().find(|&t| fits(t)).expect("fits once everything ended")
}

proptest! {
    // Rule: the sweep books exactly where the straightforward rule does
    // (whole-number times, so ties between starts and ends happen).
    #[test]
    fn sweep_equals_the_reference_rule(
        runs in proptest::collection::vec((0u32..60, 1u32..30, 1u32..5, 0u32..9, 0u8..6, 0u32..100), 1..40)
    ) {
        let mut s = NodeSchedule::new(4.0, 8.0);
        let mut held = Vec::new();
        for (ready, dur, cpu, mem, op, at) in runs {
            let (ready, dur, cpu, mem) = (f64::from(ready), f64::from(dur), f64::from(cpu), f64::from(mem));
            // Now and then a run is given back early, or old ones pruned:
            // the kept profile must follow.
            match op {
                0 if !held.is_empty() => {
                    let b: Booking = held.swap_remove(at as usize % held.len());
                    prop_assert!(s.release(&b, f64::from(at)));
                    if f64::from(at) > b.start && f64::from(at) < b.end {
                        held.push(Booking { end: f64::from(at), ..b });
                    } else if f64::from(at) >= b.end {
                        held.push(b);
                    }
                }
                1 => {
                    s.prune(f64::from(at) / 2.0);
                    held.retain(|b| b.end > f64::from(at) / 2.0);
                }
                _ => {}
            }
            let want = reference_start(&s, ready, dur, cpu, mem);
            let (b, peak) = s.book_with_peak(ready, dur, cpu, mem).unwrap();
            prop_assert_eq!(b.start, want);
            prop_assert!((peak - s.peak_cpu(b.start, b.end)).abs() < 1e-9, "peak {} vs {}", peak, s.peak_cpu(b.start, b.end));
            held.push(b);
        }
    }

    // Rule: whatever mix of reservations, runs booked against them
    // (early, late, longer, shorter) and plain bookings, no instant
    // is overbooked, nothing starts before it is ready, and a run
    // booked on time against its reservation starts no later than it.
    #[test]
    fn reservations_never_overbook(
        ops in proptest::collection::vec((0u8..3, 0u64..12, 0u32..80, 1u32..30, 1u32..5), 1..60)
    ) {
        let mut s = NodeSchedule::new(4.0, 8.0);
        let mut booked = std::collections::HashSet::new();
        for (op, tag, ready, dur, cpu) in ops {
            let (ready, dur, cpu) = (f64::from(ready), f64::from(dur), f64::from(cpu));
            match op {
                0 => {
                    if let Some(b) = s.reserve(tag, ready, dur, cpu, 1.0) {
                        prop_assert!(b.start >= ready || s.held(tag).is_some());
                    }
                }
                1 => {
                    let before = s.held(tag).filter(|_| !booked.contains(&tag));
                    let r = s.book_run(tag, ready, dur, cpu, 1.0).unwrap();
                    booked.insert(tag);
                    if let Some((res, true)) = before {
                        prop_assert!(r.booking.start >= ready);
                        if ready <= res.start && dur <= res.end - res.start && cpu <= res.cpu {
                            prop_assert!(r.booking.start <= res.start + 1e-9, "on time yet later than reserved");
                        }
                    }
                }
                _ => {
                    s.release_tag(tag, ready);
                    booked.remove(&tag);
                }
            }
            for e in &s.entries {
                let (c, m) = s.usage_at(e.b.start);
                prop_assert!(c <= 4.0 + 1e-6 && m <= 8.0 + 1e-6, "overbooked at {}: {} cores", e.b.start, c);
            }
        }
    }

    #[test]
    fn never_overbooked(runs in proptest::collection::vec((0.0f64..100.0, 1.0f64..50.0, 0.5f64..4.0, 0.0f64..8.0), 1..30)) {
        let mut s = NodeSchedule::new(4.0, 8.0);
        let mut booked = Vec::new();
        for (ready, dur, cpu, mem) in runs {
            if let Some(b) = s.book(ready, dur, cpu, mem) {
                prop_assert!(b.start >= ready);
                booked.push(b);
            }
        }
        for b in &booked {
            let (c, m) = booked.iter().filter(|x| x.start <= b.start && b.start < x.end).fold((0.0, 0.0), |(c, m), x| (c + x.cpu, m + x.mem_gb));
            prop_assert!(c <= 4.0 + 1e-6 && m <= 8.0 + 1e-6, "overbooked at {}: {c} cores {m} GB", b.start);
        }
    }
}

#[test]
fn a_reservation_whose_run_is_late_slides_with_the_clock_and_keeps_its_rank() {
    // A 2-core node. Stage a is reserved for [1,000, 1,400) on 2 cores;
    // later, stage b (planned after a) books its run for right behind it.
    let mut s = NodeSchedule::new(2.0, 8.0);
    s.reserve(1, 1_000.0, 400.0, 2.0, 1.0).unwrap();
    let b = s.book_run(2, 0.0, 4_000.0, 2.0, 1.0).unwrap().booking;
    assert_eq!((b.start, b.end), (1_400.0, 5_400.0));
    // Less than a step late: nothing moves yet (a's window covers now).
    assert!(s.slide_overdue(1_000.0 + SLIDE_STEP_MS - 1.0).is_empty());
    // At 1,300 a's inputs are still not there: a slides to start now and
    // b, not started and ranked after it, moves behind it.
    let moved = s.slide_overdue(1_300.0);
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert_eq!((moved[0].tag, moved[0].to.start), (1, 1_300.0));
    assert_eq!((moved[1].tag, moved[1].to.start, moved[1].booked), (2, 1_700.0, true));
    s.start_due(1_310.0);
    // a's run arrives at 1,420, 420 ms late: it still starts at once —
    // without sliding, b would have started at 1,400 and a would wait
    // for b's 4 s.
    s.slide_overdue(1_420.0);
    let a = s.book_run(1, 1_420.0, 400.0, 2.0, 1.0).unwrap();
    assert_eq!(a.booking.start, 1_420.0);
    assert_eq!(s.held(2).unwrap().0.start, 1_820.0, "b behind a");
    // Once b has started nothing moves it: a booked, b running.
    s.start_due(1_820.0);
    assert!(!s.held(2).unwrap().1, "started");
    assert!(s.slide_overdue(2_400.0).is_empty());
}

#[test]
fn a_reservation_slides_at_most_the_bound_then_stays() {
    let mut s = NodeSchedule::new(4.0, 8.0);
    s.reserve(1, 0.0, 100.0, 1.0, 1.0).unwrap();
    assert_eq!(s.slide_overdue(RESERVATION_SLIDE_MS).len(), 1);
    assert_eq!(s.held(1).unwrap().0.start, RESERVATION_SLIDE_MS);
    assert!(s.slide_overdue(RESERVATION_SLIDE_MS + 1.0).is_empty(), "past the bound it stays");
    s.prune_reservations(RESERVATION_SLIDE_MS + 200.0);
    assert!(s.is_empty(), "and is forgotten once its window is old");
}
