//! Which changes of the watched paths count: the `--watch` trees ([`Tree`]: its files,
//! and its directories minus what the ignore rules skip), and the name a change is given
//! (as the user would write it). The watcher and the poller both ask here.
//!
//! A path is skipped when any of these says so, checked in this order:
//!
//! 1. **Built in, always**: version-control internals (`.git/` …), editor and tool
//!    temporary files (vim, emacs, `sed -i`, JetBrains, GIO, `*.tmp`), Python's bytecode
//!    (`__pycache__/`, `*.py[co]`) and hotrun's own `--events` file. The list stays close to
//!    watchexec's defaults (see [`BUILT_IN`]).
//! 2. **`--ignore GLOB`**, in gitignore syntax, relative globs anchored at the current
//!    directory (as watchexec's `--ignore`).
//! 3. **Ignore files**, with git's precedence (the deepest directory wins; `.ignore` over
//!    `.gitignore`, as ripgrep does): every `.ignore` and `.gitignore` inside the watched
//!    tree and in its ancestors up to the repository root (the nearest directory holding
//!    `.git`), then `.git/info/exclude`, then git's global excludes file. Outside a
//!    repository only the files inside the watched tree count.
//!
//! Paths are matched top-down from the watched directory, as git walks a tree: once a
//! directory is ignored, nothing below it can be re-included. The watched directory
//! itself and its ancestors are never matched: a directory named with `--watch` is
//! watched even if a `.gitignore` above it lists it.
//!
//! The matching itself is the `ignore` crate's (ripgrep's, and watchexec's) gitignore
//! matcher. Nothing here does I/O after [`Rules::load`] except [`Rules::reload_file`].

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::format;

/// Skipped under every watched directory, whatever the ignore files say (gitignore
/// syntax; a pattern without a `/` matches a name at any depth).
pub(crate) const BUILT_IN: &[&str] = &[
    // Version-control internals.
    ".git",
    ".hg/",
    ".svn/",
    ".jj/",
    ".bzr/",
    "_darcs/",
    // vim: swap files, the swap-exists probe, backups, the "can I write here" probe file.
    ".*.sw?",
    ".*.sw?x",
    "*.swp",
    "*.swx",
    "*~",
    "4913",
    // emacs: autosaves and lock files.
    "\\#*#",
    ".#*",
    // kate's swap files.
    ".*.kate-swp",
    // `sed -i` writes sedXXXXXX (six letters or digits) next to the file, then renames it.
    "sed[a-zA-Z0-9][a-zA-Z0-9][a-zA-Z0-9][a-zA-Z0-9][a-zA-Z0-9][a-zA-Z0-9]",
    // JetBrains IDEs' safe write.
    "*___jb_tmp___",
    "*___jb_old___",
    // GIO (GNOME editors) atomic replacement.
    ".goutputstream-*",
    // Generic temporary files.
    "*.tmp",
    // Python: imported modules get compiled into these.
    "__pycache__/",
    "*.py[co]",
    // macOS Finder.
    ".DS_Store",
];

/// The names of the ignore files read in every directory, lowest precedence first.
const IGNORE_FILES: [&str; 2] = [".gitignore", ".ignore"];

/// What to ignore besides the ignore files.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extra {
    /// `--ignore` globs (checked when parsed).
    pub(crate) globs: Vec<String>,
    /// Where relative `--ignore` globs are anchored.
    pub(crate) cwd: PathBuf,
    /// Exact paths (hotrun's own `--events` file, the command's watched executable).
    pub(crate) paths: Vec<PathBuf>,
}

/// The compiled rules for a set of watched directories.
#[derive(Debug)]
pub(crate) struct Rules {
    built_in: Gitignore,
    /// `--ignore` globs anchored at the current directory, and those given as absolute
    /// paths (anchored at `/`).
    relative: Gitignore,
    absolute: Gitignore,
    cwd: PathBuf,
    exact: Vec<PathBuf>,
    /// Each directory's ignore files, in the order of `IGNORE_FILES`.
    dirs: BTreeMap<PathBuf, Vec<Gitignore>>,
    /// `.git/info/exclude` and the global excludes file, per repository root.
    repos: BTreeMap<PathBuf, Vec<Gitignore>>,
    /// The watched directories.
    roots: Vec<PathBuf>,
    /// Problems found while reading ignore files (each said once).
    pub(crate) warnings: Vec<String>,
}

/// Parses one `--ignore` glob; the error says what is wrong with it.
pub(crate) fn check_glob(glob: &str) -> Result<String, String> {
    let mut builder = GitignoreBuilder::new("/");
    builder.allow_unclosed_class(false);
    builder
        .add_line(None, anchorable(glob).1.as_str())
        .map_err(|e| e.to_string())?;
    builder.build().map_err(|e| e.to_string())?;
    Ok(glob.to_string())
}

