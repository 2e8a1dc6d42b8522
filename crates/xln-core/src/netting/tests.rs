//! Tests of netting: positions, the hub's view from real account frames, a table of every
//! refusal, and a property test over random networks.

use super::*;
use crate::account::{AccountMessage, AccountTx, Clock, FrameHeader};
use crate::board::QuorumSignature;
use crate::crypto::{SignerKey, keccak256};
use crate::entity::AccountEntry;
use proptest::prelude::*;
use std::sync::OnceLock;

const TOKEN: TokenId = 1;

fn domain() -> Hash {
    keccak256(b"netting test jurisdiction")
}

/// Signer keys 1..=64, made once: deriving a key costs more than the rest of a small case.
fn key(n: usize) -> &'static SignerKey {
    static KEYS: OnceLock<Vec<SignerKey>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        (1..=64u8)
            .map(|b| SignerKey::from_bytes(&[b; 32]).expect("a valid test key"))
            .collect()
    });
    &keys[n]
}

fn board(n: usize) -> Board {
    Board::single(key(n).address())
}

fn entity(n: usize) -> EntityId {
    board(n).lazy_entity_id()
}

// ------------------------------------------------------------------ synthetic signed positions

/// A network of entities `0..size` (entity `n` is signed for by key `n`) and the accounts
/// between them, each with one token's collateral and Δ.
#[derive(Debug, Clone)]
struct Net {
    size: usize,
    /// (smaller number, larger number) → (collateral, LEFT's Δ; LEFT is the smaller id)
    accounts: BTreeMap<(usize, usize), (u128, i128)>,
}

impl Net {
    fn new(size: usize) -> Self {
        Self {
            size,
            accounts: BTreeMap::new(),
        }
    }

    /// An account in which `debtor` owes `creditor` `amount` beyond a collateral of
    /// `collateral`: all of the collateral is the creditor's, and the debt comes on top.
    fn debt(&mut self, debtor: usize, creditor: usize, amount: u128, collateral: u128) {
        let creditor_is_left = entity(creditor).is_left_of(&entity(debtor));
        let amount = i128::try_from(amount).unwrap();
        let c = i128::try_from(collateral).unwrap();
        // LEFT's Δ: LEFT creditor ⇒ Δ = C + amount; LEFT debtor ⇒ Δ = −amount.
        let delta = if creditor_is_left {
            c + amount
        } else {
            -amount
        };
        self.accounts.insert(
            (debtor.min(creditor), debtor.max(creditor)),
            (collateral, delta),
        );
    }

    fn set(&mut self, a: usize, b: usize, collateral: u128, left_delta: i128) {
        self.accounts
            .insert((a.min(b), a.max(b)), (collateral, left_delta));
    }

    fn state(&self, a: usize, b: usize) -> AccountState {
        let (collateral, delta) = self.accounts[&(a.min(b), a.max(b))];
        let mut state = AccountState::new(entity(a), entity(b));
        state.deltas.insert(
            TOKEN,
            Delta {
                collateral,
                ondelta: i128::try_from(collateral).unwrap(),
                offdelta: delta - i128::try_from(collateral).unwrap(),
                left_credit_limit: 1_000_000,
                right_credit_limit: 1_000_000,
                ..Delta::default()
            },
        );
        state
    }

    fn boards(&self) -> BTreeMap<EntityId, Board> {
        (0..self.size).map(|n| (entity(n), board(n))).collect()
    }

    /// The position `contributor` brings of its account with `peer`, with the frame at
    /// `height` signed by `signer` (the peer, when honest).
    fn position_signed_by(
        &self,
        contributor: usize,
        peer: usize,
        height: u64,
        signer: usize,
    ) -> SignedPosition {
        let state = self.state(contributor, peer);
        let key = AccountKey {
            domain: domain(),
            left: state.left,
            right: state.right,
        };
        let header = FrameHeader {
            height,
            timestamp: 1_000,
            j_height: 1,
            txs_hash: Hash::ZERO,
            prev_frame_hash: Hash::ZERO,
            state_hash: state.hash(),
            by_left: true,
        };
        let signature = key_sign(signer, &header.hash(&key));
        SignedPosition {
            contributor: entity(contributor),
            key,
            state,
            proof: DisputeProof {
                header,
                peer_signature: signature,
            },
        }
    }

    /// Every account, brought by its smaller-numbered side and signed by the other, at
    /// height 1.
    fn positions(&self) -> Vec<SignedPosition> {
        self.accounts
            .keys()
            .map(|&(a, b)| self.position_signed_by(a, b, 1, b))
            .collect()
    }

    fn verified(&self) -> PositionSet {
        PositionSet::verify(domain(), &self.positions(), &self.boards()).unwrap()
    }

