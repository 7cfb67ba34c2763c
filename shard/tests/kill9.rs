//! kill -9 against the real binary on a real filesystem: `ringflow crash-load` creates
//! uniquely named instances on two shards and prints each one only after the shard
//! acknowledged it; the harness kills the process at random moments (SIGKILL), starts it
//! again on the same data directory, and after every cycle recovers the data directory itself
//! and checks that every acknowledged instance exists, with the key that was acknowledged,
//! waiting at its service task.
//!
//! Segments are small (256 KiB) and snapshots frequent, so covered segments are recycled as
//! spares (`<LSN>.spare`, renamed into place as new segments with their old records behind
//! the new ones) while the kills land; the test checks that spares were seen. Odd cycles
//! write the journal through (`--journal-sync dsync`: O_DSYNC segments, two writes in flight
//! released in LSN order), even ones write and fdatasync, on the same data directory.
//!
//! The data directory is under Cargo's target directory (a real filesystem: O_DIRECT and
//! fdatasync are real there, unlike on tmpfs). `RINGFLOW_KILL9_CYCLES` runs more cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ringflow_core::Key;
use ringflow_shard::cli::crash_load::shard_config;
use ringflow_shard::shard::recover;
use ringflow_shard::storage::block_on;
use ringflow_shard::storage::sim::SimRng;
use ringflow_shard::storage::std_fs::StdDir;

const CYCLES_DEFAULT: u64 = 24;
const SHARDS: usize = 2;
const SEGMENT_KIB: u64 = 256;
const SNAPSHOT_EVERY_RECORDS: u64 = 3000;

fn data_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kill9-data");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the data directory");
    dir
}

/// Runs crash-load, waits for its first acknowledgement, lets it run `run_millis` more and
/// kills it; returns the acknowledged (business key, instance key) pairs it printed, and
/// whether it had finished on its own before the kill.
fn one_cycle(data: &Path, cycle: u64, run_millis: u64) -> (Vec<(String, Key)>, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringflow"))
        .args(["crash-load", "--data"])
        .arg(data)
        .args([
            "--shards",
            &SHARDS.to_string(),
            "--prefix",
            &format!("c{cycle}"),
        ])
        .args(["--count", "4000", "--concurrency", "64"])
        .args(["--segment-kib", &SEGMENT_KIB.to_string()])
        .args([
            "--journal-sync",
            if cycle % 2 == 1 { "dsync" } else { "fdatasync" },
        ])
        .args([
            "--snapshot-every-records",
            &SNAPSHOT_EVERY_RECORDS.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringflow crash-load");
    let stdout = child.stdout.take().expect("stdout");
    let (first_ack, first_ack_seen) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("a line");
            let mut words = line.split(' ');
            assert_eq!(words.next(), Some("ack"), "{line}");
            let business_key = words.next().expect("a business key").to_string();
            let key = words.next().expect("a key").parse().expect("a number");
            acks.push((business_key, Key(key)));
            if acks.len() == 1 {
                let _ = first_ack.send(());
            }
        }
        acks
    });
    let started = first_ack_seen.recv_timeout(Duration::from_secs(60)).is_ok();
    std::thread::sleep(Duration::from_millis(run_millis));
    let exited = child.try_wait().expect("try_wait").is_some();
    let _ = child.kill(); // SIGKILL
    let status = child.wait().expect("wait");
    let acks = reader.join().expect("the reader");
    if !started || (exited && !status.success()) {
        let mut stderr = String::new();
        use std::io::Read;
        let _ = child
            .stderr
            .take()
            .map(|mut e| e.read_to_string(&mut stderr));
        panic!("cycle {cycle}: crash-load acknowledged nothing or failed: {status}\n{stderr}");
    }
    (acks, exited)
}

