//! Readiness: the `sd_notify` receiver. Each generation gets its own `NOTIFY_SOCKET`, a
//! datagram socket at a filesystem path inside a private 0700 directory, so a `READY=1`
//! can only come from that generation (credentials cannot be trusted for this: the
//! `systemd-notify` tool sends its parent's pid, and macOS has no SO_PASSCRED).
//!
//! A reader thread per generation drains the socket until the generation is gone: it
//! turns `READY=1` and `STATUS=…` into inputs for the loop, and closes every descriptor
//! that arrives with a message (`sd_notify_barrier` / `systemd-notify` send a pipe and
//! wait until the receiver closes it). It blocks in `recvmsg` with no timeout, so an idle
//! generation costs no wake-ups; `shutdown()` of the socket ends the receive (with 0
//! bytes, on Linux and macOS alike), which is how the reader is stopped.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use crossbeam_channel::Sender;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

use crate::event::Generation;
use crate::input::Input;

/// The variable that tells a generation where its notify socket is.
pub(crate) const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// The private directory for the notify sockets; removed when dropped.
#[derive(Debug)]
pub(crate) struct NotifyDir {
    path: PathBuf,
}

impl NotifyDir {
    pub(crate) fn create() -> io::Result<NotifyDir> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        for attempt in 0..100u32 {
            let path = base.join(format!("hotrun-{}-{attempt}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
                    return Ok(NotifyDir { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(
            "cannot create a private directory for notify sockets",
        ))
    }

    /// The directory (removed by the guardian too, if hotrun is killed).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Binds the socket for one generation and starts draining it.
    pub(crate) fn socket_for(
        &self,
        generation: Generation,
        tx: Sender<Input>,
    ) -> io::Result<NotifySocket> {
        let path = self.path.join(format!("gen-{}.sock", generation.0));
        let _ = std::fs::remove_file(&path);
        let socket = Arc::new(UnixDatagram::bind(&path)?);
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            socket: Arc::clone(&socket),
            stop: Arc::clone(&stop),
            generation,
            tx,
        };
        thread::Builder::new()
            .name(format!("notify-{}", generation.0))
            .spawn(move || reader.run())?;
        Ok(NotifySocket { path, socket, stop })
    }
}

impl Drop for NotifyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One generation's notify socket; dropping it stops the reader and removes the file.
#[derive(Debug)]
pub(crate) struct NotifySocket {
    path: PathBuf,
    socket: Arc<UnixDatagram>,
    stop: Arc<AtomicBool>,
}

impl NotifySocket {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Reader {
    socket: Arc<UnixDatagram>,
    stop: Arc<AtomicBool>,
    generation: Generation,
    tx: Sender<Input>,
}

/// What one notify message says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) ready: bool,
    pub(crate) status: Option<String>,
    pub(crate) stopping: bool,
}

/// Parses `KEY=VALUE` lines (sd_notify(3)).
pub(crate) fn parse(text: &str) -> Message {
    let mut msg = Message::default();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("READY", "1")) => msg.ready = true,
            Some(("STOPPING", "1")) => msg.stopping = true,
            Some(("STATUS", status)) => msg.status = Some(status.to_string()),
            _ => {}
        }
    }
    msg
}

impl Reader {
    fn run(self) {
        // Common receivers cap a message at 4 KiB; take more to be safe.
        let mut buf = vec![0u8; 8192];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 16]);
        while !self.stop.load(Ordering::SeqCst) {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let received = recvmsg::<()>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                // The descriptors are closed right away; close-on-exec guards the moment
                // in between where the platform has it.
                #[cfg(target_os = "linux")]
                MsgFlags::MSG_CMSG_CLOEXEC,
                #[cfg(not(target_os = "linux"))]
                MsgFlags::empty(),
            );
            let (len, fds) = match received {
                Ok(msg) => {
                    let mut fds = Vec::new();
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(raw) = c {
                                fds.extend(raw);
                            }
                        }
                    }
                    (msg.bytes, fds)
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            };
            for raw in fds {
                // SAFETY: the kernel just installed this descriptor for this process and
                // nothing else knows it; closing it releases the sender's barrier.
                drop(unsafe { OwnedFd::from_raw_fd(raw) });
            }
            if len == 0 {
                // shutdown(), or an empty datagram.
                continue;
            }
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            let msg = parse(&text);
            if (msg.ready || msg.status.is_some())
                && self
                    .tx
                    .send(Input::Notify {
                        generation: self.generation,
                        ready: msg.ready,
                        status: msg.status,
                    })
                    .is_err()
            {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dropping_the_socket_wakes_and_ends_its_reader() {
        let dir = NotifyDir::create().expect("notify dir");
        let (tx, rx) = crossbeam_channel::unbounded();
        let socket = dir.socket_for(Generation(1), tx).expect("socket");
        let client = UnixDatagram::unbound().expect("client");
        client.send_to(b"STATUS=up", socket.path()).expect("send");
        // The reader is alive and blocked in its receive once the message came through.
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(30)),
            Ok(Input::Notify { .. })
        ));
        drop(socket);
        // Its sender goes with it: the channel disconnects once the thread has ended. (The
        // limit only bounds a failure; the socket has no receive timeout to fall back on.)
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(30)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        ));
    }

    #[test]
    fn messages() {
        assert_eq!(
            parse("STATUS=warming up\nREADY=1\n"),
            Message {
                ready: true,
                status: Some("warming up".into()),
                stopping: false
            }
        );
        assert_eq!(parse("READY=0"), Message::default());
        assert!(parse("STOPPING=1").stopping);
    }
}
