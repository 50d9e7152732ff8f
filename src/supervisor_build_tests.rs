//! Unit tests of `--build` in the supervisor: changes run the build, the build's result
//! decides the restart, changes during a build stop it and build again, shutdowns stop
//! it. Event sequences in, actions out, no processes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::*;
use crate::event::{
    Action, AfterBuild, AfterFailedBuild, BuildId, BuildTrigger, ChildEnd, Event, Generation,
    Outcome, ShutdownSignal, Status, Trigger,
};

fn build_settings() -> BuildSettings {
    BuildSettings {
        program: PathBuf::from("./target/debug/server"),
        ignore_files: vec![
            PathBuf::from("/p/target/debug/server"),
            PathBuf::from("/p/events.jsonl"),
        ],
        ignore_dirs: vec![PathBuf::from("/p/target/debug"), PathBuf::from("/p/target")],
        restart_after_every_build: false,
        cwd: PathBuf::from("/p"),
    }
}

fn with_build(on_exit: OnExit) -> Settings {
    Settings {
        build: Some(build_settings()),
        ..settings(on_exit)
    }
}

/// A harness whose start-up build 1 is running (nothing else yet).
fn building_at_start(settings: Settings) -> Harness {
    let mut h = Harness {
        sup: Supervisor::new(settings),
        now: Instant::now(),
    };
    let a = h.sup.start(h.now);
    assert_eq!(builds(&a), vec![1], "{a:?}");
    assert!(
        spawns(&a).is_empty(),
        "nothing runs before the build: {a:?}"
    );
    assert!(reported(&a, |s| matches!(
        s,
        Status::BuildStarted {
            trigger: BuildTrigger::Start
        }
    )));
    h.ev(Event::BuildStarted { build: BuildId(1) });
    h
}

/// A harness with --build whose start-up build succeeded and whose generation 1 runs from
/// binary `sig(1)`.
fn serving_with_build() -> Harness {
    let mut h = building_at_start(with_build(OnExit::Wait));
    let a = h.build_exited(1, ChildEnd::Exited(0), Some(sig(1)));
    assert_eq!(spawns(&a), vec![1]);
    h.spawned(1);
    h
}

impl Harness {
    fn build_exited(&mut self, b: u64, end: ChildEnd, binary: Option<FileId>) -> Vec<Action> {
        self.ev(Event::BuildExited {
            build: BuildId(b),
            end,
            group_empty: true,
            binary,
            same_as_running: false,
        })
    }

    /// A `--watch` change, past its quiet period.
    fn change(&mut self, path: &str) -> Vec<Action> {
        let mut a = self.ev(Event::PathChanged(PathBuf::from(path)));
        if self.sup.next_deadline().is_some() {
            a.extend(self.tick());
        }
        a
    }
}

fn builds(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Build { build, .. } => Some(build.0),
            _ => None,
        })
        .collect()
}

fn build_signals(actions: &[Action]) -> Vec<(u64, Signal)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SignalBuild { build, signal } => Some((build.0, *signal)),
            _ => None,
        })
        .collect()
}

fn build_reaps(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ReapBuild { build } => Some(build.0),
            _ => None,
        })
        .collect()
}

fn build_trigger(actions: &[Action]) -> Option<BuildTrigger> {
    actions.iter().find_map(|a| match a {
        Action::Build { trigger, .. } => Some(trigger.clone()),
        _ => None,
    })
}

fn changed(path: &str) -> BuildTrigger {
    BuildTrigger::Changed(PathBuf::from(path))
}

#[test]
fn a_change_runs_the_build_and_does_not_restart() {
    let mut h = serving_with_build();
    let a = h.ev(Event::PathChanged(PathBuf::from("/p/src/main.rs")));
    assert!(builds(&a).is_empty(), "the quiet period comes first: {a:?}");
    let a = h.tick();
    assert_eq!(builds(&a), vec![2]);
    assert_eq!(build_trigger(&a), Some(changed("/p/src/main.rs")));
    assert!(spawns(&a).is_empty(), "{a:?}");
    assert!(signals(&a).is_empty(), "gen 1 keeps serving: {a:?}");
}

