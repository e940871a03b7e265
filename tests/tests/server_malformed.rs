//! Malformed input, one kind per test. For each: a bystander connection opened (and synced)
//! beforehand; the bad input must get an `error` message and/or the socket closed; afterwards the
//! bystander still syncs, the server is alive, and nothing stored changed (the bystander's document
//! is unchanged and the document the bad input named does not exist).

mod common;

use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ROOT};
use common::cbor::{self, Value};
use common::raw::{self, Endpoint, Peer, Recv, Synced, Ws, fresh_pull, new_doc_id, new_peer_id};
use common::server::Server;

/// Frame size limit the server is assumed to enforce.
const LIMIT: usize = 8 << 20;

struct Scenario {
    server: Server,
    _dir: tempfile::TempDir,
    bystander: Peer,
    doc_id: String,
    doc: AutoCommit,
    state: sync::State,
    /// `fieldnotes_change_chunks_stored_total` after the last legitimate write.
    chunks_mark: u64,
}

/// Wait (bounded) until the stored-chunks metric exceeds `old`: the server updates its counters
/// just after it has sent a batch's replies, so right after an acknowledgement it may lag a little.
fn chunks_above(server: &Server, old: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = stored_chunks(server);
        if n > old {
            return n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "an acknowledged push was not counted in fieldnotes_change_chunks_stored_total (still {n})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The server's count of change chunks written to storage, from /metrics.
fn stored_chunks(server: &Server) -> u64 {
    let (status, body) = common::server::http_get(server.port, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix("fieldnotes_change_chunks_stored_total ").map(|v| v.trim().parse::<f64>().expect("metric value") as u64))
        .unwrap_or_else(|| panic!("/metrics has no fieldnotes_change_chunks_stored_total (used to prove bad input stored nothing):\n{body}"))
}

impl Scenario {
    async fn new() -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path());
        let mut bystander = Peer::join(&server.sync(), &new_peer_id("bystander")).await;
        let doc_id = new_doc_id();
        let mut doc = common::account_doc(11, 9);
        let mut state = sync::State::new();
        bystander
            .push(&doc_id, &mut doc, &mut state)
            .await
            .expect("bystander push");
        let chunks_mark = chunks_above(&server, 0);
        Scenario {
            server,
            _dir: dir,
            bystander,
            doc_id,
            doc,
            state,
            chunks_mark,
        }
    }

    /// `/sync` as the scenario's (default) user.
    fn url(&self) -> Endpoint {
        self.server.sync()
    }

    /// After the attack: server alive, stored data unchanged, bystander still syncs.
    async fn assert_healthy(&mut self, what: &str, untouched_doc: Option<&str>) {
        assert!(
            self.server.is_alive(),
            "{what}: the server process died; log:\n{}",
            self.server.stderr_tail()
        );
        let heads = self.doc.get_heads();
        let (r, got) = fresh_pull(&self.url(), &self.doc_id, Some(&heads)).await;
        assert_eq!(
            r,
            Synced::Done,
            "{what}: bystander's document must still be there"
        );
        assert_eq!(
            common::content(&got),
            common::content(&self.doc),
            "{what}: bystander's document changed"
        );
        // the bad input's batch was handled (and counted) before this pull's batch was
        assert_eq!(
            stored_chunks(&self.server),
            self.chunks_mark,
            "{what}: the bad input made the server store change chunks"
        );
        if let Some(id) = untouched_doc {
            let (r, _) = fresh_pull(&self.url(), id, None).await;
            assert_eq!(
                r,
                Synced::Unavailable,
                "{what}: the document named by the bad input must not have been stored"
            );
        }
        // the connection opened beforehand still syncs a new edit
        self.doc.put(ROOT, "afterAttack", what).unwrap();
        self.doc.commit();
        let (id, doc, st) = (&self.doc_id, &mut self.doc, &mut self.state);
        self.bystander.push(id, doc, st).await.unwrap_or_else(|e| {
            panic!(
                "{what}: bystander can no longer sync: {e}\nserver log:\n{}",
                self.server.stderr_tail()
            )
        });
        let heads: Vec<ChangeHash> = self.doc.get_heads();
        let (r, _) = fresh_pull(&self.url(), &self.doc_id, Some(&heads)).await;
        assert_eq!(
            r,
            Synced::Done,
            "{what}: the bystander's new edit reached the server"
        );
        self.chunks_mark = chunks_above(&self.server, self.chunks_mark);
    }
}

