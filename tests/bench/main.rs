//! hotrun's benchmark: how fast a replaced binary or a SIGHUP becomes a running new
//! generation, how an ld-style write is waited for, and what hotrun costs while idle.
//! The same cases run through entr and watchexec when they are on the PATH.
//!
//! ```text
//! cargo build --release --examples
//! target/release/examples/bench                 # everything, with the default runs
//! target/release/examples/bench reaction 41     # only reaction latency, 41 runs per case
//! target/release/examples/bench load 200        # only downtime under load, 200 restarts
//! target/release/examples/bench own-port 100    # a server binding its own port: takeover vs peers
//! target/release/examples/bench filter 20000    # the cost of takeover's seccomp filter
//! target/release/examples/bench idle 5          # only the idle cost, median of 5 runs
//! target/release/examples/bench build           # only the edit -> build -> restart loop (5 edits)
//! target/release/examples/bench soak 20000      # restarts in a row: descriptors, memory, leftovers
//! ```
//!
//! Latency is measured from the moment the benchmark replaces the binary (the rename, the
//! hard link, the final chmod) or sends SIGHUP, to the moment the new fixture process
//! reads CLOCK_MONOTONIC first thing in `main` (so exec and dynamic loading are included,
//! for every tool alike).
#![allow(clippy::unwrap_used)]

mod build;
#[path = "../shared/cargo_project.rs"]
mod cargo_project;
mod load;
mod own_port;
#[path = "../shared/ports.rs"]
mod ports;

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const TARGET_REPLACE_MS: f64 = 5.0;
const TARGET_SIGHUP_MS: f64 = 3.0;
const TARGET_LD_MS: f64 = 200.0;

fn main() {
    kill_tracked_on_panic();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = match args.first().map(String::as_str) {
        Some(
            w @ ("reaction" | "load" | "own-port" | "filter" | "soak" | "idle" | "build" | "all"),
        ) => w.to_string(),
        _ => "all".to_string(),
    };
    let count: Option<usize> = args.iter().find_map(|a| a.parse().ok());
    let exe_dir = std::env::current_exe().unwrap();
    let examples = exe_dir.parent().unwrap();
    let fixture = examples.join("fixture");
    let hotrun = examples.parent().unwrap().join("hotrun");
    assert!(
        fixture.exists() && hotrun.exists(),
        "build first: cargo build --release --examples (the bench looks for {} and {})",
        fixture.display(),
        hotrun.display()
    );
    println!("machine: {} cores, {}", cores(), kernel());
    let all = what == "all";
    if all || what == "reaction" {
        reaction(&hotrun, &fixture, count.unwrap_or(21).max(15));
    }
    if all || what == "load" {
        downtime(&hotrun, &fixture, count.unwrap_or(100).max(5));
    }
    if all || what == "own-port" {
        own_port::downtime(&hotrun, &fixture, count.unwrap_or(100).max(5));
    }
    if all || what == "filter" {
        own_port::filter_cost(&hotrun, &fixture, count.unwrap_or(20_000).max(100));
    }
    if all || what == "idle" {
        idle(&hotrun, &fixture, count.unwrap_or(3).max(1));
    }
    if all || what == "build" {
        let edits = count.map_or(build::EDITS, |n| u32::try_from(n).unwrap_or(build::EDITS));
        build::build_loop(&hotrun, edits.max(1));
    }
    if all || what == "soak" {
        soak(&hotrun, &fixture, count.unwrap_or(10_000).max(10));
    }
}

fn soak(hotrun: &Path, fixture: &Path, restarts: usize) {
    println!();
    let r = load::soak(hotrun, fixture, restarts);
    println!(
        "soak: {} restarts of a server that forks a grandchild, in {:.0} s ({:.1} ms each)",
        r.restarts,
        r.seconds,
        r.seconds * 1e3 / r.restarts as f64
    );
    let flat = r.fds.0 == r.fds.1 && r.leftover == 0 && r.zombies == 0;
    println!(
        "  hotrun's open fds {} -> {}; RSS {:.2} -> {:.2} MiB; leftover processes {}; zombies {}; needed SIGKILL {}{}",
        r.fds.0,
        r.fds.1,
        r.rss_kib.0 as f64 / 1024.0,
        r.rss_kib.1 as f64 / 1024.0,
        r.leftover,
        r.zombies,
        r.killed,
        if flat { "" } else { "  MISS" }
    );
}

