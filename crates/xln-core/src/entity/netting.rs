//! Netting executed off chain (PROTOCOL.md §10): a cycle of debts is cleared by one atomic
//! circular payment, after every participant agreed to it.
//!
//! - **Agreement.** The proposer ([`EntityTx::StartNetting`]) verifies the positions it was
//!   given, proposes ([`crate::netting::propose`]) and sends each participant of every cycle it
//!   is on a [`CycleRequest`]: the proposal, the evidence, which cycle, and the hashlock its
//!   loop will carry (the preimage comes from the order's secret and the cycle id, and stays
//!   with the proposer). The participant checks it against its own accounts
//!   ([`crate::netting::verify_proposal`]: nobody's net position moves, every account it
//!   touches exists, every debt is as the latest state it signed), then checks that its two
//!   debts on the cycle still cover the amount *now*: what it owes the hop before it and what
//!   the hop after it owes it, beyond collateral, less whatever locks and holds in flight would
//!   pay them down, less what its other live agreements already use of them. A debt is agreed
//!   away once; an agreement to a later proposal of the same proposer for the same token
//!   replaces that proposer's earlier ones (it moved on to another round). It answers, signed by
//!   its board, with an agreement or a refusal and its reason, and records an agreement
//!   ([`NettingAgreement`]) in its replicated state, with an expiry and the hashlock, so a
//!   multi-signer board agrees by its normal consensus.
//! - **The loop.** Once every participant of every cycle agreed, the proposer pays itself
//!   around each cycle: an HTLC whose onion tells each hop to forward the whole amount for
//!   that cycle ([`HopInstruction::NettingForward`]). A hop forwards with no fee only if it
//!   holds an agreement naming that cycle, amount, previous and next hop and the lock's
//!   hashlock ([`FailReason::NettingNotAgreed`] otherwise: another lock cannot use the
//!   agreement up), and only if its debts still cover the amount with every other lock in
//!   flight settled ([`FailReason::NettingDebtShort`] otherwise: debts that shrank since it
//!   agreed are never turned round). A refused forward cancels back like any other and leaves
//!   the agreement; a forward uses it up. The proposer's preimage settles the whole loop:
//!   every debt on the cycle drops by the amount, no net moves.
//! - **Refusal and silence.** A participant who refuses, or has not answered when the round's
//!   deadline passes ([`EntityTx::ExpireNetting`], a proposer duty), is left out: the proposer
//!   proposes again without it ([`crate::netting::PositionSet::without`]) and asks the rest.
//!
//! On-chain settlement of what is left after the cycles (the proposal's transfers) is not
//! executed here.
//!
//! [`EntityTx::StartNetting`]: super::EntityTx::StartNetting
//! [`EntityTx::ExpireNetting`]: super::EntityTx::ExpireNetting
//! [`HopInstruction::NettingForward`]: crate::onion::HopInstruction::NettingForward
//! [`FailReason::NettingNotAgreed`]: crate::account::FailReason::NettingNotAgreed
//! [`FailReason::NettingDebtShort`]: crate::account::FailReason::NettingDebtShort

use super::htlc::{
    FINAL_EXPIRY_MS, HOP_EXPIRY_MARGIN_MS, LockedHop, MAX_ROUTE_HOPS, PaymentStatus,
};
use super::state::{EntityEvent, EntityState, EntityTxError, Outcome};
use crate::account::{Clock, FailReason, Htlc};
use crate::board::{Board, EntityId, QuorumError, QuorumSignature};
use crate::codec::hash_of;
use crate::crypto::{Hash, PublicKey, keccak256};
use crate::delta::{Side, TokenId};
use crate::netting::{
    NettingCycle, NettingError, NettingProposal, ParticipantView, PositionSet, SignedPosition,
    propose, verify_proposal,
};
use crate::onion::Preimage;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How long the proposer waits for the answers of a round.
pub const NETTING_ANSWER_MS: u64 = 30_000;
/// How long an agreement outlives the round's deadline: long enough for the longest loop to
/// reach every hop.
pub const NETTING_LOOP_MS: u64 = FINAL_EXPIRY_MS + MAX_ROUTE_HOPS as u64 * HOP_EXPIRY_MARGIN_MS;
/// Most positions a request or an order may carry: bounds what a peer can make us verify.
pub const MAX_NETTING_POSITIONS: usize = 4_096;

