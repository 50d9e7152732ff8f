//! The command line: clap's `Args` (raw), checked and resolved into a plain `Config` that
//! the rest of hotrun uses. Every bad input ends here with an exit code: clap's errors in
//! clap's own words (with the usage and tips), hotrun's own checks in one line.

use std::env;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{CommandFactory, Parser, ValueEnum};
use nix::sys::signal::Signal;

use crate::drill::{self, DrillConfig, Probe};
use crate::exit::{self, Failure};
use crate::process::Spawner;
use crate::program;
use crate::report::ColorChoice;
use crate::sockets::{self, ListenSpec};
use crate::supervisor::{BuildSettings, OnExit, Readiness, Settings};

const EXIT_CODES: &str = "\
Exit status:
  the child's    after SIGINT/SIGTERM/SIGQUIT or with --on-exit exit: its exit code, or
                 128+N when signal N killed it (hotrun dies of that signal itself when it
                 is the one hotrun received)
  1              hotrun failed (cannot watch, cannot install signal handlers)
  2              bad command line
  3              hotrun drill: a check failed
  126            the command cannot be executed (not executable, a directory)
  127            the command was not found

Signals: SIGHUP or SIGUSR1 restart the command; SIGINT, SIGTERM and SIGQUIT are forwarded
to every generation's process group, a second one kills at once.

For CI: `hotrun drill --help` (restart N times and check every step), and --events.";

/// Run a command; restart it when its binary changes or on SIGHUP. The new generation
/// starts before the old one is stopped.
#[derive(Parser, Debug)]
#[command(
    name = "hotrun",
    version,
    after_help = EXIT_CODES,
    override_usage = "hotrun [OPTIONS] [--] COMMAND [ARGS]...\n       hotrun drill [OPTIONS] [--] COMMAND [ARGS]..."
)]
struct Args {
    /// Also restart when PATH changes (a file, or a directory recursively). Repeatable.
    /// In directories, changes that .gitignore/.ignore files (up to the repository root)
    /// or .git/info/exclude ignore do not count, nor those of editor temporary files,
    /// .git/, __pycache__/ and *.py[co].
    #[arg(short, long = "watch", value_name = "PATH")]
    watch: Vec<PathBuf>,

    /// Changes of paths matching GLOB never restart (gitignore syntax: `*.log` anywhere,
    /// `log/**` below the current directory, `/abs/path/**`). Repeatable.
    #[arg(short = 'i', long = "ignore", value_name = "GLOB", value_parser = parse_ignore)]
    ignore: Vec<String>,

    /// Look for changes every DURATION instead of asking the OS for events: for file
    /// systems that report none (NFS, SMB, some WSL2 and Docker bind mounts). Costs a
    /// wake-up and a walk of the watched trees per interval.
    #[arg(long, value_name = "DURATION", value_parser = parse_poll, allow_hyphen_values = true)]
    poll: Option<Duration>,

    /// Do not watch the command's own executable.
    #[arg(long)]
    no_watch_binary: bool,

    /// Build command (run with sh -c, in its own process group): a change under a --watch
    /// path (default: the current directory) runs it instead of restarting, while the
    /// running generation keeps serving; the command restarts when the build changes its
    /// executable. It runs once at start too, before the first generation.
    #[arg(long, value_name = "CMD")]
    build: Option<OsString>,

    /// Signal that asks a generation to stop (name like TERM or SIGINT, or a number).
    #[arg(short, long, value_name = "SIGNAL", default_value = "TERM", value_parser = parse_signal)]
    stop_signal: Signal,

    /// How long a generation may take to stop before its process group gets SIGKILL.
    #[arg(short, long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, allow_hyphen_values = true)]
    grace: Duration,

    /// Quiet period after a --watch path changes before restarting (the binary itself
    /// restarts at once: its identity tells when a build is complete).
    #[arg(long, value_name = "DURATION", default_value = "50ms", value_parser = parse_duration, allow_hyphen_values = true)]
    debounce: Duration,

    /// What to do when the command exits on its own: wait for a change or SIGHUP, restart
    /// it (with a backoff that grows while it keeps exiting within 5 s), or exit with its
    /// status.
    #[arg(long, value_enum, value_name = "WHAT", default_value_t = OnExitArg::Wait)]
    on_exit: OnExitArg,

    /// Listen here and hand the socket to every generation (systemd's LISTEN_FDS
    /// protocol): PORT (on 127.0.0.1), HOST:PORT, [V6]:PORT, unix:PATH; NAME=… names it.
    /// Port 0 picks a free port (reported). Repeatable.
    #[arg(short, long = "listen", value_name = "SPEC", value_parser = sockets::parse_spec)]
    listen: Vec<ListenSpec>,

    /// Listen backlog of the --listen sockets (connections wait there during restarts).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(i32).range(1..=65535))]
    backlog: i32,

    /// When a new generation is ready, so the old one may be stopped: `notify` (it sends
    /// READY=1 to $NOTIFY_SOCKET, sd_notify), `delay:DURATION` (it stayed up that long),
    /// `exec` (its exec succeeded). Without it: once its exec succeeded, or — when the
    /// generation it replaces listens on a socket hotrun took over — once it listens there
    /// too. A generation that exits or is not ready in time is stopped and the old one
    /// keeps serving.
    #[arg(short, long, value_name = "HOW", value_parser = parse_ready)]
    ready: Option<Readiness>,

