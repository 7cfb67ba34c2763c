//! Timer events: when a timer is due, and `TriggerTimer`, the shard's timer firing.
//!
//! | timer event | armed when | fires |
//! |---|---|---|
//! | intermediate catch event | the event is entered | the event completes |
//! | boundary event, interrupting | the activity is entered | the activity is terminated, the boundary event's flow taken |
//! | boundary event, non-interrupting | the activity is entered | a new token leaves the boundary event; a cycle is armed again |
//! | event subprocess start | the enclosing scope is entered | the event subprocess starts (interrupting: the scope's other work ends first) |
//! | event-based gateway branch | the gateway is entered | the gateway's other branches close, this event's flow is taken |
//! | process start event | the process version is deployed (latest version only) | a new instance starts there; a cycle is armed again |
//!
//! Durations count from the moment the timer is armed; `timeDate` is an absolute instant;
//! a cycle `R[n]/[start/]interval` fires `n` times (without `n`, until its element ends),
//! first at `start` (or one interval after arming), then one interval after each firing. A
//! firing is the journaled command `TriggerTimer`: after a restart, timers that came due
//! while the server was down fire once, promptly, and a cycle is re-armed from the time it
//! actually fired, so a long outage does not replay every missed repetition.

use ringflow_bpmn::timer::{Cycle, Repeat, TimerDefinition, TimerValue, add_duration};
use ringflow_bpmn::{ElementIndex, ElementKind, Expression, ProcessDefinition, StartTrigger};

use crate::engine::{Ctx, Effect, Event, Keys, Outcome, Rejection, RejectionCode, Response};
use crate::instance::Timer;
use crate::key::Key;
use crate::run::Run;
use crate::state::State;

/// When a timer created now fires first, and how often it fires.
pub(crate) struct Schedule {
    pub due_millis: i64,
    pub repetitions: Option<u32>,
    pub interval: Option<Repeat>,
}

/// Works out a timer's schedule at `now_millis`; `evaluate` computes FEEL timer values.
pub(crate) fn schedule(
    definition: &TimerDefinition,
    now_millis: i64,
    evaluate: impl Fn(&ringflow_bpmn::FeelExpression) -> Result<serde_json::Value, String>,
) -> Result<Schedule, String> {
    let text = |expression: &ringflow_bpmn::FeelExpression| -> Result<String, String> {
        match evaluate(expression)? {
            serde_json::Value::String(text) => Ok(text),
            other => Err(format!(
                "the timer expression `{}` gave {other}, not a text",
                expression.source()
            )),
        }
    };
    let once = |due_millis| Schedule {
        due_millis,
        repetitions: Some(1),
        interval: None,
    };
    match definition {
        TimerDefinition::Duration(value) => {
            let duration = match value {
                TimerValue::Fixed(duration) => *duration,
                TimerValue::Expression(feel) => ringflow_bpmn::timer::parse_duration(&text(feel)?)?,
            };
            Ok(once(add_duration(now_millis, &duration)?))
        }
        TimerDefinition::Date(value) => {
            let due = match value {
                TimerValue::Fixed(due) => *due,
                TimerValue::Expression(feel) => {
                    ringflow_bpmn::timer::parse_date_time(&text(feel)?)?
                }
            };
            Ok(once(due))
        }
        TimerDefinition::Cycle(value) => {
            let cycle: Cycle = match value {
                TimerValue::Fixed(cycle) => cycle.clone(),
                TimerValue::Expression(feel) => ringflow_bpmn::timer::parse_cycle(&text(feel)?)?,
            };
            let due_millis = match cycle.start_millis {
                Some(start) => start,
                None => next_firing(now_millis, &cycle.repeat)?,
            };
            Ok(Schedule {
                due_millis,
                repetitions: cycle.repetitions,
                interval: Some(cycle.repeat),
            })
        }
    }
}

/// The message names of a process's message start events (static names; a FEEL name is
/// evaluated without variables, as Camunda 8 does for start events).
/// When a cycle fires next after `now_millis`: an interval later, or at the cron
/// expression's next time.
fn next_firing(now_millis: i64, repeat: &Repeat) -> Result<i64, String> {
    match repeat {
        Repeat::Every(interval) => add_duration(now_millis, interval),
        Repeat::Cron(cron) => cron
            .next_after(now_millis)
            .ok_or_else(|| format!("the cron cycle `{cron}` never fires again before 10000")),
    }
}

pub(crate) fn message_start_names(definition: &ProcessDefinition) -> Vec<String> {
    definition
        .start_events(ProcessDefinition::ROOT)
        .iter()
        .filter_map(|start| match &definition.element(*start).kind {
            ElementKind::StartEvent {
                trigger: StartTrigger::Message(message),
                ..
            } => static_text(&message.name),
            _ => None,
        })
        .collect()
}

