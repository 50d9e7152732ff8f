//! The test harness: a sandbox directory per test, the fixture program installed into it,
//! a driver for a real `hotrun` process whose stderr is read line by line, and the ways
//! build tools replace a binary.
//!
//! Nothing here sleeps to synchronise: every wait is for a line, a file or a process
//! state, polled until a generous deadline, and a timeout panics with the transcript.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, unbounded};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The longest any single wait may take; generous for a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// How often polled conditions are looked at.
const POLL: Duration = Duration::from_millis(5);

pub fn hotrun_exe() -> &'static str {
    env!("CARGO_BIN_EXE_hotrun")
}

/// The fixture program built by `cargo test` (it is an example target).
pub fn fixture_exe() -> PathBuf {
    example("fixture")
}

pub fn example(name: &str) -> PathBuf {
    let bin = Path::new(hotrun_exe());
    let path = bin
        .parent()
        .map(|d| d.join("examples").join(name))
        .unwrap_or_default();
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test`, which builds the examples",
        path.display()
    );
    path
}

/// Waits until `cond` holds, or panics with `what` and `context()`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool, context: impl Fn() -> String) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        if Instant::now() > end {
            panic!("timed out waiting for {what}\n{}", context());
        }
        thread::sleep(POLL);
    }
}

/// A private directory for one test.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("hotrun-test-")
                .tempdir()
                .expect("cannot make a temporary directory"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The fixture, copied in as `name` the safe way (write elsewhere, then rename).
    pub fn install_fixture(&self, name: &str) -> PathBuf {
        let dest = self.path(name);
        replace_by_rename(&fixture_exe(), &dest);
        dest
    }

    /// The fixture's log in this sandbox.
    pub fn log(&self) -> Log {
        Log {
            path: self.path("log"),
        }
    }
}

/// The log the fixture writes (see tests/fixtures/fixture.rs).
pub struct Log {
    pub path: PathBuf,
}

impl Log {
    pub fn arg(&self) -> &OsStr {
        self.path.as_os_str()
    }

    /// The complete lines so far (a line still being written is not one yet).
    pub fn lines(&self) -> Vec<String> {
        complete_lines(&fs::read_to_string(&self.path).unwrap_or_default())
    }

    /// Waits for a line that contains every one of `words`; returns it.
    pub fn wait_for(&self, words: &[&str]) -> String {
        let mut found = None;
        wait_until(
            &format!("a log line with {words:?}"),
            || {
                found = self
                    .lines()
                    .into_iter()
                    .find(|l| words.iter().all(|w| l.contains(w)));
                found.is_some()
            },
            || format!("log:\n{}", self.lines().join("\n")),
        );
        found.unwrap_or_default()
    }

    pub fn count(&self, words: &[&str]) -> usize {
        self.lines()
            .iter()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .count()
    }
}

/// The lines of `text` that end with a newline: what a writer has finished.
pub fn complete_lines(text: &str) -> Vec<String> {
    let done = text.rfind('\n').map_or("", |end| &text[..end]);
    done.lines().map(str::to_owned).collect()
}

/// The JSON objects of an `--events` file so far (complete lines only).
pub fn read_events(path: &Path) -> Vec<serde_json::Value> {
    complete_lines(&fs::read_to_string(path).unwrap_or_default())
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Waits for `n` `backoff` events in an `--events` file and checks them against the rule
/// of a crash loop, with the delays hotrun reports (none typed here): each the double of
/// the one before, up to a maximum where it stays; and each following generation spawned
/// no sooner than its delay after the exit that set it off (timestamps to the
/// millisecond). Returns the delays in ms.
pub fn assert_backoff(events: &Path, n: usize) -> Vec<f64> {
    let kind = |e: &serde_json::Value| e["event"].as_str().unwrap_or_default().to_string();
    wait_until(
        &format!("{n} backoff events"),
        || {
            read_events(events)
                .iter()
                .filter(|e| kind(e) == "backoff")
                .count()
                >= n
        },
        || fs::read_to_string(events).unwrap_or_default(),
    );
    let all = read_events(events);
    let text = || fs::read_to_string(events).unwrap_or_default();
    let ms = |e: &serde_json::Value| -> f64 {
        let ts = e["ts"].as_str().unwrap_or_default();
        humantime::parse_rfc3339(ts)
            .unwrap_or_else(|err| panic!("ts {ts:?}: {err}"))
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or_default()
    };
    let mut delays = Vec::new();
    for (i, e) in all.iter().enumerate().filter(|(_, e)| kind(e) == "backoff") {
        let delay = e["delay_ms"]
            .as_f64()
            .unwrap_or_else(|| panic!("no delay_ms in {e}"));
        delays.push(delay);
        let exited = all[..i]
            .iter()
            .rev()
            .find(|e| kind(e) == "exited")
            .unwrap_or_else(|| panic!("a backoff with no exit before it:\n{}", text()));
        if let Some(spawned) = all[i..].iter().find(|e| kind(e) == "spawned") {
            let waited = ms(spawned) - ms(exited);
            assert!(
                waited >= delay - 1.0,
                "spawned {waited} ms after the exit, before its {delay} ms delay:\n{}",
                text()
            );
        }
    }
    assert!(delays[0] > 0.0, "{delays:?}");
    let mut most = None;
    for pair in delays.windows(2) {
        let (before, now) = (pair[0], pair[1]);
        match most {
            // At the maximum: it stays there.
            Some(max) => assert_eq!(now, max, "{delays:?}"),
            None if now == 2.0 * before => {}
            // Less than the double: the maximum, reached.
            None => {
                assert!(before <= now && now < 2.0 * before, "{delays:?}");
                most = Some(now);
            }
        }
    }
    delays
}

/// CLOCK_MONOTONIC now, in ns: the clock of the fixture's `mono=` and of hotrun's
/// durations, to bound what hotrun measured by what the test saw.
pub fn mono_ns() -> u128 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    ts.tv_sec() as u128 * 1_000_000_000 + ts.tv_nsec() as u128
}

/// Milliseconds between two `mono_ns` readings.
pub fn ms_between(from: u128, to: u128) -> f64 {
    to.saturating_sub(from) as f64 / 1e6
}

/// The value of `key=` in a log or status line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let pat = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(pat.as_str()))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

pub fn pid_in(line: &str) -> i32 {
    field(line, "pid").parse().expect("pid")
}

/// The port in hotrun's `listening on 127.0.0.1:PORT (…)` line.
pub fn listening_port(line: &str) -> u16 {
    line.split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line}"))
}

/// Whether a process is gone (no such pid, or a zombie waiting for its reaper).
#[cfg(not(target_os = "linux"))]
pub fn is_gone(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return true;
    }
    // A zombie still answers kill(0): ask ps for its state.
    Command::new("ps")
        .args(["-o", "stat=", "-p", &pid.to_string()])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Whether a process is gone (no such pid, or a zombie waiting for its reaper).
#[cfg(target_os = "linux")]
pub fn is_gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .map(|i| stat[i + 1..].trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

/// A process as `/proc/PID/stat` shows it (Linux).
#[cfg(target_os = "linux")]
#[derive(Debug, Clone)]
pub struct ProcStat {
    pub pid: i32,
    pub comm: String,
    /// R, S, D, Z, T, …
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
}

#[cfg(target_os = "linux")]
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        comm: stat[open + 1..close].to_string(),
        state,
        ppid,
        pgrp,
    })
}

/// Every process whose parent is `parent`, zombies included (Linux).
#[cfg(target_os = "linux")]
pub fn children_of(parent: i32) -> Vec<ProcStat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_stat)
        .filter(|p| p.ppid == parent)
        .collect()
}

/// Whether a test can run on this machine; `missing` says what it lacks (a tool, a device,
/// privileges, a kind of namespace). A test that cannot run is skipped loudly (a line on
/// stderr naming the test and the reason), except where `CI=true`: there it fails, since
/// CI installs everything the tests need (`.ci/test`). The one way a test skips:
///
/// ```ignore
/// if !runs_here((!Path::new("/dev/full").exists()).then(|| "/dev/full is missing".into())) {
///     return;
/// }
/// ```
pub fn runs_here(missing: Option<String>) -> bool {
    let Some(reason) = missing else {
        return true;
    };
    let test = thread::current().name().unwrap_or("this test").to_string();
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test} cannot run here, and CI=true: {reason} (.ci/test installs what the tests need)"
        );
    }
    eprintln!("SKIPPED {test}: {reason}");
    false
}

