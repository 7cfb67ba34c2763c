//! The shard (engine + journal + snapshots + acknowledgements) on the simulated directory,
//! inside a glommio executor: seeded rounds of concurrent commands, failed fdatasyncs, full
//! devices and crashes. Checks after every crash:
//!
//! - every instance whose creation was acknowledged exists after recovery, with its key;
//! - no command of a batch whose fdatasync failed is acknowledged (it would be missing);
//! - recovering twice from the same disk gives byte-identical states;
//! - snapshots and segment removal never lose a record recovery needs.
//!
//! `RINGFLOW_SHARD_SEEDS=<n>` runs more seeds.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use ringflow_core::{Command, Key, ProcessRef, Resource, Response, Variables};
use ringflow_shard::journal::BatchLimits;
use ringflow_shard::journal::writer::JournalSync;
use ringflow_shard::shard::{Shard, ShardConfig, SubmitError, recover};
use ringflow_shard::storage::sim::{Faults, SimDir, SimRng};

const SEEDS_DEFAULT: u64 = 60;

thread_local! {
    /// Submissions answered with `Stopped`, over all seeds (the faults must have bitten).
    static STOPPED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Journal fdatasyncs that began while another was in flight (the commit pipeline).
    static OVERLAPPING: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Journal durable writes (`JournalSync::Dsync`) that returned ahead of one issued before.
    static OUT_OF_ORDER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Journal durable writes that began while another was in flight.
    static OVERLAPPING_DURABLE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Rounds that crashed in the middle of their work.
    static MID_ROUND_CRASHES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}
const SHARD: u16 = 3;

/// The process: start, a service task of type `crash-test`, end (the one crash-load runs).
const MODEL: &str = ringflow_shard::cli::crash_load::MODEL;
const PROCESS: &str = "crash-load";
const JOB_TYPE: &str = "crash-test";

fn deploy() -> Command {
    Command::Deploy {
        resources: vec![Resource {
            name: "p.bpmn".to_string(),
            content: Arc::from(MODEL.as_bytes()),
        }],
    }
}

fn create(business_key: Option<String>) -> Command {
    Command::CreateInstance {
        process: ProcessRef::Latest(PROCESS.to_string()),
        variables: Variables::new(),
        business_key,
        await_result: false,
    }
}

fn activate(max_jobs: u32, lease_millis: u64) -> Command {
    Command::ActivateJobs {
        job_type: JOB_TYPE.to_string(),
        worker: "w".to_string(),
        max_jobs,
        lease_millis,
        fetch_variables: Vec::new(),
    }
}

fn config(rng: &mut SimRng) -> ShardConfig {
    let mut config = ShardConfig::new(SHARD);
    config.journal.segment_bytes = 16 * 4096;
    config.journal.batch = BatchLimits {
        records_max: 1 + rng.below(64) as usize,
        bytes_max: 8 * 4096,
        record_bytes_max: 8 * 4096,
    };
    config.snapshot_every_records = 20 + rng.below(100);
    config.snapshot_every_bytes = 0;
    config.journal.sync = if rng.below(2) == 0 {
        JournalSync::Fdatasync
    } else {
        JournalSync::Dsync
    };
    config
}

fn executor() -> glommio::LocalExecutor {
    glommio::LocalExecutorBuilder::default()
        .io_memory(64 * 1024)
        .make()
        .expect("a glommio executor")
}

async fn open(journal: &SimDir, snapshots: &SimDir, config: ShardConfig) -> Option<Shard<SimDir>> {
    // A recovery that fails on a storage error is retried after another crash, as an
    // operator's restart would.
    for _ in 0..100 {
        match recover(journal.clone(), snapshots.clone(), config).await {
            Ok((shard, _)) => return Some(shard),
            Err(ringflow_shard::shard::RecoveryError::Storage(_))
            | Err(ringflow_shard::shard::RecoveryError::Journal(
                ringflow_shard::journal::JournalError::Storage(_),
            )) => {
                journal.crash();
                snapshots.crash();
            }
            Err(error) => panic!("recovery failed: {error}"),
        }
    }
    None
}

