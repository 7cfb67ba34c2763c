//! `ringflow validate FILE...`

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ringflow_bpmn::limits::MODEL_BYTES_MAX;
use ringflow_bpmn::{Diagnostic, Model};
use serde::Serialize;

/// Arguments of `ringflow validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// BPMN 2.0 files (.bpmn, .bpmn20.xml, ...) and DMN files (.dmn) to check.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Print the result as one JSON document on standard output instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    valid: bool,
    files: Vec<FileReport>,
}

#[derive(Default, Serialize)]
struct FileReport {
    file: String,
    valid: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    processes: Vec<ProcessReport>,
    /// The decisions of a DMN file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    decisions: Vec<DecisionReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    non_executable: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<ErrorReport>,
    /// What deploys but is likely wrong (a FEEL call that evaluates to null); the file stays
    /// valid.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<ErrorReport>,
}

#[derive(Serialize)]
struct ProcessReport {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    elements: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct DecisionReport {
    id: String,
    name: String,
}

#[derive(Serialize)]
struct ErrorReport {
    line: u32,
    column: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    element_id: Option<String>,
    code: &'static str,
    message: String,
}

/// Validates every file; returns exit status 0 when all are valid, 1 otherwise.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let files: Vec<FileReport> = args.files.iter().map(|path| check(path)).collect();
    let valid = files.iter().all(|file| file.valid);
    let report = Report { valid, files };
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &report)?;
    }
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn check(path: &Path) -> FileReport {
    let file = path.display().to_string();
    let bytes = match read_bounded(path) {
        Ok(bytes) => bytes,
        Err(message) => {
            let error = ErrorReport {
                line: 0,
                column: 0,
                element_id: None,
                code: "io",
                message,
            };
            return FileReport {
                file,
                valid: false,
                errors: vec![error],
                ..Default::default()
            };
        }
    };
    if ringflow_core::decisions::is_dmn(&file) {
        return check_dmn(file, &bytes);
    }
    match ringflow_bpmn::parse(&bytes) {
        Ok(model) => {
            // A model that parses may still use what the engine refuses at deploy.
            let now_millis = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as i64);
            let refusals: Vec<ErrorReport> = model
                .processes
                .iter()
                .flat_map(|process| ringflow_core::refusals(process, now_millis))
                .map(|refusal| ErrorReport {
                    line: refusal.position.line,
                    column: refusal.position.column,
                    element_id: Some(refusal.element_id),
                    code: "refused_by_engine",
                    message: refusal.reason,
                })
                .collect();
            if refusals.is_empty() {
                valid_report(file, model)
            } else {
                FileReport {
                    file,
                    valid: false,
                    errors: refusals,
                    warnings: model.warnings.iter().map(error_report).collect(),
                    ..Default::default()
                }
            }
        }
        Err(error) => FileReport {
            file,
            valid: false,
            errors: error.diagnostics.iter().map(error_report).collect(),
            ..Default::default()
        },
    }
}

/// A DMN file (named `*.dmn`, as a deployment tells them apart): parsed as a deployment
/// parses it; its decisions are listed like processes, as `decision ID "NAME"`.
fn check_dmn(file: String, bytes: &[u8]) -> FileReport {
    match ringflow_core::decisions::parse(bytes) {
        Ok(model) => FileReport {
            file,
            valid: true,
            decisions: model
                .decisions()
                .iter()
                .map(|(id, name)| DecisionReport {
                    id: id.clone(),
                    name: name.clone(),
                })
                .collect(),
            ..Default::default()
        },
        Err(message) => FileReport {
            file,
            valid: false,
            errors: vec![ErrorReport {
                line: 0,
                column: 0,
                element_id: None,
                code: "invalid_dmn",
                message,
            }],
            ..Default::default()
        },
    }
}

/// Reads at most one byte more than the model limit, so a huge file is not read whole.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let file = File::open(path).map_err(|error| format!("cannot open: {error}"))?;
    let mut bytes = Vec::new();
    file.take(MODEL_BYTES_MAX as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read: {error}"))?;
    Ok(bytes)
}

fn valid_report(file: String, model: Model) -> FileReport {
    let processes = model
        .processes
        .iter()
        .map(|process| ProcessReport {
            id: process.bpmn_process_id.to_string(),
            name: process.name.clone(),
            elements: process
                .element_counts()
                .into_iter()
                .map(|(name, count)| (name.to_string(), serde_json::Value::from(count)))
                .collect(),
        })
        .collect();
    FileReport {
        file,
        valid: true,
        processes,
        non_executable: model.non_executable,
        warnings: model.warnings.iter().map(error_report).collect(),
        ..Default::default()
    }
}

fn error_report(diagnostic: &Diagnostic) -> ErrorReport {
    ErrorReport {
        line: diagnostic.position.line,
        column: diagnostic.position.column,
        element_id: diagnostic.element_id.clone(),
        code: diagnostic.kind.code(),
        message: diagnostic.message.clone(),
    }
}

fn write_text(out: &mut impl Write, report: &Report) -> io::Result<()> {
    for file in &report.files {
        for process in &file.processes {
            let counts: Vec<String> = process
                .elements
                .iter()
                .map(|(name, count)| format!("{name} {count}"))
                .collect();
            let name = process
                .name
                .as_deref()
                .map(|n| format!(" \"{n}\""))
                .unwrap_or_default();
            writeln!(
                out,
                "{}: process {}{name}: {}",
                file.file,
                process.id,
                counts.join(", ")
            )?;
        }
        for decision in &file.decisions {
            writeln!(
                out,
                "{}: decision {} \"{}\"",
                file.file, decision.id, decision.name
            )?;
        }
        for skipped in &file.non_executable {
            writeln!(
                out,
                "{}: process {skipped}: skipped, not executable",
                file.file
            )?;
        }
        for (error, label) in file
            .errors
            .iter()
            .map(|error| (error, ""))
            .chain(file.warnings.iter().map(|warning| (warning, "warning: ")))
        {
            match (&error.element_id, error.line) {
                (_, 0) => writeln!(out, "{}: {label}{}", file.file, error.message)?,
                (Some(id), _) => writeln!(
                    out,
                    "{}:{}:{}: {label}{id}: {}",
                    file.file, error.line, error.column, error.message
                )?,
                (None, _) => writeln!(
                    out,
                    "{}:{}:{}: {label}{}",
                    file.file, error.line, error.column, error.message
                )?,
            }
        }
    }
    let invalid = report.files.iter().filter(|file| !file.valid).count();
    if report.files.len() > 1 {
        writeln!(
            out,
            "{} files: {} valid, {invalid} invalid",
            report.files.len(),
            report.files.len() - invalid
        )?;
    }
    Ok(())
}
