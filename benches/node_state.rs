//! Figures of the node's persistence and memory, in process (run with
//! `cargo bench --bench node_state`; `-- startup` or `-- memory` for one of them):
//!
//! - start-up after 1,000,000 payments: a hub's runtime routes a million two-hop payments
//!   (wallet A → hub → wallet B, real signatures and onions), its inputs written to a redb
//!   store the way the node writes them (a batch per turn, a snapshot every 10,000 inputs);
//!   then the time to open the store and recover (latest snapshot + replay of the tail, with
//!   the recorded state hash checked) is measured.
//! - memory of a hub with 100,000 accounts: the heap the hub's runtime state takes once
//!   loaded, counted by a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use xln::store::Store;
use xln_core::account::AccountTx;
use xln_core::board::{Board, EntityId};
use xln_core::crypto::{Hash, SignerKey};
use xln_core::entity::{EntityTx, PaymentOrder, RouteHop};
use xln_core::onion::Preimage;
use xln_core::routing::FeePolicy;
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
const PAYMENTS: u64 = 1_000_000;
const BATCH: u64 = 1_000;
const SNAPSHOT_EVERY: u64 = 10_000;
/// The node's default: a snapshot after this many bytes of log too.
const SNAPSHOT_EVERY_BYTES: u64 = 16 * 1024 * 1024;
const HUB_ACCOUNTS: usize = 100_000;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn credit(peer: EntityId) -> EntityTx {
    EntityTx::Account {
        peer,
        tx: AccountTx::SetCreditLimit {
            token: TOKEN,
            amount: u64::MAX as u128,
        },
    }
}

/// Three runtimes (A, hub, B); the hub's inputs go to a store as the node writes them.
struct Line {
    keys: Vec<SignerKey>,
    boards: Vec<Board>,
    ids: Vec<EntityId>,
    runtimes: Vec<Runtime>,
    store: Store,
    seq: u64,
    last_snapshot: u64,
    logged: u64,
    now: u64,
}

impl Line {
    fn new(store: Store) -> Self {
        let keys: Vec<SignerKey> = (1..=3u8)
            .map(|n| SignerKey::from_bytes(&[n; 32]).unwrap())
            .collect();
        let boards: Vec<Board> = keys.iter().map(|k| Board::single(k.address())).collect();
        let ids = boards.iter().map(|b| b.lazy_entity_id()).collect();
        let runtimes = keys.iter().map(|k| Runtime::new([k.clone()])).collect();
        let mut line = Line {
            keys,
            boards,
            ids,
            runtimes,
            store,
            seq: 0,
            last_snapshot: 0,
            logged: 0,
            now: 1_000_000,
        };
        for i in 0..3 {
            let add = Command::AddReplica {
                board: line.boards[i].clone(),
                signer: line.keys[i].address(),
                domain: Hash::ZERO,
            };
            line.input(i, vec![add]);
        }
        for (a, b) in [(0, 1), (1, 2)] {
            let open = EntityTx::OpenAccount {
                peer: line.ids[b],
                peer_board: line.boards[b].clone(),
            };
            let credit_b = credit(line.ids[b]);
            let credit_a = credit(line.ids[a]);
            line.submit(a, vec![open, credit_b]);
            line.submit(b, vec![credit_a]);
        }
        line
    }

    fn submit(&mut self, at: usize, txs: Vec<EntityTx>) {
        let entity = self.ids[at];
        self.input(at, vec![Command::Submit { entity, txs }]);
    }

    /// Applies at `at` and delivers until quiet; every hub input is logged.
    fn input(&mut self, at: usize, commands: Vec<Command>) {
        self.now += 1;
        let mut queue = self.apply(
            at,
            RuntimeInput {
                timestamp: self.now,
                commands,
                ..RuntimeInput::default()
            },
        );
        while !queue.is_empty() {
            let mut next = Vec::new();
            for i in 0..3 {
                let inbox: Vec<Envelope> = queue
                    .iter()
                    .filter(|m| m.to.entity == self.ids[i])
                    .cloned()
                    .collect();
                if !inbox.is_empty() {
                    next.extend(self.apply(
                        i,
                        RuntimeInput {
                            timestamp: self.now,
                            messages: inbox,
                            ..RuntimeInput::default()
                        },
                    ));
                }
            }
            queue = next;
        }
    }

    fn apply(&mut self, at: usize, input: RuntimeInput) -> Vec<Envelope> {
        let logged = (at == 1).then(|| input.clone());
        let out = self.runtimes[at].apply(input);
        if let Some(input) = logged {
            self.seq += 1;
            let hash = self.runtimes[1].state().hash();
            self.logged += self
                .store
                .append_batch(&[(self.seq, &input, hash)])
                .unwrap();
            if self.seq - self.last_snapshot >= SNAPSHOT_EVERY
                || self.logged >= SNAPSHOT_EVERY_BYTES
            {
                self.logged = 0;
                self.store
                    .snapshot(self.seq, self.runtimes[1].state())
                    .unwrap();
                self.last_snapshot = self.seq;
            }
        }
        out.messages
    }
}

