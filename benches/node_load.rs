//! Load and soak: one hub and many wallets, each an `xln node` process on loopback with its
//! durable WAL, driven by this generator for a fixed time with mixed payments:
//! - 2 hops, wallet → hub → wallet;
//! - 1 hop, wallet → hub or hub → wallet;
//! - one in ten fails on purpose (far beyond the credit), and must fail.
//!
//! Any other failure is an unexpected error. Every `XLN_LOAD_SAMPLE_SECS` it prints the
//! payments per second, p50/p99 latency, and the hub's memory (RSS), open files, threads,
//! tokio tasks and database size (from its metrics endpoint); at the end it checks that the
//! network settles with no lock left and both sides of every account equal.
//!
//! `cargo bench --bench node_load` runs the load test (100 wallets, 10 minutes, as fast as
//! the wallets go). The soak is the same at a moderate rate for an hour:
//! `XLN_LOAD_WALLETS=20 XLN_LOAD_SECS=3600 XLN_LOAD_RATE=50 XLN_LOAD_SAMPLE_SECS=60 cargo bench --bench node_load`.
//! Knobs: XLN_LOAD_WALLETS, XLN_LOAD_SECS, XLN_LOAD_RATE (payments/s in all, 0 = no cap),
//! XLN_LOAD_SAMPLE_SECS.

#[path = "../tests/support/mod.rs"]
mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::*;
use tokio::sync::Mutex;
use xln::api::{Request, Response};
use xln::node::control::ControlClient;
use xln_core::board::EntityId;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one payment was meant to do and how it ended.
#[derive(Default)]
struct Tally {
    succeeded: u64,
    failed_on_purpose: u64,
    unexpected: Vec<String>,
    /// Latencies of the payments that succeeded, in microseconds.
    latencies: Vec<u64>,
}

impl Tally {
    fn take(&mut self) -> Tally {
        std::mem::take(self)
    }
}

/// Starts a payment and waits for its end over one control connection.
async fn pay(client: &mut ControlClient, to: EntityId, amount: u128) -> Result<(), String> {
    let started = client
        .call(&Request::Pay {
            destination: to.to_string(),
            token: TOKEN,
            amount,
        })
        .await
        .map_err(|e| format!("control: {e:#}"))?;
    let hashlock = match started {
        Response::PaymentStarted { hashlock, .. } => hashlock,
        Response::Error { message } => return Err(message),
        other => return Err(format!("{other:?}")),
    };
    match client.call(&Request::AwaitPayment { hashlock }).await {
        Ok(Response::Payment(p)) if p.status == "succeeded" => Ok(()),
        Ok(Response::Payment(p)) => Err(p.status),
        other => Err(format!("{other:?}")),
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)] as f64 / 1e3
}

