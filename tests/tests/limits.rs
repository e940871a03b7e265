//! The server's limits from the outside (`fieldnotes serve --help`, "Limits per client"): each
//! is set low on a real server, reached by a real client, and checked for what it does (pace,
//! refuse, close, with plain words) and that it is counted in `/metrics`. Then the flood: one
//! member attacks on every front at once while another keeps syncing.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use automerge::sync;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT};
use common::cbor;
use common::raw::{self, Peer, Recv, new_doc_id, new_peer_id};
use common::server::Server;
use futures_util::StreamExt as _;

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

fn limit_hits(server: &Server, limit: &str) -> u64 {
    metric(
        server,
        &format!("fieldnotes_limit_hits_total{{limit=\"{limit}\"}}"),
    )
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn peak_rss_mb(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        / 1024
}

/// CPU seconds (user and system) the server process has used so far.
fn cpu_seconds(server: &Server) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).unwrap();
    // After the command name in parentheses: utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
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

/// An idle server costs nothing. On PostgreSQL the thread listening for other instances' changes
/// once spun a core whenever no change came for half a second (the `postgres` crate's timeout
/// iterator is not rearmed until a notification arrives).
#[tokio::test]
async fn an_idle_server_uses_no_cpu_to_speak_of() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // A socket open and in step, then nothing for a while.
    let mut peer = Peer::join(&server.sync(), &new_peer_id("idle")).await;
    let mut doc = common::account_doc(1, 1);
    peer.push(&new_doc_id(), &mut doc, &mut sync::State::new())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_seconds(&server);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let used = cpu_seconds(&server) - before;
    eprintln!("idle server: {used:.2} s of CPU in 4 s");
    assert!(used < 0.4, "an idle server used {used:.2} s of CPU in 4 s");
    drop(peer);
}

#[tokio::test]
async fn sockets_per_user_are_limited_with_a_plain_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_flags(dir.path(), &["--max-sockets-per-user", "2"]);
    let first = Peer::join(&server.sync(), &new_peer_id("one")).await;
    let _second = Peer::join(&server.sync(), &new_peer_id("two")).await;
    match raw::try_connect(&server.sync()).await {
        Err(raw::ConnectError::Http { status, body }) => {
            assert_eq!(status, 429, "{body}");
            assert!(body.contains("connections to Fieldnotes open"), "{body}");
        }
        Ok(_) => panic!("a third socket was accepted"),
        Err(other) => panic!("{other:?}"),
    }
    assert_eq!(limit_hits(&server, "sockets_per_user"), 1);
    // Closing one gives its place back.
    first.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match raw::try_connect(&server.sync()).await {
            Ok(_) => break,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("the closed socket's place was not given back: {error:?}"),
        }
    }
}

#[tokio::test]
async fn a_client_that_sends_its_headers_too_slowly_or_not_at_all_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_flags(dir.path(), &["--header-read-timeout", "1"]);
    let closed_within = |mut stream: TcpStream| {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = Instant::now();
        let mut buffer = [0u8; 256];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return started.elapsed(),
                // hyper may answer 408 before it closes
                Ok(_) => continue,
            }
        }
    };
    let silent = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let waited = closed_within(silent);
    assert!(
        waited < Duration::from_secs(4),
        "a silent connection stayed open {waited:?}"
    );

    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let waited = closed_within(slow);
    assert!(
        waited < Duration::from_secs(4),
        "half a header stayed open {waited:?}"
    );

    // An idle keep-alive connection closes too, after its request was answered.
    let mut idle = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let waited = closed_within(idle);
    assert!(
        waited < Duration::from_secs(4),
        "an idle keep-alive stayed open {waited:?}"
    );

    // And a normal request is answered.
    let (status, _) = common::server::http_get(server.port, "/healthz").unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_socket_that_never_answers_a_ping_is_closed_and_a_quiet_one_that_does_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_flags(dir.path(), &["--idle-timeout", "3"]);
    // tungstenite answers pings only while it is being read: this one is never read.
    let _deaf = raw::connect(&server.sync()).await;
    let mut quiet = Peer::join(&server.sync(), &new_peer_id("quiet")).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(7) {
        match quiet.recv(Duration::from_millis(500)).await {
            Recv::Closed(close) => {
                panic!("a quiet socket that answers pings was closed: {close:?}")
            }
            _ => continue,
        }
    }
    assert!(
        limit_hits(&server, "idle_timeout") >= 1,
        "the deaf socket was not closed"
    );
    assert_eq!(limit_hits(&server, "idle_timeout"), 1);
}

