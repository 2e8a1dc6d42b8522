//! BFT consensus of an entity's board (PROTOCOL.md §5).
//!
//! The first board member proposes entity frames; every member replays a proposal and, only if
//! its own state hash matches, precommits by signing the frame hash and the hashes of the
//! account frames the entity frame produces. At quorum weight the proposer commits with the
//! collected signatures; every member checks the quorum before applying. A member never
//! precommits two different frames at one height. A one-signer entity commits at once.
//!
//! A member that missed commits asks a member for them ([`EntityMessage::SyncRequest`]) and
//! checks each frame sent as a commit. A member further behind than the [`KEPT_COMMITS`] frames
//! members keep is sent the sender's committed state with the frame that committed it
//! ([`EntityMessage::Snapshot`]); it takes the state only if the frame's certificate reaches
//! its board's threshold and the state hashes to the frame's state hash. Like every message,
//! the snapshot is a runtime input, which the node logs: replaying the log takes it again.
//!
//! What the entity signs for the chain (a batch, a settlement acceptance) a board signs in a
//! signing round: each member signs only what it recomputes from its own committed state (see
//! `cosign`, and `node::signing` for the proposer's side).

use super::state::{EntityEvent, EntityState, EntityTx, EntityTxError, Outcome};
use crate::account::AccountMessage;
use crate::board::{Board, EntityId, QuorumError, QuorumSignature};
use crate::codec::{Packed, hash_of, tag};
use crate::crypto::{Address, Hash, Signature, SignerKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

mod cosign;
use cosign::KeptChainRequest;
pub use cosign::{ChainDigests, KEPT_CHAIN_REQUESTS};

/// Most transactions one entity frame may carry.
pub const MAX_ENTITY_FRAME_TXS: usize = 10_000;
/// How far from a member's clock a proposal's timestamp may be, either way, in milliseconds:
/// the entity's time stamps its account frames, which peers take only as fresh as this.
pub const MAX_ENTITY_CLOCK_SKEW_MS: u64 = crate::account::MAX_CLOCK_SKEW_MS;
/// How many of the last committed frames, with their certificates, a replica of a board of
/// several members keeps for members that fell behind. It bounds the replica's size (it is
/// snapshotted); a member further behind is sent the whole state instead
/// ([`EntityMessage::Snapshot`]).
pub const KEPT_COMMITS: usize = 256;
/// Most bytes of frames one sync reply carries (at least one frame), well under the
/// transport's message limit; a member further behind asks again.
pub const MAX_SYNC_REPLY_BYTES: usize = 1 << 20;
/// Most bytes of an encoded [`EntityMessage::Snapshot`]: the transport's bound on one message
/// (4 MiB, the node's `net::DEFAULT_MAX_MESSAGE_BYTES`) less room for the envelope around it.
/// A larger state is not sent in parts: the member that asked is told
/// ([`EntityMessage::SnapshotTooLarge`]) and stays behind.
pub const MAX_SNAPSHOT_BYTES: usize = (4 << 20) - (4 << 10);
/// How long a member that fell behind waits before asking again from the same height, in
/// milliseconds: a flood of frames from ahead makes one request, not one each.
pub const SYNC_RETRY_MS: u64 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityFrame {
    pub height: u64,
    pub timestamp: u64,
    pub txs: Vec<EntityTx>,
    pub prev_hash: Hash,
    pub state_hash: Hash,
}

impl EntityFrame {
    /// `keccak256(abi.encodePacked(ENTITY_FRAME_TAG, entity, uint64 height, uint64 timestamp,
    /// txs_hash, prev_hash, state_hash))`.
    pub fn hash(&self, entity: &EntityId) -> Hash {
        Packed::new()
            .bytes32(&tag("xln.entity.frame.v1").0)
            .bytes32(&entity.0)
            .u64(self.height)
            .u64(self.timestamp)
            .bytes32(&hash_of(&self.txs).0)
            .bytes32(&self.prev_hash.0)
            .bytes32(&self.state_hash.0)
            .hash()
    }
}

/// A committed frame with the quorum over its hash: what a member that fell behind is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedFrame {
    pub frame: EntityFrame,
    pub certificate: QuorumSignature,
}

