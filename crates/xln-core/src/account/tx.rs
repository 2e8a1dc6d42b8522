//! Account transactions and the account state they change (PROTOCOL.md §3).

use crate::board::EntityId;
use crate::codec::{Packed, tag};
use crate::crypto::Hash;
use crate::delta::{Capacities, Delta, Overflow, Side, TokenId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A transaction inside an account frame, always read from the proposer's side: the proposer
/// pays, the proposer sets the credit it extends. New kinds (HTLCs, swaps, chain-observed
/// changes) are added as variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountTx {
    /// The proposer pays `amount` of `token` to its peer.
    DirectPayment { token: TokenId, amount: u128 },
    /// The proposer lets its peer owe it up to `amount` of `token`.
    SetCreditLimit { token: TokenId, amount: u128 },
}

/// Why a transaction was refused. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum TxError {
    #[error("amount must be above zero")]
    ZeroAmount,
    #[error("token {0} is not in this account")]
    UnknownToken(TokenId),
    #[error("payment of {amount} in token {token} exceeds the capacity {available}")]
    InsufficientCapacity {
        token: TokenId,
        amount: u128,
        available: u128,
    },
    #[error("amount out of range")]
    Overflow,
}

impl From<Overflow> for TxError {
    fn from(_: Overflow) -> Self {
        TxError::Overflow
    }
}

/// The state both sides of an account agree on: one delta per token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    pub left: EntityId,
    pub right: EntityId,
    pub deltas: BTreeMap<TokenId, Delta>,
}

impl AccountState {
    /// An empty account between two entities, in LEFT/RIGHT order whatever the argument order.
    pub fn new(a: EntityId, b: EntityId) -> Self {
        let (left, right) = if a.is_left_of(&b) { (a, b) } else { (b, a) };
        Self {
            left,
            right,
            deltas: BTreeMap::new(),
        }
    }

    pub fn side_of(&self, entity: &EntityId) -> Side {
        if entity == &self.left {
            Side::Left
        } else {
            Side::Right
        }
    }

    pub fn capacities(&self, token: TokenId, side: Side) -> Result<Capacities, Overflow> {
        self.deltas
            .get(&token)
            .map_or(Ok(Capacities::default()), |d| d.capacities(side))
    }

    /// `keccak256(abi.encodePacked(STATE_TAG, left, right, uint32 count, per token ascending:
    /// uint32 token, uint128 collateral, int128 ondelta, int128 offdelta, uint128 left limit,
    /// uint128 right limit, uint128 left hold, uint128 right hold, bytes32 extras))`: the layout
    /// the Depository recomputes from a dispute proof. `extras` stays zero until HTLCs exist.
    pub fn hash(&self) -> Hash {
        let mut packed = Packed::new();
        packed
            .bytes32(&tag("xln.account.state.v1").0)
            .bytes32(&self.left.0)
            .bytes32(&self.right.0)
            // A BTreeMap larger than u32::MAX entries cannot exist in memory here.
            .u32(u32::try_from(self.deltas.len()).unwrap_or(u32::MAX));
        for (token, d) in &self.deltas {
            packed
                .u32(*token)
                .u128(d.collateral)
                .i128(d.ondelta)
                .i128(d.offdelta)
                .u128(d.left_credit_limit)
                .u128(d.right_credit_limit)
                .u128(d.left_hold)
                .u128(d.right_hold);
        }
        packed.bytes32(&Hash::ZERO.0);
        packed.hash()
    }

    /// Applies `tx` proposed by `by`. On error nothing changes.
    pub fn apply(&mut self, tx: &AccountTx, by: Side) -> Result<(), TxError> {
        match *tx {
            AccountTx::DirectPayment { token, amount } => {
                if amount == 0 {
                    return Err(TxError::ZeroAmount);
                }
                let delta = self
                    .deltas
                    .get_mut(&token)
                    .ok_or(TxError::UnknownToken(token))?;
                let amount_signed = i128::try_from(amount).map_err(|_| TxError::Overflow)?;
                let mut after = delta.clone();
                // A payment from LEFT lowers offdelta; one from RIGHT raises it.
                after.offdelta = match by {
                    Side::Left => after.offdelta.checked_sub(amount_signed),
                    Side::Right => after.offdelta.checked_add(amount_signed),
                }
                .ok_or(TxError::Overflow)?;
                if !delta.may_become(&after)? {
                    return Err(TxError::InsufficientCapacity {
                        token,
                        amount,
                        available: delta.capacities(by)?.out_capacity,
                    });
                }
                *delta = after;
            }
            AccountTx::SetCreditLimit { token, amount } => {
                let mut after = self.deltas.get(&token).cloned().unwrap_or_default();
                match by {
                    Side::Left => after.right_credit_limit = amount,
                    Side::Right => after.left_credit_limit = amount,
                }
                // Lowering a limit below the debt is allowed (PROTOCOL.md §2); only a state
                // whose bounds cannot be computed is refused.
                after.slack()?;
                self.deltas.insert(token, after);
            }
        }
        Ok(())
    }
}
