//! The order book alone: priority, prices, rounding, time in force, capacity limits, expiry,
//! and a property test that matching creates nothing and respects every limit.

use super::*;
use crate::board::EntityId;
use crate::codec::hash_of;
use proptest::prelude::*;
use std::collections::BTreeMap;

const X: u32 = 1;
const Y: u32 = 2;
const NOW: u64 = 1_000;

fn peer(n: u8) -> EntityId {
    EntityId([n; 32])
}

fn key(owner: u8, offer_id: u64) -> OrderKey {
    OrderKey {
        owner: peer(owner),
        offer_id,
    }
}

/// `owner` offers `give` of `give_token` for `want` of the other token.
fn order(owner: u8, offer_id: u64, give_token: u32, give: u128, want: u128) -> Order {
    Order {
        key: key(owner, offer_id),
        give_token,
        give_amount: give,
        want_token: if give_token == X { Y } else { X },
        want_amount: want,
        remaining: give,
        expires_at_ms: NOW + 60_000,
        time_in_force: TimeInForce::GoodTillCancel,
    }
}

fn with_tif(mut order: Order, time_in_force: TimeInForce) -> Order {
    order.time_in_force = time_in_force;
    order
}

fn submit(book: &mut OrderBook, order: Order) -> MatchOutcome {
    book.submit(order, NOW, &mut Unlimited).unwrap()
}

fn fill(owner: u8, offer_id: u64, fill: u128, want_paid: u128, closes: bool) -> Fill {
    Fill {
        key: key(owner, offer_id),
        fill,
        want_paid,
        closes,
    }
}

#[test]
fn best_price_first_then_first_come() {
    let mut book = OrderBook::new();
    // Three sellers of X: 30 Y per 10 X (3), then two at 2, the first of them earlier.
    for (owner, give, want) in [(1, 10, 30), (2, 10, 20), (3, 10, 20)] {
        let outcome = submit(&mut book, order(owner, 0, X, give, want));
        assert!(outcome.rested && outcome.fills.is_empty());
    }
    assert_eq!(book.len(), 3);
    let queue: Vec<u8> = book.orders(X, Y).map(|o| o.key.owner.0[0]).collect();
    assert_eq!(queue, vec![2, 3, 1]);

    // A buyer of at least 15 X for its 50 Y (up to 3.33 Y per X): 10 X from 2 and 10 X from 3
    // at 2, then 3 X from 1 at 3 for its last 10 Y (the maker's gain on rounding: 9 would do,
    // but all 10 still meet the buyer's limit, and nothing is left over).
    let outcome = submit(&mut book, order(9, 1, Y, 50, 15));
    assert_eq!(
        outcome.fills,
        vec![
            fill(2, 0, 10, 20, true),
            fill(3, 0, 10, 20, true),
            fill(1, 0, 3, 10, false),
            fill(9, 1, 50, 23, true),
        ]
    );
    assert!(!outcome.rested);
    assert_eq!(book.get(&key(1, 0)).unwrap().remaining, 7);
    assert_eq!(book.len(), 1);
}

#[test]
fn a_match_is_at_the_resting_price_and_the_taker_gets_the_improvement() {
    let mut book = OrderBook::new();
    // Maker: 100 X for 200 Y (2 Y per X). Taker: 100 Y for 40 X at least (2.5 Y per X).
    submit(&mut book, order(1, 0, X, 100, 200));
    let outcome = submit(&mut book, order(2, 1, Y, 100, 40));
    assert_eq!(
        outcome.trades,
        vec![Trade {
            maker: key(1, 0),
            taker: key(2, 1),
            maker_gave: 50,
            taker_gave: 100,
        }]
    );
    // The taker got 50 X where it asked for 40.
    assert_eq!(outcome.fills[1], fill(2, 1, 100, 50, true));
    assert_eq!(book.get(&key(1, 0)).unwrap().remaining, 50);
}

#[test]
fn orders_that_do_not_cross_rest_on_both_sides() {
    let mut book = OrderBook::new();
    submit(&mut book, order(1, 0, X, 100, 300)); // asks 3 Y per X
    let outcome = submit(&mut book, order(2, 0, Y, 200, 100)); // pays 2 Y per X
    assert!(outcome.trades.is_empty() && outcome.rested);
    assert_eq!(book.len(), 2);
    // Exactly the asked price crosses.
    let outcome = submit(&mut book, order(3, 0, Y, 300, 100));
    assert_eq!(outcome.fills[0], fill(1, 0, 100, 300, true));
    assert_eq!(outcome.fills[1], fill(3, 0, 300, 100, true));
}

