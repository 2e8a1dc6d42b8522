//! The logic of the `config_files` fuzz target (`fuzz/`, see `FUZZING.md`), here so that the
//! unit tests replay its committed corpus on stable. The core's targets are in
//! `xln_core::fuzz`.

use crate::chain::devnet::parse_keys;
use crate::config::Config;

/// `config.toml` and the key file as the user may have edited them: any bytes (read as UTF-8,
/// invalid sequences replaced, as an editor would show them). Parsing gives a value or an
/// error, never a panic. What parses must survive being written back (`xln init` writes the
/// config with `to_toml`), and every key read must be written back to the same key.
pub fn config_files(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(config) = Config::parse(&text) {
        let written = match config.to_toml() {
            Ok(written) => written,
            Err(error) => panic!("a config that parses cannot be written: {error}"),
        };
        match Config::parse(&written) {
            Ok(read_back) => assert_eq!(read_back, config, "written as:\n{written}"),
            Err(error) => panic!("the config written does not read back: {error}\n{written}"),
        }
    }
    if let Ok(keys) = parse_keys(&text) {
        assert!(!keys.is_empty(), "a key file of no keys was taken");
        let written: String = keys
            .iter()
            .map(|k| format!("{} 0x{}\n", k.name, hex::encode(k.key.secret_bytes())))
            .collect();
        let read_back =
            parse_keys(&written).unwrap_or_else(|e| panic!("keys written do not read back: {e}"));
        assert_eq!(read_back.len(), keys.len());
        for (a, b) in keys.iter().zip(&read_back) {
            assert_eq!((&a.name, a.key.address()), (&b.name, b.key.address()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn corpus_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/config_files")
    }

    /// Every file of the committed corpus, through the target's logic.
    #[test]
    fn config_files_corpus() {
        let mut count = 0;
        for entry in std::fs::read_dir(corpus_dir()).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(|| config_files(&bytes));
            assert!(result.is_ok(), "{} fails", path.display());
            count += 1;
        }
        assert!(count > 0, "the config_files corpus is empty");
        for seed in seeds() {
            config_files(seed.as_bytes());
        }
    }

    fn seeds() -> Vec<String> {
        let full = r#"name = "hub one"
signer = "hub"
listen = "127.0.0.1:9700"
endpoint = "ws://hub.example:9700"
dial = ["ws://127.0.0.1:9701", "wss://other.example/xln"]
hub = true

[fees]
base = 1
ppm = 500

[board]
threshold = 2
members = ["0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"]
weights = [1, 1]

[chain]
file = "chain.json"
confirmations = 2

[node]
snapshot_every = 500
tick_ms = 100
"#;
        vec![
            "name = \"alice\"\n".into(),
            full.into(),
            include_str!("../keys.example").into(),
        ]
    }

    /// Writes the seeds into the corpus directory (run by hand once):
    /// `cargo test --lib write_config_seeds -- --ignored`.
    #[test]
    #[ignore = "writes files: run by hand to seed the corpus"]
    fn write_config_seeds() {
        std::fs::create_dir_all(corpus_dir()).unwrap();
        for (index, seed) in seeds().iter().enumerate() {
            std::fs::write(corpus_dir().join(format!("seed-{index}")), seed).unwrap();
        }
    }
}