    /// What entity `n` knows it signed: each of its accounts at height 1.
    fn view(&self, n: usize) -> ParticipantView {
        let accounts = self
            .accounts
            .keys()
            .filter_map(|&(a, b)| {
                let peer = if a == n {
                    b
                } else if b == n {
                    a
                } else {
                    return None;
                };
                let point = SignedPoint {
                    height: 1,
                    state_hash: self.state(a, b).hash(),
                };
                Some((entity(peer), Some(point)))
            })
            .collect();
        ParticipantView {
            entity: entity(n),
            accounts,
        }
    }

    /// The debts as the test reads them, independently of the module: (debtor, creditor) →
    /// amount beyond collateral.
    fn debts(&self) -> BTreeMap<(EntityId, EntityId), u128> {
        let mut debts = BTreeMap::new();
        for (&(a, b), &(collateral, delta)) in &self.accounts {
            let (left, right) = if entity(a).is_left_of(&entity(b)) {
                (a, b)
            } else {
                (b, a)
            };
            let left_delta = delta;
            let c = i128::try_from(collateral).unwrap();
            if left_delta > c {
                let amount = (left_delta - c).unsigned_abs();
                debts.insert((entity(right), entity(left)), amount);
            } else if left_delta < 0 {
                debts.insert((entity(left), entity(right)), left_delta.unsigned_abs());
            }
        }
        debts
    }
}

fn key_sign(n: usize, digest: &Hash) -> QuorumSignature {
    QuorumSignature(vec![key(n).sign(digest)])
}

/// Applies a proposal the simple way, to debts read independently: returns each entity's net
/// position before and after (debts plus on-chain transfers), and the debts left. Panics if a
/// debt would go below zero or does not exist.
#[allow(clippy::type_complexity)]
fn apply_independently(
    debts: &BTreeMap<(EntityId, EntityId), u128>,
    proposal: &NettingProposal,
) -> (
    BTreeMap<EntityId, i128>,
    BTreeMap<EntityId, i128>,
    BTreeMap<(EntityId, EntityId), u128>,
) {
    let nets = |debts: &BTreeMap<(EntityId, EntityId), u128>| {
        let mut nets: BTreeMap<EntityId, i128> = BTreeMap::new();
        for (&(debtor, creditor), &amount) in debts {
            *nets.entry(debtor).or_default() -= amount as i128;
            *nets.entry(creditor).or_default() += amount as i128;
        }
        nets
    };
    let before = nets(debts);
    let mut left = debts.clone();
    let mut lower = |debtor: EntityId, creditor: EntityId, amount: u128| {
        let debt = left
            .get_mut(&(debtor, creditor))
            .expect("clears a real debt");
        *debt = debt.checked_sub(amount).expect("clears no more than owed");
    };
    for cycle in &proposal.cycles {
        let n = cycle.participants.len();
        for i in 0..n {
            lower(
                cycle.participants[i],
                cycle.participants[(i + 1) % n],
                cycle.amount,
            );
        }
    }
    let mut on_chain: BTreeMap<EntityId, i128> = BTreeMap::new();
    for transfer in &proposal.transfers {
        for pair in transfer.path.windows(2) {
            lower(pair[0], pair[1], transfer.amount);
        }
        *on_chain.entry(transfer.payer).or_default() -= transfer.amount as i128;
        *on_chain.entry(transfer.payee).or_default() += transfer.amount as i128;
    }
    let mut after = nets(&left);
    for (entity, moved) in on_chain {
        *after.entry(entity).or_default() += moved;
    }
    before.keys().for_each(|e| {
        after.entry(*e).or_default();
    });
    (before, after, left)
}

// ------------------------------------------------------------------ positions

#[test]
fn uncollateralised_part_of_a_delta() {
    let delta = |collateral: u128, total: i128| Delta {
        collateral,
        ondelta: total,
        ..Delta::default()
    };
    // (collateral, Δ, LEFT's uncollateralised position)
    let table = [
        (100, 0, 0),
        (100, 100, 0),
        (100, 40, 0),
        (100, 130, 30),
        (0, 25, 25),
        (100, -20, -20),
        (0, -1, -1),
    ];
    for (collateral, total, want) in table {
        assert_eq!(
            uncollateralised(&delta(collateral, total)),
            Ok(want),
            "C={collateral} Δ={total}"
        );
    }
    let overflow = Delta {
        ondelta: i128::MAX,
        offdelta: 1,
        ..Delta::default()
    };
    assert_eq!(uncollateralised(&overflow), Err(Overflow));
}

/// The example used by most tests: A owes B 100, B owes C 70, C owes A 50, C owes D 30.
/// Nets: A −50, B +30, C −10, D +30.
fn example() -> Net {
    let mut net = Net::new(4);
    net.debt(0, 1, 100, 0);
    net.debt(1, 2, 70, 40);
    net.debt(2, 0, 50, 0);
    net.debt(2, 3, 30, 10);
    net
}