/// Messages between the replicas of one entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntityMessage {
    /// Transactions for the proposer, from a member that received them.
    Forward { txs: Vec<EntityTx> },
    /// The proposer's frame, signed by the proposer.
    Propose {
        frame: EntityFrame,
        signature: Signature,
    },
    /// A member's signatures over the frame hash and then over each account frame hash the
    /// frame produces, in order.
    Precommit {
        height: u64,
        frame_hash: Hash,
        signatures: Vec<Signature>,
    },
    /// The frame with a quorum over its hash. (The quorums over the account frame hashes go
    /// out on the proposer's account messages.)
    Commit {
        frame: EntityFrame,
        certificate: QuorumSignature,
    },
    /// From a member that got a frame ahead of its height: the committed frames from
    /// `from_height` on, please.
    SyncRequest { from_height: u64 },
    /// Committed frames in height order, and the sender's committed height (when it is past
    /// the last frame, there is more to ask for).
    SyncReply {
        commits: Vec<CommittedFrame>,
        committed_height: u64,
    },
    /// From the proposer: sign `digest`, the Depository's batch digest of `requests` at our
    /// entity's batch `nonce`. A member signs only requests its own committed frames produced,
    /// each at one nonce (see `cosign`).
    SignBatch {
        nonce: u64,
        requests: Vec<super::state::ChainRequest>,
        digest: Hash,
    },
    /// From the proposer: sign `digest`, the settlement digest of the settlement `peer`
    /// proposed, pending in our account with it (to accept it).
    SignSettlement { peer: EntityId, digest: Hash },
    /// A member's signature over `digest`, for the proposer's signing round.
    Signed { digest: Hash, signature: Signature },
    /// To a member that asked for frames older than the ones kept: the sender's committed state
    /// and the frame that committed it, with its certificate (the frame commits to the state's
    /// hash). Appended after the other variants, so that their encodings do not change.
    Snapshot {
        state: Box<EntityState>,
        commit: CommittedFrame,
    },
    /// Instead of a snapshot: the sender's state at `committed_height` encodes to `bytes`, more
    /// than [`MAX_SNAPSHOT_BYTES`].
    SnapshotTooLarge { committed_height: u64, bytes: u64 },
}

/// Why a consensus message was refused. The replica is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    #[error("frame {height} is old (committed height {committed})")]
    Stale { height: u64, committed: u64 },
    #[error("frame {height} is ahead of the expected height {expected}")]
    Future { height: u64, expected: u64 },
    #[error("frame {height} does not follow the last committed frame")]
    WrongPrevHash { height: u64 },
    #[error("frame {height} is not signed by the proposer")]
    NotFromProposer { height: u64 },
    #[error("frame {height} goes back in time or is stamped in the future")]
    BadTimestamp { height: u64 },
    #[error("frame {height} has no transactions or more than {MAX_ENTITY_FRAME_TXS}")]
    BadTxCount { height: u64 },
    #[error("frame {height}: transaction {index} is invalid: {error}")]
    InvalidTx {
        height: u64,
        index: usize,
        error: Box<EntityTxError>,
    },
    #[error("frame {height}: state hash does not match the replay")]
    StateHashMismatch { height: u64 },
    #[error("already precommitted another frame at height {height}")]
    AlreadyPrecommitted { height: u64 },
    #[error("precommit for frame {height} that is not the one proposed")]
    UnknownFrame { height: u64 },
    #[error("not from a board member")]
    NotAMember,
    #[error("precommit carries {got} signatures, the frame needs {expected}")]
    WrongSignatureCount { got: usize, expected: usize },
    #[error("frame {height}: {error}")]
    NoQuorum { height: u64, error: QuorumError },
    #[error("only the proposer takes this message")]
    NotProposer,
    #[error("the proposer does not take this message")]
    ProposerOnly,
    #[error("sync reply: frame {height} does not follow our committed frame or the one before it")]
    SyncGap { height: u64 },
    #[error("state snapshot of entity {entity}, not of ours")]
    SnapshotOfAnotherEntity { entity: EntityId },
    #[error("state snapshot at height {height}: its board is not ours (a board does not change)")]
    SnapshotOfAnotherBoard { height: u64 },
    #[error(
        "state snapshot at height {height}: the state sent is not the one the committed frame \
         commits to"
    )]
    SnapshotMismatch { height: u64 },
    #[error(
        "we are further behind than the {KEPT_COMMITS} frames members keep, and the member's \
         state at height {height} encodes to {bytes} bytes, more than the {MAX_SNAPSHOT_BYTES} a \
         state snapshot may take: this replica cannot catch up from it"
    )]
    SnapshotTooLarge { height: u64, bytes: u64 },
    #[error("only the proposer asks for signatures")]
    SignNotFromProposer,
    #[error("this replica has no chain digests: it cannot check what it is asked to sign")]
    NoChainDigests,
    #[error("a batch to sign must hold 1 to {KEPT_CHAIN_REQUESTS} requests, not {count}")]
    BadBatchSize { count: usize },
    #[error("digest {digest} is not the digest of what it is said to stand for: not signed")]
    DigestMismatch { digest: Hash },
    #[error(
        "batch at nonce {nonce}: request {index} is not one our committed frames produced (or it \
         was signed at another nonce): not signed"
    )]
    NotCommitted { nonce: u64, index: usize },
    #[error("no settlement proposed by {peer} waits for our signature")]
    NoSettlementToSign { peer: EntityId },
    #[error("settlement with {peer} not signed: {error}")]
    SettlementNotCovered {
        peer: EntityId,
        error: Box<EntityTxError>,
    },
    #[error("a signature over {digest} not from the member that sent it")]
    BadCoSignature { digest: Hash },
}

