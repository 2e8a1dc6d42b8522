//! One side's replica of a bilateral account and its 2-of-2 frame consensus (PROTOCOL.md §4).
//!
//! The machine never signs: it says which frame hashes its reply must carry signatures for,
//! and the entity (one key, or a board reaching quorum) signs them. It verifies the peer's
//! signatures against the peer's board.

use super::frame::{AccountKey, AccountMessage, DisputeProof, Frame, FrameAck, SignedFrame};
use super::tx::{AccountState, AccountTx, Clock, TxError};
use crate::board::{Board, EntityId, QuorumError, QuorumSignature};
use crate::collections::VecMap;
use crate::crypto::Hash;
use crate::delta::{Side, TokenId};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Most transactions one frame may carry; bounds the work a peer can ask for.
pub const MAX_FRAME_TXS: usize = 10_000;
/// How far a peer's frame timestamp may be from our clock, either way, in milliseconds. A
/// frame must be fresh: otherwise a peer could backdate the reveal of an HTLC secret to before
/// its expiry. HTLC hop margins are several times this.
pub const MAX_CLOCK_SKEW_MS: u64 = 10_000;
/// After this long without an ACK, a proposer re-stamps its frame so that it stays fresh.
pub const REFRESH_AFTER_MS: u64 = MAX_CLOCK_SKEW_MS / 2;
/// How far a peer's frame may be from our chain height, either way, in blocks: the chain
/// height decides HTLC expiry too, so it must be as fresh as the time. HTLC hop margins in
/// blocks are several times this.
pub const MAX_J_HEIGHT_SKEW: u64 = 3;
/// Earlier versions of a re-stamped frame kept for an ACK still on its way; the oldest go.
pub const MAX_SUPERSEDED_VERSIONS: usize = 64;

/// Why a message from the peer was refused. The account is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("an entity cannot have an account with itself")]
    SelfAccount,
    #[error("message is for {to} from {from}, not for this account")]
    WrongAccount { from: EntityId, to: EntityId },
    #[error("frame {height} is old (committed height {committed}): replay ignored")]
    StaleFrame { height: u64, committed: u64 },
    #[error("frame {height} is ahead of the expected height {expected}")]
    FutureFrame { height: u64, expected: u64 },
    #[error("frame {height} claims the wrong proposer side")]
    WrongProposer { height: u64 },
    #[error("frame {height} does not follow the last committed frame")]
    WrongPrevHash { height: u64 },
    #[error("frame {height} has {count} transactions, more than {MAX_FRAME_TXS}")]
    TooManyTxs { height: u64, count: usize },
    #[error("frame {height} goes back in time or in chain height")]
    TimeWentBack { height: u64 },
    #[error("frame {height} is stamped in the future")]
    FrameFromFuture { height: u64 },
    #[error("frame {height} is stamped too far in the past")]
    FrameTooOld { height: u64 },
    #[error("frame {height} claims chain height {j_height}, too far from ours ({ours})")]
    ChainHeightOutOfRange {
        height: u64,
        j_height: u64,
        ours: u64,
    },
    #[error("frame {height}: transaction {index} is invalid: {error}")]
    InvalidTx {
        height: u64,
        index: usize,
        error: TxError,
    },
    #[error("frame {height}: state hash does not match the replay")]
    StateHashMismatch { height: u64 },
    #[error("frame {height}: bad signature: {error}")]
    BadSignature { height: u64, error: QuorumError },
    #[error("ACK for frame {height} does not match the pending frame")]
    AckMismatch { height: u64 },
    #[error("ACK for frame {height}, which was not proposed")]
    UnexpectedAck { height: u64 },
}

/// What happened, for the entity and the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
    /// A frame was signed by both sides and is now the account's state.
    Committed {
        height: u64,
        frame_hash: Hash,
        by_left: bool,
        txs: Vec<AccountTx>,
    },
    /// A queued transaction of ours was invalid when we built a frame, and was dropped.
    TxDropped { tx: AccountTx, error: TxError },
    /// Both sides proposed this height; ours (LEFT) wins and the peer's was ignored.
    PeerFrameIgnored { height: u64 },
    /// Both sides proposed this height; the peer's (LEFT) won and ours went back to the queue.
    OwnFrameRequeued { height: u64, txs: usize },
}

