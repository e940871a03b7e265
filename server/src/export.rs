//! `fieldnotes admin export`: what a team knows about its clients, read from the stored
//! documents, as CSV files for a spreadsheet (accounts with one column per driver, notes,
//! follow-ups, goals, contacts) or as one JSON file for a BI tool (`docs/export.md`).
//!
//! Only documents the team owns are read (the directory's list is the team's own writing, but an
//! entry naming another team's document is skipped, never followed). CSV follows RFC 4180
//! (CRLF, fields quoted when they hold a comma, a quote or a line break), is UTF-8 with a
//! byte-order mark so spreadsheets read it as UTF-8, and a cell a spreadsheet would run as a
//! formula (starting with `=`, `+`, `-`, `@`, tab or carriage return) is prefixed with `'`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context as _;
use automerge::Automerge;
use fieldnotes_model::{Account, DriverKey, UsualDriver, hydrate_account, hydrate_directory};
use fieldnotes_sync::{DocStore, DocumentId};
use serde_json::json;

use crate::auth::{self, Team};
use crate::params;
use crate::storage::Store;

/// Names the JSON file's layout; a change that breaks readers gets a new one.
pub const JSON_SCHEMA: &str = "fieldnotes-export/1";

/// A member of the team or anyone else who wrote in its documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub email: String,
}

/// What is exported of one team.
#[derive(Debug)]
pub struct TeamExport {
    pub team: Team,
    /// The team's accounts, archived ones included, by name.
    pub accounts: Vec<Account>,
    /// Users by id, to name authors.
    pub people: BTreeMap<String, Person>,
    /// Directory entries whose document is not stored yet (a phone has not synced it).
    pub not_stored: usize,
    /// Directory entries naming a document the team does not own, or one that is not an
    /// account of this team: left out.
    pub refused: usize,
}

/// Reads the team's directory and every account it lists that the team owns.
pub fn read_team(store: &mut Store, team: Team) -> anyhow::Result<TeamExport> {
    let directory = auth::directory_document(&team.id);
    let directory = load(store, &directory)?
        .map(|doc| hydrate_directory(&doc))
        .transpose()
        .context("the team's directory does not read")?;
    let mut export = TeamExport {
        people: people(store)?,
        team,
        accounts: Vec::new(),
        not_stored: 0,
        refused: 0,
    };
    let Some(directory) = directory else {
        return Ok(export);
    };
    for id in directory.accounts.keys() {
        let Ok(document) = DocumentId::parse(id.as_str()) else {
            export.refused += 1;
            continue;
        };
        let owner = store.document_owner(&document)?;
        if owner.as_deref() != Some(export.team.id.as_str()) {
            if owner.is_none() && !store.has_document(&document)? {
                export.not_stored += 1;
            } else {
                export.refused += 1;
            }
            continue;
        }
        let Some(doc) = load(store, &document)? else {
            export.not_stored += 1;
            continue;
        };
        match hydrate_account(&doc) {
            Ok(account) if account.team.as_str() == export.team.id => export.accounts.push(account),
            Ok(_) => export.refused += 1,
            Err(error) => {
                tracing::warn!(account = %id, %error, "an account that does not read is left out of the export");
                export.refused += 1;
            }
        }
    }
    export.accounts.sort_by(|a, b| {
        (a.name.to_lowercase(), a.id.as_str()).cmp(&(b.name.to_lowercase(), b.id.as_str()))
    });
    Ok(export)
}

fn load(store: &mut Store, document: &DocumentId) -> anyhow::Result<Option<Automerge>> {
    let chunks = store.load_chunks(document)?;
    if chunks.is_empty() {
        return Ok(None);
    }
    let mut doc = Automerge::new();
    for chunk in &chunks {
        doc.load_incremental(chunk)
            .with_context(|| format!("the stored document {document} does not load"))?;
    }
    Ok(Some(doc))
}

fn people(store: &mut Store) -> anyhow::Result<BTreeMap<String, Person>> {
    let rows = store
        .db_mut()
        .query("SELECT id, name, email FROM users", params![])?;
    let mut people = BTreeMap::new();
    for row in rows {
        people.insert(
            row.get::<String>(0)?,
            Person {
                name: row.get(1)?,
                email: row.get(2)?,
            },
        );
    }
    Ok(people)
}

