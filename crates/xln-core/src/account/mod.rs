//! Bilateral accounts: transactions, frames and the 2-of-2 consensus between two entities.

mod frame;
mod machine;
mod settlement;
mod swap;
mod tx;

#[cfg(test)]
mod tests;

pub use frame::{
    AccountKey, AccountMessage, DisputeProof, Frame, FrameAck, FrameHeader, SignedFrame,
};
pub use machine::{
    Account, AccountError, AccountEvent, MAX_CLOCK_SKEW_MS, MAX_FRAME_TXS, MAX_J_HEIGHT_SKEW,
    MAX_SUPERSEDED_VERSIONS, PendingFrame, REFRESH_AFTER_MS, Reply, Step,
};
pub use settlement::{
    PendingSettlement, SettlementPlan, SettlementScope, SettlementState, SettlementTerms,
    TokenDiff, TokenPlan, plan_settlement,
};
pub use tx::{
    AccountState, AccountTx, Clock, FailReason, Failure, Htlc, HtlcResolution, MAX_HTLC_PAYLOAD,
    MAX_LOCKS_PER_ACCOUNT, MAX_OFFERS_PER_ACCOUNT, SwapOfferState, TxError,
};
