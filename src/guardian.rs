//! The guardian: a tiny helper process, forked from hotrun at start, that outlives hotrun
//! by a moment and cleans up if hotrun dies without doing so itself (SIGKILL, the OOM
//! killer, an abort): it SIGKILLs every process group hotrun had registered and removes
//! the files hotrun created (the `--ready notify` directory, unix `--listen` sockets).
//!
//! `PR_SET_PDEATHSIG` (Linux only) reaches the direct child alone; grandchildren in the
//! group would be orphaned. The guardian holds the read end of a close-on-exec pipe;
//! hotrun writes `+PGID` after a spawn and `-PGID` before it reaps a leader, and `+D`/`+F`
//! plus a hex-encoded path for a directory or file to remove (`-D`/`-F` take it back).
//! EOF means hotrun is gone: every group still registered is killed, then every path still
//! registered is removed. A group is unregistered before its leader is reaped, so the only
//! pgid that can be killed after reuse is one whose members all died in the microseconds
//! between hotrun's death and the guardian's kill. hotrun takes its paths back before it
//! removes them itself at a normal exit, so the guardian never removes a path that a new
//! process may have created since.
//!
//! The guardian is a `fork()` of hotrun taken before hotrun starts any thread, not a new
//! exec of the binary: it shares hotrun's pages (copy-on-write) and costs little memory.
//! The forked child is single-threaded, closes every descriptor it inherited but its pipe
//! (hotrun's listening sockets among them), and ends with `_exit`, so nothing of hotrun's
//! (buffered output, destructors) runs twice.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::process::Pgid;

/// What the guardian removes: a directory (with what is in it) or a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

impl Kind {
    fn tag(self) -> char {
        match self {
            Kind::Dir => 'D',
            Kind::File => 'F',
        }
    }
}

/// hotrun's end of the guardian's pipe.
#[derive(Debug)]
pub(crate) struct Guardian {
    pipe: Option<io::PipeWriter>,
    /// The guardian's pid while it runs (it is hotrun's child).
    pid: Option<Pid>,
    /// The paths registered, to take back at a normal exit.
    paths: Vec<(Kind, PathBuf)>,
}

impl Guardian {
    /// Forks the guardian process. Must run before hotrun starts any thread: the child is
    /// a copy of a single-threaded process, so what it calls cannot find a lock held by a
    /// thread that does not exist in it.
    pub(crate) fn start() -> io::Result<Guardian> {
        if let Some(threads) = threads().filter(|&n| n > 1) {
            return Err(io::Error::other(format!(
                "hotrun already runs {threads} threads; the guardian must be forked before"
            )));
        }
        let (reader, writer) = io::pipe()?;
        // SAFETY: hotrun is single-threaded here (checked above on Linux; by the order of
        // start-up everywhere), so the child may run ordinary code; it never returns from
        // `guardian_main` (it ends with `_exit`).
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => guardian_main(reader.as_raw_fd()),
            pid => {
                drop(reader);
                Ok(Guardian {
                    pipe: Some(writer),
                    pid: Some(Pid::from_raw(pid)),
                    paths: Vec::new(),
                })
            }
        }
    }

    /// A guardian that guards nothing (when it could not be started).
    pub(crate) fn none() -> Guardian {
        Guardian {
            pipe: None,
            pid: None,
            paths: Vec::new(),
        }
    }

    /// The guardian's pid (it is hotrun's child, and not an orphan to reap).
    pub(crate) fn pid(&self) -> Option<Pid> {
        self.pid
    }

    pub(crate) fn register(&mut self, pgid: Pgid) {
        self.send(&format!("+{}\n", pgid.as_raw()));
    }

    pub(crate) fn unregister(&mut self, pgid: Pgid) {
        self.send(&format!("-{}\n", pgid.as_raw()));
    }

    /// The guardian removes this directory, and what is in it, if hotrun dies.
    pub(crate) fn remove_dir(&mut self, path: &Path) {
        self.add_path(Kind::Dir, path);
    }

    /// The guardian removes this file if hotrun dies.
    pub(crate) fn remove_file(&mut self, path: &Path) {
        self.add_path(Kind::File, path);
    }

    fn add_path(&mut self, kind: Kind, path: &Path) {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        self.send(&format!("+{}{}\n", kind.tag(), hex(&path)));
        self.paths.push((kind, path));
    }

    /// Takes every path back: hotrun is about to remove them itself.
    pub(crate) fn forget_paths(&mut self) {
        for (kind, path) in std::mem::take(&mut self.paths) {
            self.send(&format!("-{}{}\n", kind.tag(), hex(&path)));
        }
    }

    /// Whether the guardian has died (it is reaped then); true once.
    pub(crate) fn died(&mut self) -> bool {
        let Some(pid) = self.pid else {
            return false;
        };
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => false,
            _ => {
                self.pid = None;
                self.pipe = None;
                true
            }
        }
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

fn hex(path: &Path) -> String {
    path.as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unhex(text: &[u8]) -> Option<PathBuf> {
    let bytes: Option<Vec<u8>> = text
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).ok().filter(|p| p.len() == 2)?;
            u8::from_str_radix(pair, 16).ok()
        })
        .collect();
    Some(PathBuf::from(OsString::from_vec(bytes?)))
}

/// How many threads this process runs (Linux; `None` where it cannot tell).
fn threads() -> Option<usize> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // "pid (comm) state ppid …": num_threads is field 20, the 18th after the comm.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(17)?.parse().ok()
}

