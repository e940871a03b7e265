//! The wire codec against frames captured from the real automerge-repo 2.5.6
//! peers (shared/protocol-transcript.txt), plus property tests.

use fieldnotes_sync::protocol::{
    DecodeError, DocUnavailable, DocumentMessage, Ephemeral, ErrorMessage, Join, Message, Peer,
    PeerMetadata, RemoteHeads, RemoteHeadsChanged, RemoteSubscriptionChange,
};
use fieldnotes_sync::{DocumentId, PeerId, StorageId};
use proptest::prelude::*;

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const SERVER_STORAGE: &str = "af9c2f43-afb8-4f3b-88e2-6d918a5f5b8e";

// #1: client-A's join, storageId sent as CBOR undefined (0xf7).
const JOIN_CLIENT_A: &str = "b900046474797065646a6f696e6873656e646572496468636c69656e742d416c706565724d65746164617461b900026973746f726167654964f76b6973457068656d6572616cf57819737570706f7274656450726f746f636f6c56657273696f6e73816131";
// #2: the server's peer answer to client-A.
const PEER_CLIENT_A: &str = "b90005647479706564706565726873656e64657249646e73796e632d7365727665722d766d6c706565724d65746164617461b900026973746f726167654964782461663963326634332d616662382d346633622d383865322d3664393138613566356238656b6973457068656d6572616cf47773656c656374656450726f746f636f6c56657273696f6e613168746172676574496468636c69656e742d41";
// #25 and #26: doc-unavailable in both directions.
const DOC_UNAVAILABLE_FROM_CLIENT: &str = "b9000464747970656f646f632d756e617661696c61626c656a646f63756d656e744964781c33746d4c3961554b54373979694761634d73696534623768704e556b6874617267657449646e73796e632d7365727665722d766d6873656e646572496468636c69656e742d41";
const DOC_UNAVAILABLE_FROM_SERVER: &str = "b9000464747970656f646f632d756e617661696c61626c656a646f63756d656e744964781c33746d4c3961554b54373979694761634d73696534623768704e556b68746172676574496468636c69656e742d426873656e64657249646e73796e632d7365727665722d766d";
// Probe raw-1: minimal peerMetadata (map(1)).
const JOIN_RAW_1: &str = "b900046474797065646a6f696e6873656e6465724964657261772d316c706565724d65746164617461b900016b6973457068656d6572616cf57819737570706f7274656450726f746f636f6c56657273696f6e73816131";
// Probe raw-2: join without supportedProtocolVersions and an empty peerMetadata.
const JOIN_RAW_2: &str =
    "b900036474797065646a6f696e6873656e6465724964657261772d326c706565724d65746164617461b90000";
// Probe raw-3: join asking for version "2", and the server's error answer.
const JOIN_RAW_3: &str = "b900046474797065646a6f696e6873656e6465724964657261772d336c706565724d65746164617461b900007819737570706f7274656450726f746f636f6c56657273696f6e73816132";
const ERROR_RAW_3: &str = "b900046474797065656572726f726873656e64657249646e73796e632d7365727665722d766d676d657373616765781c756e737570706f727465642070726f746f636f6c2076657273696f6e687461726765744964657261772d33";
// The first bytes of #3 (client sync) and #19 (relayed ephemeral); the capture truncates them.
const SYNC_PREFIX_CLIENT_A: &str = "b9000564747970656473796e636874617267657449646e73796e632d7365727665722d766d6464617461583142017e62cbdbfc8b16e2b71ebdd829b55fd858dc";
const EPHEMERAL_PREFIX_TO_CLIENT_A: &str = "b90007647479706569657068656d6572616c68746172676574496468636c69656e742d416a646f63756d656e744964781c3343645a4e376f733545623643414b";

fn doc(text: &str) -> DocumentId {
    DocumentId::parse(text).unwrap()
}

