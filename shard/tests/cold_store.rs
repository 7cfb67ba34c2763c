//! The cold store against the engine: seeded random workloads over the bundled order model
//! (gateways, a parallel split, a message wait with a timer boundary, a call activity),
//! exported with crashes at random moments (before a commit, and after a commit before the
//! shard learns of it), must leave the store matching the engine's state: every live
//! instance, element, job, incident and variable, every ended instance with its history, and
//! every record applied exactly once.
//!
//! Every test runs on SQLite and on PostgreSQL. PostgreSQL needs `RINGFLOW_TEST_POSTGRES`
//! (a connection URL; `.ci/test` installs and starts a server and sets it); without it the
//! PostgreSQL half is skipped with a message, unless `RINGFLOW_REQUIRE_POSTGRES=1`, in which
//! case it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ringflow_core::{
    Command, Ctx, Event, JobState, Key, ProcessRef, Resource, State, Variables, process,
};
use ringflow_shard::cold::sql::{Conn, Param, Target};
use ringflow_shard::cold::{
    ExportQueue, ExportRecord, Exporter, HistoryLevel, exporter, query, schema,
};

const SHARD: u16 = 1;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn order_model() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../bpmn/models/order-process.bpmn"
    );
    std::fs::read_to_string(path).expect("the bundled order model")
}

const PARENT_MODEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="parent-defs">
  <bpmn:process id="parent" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="call"/>
    <bpmn:callActivity id="call">
      <bpmn:extensionElements>
        <zeebe:calledElement processId="order-process" propagateAllChildVariables="true"/>
      </bpmn:extensionElements>
    </bpmn:callActivity>
    <bpmn:sequenceFlow id="f2" sourceRef="call" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>"#;

/// A workload: the engine's final state and the export records of its accepted commands.
struct Workload {
    state: State,
    records: Vec<ExportRecord>,
}

fn vars(json: &str) -> Variables {
    serde_json::from_str(json).expect("test variables")
}

fn workload(seed: u64, commands: usize) -> Workload {
    workload_on(SHARD, seed, commands)
}

