//! Watching the command's executable and the `--watch` paths, and turning what the file
//! system reports into `Input`s for the loop: "look at the binary again", or "this path
//! changed". Deciding what a change means (restart, debounce, the self-write hint) is the
//! supervisor's job; this module only reports paths.
//!
//! **The binary.** An inotify watch follows an inode, and every build tool replaces the
//! binary with a new one (cargo unlinks and hard-links, GNU ld unlinks and recreates,
//! `install` and `mv` rename), so the binary is watched through its directory and events
//! are filtered by name. Event kinds are not trusted (FSEvents coalesces them, cargo's hard
//! link produces only a Create): every event on the binary just tells the loop to `stat` it.
//! Reads and execs (Access events) are dropped, so hotrun's own exec never triggers.
//! While the binary is missing (a build in progress, `cargo clean`), the directories above
//! its directory are watched too, so that their removal and their return are seen; the
//! watch follows the path back down as directories reappear, looking at the binary again
//! each time, and shrinks back to the one directory once the binary is there. No timer is
//! involved: an idle hotrun does not wake up.
//!
//! **`--watch` directories** are watched recursively; changes of paths the ignore rules
//! skip (`ignores.rs`) are dropped here, and a change is named after the path the user
//! touched: for a rename (an editor's atomic save, `sed -i`), the destination.
//!
//! The notify callbacks only forward raw events to one thread ("watch") that owns the
//! watchers: a watch can only be added or moved from outside notify's own event thread.
//! With `--poll` (`poll.rs`) there are no watchers at all.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use crossbeam_channel::{Sender, unbounded};
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::ignores::{Extra, Rules, Tree};
use crate::input::Input;
use crate::poll;

/// What to watch.
#[derive(Clone, Debug, Default)]
pub(crate) struct Spec {
    /// The command's executable (absolute, symlinks resolved), unless `--no-watch-binary`.
    pub(crate) binary: Option<PathBuf>,
    /// `--watch` paths (absolute, canonical): files, or directories watched recursively.
    pub(crate) paths: Vec<PathBuf>,
    /// `--ignore` globs, the current directory, hotrun's own `--events` file.
    pub(crate) extra: Extra,
    /// `--poll`: stat everything at this interval instead of asking for events.
    pub(crate) poll: Option<Duration>,
}

impl Spec {
    /// The `--watch` directories and files, apart.
    pub(crate) fn split(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        self.paths.iter().cloned().partition(|p| p.is_dir())
    }
}

/// Starts watching; returns what the user should be told (unreadable ignore files).
pub(crate) fn start(spec: &Spec, tx: Sender<Input>) -> Result<Vec<String>> {
    let (dirs, files) = spec.split();
    if spec.binary.is_none() && dirs.is_empty() && files.is_empty() {
        return Ok(Vec::new());
    }
    let mut rules = Rules::load(&dirs, &spec.extra);
    let warnings = std::mem::take(&mut rules.warnings);
    let tree = Tree {
        rules,
        dirs,
        files,
        cwd: spec.extra.cwd.clone(),
    };
    if let Some(interval) = spec.poll {
        poll::start(spec.binary.clone(), tree, interval, tx)?;
        return Ok(warnings);
    }

    let (raw_tx, raw_rx) = unbounded::<Raw>();
    let binary = match &spec.binary {
        Some(path) => {
            let raw_tx = raw_tx.clone();
            let watcher = notify::recommended_watcher(move |res| {
                let _ = raw_tx.send(Raw::Binary(res));
            })
            .context("cannot start the file watcher")?;
            let mut binary = BinaryWatch::new(path.clone(), watcher);
            binary.arm()?;
            Some(binary)
        }
        None => None,
    };
    let tree_watcher = if tree.dirs.is_empty() && tree.files.is_empty() {
        None
    } else {
        let mut watcher = notify::recommended_watcher(move |res| {
            let _ = raw_tx.send(Raw::Tree(res));
        })
        .context("cannot start the file watcher")?;
        // Files through their directory; directories last, so that a directory watched
        // both ways stays recursive.
        for file in &tree.files {
            let parent = parent_of(file);
            watcher
                .watch(parent, RecursiveMode::NonRecursive)
                .with_context(|| format!("cannot watch {}", parent.display()))?;
        }
        for dir in &tree.dirs {
            watcher
                .watch(dir, RecursiveMode::Recursive)
                .with_context(|| format!("cannot watch {}", dir.display()))?;
        }
        Some(watcher)
    };
    let mut state = State {
        binary,
        tree,
        _tree_watcher: tree_watcher,
        told: Vec::new(),
    };
    thread::Builder::new()
        .name("watch".into())
        .spawn(move || {
            let send = |inputs: Vec<Input>| inputs.into_iter().all(|i| tx.send(i).is_ok());
            while let Ok(raw) = raw_rx.recv() {
                if !send(state.handle(raw)) {
                    return;
                }
                // Moving the binary's watches takes a round trip to notify's thread per
                // directory: first take what is queued already (a rebuild's unlink is
                // followed at once by the new file, which makes the move needless).
                while let Ok(raw) = raw_rx.try_recv() {
                    if !send(state.handle(raw)) {
                        return;
                    }
                }
                if !send(state.settle()) {
                    return;
                }
            }
        })
        .context("cannot start the watch thread")?;
    Ok(warnings)
}

