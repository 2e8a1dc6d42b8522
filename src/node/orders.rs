//! Our swap orders as the node follows them, for the view: the entity's state holds only the
//! open part of each offer (what is left of it), so the node records, from the entity's
//! events, what each order was, what it received, and how it ended.

use crate::api::{BookOrderView, OrderState, OrderView};
use std::collections::{BTreeMap, VecDeque};
use xln_core::board::EntityId;
use xln_core::delta::Side;
use xln_core::entity::{EntityState, SwapOrder};
use xln_core::gossip::ProfileStore;

/// The expiry of an order placed without one: it never comes.
pub const NEVER_EXPIRES_MS: u64 = u64::MAX;

/// Finished orders kept for the view (the oldest go first).
const KEPT_FINISHED_ORDERS: usize = 100;

/// `None` for [`NEVER_EXPIRES_MS`].
fn shown_expiry(expires_at_ms: u64) -> Option<u64> {
    (expires_at_ms != NEVER_EXPIRES_MS).then_some(expires_at_ms)
}

/// Our orders by (peer, offer id): the open ones and the last finished ones.
#[derive(Debug, Default)]
pub struct Orders {
    orders: BTreeMap<(EntityId, u64), OrderView>,
    /// Finished orders in the order they finished, to forget the oldest.
    finished: VecDeque<(EntityId, u64)>,
}

impl Orders {
    /// The offers of ours open in `state` when the node starts. What they received before is
    /// not in the state, so it is shown as unknown.
    pub fn open_in(state: &EntityState, now: u64) -> Orders {
        let mut orders = Orders::default();
        for (peer, entry) in &state.accounts {
            let side = entry.account.side();
            for (offer_id, offer) in &entry.account.state().offers {
                if offer.maker != side {
                    continue;
                }
                let filled = offer.give_amount.saturating_sub(offer.remaining);
                orders.orders.insert(
                    (*peer, *offer_id),
                    OrderView {
                        peer: *peer,
                        peer_name: None,
                        offer_id: *offer_id,
                        give_token: offer.give_token,
                        give_amount: offer.give_amount,
                        want_token: offer.want_token,
                        want_amount: offer.want_amount,
                        time_in_force: offer.time_in_force,
                        expires_at_ms: shown_expiry(offer.expires_at_ms),
                        filled,
                        received: None,
                        state: if filled > 0 {
                            OrderState::PartlyFilled
                        } else {
                            OrderState::Open
                        },
                        reason: None,
                        placed_at: now,
                    },
                );
            }
        }
        orders
    }

    pub fn get(&self, peer: &EntityId, offer_id: u64) -> Option<&OrderView> {
        self.orders.get(&(*peer, offer_id))
    }

    /// The entity numbered and queued our order.
    pub fn placed(&mut self, offer_id: u64, order: &SwapOrder, now: u64) {
        self.orders.insert(
            (order.peer, offer_id),
            OrderView {
                peer: order.peer,
                peer_name: None,
                offer_id,
                give_token: order.give_token,
                give_amount: order.give_amount,
                want_token: order.want_token,
                want_amount: order.want_amount,
                time_in_force: order.time_in_force,
                expires_at_ms: shown_expiry(order.expires_at_ms),
                filled: 0,
                received: Some(0),
                state: OrderState::Open,
                reason: None,
                placed_at: now,
            },
        );
    }

    /// The peer resolved our order: `fill` of the give side went, `want_paid` came. `open`:
    /// whether the offer is still open in the account after it.
    pub fn resolved(
        &mut self,
        peer: EntityId,
        offer_id: u64,
        (fill, want_paid): (u128, u128),
        open: bool,
    ) {
        let Some(order) = self.orders.get_mut(&(peer, offer_id)) else {
            return;
        };
        order.filled = order.filled.saturating_add(fill);
        order.received = order.received.map(|r| r.saturating_add(want_paid));
        let state = if open {
            OrderState::PartlyFilled
        } else if order.filled == order.give_amount {
            OrderState::Filled
        } else {
            OrderState::Cancelled
        };
        self.set_state(peer, offer_id, state, None);
    }

    /// Our cancel of the order committed.
    pub fn cancelled(&mut self, peer: EntityId, offer_id: u64) {
        self.set_state(peer, offer_id, OrderState::Cancelled, None);
    }

    /// The peer released the order after its expiry.
    pub fn expired(&mut self, peer: EntityId, offer_id: u64) {
        self.set_state(peer, offer_id, OrderState::Expired, None);
    }

    /// The account dropped the order when our frame was built.
    pub fn refused(&mut self, peer: EntityId, offer_id: u64, reason: String) {
        self.set_state(peer, offer_id, OrderState::Refused, Some(reason));
    }

