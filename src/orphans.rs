//! Orphans. When hotrun is PID 1 (a container's init) or a child subreaper, every process
//! whose parent dies is re-parented to hotrun, and it stays a zombie for good unless
//! hotrun reaps it (what tini and dumb-init exist for).
//!
//! hotrun cannot just `waitpid(-1)`: a generation's leader must stay an unreaped zombie
//! until its whole group is gone (see `process.rs`), and `waitpid(-1)` would reap it. So
//! only exited children that hotrun does not track are reaped: `waitid(P_ALL, WNOWAIT)`
//! peeks at one exited child without reaping it; an untracked one is reaped and the peek
//! repeated; when the peek shows a tracked one (a leader waiting for its group), the rest
//! are found by their state and parent in `/proc`. Everything runs on the loop's thread,
//! like the other reaping, on every SIGCHLD (signals coalesce, so a storm costs one pass
//! per wake-up, and an exit after a pass brings another SIGCHLD).
//!
//! Any child that hotrun waits for itself must count as tracked: today the leaders, the
//! `--build` command's leader and the guardian. std's `Command::spawn` reaps a child whose exec failed before it returns,
//! on the same thread, so it never races this.

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// Whether orphans are re-parented to hotrun: it is PID 1, or a child subreaper (set by
/// whoever started it; the attribute survives exec).
pub(crate) fn adopted() -> bool {
    if std::process::id() == 1 {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        let mut flag: libc::c_int = 0;
        // SAFETY: PR_GET_CHILD_SUBREAPER writes one int to the given address.
        let rc = unsafe {
            libc::prctl(
                libc::PR_GET_CHILD_SUBREAPER,
                &mut flag as *mut libc::c_int as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        if rc == 0 && flag != 0 {
            return true;
        }
    }
    false
}

/// Reaps every exited child of hotrun for which `tracked` is false; returns how many.
pub(crate) fn reap(tracked: impl Fn(Pid) -> bool) -> usize {
    let mut reaped = 0;
    loop {
        match peek_any() {
            // No exited child at all.
            None => return reaped,
            Some(pid) if !tracked(pid) && reap_one(pid) => reaped += 1,
            // The reap failed although waitid showed it exited (another waiter got it
            // first?): do not spin on it.
            Some(pid) if !tracked(pid) => return reaped,
            // A tracked one stands first in line: look past it.
            Some(_) => break,
        }
    }
    for pid in exited_children() {
        if !tracked(pid) && reap_one(pid) {
            reaped += 1;
        }
    }
    reaped
}

/// One exited child, left unreaped.
fn peek_any() -> Option<Pid> {
    // SAFETY: an all-zero siginfo_t is a valid value; waitid writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t.
    let rc = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid filled in the SIGCHLD fields of `info` (or left it zeroed).
    let pid = unsafe { info.si_pid() };
    (rc == 0 && pid != 0).then(|| Pid::from_raw(pid))
}

fn reap_one(pid: Pid) -> bool {
    !matches!(
        waitpid(pid, Some(WaitPidFlag::WNOHANG)),
        Ok(nix::sys::wait::WaitStatus::StillAlive) | Err(_)
    )
}

/// hotrun's children that are zombies, from `/proc`.
#[cfg(target_os = "linux")]
fn exited_children() -> Vec<Pid> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid …" where comm may hold spaces and parentheses.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            fields.next() == Some("Z") && fields.next() == Some(me.as_str())
        })
        .map(Pid::from_raw)
        .collect()
}

/// Without `/proc`, only what the peek finds first can be reaped; hotrun is not a
/// container's init on these systems.
#[cfg(not(target_os = "linux"))]
fn exited_children() -> Vec<Pid> {
    Vec::new()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    fn is_zombie(pid: Pid) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rfind(')')
                .is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z'))
        })
    }

    fn wait_zombie(pid: Pid) {
        let end = Instant::now() + Duration::from_secs(30);
        while !is_zombie(pid) {
            assert!(Instant::now() < end, "{pid} did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn orphans_are_reaped_and_a_tracked_leader_is_left_a_zombie() {
        let spawn = |code: &str| {
            let child = Command::new("sh")
                .args(["-c", &format!("exit {code}")])
                .spawn()
                .expect("sh");
            let pid = Pid::from_raw(child.id() as i32);
            // Reaped below, by `reap` and `process::reap`, as hotrun does.
            std::mem::forget(child);
            pid
        };
        // The leader first, so that the peek finds it before the orphan.
        let leader = spawn("3");
        let orphan = spawn("4");
        wait_zombie(leader);
        wait_zombie(orphan);
        // Other tests of this binary may have children of their own: only the orphan is
        // untracked here.
        let reaped = reap(|pid| pid != orphan);
        assert_eq!(reaped, 1);
        assert!(!is_zombie(orphan), "the orphan was not reaped");
        assert!(is_zombie(leader), "the leader was reaped early");
        assert_eq!(
            crate::process::leader_end(leader),
            Some(crate::event::ChildEnd::Exited(3))
        );
        crate::process::reap(leader);
        assert!(!is_zombie(leader));
    }
}
