//! Creating an account: a name is enough; branch and area help the filters. What is typed is
//! kept as a draft until "Create account" or "Cancel".

use yew::prelude::*;

use crate::components::app::use_app;
use crate::components::drafts::use_draft;
use crate::components::fields::TextField;
use crate::drafts::form::{AccountDraft, DraftKey};
use crate::state::Route;

#[function_component(NewAccountScreen)]
pub fn new_account_screen() -> Html {
    let app = use_app();
    let form = use_draft(DraftKey::NewAccount, AccountDraft::default());
    let error = use_state(|| None::<&'static str>);

    let create = {
        let (form, error) = (form.clone(), error.clone());
        let services = app.services.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let draft = form.value();
            if draft.name.trim().is_empty() {
                error.set(Some(
                    "Give the account a name, for example the client's trading name.",
                ));
                return;
            }
            if let Some(id) =
                services.create_account(draft.name.trim(), draft.branch.trim(), draft.area.trim())
            {
                form.reset();
                services.navigate(Route::Account(id));
            }
        })
    };
    let cancel = {
        let (form, services) = (form.clone(), app.services.clone());
        Callback::from(move |_| {
            form.discard();
            services.navigate(Route::Accounts);
        })
    };
    let draft = form.value();
    html! {
        <main class="screen form-screen">
            <h1>{ "New account" }</h1>
            <form id="new-account" onsubmit={create} ref={form.node()}>
                <TextField label="Client name" name="name" value={draft.name} on_change={form.field(|d, v| d.name = v)} required=true />
                <TextField label="Branch" name="branch" value={draft.branch} on_change={form.field(|d, v| d.branch = v)} placeholder="e.g. North" />
                <TextField label="Address or area" name="area" value={draft.area} on_change={form.field(|d, v| d.area = v)} />
                if let Some(message) = *error { <p class="error" role="alert">{ message }</p> }
            </form>
            <nav class="bottom-bar">
                <button class="secondary" type="button" onclick={cancel}>{ "Cancel" }</button>
                <button class="primary" type="submit" form="new-account">{ "Create account" }</button>
            </nav>
        </main>
    }
}
