//! Zero-downtime restarts: sockets hotrun holds and hands over (LISTEN_FDS, LISTEN_PID),
//! readiness (sd_notify), and rollback when the new build is broken. Real consumers:
//! the `listenfd` crate, sd_listen_fds(3) rules in Rust and in Python, the `sd-notify`
//! crate.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::*;

/// Starts hotrun with one `--listen 0` socket; returns it and the port it reported.
fn serve(sb: &Sandbox, hotrun_args: &[&str], fixture_args: &[&str]) -> (Hotrun, u16) {
    let mut args = vec!["--listen", "web=0"];
    args.extend_from_slice(hotrun_args);
    let mut h = start_fixture(sb, &args, fixture_args);
    let port = listening_port(&h.expect(&["listening on 127.0.0.1:"]));
    (h, port)
}

fn ask(port: u16) -> Result<String, std::io::Error> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(DEADLINE))?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    if reply.starts_with("gen=") {
        Ok(reply.trim().to_string())
    } else {
        Err(std::io::Error::other(format!("bad reply {reply:?}")))
    }
}

/// A client that hammers the port until stopped, counting answers (by the generation
/// that gave them) and failures.
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
    failed: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, a, f, e) = (
            stop.clone(),
            answers.clone(),
            failed.clone(),
            errors.clone(),
        );
        let thread = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match ask(port) {
                    Ok(reply) => *a.lock().unwrap().entry(reply).or_insert(0) += 1,
                    Err(err) => {
                        e.lock().unwrap().push(err.to_string());
                        f.fetch_add(1, Ordering::SeqCst);
                    }
                }
                // Pace the load a little: two cores are shared with the servers.
                thread::sleep(Duration::from_millis(1));
            }
        });
        Load {
            stop,
            answers,
            failed,
            errors,
            thread: Some(thread),
        }
    }

    /// How many answers generation `g` gave so far.
    fn answers_from(&self, g: u64) -> u64 {
        let answers = self.answers.lock().unwrap();
        answers.get(&format!("gen={g}")).copied().unwrap_or(0)
    }

    /// Waits until generation `g` has given more than `after` answers (a handshake: the
    /// client is known to be asking at that point, whatever the machine's load).
    fn wait_for_answer(&self, g: u64, after: u64) {
        wait_until(
            &format!("an answer from gen {g}"),
            || self.answers_from(g) > after,
            || format!("answers so far: {:?}", self.answers.lock().unwrap()),
        );
    }

    /// Stops the client; returns (failed, first errors).
    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let errors = self
            .errors
            .lock()
            .unwrap()
            .iter()
            .take(5)
            .cloned()
            .collect();
        (self.failed.load(Ordering::SeqCst), errors)
    }
}

#[test]
fn no_request_fails_across_restarts_of_a_slow_starting_server() {
    let sb = Sandbox::new();
    let log = sb.log();
    // Each generation serves and says READY=1 only once the test opens its gate: a start
    // that lasts as long as the test needs, however fast the machine.
    touch(&sb.path("ready-1"));
    let gate = sb.path("ready-{gen}");
    let (mut h, port) = serve(
        &sb,
        &["--ready", "notify"],
        &[
            "--listen-fd",
            "--notify",
            "--ready-gate",
            gate.to_str().unwrap(),
        ],
    );
    h.expect(&["gen 1 ready after"]);
    let load = Load::start(port);
    load.wait_for_answer(1, 0);
    for g in 2..=6 {
        h.signal(Signal::SIGHUP);
        h.expect(&[&format!("gen {g} started")]);
        log.wait_for(&[&format!("gate gen={g} at=ready")]);
        // While gen g starts, gen g-1 goes on answering and is not asked to stop.
        load.wait_for_answer(g - 1, load.answers_from(g - 1));
        assert_eq!(
            log.count(&[&format!("signal gen={} sig=", g - 1)]),
            0,
            "{}",
            h.transcript()
        );
        touch(&sb.path(&format!("ready-{g}")));
        h.expect(&[&format!("gen {g} ready after"), "(READY=1)"]);
        h.expect(&[&format!("gen {} stopped cleanly", g - 1)]);
        // The client asked right across the restart: before it (gen g-1 answered) and
        // after it.
        load.wait_for_answer(g, 0);
    }
    let (failed, errors) = load.finish();
    assert_eq!(failed, 0, "failed requests: {errors:?}\n{}", h.transcript());
    assert_eq!(ask(port).unwrap(), "gen=6");
    // Every old generation drained and exited on its own.
    for g in 1..=5 {
        sb.log().wait_for(&[&format!("drained gen={g} ")]);
    }
}

