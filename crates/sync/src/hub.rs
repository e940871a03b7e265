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

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::{self, AssertUnwindSafe};

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash};

use crate::document_id::DocumentId;
use crate::guard::{self, Refusal, SyncLimits};
use crate::protocol::{
    DecodeError, DocUnavailable, DocumentMessage, Ephemeral, ErrorMessage, Join, Message,
    PROTOCOL_VERSION, Peer, PeerId, PeerMetadata, StorageId,
};
use crate::store::DocStore;

/// Frames above this size are refused (and the connection closed). Shells
/// should enforce the same limit in their WebSocket layer.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// After this many stored chunks a document is compacted into one snapshot.
pub const DEFAULT_COMPACTION_THRESHOLD: usize = 64;

/// How many documents stay in memory at once. Beyond it the least recently used ones are
/// unloaded after their batch committed, even while peers keep them open: their peers' sync
/// states are in the store, and a document is loaded again when a message needs it. Memory
/// then stays bounded however many documents a peer syncs.
pub const DEFAULT_MAX_LOADED_DOCUMENTS: usize = 64;

/// Documents one connection may have open at once: well above a team of 10,000 accounts on a
/// new phone, and a bound on what a connection can make the hub remember.
pub const DEFAULT_MAX_OPEN_DOCUMENTS_PER_CONNECTION: usize = 50_000;

/// The largest ephemeral message relayed (presence and cursors are a few hundred bytes).
pub const DEFAULT_MAX_EPHEMERAL_BYTES: usize = 64 * 1024;

/// Ephemeral messages one connection may send per second, with a burst of twice as many;
/// beyond that they are dropped, not relayed.
pub const DEFAULT_EPHEMERAL_PER_SECOND: u32 = 20;

/// Ephemeral sessions not heard from for this long are forgotten.
const EPHEMERAL_SESSION_TTL_MS: u64 = 10 * 60 * 1000;
/// Ephemeral sessions remembered per connection before old ones are pruned.
const EPHEMERAL_SESSIONS_PER_CONNECTION: usize = 64;

/// The shell's name for one socket. Never reused while the hub knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// What the shell must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Send {
        connection: ConnectionId,
        frame: Vec<u8>,
    },
    Close {
        connection: ConnectionId,
        reason: CloseReason,
    },
}

/// Why the hub closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer broke the protocol; an `error` message was sent just before.
    Protocol(ProtocolViolation),
    /// A newer connection joined with the same peer id.
    Replaced,
    /// A batch could not be stored; the client should reconnect and sync again.
    StorageFailure,
    /// The shell withdrew the connection's right to be here (a revoked or
    /// expired session, a disabled user).
    AccessRevoked,
    /// Handling a frame from this connection panicked; nothing of that frame was kept and
    /// the client may reconnect.
    InternalError,
}

/// Input the hub refuses. The `Display` text is sent to the peer in `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolViolation {
    #[error("frame of {size} bytes is over the limit of {limit} bytes")]
    FrameTooLarge { size: usize, limit: usize },
    #[error("invalid message: {0}")]
    InvalidMessage(#[from] DecodeError),
    #[error("message before join")]
    NotJoined,
    // The exact text the reference server sends.
    #[error("unsupported protocol version")]
    UnsupportedProtocolVersion,
    #[error("this peer id or storage id belongs to another user")]
    PeerIdNotYours,
    #[error("join with a different peer id on an already joined connection")]
    RejoinAsAnotherPeer,
    #[error("invalid automerge sync message")]
    InvalidSyncMessage,
    #[error("invalid automerge data")]
    InvalidAutomergeData,
    #[error("sync message refused: {0}")]
    SyncMessageRefused(#[from] Refusal),
    #[error("this connection has {limit} documents open, the most one connection may have")]
    TooManyOpenDocuments { limit: usize },
    #[error("ephemeral message of {size} bytes is over the limit of {limit} bytes")]
    EphemeralTooLarge { size: usize, limit: usize },
}

/// What a peer asks to do with a document, for [`AccessPolicy::authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `request`: send me this document if you have it.
    Request,
    /// `sync`: here are my changes (may create the document on the server).
    Sync,
    /// `ephemeral` sent by the connection.
    SendEphemeral,
    /// An `ephemeral` message the hub would relay to this connection.
    ReceiveEphemeral,
    /// Changes another peer brought, which the hub would push to this connection. Asked
    /// before every push, so a connection whose user lost the document's team hears
    /// nothing more of it; a denied connection is taken off the document.
    Receive,
}

