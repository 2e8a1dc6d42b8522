//! The node's netting (PROTOCOL.md §10) over the positions it holds itself: each of its
//! accounts' credit debt in a token, settled on chain in one batch of ours instead of one
//! transaction per account.
//!
//! - **Plan** ([`plan`]): per token, every account with a debt beyond its collateral, what a
//!   debt settlement ([`SettlementScope::Debt`]: the debtor's reserve pays, the collateral
//!   stays) would pay of it, or why the account is left out (locks in flight, a settlement
//!   already pending, no reserve to pay from), and the before/after figures.
//! - **Execute**: the node proposes the debt settlements together; each peer's node signs its
//!   own (as for any cooperative settlement), and the signed settlements are held back
//!   ([`NettingBatch`]) until every peer signed or the wait ran out, then go on chain in one
//!   batch, those that pay us first so that our reserve covers what we pay. Our reserve moves
//!   only by our net; no one's total moves (each settlement keeps both sides' totals).
//!
//! Cycles of debt between other entities' accounts are the core's to clear off chain
//! (`xln_core::entity::netting`); this node gathers no other entity's positions yet, and
//! with its own accounts alone there is no cycle to find.

use super::settlement;
use crate::api::{NettingAccount, NettingPlan};
use std::collections::BTreeSet;
use xln_core::account::SettlementScope;
use xln_core::board::EntityId;
use xln_core::crypto::Hash;
use xln_core::delta::{Side, TokenId};
use xln_core::entity::{ChainRequest, EntityState, EntityTx};
use xln_core::netting::{NettingFigures, hub_positions};

/// How long the signed settlements of a netting wait for the other peers' signatures before
/// the batch goes on chain with those that came.
pub const SIGNATURE_WAIT_MS: u64 = 30_000;

/// The plan for `token` from our accounts (status "ready"; the writer marks the one under way).
pub fn plan(state: &EntityState, token: TokenId) -> Result<NettingPlan, String> {
    let positions = hub_positions(state, token).map_err(|e| e.to_string())?;
    let mut accounts = Vec::new();
    for position in positions.counterparties {
        if position.uncollateralised == 0 {
            continue;
        }
        let settled = settlement::plan(state, &position.peer, SettlementScope::Debt(token));
        let (settles, left_out) = match settled {
            Ok(plan) => (plan.tokens.first().map_or(0, |t| t.paid), None),
            Err(reason) => (0, Some(reason)),
        };
        let left_out = left_out.or_else(|| {
            (settles < position.uncollateralised.unsigned_abs())
                .then(|| format!("the debtor's reserve covers {settles}"))
        });
        accounts.push(NettingAccount {
            peer: position.peer,
            uncollateralised: position.uncollateralised,
            settles,
            left_out,
        });
    }
    let out_of_range = || format!("netting of token {token}: amounts out of range");
    let exposure = positions
        .owed_to_hub
        .checked_add(positions.owed_by_hub)
        .ok_or_else(out_of_range)?;
    // Each account settles at most its debt, so these stay within the exposure.
    let settled: u128 = accounts.iter().map(|a| a.settles).sum();
    let mut reserve_movement: i128 = 0;
    for account in &accounts {
        let settles = i128::try_from(account.settles).map_err(|_| out_of_range())?;
        reserve_movement = reserve_movement
            .checked_add(account.uncollateralised.signum() * settles)
            .ok_or_else(out_of_range)?;
    }
    Ok(NettingPlan {
        token,
        before: NettingFigures {
            settlements: accounts.len() as u64,
            gross_on_chain: exposure,
            exposure,
        },
        after: NettingFigures {
            settlements: u64::from(settled > 0),
            gross_on_chain: settled,
            exposure: exposure - settled,
        },
        reserve_movement,
        status: "ready".into(),
        accounts,
    })
}

/// The debt settlements that execute `plan` (unsigned: we submit them once the peers signed),
/// and the peers they go to.
pub fn settlement_txs(
    state: &EntityState,
    plan: &NettingPlan,
    domain: &Hash,
) -> Result<Vec<(EntityId, EntityTx)>, String> {
    let mut txs = Vec::new();
    for account in plan.accounts.iter().filter(|a| a.settles > 0) {
        let scope = SettlementScope::Debt(plan.token);
        match settlement::request(state, &account.peer, scope, domain)? {
            settlement::SettleAction::Propose { tx, .. } => txs.push((account.peer, tx)),
            settlement::SettleAction::Resubmit { .. } => {}
        }
    }
    if txs.is_empty() {
        return Err(format!(
            "netting of token {}: no account has a debt a reserve can pay now",
            plan.token
        ));
    }
    Ok(txs)
}

