//! Cooperative settlement between entities: who submits, and the debtor's reserve counted once
//! across its pending settlements. The account-level agreement is tested in
//! `account::tests::settlement`; the digest stands in for the Depository's (see there).

use super::payment_tests::{Network, TOKEN};
use super::*;
use crate::account::{AccountTx, SettlementScope, TxError};
use crate::board::QuorumSignature;
use crate::codec::hash_of;
use crate::entity::{EntityEvent, EntityTxError};
use crate::routing::FeePolicy;

const HUB: usize = 0;
const A: usize = 1;
const B: usize = 2;

impl Network {
    fn chain(&mut self, events: Vec<ChainEvent>) {
        for at in 0..self.runtimes.len() {
            let out = self.runtimes[at].apply(RuntimeInput {
                timestamp: self.now,
                chain_events: events.clone(),
                ..RuntimeInput::default()
            });
            self.deliver_all(at, out);
        }
    }

    fn submit(&mut self, at: usize, txs: Vec<EntityTx>) {
        let entity = self.nodes[at].id;
        self.input(at, vec![Command::Submit { entity, txs }]);
    }

    /// `at` proposes the plan of its account with `peer`, as its entity makes it.
    fn propose(&mut self, at: usize, peer: usize) -> Hash {
        let peer = self.nodes[peer].id;
        let plan = self
            .entity(at)
            .plan_settlement(&peer, SettlementScope::Account)
            .unwrap();
        let digest = hash_of(&(self.nodes[at].id, peer, &plan.terms));
        self.submit(
            at,
            vec![EntityTx::ProposeSettlement {
                peer,
                terms: plan.terms,
                digest,
            }],
        );
        digest
    }

    fn accept(&mut self, at: usize, peer: usize, digest: Hash) {
        let signature = QuorumSignature(vec![self.nodes[at].key.sign(&digest)]);
        let peer = self.nodes[peer].id;
        self.submit(
            at,
            vec![EntityTx::AcceptSettlement {
                peer,
                digest,
                signature,
            }],
        );
    }

    /// The settlements node `at` asked the chain for, by peer.
    fn settles(&self, at: usize) -> Vec<EntityId> {
        self.events
            .iter()
            .filter(|(i, _)| *i == at)
            .filter_map(|(_, e)| match e {
                RuntimeEvent::Entity {
                    event: EntityEvent::ChainRequested(ChainRequest::Settle { peer, .. }),
                    ..
                } => Some(*peer),
                _ => None,
            })
            .collect()
    }

    /// The errors of node `at`'s dropped acceptances.
    fn refused_acceptances(&self, at: usize) -> Vec<EntityTxError> {
        self.events
            .iter()
            .filter(|(i, _)| *i == at)
            .filter_map(|(_, e)| match e {
                RuntimeEvent::TxDropped { tx, error, .. }
                    if matches!(**tx, EntityTx::AcceptSettlement { .. }) =>
                {
                    Some(error.clone())
                }
                _ => None,
            })
            .collect()
    }
}

/// A hub that owes A and B 100 each on credit, with 100 in reserve.
fn hub_owing_two() -> Network {
    let mut net = Network::new(3, FeePolicy::default());
    net.connect(&[(HUB, A), (HUB, B)]);
    let pay = |peer| EntityTx::Account {
        peer,
        tx: AccountTx::DirectPayment {
            token: TOKEN,
            amount: 100,
        },
    };
    let (a, b) = (net.nodes[A].id, net.nodes[B].id);
    net.submit(HUB, vec![pay(a), pay(b)]);
    let hub = net.nodes[HUB].id;
    net.chain(vec![ChainEvent::Reserve {
        entity: hub,
        token: TOKEN,
        amount: 100,
    }]);
    assert_eq!(net.entity(A).peer_reserves[&(hub, TOKEN)], 100);
    net
}

#[test]
fn only_the_proposer_submits_once_the_acceptance_commits() {
    let mut net = hub_owing_two();
    let hub = net.nodes[HUB].id;
    let digest = net.propose(A, HUB);
    // Proposed, not accepted: nobody submits.
    assert!(net.settles(A).is_empty() && net.settles(HUB).is_empty());
    net.accept(HUB, A, digest);
    // A, the proposer, submits with the hub's signature; the hub, the acceptor, does not.
    assert_eq!(net.settles(A), vec![hub]);
    assert!(net.settles(HUB).is_empty());
    let account = &net.entity(HUB).accounts[&net.nodes[A].id].account;
    let pending = account.state().settlement.pending.as_ref().unwrap();
    assert!(pending.acceptor_signature.is_some());
    assert_eq!(pending.submittable_by(account.side()), None);
}

