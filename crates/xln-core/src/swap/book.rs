//! A deterministic order book with price-time priority.
//!
//! The book belongs to the entity that is the counterparty of every order in it (a hub): an
//! order is an offer a peer made in its account with the hub. Matching two opposite orders
//! means the hub resolves both: it takes the maker's give side and pays the taker, and takes
//! the taker's give side and pays the maker, the same amounts each way. So the hub is net zero
//! per token on every match: no dust stays with it, and none is needed, because amounts are
//! chosen in whole units so that both limits hold exactly (see [`OrderBook::submit`]).
//!
//! Priority: the best price first (the least wanted per unit given), then the order in which
//! orders entered the book (a sequence number, never a clock). Everything is in `BTreeMap`s,
//! so every replica that submits the same orders in the same order gets the same fills.

use super::TimeInForce;
use super::price::{Price, mul_div_ceil, mul_div_floor};
use crate::board::EntityId;
use crate::codec::hash_of;
use crate::collections::{ChunkKey, MerkleMap, ends_chunk_at};
use crate::crypto::Hash;
use crate::delta::TokenId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many resting orders one incoming order may pass over without trading (orders whose
/// remainder is too small to trade in whole units at both limits, orders the hub cannot pay,
/// expired ones) before matching stops. Bounds the work of one submission.
pub const MAX_PASSED_ORDERS: usize = 1_000;

/// An order's identity: the peer whose account holds the offer, and the offer's id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderKey {
    pub owner: EntityId,
    pub offer_id: u64,
}

/// An offer as the book sees it: `give_amount` of `give_token` for `want_amount` of
/// `want_token` at most, of which `remaining` (of the give side) is still open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub key: OrderKey,
    pub give_token: TokenId,
    pub give_amount: u128,
    pub want_token: TokenId,
    pub want_amount: u128,
    pub remaining: u128,
    pub expires_at_ms: u64,
    pub time_in_force: TimeInForce,
}

impl Order {
    /// The limit: `want_amount` per `give_amount`.
    pub fn price(&self) -> Price {
        Price::new(self.want_amount, self.give_amount)
    }
}

/// Why the book refused an order. The book is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error("order amounts must be above zero")]
    ZeroAmount,
    #[error("an order must give one token for another, not token {0} for itself")]
    SameToken(TokenId),
    #[error("order remainder {remaining} is above its give amount {give_amount}")]
    RemainderAboveGive { remaining: u128, give_amount: u128 },
    #[error("order {0:?} is in the book already")]
    DuplicateOrder(OrderKey),
}

/// One match between a resting order (the maker) and an incoming one (the taker): the maker
/// gave `maker_gave` of its give token (the taker's want), the taker gave `taker_gave` of its
/// give token (the maker's want). The hub passes both amounts through unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    pub maker: OrderKey,
    pub taker: OrderKey,
    pub maker_gave: u128,
    pub taker_gave: u128,
}

/// A resolution to send on an order's account: `fill` of its give side taken, `want_paid` of
/// its want side paid to it; `closes` when the offer ends with it (filled, or the remainder
/// of an immediate-or-cancel / fill-or-kill order cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    pub key: OrderKey,
    pub fill: u128,
    pub want_paid: u128,
    pub closes: bool,
}

/// What one submission did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchOutcome {
    pub trades: Vec<Trade>,
    /// One per resting order matched, in match order, then the incoming order's (if it
    /// traded, or if it is immediate-or-cancel / fill-or-kill and must be closed).
    pub fills: Vec<Fill>,
    /// The incoming order's remainder now rests in the book.
    pub rested: bool,
    /// Resting orders found expired (or expiring within the cutoff) and taken off the book.
    pub expired: Vec<OrderKey>,
}

/// What the book's owner can still pay each peer: matching never plans a payment beyond it.
pub trait PayoutCapacity {
    /// How much of `token` the owner can pay `peer` now (its out capacity in their account).
    fn available(&mut self, peer: &EntityId, token: TokenId) -> u128;
}

/// No limit: for tests and benchmarks of the book alone.
pub struct Unlimited;

