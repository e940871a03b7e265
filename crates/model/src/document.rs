//! What account and directory documents share: the schema header, the editor identity, how
//! an edit becomes one attributed change, and loading with a fixed text encoding.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, AutoCommit, LoadOptions, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, TextEncoding,
    Value,
};

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

/// A field of a stored document that is missing or holds the wrong type of value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where, as keys from the document's root: `contacts.c1.name`.
    pub path: String,
    /// What this version expects there.
    pub expected: &'static str,
    /// What is there instead; `None` when nothing is.
    pub found: Option<String>,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.found {
            Some(found) => write!(
                f,
                "`{}` should be {} but is {found}",
                self.path, self.expected
            ),
            None => write!(f, "`{}` ({}) is missing", self.path, self.expected),
        }
    }
}

impl std::error::Error for FieldError {}

/// One map of a stored document, read field by field into plain Rust values.
///
/// Reading is strict where the model's meaning depends on it (a required field that is missing
/// or has another type is an [`ModelError::Invalid`] naming the field) and ignores every key it
/// does not ask for, so documents written by newer versions are read.
pub(crate) struct MapReader<'a, D> {
    doc: &'a D,
    kind: &'static str,
    obj: ObjId,
    path: String,
}

impl<'a, D: ReadDoc> MapReader<'a, D> {
    /// The root map of a document of `kind` (`account`, `directory`).
    pub(crate) fn root(doc: &'a D, kind: &'static str) -> Self {
        MapReader {
            doc,
            kind,
            obj: ROOT,
            path: String::new(),
        }
    }

    pub(crate) fn obj(&self) -> &ObjId {
        &self.obj
    }

    fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn invalid(&self, key: &str, expected: &'static str, found: Option<String>) -> ModelError {
        ModelError::Invalid {
            kind: self.kind,
            source: Box::new(FieldError {
                path: self.path_of(key),
                expected,
                found,
            }),
        }
    }

    /// The value at `key`, or an error naming what was expected when there is none.
    fn value(&self, key: &str, expected: &'static str) -> Result<(Value<'a>, ObjId), ModelError> {
        self.doc
            .get(&self.obj, key)?
            .ok_or_else(|| self.invalid(key, expected, None))
    }

    /// The scalar at `key` turned into `T` by `pick`, which returns `None` for any other type.
    fn scalar<T>(
        &self,
        key: &str,
        expected: &'static str,
        pick: impl FnOnce(&ScalarValue) -> Option<T>,
    ) -> Result<T, ModelError> {
        let (value, _) = self.value(key, expected)?;
        let picked = match &value {
            Value::Scalar(scalar) => pick(scalar),
            Value::Object(_) => None,
        };
        picked.ok_or_else(|| self.invalid(key, expected, Some(value.to_string())))
    }

    pub(crate) fn string(&self, key: &str) -> Result<String, ModelError> {
        self.scalar(key, "a string", |s| scalar_str(s).map(str::to_string))
    }

    /// A string that older documents may lack: missing reads as empty.
    pub(crate) fn string_or_empty(&self, key: &str) -> Result<String, ModelError> {
        match self.doc.get(&self.obj, key)? {
            None => Ok(String::new()),
            Some(_) => self.string(key),
        }
    }

    /// A signed integer (times in milliseconds).
    pub(crate) fn int(&self, key: &str) -> Result<i64, ModelError> {
        self.checked_int(key, "an integer", Some)
    }

    pub(crate) fn boolean(&self, key: &str) -> Result<bool, ModelError> {
        self.scalar(key, "true or false", |s| match s {
            ScalarValue::Boolean(b) => Some(*b),
            _ => None,
        })
    }

    /// An integer checked by `accept`, which names what it accepts in errors.
    pub(crate) fn checked_int<T>(
        &self,
        key: &str,
        expected: &'static str,
        accept: impl FnOnce(i64) -> Option<T>,
    ) -> Result<T, ModelError> {
        self.scalar(key, expected, |s| match s {
            ScalarValue::Int(v) => accept(*v),
            ScalarValue::Uint(v) => i64::try_from(*v).ok().and_then(accept),
            _ => None,
        })
    }

    /// A collaborative text (or, leniently, a plain string) as a `String`.
    pub(crate) fn text(&self, key: &str) -> Result<String, ModelError> {
        let (value, id) = self.value(key, "a text")?;
        match (&value, value_str(&value)) {
            (Value::Object(ObjType::Text), _) => Ok(self.doc.text(&id)?),
            (_, Some(text)) => Ok(text.to_string()),
            _ => Err(self.invalid(key, "a text", Some(value.to_string()))),
        }
    }

    /// A list of strings.
    pub(crate) fn strings(&self, key: &str) -> Result<Vec<String>, ModelError> {
        let (value, list) = self.value(key, "a list of strings")?;
        if !matches!(value, Value::Object(ObjType::List)) {
            return Err(self.invalid(key, "a list of strings", Some(value.to_string())));
        }
        (0..self.doc.length(&list))
            .map(|index| {
                let value = self.doc.get(&list, index)?.map(|(value, _)| value);
                match value.as_ref().and_then(value_str) {
                    Some(text) => Ok(text.to_string()),
                    None => Err(self.invalid(
                        &format!("{key}.{index}"),
                        "a string",
                        value.map(|value| value.to_string()),
                    )),
                }
            })
            .collect()
    }

    /// The map at `key`.
    pub(crate) fn map(&self, key: &str) -> Result<MapReader<'a, D>, ModelError> {
        let (value, obj) = self.value(key, "a map")?;
        if !matches!(value, Value::Object(ObjType::Map)) {
            return Err(self.invalid(key, "a map", Some(value.to_string())));
        }
        Ok(MapReader {
            doc: self.doc,
            kind: self.kind,
            obj,
            path: self.path_of(key),
        })
    }

    /// Every entry of the map at `key`, each itself a map, read by `read` in key order.
    pub(crate) fn read_entries<T, C: FromIterator<T>>(
        &self,
        key: &str,
        mut read: impl FnMut(String, &MapReader<'a, D>) -> Result<T, ModelError>,
    ) -> Result<C, ModelError> {
        let map = self.map(key)?;
        self.doc
            .keys(&map.obj)
            .map(|entry_key| {
                let entry = map.map(&entry_key)?;
                read(entry_key, &entry)
            })
            .collect()
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

/// The string a scalar holds. Written out because the two automerge lines this crate builds on
/// name it differently: `to_str` on 0.6, `as_str` on 0.12, which deprecates `to_str`
/// (ARCHITECTURE.md, "Two automerge lines").
fn scalar_str(scalar: &ScalarValue) -> Option<&str> {
    match scalar {
        ScalarValue::Str(text) => Some(text.as_str()),
        _ => None,
    }
}

fn value_str<'a>(value: &'a Value<'_>) -> Option<&'a str> {
    match value {
        Value::Scalar(scalar) => scalar_str(scalar),
        Value::Object(_) => None,
    }
}
