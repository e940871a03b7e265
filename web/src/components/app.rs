//! The root: who is signed in on this device, booting storage and services for them, following
//! the location hash, and laying out the status bar above the current screen.
//!
//! Sign-in flows through here: the sign-in, setup and invitation screens hand over a
//! `SessionInfo`; the app remembers it on the device (`session`), opens that user's database for
//! the active team and starts syncing. A team switch stops the services and opens the other
//! team's database; sign-out also revokes the session and deletes the user's databases.

use std::rc::Rc;

use gloo_events::EventListener;
use yew::prelude::*;

use crate::api::{self, ApiError, SessionInfo};
use crate::components::{
    account::AccountScreen,
    accounts::AccountsScreen,
    capture::CaptureScreen,
    drafts::DraftUndo,
    join::{InviteScreen, Joined, SignedInAs, setup_screen},
    new_account::NewAccountScreen,
    sign_in::{self, Credentials, CredentialsForm, sign_in_screen},
    status::StatusBar,
    team::TeamScreen,
};
use crate::idb::{self, Idb};
use crate::platform::{hash, online, set_hash};
use crate::services::{self, Services};
use crate::session::{self, DeviceSession};
use crate::state::{Action, AppState, Boot, Route, SyncPhase};

/// What every screen gets from context.
#[derive(Clone, PartialEq)]
pub struct AppContext {
    pub state: UseReducerHandle<AppState>,
    pub services: Services,
    /// Who is signed in here and the team shown.
    pub session: Rc<DeviceSession>,
    pub sign_out: Callback<()>,
    /// Shows another of the user's teams (by id).
    pub switch_team: Callback<String>,
    /// Opens the sign-in form after the server ended the session.
    pub show_sign_in: Callback<()>,
}

