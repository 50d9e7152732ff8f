//! Listening sockets that hotrun binds once, keeps open for its whole life and hands to
//! every generation through systemd's socket-activation protocol: the sockets sit at fd
//! 3, 4, … in order, `LISTEN_FDS` says how many, `LISTEN_FDNAMES` names them, and
//! `LISTEN_PID` is the child's own pid (set by the exec trampoline in `process.rs`).
//!
//! hotrun keeps its sockets *at* fds 3.. (close-on-exec) from start-up on, so that no
//! other descriptor (std's exec-error pipe, inotify, a notify socket) can ever land on a
//! number that the child must find a socket at; the child only clears close-on-exec on
//! them. Because hotrun holds the sockets, connections that arrive while no generation
//! accepts wait in the kernel's backlog instead of being refused.

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrStorage, UnixAddr,
    bind, getsockname, listen, setsockopt, socket, sockopt,
};

use crate::exit::Failure;

/// The first descriptor of the protocol (`SD_LISTEN_FDS_START`).
pub(crate) const FIRST_FD: RawFd = 3;

/// The name in `LISTEN_FDNAMES` of a socket that has none (as systemd writes it).
pub(crate) const UNNAMED: &str = "unknown";
/// How many sockets there are, from `FIRST_FD` on.
pub(crate) const LISTEN_FDS: &str = "LISTEN_FDS";
/// Their names, `:`-separated.
pub(crate) const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
/// The pid the sockets are for: anyone else ignores them.
pub(crate) const LISTEN_PID: &str = "LISTEN_PID";

/// Where to listen, from `--listen`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ListenSpec {
    pub(crate) name: Option<String>,
    pub(crate) addr: ListenAddr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// `8080` (loopback), `HOST:PORT`, `[V6]:PORT`, `unix:PATH` or a path with a `/`, each
/// optionally prefixed with `NAME=`.
pub(crate) fn parse_spec(text: &str) -> Result<ListenSpec, String> {
    let (name, rest) = match text.split_once('=') {
        Some((name, rest)) => (Some(name.to_string()), rest),
        None => (None, text),
    };
    if let Some(name) = &name
        && (name.is_empty() || name.contains(':') || name.len() > 255)
    {
        return Err("a socket name must be 1 to 255 characters without ':'".into());
    }
    let addr = if let Some(path) = rest.strip_prefix("unix:") {
        ListenAddr::Unix(PathBuf::from(path))
    } else if rest.contains('/') {
        ListenAddr::Unix(PathBuf::from(rest))
    } else if let Ok(port) = rest.parse::<u16>() {
        ListenAddr::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
    } else if let Ok(addr) = rest.parse::<SocketAddr>() {
        ListenAddr::Tcp(addr)
    } else if rest
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        let addr = rest
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve '{rest}': {e}"))?
            .next()
            .ok_or_else(|| format!("'{rest}' resolves to no address"))?;
        ListenAddr::Tcp(addr)
    } else {
        return Err("expected PORT, HOST:PORT, [V6]:PORT or unix:PATH (optionally NAME=…)".into());
    };
    if let ListenAddr::Unix(path) = &addr {
        // sun_path holds 108 bytes on Linux (104 on macOS), the final NUL included.
        if path.as_os_str().is_empty() || path.as_os_str().len() > 103 {
            return Err("a unix socket path must be 1 to 103 bytes long".into());
        }
    }
    Ok(ListenSpec { name, addr })
}

/// The sockets every generation gets.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    /// At fds 3, 4, … in order.
    fds: Vec<OwnedFd>,
    names: Vec<String>,
    /// What each one is bound to (the real port when 0 was asked).
    pub(crate) bound: Vec<ListenAddr>,
    /// Unix socket files hotrun created (removed when it exits).
    created: Vec<PathBuf>,
    backlog: i32,
}

