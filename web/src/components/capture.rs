//! Quick capture after a visit: the note, the drivers it touches, an objection, a follow-up.
//! From the list this is one tap ("Note"), typing, and one tap ("Save note").

use fieldnotes_model::{DriverKey, FollowUpId, NewNote, NoteId, Strength};
use yew::prelude::*;

use crate::components::app::use_app;
use crate::components::fields::{DriverChips, TextArea, TextField, input_date, parse_input_date};
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
    let text = use_state(String::new);
    let drivers = use_state(Vec::<DriverKey>::new);
    let objection = use_state(String::new);
    let follow_up = use_state(String::new);
    let due = use_state(|| input_date(now_millis() + 7 * DAY_MILLIS));
    let error = use_state(|| None::<&'static str>);

    let Some(account) = app.state.account(&props.id).cloned() else {
        return html! { <main class="screen"><p class="empty">{ "This account is not on this phone yet. It arrives with the next sync." }</p></main> };
    };
    let setter = |handle: &UseStateHandle<String>| {
        let handle = handle.clone();
        Callback::from(move |value: String| handle.set(value))
    };
    let toggle = {
        let drivers = drivers.clone();
        Callback::from(move |key: DriverKey| {
            let mut next = (*drivers).clone();
            match next.iter().position(|k| k == &key) {
                Some(i) => {
                    next.remove(i);
                }
                None => next.push(key),
            }
            drivers.set(next);
        })
    };
    let save = {
        let (text, drivers, objection, follow_up, due, error) = (
            text.clone(),
            drivers.clone(),
            objection.clone(),
            follow_up.clone(),
            due.clone(),
            error.clone(),
        );
        let services = app.services.clone();
        let id = props.id.clone();
        let known: Vec<DriverKey> = account.drivers.keys().cloned().collect();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let note_text = text.trim().to_string();
            if note_text.is_empty() && follow_up.trim().is_empty() {
                error.set(Some(
                    "Write what you learned, or a follow-up, before saving.",
                ));
                return;
            }
            let due_millis = if follow_up.trim().is_empty() {
                None
            } else {
                match parse_input_date(&due) {
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
                drivers: (*drivers).clone(),
                objections: Some(objection.trim().to_string())
                    .filter(|o| !o.is_empty())
                    .into_iter()
                    .collect(),
            };
            let follow_up_text = follow_up.trim().to_string();
            let new_drivers: Vec<DriverKey> = drivers
                .iter()
                .filter(|d| !known.contains(d))
                .cloned()
                .collect();
            let saved = services.edit(&id, move |doc, now| {
                if !note.text.is_empty() || !note.drivers.is_empty() || !note.objections.is_empty()
                {
                    // A driver ticked on a note is a reason this client works with us: record it
                    // on the account (strength "matters", the note as evidence) so the account
                    // no longer counts as "reasons unknown". The rep can adjust it later.
                    for driver in &new_drivers {
                        doc.set_driver(driver, Strength::MATTERS, &note.text, now)?;
                    }
                    doc.add_note(note, now)?;
                }
                if let Some(due) = due_millis {
                    doc.add_follow_up(
                        &FollowUpId::from_random(&new_item_id()),
                        &follow_up_text,
                        due,
                        now,
                    )?;
                }
                Ok(())
            });
            if saved {
                services.navigate(Route::Account(id.clone()));
            }
        })
    };
    let cancel = {
        let services = app.services.clone();
        let id = props.id.clone();
        Callback::from(move |_| services.navigate(Route::Account(id.clone())))
    };
    let extra: Vec<DriverKey> = account
        .drivers
        .keys()
        .filter(|k| k.is_custom())
        .cloned()
        .collect();
    html! {
        <main class="screen form-screen capture">
            <h1>{ format!("Note: {}", account.name) }</h1>
            <form id="capture" onsubmit={save}>
                <TextArea label="What did you learn?" name="note" rows={5} autofocus=true
                    value={(*text).clone()} on_change={setter(&text)}
                    placeholder="What they said, what they need, why they buy from us" />
                <fieldset>
                    <legend>{ "Why they work with us (tick what this touches)" }</legend>
                    <DriverChips selected={(*drivers).clone()} on_toggle={toggle} {extra} />
                </fieldset>
                <TextField label="Objection or resistance heard" name="objection"
                    value={(*objection).clone()} on_change={setter(&objection)} placeholder="Optional" />
                <div class="follow-up-fields">
                    <TextField label="Follow-up" name="follow-up" value={(*follow_up).clone()}
                        on_change={setter(&follow_up)} placeholder="Optional, e.g. send the training dates" />
                    <TextField label="Due" name="due" kind="date" value={(*due).clone()} on_change={setter(&due)} />
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
