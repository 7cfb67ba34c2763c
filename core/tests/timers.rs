//! Timer events: intermediate catch, boundary (interrupting, and non-interrupting cycles),
//! process start timers, timer event subprocesses; durations, dates, cycles and FEEL values;
//! `TriggerTimer` refused early and for timers that are gone; replay and snapshots.

mod common;

use common::{Shard, flow, model, service_task, vars};
use ringflow_core::{Command, Effect, RejectionCode};

fn timer_catch(id: &str, definition: &str) -> String {
    format!(
        r#"<bpmn:intermediateCatchEvent id="{id}"><bpmn:timerEventDefinition>{definition}
           </bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>"#
    )
}

fn wait_process(definition: &str) -> String {
    model(
        "wait",
        &format!(
            r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>"#,
            flow("f1", "start", "timer"),
            timer_catch("timer", definition),
            flow("f2", "timer", "end"),
        ),
    )
}

#[test]
fn an_intermediate_timer_waits_its_duration_and_fires_once() {
    let mut shard = Shard::new();
    shard.deploy(
        "wait.bpmn",
        &wait_process("<bpmn:timeDuration>PT10S</bpmn:timeDuration>"),
    );
    let created_at = shard.now_millis;
    let (instance, outcome) = shard.create("wait", vars("{}"));
    let (key, due) = match outcome.effects.as_slice() {
        [Effect::Timer { key, due_millis }] => (*key, *due_millis),
        other => panic!("expected one timer, got {other:?}"),
    };
    assert_eq!(due, created_at + 10_000);
    assert_eq!(shard.live_element_ids(instance), vec!["timer"]);
    // Early: refused, nothing changes.
    let early = shard
        .run(Command::TriggerTimer { key })
        .expect_err("not due");
    assert_eq!(early.code, RejectionCode::InvalidState);
    shard.now_millis = due;
    shard.run(Command::TriggerTimer { key }).expect("due");
    assert!(
        shard.state.instance(instance).is_none(),
        "the instance completed"
    );
    // Firing again (a duplicate from the shard after a restart) is refused.
    let again = shard.run(Command::TriggerTimer { key }).expect_err("gone");
    assert_eq!(again.code, RejectionCode::InvalidState);
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn dates_in_the_past_are_due_at_once_and_feel_values_are_parsed() {
    let mut shard = Shard::new();
    shard.now_millis = 1_795_000_000_000; // 2026-11
    shard.deploy(
        "wait.bpmn",
        &wait_process("<bpmn:timeDate>2020-01-01T00:00:00Z</bpmn:timeDate>"),
    );
    let (instance, outcome) = shard.create("wait", vars("{}"));
    assert!(matches!(
        outcome.effects.as_slice(),
        [Effect::Timer {
            due_millis: 1_577_836_800_000,
            ..
        }]
    ));
    assert_eq!(shard.fire_timers_until(shard.now_millis), 1);
    assert!(shard.state.instance(instance).is_none());

    shard.deploy(
        "wait.bpmn",
        &wait_process("<bpmn:timeDuration>=delay</bpmn:timeDuration>"),
    );
    let start = shard.now_millis;
    let (instance, outcome) = shard.create("wait", vars(r#"{"delay": "PT1M"}"#));
    match outcome.effects.as_slice() {
        [Effect::Timer { due_millis, .. }] => assert_eq!(*due_millis, start + 60_000),
        other => panic!("expected a timer, got {other:?}"),
    }
    // A FEEL value that is not a duration is an incident naming the event.
    let (broken, _) = shard.create("wait", vars(r#"{"delay": 5}"#));
    let incident = shard
        .state
        .incidents()
        .find(|incident| incident.process_instance_key == broken)
        .expect("an incident");
    assert!(incident.message.contains("`timer`"), "{}", incident.message);
    assert!(
        shard.state.timers().count() == 1,
        "no timer for the broken one"
    );
    shard.fire_timers_until(start + 60_000);
    assert!(shard.state.instance(instance).is_none());
    shard.check_replay();
}

#[test]
fn a_date_in_a_zone_region_fires_at_that_zone_s_instant() {
    let mut shard = Shard::new();
    // 2026-12-01T09:00 in Berlin (winter, +01:00) is 08:00 UTC: 1_796_112_000_000.
    shard.deploy(
        "wait.bpmn",
        &wait_process("<bpmn:timeDate>2026-12-01T09:00:00@Europe/Berlin</bpmn:timeDate>"),
    );
    let (_, outcome) = shard.create("wait", vars("{}"));
    assert!(
        matches!(
            outcome.effects.as_slice(),
            [Effect::Timer {
                due_millis: 1_796_112_000_000,
                ..
            }]
        ),
        "{:?}",
        outcome.effects
    );
    // From FEEL, at runtime: an unknown region is an incident naming it.
    shard.deploy(
        "wait.bpmn",
        &wait_process("<bpmn:timeDate>=when</bpmn:timeDate>"),
    );
    let (broken, _) = shard.create(
        "wait",
        vars(r#"{"when": "2026-12-01T09:00:00@Mars/Olympus"}"#),
    );
    let incident = shard
        .state
        .incidents()
        .find(|incident| incident.process_instance_key == broken)
        .expect("an incident");
    assert!(
        incident.message.contains("Mars/Olympus"),
        "{}",
        incident.message
    );
    shard.check_replay();
}

fn task_with_boundary(interrupting: bool, definition: &str) -> String {
    model(
        "guarded",
        &format!(
            r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>
               <bpmn:boundaryEvent id="deadline" attachedToRef="task" cancelActivity="{interrupting}">
                 <bpmn:timerEventDefinition>{definition}</bpmn:timerEventDefinition>
               </bpmn:boundaryEvent>{}{}{}<bpmn:endEvent id="late"/>"#,
            flow("f1", "start", "task"),
            service_task("task", "work"),
            flow("f2", "task", "end"),
            flow("f3", "deadline", "remind"),
            service_task("remind", "remind"),
            flow("f4", "remind", "late"),
        ),
    )
}

#[test]
fn an_interrupting_timer_boundary_ends_the_task_and_its_job() {
    let mut shard = Shard::new();
    shard.deploy(
        "guarded.bpmn",
        &task_with_boundary(true, "<bpmn:timeDuration>PT5M</bpmn:timeDuration>"),
    );
    let (instance, _) = shard.create("guarded", vars("{}"));
    let job = shard.activate("work", 1).remove(0);
    assert_eq!(shard.state.timers().count(), 1);
    shard.fire_timers_until(shard.now_millis + 300_000);
    assert_eq!(shard.live_element_ids(instance), vec!["remind"]);
    assert!(shard.state.job(job.key).is_none(), "the task's job is gone");
    let late = shard.run(Command::CompleteJob {
        key: job.key,
        variables: vars("{}"),
    });
    assert_eq!(late.expect_err("gone").code, RejectionCode::JobNotFound);
    let remind = shard.activate("remind", 1).remove(0);
    shard.complete(remind.key, vars("{}"));
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn a_non_interrupting_cycle_fires_its_repetitions_while_the_task_runs() {
    let mut shard = Shard::new();
    shard.deploy(
        "guarded.bpmn",
        &task_with_boundary(false, "<bpmn:timeCycle>R3/PT1M</bpmn:timeCycle>"),
    );
    let (instance, _) = shard.create("guarded", vars("{}"));
    let start = shard.now_millis;
    // Ten minutes pass: three firings, one minute apart, each a new token.
    assert_eq!(shard.fire_timers_until(start + 600_000), 3);
    assert_eq!(
        shard.live_element_ids(instance),
        vec!["remind", "remind", "remind", "task"]
    );
    assert_eq!(
        shard.state.timers().count(),
        0,
        "three repetitions, then done"
    );
    for job in shard.activate("remind", 10) {
        shard.complete(job.key, vars("{}"));
    }
    let job = shard.activate("work", 1).remove(0);
    shard.complete(job.key, vars("{}"));
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn completing_the_task_closes_an_unbounded_cycle() {
    let mut shard = Shard::new();
    shard.deploy(
        "guarded.bpmn",
        &task_with_boundary(false, "<bpmn:timeCycle>R/PT1M</bpmn:timeCycle>"),
    );
    let (instance, _) = shard.create("guarded", vars("{}"));
    let start = shard.now_millis;
    assert_eq!(shard.fire_timers_until(start + 150_000), 2);
    assert_eq!(shard.state.timers().count(), 1, "the cycle goes on");
    let job = shard.activate("work", 1).remove(0);
    shard.complete(job.key, vars("{}"));
    assert_eq!(
        shard.state.timers().count(),
        0,
        "the task's end closed its timer"
    );
    assert_eq!(shard.live_element_ids(instance), vec!["remind", "remind"]);
    shard.check_replay();
}

#[test]
fn cancelling_an_instance_disarms_its_timers() {
    let mut shard = Shard::new();
    shard.deploy(
        "guarded.bpmn",
        &task_with_boundary(false, "<bpmn:timeCycle>R/PT1M</bpmn:timeCycle>"),
    );
    let (instance, _) = shard.create("guarded", vars("{}"));
    let timer = shard.state.timers().next().expect("armed").key;
    shard
        .run(Command::CancelInstance { key: instance })
        .expect("cancelled");
    shard.assert_clean();
    shard.now_millis += 120_000;
    let stale = shard.run(Command::TriggerTimer { key: timer });
    assert_eq!(
        stale.expect_err("disarmed").code,
        RejectionCode::InvalidState
    );
    shard.check_replay();
}

fn start_timer_process(process_id: &str, definition: &str) -> String {
    model(
        process_id,
        &format!(
            r#"<bpmn:startEvent id="tick"><bpmn:timerEventDefinition>{definition}
               </bpmn:timerEventDefinition></bpmn:startEvent>{}{}{}<bpmn:endEvent id="end"/>"#,
            flow("f1", "tick", "task"),
            service_task("task", "tick-work"),
            flow("f2", "task", "end"),
        ),
    )
}

#[test]
fn a_cron_cycle_starts_an_instance_at_each_time_it_gives() {
    let mut shard = Shard::new();
    let day = 86_400_000;
    // Friday 2026-12-04, 10:00 UTC.
    shard.now_millis = 1_796_378_400_000;
    let friday = shard.now_millis;
    shard.deploy(
        "office.bpmn",
        &start_timer_process(
            "office",
            "<bpmn:timeCycle>0 0 9 * * MON-FRI</bpmn:timeCycle>",
        ),
    );
    let due = |shard: &Shard| shard.state.timers().next().expect("armed").due_millis;
    // Monday 09:00: three days less one hour later.
    assert_eq!(due(&shard), friday + 3 * day - 3_600_000);
    shard.check_replay();
    assert_eq!(shard.fire_timers_until(due(&shard)), 1);
    assert_eq!(shard.state.instances().count(), 1, "Monday's instance");
    // Then Tuesday 09:00.
    assert_eq!(due(&shard), friday + 4 * day - 3_600_000);
    shard.check_replay();
    // A FEEL value may give a cron cycle too, read when the timer is armed.
    shard.deploy(
        "office.bpmn",
        &start_timer_process("office", "<bpmn:timeCycle>=\"@daily\"</bpmn:timeCycle>"),
    );
    assert_eq!(
        shard.state.timers().count(),
        1,
        "the new version's timer only"
    );
    let midnight = (shard.now_millis / day + 1) * day;
    assert_eq!(due(&shard), midnight);
    shard.check_replay();
}

#[test]
fn a_timer_start_event_starts_instances_and_a_new_version_replaces_its_timer() {
    let mut shard = Shard::new();
    let deployed_at = shard.now_millis;
    shard.deploy(
        "ticker.bpmn",
        &start_timer_process("ticker", "<bpmn:timeCycle>R2/PT1H</bpmn:timeCycle>"),
    );
    let timer = shard
        .state
        .timers()
        .next()
        .expect("armed at deploy")
        .clone();
    assert!(timer.owner.is_none());
    assert_eq!(timer.due_millis, deployed_at + 3_600_000);
    // A process with only a timer start cannot be created by hand.
    let by_hand = shard.run(Command::CreateInstance {
        process: ringflow_core::ProcessRef::Latest("ticker".into()),
        variables: vars("{}"),
        business_key: None,
        await_result: false,
    });
    assert_eq!(
        by_hand.expect_err("no none start").code,
        RejectionCode::InvalidArgument
    );
    assert_eq!(shard.fire_timers_until(deployed_at + 10 * 3_600_000), 2);
    assert_eq!(shard.state.instances().count(), 2, "R2: two instances");
    assert_eq!(shard.state.timers().count(), 0);

    // A new version with a cycle without end: armed; a third version replaces it.
    shard.deploy(
        "ticker.bpmn",
        &start_timer_process("ticker", "<bpmn:timeCycle>R/PT1M</bpmn:timeCycle>"),
    );
    let second = shard.state.timers().next().expect("armed").key;
    shard.deploy(
        "ticker.bpmn",
        &start_timer_process(
            "ticker",
            "<bpmn:timeDate>2030-01-01T00:00:00Z</bpmn:timeDate>",
        ),
    );
    let timers: Vec<_> = shard.state.timers().collect();
    assert_eq!(timers.len(), 1, "the old version's timer is gone");
    assert_ne!(timers[0].key, second);
    assert_eq!(timers[0].due_millis, 1_893_456_000_000);
    // Redeploying the same XML changes nothing.
    shard.deploy(
        "ticker.bpmn",
        &start_timer_process(
            "ticker",
            "<bpmn:timeDate>2030-01-01T00:00:00Z</bpmn:timeDate>",
        ),
    );
    assert_eq!(shard.state.timers().count(), 1);
    shard.check_replay();
}

#[test]
fn a_timer_event_subprocess_runs_beside_or_instead_of_the_scope() {
    for interrupting in [false, true] {
        let mut shard = Shard::new();
        let xml = model(
            "esp",
            &format!(
                r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>
                   <bpmn:subProcess id="sla" triggeredByEvent="true">
                     <bpmn:startEvent id="sla-start" isInterrupting="{interrupting}">
                       <bpmn:timerEventDefinition><bpmn:timeDuration>PT1H</bpmn:timeDuration>
                       </bpmn:timerEventDefinition></bpmn:startEvent>
                     {}{}{}<bpmn:endEvent id="sla-end"/>
                   </bpmn:subProcess>"#,
                flow("f1", "start", "task"),
                service_task("task", "work"),
                flow("f2", "task", "end"),
                flow("f3", "sla-start", "escalate"),
                service_task("escalate", "escalate"),
                flow("f4", "escalate", "sla-end"),
            ),
        );
        shard.deploy("esp.bpmn", &xml);
        let (instance, _) = shard.create("esp", vars("{}"));
        shard.fire_timers_until(shard.now_millis + 3_600_000);
        let live = shard.live_element_ids(instance);
        if interrupting {
            assert_eq!(live, vec!["escalate", "sla"]);
        } else {
            assert_eq!(live, vec!["escalate", "sla", "task"]);
            let job = shard.activate("work", 1).remove(0);
            shard.complete(job.key, vars("{}"));
        }
        let job = shard.activate("escalate", 1).remove(0);
        shard.complete(job.key, vars("{}"));
        shard.assert_clean();
        shard.check_replay();
    }
}