/// What the operator asks of a proposer: net `token` over these positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NettingOrder {
    pub token: TokenId,
    /// The positions to net (ours and those others brought), each signed by the contributor's
    /// counterparty.
    pub positions: Vec<SignedPosition>,
    /// The boards of the entities the positions name (lazy entities: checked against the id).
    pub boards: Vec<Board>,
    /// The randomness of the loops' preimages and onion sessions.
    pub secret: Preimage,
    /// The key our proposer opens onion layers with: we are the last hop of our loops.
    pub onion_key: PublicKey,
}

/// The proposer asks one participant to agree to one cycle of a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleRequest {
    pub proposer: EntityId,
    pub participant: EntityId,
    pub proposal: NettingProposal,
    /// Which of the proposal's cycles.
    pub cycle: u32,
    /// The positions the proposal relies on.
    pub positions: Vec<SignedPosition>,
    /// The boards that signed them.
    pub boards: Vec<Board>,
    /// Until when the agreement holds.
    pub expires_at_ms: u64,
    /// The hashlock the cycle's loop will carry: only a lock with it may use the agreement.
    /// (The preimage stays with the proposer until the loop comes back to it.)
    pub hashlock: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Agree,
    Refuse { reason: String },
}

/// A participant's answer to a [`CycleRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleAnswer {
    pub participant: EntityId,
    pub proposer: EntityId,
    pub cycle: Hash,
    pub verdict: Verdict,
}

/// What entities exchange about netting. It goes out signed by the sender's board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NettingMessage {
    Request(Box<CycleRequest>),
    Answer(CycleAnswer),
}

impl NettingMessage {
    pub fn from(&self) -> EntityId {
        match self {
            NettingMessage::Request(request) => request.proposer,
            NettingMessage::Answer(answer) => answer.participant,
        }
    }

    pub fn to(&self) -> EntityId {
        match self {
            NettingMessage::Request(request) => request.participant,
            NettingMessage::Answer(answer) => answer.proposer,
        }
    }

    /// What the sender's board signs.
    pub fn digest(&self) -> Hash {
        hash_of(&("xln.netting.message.v1", self))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedNettingMessage {
    pub message: NettingMessage,
    pub signature: QuorumSignature,
}

/// A netting message the entity's signature has yet to be put on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingNetting {
    pub peer_board: Board,
    pub message: NettingMessage,
}

/// The id of cycle `index` of `proposal`: what participants agree to and hops check.
pub fn cycle_id(proposal: &NettingProposal, index: usize) -> Option<Hash> {
    let cycle = proposal.cycles.get(index)?;
    Some(cycle_id_of(&proposal.id(), index, cycle))
}

fn cycle_id_of(proposal_id: &Hash, index: usize, cycle: &NettingCycle) -> Hash {
    hash_of(&("xln.netting.cycle.v1", proposal_id, index as u64, cycle))
}

/// The preimage of the loop of `cycle`, from the order's secret: the proposer knows its
/// hashlock before it asks anyone, and reveals the preimage only when the loop is back.
fn loop_preimage(secret: &Preimage, cycle: &Hash) -> Preimage {
    Preimage(hash_of(&("xln.netting.preimage.v1", &secret.0, cycle)).0)
}

/// For `me` on `cycle`: who pays it on the loop (its creditor) and whom it pays (its debtor).
fn neighbours(cycle: &NettingCycle, me: &EntityId) -> Option<(EntityId, EntityId)> {
    let n = cycle.participants.len();
    let at = cycle.participants.iter().position(|p| p == me)?;
    Some((
        cycle.participants[(at + 1) % n],
        cycle.participants[(at + n - 1) % n],
    ))
}

/// Whether an agreement to `proposal` of `proposer` for `token` replaces `agreement`: the
/// same proposer and token, another proposal.
fn replaced_by(
    agreement: &NettingAgreement,
    proposer: &EntityId,
    token: TokenId,
    proposal: &Hash,
) -> bool {
    agreement.proposer == *proposer && agreement.token == token && agreement.proposal != *proposal
}

/// A participant's agreement to forward, once and with no fee, the loop of one cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NettingAgreement {
    pub proposer: EntityId,
    /// The proposal the cycle is of: an agreement to a later proposal of the same proposer
    /// for the same token replaces it (the proposer has moved on to another round).
    pub proposal: Hash,
    pub token: TokenId,
    pub amount: u128,
    /// Who locks to us on the loop: our creditor on the cycle.
    pub from: EntityId,
    /// Whom we lock to: our debtor on the cycle.
    pub to: EntityId,
    pub expires_at_ms: u64,
    /// The only hashlock the loop may carry (from the request).
    pub hashlock: Hash,
}

