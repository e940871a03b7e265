//! Signing in: the screen shown when nobody is signed in on this device, the same form offered
//! under the status bar when the server has ended the session (email prefilled, edits kept,
//! syncing resumes by itself afterwards), and the one credentials form every sign-in, first-run
//! setup and invitation screen is made of.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use yew::prelude::*;

use crate::components::fields::TextField;
use crate::lifecycle::{self, SessionInfo};

/// At least this many characters (docs/auth.md); checked here too so the rep hears it at once.
const MIN_PASSWORD_CHARS: usize = 10;

/// What the rep typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Credentials {
    pub name: String,
    pub email: String,
    pub password: String,
    pub team: String,
}

pub type Outcome = Pin<Box<dyn Future<Output = Result<SessionInfo, String>>>>;

/// What the form does with the credentials: a call to the server that ends signed in, or the
/// words saying why not.
#[derive(Clone)]
pub struct Submit(pub Rc<dyn Fn(Credentials) -> Outcome>);

impl Submit {
    pub fn new<F: Future<Output = Result<SessionInfo, String>> + 'static>(
        submit: impl Fn(Credentials) -> F + 'static,
    ) -> Submit {
        Submit(Rc::new(move |credentials| Box::pin(submit(credentials))))
    }
}

impl PartialEq for Submit {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Properties, PartialEq)]
pub struct CredentialsFormProps {
    pub form_id: AttrValue,
    pub submit: Submit,
    pub on_done: Callback<SessionInfo>,
    pub button: AttrValue,
    #[prop_or_default]
    pub initial: Credentials,
    /// Ask for a display name / a team name (setup, invitation).
    #[prop_or_default]
    pub ask_name: bool,
    #[prop_or_default]
    pub ask_team: bool,
    /// A password being chosen (at least 10 characters) rather than typed from memory.
    #[prop_or_default]
    pub new_password: bool,
    #[prop_or_default]
    pub fixed_name: bool,
    #[prop_or_default]
    pub fixed_email: bool,
    /// The button sits in the form (a panel), not in the screen's bottom bar.
    #[prop_or_default]
    pub inline_button: bool,
}

#[function_component(CredentialsForm)]
pub fn credentials_form(props: &CredentialsFormProps) -> Html {
    let values = use_state(|| props.initial.clone());
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);
    let submit = {
        let (values, error, busy) = (values.clone(), error.clone(), busy.clone());
        let (submit, on_done) = (props.submit.clone(), props.on_done.clone());
        let (ask_name, ask_team, new_password) =
            (props.ask_name, props.ask_team, props.new_password);
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if *busy {
                return;
            }
            let mut typed = (*values).clone();
            for text in [&mut typed.name, &mut typed.email, &mut typed.team] {
                *text = text.trim().to_string();
            }
            let missing = typed.email.is_empty()
                || typed.password.is_empty()
                || (ask_name && typed.name.is_empty())
                || (ask_team && typed.team.is_empty());
            if missing {
                error.set(Some("Fill in every field.".into()));
                return;
            }
            if new_password && typed.password.chars().count() < MIN_PASSWORD_CHARS {
                error.set(Some(format!(
                    "Choose a password of at least {MIN_PASSWORD_CHARS} characters."
                )));
                return;
            }
            busy.set(true);
            error.set(None);
            let outcome = (submit.0)(typed);
            let (values, error, busy, on_done) =
                (values.clone(), error.clone(), busy.clone(), on_done.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let result = outcome.await;
                busy.set(false);
                match result {
                    Ok(info) => {
                        values.set(Credentials {
                            password: String::new(),
                            ..(*values).clone()
                        });
                        on_done.emit(info);
                    }
                    Err(problem) => error.set(Some(problem)),
                }
            });
        })
    };
    let field = |label: &'static str,
                 name: &'static str,
                 kind: &'static str,
                 autocomplete: &'static str,
                 readonly: bool,
                 get: fn(&Credentials) -> &String,
                 set: fn(&mut Credentials, String)| {
        let value = get(&values).clone();
        let values = values.clone();
        let on_change = Callback::from(move |value: String| {
            let mut next = (*values).clone();
            set(&mut next, value);
            values.set(next);
        });
        html! {
            <TextField label={label} name={name} kind={kind} autocomplete={autocomplete}
                {value} {on_change} required=true {readonly} />
        }
    };
    let button = html! {
        <button class="primary" type="submit" form={props.form_id.clone()} disabled={*busy}>
            { if *busy { "Just a moment…".into() } else { props.button.clone() } }
        </button>
    };
    html! {
        <form id={props.form_id.clone()} class="credentials" onsubmit={submit}>
            if props.ask_name {
                { field("Your name", "name", "text", "name", props.fixed_name, |c| &c.name, |c, v| c.name = v) }
            }
            { field("Email", "email", "email", "username", props.fixed_email, |c| &c.email, |c, v| c.email = v) }
            { field(
                "Password", "password", "password",
                if props.new_password { "new-password" } else { "current-password" },
                false, |c| &c.password, |c, v| c.password = v,
            ) }
            if props.new_password {
                <p class="hint">{ format!("At least {MIN_PASSWORD_CHARS} characters.") }</p>
            }
            if props.ask_team {
                { field("Team name", "team", "text", "organization", false, |c| &c.team, |c, v| c.team = v) }
            }
            if let Some(message) = &*error { <p class="error" role="alert">{ message }</p> }
            if props.inline_button {
                <div class="actions">{ button }</div>
            } else {
                <nav class="bottom-bar">{ button }</nav>
            }
        </form>
    }
}

/// Signs in with email and password; with `expected_user`, only as that user (signing in again:
/// the device holds their notes, and must not sync them as someone else).
pub fn sign_in(expected_user: Option<String>) -> Submit {
    Submit::new(move |typed: Credentials| {
        let expected_user = expected_user.clone();
        async move { lifecycle::sign_in(&typed.email, &typed.password, expected_user.as_deref()).await }
    })
}

/// Nobody is signed in on this device.
pub fn sign_in_screen(on_signed_in: Callback<SessionInfo>) -> Html {
    html! {
        <main class="screen form-screen sign-in-screen">
            <h1>{ "Sign in to Fieldnotes" }</h1>
            <p>{ "Record why each client works with us, right after the visit. Sign in once \
                  while online; after that Fieldnotes works on this phone with or without signal." }</p>
            <CredentialsForm form_id="sign-in" submit={sign_in(None)} button="Sign in"
                on_done={on_signed_in} />
            <p class="hint">{ "No account yet? Ask your administrator for an invitation link." }</p>
        </main>
    }
}
