//! Unit tests of the supervisor: event sequences in, actions out, no processes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::*;
use crate::event::{
    Action, ChildEnd, Event, Generation, Kill, Outcome, ShutdownSignal, SocketNews, SpawnFailure,
    Status, StopEnd, Trigger,
};

/// The stop signal of the test settings: neither SIGTERM nor SIGINT (which shutdowns
/// forward as they came), so that "sends the stop signal" cannot pass for "sends SIGTERM".
const STOP: Signal = Signal::SIGUSR2;
const GRACE: Duration = Duration::from_secs(5);
const DRAIN: Duration = Duration::from_millis(100);

struct Harness {
    sup: Supervisor,
    now: Instant,
}

fn settings(on_exit: OnExit) -> Settings {
    Settings {
        stop_signal: STOP,
        grace: GRACE,
        debounce: Duration::from_millis(50),
        on_exit,
        ready: Readiness::Auto,
        ready_timeout: Duration::from_secs(30),
        drain: DRAIN,
        build: None,
    }
}

fn sig(n: u64) -> FileId {
    FileId {
        dev: 1,
        ino: n,
        size: 1000,
        mtime_ns: i128::from(n),
        executable: true,
    }
}

/// A harness whose generation 1 was spawned from binary `sig(1)`.
fn spawned_first(settings: Settings) -> Harness {
    let mut h = Harness {
        sup: Supervisor::new(settings),
        now: Instant::now(),
    };
    let start = h.sup.start(h.now);
    assert_eq!(spawns(&start), vec![1]);
    h.spawned(1);
    h
}

/// A harness whose generation 1 is running from binary `sig(1)`.
fn running(on_exit: OnExit) -> Harness {
    spawned_first(settings(on_exit))
}

impl Harness {
    fn ev(&mut self, event: Event) -> Vec<Action> {
        self.sup.handle(event, self.now)
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Moves the clock to the next deadline and ticks.
    fn tick(&mut self) -> Vec<Action> {
        let deadline = self.sup.next_deadline();
        let deadline = deadline.unwrap_or_else(|| panic!("no deadline"));
        self.now = self.now.max(deadline);
        self.ev(Event::Tick)
    }

    fn spawned(&mut self, g: u64) -> Vec<Action> {
        self.ev(Event::Spawned {
            generation: Generation(g),
            pid: 1000 + u32::try_from(g).unwrap_or(0),
            binary: Some(sig(g)),
        })
    }

    fn exited(&mut self, g: u64, end: ChildEnd) -> Vec<Action> {
        self.ev(Event::LeaderExited {
            generation: Generation(g),
            end,
            group_empty: true,
        })
    }

    fn hup(&mut self) -> Vec<Action> {
        self.ev(Event::Restart(Trigger::Signal(Signal::SIGHUP)))
    }
}

fn spawns(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { generation, .. } => Some(generation.0),
            _ => None,
        })
        .collect()
}

fn signals(actions: &[Action]) -> Vec<(u64, Signal)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Signal { generation, signal } => Some((generation.0, *signal)),
            _ => None,
        })
        .collect()
}

fn reaps(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reap { generation } => Some(generation.0),
            _ => None,
        })
        .collect()
}

fn exit(actions: &[Action]) -> Option<Outcome> {
    actions.iter().find_map(|a| match a {
        Action::Exit(o) => Some(*o),
        _ => None,
    })
}

fn reported(actions: &[Action], pred: impl Fn(&Status) -> bool) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Report(s) if pred(s)))
}

fn transient() -> Event {
    Event::SpawnFailed(SpawnFailure {
        message: "busy".into(),
        transient: true,
        exit_code: 126,
    })
}

fn fatal(code: i32) -> Event {
    Event::SpawnFailed(SpawnFailure {
        message: "cannot run".into(),
        transient: false,
        exit_code: code,
    })
}

#[test]
fn restart_spawns_the_new_generation_before_stopping_the_old() {
    let mut h = running(OnExit::Wait);
    let a = h.hup();
    assert_eq!(spawns(&a), vec![2]);
    assert!(
        signals(&a).is_empty(),
        "nothing is stopped before the exec: {a:?}"
    );
    let a = h.spawned(2);
    assert_eq!(signals(&a), vec![(1, STOP)]);
    let a = h.exited(1, ChildEnd::Signaled(STOP as i32));
    assert_eq!(reaps(&a), vec![1]);
    assert!(spawns(&a).is_empty());
    assert!(exit(&a).is_none());
    assert!(reported(&a, |s| matches!(
        s,
        Status::Stopped {
            generation: Generation(1),
            end,
            ..
        } if end.is_clean() && end.signal == STOP
    )));
}

#[test]
fn every_trigger_goes_through_the_same_routine() {
    for trigger in [
        Event::BinaryChanged(Some(sig(9))),
        Event::Restart(Trigger::Signal(Signal::SIGUSR1)),
    ] {
        let mut h = running(OnExit::Wait);
        let a = h.ev(trigger);
        assert_eq!(spawns(&a), vec![2]);
        assert_eq!(signals(&h.spawned(2)), vec![(1, STOP)]);
    }
}

#[test]
fn triggers_during_a_restart_coalesce_into_one_follow_up() {
    let mut h = running(OnExit::Wait);
    h.hup();
    h.spawned(2);
    let mut queued = 0;
    for event in [
        Event::Restart(Trigger::Signal(Signal::SIGHUP)),
        Event::BinaryChanged(Some(sig(7))),
        Event::Restart(Trigger::Signal(Signal::SIGHUP)),
    ] {
        let a = h.ev(event);
        assert!(spawns(&a).is_empty());
        queued += usize::from(reported(&a, |s| matches!(s, Status::Queued { .. })));
    }
    assert_eq!(queued, 1, "one follow-up, told once");
    let a = h.exited(1, ChildEnd::Exited(0));
    assert_eq!(spawns(&a), vec![3]);
    h.spawned(3);
    let a = h.exited(2, ChildEnd::Exited(0));
    assert!(spawns(&a).is_empty(), "only one follow-up: {a:?}");
}