fn startup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.redb");
    let mut line = Line::new(Store::open(&path).unwrap());
    let route = vec![
        RouteHop {
            entity: line.ids[1],
            key: line.keys[1].public_key(),
            fee: FeePolicy::default(),
        },
        RouteHop {
            entity: line.ids[2],
            key: line.keys[2].public_key(),
            fee: FeePolicy::default(),
        },
    ];
    let started = Instant::now();
    let mut counter: u64 = 0;
    while counter < PAYMENTS {
        let orders: Vec<EntityTx> = (0..BATCH)
            .map(|_| {
                counter += 1;
                let mut secret = [0u8; 32];
                secret[..8].copy_from_slice(&counter.to_be_bytes());
                EntityTx::Pay(Box::new(PaymentOrder {
                    token: TOKEN,
                    amount: 1,
                    route: route.clone(),
                    preimage: Preimage(secret),
                    seed: [7; 32],
                }))
            })
            .collect();
        line.submit(0, orders);
    }
    let built = started.elapsed();
    let hub_hash = line.runtimes[1].state().hash();
    let inputs = line.seq;
    let last_snapshot = line.last_snapshot;
    let key = line.keys[1].clone();
    drop(line);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);

    let started = Instant::now();
    let store = Store::open(&path).unwrap();
    let (runtime, seq, warnings) = xln::node::recover(&store, &key).unwrap();
    let recovered = started.elapsed();
    assert_eq!(runtime.state().hash(), hub_hash, "recovered the same state");
    assert_eq!(seq, inputs);
    assert!(warnings.is_empty(), "{warnings:?}");
    println!(
        "startup: {PAYMENTS} payments routed through the hub in {:.1} s ({} hub inputs, \
         snapshot every {SNAPSHOT_EVERY} inputs or 16 MiB, database {:.1} MiB)",
        built.as_secs_f64(),
        inputs,
        size as f64 / 1_048_576.0
    );
    println!(
        "startup: open + recover (snapshot at input {last_snapshot} + replay of {} inputs, hash \
         checked) = {:.3} s",
        inputs - last_snapshot,
        recovered.as_secs_f64()
    );
}

fn memory() {
    let hub_key = SignerKey::from_bytes(&[1; 32]).unwrap();
    let hub_board = Board::single(hub_key.address());
    let hub_id = hub_board.lazy_entity_id();
    let mut hub = Runtime::new([hub_key.clone()]);
    let now = 1_000_000;
    hub.apply(RuntimeInput {
        timestamp: now,
        commands: vec![Command::AddReplica {
            board: hub_board.clone(),
            signer: hub_key.address(),
            domain: Hash::ZERO,
        }],
        ..RuntimeInput::default()
    });
    // Wallets, in runtimes of 1,000 each, open accounts with the hub and extend credit.
    let started = Instant::now();
    for chunk in 0..HUB_ACCOUNTS / 1_000 {
        let keys: Vec<SignerKey> = (0..1_000)
            .map(|i| {
                let n = (chunk * 1_000 + i + 2) as u64;
                let mut secret = [0u8; 32];
                secret[24..].copy_from_slice(&n.to_be_bytes());
                SignerKey::from_bytes(&secret).unwrap()
            })
            .collect();
        let mut wallets = Runtime::new(keys.clone());
        let mut commands = Vec::new();
        for key in &keys {
            let board = Board::single(key.address());
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
                    credit(hub_id),
                ],
            });
        }
        let mut to_hub = wallets
            .apply(RuntimeInput {
                timestamp: now,
                commands,
                ..RuntimeInput::default()
            })
            .messages;
        while !to_hub.is_empty() {
            let to_wallets = hub
                .apply(RuntimeInput {
                    timestamp: now,
                    messages: to_hub,
                    ..RuntimeInput::default()
                })
                .messages;
            to_hub = wallets
                .apply(RuntimeInput {
                    timestamp: now,
                    messages: to_wallets,
                    ..RuntimeInput::default()
                })
                .messages;
        }
    }
    let accounts = hub.replica_of(&hub_id).unwrap().state().accounts.len();
    assert_eq!(accounts, HUB_ACCOUNTS);
    let built = started.elapsed();
    let bytes = xln_core::codec::encode(hub.state());
    drop(hub);
    let before = ALLOCATED.load(Ordering::Relaxed);
    let state: RuntimeState = xln_core::codec::decode("state", &bytes).unwrap();
    let hub = Runtime::from_state([hub_key], state);
    let heap = ALLOCATED.load(Ordering::Relaxed) - before;
    let hash_started = Instant::now();
    let _ = hub.state().hash();
    let hash_time = hash_started.elapsed();
    println!(
        "memory: hub with {accounts} accounts (built in {:.1} s): heap {:.1} MiB, snapshot \
         {:.1} MiB, one state hash {:.0} ms",
        built.as_secs_f64(),
        mib(heap),
        mib(bytes.len()),
        hash_time.as_secs_f64() * 1000.0
    );
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = which.is_empty();
    if all || which.iter().any(|w| w == "memory") {
        memory();
    }
    if all || which.iter().any(|w| w == "startup") {
        startup();
    }
}
