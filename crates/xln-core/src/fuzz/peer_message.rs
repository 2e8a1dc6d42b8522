//! `peer_message`: what a peer can send a node, decoded and handed to the checks a node
//! applies. Entity A's runtime holds an account with B (payments made both ways, a lock of A's
//! in flight); every input is a message from B's session, which the transport authenticated
//! (so `from` is B's replica whatever the bytes say).
//!
//! The first byte picks the mode, the rest is its data:
//! - 0: the data is a [`WireMessage`] as the node's websocket transport decodes it (postcard): an
//!   envelope for A's runtime, or a signed profile for the gossip store;
//! - 1: the data is a [`ForgedFrame`]: B, byzantine but holding its real key, signs a frame
//!   of any transactions on top of the committed state (with the right state hash unless the
//!   data gives one), which reaches A's checks past the signature;
//! - 2: the data is a `Profile` that B signs with its real key, for the gossip checks past the
//!   signature and routing over what they let in;
//! - 3: a stranger's first contact: the next byte picks one of two strangers (ids on either
//!   side of A's) and whether it signs, the rest is a [`ForgedFrame`] on a fresh account;
//! - any other: as 0.
//!
//! Checks: nothing panics; a rejected message leaves A's runtime exactly as it was (same state
//! hash) and sends nothing; an accepted one never lowers A's worth nor raises A's holds (B
//! knows no secret of A's lock), never changes the credit A extends, opens no account unless
//! its sender signed, and leaves A's account in the state the sender's frame promised. A profile is merged only if it verifies; merged again it is
//! already held; a refused one leaves the store as it was; routes found over the store are
//! well formed.

use super::account_consistency::{Net, Node, START_MS, TOKEN, Template};
use crate::account::{AccountMessage, AccountTx, Clock, FrameAck, SignedFrame};
use crate::board::{EntityId, QuorumSignature};
use crate::codec::{decode, encode};
use crate::crypto::{Hash, keccak256};
use crate::delta::Side;
use crate::entity::{EntityMessage, EntityTx, PaymentOrder, RouteHop};
use crate::gossip::{MergeOutcome, Profile, ProfileAccount, ProfileStore, SignedProfile};
use crate::onion::Preimage;
use crate::routing::{FeePolicy, Graph, find_routes};
use crate::runtime::{Envelope, Payload, Runtime, RuntimeEvent, RuntimeInput, WireMessage};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// A frame B signs with its real key, described relative to the committed state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForgedFrame {
    pub txs: Vec<AccountTx>,
    /// Added to the next height.
    pub height_offset: i8,
    /// Added to A's clock.
    pub timestamp_offset_ms: i32,
    pub j_height: u64,
    /// Claim the other side as proposer.
    pub flip_side: bool,
    /// `None`: the hash of the state the transactions lead to (applied as far as they go).
    pub state_hash: Option<Hash>,
    /// An ACK to carry, signed by B too.
    pub ack: Option<(u64, Hash)>,
}

const A: usize = 0;
const B: usize = 1;

struct Setup {
    template: Template,
    /// The profiles of A and B, as the store holds them before each input.
    store: ProfileStore,
    /// What B sent A, in order; the last was not delivered.
    sent_by_b: Vec<Envelope>,
    profiles: Vec<SignedProfile>,
    /// Entities A has never heard of: the first LEFT of A, the second RIGHT of it.
    strangers: [Node; 2],
}

