//! The sans-IO protocol core of xln.
//!
//! Pure state machines: they take inputs (time, randomness and chain events among them) and
//! return outputs as data. Nothing here reads a clock, a random source, a file or a socket;
//! `clippy.toml` beside this crate forbids it. See `PROTOCOL.md` for the rules implemented.

pub mod account;
pub mod board;
mod bytes;
pub mod codec;
pub mod collections;
pub mod crypto;
pub mod delta;
pub mod entity;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod gossip;
pub mod netting;
pub mod onion;
pub mod routing;
pub mod runtime;
pub mod swap;

pub use bytes::{HexError, parse_hex};
