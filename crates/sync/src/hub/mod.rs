//! The server engine ("hub"), sans-IO: connections and loaded documents in,
//! frames and closes out.
//!
//! Drive it like this, one batch at a time, from one thread:
//!
//! 1. Feed events: [`Hub::handle_connected`], [`Hub::handle_frame`] (as many
//!    frames as are waiting), [`Hub::handle_disconnected`].
//! 2. Call [`Hub::finish_batch`]. It commits the batch's writes to the
//!    [`DocStore`] and only then returns the [`Effect`]s, which the shell
//!    carries out in order.
//!
//! **Invariant (durability):** a `sync` reply whose heads cover a peer's change
//! leaves the hub only after the store has committed that change. Effects are
//! held back until [`Hub::finish_batch`] has committed; if the commit fails,
//! no `Send` of the batch escapes, the batch's documents are unloaded (memory
//! may hold changes the store does not) and the connections involved are closed,
//! so their clients reconnect and sync again from what is stored.
//!
//! Bad input closes only the connection that sent it: the hub answers with an
//! `error` message and an [`Effect::Close`], and stores nothing from that frame.
//! Unlike the JavaScript reference server, a message before `join` is such bad
//! input (the reference server silently ignores it). Every automerge sync message
//! passes [`crate::guard`] before automerge decodes it, so what automerge would trust
//! (bloom filters, counts, chunk types, inflated sizes, run lengths) is bounded first.
//!
//! **Supervision:** handling one frame runs under `catch_unwind`. A panic (a bug in
//! the hub or in automerge that the guard did not foresee) costs only that frame: its
//! writes are taken back ([`DocStore::undo_frame`]), its replies dropped, the
//! document it touched unloaded (rebuilt from the store when next needed, its other
//! peers resumed as after an eviction), and the connection that sent it closed with
//! [`CloseReason::InternalError`]. [`HubCounters::panics_caught`] counts it and
//! [`Hub::last_panic`] says where. Every other connection carries on.
//!
//! One concern per module: [`effect`] (what the shell is told), [`policy`] (who may do what),
//! [`config`] (settings and counters), `peer_sync` (a peer's sync state and the reset
//! workarounds), `documents` (the documents in memory), `join`, `document_sync` (`request` and
//! `sync`) and `ephemeral`. This file holds the hub itself: frames in, batches committed,
//! supervision.

mod config;
mod document_sync;
mod documents;
mod effect;
mod ephemeral;
mod join;
mod peer_sync;
mod policy;

use std::any::Any;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::panic::{self, AssertUnwindSafe};

use automerge::ChangeHash;
use automerge::sync;

pub use config::{
    DEFAULT_COMPACTION_THRESHOLD, DEFAULT_EPHEMERAL_PER_SECOND, DEFAULT_MAX_EPHEMERAL_BYTES,
    DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_LOADED_DOCUMENTS,
    DEFAULT_MAX_OPEN_DOCUMENTS_PER_CONNECTION, HubConfig, HubCounters,
};
pub use effect::{CloseReason, ConnectionId, Effect, ProtocolViolation, StorageFailure};
pub use policy::{Access, AccessPolicy, AllowAll};

use crate::document_id::DocumentId;
use crate::protocol::{ErrorMessage, Message, PeerId, StorageId};
use crate::store::DocStore;
use documents::LoadedDocument;

struct JoinedPeer {
    peer_id: PeerId,
    /// Set only for durable (non-ephemeral) peers that sent a storage id: the
    /// key under which their sync state is persisted.
    storage_id: Option<StorageId>,
}

#[derive(Default)]
struct Connection {
    joined: Option<JoinedPeer>,
    open_documents: BTreeSet<DocumentId>,
    /// What the peer's automerge advertised in its sync messages (e.g. that it understands
    /// `SYNC_RESET`). The same for every document; kept here so it outlives an unloaded one.
    sync_capabilities: Option<Vec<sync::Capability>>,
    /// Highest `count` seen per ephemeral session, and when.
    ephemeral_sessions: HashMap<String, (u64, u64)>,
    /// Ephemeral messages this connection may still send now, in thousandths, and when the
    /// allowance was last topped up.
    ephemeral_allowance: Option<(u64, u64)>,
}

