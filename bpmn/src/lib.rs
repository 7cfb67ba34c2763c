//! # ringflow-bpmn
//!
//! Reads BPMN 2.0 XML, as written by Camunda Modeler, bpmn.io and other tools, into validated,
//! compiled [`ProcessDefinition`]s: one per executable process in the file. This crate knows
//! nothing of execution; the engine (`ringflow-core`) runs what it produces.
//!
//! ```
//! let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
//! <bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
//!     xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d" targetNamespace="x">
//!   <bpmn:process id="pay" isExecutable="true">
//!     <bpmn:startEvent id="start"/>
//!     <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="charge"/>
//!     <bpmn:serviceTask id="charge">
//!       <bpmn:extensionElements><zeebe:taskDefinition type="charge-card"/></bpmn:extensionElements>
//!     </bpmn:serviceTask>
//!     <bpmn:sequenceFlow id="f2" sourceRef="charge" targetRef="end"/>
//!     <bpmn:endEvent id="end"/>
//!   </bpmn:process>
//! </bpmn:definitions>"#;
//! let model = ringflow_bpmn::parse(xml).expect("a valid model");
//! let process = &model.processes[0];
//! assert_eq!(&*process.bpmn_process_id, "pay");
//! let charge = process.find("charge").expect("the task");
//! assert_eq!(process.outgoing(charge).len(), 1);
//! ```
//!
//! ## What is accepted
//!
//! - **XML as modelers write it.** The BPMN model namespace under any prefix (or as the default
//!   namespace), and the pre-release namespace `http://schema.omg.org/spec/BPMN/2.0`. UTF-8 with
//!   or without a byte order mark; UTF-16 with a BOM; other encodings named in the XML
//!   declaration (ISO-8859-1, windows-1252, ...) are decoded; unknown ones are rejected by name.
//!   Diagram interchange (BPMNDI) and vendor extensions are read for well-formedness, then
//!   ignored. A DOCTYPE is never used: only the five predefined entities and character
//!   references are expanded, so external entities (XXE) cannot be fetched.
//! - **Collaborations** with several pools: one definition per process with
//!   `isExecutable="true"`. Non-executable processes are listed in
//!   [`Model::non_executable`] and not validated.
//! - **Elements**: see the table in the repository README, which the tests keep true. What is
//!   not supported (complex gateway, transaction, standard loop, cancel events, the
//!   job-worker implementation of an ad-hoc subprocess, ...) is rejected with an error
//!   naming the element. Conditional events read their condition and
//!   `zeebe:conditionalFilter` into a [`Condition`]; ad-hoc subprocesses read `zeebe:adHoc`,
//!   `completionCondition` and `cancelRemainingInstances` into an [`AdHoc`], and
//!   [`ProcessDefinition::activatable`] lists what they can activate.
//! - **Camunda 8 extensions** (`http://camunda.org/schema/zeebe/1.0`): `taskDefinition`,
//!   `taskHeaders`, `ioMapping`, `subscription`, `calledElement`, `loopCharacteristics`,
//!   `script`, `calledDecision`, `properties`, `userTask`, `assignmentDefinition`,
//!   `taskSchedule`, `priorityDefinition` and `formDefinition`'s `formKey` (see
//!   [`UserTask`]: static dates and priorities are checked here), `versionTag`,
//!   `conditionalFilter`, `executionListeners` (see [`ExecutionListeners`]: refused where
//!   Camunda 8 does not run them), `taskListeners` on Camunda user tasks (see
//!   [`TaskListeners`]: creating, assigning, updating and completing; canceling listeners
//!   are refused, not silently ignored). `userTaskForm` and linked or external forms are accepted and carry no
//!   behaviour.
//! - **FEEL** (a leading `=`) is parsed at deploy time; see [`expression`].
//! - **Timers**: see [`timer`].
//!
//! ## Errors
//!
//! [`parse`] reports every problem it finds, not only the first, as [`Diagnostic`]s with a
//! stable [`DiagnosticKind`] code, the line and column, the element id and a message. Bad
//! input never panics or hangs: every input size is bounded by [`limits`], and the parsers
//! are fuzzed (`bpmn/tests/mutation.rs` in CI, `bpmn/fuzz` with cargo-fuzz).

mod compile;
pub mod cron;
mod decode;
pub mod diagnostic;
mod dom;
mod elements;
pub mod expression;
pub mod extensions;
pub mod from_ai;
mod graph;
pub mod instants;
pub mod limits;
pub mod model;
pub mod timer;

