//! A member of a 2-of-3 board that missed commits catches up from the frames the proposer
//! keeps, or from its state when it is further behind than those; forged replies and
//! snapshots change nothing.

use super::*;
use crate::board::{BoardMember, QuorumSignature};
use crate::entity::{CommittedFrame, EntityFrame, KEPT_COMMITS, MAX_SNAPSHOT_BYTES, SYNC_RETRY_MS};

fn key(n: u8) -> SignerKey {
    SignerKey::from_bytes(&[n; 32]).unwrap()
}

/// The three runtimes of a 2-of-3 hub, one member each (member 0 proposes). Messages to an
/// offline member are lost.
struct Hub {
    keys: Vec<SignerKey>,
    id: EntityId,
    runtimes: Vec<Runtime>,
    online: [bool; 3],
    now: u64,
    block: u64,
    /// What was lost on the way to offline members.
    lost: Vec<Envelope>,
    /// Every refusal, with the runtime that refused.
    rejected: Vec<(usize, RuntimeError)>,
    /// Every state snapshot taken: (runtime, from height, to height).
    snapshots: Vec<(usize, u64, u64)>,
    /// Each runtime's state once its replica was added, and every input it was given since,
    /// as the node's store keeps them: what a restart replays.
    starts: Vec<RuntimeState>,
    wal: Vec<Vec<RuntimeInput>>,
}

impl Hub {
    fn new() -> Self {
        let keys: Vec<SignerKey> = (1..=3).map(key).collect();
        let members = keys
            .iter()
            .map(|k| BoardMember {
                signer: k.address(),
                weight: 1,
            })
            .collect();
        let board = Board::new(2, members).unwrap();
        let mut runtimes: Vec<Runtime> = keys.iter().map(|k| Runtime::new([k.clone()])).collect();
        for (runtime, k) in runtimes.iter_mut().zip(&keys) {
            runtime.apply(RuntimeInput {
                timestamp: 1,
                commands: vec![Command::AddReplica {
                    board: board.clone(),
                    signer: k.address(),
                    domain: Hash::ZERO,
                }],
                ..RuntimeInput::default()
            });
        }
        Hub {
            keys,
            id: board.lazy_entity_id(),
            starts: runtimes.iter().map(|r| r.state().clone()).collect(),
            runtimes,
            online: [true; 3],
            now: 1_000,
            block: 0,
            lost: Vec::new(),
            rejected: Vec::new(),
            snapshots: Vec::new(),
            wal: vec![Vec::new(); 3],
        }
    }

    fn member(&self, signer: Address) -> usize {
        self.keys
            .iter()
            .position(|k| k.address() == signer)
            .unwrap()
    }

    fn replica_id(&self, member: usize) -> ReplicaId {
        ReplicaId {
            entity: self.id,
            signer: self.keys[member].address(),
        }
    }

    fn replica(&self, member: usize) -> &EntityReplica {
        self.runtimes[member].replica_of(&self.id).unwrap()
    }

    fn heights(&self) -> Vec<u64> {
        (0..3).map(|i| self.replica(i).state().height).collect()
    }

    /// One input at runtime `at`; its refusals are recorded, its messages returned.
    fn apply(&mut self, at: usize, input: RuntimeInput) -> Vec<Envelope> {
        self.wal[at].push(input.clone());
        let out = self.runtimes[at].apply(input);
        for event in out.events {
            match event {
                RuntimeEvent::Rejected(error) => self.rejected.push((at, error)),
                RuntimeEvent::SnapshotApplied { from, height, .. } => {
                    self.snapshots.push((at, from, height))
                }
                _ => {}
            }
        }
        out.messages
    }

    /// Runtime `at` rebuilt as a restart does: its first state and every input since, each
    /// through its encoding (the store's).
    fn replayed(&self, at: usize) -> Runtime {
        let start = crate::codec::decode("state", &crate::codec::encode(&self.starts[at]));
        let mut runtime = Runtime::from_state([self.keys[at].clone()], start.unwrap());
        for input in &self.wal[at] {
            let input = crate::codec::decode("input", &crate::codec::encode(input));
            runtime.apply(input.unwrap());
        }
        runtime
    }

