//! Forms: fields typed by the user, checked on every keystroke against the view, turned into
//! one request. The rules of each form (what is allowed, what needs a confirmation) live here.

use super::context::{RequestId, Ui};
use super::format::{cells, entity_label};
use crate::amount::TokenFormat;
use crate::api::{NodeView, ProfileView, Request, TimeInForce, time_in_force_label};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use xln_core::board::EntityId;
use xln_core::crypto::Address;
use xln_core::delta::TokenId;

/// What a form asks the node to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormKind {
    OpenAccount,
    SetCredit {
        peer: EntityId,
    },
    AddCollateral {
        peer: EntityId,
    },
    Deposit,
    Withdraw,
    MoveToCollateral,
    Pay,
    /// A swap order on the account with a peer: give one token for at least an amount of
    /// another.
    PlaceOrder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    /// An entity id or a profile name, completed from the profiles.
    Peer,
    /// One of `view.tokens`, chosen with ←/→.
    Token,
    /// In the token of the nearest token field above it.
    Amount,
    /// An optional address (empty: the default).
    Address,
    /// One of [`TIMES_IN_FORCE`], chosen with ←/→.
    TimeInForce,
}

/// The times in force an order form offers, in the order ←/→ goes through them.
const TIMES_IN_FORCE: [TimeInForce; 3] = [
    TimeInForce::GoodTillCancel,
    TimeInForce::ImmediateOrCancel,
    TimeInForce::FillOrKill,
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    label: &'static str,
    kind: FieldKind,
    text: String,
    /// For a field chosen with ←/→: the index of the choice (into `view.tokens`, or into
    /// [`TIMES_IN_FORCE`]).
    choice: usize,
}

impl Field {
    fn is_choice(&self) -> bool {
        matches!(self.kind, FieldKind::Token | FieldKind::TimeInForce)
    }
}

/// What a key did to a form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormEvent {
    Edited,
    Submit,
    Cancel,
    Ignored,
}

/// A checked form: the request, what it does in words, and whether it moves money on chain
/// (then it is confirmed before it is sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub request: Request,
    pub summary: String,
    pub on_chain: bool,
}

/// The state of a form being filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub kind: FormKind,
    fields: Vec<Field>,
    focus: usize,
    /// What the node said to the last submission, if it refused it.
    pub node_error: Option<String>,
    /// The submission waiting for the node's answer: the form cannot be sent again meanwhile.
    pub pending: Option<RequestId>,
}

const COMPLETIONS_SHOWN: usize = 4;

impl Form {
    pub fn new(kind: FormKind) -> Form {
        let field = |label, kind| Field {
            label,
            kind,
            text: String::new(),
            choice: 0,
        };
        let fields = match &kind {
            FormKind::OpenAccount => vec![field("peer", FieldKind::Peer)],
            FormKind::SetCredit { .. } | FormKind::AddCollateral { .. } | FormKind::Deposit => {
                vec![
                    field("token", FieldKind::Token),
                    field("amount", FieldKind::Amount),
                ]
            }
            FormKind::Withdraw => vec![
                field("token", FieldKind::Token),
                field("amount", FieldKind::Amount),
                field("to", FieldKind::Address),
            ],
            FormKind::MoveToCollateral => vec![
                field("peer", FieldKind::Peer),
                field("token", FieldKind::Token),
                field("amount", FieldKind::Amount),
            ],
            FormKind::Pay => vec![
                field("to", FieldKind::Peer),
                field("token", FieldKind::Token),
                field("amount", FieldKind::Amount),
            ],
            FormKind::PlaceOrder => vec![
                field("peer", FieldKind::Peer),
                field("give", FieldKind::Token),
                field("amount", FieldKind::Amount),
                // The second token: an order gives one token for another.
                Field {
                    choice: 1,
                    ..field("want", FieldKind::Token)
                },
                field("at least", FieldKind::Amount),
                field("in force", FieldKind::TimeInForce),
            ],
        };
        Form {
            kind,
            fields,
            focus: 0,
            node_error: None,
            pending: None,
        }
    }