fn downtime(hotrun: &Path, fixture: &Path, restarts: usize) {
    println!();
    println!(
        "downtime under load: one client asking continuously; the server needs 200 ms to start"
    );
    let rounds = (restarts / 10).max(5);
    let mut rows = vec![
        (
            "hotrun --listen --ready notify, SIGHUP",
            load::hotrun_restarts(hotrun, fixture, restarts),
        ),
        (
            "hotrun, broken build then good build",
            load::hotrun_broken_builds(hotrun, fixture, rounds),
        ),
        (
            "hotrun --no-takeover, fixed port",
            load::hotrun_fixed_port(hotrun, fixture, rounds),
        ),
    ];
    if which("systemfd") && which("watchexec") {
        rows.push((
            "systemfd + watchexec -r, rebuild",
            load::systemfd_watchexec_restarts(fixture, restarts),
        ));
    }
    println!(
        "{:<42} {:>8} {:>9} {:>7} {:>15} {:>9}  served after restart",
        "case", "restarts", "answered", "failed", "longest gap ms", "p99 ms"
    );
    for (name, r) in &rows {
        let served = r
            .served_after
            .map_or("-".to_string(), |n| format!("{n} of {}", r.restarts));
        println!(
            "{:<42} {:>8} {:>9} {:>7} {:>15.1} {:>9.2}  {served}",
            name, r.restarts, r.answered, r.failed, r.longest_gap_ms, r.p99_ms
        );
    }
    let ours = &rows[0].1;
    let broken = &rows[1].1;
    let met = ours.failed == 0 && ours.longest_gap_ms <= load::TARGET_GAP_MS && broken.failed == 0;
    println!(
        "targets: 0 failed, longest gap <= {} ms, 0 failed through broken builds: {}",
        load::TARGET_GAP_MS,
        if met { "met" } else { "MISS" }
    );
}

fn reaction(hotrun: &Path, fixture: &Path, runs: usize) {
    let hotrun = hotrun.to_path_buf();
    let fixture = fixture.to_path_buf();
    println!("reaction latency: {runs} runs per case, medians and p90 in ms");
    let mut tools = vec![Tool::Hotrun(hotrun.clone())];
    if which("entr") {
        tools.push(Tool::Entr);
    }
    if which("watchexec") {
        tools.push(Tool::Watchexec);
    }
    if which("nodemon") {
        tools.push(Tool::Nodemon);
    }
    let names: Vec<&str> = tools.iter().map(Tool::name).collect();
    println!("tools: {}", names.join(", "));
    println!();

    let mut rows = Vec::new();
    for case in [Case::Rename, Case::HardLink, Case::Ld, Case::Sighup] {
        let mut cells = Vec::new();
        for tool in &tools {
            if case == Case::Sighup && !matches!(tool, Tool::Hotrun(_)) {
                cells.push(None);
                continue;
            }
            eprint!("  {} / {} ...", case.name(), tool.name());
            let result = measure(tool, case, &fixture, runs);
            eprintln!(" median {:.2} ms", result.median);
            cells.push(Some(result));
        }
        rows.push((case, cells));
    }

    println!(
        "{:<26} {:>10} {:>10} {:>9} {:>7}  peers (median, ratio peer/hotrun)",
        "case", "median", "p90", "target", "met"
    );
    for (case, cells) in &rows {
        let Some(Some(ours)) = cells.first() else {
            continue;
        };
        let (target, met) = case.target(ours);
        let mut peers = Vec::new();
        for (tool, cell) in tools.iter().zip(cells).skip(1) {
            match cell {
                Some(r) if r.median.is_nan() => peers.push(format!(
                    "{} missed every run{}",
                    tool.name(),
                    r.early_note()
                )),
                Some(r) => peers.push(format!(
                    "{} {:.1} ms{} (x{:.1})",
                    tool.name(),
                    r.median,
                    r.early_note(),
                    r.median / ours.median.max(0.001)
                )),
                None => peers.push(format!("{} n/a", tool.name())),
            }
        }
        println!(
            "{:<26} {:>10.2} {:>10.2} {:>9} {:>7}  {}",
            format!("{}{}", case.name(), ours.early_note()),
            ours.median,
            ours.p90,
            target,
            if met { "yes" } else { "MISS" },
            peers.join("; ")
        );
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Rename,
    HardLink,
    Ld,
    Sighup,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Rename => "rename -> exec",
            Case::HardLink => "hard link -> exec",
            Case::Ld => "ld write: chmod -> exec",
            Case::Sighup => "SIGHUP -> exec",
        }
    }

    fn target(self, r: &Result) -> (String, bool) {
        match self {
            Case::Rename | Case::HardLink => (
                format!("<= {TARGET_REPLACE_MS} ms"),
                r.median <= TARGET_REPLACE_MS,
            ),
            Case::Sighup => (
                format!("<= {TARGET_SIGHUP_MS} ms"),
                r.median <= TARGET_SIGHUP_MS,
            ),
            Case::Ld => (
                format!("<= {TARGET_LD_MS} ms"),
                r.max <= TARGET_LD_MS && r.early == 0,
            ),
        }
    }
}

