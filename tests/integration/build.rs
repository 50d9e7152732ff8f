//! `--build`: a change runs the build while the running generation serves, and the
//! build's result decides the restart. Most tests build a real cargo project (a small
//! std-only HTTP server, tests/shared/cargo_project.rs) and ask it over HTTP which
//! version answers; a build that must last is held at a gate by its build script until
//! the test opens it. The rest use shell-script builds that install the fixture.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::cargo_project::{CargoProject, ask, version_of};
use crate::harness::*;

/// How long one request may take.
const ASK: Duration = Duration::from_secs(5);

/// `hotrun --build 'cargo build --offline' --listen 127.0.0.1:0 EXTRA -- target/debug/NAME`
/// run in the project's directory; returns once hotrun listens, with the port.
fn start(
    project: &CargoProject,
    extra: &[&str],
    setup: impl FnOnce(&mut Command),
) -> (Hotrun, u16) {
    let build = CargoProject::build_command();
    let binary = project.binary();
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--build".as_ref(),
        build.as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    args.extend(["--".as_ref(), binary.as_os_str()]);
    let mut h = Hotrun::start_with(&args, |cmd| {
        project.env(cmd);
        setup(cmd);
    });
    let port = listening_port(&h.expect(&["listening on 127.0.0.1:"]));
    (h, port)
}

/// The cargo project in `sb/proj`, if cargo can be run (see `have`).
fn project(sb: &Sandbox, name: &str, gate: bool) -> Option<CargoProject> {
    have(&CargoProject::cargo()).then(|| CargoProject::new(&sb.path("proj"), name, gate))
}

