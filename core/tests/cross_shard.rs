//! Across shards: seeded, deterministic simulations of several shards in one process, each
//! with its own state and journal (a durable prefix and a tail that a crash loses), with the
//! runtime's part modelled as the shard runtime does it: mail leaves only once the record that
//! put it in the outbox is durable, goes out in order per destination, is sent again after a
//! restart or a lost connection until acknowledged, and is acknowledged once its `Receive`
//! record is durable. Links lose what is in flight when either end crashes or at random.
//!
//! Checked after every run (once everything is delivered and nothing crashes any more):
//! every instance ended (none waits forever), every waiting instance took exactly one
//! message, no message went twice to one process, every outbox is empty, every cancelled
//! parent's child on another shard was cancelled, and each shard's journal replays to its
//! state byte for byte (and through a snapshot).
//!
//! `RINGFLOW_CROSS_SEEDS=<n>` runs more seeds.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use common::{Rng, flow, model, vars};
use ringflow_core::{
    Command, Ctx, Effect, Event, Key, Mail, Outcome, ProcessRef, RejectionCode, Resource, Response,
    State, process,
};

const DAY: u64 = 86_400_000;

fn subscription(key: &str) -> String {
    format!(
        r#"<bpmn:extensionElements><zeebe:subscription correlationKey="{key}"/>
           </bpmn:extensionElements>"#
    )
}

/// start -> catch `name` (correlation key `key_expr`) -> end, as process `id`.
fn catch_process(id: &str, name: &str, key_expr: &str) -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:intermediateCatchEvent id="wait">
             <bpmn:messageEventDefinition messageRef="m"/></bpmn:intermediateCatchEvent>
           {}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "wait"),
        flow("f2", "wait", "end"),
    );
    model(id, &body).replace(
        "</bpmn:process>",
        &format!(
            "</bpmn:process><bpmn:message id=\"m\" name=\"{name}\">{}</bpmn:message>",
            subscription(key_expr)
        ),
    )
}

/// start -> call activity (child `called`, business key `=customer`) -> end, as `id`.
fn parent_process(id: &str, called: &str) -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:callActivity id="call"><bpmn:extensionElements>
             <zeebe:calledElement processId="{called}"/>
             <zeebe:properties><zeebe:property name="ringflow:businessKey" value="=customer"/>
             </zeebe:properties>
             <zeebe:ioMapping><zeebe:output source="=shipped" target="result"/></zeebe:ioMapping>
           </bpmn:extensionElements></bpmn:callActivity>
           {}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "call"),
        flow("f2", "call", "end"),
    );
    model(id, &body)
}

/// A call activity calling `called` on the shard of the business key `=key_var`, with
/// `boundary` (a boundary event definition, or empty) attached, as process `id`: start ->
/// call -> end, and the boundary -> `caught`.
fn calling_process(id: &str, called: &str, key_var: &str, boundary: &str) -> String {
    let attached = if boundary.is_empty() {
        String::new()
    } else {
        format!(
            r#"<bpmn:boundaryEvent id="catch" attachedToRef="call" {boundary}</bpmn:boundaryEvent>
               <bpmn:endEvent id="caught"/>{}"#,
            flow("f3", "catch", "caught")
        )
    };
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:callActivity id="call"><bpmn:extensionElements>
             <zeebe:calledElement processId="{called}"/>
             <zeebe:properties><zeebe:property name="ringflow:businessKey" value="={key_var}"/>
             </zeebe:properties>
           </bpmn:extensionElements></bpmn:callActivity>
           {}<bpmn:endEvent id="end"/>{attached}"#,
        flow("f1", "start", "call"),
        flow("f2", "call", "end"),
    );
    model(id, &body).replace("</bpmn:process>", THROWN)
}

/// The error and escalation every throwing model refers to.
const THROWN: &str = r#"</bpmn:process><bpmn:error id="boom" errorCode="BOOM"/>
    <bpmn:escalation id="up" escalationCode="UP"/>"#;

const CATCH_ERROR: &str = r#"><bpmn:errorEventDefinition errorRef="boom"/>"#;
const NOTICE_ESCALATION: &str =
    r#"cancelActivity="false"><bpmn:escalationEventDefinition escalationRef="up"/>"#;

/// start -> error end event BOOM, as `err-child`.
fn error_child() -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}<bpmn:endEvent id="boom-end">
             <bpmn:errorEventDefinition errorRef="boom"/></bpmn:endEvent>"#,
        flow("f1", "start", "boom-end")
    );
    model("err-child", &body).replace("</bpmn:process>", THROWN)
}

/// start -> escalation UP -> end, as `esc-child`.
fn escalation_child() -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}<bpmn:intermediateThrowEvent id="raise">
             <bpmn:escalationEventDefinition escalationRef="up"/></bpmn:intermediateThrowEvent>
           {}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "raise"),
        flow("f2", "raise", "end"),
    );
    model("esc-child", &body).replace("</bpmn:process>", THROWN)
}

/// start -> service task `child-work` -> end, as `job-child`.
fn job_child() -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}<bpmn:serviceTask id="work"><bpmn:extensionElements>
             <zeebe:taskDefinition type="child-work" retries="1"/></bpmn:extensionElements>
           </bpmn:serviceTask>{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "work"),
        flow("f2", "work", "end"),
    );
    model("job-child", &body)
}

