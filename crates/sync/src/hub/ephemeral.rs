//! `ephemeral`: application messages relayed to a document's other peers, never stored,
//! bounded in size and rate.

use super::{Access, AccessPolicy, ConnectionId, Hub, ProtocolViolation, StorageFailure};
use crate::protocol::{Ephemeral, Message};
use crate::store::DocStore;

/// Ephemeral sessions not heard from for this long are forgotten.
pub(super) const EPHEMERAL_SESSION_TTL_MS: u64 = 10 * 60 * 1000;

/// Ephemeral sessions remembered per connection before old ones are pruned.
pub(super) const EPHEMERAL_SESSIONS_PER_CONNECTION: usize = 64;

impl<S: DocStore, A: AccessPolicy<S>> Hub<S, A> {
    /// Spends one of the connection's ephemeral allowance; false when it has none left.
    pub(super) fn take_ephemeral_allowance(
        &mut self,
        connection: ConnectionId,
        now_ms: u64,
    ) -> bool {
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

    pub(super) fn handle_ephemeral(
        &mut self,
        connection: ConnectionId,
        message: Ephemeral,
        now_ms: u64,
    ) {
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
            Err(error) => return self.storage_failed(connection, StorageFailure::store(error)),
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
                Err(error) => return self.storage_failed(connection, StorageFailure::store(error)),
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
