//! The bodies of Fieldnotes' coverage-guided fuzz targets, as plain library code.
//!
//! The cargo-fuzz package in `fuzz/` (its own workspace: it links libFuzzer) is three
//! one-line `fuzz_target!`s that call these functions; keeping the bodies here lets an ordinary
//! `cargo test` replay every input the fuzzer ever crashed on (`fuzz/regressions/<target>/`,
//! see `tests/replay.rs`) without libFuzzer, sanitizers or a nightly flag.
//!
//! - [`frame_codec`]: `Message::decode` on any bytes; what decodes round-trips exactly.
//! - [`hub_session`]: scripts of connects, joins, real and mutated sync messages from three
//!   peers, batches, disconnects and storage faults against one hub; asserts durability and
//!   the hub's other invariants, and that a fresh peer is still served afterwards.
//! - [`model_reader`]: documents of any shape built through automerge's API from the real
//!   fixtures, read by the model; a value or a typed error, never a panic.
//!
//! [`seeds`] writes each target's seed corpus (`fuzz/seeds/<target>/`) from real documents and
//! real sessions: `cargo run -p fieldnotes-fuzz --bin write-seeds`.
//!
//! A body panics when it finds a bug; libFuzzer turns the panic into a crash and keeps the
//! input. Everything is deterministic: fixed actors, ids and times, no clock, no randomness.

pub mod fixtures;
pub mod frame_codec;
pub mod hub_session;
pub mod model_reader;
pub mod seeds;

/// For the targets' `init`: the input guard's trial decode catches the panics automerge raises
/// on a damaged chunk, and libFuzzer's hook must not turn those into crashes.
pub use fieldnotes_sync::guard::quiet_trial_panics;
pub use frame_codec::frame_codec;
pub use hub_session::hub_session;
pub use model_reader::model_reader;

/// One fuzz target: the name cargo-fuzz knows it by and its body.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub body: fn(&[u8]),
}

/// Every target, by the name of its folders under `fuzz/` and its `fuzz_targets/` file.
pub const TARGETS: [Target; 3] = [
    Target {
        name: "frame_codec",
        body: frame_codec,
    },
    Target {
        name: "hub_session",
        body: hub_session,
    },
    Target {
        name: "model_reader",
        body: model_reader,
    },
];
