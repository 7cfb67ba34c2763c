//! Keeps the element table in the repository README true: every row gets a small model that
//! uses the element. The "Model" column must match what `ringflow_bpmn::parse` does with it,
//! and every row marked "yes" in the "Engine" column must run to its end in the engine
//! (completing every job it creates) without an incident. A row without a model here fails
//! the test, so the table and the code move together.

mod common;

use ringflow_bpmn::{DiagnosticKind, parse};
use ringflow_core::Command;

const MESSAGE: &str = r#"<bpmn:message id="m" name="paid"><bpmn:extensionElements>
    <zeebe:subscription correlationKey="=orderId"/></bpmn:extensionElements></bpmn:message>
    <bpmn:error id="err" errorCode="E1"/><bpmn:signal id="sig" name="go"/>
    <bpmn:escalation id="esc" escalationCode="X1"/>"#;

/// A condition that holds for the variables every model here starts with.
const CONDITIONAL: &str = r#"<bpmn:conditionalEventDefinition>
    <bpmn:condition>= orderId = "o"</bpmn:condition></bpmn:conditionalEventDefinition>"#;

fn job(job_type: &str) -> String {
    format!(
        r#"<bpmn:extensionElements><zeebe:taskDefinition type="{job_type}"/></bpmn:extensionElements>"#
    )
}

fn wrap(body: &str) -> String {
    format!(
        r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
             xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
           <bpmn:process id="p" isExecutable="true">{body}</bpmn:process>{MESSAGE}
           </bpmn:definitions>"#
    )
}

/// start -> X -> end, where X is the given flow node with id `x`.
fn between(node: &str) -> String {
    wrap(&format!(
        r#"<bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="x"/>
           {node}<bpmn:sequenceFlow id="f2" sourceRef="x" targetRef="e"/><bpmn:endEvent id="e"/>"#
    ))
}

/// A start event with the given definition, then an end event.
fn start(definition: &str) -> String {
    wrap(&format!(
        r#"<bpmn:startEvent id="s">{definition}</bpmn:startEvent>
           <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="e"/><bpmn:endEvent id="e"/>"#
    ))
}

/// start -> end, where the end event has the given definition (and extension elements).
fn end(inner: &str) -> String {
    wrap(&format!(
        r#"<bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="e"/>
           <bpmn:endEvent id="e">{inner}</bpmn:endEvent>"#
    ))
}

/// A task with a boundary event carrying `definition`, leading to its own end event.
fn boundary(definition: &str, cancel: bool) -> String {
    let task = format!(
        r#"<bpmn:serviceTask id="x">{}</bpmn:serviceTask>"#,
        job("work")
    );
    between(&task).replace(
        "<bpmn:endEvent id=\"e\"/>",
        &format!(
            r#"<bpmn:endEvent id="e"/><bpmn:boundaryEvent id="b" attachedToRef="x"
                 cancelActivity="{cancel}">{definition}</bpmn:boundaryEvent>
               <bpmn:sequenceFlow id="f3" sourceRef="b" targetRef="e2"/><bpmn:endEvent id="e2"/>"#
        ),
    )
}

/// A process with an event subprocess started by `definition`.
fn event_subprocess(definition: &str) -> String {
    wrap(&format!(
        r#"<bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="e"/>
           <bpmn:endEvent id="e"/>
           <bpmn:subProcess id="esp" triggeredByEvent="true">
             <bpmn:startEvent id="es">{definition}</bpmn:startEvent>
             <bpmn:sequenceFlow id="g" sourceRef="es" targetRef="ee"/><bpmn:endEvent id="ee"/>
           </bpmn:subProcess>"#
    ))
}

const TIMER: &str = "<bpmn:timerEventDefinition><bpmn:timeDuration>PT1M</bpmn:timeDuration></bpmn:timerEventDefinition>";
const MESSAGE_DEFINITION: &str = r#"<bpmn:messageEventDefinition messageRef="m"/>"#;

