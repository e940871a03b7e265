//! The model reader target: the model's readers over documents of any shape.
//!
//! The input is not a document: it is a program ([`arbitrary::Unstructured`]) that starts
//! from one of the real fixture documents (or an empty one) and edits it through automerge's
//! API: scalars of every type, maps, lists and texts put at the paths the model reads and at
//! others, deletions, counters, text splices, and concurrent copies (forks with other actors)
//! merged back, so keys hold conflicting values. Raw bytes never reach `Automerge::load` here:
//! automerge trusts its input, and the hub target covers what arrives from the network.
//!
//! Then it reads the result, and asserts, whatever the document:
//! - `hydrate_account` and `hydrate_directory` return a value or a typed error, never panic,
//!   and (in half the runs, as it costs as much as the rest) say the same after a save and a
//!   load: what the server stores is read as the phone read it;
//! - the queries over a hydrated account and the history do not panic;
//! - a model edit applied to a document that reads as valid leaves it valid, and keeps every
//!   root key (keys a newer version wrote survive an edit by this one).

use arbitrary::{Result, Unstructured};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, AutoCommit, LoadOptions, ObjId, ObjType, Prop, ROOT, ReadDoc, ScalarValue,
    TextEncoding, Value,
};
use fieldnotes_model::{
    AccountDoc, AccountId, AccountSummary, Contact, ContactId, DirectoryDoc, DriverKey, Editor,
    FollowUpId, Goal, GoalId, GoalStatus, NewNote, NoteId, Strength, UserId, history,
    hydrate_account, hydrate_directory, query,
};

use crate::fixtures;

/// Edits per input: enough to reshape every path the model reads, few enough to stay fast.
const MAX_EDITS: usize = 32;
/// Input bytes left for the reads (queries' clock, a search, the model edit) when the edits
/// stop.
const READ_BYTES: usize = 32;
/// The queries' clock when the input has run out.
const T_NOW: i64 = fixtures::T0 + 30 * 86_400_000;
/// Concurrent copies of the document at most.
const MAX_COPIES: usize = 4;
/// Path depth at most: the model reads four levels (`notes.<id>.drivers.<index>`).
const MAX_DEPTH: u32 = 4;

/// Keys the model reads or writes, so the fuzzer hits them without guessing the bytes.
const KEYS: &[&str] = &[
    "schema",
    "kind",
    "id",
    "team",
    "name",
    "branch",
    "area",
    "created_at",
    "created_by",
    "contacts",
    "drivers",
    "goals",
    "value_proposition",
    "notes",
    "follow_ups",
    "archived",
    "accounts",
    "role",
    "phone",
    "email",
    "strength",
    "evidence",
    "title",
    "status",
    "author",
    "time_millis",
    "text",
    "objections",
    "due_millis",
    "done",
    "c1",
    "g1",
    "f1",
    "delivery",
    "custom:after-hours-pickup",
    "account",
    "directory",
];

/// The fuzz target.
pub fn model_reader(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut copies = vec![start(&mut u)];
    let mut current = 0;
    for _ in 0..MAX_EDITS {
        if u.len() <= READ_BYTES {
            break;
        }
        match edit(&mut u, &mut copies, &mut current) {
            Ok(()) => {}
            Err(_) => break,
        }
    }
    let mut doc = copies.swap_remove(0);
    for mut other in copies {
        if let Err(error) = doc.merge(&mut other) {
            panic!("copies of one document do not merge: {error}");
        }
    }
    read(&mut u, doc);
}

/// The document the program starts from: a fixture (as the model loads it) or an empty one.
/// Loaded once and cloned, which costs a fraction of a load.
fn start(u: &mut Unstructured<'_>) -> AutoCommit {
    thread_local! {
        static STARTS: Vec<AutoCommit> = {
            let mut starts: Vec<AutoCommit> = fixtures::all()
                .iter()
                .map(|fixture| {
                    AccountDoc::load(fixtures::editor("fuzz", 9), &fixture.saved)
                        .expect("a fixture loads")
                        .into_automerge()
                })
                .collect();
            starts.push(
                AutoCommit::new_with_encoding(TextEncoding::UnicodeCodePoint)
                    .with_actor(ActorId::from(vec![9; 16])),
            );
            starts
        };
    }
    let choice = u.choose_index(fixtures::all().len() + 1).unwrap_or(0);
    STARTS.with(|starts| starts[choice].clone())
}

