//! Socket takeover (Linux): unmodified servers that bind their own port — the Rust
//! fixture, `python3 -m http.server`, a Go net/http server, behind `sh -c` and `go run` —
//! restarted under continuous load without one failed request; broken builds rolled back;
//! the pitfalls (blocking modes, backlog, dual stack, pass-through binds, close-on-exec, a
//! server that blocks its stop signal) each checked with a real process.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, setsockopt, socket, sockopt,
};

use crate::harness::*;
use crate::ports::reserve_port;

/// How a request is made.
#[derive(Clone, Copy)]
enum Ask {
    /// Connect and read the fixture's `gen=N` line.
    Raw,
    /// `GET /` and read the whole response; 200 passes.
    Http,
}

/// A client asking continuously, one connection at a time.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Load {
    fn start(targets: Vec<SocketAddr>, ask: Ask) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, a, f) = (stop.clone(), answered.clone(), failures.clone());
        let thread = thread::spawn(move || {
            let mut n = 0usize;
            while !s.load(Ordering::SeqCst) {
                let target = targets[n % targets.len()];
                n += 1;
                match request(target, ask) {
                    Ok(()) => {
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => f.lock().unwrap().push(format!("{target}: {e}")),
                }
            }
        });
        Load {
            stop,
            answered,
            failures,
            thread: Some(thread),
        }
    }

    fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }

    /// Waits until `more` further requests were answered (the load really runs now).
    fn wait_more(&self, more: u64, h: &Hotrun) {
        let target = self.answered() + more;
        wait_until(
            &format!("{more} more answers"),
            || self.answered() >= target || !self.failures.lock().unwrap().is_empty(),
            || format!("{:?}\n{}", self.failures.lock().unwrap(), h.transcript()),
        );
    }

    /// Stops the client; returns (answered, failures).
    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (self.answered(), self.failures.lock().unwrap().clone())
    }
}

fn request(target: SocketAddr, ask: Ask) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&target, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    if let Ask::Http = ask {
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let _ = stream.shutdown(Shutdown::Write);
    }
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .map_err(|e| format!("{e} after {} bytes", reply.len()))?;
    let text = String::from_utf8_lossy(&reply);
    let ok = match ask {
        Ask::Raw => text.starts_with("gen="),
        Ask::Http => text.starts_with("HTTP/1.") && text.split(' ').nth(1) == Some("200"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad answer {:?}",
            text.chars().take(40).collect::<String>()
        ))
    }
}

fn v4(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn v6(port: u16) -> SocketAddr {
    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))
}

/// `restarts` SIGHUP restarts under load, each waited for (the new generation ready, the
/// old one stopped, and more answers after that); then no request may have failed.
fn restarts_under_load(h: &mut Hotrun, load: Load, restarts: u64) {
    restarts_under_load_taking(h, load, restarts, 1);
}

/// As `restarts_under_load`, each restart taking `binds` sockets over.
fn restarts_under_load_taking(h: &mut Hotrun, load: Load, restarts: u64, binds: usize) {
    load.wait_more(5, h);
    let taken_before = h.count(&["took over"]);
    // Generation 1 serves when this is called.
    for g in 2..=1 + restarts {
        h.signal(Signal::SIGHUP);
        h.expect(&[&format!("gen {g} ready"), "(listen)"]);
        h.expect(&[&format!("gen {} stopped cleanly", g - 1)]);
        load.wait_more(5, h);
    }
    let (answered, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across {restarts} restarts: {:?}\n{}",
        failures.len(),
        answered as usize + failures.len(),
        &failures[..failures.len().min(10)],
        h.transcript()
    );
    assert_eq!(
        h.count(&["took over"]),
        taken_before + restarts as usize * binds,
        "every restart took the socket over\n{}",
        h.transcript()
    );
}

