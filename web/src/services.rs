//! The services the components call: they turn a rep's action into document changes and IO,
//! and dispatch [`Action`]s back when something happened. Components never touch storage.

use std::rc::Rc;

use fieldnotes_model::{AccountDoc, AccountId, ModelError, TeamId, UserId};
use fieldnotes_sync::DocumentId;
use yew::Callback;

use crate::drafts::Drafts;
use crate::drafts::form::DraftKey;
use crate::idb::{Idb, StorageError};
use crate::platform::{random_bytes, request_persistent_storage, storage_estimate};
use crate::repo::{self, Repo, RepoEvent, SharedRepo};
use crate::state::{Action, Boot};
use crate::sync::SyncHandle;

/// Who writes and in which team: the signed-in user's display name (the author on notes and
/// in history) and the server's team id.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub user: UserId,
    pub team: TeamId,
}

/// The team directory's document id, derived from the team id so every device finds the same
/// directory without asking anyone (see `DirectoryDoc::genesis`).
pub fn directory_id(team: &TeamId) -> DocumentId {
    DocumentId::from_bytes(fieldnotes_model::team_directory_key(team))
}

#[derive(Clone)]
pub struct Services {
    pub repo: SharedRepo,
    pub sync: SyncHandle,
    /// What the rep typed into forms and has not saved yet.
    pub drafts: Drafts,
    dispatch: Callback<Action>,
    /// The account the screen asked for last ([`Services::show_account`]).
    wanted_account: Rc<std::cell::Cell<Option<DocumentId>>>,
}

impl PartialEq for Services {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.repo, &other.repo)
    }
}

/// The one database the app kept before sign-in existed.
const LEGACY_DATABASE: &str = "fieldnotes";

/// Notes typed offline before the upgrade to sign-in could not sync any more (the server began
/// asking who is there), so they may exist only in the old database: the first sign-in on this
/// phone takes its accounts into the signed-in team, then deletes it. If anything fails, the old
/// database stays and the next start tries again.
async fn import_legacy_database(repo: &SharedRepo) {
    if !crate::idb::database_names()
        .await
        .iter()
        .any(|name| name == LEGACY_DATABASE)
    {
        return;
    }
    let Ok(legacy) = Idb::open(LEGACY_DATABASE).await else {
        return;
    };
    let documents = legacy.all_documents().await;
    legacy.close();
    let Ok(documents) = documents else {
        return;
    };
    if Repo::import_legacy(repo, documents).await.is_ok() {
        // Not awaited: an old tab still holding it open must not hold up the start.
        wasm_bindgen_futures::spawn_local(async {
            let _ = crate::idb::delete_database(LEGACY_DATABASE, || {}).await;
        });
    }
}

/// Loads this device's documents and starts saving and syncing.
pub async fn start(
    idb: Idb,
    identity: Identity,
    dispatch: Callback<Action>,
) -> Result<Services, StorageError> {
    let editor = fieldnotes_model::Editor::new(identity.user.clone(), &random_bytes::<16>())
        .map_err(|e| StorageError::Failed(e.to_string()))?;
    let directory = directory_id(&identity.team);
    let repo = Repo::open(idb.clone(), editor, identity.team.clone(), directory).await?;
    let repo: SharedRepo = Rc::new(std::cell::RefCell::new(repo));
    // The sync engine hears of committed writes (a download counts once it is on disk); it
    // starts after the listener is in place, so it is reached through this slot.
    let sync_slot: Rc<std::cell::OnceCell<Box<dyn Fn()>>> = Rc::default();
    {
        let dispatch = dispatch.clone();
        let sync_slot = sync_slot.clone();
        repo.borrow_mut()
            .set_listener(Rc::new(move |event| match event {
                RepoEvent::EntriesChanged {
                    entries,
                    unreadable,
                } => dispatch.emit(Action::EntriesChanged {
                    entries,
                    unreadable,
                }),
                RepoEvent::AccountChanged(account) => {
                    dispatch.emit(Action::AccountChanged(account))
                }
                RepoEvent::SaveState(state) => {
                    if let Some(committed) = sync_slot.get() {
                        committed();
                    }
                    dispatch.emit(Action::SaveState {
                        unsaved_changes: state.unsaved_changes,
                        error: state.error,
                    })
                }
            }));
    }
    dispatch.emit(Action::EntriesChanged {
        entries: repo.borrow().entries(),
        unreadable: repo.borrow().unreadable_count(),
    });
    repo::flush(&repo);
    let drafts = Drafts::open(idb.clone(), dispatch.clone()).await?;
    let sync = SyncHandle::new(
        repo.clone(),
        identity.team.as_str().to_string(),
        dispatch.clone(),
    );
    let _ = sync_slot.set(Box::new(sync.writes_committed_listener()));
    let services = Services {
        repo: repo.clone(),
        sync: sync.clone(),
        drafts,
        dispatch: dispatch.clone(),
        wanted_account: Rc::default(),
    };
    // The list first; what grows with the team and only syncing needs (the team directory,
    // every account's sync state) is read after it is on screen.
    dispatch.emit(Action::Booted(Boot::Ready));
    wasm_bindgen_futures::spawn_local(async move {
        match repo::load_directory(&repo).await {
            Ok(()) => {
                import_legacy_database(&repo).await;
                sync.begin(idb).await;
            }
            Err(error) => dispatch.emit(Action::Notice(Some(format!(
                "The team's list of accounts could not be read from the phone's storage \
                 ({error}), so syncing waits. Your accounts and notes are kept; reload the \
                 app to try again."
            )))),
        }
        let persistent = request_persistent_storage().await;
        let usage = storage_estimate().await;
        dispatch.emit(Action::StorageUsage {
            usage,
            persistent: Some(persistent),
        });
    });
    Ok(services)
}

