//! The node's part of cooperative settlement (the rule and the agreement are the core's, see
//! `xln_core::account::settlement`): the settlement digest, which is ABI encoding and so
//! comes from the chain adapter, and our entity's signature over it, which the node gives only
//! for terms committed in the account (a signature stays good on chain until the account's
//! settlement nonce moves, whatever became of the proposal it was made for).
//!
//! - `xln settle <peer>` proposes the plan of the account ([`request`]), unsigned. Once the
//!   peer's acceptance (its signature) commits, the proposer's node submits it (the core emits
//!   `ChainRequest::Settle`), and asking again re-submits it ([`resubmit`]). Only the proposer
//!   submits: on the acceptor's side `xln settle <peer>` says so.
//! - The plan pays our debts from what is left of our reserve after what our other pending
//!   settlements take of it ([`plan`]).
//! - A proposal from a peer is checked before the core sees it ([`check_peer_message`]): its
//!   digest must be the one of its terms, or the message is dropped. The core checks the
//!   terms against the account.
//! - The node accepts the peer's proposals on its own once they committed ([`acceptances`]):
//!   the core has checked that they pay out exactly what the account says each side owns; one
//!   that would take more of our reserve than is left after our other pending settlements
//!   waits (with the reason logged) until the reserve covers it.
//!
//! A multi-signer entity's acceptance needs its board's quorum over the digest: the proposer's
//! node gathers it in a signing round (`node::signing`; each member signs only a settlement
//! pending in its own replica's account, over the digest of its terms, and covered by its
//! reserve), then the acceptance goes into a frame like a single signer's. Its own proposals
//! go on chain in a batch its board signs the same way. A settlement of a multi-signer
//! entity is not submitted again by `xln settle`: its board signs a committed request at one
//! batch nonce only.

use crate::chain::batch::{ChainOp, Settlement};
use xln_core::account::{AccountTx, SettlementPlan, SettlementScope, SettlementTerms};
use xln_core::board::{Board, EntityId, QuorumSignature};
use xln_core::crypto::{Hash, SignerKey};
use xln_core::delta::Side;
use xln_core::entity::{EntityState, EntityTx, EntityTxError};
use xln_core::runtime::{Envelope, Payload};

/// The Depository's `settlementDigest` of `terms` for the account of `a` and `b`.
pub fn digest(domain: &Hash, a: EntityId, b: EntityId, terms: &SettlementTerms) -> Hash {
    Settlement::of_terms(a, b, terms).digest(domain)
}

fn sign(key: &SignerKey, digest: &Hash) -> QuorumSignature {
    QuorumSignature(vec![key.sign(digest)])
}

fn single_signer(board: &Board) -> bool {
    board.members().len() == 1
}

/// What `xln settle <peer>` does.
pub enum SettleAction {
    /// Propose the account's settlement.
    Propose { tx: EntityTx, what: String },
    /// Submit again the settlement we proposed and the peer signed (it is not on chain yet).
    Resubmit { op: ChainOp, what: String },
}

/// The settlement of our account with `peer` in `scope`: a proposal of its plan, or, if one
/// we proposed and the peer signed is still waiting for the chain, that one again.
pub fn request(
    state: &EntityState,
    peer: &EntityId,
    scope: SettlementScope,
    domain: &Hash,
) -> Result<SettleAction, String> {
    let entry = state
        .accounts
        .get(peer)
        .ok_or_else(|| format!("no account with {}", peer.short()))?;
    let account = &entry.account;
    if let Some(pending) = &account.state().settlement.pending {
        let nonce = pending.terms.nonce;
        if let Some(op) = resubmit(state, peer, domain) {
            if !single_signer(&state.board) {
                return Err(format!(
                    "settlement {nonce} with {} is signed by the peer and went to the chain in \
                     a batch our board signed; the board signs a committed request at one \
                     batch nonce only, so it is not submitted again (if it did not land, \
                     `dispute` settles without it)",
                    peer.short()
                ));
            }
            return Ok(SettleAction::Resubmit {
                op,
                what: format!("settlement {nonce} with {} submitted again", peer.short()),
            });
        }
        return match (
            pending.proposer == account.side(),
            &pending.acceptor_signature,
        ) {
            (true, _) => Err(format!(
                "settlement {nonce} with {} waits for the peer's signature (payments on the \
                 account are paused until it is on chain)",
                peer.short()
            )),
            (false, None) => Err(format!(
                "{} proposed settlement {nonce}; this node signs it as soon as it can, and {} \
                 submits it to the chain (the proposer submits)",
                peer.short(),
                peer.short()
            )),
            (false, Some(_)) => Err(format!(
                "settlement {nonce} with {} is signed by this node; {} proposed it and submits \
                 it to the chain (only the proposer submits; payments on the account are paused \
                 until it is on chain, and a dispute settles without it)",
                peer.short(),
                peer.short()
            )),
        };
    }
    let plan = plan(state, peer, scope)?;
    let side = account.side();
    let digest = digest(domain, state.id, *peer, &plan.terms);
    let what = describe(&plan, side, peer);
    Ok(SettleAction::Propose {
        tx: EntityTx::ProposeSettlement {
            peer: *peer,
            terms: plan.terms,
            digest,
        },
        what,
    })
}