#[test]
fn decodes_a_join_with_undefined_storage_id_and_long_map_headers() {
    let message = Message::decode(&hex(JOIN_CLIENT_A)).unwrap();
    let expected = Message::Join(Join {
        sender_id: PeerId::from("client-A"),
        peer_metadata: PeerMetadata {
            storage_id: None,
            is_ephemeral: true,
        },
        supported_protocol_versions: vec!["1".into()],
    });
    assert_eq!(message, expected);
    // We leave an absent storageId out rather than writing undefined; the
    // result must still decode to the same message.
    assert_eq!(Message::decode(&message.encode()).unwrap(), expected);
}

#[test]
fn server_frames_are_byte_identical_to_the_reference_server() {
    let peer = Message::Peer(Peer {
        sender_id: PeerId::from("sync-server-vm"),
        target_id: PeerId::from("client-A"),
        peer_metadata: PeerMetadata {
            storage_id: Some(StorageId::from(SERVER_STORAGE)),
            is_ephemeral: false,
        },
        selected_protocol_version: "1".into(),
    });
    assert_eq!(Message::decode(&hex(PEER_CLIENT_A)).unwrap(), peer);
    assert_eq!(to_hex(&peer.encode()), PEER_CLIENT_A);

    let error = Message::Error(ErrorMessage {
        sender_id: Some(PeerId::from("sync-server-vm")),
        target_id: Some(PeerId::from("raw-3")),
        message: "unsupported protocol version".into(),
    });
    assert_eq!(Message::decode(&hex(ERROR_RAW_3)).unwrap(), error);
    assert_eq!(to_hex(&error.encode()), ERROR_RAW_3);

    let unavailable = Message::DocUnavailable(DocUnavailable {
        sender_id: PeerId::from("sync-server-vm"),
        target_id: PeerId::from("client-B"),
        document_id: doc("3tmL9aUKT79yiGacMsie4b7hpNUk"),
    });
    assert_eq!(
        Message::decode(&hex(DOC_UNAVAILABLE_FROM_SERVER)).unwrap(),
        unavailable
    );
    assert_eq!(to_hex(&unavailable.encode()), DOC_UNAVAILABLE_FROM_SERVER);
}

#[test]
fn client_frames_round_trip_byte_for_byte() {
    for frame in [DOC_UNAVAILABLE_FROM_CLIENT, JOIN_RAW_1] {
        let message = Message::decode(&hex(frame)).unwrap();
        assert_eq!(to_hex(&message.encode()), frame, "{message:?}");
    }
    // raw-3 sent an empty peerMetadata map; we always write isEphemeral.
    let Message::Join(join) = Message::decode(&hex(JOIN_RAW_3)).unwrap() else {
        panic!("not a join")
    };
    assert_eq!(join.supported_protocol_versions, vec!["2".to_owned()]);
}

#[test]
fn join_without_supported_versions_means_version_one() {
    let message = Message::decode(&hex(JOIN_RAW_2)).unwrap();
    assert_eq!(
        message,
        Message::Join(Join {
            sender_id: PeerId::from("raw-2"),
            peer_metadata: PeerMetadata::default(),
            supported_protocol_versions: vec!["1".into()],
        })
    );
}