/// Whether `tool` can be run (`tool --version`, `go version`); see `runs_here`.
pub fn have(tool: &str) -> bool {
    let arg = if tool == "go" { "version" } else { "--version" };
    let runs = Command::new(tool)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    runs_here((!runs).then(|| format!("{tool} is not installed (`{tool} {arg}` failed)")))
}

/// A tiny cargo project (no dependencies, so it builds offline in a moment) whose binary
/// logs `start gen=G pid=P build=N` to the file given after `--log` and then waits forever:
/// for the tests that need a real `cargo build` (and `cargo clean`) of a real binary.
pub struct TinyCargo {
    cargo: String,
    pub project: PathBuf,
}

impl TinyCargo {
    /// The project in `sb`, or `None` when cargo is not here (see `runs_here`).
    pub fn new(sb: &Sandbox) -> Option<TinyCargo> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        if !have(&cargo) {
            return None;
        }
        let project = sb.path("tiny");
        fs::create_dir_all(project.join("src")).unwrap();
        fs::write(
            project.join("Cargo.toml"),
            "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[workspace]\n",
        )
        .unwrap();
        Some(TinyCargo { cargo, project })
    }

    /// Runs `cargo ARGS --offline --quiet` in the project; a failure fails the test.
    pub fn run(&self, args: &[&str]) {
        let out = Command::new(&self.cargo)
            .args(args)
            .args(["--offline", "--quiet"])
            .current_dir(&self.project)
            .env("CARGO_TARGET_DIR", self.project.join("target"))
            .env_remove("RUSTFLAGS")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes build `n` of the source and runs `cargo build`.
    pub fn build(&self, n: u32) {
        fs::write(
            self.project.join("src/main.rs"),
            format!(
                "fn main() {{ let log = std::env::args().nth(2).unwrap();\n\
                 let line = format!(\"start gen={{}} pid={{}} build={n}\\n\", std::env::var(\"HOTRUN_GEN\").unwrap(), std::process::id());\n\
                 use std::io::Write; std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap().write_all(line.as_bytes()).unwrap();\n\
                 loop {{ std::thread::park(); }} }}\n"
            ),
        )
        .unwrap();
        self.run(&["build"]);
    }

    /// The binary `cargo build` makes.
    pub fn binary(&self) -> PathBuf {
        self.project.join("target/debug/tiny")
    }
}

