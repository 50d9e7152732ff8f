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
//! ```text
//!            trigger (binary changed, --watch path, SIGHUP, crash restart)
//!   Serving ─────────────────────────────────────────────► Spawning
//!     ▲   ▲        spawn failed for good: old keeps serving     │ exec succeeded
//!     │   └─────────────────────────────────────────────────────┤ ► stop signal to every
//!     │                                                         │   older group, grace
//!     └─────────────────────────────────────────────────────────┘   deadline → SIGKILL
//!   SIGINT/SIGTERM/SIGQUIT (any mode) ─► ShuttingDown ─ all groups gone ─► Exit(outcome)
//! ```
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

use crate::event::{
    Action, AfterBuild, AfterFailedBuild, BuildId, BuildTrigger, ChildEnd, Event, Generation, Kill,
    Outcome, ShutdownSignal, SocketNews, SpawnFailure, Status, StopEnd, Trigger,
};
use crate::file_id::FileId;

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

/// `--build`: what the supervisor needs to know (the command itself is the app's).
#[derive(Clone, Debug)]
pub(crate) struct BuildSettings {
    /// The command's executable as the user wrote it (for messages).
    pub(crate) program: PathBuf,
    /// Changes of these files never run the build: the executable itself and the files
    /// hotrun writes (`--events`).
    pub(crate) ignore_files: Vec<PathBuf>,
    /// Changes under these directories never run the build: where the build writes (the
    /// executable's directory, cargo's target directory), or it would run itself forever.
    pub(crate) ignore_dirs: Vec<PathBuf>,
    /// The command is a wrapper (a shell, an interpreter, a launcher) that no build
    /// changes: every successful build restarts it.
    pub(crate) restart_after_every_build: bool,
    /// What relative changed paths are relative to (the watcher names a change below the
    /// current directory as the user would write it).
    pub(crate) cwd: PathBuf,
}

impl BuildSettings {
    /// Whether a change of `path` runs the build.
    pub(crate) fn triggers(&self, path: &std::path::Path) -> bool {
        let path = self.cwd.join(path);
        !self.ignore_files.contains(&path) && !self.ignore_dirs.iter().any(|d| within(&path, d))
    }
}

/// Whether `path` lies in `dir`, or in the temporary sibling a build tool makes `dir`
/// from: cargo creates its target directory atomically, as `target` + 6 random
/// characters renamed into place (`create_dir_all_excluded_from_backups_atomically`).
fn within(path: &std::path::Path, dir: &std::path::Path) -> bool {
    if path.starts_with(dir) {
        return true;
    }
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return false;
    };
    let Some(first) = path
        .strip_prefix(parent)
        .ok()
        .and_then(|rest| rest.components().next())
    else {
        return false;
    };
    let (first, name) = (
        first.as_os_str().as_encoded_bytes(),
        name.as_encoded_bytes(),
    );
    first.len() == name.len() + 6
        && first.starts_with(name)
        && first[name.len()..].iter().all(u8::is_ascii_alphanumeric)
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

/// Restarts in a row that a `--watch` path changing right after a start set off.
#[derive(Debug, Default)]
struct SelfWrites {
    /// The latest `--watch` change seen, and whether it came within `SELF_WRITE_WINDOW`
    /// of the newest generation's start.
    last_change: Option<(PathBuf, bool)>,
    /// The path of the current streak and its length.
    streak: Option<(PathBuf, u32)>,
    /// The user was told (once is enough).
    told: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Missing {
    No,
    /// Missing; report at this time.
    Since(Instant),
    Reported,
}

/// One live generation: spawned, and its process group not yet known to be gone.
#[derive(Debug)]
struct Child {
    generation: Generation,
    started: Instant,
    trigger: Trigger,
    /// The newest older generation that was alive when this one started: the one it
    /// replaces, and may have raced for a port.
    beside: Option<Generation>,
    /// It listens on a socket hotrun holds (socket takeover).
    listening: bool,
    /// It listens or accepts on a socket hotrun holds: replacing it drains it first.
    serving: bool,
    /// Set while it drains: it gets no new connection, and its stop signal waits.
    drain: Option<Drain>,
    /// Set once hotrun has asked it to stop.
    stop: Option<Stop>,
    /// Set once its leader has exited.
    exit: Option<LeaderExit>,
}

#[derive(Debug)]
struct Drain {
    /// Its stop signal comes once this has passed and no connection it accepted is open…
    min_at: Instant,
    /// …or at this time, connections or not.
    max_at: Instant,
    /// When to ask about its open connections (`None` while an answer is awaited).
    check_at: Option<Instant>,
}

#[derive(Debug)]
struct Stop {
    sent: Instant,
    /// The stop signal it was sent.
    signal: Signal,
    /// Another signal it was sent later (a shutdown forwarding SIGINT, say).
    also: Option<Signal>,
    /// When SIGKILL is due; `None` once it was sent.
    kill_at: Option<Instant>,
    /// Why SIGKILL was sent, once it was.
    killed: Option<Kill>,
}

impl Stop {
    /// Takes note of one more (non-SIGKILL) signal sent to the stopping generation.
    fn sent_also(&mut self, signal: Signal) {
        if signal != self.signal && signal != Signal::SIGKILL {
            self.also = Some(signal);
        }
    }

