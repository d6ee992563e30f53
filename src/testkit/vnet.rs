//! An in-memory network for calls on a virtual clock: each connection is a
//! `tokio::io::duplex` pipe served by the gateway's own router (`http::server::serve_io`), so
//! the whole HTTP → WebSocket upgrade → call driver path runs as in production, with no kernel
//! sockets. Under tokio's paused clock nothing then waits on the outside world: time advances
//! only when every task is idle (and not while whisper, espeak-ng or SQLite work on the blocking
//! pool), so a call's timeline is the same on every run and a 30 s call takes a fraction of one.

use anyhow::{Context, Result};
use std::net::SocketAddr;
use tokio::io::DuplexStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Opens a connection to `app` from `peer`: the client's end of the pipe.
pub fn connect(app: axum::Router, peer: SocketAddr) -> DuplexStream {
    let (client, server) = tokio::io::duplex(1 << 16);
    tokio::spawn(crate::http::server::serve_io(app, server, peer));
    client
}

/// A WebSocket to `path` on `app` over a new in-memory connection.
pub async fn websocket(
    app: axum::Router,
    path: &str,
    headers: &[(String, String)],
) -> Result<WebSocketStream<DuplexStream>> {
    let io = connect(app, SocketAddr::from(([127, 0, 0, 1], 40_000)));
    let mut req = format!("ws://gateway.test{path}")
        .into_client_request()
        .with_context(|| format!("bad path {path}"))?;
    for (k, v) in headers {
        req.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes())?,
            axum::http::HeaderValue::from_str(v)?,
        );
    }
    let (ws, _) = tokio_tungstenite::client_async(req, io)
        .await
        .with_context(|| format!("cannot open {path}"))?;
    Ok(ws)
}