fn deployments() -> Vec<Command> {
    let resources = [
        ("waiter.bpmn", catch_process("waiter", "paid", "=orderId")),
        ("child.bpmn", catch_process("child", "ship", "=shipment")),
        ("parent.bpmn", parent_process("parent", "child")),
        ("orphan.bpmn", parent_process("orphan", "not-deployed")),
        ("err-child.bpmn", error_child()),
        ("esc-child.bpmn", escalation_child()),
        ("job-child.bpmn", job_child()),
        // The child's error is caught at the call activity.
        (
            "err-parent.bpmn",
            calling_process("err-parent", "err-child", "customer", CATCH_ERROR),
        ),
        // Nothing catches it: an incident in the child.
        (
            "err-open.bpmn",
            calling_process("err-open", "err-child", "customer", ""),
        ),
        // The escalation is noticed without interrupting; the child goes on.
        (
            "esc-parent.bpmn",
            calling_process("esc-parent", "esc-child", "customer", NOTICE_ESCALATION),
        ),
        (
            "job-parent.bpmn",
            calling_process("job-parent", "job-child", "customer", CATCH_ERROR),
        ),
        // Three levels: `top` catches what `err-middle` (on the shard of `middle`) lets
        // through from its `err-child` (on the shard of `customer`).
        (
            "err-middle.bpmn",
            calling_process("err-middle", "err-child", "customer", ""),
        ),
        (
            "top.bpmn",
            calling_process("top", "err-middle", "middle", CATCH_ERROR),
        ),
    ];
    resources
        .into_iter()
        .map(|(name, xml)| Command::Deploy {
            resources: vec![Resource {
                name: name.to_string(),
                content: Arc::from(xml.into_bytes()),
            }],
        })
        .collect()
}

/// What a client asked for, resubmitted until its record is durable.
#[derive(Clone, Debug)]
enum Op {
    Create {
        tag: String,
        process: &'static str,
        variables: &'static str,
        args: String,
    },
    Publish {
        name: &'static str,
        key: String,
    },
    Cancel {
        tag: String,
    },
}

struct SimShard {
    id: u16,
    state: State,
    journal: Vec<(Command, Ctx)>,
    outcomes: Vec<Outcome>,
    durable: usize,
    next_key: Key,
    /// Client operations applied and waiting for durability, by journal length at submit.
    client: Vec<(usize, Op)>,
    /// Acknowledgements owed once the journal is durable up to the position: (from, seq).
    acks_owed: Vec<(usize, u16, u64)>,
    /// The courier: durable mail not yet acknowledged, per destination, and how far it sent.
    courier: BTreeMap<u16, BTreeMap<u64, Mail>>,
    sent_up_to: BTreeMap<u16, u64>,
}

impl SimShard {
    fn new(id: u16, shards: u16) -> SimShard {
        let mut state = State::new(id);
        state.set_cluster_shards(shards);
        SimShard {
            id,
            state,
            journal: Vec::new(),
            outcomes: Vec::new(),
            durable: 0,
            next_key: Key::first(id),
            client: Vec::new(),
            acks_owed: Vec::new(),
            courier: BTreeMap::new(),
            sent_up_to: BTreeMap::new(),
        }
    }

    fn submit(&mut self, command: Command, now: i64) -> Result<Outcome, ringflow_core::Rejection> {
        let ctx = Ctx {
            now_millis: now,
            next_key: self.next_key,
        };
        let outcome = process(&mut self.state, command.clone(), &ctx)?;
        self.next_key = outcome.next_key;
        self.journal.push((command, ctx));
        self.outcomes.push(outcome.clone());
        Ok(outcome)
    }

    /// The group commit: everything applied becomes durable; returns the newly durable
    /// outcomes and client operations.
    fn commit(&mut self) -> (Vec<Outcome>, Vec<Op>) {
        let fresh = self.outcomes[self.durable..].to_vec();
        self.durable = self.journal.len();
        for outcome in &fresh {
            for effect in &outcome.effects {
                if let Effect::Send { to, seq, mail } = effect {
                    self.courier
                        .entry(*to)
                        .or_default()
                        .insert(*seq, mail.clone());
                }
            }
        }
        let done = self.client.drain(..).map(|(_, op)| op).collect();
        (fresh, done)
    }

    /// A crash: the tail after the durable prefix is lost, the state is replayed from the
    /// journal, and everything held in memory (courier progress, owed acks) is gone.
    fn crash(&mut self) -> Vec<Op> {
        self.journal.truncate(self.durable);
        self.outcomes.truncate(self.durable);
        let shards = self.state.cluster_shards();
        self.state = replay(self.id, shards, &self.journal);
        self.next_key = self
            .outcomes
            .last()
            .map(|outcome| outcome.next_key)
            .unwrap_or(Key::first(self.id));
        self.acks_owed.clear();
        self.sent_up_to.clear();
        self.courier.clear();
        let outbox: Vec<(u16, u64, Mail)> = self
            .state
            .outbox()
            .map(|(to, seq, mail)| (to, seq, mail.clone()))
            .collect();
        for (to, seq, mail) in outbox {
            self.courier.entry(to).or_default().insert(seq, mail);
        }
        self.client.drain(..).map(|(_, op)| op).collect()
    }
}

fn replay(id: u16, shards: u16, journal: &[(Command, Ctx)]) -> State {
    let mut state = State::new(id);
    state.set_cluster_shards(shards);
    for (command, ctx) in journal {
        process(&mut state, command.clone(), ctx).expect("replay accepts what was accepted");
    }
    state
}

struct Sim {
    shards: Vec<SimShard>,
    /// Mail in flight per (from, to), in order.
    wires: BTreeMap<(u16, u16), VecDeque<(u64, Mail)>>,
    /// Acknowledgements in flight per (receiver, sender): the highest number.
    ack_wires: BTreeMap<(u16, u16), VecDeque<u64>>,
    now: i64,
    ops: VecDeque<Op>,
    /// Instance keys of created instances, by tag.
    created: BTreeMap<String, Key>,
    /// Every event of a durable record, per shard.
    events: Vec<Event>,
    steps: u64,
    /// What happened, so that a test can tell the faults bit: crashes, duplicate mail,
    /// mail after a gap, mail taken, correlations turned down.
    stats: Stats,
}

