//! Socket takeover: zero-downtime restarts for servers that bind their own port, with no
//! change to the server (Linux ≥ 5.9).
//!
//! Every generation runs under a seccomp filter that hands its `bind`, `listen`, `accept`
//! and `accept4` calls to hotrun (seccomp user notification). The first time a generation
//! listens on a TCP port it bound itself, hotrun keeps a reference to that socket. When a
//! later generation binds the same address (family, address, port, V6ONLY), hotrun puts
//! the socket it holds at that descriptor instead and answers 0: both generations then
//! accept from one queue, so a restart refuses and drops nothing — for Go, which makes raw
//! system calls, as for C, Python, Node or Rust. A `listen` on the shared socket is the
//! new generation saying it serves (readiness without code change); once it does, the old
//! generation's accepts are held back (draining), and after a short window it gets its
//! stop signal.
//!
//! `filter.rs` installs the filter in the child and brings its listener to hotrun,
//! `service.rs` is the thread that answers the calls, `held.rs` the held sockets and the
//! decisions about them. Takeover is a convenience, not a security boundary: the
//! addresses are read from the caller's memory, and 32-bit calls are not filtered.

#[cfg(target_os = "linux")]
mod filter;
#[cfg(target_os = "linux")]
mod held;
#[cfg(target_os = "linux")]
mod service;

#[cfg(target_os = "linux")]
pub(crate) use filter::{ChildHook, Prepared};
#[cfg(target_os = "linux")]
pub(crate) use service::{Seed, Takeover};

#[cfg(not(target_os = "linux"))]
mod unsupported;
#[cfg(not(target_os = "linux"))]
pub(crate) use unsupported::{ChildHook, Prepared, Seed, Takeover};

/// Whether takeover can work here; the reason when it cannot.
#[cfg(target_os = "linux")]
pub(crate) fn probe() -> Result<(), String> {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if version < (5, 9) {
        return Err(format!("it needs Linux 5.9 or later (this is {release})"));
    }
    let action = libc::SECCOMP_RET_USER_NOTIF;
    // SAFETY: GET_ACTION_AVAIL reads one u32 from the pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        )
    };
    if rc != 0 {
        return Err(format!(
            "seccomp user notification is not available: {}",
            std::io::Error::last_os_error()
        ));
    }
    check_self_calls()
}

/// The calls the takeover thread makes, tried on hotrun itself: a container's seccomp
/// profile may deny them.
#[cfg(target_os = "linux")]
fn check_self_calls() -> Result<(), String> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let me = libc::c_long::from(std::process::id() as i32);
    let denied = |call: &str| format!("{call} is denied: {}", std::io::Error::last_os_error());
    // SAFETY: pidfd_open on hotrun's own pid returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, me, 0) };
    if pidfd < 0 {
        return Err(denied("pidfd_open"));
    }
    // SAFETY: pidfd_open just returned this descriptor to hotrun.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: pidfd_getfd of hotrun's own stderr returns a new descriptor or -1.
    let copy = unsafe {
        libc::syscall(
            libc::SYS_pidfd_getfd,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd),
            2,
            0,
        )
    };
    if copy < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EBADF) {
        return Err(denied("pidfd_getfd"));
    }
    if copy >= 0 {
        // SAFETY: pidfd_getfd just returned this descriptor to hotrun.
        drop(unsafe { OwnedFd::from_raw_fd(copy as i32) });
    }
    // SAFETY: kcmp compares two of hotrun's own descriptors; it reads no memory.
    let rc = unsafe { libc::syscall(libc::SYS_kcmp, me, me, 0, 0, 0) };
    if rc < 0 {
        return Err(denied("kcmp"));
    }
    let probe = [7u8; 4];
    let mut back = [0u8; 4];
    let read = nix::sys::uio::process_vm_readv(
        nix::unistd::Pid::this(),
        &mut [std::io::IoSliceMut::new(&mut back)],
        &[nix::sys::uio::RemoteIoVec {
            base: probe.as_ptr() as usize,
            len: 4,
        }],
    );
    if read.is_err() {
        return Err(denied("process_vm_readv"));
    }
    Ok(())
}

/// Whether takeover can work here; the reason when it cannot.
#[cfg(not(target_os = "linux"))]
pub(crate) fn probe() -> Result<(), String> {
    Err("it needs Linux (seccomp user notification)".into())
}
