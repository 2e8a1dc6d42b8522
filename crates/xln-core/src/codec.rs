//! Canonical encodings.
//!
//! Two kinds, each with one job:
//! - [`Packed`]: fixed-width big-endian fields one after another, the layout Solidity's
//!   `abi.encodePacked` gives for the same field types. Used for every hash that the contracts
//!   recompute (board hash, account state hash, frame hash), so both sides agree byte for byte.
//! - [`encode`]/[`decode`]: postcard over serde, for messages and snapshots, and for hashing
//!   data the chain treats as opaque (a frame's transactions).

use crate::crypto::{Hash, keccak256};
use serde::{Serialize, de::DeserializeOwned};

/// Builder of a packed byte string to hash.
#[derive(Default)]
pub struct Packed(Vec<u8>);

impl Packed {
    pub fn new() -> Self {
        Self(Vec::with_capacity(256))
    }
    pub fn bytes32(&mut self, value: &[u8; 32]) -> &mut Self {
        self.0.extend_from_slice(value);
        self
    }
    pub fn bytes33(&mut self, value: &[u8; 33]) -> &mut Self {
        self.0.extend_from_slice(value);
        self
    }
    pub fn address(&mut self, value: &[u8; 20]) -> &mut Self {
        self.0.extend_from_slice(value);
        self
    }
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    pub fn u128(&mut self, value: u128) -> &mut Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    /// Two's complement, as Solidity packs `int128`.
    pub fn i128(&mut self, value: i128) -> &mut Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.0.push(u8::from(value));
        self
    }
    pub fn hash(&self) -> Hash {
        keccak256(&self.0)
    }
}

/// A domain tag: the keccak of a versioned name, so that a signature over one kind of digest
/// can never be taken for another.
pub fn tag(name: &str) -> Hash {
    keccak256(name.as_bytes())
}

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {what}: {reason}")]
pub struct DecodeError {
    pub what: &'static str,
    pub reason: String,
}

/// The canonical binary encoding of a value.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // postcard only fails on a writer error or on sequences of unknown length; a Vec writer
    // and derived Serialize impls have neither.
    postcard::to_stdvec(value).unwrap_or_else(|e| unreachable!("postcard to Vec: {e}"))
}

/// Decodes a whole byte string; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| DecodeError {
        what,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(DecodeError {
            what,
            reason: format!("{} trailing bytes", rest.len()),
        });
    }
    Ok(value)
}

/// keccak of the canonical encoding.
pub fn hash_of<T: Serialize>(value: &T) -> Hash {
    keccak256(&encode(value))
}