    /// Do not take over listening sockets: a server that binds its own port is restarted
    /// the plain way (Linux; see the README, "Socket takeover").
    #[arg(long)]
    no_takeover: bool,

    /// How long, at least, a replaced generation gets no new connections before its stop
    /// signal (socket takeover, --listen); it waits longer, up to 2 s, while connections it
    /// accepted are still open, so that their requests finish.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_duration, allow_hyphen_values = true)]
    drain: Duration,

    /// How long a new generation may take to become ready.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, allow_hyphen_values = true)]
    ready_timeout: Duration,

    /// Let the command read hotrun's stdin (the default is /dev/null: a child in its own
    /// process group that reads the terminal would be stopped).
    #[arg(long)]
    stdin: bool,

    /// Write every lifecycle step as one JSON object per line to PATH (`-`: stdout, and
    /// the command's own stdout then goes to stderr).
    #[arg(long, value_name = "PATH")]
    events: Option<PathBuf>,

    /// Print only errors.
    #[arg(short, long)]
    quiet: bool,

    /// Colour in status lines (NO_COLOR is honoured with auto).
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    color: ColorChoice,

    /// The command and its arguments, run directly (no shell).
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

const DRILL_HELP: &str = "\
The drill starts COMMAND, waits until it is ready, restarts it N times through the normal
routine, then stops it with SIGTERM. Each restart passes when the new generation got ready
within --ready-timeout and the old one stopped cleanly: its whole process group gone within
--grace without SIGKILL, its first process having exited 0, died of the stop signal, or
exited 128+that signal. With --probe, the server is asked continuously: restart 1 waits
for its first answer, and a failed probe fails the restart whose window it falls in. File
changes do not restart during a drill.

Exit status: 0 when every check passed, 3 when one failed (each is named), otherwise as
for hotrun (2 for a bad command line, 126/127 when COMMAND cannot start).";

/// Check that a server restarts cleanly: N restarts, then a SIGTERM, every step checked.
#[derive(Parser, Debug)]
#[command(
    name = "hotrun drill",
    version,
    after_help = DRILL_HELP,
    override_usage = "hotrun drill [OPTIONS] [--] COMMAND [ARGS]..."
)]
struct DrillArgs {
    /// How many restarts to perform.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    restarts: u64,

    /// Ask the server continuously during the drill: http://HOST:PORT/PATH (a 2xx/3xx
    /// answer passes) or tcp:HOST:PORT (a connection passes). Port 0: the port of the
    /// first --listen TCP socket.
    #[arg(long, value_name = "URL", value_parser = drill::parse_probe)]
    probe: Option<Probe>,

    /// Also write the summary as JSON to PATH (`-`: stdout, and the table then goes to
    /// stderr).
    #[arg(long, value_name = "PATH")]
    summary_json: Option<PathBuf>,

    /// Wait this long before each restart and before the final stop (probes go on).
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_duration, allow_hyphen_values = true)]
    pause: Duration,

    #[command(flatten)]
    run: Args,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OnExitArg {
    Wait,
    Restart,
    Exit,
}

/// Everything hotrun needs, resolved and checked.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) spawner: Spawner,
    /// The executable to watch (absolute, symlinks resolved), unless --no-watch-binary.
    pub(crate) watch_binary: Option<PathBuf>,
    /// Absolute `--watch` paths.
    pub(crate) watch: Vec<PathBuf>,
    /// `--ignore` globs.
    pub(crate) ignore: Vec<String>,
    /// `--poll`.
    pub(crate) poll: Option<Duration>,
    pub(crate) settings: Settings,
    pub(crate) listen: Vec<ListenSpec>,
    pub(crate) backlog: i32,
    /// Take over the listening sockets servers bind themselves (Linux).
    pub(crate) takeover: bool,
    pub(crate) events: Option<PathBuf>,
    /// `hotrun drill`.
    pub(crate) drill: Option<DrillConfig>,
    /// `--build`.
    pub(crate) build: Option<BuildCommand>,
    pub(crate) quiet: bool,
    pub(crate) color: ColorChoice,
    /// The current directory, canonical (`/` if it cannot be read): relative `--ignore`
    /// globs are anchored there, and paths below it are shown relative to it.
    pub(crate) cwd: PathBuf,
}

/// `--build`: the command and what hotrun watches for it.
#[derive(Debug)]
pub(crate) struct BuildCommand {
    /// Run as `sh -c COMMAND`.
    pub(crate) command: OsString,
    /// No `--watch` was given: the current directory (this one) is watched.
    pub(crate) watching_cwd: Option<PathBuf>,
}

/// Parses `std::env::args_os()`. Help and version are printed here and end the process.
pub(crate) fn parse() -> Result<Config, Failure> {
    parse_from(env::args_os())
}

