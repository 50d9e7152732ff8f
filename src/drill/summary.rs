//! The drill's summary: one typed value, rendered as the human table and as JSON (the
//! same facts in both), and where each goes (`--summary-json PATH|-`; the table goes to
//! stderr whenever stdout carries JSON).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

/// Everything the drill found.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    pub(crate) passed: bool,
    /// How many restarts were asked for (the rows are those done).
    #[serde(skip)]
    pub(crate) asked: usize,
    pub(crate) restarts: Vec<RestartRow>,
    /// How the final stop went, in the words of the status line.
    pub(crate) final_stop: Option<String>,
    /// `None` without `--probe`.
    pub(crate) probes: Option<ProbeTotals>,
    /// Every check that failed, one sentence each.
    pub(crate) failures: Vec<String>,
}

/// One restart.
#[derive(Debug, Serialize)]
pub(crate) struct RestartRow {
    pub(crate) restart: usize,
    pub(crate) old_gen: Option<u64>,
    pub(crate) new_gen: Option<u64>,
    pub(crate) ready_ms: Option<f64>,
    pub(crate) stop_ms: Option<f64>,
    /// From the restart until the first probe the server answered once the restart was
    /// over (`None` without `--probe`, or when it never answered).
    pub(crate) answered_ms: Option<f64>,
    /// Probes sent from the restart until then.
    pub(crate) probes: u64,
    pub(crate) failed_probes: u64,
    pub(crate) ok: bool,
    pub(crate) problems: Vec<String>,
}

/// Every probe of the drill.
#[derive(Debug, Serialize)]
pub(crate) struct ProbeTotals {
    /// Every probe sent until the final stop was asked for, those before the first
    /// answer included.
    pub(crate) sent: u64,
    /// Of those from the first answer on (the ones judged), how many failed.
    pub(crate) failed: u64,
    /// Of `sent`, how many went before the server first answered: every one of them
    /// failed (an answer would have been the first) while it started; not judged, and
    /// not in `failed`.
    pub(crate) before_first_answer: u64,
}

impl ProbeTotals {
    /// `95 sent, 0 failed`; `128 sent, 33 before the server first answered (…); of the
    /// 95 after, 0 failed`; `33 sent, all before the server first answered (all failed)`.
    fn text(&self) -> String {
        let before = self.before_first_answer;
        let after = self.sent.saturating_sub(before);
        if before == 0 {
            format!("{} sent, {} failed", self.sent, self.failed)
        } else if after == 0 {
            format!(
                "{} sent, all before the server first answered (all failed)",
                self.sent
            )
        } else {
            format!(
                "{} sent, {before} before the server first answered (failed while it started: \
                 not judged); of the {after} after, {} failed",
                self.sent, self.failed
            )
        }
    }
}