#[test]
fn a_reserve_counts_once_across_pending_settlements() {
    let mut net = hub_owing_two();
    let (hub, a, b) = (net.nodes[HUB].id, net.nodes[A].id, net.nodes[B].id);
    // A's settlement takes the hub's 100; the hub signs it.
    let digest_a = net.propose(A, HUB);
    assert_eq!(net.entity(HUB).settlement_promises(None).get(&TOKEN), None);
    net.accept(HUB, A, digest_a);
    assert!(net.refused_acceptances(HUB).is_empty());
    assert_eq!(net.entity(HUB).settlement_promises(None)[&TOKEN], 100);
    assert_eq!(
        net.entity(HUB).settlement_promises(Some(&a)).get(&TOKEN),
        None
    );

    // The hub's own plan with B has nothing left to pay B's 100 from.
    assert_eq!(
        net.entity(HUB)
            .plan_settlement(&b, SettlementScope::Account),
        Err(EntityTxError::Settlement {
            peer: b,
            error: TxError::NothingToSettle
        })
    );

    // B, which sees the hub's reserve of 100, proposes that it pays 100: the hub refuses to
    // sign, since the two would take 200 of its 100 (the second would revert on chain and
    // stay pending).
    let digest_b = net.propose(B, HUB);
    let terms = net.entity(HUB).accounts[&b]
        .account
        .state()
        .settlement
        .pending
        .clone()
        .unwrap()
        .terms;
    let side = net.entity(HUB).accounts[&b].account.side();
    assert_eq!(terms.diffs[0].reserve_diff(side), -100);
    net.accept(HUB, B, digest_b);
    let over = EntityTxError::SettlementOverReserve {
        peer: b,
        token: TOKEN,
        reserve: 100,
        promised: 200,
    };
    assert_eq!(net.refused_acceptances(HUB), vec![over.clone()]);
    assert_eq!(
        net.entity(HUB)
            .check_settlement_reserve(&b, &terms.diffs, side),
        Err(over)
    );
    assert!(net.settles(B).is_empty());

    // With 200 in reserve the hub signs it, and B submits.
    net.chain(vec![ChainEvent::Reserve {
        entity: hub,
        token: TOKEN,
        amount: 200,
    }]);
    net.accept(HUB, B, digest_b);
    assert_eq!(net.refused_acceptances(HUB).len(), 1);
    assert_eq!(net.settles(B), vec![hub]);
    assert_eq!(net.entity(HUB).settlement_promises(None)[&TOKEN], 200);
}

/// The harness's settlement digest (see `Network::propose`), from the acceptor's side.
struct ProposerFirst;

impl crate::entity::ChainDigests for ProposerFirst {
    fn batch(&self, _: &Hash, entity: &EntityId, nonce: u64, requests: &[ChainRequest]) -> Hash {
        hash_of(&(entity, nonce, requests))
    }
    fn settlement(
        &self,
        _: &Hash,
        us: &EntityId,
        proposer: &EntityId,
        terms: &crate::account::SettlementTerms,
    ) -> Hash {
        hash_of(&(proposer, us, terms))
    }
}

#[test]
fn a_board_co_signs_only_the_settlement_pending_in_its_account() {
    let mut net = hub_owing_two();
    let (a, b) = (net.nodes[A].id, net.nodes[B].id);
    let runtime = std::mem::replace(&mut net.runtimes[HUB], Runtime::new([]));
    net.runtimes[HUB] = runtime.with_chain_digests(std::sync::Arc::new(ProposerFirst));
    let digest_a = net.propose(A, HUB);
    let hub = ReplicaId {
        entity: net.nodes[HUB].id,
        signer: net.nodes[HUB].key.address(),
    };
    // The hub's proposer asks its own replica, as its node does in a signing round.
    let ask = |net: &mut Network, peer: EntityId, digest: Hash| {
        let before = net.runtimes[HUB].state().clone();
        let out = net.runtimes[HUB].apply(RuntimeInput {
            timestamp: net.now,
            messages: vec![Envelope {
                from: hub,
                to: hub,
                payload: Payload::Entity(EntityMessage::SignSettlement { peer, digest }),
            }],
            ..RuntimeInput::default()
        });
        let signed = out.events.iter().find_map(|e| match e {
            RuntimeEvent::CoSigned {
                digest: d,
                signature,
                ..
            } if *d == digest => Some(*signature),
            _ => None,
        });
        let refused = out.events.iter().find_map(|e| match e {
            RuntimeEvent::Rejected(RuntimeError::Consensus { error, .. }) => Some(error.clone()),
            _ => None,
        });
        if refused.is_some() {
            assert_eq!(
                *net.runtimes[HUB].state(),
                before,
                "a refusal changes nothing"
            );
        }
        (signed, refused)
    };

    // Not the digest of the pending terms; no settlement pending with B: refused.
    let (signed, refused) = ask(&mut net, a, hash_of(&"other terms"));
    assert!(signed.is_none());
    assert!(
        matches!(refused, Some(ConsensusError::DigestMismatch { .. })),
        "{refused:?}"
    );
    let (signed, refused) = ask(&mut net, b, digest_a);
    assert!(signed.is_none());
    assert_eq!(
        refused,
        Some(ConsensusError::NoSettlementToSign { peer: b })
    );

    // The pending one, over the digest of its terms: signed by the member's key.
    let (signed, refused) = ask(&mut net, a, digest_a);
    assert_eq!(refused, None);
    let board = net.entity(HUB).board.clone();
    board
        .verify_quorum(&digest_a, &QuorumSignature(vec![signed.unwrap()]))
        .unwrap();

    // B's proposal would take what A's settlement already promised of the hub's reserve, once
    // A's is accepted: not signed.
    net.accept(HUB, A, digest_a);
    let digest_b = net.propose(B, HUB);
    let (signed, refused) = ask(&mut net, b, digest_b);
    assert!(signed.is_none());
    assert!(
        matches!(refused, Some(ConsensusError::SettlementNotCovered { .. })),
        "{refused:?}"
    );
    // A's, accepted already, is not signed again.
    let (_, refused) = ask(&mut net, a, digest_a);
    assert_eq!(
        refused,
        Some(ConsensusError::NoSettlementToSign { peer: a })
    );
}
