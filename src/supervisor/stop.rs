//! Stopping a generation and telling how it ended: the stop signal, the grace deadline
//! and SIGKILL, the leader's exit, the group checks until the whole group is gone, and
//! what the end means (a stop hotrun asked for, a crash, a lost race for a port).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::child::{LeaderExit, Stop};
use super::shutdown::Shutdown;
use super::{
    BACKOFF_RESET, Child, GroupPoll, Mode, OnExit, RETRY_WINDOW, Readiness, Supervisor, backoff,
};
use crate::event::{Action, ChildEnd, Generation, Kill, Status, Trigger};

impl Supervisor {
    /// Sends `signal` to the generation's group and arms its grace deadline.
    pub(super) fn stop(
        &mut self,
        generation: Generation,
        signal: Signal,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let grace = self.settings.grace;
        let Some(child) = self.child_mut(generation) else {
            return;
        };
        if child.stop.is_some() {
            return;
        }
        child.drain = None;
        child.stop = Some(Stop {
            sent: now,
            signal,
            also: None,
            kill_at: Some(now + grace),
            killed: None,
        });
        out.push(Action::Signal { generation, signal });
        out.push(Action::Report(Status::StopSent { generation, signal }));
    }

    /// The generation's first process ended. It stays unreaped (its pgid reserved) until
    /// the whole group is gone; what is left of the group is stopped.
    pub(super) fn on_leader_exited(
        &mut self,
        generation: Generation,
        end: ChildEnd,
        group_empty: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let signal = self.stop_signal_now();
        let Some(child) = self.child_mut(generation).filter(|c| c.exit.is_none()) else {
            return;
        };
        let asked = child.stop.is_some();
        let mut group = GroupPoll::new();
        if !group_empty {
            group.arm(now);
        }
        child.exit = Some(LeaderExit { end, asked, group });
        if group_empty {
            self.group_gone(generation, now, out);
        } else if let Some(stop) = child.stop.as_mut() {
            // Once more for what is left: a process forked after the first signal (the
            // leader was spawning it when the signal came) never got it. The grace
            // deadline stays as it was.
            stop.sent_also(signal);
            out.push(Action::Signal { generation, signal });
        } else {
            out.push(Action::Report(Status::Lingering { generation, end }));
            self.stop(generation, signal, now, out);
        }
    }

    /// The answer to `CheckGroup`.
    pub(super) fn on_group_checked(
        &mut self,
        generation: Generation,
        empty: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if empty {
            self.group_gone(generation, now, out);
        } else if let Some(exit) = self.child_mut(generation).and_then(|c| c.exit.as_mut()) {
            exit.group.back_off(now);
        }
    }

    /// The generation's whole group is gone (its leader has exited, so it has one).
    fn group_gone(&mut self, generation: Generation, now: Instant, out: &mut Vec<Action>) {
        let Some(index) = self
            .children
            .iter()
            .position(|c| c.generation == generation)
        else {
            return;
        };
        let Some(exit) = self.children[index].exit.take() else {
            return;
        };
        let child = self.children.remove(index);
        self.finish(child, exit, now, out);
    }

    /// Reaps a generation whose whole group is gone, tells how it ended, and decides what
    /// comes next.
    fn finish(&mut self, child: Child, exit: LeaderExit, now: Instant, out: &mut Vec<Action>) {
        let generation = child.generation;
        let end = exit.end;
        out.push(Action::Reap { generation });
        let was_current = self.current == Some(generation);
        if was_current {
            self.current = None;
        } else if !self.restart_under_way() {
            self.older_gone_at = Some(now);
        }
        if let Mode::ShuttingDown(shutdown) = &mut self.mode {
            shutdown.gone(generation, end);
            out.push(Action::Report(child.ended(end, true, now)));
            self.exit_if_all_gone(out);
            return;
        }
        let was_candidate = matches!(&self.mode, Mode::Starting(s) if s.candidate == generation);
        if was_candidate {
            self.candidate_ended(&child, end, now, out);
        } else if exit.asked {
            out.push(Action::Report(child.ended(end, true, now)));
        } else if was_current && !matches!(self.mode, Mode::Starting(_)) {
            self.current_exited(&child, end, now, out);
        } else {
            // An older generation ended on its own during a restart, or the current one
            // while the new one gets ready (which takes over once it is): nothing to do.
            out.push(Action::Report(child.ended(end, false, now)));
        }
        self.follow_up(now, out);
    }

