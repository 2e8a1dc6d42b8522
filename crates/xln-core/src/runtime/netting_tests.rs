//! Netting executed across runtimes wired together in process (the payment harness): a cycle
//! of debts cleared by one fee-free loop after everyone agreed, participants who refuse or stay
//! silent left out, bad requests refused by every honest participant with nothing moved, fee-free
//! forwards without an agreement refused, and a property test over random networks: no net
//! position moves and exposure never grows.

use super::payment_tests::{FEE, Network, TOKEN, refusals};
use super::*;
use crate::account::{AccountTx, FailReason};
use crate::board::QuorumSignature;
use crate::delta::Side;
use crate::entity::{
    CycleRequest, NETTING_ANSWER_MS, NettingMessage, NettingOrder, PaymentStatus,
    SignedNettingMessage, cycle_id,
};
use crate::netting::{NettingProposal, PositionSet, SignedPosition, propose, uncollateralised};
use crate::onion::{HopInstruction, Preimage};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// Debts made by direct payments on credit: `(payer, payee, amount)` makes the payer owe it.
fn owe(net: &mut Network, debts: &[(usize, usize, u128)]) {
    for &(payer, payee, amount) in debts {
        let tx = EntityTx::Account {
            peer: net.nodes[payee].id,
            tx: AccountTx::DirectPayment {
                token: TOKEN,
                amount,
            },
        };
        net.input(
            payer,
            vec![Command::Submit {
                entity: net.nodes[payer].id,
                txs: vec![tx],
            }],
        );
    }
}

/// What `a` is owed by `b` beyond collateral (negative: what it owes `b`), from `a`'s books.
fn position(net: &Network, a: usize, b: usize) -> i128 {
    let entry = &net.entity(a).accounts[&net.nodes[b].id];
    let left_view = entry
        .account
        .state()
        .deltas
        .get(&TOKEN)
        .map_or(0, |delta| uncollateralised(delta).unwrap());
    match entry.account.side() {
        Side::Left => left_view,
        Side::Right => -left_view,
    }
}

/// Each entity's net position: what it is owed minus what it owes, over all its accounts.
fn nets(net: &Network) -> Vec<i128> {
    (0..net.nodes.len())
        .map(|a| {
            let peers: Vec<usize> = (0..net.nodes.len())
                .filter(|&b| net.entity(a).accounts.contains_key(&net.nodes[b].id))
                .collect();
            peers.iter().map(|&b| position(net, a, b)).sum()
        })
        .collect()
}

/// The sum of all uncollateralised debts, each account once.
fn exposure(net: &Network) -> u128 {
    let mut sum = 0;
    for a in 0..net.nodes.len() {
        for b in a + 1..net.nodes.len() {
            if net.entity(a).accounts.contains_key(&net.nodes[b].id) {
                sum += position(net, a, b).unsigned_abs();
            }
        }
    }
    sum
}

