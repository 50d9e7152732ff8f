//! The handover from the current generation to the new one: readiness (`--ready`, a
//! `listen` on a held socket), then the older generations make way, drained first when
//! they serve on a socket hotrun holds.

use std::time::{Duration, Instant};

use super::child::Drain;
use super::{DRAIN_MAX, DRAIN_POLL, Mode, Readiness, Starting, Supervisor};
use crate::event::{Action, Generation, SocketNews, Status};

impl Supervisor {
    /// A new generation is live: it takes over at once, or once it is ready (`--ready`;
    /// without it, when the generation it replaces listens on a socket hotrun holds, once
    /// it listens there too).
    pub(super) fn hand_over(
        &mut self,
        generation: Generation,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if !self.needs_readiness() {
            self.take_over(generation, now, out);
            return;
        }
        let ready_at = match self.settings.ready {
            Readiness::Delay(d) => Some(now + d),
            _ => None,
        };
        self.mode = Mode::Starting(Starting {
            candidate: generation,
            since: now,
            ready_at,
            timeout_at: now + self.settings.ready_timeout,
        });
    }

    /// Whether a new generation must get ready before it takes over.
    fn needs_readiness(&self) -> bool {
        match self.settings.ready {
            Readiness::Exec => false,
            Readiness::Auto => self
                .children
                .iter()
                .any(|c| Some(c.generation) == self.current && c.listening && c.stop.is_none()),
            Readiness::Notify | Readiness::Delay(_) => true,
        }
    }

    /// `generation` becomes the current one; every older generation makes way.
    pub(super) fn take_over(
        &mut self,
        generation: Generation,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.mode = Mode::Serving;
        self.current = Some(generation);
        let older: Vec<(Generation, bool)> = self
            .children
            .iter()
            .filter(|c| c.generation != generation && c.stop.is_none() && c.drain.is_none())
            .map(|c| (c.generation, c.serving))
            .collect();
        for (old, serving) in older {
            self.retire(old, serving, now, out);
        }
        self.follow_up(now, out);
    }

    /// An older generation makes way: it is stopped, or, when it serves on a socket
    /// hotrun holds, drained first (it gets no new connection; its stop signal waits for
    /// the connections it accepted, `--drain` at least and `DRAIN_MAX` at most).
    fn retire(&mut self, old: Generation, serving: bool, now: Instant, out: &mut Vec<Action>) {
        let drain = self.settings.drain;
        if serving {
            out.push(Action::Drain { generation: old });
        }
        if !serving || drain.is_zero() {
            self.stop(old, self.settings.stop_signal, now, out);
            return;
        }
        let max = drain.max(DRAIN_MAX);
        out.push(Action::Report(Status::Draining {
            generation: old,
            min: drain,
            max,
        }));
        if let Some(child) = self.child_mut(old) {
            child.drain = Some(Drain {
                since: now,
                min_at: now + drain,
                max_at: now + max,
                check_at: Some(now + drain),
            });
        }
    }

    pub(super) fn become_ready(
        &mut self,
        generation: Generation,
        how: &'static str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Mode::Starting(starting) = &self.mode else {
            return;
        };
        if starting.candidate != generation {
            return;
        }
        out.push(Action::Report(Status::Ready {
            generation,
            after: now.saturating_duration_since(starting.since),
            how,
        }));
        self.take_over(generation, now, out);
    }

    pub(super) fn on_notify(
        &mut self,
        generation: Generation,
        ready: bool,
        status: Option<String>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if let Some(text) = status {
            out.push(Action::Report(Status::ChildSays { generation, text }));
        }
        if ready {
            self.become_ready(generation, "READY=1", now, out);
        }
    }

    /// What socket takeover saw the generation do: it serves on a held socket (a
    /// `listen` there is its readiness without `--ready`), or news for the user.
    pub(super) fn on_socket(
        &mut self,
        generation: Generation,
        news: SocketNews,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(child) = self.child_mut(generation) else {
            return;
        };
        let listening = matches!(news, SocketNews::Listening { .. });
        child.serving |= listening || matches!(news, SocketNews::Accepting);
        child.listening |= listening;
        if let Some(status) = socket_status(generation, news) {
            out.push(Action::Report(status));
        }
        if listening && self.settings.ready == Readiness::Auto {
            self.become_ready(generation, "listen", now, out);
        }
    }

    /// The answer to `CheckDrained`: stop the generation once nothing it accepted is
    /// open, or once it drained for `DRAIN_MAX`; else look again shortly.
    pub(super) fn on_drain_checked(
        &mut self,
        generation: Generation,
        open: usize,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(drain) = self.child_mut(generation).and_then(|c| c.drain.as_mut()) else {
            return;
        };
        if open == 0 && now >= drain.min_at {
            self.stop(generation, self.settings.stop_signal, now, out);
        } else if now >= drain.max_at {
            let waited = now.saturating_duration_since(drain.since);
            out.push(Action::Report(Status::DrainCut {
                generation,
                open,
                waited,
            }));
            self.stop(generation, self.settings.stop_signal, now, out);
        } else {
            drain.check_at = Some((now + DRAIN_POLL).min(drain.max_at));
        }
    }

    /// `--ready delay:DURATION` is over, or `--ready-timeout`.
    pub(super) fn tick_readiness(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Mode::Starting(starting) = &self.mode else {
            return;
        };
        let candidate = starting.candidate;
        let after = now.saturating_duration_since(starting.since);
        if starting.ready_at.is_some_and(|at| at <= now) {
            self.become_ready(candidate, "delay", now, out);
        } else if starting.timeout_at <= now {
            self.not_ready(candidate, after, now, out);
        }
    }

    /// The new generation was not ready in time: it is stopped, and the current one keeps
    /// serving; with none, it is kept (nothing else can serve).
    fn not_ready(
        &mut self,
        candidate: Generation,
        after: Duration,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Report(Status::NotReady {
            generation: candidate,
            after,
            still_serving: self.current,
        }));
        if self.current.is_some() {
            self.mode = Mode::Serving;
            self.stop(candidate, self.settings.stop_signal, now, out);
        } else {
            self.take_over(candidate, now, out);
        }
    }

    /// Draining generations whose open connections are due to be looked at.
    pub(super) fn tick_drains(&mut self, now: Instant, out: &mut Vec<Action>) {
        for child in &mut self.children {
            if let Some(drain) = child.drain.as_mut()
                && drain.check_at.is_some_and(|at| at <= now)
            {
                drain.check_at = None;
                out.push(Action::CheckDrained {
                    generation: child.generation,
                });
            }
        }
    }
}

/// What the user is told about a generation's socket news, if anything.
fn socket_status(generation: Generation, news: SocketNews) -> Option<Status> {
    match news {
        SocketNews::Accepting | SocketNews::Listening { first: false, .. } => None,
        SocketNews::Listening { addr, first: true } => {
            Some(Status::SocketHeld { generation, addr })
        }
        SocketNews::TookOver { addr } => Some(Status::SocketTakenOver { generation, addr }),
        SocketNews::ModeDiffers {
            addr,
            other,
            other_nonblocking,
            nonblocking,
        } => Some(Status::SocketModeDiffers {
            generation,
            addr,
            other,
            other_nonblocking,
            nonblocking,
        }),
        SocketNews::Declined { addr, why } => Some(Status::TakeoverDeclined {
            generation,
            addr,
            why,
        }),
    }
}