/// What a replica asks the runtime to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaOutput {
    /// To another replica of the same entity.
    ToMember {
        signer: Address,
        message: EntityMessage,
    },
    /// To a peer entity, about our account with it.
    ToPeer {
        peer_board: Board,
        message: AccountMessage,
        sender_board: Board,
    },
    /// To a peer entity, about netting (signed by our board).
    ToPeerNetting {
        peer_board: Board,
        message: super::netting::SignedNettingMessage,
        sender_board: Board,
    },
    Event(EntityEvent),
    /// A transaction the proposer left out of its frame, and why.
    TxDropped {
        tx: EntityTx,
        error: EntityTxError,
    },
    /// A frame was committed at this height.
    Committed {
        height: u64,
        frame_hash: Hash,
    },
    /// We went from committed height `from` to `height` (the frame `frame_hash`) by a state
    /// snapshot: the frames between were not replayed, so their events did not come out.
    SnapshotApplied {
        from: u64,
        height: u64,
        frame_hash: Hash,
    },
    /// An operation for the jurisdiction (from the proposer only, once the frame commits).
    Chain(super::state::ChainRequest),
    /// A member's valid signature over `digest`, for the proposer's signing round.
    CoSigned {
        digest: Hash,
        signer: Address,
        signature: Signature,
    },
}

/// The proposer's frame waiting for precommits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InFlight {
    frame: EntityFrame,
    hash: Hash,
    state: EntityState,
    digests: Vec<Hash>,
    /// Signatures of each member who precommitted: frame hash first, then the digests. A
    /// board of one signs the digests alone (see [`sign_all`]).
    precommits: BTreeMap<Address, Vec<Signature>>,
    outcome: Outcome,
}

/// A member's precommitted frame: never another one at this height.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Locked {
    height: u64,
    hash: Hash,
    state: EntityState,
    signatures: Vec<Signature>,
    events: Vec<EntityEvent>,
}

/// A committed frame kept for members that fall behind, with its hash (computed when it was
/// committed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct KeptCommit {
    frame_hash: Hash,
    commit: CommittedFrame,
}

/// The last request for missing commits: the height asked from, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct SyncRequested {
    from_height: u64,
    at: u64,
}

/// One signer's replica of an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityReplica {
    signer: Address,
    state: EntityState,
    /// Transactions waiting for the next frame (the proposer's).
    mempool: Vec<EntityTx>,
    in_flight: Option<InFlight>,
    locked: Option<Locked>,
    /// The last committed frames, oldest first, at most [`KEPT_COMMITS`] (none for a
    /// one-member board: nobody would ask).
    kept_commits: VecDeque<KeptCommit>,
    sync_requested: Option<SyncRequested>,
    /// The chain requests of our last committed frames, for co-signing their batches (none
    /// for a one-member board), oldest first, at most [`KEPT_CHAIN_REQUESTS`].
    chain_requests: VecDeque<KeptChainRequest>,
    /// ECDH secrets of the onion sessions that reached us (the proposer opens the layers).
    #[serde(skip)]
    onion_cache: crate::onion::OnionCache,
}

impl EntityReplica {
    pub fn new(signer: Address, state: EntityState) -> Self {
        Self {
            signer,
            state,
            mempool: Vec::new(),
            in_flight: None,
            locked: None,
            kept_commits: VecDeque::new(),
            sync_requested: None,
            chain_requests: VecDeque::new(),
            onion_cache: crate::onion::OnionCache::default(),
        }
    }

    pub fn signer(&self) -> Address {
        self.signer
    }

    /// A commitment to the whole replica: the keccak of its encoding in which each entity
    /// state (the committed one, and those of a frame in flight or precommitted) stands for its
    /// [`EntityState::hash`], so that it costs what changed since the last call.
    pub fn hash(&self) -> Hash {
        self.commitment(EntityState::hash)
    }

    /// [`EntityReplica::hash`] computed reading no cache.
    pub fn hash_from_scratch(&self) -> Hash {
        self.commitment(EntityState::hash_from_scratch)
    }

    fn commitment(&self, state_hash: fn(&EntityState) -> Hash) -> Hash {
        // Every field by name: a new field does not compile until it is committed to here.
        let EntityReplica {
            signer,
            state,
            mempool,
            in_flight,
            locked,
            kept_commits,
            sync_requested,
            chain_requests,
            onion_cache: _,
        } = self;
        let in_flight = in_flight.as_ref().map(|in_flight| {
            let InFlight {
                frame,
                hash,
                state,
                digests,
                precommits,
                outcome,
            } = in_flight;
            (frame, hash, state_hash(state), digests, precommits, outcome)
        });
        let locked = locked.as_ref().map(|locked| {
            let Locked {
                height,
                hash,
                state,
                signatures,
                events,
            } = locked;
            (height, hash, state_hash(state), signatures, events)
        });
        // A kept frame stands for its hash: re-encoding up to KEPT_COMMITS frames at every call
        // would cost more than the rest of the replica.
        let kept_commits: Vec<(&Hash, &QuorumSignature)> = kept_commits
            .iter()
            .map(|kept| (&kept.frame_hash, &kept.commit.certificate))
            .collect();
        hash_of(&(
            "xln.entity.replica.v3",
            signer,
            state_hash(state),
            mempool,
            in_flight,
            locked,
            kept_commits,
            sync_requested,
            chain_requests,
        ))
    }
    pub fn state(&self) -> &EntityState {
        &self.state
    }
    pub fn is_proposer(&self) -> bool {
        self.state.board.proposer() == self.signer
    }
    /// Whether the board is this one member alone: it commits at once.
    fn solo(&self) -> bool {
        self.state.board.members().len() == 1
    }
    pub fn mempool(&self) -> &[EntityTx] {
        &self.mempool
    }
    /// Whether a frame of ours awaits precommits.
    pub fn is_proposing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Transactions submitted at this replica: the proposer queues them, others forward them.
    pub fn submit(&mut self, txs: Vec<EntityTx>) -> Vec<ReplicaOutput> {
        if self.is_proposer() {
            self.mempool.extend(txs);
            Vec::new()
        } else {
            vec![ReplicaOutput::ToMember {
                signer: self.state.board.proposer(),
                message: EntityMessage::Forward { txs },
            }]
        }
    }

