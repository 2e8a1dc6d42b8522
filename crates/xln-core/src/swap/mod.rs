//! Swaps and limit orders (PROTOCOL.md §8): exact price arithmetic and the deterministic order
//! book in which a hub matches the offers its peers make in their accounts with it.
//!
//! The account rules (`SwapOffer`, `SwapResolve`, `SwapCancel`) are in `account`; how an
//! entity feeds committed offers into its book and turns fills into account transactions is
//! in `entity::swap`. This module knows neither: it is plain data in, plain data out.

mod book;
mod price;

#[cfg(test)]
mod tests;

pub use book::{
    BookError, Fill, MAX_PASSED_ORDERS, MatchOutcome, Order, OrderBook, OrderKey, PayoutCapacity,
    Trade, Unlimited,
};
pub use price::{Price, cmp_products, mul_div_ceil, mul_div_floor, mul_wide};

use serde::{Deserialize, Serialize};

/// How long an offer may wait for a counterparty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimeInForce {
    /// Rests in the book, filled in parts, until filled, cancelled by its maker, or expired.
    GoodTillCancel,
    /// Matched once against what rests in the book; the remainder is cancelled.
    ImmediateOrCancel,
    /// Filled entirely at once, or cancelled untouched.
    FillOrKill,
}
