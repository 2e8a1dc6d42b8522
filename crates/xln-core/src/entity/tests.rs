//! Byzantine tests of entity consensus, as tables of steps: an input to one replica, the
//! outputs it must give, and the state every replica must be in afterwards.

use super::*;
use crate::board::{Board, BoardMember, EntityId, QuorumSignature};
use crate::crypto::{Hash, Signature, SignerKey, keccak256};

/// The replicas of one entity, member 0 the proposer.
struct Cluster {
    keys: Vec<SignerKey>,
    replicas: Vec<EntityReplica>,
    now: u64,
}

impl Cluster {
    fn new(weights: &[u64], threshold: u64) -> Self {
        let keys: Vec<SignerKey> = (1..=weights.len() as u8)
            .map(|n| SignerKey::from_bytes(&[n; 32]).unwrap())
            .collect();
        let members = keys
            .iter()
            .zip(weights)
            .map(|(k, w)| BoardMember {
                signer: k.address(),
                weight: *w,
            })
            .collect();
        let board = Board::new(threshold, members).unwrap();
        let state = EntityState::new(board.lazy_entity_id(), board, Hash::ZERO);
        let replicas = keys
            .iter()
            .map(|k| EntityReplica::new(k.address(), state.clone()))
            .collect();
        Cluster {
            keys,
            replicas,
            now: 1_000,
        }
    }

    fn deliver(
        &mut self,
        to: usize,
        from: usize,
        message: EntityMessage,
    ) -> Result<Vec<ReplicaOutput>, ConsensusError> {
        let from = self.keys[from].address();
        self.replicas[to].handle(from, message, &self.keys[to], self.now)
    }

    /// The proposer proposes the given transactions; returns its outputs.
    fn propose(&mut self, txs: Vec<EntityTx>) -> Vec<ReplicaOutput> {
        self.replicas[0].submit(txs);
        self.replicas[0].propose(&self.keys[0], self.now)
    }

    /// A frame at the next height on top of the committed state, signed by `signer`, whose
    /// state hash is what the replay gives unless `tamper` changes it.
    fn frame(&self, txs: Vec<EntityTx>, tamper: bool) -> EntityFrame {
        let base = self.replicas[1].state();
        let mut state = base.clone();
        state.height += 1;
        state.timestamp = self.now;
        let mut outcome = Outcome::default();
        for tx in &txs {
            state.apply_tx(tx, &mut outcome).unwrap();
        }
        state.flush_accounts(&mut outcome);
        EntityFrame {
            height: state.height,
            timestamp: self.now,
            txs,
            prev_hash: base.prev_hash,
            state_hash: if tamper {
                keccak256(b"tampered")
            } else {
                state.hash()
            },
        }
    }

    fn propose_message(&self, frame: &EntityFrame, signer: usize) -> EntityMessage {
        let hash = frame.hash(&self.replicas[0].state().id);
        EntityMessage::Propose {
            frame: frame.clone(),
            signature: self.keys[signer].sign(&hash),
        }
    }

    fn commit_message(&self, frame: &EntityFrame, signers: &[usize]) -> EntityMessage {
        let hash = frame.hash(&self.replicas[0].state().id);
        EntityMessage::Commit {
            frame: frame.clone(),
            certificate: QuorumSignature(
                signers.iter().map(|&i| self.keys[i].sign(&hash)).collect(),
            ),
        }
    }

    fn heights(&self) -> Vec<u64> {
        self.replicas.iter().map(|r| r.state().height).collect()
    }
}

fn block(height: u64) -> Vec<EntityTx> {
    vec![EntityTx::ChainBlock { height }]
}

/// Splits outputs into the messages for members, by member index.
fn messages_for(cluster: &Cluster, outputs: &[ReplicaOutput]) -> Vec<(usize, EntityMessage)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ReplicaOutput::ToMember { signer, message } => {
                let i = cluster.keys.iter().position(|k| &k.address() == signer)?;
                Some((i, message.clone()))
            }
            _ => None,
        })
        .collect()
}

fn is_precommit(outputs: &[ReplicaOutput]) -> bool {
    matches!(
        outputs,
        [ReplicaOutput::ToMember {
            message: EntityMessage::Precommit { .. },
            ..
        }]
    )
}

