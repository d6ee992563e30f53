//! The HTTP server loop: axum's router on hyper, with the limits `axum::serve` does not set —
//! a deadline for a client's request headers (slow-header clients are cut off instead of
//! holding a connection forever) and a cap on open connections (past it, new ones wait in the
//! kernel's queue instead of exhausting file descriptors). Each request carries its peer address
//! (`ConnectInfo`) for per-address limits.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn from_config(cfg: &crate::config::ApiConfig) -> Limits {
        Limits {
            header_read_timeout: Duration::from_millis(cfg.header_read_timeout_ms),
            max_connections: cfg.max_connections,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&crate::config::ApiConfig::default())
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish (up to
/// 10 s). Upgraded connections (calls' WebSockets) are their own tasks and end on their own.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut warned_full = false;
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        if permits.available_permits() == 0 && !warned_full {
            warned_full = true;
            tracing::warn!(
                max = limits.max_connections,
                "connection limit reached: new connections wait until one closes"
            );
        } else if permits.available_permits() > limits.max_connections / 2 {
            warned_full = false;
        }
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors or a reset before accept: back off, never spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = app
            .clone()
            .map_request(move |mut req: axum::extract::Request<_>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            });
        let svc = TowerToHyperService::new(svc);
        let builder = builder.clone();
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP requests were still open 10 s after shutdown");
    }
    Ok(())
}

/// The peer address of a request served by [`serve`] (None under another server).
pub fn peer(ext: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// Serves one HTTP connection (with upgrades: the media and signaling WebSockets) over any byte
/// stream, its requests tagged with `peer` as [`serve`] tags them: the in-memory network the
/// virtual-clock tests call through (`testkit::vnet`).
pub async fn serve_io<I>(app: Router, io: I, peer: SocketAddr)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = app.map_request(move |mut req: axum::extract::Request<_>| {
        req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
        req
    });
    let builder = Builder::new(TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(svc))
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
