//! One connection to the cold store, SQLite or PostgreSQL, behind the few calls the exporter
//! and the CLI need. Statements are written once, with `$1`, `$2`, ... placeholders:
//! PostgreSQL reads them natively; for SQLite they become `?1`, `?2`, ..., its numbered
//! parameters (SQLite would take `$1` as a *named* parameter and number it by first use).
//! Statements must not hold a `$` anywhere else. Every integer column is `BIGINT` so that both
//! hand back `i64`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Where the cold store lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A SQLite file (made when missing), shared by every shard of the node: their
    /// exporters take turns at its one write lock.
    Sqlite(PathBuf),
    /// A directory of SQLite files, one per shard (`shard-N.db`, made when missing): each
    /// shard's exporter writes its own file, so the exporters do not wait for each other.
    /// The default, in `DATA/cold/`.
    SqliteShards(PathBuf),
    /// A PostgreSQL connection string (`postgres://user:password@host/db`).
    Postgres(String),
}

impl Target {
    /// Reads `--cold-store`: `sqlite-shards:DIR`, `sqlite:PATH`, a path ending in `.db`, or a
    /// `postgres://` or `postgresql://` URL.
    pub fn parse(text: &str) -> Result<Target, String> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Target::Postgres(text.to_string()));
        }
        if let Some(dir) = text.strip_prefix("sqlite-shards:") {
            if dir.is_empty() {
                return Err("`sqlite-shards:` needs a directory path after it".to_string());
            }
            return Ok(Target::SqliteShards(PathBuf::from(dir)));
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err("`sqlite:` needs a file path after it".to_string());
            }
            return Ok(Target::Sqlite(PathBuf::from(path)));
        }
        if text.ends_with(".db") || text.ends_with(".sqlite") {
            return Ok(Target::Sqlite(PathBuf::from(text)));
        }
        Err(format!(
            "`{text}` is not a cold store: give `none`, `sqlite-shards:DIR`, `sqlite:PATH`, a \
             path ending in .db, or a postgres:// URL"
        ))
    }

    /// The target for logs, without a password.
    pub fn describe(&self) -> String {
        match self {
            Target::Sqlite(path) => format!("SQLite {}", path.display()),
            Target::SqliteShards(dir) => {
                format!(
                    "SQLite, a file per shard: {}",
                    dir.join(SHARD_FILE_PATTERN).display()
                )
            }
            Target::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    format!("PostgreSQL {}://…{}", &url[..scheme], &url[at..])
                }
                _ => format!("PostgreSQL {url}"),
            },
        }
    }

    /// Which SQL dialect.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Target::Postgres(_))
    }

    /// Where `shard` writes: its own file for [`Target::SqliteShards`], else the target
    /// itself.
    pub fn for_shard(&self, shard: u16) -> Target {
        match self {
            Target::SqliteShards(dir) => Target::Sqlite(dir.join(shard_file(shard))),
            other => other.clone(),
        }
    }

    /// The shard whose file `name` is, for a file of a [`Target::SqliteShards`] directory.
    pub fn shard_of_file(name: &str) -> Option<u16> {
        let digits = name.strip_prefix("shard-")?.strip_suffix(".db")?;
        let shard = digits.parse::<u16>().ok()?;
        (shard_file(shard) == name).then_some(shard)
    }
}

/// How the files of a [`Target::SqliteShards`] directory are named, for messages.
pub const SHARD_FILE_PATTERN: &str = "shard-N.db";

fn shard_file(shard: u16) -> String {
    format!("shard-{shard}.db")
}

/// A failed cold store operation.
#[derive(Debug, thiserror::Error)]
#[error("cold store ({target}): {message}")]
pub struct ColdError {
    /// The store, as [`Target::describe`] says it.
    pub target: String,
    /// What went wrong.
    pub message: String,
}

