//! The SQLite [`DocStore`]: one database file, WAL mode, `synchronous=FULL`,
//! so a returned `COMMIT` is on disk.
//!
//! Schema (version 1, in `PRAGMA user_version`):
//!
//! - `meta(key TEXT PRIMARY KEY, value TEXT)`: `server_storage_id`.
//! - `chunks(document_id TEXT, seq INTEGER, kind TEXT, data BLOB)`: a
//!   document's chunks in `seq` order, at most one `snapshot` first, then
//!   `incremental` change chunks. Primary key `(document_id, seq)`.
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
//! Times are Unix milliseconds.
//!
//! Document ids are stored as their base58check text so an operator can find
//! a document with the id from its URL.

use std::path::Path;

use fieldnotes_sync::{DocStore, DocumentId, StorageId};
use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA_VERSION: i64 = 2;

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
";

/// What can go wrong in the SQLite store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "database schema version {found} is newer than this server's {supported}; upgrade the server"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("stored document id {0:?} is not a document id")]
    BadDocumentId(String),
}

/// The SQLite-backed store. Owned by the hub thread; not shared.
pub struct SqliteStore {
    connection: Connection,
    in_transaction: bool,
    frame: FrameSavepoint,
}

/// The savepoint that lets one frame's writes be taken back alone (`DocStore::undo_frame`).
/// Opened lazily at the frame's first write, so frames that write nothing cost no SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameSavepoint {
    None,
    Wanted,
    Open,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let connection = Connection::open(path)?;
        Self::setup(connection)
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, StorageError> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(connection: Connection) -> Result<Self, StorageError> {
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
        Ok(Self {
            connection,
            in_transaction: false,
            frame: FrameSavepoint::None,
        })
    }

    /// The server's storage id, created from `fresh` on first start and the
    /// same on every start after.
    pub fn server_storage_id(
        &mut self,
        fresh: impl FnOnce() -> String,
    ) -> Result<StorageId, StorageError> {
        let existing: Option<String> = self
            .connection
            .query_row(
                "SELECT value FROM meta WHERE key = 'server_storage_id'",
                [],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            return Ok(StorageId::new(id));
        }
        let id = fresh();
        self.connection.execute(
            "INSERT INTO meta (key, value) VALUES ('server_storage_id', ?1)",
            params![id],
        )?;
        Ok(StorageId::new(id))
    }

    /// A query against the database, for health checks.
    pub fn ping(&mut self) -> Result<(), StorageError> {
        self.connection
            .query_row("SELECT count(*) FROM meta", [], |row| row.get::<_, i64>(0))?;
        Ok(())
    }

    /// The connection, for the sign-in tables (`crate::auth`). Only between
    /// batches: the hub's batch transaction must not be open.
    pub fn connection_mut(&mut self) -> &mut Connection {
        debug_assert!(!self.in_transaction, "auth query inside a hub batch");
        &mut self.connection
    }

    /// The team that owns a document, if any.
    pub fn document_owner(
        &mut self,
        document: &DocumentId,
    ) -> Result<Option<String>, StorageError> {
        Ok(self
            .connection
            .prepare_cached("SELECT team_id FROM document_owners WHERE document_id = ?1")?
            .query_row(params![document.to_string()], |row| row.get(0))
            .optional()?)
    }

    /// Whether any chunk of the document is stored.
    pub fn has_document(&mut self, document: &DocumentId) -> Result<bool, StorageError> {
        Ok(self
            .connection
            .prepare_cached("SELECT 1 FROM chunks WHERE document_id = ?1 LIMIT 1")?
            .query_row(params![document.to_string()], |_| Ok(()))
            .optional()?
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
        self.begin()?;
        self.connection
            .prepare_cached(
                "INSERT INTO document_owners (document_id, team_id, claimed_by, claimed_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![document.to_string(), team, user, now_ms as i64])?;
        Ok(())
    }

    /// The user a peer storage id is bound to.
    pub fn storage_owner(&mut self, storage: &StorageId) -> Result<Option<String>, StorageError> {
        Ok(self
            .connection
            .prepare_cached("SELECT user_id FROM storage_owners WHERE storage_id = ?1")?
            .query_row(params![storage.as_str()], |row| row.get(0))
            .optional()?)
    }

    /// Binds a peer storage id to a user, inside the current batch.
    pub fn bind_storage(&mut self, storage: &StorageId, user: &str) -> Result<(), StorageError> {
        self.begin()?;
        self.connection
            .prepare_cached("INSERT INTO storage_owners (storage_id, user_id) VALUES (?1, ?2)")?
            .execute(params![storage.as_str(), user])?;
        Ok(())
    }

    fn begin(&mut self) -> Result<(), StorageError> {
        if !self.in_transaction {
            self.connection.execute_batch("BEGIN IMMEDIATE")?;
            self.in_transaction = true;
        }
        if self.frame == FrameSavepoint::Wanted {
            self.connection.execute_batch("SAVEPOINT frame")?;
            self.frame = FrameSavepoint::Open;
        }
        Ok(())
    }
}

impl DocStore for SqliteStore {
    type Error = StorageError;

    fn load_chunks(&mut self, document: &DocumentId) -> Result<Vec<Vec<u8>>, Self::Error> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT data FROM chunks WHERE document_id = ?1 ORDER BY seq")?;
        let rows = statement.query_map(params![document.to_string()], |row| {
            row.get::<_, Vec<u8>>(0)
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn append_changes(&mut self, document: &DocumentId, changes: &[u8]) -> Result<(), Self::Error> {
        self.begin()?;
        let mut statement = self.connection.prepare_cached(
            "INSERT INTO chunks (document_id, seq, kind, data)
             VALUES (?1, COALESCE((SELECT MAX(seq) FROM chunks WHERE document_id = ?1), 0) + 1, 'incremental', ?2)",
        )?;
        statement.execute(params![document.to_string(), changes])?;
        Ok(())
    }

    fn replace_with_snapshot(
        &mut self,
        document: &DocumentId,
        snapshot: &[u8],
    ) -> Result<(), Self::Error> {
        self.begin()?;
        let id = document.to_string();
        self.connection
            .prepare_cached("DELETE FROM chunks WHERE document_id = ?1")?
            .execute(params![id])?;
        self.connection
            .prepare_cached(
                "INSERT INTO chunks (document_id, seq, kind, data) VALUES (?1, 1, 'snapshot', ?2)",
            )?
            .execute(params![id, snapshot])?;
        Ok(())
    }

    fn load_sync_state(
        &mut self,
        document: &DocumentId,
        peer: &StorageId,
    ) -> Result<Option<Vec<u8>>, Self::Error> {
        let mut statement = self.connection.prepare_cached(
            "SELECT state FROM sync_states WHERE document_id = ?1 AND peer_storage_id = ?2",
        )?;
        Ok(statement
            .query_row(params![document.to_string(), peer.as_str()], |row| {
                row.get(0)
            })
            .optional()?)
    }

    fn save_sync_state(
        &mut self,
        document: &DocumentId,
        peer: &StorageId,
        state: &[u8],
    ) -> Result<(), Self::Error> {
        self.begin()?;
        self.connection
            .prepare_cached(
                "INSERT INTO sync_states (document_id, peer_storage_id, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (document_id, peer_storage_id) DO UPDATE SET state = excluded.state",
            )?
            .execute(params![document.to_string(), peer.as_str(), state])?;
        Ok(())
    }

    fn list_documents(&mut self) -> Result<Vec<DocumentId>, Self::Error> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT DISTINCT document_id FROM chunks")?;
        let ids = statement.query_map([], |row| row.get::<_, String>(0))?;
        let mut documents = Vec::new();
        for id in ids {
            let id = id?;
            documents.push(DocumentId::parse(&id).map_err(|_| StorageError::BadDocumentId(id))?);
        }
        Ok(documents)
    }

    fn commit(&mut self) -> Result<(), Self::Error> {
        self.frame = FrameSavepoint::None;
        if self.in_transaction {
            // Whether COMMIT succeeds or not, the transaction is over: on
            // failure SQLite has rolled it back or we do so in rollback().
            // COMMIT also releases the frame's savepoint.
            let result = self.connection.execute_batch("COMMIT");
            if result.is_ok() {
                self.in_transaction = false;
            }
            result?;
        }
        Ok(())
    }

    fn rollback(&mut self) {
        if self.in_transaction {
            // Fails only when SQLite already rolled back on its own.
            let _ = self.connection.execute_batch("ROLLBACK");
            self.in_transaction = false;
        }
        self.frame = FrameSavepoint::None;
    }

    fn begin_frame(&mut self) {
        if self.frame == FrameSavepoint::Open {
            // The previous frame's writes join the batch. Fails only if SQLite already ended
            // the transaction on its own, which the next write or the commit reports.
            let _ = self.connection.execute_batch("RELEASE frame");
        }
        self.frame = FrameSavepoint::Wanted;
    }

    fn undo_frame(&mut self) -> Result<(), Self::Error> {
        let open = self.frame == FrameSavepoint::Open;
        self.frame = FrameSavepoint::None;
        if open {
            self.connection
                .execute_batch("ROLLBACK TO frame; RELEASE frame")?;
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

    #[test]
    fn chunks_append_in_order_and_compact_into_one_snapshot() {
        let mut store = SqliteStore::open_in_memory().unwrap();
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

    #[test]
    fn rollback_discards_the_batch() {
        let mut store = SqliteStore::open_in_memory().unwrap();
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

    #[test]
    fn undo_frame_takes_back_only_the_last_frames_writes() {
        let mut store = SqliteStore::open_in_memory().unwrap();
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

    #[test]
    fn sync_states_upsert_per_document_and_peer() {
        let mut store = SqliteStore::open_in_memory().unwrap();
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
            let mut store = SqliteStore::open(&path).unwrap();
            store.append_changes(&id(1), b"durable").unwrap();
            store.commit().unwrap();
            store.server_storage_id(|| "first".into()).unwrap()
        };
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.server_storage_id(|| "second".into()).unwrap(), first);
        assert_eq!(
            store.load_chunks(&id(1)).unwrap(),
            vec![b"durable".to_vec()]
        );
        let mode: String = store
            .connection
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let synchronous: i64 = store
            .connection
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(synchronous, 2, "FULL");
    }
}
