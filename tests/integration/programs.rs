//! What hotrun runs: scripts and their interpreters, junk files, wrappers (shells,
//! interpreters, launchers) whose own file is not the server, and servers that bind the
//! port themselves although hotrun holds it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use crate::harness::*;

/// Writes an executable file the way an editor saves (a temporary file renamed over).
fn write_executable(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("hotrun-tmp");
    fs::write(&tmp, content).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// A start script that execs the fixture with the sandbox's log.
fn start_script(sb: &Sandbox) -> PathBuf {
    let fixture = sb.install_fixture("fixture");
    let script = sb.path("app.sh");
    write_executable(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' --log '{}' \"$@\"\n",
            fixture.display(),
            sb.log().path.display()
        )
        .as_bytes(),
    );
    script
}

#[test]
fn a_script_whose_interpreter_goes_missing_fails_the_restart_naming_it() {
    let sb = Sandbox::new();
    let script = start_script(&sb);
    let mut h = Hotrun::start(&[script.as_os_str()]);
    let child = pid_in(&sb.log().wait_for(&["start gen=1"]));
    write_executable(&script, b"#!/nonexistent/interp\nexec true\n");
    // Said as what it is, not retried as a binary still being written.
    h.expect(&[&format!(
        "cannot run {}: its interpreter /nonexistent/interp (on its #! line) does not exist; \
         gen 1 keeps running",
        script.display()
    )]);
    assert_eq!(h.count(&["is it being rebuilt"]), 0, "{}", h.transcript());
    assert!(!is_gone(child), "gen 1 was stopped");
    // The next good version restarts as usual.
    start_script(&sb);
    h.expect(&["gen 2 started", "(binary changed)"]);
    sb.log().wait_for(&["start gen=2"]);
    h.signal(Signal::SIGTERM);
    h.wait();
}

#[test]
fn a_junk_file_at_a_restart_is_never_run_through_sh() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let mut h = Hotrun::start(&[app.as_os_str(), "--log".as_ref(), log.arg()]);
    let child = pid_in(&log.wait_for(&["start gen=1"]));
    // Shell commands without a #! line: execvp's ENOEXEC fallback would run them.
    let marker = sb.path("ran");
    write_executable(&app, format!("touch '{}'\n", marker.display()).as_bytes());
    // Retried for a while (it might be a build still writing), then given up on.
    h.expect(&[&format!(
        "cannot run {}: not a program this system can run: no #! line and not an executable \
         binary; gen 1 keeps running",
        app.display()
    )]);
    assert!(!marker.exists(), "the junk file was run through sh");
    assert!(!is_gone(child), "gen 1 was stopped");
    replace_by_rename(&fixture_exe(), &app);
    h.expect(&["gen 2 started", "(binary changed)"]);
    log.wait_for(&["start gen=2"]);
    assert!(!marker.exists());
    h.signal(Signal::SIGTERM);
    h.wait();
}

#[test]
fn a_binary_caught_half_written_is_retried_and_the_complete_one_starts() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let mut h = Hotrun::start(&[app.as_os_str(), "--log".as_ref(), log.arg()]);
    log.wait_for(&["start gen=1"]);
    // The first bytes of an ELF file, executable: a build caught in the middle.
    write_executable(&app, b"\x7fEL");
    // Then the build completes. Whether the retry or a new restart picks it up, the
    // complete binary runs, and nothing ran the partial one.
    replace_by_rename(&fixture_exe(), &app);
    h.expect(&["gen 2 started"]);
    log.wait_for(&["start gen=2"]);
    assert_eq!(h.count(&["gen 3 started"]), 0, "{}", h.transcript());
    h.signal(Signal::SIGTERM);
    h.wait();
}

/// The hint for a wrapper whose own file is what hotrun watches.
const WATCH_HINT: &str = " (the command); rebuilds of what it runs are not seen: add --watch PATH, \
                          or run the binary directly";

