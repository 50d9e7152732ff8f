//! The shared vocabulary between the loop, the supervisor state machine and the code that
//! carries out its actions: generations, triggers, how a child ended, what the supervisor
//! is told (`Event`), what it asks for (`Action`), what the user is told (`Status`) and how
//! hotrun ends (`Outcome`).
//!
//! Everything here is plain data: no file descriptors, no processes, no clocks read. It
//! imports nothing of hotrun's above `file_id` (a file's identity) and `format` (how a
//! value is written).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::file_id::FileId;
use crate::format;

/// The number of a child generation: 1 for the first child, +1 for every child started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Generation(pub(crate) u64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gen {}", self.0)
    }
}

/// Why a generation was started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// hotrun's own start.
    Start,
    /// The command's executable was replaced.
    BinaryChanged,
    /// A `--watch` path changed.
    PathChanged(PathBuf),
    /// hotrun received a restart signal (SIGHUP or SIGUSR1).
    Signal(Signal),
    /// `--on-exit restart`: the previous generation exited on its own.
    Crashed,
    /// `hotrun drill`: restart number N of the drill.
    Drill(usize),
    /// A listening socket was broken by a child and bound anew; the generation serving
    /// holds the broken one.
    SocketRebound,
    /// The new generation exited on its own while the older one it replaced was
    /// stopping (it most likely found the older one still holding its port); it is
    /// started again once no older generation is alive.
    Retry,
    /// `--build`: a build succeeded and the command is a wrapper (a shell, an interpreter)
    /// that no build changes, or nothing was running.
    Built,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Start => f.write_str("start"),
            Trigger::BinaryChanged => f.write_str("binary changed"),
            Trigger::PathChanged(p) => write!(f, "{} changed", p.display()),
            Trigger::Signal(s) => f.write_str(s.as_str()),
            Trigger::Crashed => f.write_str("restart after exit"),
            Trigger::Drill(n) => write!(f, "drill restart {n}"),
            Trigger::SocketRebound => f.write_str("listening socket bound anew"),
            Trigger::Retry => f.write_str("retry after the old generation was gone"),
            Trigger::Built => f.write_str("rebuilt"),
        }
    }
}

/// Why a build runs (`--build`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BuildTrigger {
    /// hotrun's start: the build runs once before generation 1.
    Start,
    /// A `--watch` path changed.
    Changed(PathBuf),
}

impl fmt::Display for BuildTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildTrigger::Start => f.write_str("start"),
            BuildTrigger::Changed(path) => write!(f, "{} changed", path.display()),
        }
    }
}

/// The number of a build: 1 for the first, +1 for each build started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct BuildId(pub(crate) u64);

/// What happens after a successful build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AfterBuild {
    /// The command is restarted (or started): the build changed it, or nothing ran.
    Restart,
    /// The executable is the one running: nothing to restart.
    Unchanged { serving: Option<Generation> },
    /// There is no runnable program at the command's path.
    NoProgram { program: PathBuf },
}

/// What happens after a failed build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AfterFailedBuild {
    /// This generation keeps serving.
    Serving(Generation),
    /// No generation ran yet: the executable from before the build is started.
    StartFromBefore { program: PathBuf },
    /// Nothing runs, and nothing will until the next change.
    NothingToRun,
}

/// How a child process ended, as `waitid` reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChildEnd {
    /// It called `exit` with this code.
    Exited(i32),
    /// A signal with this number killed it.
    Signaled(i32),
}

impl ChildEnd {
    /// A shell's exit code for a death by signal N is this + N.
    const SIGNAL_BASE: i32 = 128;

    /// The shell's convention: the exit code, or 128 + the signal number.
    pub(crate) fn code(self) -> i32 {
        match self {
            ChildEnd::Exited(code) => code,
            ChildEnd::Signaled(sig) => ChildEnd::SIGNAL_BASE + sig,
        }
    }
}

