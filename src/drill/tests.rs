//! Unit tests of the drill's state machine: statuses and probe samples in, restarts and
//! verdicts out, no processes and no clock.

use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;

use super::*;
use crate::event::{ChildEnd, Kill, StopEnd};

const BUDGET: Duration = Duration::from_secs(10);
/// The stop signal the generations were sent: not SIGTERM, so that "death by the stop
/// signal" cannot pass for "death by SIGTERM".
const STOP: Signal = Signal::SIGUSR2;

fn config(restarts: usize) -> DrillConfig {
    DrillConfig {
        restarts,
        probe: None,
        summary_json: None,
        stdout_is_json: false,
        restart_budget: BUDGET,
        pause: Duration::ZERO,
    }
}

fn up(g: u64) -> Progress {
    Progress {
        idle: true,
        current: Some(Generation(g)),
        building: false,
    }
}

fn busy(g: u64) -> Progress {
    Progress {
        idle: false,
        current: Some(Generation(g)),
        building: false,
    }
}

fn stopped(g: u64, end: ChildEnd, killed: Option<Kill>) -> Status {
    Status::Stopped {
        generation: Generation(g),
        end: StopEnd {
            end,
            signal: STOP,
            also: None,
            killed,
        },
        after: Duration::from_millis(2),
        alive: Duration::from_secs(1),
    }
}

fn clean_exit() -> Outcome {
    Outcome::Child {
        end: ChildEnd::Exited(0),
        received: None,
    }
}

fn is_restart(event: Option<Event>, n: usize) -> bool {
    matches!(event, Some(Event::Restart(Trigger::Drill(k))) if k == n)
}

fn is_stop(event: Option<Event>) -> bool {
    matches!(event, Some(Event::Shutdown(ShutdownSignal::Asked)))
}

