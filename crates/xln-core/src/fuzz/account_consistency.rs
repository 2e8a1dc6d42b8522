//! `account_consistency`: three runtimes, A – H – B (single-signer entities, credit both ways
//! on both accounts), driven by the fuzz input like LDK's `chanmon_consistency`. Each byte
//! picks an action, some take the next byte as a parameter:
//!
//! | byte % 16 | action |
//! |---|---|
//! | 0–3 | deliver the oldest message in flight |
//! | 4 | deliver the message at position `p` (reorder) |
//! | 5 | drop the oldest message |
//! | 6 | duplicate the oldest message (a copy goes to the back) |
//! | 7 | deliver up to 4 messages for node `p` in one input (the node batches) |
//! | 8 | a direct payment over one of the four directed edges, amount from `p` |
//! | 9, 10 | an HTLC payment over one of six routes (A→H→B, B→H→A and the one-hop ones) |
//! | 11 | the clock moves on (1 ms to 95 s) |
//! | 12 | node `p` gets a tick (cancels what expired, re-stamps unanswered frames) |
//! | 13 | node `p` crashes and restarts from its snapshot and the log of its inputs |
//! | 14 | node `p` takes a snapshot (and drops the log before it) |
//! | 15 | the chain grows a block, and node `p` sees it (nodes learn heights at different times) |
//!
//! Every input of a node is logged (postcard, with the state hash after it) before its outputs
//! go out, as the store does; a restart decodes the snapshot, replays the log and must reach
//! the same hash after every input. After the input, everything is delivered, time moves past
//! every expiry, and the run fails (panics) on:
//! - any panic, or any input a runtime reports as rejected (only honest nodes here);
//! - RCPAN broken in any committed or pending state, at any time (limits never go down here);
//! - the two sides of an account disagreeing: height, last frame hash, state, or the sequence of
//!   frames each side reported committed (each height exactly once);
//! - an account or an entity left busy (a pending frame, a queued transaction, a lock, a hold,
//!   an HTLC waiting) or a payment still pending once everything was delivered;
//! - a node's worth (its Δ over its accounts) differing from what its events say moved;
//! - a payment lost or doubled: the sender's status against its first lock, the receiver paid
//!   at most once and exactly when its lock settled, the sender succeeded only if the receiver
//!   was paid, the hub never paying out what it was not paid (beyond the case below), its
//!   `Forwarded` fees matching what it kept.
//!
//! One loss is not a bug here: a hub that paid the receiver but whose claim upstream was held
//! back by the network until the upstream lock expired (its sender then cancels). Off chain
//! nothing can prevent it; the hub's recourse is the chain (a dispute with the secret). Such a
//! payment must then look exactly like that: upstream cancelled as expired by its sender,
//! downstream settled. Those are counted, not failed.

use crate::account::{AccountEvent, AccountTx, FailReason, HtlcResolution};
use crate::board::{Board, EntityId};
use crate::codec::{decode, encode, hash_of};
use crate::crypto::{Hash, SignerKey, keccak256};
use crate::delta::{Side, TokenId};
use crate::entity::{EntityEvent, EntityState, EntityTx, PaymentOrder, PaymentStatus, RouteHop};
use crate::onion::Preimage;
use crate::routing::FeePolicy;
use crate::runtime::{
    ChainEvent, Command, Envelope, ReplicaId, Runtime, RuntimeEvent, RuntimeInput, RuntimeState,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::OnceLock;

use super::Choices;

pub(super) const TOKEN: TokenId = 1;
pub(super) const CREDIT: u128 = 1_000_000;
pub(super) const START_MS: u64 = 1_000_000;
pub(super) const FEE: FeePolicy = FeePolicy {
    base: 1,
    ppm: 1_000,
};

const A: usize = 0;
const H: usize = 1;
const B: usize = 2;
/// Actions read from one input; the rest is ignored (keeps one run under a second).
const MAX_ACTIONS: usize = 400;
/// Payments one input may start (entities keep the last `KEPT_FINISHED_PAYMENTS`).
const MAX_PAYMENTS: usize = 200;
/// Rounds of "deliver everything, then let time pass" before an account counts as stuck.
const MAX_DRAIN_ROUNDS: usize = 80;
/// Less than the re-stamp delay and the clock skew peers accept: delivery stays timely.
const DRAIN_STEP_MS: u64 = 4_000;
/// Deliveries without the network going quiet: more is a message storm.
const MAX_DELIVERIES: usize = 100_000;
const CLOCK_STEPS_MS: [u64; 8] = [1, 300, 2_000, 5_500, 11_000, 31_000, 61_000, 95_000];
const EDGES: [(usize, usize); 4] = [(A, H), (H, A), (H, B), (B, H)];
const ROUTES: [&[usize]; 6] = [&[A, H, B], &[B, H, A], &[A, H], &[H, B], &[B, H], &[H, A]];

pub fn account_consistency(data: &[u8]) {
    run(data);
}

/// The outcomes of a corpus, for FUZZING.md.
#[cfg(test)]
pub(super) fn outcomes(data: &[u8]) -> Outcomes {
    run(data).1
}

/// The run and its checks; the network as it ended.
fn run(data: &[u8]) -> (Net, Outcomes) {
    let mut net = Net::from_template(three_nodes());
    let mut input = Choices::new(data);
    let mut actions = 0;
    while let Some(op) = input.next() {
        if actions == MAX_ACTIONS {
            break;
        }
        actions += 1;
        net.step(op, &mut input);
    }
    net.drain();
    let outcomes = net.check();
    (net, outcomes)
}

/// How the payments of a run ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outcomes {
    pub succeeded: usize,
    pub failed: usize,
    /// The hub paid out and its claim upstream expired (see the module doc).
    pub hub_lost_to_expiry: usize,
}

