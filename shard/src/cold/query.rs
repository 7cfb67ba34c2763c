//! Reading the cold store back: what `ringflow instances` and `ringflow instance KEY` show.

use ringflow_core::Key;

use super::delta::{db_key, key_of};
use super::schema;
use super::sql::{ColdError, Conn, Param, SHARD_FILE_PATTERN, Target, Value};

/// Most rows `ringflow instances` lists unless told otherwise.
pub const INSTANCES_LIMIT_DEFAULT: u64 = 50;

/// Which instances to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFilter {
    /// Running.
    Active,
    /// Ended normally.
    Completed,
    /// Cancelled or terminated.
    Terminated,
    /// Running with at least one open incident.
    Incident,
}

impl StateFilter {
    /// Reads `--state`.
    pub fn parse(text: &str) -> Result<StateFilter, String> {
        match text {
            "active" => Ok(StateFilter::Active),
            "completed" => Ok(StateFilter::Completed),
            "terminated" => Ok(StateFilter::Terminated),
            "incident" => Ok(StateFilter::Incident),
            other => Err(format!(
                "`{other}` is not a state: active, completed, terminated or incident"
            )),
        }
    }
}

/// One process instance row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRow {
    /// The instance key.
    pub key: Key,
    /// The shard that owns it.
    pub shard: u16,
    /// The BPMN process id (empty if its definition is not in the store).
    pub bpmn_process_id: String,
    /// The version.
    pub version: u32,
    /// `active`, `completed` or `terminated`.
    pub state: String,
    /// Open incidents.
    pub open_incidents: u64,
    /// The business key.
    pub business_key: Option<String>,
    /// The calling element instance, for a child instance.
    pub parent: Option<Key>,
    /// Start, ms since the epoch.
    pub start_millis: i64,
    /// End, ms since the epoch.
    pub end_millis: Option<i64>,
}

const INSTANCE_COLUMNS: &str = "i.key, i.shard, COALESCE(d.bpmn_process_id, ''), \
     COALESCE(d.version, 0), i.state, \
     (SELECT COUNT(*) FROM incidents n WHERE n.process_instance_key = i.key AND n.state = 'open'), \
     i.business_key, i.parent_element_instance_key, i.start_millis, i.end_millis \
     FROM process_instances i LEFT JOIN process_definitions d ON d.key = i.process_definition_key";

fn instance_row(row: &[Value]) -> InstanceRow {
    InstanceRow {
        key: key_of(row[0].int().unwrap_or(0)),
        shard: row[1].int().unwrap_or(0) as u16,
        bpmn_process_id: row[2].text().unwrap_or("").to_string(),
        version: row[3].int().unwrap_or(0) as u32,
        state: row[4].text().unwrap_or("").to_string(),
        open_incidents: row[5].int().unwrap_or(0) as u64,
        business_key: row[6].text().map(str::to_string),
        parent: row[7].int().map(key_of),
        start_millis: row[8].int().unwrap_or(0),
        end_millis: row[9].int(),
    }
}