/// Whether this process runs as root; see `runs_here`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub fn root(why: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    runs_here((!root).then(|| format!("{why} needs root")))
}

pub fn wait_gone(pid: i32) {
    wait_until(
        &format!("pid {pid} to be gone"),
        || is_gone(pid),
        String::new,
    );
}

/// Starts hotrun on the fixture installed as `app` in the sandbox, logging to the
/// sandbox's log; returns once the first generation has logged its start.
pub fn start_fixture(sb: &Sandbox, hotrun_args: &[&str], fixture_args: &[&str]) -> Hotrun {
    let app = sb.install_fixture("app");
    let log = sb.log();
    let mut args: Vec<&OsStr> = hotrun_args.iter().map(|a| OsStr::new(*a)).collect();
    args.extend([
        OsStr::new("--"),
        app.as_os_str(),
        OsStr::new("--log"),
        log.arg(),
    ]);
    args.extend(fixture_args.iter().map(|a| OsStr::new(*a)));
    let h = Hotrun::start(&args);
    log.wait_for(&["start gen=1"]);
    h
}

/// A running `hotrun`, with its stderr collected line by line.
pub struct Hotrun {
    child: Child,
    lines: Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
    next: usize,
    status: Option<ExitStatus>,
}

impl Hotrun {
    pub fn start<S: AsRef<OsStr>>(args: &[S]) -> Hotrun {
        Hotrun::start_with(args, |_| {})
    }

