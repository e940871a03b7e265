//! The Fieldnotes web app: Yew on WASM, documents in IndexedDB, sync over WebSocket.
//!
//! Data flows one way: a component calls a service ([`services::Services`]), the service changes
//! an Automerge document in the [`repo::Repo`] and queues the IO (an IndexedDB write, a sync
//! message), and the repo's listener dispatches an [`state::Action`] that re-renders. What a rep
//! has typed into a form and not saved yet is kept as a draft by [`drafts::Drafts`]. The pure
//! parts (`state`, the drafts' forms and write queue, the splice in `components::account`) are
//! unit-tested natively; the rest is tested in a real browser by `tests/node/browser`.

pub mod api;
pub mod components;
pub mod drafts;
pub mod idb;
pub mod lifecycle;
pub mod platform;
pub mod repo;
pub mod services;
pub mod session;
pub mod state;
pub mod sync;
#[cfg(test)]
mod test_rng;

use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
pub fn start() {
    if let Some(boot) = gloo_utils::document().get_element_by_id("boot") {
        boot.remove();
    }
    yew::Renderer::<components::app::App>::new().render();
}
