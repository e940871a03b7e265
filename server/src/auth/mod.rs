//! Users, teams, sessions and invitations: the rules of `docs/auth.md`.
//!
//! Everything here is plain functions over a [`Db`] (SQLite or PostgreSQL), so the
//! server (on the hub thread, between batches) and `fieldnotes admin` (on its
//! own connection to the same database) share one implementation, whichever the backend.
//!
//! **Secrets:** a session, setup or invitation token is 32 random bytes shown
//! once; only its SHA-256 is stored. Passwords are stored as argon2id PHC
//! strings. Neither is ever logged.

pub mod password;
pub mod throttle;

use std::collections::BTreeSet;

use crate::db::{Db, DbError, Row};
use crate::params;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fieldnotes_model::{TeamId, team_directory_key};
use fieldnotes_sync::DocumentId;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// How long a browser sign-in lasts.
pub const BROWSER_SESSION_MS: u64 = 30 * DAY_MS;
/// How long a Bearer token lasts unless told otherwise.
pub const TOKEN_SESSION_MS: u64 = 90 * DAY_MS;
/// How long an invitation link stays valid unless told otherwise.
pub const INVITATION_MS: u64 = 7 * DAY_MS;

/// What goes wrong, in words a rep or an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Invalid(String),
    #[error("That email and password do not match. Check them and try again.")]
    WrongCredentials,
    #[error("This account has been disabled. Ask your manager to turn it back on.")]
    Disabled,
    #[error("An account with the email {0} already exists.")]
    EmailTaken(String),
    #[error("No user has the email {0}.")]
    NoSuchUser(String),
    #[error("No team is called or has the id {0:?}.")]
    NoSuchTeam(String),
    #[error("More than one team is called {0:?}; use the team id instead.")]
    AmbiguousTeam(String),
    #[error("This link has already been used or is not valid. Ask for a new one.")]
    LinkNotValid,
    #[error("This invitation is for {0}. Sign up with that email, or ask for a new invitation.")]
    InvitationForAnotherEmail(String),
    #[error("database error: {0}")]
    Database(#[from] DbError),
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

pub type Result<T, E = AuthError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Rep,
    Manager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Rep => "rep",
            Role::Manager => "manager",
        }
    }
    fn parse(text: &str) -> Role {
        if text == "manager" {
            Role::Manager
        } else {
            Role::Rep
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Browser,
    Token,
}

impl SessionKind {
    fn as_str(self) -> &'static str {
        match self {
            SessionKind::Browser => "browser",
            SessionKind::Token => "token",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Team {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub is_admin: bool,
    #[serde(skip)]
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// What a signed-in client learns about itself (the `SessionInfo` of the contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    pub user: User,
    pub teams: Vec<Membership>,
    pub expires_at: u64,
}

/// A valid session, as the server keeps it for a connection.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_hash: [u8; 32],
    pub info: SessionInfo,
}

impl Session {
    pub fn team_ids(&self) -> BTreeSet<String> {
        self.info.teams.iter().map(|t| t.id.clone()).collect()
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // Without an OS random source nothing here can be made safely; the
    // server cannot run on such a machine.
    getrandom::fill(&mut bytes).expect("the operating system has no random source");
    bytes
}

fn random_id() -> String {
    random_bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fresh secret token (43 characters, URL-safe).
pub fn new_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The id of a team's directory document, owned by the team from its creation.
pub fn directory_document(team_id: &str) -> DocumentId {
    DocumentId::from_bytes(team_directory_key(&TeamId::new(team_id)))
}

/// The longest email address there can be (RFC 5321's path limit less its brackets).
pub const MAX_EMAIL_BYTES: usize = 254;

pub fn normalize_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= MAX_EMAIL_BYTES
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(AuthError::Invalid(
            "Type your email address, like dana@example.com.".into(),
        ))
    }
}

pub fn check_name(name: &str, what: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AuthError::Invalid(format!(
            "Type {what} (at most 100 characters)."
        )));
    }
    Ok(name.to_string())
}

// ---- teams ----------------------------------------------------------------

/// Creates a team and gives it its directory document.
pub fn create_team(connection: &mut Db, name: &str) -> Result<Team> {
    connection.transaction(|tx| insert_team(tx, name))
}

/// [`create_team`] inside the caller's transaction.
fn insert_team(connection: &mut Db, name: &str) -> Result<Team> {
    let name = check_name(name, "the team's name")?;
    let team = Team {
        id: random_id(),
        name,
    };
    let now = now_ms() as i64;
    connection.execute(
        "INSERT INTO teams (id, name, created_at) VALUES (?1, ?2, ?3)",
        params![team.id, team.name, now],
    )?;
    connection.execute(
        "INSERT INTO document_owners (document_id, team_id, claimed_by, claimed_at)
         VALUES (?1, ?2, NULL, ?3)",
        params![directory_document(&team.id).to_string(), team.id, now],
    )?;
    Ok(team)
}