#[test]
fn a_successful_build_that_changed_the_binary_restarts_once() {
    let mut h = serving_with_build();
    h.change("/p/src/main.rs");
    // The linker at work: these are not restarts…
    for event in [
        Event::BinaryChanged(None),
        Event::BinaryChanged(Some(sig(2))),
    ] {
        assert!(h.ev(event).is_empty());
    }
    // …the build's end is.
    let a = h.build_exited(2, ChildEnd::Exited(0), Some(sig(2)));
    assert_eq!(build_reaps(&a), vec![2]);
    assert_eq!(spawns(&a), vec![2]);
    assert!(reported(&a, |s| matches!(
        s,
        Status::BuildFinished {
            then: AfterBuild::Restart,
            ..
        }
    )));
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Spawn {
            trigger: Trigger::BinaryChanged,
            ..
        }
    )));
    assert_eq!(signals(&h.spawned(2)), vec![(1, STOP)]);
    // The watcher's late news of the same file is not a second restart.
    assert!(spawns(&h.ev(Event::BinaryChanged(Some(sig(2))))).is_empty());
}

#[test]
fn a_successful_build_that_changed_nothing_restarts_nothing() {
    let mut h = serving_with_build();
    h.change("/p/README.md");
    let a = h.build_exited(2, ChildEnd::Exited(0), Some(sig(1)));
    assert!(spawns(&a).is_empty(), "{a:?}");
    assert!(reported(&a, |s| matches!(
        s,
        Status::BuildFinished {
            then: AfterBuild::Unchanged {
                serving: Some(Generation(1))
            },
            ..
        }
    )));
    assert!(h.sup.progress().idle);
}

#[test]
fn a_failed_build_restarts_nothing_and_says_who_serves() {
    let mut h = serving_with_build();
    h.change("/p/src/main.rs");
    h.advance(Duration::from_millis(1200));
    // Even though a half-linked binary came and went.
    let a = h.build_exited(2, ChildEnd::Exited(101), Some(sig(7)));
    assert_eq!(build_reaps(&a), vec![2]);
    assert!(spawns(&a).is_empty(), "{a:?}");
    assert!(signals(&a).is_empty(), "{a:?}");
    assert!(reported(&a, |s| matches!(
        s,
        Status::BuildFailed {
            end: ChildEnd::Exited(101),
            took,
            then: AfterFailedBuild::Serving(Generation(1)),
        } if *took == Duration::from_millis(1200)
    )));
    // The next change tries again.
    assert_eq!(builds(&h.change("/p/src/main.rs")), vec![3]);
}

#[test]
fn a_change_during_a_build_stops_it_and_builds_again_once_its_group_is_gone() {
    let mut h = serving_with_build();
    h.change("/p/src/main.rs");
    let a = h.change("/p/src/lib.rs");
    // A build is stopped with SIGTERM, whatever the command's stop signal (STOP here).
    assert_eq!(build_signals(&a), vec![(2, Signal::SIGTERM)]);
    assert!(builds(&a).is_empty(), "not while the old build runs: {a:?}");
    assert!(reported(&a, |s| matches!(
        s,
        Status::BuildStopping { changed } if changed == Path::new("/p/src/lib.rs")
    )));
    // Yet another change while it stops: the next build is for the newest one.
    let a = h.change("/p/src/util.rs");
    assert!(build_signals(&a).is_empty(), "stopped once: {a:?}");
    // Its leader exits; a grandchild (rustc) is still there.
    let a = h.ev(Event::BuildExited {
        build: BuildId(2),
        end: ChildEnd::Signaled(15),
        group_empty: false,
        binary: Some(sig(1)),
        same_as_running: false,
    });
    assert!(builds(&a).is_empty(), "{a:?}");
    assert!(build_reaps(&a).is_empty(), "{a:?}");
    assert_eq!(build_signals(&a), vec![(2, Signal::SIGTERM)]);
    let a = h.tick();
    assert_eq!(
        a,
        vec![Action::CheckBuildGroup { build: BuildId(2) }],
        "{a:?}"
    );
    let a = h.ev(Event::BuildGroupChecked {
        build: BuildId(2),
        empty: true,
    });
    assert_eq!(build_reaps(&a), vec![2]);
    assert_eq!(builds(&a), vec![3]);
    assert_eq!(build_trigger(&a), Some(changed("/p/src/util.rs")));
    assert!(spawns(&a).is_empty(), "a stopped build restarts nothing");
    // The rebuild's result decides.
    let a = h.build_exited(3, ChildEnd::Exited(0), Some(sig(3)));
    assert_eq!(spawns(&a), vec![2]);
}

