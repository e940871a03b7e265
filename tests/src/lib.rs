//! End-to-end tests for Fieldnotes. The tests live in `tests/tests/*.rs` (Rust, raw protocol
//! client, `cargo test -p fieldnotes-e2e`) and `tests/node/` (the real npm automerge-repo client,
//! `cd tests/node && npm ci && node --test`). This library is intentionally empty: the helpers are
//! in `tests/tests/common/` so they use dev-dependencies only.
