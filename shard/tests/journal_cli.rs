//! `ringflow journal inspect` on a real data directory, before and after damage, and a shard
//! that refuses to start on the damaged journal with an error that says where.

use std::path::{Path, PathBuf};
use std::process::Command;

fn ringflow(args: &[&str], data: &Path) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ringflow"))
        .args(args)
        .env("RINGFLOW_TEST_DATA", data)
        .output()
        .expect("run ringflow");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn data_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("journal-cli-data");
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn inspect_reports_the_first_bad_record_and_the_shard_refuses_to_start() {
    let data = data_dir();
    let data_arg = data.to_str().expect("UTF-8 path");
    let load = [
        "crash-load",
        "--data",
        data_arg,
        "--shards",
        "1",
        "--prefix",
        "x",
        "--count",
        "300",
        "--concurrency",
        "1",
        "--segment-kib",
        "4096",
    ];
    let (code, stdout, stderr) = ringflow(&load, &data);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 300);

    let shard = data.join("shard-0");
    let shard_arg = shard.to_str().expect("UTF-8 path");
    let (code, stdout, stderr) = ringflow(&["journal", "inspect", shard_arg], &data);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "00000000000000000001.seg  LSN 1..=301  301 records in 301 batches (0 written \
             while the one before was unsynced)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("first bad record: none"), "{stdout}");

    // One record per batch (concurrency 1): damage the second batch's payload.
    let segment = shard.join("journal/00000000000000000001.seg");
    let mut bytes = std::fs::read(&segment).expect("read the segment");
    bytes[4096 + 40] ^= 0x10;
    std::fs::write(&segment, &bytes).expect("write the segment");

    let (code, stdout, _) = ringflow(&["journal", "inspect", shard_arg, "--json"], &data);
    assert_eq!(code, 1, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let bad = &report["first_bad_record"];
    assert_eq!(bad["segment"], "00000000000000000001.seg");
    assert_eq!(
        (bad["offset"].as_u64(), bad["lsn"].as_u64()),
        (Some(4096), Some(2))
    );

    let (code, _, stderr) = ringflow(&load, &data);
    assert_ne!(code, 0);
    assert!(
        stderr.contains(
            "journal corrupt in segment `00000000000000000001.seg` at offset 4096, LSN 2"
        ) && stderr.contains("ringflow journal inspect"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn inspect_names_a_path_that_is_no_shard_directory() {
    let nowhere = Path::new(env!("CARGO_TARGET_TMPDIR")).join("journal-cli-nowhere");
    let _ = std::fs::remove_dir_all(&nowhere);
    let (code, _, stderr) = ringflow(&["journal", "inspect", nowhere.to_str().unwrap()], &nowhere);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("journal-cli-nowhere` is not a directory (a shard's is DATA/shard-N)"),
        "{stderr}"
    );
    // A directory without a journal, named like a shard's.
    let empty = nowhere.join("shard-0");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let (code, _, stderr) = ringflow(&["journal", "inspect", empty.to_str().unwrap()], &empty);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("is not a shard directory (no journal/ in it)"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&nowhere).unwrap();
}
