//! Wiring: forks the guardian, starts the signal thread and the watcher, then runs the one
//! loop that feeds events to the supervisor and carries out its actions. This is the only
//! place that spawns, signals and reaps (leaders, and orphans when hotrun is PID 1 or a
//! subreaper), all on one thread (the main thread, which lives as long as hotrun: it is
//! the "parent" that PR_SET_PDEATHSIG watches).

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, unbounded};
use nix::fcntl::{OFlag, open};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;

use crate::cli::Config;
use crate::drill::Drill;
use crate::event::{
    Action, BuildId, Event, Generation, Outcome, ShutdownSignal, SpawnFailure, Status, Trigger,
};
use crate::event_log::EventLog;
use crate::exit::{self, Failure};
use crate::file_id::{self, FileId};
use crate::guardian::Guardian;
use crate::input::Input;
use crate::process::{self, Handoff, Leader, Pgid, Spawner};
use crate::readiness::{NOTIFY_SOCKET, NotifyDir, NotifySocket};
use crate::report::Reporter;
use crate::sockets::{self, ListenAddr, Listeners};
use crate::supervisor::{Readiness, Supervisor};
use crate::takeover::{self, Seed, Takeover};
use crate::{footprint, format, ignores, orphans, program, signals, watcher};

/// Runs hotrun until the supervisor says it is done; returns hotrun's exit.
pub(crate) fn run(config: Config) -> Result<ExitCode, Failure> {
    // First, while nothing else is open: the sockets must take fds 3, 4, ….
    let listeners = sockets::open(&config.listen, config.backlog)?;
    let events = match &config.events {
        Some(path) => EventLog::open(path).map_err(|e| {
            Failure::usage(format!(
                "--events {}: cannot write there: {e}",
                path.display()
            ))
        })?,
        None => EventLog::none(),
    };
    let mut reporter = Reporter::new(config.quiet, config.color, events);
    reporter.event(
        "start",
        serde_json::json!({
            "pid": std::process::id(),
            "command": std::iter::once(&config.spawner.argv0)
                .chain(&config.spawner.args)
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>(),
            "program": config.spawner.program.to_string_lossy(),
            "listen": listeners.bound.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }),
    );
    for (i, addr) in listeners.bound.iter().enumerate() {
        let fd = sockets::FIRST_FD + i as i32;
        let name = &listeners.names()[i];
        // An unnamed socket is `unknown` in LISTEN_FDNAMES (as systemd has it), which is no
        // name to show.
        let named = if name == sockets::UNNAMED {
            String::new()
        } else {
            format!(", name {name}")
        };
        reporter.info(
            &format!("listening on {addr} (fd {fd}{named}); every generation gets it"),
            "listening",
            serde_json::json!({ "addr": addr.to_string(), "fd": fd, "name": name }),
        );
    }
    let hints = program::wrapper_hints(&program::CommandLine {
        program: &config.spawner.program,
        canonical: config.watch_binary.as_deref(),
        args: &config.spawner.args,
        watching_only_the_binary: config.watch_binary.is_some() && config.watch.is_empty(),
        listening: !listeners.is_empty(),
    });
    for hint in hints {
        reporter.hint(&hint);
    }
    if let Some(build) = &config.build {
        report_build_setup(build, &config.settings, &config.cwd, &mut reporter);
    }
    let notify_dir = match config.settings.ready {
        Readiness::Notify => Some(NotifyDir::create().map_err(|e| {
            Failure::new(
                exit::FAILURE,
                format!("cannot create the notify socket directory: {e}"),
            )
        })?),
        _ => None,
    };
    // A fork of hotrun: before the first thread starts (the signal thread, just below).
    let mut guardian = Guardian::start().unwrap_or_else(|err| {
        reporter.warn(&format!(
            "cannot start the guardian process ({err}); if hotrun is killed, grandchildren may survive"
        ));
        Guardian::none()
    });
    if let Some(dir) = &notify_dir {
        guardian.remove_dir(dir.path());
    }
    for path in listeners.created() {
        guardian.remove_file(path);
    }
    let (tx, rx) = unbounded();
    signals::start(tx.clone()).map_err(|e| {
        Failure::new(
            exit::FAILURE,
            format!("cannot install signal handlers: {e}"),
        )
    })?;
    let watch = watcher::Spec {
        extra: ignores::Extra {
            globs: config.ignore,
            cwd: config.cwd,
            // hotrun writes it on every restart: it must never set one off. Nor must the
            // command's executable inside a `--watch` tree: its own watch restarts once
            // per complete build, and the tree would add one more for the same build.
            paths: config
                .events
                .iter()
                .filter(|p| p.as_os_str() != "-")
                .filter_map(|p| std::fs::canonicalize(p).ok())
                .chain(config.watch_binary.clone())
                .collect(),
        },
        binary: config.watch_binary,
        paths: config.watch,
        poll: config.poll,
    };
    let warnings = watcher::start(&watch, tx.clone())
        .map_err(|e| Failure::new(exit::FAILURE, format!("{e:#}")))?;
    for warning in warnings {
        reporter.warn(&format!("ignore rules: {warning}"));
    }
    let takeover = if config.takeover {
        start_takeover(&listeners, config.backlog, &tx, &mut reporter)
    } else {
        None
    };
    let build = config.build.map(|b| Builder {
        command: b.command,
        stdout_to_stderr: config.spawner.stdout_to_stderr,
        running: None,
    });
    let mut world = World {
        build,
        spawner: config.spawner,
        leaders: BTreeMap::new(),
        guardian,
        reporter,
        terminal: open_terminal(),
        listeners,
        notify_dir,
        notify: BTreeMap::new(),
        takeover,
        tx: tx.clone(),
        adopts_orphans: orphans::adopted(),
        listen_hint_given: false,
        shutting_down: false,
    };
    let mut supervisor = Supervisor::new(config.settings);
    let mut drill = config.drill.map(|d| Drill::new(d, &world.listeners.bound));
    let mut queue = VecDeque::new();
    let mut actions = supervisor.start(Instant::now());
    // Start-up's code is given back once, when the loop first waits with nothing to do.
    let mut started = false;
    // The loop ticked since it last took input.
    let mut ticked = false;
    loop {
        for action in actions.drain(..) {
            if let (Some(drill), Action::Report(status)) = (drill.as_mut(), &action) {
                drill.observe(status);
            }
            if let Some(outcome) = world.execute(action, &mut queue) {
                let verdict = drill.map(|d| d.finish(outcome));
                // Clean up (unix socket files, the notify directory) before the exit,
                // which may be a re-raised signal that skips destructors. hotrun removes
                // them itself, so the guardian must not (a new process may own the names
                // by the time it would).
                world.guardian.forget_paths();
                drop(world);
                return Ok(match verdict {
                    Some(true) => ExitCode::SUCCESS,
                    Some(false) => exit::code(exit::DRILL_FAILED),
                    None => exit::from_outcome(outcome),
                });
            }
        }
        if queue.is_empty()
            && let Some(drill) = drill.as_mut()
            && let Some(event) = drill.step(supervisor.progress(), Instant::now())
        {
            queue.push_back(event);
        }
        let event = match queue.pop_front() {
            Some(event) => event,
            None => {
                let deadline = [
                    supervisor.next_deadline(),
                    drill.as_ref().and_then(Drill::deadline),
                ]
                .into_iter()
                .flatten()
                .min();
                if !started && deadline.is_none() && rx.is_empty() {
                    started = true;
                    footprint::shed_startup_pages();
                }
                let input = match deadline {
                    // A deadline that is due goes before more input: `recv_deadline`
                    // hands out a waiting message even past its deadline, so a steady
                    // stream of input (a child sending STATUS= without pause while
                    // stderr is slow) would hold back every timer, the grace period's
                    // SIGKILL included. Right after a tick, input comes first again.
                    Some(deadline) if !ticked && deadline <= Instant::now() => None,
                    Some(deadline) => rx.recv_deadline(deadline).ok(),
                    // `tx` lives in this frame, so the channel never disconnects.
                    None => rx.recv().ok(),
                };
                ticked = input.is_none();
                match input {
                    None => Event::Tick,
                    Some(input) => {
                        // The queue is empty: a shutdown asked for by an earlier input
                        // (a signal, the drill's final stop) is the supervisor's by now.
                        world.shutting_down |= supervisor.is_shutting_down();
                        world.translate(input, &mut queue);
                        continue;
                    }
                }
            }
        };
        actions = supervisor.handle(event, Instant::now());
    }
}

