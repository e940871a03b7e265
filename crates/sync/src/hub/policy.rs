//! Who may do what: the hook through which the server's teams decide every `join`,
//! `request`, `sync`, `ephemeral` and push.

use super::ConnectionId;
use crate::document_id::DocumentId;
use crate::protocol::{PeerId, StorageId};
use crate::store::DocStore;

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
