//! Where a submitted job is planned: routed to the agent nearest its
//! origin, forwarded there, and planned here when nobody nearer answers.
//! Its decisions do not depend on the time (the driver times the
//! forward); `handle` takes it like the other machines.

use super::Config;

/// A route's answer: the agent nearest the origin among those not tried.
#[derive(Clone, Debug, PartialEq)]
pub struct Hop {
    /// The agent.
    pub agent: String,
    /// Its failure detector's RTT-derived timeout (ms).
    pub rtt_timeout_ms: f64,
}

/// What the driver tells a [`Forwarding`].
#[derive(Clone, Debug, PartialEq)]
pub enum ForwardInput {
    /// The answer to [`ForwardOutput::Route`]: the nearest agent believed
    /// alive and not skipped (this agent included), if any.
    Routed(Option<Hop>),
    /// The agent forwarded to answered: it planned the job or refused it
    /// itself. Either is the submission's answer.
    Answered,
    /// No answer within the timeout, or the request failed.
    Failed {
        /// Why (for the job's notes).
        why: String,
    },
}

/// What a [`Forwarding`] asks of its driver.
#[derive(Clone, Debug, PartialEq)]
pub enum ForwardOutput {
    /// Route the job, skipping these agents; answer with
    /// [`ForwardInput::Routed`].
    Route {
        /// Agents tried already.
        skip: Vec<String>,
    },
    /// Send the job to `to`; answer with [`ForwardInput::Answered`], or
    /// [`ForwardInput::Failed`] when no answer came within `timeout_ms`.
    Forward {
        /// The planner-to-be.
        to: String,
        /// How long to wait for its answer (ms).
        timeout_ms: f64,
    },
    /// Plan the job here, with these notes on its record.
    PlanHere {
        /// What happened on the way (unreachable agents, who forwarded).
        notes: Vec<String>,
    },
    /// A forward to `peer` went unanswered but may still be planned there:
    /// settle with it later ([`super::ReconcileInput::LateForward`]),
    /// unless the job is a dry run.
    LateForward {
        /// The silent agent.
        peer: String,
        /// Who planned the job instead: `None`, this agent; else the agent
        /// a later forward went to (the silent one is told, and settles
        /// with it).
        planned_by: Option<String>,
    },
    /// The job's answer came from `to`: nothing left to do here.
    Forwarded {
        /// The agent that answered.
        to: String,
    },
}

/// One submission's way to its planner.
#[derive(Clone, Debug)]
pub struct Forwarding {
    cfg: Config,
    me: String,
    tried: Vec<String>,
    notes: Vec<String>,
    waiting: Option<String>,
    done: bool,
}

impl Forwarding {
    /// A job submitted to agent `me`; `forwarded_from`: the agent that
    /// routed it here, if one did (then it is planned here, not routed
    /// again).
    pub fn new(cfg: &Config, me: &str, forwarded_from: Option<&str>, out: &mut Vec<ForwardOutput>) -> Self {
        let mut f = Forwarding {
            cfg: cfg.clone(),
            me: me.to_string(),
            tried: Vec::new(),
            notes: Vec::new(),
            waiting: None,
            done: false,
        };
        match forwarded_from {
            Some(from) => {
                f.done = true;
                out.push(ForwardOutput::PlanHere { notes: vec![format!("forwarded by {from}")] });
            }
            None => out.push(ForwardOutput::Route { skip: Vec::new() }),
        }
        f
    }

    /// Whether the submission has its answer or is planned here.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The agent a forward waits on, if one does.
    pub fn waiting_on(&self) -> Option<&str> {
        self.waiting.as_deref()
    }

    /// Advances on `input` at `now` (ms).
    pub fn handle(&mut self, input: ForwardInput, _now: f64, out: &mut Vec<ForwardOutput>) {
        if self.done {
            return;
        }
        match input {
            ForwardInput::Routed(Some(hop)) if hop.agent != self.me && self.waiting.is_none() => {
                let timeout_ms = self.cfg.forward_timeout(hop.rtt_timeout_ms);
                self.waiting = Some(hop.agent.clone());
                out.push(ForwardOutput::Forward { to: hop.agent, timeout_ms });
            }
            ForwardInput::Routed(_) => {
                if self.waiting.is_some() {
                    return; // a stale answer: a forward is out
                }
                // Nobody nearer answers (or this agent is the nearest).
                self.done = true;
                for peer in &self.tried {
                    out.push(ForwardOutput::LateForward { peer: peer.clone(), planned_by: None });
                }
                out.push(ForwardOutput::PlanHere { notes: std::mem::take(&mut self.notes) });
            }
            ForwardInput::Answered => {
                let Some(to) = self.waiting.take() else { return };
                self.done = true;
                // Planned by `to`; a silent one may plan it too.
                for peer in &self.tried {
                    out.push(ForwardOutput::LateForward { peer: peer.clone(), planned_by: Some(to.clone()) });
                }
                out.push(ForwardOutput::Forwarded { to });
            }
            ForwardInput::Failed { why } => {
                let Some(to) = self.waiting.take() else { return };
                self.notes.push(format!("agent {to} nearest the origin is unreachable ({why}); planned here"));
                self.tried.push(to);
                out.push(ForwardOutput::Route { skip: self.tried.clone() });
            }
        }
    }
}
