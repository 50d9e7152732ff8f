//! Socket takeover where it cannot work (not Linux): the same interface, never started.

use std::io;
use std::os::fd::OwnedFd;

use crossbeam_channel::Sender;

use crate::event::Generation;
use crate::input::Input;

#[derive(Debug)]
pub(crate) struct Takeover;

/// A `--listen` socket offered to takeover, which has no use for it here.
#[derive(Debug)]
#[allow(dead_code)]
pub(crate) struct Seed {
    pub(crate) fd: OwnedFd,
    pub(crate) name: String,
}

#[derive(Debug)]
pub(crate) struct Prepared;

#[derive(Clone, Copy, Debug)]
pub(crate) struct ChildHook;

fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "socket takeover needs Linux")
}

impl Takeover {
    pub(crate) fn start(_: Sender<Input>, _: Vec<Seed>, _: i32) -> io::Result<Takeover> {
        Err(unsupported())
    }
    pub(crate) fn prepare(&self) -> io::Result<(Prepared, ChildHook)> {
        Err(unsupported())
    }
    pub(crate) fn adopt(&self, _: Generation, _: OwnedFd) {}
    pub(crate) fn drain(&self, _: Generation) {}
    pub(crate) fn stopping(&self, _: Generation, _: i32) {}
    pub(crate) fn gone(&self, _: Generation) {}
    pub(crate) fn open_connections(&self, _: Generation) -> usize {
        0
    }
}

impl Prepared {
    pub(crate) fn listener(self) -> Result<Option<OwnedFd>, io::Error> {
        Ok(None)
    }
}

impl ChildHook {
    /// # Safety
    /// Nothing to uphold: it does nothing.
    pub(crate) unsafe fn install(self) {}
}
