//! The event follower: reads the jurisdiction's logs block range by block range, only from
//! blocks at least `confirmations` deep, and hands each event on exactly once, in chain order.
//!
//! - **Cursor**: the next block to read and the hash of the last block read. The cursor moves
//!   only after a whole range was read, so an RPC failure in the middle of a range repeats the
//!   range, never half of it: nothing is lost and nothing is handed on twice.
//! - **Reorgs**: blocks younger than the confirmation depth are never read, so a reorg that
//!   replaces them (anvil's `evm_revert`) changes nothing that was handed on. A range is read
//!   only if the hash of its last block is the same before and after reading its logs, and
//!   each range must extend the last one (the stored hash is still canonical); a reorg deeper
//!   than the confirmation depth is reported as [`ChainError::DeepReorg`], never silently
//!   applied.
//! - **Outages**: [`Follower::run`] retries transient errors with exponential backoff and
//!   resumes from its cursor.

use super::bindings::{Depository, EntityProvider};
use super::client::rpc_error;
use super::encode::{entity_id, hash};
use super::error::{ChainError, Result};
use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEventInterface;
use alloy::transports::http::reqwest::Url;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use xln_core::board::EntityId;
use xln_core::crypto::Hash;
use xln_core::delta::TokenId;

/// How the follower reads the chain.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// The first block to read (the deployment's).
    pub start_block: u64,
    /// A block is read once this many blocks are on top of it (0: read the head).
    pub confirmations: u64,
    pub poll_interval: Duration,
    /// First and longest wait after a failed poll (doubling in between).
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Most blocks read in one `eth_getLogs`.
    pub max_range: u64,
}

impl Default for FollowerConfig {
    fn default() -> Self {
        Self {
            start_block: 0,
            confirmations: 2,
            poll_interval: Duration::from_millis(500),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_range: 2_000,
        }
    }
}

/// A jurisdiction event, in the core's terms (entity ids, token ids, hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JEvent {
    TokenRegistered {
        token: TokenId,
        address: Address,
    },
    ReserveUpdated {
        entity: EntityId,
        token: TokenId,
        reserve: U256,
    },
    AccountUpdated {
        left: EntityId,
        right: EntityId,
        token: TokenId,
        collateral: u128,
        ondelta: i128,
    },
    Deposited {
        entity: EntityId,
        token: TokenId,
        from: Address,
        amount: U256,
    },
    Withdrawn {
        entity: EntityId,
        token: TokenId,
        to: Address,
        amount: U256,
    },
    ReserveTransferred {
        from: EntityId,
        to: EntityId,
        token: TokenId,
        amount: U256,
    },
    CollateralAdded {
        entity: EntityId,
        counterparty: EntityId,
        token: TokenId,
        amount: U256,
    },
    Settled {
        left: EntityId,
        right: EntityId,
        nonce: U256,
        diffs: Vec<Depository::TokenDiff>,
    },
    BatchProcessed {
        entity: EntityId,
        nonce: U256,
    },
    DisputeStarted {
        left: EntityId,
        right: EntityId,
        started_by: EntityId,
        height: u64,
        frame_hash: Hash,
        deadline: u64,
    },
    DisputeCountered {
        left: EntityId,
        right: EntityId,
        countered_by: EntityId,
        height: u64,
        frame_hash: Hash,
    },
    DisputeFinalized {
        left: EntityId,
        right: EntityId,
        height: u64,
        frame_hash: Hash,
    },
    DebtRecorded {
        debtor: EntityId,
        creditor: EntityId,
        token: TokenId,
        amount: U256,
        total: U256,
    },
    EntityRegistered {
        entity: EntityId,
        number: U256,
        board_hash: Hash,
    },
    BoardRotated {
        entity: EntityId,
        old_board_hash: Hash,
        new_board_hash: Hash,
        nonce: U256,
    },
}