fn team_from_row(row: &Row) -> Result<Team, DbError> {
    Ok(Team {
        id: row.get(0)?,
        name: row.get(1)?,
    })
}

/// A team by id, or by name when exactly one team has it.
pub fn find_team(connection: &mut Db, id_or_name: &str) -> Result<Team> {
    let by_id = connection
        .query_opt(
            "SELECT id, name FROM teams WHERE id = ?1",
            params![id_or_name],
        )?
        .map(|row| team_from_row(&row))
        .transpose()?;
    if let Some(team) = by_id {
        return Ok(team);
    }
    let teams: Vec<Team> = connection
        .query(
            "SELECT id, name FROM teams WHERE name = ?1",
            params![id_or_name.trim()],
        )?
        .iter()
        .map(team_from_row)
        .collect::<Result<_, DbError>>()?;
    match teams.len() {
        0 => Err(AuthError::NoSuchTeam(id_or_name.to_string())),
        1 => Ok(teams.into_iter().next().expect("one team")),
        _ => Err(AuthError::AmbiguousTeam(id_or_name.to_string())),
    }
}

/// Every team with its number of members.
pub fn list_teams(connection: &mut Db) -> Result<Vec<(Team, u64)>> {
    let teams = connection
        .query(
            "SELECT t.id, t.name, count(m.user_id) FROM teams t
             LEFT JOIN memberships m ON m.team_id = t.id
             GROUP BY t.id, t.name ORDER BY t.name, t.id",
            params![],
        )?
        .iter()
        .map(|row| Ok((team_from_row(row)?, row.get::<i64>(2)? as u64)))
        .collect::<Result<_, DbError>>()?;
    Ok(teams)
}

// ---- users ----------------------------------------------------------------

fn user_from_row(row: &Row) -> Result<User, DbError> {
    Ok(User {
        id: row.get(0)?,
        email: row.get(1)?,
        name: row.get(2)?,
        is_admin: row.get::<i64>(3)? != 0,
        disabled: row.get::<Option<i64>>(4)?.is_some(),
    })
}

const USER_COLUMNS: &str = "id, email, name, is_admin, disabled_at";

/// A user and their password hash, by email.
pub fn user_by_email(connection: &mut Db, email: &str) -> Result<Option<(User, String)>> {
    let Ok(email) = normalize_email(email) else {
        return Ok(None);
    };
    Ok(connection
        .query_opt(
            &format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = ?1"),
            params![email],
        )?
        .map(|row| Ok::<_, DbError>((user_from_row(&row)?, row.get(5)?)))
        .transpose()?)
}

fn require_user(connection: &mut Db, email: &str) -> Result<User> {
    user_by_email(connection, email)?
        .map(|(user, _)| user)
        .ok_or_else(|| AuthError::NoSuchUser(email.trim().to_lowercase()))
}

/// Creates a user with an already hashed password.
pub fn create_user(
    connection: &mut Db,
    email: &str,
    name: &str,
    password_hash: &str,
    is_admin: bool,
) -> Result<User> {
    let email = normalize_email(email)?;
    let name = check_name(name, "your name")?;
    if user_by_email(connection, &email)?.is_some() {
        return Err(AuthError::EmailTaken(email));
    }
    let user = User {
        id: random_id(),
        email,
        name,
        is_admin,
        disabled: false,
    };
    connection.execute(
        "INSERT INTO users (id, email, name, password_hash, is_admin, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            user.id,
            user.email,
            user.name,
            password_hash,
            is_admin as i64,
            now_ms() as i64
        ],
    )?;
    Ok(user)
}

/// Adds a user to a team, or changes their role in it.
pub fn set_membership(connection: &mut Db, user_id: &str, team_id: &str, role: Role) -> Result<()> {
    connection.execute(
        "INSERT INTO memberships (user_id, team_id, role) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id, team_id) DO UPDATE SET role = excluded.role",
        params![user_id, team_id, role.as_str()],
    )?;
    Ok(())
}

/// Takes a user out of a team; false when they were not in it. Sessions read memberships on
/// every check, so open sockets to the team close at the hub's next revalidation.
pub fn remove_membership(connection: &mut Db, user_id: &str, team_id: &str) -> Result<bool> {
    let removed = connection.execute(
        "DELETE FROM memberships WHERE user_id = ?1 AND team_id = ?2",
        params![user_id, team_id],
    )?;
    Ok(removed > 0)
}

