//! Pay: a form (destination, token, amount), the candidate routes for it, then the payment
//! followed by its hashlock through `view.payments` and `view.htlcs`.
//!
//! Enter on a valid form first asks the node for routes; Enter again with the same form
//! sends the payment (seeing the routes and fees is the confirmation).

use super::Screen;
use crate::amount::TokenFormat;
use crate::api::{Request, Response, RouteView};
use crate::tui::context::{Context, Notice, RequestId, Ui};
use crate::tui::form::{Form, FormEvent, FormKind};
use crate::tui::format::{ago, time_left};
use crate::tui::keys::Action;
use crate::tui::list::{ScrollList, TableSpec, draw_table};
use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row};
use xln_core::crypto::Hash;

/// The routes the node found for one payment request (destination, token, amount).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FoundRoutes {
    for_payment: Request,
    routes: Vec<RouteView>,
}

#[derive(Debug)]
pub struct PayScreen {
    form: Form,
    editing: bool,
    routes: Option<FoundRoutes>,
    routes_pending: Option<(RequestId, Request)>,
    pay_pending: Option<RequestId>,
    /// The hashlock of the payment sent from here, and the route the node chose.
    followed: Option<(Hash, RouteView)>,
    message: Option<Notice>,
    payments: ScrollList,
}

impl Default for PayScreen {
    fn default() -> PayScreen {
        PayScreen {
            form: Form::new(FormKind::Pay),
            editing: false,
            routes: None,
            routes_pending: None,
            pay_pending: None,
            followed: None,
            message: None,
            payments: ScrollList::default(),
        }
    }
}

impl PayScreen {
    /// Enter on the form: find routes, or pay if the routes shown are for this very form.
    fn submit(&mut self, cx: &mut Context) {
        let (_, submission) = self.form.check(cx.view);
        let Some(submission) = submission else {
            self.message = Some(Notice::error("fix what the form says first"));
            return;
        };
        let Request::Pay {
            destination,
            token,
            amount,
        } = &submission.request
        else {
            return;
        };
        if self.pay_pending.is_some() {
            self.message = Some(Notice::error("a payment is being handed over; wait for it"));
            return;
        }
        let routes_shown = self
            .routes
            .as_ref()
            .filter(|found| found.for_payment == submission.request && !found.routes.is_empty());
        if routes_shown.is_some() {
            self.pay_pending = Some(cx.send(submission.request.clone(), submission.summary));
            self.message = None;
            return;
        }
        if self
            .routes_pending
            .as_ref()
            .is_some_and(|(_, request)| *request == submission.request)
        {
            return;
        }
        let routes = Request::Routes {
            destination: destination.clone(),
            token: *token,
            amount: *amount,
        };
        let id = cx.send(routes, format!("routes to {}", submission.summary));
        self.routes_pending = Some((id, submission.request));
        self.routes = None;
        self.message = None;
    }
}

impl Screen for PayScreen {
    fn editing(&self) -> bool {
        self.editing
    }

    fn handle_key(&mut self, key: &KeyEvent, cx: &mut Context) -> bool {
        match self.form.handle_key(key, cx.view) {
            FormEvent::Submit => self.submit(cx),
            FormEvent::Cancel => self.editing = false,
            FormEvent::Edited => self.message = None,
            FormEvent::Ignored => {}
        }
        true
    }

    fn handle_action(&mut self, action: Action, cx: &mut Context) -> bool {
        if action == Action::EditPayment {
            self.editing = true;
            return true;
        }
        self.payments.apply(action, cx.view.payments.len())
    }

    fn handle_click(&mut self, position: Position, cx: &mut Context) {
        self.payments.click(position, cx.view.payments.len());
    }

    fn scroll(&mut self, lines: isize, cx: &mut Context) {
        self.payments.scroll(lines, cx.view.payments.len());
    }