/// Every entity's position of each of its accounts, as it would bring them.
fn positions(net: &Network) -> Vec<SignedPosition> {
    (0..net.nodes.len())
        .flat_map(|n| {
            net.entity(n)
                .accounts
                .values()
                .filter_map(|entry| SignedPosition::from_account(&entry.account))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn boards(net: &Network) -> Vec<Board> {
    net.nodes.iter().map(|n| n.board.clone()).collect()
}

fn order(net: &Network, proposer: usize) -> NettingOrder {
    NettingOrder {
        token: TOKEN,
        positions: positions(net),
        boards: boards(net),
        secret: Preimage([proposer as u8 + 90; 32]),
        onion_key: net.nodes[proposer].key.public_key(),
    }
}

fn start_netting(net: &mut Network, proposer: usize) {
    let order = order(net, proposer);
    net.input(
        proposer,
        vec![Command::Submit {
            entity: net.nodes[proposer].id,
            txs: vec![EntityTx::StartNetting(Box::new(order))],
        }],
    );
}

/// The honest proposal over everyone's positions, as the proposer computes it.
fn honest_proposal(net: &Network) -> (NettingProposal, Vec<SignedPosition>) {
    let positions = positions(net);
    let boards = net.nodes.iter().map(|n| (n.id, n.board.clone())).collect();
    let set = PositionSet::verify(Hash::ZERO, &positions, &boards).unwrap();
    (propose(&set, TOKEN).unwrap(), positions)
}

/// A netting's end as its proposer reported it: (cleared cycles, left out, why it ended early).
type Finished = (Vec<(Hash, u128)>, Vec<EntityId>, Option<String>);

/// What node `at` reported finishing.
fn finished(net: &Network, at: usize) -> Vec<Finished> {
    net.events
        .iter()
        .filter_map(|(node, event)| match event {
            RuntimeEvent::Entity {
                event:
                    EntityEvent::NettingFinished {
                        cleared,
                        left_out,
                        ended_because,
                        ..
                    },
                ..
            } if *node == at => Some((cleared.clone(), left_out.clone(), ended_because.clone())),
            _ => None,
        })
        .collect()
}

/// The refusals node `at` answered with.
fn refused(net: &Network, at: usize) -> Vec<String> {
    net.events
        .iter()
        .filter_map(|(node, event)| match event {
            RuntimeEvent::Entity {
                event: EntityEvent::NettingRefused { reason, .. },
                ..
            } if *node == at => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// Netting transactions node `at` dropped, with the error.
fn dropped(net: &Network, at: usize) -> Vec<EntityTxError> {
    net.events
        .iter()
        .filter_map(|(node, event)| match event {
            RuntimeEvent::TxDropped { tx, error, .. }
                if *node == at && matches!(**tx, EntityTx::NettingInput { .. }) =>
            {
                Some(error.clone())
            }
            _ => None,
        })
        .collect()
}

/// Every account's state hash, per node: "nothing moved" compares these.
fn account_hashes(net: &Network) -> Vec<Vec<Hash>> {
    (0..net.nodes.len())
        .map(|n| {
            net.entity(n)
                .accounts
                .values()
                .map(|e| e.account.state().hash())
                .collect()
        })
        .collect()
}

/// A ring 0 → 1 → … → n−1 → 0 of debts (each owes the next), the smallest `amount`.
fn ring(count: usize, amount: u128) -> (Network, Vec<(usize, usize, u128)>) {
    let mut net = Network::new(count, FEE);
    let pairs: Vec<(usize, usize)> = (0..count).map(|i| (i, (i + 1) % count)).collect();
    net.connect(&pairs);
    let debts: Vec<(usize, usize, u128)> = (0..count)
        .map(|i| (i, (i + 1) % count, amount + 10 * i as u128))
        .collect();
    owe(&mut net, &debts);
    (net, debts)
}

#[test]
fn a_cycle_of_four_is_cleared_by_one_fee_free_loop_and_no_net_position_moves() {
    let (mut net, _) = ring(4, 100);
    let nets_before = nets(&net);
    let exposure_before = exposure(&net);
    // Debts 100, 110, 120, 130: the cycle clears 100 of each.
    assert_eq!(exposure_before, 460);
    let worth_before: Vec<i128> = (0..4).map(|n| net.worth(n)).collect();

    start_netting(&mut net, 2);

    assert_eq!(nets(&net), nets_before, "no net position moved");
    assert_eq!(exposure(&net), exposure_before - 4 * 100);
    for i in 0..4 {
        let creditor = (i + 1) % 4;
        assert_eq!(
            position(&net, creditor, i),
            10 * i as i128,
            "{i} owes {creditor} what was left above the cycle"
        );
    }
    let worth_after: Vec<i128> = (0..4).map(|n| net.worth(n)).collect();
    assert_eq!(worth_before, worth_after, "nobody paid a fee");
    let done = finished(&net, 2);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0.len(), 1, "one cycle cleared");
    assert_eq!(done[0].0[0].1, 100);
    assert!(done[0].1.is_empty() && done[0].2.is_none());
    for n in 0..4 {
        let state = net.entity(n);
        assert!(state.netting_agreements.is_empty(), "{n}: agreement used");
        assert!(state.netting_rounds.is_empty(), "{n}: round over");
    }
    net.assert_settled();
}

/// Node 0 is on two cycles of debts: 0 → 1 → 2 → 0 and 0 → 3 → 4 → 0.
fn two_cycles() -> Network {
    let mut net = Network::new(5, FEE);
    net.connect(&[(0, 1), (1, 2), (2, 0), (0, 3), (3, 4), (4, 0)]);
    owe(
        &mut net,
        &[
            (0, 1, 50),
            (1, 2, 60),
            (2, 0, 70),
            (0, 3, 40),
            (3, 4, 45),
            (4, 0, 55),
        ],
    );
    net
}

#[test]
fn a_participant_who_refuses_is_left_out_and_the_rest_still_nets() {
    let mut net = two_cycles();
    net.input(
        3,
        vec![Command::Submit {
            entity: net.nodes[3].id,
            txs: vec![EntityTx::SetJoinsNetting(false)],
        }],
    );
    let nets_before = nets(&net);
    start_netting(&mut net, 0);

    assert_eq!(refused(&net, 3), vec!["we do not take part in netting"]);
    let done = finished(&net, 0);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0.iter().map(|c| c.1).collect::<Vec<_>>(), vec![50]);
    assert_eq!(done[0].1, vec![net.nodes[3].id], "3 was left out");
    assert_eq!(nets(&net), nets_before);
    // The cycle through 1 and 2 cleared its smallest debt; the one through 3 is untouched.
    assert_eq!(position(&net, 1, 0), 0);
    assert_eq!(position(&net, 2, 1), 10);
    assert_eq!(position(&net, 0, 2), 20);
    assert_eq!(position(&net, 3, 0), 40);
    assert_eq!(position(&net, 4, 3), 45);
    assert_eq!(position(&net, 0, 4), 55);
    net.assert_settled();
}

#[test]
fn a_participant_who_does_not_answer_in_time_is_left_out_and_the_rest_still_nets() {
    let mut net = two_cycles();
    let nets_before = nets(&net);
    net.offline.insert(4);
    start_netting(&mut net, 0);
    assert!(finished(&net, 0).is_empty(), "waiting for 4");
    assert!(
        net.entity(0).netting_rounds.contains_key(&TOKEN),
        "the round waits"
    );

    net.tick(NETTING_ANSWER_MS);
    let done = finished(&net, 0);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0.iter().map(|c| c.1).collect::<Vec<_>>(), vec![50]);
    assert_eq!(done[0].1, vec![net.nodes[4].id], "4 was left out");
    assert_eq!(nets(&net), nets_before);
    assert_eq!(position(&net, 3, 0), 40, "the cycle through 4 did not move");

    // 4 comes back and answers the old request: the proposer has no such round any more, and
    // nothing moves.
    let hashes = account_hashes(&net);
    net.set_online(4, true);
    assert!(matches!(
        dropped(&net, 0).as_slice(),
        [EntityTxError::Netting(error)]
            if matches!(**error, crate::entity::NettingTxError::UnknownCycle(_))
    ));
    assert_eq!(account_hashes(&net), hashes);
    // Its agreement expires unused.
    net.tick(crate::entity::NETTING_LOOP_MS + NETTING_ANSWER_MS);
    assert!(net.entity(4).netting_agreements.is_empty());
    net.assert_settled();
}

/// A request from node `proposer` to `participant` for cycle 0 of `proposal`, whose loop will
/// carry `hashlock`, signed by `signer`'s key.
fn request(
    net: &Network,
    proposer: usize,
    participant: usize,
    (proposal, hashlock): (&NettingProposal, Hash),
    positions: &[SignedPosition],
    signer: usize,
) -> Envelope {
    let message = NettingMessage::Request(Box::new(CycleRequest {
        proposer: net.nodes[proposer].id,
        participant: net.nodes[participant].id,
        proposal: proposal.clone(),
        cycle: 0,
        positions: positions.to_vec(),
        boards: boards(net),
        expires_at_ms: net.now + NETTING_ANSWER_MS,
        hashlock,
    }));
    let signature = QuorumSignature(vec![net.nodes[signer].key.sign(&message.digest())]);
    Envelope {
        from: ReplicaId {
            entity: net.nodes[proposer].id,
            signer: net.nodes[proposer].key.address(),
        },
        to: ReplicaId {
            entity: net.nodes[participant].id,
            signer: net.nodes[participant].key.address(),
        },
        payload: Payload::Netting {
            message: SignedNettingMessage { message, signature },
            sender_board: net.nodes[proposer].board.clone(),
        },
    }
}

/// A hashlock for requests whose loop never runs.
const ANY_LOCK: Hash = Hash([7; 32]);

fn deliver(net: &mut Network, envelope: Envelope) {
    let to = net.host(&envelope.to);
    let out = net.runtimes[to].apply(RuntimeInput {
        timestamp: net.now,
        messages: vec![envelope],
        ..RuntimeInput::default()
    });
    net.deliver_all(to, out);
}

#[test]
fn bad_requests_are_refused_by_every_honest_participant_and_nothing_moves() {
    // 0 → 1 → 2 → 0 with debts 30, 20, 25: one cycle of 20 and transfers for the rest. Node 3
    // has an account with 0 only.
    let mut net = Network::new(4, FEE);
    net.connect(&[(0, 1), (1, 2), (2, 0), (0, 3)]);
    owe(&mut net, &[(0, 1, 30), (1, 2, 20), (2, 0, 25), (3, 0, 5)]);
    let (honest, positions) = honest_proposal(&net);
    assert_eq!(honest.cycles.len(), 1);
    assert!(!honest.transfers.is_empty());
    let hashes = account_hashes(&net);
    let worth: Vec<i128> = (0..4).map(|n| net.worth(n)).collect();

    // The first transfer paid to someone else than at the end of its path.
    let mut moves_a_net = honest.clone();
    let transfer = &mut moves_a_net.transfers[0];
    transfer.payee = net
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != transfer.payer && *id != transfer.payee)
        .unwrap();
    let mut through_3 = honest.clone();
    // A cycle 0 → 3 → 2 → 0: node 3 has no account with 2.
    through_3.cycles[0].participants = vec![net.nodes[0].id, net.nodes[3].id, net.nodes[2].id];
    let mut forged = positions.clone();
    for position in &mut forged {
        // Each position claims the counterparty signed it; node 3's key did.
        position.proof.peer_signature = QuorumSignature(vec![
            net.nodes[3]
                .key
                .sign(&position.proof.header.hash(&position.key)),
        ]);
    }

    // (what, proposal, evidence, who is asked, what each refuses with)
    type Case<'a> = (
        &'a str,
        NettingProposal,
        Vec<SignedPosition>,
        Vec<usize>,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "a net position changed",
            moves_a_net,
            positions.clone(),
            vec![1, 2],
            "proposal changes the net position",
        ),
        (
            "an account a participant does not have",
            through_3,
            positions.clone(),
            vec![2, 3],
            "has no account with",
        ),
        (
            "positions its counterparties did not sign",
            honest.clone(),
            forged,
            vec![1, 2],
            "did not sign the frame",
        ),
    ];
    for (what, proposal, evidence, asked, refusal) in cases {
        net.events.clear();
        for &participant in &asked {
            let envelope = request(&net, 0, participant, (&proposal, ANY_LOCK), &evidence, 0);
            deliver(&mut net, envelope);
        }
        for &participant in &asked {
            let reasons = refused(&net, participant);
            assert_eq!(reasons.len(), 1, "{what}: {participant} answered once");
            assert!(
                reasons[0].contains(refusal),
                "{what}: {participant} refused with {:?}",
                reasons[0]
            );
            assert!(net.entity(participant).netting_agreements.is_empty());
        }
        // The proposer (who never asked) drops the answers as unknown.
        assert_eq!(dropped(&net, 0).len(), asked.len(), "{what}");
        assert_eq!(account_hashes(&net), hashes, "{what}: nothing moved");
    }

    // A request the proposer did not sign (node 3's key on it) is dropped unanswered.
    net.events.clear();
    for participant in [1, 2] {
        let envelope = request(&net, 0, participant, (&honest, ANY_LOCK), &positions, 3);
        deliver(&mut net, envelope);
        let errors = dropped(&net, participant);
        assert!(
            matches!(
                errors.as_slice(),
                [EntityTxError::Netting(error)]
                    if matches!(**error, crate::entity::NettingTxError::BadSignature { .. })
            ),
            "{participant}: {errors:?}"
        );
        assert!(refused(&net, participant).is_empty());
        assert!(net.entity(participant).netting_agreements.is_empty());
    }
    assert_eq!(account_hashes(&net), hashes);
    assert_eq!((0..4).map(|n| net.worth(n)).collect::<Vec<_>>(), worth);

    // The honest request is agreed to by both (and then answered into the void: the proposer
    // did not start this round).
    net.events.clear();
    for participant in [1, 2] {
        let envelope = request(&net, 0, participant, (&honest, ANY_LOCK), &positions, 0);
        deliver(&mut net, envelope);
        assert!(refused(&net, participant).is_empty());
        let agreement = &net.entity(participant).netting_agreements[&cycle_id(&honest, 0).unwrap()];
        assert_eq!(agreement.amount, 20);
    }
    assert_eq!(account_hashes(&net), hashes);
    net.assert_settled();
}

