//! The hub's settings, their defaults, and the running totals it keeps for metrics.

use crate::guard::SyncLimits;
use crate::protocol::{PeerId, StorageId};

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
    /// Documents in memory that took in changes another writer of the store committed.
    pub documents_merged_from_store: u64,
    /// Documents unloaded here but open on a connection, loaded because another writer
    /// committed changes to them (so the news reaches that connection).
    pub documents_loaded_for_news: u64,
    /// Frames whose handling panicked; each closed its connection and kept nothing.
    pub panics_caught: u64,
    /// Sync messages [`crate::guard`] refused before automerge saw them.
    pub sync_messages_refused: u64,
    /// Sync messages automerge panicked on while applying them, refused as bad data: the
    /// document was rebuilt from the store and the sender closed, as for any change automerge
    /// rejects.
    pub automerge_panics_refused: u64,
    /// Connections closed for opening more documents than they may.
    pub open_document_limit_hits: u64,
    /// Ephemeral messages dropped for coming faster than a connection may send them.
    pub ephemeral_rate_limited: u64,
    /// Ephemeral messages refused for their size.
    pub ephemeral_too_large: u64,
    /// Pushes withheld from a connection that may no longer see the document.
    pub pushes_denied: u64,
}