#[tokio::test]
async fn a_fast_sender_is_paced_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_flags(dir.path(), &["--max-frames-per-second", "100"]);
    let flooder = Peer::join(&server.sync(), &new_peer_id("flooder")).await;
    let ids: Vec<String> = (0..600).map(|_| new_doc_id()).collect();
    let started = Instant::now();
    // Sent from one task while this one reads the answers.
    let (mut sink, mut stream) = flooder.ws.split();
    let (peer_id, server_id) = (flooder.id.clone(), flooder.server_id.clone());
    let sender = tokio::spawn(async move {
        use futures_util::SinkExt as _;
        for id in &ids {
            let message = raw::doc_msg("request", &peer_id, &server_id, id, vec![0x42, 0, 0, 0, 0]);
            sink.send(tokio_tungstenite::tungstenite::Message::Binary(
                cbor::encode(&message).into(),
            ))
            .await
            .unwrap();
        }
        sink
    });
    let mut unavailable = 0;
    while unavailable < 600 {
        let frame = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("answers keep coming")
            .expect("socket open")
            .expect("frame");
        if let tokio_tungstenite::tungstenite::Message::Binary(bytes) = frame {
            let message = cbor::decode(&bytes).unwrap();
            assert_eq!(
                message.get_str("type"),
                Some("doc-unavailable"),
                "{message}"
            );
            unavailable += 1;
        }
    }
    let _ = sender.await;
    let took = started.elapsed();
    // A burst of 200 passes at once, the other 400 at 100 a second.
    assert!(
        took >= Duration::from_secs(3),
        "600 frames took only {took:?}"
    );
    assert!(limit_hits(&server, "frames_per_second") >= 1);
    drop(flooder.seen);
}

#[tokio::test]
async fn a_reader_that_never_reads_is_disconnected_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_flags(
        dir.path(),
        &["--max-outgoing-queue-bytes", &(2 << 20).to_string()],
    );
    // Forty documents of 256 KB that do not compress.
    let mut writer = Peer::join(&server.sync(), &new_peer_id("writer")).await;
    let mut ids = Vec::new();
    for n in 0..40 {
        let id = new_doc_id();
        let mut doc = AutoCommit::new();
        doc.put(
            ROOT,
            "attachment",
            automerge::ScalarValue::Bytes(noise(256 << 10, n + 1)),
        )
        .unwrap();
        doc.commit();
        writer
            .push(&id, &mut doc, &mut sync::State::new())
            .await
            .unwrap();
        ids.push(id);
    }
    let before = peak_rss_mb(&server);
    // The reader asks for all of them, ten times over on ten sockets, and reads nothing.
    let mut deaf = Vec::new();
    for n in 0..10 {
        deaf.push(Peer::join(&server.sync(), &new_peer_id(&format!("deaf-{n}"))).await);
    }
    let first = automerge::sync::SyncDoc::generate_sync_message(
        &AutoCommit::new().sync(),
        &mut sync::State::new(),
    )
    .unwrap()
    .encode();
    for peer in &mut deaf {
        for id in &ids {
            let message = raw::doc_msg("request", &peer.id, &peer.server_id, id, first.clone());
            let _ = raw::try_send_raw(&mut peer.ws, cbor::encode(&message)).await;
        }
    }
    eventually(
        "the sockets that never read are closed",
        Duration::from_secs(20),
        || limit_hits(&server, "outgoing_queue_bytes") >= 1,
    )
    .await;
    let after = peak_rss_mb(&server);
    eprintln!("peak RSS {before} MB before, {after} MB after");
    assert!(
        after < before + 150,
        "peak memory grew from {before} MB to {after} MB"
    );
    // The writer still syncs.
    let id = new_doc_id();
    let mut doc = common::account_doc(1, 3);
    writer
        .push(&id, &mut doc, &mut sync::State::new())
        .await
        .expect("the writer still syncs");
}

