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
//! - **Cycles** ([`cycles_through_us`]): a cycle of debts (we owe B, B owes C, C owes us) is
//!   cleared off chain, before anything goes on chain, by the core's netting loops
//!   (`xln_core::entity::netting`: every participant agrees, then one fee-free circular
//!   payment). Finding one needs accounts we are not on, so nodes share their positions
//!   ([`share`]: each account with a hub, or with an entity that has accounts at several hubs,
//!   that has a debt beyond collateral) with the hubs they have accounts with. A share is
//!   evidence only: every position is verified when it comes ([`check_share`]), the set again
//!   when a proposal is made, and the proposal by every participant's core before it agrees.

use super::settlement;
use crate::api::{NettingAccount, NettingPlan};
use std::collections::{BTreeMap, BTreeSet};
use xln_core::account::{AccountTx, SettlementScope};
use xln_core::board::{Board, EntityId};
use xln_core::crypto::{Address, Hash};
use xln_core::delta::{Side, TokenId};
use xln_core::entity::{ChainRequest, EntityState, EntityTx, MAX_NETTING_POSITIONS};
use xln_core::gossip::ProfileStore;
use xln_core::netting::{
    NettingCycle, NettingFigures, NettingProposal, PositionSet, PositionShare, SignedPosition,
    hub_positions, propose, uncollateralised,
};

/// How long the signed settlements of a netting wait for the other peers' signatures before
/// the batch goes on chain with those that came.
pub const SIGNATURE_WAIT_MS: u64 = 30_000;

/// The plan for `token`: the cycles through us that the positions we hold and were shared
/// clear off chain, then our accounts' debts settled in one batch (status "ready"; the writer
/// marks the one under way).
pub fn plan(
    state: &EntityState,
    token: TokenId,
    shares: &BTreeMap<EntityId, PositionShare>,
) -> Result<NettingPlan, String> {
    let cycles = cycles_through_us(state, token, shares)?
        .map(|found| found.cycles)
        .unwrap_or_default();
    let cleared = cleared_by(&cycles, state.id);
    let positions = hub_positions(state, token).map_err(|e| e.to_string())?;
    let out_of_range = || format!("netting of token {token}: amounts out of range");
    let mut accounts = Vec::new();
    // What stays beyond collateral once the cycles are cleared: what the batch settles.
    let mut exposure_after_cycles: u128 = 0;
    for position in positions.counterparties {
        if position.uncollateralised == 0 {
            continue;
        }
        let after_cycles = match cleared.get(&position.peer) {
            Some(change) => toward_zero(position.uncollateralised, *change),
            None => position.uncollateralised,
        };
        exposure_after_cycles = exposure_after_cycles
            .checked_add(after_cycles.unsigned_abs())
            .ok_or_else(out_of_range)?;
        let settled = settlement::plan(state, &position.peer, SettlementScope::Debt(token));
        let (paid, left_out) = match settled {
            Ok(plan) => (plan.tokens.first().map_or(0, |t| t.paid), None),
            Err(reason) => (0, Some(reason)),
        };
        let settles = paid.min(after_cycles.unsigned_abs());
        let left_out = left_out.or_else(|| {
            (settles < after_cycles.unsigned_abs())
                .then(|| format!("the debtor's reserve covers {settles}"))
        });
        accounts.push(NettingAccount {
            peer: position.peer,
            uncollateralised: position.uncollateralised,
            settles,
            left_out,
        });
    }
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
            exposure: exposure_after_cycles - settled,
        },
        reserve_movement,
        status: "ready".into(),
        accounts,
        cycles,
    })
}

/// How much each debt between `us` and a peer drops once the cycles through us are cleared:
/// on a cycle we owe the next participant and the one before owes us, and both debts drop by
/// the cycle's amount.
fn cleared_by(cycles: &[NettingCycle], us: EntityId) -> BTreeMap<EntityId, u128> {
    let mut cleared: BTreeMap<EntityId, u128> = BTreeMap::new();
    for cycle in cycles {
        let n = cycle.participants.len();
        let Some(at) = cycle.participants.iter().position(|p| *p == us) else {
            continue;
        };
        for peer in [
            cycle.participants[(at + 1) % n],
            cycle.participants[(at + n - 1) % n],
        ] {
            let sum = cleared.entry(peer).or_default();
            *sum = sum.saturating_add(cycle.amount);
        }
    }
    cleared
}

