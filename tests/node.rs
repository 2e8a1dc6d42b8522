//! Nodes as real `xln node` processes on 127.0.0.1, over a devnet (anvil) each test starts:
//! a hub and two wallets paying through it; the hub killed with SIGKILL and restarted during a
//! stream of payments; a wallet cut off from the hub and healed; a 2-of-3 hub whose members run
//! in three processes, one catching up by frames and then by a state snapshot. Every process and anvil is stopped when its guard drops, test passed or
//! failed.

mod support;

use std::time::Duration;
use support::*;
use xln::api::{AccountStatus, AccountView, NodeView, OrderState, Request, Response, TimeInForce};
use xln::node::control;
use xln_core::board::EntityId;
use xln_core::crypto::{Hash, SignerKey};
use xln_core::entity::KEPT_COMMITS;

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

    // The metrics endpoint counts the three payments at each of the three nodes (gauges follow
    // the view, rebuilt within a tick).
    settle_down(&[&hub, &alice, &bob]).await;
    wait_metric(&hub, "xln_forwards_total{result=\"forwarded\"}", 3.0).await;
    wait_metric(&alice, "xln_payments_total{result=\"succeeded\"}", 3.0).await;
    wait_metric(&bob, "xln_payments_total{result=\"received\"}", 3.0).await;
    wait_metric(&hub, "xln_accounts", 2.0).await;
    wait_metric(&hub, "xln_htlcs_in_flight", 0.0).await;
    assert!(metric(&hub.metrics().await, "xln_database_bytes").is_some_and(|b| b > 0.0));
    assert!(String::from_utf8_lossy(&alice.cli(&["status"]).stdout).contains("metrics http://"));

    // No secret reaches a log line, even at debug level.
    for node in [&hub, &alice, &bob] {
        let secrets = node.secrets();
        assert!(!secrets.is_empty() && secrets.iter().all(|s| s.len() == 64));
        let log = node.log().to_lowercase();
        assert!(
            log.contains("debug") || log.contains("info"),
            "{}: no log",
            node.name
        );
        for secret in secrets {
            assert!(!log.contains(&secret), "{}'s key is in its log", node.name);
        }
    }

    // Swap orders from the CLI. With TETH credit in the account, an immediate-or-cancel
    // order meets the hub's empty book and is closed untouched.
    let credit_teth = alice.cli(&["credit", "hub", "TETH", "10"]);
    assert!(credit_teth.status.success());
    let swap = alice.cli(&["swap", "hub", "TUSD", "1", "TETH", "2", "--tif", "ioc"]);
    let stdout = String::from_utf8_lossy(&swap.stdout);
    assert!(
        swap.status.success(),
        "{}",
        String::from_utf8_lossy(&swap.stderr)
    );
    assert!(
        stdout.starts_with("placed: order ") && stdout.contains("IOC"),
        "{stdout}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let orders = alice.cli(&["--json", "orders"]);
        let json: serde_json::Value = serde_json::from_slice(&orders.stdout).unwrap();
        if json["orders"]["orders"][0]["state"] == "cancelled" {
            assert_eq!(json["orders"]["orders"][0]["filled"], 0, "{json}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{json}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = alice.cli(&["orders"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(": cancelled, 0 TUSD given"));
    for (args, reason) in [
        (&["orders", "cancel", "hub", "999"][..], "no offer 999"),
        (&["swap", "hub", "TUSD", "0", "TETH", "1"][..], "above zero"),
        (
            &["swap", "hub", "TUSD", "1", "XYZ", "1"][..],
            "unknown token",
        ),
        (
            &["swap", "hub", "TUSD", "5000", "TETH", "1"][..],
            "exceeds the capacity",
        ),
    ] {
        let refused = alice.cli(args);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }

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

/// Netting from the CLI: a hub whose two wallets' payments left one owing it and it owing the
/// other settles both debts in one batch on chain; the wallets' nodes sign on their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_settles_its_accounts_debts_in_one_batch() {
    let root = tempfile::tempdir().unwrap();
    let chain = chain(root.path()).await;
    // Funded keys (keys.example): deposits and batches need gas.
    let keys_file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keys.example");
    let keys =
        xln::chain::devnet::parse_keys(&std::fs::read_to_string(keys_file).unwrap()).unwrap();
    let key = |name: &str| &keys.iter().find(|k| k.name == name).unwrap().key;
    let port = free_port();
    let with_key = |spec: NodeSpec<'static>, name: &str| NodeSpec {
        key: Some(key(name)),
        ..spec
    };
    let mut hub = NodeProcess::init(
        root.path(),
        &chain,
        with_key(NodeSpec::hub("hub"), "hub"),
        Some(port),
    );
    let mut alice = NodeProcess::init(
        root.path(),
        &chain,
        with_key(NodeSpec::wallet("alice", port), "alice"),
        None,
    );
    let mut bob = NodeProcess::init(
        root.path(),
        &chain,
        with_key(NodeSpec::wallet("bob", port), "bob"),
        None,
    );
    for node in [&mut hub, &mut alice, &mut bob] {
        node.run().await;
    }
    connect(&hub, &[&alice, &bob]).await;
    wait_route(&alice, &bob, 100 * UNIT).await;
    let (alice_id, bob_id) = (alice.entity().await, bob.entity().await);
    assert_eq!(pay(&alice, bob_id, 13 * UNIT).await, Ok(13 * UNIT));
    for node in [&alice, &hub] {
        let deposit = node.cli(&["deposit", "TUSD", "50"]);
        assert!(
            deposit.status.success(),
            "{}",
            String::from_utf8_lossy(&deposit.stderr)
        );
    }

    // Once the hub has seen Alice's reserve, its proposal settles both debts in full.
    let netting = |node: &NodeProcess| node.cli_json(&["netting"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let plan = loop {
        let json = netting(&hub);
        let plan = json["netting"]["plans"][0].clone();
        let settles: Vec<String> = plan["accounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a["settles"].to_string())
            .collect();
        if settles.len() == 2 && settles.iter().all(|s| *s == (13 * UNIT).to_string()) {
            break plan;
        }
        assert!(std::time::Instant::now() < deadline, "{json}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(plan["before"]["settlements"], 2, "{plan}");
    assert_eq!(plan["after"]["settlements"], 1, "{plan}");
    assert_eq!(plan["reserve_movement"], 0, "{plan}");
    let listed = String::from_utf8_lossy(&hub.cli(&["netting"]).stdout).to_string();
    assert!(
        listed.contains("2/2 accounts in 1 tx instead of 2"),
        "{listed}"
    );

    let id = plan["token"].to_string();
    let refused = hub.cli(&["netting", "execute", "999"]);
    assert!(!refused.status.success());
    let executed = hub.cli(&["netting", "execute", &id]);
    let stdout = String::from_utf8_lossy(&executed.stdout);
    assert!(
        executed.status.success() && stdout.contains("one batch"),
        "{stdout}{}",
        String::from_utf8_lossy(&executed.stderr)
    );

    // Both debts are gone once the batch landed; Alice paid Bob through the hub's reserve.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let json = netting(&hub);
        if json["netting"]["plans"]
            .as_array()
            .is_some_and(|p| p.is_empty())
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{json}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reserve = |view: &NodeView| view.reserves.iter().map(|r| r.reserve).sum::<u128>();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let views = [hub.view().await, alice.view().await, bob.view().await];
        let reserves = views.each_ref().map(reserve);
        if reserves == [50 * UNIT, 37 * UNIT, 13 * UNIT] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{reserves:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let hub_view = hub.view().await;
    let batches: Vec<&str> = hub_view
        .log
        .iter()
        .map(|l| l.text.as_str())
        .filter(|t| t.contains("batch of"))
        .collect();
    assert!(
        batches
            .iter()
            .any(|t| t.contains("batch of 2 operation(s)")),
        "{batches:?}"
    );
    let views = settle_down(&[&hub, &alice, &bob]).await;
    assert_eq!(position(&views[0].accounts, alice_id), 0);
    assert_eq!(position(&views[0].accounts, bob_id), 0);
    // `settle` from the CLI: the account is flat, so a one-line reason and a non-zero exit.
    let settle = alice.cli(&["settle", "hub"]);
    let stderr = String::from_utf8_lossy(&settle.stderr);
    assert!(!settle.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("nothing to settle"), "{stderr}");
    // And one that settles: Bob pays Alice 2 through the hub, then settles his debt with the
    // hub on his own; the hub's node signs, Bob's submits.
    assert_eq!(pay(&bob, alice_id, 2 * UNIT).await, Ok(2 * UNIT));
    let settle = bob.cli(&["settle", "hub"]);
    let stdout = String::from_utf8_lossy(&settle.stdout);
    assert!(
        settle.status.success() && stdout.contains("proposed"),
        "{stdout}{}",
        String::from_utf8_lossy(&settle.stderr)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let views = settle_down(&[&hub, &bob]).await;
        if position(&views[0].accounts, bob_id) == 0 && reserve(&views[1]) == 11 * UNIT {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", bob.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A single signer's dispute goes on chain at once, answered with its transaction; both
    // sides see the account disputed.
    let out = alice.cli(&["dispute", "hub"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("mined in block"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_disputed(&alice, hub.entity().await).await;
    wait_disputed(&hub, alice_id).await;
}

/// Netting across hubs: three hubs whose payments left each owing the next. Hub A learns the
/// B–C account from the positions B and C share, proposes, both agree, and one fee-free loop
/// clears every debt off chain; nobody's net moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_clear_a_cycle_of_debts_off_chain() {
    let root = tempfile::tempdir().unwrap();
    let chain = chain(root.path()).await;
    let ports = [free_port(), free_port(), free_port()];
    let names = ["hub-a", "hub-b", "hub-c"];
    let mut hubs: Vec<NodeProcess> = (0..3)
        .map(|i| {
            let spec = NodeSpec {
                dial: ports[..i].to_vec(),
                ..NodeSpec::hub(names[i])
            };
            NodeProcess::init(root.path(), &chain, spec, Some(ports[i]))
        })
        .collect();
    for hub in &mut hubs {
        hub.run().await;
    }
    // Accounts A–B, B–C and C–A, with credit both ways.
    for (from, to) in [(1, 0), (2, 1), (2, 0)] {
        open(&hubs[from], &hubs[to]).await;
        credit(&hubs[from], &hubs[to], 1_000 * UNIT).await;
        wait_account(&hubs[to], &hubs[from]).await;
        credit(&hubs[to], &hubs[from], 1_000 * UNIT).await;
    }
    let mut ids = Vec::new();
    for hub in &hubs {
        ids.push(hub.entity().await);
    }
    // A pays B 10, B pays C 10, C pays A 10: each owes the next 10 on credit.
    for (from, to) in [(0, 1), (1, 2), (2, 0)] {
        wait_route(&hubs[from], &hubs[to], 10 * UNIT).await;
        assert_eq!(pay(&hubs[from], ids[to], 10 * UNIT).await, Ok(10 * UNIT));
    }
    let views = settle_down(&[&hubs[0], &hubs[1], &hubs[2]]).await;
    assert_eq!(position(&views[0].accounts, ids[1]), -10 * UNIT as i128);

    // Once B's or C's positions reached A, A's proposal clears the cycle off chain.
    let netting = |node: &NodeProcess| node.cli_json(&["netting"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let plan = loop {
        let json = netting(&hubs[0]);
        let plan = json["netting"]["plans"][0].clone();
        if plan["cycles"].as_array().is_some_and(|c| c.len() == 1) {
            break plan;
        }
        assert!(std::time::Instant::now() < deadline, "{json}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        plan["cycles"][0]["amount"],
        serde_json::json!(10 * UNIT),
        "{plan}"
    );
    // Before: two accounts to settle on chain; after the cycle, nothing is left to settle.
    assert_eq!(plan["before"]["settlements"], 2, "{plan}");
    assert_eq!(plan["after"]["settlements"], 0, "{plan}");
    assert_eq!(plan["after"]["exposure"], 0, "{plan}");
    let listed = String::from_utf8_lossy(&hubs[0].cli(&["netting"]).stdout).to_string();
    assert!(listed.contains("1 cycle(s) off chain"), "{listed}");
    let executed = hubs[0].cli(&["netting", "execute", &plan["token"].to_string()]);
    let stdout = String::from_utf8_lossy(&executed.stdout);
    assert!(
        executed.status.success() && stdout.contains("asked to agree"),
        "{stdout}{}",
        String::from_utf8_lossy(&executed.stderr)
    );

    // Every account ends flat: each debt dropped by 10, and each hub's net (zero) is unchanged.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let views = settle_down(&[&hubs[0], &hubs[1], &hubs[2]]).await;
        let positions: Vec<i128> = [(0, 1), (1, 2), (2, 0)]
            .iter()
            .map(|&(at, peer)| position(&views[at].accounts, ids[peer]))
            .collect();
        if positions == [0, 0, 0] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{positions:?}\n{}",
            hubs[0].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = hubs[0].log();
    assert!(log.contains("NettingFinished"), "{log}");
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
    // The proposer's key is a funded one (keys.example): it pays for the board's batches.
    let keys_file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keys.example");
    let funded =
        xln::chain::devnet::parse_keys(&std::fs::read_to_string(keys_file).unwrap()).unwrap();
    let funded = funded.iter().find(|k| k.name == "hub").unwrap().key.clone();
    let keys: Vec<SignerKey> = std::iter::once(funded)
        .chain((1..3u8).map(|i| SignerKey::from_bytes(&[0x51 + i; 32]).unwrap()))
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

    // The member killed first missed the frames of two payments. The proposer restarts too, so
    // the messages it had queued for that member are gone. Restarted, the member hears of the
    // next frame, which is ahead of its height: it asks for the commits it lacks and reaches
    // the others' height.
    hub[0].stop();
    hub[0].run().await;
    hub[2].run().await;
    assert_eq!(pay(&alice, bob_id, UNIT).await, Ok(UNIT));
    settle_down(&[&hub[0], &alice, &bob]).await;
    let height = hub[0].view().await.status.height;
    wait_metric(&hub[2], "xln_entity_height", height as f64).await;

    // Killed again, the member misses more frames than members keep (about 65 payments, 3 s):
    // restarted as before, it catches up from the proposer's state instead of its frames.
    hub[2].kill();
    while hub[0].view().await.status.height <= height + KEPT_COMMITS as u64 + 1 {
        assert_eq!(pay(&alice, bob_id, UNIT / 1000).await, Ok(UNIT / 1000));
    }
    hub[0].stop();
    hub[0].run().await;
    hub[2].run().await;
    assert_eq!(pay(&alice, bob_id, UNIT / 1000).await, Ok(UNIT / 1000));
    settle_down(&[&hub[0], &alice, &bob]).await;
    let height = hub[0].view().await.status.height;
    wait_metric(&hub[2], "xln_entity_height", height as f64).await;
    let log = hub[2].view().await.log;
    assert!(
        log.iter().any(|l| l.text.contains("by a state snapshot")),
        "{log:?}"
    );
    // The snapshot came as an input like any other: a restart replays it from the log.
    hub[2].stop();
    hub[2].run().await;
    wait_metric(&hub[2], "xln_entity_height", height as f64).await;

    // On chain: the board signs a batch of what its frames committed. With one member down,
    // the proposer deposits (from its wallet), then moves reserve into collateral with Alice:
    // a batch the chain takes only with two members' signatures over its digest, here the
    // proposer's and those of the member that caught up.
    hub[1].kill();
    let deposit = hub[0].cli(&["deposit", "TUSD", "5"]);
    assert!(
        deposit.status.success(),
        "{}",
        String::from_utf8_lossy(&deposit.stderr)
    );
    let alice_id = alice.entity().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        // Refused until the entity has seen its reserve on chain.
        let out = hub[0].cli(&["collateral", &alice_id.to_string(), "TUSD", "1"]);
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let view = hub[0].view().await;
        if collateral_of(&view, alice_id) == UNIT {
            assert!(
                view.log.iter().any(|l| l.text.contains("the board signed")),
                "the batch went through a signing round"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", view.log);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Alice's node sees the collateral too.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while collateral_of(&alice.view().await, hub_id) != UNIT {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Alice proposes to settle the account: the hub's board accepts it in a signing round
    // (each member checks the settlement is pending in its own account) and Alice's account
    // holds the board's quorum.
    let out = alice.cli(&["settle", &hub_id.to_string()]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = hub[0].view().await.log;
        if log.iter().any(|l| {
            l.text.contains("acceptance of the settlement") && l.text.contains("board signed")
        }) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Still with one member down, the hub disputes its account with Bob on chain: the board
    // commits the dispute (its frame takes the proof from the committed account), the members
    // online co-sign the batch (each only for a dispute its replica committed) and both sides
    // see the dispute on chain. Bad input is refused with one line.
    let asked_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let bad = hub[0].cli(&["dispute", "nobody"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no known entity is named"), "{stderr}");
    let out = hub[0].cli(&["dispute", &bob_id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The chain takes the start only with the board's quorum (2 of 3) over the batch.
    wait_disputed(&hub[0], bob_id).await;
    let log = hub[0].view().await.log;
    assert!(
        log.iter().any(|l| l.timestamp >= asked_at
            && l.text.contains("batch of")
            && l.text.contains("the board signed")),
        "{log:?}"
    );
    wait_disputed(&bob, hub_id).await;
}

/// Waits until `node` shows its account with `peer` in a dispute on chain.
async fn wait_disputed(node: &NodeProcess, peer: EntityId) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view = node.view().await;
        if view
            .accounts
            .iter()
            .any(|a| a.peer == peer && a.status == AccountStatus::Disputed)
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", view.log);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn collateral_of(view: &NodeView, peer: EntityId) -> u128 {
    view.accounts
        .iter()
        .filter(|a| a.peer == peer)
        .flat_map(|a| &a.tokens)
        .map(|t| t.collateral)
        .sum()
}

/// A tmux session, killed on drop.
struct Tmux(String);

impl Tmux {
    fn capture(&self) -> String {
        let out = std::process::Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let status = std::process::Command::new("tmux")
            .args(["send-keys", "-t", &self.0, keys])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    async fn wait_for(&self, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let screen = self.capture();
            if screen.contains(text) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{text:?} never showed; the screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn alive(&self) -> bool {
        std::process::Command::new("tmux")
            .args(["has-session", "-t", &self.0])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

/// The real binary in a terminal: `xln demo` opens the console with its hint, keys switch
/// screens and open the help, `q` quits and the demo network stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_console_runs_in_a_real_terminal() {
    let root = tempfile::tempdir().unwrap();
    let command = format!(
        "{} --data-dir {} demo",
        env!("CARGO_BIN_EXE_xln"),
        root.path().display()
    );
    let name = format!("xln-e2e-{}", std::process::id());
    let status = std::process::Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &name,
            "-x",
            "100",
            "-y",
            "30",
            &command,
        ])
        .status()
        .expect("tmux is needed for this test");
    assert!(status.success());
    let tmux = Tmux(name);
    tmux.wait_for("First run").await;
    tmux.wait_for("alice").await;
    tmux.keys("2");
    tmux.wait_for("Accounts (1)").await;
    tmux.wait_for("synced").await;
    tmux.keys("?");
    tmux.wait_for("Keys").await;
    tmux.keys("Escape");
    tmux.keys("9");
    tmux.wait_for("succeeded").await;
    tmux.keys("q");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tmux.alive() {
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not stop on q"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The console's key-driven flow against nodes running in this process: open an account,
/// set credit, pay across the hub, and see the payment succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_keys_open_an_account_set_credit_and_pay() {
    use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use xln::api::NodeLink;
    use xln::tui::{Console, ConsoleOptions};

    let root = tempfile::tempdir().unwrap();
    let chain = chain(root.path()).await;
    let config = xln::chain::client::ChainConfig::load(&chain.chain_file).unwrap();
    let start = |name: &str, listen: bool, dial: Vec<String>, seed: u8| {
        let dir = root.path().join(name);
        let mut config_toml = xln::config::Config::parse(&format!("name = \"{name}\"\n")).unwrap();
        config_toml.hub = listen;
        config_toml.listen = listen.then(|| ([127, 0, 0, 1], 0).into());
        config_toml.dial = dial;
        xln::node::start(xln::node::NodeSetup {
            paths: xln::config::Paths::resolve(Some(&dir), None).unwrap(),
            config: config_toml,
            key: SignerKey::from_bytes(&[seed; 32]).unwrap(),
            chain: config.clone(),
        })
    };
    let hub = start("hub", true, Vec::new(), 0x61).await.unwrap();
    let url = format!("ws://{}", hub.listen_addr.unwrap());
    let alice = start("alice", false, vec![url.clone()], 0x62)
        .await
        .unwrap();
    let bob = start("bob", false, vec![url], 0x63).await.unwrap();
    let ask = |link: &NodeLink, request: Request| {
        let link = link.clone();
        async move {
            let mut last = String::new();
            for _ in 0..300 {
                match link.ask(request.clone()).await.unwrap() {
                    Response::Error { message } => {
                        last = message;
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    response => return response,
                }
            }
            panic!("{request:?} never taken: {last}");
        }
    };
    // Bob and the hub set up by requests; Alice by keys.
    let hub_id = hub.entity.to_string();
    ask(
        &bob.link(),
        Request::OpenAccount {
            peer: hub_id.clone(),
        },
    )
    .await;
    ask(
        &bob.link(),
        Request::Credit {
            peer: hub_id.clone(),
            token: TOKEN,
            amount: 100 * UNIT,
        },
    )
    .await;

    let link = alice.link();
    let mut console =
        Console::new(&ConsoleOptions::default(), link.views.borrow().clone()).unwrap();
    let key = |console: &mut Console, code: KeyCode| {
        console.handle_event(&Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    };
    let text = |console: &mut Console, text: &str| {
        for c in text.chars() {
            console.handle_event(&Event::Key(KeyEvent::new(
                KeyCode::Char(c),
                KeyModifiers::NONE,
            )));
        }
    };
    let render = |console: &Console| {
        let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
        terminal.draw(|frame| console.draw(frame)).unwrap();
        terminal.backend().to_string()
    };
    // Sends what the console asked for, hands back the answers and the newest view, until
    // `done` holds for the screen (or a minute passes).
    async fn pump(
        console: &mut Console,
        link: &NodeLink,
        render: &dyn Fn(&Console) -> String,
        done: &dyn Fn(&str) -> bool,
    ) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            for (id, request) in console.take_requests() {
                let response = link.ask(request).await.unwrap();
                console.on_response(id, response);
            }
            console.set_view(link.views.borrow().clone());
            let screen = render(console);
            if done(&screen) {
                return screen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never got there:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Open an account with the hub (its name completes once gossip brought its profile).
    pump(&mut console, &link, &render, &|_| {
        link.views.borrow().profiles.iter().any(|p| p.name == "hub")
    })
    .await;
    key(&mut console, KeyCode::Char('2'));
    key(&mut console, KeyCode::Char('o'));
    text(&mut console, "hub");
    key(&mut console, KeyCode::Tab);
    key(&mut console, KeyCode::Enter);
    pump(&mut console, &link, &render, &|_| {
        !link.views.borrow().accounts.is_empty()
    })
    .await;
    // Extend credit to the hub: the hub learns of the account from this first frame.
    // A new account has no token yet: the form starts on the token, tab goes to the amount.
    key(&mut console, KeyCode::Char('c'));
    key(&mut console, KeyCode::Tab);
    text(&mut console, "100");
    key(&mut console, KeyCode::Enter);
    pump(&mut console, &link, &render, &|_| {
        link.views
            .borrow()
            .accounts
            .iter()
            .any(|a| a.tokens.iter().any(|t| t.own_credit == 100 * UNIT))
    })
    .await;
    ask(
        &hub.link(),
        Request::Credit {
            peer: alice.entity.to_string(),
            token: TOKEN,
            amount: 100 * UNIT,
        },
    )
    .await;
    ask(
        &hub.link(),
        Request::Credit {
            peer: bob.entity.to_string(),
            token: TOKEN,
            amount: 100 * UNIT,
        },
    )
    .await;
    // Wait for a route, then pay Bob 2.5 TUSD from the Pay screen.
    ask(
        &link,
        Request::Routes {
            destination: bob.entity.to_string(),
            token: TOKEN,
            amount: 3 * UNIT,
        },
    )
    .await;
    pump(&mut console, &link, &render, &|_| {
        let view = link.views.borrow();
        view.profiles.iter().any(|p| p.name == "bob")
            && view
                .accounts
                .iter()
                .any(|a| a.tokens.iter().any(|t| t.out_capacity >= 3 * UNIT))
    })
    .await;
    key(&mut console, KeyCode::Char('3'));
    key(&mut console, KeyCode::Char('e'));
    text(&mut console, "bob");
    key(&mut console, KeyCode::Tab);
    key(&mut console, KeyCode::Tab);
    text(&mut console, "2.5");
    key(&mut console, KeyCode::Enter);
    pump(&mut console, &link, &render, &|screen| {
        screen.contains("fee")
    })
    .await;
    key(&mut console, KeyCode::Enter);
    let screen = pump(&mut console, &link, &render, &|screen| {
        screen.contains("succeeded")
    })
    .await;
    assert!(screen.contains("2.5"), "{screen}");
    // The HTLC screen is empty again: the lock resolved.
    key(&mut console, KeyCode::Char('4'));
    pump(&mut console, &link, &render, &|_| {
        link.views.borrow().htlcs.is_empty()
    })
    .await;
    // Bob's view follows within a view rebuild (at most every 100 ms while busy).
    let bob_link = bob.link();
    pump(&mut console, &link, &render, &|_| {
        position(&bob_link.views.borrow().accounts, hub.entity) == (5 * UNIT / 2) as i128
    })
    .await;
    for node in [alice, bob, hub] {
        node.shutdown().await.unwrap();
    }
}

/// Swaps through a hub, with nodes in this process: Alice rests an order in the hub's book,
/// Bob's opposite order fills part of it through the book, both see the fills in their views,
/// and Alice cancels the rest. Bad orders and cancels are refused with a reason and change
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_fill_through_the_hubs_book_and_bad_ones_change_nothing() {
    const SECOND_TOKEN: u32 = 2;
    let root = tempfile::tempdir().unwrap();
    let chain = chain(root.path()).await;
    let hub = start_in_process(root.path(), &chain, "hub", true, Vec::new(), 0x71).await;
    let url = format!("ws://{}", hub.listen_addr.unwrap());
    let alice =
        start_in_process(root.path(), &chain, "alice", false, vec![url.clone()], 0x72).await;
    let bob = start_in_process(root.path(), &chain, "bob", false, vec![url], 0x73).await;
    let hub_id = hub.entity;
    // Each wallet opens its account and lets the hub owe it in both tokens (so both are in
    // the account); the hub lets each wallet owe it 100 of each.
    for wallet in [&alice, &bob] {
        let link = wallet.link();
        ask_link_until_done(
            &link,
            Request::OpenAccount {
                peer: hub_id.to_string(),
            },
        )
        .await;
        for token in [TOKEN, SECOND_TOKEN] {
            ask_link_until_done(
                &link,
                Request::Credit {
                    peer: hub_id.to_string(),
                    token,
                    amount: 100 * UNIT,
                },
            )
            .await;
        }
    }
    for wallet in [&alice, &bob] {
        for token in [TOKEN, SECOND_TOKEN] {
            ask_link_until_done(
                &hub.link(),
                Request::Credit {
                    peer: wallet.entity.to_string(),
                    token,
                    amount: 100 * UNIT,
                },
            )
            .await;
        }
    }
    let can_give = |view: &NodeView, token: u32, amount: u128| {
        view.accounts.iter().any(|a| {
            a.peer == hub_id
                && a.tokens
                    .iter()
                    .any(|t| t.token == token && t.out_capacity >= amount)
        })
    };
    wait_view(&alice.link(), "alice can give 30", |v| {
        can_give(v, TOKEN, 30 * UNIT)
    })
    .await;
    wait_view(&bob.link(), "bob can give 4", |v| {
        can_give(v, SECOND_TOKEN, 4 * UNIT)
    })
    .await;

    // Alice: 30 of the first token for at least 10 of the second. Nothing crosses: it rests.
    let order = |give_token, give_amount, want_token, want_amount| Request::PlaceOrder {
        peer: hub_id.to_string(),
        give_token,
        give_amount,
        want_token,
        want_amount,
        time_in_force: TimeInForce::GoodTillCancel,
        expires_in_secs: Some(3_600),
    };
    let placed = alice
        .link()
        .ask(order(TOKEN, 30 * UNIT, SECOND_TOKEN, 10 * UNIT))
        .await
        .unwrap();
    let Response::OrderPlaced(alices) = placed else {
        panic!("{placed:?}");
    };
    assert_eq!(alices.state, OrderState::Open);
    wait_view(&hub.link(), "alice's order in the hub's book", |v| {
        v.book.iter().any(|o| {
            o.owner == alice.entity && o.offer_id == alices.offer_id && o.remaining == 30 * UNIT
        })
    })
    .await;
    // Bob: 4 of the second for at least 12 of the first, exactly Alice's price: it fills at
    // once against Alice's order, which is left partly filled.
    let placed = bob
        .link()
        .ask(order(SECOND_TOKEN, 4 * UNIT, TOKEN, 12 * UNIT))
        .await
        .unwrap();
    let Response::OrderPlaced(bobs) = placed else {
        panic!("{placed:?}");
    };
    let bob_view = wait_view(&bob.link(), "bob's order filled", |v| {
        v.orders
            .iter()
            .any(|o| o.offer_id == bobs.offer_id && o.state == OrderState::Filled)
    })
    .await;
    let bobs = bob_view
        .orders
        .iter()
        .find(|o| o.offer_id == bobs.offer_id)
        .unwrap();
    assert_eq!((bobs.filled, bobs.received), (4 * UNIT, Some(12 * UNIT)));
    let alice_view = wait_view(&alice.link(), "alice's order partly filled", |v| {
        v.orders
            .iter()
            .any(|o| o.offer_id == alices.offer_id && o.state == OrderState::PartlyFilled)
    })
    .await;
    let partly = alice_view
        .orders
        .iter()
        .find(|o| o.offer_id == alices.offer_id)
        .unwrap();
    assert_eq!(
        (partly.filled, partly.received),
        (12 * UNIT, Some(4 * UNIT))
    );
    assert_eq!(
        position(&alice_view.accounts, hub_id),
        -12 * (UNIT as i128),
        "first token"
    );
    let hub_view = wait_view(&hub.link(), "the rest of alice's order rests", |v| {
        v.book
            .iter()
            .any(|o| o.offer_id == alices.offer_id && o.remaining == 18 * UNIT)
    })
    .await;
    assert_eq!(hub_view.book.len(), 1, "bob's order left no rest");

    // Refused with a reason, and nothing changes: beyond capacity, a zero amount, a token
    // the account does not hold, a cancel of an order that does not exist.
    let settled = |view: &NodeView| {
        let accounts: Vec<_> = view
            .accounts
            .iter()
            .map(|a| (a.peer, a.height, a.state_hash, a.queued))
            .collect();
        (accounts, view.orders.clone())
    };
    let before = settled(&link_view(&alice.link()).await);
    let refusals = [
        (
            order(TOKEN, 1_000 * UNIT, SECOND_TOKEN, UNIT),
            "exceeds the capacity",
        ),
        (order(TOKEN, 0, SECOND_TOKEN, UNIT), "above zero"),
        (
            order(TOKEN, UNIT, 9, UNIT),
            "token 9 is not in this account",
        ),
        (order(TOKEN, UNIT, TOKEN, UNIT), "one token for another"),
        (
            Request::CancelOrder {
                peer: hub_id.to_string(),
                offer_id: 999,
            },
            "no offer 999",
        ),
        (
            Request::CancelOrder {
                peer: "nobody".into(),
                offer_id: alices.offer_id,
            },
            "no known entity is named",
        ),
    ];
    for (request, reason) in refusals {
        match alice.link().ask(request.clone()).await.unwrap() {
            Response::Error { message } => {
                assert!(message.contains(reason), "{request:?}: {message}")
            }
            other => panic!("{request:?} taken: {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        settled(&link_view(&alice.link()).await),
        before,
        "a refusal changed something"
    );

    // Alice cancels the rest: the hold is released, the fill stays.
    let cancelled = alice
        .link()
        .ask(Request::CancelOrder {
            peer: hub_id.to_string(),
            offer_id: alices.offer_id,
        })
        .await
        .unwrap();
    assert!(matches!(cancelled, Response::Done { .. }), "{cancelled:?}");
    let alice_view = wait_view(&alice.link(), "alice's order cancelled", |v| {
        v.orders
            .iter()
            .any(|o| o.offer_id == alices.offer_id && o.state == OrderState::Cancelled)
    })
    .await;
    let hold: u128 = alice_view
        .accounts
        .iter()
        .flat_map(|a| &a.tokens)
        .map(|t| t.our_hold)
        .sum();
    assert_eq!(hold, 0, "the rest of the order is no longer held");
    assert_eq!(
        alice_view
            .orders
            .iter()
            .find(|o| o.offer_id == alices.offer_id)
            .unwrap()
            .filled,
        12 * UNIT
    );
    wait_view(&hub.link(), "the hub's book is empty", |v| {
        v.book.is_empty()
    })
    .await;
    for node in [alice, bob, hub] {
        node.shutdown().await.unwrap();
    }
}