    /// Starts on the token `token` (an account's or a reserve's) in its first token field.
    pub fn with_token(mut self, view: &NodeView, token: TokenId) -> Form {
        if let Some(index) = view.tokens.iter().position(|info| info.id == token)
            && let Some(field) = self.fields.iter_mut().find(|f| f.kind == FieldKind::Token)
        {
            field.choice = index;
        }
        if let Some(amount) = self.fields.iter().position(|f| f.kind == FieldKind::Amount) {
            self.focus = amount;
        }
        self
    }

    /// Starts with `text` in the peer field (a profile chosen elsewhere).
    pub fn with_peer(mut self, text: &str) -> Form {
        if let Some(peer) = self.fields.iter_mut().find(|f| f.kind == FieldKind::Peer) {
            peer.text = text.to_string();
        }
        self
    }

    pub fn title(&self, ui: &Ui) -> String {
        let peer = |entity: &EntityId| ui.names.label(entity);
        match &self.kind {
            FormKind::OpenAccount => "Open an account".into(),
            FormKind::SetCredit { peer: entity } => format!("Credit we extend to {}", peer(entity)),
            FormKind::AddCollateral { peer: entity } => {
                format!("Add collateral to the account with {}", peer(entity))
            }
            FormKind::Deposit => "Deposit into the reserve".into(),
            FormKind::Withdraw => "Withdraw from the reserve".into(),
            FormKind::MoveToCollateral => "Move reserve into collateral".into(),
            FormKind::Pay => "Payment".into(),
            FormKind::PlaceOrder => "Swap order".into(),
        }
    }

    /// Empties the amount (after a payment left, so that it is not sent twice by accident).
    pub fn clear_amount(&mut self) {
        for field in &mut self.fields {
            if field.kind == FieldKind::Amount {
                field.text.clear();
            }
        }
    }

    pub fn handle_key(&mut self, key: &KeyEvent, view: &NodeView) -> FormEvent {
        let control = key.modifiers.contains(KeyModifiers::CONTROL);
        let Some(field) = self.fields.get_mut(self.focus) else {
            return FormEvent::Ignored;
        };
        let kind = field.kind;
        match key.code {
            KeyCode::Esc => return FormEvent::Cancel,
            KeyCode::Enter => return FormEvent::Submit,
            KeyCode::Tab => {
                let first = completions(&field.text, view)
                    .first()
                    .map(|p| p.name.clone());
                match first {
                    Some(name) if kind == FieldKind::Peer => field.text = name,
                    _ => self.focus = (self.focus + 1) % self.fields.len(),
                }
            }
            KeyCode::Down => self.focus = (self.focus + 1) % self.fields.len(),
            KeyCode::BackTab | KeyCode::Up => {
                self.focus = (self.focus + self.fields.len() - 1) % self.fields.len();
            }
            KeyCode::Left | KeyCode::Right if field.is_choice() => {
                let count = match kind {
                    FieldKind::TimeInForce => TIMES_IN_FORCE.len(),
                    _ => view.tokens.len().max(1),
                };
                let step = if key.code == KeyCode::Left {
                    count - 1
                } else {
                    1
                };
                field.choice = (field.choice + step) % count;
            }
            KeyCode::Backspace if !field.is_choice() => {
                field.text.pop();
            }
            KeyCode::Char('u') if control => field.text.clear(),
            KeyCode::Char(c) if !control && !field.is_choice() && !c.is_control() => {
                field.text.push(c);
            }
            _ => return FormEvent::Ignored,
        }
        self.node_error = None;
        FormEvent::Edited
    }

