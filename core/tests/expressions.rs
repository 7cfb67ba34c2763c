//! FEEL in the engine: gateway conditions, input and output mappings, script tasks, FEEL job
//! types, and the clock taken from the command.

mod common;

use common::{Shard, flow, model, service_task, vars};
use ringflow_core::Event;

fn gateway_process(kind: &str, default: &str) -> String {
    let condition = |expression: &str| {
        format!("<bpmn:conditionExpression>{expression}</bpmn:conditionExpression>")
    };
    model(
        "routing",
        &format!(
            r#"<bpmn:startEvent id="start"/>{}<bpmn:{kind} id="gw" {default}/>
               <bpmn:sequenceFlow id="big" sourceRef="gw" targetRef="a">{}</bpmn:sequenceFlow>
               <bpmn:sequenceFlow id="even" sourceRef="gw" targetRef="b">{}</bpmn:sequenceFlow>
               <bpmn:sequenceFlow id="other" sourceRef="gw" targetRef="c"/>
               {}{}{}{}{}{}<bpmn:endEvent id="end"/>"#,
            flow("f1", "start", "gw"),
            condition("=amount &gt; 100"),
            condition("=modulo(amount, 2) = 0"),
            service_task("a", "big"),
            service_task("b", "even"),
            service_task("c", "other"),
            flow("fa", "a", "end"),
            flow("fb", "b", "end"),
            flow("fc", "c", "end"),
        ),
    )
}

fn job_types(shard: &Shard) -> Vec<String> {
    shard
        .state
        .jobs()
        .map(|job| job.job_type.to_string())
        .collect()
}

