//! The writer task: the one owner of the runtime and the store.
//!
//! Each turn takes what arrived (requests, peer messages, chain ranges), makes runtime inputs of
//! it (one per peer, so a bad message is traced to its sender, and one for our own commands and
//! chain events), appends them to the WAL in one transaction while it applies them (see
//! `wal`), and only once they are on disk sends the outputs.

use super::chain_worker::ChainJob;
use super::metrics::{Metrics, PaymentOutcome, gauge_value};
use super::netting::{self, NettingBatch};
use super::orders::{self, NEVER_EXPIRES_MS, Orders};
use super::wal::WalAppender;
use super::{NodeInput, settlement, signing, view};
use crate::api::{
    BOOK_ORDERS_SHOWN, ChainStatus, ChainTxView, ForwardView, ForwardsView, FrameSummary, LogLevel,
    LogLine, NettingPlan, NettingView, NodeView, PendingRequest, Request, Response, RouteView,
};
use crate::chain::client::ChainConfig;
use crate::config::Config;
use crate::net::{Net, NetEvent, WireMessage};
use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use xln_core::account::{AccountTx, SettlementScope};
use xln_core::board::{Board, EntityId, QuorumError, QuorumSignature};
use xln_core::crypto::{Address, Hash, SignerKey};
use xln_core::delta::TokenId;
use xln_core::entity::{
    ChainRequest, CycleStatus, DisputeStart, EntityEvent, EntityMessage, EntityState, EntityTx,
    KEPT_FINISHED_PAYMENTS, NettingOrder, PaymentOrder, RouteHop, SwapOrder,
};
use xln_core::gossip::{Profile, ProfileAccount, ProfileError, ProfileStore, SignedProfile};
use xln_core::netting::PositionShare;
use xln_core::onion::Preimage;
use xln_core::routing::{FeePolicy, Graph, find_routes};
use xln_core::runtime::{
    Command, Envelope, Payload, ReplicaId, Runtime, RuntimeError, RuntimeEvent, RuntimeInput,
    RuntimeOutput,
};

/// Most items taken from the queue in one turn.
const MAX_BATCH: usize = 2_048;
/// Lines of the log kept for the view.
const KEPT_LOG_LINES: usize = 500;
/// Frames kept per account for the view.
const KEPT_FRAMES: usize = 20;
/// Forwards kept for the view.
const KEPT_FORWARDS: usize = 200;
/// How often our profile is re-published even when nothing changed (a peer that connects gets
/// every profile we hold at once, so this is only a refresh).
const PROFILE_EVERY_MS: u64 = 60_000;
/// Least time between two profiles of a hub, and of any other node. Profiles are signed and
/// a hub floods each to all its peers, so every wallet's profile costs a message and a
/// signature check at each of the hub's peers: with a wallet's capacities changing at every
/// payment, short gaps made the gossip crowd out the payments (found by the load test,
/// benches/node_load.rs). Routes to a wallet run over its hub's edge, which the hub's own,
/// more frequent profile describes, so a wallet's profile can lag.
const HUB_PROFILE_MIN_GAP_MS: u64 = 1_000;
const PROFILE_MIN_GAP_MS: u64 = 10_000;
/// Our netting positions go out at most this often when they change ...
const POSITIONS_EVERY_MS: u64 = 2_000;
/// ... and at least this often, for peers that restarted or connected since.
const POSITIONS_REFRESH_MS: u64 = 60_000;
/// Least time between two rebuilds of the view.
const VIEW_EVERY: Duration = Duration::from_millis(100);
/// Payments that share one onion session before a new one is drawn.
const ONION_SESSION_USES: u32 = 256;
/// Candidate routes shown for a payment.
const ROUTES_SHOWN: usize = 3;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    // The OS random source failing is not something a node can work around.
    if let Err(error) = getrandom::fill(&mut bytes) {
        panic!("the operating system's random source failed: {error}");
    }
    bytes
}

pub(super) struct WriterParts {
    pub runtime: Runtime,
    pub store: Arc<Store>,
    pub wal: WalAppender,
    pub seq: u64,
    pub entity: EntityId,
    pub board: Board,
    pub domain: Hash,
    pub key: SignerKey,
    pub config: Config,
    pub chain: ChainConfig,
    pub net: Net,
    pub chain_jobs: mpsc::Sender<ChainJob>,
    pub views: watch::Sender<Arc<NodeView>>,
    pub metrics: Arc<Metrics>,
    pub metrics_addr: Option<std::net::SocketAddr>,
}

pub(super) struct Writer {
    runtime: Runtime,
    store: Arc<Store>,
    wal: WalAppender,
    /// The hash of the runtime's state, kept up to date by each turn: the next turn logs it
    /// with its first input (see `Store::append_batch`).
    state_hash: Hash,
    seq: u64,
    last_snapshot_seq: u64,
    /// Bytes logged since the last snapshot.
    logged_since_snapshot: u64,
    entity: EntityId,
    board: Board,
    domain: Hash,
    key: SignerKey,
    config: Config,
    chain: ChainConfig,
    net: Net,
    chain_jobs: mpsc::Sender<ChainJob>,
    views: watch::Sender<Arc<NodeView>>,
    metrics: Arc<Metrics>,
    metrics_addr: Option<std::net::SocketAddr>,
    profiles: ProfileStore,
    frames: BTreeMap<EntityId, Vec<FrameSummary>>,
    started: BTreeMap<Hash, (u64, usize)>,
    /// `started` is pruned when it grows past this: twice its size after the last pruning, so
    /// that pruning (a pass over all of it) costs O(1) per payment, amortized.
    started_prune_at: usize,
    forwards: ForwardsView,
    /// Our swap orders as their events came.
    orders: Orders,
    log: VecDeque<LogLine>,
    chain_status: ChainStatus,
    pending_chain: Vec<ChainTxView>,
    disputed: Vec<EntityId>,
    last_input_at: u64,
    last_profile_at: u64,
    profile_dirty: bool,
    /// When the view was last rebuilt, and whether it is behind the state.
    view_published_at: std::time::Instant,
    view_stale: bool,
    /// Requests waiting for a payment of ours to end.
    payment_waiters: BTreeMap<Hash, Vec<oneshot::Sender<Response>>>,
    /// The onion session seed and how many payments used it (see `onion_seed`).
    onion_session: ([u8; 32], u32),
    /// Peers' settlement proposals (by peer and digest) our core refused to accept: not
    /// offered again.
    refused_settlements: BTreeSet<(EntityId, Hash)>,
    /// Peers' settlement proposals (by peer and digest) we do not sign for now (our reserve
    /// does not cover them with our other pending settlements), logged once each.
    waiting_settlements: BTreeSet<(EntityId, Hash)>,
    /// The netting under way: its signed settlements wait here to go on chain together.
    netting_batch: Option<NettingBatch>,
    /// Netting proposals the operator dismissed, by token, with the proposal they saw: shown
    /// again once it changes.
    dismissed_netting: BTreeMap<TokenId, NettingPlan>,
    /// The positions our peers shared for netting, by the entity that shared them.
    peer_positions: BTreeMap<EntityId, PositionShare>,
    /// When we last shared ours, and what.
    positions_shared: (u64, Option<PositionShare>),
    /// Our board's signing rounds (we are a multi-signer entity's proposer).
    rounds: signing::Rounds,
    /// Acceptances of peers' settlements whose quorum our board gathered, for the next frame.
    signed_acceptances: Vec<EntityTx>,
    /// Settlements (by peer and digest) whose acceptance with the board's quorum we submitted:
    /// not signed again.
    accepting: BTreeSet<(EntityId, Hash)>,
}

/// What one turn will do, gathered from the items of the batch.
#[derive(Default)]
struct Turn {
    commands: Vec<Command>,
    chain_events: Vec<xln_core::runtime::ChainEvent>,
    by_peer: BTreeMap<Address, Vec<Envelope>>,
    /// Requests answered once the inputs are applied: reads, and submissions whose
    /// transaction may be dropped.
    reads: Vec<PendingRequest>,
    submitted: Vec<Submitted>,
    /// Messages to our own replica (a signing round asks it too).
    own_messages: Vec<Envelope>,
}

struct Submitted {
    /// Submitted together; the answer is an error only if every one was dropped.
    txs: Vec<EntityTx>,
    reply: oneshot::Sender<Response>,
    ok: Response,
}

impl Writer {
    pub fn new(parts: WriterParts) -> Self {
        let chain_status = ChainStatus {
            rpc_url: parts.chain.rpc_url.clone(),
            chain_id: parts.chain.chain_id,
            ..ChainStatus::default()
        };
        let orders = parts
            .runtime
            .replica(&ReplicaId {
                entity: parts.entity,
                signer: parts.key.address(),
            })
            .map(|replica| Orders::open_in(replica.state(), now_ms()))
            .unwrap_or_default();
        Self {
            last_snapshot_seq: parts.seq,
            logged_since_snapshot: 0,
            state_hash: parts.runtime.state().hash(),
            runtime: parts.runtime,
            store: parts.store,
            wal: parts.wal,
            seq: parts.seq,
            entity: parts.entity,
            board: parts.board,
            domain: parts.domain,
            key: parts.key,
            config: parts.config,
            chain: parts.chain,
            net: parts.net,
            chain_jobs: parts.chain_jobs,
            views: parts.views,
            metrics: parts.metrics,
            metrics_addr: parts.metrics_addr,
            profiles: ProfileStore::new(),
            frames: BTreeMap::new(),
            started: BTreeMap::new(),
            started_prune_at: 2 * KEPT_FINISHED_PAYMENTS,
            forwards: ForwardsView::default(),
            orders,
            log: VecDeque::new(),
            chain_status,
            pending_chain: Vec::new(),
            disputed: Vec::new(),
            last_input_at: 0,
            last_profile_at: 0,
            profile_dirty: true,
            onion_session: (random_bytes(), 0),
            payment_waiters: BTreeMap::new(),
            refused_settlements: BTreeSet::new(),
            waiting_settlements: BTreeSet::new(),
            netting_batch: None,
            dismissed_netting: BTreeMap::new(),
            peer_positions: BTreeMap::new(),
            positions_shared: (0, None),
            rounds: signing::Rounds::default(),
            signed_acceptances: Vec::new(),
            accepting: BTreeSet::new(),
            view_published_at: std::time::Instant::now(),
            view_stale: true,
        }
    }

