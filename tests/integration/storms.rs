//! Storms and faults: signal bursts, rapid rebuilds, triggers at awkward moments, broken
//! binaries and broken outputs. After each, exactly the expected processes are alive.

use std::fs;
#[cfg(target_os = "linux")]
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::sys::signal::Signal;
#[cfg(target_os = "linux")]
use nix::{sys::signal::kill, unistd::Pid};

use crate::harness::*;

/// The pids of live (non-zombie) processes started with `--tag TAG`.
#[cfg(target_os = "linux")]
fn tagged(tag: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_fixture = words
            .windows(2)
            .any(|w| w[0] == b"--tag" && w[1] == tag.as_bytes())
            && !words.first().is_some_and(|w| w.ends_with(b"hotrun"));
        if is_fixture && !is_gone(pid) {
            found.push(pid);
        }
    }
    found
}

/// hotrun's children that are zombies (hotrun failed to reap them).
#[cfg(target_os = "linux")]
fn zombie_children(hotrun: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(hotrun) && state == Some("Z") {
            found.push(pid);
        }
    }
    found
}

/// Waits until the restarts have settled: one tagged fixture alive, and the newest
/// generation's start is the last start hotrun reported with nothing queued after it.
#[cfg(target_os = "linux")]
fn settle(h: &Hotrun, tag: &str) -> i32 {
    let mut last = Vec::new();
    wait_until(
        "exactly one generation alive and nothing queued",
        || {
            last = tagged(tag);
            let transcript = h.transcript();
            let tail: Vec<&str> = transcript
                .lines()
                .rev()
                .take_while(|l| !l.contains(" started in "))
                .collect();
            let queued = tail.iter().any(|l| l.contains("restart requested"));
            let old_gone = transcript
                .lines()
                .filter(|l| l.contains(" started in "))
                .count()
                == transcript
                    .lines()
                    .filter(|l| l.contains(" stopped "))
                    .count()
                    + 1;
            last.len() == 1 && !queued && old_gone
        },
        || format!("alive: {:?}\n{}", tagged(tag), h.transcript()),
    );
    last[0]
}

fn start(sb: &Sandbox, tag: &str, hotrun_args: &[&str], fixture_args: &[&str]) -> Hotrun {
    let mut with_tag = vec!["--tag", tag];
    with_tag.extend_from_slice(fixture_args);
    start_fixture(sb, hotrun_args, &with_tag)
}

#[cfg(target_os = "linux")]
fn tag_of(sb: &Sandbox) -> String {
    sb.path("").display().to_string()
}

#[cfg(target_os = "linux")]
#[test]
fn a_burst_of_1000_sighups_ends_with_one_generation_and_no_zombie() {
    let sb = Sandbox::new();
    let tag = tag_of(&sb);
    let events = sb.path("events");
    let mut h = start(
        &sb,
        &tag,
        &["--quiet", "--events", events.to_str().unwrap()],
        &["--grandchild"],
    );
    // --quiet: restarts are counted in the event stream instead of status lines.
    for _ in 0..1000 {
        kill(Pid::from_raw(h.pid()), Signal::SIGHUP).unwrap();
    }
    let mut alive = Vec::new();
    wait_until(
        "one generation alive, every spawned one but the last exited",
        || {
            let text = fs::read_to_string(&events).unwrap_or_default();
            let spawned = text.matches("\"event\":\"spawned\"").count();
            let exited = text.matches("\"event\":\"exited\"").count();
            alive = tagged(&tag);
            spawned > 1 && exited + 1 == spawned && alive.len() == 1
        },
        || {
            format!(
                "alive: {:?}\n{}",
                tagged(&tag),
                fs::read_to_string(&events).unwrap_or_default()
            )
        },
    );
    assert!(
        zombie_children(h.pid()).is_empty(),
        "zombies: {:?}",
        zombie_children(h.pid())
    );
    // Every grandchild but the current generation's is gone (once the current one has
    // started its own: it logs it).
    let last = fs::read_to_string(&events)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"event\":\"spawned\""))
        .count();
    sb.log().wait_for(&["grandchild", &format!("gen={last} ")]);
    let grandchildren: Vec<i32> = sb
        .log()
        .lines()
        .iter()
        .filter(|l| l.starts_with("grandchild "))
        .map(|l| pid_in(l))
        .collect();
    let alive_grandchildren = grandchildren.iter().filter(|p| !is_gone(**p)).count();
    assert_eq!(alive_grandchildren, 1, "{grandchildren:?}");
    h.signal(Signal::SIGTERM);
    h.wait();
}

