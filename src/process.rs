//! Child processes: spawning a generation into its own process group, the `Pgid` type
//! that every signal goes through, observing a leader's exit without reaping it, checking
//! whether a group still has members, and reaping.
//!
//! Reaping and signalling both happen on the supervisor's thread, in the order the
//! supervisor decides, so a recycled pid or pgid is never signalled: a group's leader is
//! reaped only after the supervisor has stopped signalling its group, and while the
//! unreaped leader exists its pgid cannot be handed to another process.

use std::ffi::{OsStr, OsString};
#[cfg(target_os = "linux")]
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::event::{ChildEnd, Generation, SpawnFailure};
use crate::exit;
use crate::program::{self, NotRunnable};
use crate::readiness::NOTIFY_SOCKET;
use crate::sockets::{FIRST_FD, LISTEN_FDNAMES, LISTEN_FDS, LISTEN_PID};
use crate::takeover::ChildHook;

/// A process group id: the only thing hotrun ever sends a signal to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pgid(Pid);

impl Pgid {
    pub(crate) fn signal(self, signal: Signal) -> nix::Result<()> {
        killpg(self.0, signal)
    }

    pub(crate) fn as_raw(self) -> i32 {
        self.0.as_raw()
    }

    pub(crate) fn from_raw(raw: i32) -> Self {
        Pgid(Pid::from_raw(raw))
    }
}

/// The first process of a generation. It leads its own process group (pgid == pid).
#[derive(Debug)]
pub(crate) struct Leader {
    pub(crate) pid: Pid,
    pub(crate) pgid: Pgid,
    /// Its exit was seen (it is a zombie until reaped).
    pub(crate) exited: bool,
    /// The stop signal already reported while it is stopped.
    pub(crate) stopped: Option<i32>,
}

/// The hidden first argument of the exec trampoline: `hotrun __hotrun_exec STATUS_FD
/// PROGRAM ARGV0 ARGS...`.
pub(crate) const TRAMPOLINE_ARG: &str = "__hotrun_exec";

/// What a generation gets besides the command line.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    /// How many listening sockets sit at fds 3.. (they stay open in the child).
    pub(crate) sockets: usize,
    /// Environment to set (LISTEN_FDS, LISTEN_FDNAMES, NOTIFY_SOCKET).
    pub(crate) env: Vec<(&'static str, std::ffi::OsString)>,
    /// Set `LISTEN_PID` to the child's own pid (through the trampoline).
    pub(crate) listen_pid: bool,
}

/// Everything needed to start one more generation of the command.
#[derive(Debug)]
pub(crate) struct Spawner {
    /// The resolved executable.
    pub(crate) program: PathBuf,
    /// `argv[0]` as the user wrote it.
    pub(crate) argv0: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) inherit_stdin: bool,
    /// Send the child's stdout to hotrun's stderr (`--events -` owns stdout).
    pub(crate) stdout_to_stderr: bool,
    /// hotrun itself, for the exec trampoline.
    pub(crate) self_exe: PathBuf,
}

/// Variables a parent supervisor may have set for hotrun itself; they are never meant for
/// the child (hotrun sets its own when it passes sockets).
const NOT_INHERITED: [&str; 4] = [LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, NOTIFY_SOCKET];

