//! The server over real sockets on 127.0.0.1:0 with a real SQLite database,
//! driven by tokio-tungstenite and the crate's own client engine.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT, ReadDoc};
use fieldnotes_server::{AppState, ServerOptions, auth};
use fieldnotes_sync::protocol::{ErrorMessage, Join, PeerMetadata};
use fieldnotes_sync::{Client, ClientConfig, ClientEvent, DocumentId, Message, PeerId, StorageId};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Server {
    address: String,
    /// A Bearer token of a rep of the team "Testers", made at start.
    token: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(options: ServerOptions) -> Server {
        let state = AppState::open(&options).unwrap();
        let token = state
            .hub()
            .db(|store| {
                let c = store.db_mut();
                let user = match auth::user_by_email(c, "tester@example.com")? {
                    Some((user, _)) => user,
                    None => {
                        let team = auth::create_team(c, "Testers")?;
                        // Not a password hash: this user only ever uses tokens.
                        let user =
                            auth::create_user(c, "tester@example.com", "Tester", "-", false)?;
                        auth::set_membership(c, &user.id, &team.id, auth::Role::Rep)?;
                        user
                    }
                };
                auth::create_session(c, &user, auth::SessionKind::Token, auth::DAY_MS, None)
            })
            .await
            .unwrap()
            .unwrap()
            .0;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(fieldnotes_server::run(listener, state, async move {
            let _ = stopped.await;
        }));
        Server {
            address,
            token,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("stops in time")
            .unwrap()
            .unwrap();
    }

    async fn socket(&self) -> Socket {
        let mut request = format!("ws://{}/sync", self.address)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.token).parse().unwrap(),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        socket
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    }

    /// A JSON POST: the status, the response's head (lowercased) and its body.
    async fn post(&self, path: &str, body: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(&self.address).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        (status, head.to_lowercase(), body.to_owned())
    }

    /// `POST /api/session` with an email and a password.
    async fn sign_in(&self, email: &str, password: &str) -> (u16, String, String) {
        let body = serde_json::json!({ "email": email, "password": password }).to_string();
        self.post("/api/session", &body).await
    }
}

fn options(data_dir: &Path) -> ServerOptions {
    ServerOptions {
        data_dir: Some(data_dir.to_owned()),
        ..ServerOptions::in_memory()
    }
}

