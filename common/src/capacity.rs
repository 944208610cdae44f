//! A node's booked capacity over time: which stages hold how many cores
//! and how much memory, from when to when.
//!
//! The owner of a node books every stage placed on it here, so the node is
//! never given more than it has, whoever planned the stage. A stage starts
//! at the earliest time from its ready time at which its demand fits for
//! its whole run (earlier gaps are used when they fit: backfilling). Times
//! are absolute and in whatever unit the caller uses (fabric ms).
//!
//! **Reservations.** A plan reserves every stage when it is committed, for
//! its predicted window ([`NodeSchedule::reserve`]), so work that arrives
//! later goes around it — as Slurm's backfill and the Kubernetes
//! scheduler's nominated nodes hold room from decision to binding. When
//! the stage's inputs are there, its run is booked against its reservation
//! ([`NodeSchedule::book_run`]):
//!
//! * early or on time, it starts at the earliest fit from its ready time
//!   (its own reserved room is free to it), never later than it would
//!   have without the reservation;
//! * late (a predecessor ran long), or longer than reserved, it keeps its
//!   rank: it starts at the earliest fit that ignores reservations made
//!   *after* its own, and those it now overlaps are shifted later, in
//!   their order, each to its earliest fit from where it was — what they
//!   push shifts in turn. Every shift is returned ([`Shift`]) so the
//!   owner can record it on the jobs it moved.
//!
//! Runs booked without a reservation (failovers, a retry) rank after every
//! reservation made before them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One booked run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Booking {
    /// Start.
    pub start: f64,
    /// End.
    pub end: f64,
    /// Cores held.
    pub cpu: f64,
    /// Memory held (GB).
    pub mem_gb: f64,
}

/// A reservation moved later by a run of higher rank.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shift {
    /// The caller's tag of the reservation moved.
    pub tag: u64,
    /// Where it was.
    pub from: Booking,
    /// Where it is now.
    pub to: Booking,
    /// Whether it is a run booked to start (not only a reservation): its
    /// start moved.
    pub booked: bool,
}

/// A run booked by [`NodeSchedule::book_run`].
#[derive(Clone, Debug, PartialEq)]
pub struct BookedRun {
    /// The run's booking.
    pub booking: Booking,
    /// The highest number of cores in use during the run, the run
    /// included.
    pub peak_cpu: f64,
    /// The reserved window it replaced, if it had one.
    pub reserved: Option<Booking>,
    /// Reservations it pushed later.
    pub shifted: Vec<Shift>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    tag: u64,
    b: Booking,
    /// Rank: lower is older (served first when runs are late).
    rank: u64,
    /// Not started: a reservation, or a run booked to start later. It
    /// can still be pushed by a late run ranked before it.
    reserved: bool,
    /// Booked as a run (not only reserved).
    booked: bool,
    /// Where a reservation was first placed (how far it has slid).
    first: f64,
}

/// The bookings of one node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSchedule {
    /// Allocatable cores.
    pub cap_cpu: f64,
    /// Allocatable memory (GB).
    pub cap_mem_gb: f64,
    entries: Vec<Entry>,
    /// The usage profile: at each instant where usage changes, by how
    /// much (cores, GB) — kept in time order as bookings come and go, so
    /// finding room is one walk, not a sort per booking.
    profile: BTreeMap<u64, (f64, f64)>,
    /// Ranks given out.
    ranks: u64,
}

/// How far (ms) past where it was placed a reservation slides with the
/// clock while its run is late ([`NodeSchedule::slide_overdue`]).
pub const RESERVATION_SLIDE_MS: f64 = 10_000.0;

/// A reservation slides once it is this late (ms), in one step to the
/// clock: not at every event. Slid at every event, a busy node's queue
/// was pushed again and again by a few ms (each pushed run a new start),
/// which made the job DES superlinear in its load (`twinmesh bench core`
/// did not finish; 488,357 shifts for 50 jobs). One agent tick.
pub const SLIDE_STEP_MS: f64 = 250.0;

/// Tags given to runs booked without one (high bit set; callers' tags
/// keep it clear).
const UNTAGGED: u64 = 1 << 63;

/// Orders f64 times as u64 keys (total order, negatives first).
fn key(t: f64) -> u64 {
    let b = t.to_bits();
    if b >> 63 == 0 { b | (1 << 63) } else { !b }
}

