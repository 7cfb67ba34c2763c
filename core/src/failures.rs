//! When work does not go to plan: failed jobs, expired leases, retries, incidents, and
//! variables set from outside.

use crate::engine::{Ctx, Effect, Keys, Outcome, Rejection, RejectionCode, Response, Variables};
use crate::instance::{IncidentRetry, JobState, ListenerEvent};
use crate::key::Key;
use crate::limits::MESSAGE_BYTES_MAX;
use crate::run::Run;
use crate::state::State;
use crate::variables::{plan_local, plan_propagation};

use RejectionCode::{
    IncidentNotFound, InstanceNotFound, InvalidArgument, InvalidState, LimitExceeded,
};

fn outcome(response: Response, effects: Vec<Effect>, ctx: &Ctx) -> Outcome {
    Outcome {
        response,
        events: Vec::new(),
        effects,
        next_key: ctx.next_key,
    }
}

fn job_not_found(state: &State, key: Key) -> Rejection {
    crate::usertasks::missing_job(state, key)
}

pub(crate) fn fail(
    state: &mut State,
    key: Key,
    retries: u32,
    retry_backoff_millis: u64,
    message: String,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    let job = state
        .jobs
        .get(&key)
        .ok_or_else(|| job_not_found(state, key))?;
    if !matches!(job.state, JobState::Activated { .. }) {
        return Err(Rejection::new(
            InvalidState,
            format!("job {key} is not activated; only a job a worker holds can fail"),
        ));
    }
    if message.len() > MESSAGE_BYTES_MAX {
        return Err(Rejection::new(
            LimitExceeded,
            format!("the message is over MESSAGE_BYTES_MAX ({MESSAGE_BYTES_MAX}) bytes"),
        ));
    }
    let backoff = i64::try_from(retry_backoff_millis).map_err(|_| {
        Rejection::new(
            InvalidArgument,
            format!("a backoff of {retry_backoff_millis} ms is too long"),
        )
    })?;
    let (job_type, element) = (job.job_type.clone(), job.element_instance_key);
    state.jobs.get_mut(&key).expect("checked").retries = retries;
    if retries > 0 && backoff == 0 {
        state.make_ready(key);
        let effects = vec![Effect::JobsAvailable { job_type }];
        return Ok(outcome(Response::JobUpdated { key }, effects, ctx));
    }
    if retries > 0 {
        let due_millis = ctx.now_millis.saturating_add(backoff);
        state.jobs.get_mut(&key).expect("checked").state = JobState::Backoff { due_millis };
        let effects = vec![Effect::JobBackoff { key, due_millis }];
        return Ok(outcome(Response::JobUpdated { key }, effects, ctx));
    }
    state.jobs.get_mut(&key).expect("checked").state = JobState::Failed;
    let text = if message.is_empty() {
        format!("job {key} failed with no retries left")
    } else {
        format!("job {key} failed with no retries left: {message}")
    };
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    run.incident_with(element, text, IncidentRetry::Job);
    Ok(run.outcome(Response::JobUpdated { key }))
}

pub(crate) fn lease_expired(state: &mut State, key: Key, ctx: &Ctx) -> Result<Outcome, Rejection> {
    let expired = |job: &JobState| matches!(job, JobState::Activated { deadline_millis, .. } if *deadline_millis <= ctx.now_millis);
    ready_again(state, key, ctx, expired, "holds no lease that has run out")
}

pub(crate) fn retry_due(state: &mut State, key: Key, ctx: &Ctx) -> Result<Outcome, Rejection> {
    let due = |job: &JobState| matches!(job, JobState::Backoff { due_millis } if *due_millis <= ctx.now_millis);
    ready_again(state, key, ctx, due, "waits for no backoff that is over")
}

/// A timer fired for a job: when `fired` holds for its state, it is handed out again;
/// otherwise the timer is stale (the job moved on meanwhile) and the command is refused.
fn ready_again(
    state: &mut State,
    key: Key,
    ctx: &Ctx,
    fired: impl Fn(&JobState) -> bool,
    stale: &str,
) -> Result<Outcome, Rejection> {
    let job = state
        .jobs
        .get(&key)
        .ok_or_else(|| job_not_found(state, key))?;
    if !fired(&job.state) {
        return Err(Rejection::new(
            InvalidState,
            format!("job {key} {stale} (a stale timer)"),
        ));
    }
    let job_type = job.job_type.clone();
    state.make_ready(key);
    Ok(outcome(
        Response::JobUpdated { key },
        vec![Effect::JobsAvailable { job_type }],
        ctx,
    ))
}

pub(crate) fn update_retries(
    state: &mut State,
    key: Key,
    retries: u32,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    if retries == 0 {
        return Err(Rejection::new(
            InvalidArgument,
            "retries must be at least 1".to_string(),
        ));
    }
    if !state.jobs.contains_key(&key) {
        return Err(job_not_found(state, key));
    }
    let job = state.jobs.get_mut(&key).expect("checked just before");
    job.retries = retries;
    Ok(outcome(Response::JobUpdated { key }, Vec::new(), ctx))
}

pub(crate) fn resolve(state: &mut State, key: Key, ctx: &Ctx) -> Result<Outcome, Rejection> {
    let incident = state.incidents.get(&key).cloned().ok_or_else(|| {
        Rejection::new(
            IncidentNotFound,
            format!("incident {key} does not exist or was resolved"),
        )
    })?;
    let element_key = incident.element_instance_key;
    let job = state.elements[&element_key].job;
    if incident.retry == IncidentRetry::Job {
        let job_key = job.expect("a job incident belongs to an element with a job");
        if state.jobs[&job_key].retries == 0 {
            return Err(Rejection::new(
                InvalidState,
                format!(
                    "job {job_key} has no retries left; raise them with UpdateJobRetries first"
                ),
            ));
        }
    }
    state.incidents.remove(&key);
    state.elements.get_mut(&element_key).expect("live").incident = None;
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    run.incident_gone(incident.process_instance_key, key);
    match incident.retry {
        IncidentRetry::Job => {
            let job_key = job.expect("checked above");
            let job_type = run.state.jobs[&job_key].job_type.clone();
            run.state.make_ready(job_key);
            run.effects.push(Effect::JobsAvailable { job_type });
        }
        IncidentRetry::Activation => {
            let element = run.state.elements[&element_key].element;
            run.enter(element_key, element);
        }
        IncidentRetry::Completion => run.complete_later(element_key),
        IncidentRetry::Completing => {
            let element = run.state.elements[&element_key].element;
            run.listen(element_key, element, ListenerEvent::Completing, 0);
        }
        IncidentRetry::Assigning => {
            let element = run.state.elements[&element_key].element;
            run.listen(element_key, element, ListenerEvent::Assigning, 0);
        }
        IncidentRetry::Updating => {
            let element = run.state.elements[&element_key].element;
            run.listen(element_key, element, ListenerEvent::Updating, 0);
        }
    }
    run.run();
    Ok(run.outcome(Response::IncidentResolved { key }))
}

pub(crate) fn set_variables(
    state: &mut State,
    scope: Key,
    variables: Variables,
    local: bool,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    if !state.elements.contains_key(&scope) {
        return Err(Rejection::new(
            InstanceNotFound,
            format!("no live process or element instance has the key {scope}"),
        ));
    }
    let updates = if local {
        vec![plan_local(state, scope, variables)?]
    } else {
        plan_propagation(state, scope, variables)?
    };
    // A run, for the conditional events the new values may fire.
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    for update in updates {
        run.merge_variables(update);
    }
    run.run();
    Ok(run.outcome(Response::VariablesSet { scope }))
}
