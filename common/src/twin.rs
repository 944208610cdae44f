//! The replicated digital twin: one record per node, owned by that node's
//! agent, and a grow-only set of failure events.
//!
//! * The owner bumps a record's version on every change; merge keeps the
//!   higher version (ties broken by content, so even a buggy owner cannot
//!   make replicas disagree). Merge is therefore commutative, associative
//!   and idempotent, and replicas converge in whatever order gossip
//!   arrives.
//! * Failure events are identified by (reporter, seq); the set only grows.
//! * A [`Digest`] summarises a replica in a few bytes per owner; comparing
//!   a peer's digest with ours gives the [`Delta`] the peer lacks — the
//!   heart of anti-entropy.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::failures::FailureEvent;
use crate::model::Node;

/// A node's record with its version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Bumped by the owner on every change.
    pub version: u64,
    /// The node (its name is the owner).
    pub node: Node,
}

impl NodeRecord {
    /// A stable 64-bit fingerprint of the record's content (FNV-1a over
    /// its postcard encoding), the tie-break between equal versions.
    pub fn fingerprint(&self) -> u64 {
        let bytes = postcard::to_allocvec(&self.node).unwrap_or_default();
        bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
    }
}

/// A record's place in the merge order: higher version wins; between
/// equal versions (which a correct owner never produces) the higher
/// fingerprint wins, so replicas still agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    /// Owner's version.
    pub version: u64,
    /// Content fingerprint.
    pub fingerprint: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Entry {
    stamp: Stamp,
    /// Shared: replicas in one process (the simulator) and snapshots hold
    /// the same record, not copies.
    record: Arc<NodeRecord>,
}

impl Entry {
    fn new(record: NodeRecord) -> Self {
        Entry { stamp: Stamp { version: record.version, fingerprint: record.fingerprint() }, record: Arc::new(record) }
    }
}

/// Identifier of a failure event: who reported it and its sequence number
/// at that reporter (1, 2, 3, …).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FailureId {
    /// Reporting agent's node name.
    pub reporter: String,
    /// Sequence at the reporter.
    pub seq: u64,
}

/// Summary of a replica: node versions and, per reporter, the length of
/// the gap-free prefix of failure events held.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    /// Owner → stamp of the record held.
    pub nodes: BTreeMap<String, Stamp>,
    /// Reporter → highest seq such that 1..=seq are all held.
    pub failures: BTreeMap<String, u64>,
    /// The buckets (bit i = bucket i, see [`bucket_of`]) this digest
    /// covers; `None` = the whole replica. A scoped digest says nothing of
    /// entries outside its buckets.
    pub scope: Option<u64>,
}

/// Buckets the replica is split into for anti-entropy.
pub const BUCKETS: usize = 64;

/// The bucket of a record (by node name) or failure (by reporter).
pub fn bucket_of(name: &str) -> usize {
    (mix(str_hash(name)) % BUCKETS as u64) as usize
}

fn in_scope(scope: Option<u64>, name: &str) -> bool {
    scope.is_none_or(|m| m & (1u64 << bucket_of(name)) != 0)
}

/// What one replica sends another so it catches up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// Records newer than the peer's.
    pub records: Vec<NodeRecord>,
    /// Failure events past the peer's prefix.
    pub failures: Vec<FailureEvent>,
}

impl Delta {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.failures.is_empty()
    }
}

/// A replica of the twin.
#[derive(Clone, Debug, PartialEq)]
pub struct Twin {
    /// Records by name, one map per bucket ([`bucket_of`]): a scoped
    /// exchange walks only the buckets that differ, and look-ups search a
    /// map a sixty-fourth of the size.
    nodes: Vec<BTreeMap<String, Entry>>,
    /// Records held.
    count: usize,
    failures: BTreeMap<FailureId, FailureEvent>,
    /// XOR of a hash of every (name, stamp) and every failure id, kept up
    /// to date on each change: equal replicas have equal summaries, so two
    /// agents can tell they are in sync from eight bytes.
    summary: u64,
    /// The same per bucket: where two replicas differ.
    buckets: [u64; BUCKETS],
}

