//! The per-token account delta, the RCPAN invariant and derived capacities (PROTOCOL.md §2).
//!
//! All arithmetic is checked: a value that does not fit is [`Overflow`], never a wrap or a
//! panic. Unsigned amounts take part in signed sums, so each must fit `i128`.

use serde::{Deserialize, Serialize};

/// A token's number in the jurisdiction (the Depository's registry).
pub type TokenId = u32;

/// An arithmetic result did not fit: the operation is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("amount out of range")]
pub struct Overflow;

/// Which side of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    Left,
    Right,
}

impl Side {
    pub fn peer(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }
}

/// One token's position in one account, stated from LEFT's side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub collateral: u128,
    pub ondelta: i128,
    pub offdelta: i128,
    /// How far LEFT may go into debt to RIGHT (set by RIGHT).
    pub left_credit_limit: u128,
    /// How far RIGHT may go into debt to LEFT (set by LEFT).
    pub right_credit_limit: u128,
    pub left_hold: u128,
    pub right_hold: u128,
}

/// The six parts of an account from one side, plus what it can send and receive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacities {
    pub out_collateral: u128,
    pub in_collateral: u128,
    pub out_peer_credit: u128,
    pub in_own_credit: u128,
    pub out_own_credit: u128,
    pub in_peer_credit: u128,
    pub out_capacity: u128,
    pub in_capacity: u128,
}

fn signed(value: u128) -> Result<i128, Overflow> {
    i128::try_from(value).map_err(|_| Overflow)
}

/// `max(x, 0)` as an amount.
fn nn(x: i128) -> u128 {
    x.max(0).unsigned_abs()
}

fn add(a: i128, b: i128) -> Result<i128, Overflow> {
    a.checked_add(b).ok_or(Overflow)
}

fn sub(a: i128, b: i128) -> Result<i128, Overflow> {
    a.checked_sub(b).ok_or(Overflow)
}

impl Delta {
    /// `Δ = ondelta + offdelta`.
    pub fn total(&self) -> Result<i128, Overflow> {
        add(self.ondelta, self.offdelta)
    }

    /// How far each side is inside its RCPAN bound: `(Δ − left_hold + left_credit_limit,
    /// C + right_credit_limit − Δ − right_hold)`. The invariant holds when both are `>= 0`.
    pub fn slack(&self) -> Result<(i128, i128), Overflow> {
        let total = self.total()?;
        let left = add(
            sub(total, signed(self.left_hold)?)?,
            signed(self.left_credit_limit)?,
        )?;
        let right = sub(
            sub(
                add(signed(self.collateral)?, signed(self.right_credit_limit)?)?,
                total,
            )?,
            signed(self.right_hold)?,
        )?;
        Ok((left, right))
    }

    /// `−left_credit_limit ≤ Δ − left_hold` and `Δ + right_hold ≤ C + right_credit_limit`.
    pub fn rcpan_holds(&self) -> Result<bool, Overflow> {
        let (left, right) = self.slack()?;
        Ok(left >= 0 && right >= 0)
    }

    /// Whether a change from `self` to `after` may be accepted: each side of the invariant
    /// must hold afterwards, or, where it was already broken (a credit limit lowered below
    /// the debt), must not get worse. This lets repayment through and nothing else.
    pub fn may_become(&self, after: &Delta) -> Result<bool, Overflow> {
        let (left_before, right_before) = self.slack()?;
        let (left_after, right_after) = after.slack()?;
        Ok((left_after >= 0 || left_after >= left_before)
            && (right_after >= 0 || right_after >= right_before))
    }

    /// The capacities as `side` sees them. RIGHT's view is the mirror of LEFT's.
    pub fn capacities(&self, side: Side) -> Result<Capacities, Overflow> {
        let left = self.left_capacities()?;
        Ok(match side {
            Side::Left => left,
            Side::Right => Capacities {
                out_collateral: left.in_collateral,
                in_collateral: left.out_collateral,
                out_peer_credit: left.in_own_credit,
                in_own_credit: left.out_peer_credit,
                out_own_credit: left.in_peer_credit,
                in_peer_credit: left.out_own_credit,
                out_capacity: left.in_capacity,
                in_capacity: left.out_capacity,
            },
        })
    }

