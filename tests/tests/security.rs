//! Sign-in and access control (docs/auth.md) from the outside: two teams, North and South, on
//! one real server with its real database (the SQLite file, or PostgreSQL with
//! `FIELDNOTES_TEST_BACKEND=postgres`). Every way into the other team's data is tried, and
//! each must be refused AND leak nothing: no `sync` (nor any other data) for the victim's
//! document id reaches the attacker, no ephemeral message is relayed, and the victim's document
//! on the server is unchanged as the victim sees it. Positive checks beside each refusal make
//! sure the refusals are not vacuous (the same action by the right user works).
//!
//! Start: `cargo test -p fieldnotes-e2e --test security`.

mod common;

use std::time::{Duration, Instant};

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ROOT};
use common::auth::{self, Admin, Team, User, http, sign_in, sign_in_cookie};
use common::backend;
use common::cbor::{self, Value};
use common::raw::{
    self, ConnectError, Endpoint, Peer, Recv, Synced, new_doc_id, new_peer_id, sorted,
};
use common::server::{Server, server_bin};
use fieldnotes_model::{
    AccountId, AccountSummary, DirectoryDoc, Editor, TeamId, UserId, team_directory_key,
};
use fieldnotes_sync::DocumentId;

// ------------------------------------------------------------------------------------------
// The fixture

/// One server, two teams. North: Ana (rep, the victim) and Nils (manager, her teammate).
/// South: Sam (rep, the attacker). North already has one account document on the server.
struct Two {
    server: Server,
    _dir: tempfile::TempDir,
    admin: Admin,
    north: Team,
    south: Team,
    ana: User,
    nils: User,
    sam: User,
    north_doc_id: String,
    north_doc: AutoCommit,
}

impl Two {
    async fn new() -> Two {
        let dir = tempfile::tempdir().unwrap();
        // our binary, without the harness's default team: only North and South exist
        let server = Server::start_with(&server_bin(), dir.path());
        let admin = server.admin();
        let (north, mut n) = admin.team_with_users(
            "North",
            &[
                ("ana@north.example", "Ana North", "rep"),
                ("nils@north.example", "Nils North", "manager"),
            ],
        );
        let (south, mut s) =
            admin.team_with_users("South", &[("sam@south.example", "Sam South", "rep")]);
        let (ana, nils, sam) = (n.remove(0), n.remove(0), s.remove(0));
        let mut two = Two {
            _dir: dir,
            admin,
            north,
            south,
            ana,
            nils,
            sam,
            north_doc_id: new_doc_id(),
            north_doc: common::account_doc(1, 9),
            server,
        };
        let mut p = Peer::join(&two.ep(&two.ana), &new_peer_id("ana")).await;
        let (id, doc) = (two.north_doc_id.clone(), &mut two.north_doc);
        p.push(&id, doc, &mut sync::State::new())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "North's first push must be acknowledged: {e}\nserver log:\n{}",
                    two.server.stderr_tail()
                )
            });
        p.close().await;
        two
    }

    /// `/sync` as `user` (Bearer token; the user's first team).
    fn ep(&self, user: &User) -> Endpoint {
        self.server.sync_as(&user.token)
    }

    /// Mia: in South, and in North with `north_role`.
    fn mia_in_both_teams(&self, north_role: &str) -> User {
        let mia = self
            .admin
            .user("mia@both.example", "Mia Both", "South", "rep");
        self.admin
            .add_to_team(&mia.email, &self.north.id, north_role);
        mia
    }

    fn port(&self) -> u16 {
        self.server.port
    }

    fn north_heads(&self) -> Vec<ChangeHash> {
        heads_of(&self.north_doc)
    }

    /// North's document as the victim's teammate sees it now, through a fresh connection: it
    /// must be there with exactly the heads and content North gave it.
    async fn assert_north_doc_unchanged(&self, what: &str) {
        assert_doc_exactly(
            &self.ep(&self.nils),
            &self.north_doc_id,
            &self.north_doc,
            &format!("{what}: North's document as North sees it"),
        )
        .await;
    }
}

/// A fresh connection on `ep` pulls `id`: it must be there with exactly `doc`'s heads (not more)
/// and the same content.
async fn assert_doc_exactly(ep: &Endpoint, id: &str, doc: &AutoCommit, what: &str) {
    let mut p = Peer::join(ep, &new_peer_id("check")).await;
    let (r, got, st) = p
        .pull(id, None)
        .await
        .unwrap_or_else(|e| panic!("{what}: pull of {id} failed: {e}"));
    assert_eq!(r, Synced::Done, "{what}: {id} must be available");
    assert_eq!(
        heads_of(&got),
        heads_of(doc),
        "{what}: heads of {id} changed"
    );
    assert_eq!(
        st.their_heads.clone().map(sorted),
        Some(heads_of(doc)),
        "{what}: the server's heads of {id} changed"
    );
    assert_eq!(
        common::content(&got),
        common::content(doc),
        "{what}: content of {id} changed"
    );
    p.close().await;
}

/// A fresh connection on `ep` asks for `id` and must be answered doc-unavailable, with no data.
async fn assert_unavailable(ep: &Endpoint, id: &str, what: &str) {
    let mut p = Peer::join(ep, &new_peer_id("probe")).await;
    let (r, got, _) = p
        .pull(id, None)
        .await
        .unwrap_or_else(|e| panic!("{what}: request of {id} failed: {e}"));
    assert_eq!(r, Synced::Unavailable, "{what}: {id} must be unavailable");
    assert!(heads_of(&got).is_empty(), "{what}: data arrived for {id}");
    assert_nothing_about(&p, id, what);
    p.close().await;
}

/// Nothing about `doc_id` reached this peer except `doc-unavailable` (or an `error`): no `sync`,
/// no `request`, no `ephemeral`, no `remote-heads-changed`.
fn assert_nothing_about(p: &Peer, doc_id: &str, what: &str) {
    for m in &p.seen {
        if m.get_str("documentId") == Some(doc_id) {
            assert!(
                matches!(m.get_str("type"), Some("doc-unavailable") | Some("error")),
                "{what}: the server sent {} about {doc_id} to {}: {m}",
                m.get_str("type").unwrap_or("?"),
                p.id
            );
            assert!(
                m.get("data").is_none(),
                "{what}: a message about {doc_id} carried data: {m}"
            );
        }
    }
}

/// Read what else the server sends for `wait` (into `p.seen`); returns how the socket ended.
async fn drain(p: &mut Peer, wait: Duration) -> Recv {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match p.recv(left).await {
            Recv::Msg(_) => continue,
            other => return other,
        }
    }
}

/// The server must answer with `doc-unavailable` for `doc_id` (other messages are collected in
/// `p.seen`); an `error`, a close or silence is a failure.
async fn expect_doc_unavailable(p: &mut Peer, doc_id: &str, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match p.recv(left).await {
            Recv::Msg(m)
                if m.get_str("documentId") == Some(doc_id)
                    && m.get_str("type") == Some("doc-unavailable") =>
            {
                assert_eq!(m.get_str("targetId"), Some(p.id.as_str()), "{what}: {m}");
                return m;
            }
            Recv::Msg(_) => continue,
            other => panic!("{what}: expected doc-unavailable for {doc_id}, got {other:?}"),
        }
    }
}

/// The server must close this socket within `within` (messages before the close are collected);
/// returns the close code and reason.
async fn expect_closed(p: &mut Peer, within: Duration, what: &str) -> Option<(u16, String)> {
    let started = Instant::now();
    match drain(p, within).await {
        Recv::Closed(c) => {
            eprintln!("{what}: closed after {:?}: {c:?}", started.elapsed());
            c
        }
        other => panic!("{what}: the socket was not closed within {within:?}: {other:?}"),
    }
}

/// A revoked or expired session's socket: closed within 10 s with 4401 "signed out".
async fn expect_signed_out(p: &mut Peer, what: &str) {
    // 10 s per the contract, plus slack for a loaded 2-core machine
    let c = expect_closed(p, Duration::from_secs(13), what).await;
    let (code, reason) = c.unwrap_or_else(|| panic!("{what}: closed without a close frame"));
    assert_eq!(code, 4401, "{what}: close code (reason {reason:?})");
    assert_eq!(reason, "signed out", "{what}: close reason");
}

