//! See `xln_core::fuzz::peer_message` for what this target feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xln_core::fuzz::peer_message(data));
