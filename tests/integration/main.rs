//! hotrun's integration tests: the real `hotrun` binary over the real fixture program
//! (tests/fixtures/fixture.rs), real binary replacements, real signals, and a check of
//! what happened to every process. One test binary, one module per area.
#![allow(clippy::unwrap_used, unreachable_pub)]

/// --events JSON lines and `hotrun drill`.
mod ci_mode;
/// Socket handoff, readiness and rollback (zero-downtime restarts).
mod handoff;
/// Sandboxes, the hotrun driver, log reading and binary replacement styles.
mod harness;
/// An idle hotrun waits without timers; watches that survive without polling; --poll.
mod idle;
/// Bad command lines: one line, the documented exit code, nothing started.
mod input;
/// Child exits, exit policies, status lines, stdin and output.
mod lifecycle;
/// Restarts: each replacement style, ordering, grandchildren, grace, fixed ports.
mod restart;
/// SIGINT/SIGTERM/SIGQUIT forwarding, second Ctrl-C, SIGKILL of hotrun, terminal hangup.
mod signals;
/// Bursts, rapid rebuilds, awkward timing, broken binaries and outputs.
mod storms;
/// `--watch` of a real project: ignore files, --ignore, editors' saves, self-writes.
mod watching;
