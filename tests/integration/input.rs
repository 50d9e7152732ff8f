//! Bad input: clap's whole message (what the parser rejects) or one clear line (what hotrun
//! checks itself) on stderr, the documented exit code, and nothing started.

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
fn every_bad_input_hotrun_checks_gets_one_line_and_its_exit_code() {
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
        (&["--", missing], 127, "cannot run"),
        (
            &["--", "no-such-command-for-hotrun"],
            127,
            "command not found: no-such-command-for-hotrun",
        ),
        (&["--", plain], 126, "permission denied"),
        (&["--", dir], 126, "it is a directory"),
        (
            &["--watch", missing, "--", app],
            2,
            "no such file or directory",
        ),
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

/// The usage lines clap shows after a missing or unknown argument.
const USAGE: &str = "\
Usage: hotrun [OPTIONS] [--] COMMAND [ARGS]...
       hotrun drill [OPTIONS] [--] COMMAND [ARGS]...

For more information, try '--help'.
";

/// What clap says after a bad value for `option`.
fn bad_value(value: &str, option: &str, why: &str) -> String {
    format!(
        "error: invalid value '{value}' for '{option}'{why}\n\nFor more information, try '--help'.\n"
    )
}

#[test]
fn command_line_errors_are_claps_whole_message_and_exit_2() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let app = app.to_str().unwrap();
    let log = sb.log();
    let missing_command = format!(
        "error: the following required arguments were not provided:\n  <COMMAND>...\n\n{USAGE}"
    );
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec![], missing_command.clone()),
        (vec!["--"], missing_command),
        (
            vec!["--on-exit", "never", "--", app],
            bad_value(
                "never",
                "--on-exit <WHAT>",
                "\n  [possible values: wait, restart, exit]",
            ),
        ),
        (
            vec!["--wacth", ".", "--", app],
            format!(
                "error: unexpected argument '--wacth' found\n\n  \
                 tip: a similar argument exists: '--watch'\n  \
                 tip: to pass '--wacth' as a value, use '-- --wacth'\n\n{USAGE}"
            ),
        ),
        (
            vec!["--bogus", "--", app],
            format!(
                "error: unexpected argument '--bogus' found\n\n  \
                 tip: to pass '--bogus' as a value, use '-- --bogus'\n\n{USAGE}"
            ),
        ),
        (
            vec!["--color", "pink", "--", app],
            bad_value(
                "pink",
                "--color <WHEN>",
                "\n  [possible values: auto, always, never]",
            ),
        ),
        (
            vec!["--grace", "5", "--", app],
            bad_value("5", "--grace <DURATION>", ": add a unit, as in 5s or 5ms"),
        ),
        (
            vec!["--grace", "-1s", "--", app],
            bad_value(
                "-1s",
                "--grace <DURATION>",
                ": durations cannot be negative",
            ),
        ),
        (
            vec!["--grace", "soon", "--", app],
            bad_value(
                "soon",
                "--grace <DURATION>",
                ": expected number at 0 (expected a duration like 500ms, 2s or 1m)",
            ),
        ),
        (
            vec!["--grace", "3d", "--", app],
            bad_value("3d", "--grace <DURATION>", ": too long (at most 24h)"),
        ),
        (
            vec!["--debounce", "x", "--", app],
            bad_value(
                "x",
                "--debounce <DURATION>",
                ": expected number at 0 (expected a duration like 500ms, 2s or 1m)",
            ),
        ),
        (
            vec!["--stop-signal", "FOO", "--", app],
            bad_value(
                "FOO",
                "--stop-signal <SIGNAL>",
                ": unknown signal (expected a name like TERM or INT, or a number)",
            ),
        ),
        (
            vec!["--stop-signal", "99", "--", app],
            bad_value(
                "99",
                "--stop-signal <SIGNAL>",
                ": unknown signal (expected a name like TERM or INT, or a number)",
            ),
        ),
    ];
    for (args, expected) in cases {
        let mut full = args.clone();
        if full.last() == Some(&app) {
            full.extend(["--log", log.path.to_str().unwrap()]);
        }
        let out = Command::new(hotrun_exe())
            .args(&full)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr, expected, "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert!(!log.path.exists(), "a bad command line started the fixture");
}

