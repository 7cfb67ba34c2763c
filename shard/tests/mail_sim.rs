//! Mail between shards in the runtime: two real shards (engine, journal, snapshots, couriers,
//! desks) on simulated disks in one glommio executor, connected by a `DirectLink`, with
//! seeded crashes of either shard (its unsynced writes lost, some fdatasyncs failing) while
//! instances on one shard wait for messages on the other.
//!
//! Clients only publish messages with a message id, so a retry after a crash is harmless: a
//! `go` message (key k-N) starts an instance at a message start event; it waits for `paid`
//! (key o-N), which mostly lives on the other shard. Checked at the end: every `go` and
//! every `paid` message went to the process exactly as the rules say, no instance waits,
//! no remote subscription is left, and every outbox is empty, across every crash.
//!
//! `RINGFLOW_MAIL_SEEDS=<n>` runs more seeds.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use ringflow_core::{Command, RejectionCode, Resource, Variables};
use ringflow_shard::mail::{DirectLink, run_post};
use ringflow_shard::shard::{Shard, ShardConfig, SubmitError, recover};
use ringflow_shard::storage::sim::{Faults, SimDir, SimRng};

const MODEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
  <bpmn:process id="starter" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:messageEventDefinition messageRef="m-go"/></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait"/>
    <bpmn:intermediateCatchEvent id="wait">
      <bpmn:messageEventDefinition messageRef="m-paid"/>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
  <bpmn:message id="m-go" name="go"/>
  <bpmn:message id="m-paid" name="paid">
    <bpmn:extensionElements><zeebe:subscription correlationKey="=orderId"/></bpmn:extensionElements>
  </bpmn:message>
</bpmn:definitions>"#;

const SHARDS: u16 = 2;
const INSTANCES: usize = 24;
const HOUR: u64 = 3_600_000;

fn executor() -> glommio::LocalExecutor {
    glommio::LocalExecutorBuilder::default()
        .io_memory(64 * 1024)
        .make()
        .expect("a glommio executor")
}

struct Disk {
    journal: SimDir,
    snapshots: SimDir,
    config: ShardConfig,
}

/// One life of a shard: it and its tasks (dropping them ends them, as a crash would).
struct Life {
    shard: Rc<Shard<SimDir>>,
    _tasks: Vec<glommio::Task<()>>,
}

/// Starts a shard from its disk: recovery, committer, snapshots and its couriers.
async fn start(disk: &Disk, link: &Rc<DirectLink<SimDir>>) -> Life {
    for _ in 0..100 {
        match recover(disk.journal.clone(), disk.snapshots.clone(), disk.config).await {
            Ok((shard, _)) => {
                let shard = Rc::new(shard);
                let committer = shard.clone();
                let post_link: Rc<dyn ringflow_shard::mail::Link> = link.clone();
                let tasks = vec![
                    glommio::spawn_local(async move {
                        committer.run_committer().await;
                    }),
                    glommio::spawn_local(shard.clone().run_snapshots()),
                    glommio::spawn_local(run_post(shard.clone(), post_link)),
                ];
                link.attach(shard.clone());
                return Life {
                    shard,
                    _tasks: tasks,
                };
            }
            // A failed read of a damaged disk: an operator restarts it.
            Err(_) => {
                disk.journal.crash();
                disk.snapshots.crash();
            }
        }
    }
    panic!("the shard does not recover");
}

fn publish(name: &str, key: &str, variables: Variables) -> Command {
    Command::PublishMessage {
        name: name.to_string(),
        correlation_key: key.to_string(),
        variables,
        ttl_millis: HOUR,
        message_id: Some(format!("{name}/{key}")),
    }
}

/// Submits until the command is durable (or was already), restarting crashed shards.
async fn until_done(
    shards: &Rc<std::cell::RefCell<Vec<Life>>>,
    disks: &[Disk],
    link: &Rc<DirectLink<SimDir>>,
    shard: u16,
    command: Command,
) {
    loop {
        let current = shards.borrow()[usize::from(shard)].shard.clone();
        match current.submit(command.clone()).await {
            Ok(_) => return,
            Err(SubmitError::Rejected(rejection))
                if rejection.code == RejectionCode::AlreadyExists =>
            {
                return;
            }
            Err(SubmitError::Stopped(_)) => {
                restart(shards, disks, link, shard).await;
            }
            Err(error) => panic!("{error}"),
        }
    }
}

async fn restart(
    shards: &Rc<std::cell::RefCell<Vec<Life>>>,
    disks: &[Disk],
    link: &Rc<DirectLink<SimDir>>,
    shard: u16,
) {
    let old = shards.borrow()[usize::from(shard)].shard.clone();
    old.halt("simulated crash");
    link.detach(shard);
    let disk = &disks[usize::from(shard)];
    disk.journal.crash();
    disk.snapshots.crash();
    let fresh = start(disk, link).await;
    // The old life's tasks end here, before the new one writes.
    let old_life = std::mem::replace(&mut shards.borrow_mut()[usize::from(shard)], fresh);
    drop(old_life);
}

