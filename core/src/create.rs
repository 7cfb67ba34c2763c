//! `CreateInstance`: start a process at its none start event.

use std::sync::Arc;

use crate::engine::{
    Ctx, Keys, Outcome, ProcessRef, Rejection, RejectionCode, Response, Variables,
};
use crate::limits::{LIVE_INSTANCES_MAX, NAME_BYTES_MAX};
use crate::run::Run;
use crate::state::State;
use crate::variables::checked_len;

use ringflow_bpmn::{ElementKind, ProcessDefinition, StartTrigger};

pub(crate) fn create(
    state: &mut State,
    process: ProcessRef,
    variables: Variables,
    business_key: Option<String>,
    await_result: bool,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    let version = match &process {
        ProcessRef::Latest(id) => state.latest_process(id).ok_or_else(|| {
            Rejection::new(
                RejectionCode::ProcessNotFound,
                format!("no process with id `{id}` is deployed"),
            )
        })?,
        ProcessRef::Key(key) => state.process(*key).ok_or_else(|| {
            Rejection::new(
                RejectionCode::ProcessNotFound,
                format!("no process definition has the key {key}"),
            )
        })?,
    };
    let definition = Arc::clone(&version.definition);
    let (process_definition_key, bpmn_process_id, number) = (
        version.key,
        Arc::clone(&definition.bpmn_process_id),
        version.version,
    );
    if !has_none_start(&definition) {
        return Err(Rejection::new(
            RejectionCode::InvalidArgument,
            format!(
                "the process `{bpmn_process_id}` has no none start event; it is started by its \
                 messages, signals or timers"
            ),
        ));
    }
    if business_key
        .as_ref()
        .is_some_and(|key| key.len() > NAME_BYTES_MAX)
    {
        return Err(Rejection::new(
            RejectionCode::LimitExceeded,
            format!("the business key is over NAME_BYTES_MAX ({NAME_BYTES_MAX}) bytes"),
        ));
    }
    let variables_len = checked_len(&variables)?;
    if state.instances.len() >= LIVE_INSTANCES_MAX {
        return Err(Rejection::new(
            RejectionCode::LimitExceeded,
            format!("the shard runs LIVE_INSTANCES_MAX ({LIVE_INSTANCES_MAX}) instances already"),
        ));
    }
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    let key = run.new_instance(
        process_definition_key,
        variables,
        business_key,
        await_result,
        None,
    );
    // Measured above: the first change to the instance's variables need not measure them.
    run.state.remember_len(key, variables_len);
    run.enter_root(&definition, key, None);
    run.run();
    Ok(run.outcome(Response::InstanceCreated {
        process_instance_key: key,
        process_definition_key,
        bpmn_process_id,
        version: number,
    }))
}

fn has_none_start(definition: &ProcessDefinition) -> bool {
    definition
        .start_events(ProcessDefinition::ROOT)
        .iter()
        .any(|start| {
            matches!(
                definition.element(*start).kind,
                ElementKind::StartEvent {
                    trigger: StartTrigger::None,
                    ..
                }
            )
        })
}
