//! The documents on this device and the promise that what is shown as saved is on disk.
//!
//! [`Repo`] keeps every account's index entry ([`AccountEntry`]) in memory, and the Automerge
//! documents themselves only while they are needed: the team directory always; an account when
//! the rep opens it, while the sync engine exchanges it, and until its changes are on disk; and
//! the few used last ([`MAX_IDLE_LOADED`]). Memory stays bounded however large the team: a team of
//! 10,000 accounts is 10,000 entries of a few hundred bytes, not 10,000 documents. It knows
//! nothing of Yew: the app subscribes with [`Repo::set_listener`] and renders from the entries.
//!
//! # What "saved" means
//!
//! A change is saved once the IndexedDB transaction that holds it has completed with
//! `durability: "strict"` (flushed to disk). Writes are group-committed ([`queue`]): at most one
//! transaction is in flight, and every change made while it runs goes into the next one. A
//! document's entry and sync state are written in the same transaction as its changes, so the
//! list never shows what the disk does not hold. Until a write completes the status says
//! "Saving…"; if it fails (storage full, storage refused), the changes stay in memory and in the
//! queue, the status says what happened and what to do, and the next change or "Retry" writes
//! them again. A document with a write queued or in flight stays in memory until it committed.

pub mod queue;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use automerge::{AutoCommit, ChangeHash};
use fieldnotes_model::{
    Account, AccountDoc, AccountEntry, AccountId, AccountSummary, DirectoryDoc, Editor, ModelError,
    NewAccount, TeamId, hydrate_account, hydrate_directory,
};
use fieldnotes_sync::DocumentId;

use crate::idb::{Idb, StorageError, StoredDocument, WriteOp, document_bytes};
use crate::platform::now_millis;
use queue::WriteQueue;

/// After this many incremental chunks a document is rewritten as one compact snapshot.
const COMPACT_AFTER_CHUNKS: u32 = 64;

/// Documents kept in memory that nothing needs right now (the ones used last), beyond the
/// directory and those in use.
pub const MAX_IDLE_LOADED: usize = 24;

/// An index record that says its document could not be read as an account.
const UNREADABLE_MARK: u8 = 0;