/// The plan of a settlement of our account with `peer` in `scope`, with the reserves we know:
/// of ours, what our other pending settlements leave of it (see
/// `EntityState::plan_settlement`).
pub fn plan(
    state: &EntityState,
    peer: &EntityId,
    scope: SettlementScope,
) -> Result<SettlementPlan, String> {
    if !state.accounts.contains_key(peer) {
        return Err(format!("no account with {}", peer.short()));
    }
    state.plan_settlement(peer, scope).map_err(|e| match e {
        EntityTxError::Settlement { error, .. } => {
            format!("settlement with {}: {error}", peer.short())
        }
        e => e.to_string(),
    })
}

/// The plan in words, from our side: what each reserve gets and what credit stays.
pub fn describe(plan: &SettlementPlan, side: Side, peer: &EntityId) -> String {
    let mut parts = Vec::new();
    for token in &plan.tokens {
        let d = &token.diff;
        let (ours, theirs) = match side {
            Side::Left => (d.left_diff, d.right_diff),
            Side::Right => (d.right_diff, d.left_diff),
        };
        let mut text = format!("token {}: ", d.token);
        if d.collateral_diff != 0 {
            let released = d.collateral_diff.unsigned_abs();
            text.push_str(&format!("collateral {released} released; "));
        }
        text.push_str(&format!("our reserve {ours:+}, the peer's {theirs:+}"));
        if let Some(debtor) = token.debtor {
            let who = if debtor == side {
                "we owe"
            } else {
                "the peer owes"
            };
            text.push_str(&format!("; {who} {} on credit", token.debt));
            if token.unpaid() > 0 {
                text.push_str(&format!(
                    ", {} stays owed (the debtor's reserve covers {})",
                    token.unpaid(),
                    token.paid
                ));
            }
        }
        parts.push(text);
    }
    format!(
        "settlement {} with {} proposed ({}); this node submits it to the chain once the peer \
         signs, and payments on the account pause until it is on chain",
        plan.terms.nonce,
        peer.short(),
        parts.join("; ")
    )
}

/// What [`acceptances`] gives.
#[derive(Debug, Default)]
pub struct Acceptances {
    /// Our signatures over the settlements our peers proposed, for the core.
    pub txs: Vec<EntityTx>,
    /// Settlements we do not sign for now, by peer and digest, and why: they would take more
    /// of our reserve than our other pending settlements leave.
    pub waiting: Vec<(EntityId, Hash, String)>,
    /// For a multi-signer entity, instead of `txs`: the settlements (by peer and digest) our
    /// board is to sign in a signing round.
    pub to_cosign: Vec<(EntityId, Hash)>,
}

/// Our acceptances of the settlements our peers proposed, committed in our accounts, that we
/// have not signed yet (nor queued our signature for), skipping those in `refused`.
pub fn acceptances(
    state: &EntityState,
    domain: &Hash,
    key: &SignerKey,
    refused: &std::collections::BTreeSet<(EntityId, Hash)>,
) -> Acceptances {
    let mut out = Acceptances::default();
    for (peer, entry) in &state.accounts {
        let account = &entry.account;
        let Some(pending) = &account.state().settlement.pending else {
            continue;
        };
        let is_accept = |tx: &AccountTx| matches!(tx, AccountTx::SettlementAccept { .. });
        let queued = account.mempool().iter().any(is_accept)
            || account
                .pending()
                .is_some_and(|frame| frame.frame.txs.iter().any(is_accept));
        if pending.proposer == account.side()
            || pending.acceptor_signature.is_some()
            || queued
            || refused.contains(&(*peer, pending.digest))
        {
            continue;
        }
        // The core refuses it too; here it waits, and is signed once the reserve covers it.
        if let Err(e) = state.check_settlement_reserve(peer, &pending.terms.diffs, account.side()) {
            let reason = format!(
                "settlement {} proposed by {} is not signed until our reserve covers it: {e}",
                pending.terms.nonce,
                peer.short()
            );
            out.waiting.push((*peer, pending.digest, reason));
            continue;
        }
        let digest = digest(domain, state.id, *peer, &pending.terms);
        if !single_signer(&state.board) {
            out.to_cosign.push((*peer, digest));
            continue;
        }
        out.txs.push(EntityTx::AcceptSettlement {
            peer: *peer,
            digest,
            signature: sign(key, &digest),
        });
    }
    out
}

