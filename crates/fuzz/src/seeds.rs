//! The seed corpus of each target, made from real documents and real sessions.
//!
//! libFuzzer mutates what it is given: seeds of real sync messages reach automerge's decoders
//! and the hub's later states at once, where random bytes would spend hours finding a valid
//! CBOR map. The hub seeds are sessions of the real client engine ([`fieldnotes_sync::Client`])
//! against the very [`Session`] the target runs, recorded step by step, so replaying a seed
//! replays that session exactly.
//!
//! `cargo run -p fieldnotes-fuzz --bin write-seeds` writes them to `fuzz/seeds/<target>/`; a
//! test in `tests/replay.rs` fails when the files there are not what this module makes.

use std::collections::BTreeMap;
use std::path::Path;

use automerge::AutoCommit;
use fieldnotes_model::{AccountDoc, Contact, ContactId, DriverKey, Strength, UsualDriver};
use fieldnotes_sync::protocol::{
    DocUnavailable, DocumentMessage, Ephemeral, ErrorMessage, Join, Peer, RemoteHeads,
    RemoteHeadsChanged, RemoteSubscriptionChange,
};
use fieldnotes_sync::{
    Client, ClientConfig, DocumentId, Effect, Message, PeerId, PeerMetadata, StorageId,
};

use crate::fixtures::{self, T0};
use crate::hub_session::{
    DocumentKind, HUB_PEER, JoinFlags, PEERS, Script, Sender, Session, Setup, Step, documents,
};

/// One seed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub target: &'static str,
    /// The file name under `fuzz/seeds/<target>/`.
    pub name: String,
    pub data: Vec<u8>,
}

/// Every target's seeds.
pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let sessions = hub_sessions();
    for (name, script, frames) in &sessions {
        seeds.push(Seed {
            target: "hub_session",
            name: name.clone(),
            data: script.encode(),
        });
        // A few real frames of each session (client and hub side) for the codec: the first
        // (joins, peers, requests) and the largest (sync messages with changes).
        let mut largest: Vec<&Vec<u8>> = frames.iter().collect();
        largest.sort_by_key(|frame| std::cmp::Reverse(frame.len()));
        let chosen = frames.iter().take(3).chain(largest.into_iter().take(3));
        for (index, frame) in chosen.enumerate() {
            seeds.push(Seed {
                target: "frame_codec",
                name: format!("{name}-frame-{index}"),
                data: frame.clone(),
            });
        }
    }
    for (name, frame) in codec_frames() {
        seeds.push(Seed {
            target: "frame_codec",
            name: name.to_string(),
            data: frame,
        });
    }
    for (index, _) in fixtures::all().iter().enumerate() {
        seeds.push(Seed {
            target: "model_reader",
            name: format!("fixture-{index}"),
            data: vec![index as u8],
        });
    }
    // Programs: each fixture, then arbitrary edits (the bytes are the program, so any bytes
    // will do; these are fixed so the corpus is the same on every run).
    let mut rng = SplitMix(0x5eed);
    for index in 0..4u8 {
        let mut data = vec![index];
        data.extend((0..384).map(|_| rng.next() as u8));
        seeds.push(Seed {
            target: "model_reader",
            name: format!("program-{index}"),
            data,
        });
    }
    seeds
}

/// Replaces the files of `fuzz/seeds/<target>/` under `fuzz_dir` with [`all`].
pub fn write(fuzz_dir: &Path) -> std::io::Result<usize> {
    let seeds = all();
    for target in crate::TARGETS {
        let dir = fuzz_dir.join("seeds").join(target.name);
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_file() {
                std::fs::remove_file(path)?;
            }
        }
    }
    for seed in &seeds {
        let path = fuzz_dir.join("seeds").join(seed.target).join(&seed.name);
        std::fs::write(path, &seed.data)?;
    }
    Ok(seeds.len())
}

/// SplitMix64: a fixed stream of bytes for the program seeds.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A client engine with its documents, on one slot of the session.
struct SimPeer {
    engine: Client,
    docs: BTreeMap<DocumentId, AutoCommit>,
    /// Sends sync messages without the flags that offer `SYNC_RESET`, as automerge's 0.6 line
    /// (the browser's) does.
    old_automerge: bool,
}

