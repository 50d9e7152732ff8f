//! File identity: which file is at a path now (device, inode, size, modification time,
//! the execute bits), and which file a running process executes. A restart is due only
//! when the identity at the command's path changes; a build is judged by comparing the
//! identity (or, where it is written anew with the same bytes, the content) it left
//! there with what the newest generation runs.

use std::fs;
#[cfg(target_os = "linux")]
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::Pid;

/// The identity of the file at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) size: u64,
    pub(crate) mtime_ns: i128,
    /// A regular file with at least one execute bit set.
    pub(crate) executable: bool,
}

impl FileId {
    /// The identity of the file at `path` now (following symlinks), or `None` if there is
    /// none.
    pub(crate) fn of(path: &Path) -> Option<FileId> {
        fs::metadata(path)
            .ok()
            .map(|meta| FileId::from_metadata(&meta))
    }

    pub(crate) fn from_metadata(meta: &fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            executable: meta.is_file() && meta.permissions().mode() & 0o111 != 0,
        }
    }

    /// Whether a file with this identity can be started: a complete build is an executable
    /// regular file that is not empty (GNU ld sets the execute bits only once it is done).
    pub(crate) fn is_runnable(&self) -> bool {
        self.executable && self.size > 0
    }

    /// The same file (device and inode), whatever happened to its content since.
    fn same_file(&self, other: &FileId) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// The identity of the binary a just-spawned process `pid` runs, given what was at `path`
/// just before the spawn (`before`).
///
/// The path can change between that `stat` and the exec: a `cp` that finishes writing in
/// between (the exec then runs the complete file, but `before` saw it half-written, and a
/// needless second restart would follow), or a rename (the exec may run the newer file).
/// On Linux, `/proc/PID/exe` names the very file being executed: when it is the file at
/// the path now, that is the identity; when it is the file seen before, the path has moved
/// on and a restart must still follow. Otherwise (an interpreter runs a script; no /proc)
/// `before` is kept, which errs towards one restart too many rather than one too few.
pub(crate) fn running_binary(pid: Pid, before: Option<FileId>, path: &Path) -> Option<FileId> {
    let exe = FileId::of(&proc_exe(pid));
    let now = FileId::of(path);
    match (exe, now) {
        (Some(exe), Some(now)) if exe.same_file(&now) => Some(now),
        _ => before,
    }
}

/// Whether the file at `path` has, byte for byte, the content of the executable process
/// `pid` runs (`/proc/PID/exe` opens it even once it was unlinked or replaced). Build
/// tools that write their output anew when nothing changed (`go build -o` copies it out
/// of its cache every time) give a new identity to the same program. Read in 64 KiB
/// chunks and given up at the first difference: a changed program differs in its first
/// pages (its build id) almost always, so this costs little when it matters. Linux only;
/// elsewhere (and on any error) the answer is no, which errs towards a restart.
pub(crate) fn same_content(path: &Path, pid: Pid) -> bool {
    #[cfg(target_os = "linux")]
    {
        let (Ok(mut a), Ok(mut b)) = (fs::File::open(path), fs::File::open(proc_exe(pid))) else {
            return false;
        };
        match (a.metadata(), b.metadata()) {
            (Ok(ma), Ok(mb)) if ma.len() == mb.len() => {}
            _ => return false,
        }
        let mut chunk_a = vec![0u8; 64 * 1024];
        let mut chunk_b = vec![0u8; 64 * 1024];
        loop {
            let (Ok(n), Ok(m)) = (
                read_full(&mut a, &mut chunk_a),
                read_full(&mut b, &mut chunk_b),
            ) else {
                return false;
            };
            if n != m || chunk_a[..n] != chunk_b[..m] {
                return false;
            }
            if n == 0 {
                return true;
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (path, pid);
        false
    }
}

/// `/proc/PID/exe`: the very file process `pid` executes (Linux), even once it was
/// unlinked or replaced.
fn proc_exe(pid: Pid) -> PathBuf {
    PathBuf::from(format!("/proc/{}/exe", pid.as_raw()))
}

/// Reads until `buf` is full or the file ends; how many bytes were read.
#[cfg(target_os = "linux")]
fn read_full(file: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_content_of_a_binary_is_compared_with_what_a_process_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let me = std::env::current_exe().expect("current exe");
        let copy = dir.path().join("copy");
        fs::copy(&me, &copy).expect("copy");
        assert!(same_content(&copy, Pid::this()));
        // One byte differs, at the very end: the whole file is read.
        let mut bytes = fs::read(&copy).expect("read");
        if let Some(last) = bytes.last_mut() {
            *last ^= 0xff;
        }
        fs::write(&copy, &bytes).expect("write");
        assert!(!same_content(&copy, Pid::this()));
        bytes.pop();
        fs::write(&copy, &bytes).expect("write");
        assert!(!same_content(&copy, Pid::this()), "shorter");
        assert!(!same_content(&dir.path().join("missing"), Pid::this()));
    }

    #[test]
    fn a_process_runs_the_file_at_its_path_or_the_one_seen_before() {
        let me = std::env::current_exe().expect("current exe");
        let here = FileId::of(&me);
        assert!(here.is_some_and(|id| id.is_runnable()));
        // What runs is the file at the path: its identity now.
        assert_eq!(running_binary(Pid::this(), None, &me), here);
        // The path holds another file: what was seen before is kept.
        let dir = tempfile::tempdir().expect("tempdir");
        let other = dir.path().join("other");
        fs::write(&other, b"x").expect("write");
        let before = FileId::of(&other);
        assert_eq!(running_binary(Pid::this(), before, &other), before);
        assert_eq!(
            running_binary(Pid::this(), None, &dir.path().join("gone")),
            None
        );
    }
}
