//! Nets and raw websocket peers on 127.0.0.1, ports picked by the OS. Every wait is bounded, so
//! a bug fails a test instead of hanging it.

use super::wire::{self, Frame, Identity, Role, handshake_digest};
use super::*;
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::net::TcpListener as StdTcpListener;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use xln_core::board::EntityId;
use xln_core::crypto::{Hash, Signature};
use xln_core::entity::EntityMessage;
use xln_core::runtime::Envelope;
use xln_core::runtime::{Payload, ReplicaId};

/// The longest any single expected thing may take.
const WAIT: Duration = Duration::from_secs(10);
/// How long "nothing happens" is watched for.
const QUIET: Duration = Duration::from_millis(600);

fn key(n: u8) -> SignerKey {
    SignerKey::from_bytes(&[n; 32]).unwrap()
}

fn fast() -> Timing {
    Timing {
        handshake_timeout: Duration::from_secs(2),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        good_session: Duration::from_millis(200),
        ack_delay: Duration::from_millis(20),
        ping_interval: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        close_timeout: Duration::from_millis(500),
    }
}

struct Node {
    net: Net,
    events: mpsc::Receiver<NetEvent>,
    me: Address,
}

impl Node {
    async fn start(n: u8, listen: Option<SocketAddr>, dial: Vec<String>) -> Node {
        Self::start_with(n, listen, dial, DEFAULT_MAX_MESSAGE_BYTES, fast()).await
    }

    async fn start_with(
        n: u8,
        listen: Option<SocketAddr>,
        dial: Vec<String>,
        max_message_bytes: usize,
        timing: Timing,
    ) -> Node {
        let (tx, events) = mpsc::channel(4096);
        let config = NetConfig {
            key: key(n),
            listen,
            dial,
            max_message_bytes,
        };
        let net = Net::start_with(config, tx, timing).await.unwrap();
        Node {
            me: key(n).address(),
            net,
            events,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.net.local_addr().unwrap()
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr())
    }

    async fn next(&mut self) -> NetEvent {
        timeout(WAIT, self.events.recv())
            .await
            .expect("no event in time")
            .expect("event channel closed")
    }

    /// The first event that `pick` takes, skipping the others.
    async fn find<T>(&mut self, mut pick: impl FnMut(&NetEvent) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let event = timeout(deadline - Instant::now(), self.events.recv())
                .await
                .expect("expected event did not come")
                .expect("event channel closed");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    }

    async fn connected(&mut self, signer: Address) {
        self.find(|e| matches!(e, NetEvent::Connected { signer: s } if *s == signer).then_some(()))
            .await
    }

    async fn disconnected(&mut self, signer: Address) -> String {
        self.find(|e| match e {
            NetEvent::Disconnected { signer: s, reason } if *s == signer => Some(reason.clone()),
            _ => None,
        })
        .await
    }

    /// The numbers of the next `count` envelopes received from `from`; fails on anything
    /// received from another signer.
    async fn received(&mut self, from: Address, count: usize) -> Vec<u64> {
        let mut numbers = Vec::new();
        let deadline = Instant::now() + WAIT;
        while numbers.len() < count {
            let event = timeout(deadline - Instant::now(), self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("only {numbers:?} received in time"))
                .expect("event channel closed");
            if let NetEvent::Received { from: f, message } = event {
                assert_eq!(f, from, "message from an unexpected signer");
                numbers.push(number(&message));
            }
        }
        numbers
    }

    /// Fails if an event other than those `allowed` lets through comes within [`QUIET`].
    async fn quiet(&mut self, allowed: impl Fn(&NetEvent) -> bool) {
        let deadline = Instant::now() + QUIET;
        while let Ok(Some(event)) = timeout(deadline - Instant::now(), self.events.recv()).await {
            assert!(allowed(&event), "unexpected event {event:?}");
        }
    }

    async fn stop(self) {
        timeout(WAIT, self.net.shutdown())
            .await
            .expect("shutdown did not finish");
    }
}

fn not_received(event: &NetEvent) -> bool {
    !matches!(event, NetEvent::Received { .. })
}

fn not_connected(event: &NetEvent) -> bool {
    !matches!(event, NetEvent::Connected { .. })
}