impl PayoutCapacity for Unlimited {
    fn available(&mut self, _: &EntityId, _: TokenId) -> u128 {
        u128::MAX
    }
}

/// `(give token, want token)`: one side of a market. Orders of `(a, b)` match those of `(b, a)`.
type Pair = (TokenId, TokenId);
/// An order's place in its side: price first, then arrival.
type Position = (Price, u64);

/// One match as planned, before the book changes.
struct Planned {
    position: Position,
    maker_gave: u128,
    taker_gave: u128,
}

#[derive(Default)]
struct Plan {
    trades: Vec<Planned>,
    expired: Vec<Position>,
}

/// What to do with one resting order for the incoming one.
enum Step {
    Trade {
        maker_gave: u128,
        taker_gave: u128,
        /// The incoming order cannot trade further (its remainder is spent or too small).
        taker_done: bool,
    },
    /// This resting order cannot trade with the incoming one; try the next.
    Pass,
    /// The incoming order cannot trade with anything further.
    Stop,
}

/// The resting orders, by side and place, and where each order is. The orders are kept in
/// [`MerkleMap`]s (encoded as plain maps), so that [`OrderBook::hash`] costs what changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderBook {
    sides: BTreeMap<Pair, MerkleMap<Position, Order>>,
    index: MerkleMap<OrderKey, (Pair, Position)>,
    next_seq: u64,
}

impl ChunkKey for Position {
    /// Arrival numbers count up.
    fn ends_chunk(&self) -> bool {
        ends_chunk_at(self.1)
    }
}

impl ChunkKey for OrderKey {
    /// A maker numbers its offers one after the other; owners' ids vary evenly.
    fn ends_chunk(&self) -> bool {
        ends_chunk_at(self.offer_id ^ u64::from(self.owner.0[31]))
    }
}

