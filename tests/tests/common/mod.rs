//! Shared e2e helpers: a CBOR codec, a raw protocol client, the server harness and sign-in
//! (admin command, HTTP), and the storage backend the servers use (SQLite or PostgreSQL).
#![allow(dead_code)]

pub mod auth;
pub mod backend;
pub mod cbor;
pub mod raw;
pub mod server;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT};

/// An account-like document with `edits` extra changes (about ten in all by default).
pub fn account_doc(i: usize, edits: usize) -> AutoCommit {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "name", format!("Account #{i}")).unwrap();
    doc.put(ROOT, "branch", ["Bakery", "Hardware", "Garage"][i % 3])
        .unwrap();
    let drivers = doc.put_object(ROOT, "drivers", ObjType::Map).unwrap();
    let notes = doc.put_object(ROOT, "notes", ObjType::List).unwrap();
    let vp = doc
        .put_object(ROOT, "valueProposition", ObjType::Text)
        .unwrap();
    doc.put_object(ROOT, "followUps", ObjType::List).unwrap();
    doc.commit();
    for e in 0..edits {
        match e % 4 {
            0 => {
                doc.put(&drivers, format!("driver{e}"), (e as i64) % 5 + 1)
                    .unwrap();
            }
            1 => {
                let n = doc.insert_object(&notes, 0, ObjType::Map).unwrap();
                doc.put(&n, "text", format!("note {e} for account {i}"))
                    .unwrap();
            }
            2 => {
                let len = automerge::ReadDoc::length(&doc, &vp);
                doc.splice_text(&vp, len, 0, &format!("value {e}. "))
                    .unwrap();
            }
            _ => {
                doc.put(ROOT, "visits", e as i64).unwrap();
            }
        }
        doc.commit();
    }
    doc
}

/// The materialized content of a document (for equality checks).
pub fn content(d: &AutoCommit) -> automerge::hydrate::Value {
    let mut c = d.clone();
    c.document().hydrate(None)
}
