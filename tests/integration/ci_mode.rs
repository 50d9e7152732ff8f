//! CI mode: the `--events` JSON stream, and `hotrun drill` passing on a well-behaved
//! server and failing, with the right message, on each kind of misbehaviour.

use std::fs;
use std::process::{Command, Output, Stdio};

use nix::sys::signal::Signal;
use serde::Deserialize;

use crate::harness::*;

/// The documented schema, as a consumer would declare it: fields it does not know are
/// ignored (no `deny_unknown_fields`), so hotrun may add fields without breaking it.
#[derive(Debug, Deserialize)]
struct LifecycleEvent {
    ts: String,
    event: String,
    #[serde(rename = "gen")]
    generation: Option<u64>,
    pid: Option<u32>,
    pgid: Option<u32>,
    trigger: Option<String>,
    signal: Option<String>,
    code: Option<i32>,
    requested: Option<bool>,
    needed_kill: Option<bool>,
    clean: Option<bool>,
    alive_ms: Option<f64>,
}

fn parse_events(text: &str) -> Vec<LifecycleEvent> {
    text.lines()
        .map(|line| {
            serde_json::from_str::<LifecycleEvent>(line)
                .unwrap_or_else(|e| panic!("not an event ({e}): {line}"))
        })
        .collect()
}

#[test]
fn the_event_stream_tells_the_same_story_as_the_status_lines() {
    let sb = Sandbox::new();
    let events = sb.path("events.jsonl");
    let before = mono_ns();
    let mut h = start_fixture(
        &sb,
        &["--events", events.to_str().unwrap()],
        &["--cleanup-code", "0"],
    );
    h.expect(&["gen 1 started"]);
    // hotrun has noted gen 1's start by now (it may note it a moment after the child
    // began to run, so the child's own start time is no bound).
    let started = mono_ns();
    sb.log().wait_for(&["start gen=1"]);
    // Settled: it is idle after the start (this takes a few ms at least).
    #[cfg(target_os = "linux")]
    h.wait_idle();
    let sighup = mono_ns();
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 1 stopped cleanly"]);
    let seen = mono_ns();
    // gen 2's handlers are in place once it logged its start.
    sb.log().wait_for(&["start gen=2"]);
    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait().code(), Some(0));

    let text = fs::read_to_string(&events).unwrap();
    let all = parse_events(&text);
    assert!(
        all.iter()
            .all(|e| e.ts.ends_with('Z') && e.ts.contains('T'))
    );
    let names: Vec<&str> = all.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names,
        [
            "start",
            "spawned",
            "spawned",
            "stop_sent",
            "exited",
            "shutdown",
            "stop_sent",
            "exited",
            "hotrun_exit"
        ],
        "{text}"
    );
    let gen2 = &all[2];
    assert_eq!(gen2.generation, Some(2));
    assert_eq!(gen2.trigger.as_deref(), Some("SIGHUP"));
    assert_eq!(gen2.pid, gen2.pgid);
    let old = &all[4];
    assert_eq!(
        (old.generation, old.requested, old.needed_kill),
        (Some(1), Some(true), Some(false))
    );
    assert_eq!((old.code, old.clean), (Some(0), Some(true)));
    // gen 1 lived at least from when hotrun had noted its start to the SIGHUP, and no
    // longer than the test watched hotrun (to the microsecond hotrun rounds to).
    let alive = old.alive_ms.unwrap();
    assert!(
        alive >= ms_between(started, sighup) - 0.001 && alive <= ms_between(before, seen) + 0.001,
        "alive_ms {alive}: not within {} ..= {} ms\n{text}",
        ms_between(started, sighup),
        ms_between(before, seen)
    );
    assert_eq!(all[5].signal.as_deref(), Some("SIGTERM"));
    // One status line per lifecycle event that has one.
    assert_eq!(h.count(&["started in"]), 2);
    assert_eq!(h.count(&["stopped cleanly"]), 2);
    assert_eq!(h.count(&["sent SIGTERM"]), 2);
    assert_eq!(h.count(&["got SIGTERM: stopping"]), 1);
}