impl Default for Twin {
    fn default() -> Self {
        Twin {
            nodes: (0..BUCKETS).map(|_| BTreeMap::new()).collect(),
            count: 0,
            failures: BTreeMap::new(),
            summary: 0,
            buckets: [0; BUCKETS],
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn str_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn entry_hash(name: &str, st: &Stamp) -> u64 {
    mix(str_hash(name) ^ mix(st.version ^ mix(st.fingerprint)))
}

fn failure_hash(id: &FailureId) -> u64 {
    mix(str_hash(&id.reporter) ^ mix(id.seq ^ 0xfa11))
}

impl Twin {
    /// An empty replica.
    pub fn new() -> Self {
        Twin::default()
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        self.nodes[bucket_of(name)].get(name)
    }

    fn put(&mut self, e: Entry) {
        let name = e.record.node.name.clone();
        let b = bucket_of(&name);
        let h = entry_hash(&name, &e.stamp);
        self.summary ^= h;
        self.buckets[b] ^= h;
        match self.nodes[b].insert(name, e) {
            Some(old) => {
                let h = entry_hash(&old.record.node.name, &old.stamp);
                self.summary ^= h;
                self.buckets[b] ^= h;
            }
            None => self.count += 1,
        }
    }

    /// The buckets in `scope` (all when `None`), with their records.
    fn in_scope(&self, scope: Option<u64>) -> impl Iterator<Item = (&String, &Entry)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(b, _)| scope.is_none_or(|m| m & (1u64 << b) != 0))
            .flat_map(|(_, m)| m.iter())
    }

    /// The summary of each bucket.
    pub fn bucket_summaries(&self) -> Vec<u64> {
        self.buckets.to_vec()
    }

    /// The buckets where this replica's summaries differ from `theirs`
    /// (all of them if `theirs` is not a list of [`BUCKETS`] summaries).
    pub fn differing_buckets(&self, theirs: &[u64]) -> u64 {
        if theirs.len() != BUCKETS {
            return u64::MAX;
        }
        self.buckets.iter().zip(theirs).enumerate().filter(|(_, (a, b))| a != b).fold(0, |m, (i, _)| m | (1 << i))
    }

    /// Eight bytes that differ between replicas that differ (with
    /// overwhelming probability) and agree between equal ones.
    pub fn summary(&self) -> u64 {
        self.summary
    }

    /// The owner's update: stores `node` with the next version and returns
    /// the record to gossip.
    pub fn update_own(&mut self, node: Node) -> NodeRecord {
        let version = self.entry(&node.name).map_or(1, |e| e.record.version + 1);
        let rec = NodeRecord { version, node };
        self.put(Entry::new(rec.clone()));
        rec
    }

    /// Merges one record; returns whether it changed this replica.
    pub fn merge_record(&mut self, rec: NodeRecord) -> bool {
        if !self.accepts(&rec) {
            return false;
        }
        self.put(Entry::new(rec));
        true
    }

    /// Whether [`Twin::merge_record`] would take `rec` (a newer version,
    /// or the same version with a higher fingerprint). Gossip delivers
    /// each update several times; the copies are turned away here without
    /// cloning or fingerprinting them.
    pub fn accepts(&self, rec: &NodeRecord) -> bool {
        match self.entry(&rec.node.name) {
            None => true,
            Some(cur) if rec.version != cur.stamp.version => rec.version > cur.stamp.version,
            Some(cur) if *cur.record == *rec => false,
            Some(cur) => rec.fingerprint() > cur.stamp.fingerprint,
        }
    }

    /// Adds a failure event; returns whether it was new.
    pub fn add_failure(&mut self, ev: FailureEvent) -> bool {
        if self.failures.contains_key(&ev.id) {
            return false;
        }
        let h = failure_hash(&ev.id);
        self.summary ^= h;
        self.buckets[bucket_of(&ev.id.reporter)] ^= h;
        self.failures.insert(ev.id.clone(), ev);
        true
    }

    /// Merges a delta; returns how many entries changed this replica.
    pub fn apply(&mut self, delta: Delta) -> usize {
        let mut changed = 0;
        for r in delta.records {
            changed += usize::from(self.merge_record(r));
        }
        for f in delta.failures {
            changed += usize::from(self.add_failure(f));
        }
        changed
    }

    /// Merges a whole replica (state-based CRDT join).
    pub fn merge(&mut self, other: &Twin) -> usize {
        self.apply(Delta {
            records: other.records().cloned().collect(),
            failures: other.failures.values().cloned().collect(),
        })
    }

    /// This replica's digest.
    pub fn digest(&self) -> Digest {
        self.digest_scoped(None)
    }

    /// The digest of the buckets in `scope` (all when `None`).
    pub fn digest_scoped(&self, scope: Option<u64>) -> Digest {
        let nodes = self.in_scope(scope).map(|(k, e)| (k.clone(), e.stamp)).collect();
        let mut failures: BTreeMap<String, u64> = BTreeMap::new();
        // BTreeMap order: by reporter, then seq ascending.
        let mut cur: Option<(&str, u64, bool)> = None;
        for id in self.failures.keys().filter(|id| in_scope(scope, &id.reporter)) {
            match &mut cur {
                Some((rep, last, gap)) if *rep == id.reporter => {
                    if !*gap && id.seq == *last + 1 {
                        *last = id.seq;
                    } else {
                        *gap = true;
                    }
                }
                _ => {
                    if let Some((rep, last, _)) = cur {
                        failures.insert(rep.to_string(), last);
                    }
                    cur = Some((&id.reporter, if id.seq == 1 { 1 } else { 0 }, id.seq != 1));
                }
            }
        }
        if let Some((rep, last, _)) = cur {
            failures.insert(rep.to_string(), last);
        }
        Digest { nodes, failures, scope }
    }

    /// What a peer with digest `theirs` lacks from this replica.
    pub fn delta_for(&self, theirs: &Digest) -> Delta {
        let scope = theirs.scope;
        let records = self
            .in_scope(scope)
            .filter(|(k, e)| theirs.nodes.get(*k).is_none_or(|s| e.stamp > *s))
            .map(|(_, e)| NodeRecord::clone(&e.record))
            .collect();
        let failures = self
            .failures
            .values()
            .filter(|f| in_scope(scope, &f.id.reporter))
            .filter(|f| theirs.failures.get(&f.id.reporter).is_none_or(|s| f.id.seq > *s))
            .cloned()
            .collect();
        Delta { records, failures }
    }

    /// A node's record.
    pub fn record(&self, name: &str) -> Option<&NodeRecord> {
        self.entry(name).map(|e| &*e.record)
    }

    /// All records (grouped by bucket; by name within one).
    pub fn records(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.iter().flat_map(|m| m.values()).map(|e| &*e.record)
    }

    /// All nodes (grouped by bucket; by name within one).
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().flat_map(|m| m.values()).map(|e| &e.record.node)
    }