#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    crashes: u64,
    duplicates: u64,
    gaps: u64,
    taken: u64,
    turned_down: u64,
}

/// One step the scheduler can take.
#[derive(Clone, Copy, Debug)]
enum Step {
    Client,
    Commit(u16),
    Send(u16, u16),
    Deliver(u16, u16),
    Ack(u16, u16),
    Crash(u16),
    Drop(u16, u16),
    /// The sender's resend timer: nothing came back for a while, so it sends again from the
    /// first unacknowledged mail.
    Resend(u16, u16),
}

impl Sim {
    fn new(shards: u16, ops: Vec<Op>) -> Sim {
        let mut sim = Sim {
            shards: (0..shards).map(|id| SimShard::new(id, shards)).collect(),
            wires: BTreeMap::new(),
            ack_wires: BTreeMap::new(),
            now: 1_000_000,
            ops: ops.into(),
            created: BTreeMap::new(),
            events: Vec::new(),
            steps: 0,
            stats: Stats::default(),
        };
        for shard in &mut sim.shards {
            for deploy in deployments() {
                shard.submit(deploy, 1_000_000).expect("deploys");
            }
            shard.commit();
        }
        sim
    }

    fn count(&self) -> u16 {
        self.shards.len() as u16
    }

    fn owner(&self, text: &str) -> u16 {
        self.shards[0].state.owner_of_text(text)
    }

    /// The steps possible now.
    fn enabled(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        if !self.ops.is_empty() && self.op_ready(&self.ops[0]) {
            steps.push(Step::Client);
        }
        for shard in &self.shards {
            if shard.durable < shard.journal.len() || !shard.client.is_empty() {
                steps.push(Step::Commit(shard.id));
            }
            for (to, entries) in &shard.courier {
                let sent = shard.sent_up_to.get(to).copied().unwrap_or(0);
                if entries.range(sent + 1..).next().is_some() {
                    steps.push(Step::Send(shard.id, *to));
                }
            }
            if shard
                .acks_owed
                .iter()
                .any(|(position, _, _)| *position <= shard.durable)
            {
                // Acks go out with the commit step's bookkeeping below.
                steps.push(Step::Commit(shard.id));
            }
        }
        for ((from, to), wire) in &self.wires {
            if !wire.is_empty() {
                steps.push(Step::Deliver(*from, *to));
            }
        }
        for ((receiver, sender), wire) in &self.ack_wires {
            if !wire.is_empty() {
                steps.push(Step::Ack(*receiver, *sender));
            }
        }
        if steps.is_empty() {
            for shard in &self.shards {
                for (to, entries) in &shard.courier {
                    if !entries.is_empty() && shard.sent_up_to.contains_key(to) {
                        steps.push(Step::Resend(shard.id, *to));
                    }
                }
            }
        }
        steps
    }

    fn op_ready(&self, op: &Op) -> bool {
        match op {
            Op::Cancel { tag } => self.created.contains_key(tag),
            _ => true,
        }
    }

