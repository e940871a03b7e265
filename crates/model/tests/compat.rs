//! Documents from other versions and damaged documents: what survives, what is refused.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use fieldnotes_model::{
    AccountDoc, AccountId, AccountSummary, Contact, ContactId, DirectoryDoc, DriverKey, Editor,
    FollowUpId, Goal, GoalId, GoalStatus, ModelError, NewAccount, NewNote, NoteId, Strength,
    TeamId, UserId, UsualDriver,
};

const NOW: i64 = 1_700_000_000_000;

fn editor(user: &str, device: u8) -> Editor {
    Editor::new(UserId::new(user), &[device; 16]).unwrap()
}

fn new_account(editor: Editor) -> AccountDoc {
    AccountDoc::create(
        editor,
        NewAccount {
            id: AccountId::new("acc-1"),
            team: TeamId::new("north"),
            name: "Acme".into(),
            branch: "North".into(),
            area: "Riverside".into(),
        },
        NOW,
    )
    .unwrap()
}

fn map_at(doc: &AutoCommit, path: &[&str]) -> automerge::ObjId {
    let mut obj = ROOT;
    for key in path {
        obj = match doc.get(&obj, *key).unwrap() {
            Some((Value::Object(_), id)) => id,
            other => panic!("no object at {key}: {other:?}"),
        };
    }
    obj
}

fn scalar_at(doc: &AutoCommit, path: &[&str], key: &str) -> Option<ScalarValue> {
    let obj = map_at(doc, path);
    match doc.get(&obj, key).unwrap() {
        Some((Value::Scalar(s), _)) => Some(s.into_owned()),
        _ => None,
    }
}

/// An account with one of everything, then extra keys "a newer version" wrote everywhere.
fn account_from_newer_version() -> AccountDoc {
    let mut doc = new_account(editor("ann", 1));
    let contact = ContactId::new("c1");
    let relationship = DriverKey::usual(UsualDriver::Relationship);
    doc.put_contact(
        &contact,
        &Contact {
            name: "Zoë".into(),
            ..Contact::default()
        },
        NOW,
    )
    .unwrap();
    doc.set_driver(&relationship, Strength::STRONG, "Knows the rep's kids", NOW)
        .unwrap();
    doc.set_goal(
        &GoalId::new("g1"),
        &Goal {
            title: "Open a second shop".into(),
            status: GoalStatus::NotStarted,
        },
        NOW,
    )
    .unwrap();
    doc.add_note(
        NewNote {
            id: NoteId::new("n1"),
            text: "first".into(),
            drivers: vec![],
            objections: vec![],
        },
        NOW,
    )
    .unwrap();
    doc.add_follow_up(&FollowUpId::new("f1"), "send catalogue", NOW + 1, NOW)
        .unwrap();

    // What a hypothetical version 2 adds: new keys at the root and inside every kind of item.
    let am = doc.automerge_mut();
    am.put(ROOT, "schema", 2u64).unwrap();
    am.put(ROOT, "loyalty_tier", "gold").unwrap();
    let future = am.put_object(ROOT, "future_section", ObjType::Map).unwrap();
    am.put(&future, "nested", 42i64).unwrap();
    for (path, key) in [
        (&["contacts", "c1"][..], "linkedin"),
        (&["drivers", "relationship"][..], "confidence"),
        (&["goals", "g1"][..], "target_date"),
        (&["notes", "n1"][..], "photo"),
        (&["follow_ups", "f1"][..], "assignee"),
    ] {
        let obj = map_at(am, path);
        am.put(&obj, key, format!("kept:{key}")).unwrap();
    }
    // A status and a driver key this version does not know.
    let goals = map_at(am, &["goals", "g1"]);
    am.put(&goals, "status", "paused").unwrap();
    am.commit();
    doc
}

fn assert_extra_keys_kept(doc: &AutoCommit) {
    assert_eq!(scalar_at(doc, &[], "loyalty_tier"), Some("gold".into()));
    assert_eq!(
        scalar_at(doc, &["future_section"], "nested"),
        Some(ScalarValue::Int(42))
    );
    for (path, key) in [
        (&["contacts", "c1"][..], "linkedin"),
        (&["drivers", "relationship"][..], "confidence"),
        (&["goals", "g1"][..], "target_date"),
        (&["notes", "n1"][..], "photo"),
        (&["follow_ups", "f1"][..], "assignee"),
    ] {
        assert_eq!(
            scalar_at(doc, path, key),
            Some(ScalarValue::Str(format!("kept:{key}").into())),
            "{path:?}/{key}"
        );
    }
}