/// `2026-12-03T18:16:09Z` for unix milliseconds (UTC; what spreadsheets read as a date).
pub fn iso8601(millis: i64) -> String {
    let seconds = millis.div_euclid(1000);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// One CSV field: neutralised if a spreadsheet would run it, quoted if it must be.
pub fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// A whole CSV file: byte-order mark, header, rows, CRLF after every record.
pub fn csv(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = String::from("\u{feff}");
    for record in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let fields: Vec<String> = record.iter().map(|f| csv_field(f)).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

impl TeamExport {
    fn name_of(&self, user: &str) -> String {
        self.people
            .get(user)
            .map_or_else(|| user.to_string(), |p| p.name.clone())
    }

    /// Every driver any account has, the usual ones first in their usual order.
    fn driver_columns(&self) -> Vec<DriverKey> {
        let mut columns: Vec<DriverKey> =
            UsualDriver::ALL.into_iter().map(DriverKey::usual).collect();
        let custom: BTreeSet<DriverKey> = self
            .accounts
            .iter()
            .flat_map(|a| a.drivers.keys())
            .filter(|key| !columns.contains(key))
            .cloned()
            .collect();
        columns.extend(custom);
        columns
    }

    /// `(file name, contents)` of each CSV file.
    pub fn csv_files(&self) -> Vec<(&'static str, String)> {
        let strings = |fields: &[&str]| fields.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        let drivers = self.driver_columns();
        let mut header = strings(&[
            "account_id",
            "name",
            "branch",
            "area",
            "archived",
            "created_at",
            "created_by",
            "value_proposition",
            "notes",
            "last_note_at",
        ]);
        // A rep's own driver may be named like a usual one: its column says it is their own.
        header.extend(drivers.iter().map(|d| {
            let kind = if d.usual_driver().is_some() {
                "driver"
            } else {
                "own driver"
            };
            format!("{kind}: {}", d.label())
        }));
        let accounts: Vec<Vec<String>> = self
            .accounts
            .iter()
            .map(|a| {
                let mut row = vec![
                    a.id.to_string(),
                    a.name.clone(),
                    a.branch.clone(),
                    a.area.clone(),
                    a.archived.to_string(),
                    iso8601(a.created_at),
                    self.name_of(a.created_by.as_str()),
                    a.value_proposition.clone(),
                    a.notes.len().to_string(),
                    a.last_note_millis().map(iso8601).unwrap_or_default(),
                ];
                row.extend(drivers.iter().map(|d| {
                    a.drivers
                        .get(d)
                        .map(|driver| driver.strength.value().to_string())
                        .unwrap_or_default()
                }));
                row
            })
            .collect();
        let mut notes = Vec::new();
        let mut follow_ups = Vec::new();
        let mut goals = Vec::new();
        let mut contacts = Vec::new();
        for a in &self.accounts {
            for n in &a.notes {
                let drivers: Vec<String> =
                    n.drivers.iter().map(|d| d.label().into_owned()).collect();
                notes.push(vec![
                    a.id.to_string(),
                    a.name.clone(),
                    n.id.to_string(),
                    iso8601(n.time_millis),
                    self.name_of(n.author.as_str()),
                    n.text.clone(),
                    drivers.join("; "),
                    n.objections.join("; "),
                ]);
            }
            for (id, f) in &a.follow_ups {
                follow_ups.push(vec![
                    a.id.to_string(),
                    a.name.clone(),
                    id.to_string(),
                    f.text.clone(),
                    iso8601(f.due_millis),
                    f.done.to_string(),
                ]);
            }
            for (id, g) in &a.goals {
                goals.push(vec![
                    a.id.to_string(),
                    a.name.clone(),
                    id.to_string(),
                    g.title.clone(),
                    g.status.as_str().to_string(),
                ]);
            }
            for (id, c) in &a.contacts {
                contacts.push(vec![
                    a.id.to_string(),
                    a.name.clone(),
                    id.to_string(),
                    c.name.clone(),
                    c.role.clone(),
                    c.phone.clone(),
                    c.email.clone(),
                ]);
            }
        }
        let account_columns = ["account_id", "account_name"];
        let with = |rest: &[&str]| {
            let mut h = strings(&account_columns);
            h.extend(strings(rest));
            h
        };
        vec![
            ("accounts.csv", csv(&header, &accounts)),
            (
                "notes.csv",
                csv(
                    &with(&["note_id", "time", "author", "text", "drivers", "objections"]),
                    &notes,
                ),
            ),
            (
                "follow_ups.csv",
                csv(&with(&["follow_up_id", "text", "due", "done"]), &follow_ups),
            ),
            (
                "goals.csv",
                csv(&with(&["goal_id", "title", "status"]), &goals),
            ),
            (
                "contacts.csv",
                csv(
                    &with(&["contact_id", "name", "role", "phone", "email"]),
                    &contacts,
                ),
            ),
        ]
    }

    /// The whole team as one JSON document (`docs/export.md`).
    pub fn json(&self, exported_at_millis: i64) -> serde_json::Value {
        let person = |user: &str| {
            json!({
                "id": user,
                "name": self.people.get(user).map(|p| p.name.as_str()),
            })
        };
        let accounts: Vec<serde_json::Value> = self
            .accounts
            .iter()
            .map(|a| {
                json!({
                    "id": a.id.as_str(),
                    "name": a.name,
                    "branch": a.branch,
                    "area": a.area,
                    "archived": a.archived,
                    "created_at": iso8601(a.created_at),
                    "created_by": person(a.created_by.as_str()),
                    "value_proposition": a.value_proposition,
                    "drivers": a.drivers.iter().map(|(key, d)| json!({
                        "key": key.as_str(),
                        "label": key.label(),
                        "strength": d.strength.value(),
                        "strength_label": d.strength.label(),
                        "evidence": d.evidence,
                    })).collect::<Vec<_>>(),
                    "goals": a.goals.iter().map(|(id, g)| json!({
                        "id": id.as_str(), "title": g.title, "status": g.status.as_str(),
                    })).collect::<Vec<_>>(),
                    "contacts": a.contacts.iter().map(|(id, c)| json!({
                        "id": id.as_str(), "name": c.name, "role": c.role,
                        "phone": c.phone, "email": c.email,
                    })).collect::<Vec<_>>(),
                    "notes": a.notes.iter().map(|n| json!({
                        "id": n.id.as_str(),
                        "time": iso8601(n.time_millis),
                        "author": person(n.author.as_str()),
                        "text": n.text,
                        "drivers": n.drivers.iter().map(DriverKey::as_str).collect::<Vec<_>>(),
                        "objections": n.objections,
                    })).collect::<Vec<_>>(),
                    "follow_ups": a.follow_ups.iter().map(|(id, f)| json!({
                        "id": id.as_str(), "text": f.text, "due": iso8601(f.due_millis),
                        "done": f.done,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "schema": JSON_SCHEMA,
            "exported_at": iso8601(exported_at_millis),
            "team": { "id": self.team.id, "name": self.team.name },
            "accounts": accounts,
        })
    }
}

/// Writes `(name, contents)` into `dir` (made if missing), each file complete or not at all:
/// written beside its final name, flushed, then renamed.
pub fn write_files(dir: &Path, files: &[(&str, String)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    for (name, contents) in files {
        let path = dir.join(name);
        let partial = dir.join(format!(".{name}.partial"));
        std::fs::write(&partial, contents)
            .and_then(|()| std::fs::File::open(&partial)?.sync_all())
            .and_then(|()| std::fs::rename(&partial, &path))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldnotes_model::{
        AccountDoc, AccountId, AccountSummary, Contact, ContactId, DirectoryDoc, Editor,
        FollowUpId, Goal, GoalId, GoalStatus, NewAccount, NewNote, NoteId, Strength, TeamId,
        UserId,
    };

    const DAY: i64 = 86_400_000;
    /// 2026-12-03T09:30:00Z.
    const NOW: i64 = 1_796_290_200_000;

    #[test]
    fn times_are_iso8601_in_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(NOW), "2026-12-03T09:30:00Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(-1000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn csv_quotes_what_it_must_and_neutralises_formulas() {
        assert_eq!(csv_field("Birch Bakery"), "Birch Bakery");
        assert_eq!(csv_field("Smith, Jones & Co"), "\"Smith, Jones & Co\"");
        assert_eq!(csv_field("the \"fast\" van"), "\"the \"\"fast\"\" van\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        for formula in ["=1+1", "+44 20", "-2", "@SUM(A1)", "\tx", "\rx"] {
            let field = csv_field(formula);
            assert!(
                field.starts_with('\'') || field.starts_with("\"'"),
                "{formula:?} became {field:?}"
            );
        }
        assert_eq!(
            csv_field("=HYPERLINK(\"http://evil\",\"x\")"),
            "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\""
        );
        let file = csv(&["a".into(), "b".into()], &[vec!["1".into(), "x,y".into()]]);
        assert_eq!(file, "\u{feff}a,b\r\n1,\"x,y\"\r\n");
    }

    fn document() -> DocumentId {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).unwrap();
        DocumentId::from_bytes(bytes)
    }

    fn store_doc(store: &mut Store, id: &DocumentId, bytes: &[u8], team: Option<&str>) {
        if let Some(team) = team {
            store
                .db_mut()
                .execute(
                    "INSERT INTO document_owners (document_id, team_id, claimed_by, claimed_at)
                     VALUES (?1, ?2, NULL, 0)",
                    params![id.to_string(), team],
                )
                .unwrap();
        }
        store.append_changes(id, bytes).unwrap();
        store.commit().unwrap();
    }

    /// A team with two accounts (one archived), an entry for an account no phone has synced
    /// yet, and an entry naming another team's account.
    fn team_in_store(store: &mut Store) -> Team {
        let north = auth::create_team(store.db_mut(), "North").unwrap();
        let south = auth::create_team(store.db_mut(), "South").unwrap();
        let ann =
            auth::create_user(store.db_mut(), "ann@example.com", "Ann Lee", "x", false).unwrap();
        let editor = Editor::new(UserId::new(ann.id.clone()), &[1; 16]).unwrap();
        let mut directory = DirectoryDoc::genesis(&editor, &TeamId::new(&north.id)).unwrap();

        let birch = document();
        let mut account = AccountDoc::create(
            editor.clone(),
            NewAccount {
                id: AccountId::new(birch.to_string()),
                team: TeamId::new(&north.id),
                name: "Birch Bakery, Ltd".into(),
                branch: "South".into(),
                area: "12 High St".into(),
            },
            NOW - 10 * DAY,
        )
        .unwrap();
        let relationship = DriverKey::usual(UsualDriver::Relationship);
        let own = DriverKey::custom("After-hours pickup").unwrap();
        account
            .set_driver(
                &relationship,
                Strength::DECISIVE,
                "Knows Ann for years",
                NOW,
            )
            .unwrap();
        account.set_driver(&own, Strength::SOME, "", NOW).unwrap();
        account
            .add_note(
                NewNote {
                    id: NoteId::new("n1"),
                    text: "=HYPERLINK(\"http://evil\",\"click\")".into(),
                    drivers: vec![relationship.clone()],
                    objections: vec!["price, again".into()],
                },
                NOW - DAY,
            )
            .unwrap();
        account
            .add_note(
                NewNote {
                    id: NoteId::new("n2"),
                    text: "Said \"fast\"\nand friendly".into(),
                    drivers: vec![],
                    objections: vec![],
                },
                NOW,
            )
            .unwrap();
        account
            .add_follow_up(
                &FollowUpId::new("f1"),
                "Bring the catalogue",
                NOW + DAY,
                NOW,
            )
            .unwrap();
        account
            .set_goal(
                &GoalId::new("g1"),
                &Goal {
                    title: "Open a second shop".into(),
                    status: GoalStatus::InProgress,
                },
                NOW,
            )
            .unwrap();
        account
            .put_contact(
                &ContactId::new("c1"),
                &Contact {
                    name: "Jo Birch".into(),
                    role: "Owner".into(),
                    phone: "+44 20 7946 0000".into(),
                    email: "jo@birch.example".into(),
                },
                NOW,
            )
            .unwrap();
        let bytes = account.save();
        store_doc(store, &birch, &bytes, Some(&north.id));

        let cedar = document();
        let mut archived = AccountDoc::create(
            editor.clone(),
            NewAccount {
                id: AccountId::new(cedar.to_string()),
                team: TeamId::new(&north.id),
                name: "Cedar Garage".into(),
                branch: String::new(),
                area: String::new(),
            },
            NOW,
        )
        .unwrap();
        archived.archive(NOW).unwrap();
        let bytes = archived.save();
        store_doc(store, &cedar, &bytes, Some(&north.id));

        // South's account, listed in North's directory by a hostile or confused client.
        let theirs = document();
        let mut foreign = AccountDoc::create(
            editor.clone(),
            NewAccount {
                id: AccountId::new(theirs.to_string()),
                team: TeamId::new(&south.id),
                name: "South's secret client".into(),
                branch: String::new(),
                area: String::new(),
            },
            NOW,
        )
        .unwrap();
        let bytes = foreign.save();
        store_doc(store, &theirs, &bytes, Some(&south.id));

        for (id, name) in [
            (birch, "Birch Bakery, Ltd"),
            (cedar, "Cedar Garage"),
            (theirs, "South's secret client"),
            (document(), "Not synced yet"),
        ] {
            let summary = AccountSummary {
                name: name.into(),
                created_at: NOW,
                archived: false,
            };
            directory
                .add_account(&AccountId::new(id.to_string()), &summary, NOW)
                .unwrap();
        }
        let bytes = directory.save();
        store_doc(store, &auth::directory_document(&north.id), &bytes, None);
        north
    }

    #[test]
    fn a_team_exports_its_own_accounts_only_as_csv_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("fieldnotes.sqlite3")).unwrap();
        let north = team_in_store(&mut store);
        let export = read_team(&mut store, north).unwrap();
        let names: Vec<&str> = export.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["Birch Bakery, Ltd", "Cedar Garage"]);
        assert_eq!((export.not_stored, export.refused), (1, 1));

        let files: BTreeMap<&str, String> = export.csv_files().into_iter().collect();
        assert_eq!(
            files.keys().copied().collect::<Vec<_>>(),
            [
                "accounts.csv",
                "contacts.csv",
                "follow_ups.csv",
                "goals.csv",
                "notes.csv"
            ]
        );
        for (name, contents) in &files {
            assert!(
                contents.starts_with('\u{feff}'),
                "{name} has a byte-order mark"
            );
            assert!(contents.ends_with("\r\n"), "{name} ends its last record");
            assert!(
                !contents.contains("secret"),
                "{name} holds nothing of another team"
            );
        }
        let accounts = &files["accounts.csv"];
        let header = accounts.lines().next().unwrap();
        assert!(header.contains("driver: Relationship"), "{header}");
        assert!(
            header.ends_with(",own driver: After hours pickup"),
            "{header}"
        );
        let birch = accounts.lines().nth(1).unwrap();
        assert!(
            birch.contains(",\"Birch Bakery, Ltd\",South,12 High St,false,"),
            "{birch}"
        );
        assert!(birch.contains(",Ann Lee,"), "authors by name: {birch}");
        assert!(birch.contains(",2,2026-12-03T09:30:00Z,5,"), "{birch}");
        assert!(
            accounts
                .lines()
                .nth(2)
                .unwrap()
                .contains(",Cedar Garage,,,true,")
        );

        let notes = &files["notes.csv"];
        assert!(
            notes.contains("\"'=HYPERLINK(\"\"http://evil\"\",\"\"click\"\")\""),
            "a formula is neutralised: {notes}"
        );
        assert!(
            notes.contains("\"Said \"\"fast\"\"\nand friendly\""),
            "{notes}"
        );
        assert!(
            notes.contains(",Relationship,\"price, again\"\r\n"),
            "{notes}"
        );
        assert!(
            files["contacts.csv"]
                .contains(",Jo Birch,Owner,'+44 20 7946 0000,jo@birch.example\r\n")
        );
        assert!(
            files["follow_ups.csv"]
                .contains(",f1,Bring the catalogue,2026-12-04T09:30:00Z,false\r\n")
        );
        assert!(files["goals.csv"].contains(",g1,Open a second shop,in_progress\r\n"));

        let json = export.json(NOW);
        assert_eq!(json["schema"], JSON_SCHEMA);
        assert_eq!(json["team"]["name"], "North");
        let accounts = json["accounts"].as_array().unwrap();
        assert_eq!(accounts.len(), 2);
        assert_eq!(
            accounts[0]["notes"][0]["text"],
            "=HYPERLINK(\"http://evil\",\"click\")"
        );
        assert_eq!(accounts[0]["notes"][0]["author"]["name"], "Ann Lee");
        assert_eq!(accounts[0]["drivers"].as_array().unwrap().len(), 2);
        assert_eq!(accounts[1]["archived"], true);
        assert!(!json.to_string().contains("secret"));

        let out = dir.path().join("out");
        write_files(&out, &export.csv_files()).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("notes.csv")).unwrap(),
            files["notes.csv"]
        );
        assert!(std::fs::read_dir(&out).unwrap().all(|e| {
            !e.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".partial")
        }));
    }
}
