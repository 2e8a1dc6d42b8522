//! The node's part of cooperative settlement (the rule and the agreement are the core's, see
//! `xln_core::account::plan_settlement`): the settlement digest, which is ABI encoding and so
//! comes from the chain adapter, and our entity's signature over it.
//!
//! - `xln settle <peer>` proposes the plan of the account ([`propose`]); once the peer signed,
//!   the proposer's node submits it (the core emits `ChainRequest::Settle`), and asking again
//!   re-submits it ([`resubmit`]).
//! - A proposal from a peer is checked before the core sees it ([`check_peer_message`]): its
//!   digest must be the one of its terms, or the message is dropped. The core checked the
//!   terms against the account and the peer's signature over the digest.
//! - The node accepts the peer's proposals on its own ([`acceptances`]): the core has checked
//!   that they pay out exactly what the account says each side owns.
//!
//! Only a single-signer entity can sign from one node: a board's quorum over the digest would
//! need a signing round among its members that the node does not have yet.

use crate::chain::batch::{ChainOp, Settlement};
use xln_core::account::{
    AccountTx, SettlementPlan, SettlementScope, SettlementTerms, plan_settlement,
};
use xln_core::board::{Board, EntityId, QuorumSignature};
use xln_core::crypto::{Hash, SignerKey};
use xln_core::delta::Side;
use xln_core::entity::{EntityState, EntityTx};
use xln_core::runtime::{Envelope, Payload};

/// The Depository's `settlementDigest` of `terms` for the account of `a` and `b`.
pub fn digest(domain: &Hash, a: EntityId, b: EntityId, terms: &SettlementTerms) -> Hash {
    Settlement::of_terms(a, b, terms).digest(domain)
}

fn sign(key: &SignerKey, digest: &Hash) -> QuorumSignature {
    QuorumSignature(vec![key.sign(digest)])
}

fn single_signer(board: &Board) -> Result<(), String> {
    if board.members().len() == 1 {
        Ok(())
    } else {
        Err(
            "cooperative settlement needs the board's quorum over the settlement digest, which \
             a node of a multi-signer entity cannot gather yet; `dispute` settles without it"
                .into(),
        )
    }
}

/// What `xln settle <peer>` does.
pub enum SettleAction {
    /// Propose the account's settlement.
    Propose { tx: EntityTx, what: String },
    /// Submit again the settlement both sides signed (it is not on chain yet).
    Resubmit { op: ChainOp, what: String },
}

/// The settlement of our account with `peer` in `scope`: a proposal of its plan, or, if one
/// both sides signed is still waiting for the chain, that one again.
pub fn request(
    state: &EntityState,
    peer: &EntityId,
    scope: SettlementScope,
    domain: &Hash,
    key: &SignerKey,
) -> Result<SettleAction, String> {
    single_signer(&state.board)?;
    let entry = state
        .accounts
        .get(peer)
        .ok_or_else(|| format!("no account with {}", peer.short()))?;
    let account = &entry.account;
    if let Some(pending) = &account.state().settlement.pending {
        let nonce = pending.terms.nonce;
        if let Some(op) = resubmit(state, peer, domain) {
            return Ok(SettleAction::Resubmit {
                op,
                what: format!("settlement {nonce} with {} submitted again", peer.short()),
            });
        }
        return match pending.proposer == account.side() {
            true => Err(format!(
                "settlement {nonce} with {} waits for the peer's signature (payments on the \
                 account are paused until it is on chain)",
                peer.short()
            )),
            false => Err(format!(
                "{} proposed settlement {nonce}; this node signs it as soon as it can",
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
            signature: sign(key, &digest),
        },
        what,
    })
}

/// The plan of a settlement of our account with `peer` in `scope`, with the reserves we know.
pub fn plan(
    state: &EntityState,
    peer: &EntityId,
    scope: SettlementScope,
) -> Result<SettlementPlan, String> {
    let account = &state
        .accounts
        .get(peer)
        .ok_or_else(|| format!("no account with {}", peer.short()))?
        .account;
    let side = account.side();
    plan_settlement(account.state(), scope, |of, token| {
        let reserve = if of == side {
            state.reserves.get(&token)
        } else {
            state.peer_reserves.get(&(*peer, token))
        };
        reserve.copied().unwrap_or(0)
    })
    .map_err(|e| format!("settlement with {}: {e}", peer.short()))
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
        "settlement {} with {} proposed ({}); it goes on chain once the peer signs, and \
         payments on the account pause until then",
        plan.terms.nonce,
        peer.short(),
        parts.join("; ")
    )
}

/// Our acceptances of the settlements our peers proposed that we have not signed yet (nor
/// queued our signature for), skipping those in `refused`.
pub fn acceptances(
    state: &EntityState,
    domain: &Hash,
    key: &SignerKey,
    refused: &std::collections::BTreeSet<(EntityId, Hash)>,
) -> Vec<EntityTx> {
    if single_signer(&state.board).is_err() {
        return Vec::new();
    }
    let mut out = Vec::new();
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
        let digest = digest(domain, state.id, *peer, &pending.terms);
        out.push(EntityTx::AcceptSettlement {
            peer: *peer,
            digest,
            signature: sign(key, &digest),
        });
    }
    out
}

/// The settlement both sides signed of the account with `peer`, for the chain.
pub fn resubmit(state: &EntityState, peer: &EntityId, domain: &Hash) -> Option<ChainOp> {
    let entry = state.accounts.get(peer)?;
    let pending = entry.account.state().settlement.pending.as_ref()?;
    let peer_signature = pending.counterparty_signature(entry.account.side())?;
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
            signature: sign(&key, &digest),
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