/// Our frame awaiting the peer's ACK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingFrame {
    pub frame: Frame,
    pub hash: Hash,
    pub state: AccountState,
    /// Transactions an earlier version of this frame had that were invalid when it was
    /// re-stamped; reported as dropped only if this version is the one committed.
    pub dropped: Vec<(AccountTx, TxError)>,
}

/// The reply to send the peer, before our entity signs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// ACK the frame of this height and hash.
    pub ack: Option<(u64, Hash)>,
    /// Propose this frame (with its hash).
    pub proposal: Option<(Frame, Hash)>,
}

impl Reply {
    pub fn is_empty(&self) -> bool {
        self.ack.is_none() && self.proposal.is_none()
    }

    /// The frame hashes our entity must sign for this reply.
    pub fn digests(&self) -> Vec<Hash> {
        let ack = self.ack.iter().map(|(_, hash)| *hash);
        ack.chain(self.proposal.iter().map(|(_, hash)| *hash))
            .collect()
    }

    /// The message, with each frame hash signed by `sign`.
    pub fn sign(
        self,
        from: EntityId,
        to: EntityId,
        mut sign: impl FnMut(&Hash) -> QuorumSignature,
    ) -> Option<AccountMessage> {
        if self.is_empty() {
            return None;
        }
        Some(AccountMessage {
            from,
            to,
            ack: self.ack.map(|(height, frame_hash)| FrameAck {
                height,
                frame_hash,
                signature: sign(&frame_hash),
            }),
            proposal: self.proposal.map(|(frame, hash)| SignedFrame {
                signature: sign(&hash),
                frame,
            }),
        })
    }
}

/// The outcome of one step: what to send and what happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    pub reply: Reply,
    pub events: Vec<AccountEvent>,
}

/// The last committed frame, as far as the next frame must know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LastFrame {
    hash: Hash,
    timestamp: u64,
    j_height: u64,
    by_left: bool,
}

impl LastFrame {
    fn of(frame: &Frame, hash: Hash) -> Self {
        Self {
            hash,
            timestamp: frame.timestamp,
            j_height: frame.j_height,
            by_left: frame.by_left,
        }
    }
}

/// The committed point a proposal must follow.
struct Base<'a> {
    state: &'a AccountState,
    height: u64,
    last: LastFrame,
    /// A frame of ours is in flight at `height + 1`.
    pending: bool,
}

/// One side's replica of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    key: AccountKey,
    me: EntityId,
    peer: EntityId,
    state: AccountState,
    height: u64,
    last: LastFrame,
    mempool: VecDeque<AccountTx>,
    /// Boxed: most accounts have no frame in flight most of the time.
    pending: Option<Box<PendingFrame>>,
    /// Earlier versions of the pending frame (before re-stamping): the peer may have committed
    /// one of them, and its ACK must still be taken.
    superseded: Vec<PendingFrame>,
    /// Collateral and ondelta per token as our own chain follower last saw them: a `ChainSync`
    /// is taken only if it says the same.
    observed: VecMap<TokenId, (u128, i128)>,
    /// The account's next settlement nonce as our own chain follower last saw it: a
    /// `SettlementLanded` is taken only for a settlement it saw.
    observed_settlement_nonce: u64,
    proof: Option<DisputeProof>,
}

impl Account {
    /// A new, empty account of `me` with `peer` in the jurisdiction `domain`.
    pub fn new(domain: Hash, me: EntityId, peer: EntityId) -> Result<Self, AccountError> {
        if me == peer {
            return Err(AccountError::SelfAccount);
        }
        let state = AccountState::new(me, peer);
        Ok(Self {
            key: AccountKey {
                domain,
                left: state.left,
                right: state.right,
            },
            me,
            peer,
            state,
            height: 0,
            last: LastFrame {
                hash: Hash::ZERO,
                timestamp: 0,
                j_height: 0,
                by_left: false,
            },
            mempool: VecDeque::new(),
            pending: None,
            superseded: Vec::new(),
            observed: VecMap::new(),
            observed_settlement_nonce: 0,
            proof: None,
        })
    }

