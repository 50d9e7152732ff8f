//! `--probe`: what a probe is (parsed from the command line), the client that asks the
//! server once, and the thread that keeps asking during a drill.
//!
//! A probe must not disturb what it measures. A connection closed while data it was sent
//! is still unread makes the kernel answer with a reset, which servers log as errors
//! (python's http.server prints a `ConnectionResetError` traceback for each), and an idle
//! connection held open slows a server's drain. So the TCP probe connects, shuts down its
//! sending side, reads until the server closes (bounded), then closes; the HTTP probe sends
//! one `GET` with `Connection: close`, reads the whole answer to its end (bounded by size
//! and time), checks the status line, then closes.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a probe waits for a connection, and for each read.
const WAIT: Duration = Duration::from_secs(2);
/// How long a probe may spend reading one answer; a longer one is cut off.
const ANSWER_TIME: Duration = Duration::from_secs(5);
/// How much of an answer a probe reads at most (a health check answers in far less).
const ANSWER_BYTES: usize = 4 << 20;
/// The pause between two probes.
const INTERVAL: Duration = Duration::from_millis(10);

/// `--probe`: where to ask, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    kind: Kind,
    /// As written: a name, an IPv4 address or a bracketed IPv6 address.
    host: String,
    /// `0` stands for the port of the first `--listen` TCP socket (see `with_port`).
    port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// `http://HOST[:PORT][/PATH]`: an answer with a 2xx or 3xx status passes.
    Http { path: String },
    /// `tcp:HOST:PORT`: an established connection that the server does not reset passes.
    Tcp,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Http { path } => write!(f, "http://{}:{}{path}", self.host, self.port),
            Kind::Tcp => write!(f, "tcp:{}:{}", self.host, self.port),
        }
    }
}

const FORMS: &str = "expected http://HOST:PORT/PATH or tcp:HOST:PORT";

/// Parses `--probe`.
pub(crate) fn parse_probe(text: &str) -> Result<Probe, String> {
    if text.starts_with("https://") {
        return Err("https probes are not supported; probe the plain http port or use tcp:".into());
    }
    let probe = if let Some(rest) = text.strip_prefix("http://") {
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) if !hostport.ends_with(']') => (host, parse_port(port)?),
            _ => (hostport, 80),
        };
        Probe {
            kind: Kind::Http {
                path: path.to_string(),
            },
            host: host.to_string(),
            port,
        }
    } else {
        let hostport = text.strip_prefix("tcp:").unwrap_or(text);
        let Some((host, port)) = hostport.rsplit_once(':') else {
            return Err(format!("cannot use '{text}': no port ({FORMS})"));
        };
        Probe {
            kind: Kind::Tcp,
            host: host.to_string(),
            port: parse_port(port)?,
        }
    };
    if probe.host.is_empty() {
        return Err(format!("cannot use '{text}': no host ({FORMS})"));
    }
    probe
        .resolve()
        .map_err(|e| format!("cannot use '{text}': {e} ({FORMS})"))?;
    Ok(probe)
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not a port ({FORMS})"))
}

impl Probe {
    /// Whether it asks for the port of the first `--listen` TCP socket (port 0).
    pub(crate) fn wants_listen_port(&self) -> bool {
        self.port == 0
    }

    /// The same probe on `port` (the one hotrun bound, for port 0).
    pub(crate) fn with_port(mut self, port: u16) -> Probe {
        self.port = port;
        self
    }

    fn resolve(&self) -> Result<SocketAddr, String> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        (host, self.port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.host))
    }

    /// Asks the server once; `Err` says what went wrong, in a few words.
    pub(crate) fn once(&self) -> Result<(), String> {
        let target = self.resolve()?;
        let mut stream = TcpStream::connect_timeout(&target, WAIT).map_err(|e| why(&e))?;
        let _ = stream.set_write_timeout(Some(WAIT));
        match &self.kind {
            Kind::Tcp => {
                // Nothing to ask: say so, and let the server close its side first.
                let _ = stream.shutdown(Shutdown::Write);
                match read_answer(&mut stream, |_| {}) {
                    Err(e) => Err(why(&e)),
                    // Established is enough; a server that keeps it open after our end is
                    // not at fault.
                    Ok(_) => Ok(()),
                }
            }
            Kind::Http { path } => {
                let host = if self.port == 80 {
                    self.host.clone()
                } else {
                    format!("{}:{}", self.host, self.port)
                };
                let request = format!(
                    "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: hotrun-drill\r\n\
                     Accept: */*\r\nConnection: close\r\n\r\n"
                );
                stream
                    .write_all(request.as_bytes())
                    .map_err(|e| format!("cannot send the request: {}", why(&e)))?;
                let mut head = Vec::new();
                let ended = read_answer(&mut stream, |chunk| {
                    if !head.contains(&b'\n') && head.len() < 4096 {
                        head.extend_from_slice(chunk);
                    }
                });
                judge(ended.map_err(|e| why(&e))?, &head)
            }
        }
    }
}

