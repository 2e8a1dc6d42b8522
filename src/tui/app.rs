//! The console: which screen is shown, the popups over it, the requests waiting for the
//! node, and the one place where requests are sent and answers routed back.

use super::ConsoleOptions;
use super::context::{Confirm, Context, Effect, Notice, RequestId, Ui};
use super::form::{Form, FormEvent, hints, popup_area};
use super::format::{Names, cells};
use super::keys::{Action, Key, Keymap, Section};
use super::screens::{Screen, ScreenId, Screens};
use super::theme::Theme;
use crate::api::{NodeView, Request, Response};
use anyhow::Context as _;
use crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// Rows the mouse wheel moves.
const WHEEL_LINES: isize = 3;

/// From this width on, tabs get spaces around them and a separator.
const WIDE_TABS: u16 = 100;

/// A request sent and not yet answered.
#[derive(Debug)]
struct Pending {
    request: Request,
    summary: String,
    /// The screen that sent it: its answer is shown there.
    screen: ScreenId,
}

/// The whole console state. Events change it ([`Console::handle_event`],
/// [`Console::set_view`], [`Console::on_response`]); [`Console::draw`] only reads it.
pub struct Console {
    view: Arc<NodeView>,
    names: Names,
    theme: Theme,
    keymap: Keymap,
    screen: ScreenId,
    screens: Screens,
    form: Option<Form>,
    confirm: Option<Confirm>,
    help: bool,
    pending: BTreeMap<RequestId, Pending>,
    outbox: Vec<(RequestId, Request)>,
    notices: HashMap<ScreenId, Notice>,
    next_id: u64,
    spinner_frame: usize,
    node_stopped: bool,
    quit: bool,
    /// The width the tab bar was drawn at, for mouse clicks on it.
    drawn_width: Cell<u16>,
}

