//! Accounts: one row per account and token with its RCPAN bar; the selected one in detail.

use super::Screen;
use crate::amount::TokenFormat;
use crate::api::{AccountStatus, AccountTokenView, AccountView, NodeView, Request};
use crate::tui::bar::{BarParts, capacity_bar};
use crate::tui::context::{Context, Notice, Ui};
use crate::tui::form::{Form, FormKind};
use crate::tui::format::ago;
use crate::tui::keys::Action;
use crate::tui::list::{ScrollList, TableSpec, draw_table};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row};

/// Widths of the fixed columns: peer, token, out, in, state.
const PEER: u16 = 14;
const TOKEN: u16 = 6;
const AMOUNT: u16 = 12;
const STATE: u16 = 8;
const COLUMNS: u16 = 6;

/// Wider than this, the detail pane sits beside the list instead of below it.
const SIDE_BY_SIDE_WIDTH: u16 = 140;

#[derive(Debug, Default)]
pub struct AccountsScreen {
    /// One row per account and token: indexes into `view.accounts` and its `tokens`
    /// (`None` for an account with no token yet). Rebuilt when the view changes.
    rows: Vec<(usize, Option<usize>)>,
    list: ScrollList,
}

/// The account and token of one row.
struct Selected<'v> {
    account: &'v AccountView,
    token: Option<&'v AccountTokenView>,
}

impl AccountsScreen {
    fn row<'v>(&self, view: &'v NodeView, index: usize) -> Option<Selected<'v>> {
        let (account, token) = *self.rows.get(index)?;
        let account = view.accounts.get(account)?;
        let token = token.and_then(|token| account.tokens.get(token));
        Some(Selected { account, token })
    }

    fn selected<'v>(&self, view: &'v NodeView) -> Option<Selected<'v>> {
        self.row(view, self.list.selected(self.rows.len())?)
    }

    fn act_on_selected(&self, action: Action, cx: &mut Context) {
        let view = cx.view;
        let Some(Selected { account, token }) = self.selected(view) else {
            cx.notice(Notice::error("no account selected"));
            return;
        };
        let peer = account.peer;
        let name = account.peer_name.clone().unwrap_or_else(|| peer.short());
        let with_token = |form: Form| match token {
            Some(token) => form.with_token(view, token.token),
            None => form,
        };
        match action {
            Action::SetCredit => cx.open_form(with_token(Form::new(FormKind::SetCredit { peer }))),
            Action::AddCollateral => {
                cx.open_form(with_token(Form::new(FormKind::AddCollateral { peer })))
            }
            Action::Settle => cx.confirm(
                format!("settle the account with {name} on chain (collateral and Δ are written to the chain)"),
                Request::Settle {
                    peer: peer.to_string(),
                },
            ),
            Action::Dispute => cx.confirm(
                format!(
                    "start a dispute with {name} on chain, with our proof at height {}",
                    account
                        .proof_height
                        .map_or("(none)".to_string(), |h| h.to_string())
                ),
                Request::Dispute {
                    peer: peer.to_string(),
                },
            ),
            _ => {}
        }
    }
}

impl Screen for AccountsScreen {
    fn on_view(&mut self, view: &NodeView) {
        self.rows.clear();
        for (account_index, account) in view.accounts.iter().enumerate() {
            if account.tokens.is_empty() {
                self.rows.push((account_index, None));
            }
            for token_index in 0..account.tokens.len() {
                self.rows.push((account_index, Some(token_index)));
            }
        }
    }

    fn handle_action(&mut self, action: Action, cx: &mut Context) -> bool {
        match action {
            Action::OpenAccount => cx.open_form(Form::new(FormKind::OpenAccount)),
            Action::SetCredit | Action::AddCollateral | Action::Settle | Action::Dispute => {
                self.act_on_selected(action, cx)
            }
            _ => return self.list.apply(action, self.rows.len()),
        }
        true
    }

    fn handle_click(&mut self, position: Position, _cx: &mut Context) {
        self.list.click(position, self.rows.len());
    }

