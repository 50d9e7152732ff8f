//! Watching the command's executable and the `--watch` paths, and turning what the file
//! system reports into `Input`s for the supervisor.
//!
//! An inotify watch follows an inode, and every build tool replaces the binary with a new
//! one (cargo unlinks and hard-links, GNU ld unlinks and recreates, `install` and `mv`
//! rename), so a watch on the file itself goes stale at the first rebuild. Files are
//! therefore watched through their parent directory and events are filtered by name.
//! Event kinds are not trusted (FSEvents coalesces them, cargo's hard link produces only a
//! Create): every event on the binary just tells the loop to `stat` it and hand the
//! supervisor what is there by then. Reads and execs (Access events) are dropped, so hotrun's
//! own exec of the binary never triggers a restart.
//!
//! A poll thread is the safety net: once a second (ten times a second while the binary's
//! directory is missing) it stats the binary and the directory, re-establishes the watch
//! when `cargo clean` removed and re-created the directory, and reports any identity change
//! the watch missed (network file systems, WSL2).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use crossbeam_channel::Sender;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::app::Input;
use crate::process::file_sig;

const POLL: Duration = Duration::from_secs(1);
const POLL_WHILE_MISSING: Duration = Duration::from_millis(100);

/// Keeps the watches alive; dropping it stops them.
pub(crate) struct Watcher {
    _inner: Arc<Mutex<RecommendedWatcher>>,
}

/// Which paths a file-system event is about.
#[derive(Clone, Debug)]
struct Routes {
    binary: Option<PathBuf>,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Routes {
    fn route(&self, event: &notify::Event, tx: &Sender<Input>) {
        if !is_relevant(event.kind) {
            return;
        }
        let mut binary_seen = false;
        for path in &event.paths {
            if self.binary.as_deref() == Some(path.as_path()) {
                if !binary_seen {
                    binary_seen = true;
                    let _ = tx.send(Input::Binary);
                }
                continue;
            }
            if self.files.iter().any(|f| f == path) || self.dirs.iter().any(|d| path.starts_with(d))
            {
                let _ = tx.send(Input::Path(path.clone()));
                return;
            }
        }
    }
}

/// Reads and execs leave the file as it was.
fn is_relevant(kind: EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Starts watching `binary` (if given) and `paths` (files, or directories recursively).
/// All paths must be absolute.
pub(crate) fn start(
    binary: Option<&Path>,
    paths: &[PathBuf],
    tx: Sender<Input>,
) -> Result<Watcher> {
    let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) =
        paths.iter().cloned().partition(|p| p.is_dir());
    let routes = Routes {
        binary: binary.map(Path::to_path_buf),
        files: files.clone(),
        dirs: dirs.clone(),
    };
    let handler_tx = tx.clone();
    let handler_routes = routes.clone();
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(event) => handler_routes.route(&event, &handler_tx),
        Err(_) => {
            // Lost events (queue overflow): look at the binary again to be safe.
            if handler_routes.binary.is_some() {
                let _ = handler_tx.send(Input::Binary);
            }
        }
    };
    let mut inner =
        notify::recommended_watcher(handler).context("cannot start the file watcher")?;

    for file in binary
        .iter()
        .copied()
        .chain(files.iter().map(PathBuf::as_path))
    {
        let parent = parent_of(file);
        if Some(file) == binary && !parent.is_dir() {
            // Not built yet (--build on a fresh clone): the poll thread watches it once
            // the directory appears.
            continue;
        }
        inner
            .watch(parent, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", parent.display()))?;
    }
    for dir in &dirs {
        inner
            .watch(dir, RecursiveMode::Recursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
    }
    let inner = Arc::new(Mutex::new(inner));
    if let Some(binary) = binary {
        let poll = Poll {
            binary: binary.to_path_buf(),
            watcher: Arc::clone(&inner),
            tx,
        };
        thread::Builder::new()
            .name("watch-poll".into())
            .spawn(move || poll.run())
            .context("cannot start the watch poll thread")?;
    }
    Ok(Watcher { _inner: inner })
}

fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

struct Poll {
    binary: PathBuf,
    watcher: Arc<Mutex<RecommendedWatcher>>,
    tx: Sender<Input>,
}

impl Poll {
    fn run(self) {
        let parent = parent_of(&self.binary).to_path_buf();
        let mut watched_dir = dir_identity(&parent);
        let mut last = file_sig(&self.binary);
        loop {
            thread::sleep(if watched_dir.is_some() {
                POLL
            } else {
                POLL_WHILE_MISSING
            });
            let dir = dir_identity(&parent);
            if dir != watched_dir {
                // Removed (cargo clean), or removed and made anew: the old watch is dead.
                watched_dir = None;
                if dir.is_some()
                    && let Ok(mut watcher) = self.watcher.lock()
                {
                    let _ = watcher.unwatch(&parent);
                    if watcher.watch(&parent, RecursiveMode::NonRecursive).is_ok() {
                        watched_dir = dir;
                    }
                }
            }
            let now = file_sig(&self.binary);
            if now != last {
                last = now;
                if self.tx.send(Input::Binary).is_err() {
                    return;
                }
            }
        }
    }
}

fn dir_identity(dir: &Path) -> Option<(u64, u64)> {
    fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}
