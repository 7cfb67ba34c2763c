//! Signals: catch events, boundary events, event subprocess starts, start events, throw and
//! end events, event-based gateways, on one shard and across two; what is not delivered, the
//! broadcast limit, and the snapshot of open signal subscriptions.

mod common;

use common::{Shard, flow, model, service_task, vars};
use ringflow_core::{
    Command, Ctx, Effect, Key, Mail, Outcome, RejectionCode, Resource, Response, State, Variables,
    process,
};

/// Adds `<bpmn:signal id=.. name=..>` for each (id, name) after the process.
fn with_signals(xml: String, signals: &[(&str, &str)]) -> String {
    let declared: String = signals
        .iter()
        .map(|(id, name)| format!(r#"<bpmn:signal id="{id}" name="{name}"/>"#))
        .collect();
    xml.replace("</bpmn:process>", &format!("</bpmn:process>{declared}"))
}

/// start -> catch signal `name` -> task `after` -> end, as process `id`.
fn catching(id: &str, name: &str) -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:intermediateCatchEvent id="wait">
             <bpmn:signalEventDefinition signalRef="s"/></bpmn:intermediateCatchEvent>
           {}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "wait"),
        flow("f2", "wait", "after"),
        service_task("after", "after"),
        flow("f3", "after", "end"),
    );
    with_signals(model(id, &body), &[("s", name)])
}

fn broadcast(shard: &mut Shard, name: &str, variables: &str) -> Outcome {
    match shard.run(Command::BroadcastSignal {
        name: name.to_string(),
        variables: vars(variables),
    }) {
        Ok(outcome) => {
            assert!(
                matches!(outcome.response, Response::SignalBroadcast { .. }),
                "{:?}",
                outcome.response
            );
            outcome
        }
        Err(rejection) => panic!("broadcast failed: {rejection}"),
    }
}

#[test]
fn a_signal_reaches_every_waiting_instance_of_every_process_and_is_not_kept() {
    let mut shard = Shard::new();
    shard.deploy("a.bpmn", &catching("a", "go"));
    shard.deploy("b.bpmn", &catching("b", "go"));
    shard.deploy("c.bpmn", &catching("c", "other"));
    for process in ["a", "a", "b", "c"] {
        shard.create(process, vars("{}"));
    }
    assert_eq!(shard.state.signal_subscriptions().count(), 4);
    shard.check_replay();

    broadcast(&mut shard, "go", r#"{"reason": "ready"}"#);
    let jobs = shard.activate("after", 10);
    assert_eq!(
        jobs.len(),
        3,
        "the two instances of a and the one of b moved on"
    );
    for job in &jobs {
        assert_eq!(
            job.variables()["reason"],
            "ready",
            "the signal's variables arrive"
        );
    }
    assert_eq!(
        shard.state.signal_subscriptions().count(),
        1,
        "only c's subscription (another name) is left"
    );

    // Not buffered: an instance that starts waiting after the broadcast does not see it.
    shard.create("a", vars("{}"));
    assert_eq!(shard.state.signal_subscriptions().count(), 2);
    assert!(shard.activate("after", 10).is_empty());
    shard.check_replay();

    broadcast(&mut shard, "other", "{}");
    broadcast(&mut shard, "go", "{}");
    for job in shard.activate("after", 10) {
        shard.complete(job.key, vars("{}"));
    }
    for job in jobs {
        shard.complete(job.key, vars("{}"));
    }
    shard.check_replay();
    shard.assert_clean();
    assert_eq!(shard.state.signal_subscriptions().count(), 0);
}

/// start -> task `work` (with a signal boundary event `stop` -> end `stopped`) -> end.
fn task_with_boundary(id: &str, interrupting: bool) -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>
           <bpmn:boundaryEvent id="stop" attachedToRef="task" cancelActivity="{interrupting}">
             <bpmn:signalEventDefinition signalRef="s"/></bpmn:boundaryEvent>
           {}{}
           <bpmn:endEvent id="stopped"/>"#,
        flow("f1", "start", "task"),
        service_task("task", "work"),
        flow("f2", "task", "end"),
        flow("f3", "stop", "note"),
        service_task("note", "note"),
    )
    .replace(
        "<bpmn:endEvent id=\"stopped\"/>",
        &format!(
            "{}<bpmn:endEvent id=\"stopped\"/>",
            flow("f4", "note", "stopped")
        ),
    );
    with_signals(model(id, &body), &[("s", "stop")])
}

