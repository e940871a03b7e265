//! Joining: the first-run link `fieldnotes serve` prints (`#/setup/<token>`: the first
//! administrator and their team) and an invitation link (`#/invite/<token>`: join a team).
//! Both end signed in.

use yew::prelude::*;

use crate::api::{self, ApiError, Invitation, SessionInfo};
use crate::components::fields::TextField;
use crate::components::sign_in::usable;

/// At least this many characters (docs/auth.md); checked here too so the rep hears it at once.
const MIN_PASSWORD_CHARS: usize = 10;

/// A session and the team to open (the one just created or joined).
pub type Joined = (SessionInfo, Option<String>);

fn setter(handle: &UseStateHandle<String>) -> Callback<String> {
    let handle = handle.clone();
    Callback::from(move |value: String| handle.set(value))
}

fn password_problem(password: &str) -> Option<String> {
    (password.chars().count() < MIN_PASSWORD_CHARS)
        .then(|| format!("Choose a password of at least {MIN_PASSWORD_CHARS} characters."))
}

#[derive(Properties, PartialEq)]
pub struct SetupProps {
    pub token: AttrValue,
    pub on_joined: Callback<Joined>,
}

#[function_component(SetupScreen)]
pub fn setup_screen(props: &SetupProps) -> Html {
    let name = use_state(String::new);
    let email = use_state(String::new);
    let password = use_state(String::new);
    let team = use_state(String::new);
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);
    let submit = {
        let fields = (name.clone(), email.clone(), password.clone(), team.clone());
        let (error, busy) = (error.clone(), busy.clone());
        let token = props.token.to_string();
        let on_joined = props.on_joined.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if *busy {
                return;
            }
            let (name, email, password, team) = (
                fields.0.trim().to_string(),
                fields.1.trim().to_string(),
                (*fields.2).clone(),
                fields.3.trim().to_string(),
            );
            if name.is_empty() || email.is_empty() || team.is_empty() {
                error.set(Some(
                    "Fill in your name, your email and the team's name.".into(),
                ));
                return;
            }
            if let Some(problem) = password_problem(&password) {
                error.set(Some(problem));
                return;
            }
            busy.set(true);
            error.set(None);
            let (error, busy, token, on_joined) = (
                error.clone(),
                busy.clone(),
                token.clone(),
                on_joined.clone(),
            );
            wasm_bindgen_futures::spawn_local(async move {
                let result = api::setup(&token, &name, &email, &password, &team).await;
                busy.set(false);
                match result.map_err(|e| e.to_string()).and_then(usable) {
                    Ok(info) => {
                        let team = info.teams.first().map(|t| t.id.clone());
                        on_joined.emit((info, team));
                    }
                    Err(message) => error.set(Some(message)),
                }
            });
        })
    };
    html! {
        <main class="screen form-screen">
            <h1>{ "Set up Fieldnotes" }</h1>
            <p>{ "You are the first person here: create your account (you will be its \
                  administrator) and name your team. You can invite the reps afterwards." }</p>
            <form id="setup" onsubmit={submit}>
                <TextField label="Your name" name="name" autocomplete="name"
                    value={(*name).clone()} on_change={setter(&name)} required=true />
                <TextField label="Email" name="email" kind="email" autocomplete="username"
                    value={(*email).clone()} on_change={setter(&email)} required=true />
                <TextField label="Password" name="password" kind="password" autocomplete="new-password"
                    placeholder="At least 10 characters"
                    value={(*password).clone()} on_change={setter(&password)} required=true />
                <TextField label="Team name" name="team" placeholder="e.g. North region"
                    value={(*team).clone()} on_change={setter(&team)} required=true />
                if let Some(message) = &*error { <p class="error" role="alert">{ message }</p> }
            </form>
            <nav class="bottom-bar">
                <button class="primary" type="submit" form="setup" disabled={*busy}>
                    { if *busy { "Creating…" } else { "Create account and team" } }
                </button>
            </nav>
        </main>
    }
}

/// The user already signed in on this device, if any: an invitation then adds a team to
/// that account.
#[derive(Clone, PartialEq)]
pub struct SignedInAs {
    pub email: String,
    pub name: String,
}

#[derive(Properties, PartialEq)]
pub struct InviteProps {
    pub token: AttrValue,
    #[prop_or_default]
    pub signed_in: Option<SignedInAs>,
    pub on_joined: Callback<Joined>,
}

#[derive(Clone, PartialEq)]
enum Lookup {
    Checking,
    Found(Invitation),
    Failed(ApiError),
}