/// The newest instances of `shard` in `conn`, newest first, at most `limit`.
///
/// Within a shard, keys grow with the shard's clock, which never goes back (a command's time
/// is the wall clock or the last command's, whichever is later), so newest first is highest
/// key first: the query walks the key index backwards from the top of the shard's key range
/// and stops after `limit` rows, however large the store. `active`, `incident` and
/// `terminated` are usually few, so for them the planner may take the state index instead;
/// `completed` is most rows, and its filter (`state || ''`) keeps it on the key walk.
fn instances_of_shard(
    conn: &mut Conn,
    shard: u16,
    state: Option<StateFilter>,
    process: Option<&str>,
    limit: u64,
) -> Result<Vec<InstanceRow>, ColdError> {
    if shard > ringflow_core::key::SHARD_ID_MAX {
        return Ok(Vec::new());
    }
    // A process this database has no definition of has no instances in it: no walk.
    if let Some(process) = process.filter(|process| !process.is_empty())
        && conn
            .query(
                "SELECT 1 FROM process_definitions WHERE bpmn_process_id = $1 LIMIT 1",
                &[Param::Text(Some(process))],
            )?
            .is_empty()
    {
        return Ok(Vec::new());
    }
    let state_clause = match state {
        None => "",
        Some(StateFilter::Active) => " AND i.state = 'active'",
        Some(StateFilter::Completed) => " AND i.state || '' = 'completed'",
        Some(StateFilter::Terminated) => " AND i.state = 'terminated'",
        Some(StateFilter::Incident) => {
            " AND i.state = 'active' AND EXISTS (SELECT 1 FROM incidents n \
             WHERE n.process_instance_key = i.key AND n.state = 'open')"
        }
    };
    let sql = format!(
        "SELECT {INSTANCE_COLUMNS} WHERE i.key BETWEEN $3 AND $4 \
         AND ($1 = '' OR d.bpmn_process_id = $1){state_clause} ORDER BY i.key DESC LIMIT $2"
    );
    let first = u64::from(shard) << ringflow_core::key::KEY_COUNTER_BITS;
    let last = first | ringflow_core::key::KEY_COUNTER_MAX;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn.query(
        &sql,
        &[
            Param::Text(Some(process.unwrap_or(""))),
            Param::Int(Some(limit)),
            Param::Int(Some(db_key(Key(first)))),
            Param::Int(Some(db_key(Key(last)))),
        ],
    )?;
    Ok(rows.iter().map(|row| instance_row(row)).collect())
}

/// The shards whose history a database holds (those with an exporter position).
fn shards_in(conn: &mut Conn) -> Result<Vec<u16>, ColdError> {
    Ok(conn
        .query("SELECT shard FROM exporter_positions ORDER BY shard", &[])?
        .iter()
        .filter_map(|row| u16::try_from(row[0].int()?).ok())
        .collect())
}

/// One element instance of an instance's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElementRow {
    /// The element instance key.
    pub key: Key,
    /// The element's id.
    pub element_id: String,
    /// `active`, `completed` or `terminated`.
    pub state: String,
    /// Activated, ms since the epoch.
    pub activated_millis: i64,
    /// Ended, ms since the epoch.
    pub ended_millis: Option<i64>,
}

/// A job of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRow {
    /// The job key.
    pub key: Key,
    /// Its element instance.
    pub element_instance_key: Key,
    /// The job type.
    pub job_type: String,
    /// Its state.
    pub state: String,
    /// Retries left.
    pub retries: i64,
    /// The last error.
    pub error_message: Option<String>,
}

/// An incident of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentRow {
    /// The incident key.
    pub key: Key,
    /// The element instance it stopped.
    pub element_instance_key: Key,
    /// What went wrong.
    pub message: String,
    /// `open`, `resolved` or `closed`.
    pub state: String,
    /// Created, ms since the epoch.
    pub created_millis: i64,
}

/// A variable of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariableRow {
    /// Its scope (the instance key for instance variables).
    pub scope_key: Key,
    /// Its name.
    pub name: String,
    /// The value as JSON.
    pub value: String,
}

/// Everything the store holds about one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceDetail {
    /// The instance.
    pub instance: InstanceRow,
    /// Its element instances in order of activation.
    pub elements: Vec<ElementRow>,
    /// Its jobs.
    pub jobs: Vec<JobRow>,
    /// Its incidents.
    pub incidents: Vec<IncidentRow>,
    /// Its variables.
    pub variables: Vec<VariableRow>,
}

