//! Swaps through a hub across runtimes wired together in process: a hub (a 2-of-3 board, or
//! one signer) and two wallets. Offers match in the hub's book; after every step both sides of
//! every account agree, RCPAN holds, every hold is exactly what open offers reserve, every
//! replica of the hub has the same book, and the hub is net zero per token.

use super::*;
use crate::account::{Account, AccountTx};
use crate::board::BoardMember;
use crate::delta::Side;
use crate::entity::{EntityEvent, SwapOrder};
use crate::swap::TimeInForce::{self, FillOrKill, GoodTillCancel, ImmediateOrCancel};
use proptest::prelude::*;

const USD: u32 = 1;
const ETH: u32 = 2;
/// What each wallet lets the hub owe it, per token: small enough that what the hub can pay a
/// wallet limits matching in the property test.
const WALLET_CREDIT: u128 = 4_000;
/// What the hub lets each wallet owe it, per token.
const HUB_CREDIT: u128 = 100_000;
const START: u64 = 1_000_000;
/// Long enough for every test that does not test expiry.
const LONG: u64 = 3_600_000;

fn key(n: u8) -> SignerKey {
    SignerKey::from_bytes(&[n; 32]).unwrap()
}

/// A hub (runtimes `0..hub_members`), wallet A and wallet B (the last two runtimes), a perfect
/// network between them.
struct Market {
    runtimes: Vec<Runtime>,
    now: u64,
    events: Vec<(usize, RuntimeEvent)>,
    hub: EntityId,
    hub_members: usize,
    wallets: [EntityId; 2],
    /// Messages to this runtime are held back (a peer that does not answer) until released.
    holding: Option<usize>,
    held: Vec<Envelope>,
}

impl Market {
    /// `two_of_three`: the hub is a 2-of-3 board on three runtimes; else one signer.
    fn new(two_of_three: bool) -> Self {
        let hub_keys: Vec<SignerKey> = if two_of_three {
            vec![key(1), key(2), key(3)]
        } else {
            vec![key(1)]
        };
        let hub_board = if two_of_three {
            let members = hub_keys
                .iter()
                .map(|k| BoardMember {
                    signer: k.address(),
                    weight: 1,
                })
                .collect();
            Board::new(2, members).unwrap()
        } else {
            Board::single(hub_keys[0].address())
        };
        let wallet_keys = [key(31), key(32)];
        let wallet_boards = wallet_keys.clone().map(|k| Board::single(k.address()));
        let mut market = Market {
            runtimes: hub_keys
                .iter()
                .chain(&wallet_keys)
                .map(|k| Runtime::new([k.clone()]))
                .collect(),
            now: START,
            events: Vec::new(),
            hub: hub_board.lazy_entity_id(),
            hub_members: hub_keys.len(),
            wallets: wallet_boards.clone().map(|b| b.lazy_entity_id()),
            holding: None,
            held: Vec::new(),
        };
        let add = |board: &Board, k: &SignerKey| Command::AddReplica {
            board: board.clone(),
            signer: k.address(),
            domain: Hash::ZERO,
        };
        for (i, k) in hub_keys.iter().enumerate() {
            market.input(i, vec![add(&hub_board, k)]);
        }
        for w in 0..2 {
            let at = market.wallet_runtime(w);
            market.input(at, vec![add(&wallet_boards[w], &wallet_keys[w])]);
        }
        // Each wallet opens its account and lets the hub owe it; the hub lets it owe back.
        for w in 0..2 {
            let mut txs = vec![EntityTx::OpenAccount {
                peer: market.hub,
                peer_board: hub_board.clone(),
            }];
            txs.extend([USD, ETH].map(|token| credit(market.hub, token, WALLET_CREDIT)));
            market.submit_wallet(w, txs);
            let wallet = market.wallets[w];
            market.submit_hub(
                [USD, ETH]
                    .map(|token| credit(wallet, token, HUB_CREDIT))
                    .to_vec(),
            );
        }
        market.assert_consistent();
        market
    }

    fn wallet_runtime(&self, w: usize) -> usize {
        self.hub_members + w
    }