/// What the guardian was told to clean up.
#[derive(Debug, Default)]
struct Registered {
    groups: Vec<i32>,
    paths: Vec<(Kind, PathBuf)>,
}

impl Registered {
    /// One line from hotrun: `+PGID`, `-PGID`, `+DHEX`, `-FHEX`, ….
    fn apply(&mut self, line: &[u8]) {
        let Some((&op, rest)) = line.split_first() else {
            return;
        };
        let add = match op {
            b'+' => true,
            b'-' => false,
            _ => return,
        };
        let kind = match rest.first() {
            Some(b'D') => Some(Kind::Dir),
            Some(b'F') => Some(Kind::File),
            _ => None,
        };
        if let Some(kind) = kind {
            let Some(path) = unhex(&rest[1..]) else {
                return;
            };
            if add {
                self.paths.push((kind, path));
            } else {
                self.paths.retain(|(k, p)| (*k, p) != (kind, &path));
            }
            return;
        }
        let Some(pgid) = std::str::from_utf8(rest)
            .ok()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            return;
        };
        if add {
            self.groups.push(pgid);
        } else {
            self.groups.retain(|&g| g != pgid);
        }
    }

    /// hotrun is gone: kill the groups, then remove the paths.
    fn clean_up(&self) {
        for &pgid in &self.groups {
            if pgid > 1 {
                let _ = Pgid::from_raw(pgid).signal(Signal::SIGKILL);
            }
        }
        for (kind, path) in &self.paths {
            let _ = match kind {
                Kind::Dir => std::fs::remove_dir_all(path),
                Kind::File => std::fs::remove_file(path),
            };
        }
    }
}

/// The forked child: never returns.
fn guardian_main(pipe: RawFd) -> ! {
    // A panic must not unwind into hotrun's code in this process.
    let _ = std::panic::catch_unwind(|| guard(pipe));
    // SAFETY: _exit ends the process at once: no destructor, atexit handler or flush of
    // hotrun's buffered output (which belongs to hotrun) runs here.
    unsafe { libc::_exit(0) }
}

fn guard(pipe: RawFd) {
    // SAFETY: plain system calls on this process's own state; the strings are NUL-terminated
    // literals.
    let pipe = unsafe {
        // Its own group: the terminal's Ctrl-C and the generations' signals are not for it.
        libc::setpgid(0, 0);
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_NAME, c"hotrun-guardian".as_ptr(), 0, 0, 0);
        // SIGTERM too: `pkill hotrun` and systemd's stop of the control group send it to
        // every process at once, and the guardian must outlive hotrun's shutdown (it ends
        // by itself at the pipe's EOF). It never execs, so nothing inherits the SIG_IGN.
        for sig in [
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGHUP,
            libc::SIGTSTP,
            libc::SIGTERM,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        // Keep the pipe clear of 0-2, which become /dev/null (hotrun's output pipes must
        // not be held open by the guardian).
        let pipe = if pipe < 3 {
            libc::fcntl(pipe, libc::F_DUPFD_CLOEXEC, 3)
        } else {
            pipe
        };
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for target in 0..3 {
                libc::dup2(null, target);
            }
            if null > 2 {
                libc::close(null);
            }
        }
        pipe
    };
    close_all_but(pipe);
    // It waits in read() for the rest of hotrun's life, running a few functions.
    crate::footprint::shed_startup_pages();
    let mut registered = Registered::default();
    let mut buf = [0u8; 4096];
    let mut line = Vec::with_capacity(256);
    loop {
        // SAFETY: reads into a live buffer of the given length.
        let n = unsafe { libc::read(pipe, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            break;
        }
        let Ok(n) = usize::try_from(n) else {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        };
        for &byte in &buf[..n] {
            if byte == b'\n' {
                registered.apply(&line);
                line.clear();
            } else {
                line.push(byte);
            }
        }
    }
    registered.clean_up();
}

/// Closes every descriptor above 2 except `keep`.
fn close_all_but(keep: RawFd) {
    #[cfg(target_os = "linux")]
    {
        let close_range = |first: RawFd, last: libc::c_uint| {
            // SAFETY: close_range only closes this process's descriptors.
            unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, last, 0) == 0 }
        };
        let below = keep == 3 || close_range(3, (keep - 1) as libc::c_uint);
        if below && close_range(keep + 1, libc::c_uint::MAX) {
            return;
        }
    }
    // No close_range (macOS, Linux before 5.9): one by one.
    // SAFETY: sysconf has no preconditions.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    let max = RawFd::try_from(max).unwrap_or(65_536).clamp(3, 65_536);
    for fd in (3..max).filter(|&fd| fd != keep) {
        // SAFETY: closing a descriptor number this process may or may not have open.
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_round_trips_any_path() {
        let odd = PathBuf::from(OsString::from_vec(b"/tmp/a b\n\xff".to_vec()));
        let mut reg = Registered::default();
        reg.apply(b"+42");
        reg.apply(b"+43");
        reg.apply(b"-42");
        reg.apply(format!("+D{}", hex(&odd)).as_bytes());
        reg.apply(format!("+F{}", hex(Path::new("/tmp/s.sock"))).as_bytes());
        reg.apply(format!("-F{}", hex(Path::new("/tmp/s.sock"))).as_bytes());
        reg.apply(b"garbage");
        reg.apply(b"+Dzz");
        assert_eq!(reg.groups, [43]);
        assert_eq!(reg.paths, [(Kind::Dir, odd)]);
    }
}