#[test]
fn editing_a_newer_document_keeps_every_key_this_version_does_not_know() {
    let mut doc = account_from_newer_version();
    let bytes = doc.save();
    // Another device running this version loads it and edits every kind of item.
    let mut old_app = AccountDoc::load(editor("bob", 2), &bytes).unwrap();
    let account = old_app
        .hydrate()
        .expect("a newer document is still readable");
    assert_eq!(account.schema, 2);
    assert_eq!(
        account.goals[&GoalId::new("g1")].status,
        GoalStatus::Other("paused".into())
    );

    let relationship = DriverKey::usual(UsualDriver::Relationship);
    old_app.rename("Acme Ltd", NOW + 10).unwrap();
    old_app
        .put_contact(
            &ContactId::new("c1"),
            &Contact {
                name: "Zoë Martín".into(),
                role: "Owner".into(),
                ..Contact::default()
            },
            NOW + 11,
        )
        .unwrap();
    old_app
        .set_driver(
            &relationship,
            Strength::DECISIVE,
            "Knows the rep's kids well",
            NOW + 12,
        )
        .unwrap();
    old_app
        .set_goal(
            &GoalId::new("g1"),
            &Goal {
                title: "Open a second shop soon".into(),
                status: GoalStatus::InProgress,
            },
            NOW + 13,
        )
        .unwrap();
    old_app
        .set_follow_up_done(&FollowUpId::new("f1"), true, NOW + 14)
        .unwrap();
    old_app
        .add_note(
            NewNote {
                id: NoteId::new("n2"),
                text: "second".into(),
                drivers: vec![],
                objections: vec![],
            },
            NOW + 15,
        )
        .unwrap();
    old_app
        .splice_value_proposition(0, 0, "Reliable", NOW + 16)
        .unwrap();
    old_app.archive(NOW + 17).unwrap();

    assert_extra_keys_kept(old_app.automerge());
    let saved = old_app.save();
    let reloaded = AccountDoc::load(editor("ann", 3), &saved).unwrap();
    assert_extra_keys_kept(reloaded.automerge());
    // The schema number is never lowered by an older writer.
    assert_eq!(
        scalar_at(reloaded.automerge(), &[], "schema"),
        Some(ScalarValue::Uint(2))
    );

    let account = reloaded.hydrate().unwrap();
    assert_eq!(account.name, "Acme Ltd");
    assert_eq!(account.contacts[&ContactId::new("c1")].role, "Owner");
    assert_eq!(
        account.drivers[&relationship].evidence,
        "Knows the rep's kids well"
    );
    assert_eq!(
        account.goals[&GoalId::new("g1")].status,
        GoalStatus::InProgress
    );
    assert!(account.follow_ups[&FollowUpId::new("f1")].done);
    assert_eq!(account.notes.len(), 2);
    assert_eq!(account.value_proposition, "Reliable");
    assert!(account.archived);
}

#[test]
fn a_driver_key_from_a_newer_version_is_read_and_kept() {
    let mut doc = new_account(editor("ann", 1));
    let am = doc.automerge_mut();
    let drivers = map_at(am, &["drivers"]);
    let driver = am
        .put_object(&drivers, "sustainability", ObjType::Map)
        .unwrap();
    am.put(&driver, "strength", 3u64).unwrap();
    let evidence = am.put_object(&driver, "evidence", ObjType::Text).unwrap();
    am.splice_text(&evidence, 0, 0, "asked about recycling")
        .unwrap();
    am.commit();
    doc.set_driver(
        &DriverKey::usual(UsualDriver::Price),
        Strength::MINOR,
        "",
        NOW,
    )
    .unwrap();
    let account = doc.hydrate().unwrap();
    let unknown = DriverKey::from("sustainability".to_string());
    assert_eq!(account.drivers[&unknown].evidence, "asked about recycling");
    assert_eq!(account.drivers.len(), 2);
}

fn expect_error(bytes: &[u8]) -> ModelError {
    match AccountDoc::load(editor("ann", 1), bytes).and_then(|d| d.hydrate()) {
        Ok(account) => panic!("expected an error, read {account:?}"),
        Err(e) => e,
    }
}