enum Tool {
    Hotrun(PathBuf),
    Entr,
    Watchexec,
    Nodemon,
}

impl Tool {
    fn name(&self) -> &'static str {
        match self {
            Tool::Hotrun(_) => "hotrun",
            Tool::Entr => "entr",
            Tool::Watchexec => "watchexec",
            Tool::Nodemon => "nodemon",
        }
    }

    /// Starts the tool on `app` (in `dir`), logging to `log`.
    fn start(&self, dir: &Path, app: &Path, log: &Path) -> Child {
        self.start_with(dir, app, log, &[], &[])
    }

    /// Starts the tool on `app --log LOG EXTRA…` (in `dir`); `hotrun_args` go to hotrun
    /// only.
    fn start_with(
        &self,
        dir: &Path,
        app: &Path,
        log: &Path,
        hotrun_args: &[&str],
        extra: &[String],
    ) -> Child {
        let mut fixture_args: Vec<OsString> = vec![app.into(), "--log".into(), log.into()];
        fixture_args.extend(extra.iter().map(OsString::from));
        let mut cmd = match self {
            Tool::Hotrun(exe) => {
                let mut c = Command::new(exe);
                c.arg("--quiet")
                    .args(hotrun_args)
                    .arg("--")
                    .args(&fixture_args);
                c
            }
            Tool::Entr => {
                // entr reads the files to watch from stdin; -r restarts, -n: no tty.
                let mut c = Command::new("entr");
                c.arg("-rn").args(&fixture_args);
                c
            }
            Tool::Nodemon => {
                // nodemon runs --exec through a shell; the paths here have no spaces.
                let mut c = Command::new("nodemon");
                c.args(["--quiet", "--watch"])
                    .arg(app)
                    .arg("--exec")
                    .arg(format!(
                        "{} --log {} {}",
                        app.display(),
                        log.display(),
                        extra.join(" ")
                    ));
                c
            }
            Tool::Watchexec => {
                let mut c = Command::new("watchexec");
                c.args(["-r", "-n", "-q", "-w"])
                    .arg(dir)
                    .args(["-f", "**/app", "--"])
                    .args(&fixture_args);
                c
            }
        };
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        if let Tool::Entr = self {
            cmd.stdin(Stdio::piped());
            let mut child = spawn_tracked(&mut cmd);
            let mut stdin = child.stdin.take().unwrap();
            writeln!(stdin, "{}", app.display()).unwrap();
            drop(stdin);
            return child;
        }
        cmd.stdin(Stdio::null());
        spawn_tracked(&mut cmd)
    }
}

struct Result {
    median: f64,
    p90: f64,
    max: f64,
    /// Generations that started before the binary was complete.
    early: usize,
    /// Replacements that gave no new generation within 5 s.
    missed: usize,
}

impl Result {
    fn early_note(&self) -> String {
        let mut note = String::new();
        if self.early > 0 {
            note.push_str(&format!(" [{} early starts]", self.early));
        }
        if self.missed > 0 {
            note.push_str(&format!(" [{} missed]", self.missed));
        }
        note
    }
}

