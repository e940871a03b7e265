//! The client engine, sans-IO: what a browser tab or a native test client
//! runs against one server.
//!
//! The caller owns the documents (an `Automerge` or `AutoCommit` per id, in
//! any map implementing [`DocumentSet`]) and lends them in on each call. The
//! engine owns one `automerge::sync::State` per open document and the queue
//! of outgoing frames.
//!
//! Driving it:
//!
//! 1. [`Client::open_document`] for each document to keep in sync (optionally
//!    with the sync state persisted from an earlier session, see
//!    [`Client::encoded_sync_state`]).
//! 2. When the socket opens: [`Client::handle_connected`]; on close:
//!    [`Client::handle_disconnected`].
//! 3. For every binary frame received: [`Client::handle_frame`], then look at
//!    the returned [`ClientEvent`]s.
//! 4. After a local change: [`Client::sync_document`].
//! 5. After each of these, send every frame from [`Client::poll_frame`].
//!
//! The server replies with heads that cover a change only after storing it, so
//! [`Client::pending_change_count`] is the number of local changes that are
//! not yet safe on the server.

use std::collections::{BTreeMap, HashMap, VecDeque};

use automerge::sync::{self, SyncDoc};
use automerge::{AutoCommit, Automerge, AutomergeError, ChangeHash};

use crate::document_id::DocumentId;
use crate::protocol::{
    DecodeError, DocUnavailable, DocumentMessage, Ephemeral, Join, Message, PROTOCOL_VERSION,
    PeerId, PeerMetadata, StorageId,
};

/// A document the engine can sync: implemented for `Automerge` and `AutoCommit`.
pub trait SyncTarget {
    fn heads(&mut self) -> Vec<ChangeHash>;
    fn generate_sync_message(&mut self, state: &mut sync::State) -> Option<sync::Message>;
    fn receive_sync_message(
        &mut self,
        state: &mut sync::State,
        message: sync::Message,
    ) -> Result<(), AutomergeError>;
    /// How many changes are not ancestors of `heads`; hashes the document
    /// does not know are ignored.
    fn count_changes_not_covered_by(&mut self, heads: &[ChangeHash]) -> usize;
}

#[cfg(not(any(target_arch = "wasm32", fieldnotes_browser_automerge)))]
fn count_not_covered(doc: &Automerge, heads: &[ChangeHash]) -> usize {
    let known: Vec<ChangeHash> = heads
        .iter()
        .filter(|hash| doc.get_change_meta_by_hash(hash).is_some())
        .copied()
        .collect();
    doc.get_changes_meta(&known).len()
}

/// The 0.6 line keeps every change as it was received, so looking changes up is cheap there;
/// it has no separate metadata calls.
#[cfg(any(target_arch = "wasm32", fieldnotes_browser_automerge))]
fn count_not_covered(doc: &Automerge, heads: &[ChangeHash]) -> usize {
    use automerge::ReadDoc;
    let known: Vec<ChangeHash> = heads
        .iter()
        .filter(|hash| doc.get_change_by_hash(hash).is_some())
        .copied()
        .collect();
    doc.get_changes(&known).len()
}

impl SyncTarget for Automerge {
    fn heads(&mut self) -> Vec<ChangeHash> {
        self.get_heads()
    }
    fn generate_sync_message(&mut self, state: &mut sync::State) -> Option<sync::Message> {
        SyncDoc::generate_sync_message(self, state)
    }
    fn receive_sync_message(
        &mut self,
        state: &mut sync::State,
        message: sync::Message,
    ) -> Result<(), AutomergeError> {
        SyncDoc::receive_sync_message(self, state, message)
    }
    fn count_changes_not_covered_by(&mut self, heads: &[ChangeHash]) -> usize {
        count_not_covered(self, heads)
    }
}