async fn next_message(socket: &mut Socket) -> Option<Message> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame within 5 s")
        {
            Some(Ok(WsMessage::Binary(bytes))) => return Some(Message::decode(&bytes).unwrap()),
            Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// A native client: the sync engine over a tungstenite socket.
struct TestClient {
    engine: Client,
    docs: HashMap<DocumentId, AutoCommit>,
    socket: Socket,
}

impl TestClient {
    async fn connect(server: &Server, name: &str) -> TestClient {
        let mut engine = Client::new(ClientConfig {
            peer_id: PeerId::from(name),
            storage_id: Some(StorageId::new(format!("{name}-storage"))),
            is_ephemeral: false,
            ephemeral_session_id: format!("{name}-session"),
        });
        engine.handle_connected();
        let mut client = TestClient {
            engine,
            docs: HashMap::new(),
            socket: server.socket().await,
        };
        client.flush().await;
        client
            .pump_until(|events| {
                events
                    .iter()
                    .any(|e| matches!(e, ClientEvent::Joined { .. }))
            })
            .await;
        client
    }

    async fn flush(&mut self) {
        while let Some(frame) = self.engine.poll_frame() {
            self.socket
                .send(WsMessage::Binary(frame.into()))
                .await
                .unwrap();
        }
    }

    /// Handles frames until `done` says so for the events of one frame.
    async fn pump_until(&mut self, done: impl Fn(&[ClientEvent]) -> bool) {
        loop {
            let frame = match tokio::time::timeout(Duration::from_secs(5), self.socket.next()).await
            {
                Ok(Some(Ok(WsMessage::Binary(bytes)))) => bytes,
                other => panic!("expected a frame, got {other:?}"),
            };
            let events = self.engine.handle_frame(&frame, &mut self.docs).unwrap();
            self.flush().await;
            if done(&events) {
                return;
            }
        }
    }

    async fn edit(&mut self, id: DocumentId, key: &str, value: &str) {
        let doc = self.docs.entry(id).or_default();
        doc.put(ROOT, key, value).unwrap();
        self.engine.sync_document(id, doc);
        self.flush().await;
    }

    async fn wait_synced(&mut self, id: DocumentId) {
        while self
            .engine
            .pending_change_count(&id, self.docs.get_mut(&id).unwrap())
            > 0
        {
            self.pump_until(|_| true).await;
        }
    }

    async fn fetch(&mut self, id: DocumentId) -> AutoCommit {
        let doc = self.docs.entry(id).or_default();
        self.engine.sync_document(id, doc);
        self.flush().await;
        self.pump_until(|events| {
            events.iter().any(|e| {
                matches!(
                    e,
                    ClientEvent::DocumentChanged { .. } | ClientEvent::DocumentUnavailable { .. }
                )
            })
        })
        .await;
        self.docs[&id].clone()
    }
}

#[tokio::test]
async fn two_clients_sync_a_document_through_the_server_and_it_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(options(dir.path())).await;
    let id = DocumentId::from_bytes([7; 16]);

    let mut alice = TestClient::connect(&server, "alice").await;
    let storage_id = alice.engine.server_storage_id().cloned().unwrap();
    alice.edit(id, "customer", "Hardware Hut").await;
    alice.wait_synced(id).await;
    assert!(alice.engine.all_synced(&mut alice.docs));

    let mut bob = TestClient::connect(&server, "bob").await;
    let doc = bob.fetch(id).await;
    assert_eq!(
        doc.get(ROOT, "customer").unwrap().unwrap().0.to_string(),
        "\"Hardware Hut\""
    );

    // Bob's edit reaches Alice as a push.
    bob.edit(id, "next_visit", "Tuesday").await;
    alice
        .pump_until(|events| {
            events
                .iter()
                .any(|e| matches!(e, ClientEvent::DocumentChanged { .. }))
        })
        .await;
    assert!(alice.docs[&id].get(ROOT, "next_visit").unwrap().is_some());
    bob.wait_synced(id).await;

    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("fieldnotes_connections 2"), "{metrics}");
    assert!(metrics.contains("fieldnotes_documents_loaded 1"));
    assert!(metrics.contains("fieldnotes_storage_commit_seconds_count"));
    server.stop().await;

    // Same data dir: same storage id, and the document is still there.
    let server = Server::start(options(dir.path())).await;
    let mut carol = TestClient::connect(&server, "carol").await;
    assert_eq!(carol.engine.server_storage_id(), Some(&storage_id));
    let doc = carol.fetch(id).await;
    assert!(doc.get(ROOT, "customer").unwrap().is_some());
    assert!(doc.get(ROOT, "next_visit").unwrap().is_some());
    server.stop().await;
}