/// One single-signer entity.
#[derive(Clone)]
pub(super) struct Node {
    pub key: SignerKey,
    pub board: Board,
    pub id: EntityId,
}

impl Node {
    pub fn replica(&self) -> ReplicaId {
        ReplicaId {
            entity: self.id,
            signer: self.key.address(),
        }
    }
}

/// What a node has on disk: a snapshot and the inputs after it, each with the state hash it
/// led to.
#[derive(Clone)]
struct Disk {
    snapshot: Vec<u8>,
    log: Vec<(Vec<u8>, Hash)>,
}

/// Runtimes after the setup, shared by every run.
pub(super) struct Template {
    pub nodes: Vec<Node>,
    pub states: Vec<RuntimeState>,
    pub events: Vec<Vec<RuntimeEvent>>,
    pub now: u64,
}

fn three_nodes() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let mut net = Net::new(&[0x41, 0x48, 0x42]);
        net.connect(A, H);
        net.connect(H, B);
        net.drain();
        net.check();
        net.template()
    })
}

/// A payment the input started.
struct Started {
    route: Vec<usize>,
    hashlock: Hash,
    amount: u128,
}

/// The runtimes, their disks and the network between them.
pub(super) struct Net {
    pub nodes: Vec<Node>,
    pub runtimes: Vec<Runtime>,
    disks: Vec<Disk>,
    /// Messages in flight, oldest first.
    pub wire: VecDeque<Envelope>,
    pub now: u64,
    chain_height: u64,
    /// What each node reported, in order (replays after a restart report nothing new).
    pub events: Vec<Vec<RuntimeEvent>>,
    payments: Vec<Started>,
    secrets: u64,
}

impl Net {
    /// Runtimes for single-signer entities of the given key bytes, with their fees set.
    pub fn new(keys: &[u8]) -> Self {
        let nodes: Vec<Node> = keys
            .iter()
            .map(|&b| {
                let key = SignerKey::from_bytes(&[b; 32])
                    .unwrap_or_else(|_| unreachable!("valid test key"));
                let board = Board::single(key.address());
                let id = board.lazy_entity_id();
                Node { key, board, id }
            })
            .collect();
        let template = Template {
            states: vec![RuntimeState::default(); nodes.len()],
            events: vec![Vec::new(); nodes.len()],
            nodes,
            now: START_MS,
        };
        let mut net = Net::from_template(&template);
        for at in 0..net.nodes.len() {
            let node = &net.nodes[at];
            let add = Command::AddReplica {
                board: node.board.clone(),
                signer: node.key.address(),
                domain: Hash::ZERO,
            };
            let fees = Command::Submit {
                entity: node.id,
                txs: vec![EntityTx::SetFees(FEE)],
            };
            net.command(at, vec![add, fees]);
        }
        net
    }

    pub fn from_template(t: &Template) -> Self {
        Net {
            nodes: t.nodes.clone(),
            runtimes: t
                .nodes
                .iter()
                .zip(&t.states)
                .map(|(node, state)| Runtime::from_state([node.key.clone()], state.clone()))
                .collect(),
            disks: t
                .states
                .iter()
                .map(|state| Disk {
                    snapshot: encode(state),
                    log: Vec::new(),
                })
                .collect(),
            wire: VecDeque::new(),
            now: t.now,
            chain_height: 0,
            events: t.events.clone(),
            payments: Vec::new(),
            secrets: 0,
        }
    }