    /// Whether the failure event `id` is held.
    pub fn has_failure(&self, id: &FailureId) -> bool {
        self.failures.contains_key(id)
    }

    /// All failure events, by id.
    pub fn failures(&self) -> impl Iterator<Item = &FailureEvent> {
        self.failures.values()
    }

    /// Number of node records.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failures::FailureKind;
    use proptest::prelude::*;

    fn node(name: &str, cpu_pct: f64) -> Node {
        let mut n = crate::fabric::reference().nodes[0].clone();
        n.name = name.to_string();
        n.telemetry.cpu_pct = cpu_pct;
        n
    }

    fn failure(reporter: &str, seq: u64) -> FailureEvent {
        FailureEvent {
            id: FailureId { reporter: reporter.into(), seq },
            node: format!("n{}", seq % 3),
            kind: FailureKind::NodeDown,
            at_ms: seq * 10,
            duration_ms: 1000,
        }
    }

    #[test]
    fn owner_versions_and_higher_wins() {
        let mut a = Twin::new();
        let r1 = a.update_own(node("x", 10.0));
        let r2 = a.update_own(node("x", 20.0));
        assert_eq!((r1.version, r2.version), (1, 2));
        let mut b = Twin::new();
        assert!(b.merge_record(r2.clone()));
        assert_eq!(b.digest().nodes["x"].version, 2);
        assert!(!b.merge_record(r1), "an older record must not replace a newer one");
        assert_eq!(b.record("x").unwrap().node.telemetry.cpu_pct, 20.0);
        assert!(!b.merge_record(r2), "merging the same record twice changes nothing");
    }

    #[test]
    fn fingerprint_tells_contents_apart() {
        let a = NodeRecord { version: 1, node: node("x", 1.0) };
        let b = NodeRecord { version: 1, node: node("x", 2.0) };
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        assert!(postcard::to_allocvec(&a.node).is_ok(), "node records must encode with postcard");
    }