/// What changed, for whoever renders.
#[derive(Debug, Clone, PartialEq)]
pub enum RepoEvent {
    /// Entries changed (locally or by sync): every account's entry as it is now, and how many
    /// stored documents could not be read as accounts (damaged, or from a newer version).
    EntriesChanged {
        entries: Rc<Vec<Rc<AccountEntry>>>,
        unreadable: usize,
    },
    /// An account that is loaded changed: its hydrated form, for the screens showing it.
    AccountChanged(Rc<Account>),
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

/// A callback that runs once a transaction has committed.
pub type AfterCommit = Box<dyn FnOnce()>;

/// An edit of the team directory made before it was read from the disk, with its time.
type DirectoryEdit = (
    Box<dyn FnOnce(&mut DirectoryDoc, i64) -> Result<(), ModelError>>,
    i64,
);

struct Loaded {
    doc: AutoCommit,
    /// The repo's use counter when it was last used, to unload the least recently used.
    last_used: u64,
}

pub struct Repo {
    idb: Idb,
    editor: Editor,
    team: TeamId,
    directory_id: DocumentId,
    /// Every account's entry, by document id.
    entries: BTreeMap<DocumentId, Rc<AccountEntry>>,
    /// Stored documents that cannot be read as accounts, with the reason.
    unreadable: BTreeMap<DocumentId, String>,
    /// Documents whose stored bytes failed to load: rewritten whole on their next save.
    unreadable_on_disk: BTreeSet<DocumentId>,
    /// The documents in memory.
    loaded: HashMap<DocumentId, Loaded>,
    uses: u64,
    /// Why a document must stay in memory: counts of holders (an open screen, the sync engine).
    held: HashMap<DocumentId, u32>,
    /// The heads each document had when its bytes last went to the write queue.
    queued_heads: HashMap<DocumentId, Vec<ChangeHash>>,
    /// The next chunk sequence number per document (known once it was loaded).
    next_chunk: HashMap<DocumentId, u32>,
    /// Documents with writes not yet committed, and the transaction (by number) that carries
    /// their last one.
    unwritten: HashMap<DocumentId, u64>,
    transactions_started: u64,
    dirty: BTreeSet<DocumentId>,
    /// Entries changed by remote changes that the list has not heard of yet.
    entries_unannounced: bool,
    /// Documents changed on this device since the sync engine last looked.
    changed_locally: BTreeSet<DocumentId>,
    /// Small records to write with the next transaction (sync states, drafts' deletions).
    queue: WriteQueue<WriteOp, AfterCommit>,
    save_error: Option<StorageError>,
    /// The account a screen shows: kept in memory, and told about when it changes.
    shown: Option<DocumentId>,
    listener: Option<Rc<dyn Fn(RepoEvent)>>,
    /// `Some` until [`load_directory`] has read the team directory (it grows with the team, so
    /// the list is shown first): the directory edits made meanwhile, applied once it is read.
    directory_waiting: Option<Vec<DirectoryEdit>>,
}

/// The index record of an account.
fn entry_record(entry: &AccountEntry) -> Vec<u8> {
    entry.encode()
}

fn unreadable_record(reason: &str) -> Vec<u8> {
    let mut bytes = vec![UNREADABLE_MARK];
    bytes.extend_from_slice(reason.as_bytes());
    bytes
}

fn parse_id(id: &str) -> Option<DocumentId> {
    DocumentId::parse(id).ok()
}

impl Repo {
    /// Opens this device's store: every account's entry. The team directory is read afterwards
    /// ([`load_directory`]): it lists every account of the team, so the list does not wait for
    /// it. A database from before the index existed gets one now, built from its documents
    /// once.
    pub async fn open(
        idb: Idb,
        editor: Editor,
        team: TeamId,
        directory_id: DocumentId,
    ) -> Result<Repo, StorageError> {
        let mut repo = Repo {
            idb: idb.clone(),
            editor,
            team,
            directory_id,
            entries: BTreeMap::new(),
            unreadable: BTreeMap::new(),
            unreadable_on_disk: BTreeSet::new(),
            loaded: HashMap::new(),
            uses: 0,
            held: HashMap::new(),
            queued_heads: HashMap::new(),
            next_chunk: HashMap::new(),
            unwritten: HashMap::new(),
            transactions_started: 0,
            dirty: BTreeSet::new(),
            entries_unannounced: false,
            changed_locally: BTreeSet::new(),
            queue: WriteQueue::default(),
            save_error: None,
            shown: None,
            listener: None,
            directory_waiting: Some(Vec::new()),
        };
        let mut rebuild = Vec::new();
        for (id, bytes) in idb.all_entries().await? {
            let Some(document) = parse_id(&id) else {
                continue;
            };
            match bytes.split_first() {
                Some((&UNREADABLE_MARK, reason)) => {
                    let reason = String::from_utf8_lossy(reason).into_owned();
                    repo.unreadable.insert(document, reason);
                }
                _ => match AccountEntry::decode(&bytes) {
                    Some(entry) => {
                        repo.entries.insert(document, Rc::new(entry));
                    }
                    // Written by a newer version: read it again from the document.
                    None => rebuild.push(document),
                },
            }
        }
        if repo.entries.is_empty() && repo.unreadable.is_empty() {
            // Version 1 kept no index: build it from every stored document, once.
            for (id, chunks) in idb.all_documents().await? {
                if let Some(document) = parse_id(&id)
                    && document != repo.directory_id
                {
                    repo.adopt_stored(document, chunks);
                }
            }
        }
        for document in rebuild {
            let chunks = idb.document(&document.to_string()).await?;
            repo.adopt_stored(document, chunks);
        }
        Ok(repo)
    }

    /// Whether the team directory has been read ([`load_directory`]).
    pub fn directory_loaded(&self) -> bool {
        self.directory_waiting.is_none()
    }

    /// A document read from the disk during `open` (a version 1 database, or an entry this
    /// version could not read): its entry is computed and written, the document not kept.
    fn adopt_stored(&mut self, document: DocumentId, chunks: Vec<(u32, Vec<u8>)>) {
        let bytes = document_bytes(chunks);
        let record =
            match AccountDoc::load(self.editor.clone(), &bytes).and_then(|doc| doc.hydrate()) {
                Ok(account) => {
                    let entry = AccountEntry::of(&account);
                    let record = entry_record(&entry);
                    self.entries.insert(document, Rc::new(entry));
                    record
                }
                Err(error) => {
                    let reason = error.to_string();
                    let record = unreadable_record(&reason);
                    self.unreadable.insert(document, reason);
                    record
                }
            };
        self.queue.push(
            [WriteOp::PutEntry {
                document: document.to_string(),
                bytes: record,
            }],
            0,
        );
    }

