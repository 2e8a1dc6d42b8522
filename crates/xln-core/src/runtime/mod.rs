//! The runtime: one process's deterministic machine (PROTOCOL.md §6).
//!
//! It hosts replicas of the entities whose signers it has keys for and advances only by
//! [`RuntimeInput`]s: the same inputs in the same order give the same state, on any machine.
//! Messages between local replicas are delivered inside [`Runtime::apply`]; the others leave
//! as outputs for the node to send. The signer keys are not part of the state.

use crate::account::AccountMessage;
use crate::board::{Board, EntityId};
use crate::codec::hash_of;
use crate::crypto::{Address, Hash, SignerKey};
use crate::delta::TokenId;
use crate::entity::{
    ChainDigests, ChainRequest, ConsensusError, EntityEvent, EntityMessage, EntityReplica,
    EntityState, EntityTx, EntityTxError, ReplicaOutput, SignedNettingMessage,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

#[cfg(test)]
mod dispute_tests;
#[cfg(test)]
mod netting_tests;
#[cfg(test)]
mod payment_tests;
#[cfg(test)]
mod settlement_tests;
#[cfg(test)]
mod swap_tests;
#[cfg(test)]
mod sync_tests;
#[cfg(test)]
mod tests;

/// How many message deliveries one input may cause before the runtime stops and reports it.
pub const MAX_DELIVERIES_PER_INPUT: usize = 1_000_000;

/// One signer's replica of one entity: the address of everything a runtime hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReplicaId {
    pub entity: EntityId,
    pub signer: Address,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// Between replicas of one entity.
    Entity(EntityMessage),
    /// Between two entities, about their account.
    Account {
        message: AccountMessage,
        sender_board: Board,
    },
    /// Between two entities, about netting.
    Netting {
        message: SignedNettingMessage,
        sender_board: Board,
    },
}

/// A message between replicas. `from` is authenticated by the transport that carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: ReplicaId,
    pub to: ReplicaId,
    pub payload: Payload,
}

/// What travels between nodes: a message between replicas, a signed profile (gossip), or the
/// positions a peer shares for netting. The node's transport carries it postcard-encoded; the
/// fuzz target `peer_message` decodes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireMessage {
    Envelope(Envelope),
    Profile(crate::gossip::SignedProfile),
    Positions(Box<crate::netting::PositionShare>),
}

/// What the operator (console, CLI) asks of the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Host the replica of `signer` of the lazy entity whose board this is.
    AddReplica {
        board: Board,
        signer: Address,
        domain: Hash,
    },
    /// Submit transactions to our replica of `entity`.
    Submit {
        entity: EntityId,
        txs: Vec<EntityTx>,
    },
}

/// What the chain follower observed (confirmed), in the core's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChainEvent {
    /// Blocks up to `height` are read.
    Block { height: u64 },
    /// `entity`'s reserve of `token` is now `amount`.
    Reserve {
        entity: EntityId,
        token: TokenId,
        amount: u128,
    },
    /// The account `left`–`right` now holds this collateral and ondelta of `token`.
    Account {
        left: EntityId,
        right: EntityId,
        token: TokenId,
        collateral: u128,
        ondelta: i128,
    },
    /// The settlement `nonce` of the account `left`–`right` was applied (its changes arrive as
    /// `Account` and `Reserve` events).
    Settled {
        left: EntityId,
        right: EntityId,
        nonce: u64,
    },
}

/// Everything the runtime advances by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInput {
    /// Milliseconds; the runtime's clock never goes back.
    pub timestamp: u64,
    pub commands: Vec<Command>,
    pub messages: Vec<Envelope>,
    pub chain_events: Vec<ChainEvent>,
}

/// Why an input was refused. Nothing changed because of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("no replica {0:?} here")]
    UnknownReplica(ReplicaId),
    #[error("no replica of entity {0} here")]
    UnknownEntity(EntityId),
    #[error("replica {0:?} exists already")]
    ReplicaExists(ReplicaId),
    #[error("no key for signer {0}")]
    NoKey(Address),
    #[error("signer {signer} is not on the board of {entity}")]
    NotAMember { signer: Address, entity: EntityId },
    #[error("replica {replica:?}: {error}")]
    Consensus {
        replica: ReplicaId,
        error: ConsensusError,
    },
    #[error(
        "more than {MAX_DELIVERIES_PER_INPUT} deliveries for one input; the rest go out as messages"
    )]
    TooManyDeliveries,
}