/// Decides what a connection may do. The default ([`AllowAll`]) allows all;
/// teams plug in here. A denied `request`/`sync` gets `doc-unavailable` and no
/// data, a denied `ephemeral` is dropped, a denied `join` is refused and closed.
///
/// Policies get the store so a decision that records something (a document
/// claimed by its first writer's team) is written inside the current batch:
/// it commits, or rolls back, with the document's data.
pub trait AccessPolicy<S: DocStore> {
    fn authorize(
        &mut self,
        store: &mut S,
        connection: ConnectionId,
        peer: &PeerId,
        document: &DocumentId,
        access: Access,
    ) -> Result<bool, S::Error>;

    /// May `connection` join as `peer`? `holder` is the connection joined with
    /// that peer id right now, which the newcomer would replace.
    fn may_join(
        &mut self,
        _store: &mut S,
        _connection: ConnectionId,
        _peer: &PeerId,
        _storage: Option<&StorageId>,
        _holder: Option<ConnectionId>,
    ) -> Result<bool, S::Error> {
        Ok(true)
    }

    /// The connection is gone from the hub.
    fn disconnected(&mut self, _connection: ConnectionId) {}

    /// The batch's writes were committed: what the policy learned from them may be kept.
    fn batch_committed(&mut self) {}

    /// The batch's writes (or the current frame's) were taken back: forget anything learned
    /// from them.
    fn batch_rolled_back(&mut self) {}
}

/// Every connection may see every document (the automerge-repo default:
/// knowing a document id is access).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl<S: DocStore> AccessPolicy<S> for AllowAll {
    fn authorize(
        &mut self,
        _: &mut S,
        _: ConnectionId,
        _: &PeerId,
        _: &DocumentId,
        _: Access,
    ) -> Result<bool, S::Error> {
        Ok(true)
    }
}

impl<S, F> AccessPolicy<S> for F
where
    S: DocStore,
    F: FnMut(ConnectionId, &PeerId, &DocumentId) -> bool,
{
    fn authorize(
        &mut self,
        _: &mut S,
        connection: ConnectionId,
        peer: &PeerId,
        document: &DocumentId,
        _: Access,
    ) -> Result<bool, S::Error> {
        Ok(self(connection, peer, document))
    }
}

/// How the hub presents itself and its limits.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub server_peer_id: PeerId,
    /// Must stay the same across restarts: clients key their sync state on it.
    pub server_storage_id: StorageId,
    pub max_frame_bytes: usize,
    pub compaction_threshold: usize,
    pub max_loaded_documents: usize,
    /// What one automerge sync message may ask of the hub ([`crate::guard`]).
    pub sync_limits: SyncLimits,
    pub max_open_documents_per_connection: usize,
    pub max_ephemeral_bytes: usize,
    pub ephemeral_per_second: u32,
}

impl HubConfig {
    pub fn new(server_peer_id: PeerId, server_storage_id: StorageId) -> Self {
        Self {
            server_peer_id,
            server_storage_id,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            compaction_threshold: DEFAULT_COMPACTION_THRESHOLD,
            max_loaded_documents: DEFAULT_MAX_LOADED_DOCUMENTS,
            sync_limits: SyncLimits::default(),
            max_open_documents_per_connection: DEFAULT_MAX_OPEN_DOCUMENTS_PER_CONNECTION,
            max_ephemeral_bytes: DEFAULT_MAX_EPHEMERAL_BYTES,
            ephemeral_per_second: DEFAULT_EPHEMERAL_PER_SECOND,
        }
    }
}

