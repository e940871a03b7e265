//! The app's state and the actions that change it: plain data and a pure reducer, so every
//! transition is unit-tested natively. IO lives in the services (`repo`, `sync`), which dispatch
//! actions here when something happened.

use std::rc::Rc;

use fieldnotes_model::{Account, AccountEntry};
use yew::Reducible;

use crate::drafts::form::{DraftKey, DraftSummary};
use crate::idb::StorageError;

/// Which screen is shown; mirrored in the location hash so Back works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Accounts,
    NewAccount,
    Account(String),
    Capture(String),
    Team,
    /// The first-run link `fieldnotes serve` prints: create the first administrator and team.
    Setup(String),
    /// An invitation link: join a team.
    Invite(String),
}

impl Route {
    /// The account this route shows, if any.
    pub fn account_id(&self) -> Option<&str> {
        match self {
            Route::Account(id) | Route::Capture(id) => Some(id),
            _ => None,
        }
    }

    pub fn from_hash(hash: &str) -> Route {
        let parts: Vec<&str> = hash.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["new"] => Route::NewAccount,
            ["team"] => Route::Team,
            ["account", id] if !id.is_empty() => Route::Account((*id).to_string()),
            ["account", id, "note"] if !id.is_empty() => Route::Capture((*id).to_string()),
            ["setup", token] if !token.is_empty() => Route::Setup((*token).to_string()),
            ["invite", token] if !token.is_empty() => Route::Invite((*token).to_string()),
            _ => Route::Accounts,
        }
    }

    pub fn to_hash(&self) -> String {
        match self {
            Route::Accounts => "/".to_string(),
            Route::NewAccount => "/new".to_string(),
            Route::Team => "/team".to_string(),
            Route::Account(id) => format!("/account/{id}"),
            Route::Capture(id) => format!("/account/{id}/note"),
            Route::Setup(token) => format!("/setup/{token}"),
            Route::Invite(token) => format!("/invite/{token}"),
        }
    }
}

/// Where syncing with the team's server stands, as the status bar tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncPhase {
    /// The browser reports no network.
    Offline,
    /// Opening the socket.
    Connecting,
    /// Exchanging changes.
    Syncing,
    /// The server has every local change.
    Synced,
    /// The last attempt failed; retrying after a pause.
    Retrying {
        reason: String,
        retry_in_seconds: u32,
    },
    /// The server ended this device's session (expired, revoked): edits stay on the device
    /// until the rep signs in again.
    SignedOut,
    /// Signed in, but the rep is no longer a member of this team.
    NotInTeam,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncStatus {
    pub phase: SyncPhase,
    /// Local changes the server has not acknowledged yet.
    pub pending_changes: usize,
    /// Accounts the directory lists that have not arrived on this device yet.
    pub accounts_to_fetch: usize,
    /// Accounts the directory lists (that the server has).
    pub accounts_listed: usize,
    /// When the last full sync finished (unix millis).
    pub last_synced_millis: Option<i64>,
}