/// `instruction` sealed to node `to` for the lock `hashlock`.
fn seal_for(net: &Network, to: usize, instruction: &HopInstruction, hashlock: &Hash) -> Vec<u8> {
    crate::onion::seal(
        &net.nodes[to].key.public_key(),
        instruction,
        &[to as u8 + 1; 32],
        hashlock,
        &mut crate::onion::OnionCache::default(),
    )
    .unwrap()
}

/// Node `from` locks `amount` to node `to` under `hashlock` with the onion `payload`, as a raw
/// account transaction (`lock_id` even, made odd if `from` is RIGHT).
fn lock_raw(
    net: &mut Network,
    (from, to): (usize, usize),
    lock_id: u64,
    hashlock: Hash,
    amount: u128,
    payload: Vec<u8>,
) {
    let lock = AccountTx::HtlcLock {
        lock_id: if net.nodes[from].id < net.nodes[to].id {
            lock_id
        } else {
            lock_id + 1
        },
        hashlock,
        token: TOKEN,
        amount,
        expires_at_ms: net.now + 200_000,
        reveal_before_j_height: 100,
        payload,
    };
    net.input(
        from,
        vec![Command::Submit {
            entity: net.nodes[from].id,
            txs: vec![EntityTx::Account {
                peer: net.nodes[to].id,
                tx: lock,
            }],
        }],
    );
}

