//! Disputes of an entity run by a board: the board commits the dispute, its frame takes the
//! proof from the committed account, and a member co-signs the batch only for a dispute its own
//! replica committed. The digest stands in for the Depository's (the chain adapter's is tested
//! on anvil, `tests/chain.rs`).

use super::tests::{Net, add_replica, credit, key, pay, two_of_three};
use super::*;
use crate::board::QuorumSignature;
use crate::crypto::Signature;
use crate::entity::DisputeStart;

struct Digests;

impl ChainDigests for Digests {
    fn batch(&self, domain: &Hash, entity: &EntityId, nonce: u64, r: &[ChainRequest]) -> Hash {
        hash_of(&("batch", domain, entity, nonce, r))
    }
    fn settlement(
        &self,
        _: &Hash,
        _: &EntityId,
        _: &EntityId,
        terms: &crate::account::SettlementTerms,
    ) -> Hash {
        hash_of(terms)
    }
}

/// Runtimes 0..3: a hub's 2-of-3 board (with the digests). 3: a wallet with an account with
/// the hub, both sides' frames signed. The hub also has an account with a stranger that never
/// signed a frame.
struct Setup {
    net: Net,
    keys: [SignerKey; 3],
    hub: EntityId,
    wallet: EntityId,
    wallet_board: Board,
    stranger: EntityId,
}

fn setup() -> Setup {
    let keys = [key(1), key(2), key(3)];
    let board = two_of_three(&keys);
    let hub = board.lazy_entity_id();
    let wallet_key = key(21);
    let wallet_board = Board::single(wallet_key.address());
    let wallet = wallet_board.lazy_entity_id();
    let stranger_board = Board::single(key(22).address());
    let stranger = stranger_board.lazy_entity_id();
    let mut net = Net::new(vec![Vec::new(); 4]);
    for (i, k) in keys.iter().enumerate() {
        net.runtimes[i] = Runtime::new([k.clone()]).with_chain_digests(Arc::new(Digests));
        net.command(i, add_replica(&board, k.address()));
    }
    net.runtimes[3] = Runtime::new([wallet_key.clone()]);
    net.command(3, add_replica(&wallet_board, wallet_key.address()));
    net.submit(
        3,
        wallet,
        vec![
            EntityTx::OpenAccount {
                peer: hub,
                peer_board: board.clone(),
            },
            credit(hub, 1_000),
        ],
    );
    net.submit(0, hub, vec![credit(wallet, 500)]);
    net.submit(3, wallet, vec![pay(hub, 200)]);
    net.submit(
        0,
        hub,
        vec![EntityTx::OpenAccount {
            peer: stranger,
            peer_board: stranger_board,
        }],
    );
    Setup {
        net,
        keys,
        hub,
        wallet,
        wallet_board,
        stranger,
    }
}

impl Setup {
    fn state(&self, member: usize) -> &EntityState {
        self.net.runtimes[member]
            .replica_of(&self.hub)
            .unwrap()
            .state()
    }

    fn replica(&self, member: usize) -> ReplicaId {
        ReplicaId {
            entity: self.hub,
            signer: self.keys[member].address(),
        }
    }

    /// The proposer asks `member` to sign the batch of `requests` at nonce 0: its signature,
    /// or why it refused (then nothing changed).
    fn ask(
        &mut self,
        member: usize,
        requests: Vec<ChainRequest>,
    ) -> Result<Signature, ConsensusError> {
        let digest = Digests.batch(&Hash::ZERO, &self.hub, 0, &requests);
        let before = self.net.runtimes[member].state().clone();
        let (from, to) = (self.replica(0), self.replica(member));
        let out = self.net.runtimes[member].apply(RuntimeInput {
            timestamp: self.net.now,
            messages: vec![Envelope {
                from,
                to,
                payload: Payload::Entity(EntityMessage::SignBatch {
                    nonce: 0,
                    requests,
                    digest,
                }),
            }],
            ..RuntimeInput::default()
        });
        for event in out.events {
            if let RuntimeEvent::Rejected(RuntimeError::Consensus { error, .. }) = event {
                assert_eq!(
                    *self.net.runtimes[member].state(),
                    before,
                    "a refusal changes nothing"
                );
                return Err(error);
            }
        }
        let signature = out
            .messages
            .iter()
            .find_map(|m| match &m.payload {
                Payload::Entity(EntityMessage::Signed {
                    digest: d,
                    signature,
                }) if *d == digest && m.to == from => Some(*signature),
                _ => None,
            })
            .expect("a signature for the proposer");
        let quorum = QuorumSignature(vec![signature]);
        let board = &self.state(member).board;
        assert_eq!(
            board.signer_of(&digest, &signature),
            Some(self.keys[member].address())
        );
        assert!(board.verify_quorum(&digest, &quorum).is_err(), "one of two");
        Ok(signature)
    }

