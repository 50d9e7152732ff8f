//! hotrun: runs a command and restarts it when its binary changes or on SIGHUP, starting
//! the new generation before stopping the old one. `main` only dispatches and maps the
//! result to an exit code.

mod app;
mod cli;
mod drill;
mod event;
mod event_log;
mod exit;
mod file_id;
mod footprint;
mod format;
mod guardian;
mod ignores;
mod input;
mod orphans;
mod poll;
mod process;
mod program;
mod readiness;
mod report;
mod signals;
mod sockets;
mod supervisor;
mod takeover;
mod watcher;

use std::ffi::OsStr;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mode = std::env::args_os().nth(1);
    if mode.as_deref() == Some(OsStr::new(process::TRAMPOLINE_ARG)) {
        let args: Vec<_> = std::env::args_os().skip(2).collect();
        return process::trampoline(&args);
    }
    let config = match cli::parse() {
        Ok(config) => config,
        Err(failure) => return failure.report(),
    };
    match app::run(config) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