    /// The generation getting ready ended first: the current one keeps serving; with
    /// none, this is the newest generation ending on its own.
    fn candidate_ended(
        &mut self,
        child: &Child,
        end: ChildEnd,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.mode = Mode::Serving;
        match self.current {
            Some(serving) => out.push(Action::Report(Status::RolledBack {
                generation: child.generation,
                end,
                alive: child.alive(now),
                still_serving: serving,
            })),
            None => self.current_exited(child, end, now, out),
        }
    }

    /// The newest generation ended on its own: it lost a race for a port (start it once
    /// more), or `--on-exit` says what follows.
    fn current_exited(
        &mut self,
        child: &Child,
        end: ChildEnd,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if let Some(older) = self.lost_a_race(child, now) {
            out.push(Action::Report(Status::RetryAfterOld {
                generation: child.generation,
                end,
                older,
                older_gone: !self.restart_under_way(),
            }));
            // Started by `follow_up` once no older generation is alive (maybe at once).
            self.pending = Some(Trigger::Retry);
            return;
        }
        out.push(Action::Report(child.ended(end, false, now)));
        match self.settings.on_exit {
            OnExit::Wait => self.wait_for_change(out),
            OnExit::Restart => self.restart_after_backoff(child.alive(now), now, out),
            OnExit::Exit => self.begin_shutdown(Shutdown::Exited(end), now, out),
        }
    }

    /// `--on-exit wait`: nothing runs until a change or a restart signal.
    fn wait_for_change(&mut self, out: &mut Vec<Action>) {
        if self.pending.is_none() && matches!(self.mode, Mode::Serving) {
            out.push(Action::Report(Status::Waiting));
        }
    }

    /// `--on-exit restart`: the next start comes after a delay that grows while the
    /// command keeps exiting soon after its start (`alive`).
    fn restart_after_backoff(&mut self, alive: Duration, now: Instant, out: &mut Vec<Action>) {
        if alive >= BACKOFF_RESET {
            self.quick_exits = 0;
        }
        let delay = backoff(self.quick_exits);
        self.quick_exits = self.quick_exits.saturating_add(1);
        if self.pending.is_none() {
            self.restart_at = Some(now + delay);
            out.push(Action::Report(Status::Backoff { delay }));
        }
    }

    /// Whether `child`, which just ended on its own, most likely lost a race with the
    /// generation it replaces (a fixed port, a lock file): it was started while that one
    /// was alive, and ended while an older generation still stops or within
    /// `RETRY_WINDOW` after the last one was gone. Not for a retry itself (once per
    /// restart), not when another trigger is queued, and not with a readiness gate (then
    /// the old generation is never stopped for a new one that did not get ready).
    /// Returns the generation it raced with.
    fn lost_a_race(&self, child: &Child, now: Instant) -> Option<Generation> {
        let older = child.beside?;
        let racing = self.restart_under_way()
            || self
                .older_gone_at
                .is_some_and(|at| now.saturating_duration_since(at) <= RETRY_WINDOW);
        let eligible = child.trigger != Trigger::Retry
            && self.pending.is_none()
            && matches!(self.mode, Mode::Serving)
            && matches!(self.settings.ready, Readiness::Exec | Readiness::Auto);
        (eligible && racing).then_some(older)
    }

    /// The signal for stragglers: the one being forwarded during shutdown, else the
    /// configured stop signal.
    fn stop_signal_now(&self) -> Signal {
        match &self.mode {
            Mode::ShuttingDown(shutdown) => shutdown.forwarded(),
            _ => None,
        }
        .unwrap_or(self.settings.stop_signal)
    }

    /// Stopping generations whose grace ran out get SIGKILL; groups due to be looked at
    /// again are.
    pub(super) fn tick_stops(&mut self, now: Instant, out: &mut Vec<Action>) {
        let grace = self.settings.grace;
        for child in &mut self.children {
            let generation = child.generation;
            if let Some(stop) = child.stop.as_mut()
                && stop.kill_at.is_some_and(|at| at <= now)
            {
                stop.kill(Kill::GraceExpired);
                out.push(Action::Signal {
                    generation,
                    signal: Signal::SIGKILL,
                });
                out.push(Action::Report(Status::GraceExpired { generation, grace }));
            }
            if child.exit.as_mut().is_some_and(|exit| exit.group.due(now)) {
                out.push(Action::CheckGroup { generation });
            }
        }
    }
}
