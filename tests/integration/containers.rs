//! hotrun as a container's PID 1 (in a new PID namespace) and as a child subreaper:
//! every orphan re-parented to it is reaped, a generation's leader is not reaped before
//! its group is gone, and the exit status is what the runtime sees.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::*;

/// A start script that double-forks a short-lived orphan, then execs the fixture (what
/// `app.sh` does in the issue: `( sleep 1 & )`, then exec the server).
fn orphaning_script(sb: &Sandbox, orphan_secs: &str, fixture_args: &str) -> PathBuf {
    let fixture = sb.install_fixture("server");
    let log = sb.log();
    let script = sb.path("app.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             ( sleep {orphan_secs} & echo \"orphan gen=$HOTRUN_GEN pid=$!\" >> '{log}' )\n\
             exec '{fixture}' --log '{log}' {fixture_args}\n",
            log = log.path.display(),
            fixture = fixture.display(),
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The command that makes hotrun PID 1 of a new PID namespace (with /proc to match), or
/// why this machine cannot.
fn unshare() -> Result<Vec<&'static str>, String> {
    let mut tries = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        tries.push(vec!["unshare", "--pid", "--fork", "--mount-proc"]);
    }
    // Unprivileged: inside a user namespace of its own.
    tries.push(vec![
        "unshare",
        "--user",
        "--map-root-user",
        "--pid",
        "--fork",
        "--mount-proc",
    ]);
    let mut why = Vec::new();
    for args in tries {
        match Command::new(args[0]).args(&args[1..]).arg("true").output() {
            Ok(out) if out.status.success() => return Ok(args),
            Ok(out) => why.push(format!(
                "`{} true`: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(err) => why.push(format!("`{}`: {err}", args[0])),
        }
    }
    Err(format!(
        "cannot create a PID namespace here ({})",
        why.join("; ")
    ))
}

/// hotrun running as PID 1 of its own PID namespace; killing it ends the namespace.
struct Pid1 {
    h: Hotrun,
    /// hotrun's pid as seen from here.
    pid: i32,
}

impl Pid1 {
    /// `None` (after `skip`) where no PID namespace can be made.
    fn start(hotrun_args: &[&OsStr]) -> Option<Pid1> {
        let unshare = match unshare() {
            Ok(unshare) => unshare,
            Err(why) => {
                runs_here(Some(why));
                return None;
            }
        };
        let mut args: Vec<&OsStr> = unshare[1..].iter().map(OsStr::new).collect();
        args.push(OsStr::new(hotrun_exe()));
        args.extend(hotrun_args);
        let h = Hotrun::start_program(unshare[0], &args, true, |_| {});
        let mut pid = None;
        wait_until(
            "hotrun to start in the new namespace",
            || {
                pid = children_of(h.pid())
                    .into_iter()
                    .find(|p| p.comm == "hotrun")
                    .map(|p| p.pid);
                pid.is_some()
            },
            || h.transcript(),
        );
        let pid = pid.unwrap();
        // It really is the namespace's init.
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
        assert!(nspid.ends_with("\t1"), "{nspid}");
        Some(Pid1 { h, pid })
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid), signal).unwrap();
    }
}

impl Drop for Pid1 {
    fn drop(&mut self) {
        // A failed test: the namespace goes with its init.
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
    }
}

/// hotrun's children that are zombies, and those that are orphans it adopted (`sleep`).
fn zombies_and_orphans(hotrun: i32) -> (Vec<ProcStat>, Vec<ProcStat>) {
    let children = children_of(hotrun);
    let zombies = children
        .iter()
        .filter(|p| p.state == 'Z')
        .cloned()
        .collect();
    let orphans = children.into_iter().filter(|p| p.comm == "sleep").collect();
    (zombies, orphans)
}

