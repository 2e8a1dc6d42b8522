//! A hub with many accounts: its heap, its snapshot, the cost of its state hashes and of one
//! frame (`cargo bench -p xln-core --bench hub_scale`; `-- small` or `-- large` for one part,
//! `XLN_HUB_ACCOUNTS` is not read: the core reads no environment, pass `-- large=N` instead).
//!
//! - large: wallets, in runtimes of 1,000 each, open an account with the hub and extend credit
//!   (100,000 accounts by default). Then the hub's runtime state is encoded (the snapshot),
//!   dropped, decoded again, and the heap it takes is counted by a counting allocator. Then the
//!   entity hash and the runtime hash are timed: cold (the first after decoding), warm
//!   (nothing changed since), and after one account changed; then one frame of the hub.
//! - small: a wallet pays a hub 1,000 times, one payment per entity frame, and the hub has only
//!   a few accounts: the time per payment, to check that small hubs do not pay for the above.

// A benchmark reads the clock; the core itself never does.
#![allow(clippy::disallowed_methods)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use xln_core::account::AccountTx;
use xln_core::board::{Board, EntityId};
use xln_core::crypto::{Hash, SignerKey};
use xln_core::entity::EntityTx;
use xln_core::runtime::{Command, Envelope, Runtime, RuntimeInput, RuntimeState};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const TOKEN: u32 = 1;
const HUB_ACCOUNTS: usize = 100_000;
const WALLETS_PER_RUNTIME: usize = 1_000;
const NOW: u64 = 1_000_000;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn credit(peer: EntityId, amount: u128) -> EntityTx {
    EntityTx::Account {
        peer,
        tx: AccountTx::SetCreditLimit {
            token: TOKEN,
            amount,
        },
    }
}

fn key(n: u64) -> SignerKey {
    let mut secret = [0u8; 32];
    secret[24..].copy_from_slice(&n.to_be_bytes());
    SignerKey::from_bytes(&secret).unwrap()
}

fn input(commands: Vec<Command>, messages: Vec<Envelope>, timestamp: u64) -> RuntimeInput {
    RuntimeInput {
        timestamp,
        commands,
        messages,
        ..RuntimeInput::default()
    }
}

/// A runtime hosting `key`'s lazy entity.
fn hosting(key: &SignerKey) -> (Runtime, Board, EntityId) {
    let board = Board::single(key.address());
    let id = board.lazy_entity_id();
    let mut runtime = Runtime::new([key.clone()]);
    runtime.apply(input(
        vec![Command::AddReplica {
            board: board.clone(),
            signer: key.address(),
            domain: Hash::ZERO,
        }],
        Vec::new(),
        NOW,
    ));
    (runtime, board, id)
}

/// Delivers between two runtimes until quiet.
fn exchange(a: &mut Runtime, b: &mut Runtime, mut to_b: Vec<Envelope>, now: u64) {
    while !to_b.is_empty() {
        let to_a = b.apply(input(Vec::new(), to_b, now)).messages;
        if to_a.is_empty() {
            return;
        }
        to_b = a.apply(input(Vec::new(), to_a, now)).messages;
    }
}

