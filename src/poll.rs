//! `--poll DUR`: for file systems that report no events (NFS, SMB, some WSL2 and Docker
//! bind mounts, FUSE), one thread ("watch-poll") looks at everything at a fixed interval.
//!
//! Each round stats the binary and walks the `--watch` trees (not entering directories the
//! ignore rules skip) and compares each path's identity (`FileId`: device, inode, size,
//! mtime to the nanosecond, the execute bits) with the previous round. notify's `PollWatcher` compares only whole-second
//! modification times (not size, not inode), so a second save within the same second, or a
//! rebuild that keeps the mtime second, would go unseen; hence this small walker.
//!
//! This is the only part of hotrun that wakes up on a timer, and only when asked to.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use crossbeam_channel::Sender;

use crate::file_id::FileId;
use crate::ignores::{Rules, Tree};
use crate::input::Input;

/// What a path looked like in one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    id: FileId,
    is_dir: bool,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            id: FileId::from_metadata(meta),
            is_dir: meta.is_dir(),
        }
    }
}

struct Poller {
    binary: Option<(PathBuf, Option<FileId>)>,
    tree: Tree,
    seen: BTreeMap<PathBuf, Stamp>,
}

/// Takes the first look now, then starts the thread.
pub(crate) fn start(
    binary: Option<PathBuf>,
    tree: Tree,
    interval: Duration,
    tx: Sender<Input>,
) -> Result<()> {
    let mut poller = Poller {
        binary: binary.map(|b| {
            let id = FileId::of(&b);
            (b, id)
        }),
        tree,
        seen: BTreeMap::new(),
    };
    poller.seen = poller.snapshot();
    thread::Builder::new()
        .name("watch-poll".into())
        .spawn(move || {
            loop {
                thread::sleep(interval);
                for input in poller.round() {
                    if tx.send(input).is_err() {
                        return;
                    }
                }
            }
        })
        .context("cannot start the poll thread")?;
    Ok(())
}

impl Poller {
    /// One look at everything; what changed since the last one.
    fn round(&mut self) -> Vec<Input> {
        let mut out = Vec::new();
        if let Some((path, last)) = self.binary.as_mut() {
            let now = FileId::of(path);
            if now != *last {
                *last = now;
                out.push(Input::Binary);
            }
        }
        let now = self.snapshot();
        let mut changed: Vec<(PathBuf, Option<Stamp>)> = Vec::new();
        for (path, stamp) in &now {
            match self.seen.get(path) {
                // A directory's own mtime moves with its entries, which are seen anyway.
                Some(old) if old == stamp || (old.is_dir && stamp.is_dir) => {}
                _ => changed.push((path.clone(), Some(*stamp))),
            }
        }
        for path in self.seen.keys() {
            if !now.contains_key(path) {
                changed.push((path.clone(), None));
            }
        }
        let rule_files: Vec<&PathBuf> = changed
            .iter()
            .map(|(p, _)| p)
            .filter(|p| Rules::is_rule_file(p))
            .collect();
        for path in rule_files {
            self.tree.rules.reload_file(path);
        }
        // Name the round after the newest change that counts under the rules now (a path
        // that just became ignored has "disappeared" from the walk, which is no change).
        let newest = changed
            .iter()
            .filter(|(p, stamp)| {
                let was_dir = self.seen.get(p).is_some_and(|s| s.is_dir);
                self.tree.counts(p, stamp.map_or(was_dir, |s| s.is_dir))
            })
            .max_by_key(|(_, stamp)| stamp.map_or(i128::MIN, |s| s.id.mtime_ns))
            .map(|(p, _)| self.tree.shown(p));
        self.seen = now;
        if let Some(path) = newest {
            out.push(Input::Path(path));
        }
        out
    }

    /// Every watched file, and every path in the watched trees the rules do not skip.
    fn snapshot(&self) -> BTreeMap<PathBuf, Stamp> {
        let mut out = BTreeMap::new();
        for file in &self.tree.files {
            if let Ok(meta) = fs::metadata(file) {
                out.insert(file.clone(), Stamp::of(&meta));
            }
        }
        for root in &self.tree.dirs {
            walk(root, &self.tree, &mut out);
        }
        out
    }
}

fn walk(root: &Path, tree: &Tree, out: &mut BTreeMap<PathBuf, Stamp>) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if tree.rules.is_ignored(&path, meta.is_dir()) {
                continue;
            }
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.insert(path, Stamp::of(&meta));
        }
    }
}
