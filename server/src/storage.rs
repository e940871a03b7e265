//! The [`DocStore`] over either backend ([`crate::db::Db`]): a SQLite file (WAL,
//! `synchronous=FULL`, so a returned `COMMIT` is on disk) or a PostgreSQL database (a
//! committed transaction is durable there; several instances may share it).
//!
//! Schema (SQLite: version in `PRAGMA user_version`; PostgreSQL: the `schema_version` table):
//!
//! - `meta(key TEXT PRIMARY KEY, value TEXT)`: `server_storage_id`.
//! - `chunks(document_id TEXT, seq INTEGER, kind TEXT, data BLOB)`: a
//!   document's chunks in `seq` order, at most one `snapshot` first, then
//!   `incremental` change chunks. SQLite: primary key `(document_id, seq)`, `seq` counted per
//!   document; PostgreSQL: `seq` is one `BIGSERIAL` for all documents, so instances appending
//!   at the same moment never collide.
//! - `sync_states(document_id TEXT, peer_storage_id TEXT, state BLOB)`: the
//!   encoded `automerge::sync::State` per document and peer storage.
//!
//! Version 2 adds sign-in and ownership (see `docs/auth.md`):
//!
//! - `teams`, `users`, `memberships(user_id, team_id, role)`;
//! - `sessions(token_hash, user_id, kind, created_at, expires_at, revoked_at)`:
//!   only the SHA-256 of a session token is stored;
//! - `invitations(token_hash, team_id, role, email, expires_at, used_at)`;
//! - `document_owners(document_id, team_id)`: the team each document belongs to;
//! - `storage_owners(storage_id, user_id)`: the user a peer storage id is bound to.
//!
//! Version 3 adds `sign_in_failures(key, window_started_ms, failures)`: the failed sign-ins
//! per `email:<email>` and `addr:<ip>` in their current window (`crate::auth::throttle`), so
//! every instance on one database counts the same attempts. Rows live one window; they are
//! not copied by `fieldnotes admin migrate`.
//!
//! Times are Unix milliseconds.
//!
//! **Compaction with concurrent writers.** The store remembers, per document, the `seq` of
//! every chunk it loaded or appended (what the hub's copy in memory is made of).
//! `replace_with_snapshot` deletes exactly those chunks and puts the snapshot in the place of
//! the last one; a chunk another instance appended meanwhile is not among them and stays. (A
//! plain "`seq` ≤ the last loaded" would not do on PostgreSQL: a sequence number is drawn at
//! insert time, so a chunk with a smaller `seq` can commit after a larger one was read.)
//!
//! **Writes wait for the commit.** The hub's writes in a batch (chunks, snapshots, sync
//! states, document claims, storage bindings) are held in memory and written by `commit` in
//! one transaction of a few statements whatever their number: on PostgreSQL, one `INSERT …
//! SELECT FROM unnest(…)` per table and one `pg_notify` for every document, so a batch of
//! 512 frames costs a handful of round trips instead of several per frame. Reads inside the
//! batch see the held writes (a document unloaded and loaded again, a claim, a binding). One
//! frame's writes are taken back by dropping them (`undo_frame`), with no savepoint. Held
//! writes over 16 MiB are written into the open transaction at the next frame's start, so a
//! batch of large frames is not held whole in memory; frames are never split, so undoing one
//! still only drops held writes. A claim another instance made first fails the whole batch at
//! its commit (primary key), so nothing of it is acknowledged.
//!
//! Document ids are stored as their base58check text so an operator can find
//! a document with the id from its URL.

use std::collections::HashMap;
use std::path::Path;

use fieldnotes_sync::{DocStore, DocumentId, StorageId};

use crate::db::{Db, DbError, PgConnection, Value};
use crate::params;

