//! Drafts: what a rep has typed into a form and not saved yet, kept on the phone as they type,
//! so a reload, a crash or a dead battery mid-sentence loses nothing.
//!
//! [`Drafts`] is the service the forms call: [`Drafts::update`] on every change,
//! [`Drafts::get`] when a form opens, [`Drafts::discard`] (with [`Drafts::undo_discard`]).
//! Saving ends a draft through `Services`, in the same transaction as the document change it
//! became ([`Drafts::end_with_save`]). The service reports what is kept to the app state
//! (`Action::Drafts`), from which the banners render.
//!
//! # What "kept" means
//!
//! A draft is kept once the strict-durability IndexedDB transaction holding it has completed,
//! exactly as a document change is saved. The queue ([`queue::DraftQueue`], pure and tested
//! natively) group-commits: one transaction in flight, the latest value of every draft changed
//! meanwhile in the next, no timer. A keystroke costs updating a small vector and, when
//! nothing is in flight, starting one transaction; the encoding happens once per transaction.
//!
//! Drafts live in the `meta` store of the signed-in user's team database under `draft/…` keys
//! ([`form`]), so they go with that database at sign-out and no other user ever sees them. They
//! are never synced: the sync engine only reads documents.

pub mod form;
pub mod queue;

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use yew::Callback;

use crate::idb::{Idb, StorageError, WriteOp};
use crate::platform::now_millis;
use crate::repo::Repo;
use crate::state::{Action, DraftsStatus};
use form::{Draft, DraftKey, DraftSummary, STORAGE_PREFIX, StoredDraft};
use queue::DraftQueue;

/// How long "Undo" stays offered after a discard.
const UNDO_MILLIS: u32 = 30_000;

#[derive(Clone)]
pub struct Drafts {
    inner: Rc<RefCell<Inner>>,
}

struct Inner {
    idb: Idb,
    dispatch: Callback<Action>,
    queue: DraftQueue<StoredDraft, StorageError>,
    /// Every draft kept, as the forms last left it (a handful: a vector, in form order).
    kept: Vec<(DraftKey, StoredDraft)>,
    /// Records under the draft prefix this version cannot read; left as they are.
    unreadable: usize,
    /// The draft discarded last, while "Undo" is offered.
    discarded: Option<(DraftKey, StoredDraft)>,
    undo_timer: Option<Timeout>,
    /// Bumped when a draft changes under an open form (discard, undo), so it is shown again.
    revision: u32,
    /// What the app state was last told.
    reported: DraftsStatus,
    stopped: bool,
}

impl Drafts {
    /// Reads the drafts kept in this database.
    pub async fn open(idb: Idb, dispatch: Callback<Action>) -> Result<Drafts, StorageError> {
        let mut kept = Vec::new();
        let mut unreadable = 0;
        for (key, bytes) in idb.meta_with_prefix(STORAGE_PREFIX).await? {
            let stored = DraftKey::from_storage_key(&key)
                .and_then(|draft_key| Some((StoredDraft::decode(&draft_key, &bytes)?, draft_key)));
            match stored {
                Some((stored, draft_key)) => kept.push((draft_key, stored)),
                None => unreadable += 1,
            }
        }
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        let drafts = Drafts {
            inner: Rc::new(RefCell::new(Inner {
                idb,
                dispatch,
                queue: DraftQueue::new(),
                kept,
                unreadable,
                discarded: None,
                undo_timer: None,
                revision: 0,
                reported: DraftsStatus::default(),
                stopped: false,
            })),
        };
        drafts.report();
        Ok(drafts)
    }

    /// The draft kept for a form, if any.
    pub fn get(&self, key: &DraftKey) -> Option<StoredDraft> {
        self.inner
            .borrow()
            .find(key)
            .map(|(_, stored)| stored.clone())
    }

    /// The form now holds `value`; it opened holding `start`. Called on every keystroke and
    /// tick: a form back at its start keeps no draft.
    pub fn update(&self, key: &DraftKey, value: &Draft, start: &Draft) {
        let now = now_millis();
        {
            let mut inner = self.inner.borrow_mut();
            if inner.stopped {
                return;
            }
            // Typing anew into a form replaces what "Undo" would bring back.
            if inner.discarded.as_ref().is_some_and(|(k, _)| k == key) {
                inner.discarded = None;
                inner.undo_timer = None;
            }
            if value == start {
                if inner.take(key).is_none() {
                    return;
                }
                inner.queue.change(key.storage_key(), None, now);
            } else {
                let stored = StoredDraft {
                    draft: value.clone(),
                    updated_millis: now,
                };
                inner.put(key, stored.clone());
                inner.queue.change(key.storage_key(), Some(stored), now);
            }
        }
        write_next(&self.inner);
        self.report();
    }

    /// The rep threw the draft away. "Undo" brings it back for a while.
    pub fn discard(&self, key: &DraftKey) {
        {
            let mut inner = self.inner.borrow_mut();
            let Some(stored) = inner.take(key) else {
                return;
            };
            inner.queue.change(key.storage_key(), None, now_millis());
            inner.discarded = Some((key.clone(), stored));
            inner.revision += 1;
            let weak = Rc::downgrade(&self.inner);
            inner.undo_timer = Some(Timeout::new(UNDO_MILLIS, move || {
                if let Some(inner) = weak.upgrade() {
                    let drafts = Drafts { inner };
                    drafts.inner.borrow_mut().discarded = None;
                    drafts.report();
                }
            }));
        }
        write_next(&self.inner);
        self.report();
    }