/// The upgrade must be refused with exactly this HTTP status.
async fn expect_refused(ep: &Endpoint, status: u16, what: &str) {
    match raw::try_connect(ep).await {
        Ok(_) => panic!("{what}: the /sync upgrade was accepted; expected HTTP {status}"),
        Err(ConnectError::Http { status: got, body }) => {
            assert_eq!(got, status, "{what}: refused with {got} ({body:?})")
        }
        Err(e) => panic!("{what}: expected HTTP {status}, got {e:?}"),
    }
}

/// The socket must get an `error` and/or be closed, and never a `peer` answer.
async fn expect_join_refused(mut ws: raw::Ws, what: &str) -> String {
    let mut got = Vec::new();
    loop {
        match raw::recv(&mut ws, Duration::from_secs(5)).await {
            Recv::Msg(m) if m.get_str("type") == Some("peer") => {
                panic!("{what}: the join was answered with peer: {m}")
            }
            Recv::Msg(m) if m.get_str("type") == Some("error") => {
                got.push(m.to_string());
                continue;
            }
            Recv::Msg(m) => panic!("{what}: unexpected answer to a refused join: {m}"),
            Recv::Closed(c) => return format!("{got:?} then closed {c:?}"),
            Recv::Timeout if !got.is_empty() => {
                panic!("{what}: error {got:?} but the socket was not closed within 5 s")
            }
            other => panic!("{what}: neither an error nor a close: {other:?}"),
        }
    }
}

/// Sorted heads of a document we hold by shared reference.
fn heads_of(d: &AutoCommit) -> Vec<ChangeHash> {
    sorted(d.clone().get_heads())
}

fn join_with_storage(peer_id: &str, storage_id: &str) -> Value {
    Value::map([
        ("type", Value::text("join")),
        ("senderId", Value::text(peer_id)),
        (
            "peerMetadata",
            Value::map([
                ("storageId", Value::text(storage_id)),
                ("isEphemeral", Value::Bool(false)),
            ]),
        ),
        (
            "supportedProtocolVersions",
            Value::Array(vec![Value::text("1")]),
        ),
    ])
}

fn ephemeral(from: &Peer, doc_id: &str, session: &str, count: u64, payload: &[u8]) -> Value {
    Value::map([
        ("type", Value::text("ephemeral")),
        ("senderId", Value::text(from.id.clone())),
        ("targetId", Value::text(from.server_id.clone())),
        ("documentId", Value::text(doc_id)),
        ("data", Value::Bytes(payload.to_vec())),
        ("count", Value::Uint(count)),
        ("sessionId", Value::text(session)),
    ])
}

/// The team directory's document id, as every device computes it.
fn directory_id(team: &Team) -> String {
    DocumentId::from_bytes(team_directory_key(&TeamId::new(team.id.clone()))).to_string()
}

/// A team directory as a device creates it offline (the deterministic genesis), with one
/// account listed by `who`.
fn directory_doc(team: &Team, who: &str, account: &str) -> AutoCommit {
    let editor = Editor::new(UserId::new(who), &raw::random_bytes::<16>()).unwrap();
    let mut dir = DirectoryDoc::genesis(&editor, &TeamId::new(team.id.clone())).unwrap();
    dir.add_account(
        &AccountId::new(new_doc_id()),
        &AccountSummary {
            name: account.to_string(),
            created_at: 1_700_000_000_000,
            archived: false,
        },
        1_700_000_000_000,
    )
    .unwrap();
    dir.into_automerge()
}