#[test]
fn a_shell_command_says_what_is_watched_and_how_to_watch_the_real_binary() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let script = format!("exec '{}' --log '{}'", app.display(), log.path.display());
    let mut h = Hotrun::start(&["--", "sh", "-c", &script]);
    let line = h.expect(&[WATCH_HINT]);
    let watched = line
        .strip_prefix("hotrun: watching ")
        .and_then(|l| l.strip_suffix(WATCH_HINT))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        watched.starts_with('/') && watched.ends_with("/sh"),
        "{line}"
    );
    h.expect(&["gen 1 started"]);
    log.wait_for(&["start gen=1"]);
    h.signal(Signal::SIGTERM);
    h.wait();

    // With --watch, or for the binary itself, nothing to say.
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let script = format!("exec '{}' --log '{}'", app.display(), log.path.display());
    let mut h = Hotrun::start(&[
        "--watch".as_ref(),
        app.as_os_str(),
        "--".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        script.as_ref(),
    ]);
    h.expect(&["gen 1 started"]);
    assert_eq!(h.count(&["watching"]), 0, "{}", h.transcript());
    // The real binary is watched now: a rebuild restarts.
    replace_by_rename(&fixture_exe(), &app);
    h.expect(&["gen 2 started", "changed"]);
    h.signal(Signal::SIGTERM);
    h.wait();
    let sb = Sandbox::new();
    let mut h = start_fixture(&sb, &[], &[]);
    h.expect(&["gen 1 started"]);
    assert_eq!(h.count(&["watching"]), 0, "{}", h.transcript());
}

/// hotrun's options for the --listen tests here. Socket takeover must be off for them:
/// these servers must meet the socket as it is (with takeover, a server that binds the
/// --listen address itself is simply given that socket).
fn listen_args() -> Vec<&'static str> {
    vec!["--no-takeover", "--listen", "0"]
}

#[test]
fn with_listen_a_shell_that_does_not_exec_the_server_is_named_as_the_listen_pid() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    // Not exec'd: the server is the shell's child, and LISTEN_PID is the shell's pid.
    let script = format!(
        "'{}' --log '{}' --listen-fd; exit $?",
        app.display(),
        log.path.display()
    );
    let mut args = listen_args();
    args.extend(["--", "sh", "-c", &script]);
    let mut h = Hotrun::start(&args);
    h.expect(&[
        "with --listen, LISTEN_PID is the pid of sh (the command): a server it starts as a \
         child ignores the sockets (sd_listen_fds and go-systemd check LISTEN_PID); let the \
         shell exec it: sh -c 'exec ./server'",
    ]);
    // Which is what the server then does.
    log.wait_for(&["listen-fds-rejected gen=1 pid_ok=false"]);
    h.signal(Signal::SIGTERM);
    h.wait();

    // `exec`: the shell becomes the server, LISTEN_PID is right, nothing to say about it.
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let script = format!(
        "exec '{}' --log '{}' --listen-fd",
        app.display(),
        log.path.display()
    );
    let mut args = listen_args();
    args.extend(["--", "sh", "-c", &script]);
    let mut h = Hotrun::start(&args);
    h.expect(&["gen 1 started"]);
    log.wait_for(&["serving gen=1"]);
    assert_eq!(h.count(&["LISTEN_PID"]), 0, "{}", h.transcript());
    h.signal(Signal::SIGTERM);
    h.wait();
}

#[test]
fn a_server_that_binds_the_port_itself_under_listen_is_told_to_take_fd_3() {
    let sb = Sandbox::new();
    let mut args = listen_args();
    args.extend(["--on-exit", "wait"]);
    let mut h = start_fixture(&sb, &args, &["--bind-own"]);
    let port = listening_port(&h.expect(&["listening on 127.0.0.1:"]));
    h.expect(&["gen 1 exited with 98"]);
    h.expect(&[&format!(
        "hotrun: gen 1 ended soon after it started. With --listen, hotrun holds the socket \
         and it is already open at fd 3 (LISTEN_FDS=1): a server that binds 127.0.0.1:{port} \
         itself gets \"address already in use\"; it should take fd 3 instead (README: \
         \"Zero-downtime restarts\")"
    )]);
    sb.log().wait_for(&["bind-failed gen=1", "in use"]);
    h.expect(&["waiting for a change"]);
    // Said once, not at every attempt.
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 2 exited with 98"]);
    h.expect(&["waiting for a change"]);
    assert_eq!(h.count(&["already open at fd 3"]), 1, "{}", h.transcript());
    h.signal(Signal::SIGTERM);
    h.wait();

    // Without --listen, a quick exit is only a quick exit.
    let sb = Sandbox::new();
    let mut h = start_fixture(&sb, &[], &["--exit-after-ms", "0", "--exit-code", "98"]);
    h.expect(&["gen 1 exited with 98"]);
    h.expect(&["waiting for a change"]);
    assert_eq!(h.count(&["fd 3"]), 0, "{}", h.transcript());
    h.signal(Signal::SIGTERM);
    h.wait();
}