    fn host(&self, to: &ReplicaId) -> usize {
        self.runtimes
            .iter()
            .position(|r| r.state().replicas.contains_key(to))
            .expect("every replica is hosted")
    }

    /// Applies `commands` at runtime `at`, then delivers every message until the network is
    /// quiet.
    fn input(&mut self, at: usize, commands: Vec<Command>) {
        self.now += 10;
        let out = self.runtimes[at].apply(RuntimeInput {
            timestamp: self.now,
            commands,
            ..RuntimeInput::default()
        });
        let mut inboxes: Vec<Vec<Envelope>> = vec![Vec::new(); self.runtimes.len()];
        self.collect(at, out, &mut inboxes);
        self.deliver(inboxes);
    }

    /// Delivers every message until the network is quiet (but for what is held back).
    fn deliver(&mut self, mut inboxes: Vec<Vec<Envelope>>) {
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
                self.collect(i, out, &mut inboxes);
            }
        }
    }

    fn collect(&mut self, at: usize, out: RuntimeOutput, inboxes: &mut [Vec<Envelope>]) {
        for message in out.messages {
            let host = self.host(&message.to);
            if self.holding == Some(host) {
                self.held.push(message);
            } else {
                inboxes[host].push(message);
            }
        }
        for event in out.events {
            if let RuntimeEvent::Rejected(error) = &event {
                panic!("runtime {at} rejected an honest input: {error}");
            }
            self.events.push((at, event));
        }
    }

    /// From now on, messages to wallet `w` are held back.
    fn hold_wallet(&mut self, w: usize) {
        self.holding = Some(self.wallet_runtime(w));
    }

    /// Delivers what was held back, and everything after it.
    fn release(&mut self) {
        let Some(at) = self.holding.take() else {
            return;
        };
        let mut inboxes: Vec<Vec<Envelope>> = vec![Vec::new(); self.runtimes.len()];
        inboxes[at] = std::mem::take(&mut self.held);
        self.deliver(inboxes);
    }

    fn submit_wallet(&mut self, w: usize, txs: Vec<EntityTx>) {
        let entity = self.wallets[w];
        self.input(
            self.wallet_runtime(w),
            vec![Command::Submit { entity, txs }],
        );
    }

    /// Through a member that is not the proposer when there is one.
    fn submit_hub(&mut self, txs: Vec<EntityTx>) {
        let at = self.hub_members - 1;
        let entity = self.hub;
        self.input(at, vec![Command::Submit { entity, txs }]);
    }

    /// Time passes; every runtime gets a tick (the hub's proposer notices what expired).
    fn tick(&mut self, ms: u64) {
        self.now += ms;
        for i in 0..self.runtimes.len() {
            self.input(i, vec![]);
        }
    }

    /// Wallet `w` offers; returns the offer's id.
    fn offer(
        &mut self,
        w: usize,
        (give_token, give_amount): (u32, u128),
        (want_token, want_amount): (u32, u128),
        time_in_force: TimeInForce,
        expires_in: u64,
    ) -> u64 {
        let order = SwapOrder {
            peer: self.hub,
            give_token,
            give_amount,
            want_token,
            want_amount,
            expires_at_ms: self.now + expires_in,
            time_in_force,
        };
        self.submit_wallet(w, vec![EntityTx::PlaceSwap(order)]);
        self.entity_events(self.wallet_runtime(w))
            .filter_map(|e| match e {
                EntityEvent::SwapOffered { offer_id, .. } => Some(*offer_id),
                _ => None,
            })
            .last()
            .expect("the offer was placed")
    }

    fn cancel(&mut self, w: usize, offer_id: u64) {
        let tx = EntityTx::Account {
            peer: self.hub,
            tx: AccountTx::SwapCancel { offer_id },
        };
        self.submit_wallet(w, vec![tx]);
    }

    fn entity_events(&self, at: usize) -> impl Iterator<Item = &EntityEvent> {
        self.events.iter().filter_map(move |(i, e)| match e {
            RuntimeEvent::Entity { event, .. } if *i == at => Some(event),
            _ => None,
        })
    }

    fn hub_state(&self, member: usize) -> &EntityState {
        self.runtimes[member].replica_of(&self.hub).unwrap().state()
    }

    fn wallet_account(&self, w: usize) -> &Account {
        let state = self.runtimes[self.wallet_runtime(w)]
            .replica_of(&self.wallets[w])
            .unwrap()
            .state();
        &state.accounts[&self.hub].account
    }

    /// Wallet `w`'s Δ in `token`, from its own side.
    fn position(&self, w: usize, token: u32) -> i128 {
        let account = self.wallet_account(w);
        let delta = account.state().deltas[&token].total().unwrap();
        match account.side() {
            Side::Left => delta,
            Side::Right => -delta,
        }
    }

    fn positions(&self) -> [[i128; 2]; 2] {
        [0, 1].map(|w| [USD, ETH].map(|t| self.position(w, t)))
    }

    /// What wallet `w` has on hold in `token` (its own side's hold).
    fn hold(&self, w: usize, token: u32) -> u128 {
        let account = self.wallet_account(w);
        let delta = &account.state().deltas[&token];
        match account.side() {
            Side::Left => delta.left_hold,
            Side::Right => delta.right_hold,
        }
    }

    fn assert_consistent(&self) {
        for w in 0..2 {
            let ours = self.wallet_account(w);
            assert!(
                ours.pending().is_none() && ours.mempool().is_empty(),
                "wallet {w}: busy"
            );
            for member in 0..self.hub_members {
                let theirs = &self.hub_state(member).accounts[&self.wallets[w]].account;
                assert_eq!(
                    ours.height(),
                    theirs.height(),
                    "wallet {w}, member {member}"
                );
                assert_eq!(
                    ours.state().hash(),
                    theirs.state().hash(),
                    "wallet {w}, member {member}: states"
                );
                assert!(theirs.pending().is_none() && theirs.mempool().is_empty());
            }
            let state = ours.state();
            assert!(state.holds_match_obligations(), "wallet {w}: holds");
            for delta in state.deltas.values() {
                assert!(delta.rcpan_holds().unwrap(), "wallet {w}: RCPAN");
            }
        }
        let hub = self.hub_state(0);
        for member in 1..self.hub_members {
            assert_eq!(self.hub_state(member).hash(), hub.hash(), "member {member}");
            assert_eq!(
                self.hub_state(member).book,
                hub.book,
                "member {member}: book"
            );
        }
        // What rests in the book is exactly what is left of an open offer.
        for order in hub.book.all_orders() {
            let account = &hub.accounts[&order.key.owner].account;
            let offer = &account.state().offers[&order.key.offer_id];
            assert_eq!(order.remaining, offer.remaining, "{:?}", order.key);
        }
    }

    /// The hub's Δ summed over its accounts, per token, from its own side.
    fn hub_net(&self) -> [i128; 2] {
        [USD, ETH].map(|token| {
            self.hub_state(0)
                .accounts
                .values()
                .map(|entry| {
                    let delta = entry.account.state().deltas[&token].total().unwrap();
                    match entry.account.side() {
                        Side::Left => delta,
                        Side::Right => -delta,
                    }
                })
                .sum()
        })
    }

    fn dropped_legs(&self) -> usize {
        self.entity_events(0)
            .filter(|e| matches!(e, EntityEvent::SwapLegDropped { .. }))
            .count()
    }
}

