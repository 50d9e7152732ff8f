//! A server that binds its own port — the command in the first line of the README — under
//! continuous load, restarted by a rebuild, through hotrun (socket takeover), hotrun
//! without it, and the peers on the PATH (watchexec, nodemon, entr), in one run; then the
//! same through broken builds; and what socket takeover's seccomp filter costs a system
//! call.

use std::fs;
use std::path::Path;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use crate::load::{Client, LoadResult, STARTUP_MS};
use crate::ports::reserve_port;
use crate::{Scratch, Tool, copy_rename, scratch, stop_tracked, which};

/// The issue's targets for hotrun with takeover.
const TARGET_GAP_MS: f64 = 10.0;
const TARGET_PASSING_BIND_US: f64 = 20.0;

/// The tools of the run: hotrun with and without takeover, and the peers on the PATH.
fn contenders(hotrun: &Path) -> Vec<(String, Tool, &'static [&'static str])> {
    let mut tools = vec![
        (
            "hotrun (takeover)".to_string(),
            Tool::Hotrun(hotrun.to_path_buf()),
            &[][..],
        ),
        (
            "hotrun --no-takeover".to_string(),
            Tool::Hotrun(hotrun.to_path_buf()),
            &["--no-takeover"][..],
        ),
    ];
    for (name, tool) in [
        ("watchexec -r", Tool::Watchexec),
        ("nodemon", Tool::Nodemon),
        ("entr -r", Tool::Entr),
    ] {
        if which(tool.name()) {
            tools.push((name.to_string(), tool, &[][..]));
        }
    }
    // BENCH_TOOLS=hotrun,entr runs only the tools whose names start with those words.
    if let Ok(only) = std::env::var("BENCH_TOOLS") {
        let only: Vec<&str> = only.split(',').collect();
        tools.retain(|(name, _, _)| only.iter().any(|o| name.starts_with(o)));
    }
    tools
}

/// One tool over the fixture binding `port` itself: starts it, waits for the first
/// answer, then calls `rounds` (which replaces the binary as a build would).
fn with_server(
    tool: &Tool,
    hotrun_args: &[&str],
    fixture: &Path,
    rounds: impl FnOnce(&Scratch, &Client) -> (usize, usize),
) -> LoadResult {
    let (_reserved, port) = reserve_port();
    let sc = scratch("hotrun-own-port-", fixture);
    let extra = vec![
        "--port".to_string(),
        port.to_string(),
        "--startup-ms".to_string(),
        STARTUP_MS.to_string(),
    ];
    let mut child: Child = tool.start_with(sc.dir.path(), &sc.app, &sc.log, hotrun_args, &extra);
    // The client starts once the server is up: refusals while it first starts are no
    // restart's.
    crate::load::wait_log_count(&sc.log, "listening gen=", 1);
    let client = Client::start(port);
    assert!(
        client.wait_newer(0),
        "{}: the first generation never answered",
        tool.name()
    );
    let (restarts, served) = rounds(&sc, &client);
    let mut result = client.finish(restarts);
    result.served_after = Some(served);
    stop_tracked(&mut child);
    result
}

/// `restarts` rebuilds (a rename of a new binary over the old), each waited for until a
/// newer generation answers (at most 10 s), with a 100 ms pause after it for every tool.
fn rebuilds(sc: &Scratch, client: &Client, fixture: &Path, restarts: usize) -> (usize, usize) {
    let mut served = 0;
    for _ in 0..restarts {
        let before = client.newest();
        copy_rename(fixture, &sc.app);
        if client.wait_newer(before) {
            served += 1;
        }
        thread::sleep(Duration::from_millis(100));
    }
    (restarts, served)
}

/// `rounds` broken builds (a script that exits 1), each left in place for 3 s before
/// the good build comes back.
fn broken_builds(sc: &Scratch, client: &Client, fixture: &Path, rounds: usize) -> (usize, usize) {
    let broken = sc.dir.path().join("broken.sh");
    fs::write(&broken, "#!/bin/sh\necho 'broken build' >&2\nexit 1\n").unwrap();
    fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut served = 0;
    for _ in 0..rounds {
        copy_rename(&broken, &sc.app);
        thread::sleep(Duration::from_secs(3));
        let before = client.newest();
        copy_rename(fixture, &sc.app);
        if client.wait_newer(before) {
            served += 1;
        }
        thread::sleep(Duration::from_millis(100));
    }
    (rounds, served)
}

fn print_rows(rows: &[(String, LoadResult)]) {
    println!(
        "{:<24} {:>8} {:>9} {:>7} {:>15} {:>9}  served after restart  failures",
        "tool", "restarts", "answered", "failed", "longest gap ms", "p99 ms"
    );
    for (name, r) in rows {
        let kinds: Vec<String> = r.failures.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "{:<24} {:>8} {:>9} {:>7} {:>15.1} {:>9.2}  {:>9} of {:<9}  {}",
            name,
            r.restarts,
            r.answered,
            r.failed,
            r.longest_gap_ms,
            r.p99_ms,
            r.served_after.unwrap_or(0),
            r.restarts,
            kinds.join(", ")
        );
    }
}

