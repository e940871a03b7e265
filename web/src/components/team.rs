//! The team view: how many accounts have known reasons, which drivers matter most, stale
//! accounts and overdue follow-ups, across everything this device has synced; and who is
//! signed in, the team switch and sign-out.

use fieldnotes_model::query;
use web_sys::HtmlSelectElement;
use yew::prelude::*;

use crate::components::accounts::STALE_AFTER_DAYS;
use crate::components::app::{AppContext, use_app};
use crate::components::fields::date;
use crate::platform::now_millis;
use crate::state::Route;

#[function_component(TeamScreen)]
pub fn team_screen() -> Html {
    let app = use_app();
    // What the rep was warned about (drafts, unsynced changes), while the warning shows.
    let confirming = use_state(|| None::<(usize, usize)>);
    let accounts = app.state.entries.clone();
    let now = now_millis();
    let visible = query::visible(&accounts).count();
    let unknown = query::reasons_unknown(&accounts).len();
    let stale = query::stale(&accounts, now, STALE_AFTER_DAYS);
    let overdue = query::overdue_follow_ups(&accounts, now);
    let per_driver = query::accounts_per_driver(&accounts);
    let widest = per_driver
        .iter()
        .map(|c| c.accounts)
        .max()
        .unwrap_or(1)
        .max(1);
    let services = app.services.clone();
    let back = Callback::from(move |_| services.navigate(Route::Accounts));
    let settings = signed_in_card(&app, &confirming);
    html! {
        <main class="screen team">
            <h1>{ "Team view" }</h1>
            <section class="card figures">
                <p><strong>{ visible - unknown }</strong>{ format!(" of {visible} accounts have known reasons") }</p>
                <p><strong>{ stale.len() }</strong>{ format!(" with no visit note in {STALE_AFTER_DAYS} days") }</p>
                <p><strong>{ overdue.len() }</strong>{ " overdue follow-ups" }</p>
            </section>
            <section class="card chart" aria-label="Which reasons matter most">
                <h2>{ "Why clients work with us" }</h2>
                { for per_driver.iter().map(|count| html! {
                    <div class="bar-row">
                        <span class="bar-label">{ count.driver.label().to_string() }</span>
                        <span class="bar" style={format!("width: {}%", count.accounts * 100 / widest)}></span>
                        <span class="bar-value">{ count.accounts }</span>
                    </div>
                }) }
            </section>
            <section class="card">
                <h2>{ "Overdue follow-ups" }</h2>
                <ul>
                    { for overdue.iter().map(|o| html! {
                        <li>{ format!("{}: {} (due {})", o.account.name, o.text, date(o.due_millis)) }</li>
                    }) }
                </ul>
            </section>
            { settings }
            <nav class="bottom-bar">
                <button class="secondary" onclick={back}>{ "All accounts" }</button>
            </nav>
        </main>
    }
}

/// The sign-out warning: what signing out would delete from this phone, and how to keep it.
fn sign_out_warning(drafts: usize, changes: usize) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    if drafts == 0 {
        return format!(
            "{} on this phone {} not reached the server yet. Signing out deletes {} from this \
             phone for good. To keep {}, get online and wait for \u{201c}All synced\u{201d} \
             before signing out.",
            plural(changes, "change", "changes"),
            if changes == 1 { "has" } else { "have" },
            if changes == 1 { "it" } else { "them" },
            if changes == 1 { "it" } else { "them" },
        );
    }
    let them = if drafts + changes == 1 { "it" } else { "them" };
    let drafts_words = plural(drafts, "unsaved draft", "unsaved drafts");
    if changes == 0 {
        return format!(
            "{drafts_words} {} on this phone. Signing out deletes {them} from this phone for \
             good. To keep {them}, open {them} from the account list and save.",
            if drafts == 1 { "is" } else { "are" },
        );
    }
    format!(
        "{drafts_words} and {} not yet synced are on this phone. Signing out deletes them from \
         this phone for good. To keep them, save the drafts, then get online and wait for \
         \u{201c}All synced\u{201d} before signing out.",
        plural(changes, "change", "changes"),
    )
}