/// A text known without variables: static, or FEEL that needs none.
pub(crate) fn static_text(expression: &Expression) -> Option<String> {
    match expression {
        Expression::Static(text) => Some(text.to_string()),
        Expression::Feel(feel) => {
            match crate::feel::evaluate(
                feel,
                &crate::engine::Variables::new(),
                crate::feel::Inputs::at(0),
            ) {
                Ok(evaluated) => evaluated.value.as_str().map(str::to_string),
                Err(_) => None,
            }
        }
    }
}

/// The timer start events of a process.
pub(crate) fn timer_starts(definition: &ProcessDefinition) -> Vec<(ElementIndex, TimerDefinition)> {
    definition
        .start_events(ProcessDefinition::ROOT)
        .iter()
        .filter_map(|start| match &definition.element(*start).kind {
            ElementKind::StartEvent {
                trigger: StartTrigger::Timer(timer),
                ..
            } => Some((*start, timer.clone())),
            _ => None,
        })
        .collect()
}

impl Run<'_> {
    /// Arms a timer; the shard fires it with `TriggerTimer` when it is due.
    pub(crate) fn arm_timer(
        &mut self,
        process_definition_key: Key,
        element: ElementIndex,
        owner: Option<Key>,
        schedule: Schedule,
    ) {
        if schedule.repetitions == Some(0) {
            return;
        }
        let key = self.key();
        self.state.insert_timer(Timer {
            key,
            due_millis: schedule.due_millis,
            process_definition_key,
            element,
            owner,
            repetitions: schedule.repetitions,
            interval: schedule.interval,
        });
        self.effects.push(Effect::Timer {
            key,
            due_millis: schedule.due_millis,
        });
    }

    /// Arms the timer start events of a newly deployed latest version and disarms those of
    /// the version it replaces.
    pub(crate) fn replace_start_timers(&mut self, previous: Option<Key>, latest: Key) {
        if let Some(previous) = previous {
            let range = (previous, Key(0))..=(previous, Key(u64::MAX));
            let old: Vec<Key> = self
                .state
                .index
                .start_timers
                .range(range)
                .map(|(_, timer)| *timer)
                .collect();
            for timer in old {
                self.state.remove_timer(timer);
            }
        }
        let definition = std::sync::Arc::clone(&self.state.processes[&latest].definition);
        for (start, timer) in timer_starts(&definition) {
            let now = self.now_millis();
            let evaluate = |feel: &ringflow_bpmn::FeelExpression| {
                crate::feel::evaluate(
                    feel,
                    &crate::engine::Variables::new(),
                    crate::feel::Inputs::at(now),
                )
                .map(|evaluated| evaluated.value)
            };
            // A start timer whose value cannot be worked out was refused at deploy.
            if let Ok(schedule) = schedule(&timer, now, evaluate) {
                self.arm_timer(latest, start, None, schedule);
            }
        }
    }
}

/// `TriggerTimer`: the shard's clock reached a timer's due time.
pub(crate) fn trigger(state: &mut State, key: Key, ctx: &Ctx) -> Result<Outcome, Rejection> {
    let Some(timer) = state.timers.get(&key) else {
        return Err(Rejection::new(
            RejectionCode::InvalidState,
            format!("timer {key} is not armed: it fired already or its element ended"),
        ));
    };
    if timer.due_millis > ctx.now_millis {
        return Err(Rejection::new(
            RejectionCode::InvalidState,
            format!(
                "timer {key} is due at {}, it is {} now",
                timer.due_millis, ctx.now_millis
            ),
        ));
    }
    if timer.owner.is_none() && state.instances.len() >= crate::limits::LIVE_INSTANCES_MAX {
        return Err(Rejection::new(
            RejectionCode::LimitExceeded,
            format!(
                "the shard runs LIVE_INSTANCES_MAX ({}) instances; the start timer waits",
                crate::limits::LIVE_INSTANCES_MAX
            ),
        ));
    }
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    let timer = run.state.remove_timer(key).expect("checked above");
    run.events.push(Event::TimerTriggered {
        key,
        element_instance_key: timer.owner,
    });
    let again = match timer.repetitions {
        Some(left) => left > 1,
        None => true,
    } && timer.interval.is_some()
        && run.repeats(&timer);
    if again {
        let interval = timer.interval.clone().expect("checked");
        if let Ok(due_millis) = next_firing(ctx.now_millis, &interval) {
            let schedule = Schedule {
                due_millis,
                repetitions: timer.repetitions.map(|left| left - 1),
                interval: Some(interval),
            };
            run.arm_timer(
                timer.process_definition_key,
                timer.element,
                timer.owner,
                schedule,
            );
        }
    }
    match timer.owner {
        Some(owner) => run.fire(owner, timer.element, crate::engine::Variables::new()),
        None => {
            run.start_instance_at(
                timer.process_definition_key,
                timer.element,
                crate::engine::Variables::new(),
                None,
            );
        }
    }
    run.run();
    Ok(run.outcome(Response::TimerTriggered { key }))
}