/// What happened, for the console and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    Entity {
        replica: ReplicaId,
        event: EntityEvent,
    },
    Committed {
        replica: ReplicaId,
        height: u64,
        frame_hash: Hash,
    },
    /// The replica went from committed height `from` to `height` by a state snapshot, the
    /// frames between unreplayed.
    SnapshotApplied {
        replica: ReplicaId,
        from: u64,
        height: u64,
        frame_hash: Hash,
    },
    TxDropped {
        replica: ReplicaId,
        tx: Box<EntityTx>,
        error: EntityTxError,
    },
    Rejected(RuntimeError),
    /// A board member's valid signature over `digest`, for the signing round of the proposer
    /// `replica` (see `entity::consensus::cosign`).
    CoSigned {
        replica: ReplicaId,
        digest: Hash,
        signer: Address,
        signature: crate::crypto::Signature,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOutput {
    /// For replicas hosted elsewhere.
    pub messages: Vec<Envelope>,
    pub events: Vec<RuntimeEvent>,
    /// Operations for the jurisdiction, by entity, in the order they were committed.
    pub chain: Vec<(EntityId, ChainRequest)>,
}

/// Everything a runtime holds but its keys: what is snapshotted and hashed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeState {
    pub timestamp: u64,
    pub replicas: BTreeMap<ReplicaId, EntityReplica>,
}

impl RuntimeState {
    /// A commitment to the whole runtime state (the node logs it with each batch of inputs, as
    /// the state they are applied to, and checks it on replay): the time and each replica's [`EntityReplica::hash`], which costs what
    /// changed since the last call.
    pub fn hash(&self) -> Hash {
        self.commitment(EntityReplica::hash)
    }

    /// [`RuntimeState::hash`] computed reading no cache.
    pub fn hash_from_scratch(&self) -> Hash {
        self.commitment(EntityReplica::hash_from_scratch)
    }

    fn commitment(&self, replica_hash: fn(&EntityReplica) -> Hash) -> Hash {
        let RuntimeState {
            timestamp,
            replicas,
        } = self;
        let replicas: Vec<(&ReplicaId, Hash)> = replicas
            .iter()
            .map(|(id, replica)| (id, replica_hash(replica)))
            .collect();
        hash_of(&("xln.runtime.state.v2", timestamp, replicas))
    }
}

pub struct Runtime {
    keys: BTreeMap<Address, SignerKey>,
    state: RuntimeState,
    /// The chain's digests, to check what members are asked to co-sign; without them a
    /// replica co-signs nothing. Like the keys, not part of the state.
    digests: Option<Arc<dyn ChainDigests>>,
}

impl Runtime {
    pub fn new(keys: impl IntoIterator<Item = SignerKey>) -> Self {
        Self::from_state(keys, RuntimeState::default())
    }

    /// A runtime resumed from a snapshot of its state.
    pub fn from_state(keys: impl IntoIterator<Item = SignerKey>, state: RuntimeState) -> Self {
        Self {
            keys: keys.into_iter().map(|k| (k.address(), k)).collect(),
            state,
            digests: None,
        }
    }

    /// Lets the replicas co-sign the chain digests they can check with `digests` (the same
    /// on every replay: give them before applying any input).
    pub fn with_chain_digests(mut self, digests: Arc<dyn ChainDigests>) -> Self {
        self.digests = Some(digests);
        self
    }

    pub fn state(&self) -> &RuntimeState {
        &self.state
    }

    pub fn replica(&self, id: &ReplicaId) -> Option<&EntityReplica> {
        self.state.replicas.get(id)
    }

    /// Our replica of `entity` (the one of the smallest signer address if we hold several).
    pub fn replica_of(&self, entity: &EntityId) -> Option<&EntityReplica> {
        self.local_replica_id(entity)
            .and_then(|id| self.state.replicas.get(&id))
    }

    fn local_replica_id(&self, entity: &EntityId) -> Option<ReplicaId> {
        self.state
            .replicas
            .keys()
            .find(|id| &id.entity == entity)
            .copied()
    }

