//! Watching a real project with `--watch`: ignore files, `--ignore`, the built-in skips,
//! restarts named after the file the user changed, and the hint when the server keeps
//! restarting itself by writing into the watched directory.
//!
//! "Does not restart" is proved without a timing window: after the writes that must not
//! count, a real watched file is touched, and the restart that follows must be the *first*
//! one (gen 2) and be named after that file. The watcher reports events in the order they
//! happened, and `--debounce 0` keeps a counted write from hiding behind the touch.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

/// A sandbox with a project directory `proj/` (holding `src/app.py`) to watch.
struct Project {
    sb: Sandbox,
    dir: PathBuf,
}

impl Project {
    fn new() -> Project {
        let sb = Sandbox::new();
        let dir = sb.path("proj");
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::write(dir.join("src/app.py"), "print('v1')\n").unwrap();
        Project { sb, dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// hotrun, run from `proj/`, over the fixture logging to `log` (relative to `proj/`),
    /// once the first generation has logged its start.
    fn hotrun(&self, hotrun_args: &[&str], log: &str) -> (Hotrun, Log) {
        let app = self.sb.install_fixture("app");
        let log = Log {
            path: self.path(log),
        };
        if let Some(parent) = log.path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        let mut args: Vec<&OsStr> = hotrun_args.iter().map(OsStr::new).collect();
        args.extend([
            OsStr::new("--"),
            app.as_os_str(),
            OsStr::new("--log"),
            log.arg(),
        ]);
        let dir = self.dir.clone();
        let mut h = Hotrun::start_with(&args, move |cmd| {
            cmd.current_dir(dir);
        });
        h.expect(&["gen 1 started"]);
        log.wait_for(&["start gen=1"]);
        (h, log)
    }

    /// Saves `rel` the way an editor can in one step: the new content is written outside
    /// the project and renamed over the file, so the watched directory sees exactly one
    /// event (the file moved in). One event, one restart, even with `--debounce 0`.
    fn save(&self, rel: &str, content: &str) {
        let tmp = self.sb.path(".saving");
        fs::write(&tmp, content).unwrap();
        fs::rename(&tmp, self.path(rel)).unwrap();
    }

    /// Saves `src/app.py` and checks that the next restart is generation `g`, named after
    /// it.
    fn edit_restarts_as(&self, h: &mut Hotrun, g: u32) {
        self.save("src/app.py", &format!("print('gen {g}')\n"));
        let line = h.expect(&["started"]);
        assert!(
            line.contains(&format!("gen {g} started")) && line.contains("(src/app.py changed)"),
            "expected gen {g} to be the next start, set off by src/app.py: {line}\n{}",
            h.transcript()
        );
    }
}

#[test]
fn a_log_under_a_gitignore_entry_never_restarts() {
    let p = Project::new();
    fs::write(p.path(".gitignore"), "# server output\nlog/\n").unwrap();
    let (mut h, log) = p.hotrun(&["--debounce", "0", "--watch", "."], "log/app.log");
    // gen 1 wrote its log; the edit is still the first restart.
    p.edit_restarts_as(&mut h, 2);
    log.wait_for(&["start gen=2"]);
    // gen 2 wrote the log while gen 1 was being stopped (which wrote it too).
    log.wait_for(&["signal gen=1"]);
    p.edit_restarts_as(&mut h, 3);
    assert_eq!(h.count(&["log/app.log"]), 0, "{}", h.transcript());
}

#[test]
fn ignore_globs_are_relative_to_the_current_directory() {
    let p = Project::new();
    let (mut h, log) = p.hotrun(
        &["--debounce", "0", "--watch", ".", "--ignore", "log/**"],
        "log/app.log",
    );
    p.edit_restarts_as(&mut h, 2);
    log.wait_for(&["start gen=2"]);
    log.wait_for(&["signal gen=1"]);
    p.edit_restarts_as(&mut h, 3);
}

#[test]
fn ignore_globs_match_names_anywhere() {
    let p = Project::new();
    fs::create_dir_all(p.path("src/deep")).unwrap();
    let (mut h, _log) = p.hotrun(
        &["--debounce", "0", "--watch", "src", "-i", "*.out"],
        "app.out",
    );
    // The log is outside the watched directory; write a matching file inside it.
    fs::write(p.path("src/deep/trace.out"), "x\n").unwrap();
    p.edit_restarts_as(&mut h, 2);
}

#[test]
fn python_bytecode_and_pycache_never_restart() {
    let p = Project::new();
    let (mut h, _log) = p.hotrun(&["--debounce", "0", "--watch", "src"], "out/app.log");
    // What CPython writes when the server imports its modules.
    let cache = p.path("src/__pycache__");
    fs::create_dir_all(&cache).unwrap();
    fs::write(cache.join("app.cpython-312.pyc"), b"\x00bytecode").unwrap();
    fs::write(p.path("src/legacy.pyc"), b"\x00bytecode").unwrap();
    fs::write(p.path("src/legacy.pyo"), b"\x00bytecode").unwrap();
    p.edit_restarts_as(&mut h, 2);
    fs::write(cache.join("app.cpython-312.pyc"), b"\x00bytecode 2").unwrap();
    p.edit_restarts_as(&mut h, 3);
}

#[test]
fn ignore_files_above_the_watched_directory_up_to_the_repository_root_apply() {
    let p = Project::new();
    // proj/ is the repository: its .gitignore and .git/info/exclude apply in proj/src.
    fs::create_dir_all(p.path(".git/info")).unwrap();
    fs::write(p.path(".git/info/exclude"), "*.secret\n").unwrap();
    fs::write(p.path(".gitignore"), "*.log\n").unwrap();
    fs::write(p.path("src/.ignore"), "generated/\n").unwrap();
    let (mut h, _log) = p.hotrun(&["--debounce", "0", "--watch", "src"], "src/server.log");
    fs::write(p.path("src/key.secret"), "x\n").unwrap();
    fs::create_dir_all(p.path("src/generated")).unwrap();
    fs::write(p.path("src/generated/schema.py"), "x\n").unwrap();
    // git's own writes (an index refresh, say) do not count either.
    fs::write(p.path(".git/index"), "x\n").unwrap();
    p.edit_restarts_as(&mut h, 2);
    // A rule added while hotrun runs counts from then on.
    p.save("src/.ignore", "generated/\n*.bak\n");
    // (Changing the rules is itself a change: it restarts once.)
    h.expect(&["gen 3 started", "src/.ignore changed"]);
    fs::write(p.path("src/app.py.bak"), "x\n").unwrap();
    p.edit_restarts_as(&mut h, 4);
}

#[test]
fn hotruns_own_events_file_in_a_watched_directory_never_restarts() {
    let p = Project::new();
    let (mut h, _log) = p.hotrun(
        &[
            "--debounce",
            "0",
            "--watch",
            ".",
            "--events",
            "events.jsonl",
        ],
        "../server.log",
    );
    p.edit_restarts_as(&mut h, 2);
    p.edit_restarts_as(&mut h, 3);
    let events = fs::read_to_string(p.path("events.jsonl")).unwrap();
    assert!(events.contains("\"spawned\""), "{events}");
}

// `sed -i` is GNU sed's syntax; BSD sed (macOS) needs `-i ''`.
#[cfg(target_os = "linux")]
#[test]
fn sed_in_place_restarts_once_named_after_the_file() {
    if !have("sed") {
        return;
    }
    let p = Project::new();
    fs::write(p.path("marker.txt"), "m\n").unwrap();
    let (mut h, _log) = p.hotrun(&["--debounce", "0", "--watch", "."], "../server.log");
    // sed writes ./sedXXXXXX, then renames it over app.py.
    let status = Command::new("sed")
        .args(["-i", "s/v1/v2/", "src/app.py"])
        .current_dir(&p.dir)
        .status()
        .unwrap();
    assert!(status.success());
    let line = h.expect(&["started"]);
    assert!(
        line.contains("gen 2 started") && line.contains("(src/app.py changed)"),
        "{line}\n{}",
        h.transcript()
    );
    // Exactly once: the next restart is the marker's.
    p.save("marker.txt", "m2\n");
    let line = h.expect(&["started"]);
    assert!(
        line.contains("gen 3 started") && line.contains("(marker.txt changed)"),
        "{line}\n{}",
        h.transcript()
    );
    assert_eq!(h.count(&["sed"]), 0, "{}", h.transcript());
}

/// What vim does on `:w` with its defaults: probe the directory with a file named 4913,
/// keep a swap file, move the original to `app.py~`, write the new file, drop the backup.
fn save_like_vim(dir: &Path) {
    let src = dir.join("src");
    fs::write(src.join(".app.py.swp"), b"b0VIM swap").unwrap();
    fs::write(src.join("4913"), b"").unwrap();
    fs::remove_file(src.join("4913")).unwrap();
    fs::rename(src.join("app.py"), src.join("app.py~")).unwrap();
    fs::write(src.join("app.py"), "print('v2')\n").unwrap();
    fs::remove_file(src.join("app.py~")).unwrap();
    fs::write(src.join(".app.py.swp"), b"b0VIM swap, later").unwrap();
}

/// What JetBrains IDEs and GNOME editors do: write a temporary file beside the real one
/// and rename it over.
fn save_like_an_ide(dir: &Path) {
    let src = dir.join("src");
    fs::write(src.join("app.py___jb_tmp___"), "print('v3')\n").unwrap();
    fs::rename(src.join("app.py"), src.join("app.py___jb_old___")).unwrap();
    fs::rename(src.join("app.py___jb_tmp___"), src.join("app.py")).unwrap();
    fs::remove_file(src.join("app.py___jb_old___")).unwrap();
    fs::write(src.join(".goutputstream-AB12CD"), "print('v4')\n").unwrap();
    fs::rename(src.join(".goutputstream-AB12CD"), src.join("app.py")).unwrap();
}

#[test]
fn editor_saves_are_named_after_the_file_never_a_temporary() {
    let p = Project::new();
    fs::write(p.path("marker.txt"), "m\n").unwrap();
    let (mut h, _log) = p.hotrun(&["--watch", "."], "../server.log");
    save_like_vim(&p.dir);
    save_like_an_ide(&p.dir);
    h.expect(&["started", "(src/app.py changed)"]);
    // Every event of the saves is handled before the marker's (events come in order);
    // however the debounce grouped them, each restart so far is named after app.py.
    touch(&p.path("marker.txt"));
    h.expect(&["started", "(marker.txt changed)"]);
    let starts: Vec<String> = h
        .transcript()
        .lines()
        .filter(|l| l.contains(" started ") && !l.contains("(start)"))
        .map(str::to_owned)
        .collect();
    let (marker, saves) = starts.split_last().unwrap();
    assert!(marker.contains("marker.txt"));
    assert!(
        !saves.is_empty(),
        "the saves restarted nothing\n{}",
        h.transcript()
    );
    for line in saves {
        assert!(
            line.contains("(src/app.py changed)"),
            "a restart named after something else: {line}\n{}",
            h.transcript()
        );
    }
}

#[test]
fn a_server_that_writes_into_the_watched_directory_is_named_once() {
    let p = Project::new();
    // Not ignored: every start writes the log, which restarts the server, which writes…
    let (mut h, _log) = p.hotrun(
        &["--watch", ".", "--events", "../events.jsonl"],
        "log/app.log",
    );
    let hint = h.expect(&["restarts keep coming from"]);
    assert!(
        hint.contains(
            "restarts keep coming from log/app.log, which changes right after each start: \
             is the server writing it? --ignore it or move it out of the watched directory"
        ),
        "{hint}"
    );
    // It goes on restarting (hotrun does not decide for the user), but says it once.
    let gen_now = h.count(&[" started "]);
    h.expect(&[&format!("gen {} started", gen_now + 2)]);
    assert_eq!(
        h.count(&["restarts keep coming from"]),
        1,
        "{}",
        h.transcript()
    );
    // And in the event stream, for CI (read once hotrun is done writing it).
    h.signal(nix::sys::signal::Signal::SIGTERM);
    h.wait();
    let events = fs::read_to_string(p.sb.path("events.jsonl")).unwrap();
    let told: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["event"] == "self_writes")
        .collect();
    assert_eq!(told.len(), 1, "{events}");
    assert_eq!(told[0]["path"], "log/app.log");
}

#[test]
fn bad_ignore_globs_and_poll_intervals_are_refused() {
    for (args, says) in [
        (&["--ignore", "[abc", "--", "true"][..], "--ignore"),
        (&["--ignore", "", "--", "true"][..], "--ignore"),
        (&["--poll", "0", "--", "true"][..], "--poll"),
        (&["--poll", "soon", "--", "true"][..], "--poll"),
    ] {
        let out = Command::new(hotrun_exe()).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn a_bad_line_in_an_ignore_file_is_said_and_the_others_still_count() {
    let p = Project::new();
    fs::write(p.path(".gitignore"), "log/\nsrc/{broken\n").unwrap();
    let (mut h, log) = p.hotrun(&["--debounce", "0", "--watch", "."], "log/app.log");
    let warning = h.expect_anywhere(&["ignore rules:", ".gitignore"]);
    assert!(warning.contains("{broken"), "{warning}");
    log.wait_for(&["start gen=1"]);
    p.edit_restarts_as(&mut h, 2);
    // The same when the file is edited while hotrun runs (and it is said once).
    p.save("src/.gitignore", "*.bak\nalso/{broken\n");
    h.expect(&["gen 3 started", "src/.gitignore changed"]);
    h.expect_anywhere(&["ignore rules:", "src/.gitignore", "also/{broken"]);
    fs::write(p.path("src/x.bak"), "x\n").unwrap();
    p.edit_restarts_as(&mut h, 4);
    assert_eq!(h.count(&["also/{broken"]), 1, "{}", h.transcript());
}

/// `hotrun -w . -- ./server` with the server built into the watched directory (`go build
/// -o server`, `gcc -o server`): a rebuild restarts once, from the binary's own watch,
/// not once more as a `--watch` change of the same file.
#[test]
fn a_rebuilt_binary_inside_the_watched_directory_restarts_once() {
    let p = Project::new();
    let app = p.path("app");
    replace_by_rename(&fixture_exe(), &app);
    let log = Log {
        path: p.sb.path("server.log"),
    };
    let args: Vec<&OsStr> = ["--debounce", "0", "--watch", ".", "--"]
        .iter()
        .map(OsStr::new)
        .chain([app.as_os_str(), OsStr::new("--log"), log.arg()])
        .collect();
    let dir = p.dir.clone();
    let mut h = Hotrun::start_with(&args, move |cmd| {
        cmd.current_dir(dir);
    });
    h.expect(&["gen 1 started"]);
    log.wait_for(&["start gen=1"]);
    // GNU ld's way: unlink, create 0644, write, chmod 0755: many events on the file.
    replace_like_ld(&fixture_exe(), &app);
    let line = h.expect(&["started"]);
    assert!(
        line.contains("gen 2 started") && line.contains("(binary changed)"),
        "{line}\n{}",
        h.transcript()
    );
    log.wait_for(&["start gen=2"]);
    // Exactly once: the next restart is the marker's.
    p.save("marker.txt", "m\n");
    let line = h.expect(&["started"]);
    assert!(
        line.contains("gen 3 started") && line.contains("(marker.txt changed)"),
        "{line}\n{}",
        h.transcript()
    );
}
