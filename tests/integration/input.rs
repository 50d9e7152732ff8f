//! Bad input: one clear line on stderr, the documented exit code, and nothing started.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::harness::*;

/// Runs hotrun to completion; returns (exit code, stderr lines).
fn run(args: &[&str]) -> (Option<i32>, Vec<String>) {
    let out = Command::new(hotrun_exe())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect();
    (out.status.code(), stderr)
}

#[test]
fn every_bad_input_gets_one_line_and_its_exit_code() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let app = app.to_str().unwrap();
    let log = sb.log();
    let log_arg = log.path.to_str().unwrap();
    let plain = sb.path("plain.txt");
    fs::write(&plain, "not a program").unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
    let plain = plain.to_str().unwrap();
    let dir = sb.path("dir");
    fs::create_dir(&dir).unwrap();
    let dir = dir.to_str().unwrap();
    let missing = sb.path("missing");
    let missing = missing.to_str().unwrap();

    let cases: &[(&[&str], i32, &str)] = &[
        (&[], 2, "required arguments were not provided"),
        (&["--"], 2, "required arguments were not provided"),
        (&["--", missing], 127, "cannot run"),
        (
            &["--", "no-such-command-for-hotrun"],
            127,
            "command not found: no-such-command-for-hotrun",
        ),
        (&["--", plain], 126, "permission denied"),
        (&["--", dir], 126, "it is a directory"),
        (&["--grace", "5", "--", app], 2, "add a unit"),
        (&["--grace", "-1s", "--", app], 2, "negative"),
        (&["--grace", "soon", "--", app], 2, "expected a duration"),
        (&["--grace", "3d", "--", app], 2, "at most 24h"),
        (&["--debounce", "x", "--", app], 2, "--debounce"),
        (&["--stop-signal", "FOO", "--", app], 2, "unknown signal"),
        (&["--stop-signal", "99", "--", app], 2, "unknown signal"),
        (
            &["--watch", missing, "--", app],
            2,
            "no such file or directory",
        ),
        (&["--on-exit", "never", "--", app], 2, "invalid value"),
        (&["--color", "pink", "--", app], 2, "invalid value"),
        (&["--bogus", "--", app], 2, "unexpected argument"),
    ];
    for (args, code, message) in cases {
        let mut full: Vec<&str> = args.to_vec();
        if full.last() == Some(&app) {
            full.extend(["--log", log_arg]);
        }
        let (got, stderr) = run(&full);
        assert_eq!(got, Some(*code), "{args:?}: {stderr:?}");
        assert_eq!(stderr.len(), 1, "{args:?}: not one line: {stderr:?}");
        assert!(
            stderr[0].starts_with("hotrun: error: ") && stderr[0].contains(message),
            "{args:?}: {:?} lacks {message:?}",
            stderr[0]
        );
    }
    // Nothing was ever started.
    assert!(!log.path.exists(), "a bad command line started the fixture");
}

#[test]
fn help_and_version_exit_zero() {
    let (code, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    let (code, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
}

#[test]
fn paths_with_spaces_and_non_utf8_bytes_work() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let sb = Sandbox::new();
    let dir = sb.path("dir with spaces \u{e9}");
    fs::create_dir(&dir).unwrap();
    let app = dir.join(OsStr::from_bytes(b"app\xff\xfe"));
    replace_by_rename(&fixture_exe(), &app);
    let watched = dir.join(OsStr::from_bytes(b"watch \xff"));
    fs::create_dir(&watched).unwrap();
    let log = sb.log();
    let mut h = Hotrun::start(&[
        "--watch".as_ref(),
        watched.as_os_str(),
        "--".as_ref(),
        app.as_os_str(),
        "--log".as_ref(),
        log.arg(),
    ]);
    h.expect(&["gen 1 started"]);
    log.wait_for(&["start gen=1"]);
    replace_by_rename(&fixture_exe(), &app);
    h.expect(&["gen 2 started", "(binary changed)"]);
    touch(&watched.join("f"));
    h.expect(&["gen 3 started", "changed"]);
    // A missing one is named in the error, bytes shown as replacement characters.
    let missing = dir.join(OsStr::from_bytes(b"gone\xff"));
    let out = Command::new(hotrun_exe())
        .arg("--")
        .arg(&missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(stderr.contains("gone\u{fffd}"), "{stderr}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_port_that_needs_privileges_is_one_line_and_exit_2() {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Unprivileged already: the plain case.
        let (code, stderr) = run(&["--listen", "127.0.0.1:1", "--", "true"]);
        assert_eq!(code, Some(2), "{stderr:?}");
        assert!(
            stderr[0].contains("ports below 1024 need privileges"),
            "{stderr:?}"
        );
        return;
    }
    // As root, drop to nobody for this one run.
    let mut cmd = Command::new(hotrun_exe());
    cmd.args(["--listen", "127.0.0.1:1", "--", "true"]);
    // SAFETY: setgroups/setgid/setuid are async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let Ok(out) = cmd.output() else {
        eprintln!("cannot run hotrun as nobody here: skipped");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Permission denied (os error 13)") && stderr.contains("exec") {
        eprintln!("nobody cannot execute the test binary here: skipped");
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("ports below 1024 need privileges"),
        "{stderr}"
    );
}
