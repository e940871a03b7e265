//! Pure queries over hydrated accounts, for the list screen and the manager's view.
//!
//! Every query skips archived accounts: archiving hides an account everywhere. Each is one
//! pass over the slice (plus a sort where it returns an order), so 500 accounts take well under
//! a millisecond; see `benches/model.rs`.

use std::collections::BTreeMap;

use crate::account::{Account, FollowUp};
use crate::driver::{DriverKey, Strength, UsualDriver};
use crate::ids::FollowUpId;

/// One day in milliseconds.
pub const DAY_MILLIS: i64 = 24 * 60 * 60 * 1000;

/// The accounts that are not archived.
pub fn visible(accounts: &[Account]) -> impl Iterator<Item = &Account> {
    accounts.iter().filter(|a| !a.archived)
}

/// Accounts whose name, branch, area, contacts (name, role, phone, email) or visit-note text
/// contain `query`, ignoring case. An empty (or blank) query matches every account.
pub fn search<'a>(accounts: &'a [Account], query: &str) -> Vec<&'a Account> {
    let needle = query.trim().to_lowercase();
    visible(accounts)
        .filter(|a| needle.is_empty() || account_matches(a, &needle))
        .collect()
}

fn account_matches(account: &Account, needle: &str) -> bool {
    let fields = [&account.name, &account.branch, &account.area];
    fields.iter().any(|f| contains_ignoring_case(f, needle))
        || account.contacts.values().any(|c| {
            [&c.name, &c.role, &c.phone, &c.email]
                .iter()
                .any(|f| contains_ignoring_case(f, needle))
        })
        || account
            .notes
            .iter()
            .any(|n| contains_ignoring_case(&n.text, needle))
}

/// `needle` must already be lower-case. ASCII text is compared without allocating.
fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    if needle.len() > haystack.len() * 3 {
        // Lower-casing can at most triple a UTF-8 string's length; cheap early exit.
        return false;
    }
    if haystack.is_ascii() && needle.is_ascii() {
        let (h, n) = (haystack.as_bytes(), needle.as_bytes());
        return n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    haystack.to_lowercase().contains(needle)
}

/// Accounts where `driver` is recorded with at least `min_strength`
/// (pass [`Strength::MINOR`] for "recorded at all").
pub fn with_driver<'a>(
    accounts: &'a [Account],
    driver: &DriverKey,
    min_strength: Strength,
) -> Vec<&'a Account> {
    visible(accounts)
        .filter(|a| {
            a.drivers
                .get(driver)
                .is_some_and(|d| d.strength >= min_strength)
        })
        .collect()
}

/// Accounts where nobody has recorded why the client works with us yet.
pub fn reasons_unknown(accounts: &[Account]) -> Vec<&Account> {
    visible(accounts).filter(|a| a.drivers.is_empty()).collect()
}

/// The last time anyone wrote a visit note, or the creation time if there is none.
pub fn last_activity_millis(account: &Account) -> i64 {
    account.last_note_millis().unwrap_or(account.created_at)
}

/// Whether no visit note has been written for `stale_after_days` days as of `now_millis` (an
/// account without notes counts from its creation).
pub fn is_stale(account: &Account, now_millis: i64, stale_after_days: u32) -> bool {
    now_millis.saturating_sub(last_activity_millis(account))
        >= i64::from(stale_after_days) * DAY_MILLIS
}

/// Accounts with no visit note in the last `stale_after_days` days.
pub fn stale(accounts: &[Account], now_millis: i64, stale_after_days: u32) -> Vec<&Account> {
    visible(accounts)
        .filter(|a| is_stale(a, now_millis, stale_after_days))
        .collect()
}

/// A follow-up that is not done and was due before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverdueFollowUp<'a> {
    pub account: &'a Account,
    pub id: &'a FollowUpId,
    pub follow_up: &'a FollowUp,
}

fn is_overdue(follow_up: &FollowUp, now_millis: i64) -> bool {
    !follow_up.done && follow_up.due_millis < now_millis
}