#[test]
fn command_line_errors_are_coloured_only_on_request_or_on_a_terminal() {
    let run_with = |args: &[&str], env: Option<(&str, &str)>| {
        let mut cmd = Command::new(hotrun_exe());
        cmd.args(args)
            .stdin(Stdio::null())
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE");
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // stderr is a pipe: plain, unless --color always (wherever it stands before the
    // command, even when the line does not parse).
    let plain = run_with(&["--wacth", ".", "--", "true"], None);
    assert!(!plain.contains('\u{1b}'), "{plain}");
    let coloured = run_with(&["--color", "always", "--wacth", ".", "--", "true"], None);
    assert!(coloured.contains("\u{1b}["), "{coloured}");
    assert_eq!(strip_ansi(&coloured), plain);
    let coloured = run_with(
        &["-q", "--color=always", "--grace", "5", "--", "true"],
        None,
    );
    assert!(coloured.contains("\u{1b}["), "{coloured}");
    let coloured = run_with(
        &[
            "drill",
            "--color",
            "always",
            "--restarts",
            "0",
            "--",
            "true",
        ],
        None,
    );
    assert!(coloured.contains("\u{1b}["), "{coloured}");
    // --color after the command belongs to the command.
    let plain = run_with(&["--wacth", "true", "--color", "always"], None);
    assert!(!plain.contains('\u{1b}'), "{plain}");
    // On a terminal, colour unless NO_COLOR says otherwise or --color never.
    #[cfg(target_os = "linux")]
    {
        let on_tty = |args: &[&str], no_color: bool| {
            let (master, slave) = open_pty();
            let mut cmd = Command::new(hotrun_exe());
            cmd.args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(slave)
                .env("TERM", "xterm")
                .env_remove("NO_COLOR")
                .env_remove("CLICOLOR_FORCE");
            if no_color {
                cmd.env("NO_COLOR", "1");
            }
            let status = cmd.status().unwrap();
            assert_eq!(status.code(), Some(2));
            // The command holds our copy of the terminal's other side.
            drop(cmd);
            read_pty(master)
        };
        let shown = on_tty(&["--wacth", ".", "--", "true"], false);
        assert!(shown.contains("\u{1b}["), "{shown:?}");
        assert!(
            strip_ansi(&shown).contains("tip: a similar argument exists: '--watch'"),
            "{shown:?}"
        );
        let shown = on_tty(&["--wacth", ".", "--", "true"], true);
        assert!(!shown.contains('\u{1b}'), "{shown:?}");
        let shown = on_tty(&["--color", "never", "--wacth", ".", "--", "true"], false);
        assert!(!shown.contains('\u{1b}'), "{shown:?}");
    }
}

#[test]
fn a_script_whose_interpreter_is_missing_fails_at_once_naming_it() {
    let sb = Sandbox::new();
    let marker = sb.path("ran");
    let script = sb.path("app.sh");
    fs::write(
        &script,
        format!("#!/nonexistent/interp\ntouch {}\n", marker.display()),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let dir = sb.path("");
    let out = Command::new(hotrun_exe())
        .current_dir(&dir)
        .args(["--", "./app.sh"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(126), "{stderr}");
    assert_eq!(
        stderr,
        "hotrun: error: cannot run ./app.sh: its interpreter /nonexistent/interp (on its #! \
         line) does not exist\n"
    );
    assert!(!marker.exists());
    // An interpreter that is not a program.
    fs::write(&script, "#!/etc\n").unwrap();
    let (code, stderr) = run(&["--", script.to_str().unwrap()]);
    assert_eq!(code, Some(126), "{stderr:?}");
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].ends_with("its interpreter /etc (on its #! line) is not executable"),
        "{stderr:?}"
    );
}

#[test]
fn an_executable_junk_file_is_refused_not_run_through_sh() {
    let sb = Sandbox::new();
    let marker = sb.path("ran");
    // A shell command with no #! line: execvp's ENOEXEC fallback would run it with sh.
    let junk = sb.path("junk");
    fs::write(&junk, format!("touch {}\n", marker.display())).unwrap();
    fs::set_permissions(&junk, fs::Permissions::from_mode(0o755)).unwrap();
    let empty = sb.path("empty");
    fs::write(&empty, "").unwrap();
    fs::set_permissions(&empty, fs::Permissions::from_mode(0o755)).unwrap();
    for (path, why) in [
        (
            &junk,
            "not a program this system can run: no #! line and not an executable binary",
        ),
        (&empty, "it is empty, not a program this system can run"),
    ] {
        let (code, stderr) = run(&["--", path.to_str().unwrap()]);
        assert_eq!(code, Some(126), "{stderr:?}");
        assert_eq!(
            stderr,
            [format!(
                "hotrun: error: cannot run {}: {why}",
                path.display()
            )]
        );
    }
    // Found through PATH, the same.
    let (code, stderr) = {
        let out = Command::new(hotrun_exe())
            .env("PATH", sb.path(""))
            .args(["--", "junk"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(126), "{stderr}");
    assert!(
        stderr.contains("cannot run junk: not a program"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the junk file was run");
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
    let out = match cmd.output() {
        Ok(out) => out,
        Err(err) => {
            runs_here(Some(format!("cannot run hotrun as nobody here: {err}")));
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Permission denied (os error 13)") && stderr.contains("exec") {
        runs_here(Some(format!(
            "nobody cannot execute the test binary here: {stderr}"
        )));
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("ports below 1024 need privileges"),
        "{stderr}"
    );
}
