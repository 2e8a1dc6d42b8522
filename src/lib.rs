//! The `xln` node and its adapters around the pure core (`xln-core`): the control API, the
//! chain adapter (alloy) and the store (redb).

pub mod api;
pub mod chain;
pub mod config;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod store;
