//! `GET /sync`: the automerge-repo WebSocket. Each socket is two loops: frames
//! in go to the hub thread; frames out come from the hub thread.

use std::collections::HashMap;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fieldnotes_sync::ConnectionId;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::AppState;
use crate::access::Principal;
use crate::hub_thread::{Command, OUTGOING_QUEUE, Outgoing};
use crate::routes::api::{ApiError, session_of};

/// Extra room above the hub's frame limit in the WebSocket layer, so frames a
/// little over the limit get the hub's `error` message rather than a bare
/// transport close. Anything larger is cut off by the transport.
const TRANSPORT_SLACK_BYTES: usize = 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route("/sync", get(upgrade))
}

/// Only signed-in users get a socket: 401 without a live session, 403 for a
/// `team` the user is not in. The socket is bound to that session.
async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let session = match session_of(&state, &headers).await {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    let teams = session.team_ids();
    let claim_team = match query.get("team") {
        Some(team) if teams.contains(team) => team.clone(),
        Some(_) => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "You are not a member of that team. Sign out and in again to refresh your teams.",
            )
            .into_response();
        }
        None => match session.info.teams.first() {
            Some(team) => team.id.clone(),
            None => {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "You are not in any team yet. Ask your manager to add you to one.",
                )
                .into_response();
            }
        },
    };
    let principal = Principal {
        session: session.token_hash,
        user_id: session.info.user.id.clone(),
        teams,
        claim_team,
    };
    let limit = state.max_frame_bytes() + TRANSPORT_SLACK_BYTES;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| serve_socket(socket, state, principal))
}

async fn serve_socket(socket: WebSocket, state: AppState, principal: Principal) {
    let connection = ConnectionId(state.next_connection_id());
    let (outgoing, mut outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
    if !state
        .hub()
        .send(Command::Connected {
            connection,
            principal,
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
