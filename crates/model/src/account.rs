//! The account document: one client, as a rep's team knows it.
//!
//! Layout of the automerge document (root map):
//!
//! | key | type | merge behaviour |
//! | --- | --- | --- |
//! | `schema`, `kind` | uint, `"account"` | set once |
//! | `id`, `team`, `created_at`, `created_by` | strings / int | set once |
//! | `name`, `branch`, `area` | string | last writer wins |
//! | `contacts` | map id → {name, role, phone, email} | per contact, per field |
//! | `drivers` | map key → {strength, evidence: text} | per driver; evidence merges by character |
//! | `goals` | map id → {title, status} | per goal, per field |
//! | `value_proposition` | text | merges character by character |
//! | `notes` | map id → note | append-only: every note is kept |
//! | `follow_ups` | map id → {text, due_millis, done} | per follow-up, per field |
//! | `archived` | bool | a concurrent `true` always wins (see [`AccountDoc::archive`]) |
//!
//! Everything is a map keyed by a caller-made unique id, so concurrent additions never collide.

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ROOT, ReadDoc, Value};

use crate::document::{
    Editor, MapReader, SCHEMA_VERSION, any_true, check_header, edit, ensure_map, get_map, load_doc,
    new_doc, update_text_at,
};
use crate::driver::{DriverKey, Strength};
use crate::error::ModelError;
use crate::ids::{AccountId, ContactId, FollowUpId, GoalId, NoteId, TeamId, UserId};

const KIND: &str = "account";

/// A person at the client. Only the name is required; documents may lack the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    pub role: String,
    pub phone: String,
    pub email: String,
}

/// One reason the client works with us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driver {
    pub strength: Strength,
    /// What the client said or did that shows it (a collaborative text in the document).
    pub evidence: String,
}

/// Where a client's goal stands.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GoalStatus {
    NotStarted,
    InProgress,
    Achieved,
    Abandoned,
    /// A status written by a newer version of the app; shown as-is and kept.
    Other(String),
}

impl GoalStatus {
    pub fn as_str(&self) -> &str {
        match self {
            GoalStatus::NotStarted => "not_started",
            GoalStatus::InProgress => "in_progress",
            GoalStatus::Achieved => "achieved",
            GoalStatus::Abandoned => "abandoned",
            GoalStatus::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> GoalStatus {
        match s {
            "not_started" => GoalStatus::NotStarted,
            "in_progress" => GoalStatus::InProgress,
            "achieved" => GoalStatus::Achieved,
            "abandoned" => GoalStatus::Abandoned,
            other => GoalStatus::Other(other.to_string()),
        }
    }
}

/// Progress on the client's own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goal {
    pub title: String,
    pub status: GoalStatus,
}

/// A dated visit note. Notes are append-only: never edited, never removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub id: NoteId,
    pub author: UserId,
    /// When the visit was written down (unix milliseconds).
    pub time_millis: i64,
    pub text: String,
    /// The drivers this visit touched.
    pub drivers: Vec<DriverKey>,
    /// Objections or resistance heard.
    pub objections: Vec<String>,
}

/// What the caller supplies to append a note; author and time come from the edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNote {
    pub id: NoteId,
    pub text: String,
    pub drivers: Vec<DriverKey>,
    pub objections: Vec<String>,
}

/// A follow-up to add: what to do and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFollowUp {
    pub id: FollowUpId,
    pub text: String,
    pub due_millis: i64,
}

/// A small task with a due date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    pub text: String,
    /// Due at (unix milliseconds); the app picks the moment (e.g. end of the due day).
    pub due_millis: i64,
    pub done: bool,
}

/// One account as read from its document: a plain snapshot for screens and queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The schema version the document was written with (may exceed [`SCHEMA_VERSION`]).
    pub schema: u64,
    pub id: AccountId,
    pub team: TeamId,
    pub name: String,
    pub branch: String,
    /// Address or area.
    pub area: String,
    pub created_at: i64,
    pub created_by: UserId,
    pub contacts: BTreeMap<ContactId, Contact>,
    pub drivers: BTreeMap<DriverKey, Driver>,
    pub goals: BTreeMap<GoalId, Goal>,
    pub value_proposition: String,
    /// The visit timeline, oldest first (by time, then id).
    pub notes: Vec<Note>,
    pub follow_ups: BTreeMap<FollowUpId, FollowUp>,
    /// See [`AccountDoc::archive`] for how concurrent values merge.
    pub archived: bool,
}

impl Account {
    /// When the last visit note was written, if any.
    pub fn last_note_millis(&self) -> Option<i64> {
        self.notes.iter().map(|n| n.time_millis).max()
    }
}