/// The socket must get an `error` message and/or be closed within a few seconds.
/// Returns a description of what happened.
async fn expect_error_or_close(ws: &mut Ws, what: &str, sent_hex: &str) -> String {
    let mut got_error = None;
    for _ in 0..50 {
        match raw::recv(ws, Duration::from_secs(5)).await {
            Recv::Msg(m) if m.get_str("type") == Some("error") => {
                got_error = Some(m.to_string());
                // the server may keep the socket or close it: give it a moment either way
                match raw::recv(ws, Duration::from_millis(500)).await {
                    Recv::Closed(c) => {
                        return format!("error {} then closed {c:?}", got_error.unwrap());
                    }
                    _ => return format!("error {}", got_error.unwrap()),
                }
            }
            Recv::Msg(m)
                if matches!(
                    m.get_str("type"),
                    Some("sync" | "request" | "remote-heads-changed")
                ) =>
            {
                continue;
            }
            Recv::Msg(m) => {
                panic!("{what}: expected an error message or a close, got {m} (sent {sent_hex})")
            }
            Recv::Garbage(g) => panic!("{what}: server sent a frame that is not CBOR: {g}"),
            Recv::Closed(c) => return format!("closed {c:?}"),
            Recv::Timeout => break,
        }
    }
    panic!(
        "{what}: no error message and no close within 5 s after sending {sent_hex} (error seen: {got_error:?})"
    );
}

fn short_hex(b: &[u8]) -> String {
    if b.len() > 80 {
        format!("{}…({} bytes)", cbor::hex(&b[..80]), b.len())
    } else {
        cbor::hex(b)
    }
}

#[tokio::test]
async fn invalid_cbor_gets_error_or_close() {
    let mut s = Scenario::new().await;
    let mut p = Peer::join(&s.url(), &new_peer_id("bad-cbor")).await;
    for frame in [
        cbor::unhex("ff0013"),
        cbor::unhex("b90005647479"),
        vec![0x1c],
    ] {
        let sent = short_hex(&frame);
        let _ = raw::try_send_raw(&mut p.ws, frame).await;
        let outcome = expect_error_or_close(&mut p.ws, "invalid CBOR", &sent).await;
        eprintln!("invalid CBOR {sent}: {outcome}");
        s.assert_healthy(&format!("invalid CBOR {sent}"), None)
            .await;
        p = Peer::join(&s.url(), &new_peer_id("bad-cbor")).await;
    }
}

#[tokio::test]
async fn unknown_message_type_gets_error_or_close() {
    let mut s = Scenario::new().await;
    let mut p = Peer::join(&s.url(), &new_peer_id("unknown-type")).await;
    let target = new_doc_id();
    let mut d = common::account_doc(21, 3);
    let msg = raw::doc_msg(
        "frobnicate",
        &p.id,
        &p.server_id,
        &target,
        raw::changes_message(&mut d),
    );
    let bytes = cbor::encode(&msg);
    let sent = short_hex(&bytes);
    raw::send_raw(&mut p.ws, bytes).await;
    let outcome = expect_error_or_close(&mut p.ws, "unknown message type", &sent).await;
    eprintln!("unknown type: {outcome}");
    s.assert_healthy("unknown message type", Some(&target))
        .await;

    // a map without any type at all
    let mut p = Peer::join(&s.url(), &new_peer_id("no-type")).await;
    let msg = Value::map([
        ("senderId", Value::text(p.id.clone())),
        ("targetId", Value::text(p.server_id.clone())),
    ]);
    let bytes = cbor::encode(&msg);
    let sent = short_hex(&bytes);
    raw::send_raw(&mut p.ws, bytes).await;
    expect_error_or_close(&mut p.ws, "message without type", &sent).await;
    s.assert_healthy("message without type", None).await;

    // valid CBOR that is not a map
    let mut p = Peer::join(&s.url(), &new_peer_id("not-a-map")).await;
    let bytes = cbor::encode(&Value::Array(vec![Value::text("sync"), Value::Uint(1)]));
    let sent = short_hex(&bytes);
    raw::send_raw(&mut p.ws, bytes).await;
    expect_error_or_close(&mut p.ws, "CBOR array instead of a map", &sent).await;
    s.assert_healthy("CBOR array instead of a map", None).await;
}

