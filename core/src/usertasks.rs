//! User tasks: their assignment, schedule and priority.
//!
//! A user task is a job (of type `io.camunda.zeebe:userTask` unless the model names one).
//! When the engine creates it, it evaluates the task's `zeebe:assignmentDefinition`
//! (`assignee`, `candidateGroups`, `candidateUsers`), `zeebe:taskSchedule` (`dueDate`,
//! `followUpDate`) and, for a Camunda user task (`zeebe:userTask`),
//! `zeebe:priorityDefinition` (`priority`, 50 when absent), in the task's scope after its
//! input mappings. The job keeps the results, and a worker reads them, with the
//! `zeebe:formDefinition formKey`, as headers named as in Camunda 8:
//!
//! | header | value |
//! |---|---|
//! | `io.camunda.zeebe:assignee` | the user's id |
//! | `io.camunda.zeebe:candidateGroups` | a JSON array of strings, e.g. `["sales","ops"]` |
//! | `io.camunda.zeebe:candidateUsers` | a JSON array of strings |
//! | `io.camunda.zeebe:dueDate` | an ISO 8601 date-time with a zone |
//! | `io.camunda.zeebe:followUpDate` | an ISO 8601 date-time with a zone |
//! | `io.camunda.zeebe:formKey` | the form key, as the model gives it |
//! | `io.camunda.zeebe:priority` | a whole number from 0 to 100 (Camunda user tasks) |
//!
//! A static candidate list is split at commas (`"sales, ops"` is two groups). A FEEL one
//! must give a list of strings. FEEL dates must give a date and time with a zone, or text
//! that is one. A FEEL value of null leaves the property out. Anything else is an incident
//! at the task's activation that names the property and what it gave; resolving it
//! evaluates them again.

use ringflow_bpmn::{Expression, USER_TASK_PRIORITY_DEFAULT, USER_TASK_PRIORITY_MAX, UserTask};
use serde_json::Value;

use crate::instance::UserTaskProperties;
use crate::key::Key;
use crate::run::Run;

/// The header that carries the assignee.
pub const ASSIGNEE_HEADER: &str = "io.camunda.zeebe:assignee";
/// The header that carries the candidate groups (a JSON array).
pub const CANDIDATE_GROUPS_HEADER: &str = "io.camunda.zeebe:candidateGroups";
/// The header that carries the candidate users (a JSON array).
pub const CANDIDATE_USERS_HEADER: &str = "io.camunda.zeebe:candidateUsers";
/// The header that carries the due date.
pub const DUE_DATE_HEADER: &str = "io.camunda.zeebe:dueDate";
/// The header that carries the follow-up date.
pub const FOLLOW_UP_DATE_HEADER: &str = "io.camunda.zeebe:followUpDate";
/// The header that carries the form key.
pub const FORM_KEY_HEADER: &str = "io.camunda.zeebe:formKey";
/// The header that carries a Camunda user task's priority.
pub const PRIORITY_HEADER: &str = "io.camunda.zeebe:priority";