    pub fn start_with<S: AsRef<OsStr>>(args: &[S], setup: impl FnOnce(&mut Command)) -> Hotrun {
        Hotrun::start_opts(args, true, setup)
    }

    /// `own_group`: start hotrun in a process group of its own (off when the test makes
    /// it a session leader instead).
    pub fn start_opts<S: AsRef<OsStr>>(
        args: &[S],
        own_group: bool,
        setup: impl FnOnce(&mut Command),
    ) -> Hotrun {
        Hotrun::start_program(hotrun_exe(), args, own_group, setup)
    }

    /// Starts `program` (hotrun, or a tool that runs hotrun: `unshare … hotrun …`) the same
    /// way; `pid()` is then that program's.
    pub fn start_program<P: AsRef<OsStr>, S: AsRef<OsStr>>(
        program: P,
        args: &[S],
        own_group: bool,
        setup: impl FnOnce(&mut Command),
    ) -> Hotrun {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE");
        if own_group {
            // Out of the test runner's group: a signal for the runner is not for hotrun.
            cmd.process_group(0);
        }
        setup(&mut cmd);
        let mut child = cmd.spawn().expect("cannot start hotrun");
        let (tx, rx) = unbounded();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for (tag, pipe) in [
            (
                "",
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            ),
            (
                "stdout: ",
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            ),
        ] {
            let Some(pipe) = pipe else { continue };
            let tx = tx.clone();
            let seen = Arc::clone(&seen);
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let line = format!("{tag}{line}");
                    seen.lock().expect("lock").push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        Hotrun {
            child,
            lines: rx,
            seen,
            next: 0,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// hotrun's stdin, when the setup made it a pipe.
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Everything hotrun printed so far (stderr; stdout lines start with "stdout: ").
    pub fn transcript(&self) -> String {
        self.seen.lock().expect("lock").join("\n")
    }

    /// Waits for the next output line containing every one of `words` (lines before it
    /// are skipped, and later calls look only after it).
    pub fn expect(&mut self, words: &[&str]) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let line = {
                let seen = self.seen.lock().expect("lock");
                seen.get(self.next).cloned()
            };
            if let Some(line) = line {
                self.next += 1;
                if words.iter().all(|w| line.contains(w)) {
                    return line;
                }
                continue;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "timed out waiting for a line with {words:?}\ntranscript:\n{}",
                    self.transcript()
                );
            }
            let _ = self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)));
        }
    }

    /// Waits until any line so far contains every one of `words`, wherever it stands
    /// (stdout and stderr are separate pipes, so their relative order is not fixed). The
    /// cursor of `expect` does not move.
    pub fn expect_anywhere(&mut self, words: &[&str]) -> String {
        let mut found = None;
        wait_until(
            &format!("a line with {words:?}"),
            || {
                found = self
                    .seen
                    .lock()
                    .expect("lock")
                    .iter()
                    .find(|l| words.iter().all(|w| l.contains(w)))
                    .cloned();
                found.is_some()
            },
            || self.transcript(),
        );
        found.unwrap_or_default()
    }

    /// How many lines so far contain every one of `words`.
    pub fn count(&self, words: &[&str]) -> usize {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .count()
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).expect("cannot signal hotrun");
    }

    /// Whether hotrun is still running (it has not exited, or not been waited for).
    pub fn running(&mut self) -> bool {
        self.status.is_none() && matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until hotrun has handled everything that reached it so far (signals, file
    /// events, child exits) and has nothing scheduled: a handshake for "nothing happened",
    /// which no output line can show (Linux; see `waits::wait_idle`).
    #[cfg(target_os = "linux")]
    pub fn wait_idle(&self) {
        crate::waits::wait_idle(self.pid(), crate::waits::Timers::None, &|| {
            self.transcript()
        });
    }

    /// The same, but a deadline may be set (during a grace period, say).
    #[cfg(target_os = "linux")]
    pub fn wait_asleep(&self) {
        crate::waits::wait_idle(self.pid(), crate::waits::Timers::Allowed, &|| {
            self.transcript()
        });
    }

    /// Waits for hotrun to exit.
    pub fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.status = Some(status);
                // Let the readers catch up with the last lines.
                let _ = wait_for_eof(&self.lines);
                return status;
            }
            if Instant::now() > end {
                panic!("hotrun did not exit\ntranscript:\n{}", self.transcript());
            }
            thread::sleep(POLL);
        }
    }
}

