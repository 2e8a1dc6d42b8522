//! Netting (PROTOCOL.md §10): detect the uncollateralised debts that cancel out, propose how
//! to clear them, and let every participant check a proposal before it agrees.
//!
//! Everything here is per token and pure: the same positions give the same proposal, in the
//! same order, with the same id.
//!
//! - **Positions.** In an account, the part of Δ beyond the collateral is credit: `Δ > C` means
//!   RIGHT owes LEFT `Δ − C`, `Δ < 0` means LEFT owes RIGHT `−Δ` (PROTOCOL.md §2). Only that
//!   part needs settling; the collateral is already on chain. Holds of HTLCs in flight are not
//!   counted: netting works on committed Δ.
//! - **Evidence.** A position taken from someone else is a [`SignedPosition`]: the account
//!   state, and the frame over it that the contributor's counterparty signed (the dispute proof
//!   the account machine keeps). [`PositionSet::verify`] checks the state hash and the
//!   counterparty's quorum; nothing unverified reaches [`propose`].
//! - **Proposal.** Debts form a graph, debtor → creditor. Cycles in it are cancelled off chain
//!   (an atomic circular payment: nobody's net position moves, exposure drops). What remains
//!   is acyclic and is cleared by on-chain reserve transfers, each from a net payer to a net
//!   receiver, which retire the debts along the path between them. Each payer puts its
//!   transfers in one Depository batch (PROTOCOL.md §11); receivers send nothing. So the chain
//!   moves exactly each entity's net position, and only net payers send a transaction.
//! - **Verification.** [`verify_proposal`] is what each participant runs before it signs.
//!   Someone who refuses is left out with [`propose_without`]: the rest still nets.

use crate::account::{Account, AccountKey, AccountState, DisputeProof};
use crate::board::{Board, EntityId, QuorumError};
use crate::codec::hash_of;
use crate::crypto::Hash;
use crate::delta::{Delta, Overflow, Side, TokenId};
use crate::entity::EntityState;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Why positions or a proposal were refused. Nothing is changed by a refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NettingError {
    #[error("amount out of range")]
    Overflow,
    #[error("account {left}/{right} belongs to another jurisdiction")]
    WrongDomain { left: EntityId, right: EntityId },
    #[error("proposal is for another jurisdiction than the positions")]
    ForeignProposal,
    #[error("position of {left}/{right} is malformed: {reason}")]
    MalformedPosition {
        left: EntityId,
        right: EntityId,
        reason: &'static str,
    },
    #[error("{contributor} is not a side of account {left}/{right}")]
    NotAParty {
        contributor: EntityId,
        left: EntityId,
        right: EntityId,
    },
    #[error("account {left}/{right}: the state does not hash to the signed frame's state hash")]
    StateHashMismatch { left: EntityId, right: EntityId },
    #[error("no board known for {0}")]
    UnknownBoard(EntityId),
    #[error("account {left}/{right}: {signer} did not sign the frame: {error}")]
    BadSignature {
        left: EntityId,
        right: EntityId,
        signer: EntityId,
        error: QuorumError,
    },
    #[error("account {left}/{right}: two different states signed at height {height}")]
    ConflictingPositions {
        left: EntityId,
        right: EntityId,
        height: u64,
    },
    #[error("proposal is malformed: {0}")]
    MalformedProposal(&'static str),
    #[error("proposal relies on account {left}/{right} at a state no given position shows")]
    UnbackedPosition { left: EntityId, right: EntityId },
    #[error("proposal states {claimed} for account {left}/{right}, the signed state says {signed}")]
    BasisMismatch {
        left: EntityId,
        right: EntityId,
        claimed: i128,
        signed: i128,
    },
    #[error("{participant} has no account with {peer}")]
    UnknownAccount {
        participant: EntityId,
        peer: EntityId,
    },
    #[error(
        "{participant} did not sign the state of its account with {peer} that the proposal uses"
    )]
    NotSignedByParticipant {
        participant: EntityId,
        peer: EntityId,
    },
    #[error("proposal clears a debt of {debtor} to {creditor} that its basis does not hold")]
    NotInBasis {
        debtor: EntityId,
        creditor: EntityId,
    },
    #[error("proposal clears {amount} of the debt of {debtor} to {creditor}, which is {owed}")]
    ExceedsDebt {
        debtor: EntityId,
        creditor: EntityId,
        owed: u128,
        amount: u128,
    },
    #[error("proposal changes the net position of {entity} from {before} to {after}")]
    NetPositionChanged {
        entity: EntityId,
        before: i128,
        after: i128,
    },
    #[error("proposal's before/after figures do not match what it does")]
    FiguresMismatch,
    #[error("debts still form a cycle after cancellation")]
    CycleLeft,
}

impl From<Overflow> for NettingError {
    fn from(_: Overflow) -> Self {
        NettingError::Overflow
    }
}

fn signed(amount: u128) -> Result<i128, NettingError> {
    i128::try_from(amount).map_err(|_| NettingError::Overflow)
}

