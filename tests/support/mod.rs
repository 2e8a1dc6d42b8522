//! Nodes as real `xln node` processes for the integration tests and the benchmarks: a devnet
//! in the test process, `xln init`/`xln node` per node in its own data directory, requests over
//! the control socket. Every process is killed when its guard drops, and a failing test prints
//! each node's last log lines.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xln::api::{AccountView, NodeView, Request, Response};
use xln::chain::devnet::{self, DevnetOptions};
use xln::node::control;
use xln_core::board::EntityId;
use xln_core::crypto::{Address, Hash, SignerKey};

pub const TOKEN: u32 = 1;
/// One token with 18 decimals.
pub const UNIT: u128 = 1_000_000_000_000_000_000;

/// A devnet (anvil + contracts) in this test process; anvil stops on drop.
pub struct Chain {
    _devnet: devnet::Devnet,
    pub chain_file: PathBuf,
}

pub async fn chain(root: &Path) -> Chain {
    let chain_file = root.join("chain.json");
    let devnet = devnet::start(&DevnetOptions {
        port: 0,
        keys: Path::new(env!("CARGO_MANIFEST_DIR")).join("keys.example"),
        config_out: chain_file.clone(),
        block_time: None,
        fund: Vec::new(),
    })
    .await
    .expect("devnet");
    Chain {
        _devnet: devnet,
        chain_file,
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn xln() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xln"))
}

/// One `xln node` process and its data directory. Killed on drop.
pub struct NodeProcess {
    pub name: String,
    pub dir: PathBuf,
    pub child: Option<Child>,
}

pub struct NodeSpec<'a> {
    pub name: &'a str,
    pub listen: bool,
    pub dial: Vec<u16>,
    pub hub: bool,
    pub key: Option<&'a SignerKey>,
    /// TOML appended to the generated config (e.g. a `[board]`).
    pub extra: String,
}

impl<'a> NodeSpec<'a> {
    /// A single-signer hub that listens (on the port given to `NodeProcess::init`).
    pub fn hub(name: &'a str) -> Self {
        NodeSpec {
            name,
            listen: true,
            dial: Vec::new(),
            hub: true,
            key: None,
            extra: String::new(),
        }
    }

    pub fn wallet(name: &'a str, hub_port: u16) -> Self {
        NodeSpec {
            name,
            listen: false,
            dial: vec![hub_port],
            hub: false,
            key: None,
            extra: String::new(),
        }
    }
}

impl NodeProcess {
    pub fn init(root: &Path, chain: &Chain, spec: NodeSpec, port: Option<u16>) -> Self {
        let dir = root.join(spec.name);
        let mut command = xln();
        command
            .arg("--data-dir")
            .arg(&dir)
            .args(["init", "--name", spec.name, "--chain-file"])
            .arg(&chain.chain_file);
        if spec.listen {
            let port = port.expect("a listening node needs a port");
            command.args(["--listen", &format!("127.0.0.1:{port}")]);
        }
        for dial in &spec.dial {
            command.args(["--dial", &format!("ws://127.0.0.1:{dial}")]);
        }
        if spec.hub {
            command.arg("--hub");
        }
        if let Some(key) = spec.key {
            command.args([
                "--import-key",
                &format!("0x{}", hex::encode(key.secret_bytes())),
            ]);
        }
        let out = command.output().expect("xln init");
        assert!(
            out.status.success(),
            "init {}: {}",
            spec.name,
            String::from_utf8_lossy(&out.stderr)
        );
        if !spec.extra.is_empty() {
            let config = dir.join("config.toml");
            let mut text = std::fs::read_to_string(&config).unwrap();
            text.push('\n');
            text.push_str(&spec.extra);
            std::fs::write(&config, text).unwrap();
        }
        NodeProcess {
            name: spec.name.to_string(),
            dir,
            child: None,
        }
    }

