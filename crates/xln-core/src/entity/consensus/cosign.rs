//! Co-signing on-chain digests among the members of a board (PROTOCOL.md §5, §11).
//!
//! What goes on chain for an entity needs its board's quorum over a digest: a batch
//! (`Depository.processBatch` checks a quorum over `batchDigest(entity, nonce, batch)`) or the
//! acceptance of a peer's settlement (the settlement digest). The proposer's node gathers the
//! quorum in a signing round: it asks every member (itself included) with
//! [`EntityMessage::SignBatch`] or [`EntityMessage::SignSettlement`] and collects the
//! [`EntityMessage::Signed`] answers until their weight reaches the threshold.
//!
//! **The rule**: a member signs a digest only if it recomputes it from what its own replica
//! committed, never because the proposer says so.
//!
//! - A batch: every chain request of it must be one that a frame this replica committed
//!   produced (kept, the last [`KEPT_CHAIN_REQUESTS`] of them; a dispute start is one, its
//!   proof taken from the committed account by `EntityTx::Dispute`), and the digest must be the
//!   Depository's batch digest of those requests at the nonce asked. Each committed request
//!   is signed at one batch nonce only (asking again at the same nonce signs again, a retry):
//!   the chain applies a nonce once, so a request committed once goes on chain at most once,
//!   whatever the proposer asks.
//! - A settlement acceptance: the peer's proposal must be pending in our account, not
//!   accepted yet, the digest must be the settlement digest of its terms, and our reserve must
//!   cover it with our other pending settlements (as the core checks when the acceptance
//!   commits).
//!
//! The digests are ABI encodings (the chain adapter's); the runtime is given a
//! [`ChainDigests`] to compute them. A replica without one signs nothing.

use super::{ConsensusError, EntityMessage, EntityReplica, ReplicaOutput};
use crate::account::SettlementTerms;
use crate::board::EntityId;
use crate::crypto::{Address, Hash, Signature, SignerKey};
use crate::entity::state::{ChainRequest, EntityEvent};
use serde::{Deserialize, Serialize};

/// How many of the chain requests its committed frames produced a replica of a board of
/// several members keeps for signing their batches (oldest dropped first: a request older
/// than that is not signed any more).
pub const KEPT_CHAIN_REQUESTS: usize = 1_024;

/// The digests the chain checks signatures over, computed as the contracts do (the chain
/// adapter implements it; the core cannot ABI-encode). Pure functions: the same arguments
/// give the same digest on every machine, so replaying a log signs the same.
pub trait ChainDigests: Send + Sync {
    /// The Depository's batch digest of `requests` (in this order) for `entity` at its batch
    /// `nonce`, bound to the jurisdiction `domain`.
    fn batch(
        &self,
        domain: &Hash,
        entity: &EntityId,
        nonce: u64,
        requests: &[ChainRequest],
    ) -> Hash;
    /// The Depository's settlement digest of `terms` for the account of `a` and `b`.
    fn settlement(
        &self,
        domain: &Hash,
        a: &EntityId,
        b: &EntityId,
        terms: &SettlementTerms,
    ) -> Hash;
}

/// A chain request a committed frame produced, and the batch nonce it was signed at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct KeptChainRequest {
    pub height: u64,
    pub request: ChainRequest,
    pub signed_at: Option<u64>,
}

impl EntityReplica {
    /// Keeps the chain requests of the frame committed at `height` (from its events), for
    /// signing their batch. A one-member board keeps none: nobody asks it.
    pub(super) fn keep_chain_requests(&mut self, height: u64, events: &[EntityEvent]) {
        if self.state.board.members().len() < 2 {
            return;
        }
        for event in events {
            if let EntityEvent::ChainRequested(request) = event {
                if self.chain_requests.len() == KEPT_CHAIN_REQUESTS {
                    self.chain_requests.pop_front();
                }
                self.chain_requests.push_back(KeptChainRequest {
                    height,
                    request: request.clone(),
                    signed_at: None,
                });
            }
        }
    }

    /// The chain requests kept for signing: (height committed at, request, batch nonce signed
    /// at), oldest first.
    pub fn kept_chain_requests(&self) -> impl Iterator<Item = (u64, &ChainRequest, Option<u64>)> {
        self.chain_requests
            .iter()
            .map(|kept| (kept.height, &kept.request, kept.signed_at))
    }

    fn check_asked_by_proposer(&self, from: Address) -> Result<(), ConsensusError> {
        if from != self.state.board.proposer() {
            return Err(ConsensusError::SignNotFromProposer);
        }
        Ok(())
    }