const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    document_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('snapshot', 'incremental')),
    data BLOB NOT NULL,
    PRIMARY KEY (document_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_states (
    document_id TEXT NOT NULL,
    peer_storage_id TEXT NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (document_id, peer_storage_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS teams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL DEFAULT 0,
    disabled_at INTEGER,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS memberships (
    user_id TEXT NOT NULL REFERENCES users (id),
    team_id TEXT NOT NULL REFERENCES teams (id),
    role TEXT NOT NULL CHECK (role IN ('rep', 'manager')),
    PRIMARY KEY (user_id, team_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL CHECK (kind IN ('browser', 'token')),
    label TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id);
CREATE TABLE IF NOT EXISTS invitations (
    token_hash BLOB PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams (id),
    role TEXT NOT NULL CHECK (role IN ('rep', 'manager')),
    email TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS document_owners (
    document_id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams (id),
    claimed_by TEXT,
    claimed_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS storage_owners (
    storage_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sign_in_failures (
    key TEXT PRIMARY KEY,
    window_started_ms INTEGER NOT NULL,
    failures INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sign_in_failures_by_window ON sign_in_failures (window_started_ms);
";

const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    seq BIGSERIAL PRIMARY KEY,
    document_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('snapshot', 'incremental')),
    data BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks (document_id, seq);
CREATE TABLE IF NOT EXISTS sync_states (
    document_id TEXT NOT NULL,
    peer_storage_id TEXT NOT NULL,
    state BYTEA NOT NULL,
    PRIMARY KEY (document_id, peer_storage_id)
);
CREATE TABLE IF NOT EXISTS teams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_admin BIGINT NOT NULL DEFAULT 0,
    disabled_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS memberships (
    user_id TEXT NOT NULL REFERENCES users (id),
    team_id TEXT NOT NULL REFERENCES teams (id),
    role TEXT NOT NULL CHECK (role IN ('rep', 'manager')),
    PRIMARY KEY (user_id, team_id)
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL CHECK (kind IN ('browser', 'token')),
    label TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id);
CREATE TABLE IF NOT EXISTS invitations (
    token_hash BYTEA PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams (id),
    role TEXT NOT NULL CHECK (role IN ('rep', 'manager')),
    email TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE TABLE IF NOT EXISTS document_owners (
    document_id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams (id),
    claimed_by TEXT,
    claimed_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS storage_owners (
    storage_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id)
);
CREATE TABLE IF NOT EXISTS sign_in_failures (
    key TEXT PRIMARY KEY,
    window_started_ms BIGINT NOT NULL,
    failures BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS sign_in_failures_by_window ON sign_in_failures (window_started_ms);
";

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(
        "database schema version {found} is newer than this server's {supported}; upgrade the server"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("stored document id {0:?} is not a document id")]
    BadDocumentId(String),
    #[error("document {0} was claimed by another team first")]
    ClaimedByAnotherTeam(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(error: rusqlite::Error) -> Self {
        StorageError::Db(error.into())
    }
}

impl From<postgres::Error> for StorageError {
    fn from(error: postgres::Error) -> Self {
        StorageError::Db(error.into())
    }
}

/// Where the server keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL connection URL (`postgres://user@host:port/db`).
    Postgres(String),
    /// SQLite in memory, for tests.
    Memory,
}

impl Database {
    /// `postgres://…` or `postgresql://…` is PostgreSQL; `sqlite:PATH` or a plain path is a
    /// SQLite file.
    pub fn parse(text: &str) -> Database {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Database::Postgres(text.to_string())
        } else {
            Database::Sqlite(text.strip_prefix("sqlite:").unwrap_or(text).into())
        }
    }

    /// Where, in words for an operator: the path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Memory => "memory".into(),
            Database::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    let credentials = &url[scheme + 3..at];
                    match credentials.split_once(':') {
                        Some((user, _)) => {
                            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
                        }
                        None => url.clone(),
                    }
                }
                _ => url.clone(),
            },
        }
    }
}

/// The document store. Owned by the hub thread; not shared.
pub struct Store {
    db: Db,
    /// A transaction is open in the database (a batch spilled into it, or is being written).
    in_transaction: bool,
    /// The batch's writes, in the order the hub made them, held until `commit` writes them
    /// in a handful of statements (see "Writes wait for the commit" in the module docs).
    pending: Vec<Pending>,
    /// Bytes of data in `pending`.
    pending_bytes: usize,
    /// Where the current frame's writes begin in `pending` (`DocStore::undo_frame`).
    frame_start: usize,
    /// Writing held writes early failed: the batch they belong to must not commit.
    spill_error: Option<StorageError>,
    /// Per document, the `seq` of every chunk the hub's copy is made of (loaded or appended
    /// here): what a snapshot may replace.
    folded: HashMap<DocumentId, Vec<i64>>,
    /// PostgreSQL: the URL (to reconnect and to listen) and this instance's id, which names
    /// its notifications so it can ignore its own.
    postgres: Option<(String, String)>,
    /// Documents whose chunks this batch wrote: notified to the other instances on commit.
    notify: std::collections::BTreeSet<DocumentId>,
}

/// One write of the batch, not yet in the database.
#[derive(Debug)]
enum Pending {
    Append {
        document: DocumentId,
        data: Vec<u8>,
    },
    /// A compacted snapshot; `replaces` is the stored chunks it folds in (the batch's own
    /// earlier appends to the document are folded in too, and are not written).
    Snapshot {
        document: DocumentId,
        data: Vec<u8>,
        replaces: Vec<i64>,
    },
    SyncState {
        document: DocumentId,
        peer: StorageId,
        state: Vec<u8>,
    },
    Claim {
        document: DocumentId,
        team: String,
        user: String,
        at_ms: i64,
    },
    Bind {
        storage: StorageId,
        user: String,
    },
}

impl Pending {
    fn bytes(&self) -> usize {
        match self {
            Pending::Append { data, .. } | Pending::Snapshot { data, .. } => data.len(),
            Pending::SyncState { state, .. } => state.len(),
            Pending::Claim { team, user, .. } => team.len() + user.len(),
            Pending::Bind { user, .. } => user.len(),
        }
    }

    /// The document whose chunks this write changes.
    fn chunk_document(&self) -> Option<&DocumentId> {
        match self {
            Pending::Append { document, .. } | Pending::Snapshot { document, .. } => Some(document),
            _ => None,
        }
    }
}

/// PostgreSQL refuses a notification payload of 8000 bytes or more.
const NOTIFY_PAYLOAD_BYTES: usize = 7900;

/// The notifications for a commit: `"<instance> <document> <document> …"`, as few as fit. One
/// per document made every instance's listener (the writer's own included, which PostgreSQL
/// also notifies) wake once per document: under a flood of new documents that listener spent
/// about as much CPU as the hub.
fn notification_payloads(
    instance: &str,
    documents: &std::collections::BTreeSet<DocumentId>,
) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut payload = String::new();
    for document in documents {
        let id = document.to_string();
        if !payload.is_empty() && payload.len() + 1 + id.len() > NOTIFY_PAYLOAD_BYTES {
            payloads.push(std::mem::take(&mut payload));
        }
        if payload.is_empty() {
            payload.push_str(instance);
        }
        payload.push(' ');
        payload.push_str(&id);
    }
    if !payload.is_empty() {
        payloads.push(payload);
    }
    payloads
}

/// Held writes beyond this many bytes go into the open transaction at the next frame's start,
/// so a batch of large frames does not hold them all in memory.
const SPILL_BYTES: usize = 16 << 20;

/// The key of the advisory lock instances take while they migrate the schema.
const MIGRATION_LOCK: i64 = 0x6669_656c_646e;

impl Store {
    /// Opens (creating or migrating if needed) the database.
    pub fn open_database(database: &Database) -> Result<Self, StorageError> {
        match database {
            Database::Sqlite(path) => Self::open(path),
            Database::Memory => Self::open_in_memory(),
            Database::Postgres(url) => Self::open_postgres(url),
        }
    }

    /// Opens (creating if needed) the SQLite database at `path`.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let connection = rusqlite::Connection::open(path)?;
        Self::setup_sqlite(connection)
    }

    /// An in-memory SQLite database, for tests.
    pub fn open_in_memory() -> Result<Self, StorageError> {
        Self::setup_sqlite(rusqlite::Connection::open_in_memory()?)
    }

    /// Connects to PostgreSQL and migrates its schema.
    pub fn open_postgres(url: &str) -> Result<Self, StorageError> {
        let mut db = Db::Postgres(Box::new(PgConnection::connect(url)?));
        // Instances starting together migrate one after the other.
        db.execute("SELECT pg_advisory_lock(?1)", params![MIGRATION_LOCK])?;
        let migrated = Self::migrate_postgres(&mut db);
        let unlocked = db.execute("SELECT pg_advisory_unlock(?1)", params![MIGRATION_LOCK]);
        migrated?;
        unlocked?;
        let mut store = Self::with(db);
        store.postgres = Some((url.to_string(), crate::auth::new_token()));
        Ok(store)
    }

    /// PostgreSQL: a database a newer server has migrated is not ours to write.
    fn refuse_a_newer_schema(db: &mut Db) -> Result<(), StorageError> {
        let found: Option<i64> = db
            .query_opt("SELECT max(version) FROM schema_version", params![])?
            .map(|row| row.get::<Option<i64>>(0))
            .transpose()?
            .flatten();
        match found {
            Some(found) if found > SCHEMA_VERSION => Err(StorageError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            }),
            _ => Ok(()),
        }
    }

    fn migrate_postgres(db: &mut Db) -> Result<(), StorageError> {
        // `CREATE … IF NOT EXISTS` on every start would log a notice per table.
        db.batch("SET client_min_messages = warning")?;
        db.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
        Self::refuse_a_newer_schema(db)?;
        db.transaction(|db| {
            db.batch(POSTGRES_SCHEMA)?;
            db.execute("DELETE FROM schema_version", params![])?;
            db.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                params![SCHEMA_VERSION],
            )?;
            Ok::<_, StorageError>(())
        })
    }

    fn setup_sqlite(connection: rusqlite::Connection) -> Result<Self, StorageError> {
        // WAL lets readers (backups, the sqlite3 shell) run beside the writer;
        // FULL makes every commit durable, which the sync replies promise.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StorageError::SchemaTooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        connection.execute_batch(SCHEMA)?;
        connection.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Self::with(Db::Sqlite(connection)))
    }

    fn with(db: Db) -> Self {
        Self {
            db,
            in_transaction: false,
            pending: Vec::new(),
            pending_bytes: 0,
            frame_start: 0,
            spill_error: None,
            folded: HashMap::new(),
            postgres: None,
            notify: Default::default(),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.db.is_postgres()
    }

    /// PostgreSQL: the URL and instance id the LISTEN thread needs.
    pub fn listen_target(&self) -> Option<(String, String)> {
        self.postgres.clone()
    }

    /// PostgreSQL: when the connection is gone (the server restarted, the network cut), a
    /// new one. Between batches only; until it succeeds every batch fails and nothing is
    /// acknowledged.
    pub fn reconnect_if_lost(&mut self) {
        let Some((url, _)) = &self.postgres else {
            return;
        };
        let lost = match &self.db {
            Db::Postgres(pg) => pg.client.is_closed(),
            Db::Sqlite(_) => false,
        };
        if !lost || self.in_transaction || !self.pending.is_empty() {
            return;
        }
        let connected = PgConnection::connect(url)
            .map_err(StorageError::from)
            .and_then(|connection| {
                let mut db = Db::Postgres(Box::new(connection));
                // A newer server may have migrated the database while this one was cut off.
                Self::refuse_a_newer_schema(&mut db)?;
                Ok(db)
            });
        match connected {
            Ok(db) => {
                tracing::info!("reconnected to the database");
                self.db = db;
            }
            Err(error @ StorageError::SchemaTooNew { .. }) => tracing::error!(
                %error,
                "the database was migrated by a newer server; this instance acknowledges nothing until it is upgraded"
            ),
            Err(error) => tracing::warn!(%error, "the database is unreachable; retrying"),
        }
    }

    #[cfg(test)]
    fn sqlite_connection(&self) -> &rusqlite::Connection {
        match &self.db {
            Db::Sqlite(connection) => connection,
            Db::Postgres(_) => panic!("not SQLite"),
        }
    }

    /// The server's storage id, created from `fresh` on first start and the
    /// same on every start after (several instances on one database share it).
    pub fn server_storage_id(
        &mut self,
        fresh: impl FnOnce() -> String,
    ) -> Result<StorageId, StorageError> {
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES ('server_storage_id', ?1)
             ON CONFLICT (key) DO NOTHING",
            params![fresh()],
        )?;
        let id: String = self
            .db
            .query_one(
                "SELECT value FROM meta WHERE key = 'server_storage_id'",
                params![],
            )?
            .get(0)?;
        Ok(StorageId::new(id))
    }

    /// A query against the database, for health checks.
    pub fn ping(&mut self) -> Result<(), StorageError> {
        self.db.query_one("SELECT count(*) FROM meta", params![])?;
        Ok(())
    }

    /// The connection, for the sign-in tables (`crate::auth`). Only between
    /// batches: the hub's batch transaction must not be open.
    pub fn db_mut(&mut self) -> &mut Db {
        debug_assert!(
            !self.in_transaction && self.pending.is_empty(),
            "auth query inside a hub batch"
        );
        &mut self.db
    }

    /// The team that owns a document, if any.
    pub fn document_owner(
        &mut self,
        document: &DocumentId,
    ) -> Result<Option<String>, StorageError> {
        let claimed = self.pending.iter().find_map(|write| match write {
            Pending::Claim {
                document: d, team, ..
            } if d == document => Some(team.clone()),
            _ => None,
        });
        if claimed.is_some() {
            return Ok(claimed);
        }
        Ok(self
            .db
            .query_opt(
                "SELECT team_id FROM document_owners WHERE document_id = ?1",
                params![document.to_string()],
            )?
            .map(|row| row.get(0))
            .transpose()?)
    }

    /// Whether any chunk of the document is stored.
    pub fn has_document(&mut self, document: &DocumentId) -> Result<bool, StorageError> {
        if self
            .pending
            .iter()
            .any(|write| write.chunk_document() == Some(document))
        {
            return Ok(true);
        }
        Ok(self
            .db
            .query_opt(
                "SELECT 1 FROM chunks WHERE document_id = ?1 LIMIT 1",
                params![document.to_string()],
            )?
            .is_some())
    }

    /// Gives an unowned document to a team, inside the current batch.
    pub fn claim_document(
        &mut self,
        document: &DocumentId,
        team: &str,
        user: &str,
        now_ms: u64,
    ) -> Result<(), StorageError> {
        self.hold(Pending::Claim {
            document: *document,
            team: team.to_string(),
            user: user.to_string(),
            at_ms: now_ms as i64,
        });
        Ok(())
    }

    /// The user a peer storage id is bound to.
    pub fn storage_owner(&mut self, storage: &StorageId) -> Result<Option<String>, StorageError> {
        let bound = self.pending.iter().find_map(|write| match write {
            Pending::Bind { storage: s, user } if s == storage => Some(user.clone()),
            _ => None,
        });
        if bound.is_some() {
            return Ok(bound);
        }
        Ok(self
            .db
            .query_opt(
                "SELECT user_id FROM storage_owners WHERE storage_id = ?1",
                params![storage.as_str()],
            )?
            .map(|row| row.get(0))
            .transpose()?)
    }

    /// Binds a peer storage id to a user, inside the current batch.
    pub fn bind_storage(&mut self, storage: &StorageId, user: &str) -> Result<(), StorageError> {
        self.hold(Pending::Bind {
            storage: storage.clone(),
            user: user.to_string(),
        });
        Ok(())
    }

    /// Keeps a write for the commit.
    fn hold(&mut self, write: Pending) {
        self.pending_bytes += write.bytes();
        self.pending.push(write);
    }

    fn begin(&mut self) -> Result<(), StorageError> {
        if !self.in_transaction {
            let begin = if self.db.is_postgres() {
                "BEGIN"
            } else {
                "BEGIN IMMEDIATE"
            };
            self.db.batch(begin)?;
            self.in_transaction = true;
        }
        Ok(())
    }

    /// Writes every held write into the open transaction (opening it if needed), in a few
    /// statements whatever their number: owners and bindings, then snapshots with the chunks
    /// they replace, then appended chunks, then the last sync state per document and peer.
    fn write_pending(&mut self) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.begin()?;
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.frame_start = 0;

        // Per document: the last snapshot (the only one written) and every chunk any of its
        // snapshots replaces.
        let mut last_snapshot: HashMap<DocumentId, usize> = HashMap::new();
        let mut replaced: HashMap<DocumentId, Vec<i64>> = HashMap::new();
        for (at, write) in pending.iter().enumerate() {
            if let Pending::Snapshot {
                document, replaces, ..
            } = write
            {
                last_snapshot.insert(*document, at);
                replaced
                    .entry(*document)
                    .or_default()
                    .extend(replaces.iter().copied());
            }
        }

        let mut claims = Vec::new();
        let mut appends: Vec<(DocumentId, &[u8])> = Vec::new();
        let mut states: HashMap<(DocumentId, &StorageId), &[u8]> = HashMap::new();
        for (at, write) in pending.iter().enumerate() {
            match write {
                Pending::Claim {
                    document,
                    team,
                    user,
                    at_ms,
                } => {
                    claims.push((document.to_string(), team.clone(), user.clone(), *at_ms));
                }
                Pending::Bind { storage, user } => {
                    self.db.execute(
                        "INSERT INTO storage_owners (storage_id, user_id) VALUES (?1, ?2)",
                        params![storage.as_str(), user],
                    )?;
                }
                Pending::Append { document, data } => {
                    // Folded into a later snapshot of this batch: not written.
                    if last_snapshot.get(document).is_none_or(|&s| s < at) {
                        appends.push((*document, data));
                    }
                }
                Pending::SyncState {
                    document,
                    peer,
                    state,
                } => {
                    states.insert((*document, peer), state);
                }
                Pending::Snapshot { .. } => {}
            }
        }
        self.write_claims(claims)?;
        for (document, at) in &last_snapshot {
            let Pending::Snapshot { data, .. } = &pending[*at] else {
                unreachable!("indexed as a snapshot")
            };
            let replaces = replaced.remove(document).unwrap_or_default();
            self.write_snapshot(document, data, &replaces)?;
        }
        self.write_appends(&appends)?;
        self.write_sync_states(&states)?;
        Ok(())
    }

    /// Writes the batch's claims: (document, team, user, time).
    fn write_claims(
        &mut self,
        mut claims: Vec<(String, String, String, i64)>,
    ) -> Result<(), StorageError> {
        if claims.is_empty() {
            return Ok(());
        }
        // In document order, so that two instances claiming overlapping documents wait for
        // each other's row locks in the same order instead of deadlocking.
        claims.sort_unstable();
        let mut documents = Vec::with_capacity(claims.len());
        let mut teams = Vec::with_capacity(claims.len());
        let mut users = Vec::with_capacity(claims.len());
        let mut times = Vec::with_capacity(claims.len());
        for (document, team, user, time) in claims {
            documents.push(document);
            teams.push(team);
            users.push(user);
            times.push(time);
        }
        // Another instance may have claimed one of these documents meanwhile (two phones of a
        // team pushing a new account through two instances at once). For the same team that
        // changes nothing: the first claim stands. For another team the batch fails: its frames
        // are not acknowledged, and the client syncs again against the stored owner. The
        // check is a statement of its own, so that it sees a claim another instance committed
        // while this insert waited for it.
        if self.db.is_postgres() {
            self.db.execute(
                "INSERT INTO document_owners (document_id, team_id, claimed_by, claimed_at)
                 SELECT d, t, u, c FROM unnest(?1::TEXT[], ?2::TEXT[], ?3::TEXT[], ?4::BIGINT[])
                     AS claim(d, t, u, c)
                 ON CONFLICT (document_id) DO NOTHING",
                params![
                    Value::Texts(documents.clone()),
                    Value::Texts(teams.clone()),
                    Value::Texts(users),
                    Value::Ints(times)
                ],
            )?;
            let taken = self.db.query(
                "SELECT o.document_id FROM document_owners o
                 JOIN unnest(?1::TEXT[], ?2::TEXT[]) AS claim(d, t) ON o.document_id = claim.d
                 WHERE o.team_id <> claim.t",
                params![Value::Texts(documents), Value::Texts(teams)],
            )?;
            if let Some(row) = taken.first() {
                return Err(StorageError::ClaimedByAnotherTeam(row.get(0)?));
            }
        } else {
            for (((document, team), user), time) in
                documents.iter().zip(&teams).zip(&users).zip(times)
            {
                self.db.execute(
                    "INSERT INTO document_owners (document_id, team_id, claimed_by, claimed_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![document, team, user, time],
                )?;
            }
        }
        Ok(())
    }

    fn write_snapshot(
        &mut self,
        document: &DocumentId,
        snapshot: &[u8],
        replaces: &[i64],
    ) -> Result<(), StorageError> {
        let id = document.to_string();
        // Only the chunks the snapshot was made from; whatever another instance appended
        // meanwhile stays after it.
        for seq in replaces {
            self.db.execute(
                "DELETE FROM chunks WHERE document_id = ?1 AND seq = ?2",
                params![id, *seq],
            )?;
        }
        let seq: i64 = match replaces.iter().max() {
            Some(last) => self
                .db
                .query_one(
                    "INSERT INTO chunks (document_id, seq, kind, data) VALUES (?1, ?2, 'snapshot', ?3)
                     RETURNING seq",
                    params![id, *last, snapshot],
                )?
                .get(0)?,
            // Nothing known to replace: keep every chunk, add the snapshot after them.
            None if self.db.is_postgres() => self
                .db
                .query_one(
                    "INSERT INTO chunks (document_id, kind, data) VALUES (?1, 'snapshot', ?2)
                     RETURNING seq",
                    params![id, snapshot],
                )?
                .get(0)?,
            None => self.sqlite_insert_chunk(document, "snapshot", snapshot)?,
        };
        self.folded.insert(*document, vec![seq]);
        self.notify.insert(*document);
        Ok(())
    }

    fn write_appends(&mut self, appends: &[(DocumentId, &[u8])]) -> Result<(), StorageError> {
        if appends.is_empty() {
            return Ok(());
        }
        if self.db.is_postgres() {
            let documents: Vec<String> = appends.iter().map(|(d, _)| d.to_string()).collect();
            let data: Vec<Vec<u8>> = appends.iter().map(|(_, c)| c.to_vec()).collect();
            let rows = self.db.query(
                "INSERT INTO chunks (document_id, kind, data)
                 SELECT d, 'incremental', c FROM unnest(?1::TEXT[], ?2::BYTEA[]) AS chunk(d, c)
                 RETURNING seq, document_id",
                params![Value::Texts(documents), Value::Blobs(data)],
            )?;
            for row in rows {
                let seq: i64 = row.get(0)?;
                let id: String = row.get(1)?;
                let document =
                    DocumentId::parse(&id).map_err(|_| StorageError::BadDocumentId(id))?;
                self.folded.entry(document).or_default().push(seq);
                self.notify.insert(document);
            }
        } else {
            for (document, changes) in appends {
                let seq = self.sqlite_insert_chunk(document, "incremental", changes)?;
                self.folded.entry(*document).or_default().push(seq);
                self.notify.insert(*document);
            }
        }
        Ok(())
    }

    /// SQLite: a chunk after the document's last one (`seq` is counted per document there).
    fn sqlite_insert_chunk(
        &mut self,
        document: &DocumentId,
        kind: &str,
        data: &[u8],
    ) -> Result<i64, StorageError> {
        Ok(self
            .db
            .query_one(
                "INSERT INTO chunks (document_id, seq, kind, data)
                 VALUES (?1, COALESCE((SELECT MAX(seq) FROM chunks WHERE document_id = ?1), 0) + 1,
                         ?2, ?3)
                 RETURNING seq",
                params![document.to_string(), kind, data],
            )?
            .get(0)?)
    }

    fn write_sync_states(
        &mut self,
        states: &HashMap<(DocumentId, &StorageId), &[u8]>,
    ) -> Result<(), StorageError> {
        if states.is_empty() {
            return Ok(());
        }
        if self.db.is_postgres() {
            let mut documents = Vec::with_capacity(states.len());
            let mut peers = Vec::with_capacity(states.len());
            let mut data = Vec::with_capacity(states.len());
            for ((document, peer), state) in states {
                documents.push(document.to_string());
                peers.push(peer.as_str().to_string());
                data.push(state.to_vec());
            }
            self.db.execute(
                "INSERT INTO sync_states (document_id, peer_storage_id, state)
                 SELECT d, p, s FROM unnest(?1::TEXT[], ?2::TEXT[], ?3::BYTEA[]) AS state(d, p, s)
                 ON CONFLICT (document_id, peer_storage_id) DO UPDATE SET state = excluded.state",
                params![
                    Value::Texts(documents),
                    Value::Texts(peers),
                    Value::Blobs(data)
                ],
            )?;
        } else {
            for ((document, peer), state) in states {
                self.db.execute(
                    "INSERT INTO sync_states (document_id, peer_storage_id, state) VALUES (?1, ?2, ?3)
                     ON CONFLICT (document_id, peer_storage_id) DO UPDATE SET state = excluded.state",
                    params![document.to_string(), peer.as_str(), *state],
                )?;
            }
        }
        Ok(())
    }
}

