//! Exit codes, in one place (the `--help` text and the README's table list them; a test in
//! `cli.rs` checks that they list every one), and the error type that carries one.

use std::fmt;
use std::io::Write;
use std::process::ExitCode;

use crate::event::{ChildEnd, Outcome};

/// Something went wrong that hotrun cannot go on from (bad watch, no signal handlers).
pub(crate) const FAILURE: i32 = 1;
/// Bad command line: unknown option, bad value, no command, a `--watch` path that does
/// not exist.
pub(crate) const USAGE: i32 = 2;
/// `hotrun drill`: a check failed (each failure is named in the summary).
pub(crate) const DRILL_FAILED: i32 = 3;
/// The command exists but cannot be executed (not executable, a directory, bad format).
pub(crate) const CANNOT_EXECUTE: i32 = 126;
/// The command was not found.
pub(crate) const NOT_FOUND: i32 = 127;

/// An error that ends hotrun with a given exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: i32,
    pub(crate) message: String,
    /// A command-line error as clap tells it (several lines, styled like clap does);
    /// `message` then holds its plain text.
    clap: Option<Box<clap::Error>>,
}

impl Failure {
    pub(crate) fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            clap: None,
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure::new(USAGE, message)
    }

    /// A bad command line that clap found: reported in clap's own words, exit 2.
    pub(crate) fn clap(err: clap::Error) -> Failure {
        Failure {
            code: USAGE,
            message: err.render().to_string(),
            clap: Some(Box::new(err)),
        }
    }

    /// Prints the error (hotrun's own in one line, clap's as clap does) and gives the exit
    /// code.
    pub(crate) fn report(&self) -> ExitCode {
        match &self.clap {
            Some(err) => {
                let _ = err.print();
            }
            None => {
                let _ = writeln!(std::io::stderr(), "hotrun: error: {}", self.message);
            }
        }
        code(self.code)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Turns how the supervisor ended into hotrun's own exit.
///
/// When the child died of the very signal hotrun was asked to stop with, hotrun dies of
/// it too (restoring the default action and raising it), so a calling shell sees a death
/// by signal and stops its script like it would for the child; otherwise hotrun exits with
/// the child's code, 128 + N for a death by signal N.
pub(crate) fn from_outcome(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Child {
            end: ChildEnd::Signaled(sig),
            received: Some(received),
        } if sig == received as i32 => reraise(sig),
        Outcome::Child { end, .. } => code(end.code()),
        Outcome::Signaled(signal) => reraise(signal as i32),
        Outcome::CannotStart(c) => code(c),
    }
}

fn reraise(sig: i32) -> ExitCode {
    let _ = std::io::stderr().flush();
    if std::process::id() == 1 {
        // PID 1 (a container's init) is immune to its own signals: a raise does nothing,
        // and the abort the emulation falls back to would end it by SIGSEGV/SIGILL. The
        // exit code is what the container runtime sees.
        return code(ChildEnd::Signaled(sig).code());
    }
    // Returns only if the default action does not end the process.
    let _ = signal_hook::low_level::emulate_default_handler(sig);
    code(ChildEnd::Signaled(sig).code())
}

pub(crate) fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c & 0xff).unwrap_or(u8::MAX))
}
