//! The hub session target: several peers talking to one [`Hub`] over real documents.
//!
//! # Input format
//!
//! An input is a script: a setup byte, then steps, each introduced by [`SEPARATOR`]. A step is
//! an opcode, three argument bytes and a payload that runs to the next separator (automerge
//! sync message bytes, a raw frame, mutation parameters). Steps are delimited rather than
//! length-prefixed so that libFuzzer's mutations that insert or erase bytes inside one payload
//! leave every other step intact: the mutated bytes reach automerge's own decoders instead of
//! breaking the script. [`Script::encode`] writes the same format, so the seed corpus is made
//! of real sessions ([`crate::seeds`]).
//!
//! Frames are built from real messages: `join`s of three peers, and `sync` and `request`
//! messages whose data is whatever the script carries, typically real automerge sync messages
//! about the fixture documents ([`crate::fixtures`]) that libFuzzer has mutated. A template step
//! picks one of the real sync messages made at start-up ([`templates`]) and mutates it in the
//! harness (byte flips, splices, truncation, another document), so even random scripts reach
//! automerge with nearly valid input.
//!
//! Every automerge chunk carries a SHA-256 checksum of its bytes, which no byte mutation keeps
//! valid: left alone, the fuzzer would only ever see automerge reject the checksum. A step can
//! therefore ask for its change chunks to be *resealed* ([`reseal_chunk`]): the harness writes
//! the header a hostile client would, length and checksum true to the mutated bytes, so those
//! bytes reach automerge's column decoders and the applying of their operations. (Compressed
//! chunks are left as they are: their checksum is of the inflated bytes, and inflating them is
//! the decoder under test.)
//!
//! # What is asserted, whatever the input
//!
//! - A batch whose commit failed sends nothing; a committed batch has no uncommitted writes
//!   left when its sends come out.
//! - Nothing is sent to a connection after the hub closed it or the shell dropped it, and a
//!   connection is closed at most once.
//! - Every frame the hub sends decodes, comes from the hub (relayed `ephemeral` aside), and
//!   carries a sync message that decodes; every protocol error is an `error` message followed
//!   by a close, and the counters agree with what was fed and what came out.
//! - Durability: the heads of every `sync` message the hub sent are in the store's committed
//!   state, and that committed state loads.
//! - Afterwards the hub still serves a fresh, well-formed peer: it answers its `join` with
//!   `peer`, and the peer fetching a committed document (one per input, which one varies with
//!   the script) ends up with exactly the committed heads.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Automerge, ChangeHash, ROOT};
use fieldnotes_sync::protocol::{DocumentMessage, Ephemeral, Join};
use fieldnotes_sync::store::MemoryStoreError;
use fieldnotes_sync::{
    Access, AccessPolicy, CloseReason, ConnectionId, DocStore, DocumentId, Effect, Hub, HubConfig,
    MemoryStore, Message, PeerId, PeerMetadata, StorageId,
};

use crate::fixtures;

/// Introduces every step. Eight bytes that do not occur in the seeds (automerge's data would
/// have to contain them by chance).
pub const SEPARATOR: [u8; 8] = *b"\xfeFN-REC\xff";

/// How many sockets a script can hold open at once.
pub const SLOTS: usize = 3;

/// The peers that join. The fourth name, [`INTRUDER`], is one the access policy refuses.
pub const PEERS: [&str; 3] = ["peer-a", "peer-b", "peer-c"];
pub const INTRUDER: &str = "intruder";
pub const HUB_PEER: &str = "fuzz-hub";
const HUB_STORAGE: &str = "fuzz-hub-storage";
const FRESH_PEER: &str = "fresh-peer";

/// Scripts are cut here, so one input cannot run for long however it is mutated.
const MAX_STEPS: usize = 256;
/// A fresh peer syncing one document from empty needs about three exchanges.
const MAX_FRESH_ROUNDS: usize = 16;

/// The documents a step can name: the fixtures, and one the hub never stores.
pub fn documents() -> Vec<DocumentId> {
    let mut ids: Vec<DocumentId> = fixtures::all().iter().map(|f| f.id).collect();
    ids.push(DocumentId::from_bytes([0x5a; 16]));
    ids
}

fn directory_id() -> DocumentId {
    fixtures::all()
        .iter()
        .find(|f| f.kind == fixtures::FixtureKind::Directory)
        .map(|f| f.id)
        .expect("the fixtures include the directory")
}

/// How the hub is configured for one script, from its first byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Setup {
    /// Bits 0–1: 64 (the default), 1, 2 or 3 documents kept in memory; small values make
    /// every batch unload documents and reload them with reset sync states.
    pub max_loaded: u8,
    /// Bits 2–3: compact after 64 (the default), 2, 4 or 16 chunks.
    pub compaction: u8,
    /// Bit 4: the team directory is refused to the connections of slot 2.
    pub deny_directory: bool,
    /// Bit 5: frames over 4 KiB are refused instead of over 8 MiB (real sync messages about
    /// the fixtures are smaller, a mutated splice of several can be larger).
    pub small_frames: bool,
}

impl Setup {
    pub fn from_byte(byte: u8) -> Setup {
        Setup {
            max_loaded: byte & 3,
            compaction: (byte >> 2) & 3,
            deny_directory: byte & 0x10 != 0,
            small_frames: byte & 0x20 != 0,
        }
    }

    pub fn to_byte(self) -> u8 {
        (self.max_loaded & 3)
            | (self.compaction & 3) << 2
            | u8::from(self.deny_directory) << 4
            | u8::from(self.small_frames) << 5
    }

    fn config(self) -> HubConfig {
        let mut config = HubConfig::new(PeerId::from(HUB_PEER), StorageId::from(HUB_STORAGE));
        config.max_loaded_documents = [64, 1, 2, 3][usize::from(self.max_loaded & 3)];
        config.compaction_threshold = [64, 2, 4, 16][usize::from(self.compaction & 3)];
        if self.small_frames {
            config.max_frame_bytes = 4 * 1024;
        }
        config
    }
}

/// Which kind of document message a step sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    Sync,
    Request,
    Ephemeral,
}