/// hotrun over the fixture, which binds `port` itself; waits until gen 1 listens.
fn fixture_server(sb: &Sandbox, hotrun_args: &[&str], port: u16, extra: &[&str]) -> Hotrun {
    let port = port.to_string();
    let mut args = vec!["--port", port.as_str()];
    args.extend(extra);
    let h = start_fixture(sb, hotrun_args, &args);
    sb.log().wait_for(&["listening gen=1"]);
    h
}

#[test]
fn a_server_binding_its_own_port_loses_no_request_across_20_restarts() {
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    // It dies at once on SIGTERM: a request it had accepted could only be lost if
    // connections still went to it after the new generation listened.
    let mut h = fixture_server(&sb, &[], port, &["--default-signals"]);
    let line = h.expect_anywhere(&["gen 1 listens on", "hotrun holds"]);
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    restarts_under_load(&mut h, Load::start(vec![v4(port)], Ask::Raw), 20);
    // The socket each generation got at its descriptor kept close-on-exec (std asks for
    // it), though hotrun's own copy came from pidfd_getfd.
    for g in 1..=21 {
        let line = sb.log().wait_for(&[&format!("listening gen={g} ")]);
        assert!(line.contains("cloexec=1"), "{line}");
    }
}

#[test]
fn sigkill_of_hotrun_ends_a_server_waiting_in_accept_and_frees_its_port() {
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let h = fixture_server(&sb, &[], port, &[]);
    let log = sb.log();
    let server = pid_in(&log.wait_for(&["start gen=1"]));
    // hotrun has handled the start (and told its guardian) once it is asleep.
    h.wait_asleep();
    // Its accept waits in hotrun (no connection queued) when hotrun dies: the guardian
    // still ends the group, and nothing listens on the port any more (the reservation
    // never listens, and std's bind sets SO_REUSEADDR: only a listener can refuse it).
    h.signal(Signal::SIGKILL);
    wait_gone(server);
    wait_until(
        "the port to be free",
        || std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        String::new,
    );
}

#[test]
fn behind_sh_c_the_grandchild_server_is_taken_over_too() {
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let port_arg = port.to_string();
    // `; exit $?` keeps the shell from exec'ing the server: it is the shell's child.
    let mut h = Hotrun::start(&[
        "--no-watch-binary".as_ref(),
        "--".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        "\"$0\" \"$@\"; exit $?".as_ref(),
        app.as_os_str(),
        "--log".as_ref(),
        log.arg(),
        "--port".as_ref(),
        port_arg.as_ref(),
    ]);
    h.expect(&["gen 1 listens on"]);
    let line = log.wait_for(&["listening gen=1"]);
    let server = pid_in(&log.wait_for(&["start gen=1"]));
    assert!(line.contains(&format!("port={port}")));
    assert_ne!(server, h.pid());
    restarts_under_load(&mut h, Load::start(vec![v4(port)], Ask::Raw), 20);
}

#[test]
fn python_http_server_loses_no_request_across_20_restarts() {
    if !have("python3") {
        return;
    }
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let www = sb.path("www");
    fs::create_dir(&www).unwrap();
    fs::write(www.join("index.html"), "hello\n").unwrap();
    let port_arg = port.to_string();
    let mut h = Hotrun::start(&[
        "--".as_ref(),
        "python3".as_ref(),
        "-m".as_ref(),
        "http.server".as_ref(),
        "--bind".as_ref(),
        "127.0.0.1".as_ref(),
        "--directory".as_ref(),
        www.as_os_str(),
        port_arg.as_ref(),
    ]);
    h.expect(&["gen 1 listens on", &format!("127.0.0.1:{port}")]);
    restarts_under_load(&mut h, Load::start(vec![v4(port)], Ask::Http), 20);
}

/// A Go net/http server on ":PORT" (an IPv6 socket on [::] that serves IPv4 too).
const GO_SERVER: &str = r#"package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pid %d\n", os.Getpid())
	})
	if err := http.ListenAndServe(":"+os.Args[1], nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
"#;

/// Writes the Go server's source into the sandbox; returns its directory.
fn go_source(sb: &Sandbox) -> PathBuf {
    let dir = sb.path("gosrv");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("main.go"), GO_SERVER).unwrap();
    fs::write(dir.join("go.mod"), "module gosrv\n\ngo 1.19\n").unwrap();
    dir
}