/// The sessions of `email` expire now (there is no other way to age a session from outside),
/// in the SQLite file or in the server's PostgreSQL database, whichever it uses.
fn expire_sessions_in_db(server: &Server, email: &str) -> usize {
    const EXPIRE: &str = "UPDATE sessions SET expires_at = 1 WHERE user_id = (SELECT id FROM users WHERE email = $1)";
    if let Some(url) = server.database_url() {
        let email = email.to_string();
        let n = backend::with_client(&url, move |db| {
            db.execute(EXPIRE, &[&email])
                .unwrap_or_else(|e| panic!("expiring the sessions of {email} in the database: {e}"))
        });
        return n as usize;
    }
    let db = rusqlite::Connection::open(server.data_dir.join("fieldnotes.sqlite3")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute(&EXPIRE.replace("$1", "?1"), [email])
        .unwrap_or_else(|e| panic!("expiring the sessions of {email} in the database: {e}"))
}

/// Every stored password hash, by email: from the SQLite file or the PostgreSQL database.
fn password_hashes(server: &Server) -> Vec<(String, String)> {
    const HASHES: &str = "SELECT email, password_hash FROM users ORDER BY email";
    if let Some(url) = server.database_url() {
        return backend::with_client(&url, |db| {
            db.query(HASHES, &[])
                .expect("users.password_hash")
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect()
        });
    }
    let db = rusqlite::Connection::open_with_flags(
        server.data_dir.join("fieldnotes.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut query = db.prepare(HASHES).unwrap();
    query
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|row| row.expect("users.password_hash"))
        .collect()
}

/// Everything the server stored, as bytes to search: the SQLite files (with the WAL and
/// journal), or on PostgreSQL the text form of every row of every table in its database.
fn stored_bytes(server: &Server) -> Vec<(String, Vec<u8>)> {
    if let Some(url) = server.database_url() {
        return backend::with_client(&url, |db| {
            let tables: Vec<String> = db
                .query(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = 'public' ORDER BY table_name",
                    &[],
                )
                .expect("the tables")
                .iter()
                .map(|row| row.get(0))
                .collect();
            assert!(
                tables.iter().any(|t| t == "users") && tables.iter().any(|t| t == "sessions"),
                "the server's tables are in the database: {tables:?}"
            );
            tables
                .into_iter()
                .map(|table| {
                    let rows = db
                        .query(&format!("SELECT t::text FROM \"{table}\" t"), &[])
                        .unwrap_or_else(|e| panic!("reading {table}: {e}"));
                    let text: String = rows.iter().map(|r| r.get::<_, String>(0)).collect();
                    (format!("table {table}"), text.into_bytes())
                })
                .collect()
        });
    }
    let db_path = server.data_dir.join("fieldnotes.sqlite3");
    let mut files = vec![db_path.clone()];
    for ext in ["-wal", "-journal"] {
        let p = db_path.with_file_name(format!("fieldnotes.sqlite3{ext}"));
        if p.exists() {
            files.push(p);
        }
    }
    files
        .into_iter()
        .map(|f| (f.display().to_string(), std::fs::read(&f).unwrap()))
        .collect()
}

// ------------------------------------------------------------------------------------------
// Positive checks: the same paths work for the right users (so the refusals mean something)

#[tokio::test]
async fn a_document_created_offline_is_claimed_by_the_syncing_users_team_on_first_sync() {
    let two = Two::new().await;
    // created offline: several changes before any connection
    let id = new_doc_id();
    let mut doc = common::account_doc(2, 6);
    let mut ana = Peer::join(&two.ep(&two.ana), &new_peer_id("ana")).await;
    let mut state = sync::State::new();
    ana.push(&id, &mut doc, &mut state)
        .await
        .expect("the first sync of an offline document is acknowledged");
    // North's teammate gets it...
    assert_doc_exactly(&two.ep(&two.nils), &id, &doc, "teammate pulls").await;
    // ...South does not
    assert_unavailable(
        &two.ep(&two.sam),
        &id,
        "South asks for North's new document",
    )
    .await;
    // and North's stored document from the fixture is there for a teammate too
    two.assert_north_doc_unchanged("fixture").await;
    // ana keeps editing; the teammate sees the edit
    doc.put(ROOT, "visits", 3).unwrap();
    doc.commit();
    ana.push(&id, &mut doc, &mut state)
        .await
        .expect("a later edit is acknowledged");
    assert_doc_exactly(&two.ep(&two.nils), &id, &doc, "teammate pulls the edit").await;
}

#[tokio::test]
async fn a_user_in_two_teams_claims_new_documents_for_the_connections_team() {
    let two = Two::new().await;
    let mia = two.mia_in_both_teams("manager");

    // ?team=South: a new document belongs to South
    let mut on_south = Peer::join(&two.ep(&mia).team(&two.south.id), &new_peer_id("mia-s")).await;
    let south_id = new_doc_id();
    let mut south_doc = common::account_doc(3, 3);
    on_south
        .push(&south_id, &mut south_doc, &mut sync::State::new())
        .await
        .expect("mia pushes on South");
    assert_doc_exactly(&two.ep(&two.sam), &south_id, &south_doc, "South pulls").await;
    assert_unavailable(&two.ep(&two.ana), &south_id, "North asks for South's doc").await;

    // no ?team=: the first team by name, North
    let mut on_default = Peer::join(&two.ep(&mia), &new_peer_id("mia-n")).await;
    let north_id = new_doc_id();
    let mut north_doc = common::account_doc(4, 3);
    on_default
        .push(&north_id, &mut north_doc, &mut sync::State::new())
        .await
        .expect("mia pushes without ?team=");
    assert_doc_exactly(&two.ep(&two.ana), &north_id, &north_doc, "North pulls").await;
    assert_unavailable(&two.ep(&two.sam), &north_id, "South asks for the doc").await;

    // one connection may read every document of the user's teams
    let (r, got, _) = on_south
        .pull(&two.north_doc_id, None)
        .await
        .expect("mia on ?team=South reads North's document");
    assert_eq!(r, Synced::Done);
    assert_eq!(heads_of(&got), two.north_heads());
}

// ------------------------------------------------------------------------------------------
// The WebSocket upgrade

#[tokio::test]
async fn the_sync_upgrade_needs_a_valid_session_and_a_team_of_the_user() {
    let two = Two::new().await;
    let url = two.server.ws_url();
    let plain = Endpoint::anonymous(&url);
    expect_refused(&plain, 401, "no credentials").await;
    expect_refused(&plain.clone().bearer(&"A".repeat(43)), 401, "unknown token").await;
    expect_refused(&plain.clone().bearer("garbage"), 401, "garbage token").await;
    expect_refused(
        &plain.clone().header("Authorization", &two.ana.token),
        401,
        "token without the Bearer scheme",
    )
    .await;
    expect_refused(
        &plain.clone().cookie("fieldnotes_session=nonsense"),
        401,
        "made-up cookie",
    )
    .await;
    // a real token, for a team the user is not in, or no team at all
    expect_refused(
        &two.ep(&two.sam).team(&two.north.id),
        403,
        "South's user asks for ?team=North",
    )
    .await;
    expect_refused(
        &two.ep(&two.sam).team(&"0".repeat(32)),
        403,
        "a team that does not exist",
    )
    .await;
    // positive controls: the same token without, and with its own team
    Peer::join(&two.ep(&two.sam), &new_peer_id("sam"))
        .await
        .close()
        .await;
    Peer::join(&two.ep(&two.sam).team(&two.south.id), &new_peer_id("sam"))
        .await
        .close()
        .await;
    // an HTTP request for the API without a session is refused the same way
    let r = http(two.port(), "GET", "/api/session", &[], None);
    assert_eq!(
        r.status, 401,
        "GET /api/session without a session: {}",
        r.body
    );
    assert!(
        r.json().get("error").and_then(|e| e.as_str()).is_some(),
        "errors are {{\"error\": …}}: {}",
        r.body
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let two = Two::new().await;
    // the contract's only way to age a token from outside: create it with no days left
    let o = two.admin.run(
        &["token", "create", "--email", &two.ana.email, "--days", "0"],
        None,
    );
    if o.status == 0 {
        let token = o.stdout.trim();
        assert!(auth::is_token(token), "token create printed {:?}", o.stdout);
        expect_refused(
            &two.server.sync_as(token),
            401,
            "a token created with --days 0",
        )
        .await;
        let r = http(
            two.port(),
            "GET",
            "/api/session",
            &[("Authorization", &format!("Bearer {token}"))],
            None,
        );
        assert_eq!(
            r.status, 401,
            "GET /api/session with a --days 0 token: {}",
            r.body
        );
    } else {
        eprintln!(
            "`token create --days 0` is refused ({}: {}); ageing the session in the database instead",
            o.status,
            o.stderr.trim()
        );
    }
    // a token that expires while its connection is open: closed within 10 s, then refused
    let eve = two
        .admin
        .user("eve@north.example", "Eve North", "North", "rep");
    let mut live = Peer::join(&two.ep(&eve), &new_peer_id("eve")).await;
    let mut bystander = Peer::join(&two.ep(&two.ana), &new_peer_id("ana")).await;
    let n = expire_sessions_in_db(&two.server, &eve.email);
    assert_eq!(n, 1, "eve has exactly one session");
    expect_refused(&two.ep(&eve), 401, "an expired token").await;
    expect_signed_out(&mut live, "the open connection of an expired token").await;
    // other users are not affected
    let mut d = two.north_doc.clone();
    d.put(ROOT, "afterExpiry", true).unwrap();
    d.commit();
    bystander
        .push(&two.north_doc_id, &mut d, &mut sync::State::new())
        .await
        .expect("another user's connection keeps syncing");
}

#[tokio::test]
async fn a_revoked_token_is_refused_and_its_open_connection_closed() {
    let two = Two::new().await;
    let mut live = Peer::join(&two.ep(&two.ana), &new_peer_id("ana")).await;
    let (r, _, _) = live.pull(&two.north_doc_id, None).await.unwrap();
    assert_eq!(
        r,
        Synced::Done,
        "before the revocation ana reads her document"
    );
    let mut bystander = Peer::join(&two.ep(&two.nils), &new_peer_id("nils")).await;
    let other_token = two.admin.token_create(&two.ana.email, None);

    two.admin.session_revoke(&two.ana.email);
    expect_refused(&two.ep(&two.ana), 401, "a revoked token").await;
    expect_refused(
        &two.server.sync_as(&other_token),
        401,
        "ana's other token (revoke is every session)",
    )
    .await;
    expect_signed_out(&mut live, "ana's open connection after session revoke").await;
    // nils (same team, not revoked) keeps syncing
    let mut d = two.north_doc.clone();
    d.put(ROOT, "byNils", true).unwrap();
    d.commit();
    bystander
        .push(&two.north_doc_id, &mut d, &mut sync::State::new())
        .await
        .expect("nils keeps syncing");
    // a new token for ana works again
    let fresh = two.admin.token_create(&two.ana.email, None);
    Peer::join(&two.server.sync_as(&fresh), &new_peer_id("ana-again"))
        .await
        .close()
        .await;
}

#[tokio::test]
async fn a_user_taken_out_of_a_team_loses_it_at_once_and_keeps_the_other() {
    let two = Two::new().await;
    let mia = two.mia_in_both_teams("rep");
    let mut on_north = Peer::join(&two.ep(&mia).team(&two.north.id), &new_peer_id("mia-n")).await;
    let (r, _, _) = on_north
        .pull(&two.north_doc_id, None)
        .await
        .expect("before: mia reads North's document");
    assert_eq!(r, Synced::Done);

    let out = two.admin.remove_from_team(&mia.email, &two.north.id);
    assert_eq!(out.status, 0, "remove-from-team: {}", out.stderr);
    expect_signed_out(&mut on_north, "mia's open connection to North").await;
    expect_refused(
        &two.ep(&mia).team(&two.north.id),
        403,
        "?team=North after removal",
    )
    .await;
    assert_unavailable(
        &two.ep(&mia).team(&two.south.id),
        &two.north_doc_id,
        "North's document through mia's South connection",
    )
    .await;
    two.assert_north_doc_unchanged("after mia left North").await;

    // South still works for her
    let mut on_south = Peer::join(&two.ep(&mia).team(&two.south.id), &new_peer_id("mia-s")).await;
    let id = new_doc_id();
    let mut doc = common::account_doc(5, 2);
    on_south
        .push(&id, &mut doc, &mut sync::State::new())
        .await
        .expect("mia still pushes on South");
    assert_doc_exactly(&two.ep(&two.sam), &id, &doc, "South pulls mia's document").await;

    // Removing again changes nothing and says so
    let again = two.admin.remove_from_team(&mia.email, &two.north.id);
    assert_ne!(again.status, 0, "removing twice must fail");
    assert!(
        again.stderr.contains("is not in"),
        "plain words: {:?}",
        again.stderr
    );
}

#[tokio::test]
async fn a_socket_of_another_team_hears_nothing_more_of_a_team_its_user_left() {
    // Mia is in North and South. On a socket opened for South she follows a North account;
    // then she is taken out of North. Her South socket stays open (South is still hers), but
    // a North member's later edits must not reach it.
    let two = Two::new().await;
    let mia = two.mia_in_both_teams("rep");
    let mut on_south = Peer::join(&two.ep(&mia).team(&two.south.id), &new_peer_id("mia-s")).await;
    let (r, mut mias_copy, mut mias_state) = on_south
        .pull(&two.north_doc_id, None)
        .await
        .expect("before: mia reads North's document from her South socket");
    assert_eq!(r, Synced::Done);

    let out = two.admin.remove_from_team(&mia.email, &two.north.id);
    assert_eq!(out.status, 0, "remove-from-team: {}", out.stderr);
    // The server checks open sockets every 5 seconds; give it two rounds.
    tokio::time::sleep(Duration::from_secs(11)).await;

    let mut nils = Peer::join(&two.ep(&two.nils), &new_peer_id("nils")).await;
    let (_, mut north_doc, mut state) = nils
        .pull(&two.north_doc_id, None)
        .await
        .expect("nils reads North's document");
    north_doc
        .put(ROOT, "name", "Renamed after Mia left")
        .unwrap();
    north_doc.commit();
    nils.push(&two.north_doc_id, &mut north_doc, &mut state)
        .await
        .expect("nils's rename is acknowledged");

    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        match on_south.recv(Duration::from_millis(200)).await {
            Recv::Msg(m) if m.get_str("documentId") == Some(two.north_doc_id.as_str()) => {
                if let Some(data) = m.get_bytes("data") {
                    let message = sync::Message::decode(data).unwrap();
                    mias_copy
                        .sync()
                        .receive_sync_message(&mut mias_state, message)
                        .unwrap();
                }
                let name = automerge::ReadDoc::get(&mias_copy, ROOT, "name")
                    .unwrap()
                    .map(|(value, _)| value.to_string());
                assert!(
                    !name.is_some_and(|n| n.contains("Renamed after Mia left")),
                    "North's change reached the South socket of a user who left North"
                );
            }
            Recv::Closed(close) => panic!("mia's South socket closed: {close:?}"),
            _ => {}
        }
    }
    // And South still works on that very socket.
    let id = new_doc_id();
    let mut doc = common::account_doc(6, 2);
    on_south
        .push(&id, &mut doc, &mut sync::State::new())
        .await
        .expect("mia still pushes on South");
}

#[tokio::test]
async fn a_disabled_user_is_refused_everywhere_and_disconnected() {
    let two = Two::new().await;
    let mut live = Peer::join(&two.ep(&two.ana), &new_peer_id("ana")).await;
    let r = sign_in(two.port(), &two.ana.email, &two.ana.password);
    assert_eq!(r.status, 200, "before: ana signs in: {}", r.body);
    let cookie = r.session_cookie().expect("a session cookie");

    two.admin.user_disable(&two.ana.email);
    expect_refused(&two.ep(&two.ana), 401, "a disabled user's token").await;
    let same_origin = format!("http://127.0.0.1:{}", two.port());
    expect_refused(
        &Endpoint::anonymous(&two.server.ws_url())
            .cookie(&cookie)
            .origin(&same_origin),
        401,
        "a disabled user's cookie",
    )
    .await;
    expect_signed_out(&mut live, "the disabled user's open connection").await;
    let r = sign_in(two.port(), &two.ana.email, &two.ana.password);
    assert_eq!(r.status, 403, "sign-in of a disabled user: {}", r.body);
    assert!(
        r.session_cookie().is_none(),
        "no cookie for a disabled user"
    );

    // enabled again: a new sign-in works, the sessions revoked by disable stay revoked
    two.admin.user_enable(&two.ana.email);
    let r = sign_in(two.port(), &two.ana.email, &two.ana.password);
    assert_eq!(r.status, 200, "after enable: {}", r.body);
    expect_refused(
        &two.ep(&two.ana),
        401,
        "a token revoked by disable, after enable",
    )
    .await;
}

#[tokio::test]
async fn the_session_cookie_is_honoured_only_from_the_same_origin() {
    let two = Two::new().await;
    let cookie = sign_in_cookie(two.port(), &two.ana.email, &two.ana.password);
    let base = Endpoint::anonymous(&two.server.ws_url()).cookie(&cookie);
    let own = format!("http://127.0.0.1:{}", two.port());
    for evil in [
        "http://evil.example",
        "http://127.0.0.1:1",
        "https://127.0.0.1",
        "null",
    ] {
        expect_refused(
            &base.clone().origin(evil),
            401,
            &format!("cookie with Origin {evil}"),
        )
        .await;
        let r = http(
            two.port(),
            "GET",
            "/api/session",
            &[("Cookie", &cookie), ("Origin", evil)],
            None,
        );
        assert_eq!(
            r.status, 401,
            "GET /api/session, cookie, Origin {evil}: {}",
            r.body
        );
    }
    // positive controls: the same cookie from the same origin, and with no Origin at all
    let mut p = Peer::join(&base.clone().origin(&own), &new_peer_id("ana-web")).await;
    let (r, got, _) = p.pull(&two.north_doc_id, None).await.unwrap();
    assert_eq!(
        r,
        Synced::Done,
        "cookie + same Origin reads North's document"
    );
    assert_eq!(heads_of(&got), two.north_heads());
    p.close().await;
    Peer::join(&base, &new_peer_id("ana-no-origin"))
        .await
        .close()
        .await;
    let r = http(
        two.port(),
        "GET",
        "/api/session",
        &[("Cookie", &cookie), ("Origin", &own)],
        None,
    );
    assert_eq!(
        r.status, 200,
        "GET /api/session, cookie, own Origin: {}",
        r.body
    );
}

// ------------------------------------------------------------------------------------------
// Another team's documents

#[tokio::test]
async fn south_cannot_request_norths_document() {
    let two = Two::new().await;
    let mut sam = Peer::join(&two.ep(&two.sam), &new_peer_id("sam")).await;
    let (r, got, _) = sam.pull(&two.north_doc_id, None).await.unwrap();
    assert_eq!(
        r,
        Synced::Unavailable,
        "South's request for North's document"
    );
    assert!(heads_of(&got).is_empty());
    // asking again, and asking with a sync message instead of a request
    let (r, _, _) = sam.pull(&two.north_doc_id, None).await.unwrap();
    assert_eq!(r, Synced::Unavailable, "asked a second time");
    let mut empty = AutoCommit::new();
    let r = sam
        .sync_doc(
            &two.north_doc_id,
            &mut empty,
            &mut sync::State::new(),
            "sync",
            Duration::from_secs(10),
            |d, _| !d.get_heads().is_empty(),
        )
        .await
        .unwrap();
    assert_eq!(r, Synced::Unavailable, "an empty sync for North's document");
    sam.barrier().await;
    drain(&mut sam, Duration::from_millis(300)).await;
    assert_nothing_about(&sam, &two.north_doc_id, "South requests North's document");
    two.assert_north_doc_unchanged("after South's requests")
        .await;

    // a request for an id nobody stored claims nothing: North can still create it afterwards
    let unknown = new_doc_id();
    let (r, _, _) = sam.pull(&unknown, None).await.unwrap();
    assert_eq!(r, Synced::Unavailable, "an unknown id");
    let mut doc = common::account_doc(5, 3);
    let mut ana = Peer::join(&two.ep(&two.ana), &new_peer_id("ana")).await;
    ana.push(&unknown, &mut doc, &mut sync::State::new())
        .await
        .expect("North creates the id South asked for first");
    assert_doc_exactly(&two.ep(&two.nils), &unknown, &doc, "North's new document").await;
    assert_unavailable(&two.ep(&two.sam), &unknown, "South asks again").await;
}

#[tokio::test]
async fn south_cannot_claim_an_id_north_already_stored() {
    let two = Two::new().await;
    let mut victim = Peer::join(&two.ep(&two.ana), &new_peer_id("ana")).await;
    let (_, _, _) = victim.pull(&two.north_doc_id, None).await.unwrap();
    let mut sam = Peer::join(&two.ep(&two.sam), &new_peer_id("sam")).await;
    // a complete, valid document of South's own under North's id
    let mut forged = common::account_doc(66, 9);
    let mut st = sync::State::new();
    let r = sam
        .sync_doc(
            &two.north_doc_id,
            &mut forged,
            &mut st,
            "sync",
            Duration::from_secs(10),
            |d, s| s.their_heads.clone().map(sorted) == Some(sorted(d.get_heads())),
        )
        .await
        .unwrap_or_else(|e| panic!("South's sync under North's id: {e}"));
    assert_eq!(r, Synced::Unavailable, "South's sync under North's id");
    // all of its changes in one message, too
    let msg = raw::doc_msg(
        "sync",
        &sam.id,
        &sam.server_id,
        &two.north_doc_id,
        raw::changes_message(&mut forged),
    );
    sam.send(&msg).await;
    expect_doc_unavailable(&mut sam, &two.north_doc_id, "all changes at once").await;
    sam.barrier().await;
    drain(&mut sam, Duration::from_millis(300)).await;
    assert_nothing_about(&sam, &two.north_doc_id, "South claims North's id");
    // the victim, connected with the document open, received nothing new
    drain(&mut victim, Duration::from_millis(500)).await;
    for m in &victim.seen {
        if m.get_str("documentId") == Some(two.north_doc_id.as_str())
            && let Some(Ok(sm)) = m.get_bytes("data").map(sync::Message::decode)
        {
            assert!(
                sm.changes.is_empty() || sorted(sm.heads.clone()) == two.north_heads(),
                "the victim received changes that are not North's: {m}"
            );
            assert!(
                sm.heads.iter().all(|h| two.north_heads().contains(h)),
                "the victim was told about heads that are not North's: {m}"
            );
        }
    }
    two.assert_north_doc_unchanged("after South's claim").await;
}

#[tokio::test]
async fn south_cannot_write_into_norths_document_even_with_its_history() {
    let two = Two::new().await;
    // South somehow holds a copy of North's document (say a former member kept it) and edits it
    let mut copy = two.north_doc.clone();
    copy.put(ROOT, "name", "rewritten by South").unwrap();
    copy.commit();
    let mut sam = Peer::join(&two.ep(&two.sam), &new_peer_id("sam")).await;
    let mut st = sync::State::new();
    let r = sam
        .sync_doc(
            &two.north_doc_id,
            &mut copy,
            &mut st,
            "sync",
            Duration::from_secs(10),
            |d, s| s.their_heads.clone().map(sorted) == Some(sorted(d.get_heads())),
        )
        .await
        .unwrap_or_else(|e| panic!("South's write into North's document: {e}"));
    assert_eq!(r, Synced::Unavailable, "South's sync into North's document");
    let msg = raw::doc_msg(
        "sync",
        &sam.id,
        &sam.server_id,
        &two.north_doc_id,
        raw::changes_message(&mut copy),
    );
    sam.send(&msg).await;
    expect_doc_unavailable(&mut sam, &two.north_doc_id, "every change at once").await;
    sam.barrier().await;
    drain(&mut sam, Duration::from_millis(300)).await;
    assert_nothing_about(
        &sam,
        &two.north_doc_id,
        "South writes into North's document",
    );
    two.assert_north_doc_unchanged("after South's write").await;
    // positive control: the very same edit by North is accepted
    let mut ana = Peer::join(&two.ep(&two.ana), &new_peer_id("ana")).await;
    ana.push(&two.north_doc_id, &mut copy, &mut sync::State::new())
        .await
        .expect("the same edit from North is acknowledged");
}

#[tokio::test]
async fn ephemeral_messages_for_norths_document_are_not_relayed_from_south() {
    let two = Two::new().await;
    let mut ana = Peer::join(&two.ep(&two.ana), &new_peer_id("ana")).await;
    let (r, _, _) = ana.pull(&two.north_doc_id, None).await.unwrap();
    assert_eq!(r, Synced::Done, "ana has North's document open");
    let mut sam = Peer::join(&two.ep(&two.sam), &new_peer_id("sam")).await;
    let payload = cbor::encode(&Value::map([("cursor", Value::Uint(7))]));
    sam.send(&ephemeral(
        &sam,
        &two.north_doc_id,
        "sam-session",
        1,
        &payload,
    ))
    .await;
    sam.send(&ephemeral(
        &sam,
        &two.north_doc_id,
        "sam-session",
        2,
        &payload,
    ))
    .await;
    sam.barrier().await;
    // positive control: North's teammate's ephemeral message does reach ana
    let mut nils = Peer::join(&two.ep(&two.nils), &new_peer_id("nils")).await;
    let (r, _, _) = nils.pull(&two.north_doc_id, None).await.unwrap();
    assert_eq!(r, Synced::Done);
    nils.send(&ephemeral(
        &nils,
        &two.north_doc_id,
        "nils-session",
        1,
        &payload,
    ))
    .await;
    let mut relayed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match ana.recv(Duration::from_millis(1500)).await {
            Recv::Msg(m) if m.get_str("type") == Some("ephemeral") => relayed.push(m),
            Recv::Msg(_) => continue,
            _ => break,
        }
    }
    assert!(
        relayed
            .iter()
            .all(|m| m.get_str("senderId") != Some(sam.id.as_str())
                && m.get_str("sessionId") != Some("sam-session")),
        "South's ephemeral message was relayed to North: {relayed:?}"
    );
    assert_eq!(
        relayed.len(),
        1,
        "exactly nils's ephemeral message reaches ana: {relayed:?}"
    );
    assert_eq!(relayed[0].get_str("senderId"), Some(nils.id.as_str()));
    drain(&mut sam, Duration::from_millis(300)).await;
    assert_nothing_about(&sam, &two.north_doc_id, "South's ephemeral");
    // and North's ephemeral is not relayed to South either (South cannot have it open)
    assert!(
        !sam.seen
            .iter()
            .any(|m| m.get_str("type") == Some("ephemeral")),
        "an ephemeral message reached South"
    );
}

#[tokio::test]
async fn the_other_teams_directory_is_owned_from_team_creation() {
    let two = Two::new().await;
    let north_dir = directory_id(&two.north);
    let south_dir = directory_id(&two.south);
    assert_ne!(north_dir, south_dir);
    // before North ever synced its directory, South tries to take it: request, then a genesis
    // directory (byte-identical first change, as every device makes it) with an account listed
    let mut sam = Peer::join(&two.ep(&two.sam), &new_peer_id("sam")).await;
    let (r, _, _) = sam.pull(&north_dir, None).await.unwrap();
    assert_eq!(r, Synced::Unavailable, "South requests North's directory");
    let mut forged = directory_doc(&two.north, "Sam South", "Planted by South");
    let r = sam
        .sync_doc(
            &north_dir,
            &mut forged,
            &mut sync::State::new(),
            "sync",
            Duration::from_secs(10),
            |d, s| s.their_heads.clone().map(sorted) == Some(sorted(d.get_heads())),
        )
        .await
        .unwrap();
    assert_eq!(r, Synced::Unavailable, "South syncs North's directory");
    sam.barrier().await;
    // North's first sync of its directory is accepted: South claimed nothing
    let mut north_directory = directory_doc(&two.north, "Ana North", "Bakery Riverside");
    let mut ana = Peer::join(&two.ep(&two.ana), &new_peer_id("ana")).await;
    ana.push(&north_dir, &mut north_directory, &mut sync::State::new())
        .await
        .expect("North's first sync of its own directory is acknowledged");
    assert_doc_exactly(
        &two.ep(&two.nils),
        &north_dir,
        &north_directory,
        "North's directory",
    )
    .await;
    // after: South's request and writes are refused and North's directory is unchanged
    let (r, _, _) = sam.pull(&north_dir, None).await.unwrap();
    assert_eq!(
        r,
        Synced::Unavailable,
        "South requests North's stored directory"
    );
    let msg = raw::doc_msg(
        "sync",
        &sam.id,
        &sam.server_id,
        &north_dir,
        raw::changes_message(&mut forged),
    );
    sam.send(&msg).await;
    expect_doc_unavailable(&mut sam, &north_dir, "South writes North's directory").await;
    sam.barrier().await;
    drain(&mut sam, Duration::from_millis(300)).await;
    assert_nothing_about(&sam, &north_dir, "North's directory");
    assert_doc_exactly(
        &two.ep(&two.nils),
        &north_dir,
        &north_directory,
        "North's directory after South's attempts",
    )
    .await;
    // positive control: South's own directory is South's
    let mut south_directory = directory_doc(&two.south, "Sam South", "Garage Hilltop");
    sam.push(&south_dir, &mut south_directory, &mut sync::State::new())
        .await
        .expect("South's first sync of its own directory is acknowledged");
    assert_unavailable(
        &two.ep(&two.ana),
        &south_dir,
        "North asks for South's directory",
    )
    .await;
}

// ------------------------------------------------------------------------------------------
// Identity on the wire

#[tokio::test]
async fn a_forged_sender_id_is_not_acted_on() {
    let two = Two::new().await;
    let mut ana = Peer::join(&two.ep(&two.ana), &new_peer_id("ana")).await;
    // her own copy and the sync state of this connection, to keep editing on it
    let (r, mut d, mut st) = ana.pull(&two.north_doc_id, None).await.unwrap();
    assert_eq!(r, Synced::Done);
    let mut sam = Peer::join(&two.ep(&two.sam), &new_peer_id("sam")).await;
    // as ana: a request for North's document, and a write into it
    let mut empty = AutoCommit::new();
    let req = empty
        .sync()
        .generate_sync_message(&mut sync::State::new())
        .unwrap()
        .encode();
    let mut copy = two.north_doc.clone();
    copy.put(ROOT, "name", "forged as ana").unwrap();
    copy.commit();
    let new_id = new_doc_id();
    let mut new_doc = common::account_doc(8, 2);
    let forged = [
        raw::doc_msg("request", &ana.id, &sam.server_id, &two.north_doc_id, req),
        raw::doc_msg(
            "sync",
            &ana.id,
            &sam.server_id,
            &two.north_doc_id,
            raw::changes_message(&mut copy),
        ),
        raw::doc_msg(
            "sync",
            &ana.id,
            &sam.server_id,
            &new_id,
            raw::changes_message(&mut new_doc),
        ),
    ];
    let mut outcome = "dropped".to_string();
    for m in &forged {
        if let Err(e) = raw::try_send_raw(&mut sam.ws, cbor::encode(m)).await {
            outcome = format!("send failed: {e}");
            break;
        }
    }
    // an error and/or a close is fine, and so is dropping it (ARCHITECTURE: "a senderId other
    // than the socket's peer is dropped"); acting on it is not
    if let Recv::Closed(c) = drain(&mut sam, Duration::from_secs(2)).await {
        outcome = format!("closed {c:?}");
    }
    eprintln!("forged senderId: {outcome}");
    for m in &sam.seen {
        if m.get_str("type") == Some("error") {
            eprintln!("  error: {m}");
        }
    }
    assert_nothing_about(&sam, &two.north_doc_id, "forged senderId");
    assert_nothing_about(&sam, &new_id, "forged senderId");
    two.assert_north_doc_unchanged("after the forged messages")
        .await;
    assert_unavailable(
        &two.ep(&two.ana),
        &new_id,
        "the document a forged sync named",
    )
    .await;
    assert_unavailable(
        &two.ep(&two.sam),
        &new_id,
        "the document a forged sync named",
    )
    .await;
    // ana's connection was not disturbed
    d.put(ROOT, "stillAna", true).unwrap();
    d.commit();
    ana.push(&two.north_doc_id, &mut d, &mut st)
        .await
        .expect("ana's own connection keeps syncing");
}

#[tokio::test]
async fn a_peer_id_or_storage_id_of_another_user_is_refused() {
    let two = Two::new().await;
    // ana is connected with her peer id and a storage id; her sync state is kept under it
    let storage = format!("storage-{}", cbor::hex(&raw::random_bytes::<8>()));
    let ana_peer = new_peer_id("ana");
    let mut ws = raw::connect(&two.ep(&two.ana)).await;
    raw::send_value(&mut ws, &join_with_storage(&ana_peer, &storage)).await;
    let mut ana = Peer::expect_peer(ws, &ana_peer).await;
    let (r, mut d, mut st) = ana.pull(&two.north_doc_id, None).await.unwrap();
    assert_eq!(r, Synced::Done);

    // South joins with ana's (connected) peer id: refused, and ana keeps her socket
    let mut ws = raw::connect(&two.ep(&two.sam)).await;
    raw::send_value(&mut ws, &raw::join_msg(&ana_peer, &["1"])).await;
    let outcome = expect_join_refused(ws, "South joins with ana's peer id").await;
    eprintln!("peer id of another user: {outcome}");
    // a teammate with ana's peer id is another user too
    let mut ws = raw::connect(&two.ep(&two.nils)).await;
    raw::send_value(&mut ws, &raw::join_msg(&ana_peer, &["1"])).await;
    expect_join_refused(ws, "nils joins with ana's peer id").await;
    d.put(ROOT, "anaStillHere", true).unwrap();
    d.commit();
    ana.push(&two.north_doc_id, &mut d, &mut st)
        .await
        .expect("ana's socket survives the hijack attempts");
    ana.close().await;

    // ana's storage id belongs to ana for good, even after she left
    let mut ws = raw::connect(&two.ep(&two.sam)).await;
    raw::send_value(&mut ws, &join_with_storage(&new_peer_id("sam"), &storage)).await;
    let outcome = expect_join_refused(ws, "South joins with ana's storage id").await;
    eprintln!("storage id of another user: {outcome}");
    // positive control: ana herself may come back with it
    let mut ws = raw::connect(&two.ep(&two.ana)).await;
    let back = new_peer_id("ana-back");
    raw::send_value(&mut ws, &join_with_storage(&back, &storage)).await;
    let mut ana = Peer::expect_peer(ws, &back).await;
    let (r, got, _) = ana.pull(&two.north_doc_id, None).await.unwrap();
    assert_eq!(r, Synced::Done);
    assert_eq!(heads_of(&got), sorted(d.get_heads()));
}

// ------------------------------------------------------------------------------------------
// Sign-in over HTTP

#[tokio::test]
async fn sign_in_answers_the_same_for_a_wrong_password_and_an_unknown_email() {
    let two = Two::new().await;
    let wrong = sign_in(two.port(), &two.ana.email, "not her password at all");
    let unknown = sign_in(
        two.port(),
        "nobody@north.example",
        "not her password at all",
    );
    assert_eq!(wrong.status, 401, "wrong password: {}", wrong.body);
    assert_eq!(unknown.status, 401, "unknown email: {}", unknown.body);
    assert_eq!(
        wrong.body, unknown.body,
        "a wrong password and an unknown email must be answered the same"
    );
    assert!(
        wrong.json()["error"].as_str().is_some(),
        "error body: {}",
        wrong.body
    );
    assert!(wrong.session_cookie().is_none() && unknown.session_cookie().is_none());
    // the right password: SessionInfo and the cookie
    let before = now_millis();
    let ok = sign_in(two.port(), &two.ana.email.to_uppercase(), &two.ana.password);
    assert_eq!(
        ok.status, 200,
        "right password (email case-insensitive): {}",
        ok.body
    );
    let info = ok.json();
    assert_eq!(info["user"]["email"], "ana@north.example", "{info}");
    assert_eq!(info["user"]["name"], "Ana North", "{info}");
    assert_eq!(info["user"]["is_admin"], false, "{info}");
    assert!(
        info["user"]["id"].as_str().is_some_and(|s| s.len() == 32),
        "{info}"
    );
    assert_eq!(
        info["teams"],
        serde_json::json!([{"id": two.north.id, "name": "North", "role": "rep"}]),
        "{info}"
    );
    let expires = info["expires_at"].as_i64().expect("expires_at in ms");
    let thirty_days = 30 * 24 * 3600 * 1000;
    assert!(
        (expires - (before + thirty_days)).abs() < 5 * 60 * 1000,
        "a browser session lasts 30 days: expires_at {expires}, now {before}"
    );
    let set_cookie = ok.header("set-cookie").expect("Set-Cookie").to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(
            set_cookie.contains(attr),
            "Set-Cookie lacks {attr}: {set_cookie}"
        );
    }
    assert!(
        !set_cookie.contains("Secure"),
        "no Secure over plain HTTP: {set_cookie}"
    );
    let cookie = ok.session_cookie().unwrap();
    let token = cookie.trim_start_matches("fieldnotes_session=");
    assert!(
        auth::is_token(token),
        "the session token is 43 base64url characters: {cookie}"
    );
    let r = http(
        two.port(),
        "GET",
        "/api/session",
        &[("Cookie", &cookie)],
        None,
    );
    assert_eq!(
        r.status, 200,
        "GET /api/session with the cookie: {}",
        r.body
    );
    assert_eq!(r.json()["user"], info["user"]);
    // behind a TLS proxy the cookie is Secure
    let body =
        serde_json::json!({"email": two.nils.email, "password": two.nils.password}).to_string();
    let r = http(
        two.port(),
        "POST",
        "/api/session",
        &[("X-Forwarded-Proto", "https")],
        Some(&body),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("set-cookie").is_some_and(|c| c.contains("Secure")),
        "Set-Cookie over X-Forwarded-Proto: https must be Secure: {:?}",
        r.header("set-cookie")
    );
    // and carries the `__Host-` prefix, which the browser keeps from other hosts
    let secure = r.header("set-cookie").unwrap().to_string();
    assert!(
        secure.starts_with("__Host-fieldnotes_session="),
        "the Secure cookie is `__Host-` prefixed: {secure}"
    );
    let pair = secure.split(';').next().unwrap();
    let r = http(two.port(), "GET", "/api/session", &[("Cookie", pair)], None);
    assert_eq!(r.status, 200, "the __Host- cookie signs in: {}", r.body);
    let teams = r.json()["teams"].clone();
    assert_eq!(teams[0]["role"], "manager", "{teams}");
}