/// The settlements of a netting under way: held back until all are signed, then one batch.
#[derive(Debug)]
pub struct NettingBatch {
    pub token: TokenId,
    /// Peers whose signature we wait for.
    waiting: BTreeSet<EntityId>,
    /// Settlements we proposed and the peer signed.
    signed: Vec<ChainRequest>,
    /// Until when we wait for the rest.
    pub deadline_ms: u64,
}

impl NettingBatch {
    pub fn new(token: TokenId, peers: impl IntoIterator<Item = EntityId>, now_ms: u64) -> Self {
        Self {
            token,
            waiting: peers.into_iter().collect(),
            signed: Vec::new(),
            deadline_ms: now_ms.saturating_add(SIGNATURE_WAIT_MS),
        }
    }

    /// Keeps the settlements of this netting out of `requests` and returns the rest.
    pub fn take(&mut self, requests: Vec<ChainRequest>) -> Vec<ChainRequest> {
        let mut rest = Vec::new();
        for request in requests {
            match &request {
                ChainRequest::Settle { peer, .. } if self.waiting.remove(peer) => {
                    self.signed.push(request);
                }
                _ => rest.push(request),
            }
        }
        rest
    }

    /// Stops waiting for peers whose settlement is no longer pending in our state (our
    /// proposal was refused, or it landed some other way).
    pub fn forget_gone(&mut self, state: &EntityState) {
        self.waiting.retain(|peer| {
            state
                .accounts
                .get(peer)
                .is_some_and(|entry| entry.account.state().settlement.pending.is_some())
        });
    }

    pub fn signed(&self) -> usize {
        self.signed.len()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Every peer signed (or dropped out), or the wait is over.
    pub fn due(&self, now_ms: u64) -> bool {
        self.waiting.is_empty() || now_ms >= self.deadline_ms
    }

    /// The batch for `us`: settlements that pay us first, so our reserve covers what we pay.
    /// Peers still waiting keep their pending settlement; once signed, it goes on chain alone.
    pub fn into_requests(self, us: EntityId) -> Vec<ChainRequest> {
        let mut signed = self.signed;
        signed.sort_by_key(|request| std::cmp::Reverse(our_gain(us, request)));
        signed
    }
}

/// What a settlement adds to our reserve (negative: what it takes).
fn our_gain(us: EntityId, request: &ChainRequest) -> i128 {
    let ChainRequest::Settle { peer, diffs, .. } = request else {
        return 0;
    };
    let side = if us.is_left_of(peer) {
        Side::Left
    } else {
        Side::Right
    };
    diffs
        .iter()
        .map(|d| match side {
            Side::Left => d.left_diff,
            Side::Right => d.right_diff,
        })
        .sum()
}

/// The plan in words: a summary line, then the details (for `xln netting` and the console).
pub fn describe(plan: &NettingPlan) -> String {
    let owed_to_us: u128 = plan
        .accounts
        .iter()
        .filter(|a| a.uncollateralised > 0)
        .map(|a| a.uncollateralised.unsigned_abs())
        .sum();
    let owed_by_us = plan.before.exposure - owed_to_us;
    let settled = plan.accounts.iter().filter(|a| a.settles > 0).count();
    let mut text = format!(
        "token {}: {settled}/{} accounts in {} tx instead of {}, reserve {:+} [{}]\n\
         beyond collateral: owed to us {owed_to_us}, by us {owed_by_us}",
        plan.token,
        plan.accounts.len(),
        plan.after.settlements,
        plan.before.settlements,
        plan.reserve_movement,
        plan.status
    );
    for (name, figures) in [("before", &plan.before), ("after ", &plan.after)] {
        text.push_str(&format!(
            "\n{name}: {} on-chain transaction(s), {} moved between reserves, {} exposure",
            figures.settlements, figures.gross_on_chain, figures.exposure
        ));
    }
    for account in &plan.accounts {
        let owes = match account.uncollateralised > 0 {
            true => format!("owes us {}", account.uncollateralised),
            false => format!("we owe {}", account.uncollateralised.unsigned_abs()),
        };
        text.push_str(&format!(
            "\n  {}: {owes}; settles {}",
            account.peer.short(),
            account.settles
        ));
        if let Some(reason) = &account.left_out {
            text.push_str(&format!(" (left: {reason})"));
        }
    }
    text
}
