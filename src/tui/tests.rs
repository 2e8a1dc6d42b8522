//! The console without a terminal: keys in, state and requests out; every screen drawn into
//! a `TestBackend` and compared with its snapshot. The views are plain, fixed `NodeView`s
//! (the times in them are relative to `status.timestamp`), so drawings are deterministic.

use super::form::FormKind;
use super::{Console, ConsoleOptions, RequestId, ScreenId};
use crate::api::*;
use crossterm::event::{
    Event, KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::sync::Arc;
use xln_core::board::EntityId;
use xln_core::crypto::{Address, Hash};

const NOW: u64 = 1_700_000_000_000;
const USDC: u32 = 1;
const WETH: u32 = 2;

fn entity(byte: u8) -> EntityId {
    EntityId([byte; 32])
}

fn usdc(whole: u128) -> u128 {
    whole * 1_000_000
}

fn us() -> EntityId {
    entity(0x11)
}
fn hub1() -> EntityId {
    entity(0x22)
}
fn bob() -> EntityId {
    entity(0x05)
}
fn carol() -> EntityId {
    entity(0x33)
}
fn hub2() -> EntityId {
    entity(0x44)
}
fn dave() -> EntityId {
    entity(0x55)
}
fn erin() -> EntityId {
    entity(0x66)
}

fn profile(entity: EntityId, name: &str, is_hub: bool, accounts: usize) -> ProfileView {
    ProfileView {
        entity,
        name: name.into(),
        endpoint: format!("ws://{name}.example:9000"),
        is_hub,
        accounts,
        fee_base: 0,
        fee_ppm: if is_hub { 100 } else { 0 },
    }
}

/// A wallet "alice" with accounts at two hubs and three peers, some payments, locks and log.
fn sample_view() -> NodeView {
    let frames = (40..=42)
        .map(|height| FrameSummary {
            height,
            timestamp: NOW - (43 - height) * 30_000,
            txs: (height % 3) as usize + 1,
            hash: Hash([height as u8; 32]),
        })
        .collect();
    let accounts = vec![
        AccountView {
            peer: hub1(),
            peer_name: Some("hub-1".into()),
            we_are_left: true,
            height: 42,
            state_hash: Hash::ZERO,
            status: AccountStatus::Synced,
            proof_height: Some(42),
            queued: 0,
            tokens: vec![
                AccountTokenView {
                    token: USDC,
                    collateral: usdc(100),
                    ondelta: 0,
                    offdelta: usdc(50) as i128,
                    delta: usdc(50) as i128,
                    position: usdc(50) as i128,
                    own_credit: usdc(200),
                    peer_credit: usdc(100),
                    out_capacity: usdc(150) - usdc(25),
                    in_capacity: usdc(250),
                    our_hold: usdc(25),
                    peer_hold: 0,
                },
                AccountTokenView {
                    token: WETH,
                    collateral: 2_000_000_000_000_000_000,
                    ondelta: 500_000_000_000_000_000,
                    offdelta: 0,
                    delta: 500_000_000_000_000_000,
                    position: 500_000_000_000_000_000,
                    own_credit: 0,
                    peer_credit: 0,
                    out_capacity: 500_000_000_000_000_000,
                    in_capacity: 1_500_000_000_000_000_000,
                    our_hold: 0,
                    peer_hold: 0,
                },
            ],
            frames,
        },
        AccountView {
            peer: bob(),
            peer_name: Some("bob".into()),
            we_are_left: false,
            height: 7,
            state_hash: Hash::ZERO,
            status: AccountStatus::FramePending,
            proof_height: Some(6),
            queued: 2,
            tokens: vec![AccountTokenView {
                token: USDC,
                collateral: 0,
                ondelta: 0,
                offdelta: usdc(20) as i128,
                delta: usdc(20) as i128,
                position: -(usdc(20) as i128),
                own_credit: usdc(50),
                peer_credit: usdc(30),
                out_capacity: usdc(10),
                in_capacity: usdc(65),
                our_hold: 0,
                peer_hold: usdc(5),
            }],
            frames: Vec::new(),
        },
        AccountView {
            peer: carol(),
            peer_name: Some("carol".into()),
            we_are_left: true,
            height: 3,
            state_hash: Hash::ZERO,
            status: AccountStatus::Disputed,
            proof_height: Some(3),
            queued: 0,
            tokens: vec![AccountTokenView {
                token: USDC,
                collateral: usdc(10),
                ondelta: usdc(10) as i128,
                offdelta: 0,
                delta: usdc(10) as i128,
                position: usdc(10) as i128,
                own_credit: 0,
                peer_credit: 0,
                out_capacity: usdc(10),
                in_capacity: 0,
                our_hold: 0,
                peer_hold: 0,
            }],
            frames: Vec::new(),
        },
        AccountView {
            peer: erin(),
            peer_name: None,
            we_are_left: true,
            height: 0,
            state_hash: Hash::ZERO,
            status: AccountStatus::FramePending,
            proof_height: None,
            queued: 1,
            tokens: Vec::new(),
            frames: Vec::new(),
        },
    ];
    NodeView {
        status: StatusView {
            entity: us(),
            name: "alice".into(),
            signer: Address([0xa1; 20]),
            board: BoardView {
                threshold: 1,
                members: vec![(Address([0xa1; 20]), 1)],
            },
            height: 42,
            timestamp: NOW,
            inputs: 1234,
            chain: ChainStatus {
                rpc_url: "http://127.0.0.1:8545".into(),
                chain_id: 31337,
                head: 120,
                followed: 118,
                connected: true,
                error: None,
            },
            peers_connected: 2,
            totals: vec![
                TokenTotals {
                    token: USDC,
                    owed_to_us: usdc(60),
                    we_owe: usdc(20),
                },
                TokenTotals {
                    token: WETH,
                    owed_to_us: 500_000_000_000_000_000,
                    we_owe: 0,
                },
            ],
            healthy: true,
            problems: Vec::new(),
            database_bytes: 3 * 1024 * 1024,
            metrics_url: None,
        },
        reserves: vec![
            ReserveView {
                token: USDC,
                reserve: usdc(1000),
                wallet: Some(usdc(250)),
            },
            ReserveView {
                token: WETH,
                reserve: 5_000_000_000_000_000_000,
                wallet: None,
            },
        ],
        accounts,
        htlcs: vec![
            HtlcView {
                peer: hub1(),
                lock_id: 7,
                direction: Direction::Outgoing,
                token: USDC,
                amount: usdc(25),
                hashlock: Hash([0xaa; 32]),
                expires_at_ms: NOW + 245_000,
                reveal_before_block: 150,
                state: "sending".into(),
            },
            HtlcView {
                peer: bob(),
                lock_id: 3,
                direction: Direction::Incoming,
                token: USDC,
                amount: usdc(5),
                hashlock: Hash([0xbb; 32]),
                expires_at_ms: NOW + 7_800_000,
                reveal_before_block: 300,
                state: "forwarding".into(),
            },
        ],
        payments: vec![
            PaymentView {
                hashlock: Hash([0x99; 32]),
                receiver: dave(),
                token: USDC,
                amount: usdc(10),
                sent: usdc(10) + 20_000,
                hops: 2,
                status: "succeeded".into(),
                started_at: NOW - 3_600_000,
            },
            PaymentView {
                hashlock: Hash([0xaa; 32]),
                receiver: dave(),
                token: USDC,
                amount: usdc(25),
                sent: usdc(25) + 50_000,
                hops: 2,
                status: "pending".into(),
                started_at: NOW - 5_000,
            },
        ],
        forwards: ForwardsView {
            forwarded: 17,
            fees: vec![(USDC, 1_250_000)],
            failures: vec![("no capacity".into(), 3), ("expired".into(), 1)],
            recent: vec![
                ForwardView {
                    timestamp: NOW - 60_000,
                    from: bob(),
                    token: USDC,
                    fee: 10_000,
                    failure: None,
                },
                ForwardView {
                    timestamp: NOW - 30_000,
                    from: carol(),
                    token: USDC,
                    fee: 0,
                    failure: Some("no capacity".into()),
                },
            ],
        },
        peers: vec![
            PeerView {
                signer: Address([0xb1; 20]),
                url: Some("ws://hub-1.example:9000".into()),
                connected: true,
                blocked: false,
            },
            PeerView {
                signer: Address([0xb2; 20]),
                url: None,
                connected: true,
                blocked: false,
            },
            PeerView {
                signer: Address([0xb3; 20]),
                url: Some("ws://mallory.example:9000".into()),
                connected: false,
                blocked: true,
            },
        ],
        profiles: vec![
            profile(hub1(), "hub-1", true, 120),
            profile(hub2(), "hub-2", true, 80),
            profile(bob(), "bob", false, 1),
            profile(carol(), "carol", false, 1),
            profile(dave(), "dave", false, 2),
        ],
        tokens: vec![
            TokenInfo {
                id: USDC,
                symbol: "USDC".into(),
                decimals: 6,
            },
            TokenInfo {
                id: WETH,
                symbol: "WETH".into(),
                decimals: 18,
            },
        ],
        pending_chain_txs: vec![
            ChainTxView {
                what: "collateral 100 USDC to hub-1".into(),
                tx: Some(Hash([0xcc; 32])),
                confirmations: 1,
            },
            ChainTxView {
                what: "deposit 50 USDC".into(),
                tx: None,
                confirmations: 0,
            },
        ],
        log: [
            (LogLevel::Debug, "timer tick"),
            (LogLevel::Info, "account with hub-1 at height 42"),
            (LogLevel::Warn, "chain follower is 2 blocks behind"),
            (LogLevel::Error, "peer 0xb3b3…b3b3 refused: blocked"),
            (LogLevel::Info, "payment 0xaaaa…aaaa pending"),
            (LogLevel::Debug, "frame 42 acknowledged by hub-1"),
        ]
        .into_iter()
        .enumerate()
        .map(|(index, (level, text))| LogLine {
            timestamp: NOW - (6 - index as u64) * 1_000,
            level,
            text: text.into(),
        })
        .collect(),
        orders: vec![
            OrderView {
                peer: hub1(),
                peer_name: Some("hub-1".into()),
                offer_id: 6,
                give_token: USDC,
                give_amount: usdc(100),
                want_token: WETH,
                want_amount: 40_000_000_000_000_000,
                time_in_force: TimeInForce::GoodTillCancel,
                expires_at_ms: Some(NOW + 3_600_000),
                filled: usdc(25),
                received: Some(10_000_000_000_000_000),
                state: OrderState::PartlyFilled,
                reason: None,
                placed_at: NOW - 60_000,
            },
            OrderView {
                peer: hub1(),
                peer_name: Some("hub-1".into()),
                offer_id: 4,
                give_token: WETH,
                give_amount: 500_000_000_000_000_000,
                want_token: USDC,
                want_amount: usdc(1250),
                time_in_force: TimeInForce::FillOrKill,
                expires_at_ms: None,
                filled: 500_000_000_000_000_000,
                received: Some(usdc(1260)),
                state: OrderState::Filled,
                reason: None,
                placed_at: NOW - 600_000,
            },
        ],
        book: Vec::new(),
    }
}

fn console() -> Console {
    Console::new(&ConsoleOptions::default(), Arc::new(sample_view())).expect("console")
}

fn key(console: &mut Console, code: KeyCode) {
    console.handle_event(&Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

fn keys(console: &mut Console, text: &str) {
    for c in text.chars() {
        key(console, KeyCode::Char(c));
    }
}

fn click(console: &mut Console, column: u16, row: u16) {
    console.handle_event(&Event::Mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column,
        row,
        modifiers: KeyModifiers::NONE,
    }));
}

fn render(console: &Console, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|frame| console.draw(frame)).expect("drawing");
    terminal.backend().to_string()
}

