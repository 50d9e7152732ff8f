//! An idle hotrun costs nothing: every thread of hotrun and of its guardian waits in a
//! blocking call that no timer ends (no sleep, no timed futex or epoll wait, no receive
//! timeout on a socket). Checked from /proc, without measuring any time window: what a
//! blocked thread waits in is visible in /proc/PID/task/TID/syscall. (How many times it
//! wakes in 10 s is the benchmark's to measure.)
//!
//! Also the ways a watch must survive without a timer: the binary's directories removed
//! and re-created (`cargo clean`), and `--poll` for file systems without events.

use std::fs;
use std::path::Path;

use crate::harness::*;

#[cfg(target_os = "linux")]
use crate::waits;

#[cfg(target_os = "linux")]
#[test]
fn an_idle_hotrun_waits_without_timers() {
    let sb = Sandbox::new();
    let watched = sb.path("static");
    fs::create_dir_all(watched.join("css")).unwrap();
    let h = start_fixture(&sb, &["--watch", watched.to_str().unwrap()], &[]);
    let guardian = waits::guardian_of(h.pid()).expect("hotrun's guardian");
    waits::assert_no_timed_waits(&[h.pid(), guardian]);
}

#[cfg(target_os = "linux")]
#[test]
fn an_idle_hotrun_with_a_socket_and_readiness_waits_without_timers() {
    let sb = Sandbox::new();
    let mut h = start_fixture(
        &sb,
        &["--listen", "127.0.0.1:0", "--ready", "notify"],
        &["--listen-fd", "--notify"],
    );
    h.expect(&["gen 1 ready"]);
    let guardian = waits::guardian_of(h.pid()).expect("hotrun's guardian");
    waits::assert_no_timed_waits(&[h.pid(), guardian]);
}

/// `cargo clean` with the binary deeper down: two directory levels removed, then made
/// again one at a time, and a build put in place. No timer looks for them: the watch on
/// the nearest remaining directory follows them down.
#[test]
fn survives_two_directory_levels_removed_and_made_again() {
    let sb = Sandbox::new();
    let debug = sb.path("project/target/debug");
    fs::create_dir_all(&debug).unwrap();
    let app = debug.join("app");
    replace_by_rename(&fixture_exe(), &app);
    let log = sb.log();
    let mut h = Hotrun::start(&[app.as_os_str(), "--log".as_ref(), log.arg()]);
    h.expect(&["gen 1 started"]);
    log.wait_for(&["start gen=1"]);
    for round in 2..=3 {
        fs::remove_dir_all(sb.path("project/target")).unwrap();
        h.expect(&["the command's executable is gone"]);
        fs::create_dir(sb.path("project/target")).unwrap();
        fs::create_dir(&debug).unwrap();
        replace_like_cargo(&fixture_exe(), &app);
        h.expect(&[&format!("gen {round} started"), "(binary changed)"]);
        log.wait_for(&[&format!("start gen={round}")]);
    }
    // The watch is back on the binary's own directory: a plain rebuild restarts.
    replace_by_rename(&fixture_exe(), &app);
    h.expect(&["gen 4 started", "(binary changed)"]);
    // And only there: the directories above are no longer watched.
    #[cfg(target_os = "linux")]
    wait_until(
        "one inotify watch left",
        || inotify_watches(h.pid()) == 1,
        || format!("{} watches", inotify_watches(h.pid())),
    );
}

/// How many inotify watches a process holds (from /proc/PID/fdinfo).
#[cfg(target_os = "linux")]
fn inotify_watches(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count()
        })
        .sum()
}

/// The same, with the directories made again by a build that creates them all at once,
/// before the watch has moved: whatever appeared meanwhile is looked at. Many rounds: the
/// races it guards against (the binary removed between the watcher's look and its watch;
/// notify dropping, by path, a watch already made on a new directory of the same name; a
/// new directory with its predecessor's inode number) each showed up about once in a
/// hundred rounds of a loop like this one.
#[test]
fn survives_a_rebuild_racing_the_directories_coming_back() {
    let sb = Sandbox::new();
    let debug = sb.path("project/target/debug");
    fs::create_dir_all(&debug).unwrap();
    let app = debug.join("app");
    replace_by_rename(&fixture_exe(), &app);
    let log = sb.log();
    let mut h = Hotrun::start(&[app.as_os_str(), "--log".as_ref(), log.arg()]);
    h.expect(&["gen 1 started"]);
    for round in 2..=100 {
        fs::remove_dir_all(sb.path("project/target")).unwrap();
        fs::create_dir_all(&debug).unwrap();
        replace_like_cargo(&fixture_exe(), &app);
        h.expect(&[&format!("gen {round} started"), "(binary changed)"]);
    }
}

