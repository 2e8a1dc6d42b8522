//! The tasks: the listener, one dial loop per configured URL, and the session itself (a reader
//! and a writer over one websocket).

use super::shared::{Delivery, Shared};
use super::wire::{self, Authenticated, Frame, Identity};
use super::{ACK_EVERY, NetError, WireMessage};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::{
    Instant, MissedTickBehavior, interval_at, sleep, sleep_until, timeout, timeout_at,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_tungstenite::{accept_async_with_config, connect_async_with_config};
use xln_core::codec::decode;
use xln_core::crypto::Address;

/// Frames written before one flush.
const WRITE_BATCH: usize = 64;

/// Why a session ended, and the close frame that tells the peer (none if the connection is
/// already gone or the peer closed it).
struct End {
    reason: String,
    close: Option<CloseCode>,
}

impl End {
    fn policy(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            close: Some(CloseCode::Policy),
        }
    }
    fn normal(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            close: Some(CloseCode::Normal),
        }
    }
    fn stopping() -> Self {
        Self {
            reason: "shutting down".into(),
            close: Some(CloseCode::Away),
        }
    }
    fn quiet(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            close: None,
        }
    }
    fn error(error: NetError) -> Self {
        Self {
            close: wire::close_code_of(&error),
            reason: error.to_string(),
        }
    }
    fn ws(error: WsError) -> Self {
        Self::error(wire::ws_error(error))
    }
}

/// Why a bounded wait did not finish.
enum Interrupted {
    Timeout,
    Stopping,
}

/// `future`, unless the deadline passes or the net stops first.
async fn bounded<F: Future>(
    shared: &Shared,
    deadline: Instant,
    future: F,
) -> Result<F::Output, Interrupted> {
    tokio::select! {
        result = timeout_at(deadline, future) => result.map_err(|_| Interrupted::Timeout),
        () = shared.stopped() => Err(Interrupted::Stopping),
    }
}

fn interrupted_error(shared: &Shared, interrupted: Interrupted) -> NetError {
    match interrupted {
        Interrupted::Timeout => NetError::HandshakeTimeout(shared.timing.handshake_timeout),
        Interrupted::Stopping => NetError::Closed("shutting down".into()),
    }
}

/// Sends a close frame and reads until the peer's answer (so that our frame is not lost to a
/// reset), for at most `wait`.
async fn close_ws<S>(ws: &mut S, code: CloseCode, reason: &str, wait: Duration)
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let _ = timeout(wait, async {
        if ws.send(wire::close_message(code, reason)).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

// ---- listener ---------------------------------------------------------------------------

pub(super) async fn listen(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.stopped() => break,
        };
        match accepted {
            Ok((tcp, addr)) => match shared.handshakes.clone().try_acquire_owned() {
                Ok(permit) => shared.spawn(inbound(shared.clone(), tcp, addr, permit)),
                Err(_) => tracing::warn!(%addr, "too many handshakes in progress: dropped"),
            },
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(signer = %shared.me, "accept failed: {e}");
                tokio::select! {
                    () = sleep(Duration::from_millis(100)) => {}
                    () = shared.stopped() => break,
                }
            }
        }
    }
    tracing::debug!(signer = %shared.me, "listener closed");
}

async fn inbound(
    shared: Arc<Shared>,
    tcp: TcpStream,
    addr: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    let _ = tcp.set_nodelay(true);
    let deadline = Instant::now() + shared.timing.handshake_timeout;
    let mut ws = match bounded(
        &shared,
        deadline,
        accept_async_with_config(tcp, Some(shared.ws_config)),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%addr, "websocket upgrade failed: {e}");
            return;
        }
        Err(interrupted) => {
            let error = interrupted_error(&shared, interrupted);
            tracing::debug!(%addr, "websocket upgrade abandoned: {error}");
            return;
        }
    };
    let identity = Identity {
        key: &shared.key,
        epoch: shared.epoch,
    };
    let handshake = wire::server_handshake(&mut ws, identity, |signer| shared.admit(signer));
    let peer = match bounded(&shared, deadline, handshake).await {
        Ok(Ok(peer)) => peer,
        Ok(Err(error)) => return refuse(&shared, &mut ws, addr, error).await,
        Err(interrupted) => {
            let error = interrupted_error(&shared, interrupted);
            return refuse(&shared, &mut ws, addr, error).await;
        }
    };
    drop(permit);
    // A refusal is logged inside; an inbound peer is not dialled back either way.
    let _ = run_session(&shared, ws, peer, None).await;
}

/// Ends a connection whose handshake failed, telling the peer why when that is useful.
async fn refuse<S>(shared: &Shared, ws: &mut S, addr: SocketAddr, error: NetError)
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    tracing::info!(signer = %shared.me, %addr, "handshake refused: {error}");
    if let Some(code) = wire::close_code_of(&error) {
        close_ws(ws, code, &error.to_string(), shared.timing.close_timeout).await;
    }
}

// ---- dialling ---------------------------------------------------------------------------

