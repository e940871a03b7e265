//! Seeded scenarios over a simulated network: one hub on a [`MemoryStore`],
//! N client engines, frames delivered in a random (seeded) interleaving that
//! keeps each socket's order, random edits, disconnects and reconnects.
//! No sockets, no sleeps; a failure prints its seed so it replays.
//!
//! The hub is server code and exists only on automerge's 0.12 line, so these scenarios do not
//! run on the browser's 0.6 line; the browser journeys sync that line with the real server.
#![cfg(not(fieldnotes_browser_automerge))]

use std::collections::{HashMap, VecDeque};

use automerge::sync::SyncDoc;
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Automerge, ChangeHash, ROOT, ReadDoc};
use fieldnotes_sync::hub::ProtocolViolation;
use fieldnotes_sync::protocol::{DocumentMessage, Join};
use fieldnotes_sync::{
    Client, ClientConfig, CloseReason, ConnectionId, DocumentId, Effect, Hub, HubConfig,
    MemoryStore, Message, PeerId, PeerMetadata, StorageId,
};

/// SplitMix64: tiny, seedable, good enough to pick interleavings.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn doc_id(n: u8) -> DocumentId {
    DocumentId::from_bytes([n; 16])
}

/// Builds the committed state of a document as a crash would leave it.
fn committed_doc(store: &MemoryStore, id: &DocumentId) -> Automerge {
    let mut doc = Automerge::new();
    for chunk in store.committed_chunks(id) {
        doc.load_incremental(&chunk).expect("stored chunks load");
    }
    doc
}

/// [`committed_doc`], kept up to date by loading only newly committed chunks
/// (the check runs for every frame, and rebuilding each time is slow).
#[derive(Default)]
struct CommittedMirror {
    documents: HashMap<DocumentId, (Vec<Vec<u8>>, Automerge)>,
}

impl CommittedMirror {
    fn get(&mut self, store: &MemoryStore, id: &DocumentId) -> &Automerge {
        let chunks = store.committed_chunks(id);
        let entry = self
            .documents
            .entry(*id)
            .or_insert_with(|| (Vec::new(), Automerge::new()));
        if !chunks.starts_with(&entry.0) {
            *entry = (Vec::new(), Automerge::new());
        }
        for chunk in &chunks[entry.0.len()..] {
            entry.1.load_incremental(chunk).expect("stored chunks load");
        }
        entry.0 = chunks;
        &entry.1
    }
}

fn has_all(doc: &Automerge, heads: &[ChangeHash]) -> bool {
    heads
        .iter()
        .all(|h| doc.get_change_meta_by_hash(h).is_some())
}

struct SimClient {
    engine: Client,
    docs: HashMap<DocumentId, AutoCommit>,
    connection: Option<ConnectionId>,
    to_server: VecDeque<Vec<u8>>,
    to_client: VecDeque<Vec<u8>>,
    bytes_received: usize,
    /// Derived from the seed: change hashes (and so bloom filters) replay with it.
    actor: ActorId,
    /// Speaks like a peer whose automerge predates `SYNC_RESET` (the browser's 0.6 line):
    /// its sync messages do not offer it.
    without_sync_reset: bool,
}

impl SimClient {
    fn pump(&mut self) {
        while let Some(frame) = self.engine.poll_frame() {
            let frame = if self.without_sync_reset {
                without_sync_reset(frame)
            } else {
                frame
            };
            if self.connection.is_some() {
                self.to_server.push_back(frame);
            }
        }
    }
}

/// The frame as an older automerge would send it: sync messages without the flags that
/// offer `SYNC_RESET`.
fn without_sync_reset(frame: Vec<u8>) -> Vec<u8> {
    let (wrap, mut message): (fn(DocumentMessage) -> Message, DocumentMessage) =
        match Message::decode(&frame) {
            Ok(Message::Sync(message)) => (Message::Sync, message),
            Ok(Message::Request(message)) => (Message::Request, message),
            _ => return frame,
        };
    let mut sync = automerge::sync::Message::decode(&message.data).unwrap();
    sync.flags = sync.flags.map(|_| automerge::sync::MessageFlags::new());
    message.data = sync.encode();
    wrap(message).encode()
}

struct Network {
    hub: Hub<MemoryStore>,
    store: MemoryStore,
    clients: Vec<SimClient>,
    next_connection: u64,
    now_ms: u64,
    seed: u64,
    /// The heads of every sync frame the hub emitted.
    acknowledged: Vec<(DocumentId, Vec<ChangeHash>)>,
    mirror: CommittedMirror,
}

impl Network {
    fn new(seed: u64, clients: usize, compaction_threshold: usize) -> Self {
        Self::with_max_loaded(seed, clients, compaction_threshold, usize::MAX)
    }

    /// `max_loaded`: how many documents the hub keeps in memory (1 evicts after every batch).
    fn with_max_loaded(
        seed: u64,
        clients: usize,
        compaction_threshold: usize,
        max_loaded: usize,
    ) -> Self {
        Self::on_store(
            MemoryStore::new(),
            seed,
            clients,
            compaction_threshold,
            max_loaded,
        )
    }

    /// A hub on `store`, which other hubs may share (instances on one database).
    fn on_store(
        store: MemoryStore,
        seed: u64,
        clients: usize,
        compaction_threshold: usize,
        max_loaded: usize,
    ) -> Self {
        let mut config = HubConfig::new(PeerId::from("hub"), StorageId::from("hub-storage"));
        config.compaction_threshold = compaction_threshold;
        config.max_loaded_documents = max_loaded;
        let hub = Hub::new(store.clone(), config);
        let clients = (0..clients)
            .map(|i| SimClient {
                engine: Client::new(ClientConfig {
                    peer_id: PeerId::new(format!("client-{i}")),
                    storage_id: Some(StorageId::new(format!("storage-{i}"))),
                    is_ephemeral: false,
                    ephemeral_session_id: format!("session-{i}"),
                }),
                docs: HashMap::new(),
                connection: None,
                to_server: VecDeque::new(),
                to_client: VecDeque::new(),
                bytes_received: 0,
                without_sync_reset: false,
                actor: ActorId::from([seed.to_be_bytes(), (i as u64).to_be_bytes()].concat()),
            })
            .collect();
        Self {
            hub,
            store,
            clients,
            next_connection: 1,
            now_ms: 0,
            seed,
            acknowledged: Vec::new(),
            mirror: CommittedMirror::default(),
        }
    }

