//! A raw automerge-repo protocol "1" client: hand-built CBOR maps over a real WebSocket, document
//! data through `automerge::sync`. Independent of crates/sync on purpose.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use automerge::sync::{self, SyncDoc};
use automerge::{AutoCommit, ChangeHash};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::cbor::{self, Value};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    out
}

/// A fresh document id: 16 random bytes, base58check (as automerge-repo makes them).
pub fn new_doc_id() -> String {
    use sha2::{Digest, Sha256};
    let mut checked = random_bytes::<16>().to_vec();
    let checksum = Sha256::digest(Sha256::digest(&checked));
    checked.extend_from_slice(&checksum[..4]);
    bs58::encode(checked).into_string()
}

pub fn new_peer_id(prefix: &str) -> String {
    format!("{prefix}-{}", cbor::hex(&random_bytes::<4>()))
}

pub fn sorted(mut h: Vec<ChangeHash>) -> Vec<ChangeHash> {
    h.sort();
    h
}

/// What one read from the socket produced.
#[derive(Debug)]
pub enum Recv {
    Msg(Value),
    /// A binary frame that is not valid CBOR, or a text frame: a protocol violation by the server.
    Garbage(String),
    Closed(Option<(u16, String)>),
    Timeout,
}

/// Where and how to open `/sync`: the URL (with `?team=` if any) and the upgrade's extra headers
/// (`Authorization: Bearer …`, `Cookie`, `Origin`).
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

impl Endpoint {
    /// No credentials at all.
    pub fn anonymous(url: &str) -> Endpoint {
        Endpoint {
            url: url.to_string(),
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Endpoint {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Endpoint {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// `Cookie: fieldnotes_session=…` (pass the whole `name=value`).
    pub fn cookie(self, cookie: &str) -> Endpoint {
        self.header("Cookie", cookie)
    }

    /// `Origin: <origin>`.
    pub fn origin(self, origin: &str) -> Endpoint {
        self.header("Origin", origin)
    }

    /// `?team=<id>`.
    pub fn team(mut self, team: &str) -> Endpoint {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        self.url = format!("{}{sep}team={team}", self.url);
        self
    }

    /// The same URL without any credentials.
    pub fn without_credentials(&self) -> Endpoint {
        Endpoint::anonymous(&self.url)
    }
}

/// Why an upgrade did not happen.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered with an HTTP status instead of switching protocols.
    Http {
        status: u16,
        body: String,
    },
    Other(String),
}

impl ConnectError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ConnectError::Http { status, .. } => Some(*status),
            ConnectError::Other(_) => None,
        }
    }
}

/// Open `/sync`; the server's refusal (an HTTP status) comes back as `ConnectError::Http`.
pub async fn try_connect(ep: &Endpoint) -> Result<Ws, ConnectError> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
    let mut req = ep
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::Other(format!("bad URL {}: {e}", ep.url)))?;
    for (k, v) in &ep.headers {
        req.headers_mut().append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    let mut cfg = WebSocketConfig::default();
    // let us send frames far over the server's limit
    cfg.max_message_size = Some(64 << 20);
    cfg.max_frame_size = Some(64 << 20);
    let fut = tokio_tungstenite::connect_async_with_config(req, Some(cfg), false);
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Err(_) => Err(ConnectError::Other(format!(
            "WebSocket connect to {} timed out",
            ep.url
        ))),
        Ok(Ok((ws, _resp))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => Err(ConnectError::Http {
            status: resp.status().as_u16(),
            body: resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default(),
        }),
        Ok(Err(e)) => Err(ConnectError::Other(format!(
            "WebSocket connect to {} failed: {e}",
            ep.url
        ))),
    }
}

/// Open `/sync`; panics if the server does not switch protocols.
pub async fn connect(ep: &Endpoint) -> Ws {
    try_connect(ep)
        .await
        .unwrap_or_else(|e| panic!("WebSocket connect to {} failed: {e:?}", ep.url))
}