    pub fn template(&self) -> Template {
        Template {
            nodes: self.nodes.clone(),
            states: self.runtimes.iter().map(|r| r.state().clone()).collect(),
            events: self.events.clone(),
            now: self.now,
        }
    }

    /// An account between `a` and `b`, opened by `a`, with credit both ways; delivered.
    pub fn connect(&mut self, a: usize, b: usize) {
        let (ida, idb) = (self.nodes[a].id, self.nodes[b].id);
        let open = EntityTx::OpenAccount {
            peer: idb,
            peer_board: self.nodes[b].board.clone(),
        };
        self.submit(a, vec![open, credit(idb)]);
        self.deliver_all();
        self.submit(b, vec![credit(ida)]);
        self.deliver_all();
    }

    fn step(&mut self, op: u8, input: &mut Choices) {
        match op % 16 {
            0..=3 => self.deliver(0),
            4 => {
                let at = usize::from(input.byte());
                if !self.wire.is_empty() {
                    self.deliver(at % self.wire.len());
                }
            }
            5 => {
                self.wire.pop_front();
            }
            6 => {
                if let Some(first) = self.wire.front().cloned() {
                    self.wire.push_back(first);
                }
            }
            7 => {
                let at = self.node(input.byte());
                self.deliver_batch(at, 4);
            }
            8 => {
                let (from, to) = EDGES[usize::from(input.byte()) % EDGES.len()];
                let amount = amount(input.byte());
                let tx = EntityTx::Account {
                    peer: self.nodes[to].id,
                    tx: AccountTx::DirectPayment {
                        token: TOKEN,
                        amount,
                    },
                };
                self.submit(from, vec![tx]);
            }
            9 | 10 => {
                let route = ROUTES[usize::from(input.byte()) % ROUTES.len()];
                let amount = amount(input.byte());
                self.pay(route, amount);
            }
            11 => self.now += CLOCK_STEPS_MS[usize::from(input.byte()) % CLOCK_STEPS_MS.len()],
            12 => {
                let at = self.node(input.byte());
                self.tick(at);
            }
            13 => {
                let at = self.node(input.byte());
                self.restart(at);
            }
            14 => {
                let at = self.node(input.byte());
                self.snapshot(at);
            }
            _ => {
                let at = self.node(input.byte());
                self.chain_height += 1;
                self.block(at);
            }
        }
    }

    fn node(&self, byte: u8) -> usize {
        usize::from(byte) % self.nodes.len()
    }

    fn host(&self, to: &ReplicaId) -> usize {
        self.nodes
            .iter()
            .position(|n| n.replica() == *to)
            .unwrap_or_else(|| panic!("a message for a replica nobody hosts: {to:?}"))
    }

    /// Applies one input at node `at`: logs it, sends what it produced.
    pub fn apply(&mut self, at: usize, input: RuntimeInput) {
        let logged = encode(&input);
        let out = self.runtimes[at].apply(input);
        self.disks[at]
            .log
            .push((logged, self.runtimes[at].state().hash()));
        assert!(
            out.chain.is_empty(),
            "node {at} asked the chain for {:?}",
            out.chain
        );
        for event in out.events {
            if let RuntimeEvent::Rejected(error) = &event {
                panic!("node {at} rejected an input: {error}");
            }
            self.events[at].push(event);
        }
        self.wire.extend(out.messages);
        self.check_rcpan(at);
    }

    pub fn command(&mut self, at: usize, commands: Vec<Command>) {
        self.apply(
            at,
            RuntimeInput {
                timestamp: self.now,
                commands,
                ..RuntimeInput::default()
            },
        );
    }

    pub fn submit(&mut self, at: usize, txs: Vec<EntityTx>) {
        let entity = self.nodes[at].id;
        self.command(at, vec![Command::Submit { entity, txs }]);
    }

    fn tick(&mut self, at: usize) {
        self.command(at, Vec::new());
    }

    fn block(&mut self, at: usize) {
        self.apply(
            at,
            RuntimeInput {
                timestamp: self.now,
                chain_events: vec![ChainEvent::Block {
                    height: self.chain_height,
                }],
                ..RuntimeInput::default()
            },
        );
    }

    /// Delivers the message at `index` of the wire, if there is one.
    pub fn deliver(&mut self, index: usize) {
        let Some(envelope) = self.wire.remove(index) else {
            return;
        };
        let at = self.host(&envelope.to);
        self.apply(
            at,
            RuntimeInput {
                timestamp: self.now,
                messages: vec![envelope],
                ..RuntimeInput::default()
            },
        );
    }