    fn connect(&mut self, i: usize) {
        let connection = ConnectionId(self.next_connection);
        self.next_connection += 1;
        self.hub.handle_connected(connection);
        let client = &mut self.clients[i];
        client.connection = Some(connection);
        client.engine.handle_connected();
        client.pump();
    }

    fn disconnect(&mut self, i: usize) {
        let client = &mut self.clients[i];
        if let Some(connection) = client.connection.take() {
            client.to_server.clear();
            client.to_client.clear();
            client.engine.handle_disconnected();
            self.hub.handle_disconnected(connection);
        }
    }

    fn open(&mut self, i: usize, id: DocumentId) {
        let client = &mut self.clients[i];
        let doc = client
            .docs
            .entry(id)
            .or_insert_with(|| AutoCommit::new().with_actor(client.actor.clone()));
        client.engine.sync_document(id, doc);
        client.pump();
    }

    fn edit(&mut self, i: usize, id: DocumentId, key: &str, value: i64) {
        let client = &mut self.clients[i];
        let doc = client
            .docs
            .entry(id)
            .or_insert_with(|| AutoCommit::new().with_actor(client.actor.clone()));
        doc.put(ROOT, key, value).unwrap();
        client.engine.sync_document(id, doc);
        client.pump();
    }

    fn edit_text(&mut self, i: usize, id: DocumentId, key: &str, value: String) {
        let client = &mut self.clients[i];
        let doc = client
            .docs
            .entry(id)
            .or_insert_with(|| AutoCommit::new().with_actor(client.actor.clone()));
        doc.put(ROOT, key, value).unwrap();
        client.engine.sync_document(id, doc);
        client.pump();
    }

    /// Feeds every frame client `i` has queued to the hub as one batch and routes the effects.
    fn deliver_to_hub(&mut self, i: usize) {
        let connection = self.clients[i].connection.expect("connected");
        let frames: Vec<Vec<u8>> = self.clients[i].to_server.drain(..).collect();
        for frame in frames {
            self.now_ms += 1;
            self.hub.handle_frame(connection, &frame, self.now_ms);
        }
        let effects = self.hub.finish_batch();
        self.route(effects);
    }

    /// Client `i` handles every frame the hub has sent it.
    fn deliver_to_client(&mut self, i: usize) {
        while !self.clients[i].to_client.is_empty() {
            self.client_step(i);
        }
    }

    /// Feeds a random prefix of each connected client's outgoing frames to the
    /// hub, interleaved at random, as one batch; routes the effects.
    fn server_batch(&mut self, rng: &mut Rng) {
        let mut taken: Vec<(usize, VecDeque<Vec<u8>>)> = Vec::new();
        for (i, client) in self.clients.iter_mut().enumerate() {
            if client.to_server.is_empty() {
                continue;
            }
            let n = 1 + rng.below(client.to_server.len());
            taken.push((i, client.to_server.drain(..n).collect()));
        }
        while !taken.is_empty() {
            let pick = rng.below(taken.len());
            let (i, queue) = &mut taken[pick];
            let frame = queue.pop_front().unwrap();
            let connection = self.clients[*i].connection.unwrap();
            self.now_ms += 1;
            self.hub.handle_frame(connection, &frame, self.now_ms);
            if queue.is_empty() {
                taken.swap_remove(pick);
            }
        }
        let effects = self.hub.finish_batch();
        self.route(effects);
    }

    fn route(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send { connection, frame } => {
                    if let Ok(Message::Sync(message)) = Message::decode(&frame) {
                        // DURABILITY: every head the hub announces is committed.
                        let heads = automerge::sync::Message::decode(&message.data)
                            .unwrap()
                            .heads;
                        let stored = self.mirror.get(&self.store, &message.document_id);
                        assert!(
                            has_all(stored, &heads),
                            "seed {}: hub announced heads before they were committed",
                            self.seed
                        );
                        self.acknowledged.push((message.document_id, heads));
                    }
                    if let Some(client) = self
                        .clients
                        .iter_mut()
                        .find(|c| c.connection == Some(connection))
                    {
                        client.to_client.push_back(frame);
                    }
                }
                Effect::Close { connection, reason } => {
                    panic!("seed {}: hub closed {connection:?}: {reason:?}", self.seed);
                }
            }
        }
    }

    fn client_step(&mut self, i: usize) {
        let client = &mut self.clients[i];
        if let Some(frame) = client.to_client.pop_front() {
            client.bytes_received += frame.len();
            client
                .engine
                .handle_frame(&frame, &mut client.docs)
                .unwrap();
            client.pump();
        }
    }

    fn busy(&self) -> bool {
        self.clients
            .iter()
            .any(|c| !c.to_server.is_empty() || !c.to_client.is_empty())
    }

    /// Delivers everything until no frame is in flight.
    fn settle(&mut self, rng: &mut Rng) {
        for _ in 0..10_000 {
            if !self.busy() {
                return;
            }
            if rng.chance(50) {
                self.server_batch(rng);
            } else {
                let i = rng.below(self.clients.len());
                self.client_step(i);
            }
        }
        panic!("seed {}: network did not settle", self.seed);
    }
}