/// Running totals for metrics. Bytes count frame payloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubCounters {
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
    pub protocol_errors: u64,
    pub foreign_sender_dropped: u64,
    pub access_denied: u64,
    pub ephemeral_relayed: u64,
    pub ephemeral_duplicates: u64,
    pub change_chunks_stored: u64,
    pub compactions: u64,
    pub storage_failures: u64,
    pub batches_committed: u64,
    pub documents_evicted: u64,
    /// Frames whose handling panicked; each closed its connection and kept nothing.
    pub panics_caught: u64,
    /// Sync messages [`crate::guard`] refused before automerge saw them.
    pub sync_messages_refused: u64,
    /// Connections closed for opening more documents than they may.
    pub open_document_limit_hits: u64,
    /// Ephemeral messages dropped for coming faster than a connection may send them.
    pub ephemeral_rate_limited: u64,
    /// Ephemeral messages refused for their size.
    pub ephemeral_too_large: u64,
    /// Pushes withheld from a connection that may no longer see the document.
    pub pushes_denied: u64,
}

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

struct PeerSync {
    state: sync::State,
    /// The encoding last written to the store, to skip identical writes.
    persisted: Option<Vec<u8>>,
    /// A reset went out as empty heads, and the real heads have not followed yet.
    owes_heads: bool,
}

impl PeerSync {
    fn new(state: sync::State, persisted: Option<Vec<u8>>) -> Self {
        Self {
            state,
            persisted,
            owes_heads: false,
        }
    }

    /// automerge's next sync message for this peer.
    ///
    /// A peer whose automerge predates `SYNC_RESET` (the browser's 0.6 line, automerge-repo
    /// 1.x) is reset with a message carrying empty heads, and it then believes the hub has
    /// nothing. automerge records the real heads as sent all the same, so once the peer
    /// answers, both sides look in step and nothing more is sent: the peer would count every
    /// change as unacknowledged for ever. Until the real heads have gone out, the hub forgets
    /// what it sent, which makes automerge send them.
    fn generate(&mut self, doc: &mut Automerge) -> Option<sync::Message> {
        if self.owes_heads {
            self.state.last_sent_heads.clear();
        }
        let message = doc.generate_sync_message(&mut self.state)?;
        self.owes_heads = message.heads.is_empty() && !doc.get_heads().is_empty();
        Some(message)
    }
}

struct LoadedDocument {
    doc: Automerge,
    /// Chunks in the store for this document, to decide when to compact.
    stored_chunks: usize,
    peers: BTreeMap<ConnectionId, PeerSync>,
    /// The hub's frame counter when a message last used it, for eviction.
    last_used: u64,
}

