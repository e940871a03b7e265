//! The app's lifecycle on this device: who is signed in, booting storage and services for them,
//! sign-in, first-run setup and invitations, a team switch, sign-out with its warning, and the
//! deletion of the user's data. Components call this and render what it holds; they do no IO.
//!
//! Sign-in flows through here: the sign-in, setup and invitation screens submit what was typed
//! ([`sign_in`], [`set_up`], [`accept_invitation`]) and hand the answer to
//! [`Lifecycle::joined`], which remembers the session on the device (`session`), opens that
//! user's database for the active team and starts syncing. A team switch stops the services and
//! opens the other team's database; sign-out also revokes the session and deletes every
//! database of the user.

use std::cell::RefCell;
use std::rc::Rc;

use yew::Callback;

pub use crate::api::{ApiError, Invitation, SessionInfo};
pub use crate::session::DeviceSession;

use crate::idb::{self, Idb, StorageError};
use crate::platform::{hash, online, set_hash};
use crate::services::{self, Services};
use crate::state::{Action, Boot, Route};
use crate::{api, drafts, session, sync};

/// The session and services of this device, shared by the root component and the callbacks it
/// hands out. Every change to them re-renders the root (`changed`).
#[derive(Clone)]
pub struct Lifecycle {
    inner: Rc<Inner>,
}

struct Inner {
    dispatch: Callback<Action>,
    changed: Callback<()>,
    device: RefCell<Option<Rc<DeviceSession>>>,
    services: RefCell<Option<Services>>,
}

impl PartialEq for Lifecycle {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Lifecycle {
    pub fn new(dispatch: Callback<Action>, changed: Callback<()>) -> Self {
        Lifecycle {
            inner: Rc::new(Inner {
                dispatch,
                changed,
                device: RefCell::default(),
                services: RefCell::default(),
            }),
        }
    }

    /// Who is signed in here and the team shown.
    pub fn device(&self) -> Option<Rc<DeviceSession>> {
        self.inner.device.borrow().clone()
    }

    /// The running services of the team shown, once its database is open.
    pub fn services(&self) -> Option<Services> {
        self.inner.services.borrow().clone()
    }

    fn set_device(&self, device: Option<Rc<DeviceSession>>) {
        *self.inner.device.borrow_mut() = device;
        self.inner.changed.emit(());
    }

    fn set_services(&self, services: Option<Services>) {
        *self.inner.services.borrow_mut() = services;
        self.inner.changed.emit(());
    }

    fn fail(&self, error: impl ToString) {
        self.inner
            .dispatch
            .emit(Action::Booted(Boot::Failed(error.to_string())));
    }

    /// Starts at once (no network needed) if someone is signed in on this device; otherwise
    /// asks for a sign-in, and revokes a session that a sign-out made offline left behind.
    pub fn boot(&self) {
        let this = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            match session::load().await {
                Ok(Some(stored)) => {
                    let stored = Rc::new(stored);
                    this.set_device(Some(stored.clone()));
                    this.open(stored.clone()).await;
                    this.refresh(stored).await;
                }
                Ok(None) => {
                    this.inner.dispatch.emit(Action::Booted(Boot::NeedsSignIn));
                    if session::revoke_pending().await && api::sign_out().await.is_ok() {
                        session::revoked().await;
                    }
                }
                Err(error) => this.fail(error),
            }
        });
    }

    /// A sign-in, a first-run setup or an accepted invitation: remember the session and open
    /// the team's notes (`preferred`, or the last one shown), resuming sync if they are already
    /// open.
    pub fn joined(&self, info: SessionInfo, preferred: Option<String>) {
        let previous = self.device();
        let previous_team = previous.as_ref().map(|d| d.team_id.as_str());
        let Some(next) = DeviceSession::new(info, preferred.as_deref(), previous_team) else {
            return;
        };
        let next = Rc::new(next);
        let same_database = previous
            .as_ref()
            .is_some_and(|p| p.database_name() == next.database_name());
        let this = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(error) = session::save(&next).await {
                this.fail(error);
                return;
            }
            if matches!(
                Route::from_hash(&hash()),
                Route::Setup(_) | Route::Invite(_)
            ) {
                set_hash(&Route::Accounts.to_hash());
            }
            this.set_device(Some(next.clone()));
            match this.services() {
                Some(running) if same_database => running.sync.resume(),
                running => {
                    if let Some(running) = running {
                        running.stop().await;
                    }
                    this.open(next).await;
                }
            }
        });
    }

    /// Shows another of the user's teams (by id).
    pub fn switch_team(&self, team_id: String) {
        let (Some(running), Some(current)) = (self.services(), self.device()) else {
            return;
        };
        if team_id == current.team_id || current.info.team(&team_id).is_none() {
            return;
        }
        let next = Rc::new(DeviceSession {
            info: current.info.clone(),
            team_id,
        });
        let this = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(error) = session::save(&next).await {
                this.inner
                    .dispatch
                    .emit(Action::Notice(Some(error.to_string())));
                return;
            }
            this.set_device(Some(next.clone()));
            running.stop().await;
            this.open(next).await;
        });
    }

    /// What signing out would delete from this phone: drafts and changes the server has not
    /// acknowledged, in every team of the user (the open one's from its services). A database
    /// that cannot be read counts as one change, so sign-out still warns rather than deleting
    /// it silently.
    pub async fn kept_on_this_phone(&self) -> (usize, usize) {
        let (Some(device), services) = (self.device(), self.services()) else {
            return (0, 0);
        };
        let prefix = session::database_prefix(&device.info.user_id);
        let open_database = device.database_name();
        let (mut drafts, mut pending) = services
            .map(|s| (s.drafts.count(), s.sync.pending_changes()))
            .unwrap_or_default();
        for name in idb::database_names().await {
            if name.starts_with(&prefix) && name != open_database {
                drafts += drafts::stored_count(&name).await.unwrap_or(0);
                pending += sync::stored_pending_changes(&name).await.unwrap_or(1);
            }
        }
        (drafts, pending)
    }

    /// Signs out: stops the services, revokes the session (later, if offline) and deletes
    /// every database of the user from this device. If a database cannot be deleted, the
    /// notes are opened again and the rep is told what to do.
    pub fn sign_out(&self) {
        let Some(current) = self.device() else {
            return;
        };
        let this = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let dispatch = this.inner.dispatch.clone();
            dispatch.emit(Action::Booted(Boot::SigningOut));
            if let Some(running) = this.services() {
                running.halt();
            }
            this.set_services(None);
            // Offline, the session stays valid on the server until it can be revoked.
            let revoke_pending = api::sign_out().await == Err(ApiError::Unreachable);
            match delete_user_data(&current, &dispatch).await {
                Ok(()) => {
                    if let Err(error) = session::clear(revoke_pending).await {
                        this.fail(error);
                        return;
                    }
                    this.set_device(None);
                    set_hash(&Route::Accounts.to_hash());
                    dispatch.emit(Action::SignedOut);
                }
                Err(error) => {
                    dispatch.emit(Action::Notice(Some(format!(
                        "Fieldnotes could not delete this phone's copy of your notes \
                         ({error}). Close other Fieldnotes tabs, then sign out again."
                    ))));
                    this.open(current).await;
                }
            }
        });
    }

    /// Opens the signed-in user's database for the active team and starts saving and syncing.
    async fn open(&self, device: Rc<DeviceSession>) {
        self.set_services(None);
        self.inner.dispatch.emit(Action::Booted(Boot::Loading));
        let idb = match Idb::open(&device.database_name()).await {
            Ok(opened) => opened,
            Err(error) => return self.fail(error),
        };
        match services::start(idb, device.identity(), self.inner.dispatch.clone()).await {
            Ok(started) => self.set_services(Some(started)),
            Err(error) => self.fail(error),
        }
    }

    /// Online at start: learn of teams joined or a name changed since the last sign-in. A 401
    /// is left to the sync engine, which says "signed out" when it cannot connect.
    async fn refresh(&self, stored: Rc<DeviceSession>) {
        if !online() {
            return;
        }
        if let Ok(info) = api::current_session().await
            && info.user_id == stored.info.user_id
            && info != stored.info
        {
            let next = DeviceSession {
                info,
                team_id: stored.team_id.clone(),
            };
            if session::save(&next).await.is_ok() {
                self.set_device(Some(Rc::new(next)));
            }
        }
    }
}