fn run_random_scenario(seed: u64) {
    let mut rng = Rng(seed);
    let client_count = 2 + rng.below(3);
    let docs: Vec<DocumentId> = (1..=3).map(doc_id).collect();
    // Odd seeds keep one document in memory, so every batch evicts and reloads.
    let max_loaded = if seed % 2 == 1 { 1 } else { usize::MAX };
    let mut net = Network::with_max_loaded(seed, client_count, 8, max_loaded);
    // Half the seeds mix in a peer whose automerge predates `SYNC_RESET`, as a browser is.
    net.clients[0].without_sync_reset = seed % 4 >= 2;
    for i in 0..client_count {
        net.connect(i);
    }
    let mut counter = 0i64;
    for _ in 0..400 {
        let i = rng.below(client_count);
        match rng.below(100) {
            0..=24 => {
                counter += 1;
                let doc = docs[rng.below(docs.len())];
                net.edit(i, doc, &format!("k{}", rng.below(5)), counter);
            }
            25..=29 => {
                let doc = docs[rng.below(docs.len())];
                net.open(i, doc);
            }
            30..=33 => net.disconnect(i),
            34..=37 => {
                if net.clients[i].connection.is_none() {
                    net.connect(i);
                }
            }
            38..=69 => net.server_batch(&mut rng),
            _ => net.client_step(i),
        }
    }
    // Heal: everyone connected, every document opened everywhere, then drain.
    for i in 0..client_count {
        if net.clients[i].connection.is_none() {
            net.connect(i);
        }
    }
    net.settle(&mut rng);
    for i in 0..client_count {
        for &doc in &docs {
            net.open(i, doc);
        }
    }
    net.settle(&mut rng);

    for &doc in &docs {
        let stored = committed_doc(&net.store, &doc);
        let stored_heads = stored.get_heads();
        for (i, client) in net.clients.iter_mut().enumerate() {
            let local = client.docs.get_mut(&doc).unwrap();
            assert_eq!(
                local.get_heads(),
                stored_heads,
                "seed {seed}: client {i} did not converge on {doc}"
            );
            assert_eq!(
                client.engine.pending_change_count(&doc, local),
                0,
                "seed {seed}: client {i} still has pending changes"
            );
        }
        // Every change any client made is in the store: same heads means same history.
        if let Some(first) = net.clients[0].docs.get_mut(&doc) {
            let keys: Vec<String> = first.keys(ROOT).collect();
            let stored_keys: Vec<String> = stored.keys(ROOT).collect();
            assert_eq!(keys, stored_keys, "seed {seed}");
        }
    }
    for client in &mut net.clients {
        assert!(client.engine.all_synced(&mut client.docs), "seed {seed}");
    }
    // Everything acknowledged along the way is in the final store.
    for (doc, heads) in &net.acknowledged {
        assert!(
            has_all(&committed_doc(&net.store, doc), heads),
            "seed {seed}"
        );
    }
    // Only connected clients' documents stay loaded. The last batch keeps what it touched;
    // the next one, even empty, unloads down to the limit.
    assert!(net.hub.finish_batch().is_empty(), "seed {seed}: quiet");
    assert!(net.hub.loaded_document_count() <= docs.len());
    if max_loaded == 1 && docs.len() > 1 {
        assert!(
            net.hub.counters().documents_evicted > 0,
            "seed {seed}: the scenario exercised eviction"
        );
        assert!(net.hub.loaded_document_count() <= 1, "seed {seed}");
    }
}

/// Two hubs on one store, as two instances on one database. A socket on the second has a
/// document open that its hub unloaded (it keeps one document in memory); a change committed
/// through the first must still reach that socket when the second hears of it. Before, the news
/// was dropped for any document not in memory, and the socket waited for its next own edit.
#[test]
fn news_from_another_hub_reaches_a_socket_whose_document_was_unloaded() {
    let (x, y) = (doc_id(1), doc_id(2));
    let store = MemoryStore::new();
    let mut one = Network::on_store(store.clone(), 1, 1, 64, usize::MAX);
    let mut two = Network::on_store(store, 2, 1, 64, 1);
    let mut rng = Rng(0);
    one.connect(0);
    two.connect(0);
    one.edit(0, x, "visit", 1);
    one.settle(&mut rng);
    two.open(0, x);
    two.settle(&mut rng);
    two.edit(0, y, "visit", 1);
    two.settle(&mut rng);
    assert!(!two.hub.is_loaded(&x), "the second hub unloaded x for y");

    one.edit(0, x, "visit", 2);
    one.settle(&mut rng);
    assert!(
        two.hub.stored_elsewhere(x),
        "x is open on a socket of the second hub"
    );
    let effects = two.hub.finish_batch();
    two.route(effects);
    two.settle(&mut rng);
    let want = one.clients[0].docs.get_mut(&x).unwrap().get_heads();
    assert_eq!(two.clients[0].docs.get_mut(&x).unwrap().get_heads(), want);
    assert_eq!(two.hub.counters().documents_loaded_for_news, 1);
}

#[test]
fn random_scenarios_converge_and_every_acknowledged_change_is_stored() {
    for seed in 0..32 {
        run_random_scenario(seed);
    }
}

/// A bloom filter can claim a change its sender lacks (a false positive). The peer then sends
/// only the change's descendants; the hub holds them in memory until the dependency arrives.
/// If the document is unloaded in between, the held changes are gone, while the peer counts
/// them as sent on this connection and would never send them again: the two sides would
/// exchange the same messages forever. Reloading the document must make the peer resend.
#[test]
fn changes_held_for_a_missing_dependency_survive_the_document_being_unloaded() {
    let (x, y) = (doc_id(1), doc_id(2));
    let mut net = Network::with_max_loaded(0, 2, 64, 1);
    let mut rng = Rng(0);
    net.connect(0);
    net.connect(1);
    // Enough history that the few changes below are sent one by one, not as a whole document.
    for visit in 0..8 {
        net.edit(0, x, "visit", visit);
    }
    net.settle(&mut rng);
    net.open(1, x);
    net.settle(&mut rng);

    // Client 0 writes two changes, the second built on the first, before it next talks to the hub.
    let doc = net.clients[0].docs.get_mut(&x).unwrap();
    doc.put(ROOT, "reason", "service").unwrap();
    let first = doc.get_heads()[0];
    doc.put(ROOT, "branch", "nearby").unwrap();
    let second = doc.get_heads()[0];

    // Client 1's edit makes the hub push to client 0; that push's bloom filter falsely claims
    // the hub has `first`.
    net.edit(1, x, "colleague", 2);
    net.deliver_to_hub(1);
    let push = net.clients[0]
        .to_client
        .pop_back()
        .expect("the hub pushed to client 0");
    let Ok(Message::Sync(mut message)) = Message::decode(&push) else {
        panic!("a sync push");
    };
    let mut sync = automerge::sync::Message::decode(&message.data).unwrap();
    let last_sync = sync
        .have
        .first()
        .map(|h| h.last_sync.clone())
        .unwrap_or_default();
    let claimed: Vec<ChangeHash> = sync.heads.iter().copied().chain([first]).collect();
    sync.have = vec![automerge::sync::Have {
        last_sync,
        // What the hub does have since then (client 1's change), plus the false positive.
        bloom: automerge::sync::BloomFilter::from_hashes(claimed.iter()),
    }];
    message.data = sync.encode();
    net.clients[0]
        .to_client
        .push_back(Message::Sync(message).encode());

    // Client 0 answers with `second` only; the hub holds it and asks for `first`.
    net.deliver_to_client(0);
    net.deliver_to_hub(0);
    assert!(
        !net.hub.loaded_heads(&x).unwrap().contains(&second),
        "the hub holds `second` until `first` arrives"
    );
    // Before client 0 hears that, another document's batch unloads x.
    net.open(1, y);
    net.edit(1, y, "other account", 3);
    net.deliver_to_hub(1);
    assert!(!net.hub.is_loaded(&x), "x was unloaded");

    net.settle(&mut rng);
    let stored = committed_doc(&net.store, &x);
    assert!(
        has_all(&stored, &[first, second]),
        "both changes are stored"
    );
    let client = &mut net.clients[0];
    let local = client.docs.get_mut(&x).unwrap();
    assert_eq!(client.engine.pending_change_count(&x, local), 0);
}

