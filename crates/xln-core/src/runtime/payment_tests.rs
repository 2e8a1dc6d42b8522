//! Multi-hop payments across runtimes wired together in process (an LDK-style harness):
//! routes of 1 to 5 hops, failures at a hop, expiry, a receiver that never reveals, a hop
//! offline mid-payment and payments crossing. After each test every account's two sides agree,
//! RCPAN holds, no lock or hold is left, and no intermediate hop lost money.

use super::*;
use crate::account::{AccountTx, FailReason};
use crate::delta::Side;
use crate::entity::{PaymentOrder, PaymentStatus, RouteHop};
use crate::onion::Preimage;
use crate::routing::FeePolicy;
use std::collections::BTreeSet;

pub(super) const TOKEN: u32 = 1;
pub(super) const CREDIT: u128 = 10_000;

pub(super) struct Node {
    pub(super) key: SignerKey,
    pub(super) board: Board,
    pub(super) id: EntityId,
    pub(super) fee: FeePolicy,
}

/// One single-signer entity per runtime, and a network that can hold a node's messages
/// while it is offline.
pub(super) struct Network {
    pub(super) nodes: Vec<Node>,
    pub(super) runtimes: Vec<Runtime>,
    pub(super) now: u64,
    pub(super) offline: BTreeSet<usize>,
    pub(super) held: Vec<Envelope>,
    pub(super) events: Vec<(usize, RuntimeEvent)>,
    /// A node whose reveals of preimages are held back (it ACKs locks but does not reveal),
    /// and the messages so held.
    pub(super) withholding: Option<usize>,
    pub(super) withheld: Vec<Envelope>,
}

impl Network {
    pub(super) fn new(count: usize, fee: FeePolicy) -> Self {
        let mut net = Network {
            nodes: Vec::new(),
            runtimes: Vec::new(),
            now: 1_000_000,
            offline: BTreeSet::new(),
            held: Vec::new(),
            events: Vec::new(),
            withholding: None,
            withheld: Vec::new(),
        };
        for i in 0..count {
            let key = SignerKey::from_bytes(&[i as u8 + 40; 32]).unwrap();
            let board = Board::single(key.address());
            let id = board.lazy_entity_id();
            net.runtimes.push(Runtime::new([key.clone()]));
            net.nodes.push(Node {
                key,
                board,
                id,
                fee,
            });
        }
        for i in 0..count {
            let node = &net.nodes[i];
            let add = Command::AddReplica {
                board: node.board.clone(),
                signer: node.key.address(),
                domain: Hash::ZERO,
            };
            let fees = Command::Submit {
                entity: node.id,
                txs: vec![EntityTx::SetFees(fee)],
            };
            net.input(i, vec![add, fees]);
        }
        net
    }

    pub(super) fn host(&self, to: &ReplicaId) -> usize {
        self.nodes.iter().position(|n| n.id == to.entity).unwrap()
    }

    pub(super) fn input(&mut self, at: usize, commands: Vec<Command>) {
        let out = self.runtimes[at].apply(RuntimeInput {
            timestamp: self.now,
            commands,
            ..RuntimeInput::default()
        });
        self.deliver_all(at, out);
    }

    pub(super) fn deliver_all(&mut self, from: usize, out: RuntimeOutput) {
        let mut queue: Vec<Envelope> = Vec::new();
        self.absorb(from, out, &mut queue);
        while !queue.is_empty() {
            let mut later = Vec::new();
            for envelope in std::mem::take(&mut queue) {
                let to = self.host(&envelope.to);
                if self.offline.contains(&to) {
                    self.held.push(envelope);
                    continue;
                }
                let out = self.runtimes[to].apply(RuntimeInput {
                    timestamp: self.now,
                    messages: vec![envelope],
                    ..RuntimeInput::default()
                });
                self.absorb(to, out, &mut later);
            }
            queue = later;
        }
    }