#[tokio::test]
async fn bad_sign_in_input_is_answered_400_with_an_error_body() {
    let two = Two::new().await;
    // bad input: 400 with an {"error": …} body, whatever is wrong with it
    for bad in [
        "{}",
        "{\"email\": \"ana@north.example\"}",
        "{\"email\": 3, \"password\": \"0123456789\"}",
        "not json",
    ] {
        let r = http(two.port(), "POST", "/api/session", &[], Some(bad));
        assert_eq!(r.status, 400, "bad input {bad:?}: {}", r.body);
        let error = serde_json::from_str::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string));
        assert!(
            error.is_some(),
            "bad input {bad:?}: the body must be {{\"error\": …}}, got {:?}",
            r.body
        );
    }
}

#[tokio::test]
async fn an_email_too_long_for_anyone_is_refused_before_it_is_stored_or_counted() {
    let two = Two::new().await;
    // More attempts than the address limit (30): had they been counted, the last would be 429
    // and so would the right password from this address afterwards.
    for i in 0..35 {
        let email = format!("{}{i}@example.com", "a".repeat(300));
        let r = sign_in(two.port(), &email, "whatever password");
        assert_eq!(
            r.status, 400,
            "attempt {i} with a 300-character email: {}",
            r.body
        );
        assert!(
            r.body.contains("too long"),
            "the answer says what is wrong: {}",
            r.body
        );
    }
    let ok = sign_in(two.port(), &two.ana.email, &two.ana.password);
    assert_eq!(ok.status, 200, "the address was never counted: {}", ok.body);
}

