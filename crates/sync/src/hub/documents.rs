//! The documents in memory: loading them from the store, the peers' stored sync states, and
//! unloading the least recently used beyond the limit.

use std::collections::{BTreeMap, BTreeSet};

use automerge::Automerge;

use super::peer_sync::{MAX_LOST_ON_UNLOAD, PeerSync, holds_unapplied_changes};
use super::{AccessPolicy, ConnectionId, Hub, StorageFailure};
use crate::document_id::DocumentId;
use crate::protocol::StorageId;
use crate::store::DocStore;

/// A document in memory and the peers syncing it.
pub(super) struct LoadedDocument {
    pub(super) doc: Automerge,
    /// Chunks in the store for this document, to decide when to compact.
    pub(super) stored_chunks: usize,
    pub(super) peers: BTreeMap<ConnectionId, PeerSync>,
    /// The hub's frame counter when a message last used it, for eviction.
    pub(super) last_used: u64,
}

impl<S: DocStore, A: AccessPolicy<S>> Hub<S, A> {
    /// The sync state the store kept for a peer's storage; none for a peer that named none.
    pub(super) fn persisted_sync_state(
        &mut self,
        document: &DocumentId,
        storage_id: Option<&StorageId>,
    ) -> Result<Option<Vec<u8>>, S::Error> {
        match storage_id {
            Some(storage_id) => self.store.load_sync_state(document, storage_id),
            None => Ok(None),
        }
    }

    /// Builds a document from its stored chunks.
    pub(super) fn load_from_store(
        &mut self,
        document: &DocumentId,
    ) -> Result<(Automerge, usize), StorageFailure> {
        let chunks = self
            .store
            .load_chunks(document)
            .map_err(StorageFailure::store)?;
        let mut doc = Automerge::new();
        for chunk in &chunks {
            doc.load_incremental(chunk)
                .map_err(|source| StorageFailure::DocumentDoesNotLoad {
                    document: *document,
                    source: Box::new(source),
                })?;
        }
        Ok((doc, chunks.len()))
    }

    /// Unloads the least recently used documents beyond the limit. Only after a commit: what
    /// they hold is in the store, including every durable peer's sync state.
    pub(super) fn evict_least_recently_used(&mut self, keep: &BTreeSet<DocumentId>) {
        let limit = self.config.max_loaded_documents.max(1);
        if self.documents.len() <= limit {
            return;
        }
        let mut by_age: Vec<(u64, DocumentId)> = self
            .documents
            .iter()
            .filter(|(id, _)| !keep.contains(*id))
            .map(|(id, loaded)| (loaded.last_used, *id))
            .collect();
        by_age.sort_unstable();
        let mut excess = self.documents.len() - limit;
        for (_, id) in by_age {
            if excess == 0 {
                break;
            }
            let lost = self
                .documents
                .get(&id)
                .is_some_and(|loaded| holds_unapplied_changes(&loaded.doc));
            if lost {
                if self.lost_on_unload.len() >= MAX_LOST_ON_UNLOAD {
                    continue;
                }
                self.lost_on_unload.insert(id);
            }
            self.documents.remove(&id);
            self.counters.documents_evicted += 1;
            excess -= 1;
        }
    }
}