    fn absorb(&mut self, at: usize, out: RuntimeOutput, queue: &mut Vec<Envelope>) {
        for event in out.events {
            if let RuntimeEvent::Rejected(error) = &event {
                panic!("node {at} rejected an honest input: {error}");
            }
            self.events.push((at, event));
        }
        for message in out.messages {
            if let Some(message) = self.withhold(at, message) {
                queue.push(message);
            }
        }
    }

    /// Strips a reveal from what the withholding node sends, keeping it for later.
    fn withhold(&mut self, at: usize, mut message: Envelope) -> Option<Envelope> {
        if self.withholding != Some(at) {
            return Some(message);
        }
        let Payload::Account { message: inner, .. } = &mut message.payload else {
            return Some(message);
        };
        let reveals = inner.proposal.as_ref().is_some_and(|p| {
            p.frame.txs.iter().any(|tx| {
                matches!(
                    tx,
                    AccountTx::HtlcResolve {
                        resolution: crate::account::HtlcResolution::Secret(_),
                        ..
                    }
                )
            })
        });
        if !reveals {
            return Some(message);
        }
        self.withheld.push(message.clone());
        if let Payload::Account { message: inner, .. } = &mut message.payload {
            inner.proposal = None;
            // Nothing left to send without the reveal.
            inner.ack.as_ref()?;
        }
        Some(message)
    }

    /// Time passes; every online node gets a tick (and so cancels what expired).
    pub(super) fn tick(&mut self, ms: u64) {
        self.now += ms;
        for i in 0..self.runtimes.len() {
            if !self.offline.contains(&i) {
                self.input(i, vec![]);
            }
        }
    }

    pub(super) fn set_online(&mut self, node: usize, online: bool) {
        if online {
            self.offline.remove(&node);
            let held = std::mem::take(&mut self.held);
            for envelope in held {
                let to = self.host(&envelope.to);
                if self.offline.contains(&to) {
                    self.held.push(envelope);
                    continue;
                }
                let out = self.runtimes[to].apply(RuntimeInput {
                    timestamp: self.now,
                    messages: vec![envelope],
                    ..RuntimeInput::default()
                });
                self.deliver_all(to, out);
            }
        } else {
            self.offline.insert(node);
        }
    }

    /// Accounts along consecutive pairs, with credit both ways.
    pub(super) fn connect(&mut self, pairs: &[(usize, usize)]) {
        for &(a, b) in pairs {
            let (ida, idb) = (self.nodes[a].id, self.nodes[b].id);
            let open = Command::Submit {
                entity: ida,
                txs: vec![
                    EntityTx::OpenAccount {
                        peer: idb,
                        peer_board: self.nodes[b].board.clone(),
                    },
                    credit(idb, CREDIT),
                ],
            };
            self.input(a, vec![open]);
            self.input(
                b,
                vec![Command::Submit {
                    entity: idb,
                    txs: vec![credit(ida, CREDIT)],
                }],
            );
        }
    }

    pub(super) fn route(&self, path: &[usize]) -> Vec<RouteHop> {
        path.iter()
            .map(|&i| RouteHop {
                entity: self.nodes[i].id,
                key: self.nodes[i].key.public_key(),
                fee: self.nodes[i].fee,
            })
            .collect()
    }

    /// Starts a payment from `path[0]` along the rest of `path`; returns its hashlock.
    pub(super) fn pay(&mut self, path: &[usize], amount: u128, secret: u8) -> Hash {
        let route = self.route(&path[1..]);
        self.pay_along(path[0], route, amount, secret)
    }

    /// Starts a payment from node `from` along `route`; returns its hashlock.
    pub(super) fn pay_along(
        &mut self,
        from: usize,
        route: Vec<RouteHop>,
        amount: u128,
        secret: u8,
    ) -> Hash {
        let preimage = Preimage([secret; 32]);
        let order = PaymentOrder {
            token: TOKEN,
            amount,
            route,
            preimage,
            seed: [secret.wrapping_add(1); 32],
        };
        self.input(
            from,
            vec![Command::Submit {
                entity: self.nodes[from].id,
                txs: vec![EntityTx::Pay(Box::new(order))],
            }],
        );
        crate::crypto::keccak256(&preimage.0)
    }