#[tokio::test]
async fn five_failed_sign_ins_lock_the_email_even_for_the_right_password() {
    let two = Two::new().await;
    let ok = sign_in(two.port(), &two.ana.email, &two.ana.password);
    assert_eq!(
        ok.status, 200,
        "first the right password works: {}",
        ok.body
    );
    for i in 1..=5 {
        let r = sign_in(two.port(), &two.ana.email, &format!("wrong password {i}"));
        assert_eq!(
            r.status, 401,
            "failure {i} is still a plain 401: {}",
            r.body
        );
    }
    let locked = sign_in(two.port(), &two.ana.email, &two.ana.password);
    assert_eq!(
        locked.status, 429,
        "after 5 failures the right password is answered 429: {}",
        locked.body
    );
    let retry: u64 = locked
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", locked.headers))
        .parse()
        .expect("Retry-After in seconds");
    assert!(
        (1..=15 * 60).contains(&retry),
        "Retry-After within the 15-minute window: {retry}"
    );
    assert!(locked.session_cookie().is_none(), "no session while locked");
    assert!(locked.json()["error"].as_str().is_some(), "{}", locked.body);
    // the token endpoint is locked as well
    let body =
        serde_json::json!({"email": two.ana.email, "password": two.ana.password}).to_string();
    let r = http(two.port(), "POST", "/api/tokens", &[], Some(&body));
    assert_eq!(
        r.status, 429,
        "POST /api/tokens for a locked email: {}",
        r.body
    );
    // the lock is per email: another user signs in from the same address
    let r = sign_in(two.port(), &two.nils.email, &two.nils.password);
    assert_eq!(r.status, 200, "another email is not locked: {}", r.body);
}

