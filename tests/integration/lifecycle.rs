//! The child's own exits and the exit policies, status lines (quiet, colour, a closed
//! stderr), stdin, and the child's arguments and output.

use std::io::Write;
use std::process::Stdio;

use nix::sys::signal::Signal;

use crate::harness::*;

fn fixture_cmd<'a>(
    sb: &'a Sandbox,
    log: &'a Log,
    hotrun_args: &[&'a str],
) -> Vec<std::ffi::OsString> {
    let app = sb.install_fixture("app");
    let mut args: Vec<std::ffi::OsString> = hotrun_args.iter().map(|a| a.into()).collect();
    args.push("--".into());
    args.push(app.into());
    args.push("--log".into());
    args.push(log.arg().into());
    args
}

#[test]
fn a_child_that_exits_is_reported_and_hotrun_waits_for_a_trigger() {
    let sb = Sandbox::new();
    let log = sb.log();
    let mut args = fixture_cmd(&sb, &log, &[]);
    args.extend(["--exit-after-ms", "0", "--exit-code", "3"].map(Into::into));
    let mut h = Hotrun::start(&args);
    h.expect(&["gen 1 exited with 3 after"]);
    h.expect(&["waiting for a change (or SIGHUP)"]);
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 2 started", "(SIGHUP)"]);
    h.expect(&["gen 2 exited with 3"]);
    // Nothing runs now: hotrun dies of the signal itself, as the child would have.
    h.signal(Signal::SIGTERM);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&h.wait()),
        Some(libc::SIGTERM)
    );
}

#[test]
fn on_exit_exit_ends_hotrun_with_the_childs_status() {
    let sb = Sandbox::new();
    let log = sb.log();
    let mut args = fixture_cmd(&sb, &log, &["--on-exit", "exit"]);
    args.extend(["--exit-after-ms", "0", "--exit-code", "7"].map(Into::into));
    let mut h = Hotrun::start(&args);
    assert_eq!(h.wait().code(), Some(7), "{}", h.transcript());
}

#[test]
fn on_exit_restart_backs_off_while_the_child_keeps_crashing() {
    let sb = Sandbox::new();
    let log = sb.log();
    let events = sb.path("events.jsonl");
    let mut args = fixture_cmd(
        &sb,
        &log,
        &["--on-exit", "restart", "--events", events.to_str().unwrap()],
    );
    args.extend(["--exit-after-ms", "0", "--exit-code", "1"].map(Into::into));
    let mut h = Hotrun::start(&args);
    for g in 2..=5 {
        h.expect(&["restarting in"]);
        h.expect(&[&format!("gen {g} started"), "(restart after exit)"]);
    }
    h.signal(Signal::SIGTERM);
    h.wait();
    // The delays as hotrun reports them, doubling; each said in a status line too.
    let delays = assert_backoff(&events, 4);
    assert_eq!(
        h.count(&["restarting in"]),
        delays.len(),
        "{}",
        h.transcript()
    );
}

#[test]
fn quiet_prints_nothing_on_a_clean_run() {
    let sb = Sandbox::new();
    let log = sb.log();
    let mut args = fixture_cmd(&sb, &log, &["--quiet", "--on-exit", "exit"]);
    args.extend(["--exit-after-ms", "0"].map(Into::into));
    let mut h = Hotrun::start(&args);
    assert_eq!(h.wait().code(), Some(0));
    assert_eq!(h.transcript(), "");
}

