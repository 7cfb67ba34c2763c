//! `ringflow-bench engine`: the deterministic engine alone, no I/O, on one core.
//!
//! Runs the one-task process (start, service task, end) the way a shard would drive it:
//! CreateInstance, ActivateJobs (one job), CompleteJob, i.e. three commands per instance,
//! with contexts made like the shard makes them. Counts heap allocations with a counting
//! global allocator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ringflow_core::{Command, Ctx, Key, ProcessRef, Resource, Response, State, Variables, process};

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
}

impl Engine {
    fn run(&mut self, command: Command) -> anyhow::Result<Response> {
        let outcome = process(&mut self.state, command, &self.ctx)
            .map_err(|rejection| anyhow::anyhow!("{rejection}"))?;
        self.ctx.next_key = outcome.next_key;
        self.ctx.now_millis += 1;
        self.commands += 1;
        Ok(outcome.response)
    }

    fn one_instance(&mut self) -> anyhow::Result<()> {
        self.run(Command::CreateInstance {
            process: ProcessRef::Latest("one-task".to_string()),
            variables: self.variables.clone(),
            business_key: None,
            await_result: false,
        })?;
        let Response::JobsActivated(jobs) = self.run(Command::ActivateJobs {
            job_type: "work".to_string(),
            worker: "bench".to_string(),
            max_jobs: 1,
            lease_millis: 60_000,
        })?
        else {
            bail!("ActivateJobs did not answer with jobs");
        };
        let job = jobs.first().context("no job was ready")?;
        self.run(Command::CompleteJob {
            key: job.key,
            variables: Variables::new(),
        })?;
        Ok(())
    }
}

impl Engine {
    /// An engine with `model` deployed and warmed up by 10,000 instances.
    fn warmed_up(model: &str, variables: Variables) -> anyhow::Result<Engine> {
        let mut engine = Engine {
            state: State::new(0),
            ctx: Ctx {
                now_millis: 1_700_000_000_000,
                next_key: Key::first(0),
            },
            commands: 0,
            variables,
        };
        engine.run(Command::Deploy {
            resources: vec![Resource {
                name: "one-task.bpmn".to_string(),
                content: Arc::from(model.as_bytes()),
            }],
        })?;
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

/// The engine's pace on the calling thread's CPU: one-task instances per second over
/// `duration` (after a warm-up of 10,000), plain model. `ringflow-bench run` takes it on the
/// server's CPU before and after a measurement, to flag a machine whose CPU changed speed
/// during the run.
pub fn pace(duration: Duration) -> anyhow::Result<f64> {
    let (instances, elapsed) = Engine::warmed_up(ONE_TASK, Variables::new())?.measure(duration)?;
    Ok(instances as f64 / elapsed)
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (model, variables) = if args.feel {
        (
            FEEL_TASK,
            serde_json::from_str(r#"{"order": {"total": 10}}"#)?,
        )
    } else {
        (ONE_TASK, Variables::new())
    };
    let mut engine = Engine::warmed_up(model, variables)?;
    let commands_before = engine.commands;
    let allocations_before = alloc_counter::allocations();
    let (instances, elapsed) = engine.measure(Duration::from_secs(args.seconds))?;
    let commands = engine.commands - commands_before;
    let allocations = alloc_counter::allocations() - allocations_before;
    if engine.state.instances().count() != 0 {
        bail!("instances were left running: the benchmark did not complete them");
    }
    println!("machine: {}", crate::machine::describe());
    let variant = if args.feel {
        "with FEEL mappings and a condition"
    } else {
        "plain"
    };
    println!("engine, one-task process ({variant}; create, activate, complete), one thread:");
    println!("  instances/s      {:>12.0}", instances as f64 / elapsed);
    println!("  commands/s       {:>12.0}", commands as f64 / elapsed);
    println!(
        "  allocations/inst {:>12.1}",
        allocations as f64 / instances as f64
    );
    println!("  instances        {instances:>12} in {elapsed:.1} s");
    Ok(())
}
