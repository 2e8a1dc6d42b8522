//! Amounts as people read and write them: the one place where smallest units become decimal
//! text and back, for the console and the CLI.
//!
//! Amounts are integers in the token's smallest unit (ARCHITECTURE.md, rules of the house);
//! the console shows and reads them with the token's decimals from `view.tokens`.

use crate::api::{NodeView, TokenInfo};
use xln_core::delta::TokenId;

/// How one token is written: its symbol and its decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFormat {
    pub symbol: String,
    pub decimals: u8,
}

impl TokenFormat {
    /// The token as the node describes it, or `#id` with no decimals for a token it does not.
    pub fn of(view: &NodeView, token: TokenId) -> TokenFormat {
        match view.tokens.iter().find(|info| info.id == token) {
            Some(info) => TokenFormat::from(info),
            None => TokenFormat {
                symbol: format!("#{token}"),
                decimals: 0,
            },
        }
    }

    /// `1.5` for 1_500_000 with 6 decimals.
    pub fn amount(&self, amount: u128) -> String {
        format_amount(amount, self.decimals)
    }

    /// `1.5 USDC`.
    pub fn amount_with_symbol(&self, amount: u128) -> String {
        format!("{} {}", self.amount(amount), self.symbol)
    }

    /// `-1.5` for -1_500_000 with 6 decimals.
    pub fn signed(&self, amount: i128) -> String {
        format_signed(amount, self.decimals)
    }

    pub fn parse(&self, text: &str) -> Result<u128, AmountError> {
        parse_amount(text, self.decimals)
    }
}

impl From<&TokenInfo> for TokenFormat {
    fn from(info: &TokenInfo) -> TokenFormat {
        TokenFormat {
            symbol: info.symbol.clone(),
            decimals: info.decimals,
        }
    }
}

/// Why typed text is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("enter an amount")]
    Empty,
    #[error("'{0}' is not a number (digits and one '.')")]
    NotANumber(String),
    #[error("at most {0} decimals")]
    TooManyDecimals(u8),
    #[error("too large")]
    TooLarge,
}

/// Decimal text with all significant decimals and no trailing zeros: `1.5`, `100`, `0.000001`.
pub fn format_amount(amount: u128, decimals: u8) -> String {
    let Some(unit) = 10u128.checked_pow(u32::from(decimals)) else {
        return amount.to_string();
    };
    let whole = amount / unit;
    let fraction = amount % unit;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:0width$}", width = usize::from(decimals));
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Like [`format_amount`], with a leading `-` for negative amounts.
pub fn format_signed(amount: i128, decimals: u8) -> String {
    let magnitude = format_amount(amount.unsigned_abs(), decimals);
    if amount < 0 {
        format!("-{magnitude}")
    } else {
        magnitude
    }
}

/// Reads `1.5` (or `1`, `.5`, `1.`) as smallest units with `decimals` decimals.
pub fn parse_amount(text: &str, decimals: u8) -> Result<u128, AmountError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err(AmountError::NotANumber(text.to_string()));
    }
    if fraction.len() > usize::from(decimals) {
        return Err(AmountError::TooManyDecimals(decimals));
    }
    let unit = 10u128
        .checked_pow(u32::from(decimals))
        .ok_or(AmountError::TooLarge)?;
    let whole_units = if whole.is_empty() {
        0
    } else {
        whole.parse::<u128>().map_err(|_| AmountError::TooLarge)?
    };
    let fraction_units = if fraction.is_empty() {
        0
    } else {
        let padding = 10u128.pow((usize::from(decimals) - fraction.len()) as u32);
        fraction
            .parse::<u128>()
            .map_err(|_| AmountError::TooLarge)?
            * padding
    };
    whole_units
        .checked_mul(unit)
        .and_then(|units| units.checked_add(fraction_units))
        .ok_or(AmountError::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_decimals_and_no_trailing_zeros() {
        assert_eq!(format_amount(1_500_000, 6), "1.5");
        assert_eq!(format_amount(100_000_000, 6), "100");
        assert_eq!(format_amount(1, 6), "0.000001");
        assert_eq!(format_amount(0, 18), "0");
        assert_eq!(format_amount(42, 0), "42");
        assert_eq!(format_amount(u128::MAX, 18).len(), 40);
        assert_eq!(format_signed(-2_500, 3), "-2.5");
        assert_eq!(format_signed(i128::MIN, 0), i128::MIN.to_string());
    }

    #[test]
    fn parses_what_it_formats() {
        assert_eq!(parse_amount("1.5", 6), Ok(1_500_000));
        assert_eq!(parse_amount(" 1 ", 6), Ok(1_000_000));
        assert_eq!(parse_amount(".5", 2), Ok(50));
        assert_eq!(parse_amount("1.", 2), Ok(100));
        assert_eq!(parse_amount("0.000001", 6), Ok(1));
        for amount in [0, 1, 999, 1_000_001, u128::MAX] {
            assert_eq!(parse_amount(&format_amount(amount, 6), 6), Ok(amount));
        }
    }

    #[test]
    fn refuses_what_is_not_an_amount() {
        assert_eq!(parse_amount("", 6), Err(AmountError::Empty));
        assert_eq!(
            parse_amount("1.2.3", 6),
            Err(AmountError::NotANumber("1.2.3".into()))
        );
        assert_eq!(
            parse_amount("-1", 6),
            Err(AmountError::NotANumber("-1".into()))
        );
        assert_eq!(
            parse_amount("1e5", 6),
            Err(AmountError::NotANumber("1e5".into()))
        );
        assert_eq!(
            parse_amount(".", 6),
            Err(AmountError::NotANumber(".".into()))
        );
        assert_eq!(
            parse_amount("1.1234567", 6),
            Err(AmountError::TooManyDecimals(6))
        );
        assert_eq!(parse_amount("1.5", 0), Err(AmountError::TooManyDecimals(0)));
        assert_eq!(
            parse_amount("340282366920938463463374607431768211456", 0),
            Err(AmountError::TooLarge)
        );
        assert_eq!(
            parse_amount("340282366920938463463374607431768211455", 1),
            Err(AmountError::TooLarge)
        );
        assert_eq!(
            parse_amount("١", 0),
            Err(AmountError::NotANumber("١".into()))
        );
    }
}