    /// Checks every field against the view: the problem of each field (or `None`), and the
    /// submission when there are none.
    pub fn check(&self, view: &NodeView) -> (Vec<Option<String>>, Option<Submission>) {
        let mut problems = Vec::with_capacity(self.fields.len());
        let mut peer = None;
        // The chosen tokens and the amounts, in the order of their fields.
        let mut tokens: Vec<TokenId> = Vec::new();
        let mut amounts: Vec<u128> = Vec::new();
        let mut address = None;
        let mut time_in_force = TimeInForce::GoodTillCancel;
        // The token of the nearest token field above: the one the amounts below it are in.
        let mut token: Result<TokenId, String> = Err("choose a token first".into());
        for field in &self.fields {
            let problem = match field.kind {
                FieldKind::Peer => resolve_entity(&field.text, view)
                    .and_then(|entity| self.check_peer(entity, view))
                    .map(|entity| peer = Some(entity))
                    .err(),
                FieldKind::Token => {
                    token = view
                        .tokens
                        .get(field.choice)
                        .map(|info| info.id)
                        .ok_or_else(|| match view.tokens.len() {
                            0 => "the node knows no tokens yet".to_string(),
                            _ => "choose a token with ←→".to_string(),
                        })
                        .and_then(|id| self.check_token(id, &tokens, peer, view));
                    if let Ok(id) = token {
                        tokens.push(id);
                    }
                    token.as_ref().err().cloned()
                }
                FieldKind::Amount => match &token {
                    Ok(id) => {
                        let format = TokenFormat::of(view, *id);
                        format
                            .parse(&field.text)
                            .map_err(|e| e.to_string())
                            .and_then(|units| {
                                self.check_amount(units, *id, amounts.len(), peer, &format, view)
                            })
                            .map(|units| amounts.push(units))
                            .err()
                    }
                    Err(_) => Some("choose a token first".into()),
                },
                FieldKind::Address => parse_address(&field.text)
                    .map(|parsed| address = Some(parsed))
                    .err(),
                FieldKind::TimeInForce => match TIMES_IN_FORCE.get(field.choice) {
                    Some(chosen) => {
                        time_in_force = *chosen;
                        None
                    }
                    None => Some("choose a time in force".into()),
                },
            };
            problems.push(problem);
        }
        let submission = if problems.iter().all(Option::is_none) {
            self.submission(view, peer, &tokens, &amounts, address, time_in_force)
        } else {
            None
        };
        (problems, submission)
    }

    /// The rules on the tokens of each form: those chosen before it are in `earlier`.
    fn check_token(
        &self,
        token: TokenId,
        earlier: &[TokenId],
        peer: Option<EntityId>,
        view: &NodeView,
    ) -> Result<TokenId, String> {
        if self.kind != FormKind::PlaceOrder {
            return Ok(token);
        }
        if earlier.contains(&token) {
            return Err("give one token for another".into());
        }
        // An order needs both tokens in the account (the account refuses it otherwise).
        let held =
            |account: &crate::api::AccountView| account.tokens.iter().any(|t| t.token == token);
        match peer.and_then(|peer| view.accounts.iter().find(|a| a.peer == peer)) {
            Some(account) if !held(account) => Err(format!(
                "not in the account with {}",
                entity_label(view, &account.peer)
            )),
            _ => Ok(token),
        }
    }

    /// The rules on the peer of each form.
    fn check_peer(&self, entity: EntityId, view: &NodeView) -> Result<EntityId, String> {
        let has_account = view.accounts.iter().any(|a| a.peer == entity);
        if entity == view.status.entity {
            return Err("that is us".into());
        }
        match self.kind {
            FormKind::OpenAccount if has_account => {
                Err("we already have an account with it".into())
            }
            FormKind::MoveToCollateral | FormKind::PlaceOrder if !has_account => {
                Err("no account with it (open one first)".into())
            }
            _ => Ok(entity),
        }
    }

