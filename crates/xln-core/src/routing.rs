//! Pathfinding over the capacity graph (PROTOCOL.md §9).
//!
//! The graph is built from gossiped [`Profile`]s, optionally corrected by our own accounts'
//! exact capacities. Per token it has directed edges with a capacity: an account `A`–`B` listed
//! in `A`'s profile gives `A → B` with `A`'s `out_capacity` and `B → A` with `A`'s
//! `in_capacity`. Every intermediate hop charges its profile's fee on the amount it forwards;
//! the sender and the receiver charge nothing.
//!
//! Because fees depend on the amount forwarded, they are accumulated backwards from the
//! receiver: the last edge carries the payment amount, each earlier edge carries what the next
//! one carries plus the fee of the hop between them. [`find_routes`] runs Dijkstra from the
//! receiver towards the sender over "amount that must arrive at this node", which is the exact
//! optimum here: a hop's fee never decreases as the amount it forwards grows, so a smaller
//! amount downstream never makes a route upstream dearer or an edge too small. Alternatives come
//! from Yen's algorithm on top of that search.
//!
//! All arithmetic is checked: an amount that does not fit makes the edge unusable.

use crate::board::EntityId;
use crate::delta::TokenId;
use crate::gossip::{Profile, ProfileAccount};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// A node's dense index in a [`Graph`]: ids are numbered in ascending order, so comparing
/// indices compares ids.
type Node = u32;

/// What a hop charges to forward an amount: `base + forwarded * ppm / 1_000_000`, rounded down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeePolicy {
    pub base: u128,
    pub ppm: u32,
}

impl FeePolicy {
    /// The fee for forwarding `forwarded`, or `None` if it does not fit a u128.
    pub fn fee_for(&self, forwarded: u128) -> Option<u128> {
        let proportional = forwarded.checked_mul(u128::from(self.ppm))? / 1_000_000;
        self.base.checked_add(proportional)
    }

    /// What must reach a hop for it to forward `forwarded`: the amount plus its fee.
    fn amount_to_forward(&self, forwarded: u128) -> Option<u128> {
        forwarded.checked_add(self.fee_for(forwarded)?)
    }
}

/// An edge `from → (the node it is listed under)` and how much it can carry.
#[derive(Debug, Clone, Copy)]
struct IncomingEdge {
    from: Node,
    capacity: u128,
}

/// The directed edges of one token, grouped by the node they go into (the search runs from
/// the receiver backwards): the edges into node `v` are `edges[first[v]..first[v + 1]]`.
#[derive(Debug, Clone)]
struct TokenEdges {
    first: Vec<u32>,
    edges: Vec<IncomingEdge>,
}

impl TokenEdges {
    fn edges_into(&self, node: Node) -> &[IncomingEdge] {
        let start = self.first[node as usize] as usize;
        let end = self.first[node as usize + 1] as usize;
        &self.edges[start..end]
    }

    fn capacity(&self, from: Node, to: Node) -> Option<u128> {
        self.edges_into(to)
            .iter()
            .find(|edge| edge.from == from)
            .map(|edge| edge.capacity)
    }
}

/// The capacity graph: every entity seen in a profile, as publisher or as a peer.
#[derive(Debug, Clone)]
pub struct Graph {
    ids: Vec<EntityId>,
    index: BTreeMap<EntityId, Node>,
    /// Each node's fee as an intermediate hop; `None` when it published no profile: a node
    /// whose terms we do not know is never asked to forward (it can still send or receive).
    fees: Vec<Option<FeePolicy>>,
    tokens: BTreeMap<TokenId, TokenEdges>,
}

/// Directed capacities keyed by `(token, from, to)`.
type DirectedCapacities = BTreeMap<(TokenId, EntityId, EntityId), u128>;

