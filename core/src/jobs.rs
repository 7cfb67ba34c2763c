//! Job commands: `ActivateJobs` and `CompleteJob`.

use std::sync::Arc;

use crate::engine::{
    ActivatedJob, Ctx, Effect, Event, Keys, Outcome, Rejection, RejectionCode, Response, Variables,
};
use crate::instance::{IncidentRetry, JobState, Listener, ListenerEvent};
use crate::key::Key;
use crate::limits::{
    ACTIVATION_ANSWER_BYTES_MAX, FETCH_VARIABLES_MAX, JOBS_PER_ACTIVATION_MAX, NAME_BYTES_MAX,
};
use crate::run::Run;
use crate::state::State;
use crate::variables::{Update, plan_local, plan_propagation};

use RejectionCode::{InvalidArgument, LimitExceeded};

pub(crate) fn activate(
    state: &mut State,
    job_type: &str,
    worker: &str,
    max_jobs: u32,
    lease_millis: u64,
    fetch_variables: &[String],
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    check_fetch_variables(fetch_variables)?;
    if job_type.is_empty() || job_type.len() > NAME_BYTES_MAX || worker.len() > NAME_BYTES_MAX {
        return Err(Rejection::new(
            InvalidArgument,
            format!(
                "the job type must be 1 to NAME_BYTES_MAX ({NAME_BYTES_MAX}) bytes, the worker name at most that"
            ),
        ));
    }
    if max_jobs == 0 || max_jobs > JOBS_PER_ACTIVATION_MAX {
        return Err(Rejection::new(
            LimitExceeded,
            format!(
                "max_jobs is {max_jobs}; ask for 1 to JOBS_PER_ACTIVATION_MAX ({JOBS_PER_ACTIVATION_MAX})"
            ),
        ));
    }
    let lease = i64::try_from(lease_millis)
        .ok()
        .filter(|lease| *lease > 0)
        .ok_or_else(|| {
            Rejection::new(
                InvalidArgument,
                format!("the lease of {lease_millis} ms is not a positive time"),
            )
        })?;
    let deadline_millis = ctx.now_millis.saturating_add(lease);
    let chosen: Vec<Key> = state
        .ready_jobs
        .get(job_type)
        .map(|ready| ready.iter().take(max_jobs as usize).copied().collect())
        .unwrap_or_default();
    let mut run = Run::reading(state, Keys::new(ctx), ctx.now_millis);
    let mut jobs = Vec::with_capacity(chosen.len());
    run.effects.reserve_exact(chosen.len());
    // Jobs that alone are over ACTIVATION_ANSWER_BYTES_MAX, with their size.
    let mut too_large = Vec::new();
    let mut answer_bytes = 0;
    // One name for every job this activation hands out.
    let worker: Arc<str> = worker.into();
    for key in chosen {
        let activated = activated_job(&run, key, deadline_millis, fetch_variables);
        let bytes = activated.answer_bytes();
        if bytes > ACTIVATION_ANSWER_BYTES_MAX {
            too_large.push((key, bytes));
            continue;
        }
        if answer_bytes + bytes > ACTIVATION_ANSWER_BYTES_MAX {
            // It and the jobs after it stay ready for the next activation.
            break;
        }
        answer_bytes += bytes;
        run.state
            .jobs
            .get_mut(&key)
            .expect("ready jobs are open")
            .state = JobState::Activated {
            worker: Arc::clone(&worker),
            deadline_millis,
        };
        run.effects.push(Effect::JobLease {
            key,
            deadline_millis,
        });
        jobs.push(activated);
    }
    if let Some(ready) = run.state.ready_jobs.get_mut(job_type) {
        for job in &jobs {
            ready.remove(&job.key);
        }
        for (key, _) in &too_large {
            ready.remove(key);
        }
        if ready.is_empty() {
            run.state.ready_jobs.remove(job_type);
        }
    }
    for (key, bytes) in too_large {
        too_large_to_activate(&mut run, key, bytes);
    }
    Ok(run.outcome(Response::JobsActivated(jobs)))
}

