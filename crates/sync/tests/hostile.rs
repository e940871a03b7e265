//! Hostile input against the hub: each test is an input that once stopped, stalled or
//! starved it, or leaked a document, and checks both the refusal and that everyone else
//! carries on. No sockets: the hub on a [`MemoryStore`], frames in, effects out.
#![cfg(not(fieldnotes_browser_automerge))]

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge, ROOT, ReadDoc};
use fieldnotes_sync::guard::Refusal;
use fieldnotes_sync::hub::{Access, AccessPolicy, ProtocolViolation};
use fieldnotes_sync::protocol::{DocumentMessage, Ephemeral, Join};
use fieldnotes_sync::store::MemoryStoreError;
use fieldnotes_sync::{
    CloseReason, ConnectionId, DocStore, DocumentId, Effect, Hub, HubConfig, MemoryStore, Message,
    PeerId, PeerMetadata, StorageId,
};

const SERVER: &str = "server";

fn config() -> HubConfig {
    HubConfig::new(PeerId::from(SERVER), StorageId::from("server-storage"))
}

fn join(peer: &str) -> Vec<u8> {
    Message::Join(Join {
        sender_id: PeerId::from(peer),
        peer_metadata: PeerMetadata {
            storage_id: Some(StorageId::from(format!("{peer}-storage"))),
            is_ephemeral: false,
        },
        supported_protocol_versions: vec!["1".into()],
    })
    .encode()
}

fn sync_frame(peer: &str, document: DocumentId, data: Vec<u8>) -> Vec<u8> {
    Message::Sync(DocumentMessage {
        sender_id: PeerId::from(peer),
        target_id: PeerId::from(SERVER),
        document_id: document,
        data,
    })
    .encode()
}

fn sends_to(effects: &[Effect], connection: ConnectionId) -> Vec<Message> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send {
                connection: c,
                frame,
            } if *c == connection => Some(Message::decode(frame).unwrap()),
            _ => None,
        })
        .collect()
}

fn close_of(effects: &[Effect], connection: ConnectionId) -> Option<CloseReason> {
    effects.iter().find_map(|effect| match effect {
        Effect::Close {
            connection: c,
            reason,
        } if *c == connection => Some(reason.clone()),
        _ => None,
    })
}

/// A peer on the hub with its own copy of documents, syncing with real automerge messages.
struct Peer {
    name: &'static str,
    connection: ConnectionId,
    doc: AutoCommit,
    state: sync::State,
}

impl Peer {
    fn join<S: DocStore, A: AccessPolicy<S>>(
        hub: &mut Hub<S, A>,
        name: &'static str,
        connection: u64,
    ) -> Self {
        let connection = ConnectionId(connection);
        hub.handle_connected(connection);
        hub.handle_frame(connection, &join(name), 0);
        let effects = hub.finish_batch();
        assert!(matches!(
            sends_to(&effects, connection)[..],
            [Message::Peer(_)]
        ));
        Self {
            name,
            connection,
            doc: AutoCommit::new(),
            state: sync::State::new(),
        }
    }

    /// Sends what automerge would send now; false when there was nothing to send.
    fn send<S: DocStore, A: AccessPolicy<S>>(
        &mut self,
        hub: &mut Hub<S, A>,
        document: DocumentId,
    ) -> bool {
        let Some(message) = self.doc.sync().generate_sync_message(&mut self.state) else {
            return false;
        };
        let frame = sync_frame(self.name, document, message.encode());
        hub.handle_frame(self.connection, &frame, 0);
        true
    }

    fn receive(&mut self, effects: &[Effect]) -> usize {
        let mut received = 0;
        for message in sends_to(effects, self.connection) {
            if let Message::Sync(message) = message {
                let sync = sync::Message::decode(&message.data).unwrap();
                self.doc
                    .sync()
                    .receive_sync_message(&mut self.state, sync)
                    .unwrap();
                received += 1;
            }
        }
        received
    }