#[test]
fn a_stopped_build_that_ignores_its_stop_signal_is_killed_after_the_grace_period() {
    let mut h = serving_with_build();
    h.change("/p/src/main.rs");
    h.change("/p/src/main.rs");
    let stopped_at = h.now;
    let a = h.tick();
    assert_eq!(h.now, stopped_at + GRACE);
    assert_eq!(build_signals(&a), vec![(2, Signal::SIGKILL)]);
    assert!(reported(&a, |s| matches!(
        s,
        Status::BuildGraceExpired { .. }
    )));
    let a = h.build_exited(2, ChildEnd::Signaled(9), None);
    assert_eq!(builds(&a), vec![3]);
}

#[test]
fn builds_stopped_again_and_again_by_changes_let_the_next_one_finish() {
    let mut h = serving_with_build();
    h.change("/p/src/main.rs");
    let mut b = 2;
    for _ in 0..BUILD_STOP_STREAK {
        assert_eq!(
            build_signals(&h.change("/p/main.o")),
            vec![(b, Signal::SIGTERM)]
        );
        let a = h.build_exited(b, ChildEnd::Signaled(15), None);
        b += 1;
        assert_eq!(builds(&a), vec![b]);
    }
    // The next change during a build does not stop it: it finishes, one more follows.
    let a = h.change("/p/main.o");
    assert!(build_signals(&a).is_empty(), "{a:?}");
    assert!(reported(&a, |s| matches!(
        s,
        Status::BuildQueued { stops, .. } if *stops == BUILD_STOP_STREAK
    )));
    let a = h.build_exited(b, ChildEnd::Exited(0), Some(sig(2)));
    assert_eq!(spawns(&a), vec![2], "the finished build's binary runs");
    assert_eq!(builds(&a), vec![b + 1], "and the newest sources build");
    h.spawned(2);
    // A build that ended on its own resets the streak: the next change stops it again.
    let a = h.change("/p/src/main.rs");
    assert_eq!(build_signals(&a), vec![(b + 1, Signal::SIGTERM)]);
}

#[test]
fn the_build_and_the_binary_directory_never_run_the_build() {
    let mut h = serving_with_build();
    for path in [
        "/p/target/debug/.cargo-lock",
        "/p/target/debug/server",
        "/p/target/debug/deps/server-1234",
        "/p/target/.rustc_info.json",
        "/p/targetAb12Cd/debug",
        "/p/events.jsonl",
    ] {
        let a = h.ev(Event::PathChanged(PathBuf::from(path)));
        assert!(a.is_empty(), "{path}: {a:?}");
        assert!(h.sup.next_deadline().is_none(), "{path}");
    }
    assert_eq!(builds(&h.change("/p/src/main.rs")), vec![2]);
}

#[test]
fn the_start_up_build_comes_before_generation_one() {
    let mut h = building_at_start(with_build(OnExit::Wait));
    // The binary from before, rebuilt: not a restart of anything yet.
    assert!(h.ev(Event::BinaryChanged(Some(sig(1)))).is_empty());
    assert!(!h.sup.progress().idle);
    assert!(h.sup.progress().building);
    let a = h.build_exited(1, ChildEnd::Exited(0), Some(sig(1)));
    assert_eq!(spawns(&a), vec![1]);
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Spawn {
            trigger: Trigger::Start,
            ..
        }
    )));
    let a = h.spawned(1);
    assert!(signals(&a).is_empty());
    assert!(h.sup.progress().idle);
}

