//! Multi-hop payments inside the entity machine (PROTOCOL.md §7).
//!
//! The sender locks on its first account with an onion for the route. Each hop's proposer
//! decrypts its layer (it alone holds the key) and submits what it says as an
//! [`EntityTx::HtlcInstruction`]; every member then checks the economics by replay: the next
//! lock carries less than the incoming one by at least the hop's fee and expires earlier by the
//! hop margin, so a hop can never pay out more than it is owed, nor later than it can claim.
//! Secrets travel back through the committed resolutions and settle each incoming lock;
//! failures cancel back with the failing hop and the reason.

use super::state::{EntityEvent, EntityState, EntityTx, EntityTxError, Outcome};
use crate::account::{
    Account, AccountEvent, AccountTx, Clock, FailReason, Failure, HtlcResolution,
};
use crate::board::EntityId;
use crate::crypto::{Hash, PublicKey, keccak256};
use crate::delta::{Side, TokenId};
use crate::gossip::ProfileStore;
use crate::onion::{self, HopInstruction, Preimage};
use crate::routing::{FeePolicy, Route, RouteError};
use serde::{Deserialize, Serialize};

/// How long the receiver's lock lives, and how much longer each earlier hop's lock lives.
pub const FINAL_EXPIRY_MS: u64 = 60_000;
pub const HOP_EXPIRY_MARGIN_MS: u64 = 30_000;
/// The same in jurisdiction blocks: the bound a dispute on chain respects.
pub const FINAL_EXPIRY_BLOCKS: u64 = 20;
pub const HOP_EXPIRY_MARGIN_BLOCKS: u64 = 10;
/// The most hops a route may have.
pub const MAX_ROUTE_HOPS: usize = 16;
/// Finished payments kept in the state (the oldest go first); their outcome is also an event,
/// which the node keeps for history.
pub const KEPT_FINISHED_PAYMENTS: usize = 1_024;

/// One hop of a route as the sender knows it: who, the key its onion layer is sealed to (its
/// proposer's), and what it charges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteHop {
    pub entity: EntityId,
    pub key: PublicKey,
    pub fee: FeePolicy,
}

impl RouteHop {
    /// The hops of `route` after the sender, with the onion keys and fees their profiles
    /// publish. Every hop needs a profile: its layer is sealed to the key in it.
    pub fn from_route(route: &Route, profiles: &ProfileStore) -> Result<Vec<RouteHop>, RouteError> {
        route
            .hops
            .iter()
            .skip(1)
            .map(|entity| {
                let profile = profiles.get(entity).ok_or(RouteError::NoProfile(*entity))?;
                let profile = &profile.profile;
                Ok(RouteHop {
                    entity: *entity,
                    key: profile.onion_key,
                    fee: FeePolicy {
                        base: profile.fee_base,
                        ppm: profile.fee_ppm,
                    },
                })
            })
            .collect()
    }
}

/// One lock of a route: the hop, the key its onion layer is sealed to, and what its incoming
/// lock carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LockedHop {
    pub entity: EntityId,
    pub key: PublicKey,
    pub amount: u128,
}

/// A payment to start: `route` lists the hops after us, the receiver last. The preimage and
/// the onion session seed come from the runtime's random input (the node keeps a seed for a
/// while, so that onion layers to a known hop cost no ECDH; see `onion`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentOrder {
    pub token: TokenId,
    pub amount: u128,
    pub route: Vec<RouteHop>,
    pub preimage: Preimage,
    pub seed: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentStatus {
    Pending,
    /// The receiver revealed the preimage: the receipt.
    Succeeded {
        preimage: [u8; 32],
    },
    Failed(Failure),
}

/// A payment this entity sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub token: TokenId,
    /// What the receiver gets.
    pub amount: u128,
    /// What left our account: the amount plus every hop's fee.
    pub sent: u128,
    pub receiver: EntityId,
    pub status: PaymentStatus,
}

/// Why we locked on an account: our own payment, or a forward of an incoming lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    Payment {
        hashlock: Hash,
    },
    Forward {
        inbound_peer: EntityId,
        inbound_lock: u64,
        token: TokenId,
        fee: u128,
    },
}

