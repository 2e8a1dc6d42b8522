//! Swap offers inside an account (PROTOCOL.md §8).
//!
//! Rules, stated for the maker (the side that offers) and its counterparty (in practice a hub):
//! - `SwapOffer`, by the maker: both tokens must be *known* in the account (have a delta, i.e.
//!   a credit limit was set or the chain reported collateral for them) and differ; both amounts
//!   are above zero and fit `i128`; the id follows the maker's numbering (LEFT even, RIGHT
//!   odd) and is not open already; the expiry lies after the frame's time. The give amount goes
//!   on the maker's hold in the give token, which RCPAN must allow like any payment.
//! - `SwapResolve { fill, want_paid }`, by the counterparty only, before expiry: `fill` of the
//!   give side moves from the maker to the counterparty and `want_paid` of the want token from
//!   the counterparty to the maker, both or neither. `want_paid × give_amount >=
//!   fill × want_amount`: the maker's price or better, exactly, so any rounding is its gain.
//!   `fill` is at most what is left; a fill-or-kill offer takes all of it or none. A
//!   good-till-cancel offer stays open until nothing is left; an immediate-or-cancel or
//!   fill-or-kill offer closes with its first resolve (`fill = 0` closes it untouched, and
//!   may come even after expiry: it only releases).
//! - `SwapCancel`, by the maker at any time, by the counterparty once the offer expired.
//!
//! Whenever an offer closes, what is left of it leaves the hold in the same step as the offer
//! leaves the state: the hold is released exactly once.

use super::tx::{AccountState, Clock, MAX_OFFERS_PER_ACCOUNT, SwapOfferState, TxError};
use crate::crypto::Hash;
use crate::delta::{Delta, Side, TokenId};
use crate::swap::{Price, TimeInForce};
use std::collections::BTreeMap;

fn hold_of(delta: &mut Delta, side: Side) -> &mut u128 {
    match side {
        Side::Left => &mut delta.left_hold,
        Side::Right => &mut delta.right_hold,
    }
}

/// `from` pays `amount` to the other side: LEFT lowers offdelta, RIGHT raises it.
fn pay(delta: &mut Delta, from: Side, amount: u128) -> Result<(), TxError> {
    let amount = i128::try_from(amount).map_err(|_| TxError::Overflow)?;
    delta.offdelta = match from {
        Side::Left => delta.offdelta.checked_sub(amount),
        Side::Right => delta.offdelta.checked_add(amount),
    }
    .ok_or(TxError::Overflow)?;
    Ok(())
}

impl AccountState {
    pub(super) fn offer_swap(
        &mut self,
        offer_id: u64,
        offer: SwapOfferState,
        clock: Clock,
    ) -> Result<(), TxError> {
        let maker = offer.maker;
        if offer.give_amount == 0 || offer.want_amount == 0 {
            return Err(TxError::ZeroAmount);
        }
        // Both amounts move in signed offdeltas.
        i128::try_from(offer.give_amount).map_err(|_| TxError::Overflow)?;
        i128::try_from(offer.want_amount).map_err(|_| TxError::Overflow)?;
        if offer.give_token == offer.want_token {
            return Err(TxError::SameToken(offer.give_token));
        }
        if offer_id.is_multiple_of(2) != (maker == Side::Left) {
            return Err(TxError::OfferIdOfOtherSide(offer_id));
        }
        if self.offers.contains_key(&offer_id) {
            return Err(TxError::DuplicateOffer(offer_id));
        }
        if self.offers.len() >= MAX_OFFERS_PER_ACCOUNT {
            return Err(TxError::TooManyOffers);
        }
        if offer.expired(clock) {
            return Err(TxError::OfferExpiryInPast);
        }
        if !self.deltas.contains_key(&offer.want_token) {
            return Err(TxError::UnknownToken(offer.want_token));
        }
        let delta = self
            .deltas
            .get_mut(&offer.give_token)
            .ok_or(TxError::UnknownToken(offer.give_token))?;
        let mut after = delta.clone();
        let hold = hold_of(&mut after, maker);
        *hold = hold
            .checked_add(offer.give_amount)
            .ok_or(TxError::Overflow)?;
        if !delta.may_become(&after)? {
            return Err(TxError::InsufficientCapacity {
                token: offer.give_token,
                amount: offer.give_amount,
                available: delta.capacities(maker)?.out_capacity,
            });
        }
        *delta = after;
        self.offers.insert(offer_id, offer);
        Ok(())
    }

