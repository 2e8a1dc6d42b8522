//! The node: the only place with IO (ARCHITECTURE.md, node).
//!
//! One writer task owns the runtime and the store. Everything else (peer sessions, the chain
//! follower and submitter, the control socket, an embedded console) talks to it through
//! channels. The writer batches what arrived into runtime inputs, has them appended to the WAL
//! in one write transaction (the `wal` thread) while it applies them, and lets their outputs
//! leave the process only once that transaction is on disk (persist before send).

mod chain_worker;
pub mod control;
pub mod metrics;
pub mod netting;
mod orders;
pub mod settlement;
mod signing;
mod view;
mod wal;
mod writer;

use crate::api::{NodeLink, NodeView, PendingRequest};
use crate::chain::client::{ChainConfig, Jurisdiction};
use crate::chain::follower::{ConfirmedRange, Follower, FollowerConfig};
use crate::config::{Config, Paths};
use crate::net::{DEFAULT_MAX_MESSAGE_BYTES, Net, NetConfig, NetEvent};
use crate::store::Store;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use xln_core::board::{Board, BoardMember, EntityId};
use xln_core::crypto::SignerKey;
use xln_core::runtime::Runtime;

pub use writer::now_ms;

/// How many requests may wait for the writer before `NodeLink::ask` answers "busy".
const REQUEST_QUEUE: usize = 4_096;
/// How many peer events may wait before peer sessions slow down (backpressure).
const NET_QUEUE: usize = 65_536;

/// Everything a node is started from.
pub struct NodeSetup {
    pub paths: Paths,
    pub config: Config,
    pub key: SignerKey,
    pub chain: ChainConfig,
}

/// A node running in this process.
pub struct RunningNode {
    link: NodeLink,
    pub entity: EntityId,
    pub listen_addr: Option<SocketAddr>,
    /// Where the metrics endpoint listens, when the config asks for one.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    writer: JoinHandle<anyhow::Result<()>>,
}

/// What the writer task hears from the rest of the node.
pub(crate) enum NodeInput {
    Request(PendingRequest),
    Net(Box<NetEvent>),
    Chain(ConfirmedRange),
    /// A chain transaction the chain worker sent finished (or failed).
    ChainDone {
        what: String,
        result: Result<crate::chain::client::TxOutcome, String>,
    },
    ChainHead {
        head: Option<u64>,
        error: Option<String>,
    },
    /// From the chain worker: gather the board's signatures over `digest`, asking every
    /// member with `ask` (a multi-signer entity's batch); the quorum goes to `reply`.
    SignRound {
        digest: xln_core::crypto::Hash,
        ask: xln_core::entity::EntityMessage,
        what: String,
        reply: tokio::sync::oneshot::Sender<xln_core::board::QuorumSignature>,
    },
}

/// The board of our entity: the configured one, or a single-signer board of our key.
pub fn entity_board(config: &Config, key: &SignerKey) -> anyhow::Result<Board> {
    match &config.board {
        None => Ok(Board::single(key.address())),
        Some(board) => {
            let weights = board
                .weights
                .clone()
                .unwrap_or_else(|| vec![1; board.members.len()]);
            anyhow::ensure!(
                weights.len() == board.members.len(),
                "board: {} weights for {} members",
                weights.len(),
                board.members.len()
            );
            let members = board
                .members
                .iter()
                .zip(weights)
                .map(|(signer, weight)| BoardMember {
                    signer: *signer,
                    weight,
                })
                .collect();
            Board::new(board.threshold, members).map_err(|e| anyhow::anyhow!("board: {e}"))
        }
    }
}