fn wait_for_eof(lines: &Receiver<String>) -> Option<()> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match lines.recv_deadline(end) {
            Ok(_) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Some(()),
            Err(_) => return None,
        }
    }
}

impl Drop for Hotrun {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            // A failed test: SIGKILL hotrun; its guardian kills the generations' groups.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---- the ways build tools put a new binary in place ---------------------------------------

/// `mv`, rust-lld's output, most editors: write a temporary file, rename it over.
pub fn replace_by_rename(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("hotrun-tmp");
    fs::copy(src, &tmp).expect("copy");
    fs::rename(&tmp, dest).expect("rename");
}

/// cargo: the new artifact lives in deps/; the old name is unlinked and hard-linked anew.
pub fn replace_like_cargo(src: &Path, dest: &Path) {
    let deps = dest.parent().expect("parent").join("deps");
    fs::create_dir_all(&deps).expect("deps dir");
    let artifact = deps.join(format!(
        "{}-{}",
        dest.file_name().and_then(OsStr::to_str).unwrap_or("bin"),
        std::process::id() as u64 * 1000 + u64::from(rand_tick())
    ));
    replace_by_rename(src, &artifact);
    let _ = fs::remove_file(dest);
    fs::hard_link(&artifact, dest).expect("hard link");
}

/// GNU ld: unlink, create 0644, write in pieces, close, then chmod 0755.
pub fn replace_like_ld(src: &Path, dest: &Path) {
    let data = fs::read(src).expect("read");
    let _ = fs::remove_file(dest);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(dest)
        .expect("create");
    fs::set_permissions(dest, fs::Permissions::from_mode(0o644)).expect("chmod 644");
    for chunk in data.chunks(64 * 1024) {
        file.write_all(chunk).expect("write");
        file.flush().expect("flush");
    }
    drop(file);
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755)).expect("chmod 755");
}

/// `cp --remove-destination` (and Go's copy when it cannot rename).
#[cfg(target_os = "linux")]
pub fn replace_with_cp(src: &Path, dest: &Path) {
    run_tool(
        Command::new("cp")
            .arg("--remove-destination")
            .arg(src)
            .arg(dest),
    );
}

/// `install -m 755`.
pub fn replace_with_install(src: &Path, dest: &Path) {
    run_tool(
        Command::new("install")
            .arg("-m")
            .arg("755")
            .arg(src)
            .arg(dest),
    );
}

fn run_tool(cmd: &mut Command) {
    let status = cmd.status().expect("cannot run the tool");
    assert!(status.success(), "{cmd:?} failed: {status}");
}

fn rand_tick() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// Opens a file for appending (a marker the tests touch to prove ordering).
pub fn touch(path: &Path) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("touch");
    f.write_all(b"x\n").expect("write marker");
}

/// A new pseudo-terminal: (master, slave), both close-on-exec so that no other test's
/// child keeps them open.
#[cfg(target_os = "linux")]
pub fn open_pty() -> (std::os::fd::OwnedFd, fs::File) {
    use nix::fcntl::OFlag;
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    use std::os::unix::fs::OpenOptionsExt;
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(ptsname_r(&master).unwrap())
        .unwrap();
    (std::os::fd::OwnedFd::from(master), slave)
}

/// Makes the command a session leader with `slave` as its stdin and controlling terminal
/// (as a login shell would be). Use with `Hotrun::start_opts(.., false, ..)`.
#[cfg(target_os = "linux")]
pub fn with_controlling_tty(cmd: &mut Command, slave: fs::File) {
    cmd.stdin(Stdio::from(slave));
    // SAFETY: setsid and ioctl are async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Everything written to a pty whose writer has exited.
#[cfg(target_os = "linux")]
pub fn read_pty(master: std::os::fd::OwnedFd) -> String {
    use std::io::Read;
    let mut file = fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // EIO once the other side is closed and drained.
    while let Ok(n) = file.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` without its ANSI escape sequences (colours and styles).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
