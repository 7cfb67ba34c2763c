//! The cold store's schema, versioned: migration `n` takes a store from version `n - 1` to
//! `n`, in one transaction with the version row. A store newer than this build is refused.
//!
//! Keys are stored as `BIGINT`, the key's 64 bits read as a signed number (keys of shards
//! 2048 and up come out negative; `ringflow instance` converts back). Times are milliseconds
//! since the Unix epoch from the command that caused the change (the engine's clock).
//!
//! | table | one row per | holds |
//! |---|---|---|
//! | `ringflow_schema` | store | the schema version |
//! | `exporter_positions` | shard | the last journal LSN exported and how many records that was |
//! | `process_definitions` | process version and shard | BPMN process id, version, deployment, resource name, the XML |
//! | `decision_definitions` | decision version and shard | decision id, version, deployment, resource name, the DMN XML |
//! | `process_instances` | process instance | definition, shard, business key, caller, `active` / `completed` / `terminated`, start and end |
//! | `element_instances` | element instance | element id, `active` / `completed` / `terminated`, activation and end |
//! | `jobs` | job | type, `created` / `failed` / `completed` / `error_thrown` / `canceled`, retries, last error |
//! | `incidents` | incident | message, `open` / `resolved` / `closed` (its element ended), times |
//! | `variables` | scope and name | the JSON value as the last command that changed it left it |
//! | `user_tasks` (version 3) | user task job | element, assignee, candidate groups and users (JSON arrays), due and follow-up dates, priority, form key, denied reason, creation; its state is its job's (`jobs`, same key) |
//!
//! In SQLite (from version 2) the tables with one key column keep it as the rowid
//! (`INTEGER PRIMARY KEY`, a signed 64-bit integer as well), and `variables` is clustered on
//! its key (`WITHOUT ROWID`), so that a row written updates one B-tree for its key, not two.

use super::sql::{ColdError, Conn, Param};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 3;

const V1: &str = "
CREATE TABLE exporter_positions (
    shard BIGINT PRIMARY KEY,
    lsn BIGINT NOT NULL,
    records BIGINT NOT NULL,
    updated_millis BIGINT NOT NULL
);
CREATE TABLE process_definitions (
    key BIGINT PRIMARY KEY,
    shard BIGINT NOT NULL,
    bpmn_process_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    deployment_key BIGINT NOT NULL,
    resource_name TEXT NOT NULL,
    resource {BLOB} NOT NULL,
    deployed_millis BIGINT NOT NULL
);
CREATE INDEX process_definitions_id ON process_definitions (bpmn_process_id, version);
CREATE TABLE decision_definitions (
    key BIGINT PRIMARY KEY,
    shard BIGINT NOT NULL,
    decision_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    deployment_key BIGINT NOT NULL,
    resource_name TEXT NOT NULL,
    resource {BLOB} NOT NULL,
    deployed_millis BIGINT NOT NULL
);
CREATE TABLE process_instances (
    key BIGINT PRIMARY KEY,
    shard BIGINT NOT NULL,
    process_definition_key BIGINT NOT NULL,
    business_key TEXT,
    parent_element_instance_key BIGINT,
    state TEXT NOT NULL,
    start_millis BIGINT NOT NULL,
    end_millis BIGINT
);
CREATE INDEX process_instances_state ON process_instances (state, process_definition_key);
CREATE TABLE element_instances (
    key BIGINT PRIMARY KEY,
    process_instance_key BIGINT NOT NULL,
    element_id TEXT NOT NULL,
    state TEXT NOT NULL,
    activated_millis BIGINT NOT NULL,
    ended_millis BIGINT
);
CREATE INDEX element_instances_instance ON element_instances (process_instance_key);
CREATE TABLE jobs (
    key BIGINT PRIMARY KEY,
    process_instance_key BIGINT NOT NULL,
    element_instance_key BIGINT NOT NULL,
    job_type TEXT NOT NULL,
    state TEXT NOT NULL,
    retries BIGINT NOT NULL,
    error_message TEXT,
    created_millis BIGINT NOT NULL,
    updated_millis BIGINT NOT NULL
);
CREATE INDEX jobs_element ON jobs (element_instance_key);
CREATE INDEX jobs_instance ON jobs (process_instance_key);
CREATE TABLE incidents (
    key BIGINT PRIMARY KEY,
    process_instance_key BIGINT NOT NULL,
    element_instance_key BIGINT NOT NULL,
    message TEXT NOT NULL,
    state TEXT NOT NULL,
    created_millis BIGINT NOT NULL,
    ended_millis BIGINT
);
CREATE INDEX incidents_element ON incidents (element_instance_key);
CREATE INDEX incidents_instance ON incidents (process_instance_key, state);
CREATE TABLE variables (
    scope_key BIGINT NOT NULL,
    name TEXT NOT NULL,
    process_instance_key BIGINT NOT NULL,
    value TEXT NOT NULL,
    updated_millis BIGINT NOT NULL,
    PRIMARY KEY (scope_key, name)
);
CREATE INDEX variables_instance ON variables (process_instance_key);
";