impl Default for SyncStatus {
    fn default() -> Self {
        SyncStatus {
            phase: SyncPhase::Connecting,
            pending_changes: 0,
            accounts_to_fetch: 0,
            accounts_listed: 0,
            last_synced_millis: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StorageStatus {
    /// Changes made in this tab not yet on disk.
    pub unsaved_changes: usize,
    pub error: Option<StorageError>,
    /// Bytes used and available to this site, when the browser tells.
    pub usage: Option<(u64, u64)>,
    /// Whether the browser agreed to keep the data when space runs low.
    pub persistent: Option<bool>,
}

/// The drafts kept on this phone, as the drafts service reports them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DraftsStatus {
    /// Every draft kept, in form order.
    pub kept: Rc<Vec<DraftSummary>>,
    /// The draft just discarded, while "Undo" can bring it back.
    pub discarded: Option<DraftSummary>,
    /// Stored drafts this version cannot read (kept as they are).
    pub unreadable: usize,
    /// The last draft write failed; the draft stays on screen and is written again.
    pub error: Option<StorageError>,
    /// Changes when a draft changed under an open form (discarded, brought back), so the
    /// screen is drawn afresh from the drafts.
    pub revision: u32,
}

impl DraftsStatus {
    /// Whether a draft is kept for this form.
    pub fn has(&self, key: &DraftKey) -> bool {
        self.kept.iter().any(|draft| &draft.key == key)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Boot {
    /// Opening storage and loading documents.
    Loading,
    /// Nobody is signed in on this device.
    NeedsSignIn,
    Ready,
    /// Revoking the session and deleting the user's data from this device.
    SigningOut,
    /// Storage could not be opened at all.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppState {
    pub boot: Boot,
    pub route: Route,
    /// Every account's entry (what the list, search, filters and team view read).
    pub entries: Rc<Vec<Rc<AccountEntry>>>,
    /// The account the route shows, once its document is loaded.
    pub account: Option<Rc<Account>>,
    /// Stored documents this version could not read (damaged, or written by a newer version).
    pub unreadable_accounts: usize,
    pub storage: StorageStatus,
    pub drafts: DraftsStatus,
    /// The form "Continue" asked for, until that form has scrolled into view.
    pub draft_focus: Option<DraftKey>,
    pub sync: SyncStatus,
    /// A new deployment is installed and waits for the rep to switch.
    pub update_ready: bool,
    /// A message for the rep (an edit that could not be applied), dismissible.
    pub notice: Option<String>,
}

impl Default for AppState {
    fn default() -> Self {
        AppState {
            boot: Boot::Loading,
            route: Route::Accounts,
            entries: Rc::new(Vec::new()),
            account: None,
            unreadable_accounts: 0,
            storage: StorageStatus::default(),
            drafts: DraftsStatus::default(),
            draft_focus: None,
            sync: SyncStatus::default(),
            update_ready: false,
            notice: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Booted(Boot),
    Navigate(Route),
    EntriesChanged {
        entries: Rc<Vec<Rc<AccountEntry>>>,
        unreadable: usize,
    },
    /// The account the route shows, loaded or changed.
    AccountChanged(Rc<Account>),
    SaveState {
        unsaved_changes: usize,
        error: Option<StorageError>,
    },
    StorageUsage {
        usage: Option<(u64, u64)>,
        persistent: Option<bool>,
    },
    Sync(SyncStatus),
    Drafts(DraftsStatus),
    /// "Continue" on a draft whose form is part of the account screen.
    FocusDraft(Option<DraftKey>),
    UpdateReady,
    Notice(Option<String>),
    /// The user signed out: nothing of theirs stays in the state either.
    SignedOut,
}

impl Reducible for AppState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = (*self).clone();
        match action {
            Action::Booted(boot) => next.boot = boot,
            Action::Navigate(route) => {
                if next.route == route {
                    return self;
                }
                if route.account_id() != next.route.account_id() {
                    next.account = None;
                }
                next.route = route;
            }
            Action::EntriesChanged {
                entries,
                unreadable,
            } => {
                next.entries = entries;
                next.unreadable_accounts = unreadable;
            }
            Action::AccountChanged(account) => {
                // Only the account the route shows; a late answer for another is dropped.
                if next.route.account_id() != Some(account.id.as_str()) {
                    return self;
                }
                next.account = Some(account);
            }
            Action::SaveState {
                unsaved_changes,
                error,
            } => {
                next.storage.unsaved_changes = unsaved_changes;
                next.storage.error = error;
            }
            Action::StorageUsage { usage, persistent } => {
                next.storage.usage = usage.or(next.storage.usage);
                next.storage.persistent = persistent.or(next.storage.persistent);
            }
            Action::Sync(status) => {
                if next.sync == status {
                    return self;
                }
                next.sync = status;
            }
            Action::Drafts(drafts) => next.drafts = drafts,
            Action::FocusDraft(key) => next.draft_focus = key,
            Action::UpdateReady => next.update_ready = true,
            Action::Notice(notice) => next.notice = notice,
            Action::SignedOut => {
                next = AppState {
                    boot: Boot::NeedsSignIn,
                    update_ready: self.update_ready,
                    ..AppState::default()
                }
            }
        }
        Rc::new(next)
    }
}

impl AppState {
    /// The account with this id, when it is the one the route shows and it is loaded.
    pub fn account(&self, id: &str) -> Option<&Account> {
        self.account
            .as_deref()
            .filter(|account| account.id.as_str() == id)
    }

    /// The entry of the account with this id, if this device has it.
    pub fn entry(&self, id: &str) -> Option<&AccountEntry> {
        self.entries
            .iter()
            .find(|entry| entry.id.as_str() == id)
            .map(Rc::as_ref)
    }

    /// The save line of the status bar. Drafts do not say "Saving…" at every keystroke; a
    /// draft that cannot be written is said as plainly as a change.
    pub fn save_line(&self) -> String {
        match (
            &self.storage.error,
            &self.drafts.error,
            self.storage.unsaved_changes,
        ) {
            (Some(error), _, _) => format!("Not saved: {error}."),
            (None, Some(error), _) => {
                format!("Draft not saved: {error}. What you typed is still on screen.")
            }
            (None, None, 0) => "Saved on this phone".to_string(),
            (None, None, _) => "Saving…".to_string(),
        }
    }

    /// Whether something could not be written and "Retry" should be offered.
    pub fn save_failed(&self) -> bool {
        self.storage.error.is_some() || self.drafts.error.is_some()
    }

    /// The sync line of the status bar, in plain words.
    pub fn sync_line(&self, now_millis: i64) -> String {
        let waiting = match self.sync.pending_changes {
            0 => String::new(),
            1 => " · 1 change waiting".to_string(),
            n => format!(" · {n} changes waiting"),
        };
        let last = self
            .sync
            .last_synced_millis
            .map(|t| format!(" · last synced {}", ago(now_millis - t)))
            .unwrap_or_default();
        match &self.sync.phase {
            SyncPhase::Offline => format!("Offline{waiting}{last}"),
            SyncPhase::Connecting => format!("Connecting…{waiting}"),
            SyncPhase::Syncing if self.sync.accounts_to_fetch > 0 => {
                let listed = self.sync.accounts_listed.max(self.sync.accounts_to_fetch);
                format!(
                    "Downloading accounts: {} of {listed}{waiting}",
                    listed - self.sync.accounts_to_fetch
                )
            }
            SyncPhase::Syncing => format!("Syncing…{waiting}"),
            SyncPhase::Synced => format!("All synced{last}"),
            SyncPhase::Retrying {
                reason,
                retry_in_seconds,
            } => format!("Can't sync: {reason}. Trying again in {retry_in_seconds} s{waiting}"),
            SyncPhase::SignedOut => format!("Signed out — sign in to sync{waiting}"),
            SyncPhase::NotInTeam => format!(
                "Can't sync: you are no longer in this team. Your changes stay on this phone; \
                 ask your administrator to add you again{waiting}"
            ),
        }
    }
}

/// "just now", "5 min ago", "3 h ago", "2 days ago".
pub fn ago(millis: i64) -> String {
    let seconds = millis.max(0) / 1000;
    match seconds {
        0..=59 => "just now".to_string(),
        60..=3599 => format!("{} min ago", seconds / 60),
        3600..=86_399 => format!("{} h ago", seconds / 3600),
        _ => match seconds / 86_400 {
            1 => "yesterday".to_string(),
            days => format!("{days} days ago"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_round_trip_through_the_hash() {
        for route in [
            Route::Accounts,
            Route::NewAccount,
            Route::Team,
            Route::Account("abc".into()),
            Route::Capture("abc".into()),
            Route::Setup("t0k3n".into()),
            Route::Invite("t0k3n".into()),
        ] {
            assert_eq!(Route::from_hash(&route.to_hash()), route);
        }
        assert_eq!(Route::from_hash(""), Route::Accounts);
        assert_eq!(Route::from_hash("/account/"), Route::Accounts);
        assert_eq!(Route::from_hash("/nonsense/x/y"), Route::Accounts);
        assert_eq!(Route::from_hash("/setup/"), Route::Accounts);
    }

    #[test]
    fn the_save_line_says_saving_until_the_write_completes() {
        let state = Rc::new(AppState::default());
        assert_eq!(state.save_line(), "Saved on this phone");
        let state = state.reduce(Action::SaveState {
            unsaved_changes: 2,
            error: None,
        });
        assert_eq!(state.save_line(), "Saving…");
        let state = state.reduce(Action::SaveState {
            unsaved_changes: 2,
            error: Some(StorageError::Full),
        });
        assert!(
            state
                .save_line()
                .starts_with("Not saved: this phone's storage is full")
        );
        let state = state.reduce(Action::SaveState {
            unsaved_changes: 0,
            error: None,
        });
        assert_eq!(state.save_line(), "Saved on this phone");
    }

    #[test]
    fn a_draft_that_cannot_be_written_is_said_in_plain_words() {
        let state = Rc::new(AppState::default()).reduce(Action::Drafts(DraftsStatus {
            error: Some(StorageError::Full),
            ..DraftsStatus::default()
        }));
        assert!(state.save_failed());
        assert!(
            state
                .save_line()
                .starts_with("Draft not saved: this phone's storage is full"),
            "{}",
            state.save_line()
        );
        assert!(state.save_line().ends_with("still on screen."));
        // A document that cannot be saved is said first.
        let state = state.reduce(Action::SaveState {
            unsaved_changes: 1,
            error: Some(StorageError::Unavailable),
        });
        assert!(state.save_line().starts_with("Not saved: this browser"));
        let state = state
            .reduce(Action::SaveState {
                unsaved_changes: 0,
                error: None,
            })
            .reduce(Action::Drafts(DraftsStatus::default()));
        assert!(!state.save_failed());
        assert_eq!(state.save_line(), "Saved on this phone");
    }

    #[test]
    fn signing_out_forgets_the_drafts_shown() {
        let key = DraftKey::Note {
            account: "a".into(),
        };
        let state = Rc::new(AppState::default())
            .reduce(Action::Drafts(DraftsStatus {
                kept: Rc::new(vec![DraftSummary {
                    key: key.clone(),
                    title: String::new(),
                }]),
                ..DraftsStatus::default()
            }))
            .reduce(Action::FocusDraft(Some(key.clone())));
        assert!(state.drafts.has(&key));
        let state = state.reduce(Action::SignedOut);
        assert!(!state.drafts.has(&key));
        assert_eq!(state.draft_focus, None);
    }

    #[test]
    fn the_sync_line_counts_waiting_changes_and_the_last_sync() {
        let now = 1_700_000_000_000;
        let mut state = AppState {
            sync: SyncStatus {
                phase: SyncPhase::Offline,
                pending_changes: 3,
                accounts_to_fetch: 0,
                accounts_listed: 0,
                last_synced_millis: Some(now - 5 * 60_000),
            },
            ..AppState::default()
        };
        assert_eq!(
            state.sync_line(now),
            "Offline · 3 changes waiting · last synced 5 min ago"
        );
        state.sync.phase = SyncPhase::Synced;
        state.sync.pending_changes = 0;
        assert_eq!(state.sync_line(now), "All synced · last synced 5 min ago");
        state.sync.phase = SyncPhase::Retrying {
            reason: "the server did not answer".into(),
            retry_in_seconds: 8,
        };
        assert_eq!(
            state.sync_line(now),
            "Can't sync: the server did not answer. Trying again in 8 s"
        );
        state.sync.phase = SyncPhase::SignedOut;
        state.sync.pending_changes = 2;
        assert_eq!(
            state.sync_line(now),
            "Signed out — sign in to sync · 2 changes waiting"
        );
    }

    #[test]
    fn a_new_device_shows_how_far_the_download_is() {
        let mut state = AppState::default();
        state.sync.phase = SyncPhase::Syncing;
        state.sync.accounts_listed = 500;
        state.sync.accounts_to_fetch = 488;
        assert_eq!(state.sync_line(0), "Downloading accounts: 12 of 500");
    }

    #[test]
    fn signing_out_forgets_the_accounts_and_asks_for_a_sign_in() {
        let state = Rc::new(AppState {
            boot: Boot::Ready,
            unreadable_accounts: 2,
            notice: Some("x".into()),
            ..AppState::default()
        });
        let state = state.reduce(Action::SignedOut);
        assert_eq!(state.boot, Boot::NeedsSignIn);
        assert!(state.entries.is_empty());
        assert_eq!(state.unreadable_accounts, 0);
        assert_eq!(state.notice, None);
    }

    #[test]
    fn an_unchanged_sync_status_does_not_re_render() {
        let state = Rc::new(AppState::default());
        let same = state.clone().reduce(Action::Sync(SyncStatus::default()));
        assert!(Rc::ptr_eq(&state, &same));
    }

    #[test]
    fn ago_reads_naturally() {
        assert_eq!(ago(10_000), "just now");
        assert_eq!(ago(3 * 3_600_000), "3 h ago");
        assert_eq!(ago(86_400_000), "yesterday");
        assert_eq!(ago(3 * 86_400_000), "3 days ago");
        assert_eq!(ago(-5), "just now");
    }
}
