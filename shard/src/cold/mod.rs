//! The second level: the cold store, a real database that holds history (deployments,
//! process instances, element instances, jobs, incidents, variables) for people and tools to
//! query, written off the critical path.
//!
//! - [`sql`]: one connection, SQLite (the default: a file per shard in `DATA/cold/`) or
//!   PostgreSQL;
//! - [`schema`]: the versioned schema and its migrations;
//! - [`delta`]: a batch of records' events folded into row changes;
//! - [`exporter`]: the per-shard queue and exporter thread;
//! - [`query`]: what the CLI reads back.
//!
//! # Positions, retention and recovery
//!
//! Each shard's exporter position (the highest journal LSN whose events are in the store) is
//! written in the same transaction as the rows it covers, so a batch is applied once or not
//! at all, and a restarted exporter resumes right after it. The events themselves are not
//! journaled: they are derived by the engine from the journaled commands. So the shard keeps
//! what re-deriving them needs: a snapshot at or before the exporter position (besides the
//! two newest), and the journal segments after it. At startup the shard recovers from that
//! snapshot and hands the events of every record after the position to the exporter again.
//! A store that lost its data (deleted, or replaced by an empty one) gets what the journal
//! still has; the startup log says which LSNs could not be exported.

pub mod delta;
pub mod exporter;
pub mod query;
pub mod schema;
pub mod sql;

use std::path::Path;

pub use delta::ExportRecord;
pub use exporter::{ExportQueue, Exporter};
pub use sql::{ColdError, Conn, Target};

/// What the exporters write to the cold store (`--history-level`).
///
/// `full` writes every element instance; `instances` leaves them out, which is most of the
/// rows (a one-task process writes four element instances, one process instance and one
/// job). Changing the level takes effect for the records exported after the change: element
/// rows written before it stay as they were, so an instance that was active at a change from
/// `full` to `instances` keeps element rows that stay `active`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HistoryLevel {
    /// Deployments, process instances, every element instance (activated, completed or
    /// terminated, with times), jobs, incidents and variables.
    #[default]
    Full,
    /// The same without element instances.
    Instances,
}

impl HistoryLevel {
    /// Every level, by name.
    pub const ALL: [HistoryLevel; 2] = [HistoryLevel::Full, HistoryLevel::Instances];

    /// The level's name, as `--history-level` takes it.
    pub fn name(self) -> &'static str {
        match self {
            HistoryLevel::Full => "full",
            HistoryLevel::Instances => "instances",
        }
    }

    /// Parses a name; the error names the levels there are.
    pub fn parse(text: &str) -> Result<HistoryLevel, String> {
        HistoryLevel::ALL
            .into_iter()
            .find(|level| level.name() == text)
            .ok_or_else(|| format!("history-level must be `full` or `instances`, not `{text}`"))
    }

    /// Whether element instances are written.
    pub fn elements(self) -> bool {
        self == HistoryLevel::Full
    }
}

/// The default cold store's directory in the data directory: SQLite, a file per shard
/// (`DATA/cold/shard-N.db`), so that each shard's exporter writes without waiting for the
/// others.
pub const SQLITE_DIR: &str = "cold";

/// The one SQLite file that data directories made before the file per shard hold
/// (`DATA/cold.db`, shared by the node's shards). Where it exists, the default keeps it.
pub const SQLITE_FILE: &str = "cold.db";

/// The cold store of a data directory when `--cold-store` is not given: `DATA/cold.db` where
/// an earlier ringflow made it, else a file per shard in `DATA/cold/`.
pub fn default_target(data: &Path) -> Target {
    let shared = data.join(SQLITE_FILE);
    if shared.exists() {
        Target::Sqlite(shared)
    } else {
        Target::SqliteShards(data.join(SQLITE_DIR))
    }
}

/// Opens the store (each shard's file, for a file per shard), brings its schema up to date
/// and reads the position of each of `shards`. Returns the positions in the order given.
pub fn prepare(target: &Target, shards: &[u16]) -> Result<Vec<u64>, ColdError> {
    let mut open: Option<(Target, Conn)> = None;
    let mut positions = Vec::with_capacity(shards.len());
    for &shard in shards {
        let store = target.for_shard(shard);
        if open.as_ref().is_none_or(|(opened, _)| *opened != store) {
            let mut conn = Conn::open(&store)?;
            let applied = schema::migrate(&mut conn)?;
            if !applied.is_empty() {
                tracing::info!(store = %store.describe(), ?applied, "cold store schema migrated");
            }
            open = Some((store, conn));
        }
        let (_, conn) = open.as_mut().expect("opened above");
        positions.push(exporter::position(conn, shard)?.0);
    }
    Ok(positions)
}