#[cfg(target_os = "linux")]
#[test]
fn two_hundred_rebuilds_in_a_row_end_with_the_last_build_running() {
    let sb = Sandbox::new();
    let tag = tag_of(&sb);
    let h = start(&sb, &tag, &[], &[]);
    let app = sb.path("app");
    for _ in 0..200 {
        replace_by_rename(&fixture_exe(), &app);
    }
    let last_build = fs::metadata(&app).unwrap().ino();
    // Events of the last renames may still be on their way: wait for the end state.
    let mut running = 0;
    wait_until(
        "the last build to be the one running, alone",
        || {
            let pid = settle(&h, &tag);
            running = fs::metadata(format!("/proc/{pid}/exe"))
                .map(|m| m.ino())
                .unwrap_or(0);
            running == last_build
        },
        || format!("last build {last_build}\n{}", h.transcript()),
    );
    assert!(zombie_children(h.pid()).is_empty());
}

/// The fixture's `--cleanup-gate` for every generation: generation N's cleanup lasts until
/// the test creates `cleanup-N` in the sandbox (`cleanup_done(sb, N)`).
fn cleanup_gate(sb: &Sandbox) -> String {
    sb.path("cleanup-{gen}").display().to_string()
}

fn cleanup_done(sb: &Sandbox, generation: u32) {
    touch(&sb.path(&format!("cleanup-{generation}")));
}

#[test]
fn a_trigger_during_shutdown_starts_nothing() {
    let sb = Sandbox::new();
    // The child's cleanup lasts until the test says so: the triggers below reach hotrun
    // while it is shutting down, however fast or slow the machine is.
    let gate = cleanup_gate(&sb);
    let mut h = start(&sb, "t", &["--grace", "1h"], &["--cleanup-gate", &gate]);
    h.signal(Signal::SIGTERM);
    h.expect(&["got SIGTERM"]);
    sb.log().wait_for(&["gate gen=1 at=cleanup"]);
    h.signal(Signal::SIGHUP);
    replace_by_rename(&fixture_exe(), &sb.path("app"));
    // Both have been handled (hotrun is asleep again, the grace deadline set) while the
    // child still cleans up.
    #[cfg(target_os = "linux")]
    h.wait_asleep();
    assert!(h.running(), "{}", h.transcript());
    cleanup_done(&sb, 1);
    assert_eq!(h.wait().code(), Some(0));
    assert_eq!(h.count(&["gen 2"]), 0, "{}", h.transcript());
    assert_eq!(sb.log().count(&["start gen="]), 1);
}

#[test]
fn a_shutdown_during_a_restart_stops_both_generations() {
    let sb = Sandbox::new();
    let log = sb.log();
    // Each generation's cleanup lasts until the test says so: the shutdown comes while
    // gen 1 is still stopping.
    let gate = cleanup_gate(&sb);
    let mut h = start(&sb, "t", &["--grace", "1h"], &["--cleanup-gate", &gate]);
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 2 started"]);
    h.expect(&["gen 1: sent SIGTERM"]);
    log.wait_for(&["start gen=2"]);
    log.wait_for(&["gate gen=1 at=cleanup"]);
    h.signal(Signal::SIGINT);
    h.expect(&["got SIGINT"]);
    // The new generation gets the signal as it came.
    log.wait_for(&["signal gen=2 sig=SIGINT"]);
    cleanup_done(&sb, 2);
    h.expect(&["gen 2 stopped cleanly"]);
    // hotrun waits for gen 1 too, which is still cleaning up.
    let gen1 = pid_in(&log.wait_for(&["start gen=1"]));
    assert!(!is_gone(gen1));
    assert!(h.running(), "{}", h.transcript());
    cleanup_done(&sb, 1);
    let status = h.wait();
    log.wait_for(&["cleanup gen=1"]);
    assert_eq!(status.code(), Some(0), "{}", h.transcript());
    for line in log.lines().iter().filter(|l| l.starts_with("start ")) {
        assert!(is_gone(pid_in(line)), "{line} still alive");
    }
}

