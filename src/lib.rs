//! The `xln` node and its adapters around the pure core (`xln-core`): the control API, the
//! configuration, the node (writer task, control socket), the net adapter (websocket
//! sessions), the store (redb) and the chain adapter (alloy).

pub mod amount;
pub mod api;
pub mod chain;
pub mod config;
pub mod demo;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod net;
pub mod node;
pub mod store;
pub mod tui;