/// A peer whose automerge predates `SYNC_RESET` is reset with a message that carries empty
/// heads (see [`changes_held_for_a_missing_dependency_survive_the_document_being_unloaded`]).
/// It must hear the real heads afterwards, or it counts every change as unacknowledged for ever
/// and never shows "all synced".
#[test]
fn a_peer_without_sync_reset_hears_the_real_heads_after_a_reset() {
    let docs: Vec<DocumentId> = (1..=4).map(doc_id).collect();
    // One document in memory: every batch unloads the others, so the peer is reset often.
    let mut net = Network::with_max_loaded(0, 2, 64, 1);
    net.clients[1].without_sync_reset = true;
    let mut rng = Rng(0);
    net.connect(0);
    for id in &docs {
        for visit in 0..3 {
            net.edit(0, *id, "visit", visit);
        }
    }
    net.settle(&mut rng);

    // A new device downloads every document, then edits one.
    net.connect(1);
    for id in &docs {
        net.open(1, *id);
    }
    net.settle(&mut rng);
    net.edit(1, docs[0], "colleague", 1);
    net.settle(&mut rng);

    for id in &docs {
        let expected = net.hub.loaded_heads(id).map_or_else(
            || committed_doc(&net.store, id).get_heads(),
            |heads| heads.to_vec(),
        );
        let client = &mut net.clients[1];
        let doc = client.docs.get_mut(id).unwrap();
        assert_eq!(doc.get_heads(), expected, "{id} is downloaded");
        assert_eq!(
            client.engine.pending_change_count(id, doc),
            0,
            "{id}: the server's heads cover everything"
        );
    }
}

/// A new phone opens far more documents than the hub keeps in memory: each is unloaded before
/// the phone's answer about it comes back, and loaded again to hear it. That must cost a few
/// messages per document, whatever the cache size and whether the phone's automerge offers
/// `SYNC_RESET`. It did not: every reload reset the peer, the reset's answer found the
/// document unloaded again, and the phone and a core of the server traded resets for ever
/// (a team of 1,500 accounts never finished syncing).
#[test]
fn a_new_device_with_more_documents_than_the_hub_keeps_converges_in_a_few_messages_each() {
    const DOCUMENTS: u16 = 150;
    for max_loaded in [1, 4, 16, 64] {
        for without_sync_reset in [false, true] {
            let mut net = Network::with_max_loaded(max_loaded as u64, 2, 64, max_loaded);
            net.clients[1].without_sync_reset = without_sync_reset;
            let mut rng = Rng(max_loaded as u64);
            let docs: Vec<DocumentId> = (0..DOCUMENTS)
                .map(|n| {
                    let mut bytes = [0u8; 16];
                    bytes[..2].copy_from_slice(&n.to_be_bytes());
                    bytes[15] = 0xaa;
                    DocumentId::from_bytes(bytes)
                })
                .collect();
            net.connect(0);
            for (n, id) in docs.iter().enumerate() {
                for visit in 0..3 {
                    net.edit(0, *id, "visit", (n * 10 + visit) as i64);
                }
            }
            net.settle(&mut rng);
            net.disconnect(0);

            let frames_before = net.hub.counters().frames_out;
            net.connect(1);
            for id in &docs {
                net.open(1, *id);
            }
            net.settle(&mut rng);
            let frames_to_phone = net.hub.counters().frames_out - frames_before;
            let what = format!(
                "cache of {max_loaded}, {}",
                if without_sync_reset {
                    "without SYNC_RESET"
                } else {
                    "with SYNC_RESET"
                }
            );
            for id in &docs {
                let stored = committed_doc(&net.store, id).get_heads();
                let client = &mut net.clients[1];
                let doc = client.docs.get_mut(id).unwrap();
                assert_eq!(doc.get_heads(), stored, "{what}: {id} is downloaded");
                assert_eq!(
                    client.engine.pending_change_count(id, doc),
                    0,
                    "{what}: {id}"
                );
            }
            let per_document = frames_to_phone as f64 / f64::from(DOCUMENTS);
            assert!(
                per_document <= 4.0,
                "{what}: the hub sent the phone {per_document:.1} frames per document"
            );
        }
    }
}

