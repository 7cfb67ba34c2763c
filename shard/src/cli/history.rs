//! `ringflow instances` and `ringflow instance KEY`: reading history from the cold store.
//!
//! They read the store directly (no server needed): by default the data directory's SQLite
//! store (a file per shard in `DATA/cold/`, or `DATA/cold.db` where an earlier ringflow made
//! it), or the store given with `--cold-store`. SQLite files are opened read-only, so they
//! are safe beside a running server. What they show trails the engine by the exporter's lag.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ringflow_core::Key;

use crate::cold::Target;
use crate::cold::query::{self, INSTANCES_LIMIT_DEFAULT, StateFilter, Store};

/// Where to read.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// The server's data directory (its cold store: a file per shard in DATA/cold/, or
    /// DATA/cold.db where an earlier ringflow made it).
    #[arg(long, default_value = "ringflow-data")]
    data: PathBuf,
    /// The cold store, as given to `serve --cold-store` (overrides --data).
    #[arg(long)]
    cold_store: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `ringflow instances`.
#[derive(Debug, clap::Args)]
pub struct InstancesArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only instances in this state: active, completed, terminated, or incident (active with
    /// an open incident).
    #[arg(long, value_parser = StateFilter::parse)]
    state: Option<StateFilter>,
    /// Only instances of this BPMN process id.
    #[arg(long)]
    process: Option<String>,
    /// At most this many, newest first (1 or more).
    #[arg(long, default_value_t = INSTANCES_LIMIT_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..))]
    limit: u64,
}

/// `ringflow user-tasks`.
#[derive(Debug, clap::Args)]
pub struct UserTasksArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only tasks assigned to this user.
    #[arg(long)]
    assignee: Option<String>,
    /// Only tasks this group is a candidate group of.
    #[arg(long)]
    group: Option<String>,
    /// Closed tasks too (completed, canceled, error thrown).
    #[arg(long)]
    all: bool,
    /// At most this many, newest first (1 or more).
    #[arg(long, default_value_t = INSTANCES_LIMIT_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..))]
    limit: u64,
}

/// `ringflow instance KEY`.
#[derive(Debug, clap::Args)]
pub struct InstanceArgs {
    /// The process instance key.
    key: u64,
    #[command(flatten)]
    store: StoreArgs,
}

fn open(store: &StoreArgs) -> anyhow::Result<Store> {
    let target = match store.cold_store.as_deref() {
        Some("none") => anyhow::bail!("--cold-store none: there is no history to read"),
        Some(text) => Target::parse(text).map_err(|e| anyhow::anyhow!("--cold-store: {e}"))?,
        None => crate::cold::default_target(&store.data),
    };
    Ok(Store::open_read_only(&target)?)
}

