//! Two-hop payments per second through one hub, in process, with real signatures and onions:
//! wallet A pays wallet B through hub H. Each iteration submits a batch of payments at A and
//! delivers messages between the three runtimes until every payment has settled.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::{Duration, Instant};
use xln_core::account::AccountTx;
use xln_core::board::{Board, EntityId};
use xln_core::crypto::{Hash, SignerKey};
use xln_core::entity::{EntityTx, PaymentOrder, RouteHop};
use xln_core::onion::Preimage;
use xln_core::routing::FeePolicy;
use xln_core::runtime::{Command, Envelope, Runtime, RuntimeInput};

const TOKEN: u32 = 1;

struct Node {
    key: SignerKey,
    board: Board,
    id: EntityId,
    runtime: Runtime,
}

struct Net {
    nodes: Vec<Node>,
    now: u64,
}

impl Net {
    fn new() -> Self {
        let nodes = (1..=3u8)
            .map(|n| {
                let key = SignerKey::from_bytes(&[n; 32]).unwrap();
                let board = Board::single(key.address());
                let id = board.lazy_entity_id();
                Node {
                    runtime: Runtime::new([key.clone()]),
                    key,
                    board,
                    id,
                }
            })
            .collect();
        let mut net = Net { nodes, now: 1 };
        for i in 0..3 {
            let add = Command::AddReplica {
                board: net.nodes[i].board.clone(),
                signer: net.nodes[i].key.address(),
                domain: Hash::ZERO,
            };
            net.input(i, vec![add]);
        }
        // A - H - B, with ample credit both ways on both accounts.
        for (a, b) in [(0, 1), (1, 2)] {
            let (ida, idb) = (net.nodes[a].id, net.nodes[b].id);
            let credit = |peer| EntityTx::Account {
                peer,
                tx: AccountTx::SetCreditLimit {
                    token: TOKEN,
                    amount: u64::MAX as u128,
                },
            };
            let open = EntityTx::OpenAccount {
                peer: idb,
                peer_board: net.nodes[b].board.clone(),
            };
            net.submit(a, vec![open, credit(idb)]);
            net.submit(b, vec![credit(ida)]);
        }
        net
    }

    fn submit(&mut self, at: usize, txs: Vec<EntityTx>) {
        let entity = self.nodes[at].id;
        self.input(at, vec![Command::Submit { entity, txs }]);
    }

    fn input(&mut self, at: usize, commands: Vec<Command>) {
        self.now += 1;
        let out = self.nodes[at].runtime.apply(RuntimeInput {
            timestamp: self.now,
            commands,
            ..RuntimeInput::default()
        });
        let mut queue: Vec<Envelope> = out.messages;
        while !queue.is_empty() {
            let mut next = Vec::new();
            for i in 0..3 {
                let id = self.nodes[i].id;
                let inbox: Vec<Envelope> = queue
                    .iter()
                    .filter(|m| m.to.entity == id)
                    .cloned()
                    .collect();
                if inbox.is_empty() {
                    continue;
                }
                let out = self.nodes[i].runtime.apply(RuntimeInput {
                    timestamp: self.now,
                    messages: inbox,
                    ..RuntimeInput::default()
                });
                next.extend(out.messages);
            }
            queue = next;
        }
    }
}

fn bench_two_hop(c: &mut Criterion) {
    let mut group = c.benchmark_group("two_hop_payments");
    group.sample_size(10);
    for batch in [1usize, 100, 1_000] {
        let mut net = Net::new();
        let route = vec![
            RouteHop {
                entity: net.nodes[1].id,
                key: net.nodes[1].key.public_key(),
                fee: FeePolicy::default(),
            },
            RouteHop {
                entity: net.nodes[2].id,
                key: net.nodes[2].key.public_key(),
                fee: FeePolicy::default(),
            },
        ];
        let mut counter: u64 = 0;
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("payments_per_batch", batch), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let orders: Vec<EntityTx> = (0..batch)
                        .map(|_| {
                            counter += 1;
                            let mut secret = [0u8; 32];
                            secret[..8].copy_from_slice(&counter.to_be_bytes());
                            EntityTx::Pay(Box::new(PaymentOrder {
                                token: TOKEN,
                                amount: 1,
                                route: route.clone(),
                                preimage: Preimage(secret),
                                // One onion session for the whole run, as a node keeps one.
                                seed: [7; 32],
                            }))
                        })
                        .collect();
                    let start = Instant::now();
                    net.submit(0, orders);
                    total += start.elapsed();
                }
                total
            })
        });
        // Every payment of the run settled.
        let sender = net.nodes[0]
            .runtime
            .replica_of(&net.nodes[0].id)
            .unwrap()
            .state();
        let settled = sender
            .payments
            .values()
            .filter(|p| matches!(p.status, xln_core::entity::PaymentStatus::Succeeded { .. }))
            .count();
        assert_eq!(settled, sender.payments.len(), "every payment settled");
    }
    group.finish();
}

criterion_group!(benches, bench_two_hop);
criterion_main!(benches);
