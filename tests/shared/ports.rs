//! A TCP port reserved for a test or a benchmark run (shared by both), so that no
//! bind-and-release race lets another process take it between two generations.

/// A TCP port no other process can take for the life of the returned socket: bound (on
/// every address), then given SO_REUSEADDR, and never listening. A server that sets SO_REUSEADDR
/// too (std, Go, Python, hotrun, most C servers) can still bind and listen on it; nothing
/// that asks for a free port gets it, and it stays reserved while no server holds it
/// (between two generations). No bind-and-release race.
pub(crate) fn reserve_port() -> (std::os::fd::OwnedFd, u16) {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, setsockopt, socket,
        sockopt,
    };
    use std::os::fd::AsRawFd;
    // Close-on-exec is set right below (macOS has no SOCK_CLOEXEC). A child another test
    // thread forks in between would hold the port reserved a little longer, no more.
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .expect("FD_CLOEXEC");
    // Bound before SO_REUSEADDR is set: the kernel then hands out a port no other socket
    // holds (with SO_REUSEADDR first, two reservations could share one port); set after the
    // bind, it still lets the server bind beside the reservation.
    bind(fd.as_raw_fd(), &SockaddrIn::new(0, 0, 0, 0, 0)).expect("bind a free port");
    setsockopt(&fd, sockopt::ReuseAddr, &true).expect("SO_REUSEADDR");
    let port = getsockname::<SockaddrIn>(fd.as_raw_fd())
        .expect("getsockname")
        .port();
    (fd, port)
}
