//! Overview: who we are, the chain, reserves and what is owed, at a glance.

use super::Screen;
use crate::amount::TokenFormat;
use crate::api::NodeView;
use crate::tui::context::{Context, Ui};
use crate::tui::format::cells;
use crate::tui::keys::Action;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

#[derive(Debug, Default)]
pub struct OverviewScreen {
    /// Shown on top until the console quits (the caller passes it on a first run).
    pub first_run_hint: Option<String>,
}

impl Screen for OverviewScreen {
    fn handle_action(&mut self, _action: Action, _cx: &mut Context) -> bool {
        false
    }

    fn draw(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let hint_height = match &self.first_run_hint {
            Some(hint) => {
                let width = usize::from(area.width.saturating_sub(2).max(1));
                cells(hint.chars().count().div_ceil(width))
                    .saturating_add(2)
                    .min(area.height / 3)
            }
            None => 0,
        };
        let [hint_area, main] =
            Layout::vertical([Constraint::Length(hint_height), Constraint::Min(0)]).areas(area);
        if let Some(hint) = &self.first_run_hint {
            let block = Block::new()
                .borders(Borders::ALL)
                .border_style(ui.theme.warn())
                .title(Line::styled(" First run ", ui.theme.warn()));
            let text = Paragraph::new(hint.as_str())
                .style(ui.theme.text())
                .wrap(Wrap { trim: true })
                .block(block);
            frame.render_widget(text, hint_area);
        }
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(main);
        let [entity_area, chain_area] =
            Layout::vertical([Constraint::Min(8), Constraint::Length(7)]).areas(left);
        let [reserves_area, totals_area] =
            Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(right);
        draw_entity(frame, entity_area, ui);
        draw_chain(frame, chain_area, ui);
        draw_reserves(frame, reserves_area, ui);
        draw_totals(frame, totals_area, ui);
    }
}

fn titled<'a>(title: &'a str, ui: &Ui) -> Block<'a> {
    Block::new()
        .borders(Borders::ALL)
        .border_style(ui.theme.border())
        .title(Line::styled(format!(" {title} "), ui.theme.title()))
}

fn field<'a>(label: &str, value: impl Into<Span<'a>>, ui: &Ui) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{label:<9}"), ui.theme.dim()),
        value.into(),
    ])
}

/// The full `0x…` id when it fits in `width` cells, else the short form.
fn id_text(full: String, short: String, width: u16) -> String {
    if full.len() + 9 <= usize::from(width) {
        full
    } else {
        short
    }
}

fn draw_entity(frame: &mut Frame, area: Rect, ui: &Ui) {
    let status = &ui.view.status;
    let inner_width = area.width.saturating_sub(2);
    let total_weight: u64 = status.board.members.iter().map(|(_, w)| *w).sum();
    let members: Vec<String> = status
        .board
        .members
        .iter()
        .map(|(signer, weight)| match weight {
            1 => signer.short(),
            _ => format!("{}×{weight}", signer.short()),
        })
        .collect();
    let health = if status.healthy {
        Span::styled("healthy", ui.theme.ok())
    } else {
        Span::styled("unhealthy", ui.theme.error())
    };
    let mut lines = vec![
        field(
            "name",
            Span::styled(status.name.clone(), ui.theme.accent()),
            ui,
        ),
        field(
            "entity",
            id_text(
                status.entity.to_string(),
                status.entity.short(),
                inner_width,
            ),
            ui,
        ),
        field(
            "signer",
            id_text(
                status.signer.to_string(),
                status.signer.short(),
                inner_width,
            ),
            ui,
        ),
        field(
            "board",
            format!(
                "{} of {}: {}",
                status.board.threshold,
                total_weight,
                members.join(", ")
            ),
            ui,
        ),
        field(
            "height",
            format!("{} · {} inputs logged", status.height, status.inputs),
            ui,
        ),
        field(
            "database",
            format!(
                "{:.1} MiB",
                status.database_bytes as f64 / (1024.0 * 1024.0)
            ),
            ui,
        ),
        field(
            "open",
            format!(
                "{} accounts · {} HTLCs",
                ui.view.accounts.len(),
                ui.view.htlcs.len()
            ),
            ui,
        ),
        field("health", health, ui),
    ];
    for problem in &status.problems {
        lines.push(field(
            "",
            Span::styled(problem.clone(), ui.theme.error()),
            ui,
        ));
    }
    let paragraph = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(titled("Entity", ui));
    frame.render_widget(paragraph, area);
}