    fn set_state(
        &mut self,
        peer: EntityId,
        offer_id: u64,
        state: OrderState,
        reason: Option<String>,
    ) {
        let key = (peer, offer_id);
        let Some(order) = self.orders.get_mut(&key) else {
            return;
        };
        let was_finished = order.state.is_finished();
        order.state = state;
        order.reason = reason;
        if state.is_finished() && !was_finished {
            self.finished.push_back(key);
            while self.finished.len() > KEPT_FINISHED_ORDERS {
                if let Some(oldest) = self.finished.pop_front() {
                    self.orders.remove(&oldest);
                }
            }
        }
    }

    /// Every order, newest first, with the peers' names where known.
    pub fn views(&self, profiles: &ProfileStore) -> Vec<OrderView> {
        let mut views: Vec<OrderView> = self
            .orders
            .values()
            .map(|order| OrderView {
                peer_name: profiles.get(&order.peer).map(|p| p.profile.name.clone()),
                ..order.clone()
            })
            .collect();
        views.sort_by_key(|o| std::cmp::Reverse((o.placed_at, o.offer_id)));
        views
    }
}

/// Whether our offer `offer_id` is still open in the account with `peer`.
pub fn offer_open(state: &EntityState, peer: &EntityId, offer_id: u64) -> bool {
    state
        .accounts
        .get(peer)
        .is_some_and(|entry| entry.account.state().offers.contains_key(&offer_id))
}

/// Whether we are LEFT in the account with `peer`.
pub fn our_side(state: &EntityState, peer: &EntityId) -> Option<Side> {
    state.accounts.get(peer).map(|entry| entry.account.side())
}

/// The orders resting in our book, each side best first, at most `limit`.
pub fn book(state: &EntityState, profiles: &ProfileStore, limit: usize) -> Vec<BookOrderView> {
    state
        .book
        .all_orders()
        .take(limit)
        .map(|order| BookOrderView {
            owner: order.key.owner,
            owner_name: profiles
                .get(&order.key.owner)
                .map(|p| p.profile.name.clone()),
            offer_id: order.key.offer_id,
            give_token: order.give_token,
            give_amount: order.give_amount,
            want_token: order.want_token,
            want_amount: order.want_amount,
            remaining: order.remaining,
            time_in_force: order.time_in_force,
            expires_at_ms: shown_expiry(order.expires_at_ms),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xln_core::swap::TimeInForce;

    fn order(peer: EntityId) -> SwapOrder {
        SwapOrder {
            peer,
            give_token: 1,
            give_amount: 300,
            want_token: 2,
            want_amount: 100,
            expires_at_ms: NEVER_EXPIRES_MS,
            time_in_force: TimeInForce::GoodTillCancel,
        }
    }

    #[test]
    fn fills_add_up_and_the_last_one_finishes_the_order() {
        let hub = EntityId([7; 32]);
        let mut orders = Orders::default();
        orders.placed(4, &order(hub), 10);
        orders.resolved(hub, 4, (100, 40), true);
        let view = orders.get(&hub, 4).unwrap();
        assert_eq!(
            (view.filled, view.received, view.state),
            (100, Some(40), OrderState::PartlyFilled)
        );
        assert_eq!(view.expires_at_ms, None);
        orders.resolved(hub, 4, (200, 70), false);
        let view = orders.get(&hub, 4).unwrap();
        assert_eq!(
            (view.filled, view.received, view.state),
            (300, Some(110), OrderState::Filled)
        );
    }

    #[test]
    fn a_closed_remainder_is_cancelled_and_events_of_unknown_orders_change_nothing() {
        let hub = EntityId([7; 32]);
        let mut orders = Orders::default();
        orders.placed(4, &order(hub), 10);
        // An immediate-or-cancel order closed after a part: the rest was cancelled.
        orders.resolved(hub, 4, (100, 40), false);
        assert_eq!(orders.get(&hub, 4).unwrap().state, OrderState::Cancelled);
        orders.resolved(hub, 6, (100, 40), false);
        orders.expired(hub, 8);
        assert!(orders.get(&hub, 6).is_none() && orders.get(&hub, 8).is_none());
        assert_eq!(orders.views(&ProfileStore::new()).len(), 1);
    }

    #[test]
    fn only_the_last_finished_orders_are_kept() {
        let hub = EntityId([7; 32]);
        let mut orders = Orders::default();
        let count = KEPT_FINISHED_ORDERS as u64 + 5;
        for id in 0..count {
            orders.placed(id * 2, &order(hub), id);
            orders.cancelled(hub, id * 2);
        }
        // One open order is never forgotten.
        orders.placed(count * 2, &order(hub), count);
        let views = orders.views(&ProfileStore::new());
        assert_eq!(views.len(), KEPT_FINISHED_ORDERS + 1);
        assert_eq!(views[0].state, OrderState::Open, "newest first");
        assert!(orders.get(&hub, 0).is_none(), "the oldest went first");
        assert!(orders.get(&hub, (count - 1) * 2).is_some());
    }
}
