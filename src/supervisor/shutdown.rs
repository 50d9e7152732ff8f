//! Shutdown: SIGINT/SIGTERM/SIGQUIT (or a closed terminal, or `--on-exit exit`) stops
//! every generation and the build; hotrun's exit is decided once every group is gone. A
//! second signal kills every group at once.

use std::time::Instant;

use nix::sys::signal::Signal;

use super::{Mode, Supervisor};
use crate::event::{Action, ChildEnd, Generation, Kill, Outcome, ShutdownSignal, Status};

/// Why hotrun shuts down, and what its exit is made of.
#[derive(Debug)]
pub(super) enum Shutdown {
    /// hotrun received a signal. The status of `target` (the generation serving, or the
    /// one getting ready, when the signal came) becomes hotrun's once its group is gone
    /// (`end`); with no target, hotrun ends by the signal itself.
    Signal {
        signal: ShutdownSignal,
        target: Option<Generation>,
        end: Option<ChildEnd>,
    },
    /// `--on-exit exit`: the newest generation ended so, on its own.
    Exited(ChildEnd),
}

impl Shutdown {
    /// The signal the generations are sent: the one hotrun received, as it came (`None`:
    /// the stop signal, as for a restart, after a closed terminal or `--on-exit exit`).
    pub(super) fn forwarded(&self) -> Option<Signal> {
        match self {
            Shutdown::Signal { signal, .. } if *signal != ShutdownSignal::TerminalClosed => {
                Some(signal.received())
            }
            _ => None,
        }
    }

    /// A generation's group is gone: if hotrun's status is to be its, it is known now.
    pub(super) fn gone(&mut self, generation: Generation, how: ChildEnd) {
        if let Shutdown::Signal {
            target: Some(target),
            end,
            ..
        } = self
            && *target == generation
        {
            *end = Some(how);
        }
    }

    fn outcome(&self) -> Outcome {
        match *self {
            Shutdown::Exited(end) => Outcome::Child {
                end,
                received: None,
            },
            Shutdown::Signal {
                signal,
                end: Some(end),
                ..
            } => Outcome::Child {
                end,
                received: Some(signal.received()),
            },
            Shutdown::Signal {
                signal, end: None, ..
            } => Outcome::Signaled(signal.received()),
        }
    }
}

impl Supervisor {
    pub(super) fn on_shutdown(
        &mut self,
        signal: ShutdownSignal,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if let Mode::ShuttingDown(_) = self.mode {
            // The second one: no more waiting.
            if !matches!(
                signal,
                ShutdownSignal::TerminalClosed | ShutdownSignal::Asked
            ) {
                out.push(Action::Report(Status::ForceKill));
                self.kill_all(out);
            }
            return;
        }
        out.push(Action::Report(Status::ShuttingDown { why: signal }));
        let candidate = match &self.mode {
            Mode::Starting(s) => Some(s.candidate),
            _ => None,
        };
        let target = self.current.or(candidate);
        self.begin_shutdown(
            Shutdown::Signal {
                signal,
                target,
                end: None,
            },
            now,
            out,
        );
    }

    /// Stops every live generation and the build; `Exit` follows once all groups are
    /// gone.
    pub(super) fn begin_shutdown(
        &mut self,
        shutdown: Shutdown,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.pending = None;
        self.debounce = None;
        self.restart_at = None;
        self.builds.again = None;
        let forwarded = shutdown.forwarded();
        self.mode = Mode::ShuttingDown(shutdown);
        // A build under way is stopped too (with the signal as it came: a terminal's
        // Ctrl-C would have reached it as SIGINT); nothing of it may be left running.
        self.stop_build(forwarded.unwrap_or(Signal::SIGTERM), now, out);
        let signal = forwarded.unwrap_or(self.settings.stop_signal);
        let live: Vec<Generation> = self.children.iter().map(|c| c.generation).collect();
        if live.is_empty() {
            self.exit_if_all_gone(out);
            return;
        }
        for generation in live {
            // A generation already stopping gets the forwarded signal too: the user asked.
            if let Some(stop) = self.child_mut(generation).and_then(|c| c.stop.as_mut()) {
                stop.sent_also(signal);
                out.push(Action::Signal { generation, signal });
                continue;
            }
            self.stop(generation, signal, now, out);
        }
    }

    /// The second signal: SIGKILL to every group, the build's too.
    fn kill_all(&mut self, out: &mut Vec<Action>) {
        if let Some(build) = self.builds.running.as_mut() {
            if let Some(stop) = build.stop.as_mut() {
                stop.kill();
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

    /// Ends hotrun once it is shutting down and every generation and the build are gone.
    pub(super) fn exit_if_all_gone(&mut self, out: &mut Vec<Action>) {
        let Mode::ShuttingDown(shutdown) = &self.mode else {
            return;
        };
        if !self.children.is_empty() || self.builds.running.is_some() {
            return;
        }
        let outcome = shutdown.outcome();
        self.mode = Mode::Done;
        out.push(Action::Exit(outcome));
    }
}
