//! `ringflow-bench engine`: the deterministic engine alone, no I/O, on one core.
//!
//! Runs the one-task process (start, service task, end) the way a shard would drive it:
//! CreateInstance, ActivateJobs (one job), CompleteJob, i.e. three commands per instance,
//! with contexts made like the shard makes them. Counts heap allocations with a counting
//! global allocator.
//!
//! `--signal-fanout N` measures a signal broadcast instead: N instances wait at a signal
//! catch event, and one `BroadcastSignal` command, with the `ContinueSignal` commands it
//! leads to (at most `SIGNAL_SUBSCRIPTIONS_PER_COMMAND_MAX` subscriptions each), moves them
//! all to their end: the whole delivery's time, and the longest of its commands, which is
//! how long it holds its shard at a time.
//!
//! `--compensation-fanout N` measures a compensation throw instead: a parallel
//! multi-instance subprocess of N items completes a compensable task in each, and the
//! command that reaches the throw event starts the handlers (tasks that complete at once),
//! at most `COMPENSATION_HANDLERS_PER_COMMAND_MAX`, the `ContinueCompensation` commands it
//! leads to the rest: the whole time, and the longest command.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ringflow_core::{Command, Ctx, Key, ProcessRef, Resource, Response, State, Variables, process};

use ringflow_shard::cold::ExportRecord;

use crate::alloc_counter;

/// Arguments of `ringflow-bench engine`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long to measure, in seconds, after a warm-up of 10,000 instances.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Run the FEEL variant instead: an input and an output mapping on the task and an
    /// exclusive gateway with a FEEL condition after it (three FEEL evaluations per instance).
    #[arg(long)]
    feel: bool,
    /// Keep about this many instances in flight instead of one at a time: half of them
    /// created with their job ready, half with their job activated and not yet completed.
    /// Each step creates one, activates the oldest ready job and completes the oldest
    /// activated one, so the state holds a server's working set (`run` keeps 2,048 in
    /// flight) rather than one instance that stays in the CPU's caches.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    inflight: u32,
    /// Measure one signal broadcast to this many waiting instances instead (5 rounds): how
    /// long its commands take to move them all, and the longest of them.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    signal_fanout: Option<u32>,
    /// Measure one compensation throw that starts this many handlers instead (5 rounds):
    /// how long its commands take to run them all, and the longest of them. At most 9,000: the command that
    /// creates the instance runs the multi-instance subprocess's items, about 11 steps each,
    /// within `COMMAND_STEPS_MAX` (100,000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=9_000))]
    compensation_fanout: Option<u32>,
}

const COMPENSATE_MANY: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
  <bpmn:process id="compensate-many" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="each"/>
    <bpmn:subProcess id="each">
      <bpmn:multiInstanceLoopCharacteristics><bpmn:extensionElements>
        <zeebe:loopCharacteristics inputCollection="=for i in 1..n return i" inputElement="item"/>
      </bpmn:extensionElements></bpmn:multiInstanceLoopCharacteristics>
      <bpmn:startEvent id="each-start"/>
      <bpmn:sequenceFlow id="e1" sourceRef="each-start" targetRef="book"/>
      <bpmn:task id="book"/>
      <bpmn:boundaryEvent id="book-compensation" attachedToRef="book">
        <bpmn:compensateEventDefinition/></bpmn:boundaryEvent>
      <bpmn:task id="undo-book" isForCompensation="true"/>
      <bpmn:association id="a1" sourceRef="book-compensation" targetRef="undo-book"/>
      <bpmn:sequenceFlow id="e2" sourceRef="book" targetRef="each-end"/>
      <bpmn:endEvent id="each-end"/>
    </bpmn:subProcess>
    <bpmn:sequenceFlow id="f2" sourceRef="each" targetRef="hold"/>
    <bpmn:serviceTask id="hold"><bpmn:extensionElements>
      <zeebe:taskDefinition type="hold"/></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:sequenceFlow id="f3" sourceRef="hold" targetRef="undo"/>
    <bpmn:intermediateThrowEvent id="undo"><bpmn:compensateEventDefinition/>
    </bpmn:intermediateThrowEvent>
    <bpmn:sequenceFlow id="f4" sourceRef="undo" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>"#;