#[test]
fn sigint_while_waiting_for_readiness_stops_both() {
    let sb = Sandbox::new();
    let log = sb.log();
    // Generation 1 is ready at once; generation 2 stays at its gate before READY=1, which
    // the test never opens.
    touch(&sb.path("ready-1"));
    let gate = sb.path("ready-{gen}");
    let mut h = start_fixture(
        &sb,
        &["--listen", "0", "--ready", "notify"],
        &[
            "--listen-fd",
            "--notify",
            "--ready-gate",
            gate.to_str().unwrap(),
        ],
    );
    h.expect(&["gen 1 ready"]);
    h.signal(Signal::SIGHUP);
    let started = h.expect(&["gen 2 started"]);
    let gen2: i32 = started
        .rsplit("pid ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    log.wait_for(&["gate gen=2 at=ready"]);
    h.signal(Signal::SIGINT);
    h.wait();
    assert_eq!(h.count(&["gen 2 ready"]), 0, "{}", h.transcript());
    // Both got the signal as it came.
    log.wait_for(&["signal gen=1 sig=SIGINT"]);
    log.wait_for(&["signal gen=2 sig=SIGINT"]);
    assert_eq!(h.count(&["gen 2: sent SIGINT"]), 1, "{}", h.transcript());
    assert!(is_gone(gen2));
    for line in log.lines().iter().filter(|l| l.starts_with("start ")) {
        assert!(is_gone(pid_in(line)), "{line} still alive");
    }
}

#[test]
fn sighup_while_the_old_generation_is_in_its_grace_period_follows_once_it_is_gone() {
    let sb = Sandbox::new();
    let log = sb.log();
    // Each generation's cleanup lasts until the test says so (well within the grace
    // period): the second SIGHUP comes while gen 1 is still stopping.
    let gate = cleanup_gate(&sb);
    let mut h = start(&sb, "t", &["--grace", "1h"], &["--cleanup-gate", &gate]);
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 2 started"]);
    // Its handlers are in place once it logged its start (it is stopped below).
    log.wait_for(&["start gen=2"]);
    log.wait_for(&["gate gen=1 at=cleanup"]);
    h.signal(Signal::SIGHUP);
    h.expect(&["restart requested (SIGHUP) during a restart"]);
    // Nothing follows while gen 1 is still there.
    #[cfg(target_os = "linux")]
    h.wait_asleep();
    assert_eq!(h.count(&["gen 3"]), 0, "{}", h.transcript());
    cleanup_done(&sb, 1);
    h.expect(&["gen 1 stopped cleanly"]);
    h.expect(&["gen 3 started", "(SIGHUP)"]);
    log.wait_for(&["gate gen=2 at=cleanup"]);
    cleanup_done(&sb, 2);
    h.expect(&["gen 2 stopped cleanly"]);
    log.wait_for(&["start gen=3"]);
    cleanup_done(&sb, 3);
    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait().code(), Some(0), "{}", h.transcript());
}

#[test]
fn a_binary_deleted_for_good_leaves_the_old_generation_running_and_says_so() {
    let sb = Sandbox::new();
    let mut h = start(&sb, "t", &[], &[]);
    let pid = pid_in(&sb.log().wait_for(&["start gen=1"]));
    fs::remove_file(sb.path("app")).unwrap();
    h.expect(&["the command's executable is gone; what runs keeps running"]);
    assert!(!is_gone(pid));
    assert_eq!(h.count(&["gen 2"]), 0);
}

