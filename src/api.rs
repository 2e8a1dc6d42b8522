//! The control API: what the CLI and the console ask of a node, and what it answers.
//!
//! The same types serve an embedded node (through a channel) and a running `xln node`
//! (as JSON lines over its unix socket). [`NodeView`] is the read-only picture the console
//! draws; the node rebuilds it after every input.

use serde::{Deserialize, Serialize};
use xln_core::board::EntityId;
use xln_core::crypto::{Address, Hash};
use xln_core::delta::TokenId;
pub use xln_core::swap::TimeInForce;

/// One request to the node. Amounts are in the token's smallest unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// The whole view (what the console draws).
    View,
    Status,
    /// The tokens the node knows (id, symbol, decimals).
    Tokens,
    Accounts,
    /// `peer` is an entity id or a profile name.
    OpenAccount {
        peer: String,
    },
    /// Extend `amount` of credit in `token` to `peer`.
    Credit {
        peer: String,
        token: TokenId,
        amount: u128,
    },
    Pay {
        destination: String,
        token: TokenId,
        amount: u128,
    },
    Routes {
        destination: String,
        token: TokenId,
        amount: u128,
    },
    /// Where one of our payments is.
    PaymentStatus {
        hashlock: Hash,
    },
    /// Answers once our payment has succeeded or failed (or at once if it has).
    AwaitPayment {
        hashlock: Hash,
    },
    Htlcs,
    Reserves,
    /// Move `amount` of `token` from the signer's wallet into the entity's reserve.
    Deposit {
        token: TokenId,
        amount: u128,
    },
    /// Pay `amount` of our reserve out to `to` (default: our signer's address).
    Withdraw {
        token: TokenId,
        amount: u128,
        to: Option<Address>,
    },
    /// Move `amount` of our reserve into the collateral of the account with `peer`.
    Collateral {
        peer: String,
        token: TokenId,
        amount: u128,
    },
    Settle {
        peer: String,
    },
    Dispute {
        peer: String,
    },
    Netting,
    /// Execute the netting proposal `id` (from [`NettingView::ids`]).
    NettingExecute {
        id: u64,
    },
    /// Drop the netting proposal `id` (from [`NettingView::ids`]).
    NettingDismiss {
        id: u64,
    },
    /// Offer `give_amount` of `give_token` for at least `want_amount` of `want_token` (a limit
    /// price) on our account with `peer`, usually a hub, which matches it in its order book.
    /// `expires_in_secs`: `None` for an order that never expires.
    PlaceOrder {
        peer: String,
        give_token: TokenId,
        give_amount: u128,
        want_token: TokenId,
        want_amount: u128,
        time_in_force: TimeInForce,
        expires_in_secs: Option<u64>,
    },
    /// Cancel what is left of our order `offer_id` on the account with `peer`.
    CancelOrder {
        peer: String,
        offer_id: u64,
    },
    /// Our orders, and the orders resting in our book (a hub's).
    Orders,
    /// Test and operations: refuse (or accept again) the sessions of a peer signer.
    BlockPeer {
        signer: Address,
        blocked: bool,
    },
}

/// What the node answers. Every request gets exactly one response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    View(Box<NodeView>),
    Status(StatusView),
    Tokens(Vec<TokenInfo>),
    Accounts(Vec<AccountView>),
    Htlcs(Vec<HtlcView>),
    Reserves(Vec<ReserveView>),
    Routes(Vec<RouteView>),
    /// A payment was handed to the network; its progress shows in the view's payments.
    PaymentStarted {
        hashlock: Hash,
        route: RouteView,
    },
    Payment(PaymentView),
    /// A chain transaction was mined.
    ChainTx {
        tx: Hash,
        block: u64,
        gas_used: u64,
    },
    Netting(NettingView),
    /// Our order was numbered and queued on the account; its fills show in the view's orders.
    OrderPlaced(OrderView),
    Orders {
        orders: Vec<OrderView>,
        book: Vec<BookOrderView>,
    },
    /// The request was taken; `what` says what was done.
    Done {
        what: String,
    },
    /// The request was refused; nothing changed.
    Error {
        message: String,
    },
}