/// One instance with its history; `None` when the store does not have it.
pub fn instance(conn: &mut Conn, key: Key) -> Result<Option<InstanceDetail>, ColdError> {
    let id = [Param::Int(Some(db_key(key)))];
    let rows = conn.query(&format!("SELECT {INSTANCE_COLUMNS} WHERE i.key = $1"), &id)?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let instance = instance_row(row);
    let elements = conn
        .query(
            "SELECT key, element_id, state, activated_millis, ended_millis FROM element_instances \
             WHERE process_instance_key = $1 ORDER BY activated_millis, key",
            &id,
        )?
        .iter()
        .map(|row| ElementRow {
            key: key_of(row[0].int().unwrap_or(0)),
            element_id: row[1].text().unwrap_or("").to_string(),
            state: row[2].text().unwrap_or("").to_string(),
            activated_millis: row[3].int().unwrap_or(0),
            ended_millis: row[4].int(),
        })
        .collect();
    let jobs = conn
        .query(
            "SELECT key, element_instance_key, job_type, state, retries, error_message FROM jobs \
             WHERE process_instance_key = $1 ORDER BY key",
            &id,
        )?
        .iter()
        .map(|row| JobRow {
            key: key_of(row[0].int().unwrap_or(0)),
            element_instance_key: key_of(row[1].int().unwrap_or(0)),
            job_type: row[2].text().unwrap_or("").to_string(),
            state: row[3].text().unwrap_or("").to_string(),
            retries: row[4].int().unwrap_or(0),
            error_message: row[5].text().map(str::to_string),
        })
        .collect();
    let incidents = conn
        .query(
            "SELECT key, element_instance_key, message, state, created_millis FROM incidents \
             WHERE process_instance_key = $1 ORDER BY key",
            &id,
        )?
        .iter()
        .map(|row| IncidentRow {
            key: key_of(row[0].int().unwrap_or(0)),
            element_instance_key: key_of(row[1].int().unwrap_or(0)),
            message: row[2].text().unwrap_or("").to_string(),
            state: row[3].text().unwrap_or("").to_string(),
            created_millis: row[4].int().unwrap_or(0),
        })
        .collect();
    let variables = conn
        .query(
            "SELECT scope_key, name, value FROM variables WHERE process_instance_key = $1 \
             ORDER BY scope_key, name",
            &id,
        )?
        .iter()
        .map(|row| VariableRow {
            scope_key: key_of(row[0].int().unwrap_or(0)),
            name: row[1].text().unwrap_or("").to_string(),
            value: row[2].text().unwrap_or("").to_string(),
        })
        .collect();
    Ok(Some(InstanceDetail {
        instance,
        elements,
        jobs,
        incidents,
        variables,
    }))
}

/// One user task as `ringflow user-tasks` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserTaskRow {
    /// The task's job key (what a worker completes).
    pub job_key: Key,
    /// Its process instance.
    pub process_instance_key: Key,
    /// The instance's BPMN process id (empty when the store lacks the instance).
    pub bpmn_process_id: String,
    /// The user task's id in the model.
    pub element_id: String,
    /// Its job's state: `created`, `failed`, `completed`, `canceled` or `error_thrown`.
    pub state: String,
    /// The assignee.
    pub assignee: Option<String>,
    /// The candidate groups.
    pub candidate_groups: Vec<String>,
    /// The candidate users.
    pub candidate_users: Vec<String>,
    /// The due date (ISO 8601).
    pub due_date: Option<String>,
    /// The follow-up date (ISO 8601).
    pub follow_up_date: Option<String>,
    /// The priority (Camunda user tasks).
    pub priority: Option<i64>,
    /// The form key.
    pub form_key: Option<String>,
    /// Why a completing listener denied the task's last completion.
    pub denied_reason: Option<String>,
    /// When its job was made, ms since the epoch.
    pub created_millis: i64,
}

/// Which user tasks `ringflow user-tasks` lists.
#[derive(Clone, Copy, Debug, Default)]
pub struct UserTaskFilter<'a> {
    /// Only those assigned to this user.
    pub assignee: Option<&'a str>,
    /// Only those this group is a candidate group of.
    pub group: Option<&'a str>,
    /// Closed ones too (completed, canceled); by default only open ones (created, failed).
    pub all: bool,
}