    pub fn me(&self) -> EntityId {
        self.me
    }
    pub fn peer(&self) -> EntityId {
        self.peer
    }
    pub fn side(&self) -> Side {
        self.state.side_of(&self.me)
    }
    pub fn key(&self) -> &AccountKey {
        &self.key
    }
    /// The committed state.
    pub fn state(&self) -> &AccountState {
        &self.state
    }
    /// The height of the last committed frame (0 before the first).
    pub fn height(&self) -> u64 {
        self.height
    }
    pub fn last_frame_hash(&self) -> Hash {
        self.last.hash
    }
    pub fn pending(&self) -> Option<&PendingFrame> {
        self.pending.as_deref()
    }
    /// Earlier versions of our re-stamped frame in flight.
    pub fn superseded(&self) -> &[PendingFrame] {
        &self.superseded
    }
    pub fn mempool(&self) -> &VecDeque<AccountTx> {
        &self.mempool
    }
    /// The latest frame the peer signed: the dispute proof.
    pub fn proof(&self) -> Option<&DisputeProof> {
        self.proof.as_ref()
    }

    /// Records what our chain follower saw for a token of this account. Says whether the
    /// committed state differs, so that the entity queues a `ChainSync`.
    pub fn observe_chain(&mut self, token: TokenId, collateral: u128, ondelta: i128) -> bool {
        self.observed.insert(token, (collateral, ondelta));
        self.state
            .deltas
            .get(&token)
            .is_none_or(|d| (d.collateral, d.ondelta) != (collateral, ondelta))
    }

    /// Records that our chain follower saw the settlement `nonce` of this account applied.
    /// Says whether the committed state has yet to record it, so that the entity queues a
    /// `SettlementLanded`.
    pub fn observe_settlement(&mut self, nonce: u64) -> bool {
        self.observed_settlement_nonce =
            self.observed_settlement_nonce.max(nonce.saturating_add(1));
        self.state.settlement.nonce <= nonce
    }

    /// The state our next transaction applies to: after our frame in flight and our queue.
    fn latest_state(&self, clock: Clock) -> AccountState {
        let mut state = self
            .pending
            .as_ref()
            .map_or_else(|| self.state.clone(), |p| p.state.clone());
        for tx in &self.mempool {
            // What would be dropped from the frame does not count.
            let _ = self.apply_checked(&mut state, tx, self.side(), clock, None);
        }
        state
    }

    /// Checks that `tx` of ours would apply after what is in flight and queued, without
    /// queueing it: an operator's request gets its error at once.
    pub fn check_own(&self, tx: &AccountTx, clock: Clock) -> Result<(), TxError> {
        let mut state = self.latest_state(clock);
        self.apply_checked(&mut state, tx, self.side(), clock, None)
    }

    /// Applies `tx` by `by` to `state`, first checking what only this side can check: that
    /// a `ChainSync` or `SettlementLanded` says what our own follower saw, and, for the peer's
    /// acceptance of a settlement (`peer_board` given), that its signature is a quorum of the
    /// peer's board over the pending settlement's digest (ours was checked when our node gave
    /// it).
    fn apply_checked(
        &self,
        state: &mut AccountState,
        tx: &AccountTx,
        by: Side,
        clock: Clock,
        peer_board: Option<&Board>,
    ) -> Result<(), TxError> {
        match tx {
            AccountTx::ChainSync {
                token,
                collateral,
                ondelta,
            } if self.observed.get(token) != Some(&(*collateral, *ondelta)) => {
                return Err(TxError::ChainMismatch(*token));
            }
            AccountTx::SettlementLanded { nonce } if *nonce >= self.observed_settlement_nonce => {
                return Err(TxError::SettlementNotOnChain(*nonce));
            }
            AccountTx::SettlementAccept { signature } => {
                if let (Some(board), Some(pending)) = (peer_board, &state.settlement.pending) {
                    board
                        .verify_quorum(&pending.digest, signature)
                        .map_err(|_| TxError::BadSettlementSignature)?;
                }
            }
            _ => {}
        }
        state.apply(tx, by, clock)
    }

    /// Queues a transaction for our next frame. It is validated when the frame is built.
    pub fn enqueue(&mut self, tx: AccountTx) {
        self.mempool.push_back(tx);
    }

    /// Proposes a frame from the queue if no frame of ours is in flight.
    pub fn flush(&mut self, clock: Clock) -> Step {
        let mut step = Step::default();
        self.propose(clock, &mut step);
        step
    }