fn add_amount(a: u128, b: u128) -> Result<u128, NettingError> {
    a.checked_add(b).ok_or(NettingError::Overflow)
}

fn add_signed(a: i128, b: i128) -> Result<i128, NettingError> {
    a.checked_add(b).ok_or(NettingError::Overflow)
}

fn sub_signed(a: i128, b: i128) -> Result<i128, NettingError> {
    a.checked_sub(b).ok_or(NettingError::Overflow)
}

// ------------------------------------------------------------------------------ positions

/// The part of a token's Δ beyond the collateral, from LEFT's side: `Δ − C > 0` when RIGHT
/// owes LEFT on credit, `Δ < 0` when LEFT owes RIGHT, zero while Δ lies within `[0, C]`.
pub fn uncollateralised(delta: &Delta) -> Result<i128, Overflow> {
    let total = delta.total()?;
    let collateral = i128::try_from(delta.collateral).map_err(|_| Overflow)?;
    Ok(if total > collateral {
        total.checked_sub(collateral).ok_or(Overflow)?
    } else {
        total.min(0)
    })
}

/// LEFT's figure read from `side`: the same for LEFT, its negation for RIGHT.
fn from_side(left_view: i128, side: Side) -> Result<i128, Overflow> {
    match side {
        Side::Left => Ok(left_view),
        Side::Right => left_view.checked_neg().ok_or(Overflow),
    }
}

/// An account's uncollateralised position in `token`, from LEFT's side (zero without the token).
fn account_uncollateralised(state: &AccountState, token: TokenId) -> Result<i128, Overflow> {
    state.deltas.get(&token).map_or(Ok(0), uncollateralised)
}

/// One counterparty of a hub, in one token, read from the hub's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterpartyPosition {
    pub peer: EntityId,
    /// Locked on chain for the account.
    pub collateral: u128,
    /// The hub's side of the account: its share of the collateral plus what the peer owes it
    /// on credit, minus what it owes the peer (Δ for LEFT, `C − Δ` for RIGHT).
    pub balance: i128,
    /// The part beyond collateral: `> 0` the peer owes the hub, `< 0` the hub owes the peer.
    pub uncollateralised: i128,
}

/// What a hub sees of one token from its own accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubPositions {
    pub hub: EntityId,
    pub token: TokenId,
    /// By peer id; accounts that do not hold the token are left out.
    pub counterparties: Vec<CounterpartyPosition>,
    /// The sum of what peers owe the hub beyond collateral.
    pub owed_to_hub: u128,
    /// The sum of what the hub owes peers beyond collateral.
    pub owed_by_hub: u128,
    /// How the hub's on-chain reserve would move if every uncollateralised position were
    /// settled: `owed_to_hub − owed_by_hub` (`> 0` in, `< 0` out).
    pub reserve_movement: i128,
}

/// Detection for one hub: each counterparty's position and the hub's net. Reads the committed
/// state of the hub's own accounts, which it needs no one's signature to trust.
pub fn hub_positions(hub: &EntityState, token: TokenId) -> Result<HubPositions, NettingError> {
    let mut result = HubPositions {
        hub: hub.id,
        token,
        counterparties: Vec::new(),
        owed_to_hub: 0,
        owed_by_hub: 0,
        reserve_movement: 0,
    };
    for (peer, entry) in &hub.accounts {
        let state = entry.account.state();
        let Some(delta) = state.deltas.get(&token) else {
            continue;
        };
        let side = entry.account.side();
        let total = delta.total()?;
        let balance = match side {
            Side::Left => total,
            Side::Right => sub_signed(signed(delta.collateral)?, total)?,
        };
        let position = from_side(uncollateralised(delta)?, side)?;
        if position > 0 {
            result.owed_to_hub = add_amount(result.owed_to_hub, position.unsigned_abs())?;
        } else {
            result.owed_by_hub = add_amount(result.owed_by_hub, position.unsigned_abs())?;
        }
        result.counterparties.push(CounterpartyPosition {
            peer: *peer,
            collateral: delta.collateral,
            balance,
            uncollateralised: position,
        });
    }
    result.reserve_movement = sub_signed(signed(result.owed_to_hub)?, signed(result.owed_by_hub)?)?;
    Ok(result)
}

// ------------------------------------------------------------------------------ evidence

/// A position a participant brings to netting: the state of one of its accounts and the frame
/// over it that its counterparty signed. The contributor's own consent is its signature on the
/// proposal; the counterparty's is this frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPosition {
    /// The side that brings the position.
    pub contributor: EntityId,
    /// The account (and the jurisdiction its frames are bound to).
    pub key: AccountKey,
    /// The state the frame commits to: it hashes to `proof.header.state_hash`.
    pub state: AccountState,
    /// The latest frame the counterparty signed.
    pub proof: DisputeProof,
}