impl DocStore for Store {
    type Error = StorageError;

    fn load_chunks(&mut self, document: &DocumentId) -> Result<Vec<Vec<u8>>, Self::Error> {
        let rows = self.db.query(
            "SELECT seq, data FROM chunks WHERE document_id = ?1 ORDER BY seq",
            params![document.to_string()],
        )?;
        // The batch's own writes to it, not yet in the database: a snapshot takes the place
        // of what it replaces, and appends follow.
        let last_snapshot = self.pending.iter().rposition(
            |write| matches!(write, Pending::Snapshot { document: d, .. } if d == document),
        );
        let mut replaced = std::collections::HashSet::new();
        for write in &self.pending {
            if let Pending::Snapshot {
                document: d,
                replaces,
                ..
            } = write
                && d == document
            {
                replaced.extend(replaces.iter().copied());
            }
        }
        let mut seqs = Vec::with_capacity(rows.len());
        let mut chunks = Vec::with_capacity(rows.len() + 1);
        if let Some(at) = last_snapshot
            && let Pending::Snapshot { data, .. } = &self.pending[at]
        {
            chunks.push(data.clone());
        }
        for row in rows {
            let seq = row.get::<i64>(0)?;
            if !replaced.contains(&seq) {
                seqs.push(seq);
                chunks.push(row.get::<Vec<u8>>(1)?);
            }
        }
        let after = last_snapshot.map_or(0, |at| at + 1);
        for write in &self.pending[after..] {
            if let Pending::Append { document: d, data } = write
                && d == document
            {
                chunks.push(data.clone());
            }
        }
        self.folded.insert(*document, seqs);
        Ok(chunks)
    }

