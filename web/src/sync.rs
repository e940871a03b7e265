//! Syncing with the team's server: the browser shell around the sans-IO client engine
//! (`fieldnotes_sync::client`).
//!
//! - Connects by itself at start, on the `online` event, when the tab regains focus or becomes
//!   visible, and on "Sync now"; after a failure it retries with exponential backoff (1 s doubling
//!   to 30 s, with jitter). Safari has no Background Sync, so these moments are the ones a phone
//!   gives us.
//! - Never blocks typing: edits go to the repo and IndexedDB first; the engine only reads the
//!   documents when a socket is open.
//! - The server's sync states are saved per document (one record, `sync-states`) in the same
//!   IndexedDB transaction as the changes they describe, so after a reload or days offline the
//!   first exchange sends only what changed, and a saved state never claims changes the device
//!   did not keep.
//! - Sign-in: the socket carries the session cookie. The browser does not say why an upgrade
//!   failed, so when a socket closes before it opened, or with code 4401 ("signed out"), the
//!   shell asks `GET /api/session`. A 401 stops reconnecting (local edits stay in IndexedDB and
//!   keep counting as waiting) until the rep signs in again ([`SyncHandle::resume`]); no answer
//!   at all is only "offline", with the usual backoff.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::{Rc, Weak};

use automerge::{AutoCommit, Automerge};
use fieldnotes_sync::DocumentId;
use fieldnotes_sync::client::{
    Client, ClientConfig, ClientEvent, ConnectionState, DocumentSet, SyncTarget,
};
use fieldnotes_sync::protocol::{PeerId, StorageId};
use gloo_timers::callback::Timeout;
use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};
use yew::Callback;

use crate::api::{self, ApiError};
use crate::idb::{Idb, StorageError, document_bytes};
use crate::platform::{now_millis, online, random_bytes, sync_url};
use crate::repo::{Repo, SharedRepo, flush};
use crate::state::{Action, SyncPhase, SyncStatus};

const STORAGE_ID_KEY: &str = "storage-id";
const SYNC_STATES_KEY: &str = "sync-states";
const FIRST_RETRY_SECONDS: u32 = 1;
const MAX_RETRY_SECONDS: u32 = 30;
/// The close code the server uses when a session is revoked or expires.
const SIGNED_OUT_CLOSE_CODE: u16 = 4401;

/// Why the shell does not try to connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Halt {
    /// The server says this browser's session is over: wait for a new sign-in.
    SignedOut,
    /// Signed in, but no longer a member of this team.
    NotInTeam,
    /// The app stopped this handle (sign-out, team switch).
    Stopped,
}

impl DocumentSet for Repo {
    type Document = AutoCommit;

    fn document_mut(&mut self, id: &DocumentId) -> Option<&mut AutoCommit> {
        Some(Repo::document_mut(self, &id.to_string()))
    }
}

#[derive(Clone)]
pub struct SyncHandle {
    inner: Rc<RefCell<Inner>>,
}

struct Inner {
    repo: SharedRepo,
    dispatch: Callback<Action>,
    client: Client,
    /// The team whose documents this connection syncs (`/sync?team=`).
    team: String,
    socket: Option<Socket>,
    /// Whether the current socket opened (a socket that closes unopened may mean "signed out").
    socket_opened: bool,
    halt: Option<Halt>,
    /// A `GET /api/session` is in flight.
    checking_session: bool,
    retry: Option<Timeout>,
    retry_seconds: u32,
    last_failure: Option<String>,
    /// The server these sync states belong to.
    server_storage_id: Option<String>,
    /// Local changes the server has not acknowledged, per document.
    pending: BTreeMap<DocumentId, usize>,
    /// Documents the server says it does not have (not counted as still to download).
    unavailable: BTreeSet<DocumentId>,
    /// Accounts the directory lists that have not arrived yet, and how many it lists (those
    /// the server has). Recounted when remote changes settle (it reads the whole directory),
    /// not on every local keystroke.
    accounts_to_fetch: usize,
    accounts_listed: usize,
    last_synced_millis: Option<i64>,
    /// Work gathered while frames arrive, done once per burst by `settle` (rehydrating,
    /// re-rendering and saving after every frame made a new device's first sync quadratic).
    changed: BTreeSet<DocumentId>,
    recount: BTreeSet<DocumentId>,
    settle: Option<Timeout>,
    /// The phase last reported.
    phase: SyncPhase,
    states_dirty: bool,
    self_ref: Weak<RefCell<Inner>>,
}

