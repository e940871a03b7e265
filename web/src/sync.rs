//! Syncing with the team's server over `/sync` (filled in with the client engine).

use crate::idb::Idb;
use crate::repo::SharedRepo;
use crate::state::Action;
use yew::Callback;

#[derive(Clone)]
pub struct SyncHandle {}

impl SyncHandle {
    pub async fn start(_repo: SharedRepo, _idb: Idb, _dispatch: Callback<Action>) -> SyncHandle {
        SyncHandle {}
    }

    pub fn local_change(&self) {}

    pub fn sync_now(&self) {}

    pub fn connectivity_changed(&self) {}
}