pub fn memberships(connection: &mut Db, user_id: &str) -> Result<Vec<Membership>> {
    let teams = connection
        .query(
            "SELECT t.id, t.name, m.role FROM memberships m JOIN teams t ON t.id = m.team_id
             WHERE m.user_id = ?1 ORDER BY t.name, t.id",
            params![user_id],
        )?
        .iter()
        .map(|row| {
            Ok(Membership {
                id: row.get(0)?,
                name: row.get(1)?,
                role: Role::parse(&row.get::<String>(2)?),
            })
        })
        .collect::<Result<_, DbError>>()?;
    Ok(teams)
}

pub fn list_users(connection: &mut Db) -> Result<Vec<(User, Vec<Membership>)>> {
    let users: Vec<User> = connection
        .query(
            &format!("SELECT {USER_COLUMNS} FROM users ORDER BY email"),
            params![],
        )?
        .iter()
        .map(user_from_row)
        .collect::<Result<_, DbError>>()?;
    users
        .into_iter()
        .map(|user| {
            let teams = memberships(connection, &user.id)?;
            Ok((user, teams))
        })
        .collect()
}

/// Sets a new password hash and ends every session of the user.
pub fn set_password(connection: &mut Db, email: &str, password_hash: &str) -> Result<User> {
    let user = require_user(connection, email)?;
    connection.execute(
        "UPDATE users SET password_hash = ?2 WHERE id = ?1",
        params![user.id, password_hash],
    )?;
    revoke_user_sessions(connection, &user.id)?;
    Ok(user)
}

/// Disables (and signs out everywhere) or re-enables a user.
pub fn set_disabled(connection: &mut Db, email: &str, disabled: bool) -> Result<User> {
    let user = require_user(connection, email)?;
    let disabled_at = disabled.then(|| now_ms() as i64);
    connection.execute(
        "UPDATE users SET disabled_at = ?2 WHERE id = ?1",
        params![user.id, disabled_at],
    )?;
    if disabled {
        revoke_user_sessions(connection, &user.id)?;
    }
    Ok(User { disabled, ..user })
}

pub fn admin_exists(connection: &mut Db) -> Result<bool> {
    Ok(connection
        .query_opt(
            "SELECT 1 FROM users WHERE is_admin = 1 AND disabled_at IS NULL LIMIT 1",
            params![],
        )?
        .is_some())
}

// ---- sessions -------------------------------------------------------------

/// Starts a session; returns the token (shown once) and the session.
pub fn create_session(
    connection: &mut Db,
    user: &User,
    kind: SessionKind,
    lifetime_ms: u64,
    label: Option<&str>,
) -> Result<(String, SessionInfo)> {
    let token = new_token();
    let now = now_ms();
    let expires_at = now.saturating_add(lifetime_ms);
    connection.execute(
        "INSERT INTO sessions (token_hash, user_id, kind, label, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            &token_hash(&token)[..],
            user.id,
            kind.as_str(),
            label,
            now as i64,
            expires_at as i64
        ],
    )?;
    let info = SessionInfo {
        user: user.clone(),
        teams: memberships(connection, &user.id)?,
        expires_at,
    };
    Ok((token, info))
}

/// The live session a token hash names: not revoked, not expired, its user
/// not disabled.
pub fn session_by_hash(connection: &mut Db, hash: &[u8; 32]) -> Result<Option<Session>> {
    let found = connection
        .query_opt(
            "SELECT u.id, u.email, u.name, u.is_admin, u.disabled_at, s.expires_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2
               AND u.disabled_at IS NULL",
            params![&hash[..], now_ms() as i64],
        )?
        .map(|row| Ok::<_, DbError>((user_from_row(&row)?, row.get::<i64>(5)? as u64)))
        .transpose()?;
    let Some((user, expires_at)) = found else {
        return Ok(None);
    };
    let teams = memberships(connection, &user.id)?;
    Ok(Some(Session {
        token_hash: *hash,
        info: SessionInfo {
            user,
            teams,
            expires_at,
        },
    }))
}

pub fn session_by_token(connection: &mut Db, token: &str) -> Result<Option<Session>> {
    session_by_hash(connection, &token_hash(token))
}

pub fn revoke_session(connection: &mut Db, hash: &[u8; 32]) -> Result<()> {
    connection.execute(
        "UPDATE sessions SET revoked_at = ?2 WHERE token_hash = ?1 AND revoked_at IS NULL",
        params![&hash[..], now_ms() as i64],
    )?;
    Ok(())
}