/// `1 probe`, `2 probes`.
pub(crate) fn count(n: impl Into<u64>, word: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

impl Summary {
    /// The human table.
    pub(crate) fn text(&self) -> String {
        let probing = self.probes.is_some();
        let mut text = String::new();
        let _ = writeln!(
            text,
            "hotrun drill: {}",
            count(u64::try_from(self.asked).unwrap_or(u64::MAX), "restart")
        );
        let _ = writeln!(
            text,
            "{:>7} {:>5} {:>5} {:>10} {:>9} {:>11} {:>14}  result",
            "restart", "old", "new", "ready ms", "stop ms", "answered ms", "failed probes"
        );
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let generation = |g: Option<u64>| g.map_or("-".to_string(), |g| g.to_string());
        for row in &self.restarts {
            let _ = writeln!(
                text,
                "{:>7} {:>5} {:>5} {:>10} {:>9} {:>11} {:>14}  {}",
                row.restart,
                generation(row.old_gen),
                generation(row.new_gen),
                opt(row.ready_ms),
                opt(row.stop_ms),
                opt(row.answered_ms),
                if probing {
                    row.failed_probes.to_string()
                } else {
                    "-".into()
                },
                if row.problems.is_empty() {
                    "ok".to_string()
                } else {
                    row.problems.join("; ")
                }
            );
        }
        if let Some(verdict) = &self.final_stop {
            let _ = writeln!(text, "final stop: {verdict}");
        }
        if let Some(p) = &self.probes {
            let _ = writeln!(text, "probes: {}", p.text());
        }
        if self.passed {
            let _ = writeln!(text, "drill passed");
        } else {
            let _ = writeln!(text, "drill FAILED:");
            for p in &self.failures {
                let _ = writeln!(text, "  - {p}");
            }
        }
        text
    }

    /// The JSON object, on one line.
    pub(crate) fn json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Prints the table (to stderr when `stdout_is_json`, else stdout) and writes the JSON
    /// to `json` (`-`: stdout, as one line).
    pub(crate) fn publish(&self, stdout_is_json: bool, json: Option<&Path>) -> Result<(), String> {
        let text = self.text();
        // A closed terminal must not turn a passed drill into a failed one.
        let _ = if stdout_is_json {
            io::stderr().write_all(text.as_bytes())
        } else {
            io::stdout().write_all(text.as_bytes())
        };
        let Some(path) = json else {
            return Ok(());
        };
        let fail = |e: &dyn std::fmt::Display| {
            format!("cannot write --summary-json {}: {e}", path.display())
        };
        let mut body = self.json().map_err(|e| fail(&e))?;
        body.push('\n');
        if path == Path::new("-") {
            let mut out = io::stdout().lock();
            out.write_all(body.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| fail(&e))
        } else {
            std::fs::write(path, body).map_err(|e| fail(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(passed: bool) -> Summary {
        Summary {
            passed,
            asked: 1,
            restarts: vec![RestartRow {
                restart: 1,
                old_gen: Some(1),
                new_gen: Some(2),
                ready_ms: Some(0.5),
                stop_ms: Some(1.25),
                answered_ms: Some(12.0),
                probes: 7,
                failed_probes: u64::from(!passed),
                ok: passed,
                problems: if passed {
                    Vec::new()
                } else {
                    vec!["1 of 7 probes failed (1 connection refused)".into()]
                },
            }],
            final_stop: Some("gen 2 stopped cleanly in 1.0 ms (exited with 0)".into()),
            probes: Some(ProbeTotals {
                sent: 9,
                failed: u64::from(!passed),
                before_first_answer: 1,
            }),
            failures: if passed {
                Vec::new()
            } else {
                vec!["restart 1: 1 of 7 probes failed (1 connection refused)".into()]
            },
        }
    }

    #[test]
    fn the_table_and_the_json_tell_the_same_facts() {
        let failed = summary(false);
        let text = failed.text();
        assert!(text.starts_with("hotrun drill: 1 restart\n"), "{text}");
        assert!(text.contains("      1     1     2        0.5       1.2        12.0              1  1 of 7 probes failed"), "{text}");
        assert!(text.contains("final stop: gen 2 stopped cleanly"), "{text}");
        assert!(
            text.contains(
                "probes: 9 sent, 1 before the server first answered (failed while it started: \
                 not judged); of the 8 after, 1 failed\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "drill FAILED:\n  - restart 1: 1 of 7 probes failed (1 connection refused)\n"
            ),
            "{text}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&failed.json().expect("serializes")).expect("parses");
        assert_eq!(json["passed"], false);
        assert_eq!(json["restarts"][0]["failed_probes"], 1);
        assert_eq!(json["restarts"][0]["answered_ms"], 12.0);
        assert_eq!(json["probes"]["before_first_answer"], 1);
        assert_eq!(json["failures"].as_array().map(Vec::len), Some(1));
        assert!(json.get("asked").is_none());
        assert!(summary(true).text().ends_with("drill passed\n"));
    }

    #[test]
    fn the_probe_line_counts_every_probe_sent_once() {
        let line = |sent, failed, before_first_answer| {
            ProbeTotals {
                sent,
                failed,
                before_first_answer,
            }
            .text()
        };
        assert_eq!(line(95, 0, 0), "95 sent, 0 failed");
        // A server that never answered.
        assert_eq!(
            line(33, 0, 33),
            "33 sent, all before the server first answered (all failed)"
        );
        assert_eq!(
            line(128, 2, 33),
            "128 sent, 33 before the server first answered (failed while it started: not \
             judged); of the 95 after, 2 failed"
        );
    }

    #[test]
    fn plurals() {
        assert_eq!(count(1u64, "probe"), "1 probe");
        assert_eq!(count(0u64, "probe"), "0 probes");
        assert_eq!(count(2u64, "restart"), "2 restarts");
    }
}