    /// The secrets in the node's key file, as lowercase hex without `0x`.
    pub fn secrets(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.join("keys")).expect("the key file");
        text.lines()
            .filter_map(|line| line.split_whitespace().nth(1))
            .filter_map(|secret| secret.strip_prefix("0x"))
            .map(|hex| hex.to_lowercase())
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        let child = xln()
            .arg("--data-dir")
            .arg(&self.dir)
            .args([
                "--log",
                "xln=debug,info",
                "node",
                "--metrics",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning xln node");
        self.child = Some(child);
    }

    /// Waits until the control socket answers (the node recovered and listens).
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Response::Status(_)) = control::call(&self.socket(), &Request::Status).await {
                return;
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "{} exited with {status}: {}",
                    self.name,
                    std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "{} never answered", self.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn run(&mut self) {
        self.start();
        self.wait_ready().await;
    }

    /// SIGKILL: no clean shutdown, whatever was in flight is lost but the WAL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        assert!(status.success(), "{} exited with {status}", self.name);
                        return;
                    }
                    _ if Instant::now() > deadline => {
                        let _ = child.kill();
                        panic!("{} did not stop on SIGTERM", self.name);
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    /// The node's metrics endpoint, fetched as a scraper would (plain HTTP/1.1).
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let status = match self.ask(Request::Status).await {
            Response::Status(status) => status,
            other => panic!("{}: {other:?}", self.name),
        };
        let url = status.metrics_url.expect("the node serves metrics");
        let (addr, path) = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('/'))
            .expect("an http URL");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answer
    }

    pub async fn ask(&self, request: Request) -> Response {
        control::call(&self.socket(), &request)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", self.name))
    }

    pub async fn view(&self) -> NodeView {
        match self.ask(Request::View).await {
            Response::View(view) => *view,
            other => panic!("{}: {other:?}", self.name),
        }
    }

    pub async fn entity(&self) -> EntityId {
        self.view().await.status.entity
    }

    pub async fn signer(&self) -> Address {
        self.view().await.status.signer
    }

    /// Repeats `request` until it is taken (e.g. while gossip has not arrived yet).
    pub async fn ask_until_done(&self, request: Request) -> Response {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let response = self.ask(request.clone()).await;
            match &response {
                Response::Error { message } if Instant::now() < deadline => {
                    let _ = message;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Response::Error { message } => panic!("{}: {request:?}: {message}", self.name),
                _ => return response,
            }
        }
    }

    /// `xln --json <args>` against the node, parsed; panics with its stderr if it fails.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(&[&["--json"], args].concat());
        assert!(
            out.status.success(),
            "{}: {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Runs the `xln` binary as a client of this node.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        xln()
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("xln client")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what each node logged.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- {} (last lines of its log) ---", self.name);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The value of the sample `name` (with its labels, e.g. `xln_payments_total{result="sent"}`)
/// in a metrics exposition.
pub fn metric(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Waits until `node`'s metric `name` shows `value`.
pub async fn wait_metric(node: &NodeProcess, name: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let exposition = node.metrics().await;
        if metric(&exposition, name) == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {name} is not {value}:\n{exposition}",
            node.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens an account of `wallet` with `hub` (once the hub's profile reached the wallet).
pub async fn open(wallet: &NodeProcess, hub: &NodeProcess) {
    let hub_id = hub.entity().await.to_string();
    wallet
        .ask_until_done(Request::OpenAccount { peer: hub_id })
        .await;
}

pub async fn credit(from: &NodeProcess, to: &NodeProcess, amount: u128) {
    let peer = to.entity().await.to_string();
    from.ask_until_done(Request::Credit {
        peer,
        token: TOKEN,
        amount,
    })
    .await;
}

/// The wallet → hub → wallet network with credit for `alice` to pay `bob` up to 1,000 units.
pub async fn hub_and_two_wallets(
    root: &Path,
    chain: &Chain,
) -> (NodeProcess, NodeProcess, NodeProcess) {
    let port = free_port();
    let mut hub = NodeProcess::init(root, chain, NodeSpec::hub("hub"), Some(port));
    let mut alice = NodeProcess::init(root, chain, NodeSpec::wallet("alice", port), None);
    let mut bob = NodeProcess::init(root, chain, NodeSpec::wallet("bob", port), None);
    hub.run().await;
    alice.run().await;
    bob.run().await;
    connect(&hub, &[&alice, &bob]).await;
    wait_route(&alice, &bob, 100 * UNIT).await;
    (hub, alice, bob)
}

/// Accounts of each wallet with the hub, 1,000 units of credit each way. A wallet's first
/// frame (its credit) is what tells the hub about the account.
pub async fn connect(hub: &NodeProcess, wallets: &[&NodeProcess]) {
    for wallet in wallets {
        open(wallet, hub).await;
        credit(wallet, hub, 1_000 * UNIT).await;
    }
    for wallet in wallets {
        wait_account(hub, wallet).await;
        credit(hub, wallet, 1_000 * UNIT).await;
    }
}

/// Waits until gossip gave `from` a route to `to` for `amount`.
pub async fn wait_route(from: &NodeProcess, to: &NodeProcess, amount: u128) {
    let destination = to.entity().await.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = from
            .ask(Request::Routes {
                destination: destination.clone(),
                token: TOKEN,
                amount,
            })
            .await;
        if matches!(&response, Response::Routes(routes) if !routes.is_empty()) {
            return;
        }
        assert!(Instant::now() < deadline, "no route: {response:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `a` has an account with `b`.
pub async fn wait_account(a: &NodeProcess, b: &NodeProcess) {
    let b_id = b.entity().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a.view().await.accounts.iter().any(|x| x.peer == b_id) {
        assert!(
            Instant::now() < deadline,
            "{} never saw the account",
            a.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a payment and waits for its end: `Some(amount)` if it succeeded.
pub async fn pay(from: &NodeProcess, to: EntityId, amount: u128) -> Result<u128, String> {
    let response = from
        .ask(Request::Pay {
            destination: to.to_string(),
            token: TOKEN,
            amount,
        })
        .await;
    let hashlock = match response {
        Response::PaymentStarted { hashlock, .. } => hashlock,
        Response::Error { message } => return Err(message),
        other => panic!("{other:?}"),
    };
    wait_payment(from, hashlock, amount).await
}

pub async fn wait_payment(
    from: &NodeProcess,
    hashlock: Hash,
    amount: u128,
) -> Result<u128, String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // The sender may be restarting: ask again until it answers.
        if let Ok(Response::Payment(p)) =
            control::call(&from.socket(), &Request::PaymentStatus { hashlock }).await
        {
            match p.status.as_str() {
                "pending" => {}
                "succeeded" => return Ok(amount),
                failed => return Err(failed.to_string()),
            }
        }
        assert!(Instant::now() < deadline, "payment {hashlock} never ended");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn position(accounts: &[AccountView], peer: EntityId) -> i128 {
    accounts
        .iter()
        .find(|a| a.peer == peer)
        .and_then(|a| a.tokens.iter().find(|t| t.token == TOKEN))
        .map_or(0, |t| t.position)
}

/// Waits until no lock is in flight anywhere and both sides of every account hold the same
/// state, then returns the views.
pub async fn settle_down(nodes: &[&NodeProcess]) -> Vec<NodeView> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut views = Vec::new();
        for node in nodes {
            views.push(node.view().await);
        }
        let by_entity: BTreeMap<EntityId, &NodeView> =
            views.iter().map(|v| (v.status.entity, v)).collect();
        let quiet = views.iter().all(|v| {
            v.htlcs.is_empty()
                && v.accounts.iter().all(|a| {
                    a.tokens.iter().all(|t| t.our_hold == 0 && t.peer_hold == 0)
                        && by_entity.get(&a.peer).is_none_or(|peer| {
                            peer.accounts.iter().any(|b| {
                                b.peer == v.status.entity
                                    && b.state_hash == a.state_hash
                                    && b.height == a.height
                            })
                        })
                })
        });
        if quiet {
            return views;
        }
        assert!(
            Instant::now() < deadline,
            "the network never settled: {:#?}",
            views
                .iter()
                .map(|v| (&v.status.name, &v.htlcs, &v.accounts))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- nodes in this process

/// A node started in this test process (no control socket of its own is needed: requests go
/// through its link), in `root/<name>`, with the key `[seed; 32]`.
pub async fn start_in_process(
    root: &Path,
    chain: &Chain,
    name: &str,
    hub: bool,
    dial: Vec<String>,
    seed: u8,
) -> xln::node::RunningNode {
    let chain_config = xln::chain::client::ChainConfig::load(&chain.chain_file).unwrap();
    let mut config = xln::config::Config::parse(&format!("name = \"{name}\"\n")).unwrap();
    config.hub = hub;
    config.listen = hub.then(|| ([127, 0, 0, 1], 0).into());
    config.dial = dial;
    xln::node::start(xln::node::NodeSetup {
        paths: xln::config::Paths::resolve(Some(&root.join(name)), None).unwrap(),
        config,
        key: SignerKey::from_bytes(&[seed; 32]).unwrap(),
        chain: chain_config,
    })
    .await
    .unwrap()
}

/// Repeats `request` on an in-process node until it is taken (e.g. while gossip has not
/// arrived yet), for half a minute at most.
pub async fn ask_link_until_done(link: &xln::api::NodeLink, request: Request) -> Response {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match link.ask(request.clone()).await.unwrap() {
            Response::Error { message } if Instant::now() < deadline => {
                let _ = message;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Response::Error { message } => panic!("{request:?} never taken: {message}"),
            response => return response,
        }
    }
}

/// The newest view of an in-process node, built for this request.
pub async fn link_view(link: &xln::api::NodeLink) -> NodeView {
    match link.ask(Request::View).await.unwrap() {
        Response::View(view) => *view,
        other => panic!("{other:?}"),
    }
}

/// Asks for views until `done` holds for one (or half a minute passes), and returns it.
pub async fn wait_view(
    link: &xln::api::NodeLink,
    what: &str,
    done: impl Fn(&NodeView) -> bool,
) -> NodeView {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = link_view(link).await;
        if done(&view) {
            return view;
        }
        assert!(Instant::now() < deadline, "never got there: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
