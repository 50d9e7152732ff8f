//! What kind of file the command is: whether the system can run it (an executable binary,
//! or a script whose `#!` interpreter exists), and whether it is a wrapper (a shell, an
//! interpreter, a launcher such as `make` or `npm`) whose own file is not what the user
//! rebuilds.
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
    check_head(&head, path, binfmt_misc)
}

/// `extra`: the formats registered with binfmt_misc, read only for a file that is neither
/// a native binary nor a script (every spawn goes through here).
fn check_head(
    head: &[u8],
    path: &Path,
    extra: impl FnOnce() -> Vec<BinfmtEntry>,
) -> Result<(), NotRunnable> {
    if head.is_empty() {
        return Err(NotRunnable::Empty);
    }
    if let Some(line) = head.strip_prefix(b"#!") {
        return check_interpreter(line);
    }
    if is_native_binary(head) || extra().iter().any(|e| e.matches(head, path)) {
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

/// What kind of wrapper a command is, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wrapper {
    /// A shell: what it runs is usually a child process, unless it `exec`s it.
    Shell,
    /// An interpreter: runs a program file in its own process.
    Interpreter,
    /// A launcher or build tool that starts the server as a child process.
    Launcher,
    /// A tool that sets something up and `exec`s the command (same pid).
    Exec,
}

const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "busybox",
];
/// Matched with any version suffix (`python3.12`, `ruby3.2`, `perl5.36`).
const INTERPRETERS: &[&str] = &[
    "python", "pypy", "node", "nodejs", "deno", "bun", "ruby", "perl", "php", "lua", "java",
    "Rscript", "elixir", "erl", "tclsh",
];
const LAUNCHERS: &[&str] = &[
    "make",
    "gmake",
    "npm",
    "npx",
    "yarn",
    "pnpm",
    "go",
    "cargo",
    "uv",
    "poetry",
    "pipenv",
    "bundle",
    "dotnet",
    "timeout",
    "watchexec",
    "nodemon",
];
const EXECS: &[&str] = &[
    "env", "nohup", "nice", "ionice", "taskset", "chrt", "stdbuf",
];

/// Whether a command named `name` (a file name, no directory) is a wrapper.
pub(crate) fn wrapper_kind(name: &OsStr) -> Option<Wrapper> {
    let name = name.to_str()?;
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    if SHELLS.contains(&name) {
        Some(Wrapper::Shell)
    } else if INTERPRETERS.contains(&name) || INTERPRETERS.contains(&base) {
        Some(Wrapper::Interpreter)
    } else if LAUNCHERS.contains(&name) {
        Some(Wrapper::Launcher)
    } else if EXECS.contains(&name) {
        Some(Wrapper::Exec)
    } else {
        None
    }
}

/// What hotrun needs to know to give its start-up hints about wrappers.
#[derive(Debug)]
pub(crate) struct CommandLine<'a> {
    /// The resolved executable (as found through `PATH`).
    pub(crate) program: &'a Path,
    /// Where symlinks lead (`/usr/bin/python3` → `python3.11`), if known.
    pub(crate) canonical: Option<&'a Path>,
    pub(crate) args: &'a [std::ffi::OsString],
    /// The binary is watched, and no `--watch` path is given.
    pub(crate) watching_only_the_binary: bool,
    /// `--listen` sockets are passed.
    pub(crate) listening: bool,
}