    fn on_response(&mut self, id: RequestId, response: &Response, _cx: &mut Context) -> bool {
        let answers_routes = self
            .routes_pending
            .as_ref()
            .is_some_and(|(pending, _)| *pending == id);
        if let Some((_, for_payment)) = self.routes_pending.take_if(|_| answers_routes) {
            match response {
                Response::Routes(routes) => {
                    self.message = Some(if routes.is_empty() {
                        Notice::error("no route can carry this amount")
                    } else {
                        Notice::ok("enter again pays (the node picks the route)")
                    });
                    self.routes = Some(FoundRoutes {
                        for_payment,
                        routes: routes.clone(),
                    });
                }
                Response::Error { message } => {
                    self.message = Some(Notice::error(format!("routes: {message}")));
                }
                other => {
                    self.message = Some(Notice::error(format!("unexpected answer: {other:?}")));
                }
            }
            return true;
        }
        if self.pay_pending == Some(id) {
            self.pay_pending = None;
            match response {
                Response::PaymentStarted { hashlock, route } => {
                    self.followed = Some((*hashlock, route.clone()));
                    self.routes = None;
                    self.form.clear_amount();
                    self.editing = false;
                    self.message = Some(Notice::ok("payment sent; its progress is below"));
                }
                Response::Error { message } => {
                    self.message = Some(Notice::error(format!("not sent: {message}")));
                }
                other => {
                    self.message = Some(Notice::error(format!("unexpected answer: {other:?}")));
                }
            }
            return true;
        }
        false
    }

    fn hint(&self) -> Option<&'static str> {
        if self.editing {
            Some("typing: enter routes/pay · esc stop · tab next/complete · ←→ token")
        } else {
            None
        }
    }

    fn draw(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        // On a small terminal routes and the followed payment get two lines each.
        let pane = if area.height < 30 { 4 } else { 7 };
        let [form_area, routes_area, followed_area, payments_area] = Layout::vertical([
            Constraint::Length(7),
            Constraint::Length(pane),
            Constraint::Length(pane),
            Constraint::Min(3),
        ])
        .areas(area);
        self.draw_form(frame, form_area, ui);
        self.draw_routes(frame, routes_area, ui);
        self.draw_followed(frame, followed_area, ui);
        self.draw_payments(frame, payments_area, ui);
    }
}

impl PayScreen {
    fn draw_form(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let hint = if self.editing {
            " typing · esc to stop "
        } else {
            " enter to edit "
        };
        let block = Block::new()
            .borders(Borders::ALL)
            .border_style(if self.editing {
                ui.theme.accent()
            } else {
                ui.theme.border()
            })
            .title(Line::styled(" Payment ", ui.theme.title()))
            .title_bottom(Line::styled(hint, ui.theme.dim()));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let [fields, status] =
            Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
        self.form.draw_fields(frame, fields, ui, self.editing);
        let status_line = if self.routes_pending.is_some() || self.pay_pending.is_some() {
            Line::styled(format!("{} asking the node…", ui.spinner), ui.theme.warn())
        } else if let Some(message) = &self.message {
            let style = if message.is_error {
                ui.theme.error()
            } else {
                ui.theme.ok()
            };
            Line::styled(message.text.clone(), style)
        } else {
            Line::default()
        };
        frame.render_widget(status_line, status);
    }

    fn draw_routes(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let current = self.form.check(ui.view).1.map(|s| s.request);
        let stale = self
            .routes
            .as_ref()
            .is_some_and(|found| current.as_ref() != Some(&found.for_payment));
        let title = if stale {
            Line::styled(
                " Routes (for an earlier form: enter asks again) ",
                ui.theme.warn(),
            )
        } else {
            Line::styled(" Routes ", ui.theme.title())
        };
        let block = Block::new()
            .borders(Borders::ALL)
            .border_style(ui.theme.border())
            .title(title);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let Some(found) = &self.routes else {
            let text = Line::styled("enter on a valid form shows the routes", ui.theme.dim());
            frame.render_widget(text, inner);
            return;
        };
        let token = match &found.for_payment {
            Request::Pay { token, .. } => *token,
            _ => 0,
        };
        let format = TokenFormat::of(ui.view, token);
        let lines: Vec<Line> = found
            .routes
            .iter()
            .take(usize::from(inner.height))
            .map(|route| {
                let hops: Vec<String> = route
                    .hops
                    .iter()
                    .zip(route.names.iter().chain(std::iter::repeat(&None)))
                    .map(|(hop, name)| name.clone().unwrap_or_else(|| hop.short()))
                    .collect();
                Line::from(vec![
                    Span::styled(
                        format!("{:>5.1}% ", f64::from(route.success_per_mille) / 10.0),
                        ui.theme.ok(),
                    ),
                    Span::styled(
                        format!("fee {:<10} ", format.amount(route.fee)),
                        ui.theme.warn(),
                    ),
                    Span::raw(hops.join(" → ")),
                ])
            })
            .collect();
        frame.render_widget(Paragraph::new(lines).style(ui.theme.text()), inner);
    }

