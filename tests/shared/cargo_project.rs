//! A small cargo project made in a temporary directory, for the tests and the benchmark
//! of `--build`: a std-only HTTP server (no dependencies, so it builds offline in a
//! fraction of a second) that answers `version=V gen=G`, whose version the caller edits,
//! and, on request, a build script that waits at a gate the caller opens (a build that
//! lasts exactly as long as a test needs, by handshake rather than by sleeping).
//!
//! The server serves the socket hotrun hands it (`LISTEN_FDS`, fd 3) or binds the address
//! given as its first argument itself; `--startup-ms N` makes it take N ms to start; it
//! sends `READY=1` to `$NOTIFY_SOCKET` once it listens.

// The tests and the benchmark each use part of this.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The server's source; `@VERSION@` is replaced.
const MAIN_RS: &str = r#"use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::FromRawFd;

const VERSION: &str = "@VERSION@";

fn main() {
    let mut args = std::env::args().skip(1);
    let mut addr = None;
    let mut startup_ms = 0;
    while let Some(arg) = args.next() {
        if arg == "--startup-ms" {
            startup_ms = args.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        } else {
            addr = Some(arg);
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(startup_ms));
    let listener = if std::env::var_os("LISTEN_FDS").is_some() {
        // SAFETY: fd 3 is the listening socket hotrun hands over (LISTEN_FDS).
        unsafe { TcpListener::from_raw_fd(3) }
    } else {
        TcpListener::bind(addr.expect("an address to listen on")).expect("bind")
    };
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        let socket = std::os::unix::net::UnixDatagram::unbound().expect("datagram socket");
        let _ = socket.send_to(b"READY=1", path);
    }
    let generation = std::env::var("HOTRUN_GEN").unwrap_or_default();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        let body = format!("version={VERSION} gen={generation}\n");
        let _ = write!(
            stream,
            "HTTP/1.0 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
    }
}
"#;

/// A build script that says it runs (`waiting pid=P` in `$TINY_GATE/builds`) and then
/// waits until `$TINY_GATE/open` exists. Without `TINY_GATE` it does nothing.
const BUILD_RS: &str = r#"fn main() {
    let Some(gate) = std::env::var_os("TINY_GATE").map(std::path::PathBuf::from) else {
        return;
    };
    use std::io::Write;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(gate.join("builds"))
        .expect("gate log");
    // One write: a reader never sees half the line.
    log.write_all(format!("waiting pid={}\n", std::process::id()).as_bytes())
        .expect("gate log");
    drop(log);
    while !gate.join("open").exists() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
"#;

/// A cargo project of one binary.
pub(crate) struct CargoProject {
    /// The project's directory (Cargo.toml, src/).
    pub(crate) dir: PathBuf,
    /// The package and binary name.
    pub(crate) name: String,
}

impl CargoProject {
    /// Writes the project into `dir` (created) at version 1; `gate`: with the build script.
    pub(crate) fn new(dir: &Path, name: &str, gate: bool) -> CargoProject {
        fs::create_dir_all(dir.join("src")).expect("project dir");
        fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 [workspace]\n"
            ),
        )
        .expect("Cargo.toml");
        if gate {
            fs::write(dir.join("build.rs"), BUILD_RS).expect("build.rs");
        }
        let project = CargoProject {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        };
        project.write_version("1");
        // As in a real project: Cargo.lock exists (a first build would write it).
        let mut lock = Command::new(Self::cargo());
        lock.args(["generate-lockfile", "--offline", "--quiet"]);
        project.env(&mut lock);
        let out = lock.output().expect("cargo generate-lockfile");
        assert!(
            out.status.success(),
            "cargo generate-lockfile failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        project
    }

    /// `target/debug/NAME`, where `cargo build` puts the binary.
    pub(crate) fn binary(&self) -> PathBuf {
        self.dir.join("target/debug").join(&self.name)
    }

    pub(crate) fn main_rs(&self) -> PathBuf {
        self.dir.join("src/main.rs")
    }

    /// Saves the source with this version (written in place, as most editors do).
    pub(crate) fn write_version(&self, version: &str) {
        fs::write(self.main_rs(), MAIN_RS.replace("@VERSION@", version)).expect("main.rs");
    }

    /// Saves a source that does not compile.
    pub(crate) fn write_broken(&self) {
        let broken = MAIN_RS.replace("@VERSION@", "broken").replace(
            "fn main() {",
            "fn main() {\n    let this line does not compile;",
        );
        fs::write(self.main_rs(), broken).expect("main.rs");
    }

    /// The cargo that runs the tests (or the one on PATH).
    pub(crate) fn cargo() -> String {
        std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
    }

    /// The build command for `--build`: offline, this project's own target directory
    /// (set by `env`).
    pub(crate) fn build_command() -> String {
        format!("'{}' build --offline", Self::cargo())
    }

    /// The environment the build needs, set on the command that runs hotrun (the build
    /// inherits it): the target directory inside the project, whatever the caller's is,
    /// and no flags of the outer build.
    pub(crate) fn env(&self, cmd: &mut Command) {
        cmd.current_dir(&self.dir)
            .env("CARGO_TARGET_DIR", self.dir.join("target"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
    }

    /// Builds once, directly (a warm-up, or the binary from before).
    pub(crate) fn build_now(&self) {
        let mut cmd = Command::new(Self::cargo());
        cmd.args(["build", "--offline", "--quiet"]);
        self.env(&mut cmd);
        let out = cmd.output().expect("cargo");
        assert!(
            out.status.success(),
            "cargo build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One HTTP request to 127.0.0.1:`port`; the body (`version=V gen=G`), or `None`.
pub(crate) fn ask(port: u16, timeout: Duration) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let body = reply.split("\r\n\r\n").nth(1)?;
    body.starts_with("version=")
        .then(|| body.trim().to_string())
}

/// The `V` of a `version=V gen=G` body.
pub(crate) fn version_of(body: &str) -> &str {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix("version="))
        .unwrap_or("")
}