impl Console {
    /// A console over `view`, with the theme and keys the options name. Fails on a bad theme
    /// or keys file, naming what is wrong.
    pub fn new(options: &ConsoleOptions, view: Arc<NodeView>) -> anyhow::Result<Console> {
        let config_dir = options.config_dir.as_deref();
        let theme = Theme::load(&options.theme, config_dir)?;
        let keymap = match config_dir.map(|dir| dir.join("keys.toml")) {
            Some(path) if path.is_file() => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Keymap::with_user_file(&path.display().to_string(), &text)?
            }
            _ => Keymap::defaults(),
        };
        let mut screens = Screens::default();
        screens.overview.first_run_hint = options.first_run_hint.clone();
        let mut console = Console {
            view: Arc::new(NodeView::default()),
            names: Names::default(),
            theme,
            keymap,
            screen: ScreenId::Overview,
            screens,
            form: None,
            confirm: None,
            help: false,
            pending: BTreeMap::new(),
            outbox: Vec::new(),
            notices: HashMap::new(),
            next_id: 0,
            spinner_frame: 0,
            node_stopped: false,
            quit: false,
            drawn_width: Cell::new(0),
        };
        console.set_view(view);
        Ok(console)
    }

    /// The node has a new view.
    pub fn set_view(&mut self, view: Arc<NodeView>) {
        self.names = Names::of(&view);
        self.screens.on_view(&view);
        self.view = view;
    }

    /// The node stopped sending views: say so, keep drawing the last one.
    pub fn node_stopped(&mut self) {
        self.node_stopped = true;
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    pub fn screen(&self) -> ScreenId {
        self.screen
    }

    /// The requests to send now, each with the id its answer must come back with.
    pub fn take_requests(&mut self) -> Vec<(RequestId, Request)> {
        std::mem::take(&mut self.outbox)
    }

    /// Advances the spinner; `true` if something on screen shows it.
    pub fn tick(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        self.spinner_frame = (self.spinner_frame + 1) % SPINNER.len();
        true
    }

    pub fn show(&mut self, screen: ScreenId) {
        if self.screen != screen {
            self.screen = screen;
            self.with_screen(screen, |screen, cx| screen.on_show(cx));
        }
    }

    pub fn handle_event(&mut self, event: &Event) {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.handle_key(key),
            Event::Mouse(mouse) => self.handle_mouse(mouse),
            // Pasted text goes into a text field only: outside one each character would be a
            // key (pasting "sy" on the accounts screen would settle and confirm).
            Event::Paste(text) if self.takes_text() => {
                for c in text.chars().filter(|c| !c.is_control()) {
                    self.handle_key(&KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
                }
            }
            _ => {}
        }
    }

    /// Is a text field focused (a form, or a screen's own field such as the log filter)?
    fn takes_text(&self) -> bool {
        self.confirm.is_none()
            && !self.help
            && (self.form.is_some() || self.screens.get(self.screen).editing())
    }

    /// The node's answer to request `id`.
    pub fn on_response(&mut self, id: RequestId, response: Response) {
        if let Some(pending) = self.pending.remove(&id) {
            self.deliver(id, pending.screen, &pending.summary, response);
        }
    }

    #[cfg(test)]
    pub(crate) fn form(&self) -> Option<&Form> {
        self.form.as_ref()
    }

    #[cfg(test)]
    pub(crate) fn confirming(&self) -> Option<&Confirm> {
        self.confirm.as_ref()
    }

    #[cfg(test)]
    pub(crate) fn notice(&self) -> Option<&Notice> {
        self.notices.get(&self.screen)
    }

    fn handle_key(&mut self, event: &KeyEvent) {
        if event.code == KeyCode::Char('c') && event.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return;
        }
        if self.confirm.is_some() {
            match event.code {
                KeyCode::Char('y') | KeyCode::Enter => self.confirmed(),
                KeyCode::Char('n') | KeyCode::Esc => self.confirm = None,
                _ => {}
            }
            return;
        }
        if let Some(form) = &mut self.form {
            match form.handle_key(event, &self.view) {
                FormEvent::Submit => self.submit_form(),
                FormEvent::Cancel => self.form = None,
                FormEvent::Edited | FormEvent::Ignored => {}
            }
            return;
        }
        let key = Key::from_event(event);
        let action = key.and_then(|key| self.keymap.action(self.screen.section(), key));
        if self.help {
            if event.code == KeyCode::Esc || matches!(action, Some(Action::Help | Action::Quit)) {
                self.help = false;
            }
            return;
        }
        if self.screens.get(self.screen).editing()
            && self.with_screen(self.screen, |screen, cx| screen.handle_key(event, cx))
        {
            return;
        }
        if event.code == KeyCode::Esc {
            self.notices.remove(&self.screen);
            return;
        }
        let Some(action) = action else {
            return;
        };
        match action {
            Action::Quit => self.quit = true,
            Action::Help => self.help = true,
            Action::NextScreen => self.show(self.screen.cycle(1)),
            Action::PreviousScreen => self.show(self.screen.cycle(-1)),
            _ => {
                let shown = ScreenId::ALL
                    .into_iter()
                    .find(|s| s.show_action() == action);
                match shown {
                    Some(screen) => self.show(screen),
                    None => {
                        self.with_screen(self.screen, |screen, cx| {
                            screen.handle_action(action, cx)
                        });
                    }
                }
            }
        }
    }

    fn handle_mouse(&mut self, mouse: &MouseEvent) {
        if self.confirm.is_some() || self.form.is_some() {
            return;
        }
        if self.help {
            if matches!(mouse.kind, MouseEventKind::Down(_)) {
                self.help = false;
            }
            return;
        }
        let screen = self.screen;
        match mouse.kind {
            MouseEventKind::ScrollDown => {
                self.with_screen(screen, |s, cx| s.scroll(WHEEL_LINES, cx));
            }
            MouseEventKind::ScrollUp => {
                self.with_screen(screen, |s, cx| s.scroll(-WHEEL_LINES, cx));
            }
            MouseEventKind::Down(MouseButton::Left) if mouse.row == 0 => {
                let clicked = self
                    .tabs(self.drawn_width.get())
                    .into_iter()
                    .find(|tab| (tab.x..tab.x + tab.width).contains(&mouse.column));
                if let Some(tab) = clicked {
                    self.show(tab.screen);
                }
            }
            MouseEventKind::Down(MouseButton::Left) => {
                let position = Position::new(mouse.column, mouse.row);
                self.with_screen(screen, |s, cx| s.handle_click(position, cx));
            }
            _ => {}
        }
    }

    /// Runs `f` on a screen with a context, then carries out what it asked for.
    fn with_screen<R>(
        &mut self,
        id: ScreenId,
        f: impl FnOnce(&mut dyn Screen, &mut Context) -> R,
    ) -> R {
        let mut cx = Context::new(&self.view, &mut self.next_id);
        let result = f(self.screens.get_mut(id), &mut cx);
        let effects = cx.into_effects();
        for effect in effects {
            match effect {
                Effect::Send {
                    id: request_id,
                    request,
                    summary,
                } => self.send(id, request_id, request, summary),
                Effect::OpenForm(form) => self.form = Some(form),
                Effect::Confirm(confirm) => self.confirm = Some(confirm),
                Effect::Notice(notice) => {
                    self.notices.insert(id, notice);
                }
            }
        }
        result
    }

    fn new_request_id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId(self.next_id)
    }

    /// The one place a request leaves: never twice while the same one waits for an answer.
    fn send(&mut self, screen: ScreenId, id: RequestId, request: Request, summary: String) {
        if self.pending.values().any(|p| p.request == request) {
            let refused = Response::Error {
                message: "the same request is already waiting for the node's answer".into(),
            };
            self.deliver(id, screen, &summary, refused);
            return;
        }
        self.outbox.push((id, request.clone()));
        self.pending.insert(
            id,
            Pending {
                request,
                summary,
                screen,
            },
        );
    }

    /// Enter on the open form: send it, or ask first if it moves money on chain.
    fn submit_form(&mut self) {
        let Some(form) = &mut self.form else {
            return;
        };
        if form.pending.is_some() {
            form.node_error = Some("already sent: waiting for the node's answer".into());
            return;
        }
        // Problems are already on the form, next to their fields.
        let Some(submission) = form.check(&self.view).1 else {
            return;
        };
        if submission.on_chain {
            self.confirm = Some(Confirm {
                summary: submission.summary,
                request: submission.request,
                from_form: true,
            });
        } else {
            self.next_id += 1;
            let id = RequestId(self.next_id);
            form.pending = Some(id);
            self.send(self.screen, id, submission.request, submission.summary);
        }
    }

    fn confirmed(&mut self) {
        let Some(confirm) = self.confirm.take() else {
            return;
        };
        let id = self.new_request_id();
        if confirm.from_form
            && let Some(form) = &mut self.form
        {
            form.pending = Some(id);
        }
        self.send(self.screen, id, confirm.request, confirm.summary);
    }

    /// Routes an answer: to the open form that sent it, else to the screen that sent it, else
    /// as a notice on that screen.
    fn deliver(&mut self, id: RequestId, screen: ScreenId, summary: &str, response: Response) {
        if let Some(form) = &mut self.form
            && form.pending == Some(id)
        {
            form.pending = None;
            if let Response::Error { message } = &response {
                form.node_error = Some(message.clone());
                return;
            }
            self.form = None;
            self.notices.insert(screen, outcome(summary, &response));
            return;
        }
        if self.with_screen(screen, |s, cx| s.on_response(id, &response, cx)) {
            return;
        }
        self.notices.insert(screen, outcome(summary, &response));
    }
}

