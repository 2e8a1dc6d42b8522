//! The net adapter (ARCHITECTURE.md, net): authenticated websocket sessions between node
//! runtimes, with reconnection and resend of what the peer has not acknowledged.
//!
//! # What travels
//!
//! Each websocket message is one binary message holding one postcard-encoded link [`wire`]
//! frame. A session starts with a handshake in which both sides prove that they hold their
//! signer key over fresh nonces of both sides; from then on the peer's signer is the
//! *authenticated signer* of the session and every [`NetEvent::Received`] names it.
//!
//! # Delivery
//!
//! Per peer signer, the messages given to [`Net::send`] are numbered and kept until the peer
//! acknowledges them (cumulatively); a new session with that signer starts by sending, in
//! order, everything still unacknowledged. The receiving side passes each number on at most
//! once per peer process (a peer's restart changes its random *link epoch*, which resets the
//! numbering). The queue per peer is bounded: when it is full the oldest message is dropped,
//! with a warning.
//!
//! # Handle
//!
//! [`Net`] is owned by one task and used through `&self` (share it with an `Arc` if several
//! tasks send). Dropping it without [`Net::shutdown`] still stops every task it spawned, but
//! without waiting for them.

mod session;
mod shared;
pub(crate) mod wire;

#[cfg(test)]
mod tests;

use crate::api::PeerView;
use shared::Shared;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use xln_core::crypto::{Address, SignerKey};

/// The default bound on one websocket message (and frame), in bytes. The largest message a
/// node sends on purpose, a board member's state snapshot, is bounded to fit in it with its
/// envelope (`xln_core::entity::MAX_SNAPSHOT_BYTES`).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;
/// The smallest accepted `max_message_bytes`: the handshake messages must fit.
pub const MIN_MAX_MESSAGE_BYTES: usize = 1024;
/// Messages kept per peer signer, queued or sent but not acknowledged. Beyond it (or beyond
/// [`MAX_QUEUED_BYTES_PER_PEER`]) the oldest one is dropped, with a warning.
pub const MAX_QUEUED_PER_PEER: usize = 1024;
pub const MAX_QUEUED_BYTES_PER_PEER: usize = 64 << 20;
/// A handshake (websocket upgrade included) that takes longer is abandoned.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait before redialling a peer; it doubles after each failure up to
/// [`BACKOFF_MAX`], and starts again after a session that lasted [`GOOD_SESSION`].
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
pub const GOOD_SESSION: Duration = Duration::from_secs(1);
/// A receiver acknowledges after this many messages, or this long after the first
/// unacknowledged one, whichever comes first.
pub const ACK_EVERY: u64 = 32;
pub const ACK_DELAY: Duration = Duration::from_millis(50);
/// A websocket ping goes out this often; a session that hears nothing for
/// [`IDLE_TIMEOUT`] is closed.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Handshakes in progress at once on the listener; connections beyond it are dropped.
pub const MAX_PENDING_HANDSHAKES: usize = 128;

/// What travels between nodes (postcard-encoded in binary websocket messages); defined in the
/// core, where the fuzz target for peer messages decodes it too.
pub use xln_core::runtime::WireMessage;

/// How a [`Net`] starts.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// This node's signer; proves itself at each handshake.
    pub key: SignerKey,
    /// Where to listen, e.g. `127.0.0.1:0` (port 0: picked at start, see [`Net::local_addr`]).
    pub listen: Option<SocketAddr>,
    /// `ws://host:port` peers to connect to and keep reconnecting to.
    pub dial: Vec<String>,
    /// Bound on one incoming websocket message and frame; larger outgoing messages are
    /// dropped with a warning. At least [`MIN_MAX_MESSAGE_BYTES`].
    pub max_message_bytes: usize,
}

impl NetConfig {
    /// A config that neither listens nor dials, with the default message bound.
    pub fn new(key: SignerKey) -> Self {
        Self {
            key,
            listen: None,
            dial: Vec::new(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// What the net tells the node, in the order it happened.
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every event is Received: boxing it would only add an allocation"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// An authenticated session with `signer` started. A session that replaces another one of
    /// the same signer is reported as `Disconnected` then `Connected`.
    Connected { signer: Address },
    /// The session with `signer` ended (not reported for sessions refused at the handshake).
    Disconnected { signer: Address, reason: String },
    /// A message from the authenticated signer of a session, passed on once.
    Received { from: Address, message: WireMessage },
}

/// Why the net could not start, or why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("invalid peer URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("max_message_bytes is {got}, at least {MIN_MAX_MESSAGE_BYTES} needed")]
    MessageLimitTooSmall { got: usize },
    #[error("no randomness for nonces: {0}")]
    Random(String),
    #[error("websocket: {0}")]
    WebSocket(String),
    #[error("no handshake within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("handshake refused: {0}")]
    HandshakeRefused(String),
    #[error("undecodable message: {0}")]
    Decode(#[from] xln_core::codec::DecodeError),
    #[error("message too large: {0}")]
    TooLarge(String),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("connection closed: {0}")]
    Closed(String),
}

/// Timings of the adapter; the defaults are the constants above, tests shorten them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub handshake_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub good_session: Duration,
    pub ack_delay: Duration,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    /// How long a closing session waits to get its close frame out.
    pub close_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            handshake_timeout: HANDSHAKE_TIMEOUT,
            backoff_initial: BACKOFF_INITIAL,
            backoff_max: BACKOFF_MAX,
            good_session: GOOD_SESSION,
            ack_delay: ACK_DELAY,
            ping_interval: PING_INTERVAL,
            idle_timeout: IDLE_TIMEOUT,
            close_timeout: Duration::from_secs(1),
        }
    }
}

