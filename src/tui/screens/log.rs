//! Log: the node's events, filtered by lowest level and by text; follows the newest line
//! while the newest line is selected.

use super::Screen;
use crate::api::{LogLevel, NodeView};
use crate::tui::context::{Context, Ui};
use crate::tui::format::clock;
use crate::tui::keys::Action;
use crate::tui::list::{ScrollList, TableSpec, draw_table};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row};

#[derive(Debug)]
pub struct LogScreen {
    min_level: LogLevel,
    filter: String,
    editing_filter: bool,
    /// Indexes into `view.log` of the lines that pass the filters.
    shown: Vec<usize>,
    list: ScrollList,
    /// Keep the newest line selected as lines arrive.
    follow: bool,
}

impl Default for LogScreen {
    fn default() -> LogScreen {
        LogScreen {
            min_level: LogLevel::Debug,
            filter: String::new(),
            editing_filter: false,
            shown: Vec::new(),
            list: ScrollList::default(),
            follow: true,
        }
    }
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

impl LogScreen {
    fn apply_filters(&mut self, view: &NodeView) {
        let wanted = self.filter.to_lowercase();
        self.shown = view
            .log
            .iter()
            .enumerate()
            .filter(|(_, line)| line.level >= self.min_level)
            .filter(|(_, line)| wanted.is_empty() || line.text.to_lowercase().contains(&wanted))
            .map(|(index, _)| index)
            .collect();
        if self.follow {
            self.list.select(self.shown.len().saturating_sub(1));
        }
    }

    /// After a move: follow again if the newest line is selected.
    fn update_follow(&mut self) {
        self.follow = self
            .list
            .selected(self.shown.len())
            .is_none_or(|selected| selected + 1 == self.shown.len());
    }
}

impl Screen for LogScreen {
    fn on_view(&mut self, view: &NodeView) {
        self.apply_filters(view);
    }

    fn editing(&self) -> bool {
        self.editing_filter
    }

    fn handle_key(&mut self, key: &KeyEvent, cx: &mut Context) -> bool {
        match key.code {
            KeyCode::Enter | KeyCode::Esc => self.editing_filter = false,
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.filter.clear()
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.filter.push(c)
            }
            _ => return true,
        }
        self.apply_filters(cx.view);
        true
    }

    fn handle_action(&mut self, action: Action, cx: &mut Context) -> bool {
        match action {
            Action::FilterText => self.editing_filter = true,
            Action::CycleLevel => {
                self.min_level = match self.min_level {
                    LogLevel::Debug => LogLevel::Info,
                    LogLevel::Info => LogLevel::Warn,
                    LogLevel::Warn => LogLevel::Error,
                    LogLevel::Error => LogLevel::Debug,
                };
                self.apply_filters(cx.view);
            }
            Action::ClearFilter => {
                self.min_level = LogLevel::Debug;
                self.filter.clear();
                self.apply_filters(cx.view);
            }
            _ => {
                let moved = self.list.apply(action, self.shown.len());
                self.update_follow();
                return moved;
            }
        }
        true
    }

    fn handle_click(&mut self, position: Position, _cx: &mut Context) {
        self.list.click(position, self.shown.len());
        self.update_follow();
    }

    fn scroll(&mut self, lines: isize, _cx: &mut Context) {
        self.list.scroll(lines, self.shown.len());
        self.update_follow();
    }

    fn hint(&self) -> Option<&'static str> {
        if self.editing_filter {
            Some("typing the filter: enter/esc done · ctrl-u clear")
        } else {
            None
        }
    }

    fn draw(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let [filter_area, list_area] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(3)]).areas(area);
        let mut filter = vec![
            Span::styled(" level ≥ ", ui.theme.dim()),
            Span::styled(level_name(self.min_level), ui.theme.accent()),
            Span::styled(" · text ", ui.theme.dim()),
            Span::styled(self.filter.clone(), ui.theme.text()),
        ];
        if self.editing_filter {
            filter.push(Span::styled("█", ui.theme.accent()));
        } else if self.filter.is_empty() {
            filter.push(Span::styled("(any)", ui.theme.dim()));
        }
        if !self.follow {
            filter.push(Span::styled(
                "  (paused: newest line not selected)",
                ui.theme.warn(),
            ));
        }
        frame.render_widget(Line::from(filter), filter_area);
        let log = &ui.view.log;
        let spec = TableSpec {
            title: Line::styled(
                format!(" Log ({} of {} lines) ", self.shown.len(), log.len()),
                ui.theme.title(),
            ),
            header: vec!["time", "level", "event"],
            widths: vec![
                Constraint::Length(8),
                Constraint::Length(5),
                Constraint::Fill(1),
            ],
            len: self.shown.len(),
            focused: true,
        };
        draw_table(frame, list_area, ui.theme, &self.list, spec, |index| {
            let Some(line) = self.shown.get(index).and_then(|i| log.get(*i)) else {
                return Row::new(Vec::<Cell>::new());
            };
            let style = match line.level {
                LogLevel::Debug => ui.theme.dim(),
                LogLevel::Info => ui.theme.text(),
                LogLevel::Warn => ui.theme.warn(),
                LogLevel::Error => ui.theme.error(),
            };
            Row::new(vec![
                Cell::from(Span::styled(clock(line.timestamp), ui.theme.dim())),
                Cell::from(Span::styled(level_name(line.level), style)),
                Cell::from(Span::styled(line.text.clone(), style)),
            ])
        });
    }
}