/// `position` moved toward zero by `change`, never past it.
fn toward_zero(position: i128, change: u128) -> i128 {
    let left = position.unsigned_abs().saturating_sub(change);
    let left = i128::try_from(left).unwrap_or(i128::MAX);
    if position < 0 { -left } else { left }
}

/// Cycles through us and what the core needs to clear them (a `NettingOrder`'s evidence).
pub struct FoundCycles {
    pub cycles: Vec<NettingCycle>,
    pub proposal: NettingProposal,
    pub positions: Vec<SignedPosition>,
    pub boards: Vec<Board>,
}

/// The proposal over our positions and the shared ones in `token`, if one of its cycles goes
/// through us. A shared position that does not verify is left out; of two positions of one
/// account, the newer frame is kept.
pub fn cycles_through_us(
    state: &EntityState,
    token: TokenId,
    shares: &BTreeMap<EntityId, PositionShare>,
) -> Result<Option<FoundCycles>, String> {
    let mut boards: BTreeMap<EntityId, Board> = BTreeMap::new();
    for board in shares.values().flat_map(|share| share.boards.iter()) {
        boards.insert(board.lazy_entity_id(), board.clone());
    }
    for (peer, entry) in &state.accounts {
        boards.insert(*peer, entry.peer_board.clone());
    }
    boards.insert(state.id, state.board.clone());
    let has_debt = |position: &SignedPosition| {
        position
            .state
            .deltas
            .get(&token)
            .is_some_and(|delta| uncollateralised(delta).is_ok_and(|u| u != 0))
    };
    let ours = state
        .accounts
        .values()
        .filter_map(|entry| SignedPosition::from_account(&entry.account));
    let shared = shares
        .values()
        .flat_map(|share| share.positions.iter().cloned());
    let mut newest: BTreeMap<(EntityId, EntityId), SignedPosition> = BTreeMap::new();
    // Shared positions were verified when they came (`check_share`); `PositionSet::verify`
    // checks the ones kept here once more.
    for position in ours.chain(shared).filter(has_debt) {
        let account = (position.key.left, position.key.right);
        let newer = newest
            .get(&account)
            .is_none_or(|known| known.proof.header.height < position.proof.header.height);
        if newer {
            newest.insert(account, position);
        }
    }
    let positions: Vec<SignedPosition> = newest.into_values().collect();
    let set = PositionSet::verify(state.domain, &positions, &boards).map_err(|e| e.to_string())?;
    let proposal = propose(&set, token).map_err(|e| e.to_string())?;
    let cycles: Vec<NettingCycle> = proposal
        .cycles
        .iter()
        .filter(|cycle| cycle.participants.contains(&state.id))
        .cloned()
        .collect();
    if cycles.is_empty() {
        return Ok(None);
    }
    let named: BTreeSet<EntityId> = positions
        .iter()
        .flat_map(|p| [p.key.left, p.key.right])
        .collect();
    let boards = named
        .iter()
        .filter_map(|id| boards.get(id).cloned())
        .collect();
    Ok(Some(FoundCycles {
        cycles,
        proposal,
        positions,
        boards,
    }))
}

/// What we share with our peers for netting: the positions of our accounts that have a debt
/// beyond collateral and whose peer is a hub or has accounts at several entities (by its
/// profile), at most [`MAX_NETTING_POSITIONS`]. `None` when there is nothing to share.
pub fn share(state: &EntityState, profiles: &ProfileStore) -> Option<PositionShare> {
    if !state.joins_netting {
        return None;
    }
    let may_be_on_a_cycle = |peer: &EntityId| {
        profiles
            .get(peer)
            .is_some_and(|p| p.profile.is_hub || p.profile.accounts.len() > 1)
    };
    let in_debt = |entry: &&xln_core::entity::AccountEntry| {
        entry
            .account
            .state()
            .deltas
            .values()
            .any(|delta| uncollateralised(delta).is_ok_and(|u| u != 0))
    };
    let mut boards = vec![state.board.clone()];
    let mut positions = Vec::new();
    for (peer, entry) in &state.accounts {
        if positions.len() == MAX_NETTING_POSITIONS || !may_be_on_a_cycle(peer) {
            continue;
        }
        let Some(position) = Some(entry)
            .filter(in_debt)
            .and_then(|e| SignedPosition::from_account(&e.account))
        else {
            continue;
        };
        positions.push(position);
        boards.push(entry.peer_board.clone());
    }
    (!positions.is_empty()).then(|| PositionShare {
        entity: state.id,
        positions,
        boards,
    })
}

