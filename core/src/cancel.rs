//! `CancelInstance`: end a running process instance and everything in it.

use crate::engine::{Ctx, Keys, Outcome, Rejection, RejectionCode, Response};
use crate::key::Key;
use crate::run::Run;
use crate::state::State;

pub(crate) fn cancel(state: &mut State, key: Key, ctx: &Ctx) -> Result<Outcome, Rejection> {
    if !state.instances.contains_key(&key) {
        return Err(Rejection::new(
            RejectionCode::InstanceNotFound,
            format!("process instance {key} does not exist or has already ended"),
        ));
    }
    if let Some(parent) = state.instances[&key].parent {
        if parent.shard() != state.shard() {
            return Err(Rejection::new(
                RejectionCode::InvalidState,
                format!(
                    "process instance {key} was started by call activity {parent} on shard {}; \
                     cancel that instance instead",
                    parent.shard()
                ),
            ));
        }
        let root = state.elements[&parent].process_instance_key;
        return Err(Rejection::new(
            RejectionCode::InvalidState,
            format!(
                "process instance {key} was started by a call activity of instance {root}; \
                 cancel that instance instead"
            ),
        ));
    }
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    run.terminate(key);
    Ok(run.outcome(Response::InstanceCanceled {
        process_instance_key: key,
    }))
}