/// `--poll` for file systems without events: no inotify at all, and yet a rebuild and
/// every save restart, including a change of the same file, same size, within the same
/// second (which a whole-second mtime comparison would miss).
#[test]
fn poll_mode_sees_rebuilds_and_saves_without_file_events() {
    let sb = Sandbox::new();
    let watched = sb.path("static");
    fs::create_dir_all(&watched).unwrap();
    let page = watched.join("index.html");
    fs::write(&page, "a\n").unwrap();
    let mut h = start_fixture(
        &sb,
        &[
            "--poll",
            "20ms",
            "--watch",
            watched.to_str().unwrap(),
            "--debounce",
            "0",
        ],
        &[],
    );
    h.expect(&["gen 1 started"]);
    #[cfg(target_os = "linux")]
    {
        let fds: Vec<String> = fs::read_dir(format!("/proc/{}/fd", h.pid()))
            .unwrap()
            .flatten()
            .filter_map(|e| fs::read_link(e.path()).ok())
            .map(|l| l.to_string_lossy().into_owned())
            .collect();
        assert!(
            !fds.iter().any(|l| l.contains("inotify")),
            "--poll uses no inotify: {fds:?}"
        );
    }
    replace_like_cargo(&fixture_exe(), &sb.path("app"));
    h.expect(&["gen 2 started", "(binary changed)"]);
    // Saved whole (written beside, renamed over), so that no round sees half a save.
    let save = |content: &str| save_from_outside(&sb.path(".saving"), &page, content);
    save("b\n");
    h.expect(&["gen 3 started", "index.html changed"]);
    save("c\n");
    h.expect(&["gen 4 started", "index.html changed"]);
    // Ignore rules hold in poll mode too.
    fs::write(watched.join(".index.html.swp"), "swap\n").unwrap();
    save("d\n");
    let line = h.expect(&["gen 5 started"]);
    assert!(line.contains("index.html changed"), "{line}");
    assert_eq!(h.count(&[".swp"]), 0, "{}", h.transcript());
    // The same file (same inode, same size) touched twice within one second: only the
    // nanoseconds of its mtime differ. Each touch is a single system call, so no round
    // sees half of it; the times are set, not read from a clock (a save "within the same
    // second" on a slow machine may not be).
    let second = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for (g, ms) in [(6, 100), (7, 200)] {
        fs::File::open(&page)
            .unwrap()
            .set_modified(second + std::time::Duration::from_millis(ms))
            .unwrap();
        let line = h.expect(&[&format!("gen {g} started")]);
        assert!(line.contains("index.html changed"), "{line}");
    }
}

fn save_from_outside(tmp: &Path, dest: &Path, content: &str) {
    fs::write(tmp, content).unwrap();
    fs::rename(tmp, dest).unwrap();
}

/// The real thing: `cargo clean`, then `cargo build`, on a tiny project.
#[test]
fn real_cargo_clean_then_build_restarts_once() {
    let sb = Sandbox::new();
    let Some(tiny) = TinyCargo::new(&sb) else {
        return;
    };
    tiny.build(1);
    let binary = tiny.binary();
    let log = sb.log();
    let mut h = Hotrun::start(&[binary.as_os_str(), "--log".as_ref(), log.arg()]);
    h.expect(&["gen 1 started"]);
    log.wait_for(&["start gen=1", "build=1"]);
    tiny.run(&["clean"]);
    assert!(!tiny.project.join("target").exists());
    tiny.build(2);
    h.expect(&["gen 2 started", "(binary changed)"]);
    log.wait_for(&["start gen=2", "build=2"]);
    // Once: the next restart is the one asked for.
    h.signal(nix::sys::signal::Signal::SIGHUP);
    let line = h.expect(&["gen 3 started"]);
    assert!(line.contains("(SIGHUP)"), "{line}\n{}", h.transcript());
}
