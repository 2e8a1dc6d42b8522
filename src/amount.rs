//! Amounts as people write and read them: decimal text with the token's decimals, and the
//! integer in the token's smallest unit that the protocol uses. The one place for this rule.

/// Parses `text` ("12", "0.5", "1_000.25") into smallest units of a token with `decimals`.
pub fn parse_amount(text: &str, decimals: u8) -> Result<u128, String> {
    let clean: String = text.trim().chars().filter(|c| *c != '_').collect();
    if clean.is_empty() {
        return Err("no amount given".into());
    }
    let (whole, fraction) = match clean.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (clean.as_str(), ""),
    };
    let digits_only = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !digits_only(whole) || !digits_only(fraction) || (whole.is_empty() && fraction.is_empty()) {
        return Err(format!("{text:?} is not a number"));
    }
    if fraction.len() > usize::from(decimals) {
        return Err(format!("at most {decimals} decimal places"));
    }
    let too_big = || format!("{text:?} is too large");
    let scale = 10u128
        .checked_pow(u32::from(decimals))
        .ok_or_else(too_big)?;
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_big())?
    };
    let fraction_value: u128 = if fraction.is_empty() {
        0
    } else {
        let padded = format!("{fraction:0<width$}", width = usize::from(decimals));
        padded.parse().map_err(|_| too_big())?
    };
    whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(fraction_value))
        .ok_or_else(too_big)
}

/// Formats smallest units as decimal text, without trailing zeros ("1.5", "1000").
pub fn format_amount(amount: u128, decimals: u8) -> String {
    let Some(scale) = 10u128.checked_pow(u32::from(decimals)) else {
        return amount.to_string();
    };
    let whole = amount / scale;
    let fraction = amount % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:0width$}", width = usize::from(decimals));
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A signed amount (a position), with its sign.
pub fn format_signed(amount: i128, decimals: u8) -> String {
    let text = format_amount(amount.unsigned_abs(), decimals);
    if amount < 0 { format!("-{text}") } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_trip_with_decimals() {
        for (text, decimals, units) in [
            ("1", 18, 10u128.pow(18)),
            ("0.5", 18, 5 * 10u128.pow(17)),
            (".25", 2, 25),
            ("1_000", 0, 1000),
            ("12.340", 3, 12_340),
        ] {
            assert_eq!(parse_amount(text, decimals), Ok(units), "{text}");
        }
        assert_eq!(format_amount(15 * 10u128.pow(17), 18), "1.5");
        assert_eq!(format_amount(1000, 0), "1000");
        assert_eq!(format_signed(-250, 2), "-2.5");
    }

    #[test]
    fn bad_amounts_say_why() {
        for (text, needle) in [
            ("", "no amount"),
            ("abc", "not a number"),
            ("1.2.3", "not a number"),
            ("-1", "not a number"),
            (".", "not a number"),
            ("0.001", "at most 2 decimal places"),
            ("999999999999999999999999999999999999999", "too large"),
        ] {
            let error = parse_amount(text, 2).unwrap_err();
            assert!(error.contains(needle), "{text:?}: {error}");
        }
    }
}
