//! The replica side of the mesh protocol, sans-IO: what a twin does with
//! each message it receives and what it answers. The agent runs this over
//! libp2p; `sims/` runs the same functions over a simulated network.

use crate::twin::{Delta, Twin};
use crate::wire::Message;

/// What handling a message did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Handled {
    /// Entries that changed the replica.
    pub changed: usize,
    /// Exactly those entries (what to persist).
    pub changes: Delta,
    /// What to send back to the sender, if anything.
    pub reply: Option<Message>,
}

/// Applies `delta`, keeping the entries that changed the replica.
fn apply(twin: &mut Twin, delta: Delta) -> Delta {
    let mut changes = Delta::default();
    for r in delta.records {
        if twin.accepts(&r) {
            twin.merge_record(r.clone());
            changes.records.push(r);
        }
    }
    for f in delta.failures {
        if twin.add_failure(f.clone()) {
            changes.failures.push(f);
        }
    }
    changes
}

fn changed(changes: Delta, reply: Option<Message>) -> Handled {
    Handled { changed: changes.records.len() + changes.failures.len(), changes, reply }
}

/// Applies a twin message to `twin` and returns the reply, if any.
/// Job messages are not the twin's business: they return `changed: 0,
/// reply: None` and the caller handles them.
pub fn handle(twin: &mut Twin, msg: Message) -> Handled {
    match msg {
        Message::Record(r) => changed(apply(twin, Delta { records: vec![r], failures: vec![] }), None),
        Message::Failure(f) => changed(apply(twin, Delta { records: vec![], failures: vec![f] }), None),
        Message::SyncRequest(theirs) => Handled {
            reply: Some(Message::SyncResponse {
                delta: twin.delta_for(&theirs),
                digest: twin.digest_scoped(theirs.scope),
            }),
            ..Handled::default()
        },
        Message::SyncResponse { delta, digest } => {
            let changes = apply(twin, delta);
            let back = twin.delta_for(&digest);
            changed(changes, (!back.is_empty()).then_some(Message::SyncPush(back)))
        }
        Message::SyncPush(delta) => changed(apply(twin, delta), None),
        Message::SyncCheck(summary) => Handled {
            reply: Some(if summary == twin.summary() {
                Message::InSync
            } else {
                Message::OutOfSync(twin.bucket_summaries())
            }),
            ..Handled::default()
        },
        Message::Forward(_)
        | Message::ForwardResult { .. }
        | Message::RunStage(_)
        | Message::ReserveStage { .. }
        | Message::StageScheduled(_)
        | Message::ReleaseStage { .. }
        | Message::Ping(_)
        | Message::Pong(_)
        | Message::InSync
        | Message::OutOfSync(_)
        | Message::Ack
        | Message::Leave(_)
        | Message::Planned(_)
        | Message::PlannedToo(_) => Handled::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::reference;

    #[test]
    fn one_sync_exchange_makes_two_replicas_equal() {
        // Rule: request → response → push converges two replicas in one
        // round trip and a half, whatever each held.
        let nodes = reference().nodes;
        let mut a = Twin::new();
        let mut b = Twin::new();
        for n in &nodes[..10] {
            a.update_own(n.clone());
        }
        for n in &nodes[5..20] {
            b.update_own(n.clone());
            b.update_own(n.clone());
        }
        let req = Message::SyncRequest(a.digest());
        let resp = handle(&mut b, req).reply.expect("a response");
        let h = handle(&mut a, resp);
        assert_eq!(h.changed, 15);
        let push = h.reply.expect("a has records b lacks");
        assert_eq!(handle(&mut b, push).changed, 5);
        assert_eq!(a, b);
        // Now in sync: eight bytes say so; the response carries nothing and
        // asks for no push.
        assert_eq!(handle(&mut b, Message::SyncCheck(a.summary())).reply, Some(Message::InSync));
        a.update_own(nodes[0].clone());
        let Some(Message::OutOfSync(theirs)) = handle(&mut b, Message::SyncCheck(a.summary())).reply else {
            panic!("out of sync")
        };
        let mask = a.differing_buckets(&theirs);
        assert_eq!(mask.count_ones(), 1, "one record changed: one bucket differs");
        let resp = handle(&mut b, Message::SyncRequest(a.digest_scoped(Some(mask)))).reply.unwrap();
        let push = handle(&mut a, resp).reply.unwrap();
        handle(&mut b, push);
        assert_eq!(a.summary(), b.summary());
        let resp = handle(&mut b, Message::SyncRequest(a.digest())).reply.unwrap();
        assert!(handle(&mut a, resp).reply.is_none());
    }
}