pub use diagnostic::{Diagnostic, DiagnosticKind, Position};
pub use dom::{BPMN_NAMESPACE, BPMN_PRERELEASE_NAMESPACE, ZEEBE_NAMESPACE};
pub use expression::{Expression, FeelExpression};
pub use from_ai::ToolParameter;
pub use model::*;

use diagnostic::LineIndex;

/// The executable processes of one BPMN document.
#[derive(Clone, Debug)]
pub struct Model {
    /// One compiled definition per executable process, in document order.
    pub processes: Vec<ProcessDefinition>,
    /// Ids of the processes that are not executable (`isExecutable` absent or `false`).
    pub non_executable: Vec<String>,
    /// What deploys but is likely wrong (a FEEL call of a function no built-in has, which
    /// evaluates to null), sorted by position; at most [`limits::DIAGNOSTICS_MAX`].
    /// `ringflow validate` prints them.
    pub warnings: Vec<Diagnostic>,
}

/// Why a document was rejected: every problem found, in document order.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct ModelError {
    /// The problems, sorted by position; at most [`limits::DIAGNOSTICS_MAX`] (+1 that says
    /// how many more there were).
    pub diagnostics: Vec<Diagnostic>,
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// Parses, validates and compiles a BPMN 2.0 document.
pub fn parse(bytes: &[u8]) -> Result<Model, ModelError> {
    if bytes.len() > limits::MODEL_BYTES_MAX {
        return Err(single(
            DiagnosticKind::Limit,
            Position { line: 1, column: 1 },
            format!(
                "the file is {} bytes, over MODEL_BYTES_MAX ({} bytes)",
                bytes.len(),
                limits::MODEL_BYTES_MAX
            ),
        ));
    }
    let text = match decode::decode(bytes) {
        Ok(text) => text,
        Err(error) => {
            let position = LineIndex::new(bytes).position(error.offset);
            return Err(single(DiagnosticKind::Encoding, position, error.message));
        }
    };
    let document = match dom::parse(&text) {
        Ok(document) => document,
        Err(error) => {
            let position = LineIndex::new(text.as_bytes()).position(error.offset);
            let kind = if error.limit {
                DiagnosticKind::Limit
            } else {
                DiagnosticKind::Xml
            };
            return Err(single(kind, position, error.message));
        }
    };
    let compiled = compile::Compiler::new(&document, &text).compile();
    if compiled.diagnostics.is_empty() {
        Ok(Model {
            processes: compiled.processes,
            non_executable: compiled.non_executable,
            warnings: compiled.warnings,
        })
    } else {
        let mut diagnostics = compiled.diagnostics;
        if diagnostics.len() > limits::DIAGNOSTICS_MAX {
            let cut = diagnostics.len() - limits::DIAGNOSTICS_MAX;
            let last = diagnostics[limits::DIAGNOSTICS_MAX - 1].position;
            diagnostics.truncate(limits::DIAGNOSTICS_MAX);
            diagnostics.push(Diagnostic {
                kind: DiagnosticKind::Limit,
                position: last,
                element_id: None,
                message: format!("{cut} more problems not shown (DIAGNOSTICS_MAX)"),
            });
        }
        Err(ModelError { diagnostics })
    }
}

fn single(kind: DiagnosticKind, position: Position, message: String) -> ModelError {
    ModelError {
        diagnostics: vec![Diagnostic {
            kind,
            position,
            element_id: None,
            message,
        }],
    }
}

/// Helpers for this crate's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    /// FEEL's syntax that a scanner of calls must step through: parentheses, strings and
    /// their escapes, backtick names, comments, members, contexts, and characters of more
    /// than one byte. Each no-panic test adds the names it looks for.
    pub(crate) const FEEL_SYNTAX: &[&str] = &[
        "(", ")", ",", "\"", "\\", "`", "/*", "*/", "//", "\n", "ä", "𝄞", "x", ".", "{", "}", " ",
    ];

    /// `count` texts of up to `max_pieces - 1` of `pieces` each, drawn by xorshift from
    /// `seed`: the same texts on every run.
    pub(crate) fn random_texts(
        pieces: &[&str],
        mut seed: u64,
        count: usize,
        max_pieces: usize,
    ) -> impl Iterator<Item = String> {
        let pieces: Vec<String> = pieces.iter().map(|piece| piece.to_string()).collect();
        (0..count).map(move |_| {
            let mut next = |bound: usize| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % bound as u64) as usize
            };
            let length = next(max_pieces);
            (0..length)
                .map(|_| pieces[next(pieces.len())].as_str())
                .collect()
        })
    }
}