    fn scroll(&mut self, lines: isize, _cx: &mut Context) {
        self.list.scroll(lines, self.rows.len());
    }

    fn draw(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let (list_area, detail_area, frames_area) = if area.width > SIDE_BY_SIDE_WIDTH {
            let [list, side] =
                Layout::horizontal([Constraint::Fill(3), Constraint::Fill(2)]).areas(area);
            let [detail, frames] =
                Layout::vertical([Constraint::Length(10), Constraint::Min(3)]).areas(side);
            (list, detail, frames)
        } else {
            let [list, bottom] =
                Layout::vertical([Constraint::Min(5), Constraint::Length(10)]).areas(area);
            let [detail, frames] =
                Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                    .areas(bottom);
            (list, detail, frames)
        };
        self.draw_list(frame, list_area, ui);
        let selected = self.selected(ui.view);
        draw_detail(frame, detail_area, ui, selected.as_ref());
        draw_frames(frame, frames_area, ui, selected.as_ref().map(|s| s.account));
    }
}

impl AccountsScreen {
    fn draw_list(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let fixed = PEER + TOKEN + 2 * AMOUNT + STATE + (COLUMNS - 1);
        let bar_width = area.width.saturating_sub(2 + fixed).max(1);
        let title = Line::from(vec![
            Span::styled(
                format!(" Accounts ({}) ", ui.view.accounts.len()),
                ui.theme.title(),
            ),
            Span::styled("[", ui.theme.dim()),
            Span::styled("credit to us", ui.theme.credit()),
            Span::styled(" | ", ui.theme.dim()),
            Span::styled("collateral", ui.theme.collateral()),
            Span::styled(" | ", ui.theme.dim()),
            Span::styled("credit to peer", ui.theme.credit()),
            Span::styled("] ", ui.theme.dim()),
            Span::styled("┃", ui.theme.delta()),
            Span::styled("Δ ", ui.theme.dim()),
        ]);
        let spec = TableSpec {
            title,
            header: vec!["peer", "token", "capacity", "out", "in", "state"],
            widths: vec![
                Constraint::Length(PEER),
                Constraint::Length(TOKEN),
                Constraint::Length(bar_width),
                Constraint::Length(AMOUNT),
                Constraint::Length(AMOUNT),
                Constraint::Length(STATE),
            ],
            len: self.rows.len(),
            focused: true,
        };
        draw_table(frame, area, ui.theme, &self.list, spec, |index| {
            let Some(Selected { account, token }) = self.row(ui.view, index) else {
                return Row::new(Vec::<Cell>::new());
            };
            let peer = account
                .peer_name
                .clone()
                .unwrap_or_else(|| account.peer.short());
            let state = match account.status {
                AccountStatus::Synced => Span::styled("synced", ui.theme.ok()),
                AccountStatus::FramePending => Span::styled("pending", ui.theme.warn()),
                AccountStatus::Settling => Span::styled("settling", ui.theme.warn()),
                AccountStatus::Disputed => Span::styled("disputed", ui.theme.error()),
            };
            let Some(token) = token else {
                return Row::new(vec![
                    Cell::from(peer),
                    Cell::from("—"),
                    Cell::from(Span::styled("no token yet", ui.theme.dim())),
                    Cell::from(""),
                    Cell::from(""),
                    Cell::from(state),
                ]);
            };
            let format = TokenFormat::of(ui.view, token.token);
            let bar = capacity_bar(
                BarParts::of(token, account.we_are_left),
                bar_width,
                ui.theme,
            );
            Row::new(vec![
                Cell::from(peer),
                Cell::from(format.symbol.clone()),
                Cell::from(bar),
                Cell::from(Line::from(format.amount(token.out_capacity)).right_aligned()),
                Cell::from(Line::from(format.amount(token.in_capacity)).right_aligned()),
                Cell::from(state),
            ])
        });
    }
}