/// Opens the store, recovers the runtime (latest snapshot + replay, each recorded state hash
/// checked), and returns it with the number of the last input.
pub fn recover(store: &Store, key: &SignerKey) -> anyhow::Result<(Runtime, u64, Vec<String>)> {
    let recovered = store.recover().context("reading the store")?;
    let mut warnings = recovered.warnings;
    // The digests members check before co-signing: the same on replay as when applied.
    let mut runtime = Runtime::from_state([key.clone()], recovered.state)
        .with_chain_digests(Arc::new(crate::chain::batch::AbiDigests));
    let mut seq = recovered.snapshot_seq;
    for logged in recovered.replay {
        if logged.state_before != xln_core::crypto::Hash::ZERO
            && runtime.state().hash() != logged.state_before
        {
            anyhow::bail!(
                "replaying the inputs up to {} gave another state than the one recorded: the \
                 store and this xln disagree; nothing was changed",
                logged.seq - 1
            );
        }
        runtime.apply(logged.input);
        seq = logged.seq;
    }
    // Cut a torn tail, so that new inputs follow the good ones.
    if let Some(from) = recovered.torn_from {
        store.truncate_from(from).context("cutting a torn tail")?;
        warnings.push(format!("the log now ends at input {seq}"));
    }
    Ok((runtime, seq, warnings))
}

/// Starts a node: recovery, the peer listener and dialers, the chain follower and submitter,
/// and the writer. The control socket is started separately (`control::serve`).
pub async fn start(setup: NodeSetup) -> anyhow::Result<RunningNode> {
    let NodeSetup {
        paths,
        config,
        key,
        chain,
    } = setup;
    std::fs::create_dir_all(&paths.data_dir)
        .with_context(|| format!("creating {}", paths.data_dir.display()))?;
    let store = Store::open(&paths.database())
        .with_context(|| format!("opening {}", paths.database().display()))?;
    let (runtime, seq, warnings) = recover(&store, &key)?;
    let board = entity_board(&config, &key)?;
    anyhow::ensure!(
        board.weight_of(&key.address()).is_some(),
        "the signer {} is not on the configured board",
        key.address()
    );
    let entity = board.lazy_entity_id();

    let (shutdown, shutdown_rx) = watch::channel(false);
    let (input_tx, input_rx) = mpsc::channel::<NodeInput>(NET_QUEUE);
    let (request_tx, mut request_rx) = mpsc::channel::<PendingRequest>(REQUEST_QUEUE);
    let mut tasks = Vec::new();

    // Requests join the writer's input stream.
    {
        let input_tx = input_tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(request) = request_rx.recv().await {
                if input_tx.send(NodeInput::Request(request)).await.is_err() {
                    break;
                }
            }
        }));
    }

    // Peers.
    let (net_tx, mut net_rx) = mpsc::channel::<NetEvent>(NET_QUEUE);
    let net = Net::start(
        NetConfig {
            key: key.clone(),
            listen: config.listen,
            dial: config.dial.clone(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        },
        net_tx,
    )
    .await
    .context("starting the peer listener")?;
    let listen_addr = net.local_addr();
    {
        let input_tx = input_tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(event) = net_rx.recv().await {
                if input_tx
                    .send(NodeInput::Net(Box::new(event)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
    }

    // The chain: a follower feeding the writer, and a worker sending transactions.
    let jurisdiction = Jurisdiction::connect(chain.clone(), &key)
        .await
        .with_context(|| format!("connecting to the chain at {}", chain.rpc_url))?;
    let domain = jurisdiction.domain();
    let followed_from = runtime
        .replica_of(&entity)
        .map(|r| r.state().j_height + 1)
        .unwrap_or(0)
        .max(chain.start_block);
    let follower = Follower::new(
        &chain.rpc_url,
        chain.depository,
        chain.entity_provider,
        FollowerConfig {
            start_block: followed_from,
            confirmations: config.chain.confirmations.unwrap_or(0),
            poll_interval: Duration::from_millis(250),
            ..FollowerConfig::default()
        },
    )?;
    let (range_tx, mut range_rx) = mpsc::channel::<ConfirmedRange>(64);
    {
        let shutdown_rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = follower.run(range_tx, shutdown_rx).await {
                tracing::error!(%error, "the chain follower stopped");
            }
        }));
        let input_tx = input_tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(range) = range_rx.recv().await {
                if input_tx.send(NodeInput::Chain(range)).await.is_err() {
                    break;
                }
            }
        }));
    }
    let jurisdiction = Arc::new(jurisdiction);
    let chain_jobs = chain_worker::spawn(
        jurisdiction,
        key.clone(),
        input_tx.clone(),
        shutdown_rx.clone(),
        &mut tasks,
    );

    let metrics = Arc::new(metrics::Metrics::new());
    let metrics_addr = match config.metrics {
        Some(addr) => {
            let listener = metrics::bind(addr).await?;
            let bound = listener.local_addr()?;
            tasks.push(tokio::spawn(metrics::serve(
                listener,
                metrics.clone(),
                shutdown_rx.clone(),
            )));
            Some(bound)
        }
        None => None,
    };

    let (views_tx, views_rx) = watch::channel(Arc::new(NodeView::default()));
    let store = Arc::new(store);
    let wal = wal::WalAppender::start(store.clone()).context("starting the WAL appender")?;
    let mut writer = writer::Writer::new(writer::WriterParts {
        runtime,
        store,
        wal,
        seq,
        entity,
        board,
        domain,
        key,
        config,
        chain,
        net,
        chain_jobs,
        views: views_tx,
        metrics,
        metrics_addr,
    });
    for warning in warnings {
        writer.warn(warning);
    }
    writer.ensure_replica().context("creating the entity")?;
    let writer = tokio::spawn(writer.run(input_rx, shutdown_rx));
    drop(input_tx);
    Ok(RunningNode {
        link: NodeLink {
            views: views_rx,
            requests: request_tx,
        },
        entity,
        listen_addr,
        metrics_addr,
        shutdown,
        tasks,
        writer,
    })
}

