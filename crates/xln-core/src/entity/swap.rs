//! Swaps inside the entity machine (PROTOCOL.md §8).
//!
//! A peer's `SwapOffer` that commits in its account with us enters our order book
//! ([`crate::swap::OrderBook`]) and is matched at once, in the order the offers committed. Each
//! fill becomes a `SwapResolve` on the account of the order's owner; the remainder of an
//! immediate-or-cancel or fill-or-kill offer is closed by the same resolve (a fill of zero
//! when nothing matched). The book is part of the replicated entity state: every member of a
//! board replays the same commits and computes the same fills.
//!
//! Matching never plans a payment beyond what we can pay a peer (its account projected with
//! our frame in flight, our queue, and the takers' resolves we hold back, below).
//!
//! The legs of a match are on different accounts and commit independently, so they go out in
//! order: **the makers' legs first, the taker's once they are settled** ([`SwapLegs`]). Each
//! maker's leg is queued at once; the taker's resolve is held back until every maker's leg of
//! its match has committed or been dropped (refused when its frame was built: the maker
//! cancelled first, or it expired, reported as [`EntityEvent::SwapLegDropped`], and that order
//! leaves the book). The taker then gets what the committed makers' legs delivered, and no
//! more:
//! - immediate-or-cancel: the committed part, and the resolve closes the offer (a fill of zero
//!   when no maker's leg committed);
//! - fill-or-kill: everything when every maker's leg committed, else a fill of zero, which
//!   cancels the offer untouched;
//! - good-till-cancel: the committed part (no resolve when it is zero); what was not delivered
//!   is not booked again: it stays on hold in the taker's offer, out of the book, until the
//!   taker cancels it or it expires and we release it.
//!
//! So a maker cannot make us pay a taker what the maker never gave: a committed maker's leg
//! is a trade we made with that maker at the maker's own price, and if the taker's leg then
//! fails (the taker cancelled, its offer expired, it does not answer) we hold that position,
//! at that price: ordinary market risk at an honest price, a gain at an absurd one. A taker's
//! resolve held back is forgotten when its offer is cancelled or offered anew under the same
//! id; the makers' legs then stand alone.
//!
//! Our resolves are told apart by the order they are on and their amounts; each is recorded
//! when queued, with a sequence number, and a commit or drop settles the oldest one recorded
//! with the same order and amounts (an account commits our transactions in the order we
//! queued them). What is recorded is bounded by what the accounts hold: one held-back resolve
//! per open offer, one record per resolve of ours queued or in flight.

use super::htlc::allocate_side_id;
use super::state::{EntityEvent, EntityState, EntityTxError, Outcome};
use crate::account::{Account, AccountEvent, AccountState, AccountTx, Clock, MAX_CLOCK_SKEW_MS};
use crate::board::EntityId;
use crate::crypto::Hash;
use crate::delta::{Side, TokenId};
use crate::swap::{Order, OrderKey, PayoutCapacity, TimeInForce, Trade};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Resting orders expiring within this margin of our time are not matched: a resolve must
/// commit before the offer expires, and a frame may be stamped up to the clock skew later.
pub const SWAP_EXPIRY_MARGIN_MS: u64 = MAX_CLOCK_SKEW_MS;

/// A swap offer to make on our account with `peer` (usually a hub); the entity numbers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapOrder {
    pub peer: EntityId,
    pub give_token: TokenId,
    pub give_amount: u128,
    pub want_token: TokenId,
    pub want_amount: u128,
    pub expires_at_ms: u64,
    pub time_in_force: TimeInForce,
}

/// A taker's resolve held back until every maker's leg of its match is settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldTake {
    /// Tells this take from a later one of an offer with the same id.
    pub seq: u64,
    pub time_in_force: TimeInForce,
    /// The token we pay the taker.
    pub want_token: TokenId,
    /// The makers' legs not yet committed nor dropped.
    pub awaited: u32,
    /// What the committed makers' legs delivered: of the taker's give side (`fill`), and what
    /// we pay it (`want_paid`).
    pub fill: u128,
    pub want_paid: u128,
    /// What the awaited makers' legs would add to `want_paid`.
    pub awaited_paid: u128,
    /// A maker's leg was dropped.
    pub short: bool,
}

