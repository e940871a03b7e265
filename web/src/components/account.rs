//! One account: why they work with us, their goals, the value proposition, follow-ups,
//! contacts, the visit-note timeline, history, and archiving. Every form here keeps what is
//! typed into it as a draft until it is saved or cancelled; a form with a draft opens with it.

use fieldnotes_model::{
    Account, Contact, ContactId, DriverKey, FollowUpId, Goal, GoalId, GoalStatus, Strength,
    UsualDriver,
};
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use crate::components::app::use_app;
use crate::components::drafts::{DraftBanners, use_draft};
use crate::components::fields::{
    StrengthPicker, TextArea, TextField, date, date_time, input_date, parse_input_date, place,
};
use crate::drafts::form::{
    AccountDraft, ContactDraft, DraftKey, DriverDraft, FollowUpDraft, GoalDraft,
};
use crate::platform::now_millis;
use crate::services::new_item_id;
use crate::state::Route;

#[derive(Properties, PartialEq)]
pub struct AccountProps {
    pub id: String,
}

/// What a screen for an account says while the account is not in memory: opening (it is on
/// the phone, its document is being read), or not on the phone yet.
pub fn not_here_yet(app: &crate::components::app::AppContext, id: &str) -> &'static str {
    if app.state.entry(id).is_some() {
        "Opening this account…"
    } else {
        "This account is not on this phone yet. It arrives with the next sync."
    }
}

#[function_component(AccountScreen)]
pub fn account_screen(props: &AccountProps) -> Html {
    let app = use_app();
    let Some(account) = app.state.account(&props.id).cloned() else {
        let services = app.services.clone();
        return html! {
            <main class="screen">
                <p class="empty">{ not_here_yet(&app, &props.id) }</p>
                <nav class="bottom-bar">
                    <button class="secondary" onclick={move |_| services.navigate(Route::Accounts)}>{ "All accounts" }</button>
                </nav>
            </main>
        };
    };
    let back = {
        let services = app.services.clone();
        Callback::from(move |_| services.navigate(Route::Accounts))
    };
    let note = {
        let services = app.services.clone();
        let id = props.id.clone();
        Callback::from(move |_| services.navigate(Route::Capture(id.clone())))
    };
    html! {
        <main class="screen account" data-testid="account">
            <DraftBanners account={AttrValue::from(props.id.clone())} />
            <Details account={account.clone()} />
            <Drivers account={account.clone()} />
            <Goals account={account.clone()} />
            <ValueProposition account={account.clone()} />
            <FollowUps account={account.clone()} />
            <Contacts account={account.clone()} />
            <Timeline account={account.clone()} />
            <History account={account.clone()} />
            <Archive account={account.clone()} />
            <nav class="bottom-bar">
                <button class="secondary" onclick={back}>{ "All accounts" }</button>
                <button class="primary" onclick={note}>{ "Add visit note" }</button>
            </nav>
        </main>
    }
}

#[derive(Properties, PartialEq)]
struct SectionProps {
    account: Account,
}