/// Asks until `version` answers; returns the answer.
fn wait_version(h: &Hotrun, port: u16, version: &str) -> String {
    let end = Instant::now() + DEADLINE;
    let mut last = None;
    loop {
        last = ask(port, ASK).or(last);
        if let Some(body) = last.as_deref().filter(|b| version_of(b) == version) {
            return body.to_string();
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for version={version} to answer (last answer: {last:?})\n{}",
            h.transcript()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stops hotrun with SIGTERM and waits for it.
fn stop(h: &mut Hotrun) {
    h.signal(Signal::SIGTERM);
    h.wait();
}

/// The JSON events of one kind in an `--events` file.
fn events(path: &Path, kind: &str) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == kind)
        .collect()
}

/// The build script's gate (see tests/shared/cargo_project.rs).
struct Gate {
    dir: PathBuf,
}

impl Gate {
    fn new(sb: &Sandbox, open: bool) -> Gate {
        let gate = Gate {
            dir: sb.path("gate"),
        };
        fs::create_dir(&gate.dir).unwrap();
        if open {
            gate.open();
        }
        gate
    }

    fn open(&self) {
        touch(&self.dir.join("open"));
    }

    fn close(&self) {
        fs::remove_file(self.dir.join("open")).unwrap();
    }

    /// The pids of the build scripts that ran so far, in order.
    fn builds(&self) -> Vec<i32> {
        complete_lines(&fs::read_to_string(self.dir.join("builds")).unwrap_or_default())
            .iter()
            .map(|l| pid_in(l))
            .collect()
    }

    /// Waits until the `n`th build script waits at the gate; returns its pid.
    fn wait_build(&self, n: usize, h: &Hotrun) -> i32 {
        wait_until(
            &format!("build script number {n} at the gate"),
            || self.builds().len() >= n,
            || format!("{:?}\n{}", self.builds(), h.transcript()),
        );
        self.builds()[n - 1]
    }
}

#[test]
fn an_edit_is_built_and_then_the_new_code_answers() {
    let sb = Sandbox::new();
    let Some(p) = project(&sb, "tiny_edit", false) else {
        return;
    };
    let events_path = sb.path("events.jsonl");
    // What the test saw of each build: from before it could start to after its end.
    let mut windows = Vec::new();
    let before = mono_ns();
    let (mut h, port) = start(
        &p,
        &["--watch", "src", "--events", events_path.to_str().unwrap()],
        |_| {},
    );
    // The start-up build comes before generation 1.
    h.expect(&["build started (start)"]);
    h.expect(&["build finished in"]);
    windows.push(ms_between(before, mono_ns()));
    h.expect(&["gen 1 started", "(start)"]);
    assert!(wait_version(&h, port, "1").contains("gen=1"));

    let before = mono_ns();
    p.write_version("2");
    h.expect(&["build started (src/main.rs changed)"]);
    let finished = h.expect(&["build finished in"]);
    windows.push(ms_between(before, mono_ns()));
    assert!(!finished.contains("did not change"), "{}", h.transcript());
    h.expect(&["gen 2 started", "(binary changed)"]);
    assert!(wait_version(&h, port, "2").contains("gen=2"));
    h.expect(&["gen 1 stopped cleanly"]);
    stop(&mut h);

    let started = events(&events_path, "build_started");
    let triggers: Vec<&str> = started
        .iter()
        .map(|e| e["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(triggers, ["start", "src/main.rs changed"]);
    let finished = events(&events_path, "build_finished");
    assert_eq!(finished.len(), 2, "{finished:?}");
    for (e, window) in finished.iter().zip(windows) {
        assert_eq!(e["ok"], true, "{e}");
        assert_eq!(e["code"], 0, "{e}");
        assert_eq!(e["then"], "restart", "{e}");
        // A real build takes some time, and no longer than the test saw it take.
        let took = e["duration_ms"].as_f64().unwrap();
        assert!(
            took > 0.0 && took <= window + 0.001,
            "{e}: the test saw {window} ms"
        );
    }
}

#[test]
fn a_failed_build_keeps_the_old_code_answering_and_the_fix_replaces_it() {
    let sb = Sandbox::new();
    let Some(p) = project(&sb, "tiny_broken", false) else {
        return;
    };
    let events_path = sb.path("events.jsonl");
    let (mut h, port) = start(
        &p,
        &["--watch", "src", "--events", events_path.to_str().unwrap()],
        |_| {},
    );
    h.expect(&["gen 1 started"]);
    wait_version(&h, port, "1");

    p.write_broken();
    h.expect(&["build started (src/main.rs changed)"]);
    let failed = h.expect(&["build failed (exit 101) after"]);
    assert!(failed.ends_with("; gen 1 still serving"), "{failed}");
    // The old code answers, over HTTP, after the failure.
    let body = ask(port, ASK).expect("gen 1 answers");
    assert_eq!(version_of(&body), "1", "{body}");

    p.write_version("3");
    h.expect(&["build started (src/main.rs changed)"]);
    h.expect(&["build finished in"]);
    h.expect(&["gen 2 started", "(binary changed)"]);
    assert!(wait_version(&h, port, "3").contains("gen=2"));
    stop(&mut h);
    assert_eq!(h.count(&["gen 3 started"]), 0, "{}", h.transcript());

    let finished = events(&events_path, "build_finished");
    let failed: Vec<_> = finished.iter().filter(|e| e["ok"] == false).collect();
    assert_eq!(failed.len(), 1, "{finished:?}");
    assert_eq!(failed[0]["code"], 101);
    assert_eq!(failed[0]["then"], "serving");
    assert_eq!(failed[0]["serving"], 1);
}

#[test]
fn an_edit_during_a_build_stops_it_and_the_newest_code_runs() {
    let sb = Sandbox::new();
    let gate = Gate::new(&sb, true);
    let Some(p) = project(&sb, "tiny_during", true) else {
        return;
    };
    let events_path = sb.path("events.jsonl");
    let (mut h, port) = start(
        &p,
        &["--watch", "src", "--events", events_path.to_str().unwrap()],
        |cmd| {
            cmd.env("TINY_GATE", &gate.dir);
        },
    );
    h.expect(&["gen 1 started"]);
    wait_version(&h, port, "1");
    let before = gate.builds().len();

    gate.close();
    p.write_version("2");
    let stale = gate.wait_build(before + 1, &h);
    // The build of version 2 waits at the gate; version 3 is saved meanwhile.
    let saved = mono_ns();
    p.write_version("3");
    h.expect(&["build stopped: src/main.rs changed during it; building again"]);
    let fresh = gate.wait_build(before + 2, &h);
    assert_ne!(stale, fresh);
    // The next build starts only once the stopped one's whole group is gone, its build
    // script (a grandchild of the build command) included.
    assert!(
        is_gone(stale),
        "the stopped build's script {stale} still runs"
    );
    h.expect(&["build started (src/main.rs changed)"]);
    // hotrun has noted the build's start by now; the build cannot end before the gate
    // opens. Meanwhile the old code answers.
    let held = mono_ns();
    assert_eq!(version_of(&ask(port, ASK).expect("gen 1 answers")), "1");
    let held = ms_between(held, mono_ns());
    gate.open();
    h.expect(&["build finished in"]);
    let window = ms_between(saved, mono_ns());
    h.expect(&["gen 2 started", "(binary changed)"]);
    assert!(wait_version(&h, port, "3").contains("gen=2"));
    stop(&mut h);
    // The build lasted at least as long as the test held it, and no longer than the test
    // saw it run.
    let finished = events(&events_path, "build_finished");
    let took = finished.last().unwrap()["duration_ms"].as_f64().unwrap();
    assert!(
        held <= took && took <= window + 0.001,
        "{took} ms, held {held} ms, seen {window} ms: {finished:?}"
    );
    // Version 2 never ran: the stopped build made no binary, so no restart came of it.
    assert_eq!(h.count(&["gen 3 started"]), 0, "{}", h.transcript());
    assert_eq!(h.count(&["build finished in"]), 2, "{}", h.transcript());
}

#[cfg(target_os = "linux")]
#[test]
fn sigint_during_a_build_stops_its_whole_group_and_leaves_nothing_running() {
    let sb = Sandbox::new();
    let gate = Gate::new(&sb, false);
    let Some(p) = project(&sb, "tiny_sigint", true) else {
        return;
    };
    let (mut h, _port) = start(&p, &["--watch", "src"], |cmd| {
        cmd.env("TINY_GATE", &gate.dir);
    });
    // The start-up build waits at the gate: nothing else runs yet.
    h.expect(&["build started (start)"]);
    let script = gate.wait_build(1, &h);
    let group = proc_stat(script).expect("the build script runs").pgrp;
    assert_ne!(group, h.pid(), "the build runs in a group of its own");
    let members = || -> Vec<ProcStat> {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(proc_stat)
            .filter(|p| p.pgrp == group && p.state != 'Z')
            .collect()
    };
    let running = members();
    assert!(
        running.iter().any(|p| p.comm.starts_with("cargo")),
        "cargo is in the build's group: {running:?}"
    );
    h.signal(Signal::SIGINT);
    let status = h.wait();
    // No generation ran, so hotrun dies of the signal itself.
    assert_eq!(status.signal(), Some(libc::SIGINT), "{}", h.transcript());
    assert!(is_gone(script), "the build script survived hotrun");
    assert!(
        members().is_empty(),
        "left running: {:?}\n{}",
        members(),
        h.transcript()
    );
    assert_eq!(h.count(&["gen 1 started"]), 0);
}

#[test]
fn without_watch_the_current_directory_is_watched_but_never_the_builds_own_output() {
    let sb = Sandbox::new();
    let Some(p) = project(&sb, "tiny_cwd", false) else {
        return;
    };
    // hotrun's events are written into the watched directory: they must not build either.
    let (mut h, port) = start(&p, &["--events", "events.jsonl"], |_| {});
    let watching = h.expect(&["--build without --watch"]);
    assert!(watching.contains("target"), "{watching}");
    h.expect(&["gen 1 started"]);
    wait_version(&h, port, "1");
    // A change that is not the code: the build runs and changes nothing. Every build
    // writes into target/ (cargo opens target/debug/.cargo-lock for writing even when
    // there is nothing to do), and each next build must still be the note's, in order.
    let note = p.dir.join("notes.txt");
    for _ in 0..3 {
        touch(&note);
        let started = h.expect(&["build started"]);
        assert!(
            started.contains("(notes.txt changed)"),
            "{}",
            h.transcript()
        );
        let finished = h.expect(&["build finished in"]);
        assert!(
            finished.contains("the executable did not change: gen 1 keeps serving"),
            "{}",
            h.transcript()
        );
    }
    p.write_version("2");
    let started = h.expect(&["build started"]);
    assert!(
        started.contains("(src/main.rs changed)"),
        "{}",
        h.transcript()
    );
    h.expect(&["gen 2 started", "(binary changed)"]);
    wait_version(&h, port, "2");
    stop(&mut h);
    assert_eq!(h.count(&["target/"]), 0, "{}", h.transcript());
    assert_eq!(h.count(&["build stopped"]), 0, "{}", h.transcript());
    assert_eq!(h.count(&["events.jsonl changed"]), 0, "{}", h.transcript());
}

// ---- builds by shell script (no cargo) ----------------------------------------------

/// `hotrun --build BUILD --watch SRC EXTRA -- APP --log LOG`: the shape of the script-build
/// tests.
fn start_script_build(
    build: impl AsRef<std::ffi::OsStr>,
    src: &Path,
    extra: &[&str],
    app: &Path,
    log: &Log,
) -> Hotrun {
    let mut args: Vec<&std::ffi::OsStr> = vec!["--build".as_ref(), build.as_ref()];
    args.extend(["--watch".as_ref(), src.as_os_str()]);
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    args.extend(["--".as_ref(), app.as_os_str(), "--log".as_ref(), log.arg()]);
    Hotrun::start(&args)
}

/// A build script in the sandbox: `body` runs with `set -e` in the sandbox.
fn script(sb: &Sandbox, name: &str, body: &str) -> PathBuf {
    let path = sb.path(name);
    fs::write(
        &path,
        format!(
            "#!/bin/sh\nset -e\ncd '{}'\n{body}\n",
            sb.path("").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_failed_start_up_build_starts_the_executable_from_before() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let src = sb.path("src");
    fs::create_dir(&src).unwrap();
    let mut h = start_script_build("exit 3", &src, &[], &app, &log);
    h.expect(&["build started (start)"]);
    let failed = h.expect(&["build failed (exit 3)"]);
    assert!(
        failed.contains("starting the executable from before the build"),
        "{failed}"
    );
    h.expect(&["gen 1 started", "(start)"]);
    log.wait_for(&["start gen=1"]);
    stop(&mut h);
}

#[test]
fn a_failed_start_up_build_with_nothing_to_run_waits_for_the_change_that_fixes_it() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    fs::create_dir(&src).unwrap();
    // Fails until src/fixed exists, then installs the fixture as app.
    let build = script(
        &sb,
        "build.sh",
        &format!(
            "test -e src/fixed || {{ echo 'build.sh: not fixed yet' >&2; exit 1; }}\n\
             cp '{}' app.tmp && mv app.tmp app",
            fixture_exe().display()
        ),
    );
    let app = sb.path("app");
    let log = sb.log();
    let mut h = start_script_build(&build, &src, &[], &app, &log);
    let failed = h.expect(&["build failed (exit 1)"]);
    assert!(
        failed.ends_with("nothing to restart; the next change builds again"),
        "{failed}"
    );
    assert!(!app.exists());
    touch(&src.join("fixed"));
    h.expect(&["build started", "fixed changed"]);
    h.expect(&["build finished in"]);
    h.expect(&["gen 1 started"]);
    log.wait_for(&["start gen=1"]);
    stop(&mut h);
}

#[test]
fn a_build_that_ignores_the_stop_signal_is_killed_with_its_whole_group() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let src = sb.path("src");
    fs::create_dir(&src).unwrap();
    // The build forks a background job that ignores SIGINT and SIGTERM (and says so once
    // it does), and waits for a gate that never opens.
    let build = script(
        &sb,
        "build.sh",
        "(trap '' INT TERM; echo 'job ignores INT TERM' >> builds; exec sleep 1000) &\n\
         echo \"building pid=$$ job=$!\" >> builds\n\
         while ! test -e gate; do sleep 0.01; done",
    );
    let mut h = start_script_build(&build, &src, &["--grace", "300ms"], &app, &log);
    let builds = Log {
        path: sb.path("builds"),
    };
    let line = builds.wait_for(&["building"]);
    let (shell, job) = (pid_in(&line), field(&line, "job").parse::<i32>().unwrap());
    // Not before the job ignores the signal (it did not, at times, and died of it).
    builds.wait_for(&["job ignores INT TERM"]);
    h.signal(Signal::SIGINT);
    h.expect(&["build still running 300 ms after the stop signal; sending SIGKILL"]);
    let stopped = h.expect(&["build stopped after"]);
    assert!(stopped.contains("its group needed SIGKILL"), "{stopped}");
    let status = h.wait();
    assert_eq!(status.signal(), Some(libc::SIGINT), "{}", h.transcript());
    assert!(is_gone(shell), "the build's shell survived");
    assert!(is_gone(job), "the build's background job survived");
    // The build never finished: the fixture never ran.
    assert!(!log.path.exists());
}

#[test]
fn a_change_during_a_slow_script_build_builds_again_and_restarts_once() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let src = sb.path("src");
    fs::create_dir(&src).unwrap();
    // Each build says which source it saw, waits for the gate, then installs the fixture
    // with that source appended (a program of its own for each version: a build that
    // writes the same bytes again restarts nothing).
    let build = script(
        &sb,
        "build.sh",
        &format!(
            "v=$(cat src/v 2>/dev/null || echo none)\n\
             echo \"building pid=$$ saw=$v\" >> builds\n\
             while ! test -e gate; do sleep 0.01; done\n\
             cp '{}' app.tmp && echo \"$v\" >> app.tmp && mv app.tmp app",
            fixture_exe().display()
        ),
    );
    touch(&sb.path("gate"));
    let mut h = start_script_build(&build, &src, &[], &app, &log);
    h.expect(&["gen 1 started"]);
    log.wait_for(&["start gen=1"]);
    fs::remove_file(sb.path("gate")).unwrap();
    let builds = Log {
        path: sb.path("builds"),
    };
    fs::write(src.join("v"), "2").unwrap();
    let first = pid_in(&builds.wait_for(&["saw=2"]));
    fs::write(src.join("v"), "3").unwrap();
    h.expect(&["src/v changed during it; building again"]);
    builds.wait_for(&["saw=3"]);
    assert!(is_gone(first));
    touch(&sb.path("gate"));
    h.expect(&["gen 2 started", "(binary changed)"]);
    log.wait_for(&["start gen=2"]);
    h.expect(&["gen 1 stopped cleanly"]);
    stop(&mut h);
    assert_eq!(h.count(&["gen 3 started"]), 0, "{}", h.transcript());
}

#[test]
fn drill_runs_the_build_once_then_restarts_as_usual() {
    let sb = Sandbox::new();
    let build = script(
        &sb,
        "build.sh",
        &format!("cp '{}' app.tmp && mv app.tmp app", fixture_exe().display()),
    );
    let app = sb.path("app");
    let log = sb.log();
    let out = Command::new(hotrun_exe())
        .arg("drill")
        .args(["--restarts", "2", "--build"])
        .arg(&build)
        .arg("--")
        .arg(&app)
        .arg("--log")
        .arg(&log.path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("build started (start)").count(),
        1,
        "{stderr}"
    );
    for g in 1..=3 {
        assert!(stderr.contains(&format!("gen {g} started")), "{stderr}");
    }
    assert!(!stderr.contains("gen 4 started"), "{stderr}");
}

#[test]
fn bad_build_input_is_one_line_exit_2_and_nothing_runs() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let app = app.to_str().unwrap();
    let log = sb.log();
    let log_arg = log.path.to_str().unwrap();
    let marker = sb.path("built");
    let marker_cmd = format!("touch '{}'", marker.display());
    let not_executable = sb.path("build.sh");
    fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    let not_executable_cmd = format!("{} --release", not_executable.display());
    let marker_arg = marker.to_str().unwrap();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--build", ""],
            "hotrun: error: --build: the build command is empty".into(),
        ),
        (
            vec!["--build", "   "],
            "hotrun: error: --build: the build command is empty".into(),
        ),
        (
            vec!["--build", "carg build"],
            "hotrun: error: --build 'carg build': carg: command not found".into(),
        ),
        (
            vec!["--build", "RUSTFLAGS=-g no-such-builder-hotrun"],
            "hotrun: error: --build 'RUSTFLAGS=-g no-such-builder-hotrun': \
             no-such-builder-hotrun: command not found"
                .into(),
        ),
        (
            vec!["--build", "./no-such-script.sh"],
            "hotrun: error: --build './no-such-script.sh': ./no-such-script.sh: no such file \
             or directory"
                .into(),
        ),
        (
            vec!["--build", &not_executable_cmd],
            format!(
                "hotrun: error: --build '{not_executable_cmd}': {}: not executable (try chmod +x)",
                not_executable.display()
            ),
        ),
        (
            vec!["--build", &marker_cmd, "--no-watch-binary"],
            "hotrun: error: --build restarts the command when a build changes its executable, \
             and --no-watch-binary says not to look at it: no build could restart anything \
             (drop --no-watch-binary)"
                .into(),
        ),
        (
            // Unquoted: clap takes `touch` as the build and the rest as the command, whose
            // `--` (hotrun's own, added below) tells the mistake.
            vec!["--build", "touch", marker_arg],
            format!(
                "hotrun: error: --build takes one argument: quote the whole build command, as \
                 in --build 'touch {marker_arg}' -- {app} --log {log_arg}"
            ),
        ),
    ];
    for (args, message) in &cases {
        let out = Command::new(hotrun_exe())
            .args(args)
            .args(["--", app, "--log", log_arg])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end(), message, "{args:?}");
    }
    // Nothing ran: neither a build nor the command.
    assert!(!marker.exists(), "a refused command line ran the build");
    assert!(
        !log.path.exists(),
        "a refused command line started the command"
    );
}

