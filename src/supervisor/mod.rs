//! The supervisor: a state machine that decides, and does nothing else.
//!
//! # Theory of operation
//!
//! Every source of news (signals, the file watcher, child exits, the results of spawn
//! attempts) becomes an [`Event`]. [`Supervisor::handle`] takes one event and the current
//! time and returns the [`Action`]s to carry out: spawn a generation, signal a process
//! group, check a group, reap, report, exit. It never touches a process or a file, and it
//! never reads the clock: timers are absolute deadlines kept in the state, and the loop in
//! `app.rs` sleeps until [`Supervisor::next_deadline`] and then hands in [`Event::Tick`].
//! So every rule below is unit-tested with plain event sequences.
//!
//! The modes (`Mode`) and how a restart goes through them:
//!
//! ```text
//!  trigger: the binary changed, a --watch path (debounced), SIGHUP/SIGUSR1,
//!  --on-exit restart (after its backoff), a drill, a socket bound anew, a retry
//!  (with --build, a --watch change runs the build instead: see below)
//!
//!  ┌─────────┐  trigger   ┌──────────┐  exec failed for good: the current
//!  │ Serving │ ─────────► │ Spawning │  generation keeps serving (or Waiting)
//!  │         │ ◄───────── │          │ ◄─┐ transient failure (ETXTBSY, a half-
//!  └─────────┘            └──────────┘ ──┘ written file): retried within a budget
//!     ▲    ▲                   │ exec succeeded
//!     │    │                   ├──────────────────────────────┐ --ready, or the current
//!     │    │                   │ no readiness to wait for     ▼ one listens on a held socket
//!     │    │                   │                        ┌──────────┐
//!     │    │                   │                        │ Starting │ ready: READY=1,
//!     │    │                   │                        │          │ delay:D, a listen
//!     │    │                   │                        └──────────┘
//!     │    │                   ▼     ready                 │    │ not ready in time, or
//!     │    └──────────── take over ◄───────────────────────┘    │ it ended: stopped; the
//!     │                  the new one is current; each older     │ current one serves on
//!     │                  one is drained (it serves on a held    │ (with none, it is kept)
//!     │                  socket: no new connection, --drain to  │
//!     │                  DRAIN_MAX), then gets the stop signal, │
//!     │                  then SIGKILL after --grace; its group  │
//!     │                  gone, it is reaped                     │
//!     └─────────────────────────────────────────────────────────┘
//!
//!  any mode: SIGINT/SIGTERM/SIGQUIT, a closed terminal, --on-exit exit
//!    ─► ShuttingDown: every group (and the build) gets the signal; a second signal
//!       SIGKILLs them all ─► every group gone ─► Exit(outcome) ─► Done
//!
//!  --build, beside the modes: a --watch change ─► the build runs (the current
//!    generation serves on) ─► exit 0 and a new executable ─► trigger; a failure ─►
//!    nothing. A change during a build stops its group and builds again.
//! ```
//!
//! The jobs, by file: `restart.rs` (triggers, one restart at a time, the spawn and its
//! retries), `handover.rs` (readiness, take over, draining the older generations),
//! `stop.rs` (stop signal, grace, SIGKILL, a leader's exit, the group checks, what an end
//! means), `shutdown.rs`, `build.rs` (`--build`), `child.rs` (one live generation).
//!
//! * **New first.** A restart spawns the new generation, and only once its exec has
//!   succeeded are the older generations sent the stop signal. A spawn that fails keeps
//!   the old generation; ETXTBSY and friends (a binary still being written) are retried
//!   within a bounded budget.
//! * **One restart at a time.** A restart lasts until every older generation's process
//!   group is gone. Triggers that arrive meanwhile coalesce into one follow-up restart.
//! * **A generation is gone when its group is gone.** When the leader exits it is left
//!   unreaped (so its pgid cannot be recycled), the group is checked, stragglers get the
//!   stop signal and then SIGKILL at the grace deadline, and only then is it reaped.
//! * **Fixed ports.** A generation started while an older one was still alive, which
//!   exits on its own (while that older one stops, or within `RETRY_WINDOW` after it is
//!   gone) most likely lost a race for a port or lock the older one held; it is started
//!   once more as soon as no older generation is alive. The rule looks at those facts
//!   only, so it holds whichever of the two exits is handled first.
//! * **Self-inflicted restarts.** When [`SELF_WRITE_STREAK`] restarts in a row come from
//!   the same `--watch` path, each time changed within [`SELF_WRITE_WINDOW`] of the newest
//!   generation's start, the server is most likely writing that file itself: the user is
//!   told once, with the fix.
//! * **Builds (`--build`).** A `--watch` change (debounced) runs the build command
//!   instead of a restart, while the current generation keeps serving. The restart comes
//!   from the build alone: once it exits 0, the executable it left at the command's path
//!   is compared with the running generation's, and only a new identity restarts
//!   (through the routine above). A failed build restarts nothing. A change during a
//!   build stops the build's process group (stop signal, grace, SIGKILL, like a
//!   generation) and starts it again from the newest sources once the group is gone: a
//!   build of older sources would only be thrown away. While a build runs or is about to,
//!   changes of the executable are not restarts (the linker is at work; the look after
//!   the build decides). After `BUILD_STOP_STREAK` builds in a row were stopped by
//!   changes during them (a build that writes into a watched directory would stop itself
//!   forever), the next one is let finish and one more follows it. The first build runs
//!   before generation 1; if it fails, the executable from before is started if there is
//!   one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::event::{Action, BuildTrigger, Event, Generation, Status, Trigger};
use crate::file_id::FileId;