/// Deletes every database of the signed-out user (all their teams) from this device.
async fn delete_user_data(
    session: &DeviceSession,
    dispatch: &Callback<Action>,
) -> Result<(), StorageError> {
    let user = &session.info.user_id;
    let prefix = session::database_prefix(user);
    let mut names: Vec<String> = idb::database_names()
        .await
        .into_iter()
        .filter(|name| name.starts_with(&prefix))
        .collect();
    for team in &session.info.teams {
        let name = session::database_name(user, &team.id);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    for name in names {
        let dispatch = dispatch.clone();
        idb::delete_database(&name, move || {
            dispatch.emit(Action::Notice(Some(
                "Close other Fieldnotes tabs to finish signing out.".into(),
            )))
        })
        .await?;
    }
    Ok(())
}

/// A session the app can use, or why not, in plain words. A session it cannot use is revoked
/// at once so the browser does not keep a cookie nobody asked for.
fn usable(answer: Result<SessionInfo, ApiError>) -> Result<SessionInfo, String> {
    let info = answer.map_err(|e| e.to_string())?;
    if info.teams.is_empty() {
        wasm_bindgen_futures::spawn_local(async {
            let _ = api::sign_out().await;
        });
        return Err(
            "Your account is not in any team yet. Ask your administrator to add you \
                    to your team, then sign in again."
                .into(),
        );
    }
    Ok(info)
}

/// Signs in with email and password; with `expected_user`, only as that user (signing in again:
/// the device holds their notes, and must not sync them as someone else).
pub async fn sign_in(
    email: &str,
    password: &str,
    expected_user: Option<&str>,
) -> Result<SessionInfo, String> {
    let info = usable(api::sign_in(email, password).await)?;
    if expected_user.is_some_and(|expected| expected != info.user_id) {
        let _ = api::sign_out().await;
        return Err(
            "That is another person's account. This phone holds the notes of \
                    the account shown above: sign in with it, or sign out in the team \
                    view to switch."
                .into(),
        );
    }
    Ok(info)
}

/// The first-run link: creates the first administrator and their team, signed in.
pub async fn set_up(
    token: &str,
    name: &str,
    email: &str,
    password: &str,
    team: &str,
) -> Result<SessionInfo, String> {
    usable(api::setup(token, name, email, password, team).await)
}

/// What an invitation link offers (which team, as what), or why it cannot be used.
pub async fn look_up_invitation(token: &str) -> Result<Invitation, ApiError> {
    api::invitation(token).await
}

/// Accepts an invitation: a new account, or a team added to an existing one, signed in.
pub async fn accept_invitation(
    token: &str,
    name: &str,
    email: &str,
    password: &str,
) -> Result<SessionInfo, String> {
    usable(api::accept_invitation(token, name, email, password).await)
}
