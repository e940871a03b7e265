//! The hub's home: one OS thread that owns the [`Hub`] and its SQLite
//! connection. Socket tasks queue their events in their user's lane of a [`FairQueue`]; the
//! thread takes up to 512 of them into one batch (one per user in turn), commits once, then
//! sends.
//!
//! **Invariant:** frames leave for the sockets only after `Hub::finish_batch`
//! has committed the batch they answer.
//!
//! **Supervision:** the hub catches a panic in one frame itself (it closes that connection
//! and keeps nothing of the frame). This thread catches the rest: a panicking database job
//! fails only its own request, a panicking batch is rolled back and its connections closed
//! as after a storage failure. Either is logged and counted (`fieldnotes_panics_caught_total`);
//! the thread keeps serving everyone else.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use fieldnotes_sync::hub::ProtocolViolation;
use fieldnotes_sync::{CloseReason, ConnectionId, Effect, Hub, HubConfig};
use tokio::sync::{mpsc, oneshot};

use crate::access::{Principal, TeamPolicy};
use crate::fair_queue::{FairQueue, UserLane};
use crate::limits::Limit;
use crate::metrics::Metrics;
use crate::storage::Store;

type ServerHub = Hub<Store, TeamPolicy>;

/// Work on the database connection, run between batches (never inside one).
pub type DbJob = Box<dyn FnOnce(&mut Store) + Send>;

/// Frames a socket may have queued before it counts as too slow and is closed.
pub const OUTGOING_QUEUE: usize = 4096;
/// Commands drained into one batch at most, so one busy moment cannot delay
/// every reply behind an unbounded transaction.
const MAX_BATCH: usize = 512;

pub use fieldnotes_sync::protocol::SIGNED_OUT_CLOSE_CODE;

/// What a socket task is told to do.
#[derive(Debug)]
pub enum Outgoing {
    Frame(Vec<u8>),
    /// A WebSocket ping, from the socket's own keepalive.
    Ping,
    Close {
        code: u16,
        reason: &'static str,
    },
}

/// How the hub thread reaches one socket's writer.
pub struct SocketHandle {
    pub frames: mpsc::Sender<Outgoing>,
    /// Bytes of frames handed to the writer and not yet written to the socket.
    pub queued_bytes: Arc<AtomicUsize>,
    /// Ends the socket at once with this close, even while the writer waits on a client that
    /// does not read.
    pub abort: Option<oneshot::Sender<Outgoing>>,
}

impl SocketHandle {
    fn abort(&mut self, close: Outgoing) {
        if let Some(abort) = self.abort.take() {
            let _ = abort.send(close);
        }
    }
}

/// The close for a client that does not read what it is sent.
const TOO_SLOW: Outgoing = Outgoing::Close {
    code: 1013,
    reason: "too slow to read; reconnect",
};