#[test]
fn as_pid_1_every_orphan_is_reaped_across_100_restarts_and_sigterm_gives_the_status() {
    let sb = Sandbox::new();
    let script = orphaning_script(&sb, "0.1", "--cleanup-code 42");
    let Some(init) = Pid1::start(&["--".as_ref(), script.as_os_str()]) else {
        return;
    };
    let log = sb.log();
    log.wait_for(&["start gen=1 "]);
    for generation in 2..=101 {
        // SIGHUP restarts, as PID 1 too; each restart is waited for.
        init.signal(Signal::SIGHUP);
        log.wait_for(&["start", &format!("gen={generation} ")]);
    }
    assert_eq!(log.count(&["orphan gen="]), 101);
    // Every orphan has exited and none is left a zombie: checked from outside.
    wait_until(
        "no zombie and no orphan left among hotrun's children",
        || {
            let (zombies, orphans) = zombies_and_orphans(init.pid);
            zombies.is_empty() && orphans.is_empty()
        },
        || {
            let (zombies, orphans) = zombies_and_orphans(init.pid);
            format!("zombies {zombies:?}\norphans {orphans:?}")
        },
    );
    // What is left, once generation 100 is done stopping: the guardian and generation 101.
    let left = || {
        let mut left: Vec<String> = children_of(init.pid).into_iter().map(|p| p.comm).collect();
        left.sort();
        left
    };
    wait_until(
        "only the guardian and generation 101 left",
        || left() == ["hotrun-guardian", "server"],
        || format!("{:?}\n{}", left(), init.h.transcript()),
    );
    init.signal(Signal::SIGTERM);
    log.wait_for(&["cleanup gen=101"]);
    let mut init = init;
    let status = init.h.wait();
    assert_eq!(status.code(), Some(42), "{}", init.h.transcript());
}

#[test]
fn as_pid_1_a_child_killed_by_the_forwarded_signal_gives_128_plus_n() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let sb = Sandbox::new();
        let script = orphaning_script(&sb, "0", "--die-by-signal");
        let Some(init) = Pid1::start(&["--".as_ref(), script.as_os_str()]) else {
            return;
        };
        sb.log().wait_for(&["start gen=1 "]);
        init.signal(signal);
        sb.log().wait_for(&["dying gen=1"]);
        let mut init = init;
        let status = init.h.wait();
        // PID 1 cannot die of its own signal: the runtime sees 128+N.
        assert_eq!(
            status.code(),
            Some(128 + signal as i32),
            "{signal}: {status:?}\n{}",
            init.h.transcript()
        );
    }
}