fn go_build(dir: &Path, out: &Path) {
    let status = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(out)
        .arg(".")
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "go build failed");
}

#[test]
fn go_net_http_dual_stack_loses_no_request_over_ipv4_and_ipv6_across_20_restarts() {
    if !have("go") {
        return;
    }
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let bin = sb.path("server");
    go_build(&go_source(&sb), &bin);
    let port_arg = port.to_string();
    let mut h = Hotrun::start(&["--".as_ref(), bin.as_os_str(), port_arg.as_ref()]);
    let line = h.expect(&["gen 1 listens on"]);
    assert!(
        line.contains(&format!("[::]:{port} (IPv4 too)")),
        "Go's \":PORT\" is one dual-stack socket: {line}"
    );
    restarts_under_load(&mut h, Load::start(vec![v4(port), v6(port)], Ask::Http), 20);
}

#[test]
fn go_run_compiles_under_the_filter_and_its_server_is_taken_over() {
    if !have("go") {
        return;
    }
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let dir = go_source(&sb);
    let port_arg = port.to_string();
    let mut h = Hotrun::start_with(
        &[
            "--no-watch-binary",
            "--ready-timeout",
            "60s",
            "--",
            "go",
            "run",
            ".",
            &port_arg,
        ],
        |cmd| {
            cmd.current_dir(&dir);
        },
    );
    h.expect(&["gen 1 listens on", &format!("[::]:{port}")]);
    restarts_under_load(&mut h, Load::start(vec![v4(port)], Ask::Http), 20);
}

#[test]
fn a_broken_build_is_rolled_back_without_a_failed_request() {
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let mut h = fixture_server(&sb, &[], port, &[]);
    let load = Load::start(vec![v4(port)], Ask::Raw);
    load.wait_more(5, &h);
    let app = sb.path("app");
    let broken = sb.path("broken");
    fs::write(&broken, "#!/bin/sh\necho 'build is broken' >&2\nexit 1\n").unwrap();
    fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut next = 2;
    for _ in 0..3 {
        replace_by_rename(&broken, &app);
        h.expect(&[
            &format!("gen {next} exited with 1"),
            "before ready",
            "gen 1 still serving",
        ]);
        load.wait_more(5, &h);
        next += 1;
    }
    replace_by_rename(&fixture_exe(), &app);
    h.expect(&[&format!("gen {next} ready"), "(listen)"]);
    h.expect(&["gen 1 stopped cleanly"]);
    load.wait_more(5, &h);
    let (_, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}\n{}", h.transcript());
}

#[test]
fn with_no_takeover_a_restart_is_the_plain_one() {
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let port_arg = port.to_string();
    let mut h = start_fixture(&sb, &["--no-takeover"], &["--port", &port_arg]);
    let log = sb.log();
    log.wait_for(&["listening gen=1"]);
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 1 stopped cleanly"]);
    wait_until(
        "a newer generation to answer",
        || request(v4(port), Ask::Raw).is_ok() && log.count(&["listening gen="]) >= 2,
        || h.transcript(),
    );
    assert_eq!(h.count(&["took over"]) + h.count(&["holds that socket"]), 0);
}

#[test]
fn generations_that_change_the_shared_blocking_mode_are_told_about() {
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    // Gen 1 accepts on a blocking socket; gen 2 makes the shared socket non-blocking after
    // its listen (the mode belongs to the socket, so gen 1 sees it too). hotrun does not
    // flip modes itself; it says so when generations disagree.
    let mut h = fixture_server(&sb, &[], port, &["--nonblocking-from-gen", "2"]);
    let load = Load::start(vec![v4(port)], Ask::Raw);
    load.wait_more(5, &h);
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 2 ready", "(listen)"]);
    let line = h.expect_anywhere(&[
        "gen 2 accepts on",
        "non-blocking socket, gen 1 did as a blocking one",
    ]);
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    h.expect(&["gen 1 stopped cleanly"]);
    load.wait_more(5, &h);
    let (_, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}\n{}", h.transcript());
}