    /// Puts a document read from the disk in memory.
    fn insert_stored(&mut self, document: DocumentId, chunks: Vec<(u32, Vec<u8>)>) {
        let next = chunks.last().map(|(sequence, _)| sequence + 1).unwrap_or(0);
        let bytes = document_bytes(chunks);
        if document == self.directory_id {
            // The directory is not an account: it is never counted as an unreadable one.
            match DirectoryDoc::load(&self.editor, &bytes) {
                Ok(doc) => self.insert_loaded(document, doc.into_automerge(), next),
                Err(_) => {
                    self.unreadable_on_disk.insert(document);
                    self.insert_loaded(document, self.empty_document(), next);
                }
            }
            return;
        }
        match AccountDoc::load(self.editor.clone(), &bytes) {
            Ok(doc) => {
                let mut doc = doc.into_automerge();
                if doc.get_heads().is_empty() {
                    // Chunks that load but apply nothing (the first is damaged, the rest wait
                    // for it) are as damaged as chunks that do not load.
                    self.unreadable
                        .insert(document, "its stored changes are incomplete".to_string());
                    self.unreadable_on_disk.insert(document);
                    self.insert_loaded(document, self.empty_document(), next);
                    self.emit_entries();
                } else {
                    self.insert_loaded(document, doc, next);
                }
            }
            Err(error) => {
                // Kept as it is on disk; a copy from the server replaces it whole.
                self.unreadable.insert(document, error.to_string());
                self.unreadable_on_disk.insert(document);
                self.insert_loaded(document, self.empty_document(), next);
                self.emit_entries();
            }
        }
    }

    fn insert_loaded(&mut self, document: DocumentId, mut doc: AutoCommit, next_chunk: u32) {
        self.uses += 1;
        self.queued_heads.insert(document, doc.get_heads());
        self.next_chunk.insert(document, next_chunk);
        self.loaded.insert(
            document,
            Loaded {
                doc,
                last_used: self.uses,
            },
        );
    }

    fn empty_document(&self) -> AutoCommit {
        AutoCommit::new_with_encoding(automerge::TextEncoding::UnicodeCodePoint)
            .with_actor(self.editor.actor().clone())
    }

    pub fn set_listener(&mut self, listener: Rc<dyn Fn(RepoEvent)>) {
        self.listener = Some(listener);
    }

    /// Every account's entry, archived ones included (the queries hide them).
    pub fn entries(&self) -> Rc<Vec<Rc<AccountEntry>>> {
        Rc::new(self.entries.values().cloned().collect())
    }

    pub fn entry(&self, document: &DocumentId) -> Option<&AccountEntry> {
        self.entries.get(document).map(Rc::as_ref)
    }

    /// Whether this device stores the document (an account, the directory, or a document it
    /// cannot read).
    pub fn stores(&self, document: &DocumentId) -> bool {
        self.entries.contains_key(document)
            || self.unreadable.contains_key(document)
            || self.loaded.contains_key(document)
    }

    /// Whether the document is on this phone's disk, not only in memory: a download counts
    /// once its first write has committed, so the progress a rep sees survives a killed tab.
    pub fn saved_here(&self, document: &DocumentId) -> bool {
        if !self.stores(document) {
            return false;
        }
        match self.next_chunk.get(document) {
            // Known from its entry on disk and not loaded.
            None => true,
            // Received, nothing queued yet.
            Some(0) => false,
            // Its first chunk is queued; on disk once that transaction committed.
            Some(1) => !self.unwritten.contains_key(document),
            Some(_) => true,
        }
    }

    pub fn is_loaded(&self, document: &DocumentId) -> bool {
        self.loaded.contains_key(document)
    }

    /// The account, hydrated, when its document is in memory.
    pub fn account(&mut self, document: &DocumentId) -> Option<Account> {
        let loaded = self.loaded.get_mut(document)?;
        hydrate_account(&loaded.doc).ok()
    }

    /// Whether a document's stored bytes failed to load (its saved sync state is then wrong).
    pub fn damaged_on_disk(&self, document: &DocumentId) -> bool {
        self.unreadable_on_disk.contains(document)
    }