/// The one request the console wants to send now.
fn sent(console: &mut Console) -> (RequestId, Request) {
    let mut requests = console.take_requests();
    assert_eq!(requests.len(), 1, "expected one request, got {requests:?}");
    requests.remove(0)
}

fn nothing_sent(console: &mut Console) {
    let requests = console.take_requests();
    assert!(requests.is_empty(), "expected no request, got {requests:?}");
}

// ---- update logic: keys to state and requests -------------------------------------------

#[test]
fn keys_and_clicks_switch_screens() {
    let mut console = console();
    assert_eq!(console.screen(), ScreenId::Overview);
    key(&mut console, KeyCode::Char('2'));
    assert_eq!(console.screen(), ScreenId::Accounts);
    key(&mut console, KeyCode::Tab);
    assert_eq!(console.screen(), ScreenId::Pay);
    key(&mut console, KeyCode::BackTab);
    key(&mut console, KeyCode::BackTab);
    key(&mut console, KeyCode::BackTab);
    assert_eq!(console.screen(), ScreenId::Orders, "wraps around");
    key(&mut console, KeyCode::Char('9'));
    assert_eq!(console.screen(), ScreenId::Log);
    key(&mut console, KeyCode::Char('0'));
    assert_eq!(console.screen(), ScreenId::Orders);
    render(&console, 80, 24);
    // Narrow tabs: " 1Overview 2Accounts 3Pay 4HTLCs …": "4HTLCs" starts at column 26.
    click(&mut console, 27, 0);
    assert_eq!(console.screen(), ScreenId::Htlcs);
    render(&console, 160, 48);
    // Wide tabs: " 1 Overview │ 2 Accounts │ …": column 16 is in " 2 Accounts ".
    click(&mut console, 16, 0);
    assert_eq!(console.screen(), ScreenId::Accounts);
    nothing_sent(&mut console);
}