/// Who is signed in, which team is shown, and sign-out (with a warning when changes have not
/// reached the server: signing out deletes this user's data from the device).
fn signed_in_card(app: &AppContext, confirming: &UseStateHandle<Option<(usize, usize)>>) -> Html {
    let session = app.session.clone();
    let sign_out = {
        let (confirming, lifecycle, sign_out) = (
            confirming.clone(),
            app.lifecycle.clone(),
            app.sign_out.clone(),
        );
        Callback::from(move |_| {
            let (confirming, lifecycle, sign_out) =
                (confirming.clone(), lifecycle.clone(), sign_out.clone());
            wasm_bindgen_futures::spawn_local(async move {
                // Sign-out deletes every team's data on this phone, not just the open one's.
                let kept = lifecycle.kept_on_this_phone().await;
                if kept == (0, 0) || *confirming == Some(kept) {
                    sign_out.emit(());
                } else {
                    confirming.set(Some(kept));
                }
            });
        })
    };
    let cancel = {
        let confirming = confirming.clone();
        Callback::from(move |_| confirming.set(None))
    };
    let switch_team = {
        let switch_team = app.switch_team.clone();
        Callback::from(move |event: Event| {
            switch_team.emit(event.target_unchecked_into::<HtmlSelectElement>().value())
        })
    };
    let team = session.team();
    html! {
        <section class="card signed-in" aria-label="Your account">
            <h2>{ "Your account" }</h2>
            <p data-testid="signed-in-as">{ format!("Signed in as {} ({})", session.info.name, session.info.email) }</p>
            if session.info.teams.len() > 1 {
                <label class="field">
                    <span>{ "Team" }</span>
                    <select name="team" aria-label="Team" onchange={switch_team}>
                        { for session.info.teams.iter().map(|t| html! {
                            <option value={t.id.clone()} selected={t.id == team.id}>{ &t.name }</option>
                        }) }
                    </select>
                </label>
            } else {
                <p>{ format!("Team: {}", team.name) }</p>
            }
            if let Some((drafts, pending)) = **confirming {
                // A sheet over the bottom bar: the choice is in view and within thumb reach.
                <div class="sheet warning" role="alert">
                    <p>{ sign_out_warning(drafts, pending) }</p>
                    <div class="actions">
                        <button class="secondary" onclick={cancel}>{ "Stay signed in" }</button>
                        <button class="danger" onclick={sign_out}>
                            { if drafts + pending == 1 { "Sign out and delete it" } else { "Sign out and delete them" } }
                        </button>
                    </div>
                </div>
            } else {
                <div class="actions">
                    <button class="danger" onclick={sign_out}>{ "Sign out" }</button>
                </div>
            }
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::sign_out_warning;

    #[test]
    fn the_sign_out_warning_counts_drafts_and_unsynced_changes() {
        assert_eq!(
            sign_out_warning(0, 3),
            "3 changes on this phone have not reached the server yet. Signing out deletes them \
             from this phone for good. To keep them, get online and wait for \u{201c}All \
             synced\u{201d} before signing out."
        );
        assert!(sign_out_warning(0, 1).starts_with("1 change on this phone has not reached"));
        assert_eq!(
            sign_out_warning(2, 3),
            "2 unsaved drafts and 3 changes not yet synced are on this phone. Signing out \
             deletes them from this phone for good. To keep them, save the drafts, then get \
             online and wait for \u{201c}All synced\u{201d} before signing out."
        );
        assert_eq!(
            sign_out_warning(1, 0),
            "1 unsaved draft is on this phone. Signing out deletes it from this phone for good. \
             To keep it, open it from the account list and save."
        );
        assert!(sign_out_warning(1, 1).starts_with("1 unsaved draft and 1 change not yet synced"));
    }
}
