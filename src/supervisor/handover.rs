//! The handover from the current generation to the new one: readiness (`--ready`, a
//! `listen` on a held socket), then the older generations make way, drained first when
//! they serve on a socket hotrun holds.

use std::time::Instant;

use super::child::Drain;
use super::{DRAIN_MAX, DRAIN_POLL, Mode, Readiness, Supervisor};
use crate::event::{Action, Generation, SocketNews, Status};

impl Supervisor {
    /// `generation` becomes the current one; every older generation is stopped — one
    /// that serves on a socket hotrun holds is drained first.
    pub(super) fn take_over(
        &mut self,
        generation: Generation,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.mode = Mode::Serving;
        self.current = Some(generation);
        let drain = self.settings.drain;
        let older: Vec<(Generation, bool)> = self
            .children
            .iter()
            .filter(|c| c.generation != generation && c.stop.is_none() && c.drain.is_none())
            .map(|c| (c.generation, c.serving))
            .collect();
        for (old, serving) in older {
            if serving {
                out.push(Action::Drain { generation: old });
            }
            if serving && !drain.is_zero() {
                let max = drain.max(DRAIN_MAX);
                out.push(Action::Report(Status::Draining {
                    generation: old,
                    min: drain,
                    max,
                }));
                if let Some(child) = self.child_mut(old) {
                    child.drain = Some(Drain {
                        min_at: now + drain,
                        max_at: now + max,
                        check_at: Some(now + drain),
                    });
                }
            } else {
                self.stop(old, self.settings.stop_signal, now, out);
            }
        }
        self.follow_up(now, out);
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
        match news {
            SocketNews::Accepting => child.serving = true,
            SocketNews::Listening { addr, first } => {
                child.listening = true;
                child.serving = true;
                if first {
                    out.push(Action::Report(Status::SocketHeld { generation, addr }));
                }
                if self.settings.ready == Readiness::Auto {
                    self.become_ready(generation, "listen", now, out);
                }
            }
            SocketNews::TookOver { addr } => {
                out.push(Action::Report(Status::SocketTakenOver { generation, addr }));
            }
            SocketNews::ModeDiffers {
                addr,
                other,
                other_nonblocking,
                nonblocking,
            } => {
                out.push(Action::Report(Status::SocketModeDiffers {
                    generation,
                    addr,
                    other,
                    other_nonblocking,
                    nonblocking,
                }));
            }
            SocketNews::Declined { addr, why } => {
                out.push(Action::Report(Status::TakeoverDeclined {
                    generation,
                    addr,
                    why,
                }));
            }
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
            let waited = now.saturating_duration_since(drain.min_at);
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
}