/// Drives a [`Session`] with client engines and records every step it takes.
struct Recorder {
    session: Session,
    script: Script,
    peers: Vec<SimPeer>,
    /// Every frame either side sent, for the codec's seeds.
    frames: Vec<Vec<u8>>,
}

impl Recorder {
    fn new(setup: Setup) -> Recorder {
        let peers = PEERS
            .iter()
            .map(|name| SimPeer {
                engine: Client::new(ClientConfig {
                    peer_id: PeerId::from(*name),
                    storage_id: Some(StorageId::new(format!("storage-{name}"))),
                    is_ephemeral: false,
                    ephemeral_session_id: format!("session-{name}"),
                }),
                docs: BTreeMap::new(),
                old_automerge: false,
            })
            .collect();
        Recorder {
            session: Session::new(setup),
            script: Script {
                setup,
                steps: Vec::new(),
            },
            peers,
            frames: Vec::new(),
        }
    }

    fn step(&mut self, step: Step) -> Vec<Effect> {
        let effects = self.session.run(&step);
        self.script.steps.push(step);
        effects
    }

    /// Gives peer `slot` a fixture document (`None`: an empty copy, to fetch it) and opens it.
    fn give(&mut self, slot: usize, fixture: usize, with_content: bool, device: u8) {
        let fixture = &fixtures::all()[fixture];
        let actor = fixtures::editor(PEERS[slot], device).actor().clone();
        let doc = if with_content {
            AutoCommit::load(&fixture.saved).expect("a fixture loads")
        } else {
            AutoCommit::new()
        };
        let peer = &mut self.peers[slot];
        peer.docs.insert(fixture.id, doc.with_actor(actor));
        peer.engine
            .open_document(fixture.id, None)
            .expect("a document opens without a saved state");
    }

    fn connect(&mut self, slot: usize) {
        self.step(Step::Connect { slot: slot as u8 });
        self.peers[slot].engine.handle_connected();
        self.pump(slot);
    }

    fn disconnect(&mut self, slot: usize) {
        self.step(Step::Disconnect { slot: slot as u8 });
        self.peers[slot].engine.handle_disconnected();
    }

    /// Edits an account a peer holds, through the model, and offers the change.
    fn edit_account(&mut self, slot: usize, fixture: usize, edit: impl FnOnce(&mut AccountDoc)) {
        let id = fixtures::all()[fixture].id;
        let peer = &mut self.peers[slot];
        let doc = peer.docs.remove(&id).expect("the peer holds the account");
        let actor = doc.get_actor().clone();
        let mut account = AccountDoc::from_automerge(fixtures::editor(PEERS[slot], 1), doc);
        edit(&mut account);
        let mut doc = account.into_automerge().with_actor(actor);
        peer.engine.sync_document(id, &mut doc);
        peer.docs.insert(id, doc);
        self.pump(slot);
    }

    /// Turns each frame the peer's engine queued into a step.
    fn pump(&mut self, slot: usize) {
        while let Some(frame) = self.peers[slot].engine.poll_frame() {
            let frame = if self.peers[slot].old_automerge {
                without_sync_reset(frame)
            } else {
                frame
            };
            self.frames.push(frame.clone());
            let step = frame_to_step(slot, &frame);
            self.step(step);
        }
    }

    /// Ends a batch and hands its effects to the peers; whether anything was sent.
    fn deliver(&mut self) -> bool {
        // Which peer each connection belongs to, before the batch's closes clear the slots.
        let current: Vec<_> = (0..PEERS.len())
            .map(|slot| self.session.connection(slot))
            .collect();
        let effects = self.step(Step::FinishBatch);
        let mut delivered = false;
        for effect in effects {
            match effect {
                Effect::Send { connection, frame } => {
                    let Some(slot) = current.iter().position(|c| *c == Some(connection)) else {
                        continue;
                    };
                    self.frames.push(frame.clone());
                    let peer = &mut self.peers[slot];
                    // A peer that cannot use a frame would close its socket; these sessions
                    // only hold real documents, so it does not happen.
                    let _ = peer.engine.handle_frame(&frame, &mut peer.docs);
                    delivered = true;
                }
                Effect::Close { connection, .. } => {
                    if let Some(slot) = current.iter().position(|c| *c == Some(connection)) {
                        self.peers[slot].engine.handle_disconnected();
                    }
                }
            }
        }
        for slot in 0..PEERS.len() {
            self.pump(slot);
        }
        delivered
    }

