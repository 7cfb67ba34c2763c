//! Multi-instance activities, call activities, escalation and link events, and what is
//! refused at deploy.

mod common;

use common::{Shard, flow, model, service_task, vars};
use ringflow_core::{Command, Event, RejectionCode};

fn multi_task(sequential: bool, extra: &str) -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:serviceTask id="task"><bpmn:extensionElements>
             <zeebe:taskDefinition type="item"/></bpmn:extensionElements>
             <bpmn:multiInstanceLoopCharacteristics isSequential="{sequential}">
               <bpmn:extensionElements>
                 <zeebe:loopCharacteristics inputCollection="=items" inputElement="item"
                   outputCollection="results" outputElement="=result" />
               </bpmn:extensionElements>{extra}
             </bpmn:multiInstanceLoopCharacteristics></bpmn:serviceTask>
           {}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "task"),
        flow("f2", "task", "end"),
    );
    model("multi", &body)
}

fn item_of(job: &ringflow_core::ActivatedJob) -> i64 {
    job.variables()["item"].as_i64().expect("an item")
}

#[test]
fn a_parallel_multi_instance_task_collects_outputs_in_item_order() {
    let mut shard = Shard::new();
    shard.deploy("multi.bpmn", &multi_task(false, ""));
    let (instance, _) = shard.create("multi", vars(r#"{"items": [10, 20, 30]}"#));
    let jobs = shard.activate("item", 10);
    assert_eq!(jobs.len(), 3, "all at once");
    let counters: Vec<i64> = jobs
        .iter()
        .map(|job| job.variables()["loopCounter"].as_i64().expect("counter"))
        .collect();
    assert_eq!(counters, vec![1, 2, 3]);
    // Complete out of order: the outputs still land at their items' positions.
    for job in jobs.iter().rev() {
        let result = format!(r#"{{"result": {}}}"#, item_of(job) + 1);
        shard.complete(job.key, vars(&result));
    }
    assert!(shard.state.instance(instance).is_none());
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn the_output_element_variable_is_each_inner_instance_s_own() {
    // As in Camunda: `result` is created as null in every inner instance, so a job's
    // `result` stays there instead of reaching the process, and the collection takes it.
    let mut shard = Shard::new();
    shard.deploy("multi.bpmn", &multi_task(false, ""));
    let (instance, _) = shard.create("multi", vars(r#"{"items": [1, 2]}"#));
    let jobs = shard.activate("item", 10);
    for job in &jobs {
        assert_eq!(job.variables()["result"], serde_json::Value::Null);
    }
    shard.complete(jobs[0].key, vars(r#"{"result": "one", "other": 1}"#));
    let root = shard.state.variables(instance).expect("root variables");
    assert!(
        root.get("result").is_none(),
        "result stayed in its inner instance"
    );
    assert_eq!(root["other"], serde_json::json!(1), "the rest propagates");
    shard.complete(jobs[1].key, vars(r#"{"result": "two"}"#));
    assert!(shard.state.instance(instance).is_none());
    shard.check_replay();
}

#[test]
fn a_sequential_multi_instance_runs_one_item_at_a_time_in_order() {
    let mut shard = Shard::new();
    shard.deploy("multi.bpmn", &multi_task(true, ""));
    let (instance, _) = shard.create("multi", vars(r#"{"items": [1, 2], "results": "old"}"#));
    let first = shard.activate("item", 10);
    assert_eq!(first.len(), 1, "sequential");
    assert_eq!(item_of(&first[0]), 1);
    shard.complete(first[0].key, vars(r#"{"result": "one"}"#));
    let second = shard.activate("item", 10);
    assert_eq!(second.len(), 1);
    assert_eq!(item_of(&second[0]), 2);
    let outcome = shard.complete(second[0].key, vars(r#"{"result": "two"}"#));
    assert!(shard.state.instance(instance).is_none());
    assert!(outcome.events.iter().any(|event| matches!(
        event,
        Event::ElementCompleted { element_id, .. } if &**element_id == "task"
    )));
    shard.check_replay();
}

#[test]
fn the_output_collection_reaches_the_process_and_the_completion_condition_stops_early() {
    let mut shard = Shard::new();
    let xml = multi_task(
        false,
        "<bpmn:completionCondition>=numberOfCompletedInstances >= 2</bpmn:completionCondition>",
    )
    .replace(
        &flow("f2", "task", "end"),
        &format!(
            "{}{}{}",
            flow("f2", "task", "check"),
            service_task("check", "check"),
            flow("f3", "check", "end")
        ),
    );
    shard.deploy("multi.bpmn", &xml);
    let (instance, _) = shard.create("multi", vars(r#"{"items": [1, 2, 3, 4]}"#));
    let jobs = shard.activate("item", 10);
    assert_eq!(jobs.len(), 4);
    shard.complete(jobs[2].key, vars(r#"{"result": "c"}"#));
    shard.complete(jobs[0].key, vars(r#"{"result": "a"}"#));
    // The condition held after two: the other two were terminated with their jobs.
    assert!(shard.state.job(jobs[1].key).is_none());
    assert!(shard.state.job(jobs[3].key).is_none());
    let check = shard.activate("check", 1).remove(0);
    assert_eq!(
        check.variables()["results"],
        serde_json::json!(["a", null, "c", null])
    );
    shard.complete(check.key, vars("{}"));
    assert!(shard.state.instance(instance).is_none());
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn empty_and_bad_input_collections() {
    let mut shard = Shard::new();
    shard.deploy("multi.bpmn", &multi_task(false, ""));
    let (empty, _) = shard.create("multi", vars(r#"{"items": []}"#));
    assert!(
        shard.state.instance(empty).is_none(),
        "nothing to do: done at once"
    );
    let (bad, _) = shard.create("multi", vars(r#"{"items": "not a list"}"#));
    let incident = shard.state.incidents().next().expect("an incident").clone();
    assert!(
        incident.message.contains("not a list"),
        "{}",
        incident.message
    );
    shard
        .run(Command::SetVariables {
            scope: bad,
            variables: vars(r#"{"items": [5]}"#),
            local: false,
        })
        .expect("set");
    shard
        .run(Command::ResolveIncident { key: incident.key })
        .expect("resolved");
    let job = shard.activate("item", 10).remove(0);
    assert_eq!(item_of(&job), 5);
    shard.complete(job.key, vars(r#"{"result": 1}"#));
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn a_multi_instance_subprocess_with_an_interrupting_timer_on_its_body() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:subProcess id="each">
             <bpmn:multiInstanceLoopCharacteristics><bpmn:extensionElements>
               <zeebe:loopCharacteristics inputCollection="=items" inputElement="item"/>
             </bpmn:extensionElements></bpmn:multiInstanceLoopCharacteristics>
             <bpmn:startEvent id="inner-start"/>{}{}{}<bpmn:endEvent id="inner-end"/>
           </bpmn:subProcess>
           <bpmn:boundaryEvent id="too-slow" attachedToRef="each">
             <bpmn:timerEventDefinition><bpmn:timeDuration>PT1M</bpmn:timeDuration>
             </bpmn:timerEventDefinition></bpmn:boundaryEvent>
           {}{}<bpmn:endEvent id="end"/><bpmn:endEvent id="timed-out"/>"#,
        flow("f1", "start", "each"),
        flow("f2", "inner-start", "work"),
        service_task("work", "work"),
        flow("f3", "work", "inner-end"),
        flow("f4", "each", "end"),
        flow("f5", "too-slow", "timed-out"),
    );
    shard.deploy("each.bpmn", &model("per-item", &body));
    let (instance, _) = shard.create("per-item", vars(r#"{"items": ["a", "b", "c"]}"#));
    assert_eq!(shard.state.timers().count(), 1, "one timer, on the body");
    let jobs = shard.activate("work", 10);
    assert_eq!(jobs.len(), 3);
    shard.complete(jobs[0].key, vars("{}"));
    shard.fire_timers_until(shard.now_millis + 60_000);
    assert!(
        shard.state.instance(instance).is_none(),
        "the body and every inner instance ended"
    );
    shard.assert_clean();
    shard.check_replay();
}

fn child_process() -> String {
    let body = format!(
        r#"<bpmn:startEvent id="c-start"/>{}{}{}<bpmn:endEvent id="c-end"/>"#,
        flow("c1", "c-start", "c-task"),
        service_task("c-task", "child-work"),
        flow("c2", "c-task", "c-end"),
    );
    model("child", &body)
}

fn parent_process(attributes: &str, mappings: &str) -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:callActivity id="call"><bpmn:extensionElements>
             <zeebe:calledElement processId="child" {attributes}/>{mappings}
           </bpmn:extensionElements></bpmn:callActivity>
           <bpmn:boundaryEvent id="child-failed" attachedToRef="call">
             <bpmn:errorEventDefinition errorRef="e"/></bpmn:boundaryEvent>
           {}{}{}<bpmn:endEvent id="end"/><bpmn:endEvent id="failed"/>"#,
        flow("f1", "start", "call"),
        flow("f2", "call", "after"),
        service_task("after", "after"),
        flow("f3", "after", "end"),
    ) + flow("f4", "child-failed", "failed").as_str();
    model("parent", &body).replace(
        "</bpmn:process>",
        r#"</bpmn:process><bpmn:error id="e" errorCode="CHILD_FAILED"/>"#,
    )
}

fn child_of(shard: &Shard, parent: ringflow_core::Key) -> ringflow_core::Key {
    shard
        .state
        .instances()
        .find(|instance| {
            instance
                .parent
                .and_then(|call| shard.state.element_instance(call))
                .is_some_and(|call| call.process_instance_key == parent)
        })
        .expect("a child instance")
        .key
}

#[test]
fn a_call_activity_runs_the_child_and_takes_its_variables_back() {
    let mut shard = Shard::new();
    shard.deploy("child.bpmn", &child_process());
    shard.deploy("parent.bpmn", &parent_process("", ""));
    let (parent, _) = shard.create("parent", vars(r#"{"order": 1}"#));
    let child = child_of(&shard, parent);
    let job = shard.activate("child-work", 1).remove(0);
    assert_eq!(job.process_instance_key, child);
    assert_eq!(
        job.variables()["order"],
        serde_json::json!(1),
        "parent variables copied in"
    );
    // A child cannot be cancelled on its own.
    let refused = shard.run(Command::CancelInstance { key: child });
    assert_eq!(
        refused.expect_err("refused").code,
        RejectionCode::InvalidState
    );
    shard.complete(job.key, vars(r#"{"shipped": true}"#));
    assert!(shard.state.instance(child).is_none());
    let after = shard.activate("after", 1).remove(0);
    assert_eq!(
        after.variables()["shipped"],
        serde_json::json!(true),
        "child variables back"
    );
    shard.complete(after.key, vars("{}"));
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn variables_follow_the_propagation_flags_and_mappings() {
    let mut shard = Shard::new();
    shard.deploy("child.bpmn", &child_process());
    let mappings = r#"<zeebe:ioMapping><zeebe:input source="=order + 1" target="next"/>
                      <zeebe:output source="=shipped" target="wasShipped"/></zeebe:ioMapping>"#;
    shard.deploy(
        "parent.bpmn",
        &parent_process(r#"propagateAllParentVariables="false""#, mappings),
    );
    shard.create("parent", vars(r#"{"order": 1, "secret": "x"}"#));
    let job = shard.activate("child-work", 1).remove(0);
    assert_eq!(
        job.variables(),
        vars(r#"{"next": 2}"#),
        "only the input mappings go in"
    );
    shard.complete(job.key, vars(r#"{"shipped": "yes", "noise": 1}"#));
    let after = shard.activate("after", 1).remove(0);
    assert_eq!(after.variables()["wasShipped"], serde_json::json!("yes"));
    assert!(
        after.variables().get("noise").is_none(),
        "output mappings decide"
    );
    assert!(after.variables().get("shipped").is_none());
    shard.check_replay();
}

#[test]
fn cancelling_the_parent_cancels_the_child_and_child_incidents_show_in_the_parent() {
    let mut shard = Shard::new();
    shard.deploy("child.bpmn", &child_process());
    shard.deploy("parent.bpmn", &parent_process("", ""));
    let (parent, _) = shard.create("parent", vars("{}"));
    let child = child_of(&shard, parent);
    let job = shard.activate("child-work", 1).remove(0);
    shard
        .run(Command::FailJob {
            key: job.key,
            retries: 0,
            retry_backoff_millis: 0,
            message: "disk full".into(),
        })
        .expect("failed");
    let seen = shard.state.incidents_in_tree(parent);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].process_instance_key, child);
    shard
        .run(Command::CancelInstance { key: parent })
        .expect("cancelled");
    assert!(shard.state.instance(child).is_none());
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn an_error_not_caught_in_the_child_is_caught_at_the_call_activity() {
    let mut shard = Shard::new();
    shard.deploy("child.bpmn", &child_process());
    shard.deploy("parent.bpmn", &parent_process("", ""));
    let (parent, _) = shard.create("parent", vars("{}"));
    let job = shard.activate("child-work", 1).remove(0);
    shard
        .run(Command::ThrowError {
            key: job.key,
            error_code: "CHILD_FAILED".into(),
            message: String::new(),
        })
        .expect("thrown");
    assert!(
        shard.state.instance(parent).is_none(),
        "caught, then the parent ended"
    );
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn bindings_choose_the_called_version() {
    let mut shard = Shard::new();
    let tagged = |tag: &str, job: &str| {
        child_process()
            .replace(r#"isExecutable="true">"#, &format!(
                r#"isExecutable="true"><bpmn:extensionElements><zeebe:versionTag value="{tag}"/></bpmn:extensionElements>"#
            ))
            .replace("child-work", job)
    };
    shard.deploy("child.bpmn", &tagged("v1", "from-v1"));
    shard.deploy("child.bpmn", &tagged("v2", "from-v2"));
    shard.deploy(
        "parent.bpmn",
        &parent_process(r#"bindingType="versionTag" versionTag="v1""#, ""),
    );
    shard.create("parent", vars("{}"));
    assert_eq!(shard.activate("from-v1", 1).len(), 1);
    shard.deploy(
        "parent.bpmn",
        &parent_process(r#"bindingType="versionTag" versionTag="v9""#, ""),
    );
    let (parent, _) = shard.create("parent", vars("{}"));
    let incident = shard
        .state
        .incidents()
        .find(|incident| incident.process_instance_key == parent)
        .expect("an incident");
    assert!(
        incident.message.contains("version tag `v9`"),
        "{}",
        incident.message
    );
    shard.deploy("parent.bpmn", &parent_process("", ""));
    shard.create("parent", vars("{}"));
    assert_eq!(shard.activate("from-v2", 1).len(), 1, "latest by default");
    shard.check_replay();
}

#[test]
fn escalations_are_caught_without_interrupting_or_pass_by() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:subProcess id="sub"><bpmn:startEvent id="s-start"/>{}
             <bpmn:intermediateThrowEvent id="raise">
               <bpmn:escalationEventDefinition escalationRef="esc"/></bpmn:intermediateThrowEvent>
             {}{}{}<bpmn:endEvent id="s-end"/></bpmn:subProcess>
           <bpmn:boundaryEvent id="noticed" attachedToRef="sub" cancelActivity="false">
             <bpmn:escalationEventDefinition escalationRef="esc"/></bpmn:boundaryEvent>
           {}{}{}<bpmn:endEvent id="end"/><bpmn:endEvent id="noticed-end"/>"#,
        flow("f1", "start", "sub"),
        flow("f2", "s-start", "raise"),
        flow("f3", "raise", "inner"),
        service_task("inner", "inner"),
        flow("f4", "inner", "s-end"),
        flow("f5", "sub", "end"),
        flow("f6", "noticed", "note"),
        service_task("note", "note"),
    ) + flow("f7", "note", "noticed-end").as_str();
    let xml = model("escalating", &body).replace(
        "</bpmn:process>",
        r#"</bpmn:process><bpmn:escalation id="esc" escalationCode="LATE"/>"#,
    );
    shard.deploy("escalating.bpmn", &xml);
    let (instance, _) = shard.create("escalating", vars("{}"));
    assert_eq!(
        shard.live_element_ids(instance),
        vec!["inner", "note", "sub"]
    );
    for job_type in ["note", "inner"] {
        let job = shard.activate(job_type, 1).remove(0);
        shard.complete(job.key, vars("{}"));
    }
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn a_link_throw_jumps_to_its_catch() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:intermediateThrowEvent id="go"><bpmn:linkEventDefinition name="L"/>
           </bpmn:intermediateThrowEvent>
           <bpmn:intermediateCatchEvent id="land"><bpmn:linkEventDefinition name="L"/>
           </bpmn:intermediateCatchEvent>{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "go"),
        flow("f2", "land", "task"),
        service_task("task", "work"),
        flow("f3", "task", "end"),
    );
    shard.deploy("link.bpmn", &model("link", &body));
    let (instance, _) = shard.create("link", vars("{}"));
    assert_eq!(shard.live_element_ids(instance), vec!["task"]);
    let job = shard.activate("work", 1).remove(0);
    shard.complete(job.key, vars("{}"));
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn every_scope_a_command_changed_gets_one_variables_event_also_past_forty() {
    // 40 inner instances get `item` and `loopCounter`, and end in the same command: each
    // scope's change is reported once, in the order of the changes, whether the scope
    // ended (reported as it ends) or not.
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}<bpmn:task id="each"><bpmn:multiInstanceLoopCharacteristics>
             <bpmn:extensionElements><zeebe:loopCharacteristics inputCollection="=items"
               inputElement="item"/></bpmn:extensionElements>
           </bpmn:multiInstanceLoopCharacteristics></bpmn:task>{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "each"),
        flow("f2", "each", "wait"),
        service_task("wait", "wait"),
        flow("f3", "wait", "end"),
    );
    shard.deploy("many.bpmn", &model("many", &body));
    let items: Vec<u32> = (1..=40).collect();
    let (instance, created) = shard.create("many", vars(&format!(r#"{{"items": {items:?}}}"#)));
    let scopes: Vec<ringflow_core::Key> = created
        .events
        .iter()
        .filter_map(|event| match event {
            ringflow_core::Event::VariablesUpdated { scope_key, .. } => Some(*scope_key),
            _ => None,
        })
        .collect();
    let distinct: std::collections::BTreeSet<_> = scopes.iter().collect();
    assert_eq!(scopes.len(), 41, "the root and 40 inner instances");
    assert_eq!(distinct.len(), 41, "each once");
    assert!(scopes.contains(&instance));
    shard.check_replay();
}
