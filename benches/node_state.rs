//! Start-up of a node after a million payments, in process (`cargo bench --bench node_state`;
//! the memory of a big hub is measured by `cargo bench -p xln-core --bench hub_scale`).
//!
//! A hub's runtime routes a million two-hop payments
//! (wallet A → hub → wallet B, real signatures and onions), its inputs written to a redb store
//! the way the node writes them (a snapshot every 10,000 inputs or 16 MiB of log); then the time
//! to open the store and recover (latest snapshot + replay of the tail, with the recorded state
//! hash checked) is measured.

use std::time::Instant;
use xln::store::Store;
use xln_core::account::AccountTx;
use xln_core::board::{Board, EntityId};
use xln_core::crypto::{Hash, SignerKey};
use xln_core::entity::{EntityTx, PaymentOrder, RouteHop};
use xln_core::onion::Preimage;
use xln_core::routing::FeePolicy;
use xln_core::runtime::{Command, Envelope, Runtime, RuntimeInput};

const TOKEN: u32 = 1;
const PAYMENTS: u64 = 1_000_000;
const BATCH: u64 = 1_000;
const SNAPSHOT_EVERY: u64 = 10_000;
/// The node's default: a snapshot after this many bytes of log too.
const SNAPSHOT_EVERY_BYTES: u64 = 16 * 1024 * 1024;

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
        let logged = (at == 1).then(|| (input.clone(), self.runtimes[1].state().hash()));
        let out = self.runtimes[at].apply(input);
        if let Some((input, state_before)) = logged {
            self.seq += 1;
            self.logged += self
                .store
                .append_batch(&[(self.seq, &input, state_before)])
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

fn main() {
    startup();
}
