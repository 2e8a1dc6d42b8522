//! Netting on a synthetic network: 5 hubs, 1,000 wallets. Every wallet has an account with one
//! or two hubs, the hubs all have accounts with each other. Payments between wallets, with
//! skewed (Zipf) choice of sender and receiver and log-uniform amounts, are routed
//! wallet → hub (→ hub) → wallet and applied hop by hop with the account rules (RCPAN: a
//! payment that does not fit every hop is refused whole), so positions arise as they would.
//! Every account's state is then signed by one side and brought by the other, verified, and
//! netted. Two scenarios: payers and payees drawn from one activity ranking (money circulates)
//! or from independent ones (shoppers pay merchants). What a wallet deposits and the credit it
//! gets or gives are scaled to its expected activity, so that refusals stay the exception.
//!
//! Printed, with and without netting:
//! - on-chain transactions: without, one cooperative settlement per account with a debt beyond
//!   collateral; with, one Depository batch per entity that has to pay (receivers send
//!   nothing: a reserve transfer is the payer's operation);
//! - gross moved on chain: without, the sum of every account's debt; with, the sum of the
//!   reserve transfers, which is each net payer's net;
//! - exposure: the sum of debts beyond collateral; with netting, what is left once the cycles
//!   are cancelled off chain (the on-chain transfers then retire it);
//! - the time to verify the positions and to compute the plan.
//!
//! Then criterion times the plan. Everything is seeded: the same network every run.

// A benchmark measures wall time; the core itself never reads a clock.
#![allow(clippy::disallowed_methods)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;
use xln_core::account::{AccountKey, AccountState, AccountTx, Clock, DisputeProof, FrameHeader};
use xln_core::board::{Board, EntityId, QuorumSignature};
use xln_core::crypto::{Hash, SignerKey, keccak256};
use xln_core::delta::Side;
use xln_core::netting::{NettingProposal, PositionSet, SignedPosition, propose};

const HUBS: usize = 5;
const WALLETS: usize = 1_000;
const PAYMENTS: usize = 20_000;
const TOKEN: u32 = 1;
/// Share of wallets with a second hub.
const TWO_HUB_SHARE: f64 = 0.3;
/// Zipf exponent of the choice of sender and of receiver.
const ZIPF: f64 = 1.0;
/// Payment amounts, log-uniform in 1..=MAX_AMOUNT.
const MAX_AMOUNT: f64 = 1_000.0;
/// The mean of a log-uniform amount in 1..=MAX_AMOUNT.
const MEAN_AMOUNT: f64 = (MAX_AMOUNT - 1.0) / 6.907_755_278_982_137; // ln(1000)
/// Hubs extend each other this much credit, and put no collateral between them.
const HUB_CREDIT: u128 = 10_000_000;

/// splitmix64: a few lines of seeded, deterministic randomness.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Picks indices `0..n` with probability ∝ 1 / rank^s, ranks given by a random permutation.
struct Zipf {
    cumulative: Vec<f64>,
    order: Vec<usize>,
}

impl Zipf {
    /// The expected share of picks of index `i`.
    fn share(&self, i: usize) -> f64 {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let rank = self.order.iter().position(|&j| j == i).unwrap_or(0);
        let below = if rank == 0 {
            0.0
        } else {
            self.cumulative[rank - 1]
        };
        (self.cumulative[rank] - below) / total
    }

    fn new(n: usize, s: f64, rng: &mut SplitMix64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(s);
                total
            })
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.below(i + 1));
        }
        Self { cumulative, order }
    }
    fn pick(&self, rng: &mut SplitMix64) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let target = rng.unit() * total;
        let rank = self.cumulative.partition_point(|&c| c <= target);
        self.order[rank.min(self.order.len() - 1)]
    }
}

struct Network {
    keys: Vec<SignerKey>,
    ids: Vec<EntityId>,
    boards: Vec<Board>,
    /// (smaller index, larger index) → the account's state.
    accounts: BTreeMap<(usize, usize), AccountState>,
    /// Each wallet's hubs (index `w - HUBS`).
    wallet_hubs: Vec<Vec<usize>>,
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

const CLOCK: Clock = Clock {
    timestamp: 1_000,
    j_height: 1,
};

impl Network {
    fn side(&self, account: &AccountState, entity: usize) -> Side {
        account.side_of(&self.ids[entity])
    }

