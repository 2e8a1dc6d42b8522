//! The `xln` node and its adapters around the pure core (`xln-core`): the control API, the
//! chain adapter (alloy), the net adapter (websocket sessions) and the store (redb).

pub mod api;
pub mod chain;
pub mod config;
pub mod net;
pub mod store;
