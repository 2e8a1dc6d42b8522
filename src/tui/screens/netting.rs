//! Netting: the proposals the node has (asked with `Request::Netting`), one inspected in full,
//! executed (after a confirmation) or dismissed.

use super::Screen;
use crate::api::{NettingView, Request, Response};
use crate::tui::context::{Context, Notice, RequestId, Ui};
use crate::tui::keys::Action;
use crate::tui::list::{ScrollList, TableSpec, draw_table};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Wrap};

#[derive(Debug, Default)]
pub struct NettingScreen {
    /// The node's last answer; `None` until it came.
    netting: Option<NettingView>,
    fetch_pending: Option<RequestId>,
    message: Option<Notice>,
    list: ScrollList,
}

impl NettingScreen {
    fn len(&self) -> usize {
        self.netting.as_ref().map_or(0, |n| n.proposals.len())
    }

    fn fetch(&mut self, cx: &mut Context) {
        if self.fetch_pending.is_none() {
            self.fetch_pending = Some(cx.send(Request::Netting, "netting proposals"));
        }
    }

    /// The selected proposal's id and text.
    fn selected(&self) -> Option<(Option<u64>, &str)> {
        let netting = self.netting.as_ref()?;
        let index = self.list.selected(netting.proposals.len())?;
        let text = netting.proposals.get(index)?;
        Some((netting.ids.get(index).copied(), text))
    }

    fn act_on_selected(&self, action: Action, cx: &mut Context) {
        let Some((id, text)) = self.selected() else {
            cx.notice(Notice::error("no proposal selected"));
            return;
        };
        let Some(id) = id else {
            cx.notice(Notice::error("the node gave this proposal no id"));
            return;
        };
        let first_line = text.lines().next().unwrap_or("");
        if action == Action::Execute {
            cx.confirm(
                format!("execute netting proposal {id}: {first_line}"),
                Request::NettingExecute { id },
            );
        } else {
            cx.send(
                Request::NettingDismiss { id },
                format!("dismiss netting proposal {id}"),
            );
        }
    }
}

impl Screen for NettingScreen {
    fn on_show(&mut self, cx: &mut Context) {
        self.fetch(cx);
    }

    fn handle_action(&mut self, action: Action, cx: &mut Context) -> bool {
        match action {
            Action::Refresh => self.fetch(cx),
            Action::Execute | Action::Dismiss => self.act_on_selected(action, cx),
            _ => return self.list.apply(action, self.len()),
        }
        true
    }

    fn handle_click(&mut self, position: Position, _cx: &mut Context) {
        self.list.click(position, self.len());
    }

    fn scroll(&mut self, lines: isize, _cx: &mut Context) {
        self.list.scroll(lines, self.len());
    }

    fn on_response(&mut self, id: RequestId, response: &Response, cx: &mut Context) -> bool {
        if self.fetch_pending == Some(id) {
            self.fetch_pending = None;
            match response {
                Response::Netting(netting) => {
                    self.netting = Some(netting.clone());
                    self.message = None;
                }
                Response::Error { message } => {
                    self.message = Some(Notice::error(format!("netting: {message}")));
                }
                other => {
                    self.message = Some(Notice::error(format!("unexpected answer: {other:?}")));
                }
            }
            return true;
        }
        // An execute or dismiss was answered: the console shows the outcome, we ask again.
        if !matches!(response, Response::Error { .. }) {
            self.fetch(cx);
        }
        false
    }

    fn draw(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let [list_area, detail_area] =
            Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
        let status = if self.fetch_pending.is_some() {
            format!(" {} asking", ui.spinner)
        } else {
            String::new()
        };
        let spec = TableSpec {
            title: Line::styled(
                format!(" Netting proposals ({}){status} ", self.len()),
                ui.theme.title(),
            ),
            header: vec!["id", "proposal"],
            widths: vec![Constraint::Length(8), Constraint::Fill(1)],
            len: self.len(),
            focused: true,
        };
        let netting = self.netting.as_ref();
        draw_table(frame, list_area, ui.theme, &self.list, spec, |index| {
            let id = netting
                .and_then(|n| n.ids.get(index))
                .map_or("?".to_string(), u64::to_string);
            let text = netting
                .and_then(|n| n.proposals.get(index))
                .and_then(|text| text.lines().next())
                .unwrap_or("")
                .to_string();
            Row::new(vec![Cell::from(id), Cell::from(text)])
        });
        let block = Block::new()
            .borders(Borders::ALL)
            .border_style(ui.theme.border())
            .title(Line::styled(" Proposal ", ui.theme.title()));
        let body = match (&self.message, self.selected()) {
            (Some(message), _) => Paragraph::new(Line::styled(
                message.text.clone(),
                if message.is_error {
                    ui.theme.error()
                } else {
                    ui.theme.ok()
                },
            )),
            (None, Some((_, text))) => Paragraph::new(text.to_string()).style(ui.theme.text()),
            (None, None) if self.fetch_pending.is_some() => {
                Paragraph::new(Line::styled("waiting for the node", ui.theme.dim()))
            }
            (None, None) if self.netting.is_none() => {
                Paragraph::new(Line::styled("not asked yet", ui.theme.dim()))
            }
            (None, None) => Paragraph::new(Line::styled("no proposals", ui.theme.dim())),
        };
        frame.render_widget(body.wrap(Wrap { trim: false }).block(block), detail_area);
    }
}
