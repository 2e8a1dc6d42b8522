//! Orders: our swap orders with their fills as they come, the selected one in detail, and,
//! on a hub, the orders resting in its book.

use super::Screen;
use crate::amount::TokenFormat;
use crate::api::{NodeView, OrderState, OrderView, Request, time_in_force_label};
use crate::tui::context::{Context, Notice, Ui};
use crate::tui::form::{Form, FormKind};
use crate::tui::format::time_left;
use crate::tui::keys::Action;
use crate::tui::list::{ScrollList, TableSpec, draw_table};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row};

/// Rows of the detail pane (borders included).
const DETAIL_HEIGHT: u16 = 5;

#[derive(Debug, Default)]
pub struct OrdersScreen {
    list: ScrollList,
    /// A separate scroll state for the book (it is never focused: no selection shown).
    book: ScrollList,
}

impl OrdersScreen {
    fn selected<'v>(&self, view: &'v NodeView) -> Option<&'v OrderView> {
        view.orders.get(self.list.selected(view.orders.len())?)
    }

    /// The peer an order form starts with: the selected order's, else our first account's.
    fn default_peer(&self, view: &NodeView) -> Option<String> {
        let peer = self
            .selected(view)
            .map(|order| order.peer)
            .or_else(|| view.accounts.first().map(|a| a.peer))?;
        // What the form's peer field reads back: a profile's name, else the id.
        Some(
            view.profiles
                .iter()
                .find(|p| p.entity == peer)
                .map_or_else(|| peer.to_string(), |p| p.name.clone()),
        )
    }

    fn cancel_selected(&self, cx: &mut Context) {
        let Some(order) = self.selected(cx.view) else {
            cx.notice(Notice::error("no order selected"));
            return;
        };
        if order.state.is_finished() {
            cx.notice(Notice::error(format!(
                "order {} is {}: nothing left to cancel",
                order.offer_id,
                order.state.label()
            )));
            return;
        }
        let give = TokenFormat::of(cx.view, order.give_token);
        let left = order.give_amount.saturating_sub(order.filled);
        cx.confirm(
            format!(
                "cancel order {} with {}: {} not yet filled is released",
                order.offer_id,
                peer_label(order),
                give.amount_with_symbol(left)
            ),
            Request::CancelOrder {
                peer: order.peer.to_string(),
                offer_id: order.offer_id,
            },
        );
    }
}

fn peer_label(order: &OrderView) -> String {
    order
        .peer_name
        .clone()
        .unwrap_or_else(|| order.peer.short())
}

impl Screen for OrdersScreen {
    fn handle_action(&mut self, action: Action, cx: &mut Context) -> bool {
        match action {
            Action::PlaceOrder => {
                let form = Form::new(FormKind::PlaceOrder);
                let form = match self.default_peer(cx.view) {
                    Some(peer) => form.with_peer(&peer),
                    None => form,
                };
                cx.open_form(form);
            }
            Action::CancelOrder => self.cancel_selected(cx),
            _ => return self.list.apply(action, cx.view.orders.len()),
        }
        true
    }

    fn handle_click(&mut self, position: Position, cx: &mut Context) {
        self.list.click(position, cx.view.orders.len());
    }

    fn scroll(&mut self, lines: isize, cx: &mut Context) {
        self.list.scroll(lines, cx.view.orders.len());
    }

    fn draw(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let view = ui.view;
        let [lists, detail] =
            Layout::vertical([Constraint::Min(4), Constraint::Length(DETAIL_HEIGHT)]).areas(area);
        if view.book.is_empty() {
            self.draw_orders(frame, lists, ui);
        } else {
            let [orders, book] =
                Layout::vertical([Constraint::Fill(1), Constraint::Fill(1)]).areas(lists);
            self.draw_orders(frame, orders, ui);
            self.draw_book(frame, book, ui);
        }
        draw_detail(frame, detail, ui, self.selected(view));
    }
}

