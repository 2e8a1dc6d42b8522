//! Payments wallet → hub → wallet across three `xln node` processes on loopback, every input
//! in each node's durable WAL (redb, fsync per batch): one payment at a time for the latency
//! (p50/p99), then many clients at once for the throughput. Run with
//! `cargo bench --bench node_net` (the release binary is what the processes run).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::*;
use xln::api::{Request, Response};
use xln::node::control::ControlClient;
use xln_core::board::EntityId;

/// Payments one at a time for the latency (`XLN_BENCH_LATENCY_PAYMENTS` overrides it).
const LATENCY_PAYMENTS: usize = 300;
/// Clients paying at once (`XLN_BENCH_CLIENTS` overrides it), and payments in all.
const CLIENTS: usize = 64;
const PAYMENTS: usize = 19_200;

async fn pay_and_wait(client: &mut ControlClient, to: EntityId) -> Result<(), String> {
    let started = client
        .call(&Request::Pay {
            destination: to.to_string(),
            token: TOKEN,
            amount: 1,
        })
        .await
        .map_err(|e| e.to_string())?;
    let Response::PaymentStarted { hashlock, .. } = started else {
        return Err(format!("{started:?}"));
    };
    match client.call(&Request::AwaitPayment { hashlock }).await {
        Ok(Response::Payment(p)) if p.status == "succeeded" => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn p50_ms(latencies: &[Duration]) -> f64 {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    percentile(&sorted, 0.5).as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let root = tempfile::tempdir().unwrap();
    let chain = chain(root.path()).await;
    let (hub, alice, bob) = hub_and_two_wallets(root.path(), &chain).await;
    let bob_id = bob.entity().await;
    let hub_id = hub.entity().await;

    // Latency: one payment at a time.
    let mut client = ControlClient::connect(&alice.socket()).await.unwrap();
    let latency_payments = env_or("XLN_BENCH_LATENCY_PAYMENTS", LATENCY_PAYMENTS);
    let mut latencies = Vec::with_capacity(latency_payments);
    for _ in 0..latency_payments {
        let started = Instant::now();
        pay_and_wait(&mut client, bob_id).await.unwrap();
        latencies.push(started.elapsed());
    }
    // Whether latency grows with the payments a node keeps: the first and the last tenth.
    let tenth = latency_payments.div_ceil(10);
    let (first, last) = (
        p50_ms(&latencies[..tenth]),
        p50_ms(&latencies[latency_payments - tenth..]),
    );
    latencies.sort();
    println!(
        "latency of one payment (wallet → hub → wallet, {latency_payments} in a row): p50 {:.2} ms, \
         p99 {:.2} ms (p50 of the first {tenth} {first:.2} ms, of the last {tenth} {last:.2} ms)",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );

    // Throughput: many clients at once.
    let clients = env_or("XLN_BENCH_CLIENTS", CLIENTS);
    let per_client = PAYMENTS / clients;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let socket = alice.socket();
        tasks.push(tokio::spawn(async move {
            let mut client = ControlClient::connect(&socket).await.unwrap();
            let mut failed = 0;
            for _ in 0..per_client {
                if pay_and_wait(&mut client, bob_id).await.is_err() {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for task in tasks {
        failed += task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let total = clients * per_client;
    println!(
        "throughput: {total} payments from {clients} clients in {:.2} s = {:.0} payments/s \
         ({failed} failed)",
        elapsed.as_secs_f64(),
        (total - failed) as f64 / elapsed.as_secs_f64()
    );
    let views = settle_down(&[&hub, &alice, &bob]).await;
    let received = position(&views[2].accounts, hub_id);
    assert_eq!(received as usize, latency_payments + total - failed);
    println!("checked: Bob received exactly the {received} payments that succeeded");
}