    /// Delivers up to `most` of the messages for node `at` in one input, oldest first.
    fn deliver_batch(&mut self, at: usize, most: usize) {
        let to = self.nodes[at].replica();
        let mut messages = Vec::new();
        let mut rest = VecDeque::new();
        for envelope in self.wire.drain(..) {
            if envelope.to == to && messages.len() < most {
                messages.push(envelope);
            } else {
                rest.push_back(envelope);
            }
        }
        self.wire = rest;
        if !messages.is_empty() {
            self.apply(
                at,
                RuntimeInput {
                    timestamp: self.now,
                    messages,
                    ..RuntimeInput::default()
                },
            );
        }
    }

    /// Delivers until nothing is in flight.
    pub fn deliver_all(&mut self) {
        let mut deliveries = 0;
        while !self.wire.is_empty() {
            deliveries += 1;
            assert!(deliveries <= MAX_DELIVERIES, "message storm");
            self.deliver(0);
        }
    }

    /// Node `at` crashes and comes back: its snapshot, then its logged inputs, each of which
    /// must reproduce the hash recorded with it. What the replay outputs was sent before.
    fn restart(&mut self, at: usize) {
        let disk = &self.disks[at];
        let state: RuntimeState = decode("snapshot", &disk.snapshot)
            .unwrap_or_else(|e| panic!("node {at}: the snapshot does not decode: {e}"));
        let mut runtime = Runtime::from_state([self.nodes[at].key.clone()], state);
        for (index, (logged, hash)) in disk.log.iter().enumerate() {
            let input: RuntimeInput = decode("logged input", logged)
                .unwrap_or_else(|e| panic!("node {at}: input {index} does not decode: {e}"));
            runtime.apply(input);
            assert_eq!(
                runtime.state().hash(),
                *hash,
                "node {at}: the replay of input {index} reached another state"
            );
        }
        assert!(
            runtime.state() == self.runtimes[at].state(),
            "node {at}: restarted into another state"
        );
        self.runtimes[at] = runtime;
    }

    fn snapshot(&mut self, at: usize) {
        self.disks[at] = Disk {
            snapshot: encode(self.runtimes[at].state()),
            log: Vec::new(),
        };
    }

    fn pay(&mut self, route: &[usize], amount: u128) {
        if self.payments.len() == MAX_PAYMENTS {
            return;
        }
        self.secrets += 1;
        let mut secret = [0x5a; 32];
        secret[..8].copy_from_slice(&self.secrets.to_be_bytes());
        let hops = route[1..]
            .iter()
            .map(|&i| RouteHop {
                entity: self.nodes[i].id,
                key: self.nodes[i].key.public_key(),
                fee: FEE,
            })
            .collect();
        let order = PaymentOrder {
            token: TOKEN,
            amount,
            route: hops,
            preimage: Preimage(secret),
            // A few onion sessions, so that some layers come from the ECDH cache.
            seed: [(self.secrets % 4) as u8; 32],
        };
        self.submit(route[0], vec![EntityTx::Pay(Box::new(order))]);
        self.payments.push(Started {
            route: route.to_vec(),
            hashlock: keccak256(&secret),
            amount,
        });
    }

    pub fn entity(&self, at: usize) -> &EntityState {
        self.runtimes[at]
            .replica_of(&self.nodes[at].id)
            .unwrap_or_else(|| panic!("node {at} lost its replica"))
            .state()
    }

    /// Δ of every account of node `at`, from its side.
    pub fn worth(&self, at: usize) -> i128 {
        self.entity(at)
            .accounts
            .values()
            .map(|entry| {
                let state = entry.account.state();
                let delta = state.deltas.get(&TOKEN).map_or(0, |d| {
                    d.total()
                        .unwrap_or_else(|_| panic!("node {at}: Δ out of range"))
                });
                match entry.account.side() {
                    Side::Left => delta,
                    Side::Right => -delta,
                }
            })
            .sum()
    }

    fn check_rcpan(&self, at: usize) {
        for (peer, entry) in &self.entity(at).accounts {
            let account = &entry.account;
            let states = std::iter::once(account.state())
                .chain(account.pending().map(|p| &p.state))
                .chain(account.superseded().iter().map(|p| &p.state));
            for state in states {
                for (token, delta) in &state.deltas {
                    assert_eq!(
                        delta.rcpan_holds(),
                        Ok(true),
                        "node {at}, account with {peer}, token {token}: RCPAN broken: {delta:?}"
                    );
                }
            }
        }
    }