#[test]
fn a_stop_that_is_not_clean_says_why_in_the_status_line_and_the_event() {
    let sb = Sandbox::new();
    let events = sb.path("events.jsonl");
    let mut h = start_fixture(
        &sb,
        &["--events", events.to_str().unwrap()],
        &["--cleanup-code", "5"],
    );
    h.signal(Signal::SIGHUP);
    let line = h.expect(&["gen 1 stopped in"]);
    assert!(
        line.ends_with("but exited with 5: not a clean stop (expected exit 0 or death by SIGTERM)"),
        "{line}"
    );
    // gen 2's handlers are in place once it logged its start.
    sb.log().wait_for(&["start gen=2"]);
    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait().code(), Some(5));
    let all = parse_events(&fs::read_to_string(&events).unwrap());
    let exited: Vec<(Option<u64>, Option<i32>, Option<bool>)> = all
        .iter()
        .filter(|e| e.event == "exited")
        .map(|e| (e.generation, e.code, e.clean))
        .collect();
    assert_eq!(
        exited,
        [
            (Some(1), Some(5), Some(false)),
            (Some(2), Some(5), Some(false))
        ]
    );
}

#[test]
fn an_exit_nobody_asked_for_has_no_clean_verdict() {
    let sb = Sandbox::new();
    let events = sb.path("events.jsonl");
    let mut h = start_fixture(
        &sb,
        &["--events", events.to_str().unwrap(), "--on-exit", "exit"],
        &["--exit-after-ms", "0"],
    );
    assert_eq!(h.wait().code(), Some(0));
    let text = fs::read_to_string(&events).unwrap();
    let exited = json_lines(&text)
        .into_iter()
        .find(|e| e["event"] == "exited")
        .unwrap();
    // Present, and null: there is no verdict on a stop nobody asked for.
    assert_eq!(
        (exited.get("requested"), exited.get("clean")),
        (Some(&false.into()), Some(&serde_json::Value::Null)),
        "{text}"
    );
}

#[test]
fn events_can_go_to_stdout_while_stderr_stays_human() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let out = Command::new(hotrun_exe())
        .args(["--events", "-", "--on-exit", "exit", "--"])
        .arg(&app)
        .args(["--exit-after-ms", "0", "--exit-code", "4"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let all = parse_events(&String::from_utf8_lossy(&out.stdout));
    let last = all.last().unwrap();
    assert_eq!((last.event.as_str(), last.code), ("hotrun_exit", Some(4)));
    let exited = all.iter().find(|e| e.event == "exited").unwrap();
    assert_eq!(exited.requested, Some(false));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gen 1 exited with 4"));
}

#[test]
fn an_unwritable_events_path_is_a_start_up_error() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let out = Command::new(hotrun_exe())
        .arg("--events")
        .arg(sb.path("no/such/dir/events.jsonl"))
        .arg("--")
        .arg(&app)
        .arg("--log")
        .arg(&log.path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--events") && stderr.contains("cannot write"),
        "{stderr}"
    );
    assert!(!log.path.exists());
}

fn drill(hotrun_args: &[&str], fixture_args: &[&str]) -> (Output, String) {
    drill_in(&Sandbox::new(), hotrun_args, fixture_args)
}

/// `hotrun drill` over the fixture (logging to the sandbox's log); returns its output and
/// the --summary-json text.
fn drill_in(sb: &Sandbox, hotrun_args: &[&str], fixture_args: &[&str]) -> (Output, String) {
    let app = sb.install_fixture("app");
    let summary = sb.path("summary.json");
    let out = Command::new(hotrun_exe())
        .arg("drill")
        .arg("--summary-json")
        .arg(&summary)
        .args(hotrun_args)
        .arg("--")
        .arg(&app)
        .arg("--log")
        .arg(sb.path("log"))
        .args(fixture_args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let summary = fs::read_to_string(&summary).unwrap_or_default();
    (out, summary)
}

/// Every line of `text` as JSON (a consumer reading it with `jq` line by line); panics
/// on a line that is not.
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\nin:\n{text}"))
        })
        .collect()
}

