//! What the threads of a process wait in, from /proc (Linux): whether a wait can end
//! without an event (a timer), and whether a process is idle — every thread asleep, nothing
//! pending — which is how a test knows that hotrun has handled what was sent to it even
//! when the handling shows nothing (an event it ignored, a build it did not restart for).

use std::fs;

use crate::harness::wait_until;

/// The numbers in /proc/PID/task/TID/syscall: the call and its six arguments, when
/// the thread is blocked in a system call.
fn blocked_in(pid: i32, tid: i32) -> Option<(i64, [u64; 6])> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    let mut fields = text.split_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    if nr < 0 {
        return None;
    }
    let mut args = [0u64; 6];
    for arg in &mut args {
        *arg = u64::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()?;
    }
    Some((nr, args))
}

fn threads(pid: i32) -> Vec<i32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn thread_name(pid: i32, tid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The receive timeout of a socket another process holds (pidfd_getfd, Linux 5.6).
fn receive_timeout(pid: i32, fd: i32) -> Option<(i64, i64)> {
    // SAFETY: plain system calls on descriptors this function owns and closes.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let ours = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
        let err = std::io::Error::last_os_error();
        libc::close(pidfd);
        assert!(ours >= 0, "pidfd_getfd of pid {pid} fd {fd}: {err}");
        let mut tv: libc::timeval = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
        let rc = libc::getsockopt(
            ours,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw mut tv).cast(),
            &mut len,
        );
        libc::close(ours);
        (rc == 0).then_some((tv.tv_sec, tv.tv_usec as i64))
    }
}

/// What would end this wait without an event, if anything.
fn timer_in(pid: i32, nr: i64, a: [u64; 6]) -> Option<String> {
    const FUTEX_CMD: u64 = !(libc::FUTEX_PRIVATE_FLAG | libc::FUTEX_CLOCK_REALTIME) as u64;
    let timed_futex = |op: u64, timeout: u64| {
        let cmd = op & FUTEX_CMD;
        (cmd == libc::FUTEX_WAIT as u64 || cmd == libc::FUTEX_WAIT_BITSET as u64) && timeout != 0
    };
    #[cfg(target_arch = "x86_64")]
    {
        if nr == libc::SYS_nanosleep {
            return Some("nanosleep".into());
        }
        if nr == libc::SYS_epoll_wait && (a[3] as i32) >= 0 {
            return Some(format!("epoll_wait with a {} ms timeout", a[3] as i32));
        }
        if nr == libc::SYS_poll && (a[2] as i32) >= 0 {
            return Some(format!("poll with a {} ms timeout", a[2] as i32));
        }
        if nr == libc::SYS_select && a[4] != 0 {
            return Some("select with a timeout".into());
        }
    }
    if nr == libc::SYS_clock_nanosleep {
        return Some("clock_nanosleep".into());
    }
    if nr == libc::SYS_futex && timed_futex(a[1], a[3]) {
        return Some("a futex wait with a timeout".into());
    }
    if nr == libc::SYS_epoll_pwait && (a[3] as i32) >= 0 {
        return Some(format!("epoll_pwait with a {} ms timeout", a[3] as i32));
    }
    if (nr == libc::SYS_ppoll && a[2] != 0) || (nr == libc::SYS_pselect6 && a[4] != 0) {
        return Some("ppoll/pselect with a timeout".into());
    }
    let receives = [
        libc::SYS_read,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_accept4,
    ];
    if receives.contains(&nr) {
        let fd = a[0] as i32;
        let is_socket = fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
        if is_socket
            && let Some((s, us)) = receive_timeout(pid, fd)
            && (s != 0 || us != 0)
        {
            return Some(format!("a receive on fd {fd} with a {s}.{us:06} s timeout"));
        }
    }
    None
}

