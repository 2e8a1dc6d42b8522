//! A member of a 2-of-3 board that missed commits catches up from the frames the proposer
//! keeps; forged replies change nothing; a member further behind than what is kept is told so.

use super::*;
use crate::board::{BoardMember, QuorumSignature};
use crate::entity::{CommittedFrame, EntityFrame, KEPT_COMMITS, SYNC_RETRY_MS};

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
            runtimes,
            online: [true; 3],
            now: 1_000,
            block: 0,
            lost: Vec::new(),
            rejected: Vec::new(),
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
        let out = self.runtimes[at].apply(input);
        for event in out.events {
            if let RuntimeEvent::Rejected(error) = event {
                self.rejected.push((at, error));
            }
        }
        out.messages
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
    hub.online[2] = false;
    for _ in 0..5 {
        hub.commit_block();
    }
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
fn a_flood_of_frames_from_ahead_makes_one_request_per_retry_interval() {
    let mut hub = Hub::new();
    hub.online[2] = false;
    for _ in 0..3 {
        hub.commit_block();
    }
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
    hub.online[2] = false;
    for _ in 0..4 {
        hub.commit_block();
    }
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
        assert!(out.is_empty(), "{what}: {out:?}");
        assert!(
            matches!(
                &hub.rejected[..],
                [(2, RuntimeError::Consensus { error, .. })] if expected(error)
            ),
            "{what}: {:?}",
            hub.rejected
        );
        assert_eq!(hub.replica(2), &before, "{what}: the replica changed");
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

#[test]
fn a_member_further_behind_than_the_kept_commits_is_told_so_and_nothing_changes() {
    let mut hub = Hub::new();
    hub.commit_block();
    hub.online[2] = false;
    for _ in 0..KEPT_COMMITS + 1 {
        hub.commit_block();
    }
    let top = KEPT_COMMITS as u64 + 2;
    assert_eq!(hub.heights(), [top, top, 1]);
    let proposer = hub.replica(0);
    assert_eq!(proposer.kept_commits().count(), KEPT_COMMITS, "bounded");
    let oldest_kept = proposer.kept_commits().next().unwrap().frame.height;
    assert_eq!(oldest_kept, top - KEPT_COMMITS as u64 + 1);
    // Asked from height 2, the proposer sends its oldest frame only.
    let (commits, _) = hub.reply_to_member_2(2);
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0].frame.height, oldest_kept);

    hub.online[2] = true;
    let before = hub.replica(2).clone();
    hub.rejected.clear();
    hub.commit_block();
    assert_eq!(hub.heights(), [top + 1, top + 1, 1]);
    assert_eq!(hub.replica(2).state(), before.state());
    // The oldest kept frame named is the proposer's when it answered (a frame or more later
    // than `oldest_kept` above); the member asked from height 2, which is no longer kept.
    let told = hub.rejected.iter().any(|(at, e)| {
        *at == 2
            && matches!(
                e,
                RuntimeError::Consensus {
                    error: ConsensusError::TooFarBehind {
                        height: 1,
                        oldest_kept: told_oldest,
                    },
                    ..
                } if *told_oldest > 2
            )
    });
    assert!(told, "{:?}", hub.rejected);
    let message = hub
        .rejected
        .iter()
        .find(|(_, e)| {
            matches!(
                e,
                RuntimeError::Consensus {
                    error: ConsensusError::TooFarBehind { .. },
                    ..
                }
            )
        })
        .map(|(_, e)| e.to_string())
        .unwrap();
    assert!(message.contains("state snapshot"), "{message}");
}
