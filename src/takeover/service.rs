//! The takeover thread: it receives every generation's `bind`, `listen` and `accept`
//! notifications, answers them, and tells the loop what it saw.
//!
//! * `bind` of an address hotrun holds (same family, address, port, V6ONLY): the held
//!   socket is installed at the caller's descriptor (`SECCOMP_IOCTL_NOTIF_ADDFD` with
//!   `SETFD`, close-on-exec as the caller had it) and the call returns 0. A first TCP bind
//!   with a port is done by hotrun on its own reference to the caller's socket
//!   (`pidfd_getfd`), which it holds from then on — except for a privileged port, whose
//!   bind runs as the caller (with its privileges, not hotrun's) and is held at `listen`.
//!   Anything else (port 0, UDP, unix, netlink) runs as usual.
//! * `listen` on a held socket: the first one is run by hotrun, with at least hotrun's
//!   backlog; later ones return 0 without running: the accept queue is shared, and each
//!   `listen(n)` would set its length anew.
//! * `accept`/`accept4` on a held socket: a non-blocking one runs as usual; a blocking
//!   one runs when a connection waits, otherwise it waits in hotrun, which polls the held
//!   socket and lets the oldest waiting `accept` run when a connection comes. So no
//!   generation ever waits in the kernel's own `accept`, where it could take a connection
//!   after it was replaced. A generation being replaced ("draining") gets no connection
//!   at all: see `held::accept_verdict`.
//! * While a generation drains, `Takeover::open_connections` counts the connections it
//!   accepted that are still open (its processes' descriptors, through `pidfd_getfd`):
//!   the supervisor stops it once they are closed.
//!
//! Notifications arrive from any thread of any process under the filter (a grandchild
//! behind `sh -c`): the notification's pid is a thread id. `process_vm_readv` and `kcmp`
//! take it as it is; `pidfd_open` needs the thread group id, read from /proc. Every value
//! read from the caller's memory is checked with `SECCOMP_IOCTL_NOTIF_ID_VALID` before it
//! is acted upon. A notification whose call was interrupted (ENOENT) is dropped: the call
//! is restarted and comes again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, unbounded};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{SockaddrStorage, getsockname, getsockopt, sockopt};
use nix::sys::uio::{RemoteIoVec, process_vm_readv};
use nix::unistd::Pid;

use super::filter::{ChildHook, Prepared, Program};
use super::held::{AcceptFacts, AcceptVerdict, Held, SockKey};
use crate::event::{Generation, SocketNews};
use crate::input::Input;

/// The loop's handle on the takeover thread.
#[derive(Debug)]
pub(crate) struct Takeover {
    commands: Sender<Command>,
    wake: OwnedFd,
    program: Program,
    published: Arc<Mutex<Published>>,
}

/// What the thread publishes for `Takeover::open_connections`.
#[derive(Debug, Default)]
struct Published {
    /// The processes that accepted on a held socket, per generation.
    acceptors: BTreeMap<Generation, BTreeSet<i32>>,
    /// The ports of the TCP sockets hotrun holds.
    ports: BTreeSet<u16>,
}

/// A socket hotrun holds from the start (a `--listen` socket), with its name.
#[derive(Debug)]
pub(crate) struct Seed {
    pub(crate) fd: OwnedFd,
    pub(crate) name: String,
}

#[derive(Debug)]
enum Command {
    Adopt {
        generation: Generation,
        listener: OwnedFd,
    },
    Drain(Generation),
    Stopping {
        generation: Generation,
        signal: i32,
    },
    Gone(Generation),
}