impl fmt::Display for ChildEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildEnd::Exited(code) => write!(f, "exited with {code}"),
            ChildEnd::Signaled(sig) => write!(f, "killed by {}", format::signal_name(*sig)),
        }
    }
}

/// The signals that make hotrun shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShutdownSignal {
    Interrupt,
    Terminate,
    Quit,
    /// SIGHUP while the controlling terminal is gone: the session ended.
    TerminalClosed,
    /// The caller's own final stop (`hotrun drill` ends this way): no signal came, but it
    /// goes as a SIGTERM would, and a second one does not force anything.
    Asked,
}

impl ShutdownSignal {
    /// The signal hotrun received.
    pub(crate) fn received(self) -> Signal {
        match self {
            ShutdownSignal::Interrupt => Signal::SIGINT,
            ShutdownSignal::Terminate | ShutdownSignal::Asked => Signal::SIGTERM,
            ShutdownSignal::Quit => Signal::SIGQUIT,
            ShutdownSignal::TerminalClosed => Signal::SIGHUP,
        }
    }
}

/// Why a spawn attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SpawnFailure {
    /// The error as the user should read it.
    pub(crate) message: String,
    /// The binary may be in the middle of being replaced (ETXTBSY, ENOENT, EACCES,
    /// ENOEXEC): worth trying again shortly.
    pub(crate) transient: bool,
    /// The exit code hotrun uses if this failure ends it: `exit::CANNOT_EXECUTE` or
    /// `exit::NOT_FOUND`, like a shell (`exit::FAILURE` when hotrun could not prepare it).
    pub(crate) exit_code: i32,
}

/// What socket takeover saw a generation do with a listening socket (only Linux's
/// takeover sends any).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) enum SocketNews {
    /// It listens on `addr` (a socket hotrun holds). `first`: the first generation to
    /// listen there; hotrun holds the socket from now on.
    Listening { addr: String, first: bool },
    /// It bound `addr`, which hotrun holds, and got the held socket.
    TookOver { addr: String },
    /// It accepted a connection on a socket hotrun holds for the first time.
    Accepting,
    /// It bound `addr`, which hotrun holds, but could not be given the held socket.
    Declined { addr: String, why: String },
    /// It accepts on `addr` with the shared socket in another blocking mode than `other`
    /// did (the mode is shared by every holder).
    ModeDiffers {
        addr: String,
        other: Generation,
        other_nonblocking: bool,
        nonblocking: bool,
    },
}

/// Everything the supervisor is told.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Event {
    /// SIGINT, SIGTERM, SIGQUIT, or SIGHUP with the terminal gone.
    Shutdown(ShutdownSignal),
    /// A restart was asked for: SIGHUP or SIGUSR1, `hotrun drill`, or a listening socket a
    /// generation broke and hotrun bound anew. (The binary and `--watch` paths come as
    /// their own events: the supervisor decides whether they restart.)
    Restart(Trigger),
    /// Something happened to the command's executable; this is what is at its path now
    /// (`None`: nothing).
    BinaryChanged(Option<FileId>),
    /// A `--watch` path changed; the path as the user would write it (relative to the
    /// current directory when it lies below it), which is how every message shows it.
    PathChanged(PathBuf),
    /// A `Spawn` action succeeded: the exec went through.
    Spawned {
        generation: Generation,
        pid: u32,
        binary: Option<FileId>,
    },
    /// A `Spawn` action failed.
    SpawnFailed(SpawnFailure),
    /// The generation's first process ended. It is not reaped yet, so its process group id
    /// cannot be reused while the supervisor still decides what to do.
    LeaderExited {
        generation: Generation,
        end: ChildEnd,
        group_empty: bool,
    },
    /// The generation's first process was stopped (SIGTTIN, SIGTTOU, SIGSTOP, SIGTSTP).
    LeaderStopped { generation: Generation, signal: i32 },
    /// The answer to a `CheckGroup` action.
    GroupChecked { generation: Generation, empty: bool },
    /// A generation's `NOTIFY_SOCKET` got a message.
    Notify {
        generation: Generation,
        ready: bool,
        status: Option<String>,
    },
    /// The answer to a `CheckDrained` action: how many connections the generation
    /// accepted on sockets hotrun holds are still open.
    DrainChecked { generation: Generation, open: usize },
    /// Socket takeover saw the generation bind, listen or accept.
    Socket {
        generation: Generation,
        news: SocketNews,
    },
    /// `--build`: a `Build` action started the build command (its exec went through).
    BuildStarted { build: BuildId },
    /// `--build`: a `Build` action could not start the build command.
    BuildSpawnFailed { build: BuildId, message: String },
    /// `--build`: the build's first process (the shell) ended. It is not reaped yet, so
    /// its process group id cannot be reused while the supervisor decides. `binary`: what
    /// is at the command's path now; `same_as_running`: that file has, byte for byte, the
    /// content of the newest generation's executable (a build tool that writes its output
    /// anew when nothing changed: `go build -o`).
    BuildExited {
        build: BuildId,
        end: ChildEnd,
        group_empty: bool,
        binary: Option<FileId>,
        same_as_running: bool,
    },
    /// The answer to a `CheckBuildGroup` action.
    BuildGroupChecked { build: BuildId, empty: bool },
    /// A deadline that the supervisor gave in `next_deadline` has passed.
    Tick,
}

