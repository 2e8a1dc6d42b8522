//! Keybindings as data: the defaults embedded from `default_keys.toml`, a user `keys.toml`
//! layered over them (it replaces the keys of the actions it names, nothing else).
//!
//! Forms, the confirm dialog and the help overlay use fixed keys (enter, esc, tab, …) that
//! they show themselves; everything else goes through a [`Keymap`].

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::BTreeMap;
use std::fmt;

const DEFAULT_KEYS: &str = include_str!("default_keys.toml");

/// One key with its modifiers, as bound and as pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub code: KeyName,
    pub modifiers: u8,
}

/// The keys a binding can name (`KeyCode` has more, and is not `Ord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyName {
    Char(char),
    F(u8),
    Enter,
    Esc,
    Tab,
    BackTab,
    Backspace,
    Delete,
    Insert,
    Home,
    End,
    PageUp,
    PageDown,
    Up,
    Down,
    Left,
    Right,
}

const CTRL: u8 = 1;
const ALT: u8 = 2;
const SHIFT: u8 = 4;

const NAMED_KEYS: &[(&str, KeyName)] = &[
    ("enter", KeyName::Enter),
    ("esc", KeyName::Esc),
    ("tab", KeyName::Tab),
    ("backtab", KeyName::BackTab),
    ("backspace", KeyName::Backspace),
    ("delete", KeyName::Delete),
    ("insert", KeyName::Insert),
    ("home", KeyName::Home),
    ("end", KeyName::End),
    ("pageup", KeyName::PageUp),
    ("pagedown", KeyName::PageDown),
    ("up", KeyName::Up),
    ("down", KeyName::Down),
    ("left", KeyName::Left),
    ("right", KeyName::Right),
    ("space", KeyName::Char(' ')),
];

impl Key {
    /// The key as pressed, or `None` for keys no binding can name.
    /// Shift is part of the character (`S`, `?`), so it is dropped for characters.
    pub fn from_event(event: &KeyEvent) -> Option<Key> {
        let control = event.modifiers.contains(KeyModifiers::CONTROL);
        let code = match event.code {
            KeyCode::Char(c) if control => KeyName::Char(c.to_ascii_lowercase()),
            KeyCode::Char(c) => KeyName::Char(c),
            KeyCode::F(n) => KeyName::F(n),
            KeyCode::Enter => KeyName::Enter,
            KeyCode::Esc => KeyName::Esc,
            KeyCode::Tab => KeyName::Tab,
            KeyCode::BackTab => KeyName::BackTab,
            KeyCode::Backspace => KeyName::Backspace,
            KeyCode::Delete => KeyName::Delete,
            KeyCode::Insert => KeyName::Insert,
            KeyCode::Home => KeyName::Home,
            KeyCode::End => KeyName::End,
            KeyCode::PageUp => KeyName::PageUp,
            KeyCode::PageDown => KeyName::PageDown,
            KeyCode::Up => KeyName::Up,
            KeyCode::Down => KeyName::Down,
            KeyCode::Left => KeyName::Left,
            KeyCode::Right => KeyName::Right,
            _ => return None,
        };
        let mut modifiers = 0;
        if control {
            modifiers |= CTRL;
        }
        if event.modifiers.contains(KeyModifiers::ALT) {
            modifiers |= ALT;
        }
        let shift_in_code = matches!(code, KeyName::Char(_) | KeyName::BackTab);
        if event.modifiers.contains(KeyModifiers::SHIFT) && !shift_in_code {
            modifiers |= SHIFT;
        }
        Some(Key { code, modifiers })
    }