impl SignedPosition {
    /// The position of one of our accounts: its committed state and the dispute proof, which
    /// the account machine keeps for exactly that state. `None` before the first frame.
    pub fn from_account(account: &Account) -> Option<SignedPosition> {
        account.proof().map(|proof| SignedPosition {
            contributor: account.me(),
            key: *account.key(),
            state: account.state().clone(),
            proof: proof.clone(),
        })
    }

    /// The side whose signature the proof carries.
    pub fn counterparty(&self) -> Option<EntityId> {
        if self.contributor == self.key.left {
            Some(self.key.right)
        } else if self.contributor == self.key.right {
            Some(self.key.left)
        } else {
            None
        }
    }

    /// Checks that the position is about an account of `domain`, that the state is the one
    /// the frame commits to, and that the contributor's counterparty signed the frame (a
    /// quorum of its board, from `boards`).
    pub fn verify(
        &self,
        domain: Hash,
        boards: &BTreeMap<EntityId, Board>,
    ) -> Result<VerifiedPosition, NettingError> {
        let (left, right) = (self.key.left, self.key.right);
        if self.key.domain != domain {
            return Err(NettingError::WrongDomain { left, right });
        }
        let malformed = |reason| NettingError::MalformedPosition {
            left,
            right,
            reason,
        };
        if !left.is_left_of(&right) {
            return Err(malformed("LEFT's id must be the smaller"));
        }
        if self.state.left != left || self.state.right != right {
            return Err(malformed("the state is of another account"));
        }
        let counterparty = self.counterparty().ok_or(NettingError::NotAParty {
            contributor: self.contributor,
            left,
            right,
        })?;
        let state_hash = self.state.hash();
        if state_hash != self.proof.header.state_hash {
            return Err(NettingError::StateHashMismatch { left, right });
        }
        let board = boards
            .get(&counterparty)
            .ok_or(NettingError::UnknownBoard(counterparty))?;
        board
            .verify_quorum(
                &self.proof.header.hash(&self.key),
                &self.proof.peer_signature,
            )
            .map_err(|error| NettingError::BadSignature {
                left,
                right,
                signer: counterparty,
                error,
            })?;
        Ok(VerifiedPosition {
            key: self.key,
            height: self.proof.header.height,
            state_hash,
            state: self.state.clone(),
        })
    }
}

/// Positions an entity shares with its peers so that they can find cycles through accounts they
/// are not on: evidence only, each position checked (and the proposal over it checked by every
/// participant) before anything relies on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionShare {
    /// The contributor of every position.
    pub entity: EntityId,
    pub positions: Vec<SignedPosition>,
    /// The boards that signed them (lazy entities: checked against the id).
    pub boards: Vec<Board>,
}

/// A position whose signature and state hash were checked. Only [`SignedPosition::verify`]
/// makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPosition {
    key: AccountKey,
    height: u64,
    state_hash: Hash,
    state: AccountState,
}

impl VerifiedPosition {
    pub fn key(&self) -> &AccountKey {
        &self.key
    }
    pub fn height(&self) -> u64 {
        self.height
    }
    pub fn state_hash(&self) -> Hash {
        self.state_hash
    }
    pub fn state(&self) -> &AccountState {
        &self.state
    }
    /// The uncollateralised position in `token`, from LEFT's side.
    pub fn uncollateralised(&self, token: TokenId) -> Result<i128, NettingError> {
        Ok(account_uncollateralised(&self.state, token)?)
    }
}

/// Verified positions of one jurisdiction, one per account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionSet {
    domain: Hash,
    positions: BTreeMap<(EntityId, EntityId), VerifiedPosition>,
}

impl PositionSet {
    /// Verifies every position (see [`SignedPosition::verify`]); one bad position refuses the
    /// whole set. When both sides bring their account, the higher frame is kept; two
    /// different states at the same height are a conflict.
    pub fn verify(
        domain: Hash,
        positions: &[SignedPosition],
        boards: &BTreeMap<EntityId, Board>,
    ) -> Result<PositionSet, NettingError> {
        let mut set = PositionSet {
            domain,
            positions: BTreeMap::new(),
        };
        for position in positions {
            let verified = position.verify(domain, boards)?;
            let account = (verified.key.left, verified.key.right);
            match set.positions.get(&account) {
                Some(known) if known.height > verified.height => {}
                Some(known)
                    if known.height == verified.height
                        && known.state_hash != verified.state_hash =>
                {
                    return Err(NettingError::ConflictingPositions {
                        left: account.0,
                        right: account.1,
                        height: known.height,
                    });
                }
                _ => {
                    set.positions.insert(account, verified);
                }
            }
        }
        Ok(set)
    }

    /// The same positions without any account of the `excluded` entities: what is left when
    /// they refuse to take part.
    pub fn without(&self, excluded: &BTreeSet<EntityId>) -> PositionSet {
        PositionSet {
            domain: self.domain,
            positions: self
                .positions
                .iter()
                .filter(|((left, right), _)| !excluded.contains(left) && !excluded.contains(right))
                .map(|(account, position)| (*account, position.clone()))
                .collect(),
        }
    }