/// One step of the program. automerge's own refusals (a put past a list's end) are ignored:
/// they leave the document as it was.
fn edit(u: &mut Unstructured<'_>, copies: &mut Vec<AutoCommit>, current: &mut usize) -> Result<()> {
    match u.choose_index(9)? {
        0 => {
            let (obj, prop) = target(u, &copies[*current])?;
            let value = scalar(u)?;
            let doc = &mut copies[*current];
            let _ = match prop {
                Prop::Map(key) => doc.put(&obj, key, value),
                Prop::Seq(index) => match u.arbitrary::<bool>()? {
                    true => doc.insert(&obj, index, value),
                    false => doc.put(&obj, index, value),
                },
            };
        }
        1 => {
            let (obj, prop) = target(u, &copies[*current])?;
            let kind = *u.choose(&[ObjType::Map, ObjType::List, ObjType::Text])?;
            let doc = &mut copies[*current];
            let made = match prop {
                Prop::Map(key) => doc.put_object(&obj, key, kind),
                Prop::Seq(index) => doc.insert_object(&obj, index, kind),
            };
            if let (Ok(made), ObjType::Text) = (made, kind) {
                let text = string(u)?;
                let _ = doc.splice_text(&made, 0, 0, &text);
            }
        }
        2 => {
            let (obj, prop) = target(u, &copies[*current])?;
            let _ = copies[*current].delete(&obj, prop);
        }
        3 => {
            let (obj, prop) = target(u, &copies[*current])?;
            let by = counter(u)?;
            let _ = copies[*current].increment(&obj, prop, by);
        }
        4 => {
            let (obj, prop) = target(u, &copies[*current])?;
            let doc = &mut copies[*current];
            if let Ok(Some((Value::Object(ObjType::Text), text))) = doc.get(&obj, prop) {
                let length = doc.length(&text);
                let position = u.int_in_range(0..=length)?;
                let delete = u.int_in_range(0..=length - position)?;
                let insert = string(u)?;
                let _ = doc.splice_text(&text, position, delete as isize, &insert);
            }
        }
        5 => {
            let message = string(u)?;
            let time = clock(u)?;
            copies[*current].commit_with(
                CommitOptions::default()
                    .with_message(message)
                    .with_time(time),
            );
        }
        6 => {
            if copies.len() < MAX_COPIES {
                let actor = actor(u, copies.len())?;
                let fork = copies[*current].fork().with_actor(actor);
                copies.push(fork);
                *current = copies.len() - 1;
            }
        }
        7 => {
            let from = u.choose_index(copies.len())?;
            if from != *current {
                let (into, other) = two_mut(copies, *current, from);
                if let Err(error) = into.merge(other) {
                    panic!("copies of one document do not merge: {error}");
                }
            }
        }
        _ => *current = u.choose_index(copies.len())?,
    }
    Ok(())
}

/// A fresh actor for copy `n`: a Fieldnotes editor's (so history names a user) or any bytes.
/// `n` is part of it either way: two copies writing as one actor would be a misuse of
/// automerge, not a document a phone can produce.
fn actor(u: &mut Unstructured<'_>, n: usize) -> Result<ActorId> {
    let length = u.int_in_range(0..=12)?;
    let mut device = u.bytes(length)?.to_vec();
    device.push(n as u8);
    if u.arbitrary::<bool>()? {
        let user = string(u)?;
        if let Ok(editor) = Editor::new(UserId::new(user), &device) {
            return Ok(editor.actor().clone());
        }
    }
    Ok(ActorId::from(device))
}

fn two_mut<T>(items: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    if a < b {
        let (left, right) = items.split_at_mut(b);
        (&mut left[a], &mut right[0])
    } else {
        let (left, right) = items.split_at_mut(a);
        (&mut right[0], &mut left[b])
    }
}

/// Where to edit: an object and a key or index in it, reached from the root by keys the model
/// reads, keys the document has, or any text.
fn target(u: &mut Unstructured<'_>, doc: &AutoCommit) -> Result<(ObjId, Prop)> {
    let mut obj = ROOT;
    let depth = u.int_in_range(0..=MAX_DEPTH)?;
    for _ in 0..depth {
        let prop = prop(u, doc, &obj)?;
        match doc.get(&obj, prop.clone()) {
            Ok(Some((Value::Object(ObjType::Map | ObjType::List), child))) => obj = child,
            _ => return Ok((obj, prop)),
        }
    }
    Ok((obj.clone(), prop(u, doc, &obj)?))
}

