//! The status bar, always in view: sync state in plain words, changes waiting, the last full
//! sync, whether everything is on disk, and "Sync now".

use yew::prelude::*;

use crate::components::app::use_app;
use crate::platform::now_millis;
use crate::state::SyncPhase;

#[function_component(StatusBar)]
pub fn status_bar() -> Html {
    let app = use_app();
    let state = &app.state;
    let phase_class = match state.sync.phase {
        SyncPhase::Offline => "phase-offline",
        SyncPhase::Connecting | SyncPhase::Syncing => "phase-syncing",
        SyncPhase::Synced => "phase-synced",
        SyncPhase::Retrying { .. } | SyncPhase::SignedOut | SyncPhase::NotInTeam => "phase-error",
    };
    let sync_now = {
        let services = app.services.clone();
        Callback::from(move |_| services.sync.sync_now())
    };
    let retry_save = {
        let services = app.services.clone();
        Callback::from(move |_| services.flush())
    };
    let save_error = state.save_failed();
    let usage = state.storage.usage.map(|(used, quota)| {
        format!(
            "Uses {} of {} on this phone{}",
            megabytes(used),
            megabytes(quota),
            if state.storage.persistent == Some(false) {
                " · add Fieldnotes to your home screen so the browser keeps your notes"
            } else {
                ""
            }
        )
    });
    html! {
        <header class={classes!("status", phase_class)} role="status" aria-live="polite">
            <div class="status-lines">
                <span class="sync-line" data-testid="sync-status">{ state.sync_line(now_millis()) }</span>
                <span class={classes!("save-line", save_error.then_some("save-failed"))} data-testid="save-status">
                    { state.save_line() }
                </span>
                if let Some(usage) = usage { <span class="usage">{ usage }</span> }
            </div>
            if save_error {
                <button class="small" onclick={retry_save}>{ "Retry" }</button>
            } else if state.sync.phase == SyncPhase::SignedOut {
                <button class="small" onclick={app.show_sign_in.reform(|_| ())}>{ "Sign in" }</button>
            } else {
                <button class="small" onclick={sync_now} disabled={state.sync.phase == SyncPhase::Offline}>
                    { "Sync now" }
                </button>
            }
        </header>
    }
}

/// "840 KB", "3.4 MB", "12 GB" (integer arithmetic: float formatting costs kilobytes of wasm).
fn megabytes(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{} KB", bytes.div_ceil(1000))
    } else if bytes < 10_000_000_000 {
        let tenths = bytes / 100_000;
        format!("{}.{} MB", tenths / 10, tenths % 10)
    } else {
        format!("{} GB", bytes / 1_000_000_000)
    }
}