fn credit(peer: EntityId, token: u32, amount: u128) -> EntityTx {
    EntityTx::Account {
        peer,
        tx: AccountTx::SetCreditLimit { token, amount },
    }
}

const A: usize = 0;
const B: usize = 1;

#[test]
fn two_opposite_offers_match_through_a_two_of_three_hub() {
    let mut market = Market::new(true);
    let before = market.positions();
    // A: 3,000 USD for 1,000 ETH. B: 1,000 ETH for 3,000 USD.
    market.offer(A, (USD, 3_000), (ETH, 1_000), GoodTillCancel, LONG);
    assert_eq!(market.hold(A, USD), 3_000, "A's offer rests, on hold");
    market.offer(B, (ETH, 1_000), (USD, 3_000), GoodTillCancel, LONG);
    market.assert_consistent();
    let after = market.positions();
    assert_eq!(after[A][0] - before[A][0], -3_000);
    assert_eq!(after[A][1] - before[A][1], 1_000);
    assert_eq!(after[B][0] - before[B][0], 3_000);
    assert_eq!(after[B][1] - before[B][1], -1_000);
    assert_eq!(market.hub_net(), [0, 0]);
    for w in [A, B] {
        assert_eq!(market.wallet_account(w).state().total_holds(), 0);
        assert!(market.wallet_account(w).state().offers.is_empty());
    }
    assert!(market.hub_state(0).book.is_empty());
    let matched: Vec<_> = market
        .entity_events(0)
        .filter(|e| matches!(e, EntityEvent::SwapMatched(_)))
        .collect();
    assert_eq!(matched.len(), 1);
    let resolved = |w: usize| {
        market
            .entity_events(market.wallet_runtime(w))
            .filter(|e| matches!(e, EntityEvent::SwapResolved { .. }))
            .count()
    };
    assert_eq!((resolved(A), resolved(B)), (1, 1));
}