    pub fn domain(&self) -> Hash {
        self.domain
    }
    pub fn len(&self) -> usize {
        self.positions.len()
    }
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
    /// The position of the account between `a` and `b`, in either order.
    pub fn get(&self, a: &EntityId, b: &EntityId) -> Option<&VerifiedPosition> {
        let account = if a.is_left_of(b) { (*a, *b) } else { (*b, *a) };
        self.positions.get(&account)
    }
    /// The positions by account (LEFT, RIGHT), ascending.
    pub fn iter(&self) -> impl Iterator<Item = &VerifiedPosition> {
        self.positions.values()
    }
}

// ------------------------------------------------------------------------------ the debt graph

/// An uncollateralised debt: `debtor` owes `creditor` `amount` beyond the collateral of their
/// account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Debt {
    pub debtor: EntityId,
    pub creditor: EntityId,
    pub amount: u128,
}

/// The graph of uncollateralised debts of one token: at most one debt per account, so at most
/// one edge between two entities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebtGraph {
    token: TokenId,
    /// (debtor, creditor) → amount, amounts above zero.
    debts: BTreeMap<(EntityId, EntityId), u128>,
}

impl DebtGraph {
    /// The debts of `token` in the verified positions.
    pub fn from_positions(positions: &PositionSet, token: TokenId) -> Result<Self, NettingError> {
        let mut debts = BTreeMap::new();
        for position in positions.iter() {
            let value = position.uncollateralised(token)?;
            if let Some(debt) = debt_of(position.key.left, position.key.right, value) {
                debts.insert((debt.debtor, debt.creditor), debt.amount);
            }
        }
        Ok(Self { token, debts })
    }

    pub fn token(&self) -> TokenId {
        self.token
    }

    /// The debts, by (debtor, creditor).
    pub fn debts(&self) -> impl Iterator<Item = Debt> + '_ {
        self.debts
            .iter()
            .map(|(&(debtor, creditor), &amount)| Debt {
                debtor,
                creditor,
                amount,
            })
    }

    /// Each entity's net position: what it is owed minus what it owes (`> 0` it would receive
    /// on chain if everything were settled).
    pub fn net_positions(&self) -> Result<BTreeMap<EntityId, i128>, NettingError> {
        net_positions(self.debts())
    }

    /// The sum of all debts.
    pub fn exposure(&self) -> Result<u128, NettingError> {
        self.debts
            .values()
            .try_fold(0, |sum, &d| add_amount(sum, d))
    }

    /// The cycles a greedy cancellation finds, each with the amount it cancels (its smallest
    /// debt at the time). Cancelling them in order leaves the graph acyclic.
    pub fn cycles(&self) -> Result<Vec<NettingCycle>, NettingError> {
        let mut graph = IndexedGraph::new(&self.debts);
        Ok(graph.cancel_cycles())
    }
}

/// The debt an account's LEFT-side position means, if any.
fn debt_of(left: EntityId, right: EntityId, left_view: i128) -> Option<Debt> {
    let amount = left_view.unsigned_abs();
    match left_view.signum() {
        1 => Some(Debt {
            debtor: right,
            creditor: left,
            amount,
        }),
        -1 => Some(Debt {
            debtor: left,
            creditor: right,
            amount,
        }),
        _ => None,
    }
}

fn net_positions(
    debts: impl Iterator<Item = Debt>,
) -> Result<BTreeMap<EntityId, i128>, NettingError> {
    let mut nets: BTreeMap<EntityId, i128> = BTreeMap::new();
    for debt in debts {
        let amount = signed(debt.amount)?;
        let creditor = nets.entry(debt.creditor).or_default();
        *creditor = add_signed(*creditor, amount)?;
        let debtor = nets.entry(debt.debtor).or_default();
        *debtor = sub_signed(*debtor, amount)?;
    }
    Ok(nets)
}

/// The debt graph with entities numbered in id order, for the cycle and path searches.
struct IndexedGraph {
    nodes: Vec<EntityId>,
    /// Per node, its debts as (creditor node, edge), creditors ascending.
    out: Vec<Vec<(usize, usize)>>,
    /// Per edge, what is still owed.
    amounts: Vec<u128>,
}

impl IndexedGraph {
    fn new(debts: &BTreeMap<(EntityId, EntityId), u128>) -> Self {
        let ids: BTreeSet<EntityId> = debts.keys().flat_map(|(a, b)| [*a, *b]).collect();
        let nodes: Vec<EntityId> = ids.into_iter().collect();
        let index: BTreeMap<EntityId, usize> =
            nodes.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut out = vec![Vec::new(); nodes.len()];
        let mut amounts = Vec::with_capacity(debts.len());
        // Keys ascend by (debtor, creditor), so each node's list ascends by creditor.
        for (&(debtor, creditor), &amount) in debts {
            if let (Some(&from), Some(&to)) = (index.get(&debtor), index.get(&creditor)) {
                out[from].push((to, amounts.len()));
                amounts.push(amount);
            }
        }
        Self {
            nodes,
            out,
            amounts,
        }
    }