impl Graph {
    /// The graph that the profiles describe. When both ends of an account publish it, each
    /// direction gets the smaller of the two claims: they describe one account, seen at
    /// different times, and the smaller one is the safer guess.
    pub fn from_profiles<'a>(profiles: impl IntoIterator<Item = &'a Profile>) -> Self {
        Self::build(profiles, None)
    }

    /// Like [`Graph::from_profiles`], but the accounts of `me` have the exact capacities given
    /// (as `ProfileAccount`s from `me`'s side), replacing whatever gossip says about them.
    pub fn from_profiles_and_own_accounts<'a>(
        profiles: impl IntoIterator<Item = &'a Profile>,
        me: EntityId,
        own_accounts: &[ProfileAccount],
    ) -> Self {
        Self::build(profiles, Some((me, own_accounts)))
    }

    fn build<'a>(
        profiles: impl IntoIterator<Item = &'a Profile>,
        own: Option<(EntityId, &[ProfileAccount])>,
    ) -> Self {
        let mut fees: BTreeMap<EntityId, FeePolicy> = BTreeMap::new();
        let mut capacities = DirectedCapacities::new();
        for profile in profiles {
            fees.insert(
                profile.entity_id,
                FeePolicy {
                    base: profile.fee_base,
                    ppm: profile.fee_ppm,
                },
            );
            for account in &profile.accounts {
                for (key, capacity) in directed_edges(profile.entity_id, account) {
                    capacities
                        .entry(key)
                        .and_modify(|held| *held = (*held).min(capacity))
                        .or_insert(capacity);
                }
            }
        }
        if let Some((me, accounts)) = own {
            for account in accounts {
                for (key, capacity) in directed_edges(me, account) {
                    capacities.insert(key, capacity);
                }
            }
        }

        let mut all_ids: BTreeSet<EntityId> = fees.keys().copied().collect();
        for (_, from, to) in capacities.keys() {
            all_ids.insert(*from);
            all_ids.insert(*to);
        }
        let ids: Vec<EntityId> = all_ids.into_iter().collect();
        let index: BTreeMap<EntityId, Node> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, node_from_usize(i)))
            .collect();
        let node = |id: &EntityId| index.get(id).copied().unwrap_or(Node::MAX);

        // Per token, edges bucketed by the node they go into (a counting sort).
        let mut per_token: BTreeMap<TokenId, Vec<(Node, IncomingEdge)>> = BTreeMap::new();
        for ((token, from, to), capacity) in &capacities {
            per_token.entry(*token).or_default().push((
                node(to),
                IncomingEdge {
                    from: node(from),
                    capacity: *capacity,
                },
            ));
        }
        let tokens = per_token
            .into_iter()
            .map(|(token, list)| (token, bucket_by_target(ids.len(), list)))
            .collect();
        let fees = ids.iter().map(|id| fees.get(id).copied()).collect();
        Self {
            ids,
            index,
            fees,
            tokens,
        }
    }

    pub fn node_count(&self) -> usize {
        self.ids.len()
    }

    /// Directed edges over all tokens (two per account and token).
    pub fn edge_count(&self) -> usize {
        self.tokens.values().map(|t| t.edges.len()).sum()
    }

    pub fn contains(&self, entity: &EntityId) -> bool {
        self.index.contains_key(entity)
    }

    /// The capacity of the edge `from → to` in `token`, if there is one.
    pub fn capacity(&self, token: TokenId, from: &EntityId, to: &EntityId) -> Option<u128> {
        let edges = self.tokens.get(&token)?;
        edges.capacity(*self.index.get(from)?, *self.index.get(to)?)
    }

    /// The fee `entity` charges as an intermediate hop, if it published one.
    pub fn fee_policy(&self, entity: &EntityId) -> Option<FeePolicy> {
        let node = *self.index.get(entity)?;
        self.fees[node as usize]
    }
}

/// The two directed edges one account gives, seen from `owner`'s side.
fn directed_edges(
    owner: EntityId,
    account: &ProfileAccount,
) -> [((TokenId, EntityId, EntityId), u128); 2] {
    [
        ((account.token, owner, account.peer), account.out_capacity),
        ((account.token, account.peer, owner), account.in_capacity),
    ]
}

/// A graph's node count always fits: it is bounded by memory long before u32::MAX.
fn node_from_usize(i: usize) -> Node {
    Node::try_from(i).unwrap_or(Node::MAX)
}

