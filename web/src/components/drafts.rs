//! Drafts on screen: the hook every form keeps its fields with, the banners that say a draft
//! is waiting ("Unsaved note for Draft Depot · Continue · Discard"), and "Undo" after a
//! discard. The forms call the drafts service; none of this touches storage.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use yew::prelude::*;

use crate::components::app::use_app;
use crate::drafts::Drafts;
use crate::drafts::form::{Draft, DraftKey, FormDraft};
use crate::state::Action;

/// A form's fields, kept as a draft as the rep types. Read with [`DraftForm::get`], change
/// with [`DraftForm::field`] or [`DraftForm::edit`]; the form re-renders and the drafts service
/// writes the draft (or ends it, once the form is back at its start). The typed methods only
/// pick the form's struct out of [`Draft`]; the work is done once, in [`FormCore`].
pub struct DraftForm<T: FormDraft> {
    core: FormCore,
    form: PhantomData<T>,
}

/// What every form does with its draft, whatever its fields.
#[derive(Clone)]
struct FormCore {
    state: Rc<RefCell<FormState>>,
    drafts: Drafts,
    redraw: UseForceUpdateHandle,
    node: NodeRef,
}

struct FormState {
    key: DraftKey,
    /// The latest value, so two events before a re-render never undo each other.
    current: Draft,
    /// What the form showed when it opened with no draft.
    start: Draft,
    restored_from: Option<i64>,
}

impl FormCore {
    fn changed(&self) {
        let state = self.state.borrow();
        self.drafts.update(&state.key, &state.current, &state.start);
        drop(state);
        self.redraw.force_update();
    }

    fn reset(&self) {
        let mut state = self.state.borrow_mut();
        state.current = state.start.clone();
        drop(state);
        self.redraw.force_update();
    }

    fn discard(&self) {
        let key = self.state.borrow().key.clone();
        self.drafts.discard(&key);
        self.reset();
    }
}

impl<T: FormDraft> Clone for DraftForm<T> {
    fn clone(&self) -> Self {
        DraftForm {
            core: self.core.clone(),
            form: PhantomData,
        }
    }
}

const WRONG_KIND: &str = "a form keeps its own kind of draft";

impl<T: FormDraft> DraftForm<T> {
    /// Reads the form's current value.
    pub fn get<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        read(T::from_draft(&self.core.state.borrow().current).expect(WRONG_KIND))
    }

    pub fn value(&self) -> T {
        self.get(T::clone)
    }

    /// Changes the form and keeps the draft.
    pub fn edit(&self, change: impl FnOnce(&mut T)) {
        change(T::from_draft_mut(&mut self.core.state.borrow_mut().current).expect(WRONG_KIND));
        self.core.changed();
    }

    /// A callback for an input: sets one field to the text typed.
    pub fn field(&self, set: fn(&mut T, String)) -> Callback<String> {
        let form = self.clone();
        Callback::from(move |value: String| form.edit(|draft| set(draft, value)))
    }

    /// The draft this form keeps.
    pub fn key(&self) -> DraftKey {
        self.core.state.borrow().key.clone()
    }

    /// When the rep last typed into the draft this form opened with, if it opened with one.
    pub fn restored_from(&self) -> Option<i64> {
        self.core.state.borrow().restored_from
    }

    /// The form's element, so "Continue" can bring it into view.
    pub fn node(&self) -> NodeRef {
        self.core.node.clone()
    }

    /// Back to the start after a save (which ended the draft with it).
    pub fn reset(&self) {
        self.core.reset();
    }

    /// "Cancel": the draft is discarded ("Undo" can bring it back) and the form starts over.
    pub fn discard(&self) {
        self.core.discard();
    }
}

/// Keeps a form's fields as the draft `key`; `start` is what the form shows when no draft is
/// kept (empty fields, or the account as it is for an edit). Both are read when the form
/// opens only.
#[hook]
pub fn use_draft<T: FormDraft>(key: DraftKey, start: T) -> DraftForm<T> {
    DraftForm {
        core: use_form_core(key, start.into_draft()),
        form: PhantomData,
    }
}

