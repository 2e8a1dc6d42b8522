//! An entity's replicated state and the transactions its frames carry.

use super::htlc::{Origin, Payment, PaymentOrder, PaymentStatus};
use super::netting::{
    NettingAgreement, NettingExecution, NettingOrder, NettingTxError, OutgoingNetting,
    SignedNettingMessage,
};
use super::swap::{SwapLegs, SwapOrder};
use crate::account::{
    Account, AccountError, AccountEvent, AccountKey, AccountMessage, AccountTx, Clock,
    DisputeProof, Failure, Reply, SettlementPlan, SettlementScope, SettlementTerms, TokenDiff,
    TxError,
};
use crate::board::{Board, EntityId, QuorumSignature};
use crate::codec::hash_of;
use crate::collections::{MerkleMap, VecMap};
use crate::crypto::{Address, Hash};
use crate::delta::{Delta, TokenId};
use crate::onion::{HopInstruction, OnionCache};
use crate::routing::FeePolicy;
use crate::swap::{OrderBook, Trade};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A transaction of an entity frame. Every replica applies the same ones in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntityTx {
    /// Open an account with `peer`, whose board verifies its signatures.
    OpenAccount { peer: EntityId, peer_board: Board },
    /// Queue a transaction on the account with `peer`.
    Account { peer: EntityId, tx: AccountTx },
    /// A message from a peer entity about our account with it. `sender_board` lets a lazy
    /// entity open an account with us by its first message.
    AccountInput {
        message: Box<AccountMessage>,
        sender_board: Board,
    },
    /// The jurisdiction reached this block height.
    ChainBlock { height: u64 },
    /// Our reserve of `token` on chain is now `amount`.
    ChainReserve { token: TokenId, amount: u128 },
    /// On chain, our account with `peer` now holds this collateral and ondelta of `token`.
    ChainAccount {
        peer: EntityId,
        token: TokenId,
        collateral: u128,
        ondelta: i128,
    },
    /// Send a payment along a route.
    Pay(Box<PaymentOrder>),
    /// What our proposer decrypted from the onion of the incoming lock `lock_id` from `peer`
    /// (`None`: it did not decrypt).
    HtlcInstruction {
        peer: EntityId,
        lock_id: u64,
        instruction: Option<Box<HopInstruction>>,
    },
    /// Cancel our locks that passed their expiry.
    CancelExpired,
    /// Re-stamp our account frames that waited too long for an ACK.
    RefreshFrames,
    /// What we charge to forward a payment.
    SetFees(FeePolicy),
    /// An operation on the jurisdiction, sent by the node once the frame commits.
    Chain(ChainRequest),
    /// Make a swap offer on our account with the order's peer (we number it).
    PlaceSwap(SwapOrder),
    /// Release the holds of our peers' swap offers that passed their expiry.
    ExpireOffers,
    /// Propose to settle our account with `peer` on chain with `terms` (from
    /// [`plan_settlement`](crate::account::plan_settlement)); `digest` is the Depository's
    /// settlement digest of the terms, computed by the node. Unsigned: we submit the
    /// settlement ourselves once the peer signed (see `account::settlement`).
    ProposeSettlement {
        peer: EntityId,
        terms: SettlementTerms,
        digest: Hash,
    },
    /// Accept the settlement `peer` proposed, committed in our account: `digest` is the
    /// settlement digest our node computed from the pending terms (it must be the one the
    /// proposal carries), `signature` our board's quorum over it. Refused if the terms, with
    /// our other pending settlements, take more of a reserve of ours than it holds.
    AcceptSettlement {
        peer: EntityId,
        digest: Hash,
        signature: QuorumSignature,
    },
    /// The chain applied the settlement `nonce` of our account with `peer`.
    ChainSettled { peer: EntityId, nonce: u64 },
    /// `peer`'s reserve of `token` on chain is now `amount` (a settlement pays its credit debt
    /// from it).
    ChainPeerReserve {
        peer: EntityId,
        token: TokenId,
        amount: u128,
    },
    /// Propose netting `token` over the order's positions and clear our cycles of it
    /// (PROTOCOL.md §10, see `entity::netting`).
    StartNetting(Box<NettingOrder>),
    /// A netting request or answer from a peer entity, signed by its board. `sender_board`
    /// lets an entity we have no account with be checked (lazy entities only).
    NettingInput {
        message: Box<SignedNettingMessage>,
        sender_board: Board,
    },
    /// Leave out who has not answered a netting round in time; forget expired agreements.
    ExpireNetting,
    /// Whether we agree to netting cycles others propose (we do unless told otherwise).
    SetJoinsNetting(bool),
    /// Start a dispute of our account with `peer` on chain. The proof is taken from the
    /// account as this frame finds it (see [`EntityState::dispute_start`]), so that every
    /// member of a board can check the batch it co-signs against what its replica committed.
    Dispute { peer: EntityId },
}

