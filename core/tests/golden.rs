//! Golden logs: fixed command sequences whose final state must hash to the value checked in
//! at `tests/golden-hashes.txt`. Any change in behaviour (or in the snapshot format) makes
//! this loud; if the change is intended, the failure message prints the new hashes to paste.

mod common;

use common::{Shard, flow, model, service_task, vars};
use ringflow_core::Command;

/// The CRC32 of the encoded state (the snapshot's own checksum, its last four bytes: a CRC
/// over bytes that end with their CRC would be the same constant for every state).
fn hash(shard: &Shard) -> String {
    shard.check_replay();
    let bytes = shard.state.encode();
    let body = &bytes[..bytes.len() - 4];
    format!("{:08x}", crc32fast::hash(body))
}

fn one_task_with_variables() -> String {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "task"),
        service_task("task", "work"),
        flow("f2", "task", "end")
    );
    shard.deploy("one.bpmn", &model("one", &body));
    for n in 0..5 {
        shard.create(
            "one",
            vars(&format!(r#"{{"n": {n}, "name": "order-{n}"}}"#)),
        );
    }
    for job in shard.activate("work", 3) {
        shard.complete(job.key, vars(r#"{"done": true}"#));
    }
    hash(&shard)
}

fn parallel_with_failures() -> String {
    let mut shard = Shard::new();
    let body = common::parallel_body();
    shard.deploy("par.bpmn", &model("par", &body));
    shard.create("par", vars("{}"));
    shard.create("par", vars("{}"));
    let left = shard.activate("left", 2);
    shard
        .run(Command::FailJob {
            key: left[0].key,
            retries: 0,
            retry_backoff_millis: 0,
            message: "down".into(),
        })
        .expect("fail");
    shard.complete(left[1].key, vars(r#"{"l": 1}"#));
    let right = shard.activate("right", 2);
    shard.complete(right[1].key, vars(r#"{"r": 2}"#));
    hash(&shard)
}

#[test]
fn golden_logs_end_in_the_checked_in_states() {
    let expected = include_str!("golden-hashes.txt");
    let actual = format!(
        "one_task_with_variables {}\nparallel_with_failures {}\n",
        one_task_with_variables(),
        parallel_with_failures()
    );
    assert_eq!(
        actual, expected,
        "the engine's behaviour or snapshot format changed; if that is intended, put this in \
         core/tests/golden-hashes.txt:\n{actual}"
    );
}
