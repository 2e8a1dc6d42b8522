//! Sends the node's chain transactions, one at a time, and watches the chain's head.
//!
//! A job is a batch of an entity's operations (what its frames decided, or a dispute) or a
//! deposit from the signer's wallet. Results go back to the writer as inputs (for the log and
//! the view) and, when a request is waiting, to its reply channel.

use super::NodeInput;
use crate::api::Response;
use crate::chain::batch::{BatchBuilder, ChainOp};
use crate::chain::client::{Jurisdiction, TxOutcome};
use crate::chain::encode;
use alloy::primitives::{Address, U256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use xln_core::board::{Board, EntityId, QuorumSignature};
use xln_core::crypto::{Hash, SignerKey};

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
                let (what, result, reply) = run_job(&jurisdiction, &key, job).await;
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
                return (
                    what,
                    Err(
                        "batches of multi-signer entities need the board's signatures, which \
                         the node does not gather yet"
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
