//! The RCPAN capacity bar of one account token (PROTOCOL.md §2), from our side:
//!
//! ```text
//!   [ credit the peer extends to us | collateral | credit we extend to the peer ]
//!                                 ┃ Δ: left of it we can send, right of it we can receive
//! ```
//!
//! Our position runs from `-credit to us` (we owe all the credit the peer gave us) to
//! `collateral + credit to peer` (the peer owes us all the credit we gave). It is `Δ` when we
//! are LEFT and `collateral − Δ` when we are RIGHT (the mirror image).

use super::theme::Theme;
use crate::api::AccountTokenView;
use ratatui::style::Style;
use ratatui::text::{Line, Span};

/// The parts of the bar as amounts, from our side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarParts {
    /// Credit the peer extends to us: how far we may go into debt.
    pub credit_to_us: f64,
    pub collateral: f64,
    /// Credit we extend to the peer.
    pub credit_to_peer: f64,
    /// Our position measured from the left end of the bar.
    pub marker: f64,
}

impl BarParts {
    pub fn of(token: &AccountTokenView, we_are_left: bool) -> BarParts {
        let collateral = token.collateral as f64;
        let delta = token.delta as f64;
        let position = if we_are_left {
            delta
        } else {
            collateral - delta
        };
        let credit_to_us = token.peer_credit as f64;
        BarParts {
            credit_to_us,
            collateral,
            credit_to_peer: token.own_credit as f64,
            marker: credit_to_us + position,
        }
    }

    fn total(&self) -> f64 {
        self.credit_to_us + self.collateral + self.credit_to_peer
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Credit,
    Collateral,
}

/// The bar `width` cells wide. Ours (left of Δ) is drawn solid, the peer's shaded.
pub fn capacity_bar(parts: BarParts, width: u16, theme: &Theme) -> Line<'static> {
    let width = usize::from(width);
    let total = parts.total();
    if width == 0 {
        return Line::default();
    }
    if total <= 0.0 {
        return Line::styled("·".repeat(width), theme.dim());
    }
    let cells = width as f64;
    let collateral_from = parts.credit_to_us / total * cells;
    let collateral_to = (parts.credit_to_us + parts.collateral) / total * cells;
    let marker = (parts.marker / total * cells).clamp(0.0, cells - 1.0);
    let marker_cell = marker.floor() as usize;

    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut run = String::new();
    let mut run_style = Style::new();
    for cell in 0..width {
        let middle = cell as f64 + 0.5;
        let (symbol, style) = if cell == marker_cell {
            ('┃', theme.delta())
        } else {
            let part = if middle >= collateral_from && middle < collateral_to {
                Part::Collateral
            } else {
                Part::Credit
            };
            let ours = middle < marker;
            match (part, ours) {
                (Part::Credit, true) => ('▓', theme.credit()),
                (Part::Credit, false) => ('░', theme.credit()),
                (Part::Collateral, true) => ('█', theme.collateral()),
                (Part::Collateral, false) => ('▒', theme.collateral()),
            }
        };
        if style != run_style && !run.is_empty() {
            spans.push(Span::styled(std::mem::take(&mut run), run_style));
        }
        run_style = style;
        run.push(symbol);
    }
    spans.push(Span::styled(run, run_style));
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar_text(token: AccountTokenView, we_are_left: bool, width: u16) -> String {
        let theme = Theme::built_in("dark").expect("dark");
        capacity_bar(BarParts::of(&token, we_are_left), width, &theme).to_string()
    }

    #[test]
    fn marks_delta_between_the_parts() {
        // 100 credit to us, 100 collateral, 200 credit to the peer; Δ = 50 (we are LEFT):
        // we own 50 of the collateral.
        let token = AccountTokenView {
            collateral: 100,
            delta: 50,
            peer_credit: 100,
            own_credit: 200,
            ..AccountTokenView::default()
        };
        assert_eq!(bar_text(token.clone(), true, 8), "▓▓█┃░░░░");
        // The same account seen by RIGHT: its position is C − Δ = 50 too, by symmetry here.
        assert_eq!(bar_text(token.clone(), false, 8), "▓▓█┃░░░░");
        // Δ at the left end: we owe all the credit we were given.
        let in_debt = AccountTokenView {
            delta: -100,
            ..token.clone()
        };
        assert_eq!(bar_text(in_debt, true, 8), "┃░▒▒░░░░");
        // Beyond the right end (a broken invariant) the marker stays on the bar.
        let beyond = AccountTokenView {
            delta: 10_000,
            ..token
        };
        assert_eq!(bar_text(beyond, true, 8), "▓▓██▓▓▓┃");
    }

    #[test]
    fn empty_accounts_draw_a_dotted_bar() {
        assert_eq!(bar_text(AccountTokenView::default(), true, 4), "····");
        assert_eq!(bar_text(AccountTokenView::default(), true, 0), "");
    }
}