fn time_of(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

impl NodeSchedule {
    /// An empty schedule for a node of this size.
    pub fn new(cap_cpu: f64, cap_mem_gb: f64) -> Self {
        NodeSchedule { cap_cpu, cap_mem_gb, entries: Vec::new(), profile: BTreeMap::new(), ranks: 0 }
    }

    fn change(&mut self, t: f64, cpu: f64, mem: f64) {
        let e = self.profile.entry(key(t)).or_insert((0.0, 0.0));
        e.0 += cpu;
        e.1 += mem;
        if e.0.abs() < 1e-12 && e.1.abs() < 1e-12 {
            self.profile.remove(&key(t));
        }
    }

    fn add(&mut self, b: &Booking) {
        self.change(b.start, b.cpu, b.mem_gb);
        self.change(b.end, -b.cpu, -b.mem_gb);
    }

    fn remove(&mut self, b: &Booking) {
        self.change(b.start, -b.cpu, -b.mem_gb);
        self.change(b.end, b.cpu, b.mem_gb);
    }

    /// Cores and memory in use at instant `t`.
    fn usage_at(&self, t: f64) -> (f64, f64) {
        self.entries
            .iter()
            .map(|e| e.b)
            .filter(|b| b.start <= t && t < b.end)
            .fold((0.0, 0.0), |(c, m), b| (c + b.cpu, m + b.mem_gb))
    }

    fn too_big(&self, cpu: f64, mem_gb: f64) -> bool {
        cpu > self.cap_cpu + 1e-9 || mem_gb > self.cap_mem_gb + 1e-9
    }

    fn insert(&mut self, tag: u64, b: Booking, rank: u64, reserved: bool) {
        self.entries.push(Entry { tag, b, rank, reserved, booked: !reserved, first: b.start });
        self.add(&b);
    }

    /// A run booked to start later: movable until started.
    fn insert_run(&mut self, tag: u64, b: Booking, rank: u64) {
        self.entries.push(Entry { tag, b, rank, reserved: true, booked: true, first: b.start });
        self.add(&b);
    }

    fn next_rank(&mut self) -> u64 {
        self.ranks += 1;
        self.ranks
    }

    /// Books `duration` of `cpu`/`mem` at the earliest start ≥ `ready`
    /// where it fits; returns the booking. `None` if it can never fit.
    ///
    /// One walk over the node's usage profile (a step function that
    /// changes at bookings' starts and ends, kept in order): linear in the
    /// changes up to the slot found, so an owner with thousands of queued
    /// stages still books in microseconds.
    pub fn book(&mut self, ready: f64, duration: f64, cpu: f64, mem_gb: f64) -> Option<Booking> {
        self.book_with_peak(ready, duration, cpu, mem_gb).map(|(b, _)| b)
    }

    /// As [`NodeSchedule::book`], with the highest number of cores in use
    /// during the booked run, the run included (what the DES checks
    /// capacity with), found on the same walk.
    pub fn book_with_peak(&mut self, ready: f64, duration: f64, cpu: f64, mem_gb: f64) -> Option<(Booking, f64)> {
        if self.too_big(cpu, mem_gb) {
            return None;
        }
        let (start, peak) = self.earliest_fit(ready, duration, cpu, mem_gb);
        let b = Booking { start, end: start + duration, cpu, mem_gb };
        let rank = self.next_rank();
        self.insert(UNTAGGED | rank, b, rank, false);
        Some((b, peak + cpu))
    }

    /// Reserves `duration` of `cpu`/`mem` for the run tagged `tag` at the
    /// earliest start ≥ `ready` where it fits, ranked after everything
    /// held now. A second request for a tag already held returns what it
    /// holds. `None` if it can never fit.
    pub fn reserve(&mut self, tag: u64, ready: f64, duration: f64, cpu: f64, mem_gb: f64) -> Option<Booking> {
        if let Some(e) = self.entry(tag) {
            return Some(e.b);
        }
        if self.too_big(cpu, mem_gb) {
            return None;
        }
        let (start, _) = self.earliest_fit(ready, duration, cpu, mem_gb);
        let b = Booking { start, end: start + duration, cpu, mem_gb };
        let rank = self.next_rank();
        self.insert(tag & !UNTAGGED, b, rank, true);
        Some(b)
    }

    /// Books the run tagged `tag`, whose inputs are there at `ready` and
    /// which takes `duration`, against its reservation if it has one (see
    /// the module's rules); without one, as [`NodeSchedule::book`]. Until
    /// it is started ([`NodeSchedule::start`]) a booked run keeps its rank
    /// and can still be pushed by a late run ranked before it, like a
    /// reservation. A run already started under `tag` is returned as it
    /// is. `None` if it can never fit.
    pub fn book_run(&mut self, tag: u64, ready: f64, duration: f64, cpu: f64, mem_gb: f64) -> Option<BookedRun> {
        let tag = tag & !UNTAGGED;
        let held = self.entries.iter().position(|e| e.tag == tag);
        if let Some(i) = held
            && self.entries[i].booked
        {
            // Booked already: a repeated request gets the same run.
            let b = self.entries[i].b;
            return Some(BookedRun {
                booking: b,
                peak_cpu: self.peak_in(b.start, b.end),
                reserved: None,
                shifted: vec![],
            });
        }
        if self.too_big(cpu, mem_gb) {
            return None;
        }
        let Some(i) = held else {
            let (start, peak) = self.earliest_fit(ready, duration, cpu, mem_gb);
            let b = Booking { start, end: start + duration, cpu, mem_gb };
            let rank = self.next_rank();
            self.insert_run(tag, b, rank);
            return Some(BookedRun { booking: b, peak_cpu: peak + cpu, reserved: None, shifted: vec![] });
        };
        let own = self.entries.swap_remove(i);
        self.remove(&own.b);
        let (start, peak) = self.earliest_fit(ready, duration, cpu, mem_gb);
        let anchor = ready.max(own.b.start);
        if start <= anchor + 1e-9 {
            let b = Booking { start, end: start + duration, cpu, mem_gb };
            self.insert_run(tag, b, own.rank);
            return Some(BookedRun { booking: b, peak_cpu: peak + cpu, reserved: Some(own.b), shifted: vec![] });
        }
        // Late or longer than reserved: it keeps its rank.
        let (b, shifted) = self.keep_rank(tag, own.rank, anchor, duration, cpu, mem_gb, true, own.first);
        Some(BookedRun { booking: b, peak_cpu: self.peak_in(b.start, b.end), reserved: Some(own.b), shifted })
    }

    /// Places what is tagged `tag` at its earliest fit from `anchor`,
    /// keeping `rank`: reservations and runs not started ranked after it
    /// that could be in its way step aside, then go back in their order,
    /// each at its earliest fit from where it was. Returns where it went
    /// and who moved.
    #[allow(clippy::too_many_arguments)]
    fn keep_rank(
        &mut self,
        tag: u64,
        rank: u64,
        anchor: f64,
        duration: f64,
        cpu: f64,
        mem_gb: f64,
        booked: bool,
        first: f64,
    ) -> (Booking, Vec<Shift>) {
        let mut after: Vec<Entry> = Vec::new();
        let mut k = 0;
        while k < self.entries.len() {
            let e = self.entries[k];
            if e.reserved && e.rank > rank && e.b.end > anchor {
                self.entries.swap_remove(k);
                self.remove(&e.b);
                after.push(e);
            } else {
                k += 1;
            }
        }
        after.sort_unstable_by_key(|e| e.rank);
        let (start, _) = self.earliest_fit(anchor, duration, cpu, mem_gb);
        let b = Booking { start, end: start + duration, cpu, mem_gb };
        self.entries.push(Entry { tag, b, rank, reserved: true, booked, first });
        self.add(&b);
        let mut shifted = Vec::new();
        for e in after {
            let d = e.b.end - e.b.start;
            let (s, _) = self.earliest_fit(e.b.start, d, e.b.cpu, e.b.mem_gb);
            let to = Booking { start: s, end: s + d, ..e.b };
            if s > e.b.start {
                shifted.push(Shift { tag: e.tag, from: e.b, to, booked: e.booked });
            }
            self.entries.push(Entry { b: to, ..e });
            self.add(&to);
        }
        (b, shifted)
    }

    /// Reservations whose window has begun without their run (its inputs
    /// are late) slide with the clock: each starts at `now`, keeping its
    /// rank, and what it overlaps among reservations and runs not started
    /// ranked after it moves later ([`NodeSchedule::keep_rank`]). So a
    /// late stage keeps the room it was promised instead of finding it
    /// taken by work planned after it. It slides once it is
    /// [`SLIDE_STEP_MS`] late (its room is held meanwhile: its window
    /// still covers the clock). A reservation slides at most
    /// [`RESERVATION_SLIDE_MS`] past where it was placed; then it stays
    /// and is forgotten like any reservation whose job is gone. Returns
    /// everything that moved (the slid reservations included).
    pub fn slide_overdue(&mut self, now: f64) -> Vec<Shift> {
        let mut due: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| {
                e.reserved && !e.booked && e.b.start + SLIDE_STEP_MS <= now && now - e.first <= RESERVATION_SLIDE_MS
            })
            .copied()
            .collect();
        if due.is_empty() {
            return Vec::new();
        }
        due.sort_unstable_by_key(|e| e.rank);
        let mut moved = Vec::new();
        for e in due {
            let Some(i) = self.entries.iter().position(|x| x.tag == e.tag) else { continue };
            let cur = self.entries.swap_remove(i);
            self.remove(&cur.b);
            let d = cur.b.end - cur.b.start;
            let (to, shifted) = self.keep_rank(cur.tag, cur.rank, now, d, cur.b.cpu, cur.b.mem_gb, false, cur.first);
            moved.push(Shift { tag: cur.tag, from: cur.b, to, booked: false });
            moved.extend(shifted);
        }
        moved
    }

    /// The run tagged `tag` starts: from now on it holds its room whatever
    /// comes. Returns its booking, or `None` if nothing is held under
    /// `tag`.
    pub fn start(&mut self, tag: u64) -> Option<Booking> {
        let e = self.entries.iter_mut().find(|e| e.tag == tag & !UNTAGGED)?;
        e.reserved = false;
        Some(e.b)
    }

    /// Every run booked to start by `now` starts: from then on it holds
    /// its room (runs booked for later stay movable until their start).
    pub fn start_due(&mut self, now: f64) {
        for e in &mut self.entries {
            if e.booked && e.b.start <= now {
                e.reserved = false;
            }
        }
    }

    /// What is held under `tag`: its booking, and whether it can still
    /// move (a reservation, or a run booked and not started).
    pub fn held(&self, tag: u64) -> Option<(Booking, bool)> {
        self.entry(tag & !UNTAGGED).map(|e| (e.b, e.reserved))
    }

    fn entry(&self, tag: u64) -> Option<&Entry> {
        self.entries.iter().find(|e| e.tag == tag)
    }

    /// Highest cores in use at any instant of `[start, end)`.
    fn peak_in(&self, start: f64, end: f64) -> f64 {
        let mut used: f64 = self.profile.range(..=key(start)).map(|(_, (c, _))| c).sum();
        let mut peak = used;
        for (_, (c, _)) in self.profile.range(key(start)..key(end)).skip_while(|(k, _)| **k == key(start)) {
            used += c;
            peak = peak.max(used);
        }
        peak
    }

    /// The earliest `t ≥ ready` such that `cpu`/`mem` more fit at every
    /// instant of `[t, t + duration)`. Usage at an instant counts the
    /// bookings with `start ≤ t < end`. Also the highest cores in use
    /// (before this booking) within that window.
    fn earliest_fit(&self, ready: f64, duration: f64, cpu: f64, mem: f64) -> (f64, f64) {
        let fits = |c: f64, m: f64| c + cpu <= self.cap_cpu + 1e-9 && m + mem <= self.cap_mem_gb + 1e-9;
        let (mut used_cpu, mut used_mem) = (0.0, 0.0);
        // Usage at `ready`: every change at or before it.
        let mut later = self.profile.range(key(ready)..).peekable();
        for (_, (c, m)) in self.profile.range(..key(ready)) {
            used_cpu += c;
            used_mem += m;
        }
        if let Some(&(&k, &(c, m))) = later.peek()
            && time_of(k) == ready
        {
            used_cpu += c;
            used_mem += m;
            later.next();
        }
        // Walk the segments of constant usage; `run` is the start of the
        // current stretch where the demand fits.
        let mut run = fits(used_cpu, used_mem).then_some(ready);
        let mut peak = used_cpu;
        let mut last = ready;
        for (&k, &(c, m)) in later {
            let t = time_of(k);
            if let Some(r) = run
                && t - r >= duration
            {
                return (r, peak);
            }
            used_cpu += c;
            used_mem += m;
            last = t;
            if fits(used_cpu, used_mem) {
                if run.is_none() {
                    run = Some(t);
                    peak = used_cpu;
                } else {
                    peak = peak.max(used_cpu);
                }
            } else {
                run = None;
            }
        }
        // After the last change nothing is booked: it fits from there on.
        match run {
            Some(r) => (r, peak),
            None => (last, 0.0),
        }
    }

    /// Gives back `b` from `at` on (a run that failed or was cancelled):
    /// its booking ends at `at`, or disappears if it had not started.
    /// Returns whether `b` was booked here.
    pub fn release(&mut self, b: &Booking, at: f64) -> bool {
        let Some(i) = self.entries.iter().position(|e| e.b == *b) else { return false };
        self.cut(i, at);
        true
    }

    /// Gives back what is held under `tag` from `at` on (a reservation
    /// disappears whole unless it had started). Returns whether anything
    /// was held under it.
    pub fn release_tag(&mut self, tag: u64, at: f64) -> bool {
        let Some(i) = self.entries.iter().position(|e| e.tag == tag & !UNTAGGED) else { return false };
        let at = if self.entries[i].reserved { at.min(self.entries[i].b.start) } else { at };
        self.cut(i, at);
        true
    }

    fn cut(&mut self, i: usize, at: f64) {
        let b = self.entries[i].b;
        if at <= b.start {
            self.entries.swap_remove(i);
            self.remove(&b);
        } else if at < b.end {
            self.remove(&b);
            self.entries[i].b.end = at;
            let shorter = self.entries[i].b;
            self.add(&shorter);
        }
    }

    /// Highest cores in use at any instant within `[start, end)` (the
    /// straightforward scan the tests check the booking walk's peak with).
    #[cfg(test)]
    fn peak_cpu(&self, start: f64, end: f64) -> f64 {
        let mut peak = self.usage_at(start).0;
        for e in &self.entries {
            if e.b.start > start && e.b.start < end {
                peak = peak.max(self.usage_at(e.b.start).0);
            }
        }
        peak
    }

    /// Cores and memory in use at `now` (running, not merely booked).
    pub fn used(&self, now: f64) -> (f64, f64) {
        self.usage_at(now)
    }

    /// Bookings that have not started by `now` (stages waiting for room or
    /// for their inputs, reservations included).
    pub fn waiting(&self, now: f64) -> usize {
        self.entries.iter().filter(|e| e.b.start > now).count()
    }

    /// Number of bookings and reservations held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is booked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets runs that ended before `now`. Reservations stay until they
    /// are booked or released: a stage whose predecessor is late keeps
    /// its rank past its window.
    pub fn prune(&mut self, now: f64) {
        self.forget(|e| !e.reserved && e.b.end <= now);
    }

    /// Forgets reservations whose window ended before `before` (their jobs
    /// are gone without releasing them).
    pub fn prune_reservations(&mut self, before: f64) {
        self.forget(|e| e.reserved && e.b.end <= before);
    }

    fn forget(&mut self, gone: impl Fn(&Entry) -> bool) {
        let mut k = 0;
        while k < self.entries.len() {
            if gone(&self.entries[k]) {
                let e = self.entries.swap_remove(k);
                self.remove(&e.b);
            } else {
                k += 1;
            }
        }
    }

    /// Cores and memory held at `now`, counting bookings and reservations
    /// that have not started yet (placed work holds its node, as in
    /// Kubernetes).
    pub fn allocated(&self, now: f64) -> (f64, f64) {
        self.entries.iter().filter(|e| e.b.end > now).fold((0.0, 0.0), |(c, m), e| (c + e.b.cpu, m + e.b.mem_gb))
    }

    /// Expected wait from `now` before the node has drained its booked
    /// and reserved work, treating its cores as one pool.
    pub fn backlog(&self, now: f64) -> f64 {
        let work: f64 =
            self.entries.iter().filter(|e| e.b.end > now).map(|e| e.b.cpu * (e.b.end - e.b.start.max(now))).sum();
        work / self.cap_cpu.max(1e-9)
    }
}

#[cfg(test)]
mod tests;