/// An operation on the jurisdiction that the entity decided on. The node's chain adapter puts
/// the requests of one entity into one batch transaction, signed by the entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChainRequest {
    /// Move `amount` of our reserve into the collateral of our account with `peer`.
    AddCollateral {
        peer: EntityId,
        token: TokenId,
        amount: u128,
    },
    /// Move `amount` of our reserve to `to`'s reserve.
    TransferReserve {
        to: EntityId,
        token: TokenId,
        amount: u128,
    },
    /// Pay `amount` of our reserve out to the address `to`.
    Withdraw {
        token: TokenId,
        amount: u128,
        to: Address,
    },
    /// Submit the cooperative settlement we proposed in our account with `peer` and `peer`
    /// accepted: the terms, their settlement digest and `peer`'s quorum over it (ours is the
    /// batch's). Made by the account when the acceptance commits, never by an operator.
    Settle {
        peer: EntityId,
        peer_board: Board,
        nonce: u64,
        diffs: Vec<TokenDiff>,
        digest: Hash,
        peer_signature: QuorumSignature,
    },
    /// Start a dispute of our account with the start's peer. Made by [`EntityTx::Dispute`]
    /// from the committed account, never by an operator.
    StartDispute(Box<DisputeStart>),
}

/// What the chain takes to start a dispute of our account with `peer`: the newest frame the
/// peer signed (its header and the peer's quorum over its hash under `key`) and what of the
/// account state that frame commits to (the deltas, ascending by token, and the extras' hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeStart {
    pub peer: EntityId,
    pub peer_board: Board,
    pub key: AccountKey,
    pub proof: DisputeProof,
    pub deltas: VecMap<TokenId, Delta>,
    pub extras_hash: Hash,
}

/// Why an entity transaction was refused. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntityTxError {
    #[error("an account with {0} exists already")]
    AccountExists(EntityId),
    #[error("no account with {0}")]
    NoAccount(EntityId),
    #[error("an entity cannot have an account with itself")]
    SelfAccount,
    #[error("board does not hash to the entity id {0}")]
    BoardMismatch(EntityId),
    #[error("message for {0}, not for this entity")]
    NotForUs(EntityId),
    #[error("account with {peer}: {error}")]
    Account { peer: EntityId, error: AccountError },
    #[error("chain height {height} is not above the known {known}")]
    StaleChainHeight { height: u64, known: u64 },
    #[error("bad route: {0}")]
    BadRoute(&'static str),
    #[error("a payment with hashlock {0} exists already")]
    DuplicatePayment(Hash),
    #[error("no incoming lock {lock_id} from {peer} awaits an instruction")]
    NotAwaiting { peer: EntityId, lock_id: u64 },
    #[error("no lock has expired")]
    NothingExpired,
    #[error("no account frame needs re-stamping")]
    NothingToRefresh,
    #[error("a chain operation needs an amount above zero")]
    ZeroChainAmount,
    #[error("reserve of token {token} is {reserve}, less than {amount}")]
    ReserveTooLow {
        token: TokenId,
        reserve: u128,
        amount: u128,
    },
    #[error("no swap offer has expired")]
    NoOfferExpired,
    #[error("settlement with {peer}: {error}")]
    Settlement { peer: EntityId, error: TxError },
    #[error("the settlement signature is not a quorum of our board over the digest")]
    SettlementNotSigned,
    #[error(
        "the settlement {0} proposed was signed over another digest than the one of its terms: \
         not accepted"
    )]
    SettlementDigestMismatch(EntityId),
    #[error("a settlement goes to the chain once both sides of the account signed it")]
    SettleNotAgreed,
    #[error("{0} has not signed any frame of our account yet: nothing to dispute with")]
    NothingToDispute(EntityId),
    #[error(
        "a dispute starts from our committed account (a dispute transaction), not from a given proof"
    )]
    DisputeNotFromAccount,
    #[error(
        "settlement with {peer}: with our other pending settlements it takes {promised} of our \
         reserve of token {token}, which holds {reserve}: not signed"
    )]
    SettlementOverReserve {
        peer: EntityId,
        token: TokenId,
        reserve: u128,
        promised: u128,
    },
    #[error("no lock or offer ids are left on this entity")]
    IdsExhausted,
    /// Our next frame on the account would drop the transaction: it is refused now instead.
    #[error("account with {peer}: {error}")]
    AccountTxRefused { peer: EntityId, error: TxError },
    #[error("netting: {0}")]
    Netting(Box<NettingTxError>),
}

impl From<NettingTxError> for EntityTxError {
    fn from(error: NettingTxError) -> Self {
        EntityTxError::Netting(Box::new(error))
    }
}