#[test]
fn sync_and_ephemeral_keys_come_in_the_reference_order() {
    // #3's data starts 42 01 7e62cbdb...; only the prefix is in the capture.
    let mut data = hex("42017e62cbdbfc8b16e2b71ebdd829b55fd858dc");
    data.resize(49, 0);
    let sync = Message::Sync(DocumentMessage {
        sender_id: PeerId::from("client-A"),
        target_id: PeerId::from("sync-server-vm"),
        document_id: doc("3CdZN7os5Eb6CAKjiEe4bfmsszZf"),
        data,
    });
    let encoded = sync.encode();
    assert!(
        to_hex(&encoded).starts_with(SYNC_PREFIX_CLIENT_A),
        "{}",
        to_hex(&encoded)
    );
    // The capture says the whole frame is 152 bytes.
    assert_eq!(encoded.len(), 152);
    assert_eq!(Message::decode(&encoded).unwrap(), sync);

    let ephemeral = Message::Ephemeral(Ephemeral {
        sender_id: PeerId::from("client-B"),
        target_id: PeerId::from("client-A"),
        document_id: doc("3CdZN7os5Eb6CAKjiEe4bfmsszZf"),
        session_id: "16o2m6i5jbv".into(),
        count: 1,
        data: vec![0; 20],
    });
    let encoded = ephemeral.encode();
    assert!(to_hex(&encoded).starts_with(EPHEMERAL_PREFIX_TO_CLIENT_A));
    assert_eq!(encoded.len(), 150);
    assert_eq!(Message::decode(&encoded).unwrap(), ephemeral);
}

#[test]
fn request_frame_from_the_capture_has_the_captured_size() {
    let request = Message::Request(DocumentMessage {
        sender_id: PeerId::from("raw-4"),
        target_id: PeerId::from("sync-server-vm"),
        document_id: doc("29YoWyj1skGCLFmyLqvJhR9CSrWE"),
        data: hex("42000001000000020284"),
    });
    let encoded = request.encode();
    // The captured frame wrote type, senderId, targetId, ...; we write the
    // server's order, so compare size and content rather than bytes.
    assert_eq!(encoded.len(), 112);
    assert_eq!(Message::decode(&encoded).unwrap(), request);
}

#[test]
fn remote_messages_round_trip() {
    let messages = [
        Message::RemoteSubscriptionChange(RemoteSubscriptionChange {
            sender_id: PeerId::from("a"),
            target_id: PeerId::from("b"),
            add: vec![StorageId::from("s1")],
            remove: vec![],
        }),
        Message::RemoteHeadsChanged(RemoteHeadsChanged {
            sender_id: PeerId::from("a"),
            target_id: PeerId::from("b"),
            document_id: doc("3CdZN7os5Eb6CAKjiEe4bfmsszZf"),
            new_heads: vec![RemoteHeads {
                storage_id: StorageId::from("s1"),
                heads: vec!["7e62cbdbfc8b".into()],
                timestamp: 1_764_165_497_157,
            }],
        }),
        Message::Error(ErrorMessage {
            sender_id: None,
            target_id: None,
            message: "x".into(),
        }),
    ];
    for message in messages {
        assert_eq!(Message::decode(&message.encode()).unwrap(), message);
    }
}

#[test]
fn rejects_bad_frames_with_specific_errors() {
    // The frame that crashed the 0.2.8 reference server.
    assert_eq!(Message::decode(&hex("ff0013")), Err(DecodeError::NotAMap));
    // A map header promising more entries than the frame holds.
    assert!(matches!(
        Message::decode(&hex("b9ffff6474797065")),
        Err(DecodeError::Cbor(_))
    ));
    assert_eq!(Message::decode(&hex("01")), Err(DecodeError::NotAMap));
    assert_eq!(Message::decode(&hex("a0")), Err(DecodeError::MissingType));
    // {"type": "bogus"}
    assert_eq!(
        Message::decode(&hex("a1647479706565626f677573")),
        Err(DecodeError::UnknownType("bogus".into()))
    );
    // {"type": "sync"}: no senderId.
    assert_eq!(
        Message::decode(&hex("a164747970656473796e63")),
        Err(DecodeError::MissingField {
            message_type: "sync",
            field: "senderId"
        })
    );
    // {"type": 1}
    assert_eq!(
        Message::decode(&hex("a1647479706501")),
        Err(DecodeError::WrongFieldType { field: "type" })
    );
    // A valid map followed by one more byte.
    let mut trailing = hex(JOIN_RAW_2);
    trailing.push(0);
    assert_eq!(Message::decode(&trailing), Err(DecodeError::TrailingBytes));
    // A documentId that is not base58check.
    let mut frame = Message::DocUnavailable(DocUnavailable {
        sender_id: PeerId::from("a"),
        target_id: PeerId::from("b"),
        document_id: doc("3CdZN7os5Eb6CAKjiEe4bfmsszZf"),
    })
    .encode();
    let at = frame.windows(4).position(|w| w == b"3CdZ").unwrap();
    frame[at] = b'4';
    assert!(matches!(
        Message::decode(&frame),
        Err(DecodeError::DocumentId(_))
    ));
    assert_eq!(
        DecodeError::UnknownType("bogus".into()).to_string(),
        "unknown message type \"bogus\""
    );
}