fn damaged(edit: impl FnOnce(&mut AutoCommit)) -> ModelError {
    let mut doc = new_account(editor("ann", 1));
    edit(doc.automerge_mut());
    doc.automerge_mut().commit();
    expect_error(&doc.save())
}

#[test]
fn invalid_documents_give_specific_errors() {
    let e = expect_error(b"definitely not automerge");
    assert!(matches!(e, ModelError::Load(_)), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("the document bytes could not be loaded")
    );

    let e = expect_error(&AutoCommit::new().save());
    assert!(matches!(e, ModelError::MissingSchema), "{e:?}");
    assert_eq!(
        e.to_string(),
        "not a fieldnotes document: it has no schema version"
    );

    let mut directory = DirectoryDoc::create(&editor("ann", 1), TeamId::new("north"), NOW).unwrap();
    let e = expect_error(&directory.save());
    assert_eq!(
        e.to_string(),
        r#"expected a document of kind "account" but found kind "directory""#
    );

    let e = damaged(|d| d.delete(ROOT, "name").unwrap());
    assert!(
        matches!(
            e,
            ModelError::Invalid {
                kind: "account",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "the account document is damaged: `name` (a string) is missing"
    );

    let e = damaged(|d| d.put(ROOT, "name", 7i64).unwrap());
    assert!(matches!(e, ModelError::Invalid { .. }), "{e:?}");
    assert!(
        e.to_string()
            .ends_with("`name` should be a string but is 7"),
        "{e}"
    );

    // A damaged field deep inside is named by its whole path.
    let e = damaged(|d| {
        let contacts = map_at(d, &["contacts"]);
        let contact = d.put_object(&contacts, "c9", ObjType::Map).unwrap();
        d.put(&contact, "name", true).unwrap();
    });
    assert!(
        e.to_string()
            .ends_with("`contacts.c9.name` should be a string but is true"),
        "{e}"
    );

    let e = damaged(|d| {
        d.put_object(ROOT, "value_proposition", ObjType::Map)
            .unwrap();
    });
    assert!(matches!(e, ModelError::Invalid { .. }), "{e:?}");

    let e = damaged(|d| d.put(ROOT, "schema", "one").unwrap());
    assert!(matches!(e, ModelError::MissingSchema), "{e:?}");

    let e = damaged(|d| {
        let drivers = map_at(d, &["drivers"]);
        let driver = d.put_object(&drivers, "price", ObjType::Map).unwrap();
        d.put(&driver, "strength", 9u64).unwrap();
        let text = d.put_object(&driver, "evidence", ObjType::Text).unwrap();
        d.splice_text(&text, 0, 0, "x").unwrap();
    });
    assert!(e.to_string().contains("a strength from 1 to 5"), "{e}");

    let e = damaged(|d| {
        d.put(ROOT, "notes", "not a map").unwrap();
    });
    assert!(matches!(e, ModelError::Invalid { .. }), "{e:?}");
}

#[test]
fn corrupted_bytes_never_panic() {
    let mut doc = account_from_newer_version();
    let bytes = doc.save();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut loaded = 0;
    for _ in 0..300 {
        let mut copy = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() as usize) % copy.len();
            copy[i] = next() as u8;
        }
        if let Ok(doc) = AccountDoc::load(editor("ann", 1), &copy) {
            loaded += 1;
            let _ = doc.hydrate();
        }
    }
    // Automerge checksums its chunks, so nearly every corruption is refused at load time.
    assert!(loaded < 300);
}

#[test]
fn edits_to_missing_items_are_refused_and_leave_no_change() {
    let mut doc = new_account(editor("ann", 1));
    let heads = doc.automerge_mut().get_heads();
    assert!(matches!(
        doc.set_follow_up_done(&FollowUpId::new("nope"), true, NOW),
        Err(ModelError::UnknownFollowUp(_))
    ));
    assert!(matches!(
        doc.remove_contact(&ContactId::new("nope"), NOW),
        Err(ModelError::UnknownContact(_))
    ));
    assert!(matches!(
        doc.set_goal_status(&GoalId::new("nope"), &GoalStatus::Achieved, NOW),
        Err(ModelError::UnknownGoal(_))
    ));
    assert!(matches!(
        doc.remove_driver(&DriverKey::usual(UsualDriver::Price), NOW),
        Err(ModelError::UnknownDriver(_))
    ));
    let e = doc.splice_value_proposition(1, 0, "x", NOW).unwrap_err();
    assert_eq!(
        e.to_string(),
        "text edit at 1 deleting 0 is outside the text of 0 characters"
    );
    assert_eq!(doc.automerge_mut().get_heads(), heads);
}

