//! Swaps inside the entity machine (PROTOCOL.md §8).
//!
//! A peer's `SwapOffer` that commits in its account with us enters our order book
//! ([`crate::swap::OrderBook`]) and is matched at once, in the order the offers committed. Each
//! fill becomes a `SwapResolve` queued on the account of the order's maker; the remainder of an
//! immediate-or-cancel or fill-or-kill offer is closed by the same resolve (a fill of zero
//! when nothing matched). The book is part of the replicated entity state: every member of a
//! board replays the same commits and computes the same fills.
//!
//! Matching never plans a payment beyond what we can pay a peer (its account projected with
//! our frame in flight and our queue). The two legs of a match are on two accounts and commit
//! independently: if one is refused when its frame is built (the maker cancelled first, or it
//! expired), the other may already be committed. That leg is reported as
//! [`EntityEvent::SwapLegDropped`] and its order leaves the book; we then hold the position
//! the matched peer would have taken, at its price.

use super::htlc::allocate_side_id;
use super::state::{EntityEvent, EntityState, EntityTxError, Outcome};
use crate::account::{Account, AccountEvent, AccountState, AccountTx, Clock, MAX_CLOCK_SKEW_MS};
use crate::board::EntityId;
use crate::delta::{Side, TokenId};
use crate::swap::{Order, OrderKey, PayoutCapacity, TimeInForce};
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

/// What we can pay each peer, from its account as it will be once our frame in flight and our
/// queued transactions are applied.
struct AccountPayout<'a> {
    accounts: &'a crate::collections::MerkleMap<EntityId, super::state::AccountEntry>,
    clock: Clock,
    projected: BTreeMap<EntityId, (Side, AccountState)>,
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
                            self.book.remove(&OrderKey {
                                owner: peer,
                                offer_id,
                            });
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
                        } if by_peer => outcome.events.push(EntityEvent::SwapResolved {
                            peer,
                            offer_id,
                            fill,
                            want_paid,
                        }),
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
                    },
                error,
            } => {
                self.book.remove(&OrderKey {
                    owner: peer,
                    offer_id: *offer_id,
                });
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
        // The account holds at most one open offer with this id: anything in the book under
        // it is a stale leftover.
        self.book.remove(&key);
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
        };
        let cutoff = self.timestamp.saturating_add(SWAP_EXPIRY_MARGIN_MS);
        // The account validated what the book checks (amounts above zero, two different
        // tokens, the whole give side open) and the key was cleared above, so the book takes
        // the offer. Were it ever refused, the offer would stay out of the book: its maker
        // can still cancel it, and we release it at expiry.
        let Ok(matched) = self.book.submit(order, cutoff, &mut payout) else {
            return;
        };
        for trade in matched.trades {
            outcome.events.push(EntityEvent::SwapMatched(trade));
        }
        for fill in matched.fills {
            self.enqueue(
                &fill.key.owner,
                AccountTx::SwapResolve {
                    offer_id: fill.key.offer_id,
                    fill: fill.fill,
                    want_paid: fill.want_paid,
                },
            );
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
