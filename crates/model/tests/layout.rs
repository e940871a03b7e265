//! What each edit writes is pinned, change by change.
//!
//! Every device makes the team directory's first change on its own, and it must be byte-identical
//! everywhere, whatever version of the app made it; and every version must write each field with
//! the same automerge type, in the same shape. The hashes below were taken from the build that
//! wrote documents with autosurgeon, before the model wrote them by hand, so a change to any of
//! them means documents in the field would no longer line up.
//!
//! `cargo xtask test` runs this file on both automerge lines, the browser's 0.6 and the
//! server's 0.12 (ARCHITECTURE.md, "Two automerge lines"): both must write these very changes,
//! and each must load what the other saved.

use fieldnotes_model::{
    AccountDoc, AccountId, AccountSummary, Contact, ContactId, DirectoryDoc, DriverKey, Editor,
    FollowUpId, Goal, GoalId, GoalStatus, NewAccount, NewNote, NoteId, Strength, TeamId, UserId,
    UsualDriver,
};

const NOW: i64 = 1_700_000_000_000;

fn heads(doc: &mut automerge::AutoCommit) -> String {
    let heads = doc.get_heads();
    assert_eq!(heads.len(), 1, "one edit after another leaves one head");
    heads[0].to_string()
}

/// The pinned edits, one after another: what each wrote, and the two documents they made.
fn edits() -> (Vec<(&'static str, String)>, DirectoryDoc, AccountDoc) {
    let ann = Editor::new(UserId::new("ann"), &[1; 16]).unwrap();
    let team = TeamId::new("north");
    let mut steps = Vec::new();

    let mut directory = DirectoryDoc::genesis(&ann, &team).unwrap();
    steps.push(("directory genesis", heads(directory.automerge_mut())));
    let mut summary = AccountSummary {
        name: "Acme".into(),
        created_at: 5,
        archived: false,
    };
    directory
        .add_account(&AccountId::new("a1"), &summary, NOW)
        .unwrap();
    steps.push(("list an account", heads(directory.automerge_mut())));
    summary.name = "Acme Ltd".into();
    directory
        .add_account(&AccountId::new("a1"), &summary, NOW + 1)
        .unwrap();
    steps.push(("refresh a listed account", heads(directory.automerge_mut())));

    let mut account = AccountDoc::create(
        ann,
        NewAccount {
            id: AccountId::new("a1"),
            team,
            name: "Acme".into(),
            branch: "North".into(),
            area: "Riverside".into(),
        },
        NOW,
    )
    .unwrap();
    steps.push(("create an account", heads(account.automerge_mut())));
    let mut contact = Contact {
        name: "Zoë".into(),
        role: "Owner".into(),
        ..Contact::default()
    };
    account
        .put_contact(&ContactId::new("c1"), &contact, NOW + 1)
        .unwrap();
    steps.push(("add a contact", heads(account.automerge_mut())));
    contact.name = "Zoë Martín".into();
    contact.phone = "555 0100".into();
    account
        .put_contact(&ContactId::new("c1"), &contact, NOW + 2)
        .unwrap();
    steps.push(("edit a contact", heads(account.automerge_mut())));
    let relationship = DriverKey::usual(UsualDriver::Relationship);
    account
        .set_driver(&relationship, Strength::STRONG, "Knows the kids", NOW + 3)
        .unwrap();
    steps.push(("record a driver", heads(account.automerge_mut())));
    account
        .set_driver(
            &relationship,
            Strength::DECISIVE,
            "Knows the kids well",
            NOW + 4,
        )
        .unwrap();
    steps.push(("update a driver", heads(account.automerge_mut())));
    let mut goal = Goal {
        title: "Open a second shop".into(),
        status: GoalStatus::NotStarted,
    };
    account
        .set_goal(&GoalId::new("g1"), &goal, NOW + 5)
        .unwrap();
    steps.push(("add a goal", heads(account.automerge_mut())));
    goal.title = "Open a second shop in spring".into();
    goal.status = GoalStatus::InProgress;
    account
        .set_goal(&GoalId::new("g1"), &goal, NOW + 6)
        .unwrap();
    steps.push(("edit a goal", heads(account.automerge_mut())));
    account
        .add_note(
            NewNote {
                id: NoteId::new("n1"),
                text: "Asked about delivery windows".into(),
                drivers: vec![
                    relationship.clone(),
                    DriverKey::usual(UsualDriver::Delivery),
                ],
                objections: vec!["too far".into(), "price".into()],
            },
            NOW + 7,
        )
        .unwrap();
    steps.push(("add a note", heads(account.automerge_mut())));
    account
        .add_follow_up(
            &FollowUpId::new("f1"),
            "Send the catalogue",
            NOW + 86_400_000,
            NOW + 8,
        )
        .unwrap();
    steps.push(("add a follow-up", heads(account.automerge_mut())));
    (steps, directory, account)
}

#[test]
fn every_edit_writes_the_same_change_as_before() {
    let (got, _, _) = edits();
    let expected: &[(&str, &str)] = &[
        (
            "directory genesis",
            "7d2628adc223c8565de3f1c5f1266de64224c9ea486a386a66f92a32231d8c94",
        ),
        (
            "list an account",
            "f48a29af6246632eb5eed9403d29385da369a9ce137cb424c8f748bfe26db948",
        ),
        (
            "refresh a listed account",
            "aa8844e9835f20d3ae207d94295fe8fcaf2946a1a738cb0a215a868ba4876b7c",
        ),
        (
            "create an account",
            "6cc8fd4f850fedc802e7cfd6491d4f52a0a4f9da942bd05d21f6d73e623d2c3f",
        ),
        (
            "add a contact",
            "c8d75f135b675296844e2e0ea58fc13ed4d9251584e5b9894f862bf772703992",
        ),
        (
            "edit a contact",
            "fb2463d94eea3eb3bd6dd669fa5d58f67b931c17ea56852012d4d31332a54c14",
        ),
        (
            "record a driver",
            "ffd4d81b38b3cc9c2635ed3139f80b57deb39ce08a167e3e6c78123b3b237608",
        ),
        (
            "update a driver",
            "dcf6f156b1d08fbce8e1e41f6e4f66602893e3414b95c20822da340fad32d674",
        ),
        (
            "add a goal",
            "036a3ba200eee54700fb7b56400f7671da1b753de5f4eeb2a9b9a1ab7259f283",
        ),
        (
            "edit a goal",
            "450d6305ad24aa1e405d43727d9540ad977d3027f724eb833517523011abca81",
        ),
        (
            "add a note",
            "2a4f970906adace2698cd28d0a6abeb468bf867bb64f626b6ea7511e77dabaa3",
        ),
        (
            "add a follow-up",
            "e68d28648221bb433352e678407dec1da6cc348d4ff2b0ef19b9933b86a93471",
        ),
    ];
    let got: Vec<(&str, &str)> = got.iter().map(|(s, h)| (*s, h.as_str())).collect();
    assert_eq!(got, expected);
}

/// The automerge line this build runs.
const LINE: &str = if cfg!(fieldnotes_browser_automerge) {
    "0.6"
} else {
    "0.12"
};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A phone updated to a build on the other line keeps the documents in its IndexedDB, and the
/// server stores whole documents that browsers save. The fixtures are the pinned edits' two
/// documents as each line saves them (`FIELDNOTES_BLESS=1` rewrites this line's pair).
#[test]
fn what_either_automerge_line_saves_the_other_loads() {
    let (_, mut directory, mut account) = edits();
    if std::env::var_os("FIELDNOTES_BLESS").is_some() {
        std::fs::create_dir_all(fixture("")).unwrap();
        std::fs::write(
            fixture(&format!("directory-{LINE}.automerge")),
            directory.save(),
        )
        .unwrap();
        std::fs::write(
            fixture(&format!("account-{LINE}.automerge")),
            account.save(),
        )
        .unwrap();
    }
    let editor = Editor::new(UserId::new("bob"), &[2; 16]).unwrap();
    for saved_by in ["0.6", "0.12"] {
        let bytes = std::fs::read(fixture(&format!("directory-{saved_by}.automerge"))).unwrap();
        let mut loaded = DirectoryDoc::load(&editor, &bytes).unwrap();
        assert_eq!(
            loaded.automerge_mut().get_heads(),
            directory.automerge_mut().get_heads(),
            "the directory saved by {saved_by}, loaded by {LINE}"
        );
        assert_eq!(loaded.hydrate().unwrap(), directory.hydrate().unwrap());

        let bytes = std::fs::read(fixture(&format!("account-{saved_by}.automerge"))).unwrap();
        let mut loaded = AccountDoc::load(editor.clone(), &bytes).unwrap();
        assert_eq!(
            loaded.automerge_mut().get_heads(),
            account.automerge_mut().get_heads(),
            "the account saved by {saved_by}, loaded by {LINE}"
        );
        assert_eq!(loaded.hydrate().unwrap(), account.hydrate().unwrap());
        assert_eq!(loaded.history(), account.history());
    }
}