    /// The onion session seed for the next payment. Reusing a session for a while saves an
    /// ECDH per hop per payment (see `onion`); it is renewed every `ONION_SESSION_USES`
    /// payments, since payments of one session can be linked by the hops they share.
    fn onion_seed(&mut self) -> [u8; 32] {
        if self.onion_session.1 >= ONION_SESSION_USES {
            self.onion_session = (random_bytes(), 0);
        }
        self.onion_session.1 += 1;
        self.onion_session.0
    }

    fn state(&self) -> Option<&EntityState> {
        self.runtime
            .replica(&ReplicaId {
                entity: self.entity,
                signer: self.key.address(),
            })
            .map(|r| r.state())
    }

    fn is_proposer(&self) -> bool {
        self.board
            .members()
            .first()
            .is_some_and(|m| m.signer == self.key.address())
    }

    pub fn warn(&mut self, text: String) {
        self.log_line(LogLevel::Warn, text);
    }

    fn log_line(&mut self, level: LogLevel, text: String) {
        match level {
            LogLevel::Error => tracing::error!("{text}"),
            LogLevel::Warn => tracing::warn!("{text}"),
            LogLevel::Info => tracing::info!("{text}"),
            LogLevel::Debug => tracing::debug!("{text}"),
        }
        self.log.push_back(LogLine {
            timestamp: now_ms(),
            level,
            text,
        });
        while self.log.len() > KEPT_LOG_LINES {
            self.log.pop_front();
        }
    }

    /// On first start: our replica of the entity, and our fees.
    pub fn ensure_replica(&mut self) -> anyhow::Result<()> {
        let fees = FeePolicy {
            base: u128::from(self.config.fees.base),
            ppm: self.config.fees.ppm,
        };
        let mut commands = Vec::new();
        if self.state().is_none() {
            commands.push(Command::AddReplica {
                board: self.board.clone(),
                signer: self.key.address(),
                domain: self.domain,
            });
        }
        if self.is_proposer() && self.state().is_none_or(|s| s.fees != fees) {
            commands.push(Command::Submit {
                entity: self.entity,
                txs: vec![EntityTx::SetFees(fees)],
            });
        }
        if commands.is_empty() {
            return Ok(());
        }
        let input = RuntimeInput {
            timestamp: now_ms(),
            commands,
            ..RuntimeInput::default()
        };
        let outputs = self.apply_and_persist(vec![(input, None)])?;
        for (out, _) in outputs {
            for event in &out.events {
                if let RuntimeEvent::Rejected(error) = event {
                    anyhow::bail!("{error}");
                }
            }
            self.dispatch(out);
        }
        self.publish_view();
        Ok(())
    }

    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<NodeInput>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.node.tick_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.publish_view();
        let result = loop {
            let first = tokio::select! {
                item = inputs.recv() => match item {
                    Some(item) => Some(item),
                    None => break Ok(()),
                },
                _ = tick.tick() => None,
                _ = shutdown.changed() => break Ok(()),
            };
            let mut batch: Vec<NodeInput> = first.into_iter().collect();
            while batch.len() < MAX_BATCH {
                match inputs.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            if let Err(error) = self.turn(batch) {
                self.log_line(LogLevel::Error, format!("stopping: {error:#}"));
                break Err(error);
            }
        };
        self.net.shutdown().await;
        result
    }

    /// One turn of the loop: see the module doc.
    fn turn(&mut self, batch: Vec<NodeInput>) -> anyhow::Result<()> {
        let now = now_ms();
        let mut turn = Turn::default();
        let had_items = !batch.is_empty();
        for item in batch {
            self.take(item, now, &mut turn);
        }
        self.accept_settlements(&mut turn);
        self.tend_rounds(now, &mut turn);
        let mut inputs: Vec<(RuntimeInput, Option<Address>)> = Vec::new();
        let due = self.tick_due(now);
        if !turn.commands.is_empty()
            || !turn.chain_events.is_empty()
            || !turn.own_messages.is_empty()
            || due
        {
            inputs.push((
                RuntimeInput {
                    timestamp: now,
                    commands: std::mem::take(&mut turn.commands),
                    chain_events: std::mem::take(&mut turn.chain_events),
                    messages: std::mem::take(&mut turn.own_messages),
                },
                None,
            ));
        }
        for (peer, messages) in std::mem::take(&mut turn.by_peer) {
            inputs.push((
                RuntimeInput {
                    timestamp: now,
                    messages,
                    ..RuntimeInput::default()
                },
                Some(peer),
            ));
        }
        let applied = !inputs.is_empty();
        let outputs = if applied {
            self.last_input_at = now;
            self.apply_and_persist(inputs)?
        } else {
            Vec::new()
        };
        let mut events: Vec<RuntimeEvent> = Vec::new();
        for (out, peer) in outputs {
            if let Some(peer) = peer {
                self.check_peer(peer, &out.events);
            }
            events.extend(out.events.iter().cloned());
            self.dispatch(out);
        }
        for event in &events {
            if let RuntimeEvent::TxDropped { tx, .. } = event
                && let EntityTx::AcceptSettlement { peer, digest, .. } = **tx
            {
                self.refused_settlements.insert((peer, digest));
            }
            if let RuntimeEvent::CoSigned {
                digest,
                signer,
                signature,
                ..
            } = event
            {
                self.co_signed(*digest, *signer, *signature);
            }
        }
        // Our orders numbered in this turn, each answered once, in the order they were placed.
        let mut placed: Vec<(u64, SwapOrder)> = events
            .iter()
            .filter_map(|e| match e {
                RuntimeEvent::Entity {
                    event: EntityEvent::SwapOffered { offer_id, order },
                    ..
                } => Some((*offer_id, order.clone())),
                _ => None,
            })
            .collect();
        for submitted in turn.submitted {
            let dropped: Vec<String> = submitted
                .txs
                .iter()
                .filter_map(|submitted| {
                    events.iter().find_map(|e| match e {
                        RuntimeEvent::TxDropped { tx, error, .. } if **tx == *submitted => {
                            Some(error.to_string())
                        }
                        _ => None,
                    })
                })
                .collect();
            let response = match (submitted.txs.as_slice(), submitted.ok) {
                (txs, _) if dropped.len() == txs.len() && !dropped.is_empty() => Response::Error {
                    message: dropped.join("; "),
                },
                ([EntityTx::PlaceSwap(order)], ok) => self.placed_response(order, &mut placed, ok),
                (_, Response::Done { what }) if !dropped.is_empty() => Response::Done {
                    what: format!("{what}; refused: {}", dropped.join("; ")),
                },
                (_, ok) => ok,
            };
            let _ = submitted.reply.send(response);
        }
        for (request, reply) in turn.reads {
            if let Request::AwaitPayment { hashlock } = request
                && self.payment_pending(&hashlock)
            {
                self.payment_waiters
                    .entry(hashlock)
                    .or_default()
                    .push(reply);
                continue;
            }
            let response = self.read(request);
            let _ = reply.send(response);
        }
        self.answer_payment_waiters();
        self.flush_netting_batch(now);
        self.maybe_share_positions(now);
        self.maybe_publish_profile(now);
        self.view_stale |= applied || had_items;
        if self.view_stale && self.view_published_at.elapsed() >= VIEW_EVERY {
            self.publish_view();
        }
        Ok(())
    }

    /// Is a clock tick due: something in flight that time can move (expiry, re-stamping)?
    fn tick_due(&self, now: u64) -> bool {
        if now < self.last_input_at + self.config.node.tick_ms {
            return false;
        }
        let Some(state) = self.state() else {
            return false;
        };
        let clock = xln_core::account::Clock {
            timestamp: now,
            j_height: state.j_height,
        };
        state.accounts.values().any(|entry| {
            entry.account.pending().is_some()
                || !entry.account.mempool().is_empty()
                || !entry.account.state().locks.is_empty()
        }) || !state.awaiting.is_empty()
            // Offers of our peers that expired: the tick releases them.
            || !state.expired_offers(clock).is_empty()
            // Netting rounds and agreements expire with time.
            || !state.netting_rounds.is_empty()
            || !state.netting_agreements.is_empty()
    }

    /// The answer to an order of ours that the entity took: the order with its number, once
    /// the entity numbered it in this turn (a board member that is not the proposer only
    /// forwards it: its number comes when the frame commits).
    fn placed_response(
        &self,
        order: &SwapOrder,
        placed: &mut Vec<(u64, SwapOrder)>,
        forwarded: Response,
    ) -> Response {
        let Some(index) = placed.iter().position(|(_, o)| o == order) else {
            return forwarded;
        };
        let (offer_id, _) = placed.remove(index);
        match self.orders.get(&order.peer, offer_id) {
            Some(view) => Response::OrderPlaced(view.clone()),
            None => forwarded,
        }
    }

