//! Pure queries for the list screen and the team view, over hydrated accounts or over the
//! phone's index entries alike ([`Listed`]).
//!
//! Every query skips archived accounts: archiving hides an account everywhere. Each is one
//! pass over the slice (plus a sort where it returns an order), so 500 accounts take well under
//! a millisecond; see `benches/model.rs`.

use std::collections::{BTreeMap, BTreeSet};

use crate::account::Account;
use crate::driver::{DriverKey, Strength, UsualDriver};
use crate::entry::AccountEntry;
use crate::ids::{AccountId, FollowUpId};

/// One day in milliseconds.
pub const DAY_MILLIS: i64 = 24 * 60 * 60 * 1000;

/// What the queries read of an account: a hydrated [`Account`], or the [`AccountEntry`] the
/// phone keeps for every account of its team.
pub trait Listed {
    fn id(&self) -> &AccountId;
    fn name(&self) -> &str;
    fn branch(&self) -> &str;
    fn area(&self) -> &str;
    fn archived(&self) -> bool;
    fn created_at(&self) -> i64;
    fn last_note_millis(&self) -> Option<i64>;
    /// How strongly `driver` is recorded, if it is.
    fn driver_strength(&self, driver: &DriverKey) -> Option<Strength>;
    fn driver_keys(&self) -> Vec<&DriverKey>;
    /// Follow-ups not done: id, text, due (unix milliseconds).
    fn open_follow_ups(&self) -> Vec<(&FollowUpId, &str, i64)>;
    /// Whether any searchable text contains `needle`, which is already lower-case.
    fn contains_text(&self, needle: &str) -> bool;
}

impl Listed for Account {
    fn id(&self) -> &AccountId {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn branch(&self) -> &str {
        &self.branch
    }
    fn area(&self) -> &str {
        &self.area
    }
    fn archived(&self) -> bool {
        self.archived
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }
    fn last_note_millis(&self) -> Option<i64> {
        Account::last_note_millis(self)
    }
    fn driver_strength(&self, driver: &DriverKey) -> Option<Strength> {
        self.drivers.get(driver).map(|d| d.strength)
    }
    fn driver_keys(&self) -> Vec<&DriverKey> {
        self.drivers.keys().collect()
    }
    fn open_follow_ups(&self) -> Vec<(&FollowUpId, &str, i64)> {
        self.follow_ups
            .iter()
            .filter(|(_, f)| !f.done)
            .map(|(id, f)| (id, f.text.as_str(), f.due_millis))
            .collect()
    }
    fn contains_text(&self, needle: &str) -> bool {
        self.contacts.values().any(|c| {
            [&c.name, &c.role, &c.phone, &c.email]
                .iter()
                .any(|f| contains_ignoring_case(f, needle))
        }) || self
            .notes
            .iter()
            .any(|n| contains_ignoring_case(&n.text, needle))
    }
}

impl Listed for AccountEntry {
    fn id(&self) -> &AccountId {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn branch(&self) -> &str {
        &self.branch
    }
    fn area(&self) -> &str {
        &self.area
    }
    fn archived(&self) -> bool {
        self.archived
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }
    fn last_note_millis(&self) -> Option<i64> {
        self.last_note_millis
    }
    fn driver_strength(&self, driver: &DriverKey) -> Option<Strength> {
        self.drivers
            .iter()
            .find(|(key, _)| key == driver)
            .map(|(_, strength)| *strength)
    }
    fn driver_keys(&self) -> Vec<&DriverKey> {
        self.drivers.iter().map(|(key, _)| key).collect()
    }
    fn open_follow_ups(&self) -> Vec<(&FollowUpId, &str, i64)> {
        self.open_follow_ups
            .iter()
            .map(|f| (&f.id, f.text.as_str(), f.due_millis))
            .collect()
    }
    fn contains_text(&self, needle: &str) -> bool {
        // Already lower-case (see `AccountEntry::of`).
        self.search_text.contains(needle)
    }
}

/// The accounts that are not archived.
pub fn visible<A: Listed>(accounts: &[A]) -> impl Iterator<Item = &A> {
    accounts.iter().filter(|a| !a.archived())
}

/// Accounts whose name, branch, area, contacts (name, role, phone, email) or visit-note text
/// contain `query`, ignoring case. An empty (or blank) query matches every account. On index
/// entries the notes searched are the most recent ones (see [`crate::entry`]).
pub fn search<'a, A: Listed>(accounts: &'a [A], query: &str) -> Vec<&'a A> {
    let needle = query.trim().to_lowercase();
    visible(accounts)
        .filter(|a| needle.is_empty() || account_matches(*a, &needle))
        .collect()
}