/// The verdict on an HTTP answer whose reading ended as `ended`, from its first bytes.
fn judge(ended: Ended, head: &[u8]) -> Result<(), String> {
    let Some(line) = head
        .split(|b| *b == b'\n')
        .next()
        .filter(|_| head.contains(&b'\n'))
    else {
        return Err(match ended {
            Ended::TimedOut => format!("no answer within {} s", WAIT.as_secs()),
            Ended::Closed if head.is_empty() => "closed without an answer".into(),
            Ended::Closed | Ended::TooLong => "answered something that is not HTTP".into(),
        });
    };
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => {
            if code.starts_with('2') || code.starts_with('3') {
                Ok(())
            } else {
                Err(format!("answered {code}"))
            }
        }
        _ => Err("answered something that is not HTTP".into()),
    }
}

/// How reading an answer ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The server closed its side: everything was read, so closing ours sends no reset.
    Closed,
    /// Nothing came for a while, or the answer took too long.
    TimedOut,
    /// The answer was longer than a probe reads.
    TooLong,
}

/// Reads until the server closes its side, handing every chunk to `seen`; bounded by
/// `WAIT` per read, `ANSWER_TIME` in all and `ANSWER_BYTES`.
fn read_answer(stream: &mut TcpStream, mut seen: impl FnMut(&[u8])) -> io::Result<Ended> {
    let end = Instant::now() + ANSWER_TIME;
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Ended::TimedOut);
        }
        stream.set_read_timeout(Some(left.min(WAIT)))?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(Ended::Closed),
            Ok(n) => {
                seen(&buf[..n]);
                total += n;
                if total >= ANSWER_BYTES {
                    return Ok(Ended::TooLong);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(Ended::TimedOut);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// An I/O error in a few words.
fn why(err: &io::Error) -> String {
    match err.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::ConnectionReset => "connection reset".into(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            format!("no answer within {} s", WAIT.as_secs())
        }
        _ => {
            let text = err.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_lowercase(),
                None => text,
            }
        }
    }
}

/// One probe: when it was sent and when it was over, and what went wrong (`None`: the
/// server answered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    pub(crate) failure: Option<String>,
}

