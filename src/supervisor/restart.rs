//! Restarts: the triggers (the binary, `--watch` paths, signals, crash restarts), one
//! restart at a time with the others coalesced, and the spawn of the new generation
//! (retried while the binary is being written).

use std::path::PathBuf;
use std::time::Instant;

use super::{
    Child, MISSING_REPORT_AFTER, Missing, Mode, SELF_WRITE_STREAK, SELF_WRITE_WINDOW,
    SPAWN_RETRY_BUDGET, SPAWN_RETRY_FIRST, SPAWN_RETRY_MAX, Spawning, Supervisor,
};
use crate::event::{Action, Generation, Outcome, SpawnFailure, Status, Trigger};
use crate::file_id::FileId;

/// Restarts in a row that a `--watch` path changing right after a start set off.
#[derive(Debug, Default)]
pub(super) struct SelfWrites {
    /// The latest `--watch` change seen, and whether it came within `SELF_WRITE_WINDOW`
    /// of the newest generation's start.
    pub(super) last_change: Option<(PathBuf, bool)>,
    /// The path of the current streak and its length.
    pub(super) streak: Option<(PathBuf, u32)>,
    /// The user was told (once is enough).
    pub(super) told: bool,
}

impl Supervisor {
    /// Something happened to the command's executable; `id`: what is at its path now. A
    /// new runnable file restarts; a missing one is told after a while; a build at work
    /// decides instead.
    pub(super) fn on_binary(&mut self, id: Option<FileId>, now: Instant, out: &mut Vec<Action>) {
        if self.build_due() {
            // The build is at work on it; the look after the build decides.
            self.missing = Missing::No;
            return;
        }
        let Some(id) = id else {
            if self.missing == Missing::No {
                self.missing = Missing::ReportAt(now + MISSING_REPORT_AFTER);
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

    /// A `--watch` path changed: after the quiet period it restarts (or, with `--build`,
    /// builds). Remembers whether it came right after a start (the self-write hint).
    pub(super) fn on_path(&mut self, path: PathBuf, now: Instant, out: &mut Vec<Action>) {
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

    /// A restart now, or queued behind the one under way.
    pub(super) fn request_restart(
        &mut self,
        trigger: Trigger,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
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

    /// Keeps one trigger for after the restart under way (the first; the others are the
    /// same restart).
    fn queue(&mut self, trigger: Trigger, out: &mut Vec<Action>) {
        if self.pending.is_none() {
            out.push(Action::Report(Status::Queued {
                trigger: trigger.clone(),
            }));
            self.pending = Some(trigger);
        }
    }

    /// A restart lasts until every generation older than the current one is gone.
    pub(super) fn restart_under_way(&self) -> bool {
        self.children
            .iter()
            .any(|c| Some(c.generation) != self.current)
    }

    /// Asks for the next generation.
    pub(super) fn begin_spawn(&mut self, trigger: Trigger, now: Instant, out: &mut Vec<Action>) {
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

    /// The new generation's exec went through: it is live, and the handover begins.
    pub(super) fn on_spawned(
        &mut self,
        generation: Generation,
        pid: u32,
        binary: Option<FileId>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(spawning) = self.take_spawning() else {
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
        self.children
            .push(Child::new(generation, now, spawning.trigger, beside));
        self.hand_over(generation, now, out);
    }

    /// Ends `Spawning`, which becomes `Serving`; `None` (and nothing changes) when no
    /// generation is being spawned.
    fn take_spawning(&mut self) -> Option<Spawning> {
        match std::mem::replace(&mut self.mode, Mode::Serving) {
            Mode::Spawning(spawning) => Some(spawning),
            other => {
                self.mode = other;
                None
            }
        }
    }

    /// A spawn failed: a transient failure is retried within the budget; otherwise the
    /// current generation keeps serving (without one: wait for a change; at start: exit).
    pub(super) fn on_spawn_failed(
        &mut self,
        failure: SpawnFailure,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
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
        if self.nothing_started() && self.settings.build.is_none() {
            // Not even the first generation could start (with --build, the next build may
            // fix it: wait for a change).
            self.mode = Mode::Done;
            out.push(Action::Exit(Outcome::CannotStart(failure.exit_code)));
        } else if serving.is_none() {
            out.push(Action::Report(Status::Waiting));
        }
    }

    /// No generation was ever started, and none is being started (with `--build`, the
    /// builds decide generation 1).
    pub(super) fn nothing_started(&self) -> bool {
        self.next_generation == 1 && self.children.is_empty() && matches!(self.mode, Mode::Serving)
    }

    /// Starts the queued restart once the one under way is over.
    pub(super) fn follow_up(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.restart_under_way()
            && matches!(self.mode, Mode::Serving)
            && let Some(trigger) = self.pending.take()
        {
            self.begin_spawn(trigger, now, out);
        }
    }

    /// Tells the user once the binary stays missing.
    pub(super) fn tick_missing(&mut self, now: Instant, out: &mut Vec<Action>) {
        if matches!(self.missing, Missing::ReportAt(at) if at <= now) {
            self.missing = Missing::Reported;
            out.push(Action::Report(Status::BinaryMissing));
        }
    }

    /// A spawn that failed for a transient reason is tried again.
    pub(super) fn tick_spawn_retry(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Mode::Spawning(spawning) = &mut self.mode
            && spawning.retry_at.is_some_and(|at| at <= now)
        {
            spawning.retry_at = None;
            out.push(Action::Spawn {
                generation: Generation(self.next_generation),
                trigger: spawning.trigger.clone(),
            });
        }
    }

    /// A `--watch` change is through its quiet period.
    pub(super) fn tick_debounce(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.debounce.as_ref().is_some_and(|(at, _)| *at <= now)
            && let Some((_, path)) = self.debounce.take()
        {
            self.on_watch_change(path, now, out);
        }
    }

    /// `--on-exit restart`: the backoff delay is over.
    pub(super) fn tick_crash_restart(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.restart_at.is_some_and(|at| at <= now) {
            self.restart_at = None;
            if matches!(self.mode, Mode::Serving) && self.current.is_none() {
                self.begin_spawn(Trigger::Crashed, now, out);
            }
        }
    }
}