#[test]
fn a_drill_passes_on_a_well_behaved_server() {
    // hotrun binds port 0; the probe's port 0 means "that port". The grace period is long:
    // the server stops on its own, and a clean stop is one that needs no SIGKILL.
    for probe in ["http://127.0.0.1:0/health", "tcp:127.0.0.1:0"] {
        let sb = Sandbox::new();
        let events = sb.path("events.jsonl");
        let before = mono_ns();
        let (out, summary) = drill_in(
            &sb,
            &[
                "--events",
                events.to_str().unwrap(),
                "--restarts",
                "2",
                "--pause",
                "100ms",
                "--grace",
                "60s",
                "--listen",
                "127.0.0.1:0",
                "--ready",
                "notify",
                "--probe",
                probe,
            ],
            &["--listen-fd", "--notify", "--http", "--startup-ms", "100"],
        );
        let took = ms_between(before, mono_ns());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{probe}\n{stdout}\n{stderr}");
        assert!(stdout.contains("drill passed"), "{stdout}");
        // The final stop is the drill's own, not a signal hotrun got.
        assert!(
            stderr.contains("hotrun: drill: final stop: sending SIGTERM")
                && !stderr.contains("got SIGTERM"),
            "{stderr}"
        );
        let stop = read_events(&events)
            .into_iter()
            .find(|e| e["event"] == "shutdown")
            .unwrap();
        assert_eq!(
            (&stop["signal"], &stop["drill"]),
            (&"SIGTERM".into(), &true.into()),
            "{stop}"
        );
        let json: serde_json::Value = serde_json::from_str(&summary).unwrap();
        assert_eq!(json["passed"], true, "{summary}");
        let rows = json["restarts"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{summary}");
        for (i, row) in rows.iter().enumerate() {
            let n = i as u64 + 1;
            assert_eq!(
                (&row["old_gen"], &row["new_gen"], &row["ok"]),
                (&n.into(), &(n + 1).into(), &true.into()),
                "{summary}"
            );
            // Facts, not rates: the new generation was ready by READY=1 (the time the
            // event stream gives for it), and the server answered a probe once the
            // restart was over (the one that ended the restart's window). That is after
            // READY=1, which the server sends 100 ms after it starts at the earliest (its
            // --startup-ms), and it started after the restart was asked for. All within
            // the drill's run.
            let ready = row["ready_ms"].as_f64().unwrap();
            let told = read_events(&events)
                .into_iter()
                .find(|e| e["event"] == "ready" && e["gen"] == n + 1)
                .and_then(|e| e["ms"].as_f64())
                .unwrap();
            let answered = row["answered_ms"].as_f64().unwrap();
            assert!(
                (ready - told).abs() < 0.001
                    && ready > 0.0
                    && ready <= answered
                    && (100.0..=took).contains(&answered),
                "ready {ready} ms (the event: {told}), answered {answered} ms, the drill took \
                 {took} ms\n{summary}"
            );
            assert!(row["probes"].as_u64().is_some_and(|n| n >= 1), "{summary}");
            assert_eq!(row["failed_probes"], 0, "{summary}");
        }
        assert_eq!(json["probes"]["failed"], 0, "{summary}");
        assert_eq!(
            json["final_stop"].as_str().map(
                |s| s.starts_with("gen 3 stopped cleanly in") && s.ends_with("(exited with 0)")
            ),
            Some(true),
            "{summary}"
        );
        if probe.starts_with("http") {
            // The probes reached every generation through the port hotrun bound.
            let log = sb.log();
            for g in 1..=3 {
                assert!(
                    log.count(&[&format!("http gen={g} status=200")]) >= 1,
                    "{:?}",
                    log.lines()
                );
            }
        }
    }
}

/// `hotrun drill` over the fixture, which says READY=1 once its signal handlers are in
/// place: no restart or final stop comes before them (with `--pause 0s`, one could come
/// while the server still starts, and kill it by the default action: a clean stop).
fn drill_ready(hotrun_args: &[&str], fixture_args: &[&str]) -> (Output, String) {
    let mut hotrun_args = hotrun_args.to_vec();
    hotrun_args.extend(["--ready", "notify"]);
    let mut fixture_args = fixture_args.to_vec();
    fixture_args.push("--notify");
    drill(&hotrun_args, &fixture_args)
}

fn assert_drill_fails(hotrun_args: &[&str], fixture_args: &[&str], message: &str) {
    let (out, summary) = drill_ready(hotrun_args, fixture_args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("drill FAILED"), "{stdout}");
    assert!(stdout.contains(message), "{message:?} not in:\n{stdout}");
    let json: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(json["passed"], false);
    assert!(
        json["failures"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f.as_str().unwrap().contains(message))),
        "{summary}"
    );
}