    pub(super) fn resolve_swap(
        &mut self,
        offer_id: u64,
        terms: Hash,
        fill: u128,
        want_paid: u128,
        by: Side,
        clock: Clock,
    ) -> Result<(), TxError> {
        let offer = self
            .offers
            .get(&offer_id)
            .ok_or(TxError::UnknownOffer(offer_id))?;
        if by == offer.maker {
            return Err(TxError::NotCounterparty(offer_id));
        }
        if offer.terms() != terms {
            return Err(TxError::OfferTermsChanged(offer_id));
        }
        if fill > offer.remaining {
            return Err(TxError::FillExceedsOffer {
                offer_id,
                fill,
                remaining: offer.remaining,
            });
        }
        if fill == 0 {
            if want_paid != 0 {
                return Err(TxError::PaidWithoutFill(offer_id));
            }
            if offer.time_in_force == TimeInForce::GoodTillCancel {
                return Err(TxError::ZeroAmount);
            }
        } else {
            if offer.expired(clock) {
                return Err(TxError::OfferExpired(offer_id));
            }
            if offer.time_in_force == TimeInForce::FillOrKill && fill != offer.remaining {
                return Err(TxError::PartialFillOrKill {
                    offer_id,
                    fill,
                    remaining: offer.remaining,
                });
            }
            if !Price::new(offer.want_amount, offer.give_amount).is_met_by(fill, want_paid) {
                return Err(TxError::BelowLimitPrice {
                    offer_id,
                    fill,
                    want_paid,
                });
            }
        }
        let remaining = offer.remaining - fill;
        let closes = remaining == 0 || offer.time_in_force != TimeInForce::GoodTillCancel;
        // The fill leaves the hold as it is paid; on closing, the rest of it is released.
        let released = if closes { offer.remaining } else { fill };
        let maker = offer.maker;
        let (give_token, want_token) = (offer.give_token, offer.want_token);

        let give_before = self
            .deltas
            .get(&give_token)
            .ok_or(TxError::UnknownToken(give_token))?;
        let mut give_after = give_before.clone();
        let hold = hold_of(&mut give_after, maker);
        *hold = hold.checked_sub(released).ok_or(TxError::Overflow)?;
        pay(&mut give_after, maker, fill)?;
        // Paying out of the hold never moves a bound the wrong way; checked all the same.
        if !give_before.may_become(&give_after)? {
            return Err(TxError::InsufficientCapacity {
                token: give_token,
                amount: fill,
                available: give_before.capacities(maker)?.out_capacity,
            });
        }

        let want_before = self
            .deltas
            .get(&want_token)
            .ok_or(TxError::UnknownToken(want_token))?;
        let mut want_after = want_before.clone();
        pay(&mut want_after, by, want_paid)?;
        if !want_before.may_become(&want_after)? {
            return Err(TxError::InsufficientCapacity {
                token: want_token,
                amount: want_paid,
                available: want_before.capacities(by)?.out_capacity,
            });
        }

        self.deltas.insert(give_token, give_after);
        self.deltas.insert(want_token, want_after);
        if closes {
            self.offers.remove(&offer_id);
        } else if let Some(offer) = self.offers.get_mut(&offer_id) {
            offer.remaining = remaining;
        }
        Ok(())
    }

    pub(super) fn cancel_swap(
        &mut self,
        offer_id: u64,
        by: Side,
        clock: Clock,
    ) -> Result<(), TxError> {
        let offer = self
            .offers
            .get(&offer_id)
            .ok_or(TxError::UnknownOffer(offer_id))?;
        if by != offer.maker && !offer.expired(clock) {
            return Err(TxError::OfferNotExpired(offer_id));
        }
        let delta = self
            .deltas
            .get_mut(&offer.give_token)
            .ok_or(TxError::UnknownToken(offer.give_token))?;
        let hold = hold_of(delta, offer.maker);
        *hold = hold.checked_sub(offer.remaining).ok_or(TxError::Overflow)?;
        self.offers.remove(&offer_id);
        Ok(())
    }

    /// Whether every hold is exactly what the locks in flight and the open offers reserve:
    /// per token and side, the sum of the side's lock amounts and offer remainders. Holds
    /// are only ever changed together with a lock or an offer, so this always holds; tests
    /// check it after every step.
    pub fn holds_match_obligations(&self) -> bool {
        let mut owed: BTreeMap<(TokenId, bool), u128> = BTreeMap::new();
        let obligations = self
            .locks
            .values()
            .map(|lock| (lock.token, lock.sender, lock.amount))
            .chain(
                self.offers
                    .values()
                    .map(|offer| (offer.give_token, offer.maker, offer.remaining)),
            );
        for (token, side, amount) in obligations {
            let entry = owed.entry((token, side == Side::Left)).or_default();
            match entry.checked_add(amount) {
                Some(sum) => *entry = sum,
                None => return false,
            }
        }
        if owed
            .keys()
            .any(|(token, _)| !self.deltas.contains_key(token))
        {
            return false;
        }
        self.deltas.iter().all(|(token, delta)| {
            let left = owed.get(&(*token, true)).copied().unwrap_or(0);
            let right = owed.get(&(*token, false)).copied().unwrap_or(0);
            delta.left_hold == left && delta.right_hold == right
        })
    }
}
