//! See `xln::fuzz::config_files` for what this target feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xln::fuzz::config_files(data));