#[test]
fn a_broken_build_is_rolled_back_while_the_old_generation_keeps_serving() {
    let sb = Sandbox::new();
    let (mut h, port) = serve(
        &sb,
        &["--ready", "notify"],
        &["--listen-fd", "--startup-ms", "200", "--notify"],
    );
    h.expect(&["gen 1 ready after"]);
    let load = Load::start(port);
    load.wait_for_answer(1, 0);
    // A build that dies at start.
    let broken = sb.path("broken.sh");
    fs::write(&broken, "#!/bin/sh\necho 'broken build' >&2\nexit 1\n").unwrap();
    fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let app = sb.path("app");
    replace_by_rename(&broken, &app);
    h.expect(&[
        "gen 2 exited with 1 after",
        "before ready; gen 1 still serving",
    ]);
    assert_eq!(ask(port).unwrap(), "gen=1");
    // The client is still being answered by gen 1 after the rollback.
    load.wait_for_answer(1, load.answers_from(1));
    // The next good build takes over.
    replace_by_rename(&fixture_exe(), &app);
    h.expect(&["gen 3 ready after"]);
    h.expect(&["gen 1 stopped cleanly"]);
    load.wait_for_answer(3, 0);
    let (failed, errors) = load.finish();
    assert_eq!(failed, 0, "failed requests: {errors:?}\n{}", h.transcript());
    assert_eq!(ask(port).unwrap(), "gen=3");
}

