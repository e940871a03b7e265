//! The Fieldnotes sync server: the automerge-repo protocol "1" over a
//! WebSocket at `/sync`, documents in SQLite, the web app as static files.
//!
//! - [`app`] builds the router (tests call it without a socket);
//! - [`run`] serves it on a listener until a shutdown future completes;
//! - [`serve`] is what `fieldnotes serve` does.
//!
//! **Boundary:** all sync logic lives in `fieldnotes-sync`'s hub; this crate
//! only moves frames between sockets and the hub thread and owns SQLite.

pub mod access;
pub mod admin;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod db;
pub mod error;
pub mod export;
pub mod fair_queue;
pub mod http;
pub mod hub_thread;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod migrate;
pub mod routes;
pub mod storage;
#[doc(hidden)]
pub mod test_db;

use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use axum::Router;
use fieldnotes_sync::{HubConfig, PeerId};
use tokio::net::TcpListener;

use crate::cli::{LogFormat, ServeArgs};
use crate::hub_thread::{Command, HubHandle};
use crate::limits::{Limit, Limits, SocketCounts};
use crate::metrics::Metrics;
use crate::storage::{Database, Store};

/// The database file inside `--data-dir`.
pub const DATABASE_FILE: &str = "fieldnotes.sqlite3";
/// The server's peer id on the wire. Clients key sync state on the storage
/// id, which is persisted, so a fixed peer id is enough.
pub const SERVER_PEER_ID: &str = "fieldnotes-server";

/// What the server needs to start, independent of the command line.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `None` keeps the database in memory (tests).
    pub data_dir: Option<PathBuf>,
    /// The database when it is not the SQLite file in `data_dir` (a `postgres://` URL).
    pub database: Option<String>,
    pub web_dir: Option<PathBuf>,
    pub max_frame_bytes: usize,
    /// Mark the session cookie `Secure` (the server is reached over TLS).
    pub secure_cookies: bool,
    /// What one client may cost (`limits`).
    pub limits: Limits,
}

impl ServerOptions {
    pub fn in_memory() -> Self {
        Self {
            data_dir: None,
            database: None,
            web_dir: None,
            max_frame_bytes: fieldnotes_sync::hub::DEFAULT_MAX_FRAME_BYTES,
            secure_cookies: false,
            limits: Limits::default(),
        }
    }
}

/// How often open connections' sessions are checked again, so a revoked
/// session or a disabled user is cut off even while connected. Half the
/// 10 seconds `docs/auth.md` promises, so a slow batch cannot break it.
pub const REVALIDATE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

struct Inner {
    hub: HubHandle,
    metrics: Arc<Metrics>,
    next_connection: AtomicU64,
    web_dir: Option<PathBuf>,
    max_frame_bytes: usize,
    secure_cookies: bool,
    limits: Limits,
    sockets: Arc<SocketCounts>,
    password_hashes: Arc<tokio::sync::Semaphore>,
    /// Where an export opens its own connection (none for an in-memory database).
    export_database: Option<Database>,
    /// One export at a time.
    exports: tokio::sync::Semaphore,
}

/// Shared by every route. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// A random version-4 UUID, the form automerge-repo uses for storage ids.
fn random_uuid() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

impl AppState {
    /// Opens the database and starts the hub thread.
    pub fn open(options: &ServerOptions) -> anyhow::Result<Self> {
        // Opened on a thread of its own: the PostgreSQL client blocks, and this may be called
        // from async code. From then on the store lives on the hub thread.
        let (store, storage_id) = std::thread::scope(|scope| {
            scope
                .spawn(|| Self::open_store(options))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })?;
        Self::start(options, store, storage_id)
    }

