//! Runtimes wired together in process: a hub with a 2-of-3 board and wallets, determinism of
//! the whole state, and refusal of bad inputs.

use super::*;
use crate::account::AccountTx;
use crate::board::BoardMember;
use proptest::prelude::*;

const TOKEN: u32 = 1;

pub(super) fn key(n: u8) -> SignerKey {
    SignerKey::from_bytes(&[n; 32]).unwrap()
}

/// Several runtimes and a perfect network between them.
pub(super) struct Net {
    pub(super) runtimes: Vec<Runtime>,
    pub(super) now: u64,
    pub(super) events: Vec<RuntimeEvent>,
}

impl Net {
    pub(super) fn new(keys_per_runtime: Vec<Vec<SignerKey>>) -> Self {
        Net {
            runtimes: keys_per_runtime.into_iter().map(Runtime::new).collect(),
            now: 1_000,
            events: Vec::new(),
        }
    }

    fn host_of(&self, replica: &ReplicaId) -> Option<usize> {
        self.runtimes
            .iter()
            .position(|r| r.state().replicas.contains_key(replica))
    }

    /// Applies `input` at runtime `at`, then delivers every message until the network is quiet.
    fn apply(&mut self, at: usize, mut input: RuntimeInput) {
        self.now += 10;
        input.timestamp = self.now;
        let mut inboxes: Vec<Vec<Envelope>> = vec![Vec::new(); self.runtimes.len()];
        let out = self.runtimes[at].apply(input);
        self.collect(out, &mut inboxes);
        while inboxes.iter().any(|i| !i.is_empty()) {
            self.now += 1;
            for i in 0..self.runtimes.len() {
                let messages = std::mem::take(&mut inboxes[i]);
                if messages.is_empty() {
                    continue;
                }
                let out = self.runtimes[i].apply(RuntimeInput {
                    timestamp: self.now,
                    messages,
                    ..RuntimeInput::default()
                });
                self.collect(out, &mut inboxes);
            }
        }
    }

    fn collect(&mut self, out: RuntimeOutput, inboxes: &mut [Vec<Envelope>]) {
        for message in out.messages {
            let host = self.host_of(&message.to).expect("every replica is hosted");
            inboxes[host].push(message);
        }
        for event in out.events {
            if let RuntimeEvent::Rejected(error) = &event {
                panic!("rejected in an honest run: {error}");
            }
            self.events.push(event);
        }
    }

    pub(super) fn command(&mut self, at: usize, command: Command) {
        self.apply(
            at,
            RuntimeInput {
                commands: vec![command],
                ..RuntimeInput::default()
            },
        );
    }

    pub(super) fn submit(&mut self, at: usize, entity: EntityId, txs: Vec<EntityTx>) {
        self.command(at, Command::Submit { entity, txs });
    }

    pub(super) fn account(
        &self,
        at: usize,
        entity: &EntityId,
        peer: &EntityId,
    ) -> crate::account::Account {
        self.runtimes[at]
            .replica_of(entity)
            .unwrap()
            .state()
            .accounts[peer]
            .account
            .clone()
    }
}

pub(super) fn add_replica(board: &Board, signer: Address) -> Command {
    Command::AddReplica {
        board: board.clone(),
        signer,
        domain: Hash::ZERO,
    }
}