impl Takeover {
    /// Starts the takeover thread. `seeds` are held for hotrun's whole life; a socket
    /// hotrun starts holding gets a backlog of at least `backlog`.
    pub(crate) fn start(tx: Sender<Input>, seeds: Vec<Seed>, backlog: i32) -> io::Result<Takeover> {
        let sizes = notif_sizes()?;
        let (wake_read, wake_write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(io::Error::from)?;
        let (commands, rx) = unbounded();
        let held: Vec<Held> = seeds
            .into_iter()
            .zip(1..)
            .map(|(seed, id)| {
                let key = tcp_key(seed.fd.as_fd());
                Held {
                    id,
                    name: key.map_or_else(|| seed.name.clone(), |k| k.to_string()),
                    key,
                    fd: seed.fd,
                    users: BTreeSet::new(),
                    permanent: true,
                    handed_over: None,
                }
            })
            .collect();
        let published = Arc::new(Mutex::new(Published::default()));
        let service = Service {
            in_flight: BTreeMap::new(),
            next_held: held.len() as u64,
            published: Arc::clone(&published),
            rx,
            wake: wake_read,
            tx,
            generations: BTreeMap::new(),
            held,
            backlog,
            sizes,
            me: nix::unistd::getpid(),
            told_in_use: BTreeSet::new(),
        };
        service.publish_ports();
        thread::Builder::new()
            .name("takeover".into())
            .spawn(move || service.run())?;
        Ok(Takeover {
            commands,
            wake: wake_write,
            program: Program::new(),
            published,
        })
    }

    /// How many connections that `generation` accepted on a socket hotrun holds are still
    /// open (TCP; a draining generation is stopped once this is 0). Reads the descriptors
    /// of the generation's processes that accepted.
    pub(crate) fn open_connections(&self, generation: Generation) -> usize {
        let (tgids, ports) = match self.published.lock() {
            Ok(p) => (
                p.acceptors.get(&generation).cloned().unwrap_or_default(),
                p.ports.clone(),
            ),
            Err(_) => return 0,
        };
        tgids
            .into_iter()
            .map(|tgid| accepted_connections(tgid, &ports))
            .sum()
    }

    /// Before a spawn: the socket pair the child sends its filter's listener over, and
    /// what its `pre_exec` needs.
    pub(crate) fn prepare(&self) -> io::Result<(Prepared, ChildHook)> {
        let prepared = Prepared::new()?;
        let hook = prepared.hook(&self.program);
        Ok((prepared, hook))
    }

    /// A generation was spawned under the filter; its notifications come in `listener`.
    pub(crate) fn adopt(&self, generation: Generation, listener: OwnedFd) {
        sync_wake_up(listener.as_fd());
        self.send(Command::Adopt {
            generation,
            listener,
        });
    }

    /// The generation is being replaced: it takes no new connection from now on.
    pub(crate) fn drain(&self, generation: Generation) {
        self.send(Command::Drain(generation));
    }

    /// The generation was sent its stop signal.
    pub(crate) fn stopping(&self, generation: Generation, signal: i32) {
        self.send(Command::Stopping { generation, signal });
    }

    /// The generation is gone (reaped): what it held is released.
    pub(crate) fn gone(&self, generation: Generation) {
        self.send(Command::Gone(generation));
    }

    fn send(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            // A full pipe already means "look at the commands".
            let _ = nix::unistd::write(&self.wake, &[1]);
        }
    }
}

/// `SECCOMP_GET_NOTIF_SIZES`: the kernel's structure sizes (they may grow).
fn notif_sizes() -> io::Result<libc::seccomp_notif_sizes> {
    let mut sizes = libc::seccomp_notif_sizes {
        seccomp_notif: 0,
        seccomp_notif_resp: 0,
        seccomp_data: 0,
    };
    // SAFETY: the kernel writes a seccomp_notif_sizes into `sizes`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES,
            0,
            &mut sizes as *mut libc::seccomp_notif_sizes,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sizes)
}

/// One generation as the takeover thread knows it.
#[derive(Debug, Default)]
struct Gen {
    /// `None` once no process uses the filter any more.
    listener: Option<OwnedFd>,
    draining: bool,
    stop_signal: Option<i32>,
    /// Blocking accepts waiting in hotrun for a connection (or for the end, while it
    /// drains), oldest first.
    waiting: Vec<Waiter>,
    /// Sockets (by inode) it bound to a TCP port, not listening yet.
    bound: BTreeSet<u64>,
    told_accepting: bool,
    /// The threads that accepted on a held socket, and their processes.
    acceptors: BTreeMap<i32, i32>,
}

/// A blocking `accept` left unanswered for now.
#[derive(Clone, Copy, Debug)]
struct Waiter {
    /// The notification.
    id: u64,
    tid: i32,
    /// `Held::id` of the socket it accepts on.
    held: u64,
}

/// How long a blocking `accept` that was let run for a waiting connection keeps other
/// waiting accepts of that socket from running too (the connection is its, unless the
/// thread comes back sooner): so that no accept is let into the kernel's own wait.
const IN_FLIGHT: Duration = Duration::from_millis(5);

struct Service {
    published: Arc<Mutex<Published>>,
    /// Held sockets whose waiting accept was just let run: (thread, until when).
    in_flight: BTreeMap<u64, (i32, Instant)>,
    next_held: u64,
    rx: Receiver<Command>,
    wake: OwnedFd,
    tx: Sender<Input>,
    generations: BTreeMap<Generation, Gen>,
    held: Vec<Held>,
    backlog: i32,
    sizes: libc::seccomp_notif_sizes,
    me: Pid,
    /// Addresses whose "in use" hint was given.
    told_in_use: BTreeSet<SockKey>,
}

/// How a notification is answered.
enum Reply {
    /// Run the call as the caller made it.
    Continue,
    /// It returns this value.
    Value(i64),
    /// It fails with this errno.
    Error(i32),
    /// No answer now (a waiting accept, or a call that was interrupted).
    Later,
}