    /// Member 2's delivery of one message from member `from`: its messages, and what it
    /// refused.
    fn send_to_member_2(&mut self, from: usize, message: EntityMessage) -> Vec<Envelope> {
        let envelope = self.envelope(from, 2, message);
        self.rejected.clear();
        self.apply(
            2,
            RuntimeInput {
                timestamp: self.now,
                messages: vec![envelope],
                ..RuntimeInput::default()
            },
        )
    }

    /// The snapshot the proposer would send now: its committed state and the last kept frame.
    fn proposer_snapshot(&self) -> (EntityState, CommittedFrame) {
        let proposer = self.replica(0);
        let commit = proposer.kept_commits().last().unwrap().clone();
        assert_eq!(commit.frame.height, proposer.state().height);
        (proposer.state().clone(), commit)
    }

    /// Delivers `messages`, and what they cause, until the network is quiet.
    fn deliver(&mut self, mut messages: Vec<Envelope>) {
        while !messages.is_empty() {
            self.now += 1;
            let mut inboxes: Vec<Vec<Envelope>> = vec![Vec::new(); 3];
            for message in messages {
                let to = self.member(message.to.signer);
                if self.online[to] {
                    inboxes[to].push(message);
                } else {
                    self.lost.push(message);
                }
            }
            messages = Vec::new();
            for (at, inbox) in inboxes.into_iter().enumerate() {
                if !inbox.is_empty() {
                    let input = RuntimeInput {
                        timestamp: self.now,
                        messages: inbox,
                        ..RuntimeInput::default()
                    };
                    messages.extend(self.apply(at, input));
                }
            }
        }
    }

    /// The proposer proposes the next block; the frame commits if a quorum is online.
    fn commit_block(&mut self) {
        self.block += 1;
        self.now += 10;
        let input = RuntimeInput {
            timestamp: self.now,
            chain_events: vec![ChainEvent::Block { height: self.block }],
            ..RuntimeInput::default()
        };
        let messages = self.apply(0, input);
        self.deliver(messages);
    }

    /// Member 2 goes offline and the others commit `frames` frames without it.
    fn commit_without_member_2(&mut self, frames: usize) {
        self.online[2] = false;
        for _ in 0..frames {
            self.commit_block();
        }
    }

    /// Member 1 goes offline and member 2 comes back: the next frame commits only with member
    /// 2's precommit, and member 2 ends with the proposer's state.
    fn commit_with_member_2_instead_of_1(&mut self) {
        self.online[1] = false;
        self.online[2] = true;
        self.commit_block();
        assert_eq!(
            self.replica(2).state().hash(),
            self.replica(0).state().hash()
        );
    }

    /// Member 2 refused what it was just given (`out` is what that produced), for the reason
    /// `expected` checks, and its replica is still `before`.
    fn assert_refused(
        &self,
        what: &str,
        out: &[Envelope],
        expected: fn(&ConsensusError) -> bool,
        before: &EntityReplica,
    ) {
        assert!(out.is_empty(), "{what}: {out:?}");
        assert!(
            matches!(
                &self.rejected[..],
                [(2, RuntimeError::Consensus { error, .. })] if expected(error)
            ),
            "{what}: {:?}",
            self.rejected
        );
        assert_eq!(self.replica(2), before, "{what}: the replica changed");
    }

    /// An entity message from member `from` to member `to`.
    fn envelope(&self, from: usize, to: usize, message: EntityMessage) -> Envelope {
        Envelope {
            from: self.replica_id(from),
            to: self.replica_id(to),
            payload: Payload::Entity(message),
        }
    }

