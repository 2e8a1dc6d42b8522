//! Exact price arithmetic on 256-bit intermediates.
//!
//! A price is a ratio of two amounts (`want / give`). Comparing two prices or checking a fill
//! against a limit multiplies two `u128`s, which can need 256 bits: these helpers compute it
//! exactly, so that no amount that fits the protocol (`<= i128::MAX`) is ever refused because an
//! intermediate product did not fit, and no comparison is ever rounded.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

const LOW_64: u128 = u64::MAX as u128;

/// `a × b` as a 256-bit number `(high, low)`.
pub fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    let (a1, a0) = (a >> 64, a & LOW_64);
    let (b1, b0) = (b >> 64, b & LOW_64);
    // Each partial product of two 64-bit halves fits 128 bits.
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    // Three values below 2^64 each: their sum fits easily.
    let middle = (p00 >> 64) + (p01 & LOW_64) + (p10 & LOW_64);
    let low = (p00 & LOW_64) | (middle << 64);
    // The full product is below 2^256, so the high half cannot overflow.
    let high = p11 + (p01 >> 64) + (p10 >> 64) + (middle >> 64);
    (high, low)
}

/// Compares `a × b` with `c × d`, exactly.
pub fn cmp_products(a: u128, b: u128, c: u128, d: u128) -> Ordering {
    mul_wide(a, b).cmp(&mul_wide(c, d))
}

/// `(high, low) / divisor` as `(quotient, remainder)`; `None` when the divisor is zero or the
/// quotient does not fit 128 bits.
fn div_wide(high: u128, low: u128, divisor: u128) -> Option<(u128, u128)> {
    if divisor == 0 || high >= divisor {
        return None;
    }
    if high == 0 {
        return Some((low / divisor, low % divisor));
    }
    if divisor <= LOW_64 {
        // Two steps of 192 by 64 bits: each partial numerator fits 128 bits because the
        // remainder carried into it is below the divisor.
        let upper = (high << 64) | (low >> 64);
        let (q1, r1) = (upper / divisor, upper % divisor);
        let lower = (r1 << 64) | (low & LOW_64);
        return Some(((q1 << 64) | (lower / divisor), lower % divisor));
    }
    // Knuth's algorithm D in base 2^64 with a two-digit divisor: normalise so that its top
    // bit is set, then find the two quotient digits one at a time.
    let shift = divisor.leading_zeros();
    let divisor = divisor << shift;
    let (top, bottom) = if shift == 0 {
        (high, low)
    } else {
        ((high << shift) | (low >> (128 - shift)), low << shift)
    };
    // `top < divisor` still (high < divisor before the shift), so each digit fits 64 bits.
    let (q1, r1) = div_3_by_2(top, bottom >> 64, divisor);
    let (q0, r0) = div_3_by_2(r1, bottom & LOW_64, divisor);
    Some(((q1 << 64) | q0, r0 >> shift))
}

/// `(upper × 2^64 + digit) / divisor` for a normalised divisor (top bit set) and
/// `upper < divisor`: a quotient digit below 2^64 and the remainder.
fn div_3_by_2(upper: u128, digit: u128, divisor: u128) -> (u128, u128) {
    let (d1, d0) = (divisor >> 64, divisor & LOW_64);
    let u2 = upper >> 64;
    // Estimate from the top digits; it is at most two too large.
    let mut q = if u2 == d1 { LOW_64 } else { upper / d1 };
    let mut r = upper - q * d1;
    // While the estimate's product with the lower divisor digit exceeds what is left, it is
    // too large. Once `r` needs more than 64 bits the product cannot exceed it.
    while r >> 64 == 0 && q * d0 > ((r << 64) | digit) {
        q -= 1;
        r += d1;
    }
    // The exact remainder is below the divisor, so arithmetic modulo 2^128 gives it.
    let remainder = ((upper << 64) | digit).wrapping_sub(q.wrapping_mul(divisor));
    (q, remainder)
}

