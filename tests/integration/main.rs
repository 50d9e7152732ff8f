//! hotrun's integration tests: the real `hotrun` binary over the real fixture program
//! (tests/fixtures/fixture.rs), real binary replacements, real signals, and a check of
//! what happened to every process. One test binary, one module per area.
#![allow(clippy::unwrap_used, unreachable_pub)]

/// `--build`: the build runs on a change while the old generation serves; real cargo
/// builds, failed builds, edits and signals during a build, the start-up build.
mod build;
/// A small cargo project made in a temporary directory (shared with the benchmark).
#[path = "../shared/cargo_project.rs"]
mod cargo_project;
/// --events JSON lines and `hotrun drill`.
mod ci_mode;
/// hotrun as PID 1 of a PID namespace and as a subreaper: orphans reaped, leaders not.
#[cfg(target_os = "linux")]
mod containers;
/// `.ci/demo` end to end, with its binaries in `$CARGO_TARGET_DIR`.
mod demo;
/// Servers that bind their own fixed port: every restart ends with a server.
mod fixed_port;
/// The guardian: clean-up after a SIGKILL of hotrun, and what it holds.
#[cfg(target_os = "linux")]
mod guardian;
/// Socket handoff, readiness and rollback (zero-downtime restarts).
mod handoff;
/// Sandboxes, the hotrun driver, log reading and binary replacement styles.
mod harness;
/// An idle hotrun waits without timers; watches that survive without polling; --poll.
mod idle;
/// Bad command lines: clap's whole message or hotrun's one line, the documented exit code,
/// nothing started.
mod input;
/// Child exits, exit policies, status lines, stdin and output.
mod lifecycle;
/// A TCP port reserved for a test (shared with the benchmark).
#[path = "../shared/ports.rs"]
mod ports;
/// Scripts, junk files, wrappers, servers that bind the port hotrun holds.
mod programs;
/// Restarts: each replacement style, ordering, grandchildren, grace, fixed ports.
mod restart;
/// SIGINT/SIGTERM/SIGQUIT forwarding, second Ctrl-C, SIGKILL of hotrun, terminal hangup.
mod signals;
/// Bursts, rapid rebuilds, awkward timing, broken binaries and outputs.
mod storms;
/// Socket takeover (Linux): unmodified servers that bind their own port, no request lost.
#[cfg(target_os = "linux")]
mod takeover;
/// What a process's threads wait in (/proc): timers, and whether hotrun is idle.
#[cfg(target_os = "linux")]
mod waits;
/// `--watch` of a real project: ignore files, --ignore, editors' saves, self-writes.
mod watching;