#[test]
fn a_binary_with_the_running_identity_or_incomplete_does_not_restart() {
    let mut h = running(OnExit::Wait);
    assert!(h.ev(Event::BinaryChanged(Some(sig(1)))).is_empty());
    let mut half_written = sig(5);
    half_written.executable = false;
    assert!(h.ev(Event::BinaryChanged(Some(half_written))).is_empty());
    let mut empty = sig(6);
    empty.size = 0;
    assert!(h.ev(Event::BinaryChanged(Some(empty))).is_empty());
    // The final chmod makes it a restart.
    half_written.executable = true;
    assert_eq!(
        spawns(&h.ev(Event::BinaryChanged(Some(half_written)))),
        vec![2]
    );
}

#[test]
fn a_missing_binary_is_reported_only_when_it_stays_missing() {
    let mut h = running(OnExit::Wait);
    assert!(h.ev(Event::BinaryChanged(None)).is_empty());
    h.advance(Duration::from_millis(10));
    assert!(h.ev(Event::BinaryChanged(Some(sig(1)))).is_empty());
    assert!(
        h.sup.next_deadline().is_none(),
        "back in time: nothing to report"
    );
    h.ev(Event::BinaryChanged(None));
    let a = h.tick();
    assert!(reported(&a, |s| matches!(s, Status::BinaryMissing)));
    assert!(spawns(&a).is_empty());
}

#[test]
fn a_failed_spawn_keeps_the_old_generation() {
    let mut h = running(OnExit::Wait);
    h.hup();
    let a = h.ev(fatal(126));
    assert!(signals(&a).is_empty());
    assert!(exit(&a).is_none());
    assert!(reported(&a, |s| matches!(
        s,
        Status::SpawnFailed {
            still_serving: Some(Generation(1)),
            ..
        }
    )));
    // The next trigger tries again, with the same generation number.
    assert_eq!(spawns(&h.hup()), vec![2]);
}

#[test]
fn transient_spawn_failures_are_retried_within_the_budget() {
    let mut h = running(OnExit::Wait);
    h.ev(Event::BinaryChanged(Some(sig(2))));
    assert!(h.ev(transient()).is_empty());
    let a = h.tick();
    assert_eq!(spawns(&a), vec![2]);
    // A new event about the binary retries at once.
    h.ev(transient());
    h.advance(Duration::from_millis(1));
    h.ev(Event::BinaryChanged(Some(sig(3))));
    assert_eq!(h.sup.next_deadline(), Some(h.now));
    // Without news, it gives up after the budget and gen 1 keeps running.
    let mut gave_up = false;
    for _ in 0..100 {
        let a = h.tick();
        assert_eq!(spawns(&a), vec![2]);
        let a = h.ev(transient());
        if reported(&a, |s| {
            matches!(
                s,
                Status::SpawnFailed {
                    still_serving: Some(_),
                    ..
                }
            )
        }) {
            gave_up = true;
            break;
        }
    }
    assert!(gave_up);
    assert!(h.sup.next_deadline().is_none());
}

#[test]
fn the_first_generation_that_cannot_start_ends_hotrun() {
    let mut sup = Supervisor::new(settings(OnExit::Wait));
    let now = Instant::now();
    sup.start(now);
    let a = sup.handle(fatal(127), now);
    assert_eq!(exit(&a), Some(Outcome::CannotStart(127)));
    assert!(sup.is_done());
}

#[test]
fn a_stubborn_generation_is_killed_when_the_grace_period_ends() {
    let mut h = running(OnExit::Wait);
    h.hup();
    h.spawned(2);
    let stop_sent = h.now;
    // Unrelated events do not move the deadline.
    for _ in 0..10 {
        h.advance(Duration::from_millis(100));
        h.ev(Event::BinaryChanged(Some(sig(2))));
    }
    let a = h.tick();
    assert_eq!(h.now, stop_sent + GRACE);
    assert_eq!(signals(&a), vec![(1, Signal::SIGKILL)]);
    let a = h.exited(1, ChildEnd::Signaled(9));
    assert!(reported(&a, |s| matches!(
        s,
        Status::Stopped {
            generation: Generation(1),
            end: StopEnd {
                killed: Some(Kill::GraceExpired),
                ..
            },
            ..
        }
    )));
}

#[test]
fn shutdown_forwards_the_signal_and_exits_with_the_childs_status() {
    let mut h = running(OnExit::Wait);
    let a = h.ev(Event::Shutdown(ShutdownSignal::Interrupt));
    assert_eq!(signals(&a), vec![(1, Signal::SIGINT)]);
    let a = h.exited(1, ChildEnd::Exited(3));
    assert_eq!(
        exit(&a),
        Some(Outcome::Child {
            end: ChildEnd::Exited(3),
            received: Some(Signal::SIGINT)
        })
    );
}

#[test]
fn shutdown_reaches_every_live_generation_and_waits_for_all() {
    let mut h = running(OnExit::Wait);
    h.hup();
    h.spawned(2);
    let a = h.ev(Event::Shutdown(ShutdownSignal::Terminate));
    let mut sent = signals(&a);
    sent.sort();
    assert_eq!(sent, vec![(1, Signal::SIGTERM), (2, Signal::SIGTERM)]);
    let a = h.exited(2, ChildEnd::Exited(0));
    assert!(exit(&a).is_none(), "gen 1 is still alive");
    let a = h.exited(1, ChildEnd::Exited(0));
    assert_eq!(
        exit(&a),
        Some(Outcome::Child {
            end: ChildEnd::Exited(0),
            received: Some(Signal::SIGTERM)
        })
    );
}

