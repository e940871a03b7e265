//! The hub's access policy: a connection sees only its teams' documents.
//!
//! **Invariants**
//! - Every connection the hub knows has a [`Principal`], set before the hub
//!   hears of the connection, so nothing is decided for an unknown session.
//! - A document with an owner is open only to members of that team.
//! - A document without an owner and without stored data is claimed by the
//!   connection's team on its first `sync`, in the same transaction as its
//!   data. A `request` claims nothing.
//! - A stored document without an owner (kept from before sign-in existed)
//!   is open to no one until `fieldnotes admin adopt` gives it to a team.
//! - A peer id is usable by one user at a time; a storage id by one user ever.
//! - Every push is checked like a request ([`Access::Receive`]): a connection whose user
//!   left the document's team (seen at the next revalidation) hears nothing more of it.
//!
//! A document's owner never changes once set, so owners read from the database are cached;
//! an owner first seen inside a batch is cached only once that batch committed.

use std::collections::{BTreeSet, HashMap};

use fieldnotes_sync::hub::{Access, AccessPolicy};
use fieldnotes_sync::{ConnectionId, DocumentId, PeerId, StorageId};

use crate::auth;
use crate::storage::{StorageError, Store};

/// Who is behind a connection.
#[derive(Debug, Clone)]
pub struct Principal {
    pub session: [u8; 32],
    pub user_id: String,
    pub teams: BTreeSet<String>,
    /// The team new documents from this connection are claimed for.
    pub claim_team: String,
}

/// Owners cached before the cache is emptied and refilled from the database.
const MAX_CACHED_OWNERS: usize = 200_000;

#[derive(Default)]
pub struct TeamPolicy {
    principals: HashMap<ConnectionId, Principal>,
    /// Owners read from committed data.
    owners: HashMap<DocumentId, String>,
    /// Owners read inside the current batch, which may yet roll back (a claim).
    batch_owners: HashMap<DocumentId, String>,
}

impl TeamPolicy {
    pub fn admit(&mut self, connection: ConnectionId, principal: Principal) {
        self.principals.insert(connection, principal);
    }

    fn owner(
        &mut self,
        store: &mut Store,
        document: &DocumentId,
    ) -> Result<Option<String>, StorageError> {
        if let Some(team) = self
            .owners
            .get(document)
            .or_else(|| self.batch_owners.get(document))
        {
            return Ok(Some(team.clone()));
        }
        let owner = store.document_owner(document)?;
        if let Some(team) = &owner {
            self.batch_owners.insert(*document, team.clone());
        }
        Ok(owner)
    }

    /// Checks every connection's session again; returns the connections whose
    /// session ended (revoked, expired, user disabled, or removed from the
    /// team it claims for). Memberships that changed are picked up.
    pub fn revalidate(&mut self, store: &mut Store) -> Result<Vec<ConnectionId>, auth::AuthError> {
        let mut ended = Vec::new();
        for (connection, principal) in self.principals.iter_mut() {
            match auth::session_by_hash(store.db_mut(), &principal.session)? {
                Some(session) => {
                    principal.teams = session.team_ids();
                    if !principal.teams.contains(&principal.claim_team) {
                        ended.push(*connection);
                    }
                }
                None => ended.push(*connection),
            }
        }
        Ok(ended)
    }
}

impl AccessPolicy<Store> for TeamPolicy {
    fn authorize(
        &mut self,
        store: &mut Store,
        connection: ConnectionId,
        _peer: &PeerId,
        document: &DocumentId,
        access: Access,
    ) -> Result<bool, StorageError> {
        if !self.principals.contains_key(&connection) {
            return Ok(false);
        }
        let owner = self.owner(store, document)?;
        let Some(principal) = self.principals.get(&connection) else {
            return Ok(false);
        };
        if let Some(team) = owner {
            return Ok(principal.teams.contains(&team));
        }
        if access != Access::Sync {
            return Ok(false);
        }
        if store.has_document(document)? {
            tracing::warn!(
                %document,
                "a stored document has no owning team; `fieldnotes admin adopt` gives it one"
            );
            return Ok(false);
        }
        store.claim_document(
            document,
            &principal.claim_team,
            &principal.user_id,
            auth::now_ms(),
        )?;
        self.batch_owners
            .insert(*document, principal.claim_team.clone());
        Ok(true)
    }

    fn may_join(
        &mut self,
        store: &mut Store,
        connection: ConnectionId,
        _peer: &PeerId,
        storage: Option<&StorageId>,
        holder: Option<ConnectionId>,
    ) -> Result<bool, StorageError> {
        let Some(principal) = self.principals.get(&connection) else {
            return Ok(false);
        };
        if let Some(holder) = holder
            && self
                .principals
                .get(&holder)
                .is_none_or(|h| h.user_id != principal.user_id)
        {
            return Ok(false);
        }
        if let Some(storage) = storage {
            match store.storage_owner(storage)? {
                Some(owner) => return Ok(owner == principal.user_id),
                None => store.bind_storage(storage, &principal.user_id)?,
            }
        }
        Ok(true)
    }

    fn disconnected(&mut self, connection: ConnectionId) {
        self.principals.remove(&connection);
    }

    fn batch_committed(&mut self) {
        if self.owners.len() + self.batch_owners.len() > MAX_CACHED_OWNERS {
            self.owners.clear();
        }
        self.owners.extend(self.batch_owners.drain());
    }

    fn batch_rolled_back(&mut self) {
        self.batch_owners.clear();
    }
}