#[tokio::test]
async fn a_socket_may_open_only_so_many_documents() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_flags(dir.path(), &["--max-open-documents", "5"]);
    let mut peer = Peer::join(&server.sync(), &new_peer_id("opener")).await;
    for n in 0..5 {
        let mut doc = common::account_doc(n, 1);
        peer.push(&new_doc_id(), &mut doc, &mut sync::State::new())
            .await
            .unwrap();
    }
    let mut doc = common::account_doc(9, 1);
    let error = peer
        .push(&new_doc_id(), &mut doc, &mut sync::State::new())
        .await
        .expect_err("a sixth document was accepted");
    assert!(error.contains("documents open"), "{error}");
    eventually("the hit is counted", Duration::from_secs(5), || {
        limit_hits(&server, "open_documents") == 1
    })
    .await;
}

/// POST `body` to `path`; returns the status.
fn post(port: u16, path: &str, body: &str) -> u16 {
    common::auth::http(
        port,
        "POST",
        path,
        &[("content-type", "application/json")],
        Some(body),
    )
    .status
}

#[tokio::test]
async fn setup_checks_its_link_before_hashing_any_password() {
    let dir = tempfile::tempdir().unwrap();
    // No admin yet: the setup route is open, with its one-time token printed on stdout.
    let server = Server::start_with(&common::server::server_bin(), dir.path());
    let body = r#"{"token":"not-the-token","name":"Eve","email":"eve@example.com","password":"a long enough password","team_name":"Evil"}"#;
    let threads: Vec<_> = (0..10)
        .map(|_| {
            let port = server.port;
            std::thread::spawn(move || post(port, "/api/setup", body))
        })
        .collect();
    for thread in threads {
        let status = thread.join().unwrap();
        assert!(status == 410 || status == 404, "status {status}");
    }
    assert_eq!(metric(&server, "fieldnotes_password_hashes_total"), 0);
}