/// What the answer to an activation carries of the job `key`.
fn activated_job(
    run: &Run<'_>,
    key: Key,
    deadline_millis: i64,
    fetch_variables: &[String],
) -> ActivatedJob {
    let job = &run.state.jobs[&key];
    let element = &run.state.elements[&job.element_instance_key];
    let definition = run.definition_of(job.element_instance_key);
    let model = definition.element(element.element);
    let (custom_headers, completion) = match &model.kind {
        ringflow_bpmn::ElementKind::ServiceTask(job)
        | ringflow_bpmn::ElementKind::SendTask(job) => (job.headers.clone(), None),
        ringflow_bpmn::ElementKind::UserTask(task) => {
            crate::usertasks::job_view(run.state, job, task)
        }
        _ => (Vec::new(), None),
    };
    ActivatedJob {
        key,
        job_type: job.job_type.clone(),
        process_instance_key: job.process_instance_key,
        bpmn_process_id: definition.bpmn_process_id.clone(),
        element_id: model.id.clone(),
        element_instance_key: job.element_instance_key,
        retries: job.retries,
        deadline_millis,
        custom_headers,
        variables_json: if let Some(completion) = completion {
            // A completing listener sees what the completion would set.
            completing_variables(run, job.element_instance_key, fetch_variables, completion)
        } else if fetch_variables.is_empty() {
            run.visible_variables_json(job.element_instance_key)
        } else {
            let fetched = fetched_variables(run, job.element_instance_key, fetch_variables);
            crate::variables::to_json_string(&fetched)
        },
        listener: job.listener.map(|listener| listener.event),
    }
}

/// The job `key` is `bytes` in an answer, over `ACTIVATION_ANSWER_BYTES_MAX` on its own, so
/// no worker can be handed it: it fails, its retries kept, with an incident that says why
/// (Zeebe does the same). Resolving the incident makes it ready again, once its variables
/// are smaller or its workers fetch fewer.
#[cold]
fn too_large_to_activate(run: &mut Run<'_>, key: Key, bytes: usize) {
    let job = run.state.jobs.get_mut(&key).expect("ready jobs are open");
    job.state = JobState::Failed;
    let (retries, element) = (job.retries, job.element_instance_key);
    let message = format!(
        "job {key} cannot be activated: with its variables it is {bytes} bytes in an answer, \
         over ACTIVATION_ANSWER_BYTES_MAX ({ACTIVATION_ANSWER_BYTES_MAX}); have its workers fetch \
         only the variables they read (fetch_variables) or make the variables smaller \
         (SetVariables), then resolve this incident"
    );
    run.events.push(Event::JobFailed {
        key,
        retries,
        message: message.clone(),
    });
    run.incident_with(element, message, IncidentRetry::Job);
}

/// Refuses a fetch list over `FETCH_VARIABLES_MAX` names or with a name that is empty or
/// over `NAME_BYTES_MAX` bytes.
pub fn check_fetch_variables(names: &[String]) -> Result<(), Rejection> {
    if names.len() > FETCH_VARIABLES_MAX {
        return Err(Rejection::new(
            LimitExceeded,
            format!(
                "fetch_variables names {} variables; at most FETCH_VARIABLES_MAX ({FETCH_VARIABLES_MAX})",
                names.len()
            ),
        ));
    }
    if let Some(name) = names
        .iter()
        .find(|name| name.is_empty() || name.len() > NAME_BYTES_MAX)
    {
        return Err(Rejection::new(
            InvalidArgument,
            format!(
                "fetch_variables holds a name of {} bytes; a name is 1 to NAME_BYTES_MAX ({NAME_BYTES_MAX}) bytes",
                name.len()
            ),
        ));
    }
    Ok(())
}

/// The visible variables `names` names, each from the innermost scope that has it; the
/// others are not copied.
fn fetched_variables(run: &Run, scope: Key, names: &[String]) -> Variables {
    let mut chosen = Variables::new();
    for name in names {
        if let Some(value) = run.lookup(scope, name) {
            chosen.insert(name.clone(), value.clone());
        }
    }
    chosen
}

/// The variables of a user task's completing listener's job: those visible at the task
/// (only the fetched ones, when the activation names any), with the completion's over them.
#[cold]
fn completing_variables(
    run: &Run<'_>,
    element_instance_key: Key,
    fetch_variables: &[String],
    completion: Variables,
) -> String {
    let mut variables = if fetch_variables.is_empty() {
        serde_json::from_str::<Variables>(&run.visible_variables_json(element_instance_key))
            .expect("the engine writes a JSON object")
    } else {
        fetched_variables(run, element_instance_key, fetch_variables)
    };
    for (name, value) in completion {
        if fetch_variables.is_empty() || fetch_variables.contains(&name) {
            variables.insert(name, value);
        }
    }
    crate::variables::to_json_string(&variables)
}

