//! Swap offers in an account: holds, fills that move both tokens, and every refusal leaving the
//! state exactly as it was.

use super::*;
use crate::swap::TimeInForce::{self, FillOrKill, GoodTillCancel, ImmediateOrCancel};

const USD: u32 = 1;
const ETH: u32 = 2;
/// A token nobody set a limit for: not in the account.
const UNKNOWN: u32 = 9;

fn now() -> Clock {
    Clock {
        timestamp: 1_000,
        j_height: 10,
    }
}

/// Both tokens known, each side letting the other owe it up to 1,000 of each.
fn two_token_state() -> AccountState {
    let pair = Pair::new();
    let mut state = AccountState::new(pair.left.id, pair.right.id);
    for token in [USD, ETH] {
        for by in [Side::Left, Side::Right] {
            let tx = AccountTx::SetCreditLimit {
                token,
                amount: 1_000,
            };
            state.apply(&tx, by, now()).unwrap();
        }
    }
    state
}

#[allow(clippy::too_many_arguments)]
fn offer_of(
    offer_id: u64,
    give_token: u32,
    give_amount: u128,
    want_token: u32,
    want_amount: u128,
    expires_at_ms: u64,
    time_in_force: TimeInForce,
) -> AccountTx {
    AccountTx::SwapOffer {
        offer_id,
        give_token,
        give_amount,
        want_token,
        want_amount,
        expires_at_ms,
        time_in_force,
    }
}

/// LEFT offers `give` USD for `want` ETH.
fn offer(offer_id: u64, give: u128, want: u128, tif: TimeInForce) -> AccountTx {
    offer_of(offer_id, USD, give, ETH, want, 5_000, tif)
}

/// A resolve of offer `offer_id` as it stands in `state` (any terms if it is not there).
fn resolve(state: &AccountState, offer_id: u64, fill: u128, want_paid: u128) -> AccountTx {
    AccountTx::SwapResolve {
        offer_id,
        terms: state
            .offers
            .get(&offer_id)
            .map_or(Hash::ZERO, SwapOfferState::terms),
        fill,
        want_paid,
    }
}

fn cancel(offer_id: u64) -> AccountTx {
    AccountTx::SwapCancel { offer_id }
}

fn offdelta(state: &AccountState, token: u32) -> i128 {
    state.deltas[&token].offdelta
}

fn assert_sound(state: &AccountState) {
    assert!(state.holds_match_obligations(), "holds vs offers");
    for delta in state.deltas.values() {
        assert!(delta.rcpan_holds().unwrap(), "RCPAN");
    }
}

#[test]
fn an_offer_holds_its_give_side_and_fills_move_both_tokens() {
    let mut state = two_token_state();
    let empty_hash = state.hash();
    state
        .apply(&offer(2, 300, 100, GoodTillCancel), Side::Left, now())
        .unwrap();
    assert_eq!(state.deltas[&USD].left_hold, 300);
    assert_eq!(
        state.capacities(USD, Side::Left).unwrap().out_capacity,
        1_000 - 300
    );
    assert_ne!(
        state.hash(),
        empty_hash,
        "an open offer is in the state hash"
    );
    assert_sound(&state);

    // The hub (RIGHT) fills 120 USD and pays 40 ETH: LEFT pays USD, RIGHT pays ETH.
    state
        .apply(&resolve(&state, 2, 120, 40), Side::Right, now())
        .unwrap();
    assert_eq!(offdelta(&state, USD), -120);
    assert_eq!(offdelta(&state, ETH), 40);
    assert_eq!(state.deltas[&USD].left_hold, 180);
    assert_eq!(state.offers[&2].remaining, 180);
    assert_sound(&state);

    // A better price for the maker is fine: 61 ETH for the last 180 USD. Filled: it closes.
    state
        .apply(&resolve(&state, 2, 180, 61), Side::Right, now())
        .unwrap();
    assert_eq!(offdelta(&state, USD), -300);
    assert_eq!(offdelta(&state, ETH), 101);
    assert_eq!(state.total_holds(), 0);
    assert!(state.offers.is_empty());
    assert_sound(&state);
}

