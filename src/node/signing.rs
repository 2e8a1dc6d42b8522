//! Signing rounds of a multi-signer board, run by the proposer's node.
//!
//! What goes on chain for the entity needs its board's quorum over a digest: a batch of the
//! chain requests its frames committed (the chain worker asks, see `chain_worker`), or the
//! acceptance of a peer's settlement pending in one of its accounts (the writer asks). The
//! proposer's node sends every member (itself included, through its own runtime) the request
//! to sign, an `EntityMessage::SignBatch` or `SignSettlement`; each member's replica signs only
//! what it recomputes from its own committed state (`xln_core::entity::consensus::cosign`) and
//! answers with `EntityMessage::Signed`, which the proposer's replica checks (the sender's
//! signature over the digest) before the round here counts it. Once the signatures' weight
//! reaches the board's threshold the round is done: the quorum goes to the chain worker, or
//! into an `AcceptSettlement` of the next frame.
//!
//! Members that have not signed are asked again every [`RESEND_MS`] (one may have been
//! offline, or behind on commits). A batch round ends when the chain worker stops waiting for
//! it (it asks again, then drops the batch, see `chain_worker::ROUND_TIMEOUT`); a settlement
//! round lasts while the settlement is pending and warns once after [`WARN_AFTER_MS`].
//! Rounds are not persisted: after a restart the chain worker's batch is gone (as for a
//! single-signer entity's) and settlement rounds start again.

use std::collections::BTreeMap;
use tokio::sync::oneshot;
use xln_core::board::{Board, EntityId, QuorumSignature};
use xln_core::crypto::{Address, Hash, Signature};
use xln_core::entity::EntityMessage;

/// How often members that have not signed are asked again.
pub const RESEND_MS: u64 = 2_000;
/// After how long a round that is still short of the threshold is logged.
pub const WARN_AFTER_MS: u64 = 10_000;

/// What a finished round's quorum is for.
#[derive(Debug)]
pub enum Done {
    /// The chain worker waits for it (a batch).
    Reply(oneshot::Sender<QuorumSignature>),
    /// Our acceptance of the settlement `peer` proposed.
    Accept { peer: EntityId },
}

#[derive(Debug)]
struct Round {
    ask: EntityMessage,
    what: String,
    signatures: BTreeMap<Address, Signature>,
    done: Done,
    started_at: u64,
    asked_at: u64,
    warned: bool,
}

/// A round that reached the threshold.
#[derive(Debug)]
pub struct Finished {
    pub digest: Hash,
    pub what: String,
    pub quorum: QuorumSignature,
    pub done: Done,
}

/// What [`Rounds::tend`] asks of the writer.
#[derive(Debug, Default)]
pub struct Tended {
    /// Ask these members again with this message.
    pub ask: Vec<(EntityMessage, Vec<Address>)>,
    pub warnings: Vec<String>,
}

/// The proposer's signing rounds, by digest.
#[derive(Debug, Default)]
pub struct Rounds {
    rounds: BTreeMap<Hash, Round>,
}

impl Rounds {
    /// Starts the round for `digest` (or, if one runs, hands it the new `done` and asks
    /// again, keeping the signatures it has): returns the members to ask.
    pub fn start(
        &mut self,
        board: &Board,
        digest: Hash,
        ask: EntityMessage,
        what: String,
        done: Done,
        now: u64,
    ) -> Vec<Address> {
        let round = self.rounds.entry(digest).or_insert_with(|| Round {
            ask: ask.clone(),
            what: what.clone(),
            signatures: BTreeMap::new(),
            done: Done::Accept {
                peer: EntityId::ZERO,
            },
            started_at: now,
            asked_at: now,
            warned: false,
        });
        round.ask = ask;
        round.what = what;
        round.done = done;
        round.asked_at = now;
        missing(board, round)
    }

    /// Whether a round for `digest` runs.
    pub fn running(&self, digest: &Hash) -> bool {
        self.rounds.contains_key(digest)
    }

    /// Counts `signer`'s `signature` (checked by our replica: the signer's, over `digest`)
    /// for the round of `digest`, if one runs; returns it once its weight reaches the
    /// threshold. A signature for no round changes nothing.
    pub fn signed(
        &mut self,
        board: &Board,
        digest: Hash,
        signer: Address,
        signature: Signature,
    ) -> Option<Finished> {
        let round = self.rounds.get_mut(&digest)?;
        board.weight_of(&signer)?;
        round.signatures.insert(signer, signature);
        let quorum = QuorumSignature(round.signatures.values().copied().collect());
        board.verify_quorum(&digest, &quorum).ok()?;
        let round = self.rounds.remove(&digest)?;
        Some(Finished {
            digest,
            what: round.what,
            quorum,
            done: round.done,
        })
    }