#[test]
fn a_second_interrupt_kills_at_once() {
    let mut h = running(OnExit::Wait);
    h.ev(Event::Shutdown(ShutdownSignal::Interrupt));
    let a = h.ev(Event::Shutdown(ShutdownSignal::Interrupt));
    assert_eq!(signals(&a), vec![(1, Signal::SIGKILL)]);
    let a = h.exited(1, ChildEnd::Signaled(9));
    assert_eq!(
        exit(&a),
        Some(Outcome::Child {
            end: ChildEnd::Signaled(9),
            received: Some(Signal::SIGINT)
        })
    );
}

#[test]
fn no_restart_during_shutdown() {
    let mut h = running(OnExit::Wait);
    h.ev(Event::Shutdown(ShutdownSignal::Terminate));
    assert!(spawns(&h.hup()).is_empty());
    assert!(spawns(&h.ev(Event::BinaryChanged(Some(sig(4))))).is_empty());
}

#[test]
fn a_closed_terminal_shuts_down_with_the_stop_signal() {
    let mut h = running(OnExit::Wait);
    let a = h.ev(Event::Shutdown(ShutdownSignal::TerminalClosed));
    assert_eq!(signals(&a), vec![(1, STOP)]);
}

#[test]
fn shutdown_with_nothing_running_dies_of_the_signal() {
    let mut h = running(OnExit::Wait);
    h.exited(1, ChildEnd::Exited(1));
    let a = h.ev(Event::Shutdown(ShutdownSignal::Interrupt));
    assert_eq!(exit(&a), Some(Outcome::Signaled(Signal::SIGINT)));
}

#[test]
fn a_group_that_outlives_its_leader_is_stopped_and_waited_for() {
    let mut h = running(OnExit::Wait);
    let a = h.ev(Event::LeaderExited {
        generation: Generation(1),
        end: ChildEnd::Exited(0),
        group_empty: false,
    });
    assert!(reaps(&a).is_empty(), "the leader keeps the pgid reserved");
    assert_eq!(signals(&a), vec![(1, STOP)]);
    let a = h.tick();
    assert!(a.contains(&Action::CheckGroup {
        generation: Generation(1)
    }));
    let a = h.ev(Event::GroupChecked {
        generation: Generation(1),
        empty: false,
    });
    assert!(reaps(&a).is_empty());
    h.tick();
    let a = h.ev(Event::GroupChecked {
        generation: Generation(1),
        empty: true,
    });
    assert_eq!(reaps(&a), vec![1]);
    // It exited on its own: the exit policy applies.
    assert!(reported(&a, |s| matches!(s, Status::Exited { .. })));
    assert!(reported(&a, |s| matches!(s, Status::Waiting)));
}

#[test]
fn stragglers_get_the_stop_signal_again_when_the_leader_exits() {
    let mut h = running(OnExit::Wait);
    h.hup();
    h.spawned(2);
    let deadline = h.sup.next_deadline();
    // gen 1's leader exits on its stop signal, but a process it forked at that moment is
    // left.
    let a = h.ev(Event::LeaderExited {
        generation: Generation(1),
        end: ChildEnd::Exited(0),
        group_empty: false,
    });
    assert_eq!(signals(&a), vec![(1, STOP)]);
    assert!(!reported(&a, |s| matches!(s, Status::Lingering { .. })));
    assert!(
        h.sup.next_deadline() <= deadline,
        "the grace deadline is kept"
    );
}

/// All `Spawn` actions in a sequence of action lists, with their triggers.
fn all_spawns(batches: &[Vec<Action>]) -> Vec<(u64, Trigger)> {
    batches
        .iter()
        .flatten()
        .filter_map(|a| match a {
            Action::Spawn {
                generation,
                trigger,
            } => Some((generation.0, trigger.clone())),
            _ => None,
        })
        .collect()
}

/// A fixed-port restart: gen 2 fails to bind while gen 1 (killed by its stop signal at once)
/// holds the port. The two exits are fed in `order`, `gap` apart; exactly one retry
/// (gen 3) must follow, whichever exit comes first.
fn fixed_port_race(on_exit: OnExit, old_first: bool, gap: Duration) -> (Harness, Vec<Vec<Action>>) {
    let mut h = running(on_exit);
    h.hup();
    h.spawned(2);
    let mut batches = Vec::new();
    let old = (1, ChildEnd::Signaled(STOP as i32));
    let new = (2, ChildEnd::Exited(98));
    let order = if old_first { [old, new] } else { [new, old] };
    for (g, end) in order {
        batches.push(h.exited(g, end));
        h.advance(gap);
    }
    (h, batches)
}