#[test]
fn the_limit_price_is_checked_exactly_and_rounding_is_the_makers_gain() {
    let mut state = two_token_state();
    // 2 USD for 3 ETH: 1.5 ETH per USD.
    state
        .apply(&offer(2, 2, 3, GoodTillCancel), Side::Left, now())
        .unwrap();
    let before = state.clone();
    assert_eq!(
        state.apply(&resolve(&state, 2, 1, 1), Side::Right, now()),
        Err(TxError::BelowLimitPrice {
            offer_id: 2,
            fill: 1,
            want_paid: 1
        })
    );
    assert_eq!(state, before);
    // 1 USD for 2 ETH: rounded up, the maker's way.
    state
        .apply(&resolve(&state, 2, 1, 2), Side::Right, now())
        .unwrap();
    // The last unit at exactly its share: the maker got 4 ETH for 2 USD, above its 3.
    state
        .apply(&resolve(&state, 2, 1, 2), Side::Right, now())
        .unwrap();
    assert_eq!(offdelta(&state, ETH), 4);
    assert_sound(&state);

    // Amounts whose products need 256 bits are compared exactly.
    let big = i128::MAX as u128 / 2;
    let mut state = two_token_state();
    for token in [USD, ETH] {
        state
            .apply(
                &AccountTx::SetCreditLimit { token, amount: big },
                Side::Right,
                now(),
            )
            .unwrap();
        state
            .apply(
                &AccountTx::SetCreditLimit { token, amount: big },
                Side::Left,
                now(),
            )
            .unwrap();
    }
    state
        .apply(&offer(4, big, big - 1, GoodTillCancel), Side::Left, now())
        .unwrap();
    // (big − 1)² / big = big − 2 + 1/big: big − 2 is short by a fraction, big − 1 is enough.
    assert!(matches!(
        state.apply(&resolve(&state, 4, big - 1, big - 2), Side::Right, now()),
        Err(TxError::BelowLimitPrice { .. })
    ));
    state
        .apply(&resolve(&state, 4, big - 1, big - 1), Side::Right, now())
        .unwrap();
    assert_sound(&state);
}

#[test]
fn bad_swap_transactions_are_refused_with_a_reason_and_change_nothing() {
    let mut state = two_token_state();
    state
        .apply(&offer(2, 300, 100, GoodTillCancel), Side::Left, now())
        .unwrap();
    state
        .apply(&offer(4, 100, 50, FillOrKill), Side::Left, now())
        .unwrap();
    let before = state.clone();
    let late = Clock {
        timestamp: 5_000,
        j_height: 10,
    };
    let too_big = i128::MAX as u128 + 1;
    let refused: Vec<(AccountTx, Side, Clock, TxError)> = vec![
        (
            offer(6, 0, 100, GoodTillCancel),
            Side::Left,
            now(),
            TxError::ZeroAmount,
        ),
        (
            offer(6, 100, 0, GoodTillCancel),
            Side::Left,
            now(),
            TxError::ZeroAmount,
        ),
        (
            offer(6, too_big, 1, GoodTillCancel),
            Side::Left,
            now(),
            TxError::Overflow,
        ),
        (
            offer(6, 1, too_big, GoodTillCancel),
            Side::Left,
            now(),
            TxError::Overflow,
        ),
        (
            offer_of(6, USD, 10, USD, 10, 5_000, GoodTillCancel),
            Side::Left,
            now(),
            TxError::SameToken(USD),
        ),
        (
            offer_of(6, USD, 10, UNKNOWN, 10, 5_000, GoodTillCancel),
            Side::Left,
            now(),
            TxError::UnknownToken(UNKNOWN),
        ),
        (
            offer_of(6, UNKNOWN, 10, USD, 10, 5_000, GoodTillCancel),
            Side::Left,
            now(),
            TxError::UnknownToken(UNKNOWN),
        ),
        (
            offer(7, 10, 10, GoodTillCancel),
            Side::Left,
            now(),
            TxError::OfferIdOfOtherSide(7),
        ),
        (
            offer(2, 10, 10, GoodTillCancel),
            Side::Left,
            now(),
            TxError::DuplicateOffer(2),
        ),
        (
            offer_of(6, USD, 10, ETH, 10, 1_000, GoodTillCancel),
            Side::Left,
            now(),
            TxError::OfferExpiryInPast,
        ),
        (
            // 1,000 of credit, 400 on hold already.
            offer(6, 601, 10, GoodTillCancel),
            Side::Left,
            now(),
            TxError::InsufficientCapacity {
                token: USD,
                amount: 601,
                available: 600,
            },
        ),
        (
            resolve(&state, 8, 1, 1),
            Side::Right,
            now(),
            TxError::UnknownOffer(8),
        ),
        (
            resolve(&state, 2, 30, 10),
            Side::Left,
            now(),
            TxError::NotCounterparty(2),
        ),
        (
            resolve(&state, 2, 301, 101),
            Side::Right,
            now(),
            TxError::FillExceedsOffer {
                offer_id: 2,
                fill: 301,
                remaining: 300,
            },
        ),
        (
            resolve(&state, 2, 30, 9),
            Side::Right,
            now(),
            TxError::BelowLimitPrice {
                offer_id: 2,
                fill: 30,
                want_paid: 9,
            },
        ),
        (
            resolve(&state, 2, 0, 0),
            Side::Right,
            now(),
            TxError::ZeroAmount,
        ),
        (
            resolve(&state, 4, 0, 1),
            Side::Right,
            now(),
            TxError::PaidWithoutFill(4),
        ),
        (
            resolve(&state, 4, 50, 25),
            Side::Right,
            now(),
            TxError::PartialFillOrKill {
                offer_id: 4,
                fill: 50,
                remaining: 100,
            },
        ),
        (
            resolve(&state, 2, 30, 10),
            Side::Right,
            late,
            TxError::OfferExpired(2),
        ),
        (
            // The hub may owe LEFT at most 1,000 ETH.
            resolve(&state, 2, 300, 1_001),
            Side::Right,
            now(),
            TxError::InsufficientCapacity {
                token: ETH,
                amount: 1_001,
                available: 1_000,
            },
        ),
        (cancel(2), Side::Right, now(), TxError::OfferNotExpired(2)),
        (cancel(6), Side::Left, now(), TxError::UnknownOffer(6)),
    ];
    for (tx, by, at, expected) in refused {
        assert_eq!(state.apply(&tx, by, at), Err(expected.clone()), "{tx:?}");
        assert_eq!(state, before, "{expected}: state changed");
    }
}

