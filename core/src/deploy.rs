//! `Deploy`: one or more BPMN resources in one atomic step.
//!
//! Every resource is parsed and validated first; if any is invalid, or two resources define
//! the same process id, nothing is deployed. Then each process gets a new version, unless its
//! resource is byte for byte the resource of the latest version, in which case the existing
//! version is returned (a duplicate) and nothing new is made.

use std::sync::Arc;

use crate::engine::{
    Ctx, DeployedDecision, DeployedProcess, Deployment, Event, Keys, Outcome, Rejection,
    RejectionCode, Resource, Response,
};
use crate::limits::{
    DEPLOYMENT_BYTES_MAX, DEPLOYMENT_RESOURCES_MAX, PROCESS_VERSIONS_MAX, RESOURCE_NAME_BYTES_MAX,
};
use crate::run::Run;
use crate::state::{ProcessVersion, State};

use RejectionCode::{InvalidArgument, InvalidModel, LimitExceeded};

pub(crate) fn deploy(
    state: &mut State,
    resources: Vec<Resource>,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    check_request(&resources)?;
    let mut parsed = Vec::with_capacity(resources.len());
    let mut dmn = Vec::new();
    for resource in &resources {
        if crate::decisions::is_dmn(&resource.name) {
            let model = crate::decisions::parse(&resource.content).map_err(|error| {
                Rejection::new(InvalidModel, format!("{}: {error}", resource.name))
            })?;
            dmn.push((resource, model));
            continue;
        }
        let model = ringflow_bpmn::parse(&resource.content).map_err(|error| {
            let lines: Vec<String> = error
                .diagnostics
                .iter()
                .map(|diagnostic| format!("{}:{diagnostic}", resource.name))
                .collect();
            Rejection::new(InvalidModel, lines.join("\n"))
        })?;
        let problems: Vec<String> = model
            .processes
            .iter()
            .flat_map(|process| crate::support::refusals(process, ctx.now_millis))
            .map(|refusal| format!("{}:{refusal}", resource.name))
            .collect();
        if !problems.is_empty() {
            return Err(Rejection::new(InvalidModel, problems.join("\n")));
        }
        parsed.push(model);
    }
    let bpmn_resources: Vec<&Resource> = resources
        .iter()
        .filter(|resource| !crate::decisions::is_dmn(&resource.name))
        .collect();
    check_decision_ids(&dmn)?;
    let mut seen: Vec<&str> = Vec::new();
    for (resource, model) in bpmn_resources.iter().zip(&parsed) {
        for process in &model.processes {
            if seen.contains(&&*process.bpmn_process_id) {
                return Err(Rejection::new(
                    InvalidArgument,
                    format!(
                        "the process id `{}` is defined twice in one deployment (again in {})",
                        process.bpmn_process_id, resource.name
                    ),
                ));
            }
            seen.push(&process.bpmn_process_id);
        }
    }
    // Nothing below can fail except running out of keys or versions, which is checked before
    // the state changes.
    let mut keys = Keys::new(ctx);
    let deployment_key = keys.take()?;
    let decision_plan = plan_decisions(state, &dmn, &mut keys)?;
    let mut plan = Vec::new();
    for (resource, model) in bpmn_resources.into_iter().zip(parsed) {
        for definition in model.processes {
            let latest = state.latest_process(&definition.bpmn_process_id);
            let duplicate = latest.is_some_and(|latest| latest.resource == resource.content);
            let version = match (latest, duplicate) {
                (Some(latest), true) => latest.version,
                (Some(latest), false) => latest.version + 1,
                (None, _) => 1,
            };
            if version > PROCESS_VERSIONS_MAX {
                return Err(Rejection::new(
                    LimitExceeded,
                    format!(
                        "`{}` already has PROCESS_VERSIONS_MAX ({PROCESS_VERSIONS_MAX}) versions",
                        definition.bpmn_process_id
                    ),
                ));
            }
            let key = match (latest, duplicate) {
                (Some(latest), true) => latest.key,
                _ => keys.take()?,
            };
            plan.push((resource, definition, version, key, duplicate));
        }
    }
    let mut events = Vec::new();
    let mut processes = Vec::new();
    let mut new_latest = Vec::new();
    for (resource, definition, version, key, duplicate) in plan {
        processes.push(DeployedProcess {
            bpmn_process_id: definition.bpmn_process_id.to_string(),
            version,
            process_definition_key: key,
            resource_name: resource.name.clone(),
            duplicate,
        });
        if duplicate {
            continue;
        }
        events.push(Event::ProcessDeployed {
            key,
            bpmn_process_id: definition.bpmn_process_id.to_string(),
            version,
            deployment_key,
            resource_name: resource.name.clone(),
            resource: Arc::clone(&resource.content),
        });
        let versions = state
            .versions
            .entry(definition.bpmn_process_id.to_string())
            .or_default();
        new_latest.push((versions.last().copied(), key));
        versions.push(key);
        state.index.listening |= definition.has_execution_listeners();
        let previous = state.processes.insert(
            key,
            ProcessVersion {
                key,
                bpmn_process_id: definition.bpmn_process_id.to_string(),
                version,
                deployment_key,
                resource_name: resource.name.clone(),
                resource: Arc::clone(&resource.content),
                definition: Arc::new(definition),
            },
        );
        assert!(
            previous.is_none(),
            "process definition key {key} handed out twice"
        );
    }
    let decisions = store_decisions(state, decision_plan, deployment_key, &mut events);
    if new_latest.is_empty() {
        return Ok(Outcome {
            response: Response::Deployed(Deployment {
                key: deployment_key,
                processes,
                decisions,
            }),
            events,
            effects: Vec::new(),
            next_key: keys.next(),
        });
    }
    // New latest versions: their message start events take over routing and their timer
    // start events are armed, replacing the previous version's.
    state.rebuild_message_starts();
    let mut run = Run::new(state, keys, ctx.now_millis);
    run.events = events;
    for (previous, latest) in new_latest {
        run.replace_start_timers(previous, latest);
    }
    Ok(run.outcome(Response::Deployed(Deployment {
        key: deployment_key,
        processes,
        decisions,
    })))
}