/// `%` and `_` and the escape character taken literally in a `LIKE ... ESCAPE '\'` pattern.
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn user_tasks_of(
    conn: &mut Conn,
    filter: UserTaskFilter<'_>,
    limit: u64,
) -> Result<Vec<UserTaskRow>, ColdError> {
    // A group is matched as its JSON string inside the stored array (then checked exactly:
    // SQLite's LIKE ignores ASCII case).
    let group = filter.group.map(|group| {
        let json = serde_json::to_string(group).expect("a string serializes");
        format!("%{}%", like_literal(&json))
    });
    let open_only = if filter.all {
        ""
    } else {
        " AND COALESCE(j.state, 'created') IN ('created', 'failed')"
    };
    let sql = format!(
        "SELECT u.job_key, u.process_instance_key, COALESCE(d.bpmn_process_id, ''), \
               u.element_id, COALESCE(j.state, 'created'), u.assignee, u.candidate_groups, \
               u.candidate_users, u.due_date, u.follow_up_date, u.priority, u.form_key, \
               u.denied_reason, u.created_millis \
               FROM user_tasks u \
               LEFT JOIN jobs j ON j.key = u.job_key \
               LEFT JOIN process_instances i ON i.key = u.process_instance_key \
               LEFT JOIN process_definitions d ON d.key = i.process_definition_key \
               WHERE ($1 = '' OR u.assignee = $1) \
               AND ($2 = '' OR u.candidate_groups LIKE $2 ESCAPE '\\'){open_only} \
               ORDER BY u.created_millis DESC, u.job_key DESC LIMIT $3"
    );
    let rows = conn.query(
        &sql,
        &[
            Param::Text(Some(filter.assignee.unwrap_or(""))),
            Param::Text(Some(group.as_deref().unwrap_or(""))),
            Param::Int(Some(i64::try_from(limit).unwrap_or(i64::MAX))),
        ],
    )?;
    let list = |value: &super::sql::Value| -> Vec<String> {
        value
            .text()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
    };
    let text = |value: &super::sql::Value| value.text().map(str::to_string);
    Ok(rows
        .iter()
        .map(|row| UserTaskRow {
            job_key: key_of(row[0].int().unwrap_or_default()),
            process_instance_key: key_of(row[1].int().unwrap_or_default()),
            bpmn_process_id: text(&row[2]).unwrap_or_default(),
            element_id: text(&row[3]).unwrap_or_default(),
            state: text(&row[4]).unwrap_or_default(),
            assignee: text(&row[5]),
            candidate_groups: list(&row[6]),
            candidate_users: list(&row[7]),
            due_date: text(&row[8]),
            follow_up_date: text(&row[9]),
            priority: row[10].int(),
            form_key: text(&row[11]),
            denied_reason: text(&row[12]),
            created_millis: row[13].int().unwrap_or_default(),
        })
        .filter(|row| {
            filter
                .group
                .is_none_or(|group| row.candidate_groups.iter().any(|g| g == group))
        })
        .collect())
}

/// What the CLI reads: the store's one database, or each shard's file of a file per shard
/// ([`Target::SqliteShards`]), opened read-only with their schema checked. Listing merges
/// the files; one instance is read from its shard's file (the shard is in its key).
pub struct Store {
    conns: Vec<(Option<u16>, Conn)>,
}

impl Store {
    /// Opens `target` for reading (SQLite read-only, so it is safe beside a running server)
    /// and checks that every database has a ringflow schema this build reads.
    pub fn open_read_only(target: &Target) -> Result<Store, ColdError> {
        let stores = match target {
            Target::SqliteShards(dir) => shard_files(target, dir)?,
            other => vec![(None, other.clone())],
        };
        let mut conns = Vec::with_capacity(stores.len());
        for (shard, store) in stores {
            let mut conn = Conn::open_read_only(&store)?;
            let version = schema::version_read_only(&mut conn)?;
            let refuse = |message: String| ColdError {
                target: store.describe(),
                message,
            };
            if version == 0 {
                return Err(refuse(
                    "no ringflow history yet (no schema): has a server exported to it?".into(),
                ));
            }
            if version > schema::SCHEMA_VERSION {
                return Err(refuse(format!(
                    "schema version {version}, newer than this ringflow's {}: upgrade ringflow",
                    schema::SCHEMA_VERSION
                )));
            }
            conns.push((shard, conn));
        }
        Ok(Store { conns })
    }