#[test]
fn replies_are_held_until_the_batch_commits_and_dropped_if_it_fails() {
    let store = MemoryStore::new();
    let mut hub = Hub::new(
        store.clone(),
        HubConfig::new(PeerId::from("hub"), StorageId::from("s")),
    );
    let mut client = Client::new(ClientConfig {
        peer_id: PeerId::from("a"),
        storage_id: None,
        is_ephemeral: false,
        ephemeral_session_id: "x".into(),
    });
    let id = doc_id(7);
    let mut docs: HashMap<DocumentId, AutoCommit> = HashMap::new();
    docs.insert(id, AutoCommit::new());
    client.open_document(id, None).unwrap();
    let connection = ConnectionId(1);
    hub.handle_connected(connection);
    client.handle_connected();

    // join / peer
    while let Some(frame) = client.poll_frame() {
        hub.handle_frame(connection, &frame, 0);
    }
    for effect in hub.finish_batch() {
        if let Effect::Send { frame, .. } = effect {
            client.handle_frame(&frame, &mut docs).unwrap();
        }
    }
    docs.get_mut(&id)
        .unwrap()
        .put(ROOT, "note", "call back Tuesday")
        .unwrap();
    client.sync_document(id, docs.get_mut(&id).unwrap());
    // Rounds of the sync protocol until the change itself reaches the hub
    // (the first round only compares heads). Then nothing may leave before commit.
    for _ in 0..4 {
        while let Some(frame) = client.poll_frame() {
            hub.handle_frame(connection, &frame, 0);
        }
        if store.has_uncommitted_writes() {
            break;
        }
        for effect in hub.finish_batch() {
            if let Effect::Send { frame, .. } = effect {
                client.handle_frame(&frame, &mut docs).unwrap();
            }
        }
    }
    assert!(
        store.has_uncommitted_writes(),
        "the change is written in the open batch"
    );
    assert!(
        store.committed_chunks(&id).is_empty(),
        "nothing committed before finish_batch"
    );
    // Fail the commit: no sync reply escapes, the connection is closed.
    store.fail_next_commit();
    let effects = hub.finish_batch();
    assert_eq!(
        effects,
        vec![Effect::Close {
            connection,
            reason: CloseReason::StorageFailure
        }]
    );
    assert!(store.committed_chunks(&id).is_empty());
    assert!(
        !hub.is_loaded(&id),
        "memory may hold unstored changes: unloaded"
    );
    assert_eq!(
        client.pending_change_count(&id, docs.get_mut(&id).unwrap()),
        1
    );

    // Reconnect; this time the commit succeeds and the ack follows it.
    client.handle_disconnected();
    let connection2 = ConnectionId(2);
    hub.handle_connected(connection2);
    client.handle_connected();
    for _ in 0..5 {
        while let Some(frame) = client.poll_frame() {
            hub.handle_frame(connection2, &frame, 0);
        }
        let effects = hub.finish_batch();
        for effect in &effects {
            if let Effect::Send { frame, .. } = effect {
                if let Ok(Message::Sync(message)) = Message::decode(frame) {
                    let heads = automerge::sync::Message::decode(&message.data)
                        .unwrap()
                        .heads;
                    assert!(
                        has_all(&committed_doc(&store, &id), &heads),
                        "ack before commit"
                    );
                }
                client.handle_frame(frame, &mut docs).unwrap();
            }
        }
    }
    assert_eq!(
        client.pending_change_count(&id, docs.get_mut(&id).unwrap()),
        0
    );
    let stored = committed_doc(&store, &id);
    assert_eq!(
        stored.get(ROOT, "note").unwrap().unwrap().0.as_str(),
        Some("call back Tuesday")
    );
}

#[test]
fn documents_without_connected_peers_are_unloaded() {
    let mut rng = Rng(99);
    let mut net = Network::new(99, 2, 64);
    net.connect(0);
    net.connect(1);
    for n in 0..20u8 {
        net.edit(0, doc_id(n), "k", 1);
    }
    net.settle(&mut rng);
    net.open(1, doc_id(0));
    net.settle(&mut rng);
    assert_eq!(net.hub.loaded_document_count(), 20);
    net.disconnect(0);
    // Only the document client 1 has open stays in memory.
    assert_eq!(net.hub.loaded_document_count(), 1);
    assert!(net.hub.is_loaded(&doc_id(0)));
    net.disconnect(1);
    assert_eq!(net.hub.loaded_document_count(), 0);
    assert_eq!(net.hub.connection_count(), 0);
    // Unloaded is not lost: a new client gets the data back from the store.
    net.connect(1);
    net.clients[1].docs.clear();
    net.open(1, doc_id(7));
    net.settle(&mut rng);
    let doc = net.clients[1].docs.get_mut(&doc_id(7)).unwrap();
    assert_eq!(doc.get(ROOT, "k").unwrap().unwrap().0.as_i64(), Some(1));
}

#[test]
fn reconnect_after_a_long_absence_is_incremental() {
    let mut rng = Rng(5);
    let mut net = Network::new(5, 2, 64);
    let id = doc_id(1);
    net.connect(0);
    net.connect(1);
    // A document with some history, synced to both clients.
    for n in 0..150 {
        // Order numbers make the notes about as incompressible as real ones.
        let note = format!(
            "visit {n}: buyer ordered {:x} and {:x}, ref {:x}",
            rng.next(),
            rng.next(),
            rng.next()
        );
        net.edit_text(0, id, &format!("field{}", n % 40), note);
        if n % 50 == 0 {
            net.settle(&mut rng);
        }
    }
    net.open(1, id);
    net.settle(&mut rng);
    let full_sync_bytes = {
        // What a client with nothing receives for this document.
        let mut fresh = Network::new(6, 1, 64);
        fresh.store = net.store.clone();
        fresh.hub = Hub::new(
            net.store.clone(),
            HubConfig::new(PeerId::from("hub"), StorageId::from("hub-storage")),
        );
        fresh.connect(0);
        fresh.open(0, id);
        fresh.settle(&mut Rng(6));
        fresh.clients[0].bytes_received
    };
    // Client 1 goes away "for days", keeping its document and sync state.
    let saved_state = net.clients[1].engine.encoded_sync_state(&id).unwrap();
    net.disconnect(1);
    net.edit(0, id, "field1", -1);
    net.settle(&mut rng);
    // A fresh engine (new page load) with the saved document and state.
    let docs = std::mem::take(&mut net.clients[1].docs);
    net.clients[1].engine = Client::new(ClientConfig {
        peer_id: PeerId::from("client-1-reloaded"),
        storage_id: Some(StorageId::from("storage-1")),
        is_ephemeral: false,
        ephemeral_session_id: "s2".into(),
    });
    net.clients[1]
        .engine
        .open_document(id, Some(&saved_state))
        .unwrap();
    net.clients[1].docs = docs;
    net.clients[1].bytes_received = 0;
    net.connect(1);
    net.open(1, id);
    net.settle(&mut rng);
    let reconnect_bytes = net.clients[1].bytes_received;
    let doc = net.clients[1].docs.get_mut(&id).unwrap();
    assert_eq!(
        doc.get(ROOT, "field1").unwrap().unwrap().0.as_i64(),
        Some(-1)
    );
    eprintln!("full sync {full_sync_bytes} bytes, incremental reconnect {reconnect_bytes} bytes");
    assert!(
        reconnect_bytes * 5 < full_sync_bytes,
        "reconnect took {reconnect_bytes} bytes, a full sync {full_sync_bytes}"
    );
}

