//! The `xln` node's adapters around the pure core (`xln-core`): the chain adapter (alloy) and
//! the store (redb).

pub mod chain;
pub mod store;