/// Ends every session of a user; returns how many were live.
pub fn revoke_user_sessions(connection: &mut Db, user_id: &str) -> Result<usize> {
    Ok(connection.execute(
        "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
        params![user_id, now_ms() as i64],
    )? as usize)
}

pub fn revoke_sessions_of(connection: &mut Db, email: &str) -> Result<usize> {
    let user = require_user(connection, email)?;
    revoke_user_sessions(connection, &user.id)
}

// ---- first run ------------------------------------------------------------

/// A new one-time setup token when no administrator exists yet; `None` otherwise.
pub fn new_setup_token(connection: &mut Db) -> Result<Option<String>> {
    if admin_exists(connection)? {
        return Ok(None);
    }
    let token = new_token();
    connection.execute(
        "INSERT INTO meta (key, value) VALUES ('setup_token_sha256', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![fieldnotes_model::hex(&token_hash(&token))],
    )?;
    Ok(Some(token))
}

/// What the first administrator fills in.
pub struct FirstAdmin<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub team_name: &'a str,
}

/// Uses the setup token: creates the team and its administrator (a manager of it).
/// `Ok` when `token` is the live setup link's and no administrator exists yet.
pub fn check_setup_token(connection: &mut Db, token: &str) -> Result<()> {
    let stored: Option<String> = connection
        .query_opt(
            "SELECT value FROM meta WHERE key = 'setup_token_sha256'",
            params![],
        )?
        .map(|row| row.get(0))
        .transpose()?;
    let matches = stored.is_some_and(|stored| {
        let given = fieldnotes_model::hex(&token_hash(token));
        // Both are hex SHA-256 digests: equal length, and the comparison
        // leaks nothing about the token itself.
        stored == given
    });
    if !matches || admin_exists(connection)? {
        return Err(AuthError::LinkNotValid);
    }
    Ok(())
}

pub fn complete_setup(
    connection: &mut Db,
    token: &str,
    admin: FirstAdmin<'_>,
) -> Result<(User, Team)> {
    check_setup_token(connection, token)?;
    // One transaction: a refused form (an email already taken, say) leaves nothing behind.
    connection.transaction(|tx| {
        let team = insert_team(tx, admin.team_name)?;
        let user = create_user(tx, admin.email, admin.name, admin.password_hash, true)?;
        set_membership(tx, &user.id, &team.id, Role::Manager)?;
        tx.execute(
            "DELETE FROM meta WHERE key = 'setup_token_sha256'",
            params![],
        )?;
        Ok((user, team))
    })
}

// ---- invitations ----------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct Invitation {
    pub team: Team,
    pub role: Role,
    pub email: Option<String>,
}

pub fn create_invitation(
    connection: &mut Db,
    team: &Team,
    role: Role,
    email: Option<&str>,
    lifetime_ms: u64,
) -> Result<String> {
    let email = email.map(normalize_email).transpose()?;
    let token = new_token();
    let now = now_ms();
    connection.execute(
        "INSERT INTO invitations (token_hash, team_id, role, email, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            &token_hash(&token)[..],
            team.id,
            role.as_str(),
            email,
            now as i64,
            now.saturating_add(lifetime_ms) as i64
        ],
    )?;
    Ok(token)
}

/// An unused, unexpired invitation.
pub fn invitation(connection: &mut Db, token: &str) -> Result<Invitation> {
    connection
        .query_opt(
            "SELECT t.id, t.name, i.role, i.email FROM invitations i JOIN teams t ON t.id = i.team_id
             WHERE i.token_hash = ?1 AND i.used_at IS NULL AND i.expires_at > ?2",
            params![&token_hash(token)[..], now_ms() as i64],
        )?
        .map(|row| {
            Ok::<_, DbError>(Invitation {
                team: team_from_row(&row)?,
                role: Role::parse(&row.get::<String>(2)?),
                email: row.get(3)?,
            })
        })
        .transpose()?
        .ok_or(AuthError::LinkNotValid)
}

/// Marks an invitation used and adds `user` to its team. Call it inside a
/// transaction that also holds whatever else the acceptance writes.
pub fn use_invitation(connection: &mut Db, token: &str, user: &User) -> Result<Team> {
    let invitation = invitation(connection, token)?;
    if let Some(email) = &invitation.email
        && *email != user.email
    {
        return Err(AuthError::InvitationForAnotherEmail(email.clone()));
    }
    let used = connection.execute(
        "UPDATE invitations SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
        params![&token_hash(token)[..], now_ms() as i64],
    )?;
    if used != 1 {
        return Err(AuthError::LinkNotValid);
    }
    set_membership(connection, &user.id, &invitation.team.id, invitation.role)?;
    Ok(invitation.team)
}

