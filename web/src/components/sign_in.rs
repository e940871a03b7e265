//! Signing in: the screen shown when nobody is signed in on this device, and the same form
//! offered under the status bar when the server has ended the session (email prefilled, edits
//! kept, syncing resumes by itself afterwards).

use yew::prelude::*;

use crate::api::{self, ApiError, SessionInfo};
use crate::components::fields::TextField;
use crate::session;

#[derive(Properties, PartialEq)]
pub struct SignInFormProps {
    /// The `<form>` id, so a button outside it (the bottom bar) can submit it.
    pub form_id: AttrValue,
    #[prop_or_default]
    pub email: AttrValue,
    /// Signing in again: only this user (id) may sign in, since the device holds their notes.
    #[prop_or_default]
    pub expected_user: Option<AttrValue>,
    /// Render the submit button inside the form (otherwise the caller places it).
    #[prop_or_default]
    pub inline_button: bool,
    pub on_signed_in: Callback<SessionInfo>,
}

#[function_component(SignInForm)]
pub fn sign_in_form(props: &SignInFormProps) -> Html {
    let email = use_state(|| props.email.to_string());
    let password = use_state(String::new);
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);
    let submit = {
        let (email, password, error, busy) =
            (email.clone(), password.clone(), error.clone(), busy.clone());
        let expected_user = props.expected_user.clone();
        let on_signed_in = props.on_signed_in.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if *busy {
                return;
            }
            let address = email.trim().to_string();
            if address.is_empty() || password.is_empty() {
                error.set(Some("Type your email and your password.".into()));
                return;
            }
            busy.set(true);
            error.set(None);
            let (password, error, busy) = (password.clone(), error.clone(), busy.clone());
            let expected_user = expected_user.clone();
            let on_signed_in = on_signed_in.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let result = api::sign_in(&address, &password).await;
                busy.set(false);
                match result.and_then(|info| checked(info, expected_user.as_deref())) {
                    Ok(info) => {
                        password.set(String::new());
                        on_signed_in.emit(info);
                    }
                    Err(problem) => error.set(Some(problem.to_string())),
                }
            });
        })
    };
    let setter = |handle: &UseStateHandle<String>| {
        let handle = handle.clone();
        Callback::from(move |value: String| handle.set(value))
    };
    html! {
        <form id={props.form_id.clone()} class="sign-in" onsubmit={submit}>
            <TextField label="Email" name="email" kind="email" autocomplete="username"
                value={(*email).clone()} on_change={setter(&email)} required=true
                readonly={props.expected_user.is_some()} />
            <TextField label="Password" name="password" kind="password" autocomplete="current-password"
                value={(*password).clone()} on_change={setter(&password)} required=true />
            if let Some(message) = &*error { <p class="error" role="alert">{ message }</p> }
            if props.inline_button {
                <div class="actions">
                    <button class="primary" type="submit" disabled={*busy}>
                        { if *busy { "Signing in…" } else { "Sign in" } }
                    </button>
                </div>
            }
        </form>
    }
}

/// A session the app can use, or why not, in plain words. A session it cannot use is revoked
/// at once so the browser does not keep a cookie nobody asked for.
pub fn usable(info: SessionInfo) -> Result<SessionInfo, String> {
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

fn checked(info: SessionInfo, expected_user: Option<&str>) -> Result<SessionInfo, ApiError> {
    let refuse = |message: String| ApiError::Refused { status: 0, message };
    if let Some(expected) = expected_user
        && info.user_id != expected
    {
        wasm_bindgen_futures::spawn_local(async {
            let _ = api::sign_out().await;
        });
        return Err(refuse(
            "That is another person's account. This phone holds the notes of the account \
             shown above: sign in with it, or sign out in the team view to switch."
                .into(),
        ));
    }
    usable(info).map_err(refuse)
}

#[derive(Properties, PartialEq)]
pub struct SignInScreenProps {
    pub on_signed_in: Callback<SessionInfo>,
}

/// Nobody is signed in on this device.
#[function_component(SignInScreen)]
pub fn sign_in_screen(props: &SignInScreenProps) -> Html {
    // A sign-out made offline could not revoke the session on the server: do it now.
    use_effect_with((), |_| {
        wasm_bindgen_futures::spawn_local(async {
            if session::revoke_pending().await && api::sign_out().await.is_ok() {
                session::revoked().await;
            }
        });
        || ()
    });
    html! {
        <main class="screen form-screen sign-in-screen">
            <h1>{ "Sign in to Fieldnotes" }</h1>
            <p>{ "Record why each client works with us, right after the visit. Sign in once \
                  while online; after that Fieldnotes works on this phone with or without signal." }</p>
            <SignInForm form_id="sign-in" on_signed_in={props.on_signed_in.clone()} />
            <p class="hint">{ "No account yet? Ask your administrator for an invitation link." }</p>
            <nav class="bottom-bar">
                <button class="primary" type="submit" form="sign-in">{ "Sign in" }</button>
            </nav>
        </main>
    }
}
