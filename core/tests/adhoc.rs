//! Ad-hoc subprocesses (Camunda 8.7/8.8): activation by `activeElementsCollection` and by
//! `ActivateAdHocActivities`, inner instances and their variables, the output collection, the
//! completion condition with and without `cancelRemainingInstances`, sequence flows inside,
//! boundary and event subprocesses, incidents and rejections; replay and snapshots throughout.

mod common;

use common::{Shard, flow, model, service_task, vars};
use ringflow_core::adhoc::AdHocActivation;
use ringflow_core::{
    Command, ElementRole, Event, Key, Outcome, Rejection, RejectionCode, Response, Variables,
};

/// An ad-hoc subprocess `adhoc` with `inner` inside and these attributes and `zeebe:adHoc`
/// attributes, then a service task `after` (type `after`) and an end event.
fn ad_hoc_model(attributes: &str, zeebe: &str, condition: &str, inner: &str) -> String {
    let condition = if condition.is_empty() {
        String::new()
    } else {
        format!("<bpmn:completionCondition>{condition}</bpmn:completionCondition>")
    };
    model(
        "p",
        &format!(
            r#"<bpmn:startEvent id="start"/>{}
               <bpmn:adHocSubProcess id="adhoc" {attributes}>
                 <bpmn:extensionElements><zeebe:adHoc {zeebe}/></bpmn:extensionElements>
                 {inner}{condition}
               </bpmn:adHocSubProcess>{}{}{}<bpmn:endEvent id="end"/>"#,
            flow("f1", "start", "adhoc"),
            flow("f2", "adhoc", "after"),
            service_task("after", "after"),
            flow("f3", "after", "end"),
        ),
    )
}

/// Tasks `a`, `b` and `c` (job types of the same names) inside.
fn three_tasks() -> String {
    format!(
        "{}{}{}",
        service_task("a", "a"),
        service_task("b", "b"),
        service_task("c", "c")
    )
}

fn adhoc_key(shard: &Shard, instance: Key) -> Key {
    let definition = &shard
        .state
        .process(
            shard
                .state
                .instance(instance)
                .unwrap()
                .process_definition_key,
        )
        .unwrap()
        .definition;
    shard
        .state
        .element_instances()
        .find(|element| {
            element.process_instance_key == instance
                && element.role == ElementRole::Plain
                && &*definition.element(element.element).id == "adhoc"
        })
        .expect("the ad-hoc subprocess is live")
        .key
}

fn inner_instances(shard: &Shard, instance: Key) -> Vec<Key> {
    shard
        .state
        .element_instances()
        .filter(|element| {
            element.process_instance_key == instance && element.role == ElementRole::AdHocInner
        })
        .map(|element| element.key)
        .collect()
}

fn activate(
    shard: &mut Shard,
    key: Key,
    elements: &[(&str, &str)],
    cancel: bool,
) -> Result<Outcome, Rejection> {
    let elements = elements
        .iter()
        .map(|(id, variables)| AdHocActivation {
            element_id: id.to_string(),
            variables: vars(variables),
        })
        .collect();
    shard.run(Command::ActivateAdHocActivities {
        key,
        elements,
        cancel_remaining_instances: cancel,
    })
}

/// Completes the one open job of `job_type` with `variables`.
fn finish(shard: &mut Shard, job_type: &str, variables: &str) -> Variables {
    let jobs = shard.activate(job_type, 10);
    assert_eq!(jobs.len(), 1, "one `{job_type}` job");
    shard.complete(jobs[0].key, vars(variables));
    shard.check_replay();
    jobs[0].variables().clone()
}

fn open_jobs(shard: &mut Shard, job_type: &str) -> usize {
    shard.activate(job_type, 10).len()
}

fn incident_message(shard: &Shard) -> String {
    let incidents: Vec<_> = shard.state.incidents().collect();
    assert_eq!(incidents.len(), 1, "one incident");
    incidents[0].message.clone()
}

