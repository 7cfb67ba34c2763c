//! Puts the commit the binary is built from into its version (`ringflow --version`), so that
//! a benchmark report names the server it measured: `0.1.0 (abc1234)`, with `+dirty` when
//! the tracked files differ from that commit, or `(unknown commit)` outside a git checkout.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn main() {
    // Run again when the commit, the index or any source of the workspace changes.
    for path in [
        "../.git/HEAD",
        "../.git/index",
        "../.git/refs",
        "src",
        "../core/src",
        "../wire/src",
        "../bpmn/src",
        "../Cargo.toml",
        "../Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) if !commit.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|status| !status.is_empty());
            if dirty {
                format!("{commit}+dirty")
            } else {
                commit
            }
        }
        _ => "unknown commit".to_string(),
    };
    println!(
        "cargo:rustc-env=RINGFLOW_VERSION={} ({commit})",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default()
    );
}
