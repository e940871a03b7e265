//! libFuzzer entry point of the `frame_codec` target; the body and what it asserts are
//! `fieldnotes_fuzz::frame_codec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fieldnotes_fuzz::frame_codec(data));