/// Locks `amount` from node 0 to node 1 with a hand-made onion layer for node 1.
fn lock_with(net: &mut Network, lock_id: u64, amount: u128, instruction: HopInstruction) {
    let hashlock = crate::crypto::keccak256(&[lock_id as u8; 32]);
    let payload = seal_for(net, 1, &instruction, &hashlock);
    lock_raw(net, (0, 1), lock_id, hashlock, amount, payload);
}

/// A hand-made netting loop through one honest hop: node `from` locks `amount` to `via` under
/// the hash of `preimage`, telling it to forward with no fee as the loop of `cycle` to `to`,
/// who takes it with `preimage`. (Colluding `from` and `to` need no agreement of their own.)
#[allow(clippy::too_many_arguments)]
fn loop_through(
    net: &mut Network,
    (from, via, to): (usize, usize, usize),
    cycle: Hash,
    preimage: Preimage,
    amount: u128,
    lock_id: u64,
) {
    let hashlock = crate::crypto::keccak256(&preimage.0);
    let last = seal_for(
        net,
        to,
        &HopInstruction::Final { preimage, amount },
        &hashlock,
    );
    let forward = HopInstruction::NettingForward {
        cycle,
        next: net.nodes[to].id,
        amount,
        expires_at_ms: net.now + 100_000,
        reveal_before_j_height: 50,
        payload: last,
    };
    let payload = seal_for(net, via, &forward, &hashlock);
    lock_raw(net, (from, via), lock_id, hashlock, amount, payload);
}

