//! One live generation as the supervisor keeps it: when it started and why, whether it
//! serves on a socket hotrun holds, and where its end stands (draining, asked to stop,
//! leader exited), up to the status that tells how it ended.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{GroupPoll, earliest};
use crate::event::{ChildEnd, Generation, Kill, Status, StopEnd, Trigger};

/// One live generation: spawned, and its process group not yet known to be gone.
#[derive(Debug)]
pub(super) struct Child {
    pub(super) generation: Generation,
    pub(super) started: Instant,
    pub(super) trigger: Trigger,
    /// The newest older generation that was alive when this one started: the one it
    /// replaces, and may have raced for a port.
    pub(super) beside: Option<Generation>,
    /// It listens on a socket hotrun holds (socket takeover).
    pub(super) listening: bool,
    /// It listens or accepts on a socket hotrun holds: replacing it drains it first.
    pub(super) serving: bool,
    /// Set while it drains: it gets no new connection, and its stop signal waits.
    pub(super) drain: Option<Drain>,
    /// Set once hotrun has asked it to stop.
    pub(super) stop: Option<Stop>,
    /// Set once its leader has exited (its group is then watched until it is gone).
    pub(super) exit: Option<LeaderExit>,
}

impl Child {
    /// A generation whose exec just succeeded.
    pub(super) fn new(
        generation: Generation,
        started: Instant,
        trigger: Trigger,
        beside: Option<Generation>,
    ) -> Child {
        Child {
            generation,
            started,
            trigger,
            beside,
            listening: false,
            serving: false,
            drain: None,
            stop: None,
            exit: None,
        }
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        let kill = self.stop.as_ref().and_then(|s| s.kill_at);
        let recheck = self.exit.as_ref().and_then(|e| e.group.next);
        let drain = self.drain.as_ref().and_then(|d| d.check_at);
        earliest([kill, recheck, drain])
    }

    /// How long it has been running.
    pub(super) fn alive(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// How it ended, as the user is told once its group is gone: `Stopped` (with how the
    /// stop went) when hotrun had asked it to stop (`requested`), else `Exited`.
    pub(super) fn ended(&self, end: ChildEnd, requested: bool, now: Instant) -> Status {
        let generation = self.generation;
        let alive = self.alive(now);
        match self.stop.as_ref().filter(|_| requested) {
            Some(stop) => Status::Stopped {
                generation,
                end: StopEnd {
                    end,
                    signal: stop.signal,
                    also: stop.also,
                    killed: stop.killed,
                },
                after: now.saturating_duration_since(stop.sent),
                alive,
            },
            None => Status::Exited {
                generation,
                end,
                alive,
            },
        }
    }
}

#[derive(Debug)]
pub(super) struct Drain {
    /// When it began draining.
    pub(super) since: Instant,
    /// Its stop signal comes once this has passed and no connection it accepted is open…
    pub(super) min_at: Instant,
    /// …or at this time, connections or not.
    pub(super) max_at: Instant,
    /// When to ask about its open connections (`None` while an answer is awaited).
    pub(super) check_at: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct Stop {
    pub(super) sent: Instant,
    /// The stop signal it was sent.
    pub(super) signal: Signal,
    /// Another signal it was sent later (a shutdown forwarding SIGINT, say).
    pub(super) also: Option<Signal>,
    /// When SIGKILL is due; `None` once it was sent.
    pub(super) kill_at: Option<Instant>,
    /// Why SIGKILL was sent, once it was.
    pub(super) killed: Option<Kill>,
}

impl Stop {
    /// Takes note of one more (non-SIGKILL) signal sent to the stopping generation.
    pub(super) fn sent_also(&mut self, signal: Signal) {
        if signal != self.signal && signal != Signal::SIGKILL {
            self.also = Some(signal);
        }
    }

    /// Its group gets SIGKILL now.
    pub(super) fn kill(&mut self, why: Kill) {
        self.kill_at = None;
        self.killed.get_or_insert(why);
    }
}

/// How the generation's first process ended; its group is watched until it is gone.
#[derive(Debug)]
pub(super) struct LeaderExit {
    pub(super) end: ChildEnd,
    /// hotrun had asked the generation to stop before its leader exited.
    pub(super) asked: bool,
    pub(super) group: GroupPoll,
}