/// `floor(a × b / divisor)`; `None` when the divisor is zero or the result does not fit.
pub fn mul_div_floor(a: u128, b: u128, divisor: u128) -> Option<u128> {
    match a.checked_mul(b) {
        Some(product) => product.checked_div(divisor),
        None => {
            let (high, low) = mul_wide(a, b);
            div_wide(high, low, divisor).map(|(quotient, _)| quotient)
        }
    }
}

/// `ceil(a × b / divisor)`; `None` when the divisor is zero or the result does not fit.
pub fn mul_div_ceil(a: u128, b: u128, divisor: u128) -> Option<u128> {
    let (quotient, remainder) = match a.checked_mul(b) {
        Some(product) => (product.checked_div(divisor)?, product.checked_rem(divisor)?),
        None => {
            let (high, low) = mul_wide(a, b);
            div_wide(high, low, divisor)?
        }
    };
    if remainder == 0 {
        Some(quotient)
    } else {
        quotient.checked_add(1)
    }
}

/// A limit price: `want` units of the wanted token for `give` units of the given one. Compared
/// as exact ratios, so `1/2` and `2/4` are equal. Both parts are above zero in every price the
/// book holds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Price {
    pub want: u128,
    pub give: u128,
}

impl Price {
    pub fn new(want: u128, give: u128) -> Self {
        Self { want, give }
    }

    /// Whether an offer at `self` (selling X for Y, Y per X) and one at `other` (selling Y for
    /// X, X per Y) can trade: the first asks no more Y per X than the second pays,
    /// `self.want / self.give <= other.give / other.want`.
    pub fn crosses(&self, other: &Price) -> bool {
        cmp_products(self.want, other.want, self.give, other.give) != Ordering::Greater
    }

    /// Whether receiving `paid` of the wanted token for `filled` of the given one is at this
    /// price or better for the one who gives: `paid / filled >= want / give`, exactly.
    pub fn is_met_by(&self, filled: u128, paid: u128) -> bool {
        cmp_products(paid, self.give, filled, self.want) != Ordering::Less
    }
}

impl PartialEq for Price {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Price {}

impl PartialOrd for Price {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Price {
    /// Lower is cheaper for the buyer: less wanted per unit given.
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_products(self.want, other.give, other.want, self.give)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wide_products_at_the_edges() {
        assert_eq!(mul_wide(0, u128::MAX), (0, 0));
        assert_eq!(mul_wide(u128::MAX, 1), (0, u128::MAX));
        // (2^128 − 1)^2 = 2^256 − 2^129 + 1
        assert_eq!(mul_wide(u128::MAX, u128::MAX), (u128::MAX - 1, 1));
        assert_eq!(mul_wide(1 << 64, 1 << 64), (1, 0));
    }

    #[test]
    fn division_rounds_the_named_way_and_refuses_what_does_not_fit() {
        assert_eq!(mul_div_floor(10, 3, 4), Some(7));
        assert_eq!(mul_div_ceil(10, 3, 4), Some(8));
        assert_eq!(mul_div_ceil(8, 3, 4), Some(6));
        assert_eq!(mul_div_floor(1, 1, 0), None);
        assert_eq!(mul_div_ceil(1, 1, 0), None);
        // The product needs 256 bits but the quotient fits.
        let big = i128::MAX as u128;
        assert_eq!(mul_div_floor(big, big, big), Some(big));
        assert_eq!(mul_div_ceil(big, big - 1, big), Some(big - 1));
        // The quotient does not fit.
        assert_eq!(mul_div_floor(u128::MAX, u128::MAX, 1), None);
        assert_eq!(mul_div_ceil(u128::MAX, 2, 2), Some(u128::MAX));
    }