/// What an entity did, for the console and the tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntityEvent {
    AccountOpened {
        peer: EntityId,
    },
    Account {
        peer: EntityId,
        event: AccountEvent,
    },
    PaymentSent {
        hashlock: Hash,
        receiver: EntityId,
        amount: u128,
    },
    /// Our payment succeeded (with the preimage as receipt) or failed (where and why).
    PaymentFinished {
        hashlock: Hash,
        status: PaymentStatus,
    },
    PaymentReceived {
        hashlock: Hash,
        from: EntityId,
        amount: u128,
    },
    /// A payment we forwarded settled, earning `fee`.
    Forwarded {
        from: EntityId,
        token: TokenId,
        fee: u128,
    },
    /// We refused to forward an incoming lock and cancelled it.
    ForwardRefused {
        peer: EntityId,
        failure: Failure,
    },
    LockExpired {
        peer: EntityId,
        lock_id: u64,
    },
    /// We asked the node to send this to the jurisdiction.
    ChainRequested(ChainRequest),
    /// We queued a swap offer, numbered `offer_id`, on our account with `order.peer`.
    SwapOffered {
        offer_id: u64,
        order: SwapOrder,
    },
    /// Our offer on the account with `peer` was resolved by it: `fill` of our give side went,
    /// `want_paid` of our want token came.
    SwapResolved {
        peer: EntityId,
        offer_id: u64,
        fill: u128,
        want_paid: u128,
    },
    /// Our offer on the account with `peer` was cancelled by it after expiry.
    SwapCancelled {
        peer: EntityId,
        offer_id: u64,
    },
    /// Two offers in our book matched; the resolutions are queued on both accounts.
    SwapMatched(Trade),
    /// A resolution of ours could not go into a frame (the offer was cancelled or expired
    /// first, or we could no longer pay): that leg of the match did not happen.
    SwapLegDropped {
        peer: EntityId,
        offer_id: u64,
        fill: u128,
        want_paid: u128,
        error: TxError,
    },
    /// We released the hold of `peer`'s offer that passed its expiry.
    SwapExpired {
        peer: EntityId,
        offer_id: u64,
    },
    /// We proposed netting `token` and asked the participants of our `cycles` to agree.
    NettingProposed {
        token: TokenId,
        proposal: Hash,
        cycles: Vec<Hash>,
    },
    /// We agreed to forward the loop of `cycle`, proposed by `proposer`, with no fee.
    NettingAgreed {
        proposer: EntityId,
        cycle: Hash,
        amount: u128,
    },
    /// We refused `cycle`, proposed by `proposer`.
    NettingRefused {
        proposer: EntityId,
        cycle: Hash,
        reason: String,
    },
    /// A participant of our netting refused or did not answer: we go on without it.
    NettingLeftOut {
        token: TokenId,
        participant: EntityId,
        reason: String,
    },
    /// Everyone agreed to `cycle`: its loop is on its way.
    NettingLoopStarted {
        token: TokenId,
        cycle: Hash,
        hashlock: Hash,
        amount: u128,
    },
    /// Our netting of `token` is over: the cycles cleared (with their amounts), those whose
    /// loop failed, who was left out, and why it ended early if it did.
    NettingFinished {
        token: TokenId,
        cleared: Vec<(Hash, u128)>,
        failed: Vec<(Hash, String)>,
        left_out: Vec<EntityId>,
        ended_because: Option<String>,
    },
}

/// One account of the entity and the board of its peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountEntry {
    pub account: Account,
    pub peer_board: Board,
}

/// A reply to a peer entity that the entity's signature has yet to be put on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    pub peer: EntityId,
    pub peer_board: Board,
    pub reply: Reply,
}

/// What applying transactions produced besides the new state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub outgoing: Vec<Outgoing>,
    pub events: Vec<EntityEvent>,
    /// Operations for the jurisdiction, to send once the frame commits.
    pub chain: Vec<ChainRequest>,
    /// Netting messages to peer entities, to sign and send once the frame commits.
    pub netting: Vec<OutgoingNetting>,
}

impl Outcome {
    /// The hashes the entity must sign, in order: the account frames, then the netting
    /// messages.
    pub fn digests(&self) -> Vec<Hash> {
        self.outgoing
            .iter()
            .flat_map(|o| o.reply.digests())
            .chain(self.netting.iter().map(|n| n.message.digest()))
            .collect()
    }
}