/// Pseudo-random bytes that do not compress.
fn noise(n: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend(seed.to_le_bytes());
    }
    out.truncate(n);
    out
}

#[tokio::test]
async fn a_frame_over_the_size_limit_gets_error_or_close() {
    let mut s = Scenario::new().await;
    let mut p = Peer::join(&s.url(), &new_peer_id("too-big")).await;
    let target = new_doc_id();
    // a genuine document whose sync message is over the limit
    let mut d = AutoCommit::new();
    d.put(
        ROOT,
        "attachment",
        automerge::ScalarValue::Bytes(noise(LIMIT + (256 << 10), 0x9e3779b97f4a7c15)),
    )
    .unwrap();
    d.commit();
    let data = raw::changes_message(&mut d);
    assert!(data.len() > LIMIT, "sync data is {} bytes", data.len());
    let bytes = cbor::encode(&raw::doc_msg("sync", &p.id, &p.server_id, &target, data));
    let sent = format!("a {}-byte sync frame for {target}", bytes.len());
    // the server may close while we are still writing
    let send = raw::try_send_raw(&mut p.ws, bytes).await;
    let outcome = match send {
        Ok(()) => expect_error_or_close(&mut p.ws, "oversized frame", &sent).await,
        Err(e) => format!("closed during send: {e}"),
    };
    eprintln!("oversized frame: {outcome}");
    s.assert_healthy("oversized frame", Some(&target)).await;

    // just under the limit is fine (the limit is not far lower than announced)
    let mut p = Peer::join(&s.url(), &new_peer_id("big-ok")).await;
    let ok_id = new_doc_id();
    let mut d = AutoCommit::new();
    d.put(
        ROOT,
        "attachment",
        automerge::ScalarValue::Bytes(noise(LIMIT - (512 << 10), 7)),
    )
    .unwrap();
    d.commit();
    p.push(&ok_id, &mut d, &mut sync::State::new())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "a {} KiB document (under the 8 MiB limit) must sync: {e}",
                (LIMIT - (512 << 10)) >> 10
            )
        });
}

#[tokio::test]
async fn invalid_automerge_sync_data_gets_error_or_close() {
    let mut s = Scenario::new().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "garbage bytes",
            b"this is not an automerge sync message".to_vec(),
        ),
        ("empty data", vec![]),
        ("truncated sync message", {
            let mut d = common::account_doc(31, 4);
            let full = raw::changes_message(&mut d);
            full[..full.len() / 2].to_vec()
        }),
        ("sync message with a corrupted change chunk", {
            let mut d = common::account_doc(32, 4);
            let mut full = raw::changes_message(&mut d);
            let n = full.len();
            for b in &mut full[n - 40..n - 8] {
                *b ^= 0x5a;
            }
            full
        }),
    ];
    for (what, data) in cases {
        let mut p = Peer::join(&s.url(), &new_peer_id("bad-data")).await;
        let target = new_doc_id();
        let bytes = cbor::encode(&raw::doc_msg("sync", &p.id, &p.server_id, &target, data));
        let sent = short_hex(&bytes);
        raw::send_raw(&mut p.ws, bytes).await;
        let outcome = expect_error_or_close(&mut p.ws, what, &sent).await;
        eprintln!("{what}: {outcome}");
        s.assert_healthy(what, Some(&target)).await;
    }
    // data that is not a byte string at all
    let mut p = Peer::join(&s.url(), &new_peer_id("text-data")).await;
    let target = new_doc_id();
    let msg = Value::map([
        ("type", Value::text("sync")),
        ("senderId", Value::text(p.id.clone())),
        ("targetId", Value::text(p.server_id.clone())),
        ("documentId", Value::text(target.clone())),
        ("data", Value::text("not bytes")),
    ]);
    let bytes = cbor::encode(&msg);
    let sent = short_hex(&bytes);
    raw::send_raw(&mut p.ws, bytes).await;
    expect_error_or_close(&mut p.ws, "data as text", &sent).await;
    s.assert_healthy("data as text", Some(&target)).await;
}

