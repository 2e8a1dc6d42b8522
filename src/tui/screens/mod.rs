//! The console's screens: each one a component that changes on events and draws from `&self`.

pub mod accounts;
pub mod forwards;
pub mod htlcs;
pub mod log;
pub mod netting;
pub mod network;
pub mod orders;
pub mod overview;
pub mod pay;
pub mod reserves;

use super::context::{Context, RequestId, Ui};
use super::keys::{Action, Section};
use crate::api::{NodeView, Response};
use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::{Position, Rect};

/// One screen of the console.
pub trait Screen {
    /// The view changed: rebuild what is derived from it.
    fn on_view(&mut self, _view: &NodeView) {}

    /// The screen was switched to.
    fn on_show(&mut self, _cx: &mut Context) {}

    /// Whether the screen is taking typed text: then it gets every key first.
    fn editing(&self) -> bool {
        false
    }

    /// A key while [`Screen::editing`]; `false` leaves it to the keymap.
    fn handle_key(&mut self, _key: &KeyEvent, _cx: &mut Context) -> bool {
        false
    }

    /// An action from the keymap; `false` if the screen has no use for it.
    fn handle_action(&mut self, action: Action, cx: &mut Context) -> bool;

    fn handle_click(&mut self, _position: Position, _cx: &mut Context) {}

    /// Mouse wheel: `lines` down (negative: up).
    fn scroll(&mut self, _lines: isize, _cx: &mut Context) {}

    /// The answer to a request this screen sent; `false` leaves it to the console, which
    /// shows it as a notice.
    fn on_response(&mut self, _id: RequestId, _response: &Response, _cx: &mut Context) -> bool {
        false
    }

    /// What the screen says about its keys in the footer, beyond its keymap section
    /// (e.g. how to stop typing).
    fn hint(&self) -> Option<&'static str> {
        None
    }

    fn draw(&self, frame: &mut Frame, area: Rect, ui: &Ui);
}

/// The screens, in the order of the tab bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScreenId {
    Overview,
    Accounts,
    Pay,
    Htlcs,
    Netting,
    Reserves,
    Network,
    Forwards,
    Log,
    Orders,
}

impl ScreenId {
    pub const ALL: [ScreenId; 10] = [
        ScreenId::Overview,
        ScreenId::Accounts,
        ScreenId::Pay,
        ScreenId::Htlcs,
        ScreenId::Netting,
        ScreenId::Reserves,
        ScreenId::Network,
        ScreenId::Forwards,
        ScreenId::Log,
        ScreenId::Orders,
    ];

    pub fn title(self) -> &'static str {
        match self {
            ScreenId::Overview => "Overview",
            ScreenId::Accounts => "Accounts",
            ScreenId::Pay => "Pay",
            ScreenId::Htlcs => "HTLCs",
            ScreenId::Netting => "Netting",
            ScreenId::Reserves => "Reserves",
            ScreenId::Network => "Network",
            ScreenId::Forwards => "Forwards",
            ScreenId::Log => "Log",
            ScreenId::Orders => "Orders",
        }
    }

    /// The title in the narrow tab bar, where all ten tabs must fit 80 columns.
    pub fn narrow_title(self) -> &'static str {
        match self {
            ScreenId::Forwards => "Fwds",
            other => other.title(),
        }
    }

    /// Its keys in the keymap.
    pub fn section(self) -> Section {
        match self {
            ScreenId::Overview => Section::Overview,
            ScreenId::Accounts => Section::Accounts,
            ScreenId::Pay => Section::Pay,
            ScreenId::Htlcs => Section::Htlcs,
            ScreenId::Netting => Section::Netting,
            ScreenId::Reserves => Section::Reserves,
            ScreenId::Network => Section::Network,
            ScreenId::Forwards => Section::Forwards,
            ScreenId::Log => Section::Log,
            ScreenId::Orders => Section::Orders,
        }
    }

    /// The global action that shows it.
    pub fn show_action(self) -> Action {
        match self {
            ScreenId::Overview => Action::ShowOverview,
            ScreenId::Accounts => Action::ShowAccounts,
            ScreenId::Pay => Action::ShowPay,
            ScreenId::Htlcs => Action::ShowHtlcs,
            ScreenId::Netting => Action::ShowNetting,
            ScreenId::Reserves => Action::ShowReserves,
            ScreenId::Network => Action::ShowNetwork,
            ScreenId::Forwards => Action::ShowForwards,
            ScreenId::Log => Action::ShowLog,
            ScreenId::Orders => Action::ShowOrders,
        }
    }

    /// The screen `steps` to the right (negative: left), wrapping around.
    pub fn cycle(self, steps: isize) -> ScreenId {
        let count = ScreenId::ALL.len() as isize;
        let index = ScreenId::ALL.iter().position(|s| *s == self).unwrap_or(0) as isize;
        ScreenId::ALL[(index + steps).rem_euclid(count) as usize]
    }
}

/// All screens' states.
#[derive(Default)]
pub struct Screens {
    pub overview: overview::OverviewScreen,
    pub accounts: accounts::AccountsScreen,
    pub pay: pay::PayScreen,
    pub htlcs: htlcs::HtlcsScreen,
    pub netting: netting::NettingScreen,
    pub reserves: reserves::ReservesScreen,
    pub network: network::NetworkScreen,
    pub forwards: forwards::ForwardsScreen,
    pub log: log::LogScreen,
    pub orders: orders::OrdersScreen,
}

impl Screens {
    pub fn get(&self, id: ScreenId) -> &dyn Screen {
        match id {
            ScreenId::Overview => &self.overview,
            ScreenId::Accounts => &self.accounts,
            ScreenId::Pay => &self.pay,
            ScreenId::Htlcs => &self.htlcs,
            ScreenId::Netting => &self.netting,
            ScreenId::Reserves => &self.reserves,
            ScreenId::Network => &self.network,
            ScreenId::Forwards => &self.forwards,
            ScreenId::Log => &self.log,
            ScreenId::Orders => &self.orders,
        }
    }

    pub fn get_mut(&mut self, id: ScreenId) -> &mut dyn Screen {
        match id {
            ScreenId::Overview => &mut self.overview,
            ScreenId::Accounts => &mut self.accounts,
            ScreenId::Pay => &mut self.pay,
            ScreenId::Htlcs => &mut self.htlcs,
            ScreenId::Netting => &mut self.netting,
            ScreenId::Reserves => &mut self.reserves,
            ScreenId::Network => &mut self.network,
            ScreenId::Forwards => &mut self.forwards,
            ScreenId::Log => &mut self.log,
            ScreenId::Orders => &mut self.orders,
        }
    }

    pub fn on_view(&mut self, view: &NodeView) {
        for id in ScreenId::ALL {
            self.get_mut(id).on_view(view);
        }
    }
}
