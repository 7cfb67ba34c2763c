//! The client subcommands: `topology`, `deploy`, `create`, `cancel`, `publish`, `jobs ...`,
//! `worker`, `set-variables`, `incidents resolve`. Each connects with the wire client, prints
//! one readable result (or JSON with `--json`), and on an error prints one line and exits 1.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use ringflow_wire::client::{
    Client, ClientConfig, ConnectionEvent, DEFAULT_ADDR, JobOutcome, JobWorker,
};
use ringflow_wire::{
    ActivateJobs, CreateInstance, Job, PublishMessage, Request, Resource, TaskListenerDecision,
    UserTaskChanges,
};
use serde_json::{Value, json};

/// Where the server is and how to print.
#[derive(Debug, clap::Args)]
pub struct Conn {
    /// Any shard's address of any node (the client learns the rest).
    #[arg(long, default_value = DEFAULT_ADDR, global = true)]
    addr: String,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
}

impl Conn {
    fn client(&self) -> anyhow::Result<Client> {
        Client::connect(&self.addr)
            .with_context(|| format!("cannot reach ringflow at {}", self.addr))
    }

    fn print(&self, value: Value, human: impl FnOnce() -> String) {
        if self.json {
            out!("{value}");
        } else {
            out!("{}", human());
        }
    }
}

/// `text` if it is a JSON object; `@FILE` reads the object from FILE (sized first: a file
/// over VARIABLE_DOCUMENT_BYTES_MAX is refused without being read).
fn check_json_object(text: &str, what: &str) -> anyhow::Result<String> {
    let read;
    let text = match text.strip_prefix('@') {
        Some(path) => {
            let max = ringflow_core::limits::VARIABLE_DOCUMENT_BYTES_MAX;
            let size = std::fs::metadata(path)
                .with_context(|| format!("{what} @{path}: cannot read it"))?
                .len();
            if size > max as u64 {
                bail!(
                    "{what} @{path}: {size} bytes, over VARIABLE_DOCUMENT_BYTES_MAX ({max} bytes)"
                );
            }
            read = std::fs::read_to_string(path)
                .with_context(|| format!("{what} @{path}: cannot read it"))?;
            read.as_str()
        }
        None => text,
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(_)) => Ok(text.to_string()),
        Ok(_) => bail!("{what} must be a JSON object, like '{{\"amount\": 5}}'"),
        Err(error) => bail!("{what} is not valid JSON: {error}"),
    }
}

fn vars(text: &Option<String>) -> anyhow::Result<String> {
    match text {
        Some(text) => check_json_object(text, "--vars"),
        None => Ok(String::new()),
    }
}

/// Parses a duration like `500ms`, `30s`, `1m`, `2h`, `1d`, or a number of milliseconds.
pub fn parse_millis(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 30s, 1m, 2h"))?;
    let factor = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h, d)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too long"))
}

fn job_json(job: &Job) -> Value {
    let variables: Value = serde_json::from_str(&job.variables).unwrap_or(Value::Null);
    let headers: serde_json::Map<String, Value> = job
        .custom_headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "key": job.key,
        "type": &*job.job_type,
        "processInstanceKey": job.process_instance_key,
        "bpmnProcessId": &*job.bpmn_process_id,
        "elementId": &*job.element_id,
        "elementInstanceKey": job.element_instance_key,
        "retries": job.retries,
        "deadline": job.deadline_ms,
        "customHeaders": headers,
        "variables": variables,
    })
}

/// `ringflow topology`.
#[derive(Debug, clap::Args)]
pub struct TopologyArgs {
    #[command(flatten)]
    conn: Conn,
}

/// `ringflow topology`: the nodes, their shards and addresses.
pub fn topology(args: &TopologyArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let topology = client.topology();
    let nodes: Vec<Value> = topology
        .nodes
        .iter()
        .map(|node| {
            json!({
                "id": node.id,
                "host": node.host,
                "basePort": node.base_port,
                "firstShard": node.first_shard,
                "shards": node.shard_count,
            })
        })
        .collect();
    let value =
        json!({"version": topology.version, "shards": topology.shard_count(), "nodes": nodes});
    args.conn.print(value, || {
        let mut text = format!(
            "{} shards on {} nodes (topology version {:#x})",
            topology.shard_count(),
            topology.nodes.len(),
            topology.version
        );
        for node in &topology.nodes {
            let last = node.first_shard + node.shard_count - 1;
            let last_port = u32::from(node.base_port) + u32::from(node.shard_count) - 1;
            text.push_str(&format!(
                "\nnode {}: shards {}..={} on {}..={}",
                node.id,
                node.first_shard,
                last,
                crate::server::ports::shown(&node.host, node.base_port),
                last_port
            ));
        }
        text
    });
    Ok(ExitCode::SUCCESS)
}