    /// Stored documents that could not be read as accounts; they are kept as they are.
    pub fn unreadable_count(&self) -> usize {
        self.unreadable.len()
    }

    pub fn directory_id(&self) -> DocumentId {
        self.directory_id
    }

    /// How many accounts the directory lists, and those of them this device does not have yet
    /// (one read of the directory for both).
    pub fn directory_progress(&self) -> (usize, Vec<DocumentId>) {
        let Some(directory) = self
            .loaded
            .get(&self.directory_id)
            .and_then(|loaded| hydrate_directory(&loaded.doc).ok())
        else {
            return (0, Vec::new());
        };
        let missing = directory
            .accounts
            .keys()
            .filter_map(|id| parse_id(id.as_str()))
            .filter(|id| !self.entries.contains_key(id) && !self.unreadable.contains_key(id))
            .collect();
        (directory.accounts.len(), missing)
    }

    /// The accounts the team directory lists.
    pub fn listed_accounts(&self) -> Vec<DocumentId> {
        self.loaded
            .get(&self.directory_id)
            .and_then(|loaded| hydrate_directory(&loaded.doc).ok())
            .map(|directory| {
                directory
                    .accounts
                    .keys()
                    .filter_map(|id| parse_id(id.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every account document this device stores, then those the directory lists that it does
    /// not have yet.
    pub fn known_documents(&self) -> Vec<DocumentId> {
        let mut ids: Vec<DocumentId> = self
            .entries
            .keys()
            .chain(self.unreadable.keys())
            .copied()
            .collect();
        ids.extend(self.directory_progress().1);
        ids
    }

    /// The storage this repo writes to.
    pub fn idb(&self) -> &Idb {
        &self.idb
    }

    /// Whether every change is on disk and no write is in flight.
    pub fn idle(&self) -> bool {
        self.queue.idle() && self.dirty.is_empty()
    }

    /// The account a screen shows now (`None`: none). It stays in memory while shown, and
    /// every change to it is told ([`RepoEvent::AccountChanged`]). Load it first ([`load`]).
    pub fn show(&mut self, document: Option<DocumentId>) {
        if self.shown == document {
            // Shown again (the screen came back to it): the state may have dropped it meanwhile.
            if let Some(document) = document
                && let Some(account) = self.account(&document)
            {
                self.emit(RepoEvent::AccountChanged(Rc::new(account)));
            }
            return;
        }
        if let Some(previous) = self.shown.take() {
            self.release(&previous);
        }
        if let Some(document) = document {
            self.hold(document);
            self.shown = Some(document);
            if let Some(account) = self.account(&document) {
                self.emit(RepoEvent::AccountChanged(Rc::new(account)));
            }
        }
    }

    /// The account a screen shows now.
    pub fn shown(&self) -> Option<DocumentId> {
        self.shown
    }

    /// Keeps a document in memory until [`Repo::release`] (an open screen, the sync engine).
    pub fn hold(&mut self, document: DocumentId) {
        *self.held.entry(document).or_default() += 1;
    }

    pub fn release(&mut self, document: &DocumentId) {
        if let Some(count) = self.held.get_mut(document) {
            *count -= 1;
            if *count == 0 {
                self.held.remove(document);
            }
        }
        self.unload_idle();
    }

    /// A document in memory, for the sync engine. One this device does not store is created
    /// empty (requested from the server, nothing arrived yet); one it stores must have been
    /// loaded with [`load`] first, so that nothing is written over what is on disk.
    pub fn document_mut(&mut self, document: &DocumentId) -> Option<&mut AutoCommit> {
        if !self.loaded.contains_key(document) {
            if self.stores(document) {
                return None;
            }
            let empty = self.empty_document();
            self.insert_loaded(*document, empty, 0);
        }
        self.uses += 1;
        let uses = self.uses;
        let loaded = self.loaded.get_mut(document)?;
        loaded.last_used = uses;
        Some(&mut loaded.doc)
    }

    /// Who changed what in a document, oldest first.
    pub fn history(&mut self, document: &DocumentId) -> Vec<fieldnotes_model::HistoryEntry> {
        self.loaded
            .get_mut(document)
            .map(|loaded| fieldnotes_model::history(loaded.doc.document()))
            .unwrap_or_default()
    }

    /// Called as soon as the sync engine applied a remote change to `document`, before the
    /// engine may close it: the document is marked to be written (so it stays in memory until
    /// it is) and its list entry is read again. The list hears of it at [`Repo::announce_entries`].
    pub fn remote_changed(&mut self, document: &DocumentId) {
        self.dirty.insert(*document);
        self.entries_unannounced |= self.refresh_entry(document);
    }

    /// Tells the list about the entries remote changes changed, once per burst of frames.
    pub fn announce_entries(&mut self) {
        if std::mem::take(&mut self.entries_unannounced) {
            self.emit_entries();
        }
    }

    /// Creates an account and lists it in the team directory.
    pub fn create_account(
        &mut self,
        document: DocumentId,
        name: &str,
        branch: &str,
        area: &str,
    ) -> Result<(), ModelError> {
        let now = now_millis();
        let id = AccountId::new(document.to_string());
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
        self.insert_loaded(document, account.into_automerge(), 0);
        self.queued_heads.insert(document, Vec::new());
        self.dirty.insert(document);
        self.changed_locally.insert(document);
        self.refresh_entry(&document);
        let summary = AccountSummary {
            name: name.to_string(),
            created_at: now,
            archived: false,
        };
        self.edit_directory(move |directory, now| directory.add_account(&id, &summary, now))?;
        self.emit_entries();
        Ok(())
    }

    /// Applies one edit to a loaded account; the change is queued for disk at once.
    pub fn edit_account(
        &mut self,
        document: &DocumentId,
        edit: impl FnOnce(&mut AccountDoc, i64) -> Result<(), ModelError>,
    ) -> Result<(), ModelError> {
        let Some(loaded) = self.loaded.remove(document) else {
            return Err(ModelError::UnknownAccount(AccountId::new(
                document.to_string(),
            )));
        };
        let mut account = AccountDoc::from_automerge(self.editor.clone(), loaded.doc);
        let result = edit(&mut account, now_millis());
        self.uses += 1;
        self.loaded.insert(
            *document,
            Loaded {
                doc: account.into_automerge(),
                last_used: self.uses,
            },
        );
        result?;
        self.dirty.insert(*document);
        self.changed_locally.insert(*document);
        let listed_before = self
            .entries
            .get(document)
            .map(|e| (e.name.clone(), e.archived));
        let entries_changed = self.refresh_entry(document);
        // The directory carries each account's name and archived flag for a new device; most
        // edits (a note, a keystroke in the value proposition) change neither.
        let listed_after = self
            .entries
            .get(document)
            .map(|e| (e.name.clone(), e.archived, e.created_at));
        if listed_after.as_ref().map(|(n, a, _)| (n.clone(), *a)) != listed_before
            && let Some((name, archived, created_at)) = listed_after
        {
            let account_id = AccountId::new(document.to_string());
            self.edit_directory(move |directory, now| {
                let listed = hydrate_directory(directory.automerge())?;
                match listed.accounts.get(&account_id) {
                    Some(summary) if summary.name == name && summary.archived == archived => Ok(()),
                    Some(summary) => {
                        if summary.name != name {
                            directory.rename_account(&account_id, &name, now)?;
                        }
                        if archived && !summary.archived {
                            directory.archive_account(&account_id, now)?;
                        } else if !archived && summary.archived {
                            directory.restore_account(&account_id, now)?;
                        }
                        Ok(())
                    }
                    None => directory.add_account(
                        &account_id,
                        &AccountSummary {
                            name: name.clone(),
                            created_at,
                            archived,
                        },
                        now,
                    ),
                }
            })?;
        }
        if entries_changed {
            self.emit_entries();
        }
        Ok(())
    }

    /// Edits the team directory; before it is read, the edit waits for it (the result is then
    /// `Ok`, and a failure later is logged: the edits that come here cannot fail on a readable
    /// directory).
    fn edit_directory(
        &mut self,
        edit: impl FnOnce(&mut DirectoryDoc, i64) -> Result<(), ModelError> + 'static,
    ) -> Result<(), ModelError> {
        let now = now_millis();
        if let Some(waiting) = &mut self.directory_waiting {
            waiting.push((Box::new(edit), now));
            return Ok(());
        }
        self.apply_directory_edit(edit, now)
    }

    fn apply_directory_edit(
        &mut self,
        edit: impl FnOnce(&mut DirectoryDoc, i64) -> Result<(), ModelError>,
        now: i64,
    ) -> Result<(), ModelError> {
        let id = self.directory_id;
        let mut directory = match self.loaded.remove(&id) {
            Some(loaded) => DirectoryDoc::from_automerge(&self.editor, loaded.doc),
            None => DirectoryDoc::genesis(&self.editor, &self.team)?,
        };
        let result = edit(&mut directory, now);
        self.uses += 1;
        self.loaded.insert(
            id,
            Loaded {
                doc: directory.into_automerge(),
                last_used: self.uses,
            },
        );
        self.dirty.insert(id);
        self.changed_locally.insert(id);
        result
    }

    /// Reads a loaded account again; its entry is written with its next chunk. Returns
    /// whether the entry changed, and tells the screens showing the account.
    fn refresh_entry(&mut self, document: &DocumentId) -> bool {
        if *document == self.directory_id {
            return false;
        }
        let Some(loaded) = self.loaded.get_mut(document) else {
            return false;
        };
        if loaded.doc.get_heads().is_empty() {
            return false; // Requested from the server, nothing arrived yet.
        }
        match hydrate_account(&loaded.doc) {
            Ok(account) => {
                // Readable again: the list's "could not be opened" count changes even when the
                // entry kept from before the damage is the same.
                let was_unreadable = self.unreadable.remove(document).is_some();
                let entry = AccountEntry::of(&account);
                let changed =
                    was_unreadable || self.entries.get(document).map(Rc::as_ref) != Some(&entry);
                if changed {
                    self.entries.insert(*document, Rc::new(entry));
                }
                if self.shown == Some(*document) {
                    self.emit(RepoEvent::AccountChanged(Rc::new(account)));
                }
                changed
            }
            Err(error) => {
                let changed = self.entries.remove(document).is_some();
                self.unreadable.insert(*document, error.to_string());
                changed
            }
        }
    }

    fn emit_entries(&self) {
        if self.listener.is_some() {
            self.emit(RepoEvent::EntriesChanged {
                entries: self.entries(),
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
    /// Returns how many accounts came in, which the list is told of at once.
    pub async fn import_legacy(
        repo: &SharedRepo,
        documents: Vec<StoredDocument>,
    ) -> Result<usize, StorageError> {
        let mut imported = 0;
        for (id, chunks) in documents {
            let Some(document) = parse_id(&id) else {
                continue;
            };
            let bytes = document_bytes(chunks);
            let Ok(doc) = AccountDoc::load(repo.borrow().editor.clone(), &bytes) else {
                continue;
            };
            let mut incoming = doc.into_automerge();
            let Ok(account) = hydrate_account(&incoming) else {
                continue; // The old directory, or a document this version cannot read.
            };
            if repo.borrow().stores(&document) && !repo.borrow().is_loaded(&document) {
                load(repo, &document).await?;
            }
            let mut this = repo.borrow_mut();
            match this.loaded.get_mut(&document) {
                Some(existing) => {
                    existing
                        .doc
                        .merge(&mut incoming)
                        .map_err(|e| StorageError::Failed(e.to_string()))?;
                }
                None => {
                    this.insert_loaded(document, incoming, 0);
                    this.queued_heads.insert(document, Vec::new());
                }
            }
            this.dirty.insert(document);
            this.changed_locally.insert(document);
            this.refresh_entry(&document);
            let listed = this
                .loaded
                .get(&this.directory_id)
                .and_then(|directory| hydrate_directory(&directory.doc).ok())
                .is_some_and(|directory| directory.accounts.contains_key(&account.id));
            if !listed {
                let summary = AccountSummary {
                    name: account.name,
                    created_at: account.created_at,
                    archived: account.archived,
                };
                let id = account.id;
                this.edit_directory(move |directory, now| {
                    directory.add_account(&id, &summary, now)
                })
                .map_err(|e| StorageError::Failed(e.to_string()))?;
            }
            imported += 1;
        }
        if imported == 0 {
            return Ok(0);
        }
        // The list is on screen already (the import runs after the team directory is read).
        repo.borrow().emit_entries();
        let (idb, ops) = {
            let mut this = repo.borrow_mut();
            let ops = this.start_write().unwrap_or_default();
            (this.idb.clone(), ops)
        };
        let result = idb.write(&ops).await;
        let mut this = repo.borrow_mut();
        match result {
            Ok(()) => {
                let callbacks = this.committed();
                drop(this);
                for callback in callbacks {
                    callback();
                }
                Ok(imported)
            }
            Err(error) => {
                this.write_failed();
                Err(error)
            }
        }
    }

    /// Moves every dirty document's new changes, with its entry, into the write queue.
    fn queue_dirty(&mut self) {
        let pending_transaction = self.transactions_started + 1;
        for document in std::mem::take(&mut self.dirty) {
            let Some(loaded) = self.loaded.get_mut(&document) else {
                continue;
            };
            let heads = loaded.doc.get_heads();
            let since = self
                .queued_heads
                .get(&document)
                .cloned()
                .unwrap_or_default();
            if since == heads {
                continue;
            }
            let key = document.to_string();
            let next = self.next_chunk.entry(document).or_insert(0);
            let changes = loaded.doc.get_changes(&since).len().max(1);
            let mut writes = Vec::new();
            // A document whose stored chunks could not be loaded is rewritten whole once it
            // is readable again (from the server), so the damaged chunk is not read again.
            let damaged_on_disk = self.unreadable_on_disk.remove(&document);
            if *next >= COMPACT_AFTER_CHUNKS || damaged_on_disk {
                writes.push(WriteOp::PutChunk {
                    document: key.clone(),
                    sequence: *next,
                    bytes: loaded.doc.save(),
                });
                writes.push(WriteOp::DeleteChunksBelow {
                    document: key.clone(),
                    below: *next,
                });
            } else {
                writes.push(WriteOp::PutChunk {
                    document: key.clone(),
                    sequence: *next,
                    bytes: loaded.doc.save_after(&since),
                });
            }
            *next += 1;
            if document != self.directory_id {
                let record = match (self.entries.get(&document), self.unreadable.get(&document)) {
                    (Some(entry), _) => Some(entry_record(entry)),
                    (None, Some(reason)) => Some(unreadable_record(reason)),
                    (None, None) => None,
                };
                if let Some(bytes) = record {
                    writes.push(WriteOp::PutEntry {
                        document: key,
                        bytes,
                    });
                }
            }
            self.queue.push(writes, changes);
            self.queued_heads.insert(document, heads);
            self.unwritten.insert(document, pending_transaction);
        }
    }

    /// Documents changed on this device since the last call, for the sync engine.
    pub fn take_changed_locally(&mut self) -> Vec<DocumentId> {
        std::mem::take(&mut self.changed_locally)
            .into_iter()
            .collect()
    }

    /// Queues a small record (sync state, settings) to be written with the next transaction.
    pub fn put_meta(&mut self, key: String, bytes: Vec<u8>) {
        self.queue.push([WriteOp::PutMeta { key, bytes }], 0);
    }

    /// Deletes a small record in the same transaction as the changes made before this call (a
    /// saved form's draft goes with the note it became); `committed` runs once that transaction
    /// has completed. A failed write keeps both for the retry.
    pub fn delete_meta_when_committed(&mut self, key: String, committed: AfterCommit) {
        self.queue_dirty();
        self.queue.push([WriteOp::DeleteMeta { key }], 0);
        self.queue.after_commit(committed);
    }

    /// The next transaction to write, if one may start now.
    fn start_write(&mut self) -> Option<Vec<WriteOp>> {
        self.queue_dirty();
        let ops = self.queue.start()?;
        self.transactions_started += 1;
        Some(ops)
    }

    /// The transaction in flight committed: its documents are clean, and its callbacks due.
    fn committed(&mut self) -> Vec<AfterCommit> {
        let done = self.transactions_started;
        self.unwritten.retain(|_, transaction| *transaction > done);
        self.save_error = None;
        let callbacks = self.queue.committed();
        self.unload_idle();
        callbacks
    }

    fn write_failed(&mut self) {
        // Its writes go out again with the next transaction.
        let next = self.transactions_started + 1;
        for transaction in self.unwritten.values_mut() {
            *transaction = (*transaction).max(next);
        }
        self.queue.failed();
    }

    fn save_state(&self) -> SaveState {
        SaveState {
            unsaved_changes: self.queue.unsaved_changes(),
            error: self.save_error.clone(),
        }
    }

    /// Unloads the least recently used documents nothing needs, beyond [`MAX_IDLE_LOADED`]. The
    /// directory, held documents and documents with writes not yet committed stay.
    fn unload_idle(&mut self) {
        let mut idle: Vec<(u64, DocumentId)> = self
            .loaded
            .iter()
            .filter(|(id, _)| {
                **id != self.directory_id
                    && !self.held.contains_key(*id)
                    && !self.unwritten.contains_key(*id)
                    && !self.dirty.contains(*id)
                    && !self.unreadable_on_disk.contains(*id)
            })
            .map(|(id, loaded)| (loaded.last_used, *id))
            .collect();
        if idle.len() <= MAX_IDLE_LOADED {
            return;
        }
        idle.sort_unstable();
        let excess = idle.len() - MAX_IDLE_LOADED;
        for (_, id) in idle.into_iter().take(excess) {
            self.loaded.remove(&id);
            self.queued_heads.remove(&id);
        }
    }
}

/// Brings a stored document into memory (a no-op when it is loaded or not stored). Returns
/// whether it is in memory now.
pub async fn load(repo: &SharedRepo, document: &DocumentId) -> Result<bool, StorageError> {
    let idb = {
        let this = repo.borrow();
        if this.is_loaded(document) {
            return Ok(true);
        }
        if !this.stores(document) {
            return Ok(false);
        }
        this.idb.clone()
    };
    let chunks = idb.document(&document.to_string()).await?;
    let mut this = repo.borrow_mut();
    // Loaded meanwhile (another caller, or the sync engine created it): keep that copy.
    if !this.is_loaded(document) {
        if chunks.is_empty() {
            // Listed as stored but has no chunks (an unreadable record left behind): start over.
            let empty = this.empty_document();
            this.insert_loaded(*document, empty, 0);
        } else {
            this.insert_stored(*document, chunks);
        }
    }
    Ok(true)
}

/// Reads the team directory (or starts it from the team's genesis when this device has none
/// yet), then applies the directory edits made before, and writes them. Call once after
/// [`Repo::open`], after the list is shown.
pub async fn load_directory(repo: &SharedRepo) -> Result<(), StorageError> {
    let (idb, directory) = {
        let this = repo.borrow();
        (this.idb.clone(), this.directory_id)
    };
    let chunks = idb.document(&directory.to_string()).await?;
    {
        let mut this = repo.borrow_mut();
        if chunks.is_empty() {
            let genesis = DirectoryDoc::genesis(&this.editor, &this.team)
                .map_err(|e| StorageError::Failed(e.to_string()))?
                .into_automerge();
            this.insert_loaded(directory, genesis, 0);
            this.dirty.insert(directory);
        } else {
            this.insert_stored(directory, chunks);
        }
        for (edit, now) in this.directory_waiting.take().unwrap_or_default() {
            if let Err(error) = this.apply_directory_edit(edit, now) {
                web_sys::console::warn_1(
                    &format!("a team directory edit made before it was read failed: {error}")
                        .into(),
                );
            }
        }
    }
    flush(repo);
    Ok(())
}

/// Writes everything queued, one transaction at a time, until nothing is left.
pub fn flush(repo: &SharedRepo) {
    let first = {
        let mut this = repo.borrow_mut();
        if this.queue.writing() {
            return;
        }
        this.queue.retry();
        match this.start_write() {
            Some(ops) => ops,
            None => {
                let callbacks = this.queue.ready_callbacks();
                let state = this.save_state();
                drop(this);
                for callback in callbacks {
                    callback();
                }
                repo.borrow().emit(RepoEvent::SaveState(state));
                return;
            }
        }
    };
    let repo = repo.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let mut ops = first;
        loop {
            {
                let state = repo.borrow().save_state();
                repo.borrow().emit(RepoEvent::SaveState(state));
            }
            let idb = repo.borrow().idb.clone();
            let result = idb.write(&ops).await;
            let mut this = repo.borrow_mut();
            match result {
                Ok(()) => {
                    let callbacks = this.committed();
                    let next = this.start_write();
                    let state = this.save_state();
                    drop(this);
                    for callback in callbacks {
                        callback();
                    }
                    repo.borrow().emit(RepoEvent::SaveState(state));
                    match next {
                        Some(next) => ops = next,
                        None => break,
                    }
                }
                Err(error) => {
                    // Kept, in order, until the next change or an explicit retry.
                    this.write_failed();
                    this.save_error = Some(error);
                    let state = this.save_state();
                    drop(this);
                    repo.borrow().emit(RepoEvent::SaveState(state));
                    break;
                }
            }
        }
    });
}