    /// Handles a message from the replica of signer `from` (authenticated by the transport;
    /// the consensus messages also carry signatures). `now` is the runtime's time. Requests to
    /// co-sign are refused: see [`EntityReplica::handle_with`].
    pub fn handle(
        &mut self,
        from: Address,
        message: EntityMessage,
        key: &SignerKey,
        now: u64,
    ) -> Result<Vec<ReplicaOutput>, ConsensusError> {
        self.handle_with(from, message, key, now, None)
    }

    /// [`EntityReplica::handle`], with the chain's digests to check requests to co-sign
    /// against (see `cosign`).
    pub fn handle_with(
        &mut self,
        from: Address,
        message: EntityMessage,
        key: &SignerKey,
        now: u64,
        digests: Option<&dyn ChainDigests>,
    ) -> Result<Vec<ReplicaOutput>, ConsensusError> {
        match message {
            EntityMessage::Forward { txs } => {
                if !self.is_proposer() {
                    return Err(ConsensusError::NotProposer);
                }
                if self.state.board.weight_of(&from).is_none() {
                    return Err(ConsensusError::NotAMember);
                }
                self.mempool.extend(txs);
                Ok(Vec::new())
            }
            EntityMessage::Propose { frame, signature } => {
                self.on_propose(&frame, &signature, key, now)
            }
            EntityMessage::Precommit {
                height,
                frame_hash,
                signatures,
            } => self.on_precommit(height, frame_hash, signatures),
            EntityMessage::Commit { frame, certificate } => {
                self.on_commit(&frame, &certificate, now)
            }
            EntityMessage::SyncRequest { from_height } => {
                let mut outputs = self.on_sync_request(from, from_height)?;
                // The member was behind, so it refused our frame in flight as ahead of it:
                // once the reply caught it up, it needs that proposal again (nothing else
                // sends it twice), or a quorum that counts on it never forms.
                if let Some(in_flight) = &self.in_flight
                    && !outputs.is_empty()
                {
                    outputs.push(ReplicaOutput::ToMember {
                        signer: from,
                        message: EntityMessage::Propose {
                            frame: in_flight.frame.clone(),
                            signature: key.sign(&in_flight.hash),
                        },
                    });
                }
                Ok(outputs)
            }
            EntityMessage::SyncReply {
                commits,
                committed_height,
            } => self.on_sync_reply(from, commits, committed_height, now),
            EntityMessage::SignBatch {
                nonce,
                requests,
                digest,
            } => self.on_sign_batch(from, nonce, &requests, digest, key, digests),
            EntityMessage::SignSettlement { peer, digest } => {
                self.on_sign_settlement(from, peer, digest, key, digests)
            }
            EntityMessage::Signed { digest, signature } => self.on_signed(from, digest, signature),
            EntityMessage::Snapshot { state, commit } => self.on_snapshot(from, *state, commit),
            EntityMessage::SnapshotTooLarge {
                committed_height,
                bytes,
            } => {
                self.check_catch_up_from(from)?;
                Err(ConsensusError::SnapshotTooLarge {
                    height: committed_height,
                    bytes,
                })
            }
        }
    }

    /// The proposer builds a frame from its mempool, if it has one and none is in flight.
    /// Transactions that fail are left out and reported.
    pub fn propose(&mut self, key: &SignerKey, now: u64) -> Vec<ReplicaOutput> {
        if !self.is_proposer() || self.in_flight.is_some() {
            return Vec::new();
        }
        self.queue_own_duties(key, now);
        if self.mempool.is_empty() {
            return Vec::new();
        }
        let mut outputs = Vec::new();
        let mut state = self.state.clone();
        state.height += 1;
        state.timestamp = now.max(self.state.timestamp);
        let mut outcome = Outcome::default();
        let mut txs = Vec::new();
        let queued = std::mem::take(&mut self.mempool);
        let mut queued = queued.into_iter();
        for tx in queued.by_ref() {
            if txs.len() == MAX_ENTITY_FRAME_TXS {
                self.mempool.push(tx);
                break;
            }
            match state.apply_tx(&tx, &mut outcome) {
                Ok(()) => txs.push(tx),
                Err(error) => outputs.push(ReplicaOutput::TxDropped { tx, error }),
            }
        }
        self.mempool.extend(queued);
        if txs.is_empty() {
            return outputs;
        }
        state.flush_accounts(&mut outcome);
        let frame = EntityFrame {
            height: state.height,
            timestamp: state.timestamp,
            txs,
            prev_hash: self.state.prev_hash,
            state_hash: state.hash(),
        };
        let hash = frame.hash(&self.state.id);
        state.prev_hash = hash;
        let digests = outcome.digests();
        let own = sign_all(key, (!self.solo()).then_some(&hash), &digests);
        let mut precommits = BTreeMap::new();
        precommits.insert(self.signer, own);
        for member in self.state.board.members() {
            if member.signer != self.signer {
                outputs.push(ReplicaOutput::ToMember {
                    signer: member.signer,
                    message: EntityMessage::Propose {
                        frame: frame.clone(),
                        signature: key.sign(&hash),
                    },
                });
            }
        }
        self.in_flight = Some(InFlight {
            frame,
            hash,
            state,
            digests,
            precommits,
            outcome,
        });
        // A board whose proposer alone reaches the threshold commits at once.
        outputs.extend(self.try_commit());
        outputs
    }

