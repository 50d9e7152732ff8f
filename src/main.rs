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
    use std::path::Path;

    /// Which of hotrun's top-level modules each one uses (`crate::NAME`), read from the
    /// sources; unit tests are left out.
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.clone()];
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                let entries = fs::read_dir(&path).expect("read src");
                files.extend(entries.map(|e| e.expect("entry").path()));
                continue;
            }
            let name = path.to_string_lossy();
            if !name.ends_with(".rs") || name.ends_with("tests.rs") {
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
            for line in code
                .lines()
                .map(|l| l.split("//").next().unwrap_or_default())
            {
                let mut rest = line;
                while let Some(at) = rest.find("crate::") {
                    rest = &rest[at + "crate::".len()..];
                    let names: Vec<&str> = match rest.strip_prefix('{') {
                        Some(group) => group.split([',', '}']).map(str::trim).collect(),
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
        assert!(graph["app"].contains("supervisor"), "the reading works");
    }
}