/// A raw event, and which watcher it came from.
enum Raw {
    Binary(notify::Result<Event>),
    Tree(notify::Result<Event>),
}

/// Everything the watch thread owns.
struct State {
    binary: Option<BinaryWatch>,
    tree: Tree,
    _tree_watcher: Option<RecommendedWatcher>,
    /// Watcher errors already told (each is said once).
    told: Vec<String>,
}

impl State {
    /// Puts the binary's watches where they belong now. If they moved, the binary is
    /// looked at again (it may have appeared before the new watch).
    fn settle(&mut self) -> Vec<Input> {
        let Some(binary) = self.binary.as_mut() else {
            return Vec::new();
        };
        match binary.settle() {
            Ok(true) => vec![Input::Binary],
            Ok(false) => Vec::new(),
            Err(err) => {
                // The watches stay as they were; the next event tries again.
                let problem = format!(
                    "cannot follow the command's executable: {err:#}; a new build may go \
                     unseen until its directory changes again (or use --poll)"
                );
                if self.told.contains(&problem) {
                    vec![Input::Binary]
                } else {
                    self.told.push(problem.clone());
                    vec![Input::Binary, Input::Warning(problem)]
                }
            }
        }
    }

    fn handle(&mut self, raw: Raw) -> Vec<Input> {
        let mut out = Vec::new();
        let error = match &raw {
            Raw::Binary(Err(err)) | Raw::Tree(Err(err)) => Some(err.to_string()),
            _ => None,
        };
        match raw {
            Raw::Binary(res) => {
                if let Some(binary) = self.binary.as_mut() {
                    out.extend(binary.handle(res));
                }
            }
            Raw::Tree(Ok(event)) => out.extend(tree_change(&mut self.tree, &event)),
            // Lost events (a full queue), or a new directory that could not be watched:
            // nothing to name; the user is told below.
            Raw::Tree(Err(_)) => {}
        }
        let mut problems: Vec<String> = std::mem::take(&mut self.tree.rules.warnings)
            .into_iter()
            .map(|w| format!("ignore rules: {w}"))
            .collect();
        if let Some(err) = error {
            problems.push(format!(
                "file watch: {err}; some changes may go unseen (inotify limits: \
                 /proc/sys/fs/inotify; or use --poll)"
            ));
        }
        for problem in problems {
            if !self.told.contains(&problem) {
                self.told.push(problem.clone());
                out.push(Input::Warning(problem));
            }
        }
        out
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

fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

// ---- the binary ----------------------------------------------------------------------

/// The watches that keep track of the binary: its directory while the binary is there;
/// while it is missing, on Linux, also every directory above (or, with its directory gone
/// too, the nearest one that exists and every directory above that).
///
/// Why the ones above: removing a directory ends its inotify watch with a `DELETE_SELF`
/// only once nothing refers to the directory any more, and the running generation's
/// executable, deleted or not, keeps referring to it, so `cargo clean` would go unnoticed
/// (tried on Linux 6.18). The directory above sees the removal at once, as a change of its
/// entries. FSEvents watches paths, not inodes, and needs none of this.
struct BinaryWatch {
    binary: PathBuf,
    dir: PathBuf,
    /// The directories watched, with their identities when the watch was made.
    watched: BTreeMap<PathBuf, (u64, u64)>,
    /// Something happened on the way to the binary: the watches may have to move.
    unsettled: bool,
    watcher: RecommendedWatcher,
}

impl BinaryWatch {
    fn new(binary: PathBuf, watcher: RecommendedWatcher) -> BinaryWatch {
        let dir = parent_of(&binary).to_path_buf();
        BinaryWatch {
            binary,
            dir,
            watched: BTreeMap::new(),
            unsettled: false,
            watcher,
        }
    }

    /// Moves the watches if something happened on the way to the binary; whether a watch
    /// was made (what it watches may have changed before it was there: look again).
    fn settle(&mut self) -> Result<bool> {
        if !std::mem::take(&mut self.unsettled) {
            return Ok(false);
        }
        self.arm()
    }

    /// Puts the watches where they belong now; whether it made one. A directory can appear
    /// (or go) between the look and the watch, and so can the binary: look again until
    /// both agree.
    ///
    /// Whether a watch was made is not told by comparing identities before and after: a
    /// directory removed and made again can get the inode number its predecessor had, and
    /// the new watch would look like the old one.
    fn arm(&mut self) -> Result<bool> {
        let mut made = false;
        loop {
            let Some((near, id)) = nearest_existing_dir(&self.dir) else {
                anyhow::bail!("no directory above {} exists", self.dir.display());
            };
            let mut wanted = BTreeMap::from([(near.clone(), id)]);
            let missing = near != self.dir || fs::symlink_metadata(&self.binary).is_err();
            // FSEvents (macOS) watches paths and reports a directory's removal at once; the
            // directories above are needed where watches follow inodes (inotify).
            if missing && cfg!(target_os = "linux") {
                for dir in near.ancestors().skip(1) {
                    if let Ok(meta) = fs::metadata(dir) {
                        wanted.insert(dir.to_path_buf(), (meta.dev(), meta.ino()));
                    }
                }
            }
            let stale: Vec<PathBuf> = self
                .watched
                .iter()
                .filter(|(dir, id)| wanted.get(*dir) != Some(id))
                .map(|(dir, _)| dir.clone())
                .collect();
            for dir in stale {
                self.watched.remove(&dir);
                // It may be gone already, and its watch with it.
                let _ = self.watcher.unwatch(&dir);
            }
            for (dir, id) in wanted {
                if self.watched.contains_key(&dir) {
                    continue;
                }
                match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        self.watched.insert(dir, id);
                        made = true;
                    }
                    Err(err) if dir == near => {
                        return Err(err).with_context(|| format!("cannot watch {}", dir.display()));
                    }
                    // One above that cannot be watched (not readable): the next change
                    // of the binary's own directory is still seen.
                    Err(_) => {}
                }
            }
            // The binary too may have gone (or come back) between the look and the watch:
            // gone before its directory's watch was there, its removal was not seen, and
            // the directories above must be watched for what comes next.
            let still_missing = near != self.dir || fs::symlink_metadata(&self.binary).is_err();
            if nearest_existing_dir(&self.dir) == Some((near, id)) && still_missing == missing {
                return Ok(made);
            }
        }
    }

