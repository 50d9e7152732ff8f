//! `--events PATH|-`: one JSON object per line for every lifecycle step, for CI jobs and
//! tools. The lines are made from the same `Status` values as the human status lines, so
//! both tell the same story. Every object has `ts` (RFC 3339, UTC, milliseconds) and a
//! stable `event` name; the schema is in the README. Each line is flushed as written.
//!
//! A write error (disk full, a closed pipe) is reported once on stderr and the stream is
//! dropped: supervision goes on.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::event::{AfterBuild, AfterFailedBuild, ChildEnd, Outcome, ShutdownSignal, Status};
use crate::format::{json_millis, signal_name};

/// Where the events go.
pub(crate) struct EventLog {
    /// `None` once writing failed: the failure is told once, then events stop.
    out: Option<Box<dyn Write + Send>>,
}

impl EventLog {
    /// `-` is stdout; anything else a file, created or truncated.
    pub(crate) fn open(target: &Path) -> io::Result<EventLog> {
        let out: Box<dyn Write + Send> = if target == Path::new("-") {
            Box::new(io::stdout())
        } else {
            Box::new(File::create(target)?)
        };
        Ok(EventLog { out: Some(out) })
    }

    pub(crate) fn none() -> EventLog {
        EventLog { out: None }
    }

    /// Writes one event; returns the error text the first time writing fails.
    pub(crate) fn emit(&mut self, event: &str, fields: Value) -> Option<String> {
        let out = self.out.as_mut()?;
        let mut object = Map::new();
        object.insert(
            "ts".into(),
            Value::String(humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
        );
        object.insert("event".into(), Value::String(event.into()));
        if let Value::Object(fields) = fields {
            object.extend(fields);
        }
        let mut line = Value::Object(object).to_string();
        line.push('\n');
        let result = out.write_all(line.as_bytes()).and_then(|()| out.flush());
        match result {
            Ok(()) => None,
            Err(err) => {
                self.out = None;
                let why = format!(
                    "cannot write --events any more ({err}); events stop here, hotrun goes on"
                );
                Some(why)
            }
        }
    }

    pub(crate) fn status(&mut self, status: &Status) -> Option<String> {
        let (event, fields) = describe(status);
        self.emit(event, fields)
    }

    pub(crate) fn exit(&mut self, outcome: Outcome) -> Option<String> {
        let fields = match outcome {
            Outcome::Child { end, received } => {
                let mut f = end_fields(end);
                f["received"] = received.map_or(Value::Null, |s| s.as_str().into());
                f
            }
            Outcome::Signaled(signal) => json!({ "received": signal.as_str() }),
            Outcome::CannotStart(code) => json!({ "code": code, "cannot_start": true }),
        };
        self.emit("hotrun_exit", fields)
    }
}

/// `{"code": 3, "signal": null}` or `{"code": null, "signal": "SIGTERM"}`: both keys, always,
/// so a consumer can read either without looking for it first.
fn end_fields(end: ChildEnd) -> Value {
    match end {
        ChildEnd::Exited(code) => json!({ "code": code, "signal": null }),
        ChildEnd::Signaled(sig) => json!({ "code": null, "signal": signal_name(sig) }),
    }
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        b.extend(e);
    }
    base
}

