//! What a draft is: which forms keep one, what each holds, how it is stored and how the app
//! names it. The product rule lives here and nowhere else; the forms only fill these structs.
//!
//! One draft per form and place: the visit note of an account, the new-account form, an
//! account's contact, goal and follow-up forms, the editor of one of its reasons (or of the
//! reason being added), and its details. A draft is worth keeping as soon as the form differs
//! from what it showed when it opened; a form back at its start has no draft.
//!
//! Stored in the `meta` store of the signed-in user's team database under `draft/<form>/…`
//! keys. The value is a tiny hand-written encoding: a format byte (1), the form's tag, the time
//! the rep last typed (unix millis, i64 little-endian), then the form's fields as
//! length-prefixed UTF-8 strings in a fixed order. A newer version may append fields; this one
//! ignores them. Anything else is unreadable and left as it is.

use fieldnotes_model::{DriverKey, Strength};

use crate::state::Route;

/// Every draft's storage key starts with this.
pub const STORAGE_PREFIX: &str = "draft/";
const FORMAT: u8 = 1;

/// Which form a draft belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DraftKey {
    /// The visit note of an account, with its ticked drivers, objection and follow-up.
    Note {
        account: String,
    },
    /// The new-account form.
    NewAccount,
    /// An account's name, branch and area being edited.
    Details {
        account: String,
    },
    /// The editor of one of the account's reasons (by driver key), or of one being added.
    Driver {
        account: String,
        driver: Option<String>,
    },
    Goal {
        account: String,
    },
    FollowUp {
        account: String,
    },
    Contact {
        account: String,
    },
}

/// The visit note being written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NoteDraft {
    pub text: String,
    pub drivers: Vec<DriverKey>,
    pub objection: String,
    pub follow_up: String,
    /// The follow-up's due date as the date input holds it (`yyyy-mm-dd`).
    pub due: String,
}

/// A new account, or an account's details being edited.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountDraft {
    pub name: String,
    pub branch: String,
    pub area: String,
}

/// A reason (value driver) being added or edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverDraft {
    /// The driver key picked, or `custom` for the rep's own reason.
    pub choice: String,
    /// The rep's own reason, when `choice` is `custom`.
    pub custom: String,
    pub strength: Strength,
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoalDraft {
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FollowUpDraft {
    pub text: String,
    pub due: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContactDraft {
    pub name: String,
    pub role: String,
    pub phone: String,
    pub email: String,
}

/// What one form holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Draft {
    Note(NoteDraft),
    Account(AccountDraft),
    Driver(DriverDraft),
    Goal(GoalDraft),
    FollowUp(FollowUpDraft),
    Contact(ContactDraft),
}

/// A draft as kept on the phone: what the form held and when the rep last typed in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDraft {
    pub draft: Draft,
    pub updated_millis: i64,
}

/// What the banners need to know of a kept draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftSummary {
    pub key: DraftKey,
    /// The name typed into a new account (the banner has no other way to name it).
    pub title: String,
}

/// The struct of one form, so a form reads and writes its own type.
pub trait FormDraft: Clone + PartialEq + 'static {
    fn into_draft(self) -> Draft;
    fn from_draft(draft: &Draft) -> Option<&Self>;
    fn from_draft_mut(draft: &mut Draft) -> Option<&mut Self>;
}

macro_rules! form_draft {
    ($type:ty, $variant:ident) => {
        impl FormDraft for $type {
            fn into_draft(self) -> Draft {
                Draft::$variant(self)
            }
            fn from_draft(draft: &Draft) -> Option<&Self> {
                match draft {
                    Draft::$variant(inner) => Some(inner),
                    _ => None,
                }
            }
            fn from_draft_mut(draft: &mut Draft) -> Option<&mut Self> {
                match draft {
                    Draft::$variant(inner) => Some(inner),
                    _ => None,
                }
            }
        }
    };
}

