//! Copying and moving a deployment with the real binaries: `fieldnotes admin backup` while a
//! client keeps syncing, restored into a fresh server; and `fieldnotes admin migrate` from a
//! SQLite deployment to a fresh PostgreSQL database (127.0.0.1:5432, or
//! `FIELDNOTES_TEST_POSTGRES`; unreachable fails), run twice, with the server started on it.
//! Start: `cargo test -p fieldnotes-e2e --test backup_migrate`.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use automerge::sync;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ROOT, ScalarValue};
use common::auth::{AdminOutput, http, sign_in, sign_in_cookie};
use common::backend::{self, Backend};
use common::raw::{Peer, new_doc_id, new_peer_id, sorted};
use common::server::{Server, server_bin};

/// Bytes that do not compress, so the database really grows by about `len`.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The files in `dir` whose name contains `partial` (a backup's temporary file).
fn partial_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("partial"))
        .collect()
}

/// The refusal of `fieldnotes admin backup --to FILE` on PostgreSQL: a failure that names
/// `pg_dump` with the exact command (and `pg_restore`), and no file written.
fn assert_refused_with_pg_dump_hint(out: &AdminOutput, file: &Path) {
    assert_ne!(out.status, 0, "backup on PostgreSQL must fail: {out:?}");
    let command = format!("pg_dump --format=custom --file={}", file.display());
    assert!(
        out.stderr.contains(&command) && out.stderr.contains("postgres://"),
        "the refusal must give the pg_dump command ({command} 'postgres://…'): {:?}",
        out.stderr
    );
    assert!(
        out.stderr.contains("pg_restore --dbname="),
        "and how to restore: {:?}",
        out.stderr
    );
    assert!(!file.exists(), "nothing may be written on PostgreSQL");
}

/// What the pushing client has had acknowledged so far: (document, its heads then), in order.
type Acked = Arc<Mutex<Vec<(String, Vec<ChangeHash>)>>>;