    fn append_changes(&mut self, document: &DocumentId, changes: &[u8]) -> Result<(), Self::Error> {
        self.hold(Pending::Append {
            document: *document,
            data: changes.to_vec(),
        });
        Ok(())
    }

    fn replace_with_snapshot(
        &mut self,
        document: &DocumentId,
        snapshot: &[u8],
    ) -> Result<(), Self::Error> {
        let replaces = self.folded.get(document).cloned().unwrap_or_default();
        self.hold(Pending::Snapshot {
            document: *document,
            data: snapshot.to_vec(),
            replaces,
        });
        Ok(())
    }

    fn load_sync_state(
        &mut self,
        document: &DocumentId,
        peer: &StorageId,
    ) -> Result<Option<Vec<u8>>, Self::Error> {
        let held = self.pending.iter().rev().find_map(|write| match write {
            Pending::SyncState {
                document: d,
                peer: p,
                state,
            } if d == document && p == peer => Some(state.clone()),
            _ => None,
        });
        if held.is_some() {
            return Ok(held);
        }
        Ok(self
            .db
            .query_opt(
                "SELECT state FROM sync_states WHERE document_id = ?1 AND peer_storage_id = ?2",
                params![document.to_string(), peer.as_str()],
            )?
            .map(|row| row.get(0))
            .transpose()?)
    }

