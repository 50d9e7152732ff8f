//! `--build`: a change runs the build command instead of a restart; the build's exit
//! decides the restart; a change during a build stops it and builds again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{
    BUILD_LOOP_STREAK, BUILD_LOOP_WINDOW, BUILD_STOP_STREAK, GroupPoll, Missing, Mode, Supervisor,
    WRITTEN_BY_BUILDS, earliest,
};
use crate::event::{
    Action, AfterBuild, AfterFailedBuild, BuildId, BuildTrigger, ChildEnd, Status, Trigger,
};
use crate::file_id::FileId;

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

/// `--build`: the build command's state.
#[derive(Debug, Default)]
pub(super) struct Builds {
    /// The build under way, until its leader is reaped.
    pub(super) running: Option<Build>,
    /// The change another build is due for, once the running one is gone.
    pub(super) again: Option<PathBuf>,
    pub(super) next_id: u64,
    /// Builds stopped in a row by changes during them (reset when one ends on its own).
    pub(super) stopped_in_a_row: u32,
    /// When the last build that ended on its own ended, and the path that started it.
    pub(super) last: Option<(Instant, PathBuf)>,
    /// Builds in a row started by that same path changing right after the last one.
    pub(super) loop_streak: u32,
    /// The user was told about such a loop (once is enough).
    pub(super) loop_told: bool,
}

#[derive(Debug)]
pub(super) struct Build {
    pub(super) id: BuildId,
    pub(super) trigger: BuildTrigger,
    pub(super) started: Instant,
    /// Set once hotrun asked it to stop.
    pub(super) stop: Option<BuildStop>,
    /// Set once its leader ended after it was asked to stop (its group is awaited).
    pub(super) exit: Option<BuildExit>,
}

impl Build {
    pub(super) fn deadline(&self) -> Option<Instant> {
        let kill = self.stop.as_ref().and_then(|s| s.kill_at);
        let recheck = self.exit.as_ref().and_then(|e| e.group.next);
        earliest([kill, recheck])
    }
}

#[derive(Debug)]
pub(super) struct BuildStop {
    /// The signal it was sent last (stragglers get it too).
    pub(super) signal: Signal,
    /// When SIGKILL is due; `None` once sent.
    pub(super) kill_at: Option<Instant>,
    pub(super) killed: bool,
}

impl BuildStop {
    /// Its group gets SIGKILL now.
    pub(super) fn kill(&mut self) {
        self.kill_at = None;
        self.killed = true;
    }
}

/// How a stopped build's leader ended; its group is watched until it is gone.
#[derive(Debug)]
pub(super) struct BuildExit {
    pub(super) end: ChildEnd,
    pub(super) group: GroupPoll,
}

impl Supervisor {
    /// A build runs, or is about to (a change waits out its quiet period, or another
    /// build follows the one being stopped).
    pub(super) fn build_due(&self) -> bool {
        self.settings.build.is_some()
            && (self.builds.running.is_some()
                || self.builds.again.is_some()
                || self.debounce.is_some())
    }

    /// A `--watch` path changed (after its quiet period): a build with `--build`, else a
    /// restart.
    pub(super) fn on_watch_change(&mut self, path: PathBuf, now: Instant, out: &mut Vec<Action>) {
        if self.settings.build.is_none() {
            self.request_restart(Trigger::PathChanged(path), now, out);
            return;
        }
        if matches!(self.mode, Mode::ShuttingDown(_) | Mode::Done) {
            return;
        }
        if self.builds.running.is_some() {
            self.change_during_build(path, now, out);
        } else {
            self.start_build(BuildTrigger::Changed(path), now, out);
        }
    }