mod build;
mod child;
mod handover;
mod restart;
mod shutdown;
mod stop;

pub(crate) use build::BuildSettings;
use build::{Build, Builds};
use child::Child;
use restart::SelfWrites;
use shutdown::Shutdown;

/// What to do when the child exits without being asked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnExit {
    /// Report it and wait for a change or a restart signal.
    Wait,
    /// Start it again after a backoff delay that grows while it keeps exiting quickly.
    Restart,
    /// Exit hotrun with the child's status.
    Exit,
}

/// When a new generation counts as ready, so that the old one may be stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// The default: as soon as its exec succeeded — unless the generation it replaces
    /// listens on a socket hotrun holds (socket takeover); then once it listens there too.
    Auto,
    /// As soon as its exec succeeded (`--ready exec`).
    Exec,
    /// When it sends `READY=1` to its `NOTIFY_SOCKET`.
    Notify,
    /// When it has stayed up this long.
    Delay(Duration),
}

/// The supervisor's knobs, resolved from the command line.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) stop_signal: Signal,
    pub(crate) grace: Duration,
    pub(crate) debounce: Duration,
    pub(crate) on_exit: OnExit,
    pub(crate) ready: Readiness,
    /// A new generation not ready by then is stopped and the old one keeps serving.
    pub(crate) ready_timeout: Duration,
    /// How long a replaced generation that serves on a socket hotrun holds gets no new
    /// connection before its stop signal, at least (requests it accepted can finish
    /// meanwhile; it is stopped later while it still has connections open, up to
    /// `DRAIN_MAX`).
    pub(crate) drain: Duration,
    /// `--build`, if given.
    pub(crate) build: Option<BuildSettings>,
}

/// How long spawn attempts that fail with a transient error are retried, counted from the
/// last sign of life of the binary.
pub(crate) const SPAWN_RETRY_BUDGET: Duration = Duration::from_secs(2);
const SPAWN_RETRY_FIRST: Duration = Duration::from_millis(5);
const SPAWN_RETRY_MAX: Duration = Duration::from_millis(200);
/// First delay of `--on-exit restart`; it doubles for every exit that comes sooner than
/// `BACKOFF_RESET` after the start, up to `BACKOFF_MAX`.
pub(crate) const BACKOFF_FIRST: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(10);
pub(crate) const BACKOFF_RESET: Duration = Duration::from_secs(5);
/// How often a group whose leader exited is checked for stragglers (doubling up to max).
const GROUP_POLL_FIRST: Duration = Duration::from_millis(5);
const GROUP_POLL_MAX: Duration = Duration::from_millis(100);

/// A generation started beside an older one that exits on its own this soon after the
/// last older generation is gone is started once more (see the module docs).
pub(crate) const RETRY_WINDOW: Duration = Duration::from_secs(5);

/// The longest a draining generation is waited for while connections it accepted are
/// still open (a keep-alive connection would keep it forever).
pub(crate) const DRAIN_MAX: Duration = Duration::from_secs(2);
/// How often a draining generation's open connections are looked at.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// After this many builds in a row were stopped by changes during them, the next build is
/// let finish (and one more follows it): a build that writes into a watched directory
/// would otherwise stop itself forever.
pub(crate) const BUILD_STOP_STREAK: u32 = 3;

/// Files build tools write themselves during a build (cargo writes Cargo.lock when it is
/// missing or out of date): a change of one during a build does not stop it; one more
/// build follows instead (which finds nothing to do if the build wrote it).
const WRITTEN_BY_BUILDS: &[&str] = &["Cargo.lock"];

/// A build started by a path that changed this soon (plus the quiet period) after the
/// build it started before had ended…
pub(crate) const BUILD_LOOP_WINDOW: Duration = Duration::from_secs(1);
/// …this many times in a row: something writes it after every build (a log in the
/// watched directory); the user is told once.
pub(crate) const BUILD_LOOP_STREAK: u32 = 3;