fn draw_detail(frame: &mut Frame, area: Rect, ui: &Ui, selected: Option<&Selected>) {
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(ui.theme.border());
    let Some(Selected { account, token }) = selected else {
        let empty = Paragraph::new(Line::styled("no account selected", ui.theme.dim()));
        frame.render_widget(empty.block(block.title(" Account ")), area);
        return;
    };
    let name = account
        .peer_name
        .clone()
        .unwrap_or_else(|| account.peer.short());
    let symbol = token.map_or("—".to_string(), |t| {
        TokenFormat::of(ui.view, t.token).symbol
    });
    let title = Line::styled(format!(" {name} · {symbol} "), ui.theme.title());
    let label = |text: &str| Span::styled(format!("{text:<9}"), ui.theme.dim());
    let side = if account.we_are_left { "LEFT" } else { "RIGHT" };
    let state = match account.status {
        AccountStatus::Synced => Span::styled("synced", ui.theme.ok()),
        AccountStatus::FramePending => Span::styled("frame pending", ui.theme.warn()),
        AccountStatus::Settling => Span::styled("settling on chain", ui.theme.warn()),
        AccountStatus::Disputed => Span::styled("disputed", ui.theme.error()),
    };
    let proof = account
        .proof_height
        .map_or("none".to_string(), |h| h.to_string());
    let mut lines = vec![
        Line::from(vec![
            label("peer"),
            Span::raw(format!("{} (we are {side})", account.peer.short())),
        ]),
        Line::from(vec![
            label("height"),
            Span::raw(format!(
                "{} · proof {proof} · {} queued · ",
                account.height, account.queued
            )),
            state,
        ]),
    ];
    if let Some(token) = token {
        let format = TokenFormat::of(ui.view, token.token);
        lines.extend([
            Line::from(vec![
                label("collat."),
                Span::styled(format.amount(token.collateral), ui.theme.collateral()),
            ]),
            Line::from(vec![
                label("Δ"),
                Span::styled(format.signed(token.delta), ui.theme.delta()),
                Span::styled(
                    format!(
                        " (on {} + off {})",
                        format.signed(token.ondelta),
                        format.signed(token.offdelta)
                    ),
                    ui.theme.dim(),
                ),
            ]),
            Line::from(vec![
                label("credit"),
                Span::styled(
                    format!(
                        "to us {} · to peer {}",
                        format.amount(token.peer_credit),
                        format.amount(token.own_credit)
                    ),
                    ui.theme.credit(),
                ),
            ]),
            Line::from(vec![
                label("holds"),
                Span::raw(format!(
                    "ours {} · peer's {}",
                    format.amount(token.our_hold),
                    format.amount(token.peer_hold)
                )),
            ]),
            Line::from(vec![
                label("capacity"),
                Span::raw(format!(
                    "out {} · in {}",
                    format.amount(token.out_capacity),
                    format.amount(token.in_capacity)
                )),
            ]),
        ]);
    }
    let paragraph = Paragraph::new(lines)
        .style(ui.theme.text())
        .block(block.title(title));
    frame.render_widget(paragraph, area);
}

fn draw_frames(frame: &mut Frame, area: Rect, ui: &Ui, account: Option<&AccountView>) {
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(ui.theme.border())
        .title(Line::styled(" Frames ", ui.theme.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(account) = account else {
        return;
    };
    let now = ui.view.status.timestamp;
    let lines: Vec<Line> = account
        .frames
        .iter()
        .rev()
        .take(usize::from(inner.height))
        .map(|summary| {
            Line::from(vec![
                Span::styled(format!("#{:<5}", summary.height), ui.theme.accent()),
                Span::raw(format!("{:>2} tx ", summary.txs)),
                Span::styled(
                    format!("{:<10} ", ago(now, summary.timestamp)),
                    ui.theme.dim(),
                ),
                Span::styled(summary.hash.short(), ui.theme.dim()),
            ])
        })
        .collect();
    if lines.is_empty() {
        frame.render_widget(Line::styled("no frames yet", ui.theme.dim()), inner);
    } else {
        frame.render_widget(Paragraph::new(lines), inner);
    }
}
