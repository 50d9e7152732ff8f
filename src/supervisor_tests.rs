//! Unit tests of the supervisor: event sequences in, actions out, no processes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::*;
use crate::event::{Action, ChildEnd, Event, FileSig, Generation, Outcome, Status, Trigger};

const GRACE: Duration = Duration::from_secs(5);

struct Harness {
    sup: Supervisor,
    now: Instant,
}

fn settings(on_exit: OnExit) -> Settings {
    Settings {
        stop_signal: Signal::SIGTERM,
        grace: GRACE,
        debounce: Duration::from_millis(50),
        on_exit,
        ready: Readiness::Exec,
        ready_timeout: Duration::from_secs(30),
    }
}

fn sig(n: u64) -> FileSig {
    FileSig {
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
    assert_eq!(signals(&a), vec![(1, Signal::SIGTERM)]);
    let a = h.exited(1, ChildEnd::Signaled(15));
    assert_eq!(reaps(&a), vec![1]);
    assert!(spawns(&a).is_empty());
    assert!(exit(&a).is_none());
    assert!(reported(&a, |s| matches!(
        s,
        Status::Stopped {
            generation: Generation(1),
            end: StopEnd::Clean(_),
            ..
        }
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
        assert_eq!(signals(&h.spawned(2)), vec![(1, Signal::SIGTERM)]);
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
            end: StopEnd::Killed(_),
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
    assert_eq!(signals(&a), vec![(1, Signal::SIGTERM)]);
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
    assert_eq!(signals(&a), vec![(1, Signal::SIGTERM)]);
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
    // gen 1's leader exits on SIGTERM, but a process it forked at that moment is left.
    let a = h.ev(Event::LeaderExited {
        generation: Generation(1),
        end: ChildEnd::Exited(0),
        group_empty: false,
    });
    assert_eq!(signals(&a), vec![(1, Signal::SIGTERM)]);
    assert!(!reported(&a, |s| matches!(s, Status::Lingering { .. })));
    assert!(
        h.sup.next_deadline() <= deadline,
        "the grace deadline is kept"
    );
}

#[test]
fn a_new_generation_that_loses_the_port_is_retried_once_the_old_is_gone() {
    let mut h = running(OnExit::Wait);
    h.hup();
    h.spawned(2);
    // gen 2 dies of "address in use" while gen 1 still holds the port.
    let a = h.exited(2, ChildEnd::Exited(98));
    assert!(spawns(&a).is_empty());
    assert!(reported(&a, |s| matches!(s, Status::RetryAfterOld { .. })));
    let a = h.exited(1, ChildEnd::Exited(0));
    assert_eq!(spawns(&a), vec![3]);
    assert!(a.contains(&Action::Spawn {
        generation: Generation(3),
        trigger: Trigger::Retry
    }));
    h.spawned(3);
    // If the retry dies too, that is a plain exit: no endless retrying.
    let a = h.exited(3, ChildEnd::Exited(98));
    assert!(spawns(&a).is_empty());
    assert!(reported(&a, |s| matches!(s, Status::Waiting)));
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
    let mut delays = Vec::new();
    for g in 1..=4 {
        h.advance(Duration::from_millis(10));
        let a = h.exited(g, ChildEnd::Exited(1));
        let before = h.now;
        let a2 = h.tick();
        delays.push(h.now - before);
        assert!(reported(&a, |s| matches!(s, Status::Backoff { .. })));
        assert_eq!(spawns(&a2), vec![g + 1]);
        h.spawned(g + 1);
    }
    assert_eq!(
        delays,
        [100, 200, 400, 800].map(Duration::from_millis).to_vec()
    );
    // A generation that stayed up resets the backoff.
    h.advance(BACKOFF_RESET);
    h.exited(5, ChildEnd::Exited(1));
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
    assert_eq!(signals(&a), vec![(1, Signal::SIGTERM)]);
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
    assert_eq!(signals(&h.ready(3)), vec![(1, Signal::SIGTERM)]);
}

#[test]
fn a_new_generation_not_ready_in_time_is_stopped_and_the_old_keeps_serving() {
    let mut h = gated(Readiness::Notify);
    h.hup();
    h.spawned(2);
    let a = h.tick();
    assert_eq!(signals(&a), vec![(2, Signal::SIGTERM)]);
    assert!(reported(&a, |s| matches!(
        s,
        Status::NotReady {
            generation: Generation(2),
            still_serving: Some(Generation(1)),
            ..
        }
    )));
    let a = h.exited(2, ChildEnd::Signaled(15));
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
    assert_eq!(signals(&a), vec![(1, Signal::SIGTERM)]);
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
    assert_eq!(signals(&h.ready(2)), vec![(1, Signal::SIGTERM)]);
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
        all.extend(self.exited(old, ChildEnd::Signaled(15)));
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
    h.exited(g, ChildEnd::Signaled(15));
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
        let a = h.exited(g - 1, ChildEnd::Signaled(15));
        assert_eq!(spawns(&a), vec![g + 1], "{a:?}");
        told.extend(self_writes_told(&a));
    }
    assert_eq!(told, vec![PathBuf::from("log/app.log")]);
}
