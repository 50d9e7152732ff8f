//! The seccomp filter every generation runs under, and how its notification descriptor
//! gets from the child to hotrun.
//!
//! Between fork and exec (`pre_exec`), the child sets `PR_SET_NO_NEW_PRIVS` and installs a
//! six-instruction BPF filter with `SECCOMP_FILTER_FLAG_NEW_LISTENER`: `bind`, `listen`,
//! `accept` and `accept4` of the native architecture go to hotrun as notifications,
//! everything else runs untouched. The filter is inherited across fork and exec, so a
//! wrapper (`sh -c`, `go run`) and everything it starts is covered. The listener
//! descriptor comes back to hotrun over a datagram socket pair (SCM_RIGHTS), with an
//! errno instead when the filter could not be installed: that never fails the spawn, it
//! only turns takeover off.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, socketpair,
};

/// `AUDIT_ARCH_*` of the architecture hotrun was built for (linux/audit.h).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
#[cfg(target_arch = "riscv64")]
const AUDIT_ARCH: u32 = 0xC000_00F3;

/// `offsetof(struct seccomp_data, arch)` and `offsetof(struct seccomp_data, nr)`.
const ARCH_OFFSET: u32 = 4;
const NR_OFFSET: u32 = 0;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

/// The filter program. Other architectures' calls (32-bit compat, x32, whose numbers
/// differ) are allowed untouched: takeover is a convenience, not a security boundary.
pub(crate) fn program() -> Vec<libc::sock_filter> {
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let nr = |n: libc::c_long| u32::try_from(n).unwrap_or(u32::MAX);
    vec![
        stmt(load, ARCH_OFFSET),
        jump(AUDIT_ARCH, 0, 5),
        stmt(load, NR_OFFSET),
        jump(nr(libc::SYS_bind), 4, 0),
        jump(nr(libc::SYS_listen), 3, 0),
        jump(nr(libc::SYS_accept), 2, 0),
        jump(nr(libc::SYS_accept4), 1, 0),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_USER_NOTIF),
    ]
}

/// The filter program, kept where a forked child can read it (the child's memory is a
/// copy of the parent's, so the addresses stay valid there).
#[derive(Debug)]
pub(crate) struct Program {
    _filters: Box<[libc::sock_filter]>,
    fprog: Box<libc::sock_fprog>,
}

// SAFETY: the pointers in `fprog` point into `_filters`, which is owned alongside, never
// changed after construction, and only read.
unsafe impl Send for Program {}
// SAFETY: as above: the data is immutable after construction.
unsafe impl Sync for Program {}

impl Program {
    pub(crate) fn new() -> Program {
        let mut filters = program().into_boxed_slice();
        let fprog = Box::new(libc::sock_fprog {
            len: u16::try_from(filters.len()).unwrap_or(0),
            filter: filters.as_mut_ptr(),
        });
        Program {
            _filters: filters,
            fprog,
        }
    }
}

/// Made before a spawn: the socket pair the child sends its listener over.
#[derive(Debug)]
pub(crate) struct Prepared {
    parent: OwnedFd,
    child: OwnedFd,
}

/// What the child's `pre_exec` needs, as plain numbers (it must be `Send + Sync`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChildHook {
    fd: RawFd,
    fprog: usize,
}

impl Prepared {
    pub(crate) fn new() -> io::Result<Prepared> {
        let (parent, child) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        Ok(Prepared { parent, child })
    }

    pub(crate) fn hook(&self, program: &Program) -> ChildHook {
        ChildHook {
            fd: self.child.as_raw_fd(),
            fprog: std::ptr::from_ref::<libc::sock_fprog>(&program.fprog) as usize,
        }
    }

    /// After the spawn: the generation's notification listener, or the errno that kept
    /// the child from installing the filter. `Ok(None)`: the child never got that far
    /// (its exec failed before, or it did not run the hook).
    pub(crate) fn listener(self) -> Result<Option<OwnedFd>, io::Error> {
        drop(self.child);
        let mut payload = [0u8; 4];
        let mut iov = [IoSliceMut::new(&mut payload)];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let msg = match recvmsg::<()>(
            self.parent.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut listener = None;
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for raw in fds {
                    // SAFETY: the kernel just installed this descriptor for hotrun.
                    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                    listener.get_or_insert(fd);
                }
            }
        }
        let errno = i32::from_ne_bytes(payload);
        match listener {
            Some(fd) => Ok(Some(fd)),
            None if errno != 0 => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(None),
        }
    }
}

impl ChildHook {
    /// In the forked child, before exec: installs the filter and sends the listener to
    /// hotrun (or the errno if that failed). Never fails: without the filter the child
    /// runs as it would without takeover.
    ///
    /// # Safety
    /// Only call between fork and exec, in the child, with the `Prepared` and `Program`
    /// this hook was made from alive in the parent at fork time. It makes only
    /// async-signal-safe system calls and allocates nothing.
    pub(crate) unsafe fn install(self) {
        // SAFETY: prctl, seccomp, sendmsg and close are plain system calls; `fprog` points
        // at a `sock_fprog` in this process's copy of the parent's memory (see Safety).
        unsafe {
            let mut errno = 0;
            let mut listener: libc::c_long = -1;
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                errno = *libc::__errno_location();
            } else {
                listener = libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                    self.fprog as *const libc::sock_fprog,
                );
                if listener < 0 {
                    errno = *libc::__errno_location();
                }
            }
            let listener = libc::c_int::try_from(listener).unwrap_or(-1);
            send(self.fd, errno, listener);
            if listener >= 0 {
                libc::close(listener);
            }
        }
    }
}

/// Sends `errno` and, if `fd >= 0`, the descriptor, in one datagram.
///
/// # Safety
/// Async-signal-safe: builds the message on the stack and makes one system call.
unsafe fn send(socket: RawFd, errno: i32, fd: libc::c_int) {
    let mut payload = errno.to_ne_bytes();
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // Room for one SCM_RIGHTS message with one descriptor, 8-byte aligned.
    let mut control = [0u64; 4];
    // SAFETY: an all-zero msghdr is valid; the pointers set below point at live locals.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if fd >= 0 {
        // SAFETY: CMSG_SPACE/CMSG_LEN are arithmetic; CMSG_FIRSTHDR and CMSG_DATA point
        // into `control`, which is large enough for one descriptor.
        unsafe {
            let size = std::mem::size_of::<libc::c_int>() as u32;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
        }
    }
    // SAFETY: `msg` and everything it points at live until the call returns.
    unsafe {
        libc::sendmsg(socket, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_jumps_stay_inside_it() {
        let p = program();
        for (i, ins) in p.iter().enumerate() {
            if ins.code == (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16 {
                assert!(i + 1 + usize::from(ins.jt) < p.len());
                assert!(i + 1 + usize::from(ins.jf) < p.len());
            }
        }
        let ret = (libc::BPF_RET | libc::BPF_K) as u16;
        // Every jump target that is taken on "yes" lands on the notification return.
        assert_eq!(p[8].code, ret);
        assert_eq!(p[8].k, libc::SECCOMP_RET_USER_NOTIF);
        for (i, ins) in p.iter().enumerate().take(7).skip(3) {
            assert_eq!(i + 1 + usize::from(ins.jt), 8);
        }
        // A foreign architecture and everything else are allowed.
        assert_eq!(1 + 1 + usize::from(p[1].jf), 7);
        assert_eq!(p[7].k, libc::SECCOMP_RET_ALLOW);
    }
}