/// A single-signer entity of the key bytes `b`.
fn node_of(b: u8) -> Node {
    let key = crate::crypto::SignerKey::from_bytes(&[b; 32])
        .unwrap_or_else(|_| unreachable!("valid test key"));
    let board = crate::board::Board::single(key.address());
    let id = board.lazy_entity_id();
    Node { key, board, id }
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let mut net = Net::new(&[0x51, 0x52]);
        let mut sent_by_b = Vec::new();
        let (ida, idb) = (net.nodes[A].id, net.nodes[B].id);
        net.connect(A, B);
        // Payments both ways, each delivered step by step to capture B's messages.
        let pay = |amount| EntityTx::Account {
            peer: idb,
            tx: AccountTx::DirectPayment {
                token: TOKEN,
                amount,
            },
        };
        net.submit(A, vec![pay(1_000)]);
        drain_capturing(&mut net, &mut sent_by_b);
        net.submit(
            B,
            vec![EntityTx::Account {
                peer: ida,
                tx: AccountTx::DirectPayment {
                    token: TOKEN,
                    amount: 300,
                },
            }],
        );
        drain_capturing(&mut net, &mut sent_by_b);
        let order = PaymentOrder {
            token: TOKEN,
            amount: 200,
            route: vec![RouteHop {
                entity: idb,
                key: net.nodes[B].key.public_key(),
                fee: FeePolicy::default(),
            }],
            preimage: Preimage([0x77; 32]),
            seed: [0x78; 32],
        };
        net.submit(A, vec![EntityTx::Pay(Box::new(order))]);
        drain_capturing(&mut net, &mut sent_by_b);
        // A lock of A's whose onion B cannot open: B ACKs it and proposes to cancel it. A
        // gets the ACK only, so the lock stays in flight on A's side.
        let lock_id = if ida.is_left_of(&idb) {
            1_000_000
        } else {
            1_000_001
        };
        let lock = AccountTx::HtlcLock {
            lock_id,
            // No input can hold its preimage: B can only cancel this lock.
            hashlock: keccak256(b"xln fuzz: a secret B never learns"),
            token: TOKEN,
            amount: 150,
            expires_at_ms: net.now + 60_000,
            reveal_before_j_height: 20,
            payload: vec![0xee; 80],
        };
        net.submit(
            A,
            vec![EntityTx::Account {
                peer: idb,
                tx: lock,
            }],
        );
        deliver_capturing(&mut net, &mut sent_by_b);
        assert_eq!(
            net.wire.len(),
            2,
            "B answers with an ACK, then a cancellation"
        );
        deliver_capturing(&mut net, &mut sent_by_b);
        let cancel = net
            .wire
            .pop_front()
            .unwrap_or_else(|| unreachable!("checked above"));
        assert!(net.wire.is_empty(), "A had nothing to say to the ACK");
        sent_by_b.push(cancel);
        let profiles: Vec<SignedProfile> = (0..2).map(|at| profile_of(&net, at)).collect();
        let mut store = ProfileStore::new();
        for profile in &profiles {
            store
                .merge(profile.clone(), net.now)
                .unwrap_or_else(|e| panic!("an honest profile was refused: {e}"));
        }
        let a = net.nodes[A].id;
        let left = (0x60..=0xff).map(node_of).find(|n| n.id.is_left_of(&a));
        let right = (0x60..=0xff).map(node_of).find(|n| a.is_left_of(&n.id));
        let (Some(left), Some(right)) = (left, right) else {
            unreachable!("ids on both sides of A among 160 keys")
        };
        Setup {
            template: net.template(),
            store,
            sent_by_b,
            profiles,
            strangers: [left, right],
        }
    })
}

/// Delivers the oldest message, keeping a copy if B sent it.
fn deliver_capturing(net: &mut Net, sent: &mut Vec<Envelope>) {
    let b = net.nodes[B].replica();
    if let Some(front) = net.wire.front().filter(|e| e.from == b) {
        sent.push(front.clone());
    }
    net.deliver(0);
}

fn drain_capturing(net: &mut Net, sent: &mut Vec<Envelope>) {
    while !net.wire.is_empty() {
        deliver_capturing(net, sent);
    }
}

/// The signed profile of node `at`, with its real capacities.
fn profile_of(net: &Net, at: usize) -> SignedProfile {
    let node: &Node = &net.nodes[at];
    let accounts = net
        .entity(at)
        .accounts
        .iter()
        .map(|(peer, entry)| {
            let caps = entry
                .account
                .state()
                .capacities(TOKEN, entry.account.side())
                .unwrap_or_else(|_| panic!("capacities out of range"));
            ProfileAccount {
                peer: *peer,
                token: TOKEN,
                out_capacity: caps.out_capacity,
                in_capacity: caps.in_capacity,
            }
        })
        .collect();
    let profile = Profile {
        entity_id: node.id,
        board: node.board.clone(),
        onion_key: node.key.public_key(),
        name: format!("node {at}"),
        endpoint: format!("ws://127.0.0.1:{}", 9_000 + at),
        is_hub: at == B,
        fee_base: 1,
        fee_ppm: 1_000,
        accounts,
        updated_at: net.now - 1_000,
    };
    let signature = QuorumSignature(vec![node.key.sign(&profile.digest())]);
    SignedProfile { profile, signature }
}