/// Checks a share that signer `from` sent before it is kept: from an entity we have an account
/// with, sent by a member of its board, within the size bound, every position its own and
/// verified (state hash, the counterparty's quorum). One bad position refuses the share.
pub fn check_share(
    state: &EntityState,
    from: Address,
    share: &PositionShare,
) -> Result<(), String> {
    let entry = state.accounts.get(&share.entity).ok_or_else(|| {
        format!(
            "positions of {}, with whom we have no account",
            share.entity.short()
        )
    })?;
    if entry.peer_board.weight_of(&from).is_none() {
        return Err(format!(
            "positions of {} sent by {}, not a member of its board",
            share.entity.short(),
            from.short()
        ));
    }
    if share.positions.len() > MAX_NETTING_POSITIONS
        || share.boards.len() > MAX_NETTING_POSITIONS + 1
    {
        return Err(format!(
            "{} positions, more than {MAX_NETTING_POSITIONS}",
            share.positions.len()
        ));
    }
    if let Some(other) = share
        .positions
        .iter()
        .find(|p| p.contributor != share.entity)
    {
        return Err(format!(
            "a share of {} carries a position of {}",
            share.entity.short(),
            other.contributor.short()
        ));
    }
    let boards = state.known_boards(&share.boards);
    for position in &share.positions {
        position
            .verify(state.domain, &boards)
            .map_err(|e| format!("a position of {}: {e}", share.entity.short()))?;
    }
    Ok(())
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

    /// Stops waiting for peers whose settlement is neither on its way nor pending in our
    /// state (our proposal was refused, or it landed some other way).
    pub fn forget_gone(&mut self, state: &EntityState) {
        self.waiting.retain(|peer| {
            state.accounts.get(peer).is_some_and(|entry| {
                let account = &entry.account;
                let proposing = |tx: &AccountTx| matches!(tx, AccountTx::SettlementPropose { .. });
                account.state().settlement.pending.is_some()
                    || account.mempool().iter().any(proposing)
                    || account
                        .pending()
                        .is_some_and(|frame| frame.frame.txs.iter().any(proposing))
            })
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
        .fold(0i128, |sum, d| sum.saturating_add(d.reserve_diff(side)))
}

/// The plan in words: a summary line, then the details (for `xln netting` and the console).
pub fn describe(plan: &NettingPlan) -> String {
    let owed_to_us: u128 = plan
        .accounts
        .iter()
        .filter(|a| a.uncollateralised > 0)
        .map(|a| a.uncollateralised.unsigned_abs())
        .sum();
    let owed_by_us = plan.before.exposure.saturating_sub(owed_to_us);
    let settled = plan.accounts.iter().filter(|a| a.settles > 0).count();
    let cycles = match plan.cycles.len() {
        0 => String::new(),
        n => format!("{n} cycle(s) off chain, then "),
    };
    let mut text = format!(
        "token {}: {cycles}{settled}/{} accounts in {} tx instead of {}, reserve {:+} [{}]\n\
         beyond collateral: owed to us {owed_to_us}, by us {owed_by_us}",
        plan.token,
        plan.accounts.len(),
        plan.after.settlements,
        plan.before.settlements,
        plan.reserve_movement,
        plan.status
    );
    for cycle in &plan.cycles {
        let mut hops: Vec<String> = cycle.participants.iter().map(|p| p.short()).collect();
        hops.extend(cycle.participants.first().map(|p| p.short()));
        text.push_str(&format!(
            "\noff chain first: the cycle {} (each owes the next) drops by {}",
            hops.join(" → "),
            cycle.amount
        ));
    }
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
