//! Account transactions and the account state they change (PROTOCOL.md §3).

use super::settlement::{self, PendingSettlement, SettlementState, TokenDiff};
use crate::board::{EntityId, QuorumSignature};
use crate::codec::hash_of;
use crate::codec::{Packed, tag};
use crate::collections::VecMap;
use crate::crypto::{Hash, keccak256};
use crate::delta::{Capacities, Delta, Overflow, Side, TokenId};
use crate::swap::TimeInForce;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The largest forwarding payload an HTLC may carry, in bytes.
pub const MAX_HTLC_PAYLOAD: usize = 4096;
/// The most HTLCs one account may have in flight: bounds what a peer can make us hold.
pub const MAX_LOCKS_PER_ACCOUNT: usize = 10_000;
/// The most swap offers one account may have open, for the same reason.
pub const MAX_OFFERS_PER_ACCOUNT: usize = 10_000;

/// A transaction inside an account frame, always read from the proposer's side: the proposer
/// pays, the proposer sets the credit it extends. New kinds (HTLCs, swaps, chain-observed
/// changes) are added as variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountTx {
    /// The proposer pays `amount` of `token` to its peer.
    DirectPayment { token: TokenId, amount: u128 },
    /// The proposer lets its peer owe it up to `amount` of `token`.
    SetCreditLimit { token: TokenId, amount: u128 },
    /// The proposer puts `amount` on hold for its peer, payable to whoever reveals the preimage
    /// of `hashlock` before the expiry (PROTOCOL.md §7). `payload` carries the peer's
    /// forwarding instructions, encrypted to it. LEFT numbers its locks even, RIGHT odd, so
    /// the two sides never pick the same id.
    HtlcLock {
        lock_id: u64,
        hashlock: Hash,
        token: TokenId,
        amount: u128,
        expires_at_ms: u64,
        reveal_before_j_height: u64,
        payload: Vec<u8>,
    },
    /// Settles (with the secret) or cancels a lock.
    HtlcResolve {
        lock_id: u64,
        resolution: HtlcResolution,
    },
    /// Records what the jurisdiction says of this account's token after a deposit, a
    /// settlement or a dispute: its collateral and ondelta. Either side proposes it once its
    /// chain follower has seen the change; the other side accepts it only if its own follower
    /// has seen the same (see `Account::observe_chain`).
    ChainSync {
        token: TokenId,
        collateral: u128,
        ondelta: i128,
    },
    /// The proposer (the maker) offers `give_amount` of `give_token` for `want_amount` of
    /// `want_token`, or more of it (PROTOCOL.md §8). The give side goes on the maker's hold
    /// until filled, cancelled or expired. LEFT numbers its offers even, RIGHT odd.
    SwapOffer {
        offer_id: u64,
        give_token: TokenId,
        give_amount: u128,
        want_token: TokenId,
        want_amount: u128,
        expires_at_ms: u64,
        time_in_force: TimeInForce,
    },
    /// The proposer (the maker's counterparty) takes `fill` of the offer's give side and pays
    /// the maker `want_paid` of its want token, atomically; `want_paid / fill` must be at least
    /// `want_amount / give_amount` (exactly: any rounding is the maker's gain). A fill-or-kill
    /// offer is filled whole or with `fill = 0`; after any resolve of an immediate-or-cancel or
    /// fill-or-kill offer its remainder is released, so `fill = 0` cancels it untouched.
    SwapResolve {
        offer_id: u64,
        /// The offer's terms ([`SwapOfferState::terms`]) as the resolver saw them: an id its
        /// maker cancelled and offered again with other terms is refused, not filled.
        terms: Hash,
        fill: u128,
        want_paid: u128,
    },
    /// Releases what is left of an offer: by its maker at any time, by the counterparty once
    /// the offer has expired.
    SwapCancel { offer_id: u64 },
    /// The proposer asks to settle the account on chain with these diffs at the account's
    /// settlement nonce (see [`settlement`](super::settlement)); `digest` is the Depository's
    /// settlement digest of the terms. Unsigned: a signature over terms that might never
    /// commit must not leave the node. From here until the settlement lands the account takes
    /// no payment, lock or offer.
    SettlementPropose {
        nonce: u64,
        diffs: Vec<TokenDiff>,
        digest: Hash,
    },
    /// The other side signs the pending (committed) settlement's digest: the proposer can now
    /// submit it.
    SettlementAccept { signature: QuorumSignature },
    /// The settlement with this nonce was applied on chain. Either side proposes it once its
    /// chain follower saw the `Settled` event; the other side accepts it only if its own
    /// follower saw it too. The collateral and ondelta it moved arrive as `ChainSync`s.
    SettlementLanded { nonce: u64 },
}