    /// Opens an account: `collateral` deposited by `depositor` (all of it its own), and each
    /// side's credit to the other.
    fn open(
        &mut self,
        a: usize,
        b: usize,
        depositor: usize,
        collateral: u128,
        credit_from_a: u128,
        credit_from_b: u128,
    ) {
        let mut state = AccountState::new(self.ids[a], self.ids[b]);
        let depositor_left = self.side(&state, depositor) == Side::Left;
        let setup = [
            (
                Side::Left,
                AccountTx::ChainSync {
                    token: TOKEN,
                    collateral,
                    // LEFT's share of the collateral is ondelta (clamped to it).
                    ondelta: if depositor_left {
                        collateral as i128
                    } else {
                        0
                    },
                },
            ),
            (
                self.side(&state, a),
                AccountTx::SetCreditLimit {
                    token: TOKEN,
                    amount: credit_from_a,
                },
            ),
            (
                self.side(&state, b),
                AccountTx::SetCreditLimit {
                    token: TOKEN,
                    amount: credit_from_b,
                },
            ),
        ];
        for (by, tx) in setup {
            state.apply(&tx, by, CLOCK).expect("account setup is valid");
        }
        self.accounts.insert(pair(a, b), state);
    }

    /// Wallet `w` (index `w - HUBS`) expects to send `sent[w]` and receive `received[w]`
    /// over the run; what it deposits and the credit it gets or gives are scaled to that, so
    /// that a payment is refused only where the dice make a wallet outspend its means.
    fn build(rng: &mut SplitMix64, sent: &[f64], received: &[f64]) -> Self {
        let keys: Vec<SignerKey> = (0..HUBS + WALLETS)
            .map(|_| {
                let mut secret = [0u8; 32];
                for chunk in secret.chunks_mut(8) {
                    chunk.copy_from_slice(&rng.next().to_be_bytes());
                }
                SignerKey::from_bytes(&secret).expect("a random 32-byte key is valid")
            })
            .collect();
        let boards: Vec<Board> = keys.iter().map(|k| Board::single(k.address())).collect();
        let ids = boards.iter().map(Board::lazy_entity_id).collect();
        let mut network = Network {
            keys,
            ids,
            boards,
            accounts: BTreeMap::new(),
            wallet_hubs: Vec::new(),
        };
        for a in 0..HUBS {
            for b in a + 1..HUBS {
                network.open(a, b, a, 0, HUB_CREDIT, HUB_CREDIT);
            }
        }
        for w in HUBS..HUBS + WALLETS {
            let first = rng.below(HUBS);
            let mut hubs = vec![first];
            if rng.chance(TWO_HUB_SHARE) {
                let second = (first + 1 + rng.below(HUBS - 1)) % HUBS;
                hubs.push(second);
            }
            let per_hub = hubs.len() as f64;
            let (out, inn) = (sent[w - HUBS] / per_hub, received[w - HUBS] / per_hub);
            for &hub in &hubs {
                // The wallet deposits up to its expected spending; half the wallets also get a
                // credit line from the hub of up to half of it; the wallet lets the hub owe it up
                // to twice what it expects to receive.
                let collateral = (out * rng.unit()) as u128;
                let hub_credit = if rng.chance(0.5) {
                    (out * 0.5 * rng.unit()) as u128
                } else {
                    0
                };
                let wallet_credit = (2.0 * inn) as u128 + 1;
                network.open(w, hub, w, collateral, wallet_credit, hub_credit);
            }
            network.wallet_hubs.push(hubs);
        }
        network
    }

    /// Pays `amount` along `route`, each hop a direct payment; refused whole if any hop does
    /// not fit.
    fn pay(&mut self, route: &[usize], amount: u128) -> bool {
        let mut changed = Vec::with_capacity(route.len());
        for hop in route.windows(2) {
            let (from, to) = (hop[0], hop[1]);
            let Some(state) = self.accounts.get(&pair(from, to)) else {
                return false;
            };
            let mut state = state.clone();
            let by = self.side(&state, from);
            let tx = AccountTx::DirectPayment {
                token: TOKEN,
                amount,
            };
            if state.apply(&tx, by, CLOCK).is_err() {
                return false;
            }
            changed.push((pair(from, to), state));
        }
        self.accounts.extend(changed);
        true
    }