/// The next id of `me`'s numbering on its account with `peer`, drawn from `counter` (the
/// count of ids drawn so far): LEFT's ids are even, RIGHT's odd, the rule the account checks
/// for locks and offers. `None`, with `counter` unchanged, once the ids are used up: an id is
/// never wrapped onto one drawn before.
pub(super) fn allocate_side_id(counter: &mut u64, me: &EntityId, peer: &EntityId) -> Option<u64> {
    let right = me > peer;
    let id = counter.checked_mul(2)?.checked_add(u64::from(right))?;
    *counter = counter.checked_add(1)?;
    Some(id)
}

/// What a hop asks for forwarding: its fee, or nothing on a netting loop it agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForwardFee {
    Charged,
    WaivedForNetting,
}

impl EntityState {
    /// A fresh lock id on the account with `peer` (see [`allocate_side_id`]).
    fn allocate_lock_id(&mut self, peer: &EntityId) -> Option<u64> {
        allocate_side_id(&mut self.next_lock_id, &self.id, peer)
    }

    pub(super) fn enqueue(&mut self, peer: &EntityId, tx: AccountTx) {
        if let Some(entry) = self.accounts.get_mut(peer) {
            entry.account.enqueue(tx);
        }
    }

    fn cancel(&mut self, peer: &EntityId, lock_id: u64, failure: Failure) {
        self.enqueue(
            peer,
            AccountTx::HtlcResolve {
                lock_id,
                resolution: HtlcResolution::Cancel(failure),
            },
        );
    }

    /// Starts a payment: locks on the first hop with the whole onion.
    pub(super) fn start_payment(
        &mut self,
        order: &PaymentOrder,
        outcome: &mut Outcome,
    ) -> Result<(), EntityTxError> {
        let hops = order.route.len();
        let Some(last) = order.route.last() else {
            return Err(EntityTxError::BadRoute("empty route"));
        };
        if hops > MAX_ROUTE_HOPS {
            return Err(EntityTxError::BadRoute("too many hops"));
        }
        if order.amount == 0 {
            return Err(EntityTxError::BadRoute("zero amount"));
        }
        if last.entity == self.id || order.route.iter().any(|h| h.entity == self.id) {
            return Err(EntityTxError::BadRoute("route passes through the sender"));
        }
        // Each hop once: its layer's key is unique per payment only so.
        let mut seen = std::collections::BTreeSet::new();
        if !order.route.iter().all(|h| seen.insert(h.entity)) {
            return Err(EntityTxError::BadRoute("a hop appears twice"));
        }
        // What each lock carries, from the receiver backwards: a hop's incoming lock is what
        // it forwards plus its fee.
        let mut carried = vec![order.amount; hops];
        for k in (0..hops - 1).rev() {
            let forwarded = carried[k + 1];
            carried[k] = order.route[k]
                .fee
                .fee_for(forwarded)
                .and_then(|fee| forwarded.checked_add(fee))
                .ok_or(EntityTxError::BadRoute("fees overflow"))?;
        }
        let hops: Vec<LockedHop> = order
            .route
            .iter()
            .zip(carried)
            .map(|(hop, amount)| LockedHop {
                entity: hop.entity,
                key: hop.key,
                amount,
            })
            .collect();
        self.lock_along(
            order.token,
            &hops,
            None,
            &order.preimage,
            &order.seed,
            outcome,
        )
    }

