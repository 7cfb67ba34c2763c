//! The generated code in `src/generated/` must be what flatc 23.5.26 makes of
//! `schema/ringflow.fbs`. After a schema change, regenerate it with
//!
//! ```text
//! RINGFLOW_REGENERATE=1 cargo test -p ringflow-wire --test schema_fresh
//! ```

use std::path::Path;
use std::process::Command;

#[test]
fn the_generated_code_matches_the_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = root.join("schema/ringflow.fbs");
    let checked_in = root.join("src/generated/ringflow_generated.rs");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("flatc-out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("output directory");
    let flatc = flatc::flatc();
    let status = Command::new(flatc)
        .arg("--rust")
        .arg("-o")
        .arg(&out)
        .arg(&schema)
        .status()
        .expect("flatc runs");
    assert!(status.success(), "flatc failed on {}", schema.display());
    let generated = std::fs::read(out.join("ringflow_generated.rs")).expect("flatc's output");
    if std::env::var_os("RINGFLOW_REGENERATE").is_some() {
        std::fs::write(&checked_in, &generated).expect("write the generated code");
        return;
    }
    let current = std::fs::read(&checked_in).expect("the checked-in generated code");
    assert!(
        generated == current,
        "{} is stale: regenerate it with RINGFLOW_REGENERATE=1 cargo test -p ringflow-wire --test schema_fresh",
        checked_in.display()
    );
}