/// Who a document message claims to come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// The peer that last joined on the slot (the slot's own peer before any join).
    Own,
    /// One of [`PEERS`] by index, whoever joined on the slot.
    Peer(u8),
    Intruder,
}

impl Sender {
    fn from_byte(byte: u8) -> Sender {
        match byte % 5 {
            0 => Sender::Own,
            4 => Sender::Intruder,
            n => Sender::Peer(n - 1),
        }
    }

    fn to_byte(self) -> u8 {
        match self {
            Sender::Own => 0,
            Sender::Peer(n) => n % 3 + 1,
            Sender::Intruder => 4,
        }
    }
}

/// What a `join` step says about the peer, from its flags byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinFlags {
    /// Bits 0–1: 0 the peer's own storage id, 1 none, 2 another peer's, 3 the hub's own.
    pub storage: u8,
    /// Bit 2.
    pub ephemeral: bool,
    /// Bits 3–4: supported versions `["1"]`, `["2"]`, `[]` or `["2", "1"]`.
    pub versions: u8,
}

impl JoinFlags {
    fn from_byte(byte: u8) -> JoinFlags {
        JoinFlags {
            storage: byte & 3,
            ephemeral: byte & 4 != 0,
            versions: (byte >> 3) & 3,
        }
    }

    fn to_byte(self) -> u8 {
        (self.storage & 3) | u8::from(self.ephemeral) << 2 | (self.versions & 3) << 3
    }
}

/// One step of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Opens a new socket on the slot (dropping the one it had).
    Connect {
        slot: u8,
    },
    Disconnect {
        slot: u8,
    },
    /// The shell withdraws the slot's session (a sign-out).
    Revoke {
        slot: u8,
    },
    FinishBatch,
    /// `peer`: an index into [`PEERS`]; 3 is [`INTRUDER`].
    Join {
        slot: u8,
        peer: u8,
        flags: JoinFlags,
    },
    /// A `sync`, `request` or `ephemeral` message about document `document` (an index into
    /// [`documents`]) carrying `data`. An ephemeral message with `repeat` reuses the last count;
    /// a sync or request with `reseal` has its change chunks resealed first.
    Document {
        slot: u8,
        kind: DocumentKind,
        sender: Sender,
        document: u8,
        repeat: bool,
        reseal: bool,
        data: Vec<u8>,
    },
    /// Any bytes as one frame.
    Raw {
        slot: u8,
        frame: Vec<u8>,
    },
    /// A `sync` of the slot's own peer carrying [`templates`]`[template]`, changed by
    /// `mutation` with `parameters`: bytes of the whole message ([`mutate`]), or with bit 3 of
    /// `mutation` set, bytes of one of its change chunks, resealed afterwards, or with bit 4
    /// set, one of its fields replaced ([`rebuild`]).
    Template {
        slot: u8,
        template: u8,
        mutation: u8,
        parameters: Vec<u8>,
    },
    /// Arms a storage fault: 0 the next commit fails, 1 the `after`th read from now fails,
    /// 2 the `after`th write from now fails, 3 disarms every fault.
    Fault {
        fault: u8,
        after: u8,
    },
    /// The shell's clock moves on, which ages out ephemeral sessions.
    Wait {
        minutes: u8,
    },
}

const OP_COUNT: u8 = 12;

impl Step {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&SEPARATOR);
        let (op, a, b, c, payload): (u8, u8, u8, u8, &[u8]) = match self {
            Step::Connect { slot } => (0, *slot, 0, 0, &[]),
            Step::Disconnect { slot } => (1, *slot, 0, 0, &[]),
            Step::Revoke { slot } => (2, *slot, 0, 0, &[]),
            Step::FinishBatch => (3, 0, 0, 0, &[]),
            Step::Join { slot, peer, flags } => (4, *slot, *peer, flags.to_byte(), &[]),
            Step::Document {
                slot,
                kind,
                sender,
                document,
                repeat,
                reseal,
                data,
            } => {
                let op = match kind {
                    DocumentKind::Sync => 5,
                    DocumentKind::Request => 6,
                    DocumentKind::Ephemeral => 7,
                };
                let c = (document & 0x0f) | u8::from(*reseal) << 6 | u8::from(*repeat) << 7;
                (op, *slot, sender.to_byte(), c, data)
            }
            Step::Raw { slot, frame } => (8, *slot, 0, 0, frame),
            Step::Template {
                slot,
                template,
                mutation,
                parameters,
            } => (9, *slot, *template, *mutation, parameters),
            Step::Fault { fault, after } => (10, *fault, *after, 0, &[]),
            Step::Wait { minutes } => (11, *minutes, 0, 0, &[]),
        };
        out.extend_from_slice(&[op, a, b, c]);
        out.extend_from_slice(payload);
    }

    /// Reads one step from the bytes between two separators; short pieces read as zeros.
    fn decode(piece: &[u8]) -> Step {
        let byte = |i: usize| piece.get(i).copied().unwrap_or(0);
        let (op, a, b, c) = (byte(0) % OP_COUNT, byte(1), byte(2), byte(3));
        let payload = piece.get(4..).unwrap_or(&[]).to_vec();
        let document = |kind| Step::Document {
            slot: a,
            kind,
            sender: Sender::from_byte(b),
            document: c & 0x0f,
            repeat: c & 0x80 != 0,
            reseal: c & 0x40 != 0,
            data: payload.clone(),
        };
        match op {
            0 => Step::Connect { slot: a },
            1 => Step::Disconnect { slot: a },
            2 => Step::Revoke { slot: a },
            3 => Step::FinishBatch,
            4 => Step::Join {
                slot: a,
                peer: b,
                flags: JoinFlags::from_byte(c),
            },
            5 => document(DocumentKind::Sync),
            6 => document(DocumentKind::Request),
            7 => document(DocumentKind::Ephemeral),
            8 => Step::Raw {
                slot: a,
                frame: payload,
            },
            9 => Step::Template {
                slot: a,
                template: b,
                mutation: c,
                parameters: payload,
            },
            10 => Step::Fault { fault: a, after: b },
            _ => Step::Wait { minutes: a },
        }
    }
}

/// A whole input: the setup and the steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    pub setup: Setup,
    pub steps: Vec<Step>,
}