    /// Reads `q`, `?`, `S`, `enter`, `ctrl-c`, `shift-tab`, `f5`.
    pub fn parse(text: &str) -> Result<Key, String> {
        let mut rest = text;
        let mut modifiers = 0;
        loop {
            let lower = rest.to_ascii_lowercase();
            let (prefix, bit) = if lower.starts_with("ctrl-") {
                ("ctrl-", CTRL)
            } else if lower.starts_with("alt-") {
                ("alt-", ALT)
            } else if lower.starts_with("shift-") {
                ("shift-", SHIFT)
            } else {
                break;
            };
            if rest.len() == prefix.len() {
                return Err(format!("'{text}' has a modifier but no key"));
            }
            modifiers |= bit;
            rest = &rest[prefix.len()..];
        }
        let lower = rest.to_ascii_lowercase();
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyName::Char(c),
            _ => {
                if let Some((_, code)) = NAMED_KEYS.iter().find(|(name, _)| *name == lower) {
                    *code
                } else if let Some(n) = lower
                    .strip_prefix('f')
                    .and_then(|n| n.parse::<u8>().ok())
                    .filter(|n| (1..=12).contains(n))
                {
                    KeyName::F(n)
                } else {
                    return Err(format!("'{text}' is not a key"));
                }
            }
        };
        // `shift-tab` is how terminals send backtab; `shift-a` is `A`; terminals send
        // ctrl-C as ctrl-c.
        let code = match code {
            KeyName::Char(c) if modifiers & CTRL != 0 => {
                modifiers &= !SHIFT;
                KeyName::Char(c.to_ascii_lowercase())
            }
            KeyName::Tab if modifiers & SHIFT != 0 => {
                modifiers &= !SHIFT;
                KeyName::BackTab
            }
            KeyName::Char(c) if modifiers & SHIFT != 0 => {
                modifiers &= !SHIFT;
                KeyName::Char(c.to_ascii_uppercase())
            }
            code => code,
        };
        Ok(Key { code, modifiers })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.modifiers & CTRL != 0 {
            f.write_str("ctrl-")?;
        }
        if self.modifiers & ALT != 0 {
            f.write_str("alt-")?;
        }
        if self.modifiers & SHIFT != 0 {
            f.write_str("shift-")?;
        }
        match self.code {
            KeyName::Char(' ') => f.write_str("space"),
            KeyName::Char(c) => write!(f, "{c}"),
            KeyName::F(n) => write!(f, "f{n}"),
            code => {
                let name = NAMED_KEYS
                    .iter()
                    .find(|(_, named)| *named == code)
                    .map_or("?", |(name, _)| name);
                f.write_str(name)
            }
        }
    }
}

/// The groups of bindings: one per screen, plus keys valid everywhere and list navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    Global,
    List,
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

impl Section {
    pub const ALL: [Section; 12] = [
        Section::Global,
        Section::List,
        Section::Overview,
        Section::Accounts,
        Section::Pay,
        Section::Htlcs,
        Section::Netting,
        Section::Reserves,
        Section::Network,
        Section::Forwards,
        Section::Log,
        Section::Orders,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Section::Global => "global",
            Section::List => "list",
            Section::Overview => "overview",
            Section::Accounts => "accounts",
            Section::Pay => "pay",
            Section::Htlcs => "htlcs",
            Section::Netting => "netting",
            Section::Reserves => "reserves",
            Section::Network => "network",
            Section::Forwards => "forwards",
            Section::Log => "log",
            Section::Orders => "orders",
        }
    }

    /// The actions that may be bound in this section.
    pub fn actions(self) -> &'static [Action] {
        use Action::*;
        match self {
            Section::Global => &[
                Quit,
                Help,
                NextScreen,
                PreviousScreen,
                ShowOverview,
                ShowAccounts,
                ShowPay,
                ShowHtlcs,
                ShowNetting,
                ShowReserves,
                ShowNetwork,
                ShowForwards,
                ShowLog,
                ShowOrders,
            ],
            Section::List => &[Up, Down, PageUp, PageDown, First, Last],
            Section::Overview | Section::Htlcs | Section::Forwards => &[],
            Section::Accounts => &[OpenAccount, SetCredit, AddCollateral, Settle, Dispute],
            Section::Pay => &[EditPayment],
            Section::Netting => &[Refresh, Execute, Dismiss],
            Section::Reserves => &[Deposit, Withdraw, MoveToCollateral],
            Section::Network => &[SwitchPane, OpenAccount, ToggleHubsOnly, BlockPeer],
            Section::Log => &[FilterText, CycleLevel, ClearFilter],
            Section::Orders => &[PlaceOrder, CancelOrder],
        }
    }
}

