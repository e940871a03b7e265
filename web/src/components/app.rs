//! The root: boots storage and services, follows the location hash, and lays out the status
//! bar above the current screen.

use gloo_events::EventListener;
use yew::prelude::*;

use crate::components::{
    account::AccountScreen, accounts::AccountsScreen, capture::CaptureScreen,
    identity::IdentityScreen, new_account::NewAccountScreen, status::StatusBar, team::TeamScreen,
};
use crate::idb::Idb;
use crate::platform::hash;
use crate::services::{self, Identity, Services};
use crate::state::{Action, AppState, Boot, Route};

/// What every screen gets from context.
#[derive(Clone, PartialEq)]
pub struct AppContext {
    pub state: UseReducerHandle<AppState>,
    pub services: Services,
}

#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(AppState::default);
    let services = use_state(|| None::<Services>);
    let idb = use_state(|| None::<Idb>);
    let dispatch = {
        let dispatcher = state.dispatcher();
        Callback::from(move |action: Action| dispatcher.dispatch(action))
    };

    // Boot: open storage; start at once if the rep is known on this device.
    {
        let dispatch = dispatch.clone();
        let services = services.clone();
        let idb = idb.clone();
        use_effect_with((), move |_| {
            dispatch.emit(Action::Navigate(Route::from_hash(&hash())));
            wasm_bindgen_futures::spawn_local(async move {
                let opened = match Idb::open("fieldnotes").await {
                    Ok(opened) => opened,
                    Err(error) => {
                        dispatch.emit(Action::Booted(Boot::Failed(error.to_string())));
                        return;
                    }
                };
                idb.set(Some(opened.clone()));
                match services::stored_identity(&opened).await {
                    Ok(Some(identity)) => boot(opened, identity, dispatch, services).await,
                    Ok(None) => dispatch.emit(Action::Booted(Boot::NeedsIdentity)),
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

    let on_identity = {
        let dispatch = dispatch.clone();
        let services = services.clone();
        let idb = idb.clone();
        Callback::from(move |identity: Identity| {
            let Some(opened) = (*idb).clone() else { return };
            let dispatch = dispatch.clone();
            let services = services.clone();
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(error) = services::save_identity(&opened, &identity).await {
                    dispatch.emit(Action::Notice(Some(error.to_string())));
                    return;
                }
                boot(opened, identity, dispatch, services).await;
            });
        })
    };

    match (&state.boot, (*services).clone()) {
        (Boot::Failed(reason), _) => html! {
            <main class="screen boot-failed">
                <h1>{ "Fieldnotes can't open its storage" }</h1>
                <p>{ reason }</p>
                <p>{ "Close other Fieldnotes tabs and reload. If it keeps happening, make sure \
                      this is not a private window." }</p>
            </main>
        },
        (Boot::NeedsIdentity, _) => html! { <IdentityScreen on_done={on_identity} /> },
        (Boot::Ready, Some(services)) => {
            let context = AppContext {
                state: state.clone(),
                services,
            };
            let screen = match &state.route {
                Route::Accounts => html! { <AccountsScreen /> },
                Route::NewAccount => html! { <NewAccountScreen /> },
                Route::Account(id) => html! { <AccountScreen id={id.clone()} /> },
                Route::Capture(id) => html! { <CaptureScreen id={id.clone()} /> },
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
                        { for update }
                        { for notice }
                        { screen }
                    </div>
                </ContextProvider<AppContext>>
            }
        }
        _ => {
            html! { <main class="screen loading" aria-busy="true">{ "Opening your notes…" }</main> }
        }
    }
}

async fn boot(
    idb: Idb,
    identity: Identity,
    dispatch: Callback<Action>,
    services: UseStateHandle<Option<Services>>,
) {
    match services::start(idb, identity, dispatch.clone()).await {
        Ok(started) => services.set(Some(started)),
        Err(error) => dispatch.emit(Action::Booted(Boot::Failed(error.to_string()))),
    }
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