#[test]
fn rows_follow_keys_clicks_and_the_wheel() {
    let mut console = console();
    key(&mut console, KeyCode::Char('2'));
    let first = render(&console, 80, 24);
    key(&mut console, KeyCode::Char('j'));
    key(&mut console, KeyCode::Down);
    let third = render(&console, 80, 24);
    assert_ne!(first, third);
    // Rows start below the tab bar (1), the border (1) and the header (1): row 3 is the first.
    click(&mut console, 10, 3);
    assert_eq!(render(&console, 80, 24), first);
    console.handle_event(&Event::Mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 10,
        row: 5,
        modifiers: KeyModifiers::NONE,
    }));
    assert!(render(&console, 80, 24).contains("carol · USDC"));
}

#[test]
fn opening_an_account_completes_names_and_sends_once() {
    let mut console = console();
    key(&mut console, KeyCode::Char('2'));
    key(&mut console, KeyCode::Char('o'));
    assert!(matches!(
        console.form().map(|f| &f.kind),
        Some(FormKind::OpenAccount)
    ));
    keys(&mut console, "hub");
    key(&mut console, KeyCode::Tab);
    // "hub" completes to the first match, hub-1: we have an account with it already.
    assert!(render(&console, 80, 24).contains("we already have an account with it"));
    key(&mut console, KeyCode::Enter);
    nothing_sent(&mut console);
    key(&mut console, KeyCode::Backspace);
    keys(&mut console, "2");
    key(&mut console, KeyCode::Enter);
    let (id, request) = sent(&mut console);
    assert_eq!(
        request,
        Request::OpenAccount {
            peer: hub2().to_string()
        }
    );
    // While the node has not answered, Enter sends nothing.
    key(&mut console, KeyCode::Enter);
    nothing_sent(&mut console);
    console.on_response(
        id,
        Response::Done {
            what: "account with hub-2 opened".into(),
        },
    );
    assert!(console.form().is_none());
    assert_eq!(
        console.notice().map(|n| n.text.as_str()),
        Some("done: account with hub-2 opened")
    );
}