/// An open socket and the closures that must live as long as it does.
struct Socket {
    socket: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        let _ = self.socket.close();
    }
}

impl SyncHandle {
    pub async fn start(
        repo: SharedRepo,
        idb: Idb,
        team: String,
        dispatch: Callback<Action>,
    ) -> SyncHandle {
        // A durable id for this device's storage, so the server keeps its sync state for us.
        let storage_id = match idb.meta(STORAGE_ID_KEY).await {
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => {
                let id = hex(&random_bytes::<16>());
                repo.borrow_mut()
                    .put_meta(STORAGE_ID_KEY.into(), id.clone().into_bytes());
                id
            }
        };
        let saved = idb
            .meta(SYNC_STATES_KEY)
            .await
            .ok()
            .flatten()
            .and_then(|bytes| SavedStates::decode(&bytes))
            .unwrap_or_default();
        let client = Client::new(ClientConfig {
            peer_id: PeerId::new(format!("fieldnotes-{}", hex(&random_bytes::<8>()))),
            storage_id: Some(StorageId::new(storage_id)),
            is_ephemeral: false,
            ephemeral_session_id: hex(&random_bytes::<8>()),
        });
        let inner = Rc::new_cyclic(|self_ref| {
            RefCell::new(Inner {
                repo,
                dispatch,
                client,
                team,
                socket: None,
                socket_opened: false,
                halt: None,
                checking_session: false,
                retry: None,
                retry_seconds: FIRST_RETRY_SECONDS,
                last_failure: None,
                server_storage_id: saved.server.clone(),
                pending: BTreeMap::new(),
                unavailable: BTreeSet::new(),
                accounts_to_fetch: 0,
                accounts_listed: 0,
                last_synced_millis: saved.last_synced_millis,
                changed: BTreeSet::new(),
                recount: BTreeSet::new(),
                settle: None,
                phase: SyncPhase::Connecting,
                states_dirty: false,
                self_ref: self_ref.clone(),
            })
        });
        {
            let mut this = inner.borrow_mut();
            this.open_documents(&saved.states);
            this.recount_all();
            this.recount_accounts_to_fetch();
            this.connect();
        }
        SyncHandle { inner }
    }

    /// The rep changed something: offer it to the server now if connected.
    pub fn local_change(&self) {
        let mut this = self.inner.borrow_mut();
        let changed = this.repo.borrow_mut().take_changed_locally();
        // `sync_document` opens a document it does not know yet (a new account).
        for id in changed {
            if let Ok(document_id) = DocumentId::parse(&id) {
                let repo = this.repo.clone();
                let mut repo = repo.borrow_mut();
                let doc = Repo::document_mut(&mut repo, &id);
                this.client.sync_document(document_id, doc);
                let pending = this.client.pending_change_count(&document_id, doc);
                this.pending.insert(document_id, pending);
            }
        }
        this.send_queued();
        this.report();
    }

    /// "Sync now", the tab becoming visible: connect at once if not connected.
    pub fn sync_now(&self) {
        let mut this = self.inner.borrow_mut();
        if matches!(this.halt, Some(Halt::SignedOut | Halt::NotInTeam)) {
            // Perhaps signed in again in another tab, or added back to the team.
            this.check_session();
        } else if this.socket.is_none() {
            this.retry_seconds = FIRST_RETRY_SECONDS;
            this.connect();
        } else if matches!(
            this.client.connection_state(),
            ConnectionState::Joined { .. }
        ) {
            let repo = this.repo.clone();
            this.client.sync_all(&mut *repo.borrow_mut());
            this.send_queued();
        }
    }

    /// The `online`, `offline` or `focus` event.
    pub fn connectivity_changed(&self) {
        let mut this = self.inner.borrow_mut();
        if this.halt == Some(Halt::Stopped) {
            return;
        }
        if matches!(this.halt, Some(Halt::SignedOut | Halt::NotInTeam)) {
            if online() {
                this.check_session();
            }
        } else if !online() {
            this.disconnect(None);
            this.report();
        } else if this.socket.is_none() {
            this.retry_seconds = FIRST_RETRY_SECONDS;
            this.connect();
        }
    }
}