    /// What only the proposer can do: decrypt the onions of incoming locks (with its key),
    /// notice locks and peers' swap offers past expiry and account frames waiting too long. Each becomes a
    /// transaction every member checks.
    fn queue_own_duties(&mut self, key: &SignerKey, now: u64) {
        let awaiting: Vec<((EntityId, u64), Vec<u8>)> = self
            .state
            .awaiting_instructions()
            .filter(|(k, _)| !self.mempool.iter().any(|tx| tx.is_instruction_for(k)))
            .map(|(k, payload)| (*k, payload.clone()))
            .collect();
        for ((peer, lock_id), payload) in awaiting {
            let hashlock = self
                .state
                .accounts
                .get(&peer)
                .and_then(|entry| entry.account.state().locks.get(&lock_id))
                .map(|lock| lock.hashlock)
                .unwrap_or(Hash::ZERO);
            let instruction = crate::onion::open(key, &payload, &hashlock, &mut self.onion_cache)
                .ok()
                .map(Box::new);
            self.mempool.push(EntityTx::HtlcInstruction {
                peer,
                lock_id,
                instruction,
            });
        }
        let clock = crate::account::Clock {
            timestamp: now.max(self.state.timestamp),
            j_height: self.state.j_height,
        };
        if !self.mempool.contains(&EntityTx::CancelExpired)
            && !self.state.expired_outgoing(clock).is_empty()
        {
            self.mempool.push(EntityTx::CancelExpired);
        }
        if !self.mempool.contains(&EntityTx::RefreshFrames) && self.state.needs_refresh(clock) {
            self.mempool.push(EntityTx::RefreshFrames);
        }
        if !self.mempool.contains(&EntityTx::ExpireOffers)
            && !self.state.expired_offers(clock).is_empty()
        {
            self.mempool.push(EntityTx::ExpireOffers);
        }
        if !self.mempool.contains(&EntityTx::ExpireNetting) && self.state.netting_expired(clock) {
            self.mempool.push(EntityTx::ExpireNetting);
        }
    }

    fn on_propose(
        &mut self,
        frame: &EntityFrame,
        signature: &Signature,
        key: &SignerKey,
        now: u64,
    ) -> Result<Vec<ReplicaOutput>, ConsensusError> {
        if self.is_proposer() {
            return Err(ConsensusError::ProposerOnly);
        }
        let height = frame.height;
        let hash = frame.hash(&self.state.id);
        if self.state.board.signer_of(&hash, signature) != Some(self.state.board.proposer()) {
            return Err(ConsensusError::NotFromProposer { height });
        }
        if let Some(locked) = self.locked.as_ref().filter(|l| l.height == height) {
            if locked.hash != hash {
                return Err(ConsensusError::AlreadyPrecommitted { height });
            }
            // The same proposal again: precommit again, nothing else changes.
            return Ok(vec![self.precommit_output(
                height,
                hash,
                locked.signatures.clone(),
            )]);
        }
        // A proposal must be fresh; a commit (checked by `replay` alone) may come late to a
        // member that missed it.
        if frame.timestamp.saturating_add(MAX_ENTITY_CLOCK_SKEW_MS) < now {
            return Err(ConsensusError::BadTimestamp { height });
        }
        let (state, outcome) = self.replay(frame, now)?;
        let signatures = sign_all(key, Some(&hash), &outcome.digests());
        self.locked = Some(Locked {
            height,
            hash,
            state,
            signatures: signatures.clone(),
            events: outcome.events,
        });
        Ok(vec![self.precommit_output(height, hash, signatures)])
    }

    fn precommit_output(
        &self,
        height: u64,
        frame_hash: Hash,
        signatures: Vec<Signature>,
    ) -> ReplicaOutput {
        ReplicaOutput::ToMember {
            signer: self.state.board.proposer(),
            message: EntityMessage::Precommit {
                height,
                frame_hash,
                signatures,
            },
        }
    }

