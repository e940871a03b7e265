//! What account and directory documents share: the schema header, the editor identity, how
//! an edit becomes one attributed change, and loading with a fixed text encoding.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, AutoCommit, LoadOptions, ObjType, ROOT, ReadDoc, ScalarValue, TextEncoding, Value,
};
use autosurgeon::{HydrateError, Prop};

use crate::attribution::actor_for;
use crate::error::ModelError;
use crate::ids::UserId;

/// The schema version this build writes. Every document carries it in its root `schema` key.
///
/// Readers accept documents with a *higher* version too: newer versions only add keys, and the
/// edit API writes field by field, so keys this version does not know are kept untouched.
pub const SCHEMA_VERSION: u64 = 1;

/// Text positions are Unicode code points (Rust `char`s) in every document this crate makes or
/// loads, whatever automerge features other crates enable.
pub(crate) const TEXT_ENCODING: TextEncoding = TextEncoding::UnicodeCodePoint;

/// Who is editing on this device: the user, and the actor id that carries them in every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Editor {
    user: UserId,
    actor: ActorId,
}

impl Editor {
    /// `device_bytes`: fresh random bytes for this app session (8 or more).
    pub fn new(user: UserId, device_bytes: &[u8]) -> Result<Editor, ModelError> {
        let actor = actor_for(&user, device_bytes)?;
        Ok(Editor { user, actor })
    }

    pub fn user(&self) -> &UserId {
        &self.user
    }

    pub fn actor(&self) -> &ActorId {
        &self.actor
    }
}

pub(crate) fn new_doc(editor: &Editor) -> AutoCommit {
    AutoCommit::new_with_encoding(TEXT_ENCODING).with_actor(editor.actor.clone())
}

pub(crate) fn load_doc(bytes: &[u8], editor: &Editor) -> Result<AutoCommit, ModelError> {
    let doc = AutoCommit::load_with_options(bytes, LoadOptions::new().text_encoding(TEXT_ENCODING))
        .map_err(|e| ModelError::Load(Box::new(e)))?;
    Ok(doc.with_actor(editor.actor.clone()))
}

/// Checks the root `schema` and `kind` keys and returns the schema version.
pub(crate) fn check_header<D: ReadDoc>(
    doc: &D,
    expected_kind: &'static str,
) -> Result<u64, ModelError> {
    let schema = match doc.get(ROOT, "schema")? {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Uint(v) => *v,
            ScalarValue::Int(v) if *v >= 0 => *v as u64,
            _ => return Err(ModelError::MissingSchema),
        },
        _ => return Err(ModelError::MissingSchema),
    };
    let kind = match doc.get(ROOT, "kind")? {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Str(k) => k.to_string(),
            other => other.to_string(),
        },
        Some((other, _)) => other.to_string(),
        None => "nameless".to_string(),
    };
    if kind != expected_kind {
        return Err(ModelError::WrongKind {
            expected: expected_kind,
            found: kind,
        });
    }
    Ok(schema)
}

/// Runs `edit` as one change attributed to the doc's actor, with the caller's time and a short
/// message; if the edit fails nothing of it is kept.
pub(crate) fn edit<T>(
    doc: &mut AutoCommit,
    message: impl Into<String>,
    now_millis: i64,
    edit: impl FnOnce(&mut AutoCommit) -> Result<T, ModelError>,
) -> Result<T, ModelError> {
    match edit(doc) {
        Ok(value) => {
            doc.commit_with(
                CommitOptions::default()
                    .with_message(message)
                    .with_time(now_millis),
            );
            Ok(value)
        }
        Err(error) => {
            doc.rollback();
            Err(error)
        }
    }
}

/// The id of the map at `key` in `parent`, if there is one.
pub(crate) fn get_map(
    doc: &AutoCommit,
    parent: &automerge::ObjId,
    key: &str,
) -> Result<Option<automerge::ObjId>, ModelError> {
    Ok(match doc.get(parent, key)? {
        Some((Value::Object(ObjType::Map), id)) => Some(id),
        _ => None,
    })
}

/// The id of the map at `key` in `parent`, created if missing.
pub(crate) fn ensure_map(
    doc: &mut AutoCommit,
    parent: &automerge::ObjId,
    key: &str,
) -> Result<automerge::ObjId, ModelError> {
    match get_map(doc, parent, key)? {
        Some(id) => Ok(id),
        None => Ok(doc.put_object(parent, key, ObjType::Map)?),
    }
}

/// Replaces the text at `key` in `parent` by `new_text`, as a diff of the text object when there
/// is one (so concurrent edits elsewhere in the text survive), or as a new text object.
pub(crate) fn update_text_at(
    doc: &mut AutoCommit,
    parent: &automerge::ObjId,
    key: &str,
    new_text: &str,
) -> Result<(), ModelError> {
    match doc.get(parent, key)? {
        Some((Value::Object(ObjType::Text), id)) => {
            if doc.text(&id)? != new_text {
                doc.update_text(&id, new_text)?;
            }
        }
        _ => {
            let id = doc.put_object(parent, key, ObjType::Text)?;
            doc.splice_text(&id, 0, 0, new_text)?;
        }
    }
    Ok(())
}

/// Hydrates a collaborative text (or, leniently, a plain string) as a `String`.
pub(crate) fn hydrate_text<D: autosurgeon::ReadDoc>(
    doc: &D,
    obj: &automerge::ObjId,
    prop: Prop<'_>,
) -> Result<String, HydrateError> {
    match doc.get(obj, &prop)? {
        Some((Value::Object(ObjType::Text), id)) => Ok(doc.text(&id)?),
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Str(s) => Ok(s.to_string()),
            other => Err(HydrateError::unexpected("text", other.to_string())),
        },
        Some((other, _)) => Err(HydrateError::unexpected("text", other.to_string())),
        None => Err(HydrateError::unexpected("text", "nothing".to_string())),
    }
}

/// True if any of the concurrently written values of a flag is `true`: a flag that only one
/// side set stays set after a merge, whichever write automerge picks as the winner.
pub(crate) fn any_true<D: ReadDoc>(
    doc: &D,
    obj: &automerge::ObjId,
    key: &str,
) -> Result<bool, ModelError> {
    Ok(doc.get_all(obj, key)?.iter().any(|(value, _)| {
        matches!(value, Value::Scalar(s) if matches!(s.as_ref(), ScalarValue::Boolean(true)))
    }))
}
