//! `hotrun drill`: a non-interactive check that a server restarts cleanly, for CI.
//!
//! The drill runs inside the normal loop: it watches the same `Status` values the user
//! sees, and when the supervisor has settled it injects the next restart (through the
//! normal routine) and finally a SIGTERM-style shutdown. For each restart it checks that
//! the new generation got ready within the timeout, and that the old one stopped cleanly
//! (`StopEnd::is_clean`: exit 0 or death by the stop signal, its whole group gone within
//! the grace period without SIGKILL). With
//! `--probe` a thread asks the server continuously during the whole drill; failed probes
//! are counted per restart (downtime measured from outside). It decides nothing about
//! processes itself, so apart from the probe thread it does no I/O until the summary.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::event::{Event, Generation, Outcome, ShutdownSignal, Status, Trigger};

/// What `hotrun drill` was asked to do.
#[derive(Clone, Debug)]
pub(crate) struct DrillConfig {
    pub(crate) restarts: usize,
    pub(crate) probe: Option<Probe>,
    pub(crate) summary_json: Option<PathBuf>,
    /// How long one restart may take before the drill gives up on it.
    pub(crate) restart_budget: Duration,
    /// The wait before each restart and before the final stop (probes keep running).
    pub(crate) pause: Duration,
}

/// `--probe`: `http://HOST:PORT/PATH` (a 2xx or 3xx answer counts) or `tcp:HOST:PORT`
/// (a connection that is accepted and answered or closed by the server counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    Http {
        addr: String,
        host: String,
        path: String,
    },
    Tcp {
        addr: String,
    },
}

pub(crate) fn parse_probe(text: &str) -> Result<Probe, String> {
    if let Some(rest) = text.strip_prefix("http://") {
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:80")
        };
        resolve(&addr)?;
        let host = hostport.to_string();
        return Ok(Probe::Http {
            addr,
            host,
            path: path.to_string(),
        });
    }
    if text.starts_with("https://") {
        return Err("https probes are not supported; probe the plain http port or use tcp:".into());
    }
    let addr = text.strip_prefix("tcp:").unwrap_or(text).to_string();
    resolve(&addr)?;
    Ok(Probe::Tcp { addr })
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| {
            format!("cannot use '{addr}': {e} (expected http://HOST:PORT/PATH or tcp:HOST:PORT)")
        })?
        .next()
        .ok_or_else(|| format!("'{addr}' resolves to no address"))
}