    /// Locks on the account with the first of `hops` with an onion that tells each hop to
    /// lock the next one's amount (on a netting loop, `cycle`'s fee-free forward), and the
    /// last to reveal `preimage`; records the payment. Each lock expires a hop margin after
    /// the next one. Checks nothing about the route: the callers do.
    pub(super) fn lock_along(
        &mut self,
        token: TokenId,
        hops: &[LockedHop],
        cycle: Option<Hash>,
        preimage: &Preimage,
        seed: &[u8; 32],
        outcome: &mut Outcome,
    ) -> Result<(), EntityTxError> {
        let (Some(first), Some(last)) = (hops.first(), hops.last()) else {
            return Err(EntityTxError::BadRoute("empty route"));
        };
        if !self.accounts.contains_key(&first.entity) {
            return Err(EntityTxError::NoAccount(first.entity));
        }
        let hashlock = keccak256(&preimage.0);
        if self.payments.contains_key(&hashlock) {
            return Err(EntityTxError::DuplicatePayment(hashlock));
        }
        let count = hops.len();
        // Route length is bounded, so only the clock inputs can make these overflow.
        let expiry = |k: usize| -> Result<(u64, u64), EntityTxError> {
            let later = (count - 1 - k) as u64;
            let at = |base: u64, last: u64, margin: u64| {
                base.checked_add(last)
                    .and_then(|t| t.checked_add(later * margin))
                    .ok_or(EntityTxError::BadRoute("expiry out of range"))
            };
            Ok((
                at(self.timestamp, FINAL_EXPIRY_MS, HOP_EXPIRY_MARGIN_MS)?,
                at(self.j_height, FINAL_EXPIRY_BLOCKS, HOP_EXPIRY_MARGIN_BLOCKS)?,
            ))
        };
        let mut payload = Vec::new();
        for k in (0..count).rev() {
            let instruction = if k == count - 1 {
                HopInstruction::Final {
                    preimage: *preimage,
                    amount: last.amount,
                }
            } else {
                let (expires_at_ms, reveal_before_j_height) = expiry(k + 1)?;
                let (next, amount) = (hops[k + 1].entity, hops[k + 1].amount);
                match cycle {
                    None => HopInstruction::Forward {
                        next,
                        amount,
                        expires_at_ms,
                        reveal_before_j_height,
                        payload,
                    },
                    Some(cycle) => HopInstruction::NettingForward {
                        cycle,
                        next,
                        amount,
                        expires_at_ms,
                        reveal_before_j_height,
                        payload,
                    },
                }
            };
            let recipient = &hops[k].key;
            payload = onion::seal(
                recipient,
                &instruction,
                &onion::session_secret(seed, recipient),
                &hashlock,
                &mut self.onion_cache,
            )
            .map_err(|_| EntityTxError::BadRoute("cannot seal the onion"))?;
        }
        let (expires_at_ms, reveal_before_j_height) = expiry(0)?;
        let lock_id = self
            .allocate_lock_id(&first.entity)
            .ok_or(EntityTxError::IdsExhausted)?;
        self.enqueue(
            &first.entity,
            AccountTx::HtlcLock {
                lock_id,
                hashlock,
                token,
                amount: first.amount,
                expires_at_ms,
                reveal_before_j_height,
                payload,
            },
        );
        self.origins
            .insert((first.entity, lock_id), Origin::Payment { hashlock });
        self.payments.insert(
            hashlock,
            Payment {
                token,
                amount: last.amount,
                sent: first.amount,
                receiver: last.entity,
                status: PaymentStatus::Pending,
            },
        );
        outcome.events.push(EntityEvent::PaymentSent {
            hashlock,
            receiver: last.entity,
            amount: last.amount,
        });
        Ok(())
    }