fn parse_from<I, T>(args: I) -> Result<Config, Failure>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    // `hotrun drill …`; a command named drill runs with `hotrun -- drill`.
    if args.get(1).is_some_and(|a| a == "drill") {
        let mut rest = args.clone();
        rest.remove(1);
        let drill: DrillArgs = clap_parse(DrillArgs::command().bin_name("hotrun drill"), rest)?;
        return drill.into_config();
    }
    let args: Args = clap_parse(Args::command(), args)?;
    args.into_config()
}

/// Parses with clap. Help and version end the process here; errors are clap's whole
/// message, coloured as clap does (on a terminal only, following `--color` when it can be
/// found on the line).
fn clap_parse<P: clap::FromArgMatches>(
    cmd: clap::Command,
    args: Vec<OsString>,
) -> Result<P, Failure> {
    use clap::error::ErrorKind;
    let color = color_in(&cmd, &args);
    let mut cmd = cmd.color(color);
    let parsed = cmd
        .try_get_matches_from_mut(args)
        .and_then(|matches| P::from_arg_matches(&matches));
    parsed.map_err(|err| {
        let err = err.format(&mut cmd);
        if matches!(
            err.kind(),
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
        ) {
            let _ = err.print();
            std::process::exit(0);
        }
        Failure::clap(err)
    })
}

/// The `--color` value on a command line, looked for before the command starts (even when
/// the line does not parse, so that clap's error follows it too).
fn color_in(cmd: &clap::Command, args: &[OsString]) -> clap::ColorChoice {
    let takes_value = |arg: Option<&clap::Arg>| arg.is_some_and(|a| a.get_action().takes_values());
    let choice = |value: Option<&OsString>| match value.and_then(|v| v.to_str()) {
        Some("always") => clap::ColorChoice::Always,
        Some("never") => clap::ColorChoice::Never,
        _ => clap::ColorChoice::Auto,
    };
    let mut words = args.iter().skip(1);
    while let Some(word) = words.next() {
        let Some(text) = word.to_str() else { break };
        if text == "--" {
            break;
        }
        if let Some(long) = text.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((name, value)) => (name, Some(OsString::from(value))),
                None => (long, None),
            };
            if name == "color" {
                return choice(value.as_ref().or_else(|| words.next()));
            }
            let arg = cmd.get_arguments().find(|a| a.get_long() == Some(name));
            if value.is_none() && takes_value(arg) {
                words.next();
            }
        } else if let Some(shorts) = text.strip_prefix('-').filter(|s| !s.is_empty()) {
            // `-qw PATH`, `-wPATH`: the first short option that takes a value ends it.
            for (i, c) in shorts.char_indices() {
                let arg = cmd.get_arguments().find(|a| a.get_short() == Some(c));
                if takes_value(arg) {
                    if i + c.len_utf8() == shorts.len() {
                        words.next();
                    }
                    break;
                }
            }
        } else {
            // The command: what follows is its own.
            break;
        }
    }
    clap::ColorChoice::Auto
}

impl DrillArgs {
    fn into_config(self) -> Result<Config, Failure> {
        let mut config = self.run.into_config()?;
        // A drill restarts on its own schedule, and a server that exits ends it. (With
        // --build, the build runs once, before the first generation.)
        config.watch_binary = None;
        config.watch.clear();
        if let Some(build) = config.build.as_mut() {
            build.watching_cwd = None;
        }
        config.settings.on_exit = OnExit::Exit;
        let budget =
            config.settings.ready_timeout + config.settings.grace * 2 + Duration::from_secs(10);
        if let Some(probe) = &self.probe
            && probe.wants_listen_port()
            && !config
                .listen
                .iter()
                .any(|l| matches!(l.addr, sockets::ListenAddr::Tcp(_)))
        {
            return Err(Failure::usage(format!(
                "--probe {probe}: port 0 stands for the port of the --listen TCP socket, and \
                 there is none (add --listen 127.0.0.1:0, or give the port)"
            )));
        }
        let to_stdout = |path: &Option<PathBuf>| path.as_deref() == Some(Path::new("-"));
        let stdout_is_json = to_stdout(&self.summary_json) || to_stdout(&config.events);
        // stdout carries only JSON then: the child's output goes with the status lines.
        config.spawner.stdout_to_stderr = stdout_is_json;
        config.drill = Some(DrillConfig {
            restarts: usize::try_from(self.restarts).unwrap_or(usize::MAX),
            probe: self.probe,
            stdout_is_json,
            summary_json: self.summary_json,
            restart_budget: budget,
            pause: self.pause,
        });
        Ok(config)
    }
}