/// The hub process as the kernel sees it: resident memory (MiB), open files, threads.
fn process_figures(pid: u32) -> (f64, usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let open_files = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (
        field("VmRSS:") as f64 / 1024.0,
        open_files,
        field("Threads:") as usize,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let wallets = knob("XLN_LOAD_WALLETS", 100) as usize;
    let seconds = knob("XLN_LOAD_SECS", 600);
    let rate = knob("XLN_LOAD_RATE", 0);
    let sample_every = Duration::from_secs(knob("XLN_LOAD_SAMPLE_SECS", 10));
    assert!(wallets >= 2, "XLN_LOAD_WALLETS must be at least 2");

    let root = tempfile::tempdir().unwrap();
    let chain = chain(root.path()).await;
    let port = free_port();
    let set_up = Instant::now();
    let mut hub = NodeProcess::init(root.path(), &chain, NodeSpec::hub("hub"), Some(port));
    hub.run().await;
    let names: Vec<String> = (0..wallets).map(|i| format!("w{i:03}")).collect();
    let mut nodes: Vec<NodeProcess> = names
        .iter()
        .map(|name| NodeProcess::init(root.path(), &chain, NodeSpec::wallet(name, port), None))
        .collect();
    for node in &mut nodes {
        node.start();
    }
    for node in &mut nodes {
        node.wait_ready().await;
    }
    let refs: Vec<&NodeProcess> = nodes.iter().collect();
    connect(&hub, &refs).await;
    wait_route(&nodes[0], &nodes[wallets - 1], 10 * UNIT).await;
    wait_route(&nodes[wallets - 1], &nodes[0], 10 * UNIT).await;
    let hub_id = hub.entity().await;
    let mut ids = Vec::new();
    for node in &nodes {
        ids.push(node.entity().await);
    }
    let hub_pid = hub.pid().expect("the hub runs");
    println!(
        "set up: a hub and {wallets} wallets, accounts and credit, in {:.1} s; running {seconds} s \
         at {}",
        set_up.elapsed().as_secs_f64(),
        if rate == 0 {
            "full speed (one payment in flight per wallet)".to_string()
        } else {
            format!("{rate} payments/s in all")
        }
    );

    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let (socket, hub_socket) = (node.socket(), hub.socket());
        let (ids, tally, stop) = (ids.clone(), tally.clone(), stop.clone());
        // Each wallet's share of the rate, as a pause between its payments.
        let pause = (rate > 0).then(|| Duration::from_secs_f64(wallets as f64 / rate as f64));
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(index as u64);
            let mut own = ControlClient::connect(&socket).await.unwrap();
            let mut from_hub = ControlClient::connect(&hub_socket).await.unwrap();
            let me = ids[index];
            while !stop.load(Ordering::Relaxed) {
                let small = rng.random_range(1..=100) * UNIT / 100;
                let roll = rng.random_range(0..100);
                let fails_on_purpose = roll < 10;
                let started = Instant::now();
                let result = if fails_on_purpose {
                    // Far beyond the 1,000 units of credit: no route can carry it.
                    let other = ids[(index + 1 + rng.random_range(0..ids.len() - 1)) % ids.len()];
                    pay(&mut own, other, 1_000_000 * UNIT).await
                } else if roll < 55 {
                    let other = ids[(index + 1 + rng.random_range(0..ids.len() - 1)) % ids.len()];
                    pay(&mut own, other, small).await
                } else if roll < 78 {
                    pay(&mut own, hub_id, small).await
                } else {
                    pay(&mut from_hub, me, small).await
                };
                let elapsed = started.elapsed();
                {
                    let mut tally = tally.lock().await;
                    match (fails_on_purpose, result) {
                        (false, Ok(())) => {
                            tally.succeeded += 1;
                            tally.latencies.push(elapsed.as_micros() as u64);
                        }
                        (true, Err(_)) => tally.failed_on_purpose += 1,
                        (false, Err(error)) => tally.unexpected.push(error),
                        (true, Ok(())) => tally
                            .unexpected
                            .push("a payment beyond every credit line succeeded".into()),
                    }
                }
                if let Some(pause) = pause {
                    tokio::time::sleep(pause.saturating_sub(elapsed)).await;
                }
            }
        }));
    }

    println!(
        "{:>6} {:>9} {:>8} {:>8} {:>9} {:>8} {:>6} {:>7} {:>6} {:>9} {:>6}",
        "t (s)",
        "paid/s",
        "p50 ms",
        "p99 ms",
        "RSS MiB",
        "files",
        "thr",
        "tasks",
        "htlcs",
        "db MiB",
        "errors"
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut all = Tally::default();
    let mut memory = Vec::new();
    let mut last = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(sample_every.min(deadline - Instant::now())).await;
        let mut interval = tally.lock().await.take();
        let seconds_passed = last.elapsed().as_secs_f64();
        last = Instant::now();
        interval.latencies.sort_unstable();
        let (rss, files, threads) = process_figures(hub_pid);
        let metrics = hub.metrics().await;
        let gauge = |name: &str| metric(&metrics, name).unwrap_or(f64::NAN);
        memory.push((started.elapsed().as_secs(), rss));
        println!(
            "{:>6} {:>9.0} {:>8.2} {:>8.2} {:>9.1} {:>8} {:>6} {:>7} {:>6} {:>9.2} {:>6}",
            started.elapsed().as_secs(),
            interval.succeeded as f64 / seconds_passed,
            percentile(&interval.latencies, 0.5),
            percentile(&interval.latencies, 0.99),
            rss,
            files,
            threads,
            gauge("xln_tasks_alive"),
            gauge("xln_htlcs_in_flight"),
            gauge("xln_database_bytes") / (1024.0 * 1024.0),
            interval.unexpected.len(),
        );
        for error in interval.unexpected.iter().take(3) {
            println!("       unexpected: {error}");
        }
        all.succeeded += interval.succeeded;
        all.failed_on_purpose += interval.failed_on_purpose;
        all.unexpected.extend(interval.unexpected);
        all.latencies.extend(interval.latencies);
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let rest = tally.lock().await.take();
    all.succeeded += rest.succeeded;
    all.failed_on_purpose += rest.failed_on_purpose;
    all.unexpected.extend(rest.unexpected);
    all.latencies.extend(rest.latencies);
    all.latencies.sort_unstable();
    let ran = started.elapsed().as_secs_f64();

    println!(
        "\n{} payments succeeded in {ran:.0} s = {:.0}/s; p50 {:.2} ms, p99 {:.2} ms; {} failed on \
         purpose as they should; {} unexpected errors",
        all.succeeded,
        all.succeeded as f64 / ran,
        percentile(&all.latencies, 0.5),
        percentile(&all.latencies, 0.99),
        all.failed_on_purpose,
        all.unexpected.len()
    );
    // Memory after warm-up: the first sample past a tenth of the run against the last.
    if let (Some((t0, warm)), Some((t1, end))) = (
        memory.iter().find(|(t, _)| *t >= seconds / 10).copied(),
        memory.last().copied(),
    ) {
        println!(
            "hub memory: {warm:.1} MiB at {t0} s, {end:.1} MiB at {t1} s ({:+.1}%), peak {:.1} MiB",
            (end - warm) / warm * 100.0,
            memory.iter().map(|(_, m)| *m).fold(0.0, f64::max)
        );
    }

    let mut everyone: Vec<&NodeProcess> = vec![&hub];
    everyone.extend(nodes.iter());
    let views = settle_down(&everyone).await;
    let accounts: usize = views.iter().map(|v| v.accounts.len()).sum();
    println!(
        "settled: no lock or hold left, both sides of all {accounts} account views agree \
         (height and state hash)"
    );
    assert!(
        all.unexpected.is_empty(),
        "unexpected errors, first: {:?}",
        all.unexpected.first()
    );
}