#[tokio::test]
async fn bad_frames_get_an_error_and_a_close_and_other_sockets_carry_on() {
    let server = Server::start(ServerOptions::in_memory()).await;
    let mut good = TestClient::connect(&server, "good").await;

    let mut bad = server.socket().await;
    bad.send(WsMessage::Binary(vec![0xff, 0x00, 0x13].into()))
        .await
        .unwrap();
    match next_message(&mut bad).await {
        Some(Message::Error(ErrorMessage { message, .. })) => {
            assert!(message.starts_with("invalid message"))
        }
        other => panic!("expected an error message, got {other:?}"),
    }
    assert!(
        next_message(&mut bad).await.is_none(),
        "then the socket closes"
    );

    let mut early = server.socket().await;
    let request = fieldnotes_sync::protocol::DocumentMessage {
        sender_id: PeerId::from("early"),
        target_id: PeerId::from("x"),
        document_id: DocumentId::from_bytes([1; 16]),
        data: vec![0x42, 0, 0, 1, 0, 0, 0, 2, 2, 0x84],
    };
    early
        .send(WsMessage::Binary(Message::Request(request).encode().into()))
        .await
        .unwrap();
    assert!(
        matches!(next_message(&mut early).await, Some(Message::Error(e)) if e.message == "message before join")
    );

    let mut wrong_version = server.socket().await;
    let join = Message::Join(Join {
        sender_id: PeerId::from("v2"),
        peer_metadata: PeerMetadata::default(),
        supported_protocol_versions: vec!["2".into()],
    });
    wrong_version
        .send(WsMessage::Binary(join.encode().into()))
        .await
        .unwrap();
    assert!(
        matches!(next_message(&mut wrong_version).await, Some(Message::Error(e)) if e.message == "unsupported protocol version")
    );

    // The good client still syncs.
    let id = DocumentId::from_bytes([2; 16]);
    good.edit(id, "k", "v").await;
    good.wait_synced(id).await;
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains("fieldnotes_protocol_errors_total 3"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn frames_over_the_limit_are_refused() {
    let server = Server::start(ServerOptions {
        max_frame_bytes: 1024,
        ..ServerOptions::in_memory()
    })
    .await;
    let mut socket = server.socket().await;
    socket
        .send(WsMessage::Binary(vec![0u8; 2048].into()))
        .await
        .unwrap();
    assert!(
        matches!(next_message(&mut socket).await, Some(Message::Error(e)) if e.message.starts_with("frame of 2048 bytes"))
    );
    server.stop().await;
}

#[tokio::test]
async fn health_answers_from_the_database_and_unknown_paths_are_json_404s() {
    let server = Server::start(ServerOptions::in_memory()).await;
    let (status, body) = server.get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "{\"status\":\"ok\"}"));
    let (status, body) = server.get("/no-such-page").await;
    assert_eq!(status, 404);
    assert!(body.contains("\"error\""));
    server.stop().await;
}