    /// Instances, newest first, from every database of the store.
    pub fn instances(
        &mut self,
        state: Option<StateFilter>,
        process: Option<&str>,
        limit: u64,
    ) -> Result<Vec<InstanceRow>, ColdError> {
        // Each shard's newest `limit`, then the newest `limit` of them all: start time
        // descending, then key (as stored) descending.
        let mut rows = Vec::new();
        for (file_shard, conn) in &mut self.conns {
            let shards = match file_shard {
                Some(shard) => vec![*shard],
                None => shards_in(conn)?,
            };
            for shard in shards {
                rows.extend(instances_of_shard(conn, shard, state, process, limit)?);
            }
        }
        rows.sort_by_key(|row| std::cmp::Reverse((row.start_millis, db_key(row.key))));
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(rows)
    }

    /// One instance with its history, from its shard's file (or the one database); `None`
    /// when the store does not have it.
    pub fn instance(&mut self, key: Key) -> Result<Option<InstanceDetail>, ColdError> {
        for (shard, conn) in &mut self.conns {
            if shard.is_none_or(|shard| shard == key.shard())
                && let Some(detail) = instance(conn, key)?
            {
                return Ok(Some(detail));
            }
        }
        Ok(None)
    }

    /// Process instances by state (`active`, `completed`, `terminated`), over every
    /// database of the store.
    pub fn count_by_state(&mut self) -> Result<Vec<(String, i64)>, ColdError> {
        let mut counts = std::collections::BTreeMap::<String, i64>::new();
        for (_, conn) in &mut self.conns {
            let rows = conn.query(
                "SELECT state, COUNT(*) FROM process_instances GROUP BY state",
                &[],
            )?;
            for row in rows {
                if let (Some(state), Some(count)) = (row[0].text(), row[1].int()) {
                    *counts.entry(state.to_string()).or_default() += count;
                }
            }
        }
        Ok(counts.into_iter().collect())
    }

    /// User tasks, newest first, from every database of the store (at most `limit`). A
    /// store written before user tasks were recorded (schema version 2) is refused with a
    /// message that says so.
    pub fn user_tasks(
        &mut self,
        filter: UserTaskFilter<'_>,
        limit: u64,
    ) -> Result<Vec<UserTaskRow>, ColdError> {
        let mut rows = Vec::new();
        for (_, conn) in &mut self.conns {
            if schema::version_read_only(conn)? < 3 {
                return Err(ColdError {
                    target: conn.target().to_string(),
                    message: "the store's schema predates user tasks (version 3): start a \
                              server of this ringflow on it to migrate it; tasks made before \
                              that are not recorded"
                        .to_string(),
                });
            }
            rows.extend(user_tasks_of(conn, filter, limit)?);
        }
        rows.sort_by_key(|row| std::cmp::Reverse((row.created_millis, db_key(row.job_key))));
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(rows)
    }

    /// How many databases it reads (a file per shard: the shards' files found).
    pub fn databases(&self) -> usize {
        self.conns.len()
    }
}

/// The shard files of a file-per-shard directory, by shard; an error when there are none.
fn shard_files(
    target: &Target,
    dir: &std::path::Path,
) -> Result<Vec<(Option<u16>, Target)>, ColdError> {
    let none_yet = |why: String| ColdError {
        target: target.describe(),
        message: format!("{why}: has a server with this data directory exported anything yet?"),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(none_yet(format!("no directory {}", dir.display())));
        }
        Err(error) => {
            return Err(ColdError {
                target: target.describe(),
                message: format!("cannot list {}: {error}", dir.display()),
            });
        }
    };
    let mut shards: Vec<u16> = entries
        .filter_map(|entry| Target::shard_of_file(entry.ok()?.file_name().to_str()?))
        .collect();
    shards.sort_unstable();
    if shards.is_empty() {
        return Err(none_yet(format!(
            "no {SHARD_FILE_PATTERN} in {}",
            dir.display()
        )));
    }
    Ok(shards
        .into_iter()
        .map(|shard| (Some(shard), target.for_shard(shard)))
        .collect())
}