/// Everything the supervisor asks for.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// Start this generation of the command (answer: `Spawned` or `SpawnFailed`).
    Spawn {
        generation: Generation,
        trigger: Trigger,
    },
    /// Send a signal to the generation's whole process group.
    Signal {
        generation: Generation,
        signal: Signal,
    },
    /// The generation is being replaced: from now on it gets no new connection on the
    /// sockets hotrun holds (its accepts are held back).
    Drain { generation: Generation },
    /// How many connections the draining generation accepted are still open? (answer:
    /// `DrainChecked`)
    CheckDrained { generation: Generation },
    /// Is anything but the (zombie) leader left in the generation's group? (answer:
    /// `GroupChecked`)
    CheckGroup { generation: Generation },
    /// The generation is over: reap its leader; its process group id may be reused after.
    Reap { generation: Generation },
    /// `--build`: run the build command, in a new process group (answer: `BuildStarted`
    /// or `BuildSpawnFailed`; later `BuildExited`).
    Build {
        build: BuildId,
        trigger: BuildTrigger,
    },
    /// Send a signal to the build's whole process group.
    SignalBuild { build: BuildId, signal: Signal },
    /// Is anything but the (zombie) leader left in the build's group? (answer:
    /// `BuildGroupChecked`)
    CheckBuildGroup { build: BuildId },
    /// The build is over: reap its leader; its process group id may be reused after.
    ReapBuild { build: BuildId },
    /// Tell the user.
    Report(Status),
    /// hotrun is done.
    Exit(Outcome),
}

/// How hotrun ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Exit with the status of the child (`received`: the signal that made hotrun shut
    /// down, if any; when the child died of that same signal, hotrun dies of it too).
    Child {
        end: ChildEnd,
        received: Option<Signal>,
    },
    /// hotrun was told to stop while no child was running.
    Signaled(Signal),
    /// The command could not be started at all.
    CannotStart(i32),
}

/// How a generation that hotrun asked to stop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StopEnd {
    /// How its first process ended.
    pub(crate) end: ChildEnd,
    /// The stop signal it was sent.
    pub(crate) signal: Signal,
    /// Another signal it was sent later, if any (a SIGINT forwarded while it was already
    /// stopping on SIGTERM).
    pub(crate) also: Option<Signal>,
    /// Why its group got SIGKILL, if it did.
    pub(crate) killed: Option<Kill>,
}

/// Why a stopping generation's group got SIGKILL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kill {
    /// The grace period ran out.
    GraceExpired,
    /// hotrun got a second SIGINT/SIGTERM/SIGQUIT and killed every group at once.
    Forced,
}

