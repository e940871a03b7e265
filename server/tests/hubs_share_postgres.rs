//! Seeded scenarios with several hubs on one PostgreSQL database, as several `fieldnotes serve`
//! instances run: client engines connect to any hub and move between them, edit three shared
//! documents, and every hub compacts whenever its threshold (random per seed, small) is reached,
//! folding only what it loaded while the others keep appending. News of another instance's
//! commit ("stored elsewhere", which PostgreSQL's NOTIFY carries in the server) reaches each
//! hub late, in a seeded order, so a hub often writes and compacts on a stale copy.
//!
//! At the end every change any hub acknowledged (the heads of every sync message it sent) is
//! in what a fresh instance reads from the database, and every client holds what is stored.
//! Frames go through the hubs in process (no sockets, no sleeps); a failure prints its seed.

use std::collections::{BTreeSet, HashMap, VecDeque};

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Automerge, ChangeHash, ROOT};
use fieldnotes_server::storage::Store;
use fieldnotes_server::test_db::TestDatabase;
use fieldnotes_sync::{
    Client, ClientConfig, ConnectionId, DocStore, DocumentId, Effect, Hub, HubConfig, Message,
    PeerId, StorageId,
};

/// SplitMix64, as in the sync crate's scenarios.
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
}

struct SimHub {
    hub: Hub<Store>,
    /// Documents another hub committed to since this one last heard.
    news: BTreeSet<DocumentId>,
}

struct SimClient {
    engine: Client,
    docs: HashMap<DocumentId, AutoCommit>,
    /// The hub it is connected to, and as which connection.
    connection: Option<(usize, ConnectionId)>,
    to_server: VecDeque<Vec<u8>>,
    to_client: VecDeque<Vec<u8>>,
    actor: ActorId,
}

impl SimClient {
    fn pump(&mut self) {
        while let Some(frame) = self.engine.poll_frame() {
            if self.connection.is_some() {
                self.to_server.push_back(frame);
            }
        }
    }
}

struct Cluster {
    url: String,
    hubs: Vec<SimHub>,
    clients: Vec<SimClient>,
    documents: Vec<DocumentId>,
    next_connection: u64,
    now_ms: u64,
    seed: u64,
    acknowledged: Vec<(DocumentId, Vec<ChangeHash>)>,
}

