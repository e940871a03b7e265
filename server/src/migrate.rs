//! `fieldnotes admin migrate --from sqlite:PATH --to postgres://…`: copies a deployment from
//! one database to another, every table, in one transaction on the target.
//!
//! Rerunning is safe: rows already in the target are kept (`ON CONFLICT DO NOTHING`), and a
//! chunk is copied only when the target does not hold the same bytes for that document, so
//! nothing is doubled and changes made on the target since the first run stay. The server
//! storage id is the source's, so phones keep their sync states.

use crate::db::{Kind, Value};
use crate::params;
use crate::storage::{Database, StorageError, Store};

/// Each table with its columns and their kinds, parents before children.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "teams",
        &[
            ("id", Kind::Text),
            ("name", Kind::Text),
            ("created_at", Kind::Int),
        ],
    ),
    (
        "users",
        &[
            ("id", Kind::Text),
            ("email", Kind::Text),
            ("name", Kind::Text),
            ("password_hash", Kind::Text),
            ("is_admin", Kind::Int),
            ("disabled_at", Kind::Int),
            ("created_at", Kind::Int),
        ],
    ),
    (
        "memberships",
        &[
            ("user_id", Kind::Text),
            ("team_id", Kind::Text),
            ("role", Kind::Text),
        ],
    ),
    (
        "sessions",
        &[
            ("token_hash", Kind::Blob),
            ("user_id", Kind::Text),
            ("kind", Kind::Text),
            ("label", Kind::Text),
            ("created_at", Kind::Int),
            ("expires_at", Kind::Int),
            ("revoked_at", Kind::Int),
        ],
    ),
    (
        "invitations",
        &[
            ("token_hash", Kind::Blob),
            ("team_id", Kind::Text),
            ("role", Kind::Text),
            ("email", Kind::Text),
            ("created_at", Kind::Int),
            ("expires_at", Kind::Int),
            ("used_at", Kind::Int),
        ],
    ),
    (
        "document_owners",
        &[
            ("document_id", Kind::Text),
            ("team_id", Kind::Text),
            ("claimed_by", Kind::Text),
            ("claimed_at", Kind::Int),
        ],
    ),
    (
        "storage_owners",
        &[("storage_id", Kind::Text), ("user_id", Kind::Text)],
    ),
    (
        "sync_states",
        &[
            ("document_id", Kind::Text),
            ("peer_storage_id", Kind::Text),
            ("state", Kind::Blob),
        ],
    ),
];

/// What was copied, per table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub rows: Vec<(String, u64)>,
    pub chunks: u64,
}

pub fn migrate(from: &Database, to: &Database) -> Result<Copied, StorageError> {
    let mut source = Store::open_database(from)?;
    let mut target = Store::open_database(to)?;
    let mut copied = Copied::default();
    let source_db = source.db_mut();
    let target_db = target.db_mut();
    target_db.transaction(|target_db| {
        for (table, columns) in TABLES {
            let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
            let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
            let insert = format!(
                "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
                names.join(", "),
                placeholders.join(", ")
            );
            let rows = source_db.query(&format!("SELECT {} FROM {table}", names.join(", ")), params![])?;
            let mut count = 0;
            for row in rows {
                let values: Vec<Value> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, kind))| match row.value(i) {
                        Value::Null(_) => Value::Null(*kind),
                        other => other,
                    })
                    .collect();
                let refs: Vec<&dyn crate::db::ToValue> =
                    values.iter().map(|v| v as &dyn crate::db::ToValue).collect();
                count += target_db.execute(&insert, &refs)?;
            }
            copied.rows.push((table.to_string(), count));
        }
        for row in source_db.query("SELECT key, value FROM meta", params![])? {
            let (key, value): (String, String) = (row.get(0)?, row.get(1)?);
            target_db.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
        }
        let chunks = source_db.query(
            "SELECT document_id, kind, data FROM chunks ORDER BY document_id, seq",
            params![],
        )?;
        for row in chunks {
            let (document, kind, data): (String, String, Vec<u8>) =
                (row.get(0)?, row.get(1)?, row.get(2)?);
            let present = target_db
                .query_opt(
                    "SELECT 1 FROM chunks WHERE document_id = ?1 AND data = ?2",
                    params![document, data],
                )?
                .is_some();
            if present {
                continue;
            }
            let sql = if target_db.is_postgres() {
                "INSERT INTO chunks (document_id, kind, data) VALUES (?1, ?2, ?3)"
            } else {
                "INSERT INTO chunks (document_id, seq, kind, data)
                 VALUES (?1, COALESCE((SELECT MAX(seq) FROM chunks WHERE document_id = ?1), 0) + 1, ?2, ?3)"
            };
            target_db.execute(sql, params![document, kind, data])?;
            copied.chunks += 1;
        }
        Ok::<_, StorageError>(())
    })?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use fieldnotes_sync::{DocStore, DocumentId, StorageId};

    use super::*;
    use crate::auth;

    #[test]
    fn a_sqlite_deployment_moves_to_postgres_and_a_rerun_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fieldnotes.sqlite3");
        let document = DocumentId::from_bytes([3; 16]);
        let (storage_id, token) = {
            let mut store = Store::open(&path).unwrap();
            let storage_id = store.server_storage_id(|| "sqlite-id".into()).unwrap();
            let db = store.db_mut();
            let team = auth::create_team(db, "North").unwrap();
            let user = auth::create_user(db, "dana@example.com", "Dana", "hash", false).unwrap();
            auth::set_membership(db, &user.id, &team.id, auth::Role::Rep).unwrap();
            let (token, _) =
                auth::create_session(db, &user, auth::SessionKind::Token, auth::DAY_MS, None)
                    .unwrap();
            store.append_changes(&document, b"one").unwrap();
            store.append_changes(&document, b"two").unwrap();
            store
                .save_sync_state(&document, &StorageId::from("phone"), b"state")
                .unwrap();
            store.commit().unwrap();
            (storage_id, token)
        };
        let database = crate::test_db::TestDatabase::new();
        let to = Database::Postgres(database.url.clone());
        let first = migrate(&Database::Sqlite(path.clone()), &to).unwrap();
        assert_eq!(first.chunks, 2);
        let again = migrate(&Database::Sqlite(path), &to).unwrap();
        assert_eq!(again.chunks, 0);
        assert!(again.rows.iter().all(|(_, n)| *n == 0), "{again:?}");

        let mut moved = Store::open_postgres(&database.url).unwrap();
        assert_eq!(
            moved.server_storage_id(|| "new".into()).unwrap(),
            storage_id
        );
        assert_eq!(
            moved.load_chunks(&document).unwrap(),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        assert_eq!(
            moved
                .load_sync_state(&document, &StorageId::from("phone"))
                .unwrap(),
            Some(b"state".to_vec())
        );
        let session = auth::session_by_token(moved.db_mut(), &token)
            .unwrap()
            .unwrap();
        assert_eq!(session.info.user.email, "dana@example.com");
        assert_eq!(session.info.teams[0].name, "North");
        let (_, hash) = auth::user_by_email(moved.db_mut(), "dana@example.com")
            .unwrap()
            .unwrap();
        assert_eq!(hash, "hash");
    }
}
