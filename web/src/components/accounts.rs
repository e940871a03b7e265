//! The accounts list: search, filters, sorted by what needs attention, one tap to a note.

use std::collections::BTreeSet;

use fieldnotes_model::query::{self, Attention};
use fieldnotes_model::{Account, DriverKey, Strength};
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use crate::components::app::use_app;
use crate::components::drafts::DraftBanners;
use crate::components::fields::place;
use crate::platform::now_millis;
use crate::state::Route;

/// An account with no visit note for this many days is stale.
pub const STALE_AFTER_DAYS: u32 = 30;

#[derive(Clone, PartialEq, Default)]
struct Filters {
    search: String,
    branch: String,
    driver: String,
    reasons_unknown: bool,
    overdue: bool,
}

#[function_component(AccountsScreen)]
pub fn accounts_screen() -> Html {
    let app = use_app();
    let filters = use_state(Filters::default);
    let accounts = app.state.accounts.clone();
    let now = now_millis();

    let shown = use_memo(
        ((*filters).clone(), accounts.clone()),
        move |(filters, accounts)| filter(accounts, filters, now),
    );
    // One handler for the whole list: rows are plain markup, so 500 of them render quickly.
    let on_list_click = {
        let services = app.services.clone();
        Callback::from(move |event: MouseEvent| {
            let Some(target) = event.target_dyn_into::<web_sys::Element>() else {
                return;
            };
            let Ok(Some(button)) = target.closest("[data-account]") else {
                return;
            };
            let (Some(id), Some(action)) = (
                button.get_attribute("data-account"),
                button.get_attribute("data-action"),
            ) else {
                return;
            };
            services.navigate(if action == "note" {
                Route::Capture(id)
            } else {
                Route::Account(id)
            });
        })
    };
    let visible_count = query::visible(&accounts).count();

    let branches: BTreeSet<String> = query::visible(&accounts)
        .map(|a| a.branch.clone())
        .filter(|b| !b.is_empty())
        .collect();
    let drivers: Vec<DriverKey> = query::accounts_per_driver(&accounts)
        .into_iter()
        .map(|c| c.driver)
        .collect();

    let set = |update: fn(&mut Filters, String)| {
        let filters = filters.clone();
        move |value: String| {
            let mut next = (*filters).clone();
            update(&mut next, value);
            filters.set(next);
        }
    };
    let on_search = {
        let set = set(|f, v| f.search = v);
        Callback::from(move |e: InputEvent| {
            set(e.target_unchecked_into::<HtmlInputElement>().value())
        })
    };
    let on_branch = {
        let set = set(|f, v| f.branch = v);
        Callback::from(move |e: Event| set(e.target_unchecked_into::<HtmlSelectElement>().value()))
    };
    let on_driver = {
        let set = set(|f, v| f.driver = v);
        Callback::from(move |e: Event| set(e.target_unchecked_into::<HtmlSelectElement>().value()))
    };
    let toggle_unknown = {
        let set = set(|f, _| f.reasons_unknown = !f.reasons_unknown);
        Callback::from(move |_| set(String::new()))
    };
    let toggle_overdue = {
        let set = set(|f, _| f.overdue = !f.overdue);
        Callback::from(move |_| set(String::new()))
    };
    let services = app.services.clone();
    let new_account = Callback::from(move |_| services.navigate(Route::NewAccount));
    let services = app.services.clone();
    let team = Callback::from(move |_| services.navigate(Route::Team));

    html! {
        <main class="screen accounts">
            // First on the screen: a rep back after an interruption finds the unsaved note at once.
            <DraftBanners />
            <div class="filters">
                <input
                    type="search"
                    class="search"
                    aria-label="Search accounts"
                    placeholder="Search name, branch, contact, notes"
                    value={filters.search.clone()}
                    oninput={on_search}
                />
                <div class="filter-row">
                    <select aria-label="Branch" onchange={on_branch}>
                        <option value="" selected={filters.branch.is_empty()}>{ "All branches" }</option>
                        { for branches.iter().map(|b| html! {
                            <option value={b.clone()} selected={&filters.branch == b}>{ b }</option>
                        }) }
                    </select>
                    <select aria-label="Driver" onchange={on_driver}>
                        <option value="" selected={filters.driver.is_empty()}>{ "Any reason" }</option>
                        { for drivers.iter().map(|d| html! {
                            <option value={d.as_str().to_string()} selected={filters.driver == d.as_str()}>
                                { d.label().to_string() }
                            </option>
                        }) }
                    </select>
                </div>
                <div class="chips">
                    <button type="button" class={classes!("chip", filters.reasons_unknown.then_some("on"))}
                        aria-pressed={filters.reasons_unknown.to_string()} onclick={toggle_unknown}>
                        { "Reasons unknown" }
                    </button>
                    <button type="button" class={classes!("chip", filters.overdue.then_some("on"))}
                        aria-pressed={filters.overdue.to_string()} onclick={toggle_overdue}>
                        { "Overdue follow-ups" }
                    </button>
                </div>
            </div>
            if app.state.unreadable_accounts > 0 {
                <p class="notice" role="status">{ format!(
                    "{} stored account{} could not be opened by this version of Fieldnotes. {} kept \
                     on this phone; update the app (reload while online), and if it stays, tell \
                     your administrator.",
                    app.state.unreadable_accounts,
                    if app.state.unreadable_accounts == 1 { "" } else { "s" },
                    if app.state.unreadable_accounts == 1 { "It is" } else { "They are" },
                ) }</p>
            }
            if visible_count == 0 {
                <p class="empty">{ "No accounts yet. Tap \u{201c}New account\u{201d} to add your first client." }</p>
            } else if shown.is_empty() {
                <p class="empty">{ "No account matches. Clear the search or a filter." }</p>
            }
            <ul class="account-list" data-testid="account-list" onclick={on_list_click}>
                { for shown.iter().map(row) }
            </ul>
            <nav class="bottom-bar">
                <button class="secondary" onclick={team}>{ "Team view" }</button>
                <button class="primary" onclick={new_account}>{ "New account" }</button>
            </nav>
        </main>
    }
}

