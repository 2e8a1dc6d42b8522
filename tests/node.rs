//! Nodes as real `xln node` processes on 127.0.0.1, over a devnet (anvil) each test starts:
//! a hub and two wallets paying through it; the hub killed with SIGKILL and restarted during a
//! stream of payments; a wallet cut off from the hub and healed; a 2-of-3 hub whose members run
//! in three processes. Every process and anvil is stopped when its guard drops, test passed or
//! failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xln::api::{AccountView, NodeView, Request, Response};
use xln::chain::devnet::{self, DevnetOptions};
use xln::node::control;
use xln_core::board::EntityId;
use xln_core::crypto::{Address, Hash, SignerKey};

const TOKEN: u32 = 1;
/// One token with 18 decimals.
const UNIT: u128 = 1_000_000_000_000_000_000;

/// A devnet (anvil + contracts) in this test process; anvil stops on drop.
struct Chain {
    _devnet: devnet::Devnet,
    chain_file: PathBuf,
}

async fn chain(root: &Path) -> Chain {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn xln() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xln"))
}

/// One `xln node` process and its data directory. Killed on drop.
struct NodeProcess {
    name: String,
    dir: PathBuf,
    child: Option<Child>,
}

struct NodeSpec<'a> {
    name: &'a str,
    listen: bool,
    dial: Vec<u16>,
    hub: bool,
    key: Option<&'a SignerKey>,
    /// TOML appended to the generated config (e.g. a `[board]`).
    extra: String,
}

impl<'a> NodeSpec<'a> {
    fn wallet(name: &'a str, hub_port: u16) -> Self {
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
    fn init(root: &Path, chain: &Chain, spec: NodeSpec, port: Option<u16>) -> Self {
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

    fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        let child = xln()
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--log", "info", "node"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning xln node");
        self.child = Some(child);
    }