#[test]
fn a_failed_start_up_build_starts_the_binary_from_before() {
    let mut h = building_at_start(with_build(OnExit::Wait));
    let a = h.build_exited(1, ChildEnd::Exited(101), Some(sig(1)));
    assert_eq!(spawns(&a), vec![1]);
    assert!(reported(&a, |s| matches!(
        s,
        Status::BuildFailed {
            then: AfterFailedBuild::StartFromBefore { .. },
            ..
        }
    )));
    h.spawned(1);
    // The next successful build replaces it as usual.
    h.change("/p/src/main.rs");
    assert_eq!(
        spawns(&h.build_exited(2, ChildEnd::Exited(0), Some(sig(2)))),
        vec![2]
    );
}

#[test]
fn a_failed_start_up_build_without_a_binary_waits_for_the_next_change() {
    let mut h = building_at_start(with_build(OnExit::Wait));
    let a = h.build_exited(1, ChildEnd::Exited(101), None);
    assert!(spawns(&a).is_empty(), "{a:?}");
    assert!(exit(&a).is_none(), "hotrun waits: {a:?}");
    assert!(reported(&a, |s| matches!(
        s,
        Status::BuildFailed {
            then: AfterFailedBuild::NothingToRun,
            ..
        }
    )));
    assert!(h.sup.next_deadline().is_none());
    // A fix: the build succeeds and generation 1 starts.
    let a = h.change("/p/src/main.rs");
    assert_eq!(builds(&a), vec![2]);
    let a = h.build_exited(2, ChildEnd::Exited(0), Some(sig(1)));
    assert_eq!(spawns(&a), vec![1]);
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Spawn {
            trigger: Trigger::Start,
            ..
        }
    )));
}

#[test]
fn a_successful_build_without_a_program_at_the_path_says_so() {
    let mut h = building_at_start(with_build(OnExit::Wait));
    let mut half = sig(1);
    half.executable = false;
    for binary in [None, Some(half)] {
        let a = h.build_exited(h.sup.builds.next_id, ChildEnd::Exited(0), binary);
        assert!(spawns(&a).is_empty(), "{a:?}");
        assert!(reported(&a, |s| matches!(
            s,
            Status::BuildFinished {
                then: AfterBuild::NoProgram { program },
                ..
            } if program == Path::new("./target/debug/server")
        )));
        h.change("/p/src/main.rs");
    }
}

#[test]
fn a_first_generation_that_cannot_start_after_a_build_waits_instead_of_exiting() {
    let mut h = building_at_start(with_build(OnExit::Wait));
    h.build_exited(1, ChildEnd::Exited(0), Some(sig(1)));
    let a = h.ev(fatal(126));
    assert!(exit(&a).is_none(), "{a:?}");
    assert!(!h.sup.is_done());
    assert_eq!(builds(&h.change("/p/src/main.rs")), vec![2]);
}

#[test]
fn with_nothing_running_a_successful_build_starts_the_command_even_unchanged() {
    let mut h = serving_with_build();
    // The server crashed on its own; hotrun waits for a change.
    h.exited(1, ChildEnd::Exited(1));
    h.change("/p/config.toml");
    let a = h.build_exited(2, ChildEnd::Exited(0), Some(sig(1)));
    assert_eq!(spawns(&a), vec![2]);
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Spawn {
            trigger: Trigger::Built,
            ..
        }
    )));
}