    /// Acts on what our proposer decrypted from an incoming lock's onion (`None`: it did not
    /// decrypt). Every outcome is valid: a refusal cancels the incoming lock with the reason.
    pub(super) fn follow_instruction(
        &mut self,
        peer: EntityId,
        lock_id: u64,
        instruction: Option<&HopInstruction>,
        outcome: &mut Outcome,
    ) -> Result<(), EntityTxError> {
        if !self.awaiting.contains_key(&(peer, lock_id)) {
            return Err(EntityTxError::NotAwaiting { peer, lock_id });
        }
        let lock = self
            .accounts
            .get(&peer)
            .and_then(|e| e.account.state().locks.get(&lock_id))
            .cloned()
            .ok_or(EntityTxError::NotAwaiting { peer, lock_id })?;
        self.awaiting.remove(&(peer, lock_id));
        let decision = match instruction {
            None => Err(FailReason::BadOnion),
            Some(HopInstruction::Final { preimage, amount }) => {
                if keccak256(&preimage.0) != lock.hashlock {
                    Err(FailReason::WrongPreimage)
                } else if lock.amount < *amount {
                    Err(FailReason::WrongAmount)
                } else {
                    // Received once the reveal commits (see `follow_htlcs`).
                    self.receiving
                        .insert((peer, lock_id), (lock.hashlock, lock.amount));
                    self.enqueue(
                        &peer,
                        AccountTx::HtlcResolve {
                            lock_id,
                            resolution: HtlcResolution::Secret(preimage.0),
                        },
                    );
                    Ok(())
                }
            }
            Some(HopInstruction::Forward {
                next,
                amount,
                expires_at_ms,
                reveal_before_j_height,
                payload,
            }) => self.forward(
                peer,
                lock_id,
                &lock,
                *next,
                *amount,
                (*expires_at_ms, *reveal_before_j_height),
                payload,
                ForwardFee::Charged,
            ),
            Some(HopInstruction::NettingForward {
                cycle,
                next,
                amount,
                expires_at_ms,
                reveal_before_j_height,
                payload,
            }) => self
                .check_netting_forward(cycle, peer, &lock, *next, *amount)
                .and_then(|()| {
                    self.forward(
                        peer,
                        lock_id,
                        &lock,
                        *next,
                        *amount,
                        (*expires_at_ms, *reveal_before_j_height),
                        payload,
                        ForwardFee::WaivedForNetting,
                    )
                })
                // An agreement lets one loop through, once.
                .map(|()| {
                    self.netting_agreements.remove(cycle);
                }),
        };
        if let Err(reason) = decision {
            let failure = Failure {
                hop: self.id,
                reason,
            };
            outcome
                .events
                .push(EntityEvent::ForwardRefused { peer, failure });
            self.cancel(&peer, lock_id, failure);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        peer: EntityId,
        lock_id: u64,
        lock: &crate::account::Htlc,
        next: EntityId,
        amount: u128,
        (expires_at_ms, reveal_before_j_height): (u64, u64),
        payload: &[u8],
        charge: ForwardFee,
    ) -> Result<(), FailReason> {
        if !self.accounts.contains_key(&next) || next == peer {
            return Err(FailReason::UnknownNextHop);
        }
        let fee = lock
            .amount
            .checked_sub(amount)
            .ok_or(FailReason::WrongAmount)?;
        let required = match charge {
            ForwardFee::Charged => self.fees.fee_for(amount),
            ForwardFee::WaivedForNetting => Some(0),
        };
        if amount == 0 || required.is_none_or(|required| fee < required) {
            return Err(FailReason::FeeTooLow);
        }
        let margin_ms = expires_at_ms.checked_add(HOP_EXPIRY_MARGIN_MS);
        let margin_blocks = reveal_before_j_height.checked_add(HOP_EXPIRY_MARGIN_BLOCKS);
        if margin_ms.is_none_or(|t| lock.expires_at_ms < t)
            || margin_blocks.is_none_or(|b| lock.reveal_before_j_height < b)
        {
            return Err(FailReason::ExpiryTooSoon);
        }
        // With no lock id left we cannot lock on the next account at all.
        let out_id = self.allocate_lock_id(&next).ok_or(FailReason::NoCapacity)?;
        self.enqueue(
            &next,
            AccountTx::HtlcLock {
                lock_id: out_id,
                hashlock: lock.hashlock,
                token: lock.token,
                amount,
                expires_at_ms,
                reveal_before_j_height,
                payload: payload.to_vec(),
            },
        );
        self.origins.insert(
            (next, out_id),
            Origin::Forward {
                inbound_peer: peer,
                inbound_lock: lock_id,
                token: lock.token,
                fee,
            },
        );
        Ok(())
    }

    /// Reacts to what an account step did to HTLCs: incoming locks wait for their
    /// instruction, resolutions of our locks settle or cancel backwards.
    pub(super) fn follow_htlcs(
        &mut self,
        peer: EntityId,
        event: &AccountEvent,
        outcome: &mut Outcome,
    ) {
        let peer_side = if self.id > peer {
            Side::Left
        } else {
            Side::Right
        };
        match event {
            AccountEvent::Committed { by_left, txs, .. } => {
                let by_peer = *by_left == (peer_side == Side::Left);
                for tx in txs {
                    match tx {
                        AccountTx::HtlcLock {
                            lock_id, payload, ..
                        } if by_peer => {
                            self.awaiting.insert((peer, *lock_id), payload.clone());
                        }
                        AccountTx::HtlcResolve {
                            lock_id,
                            resolution,
                        } => match self.origins.remove(&(peer, *lock_id)) {
                            Some(origin) => self.outgoing_resolved(origin, resolution, outcome),
                            // An incoming lock: our reveal as its receiver committed, or its
                            // sender cancelled it after expiry.
                            None => {
                                self.awaiting.remove(&(peer, *lock_id));
                                let received = self.receiving.remove(&(peer, *lock_id));
                                if let (Some((hashlock, amount)), HtlcResolution::Secret(_)) =
                                    (received, resolution)
                                {
                                    outcome.events.push(EntityEvent::PaymentReceived {
                                        hashlock,
                                        from: peer,
                                        amount,
                                    });
                                }
                            }
                        },
                        _ => {}
                    }
                }
            }
            AccountEvent::TxDropped {
                tx: AccountTx::HtlcResolve { lock_id, .. },
                ..
            } => {
                // Our reveal came too late: the payment was not received.
                self.receiving.remove(&(peer, *lock_id));
            }
            AccountEvent::TxDropped {
                tx: AccountTx::HtlcLock { lock_id, .. },
                ..
            } => {
                if let Some(origin) = self.origins.remove(&(peer, *lock_id)) {
                    let failure = Failure {
                        hop: self.id,
                        reason: FailReason::NoCapacity,
                    };
                    self.outgoing_resolved(origin, &HtlcResolution::Cancel(failure), outcome);
                }
            }
            _ => {}
        }
    }

    fn outgoing_resolved(
        &mut self,
        origin: Origin,
        resolution: &HtlcResolution,
        outcome: &mut Outcome,
    ) {
        match origin {
            Origin::Payment { hashlock } => {
                let status = match resolution {
                    HtlcResolution::Secret(preimage) => PaymentStatus::Succeeded {
                        preimage: *preimage,
                    },
                    HtlcResolution::Cancel(failure) => PaymentStatus::Failed(*failure),
                };
                outcome.events.push(EntityEvent::PaymentFinished {
                    hashlock,
                    status: status.clone(),
                });
                self.netting_loop_finished(&hashlock, &status, outcome);
                if let Some(payment) = self.payments.get_mut(&hashlock) {
                    payment.status = status;
                    let next = self
                        .finished_payments
                        .keys()
                        .next_back()
                        .map_or(0, |n| n + 1);
                    self.finished_payments.insert(next, hashlock);
                }
                while self.finished_payments.len() > KEPT_FINISHED_PAYMENTS {
                    let Some(&oldest) = self.finished_payments.keys().next() else {
                        break;
                    };
                    if let Some(hashlock) = self.finished_payments.remove(&oldest) {
                        self.payments.remove(&hashlock);
                    }
                }
            }
            Origin::Forward {
                inbound_peer,
                inbound_lock,
                token,
                fee,
            } => {
                if let HtlcResolution::Secret(_) = resolution {
                    outcome.events.push(EntityEvent::Forwarded {
                        from: inbound_peer,
                        token,
                        fee,
                    });
                }
                self.enqueue(
                    &inbound_peer,
                    AccountTx::HtlcResolve {
                        lock_id: inbound_lock,
                        resolution: resolution.clone(),
                    },
                );
            }
        }
    }

    /// Our locks past expiry that no cancellation is on its way for.
    pub fn expired_outgoing(&self, clock: Clock) -> Vec<(EntityId, u64)> {
        let mut expired = Vec::new();
        for (peer, entry) in &self.accounts {
            let side = entry.account.side();
            for (lock_id, lock) in &entry.account.state().locks {
                if lock.sender == side
                    && lock.expired(clock)
                    && !resolution_on_its_way(&entry.account, *lock_id)
                {
                    expired.push((*peer, *lock_id));
                }
            }
        }
        expired
    }

    pub(super) fn cancel_expired(&mut self, outcome: &mut Outcome) -> Result<(), EntityTxError> {
        let clock = Clock {
            timestamp: self.timestamp,
            j_height: self.j_height,
        };
        let expired = self.expired_outgoing(clock);
        if expired.is_empty() {
            return Err(EntityTxError::NothingExpired);
        }
        for (peer, lock_id) in expired {
            let failure = Failure {
                hop: peer,
                reason: FailReason::Expired,
            };
            outcome
                .events
                .push(EntityEvent::LockExpired { peer, lock_id });
            self.cancel(&peer, lock_id, failure);
        }
        Ok(())
    }

    /// The instructions our proposer must decrypt, in order.
    pub fn awaiting_instructions(&self) -> impl Iterator<Item = (&(EntityId, u64), &Vec<u8>)> {
        self.awaiting.iter()
    }
}

/// Whether a resolution of `lock_id` is queued or in our frame in flight.
fn resolution_on_its_way(account: &Account, lock_id: u64) -> bool {
    let resolves =
        |tx: &AccountTx| matches!(tx, AccountTx::HtlcResolve { lock_id: id, .. } if *id == lock_id);
    account.mempool().iter().any(resolves)
        || account
            .pending()
            .is_some_and(|p| p.frame.txs.iter().any(resolves))
}

impl EntityTx {
    /// Whether this is the instruction for the given incoming lock.
    pub fn is_instruction_for(&self, key: &(EntityId, u64)) -> bool {
        matches!(self, EntityTx::HtlcInstruction { peer, lock_id, .. } if (*peer, *lock_id) == *key)
    }
}