    /// Every node sees the chain's height; then deliver, let time pass and tick, until no
    /// account and no entity has anything in flight.
    pub fn drain(&mut self) {
        for at in 0..self.nodes.len() {
            if self.entity(at).j_height < self.chain_height {
                self.block(at);
            }
        }
        for _ in 0..MAX_DRAIN_ROUNDS {
            self.deliver_all();
            if self.busy().is_none() {
                return;
            }
            self.now += DRAIN_STEP_MS;
            for at in 0..self.nodes.len() {
                self.tick(at);
            }
        }
        self.deliver_all();
        if let Some(busy) = self.busy() {
            panic!("stuck after everything was delivered: {busy}");
        }
    }

    /// What is still in flight somewhere, if anything.
    fn busy(&self) -> Option<String> {
        if !self.wire.is_empty() {
            return Some(format!("{} messages in flight", self.wire.len()));
        }
        for at in 0..self.nodes.len() {
            let replica = self.runtimes[at]
                .replica_of(&self.nodes[at].id)
                .unwrap_or_else(|| panic!("node {at} lost its replica"));
            if !replica.mempool().is_empty() || replica.is_proposing() {
                return Some(format!("node {at}: entity frame pending"));
            }
            let state = replica.state();
            if !state.awaiting.is_empty()
                || !state.origins.is_empty()
                || !state.receiving.is_empty()
            {
                return Some(format!(
                    "node {at}: HTLC books {:?} {:?} {:?}",
                    state.awaiting, state.origins, state.receiving
                ));
            }
            for (hashlock, payment) in &state.payments {
                if payment.status == PaymentStatus::Pending {
                    return Some(format!("node {at}: payment {hashlock} pending"));
                }
            }
            for (peer, entry) in &state.accounts {
                let account = &entry.account;
                if account.pending().is_some()
                    || !account.mempool().is_empty()
                    || !account.superseded().is_empty()
                {
                    return Some(format!(
                        "node {at}, account with {peer}: pending {:?}, queued {:?}",
                        account.pending().map(|p| (&p.frame.height, &p.frame.txs)),
                        account.mempool()
                    ));
                }
                if !account.state().locks.is_empty() || account.state().total_holds() != 0 {
                    return Some(format!(
                        "node {at}, account with {peer}: locks left {:?}",
                        account.state().locks
                    ));
                }
            }
        }
        None
    }

    /// Everything the module doc lists, once the network is quiet.
    pub fn check(&self) -> Outcomes {
        let ledgers: Vec<Ledger> = (0..self.nodes.len())
            .map(|at| Ledger::of(self, at))
            .collect();
        for (at, node) in self.nodes.iter().enumerate() {
            self.check_rcpan(at);
            for (peer, entry) in &self.entity(at).accounts {
                let j = self
                    .nodes
                    .iter()
                    .position(|n| n.id == *peer)
                    .unwrap_or_else(|| panic!("node {at} has an account with a stranger"));
                let ours = &entry.account;
                let theirs = &self.entity(j).accounts[&node.id].account;
                assert_eq!(ours.height(), theirs.height(), "{at}-{j}: heights differ");
                assert_eq!(
                    ours.last_frame_hash(),
                    theirs.last_frame_hash(),
                    "{at}-{j}: last frames differ"
                );
                assert_eq!(
                    hash_of(ours.state()),
                    hash_of(theirs.state()),
                    "{at}-{j}: states differ: {:?} / {:?}",
                    ours.state(),
                    theirs.state()
                );
                let frames = &ledgers[at].frames[peer];
                assert_eq!(
                    frames, &ledgers[j].frames[&node.id],
                    "{at}-{j}: the two sides committed different frames"
                );
                for (index, (height, _)) in frames.iter().enumerate() {
                    assert_eq!(
                        *height,
                        index as u64 + 1,
                        "{at}-{j}: frames not committed once each, in order"
                    );
                }
                assert_eq!(
                    frames.len() as u64,
                    ours.height(),
                    "{at}-{j}: frames missing"
                );
            }
            assert_eq!(
                self.worth(at),
                ledgers[at].flow,
                "node {at}: its worth is not what its events say moved"
            );
        }
        self.check_payments(&ledgers)
    }