#[test]
fn with_events_on_stdout_the_builds_output_goes_to_stderr() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let src = sb.path("src");
    fs::create_dir(&src).unwrap();
    let mut h = start_script_build(
        "echo the-build-speaks",
        &src,
        &["--events", "-"],
        &app,
        &log,
    );
    h.expect(&["gen 1 started"]);
    h.expect_anywhere(&["the-build-speaks"]);
    stop(&mut h);
    let transcript = h.transcript();
    for line in transcript.lines() {
        if let Some(json) = line.strip_prefix("stdout: ") {
            let value: serde_json::Value = serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("not JSON on stdout ({e}): {json}\n{transcript}"));
            assert!(value["event"].is_string(), "{json}");
        }
    }
    assert_eq!(h.count(&["stdout: the-build-speaks"]), 0, "{transcript}");
    assert_eq!(
        h.count(&["stdout: ", "\"build_started\""]),
        1,
        "{transcript}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_build_outlives_no_sigkill_of_hotrun() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let src = sb.path("src");
    fs::create_dir(&src).unwrap();
    let build = script(
        &sb,
        "build.sh",
        "sleep 1000 &\necho \"building pid=$$ job=$!\" >> builds\nwait",
    );
    let mut h = start_script_build(&build, &src, &[], &app, &log);
    let line = Log {
        path: sb.path("builds"),
    }
    .wait_for(&["building"]);
    let (shell, job) = (pid_in(&line), field(&line, "job").parse::<i32>().unwrap());
    // hotrun has handled the build's start (and told its guardian) once it is asleep. (A
    // SIGKILL in the moment between the spawn and that is not covered: the guardian does
    // not know the group yet.)
    h.wait_asleep();
    h.signal(Signal::SIGKILL);
    h.wait();
    // PR_SET_PDEATHSIG takes the shell, the guardian the rest of its group.
    wait_gone(shell);
    wait_gone(job);
}