#[tokio::test]
async fn a_message_before_join_gets_error_or_close_and_stores_nothing() {
    let mut s = Scenario::new().await;
    let mut ws = raw::connect(&s.url()).await;
    let target = new_doc_id();
    let mut d = common::account_doc(41, 5);
    // a perfectly valid sync message carrying a whole document - but no join first
    let bytes = cbor::encode(&raw::doc_msg(
        "sync",
        "early-bird",
        &s.bystander.server_id,
        &target,
        raw::changes_message(&mut d),
    ));
    let sent = short_hex(&bytes);
    raw::send_raw(&mut ws, bytes).await;
    let outcome = expect_error_or_close(&mut ws, "sync before join", &sent).await;
    eprintln!("sync before join: {outcome}");
    s.assert_healthy("sync before join", Some(&target)).await;

    // a request before join must not be answered with document data either
    let mut ws = raw::connect(&s.url()).await;
    let mut empty = AutoCommit::new();
    let req = empty
        .sync()
        .generate_sync_message(&mut sync::State::new())
        .unwrap()
        .encode();
    let bytes = cbor::encode(&raw::doc_msg(
        "request",
        "early-bird-2",
        &s.bystander.server_id,
        &s.doc_id,
        req,
    ));
    let sent = short_hex(&bytes);
    raw::send_raw(&mut ws, bytes).await;
    let outcome = expect_error_or_close(&mut ws, "request before join", &sent).await;
    eprintln!("request before join: {outcome}");
    s.assert_healthy("request before join", None).await;
}

#[tokio::test]
async fn an_unsupported_protocol_version_gets_error_and_close() {
    let mut s = Scenario::new().await;
    let mut ws = raw::connect(&s.url()).await;
    let join = raw::join_msg("from-the-future", &["2"]);
    let bytes = cbor::encode(&join);
    let sent = short_hex(&bytes);
    raw::send_raw(&mut ws, bytes).await;
    // here the protocol is explicit: an error message, then the socket closed
    let first = raw::recv(&mut ws, Duration::from_secs(5)).await;
    match &first {
        Recv::Msg(m) => {
            assert_eq!(
                m.get_str("type"),
                Some("error"),
                "answer to join with versions [\"2\"]: {m}"
            );
            assert!(m.get_str("message").is_some(), "error.message: {m}");
            assert_eq!(
                m.get_str("targetId"),
                Some("from-the-future"),
                "error.targetId: {m}"
            );
        }
        other => {
            panic!("expected an error message after an unsupported join ({sent}), got {other:?}")
        }
    }
    match raw::recv(&mut ws, Duration::from_secs(5)).await {
        Recv::Closed(_) => {}
        other => {
            panic!("the socket must be closed after the unsupported-version error, got {other:?}")
        }
    }
    s.assert_healthy("unsupported protocol version", None).await;

    // and an empty list of versions
    let mut ws = raw::connect(&s.url()).await;
    let bytes = cbor::encode(&raw::join_msg("no-versions", &[]));
    let sent = short_hex(&bytes);
    raw::send_raw(&mut ws, bytes).await;
    expect_error_or_close(&mut ws, "join with no versions", &sent).await;
    s.assert_healthy("join with no versions", None).await;
}

/// A value from /metrics (the first line starting with `name`, labels included).
fn metric(server: &Server, name: &str) -> u64 {
    let (status, body) = common::server::http_get(server.port, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "/metrics");
    body.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .filter(|rest| rest.starts_with(' '))
                .map(|v| v.trim().parse::<f64>().expect("metric value") as u64)
        })
        .unwrap_or_else(|| panic!("/metrics has no {name}:\n{body}"))
}