#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(AppState::default);
    let services = use_state(|| None::<Services>);
    let device = use_state(|| None::<Rc<DeviceSession>>);
    let sign_in_dismissed = use_state(|| false);
    let dispatch = {
        let dispatcher = state.dispatcher();
        Callback::from(move |action: Action| dispatcher.dispatch(action))
    };

    // Boot: start at once (no network needed) if someone is signed in on this device.
    {
        let (dispatch, services, device) = (dispatch.clone(), services.clone(), device.clone());
        use_effect_with((), move |_| {
            dispatch.emit(Action::Navigate(Route::from_hash(&hash())));
            wasm_bindgen_futures::spawn_local(async move {
                match session::load().await {
                    Ok(Some(stored)) => {
                        let stored = Rc::new(stored);
                        device.set(Some(stored.clone()));
                        open(stored.clone(), dispatch.clone(), services).await;
                        refresh(stored, device).await;
                    }
                    Ok(None) => {
                        dispatch.emit(Action::Booted(Boot::NeedsSignIn));
                        // A sign-out made offline could not revoke the session: do it now.
                        if session::revoke_pending().await && api::sign_out().await.is_ok() {
                            session::revoked().await;
                        }
                    }
                    Err(error) => dispatch.emit(Action::Booted(Boot::Failed(error.to_string()))),
                }
            });
            || ()
        });
    }

    // Browser events: navigation, a waiting update, leaving the page, connectivity.
    {
        let dispatch = dispatch.clone();
        let current = (*services).clone();
        use_effect_with(current, move |current| {
            let window = gloo_utils::window();
            let mut listeners = Vec::new();
            {
                let dispatch = dispatch.clone();
                listeners.push(EventListener::new(&window, "hashchange", move |_| {
                    dispatch.emit(Action::Navigate(Route::from_hash(&hash())));
                }));
            }
            {
                let dispatch = dispatch.clone();
                listeners.push(EventListener::new(
                    &window,
                    "fieldnotes-update-ready",
                    move |_| dispatch.emit(Action::UpdateReady),
                ));
            }
            if let Some(services) = current.clone() {
                // Anything not yet written goes to disk when the rep leaves the page.
                for event in ["pagehide", "blur"] {
                    let services = services.clone();
                    listeners.push(EventListener::new(&window, event, move |_| {
                        services.flush()
                    }));
                }
                let document = gloo_utils::document();
                {
                    let services = services.clone();
                    listeners.push(EventListener::new(
                        &document,
                        "visibilitychange",
                        move |_| {
                            services.flush();
                            if crate::platform::page_visible() {
                                services.sync.sync_now();
                            }
                        },
                    ));
                }
                for event in ["online", "offline", "focus"] {
                    let services = services.clone();
                    listeners.push(EventListener::new(&window, event, move |_| {
                        services.sync.connectivity_changed()
                    }));
                }
            }
            move || drop(listeners)
        });
    }

    // The account the route shows is loaded and kept in memory while shown.
    {
        let current = (*services).clone();
        let account = state.route.account_id().map(str::to_owned);
        use_effect_with((current, account), move |(current, account)| {
            if let Some(services) = current {
                services.show_account(account.as_deref());
            }
            || ()
        });
    }

    // A sign-in, a first-run setup or an accepted invitation: remember the session and open
    // the team's notes (resuming sync if they are already open).
    let on_joined = {
        let (dispatch, services, device) = (dispatch.clone(), services.clone(), device.clone());
        let sign_in_dismissed = sign_in_dismissed.clone();
        let running = (*services).clone();
        let previous = (*device).clone();
        Callback::from(move |(info, preferred): Joined| {
            let previous_team = previous.as_ref().map(|d| d.team_id.as_str());
            let Some(next) = DeviceSession::new(info, preferred.as_deref(), previous_team) else {
                return;
            };
            let next = Rc::new(next);
            let same_database = previous
                .as_ref()
                .is_some_and(|p| p.database_name() == next.database_name());
            let (dispatch, services, device) = (dispatch.clone(), services.clone(), device.clone());
            let (sign_in_dismissed, running) = (sign_in_dismissed.clone(), running.clone());
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(error) = session::save(&next).await {
                    dispatch.emit(Action::Booted(Boot::Failed(error.to_string())));
                    return;
                }
                sign_in_dismissed.set(false);
                if matches!(
                    Route::from_hash(&hash()),
                    Route::Setup(_) | Route::Invite(_)
                ) {
                    set_hash(&Route::Accounts.to_hash());
                }
                device.set(Some(next.clone()));
                match running {
                    Some(running) if same_database => running.sync.resume(),
                    running => {
                        if let Some(running) = running {
                            running.stop().await;
                        }
                        open(next, dispatch, services).await;
                    }
                }
            });
        })
    };
    let on_signed_in = on_joined.reform(|info: SessionInfo| (info, None));

    let switch_team = {
        let (dispatch, services, device) = (dispatch.clone(), services.clone(), device.clone());
        let running = (*services).clone();
        let current = (*device).clone();
        Callback::from(move |team_id: String| {
            let (Some(running), Some(current)) = (running.clone(), current.clone()) else {
                return;
            };
            if team_id == current.team_id || current.info.team(&team_id).is_none() {
                return;
            }
            let next = Rc::new(DeviceSession {
                info: current.info.clone(),
                team_id,
            });
            let (dispatch, services, device) = (dispatch.clone(), services.clone(), device.clone());
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(error) = session::save(&next).await {
                    dispatch.emit(Action::Notice(Some(error.to_string())));
                    return;
                }
                device.set(Some(next.clone()));
                running.stop().await;
                open(next, dispatch, services).await;
            });
        })
    };

    let sign_out = {
        let (dispatch, services, device) = (dispatch.clone(), services.clone(), device.clone());
        let running = (*services).clone();
        let current = (*device).clone();
        Callback::from(move |_| {
            let Some(current) = current.clone() else {
                return;
            };
            let (dispatch, services, device) = (dispatch.clone(), services.clone(), device.clone());
            let running = running.clone();
            wasm_bindgen_futures::spawn_local(async move {
                dispatch.emit(Action::Booted(Boot::SigningOut));
                if let Some(running) = &running {
                    running.sync.stop();
                    running.drafts.stop();
                    running.repo.borrow().idb().close();
                }
                services.set(None);
                // Offline, the session stays valid on the server until it can be revoked.
                let revoke_pending = api::sign_out().await == Err(ApiError::Unreachable);
                match delete_user_data(&current, &dispatch).await {
                    Ok(()) => {
                        if let Err(error) = session::clear(revoke_pending).await {
                            dispatch.emit(Action::Booted(Boot::Failed(error.to_string())));
                            return;
                        }
                        device.set(None);
                        set_hash(&Route::Accounts.to_hash());
                        dispatch.emit(Action::SignedOut);
                    }
                    Err(error) => {
                        dispatch.emit(Action::Notice(Some(format!(
                            "Fieldnotes could not delete this phone's copy of your notes \
                             ({error}). Close other Fieldnotes tabs, then sign out again."
                        ))));
                        open(current, dispatch, services).await;
                    }
                }
            });
        })
    };

    let show_sign_in = {
        let sign_in_dismissed = sign_in_dismissed.clone();
        Callback::from(move |_| sign_in_dismissed.set(false))
    };

    // The invitation and setup links work whoever is (or is not) signed in here.
    let signed_in_as = (*device).as_ref().map(|d| SignedInAs {
        email: d.info.email.clone(),
        name: d.info.name.clone(),
    });
    match &state.route {
        Route::Setup(token) if state.boot != Boot::SigningOut => {
            return setup_screen(token, &on_joined);
        }
        Route::Invite(token) if state.boot != Boot::SigningOut => {
            return html! {
                <InviteScreen token={token.clone()} signed_in={signed_in_as} on_joined={on_joined} />
            };
        }
        _ => {}
    }

    match (&state.boot, (*services).clone(), (*device).clone()) {
        (Boot::Failed(reason), _, _) => html! {
            <main class="screen boot-failed">
                <h1>{ "Fieldnotes can't open its storage" }</h1>
                <p>{ reason }</p>
                <p>{ "Close other Fieldnotes tabs and reload. If it keeps happening, make sure \
                      this is not a private window." }</p>
            </main>
        },
        (Boot::NeedsSignIn, _, _) => sign_in_screen(on_signed_in),
        (Boot::Ready, Some(services), Some(session)) => {
            let signed_out = state.sync.phase == SyncPhase::SignedOut;
            let sign_in_again = (signed_out && !*sign_in_dismissed).then(|| {
                let dismiss = {
                    let sign_in_dismissed = sign_in_dismissed.clone();
                    Callback::from(move |_| sign_in_dismissed.set(true))
                };
                html! {
                    <section class="card sign-in-again" aria-label="Sign in again">
                        <h2>{ "Sign in to sync" }</h2>
                        <p>{ "The server has signed this phone out. Your changes are kept on \
                              this phone and sync as soon as you sign in again." }</p>
                        <CredentialsForm form_id="sign-in-again" button="Sign in"
                            submit={sign_in::sign_in(Some(session.info.user_id.clone()))}
                            initial={Credentials { email: session.info.email.clone(), ..Credentials::default() }}
                            fixed_email=true inline_button=true on_done={on_signed_in.clone()} />
                        <button class="link" onclick={dismiss}>{ "Not now" }</button>
                    </section>
                }
            });
            let context = AppContext {
                state: state.clone(),
                services,
                session,
                sign_out,
                switch_team,
                show_sign_in,
            };
            // Screens with forms open afresh from the drafts when one was discarded or brought
            // back, and when they show another account.
            let forms = format!("{}{}", state.drafts.revision, state.route.to_hash());
            let screen = match &state.route {
                Route::Accounts | Route::Setup(_) | Route::Invite(_) => {
                    html! { <AccountsScreen /> }
                }
                Route::NewAccount => html! { <NewAccountScreen key={forms} /> },
                Route::Account(id) => html! { <AccountScreen key={forms} id={id.clone()} /> },
                Route::Capture(id) => html! { <CaptureScreen key={forms} id={id.clone()} /> },
                Route::Team => html! { <TeamScreen /> },
            };
            let notice = state.notice.clone().map(|text| {
                let dispatch = dispatch.clone();
                html! {
                    <div class="notice" role="alert">
                        <span>{ text }</span>
                        <button class="link" onclick={move |_| dispatch.emit(Action::Notice(None))}>
                            { "Dismiss" }
                        </button>
                    </div>
                }
            });
            let update = state.update_ready.then(|| html! {
                <div class="notice update" role="status">
                    <span>{ "A new version of Fieldnotes is ready." }</span>
                    <button class="link" onclick={|_| activate_update()}>{ "Update now" }</button>
                </div>
            });
            html! {
                <ContextProvider<AppContext> context={context}>
                    <div class="app">
                        <StatusBar />
                        { for sign_in_again }
                        { for update }
                        { for notice }
                        <DraftUndo />
                        { screen }
                    </div>
                </ContextProvider<AppContext>>
            }
        }
        (Boot::SigningOut, _, _) => {
            html! { <main class="screen loading" aria-busy="true">{ "Signing out…" }</main> }
        }
        _ => {
            html! { <main class="screen loading" aria-busy="true">{ "Opening your notes…" }</main> }
        }
    }
}

