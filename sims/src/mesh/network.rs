//! The simulated network: messages in flight (parked, shared between a
//! gossip frame's copies), delivery with per-link latency, loss and
//! partitions, and gossip fan-out to mesh peers.

use std::rc::Rc;

use rand::RngExt;
use twinmesh_common::wire::{self, Message};

use super::{Ev, Mesh};

impl Mesh {
    pub(super) fn park(&mut self, msg: Rc<Message>, bytes: usize) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some((msg, bytes));
                i
            }
            None => {
                self.slots.push(Some((msg, bytes)));
                (self.slots.len() - 1) as u32
            }
        }
    }
    pub(super) fn take(&mut self, slot: u32) -> (Rc<Message>, usize) {
        self.free.push(slot);
        self.slots[slot as usize].take().expect("parked message")
    }
    /// Whether a message from `a` to `b` sent at `now` gets through, and
    /// when it arrives.
    pub(super) fn deliver(&mut self, a: usize, b: usize, now: f64, bytes: usize, sync: bool) -> Option<f64> {
        self.count(bytes, sync);
        self.gets_through(a, b, now).then(|| now + self.latency.latency(self.cluster[a], self.cluster[b]).max(0.1))
    }
    /// Counts a message sent.
    pub(super) fn count(&mut self, bytes: usize, sync: bool) {
        self.msgs += 1;
        self.bytes += bytes as u64;
        if sync {
            self.sync_bytes += bytes as u64;
        }
    }
    /// Whether a message from `a` to `b` sent at `now` is neither cut nor
    /// lost.
    pub(super) fn gets_through(&mut self, a: usize, b: usize, now: f64) -> bool {
        if self.partition.is_some_and(|p| p.splits(a, b, now)) {
            return false;
        }
        !(self.args.loss > 0.0 && self.net_rng.random::<f64>() < self.args.loss)
    }
    pub(super) fn fan_out(&mut self, i: usize, msg: Message, now: f64, except: Option<usize>) {
        let bytes = frame_len(&msg);
        self.fan_out_shared(i, Rc::new(msg), bytes, now, except);
    }
    /// Gossips a frame to `i`'s mesh peers (one shared copy in flight).
    pub(super) fn fan_out_shared(&mut self, i: usize, msg: Rc<Message>, bytes: usize, now: f64, except: Option<usize>) {
        for k in 0..self.neighbours[i].len() {
            let j = self.neighbours[i][k];
            if Some(j as usize) == except {
                continue;
            }
            if let Some(at) = self.deliver(i, j as usize, now, bytes, false) {
                let slot = self.park(msg.clone(), bytes);
                self.queue.push(at, Ev::Gossip { to: j, from: i as u32, slot });
            }
        }
    }
}

/// The length of `msg`'s frame ([`wire::encode`]) — on the stack for the
/// small ones (probes, summaries), which are most.
pub(super) fn frame_len(msg: &Message) -> usize {
    let mut buf = [0u8; 256];
    match postcard::to_slice(msg, &mut buf) {
        Ok(body) => body.len() + 1,
        Err(_) => wire::encode(msg).len(),
    }
}