#[test]
fn accepts_indefinite_maps_unknown_keys_and_short_headers() {
    // {_ "type": "join", "senderId": "x", "extra": [1, {"deep": h''}], "peerMetadata": {"storageId": null}}
    let mut frame = vec![0xbf];
    frame.extend(hex("6474797065646a6f696e")); // "type": "join"
    frame.extend(hex("6873656e646572496461 78".replace(' ', "").as_str())); // "senderId": "x"
    frame.extend(hex("6565787472618201a1646465657040")); // "extra": [1, {"deep": h''}]
    frame.extend(hex("6c706565724d65746164617461a1697374 6f726167654964f6"
        .replace(' ', "")
        .as_str()));
    frame.push(0xff);
    assert_eq!(
        Message::decode(&frame),
        Ok(Message::Join(Join {
            sender_id: PeerId::from("x"),
            peer_metadata: PeerMetadata::default(),
            supported_protocol_versions: vec!["1".into()],
        }))
    );
}

fn arbitrary_peer() -> impl Strategy<Value = PeerId> {
    "[a-zA-Z0-9-]{1,20}".prop_map(PeerId::from)
}

fn arbitrary_message() -> impl Strategy<Value = Message> {
    let doc = any::<[u8; 16]>().prop_map(DocumentId::from_bytes);
    prop_oneof![
        (
            arbitrary_peer(),
            proptest::option::of("[a-f0-9-]{1,36}"),
            any::<bool>()
        )
            .prop_map(|(sender_id, storage, is_ephemeral)| Message::Join(Join {
                sender_id,
                peer_metadata: PeerMetadata {
                    storage_id: storage.map(StorageId::from),
                    is_ephemeral
                },
                supported_protocol_versions: vec!["1".into()],
            })),
        (
            arbitrary_peer(),
            arbitrary_peer(),
            doc.clone(),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(sender_id, target_id, document_id, data)| Message::Sync(
                DocumentMessage {
                    sender_id,
                    target_id,
                    document_id,
                    data
                }
            )),
        (
            arbitrary_peer(),
            arbitrary_peer(),
            doc.clone(),
            proptest::collection::vec(any::<u8>(), 0..30)
        )
            .prop_map(
                |(sender_id, target_id, document_id, data)| Message::Request(DocumentMessage {
                    sender_id,
                    target_id,
                    document_id,
                    data
                })
            ),
        (
            arbitrary_peer(),
            arbitrary_peer(),
            doc,
            "[a-z0-9]{1,12}",
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(
                |(sender_id, target_id, document_id, session_id, count, data)| {
                    Message::Ephemeral(Ephemeral {
                        sender_id,
                        target_id,
                        document_id,
                        session_id,
                        count,
                        data,
                    })
                }
            ),
    ]
}

proptest! {
    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_valid_frames(
        message in arbitrary_message(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = message.encode();
        for (index, byte) in flips {
            let at = index.index(frame.len());
            frame[at] = byte;
        }
        let _ = Message::decode(&frame);
        let _ = Message::decode(&frame[..cut.index(frame.len())]);
    }

    #[test]
    fn encode_then_decode_is_identity(message in arbitrary_message()) {
        prop_assert_eq!(Message::decode(&message.encode()).unwrap(), message);
    }
}