impl Services {
    /// Creates an account from the new-account form; returns its id. The form's draft ends
    /// with it.
    pub fn create_account(&self, name: &str, branch: &str, area: &str) -> Option<String> {
        let document = DocumentId::from_bytes(random_bytes::<16>());
        let id = document.to_string();
        let result = {
            let mut repo = self.repo.borrow_mut();
            let result = repo.create_account(document, name, branch, area);
            if result.is_ok() {
                self.drafts.end_with_save(&DraftKey::NewAccount, &mut repo);
            }
            result
        };
        self.after_edit(result).then_some(id)
    }

    /// Applies one edit to an account, then saves and syncs it.
    pub fn edit(
        &self,
        account: &str,
        edit: impl FnOnce(&mut AccountDoc, i64) -> Result<(), ModelError>,
    ) -> bool {
        let Some(document) = parse_account(account) else {
            return self.after_edit(Err(ModelError::UnknownAccount(AccountId::new(account))));
        };
        let result = self.repo.borrow_mut().edit_account(&document, edit);
        self.after_edit(result)
    }

    /// Saves a form: applies its edit to an account and ends the form's draft in the same
    /// IndexedDB transaction, so the draft is gone exactly when what it became is saved.
    pub fn save_form(
        &self,
        account: &str,
        draft: &DraftKey,
        edit: impl FnOnce(&mut AccountDoc, i64) -> Result<(), ModelError>,
    ) -> bool {
        let Some(document) = parse_account(account) else {
            return self.after_edit(Err(ModelError::UnknownAccount(AccountId::new(account))));
        };
        let result = {
            let mut repo = self.repo.borrow_mut();
            let result = repo.edit_account(&document, edit);
            if result.is_ok() {
                self.drafts.end_with_save(draft, &mut repo);
            }
            result
        };
        self.after_edit(result)
    }

    /// The route shows this account (or none): its document is loaded and kept in memory, its
    /// changes (colleagues' included, live) reach the screen.
    pub fn show_account(&self, account: Option<&str>) {
        let document = account.and_then(parse_account);
        // The load below is asynchronous: only the account the screen still wants is shown
        // when it finishes (going back to the list meanwhile must not leave it shown).
        self.wanted_account.set(document);
        let previous = self.repo.borrow().shown();
        if previous != document
            && let Some(previous) = previous
        {
            self.sync.keep_open(previous, false);
        }
        let Some(document) = document else {
            self.repo.borrow_mut().show(None);
            return;
        };
        let (repo, sync, dispatch) = (self.repo.clone(), self.sync.clone(), self.dispatch.clone());
        let wanted = self.wanted_account.clone();
        wasm_bindgen_futures::spawn_local(async move {
            match repo::load(&repo, &document).await {
                Ok(_) if wanted.get() == Some(document) => {
                    repo.borrow_mut().show(Some(document));
                    sync.keep_open(document, true);
                }
                Ok(_) => {}
                Err(error) => dispatch.emit(Action::Notice(Some(format!(
                    "This account could not be opened from the phone's storage: {error}."
                )))),
            }
        });
    }

    /// Who changed what in an account, oldest first (empty until its document is loaded).
    pub fn history(&self, account: &str) -> Vec<fieldnotes_model::HistoryEntry> {
        parse_account(account)
            .map(|document| self.repo.borrow_mut().history(&document))
            .unwrap_or_default()
    }

    fn after_edit(&self, result: Result<(), ModelError>) -> bool {
        match result {
            Ok(()) => {
                // The count of changes waiting goes into the same transaction as the change.
                self.sync.local_change();
                repo::flush(&self.repo);
                true
            }
            Err(error) => {
                self.dispatch.emit(Action::Notice(Some(format!(
                    "That change could not be made: {error}. Nothing was changed; try again, \
                     and if it keeps happening, reload the app."
                ))));
                false
            }
        }
    }

    /// Writes anything not yet on disk, documents and drafts (on `pagehide`, hidden tab,
    /// `blur`, or "Retry").
    pub fn flush(&self) {
        repo::flush(&self.repo);
        self.drafts.flush();
    }

    pub fn navigate(&self, route: crate::state::Route) {
        crate::platform::set_hash(&route.to_hash());
    }

    /// Stops at once, before sign-out deletes the database: nothing more is synced or written.
    pub fn halt(&self) {
        self.sync.stop();
        self.drafts.stop();
        self.repo.borrow().idb().close();
    }

    /// Stops syncing, lets every change reach the disk (up to a few seconds) and closes the
    /// database, before a team switch or a sign-out.
    pub async fn stop(&self) {
        self.sync.stop();
        self.flush();
        for _ in 0..100 {
            if self.repo.borrow().idle() && self.drafts.idle() {
                break;
            }
            gloo_timers::future::TimeoutFuture::new(50).await;
        }
        self.halt();
    }
}

/// An account's document id from the route's text.
fn parse_account(account: &str) -> Option<DocumentId> {
    DocumentId::parse(account).ok()
}

/// Fresh random bytes for a list item's id (note, follow-up, goal, contact).
pub fn new_item_id() -> [u8; 16] {
    random_bytes::<16>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_device_derives_the_same_directory_id_per_team() {
        let north = directory_id(&TeamId::new("north"));
        assert_eq!(north, directory_id(&TeamId::new("north")));
        assert_ne!(north, directory_id(&TeamId::new("south")));
    }
}