    /// Waits until the control socket answers (the node recovered and listens).
    async fn wait_ready(&mut self) {
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

    async fn run(&mut self) {
        self.start();
        self.wait_ready().await;
    }

    /// SIGKILL: no clean shutdown, whatever was in flight is lost but the WAL.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    fn stop(&mut self) {
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

    async fn ask(&self, request: Request) -> Response {
        control::call(&self.socket(), &request)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", self.name))
    }

    async fn view(&self) -> NodeView {
        match self.ask(Request::View).await {
            Response::View(view) => *view,
            other => panic!("{}: {other:?}", self.name),
        }
    }

    async fn entity(&self) -> EntityId {
        self.view().await.status.entity
    }

    async fn signer(&self) -> Address {
        self.view().await.status.signer
    }

    /// Repeats `request` until it is taken (e.g. while gossip has not arrived yet).
    async fn ask_until_done(&self, request: Request) -> Response {
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

    /// Runs the `xln` binary as a client of this node.
    fn cli(&self, args: &[&str]) -> std::process::Output {
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

/// Opens an account of `wallet` with `hub` (once the hub's profile reached the wallet).
async fn open(wallet: &NodeProcess, hub: &NodeProcess) {
    let hub_id = hub.entity().await.to_string();
    wallet
        .ask_until_done(Request::OpenAccount { peer: hub_id })
        .await;
}

async fn credit(from: &NodeProcess, to: &NodeProcess, amount: u128) {
    let peer = to.entity().await.to_string();
    from.ask_until_done(Request::Credit {
        peer,
        token: TOKEN,
        amount,
    })
    .await;
}

/// The wallet → hub → wallet network with credit for `alice` to pay `bob` up to 1,000 units.
async fn hub_and_two_wallets(
    root: &Path,
    chain: &Chain,
) -> (NodeProcess, NodeProcess, NodeProcess) {
    let port = free_port();
    let hub_spec = NodeSpec {
        name: "hub",
        listen: true,
        dial: Vec::new(),
        hub: true,
        key: None,
        extra: String::new(),
    };
    let mut hub = NodeProcess::init(root, chain, hub_spec, Some(port));
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
async fn connect(hub: &NodeProcess, wallets: &[&NodeProcess]) {
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
async fn wait_route(from: &NodeProcess, to: &NodeProcess, amount: u128) {
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
async fn wait_account(a: &NodeProcess, b: &NodeProcess) {
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
async fn pay(from: &NodeProcess, to: EntityId, amount: u128) -> Result<u128, String> {
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

async fn wait_payment(from: &NodeProcess, hashlock: Hash, amount: u128) -> Result<u128, String> {
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

fn position(accounts: &[AccountView], peer: EntityId) -> i128 {
    accounts
        .iter()
        .find(|a| a.peer == peer)
        .and_then(|a| a.tokens.iter().find(|t| t.token == TOKEN))
        .map_or(0, |t| t.position)
}

/// Waits until no lock is in flight anywhere and both sides of every account hold the same
/// state, then returns the views.
async fn settle_down(nodes: &[&NodeProcess]) -> Vec<NodeView> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_and_two_wallets_pay_across_processes() {
    let root = tempfile::tempdir().unwrap();
    let chain = chain(root.path()).await;
    let (hub, alice, bob) = hub_and_two_wallets(root.path(), &chain).await;
    let bob_id = bob.entity().await;
    let hub_id = hub.entity().await;
    let alice_id = alice.entity().await;

    for amount in [5 * UNIT, 7 * UNIT] {
        assert_eq!(pay(&alice, bob_id, amount).await, Ok(amount));
    }
    let views = settle_down(&[&hub, &alice, &bob]).await;
    assert_eq!(position(&views[1].accounts, hub_id), -12 * (UNIT as i128));
    assert_eq!(position(&views[2].accounts, hub_id), 12 * (UNIT as i128));
    assert_eq!(position(&views[0].accounts, alice_id), 12 * (UNIT as i128));

    // Beyond the credit: refused with a reason, nothing moves.
    let refused = pay(&alice, bob_id, 5_000 * UNIT).await;
    assert!(refused.is_err(), "{refused:?}");

    // The CLI: human output, --json, and a one-line error with a non-zero exit.
    let status = alice.cli(&["status"]);
    assert!(status.status.success());
    assert!(String::from_utf8_lossy(&status.stdout).contains("alice entity"));
    let accounts = alice.cli(&["--json", "accounts"]);
    let json: serde_json::Value = serde_json::from_slice(&accounts.stdout).unwrap();
    assert!(json.get("accounts").is_some(), "{json}");
    let paid = alice.cli(&["pay", &bob_id.to_string(), "TUSD", "1.5"]);
    assert!(
        paid.status.success(),
        "{}",
        String::from_utf8_lossy(&paid.stderr)
    );
    assert!(String::from_utf8_lossy(&paid.stdout).contains("succeeded"));
    let bad = alice.cli(&["credit", "nobody", "TUSD", "1"]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no known entity is named"), "{stderr}");
    let bad_amount = alice.cli(&["pay", &bob_id.to_string(), "TUSD", "1.2.3"]);
    assert!(!bad_amount.status.success());

    // A clean stop and a restart find the same state.
    let before = settle_down(&[&hub, &alice, &bob]).await;
    let mut hub = hub;
    hub.stop();
    hub.run().await;
    let after = hub.view().await;
    let committed = |accounts: &[AccountView]| -> Vec<(EntityId, u64, Hash)> {
        accounts
            .iter()
            .map(|a| (a.peer, a.height, a.state_hash))
            .collect()
    };
    assert_eq!(committed(&after.accounts), committed(&before[0].accounts));
    assert_eq!(after.status.height, before[0].status.height);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_survive_the_hub_being_killed_and_restarted() {
    let root = tempfile::tempdir().unwrap();
    let chain = chain(root.path()).await;
    let (mut hub, alice, bob) = hub_and_two_wallets(root.path(), &chain).await;
    let bob_id = bob.entity().await;
    let hub_id = hub.entity().await;

    let payer = tokio::spawn({
        let socket = alice.socket();
        async move {
            let mut started = Vec::new();
            for i in 0..60u128 {
                let amount = UNIT + i;
                if let Ok(Response::PaymentStarted { hashlock, .. }) = control::call(
                    &socket,
                    &Request::Pay {
                        destination: bob_id.to_string(),
                        token: TOKEN,
                        amount,
                    },
                )
                .await
                {
                    started.push((hashlock, amount));
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            started
        }
    });
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        hub.kill();
        tokio::time::sleep(Duration::from_millis(200)).await;
        hub.run().await;
    }
    let started = payer.await.unwrap();
    assert!(
        started.len() >= 30,
        "only {} payments started",
        started.len()
    );
    let mut succeeded = 0u128;
    let mut count = 0;
    for (hashlock, amount) in &started {
        if let Ok(amount) = wait_payment(&alice, *hashlock, *amount).await {
            succeeded += amount;
            count += 1;
        }
    }
    assert!(count > 0, "no payment succeeded");
    let views = settle_down(&[&hub, &alice, &bob]).await;
    // Exactly once: Bob got what Alice saw succeed, no more, no less (no fees here).
    assert_eq!(position(&views[2].accounts, hub_id), succeeded as i128);
    assert_eq!(position(&views[1].accounts, hub_id), -(succeeded as i128));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_between_a_wallet_and_the_hub_heals_without_loss() {
    let root = tempfile::tempdir().unwrap();
    let chain = chain(root.path()).await;
    let (hub, alice, bob) = hub_and_two_wallets(root.path(), &chain).await;
    let bob_id = bob.entity().await;
    let hub_id = hub.entity().await;
    let alice_signer = alice.signer().await;

    assert!(pay(&alice, bob_id, UNIT).await.is_ok());
    // Cut Alice off; her payments wait, then go through when the link heals.
    hub.ask(Request::BlockPeer {
        signer: alice_signer,
        blocked: true,
    })
    .await;
    let mut started = Vec::new();
    for i in 0..5u128 {
        if let Response::PaymentStarted { hashlock, .. } = alice
            .ask(Request::Pay {
                destination: bob_id.to_string(),
                token: TOKEN,
                amount: UNIT + i,
            })
            .await
        {
            started.push((hashlock, UNIT + i));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    hub.ask(Request::BlockPeer {
        signer: alice_signer,
        blocked: false,
    })
    .await;
    let mut succeeded = UNIT;
    for (hashlock, amount) in started {
        if let Ok(amount) = wait_payment(&alice, hashlock, amount).await {
            succeeded += amount;
        }
    }
    let views = settle_down(&[&hub, &alice, &bob]).await;
    assert_eq!(position(&views[2].accounts, hub_id), succeeded as i128);
    assert_eq!(position(&views[1].accounts, hub_id), -(succeeded as i128));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_of_three_hub_in_three_processes_keeps_quorum() {
    let root = tempfile::tempdir().unwrap();
    let chain = chain(root.path()).await;
    let keys: Vec<SignerKey> = (0..3u8)
        .map(|i| SignerKey::from_bytes(&[0x51 + i; 32]).unwrap())
        .collect();
    let members: Vec<String> = keys
        .iter()
        .map(|k| format!("\"{}\"", k.address()))
        .collect();
    let board = format!(
        "[board]\nthreshold = 2\nmembers = [{}]\n",
        members.join(", ")
    );
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut hub: Vec<NodeProcess> = (0..3)
        .map(|i| {
            let name = ["hub-1", "hub-2", "hub-3"][i];
            NodeProcess::init(
                root.path(),
                &chain,
                NodeSpec {
                    name,
                    listen: true,
                    // Each member dials those before it: a full mesh.
                    dial: ports[..i].to_vec(),
                    hub: true,
                    key: Some(&keys[i]),
                    extra: board.clone(),
                },
                Some(ports[i]),
            )
        })
        .collect();
    let mut alice = NodeProcess::init(
        root.path(),
        &chain,
        NodeSpec::wallet("alice", ports[0]),
        None,
    );
    let mut bob = NodeProcess::init(root.path(), &chain, NodeSpec::wallet("bob", ports[0]), None);
    for member in &mut hub {
        member.run().await;
    }
    alice.run().await;
    bob.run().await;
    let hub_id = hub[0].entity().await;
    for member in &hub[1..] {
        assert_eq!(member.entity().await, hub_id, "one entity, three replicas");
    }
    connect(&hub[0], &[&alice, &bob]).await;
    wait_route(&alice, &bob, 100 * UNIT).await;
    let bob_id = bob.entity().await;
    assert_eq!(pay(&alice, bob_id, UNIT).await, Ok(UNIT));

    // One member down: two of three still commit.
    hub[2].kill();
    assert_eq!(pay(&alice, bob_id, 2 * UNIT).await, Ok(2 * UNIT));

    // Two down: nothing commits, the payment waits...
    hub[1].kill();
    let hashlock = match alice
        .ask(Request::Pay {
            destination: bob_id.to_string(),
            token: TOKEN,
            amount: 3 * UNIT,
        })
        .await
    {
        Response::PaymentStarted { hashlock, .. } => hashlock,
        other => panic!("{other:?}"),
    };
    let height = hub[0].view().await.status.height;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        hub[0].view().await.status.height,
        height,
        "no quorum, no commit"
    );
    match alice.ask(Request::PaymentStatus { hashlock }).await {
        Response::Payment(p) => assert_eq!(p.status, "pending"),
        other => panic!("{other:?}"),
    }
    // ...and goes through once a member returns.
    hub[1].run().await;
    assert_eq!(wait_payment(&alice, hashlock, 3 * UNIT).await, Ok(3 * UNIT));
    let views = settle_down(&[&hub[0], &alice, &bob]).await;
    assert_eq!(position(&views[2].accounts, hub_id), 6 * (UNIT as i128));
}
