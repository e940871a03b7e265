//! The root: lays out the status bar above the current screen, follows the location hash and
//! the browser's page events, and renders what the lifecycle ([`Lifecycle`]) holds: nobody
//! signed in, the notes opening, or the screens of the team shown.

use std::rc::Rc;

use gloo_events::EventListener;
use yew::prelude::*;

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
use crate::lifecycle::{DeviceSession, Lifecycle, SessionInfo};
use crate::platform::{activate_update, hash, page_visible};
use crate::services::Services;
use crate::state::{Action, AppState, Boot, Route, SyncPhase};

/// What every screen gets from context.
#[derive(Clone, PartialEq)]
pub struct AppContext {
    pub state: UseReducerHandle<AppState>,
    pub services: Services,
    /// Sign-in, the team switch, sign-out and what it would delete.
    pub lifecycle: Lifecycle,
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
    let sign_in_dismissed = use_state(|| false);
    let dispatch = {
        let dispatcher = state.dispatcher();
        Callback::from(move |action: Action| dispatcher.dispatch(action))
    };
    let lifecycle = {
        let (dispatch, rerender) = (dispatch.clone(), use_force_update());
        (*use_state(move || {
            Lifecycle::new(dispatch, Callback::from(move |_| rerender.force_update()))
        }))
        .clone()
    };
    let services = lifecycle.services();
    let device = lifecycle.device();

    // Boot: start at once (no network needed) if someone is signed in on this device.
    {
        let (dispatch, lifecycle) = (dispatch.clone(), lifecycle.clone());
        use_effect_with((), move |_| {
            dispatch.emit(Action::Navigate(Route::from_hash(&hash())));
            lifecycle.boot();
            || ()
        });
    }

    // Browser events: navigation, a waiting update, leaving the page, connectivity.
    {
        let dispatch = dispatch.clone();
        use_effect_with(services.clone(), move |current| {
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
                            if page_visible() {
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
        let account = state.route.account_id().map(str::to_owned);
        use_effect_with((services.clone(), account), move |(current, account)| {
            if let Some(services) = current {
                services.show_account(account.as_deref());
            }
            || ()
        });
    }

    // A sign-in, a first-run setup or an accepted invitation.
    let on_joined = {
        let (lifecycle, sign_in_dismissed) = (lifecycle.clone(), sign_in_dismissed.clone());
        Callback::from(move |(info, preferred): Joined| {
            sign_in_dismissed.set(false);
            lifecycle.joined(info, preferred);
        })
    };
    let on_signed_in = on_joined.reform(|info: SessionInfo| (info, None));
    let switch_team = {
        let lifecycle = lifecycle.clone();
        Callback::from(move |team_id: String| lifecycle.switch_team(team_id))
    };
    let sign_out = {
        let lifecycle = lifecycle.clone();
        Callback::from(move |_| lifecycle.sign_out())
    };

    let show_sign_in = {
        let sign_in_dismissed = sign_in_dismissed.clone();
        Callback::from(move |_| sign_in_dismissed.set(false))
    };

    // The invitation and setup links work whoever is (or is not) signed in here.
    let signed_in_as = device.as_ref().map(|d| SignedInAs {
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

    match (&state.boot, services, device) {
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
                lifecycle: lifecycle.clone(),
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

/// Reads the app context; every screen is rendered inside the provider.
#[hook]
pub fn use_app() -> AppContext {
    use_context::<AppContext>().expect("screens render inside the AppContext provider")
}
