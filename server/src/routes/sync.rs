//! `GET /sync`: the automerge-repo WebSocket. Each socket is two loops: frames
//! in go to the hub thread; frames out come from the hub thread.

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use fieldnotes_sync::ConnectionId;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::AppState;
use crate::hub_thread::{Command, OUTGOING_QUEUE, Outgoing};

/// Extra room above the hub's frame limit in the WebSocket layer, so frames a
/// little over the limit get the hub's `error` message rather than a bare
/// transport close. Anything larger is cut off by the transport.
const TRANSPORT_SLACK_BYTES: usize = 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route("/sync", get(upgrade))
}

async fn upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    let limit = state.max_frame_bytes() + TRANSPORT_SLACK_BYTES;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| serve_socket(socket, state))
}

async fn serve_socket(socket: WebSocket, state: AppState) {
    let connection = ConnectionId(state.next_connection_id());
    let (outgoing, mut outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
    if !state
        .hub()
        .send(Command::Connected {
            connection,
            outgoing,
        })
        .await
    {
        return;
    }
    tracing::debug!(connection = connection.0, "connected");
    let (mut sink, mut stream) = socket.split();

    let writer = async move {
        while let Some(out) = outgoing_rx.recv().await {
            match out {
                Outgoing::Frame(frame) => {
                    if sink.send(Message::Binary(frame.into())).await.is_err() {
                        break;
                    }
                }
                Outgoing::Close { code, reason } => {
                    let close = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    break;
                }
            }
        }
        // The hub dropped us (closed, replaced, too slow) or the socket failed.
        let _ = sink.close().await;
    };

    let hub = state.clone();
    let reader = async move {
        while let Some(message) = stream.next().await {
            let frame = match message {
                Ok(Message::Binary(bytes)) => bytes.to_vec(),
                // Protocol "1" is binary; let the hub refuse text as bad input.
                Ok(Message::Text(text)) => text.as_bytes().to_vec(),
                Ok(Message::Close(_)) => break,
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Err(error) => {
                    tracing::debug!(connection = connection.0, %error, "socket error");
                    break;
                }
            };
            if !hub.hub().send(Command::Frame { connection, frame }).await {
                break;
            }
        }
    };

    tokio::select! {
        () = writer => {}
        () = reader => {}
    }
    state.hub().send(Command::Disconnected { connection }).await;
    tracing::debug!(connection = connection.0, "disconnected");
}