impl Cluster {
    fn new(seed: u64, url: &str, rng: &mut Rng) -> Self {
        let hub_count = 2 + rng.below(2);
        let client_count = 3 + rng.below(3);
        let hubs = (0..hub_count)
            .map(|h| {
                let store = Store::open_postgres(url).expect("open the test database");
                // Every instance on one database shares its storage id, as `serve` does.
                let mut config =
                    HubConfig::new(PeerId::new(format!("hub-{h}")), StorageId::from("shared"));
                config.compaction_threshold = 2 + rng.below(4);
                // Some hubs keep one document in memory: they evict and reload all the time.
                config.max_loaded_documents = if rng.below(3) == 0 { 1 } else { usize::MAX };
                SimHub {
                    hub: Hub::new(store, config),
                    news: BTreeSet::new(),
                }
            })
            .collect();
        let clients = (0..client_count)
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
                actor: ActorId::from([seed.to_be_bytes(), (i as u64).to_be_bytes()].concat()),
            })
            .collect();
        Self {
            url: url.to_string(),
            hubs,
            clients,
            documents: (1..=3u8).map(|n| DocumentId::from_bytes([n; 16])).collect(),
            next_connection: 1,
            now_ms: 0,
            seed,
            acknowledged: Vec::new(),
        }
    }

    fn connect(&mut self, i: usize, h: usize) {
        let connection = ConnectionId(self.next_connection);
        self.next_connection += 1;
        self.hubs[h].hub.handle_connected(connection);
        let client = &mut self.clients[i];
        client.connection = Some((h, connection));
        client.engine.handle_connected();
        client.pump();
    }

    fn disconnect(&mut self, i: usize) {
        let client = &mut self.clients[i];
        if let Some((h, connection)) = client.connection.take() {
            client.to_server.clear();
            client.to_client.clear();
            client.engine.handle_disconnected();
            self.hubs[h].hub.handle_disconnected(connection);
        }
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

    fn open(&mut self, i: usize, id: DocumentId) {
        let client = &mut self.clients[i];
        let doc = client
            .docs
            .entry(id)
            .or_insert_with(|| AutoCommit::new().with_actor(client.actor.clone()));
        client.engine.sync_document(id, doc);
        client.pump();
    }

    /// Hub `h` takes a random prefix of each of its clients' frames and the news it has
    /// heard, as one batch, commits and sends.
    fn batch(&mut self, h: usize, rng: &mut Rng) {
        let news = std::mem::take(&mut self.hubs[h].news);
        for document in news {
            self.hubs[h].hub.stored_elsewhere(document);
        }
        let mut wrote = false;
        for client in self.clients.iter_mut() {
            let Some((at, connection)) = client.connection else {
                continue;
            };
            if at != h || client.to_server.is_empty() {
                continue;
            }
            let n = 1 + rng.below(client.to_server.len());
            for frame in client.to_server.drain(..n) {
                self.now_ms += 1;
                self.hubs[h]
                    .hub
                    .handle_frame(connection, &frame, self.now_ms);
                wrote = true;
            }
        }
        let effects = self.hubs[h].hub.finish_batch();
        if wrote {
            // Whatever this batch committed is news to every other instance.
            for (other, hub) in self.hubs.iter_mut().enumerate() {
                if other != h {
                    hub.news.extend(self.documents.iter().copied());
                }
            }
        }
        for effect in effects {
            match effect {
                Effect::Send { connection, frame } => {
                    if let Ok(Message::Sync(message)) = Message::decode(&frame) {
                        let heads = automerge::sync::Message::decode(&message.data)
                            .unwrap()
                            .heads;
                        self.acknowledged.push((message.document_id, heads));
                    }
                    if let Some(client) = self
                        .clients
                        .iter_mut()
                        .find(|c| c.connection == Some((h, connection)))
                    {
                        client.to_client.push_back(frame);
                    }
                }
                Effect::Close { connection, reason } => {
                    panic!(
                        "seed {}: hub {h} closed {connection:?}: {reason:?} ({:?})",
                        self.seed,
                        self.hubs[h].hub.last_storage_error()
                    );
                }
            }
        }
    }

    fn client_step(&mut self, i: usize) {
        let client = &mut self.clients[i];
        if let Some(frame) = client.to_client.pop_front() {
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
            || self.hubs.iter().any(|h| !h.news.is_empty())
    }

    fn settle(&mut self, rng: &mut Rng) {
        for _ in 0..20_000 {
            if !self.busy() {
                return;
            }
            if rng.below(2) == 0 {
                let h = rng.below(self.hubs.len());
                self.batch(h, rng);
            } else {
                let i = rng.below(self.clients.len());
                self.client_step(i);
            }
        }
        panic!("seed {}: the cluster did not settle", self.seed);
    }

    /// What an instance starting now reads from the database.
    fn stored(&self, id: &DocumentId) -> Automerge {
        let mut store = Store::open_postgres(&self.url).unwrap();
        let mut doc = Automerge::new();
        for chunk in store.load_chunks(id).unwrap() {
            doc.load_incremental(&chunk).expect("stored chunks load");
        }
        doc
    }
}

fn run(seed: u64) {
    let database = TestDatabase::new();
    let mut rng = Rng(seed);
    let mut net = Cluster::new(seed, &database.url, &mut rng);
    let (hubs, clients) = (net.hubs.len(), net.clients.len());
    for i in 0..clients {
        net.connect(i, rng.below(hubs));
    }
    let mut counter = 0i64;
    for _ in 0..300 {
        let i = rng.below(clients);
        match rng.below(100) {
            0..=29 => {
                counter += 1;
                let doc = net.documents[rng.below(net.documents.len())];
                net.edit(i, doc, &format!("k{}", rng.below(4)), counter);
            }
            30..=34 => {
                let doc = net.documents[rng.below(net.documents.len())];
                net.open(i, doc);
            }
            // A phone moves to another instance (the load balancer's choice, or a restart).
            35..=39 => {
                net.disconnect(i);
                net.connect(i, rng.below(hubs));
            }
            40..=69 => {
                let h = rng.below(hubs);
                net.batch(h, &mut rng);
            }
            _ => net.client_step(i),
        }
    }
    net.settle(&mut rng);
    for i in 0..clients {
        for doc in net.documents.clone() {
            net.open(i, doc);
        }
    }
    net.settle(&mut rng);

    let mut compactions = 0;
    for hub in &net.hubs {
        compactions += hub.hub.counters().compactions;
    }
    for doc in net.documents.clone() {
        let stored = net.stored(&doc);
        let heads = stored.get_heads();
        for (i, client) in net.clients.iter_mut().enumerate() {
            let local = client.docs.get_mut(&doc).unwrap();
            assert_eq!(
                local.get_heads(),
                heads,
                "seed {seed}: client {i} does not hold what is stored for {doc}"
            );
        }
    }
    let mut stored: HashMap<DocumentId, Automerge> = HashMap::new();
    for (doc, heads) in &net.acknowledged {
        let stored = stored.entry(*doc).or_insert_with(|| net.stored(doc));
        for head in heads {
            assert!(
                stored.get_change_meta_by_hash(head).is_some(),
                "seed {seed}: {doc} lost acknowledged change {head}"
            );
        }
    }
    assert!(counter > 0 && !net.acknowledged.is_empty(), "seed {seed}");
    assert!(compactions > 0, "seed {seed}: the scenario compacted");
}

#[test]
fn several_hubs_on_one_postgres_with_random_compaction_keep_every_acknowledged_change() {
    for seed in 0..12 {
        run(seed);
    }
}