#[derive(Default)]
struct Batch {
    touched_documents: BTreeSet<DocumentId>,
    touched_connections: BTreeSet<ConnectionId>,
    storage_error: Option<StorageFailure>,
}

/// The server engine. See the module docs.
pub struct Hub<S: DocStore, A: AccessPolicy<S> = AllowAll> {
    store: S,
    config: HubConfig,
    access: A,
    connections: HashMap<ConnectionId, Connection>,
    peers: HashMap<PeerId, ConnectionId>,
    documents: HashMap<DocumentId, LoadedDocument>,
    pending: Vec<Effect>,
    batch: Batch,
    counters: HubCounters,
    last_storage_error: Option<StorageFailure>,
    /// Where the last caught panic happened, for logs.
    last_panic: Option<String>,
    /// Documents unloaded with unapplied changes: their peers are reset when they are loaded
    /// again ([`resumed_sync_state`]).
    lost_on_unload: HashSet<DocumentId>,
    /// The document the frame being handled works on, so a panic can unload it.
    frame_document: Option<DocumentId>,
    /// Counts frames, to order documents by last use.
    clock: u64,
}

impl<S: DocStore> Hub<S, AllowAll> {
    pub fn new(store: S, config: HubConfig) -> Self {
        Self {
            store,
            config,
            access: AllowAll,
            connections: HashMap::new(),
            peers: HashMap::new(),
            documents: HashMap::new(),
            pending: Vec::new(),
            batch: Batch::default(),
            counters: HubCounters::default(),
            last_storage_error: None,
            last_panic: None,
            lost_on_unload: HashSet::new(),
            frame_document: None,
            clock: 0,
        }
    }
}

impl<S: DocStore, A: AccessPolicy<S>> Hub<S, A> {
    /// Replaces the access policy (the default allows everything). Call
    /// before the first connection.
    pub fn with_access_policy<B: AccessPolicy<S>>(self, policy: B) -> Hub<S, B> {
        Hub {
            store: self.store,
            config: self.config,
            access: policy,
            connections: self.connections,
            peers: self.peers,
            documents: self.documents,
            pending: self.pending,
            batch: self.batch,
            counters: self.counters,
            last_storage_error: self.last_storage_error,
            last_panic: self.last_panic,
            lost_on_unload: self.lost_on_unload,
            frame_document: self.frame_document,
            clock: self.clock,
        }
    }

    pub fn access(&self) -> &A {
        &self.access
    }

    pub fn access_mut(&mut self) -> &mut A {
        &mut self.access
    }

    /// The policy and the store together, for policies that consult the
    /// store outside a batch.
    pub fn access_and_store_mut(&mut self) -> (&mut A, &mut S) {
        (&mut self.access, &mut self.store)
    }