fn prop(u: &mut Unstructured<'_>, doc: &AutoCommit, obj: &ObjId) -> Result<Prop> {
    match doc.object_type(obj) {
        Ok(ObjType::Map | ObjType::Table) => {
            let keys: Vec<String> = doc.keys(obj).collect();
            Ok(Prop::Map(match u.choose_index(3)? {
                0 if !keys.is_empty() => keys[u.choose_index(keys.len())?].clone(),
                1 => u.choose(KEYS)?.to_string(),
                _ => string(u)?,
            }))
        }
        _ => {
            let length = doc.length(obj);
            Ok(Prop::Seq(u.int_in_range(0..=length)?))
        }
    }
}

fn string(u: &mut Unstructured<'_>) -> Result<String> {
    match u.choose_index(4)? {
        0 => Ok(u.choose(KEYS)?.to_string()),
        1 => Ok(String::new()),
        _ => {
            let text: &str = u.arbitrary()?;
            Ok(text.chars().take(64).collect())
        }
    }
}

/// A scalar of any type automerge has, with the edge values of each.
fn scalar(u: &mut Unstructured<'_>) -> Result<ScalarValue> {
    const INTS: &[i64] = &[0, 1, 5, 6, -1, i64::MIN, i64::MAX, 1_700_000_000_000];
    Ok(match u.choose_index(11)? {
        0 => ScalarValue::Str(string(u)?.into()),
        1 => ScalarValue::Int(*u.choose(INTS)?),
        2 => ScalarValue::Int(u.arbitrary()?),
        3 => ScalarValue::Uint(*u.choose(&[0, 1, 5, 6, u64::MAX, i64::MAX as u64 + 1])?),
        4 => ScalarValue::Uint(u.arbitrary()?),
        5 => ScalarValue::F64(*u.choose(&[0.0, 1.0, 5.0, f64::NAN, f64::INFINITY, -0.0])?),
        6 => ScalarValue::Boolean(u.arbitrary()?),
        7 => ScalarValue::Null,
        8 => ScalarValue::Counter(counter(u)?.into()),
        9 => ScalarValue::Timestamp(u.arbitrary()?),
        _ => {
            let length = u.int_in_range(0..=8)?;
            ScalarValue::Bytes(u.bytes(length)?.to_vec())
        }
    })
}

/// A change's time as a device clock gives it: the browser's `Date.now()` is a JavaScript
/// number, so within ±2^53 ms. Farther apart, automerge 0.12 itself overflows while writing the
/// change (hexane's delta column, `attempt to subtract with overflow` in a debug build), which
/// is automerge's bug and the hub target's concern, not the reader's.
fn clock(u: &mut Unstructured<'_>) -> Result<i64> {
    const LIMIT: i64 = 1 << 53;
    u.int_in_range(-LIMIT..=LIMIT)
}

/// A counter's start or increment. automerge 0.12 adds a counter's increments up with `+` when
/// it reads the value, so increments summing past `i64::MAX` panic in a debug build (`attempt
/// to add with overflow`, automerge `op_set2/op.rs`) whichever key holds the counter, and wrap
/// in a release build. That is automerge's bug, found here and reported; within ±2^40 per
/// value, the edits of one input cannot sum past it, so the target looks for other bugs.
fn counter(u: &mut Unstructured<'_>) -> Result<i64> {
    const LIMIT: i64 = 1 << 40;
    u.int_in_range(-LIMIT..=LIMIT)
}

/// A hydrated result in a comparable form: the value, or the error's text.
fn account_of<D: ReadDoc>(doc: &D) -> std::result::Result<fieldnotes_model::Account, String> {
    hydrate_account(doc).map_err(|error| error.to_string())
}

fn directory_of<D: ReadDoc>(doc: &D) -> std::result::Result<fieldnotes_model::Directory, String> {
    hydrate_directory(doc).map_err(|error| error.to_string())
}

