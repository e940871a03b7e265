//! What the hub tells its shell to do, and why it closes a connection.

use crate::document_id::DocumentId;
use crate::guard::Refusal;
use crate::protocol::DecodeError;

/// Why a batch could not be stored. The batch is rolled back and the connections involved
/// are closed ([`CloseReason::StorageFailure`]); [`super::Hub::last_storage_error`] keeps it
/// for the shell's log.
#[derive(Debug, thiserror::Error)]
pub enum StorageFailure {
    #[error("the store failed: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    #[error("stored document {document} does not load: {source}")]
    DocumentDoesNotLoad {
        document: DocumentId,
        #[source]
        source: Box<automerge::AutomergeError>,
    },
}

impl StorageFailure {
    pub fn store(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Store(Box::new(error))
    }
}

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
