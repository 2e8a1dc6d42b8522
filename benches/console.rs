//! Drawing the Accounts screen of a hub with 10,000 accounts into a 160×48 `TestBackend`: one
//! iteration is one frame (the selection moves a page each time, so every frame differs).
//! Target: under 2 ms a frame. Building the view and the console is not timed.

use criterion::{Criterion, criterion_group, criterion_main};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::sync::Arc;
use xln::api::{
    AccountStatus, AccountTokenView, AccountView, FrameSummary, NodeView, ProfileView, TokenInfo,
};
use xln::tui::{Console, ConsoleOptions, ScreenId};
use xln_core::board::EntityId;
use xln_core::crypto::Hash;

const ACCOUNTS: usize = 10_000;
const USDC: u32 = 1;

fn entity(index: usize) -> EntityId {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&(index as u64 + 1).to_be_bytes());
    EntityId(bytes)
}

fn hub_view() -> NodeView {
    let accounts = (0..ACCOUNTS)
        .map(|index| {
            let unit = 1_000_000u128;
            let collateral = (index as u128 % 50) * 10 * unit;
            let delta = (index as i128 % 200 - 100) * unit as i128;
            AccountView {
                peer: entity(index),
                peer_name: Some(format!("wallet-{index}")),
                we_are_left: index.is_multiple_of(2),
                height: index as u64,
                state_hash: Hash::ZERO,
                status: if index.is_multiple_of(17) {
                    AccountStatus::FramePending
                } else {
                    AccountStatus::Synced
                },
                proof_height: Some(index as u64),
                queued: 0,
                tokens: vec![AccountTokenView {
                    token: USDC,
                    collateral,
                    ondelta: 0,
                    offdelta: delta,
                    delta,
                    position: delta,
                    own_credit: 100 * unit,
                    peer_credit: 50 * unit,
                    out_capacity: 75 * unit,
                    in_capacity: 125 * unit,
                    our_hold: 0,
                    peer_hold: 0,
                }],
                frames: (0..3)
                    .map(|height| FrameSummary {
                        height,
                        timestamp: 1_700_000_000_000 - height * 1_000,
                        txs: 1,
                        hash: Hash([height as u8; 32]),
                    })
                    .collect(),
            }
        })
        .collect();
    let profiles = (0..ACCOUNTS)
        .map(|index| ProfileView {
            entity: entity(index),
            name: format!("wallet-{index}"),
            endpoint: String::new(),
            is_hub: false,
            accounts: 1,
            fee_base: 0,
            fee_ppm: 0,
        })
        .collect();
    let mut view = NodeView {
        accounts,
        profiles,
        tokens: vec![TokenInfo {
            id: USDC,
            symbol: "USDC".into(),
            decimals: 6,
        }],
        ..NodeView::default()
    };
    view.status.name = "hub".into();
    view.status.timestamp = 1_700_000_000_000;
    view
}

fn accounts_frame(c: &mut Criterion) {
    let mut console =
        Console::new(&ConsoleOptions::default(), Arc::new(hub_view())).expect("a console");
    console.show(ScreenId::Accounts);
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).expect("a test terminal");
    let page = |code| Event::Key(KeyEvent::new(code, KeyModifiers::NONE));
    let mut frame = 0u64;
    c.bench_function("accounts_10k_160x48_frame", |b| {
        b.iter(|| {
            frame += 1;
            let code = if frame.is_multiple_of(2) {
                KeyCode::PageUp
            } else {
                KeyCode::PageDown
            };
            console.handle_event(&page(code));
            terminal
                .draw(|f| console.draw(f))
                .expect("drawing into a test backend");
        })
    });
}

criterion_group!(benches, accounts_frame);
criterion_main!(benches);