#[derive(Default)]
struct Batch {
    touched_documents: BTreeSet<DocumentId>,
    touched_connections: BTreeSet<ConnectionId>,
    storage_error: Option<String>,
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
    last_storage_error: Option<String>,
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

/// A peer's sync state as the store kept it: only the shared heads. A stored state that no
/// longer decodes only costs a full sync.
fn stored_sync_state(persisted: Option<&[u8]>) -> sync::State {
    persisted
        .and_then(|bytes| sync::State::decode(bytes).ok())
        .unwrap_or_default()
}

/// [`stored_sync_state`] for a peer whose connection synced this document before it was
/// unloaded, with what its automerge advertised.
///
/// The peer's own state still remembers what it sent on this connection. That is harmless when
/// the hub stored all of it, and the usual case: the stored shared heads and the peer's next
/// message put both sides back in step within a round trip. It is not when the unloaded copy
/// held changes waiting for a dependency (a bloom filter false positive makes a peer send a
/// change without its parent): those were never stored, the peer would never send them again,
/// and both sides would trade the same messages forever. Then (`lost`) `needs_reset` makes the
/// hub's next message ask the peer to forget what it sent (automerge's `SYNC_RESET`, or empty
/// heads for a peer that does not advertise it, followed by the real heads: see
/// [`PeerSync::generate`]), so everything the hub asks for is sent again.
///
/// Resetting only then matters: a reset costs the peer a round trip, and a peer with more
/// documents open than the hub keeps in memory would have each one unloaded again before its
/// answer came back, reset again, and so on for ever (a new phone joining a team of 1,500
/// accounts did that, with a core of the server spinning).
fn resumed_sync_state(
    persisted: Option<&[u8]>,
    capabilities: Option<Vec<sync::Capability>>,
    lost: bool,
) -> sync::State {
    let mut state = stored_sync_state(persisted);
    state.their_capabilities = capabilities;
    state.needs_reset = lost;
    state
}

/// Documents unloaded while holding changes they could not apply, remembered at most; beyond
/// this a document with such changes stays loaded instead.
const MAX_LOST_ON_UNLOAD: usize = 100_000;

/// Whether unloading `doc` would lose changes that were received but not applied (they wait
/// for a dependency and are in no store).
fn holds_unapplied_changes(doc: &Automerge) -> bool {
    !automerge::ReadDoc::get_missing_deps(doc, &[]).is_empty()
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
    pub fn last_storage_error(&self) -> Option<&str> {
        self.last_storage_error.as_deref()
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
            self.storage_failed(connection, error);
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
                Err(error) => storage_error = Some(error.to_string()),
            }
        }
        self.store.rollback();
        self.access.batch_rolled_back();
        self.counters.storage_failures += 1;
        self.last_storage_error = storage_error;

        // Keep only the closes already decided; every send may describe state
        // that was never stored.
        let mut effects: Vec<Effect> = std::mem::take(&mut self.pending)
            .into_iter()
            .filter(|effect| matches!(effect, Effect::Close { .. }))
            .collect();
        let mut to_close = batch.touched_connections;
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

