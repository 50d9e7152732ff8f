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
}

/// The decision about a `bind` of a held address.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BindVerdict {
    /// Install the held socket at the child's descriptor and answer 0.
    Install,
    /// Let the bind run as usual (it will most likely fail with EADDRINUSE), and say why
    /// the socket was not handed over.
    Decline(String),
}

/// Whether a generation that binds a held address gets the held socket. The socket's
/// O_NONBLOCK flag is shared by every holder: a blocking generation next to a
/// non-blocking one would hang or spin, so modes must agree while another generation
/// still uses it; when nobody else does, the held socket takes the new one's mode.
pub(crate) fn bind_verdict(
    held_nonblocking: bool,
    child_nonblocking: bool,
    others_alive: bool,
) -> (BindVerdict, Option<bool>) {
    if held_nonblocking == child_nonblocking {
        (BindVerdict::Install, None)
    } else if others_alive {
        let mode = |nb| if nb { "non-blocking" } else { "blocking" };
        (
            BindVerdict::Decline(format!(
                "the new generation uses a {} socket and the running one a {} socket; they \
                 cannot share one",
                mode(child_nonblocking),
                mode(held_nonblocking)
            )),
            None,
        )
    } else {
        (BindVerdict::Install, Some(child_nonblocking))
    }
}

/// What an `accept` on a held socket gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AcceptVerdict {
    /// Run it as usual.
    Continue,
    /// Leave it unanswered: the caller waits (it would block anyway) while its
    /// connections go to the new generation.
    Park,
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
    /// The calling thread blocks the stop signal: a parked call would never be
    /// interrupted by it.
    pub(crate) signal_blocked: bool,
}

/// A draining generation takes no new connection: a non-blocking caller (an event loop)
/// is told "nothing to accept" so it goes on with its other work; a blocking caller is
/// parked, as if the queue were empty — except a thread that blocks its stop signal once
/// that signal was sent (it waits in `accept` and can only see the signal back in its
/// poll loop), which is told EINTR.
pub(crate) fn accept_verdict(facts: AcceptFacts) -> AcceptVerdict {
    if !facts.draining {
        AcceptVerdict::Continue
    } else if facts.nonblocking {
        AcceptVerdict::Refuse(libc::EAGAIN)
    } else if facts.stopping && facts.signal_blocked {
        AcceptVerdict::Refuse(libc::EINTR)
    } else {
        AcceptVerdict::Park
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
    fn generations_must_agree_on_blocking_mode_while_both_run() {
        assert_eq!(bind_verdict(true, true, true), (BindVerdict::Install, None));
        assert!(matches!(
            bind_verdict(false, true, true),
            (BindVerdict::Decline(_), None)
        ));
        // Nobody else uses it: the socket takes the new generation's mode.
        assert_eq!(
            bind_verdict(false, true, false),
            (BindVerdict::Install, Some(true))
        );
    }

    #[test]
    fn a_draining_generation_takes_no_new_connection_and_can_still_stop() {
        let facts = AcceptFacts {
            draining: false,
            stopping: false,
            nonblocking: false,
            signal_blocked: false,
        };
        assert_eq!(accept_verdict(facts), AcceptVerdict::Continue);
        let draining = AcceptFacts {
            draining: true,
            ..facts
        };
        assert_eq!(accept_verdict(draining), AcceptVerdict::Park);
        assert_eq!(
            accept_verdict(AcceptFacts {
                nonblocking: true,
                ..draining
            }),
            AcceptVerdict::Refuse(libc::EAGAIN)
        );
        // Parked calls are interrupted by the stop signal, unless the thread blocks it.
        assert_eq!(
            accept_verdict(AcceptFacts {
                stopping: true,
                ..draining
            }),
            AcceptVerdict::Park
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
