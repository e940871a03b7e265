//! Syncing with the team's server: the browser shell around the sans-IO client engine
//! (`fieldnotes_sync::client`), which performs what two pure state machines decide.
//!
//! - [`policy`] says when to connect: at start, on the `online` event, when the tab regains
//!   focus or becomes visible, on "Sync now", and after a failure with exponential backoff
//!   (1 s doubling to 30 s, with jitter). Safari has no Background Sync, so these moments are
//!   the ones a phone gives us. The browser does not say why a WebSocket upgrade failed, so a
//!   socket that closes unopened, or with code 4401 ("signed out"), makes the shell ask
//!   `GET /api/session`: a 401 halts reconnecting (edits stay in IndexedDB and keep counting
//!   as waiting) until the rep signs in again ([`SyncHandle::resume`]); no answer at all is
//!   only "offline".
//! - [`fieldnotes_sync::plan`] says which documents the engine keeps open: a window of a few dozen, the team
//!   directory and changes made on this phone first, then the accounts not downloaded yet,
//!   then the rest. Memory and the server's work stay bounded however large the team; a
//!   download interrupted (offline, browser killed) resumes where it stopped, since every
//!   document is stored as it arrives.
//! - Never blocks typing: edits go to the repo and IndexedDB first; the engine reads documents
//!   only when a socket is open. A frame about a document not in memory waits until the repo
//!   has loaded it, so frames are handled in the order they came.
//! - Each document's sync state (`sync/<id>`), the changes waiting per document
//!   (`sync/pending`) and the server they belong to (`sync/server`) are saved in the same
//!   IndexedDB transaction as the changes they describe, so after a reload or days offline the
//!   first exchange sends only what changed, and a saved state never claims changes the device
//!   did not keep.
//! - "Changes waiting" counts changes of documents changed on this phone that the server has
//!   not acknowledged: a phone that only downloaded has none.

pub mod policy;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::{Rc, Weak};

use automerge::{AutoCommit, Automerge};
use fieldnotes_sync::DocumentId;
use fieldnotes_sync::client::{
    Client, ClientConfig, ClientEvent, ConnectionState, DocumentSet, SyncTarget,
};
use fieldnotes_sync::protocol::{Message, PeerId, StorageId};
use gloo_timers::callback::Timeout;
use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};
use yew::Callback;

use crate::api::{self, ApiError};
use crate::idb::{Idb, StorageError, document_bytes};
use crate::platform::{now_millis, online, random_bytes, sync_url};
use crate::repo::{self, Repo, SharedRepo, flush};
use crate::state::{Action, SyncPhase, SyncStatus};
use fieldnotes_sync::plan::{Priority, SyncPlan};
use policy::{Halt, Reconnect, SessionAnswer, Step};

const STORAGE_ID_KEY: &str = "storage-id";
/// Each document's saved sync state is `sync/<document id>`.
const SYNC_STATE_PREFIX: &str = "sync/";
const SERVER_KEY: &str = "sync/server";
const PENDING_KEY: &str = "sync/pending";
/// Version 1 kept every sync state in this one record.
const LEGACY_SYNC_STATES_KEY: &str = "sync-states";

impl DocumentSet for Repo {
    type Document = AutoCommit;

