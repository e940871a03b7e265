//! The Fieldnotes web app: Yew on WASM.

use wasm_bindgen::prelude::*;
use yew::prelude::*;

#[function_component(App)]
fn app() -> Html {
    html! { <main class="app"><h1>{ "Fieldnotes" }</h1></main> }
}

#[wasm_bindgen(start)]
pub fn start() {
    if let Some(boot) = gloo_utils::document().get_element_by_id("boot") {
        boot.remove();
    }
    yew::Renderer::<App>::new().render();
}