/// `ringflow deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// BPMN files (and DMN files, named *.dmn) to deploy together, all or none.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    conn: Conn,
}

/// `ringflow deploy FILE...`: deploys to every shard.
pub fn deploy(args: &DeployArgs) -> anyhow::Result<ExitCode> {
    let mut resources = Vec::with_capacity(args.files.len());
    let max = ringflow_core::limits::DEPLOYMENT_BYTES_MAX;
    let mut total = 0u64;
    for file in &args.files {
        // Sized before it is read: a file over the limit is named, not loaded and sent.
        let size = std::fs::metadata(file)
            .with_context(|| format!("cannot read {}", file.display()))?
            .len();
        total = total.saturating_add(size);
        if total > max as u64 {
            anyhow::bail!(
                "{} ({size} bytes) takes the deployment past DEPLOYMENT_BYTES_MAX ({max} \
                 bytes, 32 MiB, for all its files together)",
                file.display()
            );
        }
        let content =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        resources.push(Resource { name, content });
    }
    let mut client = args.conn.client()?;
    let deployed = client.deploy(resources)?;
    let processes: Vec<Value> = deployed
        .processes
        .iter()
        .map(|p| {
            json!({
                "bpmnProcessId": p.bpmn_process_id,
                "version": p.version,
                "processDefinitionKey": p.process_definition_key,
                "resourceName": p.resource_name,
                "duplicate": p.duplicate,
            })
        })
        .collect();
    let decisions: Vec<Value> = deployed
        .decisions
        .iter()
        .map(|d| {
            json!({
                "decisionId": d.decision_id,
                "name": d.name,
                "version": d.version,
                "decisionKey": d.decision_key,
                "resourceName": d.resource_name,
                "duplicate": d.duplicate,
            })
        })
        .collect();
    let value = json!({
        "deploymentKey": deployed.deployment_key,
        "processes": processes,
        "decisions": decisions,
    });
    args.conn.print(value, || {
        let shards = client.topology().shard_count();
        let processes = deployed.processes.iter().map(|p| {
            let note = if p.duplicate { " (unchanged)" } else { "" };
            format!(
                "deployed {} version {}{note} from {} to {shards} shards",
                p.bpmn_process_id, p.version, p.resource_name,
            )
        });
        let decisions = deployed.decisions.iter().map(|d| {
            let note = if d.duplicate { " (unchanged)" } else { "" };
            format!(
                "deployed decision {} version {}{note} from {} to {shards} shards",
                d.decision_id, d.version, d.resource_name,
            )
        });
        processes.chain(decisions).collect::<Vec<_>>().join("\n")
    });
    Ok(ExitCode::SUCCESS)
}

/// `ringflow create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The BPMN process id; its latest version starts.
    process_id: String,
    /// Variables, as a JSON object, or @FILE to read them from a file.
    #[arg(long)]
    vars: Option<String>,
    /// A business key: the instance goes to this key's shard.
    #[arg(long)]
    key: Option<String>,
    /// Wait for the instance to complete and print its variables.
    #[arg(long)]
    with_result: bool,
    /// How long --with-result waits (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = parse_millis)]
    timeout: u64,
    #[command(flatten)]
    conn: Conn,
}

/// `ringflow create PROCESS_ID`.
pub fn create(args: &CreateArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.conn.client()?;
    let create = CreateInstance {
        bpmn_process_id: args.process_id.clone(),
        variables: vars(&args.vars)?,
        business_key: args.key.clone().unwrap_or_default(),
        await_timeout_ms: u32::try_from(args.timeout).context("--timeout is too long")?,
        ..CreateInstance::default()
    };
    if args.with_result {
        let result = client.create_instance_with_result(create)?;
        let variables: Value = serde_json::from_str(&result.variables).unwrap_or(Value::Null);
        let created = &result.created;
        let value = json!({
            "processInstanceKey": created.process_instance_key,
            "bpmnProcessId": &*created.bpmn_process_id,
            "version": created.version,
            "variables": variables,
        });
        args.conn.print(value, || {
            format!(
                "instance {} of {} version {} completed with {}",
                created.process_instance_key,
                created.bpmn_process_id,
                created.version,
                result.variables
            )
        });
    } else {
        let created = client.create_instance(create)?;
        let value = json!({
            "processInstanceKey": created.process_instance_key,
            "processDefinitionKey": created.process_definition_key,
            "bpmnProcessId": &*created.bpmn_process_id,
            "version": created.version,
        });
        args.conn.print(value, || {
            format!(
                "created instance {} of {} version {}",
                created.process_instance_key, created.bpmn_process_id, created.version
            )
        });
    }
    Ok(ExitCode::SUCCESS)
}