#[function_component(InviteScreen)]
pub fn invite_screen(props: &InviteProps) -> Html {
    let lookup = use_state(|| Lookup::Checking);
    let attempt = use_state(|| 0u32);
    let signed_in = props.signed_in.clone();
    let name = use_state(|| {
        signed_in
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default()
    });
    let email = use_state(|| {
        signed_in
            .as_ref()
            .map(|s| s.email.clone())
            .unwrap_or_default()
    });
    let password = use_state(String::new);
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);
    {
        let (lookup, email) = (lookup.clone(), email.clone());
        let token = props.token.to_string();
        use_effect_with((token, *attempt), move |(token, _)| {
            let token = token.clone();
            lookup.set(Lookup::Checking);
            wasm_bindgen_futures::spawn_local(async move {
                match api::invitation(&token).await {
                    Ok(invitation) => {
                        if let Some(named) = &invitation.email
                            && email.is_empty()
                        {
                            email.set(named.clone());
                        }
                        lookup.set(Lookup::Found(invitation));
                    }
                    Err(error) => lookup.set(Lookup::Failed(error)),
                }
            });
            || ()
        });
    }
    let invitation = match &*lookup {
        Lookup::Checking => {
            return html! {
                <main class="screen loading" aria-busy="true">{ "Checking your invitation…" }</main>
            };
        }
        Lookup::Failed(problem) => {
            let retry = {
                let attempt = attempt.clone();
                Callback::from(move |_| attempt.set(*attempt + 1))
            };
            return html! {
                <main class="screen form-screen">
                    <h1>{ "Join a team" }</h1>
                    <p class="error" role="alert">{ problem.to_string() }</p>
                    <nav class="bottom-bar">
                        if *problem == ApiError::Unreachable {
                            <button class="primary" onclick={retry}>{ "Try again" }</button>
                        }
                    </nav>
                </main>
            };
        }
        Lookup::Found(invitation) => invitation.clone(),
    };
    // Signed in here as someone the invitation is not for: the app cannot hold two people's
    // notes at once.
    if let (Some(me), Some(named)) = (&signed_in, &invitation.email)
        && !me.email.eq_ignore_ascii_case(named)
    {
        return html! {
            <main class="screen form-screen">
                <h1>{ format!("Join {}", invitation.team.name) }</h1>
                <p class="error" role="alert">{ format!(
                    "This invitation is for {named}, but {} is signed in on this phone. Sign out \
                     in the team view, then open the invitation link again.",
                    me.email
                ) }</p>
            </main>
        };
    }
    let submit = {
        let fields = (name.clone(), email.clone(), password.clone());
        let (error, busy) = (error.clone(), busy.clone());
        let token = props.token.to_string();
        let team = invitation.team.id.clone();
        let on_joined = props.on_joined.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if *busy {
                return;
            }
            let (name, email, password) = (
                fields.0.trim().to_string(),
                fields.1.trim().to_string(),
                (*fields.2).clone(),
            );
            if name.is_empty() || email.is_empty() {
                error.set(Some("Fill in your name and your email.".into()));
                return;
            }
            if let Some(problem) = password_problem(&password) {
                error.set(Some(problem));
                return;
            }
            busy.set(true);
            error.set(None);
            let (error, busy, token, team, on_joined) = (
                error.clone(),
                busy.clone(),
                token.clone(),
                team.clone(),
                on_joined.clone(),
            );
            wasm_bindgen_futures::spawn_local(async move {
                let result = api::accept_invitation(&token, &name, &email, &password).await;
                busy.set(false);
                match result.map_err(|e| e.to_string()).and_then(usable) {
                    Ok(info) => on_joined.emit((info, Some(team))),
                    Err(message) => error.set(Some(message)),
                }
            });
        })
    };
    let role = if invitation.team.role == "manager" {
        "a manager"
    } else {
        "a rep"
    };
    html! {
        <main class="screen form-screen">
            <h1>{ format!("Join {}", invitation.team.name) }</h1>
            <p>{ format!("You are invited to the team {} as {role}.", invitation.team.name) }</p>
            if signed_in.is_some() {
                <p class="hint">{ "Type your password to add this team to your account." }</p>
            } else {
                <p class="hint">{ "New here? Choose a password of at least 10 characters. \
                                   Already have a Fieldnotes account? Use its email and password." }</p>
            }
            <form id="join" onsubmit={submit}>
                <TextField label="Your name" name="name" autocomplete="name"
                    value={(*name).clone()} on_change={setter(&name)} required=true
                    readonly={signed_in.is_some()} />
                <TextField label="Email" name="email" kind="email" autocomplete="username"
                    value={(*email).clone()} on_change={setter(&email)} required=true
                    readonly={signed_in.is_some() || invitation.email.is_some()} />
                <TextField label="Password" name="password" kind="password"
                    autocomplete={if signed_in.is_some() { "current-password" } else { "new-password" }}
                    value={(*password).clone()} on_change={setter(&password)} required=true />
                if let Some(message) = &*error { <p class="error" role="alert">{ message }</p> }
            </form>
            <nav class="bottom-bar">
                <button class="primary" type="submit" form="join" disabled={*busy}>
                    { if *busy { "Joining…".to_string() } else { format!("Join {}", invitation.team.name) } }
                </button>
            </nav>
        </main>
    }
}