#[test]
fn the_active_elements_run_each_in_an_inner_instance_and_the_subprocess_completes_after_them() {
    let mut shard = Shard::new();
    let xml = ad_hoc_model(
        "",
        r#"activeElementsCollection="= toRun" outputCollection="results" outputElement="= result""#,
        "",
        &three_tasks(),
    );
    shard.deploy("adhoc.bpmn", &xml);
    let (instance, created) = shard.create("p", vars(r#"{"toRun": ["a", "c"]}"#));
    shard.check_replay();
    let inner = inner_instances(&shard, instance);
    assert_eq!(inner.len(), 2);
    let activated: Vec<&str> = created
        .events
        .iter()
        .filter_map(|event| match event {
            Event::ElementActivated { element_id, .. } => Some(&**element_id),
            _ => None,
        })
        .collect();
    assert_eq!(
        activated,
        [
            "p",
            "start",
            "adhoc",
            "adhoc#innerInstance",
            "adhoc#innerInstance",
            "a",
            "c"
        ]
    );
    assert_eq!(open_jobs(&mut shard, "b"), 0, "b was not activated");
    // The subprocess's local variables: the activatable elements and the empty collection.
    let adhoc = adhoc_key(&shard, instance);
    let local = shard.state.variables(adhoc).expect("local variables");
    assert_eq!(local["results"], serde_json::json!([]));
    let ids: Vec<&str> = local["adHocSubProcessElements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|element| element["elementId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);

    // The output element's variable is each inner instance's own, `null` until set.
    for inner in inner_instances(&shard, instance) {
        assert_eq!(
            shard.state.variables(inner).unwrap()["result"],
            serde_json::Value::Null
        );
    }
    // A job's `result` lands in its inner instance; anything else propagates as anywhere.
    let seen = finish(&mut shard, "c", r#"{"result": "C", "seenBy": "c"}"#);
    assert_eq!(
        seen["toRun"],
        serde_json::json!(["a", "c"]),
        "outer variables are seen"
    );
    assert_eq!(inner_instances(&shard, instance).len(), 1);
    assert_eq!(
        shard.state.variables(adhoc).unwrap()["results"],
        serde_json::json!(["C"])
    );
    let root = shard.state.variables(instance).unwrap();
    assert!(
        root.get("result").is_none(),
        "result stayed in its activation"
    );
    assert_eq!(
        root["seenBy"],
        serde_json::json!("c"),
        "the rest reached the process"
    );
    let seen_by_a = finish(&mut shard, "a", r#"{"result": "A"}"#);
    assert_eq!(
        seen_by_a["result"],
        serde_json::Value::Null,
        "a's own result"
    );

    // Completed: the output collection reached the process.
    let after = shard.activate("after", 10);
    assert_eq!(after.len(), 1);
    let root = &after[0].variables();
    assert_eq!(root["results"], serde_json::json!(["C", "A"]));
    assert!(root.get("adHocSubProcessElements").is_none());
    assert!(root.get("result").is_none());
    shard.complete(after[0].key, Variables::new());
    shard.check_replay();
    shard.assert_clean();
}

#[test]
fn output_mappings_inside_update_the_subprocess_variables_they_find() {
    // Camunda's own test: an input mapping makes `result` local to the subprocess, each
    // task's output mapping appends to it, and the subprocess maps it out.
    let mut shard = Shard::new();
    let mapped = |id: &str, value: u32| {
        format!(
            r#"<bpmn:serviceTask id="{id}"><bpmn:extensionElements>
                 <zeebe:taskDefinition type="{id}"/>
                 <zeebe:ioMapping><zeebe:output source="= append(result, {value})" target="result"/></zeebe:ioMapping>
               </bpmn:extensionElements></bpmn:serviceTask>"#
        )
    };
    let xml = ad_hoc_model(
        "",
        r#"activeElementsCollection="= [&quot;a&quot;, &quot;b&quot;]""#,
        "",
        &format!("{}{}", mapped("a", 1), mapped("b", 2)),
    )
    .replace(
        r#"<zeebe:adHoc activeElementsCollection"#,
        r#"<zeebe:ioMapping><zeebe:input source="= []" target="result"/><zeebe:output source="= result" target="adHocResult"/></zeebe:ioMapping><zeebe:adHoc activeElementsCollection"#,
    );
    shard.deploy("adhoc.bpmn", &xml);
    shard.create("p", Variables::new());
    finish(&mut shard, "a", "{}");
    finish(&mut shard, "b", "{}");
    let after = shard.activate("after", 1);
    assert_eq!(
        after[0].variables()["adHocResult"],
        serde_json::json!([1, 2])
    );
    assert!(after[0].variables().get("result").is_none());
}

#[test]
fn the_collection_can_name_every_activatable_element_through_the_metadata() {
    let mut shard = Shard::new();
    let xml = ad_hoc_model(
        "",
        r#"activeElementsCollection="= adHocSubProcessElements.elementId""#,
        "",
        &three_tasks(),
    );
    shard.deploy("adhoc.bpmn", &xml);
    let (instance, _) = shard.create("p", Variables::new());
    assert_eq!(inner_instances(&shard, instance).len(), 3, "a, b and c");
    for job_type in ["a", "b", "c"] {
        finish(&mut shard, job_type, "{}");
    }
    assert_eq!(shard.live_element_ids(instance), ["after"]);
}

#[test]
fn without_active_elements_the_subprocess_waits_for_activate_requests() {
    let mut shard = Shard::new();
    shard.deploy("adhoc.bpmn", &ad_hoc_model("", "", "", &three_tasks()));
    let (instance, _) = shard.create("p", vars(r#"{"order": 7}"#));
    let adhoc = adhoc_key(&shard, instance);
    assert!(inner_instances(&shard, instance).is_empty());
    assert_eq!(shard.live_element_ids(instance), ["adhoc"]);

    let outcome =
        activate(&mut shard, adhoc, &[("b", r#"{"reviewer": "kim"}"#)], false).expect("activated");
    assert!(matches!(
        outcome.response,
        Response::AdHocActivitiesActivated { key } if key == adhoc
    ));
    shard.check_replay();
    let inner = inner_instances(&shard, instance);
    assert_eq!(inner.len(), 1);
    assert_eq!(
        shard.state.variables(inner[0]).unwrap()["reviewer"],
        serde_json::json!("kim"),
        "the request's variables are the inner instance's"
    );
    let seen = finish(&mut shard, "b", "{}");
    assert_eq!(seen["reviewer"], serde_json::json!("kim"));
    assert_eq!(seen["order"], serde_json::json!(7));
    // No completion condition: the last inner instance completed the subprocess.
    assert_eq!(shard.live_element_ids(instance), ["after"]);
    assert!(
        shard.activate("after", 1)[0]
            .variables()
            .get("reviewer")
            .is_none(),
        "the inner instance's variables ended with it"
    );
}

#[test]
fn a_holding_completion_condition_terminates_the_rest_by_default() {
    let mut shard = Shard::new();
    let xml = ad_hoc_model(
        "",
        r#"activeElementsCollection="= [&quot;a&quot;, &quot;b&quot;, &quot;c&quot;]" outputCollection="results" outputElement="= value""#,
        "= count(results) &gt;= 2",
        &three_tasks(),
    );
    shard.deploy("adhoc.bpmn", &xml);
    let (instance, _) = shard.create("p", Variables::new());
    assert_eq!(inner_instances(&shard, instance).len(), 3);
    finish(&mut shard, "b", r#"{"value": "B"}"#);
    assert_eq!(
        inner_instances(&shard, instance).len(),
        2,
        "1 result: not yet"
    );
    let jobs_a = shard.activate("a", 10);
    let outcome = shard.complete(jobs_a[0].key, vars(r#"{"value": "A"}"#));
    shard.check_replay();
    let terminated: Vec<&str> = outcome
        .events
        .iter()
        .filter_map(|event| match event {
            Event::ElementTerminated { element_id, .. } => Some(&**element_id),
            _ => None,
        })
        .collect();
    assert_eq!(terminated, ["c", "adhoc#innerInstance"]);
    assert_eq!(open_jobs(&mut shard, "c"), 0, "c's job went with it");
    let after = shard.activate("after", 1);
    assert_eq!(
        after[0].variables()["results"],
        serde_json::json!(["B", "A"])
    );
}

#[test]
fn without_cancel_remaining_instances_a_holding_condition_waits_for_the_rest() {
    let mut shard = Shard::new();
    let xml = ad_hoc_model(
        r#"cancelRemainingInstances="false""#,
        r#"activeElementsCollection="= [&quot;a&quot;, &quot;b&quot;]""#,
        "= done = true",
        &three_tasks(),
    );
    shard.deploy("adhoc.bpmn", &xml);
    let (instance, _) = shard.create("p", vars(r#"{"done": false}"#));
    let adhoc = adhoc_key(&shard, instance);
    // The condition reads `done`, set from outside.
    shard
        .run(Command::SetVariables {
            scope: instance,
            variables: vars(r#"{"done": true}"#),
            local: false,
        })
        .unwrap();
    finish(&mut shard, "a", "{}");
    assert_eq!(
        inner_instances(&shard, instance).len(),
        1,
        "the condition holds, b still runs and is waited for"
    );
    // More may still be activated while it waits.
    activate(&mut shard, adhoc, &[("c", "{}")], false).expect("activated");
    finish(&mut shard, "b", "{}");
    assert_eq!(inner_instances(&shard, instance).len(), 1);
    finish(&mut shard, "c", "{}");
    assert_eq!(shard.live_element_ids(instance), ["after"]);
}

#[test]
fn a_condition_that_does_not_hold_keeps_the_subprocess_waiting_with_nothing_running() {
    let mut shard = Shard::new();
    let xml = ad_hoc_model(
        "",
        r#"activeElementsCollection="= [&quot;a&quot;]" outputCollection="results" outputElement="= ok""#,
        "= list contains(results, true)",
        &three_tasks(),
    );
    shard.deploy("adhoc.bpmn", &xml);
    let (instance, _) = shard.create("p", Variables::new());
    let adhoc = adhoc_key(&shard, instance);
    finish(&mut shard, "a", r#"{"ok": false}"#);
    assert!(inner_instances(&shard, instance).is_empty());
    assert_eq!(shard.live_element_ids(instance), ["adhoc"], "it waits");
    activate(&mut shard, adhoc, &[("a", "{}")], false).expect("activated again");
    finish(&mut shard, "a", r#"{"ok": true}"#);
    let after = shard.activate("after", 1);
    assert_eq!(
        after[0].variables()["results"],
        serde_json::json!([false, true])
    );
}

#[test]
fn sequence_flows_inside_run_within_the_activation() {
    let mut shard = Shard::new();
    let inner = format!(
        "{}{}{}{}",
        service_task("a", "a"),
        flow("fa", "a", "b"),
        service_task("b", "b"),
        service_task("c", "c")
    );
    let xml = ad_hoc_model(
        "",
        r#"activeElementsCollection="= [&quot;a&quot;]""#,
        "",
        &inner,
    );
    shard.deploy("adhoc.bpmn", &xml);
    let (instance, _) = shard.create("p", Variables::new());
    let adhoc = adhoc_key(&shard, instance);
    let local = shard.state.variables(adhoc).unwrap();
    let ids: Vec<&str> = local["adHocSubProcessElements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|element| element["elementId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "c"], "b follows a flow: not activatable");
    let rejection = activate(&mut shard, adhoc, &[("b", "{}")], false).unwrap_err();
    assert_eq!(rejection.code, RejectionCode::InvalidArgument);
    assert!(
        rejection.message.contains("no activatable element `b`")
            && rejection.message.contains("`a`, `c`"),
        "{}",
        rejection.message
    );
    let inner_key = inner_instances(&shard, instance)[0];
    finish(&mut shard, "a", r#"{"step": 1}"#);
    assert_eq!(
        inner_instances(&shard, instance),
        [inner_key],
        "b runs in a's activation"
    );
    let seen = finish(&mut shard, "b", "{}");
    assert_eq!(
        seen["step"],
        serde_json::json!(1),
        "b sees what a wrote in the activation"
    );
    assert_eq!(shard.live_element_ids(instance), ["after"]);
}

#[test]
fn activate_requests_are_checked_before_anything_changes() {
    let mut shard = Shard::new();
    shard.deploy("adhoc.bpmn", &ad_hoc_model("", "", "", &three_tasks()));
    let (instance, _) = shard.create("p", Variables::new());
    let adhoc = adhoc_key(&shard, instance);
    type Case<'a> = (Key, Vec<(&'a str, &'a str)>, RejectionCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            Key(adhoc.0 + 1_000),
            vec![("a", "{}")],
            RejectionCode::InstanceNotFound,
            "no running ad-hoc subprocess",
        ),
        (
            instance,
            vec![("a", "{}")],
            RejectionCode::InstanceNotFound,
            "no running ad-hoc subprocess",
        ),
        (
            adhoc,
            vec![],
            RejectionCode::InvalidArgument,
            "at least one element",
        ),
        (
            adhoc,
            vec![("a", "{}"), ("a", "{}")],
            RejectionCode::InvalidArgument,
            "named twice",
        ),
        (
            adhoc,
            vec![("a", "{}"), ("zz", "{}")],
            RejectionCode::InvalidArgument,
            "no activatable element `zz`",
        ),
        (
            adhoc,
            vec![("after", "{}")],
            RejectionCode::InvalidArgument,
            "no activatable element `after`",
        ),
    ];
    for (key, elements, code, text) in cases {
        let rejection = activate(&mut shard, key, &elements, false).unwrap_err();
        assert_eq!(rejection.code, code, "{}", rejection.message);
        assert!(rejection.message.contains(text), "{}", rejection.message);
    }
    let many: Vec<AdHocActivation> = (0..=ringflow_core::limits::AD_HOC_ACTIVATIONS_MAX)
        .map(|_| AdHocActivation {
            element_id: "a".to_string(),
            variables: Variables::new(),
        })
        .collect();
    let rejection = shard
        .run(Command::ActivateAdHocActivities {
            key: adhoc,
            elements: many,
            cancel_remaining_instances: false,
        })
        .unwrap_err();
    assert_eq!(rejection.code, RejectionCode::LimitExceeded);
    assert!(rejection.message.contains("AD_HOC_ACTIVATIONS_MAX"));
    assert!(inner_instances(&shard, instance).is_empty());
    // An inner instance's key is not an ad-hoc subprocess's.
    activate(&mut shard, adhoc, &[("a", "{}")], false).unwrap();
    let inner = inner_instances(&shard, instance)[0];
    let rejection = activate(&mut shard, inner, &[("a", "{}")], false).unwrap_err();
    assert_eq!(rejection.code, RejectionCode::InstanceNotFound);
    shard.check_replay();
}

#[test]
fn cancel_remaining_instances_on_request_terminates_the_running_activations_first() {
    let mut shard = Shard::new();
    let xml = ad_hoc_model(
        "",
        r#"activeElementsCollection="= [&quot;a&quot;, &quot;b&quot;]""#,
        "",
        &three_tasks(),
    );
    shard.deploy("adhoc.bpmn", &xml);
    let (instance, _) = shard.create("p", Variables::new());
    let adhoc = adhoc_key(&shard, instance);
    activate(&mut shard, adhoc, &[("c", "{}")], true).expect("activated");
    shard.check_replay();
    assert_eq!(inner_instances(&shard, instance).len(), 1);
    assert_eq!(open_jobs(&mut shard, "a") + open_jobs(&mut shard, "b"), 0);
    finish(&mut shard, "c", "{}");
    assert_eq!(shard.live_element_ids(instance), ["after"]);
}

#[test]
fn a_bad_active_elements_collection_is_an_incident_that_resolves_once_fixed() {
    let mut shard = Shard::new();
    let xml = ad_hoc_model(
        "",
        r#"activeElementsCollection="= toRun""#,
        "",
        &three_tasks(),
    );
    shard.deploy("adhoc.bpmn", &xml);
    for (variables, expected) in [
        (r#"{"toRun": "a"}"#, "gave \"a\", not a list of element ids"),
        (r#"{"toRun": ["a", 2]}"#, "not a list of element ids"),
        (
            r#"{"toRun": ["a", "nope"]}"#,
            "no activatable element `nope`",
        ),
    ] {
        let (instance, _) = shard.create("p", vars(variables));
        let message = incident_message(&shard);
        assert!(message.contains(expected), "{message}");
        assert!(inner_instances(&shard, instance).is_empty());
        let adhoc = adhoc_key(&shard, instance);
        let rejection = activate(&mut shard, adhoc, &[("a", "{}")], false).unwrap_err();
        assert_eq!(rejection.code, RejectionCode::InvalidState);
        let incident = shard.state.incidents().next().unwrap().key;
        shard.fix_and_resolve(instance, r#"{"toRun": ["b"]}"#, incident);
        shard.check_replay();
        assert_eq!(inner_instances(&shard, instance).len(), 1);
        finish(&mut shard, "b", "{}");
        finish(&mut shard, "after", "{}");
    }
    shard.assert_clean();
}

#[test]
fn a_failing_output_element_is_an_incident_on_the_inner_instance() {
    let mut shard = Shard::new();
    let xml = ad_hoc_model(
        "",
        r#"activeElementsCollection="= [&quot;a&quot;]" outputCollection="results" outputElement="= {v: value}""#,
        "= missing &gt; 1",
        &three_tasks(),
    );
    shard.deploy("adhoc.bpmn", &xml);
    let (instance, _) = shard.create("p", Variables::new());
    finish(&mut shard, "a", r#"{"value": 1}"#);
    let message = incident_message(&shard);
    assert!(message.starts_with("completion condition"), "{message}");
    let inner = inner_instances(&shard, instance);
    assert_eq!(inner.len(), 1, "the inner instance waits at the incident");
    let incident = shard.state.incidents().next().unwrap();
    assert_eq!(incident.element_instance_key, inner[0]);
    let adhoc = adhoc_key(&shard, instance);
    // Nothing was appended yet; fixing and resolving appends once.
    assert_eq!(
        shard.state.variables(adhoc).unwrap()["results"],
        serde_json::json!([])
    );
    let key = incident.key;
    shard.fix_and_resolve(instance, r#"{"missing": 2}"#, key);
    shard.check_replay();
    let after = shard.activate("after", 1);
    assert_eq!(
        after[0].variables()["results"],
        serde_json::json!([{"v": 1}])
    );
}

#[test]
fn boundary_events_and_errors_end_the_activations() {
    let mut shard = Shard::new();
    // An error from a task inside is caught by the subprocess's boundary event, not at an
    // inner instance.
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:adHocSubProcess id="adhoc">
             <bpmn:extensionElements><zeebe:adHoc activeElementsCollection="= [&quot;a&quot;, &quot;b&quot;]"/></bpmn:extensionElements>
             {}{}
           </bpmn:adHocSubProcess>
           <bpmn:boundaryEvent id="caught" attachedToRef="adhoc"><bpmn:errorEventDefinition errorRef="err"/></bpmn:boundaryEvent>
           {}{}{}{}<bpmn:endEvent id="end"/><bpmn:endEvent id="end2"/>"#,
        flow("f1", "start", "adhoc"),
        service_task("a", "a"),
        service_task("b", "b"),
        flow("f2", "adhoc", "end"),
        flow("f3", "caught", "handle"),
        service_task("handle", "handle"),
        flow("f4", "handle", "end2"),
    );
    let xml = model("p", &body).replace(
        "</bpmn:process>",
        r#"</bpmn:process><bpmn:error id="err" errorCode="BAD"/>"#,
    );
    shard.deploy("adhoc.bpmn", &xml);
    let (instance, _) = shard.create("p", Variables::new());
    let job = shard.activate("a", 1)[0].key;
    shard
        .run(Command::ThrowError {
            key: job,
            error_code: "BAD".to_string(),
            message: String::new(),
        })
        .expect("thrown");
    shard.check_replay();
    assert_eq!(shard.live_element_ids(instance), ["handle"]);
    assert_eq!(open_jobs(&mut shard, "b"), 0);
    finish(&mut shard, "handle", "{}");
    shard.assert_clean();
}

#[test]
fn an_interrupting_event_subprocess_inside_completes_the_subprocess() {
    let mut shard = Shard::new();
    let inner = format!(
        r#"{}{}<bpmn:subProcess id="esp" triggeredByEvent="true">
             <bpmn:startEvent id="esp-start"><bpmn:messageEventDefinition messageRef="m"/></bpmn:startEvent>
             {}{}{}<bpmn:endEvent id="esp-end"/>
           </bpmn:subProcess>"#,
        service_task("a", "a"),
        service_task("b", "b"),
        flow("e1", "esp-start", "cleanup"),
        service_task("cleanup", "cleanup"),
        flow("e2", "cleanup", "esp-end"),
    );
    let xml = ad_hoc_model(
        "",
        r#"activeElementsCollection="= [&quot;a&quot;, &quot;b&quot;]""#,
        "= false",
        &inner,
    );
    let xml = xml.replace(
        "</bpmn:process>",
        r#"</bpmn:process><bpmn:message id="m" name="stop"><bpmn:extensionElements><zeebe:subscription correlationKey="= order"/></bpmn:extensionElements></bpmn:message>"#,
    );
    shard.deploy("adhoc.bpmn", &xml);
    let (instance, _) = shard.create("p", vars(r#"{"order": "o-1"}"#));
    assert_eq!(inner_instances(&shard, instance).len(), 2);
    shard.publish("stop", "o-1", "{}", 0);
    shard.check_replay();
    assert!(
        inner_instances(&shard, instance).is_empty(),
        "the activations ended"
    );
    finish(&mut shard, "cleanup", "{}");
    // The condition never holds, yet the interrupting event subprocess ended the work.
    assert_eq!(shard.live_element_ids(instance), ["after"]);
}

#[test]
fn cancelling_the_instance_ends_every_activation() {
    let mut shard = Shard::new();
    let xml = ad_hoc_model(
        "",
        r#"activeElementsCollection="= [&quot;a&quot;, &quot;b&quot;, &quot;a&quot;]""#,
        "",
        &three_tasks(),
    );
    shard.deploy("adhoc.bpmn", &xml);
    let (instance, _) = shard.create("p", Variables::new());
    assert_eq!(inner_instances(&shard, instance).len(), 3, "a twice");
    assert_eq!(open_jobs(&mut shard, "a"), 2);
    shard
        .run(Command::CancelInstance { key: instance })
        .expect("cancelled");
    shard.check_replay();
    shard.assert_clean();
}

#[test]
fn a_multi_instance_ad_hoc_subprocess_runs_one_per_item() {
    let mut shard = Shard::new();
    let inner = format!(
        r#"{}{}<bpmn:multiInstanceLoopCharacteristics><bpmn:extensionElements>
             <zeebe:loopCharacteristics inputCollection="= [1, 2]" inputElement="item"
               outputCollection="all" outputElement="= results"/>
           </bpmn:extensionElements></bpmn:multiInstanceLoopCharacteristics>"#,
        service_task("a", "a"),
        service_task("b", "b"),
    );
    let xml = ad_hoc_model(
        "",
        r#"activeElementsCollection="= [&quot;a&quot;]" outputCollection="results" outputElement="= item * 10""#,
        "",
        &inner,
    );
    shard.deploy("adhoc.bpmn", &xml);
    let (instance, _) = shard.create("p", Variables::new());
    assert_eq!(
        inner_instances(&shard, instance).len(),
        2,
        "one activation per item"
    );
    // Each item's subprocess takes requests by its own key.
    let adhocs: Vec<Key> = shard
        .state
        .element_instances()
        .filter(|element| {
            element.process_instance_key == instance
                && matches!(element.role, ElementRole::Inner { .. })
        })
        .map(|element| element.key)
        .collect();
    assert_eq!(adhocs.len(), 2);
    activate(&mut shard, adhocs[1], &[("b", "{}")], false).expect("activated");
    shard.check_replay();
    let jobs = shard.activate("a", 10);
    assert_eq!(jobs.len(), 2);
    for job in jobs {
        shard.complete(job.key, Variables::new());
    }
    finish(&mut shard, "b", "{}");
    let after = shard.activate("after", 1);
    assert_eq!(
        after[0].variables()["all"],
        serde_json::json!([[10], [20, 20]])
    );
    shard.complete(after[0].key, Variables::new());
    shard.check_replay();
    shard.assert_clean();
}

#[test]
fn a_non_interrupting_event_subprocess_inside_runs_beside_the_activations() {
    let mut shard = Shard::new();
    let inner = format!(
        r#"{}<bpmn:subProcess id="esp" triggeredByEvent="true">
             <bpmn:startEvent id="esp-start" isInterrupting="false"><bpmn:messageEventDefinition messageRef="m"/></bpmn:startEvent>
             {}{}{}<bpmn:endEvent id="esp-end"/>
           </bpmn:subProcess>"#,
        service_task("a", "a"),
        flow("e1", "esp-start", "note"),
        service_task("note", "note"),
        flow("e2", "note", "esp-end"),
    );
    let xml = ad_hoc_model("", "", "", &inner).replace(
        "</bpmn:process>",
        r#"</bpmn:process><bpmn:message id="m" name="ping"><bpmn:extensionElements><zeebe:subscription correlationKey="= order"/></bpmn:extensionElements></bpmn:message>"#,
    );
    shard.deploy("adhoc.bpmn", &xml);
    let (instance, _) = shard.create("p", vars(r#"{"order": "o-1"}"#));
    let adhoc = adhoc_key(&shard, instance);
    activate(&mut shard, adhoc, &[("a", "{}")], false).expect("activated");
    shard.publish("ping", "o-1", "{}", 0);
    finish(&mut shard, "note", "{}");
    assert_eq!(inner_instances(&shard, instance).len(), 1, "a still runs");
    assert_eq!(shard.live_element_ids(instance), ["a", "adhoc", "adhoc"]);
    finish(&mut shard, "a", "{}");
    assert_eq!(shard.live_element_ids(instance), ["after"]);
    // With nothing running, the event subprocess's end completes the subprocess (no
    // completion condition).
    let (second, _) = shard.create("p", vars(r#"{"order": "o-2"}"#));
    shard.publish("ping", "o-2", "{}", 0);
    finish(&mut shard, "note", "{}");
    assert_eq!(shard.live_element_ids(second), ["after"]);
    shard.check_replay();
}

/// An ad-hoc subprocess whose worker (job type `agent`) decides, collecting `result`.
fn worker_model() -> String {
    ad_hoc_model(
        "",
        r#"outputCollection="results" outputElement="= result""#,
        "",
        &three_tasks(),
    )
    .replace(
        "<zeebe:adHoc ",
        r#"<zeebe:taskDefinition type="agent" retries="2"/><zeebe:adHoc "#,
    )
}

fn decide(
    shard: &mut Shard,
    variables: &str,
    activate: &[(&str, &str)],
    fulfilled: bool,
    cancel: bool,
) -> Result<Outcome, Rejection> {
    let jobs = shard.activate("agent", 10);
    assert_eq!(jobs.len(), 1, "one open agent job");
    shard.run(Command::CompleteAdHocJob {
        key: jobs[0].key,
        variables: vars(variables),
        result: ringflow_core::adhoc::AdHocJobResult {
            activate_elements: activate
                .iter()
                .map(|(id, variables)| AdHocActivation {
                    element_id: id.to_string(),
                    variables: vars(variables),
                })
                .collect(),
            completion_condition_fulfilled: fulfilled,
            cancel_remaining_instances: cancel,
        },
    })
}

fn agent_jobs(shard: &Shard) -> usize {
    shard
        .state
        .jobs()
        .filter(|job| &*job.job_type == "agent")
        .count()
}

#[test]
fn a_worker_decides_what_runs_and_is_asked_again_after_each_activation() {
    let mut shard = Shard::new();
    shard.deploy("adhoc.bpmn", &worker_model());
    let (instance, _) = shard.create("p", Variables::new());
    let adhoc = adhoc_key(&shard, instance);
    assert!(
        inner_instances(&shard, instance).is_empty(),
        "nothing runs yet"
    );
    let jobs = shard.activate("agent", 10);
    assert_eq!(jobs.len(), 1);
    assert_eq!(&*jobs[0].element_id, "adhoc");
    assert_eq!(jobs[0].element_instance_key, adhoc);
    assert_eq!(jobs[0].retries, 2);
    let variables = jobs[0].variables();
    let offered: Vec<&str> = variables["adHocSubProcessElements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|element| element["elementId"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["a", "b", "c"]);
    // The same element twice, each with its own variables; the job's own variables
    // propagate from the subprocess.
    let outcome = shard
        .run(Command::CompleteAdHocJob {
            key: jobs[0].key,
            variables: vars(r#"{"memory": 1}"#),
            result: ringflow_core::adhoc::AdHocJobResult {
                activate_elements: vec![
                    AdHocActivation {
                        element_id: "a".to_string(),
                        variables: vars(r#"{"query": "x"}"#),
                    },
                    AdHocActivation {
                        element_id: "a".to_string(),
                        variables: vars(r#"{"query": "y"}"#),
                    },
                ],
                completion_condition_fulfilled: false,
                cancel_remaining_instances: false,
            },
        })
        .expect("decided");
    assert!(matches!(outcome.response, Response::JobCompleted { .. }));
    shard.check_replay();
    assert_eq!(inner_instances(&shard, instance).len(), 2);
    assert_eq!(
        agent_jobs(&shard),
        0,
        "no decision is pending while both run"
    );
    assert_eq!(
        shard.state.variables(instance).unwrap()["memory"],
        serde_json::json!(1)
    );
    let tools = shard.activate("a", 10);
    let queries: Vec<serde_json::Value> = tools
        .iter()
        .map(|job| job.variables()["query"].clone())
        .collect();
    assert_eq!(queries, [serde_json::json!("x"), serde_json::json!("y")]);
    // One ends: the worker is asked again, with the output so far.
    shard.complete(tools[0].key, vars(r#"{"result": "X"}"#));
    assert_eq!(agent_jobs(&shard), 1);
    // The other ends before the worker answered: that job is withdrawn, a new one made.
    let outcome = shard.complete(tools[1].key, vars(r#"{"result": "Y"}"#));
    shard.check_replay();
    assert!(
        outcome
            .events
            .iter()
            .any(|event| matches!(event, Event::JobCancelled { .. })),
        "the open decision was withdrawn"
    );
    assert_eq!(agent_jobs(&shard), 1);
    let jobs = shard.activate("agent", 10);
    assert_eq!(
        jobs[0].variables()["results"],
        serde_json::json!(["X", "Y"])
    );
    shard
        .run(Command::CompleteAdHocJob {
            key: jobs[0].key,
            variables: Variables::new(),
            result: ringflow_core::adhoc::AdHocJobResult {
                completion_condition_fulfilled: true,
                ..Default::default()
            },
        })
        .expect("done");
    shard.check_replay();
    let after = shard.activate("after", 1);
    assert_eq!(
        after[0].variables()["results"],
        serde_json::json!(["X", "Y"])
    );
    shard.complete(after[0].key, Variables::new());
    shard.assert_clean();
}

#[test]
fn a_worker_that_is_done_waits_for_what_runs_or_cancels_it() {
    let mut shard = Shard::new();
    shard.deploy("adhoc.bpmn", &worker_model());
    // Done while b runs, without cancelling: completes when b ends, no new decision.
    let (first, _) = shard.create("p", Variables::new());
    decide(&mut shard, "{}", &[("b", "{}")], false, false).unwrap();
    assert_eq!(agent_jobs(&shard), 0, "no decision is open while b runs");
    let b = shard.activate("b", 1)[0].key;
    shard.complete(b, Variables::new());
    decide(&mut shard, "{}", &[("b", "{}")], false, false).unwrap();
    let b = shard.activate("b", 1)[0].key;
    // A plain completion of the agent job is a decision to activate nothing.
    shard.complete(b, Variables::new());
    let agent = shard.activate("agent", 1)[0].key;
    shard.complete(agent, Variables::new());
    assert_eq!(
        shard.live_element_ids(first),
        ["adhoc"],
        "nothing runs, nothing decided"
    );
    let adhoc = adhoc_key(&shard, first);
    activate(&mut shard, adhoc, &[("c", "{}")], false).unwrap();
    assert_eq!(agent_jobs(&shard), 0, "c runs: no decision is open");
    let c = shard.activate("c", 1)[0].key;
    shard.complete(c, Variables::new());
    decide(&mut shard, "{}", &[("a", "{}")], false, false).unwrap();
    assert_eq!(agent_jobs(&shard), 0, "a runs");
    let a = shard.activate("a", 1)[0].key;
    shard.complete(a, Variables::new());
    // Done with a and b running and cancel: both end, the subprocess completes.
    decide(&mut shard, "{}", &[("a", "{}"), ("b", "{}")], false, false).unwrap();
    let a = shard.activate("a", 1)[0].key;
    shard.complete(a, Variables::new());
    decide(&mut shard, "{}", &[], true, false).unwrap();
    assert_eq!(
        shard.live_element_ids(first),
        ["adhoc", "adhoc", "b"],
        "b still runs"
    );
    assert_eq!(agent_jobs(&shard), 0);
    // What the worker said survives a snapshot and a replay.
    shard.check_replay();
    let snapshot = shard.state.encode();
    let restored = ringflow_core::State::decode(&snapshot).expect("restores");
    assert_eq!(restored.encode(), snapshot);
    // Go on from the restored state: without the worker's word, b's end would ask again.
    shard.state = restored;
    let b = shard.activate("b", 1)[0].key;
    shard.complete(b, Variables::new());
    assert_eq!(shard.live_element_ids(first), ["after"]);
    shard.check_replay();

    let (second, _) = shard.create("p", Variables::new());
    decide(&mut shard, "{}", &[("a", "{}"), ("b", "{}")], false, false).unwrap();
    let a = shard.activate("a", 1)[0].key;
    shard.complete(a, Variables::new());
    // Cancel what runs and activate c in one decision.
    decide(&mut shard, "{}", &[("c", "{}")], false, true).unwrap();
    assert_eq!(shard.live_element_ids(second), ["adhoc", "adhoc", "c"]);
    assert_eq!(open_jobs(&mut shard, "b"), 0);
    let c = shard.activate("c", 1)[0].key;
    shard.complete(c, Variables::new());
    decide(&mut shard, "{}", &[("a", "{}")], false, false).unwrap();
    assert_eq!(agent_jobs(&shard), 0, "a runs: no decision is open");
    shard.check_replay();
}

#[test]
fn a_worker_decision_is_checked_before_anything_changes() {
    let mut shard = Shard::new();
    shard.deploy("adhoc.bpmn", &worker_model());
    let (instance, _) = shard.create("p", Variables::new());
    for (activate, fulfilled, code, text) in [
        (
            vec![("a", "{}")],
            true,
            RejectionCode::InvalidArgument,
            "both",
        ),
        (
            vec![("zz", "{}")],
            false,
            RejectionCode::InvalidArgument,
            "no activatable element `zz`",
        ),
    ] {
        let jobs = shard.activate("agent", 10);
        let key = jobs.first().map(|job| job.key).unwrap_or_else(|| {
            shard
                .state
                .jobs()
                .find(|j| &*j.job_type == "agent")
                .unwrap()
                .key
        });
        let rejection = shard
            .run(Command::CompleteAdHocJob {
                key,
                variables: Variables::new(),
                result: ringflow_core::adhoc::AdHocJobResult {
                    activate_elements: activate
                        .iter()
                        .map(|(id, variables)| AdHocActivation {
                            element_id: id.to_string(),
                            variables: vars(variables),
                        })
                        .collect(),
                    completion_condition_fulfilled: fulfilled,
                    cancel_remaining_instances: false,
                },
            })
            .unwrap_err();
        assert_eq!(rejection.code, code, "{}", rejection.message);
        assert!(rejection.message.contains(text), "{}", rejection.message);
    }
    // A task's job takes no ad-hoc result.
    let agent = shard
        .state
        .jobs()
        .find(|j| &*j.job_type == "agent")
        .unwrap()
        .key;
    shard
        .run(Command::CompleteAdHocJob {
            key: agent,
            variables: Variables::new(),
            result: ringflow_core::adhoc::AdHocJobResult {
                activate_elements: vec![AdHocActivation {
                    element_id: "a".to_string(),
                    variables: Variables::new(),
                }],
                ..Default::default()
            },
        })
        .unwrap();
    let task_job = shard.activate("a", 1)[0].key;
    let rejection = shard
        .run(Command::CompleteAdHocJob {
            key: task_job,
            variables: Variables::new(),
            result: Default::default(),
        })
        .unwrap_err();
    assert_eq!(rejection.code, RejectionCode::InvalidArgument);
    assert!(
        rejection.message.contains("not the job of an ad-hoc"),
        "{}",
        rejection.message
    );
    assert_eq!(inner_instances(&shard, instance).len(), 1);
    shard.check_replay();
}

#[test]
fn a_failed_worker_job_holds_the_decision_until_the_incident_is_resolved() {
    let mut shard = Shard::new();
    shard.deploy("adhoc.bpmn", &worker_model());
    let (instance, _) = shard.create("p", Variables::new());
    decide(&mut shard, "{}", &[("a", "{}"), ("b", "{}")], false, false).unwrap();
    let a = shard.activate("a", 1)[0].key;
    shard.complete(a, Variables::new());
    let agent = shard.activate("agent", 1)[0].key;
    shard
        .run(Command::FailJob {
            key: agent,
            retries: 0,
            retry_backoff_millis: 0,
            message: "model unavailable".to_string(),
        })
        .unwrap();
    let incident = shard.state.incidents().next().unwrap().clone();
    assert_eq!(incident.element_instance_key, adhoc_key(&shard, instance));
    // b ends meanwhile: the failed job stays with its incident, no new one is made.
    let b = shard.activate("b", 1)[0].key;
    shard.complete(b, Variables::new());
    assert_eq!(agent_jobs(&shard), 1);
    shard
        .run(Command::UpdateJobRetries {
            key: agent,
            retries: 1,
        })
        .unwrap();
    shard
        .run(Command::ResolveIncident { key: incident.key })
        .unwrap();
    decide(&mut shard, "{}", &[], true, false).unwrap();
    assert_eq!(shard.live_element_ids(instance), ["after"]);
    shard.check_replay();
}

/// Camunda 8.8: each activatable element's `fromAi(...)` calls are its tool parameters in
/// `adHocSubProcessElements`, and evaluated they give the values an activation passes.
#[test]
fn the_elements_variable_describes_each_tool_and_its_parameters_as_camunda_does() {
    let mut shard = Shard::new();
    let lookup = r#"<bpmn:serviceTask id="lookup" name="Look up">
          <bpmn:documentation>Finds a customer</bpmn:documentation>
          <bpmn:extensionElements><zeebe:taskDefinition type="lookup"/>
            <zeebe:properties><zeebe:property name="p1" value="v1"/><zeebe:property name="p2" value=""/></zeebe:properties>
            <zeebe:ioMapping>
              <zeebe:input source="=fromAi(toolCall.customerId, &quot;The customer's id&quot;, &quot;string&quot;)" target="customerId"/>
              <zeebe:input source="=123" target="fixed"/>
              <zeebe:input source="={q: fromAi(value: toolCall.query, schema: {maxLength: 100}), n: fromAi(toolCall.limit, &quot;How many&quot;, &quot;integer&quot;, {minimum: 1}, {required: false})}" target="search"/>
            </zeebe:ioMapping>
          </bpmn:extensionElements>
        </bpmn:serviceTask>"#;
    let xml = ad_hoc_model(
        "",
        "",
        "",
        &format!("{lookup}{}", service_task("plain", "plain")),
    );
    shard.deploy("tools.bpmn", &xml);
    let (instance, _) = shard.create("p", vars("{}"));
    let adhoc = adhoc_key(&shard, instance);
    let local = shard.state.variables(adhoc).expect("local variables");
    assert_eq!(
        local["adHocSubProcessElements"],
        serde_json::json!([
            {
                "elementId": "lookup",
                "elementName": "Look up",
                "documentation": "Finds a customer",
                "properties": {"p1": "v1", "p2": null},
                "parameters": [
                    {"name": "toolCall.customerId", "description": "The customer's id", "type": "string"},
                    {"name": "toolCall.query", "schema": {"maxLength": 100}},
                    {
                        "name": "toolCall.limit", "description": "How many", "type": "integer",
                        "schema": {"minimum": 1}, "options": {"required": false}
                    }
                ]
            },
            {"elementId": "plain"}
        ])
    );
    // The agent's worker activates the tool with its call's arguments.
    activate(
        &mut shard,
        adhoc,
        &[(
            "lookup",
            r#"{"toolCall": {"customerId": "c-7", "query": "open orders", "limit": 3}}"#,
        )],
        false,
    )
    .expect("activated");
    shard.check_replay();
    let jobs = shard.activate("lookup", 10);
    assert_eq!(jobs.len(), 1);
    let variables = &jobs[0].variables();
    assert_eq!(variables["customerId"], serde_json::json!("c-7"));
    assert_eq!(variables["fixed"], serde_json::json!(123));
    assert_eq!(
        variables["search"],
        serde_json::json!({"q": "open orders", "n": 3})
    );
}