#[test]
fn a_new_generation_never_ready_is_stopped_and_the_old_one_keeps_serving() {
    let sb = Sandbox::new();
    let (mut h, port) = serve(
        &sb,
        &["--ready", "notify", "--ready-timeout", "500ms"],
        &["--listen-fd", "--notify"],
    );
    // The timeout is for gen 1 too, which a loaded machine may start more slowly: then it
    // is kept anyway (nothing else can serve). Either way it serves.
    h.expect(&["gen 1 ", "ready after"]);
    sb.log().wait_for(&["serving gen=1"]);
    // The new build never says READY=1.
    let silent = sb.path("silent.sh");
    fs::write(&silent, "#!/bin/sh\nexec sleep 600\n").unwrap();
    fs::set_permissions(&silent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    replace_by_rename(&silent, &sb.path("app"));
    h.expect(&["gen 2 not ready after", "stopping it, gen 1 keeps serving"]);
    h.expect(&["gen 2 stopped cleanly"]);
    assert_eq!(ask(port).unwrap(), "gen=1");
}

#[test]
fn an_unnamed_socket_is_shown_without_a_name_and_is_unknown_to_the_child() {
    let sb = Sandbox::new();
    let mut h = start_fixture(&sb, &["--listen", "0"], &["--listen-fd", "--log-env"]);
    let line = h.expect(&["listening on 127.0.0.1:"]);
    assert!(line.ends_with("(fd 3); every generation gets it"), "{line}");
    // As systemd names an unnamed socket.
    let env = sb.log().wait_for(&["env gen=1"]);
    assert!(env.contains("LISTEN_FDS=1 LISTEN_PID="), "{env}");
    assert!(env.contains("LISTEN_FDNAMES=unknown "), "{env}");
}

#[test]
fn the_child_gets_exactly_its_sockets_and_listen_pid_is_its_own() {
    let sb = Sandbox::new();
    let (mut h, port) = serve(
        &sb,
        &["--ready", "notify"],
        &["--listen-fd", "--notify", "--log-fds", "--log-env"],
    );
    h.expect(&["gen 1 ready after"]);
    let log = sb.log();
    let pid = pid_in(&log.wait_for(&["start gen=1"]));
    let env = log.wait_for(&["env gen=1"]);
    assert!(env.contains(&format!("LISTEN_PID={pid} ")), "{env}");
    assert!(env.contains("LISTEN_FDS=1 "), "{env}");
    assert!(env.contains("LISTEN_FDNAMES=web "), "{env}");
    assert!(
        field(&env, "NOTIFY_SOCKET").ends_with("gen-1.sock"),
        "{env}"
    );
    // 0-2 and the socket; sd-notify opens its own socket later, after this line.
    #[cfg(target_os = "linux")]
    assert_eq!(field(&log.wait_for(&["fds gen=1"]), "list"), "0,1,2,3");
    assert_eq!(ask(port).unwrap(), "gen=1");
}

#[test]
fn the_listenfd_crate_takes_the_socket() {
    let sb = Sandbox::new();
    let (mut h, port) = serve(&sb, &["--ready", "delay:100ms"], &["--listenfd-crate"]);
    h.expect(&["gen 1 ready after", "(delay)"]);
    assert_eq!(ask(port).unwrap(), "gen=1");
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 2 ready after"]);
    h.expect(&["gen 1 stopped cleanly"]);
    assert_eq!(ask(port).unwrap(), "gen=2");
}

#[test]
fn a_python_server_applying_sd_listen_fds_rules_works() {
    if !have("python3") {
        return;
    }
    let sb = Sandbox::new();
    let script = sb.path("server.py");
    fs::write(
        &script,
        r#"import os, socket, sys
# sd_listen_fds(3): the sockets are for this process only if LISTEN_PID is its pid.
if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
    sys.exit("LISTEN_PID/LISTEN_FDS not for me")
listener = socket.socket(fileno=3)
gen = os.environ["HOTRUN_GEN"]
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.sendto(b"STATUS=python ready\nREADY=1", os.environ["NOTIFY_SOCKET"])
# sd_notify_barrier(3): send a pipe; the receiver closes it once it has read all before.
import select
r, w = os.pipe()
notify.connect(os.environ["NOTIFY_SOCKET"])
socket.send_fds(notify, [b"BARRIER=1"], [w])
os.close(w)
ready, _, _ = select.select([r], [], [], 30)
print("barrier ok" if ready and os.read(r, 1) == b"" else "barrier timed out", flush=True)
while True:
    conn, _ = listener.accept()
    conn.sendall(f"gen={gen}\n".encode())
    conn.close()
"#,
    )
    .unwrap();
    let mut h = Hotrun::start(&[
        "--listen".as_ref(),
        "0".as_ref(),
        "--ready".as_ref(),
        "notify".as_ref(),
        "--".as_ref(),
        "python3".as_ref(),
        script.as_os_str(),
    ]);
    let port = listening_port(&h.expect(&["listening on 127.0.0.1:"]));
    h.expect(&["gen 1: python ready"]);
    h.expect(&["gen 1 ready after", "(READY=1)"]);
    h.expect_anywhere(&["stdout: barrier ok"]);
    assert_eq!(ask(port).unwrap(), "gen=1");
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 2 ready after"]);
    // This server does not drain (SIGTERM kills it mid-request): ask once it is gone.
    h.expect(&["gen 1 stopped"]);
    assert_eq!(ask(port).unwrap(), "gen=2");
}

#[test]
fn a_unix_socket_is_handed_over_and_removed_at_exit() {
    let sb = Sandbox::new();
    let path = sb.path("web.sock");
    let log = sb.log();
    let mut h = start_fixture(&sb, &["--listen", path.to_str().unwrap()], &["--log-env"]);
    h.expect(&["listening on unix:"]);
    log.wait_for(&["env gen=1 LISTEN_FDS=1 "]);
    assert!(path.exists());
    h.signal(Signal::SIGTERM);
    h.wait();
    assert!(!path.exists(), "the socket file outlived hotrun");
}

#[test]
fn inherited_socket_activation_variables_are_not_passed_on() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let mut h = Hotrun::start_with(
        &[
            app.as_os_str(),
            "--log".as_ref(),
            log.arg(),
            "--log-env".as_ref(),
        ],
        |cmd| {
            cmd.env("LISTEN_FDS", "2")
                .env("LISTEN_PID", "1")
                .env("LISTEN_FDNAMES", "a:b")
                .env("NOTIFY_SOCKET", "/run/systemd/notify");
        },
    );
    h.expect(&["gen 1 started"]);
    let env = log.wait_for(&["env gen=1"]);
    assert!(
        env.contains("LISTEN_FDS=- LISTEN_PID=- LISTEN_FDNAMES=- NOTIFY_SOCKET=-"),
        "{env}"
    );
}

