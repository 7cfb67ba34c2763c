//! `ringflow validate` as a user runs it: the real binary, real files, exit codes and output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ringflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringflow"))
        .args(args)
        .output()
        .expect("ringflow runs")
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../bpmn/models/order-process.bpmn")
        .display()
        .to_string()
}

/// A file in one folder under the build's temporary folder, which each run overwrites (a
/// folder per process under /tmp was left behind by every run, 17 MB each).
fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("validate-cli");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("temp file");
    path
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_bundled_example_is_valid() {
    let output = ringflow(&["validate", &example()]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let text = stdout(&output);
    assert!(
        text.contains("process order-process \"Order process\""),
        "{text}"
    );
    assert!(text.contains("serviceTask 5"), "{text}");
    assert!(text.contains("receiveTask 1"), "{text}");
}

#[test]
fn errors_are_printed_as_file_line_column_element_message() {
    let bad = temp_file(
        "bad.bpmn",
        br#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">
<bpmn:process id="p" isExecutable="true">
  <bpmn:startEvent id="s"/>
  <bpmn:sequenceFlow id="f" sourceRef="s" targetRef="t"/>
  <bpmn:serviceTask id="t"/>
</bpmn:process>
</bpmn:definitions>"#,
    );
    let path = bad.display().to_string();
    let output = ringflow(&["validate", &path]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stdout(&output);
    let expected = format!("{path}:5:3: t: the service task needs a job type");
    assert!(
        text.starts_with(&expected),
        "expected {expected:?} in:\n{text}"
    );
}

#[test]
fn json_output_lists_processes_and_errors() {
    let bad = temp_file("broken.bpmn", b"<definitions><unclosed></definitions>");
    let output = ringflow(&["validate", "--json", &example(), &bad.display().to_string()]);
    assert_eq!(output.status.code(), Some(1), "one of two files is invalid");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["valid"], false);
    let files = report["files"].as_array().expect("files");
    assert_eq!(files[0]["valid"], true);
    assert_eq!(files[0]["processes"][0]["id"], "order-process");
    assert_eq!(files[0]["processes"][0]["elements"]["parallelGateway"], 2);
    assert_eq!(files[1]["valid"], false);
    assert_eq!(files[1]["errors"][0]["code"], "xml");
    assert_eq!(files[1]["errors"][0]["line"], 1);
}

#[test]
fn unreadable_files_and_bad_usage_are_reported() {
    let output = ringflow(&["validate", "/nonexistent/model.bpmn"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("/nonexistent/model.bpmn: cannot open"),
        "{output:?}"
    );
    let dir = std::env::temp_dir();
    let output = ringflow(&["validate", &dir.display().to_string()]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a directory is not a model: {output:?}"
    );
    let output = ringflow(&["validate"]);
    assert_eq!(output.status.code(), Some(2), "no file is a usage error");
    let output = ringflow(&["validate", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains("FILE:LINE:COLUMN"));
}

#[test]
fn empty_and_oversized_files_are_rejected_clearly() {
    let empty = temp_file("empty.bpmn", b"");
    let output = ringflow(&["validate", &empty.display().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("no root element"),
        "{}",
        stdout(&output)
    );
    let big = temp_file(
        "big.bpmn",
        &vec![b' '; ringflow_bpmn::limits::MODEL_BYTES_MAX + 1],
    );
    let output = ringflow(&["validate", &big.display().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("MODEL_BYTES_MAX"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn what_the_engine_refuses_at_deploy_is_reported_by_validate_too() {
    let refused = temp_file(
        "signal-start.bpmn",
        br#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">
<bpmn:process id="p" isExecutable="true">
  <bpmn:startEvent id="s"><bpmn:signalEventDefinition signalRef="sig"/></bpmn:startEvent>
  <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="e"/><bpmn:endEvent id="e"/>
</bpmn:process><bpmn:signal id="sig" name="=name"/>
</bpmn:definitions>"#,
    );
    let path = refused.display().to_string();
    let output = ringflow(&["validate", &path]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let expected =
        format!("{path}:3:3: s: a signal start event's name must be known without variables");
    let text = stdout(&output);
    assert!(
        text.starts_with(&expected),
        "expected {expected:?} in:\n{text}"
    );
    let json = ringflow(&["validate", "--json", &path]);
    assert!(
        stdout(&json).contains(r#""code": "refused_by_engine""#),
        "{json:?}"
    );
}

#[test]
fn a_call_of_a_function_no_built_in_has_is_a_warning() {
    let model = temp_file(
        "calls.bpmn",
        br#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0">
<bpmn:process id="p" isExecutable="true">
  <bpmn:startEvent id="s"/>
  <bpmn:sequenceFlow id="f" sourceRef="s" targetRef="t"/>
  <bpmn:scriptTask id="t"><bpmn:extensionElements>
    <zeebe:script expression="=format(total) + to json(total) + string(uuid())" resultVariable="r"/>
  </bpmn:extensionElements></bpmn:scriptTask>
</bpmn:process>
</bpmn:definitions>"#,
    );
    let path = model.display().to_string();
    let output = ringflow(&["validate", &path]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "a warning keeps it valid: {output:?}"
    );
    let text = stdout(&output);
    assert!(
        text.contains(&format!(
            "{path}:6:3: warning: t: the script expression `format(total)"
        )),
        "{text}"
    );
    assert!(text.contains("calls `format(...)`"), "{text}");
    assert_eq!(
        text.matches("warning:").count(),
        1,
        "to json and uuid() are built-ins: {text}"
    );
    let output = ringflow(&["validate", "--json", &path]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["valid"], true);
    let warnings = report["files"][0]["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["code"], "unknown_function");
    assert_eq!(warnings[0]["element_id"], "t");
}

#[test]
fn dmn_files_are_checked_as_a_deployment_checks_them() {
    let dmn = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/fixtures/discount.dmn")
        .display()
        .to_string();
    let output = ringflow(&["validate", &dmn]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        stdout(&output),
        format!("{dmn}: decision discount \"Discount\"\n")
    );
    // A decision with requirements that reads the clock is refused, as at deploy.
    let clocked = temp_file(
        "clocked.dmn",
        br##"<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="c" name="C" namespace="http://ringflow.dev/c">
  <decision id="day" name="Day"><literalExpression id="l1"><text>1</text></literalExpression></decision>
  <decision id="stamp" name="Stamp">
    <informationRequirement id="ir1"><requiredDecision href="#day"/></informationRequirement>
    <literalExpression id="l2"><text>string(today())</text></literalExpression>
  </decision>
</definitions>"##,
    );
    let path = clocked.display().to_string();
    let output = ringflow(&["validate", "--json", &path]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let error = &report["files"][0]["errors"][0];
    assert_eq!(error["code"], "invalid_dmn");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|message| message.contains("decision `stamp` calls today()")),
        "{error}"
    );
}