impl OrderBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// A commitment to the whole book: the keccak of its encoding in which each side and the
    /// index stand for their Merkle roots. Costs what changed since the last call.
    pub fn hash(&self) -> Hash {
        self.commitment(false)
    }

    /// [`OrderBook::hash`] computed reading no cache.
    pub fn hash_from_scratch(&self) -> Hash {
        self.commitment(true)
    }

    fn commitment(&self, from_scratch: bool) -> Hash {
        let OrderBook {
            sides,
            index,
            next_seq,
        } = self;
        let (sides, index): (Vec<(&Pair, Hash)>, Hash) = if from_scratch {
            let sides = sides
                .iter()
                .map(|(pair, side)| (pair, side.root_from_scratch()));
            (sides.collect(), index.root_from_scratch())
        } else {
            let sides = sides.iter().map(|(pair, side)| (pair, side.root()));
            (sides.collect(), index.root())
        };
        hash_of(&("xln.order_book.v1", sides, index, next_seq))
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn get(&self, key: &OrderKey) -> Option<&Order> {
        let (pair, position) = self.index.get(key)?;
        self.sides.get(pair)?.get(position)
    }

    /// The resting orders giving `give` for `want`, best first.
    pub fn orders(&self, give: TokenId, want: TokenId) -> impl Iterator<Item = &Order> {
        self.sides
            .get(&(give, want))
            .into_iter()
            .flat_map(|side| side.values())
    }

    /// Every resting order, by side and then best first.
    pub fn all_orders(&self) -> impl Iterator<Item = &Order> {
        self.sides.values().flat_map(|side| side.values())
    }

    /// Takes an order off the book (its maker cancelled it, or it expired).
    pub fn remove(&mut self, key: &OrderKey) -> Option<Order> {
        let (pair, position) = self.index.remove(key)?;
        let side = self.sides.get_mut(&pair)?;
        let order = side.remove(&position);
        if side.is_empty() {
            self.sides.remove(&pair);
        }
        order
    }

    /// Matches `order` against the resting orders of the opposite side, best price first and
    /// then first come, while the prices cross; an order of `GoodTillCancel` then rests with
    /// what is left. Resting orders expiring at or before `cutoff_ms` are not matched but
    /// taken off; an incoming order expiring by then does not trade nor rest.
    ///
    /// Each match is at the resting order's price: the maker gives `q` and gets
    /// `y = ceil(q × want / give)` (rounding in its favour), and the taker gets `q` for `y`, which
    /// must meet the taker's limit exactly too (it gets any price improvement). When the taker
    /// is the smaller side it gives its whole remainder if both limits allow it, else the
    /// least `y` that buys `q`. A match that cannot meet both limits in whole units is passed
    /// over. Payments to a peer never exceed what `capacity` says the hub can pay it.
    pub fn submit(
        &mut self,
        order: Order,
        cutoff_ms: u64,
        capacity: &mut impl PayoutCapacity,
    ) -> Result<MatchOutcome, BookError> {
        if order.give_amount == 0 || order.want_amount == 0 || order.remaining == 0 {
            return Err(BookError::ZeroAmount);
        }
        if order.give_token == order.want_token {
            return Err(BookError::SameToken(order.give_token));
        }
        if order.remaining > order.give_amount {
            return Err(BookError::RemainderAboveGive {
                remaining: order.remaining,
                give_amount: order.give_amount,
            });
        }
        if self.index.contains_key(&order.key) {
            return Err(BookError::DuplicateOrder(order.key));
        }
        let live = order.expires_at_ms > cutoff_ms;
        let plan = if live {
            self.plan(&order, cutoff_ms, capacity)
        } else {
            Plan::default()
        };
        // Each taker_gave is at most what was left of the order, so the sums fit.
        let taker_gave: u128 = plan.trades.iter().map(|t| t.taker_gave).sum();
        let taker_got: u128 = plan.trades.iter().map(|t| t.maker_gave).sum();
        let killed =
            order.time_in_force == TimeInForce::FillOrKill && taker_gave != order.remaining;
        let mut outcome = MatchOutcome::default();
        let maker_pair = (order.want_token, order.give_token);
        if !killed {
            for planned in &plan.trades {
                self.apply(maker_pair, planned, order.key, &mut outcome);
            }
        }
        for position in &plan.expired {
            if let Some(expired) = self.remove_at(maker_pair, position) {
                outcome.expired.push(expired.key);
            }
        }
        let (taker_gave, taker_got) = if killed {
            (0, 0)
        } else {
            (taker_gave, taker_got)
        };
        let remaining = order.remaining.saturating_sub(taker_gave);
        let resting = order.time_in_force == TimeInForce::GoodTillCancel;
        if taker_gave > 0 || !resting {
            outcome.fills.push(Fill {
                key: order.key,
                fill: taker_gave,
                want_paid: taker_got,
                closes: !resting || remaining == 0,
            });
        }
        if resting && live && remaining > 0 {
            self.rest(Order { remaining, ..order });
            outcome.rested = true;
        }
        Ok(outcome)
    }

    /// The matches `taker` would make now, without changing the book.
    fn plan(&self, taker: &Order, cutoff_ms: u64, capacity: &mut impl PayoutCapacity) -> Plan {
        let mut plan = Plan::default();
        let Some(side) = self.sides.get(&(taker.want_token, taker.give_token)) else {
            return plan;
        };
        let taker_price = taker.price();
        let mut taker_left = taker.remaining;
        // What the hub can still pay each peer in this round, per token.
        let mut payable: BTreeMap<(EntityId, TokenId), u128> = BTreeMap::new();
        let mut passed = 0usize;
        for (position, maker) in side {
            if taker_left == 0 || passed >= MAX_PASSED_ORDERS {
                break;
            }
            if !maker.price().crosses(&taker_price) {
                // Sorted by price: nothing further crosses either.
                break;
            }
            if maker.expires_at_ms <= cutoff_ms {
                plan.expired.push(*position);
                passed += 1;
                continue;
            }
            let maker_account = (maker.key.owner, taker.give_token);
            let taker_account = (taker.key.owner, taker.want_token);
            let to_maker = payable_now(&mut payable, capacity, maker_account);
            let to_taker = payable_now(&mut payable, capacity, taker_account);
            match match_step(maker, &taker_price, taker_left, to_maker, to_taker) {
                Step::Trade {
                    maker_gave,
                    taker_gave,
                    taker_done,
                } => {
                    taker_left = taker_left.saturating_sub(taker_gave);
                    payable.insert(maker_account, to_maker.saturating_sub(taker_gave));
                    // Two different tokens: never the same entry, even for one peer.
                    payable.insert(taker_account, to_taker.saturating_sub(maker_gave));
                    plan.trades.push(Planned {
                        position: *position,
                        maker_gave,
                        taker_gave,
                    });
                    if taker_done {
                        break;
                    }
                }
                Step::Pass => passed += 1,
                Step::Stop => break,
            }
        }
        plan
    }

    fn apply(
        &mut self,
        pair: Pair,
        planned: &Planned,
        taker: OrderKey,
        outcome: &mut MatchOutcome,
    ) {
        let Some(maker) = self
            .sides
            .get_mut(&pair)
            .and_then(|side| side.get_mut(&planned.position))
        else {
            return;
        };
        // Planned against this very state: the fill is at most the remainder.
        maker.remaining = maker.remaining.saturating_sub(planned.maker_gave);
        let key = maker.key;
        let closes = maker.remaining == 0;
        if closes {
            self.remove_at(pair, &planned.position);
        }
        outcome.trades.push(Trade {
            maker: key,
            taker,
            maker_gave: planned.maker_gave,
            taker_gave: planned.taker_gave,
        });
        outcome.fills.push(Fill {
            key,
            fill: planned.maker_gave,
            want_paid: planned.taker_gave,
            closes,
        });
    }

    fn remove_at(&mut self, pair: Pair, position: &Position) -> Option<Order> {
        let side = self.sides.get_mut(&pair)?;
        let order = side.remove(position)?;
        if side.is_empty() {
            self.sides.remove(&pair);
        }
        self.index.remove(&order.key);
        Some(order)
    }

    fn rest(&mut self, order: Order) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let pair = (order.give_token, order.want_token);
        let position = (order.price(), seq);
        self.index.insert(order.key, (pair, position));
        self.sides.entry(pair).or_default().insert(position, order);
    }
}