pub(super) fn pay(peer: EntityId, amount: u128) -> EntityTx {
    EntityTx::Account {
        peer,
        tx: AccountTx::DirectPayment {
            token: TOKEN,
            amount,
        },
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

/// A 2-of-3 board of equal weights.
pub(super) fn two_of_three(keys: &[SignerKey; 3]) -> Board {
    let members = keys
        .iter()
        .map(|k| BoardMember {
            signer: k.address(),
            weight: 1,
        })
        .collect();
    Board::new(2, members).unwrap()
}

#[test]
fn hub_with_a_two_of_three_board_serves_two_wallets() {
    // Runtimes 0..3: the hub's three members. Runtimes 3, 4: the wallets.
    let hub_keys = [key(1), key(2), key(3)];
    let hub_board = two_of_three(&hub_keys);
    let hub = hub_board.lazy_entity_id();
    let wallet_keys = [key(21), key(22)];
    let wallet_boards: Vec<Board> = wallet_keys
        .iter()
        .map(|k| Board::single(k.address()))
        .collect();
    let wallets: Vec<EntityId> = wallet_boards.iter().map(|b| b.lazy_entity_id()).collect();

    let mut net = Net::new(vec![
        vec![hub_keys[0].clone()],
        vec![hub_keys[1].clone()],
        vec![hub_keys[2].clone()],
        vec![wallet_keys[0].clone()],
        vec![wallet_keys[1].clone()],
    ]);
    for (i, k) in hub_keys.iter().enumerate() {
        net.command(i, add_replica(&hub_board, k.address()));
    }
    for (i, k) in wallet_keys.iter().enumerate() {
        net.command(3 + i, add_replica(&wallet_boards[i], k.address()));
    }

    // Each wallet opens an account with the hub and lets the hub owe it 1,000.
    for (i, wallet) in wallets.iter().enumerate() {
        net.submit(
            3 + i,
            *wallet,
            vec![
                EntityTx::OpenAccount {
                    peer: hub,
                    peer_board: hub_board.clone(),
                },
                credit(hub, 1_000),
            ],
        );
    }
    // The hub extends 500 of credit to each wallet; the order reaches the proposer through a
    // member that is not the proposer.
    for wallet in &wallets {
        net.submit(1, hub, vec![credit(*wallet, 500)]);
    }
    // Payments both ways.
    net.submit(3, wallets[0], vec![pay(hub, 200)]);
    net.submit(4, wallets[1], vec![pay(hub, 50)]);
    net.submit(0, hub, vec![pay(wallets[0], 80), pay(wallets[1], 700)]);

    for (i, wallet) in wallets.iter().enumerate() {
        let at_wallet = net.account(3 + i, wallet, &hub);
        for member in 0..3 {
            let at_hub = net.account(member, &hub, wallet);
            assert_eq!(
                at_hub.state().hash(),
                at_wallet.state().hash(),
                "wallet {i}, member {member}"
            );
            assert_eq!(at_hub.height(), at_wallet.height());
        }
        // The wallet's account frames from the hub carry two hub signatures.
        let proof = at_wallet.proof().unwrap();
        let digest = proof.header.hash(at_wallet.key());
        assert_eq!(proof.peer_signature.0.len(), 2);
        assert!(
            hub_board
                .verify_quorum(&digest, &proof.peer_signature)
                .is_ok()
        );
        assert!(at_wallet.pending().is_none() && at_wallet.mempool().is_empty());
    }
    // Wallet 0 paid 200 and got 80: it owes the hub 120 (its side's out capacity shrank).
    let a0 = net.account(3, &wallets[0], &hub);
    let view = a0.state().deltas[&TOKEN].capacities(a0.side()).unwrap();
    assert_eq!(view.out_capacity, 500 - 120);
    // Wallet 1 paid 50 and got 700: the hub owes it 650 on credit.
    let a1 = net.account(4, &wallets[1], &hub);
    let view = a1.state().deltas[&TOKEN].capacities(a1.side()).unwrap();
    assert_eq!(view.out_capacity, 500 + 650);
    assert_eq!(view.in_capacity, 1_000 - 650);
    // Every hub replica has the same entity state.
    let hashes: Vec<Hash> = (0..3)
        .map(|i| net.runtimes[i].replica_of(&hub).unwrap().state().hash())
        .collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn the_hub_keeps_committing_with_one_member_offline_and_stops_with_two() {
    let hub_keys = [key(1), key(2), key(3)];
    let board = two_of_three(&hub_keys);
    let hub = board.lazy_entity_id();
    let mut runtimes: Vec<Runtime> = hub_keys.iter().map(|k| Runtime::new([k.clone()])).collect();
    for (r, k) in runtimes.iter_mut().zip(&hub_keys) {
        r.apply(RuntimeInput {
            timestamp: 1,
            commands: vec![add_replica(&board, k.address())],
            ..RuntimeInput::default()
        });
    }
    // Member 2 is offline: the proposer's messages to it are lost.
    let out = runtimes[0].apply(RuntimeInput {
        timestamp: 2,
        chain_events: vec![ChainEvent::Block { height: 5 }],
        ..RuntimeInput::default()
    });
    let to_member_1: Vec<Envelope> = out
        .messages
        .into_iter()
        .filter(|m| m.to.signer == hub_keys[1].address())
        .collect();
    let out = runtimes[1].apply(RuntimeInput {
        timestamp: 3,
        messages: to_member_1,
        ..RuntimeInput::default()
    });
    let out = runtimes[0].apply(RuntimeInput {
        timestamp: 4,
        messages: out.messages,
        ..RuntimeInput::default()
    });
    assert_eq!(runtimes[0].replica_of(&hub).unwrap().state().height, 1);
    assert_eq!(runtimes[0].replica_of(&hub).unwrap().state().j_height, 5);
    let commit: Vec<Envelope> = out
        .messages
        .into_iter()
        .filter(|m| m.to.signer == hub_keys[1].address())
        .collect();
    runtimes[1].apply(RuntimeInput {
        timestamp: 5,
        messages: commit,
        ..RuntimeInput::default()
    });
    assert_eq!(runtimes[1].replica_of(&hub).unwrap().state().height, 1);

    // Both other members offline: the proposer alone cannot commit.
    runtimes[0].apply(RuntimeInput {
        timestamp: 6,
        chain_events: vec![ChainEvent::Block { height: 6 }],
        ..RuntimeInput::default()
    });
    let proposer = runtimes[0].replica_of(&hub).unwrap();
    assert!(proposer.is_proposing());
    assert_eq!(proposer.state().height, 1);
}

#[test]
fn chain_events_reach_reserves_and_both_sides_of_an_account() {
    let keys = [key(51), key(52)];
    let boards: Vec<Board> = keys.iter().map(|k| Board::single(k.address())).collect();
    let ids: Vec<EntityId> = boards.iter().map(|b| b.lazy_entity_id()).collect();
    let mut net = Net::new(vec![vec![keys[0].clone()], vec![keys[1].clone()]]);
    for i in 0..2 {
        net.command(i, add_replica(&boards[i], keys[i].address()));
    }
    net.submit(
        0,
        ids[0],
        vec![
            EntityTx::OpenAccount {
                peer: ids[1],
                peer_board: boards[1].clone(),
            },
            credit(ids[1], 50),
        ],
    );
    let (left, right) = if ids[0] < ids[1] {
        (ids[0], ids[1])
    } else {
        (ids[1], ids[0])
    };
    let events = vec![
        ChainEvent::Block { height: 7 },
        ChainEvent::Reserve {
            entity: ids[0],
            token: TOKEN,
            amount: 9_000,
        },
        ChainEvent::Account {
            left,
            right,
            token: TOKEN,
            collateral: 1_000,
            ondelta: 1_000,
        },
    ];
    // Each side's follower reports the same confirmed events.
    for i in 0..2 {
        net.apply(
            i,
            RuntimeInput {
                chain_events: events.clone(),
                ..RuntimeInput::default()
            },
        );
    }
    // The side that saw the events first proposed before its peer had seen them, and was
    // refused; its re-stamped frame goes through once time passes.
    net.now += crate::account::REFRESH_AFTER_MS;
    for i in 0..2 {
        net.apply(i, RuntimeInput::default());
    }
    let state = net.runtimes[0].replica_of(&ids[0]).unwrap().state();
    assert_eq!(state.reserves[&TOKEN], 9_000);
    assert_eq!(state.j_height, 7);
    for i in 0..2 {
        let account = net.account(i, &ids[i], &ids[1 - i]);
        let delta = &account.state().deltas[&TOKEN];
        assert_eq!(
            (delta.collateral, delta.ondelta),
            (1_000, 1_000),
            "side {i}"
        );
        assert!(account.pending().is_none() && account.mempool().is_empty());
    }
    assert_eq!(
        net.account(0, &ids[0], &ids[1]).state().hash(),
        net.account(1, &ids[1], &ids[0]).state().hash()
    );

    // Chain operations are checked against the reserve and come out of the runtime.
    let request = |amount| {
        EntityTx::Chain(crate::entity::ChainRequest::AddCollateral {
            peer: ids[1],
            token: TOKEN,
            amount,
        })
    };
    let out = net.runtimes[0].apply(RuntimeInput {
        timestamp: net.now,
        commands: vec![Command::Submit {
            entity: ids[0],
            txs: vec![request(9_001), request(0), request(4_000)],
        }],
        ..RuntimeInput::default()
    });
    let refusals: Vec<&EntityTxError> = out
        .events
        .iter()
        .filter_map(|e| match e {
            RuntimeEvent::TxDropped { error, .. } => Some(error),
            _ => None,
        })
        .collect();
    assert!(matches!(
        refusals[..],
        [
            EntityTxError::ReserveTooLow {
                reserve: 9_000,
                amount: 9_001,
                ..
            },
            EntityTxError::ZeroChainAmount
        ]
    ));
    assert_eq!(
        out.chain,
        vec![(
            ids[0],
            crate::entity::ChainRequest::AddCollateral {
                peer: ids[1],
                token: TOKEN,
                amount: 4_000
            }
        )]
    );
}

#[test]
fn bad_inputs_are_refused_and_change_nothing() {
    let k = key(9);
    let board = Board::single(k.address());
    let entity = board.lazy_entity_id();
    let mut runtime = Runtime::new([k.clone()]);
    runtime.apply(RuntimeInput {
        timestamp: 1,
        commands: vec![add_replica(&board, k.address())],
        ..RuntimeInput::default()
    });
    let before = runtime.state().clone();
    let stranger = key(10);
    let unknown = EntityId([5; 32]);
    let rejected = |runtime: &mut Runtime, input: RuntimeInput| -> Vec<RuntimeError> {
        runtime
            .apply(input)
            .events
            .into_iter()
            .filter_map(|e| match e {
                RuntimeEvent::Rejected(error) => Some(error),
                _ => None,
            })
            .collect()
    };
    type Case = (&'static str, RuntimeInput, fn(&RuntimeError) -> bool);
    let cases: Vec<Case> = vec![
        (
            "a command for an entity not hosted here",
            RuntimeInput {
                commands: vec![Command::Submit {
                    entity: unknown,
                    txs: vec![],
                }],
                ..RuntimeInput::default()
            },
            |e| matches!(e, RuntimeError::UnknownEntity(_)),
        ),
        (
            "a replica for a key we do not have",
            RuntimeInput {
                commands: vec![add_replica(
                    &Board::single(stranger.address()),
                    stranger.address(),
                )],
                ..RuntimeInput::default()
            },
            |e| matches!(e, RuntimeError::NoKey(_)),
        ),
        (
            "the same replica twice",
            RuntimeInput {
                commands: vec![add_replica(&board, k.address())],
                ..RuntimeInput::default()
            },
            |e| matches!(e, RuntimeError::ReplicaExists(_)),
        ),
        (
            "a message for a replica not hosted here",
            RuntimeInput {
                messages: vec![Envelope {
                    from: ReplicaId {
                        entity,
                        signer: k.address(),
                    },
                    to: ReplicaId {
                        entity: unknown,
                        signer: k.address(),
                    },
                    payload: Payload::Entity(EntityMessage::Forward { txs: vec![] }),
                }],
                ..RuntimeInput::default()
            },
            |e| matches!(e, RuntimeError::UnknownReplica(_)),
        ),
        (
            "a forwarded transaction from outside the board",
            RuntimeInput {
                messages: vec![Envelope {
                    from: ReplicaId {
                        entity,
                        signer: stranger.address(),
                    },
                    to: ReplicaId {
                        entity,
                        signer: k.address(),
                    },
                    payload: Payload::Entity(EntityMessage::Forward {
                        txs: vec![EntityTx::ChainBlock { height: 9 }],
                    }),
                }],
                ..RuntimeInput::default()
            },
            |e| {
                matches!(
                    e,
                    RuntimeError::Consensus {
                        error: ConsensusError::NotAMember,
                        ..
                    }
                )
            },
        ),
    ];
    for (what, input, expected) in cases {
        let errors = rejected(&mut runtime, input);
        assert!(
            errors.len() == 1 && expected(&errors[0]),
            "{what}: {errors:?}"
        );
        assert_eq!(
            runtime.state().replicas,
            before.replicas,
            "{what}: state changed"
        );
    }

    // A forged account message from a stranger: dropped from the frame, nothing else moves.
    let their_board = Board::single(stranger.address());
    let them = their_board.lazy_entity_id();
    let mut forged = crate::account::Account::new(Hash::ZERO, them, entity).unwrap();
    forged.enqueue(AccountTx::SetCreditLimit {
        token: TOKEN,
        amount: 5,
    });
    let reply = forged.flush(crate::account::Clock::default()).reply;
    let message = reply
        .sign(them, entity, |h| {
            crate::board::QuorumSignature(vec![key(11).sign(h)])
        })
        .unwrap();
    let out = runtime.apply(RuntimeInput {
        timestamp: 2,
        messages: vec![Envelope {
            from: ReplicaId {
                entity: them,
                signer: stranger.address(),
            },
            to: ReplicaId {
                entity,
                signer: k.address(),
            },
            payload: Payload::Account {
                message,
                sender_board: their_board,
            },
        }],
        ..RuntimeInput::default()
    });
    assert!(out.events.iter().any(|e| matches!(
        e,
        RuntimeEvent::TxDropped {
            error: EntityTxError::Account { .. },
            ..
        }
    )));
    assert!(out.messages.is_empty());
    let replica = runtime.replica_of(&entity).unwrap();
    assert!(replica.state().accounts.is_empty());
    assert_eq!(replica.state().height, 0);
}

// ---- determinism ----

#[derive(Debug, Clone)]
enum Action {
    Pay {
        from: usize,
        to: usize,
        amount: u128,
    },
    Credit {
        from: usize,
        to: usize,
        amount: u128,
    },
    Block,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0usize..3, 0usize..3, 1u128..400).prop_map(|(from, to, amount)| Action::Pay { from, to, amount }),
        2 => (0usize..3, 0usize..3, 1u128..1_000).prop_map(|(from, to, amount)| Action::Credit { from, to, amount }),
        1 => Just(Action::Block),
    ]
}

/// Three single-signer entities in one runtime with all accounts open, driven by [`Action`]s.
struct Scenario {
    keys: Vec<SignerKey>,
    ids: Vec<EntityId>,
    runtime: Runtime,
    now: u64,
    block: u64,
}

impl Scenario {
    /// The runtime and the state hash after every input.
    fn new() -> (Self, Vec<Hash>) {
        let keys: Vec<SignerKey> = (31..34).map(key).collect();
        let boards: Vec<Board> = keys.iter().map(|k| Board::single(k.address())).collect();
        let ids: Vec<EntityId> = boards.iter().map(|b| b.lazy_entity_id()).collect();
        let mut scenario = Scenario {
            runtime: Runtime::new(keys.clone()),
            keys,
            ids,
            now: 0,
            block: 0,
        };
        let mut hashes = Vec::new();
        for (board, key) in boards.iter().zip(&scenario.keys.clone()) {
            hashes.push(scenario.input(vec![add_replica(board, key.address())], vec![]));
        }
        for a in 0..3 {
            for (b, board) in boards.iter().enumerate().skip(a + 1) {
                let open = Command::Submit {
                    entity: scenario.ids[a],
                    txs: vec![EntityTx::OpenAccount {
                        peer: scenario.ids[b],
                        peer_board: board.clone(),
                    }],
                };
                hashes.push(scenario.input(vec![open], vec![]));
            }
        }
        (scenario, hashes)
    }

    fn input(&mut self, commands: Vec<Command>, chain_events: Vec<ChainEvent>) -> Hash {
        self.now += 7;
        self.runtime.apply(RuntimeInput {
            timestamp: self.now,
            commands,
            messages: vec![],
            chain_events,
        });
        self.runtime.state().hash()
    }

    fn step(&mut self, action: &Action) -> Hash {
        let submit = |from: usize, tx: EntityTx| {
            vec![Command::Submit {
                entity: self.ids[from],
                txs: vec![tx],
            }]
        };
        let (commands, events) = match *action {
            Action::Pay { from, to, amount } if from != to => {
                (submit(from, pay(self.ids[to], amount)), vec![])
            }
            Action::Credit { from, to, amount } if from != to => {
                (submit(from, credit(self.ids[to], amount)), vec![])
            }
            _ => {
                self.block += 1;
                let block = ChainEvent::Block { height: self.block };
                (vec![], vec![block])
            }
        };
        self.input(commands, events)
    }

    /// A runtime resumed from a snapshot of this one's state.
    fn resumed(&self) -> Scenario {
        let bytes = crate::codec::encode(self.runtime.state());
        let state: RuntimeState = crate::codec::decode("runtime state", &bytes).unwrap();
        Scenario {
            keys: self.keys.clone(),
            ids: self.ids.clone(),
            runtime: Runtime::from_state(self.keys.clone(), state),
            now: self.now,
            block: self.block,
        }
    }
}

/// The scenario with `actions`; returns the state hash after every input.
fn scenario(actions: &[Action]) -> (Vec<Hash>, RuntimeState) {
    let (mut scenario, mut hashes) = Scenario::new();
    for action in actions {
        hashes.push(scenario.step(action));
    }
    (hashes, scenario.runtime.state().clone())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn same_inputs_give_the_same_state_hash_after_every_input(
        actions in proptest::collection::vec(action(), 1..40)
    ) {
        let (first, state) = scenario(&actions);
        let (second, _) = scenario(&actions);
        prop_assert_eq!(&first, &second);

        // A snapshot round trip changes nothing, and a runtime resumed from it goes on alike.
        let bytes = crate::codec::encode(&state);
        let back: RuntimeState = crate::codec::decode("runtime state", &bytes).unwrap();
        prop_assert_eq!(&back, &state);
        prop_assert_eq!(back.hash(), state.hash());
    }

    /// The hashes are cached and recomputed for what changed: in a runtime that goes on, and in
    /// one resumed from a snapshot (whose caches start empty), the cached hash is the one
    /// computed from scratch after every input, and the two runtimes agree.
    #[test]
    fn cached_hashes_equal_hashes_from_scratch_before_and_after_a_snapshot(
        before in proptest::collection::vec(action(), 0..20),
        after in proptest::collection::vec(action(), 1..20),
    ) {
        let (mut live, _) = Scenario::new();
        for action in &before {
            let hash = live.step(action);
            prop_assert_eq!(hash, live.runtime.state().hash_from_scratch());
        }
        let mut resumed = live.resumed();
        prop_assert_eq!(resumed.runtime.state().hash(), live.runtime.state().hash());
        for action in &after {
            let hash = live.step(action);
            prop_assert_eq!(resumed.step(action), hash);
            prop_assert_eq!(hash, live.runtime.state().hash_from_scratch());
            prop_assert_eq!(hash, resumed.runtime.state().hash_from_scratch());
            for (id, replica) in &live.runtime.state().replicas {
                let state = replica.state();
                prop_assert_eq!(state.hash(), state.hash_from_scratch(), "{:?}", id);
            }
        }
        prop_assert_eq!(live.runtime.state(), resumed.runtime.state());
    }
}

#[test]
fn a_hub_with_a_two_of_three_board_agrees_to_netting_by_consensus_and_forwards_the_loop() {
    use crate::entity::{EntityEvent, NettingOrder};
    use crate::netting::SignedPosition;
    // Runtimes 0..3: the hub's members. Runtimes 3, 4: wallets A and B, with accounts among
    // all three: A owes the hub, the hub owes B, B owes A.
    let hub_keys = [key(1), key(2), key(3)];
    let hub_board = two_of_three(&hub_keys);
    let hub = hub_board.lazy_entity_id();
    let wallet_keys = [key(21), key(22)];
    let wallet_boards: Vec<Board> = wallet_keys
        .iter()
        .map(|k| Board::single(k.address()))
        .collect();
    let [a, b] = [0, 1].map(|i| wallet_boards[i].lazy_entity_id());
    let mut net = Net::new(vec![
        vec![hub_keys[0].clone()],
        vec![hub_keys[1].clone()],
        vec![hub_keys[2].clone()],
        vec![wallet_keys[0].clone()],
        vec![wallet_keys[1].clone()],
    ]);
    for (i, k) in hub_keys.iter().enumerate() {
        net.command(i, add_replica(&hub_board, k.address()));
    }
    for (i, k) in wallet_keys.iter().enumerate() {
        net.command(3 + i, add_replica(&wallet_boards[i], k.address()));
    }
    let open = |peer: EntityId, board: &Board| EntityTx::OpenAccount {
        peer,
        peer_board: board.clone(),
    };
    net.submit(3, a, vec![open(hub, &hub_board), credit(hub, 1_000)]);
    net.submit(4, b, vec![open(hub, &hub_board), credit(hub, 1_000)]);
    net.submit(3, a, vec![open(b, &wallet_boards[1]), credit(b, 1_000)]);
    net.submit(4, b, vec![credit(a, 1_000)]);
    net.submit(0, hub, vec![credit(a, 1_000), credit(b, 1_000)]);
    net.submit(3, a, vec![pay(hub, 300)]);
    net.submit(0, hub, vec![pay(b, 200)]);
    net.submit(4, b, vec![pay(a, 250)]);

    // What each entity is owed minus what it owes, from its own books.
    let owed = |net: &Net, at: usize, me: &EntityId, peer: &EntityId| {
        let account = net.account(at, me, peer);
        let left_view = crate::netting::uncollateralised(&account.state().deltas[&TOKEN]).unwrap();
        match account.side() {
            crate::delta::Side::Left => left_view,
            crate::delta::Side::Right => -left_view,
        }
    };
    let nets = |net: &Net| {
        [
            owed(net, 0, &hub, &a) + owed(net, 0, &hub, &b),
            owed(net, 3, &a, &hub) + owed(net, 3, &a, &b),
            owed(net, 4, &b, &hub) + owed(net, 4, &b, &a),
        ]
    };
    let before = nets(&net);
    assert_eq!(before, [100, -50, -50]);

    let mut positions = Vec::new();
    for (at, me, peers) in [(0, hub, [a, b]), (3, a, [hub, b]), (4, b, [hub, a])] {
        for peer in peers {
            positions.push(SignedPosition::from_account(&net.account(at, &me, &peer)).unwrap());
        }
    }
    let order = NettingOrder {
        token: TOKEN,
        positions,
        boards: vec![
            hub_board.clone(),
            wallet_boards[0].clone(),
            wallet_boards[1].clone(),
        ],
        secret: crate::onion::Preimage([5; 32]),
        onion_key: wallet_keys[0].public_key(),
    };
    net.events.clear();
    net.submit(3, a, vec![EntityTx::StartNetting(Box::new(order))]);

    // Every hub member applied the agreement (by the committed frame), and the loop of 200
    // went through the hub with no fee.
    let agreed_at: Vec<usize> = net
        .events
        .iter()
        .filter_map(|event| match event {
            RuntimeEvent::Entity {
                replica,
                event: EntityEvent::NettingAgreed { amount: 200, .. },
            } if replica.entity == hub => Some(replica.signer),
            _ => None,
        })
        .map(|signer| hub_keys.iter().position(|k| k.address() == signer).unwrap())
        .collect();
    assert_eq!(agreed_at.len(), 3, "each member: {agreed_at:?}");
    assert_eq!(nets(&net), before, "no net position moved");
    assert_eq!(owed(&net, 0, &hub, &a), 100);
    assert_eq!(owed(&net, 4, &b, &hub), 0);
    assert_eq!(owed(&net, 3, &a, &b), 50);
    let hashes: Vec<Hash> = (0..3)
        .map(|i| net.runtimes[i].replica_of(&hub).unwrap().state().hash())
        .collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]));
    for i in 0..3 {
        let state = net.runtimes[i].replica_of(&hub).unwrap().state();
        assert!(state.netting_agreements.is_empty(), "member {i}: used up");
    }
    let wallet = net.runtimes[3].replica_of(&a).unwrap().state();
    assert!(wallet.netting_rounds.is_empty(), "the netting is over");
}