form_draft!(NoteDraft, Note);
form_draft!(AccountDraft, Account);
form_draft!(DriverDraft, Driver);
form_draft!(GoalDraft, Goal);
form_draft!(FollowUpDraft, FollowUp);
form_draft!(ContactDraft, Contact);

impl DraftKey {
    /// The key of its record in the `meta` store.
    pub fn storage_key(&self) -> String {
        let (form, account, item) = self.parts();
        let mut key = format!("{STORAGE_PREFIX}{form}");
        for part in [account, item].into_iter().flatten() {
            key.push('/');
            key.push_str(part);
        }
        key
    }

    /// The draft key a stored record belongs to; `None` for a key this version does not know.
    pub fn from_storage_key(key: &str) -> Option<DraftKey> {
        let rest = key.strip_prefix(STORAGE_PREFIX)?;
        let mut parts = rest.splitn(3, '/');
        let form = parts.next()?;
        let account = parts.next().filter(|a| !a.is_empty()).map(str::to_string);
        let item = parts.next();
        let key = match (form, account, item) {
            ("new-account", None, None) => DraftKey::NewAccount,
            ("note", Some(account), None) => DraftKey::Note { account },
            ("details", Some(account), None) => DraftKey::Details { account },
            ("driver", Some(account), Some(driver)) if !driver.is_empty() => DraftKey::Driver {
                account,
                driver: (driver != NEW_DRIVER).then(|| driver.to_string()),
            },
            ("goal", Some(account), None) => DraftKey::Goal { account },
            ("follow-up", Some(account), None) => DraftKey::FollowUp { account },
            ("contact", Some(account), None) => DraftKey::Contact { account },
            _ => return None,
        };
        Some(key)
    }

    fn parts(&self) -> (&'static str, Option<&str>, Option<&str>) {
        match self {
            DraftKey::Note { account } => ("note", Some(account), None),
            DraftKey::NewAccount => ("new-account", None, None),
            DraftKey::Details { account } => ("details", Some(account), None),
            DraftKey::Driver { account, driver } => (
                "driver",
                Some(account),
                Some(driver.as_deref().unwrap_or(NEW_DRIVER)),
            ),
            DraftKey::Goal { account } => ("goal", Some(account), None),
            DraftKey::FollowUp { account } => ("follow-up", Some(account), None),
            DraftKey::Contact { account } => ("contact", Some(account), None),
        }
    }

    /// The account the form belongs to (none for a new account).
    pub fn account(&self) -> Option<&str> {
        self.parts().1
    }

    /// Where "Continue" takes the rep: the note and the new account are screens of their own;
    /// the other forms are part of the account screen.
    pub fn route(&self) -> Route {
        match self {
            DraftKey::NewAccount => Route::NewAccount,
            DraftKey::Note { account } => Route::Capture(account.clone()),
            other => Route::Account(other.account().unwrap_or_default().to_string()),
        }
    }

    /// Whether the form is a screen of its own, so the account screen announces its draft
    /// (the others are filled in where they stand on that screen).
    pub fn has_own_screen(&self) -> bool {
        matches!(self, DraftKey::Note { .. } | DraftKey::NewAccount)
    }

    /// Whether `draft` is the kind of draft this form holds.
    pub fn fits(&self, draft: &Draft) -> bool {
        matches!(
            (self, draft),
            (DraftKey::Note { .. }, Draft::Note(_))
                | (
                    DraftKey::NewAccount | DraftKey::Details { .. },
                    Draft::Account(_)
                )
                | (DraftKey::Driver { .. }, Draft::Driver(_))
                | (DraftKey::Goal { .. }, Draft::Goal(_))
                | (DraftKey::FollowUp { .. }, Draft::FollowUp(_))
                | (DraftKey::Contact { .. }, Draft::Contact(_))
        )
    }