/// The state every replica of an entity holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityState {
    pub id: EntityId,
    pub board: Board,
    /// The jurisdiction its accounts' frames are bound to.
    pub domain: Hash,
    pub height: u64,
    pub timestamp: u64,
    pub j_height: u64,
    /// The hash of the last committed entity frame.
    pub prev_hash: Hash,
    /// By peer. A [`MerkleMap`]: the state hash takes its root, which costs what changed.
    pub accounts: MerkleMap<EntityId, AccountEntry>,
    pub fees: FeePolicy,
    /// Our reserves on chain, per token, as the chain follower last reported them.
    pub reserves: BTreeMap<TokenId, u128>,
    /// Our account peers' reserves, likewise (what a settlement can take of their debt).
    pub peer_reserves: BTreeMap<(EntityId, TokenId), u128>,
    /// Numbers our HTLC locks (see `htlc::allocate_side_id`).
    pub next_lock_id: u64,
    /// Payments we sent, by hashlock: those in flight and the last finished ones.
    pub payments: MerkleMap<Hash, Payment>,
    /// Finished payments' hashlocks by the number of their finish, counted up, to forget the
    /// oldest. A [`MerkleMap`] like `payments`: the state hash costs what changed, not a pass
    /// over the last [`super::KEPT_FINISHED_PAYMENTS`] hashlocks.
    pub finished_payments: MerkleMap<u64, Hash>,
    /// Why each of our locks in flight exists, by (peer, lock id).
    pub origins: BTreeMap<(EntityId, u64), Origin>,
    /// Incoming locks whose onion our proposer has yet to decrypt: their payloads.
    pub awaiting: BTreeMap<(EntityId, u64), Vec<u8>>,
    /// Incoming locks we are the receiver of and revealed: (hashlock, amount), until the
    /// reveal commits.
    pub receiving: BTreeMap<(EntityId, u64), (Hash, u128)>,
    /// Numbers our swap offers (see `htlc::allocate_side_id`).
    pub next_offer_id: u64,
    /// Our peers' open swap offers, matched as they commit (PROTOCOL.md §8).
    pub book: OrderBook,
    /// The legs of our matches in flight: the takers' resolves we hold back until the makers'
    /// legs are settled, and our resolves queued or in flight (see `entity::swap`).
    pub swap_legs: SwapLegs,
    /// Whether we agree to netting cycles others propose.
    pub joins_netting: bool,
    /// The netting cycles we agreed to forward, by cycle id, until used or expired.
    pub netting_agreements: BTreeMap<Hash, NettingAgreement>,
    /// The nettings we proposed and are carrying out, by token.
    pub netting_rounds: BTreeMap<TokenId, NettingExecution>,
    /// ECDH secrets of the onion sessions we seal to.
    #[serde(skip)]
    pub(crate) onion_cache: OnionCache,
}

/// The roots of the state's [`MerkleMap`]s (and the book's hash), which its hash commits to.
struct Roots {
    accounts: Hash,
    payments: Hash,
    finished_payments: Hash,
    book: Hash,
}

impl EntityState {
    pub fn new(id: EntityId, board: Board, domain: Hash) -> Self {
        Self {
            id,
            board,
            domain,
            height: 0,
            timestamp: 0,
            j_height: 0,
            prev_hash: Hash::ZERO,
            accounts: MerkleMap::new(),
            fees: FeePolicy::default(),
            reserves: BTreeMap::new(),
            peer_reserves: BTreeMap::new(),
            next_lock_id: 0,
            payments: MerkleMap::new(),
            finished_payments: MerkleMap::new(),
            origins: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            receiving: BTreeMap::new(),
            next_offer_id: 0,
            book: OrderBook::new(),
            swap_legs: SwapLegs::default(),
            joins_netting: true,
            netting_agreements: BTreeMap::new(),
            netting_rounds: BTreeMap::new(),
            onion_cache: OnionCache::default(),
        }
    }

    /// The commitment to the whole state that members check a proposed frame against and the
    /// node logs per input: the keccak of the state's encoding in which the accounts and the
    /// order book stand for their Merkle roots ([`MerkleMap::root`], [`OrderBook::hash`]).
    /// Those roots are cached and recomputed for what changed only, so a frame that touches a
    /// few accounts of a hub with 100,000 costs a few account encodings, not the whole state.
    pub fn hash(&self) -> Hash {
        self.commitment(Roots {
            accounts: self.accounts.root(),
            payments: self.payments.root(),
            finished_payments: self.finished_payments.root(),
            book: self.book.hash(),
        })
    }

    /// [`EntityState::hash`] computed reading no cache: it must be equal, whatever happened.
    pub fn hash_from_scratch(&self) -> Hash {
        self.commitment(Roots {
            accounts: self.accounts.root_from_scratch(),
            payments: self.payments.root_from_scratch(),
            finished_payments: self.finished_payments.root_from_scratch(),
            book: self.book.hash_from_scratch(),
        })
    }