    fn remaining(&self) -> Result<u128, NettingError> {
        self.amounts
            .iter()
            .try_fold(0, |sum, &a| add_amount(sum, a))
    }

    /// Finds and cancels cycles until none is left, by a depth-first search that continues
    /// after each cancellation instead of starting over. A node is `Done` once each of its
    /// remaining debts leads to a `Done` node: no cycle passes through it, and since debts only
    /// shrink, none ever will. After a cancellation the path is cut back to the first debt
    /// that reached zero; the nodes cut off are searched again later.
    fn cancel_cycles(&mut self) -> Vec<NettingCycle> {
        #[derive(Clone, Copy, PartialEq, Eq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let n = self.nodes.len();
        let mut mark = vec![Mark::New; n];
        // Where each node on the path sits in `path`.
        let mut position = vec![0usize; n];
        // (node, next debt of it to look at, edge taken to the next node on the path)
        let mut path: Vec<(usize, usize, usize)> = Vec::new();
        let mut cycles = Vec::new();
        for start in 0..n {
            if mark[start] != Mark::New {
                continue;
            }
            mark[start] = Mark::OnPath;
            position[start] = 0;
            path.push((start, 0, usize::MAX));
            while let Some(&(node, next, _)) = path.last() {
                let outs = &self.out[node];
                let found = (next..outs.len()).find(|&i| {
                    let (to, edge) = outs[i];
                    self.amounts[edge] > 0 && mark[to] != Mark::Done
                });
                let Some(i) = found else {
                    mark[node] = Mark::Done;
                    path.pop();
                    continue;
                };
                let (to, edge) = outs[i];
                if let Some(top) = path.last_mut() {
                    top.1 = i + 1;
                    top.2 = edge;
                }
                if mark[to] == Mark::New {
                    mark[to] = Mark::OnPath;
                    position[to] = path.len();
                    path.push((to, 0, usize::MAX));
                    continue;
                }
                // `to` is on the path: path[from..] and the debt just taken close a cycle.
                let from = position[to];
                let amount = path[from..]
                    .iter()
                    .map(|&(_, _, e)| self.amounts[e])
                    .min()
                    .unwrap_or(0);
                for &(_, _, e) in &path[from..] {
                    self.amounts[e] -= amount;
                }
                cycles.push(NettingCycle::rotated(
                    path[from..]
                        .iter()
                        .map(|&(v, _, _)| self.nodes[v])
                        .collect(),
                    amount,
                ));
                let cut = (from..path.len())
                    .find(|&k| self.amounts[path[k].2] == 0)
                    .unwrap_or(path.len() - 1);
                for &(v, _, _) in &path[cut + 1..] {
                    mark[v] = Mark::New;
                }
                path.truncate(cut + 1);
            }
        }
        cycles
    }

    /// Clears what is left (acyclic) by transfers from net payers to net receivers: from the
    /// first node that owes more than it is owed, follow debts until a node that owes nothing;
    /// move the smallest of the debts on the way, the payer's excess and the receiver's
    /// shortfall. Each step zeroes a debt or an excess, and the chain moves exactly the net
    /// positions.
    fn settle_paths(&mut self) -> Result<Vec<NettingTransfer>, NettingError> {
        let n = self.nodes.len();
        // owes − is owed, per node.
        let mut excess = vec![0i128; n];
        for (from, outs) in self.out.iter().enumerate() {
            for &(to, edge) in outs {
                let amount = signed(self.amounts[edge])?;
                excess[from] = add_signed(excess[from], amount)?;
                excess[to] = sub_signed(excess[to], amount)?;
            }
        }
        // The first debt of each node that may still be above zero (debts only shrink).
        let mut first_live = vec![0usize; n];
        let mut transfers = Vec::new();
        for payer in 0..n {
            while excess[payer] > 0 {
                let mut nodes = vec![payer];
                let mut edges = Vec::new();
                let mut at = payer;
                loop {
                    let outs = &self.out[at];
                    while first_live[at] < outs.len() && self.amounts[outs[first_live[at]].1] == 0 {
                        first_live[at] += 1;
                    }
                    let Some(&(to, edge)) = outs.get(first_live[at]) else {
                        break;
                    };
                    if nodes.len() > n {
                        return Err(NettingError::CycleLeft);
                    }
                    nodes.push(to);
                    edges.push(edge);
                    at = to;
                }
                let payee = at;
                let limit = excess[payer].min(excess[payee].saturating_neg());
                let amount = edges
                    .iter()
                    .map(|&e| self.amounts[e])
                    .chain([limit.max(0).unsigned_abs()])
                    .min()
                    .unwrap_or(0);
                if amount == 0 || payee == payer {
                    // A payer with excess has a debt and a path ends at a node that is owed
                    // more than it owes; anything else means the graph was not acyclic.
                    return Err(NettingError::CycleLeft);
                }
                for &e in &edges {
                    self.amounts[e] -= amount;
                }
                let moved = signed(amount)?;
                excess[payer] = sub_signed(excess[payer], moved)?;
                excess[payee] = add_signed(excess[payee], moved)?;
                transfers.push(NettingTransfer {
                    payer: self.nodes[payer],
                    payee: self.nodes[payee],
                    amount,
                    path: nodes.iter().map(|&v| self.nodes[v]).collect(),
                });
            }
        }
        Ok(transfers)
    }
}

