//! Which documents the sync engine keeps open, as a pure state machine: a window of at most
//! [`WINDOW`] documents at a time, in order of what matters most, so a phone joining a team of
//! 10,000 accounts holds a few dozen documents in memory while it downloads, not 10,000.
//!
//! Each connection starts a pass over every document the phone knows: the team directory first
//! (it lists the accounts), then documents with changes made on this phone, then the accounts
//! the directory lists that the phone does not have yet (the download), then every stored
//! account (for colleagues' changes since the last sync). A document leaves the window once
//! the server and the phone have the same heads; the next one takes its place. Documents kept
//! open for good (the directory, the account on screen) never leave it. A document that
//! changes while the pass runs, or that the server pushes, joins at its priority.

use std::collections::{BTreeMap, BTreeSet};

use crate::DocumentId;

/// Documents open in the engine at once, beyond those kept open for good.
pub const WINDOW: usize = 32;

/// Why a document is synced, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// The team directory, and the account on screen.
    Always,
    /// Changes made on this phone wait for the server.
    Local,
    /// Listed by the directory, not on this phone yet.
    Download,
    /// Stored here: ask whether colleagues changed it.
    Refresh,
}

#[derive(Debug, Default)]
pub struct SyncPlan {
    /// Waiting to be opened, by priority then by when they came.
    waiting: BTreeMap<(Priority, u64), DocumentId>,
    /// Each waiting document's place in `waiting`.
    places: BTreeMap<DocumentId, (Priority, u64)>,
    arrivals: u64,
    /// Open in the engine now.
    open: BTreeSet<DocumentId>,
    /// Open for good.
    kept: BTreeSet<DocumentId>,
    /// Synced in this pass (not opened again unless something changes).
    done: BTreeSet<DocumentId>,
}

impl SyncPlan {
    /// A new connection: every document gets its turn again.
    pub fn begin_pass(&mut self, documents: impl IntoIterator<Item = (DocumentId, Priority)>) {
        self.waiting.clear();
        self.places.clear();
        self.open.clear();
        self.done.clear();
        for (document, priority) in documents {
            self.want(document, priority);
        }
        let kept: Vec<DocumentId> = self.kept.iter().copied().collect();
        for document in kept {
            self.want(document, Priority::Always);
        }
    }

    /// `document` should be synced at `priority` (or sooner, if it waits at a lower one). A
    /// document already done in this pass comes back only for a change ([`Priority::Local`] or
    /// [`Priority::Always`]).
    pub fn want(&mut self, document: DocumentId, priority: Priority) {
        if self.open.contains(&document) {
            return;
        }
        if self.done.contains(&document) && priority > Priority::Local {
            return;
        }
        match self.places.get(&document) {
            Some(&place) if place.0 <= priority => return,
            Some(&place) => {
                self.waiting.remove(&place);
            }
            None => {}
        }
        self.done.remove(&document);
        self.arrivals += 1;
        let place = (priority, self.arrivals);
        self.waiting.insert(place, document);
        self.places.insert(document, place);
    }

    /// Keeps `document` open for good (the directory, the account on screen), or lets it go.
    pub fn keep(&mut self, document: DocumentId, kept: bool) {
        if kept {
            self.kept.insert(document);
            self.want(document, Priority::Always);
        } else {
            self.kept.remove(&document);
        }
    }

    /// The documents to open now, most urgent first, filling the window.
    pub fn to_open(&mut self) -> Vec<DocumentId> {
        let mut opened = Vec::new();
        while let Some((&place, &document)) = self.waiting.iter().next() {
            let fits = self.open.iter().filter(|d| !self.kept.contains(d)).count() < WINDOW;
            if !fits && place.0 != Priority::Always {
                break;
            }
            self.waiting.remove(&place);
            self.places.remove(&document);
            self.open.insert(document);
            opened.push(document);
        }
        opened
    }

    /// Opens `document` at once, whatever the window holds: the server pushed a change to it,
    /// or the rep just changed it. It leaves like any other once in step.
    pub fn open_now(&mut self, document: DocumentId) {
        if let Some(place) = self.places.remove(&document) {
            self.waiting.remove(&place);
        }
        self.done.remove(&document);
        self.open.insert(document);
    }

    /// The server and the phone have the same heads for `document`. Returns whether it should
    /// be closed now (documents kept open for good stay).
    pub fn in_step(&mut self, document: &DocumentId) -> bool {
        self.done.insert(*document);
        if self.kept.contains(document) {
            return false;
        }
        self.open.remove(document)
    }

    /// The socket closed: nothing is open any more; the next connection begins a new pass.
    pub fn disconnected(&mut self) {
        self.open.clear();
    }

    pub fn is_open(&self, document: &DocumentId) -> bool {
        self.open.contains(document)
    }

    /// Documents open in the engine that have not been in step in this pass yet: at most the
    /// window and those kept open for good.
    pub fn open_not_done(&self) -> Vec<DocumentId> {
        self.open
            .iter()
            .filter(|d| !self.done.contains(d))
            .copied()
            .collect()
    }