/// What an answer says, as a notice: the node's words first (the line may be cut).
fn outcome(summary: &str, response: &Response) -> Notice {
    match response {
        Response::Error { message } => Notice::error(format!("refused: {message} ({summary})")),
        Response::Done { what } => Notice::ok(format!("done: {what}")),
        Response::ChainTx { tx, block, .. } => Notice::ok(format!(
            "mined in block {block} ({}): {summary}",
            tx.short()
        )),
        _ => Notice::ok(format!("{summary}: done")),
    }
}

/// One tab of the tab bar and where it is drawn.
struct Tab {
    screen: ScreenId,
    x: u16,
    width: u16,
    key: String,
    title: &'static str,
}

impl Console {
    /// The tabs as drawn at `width` (the same for drawing and for mouse clicks).
    fn tabs(&self, width: u16) -> Vec<Tab> {
        let wide = width >= WIDE_TABS;
        let mut x = 1;
        let mut tabs = Vec::new();
        for screen in ScreenId::ALL {
            let key = self.keymap.label(Section::Global, screen.show_action());
            let title = if wide {
                screen.title()
            } else {
                screen.narrow_title()
            };
            let label_width =
                cells(key.chars().count() + title.len()).saturating_add(if wide { 3 } else { 0 });
            tabs.push(Tab {
                screen,
                x,
                width: label_width,
                key,
                title,
            });
            x = x.saturating_add(label_width).saturating_add(1);
        }
        tabs
    }