    /// The proposer's answer to member 2 asking for the commits from `from_height` on.
    fn reply_to_member_2(&mut self, from_height: u64) -> (Vec<CommittedFrame>, u64) {
        let request = self.envelope(2, 0, EntityMessage::SyncRequest { from_height });
        let input = RuntimeInput {
            timestamp: self.now,
            messages: vec![request],
            ..RuntimeInput::default()
        };
        let mut out = self.apply(0, input);
        assert_eq!(out.len(), 1, "{out:?}");
        match out.remove(0).payload {
            Payload::Entity(EntityMessage::SyncReply {
                commits,
                committed_height,
            }) => (commits, committed_height),
            other => panic!("{other:?}"),
        }
    }
}

fn sync_requests(messages: &[Envelope]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|m| match m.payload {
            Payload::Entity(EntityMessage::SyncRequest { from_height }) => Some(from_height),
            _ => None,
        })
        .collect()
}

#[test]
fn a_member_that_missed_commits_catches_up_when_it_hears_from_the_proposer_again() {
    let mut hub = Hub::new();
    hub.commit_block();
    hub.commit_without_member_2(5);
    assert_eq!(hub.heights(), [6, 6, 1]);
    assert!(hub.rejected.is_empty(), "{:?}", hub.rejected);

    // Back online, member 2 gets the proposal at height 7: it asks for 2..6 and applies them,
    // then the commit of 7.
    hub.online[2] = true;
    hub.commit_block();
    assert_eq!(hub.heights(), [7, 7, 7]);
    let state_hashes: Vec<Hash> = (0..3).map(|i| hub.replica(i).state().hash()).collect();
    assert!(state_hashes.iter().all(|h| *h == state_hashes[0]));
    // It keeps the same frames as the proposer, so it could serve them too.
    let kept =
        |i: usize| -> Vec<CommittedFrame> { hub.replica(i).kept_commits().cloned().collect() };
    assert_eq!(kept(2).len(), 7);
    assert_eq!(
        kept(2).iter().map(|c| &c.frame).collect::<Vec<_>>(),
        kept(0).iter().map(|c| &c.frame).collect::<Vec<_>>()
    );
    // The only refusals: frames from ahead at member 2, before it caught up.
    assert!(!hub.rejected.is_empty());
    assert!(hub.rejected.iter().all(|(at, e)| *at == 2
        && matches!(
            e,
            RuntimeError::Consensus {
                error: ConsensusError::Future { .. },
                ..
            }
        )));
    // And it takes part again: with member 1 offline, 0 and 2 commit.
    hub.online[1] = false;
    hub.commit_block();
    assert_eq!(hub.heights(), [8, 7, 8]);
}

#[test]
fn a_member_that_was_behind_precommits_the_frame_in_flight_once_caught_up() {
    let mut hub = Hub::new();
    hub.commit_block();
    hub.commit_without_member_2(5);
    assert_eq!(hub.heights(), [6, 6, 1]);
    // Member 1 goes down as member 2 comes back: the frame at 7 needs member 2's precommit,
    // and member 2 first refuses it as ahead of its height, then catches up and takes the
    // proposal the proposer sends again with its reply.
    hub.commit_with_member_2_instead_of_1();
    assert_eq!(hub.heights(), [7, 6, 7]);
}