#[test]
fn a_fee_free_forward_without_a_matching_agreement_is_refused() {
    // 0 → 1 → 2 → 0; node 1 agrees to the honest cycle (amount 20, from 2, to 0).
    let mut net = Network::new(3, FEE);
    net.connect(&[(0, 1), (1, 2), (2, 0)]);
    owe(&mut net, &[(0, 1, 30), (1, 2, 20), (2, 0, 25)]);
    let (honest, positions) = honest_proposal(&net);
    let cycle = cycle_id(&honest, 0).unwrap();
    let envelope = request(&net, 0, 1, (&honest, ANY_LOCK), &positions, 0);
    deliver(&mut net, envelope);
    let agreement = net.entity(1).netting_agreements[&cycle].clone();
    assert_eq!(agreement.amount, 20);
    // On the loop, 1 is paid by its creditor 2 and pays its debtor 0.
    assert_eq!(
        (agreement.from, agreement.to),
        (net.nodes[2].id, net.nodes[0].id)
    );
    let worth: Vec<i128> = (0..3).map(|n| net.worth(n)).collect();

    let forward = |cycle: Hash, amount: u128, net: &Network| HopInstruction::NettingForward {
        cycle,
        next: net.nodes[2].id,
        amount,
        expires_at_ms: net.now + 100_000,
        reveal_before_j_height: 50,
        payload: vec![],
    };
    net.events.clear();
    // No agreement for this cycle at all; then the agreed cycle, but from 0 (not from 2) to
    // 2 (not to 0); then a plain forward with no fee.
    let unknown = forward(crate::crypto::keccak256(b"no such cycle"), 20, &net);
    let wrong_hops = forward(cycle, 20, &net);
    let no_fee = HopInstruction::Forward {
        next: net.nodes[2].id,
        amount: 20,
        expires_at_ms: net.now + 100_000,
        reveal_before_j_height: 50,
        payload: vec![],
    };
    lock_with(&mut net, 100, 20, unknown);
    lock_with(&mut net, 102, 20, wrong_hops);
    lock_with(&mut net, 104, 20, no_fee);
    assert_eq!(
        refusals(&net, 1),
        vec![
            FailReason::NettingNotAgreed,
            FailReason::NettingNotAgreed,
            FailReason::FeeTooLow
        ]
    );
    assert!(
        net.entity(1).netting_agreements.contains_key(&cycle),
        "a refused forward does not use the agreement up"
    );
    assert_eq!((0..3).map(|n| net.worth(n)).collect::<Vec<_>>(), worth);
    net.assert_settled();
}