    /// Batches until nobody has anything left to say.
    fn settle(&mut self) {
        for _ in 0..24 {
            if !self.deliver() {
                break;
            }
        }
    }

    fn finish(mut self, name: &str) -> Recorded {
        self.settle();
        (name.to_string(), self.script, self.frames)
    }
}

/// The step that makes the session build exactly this frame.
fn frame_to_step(slot: usize, frame: &[u8]) -> Step {
    let slot_byte = slot as u8;
    let raw = || Step::Raw {
        slot: slot_byte,
        frame: frame.to_vec(),
    };
    let index_of = |id: &DocumentId| documents().iter().position(|d| d == id);
    match Message::decode(frame) {
        Ok(Message::Join(join)) => {
            let Some(peer) = PEERS.iter().position(|p| *p == join.sender_id.as_str()) else {
                return raw();
            };
            Step::Join {
                slot: slot_byte,
                peer: peer as u8,
                flags: JoinFlags {
                    storage: if join.peer_metadata.storage_id.is_some() {
                        0
                    } else {
                        1
                    },
                    ephemeral: join.peer_metadata.is_ephemeral,
                    versions: 0,
                },
            }
        }
        Ok(Message::Sync(message)) | Ok(Message::Request(message))
            if index_of(&message.document_id).is_some() =>
        {
            let kind = if matches!(Message::decode(frame), Ok(Message::Sync(_))) {
                DocumentKind::Sync
            } else {
                DocumentKind::Request
            };
            // Resealed: a no-op for these real changes, and what lets libFuzzer's mutations of
            // them through automerge's checksums.
            Step::Document {
                slot: slot_byte,
                kind,
                sender: Sender::Own,
                document: index_of(&message.document_id).unwrap_or(0) as u8,
                repeat: false,
                reseal: true,
                data: message.data,
            }
        }
        Ok(Message::Ephemeral(message)) if index_of(&message.document_id).is_some() => {
            Step::Document {
                slot: slot_byte,
                kind: DocumentKind::Ephemeral,
                sender: Sender::Own,
                document: index_of(&message.document_id).unwrap_or(0) as u8,
                repeat: false,
                reseal: false,
                data: message.data,
            }
        }
        _ => raw(),
    }
}

/// The frame as an automerge without `SYNC_RESET` sends it.
fn without_sync_reset(frame: Vec<u8>) -> Vec<u8> {
    let (wrap, mut message): (fn(DocumentMessage) -> Message, DocumentMessage) =
        match Message::decode(&frame) {
            Ok(Message::Sync(message)) => (Message::Sync, message),
            Ok(Message::Request(message)) => (Message::Request, message),
            _ => return frame,
        };
    let Ok(mut sync) = automerge::sync::Message::decode(&message.data) else {
        return frame;
    };
    sync.flags = sync.flags.map(|_| automerge::sync::MessageFlags::new());
    message.data = sync.encode();
    wrap(message).encode()
}

/// The fixture indices: three accounts, then the directory.
const FULL: usize = 0;
const EMPTY: usize = 1;
const MERGED: usize = 2;
const DIRECTORY: usize = 3;

/// A recorded session: its name, its script and every frame either side sent.
type Recorded = (String, Script, Vec<Vec<u8>>);