#[test]
fn a_flood_of_frames_from_ahead_makes_one_request_per_retry_interval() {
    let mut hub = Hub::new();
    hub.commit_without_member_2(3);
    let commit = hub
        .lost
        .iter()
        .rev()
        .find(|m| matches!(m.payload, Payload::Entity(EntityMessage::Commit { .. })))
        .cloned()
        .unwrap();
    hub.online[2] = true;
    let flood = |hub: &mut Hub, at: u64| {
        hub.apply(
            2,
            RuntimeInput {
                timestamp: at,
                messages: vec![commit.clone(); 10],
                ..RuntimeInput::default()
            },
        )
    };
    let t = hub.now + 1;
    let first = flood(&mut hub, t);
    assert_eq!(sync_requests(&first), [1]);
    assert_eq!(first[0].to, hub.replica_id(0));
    assert!(sync_requests(&flood(&mut hub, t + SYNC_RETRY_MS - 1)).is_empty());
    assert_eq!(sync_requests(&flood(&mut hub, t + SYNC_RETRY_MS)), [1]);
    assert_eq!(
        hub.rejected.len(),
        30,
        "each frame from ahead is still refused"
    );

    hub.now = t + SYNC_RETRY_MS;
    hub.deliver(first);
    assert_eq!(hub.heights(), [3, 3, 3]);
    assert_eq!(hub.replica(2).state().hash(), hub.replica(0).state().hash());
}

#[test]
fn a_forged_sync_reply_is_refused_and_changes_nothing() {
    let mut hub = Hub::new();
    hub.commit_without_member_2(4);
    assert_eq!(hub.heights(), [4, 4, 0]);
    let (genuine, committed_height) = hub.reply_to_member_2(1);
    assert_eq!(genuine.len(), 4);
    assert_eq!(committed_height, 4);

    let sign = |keys: &[SignerKey], frame: &EntityFrame| {
        let hash = frame.hash(&hub.id);
        QuorumSignature(keys.iter().map(|k| k.sign(&hash)).collect())
    };
    let board_keys = [hub.keys[0].clone(), hub.keys[1].clone()];
    let strangers = [key(7), key(8)];
    let mut other_txs = genuine.clone();
    other_txs[3].frame.txs = vec![EntityTx::ChainBlock { height: 99 }];
    let mut swapped = genuine.clone();
    let certificate = swapped[1].certificate.clone();
    swapped[1].certificate = swapped[2].certificate.clone();
    swapped[2].certificate = certificate;
    let mut one_signature = genuine.clone();
    one_signature[0].certificate.0.truncate(1);
    let mut by_strangers = genuine.clone();
    by_strangers[0].certificate = sign(&strangers, &by_strangers[0].frame);
    // The board's own quorum over a frame whose state hash the replay does not give.
    let mut bad_state = genuine.clone();
    bad_state[0].frame.txs = vec![EntityTx::ChainBlock { height: 99 }];
    bad_state[0].certificate = sign(&board_keys, &bad_state[0].frame);
    let mut gap = genuine.clone();
    gap.remove(1);

    type Case = (
        &'static str,
        usize,
        Vec<CommittedFrame>,
        fn(&ConsensusError) -> bool,
    );
    let no_quorum = |e: &ConsensusError| matches!(e, ConsensusError::NoQuorum { .. });
    let cases: Vec<Case> = vec![
        (
            "the last frame's transactions changed",
            0,
            other_txs,
            no_quorum,
        ),
        ("two certificates swapped", 0, swapped, no_quorum),
        ("one signature of two", 0, one_signature, no_quorum),
        ("signed by strangers", 0, by_strangers, no_quorum),
        ("a state hash the replay does not give", 0, bad_state, |e| {
            matches!(e, ConsensusError::StateHashMismatch { height: 1 })
        }),
        ("a frame missing in the middle", 0, gap, |e| {
            matches!(e, ConsensusError::SyncGap { height: 3 })
        }),
        (
            "the genuine reply from outside the board",
            3,
            genuine.clone(),
            |e| matches!(e, ConsensusError::NotAMember),
        ),
    ];
    let before = hub.replica(2).clone();
    for (what, from, commits, expected) in cases {
        let mut reply = hub.envelope(
            1,
            2,
            EntityMessage::SyncReply {
                commits,
                committed_height,
            },
        );
        if from == 3 {
            reply.from.signer = strangers[0].address();
        }
        hub.rejected.clear();
        let out = hub.apply(
            2,
            RuntimeInput {
                timestamp: hub.now,
                messages: vec![reply],
                ..RuntimeInput::default()
            },
        );
        hub.assert_refused(what, &out, expected, &before);
    }

    // The genuine reply, from any member, goes through.
    let reply = hub.envelope(
        1,
        2,
        EntityMessage::SyncReply {
            commits: genuine,
            committed_height,
        },
    );
    hub.rejected.clear();
    hub.online[2] = true;
    hub.deliver(vec![reply]);
    assert!(hub.rejected.is_empty(), "{:?}", hub.rejected);
    assert_eq!(hub.heights(), [4, 4, 4]);
    assert_eq!(hub.replica(2).state().hash(), hub.replica(0).state().hash());
}

