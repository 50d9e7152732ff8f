//! Signals sent to hotrun: SIGINT/SIGTERM/SIGQUIT are forwarded to the child's group and
//! hotrun exits with the child's status; a second one kills; SIGKILL of hotrun leaves no
//! process behind; a terminal hangup shuts down.

use std::os::unix::process::ExitStatusExt;

use nix::sys::signal::Signal;

use crate::harness::*;

fn start(sb: &Sandbox, hotrun_args: &[&str], fixture_args: &[&str]) -> Hotrun {
    let mut h = start_fixture(sb, hotrun_args, fixture_args);
    h.expect(&["gen 1 started"]);
    h
}

#[test]
fn sigint_and_sigterm_run_the_childs_cleanup_and_hotrun_exits_with_its_status() {
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGQUIT] {
        let sb = Sandbox::new();
        let mut h = start(&sb, &[], &["--cleanup-code", "42", "--grandchild"]);
        let grandchild = pid_in(&sb.log().wait_for(&["grandchild gen=1"]));
        h.signal(signal);
        let log = sb.log();
        log.wait_for(&[&format!("signal gen=1 sig={}", signal.as_str())]);
        log.wait_for(&["cleanup gen=1 code=42"]);
        let status = h.wait();
        assert_eq!(status.code(), Some(42), "{signal}: {}", h.transcript());
        assert!(is_gone(grandchild), "{signal}: grandchild survived");
    }
}

#[test]
fn a_child_killed_by_the_forwarded_signal_makes_hotrun_die_of_it_too() {
    let sb = Sandbox::new();
    let mut h = start(&sb, &[], &["--die-by-signal"]);
    h.signal(Signal::SIGINT);
    let status = h.wait();
    assert_eq!(status.signal(), Some(libc::SIGINT), "{}", h.transcript());
}

#[test]
fn a_second_sigint_kills_at_once() {
    let sb = Sandbox::new();
    // The child ignores INT and TERM, and the grace period is longer than any wait here:
    // only the second Ctrl-C can end this quickly.
    let mut h = start(&sb, &["--grace", "1h"], &["--ignore-term"]);
    h.signal(Signal::SIGINT);
    h.expect(&["got SIGINT"]);
    sb.log().wait_for(&["signal gen=1 sig=SIGINT"]);
    h.signal(Signal::SIGINT);
    h.expect(&["second signal: killing"]);
    let status = h.wait();
    assert_eq!(status.code(), Some(128 + 9), "{}", h.transcript());
}

#[test]
fn sigusr1_restarts_like_sighup() {
    let sb = Sandbox::new();
    let mut h = start(&sb, &[], &[]);
    h.signal(Signal::SIGUSR1);
    h.expect(&["gen 2 started", "(SIGUSR1)"]);
    sb.log().wait_for(&["start gen=2"]);
}

#[test]
fn sigkill_of_hotrun_leaves_no_process_behind() {
    let sb = Sandbox::new();
    let h = start(&sb, &[], &["--grandchild"]);
    let log = sb.log();
    let child = pid_in(&log.wait_for(&["start gen=1"]));
    let grandchild = pid_in(&log.wait_for(&["grandchild gen=1"]));
    // hotrun has handled the start (and told its guardian) once it is asleep.
    #[cfg(target_os = "linux")]
    h.wait_asleep();
    h.signal(Signal::SIGKILL);
    wait_gone(child);
    wait_gone(grandchild);
}

#[cfg(target_os = "linux")]
#[test]
fn a_terminal_hangup_shuts_down_instead_of_restarting() {
    let (master, slave) = open_pty();

    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let mut h = Hotrun::start_opts(
        &[app.as_os_str(), "--log".as_ref(), log.arg()],
        false,
        |cmd| with_controlling_tty(cmd, slave),
    );
    h.expect(&["gen 1 started"]);
    let child = pid_in(&log.wait_for(&["start gen=1"]));
    // The terminal goes away: the session leader (hotrun) gets SIGHUP.
    drop(master);
    h.expect(&["got SIGHUP"]);
    h.wait();
    assert_eq!(h.count(&["gen 2 started"]), 0, "{}", h.transcript());
    wait_gone(child);
    log.wait_for(&["signal gen=1 sig=SIGTERM"]);
}

#[cfg(target_os = "linux")]
#[test]
fn a_child_stopped_for_reading_the_terminal_is_reported() {
    let (master, slave) = open_pty();
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    // hotrun owns the terminal; with --stdin the child (in its own, background, group)
    // reads it and is stopped by SIGTTIN.
    let mut h = Hotrun::start_opts(
        &[
            "--stdin".as_ref(),
            "--grace".as_ref(),
            "300ms".as_ref(),
            "--".as_ref(),
            app.as_os_str(),
            "--log".as_ref(),
            log.arg(),
            "--read-stdin".as_ref(),
        ],
        false,
        |cmd| with_controlling_tty(cmd, slave),
    );
    h.expect(&["gen 1 is stopped by SIGTTIN and will hang", "drop --stdin"]);
    // Stopping it still works (SIGCONT goes with the stop signal; SIGKILL if need be).
    h.signal(Signal::SIGTERM);
    h.wait();
    let child = pid_in(&log.wait_for(&["start gen=1"]));
    wait_gone(child);
    drop(master);
}