#[test]
fn the_example_nets_as_worked_out_by_hand() {
    let net = example();
    let set = net.verified();
    let graph = DebtGraph::from_positions(&set, TOKEN).unwrap();
    let nets = graph.net_positions().unwrap();
    assert_eq!(nets[&entity(0)], -50);
    assert_eq!(nets[&entity(1)], 30);
    assert_eq!(nets[&entity(2)], -10);
    assert_eq!(nets[&entity(3)], 30);
    assert_eq!(graph.exposure(), Ok(250));
    let cycles = graph.cycles().unwrap();
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].amount, 50);
    let members: BTreeSet<EntityId> = cycles[0].participants.iter().copied().collect();
    assert_eq!(members, [0, 1, 2].map(entity).into_iter().collect());

    let proposal = propose(&set, TOKEN).unwrap();
    assert_eq!(proposal.cycles, cycles);
    assert_eq!(
        proposal.before,
        NettingFigures {
            settlements: 4,
            gross_on_chain: 250,
            exposure: 250
        }
    );
    // A pays 50 and C pays 10 on chain: two batches, 60 moved; 100 of debt is left once the
    // cycle is cancelled.
    assert_eq!(
        proposal.after,
        NettingFigures {
            settlements: 2,
            gross_on_chain: 60,
            exposure: 100
        }
    );
    let (before, after, left) = apply_independently(&net.debts(), &proposal);
    assert_eq!(before, after);
    assert!(
        left.values().all(|&d| d == 0),
        "everything settled: {left:?}"
    );
    for n in 0..4 {
        verify_proposal(&proposal, &set, &net.view(n)).unwrap();
    }
}

#[test]
fn proposal_is_deterministic_and_its_id_binds_every_field() {
    let net = example();
    let boards = net.boards();
    let mut positions = net.positions();
    let first = propose(
        &PositionSet::verify(domain(), &positions, &boards).unwrap(),
        TOKEN,
    )
    .unwrap();
    positions.reverse();
    // Both sides bring the same account: still one position.
    positions.push(net.position_signed_by(1, 0, 1, 0));
    let second = propose(
        &PositionSet::verify(domain(), &positions, &boards).unwrap(),
        TOKEN,
    )
    .unwrap();
    assert_eq!(first, second);
    assert_eq!(first.id(), second.id());
    let mut changed = first.clone();
    changed.after.exposure += 1;
    assert_ne!(changed.id(), first.id());
    let mut changed = first.clone();
    changed.basis[0].height += 1;
    assert_ne!(changed.id(), first.id());
}

#[test]
fn a_participant_who_refuses_is_left_out_and_the_rest_still_nets() {
    let net = example();
    let set = net.verified();
    // D refuses: the cycle A → B → C → A still cancels.
    let excluded: BTreeSet<EntityId> = [entity(3)].into();
    let proposal = propose_without(&set, TOKEN, &excluded).unwrap();
    assert!(!proposal.participants().contains(&entity(3)));
    assert!(
        proposal
            .basis
            .iter()
            .all(|p| p.left != entity(3) && p.right != entity(3))
    );
    assert_eq!(proposal.cycles.len(), 1);
    for n in 0..3 {
        verify_proposal(&proposal, &set, &net.view(n)).unwrap();
    }
    // B refuses: no cycle is left, only transfers, and they still verify.
    let excluded: BTreeSet<EntityId> = [entity(1)].into();
    let proposal = propose_without(&set, TOKEN, &excluded).unwrap();
    assert!(proposal.cycles.is_empty());
    assert!(!proposal.participants().contains(&entity(1)));
    for n in [0, 2, 3] {
        verify_proposal(&proposal, &set, &net.view(n)).unwrap();
    }
}

#[test]
fn a_cycle_is_cleared_by_a_payment_from_each_creditor_to_its_debtor() {
    let cycle = NettingCycle {
        participants: [0, 1, 2, 3].map(entity).to_vec(),
        amount: 10,
    };
    let debts: BTreeSet<(EntityId, EntityId)> = cycle.debts().collect();
    for sender in 0..4 {
        let route = cycle.payment_route(&entity(sender)).unwrap();
        assert_eq!(route.len(), 4);
        assert_eq!(
            route.last(),
            Some(&entity(sender)),
            "the loop ends at its sender"
        );
        let mut payer = entity(sender);
        for &payee in &route {
            assert!(
                debts.contains(&(payee, payer)),
                "each hop pays the one that owes it"
            );
            payer = payee;
        }
    }
    assert_eq!(
        cycle.payment_route(&entity(0)).unwrap(),
        [3, 2, 1, 0].map(entity).to_vec()
    );
    assert_eq!(cycle.payment_route(&entity(9)), None);
}