/// Which matcher a `--ignore` glob belongs to: (absolute, the line to add).
fn anchorable(glob: &str) -> (bool, String) {
    if let Some(rest) = glob.strip_prefix("./") {
        (false, format!("/{rest}"))
    } else if glob.starts_with('/') {
        (true, glob.to_string())
    } else {
        (false, glob.to_string())
    }
}

impl Rules {
    /// No rules: nothing under any directory is watched. (Compiling the built-in globs
    /// costs memory that hotrun without `--watch` directories should not pay.)
    pub(crate) fn none() -> Rules {
        Rules {
            built_in: Gitignore::empty(),
            relative: Gitignore::empty(),
            absolute: Gitignore::empty(),
            cwd: PathBuf::from("/"),
            exact: Vec::new(),
            dirs: BTreeMap::new(),
            repos: BTreeMap::new(),
            roots: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Reads every ignore file that applies to `roots` (absolute, canonical directories).
    pub(crate) fn load(roots: &[PathBuf], extra: &Extra) -> Rules {
        if roots.is_empty() {
            return Rules::none();
        }
        let mut warnings = Vec::new();
        let mut relative = GitignoreBuilder::new(&extra.cwd);
        let mut absolute = GitignoreBuilder::new("/");
        for builder in [&mut relative, &mut absolute] {
            builder.allow_unclosed_class(false);
        }
        for glob in &extra.globs {
            let (is_absolute, line) = anchorable(glob);
            let builder = if is_absolute {
                &mut absolute
            } else {
                &mut relative
            };
            if let Err(err) = builder.add_line(None, &line) {
                warnings.push(format!("--ignore {glob}: {err}"));
            }
        }
        let mut rules = Rules {
            built_in: built_in(),
            relative: build(&relative, &mut warnings),
            absolute: build(&absolute, &mut warnings),
            cwd: extra.cwd.clone(),
            exact: extra.paths.clone(),
            dirs: BTreeMap::new(),
            repos: BTreeMap::new(),
            roots: roots.to_vec(),
            warnings,
        };
        for root in roots {
            if let Some(repo) = repository_root(root) {
                for dir in repo.ancestors_until(root) {
                    rules.read_dir_files(&dir);
                }
                if !rules.repos.contains_key(&repo.root) {
                    let repo_files = repo.exclude_files(&mut rules.warnings);
                    rules.repos.insert(repo.root.clone(), repo_files);
                }
            }
            rules.read_tree(root);
        }
        rules
    }

    /// Whether a change of `path` is to be skipped. `is_dir`: what the path is (or was).
    pub(crate) fn is_ignored(&self, path: &Path, is_dir: bool) -> bool {
        if self.exact.iter().any(|p| p == path) {
            return true;
        }
        let mut under_a_root = false;
        for root in self.roots.iter().filter(|r| path.starts_with(r)) {
            under_a_root = true;
            if !self.ignored_below(root, path, is_dir) {
                return false;
            }
        }
        under_a_root
    }

    /// Checks every path from just below `root` down to `path`, top-down.
    fn ignored_below(&self, root: &Path, path: &Path, is_dir: bool) -> bool {
        let Ok(rest) = path.strip_prefix(root) else {
            return false;
        };
        let parts: Vec<Component<'_>> = rest.components().collect();
        let mut current = root.to_path_buf();
        for (i, part) in parts.iter().enumerate() {
            current.push(part);
            let last = i + 1 == parts.len();
            if self.decide(&current, if last { is_dir } else { true }) {
                return true;
            }
        }
        false
    }

    /// Whether this one path (not its parents) is ignored.
    fn decide(&self, path: &Path, is_dir: bool) -> bool {
        if self.built_in.matched(path, is_dir).is_ignore() {
            return true;
        }
        let cli = if path.starts_with(&self.cwd) {
            self.relative.matched(path, is_dir)
        } else {
            // Outside the current directory only name patterns (`*.log`) can apply.
            match path.file_name() {
                Some(name) => self.relative.matched(Path::new(name), is_dir),
                None => Match::None,
            }
        };
        let cli = match cli {
            Match::None => self.absolute.matched(path, is_dir),
            m => m,
        };
        match cli {
            Match::Ignore(_) => return true,
            Match::Whitelist(_) => return false,
            Match::None => {}
        }
        // The ignore files of every directory above it, deepest first.
        for dir in path.ancestors().skip(1) {
            if let Some(files) = self.dirs.get(dir) {
                for file in files.iter().rev() {
                    match file.matched(path, is_dir) {
                        Match::Ignore(_) => return true,
                        Match::Whitelist(_) => return false,
                        Match::None => {}
                    }
                }
            }
            if let Some(files) = self.repos.get(dir) {
                for file in files {
                    match file.matched(path, is_dir) {
                        Match::Ignore(_) => return true,
                        Match::Whitelist(_) => return false,
                        Match::None => {}
                    }
                }
                // Nothing above a repository's root applies inside it.
                return false;
            }
        }
        false
    }

    /// Whether `path` is an ignore file whose change must be read again.
    pub(crate) fn is_rule_file(path: &Path) -> bool {
        let name = path.file_name().and_then(|n| n.to_str());
        name.is_some_and(|n| IGNORE_FILES.contains(&n)) || path.ends_with(".git/info/exclude")
    }

    /// An ignore file changed (or appeared, or went): read it again.
    pub(crate) fn reload_file(&mut self, path: &Path) {
        if path.ends_with(".git/info/exclude") {
            if let Some(repo) = path.parent().and_then(Path::parent).and_then(Path::parent) {
                let repo = repo.to_path_buf();
                if let Some(found) = repository_root(&repo).filter(|r| r.root == repo) {
                    let files = found.exclude_files(&mut self.warnings);
                    self.repos.insert(repo, files);
                }
            }
            return;
        }
        if let Some(dir) = path.parent() {
            self.dirs.remove(dir);
            self.read_dir_files(dir);
        }
    }

    /// A directory appeared under a watched root: read the ignore files in it and below.
    pub(crate) fn add_tree(&mut self, dir: &Path) {
        if self.roots.iter().any(|r| dir.starts_with(r)) && !self.is_ignored(dir, true) {
            self.read_tree(dir);
        }
    }

    /// Reads the ignore files of `dir` and of every directory below it that is not
    /// ignored (ignored directories are not even entered, so `node_modules/` costs nothing).
    fn read_tree(&mut self, dir: &Path) {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            self.read_dir_files(&dir);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                let path = entry.path();
                if is_dir && !self.is_ignored(&path, true) {
                    stack.push(path);
                }
            }
        }
    }