/// A Go server that serves the socket hotrun passes (fd 3) and says its version.
#[cfg(target_os = "linux")]
const GO_SERVER: &str = r#"package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

const version = "@VERSION@"

func main() {
	listener, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	http.Serve(listener, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "version=%s gen=%s\n", version, os.Getenv("HOTRUN_GEN"))
	}))
}
"#;

// The same-bytes comparison reads /proc/PID/exe (Linux).
#[cfg(target_os = "linux")]
#[test]
fn go_build_writing_the_same_binary_anew_restarts_nothing() {
    if !have("go") {
        return;
    }
    let sb = Sandbox::new();
    let dir = sb.path("gosrv");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("go.mod"), "module gosrv\n\ngo 1.19\n").unwrap();
    let write = |version: &str| {
        fs::write(dir.join("main.go"), GO_SERVER.replace("@VERSION@", version)).unwrap();
    };
    write("1");
    let mut h = Hotrun::start_with(
        &[
            "--build",
            "go build -o server .",
            "--listen",
            "127.0.0.1:0",
            "--",
            "./server",
        ],
        |cmd| {
            cmd.current_dir(&dir);
        },
    );
    let port = listening_port(&h.expect(&["listening on 127.0.0.1:"]));
    h.expect(&["gen 1 started", "(start)"]);
    wait_version(&h, port, "1");
    // Not the code: go build copies its cached output over ./server again (a new file,
    // the same bytes), which must not restart.
    touch(&dir.join("README.md"));
    h.expect(&["build started (README.md changed)"]);
    let finished = h.expect(&["build finished in"]);
    assert!(
        finished.ends_with("the executable did not change: gen 1 keeps serving"),
        "{}",
        h.transcript()
    );
    write("2");
    h.expect(&["build started (main.go changed)"]);
    h.expect(&["gen 2 started", "(binary changed)"]);
    assert!(wait_version(&h, port, "2").contains("gen=2"));
    h.expect(&["gen 1 stopped cleanly"]);
    stop(&mut h);
    // Go's umask probe beside its output (server-go-tmp-umask) never built anything.
    assert_eq!(h.count(&["go-tmp-umask"]), 0, "{}", h.transcript());
    assert_eq!(h.count(&["gen 3 started"]), 0, "{}", h.transcript());
    assert_eq!(h.count(&["build started"]), 3, "{}", h.transcript());
}