/// `--build`: the command, and the build that runs (until its leader is reaped).
struct Builder {
    command: std::ffi::OsString,
    /// stdout carries `--events -`: the build's stdout goes to stderr.
    stdout_to_stderr: bool,
    running: Option<(BuildId, Leader)>,
}

/// The processes and the outside world, as the loop sees them.
struct World {
    /// `--build`, if given.
    build: Option<Builder>,
    spawner: Spawner,
    /// Every generation whose leader is not reaped yet.
    leaders: BTreeMap<Generation, Leader>,
    guardian: Guardian,
    reporter: Reporter,
    /// hotrun's controlling terminal, if it had one at start.
    terminal: Option<OwnedFd>,
    listeners: Listeners,
    notify_dir: Option<NotifyDir>,
    /// Each live generation's notify socket (`--ready notify`).
    notify: BTreeMap<Generation, NotifySocket>,
    /// Socket takeover, unless it is off or cannot work here.
    takeover: Option<Takeover>,
    tx: Sender<Input>,
    /// hotrun is PID 1 or a subreaper: orphans are re-parented to it and must be reaped.
    adopts_orphans: bool,
    /// The `--listen` hint for a generation that ends at start was given.
    listen_hint_given: bool,
    /// hotrun was told to stop, or is stopping: the guardian's death no longer matters
    /// (`pkill hotrun` may have sent it a signal too).
    shutting_down: bool,
}