/// Pushes a new change to one of four documents after another, each only once the previous one
/// is acknowledged (a server sync message whose heads are ours), until `stop`.
async fn push_continuously(
    server_sync: common::raw::Endpoint,
    acked: Acked,
    stop: Arc<AtomicBool>,
) {
    let mut peer = Peer::join(&server_sync, &new_peer_id("pusher")).await;
    let mut docs: Vec<(String, AutoCommit, sync::State)> = (0..4)
        .map(|_| (new_doc_id(), AutoCommit::new(), sync::State::new()))
        .collect();
    let mut n: i64 = 0;
    while !stop.load(Ordering::SeqCst) {
        let (id, doc, state) = &mut docs[n as usize % 4];
        doc.put(ROOT, format!("edit{n}"), n).unwrap();
        doc.commit();
        peer.push(id, doc, state)
            .await
            .unwrap_or_else(|e| panic!("push {n} of {id}: {e}"));
        acked.lock().unwrap().push((id.clone(), doc.get_heads()));
        n += 1;
    }
    peer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_a_client_pushes_restores_every_change_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("fieldnotes-backup.sqlite3");
    if backend::backend() == Backend::Postgres {
        // A PostgreSQL deployment is backed up with pg_dump; the command says so.
        let out = server
            .admin()
            .run(&["backup", "--to", file.to_str().unwrap()], None);
        assert_refused_with_pg_dump_hint(&out, &file);
        return;
    }

    // Six documents of 1 MiB each: the backup takes several steps of pages.
    let mut big = Vec::new();
    let mut peer = Peer::join(&server.sync(), &new_peer_id("loader")).await;
    for i in 0..6u64 {
        let id = new_doc_id();
        let mut doc = AutoCommit::new();
        doc.put(
            ROOT,
            "attachment",
            ScalarValue::Bytes(noise(1 << 20, i + 1)),
        )
        .unwrap();
        doc.commit();
        peer.push(&id, &mut doc, &mut sync::State::new())
            .await
            .unwrap();
        big.push((id, doc.get_heads()));
    }
    peer.close().await;

    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = tokio::spawn(push_continuously(
        server.sync(),
        acked.clone(),
        stop.clone(),
    ));
    let wait_for = |count: usize| {
        let acked = acked.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while acked.lock().unwrap().len() < count {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the pusher got no {count} acknowledgements in 60 s"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_for(10).await;

    // Everything acknowledged before the backup begins must be in it.
    let before: Vec<(String, Vec<ChangeHash>)> = acked.lock().unwrap().clone();
    let admin = server.admin();
    let to = file.clone();
    let out = tokio::task::spawn_blocking(move || {
        admin.run(&["backup", "--to", to.to_str().unwrap()], None)
    })
    .await
    .unwrap();
    let during = acked.lock().unwrap().len() - before.len();
    let so_far = acked.lock().unwrap().len();
    wait_for(so_far + 5).await;
    stop.store(true, Ordering::SeqCst);
    pusher.await.unwrap();

    assert_eq!(out.status, 0, "backup failed: {out:?}");
    eprintln!(
        "{} changes acknowledged before the backup, {during} while it ran",
        before.len()
    );
    assert!(
        during > 0,
        "the server acknowledged no change while the backup ran: it must keep writing"
    );
    assert!(file.is_file(), "no backup at {}", file.display());
    assert_eq!(partial_files(backups.path()), Vec::<String>::new());
    let token = server.default_user().token.clone();
    drop(server);

    // Restore: the file becomes a fresh data dir's fieldnotes.sqlite3; a fresh server on it.
    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&file, restored.path().join("fieldnotes.sqlite3")).unwrap();
    let server = Server::start_existing(restored.path());
    let mut last: HashMap<String, Vec<ChangeHash>> = HashMap::new();
    for (id, heads) in before.iter().cloned().chain(big) {
        last.insert(id, heads);
    }
    assert_eq!(last.len(), 10);
    let mut fresh = Peer::join(&server.sync_as(&token), &new_peer_id("fresh")).await;
    for (id, heads) in &last {
        let (_, mut doc, _) = fresh
            .pull(id, None)
            .await
            .unwrap_or_else(|e| panic!("the restored server lost {id}: {e}"));
        for head in heads {
            assert!(
                doc.get_change_by_hash(head).is_some(),
                "change {head} of {id} was acknowledged before the backup began and is not in it"
            );
        }
    }
    fresh.close().await;

    assert!(
        out.stderr.contains("10 document(s)") && out.stderr.contains("1 user(s)"),
        "the backup says what it copied: {:?}",
        out.stderr
    );
    assert!(
        out.stderr.contains("MiB") && out.stderr.contains("fieldnotes.sqlite3"),
        "its size and where to restore it: {:?}",
        out.stderr
    );
}

#[tokio::test]
async fn a_backup_never_replaces_an_existing_file_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    // about the file the backup writes, so on SQLite whatever the backend switch says
    backend::pin(dir.path(), None);
    let server = Server::start(dir.path());
    let mut peer = Peer::join(&server.sync(), &new_peer_id("writer")).await;
    let id = new_doc_id();
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "name", "Bakery").unwrap();
    doc.commit();
    peer.push(&id, &mut doc, &mut sync::State::new())
        .await
        .unwrap();
    peer.close().await;

    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("existing.sqlite3");
    std::fs::write(&file, b"yesterday's backup").unwrap();
    let out = server
        .admin()
        .run(&["backup", "--to", file.to_str().unwrap()], None);
    assert_ne!(
        out.status, 0,
        "an existing file must not be replaced: {out:?}"
    );
    assert!(
        out.stderr.contains("already exists") && out.stderr.contains("--force"),
        "the refusal says why and how: {:?}",
        out.stderr
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"yesterday's backup");
    assert_eq!(partial_files(backups.path()), Vec::<String>::new());

    server
        .admin()
        .ok(&["backup", "--to", file.to_str().unwrap(), "--force"], None);
    let copy = rusqlite::Connection::open(&file).unwrap();
    let chunks: i64 = copy
        .query_row(
            "SELECT count(*) FROM chunks WHERE document_id = ?1",
            [&id],
            |row| row.get(0),
        )
        .unwrap();
    assert!(chunks > 0, "the forced backup holds the document");
    assert_eq!(partial_files(backups.path()), Vec::<String>::new());
}

#[test]
fn a_backup_of_a_postgresql_deployment_is_refused_with_the_pg_dump_command() {
    let dir = tempfile::tempdir().unwrap();
    // the refusal comes before any connection, so no database is needed
    backend::pin(
        dir.path(),
        Some("postgres://fieldnotes@127.0.0.1:5432/fieldnotes"),
    );
    let file = dir.path().join("fieldnotes.dump");
    let out = common::auth::Admin::new(&server_bin(), dir.path())
        .run(&["backup", "--to", file.to_str().unwrap()], None);
    assert_refused_with_pg_dump_hint(&out, &file);
    assert!(
        out.stderr
            .contains("'postgres://fieldnotes@127.0.0.1:5432/fieldnotes'"),
        "the command names this database: {:?}",
        out.stderr
    );
}

/// Every table `fieldnotes admin migrate` copies.
const TABLES: [&str; 10] = [
    "teams",
    "users",
    "memberships",
    "sessions",
    "invitations",
    "document_owners",
    "storage_owners",
    "sync_states",
    "chunks",
    "meta",
];

/// The row count of each of [`TABLES`] in a PostgreSQL database.
fn postgres_row_counts(url: &str) -> Vec<(String, i64)> {
    backend::with_client(url, |client| {
        TABLES
            .iter()
            .map(|table| {
                let n: i64 = client
                    .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                    .unwrap()
                    .get(0);
                (table.to_string(), n)
            })
            .collect()
    })
}