    /// Drops the rounds nobody waits for any more and those `keep` refuses; asks again the
    /// members of the others that have not signed, every [`RESEND_MS`]; warns once about a
    /// round short of its threshold after [`WARN_AFTER_MS`].
    pub fn tend(&mut self, board: &Board, now: u64, keep: impl Fn(&Done) -> bool) -> Tended {
        self.rounds.retain(|_, round| match &round.done {
            Done::Reply(reply) => !reply.is_closed(),
            done => keep(done),
        });
        let mut tended = Tended::default();
        for round in self.rounds.values_mut() {
            if now >= round.asked_at.saturating_add(RESEND_MS) {
                round.asked_at = now;
                tended.ask.push((round.ask.clone(), missing(board, round)));
            }
            if !round.warned && now >= round.started_at.saturating_add(WARN_AFTER_MS) {
                round.warned = true;
                let weight: u64 = round
                    .signatures
                    .keys()
                    .filter_map(|s| board.weight_of(s))
                    .sum();
                tended.warnings.push(format!(
                    "{}: the board has signed weight {weight} of the {} needed after {} s; \
                     asking the other members again",
                    round.what,
                    board.threshold(),
                    WARN_AFTER_MS / 1_000
                ));
            }
        }
        tended
    }
}

fn missing(board: &Board, round: &Round) -> Vec<Address> {
    board
        .members()
        .iter()
        .map(|m| m.signer)
        .filter(|s| !round.signatures.contains_key(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xln_core::board::BoardMember;
    use xln_core::crypto::{SignerKey, keccak256};

    #[test]
    fn a_round_ends_at_the_threshold_and_ignores_what_it_did_not_ask() {
        let keys: Vec<SignerKey> = (1..=3u8)
            .map(|i| SignerKey::from_bytes(&[i; 32]).unwrap())
            .collect();
        let board = Board::new(
            2,
            keys.iter()
                .map(|k| BoardMember {
                    signer: k.address(),
                    weight: 1,
                })
                .collect(),
        )
        .unwrap();
        let digest = keccak256(b"batch");
        let ask = EntityMessage::SignSettlement {
            peer: EntityId([7; 32]),
            digest,
        };
        let mut rounds = Rounds::default();
        let (reply, mut signed) = oneshot::channel();
        let asked = rounds.start(&board, digest, ask, "b".into(), Done::Reply(reply), 0);
        assert_eq!(asked.len(), 3);

        // A signature for another digest, or from outside the board: nothing.
        let other = keccak256(b"other");
        assert!(
            rounds
                .signed(&board, other, keys[1].address(), keys[1].sign(&other))
                .is_none()
        );
        let outsider = SignerKey::from_bytes(&[9; 32]).unwrap();
        assert!(
            rounds
                .signed(&board, digest, outsider.address(), outsider.sign(&digest))
                .is_none()
        );
        // One member, even twice, is short of the threshold.
        for _ in 0..2 {
            let sig = keys[0].sign(&digest);
            assert!(
                rounds
                    .signed(&board, digest, keys[0].address(), sig)
                    .is_none()
            );
        }
        assert!(signed.try_recv().is_err());
        let tended = rounds.tend(&board, RESEND_MS, |_| true);
        assert_eq!(
            tended.ask[0].1,
            vec![keys[1].address(), keys[2].address()],
            "only those that have not signed are asked again"
        );
        // The second member reaches it.
        let finished = rounds
            .signed(&board, digest, keys[2].address(), keys[2].sign(&digest))
            .unwrap();
        board.verify_quorum(&digest, &finished.quorum).unwrap();
        assert!(!rounds.running(&digest));

        // A round whose waiter left is dropped.
        let (reply, signed) = oneshot::channel();
        let ask = EntityMessage::SignSettlement {
            peer: EntityId([7; 32]),
            digest,
        };
        rounds.start(&board, digest, ask, "b".into(), Done::Reply(reply), 0);
        drop(signed);
        rounds.tend(&board, 1, |_| true);
        assert!(!rounds.running(&digest));
    }
}