impl Script {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.setup.to_byte()];
        for step in &self.steps {
            step.encode_into(&mut out);
        }
        out
    }

    pub fn decode(data: &[u8]) -> Script {
        let mut pieces = split(data, &SEPARATOR);
        let header = pieces.next().unwrap_or(&[]);
        Script {
            setup: Setup::from_byte(header.first().copied().unwrap_or(0)),
            steps: pieces.take(MAX_STEPS).map(Step::decode).collect(),
        }
    }
}

/// `data` cut at every occurrence of `separator`.
fn split<'a>(data: &'a [u8], separator: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let current = rest?;
        match current
            .windows(separator.len())
            .position(|window| window == separator)
        {
            Some(at) => {
                rest = Some(&current[at + separator.len()..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// The fuzz target.
pub fn hub_session(data: &[u8]) {
    let script = Script::decode(data);
    let mut session = Session::new(script.setup);
    for step in &script.steps {
        session.run(step);
    }
    session.check_end();
}

/// A real sync message about one of [`documents`], made at start-up.
#[derive(Debug, Clone)]
pub struct Template {
    pub document: u8,
    pub data: Vec<u8>,
}

/// Real sync messages about the fixtures, as both sides of three kinds of session send them:
/// a peer that has a document pushing it to an empty one, an empty peer pulling it, and two
/// copies that diverged (an edit on each side) catching up.
pub fn templates() -> &'static [Template] {
    static TEMPLATES: OnceLock<Vec<Template>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let mut templates = Vec::new();
        for (index, fixture) in fixtures::all().iter().enumerate() {
            let full = Automerge::load(&fixture.saved).expect("a fixture loads");
            let document = index as u8;
            record_session(&mut templates, document, full.clone(), Automerge::new());
            // Two copies with one edit each (fixed actors, so the hashes are the same on
            // every run).
            let copy = |actor: u8, key: &str| {
                let mut doc = AutoCommit::load(&fixture.saved)
                    .expect("a fixture loads")
                    .with_actor(ActorId::from(vec![actor; 16]));
                doc.put(ROOT, key, 1).expect("a root put succeeds");
                doc
            };
            let (mut ahead, mut behind) = (copy(0xee, "fuzz_ahead"), copy(0xdd, "fuzz_behind"));
            record_session(
                &mut templates,
                document,
                ahead.document().clone(),
                behind.document().clone(),
            );
        }
        templates
    })
}

/// Syncs `left` and `right` to the end, keeping every message either sent.
fn record_session(
    into: &mut Vec<Template>,
    document: u8,
    mut left: Automerge,
    mut right: Automerge,
) {
    let (mut left_state, mut right_state) = (sync::State::new(), sync::State::new());
    for _ in 0..8 {
        let to_right = left.generate_sync_message(&mut left_state);
        let to_left = right.generate_sync_message(&mut right_state);
        if to_right.is_none() && to_left.is_none() {
            break;
        }
        if let Some(message) = to_right {
            into.push(Template {
                document,
                data: message.clone().encode(),
            });
            right
                .receive_sync_message(&mut right_state, message)
                .expect("a real sync message applies");
        }
        if let Some(message) = to_left {
            into.push(Template {
                document,
                data: message.clone().encode(),
            });
            left.receive_sync_message(&mut left_state, message)
                .expect("a real sync message applies");
        }
    }
}

/// Changes a template's bytes as `mutation` says, with `parameters` as the positions and bytes.
pub fn mutate(data: &mut Vec<u8>, mutation: u8, parameters: &[u8]) {
    let position = |at: usize, len: usize| -> usize {
        let hi = parameters.get(at).copied().unwrap_or(0) as usize;
        let lo = parameters.get(at + 1).copied().unwrap_or(0) as usize;
        if len == 0 {
            0
        } else {
            (hi << 8 | lo) % (len + 1)
        }
    };
    match mutation % 7 {
        // As it is: a real message at a point of the session where the hub may not expect it.
        0 => {}
        // Flips: each three parameter bytes are a position (two bytes) and a mask.
        1 => {
            for flip in parameters.chunks_exact(3) {
                if data.is_empty() {
                    break;
                }
                let at = (usize::from(flip[0]) << 8 | usize::from(flip[1])) % data.len();
                data[at] ^= flip[2].max(1);
            }
        }
        2 => data.truncate(position(0, data.len())),
        // Splice: the bytes after the position go in at that position.
        3 => {
            let at = position(0, data.len());
            let insert = parameters.get(2..).unwrap_or(&[]);
            data.splice(at..at, insert.iter().copied());
        }
        // Overwrite from the position on.
        4 => {
            let at = position(0, data.len());
            for (offset, byte) in parameters.iter().skip(2).enumerate() {
                match data.get_mut(at + offset) {
                    Some(slot) => *slot = *byte,
                    None => data.push(*byte),
                }
            }
        }
        // Another template's bytes appended: a message with trailing data.
        5 => {
            let all = templates();
            let other = parameters.first().copied().unwrap_or(0) as usize % all.len();
            data.extend_from_slice(&all[other].data);
        }
        // A span replaced by another template's bytes from the same position: two messages
        // spliced into one.
        _ => {
            let all = templates();
            let other = &all[parameters.first().copied().unwrap_or(0) as usize % all.len()].data;
            let at = position(1, data.len().min(other.len()));
            data.truncate(at);
            data.extend_from_slice(&other[at.min(other.len())..]);
        }
    }
}

/// [`mutate`] applied to one change chunk of a sync message (the one the last parameter byte
/// picks), which is then resealed. A message without changes is mutated whole.
fn mutate_change(data: &[u8], mutation: u8, parameters: &[u8]) -> Vec<u8> {
    let Some(mut message) = reencodable(data) else {
        let mut data = data.to_vec();
        mutate(&mut data, mutation, parameters);
        return data;
    };
    let mut chunks: Vec<Vec<u8>> = message.changes.iter().map(<[u8]>::to_vec).collect();
    if chunks.is_empty() {
        let mut data = data.to_vec();
        mutate(&mut data, mutation, parameters);
        return data;
    }
    let index = usize::from(parameters.last().copied().unwrap_or(0)) % chunks.len();
    mutate(&mut chunks[index], mutation, parameters);
    chunks[index] = reseal_chunk(&chunks[index]);
    message.changes = chunks.into();
    message.encode()
}

/// The sync message in `data`, if automerge can encode it again: its decoder takes hash lists
/// in any order, its encoder insists on sorted ones (a debug assertion). Unsorted lists reach
/// the hub as they are, through the steps that send bytes untouched.
fn reencodable(data: &[u8]) -> Option<sync::Message> {
    let message = sync::Message::decode(data).ok()?;
    let sorted = |hashes: &[ChangeHash]| hashes.is_sorted();
    let encodable = sorted(&message.heads)
        && sorted(&message.need)
        && message.have.iter().all(|have| sorted(&have.last_sync));
    encodable.then_some(message)
}

/// The change hashes of the fixtures and templates, for fields that name changes.
fn known_hashes() -> &'static [ChangeHash] {
    static HASHES: OnceLock<Vec<ChangeHash>> = OnceLock::new();
    HASHES.get_or_init(|| {
        let mut hashes = Vec::new();
        for template in templates() {
            if let Ok(message) = sync::Message::decode(&template.data) {
                let mut doc = Automerge::new();
                for chunk in message.changes.iter() {
                    let _ = doc.load_incremental(chunk);
                }
                hashes.extend(doc.get_changes(&[]).iter().map(|change| change.hash()));
                hashes.extend(message.heads);
            }
        }
        hashes.sort();
        hashes.dedup();
        hashes
    })
}