#[test]
fn colour_follows_the_flag_and_no_color() {
    // stderr a pipe: `auto` is plain there whatever NO_COLOR says, so only the flag can
    // be seen. An explicit `--color always` wins over NO_COLOR (it is for `auto`).
    let on_a_pipe = |flag: &str, no_color: bool| {
        let sb = Sandbox::new();
        let log = sb.log();
        let mut args = fixture_cmd(&sb, &log, &["--color", flag, "--on-exit", "exit"]);
        args.extend(["--exit-after-ms", "0"].map(Into::into));
        let mut h = Hotrun::start_with(&args, |cmd| {
            if no_color {
                cmd.env("NO_COLOR", "1");
            }
        });
        h.wait();
        h.transcript()
    };
    let coloured = on_a_pipe("always", false);
    assert!(coloured.contains("\u{1b}["), "{coloured}");
    let told = on_a_pipe("always", true);
    assert!(
        told.contains("\u{1b}["),
        "--color always with NO_COLOR: {told}"
    );
    let plain = on_a_pipe("never", false);
    assert!(!plain.contains('\u{1b}'), "{plain}");
    assert!(plain.contains("gen 1 exited with 0"), "{plain}");
    let auto = on_a_pipe("auto", false);
    assert!(!auto.contains('\u{1b}'), "{auto}");
    // On a terminal, `auto` is colour unless NO_COLOR is set; the flag wins either way.
    #[cfg(target_os = "linux")]
    {
        let on_a_tty = |flag: &str, no_color: bool| {
            let sb = Sandbox::new();
            let log = sb.log();
            let (master, slave) = open_pty();
            let mut cmd = std::process::Command::new(hotrun_exe());
            cmd.args(fixture_cmd(
                &sb,
                &log,
                &["--color", flag, "--on-exit", "exit"],
            ))
            .args(["--exit-after-ms", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(slave)
            .env("TERM", "xterm")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR")
            .env_remove("CLICOLOR_FORCE");
            if no_color {
                cmd.env("NO_COLOR", "1");
            }
            let status = cmd.status().unwrap();
            assert_eq!(status.code(), Some(0), "--color {flag}");
            // The command holds our copy of the terminal's other side.
            drop(cmd);
            let shown = read_pty(master);
            assert!(
                strip_ansi(&shown).contains("gen 1 exited with 0"),
                "--color {flag}: {shown:?}"
            );
            shown
        };
        let shown = on_a_tty("auto", false);
        assert!(shown.contains("\u{1b}["), "{shown:?}");
        let shown = on_a_tty("auto", true);
        assert!(!shown.contains('\u{1b}'), "auto with NO_COLOR: {shown:?}");
        let shown = on_a_tty("never", false);
        assert!(!shown.contains('\u{1b}'), "{shown:?}");
        let shown = on_a_tty("always", true);
        assert!(shown.contains("\u{1b}["), "always with NO_COLOR: {shown:?}");
    }
}

#[test]
fn a_closed_stderr_does_not_break_supervision() {
    let sb = Sandbox::new();
    let log = sb.log();
    let args = fixture_cmd(&sb, &log, &[]);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut h = Hotrun::start_with(&args, |cmd| {
        cmd.stdout(Stdio::null()).stderr(writer);
    });
    log.wait_for(&["start gen=1"]);
    h.signal(Signal::SIGHUP);
    log.wait_for(&["start gen=2"]);
    log.wait_for(&["signal gen=1 sig=SIGTERM"]);
    h.signal(Signal::SIGTERM);
    let status = h.wait();
    assert_eq!(status.code(), Some(0));
    log.wait_for(&["cleanup gen=2"]);
}

/// hotrun over the fixture reading its stdin, with hotrun's own stdin a pipe.
fn with_piped_stdin(sb: &Sandbox, log: &Log, hotrun_args: &[&str]) -> Hotrun {
    let mut args = fixture_cmd(sb, log, hotrun_args);
    args.extend(["--read-stdin", "--exit-after-ms", "0"].map(Into::into));
    Hotrun::start_with(&args, |cmd| {
        cmd.stdin(Stdio::piped()).stderr(Stdio::null());
    })
}

#[test]
fn stdin_is_dev_null_by_default() {
    let sb = Sandbox::new();
    let log = sb.log();
    let mut h = with_piped_stdin(&sb, &log, &["--on-exit", "exit"]);
    // hotrun's own stdin has data; the child must not see it.
    let mut stdin = h.take_stdin().unwrap();
    stdin.write_all(b"secret\n").unwrap();
    log.wait_for(&["stdin gen=1 read=EOF"]);
    drop(stdin);
    assert!(h.wait().success());
}

#[test]
fn stdin_flag_hands_hotrun_s_stdin_to_the_child() {
    let sb = Sandbox::new();
    let log = sb.log();
    let mut h = with_piped_stdin(&sb, &log, &["--stdin", "--on-exit", "exit"]);
    let mut stdin = h.take_stdin().unwrap();
    stdin.write_all(b"hello\n").unwrap();
    drop(stdin);
    log.wait_for(&["stdin gen=1 read=hello"]);
    assert!(h.wait().success());
}

#[test]
fn arguments_and_output_pass_through_untouched() {
    let sb = Sandbox::new();
    let log = sb.log();
    let mut args = fixture_cmd(&sb, &log, &["--on-exit", "exit"]);
    args.extend(["--print-args", "a b", "--c", "", "--exit-after-ms", "0"].map(Into::into));
    let mut h = Hotrun::start(&args);
    h.expect(&[
        r#"stdout: args: ["--log""#,
        r#""--print-args", "a b", "--c", """#,
    ]);
    assert!(h.wait().success());
}

#[test]
fn status_lines_tell_generation_pid_trigger_and_timing() {
    let sb = Sandbox::new();
    let log = sb.log();
    let args = fixture_cmd(&sb, &log, &[]);
    let mut h = Hotrun::start(&args);
    let started = h.expect(&["gen 1 started in"]);
    // "in 0.8 ms", or "in 1.02 s" on a loaded machine.
    assert!(started.contains("s (start), pid "), "{started}");
    // Its signal handlers are in place once it logged its start: the stop that follows is
    // then the cleanup path, not a death by the default action.
    log.wait_for(&["start gen=1"]);
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 2 started in", "(SIGHUP), pid"]);
    h.expect(&["gen 1: sent SIGTERM to its process group"]);
    // "in 2.1 ms", or "in 1.02 s" on a loaded machine.
    h.expect(&["gen 1 stopped cleanly in", "s (exited with 0)"]);
    h.signal(Signal::SIGTERM);
    h.wait();
}