fn time(millis: Option<i64>) -> String {
    let Some(millis) = millis else {
        return "-".to_string();
    };
    let days = millis.div_euclid(86_400_000);
    let in_day = millis.rem_euclid(86_400_000);
    let (year, month, day) = ringflow_bpmn::timer::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

/// Runs `ringflow user-tasks`.
pub fn user_tasks(args: &UserTasksArgs) -> anyhow::Result<ExitCode> {
    let mut store = open(&args.store)?;
    let filter = query::UserTaskFilter {
        assignee: args.assignee.as_deref(),
        group: args.group.as_deref(),
        all: args.all,
    };
    let rows = store.user_tasks(filter, args.limit)?;
    if args.store.json {
        let list: Vec<serde_json::Value> = rows.iter().map(user_task_json).collect();
        out!("{}", serde_json::Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        out!("no user tasks match");
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{:<20} {:<20} {:<20} {:<20} {:<9} {:<16} {:<20} {:<26} {:>3}",
        "JOB",
        "INSTANCE",
        "PROCESS",
        "TASK",
        "STATE",
        "ASSIGNEE",
        "GROUPS",
        "DUE",
        "PRI"
    );
    for row in &rows {
        out!(
            "{:<20} {:<20} {:<20} {:<20} {:<9} {:<16} {:<20} {:<26} {:>3}",
            row.job_key.0,
            row.process_instance_key.0,
            row.bpmn_process_id,
            row.element_id,
            row.state,
            row.assignee.as_deref().unwrap_or("-"),
            if row.candidate_groups.is_empty() {
                "-".to_string()
            } else {
                row.candidate_groups.join(",")
            },
            row.due_date.as_deref().unwrap_or("-"),
            row.priority.map_or("-".to_string(), |p| p.to_string())
        );
    }
    if rows.len() as u64 == args.limit {
        out!("(the newest {}; --limit shows more)", args.limit);
    }
    Ok(ExitCode::SUCCESS)
}

fn user_task_json(row: &query::UserTaskRow) -> serde_json::Value {
    serde_json::json!({
        "jobKey": row.job_key.0,
        "processInstanceKey": row.process_instance_key.0,
        "bpmnProcessId": row.bpmn_process_id,
        "elementId": row.element_id,
        "state": row.state,
        "assignee": row.assignee,
        "candidateGroups": row.candidate_groups,
        "candidateUsers": row.candidate_users,
        "dueDate": row.due_date,
        "followUpDate": row.follow_up_date,
        "priority": row.priority,
        "formKey": row.form_key,
        "deniedReason": row.denied_reason,
        "created": time(Some(row.created_millis)),
    })
}

/// Runs `ringflow instances`.
pub fn instances(args: &InstancesArgs) -> anyhow::Result<ExitCode> {
    let mut store = open(&args.store)?;
    let rows = store.instances(args.state, args.process.as_deref(), args.limit)?;
    if args.store.json {
        let list: Vec<serde_json::Value> = rows.iter().map(instance_json).collect();
        out!("{}", serde_json::Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        out!("no instances match");
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{:<20} {:<24} {:>3} {:<10} {:>9} {:<24} {:<24}",
        "KEY",
        "PROCESS",
        "V",
        "STATE",
        "INCIDENTS",
        "STARTED",
        "ENDED"
    );
    for row in &rows {
        out!(
            "{:<20} {:<24} {:>3} {:<10} {:>9} {:<24} {:<24}",
            row.key.0,
            row.bpmn_process_id,
            row.version,
            row.state,
            row.open_incidents,
            time(Some(row.start_millis)),
            time(row.end_millis)
        );
    }
    if rows.len() as u64 == args.limit {
        out!("(the newest {}; --limit shows more)", args.limit);
    }
    Ok(ExitCode::SUCCESS)
}

fn instance_json(row: &query::InstanceRow) -> serde_json::Value {
    serde_json::json!({
        "key": row.key.0,
        "shard": row.shard,
        "bpmnProcessId": row.bpmn_process_id,
        "version": row.version,
        "state": row.state,
        "openIncidents": row.open_incidents,
        "businessKey": row.business_key,
        "parentElementInstanceKey": row.parent.map(|key| key.0),
        "startMillis": row.start_millis,
        "endMillis": row.end_millis,
    })
}

/// Runs `ringflow instance KEY`: exit 0 when found, 1 when the store does not have it.
pub fn instance(args: &InstanceArgs) -> anyhow::Result<ExitCode> {
    let mut store = open(&args.store)?;
    let Some(detail) = store.instance(Key(args.key)).context("reading the store")? else {
        say!(
            "ringflow: instance {} is not in the cold store (a wrong key, not exported yet, or \
             deleted after it ended by the node's --history-ttl)",
            args.key
        );
        return Ok(ExitCode::from(1));
    };
    if args.store.json {
        let value = serde_json::json!({
            "instance": instance_json(&detail.instance),
            "elements": detail.elements.iter().map(|e| serde_json::json!({
                "key": e.key.0, "elementId": e.element_id, "state": e.state,
                "activatedMillis": e.activated_millis, "endedMillis": e.ended_millis,
            })).collect::<Vec<_>>(),
            "jobs": detail.jobs.iter().map(|j| serde_json::json!({
                "key": j.key.0, "elementInstanceKey": j.element_instance_key.0,
                "type": j.job_type, "state": j.state, "retries": j.retries,
                "errorMessage": j.error_message,
            })).collect::<Vec<_>>(),
            "incidents": detail.incidents.iter().map(|i| serde_json::json!({
                "key": i.key.0, "elementInstanceKey": i.element_instance_key.0,
                "message": i.message, "state": i.state, "createdMillis": i.created_millis,
            })).collect::<Vec<_>>(),
            "variables": detail.variables.iter().map(|v| serde_json::json!({
                "scopeKey": v.scope_key.0, "name": v.name,
                "value": serde_json::from_str::<serde_json::Value>(&v.value)
                    .unwrap_or(serde_json::Value::Null),
            })).collect::<Vec<_>>(),
        });
        out!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    let row = &detail.instance;
    out!(
        "instance {} of {} version {} (shard {}): {}",
        row.key.0,
        row.bpmn_process_id,
        row.version,
        row.shard,
        row.state
    );
    if let Some(business_key) = &row.business_key {
        out!("  business key: {business_key}");
    }
    if let Some(parent) = row.parent {
        out!("  called by element instance {}", parent.0);
    }
    out!(
        "  started {}, ended {}",
        time(Some(row.start_millis)),
        time(row.end_millis)
    );
    let waiting: Vec<&str> = detail
        .elements
        .iter()
        .filter(|e| e.state == "active" && e.key != row.key)
        .map(|e| e.element_id.as_str())
        .collect();
    if !waiting.is_empty() {
        out!("  waits at: {}", waiting.join(", "));
    }
    if detail.elements.is_empty() {
        out!(
            "history: no element instances in the store (the node runs with --history-level \
             instances)"
        );
    } else {
        out!("history:");
    }
    for element in &detail.elements {
        out!(
            "  {:<24} {:<32} {:<10} {} .. {}",
            element.key.0,
            element.element_id,
            element.state,
            time(Some(element.activated_millis)),
            time(element.ended_millis)
        );
    }
    if !detail.jobs.is_empty() {
        out!("jobs:");
        for job in &detail.jobs {
            let error = job.error_message.as_deref().unwrap_or("");
            out!(
                "  {:<24} {:<24} {:<12} retries {} {error}",
                job.key.0,
                job.job_type,
                job.state,
                job.retries
            );
        }
    }
    if !detail.incidents.is_empty() {
        out!("incidents:");
        for incident in &detail.incidents {
            out!(
                "  {:<24} {:<8} element instance {}: {}",
                incident.key.0,
                incident.state,
                incident.element_instance_key.0,
                incident.message
            );
        }
    }
    if !detail.variables.is_empty() {
        out!("variables:");
        for variable in &detail.variables {
            let scope = if variable.scope_key == row.key {
                String::new()
            } else {
                format!(" (local to {})", variable.scope_key.0)
            };
            out!("  {} = {}{scope}", variable.name, variable.value);
        }
    }
    Ok(ExitCode::SUCCESS)
}