impl AccountTx {
    /// Whether the transaction moves Δ or puts something on hold: what a pending settlement,
    /// computed from Δ, does not allow (resolving locks and offers cannot happen then: a
    /// settlement is only proposed when none is open).
    pub fn moves_balance(&self) -> bool {
        match self {
            AccountTx::DirectPayment { .. }
            | AccountTx::HtlcLock { .. }
            | AccountTx::HtlcResolve { .. }
            | AccountTx::SwapOffer { .. }
            | AccountTx::SwapResolve { .. } => true,
            AccountTx::SetCreditLimit { .. }
            | AccountTx::ChainSync { .. }
            | AccountTx::SwapCancel { .. }
            | AccountTx::SettlementPropose { .. }
            | AccountTx::SettlementAccept { .. }
            | AccountTx::SettlementLanded { .. } => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HtlcResolution {
    /// The preimage of the hashlock: the lock's amount moves to its receiver.
    Secret([u8; 32]),
    /// The hold is released: by the receiver at any time, by the sender after expiry. The
    /// failure travels back to the payment's sender.
    Cancel(Failure),
}

/// Where and why a payment failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub hop: EntityId,
    pub reason: FailReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailReason {
    /// The lock reached its expiry unresolved.
    Expired,
    /// The hop could not lock the amount on its next account.
    NoCapacity,
    /// The hop has no account with the next hop named in the onion.
    UnknownNextHop,
    /// The hop's onion layer did not decrypt or decode.
    BadOnion,
    /// The amount left for the hop is below its fee.
    FeeTooLow,
    /// The next lock does not expire early enough before the incoming one.
    ExpiryTooSoon,
    /// The receiver was promised another amount than the lock carries.
    WrongAmount,
    /// The receiver's preimage does not match the hashlock.
    WrongPreimage,
    /// A fee-free netting forward for which the hop holds no agreement naming this cycle,
    /// amount, hashlock, previous and next hop (or the agreement expired).
    NettingNotAgreed,
    /// A netting forward the hop agreed to, but its debts with the previous or the next hop
    /// no longer cover the amount (they shrank since, or other locks in flight would take them).
    NettingDebtShort,
}

/// An HTLC in flight in an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Htlc {
    /// The side that locked (and pays when the secret is revealed).
    pub sender: Side,
    pub hashlock: Hash,
    pub token: TokenId,
    pub amount: u128,
    pub expires_at_ms: u64,
    pub reveal_before_j_height: u64,
}

impl Htlc {
    pub fn expired(&self, clock: Clock) -> bool {
        clock.timestamp >= self.expires_at_ms || clock.j_height >= self.reveal_before_j_height
    }
}

/// The time a frame is stamped with; transactions are checked against it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    /// Milliseconds.
    pub timestamp: u64,
    /// The jurisdiction's block height.
    pub j_height: u64,
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
    #[error("payload of {0} bytes is larger than {MAX_HTLC_PAYLOAD}")]
    PayloadTooLarge(usize),
    #[error("lock {0} belongs to the other side's numbering (LEFT even, RIGHT odd)")]
    LockIdOfOtherSide(u64),
    #[error("the account has {MAX_LOCKS_PER_ACCOUNT} locks in flight already")]
    TooManyLocks,
    #[error("lock {0} exists already")]
    DuplicateLock(u64),
    #[error("no lock {0}")]
    UnknownLock(u64),
    #[error("lock expiry must lie after the frame's time and chain height")]
    ExpiryInPast,
    #[error("the secret does not match the hashlock of lock {0}")]
    WrongSecret(u64),
    #[error("lock {0} has expired")]
    LockExpired(u64),
    #[error("only the receiver of lock {0} may do this before it expires")]
    NotExpired(u64),
    #[error("only the receiver of lock {0} can reveal its secret")]
    NotReceiver(u64),
    #[error("token {0}: the chain as we see it says otherwise")]
    ChainMismatch(TokenId),
    #[error("an offer must give one token for another, not token {0} for itself")]
    SameToken(TokenId),
    #[error("offer {0} belongs to the other side's numbering (LEFT even, RIGHT odd)")]
    OfferIdOfOtherSide(u64),
    #[error("the account has {MAX_OFFERS_PER_ACCOUNT} offers open already")]
    TooManyOffers,
    #[error("offer {0} exists already")]
    DuplicateOffer(u64),
    #[error("no offer {0}")]
    UnknownOffer(u64),
    #[error("offer expiry must lie after the frame's time")]
    OfferExpiryInPast,
    #[error("offer {0} has expired")]
    OfferExpired(u64),
    #[error("only the maker of offer {0} may cancel it before it expires")]
    OfferNotExpired(u64),
    #[error("only the counterparty of the maker of offer {0} can resolve it")]
    NotCounterparty(u64),
    #[error("fill of {fill} exceeds the {remaining} left of offer {offer_id}")]
    FillExceedsOffer {
        offer_id: u64,
        fill: u128,
        remaining: u128,
    },
    #[error("offer {offer_id} is fill-or-kill: fill {fill} must be all of {remaining} or none")]
    PartialFillOrKill {
        offer_id: u64,
        fill: u128,
        remaining: u128,
    },
    #[error("paying {want_paid} for {fill} is below the limit price of offer {offer_id}")]
    BelowLimitPrice {
        offer_id: u64,
        fill: u128,
        want_paid: u128,
    },
    #[error("offer {0}: nothing may be paid for a fill of zero")]
    PaidWithoutFill(u64),
    #[error(
        "a settlement of this account is proposed and not on chain yet: no payment, lock or \
         offer until it lands"
    )]
    SettlementPending,
    #[error("no settlement of this account is pending")]
    NoSettlementPending,
    #[error("locks or swap offers are open in this account: settle once they are resolved")]
    HoldsOpen,
    #[error("nothing to settle: no collateral, and no credit debt a reserve can pay")]
    NothingToSettle,
    #[error(
        "settlement nonce {nonce} is stale: the account's next settlement on chain is {expected}"
    )]
    StaleSettlement { nonce: u64, expected: u64 },
    #[error("settlement tokens must be ascending and distinct")]
    SettlementTokensNotAscending,
    #[error("token {0}: the settlement does not pay out what the account says each side owns")]
    SettlementMismatch(TokenId),
    #[error("the settlement signature does not verify against the signer's board")]
    BadSettlementSignature,
    #[error("the pending settlement is the proposer's own or is accepted already")]
    NotForAcceptance,
    #[error("settlement {0} is not seen on chain by our follower")]
    SettlementNotOnChain(u64),
    #[error("offer {0} is not the offer the resolve names (its terms changed)")]
    OfferTermsChanged(u64),
}