#[test]
fn compaction_replaces_chunks_with_one_snapshot() {
    let mut rng = Rng(11);
    let mut net = Network::new(11, 1, 8);
    let id = doc_id(3);
    net.connect(0);
    for n in 0..30 {
        net.edit(0, id, "k", n);
        net.settle(&mut rng);
    }
    let chunks = net.store.committed_chunks(&id);
    assert!(
        chunks.len() < 8,
        "compaction kept the chunk count bounded, got {}",
        chunks.len()
    );
    assert!(net.hub.counters().compactions >= 3);
    let stored = committed_doc(&net.store, &id);
    assert_eq!(stored.get(ROOT, "k").unwrap().unwrap().0.as_i64(), Some(29));
}

// --- protocol behaviour of the hub, frame by frame -------------------------

fn sends(effects: &[Effect], connection: ConnectionId) -> Vec<Message> {
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

fn join_frame(peer: &str, versions: &[&str]) -> Vec<u8> {
    Message::Join(Join {
        sender_id: PeerId::from(peer),
        peer_metadata: PeerMetadata {
            storage_id: None,
            is_ephemeral: true,
        },
        supported_protocol_versions: versions.iter().map(|v| v.to_string()).collect(),
    })
    .encode()
}

fn new_hub() -> (Hub<MemoryStore>, MemoryStore) {
    let store = MemoryStore::new();
    (
        Hub::new(
            store.clone(),
            HubConfig::new(PeerId::from("hub"), StorageId::from("hub-storage")),
        ),
        store,
    )
}

fn empty_sync_data() -> Vec<u8> {
    let doc = Automerge::new();
    doc.generate_sync_message(&mut automerge::sync::State::new())
        .unwrap()
        .encode()
}

#[test]
fn bad_input_gets_an_error_and_a_close_and_leaves_others_alone() {
    let (mut hub, store) = new_hub();
    let good = ConnectionId(1);
    hub.handle_connected(good);
    hub.handle_frame(good, &join_frame("good", &["1"]), 0);
    let effects = hub.finish_batch();
    assert!(matches!(
        sends(&effects, good).as_slice(),
        [Message::Peer(_)]
    ));

    let id = doc_id(1);
    let cases: Vec<(Vec<u8>, bool, &str)> = vec![
        (
            vec![0xff, 0x00, 0x13],
            false,
            "invalid message: frame is not a cbor map",
        ),
        (
            vec![0xa1, 0x64, b't', b'y', b'p', b'e', 0x63, b'b', b'a', b'd'],
            false,
            "invalid message: unknown message type \"bad\"",
        ),
        (
            join_frame("v2", &["2"]),
            false,
            "unsupported protocol version",
        ),
        (
            Message::Sync(DocumentMessage {
                sender_id: PeerId::from("x"),
                target_id: PeerId::from("hub"),
                document_id: id,
                data: empty_sync_data(),
            })
            .encode(),
            false,
            "message before join",
        ),
        (
            Message::Sync(DocumentMessage {
                sender_id: PeerId::from("bad"),
                target_id: PeerId::from("hub"),
                document_id: id,
                data: vec![1, 2, 3],
            })
            .encode(),
            true,
            // Refused by the input guard before automerge decodes it.
            "sync message refused: sync message starts with 0x01, not a sync message type",
        ),
        (
            // A well-formed sync message whose change bytes are garbage.
            {
                let mut message = automerge::sync::Message::decode(&empty_sync_data()).unwrap();
                message.changes = vec![vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 5]].into();
                Message::Sync(DocumentMessage {
                    sender_id: PeerId::from("bad"),
                    target_id: PeerId::from("hub"),
                    document_id: id,
                    data: message.encode(),
                })
                .encode()
            },
            true,
            "sync message refused: sync message has a chunk of unknown type 5",
        ),
    ];
    for (n, (frame, join_first, expected)) in cases.into_iter().enumerate() {
        let bad = ConnectionId(100 + n as u64);
        hub.handle_connected(bad);
        if join_first {
            hub.handle_frame(bad, &join_frame("bad", &["1"]), 0);
        }
        hub.handle_frame(bad, &frame, 0);
        let effects = hub.finish_batch();
        let messages = sends(&effects, bad);
        let Some(Message::Error(error)) = messages.last() else {
            panic!("case {n}: no error in {messages:?}")
        };
        assert_eq!(error.message, expected, "case {n}");
        assert!(
            matches!(effects.last(), Some(Effect::Close { connection, reason: CloseReason::Protocol(_) }) if *connection == bad),
            "case {n}: {effects:?}"
        );
        assert!(
            sends(&effects, good).is_empty(),
            "case {n}: the good connection saw nothing"
        );
        assert!(
            store.committed_chunks(&id).is_empty(),
            "case {n}: nothing stored"
        );
        // Later frames from the closed connection are ignored.
        hub.handle_frame(bad, &join_frame("bad", &["1"]), 0);
        assert!(hub.finish_batch().is_empty());
    }
    assert_eq!(hub.connection_count(), 1);

    // The size limit.
    let mut config = HubConfig::new(PeerId::from("hub"), StorageId::from("s"));
    config.max_frame_bytes = 64;
    let mut small = Hub::new(MemoryStore::new(), config);
    small.handle_connected(ConnectionId(1));
    small.handle_frame(ConnectionId(1), &[0u8; 65], 0);
    let effects = small.finish_batch();
    assert_eq!(
        effects.last(),
        Some(&Effect::Close {
            connection: ConnectionId(1),
            reason: CloseReason::Protocol(ProtocolViolation::FrameTooLarge {
                size: 65,
                limit: 64
            })
        })
    );
}

