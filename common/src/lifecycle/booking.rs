//! One request to a node's owner — to book a run, or to reserve its
//! window — asked again while the owner is silent, and what the planner's
//! view counts of it meanwhile.

use super::Config;

/// What the driver tells a [`Booking`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BookingInput {
    /// The owner answered: booked (or reserved) or refused.
    Answered {
        /// Whether it booked the run.
        booked: bool,
    },
    /// No answer within the last request's timeout. `given_up`: the
    /// failure detector holds the owner dead now; `rtt_timeout_ms`: its
    /// RTT-derived timeout now.
    Silent {
        /// The owner is held dead.
        given_up: bool,
        /// Its RTT-derived timeout (ms).
        rtt_timeout_ms: f64,
    },
}

/// What a [`Booking`] asks of its driver.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BookingOutput {
    /// Book on this agent's own node, now (no request).
    BookHere,
    /// Send the request to the owner; answer with
    /// [`BookingInput::Answered`], or [`BookingInput::Silent`] when no
    /// answer came within `timeout_ms`.
    Send {
        /// How long to wait (ms).
        timeout_ms: f64,
        /// Which try this is (1-based).
        attempt: u32,
    },
    /// Count the run in the planner's view until `until` (ms), in place of
    /// what counted before.
    Hold {
        /// Until when.
        until: f64,
    },
    /// Stop counting it: the owner's own record shows it, or it was
    /// refused.
    Unhold,
    /// The owner cannot be reached: refuse the run as unreachable (the
    /// execution fails it over).
    Unreachable,
    /// The owner's answer is the result.
    Answer {
        /// Whether it booked the run.
        booked: bool,
    },
}

/// What is asked of the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Book a run whose inputs are ready (held in the planner's view
    /// while on its way; [`Config::booking_tries`] tries).
    Book,
    /// Reserve a stage's predicted window ([`Config::reserve_tries`]
    /// tries; nothing held: a lost reservation leaves the stage to be
    /// booked when it is ready).
    Reserve,
    /// Ask again, at its booked start, for a run booked to start later:
    /// the owner answers with its booking as it stands (a late run ranked
    /// before it may have pushed it). Asked like a reservation, nothing
    /// held; unanswered, the run keeps the booking it had.
    Confirm,
}

/// One booking request's life.
#[derive(Clone, Debug)]
pub struct Booking {
    cfg: Config,
    ask: Ask,
    local: bool,
    tries: u32,
    wait_ms: f64,
    done: bool,
}

impl Booking {
    /// A request for a run on a node owned by this agent (`local`) or by a
    /// peer whose failure detector state is `given_up` and RTT-derived
    /// timeout `rtt_timeout_ms`, at `now`.
    pub fn new(
        cfg: &Config,
        ask: Ask,
        local: bool,
        given_up: bool,
        rtt_timeout_ms: f64,
        now: f64,
        out: &mut Vec<BookingOutput>,
    ) -> Self {
        let mut b = Booking { cfg: cfg.clone(), ask, local, tries: 0, wait_ms: cfg.booking_first_wait_ms, done: false };
        if local {
            out.push(BookingOutput::BookHere);
        } else if ask != Ask::Book {
            b.ask(given_up, rtt_timeout_ms, out);
        } else {
            // Counted here until its answer and the owner's record that
            // shows it (a gossip hop) have arrived.
            out.push(BookingOutput::Hold { until: now + cfg.hold_sent_ms });
            b.ask(given_up, rtt_timeout_ms, out);
        }
        b
    }

    /// Whether it has its result.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn ask(&mut self, given_up: bool, rtt_timeout_ms: f64, out: &mut Vec<BookingOutput>) {
        let tries = match self.ask {
            Ask::Book => self.cfg.booking_tries,
            Ask::Reserve | Ask::Confirm => self.cfg.reserve_tries,
        };
        if given_up || self.tries >= tries {
            self.done = true;
            out.push(BookingOutput::Unreachable);
            return;
        }
        self.tries += 1;
        let w = self.wait_ms;
        // A booking request is idempotent (the owner gives a repeated
        // request for the same run the same booking), so a slow or starved
        // owner is asked again, waiting twice as long, rather than taken
        // for a lost one.
        out.push(BookingOutput::Send { timeout_ms: rtt_timeout_ms.clamp(w, 5.0 * w), attempt: self.tries });
        self.wait_ms *= 2.0;
    }

    /// Advances on `input` at `now` (ms).
    pub fn handle(&mut self, input: BookingInput, now: f64, out: &mut Vec<BookingOutput>) {
        if self.done {
            return;
        }
        match input {
            BookingInput::Answered { booked } => {
                self.done = true;
                if self.ask != Ask::Book {
                    // Nothing held for a reservation or a confirmation.
                } else if booked && !self.local {
                    out.push(BookingOutput::Hold { until: now + self.cfg.hold_answered_ms });
                } else {
                    // An own node's booking is published at once; a refusal
                    // holds nothing.
                    out.push(BookingOutput::Unhold);
                }
                out.push(BookingOutput::Answer { booked });
            }
            BookingInput::Silent { given_up, rtt_timeout_ms } => {
                if self.local {
                    return;
                }
                self.ask(given_up, rtt_timeout_ms, out);
            }
        }
    }
}