/// A statement parameter.
#[derive(Clone, Copy, Debug)]
pub enum Param<'a> {
    /// A `BIGINT` (or NULL).
    Int(Option<i64>),
    /// A `TEXT` (or NULL).
    Text(Option<&'a str>),
    /// A `BLOB` / `BYTEA`.
    Bytes(&'a [u8]),
}

/// A value read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl Value {
    /// The integer, or `None` for anything else.
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(value) => Some(*value),
            _ => None,
        }
    }

    /// The text, or `None` for anything else.
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Text(value) => Some(value),
            _ => None,
        }
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match *self {
            Param::Int(Some(value)) => ToSqlOutput::Borrowed(ValueRef::Integer(value)),
            Param::Text(Some(value)) => ToSqlOutput::Borrowed(ValueRef::Text(value.as_bytes())),
            Param::Bytes(value) => ToSqlOutput::Borrowed(ValueRef::Blob(value)),
            Param::Int(None) | Param::Text(None) => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

/// A connection.
pub struct Conn {
    target: String,
    kind: Kind,
}

enum Kind {
    Sqlite(rusqlite::Connection),
    Postgres {
        client: Box<postgres::Client>,
        prepared: HashMap<String, postgres::Statement>,
    },
}

/// How long a SQLite writer waits for another (another shard's exporter) to finish.
pub const SQLITE_BUSY_TIMEOUT_MILLIS: u64 = 30_000;

impl Conn {
    /// Opens a connection. SQLite files are made when missing and run in WAL mode with
    /// `synchronous=FULL`: a committed batch is on disk before the journal may drop it.
    pub fn open(target: &Target) -> Result<Conn, ColdError> {
        let described = target.describe();
        let error = |message: String| ColdError {
            target: described.clone(),
            message,
        };
        let kind = match target {
            Target::Sqlite(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        if parent.exists() && !parent.is_dir() {
                            error(format!(
                                "{} is in the way: a file, not a folder",
                                parent.display()
                            ))
                        } else {
                            error(format!("cannot make {}: {e}", parent.display()))
                        }
                    })?;
                }
                let conn = rusqlite::Connection::open(path).map_err(|e| error(e.to_string()))?;
                conn.busy_timeout(Duration::from_millis(SQLITE_BUSY_TIMEOUT_MILLIS))
                    .map_err(|e| error(e.to_string()))?;
                conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
                    .map_err(|e| error(e.to_string()))?;
                conn.set_prepared_statement_cache_capacity(64);
                Kind::Sqlite(conn)
            }
            Target::SqliteShards(_) => {
                return Err(error(
                    "a file per shard: open one shard's file (Target::for_shard)".to_string(),
                ));
            }
            Target::Postgres(url) => {
                let client = postgres::Client::connect(url, postgres::NoTls)
                    .map_err(|e| error(postgres_message(&e)))?;
                Kind::Postgres {
                    client: Box::new(client),
                    prepared: HashMap::new(),
                }
            }
        };
        Ok(Conn {
            target: described,
            kind,
        })
    }

    /// Opens a SQLite file for reading only (the CLI, beside a running server).
    pub fn open_read_only(target: &Target) -> Result<Conn, ColdError> {
        let Target::Sqlite(path) = target else {
            return Conn::open(target);
        };
        let described = target.describe();
        if !path.exists() {
            return Err(ColdError {
                target: described,
                message: "no such file: has a server with this data directory exported \
                          anything yet?"
                    .to_string(),
            });
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let conn = rusqlite::Connection::open_with_flags(path, flags).map_err(|e| ColdError {
            target: described.clone(),
            message: e.to_string(),
        })?;
        let _ = conn.busy_timeout(Duration::from_millis(SQLITE_BUSY_TIMEOUT_MILLIS));
        Ok(Conn {
            target: described,
            kind: Kind::Sqlite(conn),
        })
    }

    /// The store, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.kind, Kind::Postgres { .. })
    }

    fn error(&self, message: String) -> ColdError {
        ColdError {
            target: self.target.clone(),
            message,
        }
    }

    /// Runs statements without parameters, separated by `;`.
    pub fn batch(&mut self, sql: &str) -> Result<(), ColdError> {
        let result = match &mut self.kind {
            Kind::Sqlite(conn) => conn.execute_batch(sql).map_err(|e| e.to_string()),
            Kind::Postgres { client, .. } => {
                client.batch_execute(sql).map_err(|e| postgres_message(&e))
            }
        };
        result.map_err(|message| self.error(message))
    }

    /// Runs one statement; returns the rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, ColdError> {
        let result = match &mut self.kind {
            Kind::Sqlite(conn) => conn
                .prepare_cached(&sqlite_sql(sql))
                .and_then(|mut statement| statement.execute(rusqlite::params_from_iter(params)))
                .map(|rows| rows as u64)
                .map_err(|e| e.to_string()),
            Kind::Postgres { client, prepared } => postgres_statement(client, prepared, sql)
                .and_then(|statement| {
                    let values = postgres_params(params);
                    let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                        values.iter().map(|value| value.as_ref()).collect();
                    client
                        .execute(&statement, &refs)
                        .map_err(|e| postgres_message(&e))
                }),
        };
        result.map_err(|message| self.error(format!("{message} (in `{}`)", first_line(sql))))
    }

    /// Runs a query; returns its rows.
    pub fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Vec<Value>>, ColdError> {
        let result = match &mut self.kind {
            Kind::Sqlite(conn) => sqlite_query(conn, sql, params).map_err(|e| e.to_string()),
            Kind::Postgres { client, prepared } => postgres_statement(client, prepared, sql)
                .and_then(|statement| {
                    let values = postgres_params(params);
                    let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                        values.iter().map(|value| value.as_ref()).collect();
                    let rows = client
                        .query(&statement, &refs)
                        .map_err(|e| postgres_message(&e))?;
                    rows.iter().map(postgres_row).collect()
                }),
        };
        result.map_err(|message| self.error(format!("{message} (in `{}`)", first_line(sql))))
    }
}

