//! A phone joining a large team, as the browser shell does it: the client engine keeps only a
//! window of documents open ([`SyncPlan`]), loads each from "disk" when its turn comes, closes
//! it once the server and the phone have the same heads, and opens it again when the server
//! pushes a frame about it. The hub keeps fewer documents in memory than the team has, so
//! documents are unloaded and loaded again while the phone's answers are on their way.
//!
//! Every document must arrive, the pass must finish (the phone then shows "All synced"), the
//! window must never hold more than [`WINDOW`] documents, and the hub's work per document must
//! stay a few frames, at the sizes teams have.
#![cfg(not(fieldnotes_browser_automerge))]

use std::collections::{BTreeSet, HashMap, VecDeque};

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ChangeHash, ROOT};
use fieldnotes_sync::plan::{Priority, SyncPlan, WINDOW};
use fieldnotes_sync::{
    Client, ClientConfig, ClientEvent, ConnectionId, DocumentId, Effect, Hub, HubConfig,
    MemoryStore, Message, PeerId, StorageId,
};

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

fn document(n: u32) -> DocumentId {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    bytes[15] = 0x5a;
    DocumentId::from_bytes(bytes)
}

fn client(name: &str) -> Client {
    Client::new(ClientConfig {
        peer_id: PeerId::new(name.to_string()),
        storage_id: Some(StorageId::new(format!("{name}-storage"))),
        is_ephemeral: false,
        ephemeral_session_id: format!("{name}-session"),
    })
}

/// The document a frame is about.
fn frame_document(frame: &[u8]) -> Option<DocumentId> {
    match Message::decode(frame).ok()? {
        Message::Sync(m) | Message::Request(m) => Some(m.document_id),
        Message::DocUnavailable(m) => Some(m.document_id),
        _ => None,
    }
}

/// The browser shell, without the browser: what is stored, what is in memory, and the plan.
struct Phone {
    engine: Client,
    plan: SyncPlan,
    /// IndexedDB: each document's saved bytes and sync state.
    disk: HashMap<DocumentId, Vec<u8>>,
    states: HashMap<DocumentId, Vec<u8>>,
    /// Documents in memory: exactly those open in the engine.
    memory: HashMap<DocumentId, AutoCommit>,
    most_open: usize,
}

impl Phone {
    fn new() -> Self {
        Self {
            engine: client("phone"),
            plan: SyncPlan::default(),
            disk: HashMap::new(),
            states: HashMap::new(),
            memory: HashMap::new(),
            most_open: 0,
        }
    }

    fn open(&mut self, document: DocumentId) {
        if self.memory.contains_key(&document) {
            return;
        }
        let mut doc = match self.disk.get(&document) {
            Some(bytes) => AutoCommit::load(bytes).expect("stored bytes load"),
            None => AutoCommit::new().with_actor(ActorId::from(b"phone".as_slice())),
        };
        self.engine
            .open_document(document, self.states.get(&document).map(Vec::as_slice))
            .expect("a saved state decodes");
        self.engine.sync_document(document, &mut doc);
        self.memory.insert(document, doc);
        self.most_open = self.most_open.max(self.memory.len());
    }

    fn close(&mut self, document: DocumentId) {
        if let Some(state) = self.engine.encoded_sync_state(&document) {
            self.states.insert(document, state);
        }
        self.engine.close_document(&document);
        if let Some(mut doc) = self.memory.remove(&document)
            && !doc.get_heads().is_empty()
        {
            self.disk.insert(document, doc.save());
        }
    }

    fn close_if_in_step(&mut self, document: DocumentId) {
        let in_step = self
            .memory
            .get_mut(&document)
            .is_some_and(|doc| self.engine.in_step(&document, doc));
        if in_step && self.plan.in_step(&document) {
            self.close(document);
        }
    }

    fn open_window(&mut self) {
        for document in self.plan.to_open() {
            self.open(document);
        }
    }

    fn handle_frame(&mut self, frame: &[u8], listed: &[DocumentId]) {
        if let Some(document) = frame_document(frame)
            && !self.engine.open_document_ids().any(|d| *d == document)
        {
            // The server pushes a document synced before: open it again to take the change.
            self.plan.open_now(document);
            self.open(document);
        }
        let events = self
            .engine
            .handle_frame(frame, &mut self.memory)
            .expect("the hub's frames are valid");
        let mut touched = BTreeSet::new();
        for event in events {
            match event {
                ClientEvent::Joined { .. } => {
                    let documents = listed.iter().map(|d| {
                        let priority = if self.disk.contains_key(d) {
                            Priority::Refresh
                        } else {
                            Priority::Download
                        };
                        (*d, priority)
                    });
                    self.plan.begin_pass(documents);
                }
                ClientEvent::DocumentChanged { document_id } => {
                    let doc = self.memory.get_mut(&document_id).expect("open");
                    self.disk.insert(document_id, doc.save());
                    touched.insert(document_id);
                }
                ClientEvent::ServerHeadsChanged { document_id } => {
                    touched.insert(document_id);
                }
                ClientEvent::DocumentUnavailable { document_id } => {
                    if self.plan.in_step(&document_id) {
                        self.close(document_id);
                    }
                }
                ClientEvent::ServerError { message } => panic!("the hub refused: {message}"),
                ClientEvent::Ephemeral { .. } => {}
            }
        }
        for document in touched {
            self.close_if_in_step(document);
        }
        self.open_window();
    }
}

