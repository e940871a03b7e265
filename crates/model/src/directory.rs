//! The team directory: which account documents a team has, so a new device can find them.
//!
//! Root map: `schema`, `kind = "directory"`, `team`, and `accounts`: a map from account
//! document id to a small summary. Adding accounts on two devices at once merges (distinct
//! keys); the summary fields are last-writer-wins, except `archived`, which follows the same
//! "a concurrent true wins" rule as the account itself.

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc};

use crate::document::{
    Editor, MapReader, SCHEMA_VERSION, any_true, check_header, edit, ensure_map, get_map, load_doc,
    new_doc,
};
use crate::error::ModelError;
use crate::ids::{AccountId, TeamId, UserId};

const KIND: &str = "directory";

/// What a device needs to list an account before it has loaded the account's document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    pub name: String,
    pub created_at: i64,
    pub archived: bool,
}

/// A team directory as read from its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    pub schema: u64,
    pub team: TeamId,
    pub accounts: BTreeMap<AccountId, AccountSummary>,
}

impl Directory {
    /// The accounts that are not archived.
    pub fn visible(&self) -> impl Iterator<Item = (&AccountId, &AccountSummary)> {
        self.accounts.iter().filter(|(_, s)| !s.archived)
    }
}

/// Reads a directory from any automerge document.
pub fn hydrate_directory<D: ReadDoc>(doc: &D) -> Result<Directory, ModelError> {
    let schema = check_header(doc, KIND)?;
    let root = MapReader::root(doc, KIND);
    let accounts = root.read_entries("accounts", |id, entry| {
        let summary = AccountSummary {
            name: entry.string("name")?,
            created_at: entry.int("created_at")?,
            archived: any_true(doc, entry.obj(), "archived")?,
        };
        Ok((AccountId::new(id), summary))
    })?;
    Ok(Directory {
        schema,
        team: TeamId::new(root.string("team")?),
        accounts,
    })
}

/// A team directory document and its edits.
#[derive(Debug, Clone)]
pub struct DirectoryDoc {
    doc: AutoCommit,
}

/// The user id of the genesis change of every team directory.
const GENESIS_USER: &str = "fieldnotes";

/// The 16 bytes of the team directory's document id, the same on every device, so a new device
/// finds its team's accounts without asking anyone. (Wrap them in the sync crate's
/// `DocumentId::from_bytes`.)
pub fn team_directory_key(team: &TeamId) -> [u8; 16] {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("fieldnotes team directory\n{}", team.as_str()));
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

impl DirectoryDoc {
    pub fn create(
        editor: &Editor,
        team: TeamId,
        now_millis: i64,
    ) -> Result<DirectoryDoc, ModelError> {
        let mut doc = new_doc(editor);
        edit(&mut doc, "create directory", now_millis, |doc| {
            // In key order, as every earlier version wrote it: the genesis change must be
            // byte-identical on every device (`tests/layout.rs` pins it).
            doc.put_object(ROOT, "accounts", ObjType::Map)?;
            doc.put(ROOT, "kind", KIND)?;
            doc.put(ROOT, "schema", SCHEMA_VERSION)?;
            doc.put(ROOT, "team", team.as_str())?;
            Ok(())
        })?;
        Ok(DirectoryDoc { doc })
    }

    /// The team's directory as every device first creates it, then edited as `editor`.
    ///
    /// The first change is made with a fixed actor, time and content, so it is byte-identical
    /// on every device: directories created offline on two phones share that change as their
    /// root and merge into one directory, instead of two whose `accounts` maps compete.
    pub fn genesis(editor: &Editor, team: &TeamId) -> Result<DirectoryDoc, ModelError> {
        let genesis_editor = Editor::new(UserId::new(GENESIS_USER), &[0u8; 16])?;
        let created = DirectoryDoc::create(&genesis_editor, team.clone(), 0)?;
        Ok(DirectoryDoc::from_automerge(editor, created.doc))
    }

    pub fn into_automerge(self) -> AutoCommit {
        self.doc
    }

    pub fn load(editor: &Editor, bytes: &[u8]) -> Result<DirectoryDoc, ModelError> {
        Ok(DirectoryDoc {
            doc: load_doc(bytes, editor)?,
        })
    }

    pub fn from_automerge(editor: &Editor, doc: AutoCommit) -> DirectoryDoc {
        DirectoryDoc {
            doc: doc.with_actor(editor.actor().clone()),
        }
    }

    pub fn automerge(&self) -> &AutoCommit {
        &self.doc
    }

    pub fn automerge_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    pub fn merge(&mut self, other: &mut DirectoryDoc) -> Result<(), ModelError> {
        self.doc.merge(&mut other.doc)?;
        Ok(())
    }

    pub fn hydrate(&self) -> Result<Directory, ModelError> {
        hydrate_directory(&self.doc)
    }

    /// Lists a new account (or refreshes its summary field by field).
    pub fn add_account(
        &mut self,
        id: &AccountId,
        summary: &AccountSummary,
        now_millis: i64,
    ) -> Result<(), ModelError> {
        let message = format!("list account {id}");
        edit(&mut self.doc, message, now_millis, |doc| {
            let accounts = ensure_map(doc, &ROOT, "accounts")?;
            let entry = ensure_map(doc, &accounts, id.as_str())?;
            doc.put(&entry, "name", summary.name.as_str())?;
            doc.put(&entry, "created_at", summary.created_at)?;
            doc.put(&entry, "archived", summary.archived)?;
            Ok(())
        })
    }

    /// Keeps the listed name in step after [`crate::AccountDoc::rename`].
    pub fn rename_account(
        &mut self,
        id: &AccountId,
        name: &str,
        now_millis: i64,
    ) -> Result<(), ModelError> {
        self.put_in_entry(
            id,
            "name",
            name.into(),
            format!("rename listed account {id}"),
            now_millis,
        )
    }

    /// Hides the account in the list (same merge rule as [`crate::AccountDoc::archive`]).
    pub fn archive_account(&mut self, id: &AccountId, now_millis: i64) -> Result<(), ModelError> {
        self.put_in_entry(
            id,
            "archived",
            true.into(),
            format!("archive listed account {id}"),
            now_millis,
        )
    }

    pub fn restore_account(&mut self, id: &AccountId, now_millis: i64) -> Result<(), ModelError> {
        self.put_in_entry(
            id,
            "archived",
            false.into(),
            format!("restore listed account {id}"),
            now_millis,
        )
    }

    fn put_in_entry(
        &mut self,
        id: &AccountId,
        key: &str,
        value: automerge::ScalarValue,
        message: String,
        now_millis: i64,
    ) -> Result<(), ModelError> {
        edit(&mut self.doc, message, now_millis, |doc| {
            let entry = get_map(doc, &ROOT, "accounts")?
                .map(|accounts| get_map(doc, &accounts, id.as_str()))
                .transpose()?
                .flatten()
                .ok_or_else(|| ModelError::UnknownAccount(id.clone()))?;
            doc.put(&entry, key, value)?;
            Ok(())
        })
    }
}