#[test]
fn a_partial_fill_rests_the_remainder_until_its_maker_cancels() {
    let mut market = Market::new(true);
    let before = market.positions();
    let a = market.offer(A, (USD, 3_000), (ETH, 1_000), GoodTillCancel, LONG);
    // B gives 400 ETH and asks only 1,000 USD: it gets A's price, 1,200 USD.
    market.offer(B, (ETH, 400), (USD, 1_000), GoodTillCancel, LONG);
    market.assert_consistent();
    let after = market.positions();
    assert_eq!(after[B][0] - before[B][0], 1_200, "B got the better price");
    assert_eq!(after[A][1] - before[A][1], 400);
    assert_eq!(
        market.hold(A, USD),
        1_800,
        "the rest of A's offer is still on hold"
    );
    assert_eq!(market.hub_state(0).book.len(), 1);
    assert_eq!(market.hub_net(), [0, 0]);

    market.cancel(A, a);
    market.assert_consistent();
    assert_eq!(market.hold(A, USD), 0);
    assert!(market.hub_state(0).book.is_empty());
    assert_eq!(market.positions(), after, "a cancel moves nothing");
}

#[test]
fn an_immediate_or_cancel_remainder_is_cancelled_by_the_hub() {
    let mut market = Market::new(false);
    let before = market.positions();
    market.offer(A, (USD, 3_000), (ETH, 1_000), GoodTillCancel, LONG);
    market.offer(B, (ETH, 2_000), (USD, 6_000), ImmediateOrCancel, LONG);
    market.assert_consistent();
    let after = market.positions();
    assert_eq!(
        after[B][1] - before[B][1],
        -1_000,
        "half of B's offer traded"
    );
    assert_eq!(after[B][0] - before[B][0], 3_000);
    assert_eq!(market.hold(B, ETH), 0, "and the rest was released");
    assert!(market.wallet_account(B).state().offers.is_empty());
    assert!(market.hub_state(0).book.is_empty());
    assert_eq!(market.hub_net(), [0, 0]);
}

#[test]
fn a_fill_or_kill_that_cannot_fill_entirely_is_cancelled_untouched() {
    let mut market = Market::new(false);
    market.offer(A, (USD, 3_000), (ETH, 1_000), GoodTillCancel, LONG);
    let before = market.positions();
    market.offer(B, (ETH, 2_000), (USD, 6_000), FillOrKill, LONG);
    market.assert_consistent();
    assert_eq!(market.positions(), before, "nothing moved");
    assert_eq!(market.hold(B, ETH), 0);
    assert!(market.wallet_account(B).state().offers.is_empty());
    assert_eq!(
        market.hold(A, USD),
        3_000,
        "A's offer still rests, untouched"
    );
    assert_eq!(market.hub_state(0).book.len(), 1);
    // A fill-or-kill that fits is filled whole.
    market.offer(B, (ETH, 1_000), (USD, 3_000), FillOrKill, LONG);
    market.assert_consistent();
    assert_eq!(market.positions()[B][0] - before[B][0], 3_000);
    assert!(market.hub_state(0).book.is_empty());
    assert_eq!(market.hub_net(), [0, 0]);
}

