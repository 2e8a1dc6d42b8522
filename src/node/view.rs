//! Builds the read-only [`NodeView`] from the entity's replicated state and what only the node
//! knows (peers, profiles, chain status, the log).

use crate::api::{
    AccountStatus, AccountTokenView, AccountView, BoardView, Direction, FrameSummary, HtlcView,
    PaymentView, ProfileView, ReserveView, StatusView, TokenTotals,
};
use std::collections::BTreeMap;
use xln_core::board::EntityId;
use xln_core::delta::{Side, TokenId};
use xln_core::entity::{EntityState, Origin, PaymentStatus};
use xln_core::gossip::ProfileStore;

pub fn board_view(state: &EntityState) -> BoardView {
    BoardView {
        threshold: state.board.threshold(),
        members: state
            .board
            .members()
            .iter()
            .map(|m| (m.signer, m.weight))
            .collect(),
    }
}

/// Per-token totals of what peers owe us and we owe them.
pub fn totals(accounts: &[AccountView]) -> Vec<TokenTotals> {
    let mut totals: BTreeMap<TokenId, TokenTotals> = BTreeMap::new();
    for token in accounts.iter().flat_map(|a| &a.tokens) {
        let entry = totals.entry(token.token).or_insert(TokenTotals {
            token: token.token,
            ..TokenTotals::default()
        });
        if token.position >= 0 {
            entry.owed_to_us = entry
                .owed_to_us
                .saturating_add(token.position.unsigned_abs());
        } else {
            entry.we_owe = entry.we_owe.saturating_add(token.position.unsigned_abs());
        }
    }
    totals.into_values().collect()
}

pub fn reserves(state: &EntityState) -> Vec<ReserveView> {
    state
        .reserves
        .iter()
        .map(|(token, amount)| ReserveView {
            token: *token,
            reserve: *amount,
            wallet: None,
        })
        .collect()
}

/// The accounts, each with the frames the node saw commit (newest last).
pub fn accounts(
    state: &EntityState,
    profiles: &ProfileStore,
    frames: &BTreeMap<EntityId, Vec<FrameSummary>>,
    disputed: &[EntityId],
) -> Vec<AccountView> {
    state
        .accounts
        .iter()
        .map(|(peer, entry)| {
            let account = &entry.account;
            let side = account.side();
            let tokens = account
                .state()
                .deltas
                .iter()
                .map(|(token, delta)| {
                    let caps = delta.capacities(side).unwrap_or_default();
                    let total = delta.ondelta.saturating_add(delta.offdelta);
                    let (own_credit, peer_credit, our_hold, peer_hold) = match side {
                        Side::Left => (
                            delta.right_credit_limit,
                            delta.left_credit_limit,
                            delta.left_hold,
                            delta.right_hold,
                        ),
                        Side::Right => (
                            delta.left_credit_limit,
                            delta.right_credit_limit,
                            delta.right_hold,
                            delta.left_hold,
                        ),
                    };
                    AccountTokenView {
                        token: *token,
                        collateral: delta.collateral,
                        ondelta: delta.ondelta,
                        offdelta: delta.offdelta,
                        delta: total,
                        position: match side {
                            Side::Left => total,
                            Side::Right => total.saturating_neg(),
                        },
                        own_credit,
                        peer_credit,
                        out_capacity: caps.out_capacity,
                        in_capacity: caps.in_capacity,
                        our_hold,
                        peer_hold,
                    }
                })
                .collect();
            let status = if disputed.contains(peer) {
                AccountStatus::Disputed
            } else if account.state().settlement.pending.is_some() {
                AccountStatus::Settling
            } else if account.pending().is_some() {
                AccountStatus::FramePending
            } else {
                AccountStatus::Synced
            };
            AccountView {
                peer: *peer,
                peer_name: profiles.get(peer).map(|p| p.profile.name.clone()),
                we_are_left: side == Side::Left,
                height: account.height(),
                state_hash: xln_core::codec::hash_of(account.state()),
                status,
                proof_height: account.proof().map(|p| p.header.height),
                queued: account.mempool().len(),
                tokens,
                frames: frames.get(peer).cloned().unwrap_or_default(),
            }
        })
        .collect()
}

pub fn htlcs(state: &EntityState) -> Vec<HtlcView> {
    let mut out = Vec::new();
    for (peer, entry) in &state.accounts {
        let account = &entry.account;
        for (lock_id, lock) in &account.state().locks {
            let outgoing = lock.sender == account.side();
            let key = (*peer, *lock_id);
            let what = if outgoing {
                match state.origins.get(&key) {
                    Some(Origin::Payment { .. }) => "sending",
                    Some(Origin::Forward { .. }) => "forwarding",
                    None => "outgoing",
                }
            } else if state.awaiting.contains_key(&key) {
                "awaiting onion"
            } else if state.receiving.contains_key(&key) {
                "receiving"
            } else {
                "forwarding"
            };
            out.push(HtlcView {
                peer: *peer,
                lock_id: *lock_id,
                direction: if outgoing {
                    Direction::Outgoing
                } else {
                    Direction::Incoming
                },
                token: lock.token,
                amount: lock.amount,
                hashlock: lock.hashlock,
                expires_at_ms: lock.expires_at_ms,
                reveal_before_block: lock.reveal_before_j_height,
                state: what.to_string(),
            });
        }
    }
    out
}

/// Our payments, newest first by start time (`started` is what the node recorded).
pub fn payments(
    state: &EntityState,
    started: &BTreeMap<xln_core::crypto::Hash, (u64, usize)>,
) -> Vec<PaymentView> {
    let mut out: Vec<PaymentView> = state
        .payments
        .keys()
        .filter_map(|hashlock| payment(state, started, hashlock))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.started_at));
    out
}

/// One of our payments, if the state still keeps it.
pub fn payment(
    state: &EntityState,
    started: &BTreeMap<xln_core::crypto::Hash, (u64, usize)>,
    hashlock: &xln_core::crypto::Hash,
) -> Option<PaymentView> {
    let payment = state.payments.get(hashlock)?;
    let (started_at, hops) = started.get(hashlock).copied().unwrap_or((0, 0));
    Some(PaymentView {
        hashlock: *hashlock,
        receiver: payment.receiver,
        token: payment.token,
        amount: payment.amount,
        sent: payment.sent,
        hops,
        status: payment_status(&payment.status),
        started_at,
    })
}

pub fn payment_status(status: &PaymentStatus) -> String {
    match status {
        PaymentStatus::Pending => "pending".into(),
        PaymentStatus::Succeeded { .. } => "succeeded".into(),
        PaymentStatus::Failed(failure) => {
            format!("failed: {:?} at {}", failure.reason, failure.hop.short())
        }
    }
}

pub fn profiles(store: &ProfileStore) -> Vec<ProfileView> {
    store
        .profiles()
        .map(|p| ProfileView {
            entity: p.entity_id,
            name: p.name.clone(),
            endpoint: p.endpoint.clone(),
            is_hub: p.is_hub,
            accounts: p.accounts.len(),
            fee_base: p.fee_base,
            fee_ppm: p.fee_ppm,
        })
        .collect()
}

/// The status fields that come from the entity's state.
pub fn status_from_state(
    state: &EntityState,
    name: &str,
    signer: xln_core::crypto::Address,
) -> StatusView {
    StatusView {
        entity: state.id,
        name: name.to_string(),
        signer,
        board: board_view(state),
        height: state.height,
        timestamp: state.timestamp,
        ..StatusView::default()
    }
}