/// Which way a debt beyond collateral runs between us and a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    /// We owe the peer: the loop's sender before us (the peer pays it down).
    ByUs,
    /// The peer owes us: the next hop of the loop (we pay it down).
    ToUs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CycleStatus {
    /// Waiting for answers.
    Agreeing,
    /// The loop is on its way.
    Paying {
        hashlock: Hash,
    },
    Cleared,
    Failed {
        reason: String,
    },
}

/// One cycle of ours in a round, as the proposer follows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleExecution {
    pub id: Hash,
    /// Which of the proposal's cycles.
    pub index: u32,
    pub cycle: NettingCycle,
    /// The participants who agreed, with the key their proposer opens onion layers with
    /// (recovered from its signature on the agreement).
    pub agreed: BTreeMap<EntityId, PublicKey>,
    pub status: CycleStatus,
}

/// A netting the entity proposed and is carrying out, for one token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NettingExecution {
    pub order: NettingOrder,
    /// The current round's proposal.
    pub proposal: NettingProposal,
    /// The cycles of the proposal we are on (and that a loop can carry).
    pub cycles: Vec<CycleExecution>,
    /// Answers are due by then.
    pub answer_by_ms: u64,
    /// Who was left out, and why.
    pub left_out: BTreeMap<EntityId, String>,
}

impl NettingExecution {
    fn agreeing(&self) -> bool {
        self.cycles
            .iter()
            .any(|c| matches!(c.status, CycleStatus::Agreeing))
    }

    fn done(&self) -> bool {
        self.cycles
            .iter()
            .all(|c| matches!(c.status, CycleStatus::Cleared | CycleStatus::Failed { .. }))
    }
}

/// Why a netting transaction was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NettingTxError {
    #[error("{0}")]
    Netting(Box<NettingError>),
    #[error("a netting of token {0} is under way already")]
    AlreadyRunning(TokenId),
    #[error("{count} positions, more than {MAX_NETTING_POSITIONS}")]
    TooManyPositions { count: usize },
    #[error("no cycle of the proposal passes through us")]
    NoCycleOfOurs,
    #[error("no board known for {0}")]
    UnknownBoard(EntityId),
    #[error("netting message from {from} is not signed by its board: {error}")]
    BadSignature { from: EntityId, error: QuorumError },
    #[error("the request names cycle {0}, which the proposal does not have")]
    NoSuchCycle(u32),
    #[error("no cycle {0} of ours awaits answers")]
    UnknownCycle(Hash),
    #[error("{participant} is not on cycle {cycle} or answered already")]
    UnexpectedAnswer { participant: EntityId, cycle: Hash },
    #[error("the agreement of {0} carries no signature of its proposer")]
    NoOnionKey(EntityId),
    #[error("no netting round passed its deadline and no agreement expired")]
    NothingExpired,
}

/// Why a participant refuses a cycle. It answers with the reason and records nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("we do not take part in netting")]
    NotTakingPart,
    #[error("we are not on the cycle")]
    NotOnCycle,
    #[error("the proposer is not on the cycle")]
    ProposerNotOnCycle,
    #[error("the cycle is longer than a payment can go")]
    TooLong,
    #[error("we agreed to this cycle with {0}, another proposer")]
    AgreedWithAnother(EntityId),
    #[error(
        "the agreement would expire at {expires_at_ms}, not within the next {NETTING_ANSWER_MS} + {NETTING_LOOP_MS} ms"
    )]
    BadExpiry { expires_at_ms: u64 },
    #[error("{count} positions, more than {MAX_NETTING_POSITIONS}")]
    TooManyPositions { count: usize },
    #[error("{0}")]
    Proposal(Box<NettingError>),
    #[error(
        "we owe {peer} {free} beyond collateral once locks in flight and cycles agreed already are counted, less than the cycle's {amount}"
    )]
    OweTooLittle {
        peer: EntityId,
        free: i128,
        amount: u128,
    },
    #[error(
        "{peer} owes us {free} beyond collateral once locks in flight and cycles agreed already are counted, less than the cycle's {amount}"
    )]
    OwedTooLittle {
        peer: EntityId,
        free: i128,
        amount: u128,
    },
}

impl From<NettingError> for NettingTxError {
    fn from(error: NettingError) -> Self {
        NettingTxError::Netting(Box::new(error))
    }
}

impl From<NettingError> for Refusal {
    fn from(error: NettingError) -> Self {
        Refusal::Proposal(Box::new(error))
    }
}

impl EntityState {
    /// The boards we know: ours, our peers', and the given ones of lazy entities (by the id
    /// they hash to). A peer's board comes from its account, whatever is given.
    pub fn known_boards(&self, given: &[Board]) -> BTreeMap<EntityId, Board> {
        let mut boards: BTreeMap<EntityId, Board> = given
            .iter()
            .map(|board| (board.lazy_entity_id(), board.clone()))
            .collect();
        for (peer, entry) in &self.accounts {
            boards.insert(*peer, entry.peer_board.clone());
        }
        boards.insert(self.id, self.board.clone());
        boards
    }