/// A command on one key.
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    /// The key.
    key: u64,
    #[command(flatten)]
    conn: Conn,
}

fn done(conn: &Conn, request: Request, what: &str) -> anyhow::Result<ExitCode> {
    let mut client = conn.client()?;
    let (key, incident_key) = match client.request(&request)? {
        ringflow_wire::Response::Done { key, incident_key } => (key, incident_key),
        other => bail!("unexpected answer to {}: {other:?}", request.name()),
    };
    if incident_key == 0 {
        conn.print(json!({"key": key}), || format!("{what} {key}"));
    } else {
        conn.print(json!({"key": key, "incidentKey": incident_key}), || {
            format!("{what} {key}; incident {incident_key} raised")
        });
    }
    Ok(ExitCode::SUCCESS)
}

/// `ringflow cancel KEY`.
pub fn cancel(args: &KeyArgs) -> anyhow::Result<ExitCode> {
    let request = Request::CancelInstance {
        process_instance_key: args.key,
    };
    done(&args.conn, request, "canceled instance")
}

/// `ringflow incidents resolve KEY`.
pub fn resolve(args: &KeyArgs) -> anyhow::Result<ExitCode> {
    let request = Request::ResolveIncident {
        incident_key: args.key,
    };
    done(&args.conn, request, "resolved incident")
}

/// `ringflow publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The message name.
    name: String,
    /// The correlation key: the message goes to this key's shard.
    #[arg(long)]
    correlation_key: String,
    /// Variables, as a JSON object, or @FILE to read them from a file.
    #[arg(long)]
    vars: Option<String>,
    /// How long the message waits for a subscription (e.g. 1m).
    #[arg(long, default_value = "0ms", value_parser = parse_millis)]
    ttl: u64,
    /// Deduplicates the message while it lives.
    #[arg(long)]
    message_id: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

/// `ringflow publish NAME --correlation-key K`.
pub fn publish(args: &PublishArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.conn.client()?;
    let key = client.publish_message(PublishMessage {
        name: args.name.clone(),
        correlation_key: args.correlation_key.clone(),
        variables: vars(&args.vars)?,
        ttl_ms: args.ttl,
        message_id: args.message_id.clone().unwrap_or_default(),
    })?;
    args.conn
        .print(json!({"key": key}), || format!("published message {key}"));
    Ok(ExitCode::SUCCESS)
}