    fn read_dir_files(&mut self, dir: &Path) {
        let mut files = Vec::new();
        for name in IGNORE_FILES {
            let file = dir.join(name);
            if file.is_file() {
                files.push(read_ignore_file(dir, &file, &mut self.warnings));
            }
        }
        if files.is_empty() {
            self.dirs.remove(dir);
        } else {
            self.dirs.insert(dir.to_path_buf(), files);
        }
    }
}

/// The `--watch` paths and the rules that decide which of their changes count.
#[derive(Debug)]
pub(crate) struct Tree {
    pub(crate) rules: Rules,
    /// Watched recursively.
    pub(crate) dirs: Vec<PathBuf>,
    /// Watched through their directory.
    pub(crate) files: Vec<PathBuf>,
    /// Names are shown relative to it.
    pub(crate) cwd: PathBuf,
}

impl Tree {
    /// Whether a change of `path` counts.
    pub(crate) fn counts(&self, path: &Path, is_dir: bool) -> bool {
        if self.files.iter().any(|f| f == path) {
            return true;
        }
        if !self.dirs.iter().any(|d| path.starts_with(d)) {
            return false;
        }
        let is_dir = is_dir || fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
        !self.rules.is_ignored(path, is_dir)
    }

    /// The path as the user would write it: relative to the current directory when it
    /// is below it.
    pub(crate) fn shown(&self, path: &Path) -> PathBuf {
        format::shown(path, &self.cwd).to_path_buf()
    }
}

fn built_in() -> Gitignore {
    let mut builder = GitignoreBuilder::new("/");
    for line in BUILT_IN {
        // The list is fixed and tested (`built_in_list_compiles`).
        let _ = builder.add_line(None, line);
    }
    builder.build().unwrap_or_else(|_| Gitignore::empty())
}

fn build(builder: &GitignoreBuilder, warnings: &mut Vec<String>) -> Gitignore {
    builder.build().unwrap_or_else(|err| {
        warnings.push(err.to_string());
        Gitignore::empty()
    })
}

/// One ignore file, matched relative to `dir`. A bad line is reported and skipped; the
/// others still count (as git does).
fn read_ignore_file(dir: &Path, file: &Path, warnings: &mut Vec<String>) -> Gitignore {
    let mut builder = GitignoreBuilder::new(dir);
    if let Some(err) = builder.add(file) {
        // The error names the file and the line.
        warnings.push(format!("{err} (that line does not count)"));
    }
    build(&builder, warnings)
}

