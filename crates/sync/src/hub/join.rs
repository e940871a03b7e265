//! `join`: who a connection is, and which of two connections with one peer id stays.

use super::{
    AccessPolicy, CloseReason, ConnectionId, Effect, Hub, JoinedPeer, ProtocolViolation,
    StorageFailure,
};
use crate::protocol::{Join, Message, PROTOCOL_VERSION, Peer, PeerId, PeerMetadata};
use crate::store::DocStore;

impl<S: DocStore, A: AccessPolicy<S>> Hub<S, A> {
    pub(super) fn handle_join(&mut self, connection: ConnectionId, join: Join) {
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
            Err(error) => return self.storage_failed(connection, StorageFailure::store(error)),
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

    pub(super) fn send_peer(&mut self, connection: ConnectionId, target: &PeerId) {
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
}
