//! The committed corpora (`fuzz/corpus/<target>/`) and the seeds, replayed through the fuzz
//! targets' logic on stable: any input that ever found a bug stays a regression test.
//! (`config_files` needs the node crate; its replay is in `src/fuzz.rs` there.)

// Reading the corpus is the test's IO, not the core's.
#![allow(clippy::disallowed_methods)]

use super::*;
use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Every file of the target's corpus, by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.display().to_string(), bytes)
        })
        .collect();
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let seeds = seeds(target).unwrap_or_else(|| panic!("no seeds for {target}"));
    let files = corpus(target);
    assert!(!files.is_empty(), "the {target} corpus is empty");
    for (name, bytes) in files {
        let result = std::panic::catch_unwind(|| run(&bytes));
        assert!(result.is_ok(), "{target}: {name} fails");
    }
    for (index, seed) in seeds.iter().enumerate() {
        let result = std::panic::catch_unwind(|| run(seed));
        assert!(result.is_ok(), "{target}: seed {index} fails");
    }
}

#[test]
fn peer_message_corpus() {
    replay("peer_message", peer_message);
}

#[test]
fn onion_payload_corpus() {
    replay("onion_payload", onion_payload);
}

#[test]
fn account_consistency_corpus() {
    replay("account_consistency", account_consistency);
}

/// Writes the seeds into the corpus directories (run once, then let the fuzzer grow and
/// `cargo fuzz cmin` shrink them): `cargo test -p xln-core write_seed_corpora -- --ignored`.
#[test]
#[ignore = "writes files: run by hand to seed the corpora"]
fn write_seed_corpora() {
    for target in ["peer_message", "onion_payload", "account_consistency"] {
        let seeds = seeds(target).unwrap_or_else(|| panic!("no seeds for {target}"));
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for seed in seeds {
            let name = format!(
                "seed-{}",
                &crate::crypto::keccak256(&seed).to_string()[2..18]
            );
            std::fs::write(dir.join(name), seed).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// How the payments of the account_consistency corpus ended (for FUZZING.md):
/// `cargo test -p xln-core account_consistency_outcomes -- --ignored --nocapture`.
#[test]
#[ignore = "prints figures"]
fn account_consistency_outcomes() {
    let mut total = [0usize; 3];
    let files = corpus("account_consistency");
    let started = std::time::Instant::now();
    for (_, bytes) in &files {
        let o = account_consistency::outcomes(bytes);
        for (sum, n) in total
            .iter_mut()
            .zip([o.succeeded, o.failed, o.hub_lost_to_expiry])
        {
            *sum += n;
        }
    }
    println!(
        "{} files in {:?}: {} payments succeeded, {} failed, {} times the hub lost to expiry",
        files.len(),
        started.elapsed(),
        total[0],
        total[1],
        total[2]
    );
}