/// `--compensation-fanout`: per round, one instance keeps `handlers` compensations, then
/// the command that completes its `hold` job reaches the throw, which starts (and, as the
/// handlers are plain tasks, completes) them, with the `ContinueCompensation` commands it
/// leads to; prints how long that took, and the longest command.
fn compensation_fanout(handlers: u32) -> anyhow::Result<()> {
    let mut engine = Engine::deployed(0, COMPENSATE_MANY, Variables::new(), 1, None)?;
    println!("machine: {}", crate::machine::describe());
    println!(
        "engine, one compensation throw event that starts {handlers} handlers (plain tasks, \
         done at once), one thread:"
    );
    for round in 1..=FANOUT_ROUNDS {
        let mut variables = Variables::new();
        variables.insert("n".to_string(), serde_json::Value::from(handlers));
        engine.run(Command::CreateInstance {
            process: ProcessRef::Latest("compensate-many".to_string()),
            variables,
            business_key: None,
            await_result: false,
        })?;
        let kept = engine.state.compensations().count();
        if kept != handlers as usize {
            bail!("{kept} compensations kept, not {handlers}");
        }
        let Response::JobsActivated(jobs) = engine.run(Command::ActivateJobs {
            job_type: "hold".to_string(),
            worker: "bench".to_string(),
            max_jobs: 1,
            lease_millis: 60_000,
            fetch_variables: Vec::new(),
        })?
        else {
            bail!("ActivateJobs did not answer with jobs");
        };
        let [job] = jobs.as_slice() else {
            if let Some(incident) = engine.state.incidents().next() {
                bail!("the instance stopped at an incident: {}", incident.message);
            }
            bail!("{} hold jobs, not one", jobs.len());
        };
        let started = Instant::now();
        engine.run(Command::CompleteJob {
            key: job.key,
            variables: Variables::new(),
        })?;
        let mut longest = started.elapsed();
        let mut commands = 1;
        while let Some(throw) = engine.state.compensation_throws().first().copied() {
            let one = Instant::now();
            engine.run(Command::ContinueCompensation { key: throw })?;
            longest = longest.max(one.elapsed());
            commands += 1;
        }
        let elapsed = started.elapsed();
        let running = engine.state.instance_count();
        if running != 0 || engine.state.compensations().count() != 0 {
            bail!("{running} instances still run after the throw");
        }
        println!(
            "  round {round}: {:>9.1} ms in {commands} commands, {:>6.2} µs per handler, the \
             longest command {:.2} ms",
            elapsed.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e6 / f64::from(handlers),
            longest.as_secs_f64() * 1e3,
        );
    }
    Ok(())
}

const SIGNAL_WAIT: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    id="d">
  <bpmn:process id="signal-wait" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait"/>
    <bpmn:intermediateCatchEvent id="wait"><bpmn:signalEventDefinition signalRef="s"/>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
  <bpmn:signal id="s" name="go"/>
</bpmn:definitions>"#;

/// Rounds of `--signal-fanout`.
const FANOUT_ROUNDS: u32 = 5;

