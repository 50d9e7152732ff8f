//! Restarts: every way a build replaces the binary gives exactly one restart; the new
//! generation starts before the old one is asked to stop; old groups are gone afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;

use crate::harness::*;

/// A sandbox with the fixture installed as `app`, and a marker file in its own watched
/// directory. Touching the marker after a replacement proves that every event of the
/// replacement has been handled: the watcher reports events in order, so the marker's
/// restart must be the next one, and must not say "binary changed".
struct Bench {
    sb: Sandbox,
    app: PathBuf,
    marker: PathBuf,
}

impl Bench {
    fn new() -> Bench {
        let sb = Sandbox::new();
        let app = sb.install_fixture("app");
        let marker_dir = sb.path("marker");
        fs::create_dir(&marker_dir).unwrap();
        let marker = marker_dir.join("m");
        touch(&marker);
        Bench { sb, app, marker }
    }

    fn hotrun(&self, extra: &[&str], fixture_args: &[&str]) -> Hotrun {
        let log = self.sb.log();
        let mut args: Vec<&std::ffi::OsStr> = vec!["--debounce".as_ref(), "0".as_ref()];
        args.extend(["--watch".as_ref(), self.marker.as_os_str()]);
        args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
        args.push("--".as_ref());
        args.push(self.app.as_os_str());
        args.extend(["--log".as_ref(), log.arg()]);
        args.extend(fixture_args.iter().map(|a| std::ffi::OsStr::new(*a)));
        let mut h = Hotrun::start(&args);
        h.expect(&["gen 1 started"]);
        log.wait_for(&["start gen=1"]);
        h
    }

    /// After a replacement restarted the command once: prove there is no second restart.
    fn assert_exactly_one_binary_restart(&self, h: &mut Hotrun) {
        touch(&self.marker);
        let next = h.expect(&["gen 3 started"]);
        assert!(
            next.contains("m changed"),
            "the restart after the marker came from elsewhere: {next}\n{}",
            h.transcript()
        );
        assert_eq!(h.count(&["(binary changed)"]), 1, "{}", h.transcript());
    }
}

fn restarts_exactly_once(replace: fn(&Path, &Path)) {
    let b = Bench::new();
    let mut h = b.hotrun(&[], &[]);
    replace(&fixture_exe(), &b.app);
    h.expect(&["gen 2 started", "(binary changed)"]);
    b.sb.log().wait_for(&["start gen=2"]);
    h.expect(&["gen 1 stopped cleanly"]);
    b.assert_exactly_one_binary_restart(&mut h);
}

#[test]
fn rename_over_the_binary_restarts_once() {
    restarts_exactly_once(replace_by_rename);
}

#[test]
fn cargo_style_unlink_and_hard_link_restarts_once() {
    restarts_exactly_once(replace_like_cargo);
}

#[test]
fn ld_style_rewrite_restarts_once_after_the_chmod() {
    restarts_exactly_once(replace_like_ld);
}

// BSD cp (macOS) has no --remove-destination.
#[cfg(target_os = "linux")]
#[test]
fn cp_remove_destination_restarts_once() {
    restarts_exactly_once(replace_with_cp);
}

#[test]
fn install_restarts_once() {
    restarts_exactly_once(replace_with_install);
}

#[test]
fn real_gcc_build_restarts_once() {
    if !have("gcc") {
        return;
    }
    let b = Bench::new();
    let src = b.sb.path("server.c");
    fs::write(
        &src,
        "#include <stdio.h>\n#include <stdlib.h>\n#include <unistd.h>\n\
         int main(int c, char **v) { FILE *f = fopen(v[2], \"a\");\n\
         fprintf(f, \"start gen=%s pid=%d\\n\", getenv(\"HOTRUN_GEN\"), getpid());\n\
         fclose(f); for (;;) pause(); }\n",
    )
    .unwrap();
    let gcc = |out: &Path| {
        let status = Command::new("gcc")
            .arg("-o")
            .arg(out)
            .arg(&src)
            .status()
            .unwrap();
        assert!(status.success());
    };
    gcc(&b.app);
    let mut h = b.hotrun(&[], &[]);
    gcc(&b.app);
    h.expect(&["gen 2 started", "(binary changed)"]);
    b.sb.log().wait_for(&["start gen=2"]);
    b.assert_exactly_one_binary_restart(&mut h);
}

#[test]
fn real_cargo_build_restarts_once() {
    let b = Bench::new();
    let Some(tiny) = TinyCargo::new(&b.sb) else {
        return;
    };
    tiny.build(1);
    let binary = tiny.binary();
    let log = b.sb.log();
    let mut h = Hotrun::start(&[
        "--debounce".as_ref(),
        "0".as_ref(),
        "--watch".as_ref(),
        b.marker.as_os_str(),
        "--".as_ref(),
        binary.as_os_str(),
        "--log".as_ref(),
        log.arg(),
    ]);
    h.expect(&["gen 1 started"]);
    log.wait_for(&["start gen=1", "build=1"]);
    tiny.build(2);
    h.expect(&["gen 2 started", "(binary changed)"]);
    log.wait_for(&["start gen=2", "build=2"]);
    b.assert_exactly_one_binary_restart(&mut h);
}