/// A sign-in whose failure count cannot be read is refused, however right its password.
#[tokio::test]
async fn a_sign_in_is_refused_when_its_throttle_cannot_be_checked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(options(dir.path())).await;
    let (email, password) = ("dana@example.com", "the right password");
    // Another connection to the same file, as `fieldnotes admin` would have.
    let mut other =
        fieldnotes_server::storage::Store::open(&dir.path().join(fieldnotes_server::DATABASE_FILE))
            .unwrap();
    let hash = auth::password::hash(password).unwrap();
    auth::create_user(other.db_mut(), email, "Dana", &hash, false).unwrap();
    let (status, _, body) = server.sign_in(email, password).await;
    assert_eq!(status, 200, "{body}");
    other.db_mut().batch("DROP TABLE sign_in_failures").unwrap();
    let (status, head, body) = server.sign_in(email, password).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Try again"), "{body}");
    assert!(!head.contains("set-cookie"), "{head}");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_open_sockets() {
    let server = Server::start(ServerOptions::in_memory()).await;
    let mut client = TestClient::connect(&server, "stays").await;
    server.stop().await;
    match tokio::time::timeout(Duration::from_secs(5), client.socket.next())
        .await
        .unwrap()
    {
        Some(Ok(WsMessage::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a going-away close, got {other:?}"),
    }
}

/// The interop proof for our own client: one engine-driven client pushes 100 real
/// account documents (the domain model's), a fresh client with nothing stored pulls every one,
/// and each hydrates to the same account.
#[tokio::test]
async fn our_client_pushes_100_accounts_and_a_fresh_client_pulls_every_one() {
    use fieldnotes_model::{
        AccountDoc, AccountId, DriverKey, Editor, NewAccount, NewNote, NoteId, Strength, TeamId,
        UserId, UsualDriver, hydrate_account,
    };
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(options(data.path())).await;
    let editor = Editor::new(UserId::new("ann"), &[7; 16]).unwrap();

    let mut pusher = TestClient::connect(&server, "pusher").await;
    let mut ids = Vec::new();
    for i in 0..100u8 {
        let id = DocumentId::from_bytes([i; 16]);
        let mut account = AccountDoc::create(
            editor.clone(),
            NewAccount {
                id: AccountId::new(id.to_string()),
                team: TeamId::new("north"),
                name: format!("Account {i}"),
                branch: "North".into(),
                area: "Riverside".into(),
            },
            1_000,
        )
        .unwrap();
        let delivery = DriverKey::usual(UsualDriver::Delivery);
        account
            .set_driver(&delivery, Strength::STRONG, "vans on time", 1_001)
            .unwrap();
        account
            .splice_value_proposition(0, 0, "We keep you stocked.", 1_002)
            .unwrap();
        for n in 0..7u8 {
            account
                .add_note(
                    NewNote {
                        id: NoteId::from_random(&[i, n, 1, 2, 3, 4, 5, 6]),
                        text: format!("visit {n}"),
                        drivers: vec![delivery.clone()],
                        objections: vec![],
                    },
                    2_000 + i64::from(n),
                )
                .unwrap();
        }
        let mut doc = account.into_automerge();
        pusher.engine.sync_document(id, &mut doc);
        pusher.docs.insert(id, doc);
        ids.push(id);
    }
    pusher.flush().await;
    for id in &ids {
        pusher.wait_synced(*id).await;
    }

    let mut puller = TestClient::connect(&server, "puller").await;
    for id in &ids {
        let pulled = puller.fetch(*id).await;
        let original = hydrate_account(&pusher.docs[id]).unwrap();
        assert_eq!(hydrate_account(&pulled).unwrap(), original, "document {id}");
    }
    server.stop().await;
}

fn postgres_options(url: &str) -> ServerOptions {
    ServerOptions {
        database: Some(url.to_owned()),
        ..ServerOptions::in_memory()
    }
}

#[tokio::test]
async fn on_postgres_two_clients_sync_a_document_and_it_survives_a_restart() {
    let database = fieldnotes_server::test_db::TestDatabase::new();
    let server = Server::start(postgres_options(&database.url)).await;
    let id = DocumentId::from_bytes([8; 16]);
    let mut alice = TestClient::connect(&server, "alice").await;
    let storage_id = alice.engine.server_storage_id().cloned().unwrap();
    alice.edit(id, "customer", "Hardware Hut").await;
    alice.wait_synced(id).await;
    let mut bob = TestClient::connect(&server, "bob").await;
    let doc = bob.fetch(id).await;
    assert!(doc.get(ROOT, "customer").unwrap().is_some());
    bob.edit(id, "next_visit", "Tuesday").await;
    alice
        .pump_until(|events| {
            events
                .iter()
                .any(|e| matches!(e, ClientEvent::DocumentChanged { .. }))
        })
        .await;
    bob.wait_synced(id).await;
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    server.stop().await;

    let server = Server::start(postgres_options(&database.url)).await;
    let mut carol = TestClient::connect(&server, "carol").await;
    assert_eq!(carol.engine.server_storage_id(), Some(&storage_id));
    let doc = carol.fetch(id).await;
    assert!(doc.get(ROOT, "customer").unwrap().is_some());
    assert!(doc.get(ROOT, "next_visit").unwrap().is_some());
    server.stop().await;
}

/// Two instances on one PostgreSQL database: a change synced through one reaches a socket on
/// the other as a push (LISTEN/NOTIFY), both ways, and quickly.
#[tokio::test]
async fn on_postgres_a_change_through_one_instance_reaches_a_socket_on_another() {
    let database = fieldnotes_server::test_db::TestDatabase::new();
    let one = Server::start(postgres_options(&database.url)).await;
    let two = Server::start(postgres_options(&database.url)).await;
    let id = DocumentId::from_bytes([9; 16]);

    let mut alice = TestClient::connect(&one, "alice").await;
    let mut bob = TestClient::connect(&two, "bob").await;
    assert_eq!(
        alice.engine.server_storage_id(),
        bob.engine.server_storage_id(),
        "one storage id for the deployment"
    );
    alice.edit(id, "customer", "Hardware Hut").await;
    alice.wait_synced(id).await;
    let doc = bob.fetch(id).await;
    assert!(doc.get(ROOT, "customer").unwrap().is_some());

    // Both have the document open, each on its own instance: edits are pushed across.
    for round in 0..3 {
        let started = std::time::Instant::now();
        alice.edit(id, "note", &format!("from alice {round}")).await;
        bob.pump_until(|events| {
            events
                .iter()
                .any(|e| matches!(e, ClientEvent::DocumentChanged { .. }))
        })
        .await;
        let value = bob.docs[&id]
            .get(ROOT, "note")
            .unwrap()
            .unwrap()
            .0
            .to_string();
        assert_eq!(value, format!("\"from alice {round}\""));
        eprintln!("instance 1 → instance 2 in {:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(3));

        bob.edit(id, "reply", &format!("from bob {round}")).await;
        alice
            .pump_until(|events| {
                events
                    .iter()
                    .any(|e| matches!(e, ClientEvent::DocumentChanged { .. }))
            })
            .await;
        assert!(alice.docs[&id].get(ROOT, "reply").unwrap().is_some());
        alice.wait_synced(id).await;
        bob.wait_synced(id).await;
    }
    let (_, metrics) = two.get("/metrics").await;
    assert!(
        metrics.contains("fieldnotes_documents_merged_from_store_total"),
        "{metrics}"
    );
    one.stop().await;
    two.stop().await;
}

/// Sign-outs are read from the database: a session revoked through one instance closes its
/// socket on another within the revalidation period.
#[tokio::test]
async fn on_postgres_a_session_revoked_anywhere_closes_its_socket_on_every_instance() {
    let database = fieldnotes_server::test_db::TestDatabase::new();
    let one = Server::start(postgres_options(&database.url)).await;
    let two = Server::start(postgres_options(&database.url)).await;
    let mut socket = two.socket().await;
    let token = two.token.clone();
    let url = database.url.clone();
    // Revoke through the database instance one writes to (as `fieldnotes admin` would).
    std::thread::spawn(move || {
        let mut store = fieldnotes_server::storage::Store::open_postgres(&url).unwrap();
        auth::revoke_session(store.db_mut(), &auth::token_hash(&token)).unwrap();
    })
    .join()
    .unwrap();
    let started = std::time::Instant::now();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(WsMessage::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            _ => break None,
        }
    };
    assert_eq!(
        closed.map(|f| u16::from(f.code)),
        Some(fieldnotes_server::hub_thread::SIGNED_OUT_CLOSE_CODE)
    );
    eprintln!("closed on the other instance after {:?}", started.elapsed());
    one.stop().await;
    two.stop().await;
}

/// An instance whose database connection is cut reports not ready, then reconnects by itself.
#[tokio::test]
async fn on_postgres_healthz_is_not_ready_while_the_connection_is_lost_and_recovers() {
    let database = fieldnotes_server::test_db::TestDatabase::new();
    let server = Server::start(postgres_options(&database.url)).await;
    assert_eq!(server.get("/healthz").await.0, 200);
    cut_connections(&database.url);
    let mut seen = Vec::new();
    for _ in 0..50 {
        let status = server.get("/healthz").await.0;
        seen.push(status);
        if status == 200 && seen.contains(&503) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.contains(&503), "not ready while cut off: {seen:?}");
    assert_eq!(seen.last(), Some(&200), "ready again: {seen:?}");
    // And it syncs again.
    let id = DocumentId::from_bytes([10; 16]);
    let mut alice = TestClient::connect(&server, "alice").await;
    alice.edit(id, "customer", "After the cut").await;
    alice.wait_synced(id).await;
    server.stop().await;
}

/// One statement on a plain connection (no store: it would refuse a newer schema).
fn run_sql(url: &str, sql: &'static str) {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client.batch_execute(sql).unwrap();
    })
    .join()
    .unwrap();
}

