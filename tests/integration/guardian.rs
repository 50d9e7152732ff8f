//! The guardian: a fork of hotrun that cleans up when hotrun is SIGKILLed (every
//! registered process group killed, the notify directory and unix socket files removed),
//! holding nothing of hotrun's but its pipe.

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use crate::harness::*;

/// hotrun's guardian (its child named `hotrun-guardian`).
fn guardian_of(hotrun: i32) -> ProcStat {
    let mut found = None;
    wait_until(
        "the guardian",
        || {
            found = children_of(hotrun)
                .into_iter()
                .find(|p| p.comm == "hotrun-guardian");
            found.is_some()
        },
        || format!("children: {:?}", children_of(hotrun)),
    );
    found.unwrap()
}

#[test]
fn the_guardian_is_a_fork_in_its_own_group_holding_only_its_pipe() {
    let sb = Sandbox::new();
    let path = sb.path("web.sock");
    let unix = format!("unix:{}", path.display());
    let mut h = start_fixture(&sb, &["--listen", "0", "--listen", &unix], &[]);
    let guardian = guardian_of(h.pid());
    // A fork, not a new exec of the binary: the same command line as hotrun.
    let cmdline = |pid: i32| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline(guardian.pid), cmdline(h.pid()));
    assert_ne!(guardian.state, 'Z', "{guardian:?}");
    assert_eq!(guardian.pgrp, guardian.pid, "not in its own process group");
    // 0-2 are /dev/null, and its pipe is all it holds: none of hotrun's sockets, output
    // pipes or files.
    let mut fds: Vec<(i32, PathBuf)> = std::fs::read_dir(format!("/proc/{}/fd", guardian.pid))
        .unwrap()
        .flatten()
        .map(|e| {
            let fd = e.file_name().to_str().unwrap().parse().unwrap();
            (fd, std::fs::read_link(e.path()).unwrap())
        })
        .collect();
    fds.sort();
    let null = Path::new("/dev/null");
    assert_eq!(fds.len(), 4, "{fds:?}");
    assert!(fds[..3].iter().all(|(_, t)| t == null), "{fds:?}");
    assert!(fds[3].1.to_string_lossy().starts_with("pipe:"), "{fds:?}");
    // Ctrl-C and friends are not for it, nor the SIGTERM of a `pkill hotrun`.
    let status = std::fs::read_to_string(format!("/proc/{}/status", guardian.pid)).unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    for sig in [
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGHUP,
        libc::SIGTSTP,
        libc::SIGTERM,
    ] {
        assert_ne!(ignored & (1 << (sig - 1)), 0, "signal {sig} not ignored");
    }
    // It goes when hotrun does, leaving the socket file to hotrun's own clean-up.
    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait().code(), Some(0), "{}", h.transcript());
    wait_gone(guardian.pid);
    assert!(!path.exists());
}

#[test]
fn sigkill_of_hotrun_removes_the_notify_directory_and_unix_socket_files() {
    let sb = Sandbox::new();
    let path = sb.path("web.sock");
    let unix = format!("unix:{}", path.display());
    let mut h = start_fixture(
        &sb,
        &["--listen", "0", "--listen", &unix, "--ready", "notify"],
        &["--listen-fd", "--notify", "--log-env", "--grandchild"],
    );
    h.expect(&["gen 1 ready"]);
    let log = sb.log();
    let child = pid_in(&log.wait_for(&["start gen=1"]));
    let grandchild = pid_in(&log.wait_for(&["grandchild gen=1"]));
    let env = log.wait_for(&["env gen=1"]);
    let notify_dir = Path::new(field(&env, "NOTIFY_SOCKET"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(notify_dir.is_dir(), "{env}");
    assert!(path.exists());
    h.signal(Signal::SIGKILL);
    wait_gone(child);
    wait_gone(grandchild);
    wait_until(
        "the notify directory and the socket file to be removed",
        || !notify_dir.exists() && !path.exists(),
        || format!("{} {}", notify_dir.display(), path.display()),
    );
}

#[test]
fn sigterm_to_hotrun_and_its_guardian_at_once_is_a_normal_stop() {
    // `pkill hotrun`, `kill $(pgrep -f hotrun)`, systemd stopping the control group: every
    // process gets SIGTERM, the guardian included.
    let sb = Sandbox::new();
    let events = sb.path("events.jsonl");
    let mut h = start_fixture(
        &sb,
        &["--events", events.to_str().unwrap()],
        &["--grandchild"],
    );
    let log = sb.log();
    let child = pid_in(&log.wait_for(&["start gen=1"]));
    let grandchild = pid_in(&log.wait_for(&["grandchild gen=1"]));
    let guardian = guardian_of(h.pid());
    for pid in [h.pid(), guardian.pid] {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    }
    // The child exits 0 on SIGTERM: hotrun's status is the child's.
    assert_eq!(h.wait().code(), Some(0), "{}", h.transcript());
    for pid in [child, grandchild, guardian.pid] {
        wait_gone(pid);
    }
    assert_eq!(h.count(&["guardian"]), 0, "{}", h.transcript());
    let told = read_events(&events);
    assert!(
        told.iter().all(|e| e["event"] != "error"),
        "an error event: {told:#?}"
    );
    assert_eq!(
        told.last().map(|e| &e["event"]),
        Some(&"hotrun_exit".into()),
        "{told:#?}"
    );
}
