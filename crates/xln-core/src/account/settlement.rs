//! Cooperative settlement (PROTOCOL.md §11) as the two sides of an account agree on it.
//!
//! **What "settle" means.** A settlement has one of two scopes ([`SettlementScope`]):
//! - *The account*: for every token, pay out on chain what the account says each side owns:
//!   the collateral returns to the two reserves, split by Δ (LEFT gets `clamp(Δ, 0, C)`, RIGHT
//!   the rest), and credit debt beyond the collateral is paid from the debtor's reserve as far
//!   as that reserve goes. With the debt paid in full the account ends flat (collateral 0,
//!   Δ 0); what a short reserve could not pay stays in the account as credit debt.
//! - *One token's credit debt* (what netting settles on chain): only the debt beyond the
//!   collateral is paid, from the debtor's reserve as far as it goes; the collateral stays.
//!
//! Either way ondelta moves by minus what LEFT received, so that each side's total (reserve +
//! account position) is unchanged. The terms tell the scopes apart: a settlement that empties
//! the account moves collateral (in every token that has some), one of debt moves none.
//!
//! **Sign conventions** (the Depository's `_settle`): `left_diff` and `right_diff` are added
//! to the reserves, `collateral_diff` to the collateral and `ondelta_diff` to ondelta, with
//! `left_diff + right_diff + collateral_diff == 0`. Δ is LEFT's position in the account, so
//! `ondelta_diff == -left_diff` keeps LEFT's total; RIGHT's position is `C − Δ`, and
//! `right_diff = −collateral_diff − left_diff` keeps RIGHT's.
//!
//! **Agreement.** Only a signature over terms the account has committed to ever leaves a node:
//! on chain a settlement signature stays good until the account's settlement nonce moves, so
//! one over terms that never committed (a proposal that lost a frame collision and was then
//! dropped) would let the peer settle on terms the account no longer says.
//! - The proposer sends the terms (the account's settlement nonce and the diffs) and their
//!   settlement digest, *unsigned* (`SettlementPropose`). Once the frame commits, the account
//!   is frozen: it takes no payment, lock or offer until the chain's `Settled` event is
//!   recorded (`SettlementLanded`), so the terms, computed from Δ, stay what the account says.
//! - The acceptor, whose node sees the proposal only once it committed in its own account
//!   (the peer's frame commits on our side when we sign it), signs the digest
//!   (`SettlementAccept`).
//! - The proposer, once it holds that signature, submits the settlement in its own batch (the
//!   batch signature stands for the proposer): the core emits `ChainRequest::Settle` for the
//!   proposer's entity. The acceptor has nothing to submit, and no signature of the proposer
//!   over the settlement exists. A proposer that never submits leaves the account paused;
//!   the acceptor's way out is a dispute.
//!
//! The digest is the Depository's `settlementDigest` (ABI encoding, domain separated): the node
//! computes it with the chain adapter and passes it in; the core only compares digests and
//! checks the acceptor's signature. There is no safe way to withdraw a proposal short of it
//! landing: the acceptor's signature may be on its way when the proposer would withdraw.
//!
//! **Reserves.** A settlement that pays credit debt takes it from the debtor's reserve, and
//! the chain reverts it (it stays pending) if the reserve is short when it lands. An entity
//! therefore counts what it already promised in its other pending settlements
//! (`EntityState::settlement_promises`): a plan pays from what is left of our reserve, and the
//! acceptor refuses to sign terms that, with those promises, take more than its reserve.

use super::tx::{AccountState, TxError};
use crate::board::QuorumSignature;
use crate::crypto::Hash;
use crate::delta::{Delta, Side, TokenId};
use serde::{Deserialize, Serialize};

/// One token's change in a cooperative settlement, from LEFT's side (the Depository's
/// `TokenDiff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TokenDiff {
    pub token: TokenId,
    pub left_diff: i128,
    pub right_diff: i128,
    pub collateral_diff: i128,
    pub ondelta_diff: i128,
}

impl TokenDiff {
    /// Whether the diff moves nothing.
    pub fn is_zero(&self) -> bool {
        self.left_diff == 0
            && self.right_diff == 0
            && self.collateral_diff == 0
            && self.ondelta_diff == 0
    }

    /// What it adds to `side`'s reserve (negative: what it takes).
    pub fn reserve_diff(&self, side: Side) -> i128 {
        match side {
            Side::Left => self.left_diff,
            Side::Right => self.right_diff,
        }
    }
}