    /// Sorts one queued item into the turn.
    fn take(&mut self, item: NodeInput, now: u64, turn: &mut Turn) {
        match item {
            NodeInput::Request((request, reply)) => self.take_request(request, reply, now, turn),
            NodeInput::Net(event) => self.take_net_event(*event, now, turn),
            NodeInput::Chain(range) => {
                self.follow_disputes(&range.events);
                self.take_chain_range(range, turn);
            }
            NodeInput::ChainDone { what, result } => {
                self.pending_chain.retain(|p| p.what != what);
                match result {
                    Ok(outcome) => self.log_line(
                        LogLevel::Info,
                        format!(
                            "{what}: mined in block {} ({} gas)",
                            outcome.block, outcome.gas_used
                        ),
                    ),
                    Err(error) => self.log_line(LogLevel::Error, format!("{what}: {error}")),
                }
            }
            NodeInput::SignRound {
                digest,
                ask,
                what,
                reply,
            } => self.start_round(digest, ask, what, signing::Done::Reply(reply), turn),
            NodeInput::ChainHead { head, error } => {
                if let Some(head) = head {
                    self.chain_status.head = head;
                    self.chain_status.connected = true;
                }
                if error.is_some() {
                    self.chain_status.connected = false;
                }
                self.chain_status.error = error;
            }
        }
    }

    /// Our reserve, account and settlement changes in confirmed blocks, for the runtime.
    fn take_chain_range(&mut self, range: crate::chain::ConfirmedRange, turn: &mut Turn) {
        match range.core_events() {
            Ok(events) => {
                use xln_core::runtime::ChainEvent as Core;
                let me = self.entity;
                let peer = |entity: &EntityId| {
                    self.state()
                        .is_some_and(|s| s.accounts.contains_key(entity))
                };
                let ours: Vec<Core> = events
                    .into_iter()
                    .filter(|event| match event {
                        Core::Block { .. } => true,
                        // Peers' reserves too: a settlement pays their debt from them.
                        Core::Reserve { entity, .. } => *entity == me || peer(entity),
                        Core::Account { left, right, .. } | Core::Settled { left, right, .. } => {
                            *left == me || *right == me
                        }
                    })
                    .collect();
                turn.chain_events.extend(ours);
                self.chain_status.followed = range.to_block;
                self.chain_status.head = self.chain_status.head.max(range.to_block);
                self.chain_status.connected = true;
                self.chain_status.error = None;
            }
            Err(error) => self.log_line(
                LogLevel::Error,
                format!(
                    "chain blocks {}..={}: {error}",
                    range.from_block, range.to_block
                ),
            ),
        }
    }

    /// Which of our accounts are in a dispute on chain, as the events this node followed say.
    fn follow_disputes(&mut self, events: &[crate::chain::ChainEvent]) {
        use crate::chain::JEvent;
        let me = self.entity;
        let peer_of = |left: &EntityId, right: &EntityId| {
            if *left == me {
                Some(*right)
            } else if *right == me {
                Some(*left)
            } else {
                None
            }
        };
        for event in events {
            match &event.event {
                JEvent::DisputeStarted { left, right, .. } => {
                    if let Some(peer) = peer_of(left, right)
                        && !self.disputed.contains(&peer)
                    {
                        self.disputed.push(peer);
                    }
                }
                JEvent::DisputeFinalized { left, right, .. } => {
                    if let Some(peer) = peer_of(left, right) {
                        self.disputed.retain(|p| *p != peer);
                    }
                }
                _ => {}
            }
        }
    }

    fn take_net_event(&mut self, event: NetEvent, now: u64, turn: &mut Turn) {
        match event {
            NetEvent::Received { from, message } => match message {
                WireMessage::Envelope(envelope) => {
                    match settlement::check_peer_message(&envelope, &self.domain) {
                        None => turn.by_peer.entry(from).or_default().push(envelope),
                        Some(offence) => {
                            self.log_line(
                                LogLevel::Warn,
                                format!(
                                    "peer {} sent a bad settlement proposal ({offence}): \
                                     refused and disconnected",
                                    from.short()
                                ),
                            );
                            self.net.disconnect(from, "a bad settlement proposal");
                        }
                    }
                }
                WireMessage::Profile(profile) => self.receive_profile(from, profile, now),
                WireMessage::Positions(share) => self.receive_positions(from, *share),
            },
            NetEvent::Connected { signer } => {
                self.log_line(LogLevel::Info, format!("peer {} connected", signer.short()));
                // A newcomer learns what we know: our profile and the ones we relay.
                for profile in self.profiles.iter() {
                    self.net.send(signer, WireMessage::Profile(profile.clone()));
                }
            }
            NetEvent::Disconnected { signer, reason } => {
                self.log_line(
                    LogLevel::Info,
                    format!("peer {} disconnected: {reason}", signer.short()),
                );
            }
        }
    }

    /// A peer whose message carried a forged or missing signature is disconnected (what it sent
    /// changed nothing; it may reconnect and must then sign). Other refusals (stale or early
    /// frames, a chain change our follower has not seen) are races between honest nodes.
    fn check_peer(&mut self, peer: Address, events: &[RuntimeEvent]) {
        if let Some(offence) = events.iter().find_map(forged_signature) {
            self.log_line(
                LogLevel::Warn,
                format!(
                    "peer {} sent a badly signed message ({offence}): disconnected",
                    peer.short()
                ),
            );
            self.net.disconnect(peer, "a badly signed message");
        }
    }

