//! Folding a batch of journal records' events into row changes, then writing them.
//!
//! Rows that begin and end in the same batch (a start event, a whole short instance) are
//! written once, with both times, instead of an insert and an update; a job or incident
//! that changes several times keeps only its last state. Writing is idempotent on its own
//! (inserts are upserts by primary key), and the exporter position in the same transaction
//! keeps a batch from being applied twice.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use ringflow_core::{Event, Key};

use super::sql::{ColdError, Conn, Param};

/// Rows one multi-row `INSERT` writes (the rest of a batch's rows of a table, fewer than
/// this, go one at a time). A statement's fixed cost (the statement cache's lookup, binding,
/// stepping, resetting) was about a sixth of the SQLite exporter's time with one row each
/// (perf, bench/RESULTS.md 2026-12-06). At most 64 x 8 = 512 parameters per statement, far
/// below SQLite's 32,766 and PostgreSQL's 65,535.
pub const EXPORT_ROWS_PER_STATEMENT: usize = 64;

/// One kind of row written by multi-row `INSERT`s: the SQL before the `VALUES` list and
/// after it, and one row's tuple with its parameters numbered from `first`.
struct RowsInsert {
    head: &'static str,
    tuple: fn(first: usize) -> String,
    params_per_row: usize,
    tail: &'static str,
}

impl RowsInsert {
    fn sql(&self, rows: usize) -> String {
        let mut sql = String::from(self.head);
        sql.push_str(" VALUES ");
        for row in 0..rows {
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&(self.tuple)(row * self.params_per_row + 1));
        }
        sql.push(' ');
        sql.push_str(self.tail);
        sql
    }

    /// Writes `params` (whole rows, in order): [`EXPORT_ROWS_PER_STATEMENT`] rows per
    /// statement, then the rest one by one. `statements` holds this kind's two SQL texts.
    fn write(
        &self,
        conn: &mut Conn,
        statements: &OnceLock<(String, String)>,
        params: &[Param<'_>],
    ) -> Result<(), ColdError> {
        assert_eq!(params.len() % self.params_per_row, 0, "whole rows");
        let (many, one) =
            statements.get_or_init(|| (self.sql(EXPORT_ROWS_PER_STATEMENT), self.sql(1)));
        let mut chunks = params.chunks_exact(self.params_per_row * EXPORT_ROWS_PER_STATEMENT);
        for chunk in chunks.by_ref() {
            conn.execute(many, chunk)?;
        }
        for row in chunks.remainder().chunks_exact(self.params_per_row) {
            conn.execute(one, row)?;
        }
        Ok(())
    }
}

const INSTANCES: RowsInsert = RowsInsert {
    head: "INSERT INTO process_instances (key, shard, process_definition_key, business_key, \
           parent_element_instance_key, state, start_millis, end_millis)",
    tuple: |n| {
        format!(
            "(${n}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5,
            n + 6,
            n + 7
        )
    },
    params_per_row: 8,
    tail: "ON CONFLICT (key) DO UPDATE SET state = excluded.state, \
           end_millis = excluded.end_millis",
};

const ELEMENTS: RowsInsert = RowsInsert {
    head: "INSERT INTO element_instances (key, process_instance_key, element_id, state, \
           activated_millis, ended_millis)",
    tuple: |n| {
        format!(
            "(${n}, ${}, ${}, ${}, ${}, ${})",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5
        )
    },
    params_per_row: 6,
    tail: "ON CONFLICT (key) DO UPDATE SET state = excluded.state, \
           ended_millis = excluded.ended_millis",
};

const JOBS: RowsInsert = RowsInsert {
    head: "INSERT INTO jobs (key, process_instance_key, element_instance_key, job_type, state, \
           retries, error_message, created_millis, updated_millis)",
    tuple: |n| {
        format!(
            "(${n}, ${}, ${}, ${}, 'created', ${}, NULL, ${}, ${})",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5,
            n + 5
        )
    },
    params_per_row: 6,
    tail: "ON CONFLICT (key) DO NOTHING",
};

