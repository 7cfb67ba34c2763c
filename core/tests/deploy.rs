//! `Deploy`: versions, duplicates, atomicity, limits, and snapshots that replay exactly.

use std::sync::Arc;

use ringflow_core::{
    Command, Ctx, Event, Key, Rejection, RejectionCode, Resource, Response, SnapshotError, State,
    process,
};

use common::SHARD;

fn model(process_id: &str, job_type: &str) -> Arc<[u8]> {
    format!(
        r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
             xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
           <bpmn:process id="{process_id}" isExecutable="true">
             <bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="t"/>
             <bpmn:serviceTask id="t"><bpmn:extensionElements>
               <zeebe:taskDefinition type="{job_type}"/></bpmn:extensionElements></bpmn:serviceTask>
             <bpmn:sequenceFlow id="f2" sourceRef="t" targetRef="e"/><bpmn:endEvent id="e"/>
           </bpmn:process></bpmn:definitions>"#
    )
    .into_bytes()
    .into()
}

fn resource(name: &str, content: Arc<[u8]>) -> Resource {
    Resource {
        name: name.to_string(),
        content,
    }
}

mod common;

use common::Shard;

trait Deploy {
    fn deploy_all(
        &mut self,
        resources: Vec<Resource>,
    ) -> Result<ringflow_core::Deployment, Rejection>;
}

impl Deploy for Shard {
    fn deploy_all(
        &mut self,
        resources: Vec<Resource>,
    ) -> Result<ringflow_core::Deployment, Rejection> {
        match self.run(Command::Deploy { resources })?.response {
            Response::Deployed(deployment) => Ok(deployment),
            other => panic!("unexpected response {other:?}"),
        }
    }
}

#[test]
fn versions_count_up_and_identical_xml_is_a_duplicate() {
    let mut shard = Shard::new();
    let first = shard
        .deploy_all(vec![resource("a.bpmn", model("pay", "charge"))])
        .expect("v1");
    assert_eq!(first.key, Key::new(SHARD, 1));
    assert_eq!(first.processes[0].version, 1);
    assert_eq!(
        first.processes[0].process_definition_key,
        Key::new(SHARD, 2)
    );
    assert!(!first.processes[0].duplicate);

    let again = shard
        .deploy_all(vec![resource("a.bpmn", model("pay", "charge"))])
        .expect("same");
    assert_eq!(again.processes[0].version, 1);
    assert_eq!(
        again.processes[0].process_definition_key,
        Key::new(SHARD, 2)
    );
    assert!(again.processes[0].duplicate);

    let changed = shard
        .deploy_all(vec![resource("a.bpmn", model("pay", "charge-v2"))])
        .expect("v2");
    assert_eq!(changed.processes[0].version, 2);
    assert!(!changed.processes[0].duplicate);
    assert_eq!(
        shard.state.latest_process("pay").expect("latest").version,
        2
    );
    assert_eq!(
        shard.state.process_version("pay", 1).expect("v1").key,
        Key::new(SHARD, 2)
    );
    assert!(shard.state.process_version("pay", 3).is_none());
    assert!(shard.state.process_version("pay", 0).is_none());
}

#[test]
fn a_deployment_is_atomic() {
    let mut shard = Shard::new();
    let broken: Arc<[u8]> = b"<bpmn:definitions".to_vec().into();
    let rejection = shard
        .deploy_all(vec![
            resource("good.bpmn", model("pay", "a")),
            resource("bad.bpmn", broken),
        ])
        .expect_err("one resource is invalid");
    assert_eq!(rejection.code, RejectionCode::InvalidModel);
    assert!(
        rejection.message.starts_with("bad.bpmn:1:"),
        "{}",
        rejection.message
    );
    assert!(
        shard.state.latest_process("pay").is_none(),
        "nothing was deployed"
    );
    assert_eq!(
        shard.state.last_key(),
        Key::new(SHARD, 0),
        "no key was used"
    );

    let twice = shard
        .deploy_all(vec![
            resource("a.bpmn", model("pay", "a")),
            resource("b.bpmn", model("pay", "b")),
        ])
        .expect_err("one id twice");
    assert_eq!(twice.code, RejectionCode::InvalidArgument);
    assert!(shard.state.processes().next().is_none());
}