impl HeldTake {
    /// The most we may still pay the taker for this take.
    fn owed(&self) -> u128 {
        self.want_paid.saturating_add(self.awaited_paid)
    }

    /// The resolve to send the taker once nothing is awaited, if any.
    fn resolve(&self) -> Option<(u128, u128)> {
        match self.time_in_force {
            TimeInForce::FillOrKill if self.short => Some((0, 0)),
            TimeInForce::GoodTillCancel if self.fill == 0 => None,
            _ => Some((self.fill, self.want_paid)),
        }
    }
}

/// A resolve of ours queued or in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OurLeg {
    pub fill: u128,
    pub want_paid: u128,
    /// For a maker's leg, the take that waits for it: the taker's order and the take's `seq`.
    pub take: Option<(OrderKey, u64)>,
}

/// The legs of our matches in flight (see the module doc). Part of the replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapLegs {
    /// Takers' resolves held back, by the taker's order.
    pub takes: BTreeMap<OrderKey, HeldTake>,
    /// Our resolves queued or in flight, by the order they resolve and when they were queued.
    pub legs: BTreeMap<(OrderKey, u64), OurLeg>,
    pub next_seq: u64,
}

impl SwapLegs {
    pub fn is_empty(&self) -> bool {
        self.takes.is_empty() && self.legs.is_empty()
    }

    fn seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        seq
    }

    /// What the takes held back for `peer` may still pay it in `token`.
    fn owed(&self, peer: &EntityId, token: TokenId) -> u128 {
        let from = OrderKey {
            owner: *peer,
            offer_id: 0,
        };
        let to = OrderKey {
            owner: *peer,
            offer_id: u64::MAX,
        };
        self.takes
            .range(from..=to)
            .filter(|(_, take)| take.want_token == token)
            .fold(0u128, |sum, (_, take)| sum.saturating_add(take.owed()))
    }

    /// Takes off the oldest record of a resolve of ours on `key` with these amounts.
    fn settle(&mut self, key: OrderKey, fill: u128, want_paid: u128) -> Option<OurLeg> {
        let at = self
            .legs
            .range((key, 0)..=(key, u64::MAX))
            .find(|(_, leg)| leg.fill == fill && leg.want_paid == want_paid)
            .map(|(at, _)| *at)?;
        self.legs.remove(&at)
    }
}

/// What we can pay each peer, from its account as it will be once our frame in flight and our
/// queued transactions are applied, less what the takes we hold back may pay it.
struct AccountPayout<'a> {
    accounts: &'a crate::collections::MerkleMap<EntityId, super::state::AccountEntry>,
    clock: Clock,
    projected: BTreeMap<EntityId, (Side, AccountState)>,
    held: &'a SwapLegs,
}

impl PayoutCapacity for AccountPayout<'_> {
    fn available(&mut self, peer: &EntityId, token: TokenId) -> u128 {
        let Some(entry) = self.accounts.get(peer) else {
            return 0;
        };
        let clock = self.clock;
        let (side, state) = self
            .projected
            .entry(*peer)
            .or_insert_with(|| (entry.account.side(), projected_state(&entry.account, clock)));
        state
            .capacities(token, *side)
            .map_or(0, |caps| caps.out_capacity)
            .saturating_sub(self.held.owed(peer, token))
    }
}

pub(super) fn projected_state(account: &Account, clock: Clock) -> AccountState {
    let mut state = account
        .pending()
        .map_or_else(|| account.state().clone(), |p| p.state.clone());
    for tx in account.mempool() {
        // What will not apply will be dropped when the frame is built: leave it out here too.
        let _ = state.apply(tx, account.side(), clock);
    }
    state
}

