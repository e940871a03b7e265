//! The sync server over real WebSockets and a real database (the SQLite file, or PostgreSQL
//! with `FIELDNOTES_TEST_BACKEND=postgres`), driven by an independent raw protocol client
//! (tests/common). Start: `cargo test -p fieldnotes-e2e`.

mod common;

use std::time::Duration;

use automerge::sync;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT, ReadDoc};
use common::cbor::{self, Value};
use common::raw::{self, Peer, Recv, Synced, fresh_pull, new_doc_id, new_peer_id, sorted};
use common::server::{Server, http_get};

fn same_content(a: &AutoCommit, b: &AutoCommit) -> bool {
    common::content(a) == common::content(b)
}

#[tokio::test]
async fn join_is_answered_with_peer_and_a_storage_id_stable_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let (status, body) = http_get(server.port, "/healthz").unwrap();
    assert_eq!(status, 200, "/healthz: {body}");

    // The exact join frame the npm client sent in the captured session (cbor-x long-form map
    // headers, storageId = CBOR undefined 0xf7), byte for byte.
    let captured_join = cbor::unhex(
        "b900046474797065646a6f696e6873656e646572496468636c69656e742d416c706565724d65746164617461b900026973746f726167654964f7\
         6b6973457068656d6572616cf57819737570706f7274656450726f746f636f6c56657273696f6e73816131",
    );
    let mut ws = raw::connect(&server.sync()).await;
    let sent_at = std::time::Instant::now();
    raw::send_raw(&mut ws, captured_join).await;
    let a = Peer::expect_peer(ws, "client-A").await;
    let waited = sent_at.elapsed();
    assert!(
        waited < Duration::from_secs(1),
        "peer must answer join within 1 s (the JS client gives up then), took {waited:?}"
    );
    let storage_id = a
        .server_storage_id
        .clone()
        .expect("server peerMetadata.storageId must be a string");
    assert!(!storage_id.is_empty());
    a.close().await;

    // a join without supportedProtocolVersions is treated as version 1
    let mut ws = raw::connect(&server.sync()).await;
    let minimal = Value::map([
        ("type", Value::text("join")),
        ("senderId", Value::text("raw-2")),
        ("peerMetadata", Value::map::<&str>([])),
    ]);
    raw::send_value(&mut ws, &minimal).await;
    let b = Peer::expect_peer(ws, "raw-2").await;
    assert_eq!(
        b.server_storage_id.as_deref(),
        Some(storage_id.as_str()),
        "same storageId for every connection"
    );
    b.close().await;

    server.stop();
    let server = Server::start(dir.path());
    let c = Peer::join(&server.sync(), &new_peer_id("after-restart")).await;
    assert_eq!(
        c.server_storage_id.as_deref(),
        Some(storage_id.as_str()),
        "storageId must survive a restart"
    );
    c.close().await;
}

#[tokio::test]
async fn metrics_endpoint_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (status, body) = http_get(server.port, "/metrics").unwrap();
    assert_eq!(status, 200, "/metrics: {body}");
    assert!(!body.trim().is_empty(), "/metrics has a body");
}

#[tokio::test]
async fn a_pushed_document_is_pulled_by_another_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut a = Peer::join(&server.sync(), &new_peer_id("pusher")).await;
    let mut docs = Vec::new();
    for i in 0..10 {
        let id = new_doc_id();
        let mut doc = common::account_doc(i, 9);
        let mut st = sync::State::new();
        a.push(&id, &mut doc, &mut st)
            .await
            .unwrap_or_else(|e| panic!("push {i}: {e}\nserver log:\n{}", server.stderr_tail()));
        docs.push((id, doc));
    }
    let mut b = Peer::join(&server.sync(), &new_peer_id("puller")).await;
    for (id, doc) in docs.iter_mut() {
        let heads = doc.get_heads();
        let (r, mut got, _) = b
            .pull(id, Some(&heads))
            .await
            .unwrap_or_else(|e| panic!("pull {id}: {e}"));
        assert_eq!(r, Synced::Done);
        assert_eq!(sorted(got.get_heads()), sorted(heads));
        assert!(
            same_content(doc, &got),
            "content of {id} differs after the round trip"
        );
        assert_eq!(
            got.save(),
            doc.save(),
            "saved bytes of {id} differ after the round trip"
        );
    }
    match server.database_url() {
        Some(url) => {
            let chunks: i64 = common::backend::with_client(&url, |db| {
                db.query_one("SELECT count(*) FROM chunks", &[])
                    .expect("count the chunks")
                    .get(0)
            });
            assert!(
                chunks >= docs.len() as i64,
                "the server keeps the documents in its PostgreSQL database: {chunks} chunks"
            );
        }
        None => assert!(
            std::fs::read_dir(dir.path()).unwrap().count() > 0,
            "the server keeps its data in the data dir"
        ),
    }
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn an_unknown_document_is_answered_with_doc_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut p = Peer::join(&server.sync(), &new_peer_id("asker")).await;
    let id = new_doc_id();
    let (r, mut doc, _) = p.pull(&id, None).await.unwrap();
    assert_eq!(r, Synced::Unavailable, "request for an unknown id");
    assert!(doc.get_heads().is_empty());
    let m = p
        .seen
        .iter()
        .rev()
        .find(|m| m.get_str("documentId") == Some(id.as_str()))
        .unwrap();
    assert_eq!(
        m.get_str("targetId"),
        Some(p.id.as_str()),
        "doc-unavailable.targetId: {m}"
    );
    assert_eq!(
        m.get_str("senderId"),
        Some(p.server_id.as_str()),
        "doc-unavailable.senderId: {m}"
    );

    // and the same id can be created afterwards (doc-unavailable, then sync)
    let mut doc = common::account_doc(1, 3);
    let mut st = sync::State::new();
    p.push(&id, &mut doc, &mut st).await.unwrap();
    let (r, got) = fresh_pull(&server.sync(), &id, Some(&doc.get_heads())).await;
    assert_eq!(r, Synced::Done);
    assert!(same_content(&doc, &got));
}