/// How long the binary must stay missing before the user is told.
pub(crate) const MISSING_REPORT_AFTER: Duration = Duration::from_secs(1);

/// A `--watch` change this soon after the newest generation started may be its own doing.
pub(crate) const SELF_WRITE_WINDOW: Duration = Duration::from_secs(1);
/// How many restarts in a row from such changes of one path make the user be told.
pub(crate) const SELF_WRITE_STREAK: u32 = 3;

/// Whether the command's executable is missing, and whether the user was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Missing {
    /// It is there (or a build is at work on it).
    No,
    /// It is missing; the user is told at this time if it still is.
    ReportAt(Instant),
    /// It is missing, and the user was told.
    Reported,
}

/// Watching for the end of a process group whose leader has exited (a generation's or
/// the build's): when to look again, at intervals that double up to `GROUP_POLL_MAX`.
#[derive(Debug)]
struct GroupPoll {
    /// When to look next (`None` while an answer is awaited).
    next: Option<Instant>,
    every: Duration,
}

impl GroupPoll {
    fn new() -> GroupPoll {
        GroupPoll {
            next: None,
            every: GROUP_POLL_FIRST,
        }
    }

    /// Look again after the current interval.
    fn arm(&mut self, now: Instant) {
        self.next = Some(now + self.every);
    }

    /// The group is still there: look again, later than last time.
    fn back_off(&mut self, now: Instant) {
        self.every = (self.every * 2).min(GROUP_POLL_MAX);
        self.arm(now);
    }

    /// Whether it is time to look; the answer is then awaited.
    fn due(&mut self, now: Instant) -> bool {
        let due = self.next.is_some_and(|at| at <= now);
        if due {
            self.next = None;
        }
        due
    }
}

/// What the supervisor as a whole is doing.
#[derive(Debug)]
enum Mode {
    /// Normal operation: the current generation (if any) serves; waiting for triggers.
    Serving,
    /// A new generation is being started.
    Spawning(Spawning),
    /// A new generation runs but is not ready yet; the current one keeps serving.
    Starting(Starting),
    /// Every generation was told to stop; hotrun exits once all groups are gone.
    ShuttingDown(Shutdown),
    /// `Exit` was returned.
    Done,
}

#[derive(Debug)]
struct Spawning {
    trigger: Trigger,
    /// When the trigger came in (for the "started in" latency).
    since: Instant,
    /// A transient failure is waiting for this retry time.
    retry_at: Option<Instant>,
    retry_delay: Duration,
    /// Transient failures are final after this.
    give_up_at: Instant,
}

#[derive(Debug)]
struct Starting {
    candidate: Generation,
    /// When it was spawned.
    since: Instant,
    /// `Readiness::Delay`: when it counts as ready.
    ready_at: Option<Instant>,
    /// When it is given up on.
    timeout_at: Instant,
}

/// Where the supervisor stands, for a caller that acts on its own schedule (`hotrun
/// drill` waits for `idle` before it asks for the next restart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Progress {
    /// No restart under way, none queued or due.
    pub(crate) idle: bool,
    /// The generation serving, if any.
    pub(crate) current: Option<Generation>,
    /// A build runs (`--build`).
    pub(crate) building: bool,
}

/// The state machine. See the module docs.
#[derive(Debug)]
pub(crate) struct Supervisor {
    settings: Settings,
    mode: Mode,
    /// Live generations, oldest first.
    children: Vec<Child>,
    /// The generation serving: the newest that took over, while it runs (a generation
    /// getting ready is `Mode::Starting`'s candidate, not this).
    current: Option<Generation>,
    next_generation: u64,
    /// The identity of the binary the newest generation was started from.
    binary: Option<FileId>,
    /// Whether the binary is missing (told once it stays missing for
    /// `MISSING_REPORT_AFTER`: builds delete it for a moment all the time).
    missing: Missing,
    /// A restart that waits for the one under way.
    pending: Option<Trigger>,
    /// When a `--watch` change becomes a restart (quiet period).
    debounce: Option<(Instant, PathBuf)>,
    /// `--on-exit restart`: when the next start is due.
    restart_at: Option<Instant>,
    /// How many generations in a row exited soon after starting.
    quick_exits: u32,
    /// When the last generation older than the current one was gone.
    older_gone_at: Option<Instant>,
    self_writes: SelfWrites,
    /// `--build`.
    builds: Builds,
}

impl Supervisor {
    pub(crate) fn new(settings: Settings) -> Self {
        Supervisor {
            settings,
            mode: Mode::Serving,
            children: Vec::new(),
            current: None,
            next_generation: 1,
            binary: None,
            missing: Missing::No,
            pending: None,
            debounce: None,
            restart_at: None,
            quick_exits: 0,
            older_gone_at: None,
            self_writes: SelfWrites::default(),
            builds: Builds::default(),
        }
    }