    fn handle(&mut self, res: notify::Result<Event>) -> Vec<Input> {
        let event = match res {
            Ok(event) if !is_relevant(event.kind) => return Vec::new(),
            Ok(event) => event,
            Err(_) => {
                // Lost events: the directories may have changed under us.
                self.unsettled = true;
                return vec![Input::Binary];
            }
        };
        let mut look = false;
        for path in &event.paths {
            if *path == self.binary {
                look = true;
            } else if self.dir.starts_with(path) {
                // The binary's directory or one above it on the way: removed, renamed,
                // made again.
                look = true;
                let gone = matches!(
                    event.kind,
                    EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
                );
                if gone {
                    // Its watch ended with it, and notify drops, by path, every watch at
                    // or below a path removed or renamed away: a watch already made on a
                    // new directory of the same name goes too (cargo clean and a build
                    // racing each other). Forget them all, so the next arm watches anew
                    // whatever is there now.
                    let below: Vec<PathBuf> = self
                        .watched
                        .keys()
                        .filter(|dir| dir.starts_with(path))
                        .cloned()
                        .collect();
                    for dir in below {
                        self.watched.remove(&dir);
                        // notify may have dropped it already.
                        let _ = self.watcher.unwatch(&dir);
                    }
                }
            }
        }
        if !look {
            return Vec::new();
        }
        self.unsettled = true;
        vec![Input::Binary]
    }
}

/// The nearest directory at or above `dir` that exists, with its identity.
fn nearest_existing_dir(dir: &Path) -> Option<(PathBuf, (u64, u64))> {
    dir.ancestors().find_map(|d| {
        fs::metadata(d)
            .ok()
            .filter(fs::Metadata::is_dir)
            .map(|m| (d.to_path_buf(), (m.dev(), m.ino())))
    })
}

// ---- --watch paths ---------------------------------------------------------------------

/// The change a `--watch` event stands for, if any.
fn tree_change(tree: &mut Tree, event: &Event) -> Option<Input> {
    if !is_relevant(event.kind) {
        return None;
    }
    if let EventKind::Modify(ModifyKind::Name(RenameMode::Both)) = event.kind {
        // inotify reports a rename as From, To, then Both (old and new path together):
        // From and To say it all, and counting Both too would make one save two.
        return None;
    }
    for path in &event.paths {
        if Rules::is_rule_file(path) {
            tree.rules.reload_file(path);
        }
    }
    let new_dir = matches!(
        event.kind,
        EventKind::Create(CreateKind::Folder)
            | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Any))
    );
    if new_dir {
        for path in &event.paths {
            if path.is_dir() {
                tree.rules.add_tree(path);
            }
        }
    }
    // Should an event list several paths (a rename on some platforms: the old one, then
    // the new one), the last that counts names the change: an editor's or sed's
    // temporary file is renamed over the real file, which is what the user saved.
    let is_dir_event = matches!(
        event.kind,
        EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder)
    );
    event
        .paths
        .iter()
        .rev()
        .find(|p| tree.counts(p, is_dir_event))
        .map(|p| Input::Path(tree.shown(p)))
}