impl From<Overflow> for TxError {
    fn from(_: Overflow) -> Self {
        TxError::Overflow
    }
}

/// A swap offer open in an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapOfferState {
    /// The side that offered; its hold carries `remaining` of `give_token`.
    pub maker: Side,
    pub give_token: TokenId,
    pub give_amount: u128,
    pub want_token: TokenId,
    pub want_amount: u128,
    /// What is left of the give side (`give_amount` minus what was filled).
    pub remaining: u128,
    pub expires_at_ms: u64,
    pub time_in_force: TimeInForce,
}

impl SwapOfferState {
    pub fn expired(&self, clock: Clock) -> bool {
        clock.timestamp >= self.expires_at_ms
    }

    /// What the offer is, apart from how much of it is left: what a resolve names.
    pub fn terms(&self) -> Hash {
        hash_of(&(
            "xln.swap.offer.terms.v1",
            self.maker,
            self.give_token,
            self.give_amount,
            self.want_token,
            self.want_amount,
            self.expires_at_ms,
            self.time_in_force,
        ))
    }
}

/// The state both sides of an account agree on: one delta per token, the locks in flight and
/// the swap offers open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    pub left: EntityId,
    pub right: EntityId,
    /// One entry per token, in a [`VecMap`]: most accounts have one token.
    pub deltas: VecMap<TokenId, Delta>,
    pub locks: BTreeMap<u64, Htlc>,
    pub offers: BTreeMap<u64, SwapOfferState>,
    /// The settlement nonce on chain and the settlement in progress.
    pub settlement: SettlementState,
}

