//! See `xln_core::fuzz::account_consistency` for what this target feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xln_core::fuzz::account_consistency(data));