#[test]
fn handshake_unknown_documents_replaced_sockets_and_foreign_senders() {
    let (mut hub, _store) = new_hub();
    let first = ConnectionId(1);
    hub.handle_connected(first);
    hub.handle_frame(first, &join_frame("alice", &["1"]), 0);
    let effects = hub.finish_batch();
    let messages = sends(&effects, first);
    let [Message::Peer(peer)] = messages.as_slice() else {
        panic!()
    };
    assert_eq!(peer.target_id, PeerId::from("alice"));
    assert_eq!(peer.selected_protocol_version, "1");
    assert_eq!(
        peer.peer_metadata,
        PeerMetadata {
            storage_id: Some(StorageId::from("hub-storage")),
            is_ephemeral: false
        }
    );

    // request for an unknown document: doc-unavailable, nothing loaded.
    let id = doc_id(42);
    let request = Message::Request(DocumentMessage {
        sender_id: PeerId::from("alice"),
        target_id: PeerId::from("hub"),
        document_id: id,
        data: empty_sync_data(),
    });
    hub.handle_frame(first, &request.encode(), 0);
    let effects = hub.finish_batch();
    assert!(
        matches!(sends(&effects, first).as_slice(), [Message::DocUnavailable(u)] if u.document_id == id)
    );
    assert!(!hub.is_loaded(&id));

    // A message claiming another sender is dropped without a word.
    let forged = Message::Request(DocumentMessage {
        sender_id: PeerId::from("mallory"),
        target_id: PeerId::from("hub"),
        document_id: id,
        data: empty_sync_data(),
    });
    hub.handle_frame(first, &forged.encode(), 0);
    assert!(hub.finish_batch().is_empty());
    assert_eq!(hub.counters().foreign_sender_dropped, 1);

    // A second socket joining as alice replaces the first.
    let second = ConnectionId(2);
    hub.handle_connected(second);
    hub.handle_frame(second, &join_frame("alice", &["1"]), 0);
    let effects = hub.finish_batch();
    assert_eq!(
        effects[0],
        Effect::Close {
            connection: first,
            reason: CloseReason::Replaced
        }
    );
    assert!(matches!(
        sends(&effects, second).as_slice(),
        [Message::Peer(_)]
    ));
    hub.handle_disconnected(first); // the shell reports the close later: harmless
    assert_eq!(hub.connection_count(), 1);

    // A join without supportedProtocolVersions is version 1.
    let third = ConnectionId(3);
    hub.handle_connected(third);
    let raw2 = [
        0xb9, 0x00, 0x03, 0x64, b't', b'y', b'p', b'e', 0x64, b'j', b'o', b'i', b'n', 0x68, b's',
        b'e', b'n', b'd', b'e', b'r', b'I', b'd', 0x65, b'r', b'a', b'w', b'-', b'2', 0x6c, b'p',
        b'e', b'e', b'r', b'M', b'e', b't', b'a', b'd', b'a', b't', b'a', 0xb9, 0x00, 0x00,
    ];
    hub.handle_frame(third, &raw2, 0);
    assert!(matches!(
        sends(&hub.finish_batch(), third).as_slice(),
        [Message::Peer(_)]
    ));
}

#[test]
fn access_policy_denies_with_doc_unavailable_and_drops_ephemeral() {
    let store = MemoryStore::new();
    let secret = doc_id(9);
    let mut hub = Hub::new(
        store.clone(),
        HubConfig::new(PeerId::from("hub"), StorageId::from("s")),
    )
    .with_access_policy(move |_c: ConnectionId, peer: &PeerId, doc: &DocumentId| {
        peer.as_str() == "owner" || *doc != secret
    });
    let (owner, guest) = (ConnectionId(1), ConnectionId(2));
    for (c, name) in [(owner, "owner"), (guest, "guest")] {
        hub.handle_connected(c);
        hub.handle_frame(c, &join_frame(name, &["1"]), 0);
    }
    hub.finish_batch();
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "deal", "confidential").unwrap();
    let data = doc
        .sync()
        .generate_sync_message(&mut automerge::sync::State::new())
        .unwrap()
        .encode();
    let sync_from = |name: &str| {
        Message::Sync(DocumentMessage {
            sender_id: PeerId::from(name),
            target_id: PeerId::from("hub"),
            document_id: secret,
            data: data.clone(),
        })
        .encode()
    };
    hub.handle_frame(owner, &sync_from("owner"), 0);
    hub.handle_frame(guest, &sync_from("guest"), 0);
    let effects = hub.finish_batch();
    assert!(matches!(
        sends(&effects, guest).as_slice(),
        [Message::DocUnavailable(_)]
    ));
    assert!(matches!(
        sends(&effects, owner).as_slice(),
        [Message::Sync(_)]
    ));
    let ephemeral = Message::Ephemeral(fieldnotes_sync::protocol::Ephemeral {
        sender_id: PeerId::from("guest"),
        target_id: PeerId::from("hub"),
        document_id: secret,
        session_id: "s".into(),
        count: 1,
        data: vec![1],
    });
    hub.handle_frame(guest, &ephemeral.encode(), 0);
    assert!(hub.finish_batch().is_empty());
    assert_eq!(hub.counters().access_denied, 2);
}

/// A policy that keeps each peer id to the first connection that joined with it, and counts
/// what the hub tells it.
#[derive(Default)]
struct OnePeerPerConnection {
    holders: std::collections::HashMap<PeerId, ConnectionId>,
    disconnected: Vec<ConnectionId>,
}

impl fieldnotes_sync::AccessPolicy<MemoryStore> for OnePeerPerConnection {
    fn authorize(
        &mut self,
        _: &mut MemoryStore,
        _: ConnectionId,
        _: &PeerId,
        _: &DocumentId,
        _: fieldnotes_sync::Access,
    ) -> Result<bool, fieldnotes_sync::store::MemoryStoreError> {
        Ok(true)
    }

    fn may_join(
        &mut self,
        _: &mut MemoryStore,
        connection: ConnectionId,
        peer: &PeerId,
        _: Option<&StorageId>,
        holder: Option<ConnectionId>,
    ) -> Result<bool, fieldnotes_sync::store::MemoryStoreError> {
        if holder.is_some() {
            return Ok(false);
        }
        self.holders.insert(peer.clone(), connection);
        Ok(true)
    }

    fn disconnected(&mut self, connection: ConnectionId) {
        self.disconnected.push(connection);
    }
}