impl Probe {
    /// One probe; true when the server answered.
    fn once(&self) -> bool {
        let addr = match self {
            Probe::Http { addr, .. } | Probe::Tcp { addr } => addr,
        };
        let Ok(target) = resolve(addr) else {
            return false;
        };
        let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        match self {
            Probe::Http { host, path, .. } => {
                let request =
                    format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
                if stream.write_all(request.as_bytes()).is_err() {
                    return false;
                }
                let mut head = [0u8; 12];
                let mut got = 0;
                while got < head.len() {
                    match stream.read(&mut head[got..]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                let line = String::from_utf8_lossy(&head[..got]);
                let mut words = line.split_whitespace();
                words.next().is_some_and(|v| v.starts_with("HTTP/"))
                    && words
                        .next()
                        .is_some_and(|code| code.starts_with('2') || code.starts_with('3'))
            }
            Probe::Tcp { .. } => {
                // Accepted and answered (or closed) by the server, not just queued by the
                // kernel: wait for a byte or an orderly close.
                let mut byte = [0u8; 1];
                stream.read(&mut byte).is_ok()
            }
        }
    }
}

/// The probe thread's record: (when, answered).
struct Prober {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(Instant, bool)>>>,
}

impl Prober {
    fn start(probe: Probe) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s, m) = (Arc::clone(&stop), Arc::clone(&samples));
        let _ = thread::Builder::new().name("probe".into()).spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let ok = probe.once();
                if let Ok(mut m) = m.lock() {
                    m.push((Instant::now(), ok));
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        Prober { stop, samples }
    }

    fn failures_between(&self, from: Instant, to: Instant) -> (u64, u64) {
        let Ok(samples) = self.samples.lock() else {
            return (0, 0);
        };
        let window = samples.iter().filter(|(t, _)| *t >= from && *t <= to);
        let (mut sent, mut failed) = (0, 0);
        for (_, ok) in window {
            sent += 1;
            failed += u64::from(!ok);
        }
        (sent, failed)
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What the supervisor is doing, as far as the drill needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settled {
    /// No restart under way, none queued.
    pub(crate) idle: bool,
    pub(crate) current: Option<Generation>,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for the first generation to be up.
    First,
    /// Restart `n` (1-based) is under way.
    Restarting,
    /// Settled; the next step (a restart, or the stop) comes at the deadline.
    Pausing { then_stop: bool },
    /// The final stop was asked for.
    Stopping,
}

#[derive(Debug, Default)]
struct Record {
    old: Option<Generation>,
    new: Option<Generation>,
    injected: Option<Instant>,
    settled: Option<Instant>,
    ready_ms: Option<f64>,
    /// How long the new generation's spawn took (its readiness without `--ready`).
    spawn_ms: Option<f64>,
    stop_ms: Option<f64>,
    problems: Vec<String>,
}

/// The drill's state. See the module docs.
pub(crate) struct Drill {
    config: DrillConfig,
    phase: Phase,
    records: Vec<Record>,
    /// Problems outside any restart (start, final stop).
    problems: Vec<String>,
    prober: Option<Prober>,
    probing_since: Option<Instant>,
    deadline: Option<Instant>,
    final_gen: Option<Generation>,
    final_stop: Option<String>,
    shutdown_at: Option<Instant>,
}

impl Drill {
    pub(crate) fn new(config: DrillConfig) -> Drill {
        let prober = config.probe.clone().map(Prober::start);
        Drill {
            config,
            phase: Phase::First,
            records: Vec::new(),
            problems: Vec::new(),
            prober,
            probing_since: None,
            deadline: None,
            final_gen: None,
            final_stop: None,
            shutdown_at: None,
        }
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Takes note of one lifecycle step.
    pub(crate) fn observe(&mut self, status: &Status) {
        if let Phase::Stopping = self.phase {
            if let Status::Stopped {
                generation,
                end,
                after,
                ..
            } = status
                && Some(*generation) == self.final_gen
            {
                let sentence = end.sentence(*generation, &crate::report::ms(*after));
                if !end.is_clean() {
                    self.problems.push(format!("final stop: {sentence}"));
                }
                self.final_stop = Some(sentence);
            }
            return;
        }
        let Some(record) = self.records.last_mut() else {
            match status {
                Status::Exited {
                    generation, end, ..
                }
                | Status::RolledBack {
                    generation, end, ..
                } => {
                    self.problems
                        .push(format!("{generation} {end} before the drill began"));
                }
                Status::NotReady {
                    generation, after, ..
                } => self.problems.push(format!(
                    "the first generation, {generation}, was not ready within {:.0} ms",
                    ms(*after)
                )),
                _ => {}
            }
            return;
        };
        match status {
            Status::Started {
                generation,
                latency,
                ..
            } if record.old != Some(*generation) => {
                record.new = Some(*generation);
                record.spawn_ms = Some(ms(*latency));
            }
            Status::Ready {
                generation, after, ..
            } if record.new == Some(*generation) => {
                record.ready_ms = Some(ms(*after));
            }
            Status::Stopped {
                generation,
                end,
                after,
                ..
            } if record.old == Some(*generation) => {
                record.stop_ms = Some(ms(*after));
                if !end.is_clean() {
                    record.problems.push(format!(
                        "old {}",
                        end.sentence(*generation, &crate::report::ms(*after))
                    ));
                }
            }
            Status::RolledBack {
                generation, end, ..
            } => record
                .problems
                .push(format!("new {generation} {end} before it was ready")),
            Status::NotReady {
                generation, after, ..
            } => record.problems.push(format!(
                "new {generation} was not ready within {:.0} ms",
                ms(*after)
            )),
            Status::SpawnFailed { message, .. } => record
                .problems
                .push(format!("new generation could not start: {message}")),
            Status::RetryAfterOld {
                generation,
                end,
                older,
            } => record.problems.push(format!(
                "new {generation} {end} while {older} still ran (a fixed port without --listen?)"
            )),
            Status::Exited {
                generation, end, ..
            } => {
                record
                    .problems
                    .push(format!("{generation} {end} on its own"));
            }
            _ => {}
        }
    }

    /// Given where the supervisor stands, the next event to inject, if any.
    pub(crate) fn step(&mut self, state: Settled, now: Instant) -> Option<Event> {
        let timed_out = self.deadline.is_some_and(|d| d <= now);
        match self.phase {
            Phase::Pausing { then_stop } => {
                if !timed_out {
                    return None;
                }
                if state.current.is_none() {
                    self.problems.push("nothing runs any more".into());
                    return Some(self.shutdown(state, now));
                }
                Some(if then_stop {
                    self.shutdown(state, now)
                } else {
                    self.next_restart(state, now)
                })
            }
            Phase::First => {
                if state.idle && state.current.is_some() {
                    self.probing_since = Some(now);
                    self.phase = Phase::Pausing { then_stop: false };
                    self.deadline = Some(now + self.config.pause);
                    return None;
                }
                if timed_out {
                    self.problems
                        .push("the first generation never got ready".into());
                    return Some(self.shutdown(state, now));
                }
                if self.deadline.is_none() {
                    self.deadline = Some(now + self.config.restart_budget);
                }
                None
            }
            Phase::Restarting => {
                if !(state.idle || timed_out) {
                    return None;
                }
                let budget = self.config.restart_budget;
                if let Some(record) = self.records.last_mut() {
                    record.settled = Some(now);
                    if timed_out && !state.idle {
                        record.problems.push(format!(
                            "did not complete within {:.0} s",
                            budget.as_secs_f64()
                        ));
                    } else if state.current.is_none() {
                        record.problems.push("nothing runs after it".into());
                    } else if state.current == record.old {
                        if record.problems.is_empty() {
                            record
                                .problems
                                .push("the old generation still serves".into());
                        }
                    } else if record.ready_ms.is_none() && record.new == state.current {
                        // Ready on exec: the start itself is the readiness.
                        record.ready_ms = record.spawn_ms;
                    }
                }
                let broken = state.current.is_none() || (timed_out && !state.idle);
                if broken {
                    return Some(self.shutdown(state, now));
                }
                self.phase = Phase::Pausing {
                    then_stop: self.records.len() >= self.config.restarts,
                };
                self.deadline = Some(now + self.config.pause);
                None
            }
            Phase::Stopping => None,
        }
    }

    fn next_restart(&mut self, state: Settled, now: Instant) -> Event {
        self.phase = Phase::Restarting;
        self.deadline = Some(now + self.config.restart_budget);
        self.records.push(Record {
            old: state.current,
            injected: Some(now),
            ..Record::default()
        });
        Event::Restart(Trigger::Drill(self.records.len()))
    }

    fn shutdown(&mut self, state: Settled, now: Instant) -> Event {
        self.phase = Phase::Stopping;
        self.deadline = None;
        self.final_gen = state.current;
        self.shutdown_at = Some(now);
        Event::Shutdown(ShutdownSignal::Terminate)
    }

    /// Prints the summary (to `out`, and to `--summary-json`); true when every check
    /// passed.
    pub(crate) fn finish(mut self, outcome: Outcome, out: &mut dyn Write) -> bool {
        if let Some(prober) = &self.prober {
            prober.stop.store(true, Ordering::SeqCst);
        }
        if self.final_stop.is_none() {
            self.problems.push(match outcome {
                Outcome::CannotStart(code) => format!("the command could not start (exit {code})"),
                Outcome::Child { end, .. } => format!("the drill ended early: the server {end}"),
                Outcome::Signaled(s) => format!("the drill ended early: hotrun got {}", s.as_str()),
            });
        }
        let end = self.shutdown_at.unwrap_or_else(Instant::now);
        let mut rows = Vec::new();
        let mut all: Vec<String> = Vec::new();
        let mut probes_failed = 0;
        let mut probes_sent = 0;
        let mut last = self.probing_since;
        for (i, r) in self.records.iter_mut().enumerate() {
            let n = i + 1;
            let (sent, failed) = match (&self.prober, r.injected, r.settled) {
                (Some(p), Some(from), Some(to)) => p.failures_between(from, to),
                _ => (0, 0),
            };
            if let (Some(p), Some(prev), Some(from)) = (&self.prober, last, r.injected) {
                let (s, f) = p.failures_between(prev, from);
                probes_sent += s;
                probes_failed += f;
                if f > 0 {
                    all.push(format!("{f} probes failed before restart {n}"));
                }
            }
            last = r.settled;
            probes_sent += sent;
            probes_failed += failed;
            if failed > 0 {
                r.problems.push(format!("{failed} of {sent} probes failed"));
            }
            all.extend(r.problems.iter().map(|p| format!("restart {n}: {p}")));
            rows.push(json!({
                "restart": n,
                "old_gen": r.old.map(|g| g.0),
                "new_gen": r.new.map(|g| g.0),
                "ready_ms": r.ready_ms,
                "stop_ms": r.stop_ms,
                "probes": sent,
                "failed_probes": failed,
                "ok": r.problems.is_empty(),
                "problems": r.problems,
            }));
        }
        if let (Some(p), Some(prev)) = (&self.prober, last) {
            let (s, f) = p.failures_between(prev, end);
            probes_sent += s;
            probes_failed += f;
            if f > 0 {
                all.push(format!("{f} probes failed after the last restart"));
            }
        }
        if self.records.len() < self.config.restarts {
            all.push(format!(
                "only {} of {} restarts were done",
                self.records.len(),
                self.config.restarts
            ));
        }
        all.extend(self.problems.iter().cloned());
        let passed = all.is_empty();

        let mut text = String::new();
        let _ = writeln!(text, "hotrun drill: {} restarts", self.config.restarts);
        let _ = writeln!(
            text,
            "{:>7} {:>5} {:>5} {:>10} {:>9} {:>14}  result",
            "restart", "old", "new", "ready ms", "stop ms", "failed probes"
        );
        for (i, r) in self.records.iter().enumerate() {
            let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
            let generation = |g: Option<Generation>| g.map_or("-".to_string(), |g| g.0.to_string());
            let failed = rows[i]["failed_probes"].as_u64().unwrap_or(0);
            let _ = writeln!(
                text,
                "{:>7} {:>5} {:>5} {:>10} {:>9} {:>14}  {}",
                i + 1,
                generation(r.old),
                generation(r.new),
                opt(r.ready_ms),
                opt(r.stop_ms),
                if self.prober.is_some() {
                    failed.to_string()
                } else {
                    "-".into()
                },
                if r.problems.is_empty() {
                    "ok".to_string()
                } else {
                    r.problems.join("; ")
                }
            );
        }
        if let Some(verdict) = &self.final_stop {
            let _ = writeln!(text, "final stop: {verdict}");
        }
        if self.prober.is_some() {
            let _ = writeln!(text, "probes: {probes_sent} sent, {probes_failed} failed");
        }
        if passed {
            let _ = writeln!(text, "drill passed");
        } else {
            let _ = writeln!(text, "drill FAILED:");
            for p in &all {
                let _ = writeln!(text, "  - {p}");
            }
        }
        let summary = json!({
            "passed": passed,
            "restarts": rows,
            "final_stop": self.final_stop,
            "probes": self.prober.as_ref().map(|_| json!({ "sent": probes_sent, "failed": probes_failed })),
            "failures": all,
        });
        let _ = out.write_all(text.as_bytes());
        if let Some(path) = &self.config.summary_json {
            let body = format!("{summary}\n");
            let written = if path == Path::new("-") {
                out.write_all(body.as_bytes())
            } else {
                std::fs::write(path, body)
            };
            if let Err(e) = written {
                let _ = writeln!(
                    std::io::stderr(),
                    "hotrun: error: cannot write --summary-json {}: {e}",
                    path.display()
                );
                return false;
            }
        }
        passed
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ChildEnd, StopEnd};

    #[test]
    fn probes_parse() {
        assert_eq!(
            parse_probe("http://127.0.0.1:8080/health"),
            Ok(Probe::Http {
                addr: "127.0.0.1:8080".into(),
                host: "127.0.0.1:8080".into(),
                path: "/health".into()
            })
        );
        assert_eq!(
            parse_probe("tcp:127.0.0.1:9"),
            Ok(Probe::Tcp {
                addr: "127.0.0.1:9".into()
            })
        );
        assert!(parse_probe("https://x:1/").is_err());
        assert!(parse_probe("nonsense").is_err());
    }

    fn generation(n: u64) -> Option<Generation> {
        Some(Generation(n))
    }

    #[test]
    fn a_drill_restarts_when_settled_and_then_stops() {
        let mut d = Drill::new(DrillConfig {
            restarts: 2,
            probe: None,
            summary_json: None,
            restart_budget: Duration::from_secs(10),
            pause: Duration::ZERO,
        });
        let t = Instant::now();
        let busy = Settled {
            idle: false,
            current: generation(1),
        };
        assert_eq!(d.step(busy, t), None);
        let up = |g| Settled {
            idle: true,
            current: generation(g),
        };
        // Each settled state is followed by a pause (zero here), then the next step.
        assert_eq!(d.step(up(1), t), None);
        assert!(matches!(
            d.step(up(1), t),
            Some(Event::Restart(Trigger::Drill(1)))
        ));
        assert_eq!(
            d.step(
                Settled {
                    idle: false,
                    current: generation(1)
                },
                t
            ),
            None
        );
        assert_eq!(d.step(up(2), t), None);
        assert!(matches!(
            d.step(up(2), t),
            Some(Event::Restart(Trigger::Drill(2)))
        ));
        assert_eq!(d.step(up(3), t), None);
        assert!(matches!(d.step(up(3), t), Some(Event::Shutdown(_))));
        d.observe(&Status::Stopped {
            generation: Generation(3),
            end: StopEnd {
                end: ChildEnd::Exited(0),
                signal: nix::sys::signal::Signal::SIGTERM,
                also: None,
                killed: None,
            },
            after: Duration::from_millis(2),
            alive: Duration::from_secs(1),
        });
        let outcome = Outcome::Child {
            end: ChildEnd::Exited(0),
            received: None,
        };
        let mut text = Vec::new();
        assert!(d.finish(outcome, &mut text));
        assert!(String::from_utf8_lossy(&text).contains("drill passed"));
    }

    #[test]
    fn a_restart_that_does_not_settle_in_time_fails_the_drill() {
        let mut d = Drill::new(DrillConfig {
            restarts: 3,
            probe: None,
            summary_json: None,
            restart_budget: Duration::from_secs(10),
            pause: Duration::ZERO,
        });
        let t = Instant::now();
        d.step(
            Settled {
                idle: true,
                current: generation(1),
            },
            t,
        );
        d.step(
            Settled {
                idle: true,
                current: generation(1),
            },
            t,
        );
        let late = t + Duration::from_secs(11);
        assert!(matches!(
            d.step(
                Settled {
                    idle: false,
                    current: generation(1)
                },
                late
            ),
            Some(Event::Shutdown(_))
        ));
        let mut text = Vec::new();
        let outcome = Outcome::Child {
            end: ChildEnd::Exited(0),
            received: None,
        };
        assert!(!d.finish(outcome, &mut text));
        assert!(String::from_utf8_lossy(&text).contains("did not complete within 10 s"));
    }
}
