//! `request` and `sync`: a peer's automerge sync message about one document, the changes it
//! brings stored, the reply to it, and the pushes to the document's other peers.

use std::collections::BTreeMap;

use automerge::sync::SyncDoc;
use automerge::{Automerge, sync};

use super::documents::LoadedDocument;
use super::peer_sync::{PeerSync, resumed_sync_state, stored_sync_state};
use super::{Access, AccessPolicy, ConnectionId, Hub, ProtocolViolation, StorageFailure};
use crate::document_id::DocumentId;
use crate::guard;
use crate::protocol::{DocUnavailable, DocumentMessage, Message, PeerId, StorageId};
use crate::store::DocStore;

/// Handling a message ended early; whatever it needed to say (a refusal, `doc-unavailable`,
/// the batch's storage failure) has been said.
pub(super) struct Handled;

type Step<T> = Result<T, Handled>;

impl<S: DocStore, A: AccessPolicy<S>> Hub<S, A> {
    pub(super) fn handle_document_message(
        &mut self,
        connection: ConnectionId,
        message: DocumentMessage,
        is_request: bool,
    ) {
        let _ = self.sync_document(connection, message, is_request);
    }

    /// The steps of a `request` or `sync`, each of which may end it.
    fn sync_document(
        &mut self,
        connection: ConnectionId,
        message: DocumentMessage,
        is_request: bool,
    ) -> Step<()> {
        let DocumentMessage {
            sender_id: peer_id,
            document_id,
            data,
            ..
        } = message;
        self.frame_document = Some(document_id);
        let sync_message = self.admit(connection, &data)?;
        self.authorize_document(connection, &peer_id, document_id, is_request)?;
        self.batch.touched_connections.insert(connection);
        let reloaded_with_loss =
            self.load_document(connection, &peer_id, document_id, is_request)?;
        // Touched from here on: if the batch fails to store, the document is
        // unloaded, so none of it can stay in memory without its peers.
        self.batch.touched_documents.insert(document_id);
        self.open_document(
            connection,
            &peer_id,
            document_id,
            is_request,
            reloaded_with_loss,
        )?;
        let changed = self.receive(connection, document_id, sync_message)?;
        let mut replies = self.reply(connection, document_id)?;
        if changed {
            self.push_to_others(connection, document_id, &mut replies)?;
        }
        for (target_connection, reply) in replies {
            let Some(target) = self.joined_peer_id(target_connection) else {
                continue;
            };
            let frame = Message::Sync(DocumentMessage {
                sender_id: self.config.server_peer_id.clone(),
                target_id: target,
                document_id,
                data: reply.encode(),
            });
            self.send(target_connection, &frame);
        }
        Ok(())
    }

    /// Another writer of the same store (another server instance on one database) committed
    /// changes to `document_id`. If the document is in memory, what the store holds now is
    /// merged into it; if it is not but a connection here has it open (it was unloaded), it is
    /// loaded now, since nothing else would bring the news to that peer. Each of its peers is
    /// then sent what it lacks, asked again first whether it may still see the document. A
    /// document nobody here has open is read from the store when it is next needed anyway.
    /// Part of the current batch: [`Hub::finish_batch`] releases the pushes. Returns whether
    /// the document is in memory now.
    pub fn stored_elsewhere(&mut self, document_id: DocumentId) -> bool {
        if !self.documents.contains_key(&document_id) {
            let open_here = self
                .connections
                .values()
                .any(|state| state.open_documents.contains(&document_id));
            if !open_here {
                return false;
            }
            let loaded = self
                .load_from_store(&document_id)
                .and_then(|(doc, chunks)| {
                    self.insert_loaded(document_id, doc, chunks, None)
                        .map_err(StorageFailure::store)
                });
            self.batch.touched_documents.insert(document_id);
            if let Err(failure) = loaded {
                self.batch.storage_error.get_or_insert(failure);
                return true;
            }
            self.counters.documents_loaded_for_news += 1;
        } else if !self.merge_from_store(document_id) {
            return true;
        }
        self.push_stored_to_peers(document_id);
        true
    }