#[test]
fn a_new_generation_that_loses_the_port_is_retried_once_whichever_exit_comes_first() {
    for on_exit in [OnExit::Wait, OnExit::Restart, OnExit::Exit] {
        for old_first in [true, false] {
            // Apart in time, and in one batch (the same instant, as one SIGCHLD reports
            // both).
            for gap in [Duration::from_millis(3), Duration::ZERO] {
                let case = format!("{on_exit:?}, old first: {old_first}, gap {gap:?}");
                let (mut h, batches) = fixed_port_race(on_exit, old_first, gap);
                assert_eq!(
                    all_spawns(&batches),
                    vec![(3, Trigger::Retry)],
                    "exactly one retry ({case})"
                );
                assert!(
                    batches.iter().flatten().any(|a| matches!(
                        a,
                        Action::Report(Status::RetryAfterOld {
                            generation: Generation(2),
                            older: Generation(1),
                            ..
                        })
                    )),
                    "the retry is told ({case})"
                );
                assert!(
                    !batches
                        .iter()
                        .flatten()
                        .any(|a| matches!(a, Action::Exit(_))),
                    "hotrun goes on ({case})"
                );
                // If the retry dies too, that is an ordinary exit: `--on-exit` decides.
                h.spawned(3);
                let a = h.exited(3, ChildEnd::Exited(98));
                assert!(spawns(&a).is_empty(), "no second retry ({case})");
                let expected = match on_exit {
                    OnExit::Wait => reported(&a, |s| matches!(s, Status::Waiting)),
                    OnExit::Restart => reported(&a, |s| matches!(s, Status::Backoff { .. })),
                    OnExit::Exit => exit(&a).is_some(),
                };
                assert!(expected, "the retry's exit follows --on-exit ({case})");
            }
        }
    }
}

#[test]
fn a_generation_that_ends_long_after_the_old_one_is_gone_is_not_retried() {
    let mut h = running(OnExit::Wait);
    h.hup();
    h.spawned(2);
    h.exited(1, ChildEnd::Exited(0));
    h.advance(RETRY_WINDOW + Duration::from_millis(1));
    let a = h.exited(2, ChildEnd::Exited(1));
    assert!(spawns(&a).is_empty());
    assert!(reported(&a, |s| matches!(s, Status::Waiting)));
}

#[test]
fn a_generation_started_alone_is_never_retried() {
    let mut h = running(OnExit::Wait);
    let a = h.exited(1, ChildEnd::Exited(98));
    assert!(spawns(&a).is_empty());
    assert!(reported(&a, |s| matches!(s, Status::Waiting)));
}

#[test]
fn a_queued_trigger_replaces_the_retry() {
    let mut h = running(OnExit::Wait);
    h.hup();
    h.spawned(2);
    // Another restart is asked for while gen 1 still stops: it is queued, and it is the
    // one that follows gen 2's exit (no extra retry).
    h.hup();
    let mut batches = vec![h.exited(2, ChildEnd::Exited(98))];
    batches.push(h.exited(1, ChildEnd::Exited(0)));
    assert_eq!(
        all_spawns(&batches),
        vec![(3, Trigger::Signal(Signal::SIGHUP))]
    );
}

#[test]
fn exit_policy_wait_restarts_on_the_next_trigger_only() {
    let mut h = running(OnExit::Wait);
    let a = h.exited(1, ChildEnd::Exited(1));
    assert!(reported(&a, |s| matches!(s, Status::Waiting)));
    assert!(h.sup.next_deadline().is_none());
    // Same binary as the crashed one: nothing to do.
    assert!(spawns(&h.ev(Event::BinaryChanged(Some(sig(1))))).is_empty());
    assert_eq!(spawns(&h.ev(Event::BinaryChanged(Some(sig(2))))), vec![2]);
}

#[test]
fn exit_policy_restart_backs_off_while_it_keeps_crashing() {
    let mut h = running(OnExit::Restart);
    // Quick exits until the delay has been at its maximum twice.
    let mut delays = Vec::new();
    let mut g = 1;
    while delays.iter().filter(|d| **d == BACKOFF_MAX).count() < 2 {
        assert!(
            g < 100,
            "the delay never reached {BACKOFF_MAX:?}: {delays:?}"
        );
        h.advance(Duration::from_millis(10));
        let a = h.exited(g, ChildEnd::Exited(1));
        let before = h.now;
        let a2 = h.tick();
        let waited = h.now - before;
        delays.push(waited);
        assert!(
            reported(
                &a,
                |s| matches!(s, Status::Backoff { delay } if *delay == waited)
            ),
            "the delay is told as it is: {a:?}"
        );
        assert_eq!(spawns(&a2), vec![g + 1]);
        h.spawned(g + 1);
        g += 1;
    }
    // The first delay, then each the double of the one before, up to the maximum.
    let mut expected = BACKOFF_FIRST;
    for (n, delay) in delays.iter().enumerate() {
        assert_eq!(*delay, expected, "delay {n} of {delays:?}");
        assert_eq!(*delay, backoff(u32::try_from(n).unwrap_or(u32::MAX)));
        expected = (expected * 2).min(BACKOFF_MAX);
    }
    // A generation that stayed up resets the backoff.
    h.advance(BACKOFF_RESET);
    h.exited(g, ChildEnd::Exited(1));
    let before = h.now;
    h.tick();
    assert_eq!(h.now - before, BACKOFF_FIRST);
    assert_eq!(backoff(30), BACKOFF_MAX);
}

#[test]
fn exit_policy_exit_ends_hotrun_with_the_childs_status() {
    let mut h = running(OnExit::Exit);
    let a = h.exited(1, ChildEnd::Exited(4));
    assert_eq!(
        exit(&a),
        Some(Outcome::Child {
            end: ChildEnd::Exited(4),
            received: None
        })
    );
}

#[test]
fn watched_path_changes_are_debounced() {
    let mut h = running(OnExit::Wait);
    for _ in 0..3 {
        assert!(h.ev(Event::PathChanged("/w/a".into())).is_empty());
        h.advance(Duration::from_millis(20));
    }
    let last = h.now - Duration::from_millis(20);
    let a = h.tick();
    assert_eq!(h.now, last + Duration::from_millis(50));
    assert_eq!(spawns(&a), vec![2]);
}