/// Hashes named by the parameters: each byte picks a known hash, or (above the known ones) a
/// hash no document has. Sorted, as automerge's encoder insists (unsorted ones on the wire come
/// from byte mutations).
fn hashes_from(parameters: &[u8]) -> Vec<ChangeHash> {
    let known = known_hashes();
    let mut hashes: Vec<ChangeHash> = parameters
        .iter()
        .take(8)
        .map(|&byte| match known.get(usize::from(byte)) {
            Some(hash) => *hash,
            None => ChangeHash([byte; 32]),
        })
        .collect();
    hashes.sort();
    hashes.dedup();
    hashes
}

/// The template with one field of the decoded sync message replaced (`mutation & 7`), then
/// encoded again: a message automerge itself could have written, saying something no honest
/// peer would.
///
/// 0: the first `have`'s bloom filter is the parameters' bytes (its entry count, bits per entry
/// and probes included); 1: `need` names the parameters' hashes; 2: so do `heads`; 3: so does
/// the first `have`'s `last_sync`; 4: the changes are dropped, repeated or reversed; 5: the
/// other message version; 6: every `have` is dropped; 7: a `have` is added per parameter pair.
pub fn rebuild(data: &[u8], mutation: u8, parameters: &[u8]) -> Vec<u8> {
    let Some(mut message) = reencodable(data) else {
        return data.to_vec();
    };
    match mutation & 7 {
        0 => {
            if let Ok(bloom) = sync::BloomFilter::try_from(parameters) {
                match message.have.first_mut() {
                    Some(have) => have.bloom = bloom,
                    None => message.have.push(sync::Have {
                        last_sync: Vec::new(),
                        bloom,
                    }),
                }
            }
        }
        1 => message.need = hashes_from(parameters),
        2 => message.heads = hashes_from(parameters),
        3 => {
            let last_sync = hashes_from(parameters);
            match message.have.first_mut() {
                Some(have) => have.last_sync = last_sync,
                None => message.have.push(sync::Have {
                    last_sync,
                    bloom: sync::BloomFilter::default(),
                }),
            }
        }
        4 => {
            let mut chunks: Vec<Vec<u8>> = message.changes.iter().map(<[u8]>::to_vec).collect();
            match parameters.first().copied().unwrap_or(0) % 3 {
                0 => chunks.clear(),
                1 => chunks.extend(chunks.clone()),
                _ => chunks.reverse(),
            }
            message.changes = chunks.into();
        }
        5 => {
            message.version = match message.version {
                sync::MessageVersion::V1 => sync::MessageVersion::V2,
                _ => sync::MessageVersion::V1,
            }
        }
        6 => message.have.clear(),
        _ => {
            for pair in parameters.chunks(2).take(4) {
                message.have.push(sync::Have {
                    last_sync: hashes_from(&pair[..1]),
                    bloom: sync::BloomFilter::from_hashes(hashes_from(&pair[1..]).into_iter()),
                });
            }
        }
    }
    message.encode()
}

/// The sync message with every change chunk resealed; bytes that are not a sync message are
/// returned as they are.
pub fn reseal_message(data: &[u8]) -> Vec<u8> {
    let Some(mut message) = reencodable(data) else {
        return data.to_vec();
    };
    let chunks: Vec<Vec<u8>> = message.changes.iter().map(reseal_chunk).collect();
    message.changes = chunks.into();
    message.encode()
}

/// The first bytes of every automerge chunk.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// A compressed change: its checksum is of the inflated change, so it is left as it is.
const COMPRESSED_CHANGE: u8 = 2;

/// A chunk (magic, checksum, type, LEB128 length, data) whose length and checksum are made
/// true to its data, which is everything after the old header: what a client that computes
/// SHA-256 can send. Anything else is returned as it is.
pub fn reseal_chunk(chunk: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let Some(rest) = chunk.strip_prefix(&CHUNK_MAGIC) else {
        return chunk.to_vec();
    };
    let (Some(&chunk_type), Some(after_type)) = (rest.get(4), rest.get(5..)) else {
        return chunk.to_vec();
    };
    if chunk_type == COMPRESSED_CHANGE {
        return chunk.to_vec();
    }
    // The old length: LEB128, at most ten bytes, the last without the high bit.
    let length_bytes = after_type
        .iter()
        .take(10)
        .position(|byte| byte & 0x80 == 0)
        .map_or(after_type.len().min(10), |at| at + 1);
    let data = &after_type[length_bytes..];
    let mut typed_length = vec![chunk_type];
    let mut length = data.len() as u64;
    loop {
        let byte = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            typed_length.push(byte);
            break;
        }
        typed_length.push(byte | 0x80);
    }
    let hash = Sha256::new()
        .chain_update(&typed_length)
        .chain_update(data)
        .finalize();
    let mut sealed = CHUNK_MAGIC.to_vec();
    sealed.extend_from_slice(&hash[..4]);
    sealed.extend_from_slice(&typed_length);
    sealed.extend_from_slice(data);
    sealed
}