    /// Trades messages with the hub until neither side has anything to say.
    fn sync_up<S: DocStore, A: AccessPolicy<S>>(
        &mut self,
        hub: &mut Hub<S, A>,
        document: DocumentId,
    ) {
        for _ in 0..20 {
            let sent = self.send(hub, document);
            let effects = hub.finish_batch();
            let received = self.receive(&effects);
            if !sent && received == 0 {
                return;
            }
        }
        panic!("{} did not finish syncing", self.name);
    }

    fn set_name(&mut self, name: &str) {
        self.doc.put(ROOT, "name", name).unwrap();
        self.doc.commit();
    }

    fn name(&self) -> Option<String> {
        self.doc
            .get(ROOT, "name")
            .unwrap()
            .and_then(|(value, _)| value.into_scalar().ok())
            .and_then(|scalar| scalar.into_string().ok())
    }
}

fn doc_id(n: u8) -> DocumentId {
    DocumentId::from_bytes([n; 16])
}

#[test]
fn a_bloom_filter_without_bits_closes_only_its_sender_and_everyone_keeps_syncing() {
    // Before the guard, automerge 0.12 divided by zero on this message while the hub generated
    // its reply, and the panic took the hub thread (and every rep's sync) with it.
    let mut hub = Hub::new(MemoryStore::new(), config());
    let mut dana = Peer::join(&mut hub, "dana", 1);
    dana.set_name("Draft Depot");
    dana.sync_up(&mut hub, doc_id(1));
    let mut mia = Peer::join(&mut hub, "mia", 2);

    let zero_bit_bloom = vec![0x42, 0x00, 0x00, 0x01, 0x00, 0x03, 0x01, 0x00, 0x01, 0x00];
    hub.handle_frame(
        mia.connection,
        &sync_frame("mia", doc_id(1), zero_bit_bloom),
        0,
    );
    let effects = hub.finish_batch();
    assert!(matches!(
        sends_to(&effects, mia.connection)[..],
        [Message::Error(_)]
    ));
    assert_eq!(
        close_of(&effects, mia.connection),
        Some(CloseReason::Protocol(
            ProtocolViolation::SyncMessageRefused(Refusal::EmptyBloomFilter(1))
        ))
    );
    assert_eq!(hub.counters().panics_caught, 0);
    assert_eq!(hub.counters().sync_messages_refused, 1);

    // Dana goes on editing and hears the hub acknowledge it.
    dana.set_name("Draft Depot North");
    dana.sync_up(&mut hub, doc_id(1));
    let stored = hub.loaded_heads(&doc_id(1)).unwrap();
    assert_eq!(stored, dana.doc.get_heads());
    // And a newcomer still gets the document.
    mia = Peer::join(&mut hub, "mia", 3);
    mia.sync_up(&mut hub, doc_id(1));
    assert_eq!(mia.name().as_deref(), Some("Draft Depot North"));
}

/// A store that panics while appending to one document, as a bug would.
#[derive(Clone)]
struct PanickyStore {
    inner: MemoryStore,
    panic_on: Arc<Mutex<Option<DocumentId>>>,
}

