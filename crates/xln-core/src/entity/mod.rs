//! Entities: boards of signers that run a replicated state holding their accounts.

mod consensus;
mod htlc;
mod netting;
mod state;
mod swap;

#[cfg(test)]
mod tests;

pub use consensus::{
    ChainDigests, CommittedFrame, ConsensusError, EntityFrame, EntityMessage, EntityReplica,
    KEPT_CHAIN_REQUESTS, KEPT_COMMITS, MAX_ENTITY_CLOCK_SKEW_MS, MAX_ENTITY_FRAME_TXS,
    MAX_SNAPSHOT_BYTES, MAX_SYNC_REPLY_BYTES, ReplicaOutput, SYNC_RETRY_MS,
};
pub use htlc::{
    FINAL_EXPIRY_BLOCKS, FINAL_EXPIRY_MS, HOP_EXPIRY_MARGIN_BLOCKS, HOP_EXPIRY_MARGIN_MS,
    KEPT_FINISHED_PAYMENTS, MAX_ROUTE_HOPS, Origin, Payment, PaymentOrder, PaymentStatus, RouteHop,
};
pub use netting::{
    CycleAnswer, CycleExecution, CycleRequest, CycleStatus, MAX_NETTING_POSITIONS,
    NETTING_ANSWER_MS, NETTING_LOOP_MS, NettingAgreement, NettingExecution, NettingMessage,
    NettingOrder, NettingTxError, OutgoingNetting, Refusal, SignedNettingMessage, Verdict,
    cycle_id,
};
pub use state::{
    AccountEntry, ChainRequest, DisputeStart, EntityEvent, EntityState, EntityTx, EntityTxError,
    Outcome, Outgoing,
};
pub use swap::{HeldTake, OurLeg, SWAP_EXPIRY_MARGIN_MS, SwapLegs, SwapOrder};