    /// Appends the inputs to the WAL in one transaction and applies them in order meanwhile;
    /// returns their outputs once the inputs are on disk. Only the state before the first
    /// input is recorded (a hash is a pass over the state's roots), and the hash after the
    /// last is computed while the disk syncs.
    fn apply_and_persist(
        &mut self,
        inputs: Vec<(RuntimeInput, Option<Address>)>,
    ) -> anyhow::Result<Vec<(RuntimeOutput, Option<Address>)>> {
        let first_seq = self.seq + 1;
        let entries = inputs
            .iter()
            .zip(first_seq..)
            .map(|((input, _), seq)| {
                let state_before = if seq == first_seq {
                    self.state_hash
                } else {
                    Hash::ZERO
                };
                (seq, input.clone(), state_before)
            })
            .collect();
        let pending = self.wal.append(entries);
        let runtime = &mut self.runtime;
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let outputs: Vec<(RuntimeOutput, Option<Address>)> = inputs
                .into_iter()
                .map(|(input, peer)| (runtime.apply(input), peer))
                .collect();
            (outputs, runtime.state().hash())
        }));
        let logged = pending.wait();
        let (outputs, state_hash) = match applied {
            Ok(applied) => applied,
            Err(panic) => {
                // A bug in the core: the inputs that hit it leave the log again (nothing of
                // them was sent), or the node would meet the same panic at every start.
                if logged.is_ok() {
                    let _ = self.store.truncate_from(first_seq);
                }
                std::panic::resume_unwind(panic);
            }
        };
        self.logged_since_snapshot += logged?;
        self.seq += outputs.len() as u64;
        self.state_hash = state_hash;
        if self.seq - self.last_snapshot_seq >= self.config.node.snapshot_every
            || self.logged_since_snapshot >= self.config.node.snapshot_every_bytes
        {
            self.store
                .snapshot(self.seq, self.runtime.state())
                .map_err(|e| anyhow::anyhow!("writing a snapshot: {e}"))?;
            self.last_snapshot_seq = self.seq;
            self.logged_since_snapshot = 0;
        }
        Ok(outputs)
    }

    /// Sends what the runtime produced: messages to peers, operations to the chain worker,
    /// events to the log and the view's records.
    fn dispatch(&mut self, out: RuntimeOutput) {
        for envelope in out.messages {
            self.net
                .send(envelope.to.signer, WireMessage::Envelope(envelope));
        }
        let mut ours: Vec<ChainRequest> = out
            .chain
            .into_iter()
            .filter(|(entity, _)| *entity == self.entity)
            .map(|(_, request)| request)
            .collect();
        if let Some(batch) = &mut self.netting_batch {
            ours = batch.take(ours);
        }
        if !ours.is_empty() && self.is_proposer() {
            self.submit_chain_requests(ours);
        }
        for event in out.events {
            self.record(event);
        }
    }

    /// Our entity's chain requests, as one batch transaction (signed by our board in a
    /// signing round if it has several members).
    fn submit_chain_requests(&mut self, requests: Vec<ChainRequest>) {
        let what = format!("batch of {} operation(s)", requests.len());
        self.pending_chain.push(ChainTxView {
            what: what.clone(),
            tx: None,
            confirmations: 0,
        });
        let job = if self.board.members().len() > 1 {
            ChainJob::BoardBatch {
                entity: self.entity,
                board: self.board.clone(),
                requests,
                what,
            }
        } else {
            ChainJob::Batch {
                entity: self.entity,
                board: self.board.clone(),
                ops: requests
                    .iter()
                    .map(crate::chain::batch::ChainOp::from)
                    .collect(),
                what,
                reply: None,
            }
        };
        if self.chain_jobs.try_send(job).is_err() {
            self.log_line(
                LogLevel::Error,
                "the chain worker is not taking jobs".into(),
            );
        }
    }

    fn record(&mut self, event: RuntimeEvent) {
        match event {
            RuntimeEvent::Entity { event, .. } => self.record_entity_event(event),
            RuntimeEvent::Committed { .. } => {}
            RuntimeEvent::SnapshotApplied { from, height, .. } => self.log_line(
                LogLevel::Info,
                format!(
                    "caught up from height {from} to {height} by a state snapshot from a board \
                     member (the frames between were not replayed: their events are not shown)"
                ),
            ),
            // A peer's frame that is not taken yet (e.g. a chain change our follower has not
            // seen) comes again when the peer re-sends it.
            RuntimeEvent::TxDropped { tx, error, .. } => match *tx {
                EntityTx::AccountInput { .. } => self.log_line(
                    LogLevel::Debug,
                    format!("a peer's frame not taken: {error}"),
                ),
                other => self.log_line(
                    LogLevel::Warn,
                    format!("{} refused: {error}", tx_kind(&other)),
                ),
            },
            RuntimeEvent::Rejected(error) => {
                self.log_line(LogLevel::Warn, format!("refused: {error}"))
            }
            // Counted by the signing round, in `turn`.
            RuntimeEvent::CoSigned { .. } => {}
        }
    }

    // ------------------------------------------------------------------ signing rounds

    /// Starts (or restarts) our board's signing round for `digest` and asks the members.
    fn start_round(
        &mut self,
        digest: Hash,
        ask: EntityMessage,
        what: String,
        done: signing::Done,
        turn: &mut Turn,
    ) {
        if !self.is_proposer() || self.board.members().len() < 2 {
            self.warn(format!(
                "{what}: only a multi-signer entity's proposer runs signing rounds"
            ));
            return;
        }
        self.log_line(
            LogLevel::Info,
            format!("{what}: asking the board to sign {}", digest.short()),
        );
        let members = self
            .rounds
            .start(&self.board, digest, ask.clone(), what, done, now_ms());
        self.ask_members(ask, members, turn);
    }

    /// Sends `ask` to these members of our board: ours through our runtime (what it signs
    /// is recorded in its state), the others over the network.
    fn ask_members(&mut self, ask: EntityMessage, members: Vec<Address>, turn: &mut Turn) {
        let me = ReplicaId {
            entity: self.entity,
            signer: self.key.address(),
        };
        for signer in members {
            let envelope = Envelope {
                from: me,
                to: ReplicaId {
                    entity: self.entity,
                    signer,
                },
                payload: Payload::Entity(ask.clone()),
            };
            if signer == me.signer {
                turn.own_messages.push(envelope);
            } else {
                self.net.send(signer, WireMessage::Envelope(envelope));
            }
        }
    }

    /// A member's signature (checked by our replica) for one of our rounds.
    fn co_signed(&mut self, digest: Hash, signer: Address, signature: xln_core::crypto::Signature) {
        let Some(finished) = self.rounds.signed(&self.board, digest, signer, signature) else {
            return;
        };
        self.log_line(
            LogLevel::Info,
            format!(
                "{}: the board signed ({} signatures)",
                finished.what,
                finished.quorum.0.len()
            ),
        );
        match finished.done {
            signing::Done::Reply(reply) => {
                let _ = reply.send(finished.quorum);
            }
            signing::Done::Accept { peer } => {
                self.accepting.insert((peer, finished.digest));
                self.signed_acceptances.push(EntityTx::AcceptSettlement {
                    peer,
                    digest: finished.digest,
                    signature: finished.quorum,
                });
            }
        }
    }

    /// Asks again the members that have not signed; drops rounds nobody waits for, and
    /// settlement rounds whose settlement is no longer waiting for our signature.
    fn tend_rounds(&mut self, now: u64, turn: &mut Turn) {
        let waiting: BTreeSet<EntityId> = self
            .state()
            .map(|state| {
                state
                    .accounts
                    .iter()
                    .filter(|(_, entry)| {
                        let account = &entry.account;
                        account
                            .state()
                            .settlement
                            .pending
                            .as_ref()
                            .is_some_and(|p| {
                                p.proposer != account.side() && p.acceptor_signature.is_none()
                            })
                    })
                    .map(|(peer, _)| *peer)
                    .collect()
            })
            .unwrap_or_default();
        let tended = self.rounds.tend(&self.board, now, |done| match done {
            signing::Done::Accept { peer } => waiting.contains(peer),
            signing::Done::Reply(_) => true,
        });
        for warning in tended.warnings {
            self.warn(warning);
        }
        for (ask, members) in tended.ask {
            self.ask_members(ask, members, turn);
        }
    }

    fn record_entity_event(&mut self, event: EntityEvent) {
        let now = now_ms();
        match event {
            EntityEvent::AccountOpened { peer } => {
                self.profile_dirty = true;
                self.log_line(
                    LogLevel::Info,
                    format!("account with {} opened", peer.short()),
                );
            }
            EntityEvent::Account { peer, event } => {
                self.follow_order_txs(peer, &event);
                if let xln_core::account::AccountEvent::Committed {
                    height,
                    frame_hash,
                    txs,
                    ..
                } = event
                {
                    self.profile_dirty = true;
                    self.metrics.account_frames.inc();
                    let frames = self.frames.entry(peer).or_default();
                    frames.push(FrameSummary {
                        height,
                        timestamp: now,
                        txs: txs.len(),
                        hash: frame_hash,
                    });
                    if frames.len() > KEPT_FRAMES {
                        frames.remove(0);
                    }
                }
            }
            EntityEvent::PaymentSent {
                hashlock,
                receiver,
                amount,
            } => {
                self.metrics.payment(PaymentOutcome::Sent);
                self.log_line(
                    LogLevel::Info,
                    format!(
                        "payment {} of {amount} to {} sent",
                        hashlock.short(),
                        receiver.short()
                    ),
                )
            }
            EntityEvent::PaymentFinished { hashlock, status } => {
                self.forget_old_starts(now);
                match status {
                    xln_core::entity::PaymentStatus::Succeeded { .. } => {
                        self.metrics.payment(PaymentOutcome::Succeeded)
                    }
                    xln_core::entity::PaymentStatus::Failed(_) => {
                        self.metrics.payment(PaymentOutcome::Failed)
                    }
                    xln_core::entity::PaymentStatus::Pending => {}
                }
                self.log_line(
                    LogLevel::Info,
                    format!(
                        "payment {}: {}",
                        hashlock.short(),
                        view::payment_status(&status)
                    ),
                );
            }
            EntityEvent::PaymentReceived {
                hashlock,
                from,
                amount,
            } => {
                self.metrics.payment(PaymentOutcome::Received);
                self.log_line(
                    LogLevel::Info,
                    format!(
                        "received {amount} ({}) via {}",
                        hashlock.short(),
                        from.short()
                    ),
                )
            }
            EntityEvent::Forwarded { from, token, fee } => {
                self.metrics.forward(true);
                self.forwards.forwarded += 1;
                match self.forwards.fees.iter_mut().find(|(t, _)| *t == token) {
                    Some((_, total)) => *total = total.saturating_add(fee),
                    None => self.forwards.fees.push((token, fee)),
                }
                self.push_forward(ForwardView {
                    timestamp: now,
                    from,
                    token,
                    fee,
                    failure: None,
                });
            }
            EntityEvent::ForwardRefused { peer, failure } => {
                self.metrics.forward(false);
                let reason = format!("{:?}", failure.reason);
                match self
                    .forwards
                    .failures
                    .iter_mut()
                    .find(|(r, _)| *r == reason)
                {
                    Some((_, count)) => *count += 1,
                    None => self.forwards.failures.push((reason.clone(), 1)),
                }
                self.push_forward(ForwardView {
                    timestamp: now,
                    from: peer,
                    // A refused forward moved nothing: no fee in any token.
                    token: 0,
                    fee: 0,
                    failure: Some(reason),
                });
            }
            EntityEvent::LockExpired { peer, lock_id } => self.log_line(
                LogLevel::Warn,
                format!(
                    "lock {lock_id} with {} expired and was cancelled",
                    peer.short()
                ),
            ),
            EntityEvent::ChainRequested(request) => self.log_line(
                LogLevel::Info,
                format!("chain operation decided: {request:?}"),
            ),
            EntityEvent::SwapOffered { offer_id, order } => {
                self.orders.placed(offer_id, &order, now);
                self.log_line(
                    LogLevel::Info,
                    format!(
                        "order {offer_id} placed with {}: {} of token {} for {} of token {} \
                         ({:?})",
                        order.peer.short(),
                        order.give_amount,
                        order.give_token,
                        order.want_amount,
                        order.want_token,
                        order.time_in_force
                    ),
                );
            }
            EntityEvent::SwapResolved {
                peer,
                offer_id,
                fill,
                want_paid,
            } => {
                let open = self
                    .state()
                    .is_some_and(|state| orders::offer_open(state, &peer, offer_id));
                self.orders
                    .resolved(peer, offer_id, (fill, want_paid), open);
                self.log_line(
                    LogLevel::Info,
                    format!(
                        "order {offer_id} with {}: {fill} given, {want_paid} received{}",
                        peer.short(),
                        if open { "" } else { ", closed" }
                    ),
                );
            }
            EntityEvent::SwapCancelled { peer, offer_id } => {
                self.orders.expired(peer, offer_id);
                self.log_line(
                    LogLevel::Info,
                    format!("order {offer_id} with {} expired", peer.short()),
                );
            }
            swap @ (EntityEvent::SwapMatched { .. }
            | EntityEvent::SwapLegDropped { .. }
            | EntityEvent::SwapExpired { .. }) => {
                self.log_line(LogLevel::Info, format!("swap: {swap:?}"))
            }
            netting @ (EntityEvent::NettingProposed { .. }
            | EntityEvent::NettingAgreed { .. }
            | EntityEvent::NettingRefused { .. }
            | EntityEvent::NettingLeftOut { .. }
            | EntityEvent::NettingLoopStarted { .. }
            | EntityEvent::NettingFinished { .. }) => {
                self.log_line(LogLevel::Info, format!("netting: {netting:?}"))
            }
        }
    }

    /// Drops the start times of payments the state no longer keeps, so that a node that pays
    /// all day does not grow; a payment still waiting for its commit is young and stays.
    fn forget_old_starts(&mut self, now: u64) {
        const YOUNG_MS: u64 = 60_000;
        if self.started.len() <= self.started_prune_at {
            return;
        }
        let replica = ReplicaId {
            entity: self.entity,
            signer: self.key.address(),
        };
        let Some(state) = self.runtime.replica(&replica).map(|r| r.state()) else {
            return;
        };
        self.started.retain(|hashlock, (at, _)| {
            state.payments.contains_key(hashlock) || now.saturating_sub(*at) < YOUNG_MS
        });
        self.started_prune_at = (2 * self.started.len()).max(2 * KEPT_FINISHED_PAYMENTS);
    }

    /// Our cancels that committed, and our orders or cancels the account refused when our
    /// frame was built.
    fn follow_order_txs(&mut self, peer: EntityId, event: &xln_core::account::AccountEvent) {
        use xln_core::account::AccountEvent;
        let Some(side) = self
            .state()
            .and_then(|state| orders::our_side(state, &peer))
        else {
            return;
        };
        match event {
            AccountEvent::Committed { by_left, txs, .. }
                if *by_left == (side == xln_core::delta::Side::Left) =>
            {
                for tx in txs {
                    if let AccountTx::SwapCancel { offer_id } = tx {
                        self.orders.cancelled(peer, *offer_id);
                    }
                }
            }
            AccountEvent::TxDropped {
                tx: AccountTx::SwapOffer { offer_id, .. },
                error,
            } => {
                self.orders.refused(peer, *offer_id, error.to_string());
                self.log_line(
                    LogLevel::Warn,
                    format!("order {offer_id} with {} refused: {error}", peer.short()),
                );
            }
            AccountEvent::TxDropped {
                tx: AccountTx::SwapCancel { offer_id },
                error,
            } => self.log_line(
                LogLevel::Warn,
                format!(
                    "cancel of order {offer_id} with {} refused: {error}",
                    peer.short()
                ),
            ),
            _ => {}
        }
    }

    fn push_forward(&mut self, forward: ForwardView) {
        self.forwards.recent.push(forward);
        if self.forwards.recent.len() > KEPT_FORWARDS {
            self.forwards.recent.remove(0);
        }
    }

    // ------------------------------------------------------------------ requests

    fn take_request(
        &mut self,
        request: Request,
        reply: oneshot::Sender<Response>,
        now: u64,
        turn: &mut Turn,
    ) {
        match self.plan_request(request, now) {
            Ok(Planned::Read(request)) => turn.reads.push((request, reply)),
            Ok(Planned::Submit { tx, ok }) => self.submit(vec![tx], reply, ok, turn),
            Ok(Planned::SubmitAll { txs, ok }) => self.submit(txs, reply, ok, turn),
            Ok(Planned::Chain(job)) => {
                let job = job(reply);
                if let Err(error) = self.chain_jobs.try_send(job) {
                    let reply = match error {
                        mpsc::error::TrySendError::Full(job)
                        | mpsc::error::TrySendError::Closed(job) => job.into_reply(),
                    };
                    if let Some(reply) = reply {
                        let _ = reply.send(Response::Error {
                            message: "the chain worker is busy; try again".into(),
                        });
                    }
                }
            }
            Ok(Planned::Answered(response)) => {
                let _ = reply.send(response);
            }
            Err(message) => {
                let _ = reply.send(Response::Error { message });
            }
        }
    }

    /// Transactions of our entity for this turn, answered once it is applied.
    fn submit(
        &self,
        txs: Vec<EntityTx>,
        reply: oneshot::Sender<Response>,
        ok: Response,
        turn: &mut Turn,
    ) {
        turn.commands.push(Command::Submit {
            entity: self.entity,
            txs: txs.clone(),
        });
        turn.submitted.push(Submitted { txs, reply, ok });
    }

    /// What a request asks for, checked against the state: a clear error changes nothing.
    fn plan_request(&mut self, request: Request, now: u64) -> Result<Planned, String> {
        let state = self.state().ok_or("the entity is not created yet")?;
        match request {
            Request::View
            | Request::Status
            | Request::Tokens
            | Request::Accounts
            | Request::Htlcs
            | Request::Reserves
            | Request::Routes { .. }
            | Request::PaymentStatus { .. }
            | Request::AwaitPayment { .. }
            | Request::Netting
            | Request::Orders => Ok(Planned::Read(request)),
            Request::OpenAccount { peer } => {
                let (peer, peer_board) = self.resolve_peer(&peer)?;
                if state.accounts.contains_key(&peer) {
                    return Err(format!("an account with {} exists already", peer.short()));
                }
                Ok(Planned::Submit {
                    tx: EntityTx::OpenAccount { peer, peer_board },
                    ok: Response::Done {
                        what: format!("account with {} opened", peer.short()),
                    },
                })
            }
            Request::Credit {
                peer,
                token,
                amount,
            } => {
                let peer = self.existing_account(&peer)?;
                Ok(Planned::Submit {
                    tx: EntityTx::Account {
                        peer,
                        tx: AccountTx::SetCreditLimit { token, amount },
                    },
                    ok: Response::Done {
                        what: format!(
                            "credit of {amount} in token {token} to {} set",
                            peer.short()
                        ),
                    },
                })
            }
            Request::Pay {
                destination,
                token,
                amount,
            } => {
                let (route, order) = self.payment_order(&destination, token, amount)?;
                let hashlock = xln_core::crypto::keccak256(&order.preimage.0);
                self.started.insert(hashlock, (now, route.hops.len()));
                Ok(Planned::Submit {
                    tx: EntityTx::Pay(Box::new(order)),
                    ok: Response::PaymentStarted { hashlock, route },
                })
            }
            Request::Withdraw { token, amount, to } => Ok(Planned::Submit {
                tx: EntityTx::Chain(ChainRequest::Withdraw {
                    token,
                    amount,
                    to: to.unwrap_or(self.key.address()),
                }),
                ok: Response::Done {
                    what: format!("withdrawal of {amount} of token {token} sent to the chain"),
                },
            }),
            Request::Collateral {
                peer,
                token,
                amount,
            } => {
                let peer = self.existing_account(&peer)?;
                Ok(Planned::Submit {
                    tx: EntityTx::Chain(ChainRequest::AddCollateral {
                        peer,
                        token,
                        amount,
                    }),
                    ok: Response::Done {
                        what: format!(
                            "{amount} of token {token} moving into collateral with {}",
                            peer.short()
                        ),
                    },
                })
            }
            Request::Deposit { token, amount } => {
                if amount == 0 {
                    return Err("the amount is zero".into());
                }
                let address = self
                    .chain
                    .tokens
                    .iter()
                    .find(|t| t.id == token)
                    .map(|t| t.address)
                    .ok_or_else(|| format!("token {token} is not in the chain config"))?;
                let entity = self.entity;
                let what = format!("deposit of {amount} of token {token}");
                self.pending_chain.push(ChainTxView {
                    what: what.clone(),
                    tx: None,
                    confirmations: 0,
                });
                Ok(Planned::Chain(Box::new(move |reply| ChainJob::Deposit {
                    entity,
                    token: address,
                    amount,
                    what,
                    reply,
                })))
            }
            Request::Dispute { peer } => {
                let peer = self.existing_account(&peer)?;
                let start = state.dispute_start(&peer).map_err(|e| e.to_string())?;
                if self.board.members().len() == 1 {
                    return Ok(Planned::Chain(self.dispute_job(start)));
                }
                // A board commits the dispute first: each member co-signs the batch only for
                // a dispute its own replica committed (see `cosign`).
                Ok(Planned::Submit {
                    tx: EntityTx::Dispute { peer },
                    ok: Response::Done {
                        what: format!(
                            "dispute with {} sent to the board of our entity: it goes on chain \
                             once the board commits it and signs the batch",
                            peer.short()
                        ),
                    },
                })
            }
            Request::Settle { peer } => {
                let peer = self.existing_account(&peer)?;
                let scope = SettlementScope::Account;
                match settlement::request(state, &peer, scope, &self.domain)? {
                    settlement::SettleAction::Propose { tx, what } => Ok(Planned::Submit {
                        tx,
                        ok: Response::Done { what },
                    }),
                    settlement::SettleAction::Resubmit { op, what } => {
                        self.pending_chain.push(ChainTxView {
                            what: what.clone(),
                            tx: None,
                            confirmations: 0,
                        });
                        let entity = self.entity;
                        let board = self.board.clone();
                        Ok(Planned::Chain(Box::new(move |reply| ChainJob::Batch {
                            entity,
                            board,
                            ops: vec![op],
                            what,
                            reply: Some(reply),
                        })))
                    }
                }
            }
            Request::NettingExecute { id } => {
                let plan = self.netting_proposal(id)?;
                if !plan.cycles.is_empty() {
                    return self.start_netting_cycles(plan.token);
                }
                if let Some(batch) = &self.netting_batch {
                    return Err(format!(
                        "the netting of token {} is under way ({} of its settlements signed, {} \
                         awaited); one at a time",
                        batch.token,
                        batch.signed(),
                        batch.waiting()
                    ));
                }
                let txs = netting::settlement_txs(state, &plan, &self.domain)?;
                let peers: Vec<EntityId> = txs.iter().map(|(peer, _)| *peer).collect();
                self.netting_batch = Some(NettingBatch::new(plan.token, peers.clone(), now));
                self.dismissed_netting.remove(&plan.token);
                Ok(Planned::SubmitAll {
                    txs: txs.into_iter().map(|(_, tx)| tx).collect(),
                    ok: Response::Done {
                        what: format!(
                            "netting of token {}: debt settlements proposed to {} peer(s); they \
                             go on chain in one batch once signed (waiting up to {} s), and \
                             payments on those accounts pause until then",
                            plan.token,
                            peers.len(),
                            netting::SIGNATURE_WAIT_MS / 1_000
                        ),
                    },
                })
            }
            Request::NettingDismiss { id } => {
                let plan = self.netting_proposal(id)?;
                let token = plan.token;
                self.dismissed_netting.insert(token, plan);
                Ok(Planned::Answered(Response::Done {
                    what: format!(
                        "netting proposal {id} dismissed; it returns when its positions change"
                    ),
                }))
            }
            Request::PlaceOrder {
                peer,
                give_token,
                give_amount,
                want_token,
                want_amount,
                time_in_force,
                expires_in_secs,
            } => {
                let peer = self.existing_account(&peer)?;
                let expires_at_ms = match expires_in_secs {
                    None => NEVER_EXPIRES_MS,
                    Some(0) => return Err("the expiry must be at least a second away".into()),
                    Some(secs) => secs
                        .checked_mul(1_000)
                        .and_then(|ms| now.checked_add(ms))
                        .filter(|at| *at < NEVER_EXPIRES_MS)
                        .ok_or("the expiry is too far away")?,
                };
                // The entity checks the order against the account and refuses it with the
                // account's reason (see `place_swap`).
                Ok(Planned::Submit {
                    tx: EntityTx::PlaceSwap(SwapOrder {
                        peer,
                        give_token,
                        give_amount,
                        want_token,
                        want_amount,
                        expires_at_ms,
                        time_in_force,
                    }),
                    ok: Response::Done {
                        what: format!(
                            "order sent to the board of our entity; its number shows in the \
                             orders once it commits (account with {})",
                            peer.short()
                        ),
                    },
                })
            }
            Request::CancelOrder { peer, offer_id } => {
                let peer = self.existing_account(&peer)?;
                let tx = AccountTx::SwapCancel { offer_id };
                state
                    .check_account_tx(&peer, &tx)
                    .map_err(|error| error.to_string())?;
                Ok(Planned::Submit {
                    tx: EntityTx::Account { peer, tx },
                    ok: Response::Done {
                        what: format!(
                            "cancel of order {offer_id} with {} sent: what is left of it is \
                             released once the peer signs",
                            peer.short()
                        ),
                    },
                })
            }
            Request::BlockPeer { signer, blocked } => {
                self.net.set_blocked(signer, blocked);
                Ok(Planned::Answered(Response::Done {
                    what: format!(
                        "peer {} {}",
                        signer.short(),
                        if blocked { "blocked" } else { "unblocked" }
                    ),
                }))
            }
        }
    }

    /// An entity id, or the name of a profile, as an entity and its board.
    fn resolve_peer(&self, peer: &str) -> Result<(EntityId, Board), String> {
        let id = match peer.parse::<EntityId>() {
            Ok(id) => id,
            Err(_) => {
                let named: Vec<&SignedProfile> = self
                    .profiles
                    .iter()
                    .filter(|p| p.profile.name == peer)
                    .collect();
                match named.as_slice() {
                    [one] => one.profile.entity_id,
                    [] => return Err(format!("no known entity is named {peer:?}")),
                    _ => return Err(format!("several entities are named {peer:?}; use its id")),
                }
            }
        };
        if id == self.entity {
            return Err("that is this entity".into());
        }
        if let Some(entry) = self.state().and_then(|s| s.accounts.get(&id)) {
            return Ok((id, entry.peer_board.clone()));
        }
        let profile = self.profiles.get(&id).ok_or_else(|| {
            format!(
                "no profile of {} is known yet (is it connected?)",
                id.short()
            )
        })?;
        Ok((id, profile.profile.board.clone()))
    }

    fn existing_account(&self, peer: &str) -> Result<EntityId, String> {
        let (id, _) = self.resolve_peer(peer)?;
        match self.state().is_some_and(|s| s.accounts.contains_key(&id)) {
            true => Ok(id),
            false => Err(format!("no account with {}", id.short())),
        }
    }

    /// Our accounts as the routing graph takes them (exact, not gossiped).
    fn own_profile_accounts(&self) -> Vec<ProfileAccount> {
        let Some(state) = self.state() else {
            return Vec::new();
        };
        state
            .accounts
            .iter()
            .flat_map(|(peer, entry)| {
                let side = entry.account.side();
                entry
                    .account
                    .state()
                    .deltas
                    .iter()
                    .map(move |(token, delta)| {
                        let caps = delta.capacities(side).unwrap_or_default();
                        ProfileAccount {
                            peer: *peer,
                            token: *token,
                            out_capacity: caps.out_capacity,
                            in_capacity: caps.in_capacity,
                        }
                    })
            })
            .collect()
    }

    fn routes(
        &self,
        destination: &str,
        token: u32,
        amount: u128,
    ) -> Result<Vec<(xln_core::routing::Route, RouteView)>, String> {
        let (target, _) = self.resolve_peer(destination)?;
        let own = self.own_profile_accounts();
        let graph =
            Graph::from_profiles_and_own_accounts(self.profiles.profiles(), self.entity, &own);
        let routes = find_routes(&graph, &self.entity, &target, token, amount, ROUTES_SHOWN)
            .map_err(|e| e.to_string())?;
        Ok(routes
            .into_iter()
            .map(|route| {
                let view = RouteView {
                    hops: route.hops.iter().skip(1).copied().collect(),
                    names: route
                        .hops
                        .iter()
                        .skip(1)
                        .map(|h| self.profiles.get(h).map(|p| p.profile.name.clone()))
                        .collect(),
                    amount,
                    fee: route.total_fee,
                    success_per_mille: (route.success_probability * 1000.0).round() as u32,
                };
                (route, view)
            })
            .collect())
    }

    fn payment_order(
        &mut self,
        destination: &str,
        token: u32,
        amount: u128,
    ) -> Result<(RouteView, PaymentOrder), String> {
        let routes = self.routes(destination, token, amount)?;
        let (route, view) = routes
            .into_iter()
            .next()
            .ok_or("no route can carry the amount")?;
        let hops = RouteHop::from_route(&route, &self.profiles).map_err(|e| e.to_string())?;
        Ok((
            view,
            PaymentOrder {
                token,
                amount,
                route: hops,
                preimage: Preimage(random_bytes()),
                seed: self.onion_seed(),
            },
        ))
    }

    /// A single signer's dispute: signed with our key and sent at once, answered with the
    /// transaction.
    fn dispute_job(&self, start: DisputeStart) -> ChainJobBuilder {
        let entity = self.entity;
        let board = self.board.clone();
        let what = format!("dispute with {}", start.peer.short());
        let op = crate::chain::batch::ChainOp::from(&ChainRequest::StartDispute(Box::new(start)));
        Box::new(move |reply| ChainJob::Batch {
            entity,
            board,
            ops: vec![op],
            what,
            reply: Some(reply),
        })
    }

    /// Signs the settlements our peers proposed (the core checked their terms; a refused one
    /// is not offered again). Only the proposer's node submits transactions of the entity. A
    /// multi-signer board signs in a signing round; the acceptance goes into the frame after
    /// it reached the threshold.
    fn accept_settlements(&mut self, turn: &mut Turn) {
        if !self.is_proposer() {
            return;
        }
        let mut accepting = std::mem::take(&mut self.accepting);
        let Some(state) = self.state() else {
            self.accepting = accepting;
            return;
        };
        // Acceptances submitted are done with once the settlement moved on.
        accepting.retain(|(peer, digest)| {
            state.accounts.get(peer).is_some_and(|entry| {
                entry
                    .account
                    .state()
                    .settlement
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.digest == *digest && p.acceptor_signature.is_none())
            })
        });
        let skip: BTreeSet<(EntityId, Hash)> = self
            .refused_settlements
            .union(&accepting)
            .copied()
            .collect();
        let settlement::Acceptances {
            mut txs,
            waiting,
            to_cosign,
        } = settlement::acceptances(state, &self.domain, &self.key, &skip);
        self.accepting = accepting;
        for (peer, digest, reason) in waiting {
            if self.waiting_settlements.insert((peer, digest)) {
                self.warn(reason);
            }
        }
        for (peer, digest) in to_cosign {
            if !self.rounds.running(&digest) {
                let what = format!("acceptance of the settlement proposed by {}", peer.short());
                let ask = EntityMessage::SignSettlement { peer, digest };
                self.start_round(digest, ask, what, signing::Done::Accept { peer }, turn);
            }
        }
        txs.append(&mut self.signed_acceptances);
        if !txs.is_empty() {
            turn.commands.push(Command::Submit {
                entity: self.entity,
                txs,
            });
        }
    }

    /// Answers the requests waiting for payments that have ended.
    fn answer_payment_waiters(&mut self) {
        let ended: Vec<Hash> = self
            .payment_waiters
            .keys()
            .filter(|h| !self.payment_pending(h))
            .copied()
            .collect();
        for hashlock in ended {
            let response = self.payment_response(hashlock);
            for reply in self.payment_waiters.remove(&hashlock).unwrap_or_default() {
                let _ = reply.send(response.clone());
            }
        }
    }

    /// Our netting proposals, one per token with a debt beyond collateral in our accounts
    /// (see `node::netting`), with the one under way marked and the dismissed ones left out.
    fn netting_view(&self) -> NettingView {
        let mut view = NettingView::default();
        let Some(state) = self.state() else {
            return view;
        };
        let tokens: BTreeSet<TokenId> = state
            .accounts
            .values()
            .flat_map(|e| e.account.state().deltas.keys().copied())
            .collect();
        for token in tokens {
            let text = match netting::plan(state, token, &self.peer_positions) {
                Ok(plan) if plan.accounts.is_empty() && plan.cycles.is_empty() => continue,
                Ok(plan) if self.dismissed_netting.get(&token) == Some(&plan) => {
                    view.dismissed += 1;
                    continue;
                }
                Ok(mut plan) => {
                    if let Some(round) = state.netting_rounds.get(&token) {
                        let cleared = round
                            .cycles
                            .iter()
                            .filter(|c| matches!(c.status, CycleStatus::Cleared))
                            .count();
                        plan.status = format!(
                            "cycles under way: {cleared} of {} cleared, {} left out",
                            round.cycles.len(),
                            round.left_out.len()
                        );
                    } else if let Some(batch) =
                        self.netting_batch.as_ref().filter(|b| b.token == token)
                    {
                        plan.status = format!(
                            "under way: {} signed, {} awaited",
                            batch.signed(),
                            batch.waiting()
                        );
                    }
                    let text = netting::describe(&plan);
                    view.plans.push(plan);
                    text
                }
                Err(error) => format!("token {token}: {error}"),
            };
            view.proposals.push(text);
            view.ids.push(u64::from(token));
        }
        view
    }

    /// The proposal `id` (its token) as it stands now.
    fn netting_proposal(&self, id: u64) -> Result<NettingPlan, String> {
        let state = self.state().ok_or("the entity is not created yet")?;
        let token = TokenId::try_from(id).map_err(|_| format!("no netting proposal {id}"))?;
        let plan = netting::plan(state, token, &self.peer_positions)?;
        if plan.accounts.is_empty() && plan.cycles.is_empty() {
            return Err(format!(
                "no netting proposal {id}: no account has a debt beyond collateral in token {token}"
            ));
        }
        Ok(plan)
    }

    /// Asks the participants of the cycles through us to agree to clear them off chain; the
    /// core runs the loops once all agreed and leaves out who refuses or stays silent.
    fn start_netting_cycles(&mut self, token: TokenId) -> Result<Planned, String> {
        let state = self.state().ok_or("the entity is not created yet")?;
        if state.netting_rounds.contains_key(&token) {
            return Err(format!(
                "the cycles of token {token} are being cleared already"
            ));
        }
        let found = netting::cycles_through_us(state, token, &self.peer_positions)?
            .ok_or_else(|| format!("no cycle of token {token} goes through us now"))?;
        let count = found.cycles.len();
        let order = NettingOrder {
            token,
            positions: found.positions,
            boards: found.boards,
            secret: Preimage(random_bytes()),
            onion_key: self.key.public_key(),
        };
        Ok(Planned::Submit {
            tx: EntityTx::StartNetting(Box::new(order)),
            ok: Response::Done {
                what: format!(
                    "netting of token {token}: the participants of {count} cycle(s) are asked to \
                     agree; the fee-free loops run once all agreed (answers due in {} s), and \
                     `netting` follows them; execute again afterwards to settle the rest on chain",
                    xln_core::entity::NETTING_ANSWER_MS / 1_000
                ),
            },
        })
    }

    /// Keeps the positions a peer shared (checked first; a bad share changes nothing).
    fn receive_positions(&mut self, from: Address, share: PositionShare) {
        let Some(state) = self.state() else {
            return;
        };
        match netting::check_share(state, from, &share) {
            Ok(()) => {
                self.peer_positions.insert(share.entity, share);
            }
            Err(reason) => self.log_line(
                LogLevel::Warn,
                format!("positions from {} refused: {reason}", from.short()),
            ),
        }
    }

    /// Shares our positions with the hubs we have accounts with when they changed (at most
    /// every `POSITIONS_EVERY_MS`) and every `POSITIONS_REFRESH_MS`.
    fn maybe_share_positions(&mut self, now: u64) {
        if now < self.positions_shared.0.saturating_add(POSITIONS_EVERY_MS) {
            return;
        }
        let Some(state) = self.state() else {
            return;
        };
        let share = netting::share(state, &self.profiles);
        let refresh_due = now >= self.positions_shared.0.saturating_add(POSITIONS_REFRESH_MS);
        if share == self.positions_shared.1 && !refresh_due {
            return;
        }
        let hubs: Vec<Address> = state
            .accounts
            .iter()
            .filter(|(peer, _)| self.profiles.get(peer).is_some_and(|p| p.profile.is_hub))
            .map(|(_, entry)| entry.peer_board.proposer())
            .collect();
        if let Some(share) = &share {
            for hub in hubs {
                self.net
                    .send(hub, WireMessage::Positions(Box::new(share.clone())));
            }
        }
        self.positions_shared = (now, share);
    }

    /// Sends the netting's batch once every peer signed or the wait is over.
    fn flush_netting_batch(&mut self, now: u64) {
        let Some(mut batch) = self.netting_batch.take() else {
            return;
        };
        if let Some(state) = self.state() {
            batch.forget_gone(state);
        }
        if !batch.due(now) {
            self.netting_batch = Some(batch);
            return;
        }
        let (token, waiting) = (batch.token, batch.waiting());
        let requests = batch.into_requests(self.entity);
        if waiting > 0 {
            self.warn(format!(
                "netting of token {token}: {waiting} peer(s) did not sign in time; their \
                 settlements go on chain alone once signed"
            ));
        }
        if requests.is_empty() {
            self.warn(format!(
                "netting of token {token}: no settlement was signed"
            ));
            return;
        }
        self.submit_chain_requests(requests);
    }

    fn payment_pending(&self, hashlock: &Hash) -> bool {
        self.state()
            .and_then(|s| s.payments.get(hashlock))
            .is_some_and(|p| matches!(p.status, xln_core::entity::PaymentStatus::Pending))
    }

    fn payment_response(&self, hashlock: Hash) -> Response {
        let found = self
            .state()
            .and_then(|s| view::payment(s, &self.started, &hashlock));
        match found {
            Some(payment) => Response::Payment(payment),
            None => Response::Error {
                message: format!("no payment {} is known", hashlock.short()),
            },
        }
    }

    fn read(&self, request: Request) -> Response {
        match request {
            Request::View => Response::View(Box::new(self.build_view())),
            Request::Status => Response::Status(self.build_view().status),
            Request::Tokens => Response::Tokens(self.tokens()),
            Request::Accounts => Response::Accounts(self.build_view().accounts),
            Request::Htlcs => Response::Htlcs(self.state().map(view::htlcs).unwrap_or_default()),
            Request::Reserves => {
                Response::Reserves(self.state().map(view::reserves).unwrap_or_default())
            }
            Request::Routes {
                destination,
                token,
                amount,
            } => match self.routes(&destination, token, amount) {
                Ok(routes) => Response::Routes(routes.into_iter().map(|(_, v)| v).collect()),
                Err(message) => Response::Error { message },
            },
            Request::PaymentStatus { hashlock } | Request::AwaitPayment { hashlock } => {
                self.payment_response(hashlock)
            }
            Request::Netting => Response::Netting(self.netting_view()),
            Request::Orders => Response::Orders {
                orders: self.orders.views(&self.profiles),
                book: self
                    .state()
                    .map(|state| orders::book(state, &self.profiles, BOOK_ORDERS_SHOWN))
                    .unwrap_or_default(),
            },
            other => Response::Error {
                message: format!("{other:?} is not a read"),
            },
        }
    }

    // ------------------------------------------------------------------ gossip

    fn receive_profile(&mut self, from: Address, profile: SignedProfile, now: u64) {
        let entity = profile.entity_id();
        match self.profiles.merge(profile.clone(), now) {
            Ok(outcome) => {
                if self.config.hub
                    && matches!(
                        outcome,
                        xln_core::gossip::MergeOutcome::Added
                            | xln_core::gossip::MergeOutcome::Updated
                    )
                {
                    // Hubs relay what is new to their other peers.
                    self.net.relay(from, WireMessage::Profile(profile));
                }
            }
            Err(ProfileError::BadSignature(QuorumError::NotEnoughWeight { .. }))
                if entity == self.entity && self.board.weight_of(&from).is_some() =>
            {
                self.cosign_profile(from, profile, now);
            }
            Err(error) => self.log_line(
                LogLevel::Debug,
                format!(
                    "profile of {} from {} dropped: {error}",
                    entity.short(),
                    from.short()
                ),
            ),
        }
    }

    /// A member of our board asks for our signature on our entity's profile.
    fn cosign_profile(&mut self, from: Address, mut profile: SignedProfile, now: u64) {
        let digest = profile.profile.digest();
        let mine = self.key.sign(&digest);
        if !profile.signature.0.contains(&mine) {
            profile.signature.0.push(mine);
        }
        if self.profiles.merge(profile.clone(), now).is_ok() {
            self.net.broadcast(WireMessage::Profile(profile));
        } else {
            self.net.send(from, WireMessage::Profile(profile));
        }
    }

    /// Signs and floods our profile when our accounts changed, and now and then anyway. A
    /// multi-signer entity's proposer signs first and asks the other members to co-sign.
    fn maybe_publish_profile(&mut self, now: u64) {
        if !self.is_proposer() {
            return;
        }
        let min_gap = if self.config.hub {
            HUB_PROFILE_MIN_GAP_MS
        } else {
            PROFILE_MIN_GAP_MS
        };
        let due = (self.profile_dirty && now >= self.last_profile_at + min_gap)
            || now >= self.last_profile_at + PROFILE_EVERY_MS;
        if !due {
            return;
        }
        let Some(state) = self.state() else {
            return;
        };
        let mut accounts = self.own_profile_accounts();
        accounts.truncate(xln_core::gossip::MAX_PROFILE_ACCOUNTS);
        let profile = Profile {
            entity_id: self.entity,
            board: self.board.clone(),
            onion_key: self.key.public_key(),
            name: self.config.name.clone(),
            endpoint: self
                .config
                .endpoint
                .clone()
                .or_else(|| self.net.local_addr().map(|a| format!("ws://{a}")))
                .unwrap_or_default(),
            is_hub: self.config.hub,
            fee_base: state.fees.base,
            fee_ppm: state.fees.ppm,
            accounts,
            updated_at: now.max(self.last_profile_at + 1),
        };
        let signature = QuorumSignature(vec![self.key.sign(&profile.digest())]);
        let signed = SignedProfile { profile, signature };
        self.last_profile_at = signed.profile.updated_at;
        self.profile_dirty = false;
        if self.profiles.merge(signed.clone(), now).is_ok() {
            self.net.broadcast(WireMessage::Profile(signed));
        } else {
            for member in self.board.members() {
                if member.signer != self.key.address() {
                    self.net
                        .send(member.signer, WireMessage::Profile(signed.clone()));
                }
            }
        }
    }

    // ------------------------------------------------------------------ view

    fn build_view(&self) -> NodeView {
        let Some(state) = self.state() else {
            return NodeView::default();
        };
        let accounts = view::accounts(state, &self.profiles, &self.frames, &self.disputed);
        let peers = self.net.peers();
        let mut status = view::status_from_state(state, &self.config.name, self.key.address());
        status.inputs = self.seq;
        status.chain = self.chain_status.clone();
        // What the entity has taken in, which is what matters (the follower may be ahead).
        status.chain.followed = state.j_height;
        status.peers_connected = peers.iter().filter(|p| p.connected).count();
        status.totals = view::totals(&accounts);
        if !self.chain_status.connected {
            status.problems.push(
                self.chain_status
                    .error
                    .clone()
                    .unwrap_or_else(|| "the chain has not answered yet".into()),
            );
        }
        if !self.config.dial.is_empty() && status.peers_connected == 0 {
            status.problems.push("no peer is connected".into());
        }
        status.healthy = status.problems.is_empty();
        status.database_bytes = self.store.file_bytes();
        status.metrics_url = self.metrics_addr.map(|a| format!("http://{a}/metrics"));
        NodeView {
            status,
            reserves: view::reserves(state),
            htlcs: view::htlcs(state),
            payments: view::payments(state, &self.started),
            accounts,
            forwards: self.forwards.clone(),
            peers,
            profiles: view::profiles(&self.profiles),
            tokens: self.tokens(),
            pending_chain_txs: self.pending_chain.clone(),
            log: self.log.iter().cloned().collect(),
            orders: self.orders.views(&self.profiles),
            book: orders::book(state, &self.profiles, BOOK_ORDERS_SHOWN),
        }
    }

    fn set_gauges(&self, view: &NodeView) {
        let m = &self.metrics;
        let status = &view.status;
        m.inputs.set(gauge_value(status.inputs));
        m.entity_height.set(gauge_value(status.height));
        m.htlcs_in_flight.set(gauge_value(view.htlcs.len()));
        m.accounts.set(gauge_value(view.accounts.len()));
        m.peers_connected.set(gauge_value(status.peers_connected));
        m.chain_head.set(gauge_value(status.chain.head));
        m.chain_followed.set(gauge_value(status.chain.followed));
        m.chain_lag.set(gauge_value(status.chain.lag()));
        m.database_bytes.set(gauge_value(status.database_bytes));
        m.healthy.set(i64::from(status.healthy));
        m.tasks_alive.set(gauge_value(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
        ));
    }

    /// The chain config's tokens; the devnet's test tokens have 18 decimals, like most ERC-20s.
    fn tokens(&self) -> Vec<crate::api::TokenInfo> {
        self.chain
            .tokens
            .iter()
            .map(|t| crate::api::TokenInfo {
                id: t.id,
                symbol: t.symbol.clone(),
                decimals: 18,
            })
            .collect()
    }

    /// Rebuilds the view. It is a pass over the state, so a busy node does it at most every
    /// `VIEW_EVERY` (requests that read get fresh answers regardless).
    fn publish_view(&mut self) {
        let view = self.build_view();
        self.set_gauges(&view);
        if self.views.receiver_count() > 0 {
            self.views.send_replace(Arc::new(view));
        }
        self.view_published_at = std::time::Instant::now();
        self.view_stale = false;
    }
}