    // ------------------------------------------------------------------ the proposer

    pub(super) fn start_netting(
        &mut self,
        order: &NettingOrder,
        outcome: &mut Outcome,
    ) -> Result<(), EntityTxError> {
        if self.netting_rounds.contains_key(&order.token) {
            return Err(NettingTxError::AlreadyRunning(order.token).into());
        }
        let (proposal, cycles) = self.plan_round(order, &BTreeSet::new())?;
        let execution = NettingExecution {
            order: order.clone(),
            proposal,
            cycles,
            answer_by_ms: self.timestamp.saturating_add(NETTING_ANSWER_MS),
            left_out: BTreeMap::new(),
        };
        self.send_round(execution, outcome);
        Ok(())
    }

    /// The proposal over the order's positions without the `left_out` entities' accounts,
    /// checked as every participant will check it, and the cycles of it we are on.
    fn plan_round(
        &self,
        order: &NettingOrder,
        left_out: &BTreeSet<EntityId>,
    ) -> Result<(NettingProposal, Vec<CycleExecution>), NettingTxError> {
        if order.positions.len() > MAX_NETTING_POSITIONS {
            return Err(NettingTxError::TooManyPositions {
                count: order.positions.len(),
            });
        }
        let boards = self.known_boards(&order.boards);
        let positions = PositionSet::verify(self.domain, &order.positions, &boards)?;
        let positions = positions.without(left_out);
        let proposal = propose(&positions, order.token)?;
        verify_proposal(&proposal, &positions, &ParticipantView::of(self))?;
        let proposal_id = proposal.id();
        let mut cycles = Vec::new();
        for (index, cycle) in proposal.cycles.iter().enumerate() {
            if !cycle.participants.contains(&self.id) || cycle.participants.len() > MAX_ROUTE_HOPS {
                continue;
            }
            if let Some(unknown) = cycle.participants.iter().find(|p| !boards.contains_key(p)) {
                return Err(NettingTxError::UnknownBoard(*unknown));
            }
            cycles.push(CycleExecution {
                id: cycle_id_of(&proposal_id, index, cycle),
                index: index as u32,
                cycle: cycle.clone(),
                agreed: BTreeMap::new(),
                status: CycleStatus::Agreeing,
            });
        }
        if cycles.is_empty() {
            return Err(NettingTxError::NoCycleOfOurs);
        }
        Ok((proposal, cycles))
    }

    /// Asks every other participant of our cycles, and keeps the round.
    fn send_round(&mut self, execution: NettingExecution, outcome: &mut Outcome) {
        let boards = self.known_boards(&execution.order.boards);
        let proposal = &execution.proposal;
        let relied_on = |position: &SignedPosition| {
            proposal.basis.iter().any(|entry| {
                (entry.left, entry.right) == (position.key.left, position.key.right)
                    && entry.height == position.proof.header.height
                    && entry.state_hash == position.proof.header.state_hash
            })
        };
        let positions: Vec<SignedPosition> = execution
            .order
            .positions
            .iter()
            .filter(|p| relied_on(p))
            .cloned()
            .collect();
        let named: BTreeSet<EntityId> = proposal
            .basis
            .iter()
            .flat_map(|entry| [entry.left, entry.right])
            .collect();
        let needed_boards: Vec<Board> = named
            .iter()
            .filter_map(|id| boards.get(id).cloned())
            .collect();
        for cycle in &execution.cycles {
            for participant in &cycle.cycle.participants {
                let Some(peer_board) = boards.get(participant).filter(|_| *participant != self.id)
                else {
                    continue;
                };
                let request = CycleRequest {
                    proposer: self.id,
                    participant: *participant,
                    proposal: proposal.clone(),
                    cycle: cycle.index,
                    positions: positions.clone(),
                    boards: needed_boards.clone(),
                    expires_at_ms: execution.answer_by_ms.saturating_add(NETTING_LOOP_MS),
                    hashlock: keccak256(&loop_preimage(&execution.order.secret, &cycle.id).0),
                };
                outcome.netting.push(OutgoingNetting {
                    peer_board: peer_board.clone(),
                    message: NettingMessage::Request(Box::new(request)),
                });
            }
        }
        outcome.events.push(EntityEvent::NettingProposed {
            token: execution.order.token,
            proposal: proposal.id(),
            cycles: execution.cycles.iter().map(|c| c.id).collect(),
        });
        self.netting_rounds.insert(execution.order.token, execution);
    }

