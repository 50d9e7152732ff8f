//! hotrun's own signal intake: one thread that turns every signal hotrun cares about into
//! an exact signal number on the supervisor's channel.
//!
//! `ctrlc` runs one callback for SIGINT, SIGTERM and SIGHUP alike and cannot say which
//! arrived, but hotrun restarts on SIGHUP and shuts down on SIGINT/SIGTERM. signal-hook's
//! iterator uses a close-on-exec self-pipe; its handlers are *caught* dispositions, which
//! exec resets to the default in children, and it never blocks signals (a blocked mask
//! would be inherited by every child).

use std::io;
use std::thread;

use crossbeam_channel::Sender;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use crate::input::Input;

/// The signals hotrun handles.
pub(crate) const HANDLED: [i32; 6] = [SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGUSR1, SIGCHLD];

/// Installs the handlers and starts the thread that forwards them.
pub(crate) fn start(tx: Sender<Input>) -> io::Result<()> {
    let mut signals = Signals::new(HANDLED)?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(Input::Signal(sig)).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}
