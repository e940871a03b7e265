//! The documents on this device and the promise that what is shown as saved is on disk.
//!
//! [`Repo`] holds every Automerge document of the signed-in rep's team (the team directory and
//! each account) in memory and writes their changes to IndexedDB. It knows nothing of Yew: the app
//! subscribes with [`Repo::set_listener`] and re-renders from [`Repo::accounts`].
//!
//! # What "saved" means
//!
//! A change is saved once the IndexedDB transaction that holds it has completed with
//! `durability: "strict"` (flushed to disk). Writes are group-committed rather than debounced:
//! at most one transaction is in flight, and every change made while it runs goes into the next
//! one. A burst of typing therefore costs one flush per disk round-trip, not one per key, and no
//! timer can lose the last keystrokes when the tab is closed. Until a write completes, the status
//! says "Saving…"; if it fails (storage full, storage refused), the changes stay in memory and in
//! the queue, the status says what happened and what to do, and the next change or "Retry" writes
//! them again.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use automerge::{AutoCommit, ChangeHash};
use fieldnotes_model::{
    Account, AccountDoc, AccountId, AccountSummary, DirectoryDoc, Editor, ModelError, NewAccount,
    TeamId, hydrate_account, hydrate_directory,
};

use crate::idb::{Idb, StorageError, StoredDocument, WriteOp, document_bytes};
use crate::platform::now_millis;

/// After this many incremental chunks a document is rewritten as one compact snapshot.
const COMPACT_AFTER_CHUNKS: u32 = 64;

/// What changed, for whoever renders.
#[derive(Debug, Clone, PartialEq)]
pub enum RepoEvent {
    /// Documents changed (locally or by sync): the accounts as they are now, and how many
    /// stored documents could not be read as accounts (damaged, or from a newer version).
    DocumentsChanged {
        accounts: Rc<Vec<Account>>,
        unreadable: usize,
    },
    /// The save state changed (saving, saved, or a storage error).
    SaveState(SaveState),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SaveState {
    /// Changes made in this tab that are not yet on disk.
    pub unsaved_changes: usize,
    /// The last write failed; the changes are kept and retried.
    pub error: Option<StorageError>,
}

pub type SharedRepo = Rc<RefCell<Repo>>;

pub struct Repo {
    idb: Idb,
    editor: Editor,
    team: TeamId,
    directory_id: String,
    /// Every document by id, with this device's actor.
    documents: BTreeMap<String, AutoCommit>,
    /// The heads each document had when its bytes last went to the write queue.
    queued_heads: HashMap<String, Vec<ChangeHash>>,
    /// The next chunk sequence number per document.
    next_chunk: HashMap<String, u32>,
    /// Hydrated accounts, refreshed when their document changes.
    accounts: BTreeMap<String, Account>,
    /// Documents that failed to hydrate as accounts, with the reason.
    unreadable: BTreeMap<String, String>,
    /// Documents whose stored bytes failed to load: rewritten whole on their next save.
    unreadable_on_disk: BTreeSet<String>,
    dirty: BTreeSet<String>,
    /// Documents changed on this device since the sync engine last looked.
    changed_locally: BTreeSet<String>,
    queue: Vec<WriteOp>,
    /// Run once the transaction holding everything queued before them has committed.
    after_commit: Vec<Box<dyn FnOnce()>>,
    queued_changes: usize,
    writing: bool,
    save_state: SaveState,
    listener: Option<Rc<dyn Fn(RepoEvent)>>,
}

impl Repo {
    /// Opens this device's store and loads every document in it. `directory_id` names the
    /// team directory; if it is not stored yet, the team's genesis directory is created.
    pub async fn open(
        idb: Idb,
        editor: Editor,
        team: TeamId,
        directory_id: String,
    ) -> Result<Repo, StorageError> {
        let mut repo = Repo {
            idb: idb.clone(),
            editor,
            team,
            directory_id,
            documents: BTreeMap::new(),
            queued_heads: HashMap::new(),
            next_chunk: HashMap::new(),
            accounts: BTreeMap::new(),
            unreadable: BTreeMap::new(),
            unreadable_on_disk: BTreeSet::new(),
            dirty: BTreeSet::new(),
            changed_locally: BTreeSet::new(),
            queue: Vec::new(),
            after_commit: Vec::new(),
            queued_changes: 0,
            writing: false,
            save_state: SaveState::default(),
            listener: None,
        };
        for (id, chunks) in idb.all_documents().await? {
            let next = chunks.last().map(|(sequence, _)| sequence + 1).unwrap_or(0);
            let bytes = document_bytes(chunks);
            match AccountDoc::load(repo.editor.clone(), &bytes) {
                Ok(doc) => {
                    let mut doc = doc.into_automerge();
                    repo.queued_heads.insert(id.clone(), doc.get_heads());
                    repo.documents.insert(id.clone(), doc);
                }
                Err(error) => {
                    repo.unreadable.insert(id.clone(), error.to_string());
                    repo.unreadable_on_disk.insert(id.clone());
                }
            }
            repo.next_chunk.insert(id, next);
        }
        if !repo.documents.contains_key(&repo.directory_id) {
            let directory = DirectoryDoc::genesis(&repo.editor, &repo.team)
                .map_err(|e| StorageError::Failed(e.to_string()))?
                .into_automerge();
            repo.documents.insert(repo.directory_id.clone(), directory);
            repo.dirty.insert(repo.directory_id.clone());
        }
        let ids: Vec<String> = repo.documents.keys().cloned().collect();
        for id in ids {
            repo.rehydrate(&id);
        }
        Ok(repo)
    }