    fn run_step(&mut self, step: Step) {
        self.steps += 1;
        self.now += 3;
        let now = self.now;
        match step {
            Step::Client => {
                let op = self.ops.pop_front().expect("enabled");
                let (shard, command) = self.command_of(&op);
                let shard = &mut self.shards[shard as usize];
                match shard.submit(command, now) {
                    Ok(_) => {
                        let position = shard.journal.len();
                        shard.client.push((position, op));
                    }
                    // A cancel of an instance that ended already, or of a child: fine.
                    Err(rejection) => assert!(
                        matches!(op, Op::Cancel { .. }),
                        "{op:?} refused: {rejection}"
                    ),
                }
            }
            Step::Commit(id) => {
                let shard = &mut self.shards[id as usize];
                let (fresh, done) = shard.commit();
                for outcome in fresh {
                    self.events.extend(outcome.events);
                }
                let durable = shard.durable;
                let owed: Vec<(u16, u64)> = shard
                    .acks_owed
                    .iter()
                    .filter(|(position, _, _)| *position <= durable)
                    .map(|(_, from, seq)| (*from, *seq))
                    .collect();
                shard
                    .acks_owed
                    .retain(|(position, _, _)| *position > durable);
                for (from, seq) in owed {
                    self.ack_wires.entry((id, from)).or_default().push_back(seq);
                }
                for op in done {
                    if let Op::Create { tag, .. } = &op {
                        let key = self.find_created(id, tag);
                        self.created.insert(tag.clone(), key);
                    }
                }
            }
            Step::Send(from, to) => {
                let shard = &mut self.shards[from as usize];
                let sent = shard.sent_up_to.get(&to).copied().unwrap_or(0);
                let (seq, mail) = shard.courier[&to]
                    .range(sent + 1..)
                    .next()
                    .map(|(seq, mail)| (*seq, mail.clone()))
                    .expect("enabled");
                shard.sent_up_to.insert(to, seq);
                self.wires
                    .entry((from, to))
                    .or_default()
                    .push_back((seq, mail));
            }
            Step::Deliver(from, to) => {
                let (seq, mail) = self
                    .wires
                    .get_mut(&(from, to))
                    .and_then(VecDeque::pop_front)
                    .expect("enabled");
                if matches!(
                    mail,
                    Mail::Correlated {
                        accepted: false,
                        ..
                    }
                ) {
                    self.stats.turned_down += 1;
                }
                let shard = &mut self.shards[to as usize];
                match shard.submit(Command::Receive { from, seq, mail }, now) {
                    Ok(_) => {
                        self.stats.taken += 1;
                        let position = shard.journal.len();
                        shard.acks_owed.push((position, from, seq));
                    }
                    Err(rejection) if rejection.code == RejectionCode::AlreadyExists => {
                        // A duplicate: acknowledged again once what it was judged against is
                        // durable.
                        self.stats.duplicates += 1;
                        let position = shard.journal.len();
                        shard.acks_owed.push((position, from, seq));
                    }
                    Err(rejection) if rejection.code == RejectionCode::InvalidState => {
                        // A gap: the sender sends again from the first unacknowledged mail.
                        self.stats.gaps += 1;
                        self.shards[from as usize].sent_up_to.remove(&to);
                    }
                    Err(rejection) => panic!("mail refused: {rejection}"),
                }
            }
            Step::Ack(receiver, sender) => {
                let seq = self
                    .ack_wires
                    .get_mut(&(receiver, sender))
                    .and_then(VecDeque::pop_front)
                    .expect("enabled");
                let shard = &mut self.shards[sender as usize];
                if let Some(entries) = shard.courier.get_mut(&receiver) {
                    entries.retain(|number, _| *number > seq);
                }
                match shard.submit(Command::Acknowledge { to: receiver, seq }, now) {
                    Ok(_) => {}
                    Err(rejection) => assert_eq!(
                        rejection.code,
                        RejectionCode::AlreadyExists,
                        "acknowledge refused: {rejection}"
                    ),
                }
            }
            Step::Crash(id) => {
                self.stats.crashes += 1;
                let lost = self.shards[id as usize].crash();
                // Resubmitted by the client, in front of what it has not sent yet.
                for op in lost.into_iter().rev() {
                    self.ops.push_front(op);
                }
                // The connections of the crashed shard lose what they carried.
                for other in 0..self.count() {
                    self.wires.remove(&(id, other));
                    self.wires.remove(&(other, id));
                    self.ack_wires.remove(&(id, other));
                    self.ack_wires.remove(&(other, id));
                    // The peers send again once they notice (a reconnect), or go on where they
                    // were and find out from a gap or their resend timer.
                    if self.steps.is_multiple_of(2) {
                        self.shards[other as usize].sent_up_to.remove(&id);
                    }
                }
            }
            Step::Resend(from, to) => {
                self.shards[from as usize].sent_up_to.remove(&to);
            }
            Step::Drop(from, to) => {
                self.wires.remove(&(from, to));
                self.ack_wires.remove(&(to, from));
                self.shards[from as usize].sent_up_to.remove(&to);
            }
        }
    }

    /// The key of the instance a durable create with this tag made.
    fn find_created(&self, shard: u16, tag: &str) -> Key {
        let shard = &self.shards[shard as usize];
        let position = shard.journal[..shard.durable]
            .iter()
            .rposition(|(command, _)| {
                matches!(command, Command::CreateInstance { variables, .. }
                    if variables.get("tag").and_then(|t| t.as_str()) == Some(tag))
            })
            .expect("the create is journaled");
        match &shard.outcomes[position].response {
            Response::InstanceCreated {
                process_instance_key,
                ..
            } => *process_instance_key,
            other => panic!("create answered {other:?}"),
        }
    }