pub enum Command {
    Connected {
        connection: ConnectionId,
        principal: Principal,
        socket: SocketHandle,
    },
    Frame {
        connection: ConnectionId,
        frame: Vec<u8>,
    },
    Disconnected {
        connection: ConnectionId,
    },
    HealthCheck {
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Sign-in and admin work on the database.
    Db(DbJob),
    /// Check every connection's session again and close those that ended.
    Revalidate,
    /// Another instance committed changes to this document (`None`: perhaps to any), so the
    /// copy in memory, if any, takes them in from the database and pushes them to its peers.
    StoredElsewhere(Option<fieldnotes_sync::DocumentId>),
    Shutdown,
}

/// The handle socket tasks and routes use to reach the hub thread.
pub struct HubHandle {
    queue: Arc<FairQueue<Command>>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl HubHandle {
    /// Starts the hub thread.
    pub fn spawn(
        store: Store,
        config: HubConfig,
        metrics: Arc<Metrics>,
        outgoing_queue_bytes: usize,
    ) -> std::io::Result<Self> {
        let queue = Arc::new(FairQueue::default());
        if let Some((url, instance)) = store.listen_target() {
            crate::listen::spawn(url, instance, queue.clone())?;
        }
        let hub = Hub::new(store, config).with_access_policy(TeamPolicy::default());
        let inbox = queue.clone();
        let thread = std::thread::Builder::new()
            .name("fieldnotes-hub".into())
            .spawn(move || {
                run(
                    hub,
                    &inbox,
                    Shell {
                        metrics,
                        outgoing_queue_bytes,
                    },
                );
                // Nothing is taken any more: say so to whoever sends next.
                inbox.close();
            })?;
        Ok(Self {
            queue,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Sends control work (not a socket's event); false when the hub has stopped.
    pub async fn send(&self, command: Command) -> bool {
        self.queue.push_control(command)
    }

    /// The queue lane of a user's sockets: their events are served in turn with everyone
    /// else's (see [`FairQueue`]).
    pub fn lane(&self, user: &str) -> UserLane {
        self.queue.lane(user)
    }

    /// Queues a socket's event in its user's lane, waiting while the lane is full; false when
    /// the hub has stopped.
    pub async fn send_from(&self, lane: &UserLane, command: Command) -> bool {
        self.queue.push_user(lane, command).await
    }

    /// Runs a query on the hub's database connection.
    pub async fn health_check(&self) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Command::HealthCheck { reply }).await {
            return Err("hub thread has stopped".into());
        }
        answer
            .await
            .unwrap_or_else(|_| Err("hub thread dropped the health check".into()))
    }

    /// Runs `job` on the database between batches and returns its answer;
    /// `None` when the hub has stopped.
    pub async fn db<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Store) -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        let job: DbJob = Box::new(move |store| {
            let _ = reply.send(job(store));
        });
        if !self.send(Command::Db(job)).await {
            return None;
        }
        answer.await.ok()
    }

    /// Commits what is pending, closes every socket and waits for the thread.
    pub async fn shutdown(&self) {
        self.queue.push_control(Command::Shutdown);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn close_for(reason: &CloseReason) -> Outgoing {
    match reason {
        CloseReason::Protocol(ProtocolViolation::FrameTooLarge { .. }) => Outgoing::Close {
            code: 1009,
            reason: "frame too large",
        },
        CloseReason::Protocol(_) => Outgoing::Close {
            code: 1008,
            reason: "protocol error",
        },
        CloseReason::Replaced => Outgoing::Close {
            code: 1000,
            reason: "replaced by a newer connection",
        },
        CloseReason::StorageFailure => Outgoing::Close {
            code: 1011,
            reason: "storage failure, reconnect",
        },
        CloseReason::AccessRevoked => Outgoing::Close {
            code: SIGNED_OUT_CLOSE_CODE,
            reason: "signed out",
        },
        CloseReason::InternalError => Outgoing::Close {
            code: 1011,
            reason: "internal error, reconnect",
        },
    }
}

/// What the hub thread needs besides the hub.
struct Shell {
    metrics: Arc<Metrics>,
    outgoing_queue_bytes: usize,
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

fn run(mut hub: ServerHub, inbox: &FairQueue<Command>, shell: Shell) {
    let metrics = &shell.metrics;
    let mut sockets: HashMap<ConnectionId, SocketHandle> = HashMap::new();
    let mut shutting_down = false;
    let mut panics_seen = 0;
    loop {
        let batch = inbox.next_batch(MAX_BATCH);
        if batch.is_empty() {
            return;
        }
        // A lost PostgreSQL connection is replaced before the batch uses it.
        hub.store_mut().reconnect_if_lost();
        let started = Instant::now();
        let mut health_checks = Vec::new();
        let mut db_jobs = Vec::new();
        let mut revalidate = false;
        // Each event's place in its user's lane is given back as soon as it was handled.
        for queued in batch {
            let command = queued.item;
            match command {
                Command::Connected { socket, .. } if shutting_down => {
                    let _ = socket.frames.try_send(Outgoing::Close {
                        code: 1001,
                        reason: "server shutting down",
                    });
                }
                Command::Connected {
                    connection,
                    principal,
                    socket,
                } => {
                    sockets.insert(connection, socket);
                    hub.access_mut().admit(connection, principal);
                    hub.handle_connected(connection);
                }
                Command::Frame { connection, frame } => {
                    hub.handle_frame(connection, &frame, crate::auth::now_ms())
                }
                Command::Disconnected { connection } => {
                    sockets.remove(&connection);
                    hub.handle_disconnected(connection);
                }
                Command::HealthCheck { reply } => health_checks.push(reply),
                Command::Db(job) => db_jobs.push(job),
                Command::Revalidate => revalidate = true,
                Command::StoredElsewhere(Some(document)) => {
                    hub.stored_elsewhere(document);
                }
                Command::StoredElsewhere(None) => {
                    for document in hub.documents_in_use() {
                        hub.stored_elsewhere(document);
                    }
                }
                Command::Shutdown => shutting_down = true,
            }
        }

        let effects = match panic::catch_unwind(AssertUnwindSafe(|| hub.finish_batch())) {
            Ok(effects) => effects,
            Err(payload) => {
                metrics.hub_thread_panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    panic = panic_text(payload.as_ref()),
                    "finishing a batch panicked; closing every connection"
                );
                close_everything(&mut hub, &mut sockets);
                Vec::new()
            }
        };
        metrics.observe_commit(started.elapsed());
        if hub.counters().panics_caught > panics_seen {
            panics_seen = hub.counters().panics_caught;
            tracing::error!(
                panic = hub.last_panic().unwrap_or_default(),
                "handling a frame panicked; closed that connection and kept nothing of the frame"
            );
        }
        carry_out(&mut hub, &mut sockets, effects, &shell);

        // Between batches: no transaction is open.
        for reply in health_checks {
            let _ = reply.send(hub.store_mut().ping().map_err(|e| e.to_string()));
        }
        for job in db_jobs {
            // A job that panics drops its reply, so its request fails alone.
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| job(hub.store_mut()))) {
                metrics.hub_thread_panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    panic = panic_text(payload.as_ref()),
                    "a database job panicked"
                );
            }
        }
        if revalidate {
            let (policy, store) = hub.access_and_store_mut();
            match policy.revalidate(store) {
                Ok(ended) if !ended.is_empty() => {
                    for connection in ended {
                        tracing::info!(connection = connection.0, "session ended; closing");
                        hub.revoke(connection);
                    }
                    // Nothing to commit: this only hands out the closes.
                    let effects = hub.finish_batch();
                    carry_out(&mut hub, &mut sockets, effects, &shell);
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "cannot check sessions"),
            }
        }
        metrics.set_hub_counters(hub.counters());
        metrics
            .connections
            .store(hub.connection_count() as u64, Ordering::Relaxed);
        metrics
            .documents_loaded
            .store(hub.loaded_document_count() as u64, Ordering::Relaxed);

        if shutting_down {
            for (connection, socket) in sockets.drain() {
                let _ = socket.frames.try_send(Outgoing::Close {
                    code: 1001,
                    reason: "server shutting down",
                });
                hub.handle_disconnected(connection);
            }
            inbox.close();
            tracing::info!("hub stopped; all batches committed");
            return;
        }
    }
}

/// After a panic the hub could not contain: nothing of the batch is kept, every connection
/// closes, and every client reconnects to what is stored.
fn close_everything(hub: &mut ServerHub, sockets: &mut HashMap<ConnectionId, SocketHandle>) {
    hub.reset();
    for (_, mut socket) in sockets.drain() {
        socket.abort(close_for(&CloseReason::InternalError));
    }
}

/// Hands a committed batch's effects to the sockets.
fn carry_out(
    hub: &mut ServerHub,
    sockets: &mut HashMap<ConnectionId, SocketHandle>,
    effects: Vec<Effect>,
    shell: &Shell,
) {
    if let Some(error) = hub.last_storage_error().filter(|_| {
        effects.iter().any(|e| {
            matches!(
                e,
                Effect::Close {
                    reason: CloseReason::StorageFailure,
                    ..
                }
            )
        })
    }) {
        tracing::error!(%error, "batch could not be stored; closing the connections involved");
    }
    for effect in effects {
        match effect {
            Effect::Send { connection, frame } => {
                let Some(socket) = sockets.get_mut(&connection) else {
                    continue;
                };
                let length = frame.len();
                let queued = socket.queued_bytes.fetch_add(length, Ordering::Relaxed) + length;
                let fits = queued <= shell.outgoing_queue_bytes
                    && socket.frames.try_send(Outgoing::Frame(frame)).is_ok();
                if !fits {
                    // The client is not reading. Dropping a frame would break the sync
                    // protocol, so close it; it syncs again from the store when it is back.
                    tracing::warn!(
                        connection = connection.0,
                        queued,
                        "closing a connection that does not read"
                    );
                    shell
                        .metrics
                        .slow_consumer_closes
                        .fetch_add(1, Ordering::Relaxed);
                    shell.metrics.limit_hits.hit(Limit::OutgoingQueue);
                    socket.abort(TOO_SLOW);
                    sockets.remove(&connection);
                    hub.handle_disconnected(connection);
                }
            }
            Effect::Close { connection, reason } => {
                match &reason {
                    CloseReason::Protocol(violation) => {
                        tracing::info!(connection = connection.0, %violation, "closing connection after bad input")
                    }
                    other => {
                        tracing::info!(connection = connection.0, reason = ?other, "closing connection")
                    }
                }
                if let Some(mut socket) = sockets.remove(&connection)
                    && socket.frames.try_send(close_for(&reason)).is_err()
                {
                    socket.abort(close_for(&reason));
                }
            }
        }
    }
}