    /// Unloads the least recently used documents beyond the limit. Only after a commit: what
    /// they hold is in the store, including every durable peer's sync state.
    fn evict_least_recently_used(&mut self, keep: &BTreeSet<DocumentId>) {
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

    fn handle_join(&mut self, connection: ConnectionId, join: Join) {
        if let Some(current) = self.joined_peer_id(connection) {
            if current == join.sender_id {
                self.send_peer(connection, &join.sender_id);
            } else {
                self.refuse(connection, None, ProtocolViolation::RejoinAsAnotherPeer);
            }
            return;
        }
        if !join
            .supported_protocol_versions
            .iter()
            .any(|v| v == PROTOCOL_VERSION)
        {
            self.refuse(
                connection,
                Some(join.sender_id),
                ProtocolViolation::UnsupportedProtocolVersion,
            );
            return;
        }
        let storage_id = if join.peer_metadata.is_ephemeral {
            None
        } else {
            join.peer_metadata.storage_id.clone()
        };
        let holder = self.peers.get(&join.sender_id).copied();
        match self.access.may_join(
            &mut self.store,
            connection,
            &join.sender_id,
            storage_id.as_ref(),
            holder,
        ) {
            Ok(true) => {}
            Ok(false) => {
                self.counters.access_denied += 1;
                self.refuse(
                    connection,
                    Some(join.sender_id),
                    ProtocolViolation::PeerIdNotYours,
                );
                return;
            }
            Err(error) => return self.storage_failed(connection, error),
        }
        if let Some(older) = holder {
            // The reference server's behaviour: the newest socket wins.
            self.detach(older);
            self.pending.push(Effect::Close {
                connection: older,
                reason: CloseReason::Replaced,
            });
        }
        self.peers.insert(join.sender_id.clone(), connection);
        if let Some(state) = self.connections.get_mut(&connection) {
            state.joined = Some(JoinedPeer {
                peer_id: join.sender_id.clone(),
                storage_id,
            });
        }
        self.send_peer(connection, &join.sender_id);
    }

    fn send_peer(&mut self, connection: ConnectionId, target: &PeerId) {
        let peer = Message::Peer(Peer {
            sender_id: self.config.server_peer_id.clone(),
            target_id: target.clone(),
            peer_metadata: PeerMetadata {
                storage_id: Some(self.config.server_storage_id.clone()),
                is_ephemeral: false,
            },
            selected_protocol_version: PROTOCOL_VERSION.to_owned(),
        });
        self.send(connection, &peer);
    }

    fn send_unavailable(
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

    /// The sync state the store kept for a peer's storage; none for a peer that named none.
    fn persisted_sync_state(
        &mut self,
        document: &DocumentId,
        storage_id: Option<&StorageId>,
    ) -> Result<Option<Vec<u8>>, S::Error> {
        match storage_id {
            Some(storage_id) => self.store.load_sync_state(document, storage_id),
            None => Ok(None),
        }
    }

    fn storage_failed(&mut self, connection: ConnectionId, error: impl std::fmt::Display) {
        self.batch.storage_error = Some(error.to_string());
        self.batch.touched_connections.insert(connection);
    }

    /// Builds a document from its stored chunks.
    fn load_from_store(&mut self, document: &DocumentId) -> Result<(Automerge, usize), String> {
        let chunks = self
            .store
            .load_chunks(document)
            .map_err(|e| e.to_string())?;
        let mut doc = Automerge::new();
        for chunk in &chunks {
            doc.load_incremental(chunk)
                .map_err(|e| format!("stored document {document} does not load: {e}"))?;
        }
        Ok((doc, chunks.len()))
    }

    fn handle_document_message(
        &mut self,
        connection: ConnectionId,
        message: DocumentMessage,
        is_request: bool,
    ) {
        let DocumentMessage {
            sender_id: peer_id,
            document_id,
            data,
            ..
        } = message;
        self.frame_document = Some(document_id);
        if let Err(refusal) = guard::check_sync_message(&data, &self.config.sync_limits) {
            self.counters.sync_messages_refused += 1;
            self.refuse(connection, None, refusal.into());
            return;
        }
        let sync_message = match sync::Message::decode(&data) {
            Ok(message) => message,
            Err(_) => {
                self.refuse(connection, None, ProtocolViolation::InvalidSyncMessage);
                return;
            }
        };
        // Decoded first: a message that is not even a sync message must not get as far as a
        // policy that records something (a claim) for it.
        let access = if is_request {
            Access::Request
        } else {
            Access::Sync
        };
        match self
            .access
            .authorize(&mut self.store, connection, &peer_id, &document_id, access)
        {
            Ok(true) => {}
            Ok(false) => {
                self.counters.access_denied += 1;
                self.send_unavailable(connection, peer_id, document_id);
                return;
            }
            Err(error) => return self.storage_failed(connection, error),
        }
        self.batch.touched_connections.insert(connection);

        let mut reloaded_with_loss = false;
        if !self.documents.contains_key(&document_id) {
            let (doc, stored_chunks) = match self.load_from_store(&document_id) {
                Ok(loaded) => loaded,
                Err(error) => return self.storage_failed(connection, error),
            };
            if stored_chunks == 0 && is_request {
                self.send_unavailable(connection, peer_id, document_id);
                return;
            }
            // Peers that opened it before it was unloaded get their stored sync state back,
            // so changes from this message still reach them.
            let mut peers = BTreeMap::new();
            let reopened: Vec<(
                ConnectionId,
                Option<StorageId>,
                Option<Vec<sync::Capability>>,
            )> = self
                .connections
                .iter()
                .filter(|(id, state)| {
                    **id != connection && state.open_documents.contains(&document_id)
                })
                .map(|(id, state)| {
                    (
                        *id,
                        state.joined.as_ref().and_then(|j| j.storage_id.clone()),
                        state.sync_capabilities.clone(),
                    )
                })
                .collect();
            reloaded_with_loss = self.lost_on_unload.remove(&document_id);
            for (other, storage_id, capabilities) in reopened {
                let persisted = match self.persisted_sync_state(&document_id, storage_id.as_ref()) {
                    Ok(bytes) => bytes,
                    Err(error) => return self.storage_failed(connection, error),
                };
                let state =
                    resumed_sync_state(persisted.as_deref(), capabilities, reloaded_with_loss);
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
        }
        if let Some(loaded) = self.documents.get_mut(&document_id) {
            loaded.last_used = self.clock;
        }
        // Touched from here on: if the batch fails to store, the document is
        // unloaded, so none of it can stay in memory without its peers.
        self.batch.touched_documents.insert(document_id);
        let opened_here = self
            .documents
            .get(&document_id)
            .is_some_and(|d| d.peers.contains_key(&connection));
        if is_request && !opened_here && self.documents[&document_id].doc.get_heads().is_empty() {
            // Created by another peer's `sync` but still empty: nothing to give.
            self.send_unavailable(connection, peer_id, document_id);
            return;
        }
        if !opened_here {
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
                return;
            }
            let storage_id = connection_state
                .joined
                .as_ref()
                .and_then(|j| j.storage_id.clone());
            let persisted = match self.persisted_sync_state(&document_id, storage_id.as_ref()) {
                Ok(bytes) => bytes,
                Err(error) => return self.storage_failed(connection, error),
            };
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
        }
        let Some(loaded) = self.documents.get_mut(&document_id) else {
            return;
        };
        let Some(peer) = loaded.peers.get_mut(&connection) else {
            return;
        };
        let before = loaded.doc.get_heads();
        if loaded
            .doc
            .receive_sync_message(&mut peer.state, sync_message)
            .is_err()
        {
            // The document in memory may now hold part of the bad data: rebuild
            // it from the store, which has only what earlier messages brought.
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
                Err(error) => self.storage_failed(connection, error),
            }
            self.refuse(connection, None, ProtocolViolation::InvalidAutomergeData);
            return;
        }
        if peer.state.their_capabilities.is_some()
            && let Some(state) = self.connections.get_mut(&connection)
            && state.sync_capabilities != peer.state.their_capabilities
        {
            state
                .sync_capabilities
                .clone_from(&peer.state.their_capabilities);
        }
        let after = loaded.doc.get_heads();
        let changed = after != before;
        if changed {
            let changes = loaded.doc.save_after(&before);
            if let Err(error) = self.store.append_changes(&document_id, &changes) {
                return self.storage_failed(connection, error);
            }
            self.counters.change_chunks_stored += 1;
            loaded.stored_chunks += 1;
            if loaded.stored_chunks >= self.config.compaction_threshold {
                let snapshot = loaded.doc.save();
                if let Err(error) = self.store.replace_with_snapshot(&document_id, &snapshot) {
                    return self.storage_failed(connection, error);
                }
                self.counters.compactions += 1;
                loaded.stored_chunks = 1;
            }
        }

        let mut replies = Vec::new();
        if let Some(reply) = peer.generate(&mut loaded.doc) {
            replies.push((connection, reply));
        }
        let storage_id = self.connections[&connection]
            .joined
            .as_ref()
            .and_then(|j| j.storage_id.clone());
        if let Some(storage_id) = storage_id {
            let encoded = peer.state.encode();
            if peer.persisted.as_ref() != Some(&encoded) {
                if let Err(error) = self
                    .store
                    .save_sync_state(&document_id, &storage_id, &encoded)
                {
                    return self.storage_failed(connection, error);
                }
                peer.persisted = Some(encoded);
            }
        }
        if changed {
            let others: Vec<ConnectionId> = loaded
                .peers
                .keys()
                .copied()
                .filter(|&other| other != connection)
                .collect();
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
                    Err(error) => return self.storage_failed(connection, error),
                }
                let Some(loaded) = self.documents.get_mut(&document_id) else {
                    return;
                };
                let Some(other_sync) = loaded.peers.get_mut(&other) else {
                    continue;
                };
                if let Some(push) = other_sync.generate(&mut loaded.doc) {
                    replies.push((other, push));
                }
            }
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
    }