    fn save_sync_state(
        &mut self,
        document: &DocumentId,
        peer: &StorageId,
        state: &[u8],
    ) -> Result<(), Self::Error> {
        self.hold(Pending::SyncState {
            document: *document,
            peer: peer.clone(),
            state: state.to_vec(),
        });
        Ok(())
    }

    fn list_documents(&mut self) -> Result<Vec<DocumentId>, Self::Error> {
        let rows = self
            .db
            .query("SELECT DISTINCT document_id FROM chunks", params![])?;
        let mut documents = std::collections::BTreeSet::new();
        for row in rows {
            let id: String = row.get(0)?;
            documents.insert(DocumentId::parse(&id).map_err(|_| StorageError::BadDocumentId(id))?);
        }
        documents.extend(self.pending.iter().filter_map(Pending::chunk_document));
        Ok(documents.into_iter().collect())
    }

    fn commit(&mut self) -> Result<(), Self::Error> {
        if let Some(error) = self.spill_error.take() {
            return Err(error);
        }
        self.write_pending()?;
        let notify = std::mem::take(&mut self.notify);
        if self.in_transaction {
            // Delivered to the listeners when (and only if) the transaction commits.
            if let Some((_, instance)) = &self.postgres
                && !notify.is_empty()
            {
                let payloads = notification_payloads(instance, &notify);
                self.db.execute(
                    "SELECT pg_notify('fieldnotes_documents', p) FROM unnest(?1::TEXT[]) AS n(p)",
                    params![Value::Texts(payloads)],
                )?;
            }
            // Whether COMMIT succeeds or not, the transaction is over: on
            // failure the database has rolled it back or we do so in rollback().
            let result = self.db.batch("COMMIT");
            if result.is_ok() {
                self.in_transaction = false;
            }
            result?;
        }
        Ok(())
    }