/// What both sides sign: the diffs, at the account's settlement nonce on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementTerms {
    pub nonce: u64,
    /// Ascending by token, one per token.
    pub diffs: Vec<TokenDiff>,
}

/// A settlement proposed and perhaps accepted, not yet seen on chain. The proposer's
/// signature is never here: the proposer submits the settlement itself (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSettlement {
    pub proposer: Side,
    pub terms: SettlementTerms,
    /// The settlement digest of `terms`, as the proposer's node computed it; the acceptor's
    /// node computes it again before its side signs.
    pub digest: Hash,
    /// The acceptor's quorum over `digest`, signed once the proposal had committed.
    pub acceptor_signature: Option<QuorumSignature>,
}

impl PendingSettlement {
    /// The acceptor's signature, for `side` to submit the settlement with: only the proposer
    /// submits, once the acceptor signed.
    pub fn submittable_by(&self, side: Side) -> Option<&QuorumSignature> {
        (side == self.proposer)
            .then_some(self.acceptor_signature.as_ref())
            .flatten()
    }
}

/// The account's settlement bookkeeping, part of the state both sides sign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementState {
    /// The account's next settlement nonce on chain (settlements recorded so far).
    pub nonce: u64,
    pub pending: Option<PendingSettlement>,
}

impl SettlementState {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// One token of a settlement plan: its diff and what happens to its credit debt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPlan {
    pub diff: TokenDiff,
    /// The side that owes credit beyond the collateral, if any.
    pub debtor: Option<Side>,
    /// What it owes.
    pub debt: u128,
    /// What of it the settlement pays from the debtor's reserve.
    pub paid: u128,
}

impl TokenPlan {
    /// Debt the settlement leaves in the account (the debtor's reserve was short).
    pub fn unpaid(&self) -> u128 {
        self.debt.saturating_sub(self.paid)
    }
}

/// The settlement of a whole account, computed from its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementPlan {
    pub terms: SettlementTerms,
    pub tokens: Vec<TokenPlan>,
}

/// Who owes credit beyond the collateral in `delta`, and how much: RIGHT owes `Δ − C` when
/// `Δ > C`, LEFT owes `−Δ` when `Δ < 0`.
fn credit_debt(delta: &Delta) -> Result<(Option<Side>, u128), TxError> {
    let total = delta.total()?;
    let collateral = i128::try_from(delta.collateral).map_err(|_| TxError::Overflow)?;
    Ok(if total > collateral {
        (Some(Side::Right), (total - collateral).unsigned_abs())
    } else if total < 0 {
        (Some(Side::Left), total.unsigned_abs())
    } else {
        (None, 0)
    })
}

/// What a settlement pays out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlementScope {
    /// Every token: the collateral, split by Δ, and the credit debt.
    Account,
    /// The credit debt of one token; the collateral stays in the account.
    Debt(TokenId),
}

/// The diff that pays `paid` of one token's credit debt from the debtor's reserve
/// (`paid <= debt`) and, if `release_collateral`, its collateral split by Δ. The one place the
/// settlement rule is written.
fn token_diff(
    token: TokenId,
    delta: &Delta,
    paid: u128,
    release_collateral: bool,
) -> Result<TokenDiff, TxError> {
    let total = delta.total()?;
    let collateral = match release_collateral {
        true => i128::try_from(delta.collateral).map_err(|_| TxError::Overflow)?,
        false => 0,
    };
    let paid = i128::try_from(paid).map_err(|_| TxError::Overflow)?;
    let left_share = total.clamp(0, collateral);
    let right_share = collateral - left_share;
    let (left_diff, right_diff) = match credit_debt(delta)?.0 {
        Some(Side::Right) => (left_share.checked_add(paid), right_share.checked_sub(paid)),
        Some(Side::Left) => (left_share.checked_sub(paid), right_share.checked_add(paid)),
        None => (Some(left_share), Some(right_share)),
    };
    let left_diff = left_diff.ok_or(TxError::Overflow)?;
    let right_diff = right_diff.ok_or(TxError::Overflow)?;
    Ok(TokenDiff {
        token,
        left_diff,
        right_diff,
        collateral_diff: -collateral,
        ondelta_diff: left_diff.checked_neg().ok_or(TxError::Overflow)?,
    })
}