#[test]
fn exec_and_reads_of_the_binary_do_not_restart() {
    let b = Bench::new();
    let mut h = b.hotrun(&[], &[]);
    // Run the binary directly, and read it the way a checksum or a backup would.
    let out = Command::new(&b.app)
        .args(["--exit-after-ms", "0"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let _ = fs::read(&b.app).unwrap();
    touch(&b.marker);
    let line = h.expect(&["gen 2 started"]);
    assert!(line.contains("m changed"), "{}", h.transcript());
    assert_eq!(h.count(&["binary changed"]), 0, "{}", h.transcript());
}

#[test]
fn a_touch_of_the_binary_is_a_restart_but_a_chmod_is_not() {
    let b = Bench::new();
    let mut h = b.hotrun(&[], &[]);
    // A new mtime is a new build as far as anyone can tell (like `touch` with entr).
    // (Read-only: a running binary cannot be opened for writing.)
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    fs::File::open(&b.app).unwrap().set_modified(later).unwrap();
    h.expect(&["gen 2 started", "(binary changed)"]);
    // Same inode, same size, same mtime: a chmod changes nothing that matters, so the
    // next restart is the marker's.
    fs::set_permissions(&b.app, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    touch(&b.marker);
    let line = h.expect(&["gen 3 started"]);
    assert!(line.contains("m changed"), "{}", h.transcript());
}

#[cfg(target_os = "linux")]
#[test]
fn the_new_generation_runs_before_the_old_one_gets_its_stop_signal() {
    let b = Bench::new();
    let tag = b.sb.path("").display().to_string();
    let mut h = b.hotrun(&[], &["--tag", &tag]);
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 2 started", "(SIGHUP)"]);
    let log = b.sb.log();
    let gen2 = pid_in(&log.wait_for(&["start gen=2"]));
    let stop = log.wait_for(&["signal gen=1 sig=SIGTERM"]);
    // The old generation, at the moment it got SIGTERM, saw gen 2 already exec'd (its
    // command line is the fixture's, tag included; hotrun's own has the tag too).
    let others = field(&stop, "others");
    assert!(
        others.split(',').any(|p| p == gen2.to_string()),
        "gen 2 (pid {gen2}) was not running when gen 1 got SIGTERM: {stop}"
    );
}

#[test]
fn grandchildren_are_gone_after_a_restart_and_after_exit() {
    let b = Bench::new();
    let mut h = b.hotrun(&[], &["--grandchild"]);
    let log = b.sb.log();
    let first = pid_in(&log.wait_for(&["grandchild gen=1"]));
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 1 stopped"]);
    assert!(is_gone(first), "gen 1's grandchild {first} outlived gen 1");
    let second = pid_in(&log.wait_for(&["grandchild gen=2"]));
    h.signal(Signal::SIGTERM);
    h.wait();
    assert!(
        is_gone(second),
        "gen 2's grandchild {second} outlived hotrun"
    );
}

#[test]
fn a_child_that_ignores_the_stop_signal_is_killed_after_the_grace_period() {
    let b = Bench::new();
    let mut h = b.hotrun(&["--grace", "300ms"], &["--ignore-term"]);
    let log = b.sb.log();
    let old = pid_in(&log.wait_for(&["start gen=1"]));
    h.signal(Signal::SIGHUP);
    log.wait_for(&["signal gen=1 sig=SIGTERM"]);
    h.expect(&["gen 1 still running 300 ms after the stop signal; sending SIGKILL"]);
    h.expect(&["gen 1 killed after", "killed by SIGKILL"]);
    assert!(is_gone(old));
}

#[test]
fn a_custom_stop_signal_is_used_for_restarts() {
    let b = Bench::new();
    let mut h = b.hotrun(&["--stop-signal", "INT"], &[]);
    h.signal(Signal::SIGHUP);
    b.sb.log().wait_for(&["signal gen=1 sig=SIGINT"]);
    h.expect(&["gen 1 stopped cleanly"]);
}

#[test]
fn survives_cargo_clean_and_a_rebuild() {
    let sb = Sandbox::new();
    let debug = sb.path("target/debug");
    fs::create_dir_all(&debug).unwrap();
    let app = debug.join("app");
    replace_by_rename(&fixture_exe(), &app);
    let log = sb.log();
    let mut h = Hotrun::start(&[app.as_os_str(), "--log".as_ref(), log.arg()]);
    h.expect(&["gen 1 started"]);
    fs::remove_dir_all(sb.path("target")).unwrap();
    fs::create_dir_all(&debug).unwrap();
    replace_like_cargo(&fixture_exe(), &app);
    h.expect(&["gen 2 started", "(binary changed)"]);
    log.wait_for(&["start gen=2"]);
    // And the watch works again for the next build, at event speed.
    replace_by_rename(&fixture_exe(), &app);
    h.expect(&["gen 3 started", "(binary changed)"]);
}

#[test]
fn a_watched_directory_change_restarts() {
    let b = Bench::new();
    let dir = b.sb.path("static");
    fs::create_dir_all(dir.join("css")).unwrap();
    let mut h = b.hotrun(&["--watch", dir.to_str().unwrap()], &[]);
    touch(&dir.join("css/site.css"));
    h.expect(&["gen 2 started", "site.css changed"]);
}

#[test]
fn a_generation_that_cannot_start_leaves_the_old_one_running() {
    let b = Bench::new();
    let mut h = b.hotrun(&[], &[]);
    let log = b.sb.log();
    let old = pid_in(&log.wait_for(&["start gen=1"]));
    fs::remove_file(&b.app).unwrap();
    h.signal(Signal::SIGHUP);
    h.expect(&["cannot run", "gen 1 keeps running"]);
    assert!(!is_gone(old));
    // A new build brings it back, through the normal routine.
    replace_by_rename(&fixture_exe(), &b.app);
    h.expect(&["gen 2 started", "(binary changed)"]);
    h.expect(&["gen 1 stopped cleanly"]);
}
