//! `GET /sync`: the automerge-repo WebSocket. Each socket is three loops: frames in go to
//! the hub thread, paced to the connection's rate limits; frames out come from the hub thread
//! (which may abort a socket that does not read); a keepalive pings the client and closes a
//! socket that has said nothing for the idle timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fieldnotes_sync::ConnectionId;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::AppState;
use crate::access::Principal;
use crate::hub_thread::{Command, OUTGOING_QUEUE, Outgoing, SocketHandle};
use crate::limits::{Limit, RateLimiter, SocketSlot};
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
    let Some(slot) = state
        .sockets()
        .open(&session.info.user.id, state.limits().sockets_per_user)
    else {
        state.metrics().limit_hits.hit(Limit::SocketsPerUser);
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "This account has {} connections to Fieldnotes open already. Close the app on your other phones or tabs, then try again.",
                state.limits().sockets_per_user
            ),
        )
        .into_response();
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
        .on_upgrade(move |socket| serve_socket(socket, state, principal, slot))
}

/// Milliseconds since `epoch`, for the idle check shared by the reader and the keepalive.
fn millis_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

async fn serve_socket(socket: WebSocket, state: AppState, principal: Principal, slot: SocketSlot) {
    let connection = ConnectionId(state.next_connection_id());
    let lane = state.hub().lane(&principal.user_id);
    let (outgoing, mut outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
    let (abort, mut abort_rx) = oneshot::channel::<Outgoing>();
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let pings = outgoing.clone();
    if !state
        .hub()
        .send_from(
            &lane,
            Command::Connected {
                connection,
                principal,
                socket: SocketHandle {
                    frames: outgoing,
                    queued_bytes: queued_bytes.clone(),
                    abort: Some(abort),
                },
            },
        )
        .await
    {
        return;
    }
    tracing::debug!(connection = connection.0, "connected");
    let (mut sink, mut stream) = socket.split();

    let writer = async move {
        // Whether the hub may still abort us. It drops the sender when it forgets the socket;
        // what was queued before that still goes out.
        let mut abortable = true;
        let abort_close = loop {
            let out = tokio::select! {
                biased;
                abort = &mut abort_rx, if abortable => match abort {
                    Ok(close) => break Some(close),
                    Err(_) => {
                        abortable = false;
                        continue;
                    }
                },
                out = outgoing_rx.recv() => out,
            };
            let (message, length) = match out {
                Some(Outgoing::Frame(frame)) => {
                    let length = frame.len();
                    (Message::Binary(frame.into()), length)
                }
                Some(Outgoing::Ping) => (Message::Ping(Default::default()), 0),
                Some(close @ Outgoing::Close { .. }) => {
                    send_close(&mut sink, close).await;
                    break None;
                }
                None => break None,
            };
            // A client that does not read blocks this send; the hub's abort must still get
            // through, so wait for either.
            let sent = {
                let send = sink.send(message);
                tokio::pin!(send);
                loop {
                    tokio::select! {
                        biased;
                        abort = &mut abort_rx, if abortable => match abort {
                            Ok(close) => break Err(close),
                            Err(_) => abortable = false,
                        },
                        sent = &mut send => break Ok(sent),
                    }
                }
            };
            queued_bytes.fetch_sub(length, Ordering::Relaxed);
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break None,
                Err(close) => break Some(close),
            }
        };
        if let Some(close) = abort_close {
            // The client does not read, so even the close may not get through.
            let _ = tokio::time::timeout(ABORT_CLOSE_WAIT, send_close(&mut sink, close)).await;
        }
        // The hub dropped us (closed, replaced, too slow) or the socket failed.
        let _ = tokio::time::timeout(ABORT_CLOSE_WAIT, sink.close()).await;
    };

    let epoch = Instant::now();
    let last_heard = Arc::new(AtomicU64::new(0));
    let heard = last_heard.clone();
    let hub = state.clone();
    let reader_lane = lane.clone();
    let reader = async move {
        let mut rate = RateLimiter::new(hub.limits(), hub.max_frame_bytes(), Instant::now());
        while let Some(message) = stream.next().await {
            heard.store(millis_since(epoch), Ordering::Relaxed);
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
            let throttle = rate.frame(frame.len(), Instant::now());
            if let Some(limit) = throttle.limit {
                // Not reading for a while lets TCP slow the client down; nothing is lost.
                hub.metrics().limit_hits.hit(limit);
                tokio::time::sleep(throttle.wait).await;
            }
            if !hub
                .hub()
                .send_from(&reader_lane, Command::Frame { connection, frame })
                .await
            {
                break;
            }
        }
    };

    let idle_timeout = state.limits().idle_timeout;
    let keepalive = async move {
        let mut ticks = tokio::time::interval(idle_timeout / 3);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let silent_for = millis_since(epoch).saturating_sub(last_heard.load(Ordering::Relaxed));
            if silent_for > idle_timeout.as_millis() as u64 {
                return;
            }
            // A full queue already means the client is slow; that has its own limit.
            let _ = pings.try_send(Outgoing::Ping);
        }
    };

    tokio::select! {
        () = writer => {}
        () = reader => {}
        () = keepalive => {
            state.metrics().limit_hits.hit(Limit::IdleTimeout);
            tracing::debug!(connection = connection.0, "no answer to pings; closing");
        }
    }
    state
        .hub()
        .send_from(&lane, Command::Disconnected { connection })
        .await;
    drop(slot);
    tracing::debug!(connection = connection.0, "disconnected");
}

/// How long the close frame for an aborted socket may take to go out.
const ABORT_CLOSE_WAIT: Duration = Duration::from_secs(1);

async fn send_close(sink: &mut SplitSink<WebSocket, Message>, close: Outgoing) {
    if let Outgoing::Close { code, reason } = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
}