/// [`workload`] on shard `shard`: its keys in the shard's key range.
fn workload_on(shard: u16, seed: u64, commands: usize) -> Workload {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut state = State::new(shard);
    let mut now = 1_700_000_000_000i64;
    let mut records = Vec::new();
    let mut lsn = 0u64;
    let mut run = |state: &mut State, now: i64, command: Command, records: &mut Vec<_>| {
        let ctx = Ctx {
            now_millis: now,
            next_key: state.last_key().next().expect("keys"),
        };
        if let Ok(outcome) = process(state, command, &ctx) {
            lsn += 1;
            records.push(ExportRecord {
                lsn,
                now_millis: now,
                events: outcome.events,
            });
        }
    };
    let resources = vec![
        Resource {
            name: "order-process.bpmn".to_string(),
            content: Arc::from(order_model().as_bytes()),
        },
        Resource {
            name: "parent.bpmn".to_string(),
            content: Arc::from(PARENT_MODEL.as_bytes()),
        },
    ];
    run(&mut state, now, Command::Deploy { resources }, &mut records);
    let job_types = [
        "check-stock",
        "charge-payment",
        "reserve-items",
        "notify-customer",
        "escalate-shipment",
    ];
    let mut order_ids = 0u64;
    for _ in 0..commands {
        now += rng.below(400) as i64;
        let command = match rng.below(100) {
            0..=17 => {
                order_ids += 1;
                let process = if rng.chance(25) {
                    "parent"
                } else {
                    "order-process"
                };
                Command::CreateInstance {
                    process: ProcessRef::Latest(process.to_string()),
                    variables: vars(&format!(
                        r#"{{"orderId": "o-{order_ids}", "amount": {}}}"#,
                        rng.below(500)
                    )),
                    business_key: rng.chance(30).then(|| format!("b-{order_ids}")),
                    await_result: false,
                }
            }
            18..=39 => Command::ActivateJobs {
                job_type: job_types[rng.below(job_types.len() as u64) as usize].to_string(),
                worker: "w".to_string(),
                max_jobs: 1 + rng.below(4) as u32,
                lease_millis: 60_000,
                fetch_variables: Vec::new(),
            },
            40..=64 => {
                let Some(key) = pick(&mut rng, activated_jobs(&state)) else {
                    continue;
                };
                let in_stock = !rng.chance(15);
                Command::CompleteJob {
                    key,
                    variables: vars(&format!(
                        r#"{{"inStock": {in_stock}, "step{}": "done"}}"#,
                        rng.below(3)
                    )),
                }
            }
            65..=71 => {
                let Some(key) = pick(&mut rng, activated_jobs(&state)) else {
                    continue;
                };
                Command::FailJob {
                    key,
                    retries: rng.below(2) as u32,
                    retry_backoff_millis: 0,
                    message: "worker failed".to_string(),
                }
            }
            72..=76 => {
                let failed: Vec<Key> = state
                    .jobs()
                    .filter(|job| matches!(job.state, JobState::Failed))
                    .map(|job| job.key)
                    .collect();
                let Some(key) = pick(&mut rng, failed) else {
                    continue;
                };
                Command::UpdateJobRetries { key, retries: 2 }
            }
            77..=81 => {
                let incidents: Vec<Key> = state.incidents().map(|i| i.key).collect();
                let Some(key) = pick(&mut rng, incidents) else {
                    continue;
                };
                Command::ResolveIncident { key }
            }
            82..=91 => Command::PublishMessage {
                name: "shipment-confirmed".to_string(),
                correlation_key: format!("o-{}", 1 + rng.below(order_ids.max(1))),
                variables: vars(r#"{"shipped": true}"#),
                ttl_millis: if rng.chance(50) { 0 } else { 10_000 },
                message_id: None,
            },
            92..=95 => {
                let roots: Vec<Key> = state
                    .instances()
                    .filter(|instance| instance.parent.is_none())
                    .map(|instance| instance.key)
                    .collect();
                let Some(key) = pick(&mut rng, roots) else {
                    continue;
                };
                Command::CancelInstance { key }
            }
            96..=97 => {
                let roots: Vec<Key> = state.instances().map(|instance| instance.key).collect();
                let Some(scope) = pick(&mut rng, roots) else {
                    continue;
                };
                Command::SetVariables {
                    scope,
                    variables: vars(&format!(r#"{{"note": "n{}"}}"#, rng.below(100))),
                    local: false,
                }
            }
            _ => {
                // An hour passes: shipment timers fire.
                now += 3_600_001;
                let due: Vec<Key> = state
                    .timers()
                    .filter(|timer| timer.due_millis <= now)
                    .map(|timer| timer.key)
                    .collect();
                for key in due {
                    run(&mut state, now, Command::TriggerTimer { key }, &mut records);
                }
                continue;
            }
        };
        run(&mut state, now, command, &mut records);
    }
    Workload { state, records }
}

fn activated_jobs(state: &State) -> Vec<Key> {
    state
        .jobs()
        .filter(|job| matches!(job.state, JobState::Activated { .. }))
        .map(|job| job.key)
        .collect()
}

fn pick(rng: &mut Rng, keys: Vec<Key>) -> Option<Key> {
    if keys.is_empty() {
        return None;
    }
    Some(keys[rng.below(keys.len() as u64) as usize])
}

/// Test stores: a fresh SQLite file, and a fresh PostgreSQL schema when a server is given.
fn targets(name: &str) -> Vec<(Target, Option<tempdir::Dir>)> {
    let dir = tempdir::Dir::new(name);
    let mut targets = vec![(Target::Sqlite(dir.path().join("cold.db")), Some(dir))];
    match std::env::var("RINGFLOW_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => targets.push((postgres_schema(&url, name), None)),
        _ => {
            assert!(
                std::env::var("RINGFLOW_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "RINGFLOW_REQUIRE_POSTGRES=1 but RINGFLOW_TEST_POSTGRES is not set"
            );
            eprintln!("{name}: PostgreSQL skipped (set RINGFLOW_TEST_POSTGRES to run it)");
        }
    }
    targets
}

fn postgres_schema(url: &str, name: &str) -> Target {
    let schema = format!(
        "t_{}_{}_{}",
        name,
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let mut conn = Conn::open(&Target::Postgres(url.to_string())).expect("PostgreSQL reachable");
    conn.batch(&format!("CREATE SCHEMA {schema}"))
        .expect("create schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    Target::Postgres(format!("{url}{separator}options=-csearch_path%3D{schema}"))
}

/// Compares the store with the engine's state and the records' events.
fn assert_store_matches(target: &Target, workload: &Workload) {
    let mut conn = Conn::open(target).expect("open");
    let last = workload.records.last().map_or(0, |r| r.lsn);
    let (lsn, records) = exporter::position(&mut conn, SHARD).expect("position");
    assert_eq!(lsn, last, "the position reaches the last record");
    assert_eq!(
        records,
        workload.records.len() as u64,
        "every record applied exactly once"
    );
    let state = &workload.state;
    let set = |conn: &mut Conn, sql: &str| -> BTreeSet<u64> {
        conn.query(sql, &[])
            .expect(sql)
            .iter()
            .map(|row| row[0].int().expect("key") as u64)
            .collect()
    };
    let live: BTreeSet<u64> = state.instances().map(|i| i.key.0).collect();
    assert_eq!(
        set(
            &mut conn,
            "SELECT key FROM process_instances WHERE state = 'active'"
        ),
        live,
        "active instances"
    );
    let created = workload
        .records
        .iter()
        .flat_map(|r| &r.events)
        .filter(|e| matches!(e, Event::InstanceCreated { .. }))
        .count();
    assert_eq!(
        set(&mut conn, "SELECT key FROM process_instances").len(),
        created,
        "every instance ever created"
    );
    let ended_elements_open = set(
        &mut conn,
        "SELECT e.key FROM element_instances e JOIN process_instances i \
         ON i.key = e.process_instance_key WHERE i.state <> 'active' AND e.state = 'active'",
    );
    assert!(
        ended_elements_open.is_empty(),
        "ended instances have no active elements: {ended_elements_open:?}"
    );
    let completed = set(
        &mut conn,
        "SELECT key FROM process_instances WHERE state = 'completed'",
    );
    assert!(!completed.is_empty(), "the workload completes instances");
    for key in completed.iter().take(20) {
        let detail = query::instance(&mut conn, Key(*key))
            .expect("query")
            .expect("a completed instance is in the store");
        assert!(detail.elements.len() >= 3, "history of {key}: {detail:?}");
        assert!(detail.instance.end_millis.is_some());
    }
    let elements: BTreeSet<u64> = state.element_instances().map(|e| e.key.0).collect();
    assert_eq!(
        set(
            &mut conn,
            "SELECT key FROM element_instances WHERE state = 'active'"
        ),
        elements,
        "active element instances"
    );
    let jobs: BTreeMap<u64, i64> = state
        .jobs()
        .map(|job| (job.key.0, i64::from(job.retries)))
        .collect();
    let stored_jobs: BTreeMap<u64, i64> = conn
        .query(
            "SELECT key, retries FROM jobs WHERE state IN ('created', 'failed')",
            &[],
        )
        .expect("jobs")
        .iter()
        .map(|row| {
            (
                row[0].int().expect("key") as u64,
                row[1].int().expect("retries"),
            )
        })
        .collect();
    assert_eq!(stored_jobs, jobs, "open jobs and their retries");
    let incidents: BTreeSet<u64> = state.incidents().map(|i| i.key.0).collect();
    assert_eq!(
        set(&mut conn, "SELECT key FROM incidents WHERE state = 'open'"),
        incidents,
        "open incidents"
    );
    let mut checked = 0;
    for element in state.element_instances() {
        let Some(document) = state.variables(element.key) else {
            continue;
        };
        for (name, value) in document {
            let rows = conn
                .query(
                    "SELECT value FROM variables WHERE scope_key = $1 AND name = $2",
                    &[
                        Param::Int(Some(element.key.0 as i64)),
                        Param::Text(Some(name)),
                    ],
                )
                .expect("variables");
            let stored = rows
                .first()
                .and_then(|row| row[0].text())
                .unwrap_or_else(|| panic!("variable {name} of {} missing", element.key));
            let stored: serde_json::Value = serde_json::from_str(stored).expect("JSON");
            assert_eq!(&stored, value, "variable {name} of scope {}", element.key);
            checked += 1;
        }
    }
    assert!(checked > 0, "the workload leaves variables to compare");
}

#[test]
fn exports_with_crashes_match_the_engine() {
    for seed in 1..=3u64 {
        let workload = workload(seed, 600);
        for (target, _dir) in targets(&format!("crash{seed}")) {
            let mut conn = Conn::open(&target).expect("open");
            schema::migrate(&mut conn).expect("migrate");
            drop(conn);
            let mut rng = Rng(seed * 7919);
            let records = &workload.records;
            let last = records.last().expect("records").lsn;
            let mut exporter = Exporter::open(&target, SHARD).expect("exporter");
            let mut next = 0usize;
            let (mut crashes, mut replays) = (0, 0);
            while exporter.position() < last {
                let count = 1 + rng.below(40) as usize;
                let batch = &records[next..(next + count).min(records.len())];
                let reach = batch.last().expect("a record").lsn;
                if rng.chance(15) && reach > exporter.position() {
                    // Crash before the commit: nothing of the batch may stay.
                    exporter.fail_before_commit = true;
                    assert!(exporter.export(batch, reach).is_err());
                    exporter = Exporter::open(&target, SHARD).expect("restart");
                    crashes += 1;
                } else {
                    exporter.export(batch, reach).expect("export");
                    if rng.chance(10) {
                        // Crash after the commit, before the shard heard of it: the shard
                        // sends from its older position again.
                        exporter = Exporter::open(&target, SHARD).expect("restart");
                        next = next.saturating_sub(rng.below(60) as usize);
                        replays += 1;
                        continue;
                    }
                }
                next = records.partition_point(|r| r.lsn <= exporter.position());
            }
            assert!(
                crashes > 0 && replays > 0,
                "the seed exercises both crashes"
            );
            assert_store_matches(&target, &workload);
        }
    }
}

#[test]
fn the_exporter_thread_drains_its_queue_and_resumes_from_its_position() {
    let workload = workload(11, 400);
    for (target, _dir) in targets("thread") {
        let mut conn = Conn::open(&target).expect("open");
        schema::migrate(&mut conn).expect("migrate");
        drop(conn);
        let records = &workload.records;
        let half = records.len() / 2;
        // First run: half the records, in commit-sized pushes.
        let queue = ExportQueue::new(SHARD, 0);
        let thread = exporter::spawn(target.clone(), Arc::clone(&queue), HistoryLevel::Full, None)
            .expect("spawn");
        for chunk in records[..half].chunks(7) {
            queue.push(chunk.to_vec(), chunk.last().expect("chunk").lsn);
        }
        let half_lsn = records[half - 1].lsn;
        assert!(queue.wait_exported(half_lsn, Duration::from_secs(60)));
        queue.close();
        thread.join().expect("the exporter thread ends");
        // Second run: the shard resends from an older point; the store keeps each once.
        let mut conn = Conn::open(&target).expect("open");
        let (position, _) = exporter::position(&mut conn, SHARD).expect("position");
        assert_eq!(position, half_lsn);
        let queue = ExportQueue::new(SHARD, position);
        let thread = exporter::spawn(target.clone(), Arc::clone(&queue), HistoryLevel::Full, None)
            .expect("spawn");
        queue.push(
            records[half / 2..].to_vec(),
            records.last().expect("last").lsn,
        );
        assert!(queue.wait_exported(records.last().expect("last").lsn, Duration::from_secs(60)));
        assert_eq!(queue.lag(), 0);
        queue.close();
        thread.join().expect("the exporter thread ends");
        assert_store_matches(&target, &workload);
    }
}

#[test]
fn schema_is_versioned_and_a_newer_store_is_refused() {
    for (target, _dir) in targets("schema") {
        let mut conn = Conn::open(&target).expect("open");
        assert_eq!(schema::version(&mut conn).expect("version"), 0);
        assert_eq!(schema::migrate(&mut conn).expect("migrate"), [1, 2, 3]);
        assert!(schema::migrate(&mut conn).expect("again").is_empty());
        assert_eq!(
            schema::version(&mut conn).expect("version"),
            schema::SCHEMA_VERSION
        );
        conn.execute("UPDATE ringflow_schema SET version = 99", &[])
            .expect("pretend a newer ringflow wrote it");
        let error = schema::migrate(&mut conn).expect_err("newer store");
        assert!(error.to_string().contains("schema version 99"), "{error}");
    }
}

#[test]
fn a_version_1_store_migrates_to_version_2_with_its_rows() {
    let workload = workload(21, 500);
    let records = &workload.records;
    let half = records.len() / 2;
    for (target, _dir) in targets("v1_to_v2") {
        // A store of version 1 with the first half of the history in it.
        let mut conn = Conn::open(&target).expect("open");
        assert_eq!(schema::migrate_to(&mut conn, 1).expect("to 1"), [1]);
        drop(conn);
        let mut exporter = Exporter::open(&target, SHARD).expect("exporter");
        exporter
            .export(&records[..half], records[half - 1].lsn)
            .expect("export into version 1");
        drop(exporter);
        let mut conn = Conn::open(&target).expect("open");
        let counts = |conn: &mut Conn| -> Vec<i64> {
            [
                "process_instances",
                "element_instances",
                "jobs",
                "variables",
            ]
            .iter()
            .map(|table| {
                let rows = conn
                    .query(&format!("SELECT COUNT(*) FROM {table}"), &[])
                    .expect("count");
                rows[0][0].int().expect("a count")
            })
            .collect()
        };
        let indexes = |conn: &mut Conn| -> Vec<String> {
            if conn.is_postgres() {
                return Vec::new();
            }
            conn.query(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
                 ORDER BY name",
                &[],
            )
            .expect("indexes")
            .iter()
            .map(|row| row[0].text().expect("a name").to_string())
            .collect()
        };
        let before = counts(&mut conn);
        assert!(before.iter().all(|count| *count > 0), "{before:?}");
        let indexes_before = indexes(&mut conn);
        assert_eq!(schema::migrate_to(&mut conn, 2).expect("to 2"), [2]);
        assert_eq!(counts(&mut conn), before, "the migration keeps every row");
        assert_eq!(
            indexes(&mut conn),
            indexes_before,
            "every index is made again"
        );
        if !conn.is_postgres() {
            // SQLite: the key is the rowid, and variables have none.
            for table in [
                "process_instances",
                "element_instances",
                "jobs",
                "incidents",
            ] {
                let columns = conn
                    .query(&format!("PRAGMA table_info({table})"), &[])
                    .expect("table_info");
                let key = columns
                    .iter()
                    .find(|column| column[1].text() == Some("key"))
                    .expect("a key column");
                assert_eq!(key[2].text(), Some("INTEGER"), "{table}");
                assert_eq!(key[5].int(), Some(1), "{table}: key is the primary key");
            }
            let sql = conn
                .query(
                    "SELECT sql FROM sqlite_master WHERE name = 'variables'",
                    &[],
                )
                .expect("sqlite_master");
            let sql = sql[0][0].text().expect("its SQL");
            assert!(sql.contains("WITHOUT ROWID"), "{sql}");
            assert_eq!(indexes(&mut conn).len(), 8, "{:?}", indexes(&mut conn));
        }
        drop(conn);
        // The exporter goes on where it was, into the new tables, and the store matches.
        let mut exporter = Exporter::open(&target, SHARD).expect("exporter");
        assert_eq!(exporter.position(), records[half - 1].lsn);
        exporter
            .export(&records[half..], records.last().expect("last").lsn)
            .expect("export into version 2");
        drop(exporter);
        assert_store_matches(&target, &workload);
    }
}

/// A temporary directory removed on drop (std only).
mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(name: &str) -> Dir {
            let path = std::env::temp_dir().join(format!(
                "ringflow-cold-{name}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            ));
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Every row of each history table, by table, in key order.
type HistoryRows = Vec<(&'static str, Vec<Vec<ringflow_shard::cold::sql::Value>>)>;

/// Every row of the history tables, in key order.
fn history_rows(conn: &mut Conn) -> HistoryRows {
    [
        (
            "process_instances",
            "SELECT * FROM process_instances ORDER BY key",
        ),
        (
            "element_instances",
            "SELECT * FROM element_instances ORDER BY key",
        ),
        ("jobs", "SELECT * FROM jobs ORDER BY key"),
        ("incidents", "SELECT * FROM incidents ORDER BY key"),
        (
            "variables",
            "SELECT * FROM variables ORDER BY scope_key, name",
        ),
    ]
    .into_iter()
    .map(|(table, sql)| (table, conn.query(sql, &[]).expect(sql)))
    .collect()
}

/// Exports `records` into `target` (migrated first) at `history`, in batches of 1 to
/// `batch_max` records whose sizes `seed` draws, and reads every history row back.
fn export_in_batches(
    target: &Target,
    records: &[ExportRecord],
    history: HistoryLevel,
    batch_max: u64,
    seed: u64,
) -> HistoryRows {
    let mut conn = Conn::open(target).expect("open");
    schema::migrate(&mut conn).expect("migrate");
    drop(conn);
    let mut exporter = Exporter::open(target, SHARD)
        .expect("exporter")
        .with_history(history);
    let mut rng = Rng(seed);
    let mut next = 0;
    while next < records.len() {
        let count = 1 + rng.below(batch_max) as usize;
        let batch = &records[next..(next + count).min(records.len())];
        exporter
            .export(batch, batch.last().expect("a record").lsn)
            .expect("export");
        next += batch.len();
    }
    drop(exporter);
    history_rows(&mut Conn::open(target).expect("open"))
}

/// A batch folds its records' events (a row that begins and ends in it is written once, a
/// job keeps only its last change): whatever the batch sizes, every row of every history
/// table must come out as when each record is applied on its own.
#[test]
fn batches_of_any_size_leave_the_same_rows_as_one_record_at_a_time() {
    for seed in [5u64, 6] {
        let workload = workload(seed, 600);
        let records = &workload.records;
        let mut stores = Vec::new();
        for (name, batch_max, sizes) in [("single", 1, 1), ("folded", 120, seed * 104_729)] {
            for (target, dir) in targets(&format!("fold{seed}{name}")) {
                let rows =
                    export_in_batches(&target, records, HistoryLevel::Full, batch_max, sizes);
                stores.push((name, target.is_postgres(), rows, dir));
            }
        }
        let completed_jobs = stores[0].2[2]
            .1
            .iter()
            .filter(|row| row[4].text() == Some("completed"))
            .count();
        assert!(completed_jobs > 0, "the workload completes jobs");
        for postgres in [false, true] {
            let mut pair = stores.iter().filter(|store| store.1 == postgres);
            let (Some(single), Some(folded)) = (pair.next(), pair.next()) else {
                continue;
            };
            for ((table, one), (_, many)) in single.2.iter().zip(&folded.2) {
                assert!(!one.is_empty(), "{table}: the workload writes rows");
                assert_eq!(
                    one.len(),
                    many.len(),
                    "{table}: rows (PostgreSQL {postgres})"
                );
                for (a, b) in one.iter().zip(many) {
                    assert_eq!(a, b, "{table}: a row (PostgreSQL {postgres})");
                }
            }
        }
    }
}

/// `instances` writes every row `full` writes but the element instances, and those not at
/// all (the same records in the same batches into two stores).
#[test]
fn history_level_instances_writes_everything_but_the_element_instances() {
    let workload = workload(8, 600);
    let records = &workload.records;
    let mut stores = Vec::new();
    for history in HistoryLevel::ALL {
        for (target, dir) in targets(&format!("level{}", history.name())) {
            let rows = export_in_batches(&target, records, history, 60, 31);
            stores.push((history, target.is_postgres(), rows, dir));
        }
    }
    for postgres in [false, true] {
        let mut pair = stores.iter().filter(|store| store.1 == postgres);
        let (Some(full), Some(instances)) = (pair.next(), pair.next()) else {
            continue;
        };
        assert_eq!(
            (full.0, instances.0),
            (HistoryLevel::Full, HistoryLevel::Instances)
        );
        for ((table, all), (_, kept)) in full.2.iter().zip(&instances.2) {
            assert!(!all.is_empty(), "{table}: the workload writes rows");
            if *table == "element_instances" {
                assert!(kept.is_empty(), "no element instances at `instances`");
            } else {
                assert_eq!(all, kept, "{table} (PostgreSQL {postgres})");
            }
        }
    }
}

/// `ringflow instances` lists newest first (start time, then key, descending) over every
/// shard of the store: each shard's newest by walking its key range backwards, merged. The
/// same two shards' records exported into one shared database and into a file per shard
/// must list exactly what sorting all their instances gives, for every filter and limit.
#[test]
fn listing_walks_each_shards_keys_and_merges_them_newest_first() {
    let shards = [0u16, 3];
    let workloads: Vec<Workload> = shards
        .iter()
        .map(|&shard| workload_on(shard, 40 + u64::from(shard), 500))
        .collect();
    let dir = tempdir::Dir::new("listing-shards");
    let mut stores = targets("listing");
    stores.push((Target::SqliteShards(dir.path().join("cold")), None));
    for (target, _dir) in &stores {
        ringflow_shard::cold::prepare(target, &shards).expect("prepare");
        for (shard, workload) in shards.iter().zip(&workloads) {
            let mut exporter = Exporter::open(target, *shard).expect("exporter");
            for batch in workload.records.chunks(97) {
                exporter
                    .export(batch, batch.last().expect("a record").lsn)
                    .expect("export");
            }
        }
        // Every instance with its start, state and open incidents, from the store itself.
        let mut all: Vec<(i64, i64, String, i64)> = Vec::new();
        for shard in shards {
            let mut conn = Conn::open(&target.for_shard(shard)).expect("open");
            let rows = conn
                .query(
                    "SELECT i.key, i.start_millis, i.state, (SELECT COUNT(*) FROM incidents n \
                     WHERE n.process_instance_key = i.key AND n.state = 'open') \
                     FROM process_instances i",
                    &[],
                )
                .expect("rows");
            for row in rows {
                let key = row[0].int().expect("key");
                if Key(key as u64).shard() == shard {
                    all.push((
                        row[1].int().expect("start"),
                        key,
                        row[2].text().expect("state").to_string(),
                        row[3].int().expect("count"),
                    ));
                }
            }
        }
        all.sort_by_key(|(start, key, _, _)| std::cmp::Reverse((*start, *key)));
        for shard in shards {
            assert!(
                all.iter().any(|row| Key(row.1 as u64).shard() == shard),
                "{}: shard {shard} has instances",
                target.describe()
            );
        }
        let mut store = query::Store::open_read_only(target).expect("store");
        for filter in [
            None,
            Some(query::StateFilter::Active),
            Some(query::StateFilter::Completed),
            Some(query::StateFilter::Terminated),
            Some(query::StateFilter::Incident),
        ] {
            let wanted: Vec<i64> = all
                .iter()
                .filter(|(_, _, state, incidents)| match filter {
                    None => true,
                    Some(query::StateFilter::Active) => state == "active",
                    Some(query::StateFilter::Completed) => state == "completed",
                    Some(query::StateFilter::Terminated) => state == "terminated",
                    Some(query::StateFilter::Incident) => state == "active" && *incidents > 0,
                })
                .map(|row| row.1)
                .collect();
            assert!(!wanted.is_empty(), "{filter:?}: the workloads make some");
            for limit in [1, 7, wanted.len() as u64, 100_000] {
                let listed: Vec<i64> = store
                    .instances(filter, None, limit)
                    .expect("list")
                    .iter()
                    .map(|row| row.key.0 as i64)
                    .collect();
                let expected = &wanted[..wanted.len().min(limit as usize)];
                assert_eq!(
                    listed,
                    expected,
                    "{} {filter:?} limit {limit}",
                    target.describe()
                );
            }
        }
        // A process filter keeps the order: the parent process's instances alone.
        let parents = store
            .instances(None, Some("parent"), 100_000)
            .expect("list");
        assert!(!parents.is_empty());
        assert!(parents.iter().all(|row| row.bpmn_process_id == "parent"));
        // A process the store has no definition of lists nothing (without a walk).
        assert!(
            store
                .instances(None, Some("no-such-process"), 100_000)
                .expect("list")
                .is_empty()
        );
        assert!(parents.windows(2).all(
            |w| (w[0].start_millis, w[0].key.0 as i64) > (w[1].start_millis, w[1].key.0 as i64)
        ));
    }
}

/// Two user tasks in a row: `triage` for the sales group, then `approve` assigned to the
/// instance's `owner`, with a due date and a form.
const TASKS_MODEL: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
  <bpmn:process id="tasks" isExecutable="true">
    <bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="triage"/>
    <bpmn:userTask id="triage"><bpmn:extensionElements><zeebe:userTask/>
      <zeebe:assignmentDefinition candidateGroups="=groups"/></bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f2" sourceRef="triage" targetRef="approve"/>
    <bpmn:userTask id="approve"><bpmn:extensionElements>
      <zeebe:assignmentDefinition assignee="=owner" candidateUsers="kim"/>
      <zeebe:taskSchedule dueDate="2026-12-24T12:00:00Z"/>
      <zeebe:formDefinition formKey="camunda-forms:bpmn:approval"/></bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f3" sourceRef="approve" targetRef="e"/><bpmn:endEvent id="e"/>
  </bpmn:process>
</bpmn:definitions>"#;

#[test]
fn user_tasks_are_recorded_and_listed_like_a_tasklist() {
    let mut state = State::new(SHARD);
    let mut records = Vec::new();
    let mut now = 1_800_000_000_000i64;
    let mut run = |state: &mut State, command: Command, records: &mut Vec<ExportRecord>| {
        now += 1_000;
        let ctx = Ctx {
            now_millis: now,
            next_key: state.last_key().next().expect("keys"),
        };
        let outcome = process(state, command, &ctx).expect("accepted");
        records.push(ExportRecord {
            lsn: records.len() as u64 + 1,
            now_millis: now,
            events: outcome.events.clone(),
        });
        outcome
    };
    run(
        &mut state,
        Command::Deploy {
            resources: vec![Resource {
                name: "tasks.bpmn".into(),
                content: Arc::from(TASKS_MODEL.as_bytes()),
            }],
        },
        &mut records,
    );
    let vars = |json: &str| -> Variables { serde_json::from_str(json).expect("JSON") };
    for (owner, groups) in [("ana", r#"["sales", "ops"]"#), ("bo", r#"["Sales"]"#)] {
        run(
            &mut state,
            Command::CreateInstance {
                process: ProcessRef::Latest("tasks".into()),
                variables: vars(&format!(r#"{{"owner": "{owner}", "groups": {groups}}}"#)),
                business_key: None,
                await_result: false,
            },
            &mut records,
        );
    }
    // The first instance's triage is done: its approval is made.
    let first = state
        .jobs()
        .map(|job| job.key)
        .min()
        .expect("the first triage");
    run(
        &mut state,
        Command::CompleteJob {
            key: first,
            variables: Variables::new(),
        },
        &mut records,
    );
    // The second instance's triage is assigned to zed.
    let second = state
        .jobs()
        .map(|job| job.key)
        .filter(|key| *key > first)
        .min()
        .expect("the second triage");
    run(
        &mut state,
        Command::AssignUserTask {
            key: second,
            assignee: Some("zed".into()),
        },
        &mut records,
    );
    run(
        &mut state,
        Command::UpdateUserTask {
            key: second,
            changes: Box::new(ringflow_core::usertasks::UserTaskCorrections {
                candidate_groups: Some(vec!["Sales".into(), "support".into()]),
                priority: Some(70),
                ..Default::default()
            }),
        },
        &mut records,
    );
    for (target, _dir) in targets("user_tasks") {
        let mut conn = Conn::open(&target).expect("open");
        schema::migrate(&mut conn).expect("migrate");
        drop(conn);
        let mut exporter = Exporter::open(&target, SHARD).expect("exporter");
        let last = records.last().expect("records").lsn;
        exporter.export(&records, last).expect("export");
        drop(exporter);
        let mut store = query::Store::open_read_only(&target).expect("store");
        let open = store
            .user_tasks(query::UserTaskFilter::default(), 100)
            .expect("open tasks");
        let ids: Vec<(&str, Option<&str>)> = open
            .iter()
            .map(|row| (row.element_id.as_str(), row.assignee.as_deref()))
            .collect();
        assert_eq!(
            ids,
            [("approve", Some("ana")), ("triage", Some("zed"))],
            "{}: newest first, the completed triage left out",
            target.describe()
        );
        let approve = &open[0];
        assert_eq!(approve.bpmn_process_id, "tasks");
        assert_eq!(approve.state, "created");
        assert_eq!(approve.candidate_users, ["kim"]);
        assert_eq!(approve.due_date.as_deref(), Some("2026-12-24T12:00:00Z"));
        assert_eq!(
            approve.form_key.as_deref(),
            Some("camunda-forms:bpmn:approval")
        );
        assert_eq!(approve.priority, None, "a job-worker user task has none");
        assert_eq!(open[1].priority, Some(70), "updated");
        assert_eq!(open[1].candidate_groups, ["Sales", "support"]);
        let all = store
            .user_tasks(
                query::UserTaskFilter {
                    all: true,
                    ..Default::default()
                },
                100,
            )
            .expect("all");
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].state, "completed");
        // Exact group names, though SQLite's LIKE ignores case.
        let sales = store
            .user_tasks(
                query::UserTaskFilter {
                    group: Some("sales"),
                    all: true,
                    ..Default::default()
                },
                100,
            )
            .expect("sales");
        assert_eq!(sales.len(), 1);
        assert_eq!(sales[0].job_key, first);
        let ana = store
            .user_tasks(
                query::UserTaskFilter {
                    assignee: Some("ana"),
                    ..Default::default()
                },
                100,
            )
            .expect("ana");
        assert_eq!(ana.len(), 1);
        assert_eq!(
            store
                .user_tasks(query::UserTaskFilter::default(), 1)
                .expect("limit")
                .len(),
            1
        );
    }
}

#[test]
fn user_tasks_on_a_store_from_before_them_say_so() {
    for (target, _dir) in targets("user_tasks_v2") {
        let mut conn = Conn::open(&target).expect("open");
        assert_eq!(schema::migrate_to(&mut conn, 2).expect("to 2"), [1, 2]);
        drop(conn);
        let mut store = query::Store::open_read_only(&target).expect("store");
        let error = store
            .user_tasks(query::UserTaskFilter::default(), 10)
            .expect_err("version 2");
        assert!(error.to_string().contains("predates user tasks"), "{error}");
    }
}

/// `--history-ttl`: a cleanup transaction deletes at most its share of the instances that
/// ended before the cutoff, oldest end first, with every row of theirs in every table, and
/// nothing else: active instances and those that ended later keep every row.
#[test]
fn history_cleanup_deletes_ended_instances_with_all_their_rows_and_nothing_else() {
    let workload = workload(9, 900);
    for (target, _dir) in targets("cleanup") {
        export_in_batches(&target, &workload.records, HistoryLevel::Full, 60, 7);
        let mut conn = Conn::open(&target).expect("open");
        let ends: Vec<(i64, Option<i64>)> = conn
            .query("SELECT key, end_millis FROM process_instances", &[])
            .expect("instances")
            .iter()
            .map(|row| (row[0].int().expect("key"), row[1].int()))
            .collect();
        let mut ended: Vec<i64> = ends.iter().filter_map(|(_, end)| *end).collect();
        ended.sort_unstable();
        let cutoff = ended[ended.len() / 2];
        let expired: BTreeSet<i64> = ends
            .iter()
            .filter(|(_, end)| end.is_some_and(|end| end < cutoff))
            .map(|(key, _)| *key)
            .collect();
        assert!(expired.len() > 20, "{} expired", expired.len());
        assert!(
            ends.iter().any(|(_, end)| end.is_none()),
            "active instances stay"
        );
        let list = expired
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        // What must be left of each table: its rows of the other instances.
        let tables = [
            ("element_instances", "process_instance_key", "key"),
            ("jobs", "process_instance_key", "key"),
            ("incidents", "process_instance_key", "key"),
            ("variables", "process_instance_key", "scope_key, name"),
            ("user_tasks", "process_instance_key", "job_key"),
            ("process_instances", "key", "key"),
        ];
        let kept = |conn: &mut Conn| {
            tables.map(|(table, _, order)| {
                let sql = format!("SELECT * FROM {table} ORDER BY {order}");
                (table, conn.query(&sql, &[]).expect(&sql))
            })
        };
        let expected = tables.map(|(table, instance, order)| {
            let sql =
                format!("SELECT * FROM {table} WHERE {instance} NOT IN ({list}) ORDER BY {order}");
            (table, conn.query(&sql, &[]).expect(&sql))
        });
        let doomed = |conn: &mut Conn, table: &str, instance: &str| {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE {instance} IN ({list})");
            conn.query(&sql, &[]).expect(&sql)[0][0]
                .int()
                .expect("count")
        };
        for (table, instance, _) in &tables[..3] {
            assert!(
                doomed(&mut conn, table, instance) > 0,
                "{table}: rows to delete"
            );
        }

        let mut exporter = Exporter::open(&target, SHARD).expect("exporter");
        exporter.index_ended_instances().expect("index");
        exporter
            .index_ended_instances()
            .expect("the index again: kept");
        // A transaction of 7 takes 7 of the oldest ends.
        assert_eq!(exporter.clean_up(cutoff, 7).expect("clean"), 7);
        let left: Vec<i64> = conn
            .query(
                &format!("SELECT end_millis FROM process_instances WHERE key IN ({list})"),
                &[],
            )
            .expect("left")
            .iter()
            .filter_map(|row| row[0].int())
            .collect();
        assert_eq!(left.len(), expired.len() - 7);
        let gone_latest = ended[..expired.len()]
            .iter()
            .copied()
            .filter(|end| !left.contains(end))
            .max();
        assert!(
            left.iter().all(|end| Some(*end) >= gone_latest),
            "oldest first: {gone_latest:?} gone, {left:?} left"
        );
        let mut deleted = 7;
        loop {
            let count = exporter.clean_up(cutoff, 7).expect("clean");
            assert!(count <= 7);
            if count == 0 {
                break;
            }
            deleted += count;
        }
        assert_eq!(deleted, expired.len());
        assert_eq!(kept(&mut conn), expected);
        for (table, instance, _) in &tables {
            assert_eq!(doomed(&mut conn, table, instance), 0, "{table}");
        }
        // The position is untouched, and exporting goes on.
        assert_eq!(
            exporter::position(&mut conn, SHARD).expect("position").0,
            workload.records.last().expect("records").lsn
        );
    }
}

/// The exporter thread with `--history-ttl`: once its lag allows it deletes every
/// instance that ended longer ago than the TTL (this workload's ended in November 2023), a
/// transaction after another, counting them; active instances stay.
#[test]
fn the_exporter_thread_cleans_up_history_past_its_ttl_between_exports() {
    let workload = workload(12, 600);
    for (target, _dir) in targets("ttl_thread") {
        let mut conn = Conn::open(&target).expect("open");
        schema::migrate(&mut conn).expect("migrate");
        let queue = ExportQueue::new(SHARD, 0);
        let ttl = Some(Duration::from_secs(86_400));
        let thread = exporter::spawn(target.clone(), Arc::clone(&queue), HistoryLevel::Full, ttl)
            .expect("spawn");
        for chunk in workload.records.chunks(7) {
            queue.push(chunk.to_vec(), chunk.last().expect("chunk").lsn);
        }
        let last = workload.records.last().expect("records").lsn;
        assert!(queue.wait_exported(last, Duration::from_secs(60)));
        let count = |conn: &mut Conn, sql: &str| conn.query(sql, &[]).expect(sql)[0][0].int();
        // Every instance the workload created that is not live at its end has ended.
        let created = workload
            .records
            .iter()
            .flat_map(|record| &record.events)
            .filter(|event| matches!(event, Event::InstanceCreated { .. }))
            .count();
        let ended = created - workload.state.instances().count();
        assert!(ended > 0);
        let waited = std::time::Instant::now();
        while queue.cleaned() < ended as u64 && waited.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
        queue.close();
        thread.join().expect("the exporter thread ends");
        assert_eq!(queue.cleaned(), ended as u64);
        let sql = "SELECT COUNT(*) FROM process_instances WHERE end_millis IS NOT NULL";
        assert_eq!(count(&mut conn, sql), Some(0));
        let sql = "SELECT COUNT(*) FROM process_instances";
        assert_eq!(
            count(&mut conn, sql),
            Some(workload.state.instances().count() as i64),
            "the active instances stay"
        );
    }
}