    fn commitment(&self, roots: Roots) -> Hash {
        // Every field by name: a new field does not compile until it is committed to here.
        let EntityState {
            id,
            board,
            domain,
            height,
            timestamp,
            j_height,
            prev_hash,
            accounts: _,
            fees,
            reserves,
            peer_reserves,
            next_lock_id,
            payments: _,
            finished_payments: _,
            origins,
            awaiting,
            receiving,
            next_offer_id,
            book: _,
            swap_legs,
            joins_netting,
            netting_agreements,
            netting_rounds,
            onion_cache: _,
        } = self;
        #[derive(Serialize)]
        struct Committed<'a> {
            tag: &'static str,
            id: &'a EntityId,
            board: &'a Board,
            domain: &'a Hash,
            height: u64,
            timestamp: u64,
            j_height: u64,
            prev_hash: &'a Hash,
            accounts_root: Hash,
            fees: &'a FeePolicy,
            reserves: &'a BTreeMap<TokenId, u128>,
            peer_reserves: &'a BTreeMap<(EntityId, TokenId), u128>,
            next_lock_id: u64,
            payments_root: Hash,
            finished_payments_root: Hash,
            origins: &'a BTreeMap<(EntityId, u64), Origin>,
            awaiting: &'a BTreeMap<(EntityId, u64), Vec<u8>>,
            receiving: &'a BTreeMap<(EntityId, u64), (Hash, u128)>,
            next_offer_id: u64,
            book_hash: Hash,
            swap_legs: &'a SwapLegs,
            joins_netting: bool,
            netting_agreements: &'a BTreeMap<Hash, NettingAgreement>,
            netting_rounds: &'a BTreeMap<TokenId, NettingExecution>,
        }
        hash_of(&Committed {
            tag: "xln.entity.state.v6",
            id,
            board,
            domain,
            height: *height,
            timestamp: *timestamp,
            j_height: *j_height,
            prev_hash,
            accounts_root: roots.accounts,
            fees,
            reserves,
            peer_reserves,
            next_lock_id: *next_lock_id,
            payments_root: roots.payments,
            finished_payments_root: roots.finished_payments,
            origins,
            awaiting,
            receiving,
            next_offer_id: *next_offer_id,
            book_hash: roots.book,
            swap_legs,
            joins_netting: *joins_netting,
            netting_agreements,
            netting_rounds,
        })
    }

    fn clock(&self) -> Clock {
        Clock {
            timestamp: self.timestamp,
            j_height: self.j_height,
        }
    }

    /// Applies one transaction at the current `timestamp`. On error nothing changes.
    pub fn apply_tx(&mut self, tx: &EntityTx, outcome: &mut Outcome) -> Result<(), EntityTxError> {
        match tx {
            EntityTx::OpenAccount { peer, peer_board } => {
                let entry = self.new_account(*peer, peer_board)?;
                self.accounts.insert(*peer, entry);
                outcome
                    .events
                    .push(EntityEvent::AccountOpened { peer: *peer });
            }
            EntityTx::Account { peer, tx } => {
                let entry = self
                    .accounts
                    .get_mut(peer)
                    .ok_or(EntityTxError::NoAccount(*peer))?;
                entry.account.enqueue(tx.clone());
            }
            EntityTx::AccountInput {
                message,
                sender_board,
            } => self.receive(message, sender_board, outcome)?,
            EntityTx::ChainBlock { height } => {
                if *height <= self.j_height {
                    return Err(EntityTxError::StaleChainHeight {
                        height: *height,
                        known: self.j_height,
                    });
                }
                self.j_height = *height;
            }
            EntityTx::ChainReserve { token, amount } => {
                self.reserves.insert(*token, *amount);
            }
            EntityTx::ChainAccount {
                peer,
                token,
                collateral,
                ondelta,
            } => {
                let entry = self
                    .accounts
                    .get_mut(peer)
                    .ok_or(EntityTxError::NoAccount(*peer))?;
                if entry.account.observe_chain(*token, *collateral, *ondelta) {
                    entry.account.enqueue(AccountTx::ChainSync {
                        token: *token,
                        collateral: *collateral,
                        ondelta: *ondelta,
                    });
                }
            }
            EntityTx::Pay(order) => self.start_payment(order, outcome)?,
            EntityTx::HtlcInstruction {
                peer,
                lock_id,
                instruction,
            } => self.follow_instruction(*peer, *lock_id, instruction.as_deref(), outcome)?,
            EntityTx::CancelExpired => self.cancel_expired(outcome)?,
            EntityTx::RefreshFrames => self.refresh_frames(outcome)?,
            EntityTx::SetFees(fees) => self.fees = *fees,
            EntityTx::Chain(request) => self.request_chain(request, outcome)?,
            EntityTx::PlaceSwap(order) => self.place_swap(order, outcome)?,
            EntityTx::ExpireOffers => self.expire_offers(outcome)?,
            EntityTx::ProposeSettlement {
                peer,
                terms,
                digest,
            } => {
                let tx = AccountTx::SettlementPropose {
                    nonce: terms.nonce,
                    diffs: terms.diffs.clone(),
                    digest: *digest,
                };
                self.queue_settlement_tx(*peer, tx)?;
            }
            EntityTx::AcceptSettlement {
                peer,
                digest,
                signature,
            } => {
                let entry = self
                    .accounts
                    .get(peer)
                    .ok_or(EntityTxError::NoAccount(*peer))?;
                let pending = entry.account.state().settlement.pending.as_ref().ok_or(
                    EntityTxError::Settlement {
                        peer: *peer,
                        error: TxError::NoSettlementPending,
                    },
                )?;
                if pending.digest != *digest {
                    return Err(EntityTxError::SettlementDigestMismatch(*peer));
                }
                if self.board.verify_quorum(digest, signature).is_err() {
                    return Err(EntityTxError::SettlementNotSigned);
                }
                let side = entry.account.side();
                if pending.proposer != side {
                    self.check_settlement_reserve(peer, &pending.terms.diffs, side)?;
                }
                let tx = AccountTx::SettlementAccept {
                    signature: signature.clone(),
                };
                self.queue_settlement_tx(*peer, tx)?;
            }
            EntityTx::ChainSettled { peer, nonce } => {
                let entry = self
                    .accounts
                    .get_mut(peer)
                    .ok_or(EntityTxError::NoAccount(*peer))?;
                if entry.account.observe_settlement(*nonce) {
                    entry
                        .account
                        .enqueue(AccountTx::SettlementLanded { nonce: *nonce });
                }
            }
            EntityTx::ChainPeerReserve {
                peer,
                token,
                amount,
            } => {
                self.peer_reserves.insert((*peer, *token), *amount);
            }
            EntityTx::StartNetting(order) => self.start_netting(order, outcome)?,
            EntityTx::NettingInput {
                message,
                sender_board,
            } => self.receive_netting(message, sender_board, outcome)?,
            EntityTx::ExpireNetting => self.expire_netting(outcome)?,
            EntityTx::SetJoinsNetting(joins) => self.joins_netting = *joins,
            EntityTx::Dispute { peer } => {
                let request = ChainRequest::StartDispute(Box::new(self.dispute_start(peer)?));
                outcome.chain.push(request.clone());
                outcome.events.push(EntityEvent::ChainRequested(request));
            }
        }
        Ok(())
    }

    /// The dispute proof of our account with `peer`: the newest frame the peer signed and the
    /// committed state it is about.
    pub fn dispute_start(&self, peer: &EntityId) -> Result<DisputeStart, EntityTxError> {
        let entry = self
            .accounts
            .get(peer)
            .ok_or(EntityTxError::NoAccount(*peer))?;
        let account = &entry.account;
        // Every commit records the peer's signature over the frame it commits, so the proof
        // is of the committed state; the height check only guards that.
        let proof = account
            .proof()
            .filter(|proof| proof.header.height == account.height())
            .ok_or(EntityTxError::NothingToDispute(*peer))?;
        let state = account.state();
        Ok(DisputeStart {
            peer: *peer,
            peer_board: entry.peer_board.clone(),
            key: *account.key(),
            proof: proof.clone(),
            deltas: state.deltas.clone(),
            extras_hash: state.extras_hash(),
        })
    }

    /// What our reserve pays, per token, in the settlements of our accounts (but the one with
    /// `except`) that we proposed or signed: committed, in flight or queued. A settlement
    /// pays from the reserve as it is when it lands, so these are spoken for.
    pub fn settlement_promises(&self, except: Option<&EntityId>) -> BTreeMap<TokenId, u128> {
        let mut promised: BTreeMap<TokenId, u128> = BTreeMap::new();
        let mut add = |side, diffs: &[TokenDiff]| {
            for diff in diffs {
                let taken = diff.reserve_diff(side).min(0).unsigned_abs();
                if taken > 0 {
                    let total = promised.entry(diff.token).or_default();
                    *total = total.saturating_add(taken);
                }
            }
        };
        for (peer, entry) in &self.accounts {
            if except == Some(peer) {
                continue;
            }
            let account = &entry.account;
            let side = account.side();
            // The state after our frame in flight (our proposal or acceptance in it applied).
            let state = account.pending().map_or(account.state(), |p| &p.state);
            let mut accepting = false;
            for tx in account.mempool() {
                match tx {
                    AccountTx::SettlementPropose { diffs, .. } => add(side, diffs),
                    AccountTx::SettlementAccept { .. } => accepting = true,
                    _ => {}
                }
            }
            if let Some(pending) = &state.settlement.pending
                && (pending.proposer == side || pending.acceptor_signature.is_some() || accepting)
            {
                add(side, &pending.terms.diffs);
            }
        }
        promised
    }

    /// The plan of a settlement of our account with `peer` in `scope`, with the reserves we
    /// know: the peer's as last reported, and of ours what our other pending settlements
    /// leave ([`settlement_promises`](Self::settlement_promises)).
    pub fn plan_settlement(
        &self,
        peer: &EntityId,
        scope: SettlementScope,
    ) -> Result<SettlementPlan, EntityTxError> {
        let account = &self
            .accounts
            .get(peer)
            .ok_or(EntityTxError::NoAccount(*peer))?
            .account;
        let side = account.side();
        let promised = self.settlement_promises(Some(peer));
        crate::account::plan_settlement(account.state(), scope, |of, token| {
            if of == side {
                let reserve = self.reserves.get(&token).copied().unwrap_or(0);
                reserve.saturating_sub(promised.get(&token).copied().unwrap_or(0))
            } else {
                let reserve = self.peer_reserves.get(&(*peer, token));
                reserve.copied().unwrap_or(0)
            }
        })
        .map_err(|error| EntityTxError::Settlement { peer: *peer, error })
    }

    /// Refuses `diffs` (of the account with `peer`, where we are `side`) if what they take of
    /// a reserve of ours, with what our other settlements promised, is more than it holds.
    pub fn check_settlement_reserve(
        &self,
        peer: &EntityId,
        diffs: &[TokenDiff],
        side: crate::delta::Side,
    ) -> Result<(), EntityTxError> {
        let promised = self.settlement_promises(Some(peer));
        for diff in diffs {
            let taken = diff.reserve_diff(side).min(0).unsigned_abs();
            if taken == 0 {
                continue;
            }
            let total = promised
                .get(&diff.token)
                .copied()
                .unwrap_or(0)
                .saturating_add(taken);
            let reserve = self.reserves.get(&diff.token).copied().unwrap_or(0);
            if total > reserve {
                return Err(EntityTxError::SettlementOverReserve {
                    peer: *peer,
                    token: diff.token,
                    reserve,
                    promised: total,
                });
            }
        }
        Ok(())
    }

    /// Queues our settlement transaction `tx` on the account with `peer` after checking that
    /// it applies after what is in flight and queued (an operator's request gets its error at
    /// once, and nothing changes).
    fn queue_settlement_tx(&mut self, peer: EntityId, tx: AccountTx) -> Result<(), EntityTxError> {
        let clock = self.clock();
        let entry = self
            .accounts
            .get_mut(&peer)
            .ok_or(EntityTxError::NoAccount(peer))?;
        entry
            .account
            .check_own(&tx, clock)
            .map_err(|error| EntityTxError::Settlement { peer, error })?;
        entry.account.enqueue(tx);
        Ok(())
    }

    /// Once the peer's frame that accepts our proposed settlement commits, we hold its
    /// signature: the settlement goes to the chain in our batch, with the peer's signature
    /// inside. Only the proposer submits.
    fn follow_settlement(&self, peer: EntityId, event: &AccountEvent, outcome: &mut Outcome) {
        let AccountEvent::Committed { txs, .. } = event else {
            return;
        };
        if !txs
            .iter()
            .any(|tx| matches!(tx, AccountTx::SettlementAccept { .. }))
        {
            return;
        }
        let Some(entry) = self.accounts.get(&peer) else {
            return;
        };
        let account = &entry.account;
        let Some(pending) = account.state().settlement.pending.as_ref() else {
            return;
        };
        let Some(peer_signature) = pending.submittable_by(account.side()) else {
            return;
        };
        let request = ChainRequest::Settle {
            peer,
            peer_board: entry.peer_board.clone(),
            nonce: pending.terms.nonce,
            diffs: pending.terms.diffs.clone(),
            digest: pending.digest,
            peer_signature: peer_signature.clone(),
        };
        outcome.chain.push(request.clone());
        outcome.events.push(EntityEvent::ChainRequested(request));
    }

    fn new_account(
        &self,
        peer: EntityId,
        peer_board: &Board,
    ) -> Result<AccountEntry, EntityTxError> {
        if self.accounts.contains_key(&peer) {
            return Err(EntityTxError::AccountExists(peer));
        }
        let account = Account::new(self.domain, self.id, peer).map_err(|error| match error {
            AccountError::SelfAccount => EntityTxError::SelfAccount,
            error => EntityTxError::Account { peer, error },
        })?;
        Ok(AccountEntry {
            account,
            peer_board: peer_board.clone(),
        })
    }

    fn receive(
        &mut self,
        message: &AccountMessage,
        sender_board: &Board,
        outcome: &mut Outcome,
    ) -> Result<(), EntityTxError> {
        if message.to != self.id {
            return Err(EntityTxError::NotForUs(message.to));
        }
        let peer = message.from;
        let clock = self.clock();
        let opened = !self.accounts.contains_key(&peer);
        let mut entry = match self.accounts.get(&peer) {
            Some(entry) => entry.clone(),
            // First contact from a lazy entity: its board must hash to its id.
            None if sender_board.lazy_entity_id() == peer => {
                self.new_account(peer, sender_board)?
            }
            None => return Err(EntityTxError::BoardMismatch(peer)),
        };
        let step = entry
            .account
            .receive(message, &entry.peer_board, clock)
            .map_err(|error| EntityTxError::Account { peer, error })?;
        if opened {
            outcome.events.push(EntityEvent::AccountOpened { peer });
        }
        let peer_board = entry.peer_board.clone();
        self.accounts.insert(peer, entry);
        self.push_step(peer, &peer_board, step, outcome);
        Ok(())
    }

    fn push_step(
        &mut self,
        peer: EntityId,
        peer_board: &Board,
        step: crate::account::Step,
        outcome: &mut Outcome,
    ) {
        for event in step.events {
            self.follow_htlcs(peer, &event, outcome);
            self.follow_swaps(peer, &event, outcome);
            self.follow_settlement(peer, &event, outcome);
            outcome.events.push(EntityEvent::Account { peer, event });
        }
        if !step.reply.is_empty() {
            outcome.outgoing.push(Outgoing {
                peer,
                peer_board: peer_board.clone(),
                reply: step.reply,
            });
        }
    }

    /// Checks a chain operation against what we know (the reserve as last reported, the
    /// account) and queues it. The chain checks again when it applies it.
    fn request_chain(
        &mut self,
        request: &ChainRequest,
        outcome: &mut Outcome,
    ) -> Result<(), EntityTxError> {
        let (token, amount) = match request {
            ChainRequest::AddCollateral {
                peer,
                token,
                amount,
            } => {
                let entry = self
                    .accounts
                    .get(peer)
                    .ok_or(EntityTxError::NoAccount(*peer))?;
                // A pending settlement empties the collateral it was computed from.
                if entry.account.state().settlement.pending.is_some() {
                    return Err(EntityTxError::Settlement {
                        peer: *peer,
                        error: TxError::SettlementPending,
                    });
                }
                (*token, *amount)
            }
            ChainRequest::TransferReserve { token, amount, .. }
            | ChainRequest::Withdraw { token, amount, .. } => (*token, *amount),
            ChainRequest::Settle { .. } => return Err(EntityTxError::SettleNotAgreed),
            ChainRequest::StartDispute(_) => return Err(EntityTxError::DisputeNotFromAccount),
        };
        if amount == 0 {
            return Err(EntityTxError::ZeroChainAmount);
        }
        let reserve = self.reserves.get(&token).copied().unwrap_or(0);
        if amount > reserve {
            return Err(EntityTxError::ReserveTooLow {
                token,
                reserve,
                amount,
            });
        }
        outcome.chain.push(request.clone());
        outcome
            .events
            .push(EntityEvent::ChainRequested(request.clone()));
        Ok(())
    }

    /// Whether any of our account frames waits too long for an ACK.
    pub fn needs_refresh(&self, clock: Clock) -> bool {
        self.accounts
            .values()
            .any(|entry| entry.account.needs_refresh(clock))
    }

    fn refresh_frames(&mut self, outcome: &mut Outcome) -> Result<(), EntityTxError> {
        let clock = self.clock();
        if !self.needs_refresh(clock) {
            return Err(EntityTxError::NothingToRefresh);
        }
        let due: Vec<EntityId> = self
            .accounts
            .iter()
            .filter(|(_, entry)| entry.account.needs_refresh(clock))
            .map(|(peer, _)| *peer)
            .collect();
        let mut steps = Vec::new();
        for peer in due {
            if let Some(entry) = self.accounts.get_mut(&peer) {
                steps.push((peer, entry.peer_board.clone(), entry.account.refresh(clock)));
            }
        }
        for (peer, board, step) in steps {
            self.push_step(peer, &board, step, outcome);
        }
        Ok(())
    }

    /// Proposes account frames for every account with queued transactions: the last step of
    /// every entity frame. A dropped lock can queue a cancellation on another account, so
    /// this goes on until no account has anything new to propose.
    pub fn flush_accounts(&mut self, outcome: &mut Outcome) {
        let clock = self.clock();
        loop {
            let ready: Vec<EntityId> = self
                .accounts
                .iter()
                .filter(|(_, entry)| {
                    entry.account.pending().is_none() && !entry.account.mempool().is_empty()
                })
                .map(|(peer, _)| *peer)
                .collect();
            let mut steps = Vec::new();
            for peer in ready {
                if let Some(entry) = self.accounts.get_mut(&peer) {
                    steps.push((peer, entry.peer_board.clone(), entry.account.flush(clock)));
                }
            }
            if steps.is_empty() {
                return;
            }
            for (peer, board, step) in steps {
                self.push_step(peer, &board, step, outcome);
            }
        }
    }
}
