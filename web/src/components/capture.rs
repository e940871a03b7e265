//! Quick capture after a visit: the note, the drivers it touches, an objection, a follow-up.
//! From the list this is one tap ("Note"), typing, and one tap ("Save note"). Everything typed
//! is kept as a draft as it is typed, until "Save note" or "Cancel".

use fieldnotes_model::{DriverKey, FollowUpId, NewFollowUp, NewNote, NoteId};
use yew::prelude::*;

use crate::components::account::not_here_yet;
use crate::components::app::use_app;
use crate::components::drafts::use_draft;
use crate::components::fields::{
    DriverChips, TextArea, TextField, date_time, input_date, parse_input_date,
};
use crate::drafts::form::{DraftKey, NoteDraft};
use crate::platform::now_millis;
use crate::services::new_item_id;
use crate::state::Route;

const DAY_MILLIS: i64 = 86_400_000;

#[derive(Properties, PartialEq)]
pub struct CaptureProps {
    pub id: String,
}

#[function_component(CaptureScreen)]
pub fn capture_screen(props: &CaptureProps) -> Html {
    let app = use_app();
    let form = use_draft(
        DraftKey::Note {
            account: props.id.clone(),
        },
        NoteDraft {
            due: input_date(now_millis() + 7 * DAY_MILLIS),
            ..NoteDraft::default()
        },
    );
    let error = use_state(|| None::<&'static str>);

    let Some(account) = app.state.account(&props.id).cloned() else {
        return html! { <main class="screen"><p class="empty">{ not_here_yet(&app, &props.id) }</p></main> };
    };
    let toggle = {
        let form = form.clone();
        Callback::from(move |key: DriverKey| {
            form.edit(|note| match note.drivers.iter().position(|k| k == &key) {
                Some(i) => {
                    note.drivers.remove(i);
                }
                None => note.drivers.push(key),
            })
        })
    };
    let save = {
        let (form, error) = (form.clone(), error.clone());
        let services = app.services.clone();
        let id = props.id.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let draft = form.value();
            let note_text = draft.text.trim().to_string();
            if note_text.is_empty() && draft.follow_up.trim().is_empty() {
                error.set(Some(
                    "Write what you learned, or a follow-up, before saving.",
                ));
                return;
            }
            let due_millis = if draft.follow_up.trim().is_empty() {
                None
            } else {
                match parse_input_date(&draft.due) {
                    Some(millis) => Some(millis),
                    None => {
                        error.set(Some("Pick a due date for the follow-up."));
                        return;
                    }
                }
            };
            let note = NewNote {
                id: NoteId::from_random(&new_item_id()),
                text: note_text.clone(),
                drivers: draft.drivers.clone(),
                objections: Some(draft.objection.trim().to_string())
                    .filter(|o| !o.is_empty())
                    .into_iter()
                    .collect(),
            };
            let follow_up = due_millis.map(|due_millis| NewFollowUp {
                id: FollowUpId::from_random(&new_item_id()),
                text: draft.follow_up.trim().to_string(),
                due_millis,
            });
            // The model's rule: a driver ticked on a note is recorded as a reason.
            let saved = services.save_form(&id, &form.key(), move |doc, now| {
                doc.record_visit(note, follow_up, now)
            });
            if saved {
                form.reset();
                services.navigate(Route::Account(id.clone()));
            }
        })
    };
    // Cancel throws the draft away ("Undo" can bring it back); any other way out keeps it.
    let cancel = {
        let (form, services) = (form.clone(), app.services.clone());
        let id = props.id.clone();
        Callback::from(move |_| {
            form.discard();
            services.navigate(Route::Account(id.clone()));
        })
    };
    let extra: Vec<DriverKey> = account
        .drivers
        .keys()
        .filter(|k| k.is_custom())
        .cloned()
        .collect();
    let note = form.value();
    html! {
        <main class="screen form-screen capture">
            <h1>{ format!("Note: {}", account.name) }</h1>
            if let Some(millis) = form.restored_from() {
                <p class="hint draft-restored">{ format!("Your unsaved note from {}, kept on this phone.", date_time(millis)) }</p>
            }
            <form id="capture" onsubmit={save} ref={form.node()}>
                <TextArea label="What did you learn?" name="note" rows={5} autofocus=true
                    value={note.text} on_change={form.field(|d, v| d.text = v)}
                    placeholder="What they said, what they need, why they buy from us" />
                <fieldset>
                    <legend>{ "Why they work with us (tick what this touches)" }</legend>
                    <DriverChips selected={note.drivers} on_toggle={toggle} {extra} />
                </fieldset>
                <TextField label="Objection or resistance heard" name="objection"
                    value={note.objection} on_change={form.field(|d, v| d.objection = v)} placeholder="Optional" />
                <div class="follow-up-fields">
                    <TextField label="Follow-up" name="follow-up" value={note.follow_up}
                        on_change={form.field(|d, v| d.follow_up = v)} placeholder="Optional, e.g. send the training dates" />
                    <TextField label="Due" name="due" kind="date" value={note.due} on_change={form.field(|d, v| d.due = v)} />
                </div>
                if let Some(message) = *error { <p class="error" role="alert">{ message }</p> }
            </form>
            <nav class="bottom-bar">
                <button class="secondary" type="button" onclick={cancel}>{ "Cancel" }</button>
                <button class="primary" type="submit" form="capture">{ "Save note" }</button>
            </nav>
        </main>
    }
}