// ------------------------------------------------------------------ refusals

#[test]
fn positions_that_were_not_signed_are_refused() {
    let net = example();
    let boards = net.boards();
    let honest = net.positions();
    let (a, b) = (entity(0), entity(1));
    let (left, right) = if a.is_left_of(&b) { (a, b) } else { (b, a) };

    let tamper = |f: &dyn Fn(&mut SignedPosition)| {
        let mut positions = honest.clone();
        let i = positions
            .iter()
            .position(|p| p.key.left == left && p.key.right == right)
            .unwrap();
        f(&mut positions[i]);
        positions
    };
    let cases: Vec<(&str, Vec<SignedPosition>, Hash, NettingError)> = vec![
        (
            "signed by a stranger",
            tamper(&|p| *p = net.position_signed_by(0, 1, 1, 9)),
            domain(),
            NettingError::BadSignature {
                left,
                right,
                signer: entity(1),
                error: QuorumError::NotEnoughWeight {
                    got: 0,
                    threshold: 1,
                },
            },
        ),
        (
            "signed by the contributor itself, not its counterparty",
            tamper(&|p| *p = net.position_signed_by(0, 1, 1, 0)),
            domain(),
            NettingError::BadSignature {
                left,
                right,
                signer: entity(1),
                error: QuorumError::NotEnoughWeight {
                    got: 0,
                    threshold: 1,
                },
            },
        ),
        (
            "no signature at all",
            tamper(&|p| p.proof.peer_signature = QuorumSignature::default()),
            domain(),
            NettingError::BadSignature {
                left,
                right,
                signer: entity(1),
                error: QuorumError::NotEnoughWeight {
                    got: 0,
                    threshold: 1,
                },
            },
        ),
        (
            "state changed after signing",
            tamper(&|p| {
                if let Some(d) = p.state.deltas.get_mut(&TOKEN) {
                    d.offdelta -= 1_000;
                }
            }),
            domain(),
            NettingError::StateHashMismatch { left, right },
        ),
        (
            "header changed after signing",
            tamper(&|p| p.proof.header.height = 7),
            domain(),
            NettingError::BadSignature {
                left,
                right,
                signer: entity(1),
                error: QuorumError::NotEnoughWeight {
                    got: 0,
                    threshold: 1,
                },
            },
        ),
        (
            "contributor not in the account",
            tamper(&|p| p.contributor = entity(3)),
            domain(),
            NettingError::NotAParty {
                contributor: entity(3),
                left,
                right,
            },
        ),
        (
            "state of another account",
            tamper(&|p| p.state = net.state(2, 3)),
            domain(),
            NettingError::MalformedPosition {
                left,
                right,
                reason: "the state is of another account",
            },
        ),
        (
            "another jurisdiction",
            honest.clone(),
            keccak256(b"elsewhere"),
            NettingError::WrongDomain {
                left: honest[0].key.left,
                right: honest[0].key.right,
            },
        ),
        (
            "two states signed at one height",
            {
                let mut other = net.position_signed_by(1, 0, 1, 0);
                if let Some(d) = other.state.deltas.get_mut(&TOKEN) {
                    d.offdelta += 1;
                }
                other.proof.header.state_hash = other.state.hash();
                let key = other.key;
                other.proof.peer_signature = key_sign(0, &other.proof.header.hash(&key));
                let mut positions = honest.clone();
                positions.push(other);
                positions
            },
            domain(),
            NettingError::ConflictingPositions {
                left,
                right,
                height: 1,
            },
        ),
    ];
    for (name, positions, jurisdiction, want) in cases {
        let before = positions.clone();
        assert_eq!(
            PositionSet::verify(jurisdiction, &positions, &boards),
            Err(want),
            "{name}"
        );
        assert_eq!(positions, before, "{name}: nothing changes");
    }

    let mut no_board = boards.clone();
    no_board.remove(&entity(1));
    assert_eq!(
        PositionSet::verify(domain(), &honest, &no_board),
        Err(NettingError::UnknownBoard(entity(1)))
    );
    // A newer frame of an account replaces an older one instead of conflicting with it.
    let mut positions = honest.clone();
    positions.push(net.position_signed_by(1, 0, 2, 0));
    let set = PositionSet::verify(domain(), &positions, &boards).unwrap();
    assert_eq!(set.get(&a, &b).map(VerifiedPosition::height), Some(2));
}

fn find_transfer(proposal: &NettingProposal, path: &[usize]) -> usize {
    let path: Vec<EntityId> = path.iter().map(|&n| entity(n)).collect();
    proposal
        .transfers
        .iter()
        .position(|t| t.path == path)
        .unwrap_or_else(|| panic!("no transfer along {path:?} in {:?}", proposal.transfers))
}

