//! One side's replica of a bilateral account and its 2-of-2 frame consensus (PROTOCOL.md §4).
//!
//! The machine never signs: it says which frame hashes its reply must carry signatures for,
//! and the entity (one key, or a board reaching quorum) signs them. It verifies the peer's
//! signatures against the peer's board.

use super::frame::{AccountKey, AccountMessage, DisputeProof, Frame, FrameAck, SignedFrame};
use super::tx::{AccountState, AccountTx, Clock, TxError};
use crate::board::{Board, EntityId, QuorumError, QuorumSignature};
use crate::crypto::Hash;
use crate::delta::Side;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Most transactions one frame may carry; bounds the work a peer can ask for.
pub const MAX_FRAME_TXS: usize = 10_000;
/// How far ahead of our clock a peer's frame timestamp may be, in milliseconds.
pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;

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
    #[error("frame {height} has no transactions")]
    EmptyFrame { height: u64 },
    #[error("frame {height} has {count} transactions, more than {MAX_FRAME_TXS}")]
    TooManyTxs { height: u64, count: usize },
    #[error("frame {height} goes back in time or in chain height")]
    TimeWentBack { height: u64 },
    #[error("frame {height} is stamped in the future")]
    FrameFromFuture { height: u64 },
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
    pending: Option<PendingFrame>,
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
        self.pending.as_ref()
    }
    pub fn mempool(&self) -> &VecDeque<AccountTx> {
        &self.mempool
    }
    /// The latest frame the peer signed: the dispute proof.
    pub fn proof(&self) -> Option<&DisputeProof> {
        self.proof.as_ref()
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
        let base = match (&acked, &self.pending) {
            (Some(_), Some(pending)) => Base {
                state: &pending.state,
                height: pending.frame.height,
                last: LastFrame::of(&pending.frame, pending.hash),
                pending: false,
            },
            _ => Base {
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
        if let Some(peer_signature) = acked {
            self.commit_own(peer_signature, &mut step);
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

    fn check_ack(
        &self,
        ack: &FrameAck,
        peer_board: &Board,
    ) -> Result<Option<QuorumSignature>, AccountError> {
        let height = ack.height;
        match &self.pending {
            Some(pending) if pending.frame.height == height => {
                if pending.hash != ack.frame_hash {
                    return Err(AccountError::AckMismatch { height });
                }
                peer_board
                    .verify_quorum(&pending.hash, &ack.signature)
                    .map_err(|error| AccountError::BadSignature { height, error })?;
                Ok(Some(ack.signature.clone()))
            }
            // A duplicate of an ACK already applied: nothing to do.
            _ if height <= self.height => Ok(None),
            _ => Err(AccountError::UnexpectedAck { height }),
        }
    }

    fn commit_own(&mut self, peer_signature: QuorumSignature, step: &mut Step) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let header = pending.frame.header();
        self.commit(pending.state, &pending.frame, pending.hash, step);
        self.proof = Some(DisputeProof {
            header,
            peer_signature,
        });
    }

    fn commit_peer(&mut self, proposal: &SignedFrame, accepted: Accepted, step: &mut Step) {
        if let Some(pending) = self.pending.take() {
            // We are RIGHT and lost the collision: our transactions go back to the front.
            let txs = pending.frame.txs;
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
            let hash = frame.hash(&self.key);
            if height == base.height && hash == base.last.hash && base.last.by_left == peer_is_left
            {
                // The peer did not get our ACK and resent its frame: ACK it again.
                return Ok(ProposalCheck::AckAgain(height, hash));
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
        if frame.txs.is_empty() {
            return Err(AccountError::EmptyFrame { height });
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
            state
                .apply(tx, by, frame_clock)
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
        let frame_clock = Clock {
            timestamp: clock.timestamp.max(self.last.timestamp),
            j_height: clock.j_height.max(self.last.j_height),
        };
        let mut state = self.state.clone();
        let mut txs = Vec::new();
        while txs.len() < MAX_FRAME_TXS {
            let Some(tx) = self.mempool.pop_front() else {
                break;
            };
            match state.apply(&tx, side, frame_clock) {
                Ok(()) => txs.push(tx),
                Err(error) => step.events.push(AccountEvent::TxDropped { tx, error }),
            }
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
        let peer_is_left = side == Side::Right;
        if step.reply.ack.is_none() && self.height > 0 && self.last.by_left == peer_is_left {
            // Carry the ACK of the peer's last frame again, so that the proposal can be
            // applied even if it overtakes the message that first carried the ACK.
            step.reply.ack = Some((self.height, self.last.hash));
        }
        step.reply.proposal = Some((frame.clone(), hash));
        self.pending = Some(PendingFrame { frame, hash, state });
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