/// The instances of a shard: business key -> instance key.
fn instances(shard: &Shard<SimDir>) -> BTreeMap<String, Key> {
    shard.with_state(|state| {
        state
            .instances()
            .map(|instance| (instance.business_key.clone().expect("a key"), instance.key))
            .collect()
    })
}

/// One round of work on `shard`. Half the rounds crash both directories in the middle of
/// it, at a random point (writes and syncs in flight, the pipeline full or not): from then on
/// every operation fails, and answers that arrive after the crash are not counted as
/// acknowledged (the client never saw them).
async fn one_round(
    shard: Rc<Shard<SimDir>>,
    dirs: (&SimDir, &SimDir),
    rng: &mut SimRng,
    round: u64,
    acked: &Rc<RefCell<Vec<(String, Key)>>>,
) {
    let committer = glommio::spawn_local(shard.clone().run_committer());
    let snapshots = glommio::spawn_local(shard.clone().run_snapshots());
    if shard.submit(deploy()).await.is_err() {
        return;
    }
    let crashed = Rc::new(std::cell::Cell::new(false));
    let crasher = (rng.below(2) == 0).then(|| {
        let polls = rng.below(400);
        let (journal, snapshot_dir) = (dirs.0.clone(), dirs.1.clone());
        let crashed = crashed.clone();
        glommio::spawn_local(async move {
            for _ in 0..polls {
                futures_lite::future::yield_now().await;
            }
            journal.crash_now();
            snapshot_dir.crash_now();
            crashed.set(true);
            MID_ROUND_CRASHES.with(|crashes| crashes.set(crashes.get() + 1));
        })
    });
    let mut tasks = Vec::new();
    for worker in 0..1 + rng.below(16) {
        let creations = rng.below(40);
        let (shard, acked, crashed) = (shard.clone(), acked.clone(), crashed.clone());
        tasks.push(glommio::spawn_local(async move {
            for n in 0..creations {
                let business_key = format!("r{round}-w{worker}-{n}");
                match shard.submit(create(Some(business_key.clone()))).await {
                    Ok(outcome) => {
                        let Response::InstanceCreated {
                            process_instance_key,
                            ..
                        } = outcome.response
                        else {
                            panic!("not a creation: {:?}", outcome.response);
                        };
                        if !crashed.get() {
                            acked
                                .borrow_mut()
                                .push((business_key, process_instance_key));
                        }
                    }
                    Err(SubmitError::Stopped(_)) => {
                        STOPPED.with(|stopped| stopped.set(stopped.get() + 1));
                        return;
                    }
                    Err(SubmitError::Rejected(rejection)) => panic!("rejected: {rejection}"),
                    Err(SubmitError::Busy(reason)) => panic!("busy without a cold store: {reason}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await;
    }
    drop(crasher);
    drop(committer);
    drop(snapshots);
}

fn one_seed(seed: u64) -> usize {
    let mut rng = SimRng::new(seed);
    let config = config(&mut rng);
    let faults = Faults {
        sync_eio_per_million: rng.below(30_000) as u32,
        capacity_bytes: 64 * 4096 * (2 + rng.below(4)),
        // Syncs that return after other tasks ran: the committer's pipeline then has two
        // in flight, and they may return out of order.
        sync_delay_polls_max: rng.below(4) as u32,
        ..Faults::default()
    };
    let journal = SimDir::new(faults, seed);
    let probe = journal.clone();
    let snapshots = SimDir::new(faults, seed ^ 0x5eed);
    let acked = Rc::new(RefCell::new(Vec::new()));
    let counted = acked.clone();
    executor().run(async move {
        for round in 0..8 {
            let Some(shard) = open(&journal, &snapshots, config).await else {
                return;
            };
            // Recovering twice from the same disk gives the same state.
            let first = shard.with_state(|state| state.encode());
            drop(shard);
            let shard = open(&journal, &snapshots, config).await.expect("reopen");
            let second = shard.with_state(|state| state.encode());
            assert!(first == second, "seed {seed}: two recoveries differ");
            let found = instances(&shard);
            for (business_key, key) in acked.borrow().iter() {
                assert_eq!(
                    found.get(business_key),
                    Some(key),
                    "seed {seed} round {round}: acknowledged {business_key} is not back"
                );
            }
            one_round(
                Rc::new(shard),
                (&journal, &snapshots),
                &mut rng,
                round,
                &acked,
            )
            .await;
            journal.crash();
            snapshots.crash();
            journal.restart();
            snapshots.restart();
        }
    });
    let injected = probe.injected();
    OVERLAPPING.with(|total| total.set(total.get() + injected.overlapping_syncs));
    OUT_OF_ORDER.with(|total| total.set(total.get() + injected.durable_writes_out_of_order));
    OVERLAPPING_DURABLE.with(|total| total.set(total.get() + injected.overlapping_durable_writes));
    counted.borrow().len()
}

#[test]
fn acknowledged_commands_survive_faults_and_crashes() {
    let seeds = std::env::var("RINGFLOW_SHARD_SEEDS")
        .ok()
        .map(|value| value.parse().expect("a whole number"))
        .unwrap_or(SEEDS_DEFAULT);
    let mut acknowledged = 0;
    for seed in 0..seeds {
        acknowledged += one_seed(seed);
    }
    let stopped = STOPPED.with(|stopped| stopped.get());
    let overlapping = OVERLAPPING.with(|overlapping| overlapping.get());
    if seeds >= 20 {
        assert!(
            stopped > 0 && acknowledged > 1000,
            "{stopped} stops, {acknowledged} acks"
        );
        // The committer's pipeline was exercised: syncs overlapped (and could return out
        // of order), with crashes and failed syncs around them.
        assert!(overlapping > 0, "no fdatasyncs overlapped");
        // Half the seeds write through: durable writes returned out of order too.
        let out_of_order = OUT_OF_ORDER.with(|total| total.get());
        let overlapping_durable = OVERLAPPING_DURABLE.with(|total| total.get());
        assert!(
            overlapping_durable >= out_of_order && out_of_order > 0,
            "{overlapping_durable} durable writes overlapped, {out_of_order} returned out of order"
        );
        let crashes = MID_ROUND_CRASHES.with(|crashes| crashes.get());
        assert!(crashes > 0, "no round crashed in the middle");
    }
}

#[test]
fn timers_are_rebuilt_from_the_state_and_a_snapshot_covers_only_durable_records() {
    executor().run(async {
        let journal = SimDir::new(Faults::default(), 1);
        let snapshots = SimDir::new(Faults::default(), 2);
        let config = ShardConfig::new(SHARD);
        let shard = Rc::new(open(&journal, &snapshots, config).await.expect("open"));
        let committer = glommio::spawn_local(shard.clone().run_committer());
        shard.submit(deploy()).await.expect("deploy");
        for _ in 0..3 {
            shard
                .submit(create(Some("b".to_string())))
                .await
                .expect("create");
        }
        shard.submit(activate(2, 60_000)).await.expect("activate");
        let leases = shard.timers();
        assert_eq!(leases.len(), 2, "two leases armed after the commit");
        let lsn = shard.snapshot().await.expect("snapshot");
        assert_eq!(lsn, shard.durable_lsn());
        drop(committer);
        drop(shard);
        journal.crash();
        snapshots.crash();
        let shard = open(&journal, &snapshots, config).await.expect("reopen");
        assert_eq!(shard.timers(), leases, "timers rebuilt from the state");
        assert_eq!(shard.durable_lsn(), lsn);
    });
}

#[test]
fn jobs_are_offered_when_their_command_is_applied_and_handed_out_only_when_durable() {
    executor().run(async {
        let journal = SimDir::new(Faults::default(), 7);
        let snapshots = SimDir::new(Faults::default(), 8);
        let shard = Rc::new(
            open(&journal, &snapshots, ShardConfig::new(SHARD))
                .await
                .expect("open"),
        );
        // No committer yet, so nothing becomes durable. Spawned tasks run in order: the
        // deployment is LSN 1, the creation LSN 2, both applied and waiting for the commit.
        let available = shard.jobs_available();
        let submitted = |command: Command| {
            let shard = shard.clone();
            glommio::spawn_local(async move { shard.submit(command).await })
        };
        let deployed = submitted(deploy());
        let created = submitted(create(None));
        let timeout = async {
            glommio::timer::sleep(std::time::Duration::from_secs(5)).await;
            panic!("no jobs offered before the creation was durable");
        };
        futures_lite::future::or(available, timeout).await;
        assert_eq!(
            shard.durable_lsn(),
            0,
            "nothing is durable without the committer"
        );
        assert_eq!(
            shard.ready_jobs(JOB_TYPE),
            1,
            "the applied creation's job is ready"
        );
        // The activation (LSN 3) is applied at once, but its answer, the jobs, waits.
        let answered = Rc::new(std::cell::Cell::new(false));
        let activation = glommio::spawn_local({
            let (shard, answered) = (shard.clone(), answered.clone());
            async move {
                let outcome = shard.submit(activate(8, 60_000)).await;
                answered.set(true);
                outcome
            }
        });
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(shard.ready_jobs(JOB_TYPE), 0, "activated in the state");
        assert!(
            !answered.get(),
            "jobs handed out before anything was durable"
        );
        let committer = glommio::spawn_local(shard.clone().run_committer());
        let Response::JobsActivated(jobs) = activation.await.expect("activate").response else {
            panic!("no jobs");
        };
        assert_eq!(jobs.len(), 1);
        assert!(
            shard.durable_lsn() >= 3,
            "answered before its record was durable"
        );
        deployed.await.expect("deploy");
        created.await.expect("create");
        drop(committer);
    });
}

#[test]
fn a_snapshot_by_bytes_counts_the_journal_as_written_headers_and_padding_included() {
    executor().run(async {
        use ringflow_shard::storage::Dir;
        let journal = SimDir::new(Faults::default(), 9);
        let snapshots = SimDir::new(Faults::default(), 10);
        let mut config = ShardConfig::new(SHARD);
        config.snapshot_every_records = 0;
        config.snapshot_every_bytes = 16 * 4096;
        let shard = Rc::new(open(&journal, &snapshots, config).await.expect("open"));
        let committer = glommio::spawn_local(shard.clone().run_committer());
        let snapshotter = glommio::spawn_local(shard.clone().run_snapshots());
        let taken = || async {
            snapshots
                .list()
                .await
                .expect("list")
                .iter()
                .any(|name| name.ends_with(".snap"))
        };
        shard.submit(deploy()).await.expect("deploy");
        // One small record per batch (each awaited): each write takes a whole 4 KiB block,
        // though the records' payloads come to a few KiB in all.
        for _ in 0..10 {
            shard.submit(create(None)).await.expect("create");
        }
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            !taken().await,
            "a snapshot after 11 blocks of journal, before 16"
        );
        for _ in 0..10 {
            shard.submit(create(None)).await.expect("create");
        }
        let mut found = false;
        for _ in 0..200 {
            if taken().await {
                found = true;
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(found, "no snapshot after 21 blocks of journal, over 16");
        drop((committer, snapshotter));
    });
}

#[test]
fn an_expired_lease_fires_as_a_journaled_command_and_survives_a_crash() {
    executor().run(async {
        let journal = SimDir::new(Faults::default(), 5);
        let snapshots = SimDir::new(Faults::default(), 6);
        let config = ShardConfig::new(SHARD);
        let shard = Rc::new(open(&journal, &snapshots, config).await.expect("open"));
        let committer = glommio::spawn_local(shard.clone().run_committer());
        let timers = glommio::spawn_local(shard.clone().run_timers());
        shard.submit(deploy()).await.expect("deploy");
        shard.submit(create(None)).await.expect("create");
        let outcome = shard.submit(activate(1, 30)).await.expect("activate");
        let Response::JobsActivated(jobs) = outcome.response else {
            panic!("no jobs");
        };
        let job = jobs[0].key;
        assert!(!shard.with_state(|state| state.is_ready(job)));
        let before = shard.durable_lsn();
        // The lease runs out after 30 ms; the timer task journals JobLeaseExpired.
        // The state shows a command before it is durable: wait for both.
        for _ in 0..500 {
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            if shard.with_state(|state| state.is_ready(job)) && shard.durable_lsn() > before {
                break;
            }
        }
        assert!(
            shard.with_state(|state| state.is_ready(job)),
            "the lease never expired"
        );
        assert_eq!(shard.durable_lsn(), before + 1, "one journaled command");
        assert!(shard.timers().is_empty());
        drop((committer, timers, shard));
        journal.crash();
        snapshots.crash();
        let shard = open(&journal, &snapshots, config).await.expect("reopen");
        assert!(
            shard.with_state(|state| state.is_ready(job)),
            "the expiry was durable"
        );
    });
}

#[test]
fn a_message_expires_by_the_shard_timer_and_the_expiry_survives_a_crash() {
    executor().run(async {
        let journal = SimDir::new(Faults::default(), 7);
        let snapshots = SimDir::new(Faults::default(), 8);
        let config = ShardConfig::new(SHARD);
        let shard = Rc::new(open(&journal, &snapshots, config).await.expect("open"));
        let committer = glommio::spawn_local(shard.clone().run_committer());
        let timers = glommio::spawn_local(shard.clone().run_timers());
        let publish = |ttl_millis| Command::PublishMessage {
            name: "paid".to_string(),
            correlation_key: "order-1".to_string(),
            variables: Variables::new(),
            ttl_millis,
            message_id: None,
        };
        shard.submit(publish(30)).await.expect("short-lived");
        shard.submit(publish(3_600_000)).await.expect("long-lived");
        assert_eq!(shard.with_state(|state| state.messages().count()), 2);
        assert_eq!(
            shard.timers().len(),
            2,
            "one expiry timer per buffered message"
        );
        let before = shard.durable_lsn();
        // The state shows a command before it is durable: wait for both.
        for _ in 0..500 {
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            if shard.with_state(|state| state.messages().count()) == 1
                && shard.durable_lsn() > before
            {
                break;
            }
        }
        assert_eq!(
            shard.with_state(|state| state.messages().count()),
            1,
            "the short-lived message never expired"
        );
        assert_eq!(
            shard.durable_lsn(),
            before + 1,
            "one journaled ExpireMessage"
        );
        drop((committer, timers, shard));
        journal.crash();
        snapshots.crash();
        let shard = open(&journal, &snapshots, config).await.expect("reopen");
        assert_eq!(shard.with_state(|state| state.messages().count()), 1);
        assert_eq!(
            shard.timers().len(),
            1,
            "the long-lived message's timer is rebuilt"
        );
    });
}

#[test]
fn a_timer_event_due_while_the_shard_was_down_fires_once_after_recovery() {
    const TIMER_MODEL: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">
      <bpmn:process id="waits" isExecutable="true">
        <bpmn:startEvent id="start"/>
        <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="pause"/>
        <bpmn:intermediateCatchEvent id="pause"><bpmn:timerEventDefinition>
          <bpmn:timeDuration>PT0.2S</bpmn:timeDuration></bpmn:timerEventDefinition>
        </bpmn:intermediateCatchEvent>
        <bpmn:sequenceFlow id="f2" sourceRef="pause" targetRef="end"/>
        <bpmn:endEvent id="end"/>
      </bpmn:process></bpmn:definitions>"#;
    executor().run(async {
        let journal = SimDir::new(Faults::default(), 9);
        let snapshots = SimDir::new(Faults::default(), 10);
        let config = ShardConfig::new(SHARD);
        let shard = Rc::new(open(&journal, &snapshots, config).await.expect("open"));
        let committer = glommio::spawn_local(shard.clone().run_committer());
        shard
            .submit(Command::Deploy {
                resources: vec![Resource {
                    name: "waits.bpmn".to_string(),
                    content: Arc::from(TIMER_MODEL.as_bytes()),
                }],
            })
            .await
            .expect("deployed");
        shard
            .submit(Command::CreateInstance {
                process: ProcessRef::Latest("waits".to_string()),
                variables: Variables::new(),
                business_key: None,
                await_result: false,
            })
            .await
            .expect("created");
        assert_eq!(shard.with_state(|state| state.timers().count()), 1);
        // The server goes down before the timer is due (no timer task ran) and stays down
        // past the due time.
        drop((committer, shard));
        journal.crash();
        snapshots.crash();
        glommio::timer::sleep(std::time::Duration::from_millis(300)).await;
        let shard = Rc::new(open(&journal, &snapshots, config).await.expect("reopen"));
        assert_eq!(
            shard.timers().len(),
            1,
            "the timer event is re-armed from the state"
        );
        let before = shard.durable_lsn();
        let committer = glommio::spawn_local(shard.clone().run_committer());
        let timers = glommio::spawn_local(shard.clone().run_timers());
        // The state shows a command before it is durable: wait for both.
        for _ in 0..500 {
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            if shard.with_state(|state| state.instances().count()) == 0
                && shard.durable_lsn() > before
            {
                break;
            }
        }
        assert_eq!(
            shard.with_state(|state| state.instances().count()),
            0,
            "the overdue timer fired promptly"
        );
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(shard.durable_lsn(), before + 1, "exactly one TriggerTimer");
        drop((committer, timers, shard));
        journal.crash();
        snapshots.crash();
        let shard = open(&journal, &snapshots, config)
            .await
            .expect("reopen again");
        assert_eq!(shard.with_state(|state| state.instances().count()), 0);
        assert!(
            shard.timers().is_empty(),
            "a fired timer is not armed again"
        );
    });
}

/// A log sink for one test: what the shard logs while it runs on this thread.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs 30 creations on a fresh shard with `slow_commit_micros` and returns its log.
fn logged_run(slow_commit_micros: u64) -> String {
    // tracing caches each callsite's interest for the whole process. While exactly one
    // dispatcher is registered, a callsite first reached on another test's thread (which has
    // no subscriber) is cached as never enabled, and this capture would miss it (seen once:
    // "snapshot written" missing; tokio-rs/tracing#3611). A second dispatcher for the
    // capture's lifetime makes the interest come from both registered dispatchers instead;
    // creating the capture's own rebuilds the callsites cached before.
    let _anchor = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(tracing::Level::INFO)
            .finish(),
    );
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut config = ShardConfig::new(SHARD);
        config.snapshot_every_records = 10;
        config.slow_commit_micros = slow_commit_micros;
        let journal = SimDir::new(Faults::default(), 1);
        let snapshots = SimDir::new(Faults::default(), 2);
        let written = captured.clone();
        executor().run(async move {
            let shard = Rc::new(open(&journal, &snapshots, config).await.expect("opens"));
            let committer = glommio::spawn_local(shard.clone().run_committer());
            let snapshotter = glommio::spawn_local(shard.clone().run_snapshots());
            shard.submit(deploy()).await.expect("deploys");
            for n in 0..30 {
                shard
                    .submit(create(Some(format!("logged-{n}"))))
                    .await
                    .expect("creates");
            }
            // The snapshot task runs at its own pace: give it up to 5 s to write the
            // snapshot that 31 records made due (the test asserts the line is there).
            for _ in 0..500 {
                let log = String::from_utf8_lossy(&written.0.lock().unwrap()).into_owned();
                if log.contains("snapshot written") {
                    break;
                }
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
            drop(committer);
            drop(snapshotter);
        });
    });
    String::from_utf8(captured.0.lock().unwrap().clone()).expect("UTF-8 log")
}

#[test]
fn slow_commits_are_logged_with_their_stages_and_snapshots_with_their_costs() {
    // A threshold of 1 µs: every commit is slow.
    let log = logged_run(1);
    let slow: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("slow commit"))
        .collect();
    assert!(slow.len() >= 31, "one line per commit:\n{log}");
    for field in [
        "records=1",
        "total_us=",
        "batch_wait_us=",
        "segment_us=",
        "write_us=",
        "fdatasync_us=",
        "release_us=",
    ] {
        assert!(slow[0].contains(field), "{field} in {}", slow[0]);
    }
    assert!(
        log.lines()
            .any(|line| line.contains("snapshot written") && line.contains("encode_us=")),
        "{log}"
    );
    // Off: no commit is logged.
    let log = logged_run(0);
    assert!(!log.contains("slow commit"), "{log}");
}

/// A user task with an assigning task listener (`notify`).
const LISTENED: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
  <bpmn:process id="listened" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="task"/>
    <bpmn:userTask id="task"><bpmn:extensionElements><zeebe:userTask/>
      <zeebe:taskListeners><zeebe:taskListener eventType="assigning" type="notify"/>
      </zeebe:taskListeners></bpmn:extensionElements></bpmn:userTask>
    <bpmn:sequenceFlow id="f2" sourceRef="task" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>"#;

/// The shard registers the wait of a user task transition that waits for listeners when
/// the command that begins it is applied, and fills it once the command that ends it is
/// durable, whether the caller took it before or after; a wait given up is gone.
#[test]
fn a_held_transitions_end_reaches_its_caller_whenever_the_caller_asks() {
    use ringflow_core::TransitionEnd;
    executor().run(async {
        let journal = SimDir::new(Faults::default(), 11);
        let snapshots = SimDir::new(Faults::default(), 12);
        let shard = Rc::new(
            open(&journal, &snapshots, ShardConfig::new(SHARD))
                .await
                .expect("open"),
        );
        let committer = glommio::spawn_local(shard.clone().run_committer());
        shard
            .submit(Command::Deploy {
                resources: vec![Resource {
                    name: "l.bpmn".to_string(),
                    content: Arc::from(LISTENED.as_bytes()),
                }],
            })
            .await
            .expect("deploy");
        shard
            .submit(Command::CreateInstance {
                process: ProcessRef::Latest("listened".to_string()),
                variables: Variables::new(),
                business_key: None,
                await_result: false,
            })
            .await
            .expect("create");
        let take = |job_type: &str| Command::ActivateJobs {
            job_type: job_type.to_string(),
            worker: "w".to_string(),
            max_jobs: 1,
            lease_millis: 60_000,
            fetch_variables: Vec::new(),
        };
        let job_of = |response: Response| match response {
            Response::JobsActivated(mut jobs) if jobs.len() == 1 => jobs.remove(0).key,
            other => panic!("expected one job, got {other:?}"),
        };
        let task = job_of(
            shard
                .submit(take("io.camunda.zeebe:userTask"))
                .await
                .expect("activate")
                .response,
        );
        let assign = |assignee: &str| Command::AssignUserTask {
            key: task,
            assignee: Some(assignee.to_string()),
        };
        let seq_of = |response: Response| match response {
            Response::UserTaskTransitionHeld { seq, .. } => seq,
            other => panic!("expected a held assignment, got {other:?}"),
        };
        let listener = |shard: &Rc<Shard<SimDir>>, denied: bool| {
            let shard = shard.clone();
            async move {
                let notify = job_of(shard.submit(take("notify")).await.expect("a").response);
                let result = ringflow_core::usertasks::TaskListenerResult {
                    denied,
                    denied_reason: if denied { "no".into() } else { String::new() },
                    ..Default::default()
                };
                shard
                    .submit(Command::CompleteTaskListenerJob {
                        key: notify,
                        result: Box::new(result),
                    })
                    .await
                    .expect("decided");
            }
        };

        // Ended (durable) before the caller asks: the end waits for it.
        let seq = seq_of(shard.submit(assign("ana")).await.expect("held").response);
        assert_eq!(shard.transition_waits(), 1);
        listener(&shard, true).await;
        let end = shard.claim_transition(seq).expect("the wait");
        assert_eq!(end.await, Some(TransitionEnd::Denied("no".into())));
        assert_eq!(shard.transition_waits(), 0, "taken");
        assert!(shard.claim_transition(seq).is_none(), "once");

        // Asked for first: filled when the end is durable.
        let seq = seq_of(shard.submit(assign("bo")).await.expect("held").response);
        let end = shard.claim_transition(seq).expect("the wait");
        assert_eq!(shard.transition_waits(), 1, "kept until it ends");
        listener(&shard, false).await;
        assert_eq!(end.await, Some(TransitionEnd::Done));
        assert_eq!(shard.transition_waits(), 0);

        // Given up (the caller's time ran out) after it was asked for: the caller gets
        // `None`; the transition goes on, and its end reaches nobody.
        let seq = seq_of(shard.submit(assign("cy")).await.expect("held").response);
        let end = shard.claim_transition(seq).expect("the wait");
        assert!(shard.awaits_transition(seq));
        shard.give_up_transition(seq);
        assert!(!shard.awaits_transition(seq));
        assert_eq!(end.await, None);
        listener(&shard, false).await;
        assert_eq!(shard.transition_waits(), 0);
        // Given up before it was asked for: there is nothing to ask for.
        let seq = seq_of(shard.submit(assign("dan")).await.expect("held").response);
        shard.give_up_transition(seq);
        assert!(shard.claim_transition(seq).is_none());
        listener(&shard, false).await;
        assert_eq!(shard.transition_waits(), 0);
        drop(committer);
    });
}
