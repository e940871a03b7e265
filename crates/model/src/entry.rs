//! An account's entry in the phone's index: what the list, its search and filters, and the
//! team view need of one account, and nothing more.
//!
//! A team of 10,000 accounts does not fit in a phone tab as 10,000 Automerge documents (500 of
//! them took 43 MiB of wasm memory). Their entries do: a few hundred bytes each, read from
//! IndexedDB in one request when the app opens, and rewritten with the document whenever it
//! changes. The document itself is loaded only when the rep opens the account or it changes.
//!
//! Search on entries covers the name, branch, area, every contact field, and the text of the
//! most recent visit notes up to [`SEARCH_NOTES_BYTES`]; the full history is one tap away in
//! the account.

use crate::account::Account;
use crate::driver::{DriverKey, Strength};
use crate::ids::{AccountId, FollowUpId};

/// How much of the visit notes' text an entry keeps for search, most recent first.
pub const SEARCH_NOTES_BYTES: usize = 600;
/// How much of a follow-up's text an entry keeps (the team view lists overdue ones).
pub const FOLLOW_UP_TEXT_BYTES: usize = 160;

/// One open follow-up, as the entry keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFollowUp {
    pub id: FollowUpId,
    pub text: String,
    pub due_millis: i64,
}

/// An account as the index keeps it. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEntry {
    pub id: AccountId,
    pub name: String,
    pub branch: String,
    pub area: String,
    pub archived: bool,
    pub created_at: i64,
    pub last_note_millis: Option<i64>,
    /// Each recorded driver and how strongly it matters, in the account's order.
    pub drivers: Vec<(DriverKey, Strength)>,
    /// Follow-ups not done yet.
    pub open_follow_ups: Vec<EntryFollowUp>,
    /// Lower-cased: every contact field, then recent notes' text (see the module docs).
    pub search_text: String,
}

