//! Who is signed in on this device, remembered so the app opens offline with that identity.
//!
//! The device keeps one small record in its own IndexedDB database (`fieldnotes-device`): the
//! server's `SessionInfo` as it was last seen and the team the rep is working in. Never the
//! session token: the server's cookie is HttpOnly. The record is written with strict durability
//! like every document (`localStorage` is flushed lazily, and a phone that dies right after the
//! sign-in would reopen at the sign-in screen, offline, with the rep's notes out of reach). Each
//! user's documents live in their own databases, one per team (`fieldnotes-<user id>-<team
//! id>`), so a team switch opens another database and sign-out deletes exactly that user's.

use fieldnotes_model::{TeamId, UserId};
use wasm_bindgen::JsValue;

use crate::api::{SessionInfo, TeamInfo};
use crate::idb::{Idb, StorageError, WriteOp};
use crate::services::Identity;

/// The device-level database: who is signed in here. Not a user database (user ids are hex).
pub const DEVICE_DATABASE: &str = "fieldnotes-device";
const SESSION_KEY: &str = "session";
/// Set when a sign-out could not reach the server: the cookie may still be valid there, so
/// the next start online revokes it.
const REVOKE_PENDING_KEY: &str = "revoke-pending";

/// The signed-in user of this device and the team the app shows.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSession {
    pub info: SessionInfo,
    pub team_id: String,
}

impl DeviceSession {
    /// The session to keep after a sign-in: the `preferred` team if the user is in it, else
    /// the team worked in before, else the first. `None` when the user belongs to no team.
    pub fn new(
        info: SessionInfo,
        preferred: Option<&str>,
        previous: Option<&str>,
    ) -> Option<DeviceSession> {
        let team_id = choose_team(&info.teams, &[preferred, previous])?;
        Some(DeviceSession { info, team_id })
    }

    pub fn team(&self) -> TeamInfo {
        self.info.team(&self.team_id).cloned().unwrap_or(TeamInfo {
            id: self.team_id.clone(),
            name: String::new(),
            role: String::new(),
        })
    }

    pub fn database_name(&self) -> String {
        database_name(&self.info.user_id, &self.team_id)
    }

    /// Who writes: the display name is the author on notes and in history.
    pub fn identity(&self) -> Identity {
        Identity {
            user: UserId::new(self.info.name.clone()),
            team: TeamId::new(self.team_id.clone()),
        }
    }
}

/// The first of `candidates` that names one of `teams`, else the first team.
pub fn choose_team(teams: &[TeamInfo], candidates: &[Option<&str>]) -> Option<String> {
    candidates
        .iter()
        .flatten()
        .find(|id| teams.iter().any(|team| team.id == **id))
        .map(|id| id.to_string())
        .or_else(|| teams.first().map(|team| team.id.clone()))
}

/// The IndexedDB database holding one user's documents of one team.
pub fn database_name(user_id: &str, team_id: &str) -> String {
    format!("{}{team_id}", database_prefix(user_id))
}

/// Every database of one user starts with this.
pub fn database_prefix(user_id: &str) -> String {
    format!("fieldnotes-{user_id}-")
}

/// The session remembered on this device, if someone is signed in here.
pub async fn load() -> Result<Option<DeviceSession>, StorageError> {
    let idb = Idb::open(DEVICE_DATABASE).await?;
    let bytes = idb.meta(SESSION_KEY).await;
    idb.close();
    Ok(bytes?.and_then(|bytes| decode(&String::from_utf8_lossy(&bytes))))
}

fn decode(text: &str) -> Option<DeviceSession> {
    let value = js_sys::JSON::parse(text).ok()?;
    let info = SessionInfo::from_js(&js_sys::Reflect::get(&value, &"session".into()).ok()?)?;
    let team_id = js_sys::Reflect::get(&value, &"team".into())
        .ok()?
        .as_string()?;
    Some(DeviceSession { info, team_id })
}

pub async fn save(session: &DeviceSession) -> Result<(), StorageError> {
    let value = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&value, &"session".into(), &session.info.to_js());
    let _ = js_sys::Reflect::set(&value, &"team".into(), &JsValue::from_str(&session.team_id));
    let text = js_sys::JSON::stringify(&value)
        .ok()
        .and_then(|t| t.as_string())
        .unwrap_or_default();
    write(vec![
        WriteOp::PutMeta {
            key: SESSION_KEY.into(),
            bytes: text.into_bytes(),
        },
        WriteOp::DeleteMeta {
            key: REVOKE_PENDING_KEY.into(),
        },
    ])
    .await
}

/// Forgets the signed-in user; `revoke_pending` when the server could not be told.
pub async fn clear(revoke_pending: bool) -> Result<(), StorageError> {
    let mut ops = vec![WriteOp::DeleteMeta {
        key: SESSION_KEY.into(),
    }];
    if revoke_pending {
        ops.push(WriteOp::PutMeta {
            key: REVOKE_PENDING_KEY.into(),
            bytes: vec![1],
        });
    }
    write(ops).await
}

pub async fn revoke_pending() -> bool {
    let Ok(idb) = Idb::open(DEVICE_DATABASE).await else {
        return false;
    };
    let pending = matches!(idb.meta(REVOKE_PENDING_KEY).await, Ok(Some(_)));
    idb.close();
    pending
}

pub async fn revoked() {
    let _ = write(vec![WriteOp::DeleteMeta {
        key: REVOKE_PENDING_KEY.into(),
    }])
    .await;
}

async fn write(ops: Vec<WriteOp>) -> Result<(), StorageError> {
    let idb = Idb::open(DEVICE_DATABASE).await?;
    let result = idb.write(&ops).await;
    idb.close();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn team(id: &str) -> TeamInfo {
        TeamInfo {
            id: id.into(),
            name: id.to_uppercase(),
            role: "rep".into(),
        }
    }

    #[test]
    fn the_active_team_is_the_preferred_one_then_the_previous_then_the_first() {
        let teams = [team("a"), team("b"), team("c")];
        assert_eq!(
            choose_team(&teams, &[Some("c"), Some("b")]),
            Some("c".into())
        );
        assert_eq!(choose_team(&teams, &[None, Some("b")]), Some("b".into()));
        assert_eq!(
            choose_team(&teams, &[Some("gone"), Some("left")]),
            Some("a".into())
        );
        assert_eq!(choose_team(&[], &[Some("a")]), None);
    }

    #[test]
    fn each_user_and_team_has_its_own_database_under_the_user_prefix() {
        let name = database_name("u1", "t1");
        assert_eq!(name, "fieldnotes-u1-t1");
        assert!(name.starts_with(&database_prefix("u1")));
        assert!(!database_name("u10", "t1").starts_with(&database_prefix("u1")));
        assert_ne!(name, database_name("u1", "t2"));
    }
}