/// What the takeover thread polls, in order after the wake pipe.
#[derive(Clone, Copy)]
enum Source {
    Listener(Generation),
    Held(u64),
}

impl Service {
    fn run(mut self) {
        loop {
            let now = Instant::now();
            self.in_flight.retain(|_, (_, until)| *until > now);
            // What is polled, each with its descriptor: `order[i]` is `fds[i + 1]`.
            let mut order: Vec<Source> = Vec::new();
            let mut fds = vec![PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
            for (generation, g) in &self.generations {
                if let Some(listener) = &g.listener {
                    order.push(Source::Listener(*generation));
                    fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
                }
            }
            // Held sockets with an accept that may run once a connection comes.
            for h in &self.held {
                if !self.in_flight.contains_key(&h.id) && self.has_taker(h.id) {
                    order.push(Source::Held(h.id));
                    fds.push(PollFd::new(h.fd.as_fd(), PollFlags::POLLIN));
                }
            }
            let timeout = self
                .in_flight
                .values()
                .map(|(_, until)| until.saturating_duration_since(now))
                .min()
                .map_or(PollTimeout::NONE, |d| {
                    PollTimeout::try_from(d.as_millis() + 1).unwrap_or(PollTimeout::MAX)
                });
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(err) => {
                    // Unanswerable from now on: the generations' filtered calls fail
                    // (ENOSYS) once the listeners close with this thread.
                    let _ = self.tx.send(Input::Warning(format!(
                        "socket takeover stopped (poll: {err}); the servers' bind, listen and \
                         accept calls fail from now on: restart hotrun, with --no-takeover if \
                         it happens again"
                    )));
                    return;
                }
            }
            let ready: Vec<(usize, PollFlags)> = fds
                .iter()
                .enumerate()
                .map(|(i, fd)| (i, fd.revents().unwrap_or(PollFlags::empty())))
                .filter(|(_, r)| !r.is_empty())
                .collect();
            drop(fds);
            for (i, revents) in ready {
                if i == 0 {
                    if !self.commands() {
                        return;
                    }
                    continue;
                }
                match order.get(i - 1) {
                    Some(Source::Listener(generation)) => {
                        if revents.contains(PollFlags::POLLIN) {
                            self.notification(*generation);
                        } else if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                            // No process uses the filter any more.
                            if let Some(g) = self.generations.get_mut(generation) {
                                g.listener = None;
                                g.waiting.clear();
                            }
                        }
                    }
                    Some(Source::Held(id)) => self.let_one_accept_run(*id),
                    None => {}
                }
            }
        }
    }

    /// Whether a generation that takes connections waits in `accept` on held socket `id`.
    fn has_taker(&self, id: u64) -> bool {
        self.generations
            .values()
            .any(|g| !g.draining && g.waiting.iter().any(|w| w.held == id))
    }

    /// A connection waits on held socket `id`: the oldest waiting `accept` of a generation
    /// that takes connections runs now.
    fn let_one_accept_run(&mut self, id: u64) {
        loop {
            let oldest = self
                .generations
                .iter()
                .filter(|(_, g)| !g.draining)
                .flat_map(|(generation, g)| {
                    g.waiting
                        .iter()
                        .filter(|w| w.held == id)
                        .map(move |w| (*generation, *w))
                })
                .min_by_key(|(_, w)| w.id);
            let Some((generation, waiter)) = oldest else {
                return;
            };
            let Some(g) = self.generations.get_mut(&generation) else {
                return;
            };
            g.waiting.retain(|w| w.id != waiter.id);
            let Some(listener) = g.listener.as_ref() else {
                continue;
            };
            // A call that was interrupted meanwhile is gone (it comes again): try the next.
            if respond(listener.as_fd(), waiter.id, &Reply::Continue) {
                self.in_flight
                    .insert(id, (waiter.tid, Instant::now() + IN_FLIGHT));
                return;
            }
        }
    }

    /// Handles queued commands; false once the loop is gone.
    fn commands(&mut self) -> bool {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(&self.wake, &mut buf), Ok(n) if n > 0) {}
        loop {
            match self.rx.try_recv() {
                Ok(command) => self.command(command),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Adopt {
                generation,
                listener,
            } => {
                self.generations.insert(
                    generation,
                    Gen {
                        listener: Some(listener),
                        ..Gen::default()
                    },
                );
            }
            Command::Drain(generation) => {
                if let Some(g) = self.generations.get_mut(&generation) {
                    g.draining = true;
                }
            }
            Command::Stopping { generation, signal } => {
                let Some(g) = self.generations.get_mut(&generation) else {
                    return;
                };
                g.stop_signal = Some(signal);
                // A waiting thread that blocks the stop signal would never see it: send
                // it back to its poll loop.
                let waiting = std::mem::take(&mut g.waiting);
                let mut keep = Vec::new();
                for waiter in waiting {
                    if blocks_signal(waiter.tid, signal) {
                        if let Some(listener) = g.listener.as_ref() {
                            respond(listener.as_fd(), waiter.id, &Reply::Error(libc::EINTR));
                        }
                    } else {
                        keep.push(waiter);
                    }
                }
                g.waiting = keep;
            }
            Command::Gone(generation) => {
                self.generations.remove(&generation);
                self.held.retain_mut(|held| {
                    held.users.remove(&generation);
                    held.permanent || !held.users.is_empty()
                });
                if let Ok(mut p) = self.published.lock() {
                    p.acceptors.remove(&generation);
                }
                self.publish_ports();
            }
        }
    }

    /// Receives and answers one notification of `generation`.
    fn notification(&mut self, generation: Generation) {
        // Taken out of the table while the call is answered (the answers need `self`).
        let Some(listener) = self
            .generations
            .get_mut(&generation)
            .and_then(|g| g.listener.take())
        else {
            return;
        };
        if let Some(notif) = receive(listener.as_fd(), &self.sizes) {
            // A thread that makes another call is done with the accept let run for it.
            let tid = i32::try_from(notif.pid).unwrap_or(0);
            self.in_flight.retain(|_, (t, _)| *t != tid);
            self.answer(generation, listener.as_fd(), &notif);
        }
        if let Some(g) = self.generations.get_mut(&generation) {
            g.listener = Some(listener);
        }
    }

    fn answer(
        &mut self,
        generation: Generation,
        listener: BorrowedFd<'_>,
        notif: &libc::seccomp_notif,
    ) {
        let nr = libc::c_long::from(notif.data.nr);
        let tid = i32::try_from(notif.pid).unwrap_or(0);
        let fd = RawFd::try_from(notif.data.args[0]).unwrap_or(-1);
        let call = Call {
            listener,
            id: notif.id,
            tid,
            fd,
        };
        let reply = if nr == libc::SYS_bind {
            self.bind(generation, &call, notif.data.args[1], notif.data.args[2])
        } else if nr == libc::SYS_listen {
            // listen's backlog is an int; the upper half of the register is not part of it.
            let backlog = notif.data.args[1] as u32 as i32;
            self.listen(generation, &call, backlog)
        } else if nr == libc::SYS_accept || nr == libc::SYS_accept4 {
            self.accept(generation, &call)
        } else {
            Reply::Continue
        };
        respond(listener, notif.id, &reply);
    }

    fn bind(&mut self, generation: Generation, call: &Call, addr: u64, len: u64) -> Reply {
        let len = usize::try_from(len).unwrap_or(0).min(128);
        if len < 16 {
            return Reply::Continue;
        }
        let mut raw = [0u8; 128];
        let Ok(read) = process_vm_readv(
            Pid::from_raw(call.tid),
            &mut [IoSliceMut::new(&mut raw[..len])],
            &[RemoteIoVec {
                base: usize::try_from(addr).unwrap_or(0),
                len,
            }],
        ) else {
            return Reply::Continue;
        };
        let family = u16::from_ne_bytes([raw[0], raw[1]]);
        if read < len
            || !matches!(i32::from(family), libc::AF_INET | libc::AF_INET6)
            || raw[2..4] == [0, 0]
            || !call.valid()
        {
            return Reply::Continue;
        }
        let Some(socket) = call.socket() else {
            return Reply::Continue;
        };
        if !is_tcp(socket.as_fd()) {
            return Reply::Continue;
        }
        let v6only = i32::from(family) == libc::AF_INET6
            && getsockopt(&socket, sockopt::Ipv6V6Only).unwrap_or(false);
        let Some(key) = SockKey::from_sockaddr(&raw[..len], v6only) else {
            return Reply::Continue;
        };
        if let Some(index) = self.held.iter().position(|h| h.key == Some(key)) {
            return self.take_over(generation, call, index);
        }
        if key.port() < unprivileged_port_start() {
            // A privileged port: the bind runs as the caller (with its own privileges, not
            // hotrun's); its listen makes hotrun hold the socket.
            if let (Some(g), Some(ino)) = (self.generations.get_mut(&generation), inode(&socket)) {
                g.bound.insert(ino);
            }
            return Reply::Continue;
        }
        // A first bind: hotrun binds the caller's socket itself and holds it from now on, so
        // that a second bind of the address (SO_REUSEPORT listeners of one server) shares
        // this socket and its one queue rather than making another.
        let raw_addr = &raw[..len];
        // SAFETY: bind on hotrun's own reference to the caller's socket, with the address
        // bytes the caller passed (length checked above).
        let rc = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                raw_addr.as_ptr().cast(),
                libc::socklen_t::try_from(len).unwrap_or(0),
            )
        };
        if rc < 0 {
            let err = Errno::last();
            if err == Errno::EADDRINUSE {
                self.port_in_use(generation, key);
            }
            return Reply::Error(err as i32);
        }
        self.next_held += 1;
        self.held.push(Held {
            id: self.next_held,
            key: Some(key),
            name: key.to_string(),
            fd: socket,
            users: BTreeSet::from([generation]),
            permanent: false,
            handed_over: None,
        });
        self.publish_ports();
        Reply::Value(0)
    }

    /// A first bind failed with "address in use": says once per address who holds it,
    /// since the server's own message cannot (a server that exits on it looks to the user
    /// like hotrun waiting for nothing).
    fn port_in_use(&mut self, generation: Generation, key: SockKey) {
        if !self.told_in_use.insert(key) {
            return;
        }
        let port = key.port();
        let ours: Vec<String> = self
            .held
            .iter()
            .filter(|h| h.key.is_some_and(|k| k.port() == port))
            .map(|h| h.name.clone())
            .collect();
        let text = if ours.is_empty() {
            format!(
                "{generation} cannot bind {key}: address already in use by a process hotrun \
                 did not start (`ss -ltnp 'sport = :{port}'` names it); stop it, or give the \
                 server another port"
            )
        } else {
            format!(
                "{generation} cannot bind {key}: hotrun holds port {port} on {} for the \
                 generations; bind that same address to share it",
                ours.join(", ")
            )
        };
        let _ = self.tx.send(Input::Hint(text));
    }

    /// Installs held socket `index` at the caller's descriptor.
    fn take_over(&mut self, generation: Generation, call: &Call, index: usize) -> Reply {
        let held = &self.held[index];
        let name = held.name.clone();
        // The held socket keeps its blocking mode: see `held::mode_change`.
        let cloexec = cloexec_in(call.tid, call.fd);
        let addfd = libc::seccomp_notif_addfd {
            id: call.id,
            flags: libc::SECCOMP_ADDFD_FLAG_SETFD as u32,
            srcfd: u32::try_from(held.fd.as_raw_fd()).unwrap_or(0),
            newfd: u32::try_from(call.fd).unwrap_or(0),
            newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
        };
        // SAFETY: ADDFD reads one seccomp_notif_addfd from the pointer.
        let rc = unsafe {
            libc::ioctl(
                call.listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_ADDFD,
                &addfd as *const libc::seccomp_notif_addfd,
            )
        };
        if rc < 0 {
            let err = Errno::last();
            if err == Errno::ENOENT {
                // The call was interrupted; it comes again.
                return Reply::Later;
            }
            self.tell(
                generation,
                SocketNews::Declined {
                    addr: name,
                    why: format!("cannot install the held socket: {err}"),
                },
            );
            return Reply::Continue;
        }
        let held = &mut self.held[index];
        let previous = held.users.iter().rev().find(|g| **g != generation).copied();
        held.handed_over = previous.map(|g| (g, nonblocking(held.fd.as_fd())));
        held.users.insert(generation);
        self.tell(generation, SocketNews::TookOver { addr: name });
        Reply::Value(0)
    }

    fn listen(&mut self, generation: Generation, call: &Call, backlog: i32) -> Reply {
        if let Some(held) = self.held_at(call) {
            let addr = self.held[held].name.clone();
            self.held[held].users.insert(generation);
            if getsockopt(&self.held[held].fd, sockopt::AcceptConn).unwrap_or(false) {
                // Already listening with the queue every generation shares.
                self.tell(generation, SocketNews::Listening { addr, first: false });
                return Reply::Value(0);
            }
            // Bound by hotrun for this generation: its first listen.
            // SAFETY: listen on hotrun's own held socket.
            let rc =
                unsafe { libc::listen(self.held[held].fd.as_raw_fd(), backlog.max(self.backlog)) };
            if rc < 0 {
                return Reply::Error(Errno::last() as i32);
            }
            self.tell(generation, SocketNews::Listening { addr, first: true });
            return Reply::Value(0);
        }
        let Some(g) = self.generations.get(&generation) else {
            return Reply::Continue;
        };
        if g.bound.is_empty() {
            return Reply::Continue;
        }
        let Some(socket) = call.socket() else {
            return Reply::Continue;
        };
        let Some(ino) = inode(&socket).filter(|ino| g.bound.contains(ino)) else {
            return Reply::Continue;
        };
        let Some(key) = tcp_key(socket.as_fd()) else {
            return Reply::Continue;
        };
        if self.held.iter().any(|h| h.key == Some(key)) {
            // A second socket on a held address (SO_REUSEPORT listeners bound before the
            // first listened): it lives and dies with its generation; later generations get
            // the one hotrun holds.
            return Reply::Continue;
        }
        // SAFETY: listen on hotrun's own reference to the caller's socket.
        let rc = unsafe { libc::listen(socket.as_raw_fd(), backlog.max(self.backlog)) };
        if rc < 0 {
            return Reply::Error(Errno::last() as i32);
        }
        if let Some(g) = self.generations.get_mut(&generation) {
            g.bound.remove(&ino);
        }
        let addr = key.to_string();
        self.next_held += 1;
        self.held.push(Held {
            id: self.next_held,
            key: Some(key),
            name: addr.clone(),
            fd: socket,
            users: BTreeSet::from([generation]),
            permanent: false,
            handed_over: None,
        });
        self.publish_ports();
        self.tell(generation, SocketNews::Listening { addr, first: true });
        Reply::Value(0)
    }

    fn publish_ports(&self) {
        let ports = self
            .held
            .iter()
            .filter_map(|h| h.key.map(|k| k.port()))
            .collect();
        if let Ok(mut p) = self.published.lock() {
            p.ports = ports;
        }
    }

    /// Notes the process of thread `tid` as one that accepts for `generation`.
    fn note_acceptor(&mut self, generation: Generation, tid: i32) {
        let Some(g) = self.generations.get_mut(&generation) else {
            return;
        };
        if g.acceptors.contains_key(&tid) {
            return;
        }
        let Some(tgid) = tgid(tid) else {
            return;
        };
        g.acceptors.insert(tid, tgid);
        if let Ok(mut p) = self.published.lock() {
            p.acceptors.entry(generation).or_default().insert(tgid);
        }
    }

    fn accept(&mut self, generation: Generation, call: &Call) -> Reply {
        let Some(index) = self.held_at(call) else {
            return Reply::Continue;
        };
        self.note_acceptor(generation, call.tid);
        let nonblocking = nonblocking(self.held[index].fd.as_fd());
        let first = self
            .generations
            .get(&generation)
            .is_some_and(|g| !g.told_accepting);
        let held = &mut self.held[index];
        let changed = if first {
            super::held::mode_change(held.handed_over.take(), generation, nonblocking)
        } else {
            None
        };
        if let Some((other, other_nonblocking)) = changed {
            let addr = held.name.clone();
            self.tell(
                generation,
                SocketNews::ModeDiffers {
                    addr,
                    other,
                    other_nonblocking,
                    nonblocking,
                },
            );
        }
        let held_id = self.held[index].id;
        let connection_waiting =
            !self.in_flight.contains_key(&held_id) && readable(self.held[index].fd.as_fd());
        let Some(g) = self.generations.get_mut(&generation) else {
            return Reply::Continue;
        };
        let facts = AcceptFacts {
            draining: g.draining,
            stopping: g.stop_signal.is_some(),
            nonblocking,
            connection_waiting,
            signal_blocked: g
                .stop_signal
                .is_some_and(|signal| blocks_signal(call.tid, signal)),
        };
        let first = !g.told_accepting;
        g.told_accepting = true;
        let reply = match super::held::accept_verdict(facts) {
            AcceptVerdict::Continue => {
                if !nonblocking {
                    self.in_flight
                        .insert(held_id, (call.tid, Instant::now() + IN_FLIGHT));
                }
                Reply::Continue
            }
            AcceptVerdict::Refuse(errno) => Reply::Error(errno),
            AcceptVerdict::Wait => {
                g.waiting.push(Waiter {
                    id: call.id,
                    tid: call.tid,
                    held: held_id,
                });
                Reply::Later
            }
        };
        if first {
            self.tell(generation, SocketNews::Accepting);
        }
        reply
    }

    /// The held socket the caller's descriptor refers to, if any.
    fn held_at(&self, call: &Call) -> Option<usize> {
        self.held
            .iter()
            .position(|h| same_file(call.tid, call.fd, self.me, h.fd.as_raw_fd()))
    }

    fn tell(&self, generation: Generation, news: SocketNews) {
        let _ = self.tx.send(Input::Socket { generation, news });
    }
}