    pub fn draw(&self, frame: &mut Frame) {
        let area = frame.area();
        self.drawn_width.set(area.width);
        frame.render_widget(Block::new().style(self.theme.base()), area);
        let [tabs_area, body, status_area, keys_area] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let ui = Ui {
            view: &self.view,
            names: &self.names,
            theme: &self.theme,
            keymap: &self.keymap,
            spinner: SPINNER[self.spinner_frame % SPINNER.len()],
        };
        self.draw_tabs(frame, tabs_area, &ui);
        self.screens.get(self.screen).draw(frame, body, &ui);
        self.draw_status(frame, status_area, &ui);
        self.draw_keys(frame, keys_area, &ui);
        if self.help {
            self.draw_help(frame, &ui);
        }
        if let Some(form) = &self.form {
            form.draw_popup(frame, &ui);
        }
        if let Some(confirm) = &self.confirm {
            draw_confirm(frame, confirm, &ui);
        }
    }

    fn draw_tabs(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let wide = area.width >= WIDE_TABS;
        let mut spans = vec![Span::raw(" ")];
        for (index, tab) in self.tabs(area.width).into_iter().enumerate() {
            if index > 0 {
                spans.push(Span::styled(if wide { "│" } else { " " }, ui.theme.dim()));
            }
            let active = tab.screen == self.screen;
            let title_style = if active {
                ui.theme.selected()
            } else {
                ui.theme.text()
            };
            let key_style = if active {
                ui.theme.selected()
            } else {
                ui.theme.key()
            };
            let pad = if wide { " " } else { "" };
            spans.push(Span::styled(format!("{pad}{}", tab.key), key_style));
            spans.push(Span::styled(
                format!("{pad}{}{pad}", tab.title),
                title_style,
            ));
        }
        frame.render_widget(Line::from(spans), area);
        let status = &ui.view.status;
        let who = format!("{} · block {} ", status.name, status.chain.head);
        let used: u16 = self
            .tabs(area.width)
            .last()
            .map_or(0, |tab| tab.x.saturating_add(tab.width));
        let who_width = cells(who.chars().count());
        if used.saturating_add(who_width).saturating_add(2) <= area.width {
            let right = Rect {
                x: area.right() - who_width,
                width: who_width,
                ..area
            };
            frame.render_widget(Line::styled(who, ui.theme.dim()), right);
        }
    }

    fn draw_status(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let waiting = match self.pending.values().next() {
            Some(first) if self.pending.len() > 1 => format!(
                "{} {} (+{} more) ",
                ui.spinner,
                first.summary,
                self.pending.len() - 1
            ),
            Some(first) => format!("{} {} ", ui.spinner, first.summary),
            None => String::new(),
        };
        let waiting_width = cells(waiting.chars().count()).min(area.width / 2);
        let [notice_area, waiting_area] =
            Layout::horizontal([Constraint::Min(0), Constraint::Length(waiting_width)]).areas(area);
        frame.render_widget(Line::styled(waiting, ui.theme.warn()), waiting_area);
        let notice = if self.node_stopped {
            Line::styled(" the node stopped: nothing will change", ui.theme.error())
        } else if let Some(notice) = self.notices.get(&self.screen) {
            let style = if notice.is_error {
                ui.theme.error()
            } else {
                ui.theme.ok()
            };
            Line::styled(format!(" {}", notice.text), style)
        } else {
            Line::default()
        };
        frame.render_widget(notice, notice_area);
    }