/// An event with where it happened; `(block, log_index)` orders events and identifies each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEvent {
    pub block: u64,
    pub block_hash: B256,
    pub tx: B256,
    pub log_index: u64,
    pub event: JEvent,
}

/// Confirmed blocks `from_block..=to_block`, read in one poll, and their events in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmedRange {
    pub from_block: u64,
    pub to_block: u64,
    pub to_hash: B256,
    pub events: Vec<ChainEvent>,
}

impl ConfirmedRange {
    /// The range as the core's chain inputs: reserve and account changes and settlements in
    /// chain order, then the confirmed height. The other events (registrations, disputes) are
    /// for the console and the node's records; their effect on reserves and accounts arrives
    /// as the `ReserveUpdated`/`AccountUpdated` that accompany them.
    pub fn core_events(&self) -> Result<Vec<xln_core::runtime::ChainEvent>> {
        use xln_core::runtime::ChainEvent as Core;
        let mut out = Vec::new();
        for event in &self.events {
            match &event.event {
                JEvent::ReserveUpdated {
                    entity,
                    token,
                    reserve,
                } => out.push(Core::Reserve {
                    entity: *entity,
                    token: *token,
                    amount: u128::try_from(*reserve)
                        .map_err(|_| ChainError::OutOfRange("a reserve above u128"))?,
                }),
                JEvent::AccountUpdated {
                    left,
                    right,
                    token,
                    collateral,
                    ondelta,
                } => out.push(Core::Account {
                    left: *left,
                    right: *right,
                    token: *token,
                    collateral: *collateral,
                    ondelta: *ondelta,
                }),
                JEvent::Settled {
                    left, right, nonce, ..
                } => out.push(Core::Settled {
                    left: *left,
                    right: *right,
                    nonce: u64::try_from(*nonce)
                        .map_err(|_| ChainError::OutOfRange("a settlement nonce above u64"))?,
                }),
                _ => {}
            }
        }
        out.push(Core::Block {
            height: self.to_block,
        });
        Ok(out)
    }
}

/// How the follower is doing, for the console and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowerStatus {
    /// The next block to read.
    pub next_block: u64,
    /// Failed polls in a row (0 once a poll succeeds again).
    pub failures: u32,
    /// Failed polls since the start.
    pub total_failures: u64,
    /// Why the last poll failed, while it is failing.
    pub last_error: Option<String>,
}

/// Follows the Depository's and the EntityProvider's events.
#[derive(Debug)]
pub struct Follower {
    provider: DynProvider,
    addresses: Vec<Address>,
    config: FollowerConfig,
    next_block: u64,
    last: Option<(u64, B256)>,
    skipped: u64,
    status: watch::Sender<FollowerStatus>,
}

impl Follower {
    /// A follower of the contracts at `depository` and `entity_provider` over `rpc_url`. It
    /// makes no request until polled.
    pub fn new(
        rpc_url: &str,
        depository: Address,
        entity_provider: Address,
        config: FollowerConfig,
    ) -> Result<Self> {
        let url = Url::parse(rpc_url).map_err(|e| ChainError::InvalidUrl {
            url: rpc_url.to_string(),
            reason: e.to_string(),
        })?;
        let provider = ProviderBuilder::new().connect_http(url).erased();
        let start_block = config.start_block;
        Ok(Self {
            provider,
            addresses: vec![depository, entity_provider],
            next_block: config.start_block,
            config,
            last: None,
            skipped: 0,
            status: watch::Sender::new(FollowerStatus {
                next_block: start_block,
                ..FollowerStatus::default()
            }),
        })
    }

    /// Updates of the follower's status while it runs.
    pub fn subscribe(&self) -> watch::Receiver<FollowerStatus> {
        self.status.subscribe()
    }