/// Everything the console draws, as of one input of the node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub status: StatusView,
    pub reserves: Vec<ReserveView>,
    pub accounts: Vec<AccountView>,
    pub htlcs: Vec<HtlcView>,
    pub payments: Vec<PaymentView>,
    pub forwards: ForwardsView,
    pub peers: Vec<PeerView>,
    pub profiles: Vec<ProfileView>,
    pub tokens: Vec<TokenInfo>,
    pub pending_chain_txs: Vec<ChainTxView>,
    /// The newest last.
    pub log: Vec<LogLine>,
    /// Our swap orders: the open ones and the last finished ones, newest first.
    #[serde(default)]
    pub orders: Vec<OrderView>,
    /// The orders our peers rest in our book (a hub's), each side best first; at most
    /// [`BOOK_ORDERS_SHOWN`].
    #[serde(default)]
    pub book: Vec<BookOrderView>,
}

/// How many resting orders of our book the view carries.
pub const BOOK_ORDERS_SHOWN: usize = 200;

/// Where one of our swap orders is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Queued or resting, nothing filled yet.
    Open,
    /// Resting with a part filled.
    PartlyFilled,
    Filled,
    /// Cancelled by us, or the unfilled remainder of an immediate-or-cancel or fill-or-kill
    /// order closed by the peer.
    Cancelled,
    /// Released by the peer after its expiry.
    Expired,
    /// The account refused it when our frame was built (`reason` says why).
    Refused,
}

impl OrderState {
    pub fn is_finished(self) -> bool {
        !matches!(self, OrderState::Open | OrderState::PartlyFilled)
    }

    pub fn label(self) -> &'static str {
        match self {
            OrderState::Open => "open",
            OrderState::PartlyFilled => "partly filled",
            OrderState::Filled => "filled",
            OrderState::Cancelled => "cancelled",
            OrderState::Expired => "expired",
            OrderState::Refused => "refused",
        }
    }
}

/// A time in force as people write it: `GTC`, `IOC`, `FOK`.
pub fn time_in_force_label(time_in_force: TimeInForce) -> &'static str {
    match time_in_force {
        TimeInForce::GoodTillCancel => "GTC",
        TimeInForce::ImmediateOrCancel => "IOC",
        TimeInForce::FillOrKill => "FOK",
    }
}

/// One of our swap orders: `give_amount` of `give_token` for at least `want_amount` of
/// `want_token`, on our account with `peer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub peer: EntityId,
    pub peer_name: Option<String>,
    pub offer_id: u64,
    pub give_token: TokenId,
    pub give_amount: u128,
    pub want_token: TokenId,
    pub want_amount: u128,
    pub time_in_force: TimeInForce,
    /// `None`: never expires.
    pub expires_at_ms: Option<u64>,
    /// Of the give side, what went to the peer so far.
    pub filled: u128,
    /// Of the want token, what came in so far; `None` for an order placed before the node
    /// last started (its earlier fills are not known to the node).
    pub received: Option<u128>,
    pub state: OrderState,
    /// Why the order was refused, if it was.
    pub reason: Option<String>,
    /// When the node placed it or, for an order found open at start, when the node started.
    pub placed_at: u64,
}