impl SyncHandle {
    /// The rep signed in again after the server said "signed out": connect at once.
    pub fn resume(&self) {
        let mut this = self.inner.borrow_mut();
        if this.halt == Some(Halt::Stopped) {
            return;
        }
        this.halt = None;
        this.retry_seconds = FIRST_RETRY_SECONDS;
        this.connect();
    }

    /// Stops syncing for good (sign-out, team switch): closes the socket, cancels timers.
    pub fn stop(&self) {
        let mut this = self.inner.borrow_mut();
        this.halt = Some(Halt::Stopped);
        this.retry = None;
        this.settle = None;
        if this.socket.take().is_some() {
            this.client.handle_disconnected();
        }
    }

    /// Local changes the server has not acknowledged.
    pub fn pending_changes(&self) -> usize {
        self.inner.borrow().pending.values().sum()
    }
}

impl Inner {
    /// Keeps every document the repo knows (and every account the directory lists) in sync.
    fn open_documents(&mut self, saved: &BTreeMap<String, Vec<u8>>) {
        let ids = self.repo.borrow().document_ids();
        let open: BTreeSet<DocumentId> = self.client.open_document_ids().copied().collect();
        for id in ids {
            let Ok(document_id) = DocumentId::parse(&id) else {
                continue;
            };
            if open.contains(&document_id) {
                continue;
            }
            // A document whose stored bytes were damaged starts over: its saved state would
            // tell the server this device already has what it lost.
            let state = if self.repo.borrow().damaged_on_disk(&id) {
                None
            } else {
                saved.get(&id).map(Vec::as_slice)
            };
            if self.client.open_document(document_id, state).is_err() {
                // A damaged saved state only costs a full exchange.
                let _ = self.client.open_document(document_id, None);
            }
            if matches!(
                self.client.connection_state(),
                ConnectionState::Joined { .. }
            ) {
                let repo = self.repo.clone();
                let mut repo = repo.borrow_mut();
                self.client
                    .sync_document(document_id, Repo::document_mut(&mut repo, &id));
            }
        }
    }