/// One notification, as far as the answers need it.
struct Call<'a> {
    listener: BorrowedFd<'a>,
    id: u64,
    tid: i32,
    fd: RawFd,
}

impl Call<'_> {
    /// The caller still waits in this call (its memory was read for this very call).
    fn valid(&self) -> bool {
        let id = self.id;
        // SAFETY: ID_VALID reads one u64 from the pointer.
        let rc = unsafe {
            libc::ioctl(
                self.listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
                &id as *const u64,
            )
        };
        rc == 0
    }

    /// hotrun's own reference to the caller's descriptor (`pidfd_getfd`).
    fn socket(&self) -> Option<OwnedFd> {
        let tgid = tgid(self.tid)?;
        // SAFETY: pidfd_open returns a new descriptor or -1.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, tgid, 0) };
        let pidfd = RawFd::try_from(pidfd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: pidfd_open just returned this descriptor to hotrun.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        // SAFETY: pidfd_getfd returns a new close-on-exec descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), self.fd, 0) };
        let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // A copy made after the call was answered would be someone else's descriptor.
        if !self.valid() {
            // SAFETY: as above, the descriptor is hotrun's; dropping it closes it.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
            return None;
        }
        // SAFETY: pidfd_getfd just returned this descriptor to hotrun.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// How many connections process `tgid` is busy with on the held ports: the TCP
/// connections it accepted there that are still open, plus its threads that wait in the
/// kernel's own `accept` on a held socket (let run just before the drain began, while
/// another generation took the connection it was meant for: such a thread takes the next
/// connection that comes, so it must not be stopped before it has served it).
fn accepted_connections(tgid: i32, ports: &BTreeSet<u16>) -> usize {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, tgid, 0) };
    let Some(pidfd) = RawFd::try_from(pidfd).ok().filter(|fd| *fd >= 0) else {
        return 0;
    };
    // SAFETY: pidfd_open just returned this descriptor to hotrun.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let local_port = |fd: RawFd| -> Option<(u16, bool)> {
        // SAFETY: pidfd_getfd returns a new close-on-exec descriptor or -1.
        let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
        let copy = RawFd::try_from(copy).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: pidfd_getfd just returned this descriptor to hotrun.
        let copy = unsafe { OwnedFd::from_raw_fd(copy) };
        let listening = getsockopt(&copy, sockopt::AcceptConn).ok()?;
        let addr = getsockname::<SockaddrStorage>(copy.as_raw_fd()).ok()?;
        let port = addr
            .as_sockaddr_in()
            .map(|v4| v4.port())
            .or_else(|| addr.as_sockaddr_in6().map(|v6| v6.port()))?;
        Some((port, listening))
    };
    let mut open = 0;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{tgid}/fd")) {
        for entry in dir.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<RawFd>().ok())
            else {
                continue;
            };
            let is_socket = std::fs::read_link(entry.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
            if is_socket
                && local_port(fd)
                    .is_some_and(|(port, listening)| !listening && ports.contains(&port))
            {
                open += 1;
            }
        }
    }
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{tgid}/task")) {
        for task in tasks.flatten() {
            if let Some(fd) = kernel_accept_fd(&task.path())
                && local_port(fd)
                    .is_some_and(|(port, listening)| listening && ports.contains(&port))
            {
                open += 1;
            }
        }
    }
    open
}

