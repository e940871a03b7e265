//! Creating an account: a name is enough; branch and area help the filters.

use yew::prelude::*;

use crate::components::app::use_app;
use crate::components::fields::TextField;
use crate::state::Route;

#[function_component(NewAccountScreen)]
pub fn new_account_screen() -> Html {
    let app = use_app();
    let name = use_state(String::new);
    let branch = use_state(String::new);
    let area = use_state(String::new);
    let error = use_state(|| None::<&'static str>);

    let setter = |handle: &UseStateHandle<String>| {
        let handle = handle.clone();
        Callback::from(move |value: String| handle.set(value))
    };
    let create = {
        let (name, branch, area, error) =
            (name.clone(), branch.clone(), area.clone(), error.clone());
        let services = app.services.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if name.trim().is_empty() {
                error.set(Some(
                    "Give the account a name, for example the client's trading name.",
                ));
                return;
            }
            if let Some(id) = services.create_account(name.trim(), branch.trim(), area.trim()) {
                services.navigate(Route::Account(id));
            }
        })
    };
    let services = app.services.clone();
    let cancel = Callback::from(move |_| services.navigate(Route::Accounts));
    html! {
        <main class="screen form-screen">
            <h1>{ "New account" }</h1>
            <form id="new-account" onsubmit={create}>
                <TextField label="Client name" name="name" value={(*name).clone()} on_change={setter(&name)} required=true />
                <TextField label="Branch" name="branch" value={(*branch).clone()} on_change={setter(&branch)} placeholder="e.g. North" />
                <TextField label="Address or area" name="area" value={(*area).clone()} on_change={setter(&area)} />
                if let Some(message) = *error { <p class="error" role="alert">{ message }</p> }
            </form>
            <nav class="bottom-bar">
                <button class="secondary" type="button" onclick={cancel}>{ "Cancel" }</button>
                <button class="primary" type="submit" form="new-account">{ "Create account" }</button>
            </nav>
        </main>
    }
}