// ------------------------------------------------------------------------------ proposals

/// The account position a proposal relies on: which signed state, and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionRef {
    pub left: EntityId,
    pub right: EntityId,
    pub height: u64,
    pub state_hash: Hash,
    /// The token's uncollateralised position, from LEFT's side (never zero in a proposal).
    pub uncollateralised: i128,
}

impl PositionRef {
    pub fn debt(&self) -> Option<Debt> {
        debt_of(self.left, self.right, self.uncollateralised)
    }
}

/// A cycle of debts to cancel off chain: `participants[i]` owes `participants[i + 1]`, the
/// last owes the first, and each of these debts drops by `amount`. As a payment it runs the
/// other way (a creditor paying its debtor clears debt): the first participant pays the
/// last, who pays the one before, and so on back to the first. Starts at the smallest id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NettingCycle {
    pub participants: Vec<EntityId>,
    pub amount: u128,
}

impl NettingCycle {
    fn rotated(mut participants: Vec<EntityId>, amount: u128) -> Self {
        if let Some(first) = participants
            .iter()
            .enumerate()
            .min_by_key(|(_, id)| **id)
            .map(|(i, _)| i)
        {
            participants.rotate_left(first);
        }
        Self {
            participants,
            amount,
        }
    }

    /// The route of the circular payment that clears the cycle, started by `sender` (one of
    /// the participants): the hops after the sender, each paid by the one before it, the
    /// sender last. Every hop pays the entity that owes it, so every debt on the cycle drops by
    /// the amount and nobody's net moves. `None` if `sender` is not on the cycle.
    pub fn payment_route(&self, sender: &EntityId) -> Option<Vec<EntityId>> {
        let at = self.participants.iter().position(|p| p == sender)?;
        let n = self.participants.len();
        // Creditor before debtor: walk the participants backwards from the sender.
        Some(
            (1..=n)
                .map(|k| self.participants[(at + n - k % n) % n])
                .collect(),
        )
    }

    /// The debts it clears, as (debtor, creditor).
    pub fn debts(&self) -> impl Iterator<Item = (EntityId, EntityId)> + '_ {
        let next = self.participants.iter().cycle().skip(1);
        self.participants.iter().copied().zip(next.copied())
    }
}

/// An on-chain reserve transfer from `payer` to `payee`, in the payer's batch, which retires
/// `amount` of each debt along `path` (`path[i]` owes `path[i + 1]`; the path runs from the
/// payer to the payee). The entities in between exchange nothing on chain: each is paid off
/// chain what it pays on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NettingTransfer {
    pub payer: EntityId,
    pub payee: EntityId,
    pub amount: u128,
    pub path: Vec<EntityId>,
}

impl NettingTransfer {
    /// The debts it retires, as (debtor, creditor).
    pub fn debts(&self) -> impl Iterator<Item = (EntityId, EntityId)> + '_ {
        self.path.windows(2).map(|pair| (pair[0], pair[1]))
    }
}

/// What settling costs on chain, and what is at risk meanwhile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NettingFigures {
    /// On-chain transactions: without netting one cooperative settlement per account with a
    /// debt; with netting one batch per net payer.
    pub settlements: u64,
    /// The amount leaving reserves.
    pub gross_on_chain: u128,
    /// The sum of uncollateralised debts: before, all of them; after, those left once the
    /// cycles are cancelled (which the on-chain transfers then retire).
    pub exposure: u128,
}

/// A netting proposal for one token: what it relies on, what it does, and what it saves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NettingProposal {
    pub domain: Hash,
    pub token: TokenId,
    /// Every account with a debt in the token, by (LEFT, RIGHT).
    pub basis: Vec<PositionRef>,
    /// Cancelled first, in order.
    pub cycles: Vec<NettingCycle>,
    /// Then these, in order.
    pub transfers: Vec<NettingTransfer>,
    /// Each account settled on its own.
    pub before: NettingFigures,
    /// With this proposal.
    pub after: NettingFigures,
}

impl NettingProposal {
    /// The proposal's id: the hash of its canonical encoding, which participants sign.
    pub fn id(&self) -> Hash {
        hash_of(self)
    }

    /// The entities whose signature it needs: everyone on a cycle or a transfer's path.
    pub fn participants(&self) -> BTreeSet<EntityId> {
        let cycles = self.cycles.iter().flat_map(|c| c.participants.iter());
        let paths = self.transfers.iter().flat_map(|t| t.path.iter());
        cycles.chain(paths).copied().collect()
    }
}

