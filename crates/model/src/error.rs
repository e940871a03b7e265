//! The one error type of the model.

use crate::document::FieldError;
use crate::ids::{AccountId, ContactId, FollowUpId, GoalId};

/// Everything that can go wrong when reading or editing a Fieldnotes document.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The bytes are not an automerge document at all (or are damaged).
    #[error("the document bytes could not be loaded: {0}")]
    Load(#[source] Box<automerge::AutomergeError>),
    /// The document has no `schema` number, so it was not written by Fieldnotes.
    #[error("not a fieldnotes document: it has no schema version")]
    MissingSchema,
    /// The document is a Fieldnotes document of another kind.
    #[error("expected a document of kind {expected:?} but found kind {found:?}")]
    WrongKind {
        expected: &'static str,
        found: String,
    },
    /// The document says it is an account (or directory) but a field is missing or has the
    /// wrong type.
    #[error("the {kind} document is damaged: {source}")]
    Invalid {
        kind: &'static str,
        #[source]
        source: Box<FieldError>,
    },
    /// A driver strength outside 1 to 5.
    #[error("strength {0} is out of range: use 1 (minor) to 5 (decisive)")]
    StrengthOutOfRange(i64),
    /// A driver key that is neither a usual driver nor `custom:<slug>`.
    #[error("unknown driver key {0:?}: use a usual driver or custom:<name>")]
    InvalidDriverKey(String),
    #[error("the directory lists no account with id {0}")]
    UnknownAccount(AccountId),
    #[error("no contact with id {0}")]
    UnknownContact(ContactId),
    #[error("no follow-up with id {0}")]
    UnknownFollowUp(FollowUpId),
    #[error("no goal with id {0}")]
    UnknownGoal(GoalId),
    #[error("no driver {0} is recorded on this account")]
    UnknownDriver(String),
    /// A text edit outside the current text.
    #[error("text edit at {position} deleting {delete} is outside the text of {length} characters")]
    TextRange {
        position: usize,
        delete: usize,
        length: usize,
    },
    /// A user id too long to be carried in an actor id.
    #[error("user id is {length} bytes long; at most 255 fit in an actor id")]
    UserIdTooLong { length: usize },
    /// An automerge operation failed (a bug in this crate or a damaged document).
    #[error("the document could not be edited: {0}")]
    Edit(#[source] Box<automerge::AutomergeError>),
}

// Errors are boxed so `Result<_, ModelError>` stays small on the happy path.
impl From<automerge::AutomergeError> for ModelError {
    fn from(error: automerge::AutomergeError) -> Self {
        ModelError::Edit(Box::new(error))
    }
}