#[test]
fn events_about_unknown_generations_are_ignored() {
    let mut h = running(OnExit::Wait);
    assert!(h.exited(7, ChildEnd::Exited(0)).is_empty());
    assert!(
        h.ev(Event::GroupChecked {
            generation: Generation(7),
            empty: true
        })
        .is_empty()
    );
}

// ---- readiness gating and rollback -------------------------------------------------------

/// A harness with `--ready notify` (or delay) whose gen 1 is running and ready.
fn gated(ready: Readiness) -> Harness {
    let mut s = settings(OnExit::Wait);
    s.ready = ready;
    let mut h = spawned_first(s);
    if ready == Readiness::Notify {
        let a = h.ready(1);
        assert!(reported(&a, |s| matches!(
            s,
            Status::Ready {
                generation: Generation(1),
                ..
            }
        )));
    } else {
        h.tick();
    }
    h
}

impl Harness {
    fn ready(&mut self, g: u64) -> Vec<Action> {
        self.ev(Event::Notify {
            generation: Generation(g),
            ready: true,
            status: None,
        })
    }
}

#[test]
fn the_old_generation_is_stopped_only_once_the_new_one_is_ready() {
    let mut h = gated(Readiness::Notify);
    h.ev(Event::BinaryChanged(Some(sig(2))));
    let a = h.spawned(2);
    assert!(signals(&a).is_empty(), "gen 1 must keep serving: {a:?}");
    // A READY=1 from the old generation means nothing.
    assert!(signals(&h.ready(1)).is_empty());
    h.advance(Duration::from_millis(200));
    let a = h.ready(2);
    assert_eq!(signals(&a), vec![(1, STOP)]);
    assert!(reported(&a, |s| matches!(
        s,
        Status::Ready { generation: Generation(2), after, how: "READY=1" } if *after == Duration::from_millis(200)
    )));
}

#[test]
fn a_new_generation_that_exits_before_ready_is_rolled_back() {
    let mut h = gated(Readiness::Notify);
    h.ev(Event::BinaryChanged(Some(sig(2))));
    h.spawned(2);
    let a = h.exited(2, ChildEnd::Exited(1));
    assert!(signals(&a).is_empty());
    assert!(reported(&a, |s| matches!(
        s,
        Status::RolledBack {
            generation: Generation(2),
            still_serving: Generation(1),
            ..
        }
    )));
    // The same broken build is not tried again; a new one is.
    assert!(spawns(&h.ev(Event::BinaryChanged(Some(sig(2))))).is_empty());
    let a = h.ev(Event::BinaryChanged(Some(sig(3))));
    assert_eq!(spawns(&a), vec![3]);
    h.spawned(3);
    assert_eq!(signals(&h.ready(3)), vec![(1, STOP)]);
}

#[test]
fn a_new_generation_not_ready_in_time_is_stopped_and_the_old_keeps_serving() {
    let mut h = gated(Readiness::Notify);
    h.hup();
    h.spawned(2);
    let a = h.tick();
    assert_eq!(signals(&a), vec![(2, STOP)]);
    assert!(reported(&a, |s| matches!(
        s,
        Status::NotReady {
            generation: Generation(2),
            still_serving: Some(Generation(1)),
            ..
        }
    )));
    let a = h.exited(2, ChildEnd::Signaled(STOP as i32));
    assert_eq!(reaps(&a), vec![2]);
    assert!(signals(&a).is_empty());
    // The next trigger tries again.
    assert_eq!(spawns(&h.hup()), vec![3]);
}

#[test]
fn delay_readiness_counts_the_time_it_stayed_up() {
    let mut h = gated(Readiness::Delay(Duration::from_millis(300)));
    h.hup();
    let spawned = h.now;
    h.spawned(2);
    let a = h.tick();
    assert_eq!(h.now, spawned + Duration::from_millis(300));
    assert_eq!(signals(&a), vec![(1, STOP)]);
}

#[test]
fn triggers_while_waiting_for_readiness_coalesce() {
    let mut h = gated(Readiness::Notify);
    h.hup();
    h.spawned(2);
    let a = h.hup();
    assert!(spawns(&a).is_empty());
    assert!(reported(&a, |s| matches!(s, Status::Queued { .. })));
    h.ready(2);
    let a = h.exited(1, ChildEnd::Exited(0));
    assert_eq!(spawns(&a), vec![3]);
}

#[test]
fn status_messages_are_reported() {
    let mut h = gated(Readiness::Notify);
    let a = h.ev(Event::Notify {
        generation: Generation(1),
        ready: false,
        status: Some("warming up".into()),
    });
    assert!(reported(
        &a,
        |s| matches!(s, Status::ChildSays { text, .. } if text == "warming up")
    ));
}

#[test]
fn a_first_generation_that_never_gets_ready_keeps_running() {
    let mut s = settings(OnExit::Wait);
    s.ready = Readiness::Notify;
    let mut h = spawned_first(s);
    let a = h.tick();
    assert!(signals(&a).is_empty());
    assert!(reported(&a, |s| matches!(
        s,
        Status::NotReady {
            still_serving: None,
            ..
        }
    )));
    // It is the current generation now: a restart replaces it the normal way.
    h.hup();
    h.spawned(2);
    assert_eq!(signals(&h.ready(2)), vec![(1, STOP)]);
}

#[test]
fn shutdown_while_a_generation_is_starting_stops_both() {
    let mut h = gated(Readiness::Notify);
    h.hup();
    h.spawned(2);
    let a = h.ev(Event::Shutdown(ShutdownSignal::Terminate));
    let mut sent = signals(&a);
    sent.sort();
    assert_eq!(sent, vec![(1, Signal::SIGTERM), (2, Signal::SIGTERM)]);
}