    /// Whether every document of the pass has had its turn: nothing waits, and what is still
    /// open is kept open for good and has been in step in this pass.
    pub fn pass_finished(&self) -> bool {
        self.waiting.is_empty()
            && self
                .open
                .iter()
                .all(|d| self.kept.contains(d) && self.done.contains(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> DocumentId {
        let mut bytes = [0u8; 16];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        DocumentId::from_bytes(bytes)
    }

    /// SplitMix64, for seeded scenarios.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    #[test]
    fn the_directory_first_then_local_changes_then_the_download_then_the_rest() {
        let mut plan = SyncPlan::default();
        plan.keep(id(0), true);
        let mut documents: Vec<(DocumentId, Priority)> =
            (1..=40).map(|n| (id(n), Priority::Refresh)).collect();
        documents.extend((41..=100).map(|n| (id(n), Priority::Download)));
        documents.push((id(7), Priority::Local));
        plan.begin_pass(documents);
        let first = plan.to_open();
        assert_eq!(first[0], id(0), "the directory, kept open");
        assert_eq!(first[1], id(7), "then the local change");
        assert!(first[2..].iter().all(|d| (41..=100).any(|n| id(n) == *d)));
        assert_eq!(
            first.len(),
            1 + WINDOW,
            "a window's worth, beyond what is kept"
        );
        assert!(plan.to_open().is_empty(), "the window is full");
        // One in step makes room for one more.
        assert!(plan.in_step(&first[1]));
        assert_eq!(plan.to_open().len(), 1);
        assert!(!plan.in_step(&id(0)), "kept open for good");
    }

    #[test]
    fn the_pass_is_not_finished_before_the_directory_was_in_step() {
        let mut plan = SyncPlan::default();
        plan.keep(id(0), true);
        plan.begin_pass([]);
        assert_eq!(plan.to_open(), [id(0)]);
        assert!(!plan.pass_finished(), "the directory has not answered yet");
        assert!(!plan.in_step(&id(0)));
        assert!(plan.pass_finished());
    }

    #[test]
    fn seeded_passes_sync_every_document_once_and_never_overfill_the_window() {
        for seed in 0..200 {
            let mut rng = Rng(seed);
            let mut plan = SyncPlan::default();
            plan.keep(id(0), true);
            let count = 1 + (rng.next() % 300) as u16;
            let mut documents: Vec<(DocumentId, Priority)> = (1..=count)
                .map(|n| {
                    let priority = match rng.next() % 3 {
                        0 => Priority::Local,
                        1 => Priority::Download,
                        _ => Priority::Refresh,
                    };
                    (id(n), priority)
                })
                .collect();
            documents.push((id(3), Priority::Download));
            plan.begin_pass(documents);
            let mut synced = BTreeSet::new();
            let mut open: Vec<DocumentId> = Vec::new();
            for _ in 0..10_000 {
                open.extend(plan.to_open());
                let unkept = open.iter().filter(|d| **d != id(0)).count();
                assert!(unkept <= WINDOW, "seed {seed}: the window overflowed");
                if rng.next().is_multiple_of(10) {
                    // A change made on the phone meanwhile.
                    let changed = id(1 + (rng.next() % u64::from(count)) as u16);
                    if !synced.contains(&changed) || rng.next().is_multiple_of(2) {
                        plan.want(changed, Priority::Local);
                        synced.remove(&changed);
                    }
                }
                if open.is_empty() {
                    break;
                }
                let pick = (rng.next() % open.len() as u64) as usize;
                let document = open[pick];
                if plan.in_step(&document) {
                    open.swap_remove(pick);
                }
                synced.insert(document);
                if plan.pass_finished() && open.iter().all(|d| *d == id(0)) {
                    break;
                }
            }
            assert!(plan.pass_finished(), "seed {seed}: the pass finished");
            assert!(
                plan.is_open(&id(0)),
                "seed {seed}: the directory stays open"
            );
            for n in 1..=count {
                assert!(
                    synced.contains(&id(n)),
                    "seed {seed}: document {n} was synced"
                );
            }
        }
    }

    #[test]
    fn a_document_done_comes_back_only_for_a_change() {
        let mut plan = SyncPlan::default();
        plan.begin_pass([(id(1), Priority::Refresh)]);
        assert_eq!(plan.to_open(), [id(1)]);
        assert!(plan.in_step(&id(1)));
        plan.want(id(1), Priority::Refresh);
        assert!(plan.to_open().is_empty(), "not again in this pass");
        plan.want(id(1), Priority::Local);
        assert_eq!(plan.to_open(), [id(1)], "a change brings it back");
        plan.disconnected();
        plan.begin_pass([(id(1), Priority::Refresh)]);
        assert_eq!(
            plan.to_open(),
            [id(1)],
            "every document again on a new connection"
        );
    }
}