#[test]
fn a_wrapper_command_restarts_after_every_successful_build() {
    let mut settings = with_build(OnExit::Wait);
    if let Some(build) = settings.build.as_mut() {
        build.restart_after_every_build = true;
    }
    let mut h = building_at_start(settings);
    h.build_exited(1, ChildEnd::Exited(0), Some(sig(1)));
    h.spawned(1);
    h.change("/p/app.py");
    let a = h.build_exited(2, ChildEnd::Exited(0), Some(sig(1)));
    assert_eq!(spawns(&a), vec![2]);
    // A failed build still restarts nothing.
    h.spawned(2);
    h.change("/p/app.py");
    assert!(spawns(&h.build_exited(3, ChildEnd::Exited(1), Some(sig(1)))).is_empty());
}

#[test]
fn a_shutdown_during_a_build_stops_it_and_waits_for_its_group() {
    let mut h = serving_with_build();
    h.change("/p/src/main.rs");
    let a = h.ev(Event::Shutdown(ShutdownSignal::Interrupt));
    assert_eq!(build_signals(&a), vec![(2, Signal::SIGINT)]);
    assert_eq!(signals(&a), vec![(1, Signal::SIGINT)]);
    let a = h.exited(1, ChildEnd::Signaled(2));
    assert!(exit(&a).is_none(), "the build is not gone yet: {a:?}");
    // The build finishing successfully now restarts nothing.
    let a = h.ev(Event::BuildExited {
        build: BuildId(2),
        end: ChildEnd::Exited(0),
        group_empty: false,
        binary: Some(sig(2)),
        same_as_running: false,
    });
    assert!(spawns(&a).is_empty(), "{a:?}");
    assert!(exit(&a).is_none(), "{a:?}");
    assert_eq!(build_signals(&a), vec![(2, Signal::SIGINT)]);
    h.tick();
    let a = h.ev(Event::BuildGroupChecked {
        build: BuildId(2),
        empty: true,
    });
    assert_eq!(build_reaps(&a), vec![2]);
    assert_eq!(
        exit(&a),
        Some(Outcome::Child {
            end: ChildEnd::Signaled(2),
            received: Some(Signal::SIGINT)
        })
    );
}

#[test]
fn a_shutdown_during_the_start_up_build_ends_with_the_signal() {
    let mut h = building_at_start(with_build(OnExit::Wait));
    let a = h.ev(Event::Shutdown(ShutdownSignal::Terminate));
    assert_eq!(build_signals(&a), vec![(1, Signal::SIGTERM)]);
    assert!(exit(&a).is_none());
    // A second signal kills the build's group at once.
    let a = h.ev(Event::Shutdown(ShutdownSignal::Terminate));
    assert_eq!(build_signals(&a), vec![(1, Signal::SIGKILL)]);
    let a = h.build_exited(1, ChildEnd::Signaled(9), None);
    assert_eq!(build_reaps(&a), vec![1]);
    assert!(spawns(&a).is_empty());
    assert_eq!(exit(&a), Some(Outcome::Signaled(Signal::SIGTERM)));
}

#[test]
fn a_shutdown_while_a_stopped_build_awaits_its_rebuild_builds_nothing_more() {
    let mut h = serving_with_build();
    h.change("/p/src/main.rs");
    h.change("/p/src/lib.rs");
    let a = h.ev(Event::Shutdown(ShutdownSignal::Terminate));
    assert_eq!(build_signals(&a), vec![(2, Signal::SIGTERM)]);
    h.exited(1, ChildEnd::Signaled(15));
    let a = h.build_exited(2, ChildEnd::Signaled(15), None);
    assert!(builds(&a).is_empty(), "{a:?}");
    assert!(exit(&a).is_some(), "{a:?}");
}

#[test]
fn a_build_that_cannot_start_is_reported_and_the_binary_from_before_runs() {
    let mut h = Harness {
        sup: Supervisor::new(with_build(OnExit::Wait)),
        now: Instant::now(),
    };
    h.sup.start(h.now);
    let a = h.ev(Event::BuildSpawnFailed {
        build: BuildId(1),
        message: "cannot start the build".into(),
    });
    assert!(reported(&a, |s| matches!(
        s,
        Status::BuildCannotStart { .. }
    )));
    assert_eq!(spawns(&a), vec![1]);
}