fn large(accounts: usize) {
    let hub_key = key(1);
    let (mut hub, hub_board, hub_id) = hosting(&hub_key);
    let started = Instant::now();
    let mut first_wallet = None;
    for chunk in 0..accounts.div_ceil(WALLETS_PER_RUNTIME) {
        let count = WALLETS_PER_RUNTIME.min(accounts - chunk * WALLETS_PER_RUNTIME);
        let keys: Vec<SignerKey> = (0..count)
            .map(|i| key((chunk * WALLETS_PER_RUNTIME + i + 2) as u64))
            .collect();
        let mut wallets = Runtime::new(keys.clone());
        let mut commands = Vec::new();
        for key in &keys {
            let board = Board::single(key.address());
            first_wallet.get_or_insert(board.lazy_entity_id());
            commands.push(Command::AddReplica {
                board: board.clone(),
                signer: key.address(),
                domain: Hash::ZERO,
            });
            commands.push(Command::Submit {
                entity: board.lazy_entity_id(),
                txs: vec![
                    EntityTx::OpenAccount {
                        peer: hub_id,
                        peer_board: hub_board.clone(),
                    },
                    credit(hub_id, u64::MAX as u128),
                ],
            });
        }
        let to_hub = wallets.apply(input(commands, Vec::new(), NOW)).messages;
        exchange(&mut wallets, &mut hub, to_hub, NOW);
    }
    let built = started.elapsed();
    let count = hub.replica_of(&hub_id).unwrap().state().accounts.len();
    assert_eq!(count, accounts);

    let bytes = xln_core::codec::encode(hub.state());
    drop(hub);
    let before = ALLOCATED.load(Ordering::Relaxed);
    let state: RuntimeState = xln_core::codec::decode("state", &bytes).unwrap();
    let mut hub = Runtime::from_state([hub_key], state);
    let heap = ALLOCATED.load(Ordering::Relaxed) - before;
    println!(
        "large: hub with {count} accounts (built in {:.1} s): heap {:.1} MiB, snapshot {:.1} MiB",
        built.as_secs_f64(),
        mib(heap),
        mib(bytes.len()),
    );

    let time = |f: &dyn Fn() -> Hash| {
        let started = Instant::now();
        black_box(f());
        started.elapsed()
    };
    // Cold: the first hash after decoding, of the runtime here and of the entity alone in a
    // second copy (the runtime hash takes the entity hash, and would find it cached).
    let runtime_cold = time(&|| hub.state().hash());
    let runtime_warm = time(&|| hub.state().hash());
    let heap_hashed = ALLOCATED.load(Ordering::Relaxed) - before;
    let copy: RuntimeState = xln_core::codec::decode("state", &bytes).unwrap();
    let copy_entity = copy.replicas.values().next().unwrap().state();
    let entity_cold = time(&|| copy_entity.hash());
    drop(copy);
    let entity = || hub.replica_of(&hub_id).unwrap().state();
    let entity_warm = time(&|| entity().hash());
    // One account changes (a transaction queued on it), in a copy of the entity state.
    let mut changed = entity().clone();
    let wallet = first_wallet.unwrap();
    let started = Instant::now();
    changed
        .apply_tx(&credit(wallet, 5), &mut Default::default())
        .unwrap();
    black_box(changed.hash());
    let entity_one = started.elapsed();
    println!(
        "large: entity hash cold {:.1} ms, warm {:.3} ms, after one account changed {:.3} ms; \
         runtime hash cold {:.1} ms, warm {:.3} ms; heap with hashes cached {:.1} MiB",
        ms(entity_cold),
        ms(entity_warm),
        ms(entity_one),
        ms(runtime_cold),
        ms(runtime_warm),
        mib(heap_hashed),
    );

    // One frame of the hub: it lowers the credit it extends to one wallet.
    let frames = 10;
    let started = Instant::now();
    for n in 0..frames {
        let out = hub.apply(input(
            vec![Command::Submit {
                entity: hub_id,
                txs: vec![credit(wallet, 1_000 + n)],
            }],
            Vec::new(),
            NOW + 1 + n as u64,
        ));
        black_box(out);
        black_box(hub.state().hash());
    }
    println!(
        "large: one hub frame (one account changes, with the runtime hash the node records) \
         {:.1} ms",
        ms(started.elapsed()) / frames as f64
    );
}

fn small() {
    let hub_key = key(1);
    let wallet_key = key(2);
    let (mut hub, hub_board, hub_id) = hosting(&hub_key);
    let (mut wallet, _, wallet_id) = hosting(&wallet_key);
    let open = vec![
        EntityTx::OpenAccount {
            peer: hub_id,
            peer_board: hub_board,
        },
        credit(hub_id, u64::MAX as u128),
    ];
    let out = wallet.apply(input(
        vec![Command::Submit {
            entity: wallet_id,
            txs: open,
        }],
        Vec::new(),
        NOW,
    ));
    exchange(&mut wallet, &mut hub, out.messages, NOW);
    let out = hub.apply(input(
        vec![Command::Submit {
            entity: hub_id,
            txs: vec![credit(wallet_id, u64::MAX as u128)],
        }],
        Vec::new(),
        NOW,
    ));
    exchange(&mut hub, &mut wallet, out.messages, NOW);
    let payments = 1_000u64;
    let started = Instant::now();
    for n in 0..payments {
        let now = NOW + 1 + n;
        let pay = EntityTx::Account {
            peer: hub_id,
            tx: AccountTx::DirectPayment {
                token: TOKEN,
                amount: 1,
            },
        };
        let out = wallet.apply(input(
            vec![Command::Submit {
                entity: wallet_id,
                txs: vec![pay],
            }],
            Vec::new(),
            now,
        ));
        black_box(wallet.state().hash());
        exchange(&mut wallet, &mut hub, out.messages, now);
        black_box(hub.state().hash());
    }
    let elapsed = started.elapsed();
    let account = &hub.replica_of(&hub_id).unwrap().state().accounts[&wallet_id].account;
    assert!(account.height() >= payments);
    println!(
        "small: a wallet pays a hub {payments} times, one payment per frame (3 entity frames, \
         2 account frames, 2 runtime hashes each): {:.1} µs per payment",
        elapsed.as_secs_f64() * 1e6 / payments as f64
    );
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = which.is_empty();
    if all || which.iter().any(|w| w == "small") {
        small();
    }
    for w in &which {
        if let Some(n) = w.strip_prefix("large=") {
            large(n.parse().expect("large=N"));
        }
    }
    if all || which.iter().any(|w| w == "large") {
        large(HUB_ACCOUNTS);
    }
}