impl World {
    /// Turns an input into zero or more events.
    fn translate(&mut self, input: Input, queue: &mut VecDeque<Event>) {
        match input {
            Input::Binary => {
                queue.push_back(Event::BinaryChanged(FileId::of(&self.spawner.program)))
            }
            Input::Path(path) => queue.push_back(Event::PathChanged(path)),
            Input::Warning(text) => self.reporter.warn(&text),
            Input::Hint(text) => self.reporter.hint(&text),
            Input::Notify {
                generation,
                ready,
                status,
            } => queue.push_back(Event::Notify {
                generation,
                ready,
                status,
            }),
            Input::Socket { generation, news } => {
                queue.push_back(Event::Socket { generation, news });
            }
            Input::Signal(sig) => match Signal::try_from(sig) {
                Ok(Signal::SIGCHLD) => self.collect_exits(queue),
                Ok(Signal::SIGINT) => queue.push_back(Event::Shutdown(ShutdownSignal::Interrupt)),
                Ok(Signal::SIGTERM) => {
                    queue.push_back(Event::Shutdown(ShutdownSignal::Terminate));
                }
                Ok(Signal::SIGQUIT) => queue.push_back(Event::Shutdown(ShutdownSignal::Quit)),
                Ok(Signal::SIGHUP) if self.terminal_gone() => {
                    queue.push_back(Event::Shutdown(ShutdownSignal::TerminalClosed));
                }
                Ok(s @ (Signal::SIGHUP | Signal::SIGUSR1)) => {
                    queue.push_back(Event::Restart(Trigger::Signal(s)));
                }
                _ => {}
            },
        }
    }