impl Args {
    fn into_config(self) -> Result<Config, Failure> {
        if let Some(build) = &self.build {
            check_unquoted_build(build, &self.command)?;
            check_build(build)?;
            if self.no_watch_binary {
                return Err(Failure::usage(
                    "--build restarts the command when a build changes its executable, and \
                     --no-watch-binary says not to look at it: no build could restart anything \
                     (drop --no-watch-binary)",
                ));
            }
        }
        let mut command = self.command.into_iter();
        let argv0 = command.next().ok_or_else(|| {
            Failure::usage("no command given (usage: hotrun [OPTIONS] -- COMMAND [ARGS]...)")
        })?;
        let program = if self.build.is_some() {
            resolve_program_to_build(&argv0)?
        } else {
            resolve_program(&argv0)?
        };
        let watch_binary = if self.no_watch_binary {
            None
        } else {
            Some(canonical_lenient(&program))
        };
        let cwd = env::current_dir().and_then(fs::canonicalize);
        let mut watch = Vec::new();
        for path in self.watch {
            let abs = fs::canonicalize(&path).map_err(|err| {
                Failure::usage(format!("--watch {}: {}", path.display(), io_reason(&err)))
            })?;
            watch.push(abs);
        }
        let mut build_settings = None;
        let build = match self.build {
            None => None,
            Some(command) => {
                let watching_cwd = if watch.is_empty() {
                    let cwd = cwd.as_ref().cloned().map_err(|err| {
                        Failure::usage(format!(
                            "--build without --watch watches the current directory, and it \
                             cannot be read: {}",
                            io_reason(err)
                        ))
                    })?;
                    watch.push(cwd.clone());
                    Some(cwd)
                } else {
                    None
                };
                let binary = canonical_lenient(&program);
                build_settings = Some(build_settings_for(
                    &argv0,
                    &program,
                    &binary,
                    &watch,
                    self.events.as_deref(),
                    cwd.as_deref().unwrap_or(Path::new("/")),
                ));
                Some(BuildCommand {
                    command,
                    watching_cwd,
                })
            }
        };
        Ok(Config {
            spawner: Spawner {
                program,
                argv0,
                args: command.collect(),
                inherit_stdin: self.stdin,
                // stdout carries the JSON lines: the child's output goes with the status lines.
                stdout_to_stderr: self.events.as_deref() == Some(Path::new("-")),
                self_exe: self_exe(),
            },
            watch_binary,
            watch,
            ignore: self.ignore,
            poll: self.poll,
            settings: Settings {
                stop_signal: self.stop_signal,
                grace: self.grace,
                debounce: self.debounce,
                on_exit: match self.on_exit {
                    OnExitArg::Wait => OnExit::Wait,
                    OnExitArg::Restart => OnExit::Restart,
                    OnExitArg::Exit => OnExit::Exit,
                },
                ready: self.ready.unwrap_or(Readiness::Auto),
                ready_timeout: self.ready_timeout,
                drain: self.drain,
                build: build_settings,
            },
            listen: self.listen,
            backlog: self.backlog,
            takeover: !self.no_takeover,
            events: self.events,
            drill: None,
            build,
            quiet: self.quiet,
            color: self.color,
            cwd: cwd.unwrap_or_else(|_| PathBuf::from("/")),
        })
    }
}

/// Finds the program like `execvp` would, and checks that it can be executed.
fn resolve_program(name: &OsStr) -> Result<PathBuf, Failure> {
    if name.is_empty() {
        return Err(Failure::new(exit::NOT_FOUND, "command not found: ''"));
    }
    if name.as_bytes().contains(&b'/') {
        let path = absolute(Path::new(name));
        return check_executable(&path, name).and_then(|p| check_runnable(p, name));
    }
    let path_var =
        env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    let mut denied = None;
    for dir in env::split_paths(&path_var) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = absolute(&dir.join(name));
        if !candidate.exists() {
            continue;
        }
        match check_executable(&candidate, name) {
            Ok(found) => return check_runnable(found, name),
            Err(err) => denied = denied.or(Some(err)),
        }
    }
    Err(denied.unwrap_or_else(|| {
        Failure::new(
            exit::NOT_FOUND,
            format!("command not found: {}", name.to_string_lossy()),
        )
    }))
}

/// The command with `--build`: a path need not exist yet, nor be runnable (the build
/// makes it: a fresh clone has no `target/debug/server`); a directory is still an error,
/// and a bare name must be found through `PATH` as without `--build`.
fn resolve_program_to_build(name: &OsStr) -> Result<PathBuf, Failure> {
    if !name.as_bytes().contains(&b'/') {
        return resolve_program(name);
    }
    let path = absolute(Path::new(name));
    if path.is_dir() {
        return Err(Failure::new(
            exit::CANNOT_EXECUTE,
            format!("cannot run {}: it is a directory", name.to_string_lossy()),
        ));
    }
    Ok(path)
}

/// `path` with symlinks resolved as far as it exists (the rest appended as given): the
/// executable and the `--events` file may not exist yet.
fn canonical_lenient(path: &Path) -> PathBuf {
    if let Ok(found) = fs::canonicalize(path) {
        return found;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
            canonical_lenient(parent).join(name)
        }
        _ => path.to_path_buf(),
    }
}

