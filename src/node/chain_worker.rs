//! Sends the node's chain transactions, one at a time, and watches the chain's head.
//!
//! A job is a batch of an entity's operations (what its frames decided, or a single signer's
//! dispute) or a deposit from the signer's wallet. Results go back to the writer as inputs (for the log and
//! the view) and, when a request is waiting, to its reply channel.
//!
//! A single-signer entity's batch is signed here with the node's key. A multi-signer
//! entity's batch of committed chain requests ([`ChainJob::BoardBatch`]) needs the board's
//! quorum: the worker reads the entity's batch nonce, computes the batch digest and asks the
//! writer for a signing round among the members (each member signs only requests its own
//! replica committed, see `xln_core::entity::consensus::cosign`). A round that does not reach
//! the threshold within [`ROUND_TIMEOUT`] is asked again, [`ROUND_ATTEMPTS`] times in all,
//! then the batch is dropped with an error in the log. Jobs run one at a time, so the nonce
//! read is the one the batch lands at unless another process submits for the entity.

use super::NodeInput;
use crate::api::Response;
use crate::chain::batch::{self, BatchBuilder, ChainOp};
use crate::chain::client::{Jurisdiction, TxOutcome};
use crate::chain::encode;
use alloy::primitives::{Address, U256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use xln_core::board::{Board, EntityId, QuorumSignature};
use xln_core::crypto::{Hash, SignerKey};
use xln_core::entity::{ChainRequest, EntityMessage};

/// How long one signing round among the board's members may take.
pub(crate) const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// How many signing rounds a multi-signer batch gets before it is dropped.
pub(crate) const ROUND_ATTEMPTS: u32 = 3;

/// Jobs that may wait for the worker.
const QUEUE: usize = 256;
/// How often the chain's head is read for the status.
const HEAD_EVERY: Duration = Duration::from_secs(1);

pub(crate) enum ChainJob {
    Batch {
        entity: EntityId,
        board: Board,
        ops: Vec<ChainOp>,
        what: String,
        reply: Option<oneshot::Sender<Response>>,
    },
    /// Chain requests a multi-signer entity committed, as one batch signed by its board.
    BoardBatch {
        entity: EntityId,
        board: Board,
        requests: Vec<ChainRequest>,
        what: String,
    },
    Deposit {
        entity: EntityId,
        token: Address,
        amount: u128,
        what: String,
        reply: oneshot::Sender<Response>,
    },
}

impl ChainJob {
    pub fn into_reply(self) -> Option<oneshot::Sender<Response>> {
        match self {
            ChainJob::Batch { reply, .. } => reply,
            ChainJob::BoardBatch { .. } => None,
            ChainJob::Deposit { reply, .. } => Some(reply),
        }
    }
}

pub(crate) fn spawn(
    jurisdiction: Arc<Jurisdiction>,
    key: SignerKey,
    writer: mpsc::Sender<NodeInput>,
    mut shutdown: watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> mpsc::Sender<ChainJob> {
    let (jobs_tx, mut jobs) = mpsc::channel::<ChainJob>(QUEUE);
    {
        let jurisdiction = jurisdiction.clone();
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(job) = jobs.recv().await {
                let (what, result, reply) = run_job(&jurisdiction, &key, &writer, job).await;
                let message = result.as_ref().map_err(|e| e.clone());
                if let Some(reply) = reply {
                    let _ = reply.send(match &message {
                        Ok(outcome) => Response::ChainTx {
                            tx: encode::hash(&outcome.tx),
                            block: outcome.block,
                            gas_used: outcome.gas_used,
                        },
                        Err(message) => Response::Error {
                            message: format!("{what}: {message}"),
                        },
                    });
                }
                let done = NodeInput::ChainDone { what, result };
                if writer.send(done).await.is_err() {
                    break;
                }
            }
        }));
    }
    tasks.push(tokio::spawn(async move {
        let mut every = tokio::time::interval(HEAD_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.changed() => break,
            }
            let head = jurisdiction.block_number().await;
            let input = match head {
                Ok(head) => NodeInput::ChainHead {
                    head: Some(head),
                    error: None,
                },
                Err(error) => NodeInput::ChainHead {
                    head: None,
                    error: Some(error.to_string()),
                },
            };
            if writer.send(input).await.is_err() {
                break;
            }
        }
    }));
    jobs_tx
}