fn model_for(element: &str) -> Option<String> {
    let service = format!(
        r#"<bpmn:serviceTask id="x">{}</bpmn:serviceTask>"#,
        job("work")
    );
    Some(match element {
        "none start event" => start(""),
        "message start event" => start(MESSAGE_DEFINITION),
        "timer start event (date, cycle)" => start(
            "<bpmn:timerEventDefinition><bpmn:timeCycle>R/P1D</bpmn:timeCycle></bpmn:timerEventDefinition>",
        ),
        "signal start event" => start(r#"<bpmn:signalEventDefinition signalRef="sig"/>"#),
        "none end event" => end(""),
        "terminate end event" => end("<bpmn:terminateEventDefinition/>"),
        "error end event" => event_subprocess(r#"<bpmn:errorEventDefinition errorRef="err"/>"#)
            .replace(
                r#"<bpmn:endEvent id="e"/>"#,
                r#"<bpmn:endEvent id="e"><bpmn:errorEventDefinition errorRef="err"/></bpmn:endEvent>"#,
            ),
        "escalation end event" => end(r#"<bpmn:escalationEventDefinition escalationRef="esc"/>"#),
        "signal end event" => end(r#"<bpmn:signalEventDefinition signalRef="sig"/>"#),
        "message end event (a job, as in Camunda 8)" => {
            end(&format!("{}<bpmn:messageEventDefinition/>", job("notify")))
        }
        "compensation end event" => end("<bpmn:compensateEventDefinition/>"),
        "message intermediate catch event" => between(&format!(
            r#"<bpmn:intermediateCatchEvent id="x">{MESSAGE_DEFINITION}</bpmn:intermediateCatchEvent>"#
        )),
        "timer intermediate catch event (duration, date)" => between(&format!(
            r#"<bpmn:intermediateCatchEvent id="x">{TIMER}</bpmn:intermediateCatchEvent>"#
        )),
        "signal intermediate catch event" => between(
            r#"<bpmn:intermediateCatchEvent id="x"><bpmn:signalEventDefinition signalRef="sig"/>
               </bpmn:intermediateCatchEvent>"#,
        ),
        "link intermediate throw and catch events" => wrap(
            r#"<bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="t"/>
               <bpmn:intermediateThrowEvent id="t"><bpmn:linkEventDefinition name="L"/>
               </bpmn:intermediateThrowEvent>
               <bpmn:intermediateCatchEvent id="c"><bpmn:linkEventDefinition name="L"/>
               </bpmn:intermediateCatchEvent>
               <bpmn:sequenceFlow id="f2" sourceRef="c" targetRef="e"/><bpmn:endEvent id="e"/>"#,
        ),
        "none intermediate throw event" => between(r#"<bpmn:intermediateThrowEvent id="x"/>"#),
        "escalation intermediate throw event" => between(
            r#"<bpmn:intermediateThrowEvent id="x"><bpmn:escalationEventDefinition
                 escalationRef="esc"/></bpmn:intermediateThrowEvent>"#,
        ),
        "signal intermediate throw event" => between(
            r#"<bpmn:intermediateThrowEvent id="x"><bpmn:signalEventDefinition signalRef="sig"/>
               </bpmn:intermediateThrowEvent>"#,
        ),
        "message intermediate throw event (a job)" => between(&format!(
            r#"<bpmn:intermediateThrowEvent id="x">{}<bpmn:messageEventDefinition/>
               </bpmn:intermediateThrowEvent>"#,
            job("notify")
        )),
        "compensation intermediate throw event" => between(
            r#"<bpmn:intermediateThrowEvent id="x"><bpmn:compensateEventDefinition/>
               </bpmn:intermediateThrowEvent>"#,
        ),
        "message boundary event (interrupting or not)" => boundary(MESSAGE_DEFINITION, false),
        "timer boundary event (interrupting or not; cycles when not)" => boundary(
            "<bpmn:timerEventDefinition><bpmn:timeCycle>R3/PT1M</bpmn:timeCycle></bpmn:timerEventDefinition>",
            false,
        ),
        "signal boundary event" => {
            boundary(r#"<bpmn:signalEventDefinition signalRef="sig"/>"#, true)
        }
        "error boundary event" => boundary(r#"<bpmn:errorEventDefinition errorRef="err"/>"#, true),
        "escalation boundary event" => boundary(
            r#"<bpmn:escalationEventDefinition escalationRef="esc"/>"#,
            false,
        ),
        "compensation boundary event with its handler" => between(&service).replace(
            "<bpmn:endEvent id=\"e\"/>",
            &format!(
                r#"<bpmn:endEvent id="e"><bpmn:compensateEventDefinition/></bpmn:endEvent>
                   <bpmn:boundaryEvent id="b" attachedToRef="x">
                     <bpmn:compensateEventDefinition/></bpmn:boundaryEvent>
                   <bpmn:serviceTask id="undo" isForCompensation="true">{}</bpmn:serviceTask>
                   <bpmn:association id="a" sourceRef="b" targetRef="undo"/>"#,
                job("undo")
            ),
        ),
        "service task" => between(&service),
        "user task (job-based, or `zeebe:userTask`)" => between(r#"<bpmn:userTask id="x"/>"#),
        "send task" => between(&format!(
            r#"<bpmn:sendTask id="x">{}</bpmn:sendTask>"#,
            job("send")
        )),
        "receive task" => between(r#"<bpmn:receiveTask id="x" messageRef="m"/>"#),
        "script task (`zeebe:script` FEEL, or a job)" => between(
            r#"<bpmn:scriptTask id="x"><bpmn:extensionElements><zeebe:script
                 expression="=a + 1" resultVariable="b"/></bpmn:extensionElements></bpmn:scriptTask>"#,
        ),
        "business rule task (`zeebe:calledDecision`, or a job)" => between(
            r#"<bpmn:businessRuleTask id="x"><bpmn:extensionElements><zeebe:calledDecision
                 decisionId="discount" resultVariable="r"/></bpmn:extensionElements></bpmn:businessRuleTask>"#,
        ),
        "manual task" => between(r#"<bpmn:manualTask id="x"/>"#),
        "undefined task" => between(r#"<bpmn:task id="x"/>"#),
        "exclusive gateway" => gateway("exclusiveGateway", true),
        "parallel gateway" => gateway("parallelGateway", false),
        "inclusive gateway" => gateway("inclusiveGateway", true),
        "event-based gateway" => wrap(&format!(
            r#"<bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="g"/>
               <bpmn:eventBasedGateway id="g"/>
               <bpmn:sequenceFlow id="f2" sourceRef="g" targetRef="c1"/>
               <bpmn:sequenceFlow id="f3" sourceRef="g" targetRef="c2"/>
               <bpmn:intermediateCatchEvent id="c1">{MESSAGE_DEFINITION}</bpmn:intermediateCatchEvent>
               <bpmn:intermediateCatchEvent id="c2">{TIMER}</bpmn:intermediateCatchEvent>
               <bpmn:sequenceFlow id="f4" sourceRef="c1" targetRef="e"/>
               <bpmn:sequenceFlow id="f5" sourceRef="c2" targetRef="e"/><bpmn:endEvent id="e"/>"#
        )),
        "embedded subprocess" => between(
            r#"<bpmn:subProcess id="x"><bpmn:startEvent id="is"/>
               <bpmn:sequenceFlow id="g" sourceRef="is" targetRef="ie"/><bpmn:endEvent id="ie"/>
               </bpmn:subProcess>"#,
        ),
        "ad-hoc subprocess (`activeElementsCollection`, `ActivateAdHocActivities`)" => {
            between(&format!(
                r#"<bpmn:adHocSubProcess id="x"><bpmn:extensionElements>
                     <zeebe:adHoc activeElementsCollection="= [&quot;a&quot;, &quot;b&quot;]"/>
                   </bpmn:extensionElements>
                   <bpmn:serviceTask id="a">{}</bpmn:serviceTask><bpmn:task id="b"/>
                   <bpmn:task id="never"/></bpmn:adHocSubProcess>"#,
                job("work")
            ))
        }
        "event subprocess (message, timer, signal, error, escalation, conditional start)" => {
            event_subprocess(r#"<bpmn:signalEventDefinition signalRef="sig"/>"#)
        }
        "call activity" => between(
            r#"<bpmn:callActivity id="x"><bpmn:extensionElements>
               <zeebe:calledElement processId="child"/></bpmn:extensionElements></bpmn:callActivity>"#,
        ),
        "multi-instance, parallel and sequential" => between(&format!(
            r#"<bpmn:serviceTask id="x">{}<bpmn:multiInstanceLoopCharacteristics>
                 <bpmn:extensionElements><zeebe:loopCharacteristics inputCollection="=items"/>
                 </bpmn:extensionElements></bpmn:multiInstanceLoopCharacteristics></bpmn:serviceTask>"#,
            job("work")
        )),
        "complex gateway" => between(r#"<bpmn:complexGateway id="x"/>"#),
        "transaction subprocess" => {
            between(r#"<bpmn:transaction id="x"><bpmn:startEvent id="is"/></bpmn:transaction>"#)
        }
        "ad-hoc subprocess" => between(r#"<bpmn:adHocSubProcess id="x"/>"#),
        "standard loop" => {
            between(r#"<bpmn:task id="x"><bpmn:standardLoopCharacteristics/></bpmn:task>"#)
        }
        "conditional intermediate catch event" => between(&format!(
            r#"<bpmn:intermediateCatchEvent id="x">{CONDITIONAL}</bpmn:intermediateCatchEvent>"#
        )),
        "conditional boundary event (interrupting or not)" => boundary(CONDITIONAL, false),
        "conditional start event (`EvaluateConditional`)" => start(CONDITIONAL),
        "cancel event" => end("<bpmn:cancelEventDefinition/>"),
        "multiple and parallel-multiple events" => start(&format!("{MESSAGE_DEFINITION}{TIMER}")),
        "compensation event subprocess" => event_subprocess("<bpmn:compensateEventDefinition/>"),
        _ => return None,
    })
}

/// start -> gateway -> two ends (with a condition and a default when `conditions`).
fn gateway(kind: &str, conditions: bool) -> String {
    let (default, condition) = if conditions {
        (
            r#" default="f3""#,
            "<bpmn:conditionExpression>=1 &gt; 0</bpmn:conditionExpression>",
        )
    } else {
        ("", "")
    };
    wrap(&format!(
        r#"<bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="g"/>
           <bpmn:{kind} id="g"{default}/>
           <bpmn:sequenceFlow id="f2" sourceRef="g" targetRef="e1">{condition}</bpmn:sequenceFlow>
           <bpmn:sequenceFlow id="f3" sourceRef="g" targetRef="e2"/>
           <bpmn:endEvent id="e1"/><bpmn:endEvent id="e2"/>"#
    ))
}

#[test]
fn the_readme_element_table_matches_the_model_crate() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("| element | Model | Engine |")
        .expect("the element table");
    let mut rows = 0;
    let mut failures = Vec::new();
    for line in readme[start..].lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let columns: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let (element, model_column, engine_column) = (columns[0], columns[1], columns[2]);
        rows += 1;
        let Some(xml) = model_for(element) else {
            failures.push(format!("`{element}`: no model in readme_table.rs"));
            continue;
        };
        let result = parse(xml.as_bytes());
        match (model_column, &result) {
            ("supported", Ok(_)) => {}
            ("supported", Err(error)) => {
                failures.push(format!("`{element}` is listed as supported but:\n{error}"));
            }
            ("not supported", Err(error))
                if error.diagnostics.iter().all(|d| {
                    matches!(
                        d.kind,
                        DiagnosticKind::UnsupportedElement
                            | DiagnosticKind::MultipleEventDefinitions
                            | DiagnosticKind::InvalidEventDefinition
                    )
                }) => {}
            ("not supported", _) => {
                failures.push(format!(
                    "`{element}` should be refused as unsupported: {result:?}"
                ));
            }
            (other, _) => failures.push(format!("`{element}`: unknown Model value `{other}`")),
        }
        match engine_column {
            column if column.starts_with("yes") => {
                if let Err(problem) = runs_to_the_end(&xml) {
                    failures.push(format!("`{element}` is marked as executed, but {problem}"));
                }
            }
            "not supported" => {}
            other => failures.push(format!("`{element}`: unknown Engine value `{other}`")),
        }
    }
    assert!(rows >= 40, "only {rows} rows read from the README table");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The process call activities in the table call.
const CHILD: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="c">
    <bpmn:process id="child" isExecutable="true"><bpmn:startEvent id="cs"/>
    <bpmn:sequenceFlow id="c1" sourceRef="cs" targetRef="ce"/><bpmn:endEvent id="ce"/>
    </bpmn:process></bpmn:definitions>"#;

/// Deploys the model, starts an instance (by hand, or by its message or timer start) and
/// then completes every job, publishes every message it waits for and lets every timer come
/// due, until nothing is left.
fn runs_to_the_end(xml: &str) -> Result<(), String> {
    let mut shard = common::Shard::new();
    shard.deploy("child.bpmn", CHILD);
    shard.deploy("discount.dmn", include_str!("fixtures/discount.dmn"));
    shard.deploy("row.bpmn", xml);
    let variables = common::vars(r#"{"orderId": "o", "items": [1, 2]}"#);
    let created = shard.run(Command::CreateInstance {
        process: ringflow_core::ProcessRef::Latest("p".into()),
        variables,
        business_key: None,
        await_result: false,
    });
    if created.is_err() {
        // Started by its message, timer, signal or conditional start event.
        let published = shard.publish("paid", "o", "{}", 0);
        let by_message = published
            .events
            .iter()
            .any(|event| matches!(event, ringflow_core::Event::MessageCorrelated { .. }));
        let now = shard.now_millis;
        let by_timer = shard.fire_timers_until(now + 86_400_000) > 0;
        let by_signal = !by_message && !by_timer && {
            let broadcast = shard
                .run(Command::BroadcastSignal {
                    name: "go".into(),
                    variables: serde_json::Map::new(),
                })
                .map_err(|rejection| rejection.to_string())?;
            broadcast
                .events
                .iter()
                .any(|event| matches!(event, ringflow_core::Event::InstanceCreated { .. }))
        };
        let by_condition = !by_message
            && !by_timer
            && !by_signal
            && matches!(
                shard.run(Command::EvaluateConditional {
                    bpmn_process_id: None,
                    variables: common::vars(r#"{"orderId": "o"}"#),
                }),
                Ok(ringflow_core::Outcome {
                    response: ringflow_core::Response::ConditionalEvaluated(started),
                    ..
                }) if started.len() == 1
            );
        if !by_message && !by_timer && !by_signal && !by_condition {
            return Err("no instance could be started".to_string());
        }
    }
    for _ in 0..100 {
        if let Some(incident) = shard.state.incidents().next() {
            return Err(format!(
                "the engine raised an incident: {}",
                incident.message
            ));
        }
        if shard.state.instances().next().is_none() {
            return Ok(());
        }
        let jobs: Vec<_> = shard.state.jobs().map(|job| job.key).collect();
        let waiting: Vec<(String, String)> = shard
            .state
            .subscriptions()
            .map(|s| (s.name.clone(), s.correlation_key.clone()))
            .collect();
        let signal = shard
            .state
            .signal_subscriptions()
            .map(|s| s.name.clone())
            .next();
        let next_timer = shard
            .state
            .timers()
            .filter(|timer| timer.owner.is_some())
            .map(|timer| timer.due_millis)
            .min();
        if !jobs.is_empty() {
            for key in jobs {
                shard
                    .run(Command::CompleteJob {
                        key,
                        variables: serde_json::Map::new(),
                    })
                    .map_err(|rejection| rejection.to_string())?;
            }
        } else if let Some((name, correlation_key)) = waiting.first() {
            shard.publish(name, correlation_key, "{}", 0);
        } else if let Some(name) = signal {
            shard
                .run(Command::BroadcastSignal {
                    name,
                    variables: serde_json::Map::new(),
                })
                .map_err(|rejection| rejection.to_string())?;
        } else if let Some(due) = next_timer {
            shard.fire_timers_until(due);
        } else {
            return Err(
                "the instance waits for something other than a job, message, signal or timer"
                    .to_string(),
            );
        }
    }
    Err("the instance did not end after 100 rounds".to_string())
}