/// What never runs the build, and how the command is compared after one.
fn build_settings_for(
    argv0: &OsStr,
    program: &Path,
    binary: &Path,
    watch: &[PathBuf],
    events: Option<&Path>,
    cwd: &Path,
) -> BuildSettings {
    // Go probes the umask with a file beside its output (`go build -o server` writes
    // server-go-tmp-umask, then removes it) on every build that moves its output there.
    let mut go_probe = binary.as_os_str().to_owned();
    go_probe.push("-go-tmp-umask");
    let mut ignore_files = vec![binary.to_path_buf(), PathBuf::from(go_probe)];
    if let Some(events) = events.filter(|p| *p != Path::new("-")) {
        ignore_files.push(canonical_lenient(&absolute(events)));
    }
    // `hotrun … > hotrun.log` in the watched directory: every line hotrun (or the build)
    // writes there would run the build again.
    ignore_files.extend(own_output_files());
    // Where the build writes: the executable's directory, and cargo's target directory
    // around it (target/debug/server, target/x86_64-unknown-linux-gnu/release/server).
    // cargo opens target/debug/.cargo-lock for writing on every run, so a build would
    // otherwise start itself again forever. Not when that directory holds a watched path
    // (`go build -o server` in the directory being watched): then only the executable.
    let mut ignore_dirs = Vec::new();
    if let Some(dir) = binary.parent() {
        ignore_dirs.push(dir.to_path_buf());
        if let Some(target) = dir
            .ancestors()
            .skip(1)
            .take(2)
            .find(|d| d.file_name() == Some(OsStr::new("target")))
        {
            ignore_dirs.push(target.to_path_buf());
        }
    }
    ignore_dirs.retain(|dir| !watch.iter().any(|w| w.starts_with(dir)));
    // target/ holds target/debug: one is enough.
    let all = ignore_dirs.clone();
    ignore_dirs.retain(|dir| !all.iter().any(|d| d != dir && dir.starts_with(d)));
    let restart_after_every_build = [Some(program), Some(binary)]
        .into_iter()
        .flatten()
        .filter_map(Path::file_name)
        .any(|name| program::wrapper_kind(name).is_some());
    BuildSettings {
        program: PathBuf::from(argv0),
        ignore_files,
        ignore_dirs,
        restart_after_every_build,
        cwd: cwd.to_path_buf(),
    }
}

/// The regular files hotrun's stdout and stderr write to, if they are redirected to
/// files (Linux; elsewhere none are known).
fn own_output_files() -> Vec<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        [1, 2]
            .into_iter()
            .filter_map(|fd| fs::read_link(format!("/proc/self/fd/{fd}")).ok())
            .filter(|path| path.is_file())
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

/// Shell words that are not programs on `PATH`: with one of these first, the build
/// command is not checked before it runs.
const SHELL_WORDS: &[&str] = &[
    "!", ".", ":", "[", "[[", "{", "alias", "builtin", "case", "cd", "command", "declare", "do",
    "done", "echo", "elif", "else", "esac", "eval", "exec", "exit", "export", "false", "fi", "for",
    "function", "if", "in", "let", "local", "printf", "pwd", "read", "return", "select", "set",
    "shift", "source", "test", "then", "time", "trap", "true", "type", "typeset", "ulimit",
    "umask", "unset", "until", "wait", "while",
];

/// Checks `--build`: not empty, and its first word (after `NAME=value` assignments) is a
/// program that exists — unless it is a shell word or contains shell syntax, which only
/// the shell can judge.
fn check_build(command: &OsStr) -> Result<(), Failure> {
    let shown = command.to_string_lossy();
    let bad = |why: String| Failure::usage(format!("--build '{shown}': {why}"));
    let mut words = command
        .as_bytes()
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let Some(first) = words.find(|w| !is_assignment(w)) else {
        return Err(if command.as_bytes().trim_ascii().is_empty() {
            Failure::usage("--build: the build command is empty")
        } else {
            bad("no command after the variable assignments".into())
        });
    };
    let Ok(first) = std::str::from_utf8(first) else {
        return Ok(());
    };
    let syntax = |c: char| "'\"`$\\(){}*?~<>|;&#".contains(c);
    if SHELL_WORDS.contains(&first) || first.contains(syntax) {
        return Ok(());
    }
    if first.contains('/') {
        let path = absolute(Path::new(first));
        return match fs::metadata(&path) {
            Err(err) => Err(bad(format!("{first}: {}", io_reason(&err)))),
            Ok(meta) if meta.is_dir() => Err(bad(format!("{first}: it is a directory"))),
            Ok(_) if nix::unistd::access(&path, nix::unistd::AccessFlags::X_OK).is_err() => {
                Err(bad(format!("{first}: not executable (try chmod +x)")))
            }
            Ok(_) => Ok(()),
        };
    }
    match resolve_program(OsStr::new(first)) {
        Ok(_) => Ok(()),
        Err(failure) if failure.code == exit::NOT_FOUND => {
            Err(bad(format!("{first}: command not found")))
        }
        // Found, but hotrun cannot run it itself (a script for another shell, say): the
        // shell may still; let it tell.
        Err(_) => Ok(()),
    }
}