    /// Replays `frame` on a copy of the state: every check a member makes before signing.
    fn replay(
        &self,
        frame: &EntityFrame,
        now: u64,
    ) -> Result<(EntityState, Outcome), ConsensusError> {
        let height = frame.height;
        if height <= self.state.height {
            return Err(ConsensusError::Stale {
                height,
                committed: self.state.height,
            });
        }
        if height != self.state.height + 1 {
            return Err(ConsensusError::Future {
                height,
                expected: self.state.height + 1,
            });
        }
        if frame.prev_hash != self.state.prev_hash {
            return Err(ConsensusError::WrongPrevHash { height });
        }
        if frame.timestamp < self.state.timestamp
            || frame.timestamp > now.saturating_add(MAX_ENTITY_CLOCK_SKEW_MS)
        {
            return Err(ConsensusError::BadTimestamp { height });
        }
        if frame.txs.is_empty() || frame.txs.len() > MAX_ENTITY_FRAME_TXS {
            return Err(ConsensusError::BadTxCount { height });
        }
        let mut state = self.state.clone();
        state.height = height;
        state.timestamp = frame.timestamp;
        let mut outcome = Outcome::default();
        for (index, tx) in frame.txs.iter().enumerate() {
            state
                .apply_tx(tx, &mut outcome)
                .map_err(|error| ConsensusError::InvalidTx {
                    height,
                    index,
                    error: Box::new(error),
                })?;
        }
        state.flush_accounts(&mut outcome);
        if state.hash() != frame.state_hash {
            return Err(ConsensusError::StateHashMismatch { height });
        }
        state.prev_hash = frame.hash(&self.state.id);
        Ok((state, outcome))
    }

    fn on_precommit(
        &mut self,
        height: u64,
        frame_hash: Hash,
        signatures: Vec<Signature>,
    ) -> Result<Vec<ReplicaOutput>, ConsensusError> {
        if self.is_proposer() && height <= self.state.height {
            // A precommit that arrived after the quorum was reached: nothing left to do.
            return Ok(Vec::new());
        }
        let Some(in_flight) = &self.in_flight else {
            return Err(if self.is_proposer() {
                ConsensusError::UnknownFrame { height }
            } else {
                ConsensusError::NotProposer
            });
        };
        if in_flight.frame.height != height || in_flight.hash != frame_hash {
            return Err(ConsensusError::UnknownFrame { height });
        }
        let expected = 1 + in_flight.digests.len();
        if signatures.len() != expected {
            return Err(ConsensusError::WrongSignatureCount {
                got: signatures.len(),
                expected,
            });
        }
        let board = &self.state.board;
        let signer = board
            .signer_of(&frame_hash, &signatures[0])
            .ok_or(ConsensusError::NotAMember)?;
        let all_signed = in_flight
            .digests
            .iter()
            .zip(&signatures[1..])
            .all(|(digest, signature)| board.signer_of(digest, signature) == Some(signer));
        if !all_signed {
            return Err(ConsensusError::NotAMember);
        }
        if let Some(in_flight) = &mut self.in_flight {
            in_flight.precommits.insert(signer, signatures);
        }
        Ok(self.try_commit())
    }

    /// Commits the in-flight frame once its precommits reach the threshold.
    fn try_commit(&mut self) -> Vec<ReplicaOutput> {
        let Some(in_flight) = &self.in_flight else {
            return Vec::new();
        };
        let board = &self.state.board;
        let weight: u64 = in_flight
            .precommits
            .keys()
            .filter_map(|signer| board.weight_of(signer))
            .sum();
        if weight < board.threshold() {
            return Vec::new();
        }
        let Some(in_flight) = self.in_flight.take() else {
            return Vec::new();
        };
        // A board of one has no signature over the frame hash: nobody else sees its frames.
        let solo = self.solo();
        let first_digest = usize::from(!solo);
        let certificate = QuorumSignature(if solo {
            Vec::new()
        } else {
            in_flight.precommits.values().map(|s| s[0]).collect()
        });
        let account_signatures: Vec<QuorumSignature> = (0..in_flight.digests.len())
            .map(|i| {
                QuorumSignature(
                    in_flight
                        .precommits
                        .values()
                        .map(|s| s[first_digest + i])
                        .collect(),
                )
            })
            .collect();
        let mut outputs = Vec::new();
        for member in self.state.board.members() {
            if member.signer != self.signer {
                outputs.push(ReplicaOutput::ToMember {
                    signer: member.signer,
                    message: EntityMessage::Commit {
                        frame: in_flight.frame.clone(),
                        certificate: certificate.clone(),
                    },
                });
            }
        }
        let by_digest: BTreeMap<Hash, QuorumSignature> = in_flight
            .digests
            .iter()
            .copied()
            .zip(account_signatures)
            .collect();
        let sender_board = self.state.board.clone();
        let me = self.state.id;
        for outgoing in in_flight.outcome.outgoing {
            let signed = outgoing.reply.sign(me, outgoing.peer, |digest| {
                by_digest.get(digest).cloned().unwrap_or_default()
            });
            if let Some(message) = signed {
                outputs.push(ReplicaOutput::ToPeer {
                    peer_board: outgoing.peer_board,
                    message,
                    sender_board: sender_board.clone(),
                });
            }
        }
        for outgoing in in_flight.outcome.netting {
            let signature = by_digest
                .get(&outgoing.message.digest())
                .cloned()
                .unwrap_or_default();
            outputs.push(ReplicaOutput::ToPeerNetting {
                peer_board: outgoing.peer_board,
                message: super::netting::SignedNettingMessage {
                    message: outgoing.message,
                    signature,
                },
                sender_board: sender_board.clone(),
            });
        }
        let chain_events: Vec<EntityEvent> = in_flight
            .outcome
            .events
            .iter()
            .filter(|e| matches!(e, EntityEvent::ChainRequested(_)))
            .cloned()
            .collect();
        outputs.extend(
            in_flight
                .outcome
                .events
                .into_iter()
                .map(ReplicaOutput::Event),
        );
        outputs.extend(
            in_flight
                .outcome
                .chain
                .into_iter()
                .map(ReplicaOutput::Chain),
        );
        outputs.push(ReplicaOutput::Committed {
            height: in_flight.frame.height,
            frame_hash: in_flight.hash,
        });
        self.state = in_flight.state;
        self.keep_chain_requests(in_flight.frame.height, &chain_events);
        self.keep_commit(in_flight.hash, in_flight.frame, certificate);
        outputs
    }