    /// Handles a message from the peer: commits our frame if it is ACKed, replays and ACKs
    /// the peer's proposal, then proposes our queued transactions. The message is accepted
    /// whole or refused whole: on error the account is exactly as it was.
    pub fn receive(
        &mut self,
        message: &AccountMessage,
        peer_board: &Board,
        clock: Clock,
    ) -> Result<Step, AccountError> {
        if message.from != self.peer || message.to != self.me {
            return Err(AccountError::WrongAccount {
                from: message.from,
                to: message.to,
            });
        }
        let acked = match &message.ack {
            Some(ack) => self.check_ack(ack, peer_board)?,
            None => None,
        };
        // The proposal must follow the state after the ACK in the same message.
        let acked_version = acked
            .as_ref()
            .and_then(|(version, _)| self.version(*version));
        let base = match acked_version {
            Some(pending) => Base {
                state: &pending.state,
                height: pending.frame.height,
                last: LastFrame::of(&pending.frame, pending.hash),
                pending: false,
            },
            None => Base {
                state: &self.state,
                height: self.height,
                last: self.last.clone(),
                pending: self.pending.is_some(),
            },
        };
        let check = match &message.proposal {
            Some(proposal) => Some(self.check_proposal(&base, proposal, peer_board, clock)?),
            None => None,
        };
        if acked.is_none() && check.is_none() {
            // A duplicate ACK and nothing else.
            return Err(AccountError::StaleFrame {
                height: message.ack.as_ref().map_or(0, |a| a.height),
                committed: self.height,
            });
        }

        let mut step = Step::default();
        if let Some((version, peer_signature)) = acked {
            self.commit_own(version, peer_signature, &mut step);
        }
        if let (Some(proposal), Some(check)) = (&message.proposal, check) {
            match check {
                ProposalCheck::Accept(accepted) => self.commit_peer(proposal, *accepted, &mut step),
                ProposalCheck::Ignore => step.events.push(AccountEvent::PeerFrameIgnored {
                    height: proposal.frame.height,
                }),
                ProposalCheck::AckAgain(height, hash) => step.reply.ack = Some((height, hash)),
            }
        }
        self.propose(clock, &mut step);
        Ok(step)
    }

    /// The version of our pending frame: `None` the current one, `Some(i)` a superseded one.
    fn version(&self, version: Option<usize>) -> Option<&PendingFrame> {
        match version {
            None => self.pending.as_deref(),
            Some(i) => self.superseded.get(i),
        }
    }

    fn check_ack(
        &self,
        ack: &FrameAck,
        peer_board: &Board,
    ) -> Result<Option<(Option<usize>, QuorumSignature)>, AccountError> {
        let height = ack.height;
        let Some(pending) = self.pending.as_ref().filter(|p| p.frame.height == height) else {
            if height <= self.height {
                // A duplicate of an ACK already applied: nothing to do.
                return Ok(None);
            }
            return Err(AccountError::UnexpectedAck { height });
        };
        let version = if pending.hash == ack.frame_hash {
            None
        } else {
            let i = self
                .superseded
                .iter()
                .position(|p| p.hash == ack.frame_hash)
                .ok_or(AccountError::AckMismatch { height })?;
            Some(i)
        };
        peer_board
            .verify_quorum(&ack.frame_hash, &ack.signature)
            .map_err(|error| AccountError::BadSignature { height, error })?;
        Ok(Some((version, ack.signature.clone())))
    }

    fn commit_own(
        &mut self,
        version: Option<usize>,
        peer_signature: QuorumSignature,
        step: &mut Step,
    ) {
        let current = self.pending.take().map(|pending| *pending);
        let mut superseded = std::mem::take(&mut self.superseded);
        let committed = match version {
            None => current,
            Some(i) if i < superseded.len() => Some(superseded.swap_remove(i)),
            Some(_) => None,
        };
        let Some(pending) = committed else {
            return;
        };
        let header = pending.frame.header();
        self.commit(pending.state, &pending.frame, pending.hash, step);
        for (tx, error) in pending.dropped {
            step.events.push(AccountEvent::TxDropped { tx, error });
        }
        self.proof = Some(DisputeProof {
            header,
            peer_signature,
        });
    }