    /// What the banners call it: "Unsaved note for Draft Depot". `title` is the summary's,
    /// `account_name` the account's (or `None` when the account is not on this phone).
    pub fn describe(&self, title: &str, account_name: Option<&str>) -> String {
        let account = account_name.unwrap_or("an account not on this phone yet");
        match self {
            DraftKey::NewAccount if title.is_empty() => "Unsaved new account".to_string(),
            DraftKey::NewAccount => format!("Unsaved new account \u{201c}{title}\u{201d}"),
            DraftKey::Note { .. } => format!("Unsaved note for {account}"),
            DraftKey::Details { .. } => format!("Unsaved details of {account}"),
            DraftKey::Driver { driver: None, .. } => format!("Unsaved reason for {account}"),
            DraftKey::Driver {
                driver: Some(driver),
                ..
            } => {
                let label = DriverKey::parse(driver)
                    .map(|key| key.label().into_owned())
                    .unwrap_or_else(|_| driver.clone());
                format!("Unsaved reason \u{201c}{label}\u{201d} for {account}")
            }
            DraftKey::Goal { .. } => format!("Unsaved goal for {account}"),
            DraftKey::FollowUp { .. } => format!("Unsaved follow-up for {account}"),
            DraftKey::Contact { .. } => format!("Unsaved contact for {account}"),
        }
    }
}

/// The driver part of the key of a reason being added (driver keys never contain `+`).
const NEW_DRIVER: &str = "+";

impl Draft {
    fn tag(&self) -> u8 {
        match self {
            Draft::Note(_) => 1,
            Draft::Account(_) => 2,
            Draft::Driver(_) => 3,
            Draft::Goal(_) => 4,
            Draft::FollowUp(_) => 5,
            Draft::Contact(_) => 6,
        }
    }

    /// What names the draft in a banner when its account cannot: a new account's name.
    pub fn title(&self) -> String {
        match self {
            Draft::Account(account) => account.name.trim().to_string(),
            _ => String::new(),
        }
    }

    fn fields(&self) -> Vec<String> {
        match self {
            Draft::Note(note) => vec![
                note.text.clone(),
                note.objection.clone(),
                note.follow_up.clone(),
                note.due.clone(),
                note.drivers
                    .iter()
                    .map(DriverKey::as_str)
                    .collect::<Vec<_>>()
                    .join("\n"),
            ],
            Draft::Account(account) => vec![
                account.name.clone(),
                account.branch.clone(),
                account.area.clone(),
            ],
            Draft::Driver(driver) => vec![
                driver.choice.clone(),
                driver.custom.clone(),
                driver.strength.value().to_string(),
                driver.evidence.clone(),
            ],
            Draft::Goal(goal) => vec![goal.title.clone()],
            Draft::FollowUp(follow_up) => vec![follow_up.text.clone(), follow_up.due.clone()],
            Draft::Contact(contact) => vec![
                contact.name.clone(),
                contact.role.clone(),
                contact.phone.clone(),
                contact.email.clone(),
            ],
        }
    }

    fn from_fields(tag: u8, fields: Vec<String>) -> Option<Draft> {
        let mut fields = fields.into_iter();
        let mut next = || fields.next();
        let draft = match tag {
            1 => {
                let (text, objection, follow_up, due, drivers) =
                    (next()?, next()?, next()?, next()?, next()?);
                Draft::Note(NoteDraft {
                    text,
                    drivers: drivers
                        .split('\n')
                        .filter_map(|key| DriverKey::parse(key).ok())
                        .collect(),
                    objection,
                    follow_up,
                    due,
                })
            }
            2 => Draft::Account(AccountDraft {
                name: next()?,
                branch: next()?,
                area: next()?,
            }),
            3 => {
                let (choice, custom, strength, evidence) = (next()?, next()?, next()?, next()?);
                Draft::Driver(DriverDraft {
                    choice,
                    custom,
                    strength: Strength::new(strength.parse().ok()?).ok()?,
                    evidence,
                })
            }
            4 => Draft::Goal(GoalDraft { title: next()? }),
            5 => Draft::FollowUp(FollowUpDraft {
                text: next()?,
                due: next()?,
            }),
            6 => Draft::Contact(ContactDraft {
                name: next()?,
                role: next()?,
                phone: next()?,
                email: next()?,
            }),
            _ => return None,
        };
        Some(draft)
    }
}

