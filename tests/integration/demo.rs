//! `.ci/demo` runs against the binaries where cargo puts them: `$CARGO_TARGET_DIR` when it
//! is set. The demo's `cargo build --release` is played by a stand-in `cargo` that puts
//! this build's hotrun and demo server in place the way cargo does (a new file renamed
//! over the old one), so the demo's rebuild step really replaces the running binary.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::*;
use crate::ports::reserve_port;

const FAKE_CARGO: &str = r#"#!/bin/sh
# `cargo build --release …` for the demo test: the prebuilt binaries, renamed into place.
set -e
dir="$CARGO_TARGET_DIR/release"
mkdir -p "$dir/examples"
case " $* " in
  *" --bin hotrun "*) cp "$HOTRUN_BIN" "$dir/.hotrun.tmp"; mv "$dir/.hotrun.tmp" "$dir/hotrun" ;;
esac
cp "$DEMO_BIN" "$dir/examples/.demo.tmp"
mv "$dir/examples/.demo.tmp" "$dir/examples/demo-server"
"#;

#[test]
fn the_demo_finds_its_binaries_in_cargo_target_dir() {
    let sb = Sandbox::new();
    // A copy of the repository's layout as far as the demo uses it.
    let repo = sb.path("repo");
    fs::create_dir_all(repo.join(".ci")).unwrap();
    fs::create_dir_all(repo.join("tests/fixtures")).unwrap();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/demo");
    fs::copy(&demo, repo.join(".ci/demo")).unwrap();
    fs::write(repo.join("tests/fixtures/demo_server.rs"), "").unwrap();
    let bin = sb.path("bin");
    fs::create_dir(&bin).unwrap();
    fs::write(bin.join("cargo"), FAKE_CARGO).unwrap();
    fs::set_permissions(bin.join("cargo"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let target = sb.path("elsewhere");
    // The demo's port, reserved for the test's life (the demo would otherwise pick one by
    // binding and releasing it, which another process may take in between).
    let (_reserved, port) = reserve_port();
    let out = Command::new("bash")
        .arg(repo.join(".ci/demo"))
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", &target)
        .env("PORT", port.to_string())
        .env("HOTRUN_BIN", hotrun_exe())
        .env("DEMO_BIN", example("demo-server"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("the demo is over"), "{stdout}\n{stderr}");
    assert!(target.join("release/hotrun").exists());
    // Nothing was looked for in the default place.
    assert!(!repo.join("target").exists());
}