    fn document_mut(&mut self, id: &DocumentId) -> Option<&mut AutoCommit> {
        Repo::document_mut(self, id)
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
    /// Whether [`SyncHandle::begin`] has read the saved states: before, nothing is sent or
    /// counted (a count made without them would be wrong and would be saved).
    started: bool,
    /// [`SyncHandle::stop`] was called: `begin` must not start it again.
    stopped: bool,
    socket: Option<Socket>,
    /// Whether the current socket opened (a socket that closes unopened may mean "signed out").
    socket_opened: bool,
    policy: Reconnect,
    retry: Option<Timeout>,
    plan: SyncPlan,
    /// The server these sync states belong to.
    server_storage_id: Option<String>,
    /// Every document's saved sync state with that server.
    saved: BTreeMap<DocumentId, Vec<u8>>,
    /// Sync states that changed since they were last queued for disk.
    states_to_save: BTreeSet<DocumentId>,
    /// Changes made on this phone the server has not acknowledged, per document (only
    /// documents with some).
    pending: BTreeMap<DocumentId, usize>,
    pending_changed: bool,
    /// Documents the server says it does not have (not counted as still to download).
    unavailable: BTreeSet<DocumentId>,
    /// The accounts the directory lists, read again when it changes.
    listed: BTreeSet<DocumentId>,
    listed_stale: bool,
    last_synced_millis: Option<i64>,
    /// Frames not handled yet, in order; the first may wait for its document to load.
    incoming: VecDeque<Vec<u8>>,
    loading_for_frame: bool,
    /// Documents being loaded to open them.
    opening: BTreeSet<DocumentId>,
    /// Work gathered while frames arrive is done once per burst by `settle` (re-reading the
    /// directory, announcing entries and saving after every frame made a new device's first
    /// sync quadratic).
    settle: Option<Timeout>,
    /// The phase last reported.
    phase: SyncPhase,
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

/// The engine for one page load: a fresh peer id, this device's storage id once read.
fn new_client(storage_id: Option<String>) -> Client {
    Client::new(ClientConfig {
        peer_id: PeerId::new(format!(
            "fieldnotes-{}",
            fieldnotes_model::hex(&random_bytes::<8>())
        )),
        storage_id: storage_id.map(StorageId::new),
        is_ephemeral: false,
        ephemeral_session_id: fieldnotes_model::hex(&random_bytes::<8>()),
    })
}

fn jitter() -> u8 {
    random_bytes::<1>()[0]
}

impl SyncHandle {
    /// The engine, not started: it reads nothing and sends nothing until [`SyncHandle::begin`],
    /// so the list can be shown first. Until then edits only gather in the repo (they are
    /// offered when it begins) and "Sync now" waits for it.
    pub fn new(repo: SharedRepo, team: String, dispatch: Callback<Action>) -> SyncHandle {
        let directory = repo.borrow().directory_id();
        let inner = Rc::new_cyclic(|self_ref| {
            RefCell::new(Inner {
                repo,
                dispatch,
                client: new_client(None),
                team,
                started: false,
                stopped: false,
                socket: None,
                socket_opened: false,
                policy: Reconnect::default(),
                retry: None,
                plan: SyncPlan::default(),
                server_storage_id: None,
                saved: BTreeMap::new(),
                states_to_save: BTreeSet::new(),
                pending: BTreeMap::new(),
                pending_changed: false,
                unavailable: BTreeSet::new(),
                listed: BTreeSet::new(),
                listed_stale: true,
                last_synced_millis: None,
                incoming: VecDeque::new(),
                loading_for_frame: false,
                opening: BTreeSet::new(),
                settle: None,
                phase: SyncPhase::Connecting,
                self_ref: self_ref.clone(),
            })
        });
        inner.borrow_mut().plan.keep(directory, true);
        SyncHandle { inner }
    }

    /// Reads this device's storage id and every document's saved sync state (a record per
    /// account: after the list is shown, and after the team directory is read), then connects
    /// and offers the changes made meanwhile. Does nothing after [`SyncHandle::stop`].
    pub async fn begin(&self, idb: Idb) {
        let repo = self.inner.borrow().repo.clone();
        // A durable id for this device's storage, so the server keeps its sync state for us.
        let storage_id = match idb.meta(STORAGE_ID_KEY).await {
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => {
                let id = fieldnotes_model::hex(&random_bytes::<16>());
                repo.borrow_mut()
                    .put_meta(STORAGE_ID_KEY.into(), id.clone().into_bytes());
                id
            }
        };
        let stored = load_saved(&idb, &repo).await;
        {
            let mut this = self.inner.borrow_mut();
            if this.stopped {
                return;
            }
            this.client = new_client(Some(storage_id));
            this.server_storage_id = stored.server;
            this.saved = stored.states;
            this.pending = stored.pending;
            this.pending_changed = stored.migrated;
            this.last_synced_millis = stored.last_synced_millis;
            this.started = true;
            this.refresh_listed();
            if this.pending_changed {
                this.save_states();
            }
            let step = this.policy.nudged(online(), false);
            this.perform(step);
            this.report();
        }
        // Edits made before it began: counted as waiting and offered now.
        self.local_change();
        flush(&repo);
    }

    /// The rep changed something: offer it to the server now if connected. Call before the
    /// repo flushes, so the count of changes waiting is written with the changes.
    pub fn local_change(&self) {
        let mut this = self.inner.borrow_mut();
        if !this.started {
            return; // `begin` takes what gathered.
        }
        let changed = this.repo.borrow_mut().take_changed_locally();
        for document in changed {
            this.plan.want(document, Priority::Local);
            if !this.client.open_document_ids().any(|d| *d == document)
                && this.repo.borrow().is_loaded(&document)
            {
                this.plan.open_now(document);
                this.open_in_engine(document);
            } else {
                let repo = this.repo.clone();
                let mut repo = repo.borrow_mut();
                if let Some(doc) = Repo::document_mut(&mut repo, &document) {
                    this.client.sync_document(document, doc);
                }
            }
            this.recount(document);
        }
        this.queue_pending();
        this.send_queued();
        this.report();
    }

    /// What to call when the phone's storage committed a write: downloads it held count as
    /// stored then, so the progress line is told again. Safe to call from inside a repo event
    /// (the report waits for the current task); it holds the engine weakly.
    pub fn writes_committed_listener(&self) -> impl Fn() + 'static {
        let weak = Rc::downgrade(&self.inner);
        move || {
            let weak = weak.clone();
            Timeout::new(0, move || {
                if let Some(inner) = weak.upgrade()
                    && let Ok(mut this) = inner.try_borrow_mut()
                {
                    this.report();
                }
            })
            .forget();
        }
    }

    /// Keeps a document open in the engine for good while a screen shows it, so colleagues'
    /// changes arrive live; or lets it go.
    pub fn keep_open(&self, document: DocumentId, kept: bool) {
        let mut this = self.inner.borrow_mut();
        this.plan.keep(document, kept);
        if !this.started {
            return; // `begin` opens what is kept.
        }
        if kept {
            this.open_window();
            this.report();
        } else if this.plan.is_open(&document) {
            let in_step = {
                let repo = this.repo.clone();
                let mut repo = repo.borrow_mut();
                Repo::document_mut(&mut repo, &document)
                    .is_some_and(|doc| this.client.in_step(&document, doc))
            };
            if in_step {
                this.close_if_in_step(document);
            }
        }
    }

    /// "Sync now", the tab becoming visible: connect at once if not connected.
    pub fn sync_now(&self) {
        let mut this = self.inner.borrow_mut();
        if !this.started {
            return; // `begin` connects.
        }
        if this.socket.is_some() {
            if matches!(
                this.client.connection_state(),
                ConnectionState::Joined { .. }
            ) {
                this.begin_pass();
            }
            return;
        }
        let step = this.policy.nudged(online(), false);
        this.perform(step);
        this.report();
    }

    /// The `online`, `offline` or `focus` event.
    pub fn connectivity_changed(&self) {
        let mut this = self.inner.borrow_mut();
        if !this.started {
            return;
        }
        if !online() {
            if this.socket.is_some() {
                this.drop_socket();
            }
            this.report();
            return;
        }
        let connected = this.socket.is_some();
        let step = this.policy.nudged(true, connected);
        this.perform(step);
        this.report();
    }

    /// The rep signed in again after the server said "signed out": connect at once.
    pub fn resume(&self) {
        let mut this = self.inner.borrow_mut();
        if !this.started {
            return;
        }
        let step = this.policy.resumed();
        this.perform(step);
        this.report();
    }

    /// Stops syncing for good (sign-out, team switch): closes the socket, cancels timers.
    pub fn stop(&self) {
        let mut this = self.inner.borrow_mut();
        this.stopped = true;
        this.policy.stopped();
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

/// What the device saved of its syncing.
#[derive(Default)]
struct Stored {
    server: Option<String>,
    last_synced_millis: Option<i64>,
    states: BTreeMap<DocumentId, Vec<u8>>,
    pending: BTreeMap<DocumentId, usize>,
    /// Version 1's single record was split into per-document ones (to be written).
    migrated: bool,
}

/// Reads the saved sync states (one read), taking over version 1's single record.
async fn load_saved(idb: &Idb, repo: &SharedRepo) -> Stored {
    let mut stored = Stored::default();
    for (key, bytes) in idb
        .meta_with_prefix(SYNC_STATE_PREFIX)
        .await
        .unwrap_or_default()
    {
        if key == SERVER_KEY {
            if let Some((server, last)) = decode_server(&bytes) {
                stored.server = server;
                stored.last_synced_millis = last;
            }
        } else if key == PENDING_KEY {
            stored.pending = decode_pending(&bytes).unwrap_or_default();
        } else if let Some(document) = key
            .strip_prefix(SYNC_STATE_PREFIX)
            .and_then(|id| DocumentId::parse(id).ok())
        {
            stored.states.insert(document, bytes);
        }
    }
    if let Ok(Some(bytes)) = idb.meta(LEGACY_SYNC_STATES_KEY).await
        && let Some(legacy) = SavedStates::decode(&bytes)
    {
        stored.server = legacy.server;
        stored.last_synced_millis = legacy.last_synced_millis;
        let mut this = repo.borrow_mut();
        for (id, state) in legacy.states {
            if let Ok(document) = DocumentId::parse(&id) {
                this.put_meta(format!("{SYNC_STATE_PREFIX}{document}"), state.clone());
                stored.states.insert(document, state);
            }
        }
        this.delete_meta_when_committed(LEGACY_SYNC_STATES_KEY.into(), Box::new(|| {}));
        stored.migrated = true;
    }
    stored
}

impl Inner {
    fn perform(&mut self, step: Step) {
        match step {
            Step::Connect => self.connect(),
            Step::RetryIn { millis } => {
                self.socket = None;
                let weak = self.self_ref.clone();
                self.retry = Some(Timeout::new(millis, move || {
                    if let Some(inner) = weak.upgrade() {
                        let mut this = inner.borrow_mut();
                        let connected = this.socket.is_some();
                        let step = this.policy.retry_due(online(), connected);
                        this.perform(step);
                        this.report();
                    }
                }));
            }
            Step::CheckSession { check } => self.check_session(check),
            Step::Wait => {}
        }
    }

    fn connect(&mut self) {
        self.retry = None;
        if self.socket.is_some() {
            return;
        }
        let socket = match WebSocket::new(&sync_url(&self.team)) {
            Ok(socket) => socket,
            Err(_) => {
                let step = self
                    .policy
                    .failed("the sync address is not valid".into(), jitter());
                self.perform(step);
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
                let mut this = inner.borrow_mut();
                this.incoming.push_back(frame);
                this.pump_incoming();
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

    /// Forgets the socket and everything in flight on it; documents stay as stored.
    fn drop_socket(&mut self) {
        self.socket = None;
        self.incoming.clear();
        self.client.handle_disconnected();
        let open: Vec<DocumentId> = self.client.open_document_ids().copied().collect();
        for document in open {
            self.remember_state(document);
            self.client.close_document(&document);
            self.repo.borrow_mut().release(&document);
        }
        self.plan.disconnected();
        self.save_states();
    }

    /// The socket closed. One that never opened, or that the server closed as "signed out",
    /// may mean the session is over: the server's session endpoint says which.
    fn closed(&mut self, code: u16) {
        let opened = std::mem::replace(&mut self.socket_opened, false);
        self.drop_socket();
        let step = self.policy.closed(code, opened, online(), jitter());
        self.perform(step);
        self.report();
    }

    /// Asks the server whether this browser is still signed in, and acts on the answer.
    fn check_session(&mut self, check: u32) {
        self.retry = None;
        let weak = self.self_ref.clone();
        let team = self.team.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let answer = match api::current_session().await {
                Err(ApiError::Refused { status: 401, .. }) => SessionAnswer::SignedOut,
                Ok(session) if session.team(&team).is_none() => SessionAnswer::NotInTeam,
                Ok(_) => SessionAnswer::Fine,
                Err(ApiError::Unreachable) => SessionAnswer::Unreachable,
                Err(ApiError::Refused { message, .. }) => SessionAnswer::Refused(message),
            };
            let Some(inner) = weak.upgrade() else { return };
            let mut this = inner.borrow_mut();
            let step = this.policy.session_answer(check, answer, jitter());
            this.perform(step);
            this.report();
        });
    }

    /// Handles waiting frames in order; a frame about a document that is stored but not in
    /// memory waits until it is loaded.
    fn pump_incoming(&mut self) {
        while !self.loading_for_frame {
            let Some(frame) = self.incoming.front() else {
                return;
            };
            if let Some(document) = frame_document(frame)
                && !self.client.open_document_ids().any(|d| *d == document)
            {
                let needs_load = {
                    let repo = self.repo.borrow();
                    repo.stores(&document) && !repo.is_loaded(&document)
                };
                if needs_load {
                    self.loading_for_frame = true;
                    let (weak, repo) = (self.self_ref.clone(), self.repo.clone());
                    wasm_bindgen_futures::spawn_local(async move {
                        let loaded = repo::load(&repo, &document).await;
                        let Some(inner) = weak.upgrade() else { return };
                        let mut this = inner.borrow_mut();
                        this.loading_for_frame = false;
                        if let Err(error) = loaded {
                            // Without the document the frame cannot be handled; the next
                            // connection syncs it from the start.
                            this.incoming.pop_front();
                            this.fail(format!("this phone could not read its copy ({error})"));
                            return;
                        }
                        this.pump_incoming();
                    });
                    return;
                }
                // The server pushes a document this connection synced before (a colleague
                // changed it): open it again to take the change.
                self.plan.open_now(document);
                self.open_in_engine(document);
            }
            let frame = self.incoming.pop_front().unwrap_or_default();
            self.handle_frame(&frame);
        }
    }

    fn fail(&mut self, reason: String) {
        self.drop_socket();
        let step = self.policy.failed(reason, jitter());
        self.perform(step);
        self.report();
    }

    fn handle_frame(&mut self, frame: &[u8]) {
        let repo = self.repo.clone();
        let result = self.client.handle_frame(frame, &mut *repo.borrow_mut());
        let events = match result {
            Ok(events) => events,
            Err(error) => {
                self.fail(format!("the server sent something unexpected ({error})"));
                return;
            }
        };
        let mut touched = BTreeSet::new();
        for event in events {
            match event {
                ClientEvent::Joined {
                    server_storage_id, ..
                } => {
                    self.policy.joined();
                    let server = server_storage_id.map(|s| s.as_str().to_string());
                    if server != self.server_storage_id {
                        // Another server (or a reset one): its states would mislead it.
                        self.saved.clear();
                        self.server_storage_id = server;
                        self.states_to_save.clear();
                    }
                    self.begin_pass();
                }
                ClientEvent::DocumentChanged { document_id } => {
                    // Marked to be written now: closing it in step below must not unload it
                    // before its changes are on this phone.
                    self.repo.borrow_mut().remote_changed(&document_id);
                    self.unavailable.remove(&document_id);
                    if document_id == self.repo.borrow().directory_id() {
                        self.listed_stale = true;
                    }
                    touched.insert(document_id);
                }
                ClientEvent::ServerHeadsChanged { document_id } => {
                    self.states_to_save.insert(document_id);
                    touched.insert(document_id);
                }
                ClientEvent::DocumentUnavailable { document_id } => {
                    self.unavailable.insert(document_id);
                    if self.plan.in_step(&document_id) {
                        self.close(document_id);
                    }
                }
                ClientEvent::ServerError { message } => {
                    self.policy.note_failure(format!(
                        "the server refused this app's messages ({message}); reload the app \
                         while online to update it"
                    ));
                }
                ClientEvent::Ephemeral { .. } => {}
            }
        }
        // Replies go out at once so the exchange keeps moving; the rest waits for the burst.
        self.send_queued();
        for document in touched {
            self.recount(document);
            self.close_if_in_step(document);
        }
        self.open_window();
        if self.settle.is_none() {
            let weak = self.self_ref.clone();
            self.settle = Some(Timeout::new(0, move || {
                if let Some(inner) = weak.upgrade() {
                    inner.borrow_mut().settle();
                }
            }));
        }
    }

    /// A new connection joined: every known document gets its turn.
    fn begin_pass(&mut self) {
        let known = self.repo.borrow().known_documents();
        let missing: BTreeSet<DocumentId> = self
            .repo
            .borrow()
            .directory_progress()
            .1
            .into_iter()
            .collect();
        let documents = known.into_iter().map(|document| {
            let priority = if self.pending.contains_key(&document) {
                Priority::Local
            } else if missing.contains(&document) {
                Priority::Download
            } else {
                Priority::Refresh
            };
            (document, priority)
        });
        let documents: Vec<(DocumentId, Priority)> = documents.collect();
        self.plan.begin_pass(documents);
        self.open_window();
    }

    /// Opens what the plan says fits now; a stored document is loaded first.
    fn open_window(&mut self) {
        if !matches!(
            self.client.connection_state(),
            ConnectionState::Joined { .. }
        ) {
            return;
        }
        for document in self.plan.to_open() {
            let needs_load = {
                let repo = self.repo.borrow();
                repo.stores(&document) && !repo.is_loaded(&document)
            };
            if !needs_load {
                self.open_in_engine(document);
                continue;
            }
            if !self.opening.insert(document) {
                continue;
            }
            let (weak, repo) = (self.self_ref.clone(), self.repo.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let loaded = repo::load(&repo, &document).await;
                let Some(inner) = weak.upgrade() else { return };
                let mut this = inner.borrow_mut();
                this.opening.remove(&document);
                if loaded.is_err() || !this.plan.is_open(&document) {
                    // Unreadable, or the socket closed meanwhile: the next pass tries again.
                    this.plan.in_step(&document);
                    this.open_window();
                    return;
                }
                this.open_in_engine(document);
                this.send_queued();
                this.open_window();
                this.report();
            });
        }
        self.send_queued();
    }

    /// Puts a document in memory into the engine, with its saved state, and offers it.
    fn open_in_engine(&mut self, document: DocumentId) {
        if self.client.open_document_ids().any(|d| *d == document) {
            return;
        }
        self.repo.borrow_mut().hold(document);
        // A document whose stored bytes were damaged starts over: its saved state would
        // tell the server this device already has what it lost.
        let state = if self.repo.borrow().damaged_on_disk(&document) {
            None
        } else {
            self.saved.get(&document).cloned()
        };
        if self
            .client
            .open_document(document, state.as_deref())
            .is_err()
        {
            // A damaged saved state only costs a full exchange.
            let _ = self.client.open_document(document, None);
        }
        let repo = self.repo.clone();
        let mut repo = repo.borrow_mut();
        if let Some(doc) = Repo::document_mut(&mut repo, &document) {
            self.client.sync_document(document, doc);
        }
    }

    fn close_if_in_step(&mut self, document: DocumentId) {
        let in_step = {
            let repo = self.repo.clone();
            let mut repo = repo.borrow_mut();
            Repo::document_mut(&mut repo, &document)
                .is_some_and(|doc| self.client.in_step(&document, doc))
        };
        if in_step && self.plan.in_step(&document) {
            self.close(document);
        }
    }

    /// The document leaves the engine: its state is kept, and the repo may unload it.
    fn close(&mut self, document: DocumentId) {
        self.remember_state(document);
        self.client.close_document(&document);
        self.repo.borrow_mut().release(&document);
    }

    fn remember_state(&mut self, document: DocumentId) {
        if let Some(state) = self.client.encoded_sync_state(&document)
            && self.saved.get(&document) != Some(&state)
        {
            self.saved.insert(document, state);
            self.states_to_save.insert(document);
        }
    }

    /// The changes waiting for one open document, counted again.
    fn recount(&mut self, document: DocumentId) {
        let repo = self.repo.clone();
        let mut repo = repo.borrow_mut();
        let Some(doc) = Repo::document_mut(&mut repo, &document) else {
            return;
        };
        let pending = self.client.pending_change_count(&document, doc);
        let before = self.pending.get(&document).copied().unwrap_or(0);
        if pending != before {
            if pending == 0 {
                self.pending.remove(&document);
            } else {
                self.pending.insert(document, pending);
            }
            self.pending_changed = true;
        }
    }

    /// Once per burst of frames: re-read changed documents, follow new directory entries,
    /// report, and save the sync states behind the changes.
    fn settle(&mut self) {
        self.settle = None;
        let repo = self.repo.clone();
        if self.listed_stale {
            self.refresh_listed();
            // The directory may list accounts this device has not seen yet.
            let missing: Vec<DocumentId> = self
                .listed
                .iter()
                .filter(|d| !repo.borrow().stores(d))
                .copied()
                .collect();
            for document in missing {
                self.plan.want(document, Priority::Download);
            }
            self.open_window();
        }
        repo.borrow_mut().announce_entries();
        self.send_queued();
        self.report();
        self.save_states();
    }

    fn refresh_listed(&mut self) {
        self.listed_stale = false;
        self.listed = self.repo.borrow().listed_accounts().into_iter().collect();
    }

    /// Accounts the directory lists that are not on this device's disk yet, and how many it
    /// lists (those the server has).
    fn download_progress(&self) -> (usize, usize) {
        let repo = self.repo.borrow();
        let unavailable = self
            .listed
            .iter()
            .filter(|d| self.unavailable.contains(d))
            .count();
        let missing = self
            .listed
            .iter()
            .filter(|d| !repo.saved_here(d) && !self.unavailable.contains(d))
            .count();
        (missing, self.listed.len() - unavailable)
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

    fn queue_pending(&mut self) {
        if std::mem::take(&mut self.pending_changed) {
            self.repo
                .borrow_mut()
                .put_meta(PENDING_KEY.into(), encode_pending(&self.pending));
        }
    }

    /// Queues the sync states (and the last sync time) behind the document changes they
    /// describe, in the repo's next IndexedDB transaction.
    fn save_states(&mut self) {
        let open: Vec<DocumentId> = self.client.open_document_ids().copied().collect();
        for document in open {
            if self.states_to_save.contains(&document) {
                self.remember_state(document);
            }
        }
        let to_save = std::mem::take(&mut self.states_to_save);
        let wrote_any = !to_save.is_empty() || self.pending_changed;
        {
            let mut repo = self.repo.borrow_mut();
            for document in to_save {
                if let Some(state) = self.saved.get(&document) {
                    repo.put_meta(format!("{SYNC_STATE_PREFIX}{document}"), state.clone());
                }
            }
            repo.put_meta(
                SERVER_KEY.into(),
                encode_server(self.server_storage_id.as_deref(), self.last_synced_millis),
            );
        }
        self.queue_pending();
        if wrote_any {
            flush(&self.repo);
        }
    }

    fn report(&mut self) {
        if self.policy.halt() == Some(Halt::Stopped) {
            return;
        }
        let joined = matches!(
            self.client.connection_state(),
            ConnectionState::Joined { .. }
        );
        if joined {
            // A document can come into step with no frame left to say so (opened again on a
            // connection whose server had already said all it had, our word being the last):
            // look again at what is open before saying how far the pass is. The window bounds it.
            for document in self.plan.open_not_done() {
                self.close_if_in_step(document);
            }
        }
        let pending_changes: usize = self.pending.values().sum();
        let (accounts_to_fetch, accounts_listed) = self.download_progress();
        let phase = if self.policy.halt() == Some(Halt::SignedOut) {
            SyncPhase::SignedOut
        } else if self.policy.halt() == Some(Halt::NotInTeam) {
            SyncPhase::NotInTeam
        } else if !online() {
            SyncPhase::Offline
        } else if joined
            && pending_changes == 0
            && accounts_to_fetch == 0
            && self.plan.pass_finished()
        {
            SyncPhase::Synced
        } else if joined {
            SyncPhase::Syncing
        } else if let Some(seconds) = self.policy.retrying() {
            SyncPhase::Retrying {
                reason: self
                    .policy
                    .last_failure()
                    .unwrap_or("the server cannot be reached")
                    .to_string(),
                retry_in_seconds: seconds,
            }
        } else {
            SyncPhase::Connecting
        };
        if phase == SyncPhase::Synced && self.phase != SyncPhase::Synced {
            // A full sync just finished.
            self.last_synced_millis = Some(now_millis());
            self.save_states();
        }
        self.phase = phase.clone();
        self.dispatch.emit(Action::Sync(SyncStatus {
            phase,
            pending_changes,
            accounts_to_fetch,
            accounts_listed,
            last_synced_millis: self.last_synced_millis,
        }));
    }
}

/// The document a frame is about, if it is about one.
fn frame_document(frame: &[u8]) -> Option<DocumentId> {
    match Message::decode(frame).ok()? {
        Message::Sync(m) | Message::Request(m) => Some(m.document_id),
        Message::DocUnavailable(m) => Some(m.document_id),
        Message::Ephemeral(m) => Some(m.document_id),
        _ => None,
    }
}

/// Changes kept in one of the user's other databases (a team not open now) that the server has
/// not acknowledged, as that database's record of them says. A database from before the record
/// existed is counted from its documents and saved sync states.
pub async fn stored_pending_changes(database: &str) -> Result<usize, StorageError> {
    let idb = Idb::open(database).await?;
    let pending = idb.meta(PENDING_KEY).await;
    let legacy = idb.meta(LEGACY_SYNC_STATES_KEY).await;
    let counted = match (pending, legacy) {
        (Ok(Some(bytes)), _) => Ok(decode_pending(&bytes)
            .map(|pending| pending.values().sum())
            .unwrap_or(1)),
        (_, Ok(Some(bytes))) => {
            let saved = SavedStates::decode(&bytes).unwrap_or_default();
            count_from_documents(&idb, &saved).await
        }
        (Ok(None), Ok(None)) => count_from_documents(&idb, &SavedStates::default()).await,
        (Err(error), _) | (_, Err(error)) => Err(error),
    };
    idb.close();
    counted
}

/// Version 1's way: every document loaded, counted against its saved state (a document with
/// none counts whole).
async fn count_from_documents(idb: &Idb, saved: &SavedStates) -> Result<usize, StorageError> {
    let mut pending = 0;
    for (id, chunks) in idb.all_documents().await? {
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

fn encode_server(server: Option<&str>, last_synced_millis: Option<i64>) -> Vec<u8> {
    let mut out = vec![1u8];
    put(&mut out, server.unwrap_or("").as_bytes());
    out.extend_from_slice(&last_synced_millis.unwrap_or(-1).to_le_bytes());
    out
}

fn decode_server(bytes: &[u8]) -> Option<(Option<String>, Option<i64>)> {
    let (&version, mut rest) = bytes.split_first()?;
    (version == 1).then_some(())?;
    let server = String::from_utf8(take(&mut rest)?.to_vec()).ok()?;
    let millis = i64::from_le_bytes(rest.try_into().ok()?);
    Some((
        (!server.is_empty()).then_some(server),
        (millis >= 0).then_some(millis),
    ))
}

fn encode_pending(pending: &BTreeMap<DocumentId, usize>) -> Vec<u8> {
    let mut out = vec![1u8];
    for (document, count) in pending {
        out.extend_from_slice(document.as_bytes());
        out.extend_from_slice(&(*count as u32).to_le_bytes());
    }
    out
}

fn decode_pending(bytes: &[u8]) -> Option<BTreeMap<DocumentId, usize>> {
    let (&version, rest) = bytes.split_first()?;
    (version == 1 && rest.len() % 20 == 0).then_some(())?;
    Some(
        rest.chunks_exact(20)
            .map(|record| {
                let (id, count) = record.split_at(16);
                let id: [u8; 16] = id.try_into().unwrap_or_default();
                let count: [u8; 4] = count.try_into().unwrap_or_default();
                (
                    DocumentId::from_bytes(id),
                    u32::from_le_bytes(count) as usize,
                )
            })
            .collect(),
    )
}

/// Version 1's sync states: which server they belong to, when the last full sync finished,
/// and one encoded `automerge::sync::State` per document, all in one record.
#[derive(Debug, Default, PartialEq)]
struct SavedStates {
    server: Option<String>,
    last_synced_millis: Option<i64>,
    states: BTreeMap<String, Vec<u8>>,
}

impl SavedStates {
    #[cfg(test)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_one_states_still_read_and_damage_is_refused() {
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

    #[test]
    fn the_server_record_and_the_changes_waiting_round_trip() {
        let bytes = encode_server(Some("server-a"), Some(42));
        assert_eq!(
            decode_server(&bytes),
            Some((Some("server-a".into()), Some(42)))
        );
        assert_eq!(
            decode_server(&encode_server(None, None)),
            Some((None, None))
        );
        let mut pending = BTreeMap::new();
        pending.insert(DocumentId::from_bytes([1; 16]), 3);
        pending.insert(DocumentId::from_bytes([2; 16]), 70_000);
        assert_eq!(decode_pending(&encode_pending(&pending)), Some(pending));
        assert_eq!(decode_pending(&[1, 0]), None);
    }
}
