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

/// The length of `variables` as JSON, counted without building the text (this runs for
/// every created instance, published message and completed job).
fn json_len(variables: &Variables) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, variables).expect("JSON maps always serialize");
    count.0
}

/// Where each variable would go, as whole new documents, checked against the size limit
/// before anything changes. Returns the documents to store, by scope.
/// The document of `scope` with `variables` added (local variables: nothing propagates),
/// checked against `VARIABLE_DOCUMENT_BYTES_MAX`.
pub(crate) fn merged_local(
    state: &State,
    scope: Key,
    variables: Variables,
) -> Result<Variables, Rejection> {
    let mut local = state.variables.get(&scope).cloned().unwrap_or_default();
    local.extend(variables);
    check_document_size(&local)?;
    Ok(local)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counted_length_is_the_length_of_the_json_text() {
        let document: Variables = serde_json::from_str(
            r#"{"order":{"id":"o-1","lines":[1,2.5,-3e10],"note":"ä \"q\" \n"},"ok":true,"n":null}"#,
        )
        .expect("JSON");
        let text = serde_json::to_vec(&document).expect("serializes");
        assert_eq!(json_len(&document), text.len());
        assert_eq!(json_len(&Variables::new()), 2);
    }

    #[test]
    fn a_document_over_the_limit_is_rejected_with_its_size() {
        let mut document = Variables::new();
        document.insert(
            "big".to_string(),
            serde_json::Value::String("x".repeat(VARIABLE_DOCUMENT_BYTES_MAX)),
        );
        let rejection = check_document_size(&document).expect_err("over the limit");
        assert_eq!(rejection.code, RejectionCode::LimitExceeded);
        let size = VARIABLE_DOCUMENT_BYTES_MAX + r#"{"big":""}"#.len();
        assert!(
            rejection.message.contains(&size.to_string()),
            "{}",
            rejection.message
        );
        document.clear();
        assert!(check_document_size(&document).is_ok());
    }
}