/// What the hub can still pay on `account` (peer, token) in this round.
fn payable_now(
    payable: &mut BTreeMap<(EntityId, TokenId), u128>,
    capacity: &mut impl PayoutCapacity,
    account: (EntityId, TokenId),
) -> u128 {
    *payable
        .entry(account)
        .or_insert_with(|| capacity.available(&account.0, account.1))
}

/// One match between `maker` (gives X, wants Y) and a taker at `taker_price` with
/// `taker_left` of Y, when the hub can pay the maker `to_maker` of Y and the taker `to_taker`
/// of X.
fn match_step(
    maker: &Order,
    taker_price: &Price,
    taker_left: u128,
    to_maker: u128,
    to_taker: u128,
) -> Step {
    let price = maker.price();
    if to_taker == 0 {
        return Step::Stop;
    }
    // The most X the hub could buy from the maker with what it can pay it (no limit when
    // that does not even fit).
    let affordable = mul_div_floor(to_maker, price.give, price.want).unwrap_or(u128::MAX);
    let most = maker.remaining.min(to_taker).min(affordable);
    if most == 0 {
        return Step::Pass;
    }
    // Y that buys `most` at the maker's price, rounded up for the maker. It is at most
    // `want_amount` (most <= give_amount), so it fits.
    let Some(y_for_most) = mul_div_ceil(most, price.want, price.give) else {
        return Step::Pass;
    };
    let (candidates, taker_done) = if y_for_most <= taker_left {
        ([Some((most, y_for_most)), None], false)
    } else {
        // The taker is the smaller side: the X its remainder buys, rounded down for the maker.
        let Some(q) = mul_div_floor(taker_left, price.give, price.want).filter(|q| *q > 0) else {
            return Step::Stop;
        };
        let least_y = mul_div_ceil(q, price.want, price.give);
        ([Some((q, taker_left)), least_y.map(|y| (q, y))], true)
    };
    for (q, y) in candidates.into_iter().flatten() {
        if y <= to_maker && price.is_met_by(q, y) && taker_price.is_met_by(y, q) {
            return Step::Trade {
                maker_gave: q,
                taker_gave: y,
                taker_done,
            };
        }
    }
    if taker_done { Step::Stop } else { Step::Pass }
}
