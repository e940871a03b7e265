//! Where the server engine keeps documents and sync states.
//!
//! The engine calls a [`DocStore`] synchronously from one thread. Writes made
//! between two [`DocStore::commit`] calls form one batch: a backend opens a
//! transaction on the first write and makes it durable in `commit`. Reads see
//! the batch's own uncommitted writes, as a database transaction does.
//!
//! Documents are stored as a list of chunks in append order: at most one
//! compacted snapshot (from `Automerge::save`) followed by incremental change
//! chunks (from `Automerge::save_after`). Concatenating them and loading with
//! `Automerge::load_incremental` rebuilds the document.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::document_id::DocumentId;
use crate::protocol::StorageId;

/// Storage for the server engine. See the module docs for the batch contract.
pub trait DocStore {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The document's chunks in append order; empty when the document is unknown.
    fn load_chunks(&mut self, document: &DocumentId) -> Result<Vec<Vec<u8>>, Self::Error>;
    /// Appends one chunk of incremental changes.
    fn append_changes(&mut self, document: &DocumentId, changes: &[u8]) -> Result<(), Self::Error>;
    /// Replaces every chunk of the document with one snapshot.
    fn replace_with_snapshot(
        &mut self,
        document: &DocumentId,
        snapshot: &[u8],
    ) -> Result<(), Self::Error>;
    /// The encoded `automerge::sync::State` kept for a peer's storage.
    fn load_sync_state(
        &mut self,
        document: &DocumentId,
        peer: &StorageId,
    ) -> Result<Option<Vec<u8>>, Self::Error>;
    fn save_sync_state(
        &mut self,
        document: &DocumentId,
        peer: &StorageId,
        state: &[u8],
    ) -> Result<(), Self::Error>;
    /// Every stored document id, for tools and metrics.
    fn list_documents(&mut self) -> Result<Vec<DocumentId>, Self::Error>;
    /// Makes the batch durable. Only after this returns `Ok` may the engine
    /// tell a peer that its changes are stored.
    fn commit(&mut self) -> Result<(), Self::Error>;
    /// Throws the batch away.
    fn rollback(&mut self);
    /// Marks where one frame's writes begin inside the batch, so [`DocStore::undo_frame`] can
    /// take them back alone. Called before every frame; cheap when the frame writes nothing.
    fn begin_frame(&mut self);
    /// Takes back the writes made since [`DocStore::begin_frame`], keeping the batch's earlier
    /// writes. The hub calls it when handling a frame panicked half-way.
    fn undo_frame(&mut self) -> Result<(), Self::Error>;
}

/// What [`MemoryStore`] returns when a test asks it to fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryStoreError {
    #[error("memory store was told to fail this commit")]
    InjectedCommitFailure,
    #[error("memory store was told to fail this read")]
    InjectedReadFailure,
}

#[derive(Debug, Clone, Default)]
struct Contents {
    documents: BTreeMap<DocumentId, Vec<Vec<u8>>>,
    sync_states: HashMap<(DocumentId, StorageId), Vec<u8>>,
}

#[derive(Debug, Default)]
struct Inner {
    committed: Contents,
    /// `Some` while a batch is open: the committed contents plus the batch's writes.
    working: Option<Contents>,
    commits: u64,
    fail_next_commit: bool,
    /// Fail the read this many reads from now (1 = the next one).
    fail_read_in: Option<u32>,
    frame: FrameMark,
}

/// Where the current frame's writes begin.
#[derive(Debug, Default)]
enum FrameMark {
    #[default]
    None,
    /// A frame began and has written nothing yet.
    Begun,
    /// The batch's contents before the frame's first write (`None`: no batch was open).
    Before(Option<Contents>),
}