fn bucket_by_target(node_count: usize, list: Vec<(Node, IncomingEdge)>) -> TokenEdges {
    let mut first = vec![0u32; node_count + 1];
    for (to, _) in &list {
        first[*to as usize + 1] += 1;
    }
    for i in 0..node_count {
        first[i + 1] += first[i];
    }
    let mut cursor = first.clone();
    let mut edges = vec![
        IncomingEdge {
            from: 0,
            capacity: 0
        };
        list.len()
    ];
    for (to, edge) in list {
        let slot = &mut cursor[to as usize];
        edges[*slot as usize] = edge;
        *slot += 1;
    }
    TokenEdges { first, edges }
}

/// A loop-free route from the sender (`hops[0]`) to the receiver (last hop).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub hops: Vec<EntityId>,
    /// What each edge `hops[i] → hops[i + 1]` carries: the last is the payment amount, each
    /// earlier one adds the fee of the hop it feeds.
    pub amounts: Vec<u128>,
    /// What the sender pays on top of the amount: `amounts[0] - amount`.
    pub total_fee: u128,
    /// An estimate that every edge can carry its amount, taking each edge's real liquidity
    /// as uniformly distributed over `0..=capacity` (gossip is stale, other payments move it):
    /// the product over edges of `(capacity + 1 - carried) / (capacity + 1)`.
    pub success_probability: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no profile gives the onion key of {0}")]
    NoProfile(EntityId),
    #[error("the amount to route is zero")]
    ZeroAmount,
    #[error("sender and receiver are the same entity")]
    SourceIsTarget,
    #[error("the sender {0} is not in the graph")]
    UnknownSource(EntityId),
    #[error("the receiver {0} is not in the graph")]
    UnknownTarget(EntityId),
    #[error("no route can carry the amount")]
    NoRoute,
}

/// Up to `k` loop-free routes for paying `amount` of `token` from `source` to `target`,
/// cheapest total fee first, by Yen's algorithm. Equal fees come in a deterministic order
/// (the same graph and request always give the same routes).
pub fn find_routes(
    graph: &Graph,
    source: &EntityId,
    target: &EntityId,
    token: TokenId,
    amount: u128,
    k: usize,
) -> Result<Vec<Route>, RouteError> {
    if amount == 0 {
        return Err(RouteError::ZeroAmount);
    }
    if source == target {
        return Err(RouteError::SourceIsTarget);
    }
    let source_node = *graph
        .index
        .get(source)
        .ok_or(RouteError::UnknownSource(*source))?;
    let target_node = *graph
        .index
        .get(target)
        .ok_or(RouteError::UnknownTarget(*target))?;
    let edges = graph.tokens.get(&token).ok_or(RouteError::NoRoute)?;
    if k == 0 {
        return Ok(Vec::new());
    }

    let pricing = Pricing {
        graph,
        edges,
        amount,
    };
    let mut search = Search::new(graph.node_count());
    let best = search
        .cheapest_path(&pricing, source_node, target_node, &[])
        .and_then(|hops| pricing.price(hops))
        .ok_or(RouteError::NoRoute)?;

    let mut found = vec![best];
    let mut candidates: BTreeSet<PricedPath> = BTreeSet::new();
    while found.len() < k {
        let Some(last) = found.last() else { break };
        let last_hops = last.hops.clone();
        // Deviate from the last route found at each of its hops but the receiver.
        for spur_at in 0..last_hops.len() - 1 {
            let root = &last_hops[..=spur_at];
            let spur = root[spur_at];
            // Edges out of the spur already taken by routes sharing this root.
            let taken_next: Vec<Node> = found
                .iter()
                .filter(|route| route.hops.len() > spur_at + 1 && route.hops[..=spur_at] == *root)
                .map(|route| route.hops[spur_at + 1])
                .collect();
            search.block(&root[..spur_at]);
            let spur_path = search.cheapest_path(&pricing, spur, target_node, &taken_next);
            search.unblock(&root[..spur_at]);
            let Some(spur_path) = spur_path else { continue };
            let mut hops = root[..spur_at].to_vec();
            hops.extend(spur_path);
            if let Some(priced) = pricing.price(hops) {
                candidates.insert(priced);
            }
        }
        let Some(next) = candidates.pop_first() else {
            break;
        };
        found.push(next);
    }
    Ok(found.iter().map(|path| pricing.to_route(path)).collect())
}

