//! Randomized: generated processes (nested sequences, parallel, exclusive, inclusive and
//! event-based gateways, subprocesses, tasks, timer, message, signal and conditional catch
//! events, timer, message, signal, conditional, error and compensation boundary events,
//! compensation throw events,
//! multi-instance tasks, call activities, ad-hoc subprocesses (activated on entry and from
//! outside), execution listeners on tasks, call activities,
//! catch events, gateways, subprocesses, throw events and the process) driven by
//! random commands in any order (create, complete, fail, throw, cancel, resolve, publish,
//! broadcast a signal, set variables, activate ad-hoc elements, time passing and timers
//! firing). After every command the state's invariants must hold; at the end
//! replaying the accepted commands must give the same bytes. Seeded and reproducible:
//! `RINGFLOW_RANDOM_SEED=<n> cargo test -p ringflow-core --test random`; more runs with
//! `RINGFLOW_RANDOM_RUNS=<n>`.

mod common;

use std::collections::BTreeMap;

use common::{Rng, Shard, vars};
use ringflow_core::{Command, JobState, Key, ProcessRef, State};

/// Runs and commands per run: enough to reach joins, incidents and cancellations often,
/// while the whole test stays a few seconds in a debug build.
const RUNS: u64 = 40;
const COMMANDS_PER_RUN: usize = 300;

/// Emits a block with one entry and one exit node; returns (entry, exit).
struct Generator<'r> {
    rng: &'r mut Rng,
    xml: String,
    next_id: u32,
    /// Inside an ad-hoc subprocess: no compensation, no end events.
    in_ad_hoc: bool,
}

