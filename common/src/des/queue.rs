//! The event queue of the simulators.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A min-heap of timed events; equal times pop in insertion order, which
/// makes runs deterministic.
#[derive(Clone, Debug)]
pub struct EventQueue<T: Copy> {
    heap: BinaryHeap<Entry<T>>,
    seq: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry<T: Copy> {
    // Non-negative f64 bit patterns order like the numbers.
    key: u64,
    seq: u64,
    payload: T,
}

impl<T: Copy> PartialEq for Entry<T> {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key && self.seq == o.seq
    }
}
impl<T: Copy> Eq for Entry<T> {}
impl<T: Copy> PartialOrd for Entry<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T: Copy> Ord for Entry<T> {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap.
        (o.key, o.seq).cmp(&(self.key, self.seq))
    }
}

impl<T: Copy> Default for EventQueue<T> {
    fn default() -> Self {
        EventQueue { heap: BinaryHeap::new(), seq: 0 }
    }
}

impl<T: Copy> EventQueue<T> {
    /// An empty queue with room for `n` events.
    pub fn with_capacity(n: usize) -> Self {
        EventQueue { heap: BinaryHeap::with_capacity(n), seq: 0 }
    }

    /// Schedules `payload` at `time` (ms, ≥ 0).
    #[inline]
    pub fn push(&mut self, time: f64, payload: T) {
        debug_assert!(time >= 0.0, "event time {time} is negative");
        self.seq += 1;
        self.heap.push(Entry { key: time.max(0.0).to_bits(), seq: self.seq, payload });
    }

    /// The earliest event.
    #[inline]
    pub fn pop(&mut self) -> Option<(f64, T)> {
        self.heap.pop().map(|e| (f64::from_bits(e.key), e.payload))
    }

    /// Time of the earliest event.
    pub fn peek_time(&self) -> Option<f64> {
        self.heap.peek().map(|e| f64::from_bits(e.key))
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}