/// When process `pid` started (clock ticks after boot), while it exists.
fn started(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Waits until `pid` has exited and been reaped: no such process any more (or another one
/// under the same number). Not merely "no longer hotrun's child": right after the shell
/// that forked it writes its pid, it may not be an orphan yet.
fn wait_reaped(pid: i32, h: &Hotrun) {
    let born = started(pid);
    wait_until(
        &format!("orphan {pid} to exit and be reaped"),
        || born.is_none() || started(pid) != born,
        || format!("{:?}\n{}", proc_stat(pid), h.transcript()),
    );
}

/// Waits until none of hotrun's children is a zombie (an orphan that just exited is one
/// until hotrun reaps it; one that stays one fails).
fn wait_no_zombie(hotrun: i32) {
    wait_until(
        "no zombie among hotrun's children",
        || zombies_and_orphans(hotrun).0.is_empty(),
        || format!("{:?}", zombies_and_orphans(hotrun).0),
    );
}

/// Makes hotrun a child subreaper (the attribute survives exec), as a process manager
/// above it may.
fn as_subreaper(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn as_a_subreaper_orphans_are_reaped_while_a_leader_waits_unreaped_for_its_group() {
    let sb = Sandbox::new();
    let script = orphaning_script(&sb, "0.05", "--stubborn-grandchild");
    let log = sb.log();
    let mut h = Hotrun::start_with(
        &[
            "--grace".as_ref(),
            "1h".as_ref(),
            "--".as_ref(),
            script.as_os_str(),
        ],
        as_subreaper,
    );
    let hotrun = h.pid();
    let leader = pid_in(&log.wait_for(&["start gen=1 "]));
    let grandchild = pid_in(&log.wait_for(&["grandchild gen=1 "]));
    h.signal(Signal::SIGHUP);
    log.wait_for(&["start gen=2 "]);
    // gen 1's leader exits on SIGTERM; its grandchild ignores it and keeps the group
    // alive (the grace period is an hour), so the leader must stay an unreaped zombie.
    log.wait_for(&["cleanup gen=1"]);
    let state = |pid: i32| proc_stat(pid).map(|p| (p.state, p.ppid));
    wait_until(
        "gen 1's leader to be a zombie",
        || state(leader) == Some(('Z', hotrun)),
        || format!("{:?}", proc_stat(leader)),
    );
    // Meanwhile the orphans of both start scripts exit and are reaped.
    for generation in [1, 2] {
        let orphan = pid_in(&log.wait_for(&[&format!("orphan gen={generation} ")]));
        wait_reaped(orphan, &h);
    }
    // The leader is still there, unreaped: its pgid cannot be recycled.
    assert_eq!(state(leader), Some(('Z', hotrun)), "reaped early");
    // The grandchild was re-parented to hotrun when its parent died.
    assert_eq!(state(grandchild).map(|s| s.1), Some(hotrun));
    // Once the last member is gone (an orphan too, reaped by hotrun), the leader goes.
    kill(Pid::from_raw(grandchild), Signal::SIGKILL).unwrap();
    wait_until(
        "the grandchild and gen 1's leader to be reaped",
        || state(grandchild).is_none() && state(leader).is_none(),
        || format!("{:?} {:?}", proc_stat(grandchild), proc_stat(leader)),
    );
    wait_no_zombie(hotrun);
    // gen 2 has a stubborn grandchild too: the second SIGTERM kills at once.
    h.signal(Signal::SIGTERM);
    h.expect(&["got SIGTERM"]);
    h.signal(Signal::SIGTERM);
    h.wait();
}

#[test]
fn as_a_subreaper_a_stopped_builds_leader_waits_unreaped_for_its_group() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let src = sb.path("src");
    fs::create_dir(&src).unwrap();
    let builds = Log {
        path: sb.path("builds"),
    };
    // Does nothing until src/v exists; then leaves an orphan, a job that ignores its stop
    // signal, and waits for a gate that never opens.
    let build = sb.path("build.sh");
    fs::write(
        &build,
        format!(
            "#!/bin/sh\ncd '{dir}'\ntest -e src/v || exit 0\n\
             ( sleep 0.05 & echo \"orphan pid=$!\" >> builds )\n\
             ( trap '' INT TERM; echo 'straggler ignores INT TERM' >> builds; exec sleep 1000 ) &\n\
             echo \"straggler pid=$!\" >> builds\n\
             echo \"building pid=$$\" >> builds\n\
             while ! test -e gate; do sleep 0.01; done\n",
            dir = sb.path("").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&build, fs::Permissions::from_mode(0o755)).unwrap();
    let mut h = Hotrun::start_with(
        &[
            "--build".as_ref(),
            build.as_os_str(),
            "--watch".as_ref(),
            src.as_os_str(),
            "--grace".as_ref(),
            "1h".as_ref(),
            "--".as_ref(),
            app.as_os_str(),
            "--log".as_ref(),
            log.arg(),
        ],
        as_subreaper,
    );
    let hotrun = h.pid();
    h.expect(&["gen 1 started"]);
    fs::write(src.join("v"), "1").unwrap();
    let script = pid_in(&builds.wait_for(&["building"]));
    // The build's leader (`sh -c`, whether or not it execs the script) leads its group.
    let shell = proc_stat(script).expect("the build runs").pgrp;
    let straggler = pid_in(&builds.wait_for(&["straggler pid="]));
    // Not before it ignores the stop signal.
    builds.wait_for(&["straggler ignores INT TERM"]);
    let orphan = pid_in(&builds.wait_for(&["orphan"]));
    // A change during the build stops it: the shell exits, its straggler lives on.
    fs::write(src.join("v"), "2").unwrap();
    h.expect(&["src/v changed during it; building again"]);
    let state = |pid: i32| proc_stat(pid).map(|p| (p.state, p.ppid));
    wait_until(
        "the stopped build's shell to be a zombie",
        || state(shell) == Some(('Z', hotrun)),
        || format!("{:?}\n{}", proc_stat(shell), h.transcript()),
    );
    // The orphan the build left is reaped meanwhile; the shell is not (its group lives).
    wait_reaped(orphan, &h);
    // The straggler is re-parented to hotrun once the shell that forked it is gone (the
    // script, which may be the leader's child and exit a moment after it).
    wait_until(
        "the straggler to be re-parented to hotrun",
        || state(straggler).map(|s| s.1) == Some(hotrun),
        || format!("{:?}\n{}", proc_stat(straggler), h.transcript()),
    );
    assert_eq!(state(shell), Some(('Z', hotrun)), "reaped early");
    assert_eq!(builds.count(&["building"]), 1, "built again too early");
    // Once the straggler is gone, the shell is reaped and the build runs again.
    kill(Pid::from_raw(straggler), Signal::SIGKILL).unwrap();
    wait_until(
        "the straggler and the stopped build's shell to be reaped",
        || state(straggler).is_none() && state(shell).is_none(),
        || format!("{:?} {:?}", proc_stat(straggler), proc_stat(shell)),
    );
    wait_until(
        "the build to run again",
        || builds.count(&["building"]) == 2,
        || h.transcript(),
    );
    wait_no_zombie(hotrun);
    // The new build has a stubborn job too: the second SIGTERM kills at once.
    h.signal(Signal::SIGTERM);
    h.expect(&["got SIGTERM"]);
    h.signal(Signal::SIGTERM);
    h.wait();
}
