//! HTLCs: the locks in flight, incoming and outgoing, with the time and blocks left.

use super::Screen;
use crate::amount::TokenFormat;
use crate::api::Direction;
use crate::tui::context::{Context, Ui};
use crate::tui::format::time_left;
use crate::tui::keys::Action;
use crate::tui::list::{ScrollList, TableSpec, draw_table};
use ratatui::Frame;
use ratatui::layout::{Constraint, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row};

#[derive(Debug, Default)]
pub struct HtlcsScreen {
    list: ScrollList,
}

impl Screen for HtlcsScreen {
    fn handle_action(&mut self, action: Action, cx: &mut Context) -> bool {
        self.list.apply(action, cx.view.htlcs.len())
    }

    fn handle_click(&mut self, position: Position, cx: &mut Context) {
        self.list.click(position, cx.view.htlcs.len());
    }

    fn scroll(&mut self, lines: isize, cx: &mut Context) {
        self.list.scroll(lines, cx.view.htlcs.len());
    }

    fn draw(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let view = ui.view;
        let now = view.status.timestamp;
        let head = view.status.chain.head;
        let incoming = view
            .htlcs
            .iter()
            .filter(|h| h.direction == Direction::Incoming)
            .count();
        let title = Line::styled(
            format!(
                " HTLCs: {incoming} in, {} out ",
                view.htlcs.len() - incoming
            ),
            ui.theme.title(),
        );
        let spec = TableSpec {
            title,
            header: vec![
                "",
                "peer",
                "amount",
                "time left",
                "blocks",
                "state",
                "hashlock",
            ],
            widths: vec![
                Constraint::Length(3),
                Constraint::Length(14),
                Constraint::Length(16),
                Constraint::Length(9),
                Constraint::Length(6),
                Constraint::Fill(1),
                Constraint::Length(13),
            ],
            len: view.htlcs.len(),
            focused: true,
        };
        draw_table(frame, area, ui.theme, &self.list, spec, |index| {
            let Some(htlc) = view.htlcs.get(index) else {
                return Row::new(Vec::<Cell>::new());
            };
            let format = TokenFormat::of(view, htlc.token);
            let direction = match htlc.direction {
                Direction::Incoming => Span::styled("in", ui.theme.ok()),
                Direction::Outgoing => Span::styled("out", ui.theme.warn()),
            };
            let blocks_left = if head == 0 {
                "?".to_string()
            } else {
                htlc.reveal_before_block.saturating_sub(head).to_string()
            };
            Row::new(vec![
                Cell::from(direction),
                Cell::from(ui.names.label(&htlc.peer)),
                Cell::from(Line::from(format.amount_with_symbol(htlc.amount)).right_aligned()),
                Cell::from(Line::from(time_left(now, htlc.expires_at_ms)).right_aligned()),
                Cell::from(Line::from(blocks_left).right_aligned()),
                Cell::from(htlc.state.clone()),
                Cell::from(Span::styled(htlc.hashlock.short(), ui.theme.dim())),
            ])
        });
    }
}