// ---- socket takeover: readiness by listen, drain ------------------------------------------

impl Harness {
    fn socket(&mut self, g: u64, news: SocketNews) -> Vec<Action> {
        self.ev(Event::Socket {
            generation: Generation(g),
            news,
        })
    }

    /// Ticks to the drain check of generation `g` and answers it with `open`.
    fn drained(&mut self, g: u64, open: usize) -> Vec<Action> {
        self.ev(Event::DrainChecked {
            generation: Generation(g),
            open,
        })
    }

    /// Ticks until the drain check of `g` is asked for, and answers it with `open`.
    fn tick_drained(&mut self, g: u64, open: usize) -> Vec<Action> {
        let a = self.tick();
        assert!(
            a.contains(&Action::CheckDrained {
                generation: Generation(g)
            }),
            "{a:?}"
        );
        self.drained(g, open)
    }

    fn listens(&mut self, g: u64, first: bool) -> Vec<Action> {
        self.socket(
            g,
            SocketNews::Listening {
                addr: "127.0.0.1:8080".into(),
                first,
            },
        )
    }
}

fn drains(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Drain { generation } => Some(generation.0),
            _ => None,
        })
        .collect()
}

/// Gen 1 runs and listens on a socket hotrun now holds; gen 2 was spawned by a SIGHUP.
fn listening_and_restarted(ready: Readiness) -> Harness {
    let mut s = settings(OnExit::Wait);
    s.ready = ready;
    let mut h = spawned_first(s);
    if ready == Readiness::Notify {
        h.ready(1);
    }
    let a = h.listens(1, true);
    assert!(reported(&a, |s| matches!(s, Status::SocketHeld { .. })));
    h.hup();
    h
}

#[test]
fn a_generation_replacing_a_listening_one_is_ready_once_it_listens_too() {
    let mut h = listening_and_restarted(Readiness::Auto);
    let a = h.spawned(2);
    assert!(signals(&a).is_empty(), "gen 1 serves until gen 2 listens");
    let a = h.socket(
        2,
        SocketNews::TookOver {
            addr: "127.0.0.1:8080".into(),
        },
    );
    assert!(reported(&a, |s| matches!(
        s,
        Status::SocketTakenOver { .. }
    )));
    assert!(signals(&a).is_empty());
    h.advance(Duration::from_millis(200));
    let a = h.listens(2, false);
    assert!(reported(
        &a,
        |s| matches!(s, Status::Ready { how: "listen", after, .. } if *after == Duration::from_millis(200))
    ));
    // Gen 1 takes no new connection now; its stop signal follows after the drain.
    assert_eq!(drains(&a), vec![1]);
    assert!(signals(&a).is_empty());
    assert!(reported(
        &a,
        |s| matches!(s, Status::Draining { min, max, .. } if *min == DRAIN && *max == DRAIN_MAX)
    ));
    // After the drain, hotrun looks whether connections gen 1 accepted are still open.
    let before = h.now;
    let a = h.tick();
    assert_eq!(h.now - before, DRAIN);
    assert!(a.contains(&Action::CheckDrained {
        generation: Generation(1)
    }));
    assert!(signals(&a).is_empty());
    assert_eq!(signals(&h.drained(1, 0)), vec![(1, STOP)]);
    let a = h.exited(1, ChildEnd::Signaled(STOP as i32));
    assert!(reported(&a, |s| matches!(s, Status::Stopped { .. })));
}

#[test]
fn a_new_generation_that_exits_before_it_listens_is_rolled_back() {
    let mut h = listening_and_restarted(Readiness::Auto);
    h.spawned(2);
    // A broken build: it dies before it listens; gen 1 keeps serving, undisturbed.
    let a = h.exited(2, ChildEnd::Exited(101));
    assert!(reported(&a, |s| matches!(
        s,
        Status::RolledBack {
            still_serving: Generation(1),
            ..
        }
    )));
    assert!(signals(&a).is_empty() && drains(&a).is_empty());
    // The next build is tried, through the same gate.
    let a = h.ev(Event::BinaryChanged(Some(sig(3))));
    assert_eq!(spawns(&a), vec![3]);
    assert!(signals(&h.spawned(3)).is_empty());
    assert_eq!(drains(&h.listens(3, false)), vec![1]);
}

#[test]
fn a_new_generation_that_never_listens_is_stopped_after_the_ready_timeout() {
    let mut h = listening_and_restarted(Readiness::Auto);
    h.spawned(2);
    let a = h.tick();
    assert!(reported(&a, |s| matches!(
        s,
        Status::NotReady {
            still_serving: Some(Generation(1)),
            ..
        }
    )));
    assert_eq!(signals(&a), vec![(2, STOP)]);
}

#[test]
fn without_a_listening_generation_or_with_ready_exec_there_is_no_gate() {
    // Gen 1 never listened on a held socket (takeover off, or not a server).
    let mut h = running(OnExit::Wait);
    h.hup();
    let a = h.spawned(2);
    assert_eq!(signals(&a), vec![(1, STOP)]);
    assert!(drains(&a).is_empty());
    // --ready exec: ready at exec even though gen 1 listens; gen 1 is still drained.
    let mut h = listening_and_restarted(Readiness::Exec);
    let a = h.spawned(2);
    assert_eq!(drains(&a), vec![1]);
    assert_eq!(signals(&h.tick_drained(1, 0)), vec![(1, STOP)]);
}

