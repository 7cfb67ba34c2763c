//! The load scenarios, shaped like the ones of Zeebe's published load tests so that figures
//! compare: each is a BPMN model, the job types its workers serve, and what the generator
//! sends with every instance.

use std::fmt::Write as _;

use ringflow_shard::load::{InstanceSpec, Workload};
use ringflow_wire::{Job, PublishMessage};

/// The job type every scenario's service tasks use.
pub const JOB_TYPE: &str = "bench-task";
/// The message the message scenarios wait for.
pub const MESSAGE_NAME: &str = "bench-go";
/// How long a published message is buffered when it arrives before its subscription.
pub const MESSAGE_TTL_MS: u64 = 60_000;
/// The timer of the `timer` scenario.
pub const TIMER_DURATION: &str = "PT0.1S";
/// Bytes of the payload variable of the `realistic` scenario.
pub const REALISTIC_PAYLOAD_BYTES: usize = 10 * 1024;

/// One scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Start, one service task, end.
    #[value(name = "one_task")]
    OneTask,
    /// Ten service tasks in a row.
    #[value(name = "ten_tasks")]
    TenTasks,
    /// A parallel split into four service tasks and a join.
    #[value(name = "four_parallel")]
    FourParallel,
    /// The instance waits for a published message, then runs one service task.
    #[value(name = "msg_one_task")]
    MsgOneTask,
    /// `msg_one_task` with the message's correlation key on another shard than the instance
    /// (with two or more shards): every correlation crosses shards as mail.
    #[value(name = "msg_cross")]
    MsgCross,
    /// `one_task` with a start and an end execution listener on the task: three jobs per
    /// instance, each listener a job the task waits for.
    #[value(name = "listeners")]
    Listeners,
    /// `one_task` as a Camunda user task (`zeebe:userTask`, its job of the bench's type)
    /// with a completing task listener: two jobs per instance; the task's completion waits
    /// for the listener's job, and its answer comes when that is done.
    #[value(name = "task_listeners")]
    TaskListeners,
    /// `one_task` with a non-interrupting conditional boundary event on the task that
    /// watches `cancelled` (never set), the worker completing each job with a variable: the
    /// cost of a conditional subscription (opened and evaluated with the task, the job's
    /// variables compared against it).
    #[value(name = "conditional")]
    Conditional,
    /// `one_task` with the task inside an ad-hoc subprocess that activates it on entry
    /// (`activeElementsCollection`) and collects each activation's `result`: the cost of an
    /// ad-hoc subprocess and its inner instance around one task.
    #[value(name = "ad_hoc")]
    AdHoc,
    /// A 100 ms timer, then the end.
    #[value(name = "timer")]
    Timer,
    /// An order flow with about 10 KiB of variables: a task, an exclusive gateway (half the
    /// orders take an extra review task), a parallel split of two tasks, a message wait.
    #[value(name = "realistic")]
    Realistic,
}