/// Whether a transaction of ours that `matches` is queued or in our frame in flight.
fn queued_or_in_flight(account: &Account, matches: impl Fn(&AccountTx) -> bool) -> bool {
    account.mempool().iter().any(&matches)
        || account
            .pending()
            .is_some_and(|p| p.frame.txs.iter().any(&matches))
}

/// Whether `offer_id` on an account where we are on `side` is numbered as our own offer.
fn is_ours(offer_id: u64, side: Side) -> bool {
    offer_id.is_multiple_of(2) == (side == Side::Left)
}

impl EntityState {
    /// Refuses, with the account's reason, a transaction of ours that our next frame with
    /// `peer` would drop: it is applied, on a copy, to the account as our frame in flight and
    /// our queue will leave it. Nothing changes either way.
    pub fn check_account_tx(&self, peer: &EntityId, tx: &AccountTx) -> Result<(), EntityTxError> {
        let account = &self
            .accounts
            .get(peer)
            .ok_or(EntityTxError::NoAccount(*peer))?
            .account;
        let clock = Clock {
            timestamp: self.timestamp,
            j_height: self.j_height,
        };
        projected_state(account, clock)
            .apply(tx, account.side(), clock)
            .map_err(|error| EntityTxError::AccountTxRefused { peer: *peer, error })
    }

    /// Numbers our offer and queues it on the account with its peer. An offer the account
    /// would refuse (a token it does not hold, a zero or too large amount, beyond our
    /// capacity, an expiry passed) is refused here with the account's reason, and nothing
    /// changes: no id is used up. The account checks it again when our next frame is built.
    pub(super) fn place_swap(
        &mut self,
        order: &SwapOrder,
        outcome: &mut Outcome,
    ) -> Result<(), EntityTxError> {
        let mut next_offer_id = self.next_offer_id;
        let offer_id = allocate_side_id(&mut next_offer_id, &self.id, &order.peer)
            .ok_or(EntityTxError::IdsExhausted)?;
        let tx = AccountTx::SwapOffer {
            offer_id,
            give_token: order.give_token,
            give_amount: order.give_amount,
            want_token: order.want_token,
            want_amount: order.want_amount,
            expires_at_ms: order.expires_at_ms,
            time_in_force: order.time_in_force,
        };
        self.check_account_tx(&order.peer, &tx)?;
        self.next_offer_id = next_offer_id;
        self.enqueue(&order.peer, tx);
        outcome.events.push(EntityEvent::SwapOffered {
            offer_id,
            order: order.clone(),
        });
        Ok(())
    }

    /// Reacts to what an account step did to swaps: offers of the peer enter the book and
    /// match, cancels leave it, resolutions of our own offers are reported, and a leg of ours
    /// that could not be sent takes its order off the book.
    pub(super) fn follow_swaps(
        &mut self,
        peer: EntityId,
        event: &AccountEvent,
        outcome: &mut Outcome,
    ) {
        let Some(our_side) = self.accounts.get(&peer).map(|e| e.account.side()) else {
            return;
        };
        match event {
            AccountEvent::Committed { by_left, txs, .. } => {
                let by_peer = *by_left == (our_side == Side::Right);
                for tx in txs {
                    match *tx {
                        AccountTx::SwapOffer { offer_id, .. } if by_peer => {
                            self.book_offer(peer, offer_id, outcome);
                        }
                        AccountTx::SwapCancel { offer_id } => {
                            let key = OrderKey {
                                owner: peer,
                                offer_id,
                            };
                            self.book.remove(&key);
                            // A take held back for this offer has nothing left to resolve.
                            self.swap_legs.takes.remove(&key);
                            if by_peer && is_ours(offer_id, our_side) {
                                outcome
                                    .events
                                    .push(EntityEvent::SwapCancelled { peer, offer_id });
                            }
                        }
                        AccountTx::SwapResolve {
                            offer_id,
                            fill,
                            want_paid,
                            ..
                        } if by_peer => outcome.events.push(EntityEvent::SwapResolved {
                            peer,
                            offer_id,
                            fill,
                            want_paid,
                        }),
                        AccountTx::SwapResolve {
                            offer_id,
                            fill,
                            want_paid,
                            ..
                        } => {
                            let key = OrderKey {
                                owner: peer,
                                offer_id,
                            };
                            self.leg_settled(key, fill, want_paid, true);
                        }
                        _ => {}
                    }
                }
            }
            AccountEvent::TxDropped {
                tx:
                    AccountTx::SwapResolve {
                        offer_id,
                        fill,
                        want_paid,
                        ..
                    },
                error,
            } => {
                let key = OrderKey {
                    owner: peer,
                    offer_id: *offer_id,
                };
                self.book.remove(&key);
                self.leg_settled(key, *fill, *want_paid, false);
                outcome.events.push(EntityEvent::SwapLegDropped {
                    peer,
                    offer_id: *offer_id,
                    fill: *fill,
                    want_paid: *want_paid,
                    error: error.clone(),
                });
            }
            _ => {}
        }
    }