/// The proposal for `token` over the verified positions: greedy cycle cancellation, then
/// path transfers for the rest (see the module documentation). Deterministic.
pub fn propose(positions: &PositionSet, token: TokenId) -> Result<NettingProposal, NettingError> {
    let mut basis = Vec::new();
    let mut debts = BTreeMap::new();
    for position in positions.iter() {
        let value = position.uncollateralised(token)?;
        let reference = PositionRef {
            left: position.key.left,
            right: position.key.right,
            height: position.height,
            state_hash: position.state_hash,
            uncollateralised: value,
        };
        if let Some(debt) = reference.debt() {
            debts.insert((debt.debtor, debt.creditor), debt.amount);
            basis.push(reference);
        }
    }
    // Net positions must be representable for anyone to verify the proposal.
    net_positions(debts.iter().map(|(&(debtor, creditor), &amount)| Debt {
        debtor,
        creditor,
        amount,
    }))?;
    let mut graph = IndexedGraph::new(&debts);
    let cycles = graph.cancel_cycles();
    let remaining = graph.remaining()?;
    let transfers = graph.settle_paths()?;
    let (before, after) = figures(&basis, remaining, &transfers)?;
    Ok(NettingProposal {
        domain: positions.domain,
        token,
        basis,
        cycles,
        transfers,
        before,
        after,
    })
}

/// The proposal without the `excluded` entities' accounts: when they refuse, the rest still
/// nets.
pub fn propose_without(
    positions: &PositionSet,
    token: TokenId,
    excluded: &BTreeSet<EntityId>,
) -> Result<NettingProposal, NettingError> {
    propose(&positions.without(excluded), token)
}

fn figures(
    basis: &[PositionRef],
    exposure_after: u128,
    transfers: &[NettingTransfer],
) -> Result<(NettingFigures, NettingFigures), NettingError> {
    let exposure = basis.iter().try_fold(0, |sum, p| {
        add_amount(sum, p.uncollateralised.unsigned_abs())
    })?;
    let before = NettingFigures {
        settlements: basis.len() as u64,
        gross_on_chain: exposure,
        exposure,
    };
    let payers: BTreeSet<EntityId> = transfers.iter().map(|t| t.payer).collect();
    let after = NettingFigures {
        settlements: payers.len() as u64,
        gross_on_chain: transfers
            .iter()
            .try_fold(0, |sum, t| add_amount(sum, t.amount))?,
        exposure: exposure_after,
    };
    Ok((before, after))
}

// ------------------------------------------------------------------------------ verification

/// The frame a participant last signed in one of its accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPoint {
    pub height: u64,
    pub state_hash: Hash,
}

/// What a participant knows of its own accounts: for each peer, the latest state both sides
/// signed (`None`: the account has no frame yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantView {
    pub entity: EntityId,
    pub accounts: BTreeMap<EntityId, Option<SignedPoint>>,
}

impl ParticipantView {
    /// The view of an entity from its replicated state: each account's dispute proof.
    pub fn of(state: &EntityState) -> Self {
        Self {
            entity: state.id,
            accounts: state
                .accounts
                .iter()
                .map(|(peer, entry)| {
                    let point = entry.account.proof().map(|proof| SignedPoint {
                        height: proof.header.height,
                        state_hash: proof.header.state_hash,
                    });
                    (*peer, point)
                })
                .collect(),
        }
    }
}