impl OrdersScreen {
    fn draw_orders(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let view = ui.view;
        let open = view
            .orders
            .iter()
            .filter(|o| !o.state.is_finished())
            .count();
        let title = Line::styled(
            format!(
                " Orders: {open} open, {} finished ",
                view.orders.len() - open
            ),
            ui.theme.title(),
        );
        let spec = TableSpec {
            title,
            header: vec![
                "peer",
                "id",
                "give",
                "for at least",
                "filled",
                "tif",
                "state",
            ],
            widths: vec![
                Constraint::Length(10),
                Constraint::Length(4),
                Constraint::Fill(1),
                Constraint::Fill(1),
                Constraint::Fill(1),
                Constraint::Length(3),
                Constraint::Length(13),
            ],
            len: view.orders.len(),
            focused: true,
        };
        draw_table(frame, area, ui.theme, &self.list, spec, |index| {
            let Some(order) = view.orders.get(index) else {
                return Row::new(Vec::<Cell>::new());
            };
            let give = TokenFormat::of(view, order.give_token);
            let want = TokenFormat::of(view, order.want_token);
            let state_style = match order.state {
                OrderState::Open | OrderState::PartlyFilled => ui.theme.warn(),
                OrderState::Filled => ui.theme.ok(),
                OrderState::Cancelled | OrderState::Expired => ui.theme.dim(),
                OrderState::Refused => ui.theme.error(),
            };
            Row::new(vec![
                Cell::from(ui.names.label(&order.peer)),
                Cell::from(Line::from(order.offer_id.to_string()).right_aligned()),
                Cell::from(Line::from(give.amount_with_symbol(order.give_amount)).right_aligned()),
                Cell::from(Line::from(want.amount_with_symbol(order.want_amount)).right_aligned()),
                Cell::from(Line::from(give.amount(order.filled)).right_aligned()),
                Cell::from(time_in_force_label(order.time_in_force)),
                Cell::from(Span::styled(order.state.label(), state_style)),
            ])
        });
    }

    fn draw_book(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let view = ui.view;
        let title = Line::styled(
            format!(" Our book: {} resting ", view.book.len()),
            ui.theme.title(),
        );
        let spec = TableSpec {
            title,
            header: vec!["owner", "id", "left", "of", "for at least", "tif"],
            widths: vec![
                Constraint::Length(10),
                Constraint::Length(4),
                Constraint::Fill(1),
                Constraint::Fill(1),
                Constraint::Fill(1),
                Constraint::Length(3),
            ],
            len: view.book.len(),
            focused: false,
        };
        draw_table(frame, area, ui.theme, &self.book, spec, |index| {
            let Some(order) = view.book.get(index) else {
                return Row::new(Vec::<Cell>::new());
            };
            let give = TokenFormat::of(view, order.give_token);
            let want = TokenFormat::of(view, order.want_token);
            Row::new(vec![
                Cell::from(ui.names.label(&order.owner)),
                Cell::from(Line::from(order.offer_id.to_string()).right_aligned()),
                Cell::from(Line::from(give.amount_with_symbol(order.remaining)).right_aligned()),
                Cell::from(Line::from(give.amount(order.give_amount)).right_aligned()),
                Cell::from(Line::from(want.amount_with_symbol(order.want_amount)).right_aligned()),
                Cell::from(time_in_force_label(order.time_in_force)),
            ])
        });
    }
}

fn draw_detail(frame: &mut Frame, area: Rect, ui: &Ui, order: Option<&OrderView>) {
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(ui.theme.border());
    let Some(order) = order else {
        let empty = Paragraph::new(Line::styled(
            "no order selected · an order offers one token of an account for another",
            ui.theme.dim(),
        ));
        frame.render_widget(empty.block(block.title(" Order ")), area);
        return;
    };
    let view = ui.view;
    let give = TokenFormat::of(view, order.give_token);
    let want = TokenFormat::of(view, order.want_token);
    let title = Line::styled(
        format!(
            " Order {} with {} ",
            order.offer_id,
            ui.names.label(&order.peer)
        ),
        ui.theme.title(),
    );
    let label = |text: &str| Span::styled(format!("{text:<9}"), ui.theme.dim());
    let expiry = match order.expires_at_ms {
        None => "never expires".to_string(),
        Some(at) if order.state.is_finished() => format!("expiry at {at} ms"),
        Some(at) => format!("expires in {}", time_left(view.status.timestamp, at)),
    };
    let received = order.received.map_or_else(
        || "received before the node started: not known".to_string(),
        |received| format!("received {}", want.amount_with_symbol(received)),
    );
    let mut state = vec![
        label("state"),
        Span::raw(format!(
            "{} · {} · {expiry}",
            order.state.label(),
            time_in_force_label(order.time_in_force)
        )),
    ];
    if let Some(reason) = &order.reason {
        state.push(Span::styled(format!(" · {reason}"), ui.theme.error()));
    }
    let lines = vec![
        Line::from(vec![
            label("offer"),
            Span::raw(format!(
                "{} for at least {}",
                give.amount_with_symbol(order.give_amount),
                want.amount_with_symbol(order.want_amount)
            )),
        ]),
        Line::from(vec![
            label("filled"),
            Span::raw(format!(
                "{} of {} given · {received}",
                give.amount(order.filled),
                give.amount_with_symbol(order.give_amount)
            )),
        ]),
        Line::from(state),
    ];
    let paragraph = Paragraph::new(lines)
        .style(ui.theme.text())
        .block(block.title(title));
    frame.render_widget(paragraph, area);
}
