//! Maps for large and for tiny replicated state: [`MerkleMap`] keeps a hash of its content up
//! to date at the cost of what changed (an entity's accounts, its order book), [`VecMap`] holds
//! a handful of entries in one exact allocation (an account's tokens). Both are encoded like a
//! `BTreeMap` of the same entries.

pub mod merkle_map;
pub mod vec_map;

pub use merkle_map::{CHUNK, ChunkKey, MerkleMap, ends_chunk_at};
pub use vec_map::VecMap;