/// A path with its edge amounts, ordered by total fee, then length, then ids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PricedPath {
    total_fee: u128,
    hop_count: usize,
    hops: Vec<Node>,
    amounts: Vec<u128>,
}

/// The rules for what edges carry and hops charge, for one token and amount.
struct Pricing<'a> {
    graph: &'a Graph,
    edges: &'a TokenEdges,
    amount: u128,
}

impl Pricing<'_> {
    /// What must reach `hop` for it to forward `forwarded`, if it forwards at all.
    fn amount_to_forward(&self, hop: Node, forwarded: u128) -> Option<u128> {
        self.graph.fees[hop as usize]?.amount_to_forward(forwarded)
    }

    /// The amounts each edge of `hops` must carry, computed backwards from the receiver, or
    /// `None` if an edge is missing or too small, a hop does not forward, or an amount
    /// overflows.
    fn price(&self, hops: Vec<Node>) -> Option<PricedPath> {
        let edge_count = hops.len().checked_sub(1).filter(|&n| n > 0)?;
        let mut amounts = vec![0u128; edge_count];
        let mut carried = self.amount;
        for i in (0..edge_count).rev() {
            if self.edges.capacity(hops[i], hops[i + 1])? < carried {
                return None;
            }
            amounts[i] = carried;
            if i > 0 {
                carried = self.amount_to_forward(hops[i], carried)?;
            }
        }
        Some(PricedPath {
            total_fee: amounts[0].checked_sub(self.amount)?,
            hop_count: hops.len(),
            hops,
            amounts,
        })
    }

    fn to_route(&self, path: &PricedPath) -> Route {
        let success_probability = path
            .hops
            .windows(2)
            .zip(&path.amounts)
            .map(|(pair, &carried)| {
                let capacity = self.edges.capacity(pair[0], pair[1]).unwrap_or(0);
                let room = capacity as f64 + 1.0;
                (room - carried as f64) / room
            })
            .product();
        Route {
            hops: path
                .hops
                .iter()
                .map(|&n| self.graph.ids[n as usize])
                .collect(),
            amounts: path.amounts.clone(),
            total_fee: path.total_fee,
            success_probability,
        }
    }
}

/// Where the search stands with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Unreached,
    /// Reached, its `need` may still drop.
    Open,
    /// Its `need` is final.
    Settled,
}

/// Reusable working memory of the backward Dijkstra, sized to the graph once per query.
struct Search {
    progress: Vec<Progress>,
    /// For reached nodes: the least amount found so far that must arrive at the node (for
    /// the origin: that it must send) to deliver the payment.
    need: Vec<u128>,
    /// For reached nodes: the next hop towards the receiver.
    next: Vec<Node>,
    /// Nodes a path may not use (the root of a Yen deviation).
    blocked: Vec<bool>,
    /// The reached nodes, to reset only those.
    touched: Vec<Node>,
    heap: BinaryHeap<Reverse<(u128, Node)>>,
}

impl Search {
    fn new(node_count: usize) -> Self {
        Self {
            progress: vec![Progress::Unreached; node_count],
            need: vec![0; node_count],
            next: vec![Node::MAX; node_count],
            blocked: vec![false; node_count],
            touched: Vec::new(),
            heap: BinaryHeap::new(),
        }
    }

    fn block(&mut self, nodes: &[Node]) {
        for &n in nodes {
            self.blocked[n as usize] = true;
        }
    }

    fn unblock(&mut self, nodes: &[Node]) {
        for &n in nodes {
            self.blocked[n as usize] = false;
        }
    }

    fn reset(&mut self) {
        for &n in &self.touched {
            self.progress[n as usize] = Progress::Unreached;
        }
        self.touched.clear();
        self.heap.clear();
    }

    fn reach(&mut self, node: Node, need: u128, next: Node) {
        let i = node as usize;
        if self.progress[i] == Progress::Unreached {
            self.touched.push(node);
            self.progress[i] = Progress::Open;
        }
        self.need[i] = need;
        self.next[i] = next;
        self.heap.push(Reverse((need, node)));
    }