pub(crate) fn complete(
    state: &mut State,
    key: Key,
    variables: Variables,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    let Some(job) = state.jobs.get(&key) else {
        return Err(crate::usertasks::missing_job(state, key));
    };
    if matches!(job.state, JobState::Failed | JobState::Backoff { .. }) {
        return Err(Rejection::new(
            RejectionCode::InvalidState,
            format!("job {key} failed and waits for a retry; it cannot be completed now"),
        ));
    }
    if !state.index.ad_hoc_jobs.is_empty() && state.index.ad_hoc_jobs.contains(&key) {
        // An ad-hoc subprocess's worker completed without a decision: nothing to activate.
        let result = crate::adhoc::AdHocJobResult::default();
        return crate::adhoc::complete_job(state, key, variables, result, ctx);
    }
    let element_instance_key = job.element_instance_key;
    let listener = job.listener;
    if job.user_task.is_some() || listener.is_some_and(|l| l.event.is_task_listener()) {
        return crate::usertasks::complete(state, key, variables, ctx);
    }
    complete_plain(state, key, element_instance_key, listener, variables, ctx)
}

/// Completes a job whose element (or execution listener) goes on at once. Inlined into
/// `complete`, as it was before user tasks could hold a completion: it is on the hot path.
#[inline(always)]
pub(crate) fn complete_plain(
    state: &mut State,
    key: Key,
    element_instance_key: Key,
    listener: Option<Listener>,
    variables: Variables,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    let documents = if let Some(listener) = listener {
        listener_documents(state, element_instance_key, listener, variables)?
    } else {
        completion_documents(state, element_instance_key, variables)?
    };
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    for update in documents {
        run.merge_variables(update);
    }
    run.state.remove_job(key);
    run.state
        .elements
        .get_mut(&element_instance_key)
        .expect("a job's element is live")
        .job = None;
    match listener {
        Some(listener) => run.listener_done(element_instance_key, listener),
        None => run.complete_later(element_instance_key),
    }
    run.run();
    Ok(run.outcome(Response::JobCompleted { key }))
}

/// Where a listener job's variables go: a start listener's become local variables of the
/// element; an end listener's are propagated from the element's scope, like output mappings
/// (from the root itself, for the process's end listeners).
fn listener_documents(
    state: &State,
    element_instance_key: Key,
    listener: Listener,
    variables: Variables,
) -> Result<Vec<Update>, Rejection> {
    if variables.is_empty() {
        return Ok(Vec::new());
    }
    match listener.event {
        ListenerEvent::Start => Ok(vec![plan_local(state, element_instance_key, variables)?]),
        ListenerEvent::Creating
        | ListenerEvent::Completing
        | ListenerEvent::Assigning
        | ListenerEvent::Updating => {
            unreachable!("a task listener's job is completed by `usertasks`")
        }
        ListenerEvent::End => {
            let from = state.elements[&element_instance_key]
                .scope
                .unwrap_or(element_instance_key);
            plan_propagation(state, from, variables)
        }
    }
}

/// Where the variables of an element's completion go: kept local for its output mappings
/// to read, or propagated.
#[inline(always)]
pub(crate) fn completion_documents(
    state: &State,
    element_instance_key: Key,
    variables: Variables,
) -> Result<Vec<Update>, Rejection> {
    if has_outputs(state, element_instance_key) {
        // Output mappings decide what leaves the task: the job's variables stay local.
        Ok(vec![plan_local(state, element_instance_key, variables)?])
    } else {
        plan_propagation(state, element_instance_key, variables)
    }
}

fn has_outputs(state: &State, element_instance_key: Key) -> bool {
    let element = &state.elements[&element_instance_key];
    let instance = &state.instances[&element.process_instance_key];
    let definition = &state.processes[&instance.process_definition_key].definition;
    !definition
        .element(element.element)
        .io_mapping
        .outputs
        .is_empty()
}