#[test]
fn bad_requests_are_refused_with_named_limits() {
    let mut shard = Shard::new();
    assert_eq!(
        shard.deploy_all(vec![]).expect_err("empty").code,
        RejectionCode::InvalidArgument
    );
    let many: Vec<Resource> = (0..=ringflow_core::limits::DEPLOYMENT_RESOURCES_MAX)
        .map(|i| resource(&format!("r{i}.bpmn"), model(&format!("p{i}"), "a")))
        .collect();
    let rejection = shard.deploy_all(many).expect_err("too many");
    assert_eq!(rejection.code, RejectionCode::LimitExceeded);
    assert!(rejection.message.contains("DEPLOYMENT_RESOURCES_MAX"));
    let same_name = vec![
        resource("a.bpmn", model("p", "a")),
        resource("a.bpmn", model("q", "a")),
    ];
    assert_eq!(
        shard.deploy_all(same_name).expect_err("names").code,
        RejectionCode::InvalidArgument
    );
    assert_eq!(
        shard
            .deploy_all(vec![resource("", model("p", "a"))])
            .expect_err("name")
            .code,
        RejectionCode::InvalidArgument
    );
}

#[test]
fn events_name_new_versions_only() {
    let mut shard = Shard::new();
    let outcome = shard
        .run(Command::Deploy {
            resources: vec![resource("a.bpmn", model("pay", "a"))],
        })
        .expect("v1");
    assert_eq!(
        outcome.events,
        vec![Event::ProcessDeployed {
            key: Key::new(SHARD, 2),
            bpmn_process_id: "pay".to_string(),
            version: 1,
            deployment_key: Key::new(SHARD, 1),
            resource_name: "a.bpmn".to_string(),
            resource: model("pay", "a"),
        }]
    );
    let duplicate = shard
        .run(Command::Deploy {
            resources: vec![resource("a.bpmn", model("pay", "a"))],
        })
        .expect("dup");
    assert!(duplicate.events.is_empty());
}

#[test]
fn replay_and_snapshots_give_identical_bytes() {
    let mut shard = Shard::new();
    for (round, job_type) in ["a", "b", "b", "c"].iter().enumerate() {
        shard
            .deploy_all(vec![resource("pay.bpmn", model("pay", job_type))])
            .expect("deploy");
        shard
            .deploy_all(vec![resource(
                &format!("x{round}.bpmn"),
                model(&format!("x{round}"), "x"),
            )])
            .expect("deploy");
    }
    let live = shard.state.encode();

    // Replaying the journal of accepted commands rebuilds the same state.
    let mut replayed = State::new(SHARD);
    for (command, ctx) in &shard.log {
        process(&mut replayed, command.clone(), ctx).expect("replay accepts what was accepted");
    }
    assert_eq!(replayed.encode(), live);

    // Restoring a snapshot and continuing equals the uninterrupted run.
    let mut restored = State::decode(&live).expect("snapshot restores");
    assert_eq!(restored.encode(), live);
    let ctx = Ctx {
        now_millis: shard.now_millis,
        next_key: shard.next_key,
    };
    let command = Command::Deploy {
        resources: vec![resource("pay.bpmn", model("pay", "d"))],
    };
    process(&mut restored, command.clone(), &ctx).expect("continue after restore");
    shard.run(command).expect("continue live");
    assert_eq!(restored.encode(), shard.state.encode());
}

#[test]
fn damaged_snapshots_are_refused() {
    let mut shard = Shard::new();
    shard
        .deploy_all(vec![resource("pay.bpmn", model("pay", "a"))])
        .expect("deploy");
    let bytes = shard.state.encode();
    assert_eq!(
        State::decode(b"nope").expect_err("magic"),
        SnapshotError::BadMagic
    );
    for flip in [9, 20, bytes.len() / 2, bytes.len() - 1] {
        let mut damaged = bytes.clone();
        damaged[flip] ^= 0x40;
        assert!(
            matches!(
                State::decode(&damaged),
                Err(SnapshotError::ChecksumMismatch { .. })
            ),
            "a flipped bit at {flip} must be caught"
        );
    }
    for cut in [8, 12, bytes.len() - 5] {
        assert!(
            State::decode(&bytes[..cut]).is_err(),
            "a snapshot cut at {cut} must be refused"
        );
    }
}