    pub fn set_listener(&mut self, listener: Rc<dyn Fn(RepoEvent)>) {
        self.listener = Some(listener);
    }

    /// Hydrated accounts listed in the team directory or stored here, archived ones included
    /// (the queries hide them).
    pub fn accounts(&self) -> Vec<Account> {
        self.accounts.values().cloned().collect()
    }

    /// Whether a document's stored bytes failed to load (its saved sync state is then wrong).
    pub fn damaged_on_disk(&self, id: &str) -> bool {
        self.unreadable_on_disk.contains(id)
    }

    /// Stored documents that could not be read as accounts; they are kept as they are.
    pub fn unreadable_count(&self) -> usize {
        self.unreadable.len()
    }

    /// Account ids the directory lists that this device does not have yet.
    pub fn missing_accounts(&self) -> Vec<String> {
        self.directory_progress().1
    }

    /// How many accounts the directory lists, and the ids of those this device does not have
    /// yet (one read of the directory for both).
    pub fn directory_progress(&self) -> (usize, Vec<String>) {
        let Some(directory) = self
            .documents
            .get(&self.directory_id)
            .and_then(|doc| hydrate_directory(doc).ok())
        else {
            return (0, Vec::new());
        };
        let missing = directory
            .accounts
            .keys()
            .map(|id| id.as_str().to_string())
            .filter(|id| !self.accounts.contains_key(id))
            .collect();
        (directory.accounts.len(), missing)
    }

    /// The storage this repo writes to.
    pub fn idb(&self) -> &Idb {
        &self.idb
    }

    /// Whether every change is on disk and no write is in flight.
    pub fn idle(&self) -> bool {
        !self.writing && self.queue.is_empty() && self.dirty.is_empty()
    }