    /// Proposes again without whoever was left out; the netting ends when nothing of ours is
    /// left to clear.
    fn replan(&mut self, mut execution: NettingExecution, outcome: &mut Outcome) {
        let left_out: BTreeSet<EntityId> = execution.left_out.keys().copied().collect();
        match self.plan_round(&execution.order, &left_out) {
            Ok((proposal, cycles)) => {
                execution.proposal = proposal;
                execution.cycles = cycles;
                execution.answer_by_ms = self.timestamp.saturating_add(NETTING_ANSWER_MS);
                self.send_round(execution, outcome);
            }
            Err(error) => {
                execution.cycles.clear();
                self.finish_netting(execution, Some(error.to_string()), outcome);
            }
        }
    }

    fn finish_netting(
        &mut self,
        execution: NettingExecution,
        ended_because: Option<String>,
        outcome: &mut Outcome,
    ) {
        let mut cleared = Vec::new();
        let mut failed = Vec::new();
        for cycle in &execution.cycles {
            match &cycle.status {
                CycleStatus::Cleared => cleared.push((cycle.id, cycle.cycle.amount)),
                CycleStatus::Failed { reason } => failed.push((cycle.id, reason.clone())),
                CycleStatus::Agreeing | CycleStatus::Paying { .. } => {}
            }
        }
        outcome.events.push(EntityEvent::NettingFinished {
            token: execution.order.token,
            cleared,
            failed,
            left_out: execution.left_out.keys().copied().collect(),
            ended_because,
        });
    }

    fn on_cycle_answer(
        &mut self,
        answer: &CycleAnswer,
        onion_key: Option<PublicKey>,
        outcome: &mut Outcome,
    ) -> Result<(), EntityTxError> {
        let participant = answer.participant;
        let found = self.netting_rounds.iter().find_map(|(token, execution)| {
            let at = execution
                .cycles
                .iter()
                .position(|c| c.id == answer.cycle && matches!(c.status, CycleStatus::Agreeing))?;
            Some((*token, at))
        });
        let (token, at) = found.ok_or(NettingTxError::UnknownCycle(answer.cycle))?;
        let Some(mut execution) = self.netting_rounds.remove(&token) else {
            return Err(NettingTxError::UnknownCycle(answer.cycle).into());
        };
        let cycle = &execution.cycles[at];
        let expected = participant != self.id
            && cycle.cycle.participants.contains(&participant)
            && !cycle.agreed.contains_key(&participant);
        if !expected {
            self.netting_rounds.insert(token, execution);
            return Err(NettingTxError::UnexpectedAnswer {
                participant,
                cycle: answer.cycle,
            }
            .into());
        }
        match &answer.verdict {
            Verdict::Agree => {
                let Some(key) = onion_key else {
                    self.netting_rounds.insert(token, execution);
                    return Err(NettingTxError::NoOnionKey(participant).into());
                };
                execution.cycles[at].agreed.insert(participant, key);
                let all_agreed = execution.cycles.iter().all(|c| {
                    c.cycle
                        .participants
                        .iter()
                        .all(|p| *p == self.id || c.agreed.contains_key(p))
                });
                if all_agreed {
                    self.start_loops(&mut execution, outcome);
                }
                if execution.done() {
                    self.finish_netting(execution, None, outcome);
                } else {
                    self.netting_rounds.insert(token, execution);
                }
            }
            Verdict::Refuse { reason } => {
                outcome.events.push(EntityEvent::NettingLeftOut {
                    token,
                    participant,
                    reason: reason.clone(),
                });
                execution.left_out.insert(participant, reason.clone());
                self.replan(execution, outcome);
            }
        }
        Ok(())
    }

    /// Starts the loop of every cycle of the round: we pay ourselves around it.
    fn start_loops(&mut self, execution: &mut NettingExecution, outcome: &mut Outcome) {
        let token = execution.order.token;
        for at in 0..execution.cycles.len() {
            let cycle = &execution.cycles[at];
            let id = cycle.id;
            let amount = cycle.cycle.amount;
            let preimage = loop_preimage(&execution.order.secret, &id);
            let seed = hash_of(&("xln.netting.seed.v1", &execution.order.secret.0, id)).0;
            let hops: Option<Vec<LockedHop>> = cycle.cycle.payment_route(&self.id).map(|route| {
                route
                    .iter()
                    .filter_map(|entity| {
                        let key = if *entity == self.id {
                            execution.order.onion_key
                        } else {
                            *cycle.agreed.get(entity)?
                        };
                        Some(LockedHop {
                            entity: *entity,
                            key,
                            amount,
                        })
                    })
                    .collect()
            });
            let hops = hops.unwrap_or_default();
            let started = if hops.len() == cycle.cycle.participants.len() {
                self.lock_along(token, &hops, Some(id), &preimage, &seed, outcome)
                    .map_err(|error| error.to_string())
            } else {
                Err("a participant's key is missing".to_string())
            };
            execution.cycles[at].status = match started {
                Ok(()) => {
                    let hashlock = keccak256(&preimage.0);
                    outcome.events.push(EntityEvent::NettingLoopStarted {
                        token,
                        cycle: id,
                        hashlock,
                        amount,
                    });
                    CycleStatus::Paying { hashlock }
                }
                Err(reason) => CycleStatus::Failed { reason },
            };
        }
    }