/// Waits until every thread of `pids` is blocked, then checks that no timer can end
/// any of those waits. A wait with a timer that a moment of work left behind (a
/// deadline about to pass) is looked at again; one that stays fails.
pub fn assert_no_timed_waits(pids: &[i32]) {
    let found = std::cell::RefCell::new(Vec::new());
    wait_until(
        "every thread to wait without a timer",
        || {
            let mut found = found.borrow_mut();
            found.clear();
            for &pid in pids {
                for tid in threads(pid) {
                    let Some((nr, args)) = blocked_in(pid, tid) else {
                        found.push(format!("pid {pid} thread {tid} is running"));
                        continue;
                    };
                    if let Some(timer) = timer_in(pid, nr, args) {
                        found.push(format!(
                            "pid {pid} thread {tid} ({}) waits in {timer}",
                            thread_name(pid, tid)
                        ));
                    }
                }
            }
            found.is_empty()
        },
        || found.borrow().join("\n"),
    );
}

/// hotrun's guardian: its child running the same executable.
pub fn guardian_of(pid: i32) -> Option<i32> {
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let p: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let ppid: i32 = stat[stat.rfind(')')? + 2..]
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == pid && fs::read_link(format!("/proc/{p}/exe")).ok()? == exe).then_some(p)
    })
}

/// One thread as /proc shows it: its state, how often it was switched out (voluntarily
/// and not), the system call it sleeps in, and its pending signals.
#[derive(Debug, PartialEq, Eq)]
struct ThreadState {
    tid: i32,
    state: char,
    switches: (u64, u64),
    syscall: Option<(i64, [u64; 6])>,
    pending: u64,
}

fn thread_states(pid: i32) -> Option<Vec<ThreadState>> {
    let hex = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    let shared = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let shared_pending = hex(&shared, "ShdPnd:")?;
    let mut tids = threads(pid);
    tids.sort_unstable();
    let mut out = Vec::new();
    for tid in tids {
        let dir = format!("/proc/{pid}/task/{tid}");
        let stat = fs::read_to_string(format!("{dir}/stat")).ok()?;
        let state = stat[stat.rfind(')')? + 1..].trim_start().chars().next()?;
        let status = fs::read_to_string(format!("{dir}/status")).ok()?;
        let count = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        out.push(ThreadState {
            tid,
            state,
            switches: (
                count("voluntary_ctxt_switches:")?,
                count("nonvoluntary_ctxt_switches:")?,
            ),
            syscall: blocked_in(pid, tid),
            pending: hex(&status, "SigPnd:")? | shared_pending,
        });
    }
    Some(out)
}

/// Whether idleness may include a thread waiting with a timer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Timers {
    /// Asleep is enough: a deadline may be set (a grace period, say).
    Allowed,
    /// Nothing scheduled either: no wait that a timer ends (no retry, no debounce).
    None,
}

/// Waits until process `pid` is idle: two looks at every one of its threads find each
/// asleep in a system call (not a write, which may wait for a reader; with
/// `Timers::None`, not a wait a timer ends), with no signal pending, and not switched in
/// once between the looks. There was then an instant at which nothing in it could run
/// until something from outside woke it, so whatever reached it before the first look (a
/// signal sent, a file event, a child's exit) has been handled.
pub fn wait_idle(pid: i32, timers: Timers, context: &dyn Fn() -> String) {
    let mut last: Option<Vec<ThreadState>> = None;
    let seen = std::cell::RefCell::new(String::new());
    wait_until(
        &format!("pid {pid} to be idle (every thread asleep, nothing pending)"),
        || {
            let now = thread_states(pid);
            *seen.borrow_mut() = format!("{now:?}");
            let asleep = now.as_ref().is_some_and(|threads| {
                threads.iter().all(|t| {
                    t.state == 'S'
                        && t.pending == 0
                        && t.syscall.is_some_and(|(nr, args)| {
                            nr != libc::SYS_write
                                && nr != libc::SYS_writev
                                && (timers == Timers::Allowed || timer_in(pid, nr, args).is_none())
                        })
                })
            });
            let idle = asleep && last == now;
            last = now;
            idle
        },
        || format!("threads: {}\n{}", seen.borrow(), context()),
    );
}
