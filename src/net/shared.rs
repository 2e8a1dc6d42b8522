//! The state the tasks of one [`super::Net`] share: per peer signer, the outbound log of
//! unacknowledged messages, the inbound high-water mark, the current session and the block.
//!
//! One mutex guards it; it is never held across an await. Events are sent under it with
//! capacity reserved beforehand, so their order is the order of the state changes.

use super::wire::{Authenticated, Frame};
use super::{MAX_QUEUED_BYTES_PER_PEER, MAX_QUEUED_PER_PEER, NetEvent, Timing, WireMessage};
use crate::api::PeerView;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::mpsc::{self, PermitIterator};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Bytes;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use xln_core::codec::encode;
use xln_core::crypto::{Address, SignerKey};

pub(crate) struct Shared {
    pub key: SignerKey,
    pub me: Address,
    /// Random per start: tells peers that our numbering started again.
    pub epoch: u64,
    pub max_message_bytes: usize,
    pub timing: Timing,
    pub ws_config: WebSocketConfig,
    /// Bounds the handshakes in progress on the listener.
    pub handshakes: Arc<Semaphore>,
    events: mpsc::Sender<NetEvent>,
    shutdown: watch::Sender<bool>,
    /// Bumped whenever a session starts or ends or a block changes (dial loops wait on it).
    changes: watch::Sender<u64>,
    state: Mutex<State>,
    /// `None` once shutting down: nothing more is spawned.
    tasks: Mutex<Option<JoinSet<()>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("me", &self.me)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    peers: BTreeMap<Address, Peer>,
    next_session: u64,
}

struct Peer {
    /// The number of the last message queued for this peer (the first is 1).
    last_seq: u64,
    /// Encoded `Data` frames not acknowledged yet, by increasing number.
    log: VecDeque<(u64, Bytes)>,
    /// The bytes in `log`.
    log_bytes: usize,
    /// Carries `last_seq` to the session writer.
    appended: watch::Sender<u64>,
    /// The peer's epoch that `delivered` counts in.
    their_epoch: Option<u64>,
    /// The highest number of the peer's messages passed on.
    delivered: u64,
    session: Option<Current>,
    /// The URL we dial this signer at, once a dial reached it.
    url: Option<String>,
    blocked: bool,
}

impl Default for Peer {
    fn default() -> Self {
        Self {
            last_seq: 0,
            log: VecDeque::new(),
            log_bytes: 0,
            appended: watch::Sender::new(0),
            their_epoch: None,
            delivered: 0,
            session: None,
            url: None,
            blocked: false,
        }
    }
}

impl Peer {
    fn pop_front(&mut self) -> Option<u64> {
        let (seq, bytes) = self.log.pop_front()?;
        self.log_bytes -= bytes.len();
        Some(seq)
    }
}

struct Current {
    id: u64,
    their_epoch: u64,
    /// We dialled it.
    outbound: bool,
    kill: watch::Sender<Option<String>>,
}

/// A session that became the current one of its signer.
pub(crate) struct Registration {
    pub id: u64,
    /// Set to the reason when the session must end (replaced, blocked).
    pub kill: watch::Receiver<Option<String>>,
    /// Changes when a message is queued for the peer.
    pub appended: watch::Receiver<u64>,
    /// What we had passed on from this peer process before the session: acknowledged first.
    pub delivered: u64,
}