#[test]
fn proposals_a_participant_must_not_sign_are_refused() {
    let net = example();
    let set = net.verified();
    let honest = propose(&set, TOKEN).unwrap();
    let (a, b, c, d) = (entity(0), entity(1), entity(2), entity(3));
    let long = find_transfer(&honest, &[0, 1, 2, 3]);
    let basis_ab = honest
        .basis
        .iter()
        .position(|p| [p.left, p.right] == [a, b] || [p.left, p.right] == [b, a])
        .unwrap();

    let tamper = |f: &dyn Fn(&mut NettingProposal)| {
        let mut proposal = honest.clone();
        f(&mut proposal);
        proposal
    };
    let mut stale_view = net.view(0);
    stale_view.accounts.insert(
        b,
        Some(SignedPoint {
            height: 2,
            state_hash: keccak256(b"a later frame"),
        }),
    );
    let mut unopened_view = net.view(0);
    unopened_view.accounts.insert(b, None);

    // (name, proposal, verifier, error)
    let cases: Vec<(&str, NettingProposal, ParticipantView, NettingError)> = vec![
        (
            "a transfer paid to someone else than at the end of its path",
            tamper(&|p| p.transfers[long].payee = c),
            net.view(3),
            // Both C (paid 20 more) and D (paid 20 less) move; the first by id is reported.
            if c < d {
                NettingError::NetPositionChanged {
                    entity: c,
                    before: -10,
                    after: 10,
                }
            } else {
                NettingError::NetPositionChanged {
                    entity: d,
                    before: 30,
                    after: 10,
                }
            },
        ),
        (
            "a transfer paid by someone else than at the start of its path",
            tamper(&|p| p.transfers[long].payer = b),
            net.view(1),
            if a < b {
                NettingError::NetPositionChanged {
                    entity: a,
                    before: -50,
                    after: -30,
                }
            } else {
                NettingError::NetPositionChanged {
                    entity: b,
                    before: 30,
                    after: 10,
                }
            },
        ),
        (
            "a cycle cancels more than its smallest debt",
            tamper(&|p| p.cycles[0].amount = 51),
            net.view(1),
            NettingError::ExceedsDebt {
                debtor: c,
                creditor: a,
                owed: 50,
                amount: 51,
            },
        ),
        (
            "a cycle the wrong way round",
            tamper(&|p| p.cycles[0].participants.reverse()),
            net.view(1),
            NettingError::NotInBasis {
                debtor: p_reverse_first_debtor(&honest),
                creditor: p_reverse_first_creditor(&honest),
            },
        ),
        (
            "a path through an account the payer does not have",
            tamper(&|p| p.transfers[long].path = vec![a, d]),
            net.view(0),
            NettingError::UnknownAccount {
                participant: a,
                peer: d,
            },
        ),
        (
            "an account the participant does not know",
            honest.clone(),
            {
                let mut view = net.view(0);
                view.accounts.remove(&b);
                view
            },
            NettingError::UnknownAccount {
                participant: a,
                peer: b,
            },
        ),
        (
            "a state older than the participant's latest",
            honest.clone(),
            stale_view,
            NettingError::NotSignedByParticipant {
                participant: a,
                peer: b,
            },
        ),
        (
            "a state of an account the participant never signed a frame in",
            honest.clone(),
            unopened_view,
            NettingError::NotSignedByParticipant {
                participant: a,
                peer: b,
            },
        ),
        (
            "a position no signed state backs",
            tamper(&|p| p.basis[basis_ab].height = 5),
            net.view(2),
            NettingError::UnbackedPosition {
                left: honest.basis[basis_ab].left,
                right: honest.basis[basis_ab].right,
            },
        ),
        (
            "a position misstated",
            tamper(&|p| p.basis[basis_ab].uncollateralised *= 2),
            net.view(2),
            NettingError::BasisMismatch {
                left: honest.basis[basis_ab].left,
                right: honest.basis[basis_ab].right,
                claimed: honest.basis[basis_ab].uncollateralised * 2,
                signed: honest.basis[basis_ab].uncollateralised,
            },
        ),
        (
            "savings overstated",
            tamper(&|p| p.after.settlements = 1),
            net.view(2),
            NettingError::FiguresMismatch,
        ),
        (
            "exposure understated",
            tamper(&|p| p.before.exposure += 1),
            net.view(2),
            NettingError::FiguresMismatch,
        ),
        (
            "a two-party cycle",
            tamper(&|p| p.cycles[0].participants.truncate(2)),
            net.view(3),
            NettingError::MalformedProposal("a cycle needs three or more distinct participants"),
        ),
        (
            "basis out of order",
            tamper(&|p| p.basis.reverse()),
            net.view(3),
            NettingError::MalformedProposal("basis not in account order"),
        ),
        (
            "another jurisdiction",
            tamper(&|p| p.domain = keccak256(b"elsewhere")),
            net.view(3),
            NettingError::ForeignProposal,
        ),
    ];
    for (name, proposal, view, want) in cases {
        let (kept_proposal, kept_view) = (proposal.clone(), view.clone());
        assert_eq!(verify_proposal(&proposal, &set, &view), Err(want), "{name}");
        assert_eq!((proposal, view), (kept_proposal, kept_view), "{name}");
    }
    // And the honest proposal passes every participant.
    for n in 0..4 {
        verify_proposal(&honest, &set, &net.view(n)).unwrap();
    }
}