/// `$n` placeholders as SQLite's numbered `?n`.
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

/// The longest statement text an error quotes.
const QUOTED_SQL_CHARS_MAX: usize = 160;

/// A statement as an error quotes it: its first line, a multi-row `VALUES` list cut after its
/// first row, and at most [`QUOTED_SQL_CHARS_MAX`] characters.
fn first_line(sql: &str) -> String {
    let line = sql.trim().lines().next().unwrap_or("");
    let mut quoted = match line.find("), (") {
        Some(end) if line.contains(" VALUES (") => format!("{}), …", &line[..end]),
        _ => line.to_string(),
    };
    if let Some((cut, _)) = quoted.char_indices().nth(QUOTED_SQL_CHARS_MAX) {
        quoted.truncate(cut);
        quoted.push('…');
    }
    quoted
}

fn sqlite_query(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[Param<'_>],
) -> rusqlite::Result<Vec<Vec<Value>>> {
    let mut statement = conn.prepare_cached(&sqlite_sql(sql))?;
    let columns = statement.column_count();
    let mut rows = statement.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns);
        for index in 0..columns {
            use rusqlite::types::ValueRef;
            values.push(match row.get_ref(index)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(value) => Value::Int(value),
                ValueRef::Real(value) => Value::Text(value.to_string()),
                ValueRef::Text(text) => Value::Text(String::from_utf8_lossy(text).into_owned()),
                ValueRef::Blob(bytes) => Value::Bytes(bytes.to_vec()),
            });
        }
        out.push(values);
    }
    Ok(out)
}

fn postgres_message(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => error.to_string(),
    }
}

fn postgres_statement(
    client: &mut postgres::Client,
    prepared: &mut HashMap<String, postgres::Statement>,
    sql: &str,
) -> Result<postgres::Statement, String> {
    if let Some(statement) = prepared.get(sql) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(sql).map_err(|e| postgres_message(&e))?;
    prepared.insert(sql.to_string(), statement.clone());
    Ok(statement)
}