    /// Takes in what the store holds now for a document in memory; false when that brought
    /// nothing new (or failed, which fails the batch).
    fn merge_from_store(&mut self, document_id: DocumentId) -> bool {
        let Some(loaded) = self.documents.get(&document_id) else {
            return false;
        };
        let before = loaded.doc.get_heads();
        let chunks = match self.store.load_chunks(&document_id) {
            Ok(chunks) => chunks,
            Err(error) => {
                self.batch
                    .storage_error
                    .get_or_insert(StorageFailure::store(error));
                self.batch.touched_documents.insert(document_id);
                return false;
            }
        };
        let Some(loaded) = self.documents.get_mut(&document_id) else {
            return false;
        };
        for chunk in &chunks {
            if let Err(source) = loaded.doc.load_incremental(chunk) {
                self.batch
                    .storage_error
                    .get_or_insert(StorageFailure::DocumentDoesNotLoad {
                        document: document_id,
                        source: Box::new(source),
                    });
                self.batch.touched_documents.insert(document_id);
                return false;
            }
        }
        loaded.stored_chunks = chunks.len();
        if loaded.doc.get_heads() == before {
            return false;
        }
        self.counters.documents_merged_from_store += 1;
        true
    }

    /// Sends each peer of a document in memory what it lacks of it, if it may still see it.
    fn push_stored_to_peers(&mut self, document_id: DocumentId) {
        let Some(loaded) = self.documents.get(&document_id) else {
            return;
        };
        let peers: Vec<ConnectionId> = loaded.peers.keys().copied().collect();
        for peer in peers {
            match self.may_receive(peer, &document_id) {
                Ok(true) => {}
                Ok(false) => {
                    self.counters.pushes_denied += 1;
                    self.close_document_for(peer, &document_id);
                    continue;
                }
                Err(error) => {
                    self.batch
                        .storage_error
                        .get_or_insert(StorageFailure::store(error));
                    self.batch.touched_documents.insert(document_id);
                    return;
                }
            }
            let Some(target) = self.joined_peer_id(peer) else {
                continue;
            };
            let Some(loaded) = self.documents.get_mut(&document_id) else {
                return;
            };
            let Some(peer_sync) = loaded.peers.get_mut(&peer) else {
                continue;
            };
            if let Some(push) = peer_sync.generate(&mut loaded.doc) {
                let frame = Message::Sync(DocumentMessage {
                    sender_id: self.config.server_peer_id.clone(),
                    target_id: target,
                    document_id,
                    data: push.encode(),
                });
                self.send(peer, &frame);
            }
        }
    }

    /// The documents in memory or open on a connection: those to pass to
    /// [`Hub::stored_elsewhere`] after missing another writer's news.
    pub fn documents_in_use(&self) -> Vec<DocumentId> {
        let mut in_use: std::collections::BTreeSet<DocumentId> =
            self.documents.keys().copied().collect();
        for state in self.connections.values() {
            in_use.extend(state.open_documents.iter().copied());
        }
        in_use.into_iter().collect()
    }

    /// The batch cannot be stored; the connection goes with it.
    fn failed(&mut self, connection: ConnectionId, failure: StorageFailure) -> Handled {
        self.storage_failed(connection, failure);
        Handled
    }

    /// The guard first, then automerge's decoder.
    fn admit(&mut self, connection: ConnectionId, data: &[u8]) -> Step<sync::Message> {
        if let Err(refusal) = guard::check_sync_message(data, &self.config.sync_limits) {
            self.counters.sync_messages_refused += 1;
            self.refuse(connection, None, refusal.into());
            return Err(Handled);
        }
        sync::Message::decode(data).map_err(|_| {
            self.refuse(connection, None, ProtocolViolation::InvalidSyncMessage);
            Handled
        })
    }