#[test]
fn exclusive_gateway_takes_the_first_true_condition_or_the_default() {
    let mut shard = Shard::new();
    shard.deploy(
        "gw.bpmn",
        &gateway_process("exclusiveGateway", r#"default="other""#),
    );
    shard.create("routing", vars(r#"{"amount": 200}"#));
    assert_eq!(job_types(&shard), ["big"], "200 > 100 comes first");
    shard.create("routing", vars(r#"{"amount": 4}"#));
    assert_eq!(job_types(&shard), ["big", "even"]);
    shard.create("routing", vars(r#"{"amount": 3}"#));
    assert_eq!(
        job_types(&shard),
        ["big", "even", "other"],
        "nothing holds: the default"
    );
    shard.check_replay();
}

#[test]
fn a_gateway_with_no_true_condition_and_no_default_raises_an_incident() {
    let mut shard = Shard::new();
    shard.deploy("gw.bpmn", &gateway_process("exclusiveGateway", r#"default="other""#).replace(
        r#"default="other""#,
        "",
    ).replace(r#"<bpmn:sequenceFlow id="other" sourceRef="gw" targetRef="c"/>"#,
        r#"<bpmn:sequenceFlow id="other" sourceRef="gw" targetRef="c"><bpmn:conditionExpression>=false</bpmn:conditionExpression></bpmn:sequenceFlow>"#));
    let (instance, created) = shard.create("routing", vars(r#"{"amount": 3}"#));
    let message = created.events.iter().find_map(|event| match event {
        Event::IncidentCreated { message, .. } => Some(message.clone()),
        _ => None,
    });
    assert!(
        message.expect("an incident").contains("no condition"),
        "incident expected"
    );
    assert!(shard.state.instance(instance).is_some());
    // A condition that is not a boolean is an incident too.
    let (_, missing) = shard.create("routing", vars("{}"));
    assert!(missing.events.iter().any(|event| matches!(event,
        Event::IncidentCreated { message, .. } if message.contains("not a boolean"))));
    shard.check_replay();
}

#[test]
fn a_gateway_without_outgoing_flows_ends_its_path() {
    for kind in ["exclusiveGateway", "inclusiveGateway"] {
        let mut shard = Shard::new();
        let xml = model(
            "dead-end",
            &format!(
                r#"<bpmn:startEvent id="start"/>{}<bpmn:parallelGateway id="split"/>{}{}
                   <bpmn:{kind} id="gw"/>{}<bpmn:endEvent id="end"/>"#,
                flow("f1", "start", "split"),
                flow("f2", "split", "gw"),
                flow("f3", "split", "task"),
                service_task("task", "work"),
            )
            .replace(
                "<bpmn:endEvent id=\"end\"/>",
                &format!("{}<bpmn:endEvent id=\"end\"/>", flow("f4", "task", "end")),
            ),
        );
        shard.deploy("dead-end.bpmn", &xml);
        let (instance, created) = shard.create("dead-end", vars("{}"));
        assert!(
            !created
                .events
                .iter()
                .any(|event| matches!(event, Event::IncidentCreated { .. })),
            "{kind}: no incident"
        );
        assert_eq!(shard.live_element_ids(instance), ["task"], "{kind}");
        let job = shard.activate("work", 1)[0].key;
        shard.complete(job, vars("{}"));
        assert!(shard.state.instance(instance).is_none(), "{kind}: ended");
        shard.check_replay();
    }
}

#[test]
fn inclusive_gateway_forks_every_true_branch() {
    let mut shard = Shard::new();
    shard.deploy(
        "gw.bpmn",
        &gateway_process("inclusiveGateway", r#"default="other""#),
    );
    shard.create("routing", vars(r#"{"amount": 200}"#));
    assert_eq!(job_types(&shard), ["big", "even"]);
    shard.check_replay();
}

#[test]
fn mappings_scripts_and_feel_job_types() {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:serviceTask id="task"><bpmn:extensionElements>
             <zeebe:taskDefinition type="=&quot;ship-&quot; + region" retries="=1 + 1"/>
             <zeebe:ioMapping>
               <zeebe:input source="=order.total * 2" target="doubled"/>
               <zeebe:input source="=doubled + 1" target="plusOne"/>
               <zeebe:input source="static text" target="note"/>
               <zeebe:output source="=trackingId" target="shipment.tracking"/>
             </zeebe:ioMapping>
           </bpmn:extensionElements></bpmn:serviceTask>{}
           <bpmn:scriptTask id="script"><bpmn:extensionElements>
             <zeebe:script expression="=&quot;day &quot; + string(today())" resultVariable="stamp"/>
           </bpmn:extensionElements></bpmn:scriptTask>{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "task"),
        flow("f2", "task", "script"),
        flow("f3", "script", "end"),
    );
    let mut shard = Shard::new();
    shard.now_millis = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    shard.deploy("m.bpmn", &model("mapped", &body));
    let (instance, _) = shard.create(
        "mapped",
        vars(r#"{"order": {"total": 10}, "region": "eu"}"#),
    );
    let job = shard.activate("ship-eu", 1).remove(0);
    assert_eq!(job.retries, 2);
    assert_eq!(job.variables()["doubled"], serde_json::json!(20));
    assert_eq!(job.variables()["plusOne"], serde_json::json!(21));
    assert_eq!(job.variables()["note"], serde_json::json!("static text"));
    let root = shard.state.variables(instance).expect("root variables");
    assert!(!root.contains_key("doubled"), "input mappings stay local");
    shard
        .run(ringflow_core::Command::CompleteJob {
            key: job.key,
            variables: vars(r#"{"trackingId": "T-9", "internal": true}"#),
        })
        .expect("complete");
    // The instance ran through the script task to its end: check through the log's replay
    // and through the events of the completion.
    assert!(shard.state.instance(instance).is_none());
    shard.check_replay();
}

#[test]
fn outputs_and_script_results_reach_the_root() {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:serviceTask id="task"><bpmn:extensionElements>
             <zeebe:taskDefinition type="work"/>
             <zeebe:ioMapping><zeebe:output source="=trackingId" target="shipment.tracking"/>
             </zeebe:ioMapping></bpmn:extensionElements></bpmn:serviceTask>{}
           <bpmn:scriptTask id="script"><bpmn:extensionElements>
             <zeebe:script expression="=string(today())" resultVariable="stamp"/>
           </bpmn:extensionElements></bpmn:scriptTask>{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "task"),
        flow("f2", "task", "script"),
        flow("f3", "script", "hold"),
        service_task("hold", "hold"),
        flow("f4", "hold", "end"),
    );
    let mut shard = Shard::new();
    shard.now_millis = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    shard.deploy("o.bpmn", &model("outputs", &body));
    let (instance, _) = shard.create("outputs", vars("{}"));
    let job = shard.activate("work", 1).remove(0);
    shard.complete(job.key, vars(r#"{"trackingId": "T-9", "internal": true}"#));
    let root = shard.state.variables(instance).expect("root variables");
    assert_eq!(root["shipment"], serde_json::json!({"tracking": "T-9"}));
    assert!(
        !root.contains_key("internal"),
        "with outputs, job variables stay local"
    );
    assert_eq!(
        root["stamp"],
        serde_json::json!("2026-01-01"),
        "today() is the command's date"
    );
    shard.check_replay();
}

/// feel-scala's `uuid()`, `to json`, `from json` and `assert`, which the engine evaluates
/// itself: every instance gets another uuid, replay gives the same ones, and a failed
/// assertion is an incident with its cause.
#[test]
fn feel_scala_built_ins_in_mappings_and_scripts() {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:serviceTask id="task"><bpmn:extensionElements>
             <zeebe:taskDefinition type="send"/>
             <zeebe:ioMapping>
               <zeebe:input source="=uuid()" target="requestId"/>
               <zeebe:input source="=[uuid(), uuid()]" target="more"/>
               <zeebe:input source="=to json(order)" target="body"/>
               <zeebe:output source="=from json(reply).status" target="status"/>
             </zeebe:ioMapping>
           </bpmn:extensionElements></bpmn:serviceTask>{}
           <bpmn:scriptTask id="check"><bpmn:extensionElements>
             <zeebe:script expression="=assert(order.total, order.total &gt; 0, &quot;the total must be positive&quot;)" resultVariable="checked"/>
           </bpmn:extensionElements></bpmn:scriptTask>{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "task"),
        flow("f2", "task", "check"),
        flow("f3", "check", "hold"),
        service_task("hold", "hold"),
        flow("f4", "hold", "end"),
    );
    let mut shard = Shard::new();
    shard.deploy("u.bpmn", &model("uuids", &body));
    let (good, _) = shard.create("uuids", vars(r#"{"order": {"total": 10}}"#));
    let (bad, _) = shard.create("uuids", vars(r#"{"order": {"total": -1}}"#));
    let jobs = shard.activate("send", 2);
    assert_eq!(jobs.len(), 2);
    let mut uuids = std::collections::BTreeSet::new();
    for job in &jobs {
        let variables = job.variables();
        for uuid in [
            &variables["requestId"],
            &variables["more"][0],
            &variables["more"][1],
        ] {
            let text = uuid.as_str().expect("a uuid string");
            assert_eq!(text.len(), 36, "{text}");
            assert!(uuids.insert(text.to_string()), "{text} given twice");
        }
    }
    assert_eq!(uuids.len(), 6);
    let body_of = |instance| {
        jobs.iter()
            .find(|job| job.process_instance_key == instance)
            .expect("a job per instance")
            .variables()["body"]
            .clone()
    };
    assert_eq!(body_of(good), serde_json::json!(r#"{"total":10}"#));
    assert_eq!(body_of(bad), serde_json::json!(r#"{"total":-1}"#));
    for job in &jobs {
        shard.complete(job.key, vars(r#"{"reply": "{\"status\": \"sent\"}"}"#));
    }
    let root = shard.state.variables(good).expect("root variables");
    assert_eq!(root["status"], serde_json::json!("sent"));
    assert_eq!(root["checked"], serde_json::json!(10));
    let incident = shard
        .state
        .incidents()
        .find(|incident| incident.process_instance_key == bad)
        .expect("the failed assertion is an incident");
    assert!(
        incident.message.contains("the total must be positive"),
        "{}",
        incident.message
    );
    shard.check_replay();
}
