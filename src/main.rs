//! hotrun: runs a command and restarts it when its binary changes or on SIGHUP, starting
//! the new generation before stopping the old one. `main` only dispatches and maps the
//! result to an exit code.

mod app;
mod cli;
mod drill;
mod event;
mod event_log;
mod exit;
mod file_id;
mod footprint;
mod format;
mod guardian;
mod ignores;
mod input;
mod orphans;
mod poll;
mod process;
mod program;
mod readiness;
mod report;
mod signals;
mod sockets;
mod supervisor;
mod takeover;
mod watcher;

use std::ffi::OsStr;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mode = std::env::args_os().nth(1);
    if mode.as_deref() == Some(OsStr::new(process::TRAMPOLINE_ARG)) {
        let args: Vec<_> = std::env::args_os().skip(2).collect();
        return process::trampoline(&args);
    }
    let config = match cli::parse() {
        Ok(config) => config,
        Err(failure) => return failure.report(),
    };
    match app::run(config) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::fs;
    use std::path::{Path, PathBuf};

    /// Every source file below `src/`.
    fn sources() -> Vec<PathBuf> {
        let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        let mut files = Vec::new();
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir).expect("read src") {
                let path = entry.expect("an entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        files
    }

    /// The items of a `{…}` group (`group` starts after its `{`), nested groups left whole.
    fn top_level_items(group: &str) -> Vec<&str> {
        let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    items.push(group[start..i].trim());
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(group[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        items
    }

    /// Which of hotrun's top-level modules each one uses (`crate::NAME`), read from the
    /// sources; unit tests are left out.
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for path in sources() {
            if path.to_string_lossy().ends_with("tests.rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).expect("below src");
            let module = rel
                .components()
                .next()
                .map(|c| {
                    c.as_os_str()
                        .to_string_lossy()
                        .trim_end_matches(".rs")
                        .to_string()
                })
                .expect("a module");
            let text = fs::read_to_string(&path).expect("read a source file");
            let code = text
                .split("#[cfg(test)]\nmod tests")
                .next()
                .unwrap_or_default();
            let uses = graph.entry(module.clone()).or_default();
            // Comments out; a `use crate::{…}` group may span lines.
            let code: String = code
                .lines()
                .map(|l| l.split("//").next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n");
            let mut rest = code.as_str();
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let names = match rest.strip_prefix('{') {
                    Some(group) => top_level_items(group),
                    None => vec![rest],
                };
                for name in names {
                    let name: String = name
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != module {
                        uses.insert(name);
                    }
                }
            }
        }
        graph
    }

    #[test]
    fn no_module_imports_one_that_imports_it() {
        let graph = imports();
        // Depth-first from every module; a module met again on the current path is a cycle.
        fn visit<'a>(
            module: &'a str,
            graph: &'a BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) {
            if let Some(at) = path.iter().position(|m| *m == module) {
                panic!("import cycle: {} -> {module}", path[at..].join(" -> "));
            }
            if !done.insert(module) {
                return;
            }
            path.push(module);
            for next in graph.get(module).into_iter().flatten() {
                visit(next, graph, path, done);
            }
            path.pop();
        }
        let mut done = BTreeSet::new();
        for module in graph.keys() {
            visit(module, &graph, &mut Vec::new(), &mut done);
        }
    }

    #[test]
    fn every_module_opens_with_what_it_owns() {
        for path in sources() {
            let text = fs::read_to_string(&path).expect("read a source file");
            assert!(
                text.starts_with("//! "),
                "{} opens without a //!",
                path.display()
            );
        }
    }

    #[test]
    fn the_readme_design_notes_name_every_module() {
        let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("read README.md");
        let notes = readme
            .split("\n## Design notes\n")
            .nth(1)
            .expect("README has Design notes");
        for module in imports().keys() {
            let file = format!("| `src/{module}.rs` |");
            let dir = format!("| `src/{module}/` |");
            assert!(
                notes.contains(&file) || notes.contains(&dir),
                "the README's design notes do not name src/{module}"
            );
        }
    }

    #[test]
    fn the_core_imports_nothing_from_the_edges() {
        let graph = imports();
        let core = ["supervisor", "event", "file_id", "format"];
        for module in core {
            let above: Vec<&String> = graph[module]
                .iter()
                .filter(|m| !core.contains(&m.as_str()))
                .collect();
            assert!(above.is_empty(), "{module} imports {above:?}");
        }
        // The reading works: plain paths and the items of a `use crate::{…}` group.
        for used in ["supervisor", "footprint", "watcher"] {
            assert!(graph["app"].contains(used), "app uses {used}: {graph:?}");
        }
        assert!(!graph["app"].contains("main"), "{graph:?}");
    }
}