    /// Puts the peer's committed offer in the book, matches it and queues the resolutions.
    fn book_offer(&mut self, peer: EntityId, offer_id: u64, outcome: &mut Outcome) {
        // The offer as committed: it may already be gone if the same frame cancelled it.
        let Some(offer) = self
            .accounts
            .get(&peer)
            .and_then(|entry| entry.account.state().offers.get(&offer_id))
            .cloned()
        else {
            return;
        };
        let key = OrderKey {
            owner: peer,
            offer_id,
        };
        // The account holds at most one open offer with this id: anything in the book or held
        // back under it is a stale leftover.
        self.book.remove(&key);
        self.swap_legs.takes.remove(&key);
        let order = Order {
            key,
            give_token: offer.give_token,
            give_amount: offer.give_amount,
            want_token: offer.want_token,
            want_amount: offer.want_amount,
            remaining: offer.remaining,
            expires_at_ms: offer.expires_at_ms,
            time_in_force: offer.time_in_force,
        };
        let clock = Clock {
            timestamp: self.timestamp,
            j_height: self.j_height,
        };
        let mut payout = AccountPayout {
            accounts: &self.accounts,
            clock,
            projected: BTreeMap::new(),
            held: &self.swap_legs,
        };
        let cutoff = self.timestamp.saturating_add(SWAP_EXPIRY_MARGIN_MS);
        // The account validated what the book checks (amounts above zero, two different
        // tokens, the whole give side open) and the key was cleared above, so the book takes
        // the offer. Were it ever refused, the offer would stay out of the book: its maker
        // can still cancel it, and we release it at expiry.
        let Ok(matched) = self.book.submit(order, cutoff, &mut payout) else {
            return;
        };
        for trade in &matched.trades {
            outcome.events.push(EntityEvent::SwapMatched(*trade));
        }
        let taker = matched.fills.iter().find(|fill| fill.key == key).copied();
        if matched.trades.is_empty() {
            // Nothing matched: only the taker's own closing resolve, if any, at once.
            if let Some(fill) = taker {
                self.queue_resolve(fill.key, fill.fill, fill.want_paid, None);
            }
            return;
        }
        // The makers' legs go out now; the taker's waits for them.
        let seq = self.swap_legs.seq();
        let (mut awaited, mut awaited_paid) = (0u32, 0u128);
        for trade in &matched.trades {
            let Trade {
                maker,
                maker_gave,
                taker_gave,
                ..
            } = *trade;
            self.queue_resolve(maker, maker_gave, taker_gave, Some((key, seq)));
            awaited = awaited.saturating_add(1);
            // What the taker is paid is at most what the book planned for it.
            awaited_paid = awaited_paid.saturating_add(maker_gave);
        }
        self.swap_legs.takes.insert(
            key,
            HeldTake {
                seq,
                time_in_force: offer.time_in_force,
                want_token: offer.want_token,
                awaited,
                fill: 0,
                want_paid: 0,
                awaited_paid,
                short: false,
            },
        );
    }