    /// The first actions: start generation 1 (with `--build`, build it first).
    pub(crate) fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.settings.build.is_some() {
            self.start_build(BuildTrigger::Start, now, &mut out);
        } else {
            self.begin_spawn(Trigger::Start, now, &mut out);
        }
        out
    }

    /// The earliest deadline the loop must wake up for, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let spawn = match &self.mode {
            Mode::Spawning(s) => s.retry_at,
            Mode::Starting(s) => earliest([s.ready_at, Some(s.timeout_at)]),
            _ => None,
        };
        let debounce = self.debounce.as_ref().map(|(at, _)| *at);
        let children = earliest(self.children.iter().map(Child::deadline));
        let missing = match self.missing {
            Missing::ReportAt(at) => Some(at),
            _ => None,
        };
        let build = self.builds.running.as_ref().and_then(Build::deadline);
        earliest([spawn, debounce, self.restart_at, children, missing, build])
    }

    /// Where things stand, for a caller that acts on its own schedule (`hotrun drill`).
    pub(crate) fn progress(&self) -> Progress {
        Progress {
            idle: matches!(self.mode, Mode::Serving)
                && self.pending.is_none()
                && self.restart_at.is_none()
                && !self.restart_under_way()
                && self.builds.running.is_none(),
            current: self.current,
            building: self.builds.running.is_some(),
        }
    }

    /// Whether hotrun is shutting down (or done): every generation was told to stop.
    pub(crate) fn is_shutting_down(&self) -> bool {
        matches!(self.mode, Mode::ShuttingDown(_) | Mode::Done)
    }

    /// Whether `Exit` was returned.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.mode, Mode::Done)
    }

    /// Takes one event; returns what to do about it.
    pub(crate) fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.is_done() {
            return out;
        }
        match event {
            Event::Shutdown(signal) => self.on_shutdown(signal, now, &mut out),
            Event::Restart(trigger) => self.request_restart(trigger, now, &mut out),
            Event::BinaryChanged(id) => self.on_binary(id, now, &mut out),
            Event::PathChanged(path) => self.on_path(path, now, &mut out),
            Event::Spawned {
                generation,
                pid,
                binary,
            } => self.on_spawned(generation, pid, binary, now, &mut out),
            Event::SpawnFailed(failure) => self.on_spawn_failed(failure, now, &mut out),
            Event::LeaderExited {
                generation,
                end,
                group_empty,
            } => self.on_leader_exited(generation, end, group_empty, now, &mut out),
            Event::GroupChecked { generation, empty } => {
                self.on_group_checked(generation, empty, now, &mut out)
            }
            Event::Notify {
                generation,
                ready,
                status,
            } => self.on_notify(generation, ready, status, now, &mut out),
            Event::LeaderStopped { generation, signal } => {
                out.push(Action::Report(Status::Suspended { generation, signal }));
            }
            Event::Socket { generation, news } => self.on_socket(generation, news, now, &mut out),
            Event::DrainChecked { generation, open } => {
                self.on_drain_checked(generation, open, now, &mut out);
            }
            Event::BuildStarted { .. } => {}
            Event::BuildSpawnFailed { build, message } => {
                self.on_build_spawn_failed(build, message, now, &mut out);
            }
            Event::BuildExited {
                build,
                end,
                group_empty,
                binary,
                same_as_running,
            } => {
                let binary = binary.map(|id| (id, same_as_running));
                self.on_build_exited(build, end, group_empty, binary, now, &mut out);
            }
            Event::BuildGroupChecked { build, empty } => {
                self.on_build_group_checked(build, empty, now, &mut out);
            }
            Event::Tick => self.on_tick(now, &mut out),
        }
        out
    }

    /// A deadline has passed: each job looks at its own, in this order.
    fn on_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.tick_missing(now, out);
        self.tick_spawn_retry(now, out);
        self.tick_readiness(now, out);
        self.tick_debounce(now, out);
        self.tick_build(now, out);
        self.tick_drains(now, out);
        self.tick_crash_restart(now, out);
        self.tick_stops(now, out);
    }

    fn child_mut(&mut self, generation: Generation) -> Option<&mut Child> {
        self.children
            .iter_mut()
            .find(|c| c.generation == generation)
    }
}

/// The `--on-exit restart` delay after `quick_exits` quick exits in a row.
pub(crate) fn backoff(quick_exits: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1u32 << quick_exits.min(16))
        .min(BACKOFF_MAX)
}

fn earliest(deadlines: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    deadlines.into_iter().flatten().min()
}

#[cfg(test)]
#[path = "../supervisor_tests.rs"]
mod tests;