fn draw_chain(frame: &mut Frame, area: Rect, ui: &Ui) {
    let status = &ui.view.status;
    let chain = &status.chain;
    let connection = if chain.connected {
        Span::styled("connected", ui.theme.ok())
    } else {
        Span::styled("not connected", ui.theme.error())
    };
    let lag = chain.lag();
    let lag_style = if lag > 10 {
        ui.theme.warn()
    } else {
        ui.theme.text()
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("{:<9}", "chain"), ui.theme.dim()),
            Span::raw(format!("id {} · ", chain.chain_id)),
            connection,
        ]),
        field("rpc", chain.rpc_url.clone(), ui),
        Line::from(vec![
            Span::styled(format!("{:<9}", "block"), ui.theme.dim()),
            Span::raw(format!("{} (followed {}, ", chain.head, chain.followed)),
            Span::styled(format!("lag {lag}"), lag_style),
            Span::raw(")"),
        ]),
        field(
            "peers",
            format!(
                "{} connected of {}",
                status.peers_connected,
                ui.view.peers.len()
            ),
            ui,
        ),
    ];
    if let Some(error) = &chain.error {
        lines.push(field(
            "error",
            Span::styled(error.clone(), ui.theme.error()),
            ui,
        ));
    }
    let paragraph = Paragraph::new(lines)
        .style(ui.theme.text())
        .wrap(Wrap { trim: false })
        .block(titled("Chain", ui));
    frame.render_widget(paragraph, area);
}

fn draw_reserves(frame: &mut Frame, area: Rect, ui: &Ui) {
    let view: &NodeView = ui.view;
    let mut lines = Vec::new();
    for reserve in &view.reserves {
        let format = TokenFormat::of(view, reserve.token);
        let wallet = reserve.wallet.map_or("wallet ?".to_string(), |w| {
            format!("wallet {}", format.amount(w))
        });
        lines.push(Line::from(vec![
            Span::styled(format!("{:<6} ", format.symbol), ui.theme.accent()),
            Span::raw(format.amount(reserve.reserve)),
            Span::styled(format!("  ({wallet})"), ui.theme.dim()),
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::styled("no reserves yet", ui.theme.dim()));
    }
    let pending = view.pending_chain_txs.len();
    if pending > 0 {
        lines.push(Line::styled(
            format!("{pending} chain transactions pending"),
            ui.theme.warn(),
        ));
    }
    let paragraph = Paragraph::new(lines)
        .style(ui.theme.text())
        .block(titled("Reserves", ui));
    frame.render_widget(paragraph, area);
}

fn draw_totals(frame: &mut Frame, area: Rect, ui: &Ui) {
    let view: &NodeView = ui.view;
    let mut lines = vec![Line::from(vec![
        Span::styled(format!("{:<7}", "token"), ui.theme.dim()),
        Span::styled(format!("{:>15} ", "owed to us"), ui.theme.dim()),
        Span::styled(format!("{:>15}", "we owe"), ui.theme.dim()),
    ])];
    for totals in &view.status.totals {
        let format = TokenFormat::of(view, totals.token);
        lines.push(Line::from(vec![
            Span::styled(format!("{:<7}", format.symbol), ui.theme.accent()),
            Span::styled(
                format!("{:>15} ", format.amount(totals.owed_to_us)),
                ui.theme.ok(),
            ),
            Span::styled(
                format!("{:>15}", format.amount(totals.we_owe)),
                ui.theme.warn(),
            ),
        ]));
    }
    let paragraph = Paragraph::new(lines)
        .style(ui.theme.text())
        .block(titled("Owed", ui));
    frame.render_widget(paragraph, area);
}