/// Version 2, SQLite: the tables with one key column rebuilt with it as the rowid, and
/// `variables` without a rowid. Declared `BIGINT PRIMARY KEY`, SQLite keeps a hidden rowid
/// and a unique index on the key beside it, so each row the exporter writes updated one
/// B-tree more than it needs; the exporter did more with these tables in 3 of 3 pairs
/// (bench/RESULTS.md, 2026-12-06). The rows are copied as they are; the indexes go with their
/// old tables and are made again. PostgreSQL keeps version 1's tables.
const V2_SQLITE: &str = "
CREATE TABLE process_instances_v2 (
    key INTEGER PRIMARY KEY,
    shard BIGINT NOT NULL,
    process_definition_key BIGINT NOT NULL,
    business_key TEXT,
    parent_element_instance_key BIGINT,
    state TEXT NOT NULL,
    start_millis BIGINT NOT NULL,
    end_millis BIGINT
);
INSERT INTO process_instances_v2 (key, shard, process_definition_key, business_key,
    parent_element_instance_key, state, start_millis, end_millis)
    SELECT key, shard, process_definition_key, business_key, parent_element_instance_key,
    state, start_millis, end_millis FROM process_instances;
DROP TABLE process_instances;
ALTER TABLE process_instances_v2 RENAME TO process_instances;
CREATE INDEX process_instances_state ON process_instances (state, process_definition_key);
CREATE TABLE element_instances_v2 (
    key INTEGER PRIMARY KEY,
    process_instance_key BIGINT NOT NULL,
    element_id TEXT NOT NULL,
    state TEXT NOT NULL,
    activated_millis BIGINT NOT NULL,
    ended_millis BIGINT
);
INSERT INTO element_instances_v2 (key, process_instance_key, element_id, state,
    activated_millis, ended_millis)
    SELECT key, process_instance_key, element_id, state, activated_millis, ended_millis
    FROM element_instances;
DROP TABLE element_instances;
ALTER TABLE element_instances_v2 RENAME TO element_instances;
CREATE INDEX element_instances_instance ON element_instances (process_instance_key);
CREATE TABLE jobs_v2 (
    key INTEGER PRIMARY KEY,
    process_instance_key BIGINT NOT NULL,
    element_instance_key BIGINT NOT NULL,
    job_type TEXT NOT NULL,
    state TEXT NOT NULL,
    retries BIGINT NOT NULL,
    error_message TEXT,
    created_millis BIGINT NOT NULL,
    updated_millis BIGINT NOT NULL
);
INSERT INTO jobs_v2 (key, process_instance_key, element_instance_key, job_type, state,
    retries, error_message, created_millis, updated_millis)
    SELECT key, process_instance_key, element_instance_key, job_type, state, retries,
    error_message, created_millis, updated_millis FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v2 RENAME TO jobs;
CREATE INDEX jobs_element ON jobs (element_instance_key);
CREATE INDEX jobs_instance ON jobs (process_instance_key);
CREATE TABLE incidents_v2 (
    key INTEGER PRIMARY KEY,
    process_instance_key BIGINT NOT NULL,
    element_instance_key BIGINT NOT NULL,
    message TEXT NOT NULL,
    state TEXT NOT NULL,
    created_millis BIGINT NOT NULL,
    ended_millis BIGINT
);
INSERT INTO incidents_v2 (key, process_instance_key, element_instance_key, message, state,
    created_millis, ended_millis)
    SELECT key, process_instance_key, element_instance_key, message, state, created_millis,
    ended_millis FROM incidents;
DROP TABLE incidents;
ALTER TABLE incidents_v2 RENAME TO incidents;
CREATE INDEX incidents_element ON incidents (element_instance_key);
CREATE INDEX incidents_instance ON incidents (process_instance_key, state);
CREATE TABLE variables_v2 (
    scope_key BIGINT NOT NULL,
    name TEXT NOT NULL,
    process_instance_key BIGINT NOT NULL,
    value TEXT NOT NULL,
    updated_millis BIGINT NOT NULL,
    PRIMARY KEY (scope_key, name)
) WITHOUT ROWID;
INSERT INTO variables_v2 (scope_key, name, process_instance_key, value, updated_millis)
    SELECT scope_key, name, process_instance_key, value, updated_millis FROM variables;
DROP TABLE variables;
ALTER TABLE variables_v2 RENAME TO variables;
CREATE INDEX variables_instance ON variables (process_instance_key);
";

/// Version 3: user tasks, for tasklist queries (`ringflow user-tasks`).
const V3: &str = "
CREATE TABLE user_tasks (
    job_key {KEY} PRIMARY KEY,
    process_instance_key BIGINT NOT NULL,
    element_instance_key BIGINT NOT NULL,
    element_id TEXT NOT NULL,
    assignee TEXT,
    candidate_groups TEXT,
    candidate_users TEXT,
    due_date TEXT,
    follow_up_date TEXT,
    priority BIGINT,
    form_key TEXT,
    denied_reason TEXT,
    created_millis BIGINT NOT NULL
);
CREATE INDEX user_tasks_assignee ON user_tasks (assignee);
CREATE INDEX user_tasks_instance ON user_tasks (process_instance_key);
";