impl SyncTarget for AutoCommit {
    fn heads(&mut self) -> Vec<ChangeHash> {
        self.get_heads()
    }
    fn generate_sync_message(&mut self, state: &mut sync::State) -> Option<sync::Message> {
        self.sync().generate_sync_message(state)
    }
    fn receive_sync_message(
        &mut self,
        state: &mut sync::State,
        message: sync::Message,
    ) -> Result<(), AutomergeError> {
        self.sync().receive_sync_message(state, message)
    }
    fn count_changes_not_covered_by(&mut self, heads: &[ChangeHash]) -> usize {
        count_not_covered(self.document(), heads)
    }
}

/// Where the engine finds the caller's documents by id.
pub trait DocumentSet {
    type Document: SyncTarget;
    fn document_mut(&mut self, id: &DocumentId) -> Option<&mut Self::Document>;
}

impl<D: SyncTarget, H: std::hash::BuildHasher> DocumentSet for HashMap<DocumentId, D, H> {
    type Document = D;
    fn document_mut(&mut self, id: &DocumentId) -> Option<&mut D> {
        self.get_mut(id)
    }
}

impl<D: SyncTarget> DocumentSet for BTreeMap<DocumentId, D> {
    type Document = D;
    fn document_mut(&mut self, id: &DocumentId) -> Option<&mut D> {
        self.get_mut(id)
    }
}

/// Who we are to the server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub peer_id: PeerId,
    /// Set for clients with durable local storage (IndexedDB): the server
    /// keeps its sync state for us under this id across reconnects.
    pub storage_id: Option<StorageId>,
    pub is_ephemeral: bool,
    /// Random per session (from the caller); names our ephemeral messages.
    pub ephemeral_session_id: String,
}

/// Where the handshake stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    Disconnected,
    /// `join` sent, waiting for `peer`.
    Joining,
    Joined {
        server_peer_id: PeerId,
        server_storage_id: Option<StorageId>,
    },
}

/// What happened while handling a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The handshake finished; every open document's sync has been started.
    Joined {
        server_peer_id: PeerId,
        server_storage_id: Option<StorageId>,
    },
    /// Changes from the server were applied to the document: re-render it and
    /// save it locally.
    DocumentChanged { document_id: DocumentId },
    /// The server reported new heads: the pending count may have dropped, and
    /// the sync state is worth persisting.
    ServerHeadsChanged { document_id: DocumentId },
    /// The server has no such document, or may not show it to us.
    DocumentUnavailable { document_id: DocumentId },
    /// The server is about to close the connection.
    ServerError { message: String },
    Ephemeral {
        document_id: DocumentId,
        sender_id: PeerId,
        data: Vec<u8>,
    },
}

/// The server sent something we cannot use. Close the socket and reconnect later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("server sent an invalid message: {0}")]
    InvalidMessage(#[from] DecodeError),
    #[error("server selected protocol version {0:?}; this client speaks only \"1\"")]
    UnsupportedProtocolVersion(String),
    #[error("server sent an invalid automerge sync message for document {0}")]
    InvalidSyncMessage(DocumentId),
    #[error("server sent changes that do not apply to document {document_id}: {reason}")]
    InvalidAutomergeData {
        document_id: DocumentId,
        reason: String,
    },
    #[error("the saved sync state for document {0} is corrupt; open the document without it")]
    InvalidSyncState(DocumentId),
}

struct OpenDocument {
    state: sync::State,
}

/// Keeps only what `sync::State::encode` keeps: the heads both sides had.
/// Everything else describes one connection.
fn fresh_connection_state(state: &sync::State) -> sync::State {
    sync::State::decode(&state.encode()).unwrap_or_default()
}

