//! `hotrun drill`: a non-interactive check that a server restarts cleanly, for CI. This
//! module owns the drill's state machine: when to inject the next restart and the final
//! stop, what each lifecycle step means for the verdict, and which restart a failed probe
//! belongs to. The probe client is in `probe`, the summary's rendering in `summary`.
//!
//! The drill runs inside the normal loop: it watches the same `Status` values the user
//! sees, asks the supervisor where it stands through `supervisor::Progress`, and injects
//! restarts (through the normal routine) and finally a SIGTERM-style shutdown as events.
//! It decides nothing about processes itself.
//!
//! With `--probe`, a thread asks the server continuously. Restart 1 is injected only once
//! the first generation has answered a probe (failures before that are the server
//! starting, and are not judged). A failed probe belongs to the restart whose window it
//! falls in: from that restart's injection until the first probe the server answered
//! once the restart was over (every older generation gone). The next restart waits for
//! that answer too, within the restart budget, so windows never overlap. Failures outside
//! every window are reported as such ("between restart 1 and restart 2").

mod probe;
mod summary;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub(crate) use probe::{Probe, parse_probe};
use probe::{Prober, Sample};
use summary::{ProbeTotals, RestartRow, Summary, count};

use crate::event::{Event, Generation, Outcome, ShutdownSignal, Status, Trigger};
use crate::format::{json_millis, whole_seconds};
use crate::sockets::ListenAddr;
use crate::supervisor::Progress;

/// How often the loop looks at the probes while the drill waits for an answer.
const PROBE_POLL: Duration = Duration::from_millis(10);

/// What `hotrun drill` was asked to do.
#[derive(Clone, Debug)]
pub(crate) struct DrillConfig {
    pub(crate) restarts: usize,
    pub(crate) probe: Option<Probe>,
    pub(crate) summary_json: Option<PathBuf>,
    /// stdout carries JSON (`--summary-json -` or `--events -`): the table goes to stderr.
    pub(crate) stdout_is_json: bool,
    /// How long one restart may take before the drill gives up on it (and how long the
    /// server may take to answer a probe once it is up).
    pub(crate) restart_budget: Duration,
    /// The wait before each restart and before the final stop (probes keep running).
    pub(crate) pause: Duration,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for the first generation to be up and, with `--probe`, to answer.
    First,
    /// The restart the drill injected last is under way (until the supervisor is idle
    /// again, or the restart budget runs out).
    Restarting,
    /// Settled; the next step (a restart, or the stop) comes once the pause is over and,
    /// with `--probe`, the server answered since the last restart.
    Pausing { then_stop: bool, until: Instant },
    /// The final stop was asked for.
    Stopping,
}