#[test]
fn generations_that_agree_on_non_blocking_mode_share_the_socket() {
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let mut h = fixture_server(&sb, &[], port, &["--nonblocking-from-gen", "1"]);
    restarts_under_load(&mut h, Load::start(vec![v4(port)], Ask::Raw), 5);
}

/// The backlog of the listening socket on `port` (`ss`: Send-Q of a listener).
fn backlog_of(port: u16) -> u32 {
    let out = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) is needed");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(2)
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("no listener on {port} in: {text}"))
}

#[test]
fn a_held_socket_keeps_its_backlog_whatever_listen_asks() {
    if !have("ss") {
        return;
    }
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    // The server asks for 5 (Python's socketserver default): the socket hotrun holds gets
    // at least hotrun's --backlog, and a later listen(5) does not cut it down.
    let mut h = fixture_server(&sb, &["--backlog", "2000"], port, &["--backlog", "5"]);
    assert_eq!(backlog_of(port), 2000);
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 2 ready", "(listen)"]);
    assert_eq!(backlog_of(port), 2000);
}

/// A Python server that also binds what must pass through untouched: a UDP port (the same
/// one each generation, SO_REUSEADDR), a TCP port 0, a unix socket; and a TCP listener
/// whose descriptor is inheritable (no close-on-exec), which must stay so after takeover.
const PY_SERVER: &str = r#"
import os, socket, sys
port, udp_port, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
gen = os.environ.get("HOTRUN_GEN")
def note(line):
    with open(log, "a") as f:
        f.write(line + "\n")
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
udp.bind(("127.0.0.1", udp_port))
eph = socket.socket()
eph.bind(("127.0.0.1", 0))
eph.listen()
unix = socket.socket(socket.AF_UNIX)
unix.bind(os.path.join(os.path.dirname(log), "gen-%s.sock" % gen))
unix.listen()
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.set_inheritable(True)
srv.bind(("127.0.0.1", port))
note("bound gen=%s inheritable=%s ephemeral=%d" % (gen, srv.get_inheritable(), eph.getsockname()[1]))
srv.listen(16)
while True:
    c, _ = srv.accept()
    c.sendall(b"gen=%s\n" % gen.encode())
    c.close()
"#;

#[test]
fn udp_port_0_and_unix_binds_pass_through_and_close_on_exec_is_kept() {
    if !have("python3") {
        return;
    }
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let (_udp_reserved, udp_port) = {
        let fd = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        setsockopt(&fd, sockopt::ReuseAddr, &true).unwrap();
        bind(
            fd.as_raw_fd(),
            &SockaddrIn::from(std::net::SocketAddrV4::new(
                std::net::Ipv4Addr::LOCALHOST,
                0,
            )),
        )
        .unwrap();
        let p = getsockname::<SockaddrIn>(fd.as_raw_fd()).unwrap().port();
        (fd, p)
    };
    let script = sb.path("server.py");
    fs::write(&script, PY_SERVER).unwrap();
    let log = sb.log();
    let (port_arg, udp_arg) = (port.to_string(), udp_port.to_string());
    let mut h = Hotrun::start(&[
        "--".as_ref(),
        "python3".as_ref(),
        script.as_os_str(),
        port_arg.as_ref(),
        udp_arg.as_ref(),
        log.arg(),
    ]);
    h.expect(&["gen 1 listens on", &format!("127.0.0.1:{port}")]);
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 2 took over", &format!("127.0.0.1:{port}")]);
    h.expect(&["gen 2 ready", "(listen)"]);
    log.wait_for(&["bound gen=2"]);
    // Only the fixed TCP port was held and taken over; every other bind ran as usual.
    assert_eq!(
        h.count(&["hotrun holds that socket"]),
        1,
        "{}",
        h.transcript()
    );
    assert_eq!(h.count(&["took over"]), 1, "{}", h.transcript());
    for g in ["1", "2"] {
        let line = log.wait_for(&[&format!("bound gen={g}")]);
        assert!(line.contains("inheritable=True"), "{line}");
    }
    assert_eq!(request(v4(port), Ask::Raw), Ok(()));
}