/// The ring 0 → 1 → 2 → 0 with debts 30, 20, 25: one cycle of 20. Node 1 owes 2 and is owed by
/// 0, so on the loop it is paid by 2 and pays 0.
fn triangle() -> Network {
    let mut net = Network::new(3, FEE);
    net.connect(&[(0, 1), (1, 2), (2, 0)]);
    owe(&mut net, &[(0, 1, 30), (1, 2, 20), (2, 0, 25)]);
    net
}

/// The preimage of a hand-made loop.
fn preimage(n: u8) -> Preimage {
    Preimage([n; 32])
}

fn hash_of_preimage(n: u8) -> Hash {
    crate::crypto::keccak256(&preimage(n).0)
}

#[test]
fn a_debt_is_agreed_away_once_and_a_second_loop_over_it_is_refused() {
    // 0 → 1 → 2 → 0 (30, 20, 25) and 3 owing 0 5. Two proposals with the same cycle of 20
    // that differ only in the 0–3 account (two proposal ids, the same edges) are put to 1, and
    // 0 and 2 collude to run a loop of each through 1: were both let through, 2 would owe 1
    // and 1 would owe 0, and 1 would carry 2's debt.
    let mut net = Network::new(4, FEE);
    net.connect(&[(0, 1), (1, 2), (2, 0), (0, 3)]);
    owe(&mut net, &[(0, 1, 30), (1, 2, 20), (2, 0, 25), (3, 0, 5)]);
    let (first, positions) = honest_proposal(&net);
    let boards = net.nodes.iter().map(|n| (n.id, n.board.clone())).collect();
    let without_3 = PositionSet::verify(Hash::ZERO, &positions, &boards)
        .unwrap()
        .without(&BTreeSet::from([net.nodes[3].id]));
    let second = propose(&without_3, TOKEN).unwrap();
    assert_eq!(first.cycles, second.cycles, "the same cycle of 20");
    let (c1, c2) = (cycle_id(&first, 0).unwrap(), cycle_id(&second, 0).unwrap());
    assert_ne!(c1, c2);
    let agreed = |net: &Network| {
        net.entity(1)
            .netting_agreements
            .keys()
            .copied()
            .collect::<Vec<_>>()
    };
    let net_of_1 = nets(&net)[1];

    // 0 asks for the first; 2 then asks for the second: the debts are agreed away already.
    let envelope = request(&net, 0, 1, (&first, hash_of_preimage(1)), &positions, 0);
    deliver(&mut net, envelope);
    let envelope = request(&net, 2, 1, (&second, hash_of_preimage(2)), &positions, 2);
    deliver(&mut net, envelope);
    let reasons = refused(&net, 1);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("less than the cycle's 20"),
        "{:?}",
        reasons[0]
    );
    assert_eq!(agreed(&net), vec![c1], "only the first agreement");
    // 0 asks for the second: a later round of its own replaces the first agreement.
    let envelope = request(&net, 0, 1, (&second, hash_of_preimage(2)), &positions, 0);
    deliver(&mut net, envelope);
    assert_eq!(refused(&net, 1).len(), 1, "agreed");
    assert_eq!(agreed(&net), vec![c2], "the second replaced the first");
    // 2 cannot take the agreement over by asking for the same cycle.
    let envelope = request(&net, 2, 1, (&second, hash_of_preimage(3)), &positions, 2);
    deliver(&mut net, envelope);
    let reasons = refused(&net, 1);
    assert_eq!(reasons.len(), 2);
    assert!(reasons[1].contains("another proposer"), "{:?}", reasons[1]);
    assert_eq!(
        net.entity(1).netting_agreements[&c2].hashlock,
        hash_of_preimage(2)
    );

    // Both loops: 2 locks to 1, which is to forward to 0, who takes it.
    net.events.clear();
    loop_through(&mut net, (2, 1, 0), c1, preimage(1), 20, 200);
    loop_through(&mut net, (2, 1, 0), c2, preimage(2), 20, 202);
    assert_eq!(refusals(&net, 1), vec![FailReason::NettingNotAgreed]);
    // 1 is never owed by its creditor nor owes its debtor: one loop cleared its debt to 2 and
    // 20 of 0's debt to it; the other moved nothing.
    assert_eq!(position(&net, 1, 2), 0);
    assert_eq!(position(&net, 1, 0), 10);
    assert_eq!(nets(&net)[1], net_of_1);
    assert!(net.entity(1).netting_agreements.is_empty());
    net.assert_settled();
}