#[function_component(Details)]
fn details(props: &SectionProps) -> Html {
    let app = use_app();
    let editing = use_state(|| false);
    let account = &props.account;
    let drafted = app.state.drafts.has(&DraftKey::Details {
        account: account.id.as_str().to_string(),
    });
    if *editing || drafted {
        let done = {
            let editing = editing.clone();
            Callback::from(move |_| editing.set(false))
        };
        return html! { <DetailsEditor account={account.clone()} on_done={done} /> };
    }
    let edit = {
        let editing = editing.clone();
        Callback::from(move |_| editing.set(true))
    };
    let place = place(&account.branch, &account.area);
    html! {
        <section class="account-head">
            <h1 data-testid="account-name">{ &account.name }</h1>
            <p class="place">{ place }</p>
            if account.archived {
                <p class="badge archived">{ "Archived: hidden from lists on every device" }</p>
            }
            <button class="link" onclick={edit}>{ "Edit details" }</button>
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct DetailsEditorProps {
    account: Account,
    on_done: Callback<()>,
}

#[function_component(DetailsEditor)]
fn details_editor(props: &DetailsEditorProps) -> Html {
    let app = use_app();
    let account = &props.account;
    let form = use_draft(
        DraftKey::Details {
            account: account.id.as_str().to_string(),
        },
        AccountDraft {
            name: account.name.clone(),
            branch: account.branch.clone(),
            area: account.area.clone(),
        },
    );
    let save = {
        let form = form.clone();
        let services = app.services.clone();
        let (account, on_done) = (account.clone(), props.on_done.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let draft = form.value();
            if draft.name.trim().is_empty() {
                return;
            }
            let (n, b, a) = (
                draft.name.trim().to_string(),
                draft.branch.trim().to_string(),
                draft.area.trim().to_string(),
            );
            let old = account.clone();
            if services.save_form(account.id.as_str(), &form.key(), move |doc, now| {
                if n != old.name {
                    doc.rename(&n, now)?;
                }
                if b != old.branch {
                    doc.set_branch(&b, now)?;
                }
                if a != old.area {
                    doc.set_area(&a, now)?;
                }
                Ok(())
            }) {
                on_done.emit(());
            }
        })
    };
    let cancel = {
        let (form, on_done) = (form.clone(), props.on_done.clone());
        Callback::from(move |_| {
            form.discard();
            on_done.emit(());
        })
    };
    let draft = form.value();
    html! {
        <section class="card" ref={form.node()}>
            <form onsubmit={save}>
                <TextField label="Client name" name="name" value={draft.name} on_change={form.field(|d, v| d.name = v)} required=true />
                <TextField label="Branch" name="branch" value={draft.branch} on_change={form.field(|d, v| d.branch = v)} />
                <TextField label="Address or area" name="area" value={draft.area} on_change={form.field(|d, v| d.area = v)} />
                <div class="actions">
                    <button type="button" class="secondary" onclick={cancel}>{ "Cancel" }</button>
                    <button type="submit" class="primary">{ "Save" }</button>
                </div>
            </form>
        </section>
    }
}

#[function_component(Drivers)]
fn drivers(props: &SectionProps) -> Html {
    let app = use_app();
    let editing = use_state(|| None::<DriverKey>);
    let adding = use_state(|| false);
    let account = &props.account;
    let id = account.id.as_str().to_string();
    let start_add = {
        let adding = adding.clone();
        Callback::from(move |_| adding.set(true))
    };
    let done = {
        let (adding, editing) = (adding.clone(), editing.clone());
        Callback::from(move |_| {
            adding.set(false);
            editing.set(None);
        })
    };
    // An editor with a kept draft opens with it.
    let drafted = |driver: Option<&DriverKey>| {
        app.state.drafts.has(&DraftKey::Driver {
            account: id.clone(),
            driver: driver.map(|key| key.as_str().to_string()),
        })
    };
    let adding_now = *adding || drafted(None);
    let mut drivers: Vec<_> = account.drivers.iter().collect();
    drivers.sort_by(|a, b| b.1.strength.cmp(&a.1.strength).then(a.0.cmp(b.0)));
    html! {
        <section class="card drivers" data-testid="drivers">
            <h2>{ "Why they work with us" }</h2>
            if drivers.is_empty() && !adding_now {
                <p class="hint">{ "Reasons unknown. Add what this client values: relationship, service, delivery…" }</p>
            }
            <ul>
                { for drivers.into_iter().map(|(key, driver)| {
                    if editing.as_ref() == Some(key) || drafted(Some(key)) {
                        html! { <DriverEditor account={id.clone()} key_choice={Some(key.clone())}
                            strength={driver.strength} evidence={driver.evidence.clone()}
                            taken={Vec::new()} on_done={done.clone()} /> }
                    } else {
                        let editing = editing.clone();
                        let key2 = key.clone();
                        html! {
                            <li class="driver">
                                <button class="row-main" onclick={move |_| editing.set(Some(key2.clone()))}>
                                    <span class="name">{ key.label().to_string() }</span>
                                    <span class={classes!("strength", format!("s{}", driver.strength.value()))}>
                                        { format!("{} · {}", driver.strength.value(), driver.strength.label()) }
                                    </span>
                                    if !driver.evidence.is_empty() {
                                        <span class="evidence">{ format!("\u{201c}{}\u{201d}", driver.evidence) }</span>
                                    }
                                </button>
                            </li>
                        }
                    }
                }) }
            </ul>
            if adding_now {
                <DriverEditor account={id.clone()} key_choice={None::<DriverKey>} strength={Strength::MATTERS}
                    evidence={String::new()} taken={account.drivers.keys().cloned().collect::<Vec<_>>()} on_done={done.clone()} />
            } else {
                <button class="secondary" onclick={start_add}>{ "Add a reason" }</button>
            }
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct DriverEditorProps {
    account: String,
    /// The driver being edited, or `None` to choose one.
    key_choice: Option<DriverKey>,
    strength: Strength,
    evidence: String,
    /// Drivers already recorded (not offered again when adding).
    taken: Vec<DriverKey>,
    on_done: Callback<()>,
}

#[function_component(DriverEditor)]
fn driver_editor(props: &DriverEditorProps) -> Html {
    let app = use_app();
    let form = use_draft(
        DraftKey::Driver {
            account: props.account.clone(),
            driver: props.key_choice.as_ref().map(|k| k.as_str().to_string()),
        },
        DriverDraft {
            choice: props
                .key_choice
                .as_ref()
                .map(|k| k.as_str().to_string())
                .unwrap_or_else(|| {
                    UsualDriver::ALL
                        .iter()
                        .map(|d| DriverKey::usual(*d))
                        .find(|k| !props.taken.contains(k))
                        .map(|k| k.as_str().to_string())
                        .unwrap_or_else(|| "custom".to_string())
                }),
            custom: String::new(),
            strength: props.strength,
            evidence: props.evidence.clone(),
        },
    );
    let error = use_state(|| None::<String>);
    let save = {
        let (form, error) = (form.clone(), error.clone());
        let services = app.services.clone();
        let account = props.account.clone();
        let on_done = props.on_done.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let draft = form.value();
            let key = if draft.choice == "custom" {
                DriverKey::custom(draft.custom.trim())
            } else {
                DriverKey::parse(&draft.choice)
            };
            let key = match key {
                Ok(key) => key,
                Err(_) => {
                    error.set(Some(
                        "Name the reason in a few words, e.g. \u{201c}Weekend opening\u{201d}."
                            .into(),
                    ));
                    return;
                }
            };
            let (s, e) = (draft.strength, draft.evidence.trim().to_string());
            if services.save_form(&account, &form.key(), move |doc, now| {
                doc.set_driver(&key, s, &e, now)
            }) {
                on_done.emit(());
            }
        })
    };
    let remove = props.key_choice.clone().map(|key| {
        let form = form.clone();
        let services = app.services.clone();
        let account = props.account.clone();
        let on_done = props.on_done.clone();
        Callback::from(move |_| {
            let key = key.clone();
            if services.save_form(&account, &form.key(), move |doc, now| {
                doc.remove_driver(&key, now)
            }) {
                on_done.emit(());
            }
        })
    });
    let on_choice = {
        let form = form.clone();
        Callback::from(move |e: Event| {
            let value = e.target_unchecked_into::<HtmlSelectElement>().value();
            form.edit(|draft| draft.choice = value)
        })
    };
    let on_strength = {
        let form = form.clone();
        Callback::from(move |s: Strength| form.edit(|draft| draft.strength = s))
    };
    let cancel = {
        let (form, on_done) = (form.clone(), props.on_done.clone());
        Callback::from(move |_| {
            form.discard();
            on_done.emit(())
        })
    };
    let draft = form.value();
    html! {
        <li class="driver-editor" ref={form.node()}>
            <form onsubmit={save}>
                if let Some(key) = &props.key_choice {
                    <h3>{ key.label().to_string() }</h3>
                } else {
                    <label class="field">
                        <span>{ "Reason" }</span>
                        <select name="driver" onchange={on_choice}>
                            { for UsualDriver::ALL.iter().map(|d| DriverKey::usual(*d)).filter(|k| !props.taken.contains(k)).map(|k| html! {
                                <option value={k.as_str().to_string()} selected={draft.choice == k.as_str()}>{ k.label().to_string() }</option>
                            }) }
                            <option value="custom" selected={draft.choice == "custom"}>{ "Something else…" }</option>
                        </select>
                    </label>
                    if draft.choice == "custom" {
                        <TextField label="Their own reason" name="custom" value={draft.custom.clone()} on_change={form.field(|d, v| d.custom = v)} />
                    }
                }
                <StrengthPicker value={draft.strength} on_change={on_strength} />
                <TextArea label="Evidence: what they said or did" name="evidence" value={draft.evidence} on_change={form.field(|d, v| d.evidence = v)} rows={2} />
                if let Some(message) = &*error { <p class="error" role="alert">{ message }</p> }
                <div class="actions">
                    if let Some(remove) = remove { <button type="button" class="danger" onclick={remove}>{ "Remove" }</button> }
                    <button type="button" class="secondary" onclick={cancel}>{ "Cancel" }</button>
                    <button type="submit" class="primary">{ "Save reason" }</button>
                </div>
            </form>
        </li>
    }
}

#[function_component(Goals)]
fn goals(props: &SectionProps) -> Html {
    let app = use_app();
    let id = props.account.id.as_str().to_string();
    let form = use_draft(
        DraftKey::Goal {
            account: id.clone(),
        },
        GoalDraft::default(),
    );
    let add = {
        let (form, services, id) = (form.clone(), app.services.clone(), id.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let text = form.get(|draft| draft.title.trim().to_string());
            if text.is_empty() {
                return;
            }
            let goal = Goal {
                title: text,
                status: GoalStatus::NotStarted,
            };
            if services.save_form(&id, &form.key(), move |doc, now| {
                doc.set_goal(&GoalId::from_random(&new_item_id()), &goal, now)
            }) {
                form.reset();
            }
        })
    };
    const STATUSES: [(GoalStatus, &str); 4] = [
        (GoalStatus::NotStarted, "Not started"),
        (GoalStatus::InProgress, "In progress"),
        (GoalStatus::Achieved, "Achieved"),
        (GoalStatus::Abandoned, "Dropped"),
    ];
    html! {
        <section class="card goals">
            <h2>{ "Progress on their terms" }</h2>
            <ul>
                { for props.account.goals.iter().map(|(goal_id, goal)| {
                    let services = app.services.clone();
                    let (id, goal_id) = (id.clone(), goal_id.clone());
                    let onchange = Callback::from(move |e: Event| {
                        let status = GoalStatus::parse(&e.target_unchecked_into::<HtmlSelectElement>().value());
                        let goal_id = goal_id.clone();
                        services.edit(&id, move |doc, now| doc.set_goal_status(&goal_id, &status, now));
                    });
                    html! {
                        <li class="goal">
                            <span>{ &goal.title }</span>
                            <select aria-label={format!("Status of {}", goal.title)} {onchange}>
                                { for STATUSES.iter().map(|(status, label)| html! {
                                    <option value={status.as_str().to_string()} selected={&goal.status == status}>{ *label }</option>
                                }) }
                            </select>
                        </li>
                    }
                }) }
            </ul>
            <form class="inline-add" onsubmit={add} ref={form.node()}>
                <TextField label="Their goal" name="goal" value={form.get(|d| d.title.clone())} on_change={form.field(|d, v| d.title = v)} placeholder="e.g. open a second depot" />
                <button type="submit" class="secondary">{ "Add goal" }</button>
            </form>
        </section>
    }
}