impl Scenario {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::OneTask => "one_task",
            Scenario::TenTasks => "ten_tasks",
            Scenario::FourParallel => "four_parallel",
            Scenario::MsgOneTask => "msg_one_task",
            Scenario::MsgCross => "msg_cross",
            Scenario::Listeners => "listeners",
            Scenario::TaskListeners => "task_listeners",
            Scenario::Conditional => "conditional",
            Scenario::AdHoc => "ad_hoc",
            Scenario::Timer => "timer",
            Scenario::Realistic => "realistic",
        }
    }

    /// Whether each instance needs a message published for it (correlated by its key).
    pub fn publishes_message(self) -> bool {
        matches!(
            self,
            Scenario::MsgOneTask | Scenario::MsgCross | Scenario::Realistic
        )
    }

    /// Jobs one instance runs on average.
    pub fn jobs_per_instance(self) -> f64 {
        match self {
            Scenario::OneTask
            | Scenario::MsgOneTask
            | Scenario::MsgCross
            | Scenario::Conditional
            | Scenario::AdHoc => 1.0,
            Scenario::TenTasks => 10.0,
            // The start listener, the task, the end listener.
            Scenario::Listeners => 3.0,
            Scenario::TaskListeners => 2.0,
            Scenario::FourParallel => 4.0,
            Scenario::Timer => 0.0,
            // validate, half take review, charge, reserve.
            Scenario::Realistic => 3.5,
        }
    }

    /// The variables of instance `n` (JSON object text, or empty), whose correlation key is
    /// `key`.
    pub fn variables(self, n: u64, key: &str) -> String {
        match self {
            Scenario::MsgOneTask => format!(r#"{{"key":"{key}"}}"#),
            Scenario::Realistic => {
                let mut text = String::with_capacity(REALISTIC_PAYLOAD_BYTES + 256);
                let amount = (n * 7919) % 1000;
                let _ = write!(
                    text,
                    r#"{{"orderId":"{key}","amount":{amount},"customer":{{"id":"c-{n}","tier":"gold"}},"payload":""#
                );
                while text.len() < REALISTIC_PAYLOAD_BYTES {
                    text.push_str("0123456789abcdef");
                }
                text.push_str(r#""}"#);
                text
            }
            _ => String::new(),
        }
    }

    /// The BPMN XML of its model.
    pub fn bpmn(self) -> String {
        let id = Workload::process_id(&self).to_string();
        let task = |id: &str| {
            format!(
                r#"<bpmn:serviceTask id="{id}"><bpmn:extensionElements><zeebe:taskDefinition type="{JOB_TYPE}"/></bpmn:extensionElements></bpmn:serviceTask>"#
            )
        };
        let flow = |id: &str, from: &str, to: &str| {
            format!(r#"<bpmn:sequenceFlow id="{id}" sourceRef="{from}" targetRef="{to}"/>"#)
        };
        let mut body = String::new();
        let mut message = String::new();
        match self {
            Scenario::OneTask => {
                body.push_str(r#"<bpmn:startEvent id="start"/>"#);
                body.push_str(&task("task"));
                body.push_str(r#"<bpmn:endEvent id="end"/>"#);
                body.push_str(&flow("f1", "start", "task"));
                body.push_str(&flow("f2", "task", "end"));
            }
            Scenario::Listeners => {
                body.push_str(r#"<bpmn:startEvent id="start"/>"#);
                let _ = write!(
                    body,
                    r#"<bpmn:serviceTask id="task"><bpmn:extensionElements><zeebe:taskDefinition type="{JOB_TYPE}"/><zeebe:executionListeners><zeebe:executionListener eventType="start" type="{JOB_TYPE}"/><zeebe:executionListener eventType="end" type="{JOB_TYPE}"/></zeebe:executionListeners></bpmn:extensionElements></bpmn:serviceTask>"#
                );
                body.push_str(r#"<bpmn:endEvent id="end"/>"#);
                body.push_str(&flow("f1", "start", "task"));
                body.push_str(&flow("f2", "task", "end"));
            }
            Scenario::TaskListeners => {
                body.push_str(r#"<bpmn:startEvent id="start"/>"#);
                let _ = write!(
                    body,
                    r#"<bpmn:userTask id="task"><bpmn:extensionElements><zeebe:userTask/><zeebe:taskDefinition type="{JOB_TYPE}"/><zeebe:taskListeners><zeebe:taskListener eventType="completing" type="{JOB_TYPE}"/></zeebe:taskListeners></bpmn:extensionElements></bpmn:userTask>"#
                );
                body.push_str(r#"<bpmn:endEvent id="end"/>"#);
                body.push_str(&flow("f1", "start", "task"));
                body.push_str(&flow("f2", "task", "end"));
            }
            Scenario::Conditional => {
                body.push_str(r#"<bpmn:startEvent id="start"/>"#);
                body.push_str(&task("task"));
                body.push_str(
                    r#"<bpmn:boundaryEvent id="cancel" attachedToRef="task" cancelActivity="false"><bpmn:conditionalEventDefinition><bpmn:condition>= cancelled = true</bpmn:condition></bpmn:conditionalEventDefinition></bpmn:boundaryEvent>"#,
                );
                body.push_str(r#"<bpmn:endEvent id="end"/><bpmn:endEvent id="cancelled"/>"#);
                body.push_str(&flow("f1", "start", "task"));
                body.push_str(&flow("f2", "task", "end"));
                body.push_str(&flow("f3", "cancel", "cancelled"));
            }
            Scenario::AdHoc => {
                body.push_str(r#"<bpmn:startEvent id="start"/>"#);
                let _ = write!(
                    body,
                    r#"<bpmn:adHocSubProcess id="adhoc"><bpmn:extensionElements><zeebe:adHoc activeElementsCollection="= [&quot;task&quot;]" outputCollection="results" outputElement="= result"/></bpmn:extensionElements>{}</bpmn:adHocSubProcess>"#,
                    task("task")
                );
                body.push_str(r#"<bpmn:endEvent id="end"/>"#);
                body.push_str(&flow("f1", "start", "adhoc"));
                body.push_str(&flow("f2", "adhoc", "end"));
            }
            Scenario::TenTasks => {
                body.push_str(r#"<bpmn:startEvent id="start"/><bpmn:endEvent id="end"/>"#);
                let mut previous = "start".to_string();
                for i in 1..=10 {
                    let name = format!("task{i}");
                    body.push_str(&task(&name));
                    body.push_str(&flow(&format!("f{i}"), &previous, &name));
                    previous = name;
                }
                body.push_str(&flow("f11", &previous, "end"));
            }
            Scenario::FourParallel => {
                body.push_str(r#"<bpmn:startEvent id="start"/><bpmn:endEvent id="end"/>"#);
                body.push_str(
                    r#"<bpmn:parallelGateway id="fork"/><bpmn:parallelGateway id="join"/>"#,
                );
                body.push_str(&flow("f0", "start", "fork"));
                for i in 1..=4 {
                    let name = format!("task{i}");
                    body.push_str(&task(&name));
                    body.push_str(&flow(&format!("a{i}"), "fork", &name));
                    body.push_str(&flow(&format!("b{i}"), &name, "join"));
                }
                body.push_str(&flow("f9", "join", "end"));
            }
            Scenario::MsgOneTask | Scenario::MsgCross => {
                body.push_str(r#"<bpmn:startEvent id="start"/><bpmn:endEvent id="end"/>"#);
                body.push_str(
                    r#"<bpmn:intermediateCatchEvent id="wait"><bpmn:messageEventDefinition messageRef="msg"/></bpmn:intermediateCatchEvent>"#,
                );
                body.push_str(&task("task"));
                body.push_str(&flow("f1", "start", "wait"));
                body.push_str(&flow("f2", "wait", "task"));
                body.push_str(&flow("f3", "task", "end"));
                message = message_definition("=key");
                if self == Scenario::MsgCross {
                    message = message_definition("=pay");
                }
            }
            Scenario::Timer => {
                body.push_str(r#"<bpmn:startEvent id="start"/><bpmn:endEvent id="end"/>"#);
                let _ = write!(
                    body,
                    r#"<bpmn:intermediateCatchEvent id="wait"><bpmn:timerEventDefinition><bpmn:timeDuration>{TIMER_DURATION}</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>"#
                );
                body.push_str(&flow("f1", "start", "wait"));
                body.push_str(&flow("f2", "wait", "end"));
            }
            Scenario::Realistic => {
                body.push_str(r#"<bpmn:startEvent id="start"/><bpmn:endEvent id="end"/>"#);
                body.push_str(&task("validate"));
                body.push_str(r#"<bpmn:exclusiveGateway id="big" default="small"/>"#);
                body.push_str(&task("review"));
                body.push_str(r#"<bpmn:exclusiveGateway id="merge"/>"#);
                body.push_str(
                    r#"<bpmn:parallelGateway id="fork"/><bpmn:parallelGateway id="join"/>"#,
                );
                body.push_str(&task("charge"));
                body.push_str(&task("reserve"));
                body.push_str(
                    r#"<bpmn:intermediateCatchEvent id="shipped"><bpmn:messageEventDefinition messageRef="msg"/></bpmn:intermediateCatchEvent>"#,
                );
                body.push_str(&flow("f1", "start", "validate"));
                body.push_str(&flow("f2", "validate", "big"));
                body.push_str(
                    r#"<bpmn:sequenceFlow id="large" sourceRef="big" targetRef="review"><bpmn:conditionExpression>=amount &gt;= 500</bpmn:conditionExpression></bpmn:sequenceFlow>"#,
                );
                body.push_str(&flow("small", "big", "merge"));
                body.push_str(&flow("f3", "review", "merge"));
                body.push_str(&flow("f4", "merge", "fork"));
                body.push_str(&flow("f5", "fork", "charge"));
                body.push_str(&flow("f6", "fork", "reserve"));
                body.push_str(&flow("f7", "charge", "join"));
                body.push_str(&flow("f8", "reserve", "join"));
                body.push_str(&flow("f9", "join", "shipped"));
                body.push_str(&flow("f10", "shipped", "end"));
                message = message_definition("=orderId");
            }
        }
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="definitions-{name}" targetNamespace="https://ringflow.dev/bench">
<bpmn:process id="{id}" isExecutable="true">{body}</bpmn:process>{message}
</bpmn:definitions>
"#,
            name = self.name()
        )
    }
}

impl Workload for Scenario {
    fn process_id(&self) -> &str {
        match self {
            Scenario::OneTask => "bench-one-task",
            Scenario::TenTasks => "bench-ten-tasks",
            Scenario::FourParallel => "bench-four-parallel",
            Scenario::MsgOneTask => "bench-msg-one-task",
            Scenario::MsgCross => "bench-msg-cross",
            Scenario::Listeners => "bench-listeners",
            Scenario::TaskListeners => "bench-task-listeners",
            Scenario::Conditional => "bench-conditional",
            Scenario::AdHoc => "bench-ad-hoc",
            Scenario::Timer => "bench-timer",
            Scenario::Realistic => "bench-realistic",
        }
    }

    fn job_types(&self) -> Vec<String> {
        if self.jobs_per_instance() > 0.0 {
            vec![JOB_TYPE.to_string()]
        } else {
            Vec::new()
        }
    }

    fn instance(&self, n: u64) -> InstanceSpec {
        if !self.publishes_message() {
            return InstanceSpec {
                variables: self.variables(n, ""),
                ..InstanceSpec::default()
            };
        }
        let key = format!("bench-{}-{n}", std::process::id());
        InstanceSpec {
            variables: self.variables(n, &key),
            business_key: key.clone(),
            messages: vec![PublishMessage {
                name: MESSAGE_NAME.to_string(),
                correlation_key: key,
                variables: String::new(),
                ttl_ms: MESSAGE_TTL_MS,
                message_id: String::new(),
            }],
        }
    }

    fn instance_in(&self, n: u64, shard_of: &dyn Fn(&str) -> u16) -> InstanceSpec {
        let mut spec = self.instance(n);
        if *self == Scenario::MsgCross {
            let home = shard_of(&spec.business_key);
            let pay = cross_key(&spec.business_key, home, shard_of);
            spec.variables = format!(r#"{{"key":"{}","pay":"{pay}"}}"#, spec.business_key);
            spec.messages[0].correlation_key = pay;
        }
        spec
    }

    fn job_result(&self, _job: &Job) -> String {
        match self {
            Scenario::Realistic => r#"{"checked":true}"#.to_string(),
            Scenario::Conditional => r#"{"done":true}"#.to_string(),
            Scenario::AdHoc => r#"{"result":1}"#.to_string(),
            _ => String::new(),
        }
    }
}

/// A correlation key for an instance with business key `key` on shard `home` that routes to
/// another shard: `key-pay-0`, `key-pay-1`, ... the first that does (with one shard, where
/// none can, the first).
fn cross_key(key: &str, home: u16, shard_of: &dyn Fn(&str) -> u16) -> String {
    (0..CROSS_KEY_TRIES)
        .map(|i| format!("{key}-pay-{i}"))
        .find(|candidate| shard_of(candidate) != home)
        .unwrap_or_else(|| format!("{key}-pay-0"))
}

/// Candidates `cross_key` tries (with two shards, the chance that all land at home is
/// 2^-64).
const CROSS_KEY_TRIES: u32 = 64;

fn message_definition(correlation_key: &str) -> String {
    format!(
        r#"<bpmn:message id="msg" name="{MESSAGE_NAME}"><bpmn:extensionElements><zeebe:subscription correlationKey="{correlation_key}"/></bpmn:extensionElements></bpmn:message>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_compiles_with_the_expected_process_id() {
        for &scenario in <Scenario as clap::ValueEnum>::value_variants() {
            let xml = scenario.bpmn();
            let parsed = ringflow_bpmn::parse(xml.as_bytes())
                .unwrap_or_else(|error| panic!("{}: {error}", scenario.name()));
            let ids: Vec<&str> = parsed
                .processes
                .iter()
                .map(|process| &*process.bpmn_process_id)
                .collect();
            assert_eq!(
                ids,
                [Workload::process_id(&scenario)],
                "{}",
                scenario.name()
            );
        }
    }

    #[test]
    fn msg_cross_puts_the_message_on_another_shard_than_the_instance() {
        let topology =
            ringflow_wire::topology::Topology::uniform(vec![ringflow_wire::topology::Node {
                id: 0,
                host: "127.0.0.1".to_string(),
                base_port: 26_500,
                first_shard: 0,
                shard_count: 4,
            }])
            .expect("a topology");
        let shard_of = |text: &str| topology.shard_of_text(text);
        for n in 0..50 {
            let spec = Scenario::MsgCross.instance_in(n, &shard_of);
            let pay = &spec.messages[0].correlation_key;
            assert_ne!(shard_of(pay), shard_of(&spec.business_key), "instance {n}");
            let variables: serde_json::Value = serde_json::from_str(&spec.variables).unwrap();
            assert_eq!(variables["pay"], pay.as_str());
            assert_eq!(variables["key"], spec.business_key.as_str());
        }
        // msg_one_task keeps the message on the instance's shard.
        let spec = Scenario::MsgOneTask.instance_in(3, &shard_of);
        assert_eq!(spec.messages[0].correlation_key, spec.business_key);
    }

    #[test]
    fn realistic_variables_are_about_ten_kib_of_valid_json() {
        let text = Scenario::Realistic.variables(3, "k-3");
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["orderId"], "k-3");
        assert!((REALISTIC_PAYLOAD_BYTES..REALISTIC_PAYLOAD_BYTES + 256).contains(&text.len()));
    }
}