const VARIABLES: RowsInsert = RowsInsert {
    head: "INSERT INTO variables (scope_key, name, process_instance_key, value, updated_millis)",
    tuple: |n| format!("(${n}, ${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4),
    params_per_row: 5,
    tail: "ON CONFLICT (scope_key, name) DO UPDATE SET value = excluded.value, \
           updated_millis = excluded.updated_millis",
};

static INSTANCES_SQL: OnceLock<(String, String)> = OnceLock::new();
static ELEMENTS_SQL: OnceLock<(String, String)> = OnceLock::new();
static JOBS_SQL: OnceLock<(String, String)> = OnceLock::new();
static VARIABLES_SQL: OnceLock<(String, String)> = OnceLock::new();

/// A journal record's events, as the exporter receives them.
#[derive(Clone, Debug)]
pub struct ExportRecord {
    /// The record's LSN.
    pub lsn: u64,
    /// The command's time.
    pub now_millis: i64,
    /// What the command did.
    pub events: Vec<Event>,
}

/// A key as stored: its 64 bits as a signed number.
pub fn db_key(key: Key) -> i64 {
    key.0 as i64
}

/// A stored key back as a key.
pub fn key_of(value: i64) -> Key {
    Key(value as u64)
}

struct Created<T> {
    start: Option<T>,
    end: Option<(&'static str, i64)>,
}

impl<T> Default for Created<T> {
    fn default() -> Self {
        Created {
            start: None,
            end: None,
        }
    }
}

struct InstanceStart {
    definition: Key,
    business_key: Option<String>,
    parent: Option<Key>,
    at: i64,
}

struct ElementStart {
    instance: Key,
    element_id: Arc<str>,
    at: i64,
}

struct JobStart {
    instance: Key,
    element: Key,
    job_type: Arc<str>,
    retries: u32,
    at: i64,
}

#[derive(Default)]
struct JobChange {
    state: Option<&'static str>,
    retries: Option<u32>,
    error: Option<String>,
    at: i64,
}

struct IncidentStart {
    instance: Key,
    element: Key,
    message: String,
    at: i64,
}

struct Definition {
    key: Key,
    id: String,
    version: u32,
    deployment: Key,
    resource_name: String,
    resource: Arc<[u8]>,
    at: i64,
}

/// The row changes of a batch.
#[derive(Default)]
pub struct Delta {
    processes: Vec<Definition>,
    decisions: Vec<Definition>,
    instances: BTreeMap<Key, Created<InstanceStart>>,
    elements: BTreeMap<Key, Created<ElementStart>>,
    jobs: BTreeMap<Key, (Option<JobStart>, JobChange)>,
    incidents: BTreeMap<Key, Created<IncidentStart>>,
    /// Element instances terminated: their open jobs and incidents close with them.
    terminated: Vec<(Key, i64)>,
    variables: BTreeMap<(Key, String), (Key, String, i64)>,
    /// User tasks made, with the time.
    user_tasks: Vec<(Box<ringflow_core::UserTaskCreated>, i64)>,
    /// User tasks' last assignee in the batch, by job key.
    assignments: BTreeMap<Key, Option<String>>,
    /// User tasks' last properties after an update in the batch, by job key.
    updates: BTreeMap<Key, Box<ringflow_core::UserTaskProperties>>,
    /// Leave element instances out (history level `instances`).
    skip_elements: bool,
    /// Journal records folded in.
    pub records: u64,
}

impl Delta {
    /// An empty batch that writes what `history` keeps.
    pub fn new(history: super::HistoryLevel) -> Delta {
        Delta {
            skip_elements: !history.elements(),
            ..Delta::default()
        }
    }

    /// Folds one record's events in.
    pub fn add(&mut self, record: &ExportRecord) {
        self.records += 1;
        let at = record.now_millis;
        for event in &record.events {
            self.event(event, at);
        }
    }

    fn event(&mut self, event: &Event, at: i64) {
        match event {
            Event::ProcessDeployed {
                key,
                bpmn_process_id,
                version,
                deployment_key,
                resource_name,
                resource,
            } => self.processes.push(Definition {
                key: *key,
                id: bpmn_process_id.clone(),
                version: *version,
                deployment: *deployment_key,
                resource_name: resource_name.clone(),
                resource: Arc::clone(resource),
                at,
            }),
            Event::DecisionDeployed {
                key,
                decision_id,
                version,
                deployment_key,
                resource_name,
                resource,
            } => self.decisions.push(Definition {
                key: *key,
                id: decision_id.clone(),
                version: *version,
                deployment: *deployment_key,
                resource_name: resource_name.clone(),
                resource: Arc::clone(resource),
                at,
            }),
            Event::InstanceCreated {
                key,
                process_definition_key,
                business_key,
                parent,
            } => {
                self.instances.entry(*key).or_default().start = Some(InstanceStart {
                    definition: *process_definition_key,
                    business_key: business_key.clone(),
                    parent: *parent,
                    at,
                });
            }
            Event::ElementActivated { .. } if self.skip_elements => {}
            Event::ElementActivated {
                key,
                process_instance_key,
                element_id,
            } => {
                self.elements.entry(*key).or_default().start = Some(ElementStart {
                    instance: *process_instance_key,
                    element_id: element_id.clone(),
                    at,
                });
            }
            Event::ElementCompleted {
                key,
                process_instance_key,
                ..
            } => self.end_element(*key, *process_instance_key, "completed", at),
            Event::ElementTerminated {
                key,
                process_instance_key,
                ..
            } => {
                self.end_element(*key, *process_instance_key, "terminated", at);
                self.terminated.push((*key, at));
            }
            Event::JobCreated {
                key,
                job_type,
                process_instance_key,
                element_instance_key,
                retries,
            } => {
                let entry = self.jobs.entry(*key).or_default();
                entry.0 = Some(JobStart {
                    instance: *process_instance_key,
                    element: *element_instance_key,
                    job_type: job_type.clone(),
                    retries: *retries,
                    at,
                });
            }
            Event::UserTaskCreated(task) => self.user_tasks.push((task.clone(), at)),
            Event::UserTaskAssigned { key, assignee } => {
                self.assignments.insert(*key, assignee.clone());
            }
            Event::UserTaskUpdated { key, properties } => {
                self.updates.insert(*key, properties.clone());
            }
            Event::JobCompleted { key } => self.job(*key, "completed", None, None, at),
            Event::JobCancelled { key } => self.job(*key, "canceled", None, None, at),
            Event::JobFailed {
                key,
                retries,
                message,
            } => self.job(*key, "failed", Some(*retries), Some(message.clone()), at),
            Event::JobErrorThrown { key, error_code } => {
                let error = format!("error thrown: {error_code}");
                self.job(*key, "error_thrown", None, Some(error), at);
            }
            Event::JobRetriesUpdated { key, retries } => {
                let change = &mut self.jobs.entry(*key).or_default().1;
                change.retries = Some(*retries);
                change.at = at;
            }
            Event::IncidentCreated {
                key,
                process_instance_key,
                element_instance_key,
                message,
            } => {
                self.incidents.entry(*key).or_default().start = Some(IncidentStart {
                    instance: *process_instance_key,
                    element: *element_instance_key,
                    message: message.clone(),
                    at,
                });
            }
            Event::IncidentResolved { key } => {
                self.incidents.entry(*key).or_default().end = Some(("resolved", at));
            }
            Event::VariablesUpdated {
                scope_key,
                process_instance_key,
                variables,
            } => {
                for (name, value) in variables {
                    let mut json = Vec::new();
                    ringflow_core::write_json_value(value, &mut json);
                    let json = String::from_utf8(json).expect("JSON from UTF-8 strings is UTF-8");
                    self.variables.insert(
                        (*scope_key, name.clone()),
                        (*process_instance_key, json, at),
                    );
                }
            }
            Event::MessagePublished { .. }
            | Event::MessageExpired { .. }
            | Event::MessageCorrelated { .. }
            | Event::TimerTriggered { .. } => {}
        }
    }

    fn end_element(&mut self, key: Key, instance: Key, state: &'static str, at: i64) {
        if !self.skip_elements {
            self.elements.entry(key).or_default().end = Some((state, at));
        }
        if key == instance {
            self.instances.entry(key).or_default().end = Some((state, at));
        }
    }

    fn job(
        &mut self,
        key: Key,
        state: &'static str,
        retries: Option<u32>,
        error: Option<String>,
        at: i64,
    ) {
        let change = &mut self.jobs.entry(key).or_default().1;
        change.state = Some(state);
        change.retries = retries.or(change.retries);
        change.error = error.or(change.error.take());
        change.at = at;
    }

    /// Writes the changes (inside the caller's transaction).
    pub fn write(&self, conn: &mut Conn, shard: u16) -> Result<(), ColdError> {
        let shard = Param::Int(Some(i64::from(shard)));
        for (table, id_column, definitions) in [
            ("process_definitions", "bpmn_process_id", &self.processes),
            ("decision_definitions", "decision_id", &self.decisions),
        ] {
            let sql = format!(
                "INSERT INTO {table} (key, shard, {id_column}, version, deployment_key, \
                 resource_name, resource, deployed_millis) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (key) DO NOTHING"
            );
            for definition in definitions {
                conn.execute(
                    &sql,
                    &[
                        Param::Int(Some(db_key(definition.key))),
                        shard,
                        Param::Text(Some(&definition.id)),
                        Param::Int(Some(i64::from(definition.version))),
                        Param::Int(Some(db_key(definition.deployment))),
                        Param::Text(Some(&definition.resource_name)),
                        Param::Bytes(&definition.resource),
                        Param::Int(Some(definition.at)),
                    ],
                )?;
            }
        }
        let mut rows = Vec::new();
        for (key, change) in &self.instances {
            let (end_state, end_at) = ends(&change.end);
            match &change.start {
                Some(start) => rows.extend([
                    Param::Int(Some(db_key(*key))),
                    shard,
                    Param::Int(Some(db_key(start.definition))),
                    Param::Text(start.business_key.as_deref()),
                    Param::Int(start.parent.map(db_key)),
                    Param::Text(Some(end_state.unwrap_or("active"))),
                    Param::Int(Some(start.at)),
                    Param::Int(end_at),
                ]),
                None => {
                    _ = conn.execute(
                        "UPDATE process_instances SET state = $2, end_millis = $3 WHERE key = $1",
                        &[
                            Param::Int(Some(db_key(*key))),
                            Param::Text(end_state),
                            Param::Int(end_at),
                        ],
                    )?
                }
            };
        }
        INSTANCES.write(conn, &INSTANCES_SQL, &rows)?;
        rows.clear();
        for (key, change) in &self.elements {
            let (end_state, end_at) = ends(&change.end);
            match &change.start {
                Some(start) => rows.extend([
                    Param::Int(Some(db_key(*key))),
                    Param::Int(Some(db_key(start.instance))),
                    Param::Text(Some(&start.element_id)),
                    Param::Text(Some(end_state.unwrap_or("active"))),
                    Param::Int(Some(start.at)),
                    Param::Int(end_at),
                ]),
                None => {
                    _ = conn.execute(
                        "UPDATE element_instances SET state = $2, ended_millis = $3 WHERE key = $1",
                        &[
                            Param::Int(Some(db_key(*key))),
                            Param::Text(end_state),
                            Param::Int(end_at),
                        ],
                    )?
                }
            };
        }
        ELEMENTS.write(conn, &ELEMENTS_SQL, &rows)?;
        rows.clear();
        // Every job's row first, then the changes of those that changed (a change of a job
        // created in this batch updates the row just written).
        for (key, (start, _)) in &self.jobs {
            if let Some(start) = start {
                rows.extend([
                    Param::Int(Some(db_key(*key))),
                    Param::Int(Some(db_key(start.instance))),
                    Param::Int(Some(db_key(start.element))),
                    Param::Text(Some(&start.job_type)),
                    Param::Int(Some(i64::from(start.retries))),
                    Param::Int(Some(start.at)),
                ]);
            }
        }
        JOBS.write(conn, &JOBS_SQL, &rows)?;
        rows.clear();
        for (key, (_, change)) in &self.jobs {
            if change.state.is_some() || change.retries.is_some() {
                conn.execute(
                    "UPDATE jobs SET state = COALESCE($2, state), retries = COALESCE($3, retries), \
                     error_message = COALESCE($4, error_message), updated_millis = $5 \
                     WHERE key = $1",
                    &[
                        Param::Int(Some(db_key(*key))),
                        Param::Text(change.state),
                        Param::Int(change.retries.map(i64::from)),
                        Param::Text(change.error.as_deref()),
                        Param::Int(Some(change.at)),
                    ],
                )?;
            }
        }
        for (key, change) in &self.incidents {
            if let Some(start) = &change.start {
                conn.execute(
                    "INSERT INTO incidents (key, process_instance_key, element_instance_key, \
                     message, state, created_millis, ended_millis) \
                     VALUES ($1, $2, $3, $4, 'open', $5, NULL) ON CONFLICT (key) DO NOTHING",
                    &[
                        Param::Int(Some(db_key(*key))),
                        Param::Int(Some(db_key(start.instance))),
                        Param::Int(Some(db_key(start.element))),
                        Param::Text(Some(&start.message)),
                        Param::Int(Some(start.at)),
                    ],
                )?;
            }
            if let Some((state, at)) = change.end {
                conn.execute(
                    "UPDATE incidents SET state = $2, ended_millis = $3 WHERE key = $1",
                    &[
                        Param::Int(Some(db_key(*key))),
                        Param::Text(Some(state)),
                        Param::Int(Some(at)),
                    ],
                )?;
            }
        }
        for (element, at) in &self.terminated {
            let params = [Param::Int(Some(db_key(*element))), Param::Int(Some(*at))];
            conn.execute(
                "UPDATE jobs SET state = 'canceled', updated_millis = $2 \
                 WHERE element_instance_key = $1 AND state IN ('created', 'failed')",
                &params,
            )?;
            conn.execute(
                "UPDATE incidents SET state = 'closed', ended_millis = $2 \
                 WHERE element_instance_key = $1 AND state = 'open'",
                &params,
            )?;
        }
        for ((scope, name), (instance, value, at)) in &self.variables {
            rows.extend([
                Param::Int(Some(db_key(*scope))),
                Param::Text(Some(name)),
                Param::Int(Some(db_key(*instance))),
                Param::Text(Some(value)),
                Param::Int(Some(*at)),
            ]);
        }
        VARIABLES.write(conn, &VARIABLES_SQL, &rows)?;
        for (task, at) in &self.user_tasks {
            let properties = &task.properties;
            let (groups, users) = (
                json_list(&properties.candidate_groups),
                json_list(&properties.candidate_users),
            );
            conn.execute(
                "INSERT INTO user_tasks (job_key, process_instance_key, element_instance_key, \
                 element_id, assignee, candidate_groups, candidate_users, due_date, \
                 follow_up_date, priority, form_key, denied_reason, created_millis) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (job_key) DO NOTHING",
                &[
                    Param::Int(Some(db_key(task.job_key))),
                    Param::Int(Some(db_key(task.process_instance_key))),
                    Param::Int(Some(db_key(task.element_instance_key))),
                    Param::Text(Some(&task.element_id)),
                    Param::Text(properties.assignee.as_deref()),
                    Param::Text(groups.as_deref()),
                    Param::Text(users.as_deref()),
                    Param::Text(properties.due_date.as_deref()),
                    Param::Text(properties.follow_up_date.as_deref()),
                    Param::Int(properties.priority.map(i64::from)),
                    Param::Text(task.form_key.as_deref()),
                    Param::Text(properties.denied_reason.as_deref()),
                    Param::Int(Some(*at)),
                ],
            )?;
        }
        for (key, properties) in &self.updates {
            let (groups, users) = (
                json_list(&properties.candidate_groups),
                json_list(&properties.candidate_users),
            );
            conn.execute(
                "UPDATE user_tasks SET candidate_groups = $2, candidate_users = $3, \
                 due_date = $4, follow_up_date = $5, priority = $6 WHERE job_key = $1",
                &[
                    Param::Int(Some(db_key(*key))),
                    Param::Text(groups.as_deref()),
                    Param::Text(users.as_deref()),
                    Param::Text(properties.due_date.as_deref()),
                    Param::Text(properties.follow_up_date.as_deref()),
                    Param::Int(properties.priority.map(i64::from)),
                ],
            )?;
        }
        for (key, assignee) in &self.assignments {
            conn.execute(
                "UPDATE user_tasks SET assignee = $2 WHERE job_key = $1",
                &[
                    Param::Int(Some(db_key(*key))),
                    Param::Text(assignee.as_deref()),
                ],
            )?;
        }
        Ok(())
    }
}

/// A candidate list as the `user_tasks` table keeps it: a JSON array's text.
fn json_list(items: &Option<Vec<String>>) -> Option<String> {
    items
        .as_ref()
        .map(|items| serde_json::to_string(items).expect("strings serialize"))
}

fn ends(end: &Option<(&'static str, i64)>) -> (Option<&'static str>, Option<i64>) {
    match end {
        Some((state, at)) => (Some(*state), Some(*at)),
        None => (None, None),
    }
}