/// A git repository around a watched directory.
struct Repository {
    /// The directory holding `.git`.
    root: PathBuf,
    /// The git directory (`.git`, or where a worktree's `.git` file points).
    git_dir: PathBuf,
}

/// The nearest directory at or above `dir` that holds `.git` (a directory, or the file
/// a worktree or submodule has).
fn repository_root(dir: &Path) -> Option<Repository> {
    for candidate in dir.ancestors() {
        let dot_git = candidate.join(".git");
        let Ok(meta) = fs::metadata(&dot_git) else {
            continue;
        };
        let git_dir = if meta.is_dir() {
            dot_git
        } else {
            // "gitdir: PATH" (relative to the worktree).
            let text = fs::read_to_string(&dot_git).ok()?;
            let pointed = text.lines().find_map(|l| l.strip_prefix("gitdir:"))?.trim();
            candidate.join(pointed)
        };
        return Some(Repository {
            root: candidate.to_path_buf(),
            git_dir,
        });
    }
    None
}

impl Repository {
    /// The directories from the repository root down to `dir`'s parent (their ignore
    /// files apply inside `dir`).
    fn ancestors_until(&self, dir: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = dir
            .ancestors()
            .skip(1)
            .take_while(|a| a.starts_with(&self.root))
            .map(Path::to_path_buf)
            .collect();
        out.reverse();
        out
    }

