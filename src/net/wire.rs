//! The link protocol: frames and the mutual handshake.
//!
//! Every websocket message is one binary message holding one postcard-encoded [`Frame`].
//!
//! Handshake, listener = server, dialler = client:
//! 1. server → `Challenge { version, nonce: Ns }` (fresh random)
//! 2. client → `ClientAuth { signer: C, epoch: Ec, nonce: Nc, signature }` over
//!    [`handshake_digest`]`(Client, Ns, Nc, C, Ec)`
//! 3. server checks the signature recovers to `C`, `C` is not itself and not blocked, then
//!    → `ServerAuth { signer: S, epoch: Es, signature }` over the digest with role `Server`
//!    and `(S, Es)`; the client checks it the same way.
//!
//! Each side signs over a nonce it did not choose, so no signature can be replayed into
//! another handshake, and the role in the digest keeps one side's signature from being
//! reflected as the other's. The epoch is random per process: a peer's new epoch means it
//! restarted and its numbering of `Data` starts again.

use super::{NetError, WireMessage};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use xln_core::codec::{Packed, decode, encode, tag};
use xln_core::crypto::{Address, Hash, Signature, SignerKey};

/// Bumped on any change of [`Frame`] or of the handshake.
pub(crate) const PROTOCOL_VERSION: u32 = 1;
const HANDSHAKE_TAG: &str = "xln/net/handshake/v1";

pub(crate) type Nonce = [u8; 32];

/// One link-level message.
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every frame is Data: boxing it would only add an allocation"
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Frame {
    Challenge {
        version: u32,
        nonce: Nonce,
    },
    ClientAuth {
        signer: Address,
        epoch: u64,
        nonce: Nonce,
        signature: Signature,
    },
    ServerAuth {
        signer: Address,
        epoch: u64,
        signature: Signature,
    },
    /// The `seq`th message of the sender to this peer since the sender's process started.
    Data {
        seq: u64,
        message: WireMessage,
    },
    /// Every `Data` up to `seq` was passed on (or was a duplicate); the sender forgets them.
    Ack {
        seq: u64,
    },
}

impl Frame {
    pub(crate) fn to_message(&self) -> Message {
        Message::Binary(Bytes::from(encode(self)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Client = 1,
    Server = 2,
}

/// What each side signs: the domain tag, its role, both nonces, its signer and its epoch.
pub(crate) fn handshake_digest(
    role: Role,
    server_nonce: &Nonce,
    client_nonce: &Nonce,
    signer: &Address,
    epoch: u64,
) -> Hash {
    Packed::new()
        .bytes32(&tag(HANDSHAKE_TAG).0)
        .u32(role as u32)
        .bytes32(server_nonce)
        .bytes32(client_nonce)
        .address(&signer.0)
        .u64(epoch)
        .hash()
}

/// The peer as the handshake proved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Authenticated {
    pub signer: Address,
    pub epoch: u64,
}

/// Who we are in a handshake.
pub(crate) struct Identity<'a> {
    pub key: &'a SignerKey,
    pub epoch: u64,
}

pub(crate) fn random_nonce() -> Result<Nonce, NetError> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|e| NetError::Random(e.to_string()))?;
    Ok(nonce)
}

pub(crate) fn random_u64() -> Result<u64, NetError> {
    getrandom::u64().map_err(|e| NetError::Random(e.to_string()))
}

/// Checks that `signature` is `signer`'s over the digest of `role`.
fn check_signature(
    role: Role,
    server_nonce: &Nonce,
    client_nonce: &Nonce,
    signer: &Address,
    epoch: u64,
    signature: &Signature,
) -> Result<(), NetError> {
    let digest = handshake_digest(role, server_nonce, client_nonce, signer, epoch);
    match signature.recover(&digest) {
        Ok(recovered) if recovered == *signer => Ok(()),
        Ok(_) => Err(NetError::HandshakeRefused(format!(
            "signature is not {signer}'s"
        ))),
        Err(e) => Err(NetError::HandshakeRefused(format!("bad signature: {e}"))),
    }
}