struct Run {
    frames_to_phone: u64,
    most_open: usize,
    documents_evicted: u64,
}

/// Sends what a client has for the hub and hands back the hub's answers until both are quiet.
fn exchange_until_quiet(
    hub: &mut Hub<MemoryStore>,
    connection: ConnectionId,
    client: &mut Client,
    docs: &mut HashMap<DocumentId, AutoCommit>,
) {
    for _ in 0..100 {
        let mut sent = false;
        while let Some(frame) = client.poll_frame() {
            hub.handle_frame(connection, &frame, 0);
            sent = true;
        }
        if !sent {
            return;
        }
        for effect in hub.finish_batch() {
            if let Effect::Send { frame, .. } = effect {
                client.handle_frame(&frame, docs).unwrap();
            }
        }
    }
    panic!("the exchange never went quiet");
}

/// A colleague writes `team` accounts; a new phone joins and downloads them with a hub that
/// keeps `max_loaded` documents in memory; `drop_after` frames in, its connection drops once.
fn join(team: u32, max_loaded: usize, seed: u64, drop_after: Option<u64>) -> Run {
    let store = MemoryStore::new();
    let mut config = HubConfig::new(PeerId::from("hub"), StorageId::from("hub-storage"));
    config.max_loaded_documents = max_loaded;
    let mut hub = Hub::new(store.clone(), config);
    let mut rng = Rng(seed);
    let listed: Vec<DocumentId> = (0..team).map(document).collect();

    // The colleague's accounts, written straight through the hub.
    let mut colleague = client("colleague");
    let colleague_connection = ConnectionId(1);
    hub.handle_connected(colleague_connection);
    colleague.handle_connected();
    let mut colleague_docs: HashMap<DocumentId, AutoCommit> = HashMap::new();
    exchange_until_quiet(
        &mut hub,
        colleague_connection,
        &mut colleague,
        &mut colleague_docs,
    );
    for chunk in listed.chunks(50) {
        for (n, id) in chunk.iter().enumerate() {
            let mut doc = AutoCommit::new().with_actor(ActorId::from(b"colleague".as_slice()));
            doc.put(ROOT, "name", format!("Account {n}")).unwrap();
            doc.put(ROOT, "note", "Buys for the delivery").unwrap();
            colleague.open_document(*id, None).unwrap();
            colleague.sync_document(*id, &mut doc);
            colleague_docs.insert(*id, doc);
        }
        exchange_until_quiet(
            &mut hub,
            colleague_connection,
            &mut colleague,
            &mut colleague_docs,
        );
        for id in chunk {
            colleague.close_document(id);
            colleague_docs.remove(id);
        }
    }
    colleague.handle_disconnected();
    hub.handle_disconnected(colleague_connection);
    let server_heads: HashMap<DocumentId, Vec<ChangeHash>> = listed
        .iter()
        .map(|id| {
            let mut doc = automerge::Automerge::new();
            for chunk in store.committed_chunks(id) {
                doc.load_incremental(&chunk).unwrap();
            }
            (*id, doc.get_heads())
        })
        .collect();

    let frames_before = hub.counters().frames_out;
    let evicted_before = hub.counters().documents_evicted;
    let mut phone = Phone::new();
    let mut next_connection = 2;
    let mut frames_in = 0u64;
    let mut dropped = drop_after.is_none();
    'connections: loop {
        let connection = ConnectionId(next_connection);
        next_connection += 1;
        hub.handle_connected(connection);
        phone.engine.handle_connected();
        let mut to_phone: VecDeque<Vec<u8>> = VecDeque::new();
        let mut to_hub: VecDeque<Vec<u8>> = VecDeque::new();
        for _ in 0..1_000_000 {
            while let Some(frame) = phone.engine.poll_frame() {
                to_hub.push_back(frame);
            }
            if to_hub.is_empty() && to_phone.is_empty() {
                break 'connections;
            }
            // The server takes what has come in as one batch, a random part of it.
            if !to_hub.is_empty() {
                let n = 1 + rng.below(to_hub.len());
                for frame in to_hub.drain(..n) {
                    hub.handle_frame(connection, &frame, 0);
                }
                for effect in hub.finish_batch() {
                    match effect {
                        Effect::Send { frame, .. } => to_phone.push_back(frame),
                        Effect::Close { reason, .. } => panic!("the hub closed: {reason:?}"),
                    }
                }
            }
            // The phone handles a random part of what arrived.
            if !to_phone.is_empty() {
                let n = 1 + rng.below(to_phone.len());
                for frame in to_phone.drain(..n) {
                    phone.handle_frame(&frame, &listed);
                    frames_in += 1;
                    if !dropped && Some(frames_in) == drop_after {
                        // Offline in the middle: the next connection resumes.
                        dropped = true;
                        phone.engine.handle_disconnected();
                        phone.plan.disconnected();
                        let open: Vec<DocumentId> = phone.memory.keys().copied().collect();
                        for document in open {
                            phone.close(document);
                        }
                        hub.handle_disconnected(connection);
                        continue 'connections;
                    }
                }
            }
        }
        panic!("seed {seed}: the exchange never went quiet");
    }

    assert!(
        phone.plan.pass_finished(),
        "seed {seed}: the pass finished ({team} accounts, hub keeps {max_loaded})"
    );
    for id in &listed {
        let bytes = phone
            .disk
            .get(id)
            .unwrap_or_else(|| panic!("seed {seed}: {id} was downloaded"));
        let mut doc = AutoCommit::load(bytes).unwrap();
        assert_eq!(
            doc.get_heads(),
            server_heads[id],
            "seed {seed}: {id} is whole"
        );
    }
    Run {
        frames_to_phone: hub.counters().frames_out - frames_before,
        most_open: phone.most_open,
        documents_evicted: hub.counters().documents_evicted - evicted_before,
    }
}