impl DocStore for PanickyStore {
    type Error = MemoryStoreError;
    fn load_chunks(&mut self, d: &DocumentId) -> Result<Vec<Vec<u8>>, Self::Error> {
        self.inner.load_chunks(d)
    }
    fn append_changes(&mut self, d: &DocumentId, changes: &[u8]) -> Result<(), Self::Error> {
        self.inner.append_changes(d, changes)?;
        if *self.panic_on.lock().unwrap() == Some(*d) {
            panic!("a bug while storing {d}");
        }
        Ok(())
    }
    fn replace_with_snapshot(&mut self, d: &DocumentId, s: &[u8]) -> Result<(), Self::Error> {
        self.inner.replace_with_snapshot(d, s)
    }
    fn load_sync_state(
        &mut self,
        d: &DocumentId,
        p: &StorageId,
    ) -> Result<Option<Vec<u8>>, Self::Error> {
        self.inner.load_sync_state(d, p)
    }
    fn save_sync_state(
        &mut self,
        d: &DocumentId,
        p: &StorageId,
        s: &[u8],
    ) -> Result<(), Self::Error> {
        self.inner.save_sync_state(d, p, s)
    }
    fn list_documents(&mut self) -> Result<Vec<DocumentId>, Self::Error> {
        self.inner.list_documents()
    }
    fn commit(&mut self) -> Result<(), Self::Error> {
        self.inner.commit()
    }
    fn rollback(&mut self) {
        self.inner.rollback()
    }
    fn begin_frame(&mut self) {
        self.inner.begin_frame()
    }
    fn undo_frame(&mut self) -> Result<(), Self::Error> {
        self.inner.undo_frame()
    }
}

#[test]
fn a_panic_while_handling_a_frame_costs_only_that_frame_and_its_connection() {
    let memory = MemoryStore::new();
    let panic_on = Arc::new(Mutex::new(None));
    let store = PanickyStore {
        inner: memory.clone(),
        panic_on: panic_on.clone(),
    };
    let mut hub = Hub::new(store, config());
    let mut dana = Peer::join(&mut hub, "dana", 1);
    let mut mia = Peer::join(&mut hub, "mia", 2);
    let mut sam = Peer::join(&mut hub, "sam", 3);
    mia.set_name("Shared");
    mia.sync_up(&mut hub, doc_id(1));
    sam.sync_up(&mut hub, doc_id(1));
    mia.receive(&hub.finish_batch());
    dana.set_name("Dana's own");
    dana.sync_up(&mut hub, doc_id(2));

    // One batch: Dana changes document 2 (fine), then Sam's change to document 1 panics
    // after it was written.
    *panic_on.lock().unwrap() = Some(doc_id(1));
    dana.set_name("Dana's own, renamed");
    assert!(dana.send(&mut hub, doc_id(2)));
    sam.set_name("Sam was here");
    assert!(sam.send(&mut hub, doc_id(1)));
    let effects = hub.finish_batch();
    *panic_on.lock().unwrap() = None;

    assert_eq!(hub.counters().panics_caught, 1);
    assert!(hub.last_panic().unwrap().contains("a bug while storing"));
    assert_eq!(
        close_of(&effects, sam.connection),
        Some(CloseReason::InternalError)
    );
    assert!(sends_to(&effects, sam.connection).is_empty());
    // Dana's frame of the same batch was committed and acknowledged.
    assert_eq!(dana.receive(&effects), 1);
    let mut dana_doc2 = Automerge::new();
    for chunk in memory.committed_chunks(&doc_id(2)) {
        dana_doc2.load_incremental(&chunk).unwrap();
    }
    assert_eq!(dana_doc2.get_heads(), dana.doc.get_heads());
    // Nothing of Sam's frame was kept, and the document was unloaded.
    assert!(!hub.is_loaded(&doc_id(1)));
    let mut stored = Automerge::new();
    for chunk in memory.committed_chunks(&doc_id(1)) {
        stored.load_incremental(&chunk).unwrap();
    }
    assert_eq!(stored.get_heads(), mia.doc.get_heads());

    // Mia, who had document 1 open, carries on: her next change reloads it from the store.
    mia.set_name("Mia renamed it");
    mia.sync_up(&mut hub, doc_id(1));
    assert_eq!(hub.loaded_heads(&doc_id(1)).unwrap(), mia.doc.get_heads());
}

/// Lets each connection see documents until it is taken off the list, as a user removed from
/// a team would be.
#[derive(Clone, Default)]
struct Revocable {
    revoked: Arc<Mutex<HashSet<ConnectionId>>>,
}

