//! A tiny shard for engine tests: commands get contexts the way the real shard makes them,
//! accepted commands are logged for replay, and every run can be checked against replay.

#![allow(dead_code)]

use std::sync::Arc;

use ringflow_core::{
    ActivatedJob, Command, Ctx, Deployment, Key, Outcome, ProcessRef, Rejection, Resource,
    Response, State, Variables, process,
};

pub const SHARD: u16 = 3;

pub struct Shard {
    pub state: State,
    pub next_key: Key,
    pub now_millis: i64,
    pub log: Vec<(Command, Ctx)>,
}

impl Shard {
    pub fn new() -> Shard {
        Shard {
            state: State::new(SHARD),
            next_key: Key::first(SHARD),
            now_millis: 1_000,
            log: Vec::new(),
        }
    }

    pub fn run(&mut self, command: Command) -> Result<Outcome, Rejection> {
        let ctx = Ctx {
            now_millis: self.now_millis,
            next_key: self.next_key,
        };
        self.now_millis += 7;
        let before = self.state.encode();
        let result = process(&mut self.state, command.clone(), &ctx);
        match &result {
            Ok(outcome) => {
                self.next_key = outcome.next_key;
                self.log.push((command, ctx));
            }
            Err(_) => assert_eq!(self.state.encode(), before, "a rejection changed the state"),
        }
        result
    }

    pub fn deploy(&mut self, name: &str, xml: &str) -> Deployment {
        let resource = Resource {
            name: name.to_string(),
            content: Arc::from(xml.as_bytes()),
        };
        match self.run(Command::Deploy {
            resources: vec![resource],
        }) {
            Ok(Outcome {
                response: Response::Deployed(deployment),
                ..
            }) => deployment,
            other => panic!("deploy failed: {other:?}"),
        }
    }

    pub fn create(&mut self, process_id: &str, variables: Variables) -> (Key, Outcome) {
        let command = Command::CreateInstance {
            process: ProcessRef::Latest(process_id.to_string()),
            variables,
            business_key: None,
            await_result: false,
        };
        match self.run(command) {
            Ok(outcome) => match &outcome.response {
                Response::InstanceCreated {
                    process_instance_key,
                    ..
                } => (*process_instance_key, outcome.clone()),
                other => panic!("unexpected response {other:?}"),
            },
            Err(rejection) => panic!("create failed: {rejection}"),
        }
    }

    pub fn activate(&mut self, job_type: &str, max_jobs: u32) -> Vec<ActivatedJob> {
        match self.run(activation(job_type, max_jobs, Vec::new())) {
            Ok(Outcome {
                response: Response::JobsActivated(jobs),
                ..
            }) => jobs,
            other => panic!("activate failed: {other:?}"),
        }
    }

    pub fn complete(&mut self, key: Key, variables: Variables) -> Outcome {
        match self.run(Command::CompleteJob { key, variables }) {
            Ok(outcome) => outcome,
            Err(rejection) => panic!("complete failed: {rejection}"),
        }
    }

    /// Sets `variables` (JSON object text) on `scope`, propagated, then resolves `incident`:
    /// what fixing the cause of an incident looks like.
    pub fn fix_and_resolve(&mut self, scope: Key, variables: &str, incident: Key) {
        self.run(Command::SetVariables {
            scope,
            variables: vars(variables),
            local: false,
        })
        .expect("variables set");
        self.run(Command::ResolveIncident { key: incident })
            .expect("resolved");
    }

    /// Replays the log into a fresh state and checks it equals the live one, byte for byte,
    /// and that the live state survives a snapshot round trip.
    pub fn check_replay(&self) {
        let mut replayed = State::new(SHARD);
        for (command, ctx) in &self.log {
            process(&mut replayed, command.clone(), ctx).expect("replay accepts what was accepted");
        }
        let live = self.state.encode();
        assert_eq!(
            replayed.encode(),
            live,
            "replay differs from the live state"
        );
        let restored = State::decode(&live).expect("snapshot restores");
        assert_eq!(restored.encode(), live, "snapshot round trip differs");
        assert!(
            self.state.indexes_consistent(),
            "the live indexes disagree with a rebuild"
        );
    }
}

impl Shard {
    /// Publishes a message.
    pub fn publish(
        &mut self,
        name: &str,
        correlation_key: &str,
        variables: &str,
        ttl: u64,
    ) -> Outcome {
        let command = Command::PublishMessage {
            name: name.to_string(),
            correlation_key: correlation_key.to_string(),
            variables: vars(variables),
            ttl_millis: ttl,
            message_id: None,
        };
        match self.run(command) {
            Ok(outcome) => outcome,
            Err(rejection) => panic!("publish failed: {rejection}"),
        }
    }

