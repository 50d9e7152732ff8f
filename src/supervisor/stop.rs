//! Stops and ends: stopping a generation's group (stop signal, grace, SIGKILL), its
//! leader's exit, the group checks until the whole group is gone, what a generation's end
//! means (a crash, a lost race for a port, a stop hotrun asked for), and shutdown.

use std::time::Instant;

use nix::sys::signal::Signal;

use super::child::{LeaderExit, Stop, stop_end};
use super::{
    BACKOFF_RESET, Child, GROUP_POLL_FIRST, GROUP_POLL_MAX, Mode, OnExit, RETRY_WINDOW, Readiness,
    ShuttingDown, Supervisor, backoff,
};
use crate::event::{Action, ChildEnd, Generation, Kill, Outcome, ShutdownSignal, Status, Trigger};

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

    pub(super) fn on_leader_exited(
        &mut self,
        generation: Generation,
        end: ChildEnd,
        group_empty: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let signal = self.stop_signal_now();
        let Some(child) = self.child_mut(generation) else {
            return;
        };
        if child.exit.is_some() {
            return;
        }
        child.exit = Some(LeaderExit {
            end,
            asked: child.stop.is_some(),
            recheck_at: None,
            poll: GROUP_POLL_FIRST,
        });
        if group_empty {
            self.finish(generation, now, out);
            return;
        }
        // The leader is gone but not its group: stop what is left, then keep looking.
        let asked = child.stop.is_some();
        if let Some(stop) = child.stop.as_mut() {
            stop.sent_also(signal);
        }
        if !asked {
            out.push(Action::Report(Status::Lingering { generation, end }));
        }
        if let Some(exit) = child.exit.as_mut() {
            exit.recheck_at = Some(now + exit.poll);
        }
        if asked {
            // Once more for what is left: a process forked after the first signal (the
            // leader was spawning it when the signal came) never got it. The grace
            // deadline stays as it was.
            out.push(Action::Signal { generation, signal });
        } else {
            self.stop(generation, signal, now, out);
        }
    }

    pub(super) fn on_group_checked(
        &mut self,
        generation: Generation,
        empty: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if empty {
            self.finish(generation, now, out);
        } else if let Some(exit) = self.child_mut(generation).and_then(|c| c.exit.as_mut()) {
            exit.poll = (exit.poll * 2).min(GROUP_POLL_MAX);
            exit.recheck_at = Some(now + exit.poll);
        }
    }

    /// The generation's whole group is gone: reap it, tell, and decide what comes next.
    fn finish(&mut self, generation: Generation, now: Instant, out: &mut Vec<Action>) {
        let Some(index) = self
            .children
            .iter()
            .position(|c| c.generation == generation)
        else {
            return;
        };
        let child = self.children.remove(index);
        let Some((end, asked)) = child.exit.as_ref().map(|e| (e.end, e.asked)) else {
            // Cannot happen: only a leader's exit starts the group checks.
            self.children.insert(index, child);
            return;
        };
        out.push(Action::Reap { generation });
        let was_current = self.current == Some(generation);
        if was_current {
            self.current = None;
        } else if !self.restart_under_way() {
            self.older_gone_at = Some(now);
        }

        if let Mode::ShuttingDown(shutdown) = &mut self.mode {
            if shutdown.target == Some(generation) {
                shutdown.end = Some(end);
            }
            if let Some(stop) = &child.stop {
                out.push(Action::Report(Status::Stopped {
                    generation,
                    end: stop_end(stop, end),
                    after: now.saturating_duration_since(stop.sent),
                    alive: now.saturating_duration_since(child.started),
                }));
            } else {
                out.push(Action::Report(Status::Exited {
                    generation,
                    end,
                    alive: now.saturating_duration_since(child.started),
                }));
            }
            self.exit_if_all_gone(Some(end), out);
            return;
        }

        let was_candidate = matches!(&self.mode, Mode::Starting(s) if s.candidate == generation);
        if was_candidate {
            // It ended before it was ready: the current generation keeps serving.
            self.mode = Mode::Serving;
            match self.current {
                Some(serving) => out.push(Action::Report(Status::RolledBack {
                    generation,
                    end,
                    alive: now.saturating_duration_since(child.started),
                    still_serving: serving,
                })),
                None => self.on_current_exited(&child, end, now, out),
            }
        } else if let (true, Some(stop)) = (asked, &child.stop) {
            out.push(Action::Report(Status::Stopped {
                generation,
                end: stop_end(stop, end),
                after: now.saturating_duration_since(stop.sent),
                alive: now.saturating_duration_since(child.started),
            }));
        } else if was_current && matches!(self.mode, Mode::Starting(_)) {
            // The new generation is on its way; it takes over when ready.
            out.push(Action::Report(Status::Exited {
                generation,
                end,
                alive: now.saturating_duration_since(child.started),
            }));
        } else if was_current {
            self.on_current_exited(&child, end, now, out);
        } else {
            out.push(Action::Report(Status::Exited {
                generation,
                end,
                alive: now.saturating_duration_since(child.started),
            }));
        }

        self.follow_up(now, out);
    }

    /// The newest generation ended on its own.
    fn on_current_exited(
        &mut self,
        child: &Child,
        end: ChildEnd,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let generation = child.generation;
        let alive = now.saturating_duration_since(child.started);
        if let Some(older) = self.lost_a_race(child, now) {
            out.push(Action::Report(Status::RetryAfterOld {
                generation,
                end,
                older,
                older_gone: !self.restart_under_way(),
            }));
            // Started by `follow_up` once no older generation is alive (maybe at once).
            self.pending = Some(Trigger::Retry);
            return;
        }
        out.push(Action::Report(Status::Exited {
            generation,
            end,
            alive,
        }));
        match self.settings.on_exit {
            OnExit::Wait => {
                if self.pending.is_none() && matches!(self.mode, Mode::Serving) {
                    out.push(Action::Report(Status::Waiting));
                }
            }
            OnExit::Restart => {
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
            OnExit::Exit => {
                self.begin_shutdown(None, Some(end), now, out);
            }
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

    pub(super) fn on_shutdown(
        &mut self,
        signal: ShutdownSignal,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if let Mode::ShuttingDown(_) = self.mode {
            // The second one: no more waiting.
            if signal != ShutdownSignal::TerminalClosed {
                out.push(Action::Report(Status::ForceKill));
                self.kill_all(out);
            }
            return;
        }
        out.push(Action::Report(Status::ShuttingDown {
            signal: signal.received(),
        }));
        self.begin_shutdown(Some(signal), None, now, out);
    }

    /// Stops every live generation; `Exit` follows once all groups are gone.
    fn begin_shutdown(
        &mut self,
        signal: Option<ShutdownSignal>,
        end: Option<ChildEnd>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.pending = None;
        self.debounce = None;
        self.restart_at = None;
        let received = signal.map(ShutdownSignal::received);
        let candidate = match &self.mode {
            Mode::Starting(s) => Some(s.candidate),
            _ => None,
        };
        self.mode = Mode::ShuttingDown(ShuttingDown {
            received,
            target: self.current.or(candidate),
            end,
        });
        // Forward the signal as it came; a closed terminal stops like a restart does.
        let forward = match signal {
            Some(ShutdownSignal::TerminalClosed) | None => self.settings.stop_signal,
            Some(s) => s.received(),
        };
        let live: Vec<Generation> = self.children.iter().map(|c| c.generation).collect();
        // A build under way is stopped too (with the signal as it came: a terminal's
        // Ctrl-C would have reached it as SIGINT); nothing of it may be left running.
        self.builds.again = None;
        let build_signal = match signal {
            Some(ShutdownSignal::TerminalClosed) | None => Signal::SIGTERM,
            Some(s) => s.received(),
        };
        self.stop_build(build_signal, now, out);
        if live.is_empty() {
            self.exit_if_all_gone(None, out);
            return;
        }
        for generation in live {
            // A generation already stopping gets the forwarded signal too: the user asked.
            if let Some(stop) = self.child_mut(generation).and_then(|c| c.stop.as_mut()) {
                stop.sent_also(forward);
                out.push(Action::Signal {
                    generation,
                    signal: forward,
                });
                continue;
            }
            self.stop(generation, forward, now, out);
        }
    }

    fn kill_all(&mut self, out: &mut Vec<Action>) {
        if let Some(build) = self.builds.running.as_mut() {
            if let Some(stop) = build.stop.as_mut() {
                stop.kill_at = None;
                stop.killed = true;
            }
            out.push(Action::SignalBuild {
                build: build.id,
                signal: Signal::SIGKILL,
            });
        }
        for child in &mut self.children {
            if let Some(stop) = child.stop.as_mut() {
                stop.kill(Kill::Forced);
            }
            out.push(Action::Signal {
                generation: child.generation,
                signal: Signal::SIGKILL,
            });
        }
    }

    /// The signal for stragglers: the one being forwarded during shutdown, else the
    /// configured stop signal.
    fn stop_signal_now(&self) -> Signal {
        match &self.mode {
            Mode::ShuttingDown(ShuttingDown {
                received: Some(s), ..
            }) if *s != Signal::SIGHUP => *s,
            _ => self.settings.stop_signal,
        }
    }

    /// Ends hotrun once it is shutting down and every generation and the build are gone.
    /// `last`: how the generation that was just found gone ended.
    pub(super) fn exit_if_all_gone(&mut self, last: Option<ChildEnd>, out: &mut Vec<Action>) {
        let Mode::ShuttingDown(shutdown) = &self.mode else {
            return;
        };
        if !self.children.is_empty() || self.builds.running.is_some() {
            return;
        }
        let outcome = match (shutdown.end, shutdown.received, last) {
            (Some(end), received, _) => Outcome::Child { end, received },
            (None, Some(signal), _) => Outcome::Signaled(signal),
            (None, None, Some(end)) => Outcome::Child {
                end,
                received: None,
            },
            (None, None, None) => Outcome::Signaled(Signal::SIGTERM),
        };
        self.mode = Mode::Done;
        out.push(Action::Exit(outcome));
    }
}