    fn commit_peer(&mut self, proposal: &SignedFrame, accepted: Accepted, step: &mut Step) {
        if let Some(pending) = self.pending.take() {
            // We are RIGHT and lost the collision: our transactions go back to the front.
            self.superseded.clear();
            let txs: Vec<AccountTx> = pending
                .frame
                .txs
                .into_iter()
                .chain(pending.dropped.into_iter().map(|(tx, _)| tx))
                .collect();
            step.events.push(AccountEvent::OwnFrameRequeued {
                height: pending.frame.height,
                txs: txs.len(),
            });
            for tx in txs.into_iter().rev() {
                self.mempool.push_front(tx);
            }
        }
        self.commit(accepted.state, &proposal.frame, accepted.hash, step);
        self.proof = Some(DisputeProof {
            header: proposal.frame.header(),
            peer_signature: proposal.signature.clone(),
        });
        step.reply.ack = Some((proposal.frame.height, accepted.hash));
    }

    fn commit(&mut self, state: AccountState, frame: &Frame, hash: Hash, step: &mut Step) {
        self.state = state;
        self.height = frame.height;
        self.last = LastFrame::of(frame, hash);
        step.events.push(AccountEvent::Committed {
            height: frame.height,
            frame_hash: hash,
            by_left: frame.by_left,
            txs: frame.txs.clone(),
        });
    }