    fn on_commit(
        &mut self,
        frame: &EntityFrame,
        certificate: &QuorumSignature,
        now: u64,
    ) -> Result<Vec<ReplicaOutput>, ConsensusError> {
        if self.is_proposer() {
            return Err(ConsensusError::ProposerOnly);
        }
        self.apply_commit(frame, certificate, now)
    }

    /// Checks a committed frame (the quorum over its hash, then the replay unless it is the
    /// frame we precommitted) and applies it.
    fn apply_commit(
        &mut self,
        frame: &EntityFrame,
        certificate: &QuorumSignature,
        now: u64,
    ) -> Result<Vec<ReplicaOutput>, ConsensusError> {
        let height = frame.height;
        let hash = frame.hash(&self.state.id);
        self.state
            .board
            .verify_quorum(&hash, certificate)
            .map_err(|error| ConsensusError::NoQuorum { height, error })?;
        let (state, events) = match self.locked.take() {
            Some(locked) if locked.height == height && locked.hash == hash => {
                (locked.state, locked.events)
            }
            locked => {
                // A member that missed the proposal replays the committed frame. The quorum
                // vouches for it, but the replay must still match.
                match self.replay(frame, now) {
                    Ok((state, outcome)) => (state, outcome.events),
                    Err(error) => {
                        self.locked = locked;
                        return Err(error);
                    }
                }
            }
        };
        self.state = state;
        self.keep_chain_requests(height, &events);
        self.keep_commit(hash, frame.clone(), certificate.clone());
        let mut outputs: Vec<ReplicaOutput> =
            events.into_iter().map(ReplicaOutput::Event).collect();
        outputs.push(ReplicaOutput::Committed {
            height,
            frame_hash: hash,
        });
        Ok(outputs)
    }

    fn keep_commit(&mut self, frame_hash: Hash, frame: EntityFrame, certificate: QuorumSignature) {
        if self.state.board.members().len() < 2 {
            return;
        }
        if self.kept_commits.len() == KEPT_COMMITS {
            self.kept_commits.pop_front();
        }
        self.kept_commits.push_back(KeptCommit {
            frame_hash,
            commit: CommittedFrame { frame, certificate },
        });
    }

    /// The committed frames kept for members that fall behind, oldest first.
    pub fn kept_commits(&self) -> impl Iterator<Item = &CommittedFrame> {
        self.kept_commits.iter().map(|kept| &kept.commit)
    }

    /// Called after member `from` sent a frame ahead of our height
    /// ([`ConsensusError::Future`]): asks it for the commits we lack, unless we asked for the
    /// same ones less than [`SYNC_RETRY_MS`] ago.
    pub fn ask_for_commits(&mut self, from: Address, now: u64) -> Vec<ReplicaOutput> {
        if from == self.signer || self.state.board.weight_of(&from).is_none() {
            return Vec::new();
        }
        let from_height = self.state.height + 1;
        if let Some(last) = self.sync_requested
            && last.from_height == from_height
            && now < last.at.saturating_add(SYNC_RETRY_MS)
        {
            return Vec::new();
        }
        self.sync_requested = Some(SyncRequested {
            from_height,
            at: now,
        });
        vec![ReplicaOutput::ToMember {
            signer: from,
            message: EntityMessage::SyncRequest { from_height },
        }]
    }