    fn open_store(options: &ServerOptions) -> anyhow::Result<(Store, fieldnotes_sync::StorageId)> {
        let mut store = match (&options.database, &options.data_dir) {
            (Some(url), _) => {
                let database = Database::parse(url);
                Store::open_database(&database)
                    .with_context(|| format!("cannot open the database {}", database.describe()))?
            }
            (None, Some(dir)) => {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("cannot create the data directory {}", dir.display())
                })?;
                let path = dir.join(DATABASE_FILE);
                Store::open(&path)
                    .with_context(|| format!("cannot open the database {}", path.display()))?
            }
            (None, None) => Store::open_in_memory()?,
        };
        let fresh = random_uuid()?;
        let storage_id = store.server_storage_id(|| fresh)?;
        Ok((store, storage_id))
    }

    fn start(
        options: &ServerOptions,
        store: Store,
        storage_id: fieldnotes_sync::StorageId,
    ) -> anyhow::Result<Self> {
        tracing::info!(storage_id = %storage_id, "storage ready");
        let mut config = HubConfig::new(PeerId::from(SERVER_PEER_ID), storage_id);
        config.max_frame_bytes = options.max_frame_bytes;
        config.max_open_documents_per_connection = options.limits.open_documents_per_connection;
        config.max_ephemeral_bytes = options.limits.ephemeral_bytes;
        config.ephemeral_per_second = options.limits.ephemeral_per_second;
        let metrics = Arc::new(Metrics::default());
        let hub = HubHandle::spawn(
            store,
            config,
            metrics.clone(),
            options.limits.outgoing_queue_bytes,
        )
        .context("cannot start the hub thread")?;
        Ok(Self {
            inner: Arc::new(Inner {
                hub,
                metrics,
                next_connection: AtomicU64::new(1),
                web_dir: options.web_dir.clone(),
                max_frame_bytes: options.max_frame_bytes,
                secure_cookies: options.secure_cookies,
                limits: options.limits.clone(),
                sockets: Arc::new(SocketCounts::default()),
                password_hashes: Arc::new(tokio::sync::Semaphore::new(
                    options.limits.concurrent_password_hashes.max(1),
                )),
                export_database: match (&options.database, &options.data_dir) {
                    (Some(url), _) => Some(Database::parse(url)),
                    (None, Some(dir)) => Some(Database::Sqlite(dir.join(DATABASE_FILE))),
                    (None, None) => None,
                },
                exports: tokio::sync::Semaphore::new(1),
            }),
        })
    }

    pub fn hub(&self) -> &HubHandle {
        &self.inner.hub
    }
    pub fn export_database(&self) -> Option<&Database> {
        self.inner.export_database.as_ref()
    }
    pub fn exports(&self) -> &tokio::sync::Semaphore {
        &self.inner.exports
    }
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    pub fn max_frame_bytes(&self) -> usize {
        self.inner.max_frame_bytes
    }
    pub fn secure_cookies(&self) -> bool {
        self.inner.secure_cookies
    }
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }
    pub fn sockets(&self) -> &Arc<SocketCounts> {
        &self.inner.sockets
    }
    /// Waits for one of the password hashes that may run at once; `None` when the server is
    /// too busy to start another within the limit's wait.
    pub async fn password_hash_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let wait = self.inner.limits.password_hash_wait;
        let permits = self.inner.password_hashes.clone();
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        self.metrics().limit_hits.hit(Limit::PasswordHashes);
        tokio::time::timeout(wait, permits.acquire_owned())
            .await
            .ok()?
            .ok()
    }
    /// Checks every open connection's session now (after a sign-out).
    pub async fn revalidate_now(&self) {
        self.hub().send(Command::Revalidate).await;
    }
    fn next_connection_id(&self) -> u64 {
        self.inner.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// A new first-run setup token while no administrator exists.
    pub async fn setup_token(&self) -> anyhow::Result<Option<String>> {
        self.hub()
            .db(|store| auth::new_setup_token(store.db_mut()))
            .await
            .context("the hub thread has stopped")?
            .context("cannot create the setup link")
    }
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    let web_dir = state.inner.web_dir.clone().filter(|dir| dir.is_dir());
    let router = Router::new()
        .merge(routes::sync::router())
        .merge(routes::api::router())
        .merge(routes::export::router())
        .merge(routes::health::router())
        .merge(routes::metrics::router())
        .with_state(state);
    let router = match web_dir {
        Some(dir) => router.fallback_service(routes::web::router(&dir)),
        None => router.fallback(|| async { error::ApiError::not_found() }),
    };
    router.layer(axum::middleware::from_fn(routes::headers::security_headers))
}