/// The descriptor a thread waits on in the kernel's own `accept` (its `wchan` is the
/// kernel's accept wait, not the seccomp notification hotrun answers), if it does.
fn kernel_accept_fd(task: &std::path::Path) -> Option<RawFd> {
    let wchan = std::fs::read_to_string(task.join("wchan")).ok()?;
    if !wchan.starts_with("inet_csk_accept") && !wchan.starts_with("inet_csk_wait_for_connect") {
        return None;
    }
    let syscall = std::fs::read_to_string(task.join("syscall")).ok()?;
    let mut fields = syscall.split_whitespace();
    let nr = fields.next()?.parse::<libc::c_long>().ok()?;
    if nr != libc::SYS_accept && nr != libc::SYS_accept4 {
        return None;
    }
    let fd = fields.next()?.strip_prefix("0x")?;
    RawFd::from_str_radix(fd, 16).ok()
}

/// Asks the kernel (Linux 6.6 and later) to wake this thread on the caller's own CPU when
/// a filtered call comes, and the caller on this thread's CPU when it is answered: the
/// two take turns like a function call instead of waking each other across CPUs. On an
/// idle virtual machine, where waking a sleeping CPU costs tens of microseconds, a bind
/// that passes through took 47 µs (median) without it and 8 µs with another CPU busy.
/// Older kernels refuse the request; the filter works the same, only slower to wake.
fn sync_wake_up(listener: BorrowedFd<'_>) {
    /// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (linux/seccomp.h).
    const SYNC_WAKE_UP: u64 = 1;
    // SAFETY: SET_FLAGS reads one u64 from the third argument, passed by value here as the
    // kernel's ioctl takes it (`flags`, not a pointer); `listener` is a seccomp listener
    // descriptor this process owns. A refusal (EINVAL on older kernels) changes nothing.
    let _ = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
            SYNC_WAKE_UP,
        )
    };
}