fn account_matches<A: Listed>(account: &A, needle: &str) -> bool {
    let fields = [account.name(), account.branch(), account.area()];
    fields.iter().any(|f| contains_ignoring_case(f, needle)) || account.contains_text(needle)
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
pub fn with_driver<'a, A: Listed>(
    accounts: &'a [A],
    driver: &DriverKey,
    min_strength: Strength,
) -> Vec<&'a A> {
    visible(accounts)
        .filter(|a| a.driver_strength(driver).is_some_and(|s| s >= min_strength))
        .collect()
}

/// Accounts where nobody has recorded why the client works with us yet.
pub fn reasons_unknown<A: Listed>(accounts: &[A]) -> Vec<&A> {
    visible(accounts)
        .filter(|a| a.driver_keys().is_empty())
        .collect()
}

/// The last time anyone wrote a visit note, or the creation time if there is none.
pub fn last_activity_millis<A: Listed>(account: &A) -> i64 {
    account.last_note_millis().unwrap_or(account.created_at())
}

/// Whether no visit note has been written for `stale_after_days` days as of `now_millis` (an
/// account without notes counts from its creation).
pub fn is_stale<A: Listed>(account: &A, now_millis: i64, stale_after_days: u32) -> bool {
    now_millis.saturating_sub(last_activity_millis(account))
        >= i64::from(stale_after_days) * DAY_MILLIS
}

/// Accounts with no visit note in the last `stale_after_days` days.
pub fn stale<A: Listed>(accounts: &[A], now_millis: i64, stale_after_days: u32) -> Vec<&A> {
    visible(accounts)
        .filter(|a| is_stale(*a, now_millis, stale_after_days))
        .collect()
}

/// A follow-up that is not done and was due before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverdueFollowUp<'a, A> {
    pub account: &'a A,
    pub id: &'a FollowUpId,
    pub text: &'a str,
    pub due_millis: i64,
}