/// What the caller supplies to create an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    /// The automerge-repo document id the account will live under.
    pub id: AccountId,
    pub team: TeamId,
    pub name: String,
    pub branch: String,
    pub area: String,
}

/// Reads an account from any automerge document (for example one the sync engine holds).
///
/// Errors say what is wrong: not a Fieldnotes document, another kind of document, or a
/// damaged field (named by its path). Documents from newer versions are read; unknown keys are
/// ignored.
pub fn hydrate_account<D: ReadDoc>(doc: &D) -> Result<Account, ModelError> {
    let schema = check_header(doc, KIND)?;
    let root = MapReader::root(doc, KIND);

    let contacts = root.read_entries("contacts", |id, contact| {
        let contact = Contact {
            name: contact.string("name")?,
            role: contact.string_or_empty("role")?,
            phone: contact.string_or_empty("phone")?,
            email: contact.string_or_empty("email")?,
        };
        Ok((ContactId::new(id), contact))
    })?;
    // Any driver key is kept, even one this version does not know, so a driver recorded by a
    // newer app still shows (by its raw key) and is never dropped.
    let drivers = root.read_entries("drivers", |key, driver| {
        let driver = Driver {
            strength: driver.checked_int("strength", "a strength from 1 to 5", |value| {
                Strength::new(value).ok()
            })?,
            evidence: driver.text("evidence")?,
        };
        Ok((DriverKey::from(key), driver))
    })?;
    let goals = root.read_entries("goals", |id, goal| {
        let goal = Goal {
            title: goal.string("title")?,
            status: GoalStatus::parse(&goal.string("status")?),
        };
        Ok((GoalId::new(id), goal))
    })?;
    let mut notes: Vec<Note> = root.read_entries("notes", |id, note| {
        Ok(Note {
            id: NoteId::new(id),
            author: UserId::new(note.string("author")?),
            time_millis: note.int("time_millis")?,
            text: note.string("text")?,
            drivers: note
                .strings("drivers")?
                .into_iter()
                .map(DriverKey::from)
                .collect(),
            objections: note.strings("objections")?,
        })
    })?;
    notes.sort_by(|a, b| (a.time_millis, &a.id).cmp(&(b.time_millis, &b.id)));
    let follow_ups = root.read_entries("follow_ups", |id, follow_up| {
        let follow_up = FollowUp {
            text: follow_up.string("text")?,
            due_millis: follow_up.int("due_millis")?,
            done: follow_up.boolean("done")?,
        };
        Ok((FollowUpId::new(id), follow_up))
    })?;

    Ok(Account {
        schema,
        id: AccountId::new(root.string("id")?),
        team: TeamId::new(root.string("team")?),
        name: root.string("name")?,
        branch: root.string("branch")?,
        area: root.string("area")?,
        created_at: root.int("created_at")?,
        created_by: UserId::new(root.string("created_by")?),
        contacts,
        drivers,
        goals,
        value_proposition: root.text("value_proposition")?,
        notes,
        follow_ups,
        archived: any_true(doc, &ROOT, "archived")?,
    })
}

/// A new list of strings at `key` in `obj`.
fn put_strings<'s>(
    doc: &mut AutoCommit,
    obj: &ObjId,
    key: &str,
    items: impl Iterator<Item = &'s str>,
) -> Result<(), ModelError> {
    let list = doc.put_object(obj, key, ObjType::List)?;
    for (index, item) in items.enumerate() {
        doc.insert(&list, index, item)?;
    }
    Ok(())
}

/// An account document and the edits a rep can make to it.
///
/// Each edit is one automerge change carrying the editor's actor id, the caller's time and a
/// short message, and writes only the fields it changes, so concurrent edits to different
/// fields, items and characters all merge without loss.
#[derive(Debug, Clone)]
pub struct AccountDoc {
    doc: AutoCommit,
    editor: Editor,
}