/// One migration, in each dialect (empty: nothing to do there). `{BLOB}` is the byte string
/// type of the dialect.
struct Migration {
    sqlite: &'static str,
    postgres: &'static str,
    /// What it does, for the log line before it runs (a migration that copies rows takes a
    /// while on a big store, and the node starts only after it).
    what: &'static str,
}

/// The migrations, in order: `MIGRATIONS[n - 1]` makes version `n`.
const MIGRATIONS: &[Migration] = &[
    Migration {
        sqlite: V1,
        postgres: V1,
        what: "creates the tables",
    },
    Migration {
        sqlite: V2_SQLITE,
        postgres: "",
        what: "rebuilds the SQLite history tables, copying every row once; the node starts \
               when it is done",
    },
    Migration {
        sqlite: V3,
        postgres: V3,
        what: "adds the user tasks table",
    },
];
const _: () = assert!(MIGRATIONS.len() as i64 == SCHEMA_VERSION);

/// The store's schema version (0 for an empty store).
pub fn version(conn: &mut Conn) -> Result<i64, ColdError> {
    conn.batch("CREATE TABLE IF NOT EXISTS ringflow_schema (version BIGINT NOT NULL)")?;
    let rows = conn.query("SELECT version FROM ringflow_schema", &[])?;
    Ok(rows.first().and_then(|row| row[0].int()).unwrap_or(0))
}

/// The store's schema version without changing anything (0 when it has no schema table).
pub fn version_read_only(conn: &mut Conn) -> Result<i64, ColdError> {
    match conn.query("SELECT version FROM ringflow_schema", &[]) {
        Ok(rows) => Ok(rows.first().and_then(|row| row[0].int()).unwrap_or(0)),
        // SQLite: "no such table: ringflow_schema"; PostgreSQL: relation "ringflow_schema"
        // does not exist. Any other failure (a file that is not a database) is an error.
        Err(error)
            if error.message.contains("no such table: ringflow_schema")
                || error.message.contains("\"ringflow_schema\" does not exist") =>
        {
            Ok(0)
        }
        Err(error) => Err(error),
    }
}

/// Brings the store to [`SCHEMA_VERSION`]; returns the versions it applied. Two nodes that
/// migrate the same PostgreSQL store at once are serialized by an advisory lock; SQLite by
/// its write lock.
pub fn migrate(conn: &mut Conn) -> Result<Vec<i64>, ColdError> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Brings the store to `target` (at most [`SCHEMA_VERSION`]; a store at or past it is left
/// as it is, unless it is newer than this build, which is refused); returns the versions it
/// applied. For tests and tools that need an older schema; the server calls [`migrate`].
pub fn migrate_to(conn: &mut Conn, target: i64) -> Result<Vec<i64>, ColdError> {
    assert!(
        target <= SCHEMA_VERSION,
        "no schema version {target} in this build"
    );
    let postgres = conn.is_postgres();
    conn.batch("CREATE TABLE IF NOT EXISTS ringflow_schema (version BIGINT NOT NULL)")?;
    conn.batch(if postgres {
        "BEGIN; SELECT pg_advisory_xact_lock(7433401)"
    } else {
        "BEGIN IMMEDIATE"
    })?;
    let result = apply(conn, postgres, target);
    match result {
        Ok(applied) => {
            conn.batch("COMMIT")?;
            Ok(applied)
        }
        Err(error) => {
            let _ = conn.batch("ROLLBACK");
            Err(error)
        }
    }
}

fn apply(conn: &mut Conn, postgres: bool, target: i64) -> Result<Vec<i64>, ColdError> {
    let rows = conn.query("SELECT version FROM ringflow_schema", &[])?;
    let current = rows.first().and_then(|row| row[0].int()).unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(ColdError {
            target: conn.target().to_string(),
            message: format!(
                "the store has schema version {current}, newer than this ringflow's \
                 {SCHEMA_VERSION}: upgrade ringflow"
            ),
        });
    }
    if rows.is_empty() {
        conn.execute("INSERT INTO ringflow_schema (version) VALUES (0)", &[])?;
    }
    let blob = if postgres { "BYTEA" } else { "BLOB" };
    let mut applied = Vec::new();
    for (index, migration) in MIGRATIONS.iter().enumerate() {
        let version = index as i64 + 1;
        if version <= current || version > target {
            continue;
        }
        let sql = if postgres {
            migration.postgres
        } else {
            migration.sqlite
        };
        if !sql.is_empty() {
            tracing::info!(
                store = %conn.target(),
                version,
                "migrating the cold store schema: {}",
                migration.what
            );
            // A key column: the rowid in SQLite (see version 2).
            let key = if postgres { "BIGINT" } else { "INTEGER" };
            conn.batch(&sql.replace("{BLOB}", blob).replace("{KEY}", key))?;
        }
        conn.execute(
            "UPDATE ringflow_schema SET version = $1",
            &[Param::Int(Some(version))],
        )?;
        applied.push(version);
    }
    Ok(applied)
}