#[test]
fn an_interrupting_boundary_signal_ends_the_task_and_a_non_interrupting_one_keeps_waiting() {
    let mut shard = Shard::new();
    shard.deploy("i.bpmn", &task_with_boundary("interrupting", true));
    shard.deploy("n.bpmn", &task_with_boundary("beside", false));
    let (interrupted, _) = shard.create("interrupting", vars("{}"));
    let (beside, _) = shard.create("beside", vars("{}"));
    assert_eq!(shard.state.job_count(), 2);

    broadcast(&mut shard, "stop", r#"{"why": "recall"}"#);
    assert_eq!(shard.live_element_ids(interrupted), ["note"]);
    assert_eq!(shard.live_element_ids(beside), ["note", "task"]);
    let notes = shard.activate("note", 10);
    assert_eq!(notes.len(), 2);
    assert!(notes.iter().all(|job| job.variables()["why"] == "recall"));
    // The non-interrupting boundary event still waits, the interrupting one is closed.
    assert_eq!(shard.state.signal_subscriptions().count(), 1);
    broadcast(&mut shard, "stop", "{}");
    assert_eq!(shard.live_element_ids(beside), ["note", "note", "task"]);
    shard.check_replay();

    for job in shard.activate("note", 10).into_iter().chain(notes) {
        shard.complete(job.key, vars("{}"));
    }
    for job in shard.activate("work", 10) {
        shard.complete(job.key, vars("{}"));
    }
    shard.check_replay();
    shard.assert_clean();
    assert_eq!(shard.state.signal_subscriptions().count(), 0);
}

#[test]
fn a_signal_event_subprocess_interrupts_its_scope() {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>
           <bpmn:subProcess id="on-stop" triggeredByEvent="true">
             <bpmn:startEvent id="stop-start" isInterrupting="true">
               <bpmn:signalEventDefinition signalRef="s"/></bpmn:startEvent>
             {}{}{}<bpmn:endEvent id="stop-end"/>
           </bpmn:subProcess>"#,
        flow("f1", "start", "task"),
        service_task("task", "work"),
        flow("f2", "task", "end"),
        flow("f3", "stop-start", "cleanup"),
        service_task("cleanup", "cleanup"),
        flow("f4", "cleanup", "stop-end"),
    );
    let mut shard = Shard::new();
    shard.deploy(
        "esp.bpmn",
        &with_signals(model("esp", &body), &[("s", "stop")]),
    );
    let (instance, _) = shard.create("esp", vars("{}"));
    assert_eq!(shard.state.signal_subscriptions().count(), 1);
    broadcast(&mut shard, "stop", "{}");
    assert_eq!(shard.live_element_ids(instance), ["cleanup", "on-stop"]);
    assert_eq!(shard.state.signal_subscriptions().count(), 0);
    assert!(
        shard.activate("work", 10).is_empty(),
        "the task's job is gone"
    );
    for job in shard.activate("cleanup", 10) {
        shard.complete(job.key, vars("{}"));
    }
    shard.check_replay();
    shard.assert_clean();
}

/// A process started by signal `name`: signal start -> task `started` -> end.
fn started_by(id: &str, name: &str, task_type: &str) -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"><bpmn:signalEventDefinition signalRef="s"/>
           </bpmn:startEvent>{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "task"),
        service_task("task", task_type),
        flow("f2", "task", "end"),
    );
    with_signals(model(id, &body), &[("s", name)])
}

#[test]
fn a_signal_starts_the_latest_version_of_each_process_with_its_start_event() {
    let mut shard = Shard::new();
    shard.deploy("s.bpmn", &started_by("starter", "begin", "v1"));
    shard.deploy("t.bpmn", &started_by("other", "begin", "other"));
    broadcast(&mut shard, "begin", r#"{"batch": 7}"#);
    assert_eq!(
        shard.state.instance_count(),
        2,
        "one instance of each process"
    );
    let jobs = shard.activate("v1", 10);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].variables()["batch"], 7);

    // A second version takes over: the signal starts it, not the first.
    shard.deploy("s.bpmn", &started_by("starter", "begin", "v2"));
    broadcast(&mut shard, "begin", "{}");
    assert_eq!(shard.activate("v1", 10).len(), 0);
    assert_eq!(shard.activate("v2", 10).len(), 1);
    // A name nothing starts with starts nothing.
    broadcast(&mut shard, "nothing", "{}");
    assert_eq!(shard.state.instance_count(), 4);
    shard.check_replay();
}