    /// Advances by one input.
    pub fn apply(&mut self, input: RuntimeInput) -> RuntimeOutput {
        self.state.timestamp = self.state.timestamp.max(input.timestamp);
        let mut run = Run::default();
        for command in input.commands {
            self.command(command, &mut run);
        }
        for event in input.chain_events {
            self.chain_event(&event, &mut run);
        }
        run.queue.extend(input.messages);
        let mut deliveries = 0;
        loop {
            while let Some(envelope) = run.queue.pop_front() {
                deliveries += 1;
                if deliveries > MAX_DELIVERIES_PER_INPUT {
                    // What is left goes out like any message, and comes back as a later input.
                    run.out.messages.push(envelope);
                    run.out.messages.extend(run.queue.drain(..));
                    run.out
                        .events
                        .push(RuntimeEvent::Rejected(RuntimeError::TooManyDeliveries));
                    return run.out;
                }
                self.deliver(envelope, &mut run);
            }
            // A committed frame can give the proposer new duties (an onion to open), so
            // propose until no replica has anything left to propose.
            deliveries += 1;
            if !self.propose_all(&mut run) && run.queue.is_empty() {
                return run.out;
            }
        }
    }

    fn command(&mut self, command: Command, run: &mut Run) {
        match command {
            Command::AddReplica {
                board,
                signer,
                domain,
            } => {
                let entity = board.lazy_entity_id();
                let id = ReplicaId { entity, signer };
                let error = if !self.keys.contains_key(&signer) {
                    Some(RuntimeError::NoKey(signer))
                } else if board.weight_of(&signer).is_none() {
                    Some(RuntimeError::NotAMember { signer, entity })
                } else if self.state.replicas.contains_key(&id) {
                    Some(RuntimeError::ReplicaExists(id))
                } else {
                    None
                };
                match error {
                    Some(error) => run.out.events.push(RuntimeEvent::Rejected(error)),
                    None => {
                        let state = EntityState::new(entity, board, domain);
                        self.state
                            .replicas
                            .insert(id, EntityReplica::new(signer, state));
                    }
                }
            }
            Command::Submit { entity, txs } => match self.local_replica_id(&entity) {
                Some(id) => {
                    let outputs = self.replica_mut(&id).map(|r| r.submit(txs));
                    self.route(id, outputs.unwrap_or_default(), run);
                }
                None => run
                    .out
                    .events
                    .push(RuntimeEvent::Rejected(RuntimeError::UnknownEntity(entity))),
            },
        }
    }

    /// Hands a chain event to the proposers it concerns (members get it through the frame).
    fn chain_event(&mut self, event: &ChainEvent, run: &mut Run) {
        let concerned: Vec<(ReplicaId, EntityTx)> = self
            .state
            .replicas
            .iter()
            .filter(|(_, replica)| replica.is_proposer())
            .filter_map(|(id, replica)| {
                let tx = match *event {
                    ChainEvent::Block { height } if replica.state().j_height < height => {
                        EntityTx::ChainBlock { height }
                    }
                    ChainEvent::Reserve {
                        entity,
                        token,
                        amount,
                    } if entity == id.entity => EntityTx::ChainReserve { token, amount },
                    ChainEvent::Reserve {
                        entity,
                        token,
                        amount,
                    } if replica.state().accounts.contains_key(&entity) => {
                        EntityTx::ChainPeerReserve {
                            peer: entity,
                            token,
                            amount,
                        }
                    }
                    ChainEvent::Account {
                        left,
                        right,
                        token,
                        collateral,
                        ondelta,
                    } if left == id.entity || right == id.entity => EntityTx::ChainAccount {
                        peer: if left == id.entity { right } else { left },
                        token,
                        collateral,
                        ondelta,
                    },
                    ChainEvent::Settled { left, right, nonce }
                        if left == id.entity || right == id.entity =>
                    {
                        EntityTx::ChainSettled {
                            peer: if left == id.entity { right } else { left },
                            nonce,
                        }
                    }
                    _ => return None,
                };
                Some((*id, tx))
            })
            .collect();
        for (id, tx) in concerned {
            let outputs = self.replica_mut(&id).map(|r| r.submit(vec![tx]));
            self.route(id, outputs.unwrap_or_default(), run);
        }
    }

    fn replica_mut(&mut self, id: &ReplicaId) -> Option<&mut EntityReplica> {
        self.state.replicas.get_mut(id)
    }