impl AccountDoc {
    /// Creates the document for a new account.
    pub fn create(
        editor: Editor,
        new: NewAccount,
        now_millis: i64,
    ) -> Result<AccountDoc, ModelError> {
        let mut doc = new_doc(&editor);
        edit(&mut doc, "create account", now_millis, |doc| {
            // The full v1 shape, every collection present and empty, written in key order as
            // every earlier version wrote it (`tests/layout.rs` pins the resulting change).
            doc.put(ROOT, "archived", false)?;
            doc.put(ROOT, "area", new.area.as_str())?;
            doc.put(ROOT, "branch", new.branch.as_str())?;
            doc.put_object(ROOT, "contacts", ObjType::Map)?;
            doc.put(ROOT, "created_at", now_millis)?;
            doc.put(ROOT, "created_by", editor.user().as_str())?;
            doc.put_object(ROOT, "drivers", ObjType::Map)?;
            doc.put_object(ROOT, "follow_ups", ObjType::Map)?;
            doc.put_object(ROOT, "goals", ObjType::Map)?;
            doc.put(ROOT, "id", new.id.as_str())?;
            doc.put(ROOT, "kind", KIND)?;
            doc.put(ROOT, "name", new.name.as_str())?;
            doc.put_object(ROOT, "notes", ObjType::Map)?;
            doc.put(ROOT, "schema", SCHEMA_VERSION)?;
            doc.put(ROOT, "team", new.team.as_str())?;
            doc.put_object(ROOT, "value_proposition", ObjType::Text)?;
            Ok(())
        })?;
        Ok(AccountDoc { doc, editor })
    }

    /// Loads saved bytes (a full save, or concatenated incremental saves) for editing.
    ///
    /// Only the bytes are checked here; call [`AccountDoc::hydrate`] to check the content.
    pub fn load(editor: Editor, bytes: &[u8]) -> Result<AccountDoc, ModelError> {
        Ok(AccountDoc {
            doc: load_doc(bytes, &editor)?,
            editor,
        })
    }

    /// Wraps a document the caller already holds, editing it as `editor`.
    pub fn from_automerge(editor: Editor, doc: AutoCommit) -> AccountDoc {
        AccountDoc {
            doc: doc.with_actor(editor.actor().clone()),
            editor,
        }
    }

    pub fn editor(&self) -> &Editor {
        &self.editor
    }

    /// The underlying document, for syncing.
    pub fn automerge(&self) -> &AutoCommit {
        &self.doc
    }

    /// The underlying document, for syncing (applying changes, generating sync messages).
    pub fn automerge_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    pub fn into_automerge(self) -> AutoCommit {
        self.doc
    }

    /// The whole document, compacted.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// Merges another copy of the same account into this one.
    pub fn merge(&mut self, other: &mut AccountDoc) -> Result<(), ModelError> {
        self.doc.merge(&mut other.doc)?;
        Ok(())
    }

    /// Reads the account.
    pub fn hydrate(&self) -> Result<Account, ModelError> {
        hydrate_account(&self.doc)
    }

    /// Who changed what and when, oldest first.
    pub fn history(&mut self) -> Vec<crate::HistoryEntry> {
        crate::history(self.doc.document())
    }

    pub fn rename(&mut self, name: &str, now_millis: i64) -> Result<(), ModelError> {
        self.put_root_str("name", name, "rename account", now_millis)
    }

    pub fn set_branch(&mut self, branch: &str, now_millis: i64) -> Result<(), ModelError> {
        self.put_root_str("branch", branch, "set branch", now_millis)
    }

    pub fn set_area(&mut self, area: &str, now_millis: i64) -> Result<(), ModelError> {
        self.put_root_str("area", area, "set area", now_millis)
    }

    fn put_root_str(
        &mut self,
        key: &str,
        value: &str,
        message: &str,
        now_millis: i64,
    ) -> Result<(), ModelError> {
        edit(&mut self.doc, message, now_millis, |doc| {
            doc.put(ROOT, key, value)?;
            Ok(())
        })
    }

    /// Adds a contact, or updates one field by field (fields nobody changed are left alone, so
    /// a colleague's concurrent edit of another field survives).
    pub fn put_contact(
        &mut self,
        id: &ContactId,
        contact: &Contact,
        now_millis: i64,
    ) -> Result<(), ModelError> {
        let message = format!("set contact {id}");
        edit(&mut self.doc, message, now_millis, |doc| {
            let contacts = ensure_map(doc, &ROOT, "contacts")?;
            let entry = ensure_map(doc, &contacts, id.as_str())?;
            doc.put(&entry, "name", contact.name.as_str())?;
            doc.put(&entry, "role", contact.role.as_str())?;
            doc.put(&entry, "phone", contact.phone.as_str())?;
            doc.put(&entry, "email", contact.email.as_str())?;
            Ok(())
        })
    }

    pub fn remove_contact(&mut self, id: &ContactId, now_millis: i64) -> Result<(), ModelError> {
        self.remove_from(
            "contacts",
            id.as_str(),
            format!("remove contact {id}"),
            now_millis,
        )
        .and_then(|found| {
            found
                .then_some(())
                .ok_or_else(|| ModelError::UnknownContact(id.clone()))
        })
    }