fn is_propose(message: &Envelope) -> bool {
    matches!(
        message.payload,
        Payload::Entity(EntityMessage::Propose { .. })
    )
}

#[test]
fn a_member_further_behind_than_the_kept_commits_catches_up_from_a_state_snapshot() {
    let mut hub = Hub::new();
    hub.commit_block();
    // Member 2 gets the proposal at height 2 and precommits, then goes offline before the
    // commit.
    hub.online[2] = false;
    hub.commit_block();
    let proposal_2 = hub.lost.iter().find(|m| is_propose(m)).cloned().unwrap();
    let input = |hub: &Hub, message: &Envelope| RuntimeInput {
        timestamp: hub.now,
        messages: vec![message.clone()],
        ..RuntimeInput::default()
    };
    let precommit = hub.apply(2, input(&hub, &proposal_2));
    assert!(
        matches!(
            &precommit[..],
            [Envelope {
                payload: Payload::Entity(EntityMessage::Precommit { height: 2, .. }),
                ..
            }]
        ),
        "{precommit:?}"
    );
    for _ in 0..KEPT_COMMITS {
        hub.commit_block();
    }
    let top = KEPT_COMMITS as u64 + 2;
    assert_eq!(hub.heights(), [top, top, 1]);
    let proposer = hub.replica(0);
    assert_eq!(proposer.kept_commits().count(), KEPT_COMMITS, "bounded");
    assert_eq!(proposer.kept_commits().next().unwrap().frame.height, 3);

    // Back online, member 2 gets the proposal at top + 1 and asks from height 2, which is no
    // longer kept: the proposer sends its state, committed at top + 1 by then.
    hub.online[2] = true;
    hub.rejected.clear();
    hub.commit_block();
    assert_eq!(hub.heights(), [top + 1; 3]);
    assert_eq!(hub.snapshots, [(2, 1, top + 1)]);
    assert_eq!(hub.replica(2).state(), hub.replica(0).state());
    assert_eq!(
        hub.replica(2).state().hash(),
        hub.replica(0).state().hash_from_scratch()
    );
    assert!(hub.rejected.iter().all(|(at, e)| *at == 2
        && matches!(
            e,
            RuntimeError::Consensus {
                error: ConsensusError::Future { .. },
                ..
            }
        )));
    // It keeps the frame of the snapshot, so it could serve the frames from there on.
    let kept: Vec<u64> = hub
        .replica(2)
        .kept_commits()
        .map(|c| c.frame.height)
        .collect();
    assert_eq!(kept, [top + 1]);

    // Its precommit at height 2 went with the heights it jumped: the proposal it precommitted
    // is only stale now.
    hub.rejected.clear();
    assert!(hub.apply(2, input(&hub, &proposal_2)).is_empty());
    assert!(
        matches!(
            &hub.rejected[..],
            [(
                2,
                RuntimeError::Consensus {
                    error: ConsensusError::Stale { height: 2, .. },
                    ..
                }
            )]
        ),
        "{:?}",
        hub.rejected
    );

    // It follows the next commits as any member: with member 1 offline, 0 and 2 commit.
    hub.online[1] = false;
    hub.commit_block();
    hub.commit_block();
    assert_eq!(hub.heights(), [top + 3, top + 1, top + 3]);
    assert_eq!(hub.replica(2).state(), hub.replica(0).state());

    // A restart replays member 2's log, the snapshot with it (an ordinary input), to the same
    // state.
    let replayed = hub.replayed(2);
    assert_eq!(replayed.state(), hub.runtimes[2].state());
    assert_eq!(
        replayed.state().hash_from_scratch(),
        hub.runtimes[2].state().hash()
    );
}

