//! Joining: the first-run link `fieldnotes serve` prints (`#/setup/<token>`: the first
//! administrator and their team) and an invitation link (`#/invite/<token>`: join a team).
//! Both end signed in.

use yew::prelude::*;

use crate::components::sign_in::{Credentials, CredentialsForm, Submit};
use crate::lifecycle::{self, ApiError, Invitation, SessionInfo};

/// A session and the team to open (the one just created or joined).
pub type Joined = (SessionInfo, Option<String>);

/// The first-run link: the first administrator and their team.
pub fn setup_screen(token: &str, on_joined: &Callback<Joined>) -> Html {
    let token = token.to_string();
    let submit = Submit::new(move |typed: Credentials| {
        let token = token.clone();
        async move {
            lifecycle::set_up(
                &token,
                &typed.name,
                &typed.email,
                &typed.password,
                &typed.team,
            )
            .await
        }
    });
    let on_joined = on_joined.reform(|info: SessionInfo| {
        let team = info.teams.first().map(|t| t.id.clone());
        (info, team)
    });
    html! {
        <main class="screen form-screen">
            <h1>{ "Set up Fieldnotes" }</h1>
            <p>{ "You are the first person here: create your account (you will be its \
                  administrator) and name your team. You can invite the reps afterwards." }</p>
            <CredentialsForm form_id="setup" {submit} on_done={on_joined}
                button="Create account and team" ask_name=true ask_team=true new_password=true />
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
    {
        let lookup = lookup.clone();
        use_effect_with((props.token.clone(), *attempt), move |(token, _)| {
            let token = token.to_string();
            lookup.set(Lookup::Checking);
            wasm_bindgen_futures::spawn_local(async move {
                lookup.set(match lifecycle::look_up_invitation(&token).await {
                    Ok(invitation) => Lookup::Found(invitation),
                    Err(error) => Lookup::Failed(error),
                });
            });
            || ()
        });
    }
    let submit = use_memo(props.token.clone(), |token| {
        let token = token.to_string();
        Submit::new(move |typed: Credentials| {
            let token = token.clone();
            async move {
                lifecycle::accept_invitation(&token, &typed.name, &typed.email, &typed.password)
                    .await
            }
        })
    });
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
                    if *problem == ApiError::Unreachable {
                        <nav class="bottom-bar">
                            <button class="primary" onclick={retry}>{ "Try again" }</button>
                        </nav>
                    }
                </main>
            };
        }
        Lookup::Found(invitation) => invitation.clone(),
    };
    let signed_in = props.signed_in.clone();
    let team = invitation.team.clone();
    // Signed in here as someone the invitation is not for: the app cannot hold two people's
    // notes at once.
    if let (Some(me), Some(named)) = (&signed_in, &invitation.email)
        && !me.email.eq_ignore_ascii_case(named)
    {
        return html! {
            <main class="screen form-screen">
                <h1>{ format!("Join {}", team.name) }</h1>
                <p class="error" role="alert">{ format!(
                    "This invitation is for {named}, but {} is signed in on this phone. Sign out \
                     in the team view, then open the invitation link again.",
                    me.email
                ) }</p>
            </main>
        };
    }
    let on_joined = {
        let team = team.id.clone();
        props
            .on_joined
            .reform(move |info: SessionInfo| (info, Some(team.clone())))
    };
    let initial = Credentials {
        name: signed_in
            .as_ref()
            .map(|me| me.name.clone())
            .unwrap_or_default(),
        email: signed_in
            .as_ref()
            .map(|me| me.email.clone())
            .or(invitation.email.clone())
            .unwrap_or_default(),
        ..Credentials::default()
    };
    let role = if team.role == "manager" {
        "a manager"
    } else {
        "a rep"
    };
    html! {
        <main class="screen form-screen">
            <h1>{ format!("Join {}", team.name) }</h1>
            <p>{ format!("You are invited to the team {} as {role}.", team.name) }</p>
            <p class="hint">{
                if signed_in.is_some() {
                    "Type your password to add this team to your account."
                } else {
                    "New here? Choose a password. Already have a Fieldnotes account? Use its \
                     email and password."
                }
            }</p>
            <CredentialsForm form_id="join" submit={(*submit).clone()} on_done={on_joined} {initial}
                button={format!("Join {}", team.name)} ask_name=true
                new_password={signed_in.is_none()} fixed_name={signed_in.is_some()}
                fixed_email={signed_in.is_some() || invitation.email.is_some()} />
        </main>
    }
}
