//! The hub's home: one OS thread that owns the [`Hub`] and its SQLite
//! connection. Socket tasks send it commands over a bounded channel; it drains
//! every command waiting into one batch, commits once, then sends.
//!
//! **Invariant:** frames leave for the sockets only after `Hub::finish_batch`
//! has committed the batch they answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use fieldnotes_sync::hub::ProtocolViolation;
use fieldnotes_sync::{CloseReason, ConnectionId, Effect, Hub, HubConfig};
use tokio::sync::{mpsc, oneshot};

use crate::access::{Principal, TeamPolicy};
use crate::metrics::Metrics;
use crate::storage::SqliteStore;

type ServerHub = Hub<SqliteStore, TeamPolicy>;

/// Work on the database connection, run between batches (never inside one).
pub type DbJob = Box<dyn FnOnce(&mut SqliteStore) + Send>;

/// Frames a socket may have queued before it counts as too slow and is closed.
pub const OUTGOING_QUEUE: usize = 4096;
/// Commands drained into one batch at most, so one busy moment cannot delay
/// every reply behind an unbounded transaction.
const MAX_BATCH: usize = 512;

/// The close code for a connection whose session ended (revoked, expired,
/// user disabled): the client should ask the rep to sign in again.
pub const SIGNED_OUT_CLOSE_CODE: u16 = 4401;

/// What a socket task is told to do.
#[derive(Debug)]
pub enum Outgoing {
    Frame(Vec<u8>),
    Close { code: u16, reason: &'static str },
}

pub enum Command {
    Connected {
        connection: ConnectionId,
        principal: Principal,
        outgoing: mpsc::Sender<Outgoing>,
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
    Shutdown,
}

/// The handle socket tasks and routes use to reach the hub thread.
pub struct HubHandle {
    commands: mpsc::Sender<Command>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl HubHandle {
    /// Starts the hub thread.
    pub fn spawn(
        store: SqliteStore,
        config: HubConfig,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let (commands, receiver) = mpsc::channel(1024);
        let hub = Hub::new(store, config).with_access_policy(TeamPolicy::default());
        let thread = std::thread::Builder::new()
            .name("fieldnotes-hub".into())
            .spawn(move || run(hub, receiver, metrics))?;
        Ok(Self {
            commands,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Sends a command; false when the hub has stopped.
    pub async fn send(&self, command: Command) -> bool {
        self.commands.send(command).await.is_ok()
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
        job: impl FnOnce(&mut SqliteStore) -> T + Send + 'static,
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
        let _ = self.commands.send(Command::Shutdown).await;
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
    }
}

fn run(mut hub: ServerHub, mut commands: mpsc::Receiver<Command>, metrics: Arc<Metrics>) {
    let mut sockets: HashMap<ConnectionId, mpsc::Sender<Outgoing>> = HashMap::new();
    let mut shutting_down = false;
    while let Some(first) = commands.blocking_recv() {
        let started = Instant::now();
        let mut health_checks = Vec::new();
        let mut db_jobs = Vec::new();
        let mut revalidate = false;
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(command) = next.take() {
            handled += 1;
            match command {
                Command::Connected {
                    connection,
                    principal,
                    outgoing,
                } => {
                    if shutting_down {
                        let _ = outgoing.try_send(Outgoing::Close {
                            code: 1001,
                            reason: "server shutting down",
                        });
                        continue;
                    }
                    sockets.insert(connection, outgoing);
                    hub.access_mut().admit(connection, principal);
                    hub.handle_connected(connection);
                }
                Command::Frame { connection, frame } => {
                    hub.handle_frame(connection, &frame, now_ms())
                }
                Command::Disconnected { connection } => {
                    sockets.remove(&connection);
                    hub.handle_disconnected(connection);
                }
                Command::HealthCheck { reply } => health_checks.push(reply),
                Command::Db(job) => db_jobs.push(job),
                Command::Revalidate => revalidate = true,
                Command::Shutdown => shutting_down = true,
            }
            if handled < MAX_BATCH && !shutting_down {
                next = commands.try_recv().ok();
            }
        }

        let effects = hub.finish_batch();
        metrics.observe_commit(started.elapsed());
        carry_out(&mut hub, &mut sockets, effects, &metrics);

        // Between batches: no transaction is open.
        for reply in health_checks {
            let _ = reply.send(hub.store_mut().ping().map_err(|e| e.to_string()));
        }
        for job in db_jobs {
            job(hub.store_mut());
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
                    carry_out(&mut hub, &mut sockets, effects, &metrics);
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
                let _ = socket.try_send(Outgoing::Close {
                    code: 1001,
                    reason: "server shutting down",
                });
                hub.handle_disconnected(connection);
            }
            tracing::info!("hub stopped; all batches committed");
            return;
        }
    }
}

/// Hands a committed batch's effects to the sockets.
fn carry_out(
    hub: &mut ServerHub,
    sockets: &mut HashMap<ConnectionId, mpsc::Sender<Outgoing>>,
    effects: Vec<Effect>,
    metrics: &Metrics,
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
                let Some(socket) = sockets.get(&connection) else {
                    continue;
                };
                if socket.try_send(Outgoing::Frame(frame)).is_err() {
                    // Full queue: the client is not reading. Dropping a
                    // frame would break the sync protocol, so close it.
                    tracing::warn!(
                        connection = connection.0,
                        "closing a connection that does not read"
                    );
                    metrics.slow_consumer_closes.fetch_add(1, Ordering::Relaxed);
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
                if let Some(socket) = sockets.remove(&connection) {
                    let _ = socket.try_send(close_for(&reason));
                }
            }
        }
    }
}
