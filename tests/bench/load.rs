//! Downtime under load: a client asks the server continuously while it is restarted many
//! times (and while broken builds come and go), counting failed requests, the longest gap
//! between two answers, and the p99 latency. The server needs 200 ms to start.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, unbounded};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub(crate) const STARTUP_MS: &str = "200";
pub(crate) const TARGET_GAP_MS: f64 = 50.0;

pub(crate) struct LoadResult {
    pub(crate) restarts: usize,
    pub(crate) answered: u64,
    pub(crate) failed: u64,
    /// The failures by kind ("refused", "reset", "no answer", …).
    pub(crate) failures: std::collections::BTreeMap<String, u64>,
    pub(crate) longest_gap_ms: f64,
    pub(crate) p99_ms: f64,
    /// How many restarts ended with a newer generation answering (the cases where a
    /// restart could leave no server at all).
    pub(crate) served_after: Option<usize>,
}

/// The client: one connection at a time, as fast as answers come.
pub(crate) struct Client {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Samples>>,
    thread: Option<thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Samples {
    latencies_ms: Vec<f64>,
    failed: u64,
    failures: std::collections::BTreeMap<String, u64>,
    last_ok: Option<Instant>,
    longest_gap: Duration,
    /// The newest generation that answered.
    newest: u64,
}

impl Client {
    pub(crate) fn start(port: u16) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Samples::default()));
        let (s, m) = (stop.clone(), samples.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let t0 = Instant::now();
                let answer = ask(port);
                let now = Instant::now();
                let mut m = m.lock().unwrap();
                if let Ok(generation) = answer {
                    m.newest = m.newest.max(generation);
                    m.latencies_ms.push((now - t0).as_secs_f64() * 1e3);
                    if let Some(last) = m.last_ok {
                        m.longest_gap = m.longest_gap.max(now - last);
                    }
                    m.last_ok = Some(now);
                } else if let Err(kind) = answer {
                    m.failed += 1;
                    *m.failures.entry(kind).or_default() += 1;
                    drop(m);
                    thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Client {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    pub(crate) fn newest(&self) -> u64 {
        self.samples.lock().unwrap().newest
    }

    /// Waits (up to 10 s) until a generation newer than `than` answers; false if none did.
    pub(crate) fn wait_newer(&self, than: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.newest() <= than {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
        true
    }

    pub(crate) fn finish(mut self, restarts: usize) -> LoadResult {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let mut m = self.samples.lock().unwrap();
        m.latencies_ms.sort_by(f64::total_cmp);
        let p99 = m
            .latencies_ms
            .get(((m.latencies_ms.len() as f64 - 1.0) * 0.99).round() as usize)
            .copied()
            .unwrap_or(f64::NAN);
        LoadResult {
            restarts,
            answered: m.latencies_ms.len() as u64,
            failed: m.failed,
            longest_gap_ms: m.longest_gap.as_secs_f64() * 1e3,
            p99_ms: p99,
            served_after: None,
            failures: m.failures.clone(),
        }
    }
}

/// One request; the generation that answered, or what went wrong.
fn ask(port: u16) -> Result<u64, String> {
    let kind = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "refused".to_string(),
        std::io::ErrorKind::ConnectionReset => "reset".to_string(),
        other => format!("{other:?}"),
    };
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(kind)?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reply = String::new();
    stream.read_to_string(&mut reply).map_err(kind)?;
    if reply.is_empty() {
        return Err("closed without an answer".into());
    }
    reply
        .trim()
        .strip_prefix("gen=")
        .and_then(|g| g.parse().ok())
        .ok_or_else(|| "bad answer".into())
}

/// hotrun's stderr, line by line.
struct Lines {
    rx: Receiver<String>,
}

impl Lines {
    /// Reads the child's stderr on a thread, line by line.
    fn of(child: &mut Child) -> Lines {
        let (tx, rx) = unbounded();
        let stderr = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Lines { rx }
    }

    /// The next line with any of these prefixes-with-words.
    fn expect_any(&self, alternatives: &[&[&str]]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = self
                .rx
                .recv_deadline(deadline)
                .unwrap_or_else(|_| panic!("no line with any of {alternatives:?} within 60 s"));
            if alternatives
                .iter()
                .any(|words| words.iter().all(|w| line.contains(w)))
            {
                return line;
            }
        }
    }

    fn expect(&self, words: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = self
                .rx
                .recv_deadline(deadline)
                .unwrap_or_else(|_| panic!("no line with {words:?} within 60 s"));
            if words.iter().all(|w| line.contains(w)) {
                return line;
            }
        }
    }
}