fn committed(outputs: &[ReplicaOutput]) -> Option<u64> {
    outputs.iter().find_map(|o| match o {
        ReplicaOutput::Committed { height, .. } => Some(*height),
        _ => None,
    })
}

/// What a step must produce.
enum Expect {
    Precommit,
    Commit(u64),
    Nothing,
    Refused(fn(&ConsensusError) -> bool),
}

struct Step {
    what: &'static str,
    to: usize,
    from: usize,
    message: EntityMessage,
    expect: Expect,
    heights_after: Vec<u64>,
}

fn run_steps(cluster: &mut Cluster, steps: Vec<Step>) {
    for step in steps {
        let before = cluster.replicas[step.to].clone();
        let result = cluster.deliver(step.to, step.from, step.message);
        match (&step.expect, &result) {
            (Expect::Precommit, Ok(out)) => assert!(is_precommit(out), "{}: {out:?}", step.what),
            (Expect::Commit(h), Ok(out)) => {
                assert_eq!(committed(out), Some(*h), "{}: {out:?}", step.what)
            }
            (Expect::Nothing, Ok(out)) => {
                assert!(committed(out).is_none(), "{}: {out:?}", step.what)
            }
            (Expect::Refused(check), Err(error)) => {
                assert!(check(error), "{}: wrong error {error:?}", step.what);
                assert_eq!(
                    cluster.replicas[step.to], before,
                    "{}: state changed",
                    step.what
                );
            }
            (_, other) => panic!("{}: unexpected {other:?}", step.what),
        }
        assert_eq!(
            cluster.heights(),
            step.heights_after,
            "{}: heights",
            step.what
        );
    }
}

#[test]
fn single_signer_commits_at_once() {
    let mut cluster = Cluster::new(&[1], 1);
    let outputs = cluster.propose(block(7));
    assert_eq!(committed(&outputs), Some(1));
    assert_eq!(cluster.replicas[0].state().j_height, 7);
    assert!(!cluster.replicas[0].is_proposing());
}