#[test]
fn a_loop_after_the_debt_shrank_is_refused_at_the_hop_and_nothing_moves() {
    let mut net = triangle();
    let (honest, positions) = honest_proposal(&net);
    let cycle = cycle_id(&honest, 0).unwrap();
    let envelope = request(&net, 0, 1, (&honest, hash_of_preimage(1)), &positions, 0);
    deliver(&mut net, envelope);
    assert!(net.entity(1).netting_agreements.contains_key(&cycle));

    // 2 pays 1 directly: 1 now owes 2 only 15, less than the cycle's 20.
    owe(&mut net, &[(2, 1, 5)]);
    assert_eq!(position(&net, 1, 2), -15);
    let nets_before = nets(&net);
    let worth: Vec<i128> = (0..3).map(|n| net.worth(n)).collect();

    net.events.clear();
    loop_through(&mut net, (2, 1, 0), cycle, preimage(1), 20, 200);
    assert_eq!(refusals(&net, 1), vec![FailReason::NettingDebtShort]);
    // Not overshot into 2 owing 1: the lock cancelled back and no debt moved.
    assert_eq!(position(&net, 1, 2), -15);
    assert_eq!(position(&net, 1, 0), 30);
    assert_eq!(nets(&net), nets_before);
    assert_eq!((0..3).map(|n| net.worth(n)).collect::<Vec<_>>(), worth);
    assert!(
        net.entity(1).netting_agreements.contains_key(&cycle),
        "a refused forward does not use the agreement up"
    );
    net.assert_settled();

    // The same when what 0 owes 1 shrank instead (0 pays 1 back 15 of its 30).
    let mut net = triangle();
    let (honest, positions) = honest_proposal(&net);
    let cycle = cycle_id(&honest, 0).unwrap();
    let envelope = request(&net, 0, 1, (&honest, hash_of_preimage(1)), &positions, 0);
    deliver(&mut net, envelope);
    owe(&mut net, &[(1, 0, 15)]);
    assert_eq!(position(&net, 1, 0), 15);
    net.events.clear();
    loop_through(&mut net, (2, 1, 0), cycle, preimage(1), 20, 200);
    assert_eq!(refusals(&net, 1), vec![FailReason::NettingDebtShort]);
    assert_eq!(position(&net, 1, 0), 15);
    assert_eq!(position(&net, 1, 2), -20);
    net.assert_settled();
}

#[test]
fn a_loop_is_refused_while_a_payment_in_flight_would_take_the_debt_it_needs() {
    let mut net = triangle();
    let (honest, positions) = honest_proposal(&net);
    let cycle = cycle_id(&honest, 0).unwrap();
    let envelope = request(&net, 0, 1, (&honest, hash_of_preimage(1)), &positions, 0);
    deliver(&mut net, envelope);

    // 2 pays 0 15 through 1 (1's fee: 2), and 0 holds its reveal back: the locks are in
    // flight, and once they settle 1 owes 2 only 3 and is owed 15 by 0.
    net.withholding = Some(0);
    let payment = net.pay(&[2, 1, 0], 15, 61);
    assert_eq!(net.withheld.len(), 1);
    assert_eq!(position(&net, 1, 2), -20, "committed: still 20");
    assert_eq!(position(&net, 1, 0), 30);

    net.events.clear();
    loop_through(&mut net, (2, 1, 0), cycle, preimage(1), 20, 200);
    assert_eq!(refusals(&net, 1), vec![FailReason::NettingDebtShort]);

    // The payment settles; the debts only shrank, none turned round.
    let withheld = std::mem::take(&mut net.withheld);
    net.withholding = None;
    for envelope in withheld {
        deliver(&mut net, envelope);
    }
    assert!(matches!(
        net.status(2, &payment),
        PaymentStatus::Succeeded { .. }
    ));
    assert_eq!(position(&net, 1, 2), -3);
    assert_eq!(position(&net, 1, 0), 15);
    net.assert_settled();
}

