//! Forwards: what we routed for others, the fees it earned and the failures by reason.

use super::Screen;
use crate::amount::TokenFormat;
use crate::tui::context::{Context, Ui};
use crate::tui::format::ago;
use crate::tui::keys::Action;
use crate::tui::list::{ScrollList, TableSpec, draw_table};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row};

#[derive(Debug, Default)]
pub struct ForwardsScreen {
    list: ScrollList,
}

impl Screen for ForwardsScreen {
    fn handle_action(&mut self, action: Action, cx: &mut Context) -> bool {
        self.list.apply(action, cx.view.forwards.recent.len())
    }

    fn handle_click(&mut self, position: Position, cx: &mut Context) {
        self.list.click(position, cx.view.forwards.recent.len());
    }

    fn scroll(&mut self, lines: isize, cx: &mut Context) {
        self.list.scroll(lines, cx.view.forwards.recent.len());
    }

    fn draw(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let view = ui.view;
        let forwards = &view.forwards;
        // Rows for the longer list plus borders, at least 4, at most half the screen (which on a
        // tiny terminal may be less than 4: `min` last, so no panic).
        let rows = forwards.fees.len().max(forwards.failures.len());
        let summary_height = u16::try_from(rows)
            .unwrap_or(u16::MAX)
            .saturating_add(3)
            .max(4)
            .min(area.height / 2);
        let [summary_area, recent_area] =
            Layout::vertical([Constraint::Length(summary_height), Constraint::Min(3)]).areas(area);
        let [fees_area, failures_area] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(summary_area);

        let mut fee_lines = vec![Line::from(vec![
            Span::styled("forwarded ", ui.theme.dim()),
            Span::styled(forwards.forwarded.to_string(), ui.theme.accent()),
        ])];
        for (token, fee) in &forwards.fees {
            let format = TokenFormat::of(view, *token);
            fee_lines.push(Line::from(vec![
                Span::styled(format!("{:<10}", format.symbol), ui.theme.dim()),
                Span::styled(format.amount(*fee), ui.theme.ok()),
            ]));
        }
        let block = |title: &'static str| {
            Block::new()
                .borders(Borders::ALL)
                .border_style(ui.theme.border())
                .title(Line::styled(title, ui.theme.title()))
        };
        frame.render_widget(
            Paragraph::new(fee_lines)
                .style(ui.theme.text())
                .block(block(" Fees earned ")),
            fees_area,
        );
        let mut failure_lines: Vec<Line> = forwards
            .failures
            .iter()
            .map(|(reason, count)| {
                Line::from(vec![
                    Span::styled(format!("{count:>6} "), ui.theme.error()),
                    Span::raw(reason.clone()),
                ])
            })
            .collect();
        if failure_lines.is_empty() {
            failure_lines.push(Line::styled("none", ui.theme.dim()));
        }
        frame.render_widget(
            Paragraph::new(failure_lines)
                .style(ui.theme.text())
                .block(block(" Refused, by reason ")),
            failures_area,
        );

        let recent = &forwards.recent;
        let now = view.status.timestamp;
        let spec = TableSpec {
            title: Line::styled(format!(" Recent ({}) ", recent.len()), ui.theme.title()),
            header: vec!["when", "from", "fee", "result"],
            widths: vec![
                Constraint::Length(10),
                Constraint::Length(14),
                Constraint::Length(18),
                Constraint::Fill(1),
            ],
            len: recent.len(),
            focused: true,
        };
        // Newest first.
        draw_table(frame, recent_area, ui.theme, &self.list, spec, |index| {
            let Some(forward) = recent
                .len()
                .checked_sub(index + 1)
                .and_then(|i| recent.get(i))
            else {
                return Row::new(Vec::<Cell>::new());
            };
            let format = TokenFormat::of(view, forward.token);
            let result = match &forward.failure {
                None => Span::styled("settled", ui.theme.ok()),
                Some(why) => Span::styled(format!("refused: {why}"), ui.theme.error()),
            };
            Row::new(vec![
                Cell::from(ago(now, forward.timestamp)),
                Cell::from(ui.names.label(&forward.from)),
                Cell::from(Line::from(format.amount_with_symbol(forward.fee)).right_aligned()),
                Cell::from(result),
            ])
        });
    }
}