/// What one dial came to.
enum Dialled {
    Failed(NetError),
    /// The handshake proved `signer`, then the session was refused (blocked, duplicate).
    Refused {
        signer: Address,
        reason: String,
    },
    Ran {
        signer: Address,
        lasted: Duration,
    },
}

/// Dials `url` until shutdown, with backoff; while the signer it reached has a session (from
/// either side) or is blocked, waits instead.
pub(super) async fn dial_loop(shared: Arc<Shared>, url: String) {
    let timing = shared.timing;
    let mut backoff = timing.backoff_initial;
    let mut known: Option<Address> = None;
    let mut failures = 0u32;
    let mut changes = shared.changes();
    loop {
        if let Some(signer) = known {
            loop {
                changes.borrow_and_update();
                if shared.stopping() {
                    return;
                }
                if shared.dialable(&signer) {
                    break;
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    () = shared.stopped() => return,
                }
            }
        }
        if shared.stopping() {
            return;
        }
        match dial_once(&shared, &url).await {
            Dialled::Failed(error) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(signer = %shared.me, url, "dial failed: {error}; retrying");
                } else {
                    tracing::debug!(signer = %shared.me, url, failures, "dial failed: {error}");
                }
            }
            Dialled::Refused { signer, reason } => {
                known = Some(signer);
                tracing::info!(signer = %shared.me, url, peer = %signer, "session refused: {reason}");
            }
            Dialled::Ran { signer, lasted } => {
                known = Some(signer);
                failures = 0;
                if lasted >= timing.good_session {
                    backoff = timing.backoff_initial;
                }
            }
        }
        tokio::select! {
            () = sleep(backoff) => {}
            () = shared.stopped() => return,
        }
        backoff = (backoff * 2).min(timing.backoff_max);
    }
}

async fn dial_once(shared: &Shared, url: &str) -> Dialled {
    let deadline = Instant::now() + shared.timing.handshake_timeout;
    let connect = connect_async_with_config(url, Some(shared.ws_config), true);
    let mut ws = match bounded(shared, deadline, connect).await {
        Ok(Ok((ws, _response))) => ws,
        Ok(Err(e)) => return Dialled::Failed(wire::ws_error(e)),
        Err(interrupted) => return Dialled::Failed(interrupted_error(shared, interrupted)),
    };
    let identity = Identity {
        key: &shared.key,
        epoch: shared.epoch,
    };
    // A block is checked when the session registers, once we know whom the URL reaches.
    let handshake = wire::client_handshake(&mut ws, identity);
    let error = match bounded(shared, deadline, handshake).await {
        Ok(Ok(peer)) => {
            return match run_session(shared, ws, peer, Some(url)).await {
                Ok(lasted) => Dialled::Ran {
                    signer: peer.signer,
                    lasted,
                },
                Err(reason) => Dialled::Refused {
                    signer: peer.signer,
                    reason,
                },
            };
        }
        Ok(Err(error)) => error,
        Err(interrupted) => interrupted_error(shared, interrupted),
    };
    if let Some(code) = wire::close_code_of(&error) {
        close_ws(
            &mut ws,
            code,
            &error.to_string(),
            shared.timing.close_timeout,
        )
        .await;
    }
    Dialled::Failed(error)
}

// ---- the session ------------------------------------------------------------------------

/// Runs an authenticated session until it ends; `url` is set for the sessions we dialled.
/// Returns how long it lasted, or why it was refused before it started.
async fn run_session<S>(
    shared: &Shared,
    mut ws: S,
    peer: Authenticated,
    url: Option<&str>,
) -> Result<Duration, String>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let registration = match shared.register(peer, url.is_some(), url).await {
        Ok(registration) => registration,
        Err(reason) => {
            tracing::info!(signer = %shared.me, peer = %peer.signer, "session refused: {reason}");
            close_ws(
                &mut ws,
                CloseCode::Policy,
                &reason,
                shared.timing.close_timeout,
            )
            .await;
            return Err(reason);
        }
    };
    let started = Instant::now();
    tracing::info!(
        signer = %shared.me,
        peer = %peer.signer,
        outbound = url.is_some(),
        "session up"
    );
    let (mut sink, mut stream) = ws.split();
    let (delivered_tx, delivered_rx) = watch::channel(registration.delivered);
    let mut kill = registration.kill;
    let end = tokio::select! {
        end = read_loop(shared, &mut stream, peer.signer, registration.id, &delivered_tx) => end,
        end = write_loop(
            shared,
            &mut sink,
            peer.signer,
            registration.appended,
            delivered_rx,
            registration.delivered > 0,
        ) => end,
        end = killed(&mut kill) => end,
        () = shared.stopped() => End::stopping(),
    };
    // A loop may have ended on a consequence of these (nothing more is delivered once
    // blocked or stopping): report the cause.
    let end = if shared.stopping() {
        End::stopping()
    } else if let Some(reason) = kill.borrow().clone() {
        End::normal(reason)
    } else {
        end
    };
    if let Some(code) = end.close {
        let _ = timeout(shared.timing.close_timeout, async {
            if sink
                .send(wire::close_message(code, &end.reason))
                .await
                .is_ok()
            {
                while let Some(Ok(_)) = stream.next().await {}
            }
        })
        .await;
    }
    shared
        .deregister(peer.signer, registration.id, &end.reason)
        .await;
    let lasted = started.elapsed();
    if end.close == Some(CloseCode::Policy) {
        tracing::warn!(signer = %shared.me, peer = %peer.signer, "session closed: {}", end.reason);
    } else {
        tracing::info!(signer = %shared.me, peer = %peer.signer, ?lasted, "session ended: {}", end.reason);
    }
    Ok(lasted)
}