    #[test]
    fn digest_tracks_gap_free_failure_prefixes() {
        let mut t = Twin::new();
        for s in [1, 2, 4] {
            t.add_failure(failure("a", s));
        }
        t.add_failure(failure("b", 2));
        let d = t.digest();
        assert_eq!(d.failures["a"], 2);
        assert_eq!(d.failures["b"], 0);
        let mut peer = Twin::new();
        peer.add_failure(failure("a", 1));
        let delta = t.delta_for(&peer.digest());
        let seqs: Vec<(String, u64)> = delta.failures.iter().map(|f| (f.id.reporter.clone(), f.id.seq)).collect();
        assert_eq!(seqs, vec![("a".into(), 2), ("a".into(), 4), ("b".into(), 2)]);
    }

    #[test]
    fn anti_entropy_round_makes_replicas_equal() {
        let mut a = Twin::new();
        let mut b = Twin::new();
        a.update_own(node("a", 1.0));
        b.update_own(node("b", 2.0));
        b.update_own(node("b", 3.0));
        a.add_failure(failure("a", 1));
        let to_b = a.delta_for(&b.digest());
        let to_a = b.delta_for(&a.digest());
        assert_eq!(to_b.records.len(), 1);
        assert_eq!(to_a.records.len(), 1);
        b.apply(to_b);
        a.apply(to_a);
        assert_eq!(a, b);
        assert!(a.delta_for(&b.digest()).is_empty());
    }

    fn arb_record() -> impl Strategy<Value = NodeRecord> {
        (0usize..4, 1u64..5, 0u8..3).prop_map(|(owner, version, load)| NodeRecord {
            version,
            node: node(&format!("n{owner}"), f64::from(load)),
        })
    }

    fn arb_twin() -> impl Strategy<Value = Twin> {
        (proptest::collection::vec(arb_record(), 0..6), proptest::collection::vec((0usize..3, 1u64..5), 0..6)).prop_map(
            |(recs, fails)| {
                let mut t = Twin::new();
                for r in recs {
                    t.merge_record(r);
                }
                for (rep, seq) in fails {
                    t.add_failure(failure(&format!("r{rep}"), seq));
                }
                t
            },
        )
    }

    fn merged(a: &Twin, b: &Twin) -> Twin {
        let mut x = a.clone();
        x.merge(b);
        x
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in arb_twin(), b in arb_twin()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        }

        // Rule: the eight-byte summary agrees exactly when replicas do:
        // equal after merges in either order, and equal to a replica built
        // from scratch with the same content; different when one lacks an
        // entry the other has.
        #[test]
        fn summaries_agree_exactly_when_replicas_do(a in arb_twin(), b in arb_twin()) {
            let (ab, ba) = (merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(ab.summary(), ba.summary());
            let mut fresh = Twin::new();
            fresh.merge(&ab);
            prop_assert_eq!(fresh.summary(), ab.summary());
            if ab != a {
                prop_assert_ne!(ab.summary(), a.summary());
            }
        }

        // Rule: an exchange limited to the buckets whose summaries differ
        // brings a replica exactly as far as a full one.
        #[test]
        fn scoped_exchange_equals_full_merge(a in arb_twin(), b in arb_twin()) {
            let mask = a.differing_buckets(&b.bucket_summaries());
            let mut via_scope = b.clone();
            via_scope.apply(a.delta_for(&b.digest_scoped(Some(mask))));
            let mut back = a.clone();
            back.apply(via_scope.delta_for(&a.digest_scoped(Some(mask))));
            prop_assert_eq!(&via_scope, &merged(&b, &a));
            prop_assert_eq!(back, merged(&a, &b));
        }

        // Rule: the cheap check that turns gossip's copies away says
        // exactly what merging would do, and the count follows.
        #[test]
        fn accepts_is_what_merge_does(t in arb_twin(), r in arb_record()) {
            let mut m = t.clone();
            let said = t.accepts(&r);
            prop_assert_eq!(said, m.merge_record(r.clone()));
            prop_assert!(!m.accepts(&r), "a record just merged is not taken twice");
            prop_assert_eq!(m.len(), m.records().count());
        }

        #[test]
        fn merge_is_associative(a in arb_twin(), b in arb_twin(), c in arb_twin()) {
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        }

        #[test]
        fn merge_is_idempotent(a in arb_twin(), b in arb_twin()) {
            let ab = merged(&a, &b);
            prop_assert_eq!(merged(&ab, &b), ab.clone());
            prop_assert_eq!(merged(&a, &a), a);
        }

        #[test]
        fn delta_for_digest_equals_full_merge(a in arb_twin(), b in arb_twin()) {
            let mut via_delta = b.clone();
            via_delta.apply(a.delta_for(&b.digest()));
            prop_assert_eq!(via_delta, merged(&b, &a));
        }
    }
}
