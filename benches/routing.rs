//! Pathfinding on a synthetic network the size of a busy xln: 15,000 entities, 50,000
//! accounts. 50 hubs are all connected to each other, every wallet has accounts with 1 to 3
//! hubs, and random extra accounts (mostly wallet to wallet) fill up to 50,000. Each iteration
//! finds routes between the next of a fixed list of random wallet pairs; building the graph is
//! not timed. Everything is seeded: the same graph and pairs every run.

use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::BTreeSet;
use std::hint::black_box;
use xln_core::board::{Board, EntityId};
use xln_core::crypto::Address;
use xln_core::gossip::{Profile, ProfileAccount};
use xln_core::routing::{Graph, find_routes};

const ENTITIES: usize = 15_000;
const HUBS: usize = 50;
const ACCOUNTS: usize = 50_000;
const TOKEN: u32 = 1;
const PAIRS: usize = 256;
const AMOUNT: u128 = 1_000;

/// xorshift64*: a small deterministic generator, good enough to shape a graph.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `low..high` for a benchmark.
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }

    fn index(&mut self, len: usize) -> usize {
        self.range(0, len as u64) as usize
    }
}

struct Network {
    ids: Vec<EntityId>,
    profiles: Vec<Profile>,
    account_count: usize,
}

/// Entities `0..HUBS` are hubs, the rest wallets.
fn network(rng: &mut Rng) -> Network {
    let boards: Vec<Board> = (0..ENTITIES)
        .map(|_| {
            let mut address = [0u8; 20];
            for chunk in address.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next().to_be_bytes()[..chunk.len()]);
            }
            Board::single(Address(address))
        })
        .collect();
    let ids: Vec<EntityId> = boards.iter().map(Board::lazy_entity_id).collect();

    // Accounts as (a, b) with a < b, so each pair appears once.
    let mut pairs: BTreeSet<(usize, usize)> = BTreeSet::new();
    for a in 0..HUBS {
        for b in a + 1..HUBS {
            pairs.insert((a, b));
        }
    }
    for wallet in HUBS..ENTITIES {
        let hub_count = rng.range(1, 4);
        for _ in 0..hub_count {
            pairs.insert((rng.index(HUBS), wallet));
        }
    }
    while pairs.len() < ACCOUNTS {
        let a = rng.index(ENTITIES);
        let b = rng.index(ENTITIES);
        if a != b {
            pairs.insert((a.min(b), a.max(b)));
        }
    }

    let mut accounts: Vec<Vec<ProfileAccount>> = vec![Vec::new(); ENTITIES];
    for &(a, b) in &pairs {
        // What a can send to b and b to a: hubs hold more liquidity than wallets.
        let liquidity = |rng: &mut Rng, from: usize| -> u128 {
            if from < HUBS {
                u128::from(rng.range(0, 10_000_000))
            } else {
                u128::from(rng.range(0, 20_000))
            }
        };
        let a_to_b = liquidity(rng, a);
        let b_to_a = liquidity(rng, b);
        // Both ends publish the account, each from its own side.
        accounts[a].push(ProfileAccount {
            peer: ids[b],
            token: TOKEN,
            out_capacity: a_to_b,
            in_capacity: b_to_a,
        });
        accounts[b].push(ProfileAccount {
            peer: ids[a],
            token: TOKEN,
            out_capacity: b_to_a,
            in_capacity: a_to_b,
        });
    }

    // Routing never opens onions: one key serves every profile here.
    let onion_key = xln_core::crypto::SignerKey::from_bytes(&[9; 32])
        .expect("a valid key")
        .public_key();
    let profiles = boards
        .into_iter()
        .zip(accounts)
        .enumerate()
        .map(|(i, (board, accounts))| {
            let is_hub = i < HUBS;
            // Wallets forward too, but dearly: routes prefer hubs.
            let (fee_base, fee_ppm) = if is_hub {
                (rng.range(0, 20), rng.range(100, 3_000))
            } else {
                (rng.range(50, 500), rng.range(5_000, 20_000))
            };
            Profile {
                entity_id: ids[i],
                board,
                onion_key,
                name: format!("entity {i}"),
                endpoint: String::new(),
                is_hub,
                fee_base: u128::from(fee_base),
                fee_ppm: fee_ppm as u32,
                accounts,
                updated_at: 0,
            }
        })
        .collect();
    Network {
        ids,
        profiles,
        account_count: pairs.len(),
    }
}

fn bench_routing(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let network = network(&mut rng);
    let graph = Graph::from_profiles(&network.profiles);

    let candidates: Vec<(EntityId, EntityId)> = (0..PAIRS)
        .map(|_| {
            let s = rng.range(HUBS as u64, ENTITIES as u64) as usize;
            let mut t = rng.range(HUBS as u64, ENTITIES as u64) as usize;
            if t == s {
                t = if s + 1 < ENTITIES { s + 1 } else { HUBS };
            }
            (network.ids[s], network.ids[t])
        })
        .collect();
    let pairs: Vec<(EntityId, EntityId)> = candidates
        .iter()
        .copied()
        .filter(|(s, t)| find_routes(&graph, s, t, TOKEN, AMOUNT, 1).is_ok())
        .collect();
    println!(
        "routing graph: {} entities ({HUBS} hubs), {} accounts, {} directed edges; \
         {}/{} random wallet pairs can carry {AMOUNT}",
        graph.node_count(),
        network.account_count,
        graph.edge_count(),
        pairs.len(),
        candidates.len(),
    );

    let mut group = c.benchmark_group("routing_15k_entities_50k_accounts");
    for (name, k) in [("one_route", 1usize), ("five_routes", 5)] {
        let mut next = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                let (source, target) = pairs[next % pairs.len()];
                next += 1;
                black_box(find_routes(&graph, &source, &target, TOKEN, AMOUNT, k))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_routing);
criterion_main!(benches);