fn start_hotrun(hotrun: &Path, app: &Path, log: &Path) -> (Child, Lines, u16) {
    let mut child = crate::spawn_tracked(
        Command::new(hotrun)
            .args(["--listen", "0", "--ready", "notify", "--"])
            .arg(app)
            .arg("--log")
            .arg(log)
            .args(["--listen-fd", "--notify", "--startup-ms", STARTUP_MS])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let lines = Lines::of(&mut child);
    let line = lines.expect(&["listening on 127.0.0.1:"]);
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    lines.expect(&["gen 1 ready"]);
    (child, lines, port)
}

fn stop(child: &mut Child) {
    crate::stop_tracked(child);
}

/// hotrun, restarted by SIGHUP `restarts` times.
pub(crate) fn hotrun_restarts(hotrun: &Path, fixture: &Path, restarts: usize) -> LoadResult {
    let crate::Scratch {
        dir: _dir,
        app,
        log,
    } = crate::scratch("hotrun-load-", fixture);
    let (mut child, lines, port) = start_hotrun(hotrun, &app, &log);
    let client = Client::start(port);
    for g in 2..restarts + 2 {
        kill(Pid::from_raw(child.id() as i32), Signal::SIGHUP).unwrap();
        lines.expect(&[&format!("gen {g} ready")]);
        lines.expect(&[&format!("gen {} stopped", g - 1)]);
    }
    let result = client.finish(restarts);
    stop(&mut child);
    result
}

/// hotrun, with `rounds` broken builds each followed by a good one.
pub(crate) fn hotrun_broken_builds(hotrun: &Path, fixture: &Path, rounds: usize) -> LoadResult {
    let crate::Scratch { dir, app, log } = crate::scratch("hotrun-load-", fixture);
    let broken = dir.path().join("broken.sh");
    std::fs::write(&broken, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (mut child, lines, port) = start_hotrun(hotrun, &app, &log);
    let client = Client::start(port);
    let mut g = 1;
    for _ in 0..rounds {
        crate::copy_rename(&broken, &app);
        g += 1;
        lines.expect(&[&format!("gen {g} exited with 1"), "before ready"]);
        crate::copy_rename(fixture, &app);
        g += 1;
        lines.expect(&[&format!("gen {g} ready")]);
        lines.expect(&["stopped"]);
    }
    let result = client.finish(rounds);
    stop(&mut child);
    result
}

/// systemfd holds the socket, watchexec restarts the server when its binary changes
/// (stop, then start: no readiness gate).
pub(crate) fn systemfd_watchexec_restarts(fixture: &Path, restarts: usize) -> LoadResult {
    let crate::Scratch { dir, app, log } = crate::scratch("hotrun-load-", fixture);
    // systemfd binds the port itself (with SO_REUSEADDR): reserved for the run.
    let (_reserved, port) = crate::ports::reserve_port();
    let mut child = crate::spawn_tracked(
        Command::new("systemfd")
            .args([
                "--no-pid",
                "-s",
                &format!("http::{port}"),
                "--",
                "watchexec",
                "-r",
                "-n",
                "-q",
                "-w",
            ])
            .arg(dir.path())
            .args(["-f", "**/app", "--"])
            .arg(&app)
            .arg("--log")
            .arg(&log)
            .args(["--listenfd-crate", "--startup-ms", STARTUP_MS])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let serving = |n: usize| wait_log_count(&log, "serving gen=", n);
    serving(1);
    let client = Client::start(port);
    for n in 2..restarts + 2 {
        crate::copy_rename(fixture, &app);
        serving(n);
        // Let watchexec settle before the next change.
        thread::sleep(Duration::from_millis(100));
    }
    let result = client.finish(restarts);
    stop(&mut child);
    result
}

/// Waits until the fixture's log holds `n` lines with `needle`.
pub(crate) fn wait_log_count(log: &Path, needle: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(needle)
        .count()
        < n
    {
        assert!(
            Instant::now() < deadline,
            "no {n}th '{needle}' in {} within 60 s",
            log.display()
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// hotrun without passed sockets and without socket takeover (`--no-takeover`; the
/// own-port part measures takeover): the server binds its fixed port itself, 200 ms after
/// it starts. Every restart leaves a gap in which connections are refused, and a restart
/// must still end with the newer generation serving (it may have lost the port to the old
/// one and been started again): counted as "served after restart".
pub(crate) fn hotrun_fixed_port(hotrun: &Path, fixture: &Path, restarts: usize) -> LoadResult {
    let crate::Scratch {
        dir: _dir,
        app,
        log,
    } = crate::scratch("hotrun-load-", fixture);
    // Reserved for the run: nothing else takes it while no generation holds it.
    let (_reserved, port) = crate::ports::reserve_port();
    let mut child = crate::spawn_tracked(
        Command::new(hotrun)
            .args(["--quiet", "--no-takeover", "--"])
            .arg(&app)
            .arg("--log")
            .arg(&log)
            .arg("--port")
            .arg(port.to_string())
            .args(["--startup-ms", STARTUP_MS])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_log_count(&log, "listening gen=", 1);
    let client = Client::start(port);
    assert!(client.wait_newer(0), "the first generation never answered");
    let mut served = 0;
    for _ in 0..restarts {
        let before = client.newest();
        kill(Pid::from_raw(child.id() as i32), Signal::SIGHUP).unwrap();
        if client.wait_newer(before) {
            served += 1;
        }
    }
    let mut result = client.finish(restarts);
    result.served_after = Some(served);
    stop(&mut child);
    result
}

pub(crate) struct SoakResult {
    pub(crate) restarts: usize,
    pub(crate) seconds: f64,
    pub(crate) fds: (usize, usize),
    pub(crate) rss_kib: (u64, u64),
    pub(crate) leftover: usize,
    pub(crate) zombies: usize,
    /// Generations that needed SIGKILL.
    pub(crate) killed: usize,
}

/// `restarts` SIGHUP restarts of a server that forks a grandchild; hotrun's descriptors
/// and memory before and after, and what is left over.
pub(crate) fn soak(hotrun: &Path, fixture: &Path, restarts: usize) -> SoakResult {
    let crate::Scratch {
        dir: _dir,
        app,
        log,
    } = crate::scratch("hotrun-soak-", fixture);
    let mut child = crate::spawn_tracked(
        Command::new(hotrun)
            .arg("--")
            .arg(&app)
            .arg("--log")
            .arg(&log)
            .arg("--grandchild")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let pid = child.id();
    let lines = Lines::of(&mut child);
    lines.expect(&["gen 1 started"]);
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let fds_start = fds();
    let rss_start = crate::rss_kib(pid);
    let started = Instant::now();
    let mut killed = 0;
    for g in 2..restarts + 2 {
        kill(Pid::from_raw(pid as i32), Signal::SIGHUP).unwrap();
        lines.expect(&[&format!("gen {g} started")]);
        let old = format!("gen {} ", g - 1);
        // Every stop that is not clean says so (killed, or an unexpected exit).
        let line = lines.expect_any(&[&[&old, "stopped cleanly"], &[&old, "not a clean stop"]]);
        if line.contains("not a clean stop") {
            eprintln!("soak: {line}");
        }
        if line.contains("killed after") {
            killed += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let fds_end = fds();
    let rss_end = crate::rss_kib(pid);
    // Every grandchild but the last generation's must be gone, and hotrun must have
    // reaped every generation but the running one.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    // (generation, pid) of every grandchild: `grandchild gen=G pid=P`.
    let field = |line: &str, key: &str| -> Option<u32> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
    };
    let logged: Vec<(u32, u32)> = text
        .lines()
        .filter(|l| l.starts_with("grandchild "))
        .filter_map(|l| Some((field(l, "gen=")?, field(l, "pid=")?)))
        .collect();
    // The running generation's grandchild is the newest one; every other one must be gone.
    // A set: a pid used again by a later grandchild is one process.
    let newest = logged.iter().max().map(|(_, pid)| *pid);
    let older: std::collections::BTreeSet<u32> = logged
        .into_iter()
        .map(|(_, pid)| pid)
        .filter(|p| Some(*p) != newest)
        .collect();
    // Over thousands of restarts pids are used again (pid_max is often 32768): a pid counts
    // only while it is still one of this run's grandchildren (`sleeper LOG`, not a
    // generation, whose command line names the log too).
    let log_arg = log.as_os_str().as_encoded_bytes().to_vec();
    let ours = |p: &u32| {
        std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.get(1) == Some(&&b"sleeper"[..]) && args.get(2) == Some(&log_arg.as_slice())
        })
    };
    let alive = |p: &u32| {
        ours(p)
            && std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
    };
    // The check must see the one grandchild that is meant to run, or it sees nothing.
    assert!(
        newest.is_some_and(|p| alive(&p)),
        "soak: the running generation's grandchild ({newest:?}) is not found alive"
    );
    let left: Vec<u32> = older.iter().copied().filter(|p| alive(p)).collect();
    for p in &left {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        eprintln!(
            "soak: an older grandchild is still running: pid {p}: {}",
            stat.trim()
        );
    }
    let leftover = left.len();
    let zombies = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
                .filter(|p| {
                    let stat =
                        std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                    let rest = stat.rsplit(')').next().unwrap_or("");
                    let mut f = rest.split_whitespace();
                    let state = f.next();
                    let ppid = f.next().and_then(|v| v.parse::<u32>().ok());
                    state == Some("Z") && ppid == Some(pid)
                })
                .count()
        })
        .unwrap_or(0);
    stop(&mut child);
    SoakResult {
        restarts,
        seconds,
        fds: (fds_start, fds_end),
        rss_kib: (rss_start, rss_end),
        leftover,
        zombies,
        killed,
    }
}