#[test]
fn a_server_that_binds_the_listen_address_itself_gets_that_socket() {
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let listen = format!("127.0.0.1:{port}");
    // Without takeover, its own bind would fail: hotrun already listens there.
    let mut h = fixture_server(&sb, &["--listen", &listen], port, &[]);
    let took = h.expect_anywhere(&["gen 1 took over", &listen]);
    assert!(took.contains("the listening socket hotrun holds"), "{took}");
    sb.log()
        .wait_for(&["listening gen=1", &format!("port={port}")]);
    restarts_under_load(&mut h, Load::start(vec![v4(port)], Ask::Raw), 5);
}

#[test]
fn a_server_that_blocks_its_stop_signal_outside_poll_stops_cleanly_while_drained() {
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let gate = sb.path("gen2-may-accept");
    let mut h = fixture_server(
        &sb,
        // A drain that does not end during the test: the stop comes from a shutdown.
        &["--drain", "10m"],
        port,
        &[
            "--sigblock-server",
            "--later-gens-wait-for",
            gate.to_str().unwrap(),
        ],
    );
    let log = sb.log();
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 2 ready", "(listen)"]);
    h.expect(&["gen 1 takes no new connections"]);
    // A connection while gen 2 does not accept yet: gen 1's poll sees it, and its blocking
    // accept (SIGTERM blocked) is held back by hotrun.
    let client = thread::spawn(move || request(v4(port), Ask::Raw));
    log.wait_for(&["accepting gen=1"]);
    fs::write(&gate, "").unwrap();
    assert_eq!(client.join().unwrap(), Ok(()), "{}", h.transcript());
    log.wait_for(&["accepting gen=2"]);
    // The stop signal (a shutdown here; a drain's end takes the same path): hotrun sends
    // gen 1 back to its poll (EINTR), where SIGTERM reaches it; it cleans up and exits 0,
    // within the grace period, without SIGKILL.
    h.signal(Signal::SIGTERM);
    h.expect(&["gen 1 stopped cleanly", "(exited with 0)"]);
    log.wait_for(&["accept-interrupted gen=1", &format!("err={}", libc::EINTR)]);
    log.wait_for(&["cleanup gen=1"]);
    h.wait();
    assert_eq!(h.count(&["SIGKILL"]), 0, "{}", h.transcript());
}

#[test]
fn takeover_events_are_in_the_event_stream() {
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let events = sb.path("events.jsonl");
    let mut h = fixture_server(&sb, &["--events", events.to_str().unwrap()], port, &[]);
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 1 stopped cleanly"]);
    let text = fs::read_to_string(&events).unwrap();
    let names: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["event"].as_str().unwrap().to_string()
        })
        .collect();
    for name in [
        "socket_held",
        "socket_taken_over",
        "ready",
        "draining",
        "stop_sent",
    ] {
        assert!(names.iter().any(|n| n == name), "no {name} in {names:?}");
    }
    let taken: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "socket_taken_over")
        .unwrap();
    assert_eq!(taken["gen"], 2);
    assert_eq!(taken["addr"], format!("127.0.0.1:{port}"));
}

/// `hotrun drill` with a probe over a server that binds its own port: passes.
fn drill_passes(probe: &str, command: &[&std::ffi::OsStr], dir: Option<&Path>) {
    let mut cmd = Command::new(hotrun_exe());
    cmd.args(["drill", "--restarts", "3", "--probe", probe, "--"])
        .args(command)
        .stdin(std::process::Stdio::null());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("drill passed"), "{stdout}\n{stderr}");
    assert_eq!(
        stderr.matches("took over").count(),
        3,
        "every restart took the socket over\n{stderr}"
    );
}

