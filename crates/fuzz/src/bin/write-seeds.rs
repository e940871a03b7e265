//! Writes every fuzz target's seed corpus to `fuzz/seeds/<target>/`, replacing what is there.
//!
//! Run it after a change that alters the fixtures or the hub's frames; the replay test in
//! `crates/fuzz/tests/replay.rs` says when that is needed.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let fuzz_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let count = fieldnotes_fuzz::seeds::write(&fuzz_dir)?;
    println!("wrote {count} seeds under {}", fuzz_dir.display());
    Ok(())
}