// Linux: that each file was looked at is seen in /proc (hotrun idle after each).
#[cfg(target_os = "linux")]
#[test]
fn non_executable_and_empty_files_are_not_started() {
    let sb = Sandbox::new();
    let mut h = start(&sb, "t", &[], &[]);
    let app = sb.path("app");
    let tmp = sb.path("tmp");
    // A non-executable build (a linker before its chmod), then an empty executable one:
    // each is put in place and looked at — hotrun is idle again after it, nothing
    // scheduled (no spawn being retried) — and neither is started.
    for (content, mode) in [(&b"\x7fELF not really"[..], 0o644), (&b""[..], 0o755)] {
        fs::write(&tmp, content).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).unwrap();
        fs::rename(&tmp, &app).unwrap();
        h.wait_idle();
        assert_eq!(h.count(&["gen 2"]), 0, "{}", h.transcript());
        assert_eq!(h.count(&["cannot run"]), 0, "{}", h.transcript());
    }
    // The next real build is.
    replace_by_rename(&fixture_exe(), &app);
    h.expect(&["gen 2 started", "(binary changed)"]);
    assert_eq!(h.count(&["cannot run"]), 0, "{}", h.transcript());
}

#[test]
fn a_truncated_binary_that_crashes_at_start_does_not_spin() {
    let sb = Sandbox::new();
    let events = sb.path("events.jsonl");
    let mut h = start(
        &sb,
        "t",
        &["--on-exit", "restart", "--events", events.to_str().unwrap()],
        &[],
    );
    let app = sb.path("app");
    let data = fs::read(fixture_exe()).unwrap();
    let tmp = sb.path("tmp");
    fs::write(&tmp, &data[..1000]).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&tmp, &app).unwrap();
    // It starts (exec succeeds), dies of SIGSEGV, and is retried with a growing delay.
    h.expect(&["gen 2 started", "(binary changed)"]);
    h.expect(&["gen 2 killed by SIGSEGV"]);
    assert_backoff(&events, 3);
    // A good build ends the crash loop.
    replace_by_rename(&fixture_exe(), &app);
    h.expect(&["started", "(binary changed)"]);
}

#[test]
fn events_to_a_full_disk_are_reported_once_and_supervision_goes_on() {
    if !runs_here((!Path::new("/dev/full").exists()).then(|| "/dev/full is missing".into())) {
        return;
    }
    let sb = Sandbox::new();
    let mut h = start(&sb, "t", &["--events", "/dev/full"], &[]);
    h.expect(&["cannot write --events any more", "hotrun goes on"]);
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 2 started"]);
    // Its handlers are in place once it logged its start.
    sb.log().wait_for(&["start gen=2"]);
    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait().code(), Some(0));
    assert_eq!(h.count(&["cannot write --events"]), 1);
}

#[test]
fn events_to_a_closed_pipe_are_reported_once_and_supervision_goes_on() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    // --events - with stdout a pipe nobody reads any more.
    let mut h = Hotrun::start_with(
        &[
            "--events".as_ref(),
            "-".as_ref(),
            "--".as_ref(),
            app.as_os_str(),
            "--log".as_ref(),
            log.arg(),
        ],
        |cmd| {
            let (reader, writer) = std::io::pipe().unwrap();
            drop(reader);
            cmd.stdout(writer);
        },
    );
    h.expect(&["cannot write --events any more"]);
    log.wait_for(&["start gen=1"]);
    h.signal(Signal::SIGHUP);
    log.wait_for(&["start gen=2"]);
    h.signal(Signal::SIGTERM);
    h.wait();
}

#[test]
fn a_group_of_many_processes_is_stopped_whole() {
    let sb = Sandbox::new();
    let mut h = start(&sb, "t", &[], &["--grandchildren", "40"]);
    let log = sb.log();
    wait_until(
        "40 grandchildren",
        || log.count(&["grandchild gen=1"]) == 40,
        || log.lines().join("\n"),
    );
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 1 stopped cleanly"]);
    for line in log
        .lines()
        .iter()
        .filter(|l| l.starts_with("grandchild gen=1"))
    {
        assert!(is_gone(pid_in(line)), "{line} outlived its generation");
    }
    h.signal(Signal::SIGTERM);
    h.wait();
}