#[test]
fn unknown_destinations_and_bad_amounts_are_refused_as_typed() {
    let mut console = console();
    key(&mut console, KeyCode::Char('3'));
    key(&mut console, KeyCode::Enter);
    keys(&mut console, "zed");
    key(&mut console, KeyCode::Tab);
    key(&mut console, KeyCode::Tab);
    keys(&mut console, "1.2345678");
    let screen = render(&console, 80, 24);
    assert!(screen.contains("no profile named 'zed'"), "{screen}");
    assert!(screen.contains("at most 6 decimals"), "{screen}");
    key(&mut console, KeyCode::Enter);
    nothing_sent(&mut console);
    for _ in 0..9 {
        key(&mut console, KeyCode::Backspace);
    }
    keys(&mut console, "126");
    assert!(render(&console, 80, 24).contains("above the largest outgoing capacity (125 USDC)"));
    console.handle_event(&Event::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    keys(&mut console, "1..2");
    assert!(render(&console, 80, 24).contains("'1..2' is not a number"));
}

#[test]
fn paying_asks_for_routes_then_pays_and_follows_the_payment() {
    let mut console = console();
    key(&mut console, KeyCode::Char('3'));
    key(&mut console, KeyCode::Char('e'));
    keys(&mut console, "dave");
    key(&mut console, KeyCode::Tab);
    key(&mut console, KeyCode::Tab);
    keys(&mut console, "12.5");
    key(&mut console, KeyCode::Enter);
    let (routes_id, request) = sent(&mut console);
    let amount = 12_500_000;
    assert_eq!(
        request,
        Request::Routes {
            destination: dave().to_string(),
            token: USDC,
            amount,
        }
    );
    let route = RouteView {
        hops: vec![hub1(), dave()],
        names: vec![Some("hub-1".into()), Some("dave".into())],
        amount,
        fee: 1_250,
        success_per_mille: 973,
    };
    console.on_response(routes_id, Response::Routes(vec![route.clone()]));
    let with_routes = render(&console, 80, 24);
    assert!(with_routes.contains("97.3% fee 0.00125"), "{with_routes}");
    keys(&mut console, "1");
    assert!(render(&console, 80, 24).contains("Routes (for an earlier form"));
    key(&mut console, KeyCode::Backspace);
    keys(&mut console, "0");
    assert!(
        !render(&console, 80, 24).contains("for an earlier form"),
        "12.50 is 12.5"
    );
    key(&mut console, KeyCode::Enter);
    let (pay_id, request) = sent(&mut console);
    assert_eq!(
        request,
        Request::Pay {
            destination: dave().to_string(),
            token: USDC,
            amount,
        }
    );
    console.on_response(
        pay_id,
        Response::PaymentStarted {
            hashlock: Hash([0xaa; 32]),
            route,
        },
    );
    // The amount is cleared: Enter now sends nothing.
    key(&mut console, KeyCode::Char('e'));
    key(&mut console, KeyCode::Enter);
    nothing_sent(&mut console);
    let followed = render(&console, 80, 24);
    assert!(
        followed.contains("pending  25 USDC to dave over 2 hops"),
        "{followed}"
    );
    assert!(followed.contains("lock #7 with hub-1"), "{followed}");
}

#[test]
fn credit_is_entered_with_the_tokens_decimals() {
    let mut console = console();
    key(&mut console, KeyCode::Char('2'));
    key(&mut console, KeyCode::Char('j'));
    key(&mut console, KeyCode::Char('c'));
    // The second row is hub-1's WETH: the form starts on WETH, at the amount.
    keys(&mut console, "0.25");
    key(&mut console, KeyCode::Enter);
    let (_, request) = sent(&mut console);
    assert_eq!(
        request,
        Request::Credit {
            peer: hub1().to_string(),
            token: WETH,
            amount: 250_000_000_000_000_000,
        }
    );
}

#[test]
fn collateral_is_confirmed_and_a_node_error_shows_in_the_form() {
    let mut console = console();
    key(&mut console, KeyCode::Char('2'));
    key(&mut console, KeyCode::Char('a'));
    keys(&mut console, "5000");
    assert!(render(&console, 80, 24).contains("above our reserve (1000 USDC)"));
    key(&mut console, KeyCode::Enter);
    assert!(console.confirming().is_none());
    for _ in 0..3 {
        key(&mut console, KeyCode::Backspace);
    }
    key(&mut console, KeyCode::Enter);
    assert!(console.confirming().is_some());
    nothing_sent(&mut console);
    key(&mut console, KeyCode::Char('n'));
    assert!(console.confirming().is_none());
    assert!(console.form().is_some(), "back in the form");
    key(&mut console, KeyCode::Enter);
    key(&mut console, KeyCode::Char('y'));
    let (id, request) = sent(&mut console);
    assert_eq!(
        request,
        Request::Collateral {
            peer: hub1().to_string(),
            token: USDC,
            amount: usdc(5),
        }
    );
    console.on_response(
        id,
        Response::Error {
            message: "the chain refused: nonce too low".into(),
        },
    );
    assert_eq!(
        console.form().and_then(|f| f.node_error.as_deref()),
        Some("the chain refused: nonce too low")
    );
    assert!(render(&console, 80, 24).contains("node: the chain refused: nonce too low"));
    // Answered: it may be sent again (after a new confirmation).
    key(&mut console, KeyCode::Enter);
    key(&mut console, KeyCode::Enter);
    let (_, again) = sent(&mut console);
    assert_eq!(again, request);
}

#[test]
fn settle_and_dispute_ask_first_and_are_never_sent_twice() {
    let mut console = console();
    key(&mut console, KeyCode::Char('2'));
    key(&mut console, KeyCode::Char('s'));
    let confirm = console.confirming().expect("a confirmation").clone();
    assert!(confirm.summary.starts_with("settle the account with hub-1"));
    nothing_sent(&mut console);
    key(&mut console, KeyCode::Char('y'));
    let (id, request) = sent(&mut console);
    assert_eq!(
        request,
        Request::Settle {
            peer: hub1().to_string()
        }
    );
    key(&mut console, KeyCode::Char('s'));
    key(&mut console, KeyCode::Enter);
    nothing_sent(&mut console);
    assert_eq!(
        console.notice().map(|n| (n.is_error, n.text.as_str())),
        Some((
            true,
            "refused: the same request is already waiting for the node's answer (settle the \
             account with hub-1 on chain (collateral and Δ are written to the chain))"
        ))
    );
    console.on_response(
        id,
        Response::ChainTx {
            tx: Hash([0xdd; 32]),
            block: 121,
            gas_used: 80_000,
        },
    );
    assert!(
        console
            .notice()
            .is_some_and(|n| !n.is_error && n.text.starts_with("mined in block 121 (0xdddd…dddd)"))
    );
    key(&mut console, KeyCode::Char('d'));
    assert!(
        console
            .confirming()
            .is_some_and(|c| c.summary.contains("our proof at height 42"))
    );
    key(&mut console, KeyCode::Esc);
    assert!(console.confirming().is_none());
    nothing_sent(&mut console);
}

#[test]
fn node_errors_show_on_the_screen_that_asked() {
    let mut console = console();
    key(&mut console, KeyCode::Char('2'));
    key(&mut console, KeyCode::Char('d'));
    key(&mut console, KeyCode::Char('y'));
    let (id, _) = sent(&mut console);
    key(&mut console, KeyCode::Char('1'));
    console.on_response(
        id,
        Response::Error {
            message: "no signed proof".into(),
        },
    );
    assert!(console.notice().is_none(), "not on the overview");
    key(&mut console, KeyCode::Char('2'));
    let notice = console.notice().expect("on the accounts screen");
    assert!(notice.is_error && notice.text.starts_with("refused: no signed proof ("));
    assert!(render(&console, 80, 24).contains("no signed proof"));
    key(&mut console, KeyCode::Esc);
    assert!(console.notice().is_none());
}

#[test]
fn netting_is_asked_on_show_and_executed_after_a_confirmation() {
    let mut console = console();
    key(&mut console, KeyCode::Char('5'));
    let (id, request) = sent(&mut console);
    assert_eq!(request, Request::Netting);
    key(&mut console, KeyCode::Char('r'));
    nothing_sent(&mut console);
    console.on_response(id, Response::Netting(netting_proposals()));
    assert!(render(&console, 80, 24).contains("owes us 140; settles 140"));
    key(&mut console, KeyCode::Char('x'));
    assert!(console.confirming().is_some());
    key(&mut console, KeyCode::Char('y'));
    let (execute_id, request) = sent(&mut console);
    assert_eq!(request, Request::NettingExecute { id: 17 });
    console.on_response(
        execute_id,
        Response::Done {
            what: "netting 17 executed".into(),
        },
    );
    assert_eq!(sent(&mut console).1, Request::Netting, "asked again");
    key(&mut console, KeyCode::Char('j'));
    key(&mut console, KeyCode::Char('d'));
    assert_eq!(sent(&mut console).1, Request::NettingDismiss { id: 18 });
}

#[test]
fn reserve_forms_check_the_wallet_and_addresses() {
    let mut console = console();
    key(&mut console, KeyCode::Char('6'));
    key(&mut console, KeyCode::Char('d'));
    keys(&mut console, "300");
    assert!(render(&console, 80, 24).contains("above the wallet's balance (250 USDC)"));
    key(&mut console, KeyCode::Esc);
    key(&mut console, KeyCode::Char('w'));
    keys(&mut console, "10");
    key(&mut console, KeyCode::Tab);
    keys(&mut console, "0x1234");
    assert!(render(&console, 80, 24).contains("not an address"));
    key(&mut console, KeyCode::Enter);
    assert!(console.confirming().is_none());
    for _ in 0..6 {
        key(&mut console, KeyCode::Backspace);
    }
    key(&mut console, KeyCode::Enter);
    key(&mut console, KeyCode::Char('y'));
    assert_eq!(
        sent(&mut console).1,
        Request::Withdraw {
            token: USDC,
            amount: usdc(10),
            to: None
        }
    );
}

#[test]
fn log_filters_by_level_and_text() {
    let mut console = console();
    key(&mut console, KeyCode::Char('9'));
    assert!(render(&console, 80, 24).contains("Log (6 of 6 lines)"));
    key(&mut console, KeyCode::Char('l'));
    assert!(render(&console, 80, 24).contains("Log (4 of 6 lines)"));
    key(&mut console, KeyCode::Char('/'));
    keys(&mut console, "hub-1 q");
    assert_eq!(console.screen(), ScreenId::Log, "typed, not a key");
    assert!(!console.should_quit());
    key(&mut console, KeyCode::Backspace);
    key(&mut console, KeyCode::Backspace);
    key(&mut console, KeyCode::Enter);
    assert!(render(&console, 80, 24).contains("Log (1 of 6 lines)"));
    key(&mut console, KeyCode::Char('x'));
    assert!(render(&console, 80, 24).contains("Log (6 of 6 lines)"));
}

#[test]
fn network_blocks_peers_and_opens_accounts_with_profiles() {
    let mut console = console();
    key(&mut console, KeyCode::Char('7'));
    key(&mut console, KeyCode::Char('h'));
    key(&mut console, KeyCode::Char('j'));
    key(&mut console, KeyCode::Char('o'));
    key(&mut console, KeyCode::Enter);
    assert_eq!(
        sent(&mut console).1,
        Request::OpenAccount {
            peer: hub2().to_string()
        }
    );
    key(&mut console, KeyCode::Esc);
    key(&mut console, KeyCode::Right);
    key(&mut console, KeyCode::Char('G'));
    key(&mut console, KeyCode::Char('b'));
    assert_eq!(
        sent(&mut console).1,
        Request::BlockPeer {
            signer: Address([0xb3; 20]),
            blocked: false
        }
    );
}

#[test]
fn an_order_is_checked_as_typed_and_sent_once_valid() {
    let mut console = console();
    key(&mut console, KeyCode::Char('0'));
    key(&mut console, KeyCode::Char('n'));
    assert!(matches!(
        console.form().map(|f| &f.kind),
        Some(FormKind::PlaceOrder)
    ));
    // The selected order's peer is filled in: on to the give token (USDC), then its amount.
    key(&mut console, KeyCode::Tab);
    key(&mut console, KeyCode::Tab);
    keys(&mut console, "0");
    assert!(render(&console, 80, 24).contains("must be more than 0"));
    key(&mut console, KeyCode::Backspace);
    // Beyond what the account can give (125 USDC out with hub-1).
    keys(&mut console, "126");
    assert!(render(&console, 80, 24).contains("above the account's outgoing capacity (125 USDC)"));
    key(&mut console, KeyCode::Enter);
    nothing_sent(&mut console);
    console.handle_event(&Event::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    keys(&mut console, "100");
    // The want token starts on WETH; USDC for itself is refused.
    key(&mut console, KeyCode::Tab);
    key(&mut console, KeyCode::Left);
    assert!(render(&console, 80, 24).contains("give one token for another"));
    key(&mut console, KeyCode::Right);
    key(&mut console, KeyCode::Tab);
    // 2e38 units: fits u128, not the account's signed deltas.
    keys(&mut console, "200000000000000000000");
    assert!(
        render(&console, 80, 24).contains("too large"),
        "beyond i128"
    );
    console.handle_event(&Event::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    keys(&mut console, "0.04");
    // Immediate-or-cancel.
    key(&mut console, KeyCode::Tab);
    key(&mut console, KeyCode::Right);
    key(&mut console, KeyCode::Enter);
    let (id, request) = sent(&mut console);
    assert_eq!(
        request,
        Request::PlaceOrder {
            peer: hub1().to_string(),
            give_token: USDC,
            give_amount: usdc(100),
            want_token: WETH,
            want_amount: 40_000_000_000_000_000,
            time_in_force: TimeInForce::ImmediateOrCancel,
            expires_in_secs: None,
        }
    );
    key(&mut console, KeyCode::Enter);
    nothing_sent(&mut console);
    console.on_response(
        id,
        Response::Error {
            message: "account with hub-1: token 2 is not in this account".into(),
        },
    );
    assert!(render(&console, 80, 24).contains("node: account with hub-1: token 2 is not"));
}

#[test]
fn a_token_the_account_does_not_hold_is_refused_in_the_order_form() {
    let mut console = console();
    key(&mut console, KeyCode::Char('0'));
    key(&mut console, KeyCode::Char('n'));
    // bob's account holds USDC only.
    console.handle_event(&Event::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    keys(&mut console, "bob");
    key(&mut console, KeyCode::Tab);
    key(&mut console, KeyCode::Right);
    assert!(render(&console, 80, 24).contains("not in the account with bob"));
    key(&mut console, KeyCode::Enter);
    nothing_sent(&mut console);
    // An entity we have no account with.
    key(&mut console, KeyCode::Up);
    console.handle_event(&Event::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    keys(&mut console, "dave");
    assert!(render(&console, 80, 24).contains("no account with it"));
    key(&mut console, KeyCode::Esc);
    assert!(console.form().is_none());
    nothing_sent(&mut console);
}

#[test]
fn cancelling_an_order_asks_first_and_finished_ones_are_not_sent() {
    let mut console = console();
    key(&mut console, KeyCode::Char('0'));
    key(&mut console, KeyCode::Char('x'));
    let confirm = console.confirming().expect("a confirmation").clone();
    assert_eq!(
        confirm.summary,
        "cancel order 6 with hub-1: 75 USDC not yet filled is released"
    );
    nothing_sent(&mut console);
    key(&mut console, KeyCode::Char('y'));
    let (id, request) = sent(&mut console);
    assert_eq!(
        request,
        Request::CancelOrder {
            peer: hub1().to_string(),
            offer_id: 6
        }
    );
    console.on_response(
        id,
        Response::Done {
            what: "cancel of order 6 sent".into(),
        },
    );
    assert_eq!(
        console.notice().map(|n| n.text.as_str()),
        Some("done: cancel of order 6 sent")
    );
    // The second order is filled: nothing to cancel, nothing sent.
    key(&mut console, KeyCode::Char('j'));
    key(&mut console, KeyCode::Char('x'));
    assert!(console.confirming().is_none());
    nothing_sent(&mut console);
    assert_eq!(
        console.notice().map(|n| (n.is_error, n.text.as_str())),
        Some((true, "order 4 is filled: nothing left to cancel"))
    );
    // Fills arrive with the next view.
    let mut filled = sample_view();
    filled.orders[0].filled = usdc(100);
    filled.orders[0].state = OrderState::Filled;
    console.set_view(Arc::new(filled));
    key(&mut console, KeyCode::Char('k'));
    assert!(render(&console, 80, 24).contains("100 of 100 USDC given"));
}

#[test]
fn help_lists_the_keys_of_the_screen() {
    let mut console = console();
    key(&mut console, KeyCode::Char('2'));
    key(&mut console, KeyCode::Char('?'));
    let help = render(&console, 80, 24);
    for text in [
        "settle the account on chain",
        "select the row below",
        "quit the console",
    ] {
        assert!(help.contains(text), "{text} missing in\n{help}");
    }
    key(&mut console, KeyCode::Char('s'));
    assert!(
        console.confirming().is_none(),
        "keys do not reach the screen under help"
    );
    key(&mut console, KeyCode::Esc);
    key(&mut console, KeyCode::Char('q'));
    assert!(console.should_quit());
}

#[test]
fn user_keys_and_themes_come_from_the_config_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("keys.toml"), "[accounts]\nsettle = \"S\"\n").expect("write");
    let options = ConsoleOptions {
        theme: "light".into(),
        config_dir: Some(dir.path().to_path_buf()),
        first_run_hint: None,
    };
    let mut console = Console::new(&options, Arc::new(sample_view())).expect("console");
    key(&mut console, KeyCode::Char('2'));
    key(&mut console, KeyCode::Char('s'));
    assert!(console.confirming().is_none());
    console.handle_event(&Event::Key(KeyEvent::new(
        KeyCode::Char('S'),
        KeyModifiers::SHIFT,
    )));
    assert!(console.confirming().is_some());

    std::fs::write(
        dir.path().join("keys.toml"),
        "[accounts]\nsettle = \"ctrl-\"\n",
    )
    .expect("write");
    let error = Console::new(&options, Arc::new(sample_view()))
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("[accounts] settle: 'ctrl-'"),
        "{error}"
    );
    let missing = ConsoleOptions {
        theme: "neon".into(),
        ..ConsoleOptions::default()
    };
    let error = Console::new(&missing, Arc::new(sample_view()))
        .err()
        .expect("refused");
    assert!(error.to_string().contains("no theme named 'neon'"));
}

#[test]
fn a_new_view_keeps_the_selection_in_range() {
    let mut console = console();
    key(&mut console, KeyCode::Char('2'));
    key(&mut console, KeyCode::Char('G'));
    let mut smaller = sample_view();
    smaller.accounts.truncate(1);
    console.set_view(Arc::new(smaller));
    let screen = render(&console, 80, 24);
    assert!(screen.contains("hub-1 · WETH"), "{screen}");
    console.node_stopped();
    assert!(render(&console, 80, 24).contains("the node stopped"));
}

// ---- snapshots: every screen at 80×24, the busy ones at 160×48 too -----------------------

fn snapshot_of(screen: ScreenId, width: u16, height: u16) -> String {
    let mut console = console();
    console.show(screen);
    render(&console, width, height)
}

#[test]
fn snapshot_overview() {
    insta::assert_snapshot!("overview_80x24", snapshot_of(ScreenId::Overview, 80, 24));
    insta::assert_snapshot!("overview_160x48", snapshot_of(ScreenId::Overview, 160, 48));
    let options = ConsoleOptions {
        first_run_hint: Some(
            "No accounts yet: press 2 then o to open one with a hub, or 6 then d to deposit."
                .into(),
        ),
        ..ConsoleOptions::default()
    };
    let console = Console::new(&options, Arc::new(NodeView::default())).expect("console");
    insta::assert_snapshot!("overview_first_run_80x24", render(&console, 80, 24));
}

#[test]
fn snapshot_accounts() {
    insta::assert_snapshot!("accounts_80x24", snapshot_of(ScreenId::Accounts, 80, 24));
    insta::assert_snapshot!("accounts_160x48", snapshot_of(ScreenId::Accounts, 160, 48));
}

#[test]
fn snapshot_pay() {
    let mut console = console();
    key(&mut console, KeyCode::Char('3'));
    insta::assert_snapshot!("pay_80x24", render(&console, 80, 24));
    key(&mut console, KeyCode::Enter);
    keys(&mut console, "d");
    insta::assert_snapshot!("pay_completing_80x24", render(&console, 80, 24));
    keys(&mut console, "ave");
    key(&mut console, KeyCode::Tab);
    key(&mut console, KeyCode::Tab);
    keys(&mut console, "12.5");
    key(&mut console, KeyCode::Enter);
    let (id, _) = sent(&mut console);
    insta::assert_snapshot!("pay_waiting_for_routes_80x24", render(&console, 80, 24));
    console.on_response(
        id,
        Response::Routes(vec![
            RouteView {
                hops: vec![hub1(), dave()],
                names: vec![Some("hub-1".into()), Some("dave".into())],
                amount: 12_500_000,
                fee: 1_250,
                success_per_mille: 973,
            },
            RouteView {
                hops: vec![hub2(), hub1(), dave()],
                names: vec![Some("hub-2".into()), None, Some("dave".into())],
                amount: 12_500_000,
                fee: 2_500,
                success_per_mille: 610,
            },
        ]),
    );
    insta::assert_snapshot!("pay_routes_160x48", render(&console, 160, 48));
}

#[test]
fn snapshot_htlcs() {
    insta::assert_snapshot!("htlcs_80x24", snapshot_of(ScreenId::Htlcs, 80, 24));
}

#[test]
fn snapshot_netting() {
    let mut console = console();
    key(&mut console, KeyCode::Char('5'));
    let (id, _) = sent(&mut console);
    insta::assert_snapshot!("netting_asking_80x24", render(&console, 80, 24));
    console.on_response(id, Response::Netting(netting_proposals()));
    insta::assert_snapshot!("netting_80x24", render(&console, 80, 24));
}

#[test]
fn snapshot_reserves() {
    insta::assert_snapshot!("reserves_80x24", snapshot_of(ScreenId::Reserves, 80, 24));
}

#[test]
fn snapshot_network() {
    insta::assert_snapshot!("network_80x24", snapshot_of(ScreenId::Network, 80, 24));
    insta::assert_snapshot!("network_160x48", snapshot_of(ScreenId::Network, 160, 48));
}

#[test]
fn snapshot_forwards() {
    insta::assert_snapshot!("forwards_80x24", snapshot_of(ScreenId::Forwards, 80, 24));
}

#[test]
fn snapshot_orders() {
    insta::assert_snapshot!("orders_80x24", snapshot_of(ScreenId::Orders, 80, 24));
    let mut hub_view = sample_view();
    hub_view.book = vec![BookOrderView {
        owner: bob(),
        owner_name: Some("bob".into()),
        offer_id: 3,
        give_token: WETH,
        give_amount: 1_000_000_000_000_000_000,
        want_token: USDC,
        want_amount: usdc(2500),
        remaining: 400_000_000_000_000_000,
        time_in_force: TimeInForce::GoodTillCancel,
        expires_at_ms: None,
    }];
    let mut console =
        Console::new(&ConsoleOptions::default(), Arc::new(hub_view)).expect("console");
    console.show(ScreenId::Orders);
    insta::assert_snapshot!("orders_with_book_160x48", render(&console, 160, 48));
    key(&mut console, KeyCode::Char('n'));
    insta::assert_snapshot!("form_order_80x24", render(&console, 80, 24));
}

#[test]
fn snapshot_log() {
    insta::assert_snapshot!("log_80x24", snapshot_of(ScreenId::Log, 80, 24));
}

#[test]
fn snapshot_overlays() {
    let mut console = console();
    key(&mut console, KeyCode::Char('2'));
    key(&mut console, KeyCode::Char('?'));
    insta::assert_snapshot!("help_accounts_80x24", render(&console, 80, 24));
    key(&mut console, KeyCode::Esc);
    key(&mut console, KeyCode::Char('a'));
    keys(&mut console, "5000");
    insta::assert_snapshot!("form_collateral_80x24", render(&console, 80, 24));
    for _ in 0..3 {
        key(&mut console, KeyCode::Backspace);
    }
    key(&mut console, KeyCode::Enter);
    insta::assert_snapshot!("confirm_collateral_80x24", render(&console, 80, 24));
}

/// The real loop on a real terminal: raw mode, events, requests answered by a fake node,
/// views published every 10 ms, `q` quits and the terminal comes back. It needs a terminal,
/// so it is ignored; run it under script(1) with keys piped in, e.g.
/// `(sleep 2; printf 5; sleep 1; printf q) | script -qec "<test binary> smoke --ignored" /dev/null`.
#[test]
#[ignore = "needs a terminal"]
fn smoke_the_loop_on_a_terminal() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (publish, views) = tokio::sync::watch::channel(Arc::new(sample_view()));
        let (requests, mut incoming) = tokio::sync::mpsc::channel::<PendingRequest>(16);
        tokio::spawn(async move {
            while let Some((request, reply)) = incoming.recv().await {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                let _ = reply.send(match request {
                    Request::Netting => Response::Netting(NettingView::default()),
                    _ => Response::Done { what: "ok".into() },
                });
            }
        });
        tokio::spawn(async move {
            for height in 0.. {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                let mut view = sample_view();
                view.status.height = height;
                if publish.send(Arc::new(view)).is_err() {
                    break;
                }
            }
        });
        super::run(NodeLink { views, requests }, ConsoleOptions::default())
            .await
            .expect("the console ran and quit");
    });
}