/// The value proposition: a collaborative text. Each edit is sent as a splice of what changed
/// (common prefix and suffix kept), so concurrent typing by colleagues merges letter by letter.
#[function_component(ValueProposition)]
fn value_proposition(props: &SectionProps) -> Html {
    let app = use_app();
    let current = props.account.value_proposition.clone();
    let oninput = {
        let services = app.services.clone();
        let id = props.account.id.as_str().to_string();
        let before = current.clone();
        Callback::from(move |value: String| {
            let (position, delete, insert) = splice_between(&before, &value);
            if delete == 0 && insert.is_empty() {
                return;
            }
            services.edit(&id, move |doc, now| {
                doc.splice_value_proposition(position, delete, &insert, now)
            });
        })
    };
    html! {
        <section class="card value-proposition">
            <h2>{ "Value proposition" }</h2>
            <TextArea label="What we offer this client, in their terms" name="value-proposition"
                value={current} on_change={oninput} rows={4} />
        </section>
    }
}

/// The single splice (position, deleted count, inserted text) that turns `before` into
/// `after`, in Unicode code points.
pub fn splice_between(before: &str, after: &str) -> (usize, usize, String) {
    let old: Vec<char> = before.chars().collect();
    let new: Vec<char> = after.chars().collect();
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let max_suffix = old.len().min(new.len()) - prefix;
    let suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(max_suffix)
        .take_while(|(a, b)| a == b)
        .count();
    let delete = old.len() - prefix - suffix;
    let insert: String = new[prefix..new.len() - suffix].iter().collect();
    (prefix, delete, insert)
}