fn measure(tool: &Tool, case: Case, fixture: &Path, runs: usize) -> Result {
    let Scratch { dir, app, log } = scratch("hotrun-bench-", fixture);
    let mut child = tool.start(dir.path(), &app, &log);
    let mut starts = wait_starts(&log, 1);
    let mut samples = Vec::new();
    let mut early = 0;
    let mut missed = 0;
    for i in 0..runs + 1 {
        // Let the previous generation finish stopping before the next replacement.
        thread::sleep(Duration::from_millis(100));
        let t0 = match case {
            Case::Rename => {
                let tmp = dir.path().join(".app.tmp");
                fs::copy(fixture, &tmp).unwrap();
                let t = mono_ns();
                fs::rename(&tmp, &app).unwrap();
                t
            }
            Case::HardLink => {
                let deps = dir.path().join("deps");
                fs::create_dir_all(&deps).unwrap();
                let artifact = deps.join(format!("app-{i}"));
                copy_rename(fixture, &artifact);
                let t = mono_ns();
                fs::remove_file(&app).unwrap();
                fs::hard_link(&artifact, &app).unwrap();
                t
            }
            Case::Ld => {
                let data = fs::read(fixture).unwrap();
                let _ = fs::remove_file(&app);
                let mut f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&app)
                    .unwrap();
                fs::set_permissions(&app, fs::Permissions::from_mode(0o644)).unwrap();
                for chunk in data.chunks(64 * 1024) {
                    f.write_all(chunk).unwrap();
                    // A linker takes its time between writes.
                    thread::sleep(Duration::from_millis(1));
                }
                drop(f);
                let t = mono_ns();
                fs::set_permissions(&app, fs::Permissions::from_mode(0o755)).unwrap();
                t
            }
            Case::Sighup => {
                let t = mono_ns();
                kill(Pid::from_raw(child.id() as i32), Signal::SIGHUP).unwrap();
                t
            }
        };
        let Some(now) = try_wait_starts(&log, starts.len() + 1, Duration::from_secs(5)) else {
            missed += 1;
            continue;
        };
        let new = &now[starts.len()..];
        early += new.iter().filter(|&&m| m < t0).count();
        let last = *new.last().unwrap();
        // The first round warms the page cache; it is not counted.
        if i > 0 {
            samples.push((last.saturating_sub(t0)) as f64 / 1e6);
        }
        starts = now;
    }
    stop_tracked(&mut child);
    samples.sort_by(f64::total_cmp);
    Result {
        median: percentile(&samples, 0.5),
        p90: percentile(&samples, 0.9),
        max: samples.last().copied().unwrap_or(0.0),
        early,
        missed,
    }
}

const TARGET_IDLE_WAKEUPS: u64 = 0;
const TARGET_IDLE_PSS_KIB: u64 = 2048;

/// What a tool costs while nothing happens: how often its threads wake in 10 s (the sum
/// of voluntary and involuntary context switches over every thread of the tool's own
/// processes, hotrun's guardian included, from /proc/PID/task/*/status) and its memory as
/// PSS (from /proc/PID/smaps_rollup: shared pages count once across the processes sharing
/// them). The command it runs (the fixture) is not counted. Medians of `runs` runs.
fn idle(hotrun: &Path, fixture: &Path, runs: usize) {
    println!();
    println!(
        "idle for 10 s after a 1 s settle, median of {runs} runs (the supervised command not counted)"
    );
    let mut cases: Vec<(&str, Vec<String>, IdleTool)> = vec![
        ("hotrun", Vec::new(), IdleTool::Hotrun(hotrun.to_path_buf())),
        (
            "hotrun --listen --ready notify",
            vec!["--listen-fd".into(), "--notify".into()],
            IdleTool::HotrunSocket(hotrun.to_path_buf()),
        ),
    ];
    if which("entr") {
        cases.push(("entr -r", Vec::new(), IdleTool::Peer(Tool::Entr)));
    }
    if which("watchexec") {
        cases.push(("watchexec -r", Vec::new(), IdleTool::Peer(Tool::Watchexec)));
    }
    println!(
        "{:<32} {:>9} {:>10}  processes (PSS MiB each)",
        "tool", "wakeups", "PSS MiB"
    );
    let mut ours = None;
    for (name, extra, tool) in &cases {
        let mut wakeups = Vec::new();
        let mut pss = Vec::new();
        let mut parts = String::new();
        for _ in 0..runs {
            let r = idle_once(tool, fixture, extra);
            wakeups.push(r.wakeups);
            pss.push(r.pss_kib.iter().sum::<u64>());
            parts = r
                .pss_kib
                .iter()
                .map(|k| format!("{:.2}", *k as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(" + ");
        }
        wakeups.sort_unstable();
        pss.sort_unstable();
        let (w, p) = (wakeups[wakeups.len() / 2], pss[pss.len() / 2]);
        if ours.is_none() {
            ours = Some((w, p));
        }
        println!(
            "{:<32} {:>9} {:>10.2}  {} (all runs: wakeups {:?})",
            name,
            w,
            p as f64 / 1024.0,
            parts,
            wakeups
        );
    }
    if let Some((w, p)) = ours {
        let met = w == TARGET_IDLE_WAKEUPS && p <= TARGET_IDLE_PSS_KIB;
        println!(
            "targets for hotrun: {TARGET_IDLE_WAKEUPS} wakeups in 10 s, PSS of hotrun + guardian <= {:.0} MiB: {}",
            TARGET_IDLE_PSS_KIB as f64 / 1024.0,
            if met { "met" } else { "MISS" }
        );
    }
}

enum IdleTool {
    Hotrun(PathBuf),
    /// With a passed socket and sd_notify readiness (one more thread per generation).
    HotrunSocket(PathBuf),
    Peer(Tool),
}

struct IdleResult {
    wakeups: u64,
    /// PSS of each of the tool's own processes.
    pss_kib: Vec<u64>,
}

fn idle_once(tool: &IdleTool, fixture: &Path, fixture_extra: &[String]) -> IdleResult {
    let Scratch { dir, app, log } = scratch("hotrun-bench-idle-", fixture);
    let mut child = match tool {
        IdleTool::Hotrun(exe) | IdleTool::HotrunSocket(exe) => {
            let mut c = Command::new(exe);
            c.arg("--quiet");
            if let IdleTool::HotrunSocket(_) = tool {
                c.args(["--listen", "127.0.0.1:0", "--ready", "notify"]);
            }
            c.arg("--")
                .arg(&app)
                .arg("--log")
                .arg(&log)
                .args(fixture_extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            spawn_tracked(&mut c)
        }
        IdleTool::Peer(peer) => peer.start(dir.path(), &app, &log),
    };
    wait_starts(&log, 1);
    thread::sleep(Duration::from_secs(1));
    let pids = own_processes(child.id());
    let before: u64 = pids.iter().map(|p| context_switches(*p)).sum();
    thread::sleep(Duration::from_secs(10));
    let after: u64 = pids.iter().map(|p| context_switches(*p)).sum();
    let pss_kib = pids.iter().map(|p| pss_kib(*p)).collect();
    stop_tracked(&mut child);
    IdleResult {
        wakeups: after.saturating_sub(before),
        pss_kib,
    }
}

/// The tool's process and its children that run the same executable (hotrun's guardian,
/// whether it is a re-exec or a fork); not the command it supervises.
fn own_processes(pid: u32) -> Vec<u32> {
    let exe = |p: u32| fs::read_link(format!("/proc/{p}/exe")).ok();
    let mine = exe(pid);
    let mut out = vec![pid];
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let rest = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(pid) && mine.is_some() && exe(p) == mine {
            out.push(p);
        }
    }
    out
}

/// Voluntary plus involuntary context switches of every thread of a process.
fn context_switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

fn pss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until the log holds `n` start lines; returns their CLOCK_MONOTONIC stamps.
fn wait_starts(log: &Path, n: usize) -> Vec<u128> {
    try_wait_starts(log, n, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no new generation in 30 s ({log:?})"))
}

fn try_wait_starts(log: &Path, n: usize, limit: Duration) -> Option<Vec<u128>> {
    let deadline = Instant::now() + limit;
    loop {
        let stamps: Vec<u128> = fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("start "))
            .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("mono=")))
            .filter_map(|m| m.parse().ok())
            .collect();
        if stamps.len() >= n {
            return Some(stamps);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_micros(200));
    }
}