#[test]
fn explicit_readiness_wins_over_listen() {
    let mut h = listening_and_restarted(Readiness::Notify);
    h.spawned(2);
    let a = h.listens(2, false);
    assert!(!reported(&a, |s| matches!(s, Status::Ready { .. })));
    assert!(drains(&a).is_empty());
    let a = h.ev(Event::Notify {
        generation: Generation(2),
        ready: true,
        status: None,
    });
    assert!(reported(&a, |s| matches!(
        s,
        Status::Ready { how: "READY=1", .. }
    )));
    assert_eq!(drains(&a), vec![1]);
}

#[test]
fn a_generation_that_only_accepts_on_a_held_socket_is_drained_without_a_gate() {
    // A LISTEN_FDS server never calls listen(): no gate, but it accepts on the --listen
    // socket hotrun holds, so it is drained before its stop signal.
    let mut h = running(OnExit::Wait);
    h.socket(1, SocketNews::Accepting);
    h.hup();
    let a = h.spawned(2);
    assert_eq!(drains(&a), vec![1]);
    assert!(signals(&a).is_empty());
    assert_eq!(signals(&h.tick_drained(1, 0)), vec![(1, STOP)]);
}

#[test]
fn a_zero_drain_stops_at_once_and_a_shutdown_ends_a_drain() {
    let mut s = settings(OnExit::Wait);
    s.drain = Duration::ZERO;
    let mut h = spawned_first(s);
    h.listens(1, true);
    h.hup();
    h.spawned(2);
    let a = h.listens(2, false);
    assert_eq!(drains(&a), vec![1]);
    assert_eq!(signals(&a), vec![(1, STOP)]);

    let mut h = listening_and_restarted(Readiness::Auto);
    h.spawned(2);
    h.listens(2, false);
    // SIGINT during the drain: both are stopped now, with the signal that came.
    let a = h.ev(Event::Shutdown(ShutdownSignal::Interrupt));
    let mut sent = signals(&a);
    sent.sort();
    assert_eq!(sent, vec![(1, Signal::SIGINT), (2, Signal::SIGINT)]);
    // The drain deadline is gone: no second stop signal later.
    let a = h.exited(2, ChildEnd::Exited(0));
    assert!(signals(&a).is_empty());
    assert!(
        h.sup
            .next_deadline()
            .is_some_and(|d| d >= h.now + GRACE - DRAIN),
        "only the grace deadline is left"
    );
}

#[test]
fn a_draining_generation_is_stopped_once_its_connections_are_closed_or_at_the_most() {
    let mut h = listening_and_restarted(Readiness::Auto);
    h.spawned(2);
    h.listens(2, false);
    // Two requests it accepted are still being answered: it is looked at again shortly.
    let a = h.tick_drained(1, 2);
    assert!(signals(&a).is_empty());
    let a = h.tick_drained(1, 1);
    assert!(signals(&a).is_empty());
    // Both done: stopped now.
    assert_eq!(signals(&h.tick_drained(1, 0)), vec![(1, STOP)]);

    // A connection that never closes (keep-alive) holds it up to DRAIN_MAX, no more.
    let mut h = listening_and_restarted(Readiness::Auto);
    h.spawned(2);
    h.listens(2, false);
    let start = h.now;
    let mut last = Vec::new();
    for _ in 0..1000 {
        last = h.tick_drained(1, 1);
        if !signals(&last).is_empty() {
            break;
        }
    }
    assert_eq!(signals(&last), vec![(1, STOP)]);
    assert_eq!(h.now - start, DRAIN_MAX);
    // The whole drain is told, the minimum (--drain) included.
    assert!(reported(&last, |s| matches!(
        s,
        Status::DrainCut { open: 1, waited, .. } if *waited == DRAIN_MAX
    )));
}

#[test]
fn a_declined_takeover_is_reported() {
    let mut h = listening_and_restarted(Readiness::Auto);
    h.spawned(2);
    let a = h.socket(
        2,
        SocketNews::Declined {
            addr: "127.0.0.1:8080".into(),
            why: "blocking modes differ".into(),
        },
    );
    assert!(reported(&a, |s| matches!(
        s,
        Status::TakeoverDeclined { .. }
    )));
}

/// The `StopEnd` reported for generation `g`, if a `Stopped` status was.
fn stop_end_of(actions: &[Action], g: u64) -> Option<StopEnd> {
    actions.iter().find_map(|a| match a {
        Action::Report(Status::Stopped {
            generation, end, ..
        }) if generation.0 == g => Some(*end),
        _ => None,
    })
}

#[test]
fn a_stop_remembers_the_signal_it_sent() {
    // SIGINT as the stop signal (the one a shutdown by Ctrl-C forwards too).
    let mut h = spawned_first(Settings {
        stop_signal: Signal::SIGINT,
        ..settings(OnExit::Wait)
    });
    h.hup();
    assert_eq!(signals(&h.spawned(2)), vec![(1, Signal::SIGINT)]);
    let end = stop_end_of(&h.exited(1, ChildEnd::Signaled(libc::SIGINT)), 1);
    assert_eq!(
        end,
        Some(StopEnd {
            end: ChildEnd::Signaled(libc::SIGINT),
            signal: Signal::SIGINT,
            also: None,
            killed: None,
        })
    );
    assert!(end.is_some_and(|e| e.is_clean()));
    // Death by SIGTERM is not what it was asked for.
    h.hup();
    h.spawned(3);
    let end = stop_end_of(&h.exited(2, ChildEnd::Signaled(libc::SIGTERM)), 2);
    assert!(end.is_some_and(|e| !e.is_clean()), "{end:?}");
}