    fn rollback(&mut self) {
        if self.in_transaction {
            // Fails only when the database already rolled back on its own.
            let _ = self.db.batch("ROLLBACK");
            self.in_transaction = false;
        }
        self.pending.clear();
        self.pending_bytes = 0;
        self.frame_start = 0;
        self.spill_error = None;
        self.notify.clear();
    }

    fn begin_frame(&mut self) {
        if self.pending_bytes > SPILL_BYTES
            && let Err(error) = self.write_pending()
        {
            // Those writes are no longer held: the batch fails at its commit.
            self.spill_error = Some(error);
        }
        self.frame_start = self.pending.len();
    }

    fn undo_frame(&mut self) -> Result<(), Self::Error> {
        // Spills happen only between frames, so the frame's writes are all still held.
        for write in self.pending.drain(self.frame_start..) {
            self.pending_bytes -= write.bytes();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> DocumentId {
        DocumentId::from_bytes([n; 16])
    }

    use crate::test_db::on_both_backends;

    #[test]
    fn notifications_carry_many_documents_each_and_stay_under_postgres_limit() {
        let documents: std::collections::BTreeSet<DocumentId> = (0..1000u32)
            .map(|n| {
                let mut bytes = [0u8; 16];
                bytes[..4].copy_from_slice(&n.to_be_bytes());
                DocumentId::from_bytes(bytes)
            })
            .collect();
        let payloads = notification_payloads("instance", &documents);
        assert!(payloads.len() < 10, "{} notifications", payloads.len());
        let mut seen = std::collections::BTreeSet::new();
        for payload in &payloads {
            assert!(payload.len() < 8000);
            let mut words = payload.split(' ');
            assert_eq!(words.next(), Some("instance"));
            for word in words {
                seen.insert(DocumentId::parse(word).unwrap());
            }
        }
        assert_eq!(seen, documents);
        assert!(notification_payloads("instance", &Default::default()).is_empty());
    }

    /// The rows a claim and a binding refer to.
    fn add_teams_and_user(store: &mut Store, teams: &[&str]) {
        for team in teams {
            store
                .db
                .execute(
                    "INSERT INTO teams (id, name, created_at) VALUES (?1, ?1, 0)",
                    params![*team],
                )
                .unwrap();
        }
        store
            .db
            .execute(
                "INSERT INTO users (id, email, name, password_hash, created_at)
                 VALUES ('user', 'user@example.com', 'User', 'x', 0)",
                params![],
            )
            .unwrap();
    }

    on_both_backends!(
        chunks_append_in_order_and_compact_into_one_snapshot,
        rollback_discards_the_batch,
        undo_frame_takes_back_only_the_last_frames_writes,
        sync_states_upsert_per_document_and_peer,
        a_batch_reads_the_writes_it_holds,
        a_large_batch_spills_between_frames_and_still_undoes_and_rolls_back
    );

    #[test]
    fn postgres_refuses_a_newer_schema_and_migrates_an_empty_database_once() {
        let database = crate::test_db::TestDatabase::new();
        let mut first = Store::open_postgres(&database.url).unwrap();
        let id_one = first.server_storage_id(|| "one".into()).unwrap();
        // A second instance on the same database shares the storage id.
        let mut second = Store::open_postgres(&database.url).unwrap();
        assert_eq!(second.server_storage_id(|| "two".into()).unwrap(), id_one);
        second
            .db
            .batch("UPDATE schema_version SET version = 99")
            .unwrap();
        let refused = Store::open_postgres(&database.url).err().expect("refused");
        assert!(
            matches!(
                refused,
                StorageError::SchemaTooNew {
                    found: 99,
                    supported: SCHEMA_VERSION
                }
            ),
            "{refused}"
        );
        assert!(refused.to_string().contains("upgrade the server"));
    }

    /// A version 2 database (before shared sign-in counts) gains `sign_in_failures` on start.
    #[test]
    fn a_version_2_database_is_migrated_to_shared_sign_in_counts() {
        fn has_counts(store: &mut Store) -> bool {
            store
                .db
                .query_opt("SELECT count(*) FROM sign_in_failures", params![])
                .is_ok()
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fieldnotes.sqlite3");
        {
            let mut store = Store::open(&path).unwrap();
            store.db.batch("DROP TABLE sign_in_failures").unwrap();
            store
                .sqlite_connection()
                .pragma_update(None, "user_version", 2)
                .unwrap();
            assert!(!has_counts(&mut store));
        }
        let mut store = Store::open(&path).unwrap();
        assert!(has_counts(&mut store));
        let version: i64 = store
            .sqlite_connection()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 3);

        let database = crate::test_db::TestDatabase::new();
        {
            let mut store = Store::open_postgres(&database.url).unwrap();
            store
                .db
                .batch("DROP TABLE sign_in_failures; UPDATE schema_version SET version = 2")
                .unwrap();
            assert!(!has_counts(&mut store));
        }
        let mut store = Store::open_postgres(&database.url).unwrap();
        assert!(has_counts(&mut store));
        let version: i64 = store
            .db
            .query_one("SELECT max(version) FROM schema_version", params![])
            .unwrap()
            .get(0)
            .unwrap();
        assert_eq!(version, 3);
    }

    /// Two instances append to one document while a third compacts it: every change stays.
    #[test]
    fn postgres_compaction_keeps_what_other_writers_appended() {
        let database = crate::test_db::TestDatabase::new();
        let mut compactor = Store::open_postgres(&database.url).unwrap();
        compactor.append_changes(&id(1), b"c0").unwrap();
        compactor.commit().unwrap();
        assert_eq!(compactor.load_chunks(&id(1)).unwrap().len(), 1);

        let writers: Vec<_> = (0..2)
            .map(|w| {
                let url = database.url.clone();
                std::thread::spawn(move || {
                    let mut store = Store::open_postgres(&url).unwrap();
                    for n in 0..50 {
                        store
                            .append_changes(&id(1), format!("w{w}-{n}").as_bytes())
                            .unwrap();
                        store.commit().unwrap();
                    }
                })
            })
            .collect();
        // Compact repeatedly while they write: each snapshot folds what this store loaded.
        let mut folded_in = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let chunks = compactor.load_chunks(&id(1)).unwrap();
            for chunk in &chunks {
                for part in String::from_utf8_lossy(chunk).split('|') {
                    folded_in.insert(part.to_string());
                }
            }
            let snapshot = folded_in.iter().cloned().collect::<Vec<_>>().join("|");
            compactor
                .replace_with_snapshot(&id(1), snapshot.as_bytes())
                .unwrap();
            compactor.commit().unwrap();
        }
        for writer in writers {
            writer.join().unwrap();
        }
        let mut everything = std::collections::BTreeSet::new();
        for chunk in compactor.load_chunks(&id(1)).unwrap() {
            for part in String::from_utf8_lossy(&chunk).split('|') {
                everything.insert(part.to_string());
            }
        }
        assert!(everything.contains("c0"));
        for w in 0..2 {
            for n in 0..50 {
                assert!(everything.contains(&format!("w{w}-{n}")), "w{w}-{n} lost");
            }
        }
        assert_eq!(everything.len(), 101);
    }

    fn chunks_append_in_order_and_compact_into_one_snapshot(mut store: Store) {
        store.append_changes(&id(1), b"a").unwrap();
        store.append_changes(&id(1), b"b").unwrap();
        store.append_changes(&id(2), b"x").unwrap();
        // Reads inside the batch see its writes.
        assert_eq!(
            store.load_chunks(&id(1)).unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        store.commit().unwrap();
        store.replace_with_snapshot(&id(1), b"snap").unwrap();
        store.append_changes(&id(1), b"c").unwrap();
        store.commit().unwrap();
        assert_eq!(
            store.load_chunks(&id(1)).unwrap(),
            vec![b"snap".to_vec(), b"c".to_vec()]
        );
        assert_eq!(store.load_chunks(&id(3)).unwrap(), Vec::<Vec<u8>>::new());
        let mut listed = store.list_documents().unwrap();
        listed.sort();
        assert_eq!(listed, vec![id(1), id(2)]);
    }

    fn rollback_discards_the_batch(mut store: Store) {
        store.append_changes(&id(1), b"kept").unwrap();
        store.commit().unwrap();
        store.append_changes(&id(1), b"lost").unwrap();
        store
            .save_sync_state(&id(1), &StorageId::from("p"), b"s")
            .unwrap();
        store.rollback();
        assert_eq!(store.load_chunks(&id(1)).unwrap(), vec![b"kept".to_vec()]);
        assert_eq!(
            store
                .load_sync_state(&id(1), &StorageId::from("p"))
                .unwrap(),
            None
        );
    }

    fn undo_frame_takes_back_only_the_last_frames_writes(mut store: Store) {
        store.begin_frame();
        store.append_changes(&id(1), b"first frame").unwrap();
        store.begin_frame();
        store.append_changes(&id(1), b"second frame").unwrap();
        store
            .save_sync_state(&id(1), &StorageId::from("p"), b"s")
            .unwrap();
        store.undo_frame().unwrap();
        // A frame that writes nothing undoes nothing.
        store.begin_frame();
        store.undo_frame().unwrap();
        store.begin_frame();
        store.append_changes(&id(2), b"third frame").unwrap();
        store.commit().unwrap();
        assert_eq!(
            store.load_chunks(&id(1)).unwrap(),
            vec![b"first frame".to_vec()]
        );
        assert_eq!(
            store.load_chunks(&id(2)).unwrap(),
            vec![b"third frame".to_vec()]
        );
        assert_eq!(
            store
                .load_sync_state(&id(1), &StorageId::from("p"))
                .unwrap(),
            None
        );
        // The next batch starts clean.
        store.begin_frame();
        store.append_changes(&id(3), b"next batch").unwrap();
        store.commit().unwrap();
        assert_eq!(store.load_chunks(&id(3)).unwrap().len(), 1);
    }

    /// Writes wait for the commit, so every read inside the batch must see them as the
    /// database will: a document unloaded and loaded again in one batch, a claim, a binding.
    fn a_batch_reads_the_writes_it_holds(mut store: Store) {
        add_teams_and_user(&mut store, &["team"]);
        let peer = StorageId::from("phone");
        store.append_changes(&id(1), b"a").unwrap();
        store.commit().unwrap();
        assert_eq!(store.load_chunks(&id(1)).unwrap(), vec![b"a".to_vec()]);

        store.begin_frame();
        store.append_changes(&id(1), b"b").unwrap();
        assert_eq!(
            store.load_chunks(&id(1)).unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        store.replace_with_snapshot(&id(1), b"ab").unwrap();
        store.append_changes(&id(1), b"c").unwrap();
        assert_eq!(
            store.load_chunks(&id(1)).unwrap(),
            vec![b"ab".to_vec(), b"c".to_vec()]
        );
        // A second snapshot in the batch folds the first.
        store.replace_with_snapshot(&id(1), b"abc").unwrap();
        store.append_changes(&id(1), b"d").unwrap();
        store.save_sync_state(&id(1), &peer, b"one").unwrap();
        store.save_sync_state(&id(1), &peer, b"two").unwrap();
        assert_eq!(
            store.load_sync_state(&id(1), &peer).unwrap(),
            Some(b"two".to_vec())
        );
        assert!(!store.has_document(&id(2)).unwrap());
        store.append_changes(&id(2), b"x").unwrap();
        assert!(store.has_document(&id(2)).unwrap());
        assert_eq!(store.document_owner(&id(2)).unwrap(), None);
        store.claim_document(&id(2), "team", "user", 5).unwrap();
        assert_eq!(store.document_owner(&id(2)).unwrap(), Some("team".into()));
        assert_eq!(store.storage_owner(&peer).unwrap(), None);
        store.bind_storage(&peer, "user").unwrap();
        assert_eq!(store.storage_owner(&peer).unwrap(), Some("user".into()));
        let mut listed = store.list_documents().unwrap();
        listed.sort();
        assert_eq!(listed, vec![id(1), id(2)]);
        store.commit().unwrap();

        // The same, read back from the database.
        assert_eq!(
            store.load_chunks(&id(1)).unwrap(),
            vec![b"abc".to_vec(), b"d".to_vec()]
        );
        assert_eq!(
            store.load_sync_state(&id(1), &peer).unwrap(),
            Some(b"two".to_vec())
        );
        assert_eq!(store.document_owner(&id(2)).unwrap(), Some("team".into()));
        assert_eq!(store.storage_owner(&peer).unwrap(), Some("user".into()));
        // And compaction still replaces exactly what it folded.
        store.replace_with_snapshot(&id(1), b"abcd").unwrap();
        store.commit().unwrap();
        assert_eq!(store.load_chunks(&id(1)).unwrap(), vec![b"abcd".to_vec()]);
    }

    fn a_large_batch_spills_between_frames_and_still_undoes_and_rolls_back(mut store: Store) {
        let big = vec![7u8; SPILL_BYTES + 1];
        store.begin_frame();
        store.append_changes(&id(1), &big).unwrap();
        // This frame's start writes the first frame into the open transaction.
        store.begin_frame();
        assert!(store.in_transaction && store.pending.is_empty());
        store.append_changes(&id(1), b"undone").unwrap();
        store.undo_frame().unwrap();
        store.begin_frame();
        store.append_changes(&id(1), b"kept").unwrap();
        assert_eq!(
            store.load_chunks(&id(1)).unwrap(),
            vec![big.clone(), b"kept".to_vec()]
        );
        store.commit().unwrap();
        assert_eq!(
            store.load_chunks(&id(1)).unwrap(),
            vec![big.clone(), b"kept".to_vec()]
        );

        store.begin_frame();
        store.append_changes(&id(2), &big).unwrap();
        store.begin_frame();
        store.append_changes(&id(2), b"more").unwrap();
        store.rollback();
        assert!(store.load_chunks(&id(2)).unwrap().is_empty());
    }

    /// Two instances claim one new document in the same moment: the second batch fails whole
    /// (nothing of it is stored), and the document keeps the first owner.
    #[test]
    fn postgres_a_claim_another_instance_made_first_for_another_team_fails_the_whole_batch() {
        let database = crate::test_db::TestDatabase::new();
        let mut first = Store::open_postgres(&database.url).unwrap();
        let mut second = Store::open_postgres(&database.url).unwrap();
        add_teams_and_user(&mut first, &["one", "two"]);
        for (store, team) in [(&mut first, "one"), (&mut second, "two")] {
            store.claim_document(&id(9), team, "user", 1).unwrap();
            store.append_changes(&id(9), team.as_bytes()).unwrap();
        }
        second.append_changes(&id(8), b"same batch").unwrap();
        first.commit().unwrap();
        assert!(second.commit().is_err());
        second.rollback();
        assert_eq!(second.document_owner(&id(9)).unwrap(), Some("one".into()));
        assert_eq!(second.load_chunks(&id(9)).unwrap(), vec![b"one".to_vec()]);
        assert!(second.load_chunks(&id(8)).unwrap().is_empty());
        // The next batch works.
        second.append_changes(&id(8), b"next").unwrap();
        second.commit().unwrap();
        assert_eq!(first.load_chunks(&id(8)).unwrap(), vec![b"next".to_vec()]);
    }

    #[test]
    fn postgres_a_claim_another_instance_made_first_for_the_same_team_stands_and_both_keep_their_changes()
     {
        // Two phones of one team pushing a new account through two instances at once: before,
        // the second commit failed on the primary key and every connection of its batch was
        // closed (found by the live-sockets benchmark).
        let database = crate::test_db::TestDatabase::new();
        let mut first = Store::open_postgres(&database.url).unwrap();
        let mut second = Store::open_postgres(&database.url).unwrap();
        add_teams_and_user(&mut first, &["one"]);
        for (store, data) in [(&mut first, b"first"), (&mut second, b"other")] {
            store.claim_document(&id(9), "one", "user", 1).unwrap();
            store.append_changes(&id(9), data).unwrap();
        }
        first.commit().unwrap();
        second.commit().unwrap();
        assert_eq!(second.document_owner(&id(9)).unwrap(), Some("one".into()));
        let mut stored = first.load_chunks(&id(9)).unwrap();
        stored.sort();
        assert_eq!(stored, vec![b"first".to_vec(), b"other".to_vec()]);
    }

    fn sync_states_upsert_per_document_and_peer(mut store: Store) {
        let peer = StorageId::from("laptop");
        store.save_sync_state(&id(1), &peer, b"one").unwrap();
        store.save_sync_state(&id(1), &peer, b"two").unwrap();
        store.commit().unwrap();
        assert_eq!(
            store.load_sync_state(&id(1), &peer).unwrap(),
            Some(b"two".to_vec())
        );
        assert_eq!(store.load_sync_state(&id(2), &peer).unwrap(), None);
    }

    #[test]
    fn storage_id_and_data_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fieldnotes.sqlite3");
        let first = {
            let mut store = Store::open(&path).unwrap();
            store.append_changes(&id(1), b"durable").unwrap();
            store.commit().unwrap();
            store.server_storage_id(|| "first".into()).unwrap()
        };
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.server_storage_id(|| "second".into()).unwrap(), first);
        assert_eq!(
            store.load_chunks(&id(1)).unwrap(),
            vec![b"durable".to_vec()]
        );
        let mode: String = store
            .sqlite_connection()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let synchronous: i64 = store
            .sqlite_connection()
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(synchronous, 2, "FULL");
    }
}