pub fn join_msg(peer_id: &str, versions: &[&str]) -> Value {
    Value::map([
        ("type", Value::text("join")),
        ("senderId", Value::text(peer_id)),
        (
            "peerMetadata",
            Value::map([
                ("storageId", Value::Undefined),
                ("isEphemeral", Value::Bool(true)),
            ]),
        ),
        (
            "supportedProtocolVersions",
            Value::Array(versions.iter().map(|v| Value::text(*v)).collect()),
        ),
    ])
}

pub fn doc_msg(kind: &str, sender: &str, target: &str, doc_id: &str, data: Vec<u8>) -> Value {
    Value::map([
        ("type", Value::text(kind)),
        ("senderId", Value::text(sender)),
        ("targetId", Value::text(target)),
        ("documentId", Value::text(doc_id)),
        ("data", Value::Bytes(data)),
    ])
}

/// Outcome of syncing one document.
#[derive(Debug, PartialEq)]
pub enum Synced {
    Done,
    Unavailable,
}

/// A joined peer.
pub struct Peer {
    pub ws: Ws,
    pub id: String,
    pub server_id: String,
    pub server_storage_id: Option<String>,
    /// Every message received, in order (for assertions on what the server sent).
    pub seen: Vec<Value>,
}

pub async fn send_value(ws: &mut Ws, v: &Value) {
    send_raw(ws, cbor::encode(v)).await
}

pub async fn send_raw(ws: &mut Ws, bytes: Vec<u8>) {
    tokio::time::timeout(
        Duration::from_secs(20),
        ws.send(WsMessage::Binary(bytes.into())),
    )
    .await
    .expect("send timed out")
    .expect("send failed");
}

/// Like send_raw but tolerating a server that closes on us mid-send.
pub async fn try_send_raw(ws: &mut Ws, bytes: Vec<u8>) -> Result<(), String> {
    match tokio::time::timeout(
        Duration::from_secs(20),
        ws.send(WsMessage::Binary(bytes.into())),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("send timed out".into()),
    }
}

