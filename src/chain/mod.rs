//! The chain adapter (ARCHITECTURE.md): contract bindings, deployment, batch submission and
//! the event follower. It turns the core's chain outputs into signed transactions and chain
//! events into core inputs; it holds no off-chain state of its own, so a failure here leaves
//! that state untouched.

pub mod anvil;
pub mod batch;
pub mod bindings;
pub mod client;
pub mod deploy;
pub mod devnet;
pub mod encode;
pub mod error;
pub mod follower;

pub use anvil::{Anvil, AnvilOptions};
pub use batch::{BatchBuilder, ChainOp, Settlement, SignedSettlement};
pub use bindings::{Depository, EntityProvider, TestToken};
pub use client::{AccountInfo, ChainConfig, DisputeInfo, Jurisdiction, TokenConfig, TxOutcome};
pub use deploy::{Deployment, deploy, deploy_devnet};
pub use encode::TokenDiff;
pub use error::ChainError;
pub use follower::{ChainEvent, ConfirmedRange, Follower, FollowerConfig, FollowerStatus, JEvent};
