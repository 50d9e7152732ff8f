//! CI mode: the `--events` JSON stream, and `hotrun drill` passing on a well-behaved
//! server and failing, with the right message, on each kind of misbehaviour.

use std::fs;
use std::net::TcpListener;
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
    let mut h = start_fixture(
        &sb,
        &["--events", events.to_str().unwrap()],
        &["--cleanup-code", "0"],
    );
    h.expect(&["gen 1 started"]);
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 1 stopped cleanly"]);
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
    assert_eq!(old.code, Some(0));
    assert!(old.alive_ms.is_some_and(|ms| ms > 0.0));
    assert_eq!(all[5].signal.as_deref(), Some("SIGTERM"));
    // One status line per lifecycle event that has one.
    assert_eq!(h.count(&["started in"]), 2);
    assert_eq!(h.count(&["stopped cleanly"]), 2);
    assert_eq!(h.count(&["sent SIGTERM"]), 2);
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
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let summary = sb.path("summary.json");
    let out = Command::new(hotrun_exe())
        .arg("drill")
        .args(["--restarts", "2", "--pause", "100ms", "--grace", "1s"])
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

fn free_port() -> String {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string()
}

#[test]
fn a_drill_passes_on_a_well_behaved_server() {
    let port = free_port();
    let probe = format!("tcp:127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let (out, summary) = drill(
        &["--listen", &listen, "--ready", "notify", "--probe", &probe],
        &["--listen-fd", "--notify", "--startup-ms", "100"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("drill passed"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(json["passed"], true);
    assert_eq!(json["restarts"].as_array().map(Vec::len), Some(2));
    assert!(
        json["restarts"][0]["ready_ms"]
            .as_f64()
            // Counted from when hotrun saw the exec; on a loaded machine that can be
            // well into the server's 100 ms start.
            .is_some_and(|ms| ms > 0.0),
        "{summary}\n{stdout}"
    );
    assert!(
        json["probes"]["sent"].as_u64().is_some_and(|n| n > 5),
        "{summary}"
    );
    assert_eq!(json["probes"]["failed"], 0);
}

fn assert_drill_fails(hotrun_args: &[&str], fixture_args: &[&str], message: &str) {
    let (out, summary) = drill(hotrun_args, fixture_args);
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
    assert!(json["failures"].as_array().is_some_and(|f| !f.is_empty()));
}

#[test]
fn a_drill_fails_on_a_server_that_ignores_sigterm() {
    assert_drill_fails(
        &[],
        &["--ignore-term"],
        "did not stop within the grace period and needed SIGKILL",
    );
}

#[test]
fn a_drill_fails_on_a_server_that_exits_non_zero_on_sigterm() {
    assert_drill_fails(
        &[],
        &["--cleanup-code", "1"],
        "exited with 1 on the stop signal (expected 0)",
    );
}

#[test]
fn a_drill_fails_on_a_server_that_leaves_a_grandchild_behind() {
    assert_drill_fails(
        &[],
        &["--stubborn-grandchild"],
        "left processes in its group that needed SIGKILL",
    );
}

#[test]
fn a_drill_fails_on_a_server_that_never_gets_ready() {
    assert_drill_fails(
        &["--ready", "notify", "--ready-timeout", "300ms"],
        &[],
        "the first generation, gen 1, was not ready within",
    );
}

#[test]
fn a_drill_fails_when_restarts_drop_probes() {
    // Stop-then-start in effect: the server binds its own port only after 300 ms, and the
    // old one lets go of it at once.
    let port = free_port();
    let probe = format!("tcp:127.0.0.1:{port}");
    assert_drill_fails(
        &["--probe", &probe],
        &["--port", &port, "--startup-ms", "300"],
        "probes failed",
    );
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
}