#[test]
fn a_forged_state_snapshot_is_refused_and_changes_nothing() {
    let mut hub = Hub::new();
    hub.commit_block();
    hub.commit_without_member_2(3);
    assert_eq!(hub.heights(), [4, 4, 1]);
    let (state, commit) = hub.proposer_snapshot();
    let id = hub.id;
    let board_keys = [hub.keys[0].clone(), hub.keys[1].clone()];
    let strangers = [key(7), key(8)];
    // The genuine frame changed to commit to `state`, signed by `keys` as a frame of `entity`.
    let certified = |state: &EntityState, keys: &[SignerKey], entity: &EntityId| {
        let mut frame = commit.frame.clone();
        let mut committed = state.clone();
        committed.prev_hash = frame.prev_hash;
        frame.state_hash = committed.hash();
        let hash = frame.hash(entity);
        let certificate = QuorumSignature(keys.iter().map(|k| k.sign(&hash)).collect());
        CommittedFrame { frame, certificate }
    };
    let mut richer = state.clone();
    richer.reserves.insert(1, 1_000_000);
    let older = hub.replica(1).kept_commits().nth(2).unwrap().clone();
    assert_eq!(older.frame.height, 3);
    let mut one_signature = commit.clone();
    one_signature.certificate.0.truncate(1);
    let another_entity = EntityId([9; 32]);
    let mut of_another_entity = state.clone();
    of_another_entity.id = another_entity;
    let mut of_another_board = state.clone();
    of_another_board.board = Board::single(hub.keys[0].address());
    let behind = hub.replica(2).state().clone();
    let behind_commit = hub.replica(0).kept_commits().next().unwrap().clone();
    assert_eq!(behind_commit.frame.height, behind.height);

    type Case = (
        &'static str,
        EntityState,
        CommittedFrame,
        fn(&ConsensusError) -> bool,
    );
    let no_quorum = |e: &ConsensusError| matches!(e, ConsensusError::NoQuorum { height: 4, .. });
    let mismatch = |e: &ConsensusError| matches!(e, ConsensusError::SnapshotMismatch { height: 4 });
    let cases: Vec<Case> = vec![
        (
            "a state the frame does not commit to",
            richer,
            commit.clone(),
            mismatch,
        ),
        (
            "an earlier state under the latest frame",
            behind.clone(),
            commit.clone(),
            mismatch,
        ),
        (
            "the genuine frame under an earlier frame's certificate",
            state.clone(),
            CommittedFrame {
                frame: commit.frame.clone(),
                certificate: older.certificate.clone(),
            },
            no_quorum,
        ),
        (
            "one signature of two",
            state.clone(),
            one_signature,
            no_quorum,
        ),
        (
            "signed by strangers",
            state.clone(),
            certified(&state, &strangers, &id),
            no_quorum,
        ),
        (
            "a frame of another entity",
            state.clone(),
            certified(&state, &board_keys, &another_entity),
            no_quorum,
        ),
        (
            "the state of another entity",
            of_another_entity.clone(),
            certified(&of_another_entity, &board_keys, &id),
            |e| matches!(e, ConsensusError::SnapshotOfAnotherEntity { .. }),
        ),
        (
            "a state with another board",
            of_another_board.clone(),
            certified(&of_another_board, &board_keys, &id),
            |e| matches!(e, ConsensusError::SnapshotOfAnotherBoard { height: 4 }),
        ),
        ("a frame not above our height", behind, behind_commit, |e| {
            matches!(
                e,
                ConsensusError::Stale {
                    height: 1,
                    committed: 1
                }
            )
        }),
    ];
    let before = hub.replica(2).clone();
    for (what, state, commit, expected) in cases {
        let out = hub.send_to_member_2(
            1,
            EntityMessage::Snapshot {
                state: Box::new(state),
                commit,
            },
        );
        hub.assert_refused(what, &out, expected, &before);
    }
    // The genuine snapshot from outside the board.
    let mut from_a_stranger = hub.envelope(
        1,
        2,
        EntityMessage::Snapshot {
            state: Box::new(state.clone()),
            commit: commit.clone(),
        },
    );
    from_a_stranger.from.signer = strangers[0].address();
    hub.rejected.clear();
    hub.apply(
        2,
        RuntimeInput {
            timestamp: hub.now,
            messages: vec![from_a_stranger],
            ..RuntimeInput::default()
        },
    );
    assert!(
        matches!(
            &hub.rejected[..],
            [(
                2,
                RuntimeError::Consensus {
                    error: ConsensusError::NotAMember,
                    ..
                }
            )]
        ),
        "{:?}",
        hub.rejected
    );
    assert_eq!(hub.replica(2), &before);
    assert!(hub.snapshots.is_empty());

    // The genuine one, from any member, goes through; the member then commits with the others.
    assert!(
        hub.send_to_member_2(
            1,
            EntityMessage::Snapshot {
                state: Box::new(state),
                commit,
            },
        )
        .is_empty()
    );
    assert!(hub.rejected.is_empty(), "{:?}", hub.rejected);
    assert_eq!(hub.snapshots, [(2, 1, 4)]);
    assert_eq!(hub.heights(), [4, 4, 4]);
    hub.commit_with_member_2_instead_of_1();
    assert_eq!(hub.heights(), [5, 4, 5]);
}