#[tokio::test]
async fn concurrent_edits_from_two_clients_converge() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let url = server.sync();
    let id = new_doc_id();
    let mut a = Peer::join(&url, &new_peer_id("alice")).await;
    let mut doc_a = common::account_doc(7, 4);
    let mut st_a = sync::State::new();
    a.push(&id, &mut doc_a, &mut st_a).await.unwrap();

    let mut b = Peer::join(&url, &new_peer_id("bob")).await;
    let (_, mut doc_b, mut st_b) = b.pull(&id, Some(&doc_a.get_heads())).await.unwrap();

    // concurrent edits on both sides, including the same key and the same text
    let vp_a = doc_a.get(ROOT, "valueProposition").unwrap().unwrap().1;
    let vp_b = doc_b.get(ROOT, "valueProposition").unwrap().unwrap().1;
    doc_a.put(ROOT, "branch", "Alice's branch").unwrap();
    doc_a.splice_text(&vp_a, 0, 0, "ALICE ").unwrap();
    doc_a.commit();
    doc_b.put(ROOT, "branch", "Bob's branch").unwrap();
    doc_b.splice_text(&vp_b, 0, 0, "BOB ").unwrap();
    doc_b.put(ROOT, "owner", "bob").unwrap();
    doc_b.commit();
    let mut want = doc_a.get_heads();
    want.extend(doc_b.get_heads());
    let want = sorted(want);

    let converged = |d: &mut AutoCommit, s: &sync::State| {
        sorted(d.get_heads()) == want && s.their_heads.clone().map(sorted) == Some(want.clone())
    };
    let t = Duration::from_secs(20);
    let (ra, rb) = tokio::join!(
        a.sync_doc(&id, &mut doc_a, &mut st_a, "sync", t, converged),
        b.sync_doc(&id, &mut doc_b, &mut st_b, "sync", t, converged)
    );
    ra.unwrap_or_else(|e| panic!("alice did not converge: {e}"));
    rb.unwrap_or_else(|e| panic!("bob did not converge: {e}"));
    assert!(
        same_content(&doc_a, &doc_b),
        "both clients see the same document"
    );
    let text = doc_a.text(&vp_a).unwrap();
    assert!(
        text.contains("ALICE") && text.contains("BOB"),
        "both text edits kept: {text:?}"
    );

    let (_, server_copy) = fresh_pull(&url, &id, Some(&want)).await;
    assert!(
        same_content(&doc_a, &server_copy),
        "the server's copy converged too"
    );
}

#[tokio::test]
async fn data_survives_a_graceful_restart_a_reconnect_and_a_kill9_after_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let writer = new_peer_id("writer");
    let mut p = Peer::join(&server.sync(), &writer).await;
    let id1 = new_doc_id();
    let mut d1 = common::account_doc(1, 9);
    p.push(&id1, &mut d1, &mut sync::State::new())
        .await
        .unwrap();
    p.close().await;
    server.stop();
    assert!(!server.is_alive());

    let mut server = Server::start(dir.path());
    let (r, got) = fresh_pull(&server.sync(), &id1, Some(&d1.get_heads())).await;
    assert_eq!(r, Synced::Done);
    assert!(same_content(&d1, &got), "content after graceful restart");
    // the writer reconnects with the same peer id and keeps editing the same document
    let mut p = Peer::join(&server.sync(), &writer).await;
    d1.put(ROOT, "afterRestart", true).unwrap();
    d1.commit();
    p.push(&id1, &mut d1, &mut sync::State::new())
        .await
        .unwrap_or_else(|e| panic!("push after reconnect: {e}"));

    // acknowledged, then SIGKILL straight away: must still be there
    let id2 = new_doc_id();
    let mut d2 = common::account_doc(2, 9);
    p.push(&id2, &mut d2, &mut sync::State::new())
        .await
        .unwrap();
    server.kill9();
    drop(p);
    let server = Server::start(dir.path());
    for (id, d) in [(&id1, &mut d1), (&id2, &mut d2)] {
        let (r, got) = fresh_pull(&server.sync(), id, Some(&d.get_heads())).await;
        assert_eq!(r, Synced::Done, "{id} after kill -9");
        assert!(same_content(d, &got), "content of {id} after kill -9");
    }
}