/// The row count of each of [`TABLES`] in a SQLite file.
fn sqlite_row_counts(path: &Path) -> Vec<(String, i64)> {
    let db = rusqlite::Connection::open(path).unwrap();
    TABLES
        .iter()
        .map(|table| {
            let n: i64 = db
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                    row.get(0)
                })
                .unwrap();
            (table.to_string(), n)
        })
        .collect()
}

#[tokio::test]
async fn a_sqlite_deployment_migrated_to_postgresql_twice_keeps_documents_passwords_and_sessions() {
    let source = tempfile::tempdir().unwrap();
    backend::pin(source.path(), None);
    let mut server = Server::start(source.path());
    let admin = server.admin();
    let team = server.default_team().id.clone();
    let default = server.default_user().clone();
    let dana = admin.user("dana@example.com", "Dana Reyes", &team, "manager");
    let lee = admin.user("lee@example.com", "Lee Park", &team, "rep");
    let invitation = admin.ok(&["invite", "--team", &team], None);
    assert!(invitation.contains("/#/invite/"), "{invitation}");
    let cookie = sign_in_cookie(server.port, &dana.email, &dana.password);

    // Several documents with several changes each, every change pushed (and stored) on its own.
    let mut heads = Vec::new();
    let mut peer = Peer::join(&server.sync(), &new_peer_id("phone")).await;
    for i in 0..4 {
        let id = new_doc_id();
        let mut doc = AutoCommit::new();
        let mut state = sync::State::new();
        for change in 0..5 {
            doc.put(ROOT, "name", format!("Account {i}, version {change}"))
                .unwrap();
            doc.put(ROOT, format!("visit{change}"), change as i64)
                .unwrap();
            doc.commit();
            peer.push(&id, &mut doc, &mut state).await.unwrap();
        }
        heads.push((id, sorted(doc.get_heads())));
    }
    peer.close().await;
    server.stop();
    drop(server);

    let database = backend::fresh_database();
    let sqlite = source.path().join("fieldnotes.sqlite3");
    let in_sqlite = sqlite_row_counts(&sqlite);
    let from = format!("sqlite:{}", sqlite.display());
    let migrate = || admin.run(&["migrate", "--from", &from, "--to", &database], None);
    let first = migrate();
    assert_eq!(first.status, 0, "first migrate failed: {first:?}");
    let after_first = postgres_row_counts(&database);
    assert_eq!(after_first, in_sqlite, "every row, once");
    let count = |table: &str| after_first.iter().find(|(t, _)| t == table).unwrap().1;
    assert_eq!(count("users"), 3, "{after_first:?}");
    // the default user's and two more tokens, and Dana's browser session
    assert_eq!(count("sessions"), 4, "{after_first:?}");
    assert!(count("chunks") >= 4, "{after_first:?}");

    // Again: safe, and nothing doubled.
    let second = migrate();
    assert_eq!(second.status, 0, "second migrate failed: {second:?}");
    assert!(
        second.stderr.contains("chunks: 0 copied")
            && second
                .stderr
                .lines()
                .filter(|l| l.contains("rows copied"))
                .all(|l| l.ends_with(": 0 rows copied")),
        "the second run copies nothing: {:?}",
        second.stderr
    );
    assert_eq!(
        postgres_row_counts(&database),
        after_first,
        "the second run changed rows"
    );

    let target = tempfile::tempdir().unwrap();
    backend::pin(target.path(), Some(&database));
    let server = Server::start_existing(target.path());

    // Every document, through a fresh client on the old token, has the heads it had.
    let mut fresh = Peer::join(&server.sync_as(&default.token), &new_peer_id("fresh")).await;
    for (id, before) in &heads {
        let (_, mut doc, _) = fresh
            .pull(id, None)
            .await
            .unwrap_or_else(|e| panic!("{id} after the move: {e}"));
        assert_eq!(&sorted(doc.get_heads()), before, "heads of {id} changed");
    }
    fresh.close().await;

    // Every user signs in with their old password.
    for user in [&default, &dana, &lee] {
        let answer = sign_in(server.port, &user.email, &user.password);
        assert_eq!(
            answer.status, 200,
            "{} cannot sign in with their old password: {}",
            user.email, answer.body
        );
    }
    // The old browser session and the old token still work.
    let session = http(
        server.port,
        "GET",
        "/api/session",
        &[("Cookie", &cookie)],
        None,
    );
    assert_eq!(session.status, 200, "old cookie: {}", session.body);
    assert_eq!(session.json()["user"]["email"], "dana@example.com");
    let bearer = format!("Bearer {}", lee.token);
    let session = http(
        server.port,
        "GET",
        "/api/session",
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(session.status, 200, "old token: {}", session.body);
    assert_eq!(session.json()["user"]["email"], "lee@example.com");
}