    fn signed_reply(&self, digest: Hash, key: &SignerKey) -> Vec<ReplicaOutput> {
        vec![ReplicaOutput::ToMember {
            signer: self.state.board.proposer(),
            message: EntityMessage::Signed {
                digest,
                signature: key.sign(&digest),
            },
        }]
    }

    /// Signs the batch of `requests` at `nonce` if `digest` is its batch digest and every
    /// request is one our committed frames produced, not signed at another nonce (see the
    /// module doc). Refused: nothing changes.
    pub(super) fn on_sign_batch(
        &mut self,
        from: Address,
        nonce: u64,
        requests: &[ChainRequest],
        digest: Hash,
        key: &SignerKey,
        digests: Option<&dyn ChainDigests>,
    ) -> Result<Vec<ReplicaOutput>, ConsensusError> {
        self.check_asked_by_proposer(from)?;
        let digests = digests.ok_or(ConsensusError::NoChainDigests)?;
        if requests.is_empty() || requests.len() > KEPT_CHAIN_REQUESTS {
            return Err(ConsensusError::BadBatchSize {
                count: requests.len(),
            });
        }
        if digests.batch(&self.state.domain, &self.state.id, nonce, requests) != digest {
            return Err(ConsensusError::DigestMismatch { digest });
        }
        // Each request takes a kept one: one already signed at this nonce first (a retry of
        // the same batch), else one never signed. One signed at another nonce never.
        let mut taken = vec![false; self.chain_requests.len()];
        for (index, request) in requests.iter().enumerate() {
            let pick = self
                .chain_requests
                .iter()
                .enumerate()
                .filter(|(i, kept)| {
                    !taken[*i]
                        && kept.request == *request
                        && kept.signed_at.is_none_or(|n| n == nonce)
                })
                .min_by_key(|(_, kept)| kept.signed_at.is_none())
                .map(|(i, _)| i)
                .ok_or(ConsensusError::NotCommitted { nonce, index })?;
            taken[pick] = true;
        }
        for (kept, taken) in self.chain_requests.iter_mut().zip(taken) {
            if taken {
                kept.signed_at = Some(nonce);
            }
        }
        Ok(self.signed_reply(digest, key))
    }

    /// Signs the acceptance of the settlement `peer` proposed, if it is pending in our
    /// account, not accepted yet, `digest` is the settlement digest of its terms and our
    /// reserve covers it (see the module doc). Signs nothing else.
    pub(super) fn on_sign_settlement(
        &self,
        from: Address,
        peer: EntityId,
        digest: Hash,
        key: &SignerKey,
        digests: Option<&dyn ChainDigests>,
    ) -> Result<Vec<ReplicaOutput>, ConsensusError> {
        self.check_asked_by_proposer(from)?;
        let digests = digests.ok_or(ConsensusError::NoChainDigests)?;
        let state = &self.state;
        let entry = state
            .accounts
            .get(&peer)
            .ok_or(ConsensusError::NoSettlementToSign { peer })?;
        let account = &entry.account;
        let side = account.side();
        let pending = account
            .state()
            .settlement
            .pending
            .as_ref()
            .filter(|p| p.proposer != side && p.acceptor_signature.is_none())
            .ok_or(ConsensusError::NoSettlementToSign { peer })?;
        let actual = digests.settlement(&state.domain, &state.id, &peer, &pending.terms);
        if actual != digest || pending.digest != digest {
            return Err(ConsensusError::DigestMismatch { digest });
        }
        state
            .check_settlement_reserve(&peer, &pending.terms.diffs, side)
            .map_err(|error| ConsensusError::SettlementNotCovered {
                peer,
                error: Box::new(error),
            })?;
        Ok(self.signed_reply(digest, key))
    }

    /// A member's signature for the proposer's signing round: it must be the sender's over
    /// `digest`. Whether a round waits for it is the node's business.
    pub(super) fn on_signed(
        &self,
        from: Address,
        digest: Hash,
        signature: Signature,
    ) -> Result<Vec<ReplicaOutput>, ConsensusError> {
        if !self.is_proposer() {
            return Err(ConsensusError::NotProposer);
        }
        if self.state.board.signer_of(&digest, &signature) != Some(from) {
            return Err(ConsensusError::BadCoSignature { digest });
        }
        Ok(vec![ReplicaOutput::CoSigned {
            digest,
            signer: from,
            signature,
        }])
    }
}