#[test]
fn an_expired_offer_is_released_by_the_hub_and_never_matched() {
    let mut market = Market::new(true);
    let a = market.offer(A, (USD, 3_000), (ETH, 1_000), GoodTillCancel, 60_000);
    assert_eq!(market.hold(A, USD), 3_000);
    market.tick(60_000);
    market.assert_consistent();
    assert_eq!(market.hold(A, USD), 0, "released once expired");
    assert!(market.hub_state(0).book.is_empty());
    assert!(
        market
            .entity_events(0)
            .any(|e| matches!(e, EntityEvent::SwapExpired { offer_id, .. } if *offer_id == a))
    );
    assert!(
        market
            .entity_events(market.wallet_runtime(A))
            .any(|e| matches!(e, EntityEvent::SwapCancelled { offer_id, .. } if *offer_id == a))
    );
    // B's crossing offer finds nothing.
    let before = market.positions();
    market.offer(B, (ETH, 1_000), (USD, 3_000), ImmediateOrCancel, LONG);
    market.assert_consistent();
    assert_eq!(market.positions(), before);

    // An offer about to expire (within the hub's margin) rests but is not matched.
    market.offer(A, (USD, 3_000), (ETH, 1_000), GoodTillCancel, 5_000);
    market.offer(B, (ETH, 1_000), (USD, 3_000), ImmediateOrCancel, LONG);
    market.assert_consistent();
    assert_eq!(market.positions(), before);
    market.tick(5_000);
    market.assert_consistent();
    assert_eq!(market.wallet_account(A).state().total_holds(), 0);
    assert_eq!(market.dropped_legs(), 0);
}

/// The reason wallet `w`'s entity refused its last submission, if it did.
fn refusal(market: &Market, w: usize, since: usize) -> Option<EntityTxError> {
    let at = market.wallet_runtime(w);
    market.events[since..].iter().find_map(|(i, e)| match e {
        RuntimeEvent::TxDropped { error, .. } if *i == at => Some(error.clone()),
        _ => None,
    })
}

#[test]
fn a_bad_offer_or_cancel_is_refused_with_the_accounts_reason_and_changes_nothing() {
    use crate::account::TxError;
    let mut market = Market::new(false);
    let state = |market: &Market| {
        let account = market.wallet_account(A);
        let entity = market.runtimes[market.wallet_runtime(A)]
            .replica_of(&market.wallets[A])
            .unwrap()
            .state();
        (
            account.state().hash(),
            account.height(),
            account.mempool().len(),
            entity.next_offer_id,
        )
    };
    let before = state(&market);
    let unknown_token = 9;
    let cases = [
        (
            (USD, 2 * HUB_CREDIT),
            (ETH, 1),
            LONG as i64,
            TxError::InsufficientCapacity {
                token: USD,
                amount: 2 * HUB_CREDIT,
                available: HUB_CREDIT,
            },
        ),
        ((USD, 0), (ETH, 1), LONG as i64, TxError::ZeroAmount),
        (
            (USD, 1),
            (unknown_token, 1),
            LONG as i64,
            TxError::UnknownToken(unknown_token),
        ),
        ((USD, u128::MAX), (ETH, 1), LONG as i64, TxError::Overflow),
        ((USD, 1), (ETH, 1), -1, TxError::OfferExpiryInPast),
    ];
    for (give, want, expires_in, expected) in cases {
        let since = market.events.len();
        let order = SwapOrder {
            peer: market.hub,
            give_token: give.0,
            give_amount: give.1,
            want_token: want.0,
            want_amount: want.1,
            // The offer is placed at the next input's time, 10 ms on.
            expires_at_ms: market.now.saturating_add_signed(10 + expires_in),
            time_in_force: GoodTillCancel,
        };
        market.submit_wallet(A, vec![EntityTx::PlaceSwap(order)]);
        assert_eq!(
            refusal(&market, A, since),
            Some(EntityTxError::AccountTxRefused {
                peer: market.hub,
                error: expected.clone()
            }),
            "{expected:?}"
        );
        assert_eq!(state(&market), before, "{expected:?} changed something");
    }
    // A cancel of an offer that does not exist changes nothing either.
    market.submit_wallet(
        A,
        vec![EntityTx::Account {
            peer: market.hub,
            tx: AccountTx::SwapCancel { offer_id: 40 },
        }],
    );
    // The entity queues it and the account drops it when the frame is built; the check a
    // node makes before submitting gives the reason.
    let entity = market.runtimes[market.wallet_runtime(A)]
        .replica_of(&market.wallets[A])
        .unwrap()
        .state();
    assert_eq!(
        entity.check_account_tx(&market.hub, &AccountTx::SwapCancel { offer_id: 40 }),
        Err(EntityTxError::AccountTxRefused {
            peer: market.hub,
            error: TxError::UnknownOffer(40)
        })
    );
    assert_eq!(state(&market), before);
    // The refusals used up no offer id: the first good offer gets the first id.
    let id = market.offer(A, (USD, 10), (ETH, 10), GoodTillCancel, LONG);
    assert!(id < 2, "offer id {id}");
    market.assert_consistent();
}