#[tokio::test]
async fn parallel_wrong_passwords_cannot_get_past_the_throttle() {
    // The throttle used to check, then verify, then count: twenty attempts started together all
    // passed the check before any was counted.
    let two = Two::new().await;
    let email = two.ana.email.clone();
    let threads: Vec<_> = (0..20)
        .map(|n| {
            let port = two.port();
            let body =
                serde_json::json!({"email": email, "password": format!("wrong password {n}")})
                    .to_string();
            std::thread::spawn(move || http(port, "POST", "/api/session", &[], Some(&body)).status)
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let verified = statuses.iter().filter(|s| **s == 401).count();
    let locked = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (verified, locked),
        (5, 15),
        "five attempts may be verified, the rest are locked out: {statuses:?}"
    );
}

#[tokio::test]
async fn thirty_failed_sign_ins_from_one_address_lock_the_address() {
    let two = Two::new().await;
    // 30 failures spread over emails, none of them 5 times: only the address limit applies
    for i in 0..30 {
        let email = format!("guess{}@north.example", i % 10);
        let r = sign_in(two.port(), &email, &format!("wrong password {i}"));
        assert_eq!(
            r.status,
            401,
            "failure {} (of 30) is still a plain 401: {}",
            i + 1,
            r.body
        );
    }
    let r = sign_in(two.port(), &two.sam.email, &two.sam.password);
    assert_eq!(
        r.status, 429,
        "after 30 failures from this address, a user who never failed is answered 429: {}",
        r.body
    );
    assert!(
        r.header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|s| (1..=900).contains(&s))),
        "429 with Retry-After in seconds: {:?}",
        r.headers
    );
    // signing in is throttled, using a session is not
    Peer::join(&two.ep(&two.sam), &new_peer_id("sam"))
        .await
        .close()
        .await;
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_and_tokens_only_hashed() {
    let two = Two::new().await;
    // a password chosen at sign-in time of the API (token) and one from the admin command
    let body = serde_json::json!({"email": two.ana.email, "password": two.ana.password, "label": "laptop"}).to_string();
    let r = http(two.port(), "POST", "/api/tokens", &[], Some(&body));
    assert_eq!(r.status, 200, "POST /api/tokens: {}", r.body);
    let api_token = r.json()["token"].as_str().expect("token").to_string();
    assert!(auth::is_token(&api_token), "{api_token}");
    assert_eq!(r.json()["user"]["email"], "ana@north.example");
    let ninety_days = 90 * 24 * 3600 * 1000_i64;
    let expires = r.json()["expires_at"].as_i64().expect("expires_at");
    assert!(
        (expires - (now_millis() + ninety_days)).abs() < 5 * 60 * 1000,
        "a token lasts 90 days: expires_at {expires}"
    );
    let cookie = sign_in_cookie(two.port(), &two.nils.email, &two.nils.password);
    Peer::join(&two.server.sync_as(&api_token), &new_peer_id("ana-api"))
        .await
        .close()
        .await;

    let hashes = password_hashes(&two.server);
    for u in [&two.ana, &two.nils, &two.sam] {
        let hash = hashes
            .iter()
            .find(|(email, _)| *email == u.email)
            .map(|(_, hash)| hash)
            .unwrap_or_else(|| panic!("no users.password_hash for {}: {hashes:?}", u.email));
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}: argon2id with the crate's defaults in PHC form, got {hash:?}",
            u.email
        );
        assert!(!hash.contains(&u.password));
    }
    // neither a password nor a token appears anywhere in what the server stored
    let secrets = [
        two.ana.password.as_str(),
        two.nils.password.as_str(),
        two.sam.password.as_str(),
        two.ana.token.as_str(),
        two.sam.token.as_str(),
        api_token.as_str(),
        cookie.trim_start_matches("fieldnotes_session="),
    ];
    for (place, bytes) in stored_bytes(&two.server) {
        for s in secrets {
            // PostgreSQL prints BYTEA as hex: a secret kept as bytes would show that way
            for form in [s.to_string(), cbor::hex(s.as_bytes())] {
                assert!(
                    !bytes.windows(form.len()).any(|w| w == form.as_bytes()),
                    "{place} contains a secret in plain text ({}…)",
                    &s[..6]
                );
            }
        }
    }
}