/// A drill whose probes the test hands in.
struct Probed {
    drill: Drill,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Probed {
    fn new(restarts: usize) -> Probed {
        let (prober, samples) = Prober::fake();
        Probed {
            drill: Drill::with_prober(config(restarts), Some(prober), Vec::new()),
            samples,
        }
    }

    fn probe(&self, at: Instant, failure: Option<&str>) {
        self.probe_until(at, at, failure);
    }

    fn probe_until(&self, start: Instant, end: Instant, failure: Option<&str>) {
        self.samples.lock().expect("lock").push(Sample {
            start,
            end,
            failure: failure.map(str::to_string),
        });
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_drill_restarts_when_settled_and_then_stops() {
    let mut d = Drill::new(config(2), &[]);
    let t = Instant::now();
    assert_eq!(d.step(busy(1), t), None);
    // Each settled state is followed by a pause (zero here), then the next step.
    assert_eq!(d.step(up(1), t), None);
    assert!(is_restart(d.step(up(1), t), 1));
    assert_eq!(d.step(busy(1), t), None);
    assert_eq!(d.step(up(2), t), None);
    assert!(is_restart(d.step(up(2), t), 2));
    assert_eq!(d.step(up(3), t), None);
    assert!(is_stop(d.step(up(3), t)));
    d.observe(&stopped(3, ChildEnd::Exited(0), None));
    let summary = d.summarize(clean_exit());
    assert!(summary.passed, "{:?}", summary.failures);
    assert_eq!(
        summary.final_stop.as_deref(),
        Some("gen 3 stopped cleanly in 2.0 ms (exited with 0)")
    );
    let text = summary.text();
    assert!(text.starts_with("hotrun drill: 2 restarts\n"), "{text}");
    assert!(text.contains("drill passed"), "{text}");
}

#[test]
fn a_restart_that_does_not_settle_in_time_fails_the_drill() {
    let mut d = Drill::new(config(3), &[]);
    let t = Instant::now();
    d.step(up(1), t);
    assert!(is_restart(d.step(up(1), t), 1));
    let late = t + BUDGET + ms(1);
    assert!(is_stop(d.step(busy(1), late)));
    let summary = d.summarize(clean_exit());
    assert!(!summary.passed);
    assert!(
        summary
            .failures
            .contains(&"restart 1: did not complete within 10 s".to_string()),
        "{:?}",
        summary.failures
    );
    assert!(
        summary
            .failures
            .contains(&"only 1 of 3 restarts done".to_string()),
        "{:?}",
        summary.failures
    );
}

#[test]
fn death_by_the_stop_signal_is_a_clean_stop_and_another_exit_is_not() {
    let mut d = Drill::new(config(3), &[]);
    let t = Instant::now();
    d.step(up(1), t);
    assert!(is_restart(d.step(up(1), t), 1));
    d.observe(&stopped(1, ChildEnd::Signaled(STOP as i32), None));
    d.step(up(2), t);
    assert!(is_restart(d.step(up(2), t), 2));
    // A shell's way of saying it: 128 + the signal's number.
    d.observe(&stopped(2, ChildEnd::Exited(128 + STOP as i32), None));
    d.step(up(3), t);
    assert!(is_restart(d.step(up(3), t), 3));
    d.observe(&stopped(3, ChildEnd::Exited(1), None));
    d.step(up(4), t);
    assert!(is_stop(d.step(up(4), t)));
    // SIGTERM is not the stop signal here: no cleaner than SIGABRT.
    d.observe(&stopped(4, ChildEnd::Signaled(libc::SIGTERM), None));
    let summary = d.summarize(clean_exit());
    assert_eq!(
        summary.failures,
        [
            "restart 3: old gen 3 stopped in 2.0 ms but exited with 1: not a clean stop \
             (expected exit 0 or death by SIGUSR2)",
            "final stop: gen 4 stopped in 2.0 ms but was killed by SIGTERM: not a clean stop \
             (expected exit 0 or death by SIGUSR2)",
        ]
    );
    assert!(summary.restarts[0].ok && summary.restarts[1].ok);
}

#[test]
fn a_group_that_needed_sigkill_is_not_a_clean_stop() {
    let mut d = Drill::new(config(2), &[]);
    let t = Instant::now();
    d.step(up(1), t);
    assert!(is_restart(d.step(up(1), t), 1));
    d.observe(&stopped(1, ChildEnd::Signaled(9), Some(Kill::GraceExpired)));
    d.step(up(2), t);
    assert!(is_restart(d.step(up(2), t), 2));
    d.observe(&stopped(2, ChildEnd::Exited(0), Some(Kill::GraceExpired)));
    let problems: Vec<String> = d.records.iter().flat_map(|r| r.problems.clone()).collect();
    assert_eq!(
        problems,
        [
            "old gen 1 killed after 2.0 ms (killed by SIGKILL): not a clean stop (it was still \
             running when the grace period ran out)",
            "old gen 2 killed after 2.0 ms (exited with 0, but its group needed SIGKILL): not a \
             clean stop (processes of its group were still running when the grace period ran out)",
        ]
    );
}

#[test]
fn restart_1_waits_until_the_first_generation_answers_a_probe() {
    let mut p = Probed::new(1);
    let t = Instant::now();
    p.probe(t, Some("connection refused"));
    assert_eq!(p.drill.step(up(1), t + ms(10)), None);
    // Up, and the pause is over, but nothing answered yet: no restart, and the loop is
    // asked to look again soon.
    p.probe(t + ms(10), Some("answered 503"));
    assert_eq!(p.drill.step(up(1), t + ms(20)), None);
    assert_eq!(p.drill.deadline(), Some(t + ms(20) + PROBE_POLL));
    p.probe(t + ms(30), None);
    assert_eq!(p.drill.step(up(1), t + ms(40)), None);
    assert!(is_restart(p.drill.step(up(1), t + ms(40)), 1));
    let summary = p.drill.summarize(clean_exit());
    let probes = summary.probes.expect("probing");
    // Every probe is counted as sent; the failures while the server started are not
    // judged.
    assert_eq!(
        (probes.sent, probes.failed, probes.before_first_answer),
        (3, 0, 2)
    );
}

#[test]
fn a_server_that_never_answers_fails_the_drill_before_restart_1() {
    let mut p = Probed::new(1);
    let t = Instant::now();
    assert_eq!(p.drill.step(up(1), t), None);
    for i in 0..3 {
        p.probe(t + ms(i), Some("connection refused"));
    }
    assert!(is_stop(p.drill.step(up(1), t + BUDGET)));
    let summary = p.drill.summarize(clean_exit());
    assert!(
        summary.failures.contains(
            &"the server never answered a probe within 10 s (3 probes: 3 connection refused)"
                .to_string()
        ),
        "{:?}",
        summary.failures
    );
    assert!(summary.restarts.is_empty());
    let probes = summary.probes.expect("probing");
    assert_eq!(
        (probes.sent, probes.failed, probes.before_first_answer),
        (3, 0, 3)
    );
}

#[test]
fn a_failed_probe_belongs_to_the_restart_until_the_server_answers_after_it() {
    let mut p = Probed::new(2);
    let t = Instant::now();
    p.probe(t, None);
    p.drill.step(up(1), t + ms(1));
    assert!(is_restart(p.drill.step(up(1), t + ms(1)), 1));
    // Answered by the old generation during the restart: the window stays open.
    p.probe(t + ms(2), None);
    p.drill.step(busy(1), t + ms(3));
    // The restart is over at 4 ms...
    assert_eq!(p.drill.step(up(2), t + ms(4)), None);
    // ... but the new generation fails its first answers (a fixed port it binds late, say).
    p.probe(t + ms(5), Some("connection refused"));
    p.probe(t + ms(6), Some("connection refused"));
    p.probe(t + ms(7), Some("answered 503"));
    // The pause is over (zero), yet restart 2 waits for an answer.
    assert_eq!(p.drill.step(up(2), t + ms(8)), None);
    p.probe(t + ms(9), None);
    // Answered: the window is closed; a failure after it is nobody's restart.
    p.probe(t + ms(10), Some("connection refused"));
    p.probe(t + ms(11), None);
    assert!(is_restart(p.drill.step(up(2), t + ms(12)), 2));
    p.drill.step(up(3), t + ms(13));
    p.probe(t + ms(14), None);
    assert!(is_stop(p.drill.step(up(3), t + ms(15))));
    // After the final stop was asked for, failures are the point: a probe sent before it
    // and cut by it (the server dies at once), and the probes after it.
    p.probe_until(t + ms(14), t + ms(17), Some("connection reset"));
    p.probe(t + ms(16), Some("connection refused"));
    p.drill.observe(&stopped(3, ChildEnd::Exited(0), None));
    let summary = p.drill.summarize(clean_exit());
    assert_eq!(
        summary.failures,
        [
            "restart 1: 3 of 5 probes failed (2 connection refused, 1 answered 503)",
            "1 of 2 probes failed (1 connection refused) between restart 1 and restart 2, while \
             no restart was under way",
        ]
    );
    let rows: Vec<(u64, u64, bool)> = summary
        .restarts
        .iter()
        .map(|r| (r.probes, r.failed_probes, r.answered_ms.is_some()))
        .collect();
    assert_eq!(rows, [(5, 3, true), (1, 0, true)]);
    assert_eq!(summary.restarts[0].answered_ms, Some(8.0));
    let probes = summary.probes.expect("probing");
    assert_eq!((probes.sent, probes.failed), (9, 4));
}

#[test]
fn a_new_generation_that_never_answers_keeps_the_window_until_the_budget_runs_out() {
    let mut p = Probed::new(1);
    let t = Instant::now();
    p.probe(t, None);
    p.drill.step(up(1), t);
    assert!(is_restart(p.drill.step(up(1), t), 1));
    p.drill.step(up(2), t + ms(1));
    p.probe(t + ms(2), Some("connection refused"));
    assert_eq!(p.drill.step(up(2), t + ms(3)), None);
    assert!(is_stop(p.drill.step(up(2), t + ms(1) + BUDGET)));
    let summary = p.drill.summarize(clean_exit());
    assert_eq!(
        summary.failures[..2],
        [
            "restart 1: the server did not answer a probe within 10 s after the restart was over",
            "restart 1: 1 of 1 probe failed (1 connection refused)",
        ]
    );
}