/// `--signal-fanout`: per round, `waiting` instances start and wait, then one broadcast
/// moves them all; prints how long the broadcast took.
fn signal_fanout(waiting: u32) -> anyhow::Result<()> {
    let mut engine = Engine::deployed(0, SIGNAL_WAIT, Variables::new(), 1, None)?;
    println!("machine: {}", crate::machine::describe());
    println!(
        "engine, one signal broadcast to {waiting} instances waiting at a signal catch event \
         (each then runs to its end), one thread:"
    );
    for round in 1..=FANOUT_ROUNDS {
        for _ in 0..waiting {
            engine.run(Command::CreateInstance {
                process: ProcessRef::Latest("signal-wait".to_string()),
                variables: Variables::new(),
                business_key: None,
                await_result: false,
            })?;
        }
        let subscriptions = engine.state.signal_subscriptions().count();
        if subscriptions != waiting as usize {
            bail!("{subscriptions} signal subscriptions open, not {waiting}");
        }
        let started = Instant::now();
        let Response::SignalBroadcast { key } = engine.run(Command::BroadcastSignal {
            name: "go".to_string(),
            variables: Variables::new(),
        })?
        else {
            bail!("BroadcastSignal did not answer with the signal");
        };
        let mut longest = started.elapsed();
        let mut commands = 1;
        while engine.state.signal_delivery(key).is_some() {
            let one = Instant::now();
            engine.run(Command::ContinueSignal { key })?;
            longest = longest.max(one.elapsed());
            commands += 1;
        }
        let elapsed = started.elapsed();
        let running = engine.state.instance_count();
        if running != 0 {
            bail!("{running} instances still run after the broadcast");
        }
        println!(
            "  round {round}: {:>9.1} ms in {commands} commands, {:>6.2} µs per waiting \
             instance, the longest command {:.2} ms",
            elapsed.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e6 / f64::from(waiting),
            longest.as_secs_f64() * 1e3,
        );
    }
    Ok(())
}

const ONE_TASK: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
  <bpmn:process id="one-task" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="task"/>
    <bpmn:serviceTask id="task"><bpmn:extensionElements>
      <zeebe:taskDefinition type="work"/></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="task" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>"#;

const FEEL_TASK: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
  <bpmn:process id="one-task" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="task"/>
    <bpmn:serviceTask id="task"><bpmn:extensionElements>
      <zeebe:taskDefinition type="work"/>
      <zeebe:ioMapping><zeebe:input source="=order.total * 2" target="doubled"/>
        <zeebe:output source="=doubled" target="result"/></zeebe:ioMapping>
    </bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="task" targetRef="gw"/>
    <bpmn:exclusiveGateway id="gw" default="small"/>
    <bpmn:sequenceFlow id="big" sourceRef="gw" targetRef="end-big">
      <bpmn:conditionExpression>=result &gt; 10</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="small" sourceRef="gw" targetRef="end-small"/>
    <bpmn:endEvent id="end-big"/><bpmn:endEvent id="end-small"/>
  </bpmn:process>
</bpmn:definitions>"#;

struct Engine {
    state: State,
    ctx: Ctx,
    commands: u64,
    variables: Variables,
    /// Activated jobs not completed yet, oldest first (with `--inflight` over 1).
    activated: std::collections::VecDeque<Key>,
    /// How many activated jobs to hold before completing the oldest.
    hold: usize,
    /// Each command's events as a journal record would carry them, when kept
    /// (`ringflow-bench export`).
    records: Option<Vec<ExportRecord>>,
    /// Instances created.
    created: u64,
}

impl Engine {
    fn run(&mut self, command: Command) -> anyhow::Result<Response> {
        let outcome = process(&mut self.state, command, &self.ctx)
            .map_err(|rejection| anyhow::anyhow!("{rejection}"))?;
        if let Some(records) = &mut self.records {
            records.push(ExportRecord {
                lsn: self.commands + 1,
                now_millis: self.ctx.now_millis,
                events: outcome.events,
            });
        }
        self.ctx.next_key = outcome.next_key;
        self.ctx.now_millis += 1;
        self.commands += 1;
        Ok(outcome.response)
    }

    fn create(&mut self) -> anyhow::Result<()> {
        self.created += 1;
        self.run(Command::CreateInstance {
            process: ProcessRef::Latest("one-task".to_string()),
            variables: self.variables.clone(),
            business_key: None,
            await_result: false,
        })?;
        Ok(())
    }