    fn left_capacities(&self) -> Result<Capacities, Overflow> {
        let delta = self.total()?;
        let collateral = signed(self.collateral)?;
        let out_collateral = if delta > 0 {
            nn(delta.min(collateral))
        } else {
            0
        };
        let in_collateral = if delta > 0 {
            nn(sub(collateral, delta)?)
        } else {
            self.collateral
        };
        let out_peer_credit = nn(sub(delta, collateral)?);
        let in_own_credit = nn(delta.checked_neg().ok_or(Overflow)?);
        let out_own_credit = nn(sub(
            signed(self.left_credit_limit)?,
            signed(in_own_credit)?,
        )?);
        let in_peer_credit = nn(sub(
            signed(self.right_credit_limit)?,
            signed(out_peer_credit)?,
        )?);
        let sum3 = |a: u128, b: u128, c: u128| -> Result<i128, Overflow> {
            add(add(signed(a)?, signed(b)?)?, signed(c)?)
        };
        let out_capacity = nn(sub(
            sum3(out_peer_credit, out_collateral, out_own_credit)?,
            signed(self.left_hold)?,
        )?);
        let in_capacity = nn(sub(
            sum3(in_own_credit, in_collateral, in_peer_credit)?,
            signed(self.right_hold)?,
        )?);
        Ok(Capacities {
            out_collateral,
            in_collateral,
            out_peer_credit,
            in_own_credit,
            out_own_credit,
            in_peer_credit,
            out_capacity,
            in_capacity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(c: u128, on: i128, off: i128, lcl: u128, rcl: u128) -> Delta {
        Delta {
            collateral: c,
            ondelta: on,
            offdelta: off,
            left_credit_limit: lcl,
            right_credit_limit: rcl,
            ..Delta::default()
        }
    }

    /// (name, delta, LEFT's out capacity, LEFT's in capacity, invariant holds)
    fn table() -> Vec<(&'static str, Delta, u128, u128, bool)> {
        vec![
            (
                "pure collateral, all LEFT's",
                delta(1000, 1000, 0, 0, 0),
                1000,
                0,
                true,
            ),
            (
                "pure collateral, split",
                delta(1000, 600, -200, 0, 0),
                400,
                600,
                true,
            ),
            (
                "collateral plus credit",
                delta(1000, 500, 0, 200, 300),
                700,
                800,
                true,
            ),
            (
                "pure credit, LEFT owes",
                delta(0, 0, -150, 200, 100),
                50,
                250,
                true,
            ),
            (
                "pure credit, RIGHT owes",
                delta(0, 0, 80, 0, 100),
                80,
                20,
                true,
            ),
            (
                "beyond collateral",
                delta(1000, 1000, 250, 0, 300),
                1250,
                50,
                true,
            ),
            (
                "credit lowered below debt",
                delta(0, 0, -300, 100, 0),
                0,
                300,
                false,
            ),
        ]
    }

    #[test]
    fn table_of_positions() {
        for (name, d, out, inn, holds) in table() {
            let left = d.capacities(Side::Left).unwrap();
            assert_eq!(left.out_capacity, out, "{name}: out");
            assert_eq!(left.in_capacity, inn, "{name}: in");
            assert_eq!(d.rcpan_holds().unwrap(), holds, "{name}: rcpan");
            let right = d.capacities(Side::Right).unwrap();
            assert_eq!(right.out_capacity, inn, "{name}: mirror");
            assert_eq!(right.in_capacity, out, "{name}: mirror");
        }
    }

    #[test]
    fn holds_reduce_capacity_and_count_in_the_invariant() {
        let mut d = delta(100, 50, 0, 0, 0);
        d.left_hold = 30;
        assert_eq!(d.capacities(Side::Left).unwrap().out_capacity, 20);
        assert!(d.rcpan_holds().unwrap());
        d.left_hold = 80;
        assert_eq!(d.capacities(Side::Left).unwrap().out_capacity, 0);
        assert!(!d.rcpan_holds().unwrap());
    }

    #[test]
    fn lowered_limit_accepts_repayment_only() {
        // LEFT owes 300 but RIGHT lowered LEFT's limit to 100.
        let before = delta(0, 0, -300, 100, 0);
        let mut more_debt = before.clone();
        more_debt.offdelta = -301;
        let mut repayment = before.clone();
        repayment.offdelta = -250;
        assert!(!before.may_become(&more_debt).unwrap());
        assert!(before.may_become(&repayment).unwrap());
    }

    #[test]
    fn overflow_at_the_edges_is_an_error_not_a_panic() {
        let max = delta(0, i128::MAX, 1, 0, 0);
        assert_eq!(max.total(), Err(Overflow));
        assert_eq!(max.rcpan_holds(), Err(Overflow));
        assert_eq!(max.capacities(Side::Left), Err(Overflow));

        let min = delta(0, i128::MIN, 0, 0, 0);
        assert_eq!(min.capacities(Side::Left), Err(Overflow));

        let huge_collateral = delta(u128::MAX, 0, 0, 0, 0);
        assert_eq!(huge_collateral.slack(), Err(Overflow));
        assert_eq!(huge_collateral.capacities(Side::Right), Err(Overflow));

        let limits = delta(i128::MAX as u128, 0, 0, 0, i128::MAX as u128);
        assert_eq!(limits.slack(), Err(Overflow));

        // The largest values that fit still compute.
        let edge = delta(0, i128::MAX, 0, 0, 0);
        assert_eq!(
            edge.capacities(Side::Left).unwrap().out_peer_credit,
            i128::MAX as u128
        );
    }

    /// The vectors of an independent model in `../shared/vectors/account-delta.json`.
    #[test]
    fn agrees_with_every_shared_vector() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/vectors/account-delta.json"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("the shared vectors must be at {path}: {e}"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let vectors = json["vectors"].as_array().unwrap();
        assert!(vectors.len() > 100, "expected the full vector set");
        let amount = |v: &serde_json::Value| v.as_str().unwrap().parse::<u128>().unwrap();
        let signed = |v: &serde_json::Value| v.as_str().unwrap().parse::<i128>().unwrap();
        for vector in vectors {
            let name = vector["name"].as_str().unwrap();
            let d = &vector["delta"];
            let delta = Delta {
                collateral: amount(&d["collateral"]),
                ondelta: signed(&d["ondelta"]),
                offdelta: signed(&d["offdelta"]),
                left_credit_limit: amount(&d["left_credit_limit"]),
                right_credit_limit: amount(&d["right_credit_limit"]),
                left_hold: amount(&d["left_hold"]),
                right_hold: amount(&d["right_hold"]),
            };
            assert_eq!(
                delta.rcpan_holds().unwrap(),
                vector["rcpan_holds"].as_bool().unwrap(),
                "{name}: rcpan_holds"
            );
            for (side, key) in [(Side::Left, "left"), (Side::Right, "right")] {
                let got = delta.capacities(side).unwrap();
                let want = &vector[key];
                let fields = [
                    ("out_collateral", got.out_collateral),
                    ("in_collateral", got.in_collateral),
                    ("out_peer_credit", got.out_peer_credit),
                    ("in_own_credit", got.in_own_credit),
                    ("out_own_credit", got.out_own_credit),
                    ("in_peer_credit", got.in_peer_credit),
                    ("out_capacity", got.out_capacity),
                    ("in_capacity", got.in_capacity),
                ];
                for (field, value) in fields {
                    assert_eq!(value, amount(&want[field]), "{name}: {key}.{field}");
                }
            }
        }
    }
}