impl Generator<'_> {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    fn flow(&mut self, from: &str, to: &str, condition: Option<&str>) {
        let id = self.id("f");
        match condition {
            Some(condition) => self.xml.push_str(&format!(
                r#"<bpmn:sequenceFlow id="{id}" sourceRef="{from}" targetRef="{to}"><bpmn:conditionExpression>{condition}</bpmn:conditionExpression></bpmn:sequenceFlow>"#
            )),
            None => self.xml.push_str(&format!(
                r#"<bpmn:sequenceFlow id="{id}" sourceRef="{from}" targetRef="{to}"/>"#
            )),
        }
    }

    /// Execution listeners (job type `t`) for an element, one time in four: start, end or
    /// both, where the element allows them; `extension` wraps them in `extensionElements`.
    fn listeners(&mut self, start: bool, end: bool, extension: bool) -> String {
        if self.rng.below(4) != 0 {
            return String::new();
        }
        let (with_start, with_end) = match self.rng.below(3) {
            0 => (start, false),
            1 => (false, end),
            _ => (start, end),
        };
        let mut inner = String::new();
        if with_start {
            inner.push_str(r#"<zeebe:executionListener eventType="start" type="t"/>"#);
        }
        if with_end {
            inner.push_str(r#"<zeebe:executionListener eventType="end" type="t"/>"#);
        }
        if inner.is_empty() {
            return inner;
        }
        let list = format!("<zeebe:executionListeners>{inner}</zeebe:executionListeners>");
        if extension {
            format!("<bpmn:extensionElements>{list}</bpmn:extensionElements>")
        } else {
            list
        }
    }

    fn block(&mut self, depth: u32) -> (String, String) {
        let choice = if depth >= 3 { 0 } else { self.rng.below(14) };
        match choice {
            13 if !self.in_ad_hoc => self.ad_hoc(depth),
            12 if !self.in_ad_hoc => {
                // Compensates what completed in its scope (the compensable tasks of
                // `guarded_task`), waiting for their handlers.
                let id = self.id("comp");
                let listeners = self.listeners(true, true, true);
                self.xml.push_str(&format!(
                    r#"<bpmn:intermediateThrowEvent id="{id}">{listeners}<bpmn:compensateEventDefinition/></bpmn:intermediateThrowEvent>"#
                ));
                (id.clone(), id)
            }
            6 => {
                let id = self.id("timer");
                let seconds = 1 + self.rng.below(60);
                self.xml.push_str(&format!(
                    r#"<bpmn:intermediateCatchEvent id="{id}"><bpmn:timerEventDefinition><bpmn:timeDuration>PT{seconds}S</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>"#
                ));
                (id.clone(), id)
            }
            7 => {
                let pick = self.rng.below(4);
                let (id, definition) = if pick == 0 {
                    (
                        self.id("sig"),
                        r#"<bpmn:signalEventDefinition signalRef="ping"/>"#,
                    )
                } else if pick == 1 {
                    (self.id("cond"), CONDITION_HIGH)
                } else {
                    (
                        self.id("msg"),
                        r#"<bpmn:messageEventDefinition messageRef="m"/>"#,
                    )
                };
                self.xml.push_str(&format!(
                    r#"<bpmn:intermediateCatchEvent id="{id}">{definition}</bpmn:intermediateCatchEvent>"#
                ));
                (id.clone(), id)
            }
            8 => self.guarded_task(),
            9 => {
                let id = self.id("multi");
                let sequential = self.rng.below(2) == 0;
                let listeners = self.listeners(true, true, false);
                self.xml.push_str(&format!(
                    r#"<bpmn:serviceTask id="{id}"><bpmn:extensionElements><zeebe:taskDefinition type="t"/>{listeners}</bpmn:extensionElements><bpmn:multiInstanceLoopCharacteristics isSequential="{sequential}"><bpmn:extensionElements><zeebe:loopCharacteristics inputCollection="=[1,2,3]" inputElement="item" outputCollection="out" outputElement="=item"/></bpmn:extensionElements><bpmn:completionCondition>=r &gt; 0.9</bpmn:completionCondition></bpmn:multiInstanceLoopCharacteristics></bpmn:serviceTask>"#
                ));
                if self.rng.below(3) == 0 && !self.in_ad_hoc {
                    self.compensable(&id);
                }
                (id.clone(), id)
            }
            10 => {
                let gate = self.id("ebg");
                let merge = self.id("merge");
                let conditional = self.rng.below(3) == 0;
                let (on_message, definition) = if conditional {
                    (self.id("cond"), CONDITION_HIGH)
                } else {
                    (
                        self.id("msg"),
                        r#"<bpmn:messageEventDefinition messageRef="m"/>"#,
                    )
                };
                let on_timer = self.id("timer");
                let catch_listeners = self.listeners(true, true, true);
                let gate_listeners = self.listeners(true, false, true);
                self.xml.push_str(&format!(
                    r#"<bpmn:eventBasedGateway id="{gate}">{gate_listeners}</bpmn:eventBasedGateway><bpmn:exclusiveGateway id="{merge}"/><bpmn:intermediateCatchEvent id="{on_message}">{catch_listeners}{definition}</bpmn:intermediateCatchEvent><bpmn:intermediateCatchEvent id="{on_timer}"><bpmn:timerEventDefinition><bpmn:timeDuration>PT30S</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>"#
                ));
                for event in [&on_message, &on_timer] {
                    self.flow(&gate, event, None);
                    self.flow(event, &merge, None);
                }
                (gate, merge)
            }
            11 => {
                let id = self.id("call");
                let listeners = self.listeners(true, true, false);
                self.xml.push_str(&format!(
                    r#"<bpmn:callActivity id="{id}"><bpmn:extensionElements><zeebe:calledElement processId="child"/>{listeners}</bpmn:extensionElements></bpmn:callActivity>"#
                ));
                if self.rng.below(3) == 0 && !self.in_ad_hoc {
                    self.compensable(&id);
                }
                (id.clone(), id)
            }
            0 | 1 => {
                let id = self.id("task");
                let listeners = self.listeners(true, true, false);
                self.xml.push_str(&format!(
                    r#"<bpmn:serviceTask id="{id}"><bpmn:extensionElements><zeebe:taskDefinition type="t"/>{listeners}</bpmn:extensionElements></bpmn:serviceTask>"#
                ));
                if self.rng.below(3) == 0 && !self.in_ad_hoc {
                    self.compensable(&id);
                }
                (id.clone(), id)
            }
            2 => {
                let (a_in, a_out) = self.block(depth + 1);
                let (b_in, b_out) = self.block(depth + 1);
                self.flow(&a_out, &b_in, None);
                (a_in, b_out)
            }
            3 => {
                let split = self.id("split");
                let join = self.id("join");
                self.xml.push_str(&format!(
                    r#"<bpmn:parallelGateway id="{split}"/><bpmn:parallelGateway id="{join}"/>"#
                ));
                for _ in 0..2 + self.rng.below(2) {
                    let (entry, exit) = self.block(depth + 1);
                    self.flow(&split, &entry, None);
                    self.flow(&exit, &join, None);
                }
                (split, join)
            }
            5 => {
                let fork = self.id("or");
                let merge = self.id("orjoin");
                let default_branch = self.id("f");
                self.xml.push_str(&format!(
                    r#"<bpmn:inclusiveGateway id="{fork}" default="{default_branch}"/><bpmn:inclusiveGateway id="{merge}"/>"#
                ));
                let (d_in, d_out) = self.block(depth + 1);
                self.xml.push_str(&format!(
                    r#"<bpmn:sequenceFlow id="{default_branch}" sourceRef="{fork}" targetRef="{d_in}"/>"#
                ));
                self.flow(&d_out, &merge, None);
                for condition in ["=r &gt; 0.3", "=r &lt; 0.7"] {
                    let (entry, exit) = self.block(depth + 1);
                    self.flow(&fork, &entry, Some(condition));
                    self.flow(&exit, &merge, None);
                }
                (fork, merge)
            }
            _ => {
                let choose = self.id("xor");
                let merge = self.id("merge");
                let default_branch = self.id("f");
                let (d_in, d_out) = self.block(depth + 1);
                let listeners = self.listeners(true, false, true);
                self.xml.push_str(&format!(
                    r#"<bpmn:exclusiveGateway id="{choose}" default="{default_branch}">{listeners}</bpmn:exclusiveGateway><bpmn:exclusiveGateway id="{merge}"/>"#
                ));
                self.xml.push_str(&format!(
                    r#"<bpmn:sequenceFlow id="{default_branch}" sourceRef="{choose}" targetRef="{d_in}"/>"#
                ));
                self.flow(&d_out, &merge, None);
                let (c_in, c_out) = self.block(depth + 1);
                self.flow(&choose, &c_in, Some("=r &gt; 0.5"));
                self.flow(&c_out, &merge, None);
                (choose, merge)
            }
        }
    }
}

impl Generator<'_> {
    /// An ad-hoc subprocess of two or three blocks: the first one or two activated on
    /// entry when `r` is high, the output collected, sometimes a completion condition.
    fn ad_hoc(&mut self, depth: u32) -> (String, String) {
        let id = self.id("adhoc");
        let saved = std::mem::take(&mut self.xml);
        self.in_ad_hoc = true;
        // Camunda wants an activity inside: the first entry is a task.
        let task = self.id("task");
        self.xml.push_str(&format!(
            r#"<bpmn:serviceTask id="{task}"><bpmn:extensionElements><zeebe:taskDefinition type="t"/></bpmn:extensionElements></bpmn:serviceTask>"#
        ));
        let mut entries = vec![task];
        for _ in 0..1 + self.rng.below(2) {
            entries.push(self.block(depth + 1).0);
        }
        self.in_ad_hoc = false;
        let inner = std::mem::replace(&mut self.xml, saved);
        let cancel = self.rng.below(2) == 0;
        let condition = match self.rng.below(3) {
            0 => "<bpmn:completionCondition>= r &gt; 0.3</bpmn:completionCondition>",
            _ => "",
        };
        let (first, second) = (&entries[0], &entries[1]);
        if self.rng.below(3) == 0 {
            // A worker (a job of type `t`) decides.
            self.xml.push_str(&format!(
                r#"<bpmn:adHocSubProcess id="{id}"><bpmn:extensionElements><zeebe:taskDefinition type="t"/><zeebe:adHoc outputCollection="{id}out" outputElement="= res"/></bpmn:extensionElements>{inner}</bpmn:adHocSubProcess>"#
            ));
            return (id.clone(), id);
        }
        self.xml.push_str(&format!(
            r#"<bpmn:adHocSubProcess id="{id}" cancelRemainingInstances="{cancel}"><bpmn:extensionElements><zeebe:adHoc activeElementsCollection="= if r &gt; 0.5 then [&quot;{first}&quot;, &quot;{second}&quot;] else if r &gt; 0.2 then [&quot;{first}&quot;] else []" outputCollection="{id}out" outputElement="= res"/></bpmn:extensionElements>{inner}{condition}</bpmn:adHocSubProcess>"#
        ));
        (id.clone(), id)
    }

    /// Gives `task` a compensation boundary event and its handler (a task of type `t`).
    fn compensable(&mut self, task: &str) {
        let boundary = self.id("cb");
        let undo = self.id("undo");
        let listeners = self.listeners(true, true, false);
        self.xml.push_str(&format!(
            r#"<bpmn:boundaryEvent id="{boundary}" attachedToRef="{task}"><bpmn:compensateEventDefinition/></bpmn:boundaryEvent><bpmn:serviceTask id="{undo}" isForCompensation="true"><bpmn:extensionElements><zeebe:taskDefinition type="t"/>{listeners}</bpmn:extensionElements></bpmn:serviceTask><bpmn:association id="{undo}a" sourceRef="{boundary}" targetRef="{undo}"/>"#
        ));
    }

    /// A task with a boundary event. An interrupting one's path merges back after the task
    /// (exactly one token leaves the block); a non-interrupting one's path ends on its own.
    fn guarded_task(&mut self) -> (String, String) {
        let task = self.id("task");
        let boundary = self.id("bound");
        let merge = self.id("merge");
        let listeners = self.listeners(true, true, false);
        self.xml.push_str(&format!(
            r#"<bpmn:serviceTask id="{task}"><bpmn:extensionElements><zeebe:taskDefinition type="t"/>{listeners}</bpmn:extensionElements></bpmn:serviceTask><bpmn:exclusiveGateway id="{merge}"/>"#
        ));
        let (interrupting, definition) = match self.rng.below(5) {
            0 => (
                true,
                r#"<bpmn:timerEventDefinition><bpmn:timeDuration>PT20S</bpmn:timeDuration></bpmn:timerEventDefinition>"#,
            ),
            1 => (
                false,
                r#"<bpmn:timerEventDefinition><bpmn:timeCycle>R2/PT10S</bpmn:timeCycle></bpmn:timerEventDefinition>"#,
            ),
            2 => (
                self.rng.below(2) == 0,
                r#"<bpmn:messageEventDefinition messageRef="stop"/>"#,
            ),
            3 => (
                self.rng.below(2) == 0,
                r#"<bpmn:signalEventDefinition signalRef="halt"/>"#,
            ),
            4 => (self.rng.below(2) == 0, CONDITION_HIGHER),
            _ => (true, r#"<bpmn:errorEventDefinition errorRef="err"/>"#),
        };
        self.xml.push_str(&format!(
            r#"<bpmn:boundaryEvent id="{boundary}" attachedToRef="{task}" cancelActivity="{interrupting}">{definition}</bpmn:boundaryEvent>"#
        ));
        self.flow(&task, &merge, None);
        if interrupting {
            self.flow(&boundary, &merge, None);
        } else {
            let end = self.id("bend");
            // An ad-hoc subprocess has no end events: the path just stops.
            let kind = if self.in_ad_hoc {
                "intermediateThrowEvent"
            } else {
                "endEvent"
            };
            self.xml.push_str(&format!(r#"<bpmn:{kind} id="{end}"/>"#));
            self.flow(&boundary, &end, None);
        }
        (task, merge)
    }
}

/// A conditional catch event's definition: `r` (set at creation, by jobs, messages,
/// signals and `SetVariables`) over 0.5.
const CONDITION_HIGH: &str = r#"<bpmn:conditionalEventDefinition><bpmn:condition>= r &gt; 0.5</bpmn:condition></bpmn:conditionalEventDefinition>"#;

/// A conditional boundary event's definition.
const CONDITION_HIGHER: &str = r#"<bpmn:conditionalEventDefinition><bpmn:condition>= r &gt; 0.8</bpmn:condition></bpmn:conditionalEventDefinition>"#;

/// The process call activities call: one task.
const CHILD: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="c">
  <bpmn:process id="child" isExecutable="true">
    <bpmn:startEvent id="cs"/><bpmn:sequenceFlow id="c1" sourceRef="cs" targetRef="ct"/>
    <bpmn:serviceTask id="ct"><bpmn:extensionElements><zeebe:taskDefinition type="t"/>
    </bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:sequenceFlow id="c2" sourceRef="ct" targetRef="ce"/><bpmn:endEvent id="ce"/>
  </bpmn:process></bpmn:definitions>"#;

const MESSAGES: &str = r#"<bpmn:message id="m" name="go"><bpmn:extensionElements><zeebe:subscription correlationKey="=ck"/></bpmn:extensionElements></bpmn:message><bpmn:message id="stop" name="stop"><bpmn:extensionElements><zeebe:subscription correlationKey="=ck"/></bpmn:extensionElements></bpmn:message><bpmn:error id="err" errorCode="E"/><bpmn:signal id="ping" name="ping"/><bpmn:signal id="halt" name="halt"/>"#;

fn random_process(rng: &mut Rng) -> String {
    let mut generator = Generator {
        rng,
        xml: String::new(),
        next_id: 0,
        in_ad_hoc: false,
    };
    let (entry, exit) = if generator.rng.below(3) == 0 {
        // Wrap the body in a subprocess.
        let sub = generator.id("sub");
        let saved = std::mem::take(&mut generator.xml);
        let (inner_in, inner_out) = generator.block(1);
        let inner = std::mem::replace(&mut generator.xml, saved);
        let listeners = generator.listeners(true, true, true);
        generator.xml.push_str(&format!(
            r#"<bpmn:subProcess id="{sub}">{listeners}<bpmn:startEvent id="{sub}s"/>"#
        ));
        generator.xml.push_str(&inner);
        let end = if generator.rng.below(2) == 0 {
            "<bpmn:compensateEventDefinition/>"
        } else {
            ""
        };
        generator.xml.push_str(&format!(
            r#"<bpmn:endEvent id="{sub}e">{end}</bpmn:endEvent>"#
        ));
        generator.flow(&format!("{sub}s"), &inner_in, None);
        generator.flow(&inner_out, &format!("{sub}e"), None);
        generator.xml.push_str("</bpmn:subProcess>");
        (sub.clone(), sub)
    } else {
        generator.block(0)
    };
    // Half the processes end by compensating what completed.
    let end = if generator.rng.below(2) == 0 {
        r#"<bpmn:endEvent id="end"><bpmn:compensateEventDefinition/></bpmn:endEvent>"#
    } else {
        r#"<bpmn:endEvent id="end"/>"#
    };
    let listeners = generator.listeners(true, true, true);
    generator
        .xml
        .push_str(&format!(r#"{listeners}<bpmn:startEvent id="start"/>{end}"#));
    generator.flow("start", &entry, None);
    generator.flow(&exit, "end", None);
    common::model("random", &generator.xml)
        .replace("</bpmn:process>", &format!("</bpmn:process>{MESSAGES}"))
}

/// Everything that must hold between commands.
fn check_invariants(state: &State) {
    let mut live_per_instance: BTreeMap<Key, u32> = BTreeMap::new();
    let mut children: BTreeMap<Key, u32> = BTreeMap::new();
    for element in state.element_instances() {
        let instance = state.instance(element.process_instance_key);
        assert!(
            instance.is_some(),
            "element {} of a finished instance",
            element.key
        );
        *live_per_instance
            .entry(element.process_instance_key)
            .or_default() += 1;
        match element.scope {
            Some(scope) => {
                assert!(
                    state.element_instance(scope).is_some(),
                    "element {} in a dead scope",
                    element.key
                );
                *children.entry(scope).or_default() += 1;
            }
            None => assert_eq!(
                element.key, element.process_instance_key,
                "only roots lack a scope"
            ),
        }
        if let Some(job) = element.job {
            assert_eq!(
                state.job(job).map(|j| j.element_instance_key),
                Some(element.key)
            );
        }
    }
    for element in state.element_instances() {
        // A compensation throw counts the handlers it has still to start as its tokens.
        let pending = if state.compensation_throw_pending(element.key) {
            state
                .compensations()
                .filter(|compensation| compensation.scope == element.key)
                .count() as u32
        } else {
            0
        };
        let expected = children.get(&element.key).copied().unwrap_or(0)
            + state.waiting_join_tokens(element.key)
            + pending;
        assert_eq!(
            element.tokens, expected,
            "token count of scope {}",
            element.key
        );
    }
    for instance in state.instances() {
        assert!(
            state.element_instance(instance.key).is_some(),
            "instance {} lost its root",
            instance.key
        );
        assert_eq!(
            live_per_instance.get(&instance.key).copied().unwrap_or(0),
            instance.live_elements
        );
    }
    for job in state.jobs() {
        let element = state
            .element_instance(job.element_instance_key)
            .expect("a job's element is live");
        assert_eq!(element.job, Some(job.key));
        assert_eq!(
            state.is_ready(job.key),
            job.state == JobState::Activatable,
            "ready queue of job {}",
            job.key
        );
    }
    for incident in state.incidents() {
        let element = state
            .element_instance(incident.element_instance_key)
            .expect("incident element live");
        assert_eq!(element.incident, Some(incident.key));
    }
    for timer in state.timers() {
        let owner = timer.owner.expect("no start timers in these processes");
        assert!(
            state.element_instance(owner).is_some(),
            "timer {} of a dead element",
            timer.key
        );
    }
    for subscription in state.subscriptions() {
        assert!(
            state.element_instance(subscription.owner).is_some(),
            "subscription {} of a dead element",
            subscription.key
        );
    }
    for subscription in state.signal_subscriptions() {
        assert!(
            state.element_instance(subscription.owner).is_some(),
            "signal subscription {} of a dead element",
            subscription.key
        );
    }
    for subscription in state.conditional_subscriptions() {
        assert!(
            state.element_instance(subscription.owner).is_some(),
            "conditional subscription {} of a dead element",
            subscription.key
        );
    }
    for element in state.element_instances() {
        assert_eq!(
            state.multi_body(element.key).is_some(),
            element.role == ringflow_core::ElementRole::Body,
            "multi-instance state of {}",
            element.key
        );
        if let Some(child) = element.called {
            assert_eq!(
                state.instance(child).and_then(|c| c.parent),
                Some(element.key)
            );
        }
    }
    for instance in state.instances() {
        if let Some(parent) = instance.parent {
            let call = state
                .element_instance(parent)
                .expect("a child's call activity is live");
            assert_eq!(call.called, Some(instance.key));
        }
    }
    for compensation in state.compensations() {
        let scope = state
            .element_instance(compensation.scope)
            .expect("a compensation belongs to a live scope");
        assert_eq!(
            scope.process_instance_key,
            compensation.process_instance_key
        );
    }
    assert!(
        state.indexes_consistent(),
        "derived indexes disagree with a rebuild"
    );
}

/// What the runs did, to check that they reach the interesting states at all.
#[derive(Default)]
struct Seen {
    instances_ended: u64,
    incidents: u64,
    joins: u64,
    timers_fired: u64,
    correlations: u64,
    signals: u64,
    conditionals: u64,
    multi_instance: u64,
    calls: u64,
    compensations: u64,
    listeners: u64,
    ad_hoc: u64,
    worker_decisions: u64,
}

/// The live ad-hoc subprocess instances (not their inner instances), with the elements
/// each can activate.
fn ad_hocs(state: &State) -> Vec<(Key, Vec<String>)> {
    state
        .element_instances()
        .filter(|element| {
            !matches!(
                element.role,
                ringflow_core::ElementRole::Body | ringflow_core::ElementRole::AdHocInner
            )
        })
        .filter_map(|element| {
            let instance = state.instance(element.process_instance_key)?;
            let definition = &state.process(instance.process_definition_key)?.definition;
            matches!(
                definition.element(element.element).kind,
                ringflow_bpmn::ElementKind::AdHocSubProcess(_)
            )
            .then(|| {
                let ids = definition
                    .activatable(element.element)
                    .map(|index| definition.element(index).id.to_string())
                    .collect();
                (element.key, ids)
            })
        })
        .collect()
}

fn one_run(seed: u64, seen: &mut Seen) {
    let mut rng = Rng(seed | 1);
    let mut shard = Shard::new();
    shard.deploy("child.bpmn", CHILD);
    shard.deploy("random.bpmn", &random_process(&mut rng));
    let mut snapshot: Option<(Vec<u8>, usize)> = None;
    for step in 0..COMMANDS_PER_RUN {
        if step == COMMANDS_PER_RUN / 2 {
            snapshot = Some((shard.state.encode(), shard.log.len()));
        }
        let jobs: Vec<Key> = shard.state.jobs().map(|job| job.key).collect();
        let pick = |rng: &mut Rng, keys: &[Key]| keys[rng.below(keys.len() as u64) as usize];
        let command = match rng.below(13) {
            10 if rng.below(4) == 0 => {
                // Variables change from outside: conditional events may fire.
                let scopes: Vec<Key> = shard.state.element_instances().map(|e| e.key).collect();
                if scopes.is_empty() {
                    continue;
                }
                Command::SetVariables {
                    scope: pick(&mut rng, &scopes),
                    variables: vars(&format!(r#"{{"r": {}}}"#, rng.below(100) as f64 / 100.0)),
                    local: rng.below(4) == 0,
                }
            }
            10 if rng.below(3) == 0 => Command::BroadcastSignal {
                name: ["ping", "halt"][rng.below(2) as usize].to_string(),
                variables: vars(&format!(r#"{{"r": {}}}"#, rng.below(100) as f64 / 100.0)),
            },
            10 => Command::PublishMessage {
                name: ["go", "stop"][rng.below(2) as usize].to_string(),
                correlation_key: ["a", "b"][rng.below(2) as usize].to_string(),
                variables: vars(&format!(r#"{{"r": {}}}"#, rng.below(100) as f64 / 100.0)),
                ttl_millis: [0, 5_000][rng.below(2) as usize],
                message_id: None,
            },
            11 => {
                // Time passes; the shard fires what came due, oldest first.
                let until = shard.now_millis + rng.below(30_000) as i64;
                let fired = shard.fire_timers_until(until);
                seen.timers_fired += fired as u64;
                check_invariants(&shard.state);
                continue;
            }
            12 if rng.below(2) == 0 => {
                // Ad-hoc elements activated from outside (an unknown id is refused).
                let live = ad_hocs(&shard.state);
                if live.is_empty() {
                    continue;
                }
                let (key, ids) = &live[rng.below(live.len() as u64) as usize];
                let element_id = if rng.below(8) == 0 {
                    "nope".to_string()
                } else {
                    ids[rng.below(ids.len() as u64) as usize].clone()
                };
                Command::ActivateAdHocActivities {
                    key: *key,
                    elements: vec![ringflow_core::adhoc::AdHocActivation {
                        element_id,
                        variables: vars(&format!(r#"{{"r": {}}}"#, rng.below(100) as f64 / 100.0)),
                    }],
                    cancel_remaining_instances: rng.below(4) == 0,
                }
            }
            12 => {
                // A timer fired too early (or a stale one) is refused and changes nothing.
                let timers: Vec<Key> = shard.state.timers().map(|t| t.key).collect();
                if timers.is_empty() {
                    continue;
                }
                Command::TriggerTimer {
                    key: pick(&mut rng, &timers),
                }
            }
            0 | 1 => Command::CreateInstance {
                process: ProcessRef::Latest("random".to_string()),
                variables: vars(&format!(
                    r#"{{"r": {}, "ck": "{}"}}"#,
                    rng.below(100) as f64 / 100.0,
                    ["a", "b"][rng.below(2) as usize]
                )),
                business_key: None,
                await_result: rng.below(2) == 0,
            },
            2 => Command::ActivateJobs {
                job_type: "t".into(),
                worker: "w".into(),
                max_jobs: 1 + rng.below(5) as u32,
                lease_millis: 10_000,
                // Sometimes a worker fetches only some variables (one not there at all).
                fetch_variables: match rng.below(4) {
                    0 => vec!["r".into()],
                    1 => vec!["r".into(), "absent".into()],
                    _ => Vec::new(),
                },
            },
            3..=5 if !jobs.is_empty() && rng.below(3) == 0 => {
                // A worker's decision (refused for any other job, and where it does not fit).
                let key = pick(&mut rng, &jobs);
                let live = ad_hocs(&shard.state);
                let element = shard.state.job(key).map(|job| job.element_instance_key);
                let ids = live
                    .iter()
                    .find(|(ad_hoc, _)| Some(*ad_hoc) == element)
                    .map(|(_, ids)| ids.clone())
                    .unwrap_or_else(|| vec!["nope".to_string()]);
                let fulfilled = rng.below(4) == 0;
                let activate_elements = if fulfilled {
                    Vec::new()
                } else {
                    (0..rng.below(3))
                        .map(|_| ringflow_core::adhoc::AdHocActivation {
                            element_id: ids[rng.below(ids.len() as u64) as usize].clone(),
                            variables: vars("{}"),
                        })
                        .collect()
                };
                Command::CompleteAdHocJob {
                    key,
                    variables: vars(&format!(r#"{{"r": {}}}"#, rng.below(100) as f64 / 100.0)),
                    result: ringflow_core::adhoc::AdHocJobResult {
                        activate_elements,
                        completion_condition_fulfilled: fulfilled,
                        cancel_remaining_instances: rng.below(3) == 0,
                    },
                }
            }
            3..=5 if !jobs.is_empty() => Command::CompleteJob {
                key: pick(&mut rng, &jobs),
                // `res`: an ad-hoc subprocess's output element, `null` in each activation.
                variables: vars(&format!(
                    r#"{{"r": {}, "res": {}}}"#,
                    rng.below(100) as f64 / 100.0,
                    rng.below(10)
                )),
            },
            6 if !jobs.is_empty() => Command::FailJob {
                key: pick(&mut rng, &jobs),
                retries: rng.below(2) as u32,
                retry_backoff_millis: 0,
                message: "x".into(),
            },
            7 if !jobs.is_empty() => Command::ThrowError {
                key: pick(&mut rng, &jobs),
                error_code: "E".into(),
                message: String::new(),
            },
            8 => {
                let incidents: Vec<(Key, Key)> = shard
                    .state
                    .incidents()
                    .map(|i| (i.key, i.element_instance_key))
                    .collect();
                if incidents.is_empty() {
                    continue;
                }
                let (incident, element) = incidents[rng.below(incidents.len() as u64) as usize];
                if let Some(job) = shard.state.element_instance(element).and_then(|e| e.job) {
                    shard
                        .run(Command::UpdateJobRetries {
                            key: job,
                            retries: 1,
                        })
                        .expect("retries");
                    check_invariants(&shard.state);
                }
                Command::ResolveIncident { key: incident }
            }
            9 => {
                let instances: Vec<Key> = shard
                    .state
                    .instances()
                    .filter(|i| i.parent.is_none())
                    .map(|i| i.key)
                    .collect();
                if instances.is_empty() || rng.below(3) != 0 {
                    continue;
                }
                Command::CancelInstance {
                    key: pick(&mut rng, &instances),
                }
            }
            _ => continue,
        };
        // Rejections are fine (a job not activated yet, ...); the shard checks they changed
        // nothing.
        let listener_job = matches!(&command, Command::CompleteJob { key, .. }
            if shard.state.job(*key).is_some_and(|job| job.listener.is_some()));
        let decision = matches!(&command, Command::CompleteAdHocJob { .. });
        if let Ok(outcome) = shard.run(command) {
            seen.listeners += u64::from(listener_job);
            seen.worker_decisions += u64::from(decision);
            for event in &outcome.events {
                match event {
                    ringflow_core::Event::ElementCompleted {
                        key,
                        process_instance_key,
                        ..
                    } if key == process_instance_key => {
                        seen.instances_ended += 1;
                    }
                    ringflow_core::Event::IncidentCreated { .. } => seen.incidents += 1,
                    ringflow_core::Event::MessageCorrelated { .. } => seen.correlations += 1,
                    ringflow_core::Event::ElementActivated { element_id, .. }
                        if element_id.starts_with("join") || element_id.starts_with("orjoin") =>
                    {
                        seen.joins += 1;
                    }
                    ringflow_core::Event::ElementCompleted { element_id, .. }
                        if element_id.starts_with("sig") =>
                    {
                        seen.signals += 1;
                    }
                    ringflow_core::Event::ElementCompleted { element_id, .. }
                        if element_id.starts_with("cond") =>
                    {
                        seen.conditionals += 1;
                    }
                    ringflow_core::Event::ElementCompleted { element_id, .. }
                        if element_id.starts_with("multi") =>
                    {
                        seen.multi_instance += 1;
                    }
                    ringflow_core::Event::ElementCompleted { element_id, .. }
                        if element_id.starts_with("call") =>
                    {
                        seen.calls += 1;
                    }
                    ringflow_core::Event::ElementCompleted { element_id, .. }
                        if element_id.starts_with("undo") =>
                    {
                        seen.compensations += 1;
                    }
                    ringflow_core::Event::ElementCompleted { element_id, .. }
                        if element_id.starts_with("adhoc") && !element_id.contains('#') =>
                    {
                        seen.ad_hoc += 1;
                    }
                    _ => {}
                }
            }
        }
        check_invariants(&shard.state);
    }
    drain(&mut shard);
    shard.check_replay();
    // Snapshot, restore and continue equals the uninterrupted run.
    let (bytes, from) = snapshot.expect("taken halfway");
    let mut restored = State::decode(&bytes).expect("the snapshot restores");
    for (command, ctx) in &shard.log[from..] {
        ringflow_core::process(&mut restored, command.clone(), ctx).expect("accepted again");
    }
    assert_eq!(
        restored.encode(),
        shard.state.encode(),
        "restore-and-continue differs"
    );
}

/// Liveness: fixing every incident and completing every job must end every instance. An
/// instance left waiting would mean a token stuck somewhere, such as a join that never fires.
fn drain(shard: &mut Shard) {
    for _ in 0..1_000 {
        if shard.state.instances().next().is_none() {
            return;
        }
        let incidents: Vec<(Key, Key)> = shard
            .state
            .incidents()
            .map(|i| (i.key, i.element_instance_key))
            .collect();
        for (incident, element) in incidents {
            if let Some(job) = shard.state.element_instance(element).and_then(|e| e.job) {
                shard
                    .run(Command::UpdateJobRetries {
                        key: job,
                        retries: 1,
                    })
                    .expect("retries");
            }
            shard
                .run(Command::ResolveIncident { key: incident })
                .expect("resolve");
            check_invariants(&shard.state);
        }
        // Every waiting message catch gets its message; time runs on past every timer.
        let waiting: Vec<(String, String)> = shard
            .state
            .subscriptions()
            .map(|s| (s.name.clone(), s.correlation_key.clone()))
            .collect();
        for (name, correlation_key) in waiting {
            shard.publish(&name, &correlation_key, "{}", 0);
            check_invariants(&shard.state);
        }
        // And every waiting signal catch its signal.
        let signals: std::collections::BTreeSet<String> = shard
            .state
            .signal_subscriptions()
            .map(|s| s.name.clone())
            .collect();
        for name in signals {
            shard
                .run(Command::BroadcastSignal {
                    name,
                    variables: vars("{}"),
                })
                .expect("broadcast");
            check_invariants(&shard.state);
        }
        // And every waiting condition its value (from the owner, so it lands in the scope
        // the owner sees).
        let owners: Vec<Key> = shard
            .state
            .conditional_subscriptions()
            .map(|s| s.owner)
            .collect();
        for owner in owners {
            if shard.state.element_instance(owner).is_some() {
                shard
                    .run(Command::SetVariables {
                        scope: owner,
                        variables: vars(r#"{"r": 0.99}"#),
                        local: false,
                    })
                    .expect("set");
                check_invariants(&shard.state);
            }
        }
        // An ad-hoc subprocess with nothing running waits for an activation: one, with the
        // value its completion condition wants.
        for (key, ids) in ad_hocs(&shard.state) {
            let idle = shard
                .state
                .element_instance(key)
                .is_some_and(|element| element.tokens == 0 && element.incident.is_none());
            if idle {
                shard
                    .run(Command::SetVariables {
                        scope: key,
                        variables: vars(r#"{"r": 0.99}"#),
                        local: false,
                    })
                    .expect("set");
                shard
                    .run(Command::ActivateAdHocActivities {
                        key,
                        elements: vec![ringflow_core::adhoc::AdHocActivation {
                            element_id: ids[0].clone(),
                            variables: vars("{}"),
                        }],
                        cancel_remaining_instances: false,
                    })
                    .expect("activated");
                check_invariants(&shard.state);
            }
        }
        let later = shard.now_millis + 3_600_000;
        shard.fire_timers_until(later);
        check_invariants(&shard.state);
        let jobs: Vec<Key> = shard.state.jobs().map(|job| job.key).collect();
        for job in jobs {
            if shard
                .state
                .job(job)
                .is_some_and(|j| j.state == JobState::Activatable)
            {
                shard
                    .run(Command::ActivateJobs {
                        job_type: "t".into(),
                        worker: "w".into(),
                        max_jobs: 1_000,
                        lease_millis: 10_000,
                        fetch_variables: Vec::new(),
                    })
                    .expect("activate");
            }
            let worker = shard.state.job(job).is_some_and(|j| {
                ad_hocs(&shard.state)
                    .iter()
                    .any(|(ad_hoc, _)| *ad_hoc == j.element_instance_key)
            });
            if worker {
                // A worker says its subprocess is done (a job waiting for a retry is
                // refused; the next round tries again).
                let _ = shard.run(Command::CompleteAdHocJob {
                    key: job,
                    variables: vars(r#"{"r": 0.5}"#),
                    result: ringflow_core::adhoc::AdHocJobResult {
                        completion_condition_fulfilled: true,
                        ..Default::default()
                    },
                });
            } else if shard.state.job(job).is_some() {
                let _ = shard.run(Command::CompleteJob {
                    key: job,
                    variables: vars(r#"{"r": 0.5}"#),
                });
            }
            check_invariants(&shard.state);
        }
    }
    let left: Vec<Key> = shard.state.instances().map(|i| i.key).collect();
    panic!("instances {left:?} never ended although every job was completed");
}

#[test]
fn random_processes_and_commands_keep_the_invariants() {
    let base = std::env::var("RINGFLOW_RANDOM_SEED")
        .ok()
        .map(|s| s.parse::<u64>().expect("a number"));
    let seeds: Vec<u64> = match base {
        Some(seed) => vec![seed],
        None => {
            let runs = std::env::var("RINGFLOW_RANDOM_RUNS").ok();
            let runs = runs.map(|s| s.parse().expect("a number")).unwrap_or(RUNS);
            (1..=runs)
                .map(|run| run.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .collect()
        }
    };
    let single = seeds.len() == 1;
    let mut seen = Seen::default();
    for seed in seeds {
        let run = std::panic::AssertUnwindSafe(|| one_run(seed, &mut seen));
        let outcome = std::panic::catch_unwind(run);
        assert!(
            outcome.is_ok(),
            "seed {seed} broke an invariant (RINGFLOW_RANDOM_SEED={seed})"
        );
    }
    if !single {
        assert!(seen.instances_ended > 0, "no instance ever ended");
        assert!(seen.incidents > 0, "no incident was ever raised");
        assert!(seen.joins > 0, "no parallel join ever fired");
        assert!(seen.timers_fired > 0, "no timer ever fired");
        assert!(seen.correlations > 0, "no message ever correlated");
        assert!(seen.signals > 0, "no signal catch event ever completed");
        assert!(
            seen.conditionals > 0,
            "no conditional catch event ever completed"
        );
        assert!(
            seen.multi_instance > 0,
            "no multi-instance task ever completed"
        );
        assert!(seen.calls > 0, "no call activity ever completed");
        assert!(seen.ad_hoc > 0, "no ad-hoc subprocess ever completed");
        assert!(
            seen.worker_decisions > 0,
            "no ad-hoc worker's decision was ever taken"
        );
        assert!(
            seen.compensations > 0,
            "no compensation handler ever completed"
        );
        assert!(
            seen.listeners > 0,
            "no execution listener job ever completed"
        );
    }
}
