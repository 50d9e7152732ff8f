//! The sockets hotrun holds for socket takeover, and the pure decisions about them: which
//! address a `bind` asks for, whether a later generation gets the held socket, and what
//! an `accept` of a draining generation gets. No system calls here; `service.rs` gathers
//! the facts and carries the decisions out.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::OwnedFd;

use crate::event::Generation;

/// What makes two binds "the same address": family, address, port, scope and, for IPv6,
/// whether the socket is dual-stack (`[::]:8080` with V6ONLY=0 also serves IPv4, and a
/// V6ONLY socket does not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SockKey {
    addr: SocketAddr,
    v6only: bool,
}

impl SockKey {
    /// The key of an IPv4 or IPv6 address with a port, given as the raw `sockaddr` bytes a
    /// `bind` passed; `None` for anything else (unix, netlink, port 0, a short buffer).
    pub(crate) fn from_sockaddr(bytes: &[u8], v6only: bool) -> Option<SockKey> {
        let family = u16::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]);
        let port = u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]);
        if port == 0 {
            return None;
        }
        let addr = match i32::from(family) {
            libc::AF_INET => {
                let ip: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))
            }
            libc::AF_INET6 => {
                let flow = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
                let ip: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
                let scope = u32::from_ne_bytes(bytes.get(24..28)?.try_into().ok()?);
                // The flow label does not make a different address.
                let _ = flow;
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, scope))
            }
            _ => return None,
        };
        Some(SockKey::new(addr, v6only))
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    pub(crate) fn new(addr: SocketAddr, v6only: bool) -> SockKey {
        SockKey {
            addr,
            v6only: addr.is_ipv6() && v6only,
        }
    }
}

impl fmt::Display for SockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)?;
        if self.addr.is_ipv6() && !self.v6only {
            f.write_str(" (IPv4 too)")?;
        }
        Ok(())
    }
}

/// One socket hotrun holds.
#[derive(Debug)]
pub(crate) struct Held {
    /// Stable while it is held (indexes move when a socket is let go).
    pub(crate) id: u64,
    /// `None` for a unix `--listen` socket (held for accept draining only).
    pub(crate) key: Option<SockKey>,
    /// How to name it in messages.
    pub(crate) name: String,
    pub(crate) fd: OwnedFd,
    /// The generations that have it (bound it, were given it, or inherited it); when the
    /// last one is gone the socket is closed, unless it is a `--listen` socket.
    pub(crate) users: BTreeSet<Generation>,
    /// A `--listen` socket: held for hotrun's whole life.
    pub(crate) permanent: bool,
    /// When it was last handed over: the newest generation that had it, and whether it
    /// was non-blocking then (see `mode_change`).
    pub(crate) handed_over: Option<(Generation, bool)>,
}

/// The blocking mode is a property of the socket all its holders share (O_NONBLOCK lives
/// on the open file description), so it is not hotrun's to decide at `bind`: a server sets
/// it after `bind` or `listen` as often as before (Rust's `set_nonblocking`, asyncio), and
/// copying the new generation's mode at `bind` would flip the running one's socket under
/// it. Generations of one program agree; when a generation that took the socket over
/// first accepts with another mode than the socket had when it was handed over (`before`:
/// the generation that had it, and its mode), this says so: returns that generation and
/// its mode.
pub(crate) fn mode_change(
    before: Option<(Generation, bool)>,
    generation: Generation,
    nonblocking: bool,
) -> Option<(Generation, bool)> {
    before.filter(|(g, mode)| *g != generation && *mode != nonblocking)
}

/// What an `accept` on a held socket gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AcceptVerdict {
    /// Run it as usual.
    Continue,
    /// Leave it unanswered for now: hotrun answers it when a connection waits in the
    /// queue and the generation still takes connections (a blocking `accept` waits in
    /// hotrun, not in the kernel, so a replaced generation never grabs a connection).
    Wait,
    /// Answer at once with this errno.
    Refuse(i32),
}

/// The facts about one `accept` on a held socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AcceptFacts {
    /// The generation is being replaced: it takes no new connection.
    pub(crate) draining: bool,
    /// It was sent its stop signal.
    pub(crate) stopping: bool,
    pub(crate) nonblocking: bool,
    /// A connection waits in the queue and no other blocking `accept` was just let run
    /// for it.
    pub(crate) connection_waiting: bool,
    /// The calling thread blocks the stop signal: a waiting call would never be
    /// interrupted by it.
    pub(crate) signal_blocked: bool,
}