#[test]
fn rounding_never_goes_against_either_limit() {
    let mut book = OrderBook::new();
    // Maker: 3 X for 2 Y. Taker: 1 Y for 1 X at least. 1 Y buys floor(1.5) = 1 X; the maker
    // gets 1 Y for 1 X (above its 2/3).
    submit(&mut book, order(1, 0, X, 3, 2));
    let outcome = submit(&mut book, order(2, 0, Y, 1, 1));
    assert_eq!(outcome.fills[0], fill(1, 0, 1, 1, false));
    assert_eq!(outcome.fills[1], fill(2, 0, 1, 1, true));
    // A taker paying only 0.5 Y per X does not cross the 2/3 ask: it rests, nothing moves.
    let outcome = submit(&mut book, order(3, 0, Y, 1, 2));
    assert!(outcome.trades.is_empty() && outcome.rested);

    // Same price on both sides, 5 Y for 3 X: the maker's 3 X need exactly 5 Y.
    let mut book = OrderBook::new();
    submit(&mut book, order(1, 0, X, 3, 5));
    let outcome = submit(&mut book, order(2, 0, Y, 5, 3));
    assert_eq!(outcome.fills[0], fill(1, 0, 3, 5, true));

    // A maker remainder too small to meet both limits in whole units is passed over, not
    // forced: 1 X left of an ask of 2 Y per 3 X needs 1 Y, but 1 Y must buy the taker 1.4 X.
    let mut book = OrderBook::new();
    submit(
        &mut book,
        Order {
            remaining: 1,
            ..order(1, 0, X, 3, 2)
        },
    );
    submit(&mut book, order(2, 0, X, 30, 20)); // the same price, behind it in time
    let outcome = submit(&mut book, order(3, 0, Y, 10, 14));
    assert_eq!(
        outcome.fills,
        vec![fill(2, 0, 15, 10, false), fill(3, 0, 10, 15, true)]
    );
    assert_eq!(book.get(&key(1, 0)).unwrap().remaining, 1);
}

#[test]
fn immediate_or_cancel_closes_its_remainder_and_fill_or_kill_is_all_or_nothing() {
    let mut book = OrderBook::new();
    submit(&mut book, order(1, 0, X, 100, 100));
    // IOC for 300 Y: 100 traded, the rest closed with it, nothing rests.
    let ioc = with_tif(order(2, 0, Y, 300, 300), TimeInForce::ImmediateOrCancel);
    let outcome = submit(&mut book, ioc);
    assert_eq!(outcome.fills[1], fill(2, 0, 100, 100, true));
    assert!(!outcome.rested && book.is_empty());
    // An IOC with nothing to match is closed untouched.
    let ioc = with_tif(order(2, 1, Y, 300, 300), TimeInForce::ImmediateOrCancel);
    assert_eq!(submit(&mut book, ioc).fills, vec![fill(2, 1, 0, 0, true)]);

    // FOK: 150 Y wanted filled whole, only 100 X at 1 rests: killed, the book untouched.
    submit(&mut book, order(1, 1, X, 100, 100));
    let before = book.clone();
    let fok = with_tif(order(3, 0, Y, 150, 150), TimeInForce::FillOrKill);
    let outcome = submit(&mut book, fok);
    assert!(outcome.trades.is_empty());
    assert_eq!(outcome.fills, vec![fill(3, 0, 0, 0, true)]);
    assert_eq!(book, before);
    // FOK that fits: filled whole across two makers.
    submit(&mut book, order(4, 0, X, 60, 60));
    let fok = with_tif(order(3, 1, Y, 150, 150), TimeInForce::FillOrKill);
    let outcome = submit(&mut book, fok);
    assert_eq!(outcome.fills.last(), Some(&fill(3, 1, 150, 150, true)));
    assert_eq!(book.get(&key(4, 0)).unwrap().remaining, 10);
}

/// Capacities from a table; anything not in it is zero.
struct Table(BTreeMap<(EntityId, u32), u128>);

impl PayoutCapacity for Table {
    fn available(&mut self, peer: &EntityId, token: u32) -> u128 {
        self.0.get(&(*peer, token)).copied().unwrap_or(0)
    }
}