/// The first debt a reversed copy of the example's cycle would clear: its first participant
/// owing what was its predecessor.
fn p_reverse_first_debtor(proposal: &NettingProposal) -> EntityId {
    let mut participants = proposal.cycles[0].participants.clone();
    participants.reverse();
    participants[0]
}

fn p_reverse_first_creditor(proposal: &NettingProposal) -> EntityId {
    let mut participants = proposal.cycles[0].participants.clone();
    participants.reverse();
    participants[1]
}

#[test]
fn amounts_out_of_range_are_errors_not_panics() {
    // Two debts of 2^126 + 1 to one creditor: each fits, their sum does not fit a net position.
    let mut net = Net::new(3);
    let huge = (1u128 << 126) + 1;
    net.debt(0, 2, huge, 0);
    net.debt(1, 2, huge, 0);
    let set = net.verified();
    assert_eq!(propose(&set, TOKEN), Err(NettingError::Overflow));
    assert_eq!(
        DebtGraph::from_positions(&set, TOKEN)
            .unwrap()
            .net_positions(),
        Err(NettingError::Overflow)
    );
}

// ------------------------------------------------------------------ real accounts

/// Drives the messages between two account machines until both are quiet.
fn exchange(accounts: &mut [(Account, usize); 2], first: AccountMessage, to: usize, clock: Clock) {
    let mut next = Some((first, to));
    while let Some((message, to)) = next.take() {
        let from_key = accounts[1 - to].1;
        let (account, signer) = &mut accounts[to];
        let step = account
            .receive(&message, &board(from_key), clock)
            .expect("the peer's frame is valid");
        let signer = *signer;
        next = step
            .reply
            .sign(account.me(), account.peer(), |h| key_sign(signer, h))
            .map(|m| (m, 1 - to));
    }
}

/// Opens an account between entities `a` and `b` and commits `txs` (each proposed by the
/// side given) with real signed frames. Returns both replicas, `a`'s first.
fn real_account(a: usize, b: usize, txs: &[(usize, AccountTx)]) -> [Account; 2] {
    let clock = Clock {
        timestamp: 1_000,
        j_height: 1,
    };
    let mut accounts = [
        (Account::new(domain(), entity(a), entity(b)).unwrap(), a),
        (Account::new(domain(), entity(b), entity(a)).unwrap(), b),
    ];
    for (by, tx) in txs {
        let side = usize::from(*by != a);
        if let AccountTx::ChainSync {
            token,
            collateral,
            ondelta,
        } = tx
        {
            for (account, _) in accounts.iter_mut() {
                account.observe_chain(*token, *collateral, *ondelta);
            }
        }
        let (account, signer) = &mut accounts[side];
        account.enqueue(tx.clone());
        let step = account.flush(clock);
        let signer = *signer;
        let message = step
            .reply
            .sign(account.me(), account.peer(), |h| key_sign(signer, h))
            .expect("a frame to send");
        exchange(&mut accounts, message, 1 - side, clock);
    }
    let [(first, _), (second, _)] = accounts;
    [first, second]
}

/// An account in which `debtor` owes `creditor` `amount` on credit.
fn real_debt(debtor: usize, creditor: usize, amount: u128) -> [Account; 2] {
    real_account(
        debtor,
        creditor,
        &[
            (
                creditor,
                AccountTx::SetCreditLimit {
                    token: TOKEN,
                    amount: 1_000,
                },
            ),
            (
                debtor,
                AccountTx::DirectPayment {
                    token: TOKEN,
                    amount,
                },
            ),
        ],
    )
}