#[test]
fn a_drill_passes_on_the_fixture_binding_its_own_port() {
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let app = sb.install_fixture("app");
    let port_arg = port.to_string();
    drill_passes(
        &format!("tcp:127.0.0.1:{port}"),
        &[app.as_os_str(), "--port".as_ref(), port_arg.as_ref()],
        None,
    );
}

#[test]
fn a_drill_passes_on_python_http_server() {
    if !have("python3") {
        return;
    }
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let port_arg = port.to_string();
    drill_passes(
        &format!("http://127.0.0.1:{port}/"),
        &[
            "python3".as_ref(),
            "-m".as_ref(),
            "http.server".as_ref(),
            "--bind".as_ref(),
            "127.0.0.1".as_ref(),
            "--directory".as_ref(),
            sb.path("").as_os_str(),
            port_arg.as_ref(),
        ],
        None,
    );
}

#[test]
fn a_drill_passes_on_a_go_server_and_under_go_run() {
    if !have("go") {
        return;
    }
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let dir = go_source(&sb);
    let bin = sb.path("server");
    go_build(&dir, &bin);
    let port_arg = port.to_string();
    let probe = format!("http://127.0.0.1:{port}/");
    drill_passes(&probe, &[bin.as_os_str(), port_arg.as_ref()], None);
    drill_passes(
        &probe,
        &[
            "go".as_ref(),
            "run".as_ref(),
            ".".as_ref(),
            port_arg.as_ref(),
        ],
        Some(&dir),
    );
}

/// Where seccomp is denied (a container's profile), hotrun says so once and restarts the
/// plain way: `all` denies every seccomp call (the start-up check fails), `install` only
/// installing a filter (each generation's attempt fails; the first failure turns it off).
fn denied(how: &str) {
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let port_arg = port.to_string();
    let fixture = fixture_exe();
    let mut h = Hotrun::start_program(
        &fixture,
        &[
            "deny-seccomp".as_ref(),
            how.as_ref(),
            hotrun_exe().as_ref(),
            "--".as_ref(),
            app.as_os_str(),
            "--log".as_ref(),
            log.arg(),
            "--port".as_ref(),
            port_arg.as_ref(),
        ],
        true,
        |_| {},
    );
    h.expect_anywhere(&["socket takeover is off", "Operation not permitted"]);
    log.wait_for(&["listening gen=1"]);
    for _ in 0..3 {
        let before = log.count(&["listening gen="]);
        h.signal(Signal::SIGHUP);
        wait_until(
            "the server to come back",
            || log.count(&["listening gen="]) > before && request(v4(port), Ask::Raw).is_ok(),
            || h.transcript(),
        );
    }
    assert_eq!(
        h.count(&["socket takeover is off"]),
        1,
        "{}",
        h.transcript()
    );
    assert_eq!(h.count(&["took over"]), 0, "{}", h.transcript());
}

#[test]
fn where_seccomp_is_denied_hotrun_says_so_once_and_restarts_the_plain_way() {
    denied("all");
}

#[test]
fn where_installing_a_filter_is_denied_hotrun_says_so_once_and_restarts_the_plain_way() {
    denied("install");
}

/// A server with two SO_REUSEPORT listeners on one port (per-thread accept loops).
const PY_REUSEPORT: &str = r#"
import os, socket, sys, threading
port = int(sys.argv[1])
gen = os.environ.get("HOTRUN_GEN")
def serve(s):
    while True:
        c, _ = s.accept()
        c.sendall(b"gen=%s\n" % gen.encode())
        c.close()
socks = []
for _ in range(2):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    socks.append(s)
for s in socks:
    s.listen(16)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
threading.Event().wait()
"#;