fn postgres_params<'a>(params: &[Param<'a>]) -> Vec<Box<dyn postgres::types::ToSql + Sync + 'a>> {
    params
        .iter()
        .map(|param| -> Box<dyn postgres::types::ToSql + Sync + 'a> {
            match *param {
                Param::Int(value) => Box::new(value),
                Param::Text(value) => Box::new(value),
                Param::Bytes(value) => Box::new(value),
            }
        })
        .collect()
}

fn postgres_row(row: &postgres::Row) -> Result<Vec<Value>, String> {
    use postgres::types::Type;
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let kind = column.type_();
        let value = if *kind == Type::INT8 {
            row.try_get::<_, Option<i64>>(index)
                .map(|v| v.map(Value::Int))
        } else if *kind == Type::INT4 {
            row.try_get::<_, Option<i32>>(index)
                .map(|v| v.map(|v| Value::Int(i64::from(v))))
        } else if *kind == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(index)
                .map(|v| v.map(Value::Bytes))
        } else {
            row.try_get::<_, Option<String>>(index)
                .map(|v| v.map(Value::Text))
        };
        values.push(
            value
                .map_err(|e| format!("column {}: {e}", column.name()))?
                .unwrap_or(Value::Null),
        );
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_quote_a_statement_short() {
        assert_eq!(first_line("SELECT 1\nFROM t"), "SELECT 1");
        let many =
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6) ON CONFLICT DO NOTHING";
        assert_eq!(first_line(many), "INSERT INTO t (a, b) VALUES ($1, $2), …");
        let long = format!("SELECT {}", "x, ".repeat(100));
        let quoted = first_line(&long);
        assert_eq!(quoted.chars().count(), QUOTED_SQL_CHARS_MAX + 1);
        assert!(quoted.ends_with('…'));
    }

    #[test]
    fn cold_store_targets_parse_and_a_file_per_shard_names_each_shards_file() {
        let dir = PathBuf::from("data/cold");
        assert_eq!(
            Target::parse("sqlite-shards:data/cold"),
            Ok(Target::SqliteShards(dir.clone()))
        );
        assert!(Target::parse("sqlite-shards:").is_err());
        assert_eq!(
            Target::parse("sqlite:x.db"),
            Ok(Target::Sqlite(PathBuf::from("x.db")))
        );
        let error = Target::parse("mysql://db").expect_err("not a store");
        assert!(error.contains("sqlite-shards:DIR"), "{error}");
        let shards = Target::SqliteShards(dir.clone());
        assert_eq!(shards.for_shard(7), Target::Sqlite(dir.join("shard-7.db")));
        let one = Target::Sqlite(PathBuf::from("cold.db"));
        assert_eq!(one.for_shard(7), one);
        assert_eq!(Target::shard_of_file("shard-7.db"), Some(7));
        assert_eq!(Target::shard_of_file("shard-65535.db"), Some(65_535));
        for name in [
            "shard-07.db",
            "shard-+7.db",
            "shard-.db",
            "shard-65536.db",
            "shard-7.db-wal",
            "cold.db",
        ] {
            assert_eq!(Target::shard_of_file(name), None, "{name}");
        }
        assert!(shards.describe().contains("shard-N.db"));
        let opened = Conn::open(&shards)
            .err()
            .expect("a directory is not one database");
        assert!(opened.message.contains("file per shard"), "{opened}");
        // A file where the folder of the files should be is named as such.
        let root = std::env::temp_dir().join(format!("ringflow-sql-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("cold"), b"").unwrap();
        let blocked = Target::SqliteShards(root.join("cold")).for_shard(0);
        let refused = Conn::open(&blocked).err().expect("no folder for the files");
        assert!(refused.message.contains("in the way"), "{refused}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