/// The settlement of `state` at its settlement nonce, in `scope`: every token (or the one)
/// with collateral to release or with credit debt its debtor's reserve can pay
/// (`reserve(side, token)`, as far as it goes). Refused while locks or offers are open (their
/// holds would move Δ after the terms) and when there is nothing to move.
pub fn plan_settlement(
    state: &AccountState,
    scope: SettlementScope,
    reserve: impl Fn(Side, TokenId) -> u128,
) -> Result<SettlementPlan, TxError> {
    check_settleable(state)?;
    let mut tokens = Vec::new();
    for (token, delta) in &state.deltas {
        let release_collateral = match scope {
            SettlementScope::Account => true,
            SettlementScope::Debt(only) if only == *token => false,
            SettlementScope::Debt(_) => continue,
        };
        let (debtor, debt) = credit_debt(delta)?;
        let paid = debtor.map_or(0, |side| debt.min(reserve(side, *token)));
        let diff = token_diff(*token, delta, paid, release_collateral)?;
        if !diff.is_zero() {
            tokens.push(TokenPlan {
                diff,
                debtor,
                debt,
                paid,
            });
        }
    }
    if tokens.is_empty() {
        return Err(TxError::NothingToSettle);
    }
    Ok(SettlementPlan {
        terms: SettlementTerms {
            nonce: state.settlement.nonce,
            diffs: tokens.iter().map(|t| t.diff).collect(),
        },
        tokens,
    })
}

/// No settlement in progress, no lock or offer open.
fn check_settleable(state: &AccountState) -> Result<(), TxError> {
    if state.settlement.pending.is_some() {
        return Err(TxError::SettlementPending);
    }
    if !state.locks.is_empty() || !state.offers.is_empty() || state.total_holds() != 0 {
        return Err(TxError::HoldsOpen);
    }
    Ok(())
}

/// Checks proposed terms against the state: the next nonce, and for each token exactly what
/// [`plan_settlement`] would give for some payment `0 <= paid <= debt` of its credit debt
/// (the proposer chose `paid` from the reserve it saw; the chain refuses what a reserve
/// cannot pay). Terms that move collateral settle the account: every token with collateral
/// must be in them, emptied. Terms that move none pay credit debt only.
pub(super) fn check_terms(state: &AccountState, terms: &SettlementTerms) -> Result<(), TxError> {
    check_settleable(state)?;
    if terms.nonce != state.settlement.nonce {
        return Err(TxError::StaleSettlement {
            nonce: terms.nonce,
            expected: state.settlement.nonce,
        });
    }
    if terms.diffs.is_empty() {
        return Err(TxError::NothingToSettle);
    }
    let releases_collateral = terms.diffs.iter().any(|d| d.collateral_diff != 0);
    let mut previous: Option<TokenId> = None;
    for diff in &terms.diffs {
        if previous.is_some_and(|p| p >= diff.token) {
            return Err(TxError::SettlementTokensNotAscending);
        }
        previous = Some(diff.token);
        let delta = state
            .deltas
            .get(&diff.token)
            .ok_or(TxError::UnknownToken(diff.token))?;
        let (debtor, debt) = credit_debt(delta)?;
        let released = match releases_collateral {
            true => i128::try_from(delta.collateral).map_err(|_| TxError::Overflow)?,
            false => 0,
        };
        // What the diff says the debtor pays, read back from its reserve change.
        let paid = match debtor {
            Some(Side::Right) => diff.left_diff.checked_sub(released),
            Some(Side::Left) => diff.left_diff.checked_neg(),
            None => Some(0),
        }
        .ok_or(TxError::Overflow)?;
        let paid = u128::try_from(paid).map_err(|_| TxError::SettlementMismatch(diff.token))?;
        if paid > debt || token_diff(diff.token, delta, paid, releases_collateral)? != *diff {
            return Err(TxError::SettlementMismatch(diff.token));
        }
        if diff.is_zero() {
            return Err(TxError::SettlementMismatch(diff.token));
        }
    }
    let missing = state
        .deltas
        .iter()
        .find(|(token, delta)| {
            releases_collateral
                && delta.collateral > 0
                && !terms.diffs.iter().any(|d| d.token == **token)
        })
        .map(|(token, _)| *token);
    match missing {
        Some(token) => Err(TxError::SettlementMismatch(token)),
        None => Ok(()),
    }
}