    fn check_payments(&self, ledgers: &[Ledger]) -> Outcomes {
        let mut outcomes = Outcomes::default();
        let mut kept_by_hub: u128 = 0;
        for p in &self.payments {
            let (sender, receiver) = (p.route[0], p.route[p.route.len() - 1]);
            let h = &p.hashlock;
            let record = self.entity(sender).payments.get(h);
            if !ledgers[sender].sent.contains_key(h) {
                // Refused at the start (zero amount): nothing may exist of it.
                assert!(record.is_none(), "payment {h}: a record but never sent");
                assert!(
                    ledgers.iter().all(|l| l.locks_of(h).next().is_none()),
                    "payment {h}: locks of a payment never sent"
                );
                continue;
            }
            let Some(record) = record else {
                panic!("payment {h}: the sender forgot it");
            };
            assert_eq!(
                ledgers[sender].finished.get(h).map(Vec::as_slice),
                Some(&[record.status.clone()][..]),
                "payment {h}: finished once, as its status says"
            );
            let first = ledgers[sender].lock(self.nodes[p.route[1]].id, h, true);
            let last = ledgers[receiver].lock(self.nodes[p.route[p.route.len() - 2]].id, h, false);
            let received = ledgers[receiver]
                .received
                .get(h)
                .cloned()
                .unwrap_or_default();
            assert!(received.len() <= 1, "payment {h}: received {received:?}");
            match &record.status {
                PaymentStatus::Succeeded { preimage } => {
                    outcomes.succeeded += 1;
                    assert_eq!(keccak256(preimage), *h, "payment {h}: a wrong receipt");
                    assert!(
                        first.is_some_and(|l| l.settled()),
                        "payment {h}: succeeded but the sender's lock did not settle"
                    );
                    assert_eq!(received.len(), 1, "payment {h}: succeeded, never received");
                }
                PaymentStatus::Failed(_) => {
                    outcomes.failed += 1;
                    assert!(
                        first.is_none_or(|l| l.cancelled()),
                        "payment {h}: failed but the sender paid"
                    );
                }
                PaymentStatus::Pending => panic!("payment {h}: still pending"),
            }
            let last_settled = last.is_some_and(|l| l.settled());
            assert_eq!(
                received.len() == 1,
                last_settled,
                "payment {h}: received {received:?}, the receiver's lock {last:?}"
            );
            if let Some(&amount) = received.first() {
                assert_eq!(amount, p.amount, "payment {h}: received another amount");
            }
            if p.route.len() == 3 {
                let hub = p.route[1];
                let inbound = ledgers[hub].lock(self.nodes[sender].id, h, false);
                let outbound = ledgers[hub].lock(self.nodes[receiver].id, h, true);
                if outbound.is_some() {
                    assert!(
                        inbound.is_some(),
                        "payment {h}: the hub forwarded a lock it never got"
                    );
                }
                match (inbound, outbound) {
                    (Some(i), Some(o)) if o.settled() && i.settled() => {
                        let fee = FEE.fee_for(o.amount).unwrap_or(0);
                        assert!(
                            i.amount >= o.amount + fee,
                            "payment {h}: the hub forwarded more than it may"
                        );
                        kept_by_hub += i.amount - o.amount;
                    }
                    (Some(i), Some(o)) if o.settled() => {
                        assert!(
                            i.expired_cancel_by_peer(),
                            "payment {h}: the hub paid out and its claim was cancelled: {i:?}"
                        );
                        // The fee was reported when the hub paid out.
                        kept_by_hub += i.amount - o.amount;
                        outcomes.hub_lost_to_expiry += 1;
                    }
                    (Some(i), _) => assert!(
                        !i.settled(),
                        "payment {h}: the hub was paid but did not pay out"
                    ),
                    (None, _) => {}
                }
            } else if matches!(record.status, PaymentStatus::Failed(_)) {
                assert!(received.is_empty(), "payment {h}: failed but received");
            }
        }
        for (at, ledger) in ledgers.iter().enumerate() {
            for h in ledger.received.keys() {
                assert!(
                    self.payments.iter().any(|p| p.hashlock == *h),
                    "node {at}: received a payment nobody sent"
                );
            }
        }
        assert_eq!(
            ledgers[H].forwarded_fees, kept_by_hub,
            "the hub's Forwarded fees are not what it kept"
        );
        outcomes
    }
}

fn credit(peer: EntityId) -> EntityTx {
    EntityTx::Account {
        peer,
        tx: AccountTx::SetCreditLimit {
            token: TOKEN,
            amount: CREDIT,
        },
    }
}

/// Small, medium, large and beyond-capacity amounts (zero included).
fn amount(b: u8) -> u128 {
    let low = u128::from(b & 0x3f);
    match b >> 6 {
        0 => low,
        1 => low * 1_000 + 1,
        2 => low * 20_000 + 7,
        _ => CREDIT + low * 100_000,
    }
}

/// A lock as one side saw it committed, and how it ended.
#[derive(Debug, Clone)]
struct LockSeen {
    peer: EntityId,
    ours: bool,
    hashlock: Hash,
    amount: u128,
    /// The resolution and whether our side proposed it.
    end: Option<(HtlcResolution, bool)>,
}

