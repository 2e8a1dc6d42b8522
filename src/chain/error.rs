//! The chain adapter's errors. Each says what went wrong in words a console can show; none of
//! them leaves off-chain state changed (the adapter never touches it).

use alloy::primitives::{Address, B256};

/// Why a chain operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("invalid RPC URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(
        "cannot reach the chain RPC{}: {reason}",
        .url.as_deref().map(|u| format!(" at {u}")).unwrap_or_default()
    )]
    Unreachable { url: Option<String>, reason: String },
    #[error("wrong chain: configured chain id {expected}, the RPC at {url} serves chain {actual}")]
    WrongChainId {
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error("no {name} contract at {address} (no code there): wrong address or wrong chain")]
    MissingContract {
        name: &'static str,
        address: Address,
    },
    #[error("{call} reverted: {reason}")]
    Reverted { call: &'static str, reason: String },
    #[error("transaction {tx} of {call} was mined but failed (status 0)")]
    TxFailed { call: &'static str, tx: B256 },
    #[error("{call} failed: {reason}")]
    Rpc { call: &'static str, reason: String },
    #[error("chain value out of range: {0}")]
    OutOfRange(&'static str),
    #[error("the proof does not match the state it is taken with: {0}")]
    BadProof(&'static str),
    #[error("deployment failed: {0}")]
    Deploy(String),
    #[error("chain reorganized below the confirmation depth at block {block}: {reason}")]
    DeepReorg { block: u64, reason: String },
    #[error("anvil: {0}")]
    Anvil(String),
    #[error("config: {0}")]
    Config(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl ChainError {
    /// Whether trying again later may help (the node is unreachable or answered with a
    /// transport error), as opposed to a refusal that will not change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ChainError::Unreachable { .. } | ChainError::Rpc { .. }
        )
    }
}

pub type Result<T, E = ChainError> = std::result::Result<T, E>;