impl RunningNode {
    pub fn link(&self) -> NodeLink {
        self.link.clone()
    }

    /// Asks every task to stop and waits for them: the writer finishes its batch, the store
    /// is closed, sessions and the listener are closed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let result = match self.writer.await {
            Ok(result) => result,
            Err(error) => Err(anyhow::anyhow!("the writer task failed: {error}")),
        };
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
        result
    }

    /// Waits until the writer stops on its own (a fatal store error) or `stop` resolves.
    pub async fn run_until(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            _ = stop => self.shutdown().await,
            result = &mut self.writer => {
                let _ = self.shutdown.send(true);
                for task in self.tasks {
                    task.abort();
                }
                match result {
                    Ok(result) => result,
                    Err(error) => Err(anyhow::anyhow!("the writer task failed: {error}")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xln_core::crypto::Hash;
    use xln_core::runtime::RuntimeInput;

    /// Logs two inputs, the second with `second_before` as the state it was applied to.
    fn log_two(store: &Store, second_before: Option<Hash>) {
        let key = SignerKey::from_bytes(&[5; 32]).unwrap();
        let mut runtime = Runtime::new([key]);
        for (seq, timestamp) in [(1, 1_000), (2, 2_000)] {
            let input = RuntimeInput {
                timestamp,
                ..RuntimeInput::default()
            };
            let before = match second_before {
                Some(hash) if seq == 2 => hash,
                _ => runtime.state().hash(),
            };
            store.append(seq, &input, &before).unwrap();
            runtime.apply(input);
        }
    }

    #[test]
    fn recovery_checks_each_recorded_state_and_refuses_a_replay_that_meets_another() {
        let key = SignerKey::from_bytes(&[5; 32]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let good = Store::open(&dir.path().join("good.redb")).unwrap();
        log_two(&good, None);
        let (runtime, seq, warnings) = recover(&good, &key).unwrap();
        assert_eq!((seq, runtime.state().timestamp), (2, 2_000));
        assert!(warnings.is_empty(), "{warnings:?}");

        let bad = Store::open(&dir.path().join("bad.redb")).unwrap();
        log_two(&bad, Some(Hash([9; 32])));
        let error = recover(&bad, &key).err().expect("refused");
        assert!(
            error.to_string().contains("inputs up to 1") && error.to_string().contains("disagree"),
            "{error:#}"
        );
    }
}