    /// Asked after decoding: a message that is not even a sync message must not get as far as
    /// a policy that records something (a claim) for it.
    fn authorize_document(
        &mut self,
        connection: ConnectionId,
        peer_id: &PeerId,
        document_id: DocumentId,
        is_request: bool,
    ) -> Step<()> {
        let access = if is_request {
            Access::Request
        } else {
            Access::Sync
        };
        match self
            .access
            .authorize(&mut self.store, connection, peer_id, &document_id, access)
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.counters.access_denied += 1;
                self.send_unavailable(connection, peer_id.clone(), document_id);
                Err(Handled)
            }
            Err(error) => Err(self.failed(connection, StorageFailure::store(error))),
        }
    }

    /// Loads the document if it is not in memory. Peers that opened it before it was unloaded
    /// get their stored sync state back, so changes from this message still reach them.
    /// Returns whether the unloaded copy lost changes (its peers are then reset).
    fn load_document(
        &mut self,
        connection: ConnectionId,
        peer_id: &PeerId,
        document_id: DocumentId,
        is_request: bool,
    ) -> Step<bool> {
        if self.documents.contains_key(&document_id) {
            if let Some(loaded) = self.documents.get_mut(&document_id) {
                loaded.last_used = self.clock;
            }
            return Ok(false);
        }
        let (doc, stored_chunks) = self
            .load_from_store(&document_id)
            .map_err(|failure| self.failed(connection, failure))?;
        if stored_chunks == 0 && is_request {
            self.send_unavailable(connection, peer_id.clone(), document_id);
            return Err(Handled);
        }
        self.insert_loaded(document_id, doc, stored_chunks, Some(connection))
            .map_err(|error| self.failed(connection, StorageFailure::store(error)))
    }

    /// Puts a document just read from the store in memory, with the peers that opened it
    /// before it was unloaded (all but `except`, which opens it itself) and the sync states the
    /// store kept for them. Returns whether the unloaded copy lost changes (its peers are then
    /// reset).
    fn insert_loaded(
        &mut self,
        document_id: DocumentId,
        doc: Automerge,
        stored_chunks: usize,
        except: Option<ConnectionId>,
    ) -> Result<bool, S::Error> {
        let reopened: Vec<(
            ConnectionId,
            Option<StorageId>,
            Option<Vec<sync::Capability>>,
        )> = self
            .connections
            .iter()
            .filter(|(id, state)| {
                Some(**id) != except && state.open_documents.contains(&document_id)
            })
            .map(|(id, state)| {
                (
                    *id,
                    state.joined.as_ref().and_then(|j| j.storage_id.clone()),
                    state.sync_capabilities.clone(),
                )
            })
            .collect();
        let reloaded_with_loss = self.lost_on_unload.remove(&document_id);
        let mut peers = BTreeMap::new();
        for (other, storage_id, capabilities) in reopened {
            let persisted = self.persisted_sync_state(&document_id, storage_id.as_ref())?;
            let state = resumed_sync_state(persisted.as_deref(), capabilities, reloaded_with_loss);
            peers.insert(other, PeerSync::new(state, persisted));
        }
        self.documents.insert(
            document_id,
            LoadedDocument {
                doc,
                stored_chunks,
                peers,
                last_used: self.clock,
            },
        );
        Ok(reloaded_with_loss)
    }

    /// Makes the connection one of the document's peers, with the sync state the store kept
    /// for it, unless it is one already.
    fn open_document(
        &mut self,
        connection: ConnectionId,
        peer_id: &PeerId,
        document_id: DocumentId,
        is_request: bool,
        reloaded_with_loss: bool,
    ) -> Step<()> {
        let Some(loaded) = self.documents.get(&document_id) else {
            return Err(Handled);
        };
        if loaded.peers.contains_key(&connection) {
            return Ok(());
        }
        if is_request && loaded.doc.get_heads().is_empty() {
            // Created by another peer's `sync` but still empty: nothing to give.
            self.send_unavailable(connection, peer_id.clone(), document_id);
            return Err(Handled);
        }
        let connection_state = &self.connections[&connection];
        let limit = self.config.max_open_documents_per_connection;
        if !connection_state.open_documents.contains(&document_id)
            && connection_state.open_documents.len() >= limit
        {
            self.counters.open_document_limit_hits += 1;
            self.refuse(
                connection,
                None,
                ProtocolViolation::TooManyOpenDocuments { limit },
            );
            return Err(Handled);
        }
        let storage_id = connection_state
            .joined
            .as_ref()
            .and_then(|j| j.storage_id.clone());
        let persisted = self
            .persisted_sync_state(&document_id, storage_id.as_ref())
            .map_err(|error| self.failed(connection, StorageFailure::store(error)))?;
        let connection_state = &self.connections[&connection];
        let state = if connection_state.open_documents.contains(&document_id) {
            // Synced on this connection before the document was unloaded.
            resumed_sync_state(
                persisted.as_deref(),
                connection_state.sync_capabilities.clone(),
                reloaded_with_loss,
            )
        } else {
            stored_sync_state(persisted.as_deref())
        };
        if let Some(loaded) = self.documents.get_mut(&document_id) {
            loaded
                .peers
                .insert(connection, PeerSync::new(state, persisted));
        }
        if let Some(state) = self.connections.get_mut(&connection) {
            state.open_documents.insert(document_id);
        }
        Ok(())
    }

    /// Applies the message and stores what it changed (compacting when the document has
    /// gathered enough chunks). Returns whether the document changed.
    fn receive(
        &mut self,
        connection: ConnectionId,
        document_id: DocumentId,
        sync_message: sync::Message,
    ) -> Step<bool> {
        let Some(loaded) = self.documents.get_mut(&document_id) else {
            return Err(Handled);
        };
        let Some(peer) = loaded.peers.get_mut(&connection) else {
            return Err(Handled);
        };
        let before = loaded.doc.get_heads();
        // What the guard cannot see (an operation on an actor the document never met, found
        // by the fuzzer) automerge may only notice by panicking halfway through applying it:
        // that is bad data too, and the document is rebuilt from the store either way.
        let doc = &mut loaded.doc;
        let applied = guard::trial(|| doc.receive_sync_message(&mut peer.state, sync_message));
        if !matches!(applied, Some(Ok(()))) {
            if applied.is_none() {
                self.counters.automerge_panics_refused += 1;
            }
            return Err(self.refuse_bad_data(connection, document_id));
        }
        if peer.state.their_capabilities.is_some()
            && let Some(state) = self.connections.get_mut(&connection)
            && state.sync_capabilities != peer.state.their_capabilities
        {
            state
                .sync_capabilities
                .clone_from(&peer.state.their_capabilities);
        }
        if loaded.doc.get_heads() == before {
            return Ok(false);
        }
        let Some(changes) = guard::faithful_changes_since(&loaded.doc, &before) else {
            return Err(self.refuse_bad_data(connection, document_id));
        };
        if let Err(error) = self.store.append_changes(&document_id, &changes) {
            return Err(self.failed(connection, StorageFailure::store(error)));
        }
        self.counters.change_chunks_stored += 1;
        loaded.stored_chunks += 1;
        if loaded.stored_chunks >= self.config.compaction_threshold {
            let snapshot = loaded.doc.save();
            if let Err(error) = self.store.replace_with_snapshot(&document_id, &snapshot) {
                return Err(self.failed(connection, StorageFailure::store(error)));
            }
            self.counters.compactions += 1;
            loaded.stored_chunks = 1;
        }
        Ok(true)
    }

    /// Refuses a message automerge rejected, or could not apply faithfully, as invalid data:
    /// the document goes back to what the store holds, and the sender is closed.
    fn refuse_bad_data(&mut self, connection: ConnectionId, document_id: DocumentId) -> Handled {
        self.rebuild_after_bad_data(connection, document_id);
        self.refuse(connection, None, ProtocolViolation::InvalidAutomergeData);
        Handled
    }

    /// The document in memory may now hold part of the bad data: rebuild it from the store,
    /// which has only what earlier messages brought.
    fn rebuild_after_bad_data(&mut self, connection: ConnectionId, document_id: DocumentId) {
        match self.load_from_store(&document_id) {
            Ok((doc, stored_chunks)) => {
                if let Some(loaded) = self.documents.get_mut(&document_id) {
                    loaded.doc = doc;
                    loaded.stored_chunks = stored_chunks;
                    // Changes other peers sent that were waiting for a dependency went
                    // with the old document: make them send again.
                    for other in loaded.peers.values_mut() {
                        other.state.needs_reset = true;
                    }
                }
            }
            Err(failure) => self.storage_failed(connection, failure),
        }
    }

    /// The reply to the sender, and its sync state saved for its next connection.
    fn reply(
        &mut self,
        connection: ConnectionId,
        document_id: DocumentId,
    ) -> Step<Vec<(ConnectionId, sync::Message)>> {
        let storage_id = self.connections[&connection]
            .joined
            .as_ref()
            .and_then(|j| j.storage_id.clone());
        let Some(loaded) = self.documents.get_mut(&document_id) else {
            return Err(Handled);
        };
        let Some(peer) = loaded.peers.get_mut(&connection) else {
            return Err(Handled);
        };
        let mut replies = Vec::new();
        if let Some(reply) = peer.generate(&mut loaded.doc) {
            replies.push((connection, reply));
        }
        if let Some(storage_id) = storage_id {
            let encoded = peer.state.encode();
            if peer.persisted.as_ref() != Some(&encoded) {
                if let Err(error) = self
                    .store
                    .save_sync_state(&document_id, &storage_id, &encoded)
                {
                    return Err(self.failed(connection, StorageFailure::store(error)));
                }
                peer.persisted = Some(encoded);
            }
        }
        Ok(replies)
    }

    /// What the change means for the document's other peers, each asked again whether it
    /// may still see the document.
    fn push_to_others(
        &mut self,
        connection: ConnectionId,
        document_id: DocumentId,
        replies: &mut Vec<(ConnectionId, sync::Message)>,
    ) -> Step<()> {
        let others: Vec<ConnectionId> = self
            .documents
            .get(&document_id)
            .map(|loaded| {
                loaded
                    .peers
                    .keys()
                    .copied()
                    .filter(|&other| other != connection)
                    .collect()
            })
            .unwrap_or_default();
        for other in others {
            match self.may_receive(other, &document_id) {
                Ok(true) => {}
                Ok(false) => {
                    // The user lost the document's team since opening it: take the
                    // connection off the document, so nothing more of it goes there.
                    self.counters.pushes_denied += 1;
                    self.close_document_for(other, &document_id);
                    continue;
                }
                Err(error) => return Err(self.failed(connection, StorageFailure::store(error))),
            }
            let Some(loaded) = self.documents.get_mut(&document_id) else {
                return Err(Handled);
            };
            let Some(other_sync) = loaded.peers.get_mut(&other) else {
                continue;
            };
            if let Some(push) = other_sync.generate(&mut loaded.doc) {
                replies.push((other, push));
            }
        }
        Ok(())
    }

    /// Whether changes to `document` may be pushed to `connection` now.
    pub(super) fn may_receive(
        &mut self,
        connection: ConnectionId,
        document: &DocumentId,
    ) -> Result<bool, S::Error> {
        let Some(peer) = self.joined_peer_id(connection) else {
            return Ok(false);
        };
        self.access.authorize(
            &mut self.store,
            connection,
            &peer,
            document,
            Access::Receive,
        )
    }

    /// Takes one document off a connection, as if it had never opened it.
    pub(super) fn close_document_for(&mut self, connection: ConnectionId, document: &DocumentId) {
        if let Some(state) = self.connections.get_mut(&connection) {
            state.open_documents.remove(document);
        }
        if let Some(loaded) = self.documents.get_mut(document) {
            loaded.peers.remove(&connection);
        }
    }

    pub(super) fn send_unavailable(
        &mut self,
        connection: ConnectionId,
        target: PeerId,
        document_id: DocumentId,
    ) {
        let message = Message::DocUnavailable(DocUnavailable {
            sender_id: self.config.server_peer_id.clone(),
            target_id: target,
            document_id,
        });
        self.send(connection, &message);
    }
}
