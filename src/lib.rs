//! The `xln` node's adapters around the pure core (`xln-core`). Today: the chain adapter.

pub mod chain;