    fn activate_one(&mut self) -> anyhow::Result<Key> {
        let Response::JobsActivated(jobs) = self.run(Command::ActivateJobs {
            job_type: "work".to_string(),
            worker: "bench".to_string(),
            max_jobs: 1,
            lease_millis: 60_000,
            fetch_variables: Vec::new(),
        })?
        else {
            bail!("ActivateJobs did not answer with jobs");
        };
        Ok(jobs.first().context("no job was ready")?.key)
    }

    /// One step: create an instance, activate the oldest ready job, and complete the oldest
    /// activated one once more than `hold` are activated (with `hold` 0, the job just
    /// activated: one whole instance).
    fn one_instance(&mut self) -> anyhow::Result<()> {
        self.create()?;
        let job = self.activate_one()?;
        self.activated.push_back(job);
        if self.activated.len() > self.hold {
            let key = self.activated.pop_front().context("held jobs")?;
            self.run(Command::CompleteJob {
                key,
                variables: Variables::new(),
            })?;
        }
        Ok(())
    }
}

impl Engine {
    /// An engine of shard `shard` with `model` deployed and `inflight` instances started
    /// (half with their job ready, half activated).
    fn deployed(
        shard: u16,
        model: &str,
        variables: Variables,
        inflight: u32,
        records: Option<Vec<ExportRecord>>,
    ) -> anyhow::Result<Engine> {
        let mut engine = Engine {
            state: State::new(shard),
            ctx: Ctx {
                now_millis: 1_700_000_000_000,
                next_key: Key::first(shard),
            },
            commands: 0,
            variables,
            activated: std::collections::VecDeque::new(),
            hold: 0,
            records,
            created: 0,
        };
        engine.run(Command::Deploy {
            resources: vec![Resource {
                name: "one-task.bpmn".to_string(),
                content: Arc::from(model.as_bytes()),
            }],
        })?;
        if inflight > 1 {
            // Half ready, half activated: created ahead of the steps.
            let half = inflight as usize / 2;
            engine.hold = half.max(1);
            for _ in 0..(inflight as usize - half) {
                engine.create()?;
            }
        }
        Ok(engine)
    }

    /// An engine with `model` deployed and warmed up by 10,000 instances.
    fn warmed_up(model: &str, variables: Variables, inflight: u32) -> anyhow::Result<Engine> {
        let mut engine = Engine::deployed(0, model, variables, inflight, None)?;
        for _ in 0..10_000 {
            engine.one_instance()?;
        }
        Ok(engine)
    }

    /// Runs instances, a thousand at a time, for at least `duration`: how many, and the
    /// seconds they took.
    fn measure(&mut self, duration: Duration) -> anyhow::Result<(u64, f64)> {
        let started = Instant::now();
        let mut instances = 0u64;
        while started.elapsed() < duration {
            for _ in 0..1_000 {
                self.one_instance()?;
            }
            instances += 1_000;
        }
        Ok((instances, started.elapsed().as_secs_f64()))
    }
}