    /// A change while a build runs: the build is stopped and runs again from the newest
    /// sources — unless it is stopping already, the change is a file builds write
    /// themselves, or too many builds in a row were stopped (then this one finishes and
    /// another follows).
    fn change_during_build(&mut self, path: PathBuf, now: Instant, out: &mut Vec<Action>) {
        let stopping = self
            .builds
            .running
            .as_ref()
            .is_some_and(|b| b.stop.is_some());
        let written_by_build = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| WRITTEN_BY_BUILDS.contains(&n));
        let builds = &mut self.builds;
        if stopping {
            // Already being stopped for an earlier change: the next build takes this too.
            builds.again = Some(path);
        } else if written_by_build {
            builds.again.get_or_insert(path);
        } else if builds.stopped_in_a_row >= BUILD_STOP_STREAK {
            if builds.again.is_none() {
                out.push(Action::Report(Status::BuildQueued {
                    changed: path.clone(),
                    stops: builds.stopped_in_a_row,
                }));
            }
            builds.again = Some(path);
        } else {
            builds.stopped_in_a_row += 1;
            out.push(Action::Report(Status::BuildStopping {
                changed: path.clone(),
            }));
            builds.again = Some(path);
            self.stop_build(Signal::SIGTERM, now, out);
        }
    }

    pub(super) fn start_build(
        &mut self,
        trigger: BuildTrigger,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
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
    pub(super) fn stop_build(&mut self, signal: Signal, now: Instant, out: &mut Vec<Action>) {
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

    pub(super) fn on_build_spawn_failed(
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
            self.exit_if_all_gone(out);
        } else if self.nothing_started() {
            // Start what is there; the spawn says so if there is nothing.
            self.request_restart(Trigger::Start, now, out);
        }
    }

    /// The build's first process ended. `binary`: what is at the command's path now, and
    /// whether its content is the running generation's.
    pub(super) fn on_build_exited(
        &mut self,
        id: BuildId,
        end: ChildEnd,
        group_empty: bool,
        binary: Option<(FileId, bool)>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(build) = self
            .builds
            .running
            .as_mut()
            .filter(|b| b.id == id && b.exit.is_none())
        else {
            return;
        };
        let Some(signal) = build.stop.as_ref().map(|s| s.signal) else {
            self.build_ended(end, binary, now, out);
            return;
        };
        // A build hotrun stopped: it is over once its whole group is gone.
        let mut group = GroupPoll::new();
        if !group_empty {
            // What is left gets the signal too (a process forked after it was sent).
            out.push(Action::SignalBuild { build: id, signal });
            group.arm(now);
        }
        build.exit = Some(BuildExit { end, group });
        if group_empty {
            self.build_gone(now, out);
        }
    }

    /// The build ended on its own: its leader's status is the build's. Processes it left
    /// in its group are its business (a build tool's daemon); hotrun will not signal the
    /// group again, so the leader is reaped now.
    fn build_ended(
        &mut self,
        end: ChildEnd,
        binary: Option<(FileId, bool)>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(build) = self.builds.running.take() else {
            return;
        };
        let took = now.saturating_duration_since(build.started);
        self.builds.last = match build.trigger {
            BuildTrigger::Changed(path) => Some((now, path)),
            BuildTrigger::Start => None,
        };
        self.builds.stopped_in_a_row = 0;
        out.push(Action::ReapBuild { build: build.id });
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
            let program = build.program.clone();
            out.push(Action::Report(Status::BuildFinished {
                took,
                then: AfterBuild::NoProgram { program },
            }));
            return;
        };
        if same_content && self.binary.is_some() {
            // Written anew with the very same bytes (`go build -o` does): the running
            // generation already runs it; its new identity is the one to compare with
            // from now on (or the watcher's late news of it would restart).
            self.binary = Some(binary);
        }
        let restart = self.restart_after_build(self.binary != Some(binary));
        let then = match restart {
            Some(_) => AfterBuild::Restart,
            None => AfterBuild::Unchanged {
                serving: self.current,
            },
        };
        out.push(Action::Report(Status::BuildFinished { took, then }));
        if let Some(trigger) = restart {
            self.request_restart(trigger, now, out);
        }
    }

    /// Whether a successful build restarts the command (`changed`: it left another
    /// executable than the running one), and with which trigger.
    fn restart_after_build(&self, changed: bool) -> Option<Trigger> {
        let every_build = self
            .settings
            .build
            .as_ref()
            .is_some_and(|b| b.restart_after_every_build);
        let idle = self.current.is_none() && matches!(self.mode, Mode::Serving);
        if self.nothing_started() {
            Some(Trigger::Start)
        } else if changed {
            Some(Trigger::BinaryChanged)
        } else if every_build || idle {
            Some(Trigger::Built)
        } else {
            None
        }
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

    /// The answer to `CheckBuildGroup`.
    pub(super) fn on_build_group_checked(
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
            exit.group.back_off(now);
        }
    }

    /// A stopped build's whole group is gone (its leader has exited): reap it; build
    /// again or finish shutting down.
    fn build_gone(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(exit) = self.builds.running.as_mut().and_then(|b| b.exit.take()) else {
            return;
        };
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
        out.push(Action::Report(Status::BuildStopped {
            end: exit.end,
            took: now.saturating_duration_since(build.started),
            killed: build.stop.as_ref().is_some_and(|s| s.killed),
            rebuilding: again.is_some(),
        }));
        if shutting_down {
            self.exit_if_all_gone(out);
        } else if let Some(path) = again {
            self.start_build(BuildTrigger::Changed(path), now, out);
        }
    }

    /// A stopped build's grace ran out (SIGKILL), or its group is due to be looked at.
    pub(super) fn tick_build(&mut self, now: Instant, out: &mut Vec<Action>) {
        let grace = self.settings.grace;
        let Some(build) = self.builds.running.as_mut() else {
            return;
        };
        if let Some(stop) = build.stop.as_mut()
            && stop.kill_at.is_some_and(|at| at <= now)
        {
            stop.kill();
            out.push(Action::SignalBuild {
                build: build.id,
                signal: Signal::SIGKILL,
            });
            out.push(Action::Report(Status::BuildGraceExpired { grace }));
        }
        if build.exit.as_mut().is_some_and(|exit| exit.group.due(now)) {
            out.push(Action::CheckBuildGroup { build: build.id });
        }
    }
}