pub fn peer_message(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => raw(rest),
        1 => {
            if let Ok(forged) = decode::<ForgedFrame>("forged frame", rest) {
                let _ = deliver_forged(&forged, &setup().template.nodes[B], true);
            }
        }
        2 => {
            if let Ok(profile) = decode::<Profile>("profile", rest) {
                merge_checked(sign_as_b(profile));
            }
        }
        3 => {
            let Some((&who, rest)) = rest.split_first() else {
                return;
            };
            if let Ok(forged) = decode::<ForgedFrame>("forged frame", rest) {
                let stranger = &setup().strangers[usize::from(who & 1)];
                let _ = deliver_forged(&forged, stranger, who & 2 == 0);
            }
        }
        _ => raw(rest),
    }
}

fn raw(bytes: &[u8]) {
    match decode::<WireMessage>("wire message", bytes) {
        Ok(WireMessage::Envelope(envelope)) => {
            let b = &setup().template.nodes[B];
            deliver_checked(envelope, b, false, None);
        }
        Ok(WireMessage::Profile(profile)) => merge_checked(profile),
        Ok(WireMessage::Positions(share)) => check_share(&share),
        Err(_) => {}
    }
}

/// A node keeps a peer's netting positions as evidence only: checking them, and proposing over
/// those that verify, must not panic, whatever they hold.
fn check_share(share: &crate::netting::PositionShare) {
    use crate::netting::{PositionSet, propose};
    let boards = share
        .boards
        .iter()
        .map(|board| (board.lazy_entity_id(), board.clone()))
        .collect();
    let domain = share.positions.first().map_or(Hash::ZERO, |p| p.key.domain);
    for position in &share.positions {
        let _ = position.verify(domain, &boards);
    }
    if let Ok(set) = PositionSet::verify(domain, &share.positions, &boards) {
        for token in 0..3 {
            let _ = propose(&set, token);
        }
    }
}

fn sign_as_b(mut profile: Profile) -> SignedProfile {
    let b = &setup().template.nodes[B];
    profile.entity_id = b.id;
    profile.board = b.board.clone();
    let signature = QuorumSignature(vec![b.key.sign(&profile.digest())]);
    SignedProfile { profile, signature }
}

/// Delivers `envelope` from the session of `sender` (B or a stranger) to A's runtime and checks
/// what it did. `signed`: the sender signed (it may open an account). `promised`: the height
/// and state of the account that the sender's frame leads to. Says whether A took it.
fn deliver_checked(
    mut envelope: Envelope,
    sender: &Node,
    signed: bool,
    promised: Option<(u64, Hash)>,
) -> bool {
    let s = setup();
    let t = &s.template;
    let a = &t.nodes[A];
    envelope.from = sender.replica();
    let mut runtime = Runtime::from_state([a.key.clone()], t.states[A].clone());
    let before = runtime.state().hash();
    let view = AView::of(&runtime, a.id, sender.id);
    let peers_before = peers_of(&runtime, a.id);
    let out = runtime.apply(RuntimeInput {
        timestamp: t.now,
        messages: vec![envelope],
        ..RuntimeInput::default()
    });
    let rejected = out.events.iter().any(|event| match event {
        RuntimeEvent::Rejected(_) => true,
        RuntimeEvent::TxDropped { tx, .. } => matches!(**tx, EntityTx::AccountInput { .. }),
        _ => false,
    });
    if rejected || out.messages.is_empty() && runtime.state().hash() == before {
        assert_eq!(
            runtime.state().hash(),
            before,
            "a rejected message changed the state: {:?}",
            out.events
        );
        assert!(out.messages.is_empty(), "a rejected message was answered");
        return false;
    }
    // Only the sender's own signature can open its account (the corpus holds no other key).
    let mut peers_expected = peers_before;
    if signed && !peers_expected.contains(&sender.id) {
        peers_expected.push(sender.id);
        peers_expected.sort();
    }
    let peers_after = peers_of(&runtime, a.id);
    assert!(
        peers_after.iter().all(|p| peers_expected.contains(p)),
        "a message opened an account nobody signed for"
    );
    let after = AView::of(&runtime, a.id, sender.id);
    assert!(
        after.worth >= view.worth,
        "the sender took value from A: {} → {}",
        view.worth,
        after.worth
    );
    assert!(
        after.own_hold <= view.own_hold,
        "the sender put a hold on A's side: {} → {}",
        view.own_hold,
        after.own_hold
    );
    assert_eq!(
        after.credit_to_b, view.credit_to_b,
        "the sender changed the credit A extends"
    );
    assert!(after.height >= view.height, "the account went back");
    if let Some((height, state_hash)) = promised
        && after.height == height
    {
        assert_eq!(
            after.state_hash, state_hash,
            "A committed another state than the sender's frame promised"
        );
    }
    true
}