#[test]
fn an_agreement_lets_through_only_the_lock_it_names() {
    let mut net = triangle();
    let (honest, positions) = honest_proposal(&net);
    let cycle = cycle_id(&honest, 0).unwrap();
    let envelope = request(&net, 0, 1, (&honest, hash_of_preimage(1)), &positions, 0);
    deliver(&mut net, envelope);
    let agreement = net.entity(1).netting_agreements[&cycle].clone();
    assert_eq!(agreement.hashlock, hash_of_preimage(1));
    let net_of_1 = nets(&net)[1];

    // 2, the hop before 1, tries the agreement with a lock of its own.
    net.events.clear();
    loop_through(&mut net, (2, 1, 0), cycle, preimage(9), 20, 200);
    assert_eq!(refusals(&net, 1), vec![FailReason::NettingNotAgreed]);
    assert_eq!(position(&net, 1, 2), -20, "nothing moved");
    assert_eq!(position(&net, 1, 0), 30);
    assert!(
        net.entity(1).netting_agreements.contains_key(&cycle),
        "the agreement is still there for the loop it names"
    );

    // The loop with the named hashlock goes through.
    net.events.clear();
    loop_through(&mut net, (2, 1, 0), cycle, preimage(1), 20, 202);
    assert!(refusals(&net, 1).is_empty());
    assert_eq!(position(&net, 1, 2), 0);
    assert_eq!(position(&net, 1, 0), 10);
    assert_eq!(nets(&net)[1], net_of_1);
    assert!(net.entity(1).netting_agreements.is_empty());
    net.assert_settled();
}

// ------------------------------------------------------------------ random networks

/// A random small network: a ring of debts through every node (each owes the next, so there
/// is a cycle) and some chords with debts either way; and a number that picks the proposer
/// among the entities on a cycle.
fn network_strategy() -> impl Strategy<Value = (usize, Vec<(usize, usize, u128)>, usize)> {
    (3usize..=5)
        .prop_flat_map(|count| {
            let ring = proptest::collection::vec(1u128..200, count);
            let chords =
                proptest::collection::vec((0..count, 0..count, 1u128..200, any::<bool>()), 0..3);
            (Just(count), ring, chords, 0..count)
        })
        .prop_map(|(count, ring, chords, pick)| {
            let mut debts = Vec::new();
            let mut pairs = BTreeSet::new();
            for (i, amount) in ring.into_iter().enumerate() {
                let (a, b) = (i, (i + 1) % count);
                pairs.insert((a.min(b), a.max(b)));
                debts.push((a, b, amount));
            }
            for (a, b, amount, flip) in chords {
                if a != b && pairs.insert((a.min(b), a.max(b))) {
                    debts.push(if flip { (b, a, amount) } else { (a, b, amount) });
                }
            }
            (count, debts, pick)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn netting_execution_keeps_every_net_position_and_never_raises_exposure(
        (count, debts, pick) in network_strategy()
    ) {
        let mut net = Network::new(count, FEE);
        let pairs: Vec<(usize, usize)> = debts.iter().map(|&(a, b, _)| (a, b)).collect();
        net.connect(&pairs);
        owe(&mut net, &debts);
        let nets_before = nets(&net);
        let exposure_before = exposure(&net);
        let (proposal, _) = honest_proposal(&net);
        let on_a_cycle: Vec<usize> = (0..count)
            .filter(|&n| proposal.cycles.iter().any(|c| c.participants.contains(&net.nodes[n].id)))
            .collect();
        prop_assert!(!on_a_cycle.is_empty(), "the ring is a cycle");
        let proposer = on_a_cycle[pick % on_a_cycle.len()];
        let ours: u128 = proposal
            .cycles
            .iter()
            .filter(|c| c.participants.contains(&net.nodes[proposer].id))
            .map(|c| c.amount * c.participants.len() as u128)
            .sum();

        start_netting(&mut net, proposer);

        prop_assert_eq!(nets(&net), nets_before);
        let exposure_after = exposure(&net);
        prop_assert!(ours > 0, "the proposer is on a cycle");
        prop_assert!(exposure_after < exposure_before);
        // Every cycle through the proposer was cleared (everyone here agrees), and only those.
        prop_assert_eq!(exposure_before - exposure_after, ours);
        for n in 0..count {
            prop_assert!(net.entity(n).netting_rounds.is_empty());
        }
        net.assert_settled();
    }
}