/// Short sessions, one situation each: libFuzzer replays a whole input per run, so small seeds
/// keep runs fast, and crossing them over combines the situations.
fn hub_sessions() -> Vec<Recorded> {
    let mut sessions: Vec<Recorded> = [
        (FULL, "push-full-account"),
        (EMPTY, "push-new-account"),
        (MERGED, "push-merged-account"),
        (DIRECTORY, "push-directory"),
    ]
    .into_iter()
    .map(|(fixture, name)| push(fixture, name))
    .collect();
    sessions.extend([
        push_then_pull(),
        concurrent_edits_while_evicting(),
        reconnect_on_stored_state(),
        old_automerge_after_reload(),
        refusals(),
        mutated_templates(),
        storage_fault_and_retry(),
    ]);
    sessions
}

/// One peer uploads one fixture.
fn push(fixture: usize, name: &str) -> Recorded {
    let mut r = Recorder::new(Setup::default());
    r.give(0, fixture, true, 1);
    r.connect(0);
    r.finish(name)
}

/// One peer uploads the full account; a second, empty one downloads it.
fn push_then_pull() -> Recorded {
    let mut r = Recorder::new(Setup::default());
    r.give(0, FULL, true, 1);
    r.give(1, FULL, false, 2);
    r.connect(0);
    r.settle();
    r.connect(1);
    r.settle();
    let id = fixtures::all()[FULL].id;
    let [pusher, puller, _] = &mut r.peers[..] else {
        unreachable!("three peers")
    };
    assert_eq!(
        pusher.docs.get_mut(&id).map(|d| d.get_heads()),
        puller.docs.get_mut(&id).map(|d| d.get_heads()),
        "the seed session did not sync"
    );
    r.finish("push-then-pull")
}

/// Two peers edit the same account at once while the hub keeps one document in memory and
/// compacts after two chunks; a third peer holds the directory, so the account is unloaded.
fn concurrent_edits_while_evicting() -> Recorded {
    let mut r = Recorder::new(Setup {
        max_loaded: 1,
        compaction: 1,
        ..Setup::default()
    });
    for slot in 0..2 {
        r.give(slot, FULL, true, 1 + slot as u8);
    }
    r.give(2, DIRECTORY, true, 3);
    for slot in 0..3 {
        r.connect(slot);
    }
    r.settle();
    r.edit_account(0, FULL, |doc| {
        doc.rename("Acme Plumbing & Heating", T0 + 1000)
            .expect("a rename succeeds");
    });
    r.edit_account(1, FULL, |doc| {
        doc.set_driver(
            &DriverKey::usual(UsualDriver::Price),
            Strength::MATTERS,
            "Matched the quote",
            T0 + 1001,
        )
        .expect("a driver is set");
    });
    r.settle();
    let full = fixtures::all()[FULL].id;
    r.peers[0].engine.send_ephemeral(full, b"cursor 3".to_vec());
    r.pump(0);
    r.finish("concurrent-edits-while-evicting")
}

/// A peer leaves, misses an edit, and comes back on the sync state the hub stored for it.
fn reconnect_on_stored_state() -> Recorded {
    let mut r = Recorder::new(Setup::default());
    r.give(0, MERGED, true, 1);
    r.give(1, MERGED, true, 2);
    r.connect(0);
    r.connect(1);
    r.settle();
    r.disconnect(1);
    r.edit_account(0, MERGED, |doc| {
        doc.put_contact(
            &ContactId::new("c9"),
            &Contact {
                name: "Sam Okafor".into(),
                ..Contact::default()
            },
            T0 + 1002,
        )
        .expect("a contact is added");
    });
    r.settle();
    r.connect(1);
    r.finish("reconnect-on-stored-state")
}

/// A peer on automerge's old line (no `SYNC_RESET`) keeps a document open while the hub
/// unloads it, then hears of another peer's change after the reload.
fn old_automerge_after_reload() -> Recorded {
    let mut r = Recorder::new(Setup {
        max_loaded: 1,
        ..Setup::default()
    });
    r.peers[0].old_automerge = true;
    r.give(0, FULL, true, 1);
    r.give(0, EMPTY, true, 1);
    r.give(1, FULL, true, 2);
    r.connect(0);
    r.settle();
    r.connect(1);
    r.settle();
    r.edit_account(1, FULL, |doc| {
        doc.add_follow_up(
            &fieldnotes_model::FollowUpId::new("f2"),
            "Call back",
            T0 + 86_400_000,
            T0 + 2000,
        )
        .expect("a follow-up is added");
    });
    r.finish("old-automerge-after-reload")
}

