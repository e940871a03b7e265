//! The accounts list: search, filters, sorted by what needs attention, one tap to a note.
//! It reads the phone's index entries, so a team of thousands lists at once; it draws the first
//! [`ROWS_AT_A_TIME`] rows and more on request, since nobody scrolls through ten thousand.

use std::rc::Rc;

use fieldnotes_model::query::{self, Attention, ListFilters};
use fieldnotes_model::{AccountEntry, DriverKey};
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use crate::components::app::use_app;
use crate::components::drafts::DraftBanners;
use crate::components::fields::place;
use crate::platform::now_millis;
use crate::state::Route;

/// An account with no visit note for this many days is stale.
pub const STALE_AFTER_DAYS: u32 = 30;

/// Rows drawn at first, and added by "Show more".
pub const ROWS_AT_A_TIME: usize = 100;

#[derive(Clone, PartialEq, Default)]
struct Filters {
    search: String,
    branch: String,
    driver: String,
    reasons_unknown: bool,
    overdue: bool,
}

impl Filters {
    fn query(&self) -> ListFilters {
        ListFilters {
            search: self.search.clone(),
            branch: self.branch.clone(),
            driver: DriverKey::parse(&self.driver).ok(),
            reasons_unknown: self.reasons_unknown,
            overdue: self.overdue,
        }
    }
}

#[function_component(AccountsScreen)]
pub fn accounts_screen() -> Html {
    let app = use_app();
    let filters = use_state(Filters::default);
    let limit = use_state(|| ROWS_AT_A_TIME);
    let entries = app.state.entries.clone();
    let now = now_millis();

    let shown = use_memo(
        ((*filters).clone(), entries.clone()),
        move |(filters, entries)| filter(entries, filters, now),
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
    let visible_count = query::visible(&entries).count();
    let choices = use_memo(entries.clone(), |entries| {
        let branches: Vec<String> = query::branches(entries)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let drivers: Vec<DriverKey> = query::accounts_per_driver(entries)
            .into_iter()
            .map(|c| c.driver)
            .collect();
        (branches, drivers)
    });
    let (branches, drivers) = (&choices.0, &choices.1);

    let set = |update: fn(&mut Filters, String)| {
        let (filters, limit) = (filters.clone(), limit.clone());
        move |value: String| {
            let mut next = (*filters).clone();
            update(&mut next, value);
            filters.set(next);
            limit.set(ROWS_AT_A_TIME);
        }
    };
    let show_more = {
        let limit = limit.clone();
        Callback::from(move |_| limit.set(*limit + ROWS_AT_A_TIME))
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
            if visible_count > 0 {
                <p class="list-count" data-testid="list-count">{ count_line(shown.len(), visible_count) }</p>
            }
            <ul class="account-list" data-testid="account-list" onclick={on_list_click}>
                { for shown.iter().take(*limit).map(row) }
            </ul>
            if shown.len() > *limit {
                <button class="secondary show-more" onclick={show_more}>
                    { format!("Show more ({} of {} shown)", *limit, shown.len()) }
                </button>
            }
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

/// "150 accounts", or "12 of 150 accounts" when the search or a filter narrows the list.
fn count_line(shown: usize, visible: usize) -> String {
    let noun = |n: usize| if n == 1 { "account" } else { "accounts" };
    if shown == visible {
        format!("{visible} {}", noun(visible))
    } else {
        format!("{shown} of {visible} {}", noun(visible))
    }
}

fn filter(entries: &[Rc<AccountEntry>], filters: &Filters, now: i64) -> Vec<Row> {
    query::list(entries, &filters.query(), now, STALE_AFTER_DAYS)
        .into_iter()
        .map(|(entry, attention)| Row {
            id: entry.id.as_str().to_string(),
            name: entry.name.clone(),
            place: place(&entry.branch, &entry.area),
            attention,
        })
        .collect()
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
