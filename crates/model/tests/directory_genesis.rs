//! The team directory that every device creates on its own merges into one.
#[test]
fn directories_created_offline_on_two_devices_merge_into_one() {
    use fieldnotes_model::{AccountId, AccountSummary, DirectoryDoc, Editor, TeamId, UserId};
    let team = TeamId::new("north");
    let ann = Editor::new(UserId::new("ann"), &[1; 16]).unwrap();
    let bob = Editor::new(UserId::new("bob"), &[2; 16]).unwrap();
    let mut phone = DirectoryDoc::genesis(&ann, &team).unwrap();
    let mut laptop = DirectoryDoc::genesis(&bob, &team).unwrap();
    assert_eq!(
        phone.automerge_mut().get_heads(),
        laptop.automerge_mut().get_heads(),
        "the genesis change is byte-identical on every device"
    );
    let summary = |name: &str| AccountSummary {
        name: name.into(),
        created_at: 5,
        archived: false,
    };
    phone
        .add_account(&AccountId::new("a1"), &summary("Acme"), 10)
        .unwrap();
    laptop
        .add_account(&AccountId::new("b1"), &summary("Birch"), 11)
        .unwrap();
    phone.merge(&mut laptop).unwrap();
    let names: Vec<String> = phone
        .hydrate()
        .unwrap()
        .accounts
        .values()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(names, vec!["Acme".to_string(), "Birch".to_string()]);
    assert_ne!(
        fieldnotes_model::team_directory_key(&team),
        fieldnotes_model::team_directory_key(&TeamId::new("south"))
    );
}