// ---- property: random offers, cancels and time through one hub ----

#[derive(Debug, Clone)]
enum Op {
    Offer {
        wallet: usize,
        usd_for_eth: bool,
        give: u128,
        want: u128,
        tif: TimeInForce,
        expires_in: u64,
    },
    Cancel {
        wallet: usize,
        pick: usize,
    },
    Tick {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let tif = prop_oneof![
        3 => Just(GoodTillCancel),
        1 => Just(ImmediateOrCancel),
        1 => Just(FillOrKill),
    ];
    // Prices near 1 so that offers often cross; some tiny amounts so that rounding matters.
    let amounts = prop_oneof![
        3 => (1u128..5_000, 70u128..140).prop_map(|(give, pct)| (give, (give * pct / 100).max(1))),
        1 => (1u128..20, 1u128..20),
    ];
    prop_oneof![
        6 => (0usize..2, any::<bool>(), amounts, tif, 20_000u64..200_000)
            .prop_map(|(wallet, usd_for_eth, (give, want), tif, expires_in)| Op::Offer {
                wallet, usd_for_eth, give, want, tif, expires_in,
            }),
        1 => (0usize..2, any::<usize>()).prop_map(|(wallet, pick)| Op::Cancel { wallet, pick }),
        1 => (1_000u64..60_000).prop_map(|ms| Op::Tick { ms }),
    ]
}

fn run(ops: Vec<Op>) {
    let mut market = Market::new(false);
    for op in ops {
        match op {
            Op::Offer {
                wallet,
                usd_for_eth,
                give,
                want,
                tif,
                expires_in,
            } => {
                let (give_token, want_token) = if usd_for_eth { (USD, ETH) } else { (ETH, USD) };
                market.offer(
                    wallet,
                    (give_token, give),
                    (want_token, want),
                    tif,
                    expires_in,
                );
            }
            Op::Cancel { wallet, pick } => {
                let open: Vec<u64> = market
                    .wallet_account(wallet)
                    .state()
                    .offers
                    .keys()
                    .copied()
                    .collect();
                if !open.is_empty() {
                    market.cancel(wallet, open[pick % open.len()]);
                }
            }
            Op::Tick { ms } => market.tick(ms),
        }
        market.assert_consistent();
        // Nothing raced on a perfect network: every leg of every match went through (a resolve
        // beyond either limit or any capacity would have been refused and reported as a
        // dropped leg), so the hub passed on exactly what it took.
        assert_eq!(market.dropped_legs(), 0);
        assert_eq!(market.hub_net(), [0, 0], "the hub created or lost tokens");
    }
    // Past every expiry, every hold is released.
    market.tick(200_000);
    market.tick(1_000);
    market.assert_consistent();
    for w in [A, B] {
        assert_eq!(market.wallet_account(w).state().total_holds(), 0);
    }
    assert!(market.hub_state(0).book.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_offers_cancels_and_time_keep_every_account_sound(
        ops in proptest::collection::vec(op(), 1..20),
    ) {
        run(ops);
    }
}

// ---- the two legs of a match: the makers' first, the taker's once they committed ----

/// A maker that can beat the hub's resolve with its own cancel (it is LEFT in its account
/// with the hub, so its frame wins when both propose at once), and the other wallet.
fn maker_and_taker(market: &Market) -> (usize, usize) {
    let maker = [A, B]
        .into_iter()
        .find(|w| market.wallet_account(*w).side() == Side::Left)
        .expect("a wallet is LEFT in its account with the hub");
    (maker, 1 - maker)
}

/// What each wallet's position moved by since `before`, per token (USD, ETH).
fn moved(market: &Market, before: [[i128; 2]; 2]) -> [[i128; 2]; 2] {
    let after = market.positions();
    [0, 1].map(|w| [0, 1].map(|t| after[w][t] - before[w][t]))
}

fn assert_hub_lost_nothing(market: &Market) {
    for (token, net) in [USD, ETH].iter().zip(market.hub_net()) {
        assert!(net >= 0, "the hub lost {} of token {token}", -net);
    }
}

/// The hub's account frames that committed a resolve of ours, in order: the peer of each.
fn resolves_committed(market: &Market) -> Vec<EntityId> {
    market
        .entity_events(0)
        .filter_map(|e| match e {
            EntityEvent::Account {
                peer,
                event: crate::account::AccountEvent::Committed { txs, by_left, .. },
            } if *by_left == (market.hub_state(0).accounts[peer].account.side() == Side::Left)
                && txs
                    .iter()
                    .any(|tx| matches!(tx, AccountTx::SwapResolve { .. })) =>
            {
                Some(*peer)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_maker_that_cancels_before_its_leg_commits_cannot_make_the_hub_pay_the_taker() {
    let mut market = Market::new(false);
    let (maker, taker) = maker_and_taker(&market);
    let before = market.positions();
    // The maker rests an absurd price: 3,000 ETH for 1 USD; its accomplice takes it.
    let offer = market.offer(maker, (ETH, 3_000), (USD, 1), GoodTillCancel, LONG);
    market.hold_wallet(maker);
    market.offer(taker, (USD, 1), (ETH, 3_000), ImmediateOrCancel, LONG);
    // The maker does not answer: the taker's leg waits for the maker's.
    assert_hub_lost_nothing(&market);
    assert_eq!(
        moved(&market, before)[taker],
        [0, 0],
        "the taker got nothing"
    );
    assert_eq!(market.hold(taker, USD), 1, "its offer is still open");
    // The maker cancels: its frame wins over the hub's, whose resolve is then dropped.
    market.cancel(maker, offer);
    assert_hub_lost_nothing(&market);
    market.release();
    market.assert_consistent();
    assert_eq!(market.dropped_legs(), 1, "the maker's leg was dropped");
    assert_eq!(moved(&market, before), [[0, 0], [0, 0]], "nothing traded");
    assert_eq!(market.hub_net(), [0, 0]);
    for w in [maker, taker] {
        assert_eq!(market.wallet_account(w).state().total_holds(), 0);
        assert!(market.wallet_account(w).state().offers.is_empty());
    }
    assert!(market.hub_state(0).book.is_empty());
    assert!(market.hub_state(0).swap_legs.is_empty());
}

#[test]
fn the_takers_leg_is_resolved_after_the_makers_committed() {
    let mut market = Market::new(true);
    let (maker, taker) = (A, B);
    let before = market.positions();
    market.offer(maker, (ETH, 1_000), (USD, 3_000), GoodTillCancel, LONG);
    market.hold_wallet(maker);
    market.offer(taker, (USD, 3_300), (ETH, 1_000), ImmediateOrCancel, LONG);
    assert_eq!(
        moved(&market, before)[taker],
        [0, 0],
        "the taker's leg waits"
    );
    assert_eq!(market.hold(taker, USD), 3_300);
    market.release();
    market.assert_consistent();
    // Both legs filled, at the maker's price: the taker got the improvement.
    let moved = moved(&market, before);
    assert_eq!(moved[maker], [3_000, -1_000]);
    assert_eq!(moved[taker], [-3_000, 1_000]);
    assert_eq!(market.hub_net(), [0, 0]);
    assert_eq!(market.dropped_legs(), 0);
    assert_eq!(market.hold(taker, USD), 0);
    assert_eq!(
        resolves_committed(&market),
        vec![market.wallets[maker], market.wallets[taker]],
        "the maker's leg first"
    );
    assert!(market.hub_state(0).swap_legs.is_empty());
}

/// Two resting offers of the maker match one taker; the maker cancels the first before its
/// leg commits. The taker gets what the second delivered.
fn partly_dropped(time_in_force: TimeInForce) -> (Market, usize, usize, [[i128; 2]; 2]) {
    let mut market = Market::new(false);
    let (maker, taker) = maker_and_taker(&market);
    let before = market.positions();
    let first = market.offer(maker, (ETH, 500), (USD, 1_000), GoodTillCancel, LONG);
    market.offer(maker, (ETH, 600), (USD, 1_200), GoodTillCancel, LONG);
    market.hold_wallet(maker);
    market.offer(taker, (USD, 2_200), (ETH, 1_100), time_in_force, LONG);
    assert_eq!(market.dropped_legs(), 0);
    assert_eq!(
        moved(&market, before)[taker],
        [0, 0],
        "the taker's leg waits"
    );
    market.cancel(maker, first);
    market.release();
    market.assert_consistent();
    assert_eq!(market.dropped_legs(), 1);
    let moved = moved(&market, before);
    assert_eq!(moved[maker], [1_200, -600], "the second offer traded");
    assert!(market.hub_state(0).swap_legs.is_empty());
    (market, maker, taker, moved)
}

#[test]
fn a_taker_whose_makers_partly_dropped_gets_only_what_the_others_delivered() {
    for time_in_force in [ImmediateOrCancel, GoodTillCancel] {
        let (mut market, _, taker, moved) = partly_dropped(time_in_force);
        assert_eq!(moved[taker], [-1_200, 600], "{time_in_force:?}");
        assert_eq!(market.hub_net(), [0, 0], "{time_in_force:?}");
        let left = if time_in_force == GoodTillCancel {
            // The part that was not delivered is not booked again: it stays on hold in the
            // taker's offer until the taker cancels it (or it expires).
            assert!(market.hub_state(0).book.is_empty());
            1_000
        } else {
            0
        };
        assert_eq!(market.hold(taker, USD), left, "{time_in_force:?}");
        if let Some(offer) = market.wallet_account(taker).state().offers.keys().next() {
            let offer = *offer;
            market.cancel(taker, offer);
            market.assert_consistent();
        }
        assert_eq!(market.hold(taker, USD), 0, "{time_in_force:?}");
    }
}

#[test]
fn a_fill_or_kill_taker_whose_makers_partly_dropped_is_cancelled_untouched() {
    let (market, maker, taker, moved) = partly_dropped(FillOrKill);
    assert_eq!(moved[taker], [0, 0]);
    assert_eq!(market.hold(taker, USD), 0);
    assert!(market.wallet_account(taker).state().offers.is_empty());
    // The hub holds the trade the maker chose, at the maker's price.
    assert_eq!(market.hub_net(), moved[maker].map(|m| -m));
}

#[test]
fn what_a_held_back_take_will_pay_is_not_promised_twice() {
    let mut market = Market::new(false);
    let (maker, taker) = (A, B);
    let before = market.positions();
    market.offer(maker, (ETH, 3_000), (USD, 300), GoodTillCancel, LONG);
    market.offer(maker, (ETH, 3_000), (USD, 300), GoodTillCancel, LONG);
    market.hold_wallet(maker);
    // The hub can owe the taker WALLET_CREDIT (4,000) ETH: 3,000 go to the first take, which
    // waits for the maker; only 1,000 are left for the second.
    market.offer(taker, (USD, 300), (ETH, 3_000), ImmediateOrCancel, LONG);
    market.offer(taker, (USD, 300), (ETH, 3_000), ImmediateOrCancel, LONG);
    market.release();
    market.assert_consistent();
    assert_eq!(market.dropped_legs(), 0, "every leg went through");
    assert_eq!(moved(&market, before)[taker], [-400, 4_000]);
    assert_eq!(market.hub_net(), [0, 0]);
    assert_eq!(market.hold(taker, USD), 0);
}