/// The reason, if `event` refuses a message for its signature: a forgery, not a race.
fn forged_signature(event: &RuntimeEvent) -> Option<String> {
    use xln_core::account::AccountError;
    use xln_core::entity::{ConsensusError, EntityTxError};
    match event {
        RuntimeEvent::Rejected(
            error @ RuntimeError::Consensus {
                error:
                    ConsensusError::NoQuorum { .. }
                    | ConsensusError::NotFromProposer { .. }
                    | ConsensusError::WrongSignatureCount { .. }
                    | ConsensusError::BadCoSignature { .. }
                    | ConsensusError::NotAMember,
                ..
            },
        ) => Some(error.to_string()),
        RuntimeEvent::TxDropped { tx, error, .. }
            if matches!(**tx, EntityTx::AccountInput { .. })
                && matches!(
                    error,
                    EntityTxError::Account {
                        error: AccountError::BadSignature { .. },
                        ..
                    }
                ) =>
        {
            Some(error.to_string())
        }
        _ => None,
    }
}

/// What a transaction is, in a word or two, for the log.
fn tx_kind(tx: &EntityTx) -> &'static str {
    match tx {
        EntityTx::OpenAccount { .. } => "opening an account",
        EntityTx::Account { .. } => "an account transaction",
        EntityTx::AccountInput { .. } => "a peer's frame",
        EntityTx::ChainBlock { .. }
        | EntityTx::ChainReserve { .. }
        | EntityTx::ChainAccount { .. } => "a chain update",
        EntityTx::Pay(_) => "a payment",
        EntityTx::HtlcInstruction { .. } => "an HTLC instruction",
        EntityTx::CancelExpired => "cancelling expired locks",
        EntityTx::RefreshFrames => "re-sending frames",
        EntityTx::SetFees(_) => "setting fees",
        EntityTx::Chain(_) => "a chain operation",
        EntityTx::ProposeSettlement { .. } => "a settlement proposal",
        EntityTx::AcceptSettlement { .. } => "accepting a settlement",
        EntityTx::PlaceSwap(_) => "a swap order",
        EntityTx::Dispute { .. } => "a dispute",
        _ => "a transaction",
    }
}