    /// One of our payments finished: if it is a netting loop, the cycle is cleared or not.
    pub(super) fn netting_loop_finished(
        &mut self,
        hashlock: &Hash,
        status: &PaymentStatus,
        outcome: &mut Outcome,
    ) {
        let found = self.netting_rounds.iter().find_map(|(token, execution)| {
            let at = execution.cycles.iter().position(
                |c| matches!(&c.status, CycleStatus::Paying { hashlock: h } if h == hashlock),
            )?;
            Some((*token, at))
        });
        let Some((token, at)) = found else {
            return;
        };
        let Some(mut execution) = self.netting_rounds.remove(&token) else {
            return;
        };
        execution.cycles[at].status = match status {
            PaymentStatus::Succeeded { .. } => CycleStatus::Cleared,
            PaymentStatus::Failed(failure) => CycleStatus::Failed {
                reason: format!("{:?} at {}", failure.reason, failure.hop),
            },
            PaymentStatus::Pending => CycleStatus::Paying {
                hashlock: *hashlock,
            },
        };
        if execution.done() {
            self.finish_netting(execution, None, outcome);
        } else {
            self.netting_rounds.insert(token, execution);
        }
    }

    /// Whether a round passed its deadline or an agreement expired (a proposer duty).
    pub fn netting_expired(&self, clock: Clock) -> bool {
        let now = clock.timestamp;
        self.netting_rounds
            .values()
            .any(|e| e.agreeing() && e.answer_by_ms <= now)
            || self
                .netting_agreements
                .values()
                .any(|a| a.expires_at_ms <= now)
    }

    /// Leaves out whoever has not answered a round past its deadline, and forgets expired
    /// agreements.
    pub(super) fn expire_netting(&mut self, outcome: &mut Outcome) -> Result<(), EntityTxError> {
        let clock = Clock {
            timestamp: self.timestamp,
            j_height: self.j_height,
        };
        if !self.netting_expired(clock) {
            return Err(NettingTxError::NothingExpired.into());
        }
        let now = self.timestamp;
        self.netting_agreements.retain(|_, a| a.expires_at_ms > now);
        let late: Vec<TokenId> = self
            .netting_rounds
            .iter()
            .filter(|(_, e)| e.agreeing() && e.answer_by_ms <= now)
            .map(|(token, _)| *token)
            .collect();
        for token in late {
            let Some(mut execution) = self.netting_rounds.remove(&token) else {
                continue;
            };
            let silent: BTreeSet<EntityId> = execution
                .cycles
                .iter()
                .flat_map(|c| {
                    c.cycle
                        .participants
                        .iter()
                        .filter(|p| **p != self.id && !c.agreed.contains_key(p))
                })
                .copied()
                .collect();
            for participant in silent {
                let reason = "did not answer in time".to_string();
                outcome.events.push(EntityEvent::NettingLeftOut {
                    token,
                    participant,
                    reason: reason.clone(),
                });
                execution.left_out.insert(participant, reason);
            }
            self.replan(execution, outcome);
        }
        Ok(())
    }

    // ------------------------------------------------------------------ a participant

    /// A netting message from another entity: checked against its board, then a request is
    /// answered and an answer followed.
    pub(super) fn receive_netting(
        &mut self,
        signed: &SignedNettingMessage,
        sender_board: &Board,
        outcome: &mut Outcome,
    ) -> Result<(), EntityTxError> {
        let message = &signed.message;
        if message.to() != self.id {
            return Err(EntityTxError::NotForUs(message.to()));
        }
        let from = message.from();
        let board = match self.accounts.get(&from) {
            Some(entry) => entry.peer_board.clone(),
            None if sender_board.lazy_entity_id() == from => sender_board.clone(),
            None => return Err(EntityTxError::BoardMismatch(from)),
        };
        let digest = message.digest();
        board
            .verify_quorum(&digest, &signed.signature)
            .map_err(|error| NettingTxError::BadSignature { from, error })?;
        match message {
            NettingMessage::Request(request) => self.on_cycle_request(request, board, outcome),
            NettingMessage::Answer(answer) => {
                let proposer = board.proposer();
                let onion_key = signed
                    .signature
                    .0
                    .iter()
                    .filter_map(|s| s.recover_key(&digest).ok())
                    .find(|key| key.address() == proposer);
                self.on_cycle_answer(answer, onion_key, outcome)
            }
        }
    }

