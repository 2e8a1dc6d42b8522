//! Nodes as real `xln node` processes on 127.0.0.1, over a devnet (anvil) each test starts:
//! a hub and two wallets paying through it; the hub killed with SIGKILL and restarted during a
//! stream of payments; a wallet cut off from the hub and healed; a 2-of-3 hub whose members run
//! in three processes. Every process and anvil is stopped when its guard drops, test passed or
//! failed.

mod support;

use std::time::Duration;
use support::*;
use xln::api::{AccountView, Request, Response};
use xln::node::control;
use xln_core::board::EntityId;
use xln_core::crypto::{Hash, SignerKey};

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