#[test]
fn archive_survives_concurrent_edits_and_concurrent_restore() {
    let mut ann = new_account(editor("ann", 1));
    let mut bob = AccountDoc::load(editor("bob", 2), &ann.save()).unwrap();
    ann.archive(NOW + 1).unwrap();
    bob.rename("Acme Renamed", NOW + 2).unwrap();
    bob.set_driver(
        &DriverKey::usual(UsualDriver::Price),
        Strength::SOME,
        "cheap",
        NOW + 2,
    )
    .unwrap();
    ann.merge(&mut bob).unwrap();
    bob.merge(&mut ann).unwrap();
    assert!(ann.hydrate().unwrap().archived);
    assert!(bob.hydrate().unwrap().archived);
    assert_eq!(bob.hydrate().unwrap().name, "Acme Renamed");

    // Bob restores after seeing the archive, while Cat (who also saw it) archives again.
    let mut cat = AccountDoc::load(editor("cat", 3), &bob.save()).unwrap();
    bob.restore(NOW + 3).unwrap();
    assert!(!bob.hydrate().unwrap().archived);
    cat.restore(NOW + 3).unwrap();
    cat.archive(NOW + 4).unwrap();
    bob.merge(&mut cat).unwrap();
    cat.merge(&mut bob).unwrap();
    assert!(
        bob.hydrate().unwrap().archived,
        "a concurrent archive wins over a restore"
    );
    assert!(cat.hydrate().unwrap().archived);

    // A restore made after seeing everything un-archives for everyone.
    bob.restore(NOW + 5).unwrap();
    cat.merge(&mut bob).unwrap();
    assert!(!cat.hydrate().unwrap().archived);
}

#[test]
fn history_lists_who_changed_what_and_when() {
    let mut ann = new_account(editor("ann", 1));
    let mut bob = AccountDoc::load(editor("bob", 2), &ann.save()).unwrap();
    bob.rename("Acme Ltd", NOW + 60_000).unwrap();
    ann.merge(&mut bob).unwrap();
    let history = ann.history();
    let got: Vec<(Option<&str>, i64, Option<&str>)> = history
        .iter()
        .map(|h| {
            (
                h.user.as_ref().map(|u| u.as_str()),
                h.time_millis,
                h.message.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some("ann"), NOW, Some("create account")),
            (Some("bob"), NOW + 60_000, Some("rename account"))
        ]
    );
}

#[test]
fn directory_merges_concurrent_additions_and_keeps_archive() {
    let mut ann = DirectoryDoc::create(&editor("ann", 1), TeamId::new("north"), NOW).unwrap();
    let mut bob = DirectoryDoc::load(&editor("bob", 2), &ann.save()).unwrap();
    let summary = |name: &str| AccountSummary {
        name: name.into(),
        created_at: NOW,
        archived: false,
    };
    ann.add_account(&AccountId::new("a"), &summary("Acme"), NOW)
        .unwrap();
    bob.add_account(&AccountId::new("b"), &summary("Bolt"), NOW)
        .unwrap();
    ann.merge(&mut bob).unwrap();
    bob.merge(&mut ann).unwrap();
    bob.archive_account(&AccountId::new("a"), NOW + 1).unwrap();
    ann.rename_account(&AccountId::new("a"), "Acme Ltd", NOW + 1)
        .unwrap();
    ann.merge(&mut bob).unwrap();
    let directory = ann.hydrate().unwrap();
    assert_eq!(
        directory,
        bob.merge(&mut ann).map(|_| bob.hydrate().unwrap()).unwrap()
    );
    assert_eq!(directory.accounts.len(), 2);
    assert_eq!(directory.accounts[&AccountId::new("a")].name, "Acme Ltd");
    let visible: Vec<&str> = directory.visible().map(|(id, _)| id.as_str()).collect();
    assert_eq!(visible, ["b"]);
    assert!(matches!(
        ann.rename_account(&AccountId::new("zz"), "x", NOW),
        Err(ModelError::UnknownAccount(_))
    ));
    // And an account document is not a directory.
    let mut account = new_account(editor("ann", 1));
    let e = DirectoryDoc::load(&editor("ann", 1), &account.save())
        .unwrap()
        .hydrate()
        .unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::WrongKind {
                expected: "directory",
                ..
            }
        ),
        "{e:?}"
    );
}
