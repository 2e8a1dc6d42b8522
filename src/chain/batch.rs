//! The batch builder: what an entity wants done on chain (its chain outputs) gathered into one
//! `Depository.Batch`, signed once by the entity's quorum and sent as one transaction.

use super::bindings::Depository;
use super::encode::{self, TokenDiff, abi_diffs, entity_b256, order};
use alloy::primitives::{Address, U256};
use xln_core::account::SettlementTerms;
use xln_core::board::{Board, EntityId, QuorumSignature};
use xln_core::crypto::Hash;
use xln_core::delta::TokenId;
use xln_core::entity::ChainRequest;

/// One on-chain operation of an entity, as its node decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainOp {
    /// A cooperative settlement with the counterparty's signature.
    Settle(SignedSettlement),
    /// Reserve → collateral of the account with `counterparty`.
    AddCollateral {
        counterparty: EntityId,
        token: TokenId,
        amount: u128,
    },
    TransferReserve {
        to: EntityId,
        token: TokenId,
        amount: U256,
    },
    Withdraw {
        token: TokenId,
        amount: U256,
        to: Address,
    },
    StartDispute(Box<Depository::DisputeProof>),
    CounterDispute(Box<Depository::DisputeProof>),
}

/// Gathers operations in the order the contract applies them (settlements, collateral,
/// transfers, withdrawals, dispute starts, dispute counters).
impl From<&ChainRequest> for ChainOp {
    /// What the core asked for, as a batch operation.
    fn from(request: &ChainRequest) -> Self {
        match *request {
            ChainRequest::AddCollateral {
                peer,
                token,
                amount,
            } => ChainOp::AddCollateral {
                counterparty: peer,
                token,
                amount,
            },
            ChainRequest::TransferReserve { to, token, amount } => ChainOp::TransferReserve {
                to,
                token,
                amount: U256::from(amount),
            },
            ChainRequest::Withdraw { token, amount, to } => ChainOp::Withdraw {
                token,
                amount: U256::from(amount),
                to: Address::from(to.0),
            },
            ChainRequest::Settle {
                peer,
                ref peer_board,
                nonce: _,
                ref diffs,
                digest,
                ref peer_signature,
            } => ChainOp::Settle(SignedSettlement {
                counterparty: peer,
                diffs: diffs.clone(),
                counterparty_board: peer_board.clone(),
                counterparty_sigs: peer_signature.clone(),
                digest,
            }),
            ChainRequest::StartDispute(ref start) => {
                ChainOp::StartDispute(Box::new(encode::start_proof(start)))
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct BatchBuilder {
    batch: Depository::Batch,
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_ops(ops: impl IntoIterator<Item = ChainOp>) -> Self {
        let mut builder = Self::new();
        for op in ops {
            builder.push(op);
        }
        builder
    }

    pub fn push(&mut self, op: ChainOp) -> &mut Self {
        let b = &mut self.batch;
        match op {
            ChainOp::Settle(s) => b.settlements.push(s.to_abi()),
            ChainOp::AddCollateral {
                counterparty,
                token,
                amount,
            } => b.collateralMoves.push(Depository::CollateralMove {
                counterparty: entity_b256(&counterparty),
                tokenId: token,
                amount: U256::from(amount),
            }),
            ChainOp::TransferReserve { to, token, amount } => {
                b.reserveTransfers.push(Depository::ReserveTransfer {
                    to: entity_b256(&to),
                    tokenId: token,
                    amount,
                })
            }
            ChainOp::Withdraw { token, amount, to } => b.withdrawals.push(Depository::Withdrawal {
                tokenId: token,
                amount,
                to,
            }),
            ChainOp::StartDispute(p) => b.disputeStarts.push(*p),
            ChainOp::CounterDispute(p) => b.disputeCounters.push(*p),
        }
        self
    }

    pub fn len(&self) -> usize {
        let b = &self.batch;
        b.settlements.len()
            + b.collateralMoves.len()
            + b.reserveTransfers.len()
            + b.withdrawals.len()
            + b.disputeStarts.len()
            + b.disputeCounters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn build(self) -> Depository::Batch {
        self.batch
    }
}

/// A settlement both sides agreed on, at the account's settlement nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub left: EntityId,
    pub right: EntityId,
    pub nonce: U256,
    pub diffs: Vec<TokenDiff>,
}

impl Settlement {
    pub fn new(a: EntityId, b: EntityId, nonce: U256, diffs: Vec<TokenDiff>) -> Self {
        let (left, right) = order(a, b);
        Self {
            left,
            right,
            nonce,
            diffs,
        }
    }

    /// The settlement the two sides of the account of `a` and `b` agreed on in the core.
    pub fn of_terms(a: EntityId, b: EntityId, terms: &SettlementTerms) -> Self {
        Self::new(a, b, U256::from(terms.nonce), terms.diffs.clone())
    }

    /// What both entities sign (bound to the Depository's `domain`).
    pub fn digest(&self, domain: &Hash) -> Hash {
        encode::settlement_digest(
            domain,
            &self.left,
            &self.right,
            self.nonce,
            &abi_diffs(&self.diffs),
        )
    }

    /// The settlement as submitted by the other side of `counterparty`, carrying
    /// `counterparty`'s quorum over the digest.
    pub fn signed_by(
        &self,
        domain: &Hash,
        counterparty: EntityId,
        counterparty_board: Board,
        counterparty_sigs: QuorumSignature,
    ) -> SignedSettlement {
        SignedSettlement {
            counterparty,
            diffs: self.diffs.clone(),
            counterparty_board,
            counterparty_sigs,
            digest: self.digest(domain),
        }
    }
}

/// A settlement with the counterparty's signature, ready for a batch or `settle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedSettlement {
    pub counterparty: EntityId,
    pub diffs: Vec<TokenDiff>,
    pub counterparty_board: Board,
    pub counterparty_sigs: QuorumSignature,
    /// The digest the signatures are over.
    pub digest: Hash,
}

impl SignedSettlement {
    pub fn to_abi(&self) -> Depository::Settlement {
        Depository::Settlement {
            counterparty: entity_b256(&self.counterparty),
            diffs: abi_diffs(&self.diffs),
            counterpartyBoard: encode::encode_board(&self.counterparty_board),
            counterpartySigs: encode::chain_signatures(
                &self.counterparty_board,
                &self.digest,
                &self.counterparty_sigs,
            ),
        }
    }
}

/// The Depository's batch digest of `requests` (as one batch, in this order) for `entity` at
/// its batch `nonce`: what the board signs for `processBatch`.
pub fn requests_digest(
    domain: &Hash,
    entity: &EntityId,
    nonce: u64,
    requests: &[ChainRequest],
) -> Hash {
    let batch = BatchBuilder::from_ops(requests.iter().map(ChainOp::from)).build();
    encode::batch_digest(domain, entity, U256::from(nonce), &batch)
}

/// The contracts' digests, for the core's board members to check what they co-sign
/// (`xln_core::entity::ChainDigests`).
#[derive(Debug, Clone, Copy, Default)]
pub struct AbiDigests;

impl xln_core::entity::ChainDigests for AbiDigests {
    fn batch(
        &self,
        domain: &Hash,
        entity: &EntityId,
        nonce: u64,
        requests: &[ChainRequest],
    ) -> Hash {
        requests_digest(domain, entity, nonce, requests)
    }

    fn settlement(
        &self,
        domain: &Hash,
        a: &EntityId,
        b: &EntityId,
        terms: &SettlementTerms,
    ) -> Hash {
        Settlement::of_terms(*a, *b, terms).digest(domain)
    }
}