/// `--build go build -o srv . -- ./srv`: clap takes `go` as the build and the rest as the
/// command, whose own `--` gives the mistake away (a command to restart seldom has one
/// when it is built by `--build`). A build of several words was quoted: then the `--` is
/// the command's own.
fn check_unquoted_build(build: &OsStr, command: &[OsString]) -> Result<(), Failure> {
    if build.as_bytes().trim_ascii().contains(&b' ') {
        return Ok(());
    }
    let Some(split) = command.iter().position(|a| a == "--") else {
        return Ok(());
    };
    let words = |args: &[OsString]| {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let whole = std::iter::once(build.to_os_string())
        .chain(command[..split].iter().cloned())
        .collect::<Vec<_>>();
    let rest = &command[split + 1..];
    let then = if rest.is_empty() {
        " -- COMMAND".to_string()
    } else {
        format!(" -- {}", words(rest))
    };
    Err(Failure::usage(format!(
        "--build takes one argument: quote the whole build command, as in --build '{}'{then}",
        words(&whole)
    )))
}

/// `NAME=value` (a shell variable assignment before a command).
fn is_assignment(word: &[u8]) -> bool {
    let Some(eq) = word.iter().position(|&b| b == b'=') else {
        return false;
    };
    let name = &word[..eq];
    name.first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

fn check_executable(path: &Path, name: &OsStr) -> Result<PathBuf, Failure> {
    let shown = name.to_string_lossy();
    let meta = fs::metadata(path).map_err(|err| {
        let code = if err.kind() == std::io::ErrorKind::NotFound {
            exit::NOT_FOUND
        } else {
            exit::CANNOT_EXECUTE
        };
        Failure::new(code, format!("cannot run {shown}: {}", io_reason(&err)))
    })?;
    if meta.is_dir() {
        return Err(Failure::new(
            exit::CANNOT_EXECUTE,
            format!("cannot run {shown}: it is a directory"),
        ));
    }
    let executable = meta.permissions().mode() & 0o111 != 0
        && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok();
    if !executable {
        return Err(Failure::new(
            exit::CANNOT_EXECUTE,
            format!("cannot run {shown}: permission denied (not executable; try chmod +x)"),
        ));
    }
    Ok(path.to_path_buf())
}

/// The found program must be something the system can run: a junk file would otherwise
/// go through `sh` (execvp's ENOEXEC fallback), and a script whose interpreter is missing
/// would fail with a bare ENOENT.
fn check_runnable(path: PathBuf, name: &OsStr) -> Result<PathBuf, Failure> {
    match program::check(&path) {
        Ok(()) => Ok(path),
        Err(why) => Err(Failure::new(
            exit::CANNOT_EXECUTE,
            format!("cannot run {}: {why}", name.to_string_lossy()),
        )),
    }
}

/// hotrun's own executable (for the exec trampoline); on Linux the /proc link keeps
/// working even if the file is replaced while hotrun runs.
fn self_exe() -> PathBuf {
    if cfg!(target_os = "linux") {
        PathBuf::from("/proc/self/exe")
    } else {
        env::current_exe().unwrap_or_else(|_| PathBuf::from("hotrun"))
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn io_reason(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => err.to_string(),
    }
}

/// The longest duration any option takes.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// `500ms`, `2s`, `1m30s`, or `0`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.starts_with('-') {
        return Err("durations cannot be negative".into());
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("add a unit, as in {text}s or {text}ms"));
    }
    let d = humantime::parse_duration(text)
        .map_err(|err| format!("{err} (expected a duration like 500ms, 2s or 1m)"))?;
    if d > MAX_DURATION {
        return Err("too long (at most 24h)".into());
    }
    Ok(d)
}

/// `--poll`: a duration that is not zero.
fn parse_poll(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(1) {
        return Err("the interval must be at least 1ms (try 500ms or 2s)".into());
    }
    Ok(d)
}

/// `--ignore`: a glob in gitignore syntax.
fn parse_ignore(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("an empty glob ignores nothing".into());
    }
    crate::ignores::check_glob(text)
}

/// `notify`, `delay:DURATION` or `exec`.
fn parse_ready(text: &str) -> Result<Readiness, String> {
    match text.split_once(':') {
        None if text == "notify" => Ok(Readiness::Notify),
        None if text == "exec" => Ok(Readiness::Exec),
        Some(("delay", d)) => parse_duration(d).map(Readiness::Delay),
        Some(("http" | "https" | "tcp", _)) => Err(
            "probes are not supported: through a socket hotrun holds, the old generation may \
             answer (use notify or delay:DURATION)"
                .into(),
        ),
        _ => Err("expected notify, delay:DURATION or exec".into()),
    }
}

