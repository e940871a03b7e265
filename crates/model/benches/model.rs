//! How the model performs at the sizes the product brief names: an account with 1,000 visit
//! notes, and a team of 500 accounts on the list screen.
//!
//! `cargo bench -p fieldnotes-model -- --quick`. Byte sizes are printed to stderr, since
//! criterion only times.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fieldnotes_model::query;
use fieldnotes_model::{
    Account, AccountDoc, AccountId, Contact, ContactId, DriverKey, Editor, FollowUpId, NewAccount,
    NewNote, NoteId, Strength, TeamId, UserId, UsualDriver,
};

const NOW: i64 = 1_700_000_000_000;
const DAY: i64 = 86_400_000;

fn editor() -> Editor {
    Editor::new(UserId::new("bench-user"), &[7; 16]).unwrap()
}

fn account_with_notes(index: usize, notes: usize) -> AccountDoc {
    let mut doc = AccountDoc::create(
        editor(),
        NewAccount {
            id: AccountId::new(format!("account-{index}")),
            team: TeamId::new("team"),
            name: format!("Client {index}"),
            branch: format!("Branch {}", index % 7),
            area: "Riverside".into(),
        },
        NOW - 200 * DAY,
    )
    .unwrap();
    let mut t = NOW - 200 * DAY;
    doc.put_contact(
        &ContactId::new(format!("c{index}")),
        &Contact {
            name: format!("Contact {index}"),
            role: "Buyer".into(),
            phone: "555-0100".into(),
            email: "buyer@example.com".into(),
        },
        t,
    )
    .unwrap();
    if !index.is_multiple_of(4) {
        for d in 0..(index % 4) {
            let driver = UsualDriver::ALL[(index + d) % 9];
            doc.set_driver(
                &DriverKey::usual(driver),
                Strength::new(1 + (index % 5) as i64).unwrap(),
                "They said so on the phone",
                t,
            )
            .unwrap();
        }
    }
    doc.splice_value_proposition(
        0,
        0,
        "We keep your vans moving and your counter stocked.",
        t,
    )
    .unwrap();
    for n in 0..notes {
        t += 3 * DAY / (1 + (index % 3) as i64);
        doc.add_note(
            NewNote {
                id: NoteId::new(format!("{index}-{n}")),
                text: format!("Visit {n}: talked about delivery windows and the spring programme."),
                drivers: vec![DriverKey::usual(UsualDriver::Delivery)],
                objections: if n % 5 == 0 {
                    vec!["price went up".into()]
                } else {
                    vec![]
                },
            },
            t.min(NOW),
        )
        .unwrap();
    }
    doc.add_follow_up(
        &FollowUpId::new(format!("f{index}")),
        "Send the catalogue",
        NOW + (index as i64 % 10 - 5) * DAY,
        t.min(NOW),
    )
    .unwrap();
    doc
}

fn bench_big_account(c: &mut Criterion) {
    let mut doc = account_with_notes(1, 1_000);
    let bytes = doc.save();
    eprintln!(
        "account with 1,000 notes: {} bytes saved ({} bytes per note)",
        bytes.len(),
        bytes.len() / 1_000
    );
    c.bench_function("save account with 1,000 notes", |b| {
        b.iter(|| black_box(doc.save()))
    });
    c.bench_function("load account with 1,000 notes", |b| {
        b.iter(|| AccountDoc::load(editor(), black_box(&bytes)).unwrap())
    });
    let loaded = AccountDoc::load(editor(), &bytes).unwrap();
    c.bench_function("hydrate account with 1,000 notes", |b| {
        b.iter(|| black_box(loaded.hydrate().unwrap()))
    });
}

fn bench_team(c: &mut Criterion) {
    let docs: Vec<AccountDoc> = (0..500).map(|i| account_with_notes(i, 10)).collect();
    let total_bytes: usize = docs.iter().map(|d| d.clone().save().len()).sum();
    eprintln!(
        "500 accounts with 10 notes each: {total_bytes} bytes saved ({} bytes per account)",
        total_bytes / 500
    );
    c.bench_function("hydrate 500 accounts", |b| {
        b.iter(|| {
            docs.iter()
                .map(|d| d.hydrate().unwrap())
                .collect::<Vec<Account>>()
        })
    });
    let accounts: Vec<Account> = docs.iter().map(|d| d.hydrate().unwrap()).collect();
    let delivery = DriverKey::usual(UsualDriver::Delivery);
    c.bench_function("query search over 500", |b| {
        b.iter(|| query::search(black_box(&accounts), "spring PROGRAMME 9").len())
    });
    c.bench_function("query search miss over 500", |b| {
        b.iter(|| query::search(black_box(&accounts), "no such thing").len())
    });
    c.bench_function("query with_driver over 500", |b| {
        b.iter(|| query::with_driver(black_box(&accounts), &delivery, Strength::MINOR).len())
    });
    c.bench_function("query reasons_unknown over 500", |b| {
        b.iter(|| query::reasons_unknown(black_box(&accounts)).len())
    });
    c.bench_function("query stale over 500", |b| {
        b.iter(|| query::stale(black_box(&accounts), NOW, 30).len())
    });
    c.bench_function("query overdue_follow_ups over 500", |b| {
        b.iter(|| query::overdue_follow_ups(black_box(&accounts), NOW).len())
    });
    c.bench_function("query accounts_per_driver over 500", |b| {
        b.iter(|| query::accounts_per_driver(black_box(&accounts)))
    });
    c.bench_function("query needs_attention over 500", |b| {
        b.iter(|| query::needs_attention(black_box(&accounts), NOW, 30).len())
    });
}

criterion_group!(benches, bench_big_account, bench_team);
criterion_main!(benches);