async fn killed(kill: &mut watch::Receiver<Option<String>>) -> End {
    match kill.wait_for(Option::is_some).await {
        Ok(reason) => End::normal(reason.clone().unwrap_or_default()),
        Err(_) => End::normal("replaced by a new session"),
    }
}

/// Reads frames: passes `Data` on (once), applies `Ack`s; anything else ends the session.
async fn read_loop<S>(
    shared: &Shared,
    stream: &mut SplitStream<S>,
    signer: Address,
    id: u64,
    delivered: &watch::Sender<u64>,
) -> End
where
    S: Stream<Item = Result<Message, WsError>>,
{
    let idle = shared.timing.idle_timeout;
    loop {
        let bytes = match timeout(idle, stream.next()).await {
            Err(_) => return End::policy(format!("nothing heard for {idle:?}")),
            Ok(None) => return End::quiet("connection closed"),
            Ok(Some(Err(e))) => return End::ws(e),
            Ok(Some(Ok(Message::Binary(bytes)))) => bytes,
            Ok(Some(Ok(Message::Close(frame)))) => return End::quiet(wire::close_reason(frame)),
            Ok(Some(Ok(Message::Text(_)))) => return End::policy("text message (binary only)"),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => continue,
        };
        let frame = match decode::<Frame>("net frame", &bytes) {
            Ok(frame) => frame,
            Err(e) => return End::policy(format!("undecodable message: {e}")),
        };
        match frame {
            Frame::Data { seq, message } => {
                if let WireMessage::Envelope(envelope) = &message
                    && envelope.from.signer != signer
                {
                    return End::policy(format!(
                        "envelope from {} on the session of {signer}",
                        envelope.from.signer
                    ));
                }
                if seq == 0 {
                    return End::policy("message number 0");
                }
                match shared.deliver(signer, id, seq, message).await {
                    Delivery::Passed { delivered: upto }
                    | Delivery::Duplicate { delivered: upto } => {
                        delivered.send_replace(upto);
                    }
                    Delivery::Stale => return End::normal("session superseded or stopping"),
                }
            }
            Frame::Ack { seq } => {
                if let Err(reason) = shared.acknowledged(signer, id, seq) {
                    return End::policy(reason);
                }
            }
            Frame::Challenge { .. } | Frame::ClientAuth { .. } | Frame::ServerAuth { .. } => {
                return End::policy("handshake message inside a session");
            }
        }
    }
}

/// Writes what is queued for the peer (first everything unacknowledged, in order), the
/// acknowledgements of what the reader passed on, and pings.
async fn write_loop<S>(
    shared: &Shared,
    sink: &mut SplitSink<S, Message>,
    signer: Address,
    mut appended: watch::Receiver<u64>,
    mut delivered: watch::Receiver<u64>,
    mut ack_now: bool,
) -> End
where
    S: Sink<Message, Error = WsError>,
{
    let timing = shared.timing;
    let mut sent = 0u64;
    let mut acked = 0u64;
    let mut ack_at: Option<Instant> = None;
    let mut ping = interval_at(Instant::now() + timing.ping_interval, timing.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        appended.borrow_and_update();
        loop {
            let batch = shared.pending(&signer, sent, WRITE_BATCH);
            let Some(&(last, _)) = batch.last() else {
                break;
            };
            for (_, bytes) in batch {
                if let Err(e) = sink.feed(Message::Binary(bytes)).await {
                    return End::ws(e);
                }
            }
            if let Err(e) = sink.flush().await {
                return End::ws(e);
            }
            sent = last;
        }
        let upto = *delivered.borrow_and_update();
        if upto > acked {
            let due = ack_now
                || upto - acked >= ACK_EVERY
                || ack_at.is_some_and(|at| at <= Instant::now());
            if due {
                if let Err(e) = sink.send(Frame::Ack { seq: upto }.to_message()).await {
                    return End::ws(e);
                }
                acked = upto;
                ack_at = None;
            } else if ack_at.is_none() {
                ack_at = Some(Instant::now() + timing.ack_delay);
            }
        }
        ack_now = false;
        let ack_timer = async {
            match ack_at {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = appended.changed() => if changed.is_err() {
                return End::normal("peer state gone");
            },
            changed = delivered.changed() => if changed.is_err() {
                return End::normal("reader gone");
            },
            () = ack_timer => {}
            _ = ping.tick() => {
                if let Err(e) = sink.send(Message::Ping(Bytes::new())).await {
                    return End::ws(e);
                }
            }
        }
    }
}
