//! Limits on failed sign-ins: per email, so one account cannot be guessed at,
//! and per client address, so one client cannot spray many accounts.
//!
//! An attempt counts as failed from the moment it starts ([`begin`], which checks and counts
//! in one transaction), and is taken back only when the password turned out right
//! ([`succeeded`]). So parallel attempts cannot all pass the check before any of them is
//! counted.
//!
//! The counts live in the database (`sign_in_failures`, one row per `email:<email>` and
//! `addr:<ip>`), so every instance on one database shares them and a restart keeps them
//! (documented in `docs/auth.md`). [`begin`] locks the rows it reads (the first statement
//! on each is a write: an upsert that changes nothing), always in key order, so two instances
//! checking the same email or address one after the other see each other's counts and cannot
//! deadlock. Windows that have ended are swept out whenever an attempt opens a new one, which
//! keeps the table to the keys that failed in the last window.
//!
//! Time comes in as Unix milliseconds, so the rules can be tested without waiting.

use std::net::IpAddr;
use std::time::Duration;

use crate::db::{Db, DbError};
use crate::params;

pub const WINDOW: Duration = Duration::from_secs(15 * 60);
pub const MAX_FAILURES_PER_EMAIL: u32 = 5;
pub const MAX_FAILURES_PER_ADDRESS: u32 = 30;

const WINDOW_MS: i64 = WINDOW.as_millis() as i64;

/// Why a sign-in may not be tried now, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub retry_after: Duration,
    pub message: String,
}

/// Why [`begin`] did not let an attempt go ahead.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Too many failures lately.
    #[error("{}", .0.message)]
    Locked(Locked),
    /// The counts could not be read or written: the attempt must not go ahead unchecked.
    #[error(transparent)]
    Database(#[from] DbError),
}

#[derive(Debug, Clone, Copy)]
enum Limit {
    Email,
    Address,
}

impl Limit {
    fn max(self) -> i64 {
        match self {
            Limit::Email => MAX_FAILURES_PER_EMAIL.into(),
            Limit::Address => MAX_FAILURES_PER_ADDRESS.into(),
        }
    }

    fn locked(self, wait: Duration) -> Locked {
        let message = match self {
            Limit::Email => format!(
                "Too many wrong passwords for this account. Wait {} minutes, then try again, or ask your manager to reset your password.",
                minutes(wait)
            ),
            Limit::Address => format!(
                "Too many failed sign-ins from this device. Wait {} minutes, then try again.",
                minutes(wait)
            ),
        };
        Locked {
            retry_after: wait,
            message,
        }
    }
}

/// One key's current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started_ms: i64,
    failures: i64,
}

impl Window {
    /// This window, or a fresh one when it has ended. A start in the future (another
    /// instance's clock is ahead) counts as just started.
    fn current(self, now_ms: i64) -> Window {
        if elapsed_ms(self.started_ms, now_ms) >= WINDOW_MS {
            Window {
                started_ms: now_ms,
                failures: 0,
            }
        } else {
            self
        }
    }

    fn remaining(self, limit: Limit, now_ms: i64) -> Option<Duration> {
        let elapsed = elapsed_ms(self.started_ms, now_ms);
        (self.failures >= limit.max() && elapsed < WINDOW_MS)
            .then(|| Duration::from_millis((WINDOW_MS - elapsed) as u64))
    }
}

fn elapsed_ms(started_ms: i64, now_ms: i64) -> i64 {
    now_ms.saturating_sub(started_ms).max(0)
}

fn minutes(duration: Duration) -> u64 {
    duration.as_secs().div_ceil(60).max(1)
}

fn email_key(email: &str) -> String {
    format!("email:{}", email.trim().to_lowercase())
}

fn address_key(address: IpAddr) -> String {
    format!("addr:{address}")
}