/// What the fuzzing store returns when a fault fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FuzzStoreError {
    InjectedCommitFailure,
    InjectedReadFailure,
    InjectedWriteFailure,
    Memory(MemoryStoreError),
}

impl std::fmt::Display for FuzzStoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FuzzStoreError::InjectedCommitFailure => f.write_str("injected commit failure"),
            FuzzStoreError::InjectedReadFailure => f.write_str("injected read failure"),
            FuzzStoreError::InjectedWriteFailure => f.write_str("injected write failure"),
            FuzzStoreError::Memory(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for FuzzStoreError {}

impl From<MemoryStoreError> for FuzzStoreError {
    fn from(error: MemoryStoreError) -> Self {
        FuzzStoreError::Memory(error)
    }
}

/// A [`MemoryStore`] whose reads, writes and commits fail when a script says so.
#[derive(Debug, Default)]
pub struct FuzzStore {
    inner: MemoryStore,
    fail_commit: bool,
    reads_until_failure: Option<u8>,
    writes_until_failure: Option<u8>,
}

impl FuzzStore {
    fn arm(&mut self, fault: u8, after: u8) {
        let after = after % 8 + 1;
        match fault % 4 {
            0 => self.fail_commit = true,
            1 => self.reads_until_failure = Some(after),
            2 => self.writes_until_failure = Some(after),
            _ => self.disarm(),
        }
    }

    fn disarm(&mut self) {
        self.fail_commit = false;
        self.reads_until_failure = None;
        self.writes_until_failure = None;
    }

    fn count_down(counter: &mut Option<u8>) -> bool {
        match counter {
            Some(1) => {
                *counter = None;
                true
            }
            Some(n) => {
                *n -= 1;
                false
            }
            None => false,
        }
    }

    fn read(&mut self) -> Result<(), FuzzStoreError> {
        if Self::count_down(&mut self.reads_until_failure) {
            return Err(FuzzStoreError::InjectedReadFailure);
        }
        Ok(())
    }

    fn write(&mut self) -> Result<(), FuzzStoreError> {
        if Self::count_down(&mut self.writes_until_failure) {
            return Err(FuzzStoreError::InjectedWriteFailure);
        }
        Ok(())
    }
}

impl DocStore for FuzzStore {
    type Error = FuzzStoreError;

    fn load_chunks(&mut self, document: &DocumentId) -> Result<Vec<Vec<u8>>, Self::Error> {
        self.read()?;
        Ok(self.inner.load_chunks(document)?)
    }
    fn append_changes(&mut self, document: &DocumentId, changes: &[u8]) -> Result<(), Self::Error> {
        self.write()?;
        Ok(self.inner.append_changes(document, changes)?)
    }
    fn replace_with_snapshot(
        &mut self,
        document: &DocumentId,
        snapshot: &[u8],
    ) -> Result<(), Self::Error> {
        self.write()?;
        Ok(self.inner.replace_with_snapshot(document, snapshot)?)
    }
    fn load_sync_state(
        &mut self,
        document: &DocumentId,
        peer: &StorageId,
    ) -> Result<Option<Vec<u8>>, Self::Error> {
        self.read()?;
        Ok(self.inner.load_sync_state(document, peer)?)
    }
    fn save_sync_state(
        &mut self,
        document: &DocumentId,
        peer: &StorageId,
        state: &[u8],
    ) -> Result<(), Self::Error> {
        self.write()?;
        Ok(self.inner.save_sync_state(document, peer, state)?)
    }
    fn list_documents(&mut self) -> Result<Vec<DocumentId>, Self::Error> {
        self.read()?;
        Ok(self.inner.list_documents()?)
    }
    fn commit(&mut self) -> Result<(), Self::Error> {
        if std::mem::take(&mut self.fail_commit) {
            self.inner.rollback();
            return Err(FuzzStoreError::InjectedCommitFailure);
        }
        Ok(self.inner.commit()?)
    }
    fn rollback(&mut self) {
        self.inner.rollback();
    }
    fn begin_frame(&mut self) {
        self.inner.begin_frame();
    }
    fn undo_frame(&mut self) -> Result<(), Self::Error> {
        Ok(self.inner.undo_frame()?)
    }
}

/// Which slot a connection id belongs to (see [`Session::connect`]).
fn slot_of(connection: ConnectionId) -> usize {
    (connection.0.saturating_sub(1) % SLOTS as u64) as usize
}

/// Refuses the intruder's joins and, when the setup says so, the directory to slot 2.
pub struct FuzzPolicy {
    deny_directory: bool,
    directory: DocumentId,
}

impl<S: DocStore> AccessPolicy<S> for FuzzPolicy {
    fn authorize(
        &mut self,
        _store: &mut S,
        connection: ConnectionId,
        _peer: &PeerId,
        document: &DocumentId,
        _access: Access,
    ) -> Result<bool, S::Error> {
        Ok(!(self.deny_directory && slot_of(connection) == 2 && *document == self.directory))
    }

    fn may_join(
        &mut self,
        _store: &mut S,
        _connection: ConnectionId,
        peer: &PeerId,
        _storage: Option<&StorageId>,
        _holder: Option<ConnectionId>,
    ) -> Result<bool, S::Error> {
        Ok(peer.as_str() != INTRUDER)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    connection: Option<ConnectionId>,
    /// The index into [`PEERS`] of the peer that last joined here (the slot's own before).
    peer: usize,
}

/// One hub driven by a script, and what the checks need to remember.
pub struct Session {
    hub: Hub<FuzzStore, FuzzPolicy>,
    /// A handle on the hub's store, to look at what was committed.
    committed: MemoryStore,
    documents: Vec<DocumentId>,
    slots: [Slot; SLOTS],
    generation: u64,
    now_ms: u64,
    frames_fed: u64,
    ephemeral_count: u64,
    /// Connections the hub closed or the shell dropped in an earlier batch.
    gone: BTreeSet<ConnectionId>,
    /// Connections the shell dropped in the current batch.
    dropped_in_batch: BTreeSet<ConnectionId>,
    /// Heads of every `sync` message a committed batch sent, by document.
    acknowledged: Vec<(DocumentId, Vec<ChangeHash>)>,
    protocol_closes: u64,
}

impl Session {
    pub fn new(setup: Setup) -> Session {
        let committed = MemoryStore::new();
        let store = FuzzStore {
            inner: committed.clone(),
            ..FuzzStore::default()
        };
        let hub = Hub::new(store, setup.config()).with_access_policy(FuzzPolicy {
            deny_directory: setup.deny_directory,
            directory: directory_id(),
        });
        let mut slots = [Slot::default(); SLOTS];
        for (index, slot) in slots.iter_mut().enumerate() {
            slot.peer = index;
        }
        Session {
            hub,
            committed,
            documents: documents(),
            slots,
            generation: 0,
            now_ms: 0,
            frames_fed: 0,
            ephemeral_count: 0,
            gone: BTreeSet::new(),
            dropped_in_batch: BTreeSet::new(),
            acknowledged: Vec::new(),
            protocol_closes: 0,
        }
    }

    /// The slot's open socket, if it has one.
    pub fn connection(&self, slot: usize) -> Option<ConnectionId> {
        self.slots[slot % SLOTS].connection
    }

    /// Runs one step; a `FinishBatch` returns the batch's effects (already checked).
    pub fn run(&mut self, step: &Step) -> Vec<Effect> {
        match step {
            Step::Connect { slot } => {
                self.connect(usize::from(*slot) % SLOTS);
            }
            Step::Disconnect { slot } => self.disconnect(usize::from(*slot) % SLOTS),
            Step::Revoke { slot } => {
                if let Some(connection) = self.slots[usize::from(*slot) % SLOTS].connection {
                    self.hub.revoke(connection);
                }
            }
            Step::FinishBatch => return self.finish_batch(),
            Step::Join { slot, peer, flags } => {
                let slot = usize::from(*slot) % SLOTS;
                let peer = usize::from(*peer) % (PEERS.len() + 1);
                let frame = join_frame(peer, *flags);
                if peer < PEERS.len() {
                    self.slots[slot].peer = peer;
                }
                self.feed(slot, &frame);
            }
            Step::Document {
                slot,
                kind,
                sender,
                document,
                repeat,
                reseal,
                data,
            } => {
                let slot = usize::from(*slot) % SLOTS;
                let sender = match sender {
                    Sender::Own => PeerId::from(PEERS[self.slots[slot].peer]),
                    Sender::Peer(n) => PeerId::from(PEERS[usize::from(*n) % PEERS.len()]),
                    Sender::Intruder => PeerId::from(INTRUDER),
                };
                let document_id = self.documents[usize::from(*document) % self.documents.len()];
                if !repeat {
                    self.ephemeral_count += 1;
                }
                let data = match (*reseal, kind) {
                    (true, DocumentKind::Sync | DocumentKind::Request) => reseal_message(data),
                    _ => data.clone(),
                };
                let frame = document_frame(*kind, sender, document_id, data, self.ephemeral_count);
                self.feed(slot, &frame);
            }
            Step::Raw { slot, frame } => self.feed(usize::from(*slot) % SLOTS, frame),
            Step::Template {
                slot,
                template,
                mutation,
                parameters,
            } => {
                let slot = usize::from(*slot) % SLOTS;
                let all = templates();
                let chosen = &all[usize::from(*template) % all.len()];
                let data = if mutation & 0x10 != 0 {
                    rebuild(&chosen.data, *mutation, parameters)
                } else if mutation & 0x08 != 0 {
                    mutate_change(&chosen.data, *mutation, parameters)
                } else {
                    let mut data = chosen.data.clone();
                    mutate(&mut data, *mutation, parameters);
                    data
                };
                let document_id =
                    self.documents[usize::from(chosen.document) % self.documents.len()];
                let sender = PeerId::from(PEERS[self.slots[slot].peer]);
                let frame = document_frame(DocumentKind::Sync, sender, document_id, data, 0);
                self.feed(slot, &frame);
            }
            Step::Fault { fault, after } => self.hub.store_mut().arm(*fault, *after),
            Step::Wait { minutes } => self.now_ms += u64::from(*minutes) * 60_000,
        }
        Vec::new()
    }

    /// A new socket on the slot; the one it had is dropped first, as a shell would.
    pub fn connect(&mut self, slot: usize) -> ConnectionId {
        self.disconnect(slot);
        self.generation += 1;
        let connection = ConnectionId(self.generation * SLOTS as u64 + slot as u64 + 1);
        self.hub.handle_connected(connection);
        self.slots[slot].connection = Some(connection);
        connection
    }

    fn disconnect(&mut self, slot: usize) {
        if let Some(connection) = self.slots[slot].connection.take() {
            self.hub.handle_disconnected(connection);
            self.dropped_in_batch.insert(connection);
        }
    }

    /// One frame on the slot's socket, which is opened first if the slot has none.
    fn feed(&mut self, slot: usize, frame: &[u8]) {
        let connection = match self.slots[slot].connection {
            Some(connection) => connection,
            None => self.connect(slot),
        };
        self.frames_fed += 1;
        self.hub.handle_frame(connection, frame, self.now_ms);
    }

    /// Ends the batch and checks its effects (see the module docs).
    pub fn finish_batch(&mut self) -> Vec<Effect> {
        let failures_before = self.hub.counters().storage_failures;
        let effects = self.hub.finish_batch();
        let failed = self.hub.counters().storage_failures > failures_before;
        if !failed {
            assert!(
                !self.committed.has_uncommitted_writes(),
                "a committed batch left writes uncommitted"
            );
        }
        let mut closed = BTreeSet::new();
        for (index, effect) in effects.iter().enumerate() {
            match effect {
                Effect::Send { connection, frame } => {
                    assert!(!failed, "a batch that failed to store sent a frame");
                    assert!(
                        !self.gone.contains(connection),
                        "a frame was sent to {connection:?} after it was gone"
                    );
                    assert!(
                        !closed.contains(connection),
                        "a frame was sent to {connection:?} after its close"
                    );
                    self.check_outgoing(frame);
                }
                Effect::Close { connection, reason } => {
                    assert!(
                        !self.gone.contains(connection),
                        "{connection:?} was closed after it was gone"
                    );
                    assert!(
                        closed.insert(*connection),
                        "{connection:?} was closed twice in one batch"
                    );
                    if matches!(reason, CloseReason::Protocol(_)) {
                        self.protocol_closes += 1;
                        if !failed {
                            let explained = index.checked_sub(1).map(|i| &effects[i]).is_some_and(
                                |previous| {
                                    matches!(previous, Effect::Send { connection: to, frame }
                                        if to == connection
                                            && matches!(Message::decode(frame), Ok(Message::Error(_))))
                                },
                            );
                            assert!(explained, "a protocol close without an error message first");
                        }
                    }
                }
            }
        }
        for slot in &mut self.slots {
            if slot.connection.is_some_and(|c| closed.contains(&c)) {
                slot.connection = None;
            }
        }
        self.gone.extend(closed);
        self.gone.append(&mut self.dropped_in_batch);
        effects
    }

    /// Checks one frame the hub sent in a committed batch and remembers its heads.
    fn check_outgoing(&mut self, frame: &[u8]) {
        let message = match Message::decode(frame) {
            Ok(message) => message,
            Err(error) => panic!("the hub sent a frame that does not decode: {error}"),
        };
        let hub = PeerId::from(HUB_PEER);
        match message {
            Message::Sync(message) => {
                assert_eq!(message.sender_id, hub);
                let sync = match sync::Message::decode(&message.data) {
                    Ok(sync) => sync,
                    Err(error) => {
                        panic!("the hub sent a sync message that does not decode: {error}")
                    }
                };
                self.acknowledged.push((message.document_id, sync.heads));
            }
            Message::Peer(peer) => {
                assert_eq!(peer.sender_id, hub);
                assert_eq!(peer.selected_protocol_version, "1");
                assert_eq!(
                    peer.peer_metadata.storage_id,
                    Some(StorageId::from(HUB_STORAGE))
                );
            }
            Message::DocUnavailable(message) => assert_eq!(message.sender_id, hub),
            Message::Error(message) => assert_eq!(message.sender_id, Some(hub)),
            // Relayed under the original sender's id, as automerge-repo does.
            Message::Ephemeral(message) => assert_ne!(message.sender_id, hub),
            other => panic!("the hub sent a {} message", other.type_name()),
        }
    }

    /// The checks that need the whole script to have run.
    pub fn check_end(&mut self) {
        self.finish_batch();
        self.hub.store_mut().disarm();
        let committed = self.check_durability();
        self.check_fresh_peer(&committed);
        let counters = self.hub.counters();
        assert_eq!(counters.frames_in, self.frames_fed, "frames counted in");
        assert_eq!(
            counters.protocol_errors, self.protocol_closes,
            "every protocol error closes its connection"
        );
        // The hub survives a panic in one frame, but a caught panic is still a bug: input
        // the guard should have refused, or a fault in the hub.
        assert_eq!(
            counters.panics_caught,
            0,
            "a frame panicked inside the hub: {:?}",
            self.hub.last_panic()
        );
    }

    /// Every acknowledged head is committed; returns the committed documents.
    fn check_durability(&mut self) -> Vec<(DocumentId, Automerge)> {
        let mut ids: Vec<DocumentId> = self
            .hub
            .store_mut()
            .list_documents()
            .expect("the store lists its documents");
        ids.extend(self.acknowledged.iter().map(|(id, _)| *id));
        ids.sort();
        ids.dedup();
        let mut committed = Vec::new();
        for id in ids {
            let mut doc = Automerge::new();
            for chunk in self.committed.committed_chunks(&id) {
                if let Err(error) = doc.load_incremental(&chunk) {
                    panic!("committed chunks of {id} do not load: {error}");
                }
            }
            for (_, heads) in self.acknowledged.iter().filter(|(doc_id, _)| *doc_id == id) {
                for head in heads {
                    assert!(
                        doc.get_change_meta_by_hash(head).is_some(),
                        "the hub acknowledged {head} of {id}, which is not committed"
                    );
                }
            }
            committed.push((id, doc));
        }
        committed
    }

    /// A new, well-formed peer joins and fetches every committed document.
    fn check_fresh_peer(&mut self, committed: &[(DocumentId, Automerge)]) {
        // Slot 0's arithmetic, so no setup's policy refuses it.
        let connection = ConnectionId(1_000_000 * SLOTS as u64 + 1);
        self.hub.handle_connected(connection);
        let fresh = PeerId::from(FRESH_PEER);
        let join = Message::Join(Join {
            sender_id: fresh.clone(),
            peer_metadata: PeerMetadata {
                storage_id: None,
                is_ephemeral: true,
            },
            supported_protocol_versions: vec!["1".into()],
        });
        self.frames_fed += 1;
        self.hub
            .handle_frame(connection, &join.encode(), self.now_ms);
        let replies = self.replies_to(connection);
        assert!(
            matches!(replies.as_slice(), [Message::Peer(peer)] if peer.target_id == fresh),
            "the hub did not answer a fresh peer's join with peer: {replies:?}"
        );

        // One committed document per input, a different one as the scripts vary: syncing
        // every document would double the cost of each run for little more coverage.
        let with_content: Vec<&(DocumentId, Automerge)> = committed
            .iter()
            .filter(|(_, doc)| !doc.get_heads().is_empty())
            .collect();
        let chosen = with_content
            .get(self.frames_fed as usize % with_content.len().max(1))
            .copied();
        if let Some((id, expected)) = chosen {
            let mut local = Automerge::new();
            let mut state = sync::State::new();
            let mut first = true;
            for _ in 0..MAX_FRESH_ROUNDS {
                let outgoing = local.generate_sync_message(&mut state);
                let sent = outgoing.is_some();
                if let Some(message) = outgoing {
                    let message = DocumentMessage {
                        sender_id: fresh.clone(),
                        target_id: PeerId::from(HUB_PEER),
                        document_id: *id,
                        data: message.encode(),
                    };
                    let frame = if first {
                        Message::Request(message)
                    } else {
                        Message::Sync(message)
                    };
                    first = false;
                    self.frames_fed += 1;
                    self.hub
                        .handle_frame(connection, &frame.encode(), self.now_ms);
                }
                let replies = self.replies_to(connection);
                let received = !replies.is_empty();
                for reply in replies {
                    let Message::Sync(reply) = reply else {
                        panic!("a fresh peer asking for committed {id} got {reply:?}");
                    };
                    let message =
                        sync::Message::decode(&reply.data).expect("the hub's sync messages decode");
                    if let Err(error) = local.receive_sync_message(&mut state, message) {
                        panic!("the hub's sync message for {id} does not apply: {error}");
                    }
                }
                if !sent && !received {
                    break;
                }
            }
            let mut got = local.get_heads();
            let mut want = expected.get_heads();
            got.sort();
            want.sort();
            assert_eq!(got, want, "a fresh peer did not get committed {id}");
        }
    }

    /// Ends a batch and returns what it sent to `connection`, which must stay open.
    fn replies_to(&mut self, connection: ConnectionId) -> Vec<Message> {
        let mut replies = Vec::new();
        for effect in self.finish_batch() {
            match effect {
                Effect::Send {
                    connection: to,
                    frame,
                } if to == connection => {
                    replies.push(Message::decode(&frame).expect("checked in finish_batch"));
                }
                Effect::Close {
                    connection: to,
                    reason,
                } if to == connection => {
                    panic!("the hub closed a fresh, well-formed peer: {reason:?}");
                }
                _ => {}
            }
        }
        replies
    }
}

/// A `join` of `PEERS[peer]` (or the intruder, for 3) as the flags describe it.
fn join_frame(peer: usize, flags: JoinFlags) -> Vec<u8> {
    let name = PEERS.get(peer).copied().unwrap_or(INTRUDER);
    let own_storage = format!("storage-{name}");
    let storage_id = match flags.storage & 3 {
        0 => Some(own_storage),
        1 => None,
        2 => Some(format!("storage-{}", PEERS[(peer + 1) % PEERS.len()])),
        _ => Some(HUB_STORAGE.to_string()),
    };
    let versions: &[&str] = match flags.versions & 3 {
        0 => &["1"],
        1 => &["2"],
        2 => &[],
        _ => &["2", "1"],
    };
    Message::Join(Join {
        sender_id: PeerId::from(name),
        peer_metadata: PeerMetadata {
            storage_id: storage_id.map(StorageId::from),
            is_ephemeral: flags.ephemeral,
        },
        supported_protocol_versions: versions.iter().map(|v| v.to_string()).collect(),
    })
    .encode()
}

fn document_frame(
    kind: DocumentKind,
    sender: PeerId,
    document_id: DocumentId,
    data: Vec<u8>,
    count: u64,
) -> Vec<u8> {
    let target_id = PeerId::from(HUB_PEER);
    let message = match kind {
        DocumentKind::Sync | DocumentKind::Request => {
            let message = DocumentMessage {
                sender_id: sender,
                target_id,
                document_id,
                data,
            };
            if kind == DocumentKind::Sync {
                Message::Sync(message)
            } else {
                Message::Request(message)
            }
        }
        DocumentKind::Ephemeral => Message::Ephemeral(Ephemeral {
            sender_id: sender,
            target_id,
            document_id,
            session_id: "session".into(),
            count,
            data,
        }),
    };
    message.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_round_trip_through_their_encoding() {
        let script = Script {
            setup: Setup::from_byte(0x3f),
            steps: vec![
                Step::Connect { slot: 1 },
                Step::Join {
                    slot: 1,
                    peer: 2,
                    flags: JoinFlags::from_byte(0x1f),
                },
                Step::Document {
                    slot: 1,
                    kind: DocumentKind::Ephemeral,
                    sender: Sender::Intruder,
                    document: 3,
                    repeat: true,
                    reseal: true,
                    data: vec![1, 2, 3],
                },
                Step::Template {
                    slot: 0,
                    template: 9,
                    mutation: 3,
                    parameters: vec![0, 4, 0xff],
                },
                Step::Fault { fault: 2, after: 5 },
                Step::FinishBatch,
            ],
        };
        assert_eq!(Script::decode(&script.encode()), script);
    }

    #[test]
    fn a_separator_inside_a_payload_cuts_only_that_step() {
        let mut data = Script {
            setup: Setup::default(),
            steps: vec![Step::FinishBatch],
        }
        .encode();
        data.extend_from_slice(&SEPARATOR);
        data.extend_from_slice(&[5, 0, 0, 0, 0x42]);
        data.extend_from_slice(&SEPARATOR);
        data.extend_from_slice(&[3]);
        let steps = Script::decode(&data).steps;
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[2], Step::FinishBatch);
    }

    #[test]
    fn resealing_a_real_chunk_changes_nothing_and_a_mutated_one_loads_its_checksum() {
        let with_changes = templates()
            .iter()
            .find(|t| sync::Message::decode(&t.data).is_ok_and(|m| !m.changes.is_empty()))
            .expect("some template carries changes");
        assert_eq!(reseal_message(&with_changes.data), with_changes.data);

        let message = sync::Message::decode(&with_changes.data).unwrap();
        let mut chunk = message.changes.iter().next().unwrap().to_vec();
        let last = chunk.len() - 1;
        chunk[last] ^= 0x01;
        let error = |bytes: &[u8]| Automerge::load(bytes).err().map(|e| e.to_string());
        assert!(
            error(&chunk).is_some_and(|e| e.contains("checksum")),
            "{:?}",
            error(&chunk)
        );
        let resealed = reseal_chunk(&chunk);
        assert!(!error(&resealed).is_some_and(|e| e.contains("checksum")));
    }

    #[test]
    fn every_template_is_a_real_sync_message() {
        assert!(templates().len() > 8);
        for template in templates() {
            sync::Message::decode(&template.data).expect("a template decodes");
        }
    }
}