    pub(super) fn status(&self, node: usize, hashlock: &Hash) -> PaymentStatus {
        self.entity(node).payments[hashlock].status.clone()
    }

    pub(super) fn entity(&self, node: usize) -> &EntityState {
        self.runtimes[node]
            .replica_of(&self.nodes[node].id)
            .unwrap()
            .state()
    }

    /// What a node is worth across its accounts: Δ from its own side.
    pub(super) fn worth(&self, node: usize) -> i128 {
        self.entity(node)
            .accounts
            .values()
            .map(|entry| {
                let delta = entry.account.state().deltas[&TOKEN].total().unwrap();
                match entry.account.side() {
                    Side::Left => delta,
                    Side::Right => -delta,
                }
            })
            .sum()
    }

    pub(super) fn assert_settled(&self) {
        for (i, node) in self.nodes.iter().enumerate() {
            let state = self.entity(i);
            for (peer, entry) in &state.accounts {
                let j = self.nodes.iter().position(|n| n.id == *peer).unwrap();
                let theirs = &self.entity(j).accounts[&node.id].account;
                let ours = &entry.account;
                assert_eq!(ours.height(), theirs.height(), "{i}-{j}: heights");
                assert_eq!(
                    ours.state().hash(),
                    theirs.state().hash(),
                    "{i}-{j}: states"
                );
                assert!(
                    ours.pending().is_none() && ours.mempool().is_empty(),
                    "{i}-{j}: busy"
                );
                assert!(ours.state().locks.is_empty(), "{i}-{j}: locks left");
                assert_eq!(ours.state().total_holds(), 0, "{i}-{j}: holds left");
                for delta in ours.state().deltas.values() {
                    assert!(delta.rcpan_holds().unwrap(), "{i}-{j}: RCPAN");
                }
            }
            assert!(
                state.awaiting.is_empty() && state.origins.is_empty() && state.receiving.is_empty(),
                "{i}: HTLC books"
            );
        }
    }
}

pub(super) fn credit(peer: EntityId, amount: u128) -> EntityTx {
    EntityTx::Account {
        peer,
        tx: AccountTx::SetCreditLimit {
            token: TOKEN,
            amount,
        },
    }
}

pub(super) fn chain(count: usize) -> Vec<(usize, usize)> {
    (0..count - 1).map(|i| (i, i + 1)).collect()
}

pub(super) const FEE: FeePolicy = FeePolicy {
    base: 2,
    ppm: 1_000,
};

#[test]
fn payments_over_one_to_five_hops_settle_and_pay_every_hop_its_fee() {
    let mut net = Network::new(6, FEE);
    net.connect(&chain(6));
    for hops in 1..=5usize {
        let path: Vec<usize> = (0..=hops).collect();
        let before: Vec<i128> = (0..6).map(|i| net.worth(i)).collect();
        let hashlock = net.pay(&path, 1_000, hops as u8);
        assert_eq!(
            net.status(0, &hashlock),
            PaymentStatus::Succeeded {
                preimage: [hops as u8; 32]
            }
        );
        let after: Vec<i128> = (0..6).map(|i| net.worth(i)).collect();
        assert_eq!(after[hops] - before[hops], 1_000, "{hops} hops: receiver");
        assert_eq!(
            received(&net, hops),
            vec![hashlock],
            "{hops} hops: received once"
        );
        net.events.clear();
        for hop in 1..hops {
            // Each hop forwards 1,000 plus the later fees and keeps its own: 2 + 0.1%.
            assert!(
                after[hop] - before[hop] >= 3,
                "{hops} hops: hop {hop} earned"
            );
        }
        let fees: i128 = (1..hops).map(|h| after[h] - before[h]).sum();
        assert_eq!(
            before[0] - after[0],
            1_000 + fees,
            "{hops} hops: sender paid"
        );
        net.assert_settled();
    }
}

