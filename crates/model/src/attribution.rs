//! Who made each change, and when.
//!
//! **Design.** The automerge actor id of every change names its author: the actor bytes are
//! `b"fn"`, a format byte `1`, one length byte `n`, the `n` UTF-8 bytes of the [`UserId`], then
//! the caller's device/session random bytes. So the author of a change is part of the change
//! itself (the server can check it against the signed-in user when it accepts a change) and
//! survives merges, compaction and every sync path. The time and a short message ("rename
//! account", "add note …") go into the change's commit options, supplied by the caller: this
//! crate reads no clock. Change times are **unix milliseconds** (automerge leaves the unit to
//! the application).
//!
//! Use fresh device bytes for each app session (each loaded copy of a document): two live
//! copies of one document must never share an actor id.

use automerge::{ActorId, Automerge};

use crate::error::ModelError;
use crate::ids::UserId;

const ACTOR_MAGIC: &[u8] = b"fn";
const ACTOR_FORMAT: u8 = 1;
/// The longest user id (in UTF-8 bytes) that fits in an actor id.
pub const MAX_USER_ID_BYTES: usize = u8::MAX as usize;

/// Builds the actor id for `user` on one device session. `device_bytes` should be at least 8
/// random bytes chosen by the caller for this session.
pub fn actor_for(user: &UserId, device_bytes: &[u8]) -> Result<ActorId, ModelError> {
    let user_bytes = user.as_str().as_bytes();
    if user_bytes.len() > MAX_USER_ID_BYTES {
        return Err(ModelError::UserIdTooLong {
            length: user_bytes.len(),
        });
    }
    let mut bytes = Vec::with_capacity(4 + user_bytes.len() + device_bytes.len());
    bytes.extend_from_slice(ACTOR_MAGIC);
    bytes.push(ACTOR_FORMAT);
    bytes.push(user_bytes.len() as u8);
    bytes.extend_from_slice(user_bytes);
    bytes.extend_from_slice(device_bytes);
    Ok(ActorId::from(bytes))
}

/// The user who owns `actor`, if the actor id was made by [`actor_for`]. Returns `None` for
/// actors made some other way (for example random actors from other tools).
pub fn user_of_actor(actor: &ActorId) -> Option<UserId> {
    let bytes = actor.to_bytes();
    let rest = bytes.strip_prefix(ACTOR_MAGIC)?;
    let (&format, rest) = rest.split_first()?;
    if format != ACTOR_FORMAT {
        return None;
    }
    let (&length, rest) = rest.split_first()?;
    let user = rest.get(..length as usize)?;
    std::str::from_utf8(user).ok().map(UserId::new)
}

/// One change in a document's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Who made the change; `None` when the actor id does not name a user.
    pub user: Option<UserId>,
    /// When, as the author's device told it (unix milliseconds).
    pub time_millis: i64,
    /// What, in a few words ("set driver relationship").
    pub message: Option<String>,
}

/// Every change in `doc`, oldest first (in causal order: a change comes after everything it
/// saw; concurrent changes are ordered by time, then by hash so the order is the same on
/// every replica).
pub fn history(doc: &Automerge) -> Vec<HistoryEntry> {
    // Changes come in a topological order; it is not identical across replicas for
    // concurrent changes, so sort stably by (depth, time, hash) to give every replica one view.
    // `get_changes` lends the changes on the browser's automerge line and builds them on the
    // server's; only the browser shows a history.
    let changes = doc.get_changes(&[]);
    let mut depth = std::collections::HashMap::with_capacity(changes.len());
    let mut rows = Vec::with_capacity(changes.len());
    for change in &changes {
        let d = change
            .deps()
            .iter()
            .filter_map(|dep| depth.get(dep))
            .max()
            .map_or(0u64, |d: &u64| d + 1);
        depth.insert(change.hash(), d);
        rows.push((
            d,
            change.timestamp(),
            change.hash(),
            HistoryEntry {
                user: user_of_actor(change.actor_id()),
                time_millis: change.timestamp(),
                message: change.message().map(|m| m.to_string()),
            },
        ));
    }
    rows.sort_by_key(|row| (row.0, row.1, row.2));
    rows.into_iter().map(|row| row.3).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_round_trips_the_user() {
        let user = UserId::new("rep-émilie@example.com");
        let actor = actor_for(&user, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(user_of_actor(&actor), Some(user.clone()));
        let other_device = actor_for(&user, &[9; 8]).unwrap();
        assert_ne!(actor, other_device);
        assert_eq!(user_of_actor(&other_device), Some(user));
    }

    #[test]
    fn foreign_actors_have_no_user() {
        assert_eq!(user_of_actor(&ActorId::from(vec![0xab; 16])), None);
        assert_eq!(user_of_actor(&ActorId::from(b"fn".to_vec())), None);
        // Claims a 200-byte user id but carries only 3 bytes.
        assert_eq!(
            user_of_actor(&ActorId::from(b"fn\x01\xc8abc".to_vec())),
            None
        );
        assert_eq!(user_of_actor(&ActorId::from(b"fn\x02\x01a".to_vec())), None);
    }

    #[test]
    fn overlong_user_ids_are_refused() {
        let user = UserId::new("x".repeat(256));
        assert!(matches!(
            actor_for(&user, &[0; 8]),
            Err(ModelError::UserIdTooLong { length: 256 })
        ));
    }
}