#[test]
fn a_drill_fails_on_a_server_that_ignores_sigterm() {
    // It never stops on its own, so the grace period always runs out: no race.
    assert_drill_fails(
        &["--restarts", "1", "--pause", "0s", "--grace", "500ms"],
        &["--ignore-term"],
        "(killed by SIGKILL): not a clean stop (it was still running when the grace period \
         ran out)",
    );
}

#[test]
fn a_drill_fails_on_a_server_that_exits_non_zero_on_sigterm() {
    assert_drill_fails(
        &["--restarts", "1", "--pause", "0s", "--grace", "60s"],
        &["--cleanup-code", "1"],
        "but exited with 1: not a clean stop (expected exit 0 or death by SIGTERM)",
    );
}

#[test]
fn a_drill_fails_on_a_server_that_dies_of_another_signal() {
    assert_drill_fails(
        &["--restarts", "1", "--pause", "0s", "--grace", "60s"],
        &["--cleanup-abort"],
        "but was killed by SIGABRT: not a clean stop (expected exit 0 or death by SIGTERM)",
    );
}

#[test]
fn a_drill_fails_on_a_server_that_leaves_a_grandchild_behind() {
    // The leader exits 0 at once; its grandchild ignores SIGTERM, so the grace period runs
    // out on the grandchild. (3 s: the leader's own exit is never that slow.)
    assert_drill_fails(
        &["--restarts", "1", "--pause", "0s", "--grace", "3s"],
        &["--stubborn-grandchild"],
        "(exited with 0, but its group needed SIGKILL): not a clean stop (processes of its \
         group were still running when the grace period ran out)",
    );
}