#[test]
fn a_state_too_large_for_one_message_is_not_sent_and_the_member_is_told_why() {
    let mut hub = Hub::new();
    hub.commit_block();
    hub.commit_without_member_2(KEPT_COMMITS);
    // Then it opens enough accounts that its state no longer fits in one message.
    let mut peers = 0u32;
    while crate::codec::encode(hub.replica(0).state()).len() <= MAX_SNAPSHOT_BYTES {
        let txs: Vec<EntityTx> = (peers..peers + 5_000)
            .map(|n| {
                let mut signer = [0x70; 20];
                signer[..4].copy_from_slice(&n.to_be_bytes());
                let peer_board = Board::single(Address(signer));
                EntityTx::OpenAccount {
                    peer: peer_board.lazy_entity_id(),
                    peer_board,
                }
            })
            .collect();
        peers += 5_000;
        let submit = RuntimeInput {
            timestamp: hub.now,
            commands: vec![Command::Submit {
                entity: hub.id,
                txs,
            }],
            ..RuntimeInput::default()
        };
        let messages = hub.apply(0, submit);
        hub.deliver(messages);
    }
    let top = hub.heights()[0];
    assert!(hub.replica(0).kept_commits().next().unwrap().frame.height > 2);

    hub.online[2] = true;
    let before = hub.replica(2).clone();
    hub.rejected.clear();
    hub.commit_block();
    assert_eq!(hub.heights(), [top + 1, top + 1, 1]);
    assert_eq!(hub.replica(2).state(), before.state());
    assert!(hub.snapshots.is_empty());
    let told = hub.rejected.iter().find_map(|(at, e)| match e {
        RuntimeError::Consensus {
            error: error @ ConsensusError::SnapshotTooLarge { bytes, .. },
            ..
        } if *at == 2 => Some((*bytes, error.to_string())),
        _ => None,
    });
    let (bytes, message) = told.unwrap_or_else(|| panic!("{:?}", hub.rejected));
    assert!(bytes > MAX_SNAPSHOT_BYTES as u64);
    assert!(
        message.contains(&MAX_SNAPSHOT_BYTES.to_string()),
        "{message}"
    );
}