/// `SECCOMP_IOCTL_NOTIF_RECV` into a buffer as large as the kernel's structure.
fn receive(
    listener: BorrowedFd<'_>,
    sizes: &libc::seccomp_notif_sizes,
) -> Option<libc::seccomp_notif> {
    let words = usize::from(sizes.seccomp_notif)
        .max(std::mem::size_of::<libc::seccomp_notif>())
        .div_ceil(8);
    let mut buf = vec![0u64; words];
    // SAFETY: the buffer is zeroed (the kernel requires it), 8-byte aligned and at least
    // as large as the kernel's seccomp_notif.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            buf.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return None;
    }
    // SAFETY: the kernel filled in a seccomp_notif at the start of the buffer.
    Some(unsafe { std::ptr::read(buf.as_ptr().cast::<libc::seccomp_notif>()) })
}

/// Answers a notification; false if the call is gone (interrupted, or the thread died).
fn respond(listener: BorrowedFd<'_>, id: u64, reply: &Reply) -> bool {
    let (val, error, flags) = match reply {
        Reply::Later => return true,
        Reply::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
        Reply::Value(v) => (*v, 0, 0),
        Reply::Error(errno) => (0, -errno, 0),
    };
    let resp = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags,
    };
    // SAFETY: SEND reads one seccomp_notif_resp from the pointer. ENOENT (the caller was
    // interrupted or died) needs nothing done.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &resp as *const libc::seccomp_notif_resp,
        )
    };
    rc == 0
}

