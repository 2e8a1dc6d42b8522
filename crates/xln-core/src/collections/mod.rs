//! Maps for replicated state: [`VecMap`] holds a handful of entries in one exact allocation
//! (an account's tokens), encoded like a `BTreeMap` of the same entries.

pub mod vec_map;

pub use vec_map::VecMap;