impl Listeners {
    /// Finds sockets that no longer listen and binds them anew at the same descriptor.
    ///
    /// A child that calls `shutdown()` on its copy of a listening socket (some servers do
    /// it to wake their accept loop when they stop) breaks it for every holder: accept
    /// fails with EINVAL and connections are refused. The broken socket still holds its
    /// address, but a fresh one with SO_REUSEADDR can be bound beside it. Generations
    /// started from now on get the fresh socket; the one serving has the broken one and
    /// must be restarted. Returns one line per socket: what was found and what was done.
    pub(crate) fn repair(&mut self) -> Vec<String> {
        let mut told = Vec::new();
        for i in 0..self.fds.len() {
            let listening = matches!(
                nix::sys::socket::getsockopt(&self.fds[i], sockopt::AcceptConn),
                Ok(true)
            );
            if listening {
                continue;
            }
            let addr = self.bound[i].clone();
            let target = FIRST_FD + i as RawFd;
            if let ListenAddr::Unix(path) = &addr {
                let _ = std::fs::remove_file(path);
            }
            let spec = ListenSpec {
                name: None,
                addr: addr.clone(),
            };
            let fresh = bind_one(&spec, self.backlog).map(|(fd, _, _)| fd);
            let result = fresh.map_err(|f| f.message).and_then(|fresh| {
                // SAFETY: `target` is hotrun's own listening socket at that number; dup2
                // atomically replaces it with the fresh one, which is then owned here.
                let placed = unsafe {
                    if libc::dup2(fresh.as_raw_fd(), target) < 0 {
                        return Err(format!("dup2: {}", Errno::last()));
                    }
                    OwnedFd::from_raw_fd(target)
                };
                fcntl(placed.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
                    .map_err(|e| format!("close-on-exec: {e}"))?;
                Ok(placed)
            });
            match result {
                Ok(placed) => {
                    // The old OwnedFd would close `target`, which now is the fresh socket.
                    std::mem::forget(std::mem::replace(&mut self.fds[i], placed));
                    told.push(format!(
                        "the listening socket {addr} (fd {target}) was shut down by a child \
                         (a server must close, not shutdown(), its listening socket); bound it \
                         anew"
                    ));
                }
                Err(err) => told.push(format!(
                    "the listening socket {addr} (fd {target}) was shut down by a child and \
                     cannot be bound anew: {err}; connections to it are refused"
                )),
            }
        }
        told
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.fds.len()
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// A copy of every socket (close-on-exec, at some free descriptor), with its name.
    pub(crate) fn copies(&self) -> Vec<(OwnedFd, String)> {
        self.fds
            .iter()
            .zip(&self.names)
            .filter_map(|(fd, name)| fd.try_clone().ok().map(|fd| (fd, name.clone())))
            .collect()
    }

    /// The unix socket files hotrun created (and removes at exit).
    pub(crate) fn created(&self) -> &[PathBuf] {
        &self.created
    }

    /// The environment the protocol needs (all but `LISTEN_PID`).
    pub(crate) fn env(&self) -> Vec<(&'static str, OsString)> {
        if self.is_empty() {
            return Vec::new();
        }
        vec![
            (LISTEN_FDS, self.fds.len().to_string().into()),
            (LISTEN_FDNAMES, self.names.join(":").into()),
        ]
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for path in &self.created {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Adopts the sockets hotrun itself was given (`LISTEN_FDS` for this pid), binds the
/// `specs`, and moves them all to fds 3, 4, …. Must run before hotrun opens any other
/// descriptor.
pub(crate) fn open(specs: &[ListenSpec], backlog: i32) -> Result<Listeners, Failure> {
    let mut listeners = Listeners::default();
    listeners.backlog = backlog;
    for (fd, name) in inherited() {
        let addr = describe(fd.as_raw_fd());
        listeners.fds.push(fd);
        listeners.names.push(name);
        listeners.bound.push(addr);
    }
    for spec in specs {
        let (fd, addr, created) = bind_one(spec, backlog)?;
        listeners.fds.push(fd);
        listeners
            .names
            .push(spec.name.clone().unwrap_or_else(|| UNNAMED.into()));
        listeners.bound.push(addr);
        listeners.created.extend(created);
    }
    // Move each to its place; sources are never below their targets (descriptors are
    // handed out lowest first), so a move never clobbers a socket not yet moved.
    for (i, fd) in listeners.fds.iter_mut().enumerate() {
        let target = FIRST_FD + i as RawFd;
        if fd.as_raw_fd() != target {
            // SAFETY: `target` is either free or a descriptor hotrun inherited without
            // close-on-exec and owns no object for (nothing else is open yet); dup2
            // replaces it atomically and the result is owned here alone.
            let placed = unsafe {
                let rc = libc::dup2(fd.as_raw_fd(), target);
                if rc < 0 {
                    return Err(Failure::new(
                        crate::exit::FAILURE,
                        format!(
                            "cannot move a listening socket to fd {target}: {}",
                            Errno::last()
                        ),
                    ));
                }
                OwnedFd::from_raw_fd(rc)
            };
            *fd = placed;
        }
        fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|e| {
            Failure::new(
                crate::exit::FAILURE,
                format!("cannot set close-on-exec on fd {target}: {e}"),
            )
        })?;
    }
    Ok(listeners)
}

/// The sockets hotrun was started with, if `LISTEN_PID` names hotrun (systemd, systemfd).
fn inherited() -> Vec<(OwnedFd, String)> {
    let pid_ok = std::env::var(LISTEN_PID)
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let count = std::env::var(LISTEN_FDS)
        .ok()
        .and_then(|n| n.parse::<RawFd>().ok())
        .unwrap_or(0);
    if !pid_ok || count <= 0 {
        return Vec::new();
    }
    let names: Vec<String> = std::env::var(LISTEN_FDNAMES)
        .unwrap_or_default()
        .split(':')
        .map(str::to_owned)
        .collect();
    (0..count)
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        .filter(|i| unsafe { libc::fcntl(FIRST_FD + i, libc::F_GETFD) } >= 0)
        .map(|i| {
            // SAFETY: the protocol hands fds 3..3+LISTEN_FDS to this process; nothing
            // else in hotrun owns them.
            let fd = unsafe { OwnedFd::from_raw_fd(FIRST_FD + i) };
            let name = names
                .get(i as usize)
                .filter(|n| !n.is_empty())
                .cloned()
                .unwrap_or_else(|| UNNAMED.into());
            (fd, name)
        })
        .collect()
}

fn bind_one(
    spec: &ListenSpec,
    backlog: i32,
) -> Result<(OwnedFd, ListenAddr, Option<PathBuf>), Failure> {
    let fail = |what: &str, err: Errno| {
        let hint = match err {
            Errno::EADDRINUSE => " (address already in use: is another server or hotrun running?)",
            Errno::EACCES => " (permission denied: ports below 1024 need privileges)",
            Errno::EADDRNOTAVAIL => " (that address is not on this machine)",
            _ => "",
        };
        Failure::usage(format!(
            "--listen {}: cannot {what}: {err}{hint}",
            spec.addr
        ))
    };
    // macOS has no SOCK_CLOEXEC: close-on-exec is set right after, while hotrun has not
    // started a thread (nothing can fork in between).
    #[cfg(target_os = "macos")]
    let flags = SockFlag::empty();
    #[cfg(not(target_os = "macos"))]
    let flags = SockFlag::SOCK_CLOEXEC;
    let backlog = Backlog::new(backlog).map_err(|e| fail("listen", e))?;
    match &spec.addr {
        ListenAddr::Tcp(addr) => {
            let family = if addr.is_ipv4() {
                AddressFamily::Inet
            } else {
                AddressFamily::Inet6
            };
            let fd = socket(family, SockType::Stream, flags, None)
                .map_err(|e| fail("create a socket", e))?;
            cloexec(&fd).map_err(|e| fail("set close-on-exec", e))?;
            // No SO_REUSEPORT: a second hotrun on the same port must fail, not share it.
            setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| fail("set SO_REUSEADDR", e))?;
            match addr {
                SocketAddr::V4(v4) => bind(fd.as_raw_fd(), &SockaddrIn::from(*v4)),
                SocketAddr::V6(v6) => bind(fd.as_raw_fd(), &SockaddrIn6::from(*v6)),
            }
            .map_err(|e| fail("bind", e))?;
            listen(&fd, backlog).map_err(|e| fail("listen", e))?;
            let bound = describe(fd.as_raw_fd());
            Ok((fd, bound, None))
        }
        ListenAddr::Unix(path) => {
            if path.exists() || path.symlink_metadata().is_ok() {
                return Err(Failure::usage(format!(
                    "--listen {}: the path exists; remove it if no server uses it",
                    spec.addr
                )));
            }
            let fd = socket(AddressFamily::Unix, SockType::Stream, flags, None)
                .map_err(|e| fail("create a socket", e))?;
            cloexec(&fd).map_err(|e| fail("set close-on-exec", e))?;
            let unix =
                UnixAddr::new(path.as_os_str().as_bytes()).map_err(|e| fail("use the path", e))?;
            bind(fd.as_raw_fd(), &unix).map_err(|e| fail("bind", e))?;
            listen(&fd, backlog).map_err(|e| fail("listen", e))?;
            Ok((fd, ListenAddr::Unix(path.clone()), Some(path.clone())))
        }
    }
}

fn cloexec(fd: &OwnedFd) -> nix::Result<()> {
    fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map(drop)
}

fn describe(fd: RawFd) -> ListenAddr {
    match getsockname::<SockaddrStorage>(fd) {
        Ok(addr) => {
            if let Some(v4) = addr.as_sockaddr_in() {
                ListenAddr::Tcp(SocketAddr::V4((*v4).into()))
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                ListenAddr::Tcp(SocketAddr::V6((*v6).into()))
            } else if let Some(path) = addr.as_unix_addr().and_then(UnixAddr::path) {
                ListenAddr::Unix(path.to_path_buf())
            } else {
                ListenAddr::Unix(Path::new("?").to_path_buf())
            }
        }
        Err(_) => ListenAddr::Unix(Path::new("?").to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let tcp = |s: &str| parse_spec(s).map(|l| l.addr);
        assert_eq!(
            tcp("8080"),
            Ok(ListenAddr::Tcp("127.0.0.1:8080".parse().expect("addr")))
        );
        assert_eq!(
            tcp("0.0.0.0:80"),
            Ok(ListenAddr::Tcp("0.0.0.0:80".parse().expect("addr")))
        );
        assert_eq!(
            tcp("[::1]:0"),
            Ok(ListenAddr::Tcp("[::1]:0".parse().expect("addr")))
        );
        assert_eq!(tcp("unix:/tmp/s"), Ok(ListenAddr::Unix("/tmp/s".into())));
        assert_eq!(tcp("./s.sock"), Ok(ListenAddr::Unix("./s.sock".into())));
        let named = parse_spec("http=8080").expect("named");
        assert_eq!(named.name.as_deref(), Some("http"));
        assert!(parse_spec("a:b=8080").is_err());
        assert!(parse_spec("99999").is_err());
        assert!(parse_spec("nonsense").is_err());
        assert!(parse_spec(&format!("unix:/{}", "x".repeat(200))).is_err());
    }
}