/// The settlement we proposed to `peer` and it signed, for the chain (the acceptor has none:
/// only the proposer submits).
pub fn resubmit(state: &EntityState, peer: &EntityId, domain: &Hash) -> Option<ChainOp> {
    let entry = state.accounts.get(peer)?;
    let pending = entry.account.state().settlement.pending.as_ref()?;
    let peer_signature = pending.submittable_by(entry.account.side())?;
    Some(ChainOp::Settle(
        Settlement::of_terms(state.id, *peer, &pending.terms).signed_by(
            domain,
            *peer,
            entry.peer_board.clone(),
            peer_signature.clone(),
        ),
    ))
}

/// Refuses a peer's message that proposes a settlement signed over another digest than the
/// one of its terms: the core cannot compute the digest (ABI encoding is the chain adapter's),
/// so the node checks it before the core sees the message. `None`: nothing wrong.
pub fn check_peer_message(envelope: &Envelope, domain: &Hash) -> Option<String> {
    let Payload::Account { message, .. } = &envelope.payload else {
        return None;
    };
    let proposal = message.proposal.as_ref()?;
    proposal.frame.txs.iter().find_map(|tx| match tx {
        AccountTx::SettlementPropose {
            nonce,
            diffs,
            digest: claimed,
            ..
        } => {
            let terms = SettlementTerms {
                nonce: *nonce,
                diffs: diffs.clone(),
            };
            let actual = digest(domain, message.from, message.to, &terms);
            (actual != *claimed).then(|| {
                format!(
                    "settlement {nonce} proposed over digest {}, not the digest of its terms {}",
                    claimed.short(),
                    actual.short()
                )
            })
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use xln_core::account::{AccountMessage, Frame, SignedFrame, TokenDiff};
    use xln_core::crypto::keccak256;
    use xln_core::runtime::ReplicaId;

    fn proposal(from: EntityId, to: EntityId, terms: &SettlementTerms, digest: Hash) -> Envelope {
        let key = SignerKey::from_bytes(&[7; 32]).unwrap();
        let tx = AccountTx::SettlementPropose {
            nonce: terms.nonce,
            diffs: terms.diffs.clone(),
            digest,
        };
        let frame = Frame {
            height: 3,
            timestamp: 1,
            j_height: 1,
            txs: vec![tx],
            prev_frame_hash: Hash::ZERO,
            state_hash: Hash::ZERO,
            by_left: true,
        };
        let replica = |entity| ReplicaId {
            entity,
            signer: key.address(),
        };
        Envelope {
            from: replica(from),
            to: replica(to),
            payload: Payload::Account {
                message: AccountMessage {
                    from,
                    to,
                    ack: None,
                    proposal: Some(SignedFrame {
                        frame,
                        signature: QuorumSignature(Vec::new()),
                    }),
                },
                sender_board: Board::single(key.address()),
            },
        }
    }

    #[test]
    fn a_peer_proposal_must_carry_the_digest_of_its_terms() {
        let domain = keccak256(b"chain 31337, depository 0x01");
        let (a, b) = (EntityId([1; 32]), EntityId([2; 32]));
        let terms = SettlementTerms {
            nonce: 0,
            diffs: vec![TokenDiff {
                token: 1,
                left_diff: 60,
                right_diff: 40,
                collateral_diff: -100,
                ondelta_diff: -60,
            }],
        };
        let right = digest(&domain, a, b, &terms);
        assert_eq!(right, digest(&domain, b, a, &terms), "argument order");
        assert_eq!(
            check_peer_message(&proposal(a, b, &terms, right), &domain),
            None
        );

        // Signed over the digest of other terms (more for the proposer), another nonce, or
        // another jurisdiction: refused.
        let mut greedy = terms.clone();
        greedy.diffs[0].left_diff = 100;
        greedy.diffs[0].right_diff = 0;
        greedy.diffs[0].ondelta_diff = -100;
        let mut later = terms.clone();
        later.nonce = 1;
        let other_chain = keccak256(b"chain 1, depository 0x01");
        for wrong in [
            digest(&domain, a, b, &greedy),
            digest(&domain, a, b, &later),
            digest(&other_chain, a, b, &terms),
        ] {
            let refused = check_peer_message(&proposal(a, b, &terms, wrong), &domain);
            assert!(refused.is_some_and(|r| r.contains("not the digest of its terms")));
        }
    }
}