/// What a participant checks before it signs `proposal`, given the verified positions that
/// came with it. Refuses (and changes nothing) when the proposal:
/// - relies on a position that no verified position backs, or misstates one;
/// - touches an account of the participant that it does not have, or uses a state of it that
///   is not the latest the participant signed;
/// - clears a debt its basis does not hold, or more of a debt than is owed;
/// - changes anyone's net position (debts plus on-chain transfers);
/// - states before/after figures other than what it does.
pub fn verify_proposal(
    proposal: &NettingProposal,
    positions: &PositionSet,
    participant: &ParticipantView,
) -> Result<(), NettingError> {
    if proposal.domain != positions.domain {
        return Err(NettingError::ForeignProposal);
    }
    // The basis: ascending, non-zero, and each entry the verified state of its account.
    for pair in proposal.basis.windows(2) {
        if (pair[0].left, pair[0].right) >= (pair[1].left, pair[1].right) {
            return Err(NettingError::MalformedProposal(
                "basis not in account order",
            ));
        }
    }
    let mut owed: BTreeMap<(EntityId, EntityId), u128> = BTreeMap::new();
    for entry in &proposal.basis {
        let (left, right) = (entry.left, entry.right);
        let debt = entry.debt().ok_or(NettingError::MalformedProposal(
            "basis entry without a debt",
        ))?;
        let position = positions
            .positions
            .get(&(left, right))
            .filter(|p| p.height == entry.height && p.state_hash == entry.state_hash)
            .ok_or(NettingError::UnbackedPosition { left, right })?;
        let signed_value = position.uncollateralised(proposal.token)?;
        if signed_value != entry.uncollateralised {
            return Err(NettingError::BasisMismatch {
                left,
                right,
                claimed: entry.uncollateralised,
                signed: signed_value,
            });
        }
        owed.insert((debt.debtor, debt.creditor), debt.amount);
    }
    check_own_accounts(proposal, participant)?;

    // Apply the cycles, then the transfers, to the debts.
    let nets_before = net_positions(owed.iter().map(|(&(debtor, creditor), &amount)| Debt {
        debtor,
        creditor,
        amount,
    }))?;
    for cycle in &proposal.cycles {
        let distinct: BTreeSet<&EntityId> = cycle.participants.iter().collect();
        if cycle.participants.len() < 3 || distinct.len() != cycle.participants.len() {
            return Err(NettingError::MalformedProposal(
                "a cycle needs three or more distinct participants",
            ));
        }
        if cycle.amount == 0 {
            return Err(NettingError::MalformedProposal("a cycle of zero"));
        }
        for (debtor, creditor) in cycle.debts() {
            retire(&mut owed, debtor, creditor, cycle.amount)?;
        }
    }
    let exposure_after = owed.values().try_fold(0, |sum, &d| add_amount(sum, d))?;
    let mut on_chain: BTreeMap<EntityId, i128> = BTreeMap::new();
    for transfer in &proposal.transfers {
        let distinct: BTreeSet<&EntityId> = transfer.path.iter().collect();
        if transfer.path.len() < 2 || distinct.len() != transfer.path.len() {
            return Err(NettingError::MalformedProposal(
                "a transfer's path needs two or more distinct entities",
            ));
        }
        if transfer.amount == 0 || transfer.payer == transfer.payee {
            return Err(NettingError::MalformedProposal(
                "a transfer moves something between two entities",
            ));
        }
        for (debtor, creditor) in transfer.debts() {
            retire(&mut owed, debtor, creditor, transfer.amount)?;
        }
        let moved = signed(transfer.amount)?;
        let payer = on_chain.entry(transfer.payer).or_default();
        *payer = sub_signed(*payer, moved)?;
        let payee = on_chain.entry(transfer.payee).or_default();
        *payee = add_signed(*payee, moved)?;
    }

    // Nobody's net position may move: what it is owed minus what it owes, plus what it
    // receives on chain.
    let mut nets_after = net_positions(owed.iter().map(|(&(debtor, creditor), &amount)| Debt {
        debtor,
        creditor,
        amount,
    }))?;
    for (entity, moved) in &on_chain {
        let net = nets_after.entry(*entity).or_default();
        *net = add_signed(*net, *moved)?;
    }
    let everyone: BTreeSet<EntityId> = nets_before
        .keys()
        .chain(nets_after.keys())
        .copied()
        .collect();
    for entity in everyone {
        let before = nets_before.get(&entity).copied().unwrap_or(0);
        let after = nets_after.get(&entity).copied().unwrap_or(0);
        if before != after {
            return Err(NettingError::NetPositionChanged {
                entity,
                before,
                after,
            });
        }
    }

    let (before, after) = figures(&proposal.basis, exposure_after, &proposal.transfers)?;
    if (before, after) != (proposal.before, proposal.after) {
        return Err(NettingError::FiguresMismatch);
    }
    Ok(())
}

/// Lowers the debt of `debtor` to `creditor` by `amount`: it must be in the basis and owe that much.
fn retire(
    owed: &mut BTreeMap<(EntityId, EntityId), u128>,
    debtor: EntityId,
    creditor: EntityId,
    amount: u128,
) -> Result<(), NettingError> {
    let debt = owed
        .get_mut(&(debtor, creditor))
        .ok_or(NettingError::NotInBasis { debtor, creditor })?;
    *debt = debt.checked_sub(amount).ok_or(NettingError::ExceedsDebt {
        debtor,
        creditor,
        owed: *debt,
        amount,
    })?;
    Ok(())
}

/// The participant's side of a proposal: every account of its that the proposal touches must
/// exist, and every basis entry of its accounts must be the latest state it signed.
fn check_own_accounts(
    proposal: &NettingProposal,
    participant: &ParticipantView,
) -> Result<(), NettingError> {
    let me = participant.entity;
    let peer_of = |a: EntityId, b: EntityId| {
        if a == me {
            Some(b)
        } else if b == me {
            Some(a)
        } else {
            None
        }
    };
    let account = |peer: EntityId| {
        participant
            .accounts
            .get(&peer)
            .ok_or(NettingError::UnknownAccount {
                participant: me,
                peer,
            })
    };
    let cleared = proposal
        .cycles
        .iter()
        .flat_map(|c| c.debts())
        .chain(proposal.transfers.iter().flat_map(|t| t.debts()));
    for (debtor, creditor) in cleared {
        if let Some(peer) = peer_of(debtor, creditor) {
            account(peer)?;
        }
    }
    for entry in &proposal.basis {
        if let Some(peer) = peer_of(entry.left, entry.right) {
            let signed = SignedPoint {
                height: entry.height,
                state_hash: entry.state_hash,
            };
            if *account(peer)? != Some(signed) {
                return Err(NettingError::NotSignedByParticipant {
                    participant: me,
                    peer,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