    fn on_cycle_request(
        &mut self,
        request: &CycleRequest,
        proposer_board: Board,
        outcome: &mut Outcome,
    ) -> Result<(), EntityTxError> {
        let index = request.cycle;
        let cycle = cycle_id(&request.proposal, index as usize)
            .ok_or(NettingTxError::NoSuchCycle(index))?;
        let verdict = match self.check_cycle_request(request, &cycle) {
            Ok(agreement) => {
                outcome.events.push(EntityEvent::NettingAgreed {
                    proposer: request.proposer,
                    cycle,
                    amount: agreement.amount,
                });
                let (proposer, token, proposal) =
                    (agreement.proposer, agreement.token, agreement.proposal);
                self.netting_agreements
                    .retain(|_, a| !replaced_by(a, &proposer, token, &proposal));
                self.netting_agreements.insert(cycle, agreement);
                Verdict::Agree
            }
            Err(refusal) => {
                let reason = refusal.to_string();
                outcome.events.push(EntityEvent::NettingRefused {
                    proposer: request.proposer,
                    cycle,
                    reason: reason.clone(),
                });
                Verdict::Refuse { reason }
            }
        };
        outcome.netting.push(OutgoingNetting {
            peer_board: proposer_board,
            message: NettingMessage::Answer(CycleAnswer {
                participant: self.id,
                proposer: request.proposer,
                cycle,
                verdict,
            }),
        });
        Ok(())
    }

    /// Everything a participant checks before it agrees to a cycle (see the module doc).
    fn check_cycle_request(
        &self,
        request: &CycleRequest,
        cycle_id: &Hash,
    ) -> Result<NettingAgreement, Refusal> {
        if !self.joins_netting {
            return Err(Refusal::NotTakingPart);
        }
        let cycle = request
            .proposal
            .cycles
            .get(request.cycle as usize)
            .ok_or(Refusal::NotOnCycle)?;
        let (from, to) = neighbours(cycle, &self.id).ok_or(Refusal::NotOnCycle)?;
        if !cycle.participants.contains(&request.proposer) {
            return Err(Refusal::ProposerNotOnCycle);
        }
        if cycle.participants.len() > MAX_ROUTE_HOPS {
            return Err(Refusal::TooLong);
        }
        let latest = self
            .timestamp
            .saturating_add(NETTING_ANSWER_MS + NETTING_LOOP_MS)
            .saturating_add(super::MAX_ENTITY_CLOCK_SKEW_MS);
        if request.expires_at_ms <= self.timestamp || request.expires_at_ms > latest {
            return Err(Refusal::BadExpiry {
                expires_at_ms: request.expires_at_ms,
            });
        }
        if request.positions.len() > MAX_NETTING_POSITIONS {
            return Err(Refusal::TooManyPositions {
                count: request.positions.len(),
            });
        }
        let boards = self.known_boards(&request.boards);
        let positions = PositionSet::verify(self.domain, &request.positions, &boards)?;
        verify_proposal(&request.proposal, &positions, &ParticipantView::of(self))?;
        // The proposal holds against the state we signed; the debts must also still hold now,
        // beside what is in flight and what we agreed to already (a debt is agreed away once).
        let token = request.proposal.token;
        let amount = cycle.amount;
        let proposal_id = request.proposal.id();
        // A cycle's id does not name its proposer: another participant may not take over ours.
        if let Some(other) = self
            .netting_agreements
            .get(cycle_id)
            .filter(|a| a.proposer != request.proposer)
        {
            return Err(Refusal::AgreedWithAnother(other.proposer));
        }
        let kept = |id: &Hash, agreement: &NettingAgreement| {
            id != cycle_id && !replaced_by(agreement, &request.proposer, token, &proposal_id)
        };
        for (peer, owed) in [(from, Owed::ByUs), (to, Owed::ToUs)] {
            let free = self
                .debt_left(&peer, token, owed)
                .and_then(|left| left.checked_sub(self.agreed_on(&peer, token, owed, kept)?));
            if free.is_none_or(|free| free < i128::try_from(amount).unwrap_or(i128::MAX)) {
                let free = free.unwrap_or(i128::MIN);
                return Err(match owed {
                    Owed::ByUs => Refusal::OweTooLittle { peer, free, amount },
                    Owed::ToUs => Refusal::OwedTooLittle { peer, free, amount },
                });
            }
        }
        Ok(NettingAgreement {
            proposer: request.proposer,
            proposal: proposal_id,
            token,
            amount,
            from,
            to,
            expires_at_ms: request.expires_at_ms,
            hashlock: request.hashlock,
        })
    }