impl StopEnd {
    /// The one rule for a clean stop (README, "CI: events and drills"): the whole group was
    /// gone within the grace period without SIGKILL, and the leader exited 0, died of a stop
    /// signal it was sent (the default disposition, as in Go's net/http or python's
    /// http.server), or exited with 128 + that signal's number (a shell's way of saying the
    /// same). The status line, the `--events` `exited` object and the drill all ask this.
    pub(crate) fn is_clean(&self) -> bool {
        self.killed.is_none()
            && (self.end == ChildEnd::Exited(0) || self.by_stop_signal().is_some())
    }

    /// The stop signal the leader's end answers: death by it, or exit 128 + it.
    fn by_stop_signal(&self) -> Option<Signal> {
        let number = match self.end {
            ChildEnd::Signaled(sig) => sig,
            ChildEnd::Exited(code) => code - ChildEnd::SIGNAL_BASE,
        };
        std::iter::once(self.signal)
            .chain(self.also)
            .find(|s| *s as i32 == number)
    }

    /// The one sentence that tells how the stop went, e.g. `gen 1 stopped cleanly in 2.0 ms
    /// (killed by SIGTERM, the stop signal it was sent)`; `took`: the time since the stop
    /// signal. The status line and the drill both print it.
    pub(crate) fn sentence(&self, generation: Generation, took: Duration) -> String {
        let took = format::human_duration(took);
        if let Some(kill) = self.killed {
            let what = match self.end {
                ChildEnd::Signaled(9) => "killed by SIGKILL".to_string(),
                end => format!("{end}, but its group needed SIGKILL"),
            };
            let why = match (kill, self.end) {
                (Kill::Forced, _) => "a second signal to hotrun killed every group at once",
                (Kill::GraceExpired, ChildEnd::Signaled(9)) => {
                    "it was still running when the grace period ran out"
                }
                (Kill::GraceExpired, _) => {
                    "processes of its group were still running when the grace period ran out"
                }
            };
            return format!("{generation} killed after {took} ({what}): not a clean stop ({why})");
        }
        if self.end == ChildEnd::Exited(0) {
            return format!("{generation} stopped cleanly in {took} (exited with 0)");
        }
        match (self.by_stop_signal(), self.end) {
            (Some(signal), ChildEnd::Signaled(_)) => format!(
                "{generation} stopped cleanly in {took} (killed by {}, the stop signal it was sent)",
                signal.as_str()
            ),
            (Some(signal), ChildEnd::Exited(code)) => format!(
                "{generation} stopped cleanly in {took} (exited with {code} = 128 + {}, the stop \
                 signal it was sent)",
                signal.as_str()
            ),
            (None, end) => {
                let what = match end {
                    ChildEnd::Signaled(_) => format!("was {end}"),
                    ChildEnd::Exited(_) => end.to_string(),
                };
                let expected = std::iter::once(self.signal)
                    .chain(self.also)
                    .map(Signal::as_str)
                    .collect::<Vec<_>>()
                    .join(" or ");
                format!(
                    "{generation} stopped in {took} but {what}: not a clean stop (expected exit 0 \
                     or death by {expected})"
                )
            }
        }
    }
}