    /// Whether `need` would improve on what `node` has (not when it is settled).
    fn improves(&self, node: Node, need: u128) -> bool {
        match self.progress[node as usize] {
            Progress::Unreached => true,
            Progress::Open => need < self.need[node as usize],
            Progress::Settled => false,
        }
    }

    /// The path from `origin` to `target` needing the least amount at `origin`, avoiding
    /// blocked nodes and the edges `origin → n` for `n` in `excluded_next`. The origin pays no
    /// fee to itself; every other hop before the target must have a fee policy.
    fn cheapest_path(
        &mut self,
        pricing: &Pricing<'_>,
        origin: Node,
        target: Node,
        excluded_next: &[Node],
    ) -> Option<Vec<Node>> {
        self.reset();
        self.reach(target, pricing.amount, Node::MAX);
        loop {
            let Reverse((need, node)) = self.heap.pop()?;
            let i = node as usize;
            // Skip entries left behind by a later, smaller need.
            if self.progress[i] == Progress::Settled || need > self.need[i] {
                continue;
            }
            self.progress[i] = Progress::Settled;
            if node == origin {
                break;
            }
            for edge in pricing.edges.edges_into(node) {
                let from = edge.from;
                // `need` is a lower bound of what `from` would need (fees are never
                // negative), so a node that already does as well is skipped before any fee is
                // computed.
                if edge.capacity < need || self.blocked[from as usize] || !self.improves(from, need)
                {
                    continue;
                }
                let candidate = if from == origin {
                    if excluded_next.contains(&node) {
                        continue;
                    }
                    need
                } else {
                    match pricing.amount_to_forward(from, need) {
                        Some(amount) => amount,
                        None => continue,
                    }
                };
                if self.improves(from, candidate) {
                    self.reach(from, candidate, node);
                }
            }
        }
        let mut path = vec![origin];
        let mut at = origin;
        while at != target {
            at = self.next[at as usize];
            path.push(at);
        }
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::Board;
    use crate::crypto::Address;
    use proptest::prelude::*;

    const TOKEN: TokenId = 1;

    /// Entity `n` of a test graph: ids ascend with `n`.
    fn id(n: u8) -> EntityId {
        EntityId([n; 32])
    }

    fn profile(n: u8, fee_base: u128, fee_ppm: u32, accounts: &[(u8, u128, u128)]) -> Profile {
        Profile {
            entity_id: id(n),
            // Routing trusts the store to have checked boards; any board will do here.
            board: Board::single(Address([n; 20])),
            onion_key: crate::crypto::SignerKey::from_bytes(&[9; 32])
                .unwrap()
                .public_key(),
            name: format!("node {n}"),
            endpoint: String::new(),
            is_hub: true,
            fee_base,
            fee_ppm,
            accounts: accounts
                .iter()
                .map(|&(peer, out_capacity, in_capacity)| ProfileAccount {
                    peer: id(peer),
                    token: TOKEN,
                    out_capacity,
                    in_capacity,
                })
                .collect(),
            updated_at: 0,
        }
    }

    fn hops(route: &Route) -> Vec<u8> {
        route.hops.iter().map(|h| h.0[0]).collect()
    }

    #[test]
    fn fees_accumulate_backwards_from_the_receiver() {
        // 1 → 2 → 3 → 4; hop 2 charges 10 + 1%, hop 3 charges 5 + 0.2%.
        let profiles = [
            profile(1, 0, 0, &[(2, 10_000, 0)]),
            profile(2, 10, 10_000, &[(3, 10_000, 0)]),
            profile(3, 5, 2_000, &[(4, 10_000, 0)]),
            profile(4, 0, 0, &[]),
        ];
        let graph = Graph::from_profiles(&profiles);
        let routes = find_routes(&graph, &id(1), &id(4), TOKEN, 1_000, 1).unwrap();
        assert_eq!(routes.len(), 1);
        let route = &routes[0];
        assert_eq!(hops(route), vec![1, 2, 3, 4]);
        // 3 forwards 1000: fee 5 + 2 = 7, so 3 must receive 1007.
        // 2 forwards 1007: fee 10 + 10 (1% of 1007, rounded down) = 20, so 2 receives 1027.
        assert_eq!(route.amounts, vec![1_027, 1_007, 1_000]);
        assert_eq!(route.total_fee, 27);
        let expected = (10_001.0 - 1_027.0) / 10_001.0
            * ((10_001.0 - 1_007.0) / 10_001.0)
            * ((10_001.0 - 1_000.0) / 10_001.0);
        assert!((route.success_probability - expected).abs() < 1e-12);
    }

    #[test]
    fn capacity_is_directional() {
        // 1 lists the account with 2: it can send 500 but receive 5_000 (2 can send it 5_000).
        let profiles = [profile(1, 0, 0, &[(2, 500, 5_000)]), profile(2, 0, 0, &[])];
        let graph = Graph::from_profiles(&profiles);
        assert_eq!(graph.capacity(TOKEN, &id(1), &id(2)), Some(500));
        assert_eq!(graph.capacity(TOKEN, &id(2), &id(1)), Some(5_000));
        assert_eq!(
            find_routes(&graph, &id(1), &id(2), TOKEN, 1_000, 1),
            Err(RouteError::NoRoute)
        );
        let back = find_routes(&graph, &id(2), &id(1), TOKEN, 1_000, 1).unwrap();
        assert_eq!(hops(&back[0]), vec![2, 1]);
        assert!(find_routes(&graph, &id(1), &id(2), TOKEN, 500, 1).is_ok());
    }

    #[test]
    fn an_edge_must_carry_the_fees_of_later_hops_too() {
        // 1 → 2 → 3: the first edge has room for the amount but not for 2's fee on top.
        let profiles = [
            profile(1, 0, 0, &[(2, 1_005, 0)]),
            profile(2, 10, 0, &[(3, 10_000, 0)]),
        ];
        let graph = Graph::from_profiles(&profiles);
        assert_eq!(
            find_routes(&graph, &id(1), &id(3), TOKEN, 1_000, 1),
            Err(RouteError::NoRoute)
        );
        assert!(find_routes(&graph, &id(1), &id(3), TOKEN, 995, 1).is_ok());
    }

    #[test]
    fn the_cheapest_route_wins_and_alternatives_follow_by_fee() {
        // Two ways from 1 to 4: via 2 (fee 50) or via 3 (fee 20), and via 2 then 3 (fee 70).
        let profiles = [
            profile(1, 0, 0, &[(2, 10_000, 0), (3, 10_000, 0)]),
            profile(2, 50, 0, &[(4, 10_000, 0), (3, 10_000, 0)]),
            profile(3, 20, 0, &[(4, 10_000, 0)]),
            profile(4, 0, 0, &[]),
        ];
        let graph = Graph::from_profiles(&profiles);
        let routes = find_routes(&graph, &id(1), &id(4), TOKEN, 100, 5).unwrap();
        let summary: Vec<(Vec<u8>, u128)> = routes.iter().map(|r| (hops(r), r.total_fee)).collect();
        assert_eq!(
            summary,
            vec![
                (vec![1, 3, 4], 20),
                (vec![1, 2, 4], 50),
                (vec![1, 2, 3, 4], 70)
            ]
        );
        for route in &routes {
            let distinct: BTreeSet<_> = route.hops.iter().collect();
            assert_eq!(distinct.len(), route.hops.len(), "a loop in {route:?}");
        }
    }

    #[test]
    fn no_route_loops_back_through_a_hop() {
        // A cycle 2 → 3 → 2 next to the only way out (2 → 5).
        let profiles = [
            profile(1, 0, 0, &[(2, 10_000, 0)]),
            profile(2, 1, 0, &[(3, 10_000, 10_000), (5, 10_000, 0)]),
            profile(3, 1, 0, &[]),
        ];
        let graph = Graph::from_profiles(&profiles);
        let routes = find_routes(&graph, &id(1), &id(5), TOKEN, 100, 10).unwrap();
        assert_eq!(routes.len(), 1);
        assert_eq!(hops(&routes[0]), vec![1, 2, 5]);
    }

    #[test]
    fn a_node_without_a_profile_does_not_forward() {
        // 2 appears only as 1's and 3's peer: it can receive, but not forward to 3.
        let profiles = [
            profile(1, 0, 0, &[(2, 10_000, 10_000)]),
            profile(3, 0, 0, &[(2, 10_000, 10_000)]),
        ];
        let graph = Graph::from_profiles(&profiles);
        assert_eq!(graph.fee_policy(&id(2)), None);
        assert!(find_routes(&graph, &id(1), &id(2), TOKEN, 100, 1).is_ok());
        assert_eq!(
            find_routes(&graph, &id(1), &id(3), TOKEN, 100, 1),
            Err(RouteError::NoRoute)
        );
    }

    #[test]
    fn both_ends_claims_take_the_smaller_and_own_accounts_are_exact() {
        let profiles = [
            profile(1, 0, 0, &[(2, 800, 300)]),
            profile(2, 0, 0, &[(1, 400, 900)]),
        ];
        let graph = Graph::from_profiles(&profiles);
        assert_eq!(graph.capacity(TOKEN, &id(1), &id(2)), Some(800));
        assert_eq!(graph.capacity(TOKEN, &id(2), &id(1)), Some(300));
        let exact = [ProfileAccount {
            peer: id(2),
            token: TOKEN,
            out_capacity: 1_500,
            in_capacity: 50,
        }];
        let graph = Graph::from_profiles_and_own_accounts(&profiles, id(1), &exact);
        assert_eq!(graph.capacity(TOKEN, &id(1), &id(2)), Some(1_500));
        assert_eq!(graph.capacity(TOKEN, &id(2), &id(1)), Some(50));
    }

    #[test]
    fn overflowing_amounts_make_an_edge_unusable() {
        let profiles = [
            profile(1, 0, 0, &[(2, u128::MAX, 0)]),
            profile(2, 1, 1_000_000, &[(3, u128::MAX, 0)]),
        ];
        let graph = Graph::from_profiles(&profiles);
        assert_eq!(
            find_routes(&graph, &id(1), &id(3), TOKEN, u128::MAX / 2, 1),
            Err(RouteError::NoRoute)
        );
        assert!(find_routes(&graph, &id(1), &id(3), TOKEN, u128::MAX, 1).is_err());
        let direct = find_routes(&graph, &id(1), &id(2), TOKEN, u128::MAX, 1).unwrap();
        assert_eq!(direct[0].total_fee, 0);
    }

    #[test]
    fn bad_requests_get_typed_errors() {
        let graph = Graph::from_profiles(&[profile(1, 0, 0, &[(2, 10, 10)])]);
        let r = |s: u8, t: u8, token: TokenId, amount: u128| {
            find_routes(&graph, &id(s), &id(t), token, amount, 1)
        };
        assert_eq!(r(1, 2, TOKEN, 0), Err(RouteError::ZeroAmount));
        assert_eq!(r(1, 1, TOKEN, 5), Err(RouteError::SourceIsTarget));
        assert_eq!(r(9, 2, TOKEN, 5), Err(RouteError::UnknownSource(id(9))));
        assert_eq!(r(1, 9, TOKEN, 5), Err(RouteError::UnknownTarget(id(9))));
        assert_eq!(r(1, 2, 77, 5), Err(RouteError::NoRoute));
        assert_eq!(find_routes(&graph, &id(1), &id(2), TOKEN, 5, 0), Ok(vec![]));
    }

    /// A random small graph: up to 7 nodes, each pair with at most one account (listed by
    /// the smaller node), random fees.
    #[derive(Debug, Clone)]
    struct SmallGraph {
        fees: Vec<(u128, u32)>,
        /// (a, b, capacity a → b, capacity b → a), a < b.
        accounts: Vec<(u8, u8, u128, u128)>,
    }

    impl SmallGraph {
        fn profiles(&self) -> Vec<Profile> {
            (0..self.fees.len())
                .map(|a| {
                    let (base, ppm) = self.fees[a];
                    let accounts: Vec<_> = self
                        .accounts
                        .iter()
                        .filter(|acc| usize::from(acc.0) == a)
                        .map(|&(_, b, out, inc)| (b, out, inc))
                        .collect();
                    profile(a as u8, base, ppm, &accounts)
                })
                .collect()
        }

        fn capacity(&self, from: u8, to: u8) -> Option<u128> {
            self.accounts.iter().find_map(|&(a, b, ab, ba)| {
                if (a, b) == (from, to) {
                    Some(ab)
                } else if (a, b) == (to, from) {
                    Some(ba)
                } else {
                    None
                }
            })
        }

        /// The total fee of every simple path from `s` to `t` that can carry `amount`,
        /// priced independently of the module: walk back from `t` adding each hop's fee.
        fn all_feasible_fees(&self, s: u8, t: u8, amount: u128) -> Vec<u128> {
            let mut fees = Vec::new();
            let mut path = vec![s];
            self.extend(&mut path, t, amount, &mut fees);
            fees.sort();
            fees
        }

        fn extend(&self, path: &mut Vec<u8>, t: u8, amount: u128, fees: &mut Vec<u128>) {
            let last = *path.last().unwrap();
            if last == t {
                if let Some(fee) = self.price(path, amount) {
                    fees.push(fee);
                }
                return;
            }
            for next in 0..self.fees.len() as u8 {
                if !path.contains(&next) && self.capacity(last, next).is_some() {
                    path.push(next);
                    self.extend(path, t, amount, fees);
                    path.pop();
                }
            }
        }

        fn price(&self, path: &[u8], amount: u128) -> Option<u128> {
            let mut carried = amount;
            for i in (1..path.len()).rev() {
                if self.capacity(path[i - 1], path[i])? < carried {
                    return None;
                }
                let forwarder = path[i - 1];
                if i - 1 > 0 {
                    let (base, ppm) = self.fees[usize::from(forwarder)];
                    carried += base + carried * u128::from(ppm) / 1_000_000;
                }
            }
            Some(carried - amount)
        }
    }

    fn small_graph() -> impl Strategy<Value = SmallGraph> {
        (2usize..=7).prop_flat_map(|n| {
            let pairs: Vec<(u8, u8)> = (0..n as u8)
                .flat_map(|a| (a + 1..n as u8).map(move |b| (a, b)))
                .collect();
            let pair_count = pairs.len();
            (
                proptest::collection::vec((0u128..50, 0u32..50_000), n),
                proptest::collection::vec(
                    (proptest::bool::weighted(0.6), 0u128..3_000, 0u128..3_000),
                    pair_count,
                ),
            )
                .prop_map(move |(fees, present)| SmallGraph {
                    fees,
                    accounts: pairs
                        .iter()
                        .zip(present)
                        .filter(|(_, (present, _, _))| *present)
                        .map(|(&(a, b), (_, ab, ba))| (a, b, ab, ba))
                        .collect(),
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn routes_match_brute_force_over_all_simple_paths(
            graph in small_graph(),
            ends in (0u8..7, 0u8..7),
            amount in 1u128..1_500,
        ) {
            let n = graph.fees.len() as u8;
            let (s, t) = (ends.0 % n, ends.1 % n);
            prop_assume!(s != t);
            let built = Graph::from_profiles(&graph.profiles());
            let expected = graph.all_feasible_fees(s, t, amount);
            let k = 4;
            match find_routes(&built, &id(s), &id(t), TOKEN, amount, k) {
                Ok(routes) => {
                    let fees: Vec<u128> = routes.iter().map(|r| r.total_fee).collect();
                    let best_k: Vec<u128> = expected.iter().take(k).copied().collect();
                    prop_assert_eq!(fees, best_k);
                    for route in &routes {
                        let path = hops(route);
                        let distinct: BTreeSet<_> = path.iter().collect();
                        prop_assert_eq!(distinct.len(), path.len());
                        prop_assert_eq!(graph.price(&path, amount), Some(route.total_fee));
                        prop_assert_eq!(*route.amounts.last().unwrap(), amount);
                        prop_assert!(route.success_probability > 0.0);
                        prop_assert!(route.success_probability <= 1.0);
                    }
                }
                Err(RouteError::NoRoute) => prop_assert!(expected.is_empty()),
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}
