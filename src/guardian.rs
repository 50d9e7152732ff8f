//! The guardian: a tiny helper process (hotrun itself, run with a hidden argument) that
//! outlives hotrun by a moment and SIGKILLs every process group hotrun had registered if
//! hotrun dies without cleaning up (SIGKILL, the OOM killer, an abort).
//!
//! `PR_SET_PDEATHSIG` (Linux only) reaches the direct child alone; grandchildren in the
//! group would be orphaned. The guardian holds the read end of a close-on-exec pipe;
//! hotrun writes `+PGID` after a spawn and `-PGID` before it reaps a leader. EOF means
//! hotrun is gone: every group still registered is killed. A group is unregistered before
//! its leader is reaped, so the only pgid that can be killed after reuse is one whose
//! members all died in the microseconds between hotrun's death and the guardian's kill.

use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};

use nix::sys::signal::{SigHandler, Signal, signal};

use crate::process::Pgid;

/// The hidden first argument that makes `hotrun` run as the guardian.
pub(crate) const ARG: &str = "__hotrun_guardian";

/// hotrun's end of the guardian's pipe.
#[derive(Debug)]
pub(crate) struct Guardian {
    pipe: Option<io::PipeWriter>,
}

impl Guardian {
    /// Starts the guardian process.
    pub(crate) fn start() -> io::Result<Guardian> {
        let exe = std::env::current_exe()?;
        let (reader, writer) = io::pipe()?;
        Command::new(exe)
            .arg(ARG)
            .stdin(reader)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the terminal's foreground group: Ctrl-C is not for it.
            .process_group(0)
            .spawn()?;
        Ok(Guardian { pipe: Some(writer) })
    }

    /// A guardian that guards nothing (when it could not be started).
    pub(crate) fn none() -> Guardian {
        Guardian { pipe: None }
    }

    pub(crate) fn register(&mut self, pgid: Pgid) {
        self.send(&format!("+{}\n", pgid.as_raw()));
    }

    pub(crate) fn unregister(&mut self, pgid: Pgid) {
        self.send(&format!("-{}\n", pgid.as_raw()));
    }

    fn send(&mut self, line: &str) {
        if let Some(pipe) = self.pipe.as_mut()
            && pipe.write_all(line.as_bytes()).is_err()
        {
            // The guardian died; nothing more to tell it.
            self.pipe = None;
        }
    }
}

/// The guardian's `main`.
pub(crate) fn run() -> ExitCode {
    for sig in [
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGTSTP,
    ] {
        // SAFETY: SIG_IGN installs no handler code; nothing else runs in this process.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let mut groups = BTreeSet::new();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let (op, num) = line.split_at(line.len().min(1));
        let Ok(pgid) = num.parse::<i32>() else {
            continue;
        };
        match op {
            "+" => {
                groups.insert(pgid);
            }
            "-" => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    for pgid in groups {
        if pgid > 1 {
            let _ = Pgid::from_raw(pgid).signal(Signal::SIGKILL);
        }
    }
    ExitCode::SUCCESS
}