    /// `info/exclude` (in the common git directory for a worktree), then git's global
    /// excludes file: highest precedence first.
    fn exclude_files(&self, warnings: &mut Vec<String>) -> Vec<Gitignore> {
        let common = fs::read_to_string(self.git_dir.join("commondir"))
            .map(|c| self.git_dir.join(c.trim()))
            .unwrap_or_else(|_| self.git_dir.clone());
        let mut files = Vec::new();
        let exclude = common.join("info/exclude");
        if exclude.is_file() {
            files.push(read_ignore_file(&self.root, &exclude, warnings));
        }
        if let Some(global) = ignore::gitignore::gitconfig_excludes_path()
            && global.is_file()
        {
            files.push(read_ignore_file(&self.root, &global, warnings));
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_for(root: &Path, extra: Extra) -> Rules {
        Rules::load(&[root.to_path_buf()], &extra)
    }

    fn tree() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn canonical(dir: &tempfile::TempDir) -> PathBuf {
        fs::canonicalize(dir.path()).expect("canonical")
    }

    #[test]
    fn built_in_list_compiles() {
        let mut builder = GitignoreBuilder::new("/");
        for line in BUILT_IN {
            assert!(builder.add_line(None, line).is_ok(), "{line}");
        }
        assert_eq!(builder.build().map(|g| g.len()).ok(), Some(BUILT_IN.len()));
    }

    #[test]
    fn editor_and_tool_temporaries_are_skipped() {
        let dir = tree();
        let root = canonical(&dir);
        let rules = rules_for(&root, Extra::default());
        for name in [
            ".app.py.swp",
            ".app.py.swx",
            ".app.py.swo",
            "app.py~",
            "4913",
            "#app.py#",
            ".#app.py",
            "sedeBKrvE",
            "sed0a1B2c",
            "app.py___jb_tmp___",
            "app.py___jb_old___",
            ".goutputstream-XQ1Z2Y",
            "upload.tmp",
            "app.pyc",
            "app.pyo",
            ".DS_Store",
            "src/.app.rs.kate-swp",
        ] {
            assert!(rules.is_ignored(&root.join(name), false), "{name}");
        }
        for name in [
            "app.py",
            "sed.py",
            "sedan",
            "seds.txt",
            "config.toml",
            "main.swift",
        ] {
            assert!(!rules.is_ignored(&root.join(name), false), "{name}");
        }
        for name in [
            ".git/index",
            ".git/objects/ab/cdef",
            "pkg/__pycache__/m.cpython-312.pyc",
        ] {
            assert!(rules.is_ignored(&root.join(name), false), "{name}");
        }
        assert!(rules.is_ignored(&root.join("a/__pycache__"), true));
    }

    #[test]
    fn gitignore_in_the_tree_and_negation() {
        let dir = tree();
        let root = canonical(&dir);
        fs::write(root.join(".gitignore"), "log/\n*.out\n!keep.out\n").expect("write");
        fs::create_dir_all(root.join("sub")).expect("mkdir");
        fs::write(root.join("sub/.ignore"), "cache\n").expect("write");
        let rules = rules_for(&root, Extra::default());
        assert!(rules.is_ignored(&root.join("log"), true));
        assert!(rules.is_ignored(&root.join("log/app.log"), false));
        assert!(rules.is_ignored(&root.join("deep/log/app.log"), false));
        assert!(rules.is_ignored(&root.join("x.out"), false));
        assert!(!rules.is_ignored(&root.join("keep.out"), false));
        assert!(rules.is_ignored(&root.join("sub/cache"), false));
        assert!(!rules.is_ignored(&root.join("cache"), false));
        assert!(!rules.is_ignored(&root.join("src/app.py"), false));
        // A file named `log` is not a directory: `log/` does not match it.
        assert!(!rules.is_ignored(&root.join("other/log"), false));
    }

    #[test]
    fn ancestors_up_to_the_repository_root_and_info_exclude() {
        let dir = tree();
        let top = canonical(&dir);
        // Above the repository: must not apply.
        fs::write(top.join(".gitignore"), "*.py\n").expect("write");
        let repo = top.join("repo");
        fs::create_dir_all(repo.join(".git/info")).expect("mkdir");
        fs::write(repo.join(".git/info/exclude"), "*.secret\n").expect("write");
        fs::write(repo.join(".gitignore"), "*.log\n").expect("write");
        fs::create_dir_all(repo.join("srv/src")).expect("mkdir");
        fs::write(repo.join("srv/.ignore"), "gen/\n").expect("write");
        let root = repo.join("srv/src");
        let rules = rules_for(&root, Extra::default());
        assert!(rules.is_ignored(&root.join("debug.log"), false));
        assert!(rules.is_ignored(&root.join("x.secret"), false));
        assert!(rules.is_ignored(&root.join("gen/a.rs"), false));
        assert!(!rules.is_ignored(&root.join("app.py"), false));
    }

    #[test]
    fn no_repository_no_ancestors() {
        let dir = tree();
        let top = canonical(&dir);
        fs::write(top.join(".gitignore"), "*.log\n").expect("write");
        fs::create_dir_all(top.join("w")).expect("mkdir");
        let rules = rules_for(&top.join("w"), Extra::default());
        assert!(!rules.is_ignored(&top.join("w/a.log"), false));
    }

    #[test]
    fn the_watched_directory_itself_is_never_matched() {
        let dir = tree();
        let top = canonical(&dir);
        fs::create_dir_all(top.join(".git")).expect("mkdir");
        fs::write(top.join(".gitignore"), "dist/\n*.map\n").expect("write");
        fs::create_dir_all(top.join("dist")).expect("mkdir");
        let rules = rules_for(&top.join("dist"), Extra::default());
        assert!(!rules.is_ignored(&top.join("dist/app.js"), false));
        assert!(rules.is_ignored(&top.join("dist/app.js.map"), false));
    }

    #[test]
    fn command_line_globs() {
        let dir = tree();
        let root = canonical(&dir);
        let extra = Extra {
            globs: vec![
                "log/**".into(),
                "*.bak".into(),
                format!("{}/abs/**", root.display()),
            ],
            cwd: root.clone(),
            paths: vec![root.join("events.jsonl")],
        };
        let rules = rules_for(&root, extra);
        assert!(rules.is_ignored(&root.join("log/app.log"), false));
        assert!(!rules.is_ignored(&root.join("sub/log/app.log"), false));
        assert!(rules.is_ignored(&root.join("sub/x.bak"), false));
        assert!(rules.is_ignored(&root.join("abs/x"), false));
        assert!(rules.is_ignored(&root.join("events.jsonl"), false));
        assert!(!rules.is_ignored(&root.join("app.py"), false));
    }

    #[test]
    fn bad_globs_are_refused() {
        assert!(check_glob("log/**").is_ok());
        assert!(check_glob("[abc").is_err());
        assert!(check_glob("a{b").is_err());
    }

    #[test]
    fn a_changed_ignore_file_is_read_again() {
        let dir = tree();
        let root = canonical(&dir);
        let mut rules = rules_for(&root, Extra::default());
        assert!(!rules.is_ignored(&root.join("out.txt"), false));
        fs::write(root.join(".gitignore"), "out.txt\n").expect("write");
        assert!(Rules::is_rule_file(&root.join(".gitignore")));
        rules.reload_file(&root.join(".gitignore"));
        assert!(rules.is_ignored(&root.join("out.txt"), false));
        // A new directory with its own rules.
        fs::create_dir_all(root.join("new")).expect("mkdir");
        fs::write(root.join("new/.gitignore"), "*.gen\n").expect("write");
        rules.add_tree(&root.join("new"));
        assert!(rules.is_ignored(&root.join("new/a.gen"), false));
    }
}