#[function_component(FollowUps)]
fn follow_ups(props: &SectionProps) -> Html {
    let app = use_app();
    let id = props.account.id.as_str().to_string();
    let form = use_draft(
        DraftKey::FollowUp {
            account: id.clone(),
        },
        FollowUpDraft {
            text: String::new(),
            due: input_date(now_millis() + 7 * 86_400_000),
        },
    );
    let now = now_millis();
    let add = {
        let (form, services, id) = (form.clone(), app.services.clone(), id.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let draft = form.value();
            let body = draft.text.trim().to_string();
            let Some(due_millis) = parse_input_date(&draft.due) else {
                return;
            };
            if body.is_empty() {
                return;
            }
            if services.save_form(&id, &form.key(), move |doc, now| {
                doc.add_follow_up(
                    &FollowUpId::from_random(&new_item_id()),
                    &body,
                    due_millis,
                    now,
                )
            }) {
                form.reset();
            }
        })
    };
    let draft = form.value();
    let mut items: Vec<_> = props.account.follow_ups.iter().collect();
    items.sort_by_key(|(_, f)| (f.done, f.due_millis));
    html! {
        <section class="card follow-ups" data-testid="follow-ups">
            <h2>{ "Follow-ups" }</h2>
            <ul>
                { for items.into_iter().map(|(follow_up_id, f)| {
                    let services = app.services.clone();
                    let (id, follow_up_id) = (id.clone(), follow_up_id.clone());
                    let onchange = Callback::from(move |e: Event| {
                        let done = e.target_unchecked_into::<HtmlInputElement>().checked();
                        let follow_up_id = follow_up_id.clone();
                        services.edit(&id, move |doc, now| doc.set_follow_up_done(&follow_up_id, done, now));
                    });
                    let overdue = !f.done && f.due_millis < now;
                    html! {
                        <li class={classes!("follow-up", overdue.then_some("overdue"), f.done.then_some("done"))}>
                            <label class="check">
                                <input type="checkbox" checked={f.done} {onchange} />
                                <span>{ &f.text }</span>
                            </label>
                            <span class="due">{ if overdue { format!("Overdue since {}", date(f.due_millis)) } else { format!("Due {}", date(f.due_millis)) } }</span>
                        </li>
                    }
                }) }
            </ul>
            <form class="inline-add" onsubmit={add} ref={form.node()}>
                <TextField label="New follow-up" name="follow-up" value={draft.text} on_change={form.field(|d, v| d.text = v)} />
                <TextField label="Due" name="due" kind="date" value={draft.due} on_change={form.field(|d, v| d.due = v)} />
                <button type="submit" class="secondary">{ "Add follow-up" }</button>
            </form>
        </section>
    }
}