#[test]
fn a_signal_forwarded_to_a_stopping_generation_counts_as_sent() {
    let mut h = running(OnExit::Wait);
    h.hup();
    h.spawned(2);
    // Ctrl-C while gen 1 is still in its grace period on its stop signal.
    let a = h.ev(Event::Shutdown(ShutdownSignal::Interrupt));
    assert!(signals(&a).contains(&(1, Signal::SIGINT)), "{a:?}");
    let end = stop_end_of(&h.exited(1, ChildEnd::Signaled(libc::SIGINT)), 1);
    assert_eq!(
        end.map(|e| (e.signal, e.also, e.is_clean())),
        Some((STOP, Some(Signal::SIGINT), true))
    );
}

#[test]
fn sigkill_is_remembered_with_its_reason() {
    let mut h = running(OnExit::Wait);
    h.hup();
    h.spawned(2);
    h.ev(Event::Shutdown(ShutdownSignal::Interrupt));
    // The second signal kills at once: forced, not the grace period.
    h.ev(Event::Shutdown(ShutdownSignal::Interrupt));
    let end = stop_end_of(&h.exited(1, ChildEnd::Signaled(9)), 1);
    assert_eq!(end.and_then(|e| e.killed), Some(Kill::Forced));
    assert!(end.is_some_and(|e| !e.is_clean()));
}

// ---- restarts the server sets off itself ---------------------------------------------------

fn self_writes_told(actions: &[Action]) -> Vec<PathBuf> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Report(Status::SelfWrites { path }) => Some(path.clone()),
            _ => None,
        })
        .collect()
}

impl Harness {
    /// `path` changes `after` the newest start; the debounced restart runs to its end (the
    /// old generation gone). Returns every action along the way.
    fn restart_from_change(&mut self, path: &str, after: Duration, old: u64) -> Vec<Action> {
        self.advance(after);
        let mut all = self.ev(Event::PathChanged(path.into()));
        all.extend(self.tick());
        assert_eq!(spawns(&all), vec![old + 1], "{all:?}");
        all.extend(self.spawned(old + 1));
        all.extend(self.exited(old, ChildEnd::Signaled(STOP as i32)));
        all
    }
}

#[test]
fn restarts_from_a_file_changed_right_after_each_start_are_named_once() {
    let mut h = running(OnExit::Wait);
    let mut told = Vec::new();
    for g in 1..=(u64::from(SELF_WRITE_STREAK) + 3) {
        let a = h.restart_from_change("log/app.log", Duration::from_millis(10), g);
        let now = self_writes_told(&a);
        if g == u64::from(SELF_WRITE_STREAK) {
            assert_eq!(now, vec![PathBuf::from("log/app.log")], "{a:?}");
        } else if g < u64::from(SELF_WRITE_STREAK) {
            assert!(now.is_empty(), "told too early, restart {g}: {a:?}");
        }
        told.extend(now);
    }
    assert_eq!(told.len(), 1, "told more than once: {told:?}");
}

#[test]
fn changes_well_after_a_start_are_the_users() {
    let mut h = running(OnExit::Wait);
    for g in 1..=6 {
        let a = h.restart_from_change(
            "src/app.py",
            SELF_WRITE_WINDOW + Duration::from_millis(1),
            g,
        );
        assert!(self_writes_told(&a).is_empty(), "{a:?}");
    }
}

#[test]
fn another_path_or_trigger_breaks_the_streak() {
    let mut h = running(OnExit::Wait);
    let soon = Duration::from_millis(10);
    let mut g = 1;
    let mut told = Vec::new();
    for _ in 1..SELF_WRITE_STREAK {
        told.extend(self_writes_told(&h.restart_from_change(
            "log/a.log",
            soon,
            g,
        )));
        g += 1;
    }
    // A SIGHUP restart in between.
    assert_eq!(spawns(&h.hup()), vec![g + 1]);
    h.spawned(g + 1);
    h.exited(g, ChildEnd::Signaled(STOP as i32));
    g += 1;
    for _ in 1..SELF_WRITE_STREAK {
        told.extend(self_writes_told(&h.restart_from_change(
            "log/a.log",
            soon,
            g,
        )));
        g += 1;
    }
    // Another path in between.
    told.extend(self_writes_told(&h.restart_from_change(
        "log/b.log",
        soon,
        g,
    )));
    g += 1;
    assert!(told.is_empty(), "{told:?}");
    for _ in 0..SELF_WRITE_STREAK {
        told.extend(self_writes_told(&h.restart_from_change(
            "log/b.log",
            soon,
            g,
        )));
        g += 1;
    }
    assert_eq!(told, vec![PathBuf::from("log/b.log")]);
}

#[test]
fn a_change_queued_during_a_restart_counts_when_its_restart_begins() {
    let mut h = running(OnExit::Wait);
    h.advance(Duration::from_millis(10));
    h.ev(Event::PathChanged("log/app.log".into()));
    assert_eq!(spawns(&h.tick()), vec![2]);
    let mut told = Vec::new();
    for g in 2..=(u64::from(SELF_WRITE_STREAK) + 2) {
        h.spawned(g);
        // The new generation writes the file while the old one is still stopping.
        h.advance(Duration::from_millis(5));
        assert!(h.ev(Event::PathChanged("log/app.log".into())).is_empty());
        let a = h.tick();
        assert!(
            reported(&a, |s| matches!(s, Status::Queued { .. })),
            "{a:?}"
        );
        let a = h.exited(g - 1, ChildEnd::Signaled(STOP as i32));
        assert_eq!(spawns(&a), vec![g + 1], "{a:?}");
        told.extend(self_writes_told(&a));
    }
    assert_eq!(told, vec![PathBuf::from("log/app.log")]);
}

/// `--build`.
#[path = "supervisor_build_tests.rs"]
mod build;