/// What the list shows of one account.
#[derive(PartialEq)]
struct Row {
    id: String,
    name: String,
    place: String,
    attention: Attention,
}

fn filter(accounts: &[Account], filters: &Filters, now: i64) -> Vec<Row> {
    let mut keep: Option<BTreeSet<&str>> = None;
    if !filters.search.trim().is_empty() {
        narrow_to(
            &mut keep,
            query::search(accounts, filters.search.trim())
                .iter()
                .map(|a| a.id.as_str())
                .collect(),
        );
    }
    if !filters.branch.is_empty() {
        narrow_to(
            &mut keep,
            accounts
                .iter()
                .filter(|a| a.branch == filters.branch)
                .map(|a| a.id.as_str())
                .collect(),
        );
    }
    if let Ok(driver) = DriverKey::parse(&filters.driver) {
        narrow_to(
            &mut keep,
            query::with_driver(accounts, &driver, Strength::MINOR)
                .iter()
                .map(|a| a.id.as_str())
                .collect(),
        );
    }
    if filters.reasons_unknown {
        narrow_to(
            &mut keep,
            query::reasons_unknown(accounts)
                .iter()
                .map(|a| a.id.as_str())
                .collect(),
        );
    }
    if filters.overdue {
        narrow_to(
            &mut keep,
            query::overdue_follow_ups(accounts, now)
                .iter()
                .map(|o| o.account.id.as_str())
                .collect(),
        );
    }
    query::needs_attention(accounts, now, STALE_AFTER_DAYS)
        .into_iter()
        .filter(|(a, _)| keep.as_ref().is_none_or(|k| k.contains(a.id.as_str())))
        .map(|(a, attention)| Row {
            id: a.id.as_str().to_string(),
            name: a.name.clone(),
            place: place(a),
            attention,
        })
        .collect()
}

/// Keeps only the ids in both `keep` (if set) and `ids`.
fn narrow_to<'a>(keep: &mut Option<BTreeSet<&'a str>>, ids: Vec<&'a str>) {
    let ids: BTreeSet<&str> = ids.into_iter().collect();
    *keep = Some(match keep.take() {
        None => ids,
        Some(previous) => previous.intersection(&ids).copied().collect(),
    });
}

fn row(row: &Row) -> Html {
    let badge = match row.attention {
        Attention::OverdueFollowUp => Some(("overdue", "Follow-up overdue")),
        Attention::ReasonsUnknown => Some(("unknown", "Reasons unknown")),
        Attention::Stale => Some(("stale", "No visit note in 30 days")),
        Attention::None => None,
    };
    html! {
        <li class="account-row" key={row.id.clone()}>
            <button class="row-main" data-account={row.id.clone()} data-action="open">
                <span class="name">{ &row.name }</span>
                <span class="place">{ &row.place }</span>
                if let Some((class, text)) = badge {
                    <span class={classes!("badge", class)}>{ text }</span>
                }
            </button>
            <button class="row-note" data-account={row.id.clone()} data-action="note"
                aria-label={format!("Add a visit note to {}", row.name)}>
                { "Note" }
            </button>
        </li>
    }
}