fn peers_of(runtime: &Runtime, a: EntityId) -> Vec<EntityId> {
    runtime
        .replica_of(&a)
        .map(|r| r.state().accounts.keys().copied().collect())
        .unwrap_or_default()
}

/// What A's side of the account with B looks like.
struct AView {
    worth: i128,
    own_hold: u128,
    credit_to_b: u128,
    height: u64,
    state_hash: Hash,
}

impl AView {
    /// A's account with `b`; a fresh one's if there is none.
    fn of(runtime: &Runtime, a: EntityId, b: EntityId) -> Self {
        let Some(entry) = runtime
            .replica_of(&a)
            .and_then(|r| r.state().accounts.get(&b))
        else {
            return AView {
                worth: 0,
                own_hold: 0,
                credit_to_b: 0,
                height: 0,
                state_hash: Hash::ZERO,
            };
        };
        let account = &entry.account;
        let state = account.state();
        let delta = state.deltas.get(&TOKEN).cloned().unwrap_or_default();
        let total = delta
            .total()
            .unwrap_or_else(|_| panic!("Δ out of range in a committed state"));
        let (worth, own_hold, credit_to_b) = match account.side() {
            Side::Left => (total, delta.left_hold, delta.right_credit_limit),
            Side::Right => (-total, delta.right_hold, delta.left_credit_limit),
        };
        AView {
            worth,
            own_hold,
            credit_to_b,
            height: account.height(),
            state_hash: state.hash(),
        }
    }
}

/// Delivers the frame `forged` describes, from `sender` (signed by its key if `signed`), on
/// top of A's committed account with it (a fresh one if A has none).
fn deliver_forged(forged: &ForgedFrame, sender: &Node, signed: bool) -> bool {
    let s = setup();
    let t = &s.template;
    let a = &t.nodes[A];
    let fresh;
    let account = match t.states[A]
        .replicas
        .get(&a.replica())
        .and_then(|r| r.state().accounts.get(&sender.id))
    {
        Some(entry) => &entry.account,
        None => {
            fresh = crate::account::Account::new(Hash::ZERO, a.id, sender.id)
                .unwrap_or_else(|e| panic!("{e}"));
            &fresh
        }
    };
    let sender_side = account.side().peer();
    let height = (account.height() + 1).saturating_add_signed(i64::from(forged.height_offset));
    let timestamp = t
        .now
        .saturating_add_signed(i64::from(forged.timestamp_offset_ms));
    let clock = Clock {
        timestamp,
        j_height: forged.j_height,
    };
    let mut state = account.state().clone();
    for tx in &forged.txs {
        let _ = state.apply(tx, sender_side, clock);
    }
    let frame = crate::account::Frame {
        height,
        timestamp,
        j_height: forged.j_height,
        txs: forged.txs.clone(),
        prev_frame_hash: account.last_frame_hash(),
        state_hash: forged.state_hash.unwrap_or_else(|| state.hash()),
        by_left: (sender_side == Side::Left) != forged.flip_side,
    };
    let sign = |digest: &Hash| {
        QuorumSignature(if signed {
            vec![sender.key.sign(digest)]
        } else {
            Vec::new()
        })
    };
    let frame_hash = frame.hash(account.key());
    let message = AccountMessage {
        from: sender.id,
        to: a.id,
        ack: forged.ack.map(|(height, frame_hash)| FrameAck {
            height,
            frame_hash,
            signature: sign(&frame_hash),
        }),
        proposal: Some(SignedFrame {
            signature: sign(&frame_hash),
            frame,
        }),
    };
    let envelope = Envelope {
        from: sender.replica(),
        to: a.replica(),
        payload: Payload::Account {
            message,
            sender_board: sender.board.clone(),
        },
    };
    deliver_checked(envelope, sender, signed, Some((height, state.hash())))
}