    /// Whether changes to `document` may be pushed to `connection` now.
    fn may_receive(
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
    fn close_document_for(&mut self, connection: ConnectionId, document: &DocumentId) {
        if let Some(state) = self.connections.get_mut(&connection) {
            state.open_documents.remove(document);
        }
        if let Some(loaded) = self.documents.get_mut(document) {
            loaded.peers.remove(&connection);
        }
    }

    /// Spends one of the connection's ephemeral allowance; false when it has none left.
    fn take_ephemeral_allowance(&mut self, connection: ConnectionId, now_ms: u64) -> bool {
        let per_second = u64::from(self.config.ephemeral_per_second);
        let Some(state) = self.connections.get_mut(&connection) else {
            return false;
        };
        let burst = per_second * 2 * 1000;
        let (allowance, at) = state.ephemeral_allowance.unwrap_or((burst, now_ms));
        let refilled = allowance
            .saturating_add(now_ms.saturating_sub(at).saturating_mul(per_second))
            .min(burst);
        if refilled < 1000 {
            state.ephemeral_allowance = Some((refilled, now_ms));
            return false;
        }
        state.ephemeral_allowance = Some((refilled - 1000, now_ms));
        true
    }

    fn handle_ephemeral(&mut self, connection: ConnectionId, message: Ephemeral, now_ms: u64) {
        self.frame_document = Some(message.document_id);
        if message.data.len() > self.config.max_ephemeral_bytes {
            self.counters.ephemeral_too_large += 1;
            let violation = ProtocolViolation::EphemeralTooLarge {
                size: message.data.len(),
                limit: self.config.max_ephemeral_bytes,
            };
            self.refuse(connection, None, violation);
            return;
        }
        if !self.take_ephemeral_allowance(connection, now_ms) {
            self.counters.ephemeral_rate_limited += 1;
            return;
        }
        match self.access.authorize(
            &mut self.store,
            connection,
            &message.sender_id,
            &message.document_id,
            Access::SendEphemeral,
        ) {
            Ok(true) => {}
            Ok(false) => {
                self.counters.access_denied += 1;
                return;
            }
            Err(error) => return self.storage_failed(connection, error),
        }
        let Some(state) = self.connections.get_mut(&connection) else {
            return;
        };
        if let Some(&(count, _)) = state.ephemeral_sessions.get(&message.session_id)
            && message.count <= count
        {
            self.counters.ephemeral_duplicates += 1;
            return;
        }
        if state.ephemeral_sessions.len() >= EPHEMERAL_SESSIONS_PER_CONNECTION {
            state
                .ephemeral_sessions
                .retain(|_, (_, seen)| now_ms.saturating_sub(*seen) < EPHEMERAL_SESSION_TTL_MS);
            if state.ephemeral_sessions.len() >= EPHEMERAL_SESSIONS_PER_CONNECTION {
                let oldest = state
                    .ephemeral_sessions
                    .iter()
                    .min_by_key(|(_, (_, seen))| *seen)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    state.ephemeral_sessions.remove(&oldest);
                }
            }
        }
        state
            .ephemeral_sessions
            .insert(message.session_id.clone(), (message.count, now_ms));

        let Some(loaded) = self.documents.get(&message.document_id) else {
            return;
        };
        let others: Vec<ConnectionId> = loaded
            .peers
            .keys()
            .copied()
            .filter(|&c| c != connection)
            .collect();
        for other in others {
            let Some(target_id) = self.joined_peer_id(other) else {
                continue;
            };
            match self.access.authorize(
                &mut self.store,
                other,
                &target_id,
                &message.document_id,
                Access::ReceiveEphemeral,
            ) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) => return self.storage_failed(connection, error),
            }
            let relay = Message::Ephemeral(Ephemeral {
                target_id,
                ..message.clone()
            });
            self.send(other, &relay);
            self.counters.ephemeral_relayed += 1;
        }
    }
}