    /// Brings back the draft discarded last.
    pub fn undo_discard(&self) {
        {
            let mut inner = self.inner.borrow_mut();
            let Some((key, stored)) = inner.discarded.take() else {
                return;
            };
            inner.undo_timer = None;
            inner
                .queue
                .change(key.storage_key(), Some(stored.clone()), now_millis());
            inner.put(&key, stored);
            inner.revision += 1;
        }
        write_next(&self.inner);
        self.report();
    }

    /// The form was saved: its draft ends in the same transaction as the document change it
    /// became, so a crash leaves one or the other, never neither, never both.
    pub(crate) fn end_with_save(&self, key: &DraftKey, repo: &mut Repo) {
        let storage_key = key.storage_key();
        {
            let mut inner = self.inner.borrow_mut();
            if inner.stopped {
                return;
            }
            inner.take(key);
            inner.queue.fence(storage_key.clone());
        }
        let weak: Weak<RefCell<Inner>> = Rc::downgrade(&self.inner);
        let released = storage_key.clone();
        repo.delete_meta_when_committed(
            storage_key,
            Box::new(move || {
                if let Some(inner) = weak.upgrade() {
                    inner.borrow_mut().queue.release(&released);
                    write_next(&inner);
                }
            }),
        );
        self.report();
    }

    /// Writes anything waiting, retrying after a failure ("Retry", leaving the page).
    pub fn flush(&self) {
        self.inner.borrow_mut().queue.retry();
        write_next(&self.inner);
    }

    /// How many drafts are kept (sign-out warns about them).
    pub fn count(&self) -> usize {
        self.inner.borrow().kept.len() + self.inner.borrow().unreadable
    }

    /// Whether every draft change is on disk.
    pub fn idle(&self) -> bool {
        self.inner.borrow().queue.idle()
    }

    /// Stops writing for good (sign-out, team switch): the database is about to close.
    pub fn stop(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.stopped = true;
        inner.undo_timer = None;
    }

    /// Tells the app state what is kept, if that changed (not on every keystroke).
    fn report(&self) {
        let (status, dispatch) = {
            let mut inner = self.inner.borrow_mut();
            if inner.stopped {
                return;
            }
            let status = DraftsStatus {
                kept: Rc::new(
                    inner
                        .kept
                        .iter()
                        .map(|(key, stored)| DraftSummary {
                            key: key.clone(),
                            title: stored.draft.title(),
                        })
                        .collect(),
                ),
                discarded: inner.discarded.as_ref().map(|(key, stored)| DraftSummary {
                    key: key.clone(),
                    title: stored.draft.title(),
                }),
                unreadable: inner.unreadable,
                error: inner.queue.error().cloned(),
                revision: inner.revision,
            };
            if status == inner.reported {
                return;
            }
            inner.reported = status.clone();
            (status, inner.dispatch.clone())
        };
        dispatch.emit(Action::Drafts(status));
    }
}

impl Inner {
    fn find(&self, key: &DraftKey) -> Option<&(DraftKey, StoredDraft)> {
        self.kept.iter().find(|(k, _)| k == key)
    }

    /// Keeps `stored` as the draft of `key`, in form order.
    fn put(&mut self, key: &DraftKey, stored: StoredDraft) {
        match self.kept.iter_mut().find(|(k, _)| k == key) {
            Some((_, kept)) => *kept = stored,
            None => {
                self.kept.push((key.clone(), stored));
                self.kept.sort_by(|a, b| a.0.cmp(&b.0));
            }
        }
    }

    /// Removes a kept draft from memory, returning it.
    fn take(&mut self, key: &DraftKey) -> Option<StoredDraft> {
        let index = self.kept.iter().position(|(k, _)| k == key)?;
        Some(self.kept.remove(index).1)
    }
}

/// Starts the next transaction, if the queue has one to start.
fn write_next(this: &Rc<RefCell<Inner>>) {
    let (idb, ops) = {
        let mut inner = this.borrow_mut();
        if inner.stopped {
            return;
        }
        let Some(batch) = inner.queue.poll_write() else {
            return;
        };
        let ops: Vec<WriteOp> = batch
            .into_iter()
            .map(|(key, value)| match value {
                Some(stored) => WriteOp::PutMeta {
                    key,
                    bytes: stored.encode(),
                },
                None => WriteOp::DeleteMeta { key },
            })
            .collect();
        (inner.idb.clone(), ops)
    };
    let this = this.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let result = idb.write(&ops).await;
        this.borrow_mut().queue.write_finished(result, now_millis());
        Drafts {
            inner: this.clone(),
        }
        .report();
        write_next(&this);
    });
}

/// How many drafts one of the user's other databases (a team not open now) keeps.
pub async fn stored_count(database: &str) -> Result<usize, StorageError> {
    let idb = Idb::open(database).await?;
    let records = idb.meta_with_prefix(STORAGE_PREFIX).await;
    idb.close();
    Ok(records?.len())
}
