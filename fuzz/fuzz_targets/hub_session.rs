//! libFuzzer entry point of the `hub_session` target; the body and what it asserts are
//! `fieldnotes_fuzz::hub_session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fieldnotes_fuzz::hub_session(data));
