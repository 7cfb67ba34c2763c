//! Publishing messages: buffering for the time to live, deduplication by message id, expiry
//! by the shard's timer, limits, replay and snapshots.

mod common;

use common::{Shard, vars};
use ringflow_core::limits::MESSAGE_TTL_MILLIS_MAX;
use ringflow_core::{Command, Effect, Event, Key, RejectionCode, Response, State};

fn publish(name: &str, correlation_key: &str, ttl: u64, id: Option<&str>) -> Command {
    Command::PublishMessage {
        name: name.to_string(),
        correlation_key: correlation_key.to_string(),
        variables: vars(r#"{"amount": 5}"#),
        ttl_millis: ttl,
        message_id: id.map(str::to_string),
    }
}

fn key_of(response: &Response) -> Key {
    match response {
        Response::MessagePublished { key } => *key,
        other => panic!("expected MessagePublished, got {other:?}"),
    }
}

#[test]
fn a_message_is_buffered_for_its_ttl_and_expires_by_its_timer() {
    let mut shard = Shard::new();
    let published = shard
        .run(publish("paid", "order-1", 60_000, None))
        .expect("published");
    let key = key_of(&published.response);
    assert_eq!(
        published.events,
        vec![Event::MessagePublished {
            key,
            name: "paid".into(),
            correlation_key: "order-1".into()
        }]
    );
    let deadline = match published.effects.as_slice() {
        [
            Effect::MessageTtl {
                key: k,
                deadline_millis,
            },
        ] if *k == key => *deadline_millis,
        other => panic!("expected one MessageTtl, got {other:?}"),
    };
    assert_eq!(shard.state.messages().count(), 1);
    let message = shard.state.messages().next().expect("buffered");
    assert_eq!(message.variables, vars(r#"{"amount": 5}"#));
    // The timer before the deadline is refused and changes nothing.
    let early = shard.run(Command::ExpireMessage { key });
    assert_eq!(
        early.expect_err("too early").code,
        RejectionCode::InvalidState
    );
    shard.now_millis = deadline;
    let expired = shard.run(Command::ExpireMessage { key }).expect("expired");
    assert_eq!(expired.events, vec![Event::MessageExpired { key }]);
    assert_eq!(shard.state.messages().count(), 0);
    // A second expiry of the same message is stale.
    let stale = shard.run(Command::ExpireMessage { key });
    assert_eq!(stale.expect_err("gone").code, RejectionCode::InvalidState);
    shard.check_replay();
}

#[test]
fn a_message_id_is_unique_while_the_message_lives() {
    let mut shard = Shard::new();
    let first = shard
        .run(publish("paid", "order-1", 1_000, Some("m-1")))
        .expect("first");
    let first_key = key_of(&first.response);
    let duplicate = shard
        .run(publish("paid", "order-1", 1_000, Some("m-1")))
        .expect_err("duplicate");
    assert_eq!(duplicate.code, RejectionCode::AlreadyExists);
    assert!(duplicate.message.contains("m-1"), "{}", duplicate.message);
    // The same id with another name or correlation key is another message.
    shard
        .run(publish("shipped", "order-1", 1_000, Some("m-1")))
        .expect("other name");
    shard
        .run(publish("paid", "order-2", 1_000, Some("m-1")))
        .expect("other key");
    // Once the first expires, its id is free again.
    shard.now_millis += 2_000;
    shard
        .run(Command::ExpireMessage { key: first_key })
        .expect("expired");
    shard
        .run(publish("paid", "order-1", 1_000, Some("m-1")))
        .expect("id free again");
    // A message with no TTL is not buffered: never a duplicate, no timer.
    for _ in 0..2 {
        let unbuffered = shard
            .run(publish("ping", "x", 0, Some("same")))
            .expect("ttl 0");
        assert!(unbuffered.effects.is_empty());
    }
    assert_eq!(shard.state.messages().count(), 3);
    shard.check_replay();
}

#[test]
fn bad_messages_are_refused_by_name() {
    let mut shard = Shard::new();
    let empty = shard.run(publish("", "k", 10, None)).expect_err("no name");
    assert_eq!(empty.code, RejectionCode::InvalidArgument);
    let long = shard
        .run(publish("paid", &"k".repeat(2000), 10, None))
        .expect_err("long key");
    assert!(long.message.contains("NAME_BYTES_MAX"), "{}", long.message);
    let ttl = shard
        .run(publish("paid", "k", MESSAGE_TTL_MILLIS_MAX + 1, None))
        .expect_err("ttl");
    assert_eq!(ttl.code, RejectionCode::LimitExceeded);
    assert!(
        ttl.message.contains("MESSAGE_TTL_MILLIS_MAX"),
        "{}",
        ttl.message
    );
    let id = shard
        .run(publish("paid", "k", 10, Some("")))
        .expect_err("empty id");
    assert_eq!(id.code, RejectionCode::InvalidArgument);
}

#[test]
fn buffered_messages_survive_a_snapshot() {
    let mut shard = Shard::new();
    shard
        .run(publish("paid", "order-1", 5_000, Some("m-1")))
        .expect("one");
    shard.run(publish("paid", "", 9_000, None)).expect("two");
    let bytes = shard.state.encode();
    let restored = State::decode(&bytes).expect("decodes");
    assert_eq!(restored.encode(), bytes);
    assert_eq!(restored.messages().count(), 2);
    // The message-id index comes back too: the duplicate is still refused.
    shard.state = restored;
    let duplicate = shard.run(publish("paid", "order-1", 5_000, Some("m-1")));
    assert_eq!(
        duplicate.expect_err("dup").code,
        RejectionCode::AlreadyExists
    );
    shard.check_replay();
}
