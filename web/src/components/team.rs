//! The team view: how many accounts have known reasons, which drivers matter most, stale
//! accounts and overdue follow-ups, across everything this device has synced.

use fieldnotes_model::query;
use yew::prelude::*;

use crate::components::accounts::STALE_AFTER_DAYS;
use crate::components::app::use_app;
use crate::components::fields::date;
use crate::platform::now_millis;
use crate::state::Route;

#[function_component(TeamScreen)]
pub fn team_screen() -> Html {
    let app = use_app();
    let accounts = app.state.accounts.clone();
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
                        <li>{ format!("{}: {} (due {})", o.account.name, o.follow_up.text, date(o.follow_up.due_millis)) }</li>
                    }) }
                </ul>
            </section>
            <nav class="bottom-bar">
                <button class="secondary" onclick={back}>{ "All accounts" }</button>
            </nav>
        </main>
    }
}