#[test]
fn reuseport_listeners_of_one_server_all_get_the_held_socket() {
    if !have("python3") {
        return;
    }
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let script = sb.path("reuseport.py");
    fs::write(&script, PY_REUSEPORT).unwrap();
    let port_arg = port.to_string();
    let mut h = Hotrun::start(&[
        "--".as_ref(),
        "python3".as_ref(),
        script.as_os_str(),
        port_arg.as_ref(),
    ]);
    h.expect(&["gen 1 listens on", &format!("127.0.0.1:{port}")]);
    // Both of gen 2's binds get the one socket hotrun holds; gen 1's second socket dies
    // with gen 1 (were it held, connections balanced to it would wait forever).
    restarts_under_load_taking(&mut h, Load::start(vec![v4(port)], Ask::Raw), 5, 2);
    assert_eq!(
        h.count(&["hotrun holds that socket"]),
        1,
        "{}",
        h.transcript()
    );
}

#[test]
fn a_privileged_port_binds_as_the_server_and_is_held_once_it_listens() {
    if !root("binding a port below 1024") {
        return;
    }
    // A port below 1024 no one uses, reserved like the others (no listen): bound without
    // SO_REUSEADDR, so that the bind fails on a port anyone holds (another run of this
    // test included), then given SO_REUSEADDR for the server to bind beside it.
    let (reserved, port) = (600u16..1024)
        .find_map(|p| {
            let fd = socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .ok()?;
            let addr = SockaddrIn::from(std::net::SocketAddrV4::new(
                std::net::Ipv4Addr::UNSPECIFIED,
                p,
            ));
            bind(fd.as_raw_fd(), &addr).ok()?;
            setsockopt(&fd, sockopt::ReuseAddr, &true).ok()?;
            Some((fd, p))
        })
        .expect("a free port below 1024");
    let sb = Sandbox::new();
    let mut h = fixture_server(&sb, &[], port, &[]);
    h.expect_anywhere(&["gen 1 listens on", &format!("127.0.0.1:{port}")]);
    restarts_under_load(&mut h, Load::start(vec![v4(port)], Ask::Raw), 3);
    drop(reserved);
}

/// A port another program listens on: the server's own bind fails (hotrun made it for
/// it) and the server exits; hotrun says who holds the port and how to find out, once,
/// instead of only waiting for a change.
#[test]
fn a_port_another_program_holds_is_named_once_with_how_to_find_it() {
    let sb = Sandbox::new();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().port();
    let mut h = start_fixture(&sb, &[], &["--port", &port.to_string()]);
    sb.log()
        .wait_for(&[&format!("bind-failed gen=1 port={port}")]);
    let line = h.expect_anywhere(&[
        &format!("gen 1 cannot bind 127.0.0.1:{port}"),
        "address already in use by a process hotrun did not start",
    ]);
    assert!(
        line.contains(&format!("ss -ltnp 'sport = :{port}'")),
        "{line}"
    );
    h.expect(&["gen 1 exited with 98"]);
    // A second try (SIGHUP) fails the same way and is not told again.
    h.signal(Signal::SIGHUP);
    sb.log()
        .wait_for(&[&format!("bind-failed gen=2 port={port}")]);
    h.expect(&["gen 2 exited with 98"]);
    h.signal(Signal::SIGTERM);
    h.wait();
    let said = h.transcript();
    assert_eq!(said.matches("cannot bind").count(), 1, "{said}");
    drop(other);
}

/// A server that binds another address of a port hotrun holds (`--listen 127.0.0.1:P`, the
/// server binds 0.0.0.0:P): hotrun names the address it holds, to bind instead.
#[test]
fn a_port_hotrun_holds_on_another_address_is_named_with_the_address_to_bind() {
    let sb = Sandbox::new();
    let (_reserved, port) = reserve_port();
    let listen = format!("127.0.0.1:{port}");
    let mut h = start_fixture(
        &sb,
        &["--listen", &listen],
        &["--port", &port.to_string(), "--bind-host", "0.0.0.0"],
    );
    sb.log()
        .wait_for(&[&format!("bind-failed gen=1 port={port}")]);
    h.expect_anywhere(&[
        &format!("gen 1 cannot bind 0.0.0.0:{port}"),
        &format!("hotrun holds port {port} on {listen}"),
        "bind that same address",
    ]);
    h.signal(Signal::SIGTERM);
    h.wait();
}