/// `TERM`, `SIGTERM`, `term` or `15`.
fn parse_signal(text: &str) -> Result<Signal, String> {
    let bad = || "unknown signal (expected a name like TERM or INT, or a number)".to_string();
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_valid() {
        Args::command().debug_assert();
    }

    #[test]
    fn an_unquoted_build_command_is_told_how_to_quote_it() {
        let said = |line: &str| match parse_from(line.split(' ')) {
            Err(failure) => (failure.code, failure.message),
            Ok(_) => panic!("accepted: {line}"),
        };
        let expected = (
            exit::USAGE,
            "--build takes one argument: quote the whole build command, as in --build 'go build \
             -o srv .' -- ./srv 18094"
                .to_string(),
        );
        assert_eq!(
            said("hotrun --build go build -o srv . -- ./srv 18094"),
            expected
        );
        assert_eq!(
            said("hotrun --build go -- build -o srv . -- ./srv 18094"),
            expected
        );
        // Quoted: the command's own `--` is left alone.
        let quoted = ["hotrun", "--build", "true now", "--", "./srv", "--", "x"];
        assert!(
            !matches!(parse_from(quoted), Err(f) if f.message.contains("takes one argument")),
            "the quoted build was taken for an unquoted one"
        );
    }

    /// Every `pub(crate) const NAME: i32 = N;` of exit.rs, read from its source so that a
    /// new code cannot be left out of the check.
    fn exit_codes() -> Vec<(String, i32)> {
        let source = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/exit.rs"))
            .expect("read src/exit.rs");
        let codes: Vec<(String, i32)> = source
            .lines()
            .filter_map(|line| line.strip_prefix("pub(crate) const "))
            .filter_map(|rest| rest.split_once(": i32 = "))
            .map(|(name, value)| {
                let value = value.trim_end_matches(';').parse().expect("a number");
                (name.to_string(), value)
            })
            .collect();
        assert!(codes.len() >= 5, "{codes:?}");
        codes
    }

    #[test]
    fn help_and_readme_list_every_exit_code() {
        let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("read README.md");
        let table = readme
            .split("\n## Exit codes\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has an Exit codes section");
        for (name, code) in exit_codes() {
            assert!(
                EXIT_CODES
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(&code.to_string())),
                "--help does not list {name} ({code}):\n{EXIT_CODES}"
            );
            assert!(
                table.contains(&format!("\n| {code} |")),
                "the README's exit codes table does not list {name} ({code})"
            );
        }
        assert!(DRILL_HELP.contains(&format!("{} when one failed", exit::DRILL_FAILED)));
        assert_eq!(
            exit_codes().iter().find(|(name, _)| name == "NOT_FOUND"),
            Some(&("NOT_FOUND".to_string(), exit::NOT_FOUND))
        );
    }

    #[test]
    fn the_readme_options_table_lists_every_option_with_its_default() {
        let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("read README.md");
        // A row's cells (`\\|` is a `|` inside a cell).
        let rows: Vec<Vec<String>> = readme
            .lines()
            .filter(|l| l.starts_with("| `-"))
            .map(|l| {
                l.replace("\\|", "\u{1}")
                    .split('|')
                    .map(|cell| cell.trim().replace('\u{1}', "|"))
                    .collect()
            })
            .collect();
        for arg in Args::command().get_arguments() {
            let Some(long) = arg.get_long() else {
                continue;
            };
            let flag = format!("--{long}");
            let row = rows
                .iter()
                .find(|cells| {
                    cells[1]
                        .split(|c: char| c == '`' || c == ',' || c.is_whitespace())
                        .any(|word| word == flag)
                })
                .unwrap_or_else(|| panic!("the README's options table has no row for {flag}"));
            let default = row[2].as_str();
            match arg.get_default_values() {
                [] => {}
                [value] => assert_eq!(
                    default,
                    format!("`{}`", value.to_string_lossy()).as_str(),
                    "the README's default of {flag}"
                ),
                values => panic!("{flag}: several defaults {values:?}"),
            }
        }
    }

    #[test]
    fn help_states_the_supervisors_limits() {
        use crate::format::whole_seconds;
        use crate::supervisor::{BACKOFF_RESET, DRAIN_MAX};
        let command = Args::command();
        let help = |long: &str| {
            let arg = command
                .get_arguments()
                .find(|a| a.get_long() == Some(long))
                .unwrap_or_else(|| panic!("no --{long}"));
            arg.get_long_help()
                .or(arg.get_help())
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        let drain = format!("up to {}", whole_seconds(DRAIN_MAX));
        assert!(help("drain").contains(&drain), "{}", help("drain"));
        let on_exit = format!("within {}", whole_seconds(BACKOFF_RESET));
        assert!(help("on-exit").contains(&on_exit), "{}", help("on-exit"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(
            parse_duration("-1s")
                .expect_err("must fail")
                .contains("negative")
        );
        assert!(
            parse_duration("5")
                .expect_err("must fail")
                .contains("add a unit")
        );
        assert!(parse_duration("fast").is_err());
        assert!(
            parse_duration("2d")
                .expect_err("must fail")
                .contains("at most")
        );
    }

    #[test]
    fn readiness() {
        assert_eq!(parse_ready("notify"), Ok(Readiness::Notify));
        assert_eq!(
            parse_ready("delay:200ms"),
            Ok(Readiness::Delay(Duration::from_millis(200)))
        );
        assert!(parse_ready("http://127.0.0.1:8080/health").is_err());
        assert!(parse_ready("soon").is_err());
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigint"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("999").is_err());
    }

    #[test]
    fn command_resolution() {
        let sh = resolve_program(OsStr::new("sh")).map_err(|f| f.message);
        assert!(sh.is_ok_and(|p| p.is_absolute()));
        let missing = resolve_program(OsStr::new("no-such-command-hotrun")).map_err(|f| f.code);
        assert_eq!(missing, Err(exit::NOT_FOUND));
        let dir = resolve_program(OsStr::new("/")).map_err(|f| f.code);
        assert_eq!(dir, Err(exit::CANNOT_EXECUTE));
    }

    #[test]
    fn build_commands_are_checked_before_anything_runs() {
        let message = |cmd: &str| check_build(OsStr::new(cmd)).map_err(|f| (f.code, f.message));
        for ok in [
            "sh -c 'exit 0'",
            "FOO=1 BAR=two sh -c 'exit 0'",
            "  sh -c 'exit 0'  ",
            "if true; then make; fi",
            "$CARGO build",
            "cd server && no-such-tool-hotrun build",
            "exec no-such-tool-hotrun",
            "\"$HOME\"/bin/build",
        ] {
            assert_eq!(message(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("", "--build: the build command is empty"),
            ("  \t ", "--build: the build command is empty"),
            (
                "FOO=1",
                "--build 'FOO=1': no command after the variable assignments",
            ),
            (
                "no-such-tool-hotrun build",
                "--build 'no-such-tool-hotrun build': no-such-tool-hotrun: command not found",
            ),
            (
                "CC=clang no-such-tool-hotrun",
                "--build 'CC=clang no-such-tool-hotrun': no-such-tool-hotrun: command not found",
            ),
            (
                "./no-such-build-script.sh --fast",
                "--build './no-such-build-script.sh --fast': ./no-such-build-script.sh: no such \
                 file or directory",
            ),
            ("/ x", "--build '/ x': /: it is a directory"),
        ] {
            assert_eq!(
                message(bad),
                Err((exit::USAGE, says.to_string())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn build_without_watching_the_binary_is_refused() {
        let failure = parse_from([
            "hotrun",
            "--build",
            "sh -c 'exit 0'",
            "--no-watch-binary",
            "--",
            "sh",
        ])
        .map(|_| ())
        .map_err(|f| (f.code, f.message));
        let (code, message) = failure.expect_err("must be refused");
        assert_eq!(code, exit::USAGE);
        assert!(message.contains("drop --no-watch-binary"), "{message}");
    }

    #[test]
    fn a_command_still_to_be_built_is_accepted_with_build_only() {
        let missing = "./target/no-such-dir-hotrun/server";
        let without = parse_from(["hotrun", "--", missing]).map_err(|f| f.code);
        assert_eq!(without.map(|_| ()), Err(exit::NOT_FOUND));
        let with = parse_from(["hotrun", "--build", "sh -c 'exit 0'", "--", missing]);
        let config = with
            .map_err(|f| f.message)
            .unwrap_or_else(|m| panic!("{m}"));
        let build = config.build.expect("a build");
        assert!(
            build.watching_cwd.is_some(),
            "the current directory is watched"
        );
        assert_eq!(config.watch.len(), 1);
    }

    #[test]
    fn what_never_runs_the_build() {
        let p = Path::new("/p");
        let settings = |binary: &str, watch: &[&str], events: Option<&str>| {
            let watch: Vec<PathBuf> = watch.iter().map(PathBuf::from).collect();
            build_settings_for(
                OsStr::new(binary),
                Path::new(binary),
                Path::new(binary),
                &watch,
                events.map(Path::new),
                p,
            )
        };
        // cargo: the profile directory and the target directory around it.
        let cargo = settings("/p/target/debug/server", &["/p"], Some("/p/ev.jsonl"));
        assert_eq!(cargo.ignore_dirs, vec![p.join("target")]);
        assert!(cargo.ignore_files.contains(&p.join("target/debug/server")));
        assert!(cargo.ignore_files.contains(&p.join("ev.jsonl")));
        assert!(!cargo.restart_after_every_build);
        let cross = settings(
            "/p/target/x86_64-unknown-linux-gnu/release/server",
            &["/p"],
            None,
        );
        assert_eq!(cross.ignore_dirs, vec![p.join("target")]);
        // Watching target/ itself (why not): then only the profile directory is left out.
        let odd = settings("/p/target/debug/server", &["/p/target"], None);
        assert_eq!(odd.ignore_dirs, vec![p.join("target/debug")]);
        // `go build -o server` in the watched directory: the executable alone.
        let go = settings("/p/server", &["/p"], None);
        assert!(go.ignore_dirs.is_empty(), "{:?}", go.ignore_dirs);
        assert!(go.triggers(&p.join("main.go")));
        assert!(!go.triggers(&p.join("server")));
        assert!(!go.triggers(&p.join("server-go-tmp-umask")));
        let bin = settings("/p/bin/server", &["/p/src"], None);
        assert_eq!(bin.ignore_dirs, vec![p.join("bin")]);
        // A wrapper that no build changes.
        let python = settings("/usr/bin/python3", &["/p"], None);
        assert!(python.restart_after_every_build);
    }

    #[test]
    fn trailing_command_keeps_its_flags() {
        let config = parse_from(["hotrun", "--grace", "1s", "--", "sh", "-c", "exit 0"])
            .map_err(|f| f.message);
        let config = config.unwrap_or_else(|m| panic!("{m}"));
        assert_eq!(config.settings.grace, Duration::from_secs(1));
        assert_eq!(
            config.spawner.args,
            vec![OsString::from("-c"), OsString::from("exit 0")]
        );
    }
}