/// Two proposals as the node words them: token 17 with two accounts, token 18 with one whose
/// debtor's reserve is short.
fn netting_proposals() -> NettingView {
    use xln_core::netting::NettingFigures;
    let account = |byte: u8, uncollateralised: i128, settles: u128| NettingAccount {
        peer: EntityId([byte; 32]),
        uncollateralised,
        settles,
        left_out: (settles < uncollateralised.unsigned_abs())
            .then(|| format!("the debtor's reserve covers {settles}")),
    };
    let plan = |token: u32, accounts: Vec<NettingAccount>| {
        let exposure: u128 = accounts
            .iter()
            .map(|a| a.uncollateralised.unsigned_abs())
            .sum();
        let settled: u128 = accounts.iter().map(|a| a.settles).sum();
        NettingPlan {
            token,
            before: NettingFigures {
                settlements: accounts.len() as u64,
                gross_on_chain: exposure,
                exposure,
            },
            after: NettingFigures {
                settlements: 1,
                gross_on_chain: settled,
                exposure: exposure - settled,
            },
            reserve_movement: accounts
                .iter()
                .map(|a| a.uncollateralised.signum() * a.settles as i128)
                .sum(),
            status: "ready".into(),
            accounts,
            cycles: Vec::new(),
        }
    };
    let plans = vec![
        plan(17, vec![account(0x11, 140, 140), account(0x22, -100, 100)]),
        plan(18, vec![account(0x33, 5, 2)]),
    ];
    NettingView {
        proposals: plans.iter().map(crate::node::netting::describe).collect(),
        ids: vec![17, 18],
        plans,
        dismissed: 0,
    }
}