    /// SIGCHLD: find which leaders exited (without reaping them) or were stopped.
    fn collect_exits(&mut self, queue: &mut VecDeque<Event>) {
        let mut any_exit = false;
        for (generation, leader) in &mut self.leaders {
            if leader.exited {
                continue;
            }
            let stopped = process::leader_stopped(leader.pid);
            if let Some(signal) = stopped.filter(|_| leader.stopped.is_none()) {
                queue.push_back(Event::LeaderStopped {
                    generation: *generation,
                    signal,
                });
            }
            leader.stopped = stopped;
            if let Some(end) = process::leader_end(leader.pid) {
                any_exit = true;
                leader.exited = true;
                queue.push_back(Event::LeaderExited {
                    generation: *generation,
                    end,
                    group_empty: process::group_is_empty(leader.pgid, leader.pid),
                });
            }
        }
        // The newest generation: the one whose executable a build is compared with.
        let newest = self.leaders.values().next_back().map(|l| l.pid);
        if let Some((build, leader)) = self.build.as_mut().and_then(|b| b.running.as_mut())
            && !leader.exited
            && let Some(end) = process::leader_end(leader.pid)
        {
            leader.exited = true;
            // The build is over: what it left at the command's path is final.
            let binary = FileId::of(&self.spawner.program);
            let same_as_running = end == crate::event::ChildEnd::Exited(0)
                && newest.is_some_and(|pid| file_id::same_content(&self.spawner.program, pid));
            queue.push_back(Event::BuildExited {
                build: *build,
                end,
                group_empty: process::group_is_empty(leader.pgid, leader.pid),
                binary,
                same_as_running,
            });
        }
        if any_exit && self.repair_sockets() {
            // The generation serving holds the broken socket: replace it.
            queue.push_back(Event::Restart(Trigger::SocketRebound));
        }
        if self.guardian.died() && !self.shutting_down {
            self.reporter
                .warn("the guardian process died; if hotrun is killed, grandchildren may survive");
        }
        if self.adopts_orphans {
            // Leaders stay unreaped until their group is gone; everything else goes.
            let leaders = &self.leaders;
            let guardian = self.guardian.pid();
            let build = self
                .build
                .as_ref()
                .and_then(|b| b.running.as_ref())
                .map(|(_, leader)| leader.pid);
            orphans::reap(|pid| {
                Some(pid) == guardian
                    || Some(pid) == build
                    || leaders.values().any(|l| l.pid == pid)
            });
        }
    }

    /// Binds anew any listening socket a child broke; true if one was.
    fn repair_sockets(&mut self) -> bool {
        let told = self.listeners.repair();
        for line in &told {
            self.reporter.warn(line);
        }
        !told.is_empty()
    }

    /// SIGHUP also means "your terminal went away"; then `tcgetpgrp` fails (EIO).
    fn terminal_gone(&self) -> bool {
        self.terminal
            .as_ref()
            .is_some_and(|tty| nix::unistd::tcgetpgrp(tty).is_err())
    }

