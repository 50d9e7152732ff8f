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