    /// What is left of a debt beyond collateral between us and `peer` in `token` if every lock
    /// (or swap hold) in flight that pays it down settles: what we owe the peer less what it
    /// holds towards us ([`Owed::ByUs`]), or what it owes us less what we hold towards it
    /// ([`Owed::ToUs`]). The smaller of that in the committed state and in the state once our
    /// frame in flight and our queue apply. Negative when the debt runs the other way, or
    /// would; `None` without the account, or out of range.
    fn debt_left(&self, peer: &EntityId, token: TokenId, owed: Owed) -> Option<i128> {
        let account = &self.accounts.get(peer)?.account;
        let side = account.side();
        let clock = Clock {
            timestamp: self.timestamp,
            j_height: self.j_height,
        };
        let projected = super::swap::projected_state(account, clock);
        let left_in = |state: &crate::account::AccountState| -> Option<i128> {
            let Some(delta) = state.deltas.get(&token) else {
                return Some(0);
            };
            let left_view = crate::netting::uncollateralised(delta).ok()?;
            let (ours, our_hold, peer_hold) = match side {
                Side::Left => (left_view, delta.left_hold, delta.right_hold),
                Side::Right => (left_view.checked_neg()?, delta.right_hold, delta.left_hold),
            };
            match owed {
                Owed::ByUs => ours
                    .checked_neg()?
                    .checked_sub(i128::try_from(peer_hold).ok()?),
                Owed::ToUs => ours.checked_sub(i128::try_from(our_hold).ok()?),
            }
        };
        Some(left_in(account.state())?.min(left_in(&projected)?))
    }

    /// The sum of the live agreements that `kept` keeps and that use the debt with `peer` in
    /// `token` that way.
    fn agreed_on(
        &self,
        peer: &EntityId,
        token: TokenId,
        owed: Owed,
        kept: impl Fn(&Hash, &NettingAgreement) -> bool,
    ) -> Option<i128> {
        self.netting_agreements
            .iter()
            .filter(|(id, a)| {
                kept(id, a)
                    && a.token == token
                    && a.expires_at_ms > self.timestamp
                    && match owed {
                        Owed::ByUs => a.from == *peer,
                        Owed::ToUs => a.to == *peer,
                    }
            })
            .try_fold(0i128, |sum, (_, a)| {
                sum.checked_add(i128::try_from(a.amount).ok()?)
            })
    }

    /// Whether an incoming lock may go on with no fee as the loop of `cycle`: we agreed to
    /// that cycle, with the lock's sender before us, `next` after us, this token, amount and
    /// hashlock, and the agreement has not expired ([`FailReason::NettingNotAgreed`]); and the
    /// debts still cover the amount, as they are now and with every other lock in flight
    /// settled: we owe the sender at least what it locks to us (the lock is among its holds
    /// already), and `next` owes us at least what we lock to it ([`FailReason::NettingDebtShort`]).
    pub(super) fn check_netting_forward(
        &self,
        cycle: &Hash,
        peer: EntityId,
        lock: &Htlc,
        next: EntityId,
        amount: u128,
    ) -> Result<(), FailReason> {
        let agreement = self
            .netting_agreements
            .get(cycle)
            .ok_or(FailReason::NettingNotAgreed)?;
        let as_agreed = agreement.from == peer
            && agreement.to == next
            && agreement.token == lock.token
            && agreement.amount == amount
            && lock.amount == amount
            && lock.hashlock == agreement.hashlock
            && self.timestamp < agreement.expires_at_ms;
        if !as_agreed {
            return Err(FailReason::NettingNotAgreed);
        }
        let amount = i128::try_from(amount).map_err(|_| FailReason::NettingDebtShort)?;
        let covered = self
            .debt_left(&peer, lock.token, Owed::ByUs)
            .is_some_and(|left| left >= 0)
            && self
                .debt_left(&next, lock.token, Owed::ToUs)
                .is_some_and(|left| left >= amount);
        if covered {
            Ok(())
        } else {
            Err(FailReason::NettingDebtShort)
        }
    }
}