/// Probes sent, and why those that failed did.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    failed: u64,
    why: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, sample: &Sample) {
        self.sent += 1;
        if let Some(why) = &sample.failure {
            self.failed += 1;
            *self.why.entry(why.clone()).or_default() += 1;
        }
    }

    /// `3 of 40 probes failed (2 connection refused, 1 answered 503)`.
    fn failures(&self) -> String {
        format!(
            "{} of {} failed ({})",
            self.failed,
            count(self.sent, "probe"),
            self.reasons()
        )
    }

    fn reasons(&self) -> String {
        let mut why: Vec<(&String, &u64)> = self.why.iter().collect();
        why.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        why.iter()
            .map(|(w, n)| format!("{n} {w}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One restart.
#[derive(Debug)]
struct Record {
    old: Option<Generation>,
    new: Option<Generation>,
    injected: Instant,
    /// When the supervisor was idle again (every older generation gone).
    settled: Option<Instant>,
    /// When the first probe the server answered after `settled` was sent: the end of the
    /// restart's window.
    answered: Option<Instant>,
    ready_ms: Option<f64>,
    /// How long the new generation's spawn took (its readiness without `--ready`).
    spawn_ms: Option<f64>,
    stop_ms: Option<f64>,
    probes: Tally,
    problems: Vec<String>,
}

/// The drill's state. See the module docs.
pub(crate) struct Drill {
    config: DrillConfig,
    phase: Phase,
    records: Vec<Record>,
    /// Problems outside any restart (start, final stop).
    problems: Vec<String>,
    prober: Option<Prober>,
    probing: bool,
    /// When the first probe the server answered was sent.
    first_answer: Option<Instant>,
    /// The probes before that: the server starting; not judged.
    startup: Tally,
    /// Probes outside every restart's window, by how many restarts came before them.
    quiet: BTreeMap<usize, Tally>,
    /// The current phase's budget.
    budget_end: Option<Instant>,
    /// When the loop should call `step` again at the latest.
    wake: Option<Instant>,
    final_gen: Option<Generation>,
    final_stop: Option<String>,
    shutdown_at: Option<Instant>,
}

impl Drill {
    /// Starts the probe thread; `bound` are the `--listen` sockets (a probe on port 0 takes
    /// the port of the first TCP one).
    pub(crate) fn new(config: DrillConfig, bound: &[ListenAddr]) -> Drill {
        let mut problems = Vec::new();
        let probe = config.probe.clone().and_then(|probe| {
            if !probe.wants_listen_port() {
                return Some(probe);
            }
            let port = bound.iter().find_map(|a| match a {
                ListenAddr::Tcp(addr) => Some(addr.port()),
                ListenAddr::Unix(_) => None,
            });
            if port.is_none() {
                problems.push(format!(
                    "--probe {probe}: port 0 stands for the port of a --listen TCP socket, and there is none"
                ));
            }
            port.map(|port| probe.with_port(port))
        });
        let prober = probe.and_then(|probe| match Prober::start(probe) {
            Ok(prober) => Some(prober),
            Err(err) => {
                problems.push(format!("cannot start the probe thread: {err}"));
                None
            }
        });
        Drill::with_prober(config, prober, problems)
    }

    fn with_prober(config: DrillConfig, prober: Option<Prober>, problems: Vec<String>) -> Drill {
        Drill {
            config,
            phase: Phase::First,
            records: Vec::new(),
            problems,
            probing: prober.is_some(),
            prober,
            first_answer: None,
            startup: Tally::default(),
            quiet: BTreeMap::new(),
            budget_end: None,
            wake: None,
            final_gen: None,
            final_stop: None,
            shutdown_at: None,
        }
    }

    /// When the loop must call `step` again at the latest.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.wake
    }

    /// Takes note of one lifecycle step.
    pub(crate) fn observe(&mut self, status: &Status) {
        if let Phase::Stopping = self.phase {
            if let Status::Stopped {
                generation,
                end,
                after,
                ..
            } = status
                && Some(*generation) == self.final_gen
            {
                let sentence = end.sentence(*generation, *after);
                if !end.is_clean() {
                    self.problems.push(format!("final stop: {sentence}"));
                }
                self.final_stop = Some(sentence);
            }
            return;
        }
        let Some(record) = self.records.last_mut() else {
            match status {
                Status::Exited {
                    generation, end, ..
                }
                | Status::RolledBack {
                    generation, end, ..
                } => {
                    self.problems
                        .push(format!("{generation} {end} before the drill began"));
                }
                Status::NotReady {
                    generation, after, ..
                } => self.problems.push(format!(
                    "the first generation, {generation}, was not ready within {:.0} ms",
                    json_millis(*after)
                )),
                _ => {}
            }
            return;
        };
        match status {
            Status::Started {
                generation,
                latency,
                ..
            } if record.old != Some(*generation) => {
                record.new = Some(*generation);
                record.spawn_ms = Some(json_millis(*latency));
            }
            Status::Ready {
                generation, after, ..
            } if record.new == Some(*generation) => {
                record.ready_ms = Some(json_millis(*after));
            }
            Status::Stopped {
                generation,
                end,
                after,
                ..
            } if record.old == Some(*generation) => {
                record.stop_ms = Some(json_millis(*after));
                if !end.is_clean() {
                    record
                        .problems
                        .push(format!("old {}", end.sentence(*generation, *after)));
                }
            }
            Status::RolledBack {
                generation, end, ..
            } => record
                .problems
                .push(format!("new {generation} {end} before it was ready")),
            Status::NotReady {
                generation, after, ..
            } => record.problems.push(format!(
                "new {generation} was not ready within {:.0} ms",
                json_millis(*after)
            )),
            Status::SpawnFailed { message, .. } => record
                .problems
                .push(format!("new generation could not start: {message}")),
            Status::RetryAfterOld {
                generation,
                end,
                older,
                older_gone,
            } => record.problems.push(if *older_gone {
                format!(
                    "new {generation} {end} while {older} was stopping (it was started again once \
                     {older} was gone)"
                )
            } else {
                format!(
                    "new {generation} {end} while {older} was still stopping (it is started again \
                     once {older} is gone)"
                )
            }),
            Status::Exited {
                generation, end, ..
            } => {
                record
                    .problems
                    .push(format!("{generation} {end} on its own"));
            }
            _ => {}
        }
    }

    /// Given where the supervisor stands, the next event to inject, if any.
    pub(crate) fn step(&mut self, progress: Progress, now: Instant) -> Option<Event> {
        self.tally();
        self.wake = None;
        match self.phase {
            Phase::First => self.step_first(progress, now),
            Phase::Restarting => self.step_restarting(progress, now),
            Phase::Pausing { then_stop, until } => {
                self.step_pausing(then_stop, until, progress, now)
            }
            Phase::Stopping => None,
        }
    }

    fn step_first(&mut self, progress: Progress, now: Instant) -> Option<Event> {
        if progress.building {
            // `--build`: the first generation waits for the build, however long it takes
            // (the build's end wakes the loop). The budget counts from the build's end.
            self.budget_end = None;
            return None;
        }
        let budget = self.config.restart_budget;
        let deadline = *self.budget_end.get_or_insert(now + budget);
        let up = progress.idle && progress.current.is_some();
        let answered = !self.probing || self.first_answer.is_some();
        if up && answered {
            self.pause(false, now);
            return None;
        }
        if deadline <= now {
            let problem = if !up {
                format!(
                    "the first generation never got ready within {}",
                    whole_seconds(budget)
                )
            } else if self.startup.sent == 0 {
                format!("no probe came back within {}", whole_seconds(budget))
            } else {
                format!(
                    "the server never answered a probe within {} ({}: {})",
                    whole_seconds(budget),
                    count(self.startup.sent, "probe"),
                    self.startup.reasons()
                )
            };
            self.problems.push(problem);
            return Some(self.shutdown(progress, now));
        }
        self.wake = Some(if up {
            deadline.min(now + PROBE_POLL)
        } else {
            deadline
        });
        None
    }

    fn step_restarting(&mut self, progress: Progress, now: Instant) -> Option<Event> {
        let timed_out = self.budget_end.is_some_and(|d| d <= now);
        if !(progress.idle || timed_out) {
            self.wake = self.budget_end;
            return None;
        }
        let budget = self.config.restart_budget;
        if let Some(record) = self.records.last_mut() {
            record.settled = Some(now);
            if timed_out && !progress.idle {
                record
                    .problems
                    .push(format!("did not complete within {}", whole_seconds(budget)));
            } else if progress.current.is_none() {
                record.problems.push("nothing runs after it".into());
            } else if progress.current == record.old {
                if record.problems.is_empty() {
                    record
                        .problems
                        .push("the old generation still serves".into());
                }
            } else if record.ready_ms.is_none() && record.new == progress.current {
                // Ready on exec: the start itself is the readiness.
                record.ready_ms = record.spawn_ms;
            }
        }
        if progress.current.is_none() || (timed_out && !progress.idle) {
            return Some(self.shutdown(progress, now));
        }
        let then_stop = self.records.len() >= self.config.restarts;
        self.pause(then_stop, now);
        None
    }

    fn step_pausing(
        &mut self,
        then_stop: bool,
        until: Instant,
        progress: Progress,
        now: Instant,
    ) -> Option<Event> {
        if now < until {
            self.wake = Some(until);
            return None;
        }
        let budget = self.config.restart_budget;
        if self.probing
            && let Some(record) = self.records.last_mut()
            && record.answered.is_none()
        {
            let deadline = self.budget_end.unwrap_or(now);
            if deadline > now {
                self.wake = Some(deadline.min(now + PROBE_POLL));
                return None;
            }
            record.problems.push(format!(
                "the server did not answer a probe within {} after the restart was over",
                whole_seconds(budget)
            ));
        }
        if progress.current.is_none() {
            self.problems.push("nothing runs any more".into());
            return Some(self.shutdown(progress, now));
        }
        Some(if then_stop {
            self.shutdown(progress, now)
        } else {
            self.next_restart(progress, now)
        })
    }

    /// The next step comes after the pause; with `--probe`, also once the server answered
    /// (within the budget).
    fn pause(&mut self, then_stop: bool, now: Instant) {
        let until = now + self.config.pause;
        self.phase = Phase::Pausing { then_stop, until };
        self.budget_end = Some(now + self.config.restart_budget);
        self.wake = Some(until);
    }

    fn next_restart(&mut self, progress: Progress, now: Instant) -> Event {
        self.phase = Phase::Restarting;
        self.budget_end = Some(now + self.config.restart_budget);
        self.wake = self.budget_end;
        self.records.push(Record {
            old: progress.current,
            new: None,
            injected: now,
            settled: None,
            answered: None,
            ready_ms: None,
            spawn_ms: None,
            stop_ms: None,
            probes: Tally::default(),
            problems: Vec::new(),
        });
        Event::Restart(Trigger::Drill(self.records.len()))
    }

    fn shutdown(&mut self, progress: Progress, now: Instant) -> Event {
        self.phase = Phase::Stopping;
        self.budget_end = None;
        self.wake = None;
        self.final_gen = progress.current;
        self.shutdown_at = Some(now);
        Event::Shutdown(ShutdownSignal::Asked)
    }

    /// Files the probes sent since the last look (see the module docs for the rules).
    fn tally(&mut self) {
        let Some(prober) = &self.prober else {
            return;
        };
        for sample in prober.take() {
            self.attribute(&sample);
        }
    }

    fn attribute(&mut self, sample: &Sample) {
        // The final stop's own probes, and a probe under way when it began that failed
        // after it: the server is going away on purpose.
        let stopping =
            |at: Instant| sample.start >= at || (sample.failure.is_some() && sample.end >= at);
        if self.shutdown_at.is_some_and(stopping) {
            return;
        }
        let Some(index) = self
            .records
            .iter()
            .rposition(|r| r.injected <= sample.start)
        else {
            if self.first_answer.is_none() {
                if sample.failure.is_some() {
                    self.startup.add(sample);
                    return;
                }
                self.first_answer = Some(sample.start);
            }
            self.quiet.entry(0).or_default().add(sample);
            return;
        };
        let record = &mut self.records[index];
        if record.answered.is_some() {
            self.quiet.entry(index + 1).or_default().add(sample);
            return;
        }
        record.probes.add(sample);
        if sample.failure.is_none() && record.settled.is_some_and(|at| sample.start >= at) {
            record.answered = Some(sample.start);
        }
    }

    /// Prints the summary (the table, and `--summary-json`); true when every check passed.
    pub(crate) fn finish(mut self, outcome: Outcome) -> bool {
        let summary = self.summarize(outcome);
        match summary.publish(
            self.config.stdout_is_json,
            self.config.summary_json.as_deref(),
        ) {
            Ok(()) => summary.passed,
            Err(why) => {
                let _ = writeln!(std::io::stderr(), "hotrun: error: {why}");
                false
            }
        }
    }

    fn summarize(&mut self, outcome: Outcome) -> Summary {
        self.tally();
        // Stops the probe thread.
        self.prober = None;
        if self.final_stop.is_none() {
            self.problems.push(match outcome {
                Outcome::CannotStart(code) => format!("the command could not start (exit {code})"),
                Outcome::Child { end, .. } => format!("the drill ended early: the server {end}"),
                Outcome::Signaled(s) => format!("the drill ended early: hotrun got {}", s.as_str()),
            });
        }
        let done = self.records.len();
        let mut failures = Vec::new();
        let mut rows = Vec::new();
        let (mut sent, mut failed) = (0, 0);
        for k in 0..=done {
            if let Some(r) = k.checked_sub(1).and_then(|i| self.records.get(i)) {
                let mut problems = r.problems.clone();
                if r.probes.failed > 0 {
                    problems.push(r.probes.failures());
                }
                sent += r.probes.sent;
                failed += r.probes.failed;
                failures.extend(problems.iter().map(|p| format!("restart {k}: {p}")));
                rows.push(RestartRow {
                    restart: k,
                    old_gen: r.old.map(|g| g.0),
                    new_gen: r.new.map(|g| g.0),
                    ready_ms: r.ready_ms,
                    stop_ms: r.stop_ms,
                    answered_ms: r.answered.map(|at| json_millis(at - r.injected)),
                    probes: r.probes.sent,
                    failed_probes: r.probes.failed,
                    ok: problems.is_empty(),
                    problems,
                });
            }
            let Some(quiet) = self.quiet.get(&k) else {
                continue;
            };
            sent += quiet.sent;
            failed += quiet.failed;
            if quiet.failed > 0 {
                let when = if k == 0 {
                    "before restart 1".to_string()
                } else if k < done {
                    format!("between restart {k} and restart {}", k + 1)
                } else {
                    format!("after restart {k}")
                };
                failures.push(format!(
                    "{} {when}, while no restart was under way",
                    quiet.failures()
                ));
            }
        }
        if done < self.config.restarts {
            failures.push(format!(
                "only {done} of {} done",
                count(
                    u64::try_from(self.config.restarts).unwrap_or(u64::MAX),
                    "restart"
                )
            ));
        }
        failures.extend(self.problems.iter().cloned());
        Summary {
            passed: failures.is_empty(),
            asked: self.config.restarts,
            restarts: rows,
            final_stop: self.final_stop.clone(),
            probes: self.probing.then_some(ProbeTotals {
                sent: sent + self.startup.sent,
                failed,
                before_first_answer: self.startup.sent,
            }),
            failures,
        }
    }
}

#[cfg(test)]
mod tests;
