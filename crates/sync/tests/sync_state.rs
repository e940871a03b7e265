//! A client persists its sync state with the server (in IndexedDB on a phone) as automerge
//! encodes it, so a phone updated to a build on the other automerge line must read what the
//! last build wrote. `cargo xtask test` runs this file on both lines (ARCHITECTURE.md, "Two
//! automerge lines"); the bytes are pinned, so both lines must write and read the same ones.

use automerge::ChangeHash;
use automerge::sync::State;

/// The record type, the number of heads, then each 32-byte head.
fn pinned() -> Vec<u8> {
    let mut bytes = vec![0x43, 2];
    bytes.extend([7; 32]);
    bytes.extend([9; 32]);
    bytes
}

#[test]
fn a_persisted_sync_state_is_the_same_bytes_on_both_automerge_lines() {
    let heads = vec![ChangeHash([7; 32]), ChangeHash([9; 32])];
    let mut state = State::new();
    state.shared_heads = heads.clone();
    assert_eq!(state.encode(), pinned());
    assert_eq!(State::decode(&pinned()).unwrap().shared_heads, heads);
}
