//! The order book alone: 100,000 resting orders (one side of an ETH/USD market, 18-decimal
//! amounts, 1,000 owners, prices spread over 10%), then incoming crossing orders. Each
//! iteration submits a batch of incoming orders to a fresh copy of the full book (the copy is
//! not timed); throughput is in matches (trades between a resting and an incoming order).
//! Everything is seeded: the same book and orders every run.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use xln_core::board::EntityId;
use xln_core::swap::{Order, OrderBook, OrderKey, TimeInForce, Unlimited};

const RESTING: usize = 100_000;
const OWNERS: u64 = 1_000;
const ETH: u32 = 1;
const USD: u32 = 2;
const WEI: u128 = 1_000_000_000_000_000_000;
const NOW: u64 = 1_000;

/// xorshift64*: small and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

fn owner(n: u64) -> EntityId {
    let mut id = [0u8; 32];
    id[24..].copy_from_slice(&n.to_be_bytes());
    EntityId(id)
}

/// Sellers of ETH: 0.1 to 10 ETH each, asking 3,000 to 3,300 USD per ETH.
fn resting_book(rng: &mut Rng) -> OrderBook {
    let mut book = OrderBook::new();
    for i in 0..RESTING as u64 {
        let eth = u128::from(rng.range(100, 10_000)) * WEI / 1_000;
        let usd_per_eth = u128::from(rng.range(3_000_000, 3_300_000)); // in thousandths
        let order = Order {
            key: OrderKey {
                owner: owner(i % OWNERS),
                offer_id: 2 * i,
            },
            give_token: ETH,
            give_amount: eth,
            want_token: USD,
            want_amount: eth * usd_per_eth / 1_000,
            remaining: eth,
            expires_at_ms: NOW + 3_600_000,
            time_in_force: TimeInForce::GoodTillCancel,
        };
        let outcome = book.submit(order, NOW, &mut Unlimited).unwrap();
        assert!(outcome.rested);
    }
    book
}

/// Buyers of ETH paying up to 3,400 USD per ETH (so they cross every ask), each bringing
/// `usd` USD, immediate-or-cancel.
fn buyers(rng: &mut Rng, count: usize, usd: impl Fn(&mut Rng) -> u128) -> Vec<Order> {
    (0..count as u64)
        .map(|i| {
            let give = usd(rng);
            Order {
                key: OrderKey {
                    owner: owner(OWNERS + i),
                    offer_id: 2 * i + 1,
                },
                give_token: USD,
                give_amount: give,
                want_token: ETH,
                want_amount: give / 3_400,
                remaining: give,
                expires_at_ms: NOW + 3_600_000,
                time_in_force: TimeInForce::ImmediateOrCancel,
            }
        })
        .collect()
}

fn run(book: &mut OrderBook, orders: &[Order]) -> usize {
    orders
        .iter()
        .map(|order| {
            book.submit(order.clone(), NOW, &mut Unlimited)
                .unwrap()
                .trades
                .len()
        })
        .sum()
}

fn bench_swap(c: &mut Criterion) {
    let mut rng = Rng(0x5eed_5a4b);
    let book = resting_book(&mut rng);
    let cases = [
        // Each buyer sweeps about ten asks: ~50 ETH worth.
        (
            "sweeps of ~10 resting orders",
            buyers(&mut rng, 1_000, |rng| {
                u128::from(rng.range(140_000, 170_000)) * WEI
            }),
        ),
        // Each buyer takes part of the best ask: one match per incoming order.
        (
            "one match per incoming order",
            buyers(&mut rng, 10_000, |rng| u128::from(rng.range(1, 100)) * WEI),
        ),
    ];
    let mut group = c.benchmark_group("order book of 100,000");
    group.sample_size(20);
    for (name, orders) in &cases {
        let matches = run(&mut book.clone(), orders);
        println!(
            "{name}: {} incoming orders, {matches} matches per iteration",
            orders.len()
        );
        group.throughput(Throughput::Elements(matches as u64));
        group.bench_function(*name, |b| {
            b.iter_batched(
                || book.clone(),
                // The book is returned so that dropping it is not timed.
                |mut book| {
                    black_box(run(&mut book, black_box(orders)));
                    book
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_swap);
criterion_main!(benches);