/// Every overdue follow-up across the accounts, the longest overdue first.
pub fn overdue_follow_ups(accounts: &[Account], now_millis: i64) -> Vec<OverdueFollowUp<'_>> {
    let mut overdue: Vec<OverdueFollowUp<'_>> = visible(accounts)
        .flat_map(|account| {
            account
                .follow_ups
                .iter()
                .filter(move |(_, f)| is_overdue(f, now_millis))
                .map(move |(id, follow_up)| OverdueFollowUp {
                    account,
                    id,
                    follow_up,
                })
        })
        .collect();
    overdue.sort_by(|a, b| {
        (a.follow_up.due_millis, &a.account.id, a.id).cmp(&(
            b.follow_up.due_millis,
            &b.account.id,
            b.id,
        ))
    });
    overdue
}

/// How many accounts record a driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverCount {
    pub driver: DriverKey,
    pub accounts: usize,
}

/// For the manager's chart: how many accounts record each driver, the most common first. The
/// nine usual drivers always appear (with 0 if nobody records them); custom drivers appear when
/// at least one account records them. Ties keep the usual order, then custom keys A–Z.
pub fn accounts_per_driver(accounts: &[Account]) -> Vec<DriverCount> {
    let mut counts: BTreeMap<&DriverKey, usize> = BTreeMap::new();
    for account in visible(accounts) {
        for key in account.drivers.keys() {
            *counts.entry(key).or_default() += 1;
        }
    }
    let mut result: Vec<DriverCount> = UsualDriver::ALL
        .iter()
        .map(|&usual| {
            let driver = DriverKey::usual(usual);
            let accounts = counts.remove(&driver).unwrap_or(0);
            DriverCount { driver, accounts }
        })
        .collect();
    result.extend(counts.into_iter().map(|(driver, accounts)| DriverCount {
        driver: driver.clone(),
        accounts,
    }));
    // A stable sort keeps the usual order, then custom keys A–Z, among equal counts.
    result.sort_by_key(|count| std::cmp::Reverse(count.accounts));
    result
}

/// Why an account needs attention, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Attention {
    /// At least one follow-up is overdue.
    OverdueFollowUp,
    /// No driver is recorded.
    ReasonsUnknown,
    /// No visit note for the stale period.
    Stale,
    /// Nothing to do.
    None,
}

/// The most urgent reason an account needs attention.
pub fn attention(account: &Account, now_millis: i64, stale_after_days: u32) -> Attention {
    if account
        .follow_ups
        .values()
        .any(|f| is_overdue(f, now_millis))
    {
        Attention::OverdueFollowUp
    } else if account.drivers.is_empty() {
        Attention::ReasonsUnknown
    } else if is_stale(account, now_millis, stale_after_days) {
        Attention::Stale
    } else {
        Attention::None
    }
}