    /// Carries out one action; returns the outcome when hotrun is done.
    fn execute(&mut self, action: Action, queue: &mut VecDeque<Event>) -> Option<Outcome> {
        match action {
            Action::Spawn { generation, .. } => self.spawn(generation, queue),
            Action::CheckDrained { generation } => {
                let open = self
                    .takeover
                    .as_ref()
                    .map_or(0, |t| t.open_connections(generation));
                queue.push_back(Event::DrainChecked { generation, open });
            }
            Action::Drain { generation } => {
                if let Some(takeover) = &self.takeover {
                    takeover.drain(generation);
                }
            }
            Action::Signal { generation, signal } => {
                if let Some(takeover) = &self.takeover
                    && signal != Signal::SIGKILL
                {
                    takeover.stopping(generation, signal as i32);
                }
                if let Some(pgid) = self.leaders.get(&generation).map(|l| l.pgid) {
                    self.signal_group(pgid, signal, &generation.to_string());
                }
            }
            Action::CheckGroup { generation } => {
                if let Some(leader) = self.leaders.get(&generation) {
                    queue.push_back(Event::GroupChecked {
                        generation,
                        empty: process::group_is_empty(leader.pgid, leader.pid),
                    });
                }
            }
            Action::Reap { generation } => {
                if let Some(leader) = self.leaders.remove(&generation) {
                    self.reap(&leader);
                }
                self.notify.remove(&generation);
                if let Some(takeover) = &self.takeover {
                    takeover.gone(generation);
                }
            }
            Action::Build { build, .. } => self.start_build(build, queue),
            Action::SignalBuild { build, signal } => {
                if let Some(pgid) = self.build_leader(build).map(|l| l.pgid) {
                    self.signal_group(pgid, signal, "the build");
                }
            }
            Action::CheckBuildGroup { build } => {
                if let Some(leader) = self.build_leader(build) {
                    queue.push_back(Event::BuildGroupChecked {
                        build,
                        empty: process::group_is_empty(leader.pgid, leader.pid),
                    });
                }
            }
            Action::ReapBuild { build } => {
                if let Some(builder) = self.build.as_mut()
                    && builder.running.as_ref().is_some_and(|(id, _)| *id == build)
                    && let Some((_, leader)) = builder.running.take()
                {
                    self.reap(&leader);
                }
            }
            Action::Report(status) => {
                self.reporter.status(&status);
                if !self.listen_hint_given
                    && let Some(hint) = listen_hint(&status, &self.listeners.bound)
                {
                    self.listen_hint_given = true;
                    self.reporter.hint(&hint);
                }
            }
            Action::Exit(outcome) => {
                self.reporter.exit(outcome);
                return Some(outcome);
            }
        }
        None
    }
}

impl World {
    /// Starts a generation (`Action::Spawn`): its sockets, its notify socket, takeover's
    /// filter; the answer is `Spawned` or `SpawnFailed`.
    fn spawn(&mut self, generation: Generation, queue: &mut VecDeque<Event>) {
        // The new generation must not inherit a socket a child broke.
        self.repair_sockets();
        let binary = FileId::of(&self.spawner.program);
        let mut handoff = Handoff {
            sockets: self.listeners.len(),
            env: self.listeners.env(),
            listen_pid: !self.listeners.is_empty(),
        };
        if let Some(dir) = &self.notify_dir {
            match dir.socket_for(generation, self.tx.clone()) {
                Ok(socket) => {
                    handoff
                        .env
                        .push((NOTIFY_SOCKET, socket.path().as_os_str().to_owned()));
                    self.notify.insert(generation, socket);
                }
                Err(err) => {
                    queue.push_back(Event::SpawnFailed(SpawnFailure {
                        message: format!("cannot create the notify socket for {generation}: {err}"),
                        transient: false,
                        exit_code: exit::FAILURE,
                    }));
                    return;
                }
            }
        }
        let filter = self.takeover.as_ref().and_then(|t| match t.prepare() {
            Ok(prepared) => Some(prepared),
            Err(err) => {
                self.reporter.warn(&format!(
                    "cannot prepare socket takeover for {generation}: {err}; it starts without it"
                ));
                None
            }
        });
        let hook = filter.as_ref().map(|(_, hook)| *hook);
        match self.spawner.spawn(generation, &handoff, hook) {
            Ok(leader) => {
                if let Some((prepared, _)) = filter {
                    self.adopt_filter(generation, prepared);
                }
                self.guardian.register(leader.pgid);
                let binary = file_id::running_binary(leader.pid, binary, &self.spawner.program);
                let pid = leader.pid.as_raw().unsigned_abs();
                self.leaders.insert(generation, leader);
                queue.push_back(Event::Spawned {
                    generation,
                    pid,
                    binary,
                });
                // The child may have died before its exit could be looked for.
                self.collect_exits(queue);
            }
            Err(failure) => {
                self.notify.remove(&generation);
                queue.push_back(Event::SpawnFailed(failure));
            }
        }
    }