    /// Moves the clock to `millis` and fires every timer due by then, oldest first (as the
    /// shard's timer task does), including timers armed by those firings. Returns how many
    /// fired.
    pub fn fire_timers_until(&mut self, millis: i64) -> usize {
        let mut fired = 0;
        loop {
            let due = self
                .state
                .timers()
                .filter(|timer| timer.due_millis <= millis)
                .min_by_key(|timer| (timer.due_millis, timer.key))
                .map(|timer| (timer.key, timer.due_millis));
            let Some((key, due_millis)) = due else {
                break;
            };
            self.now_millis = self.now_millis.max(due_millis);
            self.run(Command::TriggerTimer { key })
                .expect("a due timer fires");
            fired += 1;
        }
        self.now_millis = self.now_millis.max(millis);
        fired
    }

    /// The element ids of the live element instances of an instance, sorted.
    pub fn live_element_ids(&self, instance: Key) -> Vec<String> {
        let Some(process) = self.state.instance(instance) else {
            return Vec::new();
        };
        let definition = &self
            .state
            .process(process.process_definition_key)
            .unwrap()
            .definition;
        let mut ids: Vec<String> = self
            .state
            .element_instances()
            .filter(|element| element.process_instance_key == instance && element.scope.is_some())
            .map(|element| definition.element(element.element).id.to_string())
            .collect();
        ids.sort();
        ids
    }

    /// Asserts that nothing waits for an ended instance: no element, job, timer,
    /// subscription, incident or variable document is left, and the indexes agree.
    pub fn assert_clean(&self) {
        assert!(self.state.instances().next().is_none(), "instances left");
        assert!(
            self.state.element_instances().next().is_none(),
            "elements left"
        );
        assert!(self.state.jobs().next().is_none(), "jobs left");
        assert!(
            self.state.subscriptions().next().is_none(),
            "subscriptions left"
        );
        assert!(
            self.state.signal_subscriptions().next().is_none(),
            "signal subscriptions left"
        );
        assert!(
            self.state.conditional_subscriptions().next().is_none(),
            "conditional subscriptions left"
        );
        assert!(
            self.state.timers().all(|timer| timer.owner.is_none()),
            "element timers left"
        );
        assert!(self.state.incidents().next().is_none(), "incidents left");
        assert!(
            self.state.user_task_holds().next().is_none(),
            "user tasks held"
        );
        assert!(self.state.indexes_consistent(), "indexes disagree");
    }
}

/// `ActivateJobs` for up to `max_jobs` jobs of `job_type`, leased for a minute to
/// `test-worker`, fetching `fetch_variables` (all when empty).
pub fn activation(job_type: &str, max_jobs: u32, fetch_variables: Vec<String>) -> Command {
    Command::ActivateJobs {
        job_type: job_type.to_string(),
        worker: "test-worker".to_string(),
        max_jobs,
        lease_millis: 60_000,
        fetch_variables,
    }
}

pub fn vars(json: &str) -> Variables {
    match serde_json::from_str::<serde_json::Value>(json).expect("test JSON") {
        serde_json::Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Wraps process content into a deployable document.
pub fn model(process_id: &str, body: &str) -> String {
    format!(
        r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
             xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
           <bpmn:process id="{process_id}" isExecutable="true">{body}</bpmn:process>
           </bpmn:definitions>"#
    )
}

pub fn service_task(id: &str, job_type: &str) -> String {
    format!(
        r#"<bpmn:serviceTask id="{id}"><bpmn:extensionElements>
             <zeebe:taskDefinition type="{job_type}" retries="5"/>
             <zeebe:taskHeaders><zeebe:header key="k" value="v"/></zeebe:taskHeaders>
           </bpmn:extensionElements></bpmn:serviceTask>"#
    )
}

pub fn flow(id: &str, from: &str, to: &str) -> String {
    format!(r#"<bpmn:sequenceFlow id="{id}" sourceRef="{from}" targetRef="{to}"/>"#)
}

/// start -> service task `task` (job type `work`) -> end, as process `one-task`.
pub fn one_task() -> String {
    model(
        "one-task",
        &format!(
            r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>"#,
            flow("f1", "start", "task"),
            service_task("task", "work"),
            flow("f2", "task", "end")
        ),
    )
}

/// start -> parallel split -> tasks `a` (type `left`) and `b` (type `right`) -> join -> end.
pub fn parallel_body() -> String {
    format!(
        r#"<bpmn:startEvent id="start"/>{}<bpmn:parallelGateway id="split"/>{}{}{}{}{}{}
           <bpmn:parallelGateway id="join"/>{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "split"),
        flow("f2", "split", "a"),
        flow("f3", "split", "b"),
        service_task("a", "left"),
        service_task("b", "right"),
        flow("f4", "a", "join"),
        flow("f5", "b", "join"),
        flow("f6", "join", "end"),
    )
}

/// xorshift64*: tiny, seedable, and good enough for seeded test runs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `bound` (0 for a bound of 0), from the high half of the output: the
    /// low bits of xorshift64* are its weak ones (taken modulo small numbers, one draw
    /// predicted the next: a generator whose choice of 13 came out 7 never drew 0 of 3
    /// next, so random.rs never generated a signal catch event).
    pub fn below(&mut self, bound: u64) -> u64 {
        (self.next() >> 32) % bound.max(1)
    }
}