#[test]
fn sockets_hotrun_was_started_with_are_adopted() {
    let sb = Sandbox::new();
    let app = sb.install_fixture("app");
    let log = sb.log();
    let outer = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = outer.local_addr().unwrap().port();
    let outer_fd = std::os::fd::AsRawFd::as_raw_fd(&outer);
    // systemd (or systemfd) style: the socket at fd 3, LISTEN_PID = hotrun's own pid.
    let mut h = Hotrun::start_opts(
        &[
            "-c".as_ref(),
            "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=outer exec \"$0\" \"$@\"".as_ref(),
            hotrun_exe().as_ref(),
            "--".as_ref(),
            app.as_os_str(),
            "--log".as_ref(),
            log.arg(),
            "--listen-fd".as_ref(),
        ],
        true,
        |cmd| {
            *cmd = {
                let mut sh = Command::new("sh");
                sh.args(cmd.get_args());
                sh.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                std::os::unix::process::CommandExt::process_group(&mut sh, 0);
                // SAFETY: dup2 and fcntl are async-signal-safe.
                unsafe {
                    std::os::unix::process::CommandExt::pre_exec(&mut sh, move || {
                        // dup2(3, 3) would leave close-on-exec set: clear it instead.
                        let rc = if outer_fd == 3 {
                            libc::fcntl(3, libc::F_SETFD, 0)
                        } else {
                            libc::dup2(outer_fd, 3)
                        };
                        if rc < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                sh
            };
        },
    );
    h.expect(&[&format!("listening on 127.0.0.1:{port} (fd 3, name outer)")]);
    log.wait_for(&["serving gen=1"]);
    drop(outer);
    assert_eq!(ask(port).unwrap(), "gen=1");
}

#[test]
fn bad_listen_and_ready_values_exit_2_with_a_clear_message() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let sb = Sandbox::new();
    let existing = sb.path("exists.sock");
    fs::write(&existing, "").unwrap();
    let existing = existing.to_str().unwrap().to_string();
    let app = sb.install_fixture("app");
    let app = app.to_str().unwrap();
    // hotrun's own checks: one line.
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--listen", &taken_port], "address already in use"),
        (vec!["--listen", &existing], "the path exists"),
    ];
    for (args, message) in cases {
        let mut full = args.clone();
        full.extend(["--", app]);
        let out = Command::new(hotrun_exe()).args(&full).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(
            lines[0].starts_with("hotrun: error: "),
            "{args:?}: {stderr}"
        );
        assert!(lines[0].contains(message), "{args:?}: {stderr}");
    }
    // Values clap rejects: clap's message, whole.
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--listen", "nonsense"], "expected PORT"),
        (vec!["--listen", "70000"], "expected PORT"),
        (vec!["--listen", "a:b=8080"], "without ':'"),
        (vec!["--backlog", "0", "--listen", "0"], "--backlog"),
        (
            vec!["--ready", "soon"],
            "expected notify, delay:DURATION or exec",
        ),
        (
            vec!["--ready", "http://127.0.0.1:1/health"],
            "the old generation may answer",
        ),
        (vec!["--ready", "delay:5"], "add a unit"),
        (vec!["--ready-timeout", "-3s"], "negative"),
    ];
    for (args, message) in cases {
        let mut full = args.clone();
        full.extend(["--", app]);
        let out = Command::new(hotrun_exe()).args(&full).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let head = format!("error: invalid value '{}' for '{}", args[1], args[0]);
        assert!(lines[0].starts_with(&head), "{args:?}: {stderr}");
        assert!(lines[0].contains(message), "{args:?}: {stderr}");
        assert_eq!(
            lines[1..],
            ["", "For more information, try '--help'."],
            "{args:?}"
        );
    }
    // The port was not taken over, nor the path removed.
    assert!(Path::new(&existing).exists());
    drop(taken);
}

#[test]
fn a_child_that_shuts_the_listening_socket_down_does_not_take_the_service_with_it() {
    let sb = Sandbox::new();
    let (mut h, port) = serve(
        &sb,
        &["--ready", "notify"],
        &["--listen-fd", "--notify", "--shutdown-listener"],
    );
    h.expect(&["gen 1 ready"]);
    h.signal(Signal::SIGHUP);
    h.expect(&["gen 2 ready"]);
    // gen 1 shuts the shared socket down as it stops: hotrun binds it anew and replaces
    // gen 2, which holds the broken one.
    h.expect(&["was shut down by a child", "bound it anew"]);
    h.expect(&["gen 3 started", "(listening socket bound anew)"]);
    h.expect(&["gen 3 ready"]);
    assert_eq!(ask(port).unwrap(), "gen=3");
}

#[test]
fn the_unix_socket_is_removed_even_when_hotrun_dies_of_the_forwarded_signal() {
    let sb = Sandbox::new();
    let path = sb.path("web.sock");
    let mut h = start_fixture(
        &sb,
        &["--listen", path.to_str().unwrap()],
        &["--die-by-signal"],
    );
    h.signal(Signal::SIGINT);
    let status = h.wait();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGINT)
    );
    assert!(!path.exists(), "the socket file outlived hotrun");
}