    /// Sends `signal` to a process group (`what`: whose, for the warning). A stopped
    /// process acts on a signal only once continued, so every signal but SIGKILL comes
    /// with a SIGCONT (systemd does the same after its stop signal). A group that is gone
    /// already (ESRCH) is no news.
    fn signal_group(&mut self, pgid: Pgid, signal: Signal, what: &str) {
        if signal != Signal::SIGKILL {
            let _ = pgid.signal(Signal::SIGCONT);
        }
        if let Err(err) = pgid.signal(signal)
            && err != nix::errno::Errno::ESRCH
        {
            self.reporter.warn(&format!(
                "cannot send {} to {what} (pgid {}): {err}",
                signal.as_str(),
                pgid.as_raw()
            ));
        }
    }

    /// Reaps an exited leader. The guardian forgets its group first: after the reap the
    /// pgid may belong to anyone.
    fn reap(&mut self, leader: &Leader) {
        self.guardian.unregister(leader.pgid);
        process::reap(leader.pid);
    }

    /// The leader of build `id`, while it is not reaped.
    fn build_leader(&self, id: BuildId) -> Option<&Leader> {
        self.build
            .as_ref()
            .and_then(|b| b.running.as_ref())
            .filter(|(running, _)| *running == id)
            .map(|(_, leader)| leader)
    }

    /// Runs the build command (`Action::Build`).
    fn start_build(&mut self, id: BuildId, queue: &mut VecDeque<Event>) {
        let Some(builder) = self.build.as_mut() else {
            return;
        };
        match process::spawn_build(&builder.command, builder.stdout_to_stderr) {
            Ok(leader) => {
                self.guardian.register(leader.pgid);
                builder.running = Some((id, leader));
                queue.push_back(Event::BuildStarted { build: id });
                // It may have ended before its exit could be looked for.
                self.collect_exits(queue);
            }
            Err(err) => queue.push_back(Event::BuildSpawnFailed {
                build: id,
                message: format!("cannot start the build (/bin/sh -c …): {err}"),
            }),
        }
    }

    /// Hands the new generation's filter listener to the takeover thread; if the child
    /// could not install the filter (a container that denies seccomp), takeover is
    /// turned off for good, said once.
    fn adopt_filter(&mut self, generation: Generation, prepared: takeover::Prepared) {
        match prepared.listener() {
            Ok(Some(listener)) => {
                if let Some(takeover) = &self.takeover {
                    takeover.adopt(generation, listener);
                }
            }
            Ok(None) => {}
            Err(err) => {
                self.takeover = None;
                self.reporter.warn(&format!(
                    "socket takeover is off: {generation} could not install its seccomp filter ({err}); \
                     a server that binds its own port is restarted the plain way (--no-takeover silences this)"
                ));
            }
        }
    }
}

/// Tells, at start, what `--build` watches and when it restarts.
fn report_build_setup(
    build: &crate::cli::BuildCommand,
    settings: &crate::supervisor::Settings,
    cwd: &Path,
    reporter: &mut Reporter,
) {
    let Some(build_settings) = &settings.build else {
        return;
    };
    if let Some(watched) = &build.watching_cwd {
        let skipped = build_settings
            .ignore_dirs
            .iter()
            .map(|d| format::shown(d, cwd).display().to_string())
            .collect::<Vec<_>>();
        let but = match skipped.len() {
            0 => String::new(),
            _ => format!(
                " (except {}, where the build writes)",
                skipped.join(" and ")
            ),
        };
        reporter.info(
            &format!(
                "--build without --watch: a change in the current directory {}{but} runs the build",
                watched.display()
            ),
            "build_watching",
            serde_json::json!({
                "paths": [watched.to_string_lossy()],
                "except": build_settings.ignore_dirs.iter().map(|d| d.to_string_lossy()).collect::<Vec<_>>(),
            }),
        );
    }
    if build_settings.restart_after_every_build {
        reporter.hint(&format!(
            "with --build: {} (the command) is a shell, an interpreter or a launcher, which no \
             build changes; every successful build restarts it",
            build_settings.program.display()
        ));
    }
}