/// Starts an attempt: refuses when this email or address has failed too often lately,
/// otherwise counts it as failed until [`succeeded`] says otherwise. Checked and counted in
/// one transaction, so no other attempt (on this instance or another) comes between.
pub fn begin(
    db: &mut Db,
    email: &str,
    address: Option<IpAddr>,
    now_ms: i64,
) -> Result<(), Refused> {
    // The email first: its message is the one to show when both are locked.
    let mut keys = vec![(email_key(email), Limit::Email)];
    if let Some(address) = address {
        keys.push((address_key(address), Limit::Address));
    }
    let opened_a_window = db.transaction(|tx| {
        // Locked in key order, whatever the order of the checks.
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|a, b| keys[*a].0.cmp(&keys[*b].0));
        let mut windows = vec![
            Window {
                started_ms: now_ms,
                failures: 0
            };
            keys.len()
        ];
        for i in order {
            let row = tx.query_one(
                "INSERT INTO sign_in_failures (key, window_started_ms, failures) VALUES (?1, ?2, 0)
                 ON CONFLICT (key) DO UPDATE SET failures = sign_in_failures.failures
                 RETURNING window_started_ms, failures",
                params![keys[i].0, now_ms],
            )?;
            windows[i] = Window {
                started_ms: row.get(0)?,
                failures: row.get(1)?,
            }
            .current(now_ms);
        }
        for ((_, limit), window) in keys.iter().zip(&windows) {
            if let Some(wait) = window.remaining(*limit, now_ms) {
                // Rolled back: a refused attempt is not counted.
                return Err(Refused::Locked(limit.locked(wait)));
            }
        }
        for ((key, _), window) in keys.iter().zip(&windows) {
            tx.execute(
                "UPDATE sign_in_failures SET window_started_ms = ?2, failures = ?3 WHERE key = ?1",
                params![key, window.started_ms, window.failures + 1],
            )?;
        }
        Ok(windows.iter().any(|w| w.failures == 0))
    })?;
    if opened_a_window {
        sweep(db, now_ms)?;
    }
    Ok(())
}

/// The attempt begun for `email` had the right password: forget the email's failures and
/// take this attempt back from the address's count. Two statements, each locking one row, so
/// it cannot deadlock with a [`begin`] elsewhere.
pub fn succeeded(db: &mut Db, email: &str, address: Option<IpAddr>) -> Result<(), DbError> {
    db.execute(
        "DELETE FROM sign_in_failures WHERE key = ?1",
        params![email_key(email)],
    )?;
    if let Some(address) = address {
        db.execute(
            "UPDATE sign_in_failures SET failures = failures - 1 WHERE key = ?1 AND failures > 0",
            params![address_key(address)],
        )?;
    }
    Ok(())
}

