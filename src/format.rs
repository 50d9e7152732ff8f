//! How hotrun writes values, in one place each: a duration for people (status lines, the
//! drill's sentences) and for machines (`--events`, the drill's JSON), a signal's name,
//! and a path as the user would write it. Status lines, events and the drill all go
//! through here, so they write the same value the same way.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

/// A duration for people: `0.4 ms`, `14 ms`, `2.10 s`.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// A duration for machines: milliseconds as a number, to the microsecond (`2.1`, `14.0`,
/// `2100.0`). Every `_ms` field (`--events`, the drill's JSON) is one.
pub(crate) fn json_millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A long duration for people, in whole seconds: `40 s`.
pub(crate) fn whole_seconds(d: Duration) -> String {
    format!("{:.0} s", d.as_secs_f64())
}

/// The name of signal `number`, as `waitid` reports it: `SIGTERM`, or `signal 34` for one
/// without a name (a real-time signal). (A typed `Signal` is named by its `as_str`, which
/// this uses too.)
pub(crate) fn signal_name(number: i32) -> Cow<'static, str> {
    match Signal::try_from(number) {
        Ok(signal) => Cow::Borrowed(signal.as_str()),
        Err(_) => Cow::Owned(format!("signal {number}")),
    }
}

/// `path` as the user would write it: relative to `cwd` (the current directory) when it
/// lies below it, else as it is.
pub(crate) fn shown<'a>(path: &'a Path, cwd: &Path) -> &'a Path {
    match path.strip_prefix(cwd) {
        Ok(rest) if !rest.as_os_str().is_empty() => rest,
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_micros(2100)), "2.1 ms");
        assert_eq!(human_duration(Duration::from_millis(14)), "14 ms");
        assert_eq!(human_duration(Duration::from_millis(2100)), "2.10 s");
        assert_eq!(json_millis(Duration::from_nanos(2_100_400)), 2.1);
        assert_eq!(json_millis(Duration::from_millis(2100)), 2100.0);
        assert_eq!(whole_seconds(Duration::from_millis(40_400)), "40 s");
    }

    #[test]
    fn signals_are_named_and_nameless_ones_numbered() {
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(34), "signal 34");
    }

    #[test]
    fn paths_below_the_current_directory_are_relative() {
        let cwd = Path::new("/p");
        assert_eq!(
            shown(Path::new("/p/src/main.rs"), cwd),
            Path::new("src/main.rs")
        );
        assert_eq!(shown(Path::new("/p"), cwd), Path::new("/p"));
        assert_eq!(shown(Path::new("/q/x"), cwd), Path::new("/q/x"));
        assert_eq!(shown(Path::new("/pq/x"), cwd), Path::new("/pq/x"));
    }
}