/// Starts socket takeover, or says once why it cannot work here.
fn start_takeover(
    listeners: &Listeners,
    backlog: i32,
    tx: &Sender<Input>,
    reporter: &mut Reporter,
) -> Option<Takeover> {
    let started = takeover::probe().and_then(|()| {
        let seeds = listeners
            .copies()
            .into_iter()
            .map(|(fd, name)| Seed { fd, name })
            .collect();
        Takeover::start(tx.clone(), seeds, backlog).map_err(|e| e.to_string())
    });
    match started {
        Ok(takeover) => Some(takeover),
        Err(why) => {
            reporter.info(
                &format!(
                    "socket takeover is off: {why}; a server that binds its own port is restarted \
                     the plain way (--no-takeover silences this)"
                ),
                "takeover_off",
                serde_json::json!({ "why": why }),
            );
            None
        }
    }
}

/// How soon after its start a generation's own exit counts as "at start" for the
/// `--listen` hint.
const EARLY_EXIT: Duration = Duration::from_secs(5);

/// A generation that ends at start under `--listen` most likely binds the port itself,
/// which hotrun already holds: the hint says where the socket is.
fn listen_hint(status: &Status, bound: &[ListenAddr]) -> Option<String> {
    let first = bound.first()?;
    let generation = match status {
        Status::Exited {
            generation, alive, ..
        } if *alive < EARLY_EXIT => generation,
        Status::RolledBack { generation, .. } | Status::RetryAfterOld { generation, .. } => {
            generation
        }
        _ => return None,
    };
    let n = bound.len();
    let first_fd = sockets::FIRST_FD;
    let fds = match n {
        1 => format!("fd {first_fd}"),
        _ => format!("fds {first_fd}-{}", first_fd + n as i32 - 1),
    };
    Some(format!(
        "{generation} ended soon after it started. With --listen, hotrun holds the socket and \
         it is already open at {fds} (LISTEN_FDS={n}): a server that binds {first} itself \
         gets \"address already in use\"; it should take fd {first_fd} instead (README: \
         \"Zero-downtime restarts\")"
    ))
}

fn open_terminal() -> Option<OwnedFd> {
    open(
        "/dev/tty",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_hint_is_for_generations_that_end_at_start() {
        let one = [ListenAddr::Tcp("127.0.0.1:8080".parse().expect("addr"))];
        let exited = |ms| Status::Exited {
            generation: Generation(1),
            end: crate::event::ChildEnd::Exited(98),
            alive: Duration::from_millis(ms),
        };
        let hint = listen_hint(&exited(80), &one).expect("a hint");
        assert!(
            hint.starts_with("gen 1 ended soon after it started."),
            "{hint}"
        );
        assert!(hint.contains("open at fd 3 (LISTEN_FDS=1)"), "{hint}");
        assert!(hint.contains("binds 127.0.0.1:8080 itself"), "{hint}");
        assert_eq!(listen_hint(&exited(80), &[]), None);
        assert_eq!(listen_hint(&exited(6000), &one), None);
        // Before it was ready, however long that took.
        let rolled_back = Status::RolledBack {
            generation: Generation(3),
            end: crate::event::ChildEnd::Exited(1),
            alive: Duration::from_secs(20),
            still_serving: Generation(2),
        };
        let two = [one[0].clone(), ListenAddr::Unix("/run/s.sock".into())];
        let hint = listen_hint(&rolled_back, &two).expect("a hint");
        assert!(hint.contains("open at fds 3-4 (LISTEN_FDS=2)"), "{hint}");
        assert_eq!(listen_hint(&Status::Waiting, &one), None);
    }
}