/// Each node's signed profile, with its real account capacities.
fn profiles(net: &Network) -> crate::gossip::ProfileStore {
    use crate::board::QuorumSignature;
    use crate::gossip::{Profile, ProfileAccount, ProfileStore, SignedProfile};
    let mut store = ProfileStore::new();
    for (i, node) in net.nodes.iter().enumerate() {
        let accounts = net
            .entity(i)
            .accounts
            .iter()
            .map(|(peer, entry)| {
                let caps = entry
                    .account
                    .state()
                    .capacities(TOKEN, entry.account.side())
                    .unwrap();
                ProfileAccount {
                    peer: *peer,
                    token: TOKEN,
                    out_capacity: caps.out_capacity,
                    in_capacity: caps.in_capacity,
                }
            })
            .collect();
        let profile = Profile {
            entity_id: node.id,
            board: node.board.clone(),
            onion_key: node.key.public_key(),
            name: format!("node {i}"),
            endpoint: String::new(),
            is_hub: true,
            fee_base: node.fee.base,
            fee_ppm: node.fee.ppm,
            accounts,
            updated_at: net.now,
        };
        let signature = QuorumSignature(vec![node.key.sign(&profile.digest())]);
        store
            .merge(SignedProfile { profile, signature }, net.now)
            .unwrap();
    }
    store
}

#[test]
fn a_route_found_over_gossiped_profiles_carries_the_payment() {
    use crate::routing::{Graph, find_routes};
    let mut net = Network::new(5, FEE);
    // Two paths from 0 to 4: through 1 and 2, or through 3 alone.
    net.connect(&[(0, 1), (1, 2), (2, 4), (0, 3), (3, 4)]);
    let store = profiles(&net);
    let graph = Graph::from_profiles(store.profiles());
    let routes = find_routes(&graph, &net.nodes[0].id, &net.nodes[4].id, TOKEN, 2_000, 2).unwrap();
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0].hops.len(), 3, "the one-hub route is cheaper");
    let route = &routes[0];
    let hops = RouteHop::from_route(route, &store).unwrap();
    let before = net.worth(4);
    let hashlock = net.pay_along(0, hops, 2_000, 77);
    let payment = net.entity(0).payments[&hashlock].clone();
    assert!(matches!(payment.status, PaymentStatus::Succeeded { .. }));
    assert_eq!(payment.sent, route.amounts[0], "the fee routing predicted");
    assert_eq!(net.worth(4) - before, 2_000);
    net.assert_settled();
}

#[test]
fn only_the_latest_finished_payments_stay_in_the_state() {
    use crate::entity::KEPT_FINISHED_PAYMENTS;
    let mut net = Network::new(2, FEE);
    net.connect(&chain(2));
    let count = KEPT_FINISHED_PAYMENTS + 2;
    let secret = |i: usize| {
        let mut secret = [0u8; 32];
        secret[..8].copy_from_slice(&(i as u64).to_be_bytes());
        secret
    };
    let hashlock = |i: usize| crate::crypto::keccak256(&secret(i));
    let orders = (0..count)
        .map(|i| {
            let secret = secret(i);
            EntityTx::Pay(Box::new(PaymentOrder {
                token: TOKEN,
                amount: 1,
                route: net.route(&[1]),
                preimage: Preimage(secret),
                seed: [9; 32],
            }))
        })
        .collect();
    net.input(
        0,
        vec![Command::Submit {
            entity: net.nodes[0].id,
            txs: orders,
        }],
    );
    let state = net.entity(0);
    assert_eq!(state.payments.len(), KEPT_FINISHED_PAYMENTS);
    // The two that finished first are the ones forgotten.
    assert!(!state.payments.contains_key(&hashlock(0)));
    assert!(!state.payments.contains_key(&hashlock(1)));
    assert!(state.payments.contains_key(&hashlock(2)));
    assert!(state.payments.contains_key(&hashlock(count - 1)));
    assert!(
        state
            .payments
            .values()
            .all(|p| matches!(p.status, PaymentStatus::Succeeded { .. }))
    );
    assert_eq!(net.worth(1), count as i128);
    net.assert_settled();
}