#[test]
fn a_drill_passes_on_a_server_that_dies_of_the_stop_signal_or_says_so_like_a_shell() {
    // No handler for SIGTERM (Go's net/http, python's http.server), or a wrapper that
    // exits 128+15: both are clean stops.
    for (fixture_args, says) in [
        (
            &["--die-by-signal"][..],
            "(killed by SIGTERM, the stop signal it was sent)",
        ),
        (
            &["--cleanup-code", "143"][..],
            "(exited with 143 = 128 + SIGTERM, the stop signal it was sent)",
        ),
    ] {
        let (out, summary) = drill_ready(
            &["--restarts", "1", "--pause", "0s", "--grace", "60s"],
            fixture_args,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("final stop: gen 2 stopped cleanly in") && stdout.contains(says),
            "{stdout}"
        );
        // The status line says the same, in the same words.
        assert!(
            stderr.contains("gen 1 stopped cleanly in") && stderr.contains(says),
            "{stderr}"
        );
        let json: serde_json::Value = serde_json::from_str(&summary).unwrap();
        assert_eq!(json["passed"], true);
    }
    // With another stop signal, a restart sends that one, and death by it is the clean
    // stop (not death by SIGTERM).
    let (out, summary) = drill_ready(
        &[
            "--restarts",
            "1",
            "--pause",
            "0s",
            "--grace",
            "60s",
            "--stop-signal",
            "INT",
        ],
        &["--die-by-signal"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("gen 1: sent SIGINT")
            && stderr.contains("gen 1 stopped cleanly in")
            && stderr.contains("(killed by SIGINT, the stop signal it was sent)"),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(json["passed"], true, "{summary}");
}

#[test]
fn restart_1_waits_until_the_first_generation_answers_a_probe() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let go = sb.path("go");
    let summary = sb.path("summary.json");
    let mut h = Hotrun::start(&[
        "drill".as_ref(),
        "--restarts".as_ref(),
        "1".as_ref(),
        "--pause".as_ref(),
        "0s".as_ref(),
        "--grace".as_ref(),
        "60s".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--ready".as_ref(),
        "notify".as_ref(),
        "--probe".as_ref(),
        "http://127.0.0.1:0/health".as_ref(),
        "--summary-json".as_ref(),
        summary.as_os_str(),
        "--".as_ref(),
        app.as_os_str(),
        "--log".as_ref(),
        log.arg(),
        "--listen-fd".as_ref(),
        "--notify".as_ref(),
        "--http".as_ref(),
        "--fail-gen".as_ref(),
        "1".as_ref(),
        "--fail-until".as_ref(),
        go.as_os_str(),
    ]);
    // Generation 1 is ready (READY=1) but answers 503 until the file exists.
    h.expect(&["gen 1 ready after"]);
    log.wait_for(&["http gen=1 status=503"]);
    assert_eq!(
        h.count(&["gen 2 started"]),
        0,
        "restart 1 came before any answer:\n{}",
        h.transcript()
    );
    touch(&go);
    assert_eq!(h.wait().code(), Some(0), "{}", h.transcript());
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["passed"], true, "{json}");
    // The 503s while it started are told, counted as sent, and not held against it.
    let before = json["probes"]["before_first_answer"].as_u64().unwrap();
    let sent = json["probes"]["sent"].as_u64().unwrap();
    assert!(before >= 1 && sent > before, "{json}");
    assert_eq!(json["probes"]["failed"], 0, "{json}");
    let first_ok = log.wait_for(&["http gen=1 status=200"]);
    let lines = log.lines();
    let restart = lines.iter().position(|l| l.starts_with("start gen=2"));
    let answered = lines.iter().position(|l| *l == first_ok);
    assert!(answered < restart, "{lines:?}");
}

#[test]
fn a_failed_probe_counts_against_the_restart_whose_window_it_falls_in() {
    // Generation 2 answers 503 to three requests once hotrun has reported generation 1
    // gone, that is after restart 1 is over (a server that binds late, say). Those
    // failures belong to restart 1, not to "before restart 2".
    let sb = Sandbox::new();
    let events = sb.path("events.jsonl");
    let events_arg = events.to_str().unwrap();
    let (out, summary) = drill(
        &[
            "--restarts",
            "2",
            "--pause",
            "0s",
            "--grace",
            "60s",
            "--listen",
            "127.0.0.1:0",
            "--ready",
            "notify",
            "--probe",
            "http://127.0.0.1:0/",
            "--events",
            events_arg,
        ],
        &[
            "--listen-fd",
            "--notify",
            "--http",
            "--fail-gen",
            "2",
            "--fail-after",
            events_arg,
            "--fail-after-words",
            r#""event":"exited" "gen":1,"#,
            "--fail-count",
            "3",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let failures: Vec<&str> = json["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(failures.len(), 1, "{summary}");
    assert!(
        failures[0].starts_with("restart 1: 3 of ")
            && failures[0].ends_with(" probes failed (3 answered 503)"),
        "{summary}"
    );
    let rows = json["restarts"].as_array().unwrap();
    assert_eq!(
        (&rows[0]["failed_probes"], &rows[1]["failed_probes"]),
        (&3.into(), &0.into()),
        "{summary}"
    );
    assert!(rows[0]["answered_ms"].is_number(), "{summary}");
    assert_eq!(json["probes"]["failed"], 3, "{summary}");
    assert!(
        stdout.contains("drill FAILED:\n  - restart 1: 3 of "),
        "{stdout}"
    );
}

#[test]
fn summary_json_to_stdout_is_the_only_thing_there() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let out = Command::new(hotrun_exe())
        .args([
            "drill",
            "--restarts",
            "1",
            "--pause",
            "0s",
            "--grace",
            "60s",
        ])
        .args(["--summary-json", "-", "--"])
        .arg(&app)
        .arg("--print-args")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0]["passed"], true);
    assert_eq!(lines[0]["restarts"].as_array().map(Vec::len), Some(1));
    // The table went to stderr.
    assert!(stderr.contains("hotrun drill: 1 restart\n"), "{stderr}");
    assert!(stderr.contains("drill passed"), "{stderr}");
}