    /// Queues a resolve of ours on `key`'s account and records it; `take` is the take that
    /// waits for it, for a maker's leg.
    fn queue_resolve(
        &mut self,
        key: OrderKey,
        fill: u128,
        want_paid: u128,
        take: Option<(OrderKey, u64)>,
    ) {
        let seq = self.swap_legs.seq();
        self.swap_legs.legs.insert(
            (key, seq),
            OurLeg {
                fill,
                want_paid,
                take,
            },
        );
        // The offer as it committed (it is in the book or held back since); gone, the
        // resolve is refused when its frame is built and reported as a dropped leg.
        let terms = self
            .accounts
            .get(&key.owner)
            .and_then(|entry| entry.account.state().offers.get(&key.offer_id))
            .map_or(Hash::ZERO, |offer| offer.terms());
        self.enqueue(
            &key.owner,
            AccountTx::SwapResolve {
                offer_id: key.offer_id,
                terms,
                fill,
                want_paid,
            },
        );
    }

    /// A resolve of ours on `key` committed or was dropped. If it was a maker's leg, the take
    /// that waits for it counts it; once nothing is awaited, the taker's resolve goes out with
    /// what the committed makers' legs delivered.
    fn leg_settled(&mut self, key: OrderKey, fill: u128, want_paid: u128, committed: bool) {
        let Some(OurLeg {
            take: Some((taker, seq)),
            ..
        }) = self.swap_legs.settle(key, fill, want_paid)
        else {
            return;
        };
        let Some(take) = self
            .swap_legs
            .takes
            .get_mut(&taker)
            .filter(|take| take.seq == seq)
        else {
            // The taker's offer was cancelled or offered anew meanwhile.
            return;
        };
        take.awaited = take.awaited.saturating_sub(1);
        // The maker gave `fill` of the taker's want side for `want_paid` of its give side.
        take.awaited_paid = take.awaited_paid.saturating_sub(fill);
        if committed {
            take.fill = take.fill.saturating_add(want_paid);
            take.want_paid = take.want_paid.saturating_add(fill);
        } else {
            take.short = true;
        }
        if take.awaited > 0 {
            return;
        }
        let resolve = take.resolve();
        self.swap_legs.takes.remove(&taker);
        if let Some((fill, want_paid)) = resolve {
            self.queue_resolve(taker, fill, want_paid, None);
        }
    }

    /// Offers of our peers that expired with no cancel or resolve of ours on its way: we
    /// release their holds.
    pub fn expired_offers(&self, clock: Clock) -> Vec<(EntityId, u64)> {
        let mut expired = Vec::new();
        for (peer, entry) in &self.accounts {
            let side = entry.account.side();
            for (offer_id, offer) in &entry.account.state().offers {
                if offer.maker != side
                    && offer.expired(clock)
                    && !queued_or_in_flight(&entry.account, |tx| {
                        matches!(
                            tx,
                            AccountTx::SwapCancel { offer_id: id }
                            | AccountTx::SwapResolve { offer_id: id, .. } if id == offer_id
                        )
                    })
                {
                    expired.push((*peer, *offer_id));
                }
            }
        }
        expired
    }

    pub(super) fn expire_offers(&mut self, outcome: &mut Outcome) -> Result<(), EntityTxError> {
        let clock = Clock {
            timestamp: self.timestamp,
            j_height: self.j_height,
        };
        let expired = self.expired_offers(clock);
        if expired.is_empty() {
            return Err(EntityTxError::NoOfferExpired);
        }
        for (peer, offer_id) in expired {
            self.book.remove(&OrderKey {
                owner: peer,
                offer_id,
            });
            self.enqueue(&peer, AccountTx::SwapCancel { offer_id });
            outcome
                .events
                .push(EntityEvent::SwapExpired { peer, offer_id });
        }
        Ok(())
    }
}