/// The list screen's order: overdue follow-ups first, then reasons unknown, then stale, then
/// the rest; by name (ignoring case) within each group.
pub fn needs_attention(
    accounts: &[Account],
    now_millis: i64,
    stale_after_days: u32,
) -> Vec<(&Account, Attention)> {
    let mut ranked: Vec<(Attention, String, &Account)> = visible(accounts)
        .map(|a| {
            (
                attention(a, now_millis, stale_after_days),
                a.name.to_lowercase(),
                a,
            )
        })
        .collect();
    ranked.sort_by(|a, b| (a.0, &a.1, &a.2.id).cmp(&(b.0, &b.1, &b.2.id)));
    ranked.into_iter().map(|(att, _, a)| (a, att)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{Contact, Driver, Note};
    use crate::ids::{AccountId, ContactId, NoteId, TeamId, UserId};

    const NOW: i64 = 1_700_000_000_000;

    fn account(id: &str, name: &str) -> Account {
        Account {
            schema: 1,
            id: AccountId::new(id),
            team: TeamId::new("team"),
            name: name.to_string(),
            branch: "North".to_string(),
            area: "Riverside".to_string(),
            created_at: NOW - 100 * DAY_MILLIS,
            created_by: UserId::new("ann"),
            contacts: BTreeMap::new(),
            drivers: BTreeMap::new(),
            goals: BTreeMap::new(),
            value_proposition: String::new(),
            notes: Vec::new(),
            follow_ups: BTreeMap::new(),
            archived: false,
        }
    }

    fn with_driver_rec(mut a: Account, key: UsualDriver, strength: Strength) -> Account {
        a.drivers.insert(
            DriverKey::usual(key),
            Driver {
                strength,
                evidence: String::new(),
            },
        );
        a
    }

    fn with_note(mut a: Account, text: &str, days_ago: i64) -> Account {
        a.notes.push(Note {
            id: NoteId::new(format!("n{}", a.notes.len())),
            author: UserId::new("ann"),
            time_millis: NOW - days_ago * DAY_MILLIS,
            text: text.to_string(),
            drivers: vec![],
            objections: vec![],
        });
        a
    }

    fn with_follow_up(mut a: Account, id: &str, due_days_from_now: i64, done: bool) -> Account {
        a.follow_ups.insert(
            FollowUpId::new(id),
            FollowUp {
                text: "call back".to_string(),
                due_millis: NOW + due_days_from_now * DAY_MILLIS,
                done,
            },
        );
        a
    }

    fn names<'a>(accounts: impl IntoIterator<Item = &'a Account>) -> Vec<&'a str> {
        accounts.into_iter().map(|a| a.name.as_str()).collect()
    }

    #[test]
    fn search_looks_in_every_text_field_ignoring_case() {
        let mut by_contact = account("c", "Contact Co");
        by_contact.contacts.insert(
            ContactId::new("k"),
            Contact {
                name: "Zoë Martín".to_string(),
                role: "Buyer".to_string(),
                phone: "555-0101".to_string(),
                email: "zoe@example.com".to_string(),
            },
        );
        let mut by_branch = account("b", "Branch Co");
        by_branch.branch = "Eastgate".to_string();
        let accounts = vec![
            account("a", "Acme Plumbing"),
            by_branch,
            by_contact,
            with_note(account("d", "Delta"), "They hate the NEW invoice portal", 1),
        ];
        assert_eq!(names(search(&accounts, "acme")), ["Acme Plumbing"]);
        assert_eq!(names(search(&accounts, "EASTGATE")), ["Branch Co"]);
        assert_eq!(names(search(&accounts, "zoË")), ["Contact Co"]);
        assert_eq!(names(search(&accounts, "buyer")), ["Contact Co"]);
        assert_eq!(names(search(&accounts, "0101")), ["Contact Co"]);
        assert_eq!(names(search(&accounts, "invoice portal")), ["Delta"]);
        assert_eq!(search(&accounts, "riverside").len(), 4);
        assert_eq!(search(&accounts, "  ").len(), 4);
        assert!(search(&accounts, "nowhere").is_empty());
    }

    #[test]
    fn archived_accounts_are_hidden_from_every_query() {
        let mut archived = with_follow_up(account("z", "Zed"), "f", -3, false);
        archived.archived = true;
        let accounts = vec![archived];
        assert!(search(&accounts, "").is_empty());
        assert!(reasons_unknown(&accounts).is_empty());
        assert!(stale(&accounts, NOW, 30).is_empty());
        assert!(overdue_follow_ups(&accounts, NOW).is_empty());
        assert!(needs_attention(&accounts, NOW, 30).is_empty());
        assert!(
            accounts_per_driver(&accounts)
                .iter()
                .all(|c| c.accounts == 0)
        );
    }

    #[test]
    fn filter_by_driver_respects_minimum_strength() {
        let accounts = vec![
            with_driver_rec(account("a", "A"), UsualDriver::Delivery, Strength::MINOR),
            with_driver_rec(account("b", "B"), UsualDriver::Delivery, Strength::DECISIVE),
            with_driver_rec(account("c", "C"), UsualDriver::Price, Strength::DECISIVE),
        ];
        let delivery = DriverKey::usual(UsualDriver::Delivery);
        assert_eq!(
            names(with_driver(&accounts, &delivery, Strength::MINOR)),
            ["A", "B"]
        );
        assert_eq!(
            names(with_driver(&accounts, &delivery, Strength::STRONG)),
            ["B"]
        );
    }

    #[test]
    fn reasons_unknown_are_accounts_without_drivers() {
        let accounts = vec![
            account("a", "A"),
            with_driver_rec(account("b", "B"), UsualDriver::Training, Strength::SOME),
        ];
        assert_eq!(names(reasons_unknown(&accounts)), ["A"]);
    }

    #[test]
    fn stale_counts_from_last_note_or_creation() {
        let mut fresh_no_notes = account("n", "New");
        fresh_no_notes.created_at = NOW - 2 * DAY_MILLIS;
        let accounts = vec![
            with_note(account("a", "Recent"), "ok", 3),
            with_note(with_note(account("b", "Old"), "ok", 60), "ok", 31),
            account("c", "Never visited"),
            fresh_no_notes,
        ];
        assert_eq!(names(stale(&accounts, NOW, 30)), ["Old", "Never visited"]);
        // Exactly N days counts as stale; a minute less does not.
        let edge = vec![with_note(account("e", "Edge"), "ok", 30)];
        assert_eq!(stale(&edge, NOW, 30).len(), 1);
        assert!(stale(&edge, NOW - 60_000, 30).is_empty());
    }

    #[test]
    fn overdue_follow_ups_are_not_done_and_past_due_oldest_first() {
        let a = with_follow_up(
            with_follow_up(account("a", "A"), "late", -2, false),
            "done",
            -5,
            true,
        );
        let b = with_follow_up(
            with_follow_up(account("b", "B"), "later", 4, false),
            "oldest",
            -9,
            false,
        );
        let accounts = vec![a, b];
        let overdue = overdue_follow_ups(&accounts, NOW);
        let ids: Vec<&str> = overdue.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["oldest", "late"]);
        assert_eq!(overdue[0].account.name, "B");
    }

    #[test]
    fn accounts_per_driver_counts_each_account_once_per_driver() {
        let custom = DriverKey::custom("Late pickups").unwrap();
        let mut c = with_driver_rec(account("c", "C"), UsualDriver::Price, Strength::SOME);
        c.drivers.insert(
            custom.clone(),
            Driver {
                strength: Strength::MATTERS,
                evidence: String::new(),
            },
        );
        let accounts = vec![
            with_driver_rec(account("a", "A"), UsualDriver::Price, Strength::MINOR),
            with_driver_rec(
                with_driver_rec(account("b", "B"), UsualDriver::Price, Strength::MINOR),
                UsualDriver::Delivery,
                Strength::MINOR,
            ),
            c,
        ];
        let counts = accounts_per_driver(&accounts);
        assert_eq!(counts.len(), 10);
        assert_eq!(
            counts[0],
            DriverCount {
                driver: DriverKey::usual(UsualDriver::Price),
                accounts: 3
            }
        );
        // Ties: usual order (delivery before the custom driver), then zero counts in usual order.
        assert_eq!(counts[1].driver, DriverKey::usual(UsualDriver::Delivery));
        assert_eq!(
            counts[2],
            DriverCount {
                driver: custom,
                accounts: 1
            }
        );
        assert_eq!(
            counts[3],
            DriverCount {
                driver: DriverKey::usual(UsualDriver::Relationship),
                accounts: 0
            }
        );
    }

    #[test]
    fn needs_attention_orders_overdue_unknown_stale_then_name() {
        let known = |a| with_driver_rec(a, UsualDriver::Relationship, Strength::STRONG);
        let accounts = vec![
            with_note(known(account("1", "fine b")), "ok", 1),
            with_note(known(account("2", "Fine A")), "ok", 1),
            known(account("3", "stale")),
            with_note(account("4", "unknown"), "ok", 1),
            with_follow_up(
                with_note(known(account("5", "overdue z")), "ok", 1),
                "f",
                -1,
                false,
            ),
            with_follow_up(account("6", "Overdue a"), "f", -1, false),
        ];
        let ranked = needs_attention(&accounts, NOW, 30);
        let got: Vec<(&str, Attention)> =
            ranked.iter().map(|(a, r)| (a.name.as_str(), *r)).collect();
        assert_eq!(
            got,
            [
                ("Overdue a", Attention::OverdueFollowUp),
                ("overdue z", Attention::OverdueFollowUp),
                ("unknown", Attention::ReasonsUnknown),
                ("stale", Attention::Stale),
                ("Fine A", Attention::None),
                ("fine b", Attention::None),
            ]
        );
    }
}
