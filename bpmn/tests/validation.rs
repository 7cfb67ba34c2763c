//! Validation rules, one small model each, asserting the exact problems reported.

use ringflow_bpmn::{DiagnosticKind as K, ElementKind, Model, ModelError, ToolParameter, parse};

/// Wraps process content in `definitions`, with the zeebe namespace bound.
fn model(process: &str, definitions: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="defs" targetNamespace="urn:test">
  <bpmn:process id="p" isExecutable="true">
{process}
  </bpmn:process>
{definitions}
</bpmn:definitions>"#
    )
}

fn job(id: &str, job_type: &str) -> String {
    format!(
        r#"<bpmn:serviceTask id="{id}"><bpmn:extensionElements>
           <zeebe:taskDefinition type="{job_type}"/></bpmn:extensionElements></bpmn:serviceTask>"#
    )
}

fn ok(process: &str, definitions: &str) -> Model {
    match parse(model(process, definitions).as_bytes()) {
        Ok(model) => model,
        Err(error) => panic!("expected a valid model, got:\n{error}"),
    }
}

fn errors(process: &str, definitions: &str) -> ModelError {
    match parse(model(process, definitions).as_bytes()) {
        Ok(_) => panic!("expected errors for:\n{process}"),
        Err(error) => error,
    }
}

/// The (code, element id) pairs reported, in order.
fn codes(error: &ModelError) -> Vec<(K, String)> {
    error
        .diagnostics
        .iter()
        .map(|d| (d.kind, d.element_id.clone().unwrap_or_default()))
        .collect()
}

fn has(error: &ModelError, kind: K, id: &str) {
    assert!(
        codes(error).iter().any(|(k, i)| *k == kind && i == id),
        "expected {kind} on `{id}`, got:\n{error}"
    );
}

const LINEAR: &str = r#"
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="task"/>
    TASK
    <bpmn:sequenceFlow id="f2" sourceRef="task" targetRef="end"/>
    <bpmn:endEvent id="end"/>"#;

#[test]
fn a_linear_process_compiles_to_dense_indexes() {
    let model = ok(&LINEAR.replace("TASK", &job("task", "charge")), "");
    let process = &model.processes[0];
    assert_eq!(&*process.bpmn_process_id, "p");
    let start = process.find("start").expect("start");
    let task = process.find("task").expect("task");
    let end = process.find("end").expect("end");
    assert_eq!(process.outgoing(start).len(), 1);
    assert_eq!(process.flow(process.outgoing(start)[0]).target, task);
    assert_eq!(process.flow(process.outgoing(task)[0]).target, end);
    assert_eq!(process.incoming(end).len(), 1);
    assert_eq!(
        process.start_events(ringflow_bpmn::ProcessDefinition::ROOT),
        &[start]
    );
    match &process.element(task).kind {
        ElementKind::ServiceTask(job) => {
            assert_eq!(job.job_type.as_static(), Some("charge"));
            assert_eq!(job.retries.as_static(), Some("3"));
        }
        other => panic!("expected a service task, got {other:?}"),
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let error = errors(
        r#"
        <bpmn:serviceTask id="noType"/>
        <bpmn:sequenceFlow id="f1" sourceRef="noType" targetRef="ghost"/>
        <bpmn:boundaryEvent id="loose"><bpmn:timerEventDefinition>
          <bpmn:timeDuration>PT1M</bpmn:timeDuration></bpmn:timerEventDefinition>
        </bpmn:boundaryEvent>
        <bpmn:intermediateCatchEvent id="twice">
          <bpmn:messageEventDefinition messageRef="m"/><bpmn:timerEventDefinition/>
        </bpmn:intermediateCatchEvent>
        <bpmn:task id="twice"/>"#,
        r#"<bpmn:message id="m" name="paid"/>"#,
    );
    has(&error, K::MissingJobType, "noType");
    has(&error, K::UnknownReference, "f1");
    has(&error, K::MissingAttribute, "loose");
    has(&error, K::MultipleEventDefinitions, "twice");
    has(&error, K::DuplicateId, "twice");
    has(&error, K::MissingStartEvent, "p");
    assert!(error.diagnostics.len() >= 6, "{error}");
    // Diagnostics come in document order, each with a line and column.
    let positions: Vec<_> = error.diagnostics.iter().map(|d| d.position).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted);
    assert!(positions.iter().all(|p| p.line > 0 && p.column > 0));
}

#[test]
fn unreachable_nodes_are_reported_once_per_island() {
    let error = errors(
        &format!(
            r#"{}
            {}
            <bpmn:sequenceFlow id="f3" sourceRef="island" targetRef="island-end"/>
            <bpmn:endEvent id="island-end"/>"#,
            LINEAR.replace("TASK", &job("task", "a")),
            job("island", "b")
        ),
        "",
    );
    assert_eq!(
        codes(&error),
        vec![(K::Unreachable, "island".to_string())],
        "{error}"
    );
}