/// Downtime of a server that binds its own port and needs 200 ms to start.
pub(crate) fn downtime(hotrun: &Path, fixture: &Path, restarts: usize) {
    println!();
    println!(
        "a server that binds its own port (needs {STARTUP_MS} ms to start), one client asking \
         continuously, {restarts} rebuilds"
    );
    let tools = contenders(hotrun);
    let mut rows = Vec::new();
    for (name, tool, args) in &tools {
        eprintln!("  own port / {name} ...");
        let r = with_server(tool, args, fixture, |sc, client| {
            rebuilds(sc, client, fixture, restarts)
        });
        rows.push((name.clone(), r));
    }
    print_rows(&rows);
    let rounds = (restarts / 20).max(3);
    println!();
    println!(
        "the same server through {rounds} broken builds (each in place for 3 s), then a good one"
    );
    let mut broken = Vec::new();
    for (name, tool, args) in &tools {
        eprintln!("  broken builds / {name} ...");
        let r = with_server(tool, args, fixture, |sc, client| {
            broken_builds(sc, client, fixture, rounds)
        });
        broken.push((name.clone(), r));
    }
    print_rows(&broken);
    let ours = &rows[0].1;
    let met = ours.failed == 0
        && ours.longest_gap_ms <= TARGET_GAP_MS
        && ours.served_after == Some(ours.restarts)
        && broken[0].1.failed == 0;
    println!(
        "targets (hotrun with takeover): 0 failed, longest gap <= {TARGET_GAP_MS} ms, every \
         restart served, 0 failed through broken builds: {}",
        if met { "met" } else { "MISS" }
    );
}

/// The values of `key=` in the log's `syscalls` line of generation `gen`.
fn syscall_figures(log: &Path, generation: u64) -> Option<[f64; 4]> {
    let text = fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("syscalls gen={generation} ")))?;
    let get = |key: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|ns| ns / 1000.0)
    };
    Some([
        get("bind_ns=")?,
        get("bind_p99_ns=")?,
        get("getppid_ns=")?,
        get("getppid_p99_ns=")?,
    ])
}

/// Runs the fixture once under hotrun (`args`) timing `n` binds and getppid calls; also
/// times its own-port bind in 20 generations (the first passes through, later ones are
/// taken over).
fn timed(
    hotrun: &Path,
    fixture: &Path,
    args: &[&str],
    n: usize,
    restarts: u64,
) -> ([f64; 4], Vec<f64>) {
    let (_reserved, port) = reserve_port();
    let sc = scratch("hotrun-filter-", fixture);
    let extra = vec![
        "--time-syscalls".to_string(),
        n.to_string(),
        "--port".to_string(),
        port.to_string(),
    ];
    let tool = Tool::Hotrun(hotrun.to_path_buf());
    let mut child = tool.start_with(sc.dir.path(), &sc.app, &sc.log, args, &extra);
    let deadline = Instant::now() + Duration::from_secs(60);
    let figures = loop {
        if let Some(f) = syscall_figures(&sc.log, 1) {
            break f;
        }
        assert!(Instant::now() < deadline, "no syscall timings in 60 s");
        thread::sleep(Duration::from_millis(20));
    };
    let mut takeover_binds = Vec::new();
    for g in 2..=restarts + 1 {
        crate::load::wait_log_count(&sc.log, "listening gen=", (g - 1) as usize);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
        crate::load::wait_log_count(&sc.log, "listening gen=", g as usize);
        let text = fs::read_to_string(&sc.log).unwrap_or_default();
        if let Some(us) = text
            .lines()
            .filter(|l| l.starts_with(&format!("listening gen={g} ")))
            .find_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("bind_ns="))
            })
            .and_then(|v| v.parse::<f64>().ok())
        {
            takeover_binds.push(us / 1000.0);
        }
    }
    stop_tracked(&mut child);
    (figures, takeover_binds)
}

/// What the filter costs: a bind that passes through (port 0), a call the filter lets
/// run (getppid), and a bind that is taken over, with and without the filter.
pub(crate) fn filter_cost(hotrun: &Path, fixture: &Path, n: usize) {
    println!();
    println!("socket takeover's filter: {n} calls each, median / p99 in µs");
    let (with, mut taken) = timed(hotrun, fixture, &[], n, 19);
    let (without, _) = timed(hotrun, fixture, &["--no-takeover"], n, 0);
    println!(
        "  bind to port 0 (passes through): {:.1} / {:.1} with the filter, {:.1} / {:.1} without{}",
        with[0],
        with[1],
        without[0],
        without[1],
        if with[0] <= TARGET_PASSING_BIND_US {
            format!(" (target <= {TARGET_PASSING_BIND_US} µs: met)")
        } else {
            format!(" (target <= {TARGET_PASSING_BIND_US} µs: MISS)")
        }
    );
    println!(
        "  getppid (not filtered): {:.2} / {:.2} with the filter, {:.2} / {:.2} without",
        with[2], with[3], without[2], without[3]
    );
    taken.sort_by(f64::total_cmp);
    if !taken.is_empty() {
        println!(
            "  bind taken over (generations 2-20): median {:.1} µs, max {:.1} µs",
            taken[taken.len() / 2],
            taken[taken.len() - 1]
        );
    }
}
