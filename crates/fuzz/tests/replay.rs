//! Every input the fuzzers keep, replayed through the targets' bodies by plain `cargo test`.
//!
//! - `fuzz/regressions/<target>/`: every crash a fuzzer found, kept once fixed. Each must now
//!   run without a panic.
//! - `fuzz/seeds/<target>/`: the seed corpus. Each must run without a panic, and the files
//!   must be exactly what `fieldnotes_fuzz::seeds` makes, so the corpus cannot drift from the
//!   fixtures and the hub it was recorded from.
//! - `fuzz/known-crashes/<target>/`: crashes found and not fixed yet. Ignored by default; run
//!   `cargo test -p fieldnotes-fuzz --test replay -- --ignored` to see whether a fix covers
//!   them, then move them to `regressions/`. (Some are memory bombs: without the fix, that run
//!   allocates gigabytes.)
//!
//! Time and memory limits are libFuzzer's: `cargo xtask test` also runs each regression folder
//! under `-timeout` and `-rss_limit_mb` (see `xtask/src/fuzz.rs`).

use std::path::{Path, PathBuf};

use fieldnotes_fuzz::{TARGETS, Target, seeds};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of a folder, sorted; none when the folder does not exist.
fn inputs(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && !is_note(path))
        .collect();
    files.sort();
    files
}

/// A folder's `README.md` explains it; it is not an input.
fn is_note(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "md")
}

/// Runs `body` on every input of `folder`; one line per input that panicked.
fn replay(body: fn(&[u8]), folder: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    for path in inputs(folder) {
        let data = std::fs::read(&path).expect("a kept input is readable");
        if let Err(panic) = std::panic::catch_unwind(|| body(&data)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            failures.push(format!("{}: {message}", path.display()));
        }
    }
    failures
}

fn replay_all(folder: &str) -> Vec<String> {
    TARGETS
        .iter()
        .flat_map(|Target { name, body }| replay(*body, &fuzz_dir().join(folder).join(name)))
        .collect()
}

#[test]
fn every_kept_crash_now_runs_without_a_panic() {
    let failures = replay_all("regressions");
    assert!(
        failures.is_empty(),
        "kept crashes panic again:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_seed_runs_without_a_panic() {
    for target in TARGETS {
        let folder = fuzz_dir().join("seeds").join(target.name);
        assert!(!inputs(&folder).is_empty(), "{} has no seeds", target.name);
    }
    let failures = replay_all("seeds");
    assert!(failures.is_empty(), "seeds panic:\n{}", failures.join("\n"));
}

#[test]
fn the_seeds_on_disk_are_the_generated_ones() {
    let stale: Vec<String> = seeds::all()
        .into_iter()
        .filter(|seed| {
            let path = fuzz_dir().join("seeds").join(seed.target).join(&seed.name);
            std::fs::read(path).ok().as_deref() != Some(seed.data.as_slice())
        })
        .map(|seed| format!("{}/{}", seed.target, seed.name))
        .collect();
    let expected = seeds::all().len();
    let on_disk: usize = TARGETS
        .iter()
        .map(|t| inputs(&fuzz_dir().join("seeds").join(t.name)).len())
        .sum();
    assert!(
        stale.is_empty() && on_disk == expected,
        "fuzz/seeds is out of date ({} stale, {on_disk} files for {expected} seeds): run \
         `cargo run -p fieldnotes-fuzz --bin write-seeds`\n{}",
        stale.len(),
        stale.join("\n")
    );
}

/// The replay itself must see a panic, or the tests above prove nothing.
#[test]
fn a_panicking_input_is_reported_with_its_file() {
    let folder = std::env::temp_dir().join(format!("fieldnotes-replay-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("fine"), b"fine").unwrap();
    std::fs::write(folder.join("crash-1"), b"boom").unwrap();
    std::fs::write(folder.join("README.md"), b"boom, but a note").unwrap();
    fn body(data: &[u8]) {
        assert!(!data.starts_with(b"boom"), "planted");
    }
    let failures = replay(body, &folder);
    std::fs::remove_dir_all(&folder).unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("crash-1") && failures[0].contains("planted"));
}

#[test]
#[ignore = "crashes not fixed yet; run with --ignored to check a fix"]
fn known_crashes_no_longer_panic() {
    let failures = replay_all("known-crashes");
    assert!(
        failures.is_empty(),
        "still crashing:\n{}",
        failures.join("\n")
    );
}