    /// The next block to read.
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// Logs at the followed addresses that did not decode as a known event (none expected).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    async fn block_hash(&self, number: u64) -> Result<Option<B256>> {
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .await
            .map_err(|e| rpc_error("eth_getBlockByNumber", e))?;
        Ok(block.map(|b| b.header.hash))
    }

    /// Reads the next confirmed range, if there is one (`None`: nothing new is confirmed),
    /// with its events in order. On error the cursor has not moved.
    pub async fn poll_once(&mut self) -> Result<Option<ConfirmedRange>> {
        let head = self
            .provider
            .get_block_number()
            .await
            .map_err(|e| rpc_error("eth_blockNumber", e))?;
        if let Some((number, expected)) = self.last {
            match self.block_hash(number).await? {
                Some(actual) if actual == expected => {}
                actual => {
                    return Err(ChainError::DeepReorg {
                        block: number,
                        reason: format!(
                            "block {number} was {expected} when read, now {}",
                            actual.map_or("missing".to_string(), |h| h.to_string())
                        ),
                    });
                }
            }
        }
        let Some(safe) = head.checked_sub(self.config.confirmations) else {
            return Ok(None);
        };
        if self.next_block > safe {
            return Ok(None);
        }
        let to = safe.min(
            self.next_block
                .saturating_add(self.config.max_range.max(1) - 1),
        );
        let Some(to_hash) = self.block_hash(to).await? else {
            return Ok(None);
        };
        let filter = Filter::new()
            .address(self.addresses.clone())
            .from_block(self.next_block)
            .to_block(to);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| rpc_error("eth_getLogs", e))?;
        if self.block_hash(to).await? != Some(to_hash) {
            // The range changed under us: read it again next time.
            return Ok(None);
        }
        let mut events = Vec::with_capacity(logs.len());
        for log in &logs {
            if log
                .block_hash
                .is_some_and(|h| log.block_number == Some(to) && h != to_hash)
            {
                return Ok(None);
            }
            match decode(log) {
                Some(event) => events.push(event),
                None => self.skipped += 1,
            }
        }
        events.sort_by_key(|e| (e.block, e.log_index));
        let range = ConfirmedRange {
            from_block: self.next_block,
            to_block: to,
            to_hash,
            events,
        };
        self.next_block = to + 1;
        self.last = Some((to, to_hash));
        Ok(Some(range))
    }

    /// Polls until `shutdown` turns true, sending every confirmed range (with its events) to
    /// `sink` in order: the node's writer task turns each into one core input. Transient
    /// errors (RPC unreachable) are retried with exponential backoff; a deep reorg or a closed
    /// sink ends it.
    pub async fn run(
        mut self,
        sink: mpsc::Sender<ConfirmedRange>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Self> {
        let mut backoff = self.config.min_backoff;
        loop {
            if *shutdown.borrow() {
                return Ok(self);
            }
            let polled = self.poll_once().await;
            let next_block = self.next_block;
            match &polled {
                Ok(_) => self.status.send_modify(|s| {
                    s.next_block = next_block;
                    s.failures = 0;
                    s.last_error = None;
                }),
                Err(e) => self.status.send_modify(|s| {
                    s.failures = s.failures.saturating_add(1);
                    s.total_failures += 1;
                    s.last_error = Some(e.to_string());
                }),
            }
            let wait = match polled {
                Ok(Some(range)) => {
                    backoff = self.config.min_backoff;
                    if sink.send(range).await.is_err() {
                        return Ok(self);
                    }
                    Duration::ZERO
                }
                Ok(None) => {
                    backoff = self.config.min_backoff;
                    self.config.poll_interval
                }
                Err(e) if e.is_transient() => {
                    let wait = backoff;
                    backoff = backoff.saturating_mul(2).min(self.config.max_backoff);
                    wait
                }
                Err(e) => return Err(e),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

fn decode(log: &Log) -> Option<ChainEvent> {
    let topics = log.topics();
    let data = &log.data().data;
    let event = if let Ok(e) = Depository::DepositoryEvents::decode_raw_log(topics, data) {
        depository_event(e)?
    } else {
        entity_provider_event(
            EntityProvider::EntityProviderEvents::decode_raw_log(topics, data).ok()?,
        )
    };
    Some(ChainEvent {
        block: log.block_number?,
        block_hash: log.block_hash?,
        tx: log.transaction_hash.unwrap_or_default(),
        log_index: log.log_index?,
        event,
    })
}

fn depository_event(e: Depository::DepositoryEvents) -> Option<JEvent> {
    use Depository::DepositoryEvents as E;
    Some(match e {
        E::TokenRegistered(e) => JEvent::TokenRegistered {
            token: e.tokenId,
            address: e.token,
        },
        E::ReserveUpdated(e) => JEvent::ReserveUpdated {
            entity: entity_id(&e.entity),
            token: e.tokenId,
            reserve: e.reserve,
        },
        E::AccountUpdated(e) => JEvent::AccountUpdated {
            left: entity_id(&e.left),
            right: entity_id(&e.right),
            token: e.tokenId,
            // The contract keeps collateral in u128 and ondelta in i128.
            collateral: u128::try_from(e.collateral).ok()?,
            ondelta: i128::try_from(e.ondelta).ok()?,
        },
        E::Deposited(e) => JEvent::Deposited {
            entity: entity_id(&e.entity),
            token: e.tokenId,
            from: e.from,
            amount: e.amount,
        },
        E::Withdrawn(e) => JEvent::Withdrawn {
            entity: entity_id(&e.entity),
            token: e.tokenId,
            to: e.to,
            amount: e.amount,
        },
        E::ReserveTransferred(e) => JEvent::ReserveTransferred {
            from: entity_id(&e.from),
            to: entity_id(&e.to),
            token: e.tokenId,
            amount: e.amount,
        },
        E::CollateralAdded(e) => JEvent::CollateralAdded {
            entity: entity_id(&e.entity),
            counterparty: entity_id(&e.counterparty),
            token: e.tokenId,
            amount: e.amount,
        },
        E::Settled(e) => JEvent::Settled {
            left: entity_id(&e.left),
            right: entity_id(&e.right),
            nonce: e.nonce,
            diffs: e.diffs,
        },
        E::BatchProcessed(e) => JEvent::BatchProcessed {
            entity: entity_id(&e.entity),
            nonce: e.nonce,
        },
        E::DisputeStarted(e) => JEvent::DisputeStarted {
            left: entity_id(&e.left),
            right: entity_id(&e.right),
            started_by: entity_id(&e.startedBy),
            height: e.height,
            frame_hash: hash(&e.frameHash),
            deadline: e.deadline,
        },
        E::DisputeCountered(e) => JEvent::DisputeCountered {
            left: entity_id(&e.left),
            right: entity_id(&e.right),
            countered_by: entity_id(&e.counteredBy),
            height: e.height,
            frame_hash: hash(&e.frameHash),
        },
        E::DisputeFinalized(e) => JEvent::DisputeFinalized {
            left: entity_id(&e.left),
            right: entity_id(&e.right),
            height: e.height,
            frame_hash: hash(&e.frameHash),
        },
        E::DebtRecorded(e) => JEvent::DebtRecorded {
            debtor: entity_id(&e.debtor),
            creditor: entity_id(&e.creditor),
            token: e.tokenId,
            amount: e.amount,
            total: e.totalDebt,
        },
    })
}

fn entity_provider_event(e: EntityProvider::EntityProviderEvents) -> JEvent {
    use EntityProvider::EntityProviderEvents as E;
    match e {
        E::EntityRegistered(e) => JEvent::EntityRegistered {
            entity: entity_id(&e.entityId),
            number: e.number,
            board_hash: hash(&e.boardHash),
        },
        E::BoardRotated(e) => JEvent::BoardRotated {
            entity: entity_id(&e.entityId),
            old_board_hash: hash(&e.oldBoardHash),
            new_board_hash: hash(&e.newBoardHash),
            nonce: e.nonce,
        },
    }
}