#[test]
fn a_throw_event_broadcasts_its_input_mappings_and_an_end_event_its_own() {
    let thrower = with_signals(
        model(
            "thrower",
            &format!(
                r#"<bpmn:startEvent id="start"/>{}
                   <bpmn:intermediateThrowEvent id="throw">
                     <bpmn:extensionElements><zeebe:ioMapping>
                       <zeebe:input source="=order" target="orderId"/>
                     </zeebe:ioMapping></bpmn:extensionElements>
                     <bpmn:signalEventDefinition signalRef="s"/></bpmn:intermediateThrowEvent>
                   {}<bpmn:endEvent id="end"><bpmn:signalEventDefinition signalRef="t"/>
                   </bpmn:endEvent>"#,
                flow("f1", "start", "throw"),
                flow("f2", "throw", "end"),
            ),
        ),
        &[("s", "shipped"), ("t", "done")],
    );
    let mut shard = Shard::new();
    shard.deploy("thrower.bpmn", &thrower);
    shard.deploy("w1.bpmn", &catching("waits-shipped", "shipped"));
    shard.deploy("w2.bpmn", &catching("waits-done", "done"));
    shard.create("waits-shipped", vars("{}"));
    shard.create("waits-done", vars("{}"));
    let (thrown, _) = shard.create("thrower", vars(r#"{"order": "A-17", "secret": 1}"#));
    assert!(
        shard.state.instance(thrown).is_none(),
        "the thrower ran to its end"
    );
    let jobs = shard.activate("after", 10);
    assert_eq!(jobs.len(), 2, "both waiting instances got their signal");
    let shipped = jobs
        .iter()
        .find(|job| &*job.bpmn_process_id == "waits-shipped")
        .expect("the shipped waiter moved");
    assert_eq!(shipped.variables()["orderId"], "A-17");
    assert!(
        !shipped.variables().contains_key("secret") && !shipped.variables().contains_key("order"),
        "only the throw event's own variables go with the signal: {:?}",
        shipped.variables()
    );
    shard.check_replay();
}

#[test]
fn an_event_based_gateway_takes_the_signal_branch() {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:eventBasedGateway id="gate"/>{}{}
           <bpmn:intermediateCatchEvent id="signal">
             <bpmn:signalEventDefinition signalRef="s"/></bpmn:intermediateCatchEvent>
           <bpmn:intermediateCatchEvent id="timeout"><bpmn:timerEventDefinition>
             <bpmn:timeDuration>PT1H</bpmn:timeDuration></bpmn:timerEventDefinition>
           </bpmn:intermediateCatchEvent>
           {}{}<bpmn:endEvent id="by-signal"/><bpmn:endEvent id="by-timer"/>"#,
        flow("f1", "start", "gate"),
        flow("f2", "gate", "signal"),
        flow("f3", "gate", "timeout"),
        flow("f4", "signal", "by-signal"),
        flow("f5", "timeout", "by-timer"),
    );
    let mut shard = Shard::new();
    shard.deploy(
        "gate.bpmn",
        &with_signals(model("gated", &body), &[("s", "=&quot;go-&quot; + lane")]),
    );
    let (instance, _) = shard.create("gated", vars(r#"{"lane": "east"}"#));
    let (other, _) = shard.create("gated", vars(r#"{"lane": "west"}"#));
    assert_eq!(shard.state.timers().count(), 2);
    broadcast(&mut shard, "go-east", "{}");
    assert!(
        shard.state.instance(instance).is_none(),
        "the east one ended"
    );
    assert!(shard.state.instance(other).is_some(), "the west one waits");
    assert_eq!(
        shard.state.timers().count(),
        1,
        "the east one's timer closed"
    );
    assert_eq!(shard.state.signal_subscriptions().count(), 1);
    shard.check_replay();
}

#[test]
fn cancelling_an_instance_closes_its_signal_subscriptions() {
    let mut shard = Shard::new();
    shard.deploy("a.bpmn", &catching("a", "go"));
    shard.deploy("b.bpmn", &task_with_boundary("b", false));
    let (a, _) = shard.create("a", vars("{}"));
    let (b, _) = shard.create("b", vars("{}"));
    assert_eq!(shard.state.signal_subscriptions().count(), 2);
    for key in [a, b] {
        shard.run(Command::CancelInstance { key }).expect("cancel");
    }
    shard.check_replay();
    shard.assert_clean();
    assert_eq!(shard.state.signal_subscriptions().count(), 0);
    broadcast(&mut shard, "go", "{}");
    broadcast(&mut shard, "stop", "{}");
    assert_eq!(shard.state.instance_count(), 0);
}

#[test]
fn a_signal_that_restarts_its_own_process_stops_at_the_broadcast_limit_with_an_incident() {
    let body = format!(
        r#"<bpmn:startEvent id="start"><bpmn:signalEventDefinition signalRef="s"/>
           </bpmn:startEvent>{}<bpmn:endEvent id="again">
           <bpmn:signalEventDefinition signalRef="s"/></bpmn:endEvent>"#,
        flow("f1", "start", "again"),
    );
    let mut shard = Shard::new();
    shard.deploy(
        "echo.bpmn",
        &with_signals(model("echo", &body), &[("s", "echo")]),
    );
    broadcast(&mut shard, "echo", "{}");
    let limit = ringflow_core::limits::SIGNALS_PER_COMMAND_MAX as usize;
    let incidents: Vec<_> = shard.state.incidents().collect();
    assert_eq!(incidents.len(), 1, "one throw over the limit stops");
    assert!(
        incidents[0].message.contains("SIGNALS_PER_COMMAND_MAX"),
        "{}",
        incidents[0].message
    );
    assert_eq!(
        shard.state.instance_count(),
        1,
        "the {limit} instances before it ended; the one at the limit waits at its incident"
    );
    shard.check_replay();
}

#[test]
fn a_signal_to_more_subscriptions_than_one_command_delivers_goes_on_in_continue_commands() {
    let limit = ringflow_core::limits::SIGNAL_SUBSCRIPTIONS_PER_COMMAND_MAX;
    let mut shard = Shard::new();
    shard.deploy("a.bpmn", &catching("a", "go"));
    let mut waiting = Vec::new();
    for _ in 0..2 * limit + 10 {
        waiting.push(shard.create("a", vars("{}")).0);
    }
    let outcome = broadcast(&mut shard, "go", r#"{"n": 1}"#);
    let Response::SignalBroadcast { key: signal } = outcome.response else {
        unreachable!("checked by broadcast")
    };
    let continue_signal = Effect::ContinueSignal {
        key: signal,
        due_millis: shard.now_millis - 7,
    };
    assert!(
        outcome.effects.contains(&continue_signal),
        "the rest is left for ContinueSignal: {:?}",
        outcome.effects
    );
    assert_eq!(shard.state.signal_deliveries().count(), 1);
    assert_eq!(
        shard.activate("after", 1_000).len(),
        limit,
        "one command's worth"
    );
    // Between the commands: an instance that starts waiting now is not reached, and one not
    // reached yet that is cancelled is skipped.
    let (late, _) = shard.create("a", vars("{}"));
    let cancelled = *waiting.last().expect("created");
    shard
        .run(Command::CancelInstance { key: cancelled })
        .expect("cancel");
    let mut continues = 0;
    loop {
        let next = shard.state.signal_deliveries().map(|(key, _)| key).next();
        let Some(key) = next else { break };
        assert_eq!(key, signal);
        continues += 1;
        shard
            .run(Command::ContinueSignal { key })
            .expect("continue");
        shard.check_replay();
    }
    assert_eq!(
        continues,
        2,
        "{} more, at most {limit} a command",
        limit + 9
    );
    let mut jobs = 0;
    loop {
        let batch = shard.activate("after", 1_000);
        if batch.is_empty() {
            break;
        }
        assert!(batch.iter().all(|job| job.variables()["n"] == 1));
        jobs += batch.len();
    }
    assert_eq!(
        jobs,
        limit + 9,
        "everything else but the cancelled instance"
    );
    let left: Vec<Key> = shard
        .state
        .signal_subscriptions()
        .map(|subscription| subscription.process_instance_key)
        .collect();
    assert_eq!(
        left,
        [late],
        "only the instance that started waiting later waits"
    );
    let stale = shard
        .run(Command::ContinueSignal { key: signal })
        .expect_err("nothing left to deliver");
    assert_eq!(stale.code, RejectionCode::InvalidState);
}

#[test]
fn bad_signals_are_refused_and_change_nothing() {
    let mut shard = Shard::new();
    for name in [
        String::new(),
        "x".repeat(ringflow_core::limits::NAME_BYTES_MAX + 1),
    ] {
        let rejection = shard
            .run(Command::BroadcastSignal {
                name,
                variables: Variables::new(),
            })
            .expect_err("refused");
        assert_eq!(rejection.code, RejectionCode::InvalidArgument);
        assert!(rejection.message.contains("NAME_BYTES_MAX"), "{rejection}");
    }
    // A catch event whose name is not a text is an incident at the event.
    shard.deploy("bad.bpmn", &catching("bad", "=count"));
    let (instance, _) = shard.create("bad", vars(r#"{"count": 3}"#));
    let incidents: Vec<_> = shard.state.incidents().collect();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].process_instance_key, instance);
    assert!(
        incidents[0].message.contains("signal name"),
        "{}",
        incidents[0].message
    );
    // A signal start event whose name needs variables cannot be deployed.
    let refused = shard
        .run(Command::Deploy {
            resources: vec![Resource {
                name: "start.bpmn".to_string(),
                content: started_by("dynamic", "=name", "x").into_bytes().into(),
            }],
        })
        .expect_err("refused");
    assert_eq!(refused.code, RejectionCode::InvalidModel);
    assert!(
        refused
            .message
            .contains("a signal start event's name must be known without variables"),
        "{refused}"
    );
}

fn run_on(state: &mut State, next_key: &mut Key, now: &mut i64, command: Command) -> Outcome {
    let ctx = Ctx {
        now_millis: *now,
        next_key: *next_key,
    };
    *now += 5;
    let outcome = process(state, command, &ctx).expect("accepted");
    *next_key = outcome.next_key;
    outcome
}

fn sent(outcome: &Outcome) -> Vec<(u16, u64, Mail)> {
    outcome
        .effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send { to, seq, mail } => Some((*to, *seq, mail.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_signal_goes_to_every_shard_and_starts_processes_only_where_it_was_broadcast() {
    let shards = 3u16;
    let mut states: Vec<State> = (0..shards).map(State::new).collect();
    let mut keys: Vec<Key> = (0..shards).map(Key::first).collect();
    let mut now = 1_000i64;
    let resources = vec![
        Resource {
            name: "catch.bpmn".to_string(),
            content: catching("catch", "go").into_bytes().into(),
        },
        Resource {
            name: "start.bpmn".to_string(),
            content: started_by("starter", "go", "started").into_bytes().into(),
        },
    ];
    for shard in 0..usize::from(shards) {
        states[shard].set_cluster_shards(shards);
        let deploy = Command::Deploy {
            resources: resources.clone(),
        };
        run_on(&mut states[shard], &mut keys[shard], &mut now, deploy);
        let create = Command::CreateInstance {
            process: ringflow_core::ProcessRef::Latest("catch".to_string()),
            variables: Variables::new(),
            business_key: None,
            await_result: false,
        };
        run_on(&mut states[shard], &mut keys[shard], &mut now, create);
    }
    let signal = Command::BroadcastSignal {
        name: "go".to_string(),
        variables: vars(r#"{"wave": 1}"#),
    };
    let outcome = run_on(&mut states[1], &mut keys[1], &mut now, signal);
    let mails = sent(&outcome);
    assert_eq!(
        mails.iter().map(|(to, _, _)| *to).collect::<Vec<_>>(),
        [0, 2],
        "one mail to each other shard"
    );
    for (to, seq, mail) in mails {
        let receive = Command::Receive { from: 1, seq, mail };
        let taken = run_on(
            &mut states[usize::from(to)],
            &mut keys[usize::from(to)],
            &mut now,
            receive,
        );
        assert!(sent(&taken).is_empty(), "a received signal is not sent on");
    }
    for (shard, state) in states.iter().enumerate() {
        assert_eq!(
            state.signal_subscriptions().count(),
            0,
            "shard {shard}'s waiting instance got the signal"
        );
        let started = state
            .instances()
            .filter(|instance| {
                state
                    .process(instance.process_definition_key)
                    .unwrap()
                    .bpmn_process_id
                    == "starter"
            })
            .count();
        assert_eq!(
            started,
            usize::from(shard == 1),
            "shard {shard}: the start process starts only where the signal was broadcast"
        );
        let encoded = state.encode();
        assert_eq!(State::decode(&encoded).unwrap().encode(), encoded);
    }
}