#[test]
fn real_accounts_hub_view_signed_positions_and_a_verified_cycle() {
    // Hubs X, Y, Z (entities 10, 11, 12): X owes Y 100, Y owes Z 80, Z owes X 60, each on
    // credit; X also has a collateralised account with wallet W (13) whose Δ lies beyond the
    // collateral: W owes X 25 on top of 200 of collateral.
    let (x, y, z, w) = (10, 11, 12, 13);
    let xy = real_debt(x, y, 100);
    let yz = real_debt(y, z, 80);
    let zx = real_debt(z, x, 60);
    let x_is_left = entity(x).is_left_of(&entity(w));
    let xw = real_account(
        x,
        w,
        &[
            (
                x,
                AccountTx::ChainSync {
                    token: TOKEN,
                    collateral: 200,
                    ondelta: if x_is_left { 200 } else { 0 },
                },
            ),
            (
                x,
                AccountTx::SetCreditLimit {
                    token: TOKEN,
                    amount: 1_000,
                },
            ),
            (
                w,
                AccountTx::DirectPayment {
                    token: TOKEN,
                    amount: 25,
                },
            ),
        ],
    );

    let mut hub = EntityState::new(entity(x), board(x), domain());
    let [x_of_xy, y_of_xy] = xy;
    let [y_of_yz, z_of_yz] = yz;
    let [z_of_zx, x_of_zx] = zx;
    let [x_of_xw, w_of_xw] = xw;
    for (account, peer) in [(&x_of_xy, y), (&x_of_zx, z), (&x_of_xw, w)] {
        hub.accounts.insert(
            entity(peer),
            AccountEntry {
                account: account.clone(),
                peer_board: board(peer),
            },
        );
    }

    let view = hub_positions(&hub, TOKEN).unwrap();
    let of = |peer: usize| {
        view.counterparties
            .iter()
            .find(|c| c.peer == entity(peer))
            .unwrap()
            .clone()
    };
    assert_eq!(of(y).uncollateralised, -100, "X owes Y");
    assert_eq!(of(y).balance, -100);
    assert_eq!(of(z).uncollateralised, 60, "Z owes X");
    assert_eq!(of(w).uncollateralised, 25, "W owes X beyond collateral");
    assert_eq!(of(w).collateral, 200);
    assert_eq!(of(w).balance, 225, "all the collateral plus the debt");
    assert_eq!(view.owed_to_hub, 85);
    assert_eq!(view.owed_by_hub, 100);
    assert_eq!(view.reserve_movement, -15);
    assert!(hub_positions(&hub, 99).unwrap().counterparties.is_empty());

    // Each side brings what its peer signed; the verifier knows the boards.
    let positions: Vec<SignedPosition> = [&x_of_xy, &y_of_yz, &z_of_zx, &w_of_xw]
        .into_iter()
        .map(|a| SignedPosition::from_account(a).unwrap())
        .collect();
    let boards: BTreeMap<EntityId, Board> = [x, y, z, w]
        .into_iter()
        .map(|n| (entity(n), board(n)))
        .collect();
    let set = PositionSet::verify(domain(), &positions, &boards).unwrap();
    let proposal = propose(&set, TOKEN).unwrap();
    assert_eq!(proposal.cycles.len(), 1);
    assert_eq!(proposal.cycles[0].amount, 60);
    assert_eq!(proposal.before.settlements, 4);
    assert_eq!(proposal.before.gross_on_chain, 265);
    // Left after the cycle: X owes Y 40, Y owes Z 20, W owes X 25. Nets: W −25, X −15,
    // Y +20, Z +20: two payers, 40 on chain.
    assert_eq!(proposal.after.exposure, 85);
    assert_eq!(proposal.after.gross_on_chain, 40);
    assert_eq!(proposal.after.settlements, 2);

    // Each participant checks it against its own accounts.
    let replica = |id: usize, accounts: &[(&Account, usize)]| {
        let mut state = EntityState::new(entity(id), board(id), domain());
        for (account, peer) in accounts {
            state.accounts.insert(
                entity(*peer),
                AccountEntry {
                    account: (*account).clone(),
                    peer_board: board(*peer),
                },
            );
        }
        ParticipantView::of(&state)
    };
    verify_proposal(&proposal, &set, &ParticipantView::of(&hub)).unwrap();
    verify_proposal(
        &proposal,
        &set,
        &replica(y, &[(&y_of_xy, x), (&y_of_yz, z)]),
    )
    .unwrap();
    verify_proposal(
        &proposal,
        &set,
        &replica(z, &[(&z_of_yz, y), (&z_of_zx, x)]),
    )
    .unwrap();
    verify_proposal(&proposal, &set, &replica(w, &[(&w_of_xw, x)])).unwrap();

    // Y pays Z 5 more after the positions were taken: Y's latest signed state is newer, and Y
    // refuses the proposal built on the older one.
    let newer_yz = real_account(
        y,
        z,
        &[
            (
                z,
                AccountTx::SetCreditLimit {
                    token: TOKEN,
                    amount: 1_000,
                },
            ),
            (
                y,
                AccountTx::DirectPayment {
                    token: TOKEN,
                    amount: 85,
                },
            ),
        ],
    );
    assert_eq!(
        verify_proposal(
            &proposal,
            &set,
            &replica(y, &[(&y_of_xy, x), (&newer_yz[0], z)])
        ),
        Err(NettingError::NotSignedByParticipant {
            participant: entity(y),
            peer: entity(z),
        })
    );
}

