//! Our client engine (`fieldnotes_sync::client`, the one the web app runs) against the npm
//! automerge-repo 2.x sync stack: the reference JavaScript server (Repo + NodeWSServerAdapter +
//! NodeFS storage). One engine client pushes real model accounts; a fresh one pulls each and it
//! hydrates to the same account. Needs `npm ci` in tests/node (done by `cargo xtask test`);
//! without it the server does not start and the test fails loudly.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use automerge::AutoCommit;
use common::server::Server;
use fieldnotes_model::{
    AccountDoc, AccountId, DriverKey, Editor, NewAccount, NewNote, NoteId, Strength, TeamId,
    UserId, UsualDriver, hydrate_account,
};
use fieldnotes_sync::{Client, ClientConfig, ClientEvent, DocumentId, PeerId};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct EngineClient {
    engine: Client,
    docs: HashMap<DocumentId, AutoCommit>,
    socket: Socket,
}

impl EngineClient {
    async fn connect(url: &str, name: &str) -> EngineClient {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut client = EngineClient {
            engine: Client::new(ClientConfig {
                peer_id: PeerId::from(name),
                storage_id: None,
                is_ephemeral: true,
                ephemeral_session_id: format!("{name}-session"),
            }),
            docs: HashMap::new(),
            socket,
        };
        client.engine.handle_connected();
        client.flush().await;
        client
            .pump_until(|e| e.iter().any(|e| matches!(e, ClientEvent::Joined { .. })))
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

    async fn pump_until(&mut self, done: impl Fn(&[ClientEvent]) -> bool) {
        loop {
            let frame =
                match tokio::time::timeout(Duration::from_secs(10), self.socket.next()).await {
                    Ok(Some(Ok(WsMessage::Binary(bytes)))) => bytes,
                    Ok(Some(Ok(_))) => continue,
                    other => panic!("expected a frame from the reference server, got {other:?}"),
                };
            let events = self.engine.handle_frame(&frame, &mut self.docs).unwrap();
            self.flush().await;
            if done(&events) {
                return;
            }
        }
    }
}

fn account(editor: &Editor, id: DocumentId, i: u8) -> AutoCommit {
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
    let training = DriverKey::usual(UsualDriver::Training);
    account
        .set_driver(&training, Strength::DECISIVE, "asked for the course", 1_001)
        .unwrap();
    account
        .splice_value_proposition(0, 0, "Training days that fit the shop.", 1_002)
        .unwrap();
    account
        .add_note(
            NewNote {
                id: NoteId::from_random(&[i, 9, 9, 9, 9, 9, 9, 9]),
                text: "came to the open day".into(),
                drivers: vec![training],
                objections: vec!["too far".into()],
            },
            1_003,
        )
        .unwrap();
    account.into_automerge()
}

#[tokio::test]
async fn our_client_engine_syncs_accounts_through_the_reference_javascript_server() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("node/reference-server-as-bin.sh");
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(&script, data.path());
    let url = server.ws_url();
    let editor = Editor::new(UserId::new("ann"), &[3; 16]).unwrap();

    let mut pusher = EngineClient::connect(&url, "engine-pusher").await;
    let ids: Vec<DocumentId> = (0..20u8)
        .map(|i| DocumentId::from_bytes([i.wrapping_add(40); 16]))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let mut doc = account(&editor, *id, i as u8);
        pusher.engine.sync_document(*id, &mut doc);
        pusher.docs.insert(*id, doc);
    }
    pusher.flush().await;
    // Acknowledged: the reference server's replies cover every local change.
    while !pusher.engine.all_synced(&mut pusher.docs) {
        pusher.pump_until(|_| true).await;
    }

    let mut puller = EngineClient::connect(&url, "engine-puller").await;
    for id in &ids {
        let mut empty = AutoCommit::new();
        puller.engine.sync_document(*id, &mut empty);
        puller.docs.insert(*id, empty);
    }
    puller.flush().await;
    let expected: HashMap<DocumentId, _> = ids
        .iter()
        .map(|id| (*id, hydrate_account(&pusher.docs[id]).unwrap()))
        .collect();
    let complete = |docs: &mut HashMap<DocumentId, AutoCommit>| {
        ids.iter()
            .all(|id| hydrate_account(&docs[id]).ok().as_ref() == expected.get(id))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !complete(&mut puller.docs) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fresh client did not receive every account within 60 s; server log:\n{}",
            server.stderr_tail()
        );
        puller.pump_until(|_| true).await;
    }
}
