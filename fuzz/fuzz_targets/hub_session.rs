//! libFuzzer entry point of the `hub_session` target; the body and what it asserts are
//! `fieldnotes_fuzz::hub_session`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    // libFuzzer's hook aborts on every panic; the input guard's trial decode catches the ones
    // automerge raises on a damaged chunk, and those are refusals, not crashes.
    init: fieldnotes_fuzz::quiet_trial_panics(),
    |data: &[u8]| fieldnotes_fuzz::hub_session(data)
);