/// The reads and the assertions of the module docs.
fn read(u: &mut Unstructured<'_>, mut doc: AutoCommit) {
    let account = account_of(&doc);
    let directory = directory_of(&doc);
    assert_eq!(
        account_of(doc.document()),
        account,
        "the two document views disagree"
    );
    assert_eq!(directory_of(doc.document()), directory);

    // Half the inputs: saving and loading costs as much as the rest of a run.
    if u.arbitrary::<bool>().unwrap_or(false) {
        let saved = doc.save();
        let reloaded = match AutoCommit::load_with_options(
            &saved,
            LoadOptions::new().text_encoding(TextEncoding::UnicodeCodePoint),
        ) {
            Ok(reloaded) => reloaded,
            Err(error) => panic!("a document automerge saved does not load: {error}"),
        };
        assert_eq!(
            account_of(&reloaded),
            account,
            "a saved and reloaded account reads differently"
        );
        assert_eq!(directory_of(&reloaded), directory);
    }

    let _ = history(doc.document());
    if let Ok(account) = &account {
        let accounts = std::slice::from_ref(account);
        let now = u.arbitrary::<i64>().unwrap_or(T_NOW);
        let days = u.arbitrary::<u32>().unwrap_or(30);
        let needle = string(u).unwrap_or_default();
        let _ = query::search(accounts, &needle);
        let _ = query::stale(accounts, now, days);
        let _ = query::needs_attention(accounts, now, days);
        let _ = query::overdue_follow_ups(accounts, now);
        let _ = query::accounts_per_driver(accounts);
        let _ = query::reasons_unknown(accounts);
        for key in account.drivers.keys() {
            let _ = query::with_driver(accounts, key, Strength::MINOR);
            let _ = key.label();
            let _ = key.usual_driver();
        }
    }
    let _ = model_edit(u, doc, account.is_ok(), directory.is_ok());
}

/// Applies one edit through the model and checks what it must keep.
fn model_edit(
    u: &mut Unstructured<'_>,
    doc: AutoCommit,
    account_valid: bool,
    directory_valid: bool,
) -> Result<()> {
    let keys_before: Vec<String> = doc.keys(ROOT).collect();
    let editor = fixtures::editor("editor", 8);
    let now = clock(u)?;
    let id = string(u)?;
    let text = string(u)?;
    let (edited, result) = if u.arbitrary::<bool>()? {
        let mut account = AccountDoc::from_automerge(editor, doc);
        let result = match u.choose_index(10)? {
            0 => account.rename(&text, now),
            1 => account.put_contact(
                &ContactId::new(id),
                &Contact {
                    name: text,
                    ..Contact::default()
                },
                now,
            ),
            2 => {
                let strength = Strength::new(u.int_in_range(1..=5)?).expect("1 to 5 is a strength");
                match DriverKey::parse(&id) {
                    Ok(key) => account.set_driver(&key, strength, &text, now),
                    Err(error) => Err(error),
                }
            }
            3 => account.set_goal(
                &GoalId::new(id),
                &Goal {
                    title: text,
                    status: GoalStatus::parse(&string(u)?),
                },
                now,
            ),
            4 => {
                let length = account.value_proposition_len();
                let position = u.int_in_range(0..=length)?;
                let delete = u.int_in_range(0..=length - position)?;
                account.splice_value_proposition(position, delete, &text, now)
            }
            5 => account.add_note(
                NewNote {
                    id: NoteId::new(id),
                    text,
                    drivers: Vec::new(),
                    objections: vec![string(u)?],
                },
                now,
            ),
            6 => account.add_follow_up(&FollowUpId::new(id), &text, u.arbitrary()?, now),
            7 => account.set_follow_up_done(&FollowUpId::new(id), u.arbitrary()?, now),
            8 => account.archive(now),
            _ => account.restore(now),
        };
        (account.into_automerge(), result)
    } else {
        let mut directory = DirectoryDoc::from_automerge(&editor, doc);
        let id = AccountId::new(id);
        let result = match u.choose_index(4)? {
            0 => directory.add_account(
                &id,
                &AccountSummary {
                    name: text,
                    created_at: now,
                    archived: u.arbitrary()?,
                },
                now,
            ),
            1 => directory.rename_account(&id, &text, now),
            2 => directory.archive_account(&id, now),
            _ => directory.restore_account(&id, now),
        };
        (directory.into_automerge(), result)
    };
    // Account edits write keys the directory does not read and the other way round, so an
    // edit of either kind keeps a valid document of either kind valid.
    if result.is_ok() {
        if account_valid && let Err(error) = hydrate_account(&edited) {
            panic!("a model edit made a valid account unreadable: {error}");
        }
        if directory_valid && let Err(error) = hydrate_directory(&edited) {
            panic!("a model edit made a valid directory unreadable: {error}");
        }
    }
    let keys_after: Vec<String> = edited.keys(ROOT).collect();
    for key in keys_before {
        assert!(
            keys_after.contains(&key),
            "a model edit removed the root key {key:?}"
        );
    }
    Ok(())
}
