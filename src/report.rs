//! Telling the user and the machine: one status line on stderr per lifecycle step, styled
//! with `console`, and (`--events`, through `event_log.rs`) one JSON line made from the
//! same `Status`. Warnings, hints and hotrun's exit go through here too.
//!
//! Write errors are ignored on purpose: a closed or broken stderr must never take the
//! supervision loop down with it (the children still need stopping).

use std::io::Write;

use clap::ValueEnum;
use console::{Style, Term};

use crate::event::{AfterBuild, AfterFailedBuild, ChildEnd, Outcome, ShutdownSignal, Status};
use crate::event_log::EventLog;
use crate::format::{human_duration, signal_name};

/// `--color`: whether status lines are coloured (`Auto`: on a terminal, unless `NO_COLOR`
/// is set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Tells the user (stderr) and, with `--events`, the machine (JSON lines).
pub(crate) struct Reporter {
    term: Term,
    quiet: bool,
    events: EventLog,
}

enum Level {
    Info,
    Good,
    Warn,
    Error,
}

impl Reporter {
    pub(crate) fn new(quiet: bool, color: ColorChoice, events: EventLog) -> Reporter {
        match color {
            ColorChoice::Always => console::set_colors_enabled_stderr(true),
            ColorChoice::Never => console::set_colors_enabled_stderr(false),
            ColorChoice::Auto => {}
        }
        Reporter {
            term: Term::stderr(),
            quiet,
            events,
        }
    }

    pub(crate) fn status(&mut self, status: &Status) {
        let (level, text) = describe(status);
        self.line(level, &text);
        let failed = self.events.status(status);
        self.events_failed(failed);
    }

    /// A problem that is not a lifecycle step; an `error` event too.
    pub(crate) fn warn(&mut self, text: &str) {
        self.line(Level::Warn, text);
        let failed = self
            .events
            .emit("error", serde_json::json!({ "message": text }));
        self.events_failed(failed);
    }

    /// Advice for the human (a wrapper that hides the real binary, a server that binds the
    /// port itself); no event: it is not a lifecycle step.
    pub(crate) fn hint(&mut self, text: &str) {
        self.line(Level::Warn, text);
    }

    /// A free-form line with its own event.
    pub(crate) fn info(&mut self, text: &str, event: &str, fields: serde_json::Value) {
        self.line(Level::Info, text);
        let failed = self.events.emit(event, fields);
        self.events_failed(failed);
    }

    /// An event with no status line.
    pub(crate) fn event(&mut self, event: &str, fields: serde_json::Value) {
        let failed = self.events.emit(event, fields);
        self.events_failed(failed);
    }

    pub(crate) fn exit(&mut self, outcome: Outcome) {
        let failed = self.events.exit(outcome);
        self.events_failed(failed);
    }

    fn events_failed(&self, failed: Option<String>) {
        if let Some(why) = failed {
            self.line(Level::Error, &why);
        }
    }

    fn line(&self, level: Level, text: &str) {
        if text.is_empty() || (self.quiet && !matches!(level, Level::Error)) {
            return;
        }
        let style = match level {
            Level::Info => Style::new().for_stderr(),
            Level::Good => Style::new().for_stderr().green(),
            Level::Warn => Style::new().for_stderr().yellow(),
            Level::Error => Style::new().for_stderr().red().bold(),
        };
        let prefix = Style::new().for_stderr().dim().apply_to("hotrun:");
        let line = format!("{prefix} {}\n", style.apply_to(text));
        let _ = (&self.term).write_all(line.as_bytes());
    }
}