#[test]
fn matching_never_plans_a_payment_the_hub_cannot_make() {
    let mut book = OrderBook::new();
    submit(&mut book, order(1, 0, X, 100, 100));
    submit(&mut book, order(2, 0, X, 100, 100));
    // The hub can pay maker 1 only 30 Y, maker 2 anything, and the taker 150 X.
    let mut table = Table(BTreeMap::from([
        ((peer(1), Y), 30),
        ((peer(2), Y), 1_000),
        ((peer(3), X), 150),
    ]));
    let outcome = book
        .submit(order(3, 0, Y, 500, 500), NOW, &mut table)
        .unwrap();
    assert_eq!(
        outcome.fills,
        vec![
            fill(1, 0, 30, 30, false),
            fill(2, 0, 100, 100, true),
            fill(3, 0, 130, 130, false),
        ]
    );
    // 20 X more would have been payable to the taker, but no maker is left that it may pay.
    assert!(outcome.rested);
    assert_eq!(book.get(&key(3, 0)).unwrap().remaining, 370);
    assert_eq!(book.get(&key(1, 0)).unwrap().remaining, 70);
}

#[test]
fn expired_orders_do_not_trade_and_leave_the_book() {
    let mut book = OrderBook::new();
    let mut soon = order(1, 0, X, 100, 100);
    soon.expires_at_ms = NOW + 500;
    submit(&mut book, soon);
    submit(&mut book, order(2, 0, X, 100, 100));
    // Matching with a cutoff past the first order's expiry: it is skipped and taken off.
    let outcome = book
        .submit(order(3, 0, Y, 100, 100), NOW + 1_000, &mut Unlimited)
        .unwrap();
    assert_eq!(outcome.expired, vec![key(1, 0)]);
    assert_eq!(outcome.fills[0], fill(2, 0, 100, 100, true));
    assert!(book.is_empty());
    // An incoming order expiring within the cutoff neither trades nor rests.
    submit(&mut book, order(2, 1, X, 100, 100));
    let mut late = order(4, 0, Y, 100, 100);
    late.expires_at_ms = NOW;
    let outcome = submit(&mut book, late);
    assert!(outcome.trades.is_empty() && outcome.fills.is_empty() && !outcome.rested);
}

#[test]
fn removal_and_refusals() {
    let mut book = OrderBook::new();
    submit(&mut book, order(1, 0, X, 100, 100));
    let refused = [
        (order(1, 0, X, 10, 10), BookError::DuplicateOrder(key(1, 0))),
        (order(1, 1, X, 0, 10), BookError::ZeroAmount),
        (order(1, 1, X, 10, 0), BookError::ZeroAmount),
        (
            Order {
                want_token: X,
                ..order(1, 1, X, 10, 10)
            },
            BookError::SameToken(X),
        ),
        (
            Order {
                remaining: 11,
                ..order(1, 1, X, 10, 10)
            },
            BookError::RemainderAboveGive {
                remaining: 11,
                give_amount: 10,
            },
        ),
    ];
    let before = book.clone();
    for (order, error) in refused {
        assert_eq!(book.submit(order, NOW, &mut Unlimited), Err(error));
        assert_eq!(book, before);
    }
    assert_eq!(book.remove(&key(1, 0)).map(|o| o.remaining), Some(100));
    assert_eq!(book.remove(&key(1, 0)), None);
    assert!(book.is_empty());
}

// ---- property: matching creates nothing and respects every limit ----

#[derive(Debug, Clone)]
struct Submission {
    owner: u8,
    gives_x: bool,
    give: u128,
    want: u128,
    tif: TimeInForce,
    /// What the hub can pay this owner in each token (None: no limit).
    capacity: Option<u128>,
}

fn submission() -> impl Strategy<Value = Submission> {
    // Small amounts, so that rounding matters at every step.
    (
        0u8..4,
        any::<bool>(),
        1u128..60,
        1u128..60,
        prop_oneof![
            3 => Just(TimeInForce::GoodTillCancel),
            1 => Just(TimeInForce::ImmediateOrCancel),
            1 => Just(TimeInForce::FillOrKill),
        ],
        proptest::option::weighted(0.3, 0u128..80),
    )
        .prop_map(|(owner, gives_x, give, want, tif, capacity)| Submission {
            owner,
            gives_x,
            give,
            want,
            tif,
            capacity,
        })
}

/// Capacities that shrink as the hub pays, like an account's.
struct Budget(BTreeMap<(EntityId, u32), u128>);

impl PayoutCapacity for Budget {
    fn available(&mut self, peer: &EntityId, token: u32) -> u128 {
        self.0.get(&(*peer, token)).copied().unwrap_or(u128::MAX)
    }
}