/// Opens the signed-in user's database for the active team and starts saving and syncing.
async fn open(
    device: Rc<DeviceSession>,
    dispatch: Callback<Action>,
    services: UseStateHandle<Option<Services>>,
) {
    services.set(None);
    dispatch.emit(Action::Booted(Boot::Loading));
    let idb = match Idb::open(&device.database_name()).await {
        Ok(opened) => opened,
        Err(error) => {
            dispatch.emit(Action::Booted(Boot::Failed(error.to_string())));
            return;
        }
    };
    match services::start(idb, device.identity(), dispatch.clone()).await {
        Ok(started) => services.set(Some(started)),
        Err(error) => dispatch.emit(Action::Booted(Boot::Failed(error.to_string()))),
    }
}

/// Online at start: learn of teams joined or a name changed since the last sign-in. A 401 is
/// left to the sync engine, which says "signed out" when it cannot connect.
async fn refresh(stored: Rc<DeviceSession>, device: UseStateHandle<Option<Rc<DeviceSession>>>) {
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
            device.set(Some(Rc::new(next)));
        }
    }
}

/// Deletes every database of the signed-out user (all their teams) from this device.
async fn delete_user_data(
    session: &DeviceSession,
    dispatch: &Callback<Action>,
) -> Result<(), crate::idb::StorageError> {
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

/// Tells the waiting service worker to take over; the page reloads when it has.
fn activate_update() {
    let window = gloo_utils::window();
    let _ = js_sys::Reflect::set(&window, &"fieldnotesUpdateAccepted".into(), &true.into());
    if let Ok(function) = js_sys::Reflect::get(&window, &"fieldnotesActivateUpdate".into())
        && let Some(function) = wasm_bindgen::JsCast::dyn_ref::<js_sys::Function>(&function)
    {
        let _ = function.call0(&window);
    }
}

/// Reads the app context; every screen is rendered inside the provider.
#[hook]
pub fn use_app() -> AppContext {
    use_context::<AppContext>().expect("screens render inside the AppContext provider")
}