#[tokio::test]
async fn a_second_join_with_the_same_peer_id_replaces_the_older_socket() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let pid = new_peer_id("twice");
    let mut first = Peer::join(&server.sync(), &pid).await;
    let mut second = Peer::join(&server.sync(), &pid).await;
    // the older socket is closed by the server
    let mut closed = false;
    for _ in 0..20 {
        match first.recv(Duration::from_secs(3)).await {
            Recv::Closed(_) => {
                closed = true;
                break;
            }
            Recv::Timeout => break,
            _ => continue,
        }
    }
    assert!(
        closed,
        "the older socket of a re-joined peer id must be closed"
    );
    // and the newer one works
    let id = new_doc_id();
    let mut d = common::account_doc(3, 2);
    second
        .push(&id, &mut d, &mut sync::State::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_message_whose_sender_is_not_the_sockets_peer_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut p = Peer::join(&server.sync(), &new_peer_id("honest")).await;
    let id = new_doc_id();
    let mut d = common::account_doc(4, 3);
    // a message carrying every change of a new document, as from somebody else
    let spoofed = raw::doc_msg(
        "sync",
        "somebody-else",
        &p.server_id,
        &id,
        raw::changes_message(&mut d),
    );
    p.send(&spoofed).await;
    p.barrier().await;
    let (r, _) = fresh_pull(&server.sync(), &id, None).await;
    assert_eq!(
        r,
        Synced::Unavailable,
        "a spoofed sync must not create the document"
    );
    // positive control: the very same message from the socket's own peer does create it
    let honest = raw::doc_msg(
        "sync",
        &p.id,
        &p.server_id,
        &id,
        raw::changes_message(&mut d),
    );
    p.send(&honest).await;
    p.wait_ack(&id, &d.get_heads(), Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the server must acknowledge the honest message: {e}\nserver log:\n{}",
                server.stderr_tail()
            )
        });
    let (r, got) = fresh_pull(&server.sync(), &id, Some(&d.get_heads())).await;
    assert_eq!(
        r,
        Synced::Done,
        "the same changes from the real peer are stored"
    );
    assert!(same_content(&d, &got));
}

// =====================================================================================
// PLACE FOR: the Rust client engine (crates/sync) against this same server.
// When fieldnotes-sync's client engine lands, add a test here (or in tests/tests/sync_engine.rs)
// that drives it over a tokio-tungstenite socket against `Server::start`, pushes and pulls the
// same account documents as above, and cross-checks with `raw::fresh_pull` (the independent
// client) so that the engine and the server cannot agree on a wrong wire format.
// =====================================================================================

#[tokio::test]
async fn ephemeral_messages_are_relayed_to_other_peers_of_the_document_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let url = server.sync();
    let id = new_doc_id();
    let mut a = Peer::join(&url, &new_peer_id("eph-a")).await;
    let mut doc = common::account_doc(9, 2);
    a.push(&id, &mut doc, &mut sync::State::new())
        .await
        .unwrap();
    let mut b = Peer::join(&url, &new_peer_id("eph-b")).await;
    let _ = b.pull(&id, Some(&doc.get_heads())).await.unwrap();

    let payload = cbor::encode(&Value::map([
        ("typing", Value::Bool(true)),
        ("user", Value::text("alice")),
    ]));
    let eph = |count: u64| {
        Value::map([
            ("type", Value::text("ephemeral")),
            ("targetId", Value::text(a.server_id.clone())),
            ("documentId", Value::text(id.clone())),
            ("data", Value::Bytes(payload.clone())),
            ("count", Value::Uint(count)),
            ("sessionId", Value::text("session-e2e")),
            ("senderId", Value::text(a.id.clone())),
        ])
    };
    let first = eph(1);
    a.send(&first).await;
    a.send(&first).await; // a repeat (same session and count) is dropped
    let mut relayed = Vec::new();
    loop {
        match b.recv(Duration::from_millis(1500)).await {
            Recv::Msg(m) if m.get_str("type") == Some("ephemeral") => relayed.push(m),
            Recv::Msg(_) => continue,
            _ => break,
        }
    }
    assert_eq!(
        relayed.len(),
        1,
        "exactly one relayed ephemeral message (repeats dropped): {relayed:?}"
    );
    let m = &relayed[0];
    assert_eq!(
        m.get_str("senderId"),
        Some(a.id.as_str()),
        "relayed ephemeral keeps the origin as senderId: {m}"
    );
    assert_eq!(
        m.get_str("targetId"),
        Some(b.id.as_str()),
        "relayed ephemeral targets b: {m}"
    );
    assert_eq!(m.get_str("documentId"), Some(id.as_str()));
    assert_eq!(
        m.get_bytes("data"),
        Some(&payload[..]),
        "payload relayed unchanged"
    );
    assert_eq!(m.get_str("sessionId"), Some("session-e2e"));
}
