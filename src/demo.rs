//! `xln demo`: a whole network on this machine for a newcomer to look at. It starts a devnet
//! (anvil + the contracts, installed by the project's script when missing), a hub and three
//! wallets as nodes in this process, opens accounts with credit both ways, funds a reserve,
//! keeps payments flowing between the wallets, and opens the console as the wallet `alice`.

use crate::api::{NodeLink, Request, Response};
use crate::chain::devnet::{self, DevnetOptions, NamedKey, parse_keys};
use crate::config::{ChainSection, Config, Fees, NodeSection, Paths};
use crate::node::{self, NodeSetup, RunningNode};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The devnet keys (anvil's well-known dev accounts), funded by the devnet.
const DEV_KEYS: &str = include_str!("../keys.example");
const WALLETS: [&str; 3] = ["alice", "bob", "carol"];
const TOKEN: u32 = 1;
const UNIT: u128 = 1_000_000_000_000_000_000;

/// A running demo network. Dropping it without `shutdown` still stops anvil (its guard).
pub struct Demo {
    pub hub: RunningNode,
    pub wallets: Vec<(String, RunningNode)>,
    traffic: tokio::task::JoinHandle<()>,
    devnet: devnet::Devnet,
}

fn key_named(keys: &[NamedKey], name: &str) -> anyhow::Result<xln_core::crypto::SignerKey> {
    keys.iter()
        .find(|k| k.name == name)
        .map(|k| k.key.clone())
        .with_context(|| format!("no dev key named {name}"))
}

fn node_config(name: &str, hub: bool, dial: Vec<String>) -> Config {
    Config {
        name: name.into(),
        signer: None,
        listen: hub.then(|| ([127, 0, 0, 1], 0).into()),
        endpoint: None,
        dial,
        hub,
        fees: if hub {
            Fees { base: 0, ppm: 100 }
        } else {
            Fees::default()
        },
        board: None,
        chain: ChainSection::default(),
        node: NodeSection::default(),
        metrics: None,
    }
}

fn paths_in(root: &Path, name: &str) -> Paths {
    let dir = root.join(name);
    Paths {
        config: dir.join("config.toml"),
        keys: dir.join("keys"),
        data_dir: dir,
    }
}

/// Asks until the node takes the request (gossip takes a moment to arrive).
async fn ask_until_taken(link: &NodeLink, request: Request) -> anyhow::Result<Response> {
    let mut last = String::new();
    for _ in 0..300 {
        match link.ask(request.clone()).await {
            Ok(Response::Error { message }) => last = message,
            Ok(response) => return Ok(response),
            Err(_) => anyhow::bail!("the node stopped"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{request:?} was not taken: {last}")
}

/// Starts the demo network under `root` (emptied first).
pub async fn start(root: &Path) -> anyhow::Result<Demo> {
    if root.exists() {
        std::fs::remove_dir_all(root)
            .with_context(|| format!("clearing the last demo in {}", root.display()))?;
    }
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let keys_file = root.join("dev-keys");
    std::fs::write(&keys_file, DEV_KEYS)?;
    let devnet = devnet::start(&DevnetOptions {
        port: 0,
        keys: keys_file,
        config_out: root.join("chain.json"),
        block_time: None,
        fund: Vec::new(),
    })
    .await
    .context("starting the devnet")?;
    let keys = parse_keys(DEV_KEYS)?;
    let chain = devnet.config.clone();

    let hub = node::start(NodeSetup {
        paths: paths_in(root, "hub"),
        config: node_config("hub", true, Vec::new()),
        key: key_named(&keys, "hub")?,
        chain: chain.clone(),
    })
    .await
    .context("starting the hub")?;
    let hub_url = format!(
        "ws://{}",
        hub.listen_addr.context("the hub has no listener")?
    );
    let hub_id = hub.entity.to_string();
    let mut wallets = Vec::new();
    for name in WALLETS {
        let wallet = node::start(NodeSetup {
            paths: paths_in(root, name),
            config: node_config(name, false, vec![hub_url.clone()]),
            key: key_named(&keys, name)?,
            chain: chain.clone(),
        })
        .await
        .with_context(|| format!("starting {name}"))?;
        wallets.push((name.to_string(), wallet));
    }

    // Accounts with the hub, 100 TUSD of credit each way.
    let hub_link = hub.link();
    for (name, wallet) in &wallets {
        let link = wallet.link();
        ask_until_taken(
            &link,
            Request::OpenAccount {
                peer: hub_id.clone(),
            },
        )
        .await?;
        ask_until_taken(
            &link,
            Request::Credit {
                peer: hub_id.clone(),
                token: TOKEN,
                amount: 100 * UNIT,
            },
        )
        .await?;
        ask_until_taken(
            &hub_link,
            Request::Credit {
                peer: name.clone(),
                token: TOKEN,
                amount: 100 * UNIT,
            },
        )
        .await?;
    }
    // Alice keeps 50 TUSD in reserve and backs her account with 20 of it.
    if let Some((_, alice)) = wallets.first() {
        let link = alice.link();
        ask_until_taken(
            &link,
            Request::Deposit {
                token: TOKEN,
                amount: 50 * UNIT,
            },
        )
        .await?;
        wait_for_reserve(&link, 50 * UNIT).await;
        ask_until_taken(
            &link,
            Request::Collateral {
                peer: hub_id.clone(),
                token: TOKEN,
                amount: 20 * UNIT,
            },
        )
        .await?;
    }

    let links: Vec<(String, NodeLink)> = wallets
        .iter()
        .map(|(name, node)| (name.clone(), node.link()))
        .collect();
    let traffic = tokio::spawn(traffic(links));
    Ok(Demo {
        hub,
        wallets,
        traffic,
        devnet,
    })
}

async fn wait_for_reserve(link: &NodeLink, amount: u128) {
    for _ in 0..200 {
        let view = link.views.borrow().clone();
        if view
            .reserves
            .iter()
            .any(|r| r.token == TOKEN && r.reserve >= amount)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Payments between the wallets, around the ring and back, a few per second.
async fn traffic(wallets: Vec<(String, NodeLink)>) {
    let mut round: u128 = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        round += 1;
        let count = wallets.len();
        let from = (round as usize) % count;
        let to = (from + 1 + (round as usize / count) % (count - 1)) % count;
        let amount = UNIT / 10 * (1 + round % 7);
        let request = Request::Pay {
            destination: wallets[to].0.clone(),
            token: TOKEN,
            amount,
        };
        // A refused payment (no route yet, no capacity) is part of the demo's log, not an error.
        let _ = wallets[from].1.ask(request).await;
    }
}

impl Demo {
    /// The node the console shows.
    pub fn alice(&self) -> anyhow::Result<NodeLink> {
        self.wallets
            .first()
            .map(|(_, node)| node.link())
            .context("no wallet")
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.traffic.abort();
        let mut result = Ok(());
        for (_, wallet) in self.wallets {
            if let Err(error) = wallet.shutdown().await {
                result = Err(error);
            }
        }
        if let Err(error) = self.hub.shutdown().await {
            result = Err(error);
        }
        let mut devnet = self.devnet;
        devnet.anvil.stop();
        result
    }
}

/// Where the demo keeps its files: `<data dir>/demo`.
pub fn demo_root(paths: &Paths) -> PathBuf {
    paths.data_dir.join("demo")
}
