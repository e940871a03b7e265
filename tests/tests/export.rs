//! `GET /api/export` and `fieldnotes admin export` from the outside (docs/export.md): a real
//! server with its real database (SQLite, or PostgreSQL with `FIELDNOTES_TEST_BACKEND=postgres`),
//! accounts pushed by a rep over the sync protocol. A manager of the team gets its accounts and
//! notes, with formula cells neutralised; a rep, a manager of another team and a signed-out
//! client get nothing; an entry a rep planted in the team's list naming another team's account
//! is left out of every export.
//!
//! Start: `cargo test -p fieldnotes-e2e --test export`.

mod common;

use automerge::sync;
use common::auth::{Team, User, http};
use common::raw::{Peer, new_doc_id, new_peer_id};
use common::server::Server;
use fieldnotes_model::{
    AccountDoc, AccountId, AccountSummary, DirectoryDoc, Editor, NewAccount, NewNote, NoteId,
    TeamId, UserId, team_directory_key,
};
use fieldnotes_sync::DocumentId;

const NOW: i64 = 1_796_290_200_000;

fn account(team: &Team, who: &str, id: &str, name: &str, note: &str) -> automerge::AutoCommit {
    let editor = Editor::new(UserId::new(who), &common::raw::random_bytes::<16>()).unwrap();
    let mut doc = AccountDoc::create(
        editor,
        NewAccount {
            id: AccountId::new(id),
            team: TeamId::new(team.id.clone()),
            name: name.into(),
            branch: "Riverside".into(),
            area: String::new(),
        },
        NOW,
    )
    .unwrap();
    doc.add_note(
        NewNote {
            id: NoteId::new(format!("note-{id}")),
            text: note.into(),
            drivers: vec![],
            objections: vec![],
        },
        NOW,
    )
    .unwrap();
    doc.into_automerge()
}

async fn push(server: &Server, user: &User, id: &str, mut doc: automerge::AutoCommit) {
    let mut peer = Peer::join(&server.sync_as(&user.token), &new_peer_id("export")).await;
    peer.push(id, &mut doc, &mut sync::State::new())
        .await
        .unwrap_or_else(|e| panic!("push {id}: {e}"));
    peer.close().await;
}

fn get(server: &Server, path: &str, user: Option<&User>) -> common::auth::HttpResponse {
    let bearer = user.map(|u| format!("Bearer {}", u.token));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| vec![("Authorization", b)])
        .unwrap_or_default();
    http(server.port, "GET", path, &headers, None)
}

#[tokio::test]
async fn a_manager_exports_the_teams_accounts_and_nobody_else_gets_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    let (north, mut n) = admin.team_with_users(
        "North",
        &[
            ("ana@north.example", "Ana North", "rep"),
            ("nils@north.example", "Nils North", "manager"),
        ],
    );
    let (south, mut s) = admin.team_with_users(
        "South",
        &[
            ("sam@south.example", "Sam South", "rep"),
            ("sue@south.example", "Sue South", "manager"),
        ],
    );
    let (ana, nils) = (n.remove(0), n.remove(0));
    let (sam, sue) = (s.remove(0), s.remove(0));

    let birch = new_doc_id();
    push(
        &server,
        &ana,
        &birch,
        account(
            &north,
            "Ana North",
            &birch,
            "=HYPERLINK(\"http://evil\",\"Birch\")",
            "Loves the branch, \"truly\"",
        ),
    )
    .await;
    let secret = new_doc_id();
    push(
        &server,
        &sam,
        &secret,
        account(
            &south,
            "Sam South",
            &secret,
            "South's secret client",
            "South's secret note",
        ),
    )
    .await;
    // Ana's directory lists Birch and, planted, South's account.
    let editor = Editor::new(UserId::new("Ana North"), &common::raw::random_bytes::<16>()).unwrap();
    let mut directory = DirectoryDoc::genesis(&editor, &TeamId::new(north.id.clone())).unwrap();
    for (id, name) in [(&birch, "Birch"), (&secret, "Planted")] {
        let summary = AccountSummary {
            name: name.into(),
            created_at: NOW,
            archived: false,
        };
        directory
            .add_account(&AccountId::new(id.clone()), &summary, NOW)
            .unwrap();
    }
    let directory_id =
        DocumentId::from_bytes(team_directory_key(&TeamId::new(north.id.clone()))).to_string();
    push(&server, &ana, &directory_id, directory.into_automerge()).await;

    let accounts = format!("/api/export?team={}", north.id);
    let got = get(&server, &accounts, Some(&nils));
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.header("content-type"), Some("text/csv; charset=utf-8"));
    assert!(
        got.header("content-disposition")
            .unwrap()
            .starts_with("attachment;")
    );
    let csv = got.body.clone();
    assert!(csv.starts_with('\u{feff}'), "a byte-order mark");
    assert!(
        csv.contains(&format!(
            "{birch},\"'=HYPERLINK(\"\"http://evil\"\",\"\"Birch\"\")\",Riverside,"
        )),
        "the account, its formula neutralised: {csv}"
    );
    assert_eq!(csv.lines().count(), 2, "header and Birch only: {csv}");
    let notes = get(&server, &format!("{accounts}&table=notes"), Some(&nils)).body;
    assert!(
        notes.contains("\"Loves the branch, \"\"truly\"\"\""),
        "{notes}"
    );
    let json = get(&server, &format!("{accounts}&format=json"), Some(&nils));
    assert_eq!(json.status, 200);
    let json = json.json();
    assert_eq!(json["schema"], "fieldnotes-export/1");
    assert_eq!(json["accounts"].as_array().unwrap().len(), 1);
    assert_eq!(
        json["accounts"][0]["name"],
        "=HYPERLINK(\"http://evil\",\"Birch\")"
    );
    for body in [&csv, &notes, &json.to_string()] {
        assert!(!body.contains("secret"), "nothing of South: {body}");
    }

    // A rep of the team, a manager of another team, nobody signed in: refused, nothing leaks.
    for (who, status) in [(Some(&ana), 403), (Some(&sue), 403), (None, 401)] {
        for query in ["", "&format=json", "&table=notes"] {
            let refused = get(&server, &format!("{accounts}{query}"), who);
            assert_eq!(refused.status, status, "{query}: {}", refused.body);
            assert!(!refused.body.contains("Birch"));
        }
    }
    let refused = get(
        &server,
        &format!("/api/export?team={}", south.id),
        Some(&nils),
    );
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("Only a manager of this team"));
    let bad = get(&server, &format!("{accounts}&format=xlsx"), Some(&nils));
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("format=csv or json"));

    // The admin command writes the same accounts.
    let out = dir.path().join("export");
    admin.ok(
        &["export", "--team", "North", "--out", out.to_str().unwrap()],
        None,
    );
    let file = std::fs::read_to_string(out.join("accounts.csv")).unwrap();
    assert_eq!(file.lines().count(), 2);
    assert!(file.contains(&birch) && !file.contains(&secret));
}
