//! The node's metrics: counters the writer bumps as events happen, gauges it sets when it
//! rebuilds the view, and an opt-in HTTP endpoint on a loopback address that serves them in
//! the Prometheus text format (OpenMetrics) at `/metrics`.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A label set of one `(name, value)` pair, e.g. `result="succeeded"`.
type Label = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Registry,
    /// Our payments by what happened: `sent`, `succeeded`, `failed`, and `received`.
    payments: Family<Label, Counter>,
    /// Payments through us by outcome: `forwarded` or `refused`.
    forwards: Family<Label, Counter>,
    pub account_frames: Counter,
    pub inputs: Gauge,
    pub htlcs_in_flight: Gauge,
    pub accounts: Gauge,
    pub peers_connected: Gauge,
    pub chain_head: Gauge,
    pub chain_followed: Gauge,
    pub chain_lag: Gauge,
    pub database_bytes: Gauge,
    pub entity_height: Gauge,
    pub healthy: Gauge,
    pub tasks_alive: Gauge,
}

/// What a payment counter counts.
#[derive(Debug, Clone, Copy)]
pub enum PaymentOutcome {
    Sent,
    Succeeded,
    Failed,
    Received,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("xln"),
            payments: Family::default(),
            forwards: Family::default(),
            account_frames: Counter::default(),
            inputs: Gauge::default(),
            htlcs_in_flight: Gauge::default(),
            accounts: Gauge::default(),
            peers_connected: Gauge::default(),
            chain_head: Gauge::default(),
            chain_followed: Gauge::default(),
            chain_lag: Gauge::default(),
            database_bytes: Gauge::default(),
            entity_height: Gauge::default(),
            healthy: Gauge::default(),
            tasks_alive: Gauge::default(),
        };
        let r = &mut metrics.registry;
        r.register(
            "payments",
            "Our payments: sent, then succeeded or failed; and payments received",
            metrics.payments.clone(),
        );
        r.register(
            "forwards",
            "Payments routed through us: forwarded or refused",
            metrics.forwards.clone(),
        );
        r.register(
            "account_frames",
            "Account frames committed (2-of-2 signed)",
            metrics.account_frames.clone(),
        );
        let gauges: [(&str, &str, &Gauge); 11] = [
            (
                "wal_inputs",
                "Inputs in the write-ahead log since the node was created",
                &metrics.inputs,
            ),
            (
                "htlcs_in_flight",
                "Locks in flight over all accounts, in and out",
                &metrics.htlcs_in_flight,
            ),
            ("accounts", "Open accounts", &metrics.accounts),
            (
                "peers_connected",
                "Peers with an authenticated session",
                &metrics.peers_connected,
            ),
            (
                "chain_head_block",
                "The newest block the RPC reported",
                &metrics.chain_head,
            ),
            (
                "chain_followed_block",
                "The newest block the entity has taken in",
                &metrics.chain_followed,
            ),
            (
                "chain_follower_lag_blocks",
                "Blocks between the chain head and what the entity has taken in",
                &metrics.chain_lag,
            ),
            (
                "database_bytes",
                "Size of the database file (write-ahead log and snapshots)",
                &metrics.database_bytes,
            ),
            (
                "entity_height",
                "Height of the entity's last committed frame",
                &metrics.entity_height,
            ),
            (
                "healthy",
                "1 when `xln status` reports no problem, else 0",
                &metrics.healthy,
            ),
            (
                "tasks_alive",
                "Tokio tasks alive in the node's process",
                &metrics.tasks_alive,
            ),
        ];
        for (name, help, gauge) in gauges {
            r.register(name, help, gauge.clone());
        }
        metrics
    }

    pub fn payment(&self, outcome: PaymentOutcome) {
        let result = match outcome {
            PaymentOutcome::Sent => "sent",
            PaymentOutcome::Succeeded => "succeeded",
            PaymentOutcome::Failed => "failed",
            PaymentOutcome::Received => "received",
        };
        self.payments.get_or_create(&vec![("result", result)]).inc();
    }

    pub fn forward(&self, forwarded: bool) {
        let result = if forwarded { "forwarded" } else { "refused" };
        self.forwards.get_or_create(&vec![("result", result)]).inc();
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// Gauges take i64; counts and heights beyond it do not happen, and saturate if they did.
pub fn gauge_value(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// Binds the metrics endpoint; separate from `serve` so that the caller learns the port (a
/// configured port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "the metrics endpoint only listens on a loopback address, not {addr}"
    );
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics endpoint {addr}: {e}"))
}

/// Answers `GET /metrics` until `shutdown` turns true; anything else gets a 404 or 405.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let metrics = metrics.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(answer(&request, &metrics)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

fn answer(request: &hyper::Request<Incoming>, metrics: &Metrics) -> hyper::Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "the metrics are at /metrics\n".to_string(),
        ),
    };
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric_with_its_value() {
        let metrics = Metrics::new();
        metrics.payment(PaymentOutcome::Sent);
        metrics.payment(PaymentOutcome::Sent);
        metrics.payment(PaymentOutcome::Succeeded);
        metrics.forward(false);
        metrics.htlcs_in_flight.set(3);
        metrics.chain_lag.set(2);
        let text = metrics.encode();
        for line in [
            "xln_payments_total{result=\"sent\"} 2",
            "xln_payments_total{result=\"succeeded\"} 1",
            "xln_forwards_total{result=\"refused\"} 1",
            "xln_htlcs_in_flight 3",
            "xln_chain_follower_lag_blocks 2",
            "xln_database_bytes 0",
            "# TYPE xln_account_frames counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn gauge_values_saturate() {
        assert_eq!(gauge_value(u64::MAX), i64::MAX);
        assert_eq!(gauge_value(7usize), 7);
    }

    #[tokio::test]
    async fn the_endpoint_serves_metrics_and_refuses_the_rest() {
        assert!(bind("0.0.0.0:0".parse().unwrap()).await.is_err());
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        metrics.peers_connected.set(4);
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(serve(listener, metrics, stopped));
        let ok = http_get(addr, "/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("\nxln_peers_connected 4\n"), "{ok}");
        let missing = http_get(addr, "/").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        stop.send(true).unwrap();
        server.await.unwrap();
    }

    /// A plain HTTP/1.1 request over a socket, as a scraper sends it.
    async fn http_get(addr: SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }
}