/// One lifecycle step, told to the user as one line.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Status {
    /// A generation's exec went through (`latency`: since its trigger).
    Started {
        generation: Generation,
        pid: u32,
        trigger: Trigger,
        latency: Duration,
    },
    /// The stop signal went to the generation's group; its grace period runs.
    StopSent {
        generation: Generation,
        signal: Signal,
    },
    /// A generation hotrun asked to stop is gone, its whole group with it.
    Stopped {
        generation: Generation,
        end: StopEnd,
        /// Since the stop signal.
        after: Duration,
        /// Since it started.
        alive: Duration,
    },
    /// A stopping generation's group was still there after `grace`: SIGKILL.
    GraceExpired {
        generation: Generation,
        grace: Duration,
    },
    /// It ended without being asked to.
    Exited {
        generation: Generation,
        end: ChildEnd,
        alive: Duration,
    },
    /// Its first process ended, but other processes of its group live on.
    Lingering {
        generation: Generation,
        end: ChildEnd,
    },
    /// The new generation ended on its own while the older one it replaces was stopping
    /// (or just after): it is tried again once no older generation is alive.
    RetryAfterOld {
        generation: Generation,
        end: ChildEnd,
        older: Generation,
        /// The older generations are all gone already: the retry starts at once.
        older_gone: bool,
    },
    /// A new generation could not start (for good: retries are over).
    SpawnFailed {
        message: String,
        still_serving: Option<Generation>,
    },
    /// The old generation takes no new connection; its stop signal follows once the
    /// connections it accepted are closed, after `min` at least and `max` at most.
    Draining {
        generation: Generation,
        min: Duration,
        max: Duration,
    },
    /// The drain ended with `open` connections still open, `waited` after it began (the
    /// `Draining` report).
    DrainCut {
        generation: Generation,
        open: usize,
        waited: Duration,
    },
    /// The generation listens on a socket hotrun now holds for later generations.
    SocketHeld {
        generation: Generation,
        addr: String,
    },
    /// The generation bound an address hotrun holds and was given that socket.
    SocketTakenOver {
        generation: Generation,
        addr: String,
    },
    /// Two generations sharing a socket use it in different blocking modes.
    SocketModeDiffers {
        generation: Generation,
        addr: String,
        other: Generation,
        other_nonblocking: bool,
        nonblocking: bool,
    },
    /// The generation bound an address hotrun holds but could not be given the socket.
    TakeoverDeclined {
        generation: Generation,
        addr: String,
        why: String,
    },
    /// The new generation is ready (`how`: "READY=1", "delay", "listen").
    Ready {
        generation: Generation,
        after: Duration,
        how: &'static str,
    },
    /// The new generation was not ready in time.
    NotReady {
        generation: Generation,
        after: Duration,
        still_serving: Option<Generation>,
    },
    /// The new generation ended before it was ready; the old one keeps serving.
    RolledBack {
        generation: Generation,
        end: ChildEnd,
        alive: Duration,
        still_serving: Generation,
    },
    /// Its first process is stopped by a signal (it hangs until continued).
    Suspended {
        generation: Generation,
        signal: i32,
    },
    /// `STATUS=` from a generation's notify socket.
    ChildSays {
        generation: Generation,
        text: String,
    },
    /// A restart trigger came in while a restart was going on.
    Queued {
        trigger: Trigger,
    },
    /// Nothing runs; waiting for a change or SIGHUP.
    Waiting,
    /// `--on-exit restart`: the next start is after this delay.
    Backoff {
        delay: Duration,
    },
    /// The command's executable stayed missing (`MISSING_REPORT_AFTER`).
    BinaryMissing,
    /// Restarts keep coming from a `--watch` path that changes right after each start:
    /// the server probably writes it.
    SelfWrites {
        path: PathBuf,
    },
    /// `--build`: the build command started.
    BuildStarted {
        trigger: BuildTrigger,
    },
    /// `--build`: the build succeeded (exit 0) after `took`.
    BuildFinished {
        took: Duration,
        then: AfterBuild,
    },
    /// `--build`: the build failed after `took`; nothing is restarted.
    BuildFailed {
        end: ChildEnd,
        took: Duration,
        then: AfterFailedBuild,
    },
    /// `--build`: `changed` changed while a build ran; the build is stopped and runs
    /// again once its process group is gone.
    BuildStopping {
        changed: PathBuf,
    },
    /// `--build`: `changed` changed while a build ran, but `stops` builds in a row were
    /// stopped for changes during them already: this one finishes, another follows.
    BuildQueued {
        changed: PathBuf,
        stops: u32,
    },
    /// `--build`: a build hotrun stopped is gone, its whole group with it. `rebuilding`:
    /// another build starts now (already said when it was stopped).
    BuildStopped {
        end: ChildEnd,
        took: Duration,
        killed: bool,
        rebuilding: bool,
    },
    /// `--build`: a stopped build's group was still running when the grace period ran out.
    BuildGraceExpired {
        grace: Duration,
    },
    /// `--build`: builds keep being started by `path` changing right after each build.
    BuildLoop {
        path: PathBuf,
    },
    /// `--build`: the build command could not be started at all.
    BuildCannotStart {
        message: String,
    },
    /// hotrun got a signal that stops it, or `hotrun drill` made its final stop: every
    /// generation is stopped (a second signal: `ForceKill`, SIGKILL to every group).
    ShuttingDown {
        why: ShutdownSignal,
    },
    ForceKill,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop(end: ChildEnd, killed: Option<Kill>) -> StopEnd {
        StopEnd {
            end,
            signal: Signal::SIGTERM,
            also: None,
            killed,
        }
    }

    #[test]
    fn one_rule_and_one_sentence_for_a_clean_stop() {
        let g = Generation(1);
        let cases = [
            (
                stop(ChildEnd::Exited(0), None),
                true,
                "gen 1 stopped cleanly in 2.0 ms (exited with 0)",
            ),
            (
                stop(ChildEnd::Signaled(libc::SIGTERM), None),
                true,
                "gen 1 stopped cleanly in 2.0 ms (killed by SIGTERM, the stop signal it was sent)",
            ),
            (
                stop(ChildEnd::Exited(128 + libc::SIGTERM), None),
                true,
                "gen 1 stopped cleanly in 2.0 ms (exited with 143 = 128 + SIGTERM, the stop \
                 signal it was sent)",
            ),
            (
                stop(ChildEnd::Exited(5), None),
                false,
                "gen 1 stopped in 2.0 ms but exited with 5: not a clean stop (expected exit 0 \
                 or death by SIGTERM)",
            ),
            (
                stop(ChildEnd::Signaled(libc::SIGSEGV), None),
                false,
                "gen 1 stopped in 2.0 ms but was killed by SIGSEGV: not a clean stop (expected \
                 exit 0 or death by SIGTERM)",
            ),
            (
                stop(ChildEnd::Exited(128 + libc::SIGINT), None),
                false,
                "gen 1 stopped in 2.0 ms but exited with 130: not a clean stop (expected exit 0 \
                 or death by SIGTERM)",
            ),
            (
                stop(ChildEnd::Signaled(libc::SIGKILL), Some(Kill::GraceExpired)),
                false,
                "gen 1 killed after 2.0 ms (killed by SIGKILL): not a clean stop (it was still \
                 running when the grace period ran out)",
            ),
            (
                stop(ChildEnd::Exited(0), Some(Kill::GraceExpired)),
                false,
                "gen 1 killed after 2.0 ms (exited with 0, but its group needed SIGKILL): not a \
                 clean stop (processes of its group were still running when the grace period \
                 ran out)",
            ),
            (
                stop(ChildEnd::Signaled(libc::SIGKILL), Some(Kill::Forced)),
                false,
                "gen 1 killed after 2.0 ms (killed by SIGKILL): not a clean stop (a second \
                 signal to hotrun killed every group at once)",
            ),
        ];
        for (end, clean, sentence) in cases {
            assert_eq!(end.is_clean(), clean, "{end:?}");
            assert_eq!(end.sentence(g, Duration::from_millis(2)), sentence);
        }
    }

    #[test]
    fn a_signal_forwarded_later_counts_as_a_stop_signal() {
        let end = StopEnd {
            end: ChildEnd::Signaled(libc::SIGINT),
            signal: Signal::SIGTERM,
            also: Some(Signal::SIGINT),
            killed: None,
        };
        assert!(end.is_clean());
        let other = StopEnd {
            end: ChildEnd::Exited(1),
            ..end
        };
        assert!(
            other
                .sentence(Generation(2), Duration::from_millis(1))
                .ends_with("(expected exit 0 or death by SIGTERM or SIGINT)")
        );
    }
}
