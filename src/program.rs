//! What kind of file the command is: whether the system can run it (an executable binary,
//! or a script whose `#!` interpreter exists).
//!
//! glibc's `execvp`, which std uses whenever a `pre_exec` closure is set, runs a file the
//! kernel refuses with ENOEXEC through `/bin/sh`. So a junk file marked executable would
//! be run as a shell script, and a script whose interpreter is missing fails with a bare
//! ENOENT that looks like a binary still being written. hotrun looks at the file's first
//! bytes before every spawn instead, and says what is wrong.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// How many bytes of the file are looked at: the kernel reads as much for `#!` lines
/// (`BINPRM_BUF_SIZE`), and binfmt_misc magics lie within the first 128.
const HEAD: usize = 256;

/// Why the system cannot run a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NotRunnable {
    /// Zero bytes.
    Empty,
    /// `#!` with nothing after it.
    NoInterpreterNamed,
    /// The `#!` line names a file that does not exist.
    MissingInterpreter(PathBuf),
    /// The `#!` line names a file that cannot be executed.
    InterpreterNotExecutable(PathBuf),
    /// No `#!` line, and not a binary format the system runs.
    UnknownFormat,
}

impl NotRunnable {
    /// Whether a build that is still writing the file could explain it (at a restart, the
    /// spawn is retried within the usual budget); a missing interpreter is not that.
    pub(crate) fn may_be_half_written(&self) -> bool {
        matches!(
            self,
            NotRunnable::Empty | NotRunnable::NoInterpreterNamed | NotRunnable::UnknownFormat
        )
    }
}

impl fmt::Display for NotRunnable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotRunnable::Empty => f.write_str("it is empty, not a program this system can run"),
            NotRunnable::NoInterpreterNamed => f.write_str("its #! line names no interpreter"),
            NotRunnable::MissingInterpreter(p) => write!(
                f,
                "its interpreter {} (on its #! line) does not exist",
                p.display()
            ),
            NotRunnable::InterpreterNotExecutable(p) => write!(
                f,
                "its interpreter {} (on its #! line) is not executable",
                p.display()
            ),
            NotRunnable::UnknownFormat => f.write_str(
                "not a program this system can run: no #! line and not an executable binary",
            ),
        }
    }
}

/// Looks at the first bytes of `path`. A file that cannot be read (execute-only, gone)
/// passes: exec itself then says what is wrong.
pub(crate) fn check(path: &Path) -> Result<(), NotRunnable> {
    let Ok(mut file) = File::open(path) else {
        return Ok(());
    };
    let mut head = Vec::with_capacity(HEAD);
    if (&mut file)
        .take(HEAD as u64)
        .read_to_end(&mut head)
        .is_err()
    {
        return Ok(());
    }
    check_head(&head, path, &binfmt_misc())
}

fn check_head(head: &[u8], path: &Path, extra: &[BinfmtEntry]) -> Result<(), NotRunnable> {
    if head.is_empty() {
        return Err(NotRunnable::Empty);
    }
    if let Some(line) = head.strip_prefix(b"#!") {
        return check_interpreter(line);
    }
    if is_native_binary(head) || extra.iter().any(|e| e.matches(head, path)) {
        return Ok(());
    }
    Err(NotRunnable::UnknownFormat)
}

/// The interpreter on a `#!` line (what follows `#!`), as the kernel reads it: blanks
/// skipped, then the name up to a blank or the end of the line.
fn check_interpreter(line: &[u8]) -> Result<(), NotRunnable> {
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let name = line
        .split(|&b| b == b' ' || b == b'\t' || b == 0)
        .find(|w| !w.is_empty());
    let Some(name) = name else {
        return Err(NotRunnable::NoInterpreterNamed);
    };
    let interp = PathBuf::from(OsStr::from_bytes(name));
    match fs::metadata(&interp) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(NotRunnable::MissingInterpreter(interp))
        }
        Err(_) => Ok(()),
        Ok(meta) => {
            let executable = meta.is_file()
                && meta.permissions().mode() & 0o111 != 0
                && nix::unistd::access(&interp, nix::unistd::AccessFlags::X_OK).is_ok();
            if executable {
                Ok(())
            } else {
                Err(NotRunnable::InterpreterNotExecutable(interp))
            }
        }
    }
}

/// ELF everywhere; on macOS also Mach-O (32/64-bit, either byte order) and universal
/// ("fat") binaries.
fn is_native_binary(head: &[u8]) -> bool {
    if head.starts_with(b"\x7fELF") {
        return true;
    }
    if cfg!(target_os = "macos") {
        const MACH_O: [[u8; 4]; 6] = [
            [0xfe, 0xed, 0xfa, 0xce],
            [0xce, 0xfa, 0xed, 0xfe],
            [0xfe, 0xed, 0xfa, 0xcf],
            [0xcf, 0xfa, 0xed, 0xfe],
            [0xca, 0xfe, 0xba, 0xbe],
            [0xbe, 0xba, 0xfe, 0xca],
        ];
        return MACH_O.iter().any(|m| head.starts_with(m));
    }
    false
}

/// A format registered with Linux's binfmt_misc (qemu-user, Wine, jar runners…): files
/// of that format run although they are not ELF.
#[derive(Debug, Default, PartialEq, Eq)]
struct BinfmtEntry {
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
    extension: Option<Vec<u8>>,
}

