//! libFuzzer entry point of the `model_reader` target; the body and what it asserts are
//! `fieldnotes_fuzz::model_reader`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fieldnotes_fuzz::model_reader(data));