    fn command_of(&self, op: &Op) -> (u16, Command) {
        match op {
            Op::Create {
                tag,
                process,
                variables,
                args,
            } => {
                let mut variables = vars(variables);
                variables.insert("tag".into(), tag.clone().into());
                for pair in args.split(',').filter(|pair| !pair.is_empty()) {
                    let (name, value) = pair.split_once('=').expect("name=value");
                    variables.insert(name.into(), value.into());
                }
                // Instances are spread over the shards by their tag.
                let shard = (ringflow_core::remote::slot_of_text(tag) % self.count()) as u16;
                let command = Command::CreateInstance {
                    process: ProcessRef::Latest(process.to_string()),
                    variables,
                    business_key: None,
                    await_result: false,
                };
                (shard, command)
            }
            Op::Publish { name, key } => (
                self.owner(key),
                Command::PublishMessage {
                    name: name.to_string(),
                    correlation_key: key.clone(),
                    variables: vars(r#"{"shipped": true}"#),
                    ttl_millis: DAY,
                    message_id: None,
                },
            ),
            Op::Cancel { tag } => {
                let key = self.created[tag];
                (key.shard(), Command::CancelInstance { key })
            }
        }
    }

    /// Runs `budget` random steps, crashing and dropping links with the given odds (per
    /// mille), then delivers everything with no more faults.
    fn run(&mut self, rng: &mut Rng, budget: u64, crash_per_mille: u64) {
        for _ in 0..budget {
            let roll = rng.below(1000);
            if roll < crash_per_mille {
                let shard = rng.below(u64::from(self.count())) as u16;
                self.run_step(Step::Crash(shard));
                continue;
            }
            if roll < 2 * crash_per_mille {
                let from = rng.below(u64::from(self.count())) as u16;
                let to = rng.below(u64::from(self.count())) as u16;
                self.run_step(Step::Drop(from, to));
                continue;
            }
            let steps = self.enabled();
            if steps.is_empty() {
                break;
            }
            let step = steps[rng.below(steps.len() as u64) as usize];
            self.run_step(step);
        }
        self.quiesce();
    }

    /// Runs the first enabled step until none is left.
    fn quiesce(&mut self) {
        let mut guard = 0;
        while let Some(step) = self.enabled().first().copied() {
            self.run_step(step);
            guard += 1;
            assert!(guard < 1_000_000, "no quiescence: the exchange loops");
        }
    }

    fn check(&self, cancelled: &BTreeSet<String>) {
        for shard in &self.shards {
            assert_eq!(
                shard.state.outbox().count(),
                0,
                "shard {}: mail left in the outbox",
                shard.id
            );
            let live: Vec<_> = shard
                .state
                .instances()
                .map(|instance| instance.key)
                .collect();
            if !live.is_empty() {
                for instance in shard.state.instances() {
                    eprintln!("live: {instance:?}");
                }
                for element in shard.state.element_instances() {
                    eprintln!("element: {element:?}");
                }
                eprintln!(
                    "incidents: {:?}",
                    shard.state.incidents().collect::<Vec<_>>()
                );
            }
            assert!(
                live.is_empty(),
                "shard {}: instances wait forever: {live:?}",
                shard.id
            );
            assert!(
                shard.state.remote_subscriptions().next().is_none(),
                "shard {}: a remote subscription was left behind",
                shard.id
            );
            assert!(
                shard.state.remote_incidents().next().is_none(),
                "shard {}: a remote incident was left behind",
                shard.id
            );
            assert!(
                shard.state.pending_throws().next().is_none(),
                "shard {}: a throw waits for an answer",
                shard.id
            );
            let replayed = replay(shard.id, self.count(), &shard.journal);
            let encoded = shard.state.encode();
            assert_eq!(
                replayed.encode(),
                encoded,
                "shard {}: replay differs",
                shard.id
            );
            let restored = State::decode(&encoded).expect("the snapshot restores");
            assert_eq!(restored.encode(), encoded);
            assert!(shard.state.indexes_consistent());
        }
        // Each waiting instance took exactly one message; no message went to an instance of
        // one process twice.
        let mut per_instance: BTreeMap<Key, usize> = BTreeMap::new();
        let mut per_message: BTreeMap<(Key, String), usize> = BTreeMap::new();
        for event in &self.events {
            if let Event::MessageCorrelated {
                message_key: Some(message),
                process_instance_key,
                ..
            } = event
            {
                *per_instance.entry(*process_instance_key).or_default() += 1;
                let shard = &self.shards[process_instance_key.shard() as usize];
                let process = process_of(shard, *process_instance_key, &self.events);
                *per_message.entry((*message, process)).or_default() += 1;
            }
        }
        for ((message, process), count) in &per_message {
            assert_eq!(
                *count, 1,
                "message {message} went to process {process} {count} times"
            );
        }
        // Throws across shards: caught where the model catches them, once.
        for (tag, key) in &self.created {
            if cancelled.contains(tag) {
                continue;
            }
            let (caught, end) = (self.completed(*key, "caught"), self.completed(*key, "end"));
            if tag.starts_with("err-parent") || tag.starts_with("top") {
                assert_eq!((caught, end), (1, 0), "{tag}: the child's error is caught");
            } else if tag.starts_with("esc-parent") {
                assert_eq!(
                    (caught, end),
                    (1, 1),
                    "{tag}: noticed, and the child went on"
                );
            }
        }
        for (tag, key) in &self.created {
            let took = per_instance.get(key).copied().unwrap_or(0);
            if tag.starts_with("waiter") && !cancelled.contains(tag) {
                assert_eq!(took, 1, "{tag} ({key}) took {took} messages");
            }
            assert!(took <= 1, "{tag} took {took} messages");
        }
    }
}

impl Sim {
    /// How often the element `element_id` of `instance` completed.
    fn completed(&self, instance: Key, element_id: &str) -> usize {
        self.events
            .iter()
            .filter(|event| {
                matches!(event, Event::ElementCompleted { process_instance_key, element_id: id, .. }
                    if *process_instance_key == instance && &**id == element_id)
            })
            .count()
    }

    /// The live instances of process `process_id` on every shard.
    fn live_of(&self, process_id: &str) -> Vec<Key> {
        self.shards
            .iter()
            .flat_map(|shard| {
                shard.state.instances().filter(move |instance| {
                    shard
                        .state
                        .process(instance.process_definition_key)
                        .is_some_and(|version| version.bpmn_process_id == process_id)
                })
            })
            .map(|instance| instance.key)
            .collect()
    }