fn any_event(_: &NetEvent) -> bool {
    true
}

fn local() -> Option<SocketAddr> {
    Some(([127, 0, 0, 1], 0).into())
}

/// A port nothing listens on (the OS gave it and it was let go).
fn free_port() -> SocketAddr {
    StdTcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// An envelope from `from` carrying `n` (as the height of a precommit), `padding` signatures.
fn envelope_sized(from: Address, n: u64, padding: usize) -> WireMessage {
    let replica = |signer| ReplicaId {
        entity: EntityId::ZERO,
        signer,
    };
    WireMessage::Envelope(Envelope {
        from: replica(from),
        to: replica(Address::ZERO),
        payload: Payload::Entity(EntityMessage::Precommit {
            height: n,
            frame_hash: Hash::ZERO,
            signatures: vec![Signature::ZERO; padding],
        }),
    })
}

fn envelope(from: Address, n: u64) -> WireMessage {
    envelope_sized(from, n, 0)
}

fn number(message: &WireMessage) -> u64 {
    match message {
        WireMessage::Envelope(Envelope {
            payload: Payload::Entity(EntityMessage::Precommit { height, .. }),
            ..
        }) => *height,
        other => panic!("not a test envelope: {other:?}"),
    }
}

// ---- raw peers --------------------------------------------------------------------------

type RawWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn raw_connect(addr: SocketAddr) -> RawWs {
    timeout(WAIT, connect_async(format!("ws://{addr}")))
        .await
        .unwrap()
        .unwrap()
        .0
}

/// A raw websocket that passed the handshake as signer `n` with `epoch`.
async fn raw_client(addr: SocketAddr, n: u8, epoch: u64) -> RawWs {
    let mut ws = raw_connect(addr).await;
    let me = key(n);
    let identity = Identity { key: &me, epoch };
    timeout(WAIT, wire::client_handshake(&mut ws, identity))
        .await
        .unwrap()
        .unwrap();
    ws
}

/// The next frame (pings skipped).
async fn raw_read(ws: &mut RawWs) -> Frame {
    timeout(WAIT, wire::read_frame(ws)).await.unwrap().unwrap()
}

/// The next `Data` frame's number and message number, skipping acknowledgements.
async fn raw_data(ws: &mut RawWs) -> (u64, u64) {
    loop {
        match raw_read(ws).await {
            Frame::Data { seq, message } => return (seq, number(&message)),
            Frame::Ack { .. } => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads until the peer closes; returns the code and reason of its close frame.
async fn raw_closed(ws: &mut RawWs) -> (CloseCode, String) {
    loop {
        match timeout(WAIT, ws.next()).await.expect("not closed in time") {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (frame.code, frame.reason.as_str().to_owned());
            }
            Some(Ok(Message::Close(None))) => return (CloseCode::Status, String::new()),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("connection failed instead of closing: {e}"),
            None => panic!("connection ended without a close frame"),
        }
    }
}

async fn raw_send(ws: &mut RawWs, frame: Frame) {
    ws.send(frame.to_message()).await.unwrap();
}

// ---- exchanges --------------------------------------------------------------------------

#[tokio::test]
async fn two_nets_exchange_envelopes_both_ways() {
    let mut a = Node::start(1, local(), vec![]).await;
    let mut b = Node::start(2, None, vec![a.url()]).await;
    a.connected(b.me).await;
    b.connected(a.me).await;

    a.net.send(b.me, envelope(a.me, 10));
    b.net.send(a.me, envelope(b.me, 20));
    b.net.send(a.me, envelope(b.me, 21));
    assert_eq!(b.received(a.me, 1).await, vec![10]);
    assert_eq!(a.received(b.me, 2).await, vec![20, 21]);

    assert_eq!(
        a.net.peers(),
        vec![PeerView {
            signer: b.me,
            url: None,
            connected: true,
            blocked: false
        }]
    );
    assert_eq!(
        b.net.peers(),
        vec![PeerView {
            signer: a.me,
            url: Some(a.url()),
            connected: true,
            blocked: false
        }]
    );
    let (addr, a_signer) = (a.addr(), a.me);
    a.stop().await;
    assert!(b.disconnected(a_signer).await.contains("shutting down"));
    b.stop().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

/// On several threads, as the node runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nets_exchange_and_broadcast() {
    let mut a = Node::start(1, local(), vec![]).await;
    let mut b = Node::start(2, local(), vec![a.url()]).await;
    let mut c = Node::start(3, None, vec![a.url(), b.url()]).await;
    for (node, others) in [(&mut a, [2, 3]), (&mut b, [1, 3]), (&mut c, [1, 2])] {
        let mut waiting: Vec<Address> = others.iter().map(|n| key(*n).address()).collect();
        while !waiting.is_empty() {
            let signer = node
                .find(|e| match e {
                    NetEvent::Connected { signer } => Some(*signer),
                    _ => None,
                })
                .await;
            waiting.retain(|s| *s != signer);
        }
    }
    let nodes = [&a, &b, &c];
    for from in nodes {
        for to in nodes {
            if from.me != to.me {
                for n in 1..=3 {
                    from.net.send(to.me, envelope(from.me, n));
                }
            }
        }
    }
    for node in [&mut a, &mut b, &mut c] {
        let mut by_sender: BTreeMap<Address, Vec<u64>> = BTreeMap::new();
        for _ in 0..6 {
            if let NetEvent::Received { from, message } = node.next().await {
                by_sender.entry(from).or_default().push(number(&message));
            }
        }
        assert_eq!(by_sender.len(), 2);
        assert!(by_sender.values().all(|numbers| numbers == &[1, 2, 3]));
    }
    a.net.broadcast(envelope(a.me, 99));
    assert_eq!(b.received(a.me, 1).await, vec![99]);
    assert_eq!(c.received(a.me, 1).await, vec![99]);
    // A relay skips the peer the message came from: b's next message from a is the marker.
    a.net.relay(b.me, envelope(a.me, 100));
    a.net.send(b.me, envelope(a.me, 101));
    assert_eq!(c.received(a.me, 1).await, vec![100]);
    assert_eq!(b.received(a.me, 1).await, vec![101]);
    for node in [a, b, c] {
        node.stop().await;
    }
}

// ---- handshake --------------------------------------------------------------------------

#[tokio::test]
async fn handshake_with_a_forged_signature_is_refused() {
    let mut a = Node::start(1, local(), vec![]).await;

    // Claims signer 7 but signs with key 8.
    let mut ws = raw_connect(a.addr()).await;
    let Frame::Challenge { nonce, .. } = raw_read(&mut ws).await else {
        panic!("no challenge")
    };
    let claimed = key(7).address();
    let client_nonce = [9u8; 32];
    let digest = handshake_digest(Role::Client, &nonce, &client_nonce, &claimed, 1);
    raw_send(
        &mut ws,
        Frame::ClientAuth {
            signer: claimed,
            epoch: 1,
            nonce: client_nonce,
            signature: key(8).sign(&digest),
        },
    )
    .await;
    let (code, reason) = raw_closed(&mut ws).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("signature"), "{reason}");

    // Signer 7's real signature, but over another challenge (a replay).
    let mut ws = raw_connect(a.addr()).await;
    let Frame::Challenge { .. } = raw_read(&mut ws).await else {
        panic!("no challenge")
    };
    let digest = handshake_digest(Role::Client, &[0; 32], &client_nonce, &claimed, 1);
    raw_send(
        &mut ws,
        Frame::ClientAuth {
            signer: claimed,
            epoch: 1,
            nonce: client_nonce,
            signature: key(7).sign(&digest),
        },
    )
    .await;
    let (_, reason) = raw_closed(&mut ws).await;
    assert!(reason.contains("signature"), "{reason}");

    // The server's own key: a connection to ourselves.
    let mut ws = raw_connect(a.addr()).await;
    let identity = Identity {
        key: &key(1),
        epoch: 5,
    };
    let refused = wire::client_handshake(&mut ws, identity).await;
    assert!(
        matches!(&refused, Err(NetError::Closed(reason)) if reason.contains("ourselves")),
        "{refused:?}"
    );

    // A correct handshake is accepted (the test above can fail).
    let _ws = raw_client(a.addr(), 7, 1).await;
    a.connected(claimed).await;
    a.stop().await;
}

#[tokio::test]
async fn dialler_refuses_a_server_with_a_forged_signature() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let mut b = Node::start(2, None, vec![url]).await;
    let (tcp, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let mut ws = tokio_tungstenite::accept_async(MaybeTlsStream::Plain(tcp))
        .await
        .unwrap();
    let server_nonce = [3u8; 32];
    raw_send(
        &mut ws,
        Frame::Challenge {
            version: wire::PROTOCOL_VERSION,
            nonce: server_nonce,
        },
    )
    .await;
    let Frame::ClientAuth { nonce, .. } = raw_read(&mut ws).await else {
        panic!("no client proof")
    };
    // Claims signer 1 with key 8's signature.
    let claimed = key(1).address();
    let digest = handshake_digest(Role::Server, &server_nonce, &nonce, &claimed, 1);
    raw_send(
        &mut ws,
        Frame::ServerAuth {
            signer: claimed,
            epoch: 1,
            signature: key(8).sign(&digest),
        },
    )
    .await;
    let (code, reason) = raw_closed(&mut ws).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("signature"), "{reason}");
    b.quiet(not_connected).await;
    assert!(b.net.peers().is_empty());
    b.stop().await;
}

#[tokio::test]
async fn silent_connections_time_out_in_the_handshake() {
    let timing = Timing {
        handshake_timeout: Duration::from_millis(300),
        ..fast()
    };
    let a = Node::start_with(1, local(), vec![], DEFAULT_MAX_MESSAGE_BYTES, timing).await;
    // A websocket that never answers the challenge.
    let mut ws = raw_connect(a.addr()).await;
    let started = Instant::now();
    let (code, reason) = raw_closed(&mut ws).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("no handshake"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // A TCP connection that never upgrades is dropped too.
    let mut tcp = TcpStream::connect(a.addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let read = timeout(WAIT, tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    a.stop().await;
}

#[tokio::test]
async fn a_net_does_not_connect_to_itself() {
    let port = free_port();
    let mut a = Node::start(1, Some(port), vec![format!("ws://{port}")]).await;
    a.quiet(not_connected).await;
    assert!(a.net.peers().is_empty());
    a.stop().await;
}

#[tokio::test]
async fn a_second_session_replaces_the_first() {
    let mut a = Node::start(1, local(), vec![]).await;
    let seven = key(7).address();
    let mut first = raw_client(a.addr(), 7, 1).await;
    a.connected(seven).await;
    let _second = raw_client(a.addr(), 7, 1).await;
    assert!(a.disconnected(seven).await.contains("replaced"));
    a.connected(seven).await;
    let (_, reason) = raw_closed(&mut first).await;
    assert!(reason.contains("replaced"), "{reason}");
    assert!(a.net.peers()[0].connected);
    a.stop().await;
}

/// On several threads, as the node runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nets_dialling_each_other_settle_on_one_session() {
    let (pa, pb) = (free_port(), free_port());
    let mut a = Node::start(1, Some(pa), vec![format!("ws://{pb}")]).await;
    let mut b = Node::start(2, Some(pb), vec![format!("ws://{pa}")]).await;
    a.connected(b.me).await;
    b.connected(a.me).await;
    sleep(Duration::from_millis(500)).await;
    while a.events.try_recv().is_ok() {}
    while b.events.try_recv().is_ok() {}
    // Settled: no more sessions come and go, and messages flow.
    a.quiet(any_event).await;
    b.quiet(any_event).await;
    assert!(a.net.peers()[0].connected && b.net.peers()[0].connected);
    a.net.send(b.me, envelope(a.me, 1));
    b.net.send(a.me, envelope(b.me, 2));
    assert_eq!(b.received(a.me, 1).await, vec![1]);
    assert_eq!(a.received(b.me, 1).await, vec![2]);
    a.stop().await;
    b.stop().await;
}

// ---- misbehaving peers ------------------------------------------------------------------

#[tokio::test]
async fn an_envelope_from_another_signer_disconnects() {
    let mut a = Node::start(1, local(), vec![]).await;
    let seven = key(7).address();
    let mut ws = raw_client(a.addr(), 7, 1).await;
    a.connected(seven).await;
    raw_send(
        &mut ws,
        Frame::Data {
            seq: 1,
            message: envelope(seven, 1),
        },
    )
    .await;
    assert_eq!(a.received(seven, 1).await, vec![1]);
    let impostor = key(8).address();
    raw_send(
        &mut ws,
        Frame::Data {
            seq: 2,
            message: envelope(impostor, 2),
        },
    )
    .await;
    let reason = a.disconnected(seven).await;
    assert!(reason.contains("envelope from"), "{reason}");
    let (code, _) = raw_closed(&mut ws).await;
    assert_eq!(code, CloseCode::Policy);
    a.quiet(not_received).await;
    a.stop().await;
}

#[tokio::test]
async fn garbage_disconnects() {
    let mut a = Node::start(1, local(), vec![]).await;
    let seven = key(7).address();

    let mut ws = raw_client(a.addr(), 7, 1).await;
    a.connected(seven).await;
    ws.send(Message::binary(vec![0xff; 10])).await.unwrap();
    assert!(a.disconnected(seven).await.contains("undecodable"));
    assert_eq!(raw_closed(&mut ws).await.0, CloseCode::Policy);

    let mut ws = raw_client(a.addr(), 7, 1).await;
    a.connected(seven).await;
    ws.send(Message::text("hello")).await.unwrap();
    assert!(a.disconnected(seven).await.contains("text"));
    assert_eq!(raw_closed(&mut ws).await.0, CloseCode::Policy);

    // A valid frame with trailing bytes is garbage too.
    let mut ws = raw_client(a.addr(), 7, 1).await;
    a.connected(seven).await;
    let mut bytes = xln_core::codec::encode(&Frame::Data {
        seq: 1,
        message: envelope(seven, 1),
    });
    bytes.push(0);
    ws.send(Message::binary(bytes)).await.unwrap();
    assert!(a.disconnected(seven).await.contains("undecodable"));

    // Garbage instead of the handshake: refused, nothing reported.
    let mut ws = raw_connect(a.addr()).await;
    raw_read(&mut ws).await;
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(raw_closed(&mut ws).await.0, CloseCode::Policy);
    a.quiet(|e| not_received(e) && not_connected(e)).await;
    a.stop().await;
}

#[tokio::test]
async fn oversize_messages_are_refused() {
    let max = 16 * 1024;
    let mut a = Node::start_with(1, local(), vec![], max, fast()).await;
    let seven = key(7).address();
    let mut ws = raw_client(a.addr(), 7, 1).await;
    a.connected(seven).await;

    // Under the bound: passed on.
    raw_send(
        &mut ws,
        Frame::Data {
            seq: 1,
            message: envelope_sized(seven, 1, 100),
        },
    )
    .await;
    assert_eq!(a.received(seven, 1).await, vec![1]);

    // Ours to send and over the bound: dropped here, the session stays.
    a.net.send(seven, envelope_sized(a.me, 2, 400));
    assert_eq!(a.net.unacknowledged(seven), 0);

    // Theirs and over the bound: the session closes.
    raw_send(
        &mut ws,
        Frame::Data {
            seq: 2,
            message: envelope_sized(seven, 2, 400),
        },
    )
    .await;
    let reason = a.disconnected(seven).await;
    assert!(reason.contains("too large"), "{reason}");
    assert_eq!(raw_closed(&mut ws).await.0, CloseCode::Size);
    a.quiet(not_received).await;
    a.stop().await;
}

#[tokio::test]
async fn bad_configs_are_refused() {
    let (tx, _rx) = mpsc::channel(1);
    let mut config = NetConfig::new(key(1));
    config.dial = vec!["http://127.0.0.1:1".into()];
    let error = Net::start(config.clone(), tx.clone()).await.unwrap_err();
    assert!(matches!(error, NetError::InvalidUrl { .. }), "{error}");
    config.dial = vec!["wss://127.0.0.1:1".into()];
    assert!(matches!(
        Net::start(config.clone(), tx.clone()).await,
        Err(NetError::InvalidUrl { .. })
    ));
    config.dial = vec![];
    config.max_message_bytes = 100;
    assert!(matches!(
        Net::start(config, tx).await,
        Err(NetError::MessageLimitTooSmall { got: 100 })
    ));
}

// ---- delivery across sessions -----------------------------------------------------------

#[tokio::test]
async fn unacknowledged_messages_are_resent_in_order_on_the_next_session() {
    let mut a = Node::start(1, local(), vec![]).await;
    let seven = key(7).address();
    for n in 1..=3 {
        a.net.send(seven, envelope(a.me, n));
    }
    let mut ws = raw_client(a.addr(), 7, 1).await;
    a.connected(seven).await;
    for expected in 1..=3 {
        assert_eq!(raw_data(&mut ws).await, (expected, expected));
    }
    ws.close(None).await.unwrap();
    a.disconnected(seven).await;

    // Nothing was acknowledged: all again, in order.
    let mut ws = raw_client(a.addr(), 7, 1).await;
    for expected in 1..=3 {
        assert_eq!(raw_data(&mut ws).await, (expected, expected));
    }
    raw_send(&mut ws, Frame::Ack { seq: 2 }).await;
    a.net.send(seven, envelope(a.me, 4));
    assert_eq!(raw_data(&mut ws).await, (4, 4));
    ws.close(None).await.unwrap();
    a.disconnected(seven).await;

    // 1 and 2 were acknowledged: 3 and 4 again.
    let mut ws = raw_client(a.addr(), 7, 1).await;
    assert_eq!(raw_data(&mut ws).await, (3, 3));
    assert_eq!(raw_data(&mut ws).await, (4, 4));
    raw_send(&mut ws, Frame::Ack { seq: 4 }).await;
    let deadline = Instant::now() + WAIT;
    while a.net.unacknowledged(seven) > 0 {
        assert!(
            Instant::now() < deadline,
            "the acknowledgement was not applied"
        );
        sleep(Duration::from_millis(10)).await;
    }

    // Acknowledging what was never sent is a protocol violation.
    raw_send(&mut ws, Frame::Ack { seq: 99 }).await;
    assert!(a.disconnected(seven).await.contains("acknowledged"));
    a.stop().await;
}

#[tokio::test]
async fn the_queue_per_peer_drops_its_oldest() {
    let a = Node::start(1, local(), vec![]).await;
    let seven = key(7).address();
    let total = MAX_QUEUED_PER_PEER as u64 + 10;
    for n in 1..=total {
        a.net.send(seven, envelope(a.me, n));
    }
    assert_eq!(a.net.unacknowledged(seven), MAX_QUEUED_PER_PEER);
    let mut ws = raw_client(a.addr(), 7, 1).await;
    assert_eq!(raw_data(&mut ws).await, (11, 11));
    a.stop().await;
}

#[tokio::test]
async fn duplicates_are_passed_on_once_and_a_new_epoch_numbers_again() {
    let mut a = Node::start(1, local(), vec![]).await;
    let seven = key(7).address();
    let mut ws = raw_client(a.addr(), 7, 1).await;
    a.connected(seven).await;
    for seq in [1, 1, 2, 1, 2, 3] {
        raw_send(
            &mut ws,
            Frame::Data {
                seq,
                message: envelope(seven, seq),
            },
        )
        .await;
    }
    assert_eq!(a.received(seven, 3).await, vec![1, 2, 3]);
    // A acknowledges them (after ACK_DELAY at the latest).
    loop {
        if let Frame::Ack { seq } = raw_read(&mut ws).await
            && seq == 3
        {
            break;
        }
    }
    ws.close(None).await.unwrap();
    a.disconnected(seven).await;

    // The same process again: acknowledged up front, old numbers dropped.
    let mut ws = raw_client(a.addr(), 7, 1).await;
    assert_eq!(raw_read(&mut ws).await, Frame::Ack { seq: 3 });
    for seq in [2, 3, 4] {
        raw_send(
            &mut ws,
            Frame::Data {
                seq,
                message: envelope(seven, seq),
            },
        )
        .await;
    }
    assert_eq!(a.received(seven, 1).await, vec![4]);
    ws.close(None).await.unwrap();
    a.disconnected(seven).await;

    // A restarted peer (new epoch) numbers from 1 again, and is heard.
    let mut ws = raw_client(a.addr(), 7, 2).await;
    raw_send(
        &mut ws,
        Frame::Data {
            seq: 1,
            message: envelope(seven, 100),
        },
    )
    .await;
    assert_eq!(a.received(seven, 1).await, vec![100]);
    a.quiet(not_received).await;
    a.stop().await;
}

/// Waits until `from` has nothing unacknowledged for `to`.
async fn all_acknowledged(from: &Node, to: Address) {
    let deadline = Instant::now() + WAIT;
    while from.net.unacknowledged(to) > 0 {
        assert!(Instant::now() < deadline, "not acknowledged in time");
        sleep(Duration::from_millis(10)).await;
    }
}

/// On several threads, as the node runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_session_loses_and_repeats_nothing() {
    let mut a = Node::start(1, local(), vec![]).await;
    let mut b = Node::start(2, None, vec![a.url()]).await;
    a.connected(b.me).await;
    b.connected(a.me).await;
    // Some in flight, some unacknowledged, when the session is cut; more queued while cut.
    for n in 1..=200 {
        b.net.send(a.me, envelope(b.me, n));
    }
    // Cut at once: with even a 2 ms pause every message is delivered and acknowledged first,
    // and nothing would be left to resend.
    let unacknowledged_at_cut = b.net.shared.unacknowledged(a.me);
    a.net.set_blocked(b.me, true);
    for n in 201..=300 {
        b.net.send(a.me, envelope(b.me, n));
    }
    let mut numbers = Vec::new();
    loop {
        match a.next().await {
            NetEvent::Received { message, .. } => numbers.push(number(&message)),
            NetEvent::Disconnected { reason, .. } => {
                assert_eq!(reason, "blocked");
                break;
            }
            NetEvent::Connected { .. } => panic!("connected while blocked"),
        }
    }
    assert!(
        unacknowledged_at_cut > 0,
        "nothing was unacknowledged at the cut: the resend is not tested"
    );
    a.quiet(|e| not_received(e) && not_connected(e)).await;
    a.net.set_blocked(b.me, false);
    a.connected(b.me).await;
    let rest = a.received(b.me, 300 - numbers.len()).await;
    numbers.extend(rest);
    assert_eq!(numbers, (1..=300).collect::<Vec<_>>());
    all_acknowledged(&b, a.me).await;
    a.quiet(not_received).await;
    a.stop().await;
    b.stop().await;
}

/// On several threads, as the node runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_reach_a_restarted_peer_once() {
    let mut a = Node::start(1, local(), vec![]).await;
    let addr = a.addr();
    let mut b = Node::start(2, None, vec![a.url()]).await;
    a.connected(b.me).await;
    for n in 1..=5 {
        b.net.send(a.me, envelope(b.me, n));
    }
    assert_eq!(a.received(b.me, 5).await, vec![1, 2, 3, 4, 5]);
    all_acknowledged(&b, a.me).await;

    // The receiver restarts on the same port: only what it has not acknowledged arrives.
    a.stop().await;
    b.disconnected(key(1).address()).await;
    for n in 6..=10 {
        b.net.send(key(1).address(), envelope(b.me, n));
    }
    let mut a = Node::start(1, Some(addr), vec![]).await;
    a.connected(b.me).await;
    assert_eq!(a.received(b.me, 5).await, vec![6, 7, 8, 9, 10]);
    a.quiet(not_received).await;

    // The sender restarts: its numbering starts again and is not taken for duplicates.
    b.stop().await;
    a.disconnected(key(2).address()).await;
    let b = Node::start(2, None, vec![a.url()]).await;
    a.connected(b.me).await;
    for n in 11..=12 {
        b.net.send(a.me, envelope(b.me, n));
    }
    assert_eq!(a.received(b.me, 2).await, vec![11, 12]);
    a.stop().await;
    b.stop().await;
}

// ---- reconnection and blocking ----------------------------------------------------------

#[tokio::test]
async fn a_dialled_peer_is_reached_once_it_comes_up() {
    let addr = free_port();
    let mut b = Node::start(2, None, vec![format!("ws://{addr}")]).await;
    // Several dials fail (backoff 50, 100, 200 ms…) before anything listens.
    sleep(Duration::from_millis(700)).await;
    let mut a = Node::start(1, Some(addr), vec![]).await;
    b.connected(a.me).await;
    a.connected(b.me).await;
    assert_eq!(b.net.peers()[0].url, Some(format!("ws://{addr}")));

    // And again after the session is lost.
    a.stop().await;
    b.disconnected(key(1).address()).await;
    let mut a = Node::start(1, Some(addr), vec![]).await;
    b.connected(a.me).await;
    a.connected(b.me).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn blocking_refuses_both_directions_until_unblocked() {
    let mut a = Node::start(1, local(), vec![]).await;
    let mut b = Node::start(2, None, vec![a.url()]).await;
    a.connected(b.me).await;
    b.connected(a.me).await;

    // The listener blocks the dialler: the session drops, redials are refused.
    a.net.set_blocked(b.me, true);
    assert_eq!(a.disconnected(b.me).await, "blocked");
    let view = &a.net.peers()[0];
    assert!(view.blocked && !view.connected);
    a.quiet(not_connected).await;
    a.net.set_blocked(b.me, false);
    a.connected(b.me).await;
    b.find(|e| matches!(e, NetEvent::Connected { .. }).then_some(()))
        .await;

    // The dialler blocks the listener: it drops the session and stops dialling.
    b.net.set_blocked(a.me, true);
    assert_eq!(b.disconnected(a.me).await, "blocked");
    a.disconnected(b.me).await;
    b.quiet(not_connected).await;
    a.quiet(not_connected).await;
    b.net.set_blocked(a.me, false);
    b.connected(a.me).await;
    a.connected(b.me).await;
    a.stop().await;
    b.stop().await;

    // A dialler that blocks the listener before ever reaching it refuses its proof.
    let mut a = Node::start(1, local(), vec![]).await;
    let mut c = Node::start(3, None, vec![a.url()]).await;
    c.net.set_blocked(a.me, true);
    c.quiet(not_connected).await;
    c.net.set_blocked(a.me, false);
    c.connected(a.me).await;
    a.find(|e| matches!(e, NetEvent::Connected { .. }).then_some(()))
        .await;
    a.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_closes_the_session_and_the_dialler_comes_back() {
    let mut a = Node::start(1, local(), vec![]).await;
    let mut b = Node::start(2, None, vec![a.url()]).await;
    a.connected(b.me).await;
    b.connected(a.me).await;
    a.net.disconnect(b.me, "a badly signed message");
    assert_eq!(a.disconnected(b.me).await, "a badly signed message");
    // Not blocked: the dialler reconnects.
    a.connected(b.me).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn shutdown_ends_pending_handshakes_and_sessions() {
    let a = Node::start(1, local(), vec![]).await;
    let addr = a.addr();
    let _idle_tcp = TcpStream::connect(addr).await.unwrap();
    let _idle_ws = raw_connect(addr).await;
    let mut session = raw_client(addr, 7, 1).await;
    // A dial loop towards nothing.
    let b = Node::start(2, None, vec![format!("ws://{}", free_port())]).await;
    let started = Instant::now();
    a.stop().await;
    b.stop().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let (code, _) = raw_closed(&mut session).await;
    assert_eq!(code, CloseCode::Away);
    assert!(TcpStream::connect(addr).await.is_err());
}

/// The largest entity message a node sends on purpose, a state snapshot of at most
/// `MAX_SNAPSHOT_BYTES`, fits in one message of the default bound with everything around it.
#[test]
fn a_state_snapshot_at_its_size_bound_fits_in_one_message() {
    let message = EntityMessage::SnapshotTooLarge {
        committed_height: u64::MAX,
        bytes: u64::MAX,
    };
    let inner = xln_core::codec::encode(&message).len();
    let replica = ReplicaId {
        entity: EntityId::ZERO,
        signer: Address::ZERO,
    };
    let framed = xln_core::codec::encode(&Frame::Data {
        seq: u64::MAX,
        message: WireMessage::Envelope(Envelope {
            from: replica,
            to: replica,
            payload: Payload::Entity(message),
        }),
    })
    .len();
    // Postcard writes the envelope's fields around the message's bytes: the same for any message.
    let around = framed - inner;
    assert!(
        xln_core::entity::MAX_SNAPSHOT_BYTES + around <= DEFAULT_MAX_MESSAGE_BYTES,
        "{around} bytes around a message"
    );
}