// ---- documents ------------------------------------------------------------

/// Gives every stored document without an owner to `team` (documents stored
/// before sign-in existed). Returns how many.
pub fn adopt_unowned(connection: &mut Db, team: &Team) -> Result<usize> {
    Ok(connection.execute(
        "INSERT INTO document_owners (document_id, team_id, claimed_by, claimed_at)
         SELECT DISTINCT c.document_id, CAST(?1 AS TEXT), CAST(NULL AS TEXT), CAST(?2 AS BIGINT)
         FROM chunks c
         WHERE NOT EXISTS (SELECT 1 FROM document_owners o WHERE o.document_id = c.document_id)",
        params![team.id, now_ms() as i64],
    )? as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Store;

    use crate::test_db::on_both_backends;

    on_both_backends!(
        a_new_team_owns_its_directory,
        sessions_end_when_revoked_or_the_user_is_disabled,
        setup_token_works_once_and_only_until_an_admin_exists,
        an_invitation_is_used_once_and_only_by_its_email
    );

    fn a_new_team_owns_its_directory(mut store: Store) {
        let team = create_team(store.db_mut(), "North").unwrap();
        let owner = store.document_owner(&directory_document(&team.id)).unwrap();
        assert_eq!(owner.as_deref(), Some(team.id.as_str()));
    }

    fn sessions_end_when_revoked_or_the_user_is_disabled(mut store: Store) {
        let connection = store.db_mut();
        let team = create_team(connection, "North").unwrap();
        let user = create_user(connection, "Dana@Example.com ", "Dana", "x", false).unwrap();
        assert_eq!(user.email, "dana@example.com");
        set_membership(connection, &user.id, &team.id, Role::Rep).unwrap();
        let (token, info) =
            create_session(connection, &user, SessionKind::Token, DAY_MS, None).unwrap();
        assert_eq!(info.teams[0].id, team.id);
        let session = session_by_token(connection, &token).unwrap().unwrap();
        assert_eq!(session.info.user.id, user.id);

        set_disabled(connection, "dana@example.com", true).unwrap();
        assert!(session_by_token(connection, &token).unwrap().is_none());
        set_disabled(connection, "dana@example.com", false).unwrap();
        // Disabling revoked the session for good.
        assert!(session_by_token(connection, &token).unwrap().is_none());

        let (token, _) =
            create_session(connection, &user, SessionKind::Browser, DAY_MS, None).unwrap();
        revoke_session(connection, &token_hash(&token)).unwrap();
        assert!(session_by_token(connection, &token).unwrap().is_none());

        let (token, _) = create_session(connection, &user, SessionKind::Token, 0, None).unwrap();
        assert!(
            session_by_token(connection, &token).unwrap().is_none(),
            "expired"
        );
    }

    fn setup_token_works_once_and_only_until_an_admin_exists(mut store: Store) {
        let connection = store.db_mut();
        let token = new_setup_token(connection).unwrap().unwrap();
        let admin = || FirstAdmin {
            name: "Ada",
            email: "ada@example.com",
            password_hash: "x",
            team_name: "North",
        };
        assert!(matches!(
            complete_setup(connection, "wrong", admin()),
            Err(AuthError::LinkNotValid)
        ));
        let (user, team) = complete_setup(connection, &token, admin()).unwrap();
        assert!(user.is_admin);
        assert_eq!(memberships(connection, &user.id).unwrap()[0].id, team.id);
        assert!(matches!(
            complete_setup(connection, &token, admin()),
            Err(AuthError::LinkNotValid)
        ));
        assert!(new_setup_token(connection).unwrap().is_none());
    }

    fn an_invitation_is_used_once_and_only_by_its_email(mut store: Store) {
        let connection = store.db_mut();
        let team = create_team(connection, "North").unwrap();
        let token = create_invitation(connection, &team, Role::Rep, Some("bo@example.com"), DAY_MS)
            .unwrap();
        let other = create_user(connection, "cy@example.com", "Cy", "x", false).unwrap();
        assert!(matches!(
            use_invitation(connection, &token, &other),
            Err(AuthError::InvitationForAnotherEmail(_))
        ));
        let bo = create_user(connection, "bo@example.com", "Bo", "x", false).unwrap();
        use_invitation(connection, &token, &bo).unwrap();
        assert!(matches!(
            use_invitation(connection, &token, &bo),
            Err(AuthError::LinkNotValid)
        ));
        assert_eq!(memberships(connection, &bo.id).unwrap()[0].role, Role::Rep);
    }
}
