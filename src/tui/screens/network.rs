//! Network: the profiles we know (hubs first if asked), and the peers we hold sessions with.

use super::Screen;
use crate::api::{NodeView, Request};
use crate::tui::context::{Context, Notice, Ui};
use crate::tui::form::{Form, FormKind};
use crate::tui::keys::Action;
use crate::tui::list::{ScrollList, TableSpec, draw_table};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row};
use std::collections::HashSet;
use xln_core::board::EntityId;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Pane {
    #[default]
    Profiles,
    Peers,
}

#[derive(Debug, Default)]
pub struct NetworkScreen {
    pane: Pane,
    hubs_only: bool,
    /// Indexes into `view.profiles` of the profiles shown.
    shown: Vec<usize>,
    /// Peers we have an account with.
    with_account: HashSet<EntityId>,
    profiles: ScrollList,
    peers: ScrollList,
}

impl NetworkScreen {
    fn select_profiles(&mut self, view: &NodeView) {
        self.shown = view
            .profiles
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_hub || !self.hubs_only)
            .map(|(index, _)| index)
            .collect();
    }

    fn open_account(&self, cx: &mut Context) {
        let profile = self
            .profiles
            .selected(self.shown.len())
            .and_then(|index| self.shown.get(index))
            .and_then(|index| cx.view.profiles.get(*index));
        match profile {
            Some(profile) => {
                cx.open_form(Form::new(FormKind::OpenAccount).with_peer(&profile.name))
            }
            None => cx.open_form(Form::new(FormKind::OpenAccount)),
        }
    }

    fn toggle_block(&self, cx: &mut Context) {
        let peer = self
            .peers
            .selected(cx.view.peers.len())
            .and_then(|index| cx.view.peers.get(index));
        let Some(peer) = peer else {
            cx.notice(Notice::error("no peer selected"));
            return;
        };
        let (blocked, verb) = if peer.blocked {
            (false, "unblock")
        } else {
            (true, "block")
        };
        cx.send(
            Request::BlockPeer {
                signer: peer.signer,
                blocked,
            },
            format!("{verb} {}", peer.signer.short()),
        );
    }
}

impl Screen for NetworkScreen {
    fn on_view(&mut self, view: &NodeView) {
        self.select_profiles(view);
        self.with_account = view.accounts.iter().map(|a| a.peer).collect();
    }

    fn handle_action(&mut self, action: Action, cx: &mut Context) -> bool {
        match action {
            Action::SwitchPane => {
                self.pane = match self.pane {
                    Pane::Profiles => Pane::Peers,
                    Pane::Peers => Pane::Profiles,
                }
            }
            Action::ToggleHubsOnly => {
                self.hubs_only = !self.hubs_only;
                self.select_profiles(cx.view);
            }
            Action::OpenAccount => self.open_account(cx),
            Action::BlockPeer => self.toggle_block(cx),
            _ => {
                return match self.pane {
                    Pane::Profiles => self.profiles.apply(action, self.shown.len()),
                    Pane::Peers => self.peers.apply(action, cx.view.peers.len()),
                };
            }
        }
        true
    }

    fn handle_click(&mut self, position: Position, cx: &mut Context) {
        if self.profiles.click(position, self.shown.len()) {
            self.pane = Pane::Profiles;
        } else if self.peers.click(position, cx.view.peers.len()) {
            self.pane = Pane::Peers;
        }
    }

    fn scroll(&mut self, lines: isize, cx: &mut Context) {
        match self.pane {
            Pane::Profiles => self.profiles.scroll(lines, self.shown.len()),
            Pane::Peers => self.peers.scroll(lines, cx.view.peers.len()),
        }
    }

    fn draw(&self, frame: &mut Frame, area: Rect, ui: &Ui) {
        let view = ui.view;
        let [profiles_area, peers_area] =
            Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
        let which = if self.hubs_only { "Hubs" } else { "Profiles" };
        let spec = TableSpec {
            title: Line::styled(
                format!(
                    " {which} ({} of {}) ",
                    self.shown.len(),
                    view.profiles.len()
                ),
                ui.theme.title(),
            ),
            header: vec![
                "name", "entity", "hub", "accounts", "fee", "ours", "endpoint",
            ],
            widths: vec![
                Constraint::Length(14),
                Constraint::Length(13),
                Constraint::Length(3),
                Constraint::Length(8),
                Constraint::Length(14),
                Constraint::Length(4),
                Constraint::Fill(1),
            ],
            len: self.shown.len(),
            focused: self.pane == Pane::Profiles,
        };
        draw_table(
            frame,
            profiles_area,
            ui.theme,
            &self.profiles,
            spec,
            |index| {
                let Some(profile) = self.shown.get(index).and_then(|i| view.profiles.get(*i))
                else {
                    return Row::new(Vec::<Cell>::new());
                };
                let hub = if profile.is_hub {
                    Span::styled("hub", ui.theme.accent())
                } else {
                    Span::raw("")
                };
                let ours = if self.with_account.contains(&profile.entity) {
                    Span::styled("yes", ui.theme.ok())
                } else {
                    Span::raw("")
                };
                Row::new(vec![
                    Cell::from(profile.name.clone()),
                    Cell::from(Span::styled(profile.entity.short(), ui.theme.dim())),
                    Cell::from(hub),
                    Cell::from(Line::from(profile.accounts.to_string()).right_aligned()),
                    Cell::from(format!("{} + {}ppm", profile.fee_base, profile.fee_ppm)),
                    Cell::from(ours),
                    Cell::from(Span::styled(profile.endpoint.clone(), ui.theme.dim())),
                ])
            },
        );
        let connected = view.peers.iter().filter(|p| p.connected).count();
        let spec = TableSpec {
            title: Line::styled(
                format!(" Peers ({connected} of {} connected) ", view.peers.len()),
                ui.theme.title(),
            ),
            header: vec!["signer", "state", "url"],
            widths: vec![
                Constraint::Length(13),
                Constraint::Length(13),
                Constraint::Fill(1),
            ],
            len: view.peers.len(),
            focused: self.pane == Pane::Peers,
        };
        draw_table(frame, peers_area, ui.theme, &self.peers, spec, |index| {
            let Some(peer) = view.peers.get(index) else {
                return Row::new(Vec::<Cell>::new());
            };
            let state = match (peer.blocked, peer.connected) {
                (true, _) => Span::styled("blocked", ui.theme.error()),
                (false, true) => Span::styled("connected", ui.theme.ok()),
                (false, false) => Span::styled("disconnected", ui.theme.warn()),
            };
            let url = peer.url.clone().unwrap_or_else(|| "(dialled us)".into());
            Row::new(vec![
                Cell::from(peer.signer.short()),
                Cell::from(state),
                Cell::from(Span::styled(url, ui.theme.dim())),
            ])
        });
    }
}