/// Read one protocol message (skipping pings/pongs), waiting at most `wait`.
pub async fn recv(ws: &mut Ws, wait: Duration) -> Recv {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => return Recv::Timeout,
            Ok(None) => return Recv::Closed(None),
            Ok(Some(Err(e))) => return Recv::Closed(Some((0, format!("transport error: {e}")))),
            Ok(Some(Ok(WsMessage::Binary(b)))) => {
                return match cbor::decode(&b) {
                    Ok(v) => Recv::Msg(v),
                    Err(e) => {
                        Recv::Garbage(format!("{e}; frame {}", cbor::hex(&b[..b.len().min(64)])))
                    }
                };
            }
            Ok(Some(Ok(WsMessage::Text(t)))) => return Recv::Garbage(format!("text frame {t:?}")),
            Ok(Some(Ok(WsMessage::Close(c)))) => {
                return Recv::Closed(c.map(|c| (u16::from(c.code), c.reason.to_string())));
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

impl Peer {
    /// Connect and join; asserts the `peer` answer's shape.
    pub async fn join(ep: &Endpoint, peer_id: &str) -> Peer {
        let mut ws = connect(ep).await;
        send_value(&mut ws, &join_msg(peer_id, &["1"])).await;
        Self::expect_peer(ws, peer_id).await
    }

    /// Wait (1 s budget, as the protocol asks, plus slack) for the server's `peer` message.
    pub async fn expect_peer(mut ws: Ws, peer_id: &str) -> Peer {
        let m = match recv(&mut ws, Duration::from_secs(3)).await {
            Recv::Msg(m) => m,
            other => panic!("expected a peer message after join, got {other:?}"),
        };
        assert_eq!(m.get_str("type"), Some("peer"), "answer to join: {m}");
        assert_eq!(m.get_str("targetId"), Some(peer_id), "peer.targetId: {m}");
        assert_eq!(
            m.get_str("selectedProtocolVersion"),
            Some("1"),
            "peer.selectedProtocolVersion: {m}"
        );
        let server_id = m
            .get_str("senderId")
            .unwrap_or_else(|| panic!("peer.senderId missing: {m}"))
            .to_string();
        let meta = m
            .get("peerMetadata")
            .unwrap_or_else(|| panic!("peer.peerMetadata missing: {m}"));
        assert_eq!(
            meta.get("isEphemeral"),
            Some(&Value::Bool(false)),
            "server must not be ephemeral: {m}"
        );
        let server_storage_id = meta.get_str("storageId").map(str::to_string);
        Peer {
            ws,
            id: peer_id.to_string(),
            server_id,
            server_storage_id,
            seen: vec![m],
        }
    }

    pub async fn send(&mut self, v: &Value) {
        send_value(&mut self.ws, v).await
    }

    pub async fn recv(&mut self, wait: Duration) -> Recv {
        let r = recv(&mut self.ws, wait).await;
        if let Recv::Msg(m) = &r {
            self.seen.push(m.clone());
        }
        r
    }

    /// Run the sync protocol for one document until `done` holds. The first message we send has
    /// type `first` ("request" to ask for a document we do not have, "sync" to offer one).
    /// Messages about other documents (the server may announce them) are ignored.
    pub async fn sync_doc(
        &mut self,
        doc_id: &str,
        doc: &mut AutoCommit,
        state: &mut sync::State,
        first: &str,
        timeout: Duration,
        mut done: impl FnMut(&mut AutoCommit, &sync::State) -> bool,
    ) -> Result<Synced, String> {
        let deadline = Instant::now() + timeout;
        let mut kind = first.to_string();
        loop {
            while let Some(m) = doc.sync().generate_sync_message(state) {
                let msg = doc_msg(&kind, &self.id, &self.server_id, doc_id, m.encode());
                if let Err(e) = try_send_raw(&mut self.ws, cbor::encode(&msg)).await {
                    return Err(format!("send failed: {e}"));
                }
                kind = "sync".into();
            }
            if done(doc, state) {
                return Ok(Synced::Done);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Recv::Msg(m) => {
                    if m.get_str("documentId") != Some(doc_id) {
                        if m.get_str("type") == Some("error") {
                            return Err(format!("server sent error: {m}"));
                        }
                        continue;
                    }
                    match m.get_str("type") {
                        Some("sync") | Some("request") => {
                            let data = m
                                .get_bytes("data")
                                .ok_or_else(|| format!("sync without data: {m}"))?;
                            let sm = sync::Message::decode(data).map_err(|e| {
                                format!("server sent undecodable sync data ({e}): {m}")
                            })?;
                            doc.sync().receive_sync_message(state, sm).map_err(|e| {
                                format!("cannot apply server's sync message ({e}): {m}")
                            })?;
                        }
                        Some("doc-unavailable") => return Ok(Synced::Unavailable),
                        Some("error") => return Err(format!("server sent error: {m}")),
                        _ => {}
                    }
                }
                Recv::Timeout => {
                    return Err(format!(
                        "sync of {doc_id} timed out after {timeout:?}: our heads {:?}, server heads {:?}",
                        doc.get_heads(),
                        state.their_heads
                    ));
                }
                other => return Err(format!("while syncing {doc_id}: {other:?}")),
            }
        }
    }

    /// Offer `doc` and wait until the server acknowledged it: a server sync message whose heads
    /// equal ours.
    pub async fn push(
        &mut self,
        doc_id: &str,
        doc: &mut AutoCommit,
        state: &mut sync::State,
    ) -> Result<(), String> {
        let r = self
            .sync_doc(
                doc_id,
                doc,
                state,
                "sync",
                Duration::from_secs(20),
                |d, s| s.their_heads.clone().map(sorted) == Some(sorted(d.get_heads())),
            )
            .await?;
        if r == Synced::Unavailable {
            return Err(format!(
                "server answered doc-unavailable while we pushed {doc_id}"
            ));
        }
        Ok(())
    }

    /// Ask for a document we do not have. With `expect`, done when our heads equal it; without,
    /// done once the server's heads are non-empty and we have them all.
    pub async fn pull(
        &mut self,
        doc_id: &str,
        expect: Option<&[ChangeHash]>,
    ) -> Result<(Synced, AutoCommit, sync::State), String> {
        let mut doc = AutoCommit::new();
        let mut state = sync::State::new();
        let expect = expect.map(|h| sorted(h.to_vec()));
        let r = self
            .sync_doc(
                doc_id,
                &mut doc,
                &mut state,
                "request",
                Duration::from_secs(20),
                |d, s| match &expect {
                    Some(e) => &sorted(d.get_heads()) == e,
                    None => {
                        let ours = sorted(d.get_heads());
                        !ours.is_empty() && s.their_heads.clone().map(sorted) == Some(ours)
                    }
                },
            )
            .await?;
        Ok((r, doc, state))
    }

    /// Wait for a server sync message about `doc_id` whose heads equal `heads` (an acknowledgement).
    pub async fn wait_ack(
        &mut self,
        doc_id: &str,
        heads: &[ChangeHash],
        timeout: Duration,
    ) -> Result<(), String> {
        let want = sorted(heads.to_vec());
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Recv::Msg(m)
                    if m.get_str("documentId") == Some(doc_id)
                        && m.get_str("type") == Some("sync") =>
                {
                    if let Some(Ok(sm)) = m.get_bytes("data").map(sync::Message::decode)
                        && sorted(sm.heads.clone()) == want
                    {
                        return Ok(());
                    }
                }
                Recv::Msg(_) => continue,
                other => return Err(format!("no acknowledgement of {doc_id}: {other:?}")),
            }
        }
    }

    /// A barrier: push a small new document on this socket and wait for its acknowledgement, so
    /// everything sent before on this socket has been processed.
    pub async fn barrier(&mut self) {
        let id = new_doc_id();
        let mut d = AutoCommit::new();
        automerge::transaction::Transactable::put(&mut d, automerge::ROOT, "barrier", true)
            .unwrap();
        d.commit();
        self.push(&id, &mut d, &mut sync::State::new())
            .await
            .unwrap_or_else(|e| panic!("barrier push failed: {e}"));
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

/// A fresh connection pulls `doc_id` and returns its content; panics on failure.
pub async fn fresh_pull(
    ep: &Endpoint,
    doc_id: &str,
    expect: Option<&[ChangeHash]>,
) -> (Synced, AutoCommit) {
    let mut p = Peer::join(ep, &new_peer_id("fresh")).await;
    let (r, doc, _) = p
        .pull(doc_id, expect)
        .await
        .unwrap_or_else(|e| panic!("fresh pull of {doc_id}: {e}"));
    p.close().await;
    (r, doc)
}

/// A sync message that carries all of `doc`'s changes, as the second message of a conversation
/// with a peer that has nothing would (computed against an in-memory empty peer).
pub fn changes_message(doc: &mut AutoCommit) -> Vec<u8> {
    let mut st = sync::State::new();
    let mut empty = AutoCommit::new();
    let mut est = sync::State::new();
    let m1 = doc
        .sync()
        .generate_sync_message(&mut st)
        .expect("first message");
    empty
        .sync()
        .receive_sync_message(&mut est, m1)
        .expect("empty peer receives");
    let m2 = empty
        .sync()
        .generate_sync_message(&mut est)
        .expect("empty peer answers");
    doc.sync()
        .receive_sync_message(&mut st, m2)
        .expect("doc receives");
    let m3 = doc
        .sync()
        .generate_sync_message(&mut st)
        .expect("message with changes");
    assert!(!m3.changes.is_empty(), "message carries changes");
    m3.encode()
}