#[test]
fn message_catches_need_a_name_and_a_correlation_key() {
    let catch = |reference: &str| {
        LINEAR.replace(
            "TASK",
            &format!(
                r#"<bpmn:intermediateCatchEvent id="task">
                   <bpmn:messageEventDefinition {reference}/></bpmn:intermediateCatchEvent>"#
            ),
        )
    };
    let no_ref = errors(&catch(""), "");
    assert_eq!(
        codes(&no_ref),
        vec![(K::MissingMessageName, "task".to_string())]
    );
    let no_name = errors(&catch(r#"messageRef="m""#), r#"<bpmn:message id="m"/>"#);
    assert_eq!(
        codes(&no_name),
        vec![(K::MissingMessageName, "task".to_string())]
    );
    let no_key = errors(
        &catch(r#"messageRef="m""#),
        r#"<bpmn:message id="m" name="paid"/>"#,
    );
    assert_eq!(
        codes(&no_key),
        vec![(K::MissingCorrelationKey, "task".to_string())]
    );
    let good = ok(
        &catch(r#"messageRef="m""#),
        r#"<bpmn:message id="m" name="paid"><bpmn:extensionElements>
             <zeebe:subscription correlationKey="=orderId"/></bpmn:extensionElements></bpmn:message>"#,
    );
    assert_eq!(good.processes.len(), 1);
}

#[test]
fn boundary_events_must_be_attached_to_an_activity_in_scope() {
    let process = |attached: &str| {
        format!(
            r#"{}
            <bpmn:boundaryEvent id="b" {attached}><bpmn:timerEventDefinition>
              <bpmn:timeDuration>PT5M</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:boundaryEvent>
            <bpmn:sequenceFlow id="f3" sourceRef="b" targetRef="late"/>
            <bpmn:endEvent id="late"/>"#,
            LINEAR.replace("TASK", &job("task", "a"))
        )
    };
    assert_eq!(
        codes(&errors(&process(""), "")),
        vec![(K::MissingAttribute, "b".to_string())]
    );
    let unknown = errors(&process(r#"attachedToRef="nope""#), "");
    assert_eq!(
        codes(&unknown),
        vec![(K::UnknownReference, "b".to_string())]
    );
    let to_event = errors(&process(r#"attachedToRef="end""#), "");
    assert_eq!(
        codes(&to_event),
        vec![(K::InvalidReference, "b".to_string())]
    );
    let model = ok(&process(r#"attachedToRef="task""#), "");
    let definition = &model.processes[0];
    let task = definition.find("task").expect("task");
    assert_eq!(
        definition.boundary_events(task),
        &[definition.find("b").expect("b")]
    );
}

#[test]
fn unsupported_elements_are_named() {
    let error = errors(
        &LINEAR.replace("TASK", r#"<bpmn:complexGateway id="task"/>"#),
        "",
    );
    has(&error, K::UnsupportedElement, "task");
    let message = &error.diagnostics[0].message;
    assert!(message.contains("complexGateway"), "{message}");
    let error = errors(
        &LINEAR.replace(
            "TASK",
            r#"<bpmn:task id="task"><bpmn:standardLoopCharacteristics/></bpmn:task>"#,
        ),
        "",
    );
    has(&error, K::UnsupportedElement, "task");
}

#[test]
fn gateways_need_conditions_or_a_default() {
    let process = |default: &str, condition: &str| {
        format!(
            r#"<bpmn:startEvent id="start"/>
            <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="gw"/>
            <bpmn:exclusiveGateway id="gw" {default}/>
            <bpmn:sequenceFlow id="yes" sourceRef="gw" targetRef="a">
              <bpmn:conditionExpression>{condition}</bpmn:conditionExpression></bpmn:sequenceFlow>
            <bpmn:sequenceFlow id="no" sourceRef="gw" targetRef="b"/>
            <bpmn:endEvent id="a"/><bpmn:endEvent id="b"/>"#
        )
    };
    let missing = errors(&process("", "=amount &gt; 100"), "");
    assert_eq!(codes(&missing), vec![(K::InvalidGateway, "no".to_string())]);
    let model = ok(&process(r#"default="no""#, "=amount &gt; 100"), "");
    let definition = &model.processes[0];
    let gateway = definition.find("gw").expect("gw");
    let ElementKind::ExclusiveGateway {
        default: Some(default),
    } = definition.element(gateway).kind
    else {
        panic!("expected a default flow");
    };
    assert_eq!(definition.flow(default).id, "no");
    let juel = errors(&process(r#"default="no""#, "${amount > 100}"), "");
    assert_eq!(
        codes(&juel),
        vec![(K::InvalidExpression, "yes".to_string())]
    );
    assert!(juel.diagnostics[0].message.contains("JUEL"));
    let syntax = errors(&process(r#"default="no""#, "=amount &gt;"), "");
    assert_eq!(
        codes(&syntax),
        vec![(K::InvalidExpression, "yes".to_string())]
    );
}

#[test]
fn timers_are_parsed_and_placed() {
    let catch = |definition: &str| {
        LINEAR.replace(
            "TASK",
            &format!(
                r#"<bpmn:intermediateCatchEvent id="task"><bpmn:timerEventDefinition>
                   {definition}</bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>"#
            ),
        )
    };
    ok(&catch("<bpmn:timeDuration>PT15M</bpmn:timeDuration>"), "");
    ok(
        &catch("<bpmn:timeDate>2026-12-01T09:00:00Z</bpmn:timeDate>"),
        "",
    );
    ok(
        &catch("<bpmn:timeDuration>=reminder</bpmn:timeDuration>"),
        "",
    );
    let bad = errors(
        &catch("<bpmn:timeDuration>15 minutes</bpmn:timeDuration>"),
        "",
    );
    assert_eq!(codes(&bad), vec![(K::InvalidTimer, "task".to_string())]);
    let cycle = errors(&catch("<bpmn:timeCycle>R3/PT1M</bpmn:timeCycle>"), "");
    assert_eq!(codes(&cycle), vec![(K::InvalidTimer, "task".to_string())]);
    let empty = errors(&catch(""), "");
    assert_eq!(codes(&empty), vec![(K::InvalidTimer, "task".to_string())]);
}

#[test]
fn subprocesses_need_one_none_start_event() {
    let process = |inner: &str| {
        LINEAR.replace(
            "TASK",
            &format!(r#"<bpmn:subProcess id="task">{inner}</bpmn:subProcess>"#),
        )
    };
    let empty = errors(&process(""), "");
    assert_eq!(
        codes(&empty),
        vec![(K::MissingStartEvent, "task".to_string())]
    );
    let model = ok(
        &process(
            r#"<bpmn:startEvent id="s2"/><bpmn:sequenceFlow id="g" sourceRef="s2" targetRef="e2"/>
               <bpmn:endEvent id="e2"/>"#,
        ),
        "",
    );
    let definition = &model.processes[0];
    let sub = definition.find("task").expect("subprocess");
    assert_eq!(definition.children(sub).len(), 2);
    let crossing = errors(
        &process(
            r#"<bpmn:startEvent id="s2"/><bpmn:sequenceFlow id="g" sourceRef="s2" targetRef="end"/>"#,
        ),
        "",
    );
    has(&crossing, K::InvalidReference, "g");
}

#[test]
fn link_events_jump_within_their_scope() {
    let process = |catch_name: &str| {
        format!(
            r#"<bpmn:startEvent id="start"/>
            <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="throw"/>
            <bpmn:intermediateThrowEvent id="throw"><bpmn:linkEventDefinition name="A"/>
            </bpmn:intermediateThrowEvent>
            <bpmn:intermediateCatchEvent id="catch"><bpmn:linkEventDefinition name="{catch_name}"/>
            </bpmn:intermediateCatchEvent>
            <bpmn:sequenceFlow id="f2" sourceRef="catch" targetRef="end"/>
            <bpmn:endEvent id="end"/>"#
        )
    };
    ok(&process("A"), "");
    let error = errors(&process("B"), "");
    assert_eq!(
        codes(&error),
        vec![(K::InvalidReference, "throw".to_string())]
    );
}

#[test]
fn camunda_extensions_are_read() {
    let model = ok(
        &LINEAR.replace(
            "TASK",
            r#"<bpmn:callActivity id="task"><bpmn:extensionElements>
                 <zeebe:calledElement processId="=childId" propagateAllChildVariables="false"/>
                 <zeebe:ioMapping><zeebe:input source="=order.id" target="orderId"/>
                   <zeebe:output source="=result" target="outcome"/></zeebe:ioMapping>
                 <zeebe:properties><zeebe:property name="team" value="blue"/></zeebe:properties>
               </bpmn:extensionElements>
               <bpmn:multiInstanceLoopCharacteristics isSequential="true">
                 <bpmn:extensionElements><zeebe:loopCharacteristics inputCollection="=items"
                   inputElement="item" outputCollection="results" outputElement="=out"/>
                 </bpmn:extensionElements>
                 <bpmn:completionCondition>=count(results) &gt;= 2</bpmn:completionCondition>
               </bpmn:multiInstanceLoopCharacteristics></bpmn:callActivity>"#,
        ),
        "",
    );
    let definition = &model.processes[0];
    let task = definition.element(definition.find("task").expect("call activity"));
    let ElementKind::CallActivity(called) = &task.kind else {
        panic!("{:?}", task.kind)
    };
    assert!(called.process_id.is_feel());
    assert!(!called.propagate_all_child_variables);
    assert!(called.propagate_all_parent_variables);
    assert_eq!(task.io_mapping.inputs[0].target, "orderId");
    assert_eq!(task.io_mapping.outputs[0].target, "outcome");
    assert_eq!(
        task.properties,
        vec![("team".to_string(), "blue".to_string())]
    );
    let multi = task.multi_instance.as_ref().expect("multi-instance");
    assert!(multi.sequential);
    assert_eq!(multi.input_collection.source(), "items");
    assert_eq!(multi.output_collection.as_deref(), Some("results"));
    assert!(multi.completion_condition.is_some());
}

/// `zeebe:executionListeners` with these `(eventType, type, retries)` entries.
fn execution_listeners(entries: &[(&str, &str, Option<&str>)]) -> String {
    let inner: String = entries
        .iter()
        .map(|(event, job_type, retries)| {
            let retries = retries
                .map(|retries| format!(r#" retries="{retries}""#))
                .unwrap_or_default();
            format!(r#"<zeebe:executionListener eventType="{event}" type="{job_type}"{retries}/>"#)
        })
        .collect();
    format!(
        "<bpmn:extensionElements><zeebe:executionListeners>{inner}</zeebe:executionListeners></bpmn:extensionElements>"
    )
}

#[test]
fn execution_listeners_compile_in_document_order_on_elements_and_the_process() {
    let task = format!(
        r#"<bpmn:task id="task">{}</bpmn:task>"#,
        execution_listeners(&[
            ("start", "audit", None),
            ("end", "=kind", Some("5")),
            ("start", "check", Some("=tries")),
            ("end", "audit", None),
        ])
    );
    let process = format!(
        "{}{}",
        execution_listeners(&[("end", "process-end", None)]),
        LINEAR.replace("TASK", &task)
    );
    let model = ok(&process, "");
    let process = &model.processes[0];
    assert!(process.has_execution_listeners());
    let listeners = &process.element(process.find("task").unwrap()).listeners;
    let texts = |list: &[ringflow_bpmn::JobDefinition]| -> Vec<(String, String)> {
        list.iter()
            .map(|job| (job.job_type.to_string(), job.retries.to_string()))
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        texts(&listeners.start),
        vec![pair("audit", "3"), pair("check", "=tries")]
    );
    assert_eq!(
        texts(&listeners.end),
        vec![pair("=kind", "5"), pair("audit", "3")]
    );
    let root = &process
        .element(ringflow_bpmn::ProcessDefinition::ROOT)
        .listeners;
    assert!(root.start.is_empty());
    assert_eq!(texts(&root.end), vec![pair("process-end", "3")]);
    let plain = ok(&LINEAR.replace("TASK", &job("task", "a")), "");
    assert!(!plain.processes[0].has_execution_listeners());
}

#[test]
fn execution_listeners_where_camunda_does_not_run_them_are_refused_with_the_reason() {
    let start_on_start = format!(
        r#"<bpmn:startEvent id="start">{}</bpmn:startEvent>
           <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="gate"/>
           <bpmn:exclusiveGateway id="gate">{}</bpmn:exclusiveGateway>
           <bpmn:sequenceFlow id="f2" sourceRef="gate" targetRef="task"/>
           {}
           <bpmn:boundaryEvent id="timer" attachedToRef="task">{}
             <bpmn:timerEventDefinition><bpmn:timeDuration>PT1M</bpmn:timeDuration>
             </bpmn:timerEventDefinition></bpmn:boundaryEvent>
           <bpmn:sequenceFlow id="f3" sourceRef="task" targetRef="end"/>
           <bpmn:sequenceFlow id="f4" sourceRef="timer" targetRef="end"/>
           <bpmn:endEvent id="end"><bpmn:errorEventDefinition errorRef="e"/>{}</bpmn:endEvent>"#,
        execution_listeners(&[("start", "a", None)]),
        execution_listeners(&[("start", "fine", None), ("end", "b", None)]),
        job("task", "work"),
        execution_listeners(&[("start", "c", None), ("end", "fine", None)]),
        execution_listeners(&[("start", "fine", None), ("end", "d", None)]),
    );
    // The end event's listeners go inside its extensionElements, before the definition.
    let process = start_on_start
        .replace(
            r#"<bpmn:errorEventDefinition errorRef="e"/><bpmn:extensionElements>"#,
            r#"<bpmn:extensionElements>"#,
        )
        .replace(
            r#"</bpmn:extensionElements></bpmn:endEvent>"#,
            r#"</bpmn:extensionElements><bpmn:errorEventDefinition errorRef="e"/></bpmn:endEvent>"#,
        );
    let error = errors(&process, r#"<bpmn:error id="e" errorCode="E"/>"#);
    assert_eq!(
        codes(&error),
        vec![
            (K::UnsupportedElement, "start".to_string()),
            (K::UnsupportedElement, "gate".to_string()),
            (K::UnsupportedElement, "timer".to_string()),
            (K::UnsupportedElement, "end".to_string()),
        ],
        "{error}"
    );
    let text = error.to_string();
    for reason in [
        "on start events",
        "on gateways",
        "on boundary events",
        "on error end events",
    ] {
        assert!(text.contains(reason), "`{reason}` in:\n{text}");
    }
}

#[test]
fn malformed_execution_listeners_are_named() {
    let task = format!(
        r#"<bpmn:task id="task">{}</bpmn:task>"#,
        execution_listeners(&[
            ("start", "same", None),
            ("start", "same", None),
            ("end", "same", None),
            ("begin", "x", None),
            ("end", "", None),
            ("end", "y", Some("many")),
            ("end", "=(", None),
        ])
    );
    let error = errors(&LINEAR.replace("TASK", &task), "");
    assert_eq!(
        codes(&error),
        vec![
            (K::InvalidValue, "task".to_string()),
            (K::InvalidValue, "task".to_string()),
            (K::MissingJobType, "task".to_string()),
            (K::InvalidValue, "task".to_string()),
            (K::InvalidExpression, "task".to_string()),
        ],
        "{error}"
    );
    let text = error.to_string();
    for part in [
        "two start execution listeners have the type `same`",
        "eventType=\"begin\"",
        "has no job type",
        "retries=\"many\"",
    ] {
        assert!(text.contains(part), "`{part}` in:\n{text}");
    }
}

#[test]
fn task_listeners_that_ringflow_cannot_run_are_refused_not_ignored() {
    let task = |listeners: &str, camunda: &str| {
        LINEAR.replace(
            "TASK",
            &format!(
                r#"<bpmn:userTask id="task"><bpmn:extensionElements>{camunda}
                     <zeebe:taskListeners>{listeners}</zeebe:taskListeners>
                   </bpmn:extensionElements></bpmn:userTask>"#
            ),
        )
    };
    let cases = [
        (
            r#"<zeebe:taskListener eventType="canceling" type="notify"/>"#,
            "<zeebe:userTask/>",
            K::UnsupportedElement,
            "eventType=\"canceling\" is not supported yet",
        ),
        (
            r#"<zeebe:taskListener eventType="completing" type="audit"/>"#,
            "",
            K::UnsupportedElement,
            "need a Camunda user task",
        ),
        (
            r#"<zeebe:taskListener eventType="finishing" type="audit"/>"#,
            "<zeebe:userTask/>",
            K::InvalidValue,
            "it must be creating, assigning, updating, completing or canceling",
        ),
        (
            r#"<zeebe:taskListener eventType="completing"/>"#,
            "<zeebe:userTask/>",
            K::MissingJobType,
            "a completing zeebe:taskListener has no job type",
        ),
        (
            r#"<zeebe:taskListener eventType="completing" type="a"/>
               <zeebe:taskListener eventType="complete" type="a"/>"#,
            "<zeebe:userTask/>",
            K::InvalidValue,
            "two completing task listeners have the type `a`",
        ),
    ];
    for (listeners, camunda, kind, message) in cases {
        let error = errors(&task(listeners, camunda), "");
        assert_eq!(
            codes(&error),
            vec![(kind, "task".to_string())],
            "{listeners}"
        );
        assert!(error.to_string().contains(message), "{listeners}: {error}");
    }
    // On anything but a user task the element is refused.
    let error = errors(
        &LINEAR.replace(
            "TASK",
            r#"<bpmn:serviceTask id="task"><bpmn:extensionElements>
                 <zeebe:taskDefinition type="work"/>
                 <zeebe:taskListeners><zeebe:taskListener eventType="completing" type="a"/>
                 </zeebe:taskListeners></bpmn:extensionElements></bpmn:serviceTask>"#,
        ),
        "",
    );
    assert!(
        error
            .to_string()
            .contains("zeebe:taskListeners belong on a user task"),
        "{error}"
    );
    // Creating and completing listeners (and their older names) are read.
    let parsed = ok(
        &task(
            r#"<zeebe:taskListener eventType="creating" type="enrich" retries="2"/>
               <zeebe:taskListener eventType="completing" type="check"/>
               <zeebe:taskListener eventType="complete" type="=audit"/>
           <zeebe:taskListener eventType="assignment" type="notify"/>
           <zeebe:taskListener eventType="update" type="notify"/>"#,
            "<zeebe:userTask/>",
        ),
        "",
    );
    let task = parsed.processes[0]
        .elements()
        .iter()
        .find_map(|element| match &element.kind {
            ringflow_bpmn::ElementKind::UserTask(task) => Some(task),
            _ => None,
        })
        .expect("the user task");
    assert_eq!(task.listeners.creating.len(), 1);
    assert_eq!(task.listeners.completing.len(), 2);
    assert_eq!(task.listeners.assigning.len(), 1);
    assert_eq!(task.listeners.updating.len(), 1);
    assert_eq!(task.listeners.creating[0].retries.as_static(), Some("2"));
    assert!(task.listeners.completing[1].job_type.is_feel());
}

#[test]
fn non_executable_processes_are_listed_not_compiled() {
    let xml = model("", "").replace("isExecutable=\"true\"", "isExecutable=\"false\"");
    let error = parse(xml.as_bytes()).expect_err("nothing executable");
    assert_eq!(error.diagnostics[0].kind, K::NoExecutableProcess);
    let collaboration = format!(
        r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
             xmlns:zeebe="http://camunda.org/schema/zeebe/1.0">
           <bpmn:process id="other"/>
           <bpmn:process id="p" isExecutable="true">{}</bpmn:process></bpmn:definitions>"#,
        LINEAR.replace("TASK", &job("task", "a"))
    );
    let model = parse(collaboration.as_bytes()).expect("one executable process");
    assert_eq!(model.processes.len(), 1);
    assert_eq!(model.non_executable, vec!["other".to_string()]);
}

#[test]
fn default_namespace_and_prerelease_namespace_are_accepted() {
    for namespace in [
        "http://www.omg.org/spec/BPMN/20100524/MODEL",
        "http://schema.omg.org/spec/BPMN/2.0",
    ] {
        let xml = format!(
            r#"<definitions xmlns="{namespace}"><process id="p" isExecutable="true">
                 <startEvent id="s"/><sequenceFlow id="f" sourceRef="s" targetRef="e"/>
                 <endEvent id="e"/></process></definitions>"#
        );
        let model = parse(xml.as_bytes()).expect("valid");
        assert_eq!(
            model.processes[0].element_counts(),
            vec![("endEvent", 1), ("sequenceFlow", 1), ("startEvent", 1)]
        );
    }
}

#[test]
fn references_may_be_qualified_names() {
    let xml = model(
        &LINEAR.replace(
            "TASK",
            r#"<bpmn:receiveTask id="task" messageRef="tns:m"/>"#,
        ),
        r#"<bpmn:message id="m" name="paid"><bpmn:extensionElements>
             <zeebe:subscription correlationKey="=orderId"/></bpmn:extensionElements></bpmn:message>"#,
    );
    parse(xml.as_bytes()).expect("tns:m resolves to m");
}

#[test]
fn encodings_are_decoded_end_to_end() {
    let xml = model(
        &LINEAR.replace("TASK", r#"<bpmn:task id="task" name="Käse prüfen"/>"#),
        "",
    );
    // UTF-16LE with a byte order mark, declaring itself as UTF-16.
    let utf16 = xml.replace(r#"encoding="UTF-8""#, r#"encoding="UTF-16""#);
    let mut bytes = vec![0xFF, 0xFE];
    for unit in utf16.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    let model = parse(&bytes).expect("UTF-16LE");
    let task = model.processes[0].find("task").expect("task");
    assert_eq!(
        model.processes[0].element(task).name.as_deref(),
        Some("Käse prüfen")
    );
    // ISO-8859-1, declared.
    let latin1_text = xml.replace(r#"encoding="UTF-8""#, r#"encoding="ISO-8859-1""#);
    let latin1: Vec<u8> = latin1_text
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("Latin-1"))
        .collect();
    let model = parse(&latin1).expect("ISO-8859-1");
    let task = model.processes[0].find("task").expect("task");
    assert_eq!(
        model.processes[0].element(task).name.as_deref(),
        Some("Käse prüfen")
    );
    // The same Latin-1 bytes declared as UTF-8 are rejected at the first bad byte.
    let wrong = latin1_text.replace("ISO-8859-1", "UTF-8");
    let wrong: Vec<u8> = wrong
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("Latin-1"))
        .collect();
    let error = parse(&wrong).expect_err("not UTF-8");
    assert_eq!(error.diagnostics[0].kind, K::Encoding);
    assert!(error.diagnostics[0].message.contains("0xE4"), "{error}");
}

/// start -> `a` (with a compensation boundary event and its handler) -> `throw` -> end,
/// with `throw`'s definition and any extra content given.
fn compensation(definition: &str, extra: &str) -> String {
    format!(
        r#"<bpmn:startEvent id="start"/>
        <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="a"/>
        {a}
        <bpmn:boundaryEvent id="b" attachedToRef="a"><bpmn:compensateEventDefinition/></bpmn:boundaryEvent>
        {undo}
        <bpmn:association id="as" sourceRef="b" targetRef="undo"/>
        <bpmn:sequenceFlow id="f2" sourceRef="a" targetRef="throw"/>
        <bpmn:intermediateThrowEvent id="throw">{definition}</bpmn:intermediateThrowEvent>
        <bpmn:sequenceFlow id="f3" sourceRef="throw" targetRef="end"/>
        <bpmn:endEvent id="end"/>{extra}"#,
        a = job("a", "a"),
        undo = job("undo", "undo").replace(r#"id="undo""#, r#"id="undo" isForCompensation="true""#),
    )
}

#[test]
fn compensation_throws_name_a_compensable_activity_of_their_scope_and_always_wait() {
    ok(
        &compensation(r#"<bpmn:compensateEventDefinition activityRef="a"/>"#, ""),
        "",
    );
    ok(
        &compensation(
            r#"<bpmn:compensateEventDefinition waitForCompletion="true"/>"#,
            "",
        ),
        "",
    );
    let error = errors(
        &compensation(
            r#"<bpmn:compensateEventDefinition waitForCompletion="false"/>"#,
            "",
        ),
        "",
    );
    has(&error, K::InvalidEventDefinition, "throw");
    assert!(error.to_string().contains("waitForCompletion"), "{error}");

    // `c` has no compensation boundary event: compensating it would do nothing.
    let nothing = compensation(
        r#"<bpmn:compensateEventDefinition activityRef="c"/>"#,
        &job("c", "c"),
    )
    .replace(
        r#"targetRef="throw"/>"#,
        r#"targetRef="c"/><bpmn:sequenceFlow id="f4" sourceRef="c" targetRef="throw"/>"#,
    );
    let error = errors(&nothing, "");
    has(&error, K::InvalidReference, "throw");
    assert!(
        error.to_string().contains("nothing to compensate"),
        "{error}"
    );

    // An activity inside a subprocess is not in the throw's scope.
    let nested = compensation(
        r#"<bpmn:compensateEventDefinition activityRef="inner"/>"#,
        r#"<bpmn:subProcess id="sub"><bpmn:startEvent id="s2"/>
             <bpmn:sequenceFlow id="g1" sourceRef="s2" targetRef="inner"/>
             <bpmn:task id="inner"/>
             <bpmn:boundaryEvent id="ib" attachedToRef="inner">
               <bpmn:compensateEventDefinition/></bpmn:boundaryEvent>
             <bpmn:task id="undo-inner" isForCompensation="true"/>
             <bpmn:association id="as2" sourceRef="ib" targetRef="undo-inner"/>
             <bpmn:sequenceFlow id="g2" sourceRef="inner" targetRef="e2"/>
             <bpmn:endEvent id="e2"/></bpmn:subProcess>
           <bpmn:sequenceFlow id="f5" sourceRef="start" targetRef="sub"/>"#,
    );
    let error = errors(&nested, "");
    has(&error, K::InvalidReference, "throw");
    assert!(error.to_string().contains("scope"), "{error}");
    // Naming the subprocess that holds it is fine: it compensates what completed inside.
    ok(
        &nested.replace(r#"activityRef="inner""#, r#"activityRef="sub""#),
        "",
    );
}

#[test]
fn a_compensation_handler_has_no_boundary_events() {
    let error = errors(
        &compensation(
            "<bpmn:compensateEventDefinition/>",
            r#"<bpmn:boundaryEvent id="late" attachedToRef="undo">
                 <bpmn:timerEventDefinition><bpmn:timeDuration>PT1M</bpmn:timeDuration>
                 </bpmn:timerEventDefinition></bpmn:boundaryEvent>
               <bpmn:sequenceFlow id="f9" sourceRef="late" targetRef="end"/>"#,
        ),
        "",
    );
    has(&error, K::InvalidFlow, "undo");
    assert!(error.to_string().contains("boundary events"), "{error}");
}

/// A conditional event definition with `condition` and, unless empty, a
/// `zeebe:conditionalFilter` with `filter` attributes.
fn conditional(condition: &str, filter: &str) -> String {
    let filter = if filter.is_empty() {
        String::new()
    } else {
        format!(
            "<bpmn:extensionElements><zeebe:conditionalFilter {filter}/></bpmn:extensionElements>"
        )
    };
    let condition = if condition.is_empty() {
        String::new()
    } else {
        format!("<bpmn:condition>{condition}</bpmn:condition>")
    };
    format!(
        "<bpmn:conditionalEventDefinition>{filter}{condition}</bpmn:conditionalEventDefinition>"
    )
}

/// start -> catch event `c` (with `definition`) -> end.
fn conditional_catch(definition: &str) -> String {
    format!(
        r#"<bpmn:startEvent id="start"/>
           <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="c"/>
           <bpmn:intermediateCatchEvent id="c">{definition}</bpmn:intermediateCatchEvent>
           <bpmn:sequenceFlow id="f2" sourceRef="c" targetRef="end"/>
           <bpmn:endEvent id="end"/>"#
    )
}

/// The condition of the catch event `c` of a model made with [`conditional_catch`].
fn catch_condition(model: &Model) -> ringflow_bpmn::Condition {
    let definition = &model.processes[0];
    let index = definition.find("c").expect("the catch event");
    match &definition.element(index).kind {
        ElementKind::IntermediateCatchEvent(ringflow_bpmn::CatchTrigger::Conditional(
            condition,
        )) => condition.clone(),
        other => panic!("a conditional catch event, not {other:?}"),
    }
}

#[test]
fn conditional_events_read_their_condition_and_filter() {
    let model = ok(
        &conditional_catch(&conditional("= x.total &gt; limit and ready", "")),
        "",
    );
    let condition = catch_condition(&model);
    assert_eq!(condition.variables, ["limit", "ready", "total", "x"]);
    assert!(condition.on_create && condition.on_update);
    assert!(condition.watches("x", true) && !condition.watches("y", false));

    let model = ok(
        &conditional_catch(&conditional(
            "= x &gt; 1",
            r#"variableNames=" b, a ,," variableEvents="update""#,
        )),
        "",
    );
    let condition = catch_condition(&model);
    assert_eq!(condition.variables, ["a", "b"]);
    assert!(!condition.on_create && condition.on_update);
    assert!(condition.watches("a", false) && !condition.watches("a", true));
    assert!(!condition.watches("x", false));
}

#[test]
fn broken_conditional_events_are_reported() {
    let missing = errors(&conditional_catch(&conditional("", "")), "");
    has(&missing, K::MissingAttribute, "c");
    let juel = errors(&conditional_catch(&conditional("${x > 1}", "")), "");
    has(&juel, K::InvalidExpression, "c");
    assert!(juel.to_string().contains("JUEL"), "{juel}");
    let syntax = errors(&conditional_catch(&conditional("= x &gt;", "")), "");
    has(&syntax, K::InvalidExpression, "c");
    let delete = errors(
        &conditional_catch(&conditional("= x", r#"variableEvents="create, delete""#)),
        "",
    );
    has(&delete, K::InvalidValue, "c");
    assert!(delete.to_string().contains("`delete`"), "{delete}");
}

#[test]
fn conditional_starts_stand_at_the_process_or_in_event_subprocesses() {
    let root = |first: &str, second: &str, filter: &str| {
        format!(
            r#"<bpmn:startEvent id="a">{}</bpmn:startEvent>
               <bpmn:startEvent id="b">{}</bpmn:startEvent>
               <bpmn:sequenceFlow id="f1" sourceRef="a" targetRef="end"/>
               <bpmn:sequenceFlow id="f2" sourceRef="b" targetRef="end"/>
               <bpmn:endEvent id="end"/>"#,
            conditional(first, filter),
            conditional(second, "")
        )
    };
    ok(&root("= amount &gt; 100", "= vip", ""), "");
    // As in Camunda 8: each conditional start event of a process has its own condition.
    let twice = errors(&root("= vip", "= vip", ""), "");
    has(&twice, K::InvalidStartEvent, "b");
    // variableEvents has no meaning where no variable changes.
    let events = errors(&root("= go", "= vip", r#"variableEvents="create""#), "");
    has(&events, K::InvalidValue, "a");
    let embedded = errors(
        &format!(
            r#"<bpmn:startEvent id="start"/>
               <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="sub"/>
               <bpmn:subProcess id="sub">
                 <bpmn:startEvent id="inner">{}</bpmn:startEvent>
                 <bpmn:sequenceFlow id="f2" sourceRef="inner" targetRef="inner-end"/>
                 <bpmn:endEvent id="inner-end"/>
               </bpmn:subProcess>
               <bpmn:sequenceFlow id="f3" sourceRef="sub" targetRef="end"/>
               <bpmn:endEvent id="end"/>"#,
            conditional("= go", "")
        ),
        "",
    );
    has(&embedded, K::InvalidEventDefinition, "inner");
    // In an event subprocess, interrupting or not, it is a start trigger.
    ok(
        &format!(
            r#"<bpmn:startEvent id="start"/>
               <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="end"/>
               <bpmn:endEvent id="end"/>
               <bpmn:subProcess id="esp" triggeredByEvent="true">
                 <bpmn:startEvent id="cs" isInterrupting="false">{}</bpmn:startEvent>
                 <bpmn:sequenceFlow id="f2" sourceRef="cs" targetRef="esp-end"/>
                 <bpmn:endEvent id="esp-end"/>
               </bpmn:subProcess>"#,
            conditional("= go", "")
        ),
        "",
    );
}

/// An ad-hoc subprocess with `inner` inside, between a start and an end event.
fn ad_hoc(attributes: &str, extensions: &str, inner: &str) -> String {
    format!(
        r#"<bpmn:startEvent id="start"/>
        <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="adhoc"/>
        <bpmn:adHocSubProcess id="adhoc" {attributes}>
          <bpmn:extensionElements>{extensions}</bpmn:extensionElements>
          {inner}
        </bpmn:adHocSubProcess>
        <bpmn:sequenceFlow id="f2" sourceRef="adhoc" targetRef="end"/>
        <bpmn:endEvent id="end"/>"#
    )
}

#[test]
fn ad_hoc_subprocesses_compile_with_their_zeebe_attributes() {
    let inner = format!(
        r#"{}{}<bpmn:sequenceFlow id="fa" sourceRef="a" targetRef="b"/>
           <bpmn:userTask id="c" name="Review"><bpmn:documentation>Check the order</bpmn:documentation>
             <bpmn:extensionElements><zeebe:properties><zeebe:property name="tool" value="yes"/></zeebe:properties></bpmn:extensionElements></bpmn:userTask>
           <bpmn:completionCondition>= count(results) &gt; 1</bpmn:completionCondition>"#,
        job("a", "a"),
        job("b", "b"),
    );
    let model = ok(
        &ad_hoc(
            r#"cancelRemainingInstances="false""#,
            r#"<zeebe:adHoc activeElementsCollection="= toRun" outputCollection="results" outputElement="= result"/>"#,
            &inner,
        ),
        "",
    );
    let definition = &model.processes[0];
    let index = definition.find("adhoc").expect("adhoc");
    let ElementKind::AdHocSubProcess(spec) = &definition.element(index).kind else {
        panic!("an ad-hoc subprocess");
    };
    assert_eq!(spec.active_elements.as_ref().unwrap().source(), "toRun");
    assert_eq!(
        spec.completion_condition.as_ref().unwrap().source(),
        "count(results) > 1"
    );
    assert!(!spec.cancel_remaining_instances);
    assert_eq!(spec.output_collection.as_deref(), Some("results"));
    assert_eq!(spec.output_element.as_ref().unwrap().source(), "result");
    let activatable: Vec<&str> = definition
        .activatable(index)
        .map(|element| &*definition.element(element).id)
        .collect();
    assert_eq!(activatable, ["a", "c"], "b follows a sequence flow");
    let c = definition.element(definition.find("c").unwrap());
    assert_eq!(c.documentation.as_deref(), Some("Check the order"));
    // Without zeebe:adHoc: nothing activated on entry, the default cancels the rest.
    let model = ok(&ad_hoc("", "", &job("a", "a")), "");
    let definition = &model.processes[0];
    let ElementKind::AdHocSubProcess(spec) =
        &definition.element(definition.find("adhoc").unwrap()).kind
    else {
        panic!("an ad-hoc subprocess");
    };
    assert!(spec.active_elements.is_none() && spec.cancel_remaining_instances);
}

#[test]
fn ad_hoc_subprocesses_are_checked_as_camunda_checks_them() {
    let start_inside = errors(
        &ad_hoc(
            "",
            "",
            &format!(r#"<bpmn:startEvent id="s"/>{}"#, job("a", "a")),
        ),
        "",
    );
    assert_eq!(
        codes(&start_inside),
        vec![(K::InvalidFlow, "s".to_string())]
    );
    let end_inside = errors(
        &ad_hoc(
            "",
            "",
            &format!(r#"<bpmn:endEvent id="e"/>{}"#, job("a", "a")),
        ),
        "",
    );
    assert_eq!(codes(&end_inside), vec![(K::InvalidFlow, "e".to_string())]);
    let empty = errors(
        &ad_hoc("", "", r#"<bpmn:intermediateThrowEvent id="t"/>"#),
        "",
    );
    assert_eq!(codes(&empty), vec![(K::InvalidFlow, "adhoc".to_string())]);
    let half = errors(
        &ad_hoc(
            "",
            r#"<zeebe:adHoc outputCollection="results"/>"#,
            &job("a", "a"),
        ),
        "",
    );
    assert_eq!(
        codes(&half),
        vec![(K::MissingAttribute, "adhoc".to_string())]
    );
    let juel = errors(
        &ad_hoc(
            "",
            r#"<zeebe:adHoc activeElementsCollection="${x}"/>"#,
            &job("a", "a"),
        ),
        "",
    );
    assert_eq!(
        codes(&juel),
        vec![(K::InvalidExpression, "adhoc".to_string())]
    );
    // The job-worker implementation: the worker decides what the three would.
    let worker = |attributes: &str, extensions: &str, inner: &str| {
        ad_hoc(
            attributes,
            &format!(r#"<zeebe:taskDefinition type="agent" retries="5"/>{extensions}"#),
            inner,
        )
    };
    let model = ok(&worker("", "", &job("a", "a")), "");
    let definition = &model.processes[0];
    let ElementKind::AdHocSubProcess(spec) =
        &definition.element(definition.find("adhoc").unwrap()).kind
    else {
        panic!("an ad-hoc subprocess");
    };
    assert!(spec.job.is_some());
    let conflicting = errors(
        &worker(
            r#"cancelRemainingInstances="false""#,
            r#"<zeebe:adHoc activeElementsCollection="= x"/>"#,
            &format!(
                "{}<bpmn:completionCondition>= done</bpmn:completionCondition>",
                job("a", "a")
            ),
        ),
        "",
    );
    assert_eq!(
        codes(&conflicting),
        vec![(K::InvalidValue, "adhoc".to_string()); 3]
    );
    for (diagnostic, what) in conflicting.diagnostics.iter().zip([
        "activeElementsCollection",
        "completionCondition",
        "cancelRemainingInstances",
    ]) {
        assert!(diagnostic.message.contains(what), "{}", diagnostic.message);
    }
    let untyped = errors(
        &worker("", "", &job("a", "a")).replace(r#" type="agent""#, ""),
        "",
    );
    assert_eq!(
        codes(&untyped),
        vec![(K::MissingJobType, "adhoc".to_string())]
    );
    let compensation = errors(
        &ad_hoc(
            "",
            "",
            &format!(
                r#"{}<bpmn:boundaryEvent id="comp" attachedToRef="a"><bpmn:compensateEventDefinition/></bpmn:boundaryEvent>
                   <bpmn:serviceTask id="undo" isForCompensation="true"><bpmn:extensionElements><zeebe:taskDefinition type="undo"/></bpmn:extensionElements></bpmn:serviceTask>
                   <bpmn:association id="as" sourceRef="comp" targetRef="undo"/>"#,
                job("a", "a")
            ),
        ),
        "",
    );
    has(&compensation, K::UnsupportedElement, "comp");
    let misplaced = errors(
        &LINEAR.replace(
            "TASK",
            r#"<bpmn:task id="task"><bpmn:extensionElements><zeebe:adHoc activeElementsCollection="= x"/></bpmn:extensionElements></bpmn:task>"#,
        ),
        "",
    );
    assert_eq!(
        codes(&misplaced),
        vec![(K::UnsupportedElement, "task".to_string())]
    );
}

/// A service task `id` (job type `tool`) with these `zeebe:input` mappings (source, target).
fn tool(id: &str, inputs: &[(&str, &str)]) -> String {
    let inputs: String = inputs
        .iter()
        .map(|(source, target)| format!(r#"<zeebe:input source="{source}" target="{target}"/>"#))
        .collect();
    format!(
        r#"<bpmn:serviceTask id="{id}"><bpmn:extensionElements><zeebe:taskDefinition type="tool"/>
           <zeebe:ioMapping>{inputs}</zeebe:ioMapping></bpmn:extensionElements></bpmn:serviceTask>"#
    )
}

#[test]
fn tool_parameters_are_read_from_the_fromai_calls_of_what_an_ad_hoc_subprocess_activates() {
    let inner = format!(
        r#"{}{}<bpmn:sequenceFlow id="fa" sourceRef="lookup" targetRef="after"/>"#,
        tool(
            "lookup",
            &[
                (
                    "=fromAi(toolCall.customerId, &quot;The customer&apos;s id&quot;, &quot;string&quot;)",
                    "customerId"
                ),
                ("=123", "fixed"),
                ("static", "text"),
                (
                    "={q: fromAi(value: toolCall.query, schema: {maxLength: 100}), n: fromAi(toolCall.limit, &quot;How many&quot;, &quot;integer&quot;, {minimum: 1}, {required: false})}",
                    "search"
                ),
            ]
        ),
        tool("after", &[("=fromAi(toolCall.ignored)", "x")]),
    );
    let model = ok(&ad_hoc("", "", &inner), "");
    let definition = &model.processes[0];
    let lookup = definition.element(definition.find("lookup").unwrap());
    let context = |json: serde_json::Value| match json {
        serde_json::Value::Object(map) => Some(map),
        _ => panic!("a context"),
    };
    let text = |text: &str| Some(text.to_string());
    assert_eq!(
        lookup.tool_parameters,
        [
            ToolParameter {
                name: "toolCall.customerId".into(),
                description: text("The customer's id"),
                type_name: text("string"),
                schema: None,
                options: None,
            },
            ToolParameter {
                name: "toolCall.query".into(),
                description: None,
                type_name: None,
                schema: context(serde_json::json!({"maxLength": 100})),
                options: None,
            },
            ToolParameter {
                name: "toolCall.limit".into(),
                description: text("How many"),
                type_name: text("integer"),
                schema: context(serde_json::json!({"minimum": 1})),
                options: context(serde_json::json!({"required": false})),
            },
        ]
    );
    // `after` follows a sequence flow: it is not a tool, nothing is read from it.
    let after = definition.element(definition.find("after").unwrap());
    assert!(after.tool_parameters.is_empty());

    // A call that cannot describe a parameter is refused where it describes one...
    let bad = format!(
        "{}{}",
        tool("lookup", &[("=fromAi(&quot;toolCall.x&quot;)", "x")]),
        tool("other", &[("=fromAi(toolCall.y, 10)", "y")]),
    );
    let error = errors(&ad_hoc("", "", &bad), "");
    assert_eq!(
        codes(&error),
        vec![
            (K::InvalidExpression, "lookup".to_string()),
            (K::InvalidExpression, "other".to_string())
        ]
    );
    let message = &error.diagnostics[0].message;
    assert!(
        message.contains("input mapping to `x`") && message.contains("variable or a path"),
        "{message}"
    );
    assert!(
        error.diagnostics[1].message.contains("description"),
        "{}",
        error.diagnostics[1].message
    );
    // ...and evaluates to its value anywhere else.
    ok(
        &LINEAR.replace(
            "TASK",
            &tool("task", &[("=fromAi(&quot;toolCall.x&quot;, 10)", "x")]),
        ),
        "",
    );
    // Arguments that are not fromAi's are refused everywhere.
    let no_value = errors(
        &LINEAR.replace(
            "TASK",
            &tool("task", &[("=fromAi(description: &quot;d&quot;)", "x")]),
        ),
        "",
    );
    assert_eq!(
        codes(&no_value),
        vec![(K::InvalidExpression, "task".to_string())]
    );
    assert!(
        no_value.diagnostics[0].message.contains("needs its value"),
        "{}",
        no_value.diagnostics[0].message
    );
}
