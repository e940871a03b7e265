//! Real Fieldnotes documents, made with the model's own edits, that the targets start from.
//!
//! Everything is fixed (users, device bytes, ids, times), so the documents, and every seed
//! built from them, are the same bytes on every run.

use std::sync::OnceLock;

use fieldnotes_model::{
    AccountDoc, AccountId, AccountSummary, Contact, ContactId, DirectoryDoc, DriverKey, Editor,
    FollowUpId, Goal, GoalId, GoalStatus, NewAccount, NewNote, NoteId, Strength, TeamId, UserId,
    UsualDriver, team_directory_key,
};
use fieldnotes_sync::DocumentId;

/// The time every fixture edit starts from (unix milliseconds).
pub const T0: i64 = 1_700_000_000_000;

/// The team all fixtures belong to.
pub const TEAM: &str = "north";

/// One fixture document: its document id and its saved bytes.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub id: DocumentId,
    /// `Automerge::save` of the whole document.
    pub saved: Vec<u8>,
    pub kind: FixtureKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixtureKind {
    Account,
    Directory,
}

/// The fixtures: three accounts (a full one, a new empty one, one two reps edited
/// concurrently) and the team directory listing them.
pub fn all() -> &'static [Fixture] {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(build)
}

/// A fixture editor: a user with fixed device bytes.
pub fn editor(user: &str, device: u8) -> Editor {
    Editor::new(UserId::new(user), &[device; 16]).expect("a short user id fits an actor id")
}

/// The document id of the `n`th fixture account.
pub fn account_id(n: u8) -> DocumentId {
    let mut bytes = [0u8; 16];
    bytes[0] = 0xac;
    bytes[15] = n;
    DocumentId::from_bytes(bytes)
}

fn new_account(editor: Editor, n: u8, name: &str) -> AccountDoc {
    AccountDoc::create(
        editor,
        NewAccount {
            id: AccountId::new(account_id(n).to_string()),
            team: TeamId::new(TEAM),
            name: name.into(),
            branch: "North".into(),
            area: "Riverside".into(),
        },
        T0,
    )
    .expect("a new account is created")
}

fn build() -> Vec<Fixture> {
    let full = full_account();
    let empty = new_account(editor("ann", 1), 2, "Beacon Electrical");
    let merged = merged_account();
    let mut accounts = [(1, full), (2, empty), (3, merged)];

    let mut directory = DirectoryDoc::genesis(&editor("ann", 1), &TeamId::new(TEAM))
        .expect("the genesis directory is created");
    let mut fixtures = Vec::new();
    for (i, (n, account)) in accounts.iter_mut().enumerate() {
        let hydrated = account.hydrate().expect("a fixture account reads back");
        directory
            .add_account(
                &hydrated.id,
                &AccountSummary {
                    name: hydrated.name.clone(),
                    created_at: hydrated.created_at,
                    archived: hydrated.archived,
                },
                T0 + 100 + i as i64,
            )
            .expect("the directory lists the account");
        fixtures.push(Fixture {
            id: account_id(*n),
            saved: account.save(),
            kind: FixtureKind::Account,
        });
    }
    fixtures.push(Fixture {
        id: DocumentId::from_bytes(team_directory_key(&TeamId::new(TEAM))),
        saved: directory.save(),
        kind: FixtureKind::Directory,
    });
    fixtures
}

/// An account with every collection filled: what the reader has the most paths to read in.
fn full_account() -> AccountDoc {
    let mut doc = new_account(editor("ann", 1), 1, "Acme Plumbing");
    let t = T0 + 1;
    let check = "fixture edits succeed";
    doc.put_contact(
        &ContactId::new("c1"),
        &Contact {
            name: "Dana Reyes".into(),
            role: "Office manager".into(),
            phone: "+44 20 7946 0000".into(),
            email: "dana@acme.example".into(),
        },
        t,
    )
    .expect(check);
    doc.set_driver(
        &DriverKey::usual(UsualDriver::Delivery),
        Strength::DECISIVE,
        "Same-day van saved their job",
        t + 1,
    )
    .expect(check);
    let custom = DriverKey::custom("after hours pickup").expect("a valid custom driver");
    doc.set_driver(&custom, Strength::SOME, "Collects at 7pm", t + 2)
        .expect(check);
    doc.set_goal(
        &GoalId::new("g1"),
        &Goal {
            title: "Open a second depot".into(),
            status: GoalStatus::InProgress,
        },
        t + 3,
    )
    .expect(check);
    doc.splice_value_proposition(0, 0, "We keep your vans moving", t + 4)
        .expect(check);
    doc.add_note(
        NewNote {
            id: NoteId::from_random(&[7; 16]),
            text: "Asked about the training days".into(),
            drivers: vec![DriverKey::usual(UsualDriver::Training)],
            objections: vec!["too far to drive".into()],
        },
        t + 5,
    )
    .expect(check);
    doc.add_follow_up(
        &FollowUpId::new("f1"),
        "Send the depot price list",
        t + 86_400_000,
        t + 6,
    )
    .expect(check);
    doc.set_follow_up_done(&FollowUpId::new("f1"), true, t + 7)
        .expect(check);
    doc
}

/// An account two reps edited offline at the same time and then merged: conflicting values
/// and interleaved text, as a server holds after syncing both.
fn merged_account() -> AccountDoc {
    let check = "fixture edits succeed";
    let mut ann = new_account(editor("ann", 1), 3, "Cobalt Roofing");
    let mut bob = AccountDoc::load(editor("bob", 2), &ann.save()).expect("the copy loads");
    ann.rename("Cobalt Roofing Ltd", T0 + 10).expect(check);
    bob.rename("Cobalt Roofing & Sons", T0 + 11).expect(check);
    ann.splice_value_proposition(0, 0, "Roofs that last", T0 + 12)
        .expect(check);
    bob.splice_value_proposition(0, 0, "Fast quotes. ", T0 + 13)
        .expect(check);
    bob.archive(T0 + 14).expect(check);
    ann.restore(T0 + 15).expect(check);
    ann.merge(&mut bob).expect("the copies merge");
    ann
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldnotes_model::{hydrate_account, hydrate_directory};

    #[test]
    fn every_fixture_reads_as_its_kind() {
        for fixture in all() {
            let doc = automerge::AutoCommit::load(&fixture.saved).expect("a fixture loads");
            match fixture.kind {
                FixtureKind::Account => {
                    hydrate_account(&doc).expect("an account fixture reads");
                }
                FixtureKind::Directory => {
                    let directory = hydrate_directory(&doc).expect("the directory reads");
                    assert_eq!(directory.accounts.len(), 3);
                }
            }
        }
    }
}