#[function_component(Contacts)]
fn contacts(props: &SectionProps) -> Html {
    let app = use_app();
    let adding = use_state(|| false);
    let id = props.account.id.as_str().to_string();
    let form = use_draft(
        DraftKey::Contact {
            account: id.clone(),
        },
        ContactDraft::default(),
    );
    let add = {
        let (adding, form) = (adding.clone(), form.clone());
        let (services, id) = (app.services.clone(), id.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let draft = form.value();
            if draft.name.trim().is_empty() {
                return;
            }
            let contact = Contact {
                name: draft.name.trim().into(),
                role: draft.role.trim().into(),
                phone: draft.phone.trim().into(),
                email: draft.email.trim().into(),
            };
            if services.save_form(&id, &form.key(), move |doc, now| {
                doc.put_contact(&ContactId::from_random(&new_item_id()), &contact, now)
            }) {
                form.reset();
                adding.set(false);
            }
        })
    };
    let open = *adding || app.state.drafts.has(&form.key());
    let draft = form.value();
    html! {
        <section class="card contacts">
            <h2>{ "Contacts" }</h2>
            <ul>
                { for props.account.contacts.values().map(|c| html! {
                    <li class="contact">
                        <span class="name">{ &c.name }</span>
                        if !c.role.is_empty() { <span class="role">{ &c.role }</span> }
                        if !c.phone.is_empty() { <a class="tap" href={format!("tel:{}", c.phone)}>{ &c.phone }</a> }
                        if !c.email.is_empty() { <a class="tap" href={format!("mailto:{}", c.email)}>{ &c.email }</a> }
                    </li>
                }) }
            </ul>
            if open {
                <form onsubmit={add} ref={form.node()}>
                    <TextField label="Name" name="contact-name" value={draft.name} on_change={form.field(|d, v| d.name = v)} required=true />
                    <TextField label="Role" name="contact-role" value={draft.role} on_change={form.field(|d, v| d.role = v)} />
                    <TextField label="Phone" name="contact-phone" kind="tel" value={draft.phone} on_change={form.field(|d, v| d.phone = v)} />
                    <TextField label="Email" name="contact-email" kind="email" value={draft.email} on_change={form.field(|d, v| d.email = v)} />
                    <div class="actions"><button type="submit" class="primary">{ "Save contact" }</button></div>
                </form>
            } else {
                <button class="secondary" onclick={{ let adding = adding.clone(); move |_| adding.set(true) }}>{ "Add contact" }</button>
            }
        </section>
    }
}