/// The client engine. See the module docs.
pub struct Client {
    config: ClientConfig,
    connection: ConnectionState,
    documents: BTreeMap<DocumentId, OpenDocument>,
    /// The heads the server last said it has, for documents closed on this connection. The
    /// server keeps its side of the exchange for the whole connection and does not repeat
    /// itself, so a document opened again on it must remember what it was told, or it could
    /// never know it is in step. About 100 bytes a document synced on the connection.
    told_heads: HashMap<DocumentId, Vec<ChangeHash>>,
    outgoing: VecDeque<Vec<u8>>,
    ephemeral_count: u64,
}

impl Client {
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            connection: ConnectionState::Disconnected,
            documents: BTreeMap::new(),
            told_heads: HashMap::new(),
            outgoing: VecDeque::new(),
            ephemeral_count: 0,
        }
    }

    pub fn peer_id(&self) -> &PeerId {
        &self.config.peer_id
    }

    pub fn connection_state(&self) -> &ConnectionState {
        &self.connection
    }

    /// The server's storage id once joined: key persisted sync states by it,
    /// so a different server never sees another server's state.
    pub fn server_storage_id(&self) -> Option<&StorageId> {
        match &self.connection {
            ConnectionState::Joined {
                server_storage_id, ..
            } => server_storage_id.as_ref(),
            _ => None,
        }
    }

    pub fn open_document_ids(&self) -> impl Iterator<Item = &DocumentId> {
        self.documents.keys()
    }

    /// Starts keeping a document in sync. `saved_sync_state` is what
    /// [`Client::encoded_sync_state`] returned in an earlier session with the
    /// same server; with it, the first exchange after a reconnect sends only
    /// what changed. Opening an open document again keeps its state.
    pub fn open_document(
        &mut self,
        document_id: DocumentId,
        saved_sync_state: Option<&[u8]>,
    ) -> Result<(), ClientError> {
        if self.documents.contains_key(&document_id) {
            return Ok(());
        }
        let mut state = match saved_sync_state {
            Some(bytes) => sync::State::decode(bytes)
                .map_err(|_| ClientError::InvalidSyncState(document_id))?,
            None => sync::State::new(),
        };
        if let Some(heads) = self.told_heads.remove(&document_id) {
            state.their_heads = Some(heads);
        }
        self.documents.insert(document_id, OpenDocument { state });
        Ok(())
    }

    /// Stops syncing a document (its state is dropped; save it first if wanted).
    pub fn close_document(&mut self, document_id: &DocumentId) {
        if let Some(open) = self.documents.remove(document_id)
            && let Some(heads) = open.state.their_heads
            && matches!(self.connection, ConnectionState::Joined { .. })
        {
            self.told_heads.insert(*document_id, heads);
        }
    }

    /// The sync state worth saving next to the document, for this server.
    pub fn encoded_sync_state(&self, document_id: &DocumentId) -> Option<Vec<u8>> {
        self.documents
            .get(document_id)
            .map(|open| open.state.encode())
    }

    /// The socket is open: queues `join`.
    pub fn handle_connected(&mut self) {
        self.outgoing.clear();
        self.told_heads = HashMap::new();
        for open in self.documents.values_mut() {
            open.state = fresh_connection_state(&open.state);
        }
        self.connection = ConnectionState::Joining;
        let join = Message::Join(Join {
            sender_id: self.config.peer_id.clone(),
            peer_metadata: PeerMetadata {
                storage_id: self.config.storage_id.clone(),
                is_ephemeral: self.config.is_ephemeral,
            },
            supported_protocol_versions: vec![PROTOCOL_VERSION.to_owned()],
        });
        self.outgoing.push_back(join.encode());
    }

    /// The socket closed: unsent frames are dropped, and the next connection
    /// starts each document's sync from the last shared heads.
    pub fn handle_disconnected(&mut self) {
        self.outgoing.clear();
        for open in self.documents.values_mut() {
            open.state = fresh_connection_state(&open.state);
        }
        self.connection = ConnectionState::Disconnected;
    }

    /// The next frame to send, if any.
    pub fn poll_frame(&mut self) -> Option<Vec<u8>> {
        self.outgoing.pop_front()
    }

    /// Offers the server whatever it lacks of one document (call after a local
    /// change). Opens the document if it is not open. Does nothing until joined.
    pub fn sync_document<D: SyncTarget + ?Sized>(&mut self, document_id: DocumentId, doc: &mut D) {
        self.documents
            .entry(document_id)
            .or_insert_with(|| OpenDocument {
                state: sync::State {
                    their_heads: self.told_heads.remove(&document_id),
                    ..sync::State::new()
                },
            });
        self.generate(document_id, doc);
    }

    /// [`Client::sync_document`] for every open document found in `docs`.
    pub fn sync_all<S: DocumentSet>(&mut self, docs: &mut S) {
        let ids: Vec<DocumentId> = self.documents.keys().copied().collect();
        for id in ids {
            if let Some(doc) = docs.document_mut(&id) {
                self.generate(id, doc);
            }
        }
    }

    fn server_peer_id(&self) -> Option<PeerId> {
        match &self.connection {
            ConnectionState::Joined { server_peer_id, .. } => Some(server_peer_id.clone()),
            _ => None,
        }
    }

    fn generate<D: SyncTarget + ?Sized>(&mut self, document_id: DocumentId, doc: &mut D) {
        let Some(server) = self.server_peer_id() else {
            return;
        };
        let Some(open) = self.documents.get_mut(&document_id) else {
            return;
        };
        let Some(message) = doc.generate_sync_message(&mut open.state) else {
            return;
        };
        let message = DocumentMessage {
            sender_id: self.config.peer_id.clone(),
            target_id: server,
            document_id,
            data: message.encode(),
        };
        // automerge-repo asks with `request` when it has nothing and has never
        // synced: the server answers `doc-unavailable` instead of creating it.
        let never_synced = open.state.shared_heads.is_empty();
        let frame = if never_synced && doc.heads().is_empty() {
            Message::Request(message)
        } else {
            Message::Sync(message)
        };
        self.outgoing.push_back(frame.encode());
    }

    /// Local changes the server has not acknowledged yet: changes not covered
    /// by the heads the server last reported (or, before it reports in this
    /// session, by the heads shared at the last sync).
    pub fn pending_change_count<D: SyncTarget + ?Sized>(
        &self,
        document_id: &DocumentId,
        doc: &mut D,
    ) -> usize {
        let covered = self
            .documents
            .get(document_id)
            .map(|open| {
                open.state
                    .their_heads
                    .clone()
                    .unwrap_or_else(|| open.state.shared_heads.clone())
            })
            .unwrap_or_default();
        doc.count_changes_not_covered_by(&covered)
    }

    /// Whether the server has said it has exactly this document's heads and has been told
    /// ours: nothing is left to exchange until one side changes. A shell that keeps only some
    /// documents open closes this one now (and opens it again when either side changes it).
    pub fn in_step<D: SyncTarget + ?Sized>(&self, document_id: &DocumentId, doc: &mut D) -> bool {
        let Some(open) = self.documents.get(document_id) else {
            return false;
        };
        let mut heads = doc.heads();
        heads.sort_unstable();
        let mut theirs = match &open.state.their_heads {
            Some(theirs) => theirs.clone(),
            None => return false,
        };
        theirs.sort_unstable();
        let mut sent = open.state.last_sent_heads.clone();
        sent.sort_unstable();
        theirs == heads && sent == heads
    }

    /// True when joined and the server has acknowledged every change of every
    /// open document found in `docs`.
    pub fn all_synced<S: DocumentSet>(&self, docs: &mut S) -> bool {
        if !matches!(self.connection, ConnectionState::Joined { .. }) {
            return false;
        }
        self.documents.keys().all(|id| match docs.document_mut(id) {
            Some(doc) => self.pending_change_count(id, doc) == 0,
            None => true,
        })
    }

    /// Queues an ephemeral message (presence, cursors) for the others who
    /// have the document open. Dropped when not joined.
    pub fn send_ephemeral(&mut self, document_id: DocumentId, data: Vec<u8>) {
        let Some(server) = self.server_peer_id() else {
            return;
        };
        self.ephemeral_count += 1;
        let message = Message::Ephemeral(Ephemeral {
            sender_id: self.config.peer_id.clone(),
            target_id: server,
            document_id,
            session_id: self.config.ephemeral_session_id.clone(),
            count: self.ephemeral_count,
            data,
        });
        self.outgoing.push_back(message.encode());
    }

    /// One binary frame from the server.
    pub fn handle_frame<S: DocumentSet>(
        &mut self,
        frame: &[u8],
        docs: &mut S,
    ) -> Result<Vec<ClientEvent>, ClientError> {
        let mut events = Vec::new();
        match Message::decode(frame)? {
            Message::Peer(peer) => {
                if peer.selected_protocol_version != PROTOCOL_VERSION {
                    return Err(ClientError::UnsupportedProtocolVersion(
                        peer.selected_protocol_version,
                    ));
                }
                self.connection = ConnectionState::Joined {
                    server_peer_id: peer.sender_id.clone(),
                    server_storage_id: peer.peer_metadata.storage_id.clone(),
                };
                events.push(ClientEvent::Joined {
                    server_peer_id: peer.sender_id,
                    server_storage_id: peer.peer_metadata.storage_id,
                });
                self.sync_all(docs);
            }
            Message::Sync(message) | Message::Request(message) => {
                self.receive_document_message(message, docs, &mut events)?;
            }
            Message::DocUnavailable(DocUnavailable { document_id, .. }) => {
                if let Some(open) = self.documents.get_mut(&document_id) {
                    // Forget the unanswered request so a later sync_document asks again.
                    open.state = fresh_connection_state(&open.state);
                    events.push(ClientEvent::DocumentUnavailable { document_id });
                }
            }
            Message::Error(error) => events.push(ClientEvent::ServerError {
                message: error.message,
            }),
            Message::Ephemeral(message) => {
                if self.documents.contains_key(&message.document_id) {
                    events.push(ClientEvent::Ephemeral {
                        document_id: message.document_id,
                        sender_id: message.sender_id,
                        data: message.data,
                    });
                }
            }
            Message::Join(_)
            | Message::RemoteSubscriptionChange(_)
            | Message::RemoteHeadsChanged(_) => {}
        }
        Ok(events)
    }

    fn receive_document_message<S: DocumentSet>(
        &mut self,
        message: DocumentMessage,
        docs: &mut S,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientError> {
        let document_id = message.document_id;
        let (Some(open), Some(doc)) = (
            self.documents.get_mut(&document_id),
            docs.document_mut(&document_id),
        ) else {
            // Not a document we keep in sync; a server asking for it learns we lack it.
            if let Some(server) = self.server_peer_id() {
                let reply = Message::DocUnavailable(DocUnavailable {
                    sender_id: self.config.peer_id.clone(),
                    target_id: server,
                    document_id,
                });
                self.outgoing.push_back(reply.encode());
            }
            return Ok(());
        };
        let sync_message = sync::Message::decode(&message.data)
            .map_err(|_| ClientError::InvalidSyncMessage(document_id))?;
        let heads_before = doc.heads();
        let server_heads_before = open.state.their_heads.clone();
        doc.receive_sync_message(&mut open.state, sync_message)
            .map_err(|error| ClientError::InvalidAutomergeData {
                document_id,
                reason: error.to_string(),
            })?;
        if doc.heads() != heads_before {
            events.push(ClientEvent::DocumentChanged { document_id });
        }
        if open.state.their_heads != server_heads_before {
            events.push(ClientEvent::ServerHeadsChanged { document_id });
        }
        self.generate(document_id, doc);
        Ok(())
    }
}