    /// The footer: help, the current screen's keys, quit.
    fn draw_keys(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let screen = self.screens.get(self.screen);
        if let Some(hint) = screen.hint() {
            frame.render_widget(Line::styled(format!(" {hint}"), ui.theme.accent()), area);
            return;
        }
        let global = |action| (action, ui.keymap.label(Section::Global, action));
        let mut spans = vec![Span::raw(" ")];
        // Help first: on a narrow terminal the end of the line is cut.
        let entries = std::iter::once(global(Action::Help))
            .chain(ui.keymap.section(self.screen.section()))
            .chain(std::iter::once(global(Action::Quit)));
        for (index, (action, keys)) in entries.enumerate() {
            if index > 0 {
                spans.push(Span::styled(" · ", ui.theme.dim()));
            }
            spans.push(Span::styled(keys, ui.theme.key()));
            spans.push(Span::styled(
                format!(" {}", action.name().replace('_', " ")),
                ui.theme.text(),
            ));
        }
        frame.render_widget(Line::from(spans), area);
    }

    fn draw_help(&self, frame: &mut Frame, ui: &Ui) {
        let area = popup_area(frame.area(), 100, 24);
        frame.render_widget(Clear, area);
        let block = Block::new()
            .borders(Borders::ALL)
            .border_style(ui.theme.accent())
            .title(Line::styled(
                format!(" Keys: {} ", self.screen.title()),
                ui.theme.title(),
            ))
            .title_bottom(hints(ui, &[("?/esc", "close")]))
            .style(ui.theme.base());
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(inner);
        let heading = |text: String| Line::styled(text, ui.theme.title());
        let entry = |keys: String, what: String| {
            Line::from(vec![
                Span::styled(format!("{keys:>9} "), ui.theme.key()),
                Span::styled(what, ui.theme.text()),
            ])
        };
        let section_lines = |section: Section| {
            ui.keymap
                .section(section)
                .into_iter()
                .map(|(action, keys)| entry(keys, action.description().to_string()))
                .collect::<Vec<_>>()
        };
        let mut left_lines = vec![heading(format!("{} screen", self.screen.title()))];
        let screen_lines = section_lines(self.screen.section());
        if screen_lines.is_empty() {
            left_lines.push(entry(String::new(), "(no keys of its own)".into()));
        }
        left_lines.extend(screen_lines);
        left_lines.push(heading("Lists".into()));
        left_lines.extend(section_lines(Section::List));
        left_lines.push(heading("Forms and dialogs".into()));
        for (keys, what) in [
            ("enter", "submit / yes"),
            ("esc", "cancel / no / stop typing"),
            ("tab", "next field, or complete"),
            ("←→", "choose token or in force"),
            ("ctrl-u", "clear the field"),
        ] {
            left_lines.push(entry(keys.into(), what.into()));
        }
        let mut right_lines = vec![heading("Everywhere".into())];
        right_lines.extend(section_lines(Section::Global));
        right_lines.push(entry("ctrl-c".into(), "quit, always".into()));
        right_lines.push(entry("esc".into(), "clear the message".into()));
        right_lines.push(entry(
            "mouse".into(),
            "click selects · wheel scrolls".into(),
        ));
        frame.render_widget(Paragraph::new(left_lines), left);
        frame.render_widget(Paragraph::new(right_lines), right);
    }
}

fn draw_confirm(frame: &mut Frame, confirm: &Confirm, ui: &Ui) {
    let area = popup_area(frame.area(), 64, 9);
    frame.render_widget(Clear, area);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(ui.theme.warn())
        .title(Line::styled(" Confirm ", ui.theme.warn()))
        .title_bottom(hints(ui, &[("y/enter", "yes, send it"), ("n/esc", "no")]))
        .style(ui.theme.base());
    let consequence = match confirm.request {
        Request::CancelOrder { .. } => "What is filled stays filled; the rest is given up.",
        _ => "This moves money and cannot be taken back.",
    };
    let text = vec![
        Line::styled(capitalized(&confirm.summary), ui.theme.text()),
        Line::default(),
        Line::styled(consequence, ui.theme.warn()),
    ];
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: true }).block(block),
        area,
    );
}

/// `Settle …` from `settle …`.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