#[function_component(Timeline)]
fn timeline(props: &SectionProps) -> Html {
    let mut notes: Vec<_> = props.account.notes.iter().collect();
    notes.sort_by_key(|note| std::cmp::Reverse(note.time_millis));
    html! {
        <section class="card timeline" data-testid="timeline">
            <h2>{ "Visit notes" }</h2>
            if notes.is_empty() { <p class="hint">{ "No visit notes yet." }</p> }
            <ol>
                { for notes.into_iter().map(|note| html! {
                    <li class="note">
                        <p class="meta">{ format!("{} · {}", date_time(note.time_millis), note.author.as_str()) }</p>
                        if !note.text.is_empty() { <p class="text">{ &note.text }</p> }
                        if !note.drivers.is_empty() {
                            <p class="tags">{ for note.drivers.iter().map(|d| html! { <span class="tag">{ d.label().to_string() }</span> }) }</p>
                        }
                        { for note.objections.iter().map(|o| html! { <p class="objection">{ format!("Objection: {o}") }</p> }) }
                    </li>
                }) }
            </ol>
        </section>
    }
}

#[function_component(History)]
fn history(props: &SectionProps) -> Html {
    let app = use_app();
    let open = use_state(|| false);
    let toggle = {
        let open = open.clone();
        Callback::from(move |_| open.set(!*open))
    };
    let entries = if *open {
        app.services.history(props.account.id.as_str())
    } else {
        Vec::new()
    };
    html! {
        <section class="card history">
            <button class="link" onclick={toggle}>{ if *open { "Hide history" } else { "Who changed what" } }</button>
            if *open {
                <ol>
                    { for entries.iter().rev().map(|entry| html! {
                        <li>
                            { format!("{} · {} · {}",
                                date_time(entry.time_millis),
                                entry.user.as_ref().map(|u| u.as_str().to_string()).unwrap_or_else(|| "unknown".into()),
                                entry.message.clone().unwrap_or_default()) }
                        </li>
                    }) }
                </ol>
            }
        </section>
    }
}

#[function_component(Archive)]
fn archive(props: &SectionProps) -> Html {
    let app = use_app();
    let confirming = use_state(|| false);
    let id = props.account.id.as_str().to_string();
    if props.account.archived {
        let services = app.services.clone();
        let restore = Callback::from(move |_| {
            services.edit(&id, |doc, now| doc.restore(now));
        });
        return html! { <section class="card"><button class="secondary" onclick={restore}>{ "Restore account" }</button></section> };
    }
    if *confirming {
        let services = app.services.clone();
        let confirm = Callback::from(move |_| {
            if services.edit(&id, |doc, now| doc.archive(now)) {
                services.navigate(Route::Accounts);
            }
        });
        let cancel = {
            let confirming = confirming.clone();
            Callback::from(move |_| confirming.set(false))
        };
        return html! {
            <section class="card">
                <p>{ "Archive hides this account on every device of the team. Its notes are kept." }</p>
                <div class="actions">
                    <button class="secondary" onclick={cancel}>{ "Keep it" }</button>
                    <button class="danger" onclick={confirm}>{ "Archive" }</button>
                </div>
            </section>
        };
    }
    let ask = {
        let confirming = confirming.clone();
        Callback::from(move |_| confirming.set(true))
    };
    html! { <section class="card"><button class="link danger" onclick={ask}>{ "Archive account" }</button></section> }
}

#[cfg(test)]
mod tests {
    use super::splice_between;

    #[test]
    fn a_splice_keeps_the_common_prefix_and_suffix() {
        assert_eq!(
            splice_between("hello world", "hello brave world"),
            (6, 0, "brave ".into())
        );
        assert_eq!(
            splice_between("hello world", "hello"),
            (5, 6, String::new())
        );
        assert_eq!(splice_between("", "abc"), (0, 0, "abc".into()));
        assert_eq!(splice_between("aaa", "aa"), (2, 1, String::new()));
        assert_eq!(splice_between("café", "cafés"), (4, 0, "s".into()));
        assert_eq!(splice_between("same", "same"), (4, 0, String::new()));
    }
}
