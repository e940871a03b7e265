//! Small presentational inputs shared by the screens: they take values and callbacks and do no
//! IO.

use fieldnotes_model::{DriverKey, Strength, UsualDriver};
use web_sys::{HtmlInputElement, HtmlSelectElement, HtmlTextAreaElement};
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct TextFieldProps {
    pub label: AttrValue,
    pub value: AttrValue,
    pub on_change: Callback<String>,
    #[prop_or_default]
    pub kind: Option<AttrValue>,
    #[prop_or_default]
    pub placeholder: Option<AttrValue>,
    #[prop_or_default]
    pub name: Option<AttrValue>,
    #[prop_or_default]
    pub required: bool,
    /// What the browser may fill in (`email`, `current-password`, `new-password`, `name`).
    #[prop_or_default]
    pub autocomplete: Option<AttrValue>,
    #[prop_or_default]
    pub readonly: bool,
}

/// A labelled single-line input.
#[function_component(TextField)]
pub fn text_field(props: &TextFieldProps) -> Html {
    let oninput = {
        let on_change = props.on_change.clone();
        Callback::from(move |event: InputEvent| {
            on_change.emit(event.target_unchecked_into::<HtmlInputElement>().value())
        })
    };
    html! {
        <label class="field">
            <span>{ &props.label }</span>
            <input
                type={props.kind.clone().unwrap_or("text".into())}
                name={props.name.clone()}
                value={props.value.clone()}
                placeholder={props.placeholder.clone()}
                required={props.required}
                autocomplete={props.autocomplete.clone()}
                readonly={props.readonly}
                {oninput}
            />
        </label>
    }
}

#[derive(Properties, PartialEq)]
pub struct TextAreaProps {
    pub label: AttrValue,
    pub value: AttrValue,
    pub on_change: Callback<String>,
    #[prop_or_default]
    pub placeholder: Option<AttrValue>,
    #[prop_or_default]
    pub name: Option<AttrValue>,
    #[prop_or(3)]
    pub rows: u32,
    #[prop_or_default]
    pub autofocus: bool,
}

/// A labelled multi-line input.
#[function_component(TextArea)]
pub fn text_area(props: &TextAreaProps) -> Html {
    let oninput = {
        let on_change = props.on_change.clone();
        Callback::from(move |event: InputEvent| {
            on_change.emit(event.target_unchecked_into::<HtmlTextAreaElement>().value())
        })
    };
    html! {
        <label class="field">
            <span>{ &props.label }</span>
            <textarea
                name={props.name.clone()}
                rows={props.rows.to_string()}
                value={props.value.clone()}
                placeholder={props.placeholder.clone()}
                autofocus={props.autofocus}
                {oninput}
            />
        </label>
    }
}

#[derive(Properties, PartialEq)]
pub struct StrengthPickerProps {
    pub value: Strength,
    pub on_change: Callback<Strength>,
}

/// Strength 1 (minor) to 5 (decisive) as a select with words.
#[function_component(StrengthPicker)]
pub fn strength_picker(props: &StrengthPickerProps) -> Html {
    let onchange = {
        let on_change = props.on_change.clone();
        Callback::from(move |event: Event| {
            let value = event.target_unchecked_into::<HtmlSelectElement>().value();
            if let Some(strength) = value.parse().ok().and_then(|v| Strength::new(v).ok()) {
                on_change.emit(strength);
            }
        })
    };
    html! {
        <label class="field">
            <span>{ "How much it matters" }</span>
            <select name="strength" {onchange}>
                { for (1..=5).map(|v| {
                    let strength = Strength::new(v).expect("1 to 5 are valid strengths");
                    html! {
                        <option value={v.to_string()} selected={strength == props.value}>
                            { format!("{v} · {}", strength.label()) }
                        </option>
                    }
                }) }
            </select>
        </label>
    }
}

#[derive(Properties, PartialEq)]
pub struct DriverChipsProps {
    pub selected: Vec<DriverKey>,
    pub on_toggle: Callback<DriverKey>,
    /// Custom drivers to offer beside the usual nine.
    #[prop_or_default]
    pub extra: Vec<DriverKey>,
}

/// Toggle chips for the usual drivers and the account's own.
#[function_component(DriverChips)]
pub fn driver_chips(props: &DriverChipsProps) -> Html {
    let mut keys: Vec<DriverKey> = UsualDriver::ALL
        .iter()
        .map(|d| DriverKey::usual(*d))
        .collect();
    for key in &props.extra {
        if !keys.contains(key) {
            keys.push(key.clone());
        }
    }
    html! {
        <div class="chips" role="group" aria-label="Drivers this touches">
            { for keys.into_iter().map(|key| {
                let pressed = props.selected.contains(&key);
                let on_toggle = props.on_toggle.clone();
                let label = key.label().to_string();
                let toggled = key.clone();
                html! {
                    <button
                        type="button"
                        class={classes!("chip", pressed.then_some("on"))}
                        aria-pressed={pressed.to_string()}
                        onclick={move |_| on_toggle.emit(toggled.clone())}
                    >{ label }</button>
                }
            }) }
        </div>
    }
}

/// Formats unix millis as a local date, e.g. "26 Nov 2026".
pub fn date(millis: i64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(millis as f64));
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {}",
        date.get_date(),
        MONTHS[date.get_month() as usize % 12],
        date.get_full_year()
    )
}

/// Formats unix millis as a local date and time, e.g. "26 Nov 2026, 14:05".
pub fn date_time(millis: i64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(millis as f64));
    format!(
        "{}, {:02}:{:02}",
        self::date(millis),
        date.get_hours(),
        date.get_minutes()
    )
}

/// `yyyy-mm-dd` in local time, for `<input type="date">`.
pub fn input_date(millis: i64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(millis as f64));
    format!(
        "{:04}-{:02}-{:02}",
        date.get_full_year(),
        date.get_month() + 1,
        date.get_date()
    )
}

/// Parses `yyyy-mm-dd` as local noon (so a due date is that day wherever the rep is).
pub fn parse_input_date(text: &str) -> Option<i64> {
    let mut parts = text.split('-').map(|p| p.parse::<u32>().ok());
    let (year, month, day) = (parts.next()??, parts.next()??, parts.next()??);
    let date = js_sys::Date::new_with_year_month_day_hr(year, month as i32 - 1, day as i32, 12);
    let millis = date.get_time();
    (!millis.is_nan()).then_some(millis as i64)
}

/// "North · Riverside": the account's branch and area, whichever are set.
pub fn place(branch: &str, area: &str) -> String {
    [branch, area]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" · ")
}