/// Everything a key can ask for outside forms and dialogs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Quit,
    Help,
    NextScreen,
    PreviousScreen,
    ShowOverview,
    ShowAccounts,
    ShowPay,
    ShowHtlcs,
    ShowNetting,
    ShowReserves,
    ShowNetwork,
    ShowForwards,
    ShowLog,
    ShowOrders,
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
    OpenAccount,
    SetCredit,
    AddCollateral,
    Settle,
    Dispute,
    EditPayment,
    Refresh,
    Execute,
    Dismiss,
    Deposit,
    Withdraw,
    MoveToCollateral,
    SwitchPane,
    ToggleHubsOnly,
    BlockPeer,
    FilterText,
    CycleLevel,
    ClearFilter,
    PlaceOrder,
    CancelOrder,
}

impl Action {
    /// The name in `keys.toml`.
    pub fn name(self) -> &'static str {
        self.describe().0
    }

    /// What the help overlay says it does.
    pub fn description(self) -> &'static str {
        self.describe().1
    }

    fn describe(self) -> (&'static str, &'static str) {
        use Action::*;
        match self {
            Quit => ("quit", "quit the console"),
            Help => ("help", "show or hide this help"),
            NextScreen => ("next_screen", "next screen"),
            PreviousScreen => ("previous_screen", "previous screen"),
            ShowOverview => ("show_overview", "overview screen"),
            ShowAccounts => ("show_accounts", "accounts screen"),
            ShowPay => ("show_pay", "pay screen"),
            ShowHtlcs => ("show_htlcs", "HTLCs screen"),
            ShowNetting => ("show_netting", "netting screen"),
            ShowReserves => ("show_reserves", "reserves screen"),
            ShowNetwork => ("show_network", "network screen"),
            ShowForwards => ("show_forwards", "forwards screen"),
            ShowLog => ("show_log", "log screen"),
            ShowOrders => ("show_orders", "orders screen (swaps)"),
            Up => ("up", "select the row above"),
            Down => ("down", "select the row below"),
            PageUp => ("page_up", "one page up"),
            PageDown => ("page_down", "one page down"),
            First => ("first", "first row"),
            Last => ("last", "last row"),
            OpenAccount => ("open_account", "open an account with a peer"),
            SetCredit => ("set_credit", "set the credit we extend"),
            AddCollateral => ("add_collateral", "move reserve into collateral"),
            Settle => ("settle", "settle the account on chain"),
            Dispute => ("dispute", "start a dispute on chain"),
            EditPayment => ("edit_payment", "edit the payment form"),
            Refresh => ("refresh", "ask the node again"),
            Execute => ("execute", "execute the proposal"),
            Dismiss => ("dismiss", "dismiss the proposal"),
            Deposit => ("deposit", "deposit wallet into reserve"),
            Withdraw => ("withdraw", "withdraw from the reserve"),
            MoveToCollateral => (
                "move_to_collateral",
                "move reserve into an account's collateral",
            ),
            SwitchPane => ("switch_pane", "profiles ↔ peers"),
            ToggleHubsOnly => ("toggle_hubs_only", "hubs only / all profiles"),
            BlockPeer => ("block_peer", "block/unblock the peer"),
            FilterText => ("filter_text", "filter lines by text"),
            CycleLevel => ("cycle_level", "next lowest level shown"),
            ClearFilter => ("clear_filter", "clear the filters"),
            PlaceOrder => ("place_order", "place a swap order"),
            CancelOrder => ("cancel_order", "cancel the selected order"),
        }
    }
}

/// Why a keys file was refused. Every message names the section, action or key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeymapError {
    #[error("{file}: not TOML: {message}")]
    NotToml { file: String, message: String },
    #[error("{file}: unknown section [{section}] (known: {known})")]
    UnknownSection {
        file: String,
        section: String,
        known: String,
    },
    #[error("{file}: [{section}] has no action '{action}' (known: {known})")]
    UnknownAction {
        file: String,
        section: String,
        action: String,
        known: String,
    },
    #[error("{file}: [{section}] {action}: {message}")]
    BadKey {
        file: String,
        section: String,
        action: String,
        message: String,
    },
    #[error("{file}: in [{section}] key '{key}' means both {first} and {second}")]
    Conflict {
        file: String,
        section: String,
        key: String,
        first: String,
        second: String,
    },
}

/// Which keys trigger which action, per section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keymap {
    bindings: BTreeMap<Section, BTreeMap<Action, Vec<Key>>>,
}

