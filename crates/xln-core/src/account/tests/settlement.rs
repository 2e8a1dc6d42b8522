//! Cooperative settlement inside the account: the rule that computes the diffs, the 2-of-2
//! agreement, payments refused while a settlement is pending, and every refusal (bad signature,
//! stale nonce, terms that do not pay out the account, a landing our follower did not see)
//! leaving the state as it was.
//!
//! The settlement digest is ABI encoding, computed by the node's chain adapter; the core only
//! needs both sides to hold the same one, so these tests stand one in ([`digest`]). The anvil
//! test in `tests/chain.rs` runs the same agreement with the Depository's digest.

use super::*;
use crate::account::settlement::check_terms;
use crate::delta::{Delta, TokenId};

fn digest() -> Hash {
    keccak256(b"a settlement digest, as the node computes it")
}

fn delta(collateral: u128, ondelta: i128, offdelta: i128) -> Delta {
    Delta {
        collateral,
        ondelta,
        offdelta,
        left_credit_limit: 1_000,
        right_credit_limit: 1_000,
        ..Delta::default()
    }
}

fn state_with(delta: Delta) -> AccountState {
    let pair = Pair::new();
    let mut state = AccountState::new(pair.left.id, pair.right.id);
    state.deltas.insert(TOKEN, delta);
    state
}

/// LEFT's and RIGHT's totals (reserve + position in the account) before and after applying a
/// diff: a settlement never changes them.
fn assert_totals_kept(before: &Delta, diff: &TokenDiff) {
    let total = before.total().unwrap();
    let collateral = before.collateral as i128;
    assert_eq!(diff.left_diff + diff.right_diff + diff.collateral_diff, 0);
    let total_after = total + diff.ondelta_diff;
    let collateral_after = collateral + diff.collateral_diff;
    assert_eq!(collateral_after, 0);
    // LEFT's position is Δ, RIGHT's is C − Δ.
    assert_eq!(diff.left_diff + total_after, total);
    assert_eq!(
        diff.right_diff + (collateral_after - total_after),
        collateral - total
    );
}

#[test]
fn the_collateral_is_split_by_delta_and_credit_debt_paid_from_the_debtor_reserve() {
    let reserves = |left: u128, right: u128| {
        move |side: Side, _| match side {
            Side::Left => left,
            Side::Right => right,
        }
    };
    // Δ = 60 of C = 100: LEFT gets 60, RIGHT 40, the account ends flat.
    let inside = delta(100, 100, -40);
    let plan = plan_settlement(
        &state_with(inside.clone()),
        SettlementScope::Account,
        reserves(0, 0),
    )
    .unwrap();
    let expected = TokenDiff {
        token: TOKEN,
        left_diff: 60,
        right_diff: 40,
        collateral_diff: -100,
        ondelta_diff: -60,
    };
    assert_eq!(plan.terms.diffs, vec![expected]);
    assert_eq!((plan.tokens[0].debtor, plan.tokens[0].debt), (None, 0));
    assert_totals_kept(&inside, &expected);
    assert_eq!(inside.total().unwrap() + expected.ondelta_diff, 0);

    // Δ = 150 of C = 100: RIGHT owes LEFT 50 on credit and has 30 in reserve: LEFT gets the
    // collateral and 30; 20 stays owed.
    let beyond = delta(100, 100, 50);
    let plan = plan_settlement(
        &state_with(beyond.clone()),
        SettlementScope::Account,
        reserves(0, 30),
    )
    .unwrap();
    let token = plan.tokens[0];
    assert_eq!(token.diff.left_diff, 130);
    assert_eq!(token.diff.right_diff, -30);
    assert_eq!(token.diff.ondelta_diff, -130);
    assert_eq!(
        (token.debtor, token.debt, token.paid),
        (Some(Side::Right), 50, 30)
    );
    assert_eq!(token.unpaid(), 20);
    assert_totals_kept(&beyond, &token.diff);
    assert_eq!(beyond.total().unwrap() + token.diff.ondelta_diff, 20);

    // Δ = −40: LEFT owes RIGHT 40 and can pay it: RIGHT gets the collateral and 40; flat.
    let below = delta(100, 0, -40);
    let plan = plan_settlement(
        &state_with(below.clone()),
        SettlementScope::Account,
        reserves(500, 0),
    )
    .unwrap();
    let token = plan.tokens[0];
    assert_eq!((token.diff.left_diff, token.diff.right_diff), (-40, 140));
    assert_eq!(token.diff.ondelta_diff, 40);
    assert_totals_kept(&below, &token.diff);
    assert_eq!(below.total().unwrap() + token.diff.ondelta_diff, 0);

    // Credit debt only, no reserve to pay it: nothing to settle.
    let unpayable = delta(0, 0, -40);
    assert_eq!(
        plan_settlement(
            &state_with(unpayable),
            SettlementScope::Account,
            reserves(0, 0)
        ),
        Err(TxError::NothingToSettle)
    );
}