#[test]
fn a_hop_without_capacity_cancels_back_with_its_name_and_reason() {
    let mut net = Network::new(4, FEE);
    net.connect(&chain(4));
    let hashlock = net.pay(&[0, 1, 2, 3], CREDIT * 3, 7);
    // Node 0 cannot even lock that much: the failure is its own.
    assert!(matches!(
        net.status(0, &hashlock),
        PaymentStatus::Failed(f) if f.reason == FailReason::NoCapacity && f.hop == net.nodes[0].id
    ));
    // Node 2 has spent its capacity toward 3: the next payment fails at node 2.
    net.pay(&[2, 3], CREDIT - 10, 8);
    let before: Vec<i128> = (0..4).map(|i| net.worth(i)).collect();
    let hashlock = net.pay(&[0, 1, 2, 3], 500, 9);
    match net.status(0, &hashlock) {
        PaymentStatus::Failed(f) => {
            assert_eq!(f.hop, net.nodes[2].id);
            assert_eq!(f.reason, FailReason::NoCapacity);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let after: Vec<i128> = (0..4).map(|i| net.worth(i)).collect();
    assert_eq!(before, after, "nothing moved");
    net.assert_settled();
}

#[test]
fn a_wrong_route_is_refused_by_the_hop_that_sees_it() {
    let mut net = Network::new(4, FEE);
    net.connect(&[(0, 1), (1, 2)]);
    // Node 1 has no account with node 3.
    let hashlock = net.pay(&[0, 1, 3], 100, 3);
    assert!(matches!(
        net.status(0, &hashlock),
        PaymentStatus::Failed(f) if f.reason == FailReason::UnknownNextHop && f.hop == net.nodes[1].id
    ));
    // A route that asks node 1 to forward for less than its fee.
    let cheap = FeePolicy { base: 0, ppm: 0 };
    let mut route = net.route(&[1, 2]);
    route[0].fee = cheap;
    let hashlock = net.pay_along(0, route, 100, 4);
    assert!(matches!(
        net.status(0, &hashlock),
        PaymentStatus::Failed(f) if f.reason == FailReason::FeeTooLow
    ));
    net.assert_settled();
}

/// The payments node `at` reported received.
fn received(net: &Network, at: usize) -> Vec<Hash> {
    net.events
        .iter()
        .filter_map(|(node, event)| match event {
            RuntimeEvent::Entity {
                event: crate::entity::EntityEvent::PaymentReceived { hashlock, .. },
                ..
            } if *node == at => Some(*hashlock),
            _ => None,
        })
        .collect()
}

/// The `ForwardRefused` reasons node `at` reported.
pub(super) fn refusals(net: &Network, at: usize) -> Vec<FailReason> {
    net.events
        .iter()
        .filter_map(|(node, event)| match event {
            RuntimeEvent::Entity {
                event: crate::entity::EntityEvent::ForwardRefused { failure, .. },
                ..
            } if *node == at => Some(failure.reason),
            _ => None,
        })
        .collect()
}

#[test]
fn onions_that_do_not_open_or_ask_too_much_are_refused_and_nothing_moves() {
    let mut net = Network::new(3, FEE);
    net.connect(&chain(3));
    let before: Vec<i128> = (0..3).map(|i| net.worth(i)).collect();

    // A route that names the wrong key for node 1: its layer does not open.
    let mut route = net.route(&[1, 2]);
    route[0].key = net.nodes[2].key.public_key();
    let hashlock = net.pay_along(0, route, 100, 51);
    assert!(matches!(
        net.status(0, &hashlock),
        PaymentStatus::Failed(f) if f.reason == FailReason::BadOnion && f.hop == net.nodes[1].id
    ));

    // A hand-made lock of 100 whose onion asks node 1 to forward 150; and one whose final
    // instruction carries a preimage that does not match.
    let forward_too_much = crate::onion::HopInstruction::Forward {
        next: net.nodes[2].id,
        amount: 150,
        expires_at_ms: net.now + 60_000,
        reveal_before_j_height: 30,
        payload: vec![],
    };
    let wrong_preimage = crate::onion::HopInstruction::Final {
        preimage: Preimage([1; 32]),
        amount: 100,
    };
    for (lock_id, instruction) in [(100u64, forward_too_much), (102, wrong_preimage)] {
        let hashlock = crate::crypto::keccak256(&[61; 32]);
        let payload = crate::onion::seal(
            &net.nodes[1].key.public_key(),
            &instruction,
            &[60; 32],
            &hashlock,
            &mut crate::onion::OnionCache::default(),
        )
        .unwrap();
        let lock = AccountTx::HtlcLock {
            lock_id: if net.nodes[0].id < net.nodes[1].id {
                lock_id
            } else {
                lock_id + 1
            },
            hashlock,
            token: TOKEN,
            amount: 100,
            expires_at_ms: net.now + 200_000,
            reveal_before_j_height: 100,
            payload,
        };
        net.input(
            0,
            vec![Command::Submit {
                entity: net.nodes[0].id,
                txs: vec![EntityTx::Account {
                    peer: net.nodes[1].id,
                    tx: lock,
                }],
            }],
        );
    }
    assert_eq!(
        refusals(&net, 1),
        vec![
            FailReason::BadOnion,
            FailReason::WrongAmount,
            FailReason::WrongPreimage
        ]
    );
    let after: Vec<i128> = (0..3).map(|i| net.worth(i)).collect();
    assert_eq!(before, after, "nothing moved");
    net.assert_settled();
}

#[test]
fn a_receiver_that_never_reveals_lets_every_lock_expire_and_cancel_back() {
    let mut net = Network::new(4, FEE);
    net.connect(&chain(4));
    let before: Vec<i128> = (0..4).map(|i| net.worth(i)).collect();
    // The receiver goes offline as soon as the lock reaches it: its instruction (and reveal)
    // never leaves.
    net.offline.insert(3);
    let hashlock = net.pay(&[0, 1, 2, 3], 300, 5);
    assert_eq!(net.status(0, &hashlock), PaymentStatus::Pending);
    // Past every expiry: node 2's lock to 3 is cancelled once 3 answers again (a cancel needs
    // both signatures); 1 and 0 cancel back as their locks expire.
    net.tick(crate::entity::FINAL_EXPIRY_MS + 4 * crate::entity::HOP_EXPIRY_MARGIN_MS);
    net.set_online(3, true);
    net.tick(1_000);
    match net.status(0, &hashlock) {
        PaymentStatus::Failed(f) => assert_eq!(f.reason, FailReason::Expired),
        other => panic!("expected expiry, got {other:?}"),
    }
    let after: Vec<i128> = (0..4).map(|i| net.worth(i)).collect();
    assert_eq!(before, after, "nobody gained or lost");
    net.assert_settled();
}

#[test]
fn a_receiver_that_reveals_only_after_expiry_gets_nothing_and_no_hop_loses() {
    let mut net = Network::new(4, FEE);
    net.connect(&chain(4));
    let before: Vec<i128> = (0..4).map(|i| net.worth(i)).collect();
    net.withholding = Some(3);
    let hashlock = net.pay(&[0, 1, 2, 3], 300, 31);
    assert_eq!(net.status(0, &hashlock), PaymentStatus::Pending);
    assert_eq!(net.withheld.len(), 1, "the receiver held its reveal back");
    // Past the expiry of node 2's incoming lock too, before anyone cancelled, the receiver
    // sends the reveal it kept, stamped before the expiry. Were node 2 to take it, it would pay
    // the receiver and be too late to claim from node 1; it refuses it as stale.
    net.now += crate::entity::FINAL_EXPIRY_MS + crate::entity::HOP_EXPIRY_MARGIN_MS + 1;
    let withheld = std::mem::take(&mut net.withheld);
    net.withholding = None;
    for envelope in withheld {
        let to = net.host(&envelope.to);
        let out = net.runtimes[to].apply(RuntimeInput {
            timestamp: net.now,
            messages: vec![envelope],
            ..RuntimeInput::default()
        });
        net.deliver_all(to, out);
    }
    for _ in 0..4 {
        net.tick(crate::entity::HOP_EXPIRY_MARGIN_MS);
    }
    assert!(matches!(net.status(0, &hashlock), PaymentStatus::Failed(_)));
    assert!(
        received(&net, 3).is_empty(),
        "the receiver was not told it was paid"
    );
    let after: Vec<i128> = (0..4).map(|i| net.worth(i)).collect();
    assert_eq!(before, after, "the late reveal moved nothing");
    net.assert_settled();
}

#[test]
fn a_hop_offline_mid_payment_resolves_when_it_returns() {
    let mut net = Network::new(4, FEE);
    net.connect(&chain(4));
    let before: Vec<i128> = (0..4).map(|i| net.worth(i)).collect();
    net.offline.insert(2);
    let hashlock = net.pay(&[0, 1, 2, 3], 300, 6);
    assert_eq!(net.status(0, &hashlock), PaymentStatus::Pending);
    // Back before any expiry: the payment completes.
    net.tick(1_000);
    net.set_online(2, true);
    net.tick(1_000);
    assert!(matches!(
        net.status(0, &hashlock),
        PaymentStatus::Succeeded { .. }
    ));
    let after: Vec<i128> = (0..4).map(|i| net.worth(i)).collect();
    assert_eq!(after[3] - before[3], 300);
    assert!(
        after[1] >= before[1] && after[2] >= before[2],
        "hops did not lose"
    );
    net.assert_settled();
}

#[test]
fn expiry_at_each_hop_cancels_back_and_no_hop_loses() {
    for stuck in 1..=3usize {
        let mut net = Network::new(4, FEE);
        net.connect(&chain(4));
        let before: Vec<i128> = (0..4).map(|i| net.worth(i)).collect();
        net.offline.insert(stuck);
        let hashlock = net.pay(&[0, 1, 2, 3], 200, 10 + stuck as u8);
        net.tick(crate::entity::FINAL_EXPIRY_MS + 4 * crate::entity::HOP_EXPIRY_MARGIN_MS);
        net.set_online(stuck, true);
        net.tick(1_000);
        net.tick(1_000);
        assert!(
            matches!(net.status(0, &hashlock), PaymentStatus::Failed(_)),
            "stuck at {stuck}: {:?}",
            net.status(0, &hashlock)
        );
        let after: Vec<i128> = (0..4).map(|i| net.worth(i)).collect();
        assert_eq!(before, after, "stuck at {stuck}");
        net.assert_settled();
    }
}

#[test]
fn payments_crossing_in_both_directions_all_settle() {
    let mut net = Network::new(4, FEE);
    net.connect(&chain(4));
    let before: Vec<i128> = (0..4).map(|i| net.worth(i)).collect();
    // Start both before delivering anything: node 0 and node 3 pay each other across 1 and 2.
    let mut hashlocks = Vec::new();
    net.offline.extend([1, 2]);
    hashlocks.push((0, net.pay(&[0, 1, 2, 3], 400, 21)));
    hashlocks.push((3, net.pay(&[3, 2, 1, 0], 250, 22)));
    hashlocks.push((1, net.pay(&[1, 2], 100, 23)));
    net.set_online(1, true);
    net.set_online(2, true);
    net.tick(10);
    for (from, hashlock) in &hashlocks {
        assert!(
            matches!(net.status(*from, hashlock), PaymentStatus::Succeeded { .. }),
            "{from}: {:?}",
            net.status(*from, hashlock)
        );
    }
    let after: Vec<i128> = (0..4).map(|i| net.worth(i)).collect();
    assert!(after[2] >= before[2] + 100);
    net.assert_settled();
}