    fn connect(&mut self) {
        self.retry = None;
        if self.socket.is_some() || self.halt.is_some() {
            return;
        }
        if !online() {
            self.report();
            return;
        }
        let socket = match WebSocket::new(&sync_url(&self.team)) {
            Ok(socket) => socket,
            Err(_) => {
                self.failed("the sync address is not valid".into());
                return;
            }
        };
        socket.set_binary_type(BinaryType::Arraybuffer);
        let weak = self.self_ref.clone();
        let on_open = Closure::<dyn FnMut()>::new({
            let weak = weak.clone();
            move || {
                if let Some(inner) = weak.upgrade() {
                    let mut this = inner.borrow_mut();
                    this.socket_opened = true;
                    this.client.handle_connected();
                    this.send_queued();
                }
            }
        });
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
            let weak = weak.clone();
            move |event: MessageEvent| {
                let Some(inner) = weak.upgrade() else { return };
                let Ok(buffer) = event.data().dyn_into::<ArrayBuffer>() else {
                    return;
                };
                let frame = Uint8Array::new(&buffer).to_vec();
                inner.borrow_mut().handle_frame(&frame);
            }
        });
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new({
            let weak = weak.clone();
            move |event: CloseEvent| {
                if let Some(inner) = weak.upgrade() {
                    inner.borrow_mut().closed(event.code());
                }
            }
        });
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        self.socket_opened = false;
        self.socket = Some(Socket {
            socket,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        });
        self.report();
    }

    /// The socket closed. One that never opened, or that the server closed as "signed out",
    /// may mean the session is over: the server's session endpoint says which.
    fn closed(&mut self, code: u16) {
        let opened = std::mem::replace(&mut self.socket_opened, false);
        if !online() {
            self.disconnect(None);
        } else if code == SIGNED_OUT_CLOSE_CODE || !opened {
            self.socket = None;
            self.client.handle_disconnected();
            self.check_session();
        } else {
            self.disconnect(Some("the server cannot be reached".into()));
        }
    }

    /// Asks the server whether this browser is still signed in, and acts on the answer.
    fn check_session(&mut self) {
        if self.checking_session || self.halt == Some(Halt::Stopped) {
            return;
        }
        self.checking_session = true;
        self.retry = None;
        let weak = self.self_ref.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let answer = api::current_session().await;
            let Some(inner) = weak.upgrade() else { return };
            let mut this = inner.borrow_mut();
            this.checking_session = false;
            if this.halt == Some(Halt::Stopped) {
                return;
            }
            match answer {
                Err(ApiError::Refused { status: 401, .. }) => {
                    this.halt = Some(Halt::SignedOut);
                    this.report();
                }
                Ok(session) if session.team(&this.team).is_none() => {
                    this.halt = Some(Halt::NotInTeam);
                    this.report();
                }
                Ok(_) if this.halt.is_some() => {
                    this.halt = None;
                    this.retry_seconds = FIRST_RETRY_SECONDS;
                    this.connect();
                }
                Ok(_) => this.failed("the server refused the connection".into()),
                Err(ApiError::Unreachable) if this.halt.is_none() => {
                    this.failed("the server cannot be reached".into())
                }
                Err(ApiError::Refused { message, .. }) if this.halt.is_none() => {
                    this.failed(message.trim_end_matches('.').to_string())
                }
                // Still halted; the next "Sync now", focus or sign-in asks again.
                Err(_) => this.report(),
            }
        });
    }

    /// Drops the socket; with a reason, schedules the next attempt.
    fn disconnect(&mut self, reason: Option<String>) {
        self.socket = None;
        self.client.handle_disconnected();
        match reason {
            Some(reason) if !reason.is_empty() && online() => self.failed(reason),
            _ => self.report(),
        }
    }

    fn failed(&mut self, reason: String) {
        self.socket = None;
        if self.halt.is_some() {
            self.report();
            return;
        }
        self.last_failure = Some(reason);
        let jitter = 0.8 + (random_bytes::<1>()[0] as f64 / 255.0) * 0.4;
        let delay = (self.retry_seconds as f64 * jitter * 1000.0) as u32;
        let weak = self.self_ref.clone();
        self.retry = Some(Timeout::new(delay, move || {
            if let Some(inner) = weak.upgrade() {
                inner.borrow_mut().connect();
            }
        }));
        self.report();
        self.retry_seconds = (self.retry_seconds * 2).min(MAX_RETRY_SECONDS);
    }

    fn handle_frame(&mut self, frame: &[u8]) {
        let repo = self.repo.clone();
        let result = self.client.handle_frame(frame, &mut *repo.borrow_mut());
        let events = match result {
            Ok(events) => events,
            Err(error) => {
                self.disconnect(Some(format!(
                    "the server sent something unexpected ({error})"
                )));
                return;
            }
        };
        for event in events {
            match event {
                ClientEvent::Joined {
                    server_storage_id, ..
                } => {
                    self.retry_seconds = FIRST_RETRY_SECONDS;
                    self.last_failure = None;
                    let server = server_storage_id.map(|s| s.as_str().to_string());
                    if server != self.server_storage_id {
                        // Another server (or a reset one): its states would mislead it.
                        let ids: Vec<DocumentId> =
                            self.client.open_document_ids().copied().collect();
                        for id in ids {
                            self.client.close_document(&id);
                        }
                        self.server_storage_id = server;
                        self.open_documents(&BTreeMap::new());
                        self.client.sync_all(&mut *repo.borrow_mut());
                        self.states_dirty = true;
                    }
                }
                ClientEvent::DocumentChanged { document_id } => {
                    self.unavailable.remove(&document_id);
                    self.changed.insert(document_id);
                    self.recount.insert(document_id);
                }
                ClientEvent::ServerHeadsChanged { document_id } => {
                    self.states_dirty = true;
                    self.recount.insert(document_id);
                }
                ClientEvent::DocumentUnavailable { document_id } => {
                    self.unavailable.insert(document_id);
                }
                ClientEvent::ServerError { message } => {
                    self.last_failure = Some(format!(
                        "the server refused this app's messages ({message}); reload the app \
                         while online to update it"
                    ));
                }
                ClientEvent::Ephemeral { .. } => {}
            }
        }
        // Replies go out at once so the exchange keeps moving; the rest waits for the burst.
        self.send_queued();
        if self.settle.is_none() {
            let weak = self.self_ref.clone();
            self.settle = Some(Timeout::new(0, move || {
                if let Some(inner) = weak.upgrade() {
                    inner.borrow_mut().settle();
                }
            }));
        }
    }

    /// Once per burst of frames: re-read changed documents, follow new directory entries,
    /// recount what waits, report, and save the sync states behind the changes.
    fn settle(&mut self) {
        self.settle = None;
        let repo = self.repo.clone();
        let changed: Vec<String> = std::mem::take(&mut self.changed)
            .into_iter()
            .map(|id| id.to_string())
            .collect();
        if !changed.is_empty() {
            repo.borrow_mut().remote_changed(&changed);
            // The directory may list accounts this device has not seen yet.
            self.open_documents(&BTreeMap::new());
        }
        for id in std::mem::take(&mut self.recount) {
            let mut repo = repo.borrow_mut();
            let doc = Repo::document_mut(&mut repo, &id.to_string());
            let pending = self.client.pending_change_count(&id, doc);
            self.pending.insert(id, pending);
        }
        self.recount_accounts_to_fetch();
        self.send_queued();
        self.report();
        if self.states_dirty || !changed.is_empty() {
            self.save_states();
        }
    }

    fn recount_accounts_to_fetch(&mut self) {
        let repo = self.repo.borrow();
        let (listed, missing) = repo.directory_progress();
        let unavailable = |id: &String| {
            DocumentId::parse(id)
                .map(|d| self.unavailable.contains(&d))
                .unwrap_or(true)
        };
        let missing_unavailable = missing.iter().filter(|id| unavailable(id)).count();
        self.accounts_to_fetch = missing.len() - missing_unavailable;
        self.accounts_listed = listed - missing_unavailable;
    }

    fn send_queued(&mut self) {
        let Some(socket) = &self.socket else {
            while self.client.poll_frame().is_some() {}
            return;
        };
        while let Some(frame) = self.client.poll_frame() {
            if socket.socket.send_with_u8_array(&frame).is_err() {
                break;
            }
        }
    }

    fn recount_all(&mut self) {
        let ids: Vec<DocumentId> = self.client.open_document_ids().copied().collect();
        let repo = self.repo.clone();
        let mut repo = repo.borrow_mut();
        for id in ids {
            let doc = Repo::document_mut(&mut repo, &id.to_string());
            let pending = self.client.pending_change_count(&id, doc);
            self.pending.insert(id, pending);
        }
    }

    /// Queues the sync states (and the last sync time) behind the document changes they
    /// describe, in the repo's next IndexedDB transaction.
    fn save_states(&mut self) {
        self.states_dirty = false;
        let mut states = SavedStates {
            server: self.server_storage_id.clone(),
            last_synced_millis: self.last_synced_millis,
            states: BTreeMap::new(),
        };
        let ids: Vec<DocumentId> = self.client.open_document_ids().copied().collect();
        for id in ids {
            if let Some(state) = self.client.encoded_sync_state(&id) {
                states.states.insert(id.to_string(), state);
            }
        }
        self.repo
            .borrow_mut()
            .put_meta(SYNC_STATES_KEY.into(), states.encode());
        flush(&self.repo);
    }

    fn report(&mut self) {
        let pending_changes: usize = self.pending.values().sum();
        let accounts_to_fetch = self.accounts_to_fetch;
        let joined = matches!(
            self.client.connection_state(),
            ConnectionState::Joined { .. }
        );
        let phase = if self.halt == Some(Halt::Stopped) {
            return;
        } else if self.halt == Some(Halt::SignedOut) {
            SyncPhase::SignedOut
        } else if self.halt == Some(Halt::NotInTeam) {
            SyncPhase::NotInTeam
        } else if !online() {
            SyncPhase::Offline
        } else if joined && pending_changes == 0 && accounts_to_fetch == 0 {
            SyncPhase::Synced
        } else if joined {
            SyncPhase::Syncing
        } else if self.retry.is_some() {
            SyncPhase::Retrying {
                reason: self
                    .last_failure
                    .clone()
                    .unwrap_or_else(|| "the server cannot be reached".into()),
                retry_in_seconds: self.retry_seconds.max(1),
            }
        } else {
            SyncPhase::Connecting
        };
        if phase == SyncPhase::Synced && self.phase != SyncPhase::Synced {
            // A full sync just finished.
            self.last_synced_millis = Some(now_millis());
            self.states_dirty = true;
        }
        self.phase = phase.clone();
        self.dispatch.emit(Action::Sync(SyncStatus {
            phase,
            pending_changes,
            accounts_to_fetch,
            accounts_listed: self.accounts_listed,
            last_synced_millis: self.last_synced_millis,
        }));
    }
}