#[test]
fn a_debt_settlement_pays_one_tokens_credit_debt_and_leaves_the_collateral() {
    const OTHER: TokenId = TOKEN + 1;
    // Δ = 170 of C = 100 in TOKEN: RIGHT owes LEFT 70 on credit and has 50 in reserve.
    let mut state = state_with(delta(100, 100, 70));
    state.deltas.insert(OTHER, delta(40, 40, -10));
    let plan = plan_settlement(&state, SettlementScope::Debt(TOKEN), |side, _| match side {
        Side::Left => 0,
        Side::Right => 50,
    })
    .unwrap();
    let expected = TokenDiff {
        token: TOKEN,
        left_diff: 50,
        right_diff: -50,
        collateral_diff: 0,
        ondelta_diff: -50,
    };
    // Only TOKEN; its collateral stays, 20 stays owed.
    assert_eq!(plan.terms.diffs, vec![expected]);
    assert_eq!(plan.tokens[0].unpaid(), 20);
    assert_eq!(check_terms(&state, &plan.terms), Ok(()));

    // LEFT owes: its reserve pays RIGHT, Δ rises by what it paid.
    let mut owing = state_with(delta(100, 0, -30));
    owing.deltas.insert(OTHER, delta(40, 40, 0));
    let plan = plan_settlement(&owing, SettlementScope::Debt(TOKEN), |_, _| 1_000).unwrap();
    let diff = plan.terms.diffs[0];
    assert_eq!(
        (diff.left_diff, diff.right_diff, diff.collateral_diff),
        (-30, 30, 0)
    );
    assert_eq!(owing.deltas[&TOKEN].total().unwrap() + diff.ondelta_diff, 0);
    assert_eq!(check_terms(&owing, &plan.terms), Ok(()));

    // No debt in the token (Δ within the collateral): nothing to settle, however much
    // collateral there is.
    let within = state_with(delta(100, 100, -40));
    assert_eq!(
        plan_settlement(&within, SettlementScope::Debt(TOKEN), |_, _| 1_000),
        Err(TxError::NothingToSettle)
    );

    // Terms that move no collateral but more than the debt, or that mix a debt diff with an
    // account settlement of another token, are refused.
    let too_much = SettlementTerms {
        nonce: 0,
        diffs: vec![TokenDiff {
            left_diff: 80,
            right_diff: -80,
            ondelta_diff: -80,
            ..expected
        }],
    };
    assert_eq!(
        check_terms(&state, &too_much),
        Err(TxError::SettlementMismatch(TOKEN))
    );
    let whole_other = plan_settlement(&state, SettlementScope::Account, |_, _| 0).unwrap();
    let other_diff = whole_other
        .terms
        .diffs
        .iter()
        .find(|d| d.token == OTHER)
        .copied()
        .unwrap();
    let mixed = SettlementTerms {
        nonce: 0,
        diffs: vec![expected, other_diff],
    };
    assert_eq!(
        check_terms(&state, &mixed),
        Err(TxError::SettlementMismatch(TOKEN))
    );
}