/// A non-blocking `accept` (an event loop's) runs as usual — unless the generation
/// drains: then it is told "nothing to accept" so the loop goes on with its other work. A
/// blocking `accept` runs at once only when a connection waits; otherwise it waits in
/// hotrun, which lets it run when one comes — never while the generation drains. A
/// waiting thread that blocks its stop signal once that signal was sent (it can see the
/// signal only back in its poll loop) is told EINTR.
pub(crate) fn accept_verdict(facts: AcceptFacts) -> AcceptVerdict {
    if facts.nonblocking {
        if facts.draining {
            AcceptVerdict::Refuse(libc::EAGAIN)
        } else {
            AcceptVerdict::Continue
        }
    } else if facts.stopping && facts.signal_blocked {
        AcceptVerdict::Refuse(libc::EINTR)
    } else if facts.connection_waiting && !facts.draining {
        AcceptVerdict::Continue
    } else {
        AcceptVerdict::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(ip: [u8; 4], port: u16) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..8].copy_from_slice(&ip);
        b
    }

    fn v6(ip: Ipv6Addr, port: u16) -> Vec<u8> {
        let mut b = vec![0u8; 28];
        b[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[8..24].copy_from_slice(&ip.octets());
        b
    }

    #[test]
    fn addresses_are_read_from_raw_sockaddrs() {
        let key = SockKey::from_sockaddr(&v4([127, 0, 0, 1], 8080), false);
        assert_eq!(key.map(|k| k.to_string()), Some("127.0.0.1:8080".into()));
        // Port 0 (an ephemeral port), unix sockets and short buffers pass through.
        assert_eq!(SockKey::from_sockaddr(&v4([127, 0, 0, 1], 0), false), None);
        let mut unix = vec![0u8; 110];
        unix[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(SockKey::from_sockaddr(&unix, false), None);
        assert_eq!(SockKey::from_sockaddr(&[2, 0, 1], false), None);
        let any6 = SockKey::from_sockaddr(&v6(Ipv6Addr::UNSPECIFIED, 8080), false);
        assert_eq!(
            any6.map(|k| k.to_string()),
            Some("[::]:8080 (IPv4 too)".into())
        );
    }

    #[test]
    fn dual_stack_and_v6only_are_different_addresses() {
        let any = v6(Ipv6Addr::UNSPECIFIED, 8080);
        let dual = SockKey::from_sockaddr(&any, false);
        let only = SockKey::from_sockaddr(&any, true);
        assert_ne!(dual, only);
        // V6ONLY means nothing for IPv4.
        let a = SockKey::from_sockaddr(&v4([0, 0, 0, 0], 80), true);
        let b = SockKey::from_sockaddr(&v4([0, 0, 0, 0], 80), false);
        assert_eq!(a, b);
        // 127.0.0.1 and [::1] are not the same address either.
        assert_ne!(
            SockKey::from_sockaddr(&v4([127, 0, 0, 1], 80), false),
            SockKey::from_sockaddr(&v6(Ipv6Addr::LOCALHOST, 80), false)
        );
    }

    #[test]
    fn a_change_of_blocking_mode_between_generations_is_noticed() {
        let (g1, g2) = (Generation(1), Generation(2));
        assert_eq!(mode_change(None, g2, true), None);
        assert_eq!(mode_change(Some((g1, true)), g2, true), None);
        assert_eq!(
            mode_change(Some((g2, false)), g2, true),
            None,
            "its own change"
        );
        assert_eq!(mode_change(Some((g1, false)), g2, true), Some((g1, false)));
    }

    #[test]
    fn a_draining_generation_takes_no_new_connection_and_can_still_stop() {
        let blocking = AcceptFacts {
            draining: false,
            stopping: false,
            nonblocking: false,
            connection_waiting: false,
            signal_blocked: false,
        };
        // A blocking accept runs when a connection waits, else it waits in hotrun.
        assert_eq!(accept_verdict(blocking), AcceptVerdict::Wait);
        let waiting = AcceptFacts {
            connection_waiting: true,
            ..blocking
        };
        assert_eq!(accept_verdict(waiting), AcceptVerdict::Continue);
        // Draining: never, connection or not.
        let draining = AcceptFacts {
            draining: true,
            ..waiting
        };
        assert_eq!(accept_verdict(draining), AcceptVerdict::Wait);
        // An event loop's accept runs, or is told EAGAIN while draining.
        let nonblocking = AcceptFacts {
            nonblocking: true,
            ..blocking
        };
        assert_eq!(accept_verdict(nonblocking), AcceptVerdict::Continue);
        assert_eq!(
            accept_verdict(AcceptFacts {
                draining: true,
                ..nonblocking
            }),
            AcceptVerdict::Refuse(libc::EAGAIN)
        );
        // Waiting calls are interrupted by the stop signal, unless the thread blocks it.
        assert_eq!(
            accept_verdict(AcceptFacts {
                stopping: true,
                ..draining
            }),
            AcceptVerdict::Wait
        );
        assert_eq!(
            accept_verdict(AcceptFacts {
                stopping: true,
                signal_blocked: true,
                ..draining
            }),
            AcceptVerdict::Refuse(libc::EINTR)
        );
    }
}