#[test]
fn three_of_four_commits_with_one_member_silent() {
    let mut cluster = Cluster::new(&[1, 1, 1, 1], 3);
    let outputs = cluster.propose(block(5));
    let proposals = messages_for(&cluster, &outputs);
    assert_eq!(proposals.len(), 3);
    let (_, propose) = proposals[0].clone();
    let precommit = |c: &mut Cluster, i: usize| {
        let out = c.deliver(i, 0, propose.clone()).unwrap();
        messages_for(c, &out).remove(0).1
    };
    let p1 = precommit(&mut cluster, 1);
    let p2 = precommit(&mut cluster, 2);
    // Member 3 stays silent.
    let steps = vec![
        Step {
            what: "first precommit: weight 2 of 3",
            to: 0,
            from: 1,
            message: p1.clone(),
            expect: Expect::Nothing,
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "second precommit reaches the threshold",
            to: 0,
            from: 2,
            message: p2,
            expect: Expect::Commit(1),
            heights_after: vec![1, 0, 0, 0],
        },
    ];
    run_steps(&mut cluster, steps);

    // The commit reaches every member; the silent one replays it.
    let frame = cluster.frame(block(5), false);
    let certificate = cluster.commit_message(&frame, &[0, 1, 2]);
    let steps = vec![
        Step {
            what: "member 1 applies its locked frame",
            to: 1,
            from: 0,
            message: certificate.clone(),
            expect: Expect::Commit(1),
            heights_after: vec![1, 1, 0, 0],
        },
        Step {
            what: "member 2 applies",
            to: 2,
            from: 0,
            message: certificate.clone(),
            expect: Expect::Commit(1),
            heights_after: vec![1, 1, 1, 0],
        },
        Step {
            what: "the silent member replays the committed frame",
            to: 3,
            from: 0,
            message: certificate.clone(),
            expect: Expect::Commit(1),
            heights_after: vec![1, 1, 1, 1],
        },
        Step {
            what: "a replayed commit is stale",
            to: 3,
            from: 0,
            message: certificate,
            expect: Expect::Refused(|e| matches!(e, ConsensusError::Stale { .. })),
            heights_after: vec![1, 1, 1, 1],
        },
    ];
    run_steps(&mut cluster, steps);
    let hashes: Vec<Hash> = cluster.replicas.iter().map(|r| r.state().hash()).collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn forged_duplicated_and_short_signatures_do_not_count() {
    let mut cluster = Cluster::new(&[1, 1, 1, 1], 3);
    let stranger = SignerKey::from_bytes(&[77; 32]).unwrap();
    let frame = cluster.frame(block(3), false);
    let hash = frame.hash(&cluster.replicas[0].state().id);
    let cert = |sigs: Vec<Signature>| EntityMessage::Commit {
        frame: frame.clone(),
        certificate: QuorumSignature(sigs),
    };
    let sig = |i: usize| cluster.keys[i].sign(&hash);
    let no_quorum = |e: &ConsensusError| matches!(e, ConsensusError::NoQuorum { .. });
    let steps = vec![
        Step {
            what: "two members and a stranger",
            to: 1,
            from: 0,
            message: cert(vec![sig(0), sig(2), stranger.sign(&hash)]),
            expect: Expect::Refused(no_quorum),
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "a member's signature twice",
            to: 1,
            from: 0,
            message: cert(vec![sig(0), sig(0), sig(2)]),
            expect: Expect::Refused(no_quorum),
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "less than threshold weight",
            to: 1,
            from: 0,
            message: cluster.commit_message(&frame, &[0, 2]),
            expect: Expect::Refused(no_quorum),
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "a signature over another frame",
            to: 1,
            from: 0,
            message: cert(vec![
                sig(0),
                sig(2),
                cluster.keys[3].sign(&keccak256(b"other")),
            ]),
            expect: Expect::Refused(no_quorum),
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "a proposal signed by a non-proposer member",
            to: 1,
            from: 2,
            message: cluster.propose_message(&frame, 2),
            expect: Expect::Refused(|e| matches!(e, ConsensusError::NotFromProposer { .. })),
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "a valid certificate commits",
            to: 1,
            from: 0,
            message: cluster.commit_message(&frame, &[0, 2, 3]),
            expect: Expect::Commit(1),
            heights_after: vec![0, 1, 0, 0],
        },
    ];
    run_steps(&mut cluster, steps);

    // A forged precommit is refused by the proposer.
    let mut cluster = Cluster::new(&[1, 1, 1, 1], 3);
    let outputs = cluster.propose(block(3));
    let (_, EntityMessage::Propose { frame, .. }) = messages_for(&cluster, &outputs).remove(0)
    else {
        panic!("a proposal")
    };
    let hash = frame.hash(&cluster.replicas[0].state().id);
    let before = cluster.replicas[0].clone();
    let forged = EntityMessage::Precommit {
        height: 1,
        frame_hash: hash,
        signatures: vec![stranger.sign(&hash)],
    };
    assert_eq!(
        cluster.deliver(0, 1, forged),
        Err(ConsensusError::NotAMember)
    );
    assert_eq!(cluster.replicas[0], before);
}

#[test]
fn forwarding_from_outside_the_board_is_refused() {
    let mut cluster = Cluster::new(&[1, 1], 2);
    let stranger = SignerKey::from_bytes(&[77; 32]).unwrap();
    let before = cluster.replicas[0].clone();
    let result = cluster.replicas[0].handle(
        stranger.address(),
        EntityMessage::Forward { txs: block(9) },
        &cluster.keys[0],
        cluster.now,
    );
    assert_eq!(result, Err(ConsensusError::NotAMember));
    assert_eq!(cluster.replicas[0], before);
    // A member's forward reaches the proposer's queue.
    cluster
        .deliver(0, 1, EntityMessage::Forward { txs: block(9) })
        .unwrap();
    assert_eq!(cluster.replicas[0].mempool(), block(9));
}

#[test]
fn a_member_whose_replay_differs_refuses() {
    let mut cluster = Cluster::new(&[1, 1, 1, 1], 3);
    cluster.now = 3 * MAX_ENTITY_CLOCK_SKEW_MS;
    let tampered = cluster.frame(block(4), true);
    let future = EntityFrame {
        height: 2,
        ..cluster.frame(block(4), false)
    };
    let steps = vec![
        Step {
            what: "state hash that the replay does not give",
            to: 1,
            from: 0,
            message: cluster.propose_message(&tampered, 0),
            expect: Expect::Refused(|e| matches!(e, ConsensusError::StateHashMismatch { .. })),
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "a frame from the future",
            to: 1,
            from: 0,
            message: cluster.propose_message(&future, 0),
            expect: Expect::Refused(|e| matches!(e, ConsensusError::Future { .. })),
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "a proposal stamped too long ago",
            to: 1,
            from: 0,
            message: cluster.propose_message(
                &EntityFrame {
                    timestamp: 0,
                    ..cluster.frame(block(4), false)
                },
                0,
            ),
            expect: Expect::Refused(|e| matches!(e, ConsensusError::BadTimestamp { .. })),
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "the honest frame is precommitted",
            to: 1,
            from: 0,
            message: cluster.propose_message(&cluster.frame(block(4), false), 0),
            expect: Expect::Precommit,
            heights_after: vec![0, 0, 0, 0],
        },
    ];
    run_steps(&mut cluster, steps);
}

#[test]
fn an_equivocating_proposer_cannot_commit_two_frames_at_one_height() {
    let mut cluster = Cluster::new(&[1, 1, 1, 1], 3);
    let a = cluster.frame(block(10), false);
    let b = cluster.frame(block(20), false);
    let already = |e: &ConsensusError| matches!(e, ConsensusError::AlreadyPrecommitted { .. });
    let steps = vec![
        Step {
            what: "member 1 precommits A",
            to: 1,
            from: 0,
            message: cluster.propose_message(&a, 0),
            expect: Expect::Precommit,
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "member 1 refuses B at the same height",
            to: 1,
            from: 0,
            message: cluster.propose_message(&b, 0),
            expect: Expect::Refused(already),
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "member 1 precommits A again (idempotent)",
            to: 1,
            from: 0,
            message: cluster.propose_message(&a, 0),
            expect: Expect::Precommit,
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "member 2 precommits B",
            to: 2,
            from: 0,
            message: cluster.propose_message(&b, 0),
            expect: Expect::Precommit,
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "member 3 precommits B",
            to: 3,
            from: 0,
            message: cluster.propose_message(&b, 0),
            expect: Expect::Precommit,
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "A has proposer + member 1: weight 2, no quorum",
            to: 2,
            from: 0,
            message: cluster.commit_message(&a, &[0, 1]),
            expect: Expect::Refused(|e| matches!(e, ConsensusError::NoQuorum { .. })),
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "B has proposer + members 2 and 3: commits, even at member 1",
            to: 1,
            from: 0,
            message: cluster.commit_message(&b, &[0, 2, 3]),
            expect: Expect::Commit(1),
            heights_after: vec![0, 1, 0, 0],
        },
    ];
    run_steps(&mut cluster, steps);
    assert_eq!(cluster.replicas[1].state().j_height, 20);
}

#[test]
fn weighted_board_needs_threshold_weight() {
    // Weights 3, 2, 1, 1; threshold 5.
    let mut cluster = Cluster::new(&[3, 2, 1, 1], 5);
    let frame = cluster.frame(block(2), false);
    let no_quorum = |e: &ConsensusError| matches!(e, ConsensusError::NoQuorum { .. });
    let steps = vec![
        Step {
            what: "members 2, 3, 4: weight 4",
            to: 1,
            from: 0,
            message: cluster.commit_message(&frame, &[1, 2, 3]),
            expect: Expect::Refused(no_quorum),
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "proposer alone: weight 3",
            to: 2,
            from: 0,
            message: cluster.commit_message(&frame, &[0]),
            expect: Expect::Refused(no_quorum),
            heights_after: vec![0, 0, 0, 0],
        },
        Step {
            what: "proposer and member 2: weight 5",
            to: 2,
            from: 0,
            message: cluster.commit_message(&frame, &[0, 1]),
            expect: Expect::Commit(1),
            heights_after: vec![0, 0, 1, 0],
        },
        Step {
            what: "proposer and members 3, 4: weight 5",
            to: 1,
            from: 0,
            message: cluster.commit_message(&frame, &[0, 2, 3]),
            expect: Expect::Commit(1),
            heights_after: vec![0, 1, 1, 0],
        },
    ];
    run_steps(&mut cluster, steps);

    // Precommits: proposer (3) + member 3 (1) is not enough; member 2 (2) then makes 6.
    let mut cluster = Cluster::new(&[3, 2, 1, 1], 5);
    let outputs = cluster.propose(block(2));
    let propose = messages_for(&cluster, &outputs).remove(0).1;
    let precommit_of = |c: &mut Cluster, i: usize| {
        let out = c.deliver(i, 0, propose.clone()).unwrap();
        messages_for(c, &out).remove(0).1
    };
    let light = precommit_of(&mut cluster, 2);
    let heavy = precommit_of(&mut cluster, 1);
    let out = cluster.deliver(0, 2, light).unwrap();
    assert_eq!(committed(&out), None);
    let out = cluster.deliver(0, 1, heavy).unwrap();
    assert_eq!(committed(&out), Some(1));
}

/// The state hash commits to every account and to the order book, costs what changed, and is
/// the hash computed from scratch after any change, in a clone too.
#[test]
fn the_state_hash_commits_to_every_account_and_the_book() {
    use crate::account::AccountTx;
    use crate::swap::{Order, OrderKey, TimeInForce, Unlimited};
    let hub_key = SignerKey::from_bytes(&[1; 32]).unwrap();
    let hub_board = Board::single(hub_key.address());
    let mut hub = EntityState::new(hub_board.lazy_entity_id(), hub_board, Hash::ZERO);
    let peers: Vec<(crate::board::EntityId, Board)> = (2..40u8)
        .map(|n| {
            let board = Board::single(SignerKey::from_bytes(&[n; 32]).unwrap().address());
            (board.lazy_entity_id(), board)
        })
        .collect();
    for (peer, peer_board) in &peers {
        let open = EntityTx::OpenAccount {
            peer: *peer,
            peer_board: peer_board.clone(),
        };
        hub.apply_tx(&open, &mut Outcome::default()).unwrap();
    }
    let hash = hub.hash();
    assert_eq!(hash, hub.hash_from_scratch());
    let mut hashes = std::collections::BTreeSet::from([hash]);
    for (peer, _) in &peers {
        let mut changed = hub.clone();
        let credit = EntityTx::Account {
            peer: *peer,
            tx: AccountTx::SetCreditLimit {
                token: 1,
                amount: 5,
            },
        };
        changed.apply_tx(&credit, &mut Outcome::default()).unwrap();
        assert_eq!(changed.hash(), changed.hash_from_scratch());
        assert!(
            hashes.insert(changed.hash()),
            "a change of {peer} changes the hash"
        );
        // The original, which shares the unchanged accounts with the clone, is as it was.
        assert_eq!(hub.hash(), hash);
    }
    let order = Order {
        key: OrderKey {
            owner: peers[0].0,
            offer_id: 1,
        },
        give_token: 1,
        give_amount: 10,
        want_token: 2,
        want_amount: 20,
        remaining: 10,
        expires_at_ms: u64::MAX,
        time_in_force: TimeInForce::GoodTillCancel,
    };
    let mut booked = hub.clone();
    booked.book.submit(order, 0, &mut Unlimited).unwrap();
    assert_eq!(booked.hash(), booked.hash_from_scratch());
    assert!(hashes.insert(booked.hash()), "the book is in the hash");
    booked.book.remove(&OrderKey {
        owner: peers[0].0,
        offer_id: 1,
    });
    assert_eq!(booked.hash(), booked.hash_from_scratch());
    // The arrival counter moved on: not the state before the order came.
    assert!(hashes.insert(booked.hash()));
    let bytes = crate::codec::encode(&booked);
    let back: EntityState = crate::codec::decode("entity state", &bytes).unwrap();
    assert_eq!(back.hash(), booked.hash());
}

#[test]
fn side_ids_are_even_for_left_odd_for_right_and_never_wrap() {
    use super::htlc::allocate_side_id;
    let left = crate::board::EntityId([1; 32]);
    let right = crate::board::EntityId([2; 32]);
    let mut counter = 0;
    assert_eq!(allocate_side_id(&mut counter, &left, &right), Some(0));
    assert_eq!(allocate_side_id(&mut counter, &left, &right), Some(2));
    assert_eq!(allocate_side_id(&mut counter, &right, &left), Some(5));
    assert_eq!(counter, 3);
    // The last id that fits, then none: the counter stays where it is.
    let mut counter = u64::MAX / 2;
    assert_eq!(
        allocate_side_id(&mut counter, &right, &left),
        Some(u64::MAX)
    );
    assert_eq!(allocate_side_id(&mut counter, &right, &left), None);
    assert_eq!(allocate_side_id(&mut counter, &left, &right), None);
    assert_eq!(counter, u64::MAX / 2 + 1);
}

/// Commits `txs` through the whole cluster: the proposer proposes, every member precommits,
/// the proposer commits and every member applies the commit.
fn commit_everywhere(cluster: &mut Cluster, txs: Vec<EntityTx>) -> u64 {
    let outputs = cluster.propose(txs);
    let mut commits = messages_for(cluster, &outputs)
        .into_iter()
        .filter(|(_, m)| matches!(m, EntityMessage::Commit { .. }))
        .collect::<Vec<_>>();
    for (member, propose) in messages_for(cluster, &outputs) {
        if !matches!(propose, EntityMessage::Propose { .. }) {
            continue;
        }
        let out = cluster.deliver(member, 0, propose).unwrap();
        for (_, precommit) in messages_for(cluster, &out) {
            if let Ok(out) = cluster.deliver(0, member, precommit) {
                commits.extend(messages_for(cluster, &out));
            }
        }
    }
    for (member, commit) in commits {
        cluster.deliver(member, 0, commit).unwrap();
    }
    let height = cluster.replicas[0].state().height;
    assert!(cluster.heights().iter().all(|h| *h == height));
    height
}

/// Test digests: not the Depository's ABI encoding, but a function of the same inputs.
struct TestDigests;

impl ChainDigests for TestDigests {
    fn batch(&self, domain: &Hash, entity: &EntityId, nonce: u64, r: &[ChainRequest]) -> Hash {
        crate::codec::hash_of(&("batch", domain, entity, nonce, r))
    }
    fn settlement(
        &self,
        domain: &Hash,
        a: &EntityId,
        b: &EntityId,
        terms: &crate::account::SettlementTerms,
    ) -> Hash {
        let (a, b) = if a.0 < b.0 { (a, b) } else { (b, a) };
        crate::codec::hash_of(&("settlement", domain, a, b, terms))
    }
}

#[test]
fn members_co_sign_only_batches_of_requests_they_committed_each_at_one_nonce() {
    let mut cluster = Cluster::new(&[1, 1, 1], 2);
    let withdraw = |amount: u128| ChainRequest::Withdraw {
        token: 1,
        amount,
        to: crate::crypto::Address([9; 20]),
    };
    commit_everywhere(
        &mut cluster,
        vec![EntityTx::ChainReserve {
            token: 1,
            amount: 100,
        }],
    );
    let height = commit_everywhere(&mut cluster, vec![EntityTx::Chain(withdraw(10))]);
    for replica in &cluster.replicas {
        let kept: Vec<_> = replica.kept_chain_requests().collect();
        assert_eq!(kept, vec![(height, &withdraw(10), None)]);
    }
    let entity = cluster.replicas[0].state().id;
    let digest = |nonce: u64, requests: &[ChainRequest]| {
        TestDigests.batch(&Hash::ZERO, &entity, nonce, requests)
    };
    let sign = |nonce: u64, requests: Vec<ChainRequest>, digest: Hash| EntityMessage::SignBatch {
        nonce,
        requests,
        digest,
    };
    let ask = |cluster: &mut Cluster, to: usize, from: usize, message: EntityMessage| {
        let from = cluster.keys[from].address();
        cluster.replicas[to].handle_with(
            from,
            message,
            &cluster.keys[to],
            cluster.now,
            Some(&TestDigests),
        )
    };
    let refused =
        |cluster: &mut Cluster, to: usize, from: usize, message: EntityMessage| -> ConsensusError {
            let before = cluster.replicas[to].clone();
            let error = ask(cluster, to, from, message).unwrap_err();
            assert_eq!(cluster.replicas[to], before, "a refusal changes nothing");
            error
        };

    // What the replica did not commit, a digest of something else, an asker that is not the
    // proposer, a replica without digests: all refused.
    let other = vec![withdraw(11)];
    let error = refused(
        &mut cluster,
        1,
        0,
        sign(0, other.clone(), digest(0, &other)),
    );
    assert!(
        matches!(error, ConsensusError::NotCommitted { nonce: 0, index: 0 }),
        "{error:?}"
    );
    let ours = vec![withdraw(10)];
    for wrong in [digest(1, &ours), digest(0, &other), keccak256(b"anything")] {
        let error = refused(&mut cluster, 1, 0, sign(0, ours.clone(), wrong));
        assert!(
            matches!(error, ConsensusError::DigestMismatch { .. }),
            "{error:?}"
        );
    }
    let twice = vec![withdraw(10), withdraw(10)];
    let error = refused(
        &mut cluster,
        1,
        0,
        sign(0, twice.clone(), digest(0, &twice)),
    );
    assert!(
        matches!(error, ConsensusError::NotCommitted { index: 1, .. }),
        "{error:?}"
    );
    let error = refused(&mut cluster, 1, 2, sign(0, ours.clone(), digest(0, &ours)));
    assert_eq!(error, ConsensusError::SignNotFromProposer);
    let before = cluster.replicas[1].clone();
    let message = sign(0, ours.clone(), digest(0, &ours));
    let from = cluster.keys[0].address();
    let error = cluster.replicas[1]
        .handle(from, message, &cluster.keys[1], cluster.now)
        .unwrap_err();
    assert_eq!(error, ConsensusError::NoChainDigests);
    assert_eq!(cluster.replicas[1], before);

    // What it committed, at the digest of those requests: signed, and the signature counts
    // for the proposer's round.
    let d0 = digest(0, &ours);
    let out = ask(&mut cluster, 1, 0, sign(0, ours.clone(), d0)).unwrap();
    let [
        (
            0,
            EntityMessage::Signed {
                digest: signed,
                signature,
            },
        ),
    ] = messages_for(&cluster, &out)[..]
    else {
        panic!("{out:?}");
    };
    assert_eq!(signed, d0);
    let out = ask(
        &mut cluster,
        0,
        1,
        EntityMessage::Signed {
            digest: d0,
            signature,
        },
    )
    .unwrap();
    assert_eq!(
        out,
        vec![ReplicaOutput::CoSigned {
            digest: d0,
            signer: cluster.keys[1].address(),
            signature
        }]
    );
    // A signature that is not the sender's, or not over the digest: refused.
    let error = refused(
        &mut cluster,
        0,
        2,
        EntityMessage::Signed {
            digest: d0,
            signature,
        },
    );
    assert!(
        matches!(error, ConsensusError::BadCoSignature { .. }),
        "{error:?}"
    );
    let other_digest = keccak256(b"other");
    let error = refused(
        &mut cluster,
        0,
        1,
        EntityMessage::Signed {
            digest: other_digest,
            signature,
        },
    );
    assert!(
        matches!(error, ConsensusError::BadCoSignature { .. }),
        "{error:?}"
    );
    let own = cluster.keys[0].sign(&d0);
    let board = cluster.replicas[0].state().board.clone();
    board
        .verify_quorum(&d0, &QuorumSignature(vec![own, signature]))
        .unwrap();

    // Asked again at the same nonce (a retry), it signs again; at another nonce, never: the
    // chain could then apply the request twice.
    assert!(ask(&mut cluster, 1, 0, sign(0, ours.clone(), d0)).is_ok());
    let error = refused(&mut cluster, 1, 0, sign(1, ours.clone(), digest(1, &ours)));
    assert!(
        matches!(error, ConsensusError::NotCommitted { nonce: 1, .. }),
        "{error:?}"
    );

    // The same request committed again is a request of its own: it can go at the next nonce,
    // and the first one still only at its own.
    commit_everywhere(&mut cluster, vec![EntityTx::Chain(withdraw(10))]);
    assert!(ask(&mut cluster, 1, 0, sign(1, ours.clone(), digest(1, &ours))).is_ok());
    let error = refused(&mut cluster, 1, 0, sign(2, ours.clone(), digest(2, &ours)));
    assert!(
        matches!(error, ConsensusError::NotCommitted { .. }),
        "{error:?}"
    );
    assert!(ask(&mut cluster, 1, 0, sign(0, ours.clone(), d0)).is_ok());
    let nonces: Vec<Option<u64>> = cluster.replicas[1]
        .kept_chain_requests()
        .map(|(_, _, nonce)| nonce)
        .collect();
    assert_eq!(nonces, vec![Some(0), Some(1)]);
}