/// The journal records of shard `shard` running `instances` one_task instances to their end
/// with `inflight` in flight (the last ones left running), one record per command as a
/// server under load writes them: what `ringflow-bench export` feeds the exporters. Also
/// returns how many instances were created.
pub fn one_task_records(
    shard: u16,
    instances: u32,
    inflight: u32,
) -> anyhow::Result<(Vec<ExportRecord>, u64)> {
    let mut engine = Engine::deployed(
        shard,
        ONE_TASK,
        Variables::new(),
        inflight,
        Some(Vec::new()),
    )?;
    for _ in 0..instances {
        engine.one_instance()?;
    }
    Ok((engine.records.unwrap_or_default(), engine.created))
}
/// The engine's pace on the calling thread's CPU: one-task instances per second over
/// `duration` (after a warm-up of 10,000), plain model. `ringflow-bench run` takes it on the
/// server's CPU before and after a measurement, to flag a machine whose CPU changed speed
/// during the run.
pub fn pace(duration: Duration) -> anyhow::Result<f64> {
    let (instances, elapsed) =
        Engine::warmed_up(ONE_TASK, Variables::new(), 1)?.measure(duration)?;
    Ok(instances as f64 / elapsed)
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(waiting) = args.signal_fanout {
        return signal_fanout(waiting);
    }
    if let Some(handlers) = args.compensation_fanout {
        return compensation_fanout(handlers);
    }
    let (model, variables) = if args.feel {
        (
            FEEL_TASK,
            serde_json::from_str(r#"{"order": {"total": 10}}"#)?,
        )
    } else {
        (ONE_TASK, Variables::new())
    };
    let mut engine = Engine::warmed_up(model, variables, args.inflight)?;
    let commands_before = engine.commands;
    let allocations_before = alloc_counter::allocations();
    let (instances, elapsed) = engine.measure(Duration::from_secs(args.seconds))?;
    let commands = engine.commands - commands_before;
    let allocations = alloc_counter::allocations() - allocations_before;
    let running = engine.state.instances().count();
    let expected = if args.inflight > 1 {
        args.inflight as usize
    } else {
        0
    };
    if running != expected {
        bail!(
            "{running} instances were running at the end, not {expected}: the benchmark lost track of some"
        );
    }
    println!("machine: {}", crate::machine::describe());
    let variant = if args.feel {
        "with FEEL mappings and a condition"
    } else {
        "plain"
    };
    println!(
        "engine, one-task process ({variant}; create, activate, complete), one thread, {} in flight:",
        args.inflight
    );
    println!("  instances/s      {:>12.0}", instances as f64 / elapsed);
    println!("  commands/s       {:>12.0}", commands as f64 / elapsed);
    println!(
        "  allocations/inst {:>12.1}",
        allocations as f64 / instances as f64
    );
    println!("  instances        {instances:>12} in {elapsed:.1} s");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_fanout_round_ends_every_waiting_instance() {
        // The rounds check that every instance waited and then ended (else an error), over
        // the broadcast and the ContinueSignal it needs for the one past a command's limit.
        let waiting = ringflow_core::limits::SIGNAL_SUBSCRIPTIONS_PER_COMMAND_MAX as u32 + 1;
        signal_fanout(waiting).expect("fan-out");
    }

    #[test]
    fn a_compensation_fanout_round_runs_every_handler() {
        // The rounds check that every compensation was kept, then taken, and the instance
        // ended (else an error).
        // Past one command's limit, so that a ContinueCompensation runs too.
        let handlers = ringflow_core::limits::COMPENSATION_HANDLERS_PER_COMMAND_MAX as u32 + 1;
        compensation_fanout(handlers).expect("fan-out");
    }

    #[test]
    fn one_at_a_time_leaves_nothing_running() {
        let mut engine = Engine::warmed_up(ONE_TASK, Variables::new(), 1).expect("warm-up");
        let (instances, _) = engine.measure(Duration::from_millis(1)).expect("measure");
        assert!(instances >= 1_000 && instances % 1_000 == 0, "{instances}");
        assert_eq!(engine.state.instances().count(), 0);
        assert!(engine.activated.is_empty());
    }

    #[test]
    fn in_flight_keeps_half_ready_and_half_activated() {
        let mut engine = Engine::warmed_up(ONE_TASK, Variables::new(), 64).expect("warm-up");
        let commands = engine.commands;
        let (instances, _) = engine.measure(Duration::from_millis(1)).expect("measure");
        assert!(instances >= 1_000 && instances % 1_000 == 0, "{instances}");
        // Three commands a step: create, activate, complete.
        assert_eq!(engine.commands - commands, 3 * instances);
        assert_eq!(engine.state.instances().count(), 64);
        assert_eq!(engine.activated.len(), 32);
        // The held jobs are the 32 activated most recently, oldest first.
        assert!(
            engine
                .activated
                .iter()
                .zip(engine.activated.iter().skip(1))
                .all(|(a, b)| a < b)
        );
    }
}
