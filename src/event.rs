//! The shared vocabulary between the event sources, the supervisor state machine and the
//! code that carries out its actions: generations, triggers, how a child ended, what the
//! supervisor is told (`Event`) and what it asks for (`Action`).
//!
//! Everything here is plain data: no file descriptors, no processes, no clocks read.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

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
    /// The new generation exited while an older one was still stopping (it most likely
    /// found the older one still holding its port); it is started again once the older
    /// generation is gone.
    Retry,
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
        }
    }
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
    /// The shell's convention: the exit code, or 128 + the signal number.
    pub(crate) fn code(self) -> i32 {
        match self {
            ChildEnd::Exited(code) => code,
            ChildEnd::Signaled(sig) => 128 + sig,
        }
    }
}

impl fmt::Display for ChildEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildEnd::Exited(code) => write!(f, "exited with {code}"),
            ChildEnd::Signaled(sig) => match Signal::try_from(*sig) {
                Ok(s) => write!(f, "killed by {}", s.as_str()),
                Err(_) => write!(f, "killed by signal {sig}"),
            },
        }
    }
}

/// The identity of the file at a path: a restart is due only when it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileSig {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) size: u64,
    pub(crate) mtime_ns: i128,
    /// A regular file with at least one execute bit set.
    pub(crate) executable: bool,
}

impl FileSig {
    /// Whether a file with this identity can be started: a complete build is an executable
    /// regular file that is not empty (GNU ld sets the execute bits only once it is done).
    pub(crate) fn is_runnable(&self) -> bool {
        self.executable && self.size > 0
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
}

impl ShutdownSignal {
    /// The signal hotrun received.
    pub(crate) fn received(self) -> Signal {
        match self {
            ShutdownSignal::Interrupt => Signal::SIGINT,
            ShutdownSignal::Terminate => Signal::SIGTERM,
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
    /// The exit code hotrun uses if this failure ends it (126 or 127, like a shell).
    pub(crate) exit_code: i32,
}

/// Everything the supervisor is told.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Event {
    /// SIGINT, SIGTERM, SIGQUIT, or SIGHUP with the terminal gone.
    Shutdown(ShutdownSignal),
    /// A restart was asked for (SIGHUP, SIGUSR1).
    Restart(Trigger),
    /// Something happened to the command's executable; this is what is at its path now
    /// (`None`: nothing).
    BinaryChanged(Option<FileSig>),
    /// A `--watch` path changed.
    PathChanged(PathBuf),
    /// A `Spawn` action succeeded: the exec went through.
    Spawned {
        generation: Generation,
        pid: u32,
        binary: Option<FileSig>,
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
    /// Is anything but the (zombie) leader left in the generation's group? (answer:
    /// `GroupChecked`)
    CheckGroup { generation: Generation },
    /// The generation is over: reap its leader; its process group id may be reused after.
    Reap { generation: Generation },
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
pub(crate) enum StopEnd {
    /// Its whole group was gone before the grace period ran out.
    Clean(ChildEnd),
    /// The grace period ran out and its group got SIGKILL.
    Killed(ChildEnd),
}

/// One lifecycle step, told to the user as one line.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Status {
    Started {
        generation: Generation,
        pid: u32,
        trigger: Trigger,
        latency: Duration,
    },
    StopSent {
        generation: Generation,
        signal: Signal,
    },
    Stopped {
        generation: Generation,
        end: StopEnd,
        /// Since the stop signal.
        after: Duration,
        /// Since it started.
        alive: Duration,
    },
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
    /// The new generation ended while an older one still ran; it is tried again once the
    /// older one is gone.
    RetryAfterOld {
        generation: Generation,
        end: ChildEnd,
        older: Generation,
    },
    SpawnFailed {
        message: String,
        still_serving: Option<Generation>,
    },
    /// The new generation is ready (`how`: "READY=1", "delay").
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
    BinaryMissing,
    /// Restarts keep coming from a `--watch` path that changes right after each start:
    /// the server probably writes it.
    SelfWrites {
        path: PathBuf,
    },
    ShuttingDown {
        signal: Signal,
    },
    ForceKill,
}