    /// The rules on the amount of each form; `index` counts the amount fields above it.
    fn check_amount(
        &self,
        amount: u128,
        token: TokenId,
        index: usize,
        peer: Option<EntityId>,
        format: &TokenFormat,
        view: &NodeView,
    ) -> Result<u128, String> {
        let reserve = view
            .reserves
            .iter()
            .find(|r| r.token == token)
            .map_or(0, |r| r.reserve);
        let above = |what: &str, limit: u128| {
            Err(format!(
                "above {what} ({})",
                format.amount_with_symbol(limit)
            ))
        };
        if amount == 0 && !matches!(self.kind, FormKind::SetCredit { .. }) {
            return Err("must be more than 0".into());
        }
        match self.kind {
            FormKind::AddCollateral { .. } | FormKind::MoveToCollateral | FormKind::Withdraw
                if amount > reserve =>
            {
                above("our reserve", reserve)
            }
            FormKind::Deposit => match view.reserves.iter().find(|r| r.token == token) {
                Some(reserve) => match reserve.wallet {
                    Some(wallet) if amount > wallet => above("the wallet's balance", wallet),
                    _ => Ok(amount),
                },
                None => Ok(amount),
            },
            FormKind::Pay => {
                let largest = view
                    .accounts
                    .iter()
                    .flat_map(|a| a.tokens.iter())
                    .filter(|t| t.token == token)
                    .map(|t| t.out_capacity)
                    .max();
                match largest {
                    None => Err(format!("no account holds {}", format.symbol)),
                    Some(largest) if amount > largest => {
                        above("the largest outgoing capacity", largest)
                    }
                    Some(_) => Ok(amount),
                }
            }
            // Both amounts of an order move in the account's signed deltas.
            FormKind::PlaceOrder if i128::try_from(amount).is_err() => Err("too large".into()),
            // What we give goes on hold: the account's outgoing capacity bounds it.
            FormKind::PlaceOrder if index == 0 => {
                let capacity = peer
                    .and_then(|peer| view.accounts.iter().find(|a| a.peer == peer))
                    .and_then(|account| account.tokens.iter().find(|t| t.token == token))
                    .map(|t| t.out_capacity);
                match capacity {
                    Some(capacity) if amount > capacity => {
                        above("the account's outgoing capacity", capacity)
                    }
                    _ => Ok(amount),
                }
            }
            _ => Ok(amount),
        }
    }

    fn submission(
        &self,
        view: &NodeView,
        peer: Option<EntityId>,
        tokens: &[TokenId],
        amounts: &[u128],
        to: Option<Option<Address>>,
        time_in_force: TimeInForce,
    ) -> Option<Submission> {
        let label = |entity: &EntityId| entity_label(view, entity);
        if self.kind == FormKind::OpenAccount {
            let peer = peer?;
            return Some(Submission {
                request: Request::OpenAccount {
                    peer: peer.to_string(),
                },
                summary: format!("open an account with {}", label(&peer)),
                on_chain: false,
            });
        }
        // Every other form has a token and an amount in it.
        let token = *tokens.first()?;
        let amount = *amounts.first()?;
        let shown = TokenFormat::of(view, token).amount_with_symbol(amount);
        let (request, summary, on_chain) = match &self.kind {
            // Answered above.
            FormKind::OpenAccount => return None,
            FormKind::SetCredit { peer } => (
                Request::Credit {
                    peer: peer.to_string(),
                    token,
                    amount,
                },
                format!("extend {shown} of credit to {}", label(peer)),
                false,
            ),
            FormKind::AddCollateral { peer } => (
                Request::Collateral {
                    peer: peer.to_string(),
                    token,
                    amount,
                },
                format!(
                    "move {shown} of our reserve into the collateral with {}",
                    label(peer)
                ),
                true,
            ),
            FormKind::MoveToCollateral => {
                let peer = peer?;
                (
                    Request::Collateral {
                        peer: peer.to_string(),
                        token,
                        amount,
                    },
                    format!(
                        "move {shown} of our reserve into the collateral with {}",
                        label(&peer)
                    ),
                    true,
                )
            }
            FormKind::Deposit => (
                Request::Deposit { token, amount },
                format!("deposit {shown} from the signer's wallet into our reserve"),
                true,
            ),
            FormKind::Withdraw => {
                let to = to?;
                let whom = to.map_or("the signer's address".to_string(), |a| a.to_string());
                (
                    Request::Withdraw { token, amount, to },
                    format!("withdraw {shown} from our reserve to {whom}"),
                    true,
                )
            }
            FormKind::Pay => {
                let peer = peer?;
                (
                    Request::Pay {
                        destination: peer.to_string(),
                        token,
                        amount,
                    },
                    format!("pay {shown} to {}", label(&peer)),
                    false,
                )
            }
            FormKind::PlaceOrder => {
                let peer = peer?;
                let want_token = *tokens.get(1)?;
                let want_amount = *amounts.get(1)?;
                let wanted = TokenFormat::of(view, want_token).amount_with_symbol(want_amount);
                (
                    Request::PlaceOrder {
                        peer: peer.to_string(),
                        give_token: token,
                        give_amount: amount,
                        want_token,
                        want_amount,
                        time_in_force,
                        expires_in_secs: None,
                    },
                    format!(
                        "offer {shown} for at least {wanted} to {} ({})",
                        label(&peer),
                        time_in_force_label(time_in_force)
                    ),
                    false,
                )
            }
        };
        Some(Submission {
            request,
            summary,
            on_chain,
        })
    }