/// Process groups of the tools started, killed if the benchmark panics (a peer such as
/// nodemon leaves its child behind when it is killed alone, and so would a panicking
/// benchmark leave a tool running).
static GROUPS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Starts a tool in a process group of its own, remembered for clean-up.
fn spawn_tracked(cmd: &mut Command) -> Child {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let child = cmd.spawn().unwrap();
    GROUPS.lock().unwrap().push(child.id() as i32);
    child
}

/// Stops a tool: SIGTERM to its group, a wait of at most 15 s, then SIGKILL to whatever
/// is left in its group.
fn stop_tracked(child: &mut Child) {
    let pgid = Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pgid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let _ = nix::sys::signal::killpg(pgid, Signal::SIGKILL);
    let _ = child.wait();
    GROUPS.lock().unwrap().retain(|g| *g != pgid.as_raw());
}

fn kill_tracked_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(groups) = GROUPS.lock() {
            for g in groups.iter() {
                let _ = nix::sys::signal::killpg(Pid::from_raw(*g), Signal::SIGKILL);
            }
        }
        default(info);
    }));
}

/// A private directory with the fixture installed as `app`; the log path beside it.
struct Scratch {
    dir: tempfile::TempDir,
    app: PathBuf,
    log: PathBuf,
}

fn scratch(prefix: &str, fixture: &Path) -> Scratch {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    let app = dir.path().join("app");
    let log = dir.path().join("log");
    copy_rename(fixture, &app);
    Scratch { dir, app, log }
}

fn copy_rename(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("copy-tmp");
    fs::copy(src, &tmp).unwrap();
    fs::rename(&tmp, dest).unwrap();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

fn mono_ns() -> u128 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    ts.tv_sec() as u128 * 1_000_000_000 + ts.tv_nsec() as u128
}

fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn cores() -> usize {
    thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_string())
}