#[tokio::test]
async fn delete_session_revokes_it() {
    let two = Two::new().await;
    let cookie = sign_in_cookie(two.port(), &two.ana.email, &two.ana.password);
    let own = format!("http://127.0.0.1:{}", two.port());
    let web = Endpoint::anonymous(&two.server.ws_url())
        .cookie(&cookie)
        .origin(&own);
    let mut live = Peer::join(&web, &new_peer_id("ana-web")).await;
    let r = http(
        two.port(),
        "DELETE",
        "/api/session",
        &[("Cookie", &cookie), ("Origin", &own)],
        None,
    );
    assert_eq!(r.status, 204, "DELETE /api/session: {}", r.body);
    let cleared = r.header("set-cookie").unwrap_or_default();
    assert!(
        cleared.starts_with("fieldnotes_session=")
            && (cleared.contains("Max-Age=0") || cleared.contains("Expires=")),
        "the cookie is cleared: {cleared:?}"
    );
    let r = http(
        two.port(),
        "GET",
        "/api/session",
        &[("Cookie", &cookie)],
        None,
    );
    assert_eq!(r.status, 401, "the signed-out cookie: {}", r.body);
    expect_refused(&web, 401, "/sync with the signed-out cookie").await;
    expect_signed_out(&mut live, "the signed-out browser's open connection").await;
    // idempotent
    let r = http(
        two.port(),
        "DELETE",
        "/api/session",
        &[("Cookie", &cookie)],
        None,
    );
    assert_eq!(r.status, 204, "a second DELETE: {}", r.body);

    // a Bearer token revokes itself the same way, and only itself
    let bearer = format!("Bearer {}", two.ana.token);
    let other = two.admin.token_create(&two.ana.email, None);
    let r = http(
        two.port(),
        "GET",
        "/api/session",
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(
        r.status, 200,
        "GET /api/session with a Bearer token: {}",
        r.body
    );
    let r = http(
        two.port(),
        "DELETE",
        "/api/session",
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(
        r.status, 204,
        "DELETE /api/session with a Bearer token: {}",
        r.body
    );
    expect_refused(&two.ep(&two.ana), 401, "the revoked Bearer token").await;
    Peer::join(&two.server.sync_as(&other), &new_peer_id("ana-other"))
        .await
        .close()
        .await;
}

/// `admin invite …`: the invitation token from the printed link.
fn invite(admin: &Admin, team: &Team, role: &str, email: Option<&str>) -> String {
    let mut args = vec!["invite", "--team", team.id.as_str(), "--role", role];
    if let Some(e) = email {
        args.extend(["--email", e]);
    }
    let out = admin.ok(&args, None);
    let link = out.trim();
    let token = link
        .split_once("#/invite/")
        .unwrap_or_else(|| panic!("`admin invite` must print a #/invite/ link, printed {out:?}"))
        .1;
    assert!(auth::is_token(token), "invitation token in {link:?}");
    token.to_string()
}

fn accept_body(token: &str, name: &str, email: &str, password: &str) -> String {
    serde_json::json!({"token": token, "name": name, "email": email, "password": password})
        .to_string()
}

#[tokio::test]
async fn an_invitation_is_the_only_way_into_a_team_and_works_once() {
    let two = Two::new().await;
    let port = two.port();
    // an invitation naming an email
    let token = invite(&two.admin, &two.north, "rep", Some("new@north.example"));
    let r = http(port, "GET", &format!("/api/invitations/{token}"), &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        serde_json::json!({"team": {"id": two.north.id, "name": "North"}, "role": "rep",
            "email": "new@north.example"})
    );
    let r = http(
        port,
        "GET",
        &format!("/api/invitations/{}", "A".repeat(43)),
        &[],
        None,
    );
    assert_eq!(r.status, 404, "a made-up invitation: {}", r.body);
    let accept = |body: String| http(port, "POST", "/api/invitations/accept", &[], Some(&body));
    let r = accept(accept_body(
        &token,
        "Eve",
        "eve@south.example",
        "a long enough password",
    ));
    assert_eq!(
        r.status, 409,
        "another email than the invitation names: {}",
        r.body
    );
    let r = accept(accept_body(&token, "Neo", "new@north.example", "short"));
    assert_eq!(r.status, 400, "a password under 10 characters: {}", r.body);
    let r = accept(accept_body(
        &token,
        "Neo North",
        "new@north.example",
        "a long enough password",
    ));
    assert_eq!(r.status, 200, "accepting: {}", r.body);
    assert_eq!(
        r.json()["teams"],
        serde_json::json!([{"id": two.north.id, "name": "North", "role": "rep"}])
    );
    let cookie = r.session_cookie().expect("accepting signs the new user in");
    let r = accept(accept_body(
        &token,
        "Neo North",
        "new@north.example",
        "a long enough password",
    ));
    assert_eq!(r.status, 404, "an invitation works once: {}", r.body);
    // the new member reads North's document, with the cookie from the same origin
    let web = Endpoint::anonymous(&two.server.ws_url())
        .cookie(&cookie)
        .origin(&format!("http://127.0.0.1:{port}"));
    assert_doc_exactly(&web, &two.north_doc_id, &two.north_doc, "the new member").await;

    // South's user, before and after accepting an open invitation to North
    expect_refused(
        &two.ep(&two.sam).team(&two.north.id),
        403,
        "sam, not yet in North",
    )
    .await;
    let open = invite(&two.admin, &two.north, "manager", None);
    let r = accept(accept_body(
        &open,
        "Sam South",
        &two.sam.email,
        "not sam's password",
    ));
    assert_eq!(
        r.status, 401,
        "an existing email with a wrong password: {}",
        r.body
    );
    let r = accept(accept_body(
        &open,
        "Sam South",
        &two.sam.email,
        &two.sam.password,
    ));
    assert_eq!(
        r.status, 200,
        "an existing user gains the membership: {}",
        r.body
    );
    assert_eq!(
        r.json()["teams"],
        serde_json::json!([
            {"id": two.north.id, "name": "North", "role": "manager"},
            {"id": two.south.id, "name": "South", "role": "rep"}
        ]),
        "teams sorted by name"
    );
    assert_doc_exactly(
        &two.ep(&two.sam).team(&two.north.id),
        &two.north_doc_id,
        &two.north_doc,
        "sam, now in North",
    )
    .await;
}

#[tokio::test]
async fn first_run_prints_a_single_use_setup_link() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&server_bin(), dir.path());
    let line = server
        .setup_line(Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "no `setup: ` line on stdout while no administrator exists: {:?}",
                server.stdout_lines()
            )
        });
    let prefix = format!("setup: open http://127.0.0.1:{}/#/setup/", server.port);
    assert!(line.starts_with(&prefix), "setup line: {line:?}");
    let token = line[prefix.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(
        line.ends_with("to create the first administrator and their team"),
        "{line:?}"
    );
    let r = http(server.port, "GET", "/api/setup", &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), serde_json::json!({"needed": true}));
    let setup = |t: &str, email: &str| {
        serde_json::json!({"token": t, "name": "Olga Owner", "email": email,
            "password": "a long enough password", "team_name": "Head Office"})
        .to_string()
    };
    let r = http(
        server.port,
        "POST",
        "/api/setup",
        &[],
        Some(&setup("wrong-token", "o@x.example")),
    );
    assert_eq!(r.status, 410, "a made-up setup token: {}", r.body);
    let r = http(
        server.port,
        "POST",
        "/api/setup",
        &[],
        Some(&setup(&token, "olga@example.com")),
    );
    assert_eq!(r.status, 200, "setup: {}", r.body);
    let info = r.json();
    assert_eq!(info["user"]["is_admin"], true, "{info}");
    assert_eq!(info["teams"][0]["name"], "Head Office", "{info}");
    assert_eq!(info["teams"][0]["role"], "manager", "{info}");
    assert!(
        r.session_cookie().is_some(),
        "setup signs the administrator in"
    );
    let r = http(
        server.port,
        "POST",
        "/api/setup",
        &[],
        Some(&setup(&token, "eve@example.com")),
    );
    assert_eq!(r.status, 410, "the setup link works once: {}", r.body);
    let r = http(server.port, "GET", "/api/setup", &[], None);
    assert_eq!(r.json(), serde_json::json!({"needed": false}));
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