/// Whether a connection waits in the queue of listening socket `fd`.
fn readable(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// The thread group of thread `tid` (`Tgid:` in /proc/TID/status).
fn tgid(tid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The first port a process may bind without privileges (`ip_unprivileged_port_start`).
fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1024)
}

/// Whether thread `tid` blocks `signal` (`SigBlk:` in /proc/TID/status).
fn blocks_signal(tid: i32, signal: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return false;
    };
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    (1..=64).contains(&signal) && mask & (1 << (signal - 1)) != 0
}

/// Whether descriptor `fd` of thread `tid` is the very file hotrun has at `ours` (`kcmp`).
fn same_file(tid: i32, fd: RawFd, me: Pid, ours: RawFd) -> bool {
    // SAFETY: kcmp only compares kernel objects; it reads no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            tid,
            me.as_raw(),
            KCMP_FILE,
            libc::c_long::from(fd),
            libc::c_long::from(ours),
        )
    };
    rc == 0
}

/// linux/kcmp.h
const KCMP_FILE: libc::c_int = 0;

/// Whether descriptor `fd` of thread `tid` is close-on-exec (/proc/PID/fdinfo: a copy
/// taken with pidfd_getfd is always close-on-exec, so it cannot tell).
fn cloexec_in(tid: i32, fd: RawFd) -> bool {
    let Ok(info) = std::fs::read_to_string(format!("/proc/{tid}/fdinfo/{fd}")) else {
        return true;
    };
    info.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| i64::from_str_radix(v.trim(), 8).ok())
        .is_none_or(|flags| flags & i64::from(libc::O_CLOEXEC) != 0)
}