fn describe(status: &Status) -> (Level, String) {
    match status {
        Status::Started {
            generation,
            pid,
            trigger,
            latency,
        } => (
            Level::Good,
            format!(
                "{generation} started in {} ({trigger}), pid {pid}",
                human_duration(*latency)
            ),
        ),
        Status::StopSent { generation, signal } => (
            Level::Info,
            format!(
                "{generation}: sent {} to its process group",
                signal.as_str()
            ),
        ),
        Status::Stopped {
            generation,
            end,
            after,
            ..
        } => (
            if end.is_clean() {
                Level::Info
            } else {
                Level::Warn
            },
            end.sentence(*generation, *after),
        ),
        Status::GraceExpired { generation, grace } => (
            Level::Warn,
            format!(
                "{generation} still running {} after the stop signal; sending SIGKILL to its process group",
                human_duration(*grace)
            ),
        ),
        Status::Exited {
            generation,
            end,
            alive,
        } => (
            Level::Warn,
            format!("{generation} {end} after {}", human_duration(*alive)),
        ),
        Status::Lingering { generation, end } => (
            Level::Warn,
            format!("{generation} {end}, but other processes of its group live on; stopping them"),
        ),
        Status::RetryAfterOld {
            generation,
            end,
            older,
            older_gone: false,
        } => (
            Level::Warn,
            format!(
                "{generation} {end} while {older} was still stopping (a port or lock it holds?); starting it again once {older} is gone"
            ),
        ),
        Status::RetryAfterOld {
            generation,
            end,
            older,
            older_gone: true,
        } => (
            Level::Warn,
            format!(
                "{generation} {end} while {older} was stopping (a port or lock it held?); {older} is gone now: starting it again"
            ),
        ),
        Status::SpawnFailed {
            message,
            still_serving,
        } => {
            let tail = match still_serving {
                Some(g) => format!("; {g} keeps running"),
                None => String::new(),
            };
            (Level::Error, format!("{message}{tail}"))
        }
        Status::Draining {
            generation,
            min,
            max,
        } => (
            Level::Info,
            format!(
                "{generation} takes no new connections; its stop signal follows once the connections it accepted are closed (in {} at least, {} at most)",
                human_duration(*min),
                human_duration(*max)
            ),
        ),
        Status::DrainCut {
            generation,
            open,
            waited,
        } => (
            Level::Info,
            format!(
                "{generation} is still busy with {open} connection{} (or an accept under way) after {} of draining; stopping it anyway (keep-alive?)",
                if *open == 1 { "" } else { "s" },
                human_duration(*waited)
            ),
        ),
        Status::SocketHeld { generation, addr } => (
            Level::Info,
            format!(
                "{generation} listens on {addr}; hotrun holds that socket for the next generations (socket takeover)"
            ),
        ),
        Status::SocketTakenOver { generation, addr } => (
            Level::Good,
            format!("{generation} took over {addr}, the listening socket hotrun holds"),
        ),
        Status::SocketModeDiffers {
            generation,
            addr,
            other,
            other_nonblocking,
            nonblocking,
        } => {
            let mode = |nb: &bool| if *nb { "non-blocking" } else { "blocking" };
            (
                Level::Warn,
                format!(
                    "{generation} accepts on {addr} as a {} socket, {other} did as a {} one; they share one socket and one mode, so {other} may not stop cleanly (a server should keep one mode across builds)",
                    mode(nonblocking),
                    mode(other_nonblocking)
                ),
            )
        }
        Status::TakeoverDeclined {
            generation,
            addr,
            why,
        } => (
            Level::Warn,
            format!(
                "{generation} bound {addr} but cannot take over the socket hotrun holds: {why}; its bind runs as without takeover"
            ),
        ),
        Status::Ready {
            generation,
            after,
            how,
        } => (
            Level::Good,
            format!(
                "{generation} ready after {} ({how})",
                human_duration(*after)
            ),
        ),
        Status::NotReady {
            generation,
            after,
            still_serving: Some(old),
        } => (
            Level::Error,
            format!(
                "{generation} not ready after {}; stopping it, {old} keeps serving",
                human_duration(*after)
            ),
        ),
        Status::NotReady {
            generation,
            after,
            still_serving: None,
        } => (
            Level::Warn,
            format!(
                "{generation} not ready after {}; keeping it, nothing else can serve",
                human_duration(*after)
            ),
        ),
        Status::RolledBack {
            generation,
            end,
            alive,
            still_serving,
        } => (
            Level::Error,
            format!(
                "{generation} {end} after {} before ready; {still_serving} still serving",
                human_duration(*alive)
            ),
        ),
        Status::Suspended { generation, signal } => (Level::Error, suspended(*generation, *signal)),
        Status::ChildSays { generation, text } => (Level::Info, format!("{generation}: {text}")),
        Status::Queued { trigger } => (
            Level::Info,
            format!(
                "restart requested ({trigger}) during a restart; it follows once this one is done"
            ),
        ),
        Status::Waiting => (
            Level::Info,
            "waiting for a change (or SIGHUP) to start it again".into(),
        ),
        Status::Backoff { delay } => (
            Level::Info,
            format!("restarting in {}", human_duration(*delay)),
        ),
        Status::BinaryMissing => (
            Level::Warn,
            "the command's executable is gone; what runs keeps running until a new build appears"
                .into(),
        ),
        Status::SelfWrites { path } => (
            Level::Warn,
            format!(
                "restarts keep coming from {}, which changes right after each start: is the \
                 server writing it? --ignore it or move it out of the watched directory",
                path.display()
            ),
        ),
        Status::BuildStarted { trigger } => (Level::Info, format!("build started ({trigger})")),
        Status::BuildFinished { took, then } => match then {
            AfterBuild::Restart => (
                Level::Good,
                format!("build finished in {}", human_duration(*took)),
            ),
            AfterBuild::Unchanged { serving } => (
                Level::Good,
                format!(
                    "build finished in {}; the executable did not change: {}",
                    human_duration(*took),
                    match serving {
                        Some(g) => format!("{g} keeps serving"),
                        None => "nothing to restart".into(),
                    }
                ),
            ),
            AfterBuild::NoProgram { program } => (
                Level::Warn,
                format!(
                    "build finished in {}, but there is no program at {} to run: is it the file \
                     the build writes?",
                    human_duration(*took),
                    program.display()
                ),
            ),
        },
        Status::BuildFailed { end, took, then } => {
            let what = match end {
                ChildEnd::Exited(code) => format!("exit {code}"),
                end => end.to_string(),
            };
            let then = match then {
                AfterFailedBuild::Serving(g) => format!("{g} still serving"),
                AfterFailedBuild::StartFromBefore { program } => format!(
                    "starting the executable from before the build ({})",
                    program.display()
                ),
                AfterFailedBuild::NothingToRun => {
                    "nothing to restart; the next change builds again".into()
                }
            };
            (
                Level::Error,
                format!(
                    "build failed ({what}) after {}; {then}",
                    human_duration(*took)
                ),
            )
        }
        Status::BuildStopping { changed } => (
            Level::Info,
            format!(
                "build stopped: {} changed during it; building again",
                changed.display()
            ),
        ),
        Status::BuildQueued { changed, stops } => (
            Level::Warn,
            format!(
                "{} changed during the build; {stops} builds in a row were stopped for changes \
                 during them, so this one finishes and another follows (if the build writes \
                 into a watched directory, keep its output out of --watch)",
                changed.display()
            ),
        ),
        Status::BuildStopped {
            end,
            took,
            killed,
            rebuilding,
        } => (
            Level::Info,
            if *rebuilding {
                // Said when it was stopped ("building again").
                String::new()
            } else {
                format!(
                    "build stopped after {} ({end}{})",
                    human_duration(*took),
                    if *killed {
                        ", its group needed SIGKILL"
                    } else {
                        ""
                    }
                )
            },
        ),
        Status::BuildGraceExpired { grace } => (
            Level::Warn,
            format!(
                "build still running {} after the stop signal; sending SIGKILL to its process group",
                human_duration(*grace)
            ),
        ),
        Status::BuildCannotStart { message } => (Level::Error, message.clone()),
        Status::BuildLoop { path } => (
            Level::Warn,
            format!(
                "builds keep being started by {} changing right after each build: if something \
                 writes it by itself (a log, the server, the build), keep it out of the watched \
                 directories (--watch the sources only)",
                path.display()
            ),
        ),
        Status::ShuttingDown {
            why: ShutdownSignal::Asked,
        } => (
            Level::Info,
            "drill: final stop: sending SIGTERM (a signal to hotrun kills at once)".into(),
        ),
        Status::ShuttingDown { why } => (
            Level::Info,
            format!(
                "got {}: stopping (again to kill at once)",
                why.received().as_str()
            ),
        ),
        Status::ForceKill => (
            Level::Warn,
            "second signal: killing every process group now".into(),
        ),
    }
}

/// Why a generation hangs, and what to do about it.
fn suspended(generation: crate::event::Generation, signal: i32) -> String {
    let name = signal_name(signal);
    let why = match signal {
        libc::SIGTTIN => {
            "it read from the terminal, which only the foreground process group may do (each \
             generation has its own group); hotrun gives it /dev/null unless --stdin is set: \
             drop --stdin, or feed its input from a file or pipe"
        }
        libc::SIGTTOU => {
            "it changed terminal settings (or wrote with `stty tostop`) from the background; \
             redirect its output away from the terminal, or stop it touching the terminal"
        }
        _ => "`kill -CONT` its process group to resume it",
    };
    format!("{generation} is stopped by {name} and will hang: {why}")
}