    /// Records (or updates) a driver. The evidence is updated as a text diff, so a colleague
    /// typing into the same evidence at the same time keeps their characters.
    pub fn set_driver(
        &mut self,
        key: &DriverKey,
        strength: Strength,
        evidence: &str,
        now_millis: i64,
    ) -> Result<(), ModelError> {
        let message = format!("set driver {key}");
        edit(&mut self.doc, message, now_millis, |doc| {
            let drivers = ensure_map(doc, &ROOT, "drivers")?;
            let driver = ensure_map(doc, &drivers, key.as_str())?;
            doc.put(&driver, "strength", strength.value() as u64)?;
            update_text_at(doc, &driver, "evidence", evidence)
        })
    }

    pub fn remove_driver(&mut self, key: &DriverKey, now_millis: i64) -> Result<(), ModelError> {
        self.remove_from(
            "drivers",
            key.as_str(),
            format!("remove driver {key}"),
            now_millis,
        )
        .and_then(|found| {
            found
                .then_some(())
                .ok_or_else(|| ModelError::UnknownDriver(key.to_string()))
        })
    }

    /// Adds a goal or updates its title and status (field by field).
    pub fn set_goal(
        &mut self,
        id: &GoalId,
        goal: &Goal,
        now_millis: i64,
    ) -> Result<(), ModelError> {
        let message = format!("set goal {id} ({})", goal.status.as_str());
        edit(&mut self.doc, message, now_millis, |doc| {
            let goals = ensure_map(doc, &ROOT, "goals")?;
            let goal_obj = ensure_map(doc, &goals, id.as_str())?;
            doc.put(&goal_obj, "title", goal.title.as_str())?;
            doc.put(&goal_obj, "status", goal.status.as_str())?;
            Ok(())
        })
    }

    pub fn set_goal_status(
        &mut self,
        id: &GoalId,
        status: &GoalStatus,
        now_millis: i64,
    ) -> Result<(), ModelError> {
        let message = format!("set goal {id} ({})", status.as_str());
        edit(&mut self.doc, message, now_millis, |doc| {
            let goal = get_map(doc, &ROOT, "goals")?
                .map(|goals| get_map(doc, &goals, id.as_str()))
                .transpose()?
                .flatten()
                .ok_or_else(|| ModelError::UnknownGoal(id.clone()))?;
            doc.put(&goal, "status", status.as_str())?;
            Ok(())
        })
    }

    pub fn remove_goal(&mut self, id: &GoalId, now_millis: i64) -> Result<(), ModelError> {
        self.remove_from(
            "goals",
            id.as_str(),
            format!("remove goal {id}"),
            now_millis,
        )
        .and_then(|found| {
            found
                .then_some(())
                .ok_or_else(|| ModelError::UnknownGoal(id.clone()))
        })
    }

    /// Edits the value proposition like a text box: at `position` (in characters), delete
    /// `delete` characters and insert `insert`. Concurrent typing merges character by character.
    pub fn splice_value_proposition(
        &mut self,
        position: usize,
        delete: usize,
        insert: &str,
        now_millis: i64,
    ) -> Result<(), ModelError> {
        edit(&mut self.doc, "edit value proposition", now_millis, |doc| {
            let text = match doc.get(ROOT, "value_proposition")? {
                Some((Value::Object(ObjType::Text), id)) => id,
                _ => doc.put_object(ROOT, "value_proposition", ObjType::Text)?,
            };
            let length = doc.length(&text);
            if position.checked_add(delete).is_none_or(|end| end > length) {
                return Err(ModelError::TextRange {
                    position,
                    delete,
                    length,
                });
            }
            doc.splice_text(&text, position, delete as isize, insert)?;
            Ok(())
        })
    }

    /// The value proposition's length in characters (the unit of
    /// [`AccountDoc::splice_value_proposition`]).
    pub fn value_proposition_len(&self) -> usize {
        match self.doc.get(ROOT, "value_proposition") {
            Ok(Some((Value::Object(ObjType::Text), id))) => self.doc.length(&id),
            _ => 0,
        }
    }

