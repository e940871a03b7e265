//! The quick capture's rule, on a real document: a driver ticked on a note becomes a reason the
//! account records, a note without content is not written, a follow-up alone is.

use fieldnotes_model::{
    AccountDoc, AccountId, DriverKey, Editor, FollowUpId, NewAccount, NewFollowUp, NewNote, NoteId,
    Strength, TeamId, UserId, UsualDriver,
};

const NOW: i64 = 1_700_000_000_000;

fn account() -> AccountDoc {
    AccountDoc::create(
        Editor::new(UserId::new("dana"), &[7; 16]).unwrap(),
        NewAccount {
            id: AccountId::new("acc"),
            team: TeamId::new("north"),
            name: "Draft Depot".into(),
            branch: "North".into(),
            area: "Riverside".into(),
        },
        NOW,
    )
    .unwrap()
}

fn note(text: &str, drivers: Vec<DriverKey>) -> NewNote {
    NewNote {
        id: NoteId::new(format!("n-{text}")),
        text: text.into(),
        drivers,
        objections: Vec::new(),
    }
}

#[test]
fn a_driver_ticked_on_a_note_is_recorded_with_the_note_as_evidence() {
    let mut doc = account();
    let delivery = DriverKey::usual(UsualDriver::Delivery);
    let training = DriverKey::usual(UsualDriver::Training);
    doc.set_driver(
        &training,
        Strength::DECISIVE,
        "They ask for every course",
        NOW,
    )
    .unwrap();
    doc.record_visit(
        note(
            "The van comes before seven",
            vec![delivery.clone(), training.clone()],
        ),
        None,
        NOW + 1,
    )
    .unwrap();
    let account = doc.hydrate().unwrap();
    assert_eq!(account.notes.len(), 1);
    let recorded = &account.drivers[&delivery];
    assert_eq!(recorded.strength, Strength::MATTERS);
    assert_eq!(recorded.evidence, "The van comes before seven");
    // A driver already recorded keeps what the rep said about it.
    assert_eq!(account.drivers[&training].strength, Strength::DECISIVE);
    assert_eq!(
        account.drivers[&training].evidence,
        "They ask for every course"
    );
}

#[test]
fn an_empty_note_is_not_written_but_its_follow_up_is() {
    let mut doc = account();
    let follow_up = NewFollowUp {
        id: FollowUpId::new("f1"),
        text: "Send the training dates".into(),
        due_millis: NOW + 86_400_000,
    };
    doc.record_visit(note("", Vec::new()), Some(follow_up), NOW)
        .unwrap();
    let account = doc.hydrate().unwrap();
    assert!(account.notes.is_empty());
    assert!(account.drivers.is_empty());
    assert_eq!(
        account.follow_ups[&FollowUpId::new("f1")].text,
        "Send the training dates"
    );
}