type DmnResource<'r> = (&'r Resource, crate::decisions::DmnModel);

/// A decision id may appear once per deployment.
fn check_decision_ids(dmn: &[DmnResource<'_>]) -> Result<(), Rejection> {
    let mut seen: Vec<&str> = Vec::new();
    for (resource, model) in dmn {
        for (id, _) in model.decisions() {
            if seen.contains(&id.as_str()) {
                return Err(Rejection::new(
                    InvalidArgument,
                    format!(
                        "the decision id `{id}` is defined twice in one deployment (again in {})",
                        resource.name
                    ),
                ));
            }
            seen.push(id);
        }
    }
    Ok(())
}

struct DecisionPlan {
    deployed: DeployedDecision,
    resource: Arc<[u8]>,
    model: crate::decisions::DmnModel,
}

/// Versions and keys of the deployment's decisions, before anything changes.
fn plan_decisions(
    state: &State,
    dmn: &[DmnResource<'_>],
    keys: &mut Keys,
) -> Result<Vec<DecisionPlan>, Rejection> {
    let mut plan = Vec::new();
    for (resource, model) in dmn {
        for (id, name) in model.decisions() {
            let latest = state.latest_decision(id);
            let duplicate = latest.is_some_and(|latest| latest.resource == resource.content);
            let (version, key) = match (latest, duplicate) {
                (Some(latest), true) => (latest.version, latest.key),
                (Some(latest), false) => (latest.version + 1, keys.take()?),
                (None, _) => (1, keys.take()?),
            };
            if version > PROCESS_VERSIONS_MAX {
                return Err(Rejection::new(
                    LimitExceeded,
                    format!("decision `{id}` already has PROCESS_VERSIONS_MAX versions"),
                ));
            }
            plan.push(DecisionPlan {
                deployed: DeployedDecision {
                    decision_id: id.clone(),
                    name: name.clone(),
                    version,
                    decision_key: key,
                    resource_name: resource.name.clone(),
                    duplicate,
                },
                resource: Arc::clone(&resource.content),
                model: model.clone(),
            });
        }
    }
    Ok(plan)
}

fn store_decisions(
    state: &mut State,
    plan: Vec<DecisionPlan>,
    deployment_key: crate::key::Key,
    events: &mut Vec<Event>,
) -> Vec<DeployedDecision> {
    let mut deployed = Vec::new();
    for decision in plan {
        let info = decision.deployed;
        if !info.duplicate {
            events.push(Event::DecisionDeployed {
                key: info.decision_key,
                decision_id: info.decision_id.clone(),
                version: info.version,
                deployment_key,
                resource_name: info.resource_name.clone(),
                resource: Arc::clone(&decision.resource),
            });
            state
                .decision_versions
                .entry(info.decision_id.clone())
                .or_default()
                .push(info.decision_key);
            state.decisions.insert(
                info.decision_key,
                crate::decisions::DecisionVersion {
                    key: info.decision_key,
                    decision_id: info.decision_id.clone(),
                    name: info.name.clone(),
                    version: info.version,
                    deployment_key,
                    resource_name: info.resource_name.clone(),
                    resource: decision.resource,
                    model: decision.model,
                },
            );
        }
        deployed.push(info);
    }
    deployed
}

fn check_request(resources: &[Resource]) -> Result<(), Rejection> {
    if resources.is_empty() {
        return Err(Rejection::new(
            InvalidArgument,
            "the deployment has no resources",
        ));
    }
    if resources.len() > DEPLOYMENT_RESOURCES_MAX {
        return Err(Rejection::new(
            LimitExceeded,
            format!(
                "the deployment has {} resources, over DEPLOYMENT_RESOURCES_MAX \
                 ({DEPLOYMENT_RESOURCES_MAX})",
                resources.len()
            ),
        ));
    }
    let bytes: usize = resources
        .iter()
        .map(|resource| resource.content.len())
        .sum();
    if bytes > DEPLOYMENT_BYTES_MAX {
        return Err(Rejection::new(
            LimitExceeded,
            format!(
                "the deployment has {bytes} bytes, over DEPLOYMENT_BYTES_MAX \
                 ({DEPLOYMENT_BYTES_MAX})"
            ),
        ));
    }
    for (index, resource) in resources.iter().enumerate() {
        if resource.name.is_empty() || resource.name.len() > RESOURCE_NAME_BYTES_MAX {
            return Err(Rejection::new(
                InvalidArgument,
                format!(
                    "resource {index} has a name of {} bytes; names are 1 to \
                     RESOURCE_NAME_BYTES_MAX ({RESOURCE_NAME_BYTES_MAX}) bytes",
                    resource.name.len()
                ),
            ));
        }
        if resources[..index]
            .iter()
            .any(|other| other.name == resource.name)
        {
            return Err(Rejection::new(
                InvalidArgument,
                format!("the resource name `{}` is used twice", resource.name),
            ));
        }
    }
    Ok(())
}
