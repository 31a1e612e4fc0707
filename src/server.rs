//! The accept loop: one task per connection through hyper-util (HTTP/1.1 and h2),
//! TCP_NODELAY so each small response leaves at once, a heartbeat the systemd
//! watchdog reads (the loop beats it from its own `select!`, so a wedged loop
//! stops it), and a bounded graceful drain when shutdown is signalled.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::zero_copy::{Spans, ZeroCopyStream};
use crate::http::{State, handle};
use crate::systemd::watchdog::Heartbeat;

/// How long a TLS handshake may take.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection-level time limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send request headers (slow clients hold sockets).
    pub header_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain: Duration,
}

async fn serve_io<I>(
    builder: auto::Builder<TokioExecutor>,
    io: I,
    spans: Option<Spans>,
    state: Arc<State>,
    remote: SocketAddr,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(io), service(state, remote, spans));
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(error = %e, client = %remote, "connection ended with an error");
    }
}

/// Accepts connections until `shutdown` turns true, beating `heartbeat` while
/// it runs, then waits up to `drain` for in-flight requests and returns (what
/// is left is cut when the runtime ends).
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
    limits: Limits,
    heartbeat: Arc<Heartbeat>,
) {
    let tls = state.tls.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        // Body buffers go to the IO as they are (never copied into one
        // buffer): zero-copy placeholders rely on it (see `http::zero_copy`).
        .writev(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut beat = tokio::time::interval(heartbeat.every());
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = beat.tick() => heartbeat.beat(),
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (builder, state, watcher) = (builder.clone(), state.clone(), graceful.watcher());
                match &tls {
                    None => {
                        let stream = ZeroCopyStream::new(stream);
                        let spans = Some(stream.spans());
                        tokio::spawn(serve_io(builder, stream, spans, state, remote, watcher));
                    }
                    Some(tls) => {
                        let acceptor = tls.acceptor();
                        tokio::spawn(async move {
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(io)) => serve_io(builder, io, None, state, remote, watcher).await,
                                Ok(Err(e)) => tracing::debug!(error = %e, client = %remote, "TLS handshake failed"),
                                Err(_) => tracing::debug!(client = %remote, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
            _ = crate::shutdown::until_shutdown(&mut shutdown) => break,
        }
    }
    drop(listener);
    tracing::info!("no longer accepting connections; draining in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(limits.drain) => tracing::warn!(drain = ?limits.drain, "drain deadline reached; cutting remaining connections"),
    }
}

/// The per-request service; on a plain-TCP connection each HTTP/1 request
/// carries the connection's [`Spans`], which lets a blob body be sent with
/// zero-copy placeholders.
fn service(
    state: Arc<State>,
    remote: SocketAddr,
    spans: Option<Spans>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<crate::http::Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<crate::http::Body>, Infallible>> + Send,
> + Clone {
    service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        if let Some(spans) = &spans
            && req.version() <= http::Version::HTTP_11
        {
            req.extensions_mut().insert(spans.clone());
        }
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(state, req, remote).await) }
    })
}
