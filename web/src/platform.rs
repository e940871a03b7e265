//! The few browser facts the app needs: time, randomness, connectivity, storage quota and the
//! service worker's update.
//! Everything else in the app takes these as values, so its logic stays testable natively.

use wasm_bindgen_futures::JsFuture;

/// Unix time in milliseconds.
pub fn now_millis() -> i64 {
    js_sys::Date::now() as i64
}

/// `N` cryptographically random bytes (`crypto.getRandomValues`).
///
/// Without them the app must not go on: ids made of anything else could be the same on two
/// devices (zeros on every one), and merges would then mix different accounts and notes. So a
/// failure stops the app, and the page shows its plain-words notice ("Fieldnotes stopped…",
/// `boot.js`); nothing unsaved is at risk, as every typed letter is already in the drafts.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    let crypto = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .expect("this browser offers no crypto.getRandomValues");
    crypto
        .get_random_values_with_u8_array(&mut bytes)
        .expect("crypto.getRandomValues failed");
    bytes
}

/// What the browser believes about connectivity. `false` is reliable; `true` only means a
/// network interface is up, which is why sync still has to try.
pub fn online() -> bool {
    web_sys::window()
        .map(|w| w.navigator().on_line())
        .unwrap_or(true)
}

/// How much this origin stores and may store, in bytes (`navigator.storage.estimate()`).
pub async fn storage_estimate() -> Option<(u64, u64)> {
    let storage = web_sys::window()?.navigator().storage();
    let estimate = JsFuture::from(storage.estimate().ok()?).await.ok()?;
    let read = |key: &str| {
        js_sys::Reflect::get(&estimate, &key.into())
            .ok()
            .and_then(|v| v.as_f64())
            .map(|v| v as u64)
    };
    Some((read("usage")?, read("quota")?))
}

/// Asks the browser to keep this origin's storage when space runs low
/// (`navigator.storage.persist()`); returns whether it is persistent now.
pub async fn request_persistent_storage() -> bool {
    let Some(window) = web_sys::window() else {
        return false;
    };
    let storage = window.navigator().storage();
    if let Ok(promise) = storage.persisted()
        && let Ok(value) = JsFuture::from(promise).await
        && value.as_bool() == Some(true)
    {
        return true;
    }
    match storage.persist() {
        Ok(promise) => JsFuture::from(promise)
            .await
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The page's origin as a WebSocket URL for one team's `/sync` (`ws:` or `wss:` like the page).
pub fn sync_url(team: &str) -> String {
    let location = gloo_utils::window().location();
    let protocol = if location.protocol().unwrap_or_default() == "https:" {
        "wss:"
    } else {
        "ws:"
    };
    format!(
        "{protocol}//{}/sync?team={}",
        location.host().unwrap_or_default(),
        js_sys::encode_uri_component(team)
    )
}

/// The current location hash without its `#`.
pub fn hash() -> String {
    let hash = gloo_utils::window().location().hash().unwrap_or_default();
    hash.trim_start_matches('#').to_string()
}

pub fn set_hash(hash: &str) {
    let _ = gloo_utils::window().location().set_hash(hash);
}

/// Whether the page is visible (the rep is looking at it).
pub fn page_visible() -> bool {
    gloo_utils::document().visibility_state() == web_sys::VisibilityState::Visible
}
/// Tells the waiting service worker to take over; the page reloads when it has.
pub fn activate_update() {
    let window = gloo_utils::window();
    let _ = js_sys::Reflect::set(&window, &"fieldnotesUpdateAccepted".into(), &true.into());
    if let Ok(function) = js_sys::Reflect::get(&window, &"fieldnotesActivateUpdate".into())
        && let Some(function) = wasm_bindgen::JsCast::dyn_ref::<js_sys::Function>(&function)
    {
        let _ = function.call0(&window);
    }
}