    /// The fields, their problems and the completions, in `area` (no border).
    pub fn draw_fields(&self, frame: &mut Frame, area: Rect, ui: &Ui, focused: bool) {
        let (problems, _) = self.check(ui.view);
        let theme = ui.theme;
        let mut lines: Vec<Line> = Vec::new();
        for (index, (field, problem)) in self.fields.iter().zip(&problems).enumerate() {
            let is_focused = focused && index == self.focus;
            let label_style = if is_focused { theme.key() } else { theme.dim() };
            let mut spans = vec![Span::styled(format!("{:>8} ", field.label), label_style)];
            match field.kind {
                FieldKind::Token => {
                    let symbol = ui
                        .view
                        .tokens
                        .get(field.choice)
                        .map_or("(none)".to_string(), |t| t.symbol.clone());
                    spans.push(Span::styled(format!("◀ {symbol} ▶"), theme.text()));
                }
                FieldKind::TimeInForce => {
                    if let Some(chosen) = TIMES_IN_FORCE.get(field.choice) {
                        spans.push(Span::styled(
                            format!("◀ {} ▶", time_in_force_label(*chosen)),
                            theme.text(),
                        ));
                        spans.push(Span::styled(
                            format!(" {}", time_in_force_meaning(*chosen)),
                            theme.dim(),
                        ));
                    }
                }
                _ => {
                    spans.push(Span::styled(field.text.clone(), theme.text()));
                    if is_focused {
                        spans.push(Span::styled("█", theme.accent()));
                    }
                }
            }
            if let Some(problem) = problem {
                let style = if field.text.is_empty() && !field.is_choice() {
                    theme.dim()
                } else {
                    theme.error()
                };
                spans.push(Span::styled(format!("  {problem}"), style));
            }
            lines.push(Line::from(spans));
            if is_focused && field.kind == FieldKind::Peer {
                for profile in completions(&field.text, ui.view)
                    .into_iter()
                    .take(COMPLETIONS_SHOWN)
                {
                    let hub = if profile.is_hub { " hub" } else { "" };
                    lines.push(Line::from(vec![
                        Span::raw("           "),
                        Span::styled(profile.name.clone(), theme.accent()),
                        Span::styled(format!(" {}{hub}", profile.entity.short()), theme.dim()),
                    ]));
                }
            }
        }
        if let Some(error) = &self.node_error {
            lines.push(Line::styled(format!("node: {error}"), theme.error()));
        }
        if self.pending.is_some() {
            lines.push(Line::styled(
                format!("{} waiting for the node…", ui.spinner),
                theme.warn(),
            ));
        }
        frame.render_widget(Paragraph::new(lines), area);
    }

