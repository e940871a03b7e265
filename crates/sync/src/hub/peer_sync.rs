//! One peer's sync state for one document, and the two workarounds that keep peers in step
//! when the hub unloads a document under them.

use automerge::Automerge;
use automerge::sync::{self, SyncDoc};

pub(super) struct PeerSync {
    pub(super) state: sync::State,
    /// The encoding last written to the store, to skip identical writes.
    pub(super) persisted: Option<Vec<u8>>,
    /// A reset went out as empty heads, and the real heads have not followed yet.
    pub(super) owes_heads: bool,
}

impl PeerSync {
    pub(super) fn new(state: sync::State, persisted: Option<Vec<u8>>) -> Self {
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
    pub(super) fn generate(&mut self, doc: &mut Automerge) -> Option<sync::Message> {
        if self.owes_heads {
            self.state.last_sent_heads.clear();
        }
        let message = doc.generate_sync_message(&mut self.state)?;
        self.owes_heads = message.heads.is_empty() && !doc.get_heads().is_empty();
        Some(message)
    }
}

/// A peer's sync state as the store kept it: only the shared heads. A stored state that no
/// longer decodes only costs a full sync.
pub(super) fn stored_sync_state(persisted: Option<&[u8]>) -> sync::State {
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
pub(super) fn resumed_sync_state(
    persisted: Option<&[u8]>,
    capabilities: Option<Vec<sync::Capability>>,
    lost: bool,
) -> sync::State {
    let mut state = stored_sync_state(persisted);
    state.their_capabilities = capabilities;
    state.needs_reset = lost;
    // The hub has answered this peer on this connection before: a message that says the peer
    // is where the hub is, and brings nothing, needs no answer. Without this a decoded state
    // answers once whatever it hears, and a document unloaded between each message and its
    // answer had the hub and the phone trade "same heads" for as long as that lasted.
    state.have_responded = !lost;
    state
}

/// Documents unloaded while holding changes they could not apply, remembered at most; beyond
/// this a document with such changes stays loaded instead.
pub(super) const MAX_LOST_ON_UNLOAD: usize = 100_000;

/// Whether unloading `doc` would lose changes that were received but not applied (they wait
/// for a dependency and are in no store).
pub(super) fn holds_unapplied_changes(doc: &Automerge) -> bool {
    !automerge::ReadDoc::get_missing_deps(doc, &[]).is_empty()
}