/// The running net: a listener, one dial loop per configured peer, one task per session.
#[derive(Debug)]
pub struct Net {
    shared: Arc<Shared>,
    local_addr: Option<SocketAddr>,
}

impl Net {
    /// Binds the listener (if any) and starts the dial loops. Events go to `events`; a full
    /// channel holds the sessions back (nothing is dropped).
    pub async fn start(config: NetConfig, events: mpsc::Sender<NetEvent>) -> Result<Net, NetError> {
        Self::start_with(config, events, Timing::default()).await
    }

    pub(crate) async fn start_with(
        config: NetConfig,
        events: mpsc::Sender<NetEvent>,
        timing: Timing,
    ) -> Result<Net, NetError> {
        if config.max_message_bytes < MIN_MAX_MESSAGE_BYTES {
            return Err(NetError::MessageLimitTooSmall {
                got: config.max_message_bytes,
            });
        }
        for url in &config.dial {
            check_url(url)?;
        }
        let listener =
            match config.listen {
                Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                    NetError::Listen {
                        addr,
                        reason: e.to_string(),
                    }
                })?),
                None => None,
            };
        let local_addr = match &listener {
            Some(listener) => Some(listener.local_addr().map_err(|e| NetError::Listen {
                addr: config.listen.unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
                reason: e.to_string(),
            })?),
            None => None,
        };
        let epoch = wire::random_u64()?;
        let shared = Arc::new(Shared::new(
            config.key,
            epoch,
            config.max_message_bytes,
            timing,
            events,
        ));
        tracing::info!(
            signer = %shared.me,
            listen = ?local_addr,
            dial = config.dial.len(),
            "net started"
        );
        if let Some(listener) = listener {
            shared.spawn(session::listen(shared.clone(), listener));
        }
        for url in config.dial {
            shared.spawn(session::dial_loop(shared.clone(), url));
        }
        Ok(Net { shared, local_addr })
    }

    /// The address the listener is bound to (with the port picked if 0 was asked).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// This node's signer.
    pub fn signer(&self) -> Address {
        self.shared.me
    }

    /// Queues `message` for `to`; it goes out as soon as a session with `to` is up, and again
    /// on the next session until acknowledged. Never blocks. A message to ourselves, or larger
    /// than `max_message_bytes` once encoded, is dropped with a warning.
    pub fn send(&self, to: Address, message: WireMessage) {
        self.shared.send(to, message);
    }

    /// Sends `message` to every connected peer (as [`Net::send`] to each).
    pub fn broadcast(&self, message: WireMessage) {
        self.shared.broadcast_except(None, message);
    }

    /// Sends `message`, which came from `from`, to every other connected peer.
    pub fn relay(&self, from: Address, message: WireMessage) {
        self.shared.broadcast_except(Some(from), message);
    }

    /// Every peer signer known: connected, dialled, blocked or with messages queued.
    pub fn peers(&self) -> Vec<PeerView> {
        self.shared.peers()
    }

    /// Blocking a signer drops its session now and refuses its handshakes, both directions,
    /// until unblocked. Messages queued for it are kept.
    pub fn set_blocked(&self, signer: Address, blocked: bool) {
        self.shared.set_blocked(signer, blocked);
    }

    /// Closes `signer`'s session now, with `reason` (a dialled peer is dialled again later).
    pub fn disconnect(&self, signer: Address, reason: &str) {
        self.shared.disconnect(signer, reason);
    }

    /// Closes the listener, the sessions and the dial loops, and waits for every task.
    pub async fn shutdown(self) {
        self.shared.shutdown().await;
        tracing::info!(signer = %self.shared.me, "net stopped");
    }

    /// Messages kept for `signer`: queued or sent and not acknowledged yet.
    #[cfg(test)]
    pub(crate) fn unacknowledged(&self, signer: Address) -> usize {
        self.shared.unacknowledged(signer)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.shared.signal_shutdown();
    }
}

/// A dial URL must be a plain `ws://` URL: this build has no TLS.
fn check_url(url: &str) -> Result<(), NetError> {
    let request = url
        .into_client_request()
        .map_err(|e| NetError::InvalidUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    match request.uri().scheme_str() {
        Some("ws") => Ok(()),
        other => Err(NetError::InvalidUrl {
            url: url.to_owned(),
            reason: format!(
                "scheme {:?}: only ws:// is supported (no TLS in this build)",
                other.unwrap_or("")
            ),
        }),
    }
}