impl AccountState {
    /// An empty account between two entities, in LEFT/RIGHT order whatever the argument order.
    pub fn new(a: EntityId, b: EntityId) -> Self {
        let (left, right) = if a.is_left_of(&b) { (a, b) } else { (b, a) };
        Self {
            left,
            right,
            deltas: VecMap::new(),
            locks: BTreeMap::new(),
            offers: BTreeMap::new(),
            settlement: SettlementState::default(),
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
    /// the Depository recomputes from a dispute proof; `extras` is [`AccountState::extras_hash`].
    pub fn hash(&self) -> Hash {
        let mut packed = Packed::new();
        packed
            .bytes32(&tag("xln.account.state.v1").0)
            .bytes32(&self.left.0)
            .bytes32(&self.right.0)
            // A map larger than u32::MAX entries cannot exist in memory here.
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
        packed.bytes32(&self.extras_hash().0);
        packed.hash()
    }

    /// What the state holds besides the deltas, as the dispute proof's `extrasHash`: zero when
    /// no lock is in flight, no offer open and no settlement ever recorded or pending; the hash
    /// of the locks when only locks are; of (locks, offers) when an offer is open; and of
    /// (locks, offers, settlement) once the account has settlement bookkeeping.
    pub fn extras_hash(&self) -> Hash {
        if !self.settlement.is_default() {
            return hash_of(&(&self.locks, &self.offers, &self.settlement));
        }
        match (self.locks.is_empty(), self.offers.is_empty()) {
            (true, true) => Hash::ZERO,
            (false, true) => hash_of(&self.locks),
            (_, false) => hash_of(&(&self.locks, &self.offers)),
        }
    }

    /// Applies `tx` proposed by `by` in a frame stamped `clock`. On error nothing changes.
    pub fn apply(&mut self, tx: &AccountTx, by: Side, clock: Clock) -> Result<(), TxError> {
        if self.settlement.pending.is_some() && tx.moves_balance() {
            return Err(TxError::SettlementPending);
        }
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
            AccountTx::HtlcLock {
                lock_id,
                hashlock,
                token,
                amount,
                expires_at_ms,
                reveal_before_j_height,
                ref payload,
            } => {
                if amount == 0 {
                    return Err(TxError::ZeroAmount);
                }
                if payload.len() > MAX_HTLC_PAYLOAD {
                    return Err(TxError::PayloadTooLarge(payload.len()));
                }
                if (lock_id % 2 == 0) != (by == Side::Left) {
                    return Err(TxError::LockIdOfOtherSide(lock_id));
                }
                if self.locks.contains_key(&lock_id) {
                    return Err(TxError::DuplicateLock(lock_id));
                }
                if self.locks.len() >= MAX_LOCKS_PER_ACCOUNT {
                    return Err(TxError::TooManyLocks);
                }
                let lock = Htlc {
                    sender: by,
                    hashlock,
                    token,
                    amount,
                    expires_at_ms,
                    reveal_before_j_height,
                };
                if lock.expired(clock) {
                    return Err(TxError::ExpiryInPast);
                }
                let delta = self
                    .deltas
                    .get_mut(&token)
                    .ok_or(TxError::UnknownToken(token))?;
                let mut after = delta.clone();
                let hold = match by {
                    Side::Left => &mut after.left_hold,
                    Side::Right => &mut after.right_hold,
                };
                *hold = hold.checked_add(amount).ok_or(TxError::Overflow)?;
                if !delta.may_become(&after)? {
                    return Err(TxError::InsufficientCapacity {
                        token,
                        amount,
                        available: delta.capacities(by)?.out_capacity,
                    });
                }
                *delta = after;
                self.locks.insert(lock_id, lock);
            }
            AccountTx::ChainSync {
                token,
                collateral,
                ondelta,
            } => self.sync_with_chain(token, collateral, ondelta)?,
            AccountTx::HtlcResolve {
                lock_id,
                ref resolution,
            } => {
                let lock = self
                    .locks
                    .get(&lock_id)
                    .ok_or(TxError::UnknownLock(lock_id))?;
                let by_receiver = by != lock.sender;
                let pays = match resolution {
                    HtlcResolution::Secret(secret) => {
                        if !by_receiver {
                            return Err(TxError::NotReceiver(lock_id));
                        }
                        if keccak256(secret) != lock.hashlock {
                            return Err(TxError::WrongSecret(lock_id));
                        }
                        if lock.expired(clock) {
                            return Err(TxError::LockExpired(lock_id));
                        }
                        true
                    }
                    HtlcResolution::Cancel(_) => {
                        if !by_receiver && !lock.expired(clock) {
                            return Err(TxError::NotExpired(lock_id));
                        }
                        false
                    }
                };
                let delta = self
                    .deltas
                    .get_mut(&lock.token)
                    .ok_or(TxError::UnknownToken(lock.token))?;
                let mut after = delta.clone();
                let amount = lock.amount;
                let hold = match lock.sender {
                    Side::Left => &mut after.left_hold,
                    Side::Right => &mut after.right_hold,
                };
                *hold = hold.checked_sub(amount).ok_or(TxError::Overflow)?;
                if pays {
                    let signed = i128::try_from(amount).map_err(|_| TxError::Overflow)?;
                    after.offdelta = match lock.sender {
                        Side::Left => after.offdelta.checked_sub(signed),
                        Side::Right => after.offdelta.checked_add(signed),
                    }
                    .ok_or(TxError::Overflow)?;
                }
                *delta = after;
                self.locks.remove(&lock_id);
            }
            AccountTx::SwapOffer {
                offer_id,
                give_token,
                give_amount,
                want_token,
                want_amount,
                expires_at_ms,
                time_in_force,
            } => self.offer_swap(
                offer_id,
                SwapOfferState {
                    maker: by,
                    give_token,
                    give_amount,
                    want_token,
                    want_amount,
                    remaining: give_amount,
                    expires_at_ms,
                    time_in_force,
                },
                clock,
            )?,
            AccountTx::SwapResolve {
                offer_id,
                terms,
                fill,
                want_paid,
            } => self.resolve_swap(offer_id, terms, fill, want_paid, by, clock)?,
            AccountTx::SwapCancel { offer_id } => self.cancel_swap(offer_id, by, clock)?,
            AccountTx::SettlementPropose {
                nonce,
                ref diffs,
                digest,
            } => {
                let terms = settlement::SettlementTerms {
                    nonce,
                    diffs: diffs.clone(),
                };
                settlement::check_terms(self, &terms)?;
                self.settlement.pending = Some(PendingSettlement {
                    proposer: by,
                    terms,
                    digest,
                    acceptor_signature: None,
                });
            }
            AccountTx::SettlementAccept { ref signature } => {
                let pending = self
                    .settlement
                    .pending
                    .as_mut()
                    .ok_or(TxError::NoSettlementPending)?;
                if pending.proposer == by || pending.acceptor_signature.is_some() {
                    return Err(TxError::NotForAcceptance);
                }
                pending.acceptor_signature = Some(signature.clone());
            }
            AccountTx::SettlementLanded { nonce } => {
                if nonce != self.settlement.nonce {
                    return Err(TxError::StaleSettlement {
                        nonce,
                        expected: self.settlement.nonce,
                    });
                }
                self.settlement.nonce = nonce.checked_add(1).ok_or(TxError::Overflow)?;
                if self
                    .settlement
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.terms.nonce == nonce)
                {
                    self.settlement.pending = None;
                }
            }
        }
        Ok(())
    }

    /// Sets a token's on-chain part. What the chain says is so; RCPAN is not checked here
    /// (both sides signed the settlement that led to it).
    fn sync_with_chain(
        &mut self,
        token: TokenId,
        collateral: u128,
        ondelta: i128,
    ) -> Result<(), TxError> {
        let mut after = self.deltas.get(&token).cloned().unwrap_or_default();
        after.collateral = collateral;
        after.ondelta = ondelta;
        after.slack()?;
        self.deltas.insert(token, after);
        Ok(())
    }

    /// The sum of all holds: zero when no lock is in flight and no offer open.
    pub fn total_holds(&self) -> u128 {
        self.deltas
            .values()
            .map(|d| d.left_hold.saturating_add(d.right_hold))
            .fold(0, u128::saturating_add)
    }
}