#[test]
fn immediate_or_cancel_and_fill_or_kill_close_with_their_first_resolve() {
    let mut state = two_token_state();
    state
        .apply(&offer(2, 300, 100, ImmediateOrCancel), Side::Left, now())
        .unwrap();
    state
        .apply(&offer(4, 90, 30, ImmediateOrCancel), Side::Left, now())
        .unwrap();
    state
        .apply(&offer(6, 60, 20, FillOrKill), Side::Left, now())
        .unwrap();
    state
        .apply(&offer(8, 60, 20, FillOrKill), Side::Left, now())
        .unwrap();
    assert_eq!(state.deltas[&USD].left_hold, 510);
    // IOC partly filled: the remainder is released with it.
    state
        .apply(&resolve(&state, 2, 120, 40), Side::Right, now())
        .unwrap();
    // IOC not filled at all: closed untouched.
    state
        .apply(&resolve(&state, 4, 0, 0), Side::Right, now())
        .unwrap();
    // FOK filled whole, and FOK killed.
    state
        .apply(&resolve(&state, 6, 60, 20), Side::Right, now())
        .unwrap();
    state
        .apply(&resolve(&state, 8, 0, 0), Side::Right, now())
        .unwrap();
    assert!(state.offers.is_empty());
    assert_eq!(state.total_holds(), 0);
    assert_eq!(offdelta(&state, USD), -180);
    assert_eq!(offdelta(&state, ETH), 60);
    assert_sound(&state);
    // Each was released once: a second resolve finds nothing.
    assert_eq!(
        state.apply(&resolve(&state, 2, 0, 0), Side::Right, now()),
        Err(TxError::UnknownOffer(2))
    );
}

#[test]
fn a_resolve_of_an_offer_id_used_again_with_other_terms_is_refused() {
    let mut state = two_token_state();
    // LEFT offers 300 USD for 100 ETH; the hub prepares a resolve of it at that price.
    state
        .apply(&offer(2, 300, 100, GoodTillCancel), Side::Left, now())
        .unwrap();
    let prepared = resolve(&state, 2, 300, 100);
    // Before it lands, LEFT cancels and offers id 2 again with the tokens swapped: 300 ETH for
    // 100 USD. The prepared resolve would fit it (same amounts, same price), and the hub, which
    // matched a USD seller, would find itself the USD payer.
    state.apply(&cancel(2), Side::Left, now()).unwrap();
    state
        .apply(
            &offer_of(2, ETH, 300, USD, 100, 5_000, GoodTillCancel),
            Side::Left,
            now(),
        )
        .unwrap();
    let before = state.clone();
    assert_eq!(
        state.apply(&prepared, Side::Right, now()),
        Err(TxError::OfferTermsChanged(2))
    );
    assert_eq!(state, before);
    // A resolve naming the new terms is taken.
    state
        .apply(&resolve(&state, 2, 300, 100), Side::Right, now())
        .unwrap();
    assert!(state.offers.is_empty());
}

