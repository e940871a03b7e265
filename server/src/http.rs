//! The HTTP accept loop: axum's router on hyper, with the header-read timeout that
//! `axum::serve` does not let one set.
//!
//! A client that connects and sends nothing, sends its headers a byte at a time, or keeps an
//! idle keep-alive connection open, is cut off after `header_read_timeout` (hyper starts the
//! timer when it waits for a request's headers: at connection and after each response).
//! Upgraded connections (the sync WebSocket) leave hyper and keep their own idle rule. HTTP/1.1
//! only (see [`serve_connection`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt as _;

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, lets the
/// connections in flight finish their requests, and returns once they have.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // Dropping `stop_rx` tells every connection to finish; each holds a `done_rx` clone, so
    // `done_tx.closed()` resolves when the last one has.
    let (stop_tx, stop_rx) = watch::channel(());
    let (done_tx, done_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(stop_rx);
    });
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop_tx.closed() => break,
        };
        let service = router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                request.map(axum::body::Body::new)
            });
        let stop = stop_tx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            serve_connection(stream, remote, service, header_read_timeout, stop).await;
            drop(done);
        });
    }
    drop(done_rx);
    done_tx.closed().await;
}

async fn serve_connection<S>(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    service: S,
    header_read_timeout: Duration,
    stop: watch::Sender<()>,
) where
    S: tower::Service<Request<Incoming>, Response = axum::response::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    // HTTP/1.1 only: hyper's protocol detection (HTTP/1 or cleartext HTTP/2) reads the first
    // bytes before any timeout runs, so a client that sends nothing would be kept for ever.
    // Proxies in front of the server speak HTTP/1.1 to it, and the WebSocket upgrade needs it.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let hyper_service = TowerToHyperService::new(service);
    let mut connection = pin!(
        builder
            .serve_connection(TokioIo::new(stream), hyper_service)
            .with_upgrades()
    );
    let mut stopping = pin!(stop.closed());
    let mut stop_asked = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%remote, %error, "connection ended");
                }
                return;
            }
            () = &mut stopping, if !stop_asked => {
                stop_asked = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
