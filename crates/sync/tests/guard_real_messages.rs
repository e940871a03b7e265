//! The guard lets through every message real peers send: full syncs of large documents
//! (automerge then sends a whole compressed document), incremental syncs, compressed change
//! chunks, and documents saved by either automerge line. Runs on both lines, so messages made
//! by the browser's automerge are checked too.

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjType, ROOT, ReadDoc};
use fieldnotes_sync::guard::{SyncLimits, check_sync_message};

/// A document like a busy account: many notes, a long text typed in pieces, a few lists.
fn big_document(actor: u8, notes: usize) -> AutoCommit {
    let mut doc = AutoCommit::new().with_actor(ActorId::from(vec![actor; 16]));
    doc.put(ROOT, "schema", 1).unwrap();
    doc.put(ROOT, "name", "Draft Depot").unwrap();
    let text = doc
        .put_object(ROOT, "value_proposition", ObjType::Text)
        .unwrap();
    let notes_map = doc.put_object(ROOT, "notes", ObjType::Map).unwrap();
    for n in 0..notes {
        let note = doc
            .put_object(&notes_map, format!("n{n:05}"), ObjType::Map)
            .unwrap();
        doc.put(
            &note,
            "text",
            format!("Visit {n}: the van comes before seven, they like it"),
        )
        .unwrap();
        doc.put(&note, "at", n as i64 * 86_400_000).unwrap();
        let drivers = doc.put_object(&note, "drivers", ObjType::List).unwrap();
        doc.insert(&drivers, 0, "delivery").unwrap();
        let length = doc.length(&text);
        doc.splice_text(&text, length, 0, "They value delivery. ")
            .unwrap();
        if n % 10 == 0 {
            doc.commit();
        }
    }
    doc.commit();
    doc
}

fn assert_passes(message: &sync::Message, what: &str) {
    let bytes = message.clone().encode();
    if let Err(refusal) = check_sync_message(&bytes, &SyncLimits::default()) {
        panic!(
            "{what}: the guard refused a real message ({} bytes): {refusal}",
            bytes.len()
        );
    }
}

/// Syncs `a` and `b` to the end, checking every message either sends.
fn sync_checked(a: &mut AutoCommit, b: &mut AutoCommit) -> usize {
    let (mut a_state, mut b_state) = (sync::State::new(), sync::State::new());
    let mut messages = 0;
    for _ in 0..100 {
        let from_a = a.sync().generate_sync_message(&mut a_state);
        if let Some(message) = &from_a {
            assert_passes(message, "a to b");
            b.sync()
                .receive_sync_message(&mut b_state, message.clone())
                .unwrap();
            messages += 1;
        }
        let from_b = b.sync().generate_sync_message(&mut b_state);
        if let Some(message) = &from_b {
            assert_passes(message, "b to a");
            a.sync()
                .receive_sync_message(&mut a_state, message.clone())
                .unwrap();
            messages += 1;
        }
        if from_a.is_none() && from_b.is_none() {
            assert_eq!(a.get_heads(), b.get_heads());
            return messages;
        }
    }
    panic!("sync did not finish");
}

#[test]
fn a_new_device_downloading_a_large_document_passes() {
    let mut server = big_document(1, 400);
    let mut phone = AutoCommit::new();
    assert!(sync_checked(&mut server, &mut phone) >= 2);
}

#[test]
fn concurrent_edits_of_both_sides_pass() {
    let mut a = big_document(1, 50);
    let mut b = a.fork().with_actor(ActorId::from(vec![2; 16]));
    for n in 0..30 {
        a.put(ROOT, format!("a{n}"), n).unwrap();
        a.commit();
        b.put(ROOT, format!("b{n}"), n).unwrap();
        b.commit();
    }
    sync_checked(&mut a, &mut b);
    // And a reconnect after more edits on one side sends just those.
    a.put(ROOT, "later", "yes").unwrap();
    a.commit();
    sync_checked(&mut a, &mut b);
}

#[test]
fn compressed_change_chunks_and_saved_documents_pass() {
    let mut doc = big_document(3, 40);
    // A change over 256 bytes comes out compressed from `bytes()`: other implementations send
    // changes that way.
    // Owned changes on both lines (0.6 hands out references, and `bytes` needs `&mut`).
    let compressed: Vec<Vec<u8>> = doc
        .document()
        .get_changes(&[])
        .into_iter()
        .map(|change| {
            let mut change = change.clone();
            change.bytes().into_owned()
        })
        .collect();
    assert!(
        compressed.iter().any(|bytes| bytes.get(8) == Some(&2)),
        "no change was compressed"
    );
    let saved = doc.save();
    let saved_06 = include_bytes!("../../model/tests/fixtures/account-0.6.automerge").to_vec();
    let saved_012 = include_bytes!("../../model/tests/fixtures/account-0.12.automerge").to_vec();
    for (what, chunks) in [
        ("compressed changes", compressed),
        ("a saved document", vec![saved]),
        ("a document saved by the 0.6 line", vec![saved_06]),
        ("a document saved by the 0.12 line", vec![saved_012]),
    ] {
        let mut message = vec![0x42, 0x00, 0x00, 0x00];
        leb128(&mut message, chunks.len() as u64);
        for chunk in &chunks {
            leb128(&mut message, chunk.len() as u64);
            message.extend(chunk);
        }
        let cost = check_sync_message(&message, &SyncLimits::default())
            .unwrap_or_else(|refusal| panic!("{what}: {refusal}"));
        assert!(cost.rows > 0, "{what}: no rows counted");
        // automerge takes it too.
        let mut fresh = AutoCommit::new();
        let mut state = sync::State::new();
        fresh
            .sync()
            .receive_sync_message(&mut state, sync::Message::decode(&message).unwrap())
            .unwrap_or_else(|e| panic!("{what}: automerge refused it: {e}"));
        assert!(!fresh.get_heads().is_empty(), "{what}: nothing applied");
    }
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