/// A chain job waiting for the reply channel of its request.
type ChainJobBuilder = Box<dyn FnOnce(oneshot::Sender<Response>) -> ChainJob + Send>;

enum Planned {
    Read(Request),
    Submit {
        tx: EntityTx,
        ok: Response,
    },
    /// Transactions of our entity, in one frame.
    SubmitAll {
        txs: Vec<EntityTx>,
        ok: Response,
    },
    Chain(ChainJobBuilder),
    Answered(Response),
}

#[cfg(test)]
mod tests {
    use super::*;
    use xln_core::account::{AccountError, AccountMessage};
    use xln_core::board::QuorumError;
    use xln_core::entity::{ConsensusError, EntityTxError};

    fn peer_frame_dropped(error: AccountError) -> RuntimeEvent {
        RuntimeEvent::TxDropped {
            replica: ReplicaId {
                entity: EntityId::ZERO,
                signer: Address::ZERO,
            },
            tx: Box::new(EntityTx::AccountInput {
                message: Box::new(AccountMessage {
                    from: EntityId::ZERO,
                    to: EntityId::ZERO,
                    ack: None,
                    proposal: None,
                }),
                sender_board: Board::single(Address([1; 20])),
            }),
            error: EntityTxError::Account {
                peer: EntityId::ZERO,
                error,
            },
        }
    }

    fn consensus_refused(error: ConsensusError) -> RuntimeEvent {
        RuntimeEvent::Rejected(RuntimeError::Consensus {
            replica: ReplicaId {
                entity: EntityId::ZERO,
                signer: Address::ZERO,
            },
            error,
        })
    }

    #[test]
    fn only_bad_signatures_count_as_forgeries() {
        let weak = QuorumError::NotEnoughWeight {
            got: 0,
            threshold: 1,
        };
        for forged in [
            peer_frame_dropped(AccountError::BadSignature {
                height: 3,
                error: weak.clone(),
            }),
            consensus_refused(ConsensusError::NoQuorum {
                height: 3,
                error: weak,
            }),
            consensus_refused(ConsensusError::NotAMember),
        ] {
            assert!(forged_signature(&forged).is_some(), "{forged:?}");
        }
        for race in [
            peer_frame_dropped(AccountError::StaleFrame {
                height: 1,
                committed: 2,
            }),
            consensus_refused(ConsensusError::Stale {
                height: 1,
                committed: 2,
            }),
        ] {
            assert!(forged_signature(&race).is_none(), "{race:?}");
        }
    }
}
