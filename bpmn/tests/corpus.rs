//! Conformance: every file of the shared BPMN corpus (`../shared/bpmn-corpus/`, see its
//! MANIFEST.md) gives the outcome written down in `corpus-expectations.tsv`, and agrees with
//! what the manifest says independently of ringflow: files it marks as not well-formed are
//! rejected as XML, files without an executable process are rejected, and valid files have
//! exactly the flow elements the manifest counts. No file may panic or hang.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use ringflow_bpmn::{DiagnosticKind, Model, ModelError};

/// How long one file may take before the test calls it a hang. Parsing the largest corpus
/// file takes milliseconds; this only has to be far above that, even in a debug build.
const PARSE_TIMEOUT: Duration = Duration::from_secs(30);

fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RINGFLOW_BPMN_CORPUS") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bpmn-corpus")
}

struct Expectation {
    outcome: String,
    detail: String,
}

fn expectations() -> BTreeMap<String, Expectation> {
    let text = include_str!("corpus-expectations.tsv");
    let mut rows = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let columns: Vec<&str> = line.split('\t').collect();
        assert!(
            columns.len() == 4,
            "corpus-expectations.tsv:{}: want 4 columns",
            number + 1
        );
        let expectation = Expectation {
            outcome: columns[1].to_string(),
            detail: columns[2].to_string(),
        };
        assert!(
            rows.insert(columns[0].to_string(), expectation).is_none(),
            "{} twice",
            columns[0]
        );
    }
    rows
}

/// One row of MANIFEST.md's file table, with the columns this test reads.
struct ManifestRow {
    executable: String,
    kinds: BTreeMap<String, usize>,
    notes: String,
}

fn manifest(dir: &Path) -> BTreeMap<String, ManifestRow> {
    let text = std::fs::read_to_string(dir.join("MANIFEST.md")).expect("MANIFEST.md is readable");
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let columns: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if columns.len() < 12 || !(columns[0].ends_with(".bpmn") || columns[0].ends_with(".xml")) {
            continue;
        }
        let kinds = columns[10]
            .split(", ")
            .filter_map(|entry| {
                let (kind, count) = entry.split_once(':')?;
                Some((kind.to_string(), count.parse().ok()?))
            })
            .collect();
        let row = ManifestRow {
            executable: columns[6].to_string(),
            kinds,
            notes: columns[11].to_string(),
        };
        rows.insert(columns[0].to_string(), row);
    }
    rows
}

/// Parses on a separate thread, so that a hang fails the test instead of stalling it.
fn parse_with_timeout(path: &Path) -> Result<Model, ModelError> {
    let bytes = std::fs::read(path).expect("corpus file is readable");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(ringflow_bpmn::parse(&bytes));
    });
    match receiver.recv_timeout(PARSE_TIMEOUT) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{}: parsing hangs", path.display()),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{}: parsing panicked", path.display()),
    }
}

fn describe(result: &Result<Model, ModelError>) -> (String, String) {
    match result {
        Ok(model) => {
            let ids: Vec<&str> = model
                .processes
                .iter()
                .map(|p| &*p.bpmn_process_id)
                .collect();
            ("valid".to_string(), ids.join(","))
        }
        Err(error) => {
            let mut codes: Vec<&str> = error.diagnostics.iter().map(|d| d.kind.code()).collect();
            codes.sort_unstable();
            codes.dedup();
            ("invalid".to_string(), codes.join(","))
        }
    }
}

/// Flow-element counts as MANIFEST.md counts them (`subProcess` includes event subprocesses).
fn counted_kinds(model: &Model) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for process in &model.processes {
        for (name, count) in process.element_counts() {
            *counts.entry(name.to_string()).or_insert(0) += count;
            if name == "eventSubProcess" {
                *counts.entry("subProcess".to_string()).or_insert(0) += count;
            }
        }
    }
    counts
}

#[test]
fn every_corpus_file_gives_its_expected_outcome() {
    let dir = corpus_dir();
    assert!(
        dir.join("MANIFEST.md").is_file(),
        "the BPMN corpus is not at {} (set RINGFLOW_BPMN_CORPUS to its folder)",
        dir.display()
    );
    let expected = expectations();
    let manifest = manifest(&dir);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("corpus folder is readable")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".bpmn") || name.ends_with(".xml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 149,
        "expected the whole corpus, found {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for name in &files {
        let Some(expectation) = expected.get(name) else {
            failures.push(format!("{name}: no row in corpus-expectations.tsv"));
            continue;
        };
        let result = parse_with_timeout(&dir.join(name));
        let (outcome, detail) = describe(&result);
        if outcome != expectation.outcome || detail != expectation.detail {
            failures.push(format!(
                "{name}: expected {} {}, got {outcome} {detail}{}",
                expectation.outcome,
                expectation.detail,
                match &result {
                    Err(error) => format!("\n{error}"),
                    Ok(_) => String::new(),
                }
            ));
        }
        if let Some(row) = manifest.get(name) {
            failures.extend(check_against_manifest(name, row, &result));
        } else {
            failures.push(format!("{name}: not in MANIFEST.md"));
        }
    }
    for name in expected.keys() {
        if !files.contains(name) {
            failures.push(format!(
                "{name}: in corpus-expectations.tsv but not in the corpus"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The manifest was generated by another XML parser; where it is sure, ringflow must agree.
fn check_against_manifest(
    name: &str,
    row: &ManifestRow,
    result: &Result<Model, ModelError>,
) -> Vec<String> {
    let mut failures = Vec::new();
    if row.notes.contains("XML PARSE ERROR") {
        let rejected_as_xml = matches!(result, Err(error) if error.diagnostics.iter()
            .all(|d| matches!(d.kind, DiagnosticKind::Xml | DiagnosticKind::Encoding)));
        if !rejected_as_xml {
            failures.push(format!(
                "{name}: the manifest says it is not well-formed XML"
            ));
        }
    }
    if row.executable != "true" && result.is_ok() {
        failures.push(format!(
            "{name}: no executable process, yet it was accepted"
        ));
    }
    if let Ok(model) = result
        && model.non_executable.is_empty()
    {
        for (kind, count) in &counted_kinds(model) {
            let listed = row.kinds.get(kind).copied().unwrap_or(0);
            if listed != *count {
                failures.push(format!(
                    "{name}: {count} {kind}, the manifest counts {listed}"
                ));
            }
        }
    }
    failures
}