impl Inner {
    fn check_read(&mut self) -> Result<(), MemoryStoreError> {
        match self.fail_read_in {
            Some(1) => {
                self.fail_read_in = None;
                Err(MemoryStoreError::InjectedReadFailure)
            }
            Some(n) => {
                self.fail_read_in = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn view(&self) -> &Contents {
        self.working.as_ref().unwrap_or(&self.committed)
    }
    fn write(&mut self) -> &mut Contents {
        if matches!(self.frame, FrameMark::Begun) {
            self.frame = FrameMark::Before(self.working.clone());
        }
        let committed = &self.committed;
        self.working.get_or_insert_with(|| committed.clone())
    }
}

/// An in-memory [`DocStore`] for tests and simulations. Clones share contents,
/// so a test can keep a handle and look at what was committed.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic in another test thread must not hide this store's contents.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The document's committed chunks (what survives a crash).
    pub fn committed_chunks(&self, document: &DocumentId) -> Vec<Vec<u8>> {
        self.lock()
            .committed
            .documents
            .get(document)
            .cloned()
            .unwrap_or_default()
    }

    /// The committed sync state for a peer's storage.
    pub fn committed_sync_state(&self, document: &DocumentId, peer: &StorageId) -> Option<Vec<u8>> {
        self.lock()
            .committed
            .sync_states
            .get(&(*document, peer.clone()))
            .cloned()
    }

    /// How many batches were committed.
    pub fn commit_count(&self) -> u64 {
        self.lock().commits
    }

    /// Makes the next [`DocStore::commit`] fail, to test what the engine does then.
    pub fn fail_next_commit(&self) {
        self.lock().fail_next_commit = true;
    }

    /// Makes the `n`th read from now fail (1 = the next read).
    pub fn fail_read(&self, n: u32) {
        self.lock().fail_read_in = Some(n.max(1));
    }

    /// Whether a batch has uncommitted writes.
    pub fn has_uncommitted_writes(&self) -> bool {
        self.lock().working.is_some()
    }
}

impl DocStore for MemoryStore {
    type Error = MemoryStoreError;

    fn load_chunks(&mut self, document: &DocumentId) -> Result<Vec<Vec<u8>>, Self::Error> {
        let mut inner = self.lock();
        inner.check_read()?;
        Ok(inner
            .view()
            .documents
            .get(document)
            .cloned()
            .unwrap_or_default())
    }

    fn append_changes(&mut self, document: &DocumentId, changes: &[u8]) -> Result<(), Self::Error> {
        self.lock()
            .write()
            .documents
            .entry(*document)
            .or_default()
            .push(changes.to_vec());
        Ok(())
    }

    fn replace_with_snapshot(
        &mut self,
        document: &DocumentId,
        snapshot: &[u8],
    ) -> Result<(), Self::Error> {
        self.lock()
            .write()
            .documents
            .insert(*document, vec![snapshot.to_vec()]);
        Ok(())
    }

    fn load_sync_state(
        &mut self,
        document: &DocumentId,
        peer: &StorageId,
    ) -> Result<Option<Vec<u8>>, Self::Error> {
        let mut inner = self.lock();
        inner.check_read()?;
        Ok(inner
            .view()
            .sync_states
            .get(&(*document, peer.clone()))
            .cloned())
    }

    fn save_sync_state(
        &mut self,
        document: &DocumentId,
        peer: &StorageId,
        state: &[u8],
    ) -> Result<(), Self::Error> {
        self.lock()
            .write()
            .sync_states
            .insert((*document, peer.clone()), state.to_vec());
        Ok(())
    }

    fn list_documents(&mut self) -> Result<Vec<DocumentId>, Self::Error> {
        Ok(self.lock().view().documents.keys().copied().collect())
    }

    fn commit(&mut self) -> Result<(), Self::Error> {
        let mut inner = self.lock();
        if std::mem::take(&mut inner.fail_next_commit) {
            inner.working = None;
            inner.frame = FrameMark::None;
            return Err(MemoryStoreError::InjectedCommitFailure);
        }
        inner.frame = FrameMark::None;
        if let Some(working) = inner.working.take() {
            inner.committed = working;
            inner.commits += 1;
        }
        Ok(())
    }

    fn rollback(&mut self) {
        let mut inner = self.lock();
        inner.working = None;
        inner.frame = FrameMark::None;
    }

    fn begin_frame(&mut self) {
        self.lock().frame = FrameMark::Begun;
    }

    fn undo_frame(&mut self) -> Result<(), Self::Error> {
        let mut inner = self.lock();
        if let FrameMark::Before(before) = std::mem::take(&mut inner.frame) {
            inner.working = before;
        }
        Ok(())
    }
}
