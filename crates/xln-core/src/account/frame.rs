//! Account frames and the messages that carry them between the two sides (PROTOCOL.md §4).

use super::tx::AccountTx;
use crate::board::{EntityId, QuorumSignature};
use crate::codec::{Packed, hash_of, tag};
use crate::crypto::Hash;
use serde::{Deserialize, Serialize};

/// A proposed step of an account: transactions and the state hash they lead to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub height: u64,
    /// Runtime time in milliseconds, from the proposer's input.
    pub timestamp: u64,
    /// The jurisdiction block height the proposer had seen.
    pub j_height: u64,
    pub txs: Vec<AccountTx>,
    pub prev_frame_hash: Hash,
    pub state_hash: Hash,
    pub by_left: bool,
}

/// A frame without its transactions, which is all a dispute needs: the contract recomputes
/// the frame hash from it and the state hash from the deltas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameHeader {
    pub height: u64,
    pub timestamp: u64,
    pub j_height: u64,
    pub txs_hash: Hash,
    pub prev_frame_hash: Hash,
    pub state_hash: Hash,
    pub by_left: bool,
}

/// What the signatures of a frame are bound to besides the frame: the jurisdiction (chain id
/// and Depository address, hashed by the chain adapter; zero off chain) and the two entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountKey {
    pub domain: Hash,
    pub left: EntityId,
    pub right: EntityId,
}

impl Frame {
    pub fn header(&self) -> FrameHeader {
        FrameHeader {
            height: self.height,
            timestamp: self.timestamp,
            j_height: self.j_height,
            txs_hash: hash_of(&self.txs),
            prev_frame_hash: self.prev_frame_hash,
            state_hash: self.state_hash,
            by_left: self.by_left,
        }
    }

    pub fn hash(&self, key: &AccountKey) -> Hash {
        self.header().hash(key)
    }
}

impl FrameHeader {
    /// The digest both entities sign: `keccak256(abi.encodePacked(FRAME_TAG, domain, left,
    /// right, uint64 height, uint64 timestamp, uint64 j_height, txs_hash, prev_frame_hash,
    /// state_hash, bool by_left))`.
    pub fn hash(&self, key: &AccountKey) -> Hash {
        Packed::new()
            .bytes32(&tag("xln.account.frame.v1").0)
            .bytes32(&key.domain.0)
            .bytes32(&key.left.0)
            .bytes32(&key.right.0)
            .u64(self.height)
            .u64(self.timestamp)
            .u64(self.j_height)
            .bytes32(&self.txs_hash.0)
            .bytes32(&self.prev_frame_hash.0)
            .bytes32(&self.state_hash.0)
            .bool(self.by_left)
            .hash()
    }
}

/// A proposal: the frame and its proposer's entity signature over the frame hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedFrame {
    pub frame: Frame,
    pub signature: QuorumSignature,
}

/// A countersignature: the acknowledging entity's signature over the frame hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameAck {
    pub height: u64,
    pub frame_hash: Hash,
    pub signature: QuorumSignature,
}

/// One message of an account's two sides: an ACK, a proposal, or both (a proposal
/// piggybacked on an ACK).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountMessage {
    pub from: EntityId,
    pub to: EntityId,
    pub ack: Option<FrameAck>,
    pub proposal: Option<SignedFrame>,
}

/// The latest state signed by the peer: what this side takes to the chain in a dispute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeProof {
    pub header: FrameHeader,
    pub peer_signature: QuorumSignature,
}
