//! The control API on a unix socket in the data directory (owner-only): one JSON [`Request`]
//! per line in, one JSON [`Response`] per line out. The CLI and an attached console use it.

use crate::api::{NodeLink, NodeView, PendingRequest, Request, Response};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Longest request line taken (a request is small; this bounds what a client can make us hold).
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Longest response line read by the client (a view of a big hub is large).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// How often an attached console refreshes its view.
const ATTACH_REFRESH: Duration = Duration::from_millis(250);

/// Serves the control socket at `path` until `shutdown` turns true. Refuses to start if another
/// node answers on it; a stale socket file of a dead node is replaced.
pub async fn serve(
    path: &Path,
    link: NodeLink,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!(
                "another node is running on {} (its control socket answers)",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} owner-only", path.display()))?;
    }
    let path = path.to_path_buf();
    Ok(tokio::spawn(async move {
        let mut clients = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        clients.spawn(serve_client(stream, link.clone()));
                    }
                    Err(error) => tracing::warn!(%error, "control socket accept failed"),
                },
                _ = shutdown.changed() => break,
                Some(_) = clients.join_next(), if !clients.is_empty() => {}
            }
        }
        clients.shutdown().await;
        let _ = std::fs::remove_file(&path);
    }))
}

async fn serve_client(stream: UnixStream, link: NodeLink) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        match read_line_bounded(&mut lines, &mut line, MAX_REQUEST_BYTES).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) => {
                let response = Response::Error {
                    message: error.to_string(),
                };
                let _ = write_json(&mut write, &response).await;
                return;
            }
        }
        let response = match serde_json::from_str::<Request>(line.trim()) {
            Ok(request) => link.ask(request).await.unwrap_or(Response::Error {
                message: "the node stopped before answering".into(),
            }),
            Err(error) => Response::Error {
                message: format!("not a request: {error}"),
            },
        };
        if write_json(&mut write, &response).await.is_err() {
            return;
        }
    }
}

async fn write_json<W: AsyncWriteExt + Unpin, T: serde::Serialize>(
    write: &mut W,
    value: &T,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await
}

/// Reads one line of at most `max` bytes (the newline included).
async fn read_line_bounded<R: AsyncBufReadExt + Unpin>(
    read: &mut R,
    line: &mut String,
    max: usize,
) -> std::io::Result<usize> {
    let mut bytes = Vec::new();
    loop {
        let available = read.fill_buf().await?;
        if available.is_empty() {
            break;
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(end) => (&available[..=end], true),
            None => (available, false),
        };
        bytes.extend_from_slice(chunk);
        let used = chunk.len();
        read.consume(used);
        if bytes.len() > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a line longer than {max} bytes"),
            ));
        }
        if done {
            break;
        }
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))?;
    line.push_str(&text);
    Ok(text.len())
}

/// A client of a node's control socket.
pub struct ControlClient {
    read: BufReader<tokio::net::unix::OwnedReadHalf>,
    write: tokio::net::unix::OwnedWriteHalf,
}

impl ControlClient {
    pub async fn connect(path: &Path) -> anyhow::Result<Self> {
        let stream = UnixStream::connect(path).await.with_context(|| {
            format!(
                "no node answers on {} (start one with `xln node`)",
                path.display()
            )
        })?;
        let (read, write) = stream.into_split();
        Ok(Self {
            read: BufReader::new(read),
            write,
        })
    }

    pub async fn call(&mut self, request: &Request) -> anyhow::Result<Response> {
        write_json(&mut self.write, request)
            .await
            .context("sending to the node")?;
        let mut line = String::new();
        let read = read_line_bounded(&mut self.read, &mut line, MAX_RESPONSE_BYTES)
            .await
            .context("reading the node's answer")?;
        anyhow::ensure!(read > 0, "the node closed the connection");
        serde_json::from_str(line.trim()).context("the node's answer is not a response")
    }
}

/// One request over a fresh connection.
pub async fn call(path: &Path, request: &Request) -> anyhow::Result<Response> {
    ControlClient::connect(path).await?.call(request).await
}

/// A [`NodeLink`] to a running node: the view refreshed every 250 ms, requests forwarded.
/// The task ends when the link's last request sender is dropped or the node goes away.
pub async fn attach(path: PathBuf) -> anyhow::Result<(NodeLink, JoinHandle<()>)> {
    let mut client = ControlClient::connect(&path).await?;
    let first = match client.call(&Request::View).await? {
        Response::View(view) => view,
        other => anyhow::bail!("the node answered {other:?} to a view request"),
    };
    let (views_tx, views) = watch::channel(Arc::<NodeView>::new(*first));
    let (requests, mut pending) = mpsc::channel::<PendingRequest>(64);
    let task = tokio::spawn(async move {
        let mut refresh = tokio::time::interval(ATTACH_REFRESH);
        loop {
            tokio::select! {
                request = pending.recv() => {
                    let Some((request, reply)) = request else { break };
                    let response = client.call(&request).await.unwrap_or_else(|e| Response::Error {
                        message: format!("{e:#}"),
                    });
                    let _ = reply.send(response);
                }
                _ = refresh.tick() => match client.call(&Request::View).await {
                    Ok(Response::View(view)) => {
                        views_tx.send_replace(Arc::new(*view));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "the node went away");
                        break;
                    }
                },
            }
        }
    });
    Ok((NodeLink { views, requests }, task))
}