    /// Appends a visit note written by this editor now. Notes are stored under their own id, so
    /// notes appended concurrently on different devices are all kept.
    pub fn add_note(&mut self, note: NewNote, now_millis: i64) -> Result<(), ModelError> {
        let message = format!("add note {}", note.id);
        let author = self.editor.user().clone();
        edit(&mut self.doc, message, now_millis, |doc| {
            let notes = ensure_map(doc, &ROOT, "notes")?;
            if doc.get(&notes, note.id.as_str())?.is_some() {
                return Ok(());
            }
            let stored = doc.put_object(&notes, note.id.as_str(), ObjType::Map)?;
            doc.put(&stored, "author", author.as_str())?;
            doc.put(&stored, "time_millis", now_millis)?;
            doc.put(&stored, "text", note.text.as_str())?;
            let drivers = note.drivers.iter().map(DriverKey::as_str);
            put_strings(doc, &stored, "drivers", drivers)?;
            let objections = note.objections.iter().map(String::as_str);
            put_strings(doc, &stored, "objections", objections)?;
            Ok(())
        })
    }

    /// A visit, as the quick capture records it: the note, then the follow-up.
    ///
    /// A driver ticked on the note that the account does not record yet is a reason this client
    /// works with us: it is recorded too, with strength "matters" and the note as evidence, so
    /// the account stops counting as "reasons unknown" (the rep can adjust it later). A note
    /// with no text, no driver and no objection is not written; a follow-up alone is.
    pub fn record_visit(
        &mut self,
        note: NewNote,
        follow_up: Option<NewFollowUp>,
        now_millis: i64,
    ) -> Result<(), ModelError> {
        if !note.text.is_empty() || !note.drivers.is_empty() || !note.objections.is_empty() {
            let recorded = self.hydrate()?.drivers;
            for driver in note.drivers.iter().filter(|d| !recorded.contains_key(*d)) {
                self.set_driver(driver, Strength::MATTERS, &note.text, now_millis)?;
            }
            self.add_note(note, now_millis)?;
        }
        if let Some(follow_up) = follow_up {
            self.add_follow_up(
                &follow_up.id,
                &follow_up.text,
                follow_up.due_millis,
                now_millis,
            )?;
        }
        Ok(())
    }

    pub fn add_follow_up(
        &mut self,
        id: &FollowUpId,
        text: &str,
        due_millis: i64,
        now_millis: i64,
    ) -> Result<(), ModelError> {
        let message = format!("add follow-up {id}");
        edit(&mut self.doc, message, now_millis, |doc| {
            let follow_ups = ensure_map(doc, &ROOT, "follow_ups")?;
            let follow_up = ensure_map(doc, &follow_ups, id.as_str())?;
            doc.put(&follow_up, "text", text)?;
            doc.put(&follow_up, "due_millis", due_millis)?;
            doc.put(&follow_up, "done", false)?;
            Ok(())
        })
    }

    pub fn set_follow_up_done(
        &mut self,
        id: &FollowUpId,
        done: bool,
        now_millis: i64,
    ) -> Result<(), ModelError> {
        let message = format!(
            "mark follow-up {id} {}",
            if done { "done" } else { "not done" }
        );
        edit(&mut self.doc, message, now_millis, |doc| {
            let follow_up = get_map(doc, &ROOT, "follow_ups")?
                .map(|all| get_map(doc, &all, id.as_str()))
                .transpose()?
                .flatten()
                .ok_or_else(|| ModelError::UnknownFollowUp(id.clone()))?;
            doc.put(&follow_up, "done", done)?;
            Ok(())
        })
    }

    /// Archives the account: it is hidden from every list and query on every device.
    ///
    /// **Merge rule:** `archived` is read as "any concurrently written value is `true`". Edits
    /// to other fields never write it, so they cannot un-archive; and an archive made
    /// concurrently with a [`restore`](AccountDoc::restore) wins. Only a restore made *after*
    /// seeing the archive un-archives.
    pub fn archive(&mut self, now_millis: i64) -> Result<(), ModelError> {
        edit(&mut self.doc, "archive account", now_millis, |doc| {
            doc.put(ROOT, "archived", true)?;
            Ok(())
        })
    }

    /// Un-archives the account (see [`archive`](AccountDoc::archive) for how it merges).
    pub fn restore(&mut self, now_millis: i64) -> Result<(), ModelError> {
        edit(&mut self.doc, "restore account", now_millis, |doc| {
            doc.put(ROOT, "archived", false)?;
            Ok(())
        })
    }

    fn remove_from(
        &mut self,
        map: &str,
        key: &str,
        message: String,
        now_millis: i64,
    ) -> Result<bool, ModelError> {
        edit(&mut self.doc, message, now_millis, |doc| {
            let Some(parent) = get_map(doc, &ROOT, map)? else {
                return Ok(false);
            };
            if doc.get(&parent, key)?.is_none() {
                return Ok(false);
            }
            doc.delete(&parent, key)?;
            Ok(true)
        })
    }
}