/// The thread that probes, one probe after the other, until dropped.
pub(crate) struct Prober {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Prober {
    pub(crate) fn start(probe: Probe) -> io::Result<Prober> {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s, m) = (Arc::clone(&stop), Arc::clone(&samples));
        thread::Builder::new().name("probe".into()).spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let start = Instant::now();
                let failure = probe.once().err();
                let end = Instant::now();
                if let Ok(mut m) = m.lock() {
                    m.push(Sample {
                        start,
                        end,
                        failure,
                    });
                }
                thread::sleep(INTERVAL);
            }
        })?;
        Ok(Prober { stop, samples })
    }

    /// A prober without a thread: the test pushes the samples.
    #[cfg(test)]
    pub(crate) fn fake() -> (Prober, Arc<Mutex<Vec<Sample>>>) {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let prober = Prober {
            stop: Arc::new(AtomicBool::new(true)),
            samples: Arc::clone(&samples),
        };
        (prober, samples)
    }

    /// The samples since the last call, oldest first.
    pub(crate) fn take(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;
    use std::os::fd::AsRawFd;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;

    use super::*;

    fn parsed(text: &str) -> Probe {
        parse_probe(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn probes_parse() {
        let cases = [
            (
                "http://127.0.0.1:8080/health",
                "http://127.0.0.1:8080/health",
            ),
            ("http://localhost", "http://localhost:80/"),
            ("http://[::1]:81/x", "http://[::1]:81/x"),
            ("tcp:127.0.0.1:9", "tcp:127.0.0.1:9"),
            ("127.0.0.1:9", "tcp:127.0.0.1:9"),
        ];
        for (text, shown) in cases {
            assert_eq!(parsed(text).to_string(), shown);
        }
        let listen = parsed("tcp:127.0.0.1:0");
        assert!(listen.wants_listen_port());
        assert!(!parsed("tcp:127.0.0.1:9").wants_listen_port());
        assert_eq!(listen.with_port(4242).to_string(), "tcp:127.0.0.1:4242");
        for bad in [
            "https://x:1/",
            "nonsense",
            "tcp:127.0.0.1:http",
            "http://:80/",
            "http://127.0.0.1:99999/",
        ] {
            assert!(parse_probe(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_are_judged_by_their_status_line() {
        let ok = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(judge(Ended::Closed, ok), Ok(()));
        assert_eq!(judge(Ended::Closed, b"HTTP/1.0 302 Found\r\n"), Ok(()));
        assert_eq!(
            judge(Ended::Closed, b"HTTP/1.1 503 Service Unavailable\r\n"),
            Err("answered 503".into())
        );
        // A status line is enough even when the rest took too long or was too big.
        assert_eq!(judge(Ended::TimedOut, ok), Ok(()));
        assert_eq!(judge(Ended::TooLong, ok), Ok(()));
        assert_eq!(
            judge(Ended::TimedOut, b""),
            Err("no answer within 2 s".into())
        );
        assert_eq!(
            judge(Ended::TimedOut, b"HTTP/1.1 20"),
            Err("no answer within 2 s".into())
        );
        assert_eq!(
            judge(Ended::Closed, b""),
            Err("closed without an answer".into())
        );
        assert_eq!(
            judge(Ended::Closed, b"gen=3\n"),
            Err("answered something that is not HTTP".into())
        );
    }

    /// python3's http.server in a directory of its own, on a port it picked; killed on drop.
    struct Python {
        child: Child,
        port: u16,
        _dir: tempfile::TempDir,
    }

    impl Python {
        /// `None` (said loudly) when python3 is missing; with `CI=true` that fails the test.
        fn start() -> Option<Python> {
            if Command::new("python3").arg("--version").output().is_err() {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "python3 is missing, and CI=true: install it (.ci/run does)"
                );
                eprintln!("SKIPPED: python3 is not installed; this test needs it");
                return None;
            }
            let dir = tempfile::tempdir().expect("temporary directory");
            // Large enough that an answer cut short is still being written when the
            // client closes (the case that makes the server log a reset).
            std::fs::write(dir.path().join("big"), vec![b'x'; 1 << 20]).expect("write");
            let mut child = Command::new("python3")
                .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
                .arg("--directory")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("cannot start python3");
            let stdout = child.stdout.take().expect("stdout is piped");
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                for line in io::BufReader::new(stdout).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            // "Serving HTTP on 127.0.0.1 port 41235 (http://127.0.0.1:41235/) ..."
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("python3 http.server did not say where it serves");
            let port = line
                .split(" port ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no port in {line:?}"));
            Some(Python {
                child,
                port,
                _dir: dir,
            })
        }

        /// Stops it; returns everything it wrote on stderr (its request log).
        fn stderr(mut self) -> String {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let mut text = String::new();
            if let Some(mut err) = self.child.stderr.take() {
                let _ = err.read_to_string(&mut text);
            }
            text
        }
    }

    impl Drop for Python {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn http_probes_read_whole_answers_and_leave_no_reset_behind() {
        let Some(python) = Python::start() else {
            return;
        };
        let root = parsed(&format!("http://127.0.0.1:{}/", python.port));
        let big = parsed(&format!("http://127.0.0.1:{}/big", python.port));
        let missing = parsed(&format!("http://127.0.0.1:{}/missing", python.port));
        for _ in 0..100 {
            assert_eq!(root.once(), Ok(()));
        }
        for _ in 0..20 {
            assert_eq!(big.once(), Ok(()));
        }
        assert_eq!(missing.once(), Err("answered 404".into()));
        let log = python.stderr();
        assert_eq!(log.matches("\"GET / HTTP/1.1\" 200").count(), 100, "{log}");
        assert_eq!(
            log.matches("\"GET /big HTTP/1.1\" 200").count(),
            20,
            "{log}"
        );
        assert!(
            !log.contains("Traceback") && !log.contains("Error"),
            "the server saw resets:\n{log}"
        );
    }

    #[test]
    fn tcp_probes_close_cleanly_on_a_server_that_waits_for_a_request() {
        let Some(python) = Python::start() else {
            return;
        };
        let probe = parsed(&format!("tcp:127.0.0.1:{}", python.port));
        for _ in 0..100 {
            assert_eq!(probe.once(), Ok(()));
        }
        let log = python.stderr();
        assert!(
            !log.contains("Traceback") && !log.contains("Error"),
            "the server saw resets:\n{log}"
        );
    }

    #[test]
    fn a_refused_connection_fails_the_probe() {
        use nix::sys::socket::{
            AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket,
        };
        // Bound but not listening, and held while the probe runs: connections to it are
        // refused.
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .expect("socket");
        bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind");
        let port = getsockname::<SockaddrIn>(fd.as_raw_fd())
            .expect("getsockname")
            .port();
        for probe in [
            format!("http://127.0.0.1:{port}/"),
            format!("tcp:127.0.0.1:{port}"),
        ] {
            assert_eq!(parsed(&probe).once(), Err("connection refused".into()));
        }
        drop(fd);
    }
}