/// An order resting in our book: an offer `owner` made in its account with us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookOrderView {
    pub owner: EntityId,
    pub owner_name: Option<String>,
    pub offer_id: u64,
    pub give_token: TokenId,
    pub give_amount: u128,
    pub want_token: TokenId,
    pub want_amount: u128,
    /// Of the give side, what is still open.
    pub remaining: u128,
    pub time_in_force: TimeInForce,
    /// `None`: never expires.
    pub expires_at_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub entity: EntityId,
    /// Our display name (from the config).
    pub name: String,
    pub signer: Address,
    pub board: BoardView,
    /// Height of the entity's last committed frame.
    pub height: u64,
    /// The node's clock, milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// Inputs in the write-ahead log since the node was created.
    pub inputs: u64,
    pub chain: ChainStatus,
    pub peers_connected: usize,
    /// Per token: what others owe us and what we owe them, over all accounts.
    pub totals: Vec<TokenTotals>,
    pub healthy: bool,
    /// Why not healthy, if not.
    pub problems: Vec<String>,
    /// Size of the database file (write-ahead log and snapshots), in bytes.
    #[serde(default)]
    pub database_bytes: u64,
    /// The metrics endpoint's URL, when it is on.
    #[serde(default)]
    pub metrics_url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardView {
    pub threshold: u64,
    /// Signer address and weight.
    pub members: Vec<(Address, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainStatus {
    pub rpc_url: String,
    pub chain_id: u64,
    /// The newest block the RPC reported.
    pub head: u64,
    /// The newest block the follower has read and the entity knows of.
    pub followed: u64,
    pub connected: bool,
    pub error: Option<String>,
}

impl ChainStatus {
    /// How many blocks the follower is behind the chain's head.
    pub fn lag(&self) -> u64 {
        self.head.saturating_sub(self.followed)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenTotals {
    pub token: TokenId,
    /// Sum over accounts of what peers owe us (positive positions).
    pub owed_to_us: u128,
    /// Sum over accounts of what we owe peers.
    pub we_owe: u128,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: TokenId,
    pub symbol: String,
    pub decimals: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveView {
    pub token: TokenId,
    /// In the entity's reserve on chain.
    pub reserve: u128,
    /// In the signer's wallet (what a deposit can take), if the chain answered.
    pub wallet: Option<u128>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Both sides signed the same latest frame.
    #[default]
    Synced,
    /// A frame of ours waits for the peer's signature.
    FramePending,
    /// A cooperative settlement is proposed and not on chain yet: payments wait for it.
    Settling,
    /// A dispute runs on chain.
    Disputed,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub peer: EntityId,
    /// The peer's profile name, if known.
    pub peer_name: Option<String>,
    /// Are we LEFT in this account (Δ > 0 means RIGHT owes LEFT)?
    pub we_are_left: bool,
    pub height: u64,
    /// Hash of the account's committed state: both sides' agree once they are in sync.
    pub state_hash: Hash,
    pub status: AccountStatus,
    /// Height of the newest frame the peer signed that we hold as dispute proof.
    pub proof_height: Option<u64>,
    /// Transactions queued for the next frame.
    pub queued: usize,
    pub tokens: Vec<AccountTokenView>,
    /// Newest last.
    pub frames: Vec<FrameSummary>,
}

/// One token of one account, seen from our side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountTokenView {
    pub token: TokenId,
    pub collateral: u128,
    pub ondelta: i128,
    pub offdelta: i128,
    /// ondelta + offdelta, as the account holds it (LEFT's view).
    pub delta: i128,
    /// Our position: what the peer owes us (> 0) or we owe it (< 0).
    pub position: i128,
    /// Credit we extend to the peer, and credit it extends to us.
    pub own_credit: u128,
    pub peer_credit: u128,
    pub out_capacity: u128,
    pub in_capacity: u128,
    /// In flight (HTLCs and holds) from our side and from the peer's.
    pub our_hold: u128,
    pub peer_hold: u128,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameSummary {
    pub height: u64,
    pub timestamp: u64,
    pub txs: usize,
    pub hash: Hash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Incoming,
    Outgoing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtlcView {
    pub peer: EntityId,
    pub lock_id: u64,
    pub direction: Direction,
    pub token: TokenId,
    pub amount: u128,
    pub hashlock: Hash,
    pub expires_at_ms: u64,
    pub reveal_before_block: u64,
    /// What we do with it: "sending" (our payment), "forwarding", "receiving", "awaiting onion".
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentView {
    pub hashlock: Hash,
    pub receiver: EntityId,
    pub token: TokenId,
    pub amount: u128,
    /// Amount plus fees.
    pub sent: u128,
    pub hops: usize,
    /// "pending", "succeeded" or "failed: <why>".
    pub status: String,
    pub started_at: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardsView {
    pub forwarded: u64,
    /// Per token id: fees earned.
    pub fees: Vec<(TokenId, u128)>,
    /// Refused forwards by reason.
    pub failures: Vec<(String, u64)>,
    /// The newest last.
    pub recent: Vec<ForwardView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardView {
    pub timestamp: u64,
    pub from: EntityId,
    /// The token of the forwarded payment (what `fee` is counted in).
    #[serde(default)]
    pub token: TokenId,
    pub fee: u128,
    /// `None` when it settled, or why it was refused.
    pub failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    pub signer: Address,
    /// The URL we dial, or `None` for a peer that dialled us.
    pub url: Option<String>,
    pub connected: bool,
    pub blocked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileView {
    pub entity: EntityId,
    pub name: String,
    pub endpoint: String,
    pub is_hub: bool,
    pub accounts: usize,
    pub fee_base: u128,
    pub fee_ppm: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    /// Entities from us (excluded) to the destination (included).
    pub hops: Vec<EntityId>,
    /// Names of the hops where known.
    pub names: Vec<Option<String>>,
    pub amount: u128,
    pub fee: u128,
    /// Estimated from capacities, in per mille.
    pub success_per_mille: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainTxView {
    pub what: String,
    pub tx: Option<Hash>,
    pub confirmations: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NettingView {
    /// Each proposal in words: a summary line, then the details.
    pub proposals: Vec<String>,
    /// The id of each proposal, in the order of `proposals` (for `NettingExecute`/`Dismiss`).
    #[serde(default)]
    pub ids: Vec<u64>,
    /// The proposals themselves, in the same order.
    #[serde(default)]
    pub plans: Vec<NettingPlan>,
    /// Proposals dismissed and not shown; each returns when its positions change.
    #[serde(default)]
    pub dismissed: usize,
}

/// A netting proposal of ours for one token (see `node::netting`): each account's credit debt
/// settled in one on-chain batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NettingPlan {
    pub token: u32,
    pub accounts: Vec<NettingAccount>,
    /// Every account settled on its own.
    pub before: xln_core::netting::NettingFigures,
    /// With this proposal.
    pub after: xln_core::netting::NettingFigures,
    /// How our reserve moves in the batch (`> 0` in).
    pub reserve_movement: i128,
    /// "ready", or how far its execution is.
    pub status: String,
    /// Cycles of debt through us, cleared off chain (a fee-free circular payment once every
    /// participant agreed) before anything goes on chain.
    #[serde(default)]
    pub cycles: Vec<xln_core::netting::NettingCycle>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NettingAccount {
    pub peer: EntityId,
    /// Beyond the collateral: `> 0` the peer owes us, `< 0` we owe the peer.
    pub uncollateralised: i128,
    /// What the batch pays of it.
    pub settles: u128,
    /// Why it is not settled in full, if it is not.
    pub left_out: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub timestamp: u64,
    pub level: LogLevel,
    pub text: String,
}

/// A request with the channel its response goes back on.
pub type PendingRequest = (Request, tokio::sync::oneshot::Sender<Response>);

/// What the console holds of a node, embedded or attached: the newest view, and a way to ask.
/// A request never blocks the console: the response comes back on its own channel.
#[derive(Clone)]
pub struct NodeLink {
    pub views: tokio::sync::watch::Receiver<std::sync::Arc<NodeView>>,
    pub requests: tokio::sync::mpsc::Sender<PendingRequest>,
}

impl NodeLink {
    /// Sends `request`; the receiver yields the response, or an error if the node went away.
    pub fn ask(&self, request: Request) -> tokio::sync::oneshot::Receiver<Response> {
        let (reply, response) = tokio::sync::oneshot::channel();
        if let Err(error) = self.requests.try_send((request, reply)) {
            let (request, reply) = match error {
                tokio::sync::mpsc::error::TrySendError::Full(pending)
                | tokio::sync::mpsc::error::TrySendError::Closed(pending) => pending,
            };
            let _ = reply.send(Response::Error {
                message: format!("the node is not taking requests ({request:?} not sent)"),
            });
        }
        response
    }
}