impl Spawner {
    /// Starts a generation. Returns once its exec has succeeded (std reports exec errors
    /// through a close-on-exec pipe).
    ///
    /// With `handoff.listen_pid`, the child is first hotrun itself in trampoline mode: a
    /// fresh single-threaded process that sets `LISTEN_PID` to its own pid and execs the
    /// command, keeping pid and descriptors (std builds the child's environment before
    /// fork, so no other way can know the pid in time). The trampoline reports a failed
    /// exec through a close-on-exec pipe, so this still returns only once the command
    /// itself was exec'd.
    ///
    /// `takeover`: installed last in the child, before exec (socket takeover's filter).
    pub(crate) fn spawn(
        &self,
        generation: Generation,
        handoff: &Handoff,
        takeover: Option<ChildHook>,
    ) -> Result<Leader, SpawnFailure> {
        // Before exec: execvp would run a junk file through `sh` (ENOEXEC fallback).
        if let Err(why) = program::check(&self.program) {
            return Err(not_runnable(&self.program, &why));
        }
        let status_pipe = if handoff.listen_pid {
            Some(io::pipe().map_err(|e| SpawnFailure {
                message: format!("cannot create a pipe: {e}"),
                transient: false,
                exit_code: exit::CANNOT_EXECUTE,
            })?)
        } else {
            None
        };
        let status_fd = status_pipe.as_ref().map(|(_, w)| w.as_raw_fd());
        let mut cmd = match status_fd {
            Some(fd) => {
                let mut cmd = Command::new(&self.self_exe);
                cmd.arg(TRAMPOLINE_ARG)
                    .arg(fd.to_string())
                    .arg(&self.program)
                    .arg(&self.argv0)
                    .args(&self.args);
                cmd
            }
            None => {
                let mut cmd = Command::new(&self.program);
                cmd.arg0(&self.argv0).args(&self.args);
                cmd
            }
        };
        cmd.process_group(0)
            .env("HOTRUN_GEN", generation.0.to_string());
        for var in NOT_INHERITED {
            cmd.env_remove(var);
        }
        for (key, value) in &handoff.env {
            cmd.env(key, value);
        }
        if !self.inherit_stdin {
            cmd.stdin(Stdio::null());
        }
        if self.stdout_to_stderr {
            let stderr = io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| SpawnFailure {
                    message: format!("cannot hand the child hotrun's stderr as its stdout: {e}"),
                    transient: false,
                    exit_code: exit::CANNOT_EXECUTE,
                })?;
            cmd.stdout(Stdio::from(stderr));
        }
        let parent = nix::unistd::getpid().as_raw();
        let keep = libc::c_int::try_from(handoff.sockets).unwrap_or(0);
        let keep_also = status_fd.unwrap_or(-1);
        // SAFETY: `child_setup` and the takeover hook run between fork and exec and only
        // make async-signal-safe system calls (sigprocmask, signal, prctl, getppid,
        // close_range, fcntl, seccomp, sendmsg, close); they allocate nothing. The hook's
        // socket pair and filter program live in the caller until `spawn` returns.
        unsafe {
            cmd.pre_exec(move || {
                child_setup(parent, keep, keep_also)?;
                if let Some(hook) = takeover {
                    hook.install();
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|err| spawn_failure(&self.program, &err))?;
        let pid = Pid::from_raw(child.id() as i32);
        // Dropping a std Child neither waits nor kills: hotrun reaps it itself.
        drop(child);
        if let Some((mut reader, writer)) = status_pipe {
            drop(writer);
            let mut report = Vec::new();
            let _ = reader.read_to_end(&mut report);
            if let Ok(bytes) = <[u8; 4]>::try_from(report.as_slice()) {
                // The trampoline could not exec the command and exits at once.
                let _ = waitpid(pid, None);
                let err = io::Error::from_raw_os_error(i32::from_ne_bytes(bytes));
                return Err(spawn_failure(&self.program, &err));
            }
        }
        Ok(Leader {
            pid,
            pgid: Pgid(pid),
            exited: false,
            stopped: None,
        })
    }
}

/// Starts the build command (`--build`): `/bin/sh -c COMMAND` in a new process group of
/// its own, like a generation (so the whole build, compilers included, is stopped with
/// one signal), with stdin on `/dev/null` and hotrun's stdout and stderr untouched (so
/// cargo still sees a terminal and colours its output); with `stdout_to_stderr`, its
/// stdout goes to hotrun's stderr (stdout carries `--events -`). It gets no socket, no
/// `HOTRUN_GEN`, and none of the `LISTEN_*`/`NOTIFY_SOCKET` variables hotrun inherited.
pub(crate) fn spawn_build(command: &OsStr, stdout_to_stderr: bool) -> io::Result<Leader> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .process_group(0)
        .stdin(Stdio::null());
    for var in NOT_INHERITED {
        cmd.env_remove(var);
    }
    if stdout_to_stderr {
        cmd.stdout(Stdio::from(io::stderr().as_fd().try_clone_to_owned()?));
    }
    let parent = nix::unistd::getpid().as_raw();
    // SAFETY: `child_setup` runs between fork and exec and only makes async-signal-safe
    // system calls (sigprocmask, signal, prctl, getppid, close_range, fcntl); it
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || child_setup(parent, 0, -1));
    }
    let child = cmd.spawn()?;
    let pid = Pid::from_raw(child.id() as i32);
    // Dropping a std Child neither waits nor kills: hotrun reaps it itself.
    drop(child);
    Ok(Leader {
        pid,
        pgid: Pgid(pid),
        exited: false,
        stopped: None,
    })
}