/// Ends every connection to the database (as a PostgreSQL restart or a network cut would).
fn cut_connections(url: &str) {
    let (admin, name) = (
        fieldnotes_server::test_db::admin_url(),
        url.rsplit('/').next().unwrap().to_owned(),
    );
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&name],
            )
            .unwrap();
    })
    .join()
    .unwrap();
}

/// An instance cut off while a newer server migrated the database does not go back to writing
/// it when it reconnects: it stays not ready, and is ready again once the schema is one it
/// knows.
#[tokio::test]
async fn on_postgres_an_instance_that_reconnects_to_a_newer_schema_stays_not_ready() {
    let database = fieldnotes_server::test_db::TestDatabase::new();
    let server = Server::start(postgres_options(&database.url)).await;
    assert_eq!(server.get("/healthz").await.0, 200);
    run_sql(
        &database.url,
        "UPDATE schema_version SET version = version + 100",
    );
    cut_connections(&database.url);
    let mut waited = 0;
    while server.get("/healthz").await.0 != 503 {
        waited += 1;
        assert!(waited < 50, "not ready once cut off");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..20 {
        assert_eq!(
            server.get("/healthz").await.0,
            503,
            "an instance must not use a database a newer server migrated"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run_sql(
        &database.url,
        "UPDATE schema_version SET version = version - 100",
    );
    let mut waited = 0;
    while server.get("/healthz").await.0 != 200 {
        waited += 1;
        assert!(waited < 50, "ready again once the schema is one it knows");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

/// Runs `work` on a connection of its own to a PostgreSQL database (as `fieldnotes admin` would).
fn on_database<T: Send + 'static>(
    url: &str,
    work: impl FnOnce(&mut fieldnotes_server::db::Db) -> T + Send + 'static,
) -> T {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut store = fieldnotes_server::storage::Store::open_postgres(&url).unwrap();
        work(store.db_mut())
    })
    .join()
    .unwrap()
}

/// Failed sign-ins are counted in the database: instances behind one load balancer share
/// one count, so an attacker gets five tries in all, not five per instance.
#[tokio::test]
async fn on_postgres_failed_sign_ins_are_counted_once_for_all_instances() {
    let database = fieldnotes_server::test_db::TestDatabase::new();
    let one = Server::start(postgres_options(&database.url)).await;
    let two = Server::start(postgres_options(&database.url)).await;
    let password = "the right password";
    let hash = auth::password::hash(password).unwrap();
    on_database(&database.url, move |db| {
        for email in ["dana@example.com", "eli@example.com"] {
            auth::create_user(db, email, "Rep", &hash, false).unwrap();
        }
    });
    let instances = [&one, &two];

    // Wrong passwords, one instance then the other.
    let mut statuses = Vec::new();
    for i in 0..12 {
        let (status, _, body) = instances[i % 2]
            .sign_in("dana@example.com", &format!("wrong password {i}"))
            .await;
        assert!(status == 401 || status == 429, "{status}: {body}");
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 429, 429, 429, 429, 429, 429, 429],
        "five failures in all, then locked"
    );
    // Locked on both instances, for the right password too.
    for server in instances {
        let (status, head, body) = server.sign_in("dana@example.com", password).await;
        assert_eq!(status, 429, "{body}");
        assert!(body.contains("Too many wrong passwords"), "{body}");
        let retry: u64 = head
            .lines()
            .find_map(|line| line.strip_prefix("retry-after: "))
            .unwrap_or_else(|| panic!("429 without Retry-After: {head}"))
            .trim()
            .parse()
            .unwrap();
        assert!((1..=15 * 60).contains(&retry), "{retry}");
        assert!(!head.contains("set-cookie"), "{head}");
    }

    // Twenty wrong passwords at once, alternating between the instances: still five.
    let attempts = (0..20).map(|i| async move {
        let password = format!("wrong password {i}");
        instances[i % 2].sign_in("eli@example.com", &password).await
    });
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|(status, _, _)| status)
        .collect();
    let verified = statuses.iter().filter(|s| **s == 401).count();
    let locked = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((verified, locked), (5, 15), "{statuses:?}");

    // The window passes (moved back in the database rather than waited for): the right
    // password works again, through either instance.
    let window_ms = auth::throttle::WINDOW.as_millis() as i64;
    on_database(&database.url, move |db| {
        db.execute(
            "UPDATE sign_in_failures SET window_started_ms = window_started_ms - ?1",
            fieldnotes_server::params![window_ms],
        )
        .unwrap();
    });
    for (server, email) in [(&one, "dana@example.com"), (&two, "eli@example.com")] {
        let (status, head, body) = server.sign_in(email, password).await;
        assert_eq!(status, 200, "{email}: {body}");
        assert!(head.contains("set-cookie: fieldnotes_session="), "{head}");
    }
    one.stop().await;
    two.stop().await;
}