/// `ringflow signal`.
#[derive(Debug, clap::Args)]
pub struct SignalArgs {
    /// The signal name.
    name: String,
    /// Variables, as a JSON object (or @FILE): they go to every event the signal reaches.
    #[arg(long)]
    vars: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

/// `ringflow signal NAME`.
pub fn signal(args: &SignalArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.conn.client()?;
    let key = client.broadcast_signal(&args.name, &vars(&args.vars)?)?;
    args.conn
        .print(json!({"key": key}), || format!("broadcast signal {key}"));
    Ok(ExitCode::SUCCESS)
}

/// `ringflow evaluate-conditional`.
#[derive(Debug, clap::Args)]
pub struct EvaluateConditionalArgs {
    /// Variables, as a JSON object (or @FILE): the conditions read them, and each instance
    /// started gets them.
    #[arg(long)]
    vars: Option<String>,
    /// Only this BPMN process id (else every process with a conditional start event).
    #[arg(long)]
    process: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

/// `ringflow evaluate-conditional [--vars JSON] [--process ID]`.
pub fn evaluate_conditional(args: &EvaluateConditionalArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.conn.client()?;
    let started = client.evaluate_conditional(
        args.process.as_deref().unwrap_or_default(),
        &vars(&args.vars)?,
    )?;
    let listed: Vec<serde_json::Value> = started
        .iter()
        .map(|one| {
            json!({
                "process_instance_key": one.created.process_instance_key,
                "bpmn_process_id": &*one.created.bpmn_process_id,
                "version": one.created.version,
                "start_event_id": one.start_event_id,
            })
        })
        .collect();
    args.conn.print(json!({ "started": listed }), || {
        if started.is_empty() {
            return "no condition held; nothing started".to_string();
        }
        started
            .iter()
            .map(|one| {
                format!(
                    "started instance {} of {} version {} at {}",
                    one.created.process_instance_key,
                    one.created.bpmn_process_id,
                    one.created.version,
                    one.start_event_id
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(ExitCode::SUCCESS)
}

/// `ringflow set-variables`.
#[derive(Debug, clap::Args)]
pub struct SetVariablesArgs {
    /// The scope: a process instance key or an element instance key.
    key: u64,
    /// Variables, as a JSON object, or @FILE to read them from a file.
    #[arg(long)]
    vars: String,
    /// Only in this scope (else they propagate to where they are defined).
    #[arg(long)]
    local: bool,
    #[command(flatten)]
    conn: Conn,
}

/// `ringflow set-variables KEY --vars JSON`.
pub fn set_variables(args: &SetVariablesArgs) -> anyhow::Result<ExitCode> {
    let request = Request::SetVariables {
        scope_key: args.key,
        variables: check_json_object(&args.vars, "--vars")?,
        local: args.local,
    };
    done(&args.conn, request, "set variables in scope")
}

/// `ringflow activate-ad-hoc`.
#[derive(Debug, clap::Args)]
pub struct ActivateAdHocArgs {
    /// The ad-hoc subprocess's element instance key (`ringflow instance` shows it).
    key: u64,
    /// An element to activate: its BPMN id, or ID=JSON with variables (a JSON object) for
    /// its inner instance. Repeat for more; each id at most once.
    #[arg(long = "element", value_name = "ID[=JSON]", required = true)]
    elements: Vec<String>,
    /// Terminate the inner instances still running first.
    #[arg(long)]
    cancel_remaining: bool,
    #[command(flatten)]
    conn: Conn,
}

/// `ID` or `ID=JSON` arguments: (element id, variables text).
fn element_list(arguments: &[String], option: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut elements = Vec::new();
    for element in arguments {
        let (id, variables) = match element.split_once('=') {
            Some((id, json)) => (id, check_json_object(json, &format!("{option} {id}"))?),
            None => (element.as_str(), String::new()),
        };
        if id.trim().is_empty() {
            bail!("{option} {element:?} names no element id");
        }
        elements.push((id.to_string(), variables));
    }
    Ok(elements)
}

/// `ringflow activate-ad-hoc KEY --element ID[=JSON]...`.
pub fn activate_ad_hoc(args: &ActivateAdHocArgs) -> anyhow::Result<ExitCode> {
    let elements = element_list(&args.elements, "--element")?;
    let request = Request::ActivateAdHocActivities {
        ad_hoc_key: args.key,
        elements,
        cancel_remaining_instances: args.cancel_remaining,
    };
    done(
        &args.conn,
        request,
        "activated elements in ad-hoc subprocess",
    )
}

/// `ringflow jobs ...`.
#[derive(Debug, clap::Subcommand)]
pub enum JobsCommand {
    /// Take up to --max ready jobs of a type and print them.
    Activate(ActivateArgs),
    /// Complete a job.
    Complete(CompleteArgs),
    /// Fail a job: with retries left it is tried again, with none it becomes an incident.
    Fail(FailArgs),
    /// Throw a BPMN error from a job.
    ThrowError(ThrowErrorArgs),
    /// Set a job's retries (before resolving its incident).
    UpdateRetries(RetriesArgs),
    /// Assign a user task (by its job key) to a user, or unassign it.
    Assign(AssignArgs),
    /// Change a user task's candidates, dates or priority (by its job key).
    Update(UpdateArgs),
}

/// `ringflow jobs update`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("changes").required(true).multiple(true)))]
pub struct UpdateArgs {
    /// The user task's job key (`ringflow user-tasks` lists them).
    key: u64,
    /// The candidate groups (comma-separated; "" clears them).
    #[arg(long, value_name = "A,B", group = "changes")]
    candidate_groups: Option<String>,
    /// The candidate users (comma-separated; "" clears them).
    #[arg(long, value_name = "A,B", group = "changes")]
    candidate_users: Option<String>,
    /// The due date (ISO 8601 with a zone; "" clears it).
    #[arg(long, value_name = "DATE-TIME", group = "changes")]
    due_date: Option<String>,
    /// The follow-up date (ISO 8601 with a zone; "" clears it).
    #[arg(long, value_name = "DATE-TIME", group = "changes")]
    follow_up_date: Option<String>,
    /// The priority (0 to 100).
    #[arg(long, value_name = "N", group = "changes")]
    priority: Option<u8>,
    #[command(flatten)]
    conn: Conn,
}

/// `ringflow jobs assign`.
#[derive(Debug, clap::Args)]
pub struct AssignArgs {
    /// The user task's job key (`ringflow user-tasks` lists them).
    key: u64,
    /// The user to assign it to.
    #[arg(
        long,
        required_unless_present = "unassign",
        conflicts_with = "unassign"
    )]
    assignee: Option<String>,
    /// Take the assignee away.
    #[arg(long)]
    unassign: bool,
    #[command(flatten)]
    conn: Conn,
}

/// `ringflow jobs activate`.
#[derive(Debug, clap::Args)]
pub struct ActivateArgs {
    /// The job type.
    job_type: String,
    /// At most this many jobs.
    #[arg(long, default_value_t = 10)]
    max: u32,
    /// How long the jobs are yours (e.g. 5m).
    #[arg(long, default_value = "5m", value_parser = parse_millis)]
    lease: u64,
    /// Wait this long for a job when none is ready (e.g. 10s).
    #[arg(long, default_value = "0ms", value_parser = parse_millis)]
    wait: u64,
    /// The worker name kept with the jobs.
    #[arg(long, default_value = "ringflow-cli")]
    worker: String,
    /// Only these variables in each job (comma separated; default: all).
    #[arg(long, value_delimiter = ',')]
    fetch: Vec<String>,
    #[command(flatten)]
    conn: Conn,
}

/// `ringflow jobs complete`.
#[derive(Debug, clap::Args)]
pub struct CompleteArgs {
    /// The job key.
    key: u64,
    /// Variables, as a JSON object, or @FILE to read them from a file.
    #[arg(long)]
    vars: Option<String>,
    /// For the job of an ad-hoc subprocess's worker: an element to activate, by BPMN id, or
    /// ID=JSON with variables for its activation. Repeat for more (an id may repeat).
    #[arg(long = "activate", value_name = "ID[=JSON]")]
    activate: Vec<String>,
    /// For the job of an ad-hoc subprocess's worker: the subprocess is done (it completes
    /// once nothing runs in it).
    #[arg(long, conflicts_with = "activate")]
    done: bool,
    /// For the job of an ad-hoc subprocess's worker: terminate the activations that run.
    #[arg(long)]
    cancel_remaining: bool,
    /// For the job of a user task's completing, assigning or updating listener: refuse the
    /// task's completion (the task gets a new job, with the reason as its
    /// `ringflow:deniedReason` header), assignment or update (its job comes back as it was).
    #[arg(long, conflicts_with_all = ["vars", "activate", "done", "cancel_remaining"])]
    deny: bool,
    /// Why the completion is denied (with --deny).
    #[arg(long, requires = "deny", value_name = "TEXT")]
    deny_reason: Option<String>,
    /// For the job of a user task's task listener: correct the task's assignee ("" clears it).
    #[arg(long, value_name = "USER", conflicts_with = "deny")]
    assignee: Option<String>,
    /// Task listener: correct the candidate groups (comma-separated; "" clears them).
    #[arg(long, value_name = "A,B", conflicts_with = "deny")]
    candidate_groups: Option<String>,
    /// Task listener: correct the candidate users (comma-separated; "" clears them).
    #[arg(long, value_name = "A,B", conflicts_with = "deny")]
    candidate_users: Option<String>,
    /// Task listener: correct the due date (ISO 8601 with a zone; "" clears it).
    #[arg(long, value_name = "DATE-TIME", conflicts_with = "deny")]
    due_date: Option<String>,
    /// Task listener: correct the follow-up date (ISO 8601 with a zone; "" clears it).
    #[arg(long, value_name = "DATE-TIME", conflicts_with = "deny")]
    follow_up_date: Option<String>,
    /// Task listener: correct the priority (0 to 100).
    #[arg(long, value_name = "N", conflicts_with = "deny")]
    priority: Option<u8>,
    #[command(flatten)]
    conn: Conn,
}

impl CompleteArgs {
    /// The task listener's decision, when any task listener option is given.
    fn task_listener_decision(&self) -> Option<TaskListenerDecision> {
        let decision = TaskListenerDecision {
            denied: self.deny,
            denied_reason: self.deny_reason.clone().unwrap_or_default(),
            assignee: self.assignee.clone(),
            candidate_groups: comma_list(&self.candidate_groups),
            candidate_users: comma_list(&self.candidate_users),
            due_date: self.due_date.clone(),
            follow_up_date: self.follow_up_date.clone(),
            priority: self.priority,
        };
        (decision != TaskListenerDecision::default()).then_some(decision)
    }
}

/// A comma-separated list option, its items trimmed; "" is the empty list.
fn comma_list(text: &Option<String>) -> Option<Vec<String>> {
    text.as_ref().map(|text| {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(String::from)
            .collect()
    })
}

/// `ringflow jobs fail`.
#[derive(Debug, clap::Args)]
pub struct FailArgs {
    /// The job key.
    key: u64,
    /// Tries left after this failure.
    #[arg(long)]
    retries: u32,
    /// What went wrong.
    #[arg(long, default_value = "")]
    message: String,
    /// Wait this long before the next try (e.g. 10s).
    #[arg(long, default_value = "0ms", value_parser = parse_millis)]
    backoff: u64,
    #[command(flatten)]
    conn: Conn,
}

/// `ringflow jobs throw-error`.
#[derive(Debug, clap::Args)]
pub struct ThrowErrorArgs {
    /// The job key.
    key: u64,
    /// The BPMN error code.
    #[arg(long)]
    code: String,
    /// What happened.
    #[arg(long, default_value = "")]
    message: String,
    #[command(flatten)]
    conn: Conn,
}

/// `ringflow jobs update-retries`.
#[derive(Debug, clap::Args)]
pub struct RetriesArgs {
    /// The job key.
    key: u64,
    /// The new retries.
    #[arg(long)]
    retries: u32,
    #[command(flatten)]
    conn: Conn,
}

/// `ringflow jobs ...`.
pub fn jobs(command: &JobsCommand) -> anyhow::Result<ExitCode> {
    match command {
        JobsCommand::Activate(args) => {
            let mut client = args.conn.client()?;
            let jobs = client.activate_jobs(ActivateJobs {
                job_type: args.job_type.clone(),
                worker: args.worker.clone(),
                max_jobs: args.max,
                lease_ms: args.lease,
                long_poll_ms: u32::try_from(args.wait).context("--wait is too long")?,
                fetch_variables: args.fetch.clone(),
            })?;
            let list: Vec<Value> = jobs.iter().map(job_json).collect();
            args.conn.print(json!({"jobs": list}), || {
                if jobs.is_empty() {
                    return format!("no {} jobs ready", args.job_type);
                }
                let lines: Vec<String> = jobs
                    .iter()
                    .map(|job| {
                        format!(
                            "job {} ({} at {} in instance {}, {} retries) variables {}",
                            job.key,
                            job.job_type,
                            job.element_id,
                            job.process_instance_key,
                            job.retries,
                            job.variables
                        )
                    })
                    .collect();
                lines.join("\n")
            });
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Complete(args) => {
            let request = if let Some(decision) = args.task_listener_decision() {
                if args.vars.is_some() || !args.activate.is_empty() || args.done {
                    anyhow::bail!(
                        "task listener options (--deny, --assignee, ...) go without --vars, \
                         --activate and --done: a task listener's job takes no variables"
                    );
                }
                Request::CompleteTaskListenerJob {
                    job_key: args.key,
                    decision: Box::new(decision),
                }
            } else if args.activate.is_empty() && !args.done && !args.cancel_remaining {
                Request::CompleteJob {
                    job_key: args.key,
                    variables: vars(&args.vars)?,
                }
            } else {
                Request::CompleteAdHocJob {
                    job_key: args.key,
                    variables: vars(&args.vars)?,
                    activate_elements: element_list(&args.activate, "--activate")?,
                    completion_condition_fulfilled: args.done,
                    cancel_remaining_instances: args.cancel_remaining,
                }
            };
            done(&args.conn, request, "completed job")
        }
        JobsCommand::Fail(args) => {
            let request = Request::FailJob {
                job_key: args.key,
                retries: args.retries,
                retry_backoff_ms: args.backoff,
                message: args.message.clone(),
            };
            done(&args.conn, request, "failed job")
        }
        JobsCommand::ThrowError(args) => {
            let request = Request::ThrowError {
                job_key: args.key,
                error_code: args.code.clone(),
                message: args.message.clone(),
            };
            done(&args.conn, request, "threw an error from job")
        }
        JobsCommand::Update(args) => {
            let request = Request::UpdateUserTask {
                job_key: args.key,
                changes: Box::new(UserTaskChanges {
                    candidate_groups: comma_list(&args.candidate_groups),
                    candidate_users: comma_list(&args.candidate_users),
                    due_date: args.due_date.clone(),
                    follow_up_date: args.follow_up_date.clone(),
                    priority: args.priority,
                }),
            };
            done(&args.conn, request, "updated the user task of job")
        }
        JobsCommand::Assign(args) => {
            let request = Request::AssignUserTask {
                job_key: args.key,
                assignee: args.assignee.clone().unwrap_or_default(),
            };
            if args.assignee.as_deref() == Some("") {
                anyhow::bail!("--assignee is empty: use --unassign to take the assignee away");
            }
            done(&args.conn, request, "assigned the user task of job")
        }
        JobsCommand::UpdateRetries(args) => {
            let request = Request::UpdateJobRetries {
                job_key: args.key,
                retries: args.retries,
            };
            done(&args.conn, request, "updated retries of job")
        }
    }
}

/// `ringflow incidents ...`.
#[derive(Debug, clap::Subcommand)]
pub enum IncidentsCommand {
    /// Retry what an incident stopped.
    Resolve(KeyArgs),
}

/// `ringflow worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The job type to work on.
    job_type: String,
    /// Run this shell command per job: the job's variables arrive as JSON on its stdin; a
    /// JSON object on its stdout becomes the completion's variables; a nonzero exit fails
    /// the job (one retry fewer) with its stderr as the message. A command still running at
    /// 90% of --lease, or when the worker is stopped (SIGINT, SIGTERM, SIGHUP), is killed
    /// with its process group and the job failed. Without --exec, every job is completed
    /// with no variables.
    #[arg(long)]
    exec: Option<String>,
    /// Jobs pushed ahead per shard.
    #[arg(long, default_value_t = 32)]
    credits: u32,
    /// How long a job is the worker's before it is handed to another (e.g. 5m).
    #[arg(long, default_value = "5m", value_parser = parse_millis)]
    lease: u64,
    /// Stop after this many jobs (default: run until interrupted).
    #[arg(long)]
    count: Option<u64>,
    /// Only these variables in each job (comma separated; default: all).
    #[arg(long, value_delimiter = ',')]
    fetch: Vec<String>,
    #[command(flatten)]
    conn: Conn,
}

/// How often a running job command checks whether the worker was told to stop.
pub const EXEC_STOP_CHECK: Duration = Duration::from_millis(50);

/// Runs a job's `--exec` command. It runs in a process group of its own, and at most for
/// `limit` (90% of the worker's lease: after the lease the job is another worker's): then
/// the group is killed and the job failed, saying so, so that one command that hangs does
/// not stop the worker. Its input is written from a thread, so a command that never reads
/// a large input does not block the worker either.
fn run_exec(command: &str, job: &Job, limit: Duration, stop: &AtomicBool) -> JobOutcome {
    let fail = |message: String| JobOutcome::Fail {
        message,
        retry_backoff_ms: 0,
    };
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("RINGFLOW_JOB_KEY", job.key.to_string())
        .env("RINGFLOW_JOB_TYPE", &*job.job_type)
        .env(
            "RINGFLOW_PROCESS_INSTANCE_KEY",
            job.process_instance_key.to_string(),
        )
        .env("RINGFLOW_ELEMENT_ID", &*job.element_id)
        .env("RINGFLOW_RETRIES", job.retries.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => return fail(format!("cannot run {command:?}: {error}")),
    };
    let group = child.id() as i32;
    if let Some(mut stdin) = child.stdin.take() {
        let variables = job.variables.clone();
        // A command that does not read its input is fine (the write fails or is dropped).
        std::thread::spawn(move || {
            let _ = stdin.write_all(variables.as_bytes());
        });
    }
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let started = std::time::Instant::now();
    let output = loop {
        // Its own group does not get the terminal's Ctrl-C: the worker's stop is checked
        // every EXEC_STOP_CHECK and ends the command as the signal did before.
        let stopping = stop.load(Ordering::Relaxed);
        let why = if stopping {
            "the worker was stopped while it ran"
        } else if started.elapsed() >= limit {
            "it ran out of the job's lease"
        } else {
            match finished.recv_timeout(EXEC_STOP_CHECK.min(limit - started.elapsed())) {
                Ok(Ok(output)) => break output,
                Ok(Err(error)) => return fail(format!("{command:?} failed: {error}")),
                Err(_) => continue,
            }
        };
        // SAFETY: kill(2) of the command's own process group, made for it above. (The
        // waiting thread ends when the group's pipes close.)
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        return fail(format!(
            "{command:?} was killed: {why} ({} ms given, 90% of the lease; {} ms in)",
            limit.as_millis(),
            started.elapsed().as_millis()
        ));
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr
            .trim()
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return fail(format!("{command:?} exited with {}: {tail}", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stdout = stdout.trim();
    if stdout.is_empty() {
        return JobOutcome::Complete {
            variables: String::new(),
        };
    }
    match serde_json::from_str::<Value>(stdout) {
        Ok(Value::Object(_)) => JobOutcome::Complete {
            variables: stdout.to_string(),
        },
        _ => fail(format!(
            "{command:?} printed something that is not a JSON object: {stdout:.200}"
        )),
    }
}

/// `ringflow worker TYPE [--exec CMD]`.
pub fn worker(args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let mut worker = JobWorker::new(&args.job_type);
    worker.credits = args.credits;
    worker.lease_ms = args.lease;
    worker.fetch_variables = args.fetch.clone();
    // A server restarted (an upgrade, a crash) or a network failure does not end the worker:
    // it subscribes again, saying so.
    worker.reconnect = true;
    worker.on_connection = Some(Arc::new(|event| match event {
        ConnectionEvent::Lost { addr, error } => {
            say!("ringflow: lost {addr} ({error}); connecting again");
        }
        ConnectionEvent::Restored { addr, tries } => {
            say!("ringflow: {addr} back after {tries} attempt(s); working again");
        }
    }));
    // SIGHUP too: a terminal that closes would otherwise end the process with no
    // shutdown at all (the JVM engines treat it like SIGTERM as well).
    // A signal stops the worker and ends a running job command; reaching --count only
    // stops the worker (commands running on other shards' threads finish).
    let signalled = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        for flag in [&worker.stop, &signalled] {
            signal_hook::flag::register(signal, Arc::clone(flag))
                .context("cannot install the signal handlers")?;
        }
    }
    let handled = AtomicU64::new(0);
    let stop = worker.stop.clone();
    let json = args.conn.json;
    say!(
        "ringflow: working on {} jobs on {} shards",
        args.job_type,
        client.topology().shard_count()
    );
    worker.run(client.topology(), &ClientConfig::default(), |job| {
        let outcome = match &args.exec {
            Some(command) => {
                // 90% of the lease: the failure must reach the server while the job is
                // still this worker's.
                let limit = Duration::from_millis(args.lease - args.lease / 10);
                run_exec(command, job, limit, &signalled)
            }
            None => JobOutcome::Complete {
                variables: String::new(),
            },
        };
        let (verdict, message) = match &outcome {
            JobOutcome::Complete { .. } => ("completed", None),
            JobOutcome::Fail { message, .. } => ("failed", Some(message.as_str())),
            JobOutcome::ThrowError { .. } => ("threw an error", None),
        };
        if json {
            let mut line = json!({"key": job.key, "outcome": verdict, "job": job_json(job)});
            if let Some(message) = message {
                line["message"] = json!(message);
            }
            tell!("{line}");
        } else {
            tell!(
                "job {} ({} in instance {}): {verdict}{}",
                job.key,
                job.element_id,
                job.process_instance_key,
                message
                    .map(|message| format!(": {message}"))
                    .unwrap_or_default()
            );
        }
        let count = handled.fetch_add(1, Ordering::Relaxed) + 1;
        if args.count.is_some_and(|max| count >= max) {
            stop.store(true, Ordering::Relaxed);
        }
        outcome
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_millis;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_millis("500ms"), Ok(500));
        assert_eq!(parse_millis("30s"), Ok(30_000));
        assert_eq!(parse_millis("1m"), Ok(60_000));
        assert_eq!(parse_millis("2h"), Ok(7_200_000));
        assert_eq!(parse_millis("250"), Ok(250));
        assert!(parse_millis("1y").unwrap_err().contains("unknown unit"));
        assert!(parse_millis("soon").is_err());
    }
}