/// Every refusal the hub has: a message before `join`, a version nobody speaks, the intruder,
/// a foreign sender, garbage, a frame over the limit, a request for a document the hub does
/// not have, ephemeral repeats and expiry.
fn refusals() -> Recorded {
    let mut r = Recorder::new(Setup {
        small_frames: true,
        ..Setup::default()
    });
    r.step(document(
        0,
        DocumentKind::Sync,
        Sender::Own,
        0,
        vec![0x42, 0, 0, 0, 0, 0],
    ));
    r.step(join(
        1,
        1,
        JoinFlags {
            versions: 1,
            ..JoinFlags::default()
        },
    ));
    r.step(join(2, 3, JoinFlags::default()));
    r.deliver();
    r.step(join(0, 0, JoinFlags::default()));
    r.step(document(
        0,
        DocumentKind::Sync,
        Sender::Peer(1),
        0,
        Vec::new(),
    ));
    let request = crate::hub_session::templates()
        .iter()
        .find(|t| t.document == EMPTY as u8)
        .map(|t| t.data.clone())
        .unwrap_or_default();
    r.step(document(0, DocumentKind::Request, Sender::Own, 4, request));
    r.step(document(
        0,
        DocumentKind::Ephemeral,
        Sender::Own,
        0,
        b"presence".to_vec(),
    ));
    r.step(Step::Document {
        slot: 0,
        kind: DocumentKind::Ephemeral,
        sender: Sender::Own,
        document: 0,
        repeat: true,
        reseal: false,
        data: b"presence".to_vec(),
    });
    r.step(Step::Wait { minutes: 11 });
    r.step(Step::Raw {
        slot: 0,
        frame: vec![0xa1, 0x64, b't', b'y', b'p', b'e', 0x01],
    });
    r.deliver();
    r.step(join(1, 1, JoinFlags::default()));
    r.step(Step::Raw {
        slot: 1,
        frame: vec![0x40; 5 * 1024],
    });
    r.finish("refusals")
}

/// Each of the harness's mutations of a real sync message about an account the hub holds:
/// bytes of the whole message, bytes inside a change, and each field rebuilt. One batch each.
fn mutated_templates() -> Recorded {
    let mut r = Recorder::new(Setup::default());
    r.give(0, FULL, true, 1);
    r.connect(0);
    r.settle();
    let with_changes = crate::hub_session::templates()
        .iter()
        .position(|t| {
            t.document == FULL as u8
                && automerge::sync::Message::decode(&t.data).is_ok_and(|m| !m.changes.is_empty())
        })
        .expect("some template carries changes") as u8;
    // A real bloom filter (two known changes), which libFuzzer can then bend.
    let bloom = automerge::sync::BloomFilter::from_hashes(
        crate::hub_session::templates()
            .iter()
            .filter_map(|t| automerge::sync::Message::decode(&t.data).ok())
            .flat_map(|m| m.heads)
            .take(2)
            .collect::<Vec<_>>()
            .into_iter(),
    )
    .to_bytes();
    for mutation in (0..7u8).chain(8..15).chain(16..24) {
        let parameters = if mutation == 16 {
            bloom.clone()
        } else {
            vec![0, 9, 0x10, 0, 20, 0x01]
        };
        r.step(join(1, 1, JoinFlags::default()));
        r.step(Step::Template {
            slot: 1,
            template: with_changes,
            mutation,
            parameters,
        });
        r.deliver();
    }
    r.finish("mutated-templates")
}

/// The directory is refused to slot 2; a real peer pushes it on slot 0 through a commit that
/// fails, then again after reconnecting.
fn storage_fault_and_retry() -> Recorded {
    let mut r = Recorder::new(Setup {
        deny_directory: true,
        ..Setup::default()
    });
    r.step(join(
        2,
        2,
        JoinFlags {
            storage: 1,
            ephemeral: true,
            ..JoinFlags::default()
        },
    ));
    r.step(document(
        2,
        DocumentKind::Request,
        Sender::Own,
        DIRECTORY as u8,
        Vec::new(),
    ));
    r.deliver();
    r.give(0, DIRECTORY, true, 1);
    r.connect(0);
    r.deliver();
    r.step(Step::Fault { fault: 0, after: 0 });
    r.settle();
    r.connect(0);
    r.settle();
    r.step(Step::Revoke { slot: 0 });
    r.finish("storage-fault-and-retry")
}