    #[test]
    fn prices_compare_as_exact_ratios() {
        assert_eq!(Price::new(1, 2), Price::new(2, 4));
        assert!(Price::new(1, 3) < Price::new(1, 2));
        let huge = i128::MAX as u128;
        // n / (n − 1) falls as n grows; the products need 256 bits.
        assert!(Price::new(huge, huge - 1) < Price::new(huge - 1, huge - 2));
        // Selling X at 3 Y per X crosses a buyer paying 3 Y per X, not one paying 2.
        assert!(Price::new(3, 1).crosses(&Price::new(1, 3)));
        assert!(!Price::new(3, 1).crosses(&Price::new(1, 2)));
        assert!(Price::new(3, 1).is_met_by(2, 6));
        assert!(!Price::new(3, 1).is_met_by(2, 5));
    }

    /// Long division one bit at a time: slow, plainly right, the reference for `div_wide`.
    fn div_wide_by_bits(high: u128, low: u128, divisor: u128) -> Option<(u128, u128)> {
        if divisor == 0 || high >= divisor {
            return None;
        }
        let mut remainder = high;
        let mut quotient = 0u128;
        for bit in (0..128).rev() {
            let carry = remainder >> 127;
            remainder = (remainder << 1) | ((low >> bit) & 1);
            quotient <<= 1;
            if carry == 1 || remainder >= divisor {
                remainder = remainder.wrapping_sub(divisor);
                quotient |= 1;
            }
        }
        Some((quotient, remainder))
    }

    /// Numbers with long runs of ones and zeros, where estimates need correcting.
    fn edgy() -> impl Strategy<Value = u128> {
        prop_oneof![
            any::<u128>(),
            (0u32..128, 0u32..128).prop_map(|(a, b)| (u128::MAX >> a) << b),
            (0u32..128, any::<u64>()).prop_map(|(a, b)| (u128::MAX >> a) ^ u128::from(b)),
            any::<u64>().prop_map(u128::from),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4_096, ..ProptestConfig::default() })]

        #[test]
        fn wide_division_agrees_with_bit_by_bit_division(
            high in edgy(), low in edgy(), divisor in edgy(),
        ) {
            prop_assert_eq!(div_wide(high, low, divisor), div_wide_by_bits(high, low, divisor));
            // And with a numerator just under the divisor's limit, the hardest case.
            if divisor > 1 {
                let high = divisor - 1;
                prop_assert_eq!(div_wide(high, low, divisor), div_wide_by_bits(high, low, divisor));
            }
        }

        #[test]
        fn quotient_times_divisor_plus_remainder_is_the_product(
            a in any::<u128>(), b in any::<u128>(), d in 1..=u128::MAX,
        ) {
            if let Some(floor) = mul_div_floor(a, b, d) {
                // floor × d ≤ a × b < (floor + 1) × d
                let (qh, ql) = mul_wide(floor, d);
                prop_assert!((qh, ql) <= mul_wide(a, b));
                let remainder = {
                    let (ph, pl) = mul_wide(a, b);
                    let (low, borrow) = pl.overflowing_sub(ql);
                    prop_assert_eq!(ph - qh - u128::from(borrow), 0);
                    low
                };
                prop_assert!(remainder < d);
                let ceil = mul_div_ceil(a, b, d);
                let expected = if remainder == 0 { Some(floor) } else { floor.checked_add(1) };
                prop_assert_eq!(ceil, expected);
            } else {
                // The quotient does not fit: a × b ≥ 2^128 × d.
                prop_assert!(mul_wide(a, b).0 >= d);
            }
        }

        #[test]
        fn small_values_agree_with_plain_arithmetic(a in 0u128..1 << 60, b in 0u128..1 << 60, d in 1u128..1 << 60) {
            prop_assert_eq!(mul_div_floor(a, b, d), Some(a * b / d));
            prop_assert_eq!(mul_div_ceil(a, b, d), Some((a * b).div_ceil(d)));
            prop_assert_eq!(cmp_products(a, b, d, a), (a * b).cmp(&(d * a)));
        }
    }
}