// ------------------------------------------------------------------ property

/// (collateral, LEFT's Δ)
fn account_strategy() -> impl Strategy<Value = (u128, i128)> {
    (0u128..=100, -300i128..=400)
}

/// Hubs `0..hubs`, all connected; wallets after them, each with one or two hubs.
fn network_strategy() -> impl Strategy<Value = Net> {
    (2usize..=5).prop_flat_map(|hubs| {
        let pairs = hubs * (hubs - 1) / 2;
        (
            prop::collection::vec(account_strategy(), pairs),
            prop::collection::vec(
                (
                    0..hubs,
                    prop::option::of(0..hubs),
                    account_strategy(),
                    account_strategy(),
                ),
                1..=10,
            ),
        )
            .prop_map(move |(hub_accounts, wallets)| {
                let mut net = Net::new(hubs + wallets.len());
                let mut hub_accounts = hub_accounts.into_iter();
                for a in 0..hubs {
                    for b in a + 1..hubs {
                        if let Some((collateral, delta)) = hub_accounts.next() {
                            net.set(a, b, collateral, delta);
                        }
                    }
                }
                for (i, (first, second, one, two)) in wallets.into_iter().enumerate() {
                    let wallet = hubs + i;
                    net.set(first, wallet, one.0, one.1);
                    if let Some(second) = second.filter(|s| *s != first) {
                        net.set(second, wallet, two.0, two.1);
                    }
                }
                net
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn netting_keeps_every_net_position_and_never_costs_more(net in network_strategy()) {
        let set = net.verified();
        let proposal = propose(&set, TOKEN).unwrap();

        // Applied the simple way, to debts read independently: nobody's net moves, and the
        // transfers leave nothing owed.
        let (before, after, left) = apply_independently(&net.debts(), &proposal);
        prop_assert_eq!(&before, &after);
        prop_assert!(left.values().all(|&d| d == 0), "left over: {:?}", left);
        prop_assert!(proposal.after.exposure <= proposal.before.exposure);
        prop_assert!(proposal.after.settlements <= proposal.before.settlements);
        prop_assert!(proposal.after.gross_on_chain <= proposal.before.gross_on_chain);
        // The chain moves exactly the net debits: the least any settlement can move.
        let net_debits: u128 = before.values().filter(|&&v| v < 0).map(|v| v.unsigned_abs()).sum();
        prop_assert_eq!(proposal.after.gross_on_chain, net_debits);
        // Cycles are gone once cancelled.
        let mut residual = net.debts();
        for cycle in &proposal.cycles {
            for (debtor, creditor) in cycle.debts() {
                *residual.get_mut(&(debtor, creditor)).unwrap() -= cycle.amount;
            }
        }
        prop_assert!(is_acyclic(&residual));

        // Every entity agrees.
        for n in 0..net.size {
            prop_assert_eq!(verify_proposal(&proposal, &set, &net.view(n)), Ok(()));
        }
        // Without any one of them, the rest still nets and still agrees.
        for out in 0..net.size {
            let excluded: BTreeSet<EntityId> = [entity(out)].into();
            let without = propose_without(&set, TOKEN, &excluded).unwrap();
            prop_assert!(!without.participants().contains(&entity(out)));
            prop_assert!(without.basis.iter().all(|p| p.left != entity(out) && p.right != entity(out)));
            for n in (0..net.size).filter(|&n| n != out) {
                prop_assert_eq!(verify_proposal(&without, &set, &net.view(n)), Ok(()));
            }
        }
    }
}

/// Whether the debts above zero form no cycle (Kahn's algorithm).
fn is_acyclic(debts: &BTreeMap<(EntityId, EntityId), u128>) -> bool {
    let live: Vec<(EntityId, EntityId)> = debts
        .iter()
        .filter(|(_, a)| **a > 0)
        .map(|(k, _)| *k)
        .collect();
    let mut indegree: BTreeMap<EntityId, usize> = BTreeMap::new();
    for (debtor, creditor) in &live {
        indegree.entry(*debtor).or_default();
        *indegree.entry(*creditor).or_default() += 1;
    }
    let mut ready: Vec<EntityId> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(e, _)| *e)
        .collect();
    let mut seen = 0;
    while let Some(node) = ready.pop() {
        seen += 1;
        for (_, creditor) in live.iter().filter(|(d, _)| *d == node) {
            let d = indegree.get_mut(creditor).unwrap();
            *d -= 1;
            if *d == 0 {
                ready.push(*creditor);
            }
        }
    }
    seen == indegree.len()
}