fn merge_checked(profile: SignedProfile) {
    let s = setup();
    let now = s.template.now;
    let verified = profile.verify(now);
    if profile.profile.check_well_formed().is_err() {
        assert!(verified.is_err(), "a malformed profile verified");
    }
    let mut store = s.store.clone();
    match store.merge(profile.clone(), now) {
        Ok(_) => {
            assert!(verified.is_ok(), "merged a profile that does not verify");
            assert_eq!(
                store.get(&profile.entity_id()),
                Some(&profile),
                "merged but not held"
            );
            assert_eq!(
                store.merge(profile.clone(), now),
                Ok(MergeOutcome::AlreadyHeld),
                "merging twice is not idempotent"
            );
        }
        Err(_) => assert_eq!(store, s.store, "a refused profile changed the store"),
    }
    // Routing over what the store let in: every listed account, for its capacity.
    let graph = Graph::from_profiles(store.profiles());
    let source = profile.entity_id();
    for account in profile.profile.accounts.iter().take(8) {
        for amount in [1, account.out_capacity] {
            let Ok(routes) = find_routes(&graph, &source, &account.peer, account.token, amount, 3)
            else {
                continue;
            };
            for route in routes {
                assert_eq!(route.hops.first(), Some(&source), "a route from elsewhere");
                assert_eq!(
                    route.hops.last(),
                    Some(&account.peer),
                    "a route to elsewhere"
                );
                assert_eq!(
                    route.amounts.len() + 1,
                    route.hops.len(),
                    "amounts per edge"
                );
                assert_eq!(route.amounts.last(), Some(&amount), "the amount delivered");
                let mut seen = std::collections::BTreeSet::new();
                assert!(
                    route.hops.iter().all(|h| seen.insert(*h)),
                    "a route with a loop"
                );
            }
        }
    }
}

/// Starting points for the corpus: every message B sent during the setup (all stale now but
/// the last), both profiles, a few forged frames and a profile to sign.
pub(crate) fn seeds() -> Vec<Vec<u8>> {
    let s = setup();
    let mut seeds = Vec::new();
    for envelope in &s.sent_by_b {
        seeds.push(
            [
                &[0u8][..],
                &encode(&WireMessage::Envelope(envelope.clone())),
            ]
            .concat(),
        );
    }
    for profile in &s.profiles {
        seeds.push([&[0u8][..], &encode(&WireMessage::Profile(profile.clone()))].concat());
        seeds.push([&[2u8][..], &encode(&profile.profile)].concat());
    }
    let t = &s.template;
    let a = t.nodes[A].id;
    let lock_id = if a.is_left_of(&t.nodes[B].id) {
        1_000_000
    } else {
        1_000_001
    };
    let forged = |txs: Vec<AccountTx>| ForgedFrame {
        txs,
        height_offset: 0,
        timestamp_offset_ms: 0,
        j_height: 0,
        flip_side: false,
        state_hash: None,
        ack: None,
    };
    let frames = [
        forged(vec![AccountTx::DirectPayment {
            token: TOKEN,
            amount: 5,
        }]),
        forged(vec![AccountTx::HtlcResolve {
            lock_id,
            resolution: crate::account::HtlcResolution::Secret([0x79; 32]),
        }]),
        forged(vec![AccountTx::HtlcLock {
            lock_id: lock_id + 1,
            hashlock: keccak256(&[1; 32]),
            token: TOKEN,
            amount: 10,
            expires_at_ms: START_MS + 100_000,
            reveal_before_j_height: 20,
            payload: vec![0; 60],
        }]),
        forged(vec![AccountTx::SetCreditLimit {
            token: TOKEN,
            amount: 1,
        }]),
    ];
    for frame in &frames {
        seeds.push([&[1u8][..], &encode(frame)].concat());
    }
    for who in 0u8..4 {
        seeds.push([&[3u8, who][..], &encode(&frames[3])].concat());
    }
    for envelope in catch_up_messages() {
        seeds.push([&[0u8][..], &encode(&WireMessage::Envelope(envelope))].concat());
    }
    seeds
}