    /// The form as a popup over the screen.
    pub fn draw_popup(&self, frame: &mut Frame, ui: &Ui) {
        let completions = if self.fields.iter().any(|f| f.kind == FieldKind::Peer) {
            COMPLETIONS_SHOWN
        } else {
            0
        };
        let choices = if self.fields.iter().any(|f| f.kind == FieldKind::TimeInForce) {
            "token/in force"
        } else {
            "token"
        };
        // Fields, completions, the node's error or the spinner, borders.
        let height = self.fields.len() + completions + 2 + 2;
        let area = popup_area(frame.area(), 72, cells(height));
        frame.render_widget(Clear, area);
        let block = Block::new()
            .borders(Borders::ALL)
            .border_style(ui.theme.accent())
            .title(Line::styled(
                format!(" {} ", self.title(ui)),
                ui.theme.title(),
            ))
            .title_bottom(hints(
                ui,
                &[
                    ("enter", "submit"),
                    ("esc", "cancel"),
                    ("tab", "next/complete"),
                    ("←→", choices),
                ],
            ))
            .style(ui.theme.base());
        let inner = block.inner(area);
        frame.render_widget(block, area);
        self.draw_fields(frame, inner, ui, true);
    }
}

/// What a time in force does, in a few words.
fn time_in_force_meaning(time_in_force: TimeInForce) -> &'static str {
    match time_in_force {
        TimeInForce::GoodTillCancel => "rests until filled or cancelled",
        TimeInForce::ImmediateOrCancel => "takes what matches now",
        TimeInForce::FillOrKill => "all at once or nothing",
    }
}

/// Profiles whose name contains `text` (any case), names starting with it first; none for an
/// exact name or an empty text.
pub fn completions<'v>(text: &str, view: &'v NodeView) -> Vec<&'v ProfileView> {
    let wanted = text.trim().to_lowercase();
    if wanted.is_empty() || wanted.starts_with("0x") {
        return Vec::new();
    }
    let mut found: Vec<&ProfileView> = view
        .profiles
        .iter()
        .filter(|p| p.name.to_lowercase().contains(&wanted) && p.name != text.trim())
        .collect();
    found.sort_by_key(|p| (!p.name.to_lowercase().starts_with(&wanted), p.name.clone()));
    found
}

/// An entity from `0x…` hex or a profile name.
pub fn resolve_entity(text: &str, view: &NodeView) -> Result<EntityId, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("an entity id (0x…) or a profile name".into());
    }
    let hex = text.strip_prefix("0x").unwrap_or(text);
    if text.starts_with("0x") || (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())) {
        return text
            .parse::<EntityId>()
            .map_err(|e| format!("not an entity id: {e}"));
    }
    let named: Vec<&ProfileView> = view.profiles.iter().filter(|p| p.name == text).collect();
    match named.as_slice() {
        [profile] => Ok(profile.entity),
        [] => Err(format!("no profile named '{text}'")),
        several => Err(format!(
            "{} profiles are named '{text}': use the entity id",
            several.len()
        )),
    }
}

fn parse_address(text: &str) -> Result<Option<Address>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<Address>()
        .map(Some)
        .map_err(|e| format!("not an address: {e}"))
}

/// `key action · key action` for the bottom of a popup.
pub fn hints<'a>(ui: &Ui, pairs: &[(&str, &str)]) -> Line<'a> {
    let mut spans = vec![Span::raw(" ")];
    for (index, (key, action)) in pairs.iter().enumerate() {
        if index > 0 {
            spans.push(Span::styled(" · ", ui.theme.dim()));
        }
        spans.push(Span::styled(key.to_string(), ui.theme.key()));
        spans.push(Span::styled(format!(" {action}"), ui.theme.dim()));
    }
    spans.push(Span::raw(" "));
    Line::from(spans)
}

/// A centred area of at most `width`×`height` inside `outer`.
pub fn popup_area(outer: Rect, width: u16, height: u16) -> Rect {
    outer.centered(
        Constraint::Length(width.min(outer.width)),
        Constraint::Length(height.min(outer.height)),
    )
}