/// Every overdue follow-up across the accounts, the longest overdue first.
pub fn overdue_follow_ups<A: Listed>(
    accounts: &[A],
    now_millis: i64,
) -> Vec<OverdueFollowUp<'_, A>> {
    let mut overdue: Vec<OverdueFollowUp<'_, A>> = visible(accounts)
        .flat_map(|account| {
            account
                .open_follow_ups()
                .into_iter()
                .filter(move |(_, _, due)| *due < now_millis)
                .map(move |(id, text, due_millis)| OverdueFollowUp {
                    account,
                    id,
                    text,
                    due_millis,
                })
        })
        .collect();
    overdue.sort_by(|a, b| {
        (a.due_millis, a.account.id(), a.id).cmp(&(b.due_millis, b.account.id(), b.id))
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
pub fn accounts_per_driver<A: Listed>(accounts: &[A]) -> Vec<DriverCount> {
    let mut counts: BTreeMap<&DriverKey, usize> = BTreeMap::new();
    for account in visible(accounts) {
        for key in account.driver_keys() {
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
pub fn attention<A: Listed>(account: &A, now_millis: i64, stale_after_days: u32) -> Attention {
    if account
        .open_follow_ups()
        .iter()
        .any(|(_, _, due)| *due < now_millis)
    {
        Attention::OverdueFollowUp
    } else if account.driver_keys().is_empty() {
        Attention::ReasonsUnknown
    } else if is_stale(account, now_millis, stale_after_days) {
        Attention::Stale
    } else {
        Attention::None
    }
}

/// The list screen's order: overdue follow-ups first, then reasons unknown, then stale, then
/// the rest; by name (ignoring case) within each group.
pub fn needs_attention<A: Listed>(
    accounts: &[A],
    now_millis: i64,
    stale_after_days: u32,
) -> Vec<(&A, Attention)> {
    let mut ranked: Vec<(Attention, String, &A)> = visible(accounts)
        .map(|a| {
            (
                attention(a, now_millis, stale_after_days),
                a.name().to_lowercase(),
                a,
            )
        })
        .collect();
    ranked.sort_by(|a, b| (a.0, &a.1, a.2.id()).cmp(&(b.0, &b.1, b.2.id())));
    ranked.into_iter().map(|(att, _, a)| (a, att)).collect()
}

/// What the rep narrowed the list to. Every filter set applies at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListFilters {
    pub search: String,
    /// A branch's exact name; empty for all.
    pub branch: String,
    pub driver: Option<DriverKey>,
    pub reasons_unknown: bool,
    pub overdue: bool,
}

/// The list screen: the accounts the filters leave, in [`needs_attention`] order.
pub fn list<'a, A: Listed>(
    accounts: &'a [A],
    filters: &ListFilters,
    now_millis: i64,
    stale_after_days: u32,
) -> Vec<(&'a A, Attention)> {
    let mut keep: Option<BTreeSet<&AccountId>> = None;
    let mut narrow = |ids: Vec<&'a AccountId>| {
        let ids: BTreeSet<&AccountId> = ids.into_iter().collect();
        keep = Some(match keep.take() {
            None => ids,
            Some(previous) => previous.intersection(&ids).copied().collect(),
        });
    };
    if !filters.search.trim().is_empty() {
        narrow(
            search(accounts, &filters.search)
                .iter()
                .map(|a| a.id())
                .collect(),
        );
    }
    if !filters.branch.is_empty() {
        narrow(
            visible(accounts)
                .filter(|a| a.branch() == filters.branch)
                .map(|a| a.id())
                .collect(),
        );
    }
    if let Some(driver) = &filters.driver {
        narrow(
            with_driver(accounts, driver, Strength::MINOR)
                .iter()
                .map(|a| a.id())
                .collect(),
        );
    }
    if filters.reasons_unknown {
        narrow(reasons_unknown(accounts).iter().map(|a| a.id()).collect());
    }
    if filters.overdue {
        narrow(
            overdue_follow_ups(accounts, now_millis)
                .iter()
                .map(|o| o.account.id())
                .collect(),
        );
    }
    needs_attention(accounts, now_millis, stale_after_days)
        .into_iter()
        .filter(|(a, _)| keep.as_ref().is_none_or(|k| k.contains(a.id())))
        .collect()
}

/// The branches the visible accounts name, A–Z, for the branch filter.
pub fn branches<A: Listed>(accounts: &[A]) -> Vec<&str> {
    let names: BTreeSet<&str> = visible(accounts)
        .map(|a| a.branch())
        .filter(|b| !b.is_empty())
        .collect();
    names.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{Contact, Driver, FollowUp, Note};
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

    fn ids<'a, A: Listed + 'a>(accounts: impl IntoIterator<Item = &'a A>) -> Vec<&'a str> {
        accounts.into_iter().map(|a| a.id().as_str()).collect()
    }

    /// A mixed team: every kind of account the queries tell apart.
    fn team() -> Vec<Account> {
        let known = |a| with_driver_rec(a, UsualDriver::Relationship, Strength::STRONG);
        let mut archived = with_follow_up(account("9", "Archived"), "f", -3, false);
        archived.archived = true;
        let mut east = with_note(known(account("7", "East")), "they like the app", 2);
        east.branch = "Eastgate".to_string();
        vec![
            with_note(known(account("1", "fine b")), "ok", 1),
            known(account("3", "stale")),
            with_note(account("4", "unknown"), "invoice portal", 1),
            with_follow_up(
                with_note(known(account("5", "overdue")), "ok", 1),
                "f",
                -1,
                false,
            ),
            with_driver_rec(account("6", "Priced"), UsualDriver::Price, Strength::MINOR),
            east,
            archived,
        ]
    }

    #[test]
    fn every_query_answers_the_same_over_index_entries() {
        let accounts = team();
        let entries: Vec<AccountEntry> = accounts.iter().map(AccountEntry::of).collect();
        for needle in ["", "east", "invoice", "nothing"] {
            assert_eq!(
                ids(search(&accounts, needle)),
                ids(search(&entries, needle)),
                "{needle}"
            );
        }
        let price = DriverKey::usual(UsualDriver::Price);
        assert_eq!(
            ids(with_driver(&accounts, &price, Strength::MINOR)),
            ids(with_driver(&entries, &price, Strength::MINOR))
        );
        assert_eq!(
            ids(reasons_unknown(&accounts)),
            ids(reasons_unknown(&entries))
        );
        assert_eq!(
            ids(stale(&accounts, NOW, 30)),
            ids(stale(&entries, NOW, 30))
        );
        fn overdue<A>(o: Vec<OverdueFollowUp<'_, A>>) -> Vec<(String, i64)> {
            o.iter()
                .map(|o| (o.text.to_string(), o.due_millis))
                .collect()
        }
        assert_eq!(
            overdue(overdue_follow_ups(&accounts, NOW)),
            overdue(overdue_follow_ups(&entries, NOW))
        );
        assert_eq!(
            accounts_per_driver(&accounts),
            accounts_per_driver(&entries)
        );
        fn ranked<A: Listed>(r: Vec<(&A, Attention)>) -> Vec<(String, Attention)> {
            r.into_iter()
                .map(|(a, at)| (a.id().as_str().to_string(), at))
                .collect()
        }
        assert_eq!(
            ranked(needs_attention(&accounts, NOW, 30)),
            ranked(needs_attention(&entries, NOW, 30))
        );
        assert_eq!(branches(&accounts), branches(&entries));
        assert_eq!(branches(&entries), ["Eastgate", "North"]);
    }

    #[test]
    fn the_list_applies_every_filter_at_once_in_attention_order() {
        let entries: Vec<AccountEntry> = team().iter().map(AccountEntry::of).collect();
        let list_ids = |filters: ListFilters| -> Vec<String> {
            list(&entries, &filters, NOW, 30)
                .into_iter()
                .map(|(a, _)| a.name.clone())
                .collect()
        };
        assert_eq!(
            list_ids(ListFilters::default()),
            ["overdue", "unknown", "Priced", "stale", "East", "fine b"]
        );
        assert_eq!(
            list_ids(ListFilters {
                branch: "Eastgate".into(),
                ..ListFilters::default()
            }),
            ["East"]
        );
        assert_eq!(
            list_ids(ListFilters {
                search: "OK".into(),
                reasons_unknown: false,
                overdue: true,
                ..ListFilters::default()
            }),
            ["overdue"]
        );
        assert_eq!(
            list_ids(ListFilters {
                driver: Some(DriverKey::usual(UsualDriver::Relationship)),
                search: "e".into(),
                ..ListFilters::default()
            }),
            ["overdue", "stale", "East", "fine b"]
        );
        assert_eq!(
            list_ids(ListFilters {
                reasons_unknown: true,
                ..ListFilters::default()
            }),
            ["unknown"]
        );
    }
}