    /// Closes a connection the shell no longer lets in (see
    /// [`CloseReason::AccessRevoked`]). Its documents stay as stored.
    pub fn revoke(&mut self, connection: ConnectionId) {
        if self.connections.contains_key(&connection) {
            self.detach(connection);
            self.pending.push(Effect::Close {
                connection,
                reason: CloseReason::AccessRevoked,
            });
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub fn counters(&self) -> &HubCounters {
        &self.counters
    }

    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    pub fn loaded_document_count(&self) -> usize {
        self.documents.len()
    }

    pub fn is_loaded(&self, document: &DocumentId) -> bool {
        self.documents.contains_key(document)
    }

    /// The heads of a loaded document.
    pub fn loaded_heads(&self, document: &DocumentId) -> Option<Vec<ChangeHash>> {
        self.documents
            .get(document)
            .map(|loaded| loaded.doc.get_heads())
    }

    /// The text of the last storage error, for logs.
    pub fn last_storage_error(&self) -> Option<&StorageFailure> {
        self.last_storage_error.as_ref()
    }

    /// What the last caught panic said and where, for logs.
    pub fn last_panic(&self) -> Option<&str> {
        self.last_panic.as_deref()
    }

    /// A socket was accepted.
    pub fn handle_connected(&mut self, connection: ConnectionId) {
        self.connections.entry(connection).or_default();
    }

    /// A socket is gone. Unknown or already closed connections are ignored.
    pub fn handle_disconnected(&mut self, connection: ConnectionId) {
        self.detach(connection);
    }

    /// One binary frame from a socket. `now_ms` is the shell's clock in
    /// milliseconds; it only paces and ages out ephemeral-message bookkeeping.
    ///
    /// A panic while handling it is caught here and costs only this frame and this
    /// connection (see the module docs, "Supervision").
    pub fn handle_frame(&mut self, connection: ConnectionId, frame: &[u8], now_ms: u64) {
        let pending_before = self.pending.len();
        self.frame_document = None;
        self.store.begin_frame();
        let handled = panic::catch_unwind(AssertUnwindSafe(|| {
            self.handle_frame_unguarded(connection, frame, now_ms)
        }));
        if let Err(payload) = handled {
            self.recover_from_panic(connection, pending_before, payload.as_ref());
        }
    }

    /// Puts the hub back as it was before the frame that panicked, less that frame's
    /// connection.
    fn recover_from_panic(
        &mut self,
        connection: ConnectionId,
        pending_before: usize,
        payload: &(dyn Any + Send),
    ) {
        self.counters.panics_caught += 1;
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        self.last_panic = Some(message);
        self.pending.truncate(pending_before);
        if let Err(error) = self.store.undo_frame() {
            // The frame's writes could not be taken back alone: the whole batch goes.
            self.storage_failed(connection, StorageFailure::store(error));
        }
        self.access.batch_rolled_back();
        if let Some(document) = self.frame_document.take()
            && self.documents.remove(&document).is_some()
        {
            // It may hold part of what the frame did. Its peers keep it open and get their
            // stored sync state back when it is loaded again, reset in case it held changes
            // that were not stored.
            self.lost_on_unload.insert(document);
        }
        if self.connections.contains_key(&connection) {
            self.detach(connection);
            self.pending.push(Effect::Close {
                connection,
                reason: CloseReason::InternalError,
            });
        }
    }

    fn handle_frame_unguarded(&mut self, connection: ConnectionId, frame: &[u8], now_ms: u64) {
        self.clock += 1;
        self.counters.frames_in += 1;
        self.counters.bytes_in += frame.len() as u64;
        if !self.connections.contains_key(&connection) {
            return;
        }
        if self.batch.storage_error.is_some() {
            // This batch will be rolled back; the connection gets closed with it.
            self.batch.touched_connections.insert(connection);
            return;
        }
        if frame.len() > self.config.max_frame_bytes {
            let violation = ProtocolViolation::FrameTooLarge {
                size: frame.len(),
                limit: self.config.max_frame_bytes,
            };
            self.refuse(connection, None, violation);
            return;
        }
        let message = match Message::decode(frame) {
            Ok(message) => message,
            Err(error) => {
                self.refuse(connection, None, error.into());
                return;
            }
        };
        if let Message::Join(join) = message {
            self.handle_join(connection, join);
            return;
        }
        let Some(peer_id) = self.joined_peer_id(connection) else {
            let sender = message.sender_id().cloned();
            self.refuse(connection, sender, ProtocolViolation::NotJoined);
            return;
        };
        if message.sender_id() != Some(&peer_id) {
            // automerge-repo clients re-broadcast ephemeral messages from
            // others under the original sender id; those are not ours to relay.
            self.counters.foreign_sender_dropped += 1;
            return;
        }
        match message {
            Message::Request(message) => self.handle_document_message(connection, message, true),
            Message::Sync(message) => self.handle_document_message(connection, message, false),
            Message::Ephemeral(message) => self.handle_ephemeral(connection, message, now_ms),
            // The hub never asks clients for documents, so it has nothing to
            // do with their doc-unavailable; heads gossip is not supported yet.
            Message::DocUnavailable(_)
            | Message::Error(_)
            | Message::Peer(_)
            | Message::RemoteSubscriptionChange(_)
            | Message::RemoteHeadsChanged(_)
            | Message::Join(_) => {}
        }
    }

    /// Forgets everything but what is stored: the open batch is rolled back, every document
    /// unloaded and every connection dropped (returned, for the shell to close). For a shell
    /// that caught a panic the hub could not contain (outside [`Hub::handle_frame`]).
    pub fn reset(&mut self) -> Vec<ConnectionId> {
        self.store.rollback();
        self.access.batch_rolled_back();
        self.batch = Batch::default();
        self.pending.clear();
        self.documents.clear();
        self.lost_on_unload.clear();
        let connections: Vec<ConnectionId> = self.connections.keys().copied().collect();
        for &connection in &connections {
            self.detach(connection);
        }
        connections
    }

    /// Ends the batch: commits the store, then hands out the effects.
    pub fn finish_batch(&mut self) -> Vec<Effect> {
        let batch = std::mem::take(&mut self.batch);
        let mut storage_error = batch.storage_error;
        if storage_error.is_none() {
            match self.store.commit() {
                Ok(()) => {
                    self.access.batch_committed();
                    self.counters.batches_committed += 1;
                    self.evict_least_recently_used(&batch.touched_documents);
                    let effects = std::mem::take(&mut self.pending);
                    self.count_outgoing(&effects);
                    return effects;
                }
                Err(error) => storage_error = Some(StorageFailure::store(error)),
            }
        }
        self.store.rollback();
        self.access.batch_rolled_back();
        self.counters.storage_failures += 1;
        self.last_storage_error = storage_error;

        // Keep only the closes already decided; every send may describe state
        // that was never stored. A connection whose sends are dropped is closed too:
        // otherwise one whose `join` came in this batch would wait for a `peer` that never
        // comes, and one that asked for a document for a reply that never comes.
        let mut to_close = batch.touched_connections;
        let mut effects = Vec::new();
        for effect in std::mem::take(&mut self.pending) {
            match effect {
                Effect::Send { connection, .. } => {
                    to_close.insert(connection);
                }
                close => effects.push(close),
            }
        }
        for document in &batch.touched_documents {
            if let Some(loaded) = self.documents.remove(document) {
                to_close.extend(loaded.peers.keys().copied());
            }
        }
        for connection in to_close {
            if self.connections.contains_key(&connection) {
                self.detach(connection);
                effects.push(Effect::Close {
                    connection,
                    reason: CloseReason::StorageFailure,
                });
            }
        }
        self.count_outgoing(&effects);
        effects
    }

    fn count_outgoing(&mut self, effects: &[Effect]) {
        for effect in effects {
            if let Effect::Send { frame, .. } = effect {
                self.counters.frames_out += 1;
                self.counters.bytes_out += frame.len() as u64;
            }
        }
    }

    fn joined_peer_id(&self, connection: ConnectionId) -> Option<PeerId> {
        let joined = self.connections.get(&connection)?.joined.as_ref()?;
        Some(joined.peer_id.clone())
    }

    fn send(&mut self, connection: ConnectionId, message: &Message) {
        self.pending.push(Effect::Send {
            connection,
            frame: message.encode(),
        });
    }

    /// Answers bad input with `error`, then closes the connection.
    fn refuse(
        &mut self,
        connection: ConnectionId,
        target: Option<PeerId>,
        violation: ProtocolViolation,
    ) {
        self.counters.protocol_errors += 1;
        let target_id = self.joined_peer_id(connection).or(target);
        let error = Message::Error(ErrorMessage {
            sender_id: Some(self.config.server_peer_id.clone()),
            target_id,
            message: violation.to_string(),
        });
        self.send(connection, &error);
        self.pending.push(Effect::Close {
            connection,
            reason: CloseReason::Protocol(violation),
        });
        self.detach(connection);
    }

    /// Forgets a connection: its peer id, its interest in documents, and every
    /// document nobody else has open (sync states are already in the store).
    fn detach(&mut self, connection: ConnectionId) {
        let Some(state) = self.connections.remove(&connection) else {
            return;
        };
        self.access.disconnected(connection);
        if let Some(joined) = &state.joined
            && self.peers.get(&joined.peer_id) == Some(&connection)
        {
            self.peers.remove(&joined.peer_id);
        }
        for document in state.open_documents {
            if let Some(loaded) = self.documents.get_mut(&document) {
                loaded.peers.remove(&connection);
                if loaded.peers.is_empty() {
                    self.documents.remove(&document);
                }
            }
        }
    }

    /// The batch cannot be stored: it will be rolled back and `connection` closed with it.
    /// The first failure is the one kept.
    fn storage_failed(&mut self, connection: ConnectionId, failure: StorageFailure) {
        self.batch.storage_error.get_or_insert(failure);
        self.batch.touched_connections.insert(connection);
    }
}