impl Run<'_> {
    /// Activates a user task: evaluates its properties, then creates its job. A property
    /// that cannot be evaluated is an incident, and no job is made.
    pub(crate) fn create_user_task(&mut self, key: Key, task: &UserTask) {
        if !task.has_properties() {
            self.create_job_for(key, &task.job, None);
            return;
        }
        let properties = match self.user_task_properties(key, task) {
            Ok(properties) => properties,
            Err(message) => return self.incident(key, message),
        };
        if let Some(job) = self.create_job_for(key, &task.job, None) {
            self.state
                .jobs
                .get_mut(&job)
                .expect("just created")
                .user_task = Some(Box::new(properties));
        }
    }

    fn user_task_properties(
        &self,
        key: Key,
        task: &UserTask,
    ) -> Result<UserTaskProperties, String> {
        let assignee = match self.user_task_value(key, &task.assignee, "assignee")? {
            None => None,
            Some((_, Value::String(text))) if !text.trim().is_empty() => Some(text),
            Some((_, Value::String(_))) => None,
            Some((expression, other)) => {
                return Err(format!(
                    "the user task's assignee `{expression}` gave {other}, not a string"
                ));
            }
        };
        let list = |expression: &Option<Expression>, what: &str| {
            Ok::<_, String>(match self.user_task_value(key, expression, what)? {
                None => None,
                Some((Expression::Static(text), _)) => Some(
                    text.split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(String::from)
                        .collect(),
                ),
                Some((expression, Value::Array(items))) => Some(
                    items
                        .into_iter()
                        .map(|item| match item {
                            Value::String(text) => Ok(text),
                            other => Err(format!(
                                "the user task's {what} `{expression}` gave a list holding \
                                 {other}, not a list of strings"
                            )),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                Some((expression, other)) => {
                    return Err(format!(
                        "the user task's {what} `{expression}` gave {other}, not a list of \
                         strings"
                    ));
                }
            })
        };
        let candidate_groups = list(&task.candidate_groups, "candidate groups")?;
        let candidate_users = list(&task.candidate_users, "candidate users")?;
        let date = |expression: &Option<Expression>, what: &str| {
            Ok::<_, String>(match self.user_task_value(key, expression, what)? {
                None => None,
                Some((expression, Value::String(text))) => {
                    let text = text.trim().to_string();
                    if let Err(error) = ringflow_bpmn::timer::parse_date_time(&text) {
                        return Err(format!("the user task's {what} `{expression}`: {error}"));
                    }
                    Some(text)
                }
                Some((expression, other)) => {
                    return Err(format!(
                        "the user task's {what} `{expression}` gave {other}, not a date and \
                         time"
                    ));
                }
            })
        };
        let due_date = date(&task.due_date, "due date")?;
        let follow_up_date = date(&task.follow_up_date, "follow-up date")?;
        let priority = if task.camunda_user_task {
            match self.user_task_value(key, &task.priority, "priority")? {
                None => Some(USER_TASK_PRIORITY_DEFAULT),
                Some((expression, value)) => {
                    let number = match &value {
                        Value::Number(number) => number.as_u64(),
                        Value::String(text) => text.trim().parse::<u64>().ok(),
                        _ => None,
                    };
                    match number {
                        Some(number) if number <= u64::from(USER_TASK_PRIORITY_MAX) => {
                            Some(number as u8)
                        }
                        _ => {
                            return Err(format!(
                                "the user task's priority `{expression}` gave {value}, not a \
                                 whole number from 0 to {USER_TASK_PRIORITY_MAX}"
                            ));
                        }
                    }
                }
            }
        } else {
            None
        };
        Ok(UserTaskProperties {
            assignee,
            candidate_groups,
            candidate_users,
            due_date,
            follow_up_date,
            priority,
        })
    }
}

impl Run<'_> {
    /// A property's value: `None` without the property or when FEEL gave null.
    fn user_task_value<'e>(
        &self,
        key: Key,
        expression: &'e Option<Expression>,
        what: &str,
    ) -> Result<Option<(&'e Expression, Value)>, String> {
        match expression {
            None => Ok(None),
            Some(expression) => match self.value_at(key, expression) {
                Ok(Value::Null) => Ok(None),
                Ok(value) => Ok(Some((expression, value))),
                Err(error) => Err(format!("the user task's {what}: {error}")),
            },
        }
    }
}

/// Appends a user task's headers to the model's own (`zeebe:taskHeaders`): its evaluated
/// properties, then its form key.
pub(crate) fn add_headers(
    headers: &mut Vec<(String, String)>,
    properties: Option<&UserTaskProperties>,
    task: &UserTask,
) {
    let mut add = |name: &str, value: String| headers.push((name.to_string(), value));
    if let Some(properties) = properties {
        let list = |items: &Vec<String>| serde_json::to_string(items).expect("strings serialize");
        if let Some(assignee) = &properties.assignee {
            add(ASSIGNEE_HEADER, assignee.clone());
        }
        if let Some(groups) = &properties.candidate_groups {
            add(CANDIDATE_GROUPS_HEADER, list(groups));
        }
        if let Some(users) = &properties.candidate_users {
            add(CANDIDATE_USERS_HEADER, list(users));
        }
        if let Some(due_date) = &properties.due_date {
            add(DUE_DATE_HEADER, due_date.clone());
        }
        if let Some(follow_up_date) = &properties.follow_up_date {
            add(FOLLOW_UP_DATE_HEADER, follow_up_date.clone());
        }
        if let Some(priority) = properties.priority {
            add(PRIORITY_HEADER, priority.to_string());
        }
    }
    if let Some(form_key) = &task.form_key {
        add(FORM_KEY_HEADER, form_key.to_string());
    }
}
