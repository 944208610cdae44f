//! The replica side of the mesh protocol, sans-IO: what a twin does with
//! each message it receives and what it answers. The agent runs this over
//! libp2p; `sims/` runs the same functions over a simulated network.

use crate::twin::Twin;
use crate::wire::Message;

/// What handling a message did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Handled {
    /// Entries that changed the replica.
    pub changed: usize,
    /// What to send back to the sender, if anything.
    pub reply: Option<Message>,
}

/// Applies a twin message to `twin` and returns the reply, if any.
/// Job messages are not the twin's business: they return `changed: 0,
/// reply: None` and the caller handles them.
pub fn handle(twin: &mut Twin, msg: Message) -> Handled {
    match msg {
        Message::Record(r) => Handled { changed: usize::from(twin.merge_record(r)), reply: None },
        Message::Failure(f) => Handled { changed: usize::from(twin.add_failure(f)), reply: None },
        Message::SyncRequest(theirs) => Handled {
            changed: 0,
            reply: Some(Message::SyncResponse { delta: twin.delta_for(&theirs), digest: twin.digest() }),
        },
        Message::SyncResponse { delta, digest } => {
            let changed = twin.apply(delta);
            let back = twin.delta_for(&digest);
            Handled { changed, reply: (!back.is_empty()).then_some(Message::SyncPush(back)) }
        }
        Message::SyncPush(delta) => Handled { changed: twin.apply(delta), reply: None },
        Message::Forward(_)
        | Message::ForwardResult { .. }
        | Message::RunStage(_)
        | Message::StageScheduled(_)
        | Message::Ack => Handled::default(),
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
        // Now in sync: the response carries nothing and asks for no push.
        let resp = handle(&mut b, Message::SyncRequest(a.digest())).reply.unwrap();
        assert!(handle(&mut a, resp).reply.is_none());
    }
}