    /// Its group gets SIGKILL now.
    fn kill(&mut self, why: Kill) {
        self.kill_at = None;
        self.killed.get_or_insert(why);
    }
}

#[derive(Debug)]
struct LeaderExit {
    end: ChildEnd,
    /// hotrun had asked the generation to stop before its leader exited.
    asked: bool,
    /// When to look at the group again.
    recheck_at: Option<Instant>,
    poll: Duration,
}

impl Child {
    fn deadline(&self) -> Option<Instant> {
        let kill = self.stop.as_ref().and_then(|s| s.kill_at);
        let recheck = self.exit.as_ref().and_then(|e| e.recheck_at);
        let drain = self.drain.as_ref().and_then(|d| d.check_at);
        earliest([kill, recheck, drain])
    }
}

/// `--build`: the build command's state.
#[derive(Debug, Default)]
struct Builds {
    /// The build under way, until its leader is reaped.
    running: Option<Build>,
    /// The change another build is due for, once the running one is gone.
    again: Option<PathBuf>,
    next_id: u64,
    /// Builds stopped in a row by changes during them (reset when one ends on its own).
    stopped_in_a_row: u32,
    /// When the last build that ended on its own ended, and the path that started it.
    last: Option<(Instant, PathBuf)>,
    /// Builds in a row started by that same path changing right after the last one.
    loop_streak: u32,
    /// The user was told about such a loop (once is enough).
    loop_told: bool,
}

#[derive(Debug)]
struct Build {
    id: BuildId,
    trigger: BuildTrigger,
    started: Instant,
    /// Set once hotrun asked it to stop.
    stop: Option<BuildStop>,
    /// Set once its leader ended after it was asked to stop (its group is awaited).
    exit: Option<BuildExit>,
}

#[derive(Debug)]
struct BuildStop {
    /// The signal it was sent last (stragglers get it too).
    signal: Signal,
    /// When SIGKILL is due; `None` once sent.
    kill_at: Option<Instant>,
    killed: bool,
}

#[derive(Debug)]
struct BuildExit {
    end: ChildEnd,
    recheck_at: Option<Instant>,
    poll: Duration,
}

impl Build {
    fn deadline(&self) -> Option<Instant> {
        let kill = self.stop.as_ref().and_then(|s| s.kill_at);
        let recheck = self.exit.as_ref().and_then(|e| e.recheck_at);
        earliest([kill, recheck])
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
    ShuttingDown(ShuttingDown),
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

#[derive(Debug)]
struct ShuttingDown {
    received: Option<Signal>,
    /// The generation whose status becomes hotrun's.
    target: Option<Generation>,
    /// Its status, once known.
    end: Option<ChildEnd>,
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
    /// The newest generation, while it runs.
    current: Option<Generation>,
    next_generation: u64,
    /// The identity of the binary the newest generation was started from.
    binary: Option<FileId>,
    /// Since when the binary has been missing (reported once it stays missing for
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
            Missing::Since(at) => Some(at),
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

    // ---- triggers ------------------------------------------------------------------

    fn on_binary(&mut self, id: Option<FileId>, now: Instant, out: &mut Vec<Action>) {
        if self.build_due() {
            // The build is at work on it; the look after the build decides.
            self.missing = Missing::No;
            return;
        }
        let Some(id) = id else {
            if self.missing == Missing::No {
                self.missing = Missing::Since(now + MISSING_REPORT_AFTER);
            }
            return;
        };
        self.missing = Missing::No;
        if !id.is_runnable() {
            // Still being written (GNU ld sets the execute bits last).
            return;
        }
        if let Mode::Spawning(spawning) = &mut self.mode {
            // The attempt under way (or its retry) takes whatever is at the path now.
            if spawning.retry_at.is_some() {
                spawning.retry_at = Some(now);
                spawning.give_up_at = now + SPAWN_RETRY_BUDGET;
            }
            return;
        }
        if self.binary == Some(id) {
            return;
        }
        self.request_restart(Trigger::BinaryChanged, now, out);
    }

    fn on_path(&mut self, path: PathBuf, now: Instant, out: &mut Vec<Action>) {
        let soon = self
            .children
            .iter()
            .map(|c| c.started)
            .max()
            .is_some_and(|started| now.saturating_duration_since(started) <= SELF_WRITE_WINDOW);
        self.self_writes.last_change = Some((path.clone(), soon));
        if self
            .settings
            .build
            .as_ref()
            .is_some_and(|b| !b.triggers(&path))
        {
            // Written by the build (or by hotrun): it must not run the build again.
            return;
        }
        if self.settings.debounce.is_zero() {
            self.on_watch_change(path, now, out);
        } else {
            self.debounce = Some((now + self.settings.debounce, path));
        }
    }

    fn request_restart(&mut self, trigger: Trigger, now: Instant, out: &mut Vec<Action>) {
        match self.mode {
            Mode::ShuttingDown(_) | Mode::Done => {}
            Mode::Spawning(_) | Mode::Starting(_) => self.queue(trigger, out),
            Mode::Serving => {
                if self.restart_under_way() {
                    self.queue(trigger, out);
                } else {
                    self.begin_spawn(trigger, now, out);
                }
            }
        }
    }

    fn queue(&mut self, trigger: Trigger, out: &mut Vec<Action>) {
        if self.pending.is_none() {
            out.push(Action::Report(Status::Queued {
                trigger: trigger.clone(),
            }));
            self.pending = Some(trigger);
        }
    }

    /// A restart lasts until every generation older than the current one is gone.
    fn restart_under_way(&self) -> bool {
        self.children
            .iter()
            .any(|c| Some(c.generation) != self.current)
    }

    fn begin_spawn(&mut self, trigger: Trigger, now: Instant, out: &mut Vec<Action>) {
        self.restart_at = None;
        self.count_self_writes(&trigger, out);
        let generation = Generation(self.next_generation);
        out.push(Action::Spawn {
            generation,
            trigger: trigger.clone(),
        });
        self.mode = Mode::Spawning(Spawning {
            trigger,
            since: now,
            retry_at: None,
            retry_delay: SPAWN_RETRY_FIRST,
            give_up_at: now + SPAWN_RETRY_BUDGET,
        });
    }

    /// Keeps the streak of restarts set off by a path that changed right after a start,
    /// and tells the user once when it is long enough.
    fn count_self_writes(&mut self, trigger: &Trigger, out: &mut Vec<Action>) {
        let sw = &mut self.self_writes;
        let suspect = match (trigger, &sw.last_change) {
            (Trigger::PathChanged(path), Some((changed, true))) if path == changed => {
                Some(path.clone())
            }
            _ => None,
        };
        sw.streak = match (suspect, sw.streak.take()) {
            (Some(path), Some((same, n))) if same == path => Some((path, n.saturating_add(1))),
            (Some(path), _) => Some((path, 1)),
            (None, _) => None,
        };
        if let Some((path, n)) = &sw.streak
            && *n >= SELF_WRITE_STREAK
            && !sw.told
        {
            sw.told = true;
            out.push(Action::Report(Status::SelfWrites { path: path.clone() }));
        }
    }

    // ---- spawn results -----------------------------------------------------------

    fn on_spawned(
        &mut self,
        generation: Generation,
        pid: u32,
        binary: Option<FileId>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Mode::Spawning(spawning) = std::mem::replace(&mut self.mode, Mode::Serving) else {
            return;
        };
        self.next_generation = generation.0 + 1;
        self.binary = binary.or(self.binary);
        out.push(Action::Report(Status::Started {
            generation,
            pid,
            trigger: spawning.trigger.clone(),
            latency: now.saturating_duration_since(spawning.since),
        }));
        let beside = self.children.last().map(|c| c.generation);
        self.children.push(Child {
            generation,
            started: now,
            trigger: spawning.trigger,
            beside,
            listening: false,
            serving: false,
            drain: None,
            stop: None,
            exit: None,
        });
        // Without --ready, a generation replacing one that listens on a socket hotrun
        // holds is ready once it listens there too.
        let gated = match self.settings.ready {
            Readiness::Exec => false,
            Readiness::Auto => self
                .children
                .iter()
                .any(|c| Some(c.generation) == self.current && c.listening && c.stop.is_none()),
            Readiness::Notify | Readiness::Delay(_) => true,
        };
        match gated {
            false => self.take_over(generation, now, out),
            true => {
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
        }
    }

    /// `generation` becomes the current one; every older generation is stopped — one
    /// that serves on a socket hotrun holds is drained first.
    fn take_over(&mut self, generation: Generation, now: Instant, out: &mut Vec<Action>) {
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

    /// Starts the queued restart once the one under way is over.
    fn follow_up(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.restart_under_way()
            && matches!(self.mode, Mode::Serving)
            && let Some(trigger) = self.pending.take()
        {
            self.begin_spawn(trigger, now, out);
        }
    }

    fn on_notify(
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

    fn on_socket(
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
    fn on_drain_checked(
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

    fn become_ready(
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

    fn on_spawn_failed(&mut self, failure: SpawnFailure, now: Instant, out: &mut Vec<Action>) {
        let Mode::Spawning(spawning) = &mut self.mode else {
            return;
        };
        if failure.transient && now < spawning.give_up_at {
            spawning.retry_at = Some(now + spawning.retry_delay);
            spawning.retry_delay = (spawning.retry_delay * 2).min(SPAWN_RETRY_MAX);
            return;
        }
        self.mode = Mode::Serving;
        self.pending = None;
        let serving = self.current;
        out.push(Action::Report(Status::SpawnFailed {
            message: failure.message,
            still_serving: serving,
        }));
        if self.children.is_empty() && self.next_generation == 1 && self.settings.build.is_none() {
            // Not even the first generation could start (with --build, the next build may
            // fix it: wait for a change).
            self.mode = Mode::Done;
            out.push(Action::Exit(Outcome::CannotStart(failure.exit_code)));
        } else if serving.is_none() {
            out.push(Action::Report(Status::Waiting));
        }
    }

    // ---- stopping and exits --------------------------------------------------------

    /// Sends `signal` to the generation's group and arms its grace deadline.
    fn stop(
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

    fn on_leader_exited(
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

    fn on_group_checked(
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

    fn on_shutdown(&mut self, signal: ShutdownSignal, now: Instant, out: &mut Vec<Action>) {
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
    fn exit_if_all_gone(&mut self, last: Option<ChildEnd>, out: &mut Vec<Action>) {
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

    // ---- builds (--build) ------------------------------------------------------------

    /// A build runs, or is about to (a change waits out its quiet period, or another
    /// build follows the one being stopped).
    fn build_due(&self) -> bool {
        self.settings.build.is_some()
            && (self.builds.running.is_some()
                || self.builds.again.is_some()
                || self.debounce.is_some())
    }

    /// No generation was ever started, and none is being started: the builds decide
    /// generation 1.
    fn nothing_started(&self) -> bool {
        self.next_generation == 1 && self.children.is_empty() && matches!(self.mode, Mode::Serving)
    }

    /// A `--watch` path changed (after its quiet period): a build with `--build`, else a
    /// restart.
    fn on_watch_change(&mut self, path: PathBuf, now: Instant, out: &mut Vec<Action>) {
        if self.settings.build.is_none() {
            self.request_restart(Trigger::PathChanged(path), now, out);
            return;
        }
        if matches!(self.mode, Mode::ShuttingDown(_) | Mode::Done) {
            return;
        }
        let Some(build) = &self.builds.running else {
            self.start_build(BuildTrigger::Changed(path), now, out);
            return;
        };
        let written_by_build = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| WRITTEN_BY_BUILDS.contains(&n));
        if build.stop.is_some() {
            // Already being stopped for an earlier change: the next build takes this too.
            self.builds.again = Some(path);
        } else if written_by_build {
            self.builds.again.get_or_insert(path);
        } else if self.builds.stopped_in_a_row >= BUILD_STOP_STREAK {
            if self.builds.again.is_none() {
                out.push(Action::Report(Status::BuildQueued {
                    changed: path.clone(),
                    stops: self.builds.stopped_in_a_row,
                }));
            }
            self.builds.again = Some(path);
        } else {
            self.builds.stopped_in_a_row += 1;
            out.push(Action::Report(Status::BuildStopping {
                changed: path.clone(),
            }));
            self.builds.again = Some(path);
            self.stop_build(Signal::SIGTERM, now, out);
        }
    }

    fn start_build(&mut self, trigger: BuildTrigger, now: Instant, out: &mut Vec<Action>) {
        self.count_build_loop(&trigger, now, out);
        self.builds.next_id += 1;
        let id = BuildId(self.builds.next_id);
        self.builds.running = Some(Build {
            id,
            trigger: trigger.clone(),
            started: now,
            stop: None,
            exit: None,
        });
        out.push(Action::Report(Status::BuildStarted {
            trigger: trigger.clone(),
        }));
        out.push(Action::Build { build: id, trigger });
    }

    /// Keeps the streak of builds started by one path changing right after the build it
    /// started before, and tells the user once when it is long enough.
    fn count_build_loop(&mut self, trigger: &BuildTrigger, now: Instant, out: &mut Vec<Action>) {
        let window = BUILD_LOOP_WINDOW + self.settings.debounce;
        let builds = &mut self.builds;
        let again = match (trigger, &builds.last) {
            (BuildTrigger::Changed(path), Some((ended, last))) => {
                path == last && now.saturating_duration_since(*ended) <= window
            }
            _ => false,
        };
        builds.loop_streak = if again { builds.loop_streak + 1 } else { 0 };
        if builds.loop_streak >= BUILD_LOOP_STREAK
            && !builds.loop_told
            && let BuildTrigger::Changed(path) = trigger
        {
            builds.loop_told = true;
            out.push(Action::Report(Status::BuildLoop { path: path.clone() }));
        }
    }

    /// Sends `signal` to the running build's group and arms its grace deadline; a build
    /// already stopping gets the signal too (the deadline stays).
    fn stop_build(&mut self, signal: Signal, now: Instant, out: &mut Vec<Action>) {
        let grace = self.settings.grace;
        let Some(build) = self.builds.running.as_mut() else {
            return;
        };
        match build.stop.as_mut() {
            Some(stop) => stop.signal = signal,
            None => {
                build.stop = Some(BuildStop {
                    signal,
                    kill_at: Some(now + grace),
                    killed: false,
                });
            }
        }
        out.push(Action::SignalBuild {
            build: build.id,
            signal,
        });
    }

    fn on_build_spawn_failed(
        &mut self,
        id: BuildId,
        message: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if self.builds.running.as_ref().map(|b| b.id) != Some(id) {
            return;
        }
        self.builds.running = None;
        out.push(Action::Report(Status::BuildCannotStart { message }));
        if matches!(self.mode, Mode::ShuttingDown(_)) {
            self.exit_if_all_gone(None, out);
        } else if self.nothing_started() {
            // Start what is there; the spawn says so if there is nothing.
            self.request_restart(Trigger::Start, now, out);
        }
    }

    fn on_build_exited(
        &mut self,
        id: BuildId,
        end: ChildEnd,
        group_empty: bool,
        binary: Option<(FileId, bool)>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(build) = self.builds.running.as_mut().filter(|b| b.id == id) else {
            return;
        };
        if build.exit.is_some() {
            return;
        }
        if let Some(stop) = &build.stop {
            // A build hotrun stopped: it is over once its whole group is gone.
            let signal = stop.signal;
            build.exit = Some(BuildExit {
                end,
                recheck_at: None,
                poll: GROUP_POLL_FIRST,
            });
            if group_empty {
                self.build_gone(now, out);
            } else {
                // What is left gets the signal too (a process forked after it was sent).
                out.push(Action::SignalBuild { build: id, signal });
                if let Some(exit) = build.exit.as_mut() {
                    exit.recheck_at = Some(now + exit.poll);
                }
            }
            return;
        }
        // It ended on its own: its leader's status is the build's. Processes it left in
        // its group are its business (a build tool's daemon); hotrun will not signal the
        // group again, so the leader is reaped now.
        let took = now.saturating_duration_since(build.started);
        self.builds.last = match &build.trigger {
            BuildTrigger::Changed(path) => Some((now, path.clone())),
            BuildTrigger::Start => None,
        };
        self.builds.running = None;
        self.builds.stopped_in_a_row = 0;
        out.push(Action::ReapBuild { build: id });
        if end == ChildEnd::Exited(0) {
            self.on_build_ok(took, binary, now, out);
        } else {
            self.on_build_failed(end, took, binary.map(|(id, _)| id), now, out);
        }
        if let Some(path) = self.builds.again.take() {
            self.start_build(BuildTrigger::Changed(path), now, out);
        }
    }

    /// A build succeeded: restart if it changed the executable (or nothing runs).
    /// `binary`: what is at the command's path, and whether its content is the running
    /// generation's.
    fn on_build_ok(
        &mut self,
        took: Duration,
        binary: Option<(FileId, bool)>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(build) = &self.settings.build else {
            return;
        };
        self.missing = Missing::No;
        let Some((binary, same_content)) = binary.filter(|(id, _)| id.is_runnable()) else {
            out.push(Action::Report(Status::BuildFinished {
                took,
                then: AfterBuild::NoProgram {
                    program: build.program.clone(),
                },
            }));
            return;
        };
        let idle = self.current.is_none() && matches!(self.mode, Mode::Serving);
        if same_content && self.binary.is_some() {
            // Written anew with the very same bytes (`go build -o` does): the running
            // generation already runs it; its new identity is the one to compare with
            // from now on (or the watcher's late news of it would restart).
            self.binary = Some(binary);
        }
        let changed = self.binary != Some(binary);
        let trigger = if self.nothing_started() {
            Trigger::Start
        } else if changed {
            Trigger::BinaryChanged
        } else if build.restart_after_every_build || idle {
            Trigger::Built
        } else {
            out.push(Action::Report(Status::BuildFinished {
                took,
                then: AfterBuild::Unchanged {
                    serving: self.current,
                },
            }));
            return;
        };
        out.push(Action::Report(Status::BuildFinished {
            took,
            then: AfterBuild::Restart,
        }));
        self.request_restart(trigger, now, out);
    }

    /// A build failed: nothing is restarted (at start, the executable from before is
    /// started if there is one).
    fn on_build_failed(
        &mut self,
        end: ChildEnd,
        took: Duration,
        binary: Option<FileId>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(build) = &self.settings.build else {
            return;
        };
        let runnable = binary.is_some_and(|b| b.is_runnable());
        let then = match self.current {
            Some(serving) => AfterFailedBuild::Serving(serving),
            None if self.nothing_started() && runnable => AfterFailedBuild::StartFromBefore {
                program: build.program.clone(),
            },
            None => AfterFailedBuild::NothingToRun,
        };
        let start = matches!(then, AfterFailedBuild::StartFromBefore { .. });
        out.push(Action::Report(Status::BuildFailed { end, took, then }));
        if start {
            self.request_restart(Trigger::Start, now, out);
        }
    }

    fn on_build_group_checked(
        &mut self,
        id: BuildId,
        empty: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(build) = self.builds.running.as_mut().filter(|b| b.id == id) else {
            return;
        };
        if empty {
            self.build_gone(now, out);
        } else if let Some(exit) = build.exit.as_mut() {
            exit.poll = (exit.poll * 2).min(GROUP_POLL_MAX);
            exit.recheck_at = Some(now + exit.poll);
        }
    }

    /// A stopped build's whole group is gone: reap it; build again or finish shutting
    /// down.
    fn build_gone(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(build) = self.builds.running.take() else {
            return;
        };
        out.push(Action::ReapBuild { build: build.id });
        let shutting_down = matches!(self.mode, Mode::ShuttingDown(_));
        let again = if shutting_down {
            None
        } else {
            self.builds.again.take()
        };
        if let Some(exit) = &build.exit {
            out.push(Action::Report(Status::BuildStopped {
                end: exit.end,
                took: now.saturating_duration_since(build.started),
                killed: build.stop.as_ref().is_some_and(|s| s.killed),
                rebuilding: again.is_some(),
            }));
        }
        if shutting_down {
            self.exit_if_all_gone(None, out);
        } else if let Some(path) = again {
            self.start_build(BuildTrigger::Changed(path), now, out);
        }
    }

    fn on_build_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        let grace = self.settings.grace;
        let Some(build) = self.builds.running.as_mut() else {
            return;
        };
        if let Some(stop) = build.stop.as_mut()
            && stop.kill_at.is_some_and(|at| at <= now)
        {
            stop.kill_at = None;
            stop.killed = true;
            out.push(Action::SignalBuild {
                build: build.id,
                signal: Signal::SIGKILL,
            });
            out.push(Action::Report(Status::BuildGraceExpired { grace }));
        }
        if let Some(exit) = build.exit.as_mut()
            && exit.recheck_at.is_some_and(|at| at <= now)
        {
            exit.recheck_at = None;
            out.push(Action::CheckBuildGroup { build: build.id });
        }
    }

    // ---- deadlines -------------------------------------------------------------------

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        if matches!(self.missing, Missing::Since(at) if at <= now) {
            self.missing = Missing::Reported;
            out.push(Action::Report(Status::BinaryMissing));
        }
        if let Mode::Spawning(spawning) = &mut self.mode
            && spawning.retry_at.is_some_and(|at| at <= now)
        {
            spawning.retry_at = None;
            out.push(Action::Spawn {
                generation: Generation(self.next_generation),
                trigger: spawning.trigger.clone(),
            });
        }
        if let Mode::Starting(starting) = &self.mode {
            let candidate = starting.candidate;
            let after = now.saturating_duration_since(starting.since);
            if starting.ready_at.is_some_and(|at| at <= now) {
                self.become_ready(candidate, "delay", now, out);
            } else if starting.timeout_at <= now {
                out.push(Action::Report(Status::NotReady {
                    generation: candidate,
                    after,
                    still_serving: self.current,
                }));
                if self.current.is_some() {
                    self.mode = Mode::Serving;
                    self.stop(candidate, self.settings.stop_signal, now, out);
                } else {
                    // Nothing else can serve: keep it.
                    self.take_over(candidate, now, out);
                }
            }
        }
        if self.debounce.as_ref().is_some_and(|(at, _)| *at <= now)
            && let Some((_, path)) = self.debounce.take()
        {
            self.on_watch_change(path, now, out);
        }
        self.on_build_tick(now, out);
        let due: Vec<Generation> = self
            .children
            .iter()
            .filter(|c| {
                c.drain
                    .as_ref()
                    .is_some_and(|d| d.check_at.is_some_and(|at| at <= now))
            })
            .map(|c| c.generation)
            .collect();
        for generation in due {
            if let Some(drain) = self.child_mut(generation).and_then(|c| c.drain.as_mut()) {
                drain.check_at = None;
            }
            out.push(Action::CheckDrained { generation });
        }
        if self.restart_at.is_some_and(|at| at <= now) {
            self.restart_at = None;
            if matches!(self.mode, Mode::Serving) && self.current.is_none() {
                self.begin_spawn(Trigger::Crashed, now, out);
            }
        }
        let grace = self.settings.grace;
        for child in &mut self.children {
            if let Some(stop) = child.stop.as_mut()
                && stop.kill_at.is_some_and(|at| at <= now)
            {
                stop.kill(Kill::GraceExpired);
                out.push(Action::Signal {
                    generation: child.generation,
                    signal: Signal::SIGKILL,
                });
                out.push(Action::Report(Status::GraceExpired {
                    generation: child.generation,
                    grace,
                }));
            }
            if let Some(exit) = child.exit.as_mut()
                && exit.recheck_at.is_some_and(|at| at <= now)
            {
                exit.recheck_at = None;
                out.push(Action::CheckGroup {
                    generation: child.generation,
                });
            }
        }
    }

    fn child_mut(&mut self, generation: Generation) -> Option<&mut Child> {
        self.children
            .iter_mut()
            .find(|c| c.generation == generation)
    }
}

fn stop_end(stop: &Stop, end: ChildEnd) -> StopEnd {
    StopEnd {
        end,
        signal: stop.signal,
        also: stop.also,
        killed: stop.killed,
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
#[path = "supervisor_tests.rs"]
mod tests;