impl<S: DocStore> AccessPolicy<S> for Revocable {
    fn authorize(
        &mut self,
        _: &mut S,
        connection: ConnectionId,
        _: &PeerId,
        _: &DocumentId,
        _: Access,
    ) -> Result<bool, S::Error> {
        Ok(!self.revoked.lock().unwrap().contains(&connection))
    }
}

#[test]
fn a_connection_that_lost_access_hears_nothing_more_of_the_document() {
    let policy = Revocable::default();
    let mut hub = Hub::new(MemoryStore::new(), config()).with_access_policy(policy.clone());
    let mut dana = Peer::join(&mut hub, "dana", 1);
    let mut mia = Peer::join(&mut hub, "mia", 2);
    dana.set_name("North account");
    dana.sync_up(&mut hub, doc_id(1));
    mia.sync_up(&mut hub, doc_id(1));
    assert_eq!(mia.name().as_deref(), Some("North account"));

    // Mia leaves the team while her socket stays open; Dana renames the account.
    policy.revoked.lock().unwrap().insert(mia.connection);
    dana.set_name("Renamed after Mia left");
    assert!(dana.send(&mut hub, doc_id(1)));
    let effects = hub.finish_batch();
    assert!(
        sends_to(&effects, mia.connection).is_empty(),
        "the change was pushed to a connection that lost access"
    );
    assert_eq!(hub.counters().pushes_denied, 1);
    dana.receive(&effects);
    dana.sync_up(&mut hub, doc_id(1));
    // Later changes do not reach her either, and the document is no longer hers to follow.
    dana.set_name("Again");
    dana.sync_up(&mut hub, doc_id(1));
    assert_eq!(mia.name().as_deref(), Some("North account"));
}

#[test]
fn a_connection_may_open_only_so_many_documents() {
    let mut config = config();
    config.max_open_documents_per_connection = 3;
    let mut hub = Hub::new(MemoryStore::new(), config);
    let mut dana = Peer::join(&mut hub, "dana", 1);
    for n in 1..=3 {
        dana.doc = AutoCommit::new();
        dana.state = sync::State::new();
        dana.set_name(&format!("account {n}"));
        dana.sync_up(&mut hub, doc_id(n));
    }
    assert_eq!(hub.counters().open_document_limit_hits, 0);
    dana.doc = AutoCommit::new();
    dana.state = sync::State::new();
    dana.set_name("one too many");
    assert!(dana.send(&mut hub, doc_id(4)));
    let effects = hub.finish_batch();
    assert_eq!(
        close_of(&effects, dana.connection),
        Some(CloseReason::Protocol(
            ProtocolViolation::TooManyOpenDocuments { limit: 3 }
        ))
    );
    assert_eq!(hub.counters().open_document_limit_hits, 1);
}

fn ephemeral(peer: &str, document: DocumentId, count: u64, bytes: usize) -> Vec<u8> {
    Message::Ephemeral(Ephemeral {
        sender_id: PeerId::from(peer),
        target_id: PeerId::from(SERVER),
        document_id: document,
        session_id: "session".into(),
        count,
        data: vec![7; bytes],
    })
    .encode()
}

#[test]
fn ephemeral_messages_are_bounded_in_size_and_rate() {
    let mut hub = Hub::new(MemoryStore::new(), config());
    let mut dana = Peer::join(&mut hub, "dana", 1);
    let mut mia = Peer::join(&mut hub, "mia", 2);
    dana.set_name("Shared");
    dana.sync_up(&mut hub, doc_id(1));
    mia.sync_up(&mut hub, doc_id(1));

    // A flood in one instant: the burst (twice the rate) is relayed, the rest dropped.
    for count in 1..=100 {
        hub.handle_frame(
            dana.connection,
            &ephemeral("dana", doc_id(1), count, 10),
            1_000,
        );
    }
    let relayed = sends_to(&hub.finish_batch(), mia.connection).len();
    assert_eq!(relayed, 40);
    assert_eq!(hub.counters().ephemeral_rate_limited, 60);
    // A second later, another second's worth.
    for count in 101..=200 {
        hub.handle_frame(
            dana.connection,
            &ephemeral("dana", doc_id(1), count, 10),
            2_000,
        );
    }
    assert_eq!(sends_to(&hub.finish_batch(), mia.connection).len(), 20);

    // A megabyte is not copied to every peer: it closes its sender.
    hub.handle_frame(
        dana.connection,
        &ephemeral("dana", doc_id(1), 500, 1024 * 1024),
        60_000,
    );
    let effects = hub.finish_batch();
    assert!(matches!(
        close_of(&effects, dana.connection),
        Some(CloseReason::Protocol(
            ProtocolViolation::EphemeralTooLarge { .. }
        ))
    ));
    assert!(sends_to(&effects, mia.connection).is_empty());
}

fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A sync message whose only change is a compressed change chunk holding `body`.
fn compressed_chunk_message(body: &[u8]) -> Vec<u8> {
    let compressed = deflate(body);
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2];
    leb128(&mut chunk, compressed.len() as u64);
    chunk.extend(compressed);
    let mut message = vec![0x42, 0x00, 0x00, 0x00, 0x01];
    leb128(&mut message, chunk.len() as u64);
    message.extend(chunk);
    message
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

#[test]
fn a_compressed_chunk_of_deflated_zeros_is_refused_before_it_inflates() {
    // 128 MiB of zeros deflate to about 125 KB. automerge would inflate all of it before
    // looking; the guard stops at its limit (32 MiB) and the hub refuses the message.
    let bomb = compressed_chunk_message(&vec![0u8; 128 * 1024 * 1024]);
    assert!(bomb.len() < 200 * 1024, "{}", bomb.len());
    let mut hub = Hub::new(MemoryStore::new(), config());
    let mut dana = Peer::join(&mut hub, "dana", 1);
    dana.set_name("Shared");
    dana.sync_up(&mut hub, doc_id(1));
    let started = std::time::Instant::now();
    hub.handle_frame(dana.connection, &sync_frame("dana", doc_id(1), bomb), 0);
    let effects = hub.finish_batch();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        close_of(&effects, dana.connection),
        Some(CloseReason::Protocol(
            ProtocolViolation::SyncMessageRefused(Refusal::InflatesTooMuch(32 * 1024 * 1024))
        ))
    );
}

#[test]
fn a_document_id_of_two_hundred_thousand_characters_is_refused_at_once() {
    let mut frame = sync_frame("dana", doc_id(1), vec![0x42, 0, 0, 0, 0]);
    let id = doc_id(1).to_string();
    let long = "2".repeat(200_000);
    // Rebuild the frame with the long id in place of the real one (a longer CBOR text).
    let decoded = String::from_utf8_lossy(&frame).into_owned();
    assert!(decoded.contains(&id));
    frame = {
        let position = frame
            .windows(id.len())
            .position(|w| w == id.as_bytes())
            .unwrap();
        let mut rebuilt = frame[..position - 1].to_vec();
        rebuilt.push(0x7a);
        rebuilt.extend((long.len() as u32).to_be_bytes());
        rebuilt.extend(long.as_bytes());
        rebuilt.extend(&frame[position + id.len()..]);
        rebuilt
    };
    let started = std::time::Instant::now();
    let mut hub = Hub::new(MemoryStore::new(), config());
    let dana = Peer::join(&mut hub, "dana", 1);
    hub.handle_frame(dana.connection, &frame, 0);
    let effects = hub.finish_batch();
    assert!(started.elapsed() < std::time::Duration::from_millis(200));
    assert!(matches!(
        close_of(&effects, dana.connection),
        Some(CloseReason::Protocol(ProtocolViolation::InvalidMessage(_)))
    ));
}

/// A sync message carrying `change` alone, announcing it as the sender's head.
fn message_with(mut change: automerge::Change) -> Vec<u8> {
    sync::Message {
        heads: vec![change.hash()],
        need: vec![],
        have: vec![],
        changes: vec![change.bytes().into_owned()].into(),
        flags: None,
        version: sync::MessageVersion::V1,
    }
    .encode()
}