/// Deletes the windows that have ended. On PostgreSQL the rows another instance's [`begin`]
/// holds are skipped (it is about to restart them), so the sweep never waits on a lock and
/// cannot take part in a deadlock; SQLite has one writer at a time and no row locks.
fn sweep(db: &mut Db, now_ms: i64) -> Result<(), DbError> {
    let sql = if db.is_postgres() {
        "DELETE FROM sign_in_failures WHERE key IN (
             SELECT key FROM sign_in_failures WHERE window_started_ms <= ?1
             FOR UPDATE SKIP LOCKED)"
    } else {
        "DELETE FROM sign_in_failures WHERE window_started_ms <= ?1"
    };
    db.execute(sql, params![now_ms.saturating_sub(WINDOW_MS)])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Store;
    use crate::test_db::on_both_backends;

    on_both_backends!(
        five_failures_lock_the_email_for_the_rest_of_the_window,
        a_right_password_forgets_the_email_and_takes_its_attempt_back,
        an_ended_window_starts_counting_again,
        thirty_failures_lock_the_address,
        ended_windows_are_swept_out,
        a_database_error_refuses_the_attempt
    );

    const T0: i64 = 1_700_000_000_000;
    const MINUTE_MS: i64 = 60_000;

    fn home() -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, 1]))
    }

    fn locked(result: Result<(), Refused>) -> Locked {
        match result {
            Err(Refused::Locked(locked)) => locked,
            other => panic!("expected a lock, got {other:?}"),
        }
    }

    fn rows(store: &mut Store) -> i64 {
        store
            .db_mut()
            .query_one("SELECT count(*) FROM sign_in_failures", params![])
            .unwrap()
            .get(0)
            .unwrap()
    }

    fn five_failures_lock_the_email_for_the_rest_of_the_window(mut store: Store) {
        let db = store.db_mut();
        for _ in 0..MAX_FAILURES_PER_EMAIL {
            begin(db, "a@x", home(), T0).unwrap();
        }
        let refused = locked(begin(db, "a@x", home(), T0));
        assert_eq!(refused.retry_after, WINDOW);
        assert!(
            refused.message.contains("Wait 15 minutes"),
            "{}",
            refused.message
        );
        // The same email in other letters is the same account.
        locked(begin(db, " A@X", home(), T0 + MINUTE_MS));
        // Refused attempts are not counted: the wait shrinks with the window.
        let later = locked(begin(db, "a@x", home(), T0 + 10 * MINUTE_MS));
        assert_eq!(later.retry_after, Duration::from_secs(5 * 60));
        assert!(
            later.message.contains("Wait 5 minutes"),
            "{}",
            later.message
        );
        // Another account from the same address is still allowed.
        begin(db, "b@x", home(), T0).unwrap();
        // After the window it opens again.
        begin(db, "a@x", home(), T0 + WINDOW_MS).unwrap();
    }

    fn a_right_password_forgets_the_email_and_takes_its_attempt_back(mut store: Store) {
        let db = store.db_mut();
        for _ in 0..MAX_FAILURES_PER_EMAIL - 1 {
            begin(db, "a@x", home(), T0).unwrap();
        }
        begin(db, "a@x", home(), T0).unwrap();
        succeeded(db, "a@x", home()).unwrap();
        // The email starts from nothing.
        for _ in 0..MAX_FAILURES_PER_EMAIL {
            begin(db, "a@x", home(), T0).unwrap();
        }
        locked(begin(db, "a@x", home(), T0));
        // Right passwords do not add up against the address.
        for _ in 0..MAX_FAILURES_PER_ADDRESS * 2 {
            begin(db, "c@x", home(), T0).unwrap();
            succeeded(db, "c@x", home()).unwrap();
        }
        begin(db, "d@x", home(), T0).unwrap();
        // Without an address only the email is counted.
        begin(db, "e@x", None, T0).unwrap();
        succeeded(db, "e@x", None).unwrap();
    }

    fn an_ended_window_starts_counting_again(mut store: Store) {
        let db = store.db_mut();
        for _ in 0..MAX_FAILURES_PER_EMAIL - 1 {
            begin(db, "a@x", home(), T0).unwrap();
        }
        // One minute before the end the old failures still count: one more locks it.
        begin(db, "a@x", home(), T0 + 14 * MINUTE_MS).unwrap();
        let refused = locked(begin(db, "a@x", home(), T0 + 14 * MINUTE_MS));
        assert_eq!(refused.retry_after, Duration::from_secs(60));
        // A new window: five more before the next lock, which lasts a whole window again.
        let t1 = T0 + WINDOW_MS;
        for _ in 0..MAX_FAILURES_PER_EMAIL {
            begin(db, "a@x", home(), t1).unwrap();
        }
        assert_eq!(locked(begin(db, "a@x", home(), t1)).retry_after, WINDOW);
        // A window started by an instance whose clock is ahead counts as just started.
        for _ in 0..MAX_FAILURES_PER_EMAIL {
            begin(db, "f@x", None, T0 + MINUTE_MS).unwrap();
        }
        assert_eq!(locked(begin(db, "f@x", None, T0)).retry_after, WINDOW);
    }

    fn thirty_failures_lock_the_address(mut store: Store) {
        let db = store.db_mut();
        let address = Some(IpAddr::from([10, 0, 0, 9]));
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            begin(db, &format!("user{i}@x"), address, T0).unwrap();
        }
        let refused = locked(begin(db, "new@x", address, T0 + MINUTE_MS));
        assert_eq!(refused.retry_after, WINDOW - Duration::from_secs(60));
        assert!(
            refused.message.contains("from this device"),
            "{}",
            refused.message
        );
        // The refused attempt did not count against the email.
        for _ in 0..MAX_FAILURES_PER_EMAIL {
            begin(db, "new@x", Some(IpAddr::from([10, 0, 0, 10])), T0).unwrap();
        }
        // IPv6 addresses are keys of their own.
        begin(db, "new2@x", Some("2001:db8::9".parse().unwrap()), T0).unwrap();
        begin(db, "new2@x", address, T0 + WINDOW_MS).unwrap();
    }

    fn ended_windows_are_swept_out(mut store: Store) {
        for i in 0..20 {
            begin(store.db_mut(), &format!("user{i}@x"), home(), T0).unwrap();
        }
        assert_eq!(rows(&mut store), 21, "one per email, one for the address");
        begin(store.db_mut(), "late@x", None, T0 + WINDOW_MS - 1).unwrap();
        assert_eq!(rows(&mut store), 22, "nothing has ended yet");
        begin(store.db_mut(), "later@x", None, T0 + WINDOW_MS).unwrap();
        assert_eq!(rows(&mut store), 2, "only the live windows stay");
    }

    fn a_database_error_refuses_the_attempt(mut store: Store) {
        let db = store.db_mut();
        db.batch("DROP TABLE sign_in_failures").unwrap();
        let refused = begin(db, "a@x", home(), T0);
        assert!(matches!(refused, Err(Refused::Database(_))), "{refused:?}");
        assert!(succeeded(db, "a@x", home()).is_err());
    }

    /// Twenty attempts at once over separate connections (as from several instances), none
    /// verified yet: exactly five may go on.
    fn parallel_attempts_on_separate_connections(open: impl Fn() -> Store + Sync) {
        let barrier = std::sync::Barrier::new(20);
        let started: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..20)
                .map(|_| {
                    scope.spawn(|| {
                        let mut store = open();
                        barrier.wait();
                        match begin(store.db_mut(), "a@x", home(), T0) {
                            Ok(()) => true,
                            Err(Refused::Locked(_)) => false,
                            Err(error) => panic!("{error}"),
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(started.iter().filter(|ok| **ok).count(), 5);
    }

    #[test]
    fn postgres_parallel_attempts_from_many_connections_let_exactly_five_through() {
        let database = crate::test_db::TestDatabase::new();
        drop(Store::open_postgres(&database.url).unwrap());
        parallel_attempts_on_separate_connections(|| Store::open_postgres(&database.url).unwrap());
    }

    /// Attempts, successes and sweeps on many connections at once, over shared emails and
    /// addresses and across window ends: each only ever waits for rows locked in key order,
    /// so none fails with a deadlock.
    #[test]
    fn postgres_concurrent_attempts_successes_and_sweeps_never_deadlock() {
        let database = crate::test_db::TestDatabase::new();
        drop(Store::open_postgres(&database.url).unwrap());
        std::thread::scope(|scope| {
            for thread in 0..8u8 {
                let url = &database.url;
                scope.spawn(move || {
                    let mut store = Store::open_postgres(url).unwrap();
                    let db = store.db_mut();
                    for n in 0..60i64 {
                        let email = format!("user{}@x", (n + i64::from(thread)) % 4);
                        let address = Some(IpAddr::from([10, 0, 0, thread % 3]));
                        // Every few attempts the clock passes a window's end and a sweep runs.
                        let now = T0 + (n / 10) * WINDOW_MS;
                        match begin(db, &email, address, now) {
                            Ok(()) if n % 3 == 0 => succeeded(db, &email, address).unwrap(),
                            Ok(()) | Err(Refused::Locked(_)) => {}
                            Err(error) => panic!("{error}"),
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn sqlite_parallel_attempts_from_many_connections_let_exactly_five_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fieldnotes.sqlite3");
        drop(Store::open(&path).unwrap());
        parallel_attempts_on_separate_connections(|| Store::open(&path).unwrap());
    }
}