/// The trampoline's `main`: `args` are what follows `TRAMPOLINE_ARG`.
pub(crate) fn trampoline(args: &[OsString]) -> std::process::ExitCode {
    let status_fd = args
        .first()
        .and_then(|a| a.to_str())
        .and_then(|a| a.parse::<RawFd>().ok());
    let (Some(status_fd), Some(program), Some(argv0)) = (status_fd, args.get(1), args.get(2))
    else {
        let _ = writeln!(
            io::stderr(),
            "hotrun: {TRAMPOLINE_ARG} is internal to hotrun"
        );
        return exit::code(exit::USAGE);
    };
    // SAFETY: this process was exec'd a moment ago and has started no thread, so nothing
    // can read the environment concurrently.
    unsafe {
        std::env::set_var(LISTEN_PID, std::process::id().to_string());
    }
    // SAFETY: fcntl on the status pipe this process was handed; the command must not
    // inherit it.
    unsafe {
        libc::fcntl(status_fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    let err = Command::new(program).arg0(argv0).args(&args[3..]).exec();
    let errno = err.raw_os_error().unwrap_or(libc::ENOEXEC);
    // SAFETY: writes 4 bytes from a live local buffer to the status pipe.
    unsafe {
        libc::write(status_fd, errno.to_ne_bytes().as_ptr().cast(), 4);
    }
    exit::code(if errno == libc::ENOENT {
        exit::NOT_FOUND
    } else {
        exit::CANNOT_EXECUTE
    })
}

/// Runs in the forked child before exec: undo whatever signal state hotrun inherited or
/// set, and tie the child's life to hotrun's.
///
/// `keep` sockets at fds 3.. and `keep_also` (if >= 0) are handed over: close-on-exec is
/// cleared on them and set on every other descriptor above 2 (Linux), so the child gets
/// 0-2, its sockets, and nothing else of hotrun's.
fn child_setup(parent: libc::pid_t, keep: libc::c_int, keep_also: libc::c_int) -> io::Result<()> {
    // SAFETY: plain system calls on a zeroed sigset owned by this frame; all are
    // async-signal-safe.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // `nohup` and friends leave SIG_IGN behind, which survives exec.
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGCHLD,
            libc::SIGPIPE,
            libc::SIGTTIN,
            libc::SIGTTOU,
        ] {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl and getppid are async-signal-safe system calls.
        unsafe {
            // The "parent" is the thread that forked: the supervisor thread, which lives
            // as long as hotrun does.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // hotrun may have died before the prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: close_range only flags descriptors; it is async-signal-safe. Kernels
        // before 5.11 answer ENOSYS, which leaves std's close-on-exec defaults in place.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                (FIRST_FD + keep.max(0)) as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
    for fd in (FIRST_FD..FIRST_FD + keep).chain((keep_also >= 0).then_some(keep_also)) {
        // SAFETY: fcntl(F_SETFD) is async-signal-safe; a bad fd only returns EBADF.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A file the system cannot run. One that may still be being written (junk so far, empty)
/// is retried within the spawn budget; a missing interpreter is final at once.
fn not_runnable(program: &Path, why: &NotRunnable) -> SpawnFailure {
    SpawnFailure {
        message: format!("cannot run {}: {why}", program.display()),
        transient: why.may_be_half_written(),
        exit_code: exit::CANNOT_EXECUTE,
    }
}

fn spawn_failure(program: &Path, err: &io::Error) -> SpawnFailure {
    let errno = err.raw_os_error();
    if errno == Some(libc::ENOENT)
        && let Err(why @ NotRunnable::MissingInterpreter(_)) = program::check(program)
    {
        // The file is there; what is missing is the interpreter on its #! line.
        return not_runnable(program, &why);
    }
    let transient = matches!(
        errno,
        Some(libc::ETXTBSY | libc::ENOENT | libc::EACCES | libc::ENOEXEC)
    );
    let (exit_code, hint) = match errno {
        Some(libc::ENOENT) => (exit::NOT_FOUND, "; is it being rebuilt?"),
        Some(libc::ETXTBSY) => (
            exit::CANNOT_EXECUTE,
            "; something still has it open for writing",
        ),
        Some(libc::ENOEXEC) => (
            exit::CANNOT_EXECUTE,
            "; it is not a program this system can run",
        ),
        _ => (exit::CANNOT_EXECUTE, ""),
    };
    SpawnFailure {
        message: format!("cannot run {}: {err}{hint}", program.display()),
        transient,
        exit_code,
    }
}

/// `waitid(P_PID, pid, flags | WNOHANG | WNOWAIT)`: the child's state change without
/// reaping it, as (si_code, si_status).
fn peek(pid: Pid, flags: libc::c_int) -> Option<(libc::c_int, libc::c_int)> {
    // SAFETY: an all-zero siginfo_t is a valid value; waitid writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid.as_raw() as libc::id_t,
            &mut info,
            flags | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid filled in the SIGCHLD fields of `info` (or left it zeroed).
    let (si_pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    (rc == 0 && si_pid != 0).then_some((info.si_code, status))
}

/// The leader's end, if it has ended; it stays a zombie (`WNOWAIT`) so that its pgid stays
/// reserved until `reap`.
pub(crate) fn leader_end(pid: Pid) -> Option<ChildEnd> {
    match peek(pid, libc::WEXITED)? {
        (libc::CLD_EXITED, code) => Some(ChildEnd::Exited(code)),
        (_, signal) => Some(ChildEnd::Signaled(signal)),
    }
}

/// The signal that stopped the leader, if it is stopped now (left reportable).
pub(crate) fn leader_stopped(pid: Pid) -> Option<i32> {
    match peek(pid, libc::WSTOPPED)? {
        (libc::CLD_STOPPED, signal) => Some(signal),
        _ => None,
    }
}

/// Reaps an exited leader. After this its pgid may belong to someone else.
pub(crate) fn reap(pid: Pid) {
    let _ = waitpid(pid, None);
}

/// Whether no process but the (zombie) leader is left in the group.
#[cfg(target_os = "linux")]
pub(crate) fn group_is_empty(pgid: Pgid, leader: Pid) -> bool {
    let Ok(dir) = fs::read_dir("/proc") else {
        return true;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == leader.as_raw() {
            continue;
        }
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ..." where comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        if pgrp == Some(pgid.as_raw()) && state != Some("Z") {
            return false;
        }
    }
    true
}

/// Whether no process but the (zombie) leader is left in the group.
#[cfg(target_os = "macos")]
pub(crate) fn group_is_empty(pgid: Pgid, leader: Pid) -> bool {
    let mut pids = [0 as libc::pid_t; 1024];
    let size = std::mem::size_of_val(&pids) as libc::c_int;
    // SAFETY: the buffer is valid for `size` bytes.
    let n = unsafe { libc::proc_listpgrppids(pgid.as_raw(), pids.as_mut_ptr().cast(), size) };
    if n <= 0 {
        return true;
    }
    let n = (n as usize).min(pids.len());
    !pids[..n].iter().any(|&p| p != 0 && p != leader.as_raw())
}

/// Whether no process but the (zombie) leader is left in the group.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub(crate) fn group_is_empty(pgid: Pgid, _leader: Pid) -> bool {
    // Without a process table to read, the leader's exit has to stand for the group's.
    let _ = pgid;
    true
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn executable(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, content).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    fn spawner(program: PathBuf) -> Spawner {
        Spawner {
            argv0: program.clone().into_os_string(),
            program,
            args: Vec::new(),
            inherit_stdin: false,
            stdout_to_stderr: false,
            self_exe: PathBuf::from("/proc/self/exe"),
        }
    }

    #[test]
    fn a_missing_interpreter_is_final_at_once_and_junk_is_retried() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = executable(dir.path(), "app.sh", b"#!/nonexistent/interp\n");
        let failure = spawner(script.clone())
            .spawn(Generation(2), &Handoff::default(), None)
            .expect_err("must not start");
        assert!(!failure.transient, "{failure:?}");
        assert_eq!(failure.exit_code, exit::CANNOT_EXECUTE);
        assert!(
            failure
                .message
                .ends_with("its interpreter /nonexistent/interp (on its #! line) does not exist"),
            "{failure:?}"
        );
        // The same when exec itself reports it (the file changed after the check).
        let failure = spawn_failure(&script, &io::Error::from_raw_os_error(libc::ENOENT));
        assert!(!failure.transient, "{failure:?}");
        assert!(
            failure.message.contains("/nonexistent/interp"),
            "{failure:?}"
        );

        let marker = dir.path().join("ran");
        let junk = executable(
            dir.path(),
            "junk",
            format!("touch {}\n", marker.display()).as_bytes(),
        );
        let failure = spawner(junk)
            .spawn(Generation(2), &Handoff::default(), None)
            .expect_err("must not start");
        assert!(failure.transient, "{failure:?}");
        assert!(failure.message.contains("not a program"), "{failure:?}");
        assert!(!marker.exists());
    }
}