    /// Each account brought by its LEFT and signed by its RIGHT.
    fn signed_positions(&self, domain: Hash) -> Vec<SignedPosition> {
        self.accounts
            .iter()
            .map(|(&(a, b), state)| {
                let (contributor, signer) = if self.side(state, a) == Side::Left {
                    (a, b)
                } else {
                    (b, a)
                };
                let key = AccountKey {
                    domain,
                    left: state.left,
                    right: state.right,
                };
                let header = FrameHeader {
                    height: 1,
                    timestamp: CLOCK.timestamp,
                    j_height: CLOCK.j_height,
                    txs_hash: Hash::ZERO,
                    prev_frame_hash: Hash::ZERO,
                    state_hash: state.hash(),
                    by_left: true,
                };
                let signature = self.keys[signer].sign(&header.hash(&key));
                SignedPosition {
                    contributor: self.ids[contributor],
                    key,
                    state: state.clone(),
                    proof: DisputeProof {
                        header,
                        peer_signature: QuorumSignature(vec![signature]),
                    },
                }
            })
            .collect()
    }
}

/// The plan as a node executes it: the cycles cleared off chain, then each hub settles the
/// remaining debts of its accounts in one batch (an account between two hubs in the batch of
/// the first in `hubs`); wallets send nothing. Returns the batches and the gross amount: what
/// leaves each entity's reserve within each batch, net of what that batch brings it.
fn hub_batches(proposal: &NettingProposal, hubs: &[EntityId]) -> (u64, u128) {
    let mut debts: BTreeMap<(EntityId, EntityId), u128> = proposal
        .basis
        .iter()
        .filter_map(|p| p.debt())
        .map(|d| ((d.debtor, d.creditor), d.amount))
        .collect();
    for cycle in &proposal.cycles {
        for edge in cycle.debts() {
            let debt = debts
                .get_mut(&edge)
                .expect("a cycle clears debts of the basis");
            *debt -= cycle.amount;
        }
    }
    let mut batches: BTreeMap<EntityId, BTreeMap<EntityId, i128>> = BTreeMap::new();
    for ((debtor, creditor), amount) in debts {
        if amount == 0 {
            continue;
        }
        let submitter = *hubs
            .iter()
            .find(|h| **h == debtor || **h == creditor)
            .expect("every account of the network has a hub");
        let batch = batches.entry(submitter).or_default();
        *batch.entry(debtor).or_default() -= amount as i128;
        *batch.entry(creditor).or_default() += amount as i128;
    }
    let gross = batches
        .values()
        .flat_map(|batch| batch.values())
        .filter(|change| **change < 0)
        .map(|change| change.unsigned_abs())
        .sum();
    (batches.len() as u64, gross)
}

fn percent_less(before: u128, after: u128) -> String {
    if before == 0 {
        return "n/a".into();
    }
    format!(
        "-{:.1}%",
        100.0 * (before as f64 - after as f64) / before as f64
    )
}

struct Setup {
    positions: PositionSet,
    proposal: NettingProposal,
}

/// How payers and payees are picked.
#[derive(Clone, Copy)]
enum Scenario {
    /// One activity ranking for both: the wallets that pay much are also paid much, as in an
    /// economy where money circulates.
    Circulating,
    /// Independent rankings: heavy payers and heavy payees are different wallets (shoppers and
    /// merchants), so money drains one way.
    Merchants,
}

fn setup(scenario: Scenario) -> Setup {
    let mut rng = SplitMix64(0x0078_6c6e_6e65_7474);
    let senders = Zipf::new(WALLETS, ZIPF, &mut rng);
    let receivers = match scenario {
        Scenario::Circulating => Zipf {
            cumulative: senders.cumulative.clone(),
            order: senders.order.clone(),
        },
        Scenario::Merchants => Zipf::new(WALLETS, ZIPF, &mut rng),
    };
    let volume = |zipf: &Zipf| -> Vec<f64> {
        (0..WALLETS)
            .map(|w| zipf.share(w) * PAYMENTS as f64 * MEAN_AMOUNT)
            .collect()
    };
    let mut network = Network::build(&mut rng, &volume(&senders), &volume(&receivers));
    let (mut settled, mut refused, mut two_hub_routes) = (0usize, 0usize, 0usize);
    for _ in 0..PAYMENTS {
        let (sender, receiver) = (senders.pick(&mut rng), receivers.pick(&mut rng));
        if sender == receiver {
            continue;
        }
        let sender_hubs = &network.wallet_hubs[sender];
        let receiver_hubs = &network.wallet_hubs[receiver];
        let (from_hub, to_hub) = (
            sender_hubs[rng.below(sender_hubs.len())],
            receiver_hubs[rng.below(receiver_hubs.len())],
        );
        let (sender, receiver) = (HUBS + sender, HUBS + receiver);
        let route = if from_hub == to_hub {
            vec![sender, from_hub, receiver]
        } else {
            vec![sender, from_hub, to_hub, receiver]
        };
        let amount = MAX_AMOUNT.powf(rng.unit()).round().max(1.0) as u128;
        if network.pay(&route, amount) {
            settled += 1;
            two_hub_routes += usize::from(route.len() == 4);
        } else {
            refused += 1;
        }
    }

    let domain = keccak256(b"netting benchmark jurisdiction");
    let positions = network.signed_positions(domain);
    let boards: BTreeMap<EntityId, Board> = network
        .ids
        .iter()
        .copied()
        .zip(network.boards.iter().cloned())
        .collect();
    let started = Instant::now();
    let verified = PositionSet::verify(domain, &positions, &boards).expect("honest positions");
    let verify_time = started.elapsed();
    let started = Instant::now();
    let proposal = propose(&verified, TOKEN).expect("a plan");
    let plan_time = started.elapsed();

    let (before, after) = (proposal.before, proposal.after);
    let is_hub = |id: &EntityId| network.ids[..HUBS].contains(id);
    let (mut hub_hub_debts, mut hub_hub_gross) = (0usize, 0u128);
    for p in &proposal.basis {
        if is_hub(&p.left) && is_hub(&p.right) {
            hub_hub_debts += 1;
            hub_hub_gross += p.uncollateralised.unsigned_abs();
        }
    }
    let name = match scenario {
        Scenario::Circulating => "circulating (payers and payees from one Zipf ranking)",
        Scenario::Merchants => "merchants (payers and payees from independent Zipf rankings)",
    };
    println!();
    println!("scenario: {name}");
    println!(
        "netting: {HUBS} hubs, {WALLETS} wallets, {} accounts; {settled} payments applied \
         ({two_hub_routes} through two hubs), {refused} refused by RCPAN",
        network.accounts.len()
    );
    println!(
        "  accounts with a debt beyond collateral: {} ({hub_hub_debts} between hubs, owing \
         {hub_hub_gross} of the {} total)",
        proposal.basis.len(),
        before.gross_on_chain
    );
    let receivers_count = proposal
        .transfers
        .iter()
        .map(|t| t.payee)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    println!(
        "  plan: {} cycles cancelled off chain, {} reserve transfers from {} paying entities \
         to {receivers_count} receiving ones (a receiver sends nothing)",
        proposal.cycles.len(),
        proposal.transfers.len(),
        after.settlements
    );
    println!(
        "  {:<28} {:>16} {:>16} {:>9}",
        "", "without netting", "with netting", "change"
    );
    let row = |name: &str, before: u128, after: u128| {
        println!(
            "  {name:<28} {before:>16} {after:>16} {:>9}",
            percent_less(before, after)
        );
    };
    row(
        "on-chain transactions",
        u128::from(before.settlements),
        u128::from(after.settlements),
    );
    row(
        "gross moved on chain",
        before.gross_on_chain,
        after.gross_on_chain,
    );
    row(
        "exposure (uncollateralised)",
        before.exposure,
        after.exposure,
    );
    let (batches, batches_gross) = hub_batches(&proposal, &network.ids[..HUBS]);
    println!(
        "  as the node executes it (cycles off chain, then one batch of debt settlements per hub):"
    );
    row(
        "on-chain transactions",
        u128::from(before.settlements),
        u128::from(batches),
    );
    row("gross moved on chain", before.gross_on_chain, batches_gross);
    println!(
        "  time: verify {} signed positions {:.1} ms, compute the plan {:.2} ms",
        positions.len(),
        verify_time.as_secs_f64() * 1e3,
        plan_time.as_secs_f64() * 1e3
    );
    println!();
    Setup {
        positions: verified,
        proposal,
    }
}

fn bench_netting(c: &mut Criterion) {
    let scenarios = [
        ("circulating", setup(Scenario::Circulating)),
        ("merchants", setup(Scenario::Merchants)),
    ];
    let mut group = c.benchmark_group("netting_5_hubs_1000_wallets");
    for (name, setup) in &scenarios {
        group.bench_function(format!("plan_{name}"), |b| {
            b.iter(|| {
                let proposal = propose(black_box(&setup.positions), TOKEN).expect("a plan");
                debug_assert_eq!(proposal, setup.proposal);
                proposal
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_netting);
criterion_main!(benches);
