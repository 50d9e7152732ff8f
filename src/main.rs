//! hotrun: runs a command and restarts it when its binary changes or on SIGHUP, starting
//! the new generation before stopping the old one. `main` only dispatches and maps the
//! result to an exit code.

mod app;
mod cli;
mod event;
mod exit;
mod guardian;
mod process;
mod report;
mod signals;
mod supervisor;
mod watcher;

use std::ffi::OsStr;
use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args_os().nth(1).as_deref() == Some(OsStr::new(guardian::ARG)) {
        return guardian::run();
    }
    let config = match cli::parse() {
        Ok(config) => config,
        Err(failure) => return failure.report(),
    };
    match app::run(config) {
        Ok(outcome) => exit::from_outcome(outcome),
        Err(failure) => failure.report(),
    }
}
