//! Reserves: balances per token on chain and in the signer's wallet; deposit, withdraw, move
//! into an account's collateral; the chain transactions still waiting for confirmations.

use super::Screen;
use crate::amount::TokenFormat;
use crate::tui::context::{Context, Ui};
use crate::tui::form::{Form, FormKind};
use crate::tui::keys::Action;
use crate::tui::list::{ScrollList, TableSpec, draw_table};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row};

#[derive(Debug, Default)]
pub struct ReservesScreen {
    list: ScrollList,
    chain_txs: ScrollList,
}

impl Screen for ReservesScreen {
    fn handle_action(&mut self, action: Action, cx: &mut Context) -> bool {
        let kind = match action {
            Action::Deposit => FormKind::Deposit,
            Action::Withdraw => FormKind::Withdraw,
            Action::MoveToCollateral => FormKind::MoveToCollateral,
            _ => return self.list.apply(action, cx.view.reserves.len()),
        };
        let selected = self
            .list
            .selected(cx.view.reserves.len())
            .and_then(|index| cx.view.reserves.get(index));
        let form = match selected {
            Some(reserve) => Form::new(kind).with_token(cx.view, reserve.token),
            None => Form::new(kind),
        };
        cx.open_form(form);
        true
    }

    fn handle_click(&mut self, position: Position, cx: &mut Context) {
        self.list.click(position, cx.view.reserves.len());
    }

    fn scroll(&mut self, lines: isize, cx: &mut Context) {
        self.list.scroll(lines, cx.view.reserves.len());
    }

    fn draw(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let view = ui.view;
        let [reserves_area, txs_area] =
            Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
        let spec = TableSpec {
            title: Line::styled(" Reserves ", ui.theme.title()),
            header: vec!["token", "reserve (on chain)", "wallet", "in collateral"],
            widths: vec![
                Constraint::Length(8),
                Constraint::Length(20),
                Constraint::Length(20),
                Constraint::Fill(1),
            ],
            len: view.reserves.len(),
            focused: true,
        };
        draw_table(frame, reserves_area, ui.theme, &self.list, spec, |index| {
            let Some(reserve) = view.reserves.get(index) else {
                return Row::new(Vec::<Cell>::new());
            };
            let format = TokenFormat::of(view, reserve.token);
            let collateral: u128 = view
                .accounts
                .iter()
                .flat_map(|a| a.tokens.iter())
                .filter(|t| t.token == reserve.token)
                .fold(0u128, |sum, t| sum.saturating_add(t.collateral));
            let wallet = reserve
                .wallet
                .map_or("?".to_string(), |wallet| format.amount(wallet));
            Row::new(vec![
                Cell::from(Span::styled(format.symbol.clone(), ui.theme.accent())),
                Cell::from(Line::from(format.amount(reserve.reserve)).right_aligned()),
                Cell::from(Line::from(wallet).right_aligned()),
                Cell::from(Line::from(format.amount(collateral)).right_aligned()),
            ])
        });
        let txs = &view.pending_chain_txs;
        let spec = TableSpec {
            title: Line::styled(
                format!(" Chain transactions pending ({}) ", txs.len()),
                ui.theme.title(),
            ),
            header: vec!["what", "transaction", "confirmations"],
            widths: vec![
                Constraint::Fill(1),
                Constraint::Length(13),
                Constraint::Length(13),
            ],
            len: txs.len(),
            focused: false,
        };
        draw_table(frame, txs_area, ui.theme, &self.chain_txs, spec, |index| {
            let Some(tx) = txs.get(index) else {
                return Row::new(Vec::<Cell>::new());
            };
            let hash = tx.tx.map_or("not sent".to_string(), |hash| hash.short());
            let confirmations = if tx.confirmations == 0 {
                Span::styled("0", ui.theme.warn())
            } else {
                Span::styled(tx.confirmations.to_string(), ui.theme.ok())
            };
            Row::new(vec![
                Cell::from(tx.what.clone()),
                Cell::from(Span::styled(hash, ui.theme.dim())),
                Cell::from(Line::from(confirmations).right_aligned()),
            ])
        });
    }
}
