//! Who is signed in on this device, remembered so the app opens offline with that identity.
//!
//! The device keeps one small record in `localStorage` (read synchronously at start, before any
//! database is open): the server's `SessionInfo` as it was last seen and the team the rep is
//! working in. Never the session token: the server's cookie is HttpOnly. Each user's documents
//! live in their own IndexedDB databases, one per team (`fieldnotes-<user id>-<team id>`), so a
//! team switch opens another database and sign-out deletes exactly that user's.

use fieldnotes_model::{TeamId, UserId};
use wasm_bindgen::JsValue;

use crate::api::{SessionInfo, TeamInfo};
use crate::idb::StorageError;
use crate::services::Identity;

const DEVICE_KEY: &str = "fieldnotes-device";
/// Set when a sign-out could not reach the server: the cookie may still be valid there, so
/// the next start online revokes it.
const REVOKE_PENDING_KEY: &str = "fieldnotes-revoke-pending";

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

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// The session remembered on this device, if someone is signed in here.
pub fn load() -> Option<DeviceSession> {
    let text = local_storage()?.get_item(DEVICE_KEY).ok().flatten()?;
    let value = js_sys::JSON::parse(&text).ok()?;
    let info = SessionInfo::from_js(&js_sys::Reflect::get(&value, &"session".into()).ok()?)?;
    let team_id = js_sys::Reflect::get(&value, &"team".into())
        .ok()?
        .as_string()?;
    Some(DeviceSession { info, team_id })
}

pub fn save(session: &DeviceSession) -> Result<(), StorageError> {
    let value = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&value, &"session".into(), &session.info.to_js());
    let _ = js_sys::Reflect::set(&value, &"team".into(), &JsValue::from_str(&session.team_id));
    let text = js_sys::JSON::stringify(&value)
        .ok()
        .and_then(|t| t.as_string())
        .unwrap_or_default();
    local_storage()
        .ok_or(StorageError::Unavailable)?
        .set_item(DEVICE_KEY, &text)
        .map_err(|_| StorageError::Unavailable)
}

pub fn clear() {
    if let Some(storage) = local_storage() {
        let _ = storage.remove_item(DEVICE_KEY);
    }
}

pub fn set_revoke_pending(pending: bool) {
    if let Some(storage) = local_storage() {
        let _ = if pending {
            storage.set_item(REVOKE_PENDING_KEY, "1")
        } else {
            storage.remove_item(REVOKE_PENDING_KEY)
        };
    }
}

pub fn revoke_pending() -> bool {
    local_storage()
        .and_then(|s| s.get_item(REVOKE_PENDING_KEY).ok().flatten())
        .is_some()
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