/// Cuts `text` to at most `bytes` bytes, on a character boundary.
fn clipped(text: &str, bytes: usize) -> &str {
    if text.len() <= bytes {
        return text;
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl AccountEntry {
    /// The entry of an account as it is now.
    pub fn of(account: &Account) -> AccountEntry {
        let mut search_text = String::new();
        for contact in account.contacts.values() {
            for field in [&contact.name, &contact.role, &contact.phone, &contact.email] {
                if !field.is_empty() {
                    search_text.push_str(&field.to_lowercase());
                    search_text.push('\n');
                }
            }
        }
        let mut notes_left = SEARCH_NOTES_BYTES;
        for note in account.notes.iter().rev() {
            if notes_left == 0 {
                break;
            }
            let text = clipped(&note.text, notes_left).to_lowercase();
            notes_left = notes_left.saturating_sub(text.len().max(1));
            search_text.push_str(&text);
            search_text.push('\n');
        }
        AccountEntry {
            id: account.id.clone(),
            name: account.name.clone(),
            branch: account.branch.clone(),
            area: account.area.clone(),
            archived: account.archived,
            created_at: account.created_at,
            last_note_millis: account.last_note_millis(),
            drivers: account
                .drivers
                .iter()
                .map(|(key, driver)| (key.clone(), driver.strength))
                .collect(),
            open_follow_ups: account
                .follow_ups
                .iter()
                .filter(|(_, f)| !f.done)
                .map(|(id, f)| EntryFollowUp {
                    id: id.clone(),
                    text: clipped(&f.text, FOLLOW_UP_TEXT_BYTES).to_string(),
                    due_millis: f.due_millis,
                })
                .collect(),
            search_text,
        }
    }

    /// The entry as bytes for IndexedDB: a format byte, then each field length-prefixed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENTRY_FORMAT];
        put_str(&mut out, self.id.as_str());
        put_str(&mut out, &self.name);
        put_str(&mut out, &self.branch);
        put_str(&mut out, &self.area);
        out.push(u8::from(self.archived));
        out.extend_from_slice(&self.created_at.to_le_bytes());
        out.extend_from_slice(&self.last_note_millis.unwrap_or(i64::MIN).to_le_bytes());
        put_u32(&mut out, self.drivers.len());
        for (key, strength) in &self.drivers {
            put_str(&mut out, key.as_str());
            out.push(strength.value());
        }
        put_u32(&mut out, self.open_follow_ups.len());
        for follow_up in &self.open_follow_ups {
            put_str(&mut out, follow_up.id.as_str());
            put_str(&mut out, &follow_up.text);
            out.extend_from_slice(&follow_up.due_millis.to_le_bytes());
        }
        put_str(&mut out, &self.search_text);
        out
    }

    /// Reads [`AccountEntry::encode`]'s bytes; `None` for bytes this version cannot read (the
    /// app then rebuilds the entry from the document).
    pub fn decode(bytes: &[u8]) -> Option<AccountEntry> {
        let mut input = Reader(bytes);
        if input.byte()? != ENTRY_FORMAT {
            return None;
        }
        let id = AccountId::new(input.string()?);
        let name = input.string()?;
        let branch = input.string()?;
        let area = input.string()?;
        let archived = input.byte()? != 0;
        let created_at = input.i64()?;
        let last_note_millis = Some(input.i64()?).filter(|m| *m != i64::MIN);
        let mut drivers = Vec::new();
        for _ in 0..input.u32()? {
            let key = DriverKey::parse(&input.string()?).ok()?;
            let strength = Strength::new(i64::from(input.byte()?)).ok()?;
            drivers.push((key, strength));
        }
        let mut open_follow_ups = Vec::new();
        for _ in 0..input.u32()? {
            open_follow_ups.push(EntryFollowUp {
                id: FollowUpId::new(input.string()?),
                text: input.string()?,
                due_millis: input.i64()?,
            });
        }
        let search_text = input.string()?;
        input.0.is_empty().then_some(AccountEntry {
            id,
            name,
            branch,
            area,
            archived,
            created_at,
            last_note_millis,
            drivers,
            open_follow_ups,
            search_text,
        })
    }
}

const ENTRY_FORMAT: u8 = 1;

fn put_u32(out: &mut Vec<u8>, value: usize) {
    out.extend_from_slice(&(value as u32).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_u32(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }
    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let length = self.u32()? as usize;
        String::from_utf8(self.take(length)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::account::{Contact, Driver, FollowUp, Note};
    use crate::driver::UsualDriver;
    use crate::ids::{ContactId, NoteId, TeamId, UserId};

    fn account() -> Account {
        let mut contacts = BTreeMap::new();
        contacts.insert(
            ContactId::new("c1"),
            Contact {
                name: "Ana Müller".into(),
                role: "Buyer".into(),
                phone: "+49 30 1234".into(),
                email: "ana@depot.example".into(),
            },
        );
        let mut drivers = BTreeMap::new();
        drivers.insert(
            DriverKey::usual(UsualDriver::Delivery),
            Driver {
                strength: Strength::MATTERS,
                evidence: "The van comes before seven".into(),
            },
        );
        let mut follow_ups = BTreeMap::new();
        follow_ups.insert(
            FollowUpId::new("f1"),
            FollowUp {
                text: "Send the training dates".into(),
                due_millis: 1_700_000_000_000,
                done: false,
            },
        );
        follow_ups.insert(
            FollowUpId::new("f2"),
            FollowUp {
                text: "Done already".into(),
                due_millis: 1,
                done: true,
            },
        );
        let note = |n: u32, text: &str| Note {
            id: NoteId::new(format!("n{n}")),
            author: UserId::new("dana"),
            time_millis: i64::from(n) * 1000,
            text: text.into(),
            drivers: Vec::new(),
            objections: Vec::new(),
        };
        Account {
            schema: 1,
            id: AccountId::new("acc"),
            team: TeamId::new("north"),
            name: "Draft Depot".into(),
            branch: "North".into(),
            area: "Riverside".into(),
            created_at: 5,
            created_by: UserId::new("dana"),
            contacts,
            drivers,
            goals: BTreeMap::new(),
            value_proposition: String::new(),
            notes: vec![
                note(1, &"An old visit. ".repeat(100)),
                note(2, "Wants ÉLAN pricing"),
            ],
            follow_ups,
            archived: false,
        }
    }

    #[test]
    fn an_entry_keeps_what_the_list_needs_and_reads_back_from_its_bytes() {
        let entry = AccountEntry::of(&account());
        assert_eq!(entry.name, "Draft Depot");
        assert_eq!(entry.last_note_millis, Some(2000));
        assert_eq!(
            entry.drivers,
            vec![(DriverKey::usual(UsualDriver::Delivery), Strength::MATTERS)]
        );
        assert_eq!(
            entry.open_follow_ups.len(),
            1,
            "done follow-ups are left out"
        );
        assert!(entry.search_text.contains("ana müller"));
        assert!(entry.search_text.contains("wants élan pricing"));
        // The newest note first, and the old one only as far as the budget goes.
        assert!(entry.search_text.len() < 200 + SEARCH_NOTES_BYTES);
        assert_eq!(AccountEntry::decode(&entry.encode()), Some(entry.clone()));
        let bytes = entry.encode();
        assert_eq!(AccountEntry::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(AccountEntry::decode(&[2]), None);
    }

    #[test]
    fn text_is_clipped_on_a_character_boundary() {
        assert_eq!(clipped("héllo", 2), "h");
        assert_eq!(clipped("héllo", 3), "hé");
        assert_eq!(clipped("abc", 10), "abc");
    }
}