/// The stable event name and fields of a lifecycle step.
pub(crate) fn describe(status: &Status) -> (&'static str, Value) {
    match status {
        Status::Started {
            generation,
            pid,
            trigger,
            latency,
        } => (
            "spawned",
            json!({ "gen": generation.0, "pid": pid, "pgid": pid, "trigger": trigger.to_string(), "latency_ms": json_millis(*latency) }),
        ),
        Status::Draining {
            generation,
            min,
            max,
        } => (
            "draining",
            json!({ "gen": generation.0, "min_ms": json_millis(*min), "max_ms": json_millis(*max) }),
        ),
        Status::DrainCut {
            generation,
            open,
            waited,
        } => (
            "drain_cut",
            json!({ "gen": generation.0, "open": open, "waited_ms": json_millis(*waited) }),
        ),
        Status::SocketHeld { generation, addr } => {
            ("socket_held", json!({ "gen": generation.0, "addr": addr }))
        }
        Status::SocketTakenOver { generation, addr } => (
            "socket_taken_over",
            json!({ "gen": generation.0, "addr": addr }),
        ),
        Status::SocketModeDiffers {
            generation,
            addr,
            other,
            other_nonblocking,
            nonblocking,
        } => (
            "socket_mode_differs",
            json!({ "gen": generation.0, "addr": addr, "other_gen": other.0, "nonblocking": nonblocking, "other_nonblocking": other_nonblocking }),
        ),
        Status::TakeoverDeclined {
            generation,
            addr,
            why,
        } => (
            "takeover_declined",
            json!({ "gen": generation.0, "addr": addr, "why": why }),
        ),
        Status::Ready {
            generation,
            after,
            how,
        } => (
            "ready",
            json!({ "gen": generation.0, "how": how, "ms": json_millis(*after) }),
        ),
        Status::StopSent { generation, signal } => (
            "stop_sent",
            json!({ "gen": generation.0, "signal": signal.as_str() }),
        ),
        Status::GraceExpired { generation, grace } => (
            "killed",
            json!({ "gen": generation.0, "signal": "SIGKILL", "grace_ms": json_millis(*grace) }),
        ),
        Status::Stopped {
            generation,
            end,
            after,
            alive,
        } => (
            "exited",
            with(
                json!({ "gen": generation.0, "requested": true, "needed_kill": end.killed.is_some(), "clean": end.is_clean(), "stop_ms": json_millis(*after), "alive_ms": json_millis(*alive) }),
                end_fields(end.end),
            ),
        ),
        Status::Exited {
            generation,
            end,
            alive,
        } => (
            "exited",
            with(
                json!({ "gen": generation.0, "requested": false, "needed_kill": false, "clean": null, "alive_ms": json_millis(*alive) }),
                end_fields(*end),
            ),
        ),
        Status::Lingering { generation, end } => (
            "group_outlived_leader",
            with(json!({ "gen": generation.0 }), end_fields(*end)),
        ),
        Status::RetryAfterOld {
            generation,
            end,
            older,
            ..
        } => (
            "restart_failed",
            with(
                json!({ "gen": generation.0, "why": "exited while the older generation was still stopping", "retry_after_gen": older.0 }),
                end_fields(*end),
            ),
        ),
        Status::SpawnFailed {
            message,
            still_serving,
        } => (
            "restart_failed",
            json!({ "why": message, "serving": still_serving.map(|g| g.0) }),
        ),
        Status::NotReady {
            generation,
            after,
            still_serving,
        } => (
            "rolled_back",
            json!({ "gen": generation.0, "why": "not ready in time", "ms": json_millis(*after), "serving": still_serving.map(|g| g.0) }),
        ),
        Status::RolledBack {
            generation,
            end,
            alive,
            still_serving,
        } => (
            "rolled_back",
            with(
                json!({ "gen": generation.0, "why": "exited before ready", "alive_ms": json_millis(*alive), "serving": still_serving.0 }),
                end_fields(*end),
            ),
        ),
        Status::Suspended { generation, signal } => (
            "suspended",
            json!({ "gen": generation.0, "signal": signal_name(*signal) }),
        ),
        Status::ChildSays { generation, text } => {
            ("status", json!({ "gen": generation.0, "text": text }))
        }
        Status::Queued { trigger } => ("queued", json!({ "trigger": trigger.to_string() })),
        Status::Waiting => ("waiting", json!({})),
        Status::Backoff { delay } => ("backoff", json!({ "delay_ms": json_millis(*delay) })),
        Status::BinaryMissing => ("binary_missing", json!({})),
        Status::SelfWrites { path } => ("self_writes", json!({ "path": path.to_string_lossy() })),
        Status::BuildStarted { trigger } => {
            ("build_started", json!({ "trigger": trigger.to_string() }))
        }
        Status::BuildFinished { took, then } => {
            let (then, serving) = match then {
                AfterBuild::Restart => ("restart", None),
                AfterBuild::Unchanged { serving } => ("unchanged", serving.map(|g| g.0)),
                AfterBuild::NoProgram { .. } => ("no_program", None),
            };
            (
                "build_finished",
                json!({ "ok": true, "code": 0, "signal": null, "duration_ms": json_millis(*took), "stopped": false, "then": then, "serving": serving }),
            )
        }
        Status::BuildFailed { end, took, then } => {
            let (then, serving) = match then {
                AfterFailedBuild::Serving(g) => ("serving", Some(g.0)),
                AfterFailedBuild::StartFromBefore { .. } => ("start_from_before", None),
                AfterFailedBuild::NothingToRun => ("nothing_to_run", None),
            };
            (
                "build_finished",
                with(
                    json!({ "ok": false, "duration_ms": json_millis(*took), "stopped": false, "then": then, "serving": serving }),
                    end_fields(*end),
                ),
            )
        }
        Status::BuildStopping { changed } => (
            "build_stopping",
            json!({ "changed": changed.to_string_lossy(), "then": "build_again" }),
        ),
        Status::BuildQueued { changed, stops } => (
            "build_queued",
            json!({ "changed": changed.to_string_lossy(), "stopped_in_a_row": stops }),
        ),
        Status::BuildStopped {
            end, took, killed, ..
        } => (
            "build_finished",
            with(
                json!({ "ok": false, "duration_ms": json_millis(*took), "stopped": true, "needed_kill": killed }),
                end_fields(*end),
            ),
        ),
        Status::BuildGraceExpired { grace } => (
            "build_killed",
            json!({ "signal": "SIGKILL", "grace_ms": json_millis(*grace) }),
        ),
        Status::BuildCannotStart { message } => ("build_cannot_start", json!({ "why": message })),
        Status::BuildLoop { path } => ("build_loop", json!({ "path": path.to_string_lossy() })),
        Status::ShuttingDown { why } => (
            "shutdown",
            json!({
                "signal": why.received().as_str(),
                "drill": *why == ShutdownSignal::Asked,
            }),
        ),
        Status::ForceKill => ("shutdown", json!({ "signal": "SIGKILL", "forced": true })),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    use super::*;

    /// The event names `describe` gives, read from this file's source: `("name", json!…`
    /// on one line, or `"name",` on the line after a `(`.
    fn described_names() -> Vec<String> {
        let source =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/event_log.rs"))
                .expect("read src/event_log.rs");
        let body = source
            .split("pub(crate) fn describe(")
            .nth(1)
            .and_then(|rest| rest.split("\n}\n").next())
            .expect("describe is there");
        let is_name =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        let mut names = Vec::new();
        let mut previous = "";
        for line in body.lines().map(str::trim) {
            let one_line = line
                .split("(\"")
                .nth(1)
                .and_then(|rest| {
                    rest.split_once("\", json!(")
                        .or(rest.split_once("\", with("))
                })
                .map(|(name, _)| name);
            let next_line = (previous == "(" || previous.ends_with("=> ("))
                .then(|| line.strip_prefix('"').and_then(|l| l.strip_suffix("\",")))
                .flatten();
            if let Some(name) = one_line.or(next_line).filter(|n| is_name(n)) {
                names.push(name.to_string());
            }
            previous = line;
        }
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn the_readme_events_table_has_every_lifecycle_event() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("read README.md");
        let table = readme
            .split("\n### `--events PATH`\n")
            .nth(1)
            .and_then(|rest| rest.split("\n### ").next())
            .expect("README has the --events section");
        let names = described_names();
        assert!(names.len() >= 25, "{names:?}");
        for name in [
            "spawned",
            "exited",
            "build_finished",
            "shutdown",
            "socket_held",
        ] {
            assert!(
                names.iter().any(|n| n == name),
                "{name} not read: {names:?}"
            );
        }
        for name in names {
            assert!(
                table.contains(&format!("`{name}`")),
                "the README's --events table does not list `{name}`"
            );
        }
    }

    #[test]
    fn paths_that_are_not_utf8_are_written_lossily() {
        let path = PathBuf::from(OsStr::from_bytes(b"src/caf\xe9.rs"));
        let (event, fields) = describe(&Status::BuildLoop { path: path.clone() });
        assert_eq!(event, "build_loop");
        assert_eq!(fields["path"], "src/caf\u{fffd}.rs");
        let (_, fields) = describe(&Status::BuildStopping { changed: path });
        assert_eq!(fields["changed"], "src/caf\u{fffd}.rs");
    }
}