/// Recovers every shard of `data` and returns business key → (instance key, waits at a job).
fn recovered_instances(data: &Path) -> BTreeMap<String, (Key, bool)> {
    let mut instances = BTreeMap::new();
    for index in 0..SHARDS {
        let dir = data.join(format!("shard-{index}"));
        let config = shard_config(index as u16, SEGMENT_KIB, SNAPSHOT_EVERY_RECORDS);
        let journal = StdDir::open(&dir.join("journal")).expect("journal dir");
        let snapshots = StdDir::open(&dir.join("snapshots")).expect("snapshot dir");
        let (shard, _report) = block_on(recover(journal, snapshots, config))
            .unwrap_or_else(|error| panic!("shard {index} does not recover: {error}"));
        shard.with_state(|state| {
            let waiting: BTreeSet<Key> = state
                .element_instances()
                .filter(|element| element.job.is_some())
                .map(|element| element.process_instance_key)
                .collect();
            for instance in state.instances() {
                let business_key = instance.business_key.clone().expect("a business key");
                let waits = waiting.contains(&instance.key);
                instances.insert(business_key, (instance.key, waits));
            }
        });
    }
    instances
}

#[test]
fn every_acknowledged_instance_survives_kill_9() {
    let cycles = std::env::var("RINGFLOW_KILL9_CYCLES")
        .ok()
        .map(|value| value.parse().expect("a whole number"))
        .unwrap_or(CYCLES_DEFAULT);
    let data = data_dir();
    let mut rng = SimRng::new(0x6b69_6c6c);
    let mut acknowledged: Vec<(String, Key)> = Vec::new();
    let mut cycles_with_acks = 0;
    let mut dsync_cycles_with_acks = 0;
    let mut killed_while_running = 0;
    let mut spares_seen = BTreeSet::new();
    for cycle in 0..cycles {
        let run_millis = rng.below(150);
        let (acks, exited) = one_cycle(&data, cycle, run_millis);
        if !exited {
            killed_while_running += 1;
        }
        if !acks.is_empty() {
            cycles_with_acks += 1;
            dsync_cycles_with_acks += usize::from(cycle % 2 == 1);
        }
        acknowledged.extend(acks);
        for index in 0..SHARDS {
            let journal = data.join(format!("shard-{index}/journal"));
            for entry in std::fs::read_dir(&journal).expect("list the journal") {
                let name = entry.expect("an entry").file_name();
                let name = name.to_string_lossy();
                if name.ends_with(".spare") {
                    spares_seen.insert(format!("shard-{index}/{name}"));
                }
            }
        }
        let instances = recovered_instances(&data);
        for (business_key, key) in &acknowledged {
            match instances.get(business_key) {
                Some((found, waits)) => {
                    assert_eq!(found, key, "cycle {cycle}: {business_key} has another key");
                    assert!(
                        waits,
                        "cycle {cycle}: {business_key} does not wait at its task"
                    );
                }
                None => panic!(
                    "cycle {cycle}: {business_key} (instance {key}) was acknowledged and is gone \
                     ({} acknowledged, {} recovered)",
                    acknowledged.len(),
                    instances.len()
                ),
            }
        }
    }
    // The kills must have landed while work was going on, or nothing was tested.
    assert!(
        cycles_with_acks * 2 >= cycles && killed_while_running * 2 >= cycles,
        "of {cycles} cycles, {cycles_with_acks} acknowledged anything and \
         {killed_while_running} were killed while running"
    );
    // Half the cycles wrote through, and some of them acknowledged work.
    assert!(
        cycles < 2 || dsync_cycles_with_acks > 0,
        "no dsync cycle acknowledged anything"
    );
    // Covered segments must have become spares (and so later segments recycled ones).

    assert!(
        cycles < 8 || !spares_seen.is_empty(),
        "no covered segment was ever kept as a spare"
    );
    eprintln!(
        "{cycles} cycles ({dsync_cycles_with_acks} dsync ones with acks), \
         {killed_while_running} killed while running, {} instances acknowledged, all \
         recovered; {} spares seen",
        acknowledged.len(),
        spares_seen.len()
    );
    let _ = std::fs::remove_dir_all(&data);
}