/// Dana's document on the hub, and a change on top of her last one to craft from.
fn dana_and_a_change_to_craft() -> (
    Hub<MemoryStore, fieldnotes_sync::AllowAll>,
    Peer,
    automerge::ExpandedChange,
) {
    let mut hub = Hub::new(MemoryStore::new(), config());
    let mut dana = Peer::join(&mut hub, "dana", 1);
    dana.set_name("Draft Depot");
    dana.sync_up(&mut hub, doc_id(1));
    let base = dana.doc.get_last_local_change().unwrap().clone();
    let mut next = automerge::ExpandedChange::from(&base);
    next.seq += 1;
    next.start_op = next.start_op.saturating_add(1);
    next.deps = vec![base.hash()];
    next.hash = None;
    (hub, dana, next)
}

/// The hub refused `frame` from dana as bad automerge data, stored nothing of it, and still
/// serves the document as it was.
fn assert_refused_and_nothing_stored(
    hub: &mut Hub<MemoryStore, fieldnotes_sync::AllowAll>,
    dana: &mut Peer,
    frame: Vec<u8>,
) {
    let acknowledged = dana.doc.get_heads();
    hub.handle_frame(dana.connection, &sync_frame("dana", doc_id(1), frame), 0);
    let effects = hub.finish_batch();
    assert!(matches!(
        sends_to(&effects, dana.connection)[..],
        [Message::Error(_)]
    ));
    assert_eq!(
        close_of(&effects, dana.connection),
        Some(CloseReason::Protocol(
            ProtocolViolation::InvalidAutomergeData
        ))
    );
    assert_eq!(hub.counters().panics_caught, 0);
    let chunks = hub.store_mut().load_chunks(&doc_id(1)).unwrap();
    let stored = Automerge::load(&chunks.concat()).unwrap();
    assert_eq!(stored.get_heads(), acknowledged);

    // A newcomer gets the document as it was, at the heads the hub had acknowledged.
    let mut mia = Peer::join(hub, "mia", 2);
    mia.sync_up(hub, doc_id(1));
    assert_eq!(mia.doc.get_heads(), acknowledged);
    assert_eq!(mia.name().as_deref(), Some("Draft Depot"));
}

#[test]
fn a_change_automerge_cannot_reproduce_is_refused_and_nothing_of_it_is_stored() {
    // Found by the fuzzer: a change whose put names, as the operation it overwrites, one that
    // never existed. Every byte checks out, automerge applies it, but it keeps no change's
    // bytes and encodes this one again without that `pred`, under another hash. The hub
    // acknowledged the arriving hash and stored the other (automerge's debug build panicked
    // there instead); after a reload its heads were not those it acknowledged.
    let (mut hub, mut dana, mut change) = dana_and_a_change_to_craft();
    let actor = change.actor_id.clone();
    change.operations[0].pred = vec![automerge::legacy::OpId::new(999, &actor)].into();
    let frame = message_with(automerge::Change::from(change));
    assert_refused_and_nothing_stored(&mut hub, &mut dana, frame);
    assert_eq!(hub.counters().automerge_panics_refused, 0);
}

#[test]
fn a_change_by_an_actor_the_document_never_met_is_refused_and_nothing_of_it_is_stored() {
    // Found by the fuzzer: a second change of an actor whose first the document never had.
    // automerge adds an actor on its first change only and unwrapped the missing one halfway
    // through applying this; the hub caught the panic but closed the sender as a server fault.
    let (mut hub, mut dana, mut change) = dana_and_a_change_to_craft();
    change.actor_id = automerge::ActorId::from(&[7u8; 16][..]);
    let frame = message_with(automerge::Change::from(change));
    assert_refused_and_nothing_stored(&mut hub, &mut dana, frame);
    assert_eq!(hub.counters().automerge_panics_refused, 1);
}