impl Pair {
    /// Both followers saw the token's collateral and ondelta change; LEFT records it.
    fn chain_sync(&mut self, collateral: u128, ondelta: i128) {
        for left in [true, false] {
            self.peer(left)
                .account
                .observe_chain(TOKEN, collateral, ondelta);
        }
        self.submit(
            true,
            AccountTx::ChainSync {
                token: TOKEN,
                collateral,
                ondelta,
            },
        );
    }

    /// Queues `tx` on one side and runs the exchange to the end; returns the proposer's
    /// events of the flush.
    fn submit(&mut self, from_left: bool, tx: AccountTx) -> Vec<AccountEvent> {
        self.peer(from_left).account.enqueue(tx);
        let (message, events) = self.flush(from_left);
        if let Some(message) = message {
            self.settle(message, !from_left);
        }
        events
    }

    fn sign_digest(&self, left: bool) -> QuorumSignature {
        let key = if left {
            &self.left.key
        } else {
            &self.right.key
        };
        QuorumSignature(vec![key.sign(&digest())])
    }

    /// LEFT proposes the plan of the account (with RIGHT's reserve at `right_reserve`).
    fn propose(&mut self, right_reserve: u128) -> SettlementPlan {
        let plan = plan_settlement(
            self.left.account.state(),
            SettlementScope::Account,
            |side, _| match side {
                Side::Left => 0,
                Side::Right => right_reserve,
            },
        )
        .unwrap();
        let tx = AccountTx::SettlementPropose {
            nonce: plan.terms.nonce,
            diffs: plan.terms.diffs.clone(),
            digest: digest(),
        };
        self.left.account.check_own(&tx, self.clock).unwrap();
        self.submit(true, tx);
        self.assert_in_sync();
        plan
    }
}

/// 100 of collateral (LEFT's), each side's credit at 500, LEFT paid RIGHT 160: RIGHT owns the
/// collateral and LEFT owes it 60 on credit.
fn pair_with_collateral_and_debt() -> Pair {
    let mut pair = Pair::new();
    pair.extend_credit(false, 500);
    pair.extend_credit(true, 500);
    pair.chain_sync(100, 100);
    pair.pay(true, 160);
    pair.assert_in_sync();
    assert_eq!(
        pair.left.account.state().deltas[&TOKEN].total().unwrap(),
        -60
    );
    pair
}