/// What a board member that fell behind sends and is sent, from B to A (B is not on A's board).
fn catch_up_messages() -> Vec<Envelope> {
    let t = &setup().template;
    let replica = t.nodes[A].replica();
    let state = t.states[A].replicas[&replica].state().clone();
    let frame = crate::entity::EntityFrame {
        height: state.height + 1,
        timestamp: state.timestamp,
        txs: Vec::new(),
        prev_hash: state.prev_hash,
        state_hash: state.hash(),
    };
    [
        EntityMessage::SyncRequest { from_height: 0 },
        EntityMessage::SyncReply {
            commits: Vec::new(),
            committed_height: 5,
        },
        EntityMessage::Snapshot {
            state: Box::new(state),
            commit: crate::entity::CommittedFrame {
                frame,
                certificate: QuorumSignature(Vec::new()),
            },
        },
        EntityMessage::SnapshotTooLarge {
            committed_height: 5,
            bytes: 5 << 20,
        },
    ]
    .into_iter()
    .map(|message| Envelope {
        from: t.nodes[B].replica(),
        to: t.nodes[A].replica(),
        payload: Payload::Entity(message),
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forged(txs: Vec<AccountTx>) -> ForgedFrame {
        ForgedFrame {
            txs,
            height_offset: 0,
            timestamp_offset_ms: 0,
            j_height: 0,
            flip_side: false,
            state_hash: None,
            ack: None,
        }
    }

    #[test]
    fn the_honest_next_message_is_taken_and_the_stale_ones_are_not() {
        let s = setup();
        let b = &s.template.nodes[B];
        let (last, stale) = s.sent_by_b.split_last().unwrap();
        assert!(stale.len() >= 4);
        for envelope in stale {
            assert!(!deliver_checked(envelope.clone(), b, false, None));
        }
        assert!(deliver_checked(last.clone(), b, false, None));
    }

    /// The height-0 hole (see `account::tests::a_proposal_of_height_zero_is_refused...`),
    /// through the target's stranger mode; a signed first frame still opens the account.
    #[test]
    fn a_stranger_opens_an_account_only_by_signing_its_first_frame() {
        let credit = vec![AccountTx::SetCreditLimit {
            token: TOKEN,
            amount: 10,
        }];
        for stranger in &setup().strangers {
            for height_offset in [-1, 0] {
                let mut frame = forged(credit.clone());
                frame.height_offset = height_offset;
                assert!(!deliver_forged(&frame, stranger, false));
            }
            assert!(deliver_forged(&forged(credit.clone()), stranger, true));
        }
    }

    #[test]
    fn catch_up_messages_from_outside_the_board_change_nothing_and_get_no_answer() {
        let b = &setup().template.nodes[B];
        for envelope in catch_up_messages() {
            assert!(!deliver_checked(envelope, b, false, None));
        }
    }

    #[test]
    fn a_forged_frame_of_valid_transactions_is_taken_and_an_invalid_one_is_not() {
        let b = &setup().template.nodes[B];
        let pay = |amount| AccountTx::DirectPayment {
            token: TOKEN,
            amount,
        };
        assert!(deliver_forged(&forged(vec![pay(5)]), b, true));
        // More than B can pay, a wrong state hash, a stale height, a frame from the future.
        assert!(!deliver_forged(&forged(vec![pay(10_000_000)]), b, true));
        let mut wrong = forged(vec![pay(5)]);
        wrong.state_hash = Some(Hash::ZERO);
        assert!(!deliver_forged(&wrong, b, true));
        let mut stale = forged(vec![pay(5)]);
        stale.height_offset = -2;
        assert!(!deliver_forged(&stale, b, true));
        let mut future = forged(vec![pay(5)]);
        future.timestamp_offset_ms = 60_000;
        assert!(!deliver_forged(&future, b, true));
    }
}