/// The hints to print at start when the command is a wrapper.
pub(crate) fn wrapper_hints(cmd: &CommandLine<'_>) -> Vec<String> {
    let names = [Some(cmd.program), cmd.canonical]
        .into_iter()
        .flatten()
        .filter_map(Path::file_name);
    let Some((name, kind)) = names.filter_map(|n| wrapper_kind(n).map(|k| (n, k))).next() else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    let mut hints = Vec::new();
    if cmd.watching_only_the_binary {
        hints.push(format!(
            "watching {} (the command); rebuilds of what it runs are not seen: add --watch \
             PATH, or run the binary directly",
            cmd.program.display()
        ));
    }
    let execs = |args: &[std::ffi::OsString]| {
        // `sh -c 'exec ./server'`: the shell becomes the server (same pid).
        args.windows(2).any(|w| {
            w[0] == "-c"
                && w[1]
                    .as_bytes()
                    .trim_ascii_start()
                    .strip_prefix(b"exec")
                    .is_some_and(|rest| rest.first().is_some_and(u8::is_ascii_whitespace))
        })
    };
    if cmd.listening {
        match kind {
            Wrapper::Shell if !execs(cmd.args) => hints.push(format!(
                "with --listen, LISTEN_PID is the pid of {name} (the command): a server it \
                 starts as a child ignores the sockets (sd_listen_fds and go-systemd check \
                 LISTEN_PID); let the shell exec it: sh -c 'exec ./server'"
            )),
            Wrapper::Launcher => hints.push(format!(
                "with --listen, LISTEN_PID is the pid of {name} (the command): a server it \
                 starts as a child ignores the sockets (sd_listen_fds and go-systemd check \
                 LISTEN_PID); run the server directly, or through sh -c 'exec ./server'"
            )),
            _ => {}
        }
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8]) -> Result<(), NotRunnable> {
        check_head(bytes, Path::new("/x/app"), Vec::new)
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
            check_head(b"MZ\x90\x00", Path::new("/x/app"), || vec![wine]),
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

    #[test]
    fn wrappers_by_name() {
        let kind = |n: &str| wrapper_kind(OsStr::new(n));
        assert_eq!(kind("sh"), Some(Wrapper::Shell));
        assert_eq!(kind("bash"), Some(Wrapper::Shell));
        assert_eq!(kind("python3.12"), Some(Wrapper::Interpreter));
        assert_eq!(kind("python3"), Some(Wrapper::Interpreter));
        assert_eq!(kind("node"), Some(Wrapper::Interpreter));
        assert_eq!(kind("make"), Some(Wrapper::Launcher));
        assert_eq!(kind("npm"), Some(Wrapper::Launcher));
        assert_eq!(kind("env"), Some(Wrapper::Exec));
        assert_eq!(kind("server"), None);
        assert_eq!(kind("shellcheck"), None);
        assert_eq!(kind("app.sh"), None);
    }

    fn hints(program: &str, args: &[&str], watching: bool, listening: bool) -> Vec<String> {
        let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        wrapper_hints(&CommandLine {
            program: Path::new(program),
            canonical: None,
            args: &args,
            watching_only_the_binary: watching,
            listening,
        })
    }

    #[test]
    fn hints_for_wrappers() {
        let h = hints("/usr/bin/sh", &["-c", "./server"], true, false);
        assert_eq!(
            h,
            [
                "watching /usr/bin/sh (the command); rebuilds of what it runs are not seen: add \
              --watch PATH, or run the binary directly"
            ]
        );
        assert!(hints("/srv/server", &[], true, true).is_empty());
        // --watch given (or the binary not watched), no --listen: nothing to say.
        assert!(hints("/usr/bin/python3", &["app.py"], false, false).is_empty());
        let h = hints("/usr/bin/sh", &["-c", "./server"], false, true);
        assert_eq!(h.len(), 1);
        assert!(h[0].contains("LISTEN_PID is the pid of sh"), "{h:?}");
        assert!(h[0].contains("sh -c 'exec ./server'"), "{h:?}");
        // The shell execs the server: LISTEN_PID is right.
        assert!(
            hints(
                "/bin/bash",
                &["-c", "  exec ./server --port 1"],
                false,
                true
            )
            .is_empty()
        );
        assert!(!hints("/bin/bash", &["-c", "executable"], false, true).is_empty());
        // An interpreter runs the program in its own process: LISTEN_PID is right.
        assert!(hints("/usr/bin/python3", &["app.py"], false, true).is_empty());
        let h = hints("/usr/bin/make", &["run"], false, true);
        assert!(h[0].contains("run the server directly"), "{h:?}");
        // env execs the command: only the watch hint.
        assert_eq!(
            hints("/usr/bin/env", &["A=1", "./server"], true, true).len(),
            1
        );
    }
}
