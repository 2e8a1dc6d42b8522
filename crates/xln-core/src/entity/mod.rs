//! Entities: boards of signers that run a replicated state holding their accounts.

mod consensus;
mod state;

#[cfg(test)]
mod tests;

pub use consensus::{
    ConsensusError, EntityFrame, EntityMessage, EntityReplica, MAX_ENTITY_CLOCK_SKEW_MS,
    MAX_ENTITY_FRAME_TXS, ReplicaOutput,
};
pub use state::{
    AccountEntry, EntityEvent, EntityState, EntityTx, EntityTxError, Outcome, Outgoing,
};
