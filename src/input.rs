//! What the event sources send to the loop: the raw news of the signal thread, the
//! watcher (or the poller), the notify-socket readers and socket takeover. The loop in
//! `app.rs` turns each `Input` into zero or more supervisor `Event`s, looking at the
//! world where an input only says "look again" (the binary, a SIGCHLD).
//!
//! Every source only sends; none of them knows about the loop, the supervisor or each
//! other.

use std::path::PathBuf;

use crate::event::{Generation, SocketNews};

/// What the event sources send to the loop.
#[derive(Debug)]
pub(crate) enum Input {
    /// A signal number from the signal thread.
    Signal(i32),
    /// Something happened to the command's executable (the loop looks at it when it gets
    /// to this input, so a stale observation never counts).
    Binary,
    /// A `--watch` path changed (named as the user would write it).
    Path(PathBuf),
    /// The watcher could not do all it should (the user is told; watching goes on).
    Warning(String),
    /// Advice for the user about something a generation ran into (no event: not a
    /// lifecycle step). Only Linux's socket takeover gives any.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Hint(String),
    /// A generation's notify socket got a message.
    Notify {
        generation: Generation,
        ready: bool,
        status: Option<String>,
    },
    /// Socket takeover saw a generation bind, listen or accept (Linux).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Socket {
        generation: Generation,
        news: SocketNews,
    },
}