    /// Documents this device knows about, for the sync engine.
    pub fn document_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.documents.keys().cloned().collect();
        for id in self.missing_accounts() {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// A document for the sync engine; creates an empty one for an id the directory lists but
    /// this device has not received yet.
    pub fn document_mut(&mut self, id: &str) -> &mut AutoCommit {
        self.documents.entry(id.to_string()).or_insert_with(|| {
            AutoCommit::new_with_encoding(automerge::TextEncoding::UnicodeCodePoint)
                .with_actor(self.editor.actor().clone())
        })
    }

    /// Who changed what in a document, oldest first.
    pub fn history(&mut self, id: &str) -> Vec<fieldnotes_model::HistoryEntry> {
        self.documents
            .get_mut(id)
            .map(|doc| fieldnotes_model::history(doc.document()))
            .unwrap_or_default()
    }

    /// Called after the sync engine applied remote changes to documents.
    pub fn remote_changed(&mut self, ids: &[String]) {
        for id in ids {
            self.dirty.insert(id.clone());
            self.rehydrate(id);
        }
        self.emit_documents_changed();
    }

    /// Creates an account and lists it in the team directory.
    pub fn create_account(
        &mut self,
        id: AccountId,
        name: &str,
        branch: &str,
        area: &str,
    ) -> Result<(), ModelError> {
        let now = now_millis();
        let account = AccountDoc::create(
            self.editor.clone(),
            NewAccount {
                id: id.clone(),
                team: self.team.clone(),
                name: name.to_string(),
                branch: branch.to_string(),
                area: area.to_string(),
            },
            now,
        )?;
        let key = id.as_str().to_string();
        self.documents.insert(key.clone(), account.into_automerge());
        self.dirty.insert(key.clone());
        self.changed_locally.insert(key.clone());
        self.rehydrate(&key);
        let summary = AccountSummary {
            name: name.to_string(),
            created_at: now,
            archived: false,
        };
        self.edit_directory(|directory, now| directory.add_account(&id, &summary, now))?;
        self.emit_documents_changed();
        Ok(())
    }

    /// Applies one edit to an account; the change is queued for disk at once.
    pub fn edit_account(
        &mut self,
        id: &str,
        edit: impl FnOnce(&mut AccountDoc, i64) -> Result<(), ModelError>,
    ) -> Result<(), ModelError> {
        let Some(doc) = self.documents.remove(id) else {
            return Err(ModelError::UnknownAccount(AccountId::new(id)));
        };
        let mut account = AccountDoc::from_automerge(self.editor.clone(), doc);
        let result = edit(&mut account, now_millis());
        self.documents
            .insert(id.to_string(), account.into_automerge());
        result?;
        self.dirty.insert(id.to_string());
        self.changed_locally.insert(id.to_string());
        let listed_before = self.accounts.get(id).map(|a| (a.name.clone(), a.archived));
        self.rehydrate(id);
        // The directory carries each account's name and archived flag for the list; most edits
        // (a note, a keystroke in the value proposition) change neither, and leave it alone.
        let listed_after = self.accounts.get(id).map(|a| (a.name.clone(), a.archived));
        if listed_after == listed_before {
            self.emit_documents_changed();
            return Ok(());
        }
        if let Some(account) = self.accounts.get(id).cloned() {
            let account_id = account.id.clone();
            self.edit_directory(|directory, now| {
                let listed = hydrate_directory(directory.automerge())?;
                match listed.accounts.get(&account_id) {
                    Some(summary)
                        if summary.name == account.name && summary.archived == account.archived =>
                    {
                        Ok(())
                    }
                    Some(summary) => {
                        if summary.name != account.name {
                            directory.rename_account(&account_id, &account.name, now)?;
                        }
                        if account.archived && !summary.archived {
                            directory.archive_account(&account_id, now)?;
                        } else if !account.archived && summary.archived {
                            directory.restore_account(&account_id, now)?;
                        }
                        Ok(())
                    }
                    None => directory.add_account(
                        &account_id,
                        &AccountSummary {
                            name: account.name.clone(),
                            created_at: account.created_at,
                            archived: account.archived,
                        },
                        now,
                    ),
                }
            })?;
        }
        self.emit_documents_changed();
        Ok(())
    }

    fn edit_directory(
        &mut self,
        edit: impl FnOnce(&mut DirectoryDoc, i64) -> Result<(), ModelError>,
    ) -> Result<(), ModelError> {
        let id = self.directory_id.clone();
        let mut directory = match self.documents.remove(&id) {
            Some(doc) => DirectoryDoc::from_automerge(&self.editor, doc),
            None => DirectoryDoc::genesis(&self.editor, &self.team)?,
        };
        let result = edit(&mut directory, now_millis());
        self.documents
            .insert(id.clone(), directory.into_automerge());
        self.dirty.insert(id.clone());
        self.changed_locally.insert(id);
        result
    }

    fn rehydrate(&mut self, id: &str) {
        if id == self.directory_id {
            return;
        }
        let Some(doc) = self.documents.get_mut(id) else {
            return;
        };
        if doc.get_heads().is_empty() {
            return; // Requested from the server, nothing arrived yet.
        }
        match hydrate_account(doc) {
            Ok(account) => {
                self.unreadable.remove(id);
                self.accounts.insert(id.to_string(), account);
            }
            Err(error) => {
                self.unreadable.insert(id.to_string(), error.to_string());
            }
        }
    }

    fn emit_documents_changed(&self) {
        if self.listener.is_some() {
            self.emit(RepoEvent::DocumentsChanged {
                accounts: Rc::new(self.accounts()),
                unreadable: self.unreadable.len(),
            });
        }
    }

    fn emit(&self, event: RepoEvent) {
        if let Some(listener) = &self.listener {
            listener(event);
        }
    }

    /// Brings in the accounts of the database this app kept before sign-in existed, so notes
    /// typed offline before the upgrade are kept and then synced to this team. The old team
    /// directory is not taken over: each account is listed in this team's directory instead.
    /// An account already here is merged. Everything is written to disk before this returns
    /// (if the write fails the changes stay queued, and the caller keeps the old database).
    /// Returns how many accounts came in. Runs before anyone listens: the caller shows the
    /// accounts afterwards.
    pub async fn import_legacy(
        &mut self,
        documents: Vec<StoredDocument>,
    ) -> Result<usize, StorageError> {
        // Which accounts the team directory lists already, read once (it can list hundreds).
        // Each stored document is one account, so none is added twice below.
        let listed = self
            .documents
            .get(&self.directory_id)
            .and_then(|directory| hydrate_directory(directory).ok())
            .map(|directory| directory.accounts)
            .unwrap_or_default();
        let mut imported = 0;
        for (id, chunks) in documents {
            let bytes = document_bytes(chunks);
            let Ok(doc) = AccountDoc::load(self.editor.clone(), &bytes) else {
                continue;
            };
            let mut incoming = doc.into_automerge();
            let Ok(account) = hydrate_account(&incoming) else {
                continue; // The old directory, or a document this version cannot read.
            };
            match self.documents.get_mut(&id) {
                Some(existing) => {
                    existing
                        .merge(&mut incoming)
                        .map_err(|e| StorageError::Failed(e.to_string()))?;
                }
                None => {
                    self.documents.insert(id.clone(), incoming);
                }
            }
            self.dirty.insert(id.clone());
            self.changed_locally.insert(id.clone());
            self.rehydrate(&id);
            if !listed.contains_key(&account.id) {
                let summary = AccountSummary {
                    name: account.name,
                    created_at: account.created_at,
                    archived: account.archived,
                };
                self.edit_directory(|directory, now| {
                    directory.add_account(&account.id, &summary, now)
                })
                .map_err(|e| StorageError::Failed(e.to_string()))?;
            }
            imported += 1;
        }
        if imported == 0 {
            return Ok(0);
        }
        self.queue_dirty();
        let ops = std::mem::take(&mut self.queue);
        if let Err(error) = self.idb.write(&ops).await {
            self.queue.splice(0..0, ops);
            return Err(error);
        }
        self.queued_changes = 0;
        self.save_state.unsaved_changes = 0;
        Ok(imported)
    }

    /// Moves every dirty document's new changes into the write queue.
    fn queue_dirty(&mut self) {
        for id in std::mem::take(&mut self.dirty) {
            let Some(doc) = self.documents.get_mut(&id) else {
                continue;
            };
            let heads = doc.get_heads();
            let since = self.queued_heads.get(&id).cloned().unwrap_or_default();
            if since == heads {
                continue;
            }
            let next = self.next_chunk.entry(id.clone()).or_insert(0);
            let changes = doc.get_changes(&since).len().max(1);
            // A document whose stored chunks could not be loaded is rewritten whole once it
            // is readable again (from the server), so the damaged chunk is not read again.
            let damaged_on_disk = self.unreadable_on_disk.remove(&id);
            if *next >= COMPACT_AFTER_CHUNKS || damaged_on_disk {
                let snapshot = doc.save();
                self.queue.push(WriteOp::PutChunk {
                    document: id.clone(),
                    sequence: *next,
                    bytes: snapshot,
                });
                self.queue.push(WriteOp::DeleteChunksBelow {
                    document: id.clone(),
                    below: *next,
                });
            } else {
                let bytes = doc.save_after(&since);
                self.queue.push(WriteOp::PutChunk {
                    document: id.clone(),
                    sequence: *next,
                    bytes,
                });
            }
            *next += 1;
            self.queued_changes += changes;
            self.queued_heads.insert(id, heads);
        }
        self.save_state.unsaved_changes = self.queued_changes;
    }

    /// Documents changed on this device since the last call, for the sync engine.
    pub fn take_changed_locally(&mut self) -> Vec<String> {
        std::mem::take(&mut self.changed_locally)
            .into_iter()
            .collect()
    }

    /// Queues a small record (sync state, settings) to be written with the next transaction.
    pub fn put_meta(&mut self, key: String, bytes: Vec<u8>) {
        self.queue.push(WriteOp::PutMeta { key, bytes });
    }

    /// Deletes a small record in the same transaction as the changes made before this call (a
    /// saved form's draft goes with the note it became); `committed` runs once that transaction
    /// has completed. A failed write keeps both for the retry.
    pub fn delete_meta_when_committed(&mut self, key: String, committed: Box<dyn FnOnce()>) {
        self.queue.push(WriteOp::DeleteMeta { key });
        self.after_commit.push(committed);
    }
}

/// Writes everything queued, one transaction at a time, until nothing is left.
pub fn flush(repo: &SharedRepo) {
    {
        let mut this = repo.borrow_mut();
        this.queue_dirty();
        if this.writing || this.queue.is_empty() {
            let state = this.save_state.clone();
            drop(this);
            repo.borrow().emit(RepoEvent::SaveState(state));
            return;
        }
        this.writing = true;
    }
    let repo = repo.clone();
    wasm_bindgen_futures::spawn_local(async move {
        loop {
            let (idb, ops, changes, after_commit) = {
                let mut this = repo.borrow_mut();
                this.queue_dirty();
                if this.queue.is_empty() {
                    this.writing = false;
                    break;
                }
                let ops = std::mem::take(&mut this.queue);
                let changes = std::mem::take(&mut this.queued_changes);
                let after_commit = std::mem::take(&mut this.after_commit);
                (this.idb.clone(), ops, changes, after_commit)
            };
            let result = idb.write(&ops).await;
            let mut this = repo.borrow_mut();
            match result {
                Ok(()) => {
                    this.save_state.error = None;
                    this.save_state.unsaved_changes = this.queued_changes;
                    let state = this.save_state.clone();
                    drop(this);
                    for committed in after_commit {
                        committed();
                    }
                    repo.borrow().emit(RepoEvent::SaveState(state));
                }
                Err(error) => {
                    // Keep the failed writes in front of anything newer, in order, and stop
                    // until the next change or an explicit retry.
                    let mut ops = ops;
                    ops.append(&mut this.queue);
                    this.queue = ops;
                    let mut after_commit = after_commit;
                    after_commit.append(&mut this.after_commit);
                    this.after_commit = after_commit;
                    this.queued_changes += changes;
                    this.save_state.unsaved_changes = this.queued_changes;
                    this.save_state.error = Some(error);
                    this.writing = false;
                    let state = this.save_state.clone();
                    drop(this);
                    repo.borrow().emit(RepoEvent::SaveState(state));
                    break;
                }
            }
        }
    });
}
