//! `xln devnet`: a local jurisdiction for development. Starts anvil (installing it with the
//! project's script when it is missing), deploys the contracts and two test tokens, funds the
//! dev keys, writes the chain config where the node reads it, and runs until interrupted.

use super::anvil::{Anvil, AnvilOptions};
use super::client::{ChainConfig, provider_for, rpc_error};
use super::deploy::deploy_devnet;
use super::encode;
use super::error::{ChainError, Result};
use alloy::primitives::U256;
use alloy::providers::Provider;
use std::path::{Path, PathBuf};
use xln_core::crypto::SignerKey;

/// Where the node finds the chain config by default.
pub const DEFAULT_CHAIN_CONFIG: &str = ".xln/chain.json";
/// The test tokens of a devnet: (name, symbol).
pub const DEVNET_TOKENS: [(&str, &str); 2] =
    [("xln Test Dollar", "TUSD"), ("xln Test Ether", "TETH")];
/// What each dev key gets of each test token: one million, 18 decimals.
pub const DEVNET_FUNDING: u128 = 1_000_000 * 10u128.pow(18);

/// A named signer key of a key file.
#[derive(Debug, Clone)]
pub struct NamedKey {
    pub name: String,
    pub key: SignerKey,
}

/// Reads a key file: one `name 0x<64 hex digits>` per line; `#` starts a comment.
pub fn parse_keys(text: &str) -> Result<Vec<NamedKey>> {
    let mut keys = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| ChainError::Config(format!("key file line {}: {why}", index + 1));
        let mut parts = line.split_whitespace();
        let (Some(name), Some(secret), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected `name 0x<secret>`"));
        };
        let bytes: [u8; 32] =
            xln_core::parse_hex(secret).map_err(|_| bad("the secret is not 32 hex bytes"))?;
        let key = SignerKey::from_bytes(&bytes).map_err(|_| bad("not a valid secp256k1 key"))?;
        keys.push(NamedKey {
            name: name.to_string(),
            key,
        });
    }
    if keys.is_empty() {
        return Err(ChainError::Config("the key file has no keys".into()));
    }
    Ok(keys)
}

pub fn load_keys(path: &Path) -> Result<Vec<NamedKey>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ChainError::Config(format!("{}: {e}", path.display())))?;
    parse_keys(&text)
}

/// The anvil binary, installing it with `scripts/install-tools.sh` when it is not found.
pub fn ensure_anvil() -> Result<PathBuf> {
    if let Ok(path) = Anvil::find_binary() {
        return Ok(path);
    }
    let script = [
        PathBuf::from("scripts/install-tools.sh"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-tools.sh"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| ChainError::Anvil("anvil not found and no scripts/install-tools.sh".into()))?;
    let status = std::process::Command::new("bash").arg(&script).status()?;
    if !status.success() {
        return Err(ChainError::Anvil(format!(
            "{} failed: {status}",
            script.display()
        )));
    }
    Anvil::find_binary()
}

/// Options of `xln devnet`.
#[derive(Debug, Clone)]
pub struct DevnetOptions {
    pub port: u16,
    pub keys: PathBuf,
    pub config_out: PathBuf,
    pub block_time: Option<u64>,
    /// More addresses to fund with gas and test tokens, besides the key file's.
    pub fund: Vec<xln_core::crypto::Address>,
}

/// A started devnet: anvil (stopped when this is dropped) and the config written for it.
#[derive(Debug)]
pub struct Devnet {
    pub anvil: Anvil,
    pub config: ChainConfig,
    pub keys: Vec<NamedKey>,
}

/// Starts anvil, deploys and funds, and writes the config.
pub async fn start(options: &DevnetOptions) -> Result<Devnet> {
    let keys = load_keys(&options.keys)?;
    let binary = ensure_anvil()?;
    let anvil = Anvil::spawn_binary(
        binary,
        AnvilOptions {
            port: options.port,
            block_time: options.block_time,
            ..AnvilOptions::default()
        },
    )?;
    let url = anvil.url();
    let deployer = &keys
        .first()
        .ok_or_else(|| ChainError::Config("the key file has no keys".into()))?
        .key;
    let provider = provider_for(&url, deployer)?;
    let fund: Vec<_> = keys
        .iter()
        .map(|k| k.key.address())
        .chain(options.fund.iter().copied())
        .map(|a| encode::address(&a))
        .collect();
    for address in &fund {
        // Gas money for keys that are not anvil's prefunded ones.
        let balance = provider
            .get_balance(*address)
            .await
            .map_err(|e| rpc_error("eth_getBalance", e))?;
        if balance.is_zero() {
            let _: () = provider
                .raw_request(
                    "anvil_setBalance".into(),
                    (*address, U256::from(10u128.pow(22))),
                )
                .await
                .map_err(|e| rpc_error("anvil_setBalance", e))?;
        }
    }
    let config = deploy_devnet(
        &url,
        deployer,
        &DEVNET_TOKENS,
        &fund,
        U256::from(DEVNET_FUNDING),
    )
    .await?;
    config.save(&options.config_out)?;
    Ok(Devnet {
        anvil,
        config,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_key_file_holds_anvils_dev_keys() {
        let text = include_str!("../../keys.example");
        let keys = parse_keys(text).unwrap();
        assert_eq!(keys.len(), 4);
        assert_eq!(keys[0].name, "alice");
        assert_eq!(
            keys[0].key.address().to_string(),
            "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
        );
    }

    #[test]
    fn bad_key_files_are_refused_with_the_line() {
        for (text, needle) in [
            ("", "no keys"),
            ("# only a comment\n", "no keys"),
            ("alice\n", "line 1"),
            ("alice 0x12 extra\n", "line 1"),
            ("\nalice 0x1234\n", "line 2: the secret is not 32 hex bytes"),
            (
                "zero 0x0000000000000000000000000000000000000000000000000000000000000000",
                "not a valid secp256k1 key",
            ),
        ] {
            let err = parse_keys(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