fn check_submissions(submissions: Vec<Submission>) -> Result<(), TestCaseError> {
    let mut book = OrderBook::new();
    let mut budget = Budget(BTreeMap::new());
    // Every order ever submitted, and what was filled of it.
    let mut orders: BTreeMap<OrderKey, Order> = BTreeMap::new();
    let mut filled: BTreeMap<OrderKey, u128> = BTreeMap::new();
    let mut closed: BTreeMap<OrderKey, bool> = BTreeMap::new();
    for (i, s) in submissions.into_iter().enumerate() {
        let give_token = if s.gives_x { X } else { Y };
        let mut new = with_tif(order(s.owner, i as u64, give_token, s.give, s.want), s.tif);
        new.expires_at_ms = NOW + 60_000;
        if let Some(cap) = s.capacity {
            for token in [X, Y] {
                budget.0.insert((peer(s.owner), token), cap);
            }
        }
        orders.insert(new.key, new.clone());
        let before = book.clone();
        let outcome = book.submit(new.clone(), NOW, &mut budget).unwrap();

        // The hub receives each fill in the order's give token and pays want_paid in its want
        // token: per token, what comes in equals what goes out. No dust.
        let mut net: BTreeMap<u32, i128> = BTreeMap::new();
        for f in &outcome.fills {
            let o = &orders[&f.key];
            *net.entry(o.give_token).or_default() += f.fill as i128;
            *net.entry(o.want_token).or_default() -= f.want_paid as i128;
            // Each fill at the order's limit or better, never beyond what was left.
            prop_assert!(o.price().is_met_by(f.fill, f.want_paid) || f.fill == 0);
            prop_assert!(f.fill > 0 || f.want_paid == 0);
            let total = filled.entry(f.key).or_default();
            *total += f.fill;
            prop_assert!(*total <= o.give_amount, "overfilled {:?}", f.key);
            prop_assert!(
                !closed.get(&f.key).copied().unwrap_or(false),
                "closed twice"
            );
            if f.closes {
                closed.insert(f.key, true);
            }
            if o.time_in_force == TimeInForce::FillOrKill {
                prop_assert!(f.fill == 0 || f.fill == o.give_amount);
            }
            // Spend the budget of what the hub paid.
            if let Some(left) = budget.0.get_mut(&(f.key.owner, o.want_token)) {
                prop_assert!(*left >= f.want_paid, "paid beyond capacity");
                *left -= f.want_paid;
            }
        }
        prop_assert!(net.values().all(|v| *v == 0), "hub not net zero: {net:?}");
        // Each trade meets both limits exactly.
        for t in &outcome.trades {
            let maker = &orders[&t.maker];
            let taker = &orders[&t.taker];
            prop_assert!(maker.price().is_met_by(t.maker_gave, t.taker_gave));
            prop_assert!(taker.price().is_met_by(t.taker_gave, t.maker_gave));
            prop_assert!(t.maker_gave > 0 && t.taker_gave > 0);
        }
        // A killed FOK leaves the book as it was.
        if s.tif == TimeInForce::FillOrKill && outcome.trades.is_empty() {
            prop_assert_eq!(&book, &before);
        }
        // IOC and FOK never rest and are always closed.
        if s.tif != TimeInForce::GoodTillCancel {
            prop_assert!(!outcome.rested);
            prop_assert!(closed.get(&new.key).copied().unwrap_or(false));
        }
        // Every resting order's remainder is what is left of it, above zero.
        for resting in book.all_orders() {
            let o = &orders[&resting.key];
            let done = filled.get(&resting.key).copied().unwrap_or(0);
            prop_assert_eq!(resting.remaining, o.give_amount - done);
            prop_assert!(resting.remaining > 0);
            prop_assert!(!closed.get(&resting.key).copied().unwrap_or(false));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn matching_creates_nothing_and_respects_every_limit(
        submissions in proptest::collection::vec(submission(), 1..60),
    ) {
        check_submissions(submissions)?;
    }

    #[test]
    fn the_same_submissions_give_the_same_fills_and_book(
        submissions in proptest::collection::vec(submission(), 1..40),
    ) {
        let run = |submissions: &[Submission]| {
            let mut book = OrderBook::new();
            let mut fills = Vec::new();
            for (i, s) in submissions.iter().enumerate() {
                let give_token = if s.gives_x { X } else { Y };
                let new = with_tif(order(s.owner, i as u64, give_token, s.give, s.want), s.tif);
                fills.extend(book.submit(new, NOW, &mut Unlimited).unwrap().fills);
            }
            (hash_of(&book), fills)
        };
        prop_assert_eq!(run(&submissions), run(&submissions));
    }
}
