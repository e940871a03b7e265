//! First run on a device: who is using it. Sign-in replaces this once accounts exist on the
//! server; until then the name is what notes and history show as the author.

use fieldnotes_model::{TeamId, UserId};
use yew::prelude::*;

use crate::components::fields::TextField;
use crate::services::Identity;

#[derive(Properties, PartialEq)]
pub struct IdentityProps {
    pub on_done: Callback<Identity>,
}

#[function_component(IdentityScreen)]
pub fn identity_screen(props: &IdentityProps) -> Html {
    let name = use_state(String::new);
    let team = use_state(|| "team".to_string());
    let error = use_state(|| None::<&'static str>);
    let submit = {
        let (name, team, error) = (name.clone(), team.clone(), error.clone());
        let on_done = props.on_done.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if name.trim().is_empty() {
                error.set(Some("Type your name: it shows on the notes you write."));
                return;
            }
            let team = if team.trim().is_empty() {
                "team"
            } else {
                team.trim()
            };
            on_done.emit(Identity {
                user: UserId::new(name.trim()),
                team: TeamId::new(team),
            });
        })
    };
    let set_name = {
        let name = name.clone();
        Callback::from(move |v: String| name.set(v))
    };
    let set_team = {
        let team = team.clone();
        Callback::from(move |v: String| team.set(v))
    };
    html! {
        <main class="screen form-screen">
            <h1>{ "Welcome to Fieldnotes" }</h1>
            <p>{ "Record why each client works with us, right after the visit, with or without signal." }</p>
            <form id="identity" onsubmit={submit}>
                <TextField label="Your name" name="user" value={(*name).clone()} on_change={set_name} required=true />
                <TextField label="Team" name="team" value={(*team).clone()} on_change={set_team} />
                if let Some(message) = *error { <p class="error" role="alert">{ message }</p> }
            </form>
            <nav class="bottom-bar">
                <button class="primary" type="submit" form="identity">{ "Start" }</button>
            </nav>
        </main>
    }
}
