//! Seeded fault tests of the journal over the simulated storage: random workloads with
//! crashes, failed syncs, torn and garbage writes, and a full device. After every recovery:
//! every acknowledged record is back unchanged, the log is a prefix of what was appended,
//! recovering twice gives the same result, and nothing is acknowledged for a failed sync.
//! Damage in the middle of the log is reported, never silently truncated.
//!
//! `RINGFLOW_JOURNAL_SEEDS=<n>` runs more seeds (CI runs the default); a failure names its
//! seed.

use ringflow_shard::journal::scan::BLOCK_BYTES;
use ringflow_shard::journal::storage::{Faults, SimRng, SimStorage};
use ringflow_shard::journal::writer::{Journal, JournalError};

const SEEDS_DEFAULT: u64 = 2_000;
const SHARD: u16 = 5;

fn payload(rng: &mut SimRng, lsn: u64) -> Vec<u8> {
    let len = rng.below(700) as usize;
    let mut bytes = lsn.to_le_bytes().to_vec();
    bytes.extend((0..len).map(|i| (lsn as usize + i) as u8));
    bytes
}

/// Opens the journal, checks what came back against the model, and checks that recovering
/// again from the same disk gives the same records.
fn recover(
    storage: SimStorage,
    appended: &mut Vec<Vec<u8>>,
    acknowledged: u64,
    seed: u64,
) -> Journal<SimStorage> {
    // A failed sync while cutting a torn tail stops recovery too; the shard is restarted,
    // as an operator (or systemd) would.
    let mut storage = storage;
    let mut attempts = 0;
    let (journal, records) = loop {
        match Journal::open(storage, SHARD) {
            Ok(opened) => break opened,
            Err((JournalError::Storage(_), mut back)) if attempts < 100 => {
                attempts += 1;
                back.crash();
                storage = back;
            }
            Err((error, _)) => panic!("seed {seed}: recovery failed: {error}"),
        }
    };
    assert!(
        records.len() as u64 >= acknowledged,
        "seed {seed}: {} records back, {acknowledged} were acknowledged",
        records.len()
    );
    for (index, record) in records.iter().enumerate() {
        assert_eq!(
            record.lsn,
            index as u64 + 1,
            "seed {seed}: LSNs must be consecutive"
        );
        assert_eq!(
            Some(&record.payload),
            appended.get(index),
            "seed {seed}: record {} is not what was appended",
            record.lsn
        );
    }
    // What did not come back was never acknowledged: forget it.
    appended.truncate(records.len());
    let storage = journal.into_storage();
    match Journal::open(storage, SHARD) {
        Ok((again, records_again)) => {
            assert_eq!(
                records_again, records,
                "seed {seed}: recovering twice differs"
            );
            again
        }
        Err((error, _)) => panic!("seed {seed}: the second recovery failed: {error}"),
    }
}

fn one_seed(seed: u64) {
    let mut rng = SimRng::new(seed);
    let faults = Faults {
        sync_eio_per_mille: rng.below(60) as u32,
        capacity_bytes: (16 + rng.below(48) as usize) * BLOCK_BYTES,
    };
    let mut appended: Vec<Vec<u8>> = Vec::new();
    let mut acknowledged = 0u64;
    let mut journal = recover(SimStorage::new(faults, seed), &mut appended, 0, seed);
    for _round in 0..30 {
        let batches = 1 + rng.below(5);
        for _ in 0..batches {
            for _ in 0..1 + rng.below(12) {
                let lsn = appended.len() as u64 + 1;
                let bytes = payload(&mut rng, lsn);
                match journal.append(&bytes) {
                    Ok(assigned) => {
                        assert_eq!(assigned, lsn, "seed {seed}");
                        appended.push(bytes);
                    }
                    Err(JournalError::BatchFull) => break,
                    Err(error) => panic!("seed {seed}: append failed: {error}"),
                }
            }
            match journal.commit() {
                Ok(durable) => {
                    assert_eq!(durable, appended.len() as u64, "seed {seed}");
                    acknowledged = durable;
                }
                Err(JournalError::Storage(_)) => {
                    // Nothing of this batch is acknowledged; the journal refuses more work.
                    assert_eq!(journal.commit(), Err(JournalError::Stopped), "seed {seed}");
                    assert_eq!(journal.durable_lsn(), acknowledged, "seed {seed}");
                    break;
                }
                Err(error) => panic!("seed {seed}: commit failed oddly: {error}"),
            }
        }
        let mut storage = journal.into_storage();
        storage.crash();
        journal = recover(storage, &mut appended, acknowledged, seed);
        acknowledged = appended.len() as u64;
    }
}

#[test]
fn crashes_and_faults_never_lose_an_acknowledged_record() {
    let seeds = std::env::var("RINGFLOW_JOURNAL_SEEDS")
        .ok()
        .map(|value| value.parse().expect("a whole number"))
        .unwrap_or(SEEDS_DEFAULT);
    for seed in 0..seeds {
        one_seed(seed);
    }
}

#[test]
fn damage_in_the_middle_is_reported_not_truncated() {
    for seed in 0..200 {
        let faults = Faults {
            sync_eio_per_mille: 0,
            capacity_bytes: 1 << 20,
        };
        let Ok((mut journal, _)) = Journal::open(SimStorage::new(faults, seed), SHARD) else {
            panic!("seed {seed}: an empty journal opens");
        };
        let mut rng = SimRng::new(seed);
        for batch in 0..4u64 {
            for record in 0..3 {
                let lsn = batch * 3 + record + 1;
                journal.append(&payload(&mut rng, lsn)).expect("append");
            }
            journal.commit().expect("commit");
        }
        let mut storage = journal.into_storage();
        // Flip one bit somewhere in the first batch: three more batches follow it.
        let first_batch_used = storage.durable()[..BLOCK_BYTES]
            .iter()
            .rposition(|b| *b != 0);
        let used = first_batch_used.expect("the first batch has data") + 1;
        let offset = rng.below(used as u64) as usize;
        storage.flip_durable_bit(offset, rng.below(8) as u8);
        match Journal::open(storage, SHARD) {
            Err((JournalError::Corrupt { lsn, .. }, _)) => assert!(lsn <= 3, "seed {seed}"),
            Ok((_, records)) => panic!(
                "seed {seed}: damage at {offset} went unnoticed ({} records)",
                records.len()
            ),
            Err((other, _)) => panic!("seed {seed}: {other}"),
        }
    }
}