#[hook]
fn use_form_core(key: DraftKey, start: Draft) -> FormCore {
    let app = use_app();
    let drafts = app.services.drafts.clone();
    let state = use_mut_ref({
        let drafts = drafts.clone();
        move || {
            let kept = drafts.get(&key).filter(|kept| key.fits(&kept.draft));
            FormState {
                current: kept
                    .as_ref()
                    .map_or_else(|| start.clone(), |kept| kept.draft.clone()),
                restored_from: kept.map(|kept| kept.updated_millis),
                key,
                start,
            }
        }
    });
    let redraw = use_force_update();
    let node = use_node_ref();
    // "Continue" on the account list: bring this form into view, its first field focused.
    {
        let (state, node, app_state) = (state.clone(), node.clone(), app.state.clone());
        use_effect_with(app.state.draft_focus.clone(), move |focus| {
            if focus.as_ref() == Some(&state.borrow().key)
                && let Some(element) = node.cast::<web_sys::Element>()
            {
                element.scroll_into_view();
                if let Ok(Some(first)) = element.query_selector("input, textarea, select")
                    && let Ok(first) = first.dyn_into::<web_sys::HtmlElement>()
                {
                    let _ = first.focus();
                }
                app_state.dispatch(Action::FocusDraft(None));
            }
        });
    }
    FormCore {
        state,
        drafts,
        redraw,
        node,
    }
}

#[derive(Properties, PartialEq)]
pub struct DraftBannersProps {
    /// Only this account's drafts of forms that are screens of their own (the account screen
    /// fills in the others where they stand). `None`: every draft (the account list).
    #[prop_or_default]
    pub account: Option<AttrValue>,
}

/// "Unsaved note for Draft Depot · Continue · Discard", one line per kept draft.
#[function_component(DraftBanners)]
pub fn draft_banners(props: &DraftBannersProps) -> Html {
    let app = use_app();
    let drafts = &app.state.drafts;
    let shown: Vec<_> = drafts
        .kept
        .iter()
        .filter(|draft| match &props.account {
            None => true,
            Some(account) => {
                draft.key.account() == Some(account.as_str()) && draft.key.has_own_screen()
            }
        })
        .collect();
    let unreadable = if props.account.is_none() {
        drafts.unreadable
    } else {
        0
    };
    if shown.is_empty() && unreadable == 0 {
        return Html::default();
    }
    html! {
        <section class="drafts" aria-label="Unsaved drafts" data-testid="drafts">
            { for shown.into_iter().map(|draft| {
                let account = draft.key.account().and_then(|id| app.state.entry(id)).map(|a| a.name.as_str());
                let text = draft.key.describe(&draft.title, account);
                let resume = {
                    let (services, state, key) = (app.services.clone(), app.state.clone(), draft.key.clone());
                    Callback::from(move |_| {
                        if !key.has_own_screen() {
                            state.dispatch(Action::FocusDraft(Some(key.clone())));
                        }
                        services.navigate(key.route());
                    })
                };
                let discard = {
                    let (services, key) = (app.services.clone(), draft.key.clone());
                    Callback::from(move |_| services.drafts.discard(&key))
                };
                html! {
                    <div class="draft-banner">
                        <span class="draft-text">{ text }</span>
                        <span class="draft-actions">
                            <button class="secondary" onclick={resume}>{ "Continue" }</button>
                            <button class="link danger" onclick={discard}>{ "Discard" }</button>
                        </span>
                    </div>
                }
            }) }
            if unreadable > 0 {
                <p class="hint">{ format!(
                    "{unreadable} unsaved draft{} on this phone could not be opened by this version \
                     of Fieldnotes. {} kept; update the app (reload while online) to see {}.",
                    if unreadable == 1 { "" } else { "s" },
                    if unreadable == 1 { "It is" } else { "They are" },
                    if unreadable == 1 { "it" } else { "them" },
                ) }</p>
            }
        </section>
    }
}

/// "Unsaved note for Draft Depot discarded · Undo", for a while after a discard.
#[function_component(DraftUndo)]
pub fn draft_undo() -> Html {
    let app = use_app();
    let Some(discarded) = &app.state.drafts.discarded else {
        return Html::default();
    };
    let account = discarded
        .key
        .account()
        .and_then(|id| app.state.entry(id))
        .map(|a| a.name.as_str());
    let text = format!(
        "{} discarded.",
        discarded.key.describe(&discarded.title, account)
    );
    let drafts = app.services.drafts.clone();
    html! {
        <div class="notice" role="status" data-testid="draft-discarded">
            <span>{ text }</span>
            <button class="link" onclick={move |_| drafts.undo_discard()}>{ "Undo" }</button>
        </div>
    }
}