impl BinfmtEntry {
    /// Parses one `/proc/sys/fs/binfmt_misc/NAME` file; `None` if disabled or unreadable.
    fn parse(text: &str) -> Option<BinfmtEntry> {
        let mut lines = text.lines();
        if lines.next()? != "enabled" {
            return None;
        }
        let mut entry = BinfmtEntry::default();
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "offset" => entry.offset = value.trim().parse().ok()?,
                "magic" => entry.magic = hex(value.trim())?,
                "mask" => entry.mask = hex(value.trim())?,
                "extension" => entry.extension = Some(value.trim().as_bytes().to_vec()),
                _ => {}
            }
        }
        (entry.extension.is_some() || !entry.magic.is_empty()).then_some(entry)
    }

    fn matches(&self, head: &[u8], path: &Path) -> bool {
        if let Some(ext) = &self.extension {
            // The kernel compares what follows the last '.' of the file name.
            let name = path.file_name().map(OsStr::as_bytes).unwrap_or_default();
            return name
                .iter()
                .rposition(|&b| b == b'.')
                .is_some_and(|dot| &name[dot + 1..] == ext.strip_prefix(b".").unwrap_or(ext));
        }
        let Some(bytes) = head.get(self.offset..self.offset + self.magic.len()) else {
            return false;
        };
        bytes
            .iter()
            .zip(&self.magic)
            .enumerate()
            .all(|(i, (b, m))| {
                let mask = self.mask.get(i).copied().unwrap_or(0xff);
                b & mask == m & mask
            })
    }
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The enabled binfmt_misc formats (none where there is no such file system).
fn binfmt_misc() -> Vec<BinfmtEntry> {
    const DIR: &str = "/proc/sys/fs/binfmt_misc";
    if !cfg!(target_os = "linux") {
        return Vec::new();
    }
    let enabled =
        fs::read_to_string(format!("{DIR}/status")).is_ok_and(|status| status.trim() == "enabled");
    if !enabled {
        return Vec::new();
    }
    let Ok(dir) = fs::read_dir(DIR) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| !matches!(e.file_name().to_str(), Some("status" | "register")))
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|text| BinfmtEntry::parse(&text))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8]) -> Result<(), NotRunnable> {
        check_head(bytes, Path::new("/x/app"), &[])
    }

    #[test]
    fn binaries_scripts_and_junk() {
        assert_eq!(head(b"\x7fELF\x02\x01\x01"), Ok(()));
        assert_eq!(head(b""), Err(NotRunnable::Empty));
        assert_eq!(head(b"#!/bin/sh\necho hi\n"), Ok(()));
        assert_eq!(head(b"#! /bin/sh -e\n"), Ok(()));
        assert_eq!(head(b"#!/bin/sh"), Ok(()));
        assert_eq!(head(b"#!\n"), Err(NotRunnable::NoInterpreterNamed));
        assert_eq!(
            head(b"#!   \t\n/bin/sh"),
            Err(NotRunnable::NoInterpreterNamed)
        );
        assert_eq!(
            head(b"#!/nonexistent/interp -x\n"),
            Err(NotRunnable::MissingInterpreter(
                "/nonexistent/interp".into()
            ))
        );
        assert_eq!(
            head(b"#!/etc\n"),
            Err(NotRunnable::InterpreterNotExecutable("/etc".into()))
        );
        assert_eq!(head(b"touch marker\n"), Err(NotRunnable::UnknownFormat));
        // A binary still being written: only part of the magic is there.
        assert_eq!(head(b"\x7fE"), Err(NotRunnable::UnknownFormat));
        assert!(NotRunnable::UnknownFormat.may_be_half_written());
        assert!(!NotRunnable::MissingInterpreter("/x".into()).may_be_half_written());
    }

    #[test]
    fn messages_name_the_interpreter() {
        assert_eq!(
            NotRunnable::MissingInterpreter("/nonexistent/interp".into()).to_string(),
            "its interpreter /nonexistent/interp (on its #! line) does not exist"
        );
        assert_eq!(
            NotRunnable::UnknownFormat.to_string(),
            "not a program this system can run: no #! line and not an executable binary"
        );
    }

    #[test]
    fn binfmt_misc_formats_are_runnable() {
        let wine = BinfmtEntry::parse(
            "enabled\ninterpreter /usr/bin/wine\nflags: \noffset 0\nmagic 4d5a\n",
        )
        .expect("entry");
        assert_eq!(wine.magic, b"MZ");
        assert_eq!(
            check_head(b"MZ\x90\x00", Path::new("/x/app"), &[wine]),
            Ok(())
        );
        let masked = BinfmtEntry::parse("enabled\noffset 1\nmagic 4100\nmask ff00\n").expect("e");
        assert!(masked.matches(b"xA7", Path::new("a")));
        assert!(!masked.matches(b"xB7", Path::new("a")));
        let jar = BinfmtEntry::parse("enabled\ninterpreter /usr/bin/jexec\nextension .jar\n")
            .expect("entry");
        assert!(jar.matches(b"PK", Path::new("/srv/app.jar")));
        assert!(!jar.matches(b"PK", Path::new("/srv/app")));
        assert_eq!(BinfmtEntry::parse("disabled\nmagic 4d5a\n"), None);
    }
}