#[tokio::test]
async fn a_bloom_filter_without_bits_closes_only_its_sender_and_the_server_keeps_serving() {
    // One `have` whose bloom filter has zero bits per entry, for a document the server has:
    // automerge divided by zero on it, the hub thread died, and every upgrade after that was
    // answered 503 until a restart.
    let mut s = Scenario::new().await;
    let mut p = Peer::join(&s.url(), &new_peer_id("zero-bloom")).await;
    let data = cbor::unhex("42000001000301000100");
    let msg = raw::doc_msg("sync", &p.id, &p.server_id, &s.doc_id, data);
    let bytes = cbor::encode(&msg);
    let sent = short_hex(&bytes);
    raw::send_raw(&mut p.ws, bytes).await;
    let outcome = expect_error_or_close(&mut p.ws, "zero-bit bloom filter", &sent).await;
    assert!(
        outcome.contains("bloom filter"),
        "the error says what was wrong: {outcome}"
    );
    s.assert_healthy("zero-bit bloom filter", None).await;
    for n in 0..3 {
        Peer::join(&s.url(), &new_peer_id(&format!("after-{n}")))
            .await
            .close()
            .await;
    }
    assert_eq!(metric(&s.server, "fieldnotes_panics_caught_total"), 0);
    assert_eq!(
        metric(
            &s.server,
            "fieldnotes_limit_hits_total{limit=\"sync_message\"}"
        ),
        1
    );
}

#[tokio::test]
async fn a_document_id_of_two_hundred_thousand_characters_is_refused_at_once() {
    // base58 decoding costs the square of the text's length: 200,000 characters kept the hub
    // busy for seconds, an 8 MiB one for hours, and nobody else synced meanwhile.
    let mut s = Scenario::new().await;
    let mut p = Peer::join(&s.url(), &new_peer_id("long-id")).await;
    let long_id = "2".repeat(200_000);
    let msg = raw::doc_msg(
        "request",
        &p.id,
        &p.server_id,
        &long_id,
        vec![0x42, 0, 0, 0, 0],
    );
    let started = std::time::Instant::now();
    raw::send_raw(&mut p.ws, cbor::encode(&msg)).await;
    let outcome =
        expect_error_or_close(&mut p.ws, "long document id", "a 200,000-character id").await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refusing the id took {:?}",
        started.elapsed()
    );
    assert!(outcome.contains("documentId"), "{outcome}");
    s.assert_healthy("long document id", None).await;
}

/// The server process's peak resident memory so far, in bytes (`VmHWM`).
fn peak_rss(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM in /proc/PID/status")
        * 1024
}

fn deflate(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[tokio::test]
async fn a_compressed_change_of_deflated_zeros_does_not_blow_up_the_servers_memory() {
    // Half a megabyte of deflated zeros inflates to half a gigabyte. automerge inflates
    // compressed chunks before it checks anything: a 1 MiB one took the server's peak memory
    // from 10 MB to 3 GB.
    let mut s = Scenario::new().await;
    let compressed = deflate(&vec![0u8; 512 * 1024 * 1024]);
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2];
    leb128(&mut chunk, compressed.len() as u64);
    chunk.extend(compressed);
    let mut data = vec![0x42, 0x00, 0x00, 0x00, 0x01];
    leb128(&mut data, chunk.len() as u64);
    data.extend(chunk);
    assert!(data.len() < 2 * 1024 * 1024, "{} bytes", data.len());

    let before = peak_rss(&s.server);
    let mut p = Peer::join(&s.url(), &new_peer_id("deflate-bomb")).await;
    let msg = raw::doc_msg("sync", &p.id, &p.server_id, &s.doc_id, data);
    raw::send_raw(&mut p.ws, cbor::encode(&msg)).await;
    let outcome =
        expect_error_or_close(&mut p.ws, "deflate bomb", "a compressed chunk of zeros").await;
    assert!(outcome.contains("inflates"), "{outcome}");
    let after = peak_rss(&s.server);
    eprintln!(
        "peak RSS {} MB before, {} MB after",
        before >> 20,
        after >> 20
    );
    assert!(
        after < before + (200 << 20),
        "peak memory grew from {} MB to {} MB",
        before >> 20,
        after >> 20
    );
    s.assert_healthy("deflate bomb", None).await;
}