    fn draw_followed(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let block = Block::new()
            .borders(Borders::ALL)
            .border_style(ui.theme.border())
            .title(Line::styled(" Sent from here ", ui.theme.title()));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let Some((hashlock, route)) = &self.followed else {
            frame.render_widget(Line::styled("nothing yet", ui.theme.dim()), inner);
            return;
        };
        let view = ui.view;
        let payment = view.payments.iter().find(|p| p.hashlock == *hashlock);
        let mut lines = Vec::new();
        match payment {
            Some(payment) => {
                let format = TokenFormat::of(view, payment.token);
                let style = status_style(&payment.status, ui);
                lines.push(Line::from(vec![
                    Span::styled(payment.status.clone(), style),
                    Span::raw(format!(
                        "  {} to {} over {} hops, fee {}",
                        format.amount_with_symbol(payment.amount),
                        ui.names.label(&payment.receiver),
                        payment.hops,
                        format.amount(payment.sent.saturating_sub(payment.amount))
                    )),
                ]));
            }
            None => lines.push(Line::styled(
                format!(
                    "handed over ({} hops); waiting for the node's view of it",
                    route.hops.len()
                ),
                ui.theme.warn(),
            )),
        }
        let now = view.status.timestamp;
        for htlc in view.htlcs.iter().filter(|h| h.hashlock == *hashlock) {
            let format = TokenFormat::of(view, htlc.token);
            lines.push(Line::styled(
                format!(
                    "  lock #{} with {}: {} {} · {} left",
                    htlc.lock_id,
                    ui.names.label(&htlc.peer),
                    format.amount_with_symbol(htlc.amount),
                    htlc.state,
                    time_left(now, htlc.expires_at_ms)
                ),
                ui.theme.dim(),
            ));
        }
        frame.render_widget(Paragraph::new(lines).style(ui.theme.text()), inner);
    }

    fn draw_payments(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let view = ui.view;
        let now = view.status.timestamp;
        let count = view.payments.len();
        let spec = TableSpec {
            title: Line::styled(format!(" Payments ({count}) "), ui.theme.title()),
            header: vec!["when", "to", "amount", "fee", "hops", "status"],
            widths: vec![
                Constraint::Length(10),
                Constraint::Length(14),
                Constraint::Length(16),
                Constraint::Length(10),
                Constraint::Length(4),
                Constraint::Fill(1),
            ],
            len: count,
            focused: !self.editing,
        };
        // Newest first.
        draw_table(frame, area, ui.theme, &self.payments, spec, |index| {
            let Some(payment) = count
                .checked_sub(index + 1)
                .and_then(|i| view.payments.get(i))
            else {
                return Row::new(Vec::<Cell>::new());
            };
            let format = TokenFormat::of(view, payment.token);
            Row::new(vec![
                Cell::from(ago(now, payment.started_at)),
                Cell::from(ui.names.label(&payment.receiver)),
                Cell::from(Line::from(format.amount_with_symbol(payment.amount)).right_aligned()),
                Cell::from(
                    Line::from(format.amount(payment.sent.saturating_sub(payment.amount)))
                        .right_aligned(),
                ),
                Cell::from(payment.hops.to_string()),
                Cell::from(Span::styled(
                    payment.status.clone(),
                    status_style(&payment.status, ui),
                )),
            ])
        });
    }
}

fn status_style(status: &str, ui: &Ui) -> ratatui::style::Style {
    if status == "succeeded" {
        ui.theme.ok()
    } else if status.starts_with("failed") {
        ui.theme.error()
    } else {
        ui.theme.warn()
    }
}
