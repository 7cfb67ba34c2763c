//! What is wrong with a model, and where.

use std::fmt;

/// The kind of a problem, as a stable code. The codes appear in `ringflow validate --json`
/// output and in the corpus expectations, so they never change meaning once released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DiagnosticKind {
    /// The document is not well-formed XML (or not namespace-well-formed).
    Xml,
    /// The bytes are not valid in the declared encoding, or the encoding is not supported.
    Encoding,
    /// The document is over one of the limits in [`crate::limits`].
    Limit,
    /// The root element is not `definitions` in the BPMN 2.0 model namespace.
    NotBpmn,
    /// No process in the document has `isExecutable="true"`.
    NoExecutableProcess,
    /// Two elements share one `id`.
    DuplicateId,
    /// A BPMN element or construct that ringflow does not execute (complex gateway,
    /// transaction, standard loop, cancel events, ...).
    UnsupportedElement,
    /// An element in the BPMN namespace that BPMN 2.0 does not define.
    UnknownElement,
    /// A reference (`sourceRef`, `attachedToRef`, `messageRef`, `default`, ...) names no element.
    UnknownReference,
    /// A reference names an element of the wrong kind, or one in another scope.
    InvalidReference,
    /// A process or subprocess has no start event it can be started by.
    MissingStartEvent,
    /// A start event that is not allowed where it stands.
    InvalidStartEvent,
    /// A flow node that no start event, boundary event or event subprocess can reach.
    Unreachable,
    /// A sequence flow that is not allowed: into a start event, out of an end event, ...
    InvalidFlow,
    /// A job-worker task or event without a `zeebe:taskDefinition` job type.
    MissingJobType,
    /// A message event or receive task without a message name.
    MissingMessageName,
    /// A message catch without a `zeebe:subscription` correlation key.
    MissingCorrelationKey,
    /// Another required attribute or child is missing.
    MissingAttribute,
    /// An event with more than one event definition.
    MultipleEventDefinitions,
    /// An event definition that is not allowed on this kind of event.
    InvalidEventDefinition,
    /// A FEEL expression that does not parse, or a static value where only an expression works.
    InvalidExpression,
    /// A timer that is not a valid ISO 8601 duration, date-time or repeating interval.
    InvalidTimer,
    /// A gateway used in a way ringflow cannot execute.
    InvalidGateway,
    /// Multi-instance characteristics that are incomplete or inconsistent.
    InvalidMultiInstance,
    /// An attribute whose value is not of its type (a boolean that is not `true`/`false`, ...).
    InvalidValue,
    /// A warning, not an error: a FEEL expression calls a function no built-in has, so the
    /// call evaluates to null.
    UnknownFunction,
}

impl DiagnosticKind {
    /// The stable snake_case code of this kind.
    pub fn code(self) -> &'static str {
        use DiagnosticKind::*;
        match self {
            Xml => "xml",
            Encoding => "encoding",
            Limit => "limit",
            NotBpmn => "not_bpmn",
            NoExecutableProcess => "no_executable_process",
            DuplicateId => "duplicate_id",
            UnsupportedElement => "unsupported_element",
            UnknownElement => "unknown_element",
            UnknownReference => "unknown_reference",
            InvalidReference => "invalid_reference",
            MissingStartEvent => "missing_start_event",
            InvalidStartEvent => "invalid_start_event",
            Unreachable => "unreachable",
            InvalidFlow => "invalid_flow",
            MissingJobType => "missing_job_type",
            MissingMessageName => "missing_message_name",
            MissingCorrelationKey => "missing_correlation_key",
            MissingAttribute => "missing_attribute",
            MultipleEventDefinitions => "multiple_event_definitions",
            InvalidEventDefinition => "invalid_event_definition",
            InvalidExpression => "invalid_expression",
            InvalidTimer => "invalid_timer",
            InvalidGateway => "invalid_gateway",
            InvalidMultiInstance => "invalid_multi_instance",
            InvalidValue => "invalid_value",
            UnknownFunction => "unknown_function",
        }
    }

    /// Every kind, in declaration order.
    pub const ALL: [DiagnosticKind; 26] = {
        use DiagnosticKind::*;
        [
            Xml,
            Encoding,
            Limit,
            NotBpmn,
            NoExecutableProcess,
            DuplicateId,
            UnsupportedElement,
            UnknownElement,
            UnknownReference,
            InvalidReference,
            MissingStartEvent,
            InvalidStartEvent,
            Unreachable,
            InvalidFlow,
            MissingJobType,
            MissingMessageName,
            MissingCorrelationKey,
            MissingAttribute,
            MultipleEventDefinitions,
            InvalidEventDefinition,
            InvalidExpression,
            InvalidTimer,
            InvalidGateway,
            InvalidMultiInstance,
            InvalidValue,
            UnknownFunction,
        ]
    };

    /// The kind whose [`code`](Self::code) is `code`, if any.
    pub fn from_code(code: &str) -> Option<DiagnosticKind> {
        Self::ALL.into_iter().find(|kind| kind.code() == code)
    }
}

impl fmt::Display for DiagnosticKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A 1-based line and column in the source document. Columns count characters, not bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem found in a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// What kind of problem this is.
    pub kind: DiagnosticKind,
    /// Where the offending element (or the XML error) starts.
    pub position: Position,
    /// The `id` of the offending element, where it has one.
    pub element_id: Option<String>,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `LINE:COLUMN: ELEMENT-ID: message`, or `LINE:COLUMN: message` with no element id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.element_id {
            Some(id) => write!(f, "{}: {}: {}", self.position, id, self.message),
            None => write!(f, "{}: {}", self.position, self.message),
        }
    }
}

/// Maps byte offsets in a document to line and column, built once per document and only when
/// a diagnostic needs it.
pub(crate) struct LineIndex<'a> {
    text: &'a [u8],
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a [u8]) -> Self {
        let mut line_starts = vec![0];
        for (offset, byte) in text.iter().enumerate() {
            if *byte == b'\n' {
                line_starts.push(offset + 1);
            }
        }
        LineIndex { text, line_starts }
    }

    pub(crate) fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(index) => index,
            Err(index) => index - 1,
        };
        let start = self.line_starts[line];
        // Count characters, not bytes: continuation bytes of UTF-8 do not start a character.
        let column = self.text[start..offset]
            .iter()
            .filter(|b| (**b & 0xC0) != 0x80)
            .count();
        Position {
            line: u32::try_from(line + 1).unwrap_or(u32::MAX),
            column: u32::try_from(column + 1).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "ab\nçd\n\nx".as_bytes();
        let index = LineIndex::new(text);
        assert_eq!(index.position(0), Position { line: 1, column: 1 });
        assert_eq!(index.position(2), Position { line: 1, column: 3 });
        assert_eq!(index.position(3), Position { line: 2, column: 1 });
        // 'ç' is two bytes; 'd' is the second character.
        assert_eq!(index.position(5), Position { line: 2, column: 2 });
        assert_eq!(index.position(8), Position { line: 4, column: 1 });
        assert_eq!(index.position(1000), Position { line: 4, column: 2 });
    }

    #[test]
    fn codes_round_trip() {
        for kind in DiagnosticKind::ALL {
            assert_eq!(DiagnosticKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(DiagnosticKind::from_code("nope"), None);
    }
}