#[test]
fn both_sides_sign_payments_pause_and_the_landing_reopens_the_account() {
    let mut pair = pair_with_collateral_and_debt();
    let plan = pair.propose(0);
    // LEFT is the debtor with no reserve known to it: only the collateral is paid out.
    assert_eq!(plan.tokens[0].paid, 0);
    let pending = pair
        .right
        .account
        .state()
        .settlement
        .pending
        .clone()
        .unwrap();
    assert_eq!((pending.proposer, pending.terms.nonce), (Side::Left, 0));
    assert_eq!(pending.acceptor_signature, None);

    // While the settlement is pending neither side can pay or lock.
    for left in [true, false] {
        let events = pair.submit(
            left,
            AccountTx::DirectPayment {
                token: TOKEN,
                amount: 1,
            },
        );
        assert!(
            events.iter().any(|e| matches!(
                e,
                AccountEvent::TxDropped {
                    error: TxError::SettlementPending,
                    ..
                }
            )),
            "{events:?}"
        );
    }
    pair.assert_in_sync();
    // Nor propose another settlement.
    let again = AccountTx::SettlementPropose {
        nonce: 0,
        diffs: plan.terms.diffs.clone(),
        digest: digest(),
    };
    assert_eq!(
        pair.right.account.check_own(&again, pair.clock),
        Err(TxError::SettlementPending)
    );

    // Until RIGHT accepts, nobody can submit it.
    for side in [Side::Left, Side::Right] {
        assert_eq!(pending.submittable_by(side), None);
    }

    // RIGHT accepts: LEFT, the proposer, holds RIGHT's signature and is the one to submit;
    // RIGHT holds no signature of LEFT's.
    let accept = AccountTx::SettlementAccept {
        signature: pair.sign_digest(false),
    };
    pair.right.account.check_own(&accept, pair.clock).unwrap();
    pair.submit(false, accept);
    pair.assert_in_sync();
    let pending = pair
        .left
        .account
        .state()
        .settlement
        .pending
        .clone()
        .unwrap();
    assert_eq!(
        pending.submittable_by(Side::Left),
        Some(&pair.sign_digest(false))
    );
    assert_eq!(pending.submittable_by(Side::Right), None);
    assert!(!holds_signature(
        &pair.right.account,
        &pair.sign_digest(true)
    ));

    // The chain applies it: collateral 0, ondelta moved by −left_diff (LEFT got nothing, so
    // ondelta stays); the account keeps LEFT's unpaid 60 of credit debt.
    let diff = plan.terms.diffs[0];
    assert_eq!((diff.left_diff, diff.right_diff), (0, 100));
    pair.chain_sync(0, 100 + diff.ondelta_diff);
    // A landing our follower has not seen is refused by the peer.
    pair.left.account.observe_settlement(0);
    let (message, _) = {
        pair.left
            .account
            .enqueue(AccountTx::SettlementLanded { nonce: 0 });
        pair.flush(true)
    };
    let refused = pair.deliver(false, &message.clone().unwrap());
    assert!(
        matches!(
            refused,
            Err(AccountError::InvalidTx {
                error: TxError::SettlementNotOnChain(0),
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(pair.right.account.state().settlement.pending.is_some());
    // Once it has, the same frame is taken.
    pair.right.account.observe_settlement(0);
    pair.settle(message.unwrap(), false);
    pair.assert_in_sync();
    let settlement = &pair.left.account.state().settlement;
    assert_eq!((settlement.nonce, settlement.pending.is_none()), (1, true));
    let d = &pair.left.account.state().deltas[&TOKEN];
    assert_eq!((d.collateral, d.total().unwrap()), (0, -60));

    // Payments flow again, on credit now.
    pair.pay(false, 10);
    pair.assert_in_sync();
    assert_eq!(
        pair.left.account.state().deltas[&TOKEN].total().unwrap(),
        -50
    );
}

#[test]
fn bad_signatures_stale_nonces_and_wrong_terms_are_refused_and_change_nothing() {
    let mut pair = pair_with_collateral_and_debt();
    let plan = plan_settlement(
        pair.left.account.state(),
        SettlementScope::Account,
        |_, _| 0,
    )
    .unwrap();
    let intruder = SignerKey::from_bytes(&[99; 32]).unwrap();
    let propose = |nonce, diffs: Vec<TokenDiff>| AccountTx::SettlementPropose {
        nonce,
        diffs,
        digest: digest(),
    };
    let forged = QuorumSignature(vec![intruder.sign(&digest())]);
    let mut wrong_split = plan.terms.diffs.clone();
    wrong_split[0].left_diff += 10;
    wrong_split[0].right_diff -= 10;
    wrong_split[0].ondelta_diff -= 10;
    let cases = [
        (
            propose(1, plan.terms.diffs.clone()),
            TxError::StaleSettlement {
                nonce: 1,
                expected: 0,
            },
        ),
        (propose(0, wrong_split), TxError::SettlementMismatch(TOKEN)),
        (propose(0, Vec::new()), TxError::NothingToSettle),
    ];
    let key = pair.left.key.clone();
    for (tx, expected) in cases {
        let before = pair.right.account.clone();
        let message = pair.forged_left_proposal(vec![tx], |_| {}, &key);
        let refused = pair.deliver(false, &message);
        assert!(
            matches!(&refused, Err(AccountError::InvalidTx { error, .. }) if *error == expected),
            "{refused:?}"
        );
        assert_eq!(pair.right.account, before);
    }

    // A good proposal, then an acceptance with a signature that is not RIGHT's: LEFT refuses
    // the frame whole.
    pair.propose(0);
    let before = pair.left.account.clone();
    pair.right
        .account
        .enqueue(AccountTx::SettlementAccept { signature: forged });
    let (message, _) = pair.flush(false);
    let refused = pair.deliver(true, &message.unwrap());
    assert!(
        matches!(
            refused,
            Err(AccountError::InvalidTx {
                error: TxError::BadSettlementSignature,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(pair.left.account, before);
    // The proposer cannot accept its own proposal.
    let own = AccountTx::SettlementAccept {
        signature: pair.sign_digest(true),
    };
    assert_eq!(
        pair.left.account.check_own(&own, pair.clock),
        Err(TxError::NotForAcceptance)
    );
}

#[test]
fn no_settlement_while_locks_are_in_flight() {
    let mut pair = pair_with_collateral_and_debt();
    pair.submit(
        false,
        AccountTx::HtlcLock {
            lock_id: 1,
            hashlock: keccak256(b"secret"),
            token: TOKEN,
            amount: 5,
            expires_at_ms: 100_000,
            reveal_before_j_height: 100,
            payload: Vec::new(),
        },
    );
    pair.assert_in_sync();
    assert_eq!(
        plan_settlement(
            pair.left.account.state(),
            SettlementScope::Account,
            |_, _| 0
        ),
        Err(TxError::HoldsOpen)
    );
}

/// Whether `value`'s encoding holds `signature` (its r ‖ s bytes, wherever they are).
fn holds_signature(value: &impl serde::Serialize, signature: &QuorumSignature) -> bool {
    let bytes = crate::codec::encode(value);
    signature.0.iter().any(|s| {
        let rs = &s.0[..64];
        bytes.windows(rs.len()).any(|w| w == rs)
    })
}

/// The signatures a message carries: the frame's, the ACK's, and any acceptance's.
fn signatures_in(message: &AccountMessage) -> Vec<QuorumSignature> {
    let mut out = Vec::new();
    if let Some(ack) = &message.ack {
        out.push(ack.signature.clone());
    }
    if let Some(proposal) = &message.proposal {
        out.push(proposal.signature.clone());
        for tx in &proposal.frame.txs {
            if let AccountTx::SettlementAccept { signature } = tx {
                out.push(signature.clone());
            }
        }
    }
    out
}

/// A stand-in settlement digest that differs with the terms.
fn digest_of(terms: &SettlementTerms) -> Hash {
    crate::codec::hash_of(terms)
}

/// The review's scenario. RIGHT proposes to settle while LEFT owns Δ = 100 of C = 100; LEFT
/// does not ACK but sends its own frame at that height paying RIGHT 50, and wins the collision;
/// RIGHT's proposal is re-queued, then dropped as no longer matching the account. With the
/// proposer's signature in the proposal, LEFT could have submitted the stale terms (all 100
/// to LEFT) with it and taken RIGHT's 50. Now nothing RIGHT sent and nothing LEFT holds carries
/// a signature of RIGHT's over them; and a settlement is submitted only by its proposer, with
/// the acceptor's signature, once the acceptance committed.
#[test]
fn a_proposal_that_lost_a_collision_leaves_no_signature_of_the_proposer_with_the_peer() {
    let mut pair = Pair::new();
    pair.extend_credit(false, 500);
    pair.extend_credit(true, 500);
    pair.chain_sync(100, 100);
    pair.assert_in_sync();
    let stale = plan_settlement(
        pair.right.account.state(),
        SettlementScope::Account,
        |_, _| 0,
    )
    .unwrap()
    .terms;
    assert_eq!(stale.diffs[0].left_diff, 100);
    let stale_digest = digest_of(&stale);
    let right_over_stale = QuorumSignature(vec![pair.right.key.sign(&stale_digest)]);
    // Signing is deterministic: this is the signature RIGHT's key would give over the terms.
    assert_eq!(
        right_over_stale,
        QuorumSignature(vec![pair.right.key.sign(&stale_digest)])
    );

    let h = pair.left.account.height();
    pair.right.account.enqueue(AccountTx::SettlementPropose {
        nonce: stale.nonce,
        diffs: stale.diffs.clone(),
        digest: stale_digest,
    });
    pair.left.account.enqueue(AccountTx::DirectPayment {
        token: TOKEN,
        amount: 50,
    });
    let mut sent_by_right = Vec::new();
    let (from_right, _) = pair.flush(false);
    let (from_left, _) = pair.flush(true);
    let (from_right, from_left) = (from_right.unwrap(), from_left.unwrap());
    sent_by_right.push(from_right.clone());

    // LEFT ignores RIGHT's frame at the same height; RIGHT takes LEFT's, re-queues its
    // proposal, and drops it from its next frame: the terms no longer match.
    let (reply, events) = pair.deliver(true, &from_right).unwrap();
    assert!(reply.is_none());
    assert_eq!(
        events,
        vec![AccountEvent::PeerFrameIgnored { height: h + 1 }]
    );
    let (reply, events) = pair.deliver(false, &from_left).unwrap();
    assert!(events.contains(&AccountEvent::OwnFrameRequeued {
        height: h + 1,
        txs: 1
    }));
    assert!(
        events.iter().any(|e| matches!(
            e,
            AccountEvent::TxDropped {
                tx: AccountTx::SettlementPropose { .. },
                error: TxError::SettlementMismatch(TOKEN),
            }
        )),
        "{events:?}"
    );
    let mut next = reply.map(|m| (m, true));
    while let Some((message, to_left)) = next.take() {
        if to_left {
            sent_by_right.push(message.clone());
        }
        let (reply, _) = pair.deliver(to_left, &message).unwrap();
        next = reply.map(|m| (m, !to_left));
    }
    pair.assert_in_sync();
    let delta = &pair.left.account.state().deltas[&TOKEN];
    assert_eq!((delta.collateral, delta.total().unwrap()), (100, 50));
    assert_eq!(pair.left.account.state().settlement.pending, None);

    // Nothing RIGHT sent verifies as its signature over the stale terms, and LEFT holds none.
    for message in &sent_by_right {
        assert!(!holds_signature(message, &right_over_stale));
        for signature in signatures_in(message) {
            assert!(
                pair.right
                    .board
                    .verify_quorum(&stale_digest, &signature)
                    .is_err()
            );
        }
    }
    assert!(!holds_signature(&pair.left.account, &right_over_stale));

    // RIGHT proposes the account as it is now (50 each). Until LEFT's acceptance commits,
    // nobody can submit it; then only RIGHT, the proposer, can, with LEFT's signature.
    let fresh = plan_settlement(
        pair.right.account.state(),
        SettlementScope::Account,
        |_, _| 0,
    )
    .unwrap()
    .terms;
    assert_eq!(
        (fresh.diffs[0].left_diff, fresh.diffs[0].right_diff),
        (50, 50)
    );
    let fresh_digest = digest_of(&fresh);
    pair.submit(
        false,
        AccountTx::SettlementPropose {
            nonce: fresh.nonce,
            diffs: fresh.diffs.clone(),
            digest: fresh_digest,
        },
    );
    pair.assert_in_sync();
    for side in [Side::Left, Side::Right] {
        let pending = pair
            .left
            .account
            .state()
            .settlement
            .pending
            .clone()
            .unwrap();
        assert_eq!(pending.submittable_by(side), None);
    }
    let left_signature = QuorumSignature(vec![pair.left.key.sign(&fresh_digest)]);
    pair.submit(
        true,
        AccountTx::SettlementAccept {
            signature: left_signature.clone(),
        },
    );
    pair.assert_in_sync();
    let pending = pair
        .right
        .account
        .state()
        .settlement
        .pending
        .clone()
        .unwrap();
    assert_eq!(pending.proposer, Side::Right);
    assert_eq!(pending.submittable_by(Side::Right), Some(&left_signature));
    assert_eq!(pending.submittable_by(Side::Left), None);
    // RIGHT holds LEFT's signature (so the search finds one where it is); LEFT holds none of
    // RIGHT's, over either terms.
    assert!(holds_signature(&pair.right.account, &left_signature));
    let right_over_fresh = QuorumSignature(vec![pair.right.key.sign(&fresh_digest)]);
    assert!(!holds_signature(&pair.left.account, &right_over_fresh));
    assert!(!holds_signature(&pair.left.account, &right_over_stale));
}