fn join(slot: u8, peer: u8, flags: JoinFlags) -> Step {
    Step::Join { slot, peer, flags }
}

fn document(slot: u8, kind: DocumentKind, sender: Sender, document: u8, data: Vec<u8>) -> Step {
    Step::Document {
        slot,
        kind,
        sender,
        document,
        repeat: false,
        reseal: false,
        data,
    }
}

/// Frames of every message type, and the quirks the JavaScript peers send.
fn codec_frames() -> Vec<(&'static str, Vec<u8>)> {
    let sender = PeerId::from("client-A");
    let hub = PeerId::from(HUB_PEER);
    let document_id = fixtures::all()[FULL].id;
    let mut frames = vec![
        (
            "join",
            Message::Join(Join {
                sender_id: sender.clone(),
                peer_metadata: PeerMetadata {
                    storage_id: Some(StorageId::from("storage-A")),
                    is_ephemeral: false,
                },
                supported_protocol_versions: vec!["1".into()],
            }),
        ),
        (
            "peer",
            Message::Peer(Peer {
                sender_id: hub.clone(),
                target_id: sender.clone(),
                peer_metadata: PeerMetadata {
                    storage_id: Some(StorageId::from("hub-storage")),
                    is_ephemeral: false,
                },
                selected_protocol_version: "1".into(),
            }),
        ),
        (
            "doc-unavailable",
            Message::DocUnavailable(DocUnavailable {
                sender_id: hub.clone(),
                target_id: sender.clone(),
                document_id,
            }),
        ),
        (
            "ephemeral",
            Message::Ephemeral(Ephemeral {
                sender_id: sender.clone(),
                target_id: hub.clone(),
                document_id,
                session_id: "session".into(),
                count: 7,
                data: b"cursor".to_vec(),
            }),
        ),
        (
            "error",
            Message::Error(ErrorMessage {
                sender_id: Some(hub.clone()),
                target_id: None,
                message: "unsupported protocol version".into(),
            }),
        ),
        (
            "remote-subscription-change",
            Message::RemoteSubscriptionChange(RemoteSubscriptionChange {
                sender_id: sender.clone(),
                target_id: hub.clone(),
                add: vec![StorageId::from("s1")],
                remove: vec![StorageId::from("s2")],
            }),
        ),
        (
            "remote-heads-changed",
            Message::RemoteHeadsChanged(RemoteHeadsChanged {
                sender_id: hub,
                target_id: sender,
                document_id,
                new_heads: vec![RemoteHeads {
                    storage_id: StorageId::from("s1"),
                    heads: vec!["00".repeat(32)],
                    timestamp: 1_700_000_000_000,
                }],
            }),
        ),
    ]
    .into_iter()
    .map(|(name, message)| (name, message.encode()))
    .collect::<Vec<_>>();
    // Captured from automerge-repo 2.5.6 (shared/protocol-transcript.txt): a join whose
    // storageId is CBOR `undefined`, and one with no supported versions and an empty map.
    frames.push(("join-undefined-storage", hex("b900046474797065646a6f696e6873656e646572496468636c69656e742d416c706565724d65746164617461b900026973746f726167654964f76b6973457068656d6572616cf57819737570706f7274656450726f746f636f6c56657273696f6e73816131")));
    frames.push((
        "join-minimal",
        hex("b900036474797065646a6f696e6873656e6465724964657261772d326c706565724d65746164617461b90000"),
    ));
    // Indefinite-length map, unknown keys and short headers, as other CBOR encoders write.
    frames.push((
        "join-indefinite",
        hex("bf6474797065646a6f696e6873656e6465724961786565787472618201a1646465657040ff"),
    ));
    frames
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}