    /// Validates the peer's proposal against `base`. Changes nothing.
    fn check_proposal(
        &self,
        base: &Base,
        proposal: &SignedFrame,
        peer_board: &Board,
        clock: Clock,
    ) -> Result<ProposalCheck, AccountError> {
        let frame = &proposal.frame;
        let height = frame.height;
        let peer_is_left = self.side() == Side::Right;
        if frame.by_left != peer_is_left {
            return Err(AccountError::WrongProposer { height });
        }
        if height <= base.height {
            // (Height 0 is no frame: nothing to ACK again, and this path checks no signature.)
            if height == base.height && height > 0 && base.last.by_left == peer_is_left {
                // The peer did not get our ACK and resent its frame, or re-stamped it: ACK
                // again the version we committed.
                return Ok(ProposalCheck::AckAgain(height, base.last.hash));
            }
            return Err(AccountError::StaleFrame {
                height,
                committed: base.height,
            });
        }
        if height != base.height + 1 {
            return Err(AccountError::FutureFrame {
                height,
                expected: base.height + 1,
            });
        }
        if base.pending && self.side() == Side::Left {
            // Collision, and LEFT's frame wins: keep waiting for the ACK of ours.
            return Ok(ProposalCheck::Ignore);
        }
        if frame.prev_frame_hash != base.last.hash {
            return Err(AccountError::WrongPrevHash { height });
        }
        if frame.txs.len() > MAX_FRAME_TXS {
            return Err(AccountError::TooManyTxs {
                height,
                count: frame.txs.len(),
            });
        }
        if frame.timestamp < base.last.timestamp || frame.j_height < base.last.j_height {
            return Err(AccountError::TimeWentBack { height });
        }
        if frame.timestamp > clock.timestamp.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(AccountError::FrameFromFuture { height });
        }
        if frame.timestamp.saturating_add(MAX_CLOCK_SKEW_MS) < clock.timestamp {
            return Err(AccountError::FrameTooOld { height });
        }
        if frame.j_height.abs_diff(clock.j_height) > MAX_J_HEIGHT_SKEW {
            return Err(AccountError::ChainHeightOutOfRange {
                height,
                j_height: frame.j_height,
                ours: clock.j_height,
            });
        }
        let hash = frame.hash(&self.key);
        peer_board
            .verify_quorum(&hash, &proposal.signature)
            .map_err(|error| AccountError::BadSignature { height, error })?;
        let mut state = base.state.clone();
        let by = self.side().peer();
        let frame_clock = Clock {
            timestamp: frame.timestamp,
            j_height: frame.j_height,
        };
        for (index, tx) in frame.txs.iter().enumerate() {
            self.apply_checked(&mut state, tx, by, frame_clock, Some(peer_board))
                .map_err(|error| AccountError::InvalidTx {
                    height,
                    index,
                    error,
                })?;
        }
        if state.hash() != frame.state_hash {
            return Err(AccountError::StateHashMismatch { height });
        }
        Ok(ProposalCheck::Accept(Box::new(Accepted { state, hash })))
    }

    fn propose(&mut self, clock: Clock, step: &mut Step) {
        if self.pending.is_some() || self.mempool.is_empty() {
            return;
        }
        let side = self.side();
        let frame_clock = self.next_frame_clock(clock);
        let mut state = self.state.clone();
        let mut txs = Vec::new();
        while txs.len() < MAX_FRAME_TXS {
            let Some(tx) = self.mempool.pop_front() else {
                break;
            };
            match self.apply_checked(&mut state, &tx, side, frame_clock, None) {
                Ok(()) => txs.push(tx),
                Err(error) => step.events.push(AccountEvent::TxDropped { tx, error }),
            }
        }
        if self.mempool.is_empty() {
            // Give back what the queue grew to: most accounts are idle most of the time.
            self.mempool = VecDeque::new();
        }
        if txs.is_empty() {
            return;
        }
        let frame = Frame {
            height: self.height + 1,
            timestamp: frame_clock.timestamp,
            j_height: frame_clock.j_height,
            txs,
            prev_frame_hash: self.last.hash,
            state_hash: state.hash(),
            by_left: side == Side::Left,
        };
        let hash = frame.hash(&self.key);
        self.carry_last_ack(step);
        step.reply.proposal = Some((frame.clone(), hash));
        self.pending = Some(Box::new(PendingFrame {
            frame,
            hash,
            state,
            dropped: Vec::new(),
        }));
    }

    /// The stamp of our next frame: never behind the last one.
    fn next_frame_clock(&self, clock: Clock) -> Clock {
        Clock {
            timestamp: clock.timestamp.max(self.last.timestamp),
            j_height: clock.j_height.max(self.last.j_height),
        }
    }

    /// Puts the ACK of the peer's last frame on our proposal again, so that the proposal can
    /// be applied even if it overtakes the message that first carried the ACK.
    fn carry_last_ack(&self, step: &mut Step) {
        let peer_is_left = self.side() == Side::Right;
        if step.reply.ack.is_none() && self.height > 0 && self.last.by_left == peer_is_left {
            step.reply.ack = Some((self.height, self.last.hash));
        }
    }

    /// Whether our frame in flight is old enough to be re-stamped.
    pub fn needs_refresh(&self, clock: Clock) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.frame.timestamp.saturating_add(REFRESH_AFTER_MS) <= clock.timestamp)
    }

    /// Re-stamps our unacknowledged frame with `clock`, so that the peer, which refuses stale
    /// frames, can still take it. The old version stays valid for an ACK already on its way.
    /// Transactions that are no longer valid leave the new version (and are reported dropped
    /// if it is the one committed), which may so be left with none.
    pub fn refresh(&mut self, clock: Clock) -> Step {
        let mut step = Step::default();
        if !self.needs_refresh(clock) {
            return step;
        }
        let Some(old) = self.pending.as_ref() else {
            return step;
        };
        let side = self.side();
        let frame_clock = self.next_frame_clock(clock);
        let mut state = self.state.clone();
        let mut txs = Vec::new();
        let mut dropped = old.dropped.clone();
        for tx in &old.frame.txs {
            match self.apply_checked(&mut state, tx, side, frame_clock, None) {
                Ok(()) => txs.push(tx.clone()),
                Err(error) => dropped.push((tx.clone(), error)),
            }
        }
        let frame = Frame {
            timestamp: frame_clock.timestamp,
            j_height: frame_clock.j_height,
            txs,
            state_hash: state.hash(),
            ..old.frame.clone()
        };
        let hash = frame.hash(&self.key);
        self.carry_last_ack(&mut step);
        step.reply.proposal = Some((frame.clone(), hash));
        if let Some(old) = self.pending.replace(Box::new(PendingFrame {
            frame,
            hash,
            state,
            dropped,
        })) {
            self.superseded.push(*old);
            if self.superseded.len() > MAX_SUPERSEDED_VERSIONS {
                self.superseded.remove(0);
            }
        }
        step
    }
}

struct Accepted {
    state: AccountState,
    hash: Hash,
}

enum ProposalCheck {
    Accept(Box<Accepted>),
    Ignore,
    AckAgain(u64, Hash),
}