/// The listener's side. `admit` refuses a proven signer (blocked) with a reason.
pub(crate) async fn server_handshake<S>(
    ws: &mut S,
    me: Identity<'_>,
    admit: impl Fn(&Address) -> Result<(), String>,
) -> Result<Authenticated, NetError>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let server_nonce = random_nonce()?;
    send_frame(
        ws,
        &Frame::Challenge {
            version: PROTOCOL_VERSION,
            nonce: server_nonce,
        },
    )
    .await?;
    let Frame::ClientAuth {
        signer,
        epoch,
        nonce: client_nonce,
        signature,
    } = read_frame(ws).await?
    else {
        return Err(NetError::Protocol("expected the client's proof".into()));
    };
    check_signature(
        Role::Client,
        &server_nonce,
        &client_nonce,
        &signer,
        epoch,
        &signature,
    )?;
    if signer == me.key.address() {
        return Err(NetError::HandshakeRefused("connection to ourselves".into()));
    }
    admit(&signer).map_err(NetError::HandshakeRefused)?;
    let own = me.key.address();
    let digest = handshake_digest(Role::Server, &server_nonce, &client_nonce, &own, me.epoch);
    send_frame(
        ws,
        &Frame::ServerAuth {
            signer: own,
            epoch: me.epoch,
            signature: me.key.sign(&digest),
        },
    )
    .await?;
    Ok(Authenticated { signer, epoch })
}

/// The dialler's side. Whether the proven signer is admitted (not blocked) is decided when
/// its session registers.
pub(crate) async fn client_handshake<S>(
    ws: &mut S,
    me: Identity<'_>,
) -> Result<Authenticated, NetError>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let Frame::Challenge {
        version,
        nonce: server_nonce,
    } = read_frame(ws).await?
    else {
        return Err(NetError::Protocol("expected the server's challenge".into()));
    };
    if version != PROTOCOL_VERSION {
        return Err(NetError::HandshakeRefused(format!(
            "peer speaks protocol version {version}, we speak {PROTOCOL_VERSION}"
        )));
    }
    let client_nonce = random_nonce()?;
    let own = me.key.address();
    let digest = handshake_digest(Role::Client, &server_nonce, &client_nonce, &own, me.epoch);
    send_frame(
        ws,
        &Frame::ClientAuth {
            signer: own,
            epoch: me.epoch,
            nonce: client_nonce,
            signature: me.key.sign(&digest),
        },
    )
    .await?;
    let Frame::ServerAuth {
        signer,
        epoch,
        signature,
    } = read_frame(ws).await?
    else {
        return Err(NetError::Protocol("expected the server's proof".into()));
    };
    check_signature(
        Role::Server,
        &server_nonce,
        &client_nonce,
        &signer,
        epoch,
        &signature,
    )?;
    if signer == own {
        return Err(NetError::HandshakeRefused("connection to ourselves".into()));
    }
    Ok(Authenticated { signer, epoch })
}

pub(crate) async fn send_frame<S>(ws: &mut S, frame: &Frame) -> Result<(), NetError>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    ws.send(frame.to_message())
        .await
        .map_err(|e| NetError::WebSocket(e.to_string()))
}

/// The next frame, skipping pings and pongs.
pub(crate) async fn read_frame<S>(ws: &mut S) -> Result<Frame, NetError>
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        match ws.next().await {
            None => return Err(NetError::Closed("connection closed".into())),
            Some(Err(e)) => return Err(ws_error(e)),
            Some(Ok(Message::Binary(bytes))) => return Ok(decode("net frame", &bytes)?),
            Some(Ok(Message::Close(frame))) => return Err(NetError::Closed(close_reason(frame))),
            Some(Ok(Message::Text(_))) => {
                return Err(NetError::Protocol("text message (binary only)".into()));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
        }
    }
}

/// A websocket error as a session ends on it: too large is the peer's fault, the rest is IO.
pub(crate) fn ws_error(error: WsError) -> NetError {
    match error {
        WsError::Capacity(e) => NetError::TooLarge(e.to_string()),
        e => NetError::WebSocket(e.to_string()),
    }
}

/// How a peer's close frame reads in a log line or an event.
pub(crate) fn close_reason(frame: Option<CloseFrame>) -> String {
    match frame {
        Some(frame) if !frame.reason.is_empty() => {
            format!("closed by peer: {}", frame.reason.as_str())
        }
        Some(frame) => format!("closed by peer ({})", frame.code),
        None => "closed by peer".into(),
    }
}

/// A close frame with `reason` cut to what a control frame holds (123 bytes).
pub(crate) fn close_message(code: CloseCode, reason: &str) -> Message {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = reason.get(..end).unwrap_or_default();
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_owned().into(),
    }))
}

/// The close code that fits why the session or handshake ended.
pub(crate) fn close_code_of(error: &NetError) -> Option<CloseCode> {
    match error {
        NetError::HandshakeRefused(_) | NetError::Protocol(_) | NetError::Decode(_) => {
            Some(CloseCode::Policy)
        }
        NetError::HandshakeTimeout(_) => Some(CloseCode::Policy),
        NetError::TooLarge(_) => Some(CloseCode::Size),
        NetError::WebSocket(_) | NetError::Closed(_) => None,
        NetError::Listen { .. }
        | NetError::InvalidUrl { .. }
        | NetError::MessageLimitTooSmall { .. }
        | NetError::Random(_) => Some(CloseCode::Error),
    }
}