#[test]
fn events_to_stdout_carry_only_json_and_the_childs_output_goes_to_stderr() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let out = Command::new(hotrun_exe())
        .args(["--events", "-", "--on-exit", "exit", "--"])
        .arg(&app)
        .args(["--print-args", "--exit-after-ms", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(
        lines.last().map(|l| l["event"].clone()),
        Some("hotrun_exit".into())
    );
    assert!(stderr.contains("args: [\"--print-args\""), "{stderr}");
}

#[test]
fn a_drill_of_python_http_server_reports_json_lines_only_and_passes() {
    if !have("python3") {
        return;
    }
    // http.server as people run it: no SIGTERM handler (it dies of the stop signal), its
    // own port (0: any), and a line on stdout; READY=1 once it serves, after that line.
    let sb = Sandbox::new();
    let script = sb.path("server.py");
    fs::write(
        &script,
        r#"import http.server, os, socket
server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
print(f"serving gen={os.environ['HOTRUN_GEN']} port={server.server_address[1]}", flush=True)
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
server.serve_forever()
"#,
    )
    .unwrap();
    let out = Command::new(hotrun_exe())
        .args([
            "drill",
            "--restarts",
            "2",
            "--pause",
            "0s",
            "--grace",
            "60s",
        ])
        .args([
            "--ready",
            "notify",
            "--events",
            "-",
            "--summary-json",
            "-",
            "--",
        ])
        .arg("python3")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let lines = json_lines(&stdout);
    let summary = lines.last().unwrap();
    assert_eq!(summary["passed"], true, "{summary}");
    assert!(
        summary.get("event").is_none(),
        "the summary comes last: {stdout}"
    );
    let exited: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "exited").collect();
    assert_eq!(exited.len(), 3, "{stdout}");
    for e in exited {
        assert_eq!(
            (&e["requested"], &e["clean"], &e["signal"]),
            (&true.into(), &true.into(), &"SIGTERM".into()),
            "{e}"
        );
    }
    // The server's own stdout went to stderr, among the status lines.
    for g in 1..=3 {
        assert!(
            stderr.contains(&format!("serving gen={g} port=")),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains("gen 1 stopped cleanly in")
            && stderr.contains("(killed by SIGTERM, the stop signal it was sent)"),
        "{stderr}"
    );
    assert!(stderr.contains("drill passed"), "{stderr}");
}

#[test]
fn a_drill_command_line_error_is_claps_whole_message() {
    let out = Command::new(hotrun_exe())
        .args(["drill", "--restarts", "0", "--", "true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        "error: invalid value '0' for '--restarts <N>': 0 is not in 1..=100000\n\n\
         For more information, try '--help'.\n"
    );
    let out = Command::new(hotrun_exe()).arg("drill").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: the following required arguments were not provided:\n  <COMMAND>...\n\n\
         Usage: hotrun drill [OPTIONS] [--] COMMAND [ARGS]...\n\n\
         For more information, try '--help'.\n"
    );
    let out = Command::new(hotrun_exe())
        .args(["drill", "--probe", "https://x:1/", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("https probes are not supported"));
    // Port 0 stands for the --listen port: without one, nothing is started.
    let out = Command::new(hotrun_exe())
        .args(["drill", "--probe", "tcp:127.0.0.1:0", "--", "true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--probe tcp:127.0.0.1:0: port 0 stands for the port of the --listen TCP socket, and there is none"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