impl LockSeen {
    fn settled(&self) -> bool {
        matches!(self.end, Some((HtlcResolution::Secret(_), _)))
    }
    fn cancelled(&self) -> bool {
        matches!(self.end, Some((HtlcResolution::Cancel(_), _)))
    }
    /// Cancelled by its sender, the peer, because it expired.
    fn expired_cancel_by_peer(&self) -> bool {
        matches!(&self.end, Some((HtlcResolution::Cancel(f), false)) if f.reason == FailReason::Expired)
            && !self.ours
    }
}

/// What one node's events say happened.
#[derive(Default)]
struct Ledger {
    /// Per peer: (height, frame hash) of each committed account frame, in order.
    frames: BTreeMap<EntityId, Vec<(u64, Hash)>>,
    locks: BTreeMap<(EntityId, u64), LockSeen>,
    /// What moved to (+) or from (−) this node by the committed frames.
    flow: i128,
    sent: BTreeMap<Hash, u128>,
    finished: BTreeMap<Hash, Vec<PaymentStatus>>,
    received: BTreeMap<Hash, Vec<u128>>,
    forwarded_fees: u128,
}

impl Ledger {
    fn of(net: &Net, at: usize) -> Self {
        let me = net.nodes[at].id;
        let mut ledger = Ledger::default();
        for event in &net.events[at] {
            let RuntimeEvent::Entity { event, .. } = event else {
                continue;
            };
            match event {
                EntityEvent::AccountOpened { peer } => {
                    ledger.frames.entry(*peer).or_default();
                }
                EntityEvent::Account {
                    peer,
                    event:
                        AccountEvent::Committed {
                            height,
                            frame_hash,
                            by_left,
                            txs,
                        },
                } => {
                    ledger
                        .frames
                        .entry(*peer)
                        .or_default()
                        .push((*height, *frame_hash));
                    let by_me = *by_left == me.is_left_of(peer);
                    for tx in txs {
                        ledger.apply(*peer, by_me, tx);
                    }
                }
                EntityEvent::PaymentSent {
                    hashlock, amount, ..
                } => {
                    assert!(
                        ledger.sent.insert(*hashlock, *amount).is_none(),
                        "node {at}: payment {hashlock} sent twice"
                    );
                }
                EntityEvent::PaymentFinished { hashlock, status } => {
                    ledger
                        .finished
                        .entry(*hashlock)
                        .or_default()
                        .push(status.clone());
                }
                EntityEvent::PaymentReceived {
                    hashlock, amount, ..
                } => ledger.received.entry(*hashlock).or_default().push(*amount),
                EntityEvent::Forwarded { fee, .. } => ledger.forwarded_fees += fee,
                _ => {}
            }
        }
        ledger
    }

    fn apply(&mut self, peer: EntityId, by_me: bool, tx: &AccountTx) {
        let signed = |amount: u128| {
            i128::try_from(amount).unwrap_or_else(|_| panic!("a committed amount above i128"))
        };
        match tx {
            AccountTx::DirectPayment { amount, .. } => {
                self.flow += if by_me {
                    -signed(*amount)
                } else {
                    signed(*amount)
                };
            }
            AccountTx::HtlcLock {
                lock_id,
                hashlock,
                amount,
                ..
            } => {
                let seen = LockSeen {
                    peer,
                    ours: by_me,
                    hashlock: *hashlock,
                    amount: *amount,
                    end: None,
                };
                assert!(
                    self.locks.insert((peer, *lock_id), seen).is_none(),
                    "lock {lock_id} with {peer} committed twice"
                );
            }
            AccountTx::HtlcResolve {
                lock_id,
                resolution,
            } => {
                let lock = self
                    .locks
                    .get_mut(&(peer, *lock_id))
                    .unwrap_or_else(|| panic!("lock {lock_id} with {peer} resolved, never locked"));
                assert!(
                    lock.end.is_none(),
                    "lock {lock_id} with {peer} resolved twice"
                );
                lock.end = Some((resolution.clone(), by_me));
                if let HtlcResolution::Secret(_) = resolution {
                    self.flow += if lock.ours {
                        -signed(lock.amount)
                    } else {
                        signed(lock.amount)
                    };
                }
            }
            AccountTx::SetCreditLimit { .. } | AccountTx::ChainSync { .. } => {}
            AccountTx::SwapOffer { .. }
            | AccountTx::SwapResolve { .. }
            | AccountTx::SwapCancel { .. } => {
                panic!("a swap committed, though this target places no offers")
            }
            AccountTx::SettlementPropose { .. }
            | AccountTx::SettlementAccept { .. }
            | AccountTx::SettlementLanded { .. } => {
                panic!("a settlement committed, though this target proposes none")
            }
        }
    }