impl StoredDraft {
    pub fn encode(&self) -> Vec<u8> {
        let fields = self.draft.fields();
        let mut out = Vec::with_capacity(10 + fields.iter().map(|f| f.len() + 4).sum::<usize>());
        out.push(FORMAT);
        out.push(self.draft.tag());
        out.extend_from_slice(&self.updated_millis.to_le_bytes());
        for field in fields {
            out.extend_from_slice(&(field.len() as u32).to_le_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }

    /// The draft stored for `key`; `None` if the bytes are damaged, from an unknown format, or
    /// hold another form's draft.
    pub fn decode(key: &DraftKey, bytes: &[u8]) -> Option<StoredDraft> {
        let (&format, rest) = bytes.split_first()?;
        (format == FORMAT).then_some(())?;
        let (&tag, rest) = rest.split_first()?;
        let (millis, mut rest) = rest.split_at_checked(8)?;
        let updated_millis = i64::from_le_bytes(millis.try_into().ok()?);
        let mut fields = Vec::new();
        while !rest.is_empty() {
            let (length, tail) = rest.split_at_checked(4)?;
            let length = u32::from_le_bytes(length.try_into().ok()?) as usize;
            let (field, tail) = tail.split_at_checked(length)?;
            fields.push(String::from_utf8(field.to_vec()).ok()?);
            rest = tail;
        }
        let draft = Draft::from_fields(tag, fields)?;
        key.fits(&draft).then_some(StoredDraft {
            draft,
            updated_millis,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldnotes_model::UsualDriver;

    fn every_key() -> Vec<DraftKey> {
        let account = "2Vz8acc".to_string();
        vec![
            DraftKey::Note {
                account: account.clone(),
            },
            DraftKey::NewAccount,
            DraftKey::Details {
                account: account.clone(),
            },
            DraftKey::Driver {
                account: account.clone(),
                driver: None,
            },
            DraftKey::Driver {
                account: account.clone(),
                driver: Some("custom:after-hours-pickup".into()),
            },
            DraftKey::Goal {
                account: account.clone(),
            },
            DraftKey::FollowUp {
                account: account.clone(),
            },
            DraftKey::Contact { account },
        ]
    }

    #[test]
    fn every_form_has_its_own_storage_key_that_reads_back() {
        let keys = every_key();
        for key in &keys {
            let stored = key.storage_key();
            assert!(stored.starts_with(STORAGE_PREFIX), "{stored}");
            assert_eq!(DraftKey::from_storage_key(&stored).as_ref(), Some(key));
        }
        let distinct: std::collections::BTreeSet<String> =
            keys.iter().map(DraftKey::storage_key).collect();
        assert_eq!(distinct.len(), keys.len());
        // The sync engine's records and keys of a newer version are not drafts of this one.
        for other in [
            "sync-states",
            "storage-id",
            "draft/",
            "draft/note",
            "draft/note/",
            "draft/photo/abc",
            "draft/note/abc/extra",
            "draft/driver/abc/",
        ] {
            assert_eq!(DraftKey::from_storage_key(other), None, "{other}");
        }
    }

    fn note() -> StoredDraft {
        StoredDraft {
            draft: Draft::Note(NoteDraft {
                text: "They buy from us because the van comes before seven.\nAlso: café ☕".into(),
                drivers: vec![
                    DriverKey::usual(UsualDriver::Delivery),
                    DriverKey::custom("After-hours pickup").unwrap(),
                ],
                objection: "Price of fittings".into(),
                follow_up: "Send the training dates".into(),
                due: "2026-12-03".into(),
            }),
            updated_millis: 1_700_000_000_123,
        }
    }

    #[test]
    fn a_draft_reads_back_exactly_as_it_was_typed() {
        let key = DraftKey::Note {
            account: "a".into(),
        };
        let stored = note();
        assert_eq!(StoredDraft::decode(&key, &stored.encode()), Some(stored));
        let drafts = [
            (
                DraftKey::NewAccount,
                Draft::Account(AccountDraft {
                    name: "Draft Depot".into(),
                    branch: "North".into(),
                    area: String::new(),
                }),
            ),
            (
                DraftKey::Driver {
                    account: "a".into(),
                    driver: None,
                },
                Draft::Driver(DriverDraft {
                    choice: "custom".into(),
                    custom: "Weekend opening".into(),
                    strength: Strength::DECISIVE,
                    evidence: "Said so twice".into(),
                }),
            ),
            (
                DraftKey::Goal {
                    account: "a".into(),
                },
                Draft::Goal(GoalDraft {
                    title: "Open a second depot".into(),
                }),
            ),
            (
                DraftKey::FollowUp {
                    account: "a".into(),
                },
                Draft::FollowUp(FollowUpDraft {
                    text: "Call back".into(),
                    due: "2026-01-02".into(),
                }),
            ),
            (
                DraftKey::Contact {
                    account: "a".into(),
                },
                Draft::Contact(ContactDraft {
                    name: "Pat".into(),
                    role: "Buyer".into(),
                    phone: "+44 1".into(),
                    email: String::new(),
                }),
            ),
        ];
        for (key, draft) in drafts {
            let stored = StoredDraft {
                draft,
                updated_millis: -1,
            };
            assert_eq!(StoredDraft::decode(&key, &stored.encode()), Some(stored));
        }
    }

    #[test]
    fn damaged_foreign_or_newer_records_are_not_misread() {
        let key = DraftKey::Note {
            account: "a".into(),
        };
        let bytes = note().encode();
        for cut in 0..bytes.len() {
            // Every truncation either fails or (at a field boundary) lacks a field: never a
            // different note.
            assert_eq!(
                StoredDraft::decode(&key, &bytes[..cut]),
                None,
                "cut at {cut}"
            );
        }
        let mut newer = bytes.clone();
        newer[0] = 2;
        assert_eq!(StoredDraft::decode(&key, &newer), None);
        // Another form's draft under this key is not taken for a note.
        assert_eq!(StoredDraft::decode(&DraftKey::NewAccount, &bytes), None);
        // A field a newer version appends is ignored.
        let mut appended = bytes.clone();
        appended.extend_from_slice(&3u32.to_le_bytes());
        appended.extend_from_slice(b"new");
        assert_eq!(StoredDraft::decode(&key, &appended), Some(note()));
    }

    #[test]
    fn banners_name_the_form_and_the_account() {
        let note = DraftKey::Note {
            account: "a".into(),
        };
        assert_eq!(
            note.describe("", Some("Draft Depot")),
            "Unsaved note for Draft Depot"
        );
        assert_eq!(note.route(), Route::Capture("a".into()));
        assert_eq!(
            DraftKey::NewAccount.describe("Draft Depot", None),
            "Unsaved new account \u{201c}Draft Depot\u{201d}"
        );
        assert_eq!(
            DraftKey::NewAccount.describe("", None),
            "Unsaved new account"
        );
        let reason = DraftKey::Driver {
            account: "a".into(),
            driver: Some("delivery".into()),
        };
        assert_eq!(
            reason.describe("", Some("Draft Depot")),
            "Unsaved reason \u{201c}Delivery\u{201d} for Draft Depot"
        );
        assert_eq!(reason.route(), Route::Account("a".into()));
        assert!(!reason.has_own_screen());
        assert_eq!(
            DraftKey::Goal {
                account: "a".into()
            }
            .describe("", None),
            "Unsaved goal for an account not on this phone yet"
        );
    }
}