#[tokio::test]
async fn password_hashes_run_a_few_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_flags(dir.path(), &["--max-concurrent-password-hashes", "1"]);
    let threads: Vec<_> = (0..6)
        .map(|n| {
            let port = server.port;
            std::thread::spawn(move || {
                let body =
                    format!(r#"{{"email":"nobody{n}@example.com","password":"wrong password"}}"#);
                post(port, "/api/session", &body)
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 401);
    }
    assert!(metric(&server, "fieldnotes_password_hashes_total") >= 6);
    assert!(limit_hits(&server, "concurrent_password_hashes") >= 1);
}

// The attackers run on their own worker threads, and everything they send is computed before
// the clock starts, so the load generator does not slow the member down itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_on_every_front_leaves_another_member_syncing_and_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_flags(
        dir.path(),
        &["--max-outgoing-queue-bytes", &(4 << 20).to_string()],
    );
    let admin = server.admin();
    let team = server.default_team().clone();
    let attacker = admin.user("flood@example.com", "Flood", &team.id, "rep");
    let member = server.default_user().clone();
    let before = peak_rss_mb(&server);

    // Some big documents for the deaf reader to ask for.
    let mut seeder = Peer::join(&server.sync_as(&attacker.token), &new_peer_id("seed")).await;
    let mut big = Vec::new();
    for n in 0..20 {
        let id = new_doc_id();
        let mut doc = AutoCommit::new();
        doc.put(
            ROOT,
            "blob",
            automerge::ScalarValue::Bytes(noise(200 << 10, n + 7)),
        )
        .unwrap();
        doc.commit();
        seeder
            .push(&id, &mut doc, &mut sync::State::new())
            .await
            .unwrap();
        big.push(id);
    }

    // The member edits an account every 100 ms and times each acknowledgement.
    let mut member_peer = Peer::join(&server.sync_as(&member.token), &new_peer_id("member")).await;
    let id = new_doc_id();
    let mut doc = common::account_doc(3, 2);
    let mut state = sync::State::new();
    member_peer.push(&id, &mut doc, &mut state).await.unwrap();
    // Quiet first, for comparison.
    let mut quiet = Vec::new();
    for n in 0..20 {
        doc.put(ROOT, "quiet", n).unwrap();
        doc.commit();
        let started = Instant::now();
        member_peer.push(&id, &mut doc, &mut state).await.unwrap();
        quiet.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    quiet.sort();
    let quiet_p50 = quiet[quiet.len() / 2];

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attacks = Vec::new();
    // 1. Frames: tiny requests as fast as the socket takes them.
    {
        let ep = server.sync_as(&attacker.token);
        let stop = stop.clone();
        attacks.push(tokio::spawn(async move {
            let mut p = Peer::join(&ep, &new_peer_id("frames")).await;
            let frame = cbor::encode(&raw::doc_msg(
                "request",
                &p.id,
                &p.server_id,
                &new_doc_id(),
                vec![0x42, 0, 0, 0, 0],
            ));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if raw::try_send_raw(&mut p.ws, frame.clone()).await.is_err() {
                    break;
                }
                // Read answers now and then so this socket is paced, not closed as deaf.
                let _ = raw::recv(&mut p.ws, Duration::from_millis(0)).await;
            }
        }));
    }
    // 2. Bytes: 4 MiB sync messages that are not automerge data, on socket after socket.
    {
        let ep = server.sync_as(&attacker.token);
        let stop = stop.clone();
        let peer_id = new_peer_id("bytes");
        let payload = noise(4 << 20, 99);
        attacks.push(tokio::spawn(async move {
            let p = Peer::join(&ep, &peer_id).await;
            let frame = cbor::encode(&raw::doc_msg(
                "sync",
                &p.id,
                &p.server_id,
                &new_doc_id(),
                payload,
            ));
            p.close().await;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut p = Peer::join(&ep, &peer_id).await;
                let _ = raw::try_send_raw(&mut p.ws, frame.clone()).await;
                let _ = raw::recv(&mut p.ws, Duration::from_secs(2)).await;
            }
        }));
    }
    // 3. Documents: new ones claimed as fast as the socket takes them.
    {
        let ep = server.sync_as(&attacker.token);
        let stop = stop.clone();
        let data = raw::changes_message(&mut common::account_doc(1, 0));
        attacks.push(tokio::spawn(async move {
            let mut p = Peer::join(&ep, &new_peer_id("docs")).await;
            let frames: Vec<Vec<u8>> = (0..20_000)
                .map(|_| {
                    cbor::encode(&raw::doc_msg(
                        "sync",
                        &p.id,
                        &p.server_id,
                        &new_doc_id(),
                        data.clone(),
                    ))
                })
                .collect();
            for frame in frames {
                if stop.load(std::sync::atomic::Ordering::Relaxed)
                    || raw::try_send_raw(&mut p.ws, frame).await.is_err()
                {
                    break;
                }
                let _ = raw::recv(&mut p.ws, Duration::from_millis(0)).await;
            }
        }));
    }
    // 4. A reader that never reads, asking for every big document again and again.
    {
        let ep = server.sync_as(&attacker.token);
        let stop = stop.clone();
        let big = big.clone();
        let first = automerge::sync::SyncDoc::generate_sync_message(
            &AutoCommit::new().sync(),
            &mut sync::State::new(),
        )
        .unwrap()
        .encode();
        attacks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut p = Peer::join(&ep, &new_peer_id("deaf")).await;
                for id in &big {
                    let m = raw::doc_msg("request", &p.id, &p.server_id, id, first.clone());
                    if raw::try_send_raw(&mut p.ws, cbor::encode(&m))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }));
    }

    let mut latencies = Vec::new();
    let run = Instant::now();
    while run.elapsed() < Duration::from_secs(15) {
        doc.put(ROOT, "visits", latencies.len() as i64).unwrap();
        doc.commit();
        let started = Instant::now();
        member_peer
            .push(&id, &mut doc, &mut state)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the member could not sync during the flood: {e}\n{}",
                    server.stderr_tail()
                )
            });
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for attack in attacks {
        let _ = tokio::time::timeout(Duration::from_secs(10), attack).await;
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    let after = peak_rss_mb(&server);
    eprintln!(
        "member: quiet ack p50 {quiet_p50:?}; during the flood {} edits, ack p50 {p50:?} ({:.1}x), p99 {p99:?}, max {:?}; server peak RSS {before} MB -> {after} MB; frames/s hits {}, bytes/s hits {}, slow readers closed {}",
        latencies.len(),
        p50.as_secs_f64() / quiet_p50.as_secs_f64(),
        latencies.last().unwrap(),
        limit_hits(&server, "frames_per_second"),
        limit_hits(&server, "bytes_per_second"),
        limit_hits(&server, "outgoing_queue_bytes"),
    );
    // A debug build on a shared 2-core machine: generous, but hours or seconds would fail.
    assert!(p50 < Duration::from_millis(500), "member ack p50 {p50:?}");
    assert!(p99 < Duration::from_secs(3), "member ack p99 {p99:?}");
    assert!(
        after < before + 400,
        "server peak memory grew from {before} MB to {after} MB"
    );
    assert!(
        limit_hits(&server, "outgoing_queue_bytes") >= 1,
        "the deaf reader was never closed"
    );
}