async fn run_job(
    jurisdiction: &Jurisdiction,
    key: &SignerKey,
    writer: &mpsc::Sender<NodeInput>,
    job: ChainJob,
) -> (
    String,
    Result<TxOutcome, String>,
    Option<oneshot::Sender<Response>>,
) {
    match job {
        ChainJob::Batch {
            entity,
            board,
            ops,
            what,
            reply,
        } => {
            if board.members().len() != 1 {
                // Only requests the board committed can be co-signed (`BoardBatch`).
                return (
                    what,
                    Err(
                        "a multi-signer entity's board co-signs only batches of chain requests \
                         its frames committed; this operation is not one"
                            .into(),
                    ),
                    reply,
                );
            }
            let batch = BatchBuilder::from_ops(ops).build();
            let sign = |digest: &Hash| QuorumSignature(vec![key.sign(digest)]);
            let result = jurisdiction
                .submit_batch(&entity, &board, batch, &sign)
                .await
                .map_err(|e| e.to_string());
            (what, result, reply)
        }
        ChainJob::BoardBatch {
            entity,
            board,
            requests,
            what,
        } => {
            let result = board_batch(jurisdiction, writer, &entity, &board, &requests, &what).await;
            (what, result, None)
        }
        ChainJob::Deposit {
            entity,
            token,
            amount,
            what,
            reply,
        } => {
            let amount = U256::from(amount);
            let result = async {
                jurisdiction.approve(token, amount).await?;
                jurisdiction.deposit(&entity, token, amount).await
            }
            .await
            .map_err(|e| e.to_string());
            (what, result, Some(reply))
        }
    }
}

/// Gathers the board's quorum over the batch of `requests` at the entity's current nonce (a
/// signing round run by the writer) and submits it; see the module doc.
async fn board_batch(
    jurisdiction: &Jurisdiction,
    writer: &mpsc::Sender<NodeInput>,
    entity: &EntityId,
    board: &Board,
    requests: &[ChainRequest],
    what: &str,
) -> Result<TxOutcome, String> {
    for attempt in 1..=ROUND_ATTEMPTS {
        let nonce = jurisdiction
            .entity_nonce(entity)
            .await
            .map_err(|e| e.to_string())?;
        let nonce = u64::try_from(nonce).map_err(|_| format!("batch nonce {nonce} too large"))?;
        let digest = batch::requests_digest(&jurisdiction.domain(), entity, nonce, requests);
        let (reply, signed) = oneshot::channel();
        let round = NodeInput::SignRound {
            digest,
            ask: EntityMessage::SignBatch {
                nonce,
                requests: requests.to_vec(),
                digest,
            },
            what: format!("{what} at nonce {nonce}"),
            reply,
        };
        if writer.send(round).await.is_err() {
            return Err("the node is stopping".into());
        }
        match tokio::time::timeout(ROUND_TIMEOUT, signed).await {
            Ok(Ok(quorum)) => {
                let batch = BatchBuilder::from_ops(requests.iter().map(ChainOp::from)).build();
                return jurisdiction
                    .submit_signed_batch(entity, board, batch, &digest, &quorum)
                    .await
                    .map_err(|e| e.to_string());
            }
            Ok(Err(_)) => return Err("the node is stopping".into()),
            Err(_) => tracing::warn!(
                "{what}: the board did not reach its threshold within {ROUND_TIMEOUT:?} \
                 (round {attempt} of {ROUND_ATTEMPTS})"
            ),
        }
    }
    Err(format!(
        "dropped: the board did not sign it in {ROUND_ATTEMPTS} rounds of {ROUND_TIMEOUT:?} \
         (too few members online, or they refused: see their logs)"
    ))
}