fn is_tcp(fd: BorrowedFd<'_>) -> bool {
    matches!(
        getsockopt(&fd, sockopt::SockType),
        Ok(nix::sys::socket::SockType::Stream)
    ) && int_option(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL) == Some(libc::IPPROTO_TCP)
}

/// An integer socket option nix has no wrapper for.
fn int_option(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(value)
}

fn nonblocking(fd: BorrowedFd<'_>) -> bool {
    fcntl(fd, FcntlArg::F_GETFL)
        .is_ok_and(|flags| OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK))
}

fn inode(fd: &OwnedFd) -> Option<u64> {
    nix::sys::stat::fstat(fd).ok().map(|s| s.st_ino)
}

/// The key of a bound TCP socket (address from getsockname, V6ONLY as set).
pub(crate) fn tcp_key(fd: BorrowedFd<'_>) -> Option<SockKey> {
    let addr = getsockname::<SockaddrStorage>(fd.as_raw_fd()).ok()?;
    let (addr, v6only) = if let Some(v4) = addr.as_sockaddr_in() {
        (std::net::SocketAddr::V4((*v4).into()), false)
    } else if let Some(v6) = addr.as_sockaddr_in6() {
        let v6only = getsockopt(&fd, sockopt::Ipv6V6Only).unwrap_or(false);
        (std::net::SocketAddr::V6((*v6).into()), v6only)
    } else {
        return None;
    };
    (addr.port() != 0).then(|| SockKey::new(addr, v6only))
}