#[test]
fn a_path_that_changes_right_after_every_build_is_told_once() {
    let mut h = serving_with_build();
    let mut told = 0;
    for b in 2..10 {
        let a = h.change("/p/server.log");
        told += usize::from(reported(&a, |s| matches!(s, Status::BuildLoop { .. })));
        h.advance(Duration::from_millis(30));
        h.build_exited(b, ChildEnd::Exited(0), Some(sig(1)));
        h.advance(Duration::from_millis(5));
    }
    assert_eq!(told, 1);
    // Edits far apart are no loop.
    let mut h = serving_with_build();
    for b in 2..10 {
        let a = h.change("/p/src/main.rs");
        assert!(!reported(&a, |s| matches!(s, Status::BuildLoop { .. })));
        h.build_exited(b, ChildEnd::Exited(0), Some(sig(1)));
        h.advance(Duration::from_secs(5));
    }
}

#[test]
fn a_restart_signal_during_a_build_still_restarts() {
    let mut h = serving_with_build();
    h.change("/p/src/main.rs");
    assert_eq!(spawns(&h.hup()), vec![2]);
}

#[test]
fn build_settings_tell_what_runs_the_build() {
    let b = build_settings();
    assert!(b.triggers(Path::new("/p/src/main.rs")));
    assert!(b.triggers(Path::new("/p/targets.txt")));
    assert!(!b.triggers(Path::new("/p/target/debug/server")));
    assert!(!b.triggers(Path::new("/p/target/CACHEDIR.TAG")));
    // cargo makes target/ as a temporary sibling first, then renames it.
    assert!(!b.triggers(Path::new("/p/targetvwSKUG")));
    assert!(!b.triggers(Path::new("/p/targetvwSKUG/CACHEDIR.TAG")));
    assert!(b.triggers(Path::new("/p/targets")));
    assert!(b.triggers(Path::new("/p/target-notes.txt")));
    assert!(!b.triggers(Path::new("/p/events.jsonl")));
    // The watcher names a change below the current directory relative to it.
    assert!(!b.triggers(Path::new("target/debug/server")));
    assert!(!b.triggers(Path::new("events.jsonl")));
    assert!(b.triggers(Path::new("src/main.rs")));
}

#[test]
fn cargo_writing_its_lock_file_during_a_build_does_not_stop_it() {
    let mut h = building_at_start(with_build(OnExit::Wait));
    let a = h.change("/p/Cargo.lock");
    assert!(build_signals(&a).is_empty(), "{a:?}");
    assert!(a.iter().all(|x| !matches!(x, Action::Report(_))), "{a:?}");
    let a = h.build_exited(1, ChildEnd::Exited(0), Some(sig(1)));
    assert_eq!(spawns(&a), vec![1]);
    assert_eq!(builds(&a), vec![2], "one more build follows");
    // An edit during that one stops it as usual.
    assert_eq!(
        build_signals(&h.change("/p/src/main.rs")),
        vec![(2, Signal::SIGTERM)]
    );
}

#[test]
fn a_binary_written_anew_with_the_same_bytes_restarts_nothing() {
    let mut h = serving_with_build();
    h.change("/p/README.md");
    // `go build -o` copies its cached output over the binary: a new identity, same bytes.
    let a = h.ev(Event::BuildExited {
        build: BuildId(2),
        end: ChildEnd::Exited(0),
        group_empty: true,
        binary: Some(sig(5)),
        same_as_running: true,
    });
    assert!(spawns(&a).is_empty(), "{a:?}");
    assert!(reported(&a, |s| matches!(
        s,
        Status::BuildFinished {
            then: AfterBuild::Unchanged { .. },
            ..
        }
    )));
    // The watcher's late news of that file is no restart either…
    assert!(spawns(&h.ev(Event::BinaryChanged(Some(sig(5))))).is_empty());
    // …but a real change later is.
    h.change("/p/main.go");
    assert_eq!(
        spawns(&h.build_exited(3, ChildEnd::Exited(0), Some(sig(6)))),
        vec![2]
    );
}
