//! Variables: one JSON document per scope, and how new values find their scope.
//!
//! As in Camunda 8: a variable set from outside (a completed job, ...) goes to the nearest
//! scope, from the element outwards, that already has a variable of that name; if none has,
//! it goes to the process instance (the root scope).

use crate::engine::{Rejection, RejectionCode, Variables};
use crate::key::Key;
use crate::limits::VARIABLE_DOCUMENT_BYTES_MAX;
use crate::state::State;

/// Rejects a document whose JSON form is over `VARIABLE_DOCUMENT_BYTES_MAX`.
pub(crate) fn check_document_size(variables: &Variables) -> Result<(), Rejection> {
    let bytes = json_len(variables);
    if bytes > VARIABLE_DOCUMENT_BYTES_MAX {
        return Err(Rejection::new(
            RejectionCode::LimitExceeded,
            format!(
                "the variables are {bytes} bytes as JSON, over VARIABLE_DOCUMENT_BYTES_MAX \
                 ({VARIABLE_DOCUMENT_BYTES_MAX})"
            ),
        ));
    }
    Ok(())
}

fn json_len(variables: &Variables) -> usize {
    serde_json::to_vec(variables)
        .map(|bytes| bytes.len())
        .expect("JSON maps always serialize")
}

/// Where each variable would go, as whole new documents, checked against the size limit
/// before anything changes. Returns the documents to store, by scope.
pub(crate) fn plan_propagation(
    state: &State,
    from: Key,
    variables: Variables,
) -> Result<Vec<(Key, Variables)>, Rejection> {
    check_document_size(&variables)?;
    let mut chain = Vec::new();
    let mut next = Some(from);
    while let Some(key) = next {
        chain.push(key);
        next = state.elements[&key].scope;
    }
    let root = *chain.last().expect("the chain holds at least the element");
    let mut documents: Vec<(Key, Variables)> = Vec::new();
    for (name, value) in variables {
        let owner = chain
            .iter()
            .copied()
            .find(|scope| {
                state
                    .variables
                    .get(scope)
                    .is_some_and(|doc| doc.contains_key(&name))
            })
            .unwrap_or(root);
        let position = match documents.iter().position(|(scope, _)| *scope == owner) {
            Some(position) => position,
            None => {
                let current = state.variables.get(&owner).cloned().unwrap_or_default();
                documents.push((owner, current));
                documents.len() - 1
            }
        };
        documents[position].1.insert(name, value);
    }
    for (_, document) in &documents {
        check_document_size(document)?;
    }
    Ok(documents)
}