/// What became of a received `Data` frame.
pub(crate) enum Delivery {
    /// Passed on; `delivered` is the new high-water mark.
    Passed {
        delivered: u64,
    },
    Duplicate {
        delivered: u64,
    },
    /// The session is no longer current (or the net is stopping): nothing was passed on.
    Stale,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new(
        key: SignerKey,
        epoch: u64,
        max_message_bytes: usize,
        timing: Timing,
        events: mpsc::Sender<NetEvent>,
    ) -> Self {
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(max_message_bytes))
            .max_frame_size(Some(max_message_bytes));
        Self {
            me: key.address(),
            key,
            epoch,
            max_message_bytes,
            timing,
            ws_config,
            handshakes: Arc::new(Semaphore::new(super::MAX_PENDING_HANDSHAKES)),
            events,
            shutdown: watch::Sender::new(false),
            changes: watch::Sender::new(0),
            state: Mutex::new(State::default()),
            tasks: Mutex::new(Some(JoinSet::new())),
        }
    }

    // ---- tasks and shutdown -------------------------------------------------------------

    /// Spawns `task` unless shutting down (then it is dropped unstarted).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.tasks);
        if let Some(set) = tasks.as_mut() {
            // Reap the finished ones so the set does not grow with every session.
            while set.try_join_next().is_some() {}
            set.spawn(task);
        }
    }

    pub fn signal_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub async fn shutdown(&self) {
        self.signal_shutdown();
        let tasks = lock(&self.tasks).take();
        if let Some(mut set) = tasks {
            while let Some(result) = set.join_next().await {
                if let Err(e) = result
                    && e.is_panic()
                {
                    tracing::error!(signer = %self.me, "a net task panicked: {e}");
                }
            }
        }
    }

    pub fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves when shutdown is signalled.
    pub async fn stopped(&self) {
        let mut rx = self.shutdown.subscribe();
        // An error means the sender is gone, which only happens once `self` is.
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Capacity for `n` events, or `None` when stopping (then only what is free right away)
    /// or when the node dropped its receiver.
    async fn permits(&self, n: usize) -> Option<PermitIterator<'_, NetEvent>> {
        let n = n.min(self.events.max_capacity());
        tokio::select! {
            permits = self.events.reserve_many(n) => permits.ok(),
            () = self.stopped() => self.events.try_reserve_many(n).ok(),
        }
    }

    // ---- sessions -----------------------------------------------------------------------

    /// Whether a proven signer may have a session (checked at the handshake).
    pub fn admit(&self, signer: &Address) -> Result<(), String> {
        let state = lock(&self.state);
        match state.peers.get(signer) {
            Some(peer) if peer.blocked => Err("blocked".into()),
            _ => Ok(()),
        }
    }

    /// Whether a dial loop that reached `signer` before may dial again: not while it has a
    /// session (maybe one it dialled us with) and not while blocked.
    pub fn dialable(&self, signer: &Address) -> bool {
        let state = lock(&self.state);
        state
            .peers
            .get(signer)
            .is_none_or(|peer| !peer.blocked && peer.session.is_none())
    }

    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Makes an authenticated session the current one of its signer, or refuses it.
    ///
    /// A second session replaces the first, except when both sessions are with the same peer
    /// process and in opposite directions (both sides dialled at once): then both ends keep
    /// the one dialled by the smaller address, so they agree on it whatever the order.
    pub async fn register(
        &self,
        peer_auth: Authenticated,
        outbound: bool,
        url: Option<&str>,
    ) -> Result<Registration, String> {
        let Some(mut permits) = self.permits(2).await else {
            return Err("shutting down".into());
        };
        let signer = peer_auth.signer;
        let registration = {
            let mut state = lock(&self.state);
            if self.stopping() {
                return Err("shutting down".into());
            }
            let id = state.next_session;
            state.next_session += 1;
            if let Some(url) = url {
                for (other, peer) in state.peers.iter_mut() {
                    if *other != signer && peer.url.as_deref() == Some(url) {
                        peer.url = None;
                    }
                }
            }
            let peer = state.peers.entry(signer).or_default();
            if let Some(url) = url {
                peer.url = Some(url.to_owned());
            }
            if peer.blocked {
                return Err("blocked".into());
            }
            if let Some(current) = &peer.session {
                if current.their_epoch == peer_auth.epoch && current.outbound != outbound {
                    let dialler = if outbound { self.me } else { signer };
                    if dialler != self.me.min(signer) {
                        return Err("duplicate session (keeping the other direction)".into());
                    }
                }
                current
                    .kill
                    .send_replace(Some("replaced by a new session".into()));
                // With room for one event only, the `Connected` below must have it.
                if self.events.max_capacity() >= 2
                    && let Some(permit) = permits.next()
                {
                    permit.send(NetEvent::Disconnected {
                        signer,
                        reason: "replaced by a new session".into(),
                    });
                }
            }
            if peer.their_epoch != Some(peer_auth.epoch) {
                // A new peer process numbers its messages from 1 again.
                peer.their_epoch = Some(peer_auth.epoch);
                peer.delivered = 0;
            }
            let (kill, kill_rx) = watch::channel(None);
            peer.session = Some(Current {
                id,
                their_epoch: peer_auth.epoch,
                outbound,
                kill,
            });
            if let Some(permit) = permits.next() {
                permit.send(NetEvent::Connected { signer });
            }
            Registration {
                id,
                kill: kill_rx,
                appended: peer.appended.subscribe(),
                delivered: peer.delivered,
            }
        };
        self.bump();
        Ok(registration)
    }

    /// Ends session `id` of `signer`, reporting it if it was still the current one.
    pub async fn deregister(&self, signer: Address, id: u64, reason: &str) {
        let mut permits = self.permits(1).await;
        {
            let mut state = lock(&self.state);
            let Some(peer) = state.peers.get_mut(&signer) else {
                return;
            };
            if peer.session.as_ref().is_none_or(|current| current.id != id) {
                return;
            }
            peer.session = None;
            if let Some(permit) = permits.as_mut().and_then(Iterator::next) {
                permit.send(NetEvent::Disconnected {
                    signer,
                    reason: reason.to_owned(),
                });
            }
        }
        self.bump();
    }

    /// Passes message `seq` of `signer` on, unless already done or the session is stale.
    pub async fn deliver(
        &self,
        signer: Address,
        id: u64,
        seq: u64,
        message: WireMessage,
    ) -> Delivery {
        let mut permits = match self.permits(1).await {
            Some(permits) if !self.stopping() => permits,
            _ => return Delivery::Stale,
        };
        let mut state = lock(&self.state);
        let Some(peer) = state.peers.get_mut(&signer) else {
            return Delivery::Stale;
        };
        // Once blocked, nothing more of it is passed on, even before its session is gone.
        if peer.blocked || peer.session.as_ref().is_none_or(|current| current.id != id) {
            return Delivery::Stale;
        }
        if seq <= peer.delivered {
            return Delivery::Duplicate {
                delivered: peer.delivered,
            };
        }
        let Some(permit) = permits.next() else {
            return Delivery::Stale;
        };
        peer.delivered = seq;
        permit.send(NetEvent::Received {
            from: signer,
            message,
        });
        Delivery::Passed { delivered: seq }
    }

    /// The peer passed on everything up to `seq`: forget it. Refuses an acknowledgement of
    /// messages never sent. Ignored from a session that is no longer current.
    pub fn acknowledged(&self, signer: Address, id: u64, seq: u64) -> Result<(), String> {
        let mut state = lock(&self.state);
        let Some(peer) = state.peers.get_mut(&signer) else {
            return Ok(());
        };
        if peer.session.as_ref().is_none_or(|current| current.id != id) {
            return Ok(());
        }
        if seq > peer.last_seq {
            return Err(format!(
                "acknowledged message {seq}, only {} were sent",
                peer.last_seq
            ));
        }
        while peer.log.front().is_some_and(|(queued, _)| *queued <= seq) {
            peer.pop_front();
        }
        Ok(())
    }

    /// Up to `max` encoded frames for `signer` numbered after `after`, in order.
    pub fn pending(&self, signer: &Address, after: u64, max: usize) -> Vec<(u64, Bytes)> {
        let state = lock(&self.state);
        let Some(peer) = state.peers.get(signer) else {
            return Vec::new();
        };
        let start = peer.log.partition_point(|(seq, _)| *seq <= after);
        peer.log.range(start..).take(max).cloned().collect()
    }

    // ---- the node's calls ---------------------------------------------------------------

    pub fn send(&self, to: Address, message: WireMessage) {
        let mut state = lock(&self.state);
        self.enqueue(&mut state, to, message);
    }

    pub fn broadcast_except(&self, except: Option<Address>, message: WireMessage) {
        let mut state = lock(&self.state);
        let connected: Vec<Address> = state
            .peers
            .iter()
            .filter(|(signer, peer)| peer.session.is_some() && Some(**signer) != except)
            .map(|(signer, _)| *signer)
            .collect();
        for to in connected {
            self.enqueue(&mut state, to, message.clone());
        }
    }

    fn enqueue(&self, state: &mut State, to: Address, message: WireMessage) {
        if to == self.me {
            tracing::warn!(signer = %self.me, "dropping a message addressed to ourselves");
            return;
        }
        let peer = state.peers.entry(to).or_default();
        let seq = peer.last_seq + 1;
        let bytes = encode(&Frame::Data { seq, message });
        if bytes.len() > self.max_message_bytes {
            tracing::warn!(
                peer = %to,
                size = bytes.len(),
                max = self.max_message_bytes,
                "dropping a message larger than the message bound"
            );
            return;
        }
        peer.last_seq = seq;
        peer.log_bytes += bytes.len();
        peer.log.push_back((seq, Bytes::from(bytes)));
        while peer.log.len() > MAX_QUEUED_PER_PEER || peer.log_bytes > MAX_QUEUED_BYTES_PER_PEER {
            let Some(dropped) = peer.pop_front() else {
                break;
            };
            tracing::warn!(
                peer = %to,
                seq = dropped,
                "queue for the peer is full: dropping its oldest message"
            );
        }
        peer.appended.send_replace(seq);
    }

    pub fn peers(&self) -> Vec<PeerView> {
        let state = lock(&self.state);
        state
            .peers
            .iter()
            .map(|(signer, peer)| PeerView {
                signer: *signer,
                url: peer.url.clone(),
                connected: peer.session.is_some(),
                blocked: peer.blocked,
            })
            .collect()
    }

    pub fn disconnect(&self, signer: Address, reason: &str) {
        let state = lock(&self.state);
        if let Some(current) = state.peers.get(&signer).and_then(|p| p.session.as_ref()) {
            current.kill.send_replace(Some(reason.to_string()));
        }
    }

    pub fn set_blocked(&self, signer: Address, blocked: bool) {
        {
            let mut state = lock(&self.state);
            let peer = state.peers.entry(signer).or_default();
            peer.blocked = blocked;
            if blocked && let Some(current) = &peer.session {
                current.kill.send_replace(Some("blocked".into()));
            }
        }
        tracing::info!(peer = %signer, blocked, "peer block changed");
        self.bump();
    }

    #[cfg(test)]
    pub fn unacknowledged(&self, signer: Address) -> usize {
        let state = lock(&self.state);
        state.peers.get(&signer).map_or(0, |peer| peer.log.len())
    }
}