impl Keymap {
    /// The embedded defaults.
    pub fn defaults() -> Keymap {
        let mut keymap = Keymap {
            bindings: BTreeMap::new(),
        };
        // The defaults are part of the program; a mistake in them is caught by the tests.
        if let Err(error) = keymap.overlay("default keys", DEFAULT_KEYS) {
            panic!("the embedded default keys are wrong: {error}");
        }
        keymap
    }

    /// The defaults with a user's `keys.toml` over them.
    pub fn with_user_file(file: &str, text: &str) -> Result<Keymap, KeymapError> {
        let mut keymap = Keymap::defaults();
        keymap.overlay(file, text)?;
        Ok(keymap)
    }

    /// Replaces the keys of every action `text` names; refuses the whole file on any error.
    fn overlay(&mut self, file: &str, text: &str) -> Result<(), KeymapError> {
        let table: toml::Table =
            text.parse()
                .map_err(|error: toml::de::Error| KeymapError::NotToml {
                    file: file.to_string(),
                    message: error.message().to_string(),
                })?;
        let mut updated = self.bindings.clone();
        for (section_name, actions) in &table {
            let section = Section::ALL
                .into_iter()
                .find(|section| section.name() == section_name)
                .ok_or_else(|| KeymapError::UnknownSection {
                    file: file.to_string(),
                    section: section_name.clone(),
                    known: Section::ALL.map(Section::name).join(", "),
                })?;
            let bad_key = |action: &str, message: String| KeymapError::BadKey {
                file: file.to_string(),
                section: section_name.clone(),
                action: action.to_string(),
                message,
            };
            let Some(actions) = actions.as_table() else {
                return Err(bad_key("", "expected a table of action = keys".into()));
            };
            for (action_name, keys) in actions {
                let action = section
                    .actions()
                    .iter()
                    .find(|action| action.name() == action_name)
                    .ok_or_else(|| KeymapError::UnknownAction {
                        file: file.to_string(),
                        section: section_name.clone(),
                        action: action_name.clone(),
                        known: section
                            .actions()
                            .iter()
                            .map(|action| action.name())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?;
                let texts: Vec<&str> = match keys {
                    toml::Value::String(key) => vec![key.as_str()],
                    toml::Value::Array(keys) => keys
                        .iter()
                        .map(|key| {
                            key.as_str().ok_or_else(|| {
                                bad_key(action_name, format!("{key} is not a key name"))
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    other => {
                        return Err(bad_key(
                            action_name,
                            format!("{other} is not a key or a list of keys"),
                        ));
                    }
                };
                let keys = texts
                    .into_iter()
                    .map(Key::parse)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|message| bad_key(action_name, message))?;
                updated.entry(section).or_default().insert(*action, keys);
            }
        }
        check_conflicts(file, &updated)?;
        self.bindings = updated;
        Ok(())
    }

    /// The action `key` means on a screen whose section is `screen`.
    pub fn action(&self, screen: Section, key: Key) -> Option<Action> {
        [screen, Section::List, Section::Global]
            .into_iter()
            .find_map(|section| {
                self.bindings.get(&section).and_then(|actions| {
                    actions
                        .iter()
                        .find(|(_, keys)| keys.contains(&key))
                        .map(|(action, _)| *action)
                })
            })
    }

    /// The keys bound to `action` in `section` (empty if none).
    pub fn keys(&self, section: Section, action: Action) -> &[Key] {
        self.bindings
            .get(&section)
            .and_then(|actions| actions.get(&action))
            .map_or(&[], Vec::as_slice)
    }

    /// `"o"` or `"up/k"`: the keys of an action, for hints and help.
    pub fn label(&self, section: Section, action: Action) -> String {
        self.keys(section, action)
            .iter()
            .map(Key::to_string)
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The actions of a section in the order the section lists them, with their keys.
    pub fn section(&self, section: Section) -> Vec<(Action, String)> {
        section
            .actions()
            .iter()
            .filter(|action| !self.keys(section, **action).is_empty())
            .map(|action| (*action, self.label(section, *action)))
            .collect()
    }
}

/// On every screen a key must mean one action (its section, [list] and [global] together).
fn check_conflicts(
    file: &str,
    bindings: &BTreeMap<Section, BTreeMap<Action, Vec<Key>>>,
) -> Result<(), KeymapError> {
    for screen in Section::ALL {
        let mut seen: BTreeMap<Key, (Section, Action)> = BTreeMap::new();
        let sections: &[Section] = match screen {
            Section::Global | Section::List => &[Section::Global, Section::List],
            _ => &[screen, Section::List, Section::Global],
        };
        for section in sections {
            for (action, keys) in bindings.get(section).into_iter().flatten() {
                for key in keys {
                    if let Some((first_section, first)) = seen.insert(*key, (*section, *action))
                        && (first_section, first) != (*section, *action)
                    {
                        return Err(KeymapError::Conflict {
                            file: file.to_string(),
                            section: screen.name().to_string(),
                            key: key.to_string(),
                            first: format!("{}.{}", first_section.name(), first.name()),
                            second: format!("{}.{}", section.name(), action.name()),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Key {
        Key::parse(text).expect("a key")
    }

    #[test]
    fn parses_and_prints_keys() {
        for text in [
            "q", "?", "S", "enter", "ctrl-c", "f5", "space", "backtab", "alt-x",
        ] {
            assert_eq!(key(text).to_string(), text);
        }
        assert_eq!(key("shift-tab"), key("backtab"));
        assert_eq!(key("shift-s"), key("S"));
        assert_eq!(key("Ctrl-C"), key("ctrl-c"));
        assert_eq!(
            key("-"),
            Key {
                code: KeyName::Char('-'),
                modifiers: 0
            }
        );
        assert!(Key::parse("ctrl-").is_err());
        assert!(Key::parse("hyper-x").is_err());
        assert!(Key::parse("f13").is_err());
        assert!(Key::parse("").is_err());
    }

    #[test]
    fn events_match_bindings() {
        let shifted = KeyEvent::new(KeyCode::Char('S'), KeyModifiers::SHIFT);
        assert_eq!(Key::from_event(&shifted), Some(key("S")));
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(Key::from_event(&ctrl_c), Some(key("ctrl-c")));
        let backtab = KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT);
        assert_eq!(Key::from_event(&backtab), Some(key("backtab")));
    }

    #[test]
    fn defaults_bind_every_screen_action() {
        let keymap = Keymap::defaults();
        for section in Section::ALL {
            for action in section.actions() {
                assert!(
                    !keymap.keys(section, *action).is_empty(),
                    "{}.{} has no key",
                    section.name(),
                    action.name()
                );
            }
        }
        assert_eq!(
            keymap.action(Section::Accounts, key("s")),
            Some(Action::Settle)
        );
        assert_eq!(
            keymap.action(Section::Accounts, key("j")),
            Some(Action::Down)
        );
        assert_eq!(
            keymap.action(Section::Accounts, key("q")),
            Some(Action::Quit)
        );
        assert_eq!(
            keymap.action(Section::Reserves, key("d")),
            Some(Action::Deposit)
        );
        assert_eq!(keymap.action(Section::Overview, key("s")), None);
    }

    #[test]
    fn user_keys_replace_only_what_they_name() {
        let keymap =
            Keymap::with_user_file("keys.toml", "[accounts]\nsettle = \"S\"\n").expect("valid");
        assert_eq!(
            keymap.action(Section::Accounts, key("S")),
            Some(Action::Settle)
        );
        assert_eq!(keymap.action(Section::Accounts, key("s")), None);
        assert_eq!(
            keymap.action(Section::Accounts, key("d")),
            Some(Action::Dispute)
        );
    }

    #[test]
    fn user_key_errors_name_what_is_wrong() {
        let error = |text: &str| {
            Keymap::with_user_file("keys.toml", text)
                .expect_err("refused")
                .to_string()
        };
        assert!(error("[accounts]\nsettel = \"S\"").contains("no action 'settel'"));
        assert!(error("[acounts]\nsettle = \"S\"").contains("unknown section [acounts]"));
        assert!(error("[accounts]\nsettle = \"ctrl-\"").contains("settle: 'ctrl-'"));
        assert!(error("[accounts]\nsettle = 5").contains("settle: 5 is not a key"));
        assert!(error("[accounts]\nsettle = \"q\"").contains("key 'q' means both"));
        assert!(error("not = [toml").contains("not TOML"));
    }
}