    /// Sends a member the kept commits from `from_height` on, as many as fit in one reply. A
    /// member further behind than what is kept is sent our committed state instead.
    fn on_sync_request(
        &self,
        from: Address,
        from_height: u64,
    ) -> Result<Vec<ReplicaOutput>, ConsensusError> {
        if from == self.signer || self.state.board.weight_of(&from).is_none() {
            return Err(ConsensusError::NotAMember);
        }
        let Some(oldest_kept) = self.kept_commits.front().map(|k| k.commit.frame.height) else {
            return Ok(Vec::new());
        };
        if from_height < oldest_kept {
            return Ok(self.snapshot_for(from));
        }
        let mut commits = Vec::new();
        let mut bytes = 0;
        for kept in &self.kept_commits {
            if kept.commit.frame.height < from_height {
                continue;
            }
            bytes += crate::codec::encode(&kept.commit).len();
            if !commits.is_empty() && bytes > MAX_SYNC_REPLY_BYTES {
                break;
            }
            commits.push(kept.commit.clone());
        }
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![ReplicaOutput::ToMember {
            signer: from,
            message: EntityMessage::SyncReply {
                commits,
                committed_height: self.state.height,
            },
        }])
    }

    /// Our committed state with the frame that committed it, for `member`; or, if it would not
    /// fit in a message, how large it is.
    fn snapshot_for(&self, member: Address) -> Vec<ReplicaOutput> {
        // The last kept frame is the one that committed our state: both change together.
        let Some(latest) = self
            .kept_commits
            .back()
            .filter(|kept| kept.commit.frame.height == self.state.height)
        else {
            return Vec::new();
        };
        let snapshot = EntityMessage::Snapshot {
            state: Box::new(self.state.clone()),
            commit: latest.commit.clone(),
        };
        let bytes = crate::codec::encode(&snapshot).len();
        let message = if bytes > MAX_SNAPSHOT_BYTES {
            EntityMessage::SnapshotTooLarge {
                committed_height: self.state.height,
                bytes: bytes as u64,
            }
        } else {
            snapshot
        };
        vec![ReplicaOutput::ToMember {
            signer: member,
            message,
        }]
    }

    /// Whether a member that fell behind takes commits or a state from `from`.
    fn check_catch_up_from(&self, from: Address) -> Result<(), ConsensusError> {
        if self.is_proposer() {
            return Err(ConsensusError::ProposerOnly);
        }
        if from == self.signer || self.state.board.weight_of(&from).is_none() {
            return Err(ConsensusError::NotAMember);
        }
        Ok(())
    }

    /// Applies the commits of a sync reply in order, each checked as a commit is. One bad
    /// frame refuses the whole reply and changes nothing. Frames we have are skipped; if the
    /// sender has more, we ask for them.
    fn on_sync_reply(
        &mut self,
        from: Address,
        commits: Vec<CommittedFrame>,
        committed_height: u64,
        now: u64,
    ) -> Result<Vec<ReplicaOutput>, ConsensusError> {
        self.check_catch_up_from(from)?;
        let mut caught_up = self.clone();
        let mut outputs = Vec::new();
        for CommittedFrame { frame, certificate } in &commits {
            let height = caught_up.state.height;
            if frame.height <= height {
                continue;
            }
            if frame.height > height + 1 {
                return Err(ConsensusError::SyncGap {
                    height: frame.height,
                });
            }
            outputs.extend(caught_up.apply_commit(frame, certificate, now)?);
        }
        *self = caught_up;
        if self.state.height < committed_height {
            outputs.extend(self.ask_for_commits(from, now));
        }
        Ok(outputs)
    }

    /// Takes a member's committed state in place of ours, the frames between unreplayed, if
    /// our board's quorum committed it: the frame is above our height, its certificate reaches
    /// our board's threshold over its hash (which binds our entity id), and the state sent is
    /// the one the frame commits to, hashed here. Refused, nothing changes.
    fn on_snapshot(
        &mut self,
        from: Address,
        state: EntityState,
        commit: CommittedFrame,
    ) -> Result<Vec<ReplicaOutput>, ConsensusError> {
        self.check_catch_up_from(from)?;
        let CommittedFrame { frame, certificate } = commit;
        let height = frame.height;
        if height <= self.state.height {
            return Err(ConsensusError::Stale {
                height,
                committed: self.state.height,
            });
        }
        if state.id != self.state.id {
            return Err(ConsensusError::SnapshotOfAnotherEntity { entity: state.id });
        }
        // No transaction changes a board, so the one we know is the one that signs the frame.
        let frame_hash = frame.hash(&self.state.id);
        self.state
            .board
            .verify_quorum(&frame_hash, &certificate)
            .map_err(|error| ConsensusError::NoQuorum { height, error })?;
        // Rebuilt from its encoding: no cache that came with it (the Merkle roots, the board's
        // keys) is read or kept.
        let mut state: EntityState =
            crate::codec::decode("entity state", &crate::codec::encode(&state))
                .map_err(|_| ConsensusError::SnapshotMismatch { height })?;
        if state.board != self.state.board {
            return Err(ConsensusError::SnapshotOfAnotherBoard { height });
        }
        // A frame's state hash is taken before the frame's own hash becomes the `prev_hash`.
        state.prev_hash = frame.prev_hash;
        if state.height != height || state.hash() != frame.state_hash {
            return Err(ConsensusError::SnapshotMismatch { height });
        }
        state.prev_hash = frame_hash;

        let from_height = self.state.height;
        self.state = state;
        // A member precommits only one above its committed height, so at or below `height`:
        // those heights are committed now, and a proposal at one is refused as stale.
        self.locked = self.locked.take().filter(|locked| locked.height > height);
        // The frames we kept end below the snapshot's; from it on they follow again. The chain
        // requests we kept stay, with the nonces they were signed at (those of the frames
        // skipped are not known here: this member does not co-sign them).
        self.kept_commits.clear();
        self.keep_commit(frame_hash, frame, certificate);
        Ok(vec![ReplicaOutput::SnapshotApplied {
            from: from_height,
            height,
            frame_hash,
        }])
    }
}

/// A precommit: the signature over the frame hash (for the other members and the kept
/// certificates; a board of one, whose frames nobody else sees, leaves it out and saves a
/// signature per frame), then one over each account frame hash.
fn sign_all(key: &SignerKey, frame_hash: Option<&Hash>, digests: &[Hash]) -> Vec<Signature> {
    frame_hash
        .into_iter()
        .chain(digests)
        .map(|digest| key.sign(digest))
        .collect()
}