    fn locks_of<'a>(&'a self, hashlock: &'a Hash) -> impl Iterator<Item = &'a LockSeen> + 'a {
        self.locks.values().filter(move |l| l.hashlock == *hashlock)
    }

    /// The one lock of `hashlock` on the account with `peer` that we (`ours`) or the peer
    /// sent; more than one is a payment forwarded twice.
    fn lock<'a>(&'a self, peer: EntityId, hashlock: &'a Hash, ours: bool) -> Option<&'a LockSeen> {
        let mut found = self
            .locks_of(hashlock)
            .filter(|l| l.peer == peer && l.ours == ours);
        let first = found.next();
        assert!(
            found.next().is_none(),
            "payment {hashlock}: two locks on one account"
        );
        first
    }
}

/// Starting points for the corpus: each action alone, an honest payment of each kind, a
/// crash in the middle of a payment, a payment across an expiry.
pub(crate) fn seeds() -> Vec<Vec<u8>> {
    let deliver_many = [0u8; 40];
    let mut seeds: Vec<Vec<u8>> = (0u8..16).map(|op| vec![op, 1, 200]).collect();
    // A→H→B of 1,000, delivered.
    seeds.push([&[9u8, 0, 0x41][..], &deliver_many].concat());
    // B→H→A of 20,007, and a direct H→B, delivered.
    seeds.push([&[10u8, 1, 0x80, 8, 2, 0x50][..], &deliver_many].concat());
    // A→H→B, half delivered, H crashes, the rest delivered.
    seeds.push([&[9u8, 0, 0x41, 0, 0, 0, 13, 1][..], &deliver_many].concat());
    // A→H→B, B's messages dropped, time passes past every expiry.
    seeds.push(
        [
            &[9u8, 0, 0x41, 0, 0, 0, 0, 5, 5, 11, 7, 12, 0, 12, 1, 12, 2][..],
            &deliver_many,
        ]
        .concat(),
    );
    // Payments crossing, reordered and duplicated, a snapshot, a block, a restart.
    seeds.push(
        [
            &[
                9u8, 0, 0x45, 9, 1, 0x46, 8, 0, 3, 4, 1, 6, 0, 14, 1, 15, 0, 15, 1, 15, 2,
            ][..],
            &[0, 4, 2, 13, 1, 0, 0, 7, 1, 0, 0, 0, 13, 2][..],
            &deliver_many,
        ]
        .concat(),
    );
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(net: &Net, at: usize, index: usize) -> PaymentStatus {
        net.entity(at).payments[&net.payments[index].hashlock]
            .status
            .clone()
    }

    #[test]
    fn an_honest_payment_through_the_hub_settles_and_pays_the_hub_its_fee() {
        let (net, _) = run(&[9, 0, 0x41]);
        assert!(matches!(
            status(&net, A, 0),
            PaymentStatus::Succeeded { .. }
        ));
        assert_eq!(
            (net.worth(A), net.worth(H), net.worth(B)),
            (-1_003, 2, 1_001)
        );
    }

    #[test]
    fn a_payment_whose_receiver_is_cut_off_expires_and_nothing_moves() {
        // The lock reaches H, H's lock to B is dropped each time it is sent, time passes.
        let mut data = vec![9, 0, 0x41, 0, 0];
        for _ in 0..30 {
            data.extend([5, 11, 3, 12, 1, 12, 0, 0, 0]);
        }
        let (net, _) = run(&data);
        assert!(matches!(status(&net, A, 0), PaymentStatus::Failed(_)));
        assert_eq!((net.worth(A), net.worth(H), net.worth(B)), (0, 0, 0));
    }

    #[test]
    fn a_crash_in_the_middle_of_a_payment_changes_nothing() {
        let (net, _) = run(&[9, 0, 0x41, 0, 13, 1, 0, 13, 2, 14, 0, 0, 13, 0, 0, 13, 1]);
        assert!(matches!(
            status(&net, A, 0),
            PaymentStatus::Succeeded { .. }
        ));
        assert_eq!(net.worth(B), 1_001);
    }

    #[test]
    fn the_checks_catch_a_node_whose_worth_its_events_do_not_explain() {
        let (mut net, _) = run(&[8, 0, 0x41]);
        // Forget that A paid: its ledger no longer explains its worth.
        for events in &mut net.events {
            events.retain(|e| {
                !matches!(
                    e,
                    RuntimeEvent::Entity {
                        event: EntityEvent::Account {
                            event: AccountEvent::Committed { txs, .. },
                            ..
                        },
                        ..
                    } if txs.iter().any(|tx| matches!(tx, AccountTx::DirectPayment { .. }))
                )
            });
        }
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| net.check()));
        assert!(caught.is_err());
    }
}