#[test]
fn a_new_phone_downloads_a_team_larger_than_the_hub_keeps_in_memory() {
    for (team, max_loaded) in [(150, 64), (150, 4), (1_500, 64)] {
        for seed in 0..3 {
            let run = join(team, max_loaded, seed, None);
            let per_document = run.frames_to_phone as f64 / f64::from(team);
            println!(
                "{team} accounts, hub keeps {max_loaded}, seed {seed}: {per_document:.2} frames \
                 per account, at most {} open on the phone, {} unloads on the hub",
                run.most_open, run.documents_evicted
            );
            assert!(
                run.most_open <= WINDOW,
                "seed {seed}: the window held {}",
                run.most_open
            );
            assert!(
                per_document <= 4.0,
                "seed {seed}: {per_document:.1} frames per account"
            );
        }
    }
}

#[test]
fn a_download_cut_off_halfway_resumes_and_finishes() {
    for seed in 0..5 {
        let run = join(300, 16, seed, Some(200 + seed * 37));
        assert!(run.most_open <= WINDOW);
    }
}

/// The shell closes a document once it is in step and may open it again on the same
/// connection: the rep opens the account, "Sync now" starts a new pass, a local change. The
/// hub already knows the phone has everything and has nothing to answer, so the phone must
/// know it is in step without an answer, or its pass never finishes ("Syncing…" for good).
#[test]
fn a_document_closed_in_step_and_opened_again_on_the_same_connection_is_in_step() {
    let store = MemoryStore::new();
    let mut hub = Hub::new(
        store,
        HubConfig::new(PeerId::from("hub"), StorageId::from("hub-storage")),
    );
    let connection = ConnectionId(1);
    hub.handle_connected(connection);
    let mut phone = client("phone");
    phone.handle_connected();
    let mut docs: HashMap<DocumentId, AutoCommit> = HashMap::new();
    exchange_until_quiet(&mut hub, connection, &mut phone, &mut docs);
    assert!(matches!(
        phone.connection_state(),
        fieldnotes_sync::ConnectionState::Joined { .. }
    ));

    let id = document(1);
    let mut doc = AutoCommit::new().with_actor(ActorId::from(b"phone".as_slice()));
    doc.put(ROOT, "name", "Quay Plumbing").unwrap();
    phone.open_document(id, None).unwrap();
    phone.sync_document(id, &mut doc);
    docs.insert(id, doc);
    exchange_until_quiet(&mut hub, connection, &mut phone, &mut docs);
    assert!(
        phone.in_step(&id, docs.get_mut(&id).unwrap()),
        "in step after the first exchange"
    );

    for round in 0..3 {
        let state = phone.encoded_sync_state(&id).expect("open");
        phone.close_document(&id);
        phone.open_document(id, Some(&state)).unwrap();
        phone.sync_document(id, docs.get_mut(&id).unwrap());
        exchange_until_quiet(&mut hub, connection, &mut phone, &mut docs);
        assert!(
            phone.in_step(&id, docs.get_mut(&id).unwrap()),
            "round {round}: in step once opened again and quiet"
        );
    }

    // A new connection knows nothing of the last one's answers: the hub is asked again.
    phone.handle_disconnected();
    hub.handle_disconnected(connection);
    let state = phone.encoded_sync_state(&id).expect("open");
    phone.close_document(&id);
    let connection = ConnectionId(2);
    hub.handle_connected(connection);
    phone.handle_connected();
    phone.open_document(id, Some(&state)).unwrap();
    assert!(
        !phone.in_step(&id, docs.get_mut(&id).unwrap()),
        "not in step before the new connection's hub has answered"
    );
    exchange_until_quiet(&mut hub, connection, &mut phone, &mut docs);
    phone.sync_document(id, docs.get_mut(&id).unwrap());
    exchange_until_quiet(&mut hub, connection, &mut phone, &mut docs);
    assert!(
        phone.in_step(&id, docs.get_mut(&id).unwrap()),
        "in step on the new connection"
    );
}