    /// Submits a command on a shard and makes it durable (with what it sends).
    fn submit_durable(&mut self, shard: u16, command: Command) -> Outcome {
        let now = self.now;
        let shard = &mut self.shards[shard as usize];
        let outcome = shard.submit(command, now).expect("accepted");
        let (fresh, _) = shard.commit();
        for outcome in fresh {
            self.events.extend(outcome.events);
        }
        outcome
    }
}

fn process_of(shard: &SimShard, instance: Key, events: &[Event]) -> String {
    let definition = events
        .iter()
        .find_map(|event| match event {
            Event::InstanceCreated {
                key,
                process_definition_key,
                ..
            } if *key == instance => Some(*process_definition_key),
            _ => None,
        })
        .expect("a created instance");
    shard
        .state
        .process(definition)
        .expect("deployed")
        .bpmn_process_id
        .clone()
}

/// The workload of one run: waiters with their messages (some published first), two
/// waiters on one key (one cancelled), parents with children on other shards (some
/// cancelled), and a parent whose child cannot start.
fn workload(rng: &mut Rng, size: usize) -> (Vec<Op>, BTreeSet<String>) {
    let mut ops = Vec::new();
    let mut cancelled = BTreeSet::new();
    for i in 0..size {
        let create = Op::Create {
            tag: format!("waiter-{i}"),
            process: "waiter",
            variables: "{}",
            args: format!("orderId=o-{i}"),
        };
        let publish = Op::Publish {
            name: "paid",
            key: format!("o-{i}"),
        };
        if rng.below(2) == 0 {
            ops.extend([create, publish]);
        } else {
            ops.extend([publish, create]);
        }
        ops.push(Op::Create {
            tag: format!("parent-{i}"),
            process: "parent",
            variables: "{}",
            args: format!("customer=c-{i},shipment=s-{i}"),
        });
        if i % 3 == 1 {
            ops.push(Op::Cancel {
                tag: format!("parent-{i}"),
            });
            cancelled.insert(format!("parent-{i}"));
        }
        ops.push(Op::Publish {
            name: "ship",
            key: format!("s-{i}"),
        });
        // Throws across shards: an error caught at the call activity, an escalation noticed
        // without interrupting, an error caught two levels up.
        let throwing = ["err-parent", "esc-parent", "top"][i % 3];
        let tag = format!("{throwing}-{i}");
        ops.push(Op::Create {
            tag: tag.clone(),
            process: throwing,
            variables: "{}",
            args: format!("customer=c-{i},middle=m-{i}"),
        });
        if i % 5 == 4 {
            ops.push(Op::Cancel { tag: tag.clone() });
            cancelled.insert(tag);
        }
    }
    // Two waiters of one process on the same key, and two messages: the cancelled one may
    // turn a message down, which then goes to the other.
    for tag in ["waiter-twin-a", "waiter-twin-b"] {
        ops.push(Op::Create {
            tag: tag.to_string(),
            process: "waiter",
            variables: "{}",
            args: "orderId=twin".to_string(),
        });
    }
    ops.push(Op::Publish {
        name: "paid",
        key: "twin".to_string(),
    });
    ops.push(Op::Cancel {
        tag: "waiter-twin-a".to_string(),
    });
    cancelled.insert("waiter-twin-a".to_string());
    ops.push(Op::Publish {
        name: "paid",
        key: "twin".to_string(),
    });
    (ops, cancelled)
}

#[test]
fn keys_of_the_workload_cross_shards() {
    // The workload only tests something if its keys live on other shards than their
    // instances.
    let sim = Sim::new(3, Vec::new());
    let crossing = (0..20)
        .filter(|i| {
            let tag = format!("waiter-{i}");
            let instance_shard = ringflow_core::remote::slot_of_text(&tag) % 3;
            sim.owner(&format!("o-{i}")) != instance_shard
        })
        .count();
    assert!(
        crossing >= 8,
        "only {crossing} of 20 waiters wait across shards"
    );
}

#[test]
fn seeded_runs_with_crashes_and_lost_links_correlate_each_message_once() {
    let seeds: u64 = std::env::var("RINGFLOW_CROSS_SEEDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(40);
    let mut total = Stats::default();
    for seed in 1..=seeds {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let shards = 2 + (seed % 3) as u16;
        let (ops, cancelled) = workload(&mut rng, 12);
        let mut sim = Sim::new(shards, ops);
        sim.run(&mut rng, 3_000, 15);
        assert!(sim.ops.is_empty(), "seed {seed}: client work left");
        sim.check(&cancelled);
        total.crashes += sim.stats.crashes;
        total.duplicates += sim.stats.duplicates;
        total.gaps += sim.stats.gaps;
        total.taken += sim.stats.taken;
        total.turned_down += sim.stats.turned_down;
    }
    // The faults bit: every kind happened over the seeds.
    eprintln!("{total:?}");
    assert!(total.crashes > seeds, "{total:?}");
    assert!(total.duplicates > 0 && total.gaps > 0, "{total:?}");
    assert!(total.turned_down > 0, "{total:?}");
    assert!(total.taken > 100 * seeds, "{total:?}");
}

/// One exchange at a time, with a crash of each shard after every single step of it.
fn crash_at_every_step(ops: Vec<Op>, cancelled: BTreeSet<String>, shards: u16) {
    let mut clean = Sim::new(shards, ops.clone());
    clean.quiesce();
    clean.check(&cancelled);
    let total = clean.steps;
    assert!(clean.stats.taken >= 2, "the exchange crosses shards");
    let mut lost_on_restart = 0;
    for at in 0..total {
        for crashed in 0..shards {
            let mut sim = Sim::new(shards, ops.clone());
            for _ in 0..at {
                match sim.enabled().first().copied() {
                    Some(step) => sim.run_step(step),
                    None => break,
                }
            }
            sim.run_step(Step::Crash(crashed));
            sim.quiesce();
            sim.check(&cancelled);
            lost_on_restart += sim.stats.duplicates;
        }
    }
    // Some crashes came between a mail's journaling and its acknowledgement.
    assert!(lost_on_restart > 0, "no crash made a shard send mail again");
}

#[test]
fn a_crash_of_either_side_at_every_step_of_a_correlation_loses_nothing() {
    // The instance on one shard, the message's key on the other.
    let sim = Sim::new(2, Vec::new());
    let i = (0..100)
        .find(|i| {
            let tag = format!("waiter-{i}");
            sim.owner(&format!("o-{i}")) != ringflow_core::remote::slot_of_text(&tag) % 2
        })
        .expect("a crossing key");
    for publish_first in [false, true] {
        let create = Op::Create {
            tag: format!("waiter-{i}"),
            process: "waiter",
            variables: "{}",
            args: format!("orderId=o-{i}"),
        };
        let publish = Op::Publish {
            name: "paid",
            key: format!("o-{i}"),
        };
        let ops = if publish_first {
            vec![publish, create]
        } else {
            vec![create, publish]
        };
        crash_at_every_step(ops, BTreeSet::new(), 2);
    }
}

#[test]
fn a_crash_of_either_side_at_every_step_of_a_call_and_a_cancellation_loses_nothing() {
    let sim = Sim::new(2, Vec::new());
    let i = (0..100)
        .find(|i| {
            let tag = format!("parent-{i}");
            sim.owner(&format!("c-{i}")) != ringflow_core::remote::slot_of_text(&tag) % 2
        })
        .expect("a crossing key");
    let parent = Op::Create {
        tag: format!("parent-{i}"),
        process: "parent",
        variables: "{}",
        args: format!("customer=c-{i},shipment=s-{i}"),
    };
    let ship = Op::Publish {
        name: "ship",
        key: format!("s-{i}"),
    };
    crash_at_every_step(vec![parent.clone(), ship.clone()], BTreeSet::new(), 2);
    let cancel = Op::Cancel {
        tag: format!("parent-{i}"),
    };
    let cancelled = BTreeSet::from([format!("parent-{i}")]);
    crash_at_every_step(vec![parent, cancel, ship], cancelled, 2);
}

#[test]
fn a_child_that_cannot_start_on_its_shard_is_an_incident_on_the_call_activity() {
    let mut sim = Sim::new(2, Vec::new());
    let i = (0..100)
        .find(|i| {
            let tag = format!("orphan-{i}");
            sim.owner(&format!("c-{i}")) != ringflow_core::remote::slot_of_text(&tag) % 2
        })
        .expect("a crossing key");
    sim.ops.push_back(Op::Create {
        tag: format!("orphan-{i}"),
        process: "orphan",
        variables: "{}",
        args: format!("customer=c-{i}"),
    });
    sim.quiesce();
    let parent = sim.created[&format!("orphan-{i}")];
    let state = &sim.shards[parent.shard() as usize].state;
    let incidents = state.incidents_in_tree(parent);
    assert_eq!(incidents.len(), 1, "one incident on the call activity");
    assert!(
        incidents[0]
            .message
            .contains("no process `not-deployed` is deployed on shard"),
        "{}",
        incidents[0].message
    );
    assert_eq!(state.outbox().count(), 0);
}

/// An `i` whose instance (by `tag-i`), `customer=c-i` and `middle=m-i` live on the shards
/// given (none: any), in a cluster of two.
fn placed(tag: &str, instance: u16, customer: u16, middle: Option<u16>) -> usize {
    let sim = Sim::new(2, Vec::new());
    (0..200)
        .find(|i| {
            ringflow_core::remote::slot_of_text(&format!("{tag}-{i}")) % 2 == instance
                && sim.owner(&format!("c-{i}")) == customer
                && middle.is_none_or(|shard| sim.owner(&format!("m-{i}")) == shard)
        })
        .expect("a placement")
}

fn create(tag: &str, process: &'static str, i: usize) -> Op {
    Op::Create {
        tag: format!("{tag}-{i}"),
        process,
        variables: "{}",
        args: format!("customer=c-{i},middle=m-{i}"),
    }
}

#[test]
fn a_crash_of_either_side_at_every_step_of_a_throw_across_shards_loses_nothing() {
    // An error caught at the call activity on the other shard; an escalation noticed there
    // without interrupting the child.
    for process in ["err-parent", "esc-parent"] {
        let i = placed(process, 0, 1, None);
        crash_at_every_step(vec![create(process, process, i)], BTreeSet::new(), 2);
        let cancel = Op::Cancel {
            tag: format!("{process}-{i}"),
        };
        let cancelled = BTreeSet::from([format!("{process}-{i}")]);
        crash_at_every_step(vec![create(process, process, i), cancel], cancelled, 2);
    }
    // Three levels over two shards: the child (shard 0) asks the middle (shard 1), which
    // passes the question on to the top (shard 0), which catches it.
    let i = placed("top", 0, 0, Some(1));
    crash_at_every_step(vec![create("top", "top", i)], BTreeSet::new(), 2);
}

#[test]
fn an_error_nobody_catches_is_an_incident_in_the_child_that_the_parent_sees() {
    let i = placed("err-open", 0, 1, None);
    let mut sim = Sim::new(2, vec![create("err-open", "err-open", i)]);
    sim.quiesce();
    let parent = sim.created[&format!("err-open-{i}")];
    assert_eq!(parent.shard(), 0);
    let [child] = sim.live_of("err-child")[..] else {
        panic!("one child");
    };
    assert_eq!(child.shard(), 1);
    let seen = |sim: &Sim| -> Vec<(Key, Key, String)> {
        sim.shards[0]
            .state
            .incidents_in_tree(parent)
            .iter()
            .map(|incident| {
                (
                    incident.key,
                    incident.process_instance_key,
                    incident.message.clone(),
                )
            })
            .collect()
    };
    let first = seen(&sim);
    assert_eq!(first.len(), 1, "the parent sees the child's incident");
    assert_eq!(first[0].1, child);
    assert!(
        first[0]
            .2
            .contains("an error with code `BOOM` was thrown and nothing catches it"),
        "{}",
        first[0].2
    );
    let child_incidents: Vec<Key> = sim.shards[1]
        .state
        .incidents()
        .map(|incident| incident.key)
        .collect();
    assert_eq!(
        child_incidents,
        vec![first[0].0],
        "the incident is the child's"
    );
    assert!(sim.shards[1].state.pending_throws().next().is_none());

    // Resolving enters the end event again: it throws again, is asked about again, and is
    // an incident again, which replaces the first in the parent's view.
    sim.submit_durable(
        1,
        Command::ResolveIncident {
            key: child_incidents[0],
        },
    );
    sim.quiesce();
    let second = seen(&sim);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second[0].0, first[0].0, "a new incident");
    assert_eq!(sim.shards[0].state.remote_incidents().count(), 1);

    // Cancelling the parent cancels the child; both views are empty after.
    sim.ops.push_back(Op::Cancel {
        tag: format!("err-open-{i}"),
    });
    sim.quiesce();
    sim.check(&BTreeSet::from([format!("err-open-{i}")]));
    assert!(sim.shards[1].state.incidents().next().is_none());
}

#[test]
fn a_job_incident_in_a_child_on_another_shard_comes_and_goes_and_its_error_is_caught_by_the_parent()
{
    let i = placed("job-parent", 1, 0, None);
    let mut sim = Sim::new(2, vec![create("job-parent", "job-parent", i)]);
    sim.quiesce();
    let parent = sim.created[&format!("job-parent-{i}")];
    let activate = Command::ActivateJobs {
        job_type: "child-work".to_string(),
        worker: "w".to_string(),
        max_jobs: 1,
        lease_millis: 60_000,
        fetch_variables: Vec::new(),
    };
    let job = match sim.submit_durable(0, activate.clone()).response {
        Response::JobsActivated(jobs) => jobs[0].key,
        other => panic!("{other:?}"),
    };
    sim.submit_durable(
        0,
        Command::FailJob {
            key: job,
            retries: 0,
            retry_backoff_millis: 0,
            message: "disk on fire".to_string(),
        },
    );
    sim.quiesce();
    let seen = sim.shards[1].state.incidents_in_tree(parent);
    assert_eq!(seen.len(), 1, "the parent sees the failed job's incident");
    assert!(
        seen[0].message.contains("disk on fire"),
        "{}",
        seen[0].message
    );
    let incident = seen[0].key;
    sim.submit_durable(
        0,
        Command::UpdateJobRetries {
            key: job,
            retries: 1,
        },
    );
    sim.submit_durable(0, Command::ResolveIncident { key: incident });
    sim.quiesce();
    assert!(
        sim.shards[1].state.incidents_in_tree(parent).is_empty(),
        "resolved in the child, gone from the parent's view"
    );
    // The worker throws BOOM: the parent's boundary event catches it, the child is
    // cancelled.
    let job = match sim.submit_durable(0, activate).response {
        Response::JobsActivated(jobs) => jobs[0].key,
        other => panic!("{other:?}"),
    };
    sim.submit_durable(
        0,
        Command::ThrowError {
            key: job,
            error_code: "BOOM".to_string(),
            message: "no stock".to_string(),
        },
    );
    sim.quiesce();
    assert_eq!(sim.completed(parent, "caught"), 1);
    assert_eq!(sim.completed(parent, "end"), 0);
    sim.check(&BTreeSet::new());
}

#[test]
fn binding_type_deployment_starts_the_version_with_the_callers_resource_on_the_other_shard() {
    let called = |marker: &str| {
        let body = format!(
            r#"<bpmn:startEvent id="start"/>{}<bpmn:endEvent id="end-{marker}"/>"#,
            flow("f1", "start", format!("end-{marker}").as_str())
        );
        model("versioned", &body)
    };
    let caller = {
        let body = format!(
            r#"<bpmn:startEvent id="start"/>{}
               <bpmn:callActivity id="call"><bpmn:extensionElements>
                 <zeebe:calledElement processId="versioned" bindingType="deployment"/>
                 <zeebe:properties><zeebe:property name="ringflow:businessKey"
                   value="=customer"/></zeebe:properties>
               </bpmn:extensionElements></bpmn:callActivity>{}<bpmn:endEvent id="end"/>"#,
            flow("f1", "start", "call"),
            flow("f2", "call", "end"),
        );
        model("caller", &body)
    };
    let deploy = |resources: Vec<(&str, String)>| Command::Deploy {
        resources: resources
            .into_iter()
            .map(|(name, xml)| Resource {
                name: name.to_string(),
                content: Arc::from(xml.into_bytes()),
            })
            .collect(),
    };
    let i = placed("caller", 0, 1, None);
    let mut sim = Sim::new(2, Vec::new());
    for shard in 0..2 {
        // The caller with version 1 of `versioned`, then a version 2 alone: the caller's
        // deployment binds version 1.
        sim.submit_durable(
            shard,
            deploy(vec![
                ("caller.bpmn", caller.clone()),
                ("v.bpmn", called("one")),
            ]),
        );
        sim.submit_durable(shard, deploy(vec![("v.bpmn", called("two"))]));
    }
    sim.ops.push_back(create("caller", "caller", i));
    sim.quiesce();
    let parent = sim.created[&format!("caller-{i}")];
    assert_eq!(sim.completed(parent, "end"), 1, "the parent completed");
    let child_ends: Vec<String> = sim
        .events
        .iter()
        .filter_map(|event| match event {
            Event::ElementCompleted {
                process_instance_key,
                element_id,
                ..
            } if process_instance_key.shard() == 1 && element_id.starts_with("end-") => {
                Some(element_id.to_string())
            }
            _ => None,
        })
        .collect();
    assert_eq!(child_ends, vec!["end-one".to_string()], "version 1 ran");
    sim.check(&BTreeSet::new());

    // A shard whose `versioned` has other bytes than the caller's deployment: an incident
    // on the call activity that says so.
    let mut sim = Sim::new(2, Vec::new());
    sim.submit_durable(
        0,
        deploy(vec![
            ("caller.bpmn", caller.clone()),
            ("v.bpmn", called("one")),
        ]),
    );
    sim.submit_durable(1, deploy(vec![("v.bpmn", called("other"))]));
    sim.ops.push_back(create("caller", "caller", i));
    sim.quiesce();
    let parent = sim.created[&format!("caller-{i}")];
    let incidents = sim.shards[0].state.incidents_in_tree(parent);
    assert_eq!(incidents.len(), 1);
    assert!(
        incidents[0]
            .message
            .contains("has the resource of the caller's deployment"),
        "{}",
        incidents[0].message
    );
}