    fn dropped(&self) -> Vec<EntityTxError> {
        self.net
            .events
            .iter()
            .filter_map(|e| match e {
                RuntimeEvent::TxDropped { tx, error, .. }
                    if matches!(**tx, EntityTx::Dispute { .. } | EntityTx::Chain(_)) =>
                {
                    Some(error.clone())
                }
                _ => None,
            })
            .collect()
    }
}

fn start_dispute(start: &DisputeStart) -> ChainRequest {
    ChainRequest::StartDispute(Box::new(start.clone()))
}

#[test]
fn a_board_disputes_from_its_committed_account_and_members_co_sign_only_that() {
    let mut s = setup();
    let (hub, wallet, stranger) = (s.hub, s.wallet, s.stranger);

    // Bad input: no proof to dispute with, no account, a proof given by the operator. Each is
    // refused with its reason and no frame commits.
    let height = s.state(0).height;
    let hash = s.state(0).hash();
    let given = s.state(0).dispute_start(&wallet).unwrap();
    for tx in [
        EntityTx::Dispute { peer: stranger },
        EntityTx::Dispute {
            peer: EntityId([7; 32]),
        },
        EntityTx::Chain(start_dispute(&given)),
    ] {
        s.net.submit(1, hub, vec![tx]);
    }
    assert_eq!(
        s.dropped(),
        vec![
            EntityTxError::NothingToDispute(stranger),
            EntityTxError::NoAccount(EntityId([7; 32])),
            EntityTxError::DisputeNotFromAccount,
        ]
    );
    assert_eq!((s.state(0).height, s.state(0).hash()), (height, hash));

    // The dispute, asked through a member that is not the proposer, commits at every member
    // with the proof of the committed account: the wallet's signature over its newest frame.
    s.net
        .submit(1, hub, vec![EntityTx::Dispute { peer: wallet }]);
    let committed = s.state(0).dispute_start(&wallet).unwrap();
    let account = s.net.account(0, &hub, &wallet);
    assert_eq!(Some(&committed.proof), account.proof());
    let frame_hash = committed.proof.header.hash(&committed.key);
    s.wallet_board
        .verify_quorum(&frame_hash, &committed.proof.peer_signature)
        .unwrap();
    assert_eq!(committed.deltas, account.state().deltas);
    for member in 0..3 {
        let replica = s.net.runtimes[member].replica_of(&hub).unwrap();
        let kept: Vec<&ChainRequest> = replica.kept_chain_requests().map(|k| k.1).collect();
        assert_eq!(kept, vec![&start_dispute(&committed)], "member {member}");
    }
    let requested = s.net.events.iter().any(|e| {
        matches!(e, RuntimeEvent::Entity {
            replica,
            event: EntityEvent::ChainRequested(request),
        } if replica.signer == s.keys[0].address() && *request == start_dispute(&committed))
    });
    assert!(requested, "the proposer's node gets the request to submit");

    // The account moves on: a dispute with its newer proof was not committed, nor one with
    // the proof altered: a member refuses to co-sign either.
    s.net.submit(0, hub, vec![pay(wallet, 30)]);
    let newer = s.state(0).dispute_start(&wallet).unwrap();
    assert_ne!(newer.proof, committed.proof);
    assert_eq!(
        s.ask(2, vec![start_dispute(&newer)]),
        Err(ConsensusError::NotCommitted { nonce: 0, index: 0 })
    );
    let mut altered = committed.clone();
    altered.extras_hash = Hash([1; 32]);
    assert_eq!(
        s.ask(2, vec![start_dispute(&altered)]),
        Err(ConsensusError::NotCommitted { nonce: 0, index: 0 })
    );

    // The committed one: signed, by each member asked.
    s.ask(2, vec![start_dispute(&committed)]).unwrap();
    s.ask(1, vec![start_dispute(&committed)]).unwrap();
}