#[test]
fn cancels_release_exactly_what_is_left_once() {
    let mut state = two_token_state();
    let empty_hash = state.hash();
    // RIGHT is the maker here (odd id), giving ETH for USD.
    let right_offer = offer_of(3, ETH, 200, USD, 400, 5_000, GoodTillCancel);
    state.apply(&right_offer, Side::Right, now()).unwrap();
    assert_eq!(state.deltas[&ETH].right_hold, 200);
    state
        .apply(&resolve(&state, 3, 50, 100), Side::Left, now())
        .unwrap();
    // RIGHT paid 50 ETH (offdelta up), LEFT paid 100 USD (down).
    assert_eq!(offdelta(&state, ETH), 50);
    assert_eq!(offdelta(&state, USD), -100);
    state.apply(&cancel(3), Side::Right, now()).unwrap();
    assert_eq!(state.total_holds(), 0);
    assert_eq!(
        state.apply(&cancel(3), Side::Right, now()),
        Err(TxError::UnknownOffer(3))
    );

    // An untouched offer cancelled leaves the state as it was, hash included.
    let mut state = two_token_state();
    state
        .apply(&offer(2, 300, 100, GoodTillCancel), Side::Left, now())
        .unwrap();
    state.apply(&cancel(2), Side::Left, now()).unwrap();
    assert_eq!(state.hash(), empty_hash);

    // The counterparty may clean up once it expired; an expired IOC may be closed with 0.
    let mut state = two_token_state();
    state
        .apply(&offer(2, 300, 100, GoodTillCancel), Side::Left, now())
        .unwrap();
    state
        .apply(&offer(4, 300, 100, ImmediateOrCancel), Side::Left, now())
        .unwrap();
    let expired = Clock {
        timestamp: 5_000,
        j_height: 10,
    };
    state.apply(&cancel(2), Side::Right, expired).unwrap();
    state
        .apply(&resolve(&state, 4, 0, 0), Side::Right, expired)
        .unwrap();
    assert_eq!(state.hash(), empty_hash);
}

#[test]
fn swaps_travel_through_frames_and_a_bad_one_rejects_the_whole_frame() {
    let mut pair = Pair::new();
    for token in [USD, ETH] {
        for left in [true, false] {
            pair.peer(left).account.enqueue(AccountTx::SetCreditLimit {
                token,
                amount: 1_000,
            });
        }
    }
    // RIGHT's limits ride on its ACK of LEFT's frame.
    let (msg, _) = pair.flush(true);
    pair.settle(msg.unwrap(), false);
    pair.assert_in_sync();
    assert_eq!(pair.left.account.state().deltas.len(), 2);
    assert!(pair.right.account.mempool().is_empty());

    // A frame with a valid offer and then an offer beyond LEFT's capacity: refused whole.
    let key = pair.left.key.clone();
    let bad = pair.forged_left_proposal(
        vec![
            offer(2, 300, 100, GoodTillCancel),
            offer(4, 800, 100, GoodTillCancel),
        ],
        |_| {},
        &key,
    );
    let before = pair.right.account.state().clone();
    assert!(matches!(
        pair.deliver(false, &bad),
        Err(AccountError::InvalidTx {
            index: 1,
            error: TxError::InsufficientCapacity { .. },
            ..
        })
    ));
    assert_eq!(pair.right.account.state(), &before);

    let expiry = pair.clock.timestamp + 60_000;
    pair.left
        .account
        .enqueue(offer_of(2, USD, 300, ETH, 100, expiry, GoodTillCancel));
    let (msg, _) = pair.flush(true);
    pair.settle(msg.unwrap(), false);
    pair.right
        .account
        .enqueue(resolve(pair.left.account.state(), 2, 300, 100));
    let (msg, _) = pair.flush(false);
    pair.settle(msg.unwrap(), true);
    pair.assert_in_sync();
    let state = pair.left.account.state();
    assert!(state.offers.is_empty());
    assert_eq!(state.total_holds(), 0);
    assert_eq!(offdelta(state, USD), -300);
    assert_eq!(offdelta(state, ETH), 100);
}