/// Changes kept in one of the user's other databases (a team not open now) that the server has
/// not acknowledged, as far as the sync states saved there tell: a document with no saved state
/// counts whole. Sign-out adds these to the open team's, since it deletes every team's data.
pub async fn stored_pending_changes(database: &str) -> Result<usize, StorageError> {
    let idb = Idb::open(database).await?;
    let documents = idb.all_documents().await;
    let states = idb.meta(SYNC_STATES_KEY).await;
    idb.close();
    let saved = states?
        .and_then(|bytes| SavedStates::decode(&bytes))
        .unwrap_or_default();
    let mut pending = 0;
    for (id, chunks) in documents? {
        let bytes = document_bytes(chunks);
        let Ok(mut doc) = Automerge::load(&bytes) else {
            continue;
        };
        let acknowledged = saved
            .states
            .get(&id)
            .and_then(|state| automerge::sync::State::decode(state).ok())
            .map(|state| state.shared_heads)
            .unwrap_or_default();
        pending += doc.count_changes_not_covered_by(&acknowledged);
    }
    Ok(pending)
}

/// The sync states saved on the device: which server they belong to, when the last full sync
/// finished, and one encoded `automerge::sync::State` per document.
#[derive(Debug, Default, PartialEq)]
struct SavedStates {
    server: Option<String>,
    last_synced_millis: Option<i64>,
    states: BTreeMap<String, Vec<u8>>,
}

