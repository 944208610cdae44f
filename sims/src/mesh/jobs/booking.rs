//! Bookings and reservations with nodes' owners, as
//! `common::lifecycle::Booking` decides them, over the simulated network.

use twinmesh_common::execution::{ExecEvent, Refusal, RunKey};
use twinmesh_common::lifecycle::{Ask, Booking, BookingInput, BookingOutput, Decision};
use twinmesh_common::truth;
use twinmesh_common::view::FabricView;
use twinmesh_common::wire::{self, Message, StageRun};

use super::{Asked, JobEv, Mesh};

impl Mesh {
    /// The owner agent of `node` in planner `p`'s twin (`p` itself when
    /// nobody owns it).
    pub(in crate::mesh) fn owner_of(&self, view: &FabricView, node: usize, p: usize) -> usize {
        let owner = self.replicas[p].owner_of(&view.nodes.name[node]);
        self.index.get(&owner).copied().unwrap_or(p as u32) as usize
    }

    /// Job `k`'s planner `p` asks `node`'s owner to book a run.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ask_booking(
        &mut self,
        k: usize,
        p: usize,
        view: &FabricView,
        key: RunKey,
        node: usize,
        ready_at: f64,
        now: f64,
    ) {
        let owner = self.owner_of(view, node, p);
        let name = &self.names[owner];
        let (given_up, rtt) = (self.replicas[p].given_up(name), self.replicas[p].timeout_for(name));
        let mut out = Vec::new();
        let machine = Booking::new(&self.lifecycle, Ask::Book, owner == p, given_up, rtt, now, &mut out);
        self.jobs[k].asked.retain(|a| a.key != key);
        self.jobs[k].asked.push(Asked { key, machine, attempt: 0, node, owner, ready_at, answer: None });
        self.booking_outputs(k, key, out, now);
    }

    fn booking_input(&mut self, k: usize, key: RunKey, input: BookingInput, now: f64) {
        let Some(a) = self.jobs[k].asked.iter_mut().find(|a| a.key == key) else { return };
        let mut out = Vec::new();
        a.machine.handle(input, now, &mut out);
        self.booking_outputs(k, key, out, now);
    }

    /// Carries out what a booking decided.
    fn booking_outputs(&mut self, k: usize, key: RunKey, out: Vec<BookingOutput>, now: f64) {
        let p = self.jobs[k].planner.expect("planned") as usize;
        let Some(pos) = self.jobs[k].asked.iter().position(|a| a.key == key) else { return };
        let (node, owner, ready_at) = {
            let a = &self.jobs[k].asked[pos];
            (a.node, a.owner, a.ready_at)
        };
        let view = self.jobs[k].view.clone().expect("planned");
        let hold_key = format!("{}/{}", self.jobs[k].id, self.jobs[k].job.stages[key.stage as usize].id);
        for o in out {
            match o {
                BookingOutput::BookHere => {
                    let booked = self.book_here(k, key, node, owner, ready_at, now);
                    let ok = booked.is_ok();
                    self.jobs[k].asked[pos].answer = Some(booked);
                    return self.booking_input(k, key, BookingInput::Answered { booked: ok }, now);
                }
                BookingOutput::Send { timeout_ms, attempt } => {
                    self.jobs[k].asked[pos].attempt = attempt;
                    let (job, stage) =
                        (self.jobs[k].id.clone(), self.jobs[k].job.stages[key.stage as usize].id.clone());
                    self.decide(p, now, Decision::Book { job, stage, owner: self.names[owner].clone(), attempt });
                    if attempt > 1 {
                        self.booking_retries += 1;
                    }
                    let st = &self.jobs[k].job.stages[key.stage as usize];
                    let run = StageRun {
                        job: self.jobs[k].id.clone(),
                        stage: st.id.clone(),
                        key,
                        node: view.nodes.name[node].clone(),
                        format: self.jobs[k].exec.as_ref().expect("running").stage(key.stage as usize).1.format,
                        compute: st.compute,
                        ready_at,
                    };
                    let bytes = wire::encode(&Message::RunStage(run)).len();
                    self.schedule(now + timeout_ms, JobEv::BookingSilent { job: k, key, attempt });
                    if let Some(at) = self.deliver(p, owner, now, bytes, false) {
                        self.schedule(at, JobEv::BookAt { job: k, key, node, owner, ready_at });
                    }
                }
                BookingOutput::Hold { until } => {
                    let c = self.jobs[k].job.stages[key.stage as usize].compute;
                    let name = &view.nodes.name[node];
                    self.inflight[p].release(name, &hold_key);
                    self.inflight[p].reserve(name, &hold_key, c.cpu, c.mem_gb, until);
                }
                BookingOutput::Unhold => {
                    self.inflight[p].release(&view.nodes.name[node], &hold_key);
                }
                BookingOutput::Unreachable => {
                    self.jobs[k].asked.remove(pos);
                    let (job, stage) =
                        (self.jobs[k].id.clone(), self.jobs[k].job.stages[key.stage as usize].id.clone());
                    self.decide(p, now, Decision::Unreachable { job, stage, owner: self.names[owner].clone() });
                    return self.exec_event(k, ExecEvent::Refused { key, reason: Refusal::Unreachable }, now);
                }
                BookingOutput::Answer { .. } => {
                    let a = self.jobs[k].asked.remove(pos);
                    return match a.answer {
                        Some(Ok((start, end))) => {
                            self.jobs[k].running.push((key, owner as u32));
                            self.exec_event(k, ExecEvent::Booked { key, start }, now);
                            if start > now + 1.0 {
                                // Booked for later: asked again at its start,
                                // as the agent's embedded fabric does.
                                self.schedule(start, JobEv::Confirm { job: k, key });
                            } else {
                                self.schedule(end.max(now), JobEv::RunEnds { job: k, key });
                            }
                        }
                        Some(Err(reason)) => self.exec_event(k, ExecEvent::Refused { key, reason }, now),
                        None => self.exec_event(k, ExecEvent::Refused { key, reason: Refusal::Unreachable }, now),
                    };
                }
            }
        }
    }

    /// The owner's replica books the run (the ground truth's run time).
    fn book_here(
        &mut self,
        k: usize,
        key: RunKey,
        node: usize,
        owner: usize,
        ready_at: f64,
        now: f64,
    ) -> Result<(f64, f64), Refusal> {
        let view = self.jobs[k].view.clone().expect("planned");
        let st = &self.jobs[k].job.stages[key.stage as usize];
        let format = self.jobs[k].exec.as_ref().expect("running").stage(key.stage as usize).1.format;
        let (_, run_ms) =
            truth::run(&view, node, st.compute.duration_ms, format, &self.jobs[k].id, &st.id, key.attempt);
        let (id, name) = (self.jobs[k].id.clone(), view.nodes.name[node].clone());
        self.replicas[owner]
            .book(
                &id,
                key,
                &name,
                (view.nodes.alloc_cpu[node], view.nodes.alloc_mem[node]),
                (st.compute.cpu, st.compute.mem_gb),
                ready_at,
                run_ms,
                now,
            )
            .map(|b| (b.start, b.end))
    }

    /// A booking request reaches the owner, which books the run and
    /// answers the planner (a repeated request gets the same booking).
    pub(super) fn book_at(&mut self, k: usize, key: RunKey, node: usize, owner: usize, ready_at: f64, now: f64) {
        let Some(attempt) = self.jobs[k].asked.iter().find(|a| a.key == key).map(|a| a.attempt) else { return };
        let booked = self.book_here(k, key, node, owner, ready_at, now);
        let p = self.jobs[k].planner.expect("planned") as usize;
        if let Some(at) = self.deliver(owner, p, now, 40, false) {
            self.schedule(at, JobEv::Answer { job: k, key, attempt, booked });
        }
    }

    /// The owner's answer reached the planner (any try's answer will do:
    /// they are the same booking).
    pub(super) fn answered(
        &mut self,
        k: usize,
        key: RunKey,
        _attempt: u32,
        booked: Result<(f64, f64), Refusal>,
        now: f64,
    ) {
        let Some(a) = self.jobs[k].asked.iter_mut().find(|a| a.key == key) else { return };
        if a.machine.is_done() {
            return;
        }
        let ok = booked.is_ok();
        a.answer = Some(booked);
        self.booking_input(k, key, BookingInput::Answered { booked: ok }, now);
    }

    /// A try's timeout passed: if it is still the latest try and
    /// unanswered, the owner was silent.
    pub(super) fn silent(&mut self, k: usize, key: RunKey, attempt: u32, now: f64) {
        let Some(a) = self.jobs[k].asked.iter().find(|a| a.key == key) else { return };
        if a.attempt != attempt || a.machine.is_done() {
            return;
        }
        let p = self.jobs[k].planner.expect("planned") as usize;
        let name = &self.names[a.owner];
        let (given_up, rtt_timeout_ms) = (self.replicas[p].given_up(name), self.replicas[p].timeout_for(name));
        self.booking_input(k, key, BookingInput::Silent { given_up, rtt_timeout_ms }, now);
    }

    /// Job `k`'s planner reserves a stage's window with its node's owner
    /// (`Ask::Reserve`: asked once; the answer is taken as it is given).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reserve(
        &mut self,
        k: usize,
        p: usize,
        view: &FabricView,
        key: RunKey,
        node: usize,
        ready_at: f64,
        duration_ms: f64,
        now: f64,
    ) {
        let owner = self.owner_of(view, node, p);
        let name = self.names[owner].clone();
        let (given_up, rtt) = (self.replicas[p].given_up(&name), self.replicas[p].timeout_for(&name));
        let mut out = Vec::new();
        let mut machine = Booking::new(&self.lifecycle, Ask::Reserve, owner == p, given_up, rtt, now, &mut out);
        let c = self.jobs[k].job.stages[key.stage as usize].compute;
        let node_name = view.nodes.name[node].clone();
        let id = self.jobs[k].id.clone();
        let mut start = Err(Refusal::Unreachable);
        while let Some(o) = (!out.is_empty()).then(|| out.remove(0)) {
            let reached = match o {
                BookingOutput::BookHere => true,
                BookingOutput::Send { timeout_ms, .. } => {
                    let back =
                        self.deliver(p, owner, now, 96, false).and_then(|at| self.deliver(owner, p, at, 40, false));
                    back.is_some_and(|b| b <= now + timeout_ms)
                }
                BookingOutput::Unreachable | BookingOutput::Answer { .. } => break,
                BookingOutput::Hold { .. } | BookingOutput::Unhold => continue,
            };
            let input = if reached {
                start = self.replicas[owner]
                    .reserve(
                        &id,
                        key,
                        &node_name,
                        (view.nodes.alloc_cpu[node], view.nodes.alloc_mem[node]),
                        (c.cpu, c.mem_gb),
                        ready_at,
                        duration_ms,
                        now,
                    )
                    .map(|b| b.start);
                BookingInput::Answered { booked: start.is_ok() }
            } else {
                BookingInput::Silent { given_up: self.replicas[p].given_up(&name), rtt_timeout_ms: rtt }
            };
            machine.handle(input, now, &mut out);
        }
        self.exec_event(k, ExecEvent::Reserved { key, start }, now);
    }

    /// A run booked for later reaches its booked start: its owner says
    /// where it stands now (the request itself is not simulated: the
    /// owner's answer is read at once). Pushed, it is asked again at its
    /// new start; otherwise it has started and ends when booked.
    pub(super) fn confirm(&mut self, k: usize, key: RunKey, now: f64) {
        let Some(owner) = self.jobs[k].running.iter().find(|(x, _)| *x == key).map(|(_, o)| *o as usize) else {
            return; // failed over meanwhile
        };
        let id = self.jobs[k].id.clone();
        let Some(b) = self.replicas[owner].confirm(&id, key, now) else {
            return self.schedule(now, JobEv::RunEnds { job: k, key });
        };
        if b.start > now + 1e-6 {
            self.exec_event(k, ExecEvent::Booked { key, start: b.start }, now);
            return self.schedule(b.start, JobEv::Confirm { job: k, key });
        }
        self.schedule(b.end.max(now), JobEv::RunEnds { job: k, key });
    }
}