#[test]
fn a_refused_join_closes_only_the_newcomer_and_revoke_closes_a_connection() {
    let mut hub = Hub::new(
        MemoryStore::new(),
        HubConfig::new(PeerId::from("hub"), StorageId::from("s")),
    )
    .with_access_policy(OnePeerPerConnection::default());
    let (first, impostor) = (ConnectionId(1), ConnectionId(2));
    hub.handle_connected(first);
    hub.handle_frame(first, &join_frame("rep", &["1"]), 0);
    hub.finish_batch();
    hub.handle_connected(impostor);
    hub.handle_frame(impostor, &join_frame("rep", &["1"]), 0);
    let effects = hub.finish_batch();
    assert!(matches!(
        sends(&effects, impostor).as_slice(),
        [Message::Error(e)] if e.message == "this peer id or storage id belongs to another user"
    ));
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Close { connection, reason: CloseReason::Protocol(_) } if *connection == impostor
    )));
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Close { connection, .. } if *connection == first)),
        "the first connection is not replaced"
    );
    assert_eq!(hub.connection_count(), 1);
    assert_eq!(hub.counters().access_denied, 1);

    hub.revoke(first);
    assert_eq!(
        hub.finish_batch(),
        vec![Effect::Close {
            connection: first,
            reason: CloseReason::AccessRevoked
        }]
    );
    assert_eq!(hub.connection_count(), 0);
    assert_eq!(hub.access().disconnected, vec![impostor, first]);
    // Frames still in flight from a revoked connection are ignored.
    hub.handle_frame(first, &join_frame("rep", &["1"]), 0);
    assert!(hub.finish_batch().is_empty());
}

#[test]
fn a_message_that_is_not_a_sync_message_never_reaches_the_policy() {
    let asked = std::rc::Rc::new(std::cell::Cell::new(0));
    let counter = asked.clone();
    let mut hub = Hub::new(
        MemoryStore::new(),
        HubConfig::new(PeerId::from("hub"), StorageId::from("s")),
    )
    .with_access_policy(move |_: ConnectionId, _: &PeerId, _: &DocumentId| {
        counter.set(counter.get() + 1);
        true
    });
    let c = ConnectionId(1);
    hub.handle_connected(c);
    hub.handle_frame(c, &join_frame("rep", &["1"]), 0);
    hub.finish_batch();
    let garbage = Message::Sync(DocumentMessage {
        sender_id: PeerId::from("rep"),
        target_id: PeerId::from("hub"),
        document_id: doc_id(4),
        data: vec![0xff, 0x00, 0x13],
    });
    hub.handle_frame(c, &garbage.encode(), 0);
    let effects = hub.finish_batch();
    assert!(matches!(sends(&effects, c).as_slice(), [Message::Error(_)]));
    // A policy that records claims would otherwise have claimed the id for garbage.
    assert_eq!(asked.get(), 0);
}

#[test]
fn ephemeral_messages_are_relayed_once_to_the_other_peers() {
    let mut rng = Rng(3);
    let mut net = Network::new(3, 3, 64);
    let id = doc_id(1);
    for i in 0..3 {
        net.connect(i);
    }
    net.edit(0, id, "k", 1);
    net.settle(&mut rng);
    net.open(1, id);
    net.settle(&mut rng);
    // Client 2 never opens the document and must not hear about it.
    net.clients[0].engine.send_ephemeral(id, b"cursor".to_vec());
    net.clients[0].pump();
    let repeat = net.clients[0].to_server.back().unwrap().clone();
    net.clients[0].to_server.push_back(repeat);
    net.server_batch(&mut rng);
    while !net.clients[0].to_server.is_empty() {
        net.server_batch(&mut rng);
    }
    assert_eq!(net.hub.counters().ephemeral_relayed, 1);
    assert_eq!(net.hub.counters().ephemeral_duplicates, 1);
    let frame = net.clients[1].to_client.pop_front().unwrap();
    let client = &mut net.clients[1];
    let events = client
        .engine
        .handle_frame(&frame, &mut client.docs)
        .unwrap();
    assert_eq!(
        events,
        vec![fieldnotes_sync::ClientEvent::Ephemeral {
            document_id: id,
            sender_id: PeerId::from("client-0"),
            data: b"cursor".to_vec()
        }]
    );
    assert!(net.clients[2].to_client.is_empty());
}

#[test]
fn a_failed_read_mid_message_leaves_no_document_loaded() {
    let mut rng = Rng(21);
    let mut net = Network::new(21, 2, 64);
    let id = doc_id(4);
    net.connect(0);
    net.edit(0, id, "k", 1);
    net.settle(&mut rng);
    net.disconnect(0);
    assert_eq!(net.hub.loaded_document_count(), 0);

    // Client 1 asks for the stored document; its chunks load (read 1) but
    // its sync state does not (read 2).
    net.connect(1);
    net.settle(&mut rng);
    net.store.fail_read(2);
    net.open(1, id);
    let connection = net.clients[1].connection.unwrap();
    for frame in net.clients[1].to_server.drain(..) {
        net.hub.handle_frame(connection, &frame, 0);
    }
    let effects = net.hub.finish_batch();
    assert_eq!(
        effects,
        vec![Effect::Close {
            connection,
            reason: CloseReason::StorageFailure
        }]
    );
    assert_eq!(net.hub.loaded_document_count(), 0);
    assert_eq!(net.hub.connection_count(), 0);
    assert_eq!(net.hub.counters().storage_failures, 1);
}

#[test]
fn a_join_in_a_batch_that_could_not_be_stored_is_closed_not_left_waiting() {
    // Found by the live-sockets benchmark on two PostgreSQL instances: a batch failed (another
    // instance had claimed a document first) and every send of it was dropped, the `peer`
    // answering a `join` of the same batch included; that socket was not closed, so it waited
    // for an answer until the client gave up.
    let store = MemoryStore::new();
    let mut hub = Hub::new(
        store.clone(),
        HubConfig::new(PeerId::from("server"), StorageId::from("server-storage")),
    );
    let connection = ConnectionId(1);
    hub.handle_connected(connection);
    let join = Message::Join(Join {
        sender_id: PeerId::from("late-phone"),
        peer_metadata: PeerMetadata {
            storage_id: None,
            is_ephemeral: true,
        },
        supported_protocol_versions: vec!["1".into()],
    });
    hub.handle_frame(connection, &join.encode(), 0);
    store.fail_next_commit();
    assert_eq!(
        hub.finish_batch(),
        vec![Effect::Close {
            connection,
            reason: CloseReason::StorageFailure
        }]
    );
    // The phone reconnects and is answered.
    let again = ConnectionId(2);
    hub.handle_connected(again);
    hub.handle_frame(again, &join.encode(), 0);
    let effects = hub.finish_batch();
    assert!(
        matches!(&effects[..], [Effect::Send { connection, frame }]
            if *connection == again && matches!(Message::decode(frame), Ok(Message::Peer(_)))),
        "{effects:?}"
    );
}