impl SavedStates {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![1u8];
        put(&mut out, self.server.as_deref().unwrap_or("").as_bytes());
        out.extend_from_slice(&self.last_synced_millis.unwrap_or(-1).to_le_bytes());
        for (id, state) in &self.states {
            put(&mut out, id.as_bytes());
            put(&mut out, state);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<SavedStates> {
        let (&version, mut rest) = bytes.split_first()?;
        (version == 1).then_some(())?;
        let server = String::from_utf8(take(&mut rest)?.to_vec()).ok()?;
        let (millis, tail) = rest.split_at_checked(8)?;
        rest = tail;
        let millis = i64::from_le_bytes(millis.try_into().ok()?);
        let mut states = BTreeMap::new();
        while !rest.is_empty() {
            let id = String::from_utf8(take(&mut rest)?.to_vec()).ok()?;
            let state = take(&mut rest)?.to_vec();
            states.insert(id, state);
        }
        Some(SavedStates {
            server: (!server.is_empty()).then_some(server),
            last_synced_millis: (millis >= 0).then_some(millis),
            states,
        })
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (length, tail) = rest.split_at_checked(4)?;
    let length = u32::from_le_bytes(length.try_into().ok()?) as usize;
    let (value, tail) = tail.split_at_checked(length)?;
    *rest = tail;
    Some(value)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_states_round_trip_and_reject_damage() {
        let mut states = SavedStates {
            server: Some("server-a".into()),
            last_synced_millis: Some(1_700_000_000_000),
            states: BTreeMap::new(),
        };
        states.states.insert("doc1".into(), vec![1, 2, 3]);
        states.states.insert("doc2".into(), vec![]);
        let bytes = states.encode();
        assert_eq!(SavedStates::decode(&bytes), Some(states));
        assert_eq!(SavedStates::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(SavedStates::decode(&[2]), None);
        assert_eq!(SavedStates::decode(&[]), None);
        let empty = SavedStates::default();
        assert_eq!(SavedStates::decode(&empty.encode()), Some(empty));
    }
}