fn one_seed(seed: u64) -> u64 {
    let mut rng = SimRng::new(seed);
    let disks: Vec<Disk> = (0..SHARDS)
        .map(|id| {
            let faults = Faults {
                sync_eio_per_million: rng.below(20_000) as u32,
                // Syncs that return after other tasks ran: the commit pipeline overlaps them.
                sync_delay_polls_max: rng.below(4) as u32,
                ..Faults::default()
            };
            let mut config = ShardConfig::new(id);
            config.journal.segment_bytes = 16 * 4096;
            config.journal.batch = ringflow_shard::journal::BatchLimits {
                records_max: 1 + rng.below(16) as usize,
                bytes_max: 8 * 4096,
                record_bytes_max: 8 * 4096,
            };
            config.snapshot_every_records = 10 + rng.below(40);
            config.snapshot_every_bytes = 0;
            config.cluster_shards = SHARDS;
            Disk {
                journal: SimDir::new(faults, seed * 7 + u64::from(id)),
                snapshots: SimDir::new(faults, seed * 11 + u64::from(id)),
                config,
            }
        })
        .collect();
    let crashes = Rc::new(std::cell::Cell::new(0u64));
    let counted = crashes.clone();
    executor().run(async move {
        let link: Rc<DirectLink<SimDir>> = Rc::new(DirectLink::default());
        let mut started = Vec::new();
        for disk in &disks {
            started.push(start(disk, &link).await);
        }
        let shards = Rc::new(std::cell::RefCell::new(started));
        let deploy = Command::Deploy {
            resources: vec![Resource {
                name: "starter.bpmn".to_string(),
                content: Arc::from(MODEL.as_bytes()),
            }],
        };
        for id in 0..SHARDS {
            until_done(&shards, &disks, &link, id, deploy.clone()).await;
        }
        let owner = |text: &str| ringflow_core::remote::shard_of_text(text, SHARDS);
        let mut crossing = 0;
        let mut most_unacknowledged = 0;
        for n in 0..INSTANCES {
            let (go, order) = (format!("k-{n}"), format!("o-{n}"));
            if owner(&go) != owner(&order) {
                crossing += 1;
            }
            let mut variables = Variables::new();
            variables.insert("orderId".into(), order.clone().into());
            let first = publish("go", &go, variables);
            let second = publish("paid", &order, Variables::new());
            let (first, second) = if n % 2 == 0 {
                ((owner(&go), first), (owner(&order), second))
            } else {
                ((owner(&order), second), (owner(&go), first))
            };
            until_done(&shards, &disks, &link, first.0, first.1).await;
            if rng.below(3) == 0 {
                let victim = rng.below(u64::from(SHARDS)) as u16;
                restart(&shards, &disks, &link, victim).await;
                crashes.set(crashes.get() + 1);
            }
            until_done(&shards, &disks, &link, second.0, second.1).await;
            for life in shards.borrow().iter() {
                let gauge = life.shard.metrics().mail_unacknowledged.load(Relaxed);
                most_unacknowledged = most_unacknowledged.max(gauge);
            }
            // Let some mail go out before the next crash.
            glommio::timer::sleep(Duration::from_millis(rng.below(3))).await;
        }
        assert!(
            crossing >= INSTANCES / 4,
            "only {crossing} instances wait across shards"
        );
        // Everything settles: no instance waits, no mail is left, no subscription either.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let settled = shards.borrow().iter().map(|life| &life.shard).all(|shard| {
                shard.mail_destinations().is_empty()
                    && shard.with_state(|state| {
                        state.instances().next().is_none()
                            && state.outbox().next().is_none()
                            && state.remote_subscriptions().next().is_none()
                    })
            });
            if settled {
                break;
            }
            for life in shards.borrow().iter() {
                let gauge = life.shard.metrics().mail_unacknowledged.load(Relaxed);
                most_unacknowledged = most_unacknowledged.max(gauge);
            }
            // A shard stopped by a failed fdatasync is restarted, as systemd would.
            for id in 0..SHARDS {
                if shards.borrow()[usize::from(id)].shard.stopped().is_some() {
                    restart(&shards, &disks, &link, id).await;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "seed {seed}: the shards did not settle"
            );
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        // The gauge saw mail waiting for its acknowledgement, and none is left.
        assert!(
            most_unacknowledged > 0,
            "seed {seed}: the mail gauge never moved"
        );
        for life in shards.borrow().iter() {
            let gauge = life.shard.metrics().mail_unacknowledged.load(Relaxed);
            assert_eq!(gauge, 0, "seed {seed}: the mail gauge stays up");
        }
        // Every message went to the process once: `go` started one instance, `paid` was
        // taken by it.
        for shard in shards.borrow().iter().map(|life| &life.shard) {
            shard.with_state(|state| {
                for message in state.messages() {
                    assert_eq!(
                        message.correlated.iter().collect::<Vec<_>>(),
                        vec!["starter"],
                        "seed {seed}: message {} {} went to {:?}",
                        message.name,
                        message.correlation_key,
                        message.correlated
                    );
                }
            });
        }
        let buffered: usize = shards
            .borrow()
            .iter()
            .map(|life| life.shard.with_state(|state| state.messages().count()))
            .sum();
        assert_eq!(
            buffered,
            2 * INSTANCES,
            "seed {seed}: every message is buffered"
        );
        for life in shards.borrow().iter() {
            life.shard.halt("end of the run");
        }
    });
    counted.get()
}

#[test]
fn crashes_of_either_shard_lose_no_mail_and_duplicate_none() {
    let seeds: u64 = std::env::var("RINGFLOW_MAIL_SEEDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(20);
    let mut crashes = 0;
    for seed in 1..=seeds {
        crashes += one_seed(seed);
    }
    assert!(crashes >= seeds, "only {crashes} crashes in {seeds} seeds");
}