/// Serves until `shutdown` completes, then stops accepting, commits what the
/// hub has pending, closes every socket and waits for the hub thread.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let hub_state = state.clone();
    let ticker_state = state.clone();
    let ticker = tokio::spawn(async move {
        let mut interval = tokio::time::interval(REVALIDATE_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            ticker_state.revalidate_now().await;
        }
    });
    let header_read_timeout = state.limits().header_read_timeout;
    http::serve(
        listener,
        app(state.clone()),
        header_read_timeout,
        async move {
            shutdown.await;
            tracing::info!("shutting down: finishing writes and closing sockets");
            hub_state.hub().shutdown().await;
        },
    )
    .await;
    ticker.abort();
    state.hub().shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// The log filter: `RUST_LOG`, or `info`. automerge's own spans are kept at `warn` unless
/// `RUST_LOG` names automerge: it opens an INFO span on every `load_changes` that formats the
/// whole change graph (every hash in hex) as a field, which cost about a sixth of the server's
/// CPU under live load, for a span nobody reads.
fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    let directives = rust_log.unwrap_or("info");
    let filter = tracing_subscriber::EnvFilter::try_new(directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if directives.contains("automerge") {
        filter
    } else {
        filter.add_directive("automerge=warn".parse().expect("a valid directive"))
    }
}

fn init_tracing(format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = log_filter(rust_log.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// `fieldnotes serve`: prints exactly one line, `listening on http://ADDR`,
/// to stdout once bound; everything else goes to stderr.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    // automerge panics on some damaged chunks; the input guard's trial decode catches those as
    // refusals, and they are not worth a line on stderr each.
    fieldnotes_sync::guard::quiet_trial_panics();
    let options = ServerOptions {
        data_dir: Some(args.data_dir.clone()),
        database: args.database.clone(),
        web_dir: Some(args.web_dir.clone()),
        max_frame_bytes: fieldnotes_sync::hub::DEFAULT_MAX_FRAME_BYTES,
        secure_cookies: args.secure_cookies,
        limits: args.limits.limits(),
    };
    let state = AppState::open(&options)?;
    if !args.web_dir.is_dir() {
        tracing::info!(web_dir = %args.web_dir.display(), "no web app directory; serving the API only");
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{address}")?;
        stdout.flush()?;
    }
    if let Some(token) = state.setup_token().await? {
        // On stdout, not in the logs: the link is a secret for whoever
        // started the server.
        let base = args
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{address}"));
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "setup: open {}/#/setup/{token} to create the first administrator and their team",
            base.trim_end_matches('/')
        )?;
        stdout.flush()?;
    }
    tracing::info!(%address, data_dir = %args.data_dir.display(), "serving");
    run(listener, state, shutdown_signal()).await
}

#[cfg(test)]
mod log_filter_tests {
    use super::log_filter;

    #[test]
    fn automerge_spans_stay_off_unless_rust_log_asks_for_them() {
        for rust_log in [None, Some("info"), Some("debug,tower_http=warn")] {
            let filter = log_filter(rust_log).to_string();
            assert!(filter.contains("automerge=warn"), "{rust_log:?}: {filter}");
        }
        let asked = log_filter(Some("info,automerge=trace")).to_string();
        assert!(!asked.contains("automerge=warn"), "{asked}");
        assert!(asked.contains("automerge=trace"), "{asked}");
    }
}