    fn deliver(&mut self, envelope: Envelope, run: &mut Run) {
        let id = envelope.to;
        let now = self.state.timestamp;
        let (Some(replica), Some(key)) =
            (self.state.replicas.get_mut(&id), self.keys.get(&id.signer))
        else {
            run.out
                .events
                .push(RuntimeEvent::Rejected(RuntimeError::UnknownReplica(id)));
            return;
        };
        let outputs = match envelope.payload {
            Payload::Entity(message) => {
                let digests = self.digests.as_deref();
                match replica.handle_with(envelope.from.signer, message, key, now, digests) {
                    Ok(outputs) => outputs,
                    Err(error) => {
                        // A frame ahead of ours: we missed commits, ask the sender for them.
                        let catch_up = match error {
                            ConsensusError::Future { .. } => {
                                replica.ask_for_commits(envelope.from.signer, now)
                            }
                            _ => Vec::new(),
                        };
                        run.out
                            .events
                            .push(RuntimeEvent::Rejected(RuntimeError::Consensus {
                                replica: id,
                                error,
                            }));
                        catch_up
                    }
                }
            }
            Payload::Account {
                message,
                sender_board,
            } => replica.submit(vec![EntityTx::AccountInput {
                message: Box::new(message),
                sender_board,
            }]),
            Payload::Netting {
                message,
                sender_board,
            } => replica.submit(vec![EntityTx::NettingInput {
                message: Box::new(message),
                sender_board,
            }]),
        };
        self.route(id, outputs, run);
    }

    /// Lets every proposer build a frame; says whether any did.
    fn propose_all(&mut self, run: &mut Run) -> bool {
        let now = self.state.timestamp;
        let ids: Vec<ReplicaId> = self.state.replicas.keys().copied().collect();
        let mut proposed = false;
        for id in ids {
            let (Some(replica), Some(key)) =
                (self.state.replicas.get_mut(&id), self.keys.get(&id.signer))
            else {
                continue;
            };
            let before = (replica.state().height, replica.is_proposing());
            let outputs = replica.propose(key, now);
            proposed |= (replica.state().height, replica.is_proposing()) != before;
            self.route(id, outputs, run);
        }
        proposed
    }

    /// Turns a replica's outputs into deliveries: local ones into the queue, others out.
    fn route(&mut self, from: ReplicaId, outputs: Vec<ReplicaOutput>, run: &mut Run) {
        for output in outputs {
            let envelope = match output {
                ReplicaOutput::ToMember { signer, message } => Envelope {
                    from,
                    to: ReplicaId {
                        entity: from.entity,
                        signer,
                    },
                    payload: Payload::Entity(message),
                },
                ReplicaOutput::ToPeer {
                    peer_board,
                    message,
                    sender_board,
                } => Envelope {
                    from,
                    to: ReplicaId {
                        entity: message.to,
                        signer: peer_board.proposer(),
                    },
                    payload: Payload::Account {
                        message,
                        sender_board,
                    },
                },
                ReplicaOutput::ToPeerNetting {
                    peer_board,
                    message,
                    sender_board,
                } => Envelope {
                    from,
                    to: ReplicaId {
                        entity: message.message.to(),
                        signer: peer_board.proposer(),
                    },
                    payload: Payload::Netting {
                        message,
                        sender_board,
                    },
                },
                ReplicaOutput::Event(event) => {
                    run.out.events.push(RuntimeEvent::Entity {
                        replica: from,
                        event,
                    });
                    continue;
                }
                ReplicaOutput::TxDropped { tx, error } => {
                    run.out.events.push(RuntimeEvent::TxDropped {
                        replica: from,
                        tx: Box::new(tx),
                        error,
                    });
                    continue;
                }
                ReplicaOutput::Chain(request) => {
                    run.out.chain.push((from.entity, request));
                    continue;
                }
                ReplicaOutput::CoSigned {
                    digest,
                    signer,
                    signature,
                } => {
                    run.out.events.push(RuntimeEvent::CoSigned {
                        replica: from,
                        digest,
                        signer,
                        signature,
                    });
                    continue;
                }
                ReplicaOutput::Committed { height, frame_hash } => {
                    run.out.events.push(RuntimeEvent::Committed {
                        replica: from,
                        height,
                        frame_hash,
                    });
                    continue;
                }
                ReplicaOutput::SnapshotApplied {
                    from: from_height,
                    height,
                    frame_hash,
                } => {
                    run.out.events.push(RuntimeEvent::SnapshotApplied {
                        replica: from,
                        from: from_height,
                        height,
                        frame_hash,
                    });
                    continue;
                }
            };
            if self.state.replicas.contains_key(&envelope.to) {
                run.queue.push_back(envelope);
            } else {
                run.out.messages.push(envelope);
            }
        }
    }
}

/// The working set of one `apply`.
#[derive(Default)]
struct Run {
    queue: VecDeque<Envelope>,
    out: RuntimeOutput,
}
